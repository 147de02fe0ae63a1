//! The probe's inputs as patches: the convolution of every filter is one matrix product.

use candle_core::{DType, Tensor, WithDType};

use super::{output_size, pad, Padding};
use crate::Result;

/// The patches of inputs `[B, C, H, W]` for a `kh x kw` kernel: `rows` is `[C kh kw, B N]`, row
/// `(c, u, v)` holding, for each input `b` and output position `n`, the value that weight
/// `(c, u, v)` of a filter meets there (zero padding included). The maps of a weight
/// `[S, C kh kw]` are then one product `W P` for all inputs at once, where candle's conv2d
/// builds the same patches per input, more slowly, and multiplies by `W` once per input.
pub(super) struct Patches {
    rows: Tensor,
    batch: usize,
    positions: usize,
}

impl Patches {
    /// The patches in `dtype` (f32 or f64).
    pub(super) fn new(
        inputs: &Tensor,
        kh: usize,
        kw: usize,
        padding: Padding,
        dtype: DType,
    ) -> Result<Self> {
        let (oh, ow) = output_size(inputs, kh, kw, padding)?;
        let x = pad(&inputs.to_dtype(dtype)?, kh, kw, padding)?;
        let (b, c, _, _) = x.dims4()?;
        let rows = if (kh, kw) == (1, 1) {
            x.flatten_from(2)?
                .transpose(0, 1)?
                .reshape((c, b * oh * ow))?
        } else if dtype == DType::F64 {
            copy_rows::<f64>(&x, kh, kw, (oh, ow))?
        } else {
            copy_rows::<f32>(&x, kh, kw, (oh, ow))?
        };
        Ok(Self {
            rows,
            batch: b,
            positions: oh * ow,
        })
    }

    /// Output positions per input (`N`).
    pub(super) fn positions(&self) -> usize {
        self.positions
    }

    /// The maps `[B, S, N]` of a weight `[S, C, kh, kw]`, in the patches' dtype.
    pub(super) fn maps(&self, weight: &Tensor) -> Result<Tensor> {
        let s = weight.dim(0)?;
        let w = weight.to_dtype(self.rows.dtype())?.flatten_from(1)?;
        Ok(w.matmul(&self.rows)?
            .reshape((s, self.batch, self.positions))?
            .transpose(0, 1)?
            .contiguous()?)
    }

    /// The mean of each row over each input's positions, `[C kh kw, B]`: what a filter's map
    /// averages to on input `b` is `W_i` times column `b`.
    pub(super) fn means(&self) -> Result<Tensor> {
        let k = self.rows.dim(0)?;
        Ok(self
            .rows
            .reshape((k, self.batch, self.positions))?
            .mean(2)?)
    }

    /// `Σ_b = P_b P_bᵀ`, `[B, C kh kw, C kh kw]`, the index ordered as a flattened filter.
    pub(super) fn moments(&self) -> Result<Tensor> {
        let k = self.rows.dim(0)?;
        let per_input = self
            .rows
            .reshape((k, self.batch, self.positions))?
            .transpose(0, 1)?
            .contiguous()?;
        Ok(per_input.matmul(&per_input.transpose(1, 2)?)?)
    }
}

/// The rows of [`Patches`] of a padded input `[B, C, H, W]`, for kernels larger than 1x1: each
/// row is `B H'` lines of the input, copied.
fn copy_rows<T: WithDType>(
    x: &Tensor,
    kh: usize,
    kw: usize,
    (oh, ow): (usize, usize),
) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (k, n) = (c * kh * kw, oh * ow);
    let device = x.device();
    let x = x.flatten_all()?.to_vec1::<T>()?;
    let mut rows = vec![T::zero(); k * b * n];
    let taps = (0..c).flat_map(|ci| (0..kh).flat_map(move |u| (0..kw).map(move |v| (ci, u, v))));
    for ((ci, u, v), row) in taps.zip(rows.chunks_exact_mut(b * n)) {
        for (image, out) in x.chunks_exact(c * h * w).zip(row.chunks_exact_mut(n)) {
            for (y, line) in out.chunks_exact_mut(ow).enumerate() {
                line.copy_from_slice(&image[(ci * h + y + u) * w + v..][..ow]);
            }
        }
    }
    Ok(Tensor::from_vec(rows, (k, b * n), device)?)
}
