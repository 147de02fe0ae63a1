//! The fused CPU loop: the engine's [`Iterations`] driven step by step, with progress, stopping
//! and divergence.

use std::ops::ControlFlow;

use super::{Settings, Trace};
use crate::similarity::fused::{Iterations, Real};
use crate::similarity::KernelGeometry;
use crate::{Error, Result};

/// Minimizes L_CS of one layer in place (PyTorch layout), all iterations at once.
///
/// `progress(iteration, loss)` is called before every step with the loss of the current weights;
/// when it breaks, the weights are left as they came in and the result is [`Error::Stopped`].
/// If the loss stops being finite, the weights are left as they came in and the trace says where.
pub fn minimize<T: Real>(
    weight: &mut [T],
    geometry: &KernelGeometry,
    settings: &Settings,
    progress: &mut dyn FnMut(usize, f64) -> ControlFlow<()>,
) -> Result<Trace> {
    settings.optimizer.validate()?;
    let mut run = Iterations::new(
        weight,
        geometry,
        settings.variant,
        &settings.optimizer,
        settings.keep_norm,
    );
    let mut losses = Vec::with_capacity(settings.iterations.min(1 << 16) + 1);
    // The reports' figures of the first weights, while the engine holds their records.
    let start = run.figures();
    for step in 0..=settings.iterations {
        let loss = run.loss();
        losses.push(loss);
        if progress(step, loss).is_break() {
            return Err(Error::Stopped);
        }
        if !loss.is_finite() {
            return Ok(Trace::diverged(losses));
        }
        if step < settings.iterations {
            run.step(step + 1);
        }
    }
    if !run.finite() {
        return Ok(Trace::diverged(losses));
    }
    run.write_back(weight);
    let mut trace = Trace::completed(losses);
    trace.records = Some((start, run.figures()));
    Ok(trace)
}
