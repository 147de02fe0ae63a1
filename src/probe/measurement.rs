//! How a layer's figures are measured, decided before anything is computed: on every filter or
//! on a sample of them (the exact figures' cost), in which form (the maps, or the factors of
//! their Gram matrix), and on patches of which dtype and layout.

use candle_core::{DType, Tensor};

use super::patches::PatchLayout;
use super::{compute_dtype, output_size, ProbePadding};
use crate::filter_sample::FilterSample;
use crate::Result;

/// The plan of one measurement of a conv2d weight `[S, C, kh, kw]` on inputs `[B, C, H, W]`.
pub(super) struct Measurement {
    /// The filters whose figures are computed: the weight's, or the sample's.
    pub measured: Tensor,
    /// Whether the figures are estimated from the sample (`MeanResponse`) rather than exact.
    pub estimated: bool,
    /// The factored form ([`super::pair_sums::factored_similarity`]) rather than the maps.
    pub factored: bool,
    /// The patches' dtype and layout.
    pub dtype: DType,
    pub layout: PatchLayout,
}

impl Measurement {
    /// The plan for `weight` on `inputs`, whose filters `sample` may stand for.
    pub fn plan(
        weight: &Tensor,
        inputs: &Tensor,
        padding: ProbePadding,
        sample: &FilterSample,
    ) -> Result<Self> {
        let (_, _, kh, kw) = weight.dims4()?;
        // Whether to estimate is a matter of the whole layer's cost, in its cheaper form.
        let whole_factored = factored_pays(weight, inputs, padding)?;
        let estimated = sample.picks().is_some()
            && ExactCost::of(weight, inputs, padding)?.of_form(whole_factored)
                > SAMPLE_ABOVE_MULTIPLY_ADDS;
        let measured = if estimated {
            sample.select(weight)?
        } else {
            weight.clone()
        };
        // The form is the measured filters': a sample of a wide layer can be narrow enough for
        // the maps to cost less than the moments.
        let factored = factored_pays(&measured, inputs, padding)?;
        // The factored form takes each input's moments in f64.
        let (dtype, layout) = if factored {
            (DType::F64, PatchLayout::PerInput)
        } else {
            let output = output_size(inputs, kh, kw, padding)?;
            (
                compute_dtype(weight),
                PatchLayout::for_maps((kh, kw), output),
            )
        };
        Ok(Self {
            measured,
            estimated,
            factored,
            dtype,
            layout,
        })
    }
}

/// Whether the factored form is the cheaper one for this layer and input. Patches shorter
/// than the maps are not enough: the moments cost `K² N` per input whatever the filter
/// count, which a narrow layer with long patches (`[10, 240, 1, 1]`) never earns back. The
/// moments are taken in f64, at about half the speed of f32.
pub(super) fn factored_pays(
    weight: &Tensor,
    inputs: &Tensor,
    padding: ProbePadding,
) -> Result<bool> {
    let cost = ExactCost::of(weight, inputs, padding)?;
    let moments_in_f64 = if compute_dtype(weight) == DType::F64 {
        0.0
    } else {
        cost.moments()
    };
    Ok(cost.factored() + moments_in_f64 < cost.direct())
}

/// A layer whose exact figures would cost more multiply-adds than this (about 5 ms here) is
/// measured on a sample of its filters when it has more than the sample's limit. Below it are
/// the depthwise layers, whose exact figures are cheap and whose estimates would err the most.
const SAMPLE_ABOVE_MULTIPLY_ADDS: f64 = (1u64 << 27) as f64;

/// Multiply-adds of a layer's exact figures on a batch of inputs, in either form.
pub(super) struct ExactCost {
    /// Inputs, filters, patch length `C kh kw` and map length `H' W'`.
    b: f64,
    s: f64,
    k: f64,
    n: f64,
}

impl ExactCost {
    fn of(weight: &Tensor, inputs: &Tensor, padding: ProbePadding) -> Result<Self> {
        let (s, c, kh, kw) = weight.dims4()?;
        let (oh, ow) = output_size(inputs, kh, kw, padding)?;
        Ok(Self {
            b: inputs.dim(0)? as f64,
            s: s as f64,
            k: (c * kh * kw) as f64,
            n: (oh * ow) as f64,
        })
    }

    /// The convolution and the upper Gram matrix of the maps.
    fn direct(&self) -> f64 {
        let Self { b, s, k, n } = *self;
        b * (s * k * n + s * s * n / 2.0)
    }

    /// [`PatchMoments`]' moments, their product with the weight and its upper Gram matrix.
    fn factored(&self) -> f64 {
        let Self { b, s, k, .. } = *self;
        self.moments() + b * (s * k * k + s * s * k / 2.0)
    }

    /// The patches' moments alone.
    fn moments(&self) -> f64 {
        let Self { b, k, n, .. } = *self;
        b * k * k * n
    }

    fn of_form(&self, factored: bool) -> f64 {
        if factored {
            self.factored()
        } else {
            self.direct()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_factored_form_is_taken_where_it_costs_less() {
        // The default probe: 4 inputs of 16x16, same padding.
        let inputs = Tensor::zeros((4, 1, 16, 16), DType::F32, &Device::Cpu).unwrap();
        let pays = |s: usize, c: usize, k: usize, dtype: DType| {
            let weight = Tensor::zeros((s, c, k, k), dtype, &Device::Cpu).unwrap();
            let inputs = inputs.broadcast_as((4, c, 16, 16)).unwrap();
            factored_pays(&weight, &inputs, ProbePadding::Same).unwrap()
        };
        // Short patches and many filters: depthwise and narrow 1x1 layers.
        assert!(pays(1152, 1, 5, DType::F32));
        assert!(pays(480, 80, 1, DType::F32));
        // Patches nearly as long as the maps, few filters: the moments would cost 25x the maps.
        assert!(!pays(10, 240, 1, DType::F32));
        // Patches longer than the maps.
        assert!(!pays(64, 64, 3, DType::F32));
        // In f64 the moments cost no more than the rest: the balance moves.
        assert!(!pays(150, 100, 1, DType::F32));
        assert!(pays(150, 100, 1, DType::F64));
    }
}
