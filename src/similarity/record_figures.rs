//! What one pass of a layer's records tells beyond L_CS.

use candle_core::Tensor;

use super::{conv_similarity_value, fused, KernelGeometry, Variant};
use crate::host::unit_filters;
use crate::host::values::{row_dots, with_values, Values};
use crate::Result;

/// L_CS of a conv weight, L_CS of its filters scaled to unit norm, and each filter's squared
/// norm. A record `R_i` is quadratic in its filter, so the unit filters' records are
/// `R_i / ||W_i||²`: the fused engine gets all three from the records it keeps anyway, for one
/// pass over the weights for the norms (docs/math.md, "The reports' figures").
#[derive(Debug, Clone, PartialEq)]
pub struct RecordFigures {
    pub loss: f64,
    pub unit_loss: f64,
    /// `||W_i||²` of every filter, summed in f64.
    pub filter_squares: Vec<f64>,
}

impl RecordFigures {
    /// The figures of a weight (`[S, C, k...]`; f32 and f64 computed as they are, other dtypes
    /// in f64): one pass of the fused engine's records on CPU, two evaluations of the loss
    /// elsewhere.
    pub fn measure(weight: &Tensor, variant: Variant) -> Result<Self> {
        if !weight.device().is_cpu() {
            return Self::by_evaluation(weight, variant);
        }
        let geometry = KernelGeometry::from_dims(weight.dims())?;
        with_values(weight, |values| match values {
            Values::F32(v) => fused::record_figures(v, &geometry, variant),
            Values::F64(v) => fused::record_figures(v, &geometry, variant),
        })
    }

    /// The figures from the loss of the weight and of its unit filters, on the weight's device.
    fn by_evaluation(weight: &Tensor, variant: Variant) -> Result<Self> {
        let geometry = KernelGeometry::from_dims(weight.dims())?;
        let filter_squares = row_dots(weight, weight, geometry.filter_len().max(1))?;
        let unit = unit_filters(weight, &filter_squares)?;
        Ok(Self {
            loss: conv_similarity_value(weight, variant)?,
            unit_loss: conv_similarity_value(&unit, variant)?,
            filter_squares,
        })
    }

    /// The scale-free similarity: the unit filters' L_CS per filter pair (0 without pairs).
    pub fn scale_free(&self, variant: Variant) -> f64 {
        match variant.filter_pairs(self.filter_squares.len()) {
            0 => 0.0,
            pairs => self.unit_loss / pairs as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn the_figures_are_the_loss_of_the_weight_and_of_its_unit_filters() {
        let device = Device::Cpu;
        for variant in Variant::ALL {
            for dims in [
                &[6usize, 3, 3, 3][..],
                &[5, 1, 7, 7],
                &[4, 2, 9],
                &[3, 2, 2, 1, 3],
            ] {
                // Filter 1 is zero: it has no direction and stays zero among the unit filters.
                let mut mask = vec![1.0; dims[0]];
                mask[1] = 0.0;
                let mut per_filter = vec![1; dims.len()];
                per_filter[0] = dims[0];
                let mask = Tensor::from_vec(mask, per_filter.as_slice(), &device).unwrap();
                let weight = Tensor::randn(0f64, 1., dims, &device)
                    .unwrap()
                    .broadcast_mul(&mask)
                    .unwrap();
                let literal = |w: &Tensor| {
                    crate::similarity::literal::conv_similarity(w, variant)
                        .unwrap()
                        .to_scalar::<f64>()
                        .unwrap()
                };
                let squares: Vec<f64> = weight
                    .sqr()
                    .unwrap()
                    .flatten_from(1)
                    .unwrap()
                    .sum(1)
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let norms: Vec<f64> = squares
                    .iter()
                    .map(|&q| if q > 0.0 { q.sqrt() } else { 1.0 })
                    .collect();
                let unit = weight
                    .broadcast_div(&Tensor::from_vec(norms, per_filter, &device).unwrap())
                    .unwrap();
                let (want_loss, want_unit) = (literal(&weight), literal(&unit));
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-10 * (1.0 + b.abs());
                // The fused records in f64 and f32, and the evaluations other devices use.
                let f32_weight = weight.to_dtype(DType::F32).unwrap();
                for (figures, tol) in [
                    (RecordFigures::measure(&weight, variant).unwrap(), 1e-10),
                    (
                        RecordFigures::by_evaluation(&weight, variant).unwrap(),
                        1e-10,
                    ),
                    (RecordFigures::measure(&f32_weight, variant).unwrap(), 1e-5),
                ] {
                    let close = |a: f64, b: f64| (a - b).abs() <= tol * (1.0 + b.abs());
                    assert!(close(figures.loss, want_loss), "{variant} {dims:?}");
                    assert!(close(figures.unit_loss, want_unit), "{variant} {dims:?}");
                    for (got, want) in figures.filter_squares.iter().zip(&squares) {
                        assert!(close(*got, *want), "{variant} {dims:?}");
                    }
                }
                let pairs = variant.filter_pairs(dims[0]) as f64;
                let figures = RecordFigures::measure(&weight, variant).unwrap();
                assert!(close(figures.scale_free(variant), want_unit / pairs));
            }
        }
    }
}
