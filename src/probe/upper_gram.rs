//! The strict upper triangle of a Gram matrix, reduced row by row.

use candle_core::Tensor;
use rayon::prelude::*;

use crate::host_gemm::matmul;
use crate::host_values::{with_values, Values};
use crate::Result;

/// The strict upper triangle of `rows rowsᵀ` for rows `[B, S, N]`, computed in blocks of
/// [`UpperGram::BLOCK`] rows against the rows after the block's first: a Gram matrix is
/// symmetric, and the wide layers' `S² N` is most of what the probe and the kernel cosine cost.
/// The products run in the rows' dtype (f32 for f32 weights: the figures are means of ratios,
/// where f32's rounding is far below the digits reported).
pub(crate) struct UpperGram {
    left: Tensor,
    right: Tensor,
}

/// `use_row` of `products[from..to]` in f64; `widened` is the caller's buffer for f32 rows.
fn with_row<R>(
    products: Values,
    (from, to): (usize, usize),
    widened: &mut Vec<f64>,
    use_row: impl FnOnce(&[f64]) -> R,
) -> R {
    match products {
        Values::F32(p) => {
            widened.clear();
            widened.extend(p[from..to].iter().map(|&v| f64::from(v)));
            use_row(widened)
        }
        Values::F64(p) => use_row(&p[from..to]),
    }
}

impl UpperGram {
    const BLOCK: usize = 256;

    pub(crate) fn new(rows: &Tensor) -> Result<Self> {
        Self::between(rows, rows)
    }

    /// The strict upper triangle of `left rightᵀ`, which the caller knows to be symmetric.
    pub(crate) fn between(left: &Tensor, right: &Tensor) -> Result<Self> {
        Ok(Self {
            left: left.contiguous()?,
            right: right.contiguous()?,
        })
    }

    /// The sum over every `b` and `i` of `row_sum(b, i, row)`, with
    /// `row[k] = <left[b, i], right[b, i + 1 + k]>`. Rows are reduced in parallel and their
    /// sums added in the order of `b` and `i`, so the result does not depend on the threads.
    pub(crate) fn sum_rows<const N: usize>(
        &self,
        row_sum: impl Fn(usize, usize, &[f64]) -> [f64; N] + Sync,
    ) -> Result<[f64; N]> {
        let (b, s, _) = self.left.dims3()?;
        let mut total = [0.0; N];
        for start in (0..s).step_by(Self::BLOCK) {
            let n = Self::BLOCK.min(s - start);
            // Views, not copies: the matrix product reads strided and transposed operands.
            let block = self.left.narrow(1, start, n)?;
            let rest = self.right.narrow(1, start, s - start)?.transpose(1, 2)?;
            let width = s - start;
            // Read in place: a copy of a few megabytes, page faults included, costs as much as
            // the row sums.
            let sums: Vec<[f64; N]> = with_values(&matmul(&block, &rest)?, |products| {
                (0..b * n)
                    .into_par_iter()
                    .with_min_len(16)
                    .map_init(Vec::new, |widened, row| {
                        let (bi, r) = (row / n, row % n);
                        let (from, to) = (row * width + r + 1, (row + 1) * width);
                        with_row(products, (from, to), widened, |values| {
                            row_sum(bi, start + r, values)
                        })
                    })
                    .collect()
            })?;
            for sum in sums {
                for (t, v) in total.iter_mut().zip(sum) {
                    *t += v;
                }
            }
        }
        Ok(total)
    }
}
