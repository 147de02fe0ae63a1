//! Reports of a run: the JSON document, the terminal table and loss-curve plots.

pub mod plot;
mod run_report;
mod table;

pub use run_report::{ReportSettings, RunReport};
pub use table::{layer_table, plan_table, render, shape};

use serde::Serialize;

use crate::metrics::{LayerMetrics, NormRatio};
use crate::plan::ConvKind;

/// Version of the JSON report layout; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// At most this many points of each loss curve are kept in reports.
pub const MAX_CURVE_POINTS: usize = 1000;

/// What happened to a conv tensor, in one word (the report's `status`).
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

/// Figures of a conv weight at one moment: before the run, or as written
/// ([`crate::measure::weight_figures`] measures them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightFigures {
    pub metrics: LayerMetrics,
    /// Mean |cos| between the feature maps of filter pairs on the probe's inputs (conv2d only).
    pub feature_cosine: Option<f64>,
    /// The kernel cosine was estimated on this many filters (`None`: over every pair).
    pub kernel_cosine_sampled: Option<usize>,
    /// The feature-map cosine was estimated on this many filters (`None`: over every pair).
    pub feature_cosine_sampled: Option<usize>,
    /// Seconds spent on `metrics` and on `feature_cosine`.
    pub metrics_seconds: f64,
    pub probe_seconds: f64,
}

/// The optimizer's work on a tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    /// Steps taken (up to the divergence, for a diverged tensor).
    pub iterations: usize,
    pub seconds: f64,
    pub curve: Curve,
}

/// What happened to a conv tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerOutcome {
    /// Left alone: the selection rules, or a weight holding NaN or Inf.
    Skipped { reason: String },
    Optimized {
        before: WeightFigures,
        after: WeightFigures,
        norm_ratio: NormRatio,
        work: Work,
    },
    /// The loss or the weights stopped being finite; the tensor kept its input values.
    Diverged {
        before: WeightFigures,
        reason: String,
        work: Work,
    },
}

/// One conv tensor of a run. Serialized in the flat layout of `schema_version` 1.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(into = "LayerRecord")]
pub struct LayerReport {
    pub name: String,
    /// Shape as stored in the file.
    pub shape: Vec<usize>,
    pub dtype: String,
    pub kind: ConvKind,
    pub outcome: LayerOutcome,
}

impl LayerReport {
    pub fn new(
        name: &str,
        shape: &[usize],
        dtype: &str,
        kind: ConvKind,
        outcome: LayerOutcome,
    ) -> Self {
        Self {
            name: name.into(),
            shape: shape.to_vec(),
            dtype: dtype.into(),
            kind,
            outcome,
        }
    }

    pub fn status(&self) -> Status {
        match self.outcome {
            LayerOutcome::Skipped { .. } => Status::Skipped,
            LayerOutcome::Optimized { .. } => Status::Optimized,
            LayerOutcome::Diverged { .. } => Status::Diverged,
        }
    }

    /// Why it was skipped or diverged.
    pub fn reason(&self) -> Option<&str> {
        match &self.outcome {
            LayerOutcome::Skipped { reason } | LayerOutcome::Diverged { reason, .. } => {
                Some(reason)
            }
            LayerOutcome::Optimized { .. } => None,
        }
    }

    pub fn before(&self) -> Option<&WeightFigures> {
        match &self.outcome {
            LayerOutcome::Optimized { before, .. } | LayerOutcome::Diverged { before, .. } => {
                Some(before)
            }
            LayerOutcome::Skipped { .. } => None,
        }
    }

    pub fn after(&self) -> Option<&WeightFigures> {
        match &self.outcome {
            LayerOutcome::Optimized { after, .. } => Some(after),
            _ => None,
        }
    }

    pub fn norm_ratio(&self) -> Option<&NormRatio> {
        match &self.outcome {
            LayerOutcome::Optimized { norm_ratio, .. } => Some(norm_ratio),
            _ => None,
        }
    }

    pub fn work(&self) -> Option<&Work> {
        match &self.outcome {
            LayerOutcome::Optimized { work, .. } | LayerOutcome::Diverged { work, .. } => {
                Some(work)
            }
            LayerOutcome::Skipped { .. } => None,
        }
    }

    /// Seconds spent minimizing.
    pub fn seconds(&self) -> f64 {
        self.work().map_or(0.0, |w| w.seconds)
    }

    /// Seconds spent on one kind of figure, before and after together.
    pub fn figure_seconds(&self, seconds: fn(&WeightFigures) -> f64) -> f64 {
        self.before().map_or(0.0, seconds) + self.after().map_or(0.0, seconds)
    }

    /// `100 (before - after) / before`, when both are known.
    pub fn reduction_percent(&self) -> Option<f64> {
        match (self.before(), self.after()) {
            (Some(b), Some(a)) if b.metrics.loss > 0.0 => {
                Some(100.0 * (b.metrics.loss - a.metrics.loss) / b.metrics.loss)
            }
            _ => None,
        }
    }
}

/// A layer in the report's JSON (`schema_version` 1): flat `_before`/`_after` fields, `null`
/// where a figure does not exist.
#[derive(Serialize)]
struct LayerRecord {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    kind: ConvKind,
    status: Status,
    reason: Option<String>,
    loss_before: Option<f64>,
    loss_after: Option<f64>,
    scale_free_before: Option<f64>,
    scale_free_after: Option<f64>,
    norm_ratio: Option<NormRatio>,
    kernel_cosine_before: Option<f64>,
    kernel_cosine_after: Option<f64>,
    feature_cosine_before: Option<f64>,
    feature_cosine_after: Option<f64>,
    kernel_cosine_sampled: Option<usize>,
    feature_cosine_sampled: Option<usize>,
    iterations: usize,
    metrics_seconds: f64,
    probe_seconds: f64,
    seconds: f64,
    curve: Option<Curve>,
}

impl From<LayerReport> for LayerRecord {
    fn from(l: LayerReport) -> Self {
        let (before, after) = (l.before().copied(), l.after().copied());
        let figure = |f: Option<WeightFigures>, pick: fn(&WeightFigures) -> Option<f64>| {
            f.as_ref().and_then(pick)
        };
        Self {
            status: l.status(),
            reason: l.reason().map(str::to_string),
            loss_before: figure(before, |f| Some(f.metrics.loss)),
            loss_after: figure(after, |f| Some(f.metrics.loss)),
            scale_free_before: figure(before, |f| Some(f.metrics.scale_free)),
            scale_free_after: figure(after, |f| Some(f.metrics.scale_free)),
            norm_ratio: l.norm_ratio().copied(),
            kernel_cosine_before: figure(before, |f| Some(f.metrics.kernel_cosine)),
            kernel_cosine_after: figure(after, |f| Some(f.metrics.kernel_cosine)),
            feature_cosine_before: figure(before, |f| f.feature_cosine),
            feature_cosine_after: figure(after, |f| f.feature_cosine),
            kernel_cosine_sampled: before.and_then(|f| f.kernel_cosine_sampled),
            feature_cosine_sampled: before.and_then(|f| f.feature_cosine_sampled),
            metrics_seconds: l.figure_seconds(|f| f.metrics_seconds),
            probe_seconds: l.figure_seconds(|f| f.probe_seconds),
            iterations: l.work().map_or(0, |w| w.iterations),
            seconds: l.seconds(),
            curve: l.work().map(|w| w.curve.clone()),
            name: l.name,
            shape: l.shape,
            dtype: l.dtype,
            kind: l.kind,
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
    /// Seconds spent on the per-layer metrics and on the feature-map probe, before and after.
    pub metrics_seconds: f64,
    pub probe_seconds: f64,
    pub total_seconds: f64,
    /// Peak resident memory of the process (Linux's VmHWM), when the system reports it.
    pub peak_memory_bytes: Option<u64>,
    /// Mean over the optimized layers the probe measured of their feature-map |cos|, before
    /// and after; `None` without the probe or without such a layer.
    pub feature_cosine_before: Option<f64>,
    pub feature_cosine_after: Option<f64>,
    /// Optimized layers the two means above are taken over.
    pub feature_cosine_layers: usize,
    /// Mean over the optimized layers of their mean filter norm ratio (after / before).
    pub norm_ratio_mean: Option<f64>,
    /// Run-level warnings, one line each (the command line prints them).
    pub warnings: Vec<String>,
}

impl Totals {
    pub fn from_layers(tensors: usize, layers: &[LayerReport]) -> Self {
        let mut t = Totals {
            tensors,
            conv_tensors: layers.len(),
            ..Totals::default()
        };
        let (mut cosine_before, mut cosine_after, mut norm_ratio) = (0.0, 0.0, 0.0);
        for l in layers {
            match &l.outcome {
                LayerOutcome::Optimized {
                    before,
                    after,
                    norm_ratio: ratio,
                    ..
                } => {
                    t.optimized += 1;
                    t.loss_before += before.metrics.loss;
                    t.loss_after += after.metrics.loss;
                    norm_ratio += ratio.mean;
                    if let (Some(b), Some(a)) = (before.feature_cosine, after.feature_cosine) {
                        t.feature_cosine_layers += 1;
                        cosine_before += b;
                        cosine_after += a;
                    }
                }
                LayerOutcome::Skipped { .. } => t.skipped += 1,
                LayerOutcome::Diverged { .. } => t.diverged += 1,
            }
            t.optimize_seconds += l.seconds();
            t.metrics_seconds += l.figure_seconds(|f| f.metrics_seconds);
            t.probe_seconds += l.figure_seconds(|f| f.probe_seconds);
        }
        if t.optimized > 0 {
            t.norm_ratio_mean = Some(norm_ratio / t.optimized as f64);
        }
        if t.feature_cosine_layers > 0 {
            let n = t.feature_cosine_layers as f64;
            t.feature_cosine_before = Some(cosine_before / n);
            t.feature_cosine_after = Some(cosine_after / n);
        }
        t.warnings.extend(t.similarity_warning());
        t
    }

    /// The warning that L_CS fell while the feature maps did not become less alike. On a
    /// freshly initialized network L_CS falls by shrinking the filters, which leaves their
    /// feature maps as alike as before (docs/reproduction.md, "Does minimizing L_CS decorrelate
    /// feature maps?"); the norm ratio in the warning shows whether that is what happened.
    fn similarity_warning(&self) -> Option<String> {
        let (before, after) = (self.feature_cosine_before?, self.feature_cosine_after?);
        if self.loss_after >= self.loss_before || after < before {
            return None;
        }
        let reduction = 100.0 * (1.0 - self.loss_after / self.loss_before);
        let norm = self.norm_ratio_mean.map_or(String::new(), |r| {
            format!(", mean filter norm ratio {r:.3}")
        });
        Some(format!(
            "total L_CS fell {reduction:.1} % but the mean feature-map |cos| did not \
             ({before:.3} -> {after:.3} over {} layers){norm}: L_CS has degree 4 in the \
             weights, so shrinking filters lowers it without making their feature maps less alike",
            self.feature_cosine_layers
        ))
    }
}

/// Peak resident memory of this process so far, from `/proc/self/status` (Linux only).
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
