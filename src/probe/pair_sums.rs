//! The figures of a layer's feature maps and the arithmetic behind them: sums over filter pairs
//! of the inner products `<F_i, F_j>` and of their cosines, from the maps themselves, from the
//! factors of their Gram matrix, or from the Gram matrix itself.

use candle_core::{DType, Tensor};

use super::compute_dtype;
use super::patches::Patches;
use crate::host::gemm::matmul;
use crate::host::values::row_dots;
use crate::host::UpperGram;
use crate::{Error, Result};

/// How alike the feature maps of a layer's filters are on a batch of inputs, from their inner
/// products `G_b[i, j] = <F_i, F_j>` on input `b` (docs/math.md, "The feature-map probe").
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FeatureSimilarity {
    /// Mean over inputs and pairs `i < j` of `|G_b[i,j]| / sqrt(G_b[i,i] G_b[j,j])`; a pair with
    /// a zero map counts as orthogonal.
    pub cosine: f64,
    /// The paper's inner product, normalised per layer: `mean_abs_inner / mean_energy`, in
    /// [0, 1]. Unlike the cosine it weighs each pair by its maps' energy, and it is unchanged by
    /// scaling the whole layer (not by scaling single filters).
    pub inner: f64,
    /// Mean over inputs and pairs `i < j` of `|G_b[i,j]|`: the paper's figure as it is, which
    /// scales with the square of the weights.
    pub mean_abs_inner: f64,
    /// Mean over inputs and filters of `G_b[i,i] = ||F_i||²`.
    pub mean_energy: f64,
    /// The figures were estimated on this many filters (`MeanResponse`); `None`: exact.
    pub sampled: Option<usize>,
}

impl FeatureSimilarity {
    pub(super) fn new(
        cosine: f64,
        mean_abs_inner: f64,
        mean_energy: f64,
        sampled: Option<usize>,
    ) -> Self {
        Self {
            cosine,
            inner: if mean_energy > 0.0 {
                mean_abs_inner / mean_energy
            } else {
                0.0
            },
            mean_abs_inner,
            mean_energy,
            sampled,
        }
    }

    /// The figures of inner products `[B, S, S]` (`S >= 2`).
    pub fn from_gram(gram: &Tensor) -> Result<Self> {
        let (b, s, _) = gram.dims3()?;
        let mut sums = PairSums::new(b, s)?;
        let g = gram.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        for g in g.chunks_exact(s * s) {
            let energies: Vec<f64> = (0..s).map(|i| g[i * s + i]).collect();
            let scales = inverse_norms(&energies);
            for i in 0..s {
                let [inner, cosine] = PairSums::row(&scales, i, &g[i * s + i + 1..(i + 1) * s]);
                sums.inner += inner;
                sums.cosine += cosine;
            }
            sums.energy += energies.iter().sum::<f64>();
        }
        Ok(sums.figures())
    }

    /// The figures of feature maps `[B, S, N]`, without the whole Gram matrix: blocks of rows
    /// against the rows from theirs on (`UpperGram`), half the multiply-adds of `maps mapsᵀ`.
    pub(super) fn from_maps(maps: &Tensor) -> Result<Self> {
        Self::from_factors(maps, maps)
    }

    /// The figures of inner products `G_b = left_b right_bᵀ` (`[B, S, K]` each, `G_b` symmetric):
    /// the maps twice, or [`factored_similarity`]'s factors.
    fn from_factors(left: &Tensor, right: &Tensor) -> Result<Self> {
        let (b, s, k) = left.dims3()?;
        let mut sums = PairSums::new(b, s)?;
        // In place: widened to f64 tensors, multiplied and summed by candle, the diagonal cost a
        // small layer's probe as much as its Gram matrix.
        let energies = row_dots(left, right, k)?;
        sums.energy = energies.iter().sum();
        let scales = inverse_norms(&energies);
        [sums.inner, sums.cosine] = UpperGram::between(left, right)?
            .sum_rows(|bi, i, row| PairSums::row(&scales[bi * s..(bi + 1) * s], i, row))?;
        Ok(sums.figures())
    }
}

/// The figures of the layer's feature maps on the inputs of `patches` without the maps, for
/// layers whose patches are shorter than their maps. With `P_b` the input's patches (`[K, N]`, `K = C kh kw` values for each of the `N`
/// output positions), the maps are `F = W P_b` and `G_b = W (P_b P_bᵀ) Wᵀ`: the Gram matrix
/// costs `S² K / 2` instead of `S² N / 2`, and the convolution `S K N` becomes `K² N`. A
/// depthwise `3x3` layer on the default 16x16 probe has `K = 9` against `N = 256`.
pub(super) fn factored_similarity(weight: &Tensor, patches: &Patches) -> Result<FeatureSimilarity> {
    let (s, c, kh, kw) = weight.dims4()?;
    let dtype = compute_dtype(weight);
    let moments = patches.moments()?.to_dtype(dtype)?;
    let (b, k) = (moments.dim(0)?, c * kh * kw);
    let rows = weight
        .to_dtype(dtype)?
        .reshape((1, s, k))?
        .broadcast_as((b, s, k))?
        .contiguous()?;
    // `Σ_b` is symmetric, so `W Σ_b` needs no transpose.
    let left = matmul(&rows, &moments)?;
    FeatureSimilarity::from_factors(&left, &rows)
}

/// `1 / sqrt(e)` of every energy, 0 for a zero map (its pairs count as orthogonal): a cosine is
/// then two multiplications instead of a square root and a division.
fn inverse_norms(energies: &[f64]) -> Vec<f64> {
    energies
        .iter()
        .map(|&e| if e > 0.0 { 1.0 / e.sqrt() } else { 0.0 })
        .collect()
}

/// The sums behind [`FeatureSimilarity`].
pub(super) struct PairSums {
    batch: usize,
    filters: usize,
    cosine: f64,
    inner: f64,
    energy: f64,
}

impl PairSums {
    pub(super) fn new(batch: usize, filters: usize) -> Result<Self> {
        if filters < 2 {
            return Err(Error::Probe(format!(
                "feature-map similarity needs at least 2 filters, got {filters}"
            )));
        }
        Ok(Self {
            batch,
            filters,
            cosine: 0.0,
            inner: 0.0,
            energy: 0.0,
        })
    }

    /// The inner-product and cosine sums of row `i`: `row[k] = G_b[i, i + 1 + k]`,
    /// `scales[i] = 1 / sqrt(G_b[i, i])` ([`inverse_norms`]).
    fn row(scales: &[f64], i: usize, row: &[f64]) -> [f64; 2] {
        // Four partial sums each: with one, every addition waits for the one before, and the
        // row sums of a wide depthwise layer's Gram cost as much as its products.
        let (mut inner, mut cosine) = ([0.0; 4], [0.0; 4]);
        let (scale_i, scales) = (scales[i], &scales[i + 1..]);
        let (rows, row_scales) = (row.chunks_exact(4), scales.chunks_exact(4));
        let (mut tail_inner, mut tail_cosine) = (0.0, 0.0);
        for (&g, &scale) in rows.remainder().iter().zip(row_scales.remainder()) {
            tail_inner += g.abs();
            tail_cosine += g.abs() * scale;
        }
        for (g, scale) in rows.zip(row_scales) {
            for l in 0..4 {
                inner[l] += g[l].abs();
                cosine[l] += g[l].abs() * scale[l];
            }
        }
        let sum = |lanes: [f64; 4], tail: f64| lanes.iter().sum::<f64>() + tail;
        [sum(inner, tail_inner), sum(cosine, tail_cosine) * scale_i]
    }

    pub(super) fn figures(&self) -> FeatureSimilarity {
        let s = self.filters;
        let pairs = (self.batch * s * (s - 1) / 2) as f64;
        let (mean_abs_inner, mean_energy) =
            (self.inner / pairs, self.energy / (self.batch * s) as f64);
        FeatureSimilarity::new(self.cosine / pairs, mean_abs_inner, mean_energy, None)
    }
}
