//! The strict upper triangle of a Gram matrix, reduced row by row.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::host::gemm::{product, Strided};
use crate::host::values::{with_values, HostFloat, Values};
use crate::Result;

/// The strict upper triangle of `rows rowsᵀ` for rows `[B, S, N]`, computed in tiles of
/// [`UpperGram::TILE`] rows against the rows after the tile's first: a Gram matrix is
/// symmetric, and the wide layers' `S² N` is most of what the probe and the kernel cosine cost.
/// Each parallel task multiplies its tile into a buffer of its own and reduces it while it is in
/// cache: one product of the whole triangle wrote and read megabytes of fresh memory, and its
/// zeroing and page faults cost as much as the products of a depthwise layer. The products run
/// in the rows' dtype (f32 for f32 weights: the figures are means of ratios, where f32's
/// rounding is far below the digits reported), on CPU whatever the rows' device.
pub(crate) struct UpperGram {
    left: Tensor,
    right: Tensor,
}

impl UpperGram {
    /// Rows per tile: a tile of a 768-filter layer is at most `64 x 768` products, and each
    /// tile packs the rows after its first for gemm once.
    const TILE: usize = 64;

    pub(crate) fn new(rows: &Tensor) -> Result<Self> {
        Self::between(rows, rows)
    }

    /// The strict upper triangle of `left rightᵀ`, which the caller knows to be symmetric.
    pub(crate) fn between(left: &Tensor, right: &Tensor) -> Result<Self> {
        let on_host =
            |t: &Tensor| -> Result<Tensor> { Ok(t.to_device(&Device::Cpu)?.contiguous()?) };
        let left = on_host(left)?;
        let right = on_host(&right.to_dtype(left.dtype())?)?;
        Ok(Self { left, right })
    }

    /// The sum over every `b` and `i` of `row_sum(b, i, row)`, with
    /// `row[k] = <left[b, i], right[b, i + 1 + k]>`. Tiles are reduced in parallel and their
    /// sums added in the order of `b` and `i`, so the result does not depend on the threads.
    pub(crate) fn sum_rows<const N: usize>(
        &self,
        row_sum: impl Fn(usize, usize, &[f64]) -> [f64; N] + Sync,
    ) -> Result<[f64; N]> {
        let (b, s, k) = self.left.dims3()?;
        let tiles: Vec<(usize, usize)> = (0..b)
            .flat_map(|bi| (0..s).step_by(Self::TILE).map(move |start| (bi, start)))
            .collect();
        let shape = Shape { s, k };
        let sums: Vec<[f64; N]> = with_values(&self.left, |left| {
            with_values(&self.right, |right| match (left, right) {
                (Values::F32(l), Values::F32(r)) => shape.reduce(&tiles, l, r, &row_sum),
                (Values::F64(l), Values::F64(r)) => shape.reduce(&tiles, l, r, &row_sum),
                _ => unreachable!("both sides have the left side's dtype, f32 or f64"),
            })
        })??;
        let mut total = [0.0; N];
        for sum in sums {
            for (t, v) in total.iter_mut().zip(sum) {
                *t += v;
            }
        }
        Ok(total)
    }
}

/// Rows per input `s` of `k` values each.
#[derive(Clone, Copy)]
struct Shape {
    s: usize,
    k: usize,
}

impl Shape {
    /// Every tile `(b, first row)` reduced by `row_sum`, in the order of `tiles`.
    fn reduce<T: Element, const N: usize>(
        self,
        tiles: &[(usize, usize)],
        left: &[T],
        right: &[T],
        row_sum: &(impl Fn(usize, usize, &[f64]) -> [f64; N] + Sync),
    ) -> Vec<[f64; N]> {
        tiles
            .par_iter()
            .map_init(Scratch::default, |scratch, &(b, start)| {
                self.tile(left, right, b, start, scratch, row_sum)
            })
            .collect()
    }

    /// The sums of the rows `start..start + TILE` of input `b`.
    fn tile<T: Element, const N: usize>(
        self,
        left: &[T],
        right: &[T],
        b: usize,
        start: usize,
        scratch: &mut Scratch<T>,
        row_sum: &impl Fn(usize, usize, &[f64]) -> [f64; N],
    ) -> [f64; N] {
        let Self { s, k } = self;
        let n = UpperGram::TILE.min(s - start);
        let width = s - start;
        scratch.products.clear();
        scratch.products.resize(n * width, T::zero());
        let input = b * s * k;
        // SAFETY: rows `start..start + n` of `left` and `start..s` of `right` lie within input
        // `b` (`s` rows of `k` values, row-major); the products are `n x width`, row-major.
        unsafe {
            product(
                (n, k, width),
                scratch.products.as_mut_ptr(),
                width as isize,
                Strided {
                    first: left[input + start * k..].as_ptr(),
                    row: k as isize,
                    column: 1,
                },
                // `rightᵀ`: row `kk` of it is value `kk` of every row.
                Strided {
                    first: right[input + start * k..].as_ptr(),
                    row: 1,
                    column: k as isize,
                },
                gemm::Parallelism::None,
            )
        }
        let mut sum = [0.0; N];
        for r in 0..n {
            let row = &scratch.products[r * width + r + 1..(r + 1) * width];
            scratch.widened.clear();
            scratch.widened.extend(row.iter().map(|v| v.widen()));
            for (t, v) in sum.iter_mut().zip(row_sum(b, start + r, &scratch.widened)) {
                *t += v;
            }
        }
        sum
    }
}

/// A task's buffers, reused from tile to tile.
struct Scratch<T> {
    products: Vec<T>,
    widened: Vec<f64>,
}

impl<T> Default for Scratch<T> {
    fn default() -> Self {
        Self {
            products: Vec::new(),
            widened: Vec::new(),
        }
    }
}

/// The dtypes the products run in.
trait Element: HostFloat + 'static {}

impl Element for f32 {}
impl Element for f64 {}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn row_sums_are_those_of_the_whole_product() {
        let device = Device::Cpu;
        // Several tiles, a partial last one, more than one input; f32 and f64.
        for (b, s, k) in [(2, 70, 5), (1, 3, 40), (3, 33, 1)] {
            for dtype in [DType::F32, DType::F64] {
                let left = Tensor::randn(0f64, 1., (b, s, k), &device).unwrap();
                let right = Tensor::randn(0f64, 1., (b, s, k), &device).unwrap();
                let want: Vec<Vec<Vec<f64>>> = left
                    .matmul(&right.transpose(1, 2).unwrap())
                    .unwrap()
                    .to_vec3()
                    .unwrap();
                let gram = UpperGram::between(
                    &left.to_dtype(dtype).unwrap(),
                    &right.to_dtype(dtype).unwrap(),
                )
                .unwrap();
                // Each row's sum, and a sum that weighs rows by their place.
                let [plain, placed] = gram
                    .sum_rows(|bi, i, row| {
                        let sum: f64 = row.iter().sum();
                        [sum, sum * (bi * s + i) as f64]
                    })
                    .unwrap();
                let (mut want_plain, mut want_placed) = (0.0, 0.0);
                for (bi, gram) in want.iter().enumerate() {
                    for (i, row) in gram.iter().enumerate() {
                        let sum: f64 = row[i + 1..].iter().sum();
                        want_plain += sum;
                        want_placed += sum * (bi * s + i) as f64;
                    }
                }
                let tol = if dtype == DType::F64 { 1e-10 } else { 1e-3 };
                assert!((plain - want_plain).abs() <= tol * (1.0 + want_plain.abs()));
                assert!((placed - want_placed).abs() <= tol * (1.0 + want_placed.abs()));
            }
        }
    }
}
