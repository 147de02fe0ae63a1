//! The portable loop: candle autograd for the gradient and [`crate::optim`] for the step, on the
//! weight's own device and dtype.

use std::ops::ControlFlow;

use candle_core::{DType, Tensor, Var};
use candle_nn::Optimizer;

use super::{Settings, Trace};
use crate::optim::{Adam, OptimizerConfig, Sgd};
use crate::similarity::portable;
use crate::Result;

/// Minimizes L_CS of one weight; returns the result and its trace (the input when it diverged).
pub fn minimize(
    weight: &Tensor,
    settings: &Settings,
    progress: &mut dyn FnMut(usize, f64) -> ControlFlow<()>,
) -> Result<(Tensor, Trace)> {
    let var = Var::from_tensor(&weight.copy()?)?;
    let mut optimizer = match settings.optimizer {
        OptimizerConfig::Adam(c) => PortableOptimizer::Adam(Adam::new(vec![var.clone()], c)?),
        OptimizerConfig::Sgd(c) => PortableOptimizer::Sgd(Sgd::new(vec![var.clone()], c)?),
    };
    let reduce: Vec<usize> = (1..weight.rank()).collect();
    let norms = if settings.keep_norm {
        Some(weight.sqr()?.sum_keepdim(reduce.as_slice())?.sqrt()?)
    } else {
        None
    };
    let mut losses = Vec::with_capacity(settings.iterations.min(1 << 16) + 1);
    for step in 0..=settings.iterations {
        let loss_tensor = portable::conv_similarity(var.as_tensor(), settings.variant)?;
        let loss = loss_tensor.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        losses.push(loss);
        if progress(step, loss).is_break() {
            return Err(crate::Error::Stopped);
        }
        if !loss.is_finite() {
            return Ok((weight.clone(), Trace::diverged(losses)));
        }
        if step == settings.iterations {
            break;
        }
        optimizer.step(&loss_tensor.backward()?)?;
        if let Some(norms) = &norms {
            let current = var.sqr()?.sum_keepdim(reduce.as_slice())?.sqrt()?;
            // Zero filters stay zero rather than turning into NaN.
            let scale = norms.div(&current)?;
            let scale = current.gt(0.0)?.where_cond(&scale, &current.ones_like()?)?;
            var.set(&var.broadcast_mul(&scale)?)?;
        }
    }
    let result = var.as_tensor().clone();
    let finite = result
        .abs()?
        .max_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?
        .is_finite();
    if !finite {
        return Ok((weight.clone(), Trace::diverged(losses)));
    }
    Ok((result, Trace::completed(losses)))
}

enum PortableOptimizer {
    Adam(Adam),
    Sgd(Sgd),
}

impl PortableOptimizer {
    fn step(&mut self, grads: &candle_core::backprop::GradStore) -> candle_core::Result<()> {
        match self {
            PortableOptimizer::Adam(o) => o.step(grads),
            PortableOptimizer::Sgd(o) => o.step(grads),
        }
    }
}
