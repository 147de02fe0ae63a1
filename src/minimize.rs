//! Minimizing L_CS of one layer: the settings, the engines, and the loss trace.
//!
//! Layers are independent (docs/math.md), so a checkpoint is processed one layer at a time, each
//! with all of its iterations, and the result equals minimizing the sum over layers jointly.

use std::ops::ControlFlow;

use candle_core::{DType, Tensor, Var};
use candle_nn::Optimizer;

use crate::optim::{Adam, OptimizerConfig, Sgd};
use crate::similarity::{fused, portable, KernelGeometry, Variant};
use crate::Result;

/// How to minimize one layer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Settings {
    pub variant: Variant,
    pub iterations: usize,
    pub optimizer: OptimizerConfig,
    /// Rescale every output filter to its starting Frobenius norm after each step.
    pub keep_norm: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            variant: Variant::Paper,
            iterations: 200,
            optimizer: OptimizerConfig::default(),
            keep_norm: false,
        }
    }
}

/// Which implementation runs the iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Fused on CPU, portable elsewhere.
    #[default]
    Auto,
    /// The hand-written CPU engine.
    Fused,
    /// Candle ops and autograd, on the weight's device.
    Portable,
}

/// The losses seen while minimizing, and whether the run stayed finite.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Trace {
    /// `losses[t]` is L_CS before step `t + 1`; the last entry is the loss after the last step.
    pub losses: Vec<f64>,
    /// True when the loss or the weights stopped being finite; the weights were then left unchanged.
    pub diverged: bool,
}

impl Trace {
    pub(crate) fn completed(losses: Vec<f64>) -> Self {
        Self {
            losses,
            diverged: false,
        }
    }

    pub(crate) fn diverged(losses: Vec<f64>) -> Self {
        Self {
            losses,
            diverged: true,
        }
    }
}

/// The result of minimizing one layer.
#[derive(Debug, Clone)]
pub struct Minimized {
    /// The new weight, same shape, dtype and device as the input (the input itself if diverged).
    pub weight: Tensor,
    pub trace: Trace,
    /// The engine that ran (never `Auto`).
    pub engine: Engine,
}

/// Minimizes L_CS of one conv weight (`[S, C, k...]`).
///
/// The computation runs in f64 for f64 weights and in f32 otherwise; the result is cast back to
/// the weight's dtype. `progress(iteration, loss)` is called before every step and once at the end.
pub fn minimize(
    weight: &Tensor,
    settings: &Settings,
    engine: Engine,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<Minimized> {
    minimize_while(weight, settings, engine, &mut |i, loss| {
        progress(i, loss);
        ControlFlow::Continue(())
    })
}

/// [`minimize`] that can be stopped: when `progress` breaks, the result is
/// [`crate::Error::Stopped`] and nothing else happens.
pub fn minimize_while(
    weight: &Tensor,
    settings: &Settings,
    engine: Engine,
    progress: &mut dyn FnMut(usize, f64) -> ControlFlow<()>,
) -> Result<Minimized> {
    let geometry = KernelGeometry::from_dims(weight.dims())?;
    settings.optimizer.validate()?;
    let compute = if weight.dtype() == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    let engine = match engine {
        Engine::Auto if weight.device().is_cpu() => Engine::Fused,
        Engine::Auto => Engine::Portable,
        chosen => chosen,
    };
    let (result, trace) = match engine {
        Engine::Fused => {
            let cpu = weight
                .to_device(&candle_core::Device::Cpu)?
                .to_dtype(compute)?
                .flatten_all()?;
            let trace;
            let result = if compute == DType::F64 {
                let mut data = cpu.to_vec1::<f64>()?;
                trace = fused::minimize(&mut data, &geometry, settings, progress)?;
                Tensor::from_vec(data, weight.shape(), weight.device())?
            } else {
                let mut data = cpu.to_vec1::<f32>()?;
                trace = fused::minimize(&mut data, &geometry, settings, progress)?;
                Tensor::from_vec(data, weight.shape(), weight.device())?
            };
            (result, trace)
        }
        _ => minimize_portable(&weight.to_dtype(compute)?, settings, progress)?,
    };
    let weight = if trace.diverged {
        weight.clone()
    } else {
        result.to_dtype(weight.dtype())?
    };
    Ok(Minimized {
        weight,
        trace,
        engine,
    })
}

/// The portable loop: candle autograd for the gradient and [`crate::optim`] for the step, on the
/// weight's own device and dtype.
fn minimize_portable(
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
