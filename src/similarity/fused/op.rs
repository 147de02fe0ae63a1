//! The fused engine as a candle custom op, so `backward()` works through the fast CPU kernels.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use super::{loss, loss_and_gradient, Real};
use crate::similarity::{KernelGeometry, Variant};
use crate::{Error, Result};

/// L_CS of a CPU f32/f64 weight through the fused kernels, differentiable by candle's autograd.
pub fn conv_similarity(weight: &Tensor, variant: Variant) -> Result<Tensor> {
    KernelGeometry::from_dims(weight.dims())?;
    if !weight.device().is_cpu() {
        return Err(Error::Candle(candle_core::Error::Msg(format!(
            "the fused L_CS runs on CPU, the weight is on {:?}; use similarity::portable",
            weight.device()
        ))));
    }
    Ok(weight.contiguous()?.apply_op1(SimilarityOp { variant })?)
}

/// Forward: the loss. Backward: the gradient, from [`GradientOp`].
struct SimilarityOp {
    variant: Variant,
}

/// The gradient of L_CS as a tensor of the weight's shape.
struct GradientOp {
    variant: Variant,
}

fn contiguous<'a, T>(data: &'a [T], layout: &Layout) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!(
            "conv-similarity needs a contiguous weight, got strides {:?}",
            layout.stride()
        ),
    }
}

fn geometry(layout: &Layout) -> candle_core::Result<KernelGeometry> {
    KernelGeometry::from_dims(layout.dims()).map_err(candle_core::Error::wrap)
}

impl CustomOp1 for SimilarityOp {
    fn name(&self) -> &'static str {
        "conv-similarity"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = geometry(layout)?;
        let out = match storage {
            CpuStorage::F32(d) => {
                CpuStorage::F32(vec![loss(contiguous(d, layout)?, &g, self.variant) as f32])
            }
            CpuStorage::F64(d) => {
                CpuStorage::F64(vec![loss(contiguous(d, layout)?, &g, self.variant)])
            }
            other => candle_core::bail!(
                "conv-similarity runs on f32 or f64 weights, got {:?}",
                other.dtype()
            ),
        };
        Ok((out, Shape::from(())))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let gradient = arg.apply_op1_no_bwd(&GradientOp {
            variant: self.variant,
        })?;
        Ok(Some(gradient.broadcast_mul(grad_res)?))
    }
}

impl CustomOp1 for GradientOp {
    fn name(&self) -> &'static str {
        "conv-similarity-gradient"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        fn run<T: Real>(
            data: &[T],
            layout: &Layout,
            variant: Variant,
        ) -> candle_core::Result<Vec<T>> {
            Ok(loss_and_gradient(contiguous(data, layout)?, &geometry(layout)?, variant).1)
        }
        let out = match storage {
            CpuStorage::F32(d) => CpuStorage::F32(run(d, layout, self.variant)?),
            CpuStorage::F64(d) => CpuStorage::F64(run(d, layout, self.variant)?),
            other => candle_core::bail!(
                "conv-similarity runs on f32 or f64 weights, got {:?}",
                other.dtype()
            ),
        };
        Ok((out, layout.shape().clone()))
    }
}
