//! One checkpoint file through the whole job: plan → per-layer engine → writer → layer reports.
//!
//! Tensors are read from the (memory-mapped) input and written to the output one at a time, in
//! the order of their data, so memory is bounded by the largest layer, not by the checkpoint.

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::ControlFlow;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use super::{CheckedSettings, LayerStart, Observer, RunError};
use crate::checkpoint::{
    tensor_to_bytes, CheckpointError, HeaderEntry, SafetensorsFile, SafetensorsWriter, TensorInfo,
};
use crate::filter_sample::PairSampling;
use crate::metrics::NormRatio;
use crate::minimize::{minimize_while, Engine, Minimized, Settings};
use crate::plan::{ConvKind, ConvWeight, KernelLayout, PlanEntry};
use crate::probe::{LayerSession, Probe};
use crate::report::{
    Curve, LayerOutcome, LayerReport, ReportSettings, Totals, WeightFigures, Work,
};
use crate::similarity::RecordFigures;

/// How every layer is processed.
pub struct Job {
    pub settings: Settings,
    pub engine: Engine,
    pub device: Device,
    pub layout: KernelLayout,
    /// Measures feature-map similarity before and after, when set.
    pub probe: Option<Probe>,
    /// Which filters the kernel cosine looks at.
    pub sampling: PairSampling,
}

/// How far a run is: tensors optimized so far, out of those selected (across output files).
#[derive(Debug, Clone, Copy)]
pub struct LayerCount {
    pub done: usize,
    pub selected: usize,
}

/// One tensor on its way to the output: where it comes from and what the plan says.
#[derive(Clone, Copy)]
pub struct Item<'a> {
    pub file: &'a SafetensorsFile,
    pub tensor: &'a TensorInfo,
    pub entry: &'a PlanEntry,
}

/// Every tensor of `files`, in file order and data order, with its plan entry (`plans[i]` is the
/// plan of `files[i]`).
pub fn items<'a>(files: &'a [SafetensorsFile], plans: &'a [Vec<PlanEntry>]) -> Vec<Item<'a>> {
    files
        .iter()
        .zip(plans)
        .flat_map(|(file, plan)| {
            file.tensors()
                .iter()
                .zip(plan)
                .map(move |(tensor, entry)| Item {
                    file,
                    tensor,
                    entry,
                })
        })
        .collect()
}

/// Writes `items` as one safetensors file to `out`: optimized conv weights replaced, everything
/// else copied byte for byte. `count` continues across output files.
pub fn process<W: Write>(
    items: &[Item],
    job: &Job,
    metadata: Option<&BTreeMap<String, String>>,
    out: W,
    count: &mut LayerCount,
    observer: &mut dyn Observer,
) -> Result<(W, Vec<LayerReport>), RunError> {
    let entries = items
        .iter()
        .map(|item| HeaderEntry {
            name: item.tensor.name.clone(),
            dtype: item.tensor.dtype,
            shape: item.tensor.shape.clone(),
            len: item.tensor.end - item.tensor.begin,
        })
        .collect();
    let origin = items
        .first()
        .map(|i| i.file.path().to_path_buf())
        .unwrap_or_default();
    let io = |e| CheckpointError::io(&origin, e);
    let mut writer = SafetensorsWriter::new(out, metadata, entries).map_err(io)?;
    let mut layers = Vec::new();
    for &Item {
        file,
        tensor,
        entry,
    } in items
    {
        if observer.stop_requested() {
            return Err(RunError::Stopped);
        }
        let bytes = file.data(tensor);
        let new_bytes = match entry.kind {
            None => None,
            Some(kind) if !entry.optimize => {
                let reason = entry.reason.clone();
                let report = layer_report(entry, kind, LayerOutcome::Skipped { reason });
                observer.layer_finished(&report);
                layers.push(report);
                None
            }
            Some(kind) => {
                count.done += 1;
                observer.layer_started(&LayerStart {
                    name: &entry.name,
                    shape: &entry.shape,
                    position: count.done,
                    count: count.selected,
                    iterations: job.settings.iterations,
                });
                let (outcome, new_bytes) =
                    optimize_tensor(file, tensor, entry, job, count.done as u64, observer)?;
                let report = layer_report(entry, kind, outcome);
                observer.layer_finished(&report);
                layers.push(report);
                new_bytes
            }
        };
        writer
            .write_tensor(&tensor.name, new_bytes.as_deref().unwrap_or(bytes))
            .map_err(io)?;
        file.release(tensor);
    }
    Ok((writer.finish().map_err(io)?, layers))
}

impl Job {
    /// The job of checked settings on `device`: the engine the command line uses, the probe
    /// and the kernel cosine's sampling.
    pub fn new(settings: &CheckedSettings, device: &Device) -> Result<Self, RunError> {
        Ok(Job {
            settings: settings.minimize.clone(),
            engine: Engine::Auto,
            device: device.clone(),
            layout: settings.selection.layout,
            probe: settings
                .probe
                .clone()
                .map(|p| Probe::new(p, device))
                .transpose()?,
            sampling: settings.sampling,
        })
    }

    /// The settings as the report records them.
    pub fn report_settings(&self, seed: u64) -> ReportSettings {
        ReportSettings {
            minimize: self.settings.clone(),
            seed,
            device: crate::device::describe(&self.device).into(),
            engine: if self.device.is_cpu() {
                "fused"
            } else {
                "portable"
            },
            layout: self.layout,
            probe: self.probe.as_ref().map(|p| p.settings().clone()),
            kernel_cosine_sample: self.sampling.limit,
        }
    }

    /// The figures of a weight (PyTorch layout, f32) as the `layer`-th layer, the probe's
    /// through that layer's `session`, and its [`RecordFigures`] (`known` where the engine had
    /// them).
    fn figures(
        &self,
        weight: &Tensor,
        known: Option<RecordFigures>,
        session: Option<&LayerSession>,
        layer: u64,
    ) -> Result<(WeightFigures, RecordFigures), RunError> {
        Ok(crate::measure::weight_figures(
            weight,
            known,
            self.settings.variant,
            session,
            &self.sampling,
            layer,
        )?)
    }

    /// Minimizes a weight, telling the observer of every iteration and stopping when it asks.
    fn minimize(
        &self,
        weight: &Tensor,
        observer: &mut dyn Observer,
    ) -> Result<(Minimized, Work), RunError> {
        let start = Instant::now();
        let result = minimize_while(weight, &self.settings, self.engine, &mut |i, loss| {
            observer.iteration(i, loss);
            if observer.stop_requested() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        let work = Work {
            iterations: result.trace.losses.len().saturating_sub(1),
            seconds: start.elapsed().as_secs_f64(),
            curve: Curve::sample(&result.trace.losses),
        };
        Ok((result, work))
    }
}

/// Minimizes one conv tensor of a file; returns its outcome and its new bytes (None: keep the
/// input's).
fn optimize_tensor(
    file: &SafetensorsFile,
    tensor: &TensorInfo,
    entry: &PlanEntry,
    job: &Job,
    layer: u64,
    observer: &mut dyn Observer,
) -> Result<(LayerOutcome, Option<Vec<u8>>), RunError> {
    let input = ConvWeight::read(file, tensor, job.layout, &job.device)?;
    let (outcome, new) = optimize_weight(&input, entry, job, layer, observer)?;
    Ok((outcome, new.map(|t| tensor_to_bytes(&t)).transpose()?))
}

/// What the pipeline does to each conv tensor it optimizes, also for a weight held in memory
/// (the Python package's models, through [`ConvWeight::from_stored`]): `entry` is its plan
/// entry, `layer` its position from 1 among the selected tensors (it seeds the probe). Returns
/// the outcome and the new weight in the stored dtype and layout (None: keep the input's).
pub fn optimize_weight(
    input: &ConvWeight,
    entry: &PlanEntry,
    job: &Job,
    layer: u64,
    observer: &mut dyn Observer,
) -> Result<(LayerOutcome, Option<Tensor>), RunError> {
    let weight = input.weight();
    if !all_finite(weight)? {
        let reason = "holds NaN or Inf (or values beyond f32's range); left unchanged".into();
        return Ok((LayerOutcome::Skipped { reason }, None));
    }
    if job.settings.iterations == 0 {
        return Ok((converted(job, weight, layer)?, None));
    }
    let (mut result, work) = job.minimize(weight, observer)?;
    // The engine's figures of the weights it started from and ended with, where it has them.
    let (start, end) = result.trace.records.take().unzip();
    // One session of the probe for both measurements: the same inputs, made once.
    let session = job.probe.as_ref().map(|p| p.layer(layer));
    let (before, records_before) = job.figures(weight, start, session.as_ref(), layer)?;
    let diverged = |reason: String, work: Work| {
        let outcome = LayerOutcome::Diverged {
            before,
            reason,
            work,
        };
        Ok((outcome, None))
    };
    if result.trace.diverged {
        let reason = format!(
            "L_CS stopped being finite after {} iterations; input weights kept (lower --lr?)",
            work.iterations
        );
        return diverged(reason, work);
    }
    let (stored, written) = input.store(&result.weight)?;
    if !all_finite(&written)? {
        let reason = format!(
            "the result does not fit in {} (values overflow); input weights kept (lower --lr?)",
            entry.dtype
        );
        return diverged(reason, work);
    }
    // The engine's figures are of its f32 result, which a narrower stored dtype rounds.
    let end = end.filter(|_| input.holds_f32());
    let (after, records_after) = job.figures(&written, end, session.as_ref(), layer)?;
    let outcome = LayerOutcome::Optimized {
        before,
        after,
        norm_ratio: NormRatio::of_squares(
            &records_before.filter_squares,
            &records_after.filter_squares,
        ),
        work,
    };
    Ok((outcome, Some(stored)))
}

/// The outcome of a run without iterations: a plain conversion, whose stored bytes are kept
/// exactly (f64 would not survive f32), measured once.
fn converted(job: &Job, weight: &Tensor, layer: u64) -> Result<LayerOutcome, RunError> {
    let session = job.probe.as_ref().map(|p| p.layer(layer));
    let (before, records) = job.figures(weight, None, session.as_ref(), layer)?;
    Ok(LayerOutcome::Optimized {
        before,
        // Not measured again: the same weights.
        after: WeightFigures {
            metrics_seconds: 0.0,
            probe_seconds: 0.0,
            ..before
        },
        norm_ratio: NormRatio::of_squares(&records.filter_squares, &records.filter_squares),
        work: Work {
            iterations: 0,
            seconds: 0.0,
            curve: Curve::sample(&[before.metrics.loss]),
        },
    })
}

/// A run's totals over its `tensors` tensors and its conv `layers`, with the time since it
/// `started` and the process's peak memory.
pub fn run_totals(tensors: usize, layers: &[LayerReport], started: Instant) -> Totals {
    let mut totals = Totals::from_layers(tensors, layers);
    totals.total_seconds = started.elapsed().as_secs_f64();
    totals.peak_memory_bytes = crate::report::peak_memory_bytes();
    totals
}

/// The report of a tensor, as the pipeline writes it.
pub fn layer_report(entry: &PlanEntry, kind: ConvKind, outcome: LayerOutcome) -> LayerReport {
    LayerReport::new(&entry.name, &entry.shape, &entry.dtype, kind, outcome)
}

fn all_finite(weight: &Tensor) -> candle_core::Result<bool> {
    // `0 x` is 0 for every finite `x` and NaN for an infinite or NaN one: the sum is exactly 0
    // when all are finite, in the weight's own dtype and without overflow.
    let sum = weight
        .affine(0.0, 0.0)?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    Ok(sum == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finite_means_no_infinity_and_no_nan_in_any_dtype() {
        let device = Device::Cpu;
        for dtype in [DType::F16, DType::BF16, DType::F32, DType::F64] {
            let with = |v: f64| {
                Tensor::new(&[1.0, -2.5, v, 0.0], &device)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap()
            };
            assert!(all_finite(&with(3.0)).unwrap(), "{dtype:?}");
            assert!(!all_finite(&with(f64::NAN)).unwrap(), "{dtype:?}");
            assert!(!all_finite(&with(f64::INFINITY)).unwrap(), "{dtype:?}");
            assert!(!all_finite(&with(f64::NEG_INFINITY)).unwrap(), "{dtype:?}");
        }
        // The largest finite values sum to infinity, but are finite.
        let large = Tensor::new(&[f32::MAX; 64], &device).unwrap();
        assert!(all_finite(&large).unwrap());
    }
}
