//! Which filters of a layer its figures over filter pairs look at.
//!
//! The kernel cosine and the feature-map probe are means over all `S (S - 1) / 2` filter pairs:
//! in a 2048-filter layer they cost more than minimizing L_CS, which is linear in `S`. Above a
//! limit `m`, they are estimated on `m` filters drawn without replacement. The mean over the
//! pairs of such a sample is an unbiased estimate of the mean over all pairs (a U-statistic);
//! `tests/filter_sample.rs` measures its error. The draw depends only on the seed, the layer's
//! index and `S`, so a layer is measured on the same filters before and after, and a change is
//! a change on the same pairs.
//!
//! The probe corrects its sample with a control variate (`probe::sample`): with U(0,1) inputs
//! each filter's maps are dominated by its response to the input's mean, which varies from filter
//! to filter, and a plain 128-filter sample errs by about 0.02 where the probe's own input noise
//! is 0.001 (docs/math.md).

use candle_core::Tensor;
use rand::SeedableRng;

use crate::Result;

/// How many filters the kernel cosine or the probe of a layer may look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PairSampling {
    /// At most this many filters (at least 2); `None`: every filter, exactly.
    pub limit: Option<usize>,
    pub seed: u64,
}

impl PairSampling {
    /// Every pair of every layer.
    pub const EXACT: PairSampling = PairSampling {
        limit: None,
        seed: 0,
    };

    /// The filters of the layer with index `layer` and `filters` filters.
    pub fn for_layer(&self, filters: usize, layer: u64) -> FilterSample {
        let limit = match self.limit {
            Some(m) if filters > m => m.max(2),
            _ => return FilterSample { picks: None },
        };
        // A stream of its own: the probe's inputs draw from `seed` and the layer index too.
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            self.seed
                .wrapping_add(layer.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .rotate_left(17)
                ^ 0x5a17_e5f1_17e2_5eed,
        );
        let mut picks: Vec<u32> = rand::seq::index::sample(&mut rng, filters, limit)
            .into_iter()
            .map(|i| i as u32)
            .collect();
        picks.sort_unstable();
        FilterSample { picks: Some(picks) }
    }
}

/// The filters of one layer that a figure over filter pairs looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterSample {
    /// Sorted filter indices; `None`: every filter.
    picks: Option<Vec<u32>>,
}

impl FilterSample {
    /// Every filter: the figures are exact.
    pub fn every() -> Self {
        Self { picks: None }
    }

    /// How many filters were drawn; `None` when the figures look at every filter.
    pub fn sampled(&self) -> Option<usize> {
        self.picks.as_ref().map(Vec::len)
    }

    /// The drawn filters' indices, sorted; `None` when the figures look at every filter.
    pub fn picks(&self) -> Option<&[u32]> {
        self.picks.as_deref()
    }

    /// The drawn filters of a weight `[S, ...]`, in index order (the weight itself when exact).
    pub fn select(&self, weight: &Tensor) -> Result<Tensor> {
        Ok(match &self.picks {
            None => weight.clone(),
            Some(picks) => {
                let index = Tensor::from_slice(picks, picks.len(), weight.device())?;
                weight.index_select(&index, 0)?
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_layers_are_exact_and_wide_ones_draw_distinct_sorted_filters() {
        let sampling = PairSampling {
            limit: Some(8),
            seed: 3,
        };
        assert_eq!(sampling.for_layer(8, 1), FilterSample::every());
        assert_eq!(PairSampling::EXACT.for_layer(4096, 1).sampled(), None);
        let sample = sampling.for_layer(100, 1);
        let picks = sample.picks.clone().unwrap();
        assert_eq!(picks.len(), 8);
        assert!(picks.windows(2).all(|w| w[0] < w[1]), "{picks:?}");
        assert!(picks.iter().all(|&i| i < 100));
        assert_eq!(
            sample,
            sampling.for_layer(100, 1),
            "the same draw every time"
        );
        assert_ne!(
            sample,
            sampling.for_layer(100, 2),
            "another layer, another draw"
        );
    }

    #[test]
    fn select_takes_the_drawn_rows() {
        let w = Tensor::arange(0f32, 30., &candle_core::Device::Cpu)
            .unwrap()
            .reshape((10, 3, 1, 1))
            .unwrap();
        let sample = PairSampling {
            limit: Some(4),
            seed: 0,
        }
        .for_layer(10, 0);
        let picked = sample.select(&w).unwrap();
        assert_eq!(picked.dims(), &[4, 3, 1, 1]);
        for (row, &i) in sample.picks.as_ref().unwrap().iter().enumerate() {
            let got = picked.get(row).unwrap().flatten_all().unwrap();
            let want = w.get(i as usize).unwrap().flatten_all().unwrap();
            assert_eq!(
                got.to_vec1::<f32>().unwrap(),
                want.to_vec1::<f32>().unwrap()
            );
        }
    }
}
