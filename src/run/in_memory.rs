//! The pipeline's work on weights held in memory (a model's state dict, which the Python
//! package hands over) rather than read from a checkpoint: the same plan, the same per-tensor
//! work in the same order, and the same report, without files.

use std::time::Instant;

use candle_core::Device;

use super::pipeline::{layer_report, optimize_weight, run_totals, Job};
use super::{CheckedSettings, LayerStart, Observer, RunError};
use crate::checkpoint::{tensor_from_bytes, tensor_to_bytes, TensorInfo};
use crate::plan::{plan, ConvWeight, PlanEntry};
use crate::report::{LayerOutcome, RunReport};

/// A state dict as the planner sees a checkpoint: every tensor's name, dtype and shape (its
/// `begin` and `end` unused), and the stored bytes (little-endian, in its dtype and shape) of
/// the tensors that may be optimized.
pub struct StateDict<'a> {
    pub tensors: Vec<TensorInfo>,
    /// `tensors[i]`'s bytes, for the conv weights the caller can change.
    pub bytes: Vec<Option<&'a [u8]>>,
}

/// How the run is named in its report.
pub struct RunLabels {
    pub command_line: String,
    pub input: String,
}

/// What a run in memory did: its report, and every optimized weight's new bytes by index into
/// [`StateDict::tensors`] (in the weight's own dtype).
pub struct InMemoryOutcome {
    pub report: RunReport,
    pub weights: Vec<(usize, Vec<u8>)>,
}

/// Optimizes the state dict's selected conv weights on the CPU, as `cs-init` does the same
/// tensors saved as safetensors: layers in the order a safetensors file stores them (dtype,
/// then name), which is the order the command numbers them in, so that the probe's inputs are
/// the same, and the same bytes out.
pub fn run_in_memory(
    dict: &StateDict,
    settings: &CheckedSettings,
    labels: &RunLabels,
    observer: &mut dyn Observer,
) -> Result<InMemoryOutcome, RunError> {
    let started = Instant::now();
    let plan = plan(&dict.tensors, &settings.selection);
    let convs = conv_weights(dict, &plan);
    let selected = convs.iter().filter(|&&i| plan[i].optimize).count();
    if selected == 0 {
        return Err(nothing_selected(&convs, &plan, labels));
    }
    let device = Device::Cpu;
    let job = Job::new(settings, &device)?;
    let mut layers = Vec::new();
    let mut weights = Vec::new();
    let mut position = 0;
    for &i in &convs {
        if observer.stop_requested() {
            return Err(RunError::Stopped);
        }
        let (entry, info) = (&plan[i], &dict.tensors[i]);
        let kind = entry.kind.expect("conv weights only");
        let outcome = if entry.optimize {
            position += 1;
            observer.layer_started(&LayerStart {
                name: &entry.name,
                shape: &entry.shape,
                position,
                count: selected,
                iterations: job.settings.iterations,
            });
            let data = dict.bytes[i].expect("conv weights have bytes");
            let stored = tensor_from_bytes(data, info.dtype, &info.shape, &device)?;
            let weight = ConvWeight::from_stored(stored, job.layout)?;
            let (outcome, new) = optimize_weight(&weight, entry, &job, position as u64, observer)?;
            if let Some(new) = new {
                weights.push((i, tensor_to_bytes(&new)?));
            }
            outcome
        } else {
            LayerOutcome::Skipped {
                reason: entry.reason.clone(),
            }
        };
        let report = layer_report(entry, kind, outcome);
        observer.layer_finished(&report);
        layers.push(report);
    }
    let totals = run_totals(dict.tensors.len(), &layers, started);
    let report = RunReport {
        schema_version: crate::report::SCHEMA_VERSION,
        tool: "cs-init",
        version: env!("CARGO_PKG_VERSION"),
        command_line: labels.command_line.clone(),
        input: labels.input.clone(),
        // Nothing was read from or written to a file.
        input_sha256: String::new(),
        input_notes: Vec::new(),
        output: String::new(),
        settings: job.report_settings(settings.seed),
        totals,
        layers,
    };
    Ok(InMemoryOutcome { report, weights })
}

/// The conv weights given with bytes, in a safetensors file's order: dtype (descending), then
/// name.
fn conv_weights(dict: &StateDict, plan: &[PlanEntry]) -> Vec<usize> {
    let tensors = &dict.tensors;
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| {
        (tensors[b].dtype.cmp(&tensors[a].dtype)).then(tensors[a].name.cmp(&tensors[b].name))
    });
    order
        .into_iter()
        .filter(|&i| dict.bytes[i].is_some() && plan[i].kind.is_some())
        .collect()
}

/// No conv weight given is one to optimize: each one's reason, as `cs-init plan` would give it.
fn nothing_selected(convs: &[usize], plan: &[PlanEntry], labels: &RunLabels) -> RunError {
    let reasons: Vec<String> = convs
        .iter()
        .take(12)
        .map(|&i| format!("{}: {}", plan[i].name, plan[i].reason))
        .collect();
    RunError::NothingSelected {
        origin: labels.input.clone(),
        count: convs.len(),
        reasons: reasons.join("; "),
    }
}
