//! Reports of a run: the JSON document, the terminal table and loss-curve plots.

pub mod plot;
mod run_report;
mod table;

pub use run_report::{ReportSettings, RunReport};
pub use table::{layer_table, plan_table, render, shape};

use serde::Serialize;

use crate::metrics::NormRatio;
use crate::plan::ConvKind;

/// Version of the JSON report layout; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// At most this many points of each loss curve are kept in reports.
pub const MAX_CURVE_POINTS: usize = 1000;

/// What happened to a conv tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Optimized,
    Skipped,
    /// The loss or weights stopped being finite; the tensor kept its input values.
    Diverged,
}

/// A loss curve: `loss[k]` is L_CS before step `iteration[k] + 1` (the last point: after the last step).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Curve {
    pub iteration: Vec<usize>,
    pub loss: Vec<f64>,
}

impl Curve {
    /// Evenly samples a trace to at most [`MAX_CURVE_POINTS`] points, first and last included.
    pub fn sample(losses: &[f64]) -> Self {
        let n = losses.len();
        let iteration: Vec<usize> = if n <= MAX_CURVE_POINTS {
            (0..n).collect()
        } else {
            let mut picks: Vec<usize> = (0..MAX_CURVE_POINTS)
                .map(|k| {
                    ((k as f64) * (n - 1) as f64 / (MAX_CURVE_POINTS - 1) as f64).round() as usize
                })
                .collect();
            picks.dedup();
            picks
        };
        let loss = iteration.iter().map(|&i| losses[i]).collect();
        Self { iteration, loss }
    }
}

/// One conv tensor of a run.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub name: String,
    /// Shape as stored in the file.
    pub shape: Vec<usize>,
    pub dtype: String,
    pub kind: ConvKind,
    pub status: Status,
    /// Why it was skipped or diverged.
    pub reason: Option<String>,
    pub loss_before: Option<f64>,
    pub loss_after: Option<f64>,
    pub scale_free_before: Option<f64>,
    pub scale_free_after: Option<f64>,
    pub norm_ratio: Option<NormRatio>,
    pub kernel_cosine_before: Option<f64>,
    pub kernel_cosine_after: Option<f64>,
    /// Mean |cos| between the feature maps of filter pairs on the probe's inputs (conv2d only).
    pub feature_cosine_before: Option<f64>,
    pub feature_cosine_after: Option<f64>,
    pub iterations: usize,
    pub seconds: f64,
    pub curve: Option<Curve>,
}

impl LayerReport {
    /// A conv tensor left alone.
    pub fn skipped(
        name: &str,
        shape: &[usize],
        dtype: &str,
        kind: ConvKind,
        reason: String,
    ) -> Self {
        Self {
            name: name.into(),
            shape: shape.to_vec(),
            dtype: dtype.into(),
            kind,
            status: Status::Skipped,
            reason: Some(reason),
            loss_before: None,
            loss_after: None,
            scale_free_before: None,
            scale_free_after: None,
            norm_ratio: None,
            kernel_cosine_before: None,
            kernel_cosine_after: None,
            feature_cosine_before: None,
            feature_cosine_after: None,
            iterations: 0,
            seconds: 0.0,
            curve: None,
        }
    }

    /// `100 (before - after) / before`, when both are known.
    pub fn reduction_percent(&self) -> Option<f64> {
        match (self.loss_before, self.loss_after) {
            (Some(b), Some(a)) if b > 0.0 => Some(100.0 * (b - a) / b),
            _ => None,
        }
    }
}

/// Run-level totals.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub tensors: usize,
    pub conv_tensors: usize,
    pub optimized: usize,
    pub skipped: usize,
    pub diverged: usize,
    /// Sum of L_CS over optimized layers, before and after.
    pub loss_before: f64,
    pub loss_after: f64,
    /// Seconds spent minimizing (all layers) and in the whole run (reading, metrics, writing too).
    pub optimize_seconds: f64,
    pub total_seconds: f64,
    /// Peak resident memory of the process (Linux's VmHWM), when the system reports it.
    pub peak_memory_bytes: Option<u64>,
}

impl Totals {
    pub fn from_layers(tensors: usize, layers: &[LayerReport]) -> Self {
        let mut t = Totals {
            tensors,
            conv_tensors: layers.len(),
            ..Totals::default()
        };
        for l in layers {
            match l.status {
                Status::Optimized => {
                    t.optimized += 1;
                    t.loss_before += l.loss_before.unwrap_or(0.0);
                    t.loss_after += l.loss_after.unwrap_or(0.0);
                }
                Status::Skipped => t.skipped += 1,
                Status::Diverged => t.diverged += 1,
            }
            t.optimize_seconds += l.seconds;
        }
        t
    }
}

/// Peak resident memory of this process so far, from `/proc/self/status` (Linux only).
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
