//! The per-layer figures of the reports.
//!
//! L_CS is homogeneous of degree 4 in the weights, so a lower loss may only mean smaller weights.
//! The scale-free similarity and the norm ratio separate decorrelation from shrinking; the kernel
//! cosine is the "kernel orthogonality" quantity the paper argues is the wrong target.

use candle_core::{DType, Tensor};

use crate::filter_sample::FilterSample;
use crate::host::values::lane_sums;
use crate::host::{filter_squares, unit_filters, UpperGram};
use crate::similarity::{KernelGeometry, RecordFigures, Variant};
use crate::Result;

/// Figures of one conv weight.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LayerMetrics {
    /// L_CS of the weight.
    pub loss: f64,
    /// L_CS with every filter scaled to unit norm, divided by the number of filter pairs.
    pub scale_free: f64,
    /// Mean absolute cosine between flattened filters, over all pairs `i < j` (or over the
    /// pairs of a [`FilterSample`]).
    pub kernel_cosine: f64,
}

impl LayerMetrics {
    /// Measures a weight (`[S, C, k...]`, any float dtype and device), computing in f32 or f64.
    pub fn measure(weight: &Tensor, variant: Variant) -> Result<Self> {
        Self::measure_sampled(weight, variant, &FilterSample::every())
    }

    /// [`LayerMetrics::measure`] with the kernel cosine over the pairs of `sample`'s filters;
    /// L_CS and the scale-free similarity stay exact.
    pub fn measure_sampled(
        weight: &Tensor,
        variant: Variant,
        sample: &FilterSample,
    ) -> Result<Self> {
        let weight = computable(weight)?;
        let figures = RecordFigures::measure(&weight, variant)?;
        Self::measure_with(&weight, &figures, variant, sample)
    }

    /// [`LayerMetrics::measure_sampled`] of a weight whose [`RecordFigures`] the caller has
    /// (the fused engine has them for the weights it starts from and ends with): only the
    /// kernel cosine is left to compute.
    pub fn measure_with(
        weight: &Tensor,
        figures: &RecordFigures,
        variant: Variant,
        sample: &FilterSample,
    ) -> Result<Self> {
        let weight = computable(weight)?;
        let squares = &figures.filter_squares;
        let picked = match sample.picks() {
            Some(picks) => picks.iter().map(|&i| squares[i as usize]).collect(),
            None => squares.to_vec(),
        };
        Ok(Self {
            loss: figures.loss,
            scale_free: figures.scale_free(variant),
            kernel_cosine: kernel_cosine_of_unit(&unit_filters(
                &sample.select(&weight)?,
                &picked,
            )?)?,
        })
    }
}

fn computable(weight: &Tensor) -> Result<Tensor> {
    KernelGeometry::from_dims(weight.dims())?;
    Ok(match weight.dtype() {
        DType::F64 | DType::F32 => weight.clone(),
        _ => weight.to_dtype(DType::F32)?,
    })
}

/// Every filter flattened to a row: `[S, C * prod(k)]`.
fn rows(weight: &Tensor) -> Result<Tensor> {
    Ok(weight.flatten_from(1)?)
}

/// L_CS of the weight with unit-norm filters, per filter pair: comparable across layers and
/// unchanged by rescaling filters.
pub fn scale_free_similarity(weight: &Tensor, variant: Variant) -> Result<f64> {
    Ok(LayerMetrics::measure(weight, variant)?.scale_free)
}

/// Frobenius norm of every output filter.
pub fn filter_norms(weight: &Tensor) -> Result<Vec<f64>> {
    let mut norms = filter_squares(weight)?;
    norms.iter_mut().for_each(|n| *n = n.sqrt());
    Ok(norms)
}

/// Per-filter norm ratios after/before, summarized.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct NormRatio {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl NormRatio {
    /// Compares filter norms; filters that were zero before are left out.
    pub fn between(before: &Tensor, after: &Tensor) -> Result<Self> {
        Ok(Self::of_squares(
            &filter_squares(before)?,
            &filter_squares(after)?,
        ))
    }

    /// [`NormRatio::between`] from the filters' squared norms ([`filter_squares`]).
    pub fn of_squares(before: &[f64], after: &[f64]) -> Self {
        let ratios: Vec<f64> = before
            .iter()
            .zip(after)
            .filter(|(b, _)| **b > 0.0)
            .map(|(b, a)| (a / b).sqrt())
            .collect();
        if ratios.is_empty() {
            return Self {
                mean: 1.0,
                min: 1.0,
                max: 1.0,
            };
        }
        Self {
            mean: ratios.iter().sum::<f64>() / ratios.len() as f64,
            min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
            max: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

/// Mean `|cos(W_i, W_j)|` over filter pairs `i < j` (0 for a single filter).
pub fn kernel_cosine(weight: &Tensor) -> Result<f64> {
    let weight = computable(weight)?;
    kernel_cosine_of_unit(&unit_filters(&weight, &filter_squares(&weight)?)?)
}

fn kernel_cosine_of_unit(unit: &Tensor) -> Result<f64> {
    let s = unit.dim(0)?;
    if s < 2 {
        return Ok(0.0);
    }
    let rows = rows(unit)?.unsqueeze(0)?;
    let [total] = UpperGram::new(&rows)?.sum_rows(|_, _, row| lane_sums(row, |x| [x.abs()]))?;
    Ok(total / (s * (s - 1) / 2) as f64)
}
