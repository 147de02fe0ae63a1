//! The paper's Equation 3 in two dimensions, with input channels.
//!
//! For a conv weight `W [S, C, kh, kw]` and an input `X [C, H, W]`, the feature maps of the full
//! cross-correlation, `F_i = sum_c X[c] ⊛ W[i,c]` (zero padding `kh - 1`, `kw - 1`), satisfy
//!
//! ```text
//! <F_i, F_j> = sum_{c1,c2} sum_n (W[i,c1] ⊛ W[j,c2])[n] · (X[c1] ⊛ X[c2])[n]
//!              over the shifts n with |n| <= k - 1 in each dimension
//! ```
//!
//! with `(A ⊛ B)[n] = sum_p A[p] B[p + n]`: the inner product of two feature maps is a weighted
//! sum of the kernels' cross-correlations, whatever the input. That is why driving every
//! `W[i,c1] ⊛ W[j,c2]` towards zero (L_CS, Equation 10) drives the feature maps towards
//! orthogonality. For `same` and `valid` padding the identity becomes Appendix 6.1's approximation;
//! [`super::padding`] measures how far off it is.

use candle_core::{DType, Tensor};

use super::Padding;
use crate::Result;

/// `<F_i, F_j>` for all filter pairs (row-major `[S, S]`), with the feature maps computed by
/// candle's `conv2d` on `input` (`[C, H, W]`) zero-padded as `padding` says for `weight`
/// (`[S, C, kh, kw]`). Computed in f64.
pub fn feature_map_inner_products(
    weight: &Tensor,
    input: &Tensor,
    padding: Padding,
) -> Result<Vec<f64>> {
    let (s, _, kh, kw) = weight.dims4()?;
    let amount = |k: usize| {
        padding.amount(k).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "same padding needs odd kernel sizes, got {kh}x{kw}"
            ))
        })
    };
    let (ph, pw) = (amount(kh)?, amount(kw)?);
    // Padding the input explicitly allows a different amount per dimension (non-square kernels).
    let padded = input
        .to_dtype(DType::F64)?
        .pad_with_zeros(1, ph, ph)?
        .pad_with_zeros(2, pw, pw)?
        .unsqueeze(0)?;
    let maps = padded
        .conv2d(&weight.to_dtype(DType::F64)?, 0, 1, 1, 1)?
        .reshape((s, ()))?;
    Ok(maps.matmul(&maps.t()?)?.flatten_all()?.to_vec1::<f64>()?)
}

/// The right-hand side of Equation 3 for all filter pairs (row-major `[S, S]`):
/// `sum_{c1,c2} < W[i,c1] ⊛ W[j,c2], (X[c1] ⊛ X[c2]) restricted to |n| <= k - 1 >`, computed
/// literally in f64 from `weight` (`[S, C, kh, kw]`) and `input` (`[C, H, W]`).
pub fn correlation_form(weight: &Tensor, input: &Tensor) -> Result<Vec<f64>> {
    let (s, c, kh, kw) = weight.dims4()?;
    let (cx, h, w) = input.dims3()?;
    if cx != c {
        return Err(candle_core::Error::Msg(format!(
            "the weight has {c} input channels, the input {cx}"
        ))
        .into());
    }
    let weight = weight
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let input = input
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let (sh, sw) = (2 * kh - 1, 2 * kw - 1);

    // xcorr[c1][c2][dy][dx] = (X[c1] ⊛ X[c2])[dy - (kh-1), dx - (kw-1)].
    let mut xcorr = vec![0.0; c * c * sh * sw];
    for (pair, out) in xcorr.chunks_exact_mut(sh * sw).enumerate() {
        let a = &input[(pair / c) * h * w..][..h * w];
        let b = &input[(pair % c) * h * w..][..h * w];
        for (d, value) in out.iter_mut().enumerate() {
            let dy = (d / sw) as isize - (kh as isize - 1);
            let dx = (d % sw) as isize - (kw as isize - 1);
            *value = shifted_product(a, b, h, w, dy, dx);
        }
    }

    let plane = kh * kw;
    let mut out = vec![0.0; s * s];
    for (ij, value) in out.iter_mut().enumerate() {
        let (i, j) = (ij / s, ij % s);
        for c1 in 0..c {
            for c2 in 0..c {
                let a = &weight[(i * c + c1) * plane..][..plane];
                let b = &weight[(j * c + c2) * plane..][..plane];
                let table = &xcorr[(c1 * c + c2) * sh * sw..][..sh * sw];
                // sum_n (A ⊛ B)[n] T[n] = sum_{p,q} A[p] B[q] T[q - p].
                for (p, ap) in a.iter().enumerate() {
                    for (q, bq) in b.iter().enumerate() {
                        let dy = q / kw + kh - 1 - p / kw;
                        let dx = q % kw + kw - 1 - p % kw;
                        *value += ap * bq * table[dy * sw + dx];
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `sum_{y,x} a[y][x] · b[y+dy][x+dx]` over the positions where both are inside `h x w`: one
/// entry of the cross-correlation of two `h x w` planes.
pub fn shifted_product(a: &[f64], b: &[f64], h: usize, w: usize, dy: isize, dx: isize) -> f64 {
    let range = |len: usize, d: isize| {
        let lo = (-d).max(0) as usize;
        let hi = (len as isize - d.max(0)).max(lo as isize) as usize;
        lo..hi
    };
    let (ys, xs) = (range(h, dy), range(w, dx));
    ys.map(|y| {
        let row_a = &a[y * w..][xs.clone()];
        let start = (y as isize + dy) as usize * w + (xs.start as isize + dx) as usize;
        let row_b = &b[start..][..xs.len()];
        row_a.iter().zip(row_b).map(|(p, q)| p * q).sum::<f64>()
    })
    .sum()
}
