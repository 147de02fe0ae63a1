//! The JSON report of a run (`schema_version` [`super::SCHEMA_VERSION`]), written by the command
//! line and served by the service.

use serde::Serialize;

use super::{plot, LayerReport, Totals};
use crate::minimize::Settings;
use crate::plan::KernelLayout;
use crate::probe::ProbeSettings;

/// The settings as recorded in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ReportSettings {
    #[serde(flatten)]
    pub minimize: Settings,
    pub seed: u64,
    pub device: String,
    pub engine: &'static str,
    pub layout: KernelLayout,
    pub probe: Option<ProbeSettings>,
    /// At most this many filters of a layer make its kernel |cos| (`null`: every filter).
    pub kernel_cosine_sample: Option<usize>,
}

/// The JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub schema_version: u32,
    pub tool: &'static str,
    pub version: &'static str,
    /// How the run was started (the command line, or the service's job).
    pub command_line: String,
    pub input: String,
    /// SHA-256 of the input as read (after a PyTorch file's conversion): with `version` and
    /// `settings`, what defines the output.
    pub input_sha256: String,
    /// What reading the input changed (a PyTorch file's key, stripped prefix, dropped entries).
    pub input_notes: Vec<String>,
    pub output: String,
    pub settings: ReportSettings,
    pub totals: Totals,
    pub layers: Vec<LayerReport>,
}

impl RunReport {
    /// The report as JSON text, as written to its file.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes") + "\n"
    }

    /// The report without the loss curves (the command line's `--json` summary).
    pub fn summary(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("the report serializes");
        if let Some(layers) = value.get_mut("layers").and_then(|l| l.as_array_mut()) {
            for layer in layers {
                if let Some(obj) = layer.as_object_mut() {
                    obj.remove("curve");
                }
            }
        }
        value
    }

    /// Every layer's loss curve, drawn on a log scale.
    pub fn plot(&self, format: plot::PlotFormat) -> Vec<u8> {
        let curves: Vec<plot::Series> = self
            .layers
            .iter()
            .filter_map(|l| {
                l.work().map(|w| plot::Series {
                    label: l.name.clone(),
                    points: w
                        .curve
                        .iteration
                        .iter()
                        .zip(&w.curve.loss)
                        .map(|(&i, &y)| (i as f64, y))
                        .collect(),
                })
            })
            .collect();
        plot::render(format, &format!("L_CS per layer: {}", self.input), &curves)
    }
}
