//! The portable L_CS: linear-time, built from candle ops, differentiable by candle's autograd, and
//! runnable on every device (it is the path CUDA and Metal use).
//!
//! Per filter `i`, the summed autocorrelation `R_i[n] = sum_c sum_p W[i,c,p] W[i,c,p+n]` is read off
//! the Gram matrix `W_iᵀ W_i` (`[P, P]`, `P` kernel positions) by summing its diagonals: one batched
//! matmul and one matmul with a fixed 0/1 matrix. Same-channel variants take the outer product of
//! each channel plane instead. See docs/math.md.

use candle_core::{DType, Device, Tensor};

use super::{KernelGeometry, ShiftTable, Variant};
use crate::Result;

/// L_CS of `weight` (`[S, C, k...]`) as a scalar tensor that `backward()` works through.
pub fn conv_similarity(weight: &Tensor, variant: Variant) -> Result<Tensor> {
    let geometry = KernelGeometry::from_dims(weight.dims())?;
    let shifts = geometry.shifts();
    let (r, weights) = autocorrelations(weight, &geometry, &shifts, variant)?;
    let s = geometry.filters;
    if variant.adjacent_only() {
        if s < 2 {
            // No pair: zero, kept in the graph (candle prunes `x * 0.0`) so the gradient is zero, not absent.
            let zero = Tensor::zeros((), r.dtype(), r.device())?;
            return Ok(r.sum_all()?.mul(&zero)?);
        }
        let pairs = r.narrow(0, 0, s - 1)?.mul(&r.narrow(0, 1, s - 1)?)?;
        Ok(pairs.broadcast_mul(&weights)?.sum_all()?)
    } else {
        // sum_{i<j} <R_i, R_j> = (<T, T> - sum_i <R_i, R_i>) / 2 with T = sum_i R_i.
        let total = r.sum(0)?;
        let all = total.sqr()?.broadcast_mul(&weights)?.sum_all()?;
        let own = r.sqr()?.broadcast_mul(&weights)?.sum_all()?;
        Ok(((all - own)? * 0.5)?)
    }
}

/// Per-filter autocorrelations over half shifts: `[S, H]`, or `[S, C, H]` for same-channel variants,
/// and the `[H]` weights that turn a half-shift inner product into the full one.
fn autocorrelations(
    weight: &Tensor,
    geometry: &KernelGeometry,
    shifts: &ShiftTable,
    variant: Variant,
) -> Result<(Tensor, Tensor)> {
    let (s, c, p) = (geometry.filters, geometry.channels, geometry.positions());
    let (dtype, device) = (weight.dtype(), weight.device());
    let diagonals = diagonal_sums(shifts, p, dtype, device)?;
    let r = if variant.same_channel_only() {
        let planes = weight.reshape((s * c, p))?;
        let outer = planes.unsqueeze(2)?.broadcast_mul(&planes.unsqueeze(1)?)?;
        outer
            .reshape((s * c, p * p))?
            .matmul(&diagonals)?
            .reshape((s, c, shifts.half_len()))?
    } else {
        let w = weight.reshape((s, c, p))?;
        let gram = w.t()?.matmul(&w)?; // [S, P, P]
        gram.reshape((s, p * p))?.matmul(&diagonals)?
    };
    let weights: Vec<f64> = (0..shifts.half_len()).map(ShiftTable::weight).collect();
    let weights = Tensor::from_vec(weights, shifts.half_len(), device)?.to_dtype(dtype)?;
    Ok((r, weights))
}

/// The `[P*P, H]` 0/1 matrix that maps a (Gram or outer-product) matrix to its half-shift diagonal
/// sums: entry `(p*P + q, h)` is 1 when `q - p` is half shift `h`.
fn diagonal_sums(
    shifts: &ShiftTable,
    positions: usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let half = shifts.half_len();
    let mut d = vec![0f32; positions * positions * half];
    for pair in shifts.pairs() {
        d[(pair.p as usize * positions + pair.q as usize) * half + pair.shift as usize] = 1.0;
    }
    Ok(Tensor::from_vec(d, (positions * positions, half), device)?.to_dtype(dtype)?)
}
