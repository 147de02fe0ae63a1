//! 2-D convolution on the CPU as im2col + GEMM, forward and backward, parallel over the batch.
//!
//! candle's `conv2d` is fine forward, but its CPU backward computes the kernel gradient as a
//! convolution whose "kernel" is the whole output map: for CNN1's 512x64x34x34 activations that
//! unfolds to more than a gigabyte per layer, and a training step spent most of its time
//! allocating and clearing pages. Here each batch element is unfolded into a per-thread buffer
//! and the three products (output, kernel gradient, input gradient) are GEMMs on it, the same
//! work PyTorch does.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use gemm::Parallelism;

use super::cpu_ops::f32_slice;
use rayon::prelude::*;

/// Stride and zero padding of a square convolution.
#[derive(Debug, Clone, Copy)]
pub struct Conv2dOp {
    pub stride: usize,
    pub padding: usize,
}

/// The sizes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    outputs: usize,
    kernel_h: usize,
    kernel_w: usize,
    out_h: usize,
    out_w: usize,
    stride: usize,
    padding: usize,
}

impl Geometry {
    fn new(op: &Conv2dOp, x: &Layout, w: &Layout) -> Result<Self> {
        let (batch, channels, height, width) = x.shape().dims4()?;
        let (outputs, weight_channels, kernel_h, kernel_w) = w.shape().dims4()?;
        if weight_channels != channels
            || height + 2 * op.padding < kernel_h
            || width + 2 * op.padding < kernel_w
            || op.stride == 0
        {
            candle_core::bail!(
                "conv2d: input {:?} does not fit weight {:?} with stride {} and padding {}",
                x.shape(),
                w.shape(),
                op.stride,
                op.padding
            );
        }
        Ok(Self {
            batch,
            channels,
            height,
            width,
            outputs,
            kernel_h,
            kernel_w,
            out_h: (height + 2 * op.padding - kernel_h) / op.stride + 1,
            out_w: (width + 2 * op.padding - kernel_w) / op.stride + 1,
            stride: op.stride,
            padding: op.padding,
        })
    }

    /// Rows of the unfolded matrix: `C * kh * kw`.
    fn patch(&self) -> usize {
        self.channels * self.kernel_h * self.kernel_w
    }

    /// Columns of the unfolded matrix: output positions.
    fn positions(&self) -> usize {
        self.out_h * self.out_w
    }

    fn image(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Calls `visit(row, span_start, source_start, length)` for every run of output positions
    /// of unfolded row `row` that reads the image: positions `span_start..span_start + length`
    /// (within the row's `out_h * out_w`) read image elements `source_start`, `+ stride`, ….
    /// Positions outside every run read the zero padding.
    fn for_each_span(&self, mut visit: impl FnMut(usize, usize, usize, usize)) {
        let (stride, padding) = (self.stride, self.padding);
        for c in 0..self.channels {
            for ky in 0..self.kernel_h {
                for kx in 0..self.kernel_w {
                    let row = (c * self.kernel_h + ky) * self.kernel_w + kx;
                    // Output columns whose input column ox*stride + kx - padding is inside.
                    let first = padding.saturating_sub(kx).div_ceil(stride);
                    let last = (self.width + padding - kx).div_ceil(stride).min(self.out_w);
                    if first >= last {
                        continue;
                    }
                    for oy in 0..self.out_h {
                        let y = oy * stride + ky;
                        if y < padding || y - padding >= self.height {
                            continue;
                        }
                        let source =
                            (c * self.height + y - padding) * self.width + first * stride + kx
                                - padding;
                        visit(row, oy * self.out_w + first, source, last - first);
                    }
                }
            }
        }
    }

    /// Unfolds one image `[C, H, W]` into `columns: [C*kh*kw, out_h*out_w]`.
    fn unfold(&self, image: &[f32], columns: &mut [f32]) {
        let (positions, stride) = (self.positions(), self.stride);
        columns.fill(0.0);
        self.for_each_span(|row, start, source, length| {
            let out = &mut columns[row * positions + start..][..length];
            if stride == 1 {
                out.copy_from_slice(&image[source..source + length]);
            } else {
                for (k, o) in out.iter_mut().enumerate() {
                    *o = image[source + k * stride];
                }
            }
        });
    }

    /// Adds unfolded columns back onto an image (the adjoint of [`Geometry::unfold`]).
    fn fold(&self, columns: &[f32], image: &mut [f32]) {
        let (positions, stride) = (self.positions(), self.stride);
        self.for_each_span(|row, start, source, length| {
            let values = &columns[row * positions + start..][..length];
            for (k, &v) in values.iter().enumerate() {
                image[source + k * stride] += v;
            }
        });
    }
}

/// A row-major or transposed view of a matrix for [`gemm_into`].
struct Matrix<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Matrix<'a> {
    fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    fn transposed(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `dst (+)= lhs × rhs`, single-threaded (the callers are parallel over the batch).
fn gemm_into(dst: &mut [f32], lhs: &Matrix, rhs: &Matrix, accumulate: bool) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert!(rhs.rows == k && dst.len() >= m * n && lhs.fits() && rhs.fits());
    // SAFETY: the asserts above keep every index gemm forms inside the three slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "conv2d-im2col"
    }

    /// `(x [B, C, H, W], weight [O, C, kh, kw], bias [O]) -> [B, O, out_h, out_w]`.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(self, l1, l2)?;
        let x = f32_slice(s1, l1, "conv2d input")?;
        let w = f32_slice(s2, l2, "conv2d weight")?;
        let bias = f32_slice(s3, l3, "conv2d bias")?;
        let (patch, positions) = (g.patch(), g.positions());
        let mut y = vec![0f32; g.batch * g.outputs * positions];
        y.par_chunks_mut(g.outputs * positions)
            .zip(x.par_chunks(g.image()))
            .for_each_init(
                || vec![0f32; patch * positions],
                |columns, (out, image)| {
                    g.unfold(image, columns);
                    for (o, row) in out.chunks_mut(positions).enumerate() {
                        row.fill(bias[o]);
                    }
                    gemm_into(
                        out,
                        &Matrix::row_major(w, g.outputs, patch),
                        &Matrix::row_major(columns, patch, positions),
                        true,
                    );
                },
            );
        let shape = Shape::from((g.batch, g.outputs, g.out_h, g.out_w));
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let packed = x.apply_op3_no_bwd(w, &grad.contiguous()?, &Conv2dGrad(*self))?;
        let (nx, nw, nb) = (x.elem_count(), w.elem_count(), bias.elem_count());
        let dx = packed.narrow(0, 0, nx)?.reshape(x.shape())?;
        let dw = packed.narrow(0, nx, nw)?.reshape(w.shape())?;
        let db = packed.narrow(0, nx + nw, nb)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// The gradients of [`Conv2dOp`] from `(x, weight, dy)`, packed as `[dx, dweight, dbias]`.
struct Conv2dGrad(Conv2dOp);

impl CustomOp3 for Conv2dGrad {
    fn name(&self) -> &'static str {
        "conv2d-im2col-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(&self.0, l1, l2)?;
        let x = f32_slice(s1, l1, "conv2d input")?;
        let w = f32_slice(s2, l2, "conv2d weight")?;
        let dy = f32_slice(s3, l3, "conv2d gradient")?;
        let (patch, positions) = (g.patch(), g.positions());
        if dy.len() != g.batch * g.outputs * positions {
            candle_core::bail!(
                "conv2d gradient: {:?} does not match the output",
                l3.shape()
            );
        }
        let weight_len = g.outputs * patch;
        let mut dx = vec![0f32; x.len()];
        let (dw, db) = dx
            .par_chunks_mut(g.image())
            .zip(
                x.par_chunks(g.image())
                    .zip(dy.par_chunks(g.outputs * positions)),
            )
            .fold(
                || {
                    let columns = vec![0f32; patch * positions];
                    (vec![0f32; weight_len], vec![0f32; g.outputs], columns)
                },
                |(mut dw, mut db, mut columns), (dx_image, (image, dy_image))| {
                    let dy_matrix = Matrix::row_major(dy_image, g.outputs, positions);
                    // dweight += dy · columnsᵀ
                    g.unfold(image, &mut columns);
                    gemm_into(
                        &mut dw,
                        &dy_matrix,
                        &Matrix::row_major(&columns, patch, positions).transposed(),
                        true,
                    );
                    for (o, row) in dy_image.chunks(positions).enumerate() {
                        db[o] += row.iter().sum::<f32>();
                    }
                    // dcolumns = weightᵀ · dy, folded back onto the image.
                    gemm_into(
                        &mut columns,
                        &Matrix::row_major(w, g.outputs, patch).transposed(),
                        &dy_matrix,
                        false,
                    );
                    g.fold(&columns, dx_image);
                    (dw, db, columns)
                },
            )
            .map(|(dw, db, _)| (dw, db))
            .reduce(
                || (vec![0f32; weight_len], vec![0f32; g.outputs]),
                |(mut a, mut b), (c, d)| {
                    a.iter_mut().zip(c).for_each(|(a, c)| *a += c);
                    b.iter_mut().zip(d).for_each(|(b, d)| *b += d);
                    (a, b)
                },
            );
        dx.extend_from_slice(&dw);
        dx.extend_from_slice(&db);
        let len = dx.len();
        Ok((CpuStorage::F32(dx), Shape::from(len)))
    }
}
