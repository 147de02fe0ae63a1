//! Equation 3 generalized to 2-D with input channels: the inner product of two feature maps of
//! the full cross-correlation equals the kernels' cross-correlations weighted by the input's,
//! restricted to the shifts within the kernel. And for `same` and `valid` padding, how far
//! Appendix 6.1's approximation of it is off.

use candle_core::{Device, Tensor};
use cs_init::reproduce::identity::{correlation_form, feature_map_inner_products};
use cs_init::reproduce::{padding_error, Padding};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn uniform(dims: &[usize], lo: f64, hi: f64, rng: &mut StdRng) -> Tensor {
    let n = dims.iter().product();
    let data: Vec<f64> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

/// `(S, C, k, H, W)`: k = 1, 2, 3, 5; square and non-square inputs; one and several channels.
const SHAPES: [(usize, usize, usize, usize, usize); 8] = [
    (3, 1, 1, 5, 7),
    (2, 3, 1, 4, 4),
    (2, 1, 2, 6, 4),
    (3, 2, 2, 5, 9),
    (4, 1, 3, 8, 8),
    (4, 3, 3, 8, 11),
    (3, 2, 5, 9, 6),
    (2, 4, 5, 12, 12),
];

/// `<F_i, F_j>` with F from candle's conv2d, padding k - 1, summing over input channels.
fn full_inner_products(w: &Tensor, x: &Tensor, k: usize) -> Vec<Vec<f64>> {
    let maps = x.unsqueeze(0).unwrap().conv2d(w, k - 1, 1, 1, 1).unwrap();
    let (_, s, h, wd) = maps.dims4().unwrap();
    let maps = maps.reshape((s, h * wd)).unwrap();
    maps.matmul(&maps.t().unwrap()).unwrap().to_vec2().unwrap()
}

#[test]
fn feature_map_inner_product_equals_the_correlation_form() {
    let mut rng = StdRng::seed_from_u64(11);
    for (s, c, k, h, wd) in SHAPES {
        // Inputs of both signs as well as the paper's U(0,1).
        for lo in [0.0, -1.0] {
            let w = uniform(&[s, c, k, k], -1.0, 1.0, &mut rng);
            let x = uniform(&[c, h, wd], lo, 1.0, &mut rng);
            let lhs = full_inner_products(&w, &x, k);
            let rhs = correlation_form(&w, &x).unwrap();
            for i in 0..s {
                for j in 0..s {
                    // Relative to ||F_i|| ||F_j||, the natural scale of <F_i, F_j>.
                    let scale = (lhs[i][i] * lhs[j][j]).sqrt();
                    let error = (lhs[i][j] - rhs[i * s + j]).abs() / scale;
                    assert!(
                        error < 1e-9,
                        "S={s} C={c} k={k} input {h}x{wd}, pair ({i}, {j}): {} vs {}",
                        lhs[i][j],
                        rhs[i * s + j]
                    );
                }
            }
            // The library's feature maps (explicitly padded input) are conv2d's.
            let ours = feature_map_inner_products(&w, &x, Padding::Full).unwrap();
            let flat: Vec<f64> = lhs.concat();
            for (a, b) in ours.iter().zip(&flat) {
                assert!((a - b).abs() <= 1e-12 * flat[0].abs().max(1.0));
            }
        }
    }
}

/// With same and valid padding the identity breaks: the feature maps lose their borders.
#[test]
fn less_padding_breaks_the_identity() {
    let mut rng = StdRng::seed_from_u64(12);
    let w = uniform(&[2, 2, 3, 3], -1.0, 1.0, &mut rng);
    let x = uniform(&[2, 6, 6], 0.0, 1.0, &mut rng);
    let rhs = correlation_form(&w, &x).unwrap()[1];
    for padding in [Padding::Same, Padding::Valid] {
        let lhs = feature_map_inner_products(&w, &x, padding).unwrap()[1];
        assert!((lhs - rhs).abs() > 1e-6 * rhs.abs(), "{padding:?}");
    }
    let even = uniform(&[2, 2, 2, 2], -1.0, 1.0, &mut rng);
    assert!(feature_map_inner_products(&even, &x, Padding::Same).is_err());
}

/// Appendix 6.1's approximation improves as the input grows relative to the kernel, is better
/// with same than with valid padding, and is exact with full padding.
#[test]
fn padding_error_shrinks_as_the_input_grows() {
    let draws = 60;
    for kernel in [3, 5, 7] {
        let full = padding_error(Padding::Full, kernel, 8, 2, 10, 0).unwrap();
        assert!(full.mean_relative_error < 1e-12, "{full:?}");
        let mut previous = [f64::INFINITY; 2];
        for input in [8, 16, 32] {
            let error = |padding| {
                padding_error(padding, kernel, input, 2, draws, 1)
                    .unwrap()
                    .mean_relative_error
            };
            let errors = [error(Padding::Same), error(Padding::Valid)];
            assert!(
                errors[0] < previous[0] && errors[1] < previous[1],
                "kernel {kernel} input {input}: same, valid {errors:?} after {previous:?}"
            );
            assert!(
                errors[0] < errors[1],
                "kernel {kernel} input {input}: {errors:?}"
            );
            previous = errors;
        }
    }
}
