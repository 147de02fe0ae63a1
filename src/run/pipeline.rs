//! One checkpoint file through the whole job: plan → per-layer engine → writer → layer reports.
//!
//! Tensors are read from the (memory-mapped) input and written to the output one at a time, in
//! the order of their data, so memory is bounded by the largest layer, not by the checkpoint.

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::ControlFlow;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use super::{LayerStart, Observer, RunError};
use crate::checkpoint::{
    tensor_from_bytes, tensor_to_bytes, CheckpointError, HeaderEntry, SafetensorsFile,
    SafetensorsWriter, TensorInfo,
};
use crate::metrics::{LayerMetrics, NormRatio};
use crate::minimize::{minimize_while, Engine, Settings};
use crate::plan::{KernelLayout, PlanEntry};
use crate::probe::Probe;
use crate::report::{Curve, LayerReport, Status};

/// How every layer is processed.
pub struct Job {
    pub settings: Settings,
    pub engine: Engine,
    pub device: Device,
    pub layout: KernelLayout,
    /// Measures feature-map similarity before and after, when set.
    pub probe: Option<Probe>,
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
                let report = LayerReport::skipped(
                    &entry.name,
                    &entry.shape,
                    &entry.dtype,
                    kind,
                    entry.reason.clone(),
                );
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
                let (report, new_bytes) =
                    optimize_tensor(file, tensor, entry, kind, job, count.done as u64, observer)?;
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

/// Minimizes one conv tensor; returns its report and its new bytes (None: keep the input's).
fn optimize_tensor(
    file: &SafetensorsFile,
    tensor: &TensorInfo,
    entry: &PlanEntry,
    kind: crate::plan::ConvKind,
    job: &Job,
    layer: u64,
    observer: &mut dyn Observer,
) -> Result<(LayerReport, Option<Vec<u8>>), RunError> {
    let probe = |w: &Tensor| -> Result<Option<f64>, RunError> {
        match &job.probe {
            Some(p) => Ok(p.feature_cosine(w, layer)?),
            None => Ok(None),
        }
    };
    let settings = &job.settings;
    let rank = tensor.shape.len();
    let stored = tensor_from_bytes(file.data(tensor), tensor.dtype, &tensor.shape, &job.device)?;
    let weight = to_f32_oihw(&stored, job.layout)?;
    let mut report =
        LayerReport::skipped(&entry.name, &entry.shape, &entry.dtype, kind, String::new());
    report.reason = None;
    if !all_finite(&weight)? {
        report.reason =
            Some("holds NaN or Inf (or values beyond f32's range); left unchanged".into());
        return Ok((report, None));
    }
    let before = LayerMetrics::measure(&weight, settings.variant)?;
    report.loss_before = Some(before.loss);
    report.scale_free_before = Some(before.scale_free);
    report.kernel_cosine_before = Some(before.kernel_cosine);
    report.feature_cosine_before = probe(&weight)?;
    if settings.iterations == 0 {
        // A plain conversion: the stored bytes are kept exactly (f64 would not survive f32).
        report.status = Status::Optimized;
        report.loss_after = report.loss_before;
        report.scale_free_after = report.scale_free_before;
        report.kernel_cosine_after = report.kernel_cosine_before;
        report.feature_cosine_after = report.feature_cosine_before;
        report.norm_ratio = Some(NormRatio::between(&weight, &weight)?);
        report.curve = Some(Curve::sample(&[before.loss]));
        return Ok((report, None));
    }

    let start = Instant::now();
    let result = minimize_while(&weight, settings, job.engine, &mut |i, loss| {
        observer.iteration(i, loss);
        if observer.stop_requested() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    report.seconds = start.elapsed().as_secs_f64();
    report.curve = Some(Curve::sample(&result.trace.losses));
    if result.trace.diverged {
        report.status = Status::Diverged;
        report.iterations = result.trace.losses.len().saturating_sub(1);
        report.reason = Some(format!(
            "L_CS stopped being finite after {} iterations; input weights kept (lower --lr?)",
            report.iterations
        ));
        return Ok((report, None));
    }
    report.iterations = settings.iterations;
    let new_stored = result
        .weight
        .permute(job.layout.from_oihw_permutation(rank))?
        .contiguous()?
        .to_dtype(stored.dtype())?;
    // Figures of what is written, after rounding to the stored dtype.
    let written = to_f32_oihw(&new_stored, job.layout)?;
    if !all_finite(&written)? {
        report.status = Status::Diverged;
        report.reason = Some(format!(
            "the result does not fit in {} (values overflow); input weights kept (lower --lr?)",
            entry.dtype
        ));
        return Ok((report, None));
    }
    let after = LayerMetrics::measure(&written, settings.variant)?;
    report.status = Status::Optimized;
    report.loss_after = Some(after.loss);
    report.scale_free_after = Some(after.scale_free);
    report.kernel_cosine_after = Some(after.kernel_cosine);
    report.feature_cosine_after = probe(&written)?;
    report.norm_ratio = Some(NormRatio::between(&weight, &written)?);
    Ok((report, Some(tensor_to_bytes(&new_stored)?)))
}

fn to_f32_oihw(stored: &Tensor, layout: KernelLayout) -> candle_core::Result<Tensor> {
    stored
        .permute(layout.to_oihw_permutation(stored.rank()))?
        .contiguous()?
        .to_dtype(DType::F32)
}

fn all_finite(weight: &Tensor) -> candle_core::Result<bool> {
    // In f64, so that large but finite weights cannot overflow the sum.
    let sum = weight
        .to_dtype(DType::F64)?
        .abs()?
        .sum_all()?
        .to_scalar::<f64>()?;
    Ok(sum.is_finite())
}
