//! Training-mode batch norm and the CNN blocks' LeakyReLU + max-pool as single CPU passes.
//!
//! Built from candle ops, one CNN1 training step spends most of its time in element-wise
//! passes over 512x64x34x34 activations (batch norm alone is about ten of them, each a fresh
//! 150 MB allocation) and little in the matrix products. These ops do the same arithmetic in one
//! or two cache-friendly passes, forward and backward, parallel over channels. Off the CPU, or
//! for other dtypes, the callers use the equivalent candle ops.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// The f32 elements of a contiguous CPU tensor, or an error naming `what`.
pub(crate) fn f32_slice<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{what}: expected f32, got {:?}", storage.dtype());
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what}: the input must be contiguous"),
    }
}

/// Per-channel statistics of `x: [B, C, plane]`: (mean, biased variance), in f64.
fn channel_statistics(x: &[f32], channels: usize, plane: usize) -> Vec<(f64, f64)> {
    let batch = x.len() / (channels * plane);
    (0..channels)
        .into_par_iter()
        .map(|c| {
            let (mut sum, mut sum_sq) = (0.0f64, 0.0f64);
            for b in 0..batch {
                let chunk = &x[(b * channels + c) * plane..][..plane];
                let (s, q) = chunk
                    .iter()
                    .fold((0.0f32, 0.0f32), |(s, q), &v| (s + v, q + v * v));
                sum += f64::from(s);
                sum_sq += f64::from(q);
            }
            let n = (batch * plane) as f64;
            let mean = sum / n;
            (mean, (sum_sq / n - mean * mean).max(0.0))
        })
        .collect()
}

fn dims4(layout: &Layout) -> Result<(usize, usize, usize)> {
    let (batch, channels, height, width) = layout.shape().dims4()?;
    Ok((batch, channels, height * width))
}

/// `y = (x - mean) / sqrt(var + eps) * gamma + beta` with batch statistics, over `[B, C, H, W]`.
pub struct BatchNormTrain {
    pub eps: f64,
    /// The batch's (mean, biased variance) per channel, for the running statistics.
    pub statistics: Arc<Mutex<Vec<(f64, f64)>>>,
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
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
        let (_, channels, plane) = dims4(l1)?;
        let x = f32_slice(s1, l1, "batch norm input")?;
        let gamma = f32_slice(s2, l2, "batch norm weight")?;
        let beta = f32_slice(s3, l3, "batch norm bias")?;
        let statistics = channel_statistics(x, channels, plane);
        let affine: Vec<(f32, f32)> = statistics
            .iter()
            .enumerate()
            .map(|(c, &(mean, var))| {
                let scale = f64::from(gamma[c]) / (var + self.eps).sqrt();
                (scale as f32, (f64::from(beta[c]) - mean * scale) as f32)
            })
            .collect();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(plane)
            .zip(x.par_chunks(plane))
            .enumerate()
            .for_each(|(k, (out, input))| {
                let (scale, shift) = affine[k % channels];
                for (o, &v) in out.iter_mut().zip(input) {
                    *o = v * scale + shift;
                }
            });
        *self.statistics.lock().expect("statistics poisoned") = statistics;
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let channels = gamma.elem_count();
        let packed =
            x.apply_op3_no_bwd(gamma, &grad.contiguous()?, &BatchNormGrad { eps: self.eps })?;
        let dx = packed.narrow(0, 0, x.elem_count())?.reshape(x.shape())?;
        let dgamma = packed.narrow(0, x.elem_count(), channels)?;
        let dbeta = packed.narrow(0, x.elem_count() + channels, channels)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// The gradients of [`BatchNormTrain`], packed as `[dx (B*C*H*W), dgamma (C), dbeta (C)]`.
struct BatchNormGrad {
    eps: f64,
}

impl CustomOp3 for BatchNormGrad {
    fn name(&self) -> &'static str {
        "batch-norm-train-grad"
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
        let (batch, channels, plane) = dims4(l1)?;
        let x = f32_slice(s1, l1, "batch norm input")?;
        let gamma = f32_slice(s2, l2, "batch norm weight")?;
        let dy = f32_slice(s3, l3, "batch norm gradient")?;
        let statistics = channel_statistics(x, channels, plane);
        // Per channel: (mean, 1/σ, Σ dy, Σ dy·x̂).
        let sums: Vec<(f32, f32, f64, f64)> = (0..channels)
            .into_par_iter()
            .map(|c| {
                let (mean, var) = statistics[c];
                let inv_std = 1.0 / (var + self.eps).sqrt();
                let (mut sum_dy, mut sum_dy_x) = (0.0f64, 0.0f64);
                for b in 0..batch {
                    let offset = (b * channels + c) * plane;
                    let (s, t) = dy[offset..][..plane]
                        .iter()
                        .zip(&x[offset..][..plane])
                        .fold((0.0f32, 0.0f32), |(s, t), (&g, &v)| (s + g, t + g * v));
                    sum_dy += f64::from(s);
                    sum_dy_x += f64::from(t);
                }
                let sum_dy_xhat = (sum_dy_x - mean * sum_dy) * inv_std;
                (mean as f32, inv_std as f32, sum_dy, sum_dy_xhat)
            })
            .collect();
        let n = (batch * plane) as f64;
        let mut out = vec![0f32; x.len() + 2 * channels];
        let (dx, tail) = out.split_at_mut(x.len());
        dx.par_chunks_mut(plane)
            .zip(x.par_chunks(plane).zip(dy.par_chunks(plane)))
            .enumerate()
            .for_each(|(k, (out, (input, grad)))| {
                let c = k % channels;
                let (mean, inv_std, sum_dy, sum_dy_xhat) = sums[c];
                let scale = gamma[c] * inv_std;
                let mean_dy = (sum_dy / n) as f32;
                let mean_dy_xhat = (sum_dy_xhat / n) as f32;
                for ((o, &v), &g) in out.iter_mut().zip(input).zip(grad) {
                    let xhat = (v - mean) * inv_std;
                    *o = scale * (g - mean_dy - xhat * mean_dy_xhat);
                }
            });
        for (c, &(_, _, sum_dy, sum_dy_xhat)) in sums.iter().enumerate() {
            tail[c] = sum_dy_xhat as f32;
            tail[channels + c] = sum_dy as f32;
        }
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

/// `MaxPool2d(2, 2)` (odd sizes floored) of `LeakyReLU(slope)`: the two commute because
/// LeakyReLU is increasing, so the activation runs on the pooled quarter.
pub struct LeakyMaxPool {
    pub slope: f32,
}

fn pooled_dims(layout: &Layout) -> Result<(usize, usize, usize, usize, usize)> {
    let (batch, channels, height, width) = layout.shape().dims4()?;
    Ok((batch * channels, height, width, height / 2, width / 2))
}

/// The index (within the plane) of the first maximum of the window at `(oy, ox)`.
fn window_argmax(plane: &[f32], width: usize, oy: usize, ox: usize) -> usize {
    let top = 2 * oy * width + 2 * ox;
    let mut best = top;
    for candidate in [top + 1, top + width, top + width + 1] {
        if plane[candidate] > plane[best] {
            best = candidate;
        }
    }
    best
}

impl CustomOp1 for LeakyMaxPool {
    fn name(&self) -> &'static str {
        "leaky-relu-max-pool-2x2"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (planes, height, width, out_h, out_w) = pooled_dims(layout)?;
        let x = f32_slice(storage, layout, "max-pool input")?;
        let mut y = vec![0f32; planes * out_h * out_w];
        y.par_chunks_mut(out_h * out_w)
            .zip(x.par_chunks(height * width))
            .for_each(|(out, plane)| {
                for oy in 0..out_h {
                    for ox in 0..out_w {
                        let m = plane[window_argmax(plane, width, oy, ox)];
                        out[oy * out_w + ox] = if m >= 0.0 { m } else { m * self.slope };
                    }
                }
            });
        let (b, c, _, _) = layout.shape().dims4()?;
        Ok((CpuStorage::F32(y), Shape::from((b, c, out_h, out_w))))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(
            &grad.contiguous()?,
            &LeakyMaxPoolGrad { slope: self.slope },
        )?))
    }
}

struct LeakyMaxPoolGrad {
    slope: f32,
}

impl CustomOp2 for LeakyMaxPoolGrad {
    fn name(&self) -> &'static str {
        "leaky-relu-max-pool-2x2-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, height, width, out_h, out_w) = pooled_dims(l1)?;
        let x = f32_slice(s1, l1, "max-pool input")?;
        let dy = f32_slice(s2, l2, "max-pool gradient")?;
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(height * width)
            .zip(
                x.par_chunks(height * width)
                    .zip(dy.par_chunks(out_h * out_w)),
            )
            .for_each(|(out, (plane, grad))| {
                for oy in 0..out_h {
                    for ox in 0..out_w {
                        let at = window_argmax(plane, width, oy, ox);
                        let slope = if plane[at] >= 0.0 { 1.0 } else { self.slope };
                        out[at] = grad[oy * out_w + ox] * slope;
                    }
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}
