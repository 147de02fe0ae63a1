//! Wide layers' figures from a sample of their filters.

use candle_core::Tensor;

use super::{FeatureSimilarity, Patches};
use crate::host::values::row_products;
use crate::Result;

/// Each filter's response to the mean of the probe's inputs: the control variate that makes a
/// sample of filters a good estimate of a wide layer's figures (docs/math.md).
///
/// On input `b` the map of filter `i` has the mean `μ_bi = W_i · q_b`, with `q_b` the mean of
/// the input's patches (padding included), around which it varies with an energy of about
/// `σ² ||W_i||²` per position (`σ²` the inputs' variance). For U(0,1) noise the mean dominates
/// and varies from filter to filter, and with it a filter's mean |cos| with the others: a plain
/// sample of filters errs by about 0.02. The idealized maps, constant at `μ_bi` plus that
/// energy, have figures with products `a_bi a_bj` (cosine), `g_bi g_bj` (inner product) and
/// terms `e_bi` (energy), whose means over all pairs cost `O(B S)`. The estimate is the drawn
/// filters' figure corrected by how far the idealized figure of the same filters is from its
/// all-filter mean: unbiased for any input (the correction has mean zero over draws), and
/// precise where the idealization holds.
pub(super) struct MeanResponse {
    /// `[B][S]` each.
    cosine: Vec<Vec<f64>>,
    inner: Vec<Vec<f64>>,
    energy: Vec<Vec<f64>>,
}

impl MeanResponse {
    /// The idealized figures of every filter of `weight`, whose squared norms are `squares`,
    /// on inputs whose values have the variance `variance` and whose patches are `patches`.
    pub(super) fn new(
        weight: &Tensor,
        squares: &[f64],
        variance: f64,
        patches: &Patches,
    ) -> Result<Self> {
        let positions = patches.positions() as f64;
        let patch_means = patches.means()?;
        let batch = patch_means.dim(0)?;
        // `W Qᵀ`, `[S][B]`: each filter's map mean on each input.
        let map_means = row_products(weight, &patch_means, patch_means.dim(1)?)?;
        let (mut cosine, mut inner, mut energy) = (Vec::new(), Vec::new(), Vec::new());
        for b in 0..batch {
            let (mut a, mut g, mut e) = (Vec::new(), Vec::new(), Vec::new());
            let means = map_means.iter().skip(b).step_by(batch);
            for (m, q) in means.zip(squares) {
                let (dc, ac) = (m * m, variance * q);
                a.push(if dc + ac > 0.0 {
                    (dc / (dc + ac)).sqrt()
                } else {
                    0.0
                });
                g.push((positions * dc).sqrt());
                e.push(positions * (dc + ac));
            }
            cosine.push(a);
            inner.push(g);
            energy.push(e);
        }
        Ok(Self {
            cosine,
            inner,
            energy,
        })
    }

    /// The layer's figures from those of the filters `picks` (`drawn`).
    pub(super) fn estimate(&self, drawn: &FeatureSimilarity, picks: &[u32]) -> FeatureSimilarity {
        // `drawn`, less the idealized figure of the drawn filters, plus that of all filters;
        // each averaged over the inputs.
        let corrected = |drawn: f64, of: &[Vec<f64>], mean: fn(&[f64]) -> f64| {
            let (mut picked, mut all) = (0.0, 0.0);
            for v in of {
                picked += mean(&picks.iter().map(|&i| v[i as usize]).collect::<Vec<_>>());
                all += mean(v);
            }
            let inputs = of.len() as f64;
            (drawn - picked / inputs + all / inputs).max(0.0)
        };
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        FeatureSimilarity::new(
            corrected(drawn.cosine, &self.cosine, pair_mean).min(1.0),
            corrected(drawn.mean_abs_inner, &self.inner, pair_mean),
            corrected(drawn.mean_energy, &self.energy, mean),
            Some(picks.len()),
        )
    }
}

/// The mean of `v_i v_j` over pairs `i < j`, in `O(n)`.
fn pair_mean(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let (sum, squares) = v.iter().fold((0.0, 0.0), |(s, q), x| (s + x, q + x * x));
    (sum * sum - squares) / (n * (n - 1.0))
}
