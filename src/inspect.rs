//! A checkpoint's figures, changing nothing (`cs-init inspect`): every selected conv weight
//! measured as a run measures a layer before optimizing it, on the same probe inputs and the
//! same filter samples. The command line prints what this returns, as a table or as JSON.

use candle_core::Device;
use serde::Serialize;

use crate::input::Input;
use crate::measure::weight_figures;
use crate::metrics::LayerMetrics;
use crate::plan::{plan_files, ConvKind, ConvWeight};
use crate::probe::{Probe, ProbeSettings};
use crate::report::SCHEMA_VERSION;
use crate::run::{CheckedSettings, RunError};
use crate::Variant;

/// The figures of one conv weight.
#[derive(Debug, Clone, Serialize)]
pub struct LayerFigures {
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: ConvKind,
    #[serde(flatten)]
    pub metrics: LayerMetrics,
    /// Mean |cos| between the feature maps of filter pairs on the probe's inputs (conv2d only).
    pub feature_cosine: Option<f64>,
    /// The kernel cosine was estimated on this many filters (`null`: every pair).
    pub kernel_cosine_sampled: Option<usize>,
    /// The feature-map cosine was estimated on this many filters (`null`: every pair).
    pub feature_cosine_sampled: Option<usize>,
}

/// What `inspect` found, in the layout of `cs-init inspect --json`.
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    pub schema_version: u32,
    pub input: String,
    pub variant: Variant,
    pub probe: Option<ProbeSettings>,
    pub kernel_cosine_sample: Option<usize>,
    pub layers: Vec<LayerFigures>,
}

/// Measures every conv weight of `input` that `settings` select, on `device`; `seed` is the
/// built-in architectures' and the probe's. Each note about the input (what was read, and how)
/// goes to `note`.
pub fn inspect(
    input: &Input,
    settings: &CheckedSettings,
    seed: u64,
    device: &Device,
    note: &mut dyn FnMut(&str),
) -> Result<InspectReport, RunError> {
    let variant = settings.minimize.variant;
    let probe = settings
        .probe
        .clone()
        .map(|p| Probe::new(p, device))
        .transpose()?;
    let opened = input.open(seed)?;
    opened.notes.iter().for_each(|n| note(n));
    let tensors: Vec<_> = opened.files.iter().map(|f| f.tensors()).collect();
    let mut layers = Vec::new();
    for (file, plan) in opened
        .files
        .iter()
        .zip(plan_files(&tensors, &settings.selection))
    {
        for (tensor, entry) in file.tensors().iter().zip(plan) {
            let (Some(kind), true) = (entry.kind, entry.optimize) else {
                continue;
            };
            let weight = ConvWeight::read(file, tensor, settings.selection.layout, device)?;
            let layer = layers.len() as u64 + 1;
            let session = probe.as_ref().map(|p| p.layer(layer));
            let (figures, _) = weight_figures(
                weight.weight(),
                None,
                variant,
                session.as_ref(),
                &settings.sampling,
                layer,
            )?;
            layers.push(LayerFigures {
                name: entry.name,
                shape: entry.shape,
                kind,
                metrics: figures.metrics,
                feature_cosine: figures.feature_cosine,
                kernel_cosine_sampled: figures.kernel_cosine_sampled,
                feature_cosine_sampled: figures.feature_cosine_sampled,
            });
        }
    }
    Ok(InspectReport {
        schema_version: SCHEMA_VERSION,
        input: input.describe(),
        variant,
        probe: probe.as_ref().map(|p| p.settings().clone()),
        kernel_cosine_sample: settings.sampling.limit,
        layers,
    })
}
