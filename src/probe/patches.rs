//! The probe's inputs as patches: the convolution of every filter is one matrix product.

use std::sync::OnceLock;

use candle_core::{DType, Tensor, WithDType};
use rayon::prelude::*;

use super::{output_size, pad, Padding};
use crate::host_gemm::matmul;
use crate::host_values::run_moments;
use crate::Result;

/// The patches of inputs `[B, C, H, W]` for a `kh x kw` kernel: row `(c, u, v)` of input `b`
/// holds, for each output position `n`, the value that weight `(c, u, v)` of a filter meets
/// there (zero padding included), so that the maps of a weight `[S, C kh kw]` on input `b` are
/// `W P_b`. candle's conv2d builds the same patches per input, more slowly.
pub(super) struct Patches {
    data: Tensor,
    layout: PatchLayout,
    batch: usize,
    positions: usize,
    /// [`Patches::means`] and [`Patches::moments`], once asked for: a layer is measured twice.
    means: OnceLock<Tensor>,
    moments: OnceLock<Tensor>,
}

/// How [`Patches`] are stored, for the product they are built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PatchLayout {
    /// `[C kh kw, B N]`: the maps of every input are one product `W P`.
    Rows,
    /// `[B, C kh kw, N]`: each input's moments `P_b P_bᵀ`; a 1x1 kernel's patches are then the
    /// input itself, not a copy.
    PerInput,
}

impl PatchLayout {
    /// The layout for the maps of a `kh x kw` kernel: one product where the patches are a copy
    /// anyway, the input itself (a product per input) for 1x1 kernels.
    pub(super) fn for_maps(kh: usize, kw: usize) -> Self {
        if (kh, kw) == (1, 1) {
            Self::PerInput
        } else {
            Self::Rows
        }
    }
}

impl Patches {
    /// The patches in `dtype` (f32 or f64).
    pub(super) fn new(
        inputs: &Tensor,
        (kh, kw): (usize, usize),
        padding: Padding,
        dtype: DType,
        layout: PatchLayout,
    ) -> Result<Self> {
        let (oh, ow) = output_size(inputs, kh, kw, padding)?;
        let x = pad(&inputs.to_dtype(dtype)?, kh, kw, padding)?;
        let b = x.dim(0)?;
        let data = match ((kh, kw), layout) {
            ((1, 1), PatchLayout::PerInput) => x.flatten_from(2)?,
            _ if dtype == DType::F64 => copy_rows::<f64>(&x, kh, kw, (oh, ow), layout)?,
            _ => copy_rows::<f32>(&x, kh, kw, (oh, ow), layout)?,
        };
        Ok(Self {
            data,
            layout,
            batch: b,
            positions: oh * ow,
            means: OnceLock::new(),
            moments: OnceLock::new(),
        })
    }

    /// The memory the patches take (counted in full even where they are the input itself), with
    /// the moments they keep once asked for (per-input patches serve the factored form).
    pub(super) fn bytes(&self) -> usize {
        let moments = match self.layout {
            PatchLayout::PerInput => self.data.elem_count() / self.positions * self.rows(),
            PatchLayout::Rows => 0,
        };
        (self.data.elem_count() + moments) * self.data.dtype().size_in_bytes()
    }

    /// Rows per input (`C kh kw`).
    fn rows(&self) -> usize {
        self.data.elem_count() / (self.batch * self.positions)
    }

    /// Output positions per input (`N`).
    pub(super) fn positions(&self) -> usize {
        self.positions
    }

    /// `[B, C kh kw, N]`, a view or a copy.
    fn per_input(&self) -> Result<Tensor> {
        Ok(match self.layout {
            PatchLayout::PerInput => self.data.clone(),
            PatchLayout::Rows => {
                let k = self.data.dim(0)?;
                self.data
                    .reshape((k, self.batch, self.positions))?
                    .transpose(0, 1)?
                    .contiguous()?
            }
        })
    }

    /// The maps `[B, S, N]` of a weight `[S, C, kh, kw]`, in the patches' dtype.
    pub(super) fn maps(&self, weight: &Tensor) -> Result<Tensor> {
        let s = weight.dim(0)?;
        let w = weight.to_dtype(self.data.dtype())?.flatten_from(1)?;
        Ok(match self.layout {
            PatchLayout::Rows => matmul(&w, &self.data)?
                .reshape((s, self.batch, self.positions))?
                .transpose(0, 1)?
                .contiguous()?,
            PatchLayout::PerInput => {
                let k = w.dim(1)?;
                matmul(
                    &w.unsqueeze(0)?.broadcast_as((self.batch, s, k))?,
                    &self.data,
                )?
            }
        })
    }

    /// The mean of each row over each input's positions, `[B, C kh kw]`: what a filter's map
    /// averages to on input `b` is row `b` times the filter.
    pub(super) fn means(&self) -> Result<Tensor> {
        if let Some(means) = self.means.get() {
            return Ok(means.clone());
        }
        // One mean per row and input: the runs of `N` values, in either layout.
        let runs: Vec<f64> = run_moments(&self.data, self.positions)?
            .into_iter()
            .map(|[mean, _]| mean)
            .collect();
        let (b, k) = (self.batch, runs.len() / self.batch);
        let means = match self.layout {
            PatchLayout::PerInput => Tensor::from_vec(runs, (b, k), self.data.device())?,
            PatchLayout::Rows => Tensor::from_vec(runs, (k, b), self.data.device())?
                .t()?
                .contiguous()?,
        }
        .to_dtype(self.data.dtype())?;
        Ok(self.means.get_or_init(|| means).clone())
    }

    /// `Σ_b = P_b P_bᵀ`, `[B, C kh kw, C kh kw]`, the index ordered as a flattened filter.
    pub(super) fn moments(&self) -> Result<Tensor> {
        if let Some(moments) = self.moments.get() {
            return Ok(moments.clone());
        }
        let per_input = self.per_input()?;
        let moments = matmul(&per_input, &per_input.transpose(1, 2)?)?;
        Ok(self.moments.get_or_init(|| moments).clone())
    }
}

/// The patches of a padded input `[B, C, H, W]` in `layout` (all but a 1x1 kernel's per-input
/// patches, which are the input itself): each row of an input is `H'` lines of it, copied. The
/// rows are filled in parallel: a wide layer's patches are tens of megabytes, whose copy and
/// first-touch page faults on one thread cost as much as the product they serve.
fn copy_rows<T: WithDType>(
    x: &Tensor,
    kh: usize,
    kw: usize,
    (oh, ow): (usize, usize),
    layout: PatchLayout,
) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (k, n) = (c * kh * kw, oh * ow);
    let device = x.device();
    let x = x.flatten_all()?.to_vec1::<T>()?;
    let mut data = vec![T::zero(); b * k * n];
    // Row `r` of `data` is tap `(ci, u, v)` of input `bi`, `n` values.
    let tap_of = |r: usize| match layout {
        PatchLayout::Rows => (r / b, r % b),
        PatchLayout::PerInput => (r % k, r / k),
    };
    data.par_chunks_exact_mut(n)
        .with_min_len(ROWS_PER_TASK)
        .enumerate()
        .for_each(|(r, row)| {
            let (tap, bi) = tap_of(r);
            let (ci, u, v) = (tap / (kh * kw), tap / kw % kh, tap % kw);
            let image = &x[bi * c * h * w..][..c * h * w];
            for (y, line) in row.chunks_exact_mut(ow).enumerate() {
                line.copy_from_slice(&image[(ci * h + y + u) * w + v..][..ow]);
            }
        });
    Ok(match layout {
        PatchLayout::Rows => Tensor::from_vec(data, (k, b * n), device)?,
        PatchLayout::PerInput => Tensor::from_vec(data, (b, k, n), device)?,
    })
}

/// Patch rows one parallel task fills: a row is a few hundred values.
const ROWS_PER_TASK: usize = 64;
