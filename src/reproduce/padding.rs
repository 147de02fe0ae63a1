//! How far Appendix 6.1's approximation is off for `same` and `valid` padding.
//!
//! With full padding, Equation 3 is exact ([`super::identity`]). With less padding the feature
//! maps lose their border positions, and the paper argues (Equations 19, 20) that the right-hand
//! side still approximates `<F_i, F_j>` when the kernel is small next to the input. This module
//! measures the error on random draws as the paper's experiments draw them (kernels `U(-1,1)`,
//! inputs `U(0,1)`), in 2-D with channels.
//!
//! The error of one draw relative to its exact value, `|approx - exact| / |exact|`, has no finite
//! mean: the exact inner product has a positive density at 0. So the "mean relative error" here is
//! the ratio of means `E|approx - exact| / E|exact|`, with the median of the per-draw ratio next to
//! it.

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::identity::{correlation_form, feature_map_inner_products};
use super::Padding;
use crate::Result;

/// Kernel sizes of the appendix table.
pub const KERNELS: [usize; 3] = [3, 5, 7];
/// Input sizes (height = width) of the appendix table.
pub const INPUTS: [usize; 3] = [8, 16, 32];
/// Input channels of the appendix table: an RGB-like input, so that the channel cross-terms of
/// Equation 10 take part.
pub const CHANNELS: usize = 3;

/// The approximation error for one padding, kernel size and input size.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PaddingError {
    pub padding: Padding,
    /// Kernel height and width.
    pub kernel: usize,
    /// Input height and width.
    pub input: usize,
    /// `E|approx - exact| / E|exact|` over the draws.
    pub mean_relative_error: f64,
    /// The median over draws of `|approx - exact| / |exact|`.
    pub median_relative_error: f64,
}

/// Measures the error of Equation 20 over `draws` random pairs of `kernel x kernel` filters with
/// `channels` input channels on a `channels x input x input` input. Deterministic for a seed.
pub fn padding_error(
    padding: Padding,
    kernel: usize,
    input: usize,
    channels: usize,
    draws: usize,
    seed: u64,
) -> Result<PaddingError> {
    if draws == 0 {
        return Err(candle_core::Error::Msg("padding_error needs at least one draw".into()).into());
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut uniform = |dims: &[usize], lo: f64, hi: f64| -> Result<Tensor> {
        let n = dims.iter().product();
        let data: Vec<f64> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
        Ok(Tensor::from_vec(data, dims, &Device::Cpu)?)
    };
    let (mut abs_error, mut abs_exact) = (0.0, 0.0);
    let mut relative = Vec::with_capacity(draws);
    for _ in 0..draws {
        let w = uniform(&[2, channels, kernel, kernel], -1.0, 1.0)?;
        let x = uniform(&[channels, input, input], 0.0, 1.0)?;
        let exact = feature_map_inner_products(&w, &x, padding)?[1];
        let approx = correlation_form(&w, &x)?[1];
        abs_error += (approx - exact).abs();
        abs_exact += exact.abs();
        relative.push((approx - exact).abs() / exact.abs());
    }
    relative.sort_by(f64::total_cmp);
    Ok(PaddingError {
        padding,
        kernel,
        input,
        mean_relative_error: abs_error / abs_exact,
        median_relative_error: relative[draws / 2],
    })
}

/// The appendix table: [`padding_error`] for `same` and `valid` padding, every kernel size of
/// [`KERNELS`] and input size of [`INPUTS`], [`CHANNELS`] channels.
pub fn padding_table(draws: usize, seed: u64) -> Result<Vec<PaddingError>> {
    let mut table = Vec::new();
    for padding in [Padding::Same, Padding::Valid] {
        for kernel in KERNELS {
            for input in INPUTS {
                table.push(padding_error(
                    padding, kernel, input, CHANNELS, draws, seed,
                )?);
            }
        }
    }
    Ok(table)
}
