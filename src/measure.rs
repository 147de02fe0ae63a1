//! The measuring step: a conv weight's figures at one moment (before the run, or as written),
//! from the metrics and the feature-map probe. It sits above both, so that neither needs the
//! other, and below [`crate::run`], which measures every optimized layer twice; the report only
//! holds what it returns.

use std::time::Instant;

use candle_core::Tensor;

use crate::filter_sample::PairSampling;
use crate::metrics::LayerMetrics;
use crate::probe::LayerSession;
use crate::report::WeightFigures;
use crate::similarity::{RecordFigures, Variant};
use crate::Result;

/// The figures of a weight (PyTorch layout) as the `layer`-th optimized layer, measured by
/// `probe`, that layer's session of the probe: the probe's inputs and the kernel cosine's
/// filter sample depend on the layer's index, so a layer's two moments are measured on the
/// same inputs and the same filters (the probe's sample is drawn
/// like the kernel cosine's, from its own limit). `known` are the weight's [`RecordFigures`]
/// where the engine has them; they are measured otherwise, and returned with the figures:
/// the norm ratio compares their filter norms.
pub fn weight_figures(
    weight: &Tensor,
    known: Option<RecordFigures>,
    variant: Variant,
    probe: Option<&LayerSession>,
    sampling: &PairSampling,
    layer: u64,
) -> Result<(WeightFigures, RecordFigures)> {
    let started = Instant::now();
    let sample = sampling.for_layer(weight.dim(0)?, layer);
    let records = match known {
        Some(records) => records,
        None => RecordFigures::measure(weight, variant)?,
    };
    let metrics = LayerMetrics::measure_with(weight, &records, variant, &sample)?;
    let metrics_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let squares = &records.filter_squares;
    let features = match probe {
        Some(p) => p.feature_similarity(weight, Some(squares))?,
        None => None,
    };
    let figures = WeightFigures {
        metrics,
        feature_cosine: features.map(|f| f.cosine),
        kernel_cosine_sampled: sample.sampled(),
        feature_cosine_sampled: features.and_then(|f| f.sampled),
        metrics_seconds,
        probe_seconds: started.elapsed().as_secs_f64(),
    };
    Ok((figures, records))
}
