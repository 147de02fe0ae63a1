//! The per-layer figures of the reports.
//!
//! L_CS is homogeneous of degree 4 in the weights, so a lower loss may only mean smaller weights.
//! The scale-free similarity and the norm ratio separate decorrelation from shrinking; the kernel
//! cosine is the "kernel orthogonality" quantity the paper argues is the wrong target.

use candle_core::{DType, Tensor, WithDType};
use rayon::prelude::*;

use crate::filter_sample::FilterSample;
use crate::host_values::{row_dots, with_values, Values};
use crate::probe::UpperGram;
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

/// Every filter divided by its norm, `squares` holding their squared norms (zero filters stay
/// zero), in one pass over the weight.
fn unit_filters(weight: &Tensor, squares: &[f64]) -> Result<Tensor> {
    let len = weight.elem_count() / squares.len().max(1);
    if len == 0 {
        return Ok(weight.clone());
    }
    let norms: Vec<f64> = squares.iter().map(|q| q.sqrt()).collect();
    let (shape, device) = (weight.shape(), weight.device());
    // `computable` weights are f32 or f64, which `with_values` keeps.
    Ok(with_values(weight, |values| match values {
        Values::F32(v) => Tensor::from_vec(divided(v, len, &norms), shape, device),
        Values::F64(v) => Tensor::from_vec(divided(v, len, &norms), shape, device),
    })??)
}

/// Rows of `len` values, each divided by its norm (by 1 where the norm is 0).
fn divided<T: WithDType>(values: &[T], len: usize, norms: &[f64]) -> Vec<T> {
    let mut out = values.to_vec();
    out.par_chunks_mut(len).zip(norms).for_each(|(row, &n)| {
        let n = T::from_f64(if n > 0.0 { n } else { 1.0 });
        row.iter_mut().for_each(|x| *x /= n);
    });
    out
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

/// The sum of squares of every output filter, accumulated in f64.
pub fn filter_squares(weight: &Tensor) -> Result<Vec<f64>> {
    let s = weight.dim(0)?;
    let len = weight.elem_count() / s.max(1);
    if len == 0 {
        return Ok(vec![0.0; s]);
    }
    row_dots(weight, weight, len)
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
    let [total] = UpperGram::new(&rows)?.sum_rows(|_, _, row| [absolute_sum(row)])?;
    Ok(total / (s * (s - 1) / 2) as f64)
}

/// `sum |x|` over four partial sums (one would make every addition wait for the one before).
fn absolute_sum(row: &[f64]) -> f64 {
    let mut lanes = [0.0; 4];
    let chunks = row.chunks_exact(4);
    let tail: f64 = chunks.remainder().iter().map(|x| x.abs()).sum();
    for chunk in chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *lane += x.abs();
        }
    }
    lanes.iter().sum::<f64>() + tail
}
