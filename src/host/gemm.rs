//! Matrix products of tensors in CPU memory, straight through gemm.
//!
//! candle's CPU matmul asks `num_cpus::get_physical()` for its thread count on every call, which
//! reads and parses `/proc/cpuinfo` (about 50 µs, some 570 times in a ResNet-50 run), and it
//! splits every product over the machine's physical cores whatever pool it runs in. The reports'
//! products are many and small, so on CPU they call gemm, the kernels candle itself calls, on
//! the operands where they lie: any row, column and batch strides (transposed and broadcast
//! views included, without copies), on the threads of the current rayon pool.

use candle_core::{CpuStorage, DType, Device, Layout, Storage, Tensor, WithDType};

use crate::Result;

/// `lhs rhs` for `[M, K] x [K, N]` or `[B, M, K] x [B, K, N]`-shaped operands (any strides);
/// other devices, dtypes and shapes go to candle's matmul, which also reports mismatched shapes.
pub(crate) fn matmul(lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    match Product::of(lhs, rhs) {
        Some(product) => product.run(lhs, rhs),
        None => Ok(lhs.matmul(rhs)?),
    }
}

/// A matrix operand as gemm reads it: its first value and its row and column strides.
pub(crate) struct Strided<T> {
    pub first: *const T,
    pub row: isize,
    pub column: isize,
}

/// `dst = lhs rhs`, `[m, k] x [k, n]`, with `dst` row-major at row stride `dst_row`.
///
/// # Safety
/// Every value the operands' strides address for rows `< m` (`< k`) and columns `< k` (`< n`)
/// is readable, and `dst`'s `m` rows of `n` values are writable and read by no one else.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn product<T: WithDType>(
    (m, k, n): (usize, usize, usize),
    dst: *mut T,
    dst_row: isize,
    lhs: Strided<T>,
    rhs: Strided<T>,
    parallelism: gemm::Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_row,
        false,
        lhs.first,
        lhs.column,
        lhs.row,
        rhs.first,
        rhs.column,
        rhs.row,
        T::zero(),
        T::one(),
        false,
        false,
        false,
        parallelism,
    )
}

/// The sizes of a product gemm can take as it is.
struct Product {
    batch: Option<usize>,
    m: usize,
    k: usize,
    n: usize,
}

impl Product {
    fn of(lhs: &Tensor, rhs: &Tensor) -> Option<Self> {
        let host = lhs.device().is_cpu() && rhs.device().is_cpu();
        let dtype = lhs.dtype();
        if !host || dtype != rhs.dtype() || !matches!(dtype, DType::F32 | DType::F64) {
            return None;
        }
        match (lhs.dims(), rhs.dims()) {
            (&[m, k], &[k2, n]) if k == k2 => Some(Self {
                batch: None,
                m,
                k,
                n,
            }),
            (&[b, m, k], &[b2, k2, n]) if b == b2 && k == k2 => Some(Self {
                batch: Some(b),
                m,
                k,
                n,
            }),
            _ => None,
        }
    }

    fn run(&self, lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
        match lhs.dtype() {
            DType::F64 => self.run_in::<f64>(lhs, rhs),
            _ => self.run_in::<f32>(lhs, rhs),
        }
    }

    fn run_in<T: WithDType>(&self, lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
        let Self { batch, m, k, n } = *self;
        let b = batch.unwrap_or(1);
        let mut out = vec![T::zero(); b * m * n];
        if m * n > 0 {
            let (lhs_storage, lhs_layout) = lhs.storage_and_layout();
            let (rhs_storage, rhs_layout) = rhs.storage_and_layout();
            let (Storage::Cpu(l), Storage::Cpu(r)) = (&*lhs_storage, &*rhs_storage) else {
                unreachable!("Product::of takes CPU tensors only")
            };
            let (l, r) = (Operand::new(l, lhs_layout)?, Operand::new(r, rhs_layout)?);
            let threads = rayon::current_num_threads();
            let parallelism = if threads > 1 {
                gemm::Parallelism::Rayon(threads)
            } else {
                gemm::Parallelism::None
            };
            for (i, dst) in out.chunks_exact_mut(m * n).enumerate() {
                // SAFETY: the operands' offsets and strides come from their layouts, so every
                // element gemm reads for batch `i`, row `< m` (`< k`) and column `< k` (`< n`)
                // lies within their storage; `dst` holds `m * n` values written row-major.
                unsafe {
                    product(
                        (m, k, n),
                        dst.as_mut_ptr(),
                        n as isize,
                        l.batch(i),
                        r.batch(i),
                        parallelism,
                    )
                }
            }
        }
        let out = Tensor::from_vec(out, (b, m, n), &Device::Cpu)?;
        Ok(match batch {
            Some(_) => out,
            None => out.squeeze(0)?,
        })
    }
}

/// One operand's values and strides, as gemm reads them.
struct Operand<'a, T> {
    values: &'a [T],
    start: usize,
    batch_stride: usize,
    row_stride: isize,
    col_stride: isize,
}

impl<'a, T: WithDType> Operand<'a, T> {
    fn new(storage: &'a CpuStorage, layout: &Layout) -> Result<Self> {
        let stride = layout.stride();
        let rank = stride.len();
        Ok(Self {
            values: storage.as_slice::<T>()?,
            start: layout.start_offset(),
            batch_stride: if rank == 3 { stride[0] } else { 0 },
            row_stride: stride[rank - 2] as isize,
            col_stride: stride[rank - 1] as isize,
        })
    }

    /// Batch `i` as gemm reads it.
    fn batch(&self, i: usize) -> Strided<T> {
        Strided {
            first: self.values[self.start + i * self.batch_stride..].as_ptr(),
            row: self.row_stride,
            column: self.col_stride,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_tensors::standard_normal;
    use rand::{Rng, SeedableRng};

    /// `lhs rhs` by the definition, in f64; `n` columns.
    fn reference(lhs: &Tensor, rhs: &Tensor, n: usize) -> Vec<f64> {
        let (lhs, rhs) = (
            lhs.to_dtype(DType::F64).unwrap(),
            rhs.to_dtype(DType::F64).unwrap(),
        );
        let (lhs, rhs) = match lhs.rank() {
            2 => (lhs.unsqueeze(0).unwrap(), rhs.unsqueeze(0).unwrap()),
            _ => (lhs, rhs),
        };
        let (l, r) = (lhs.to_vec3::<f64>().unwrap(), rhs.to_vec3::<f64>().unwrap());
        let mut out = Vec::new();
        for (l, r) in l.iter().zip(&r) {
            for row in l {
                for j in 0..n {
                    out.push(row.iter().zip(r).map(|(a, rr)| a * rr[j]).sum());
                }
            }
        }
        out
    }

    #[test]
    fn products_of_views_match_the_definition() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for draw in 0..40 {
            let (b, m, k, n) = (
                rng.random_range(1..4),
                rng.random_range(1..40),
                rng.random_range(0..70),
                rng.random_range(1..40),
            );
            let dtype = [DType::F32, DType::F64][draw % 2];
            let random = |dims: &[usize]| standard_normal(dims, dtype);
            // Plain, transposed, narrowed and broadcast operands.
            let (lhs, rhs) = match draw % 4 {
                0 => (random(&[b, m, k]), random(&[b, k, n])),
                1 => (
                    random(&[b, k, m]).transpose(1, 2).unwrap(),
                    random(&[b, n, k]).transpose(1, 2).unwrap(),
                ),
                2 => (
                    random(&[b, m + 3, k]).narrow(1, 2, m).unwrap(),
                    random(&[k, n])
                        .unsqueeze(0)
                        .unwrap()
                        .broadcast_as((b, k, n))
                        .unwrap(),
                ),
                _ => (random(&[m, k]), random(&[n, k]).t().unwrap()),
            };
            let got = matmul(&lhs, &rhs).unwrap();
            let want_dims = match lhs.rank() {
                2 => vec![m, n],
                _ => vec![b, m, n],
            };
            assert_eq!(got.dims(), want_dims);
            assert_eq!(got.dtype(), dtype);
            let got = got
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-4 };
            for (g, w) in got.iter().zip(reference(&lhs, &rhs, n)) {
                assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{draw}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn mismatched_shapes_are_candles_error() {
        let device = Device::Cpu;
        let lhs = Tensor::zeros((2, 3), DType::F32, &device).unwrap();
        let rhs = Tensor::zeros((4, 5), DType::F32, &device).unwrap();
        let error = matmul(&lhs, &rhs).unwrap_err().to_string();
        assert!(
            error.contains("[2, 3]") && error.contains("[4, 5]"),
            "{error}"
        );
    }
}
