//! The literal Convolutional Similarity, straight from its definition: every entry of every full
//! cross-correlation `W[i,c1] ⊛ W[j,c2]` of the pair set, squared and summed.
//!
//! It costs `O(S² C² k⁴)` and exists only as the reference the fast paths are tested against (and
//! for `check` mode). It is built from candle ops, so autograd differentiates it too.

use candle_core::{DType, Tensor};

use super::{KernelGeometry, Variant};
use crate::Result;

/// L_CS computed literally. Works on any dtype and device candle's matmul supports.
pub fn conv_similarity(weight: &Tensor, variant: Variant) -> Result<Tensor> {
    let geometry = KernelGeometry::from_dims(weight.dims())?;
    let (s, c) = (geometry.filters, geometry.channels);
    let kernels = s * c;
    let mut k = [1usize; 3];
    k[3 - geometry.kernel.len()..].copy_from_slice(&geometry.kernel);
    let positions = geometry.positions();

    // One kernel plane per row: row a = (i, c1) with a = i * C + c1.
    let planes = weight.reshape((kernels, k[0], k[1], k[2]))?;
    let flat = planes.reshape((kernels, positions))?;
    // Zero padding by k-1 on every side makes every full shift a plain slice.
    let mut padded = planes.clone();
    for (d, &kd) in k.iter().enumerate() {
        padded = padded.pad_with_zeros(d + 1, kd - 1, kd - 1)?;
    }

    let mask: Vec<f64> = (0..kernels * kernels)
        .map(|ab| {
            let (a, b) = (ab / kernels, ab % kernels);
            f64::from(u8::from(variant.includes(a / c, a % c, b / c, b % c)))
        })
        .collect();
    let mask =
        Tensor::from_vec(mask, (kernels, kernels), weight.device())?.to_dtype(weight.dtype())?;

    let mut total = Tensor::zeros((), weight.dtype(), weight.device())?;
    for shift in geometry.shifts().full_shifts() {
        // (W_a ⊛ W_b)[n] = sum_p W_a[p] W_b[p + n]: the slice of padded W_b starting at (k-1) + n.
        let mut shifted = padded.clone();
        for d in 0..3 {
            let start = (k[d] as isize - 1 + shift[d]) as usize;
            shifted = shifted.narrow(d + 1, start, k[d])?;
        }
        let shifted = shifted.contiguous()?.reshape((kernels, positions))?;
        let cross = flat.matmul(&shifted.t()?)?; // cross[a, b] = (W_a ⊛ W_b)[n]
        total = (total + cross.sqr()?.mul(&mask)?.sum_all()?)?;
    }
    Ok(total)
}

/// The literal L_CS as an `f64` number, computed in `f64` whatever the weight's dtype.
pub fn conv_similarity_value(weight: &Tensor, variant: Variant) -> Result<f64> {
    Ok(conv_similarity(&weight.to_dtype(DType::F64)?, variant)?.to_scalar::<f64>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn hand_computed_one_dimensional_pair() {
        // K0 = [1, 2], K1 = [3, 4]: K0 ⊛ K1 = [1*4, 1*3 + 2*4, 2*3] = [4, 11, 6]; squares sum to 173.
        let w = Tensor::new(&[[[1f64, 2.]], [[3., 4.]]], &Device::Cpu).unwrap();
        for variant in Variant::ALL {
            let loss = conv_similarity(&w, variant)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert_eq!(loss, 173.0, "{variant}");
        }
    }

    #[test]
    fn hand_computed_channels() {
        // Two filters with two channels of length 1: terms are products of scalars.
        // W0 = [1, 2], W1 = [3, 5]. Paper: (1*3)² + (1*5)² + (2*3)² + (2*5)² = 9+25+36+100 = 170.
        // Same channel: (1*3)² + (2*5)² = 109.
        let w = Tensor::new(&[[[1f64], [2.]], [[3.], [5.]]], &Device::Cpu).unwrap();
        let value = |v| conv_similarity(&w, v).unwrap().to_scalar::<f64>().unwrap();
        assert_eq!(value(Variant::Paper), 170.0);
        assert_eq!(value(Variant::Adjacent), 170.0);
        assert_eq!(value(Variant::SameChannel), 109.0);
        assert_eq!(value(Variant::AdjacentSameChannel), 109.0);
    }

    #[test]
    fn adjacent_skips_distant_filters() {
        // Three 1x1 single-channel filters a, b, c: paper sums ab, ac, bc; adjacent only ab, bc.
        let w = Tensor::new(&[[[[2f64]]], [[[3.]]], [[[5.]]]], &Device::Cpu).unwrap();
        let value = |v| conv_similarity(&w, v).unwrap().to_scalar::<f64>().unwrap();
        assert_eq!(value(Variant::Paper), 36.0 + 100.0 + 225.0);
        assert_eq!(value(Variant::Adjacent), 36.0 + 225.0);
    }
}
