//! A tensor's values read where they lie: in place from CPU memory, a copy from elsewhere.
//!
//! candle's `to_vec1` copies, and its element-wise ops allocate a tensor per step; for the
//! reports' per-filter sums over layers of millions of weights, the copies and the page faults
//! of fresh allocations cost more than the arithmetic.

use candle_core::{CpuStorage, DType, Storage, Tensor, WithDType};
use rayon::prelude::*;

use crate::Result;

/// Values in their dtype: f32 stays f32, everything else is f64.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Values<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// `use_values` of the values of `tensor` in row-major order: borrowed for a contiguous f32 or
/// f64 tensor in CPU memory, otherwise copied (to f64 unless f32).
pub(crate) fn with_values<R>(tensor: &Tensor, use_values: impl FnOnce(Values) -> R) -> Result<R> {
    {
        let (storage, layout) = tensor.storage_and_layout();
        if let (Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) {
            match cpu {
                CpuStorage::F32(v) => return Ok(use_values(Values::F32(&v[start..end]))),
                CpuStorage::F64(v) => return Ok(use_values(Values::F64(&v[start..end]))),
                _ => {}
            }
        }
    }
    let flat = tensor.flatten_all()?;
    Ok(match flat.dtype() {
        DType::F32 => use_values(Values::F32(&flat.to_vec1::<f32>()?)),
        _ => use_values(Values::F64(&flat.to_dtype(DType::F64)?.to_vec1::<f64>()?)),
    })
}

/// The two dtypes our loops read ([`Values`]), widened to f64 and narrowed back. Inlined into the
/// loops, where candle's `WithDType::to_f64` is a call into candle-core, which is built at a
/// lower opt-level than this crate (Cargo.toml).
pub(crate) trait HostFloat: WithDType + num_traits::Float {
    fn widen(self) -> f64;
    fn narrow(x: f64) -> Self;
}

impl HostFloat for f32 {
    #[inline(always)]
    fn widen(self) -> f64 {
        f64::from(self)
    }

    #[inline(always)]
    fn narrow(x: f64) -> Self {
        x as f32
    }
}

impl HostFloat for f64 {
    #[inline(always)]
    fn widen(self) -> f64 {
        self
    }

    #[inline(always)]
    fn narrow(x: f64) -> Self {
        x
    }
}

/// `sum_k a[r, k] b[r, k]` in f64 for every row `r` of `len` values (`len > 0`) of two tensors
/// with as many values, in one parallel pass over the values where they lie. Each row is summed
/// in a fixed order that depends only on `len`, so the sums do not depend on the threads.
pub(crate) fn row_dots(a: &Tensor, b: &Tensor, len: usize) -> Result<Vec<f64>> {
    fn dots<A: HostFloat, B: HostFloat>(a: &[A], b: &[B], len: usize) -> Vec<f64> {
        a.par_chunks(len)
            .zip(b.par_chunks(len))
            .map(|(x, y)| dot(x, y))
            .collect()
    }
    with_values(a, |a| {
        with_values(b, |b| match (a, b) {
            (Values::F32(a), Values::F32(b)) => dots(a, b, len),
            (Values::F32(a), Values::F64(b)) => dots(a, b, len),
            (Values::F64(a), Values::F32(b)) => dots(a, b, len),
            (Values::F64(a), Values::F64(b)) => dots(a, b, len),
        })
    })?
}

/// `<a_r, q_b>` for every row `a_r` of `a` and every row `q_b` of `q` (rows of `len` values,
/// `len > 0`), in f64, as `[rows of a][rows of q]`: each row of `a` is read once, where a matrix
/// product with `q`'s few rows would pack a copy of all of `a` first.
pub(crate) fn row_products(a: &Tensor, q: &Tensor, len: usize) -> Result<Vec<f64>> {
    fn products<A: HostFloat, B: HostFloat>(a: &[A], q: &[B], len: usize) -> Vec<f64> {
        let rows: Vec<&[B]> = q.chunks_exact(len).collect();
        let mut out = vec![0.0; a.len() / len * rows.len()];
        out.par_chunks_exact_mut(rows.len().max(1))
            .zip(a.par_chunks_exact(len))
            .for_each(|(out, row)| {
                for (o, q) in out.iter_mut().zip(&rows) {
                    *o = dot(row, q);
                }
            });
        out
    }
    with_values(a, |a| {
        with_values(q, |q| match (a, q) {
            (Values::F32(a), Values::F32(q)) => products(a, q, len),
            (Values::F32(a), Values::F64(q)) => products(a, q, len),
            (Values::F64(a), Values::F32(q)) => products(a, q, len),
            (Values::F64(a), Values::F64(q)) => products(a, q, len),
        })
    })?
}

/// The mean and the mean square of every run of `len` consecutive values (`len > 0`) of a
/// tensor, summed in f64 over the values where they lie, runs in parallel: candle's reductions
/// run on one thread and its squares allocate a tensor.
pub(crate) fn run_moments(t: &Tensor, len: usize) -> Result<Vec<[f64; 2]>> {
    fn moments<T: HostFloat>(values: &[T], len: usize) -> Vec<[f64; 2]> {
        values
            .par_chunks(len)
            .map(|run| {
                let n = run.len() as f64;
                lane_sums(run, |x| {
                    let x = x.widen();
                    [x, x * x]
                })
                .map(|sum| sum / n)
            })
            .collect()
    }
    with_values(t, |values| match values {
        Values::F32(v) => moments(v, len),
        Values::F64(v) => moments(v, len),
    })
}

/// The sums over `values` of each of the `K` figures `each` gives a value, every one over four
/// interleaved partial sums, the values after the last whole four summed apart: one running sum
/// makes every addition wait for the one before. The order depends only on the length.
pub(crate) fn lane_sums<T: Copy, const K: usize>(
    values: &[T],
    each: impl Fn(T) -> [f64; K],
) -> [f64; K] {
    let mut lanes = [[0.0f64; K]; 4];
    let chunks = values.chunks_exact(lanes.len());
    let mut tail = [0.0f64; K];
    for &x in chunks.remainder() {
        for (t, v) in tail.iter_mut().zip(each(x)) {
            *t += v;
        }
    }
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            for (l, v) in lane.iter_mut().zip(each(x)) {
                *l += v;
            }
        }
    }
    std::array::from_fn(|k| lanes.iter().map(|lane| lane[k]).sum::<f64>() + tail[k])
}

/// Independent partial sums of a row's products: one running sum makes every addition wait for
/// the one before (about four cycles each), which left the reports' per-filter sums of
/// multi-million-weight layers far from the speed of memory.
const PARTIAL_SUMS: usize = 8;

/// `sum_k x[k] y[k]` in f64, over [`PARTIAL_SUMS`] interleaved partial sums.
fn dot<A: HostFloat, B: HostFloat>(x: &[A], y: &[B]) -> f64 {
    let mut sums = [0.0f64; PARTIAL_SUMS];
    let (xs, ys) = (x.chunks_exact(PARTIAL_SUMS), y.chunks_exact(PARTIAL_SUMS));
    let tail: f64 = xs
        .remainder()
        .iter()
        .zip(ys.remainder())
        .map(|(&x, &y)| x.widen() * y.widen())
        .sum();
    for (x, y) in xs.zip(ys) {
        for ((sum, &x), &y) in sums.iter_mut().zip(x).zip(y) {
            *sum += x.widen() * y.widen();
        }
    }
    sums.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn as_f64(values: Values) -> Vec<f64> {
        match values {
            Values::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Values::F64(v) => v.to_vec(),
        }
    }

    #[test]
    fn views_copies_and_other_dtypes_read_the_same_values() {
        let device = Device::Cpu;
        let t = Tensor::arange(0f32, 24., &device)
            .unwrap()
            .reshape((2, 3, 4))
            .unwrap();
        let want: Vec<f64> = (0..24).map(f64::from).collect();
        assert_eq!(with_values(&t, as_f64).unwrap(), want);
        let is_f32 = |v: Values| matches!(v, Values::F32(_));
        assert!(with_values(&t, is_f32).unwrap());
        let t64 = t.to_dtype(DType::F64).unwrap();
        assert!(with_values(&t64, |v| matches!(v, Values::F64(_))).unwrap());
        // A narrowed view starts past the storage's first element.
        let second = t.narrow(0, 1, 1).unwrap();
        assert_eq!(with_values(&second, as_f64).unwrap(), want[12..]);
        // Strided (copied) and half precision (widened).
        let transposed = t.transpose(1, 2).unwrap();
        let want_t = transposed.contiguous().unwrap();
        assert_eq!(
            with_values(&transposed, as_f64).unwrap(),
            with_values(&want_t, as_f64).unwrap()
        );
        let half = t.to_dtype(DType::F16).unwrap();
        assert_eq!(with_values(&half, as_f64).unwrap(), want);
    }

    #[test]
    fn row_dots_are_the_rows_inner_products_in_any_dtypes() {
        let device = Device::Cpu;
        let a = Tensor::arange(0f32, 24., &device)
            .unwrap()
            .reshape((4, 6))
            .unwrap();
        let b = (a.affine(0.5, -3.0).unwrap()).to_dtype(DType::F64).unwrap();
        let want: Vec<f64> = (0..4)
            .map(|r| {
                (0..6)
                    .map(|k| {
                        let x = (r * 6 + k) as f64;
                        x * (0.5 * x - 3.0)
                    })
                    .sum()
            })
            .collect();
        assert_eq!(row_dots(&a, &b, 6).unwrap(), want);
        assert_eq!(row_dots(&b, &a, 6).unwrap(), want);
        // A transposed view is read in its logical order.
        let t = a.t().unwrap();
        let squares = row_dots(&t, &t, 4).unwrap();
        let column = |c: usize| (0..4).map(|r| ((r * 6 + c) as f64).powi(2)).sum::<f64>();
        assert_eq!(squares, (0..6).map(column).collect::<Vec<_>>());
    }

    #[test]
    fn run_moments_are_each_runs_mean_and_mean_square() {
        let (runs, len) = (5, 4 * 3 + 2);
        for dtype in [DType::F32, DType::F64] {
            let t = Tensor::randn(0f32, 1., (runs, len), &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let values = t.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap();
            for (run, [mean, square]) in values.iter().zip(run_moments(&t, len).unwrap()) {
                let n = len as f64;
                let want_mean = run.iter().sum::<f64>() / n;
                let want_square = run.iter().map(|x| x * x).sum::<f64>() / n;
                assert!((mean - want_mean).abs() <= 1e-14, "{mean} vs {want_mean}");
                assert!(
                    (square - want_square).abs() <= 1e-14,
                    "{square} vs {want_square}"
                );
            }
        }
    }

    #[test]
    fn row_products_pair_every_row_with_every_row() {
        let device = Device::Cpu;
        let a = Tensor::randn(0f32, 1., (5, 19), &device).unwrap();
        let q = Tensor::randn(0f64, 1., (3, 19), &device).unwrap();
        let (x, y) = (
            a.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap(),
            q.to_vec2::<f64>().unwrap(),
        );
        let got = row_products(&a, &q, 19).unwrap();
        assert_eq!(got.len(), 15);
        for (r, row) in x.iter().enumerate() {
            for (b, other) in y.iter().enumerate() {
                let want: f64 = row.iter().zip(other).map(|(u, v)| u * v).sum();
                assert!((got[r * 3 + b] - want).abs() <= 1e-12, "{r} {b}");
            }
        }
    }

    #[test]
    fn row_dots_of_long_rows_match_one_running_sum() {
        // Rows longer than the partial sums, with a tail: 3 rows of 8 * 5 + 3 values.
        let (rows, len) = (3, 8 * 5 + 3);
        let a = Tensor::randn(0f32, 1., (rows, len), &Device::Cpu).unwrap();
        let b = Tensor::randn(0f64, 1., (rows, len), &Device::Cpu).unwrap();
        let (x, y) = (
            a.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap(),
            b.to_vec2::<f64>().unwrap(),
        );
        for (r, got) in row_dots(&a, &b, len).unwrap().into_iter().enumerate() {
            let want: f64 = x[r].iter().zip(&y[r]).map(|(p, q)| p * q).sum();
            let scale: f64 = x[r].iter().zip(&y[r]).map(|(p, q)| (p * q).abs()).sum();
            assert!(
                (got - want).abs() <= 1e-14 * scale,
                "row {r}: {got} vs {want}"
            );
        }
    }
}
