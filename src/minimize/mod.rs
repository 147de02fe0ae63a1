//! Minimizing L_CS of one layer: the settings, the loss trace, and the two loops ([`fused`] on
//! CPU, `portable` on any device) that run an engine's iterations.
//!
//! Layers are independent (docs/math.md), so a checkpoint is processed one layer at a time, each
//! with all of its iterations, and the result equals minimizing the sum over layers jointly.

use std::ops::ControlFlow;

pub mod fused;
mod portable;

use candle_core::{DType, Tensor};

use crate::optim::OptimizerConfig;
use crate::similarity::{KernelGeometry, RecordFigures, Variant};
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
    /// The [`RecordFigures`] of the weights the run started from and ended with (in the engine's
    /// dtype), where the engine had them from its records: the fused engine, for a run that
    /// completed.
    #[serde(skip)]
    pub records: Option<(RecordFigures, RecordFigures)>,
}

impl Trace {
    pub(crate) fn completed(losses: Vec<f64>) -> Self {
        Self {
            losses,
            diverged: false,
            records: None,
        }
    }

    pub(crate) fn diverged(losses: Vec<f64>) -> Self {
        Self {
            losses,
            diverged: true,
            records: None,
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
///
/// The fused engine makes one or two parallel calls per iteration. Called from outside a rayon
/// pool, each waits for a pool thread to wake, which on a layer of a few thousand weights costs
/// more than the work: run many small layers inside `ThreadPool::install` (or
/// [`crate::run::with_threads`]), as the command line and the service do.
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
        _ => portable::minimize(&weight.to_dtype(compute)?, settings, progress)?,
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
