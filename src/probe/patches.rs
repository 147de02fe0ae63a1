//! The probe's inputs as patches: the convolution of every filter is one matrix product.

use std::sync::OnceLock;

use candle_core::{DType, Tensor, WithDType};
use rayon::prelude::*;

use super::{margins, output_size, winograd, ProbePadding};
use crate::host::gemm::matmul;
use crate::host::values::{run_moments, with_values, HostFloat, Values};
use crate::Result;

/// The patches of inputs `[B, C, H, W]` for a `kh x kw` kernel: row `(c, u, v)` of input `b`
/// holds, for each output position `n`, the value that weight `(c, u, v)` of a filter meets
/// there (zero padding included), so that the maps of a weight `[S, C kh kw]` on input `b` are
/// `W P_b`. candle's conv2d builds the same patches per input, more slowly.
pub(super) struct Patches {
    data: Tensor,
    layout: PatchLayout,
    batch: usize,
    /// The maps' size `H' x W'`.
    output: (usize, usize),
    positions: usize,
    /// The padded inputs, kept where `data` does not hold the patches' rows (Winograd's tiles).
    padded: Option<Tensor>,
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
    /// A 3x3 kernel's maps by Winograd's F(2x2, 3x3) ([`winograd`]): the inputs' 4x4 tiles
    /// transformed, 16 planes `[C, B T]`, not the patches' rows.
    Winograd,
}

impl PatchLayout {
    /// The layout for the maps of a `kh x kw` kernel with outputs `H' x W'`: Winograd's tiles
    /// for a 3x3 kernel with whole 2x2 blocks of outputs, the input itself (a product per
    /// input) for 1x1 kernels, one product by the patches' rows otherwise.
    pub(super) fn for_maps(kernel: (usize, usize), output: (usize, usize)) -> Self {
        if winograd::applies(kernel, output) {
            Self::Winograd
        } else if kernel == (1, 1) {
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
        kernel: (usize, usize),
        padding: ProbePadding,
        dtype: DType,
        layout: PatchLayout,
    ) -> Result<Self> {
        match dtype {
            DType::F64 => Self::new_in::<f64>(inputs, kernel, padding, layout),
            _ => Self::new_in::<f32>(inputs, kernel, padding, layout),
        }
    }

    fn new_in<T: HostFloat>(
        inputs: &Tensor,
        (kh, kw): (usize, usize),
        padding: ProbePadding,
        layout: PatchLayout,
    ) -> Result<Self> {
        let (oh, ow) = output_size(inputs, kh, kw, padding)?;
        let (b, c, h, w) = inputs.dims4()?;
        let ((top, bottom), (left, right)) = margins(kh, kw, padding);
        let (ph, pw) = (h + top + bottom, w + left + right);
        let device = inputs.device();
        // A 1x1 kernel's patches are the input itself: shared, not copied, where no margin is
        // added and it already has the patches' dtype (the noise inputs of f32 layers).
        if (kh, kw, ph, pw, layout) == (1, 1, h, w, PatchLayout::PerInput)
            && inputs.dtype() == T::DTYPE
        {
            return Ok(Self::of(
                inputs.reshape((b, c, h * w))?,
                layout,
                b,
                (oh, ow),
                None,
            ));
        }
        let x: Vec<T> = padded(inputs, ((top, bottom), (left, right)))?;
        let (data, padded) = match ((kh, kw), layout) {
            (_, PatchLayout::Winograd) => {
                let tiles = winograd::input_tiles(&x, (b, c), (oh, ow));
                let len = tiles.len();
                let x = Tensor::from_vec(x, (b, c, ph, pw), device)?;
                (Tensor::from_vec(tiles, len, device)?, Some(x))
            }
            // Padded only by `full`, for a 1x1 by nothing; or converted to the patches' dtype.
            ((1, 1), PatchLayout::PerInput) => {
                (Tensor::from_vec(x, (b, c, ph * pw), device)?, None)
            }
            _ => {
                let rows = copy_rows(&x, (b, c, ph, pw), (kh, kw), (oh, ow), layout);
                let rows = if layout == PatchLayout::PerInput {
                    Tensor::from_vec(rows, (b, c * kh * kw, oh * ow), device)?
                } else {
                    Tensor::from_vec(rows, (c * kh * kw, b * oh * ow), device)?
                };
                (rows, None)
            }
        };
        Ok(Self::of(data, layout, b, (oh, ow), padded))
    }

    fn of(
        data: Tensor,
        layout: PatchLayout,
        batch: usize,
        output: (usize, usize),
        padded: Option<Tensor>,
    ) -> Self {
        Self {
            data,
            layout,
            batch,
            output,
            positions: output.0 * output.1,
            padded,
            means: OnceLock::new(),
            moments: OnceLock::new(),
        }
    }

    /// The memory the patches take (counted in full even where they are the input itself), with
    /// the moments they keep once asked for (per-input patches serve the factored form).
    pub(super) fn bytes(&self) -> usize {
        let moments = match self.layout {
            PatchLayout::PerInput => self.data.elem_count() / self.positions * self.rows(),
            PatchLayout::Rows | PatchLayout::Winograd => 0,
        };
        let padded = self.padded.as_ref().map_or(0, Tensor::elem_count);
        (self.data.elem_count() + moments + padded) * self.data.dtype().size_in_bytes()
    }

    /// Rows per input (`C kh kw`).
    fn rows(&self) -> usize {
        match &self.padded {
            // Padded inputs `[B, C, H' + kh - 1, W' + kw - 1]`.
            Some(padded) => {
                let dims = padded.dims();
                let (kh, kw) = (dims[2] + 1 - self.output.0, dims[3] + 1 - self.output.1);
                dims[1] * kh * kw
            }
            None => self.data.elem_count() / (self.batch * self.positions),
        }
    }

    /// Output positions per input (`N`).
    pub(super) fn positions(&self) -> usize {
        self.positions
    }

    /// `[B, C kh kw, N]`, a view or a copy (of patches' rows: the factored form takes them).
    fn per_input(&self) -> Result<Tensor> {
        Ok(match self.layout {
            PatchLayout::PerInput => self.data.clone(),
            PatchLayout::Winograd => unreachable!("the factored form builds per-input patches"),
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
            PatchLayout::Winograd => winograd::maps(weight, &self.data, self.batch, self.output)?,
        })
    }

    /// The mean of each row over each input's positions, `[B, C kh kw]`: what a filter's map
    /// averages to on input `b` is row `b` times the filter.
    pub(super) fn means(&self) -> Result<Tensor> {
        if let Some(means) = self.means.get() {
            return Ok(means.clone());
        }
        let device = self.data.device();
        let means = match (&self.padded, self.layout) {
            (Some(padded), _) => {
                let (b, k) = (self.batch, self.rows());
                Tensor::from_vec(window_means(padded, self.output)?, (b, k), device)?
            }
            // One mean per row and input: the runs of `N` values, in either layout.
            (None, layout) => {
                let runs: Vec<f64> = run_moments(&self.data, self.positions)?
                    .into_iter()
                    .map(|[mean, _]| mean)
                    .collect();
                let (b, k) = (self.batch, runs.len() / self.batch);
                match layout {
                    PatchLayout::Rows => {
                        Tensor::from_vec(runs, (k, b), device)?.t()?.contiguous()?
                    }
                    _ => Tensor::from_vec(runs, (b, k), device)?,
                }
            }
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

/// The patches of padded inputs `[B, C, H, W]` (row-major `x`) in `layout`, `Rows` or
/// `PerInput` (all but a 1x1 kernel's per-input patches, which are the input itself): each row
/// of an input is `H'` lines of it, copied. The rows are filled in parallel: a wide layer's
/// patches are tens of megabytes, whose copy and first-touch page faults on one thread cost as
/// much as the product they serve.
fn copy_rows<T: WithDType>(
    x: &[T],
    (b, c, h, w): (usize, usize, usize, usize),
    (kh, kw): (usize, usize),
    (oh, ow): (usize, usize),
    layout: PatchLayout,
) -> Vec<T> {
    let (k, n) = (c * kh * kw, oh * ow);
    let mut data = vec![T::zero(); b * k * n];
    // Row `r` of `data` is tap `(ci, u, v)` of input `bi`, `n` values.
    let per_input = layout == PatchLayout::PerInput;
    let tap_of = |r: usize| {
        if per_input {
            (r % k, r / k)
        } else {
            (r / b, r % b)
        }
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
    data
}

/// Inputs `[B, C, H, W]` with `(top, bottom)` and `(left, right)` zeros around every channel, in
/// one parallel pass (candle's pads copy the whole input once per side).
fn padded<T: HostFloat>(
    inputs: &Tensor,
    ((top, bottom), (left, right)): ((usize, usize), (usize, usize)),
) -> Result<Vec<T>> {
    fn pad<S: HostFloat, T: HostFloat>(
        values: &[S],
        (h, w): (usize, usize),
        ((top, bottom), (left, right)): ((usize, usize), (usize, usize)),
    ) -> Vec<T> {
        let (ph, pw) = (h + top + bottom, w + left + right);
        let mut out = vec![T::zero(); values.len() / (h * w).max(1) * ph * pw];
        out.par_chunks_exact_mut(ph * pw)
            .zip(values.par_chunks_exact(h * w))
            .for_each(|(plane, image)| {
                for (y, line) in image.chunks_exact(w).enumerate() {
                    let row = &mut plane[(y + top) * pw + left..][..w];
                    for (o, &v) in row.iter_mut().zip(line) {
                        *o = T::narrow(v.widen());
                    }
                }
            });
        out
    }
    let (_, _, h, w) = inputs.dims4()?;
    let margins = ((top, bottom), (left, right));
    with_values(inputs, |values| match values {
        Values::F32(v) => pad(v, (h, w), margins),
        Values::F64(v) => pad(v, (h, w), margins),
    })
}

/// The patches' row means from the padded inputs `[B, C, H' + kh - 1, W' + kw - 1]`, `[B][C kh
/// kw]`: row `(c, u, v)` of input `b` is the window of the input's channel `c` that starts at
/// `(u, v)`.
fn window_means(padded: &Tensor, (oh, ow): (usize, usize)) -> Result<Vec<f64>> {
    let (b, c, ph, pw) = padded.dims4()?;
    let (kh, kw) = (ph + 1 - oh, pw + 1 - ow);
    let values = padded
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let count = (oh * ow) as f64;
    Ok(values
        .par_chunks_exact(ph * pw)
        .take(b * c)
        .flat_map_iter(|plane| {
            (0..kh * kw).map(move |tap| {
                let (u, v) = (tap / kw, tap % kw);
                let sum: f64 = (0..oh)
                    .map(|y| plane[(y + u) * pw + v..][..ow].iter().sum::<f64>())
                    .sum();
                sum / count
            })
        })
        .collect())
}

/// Patch rows one parallel task fills: a row is a few hundred values.
const ROWS_PER_TASK: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_tensors::largest_difference;
    use candle_core::Device;

    #[test]
    fn every_layout_gives_the_same_maps_and_row_means() {
        let device = Device::Cpu;
        // Outputs in whole 2x2 blocks under each padding, so that a 3x3 kernel takes Winograd's
        // tiles: 8x6 inputs (same), 10x8 (valid), 6x4 (full).
        for (padding, (h, w)) in [
            (ProbePadding::Same, (8, 6)),
            (ProbePadding::Valid, (10, 8)),
            (ProbePadding::Full, (6, 4)),
        ] {
            for dtype in [DType::F32, DType::F64] {
                let inputs = Tensor::rand(0f32, 1., (2, 3, h, w), &device).unwrap();
                let weight = Tensor::randn(0f32, 1., (5, 3, 3, 3), &device)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let output = output_size(&inputs, 3, 3, padding).unwrap();
                assert_eq!(PatchLayout::for_maps((3, 3), output), PatchLayout::Winograd);
                let patches =
                    |layout| Patches::new(&inputs, (3, 3), padding, dtype, layout).unwrap();
                let (rows, tiles) = (patches(PatchLayout::Rows), patches(PatchLayout::Winograd));
                let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
                let maps = rows.maps(&weight).unwrap();
                assert_eq!(maps.dims(), tiles.maps(&weight).unwrap().dims());
                let difference = largest_difference(&maps, &tiles.maps(&weight).unwrap());
                assert!(
                    difference <= tol,
                    "{padding:?} {dtype:?}: maps {difference}"
                );
                for other in [tiles, patches(PatchLayout::PerInput)] {
                    let difference =
                        largest_difference(&rows.means().unwrap(), &other.means().unwrap());
                    assert!(
                        difference <= tol,
                        "{padding:?} {dtype:?}: means {difference}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_1x1_kernels_patches_are_its_input_in_every_dtype() {
        let device = Device::Cpu;
        let inputs = Tensor::rand(0f32, 1., (3, 4, 5, 7), &device).unwrap();
        for dtype in [DType::F32, DType::F64] {
            let weight = Tensor::randn(0f32, 1., (6, 4, 1, 1), &device)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            // Shared with the input (f32), or converted from it (f64): the same as the rows.
            let patches =
                |layout| Patches::new(&inputs, (1, 1), ProbePadding::Same, dtype, layout).unwrap();
            let (rows, own) = (patches(PatchLayout::Rows), patches(PatchLayout::PerInput));
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            let maps = rows.maps(&weight).unwrap();
            assert_eq!(maps.dims(), [3, 6, 35]);
            assert_eq!(maps.dtype(), dtype);
            for (what, a, b) in [
                ("maps", maps, own.maps(&weight).unwrap()),
                ("means", rows.means().unwrap(), own.means().unwrap()),
                ("moments", rows.moments().unwrap(), own.moments().unwrap()),
            ] {
                let difference = largest_difference(&a, &b);
                assert!(difference <= tol, "{dtype:?}: {what} {difference}");
            }
            let direct = weight
                .flatten_from(1)
                .unwrap()
                .broadcast_matmul(&inputs.to_dtype(dtype).unwrap().flatten_from(2).unwrap())
                .unwrap();
            let difference = largest_difference(&own.maps(&weight).unwrap(), &direct);
            assert!(difference <= tol, "{dtype:?}: maps vs W x {difference}");
        }
    }
}
