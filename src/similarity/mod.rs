//! The Convolutional Similarity L_CS of one conv weight: the loss, its variants and its engines.
//!
//! - [`portable`]: linear-time, candle autograd, any device.
//! - [`fused`]: the hand-written CPU engine (loss, gradient and optimizer in one pass).
//! - [`literal`]: the `O(S²C²k⁴)` definition, the reference the others are tested against.

pub mod fused;
mod geometry;
pub mod literal;
pub mod portable;
mod record_figures;
mod variant;

pub use geometry::{KernelGeometry, PositionPair, ShiftTable};
pub use record_figures::RecordFigures;
pub use variant::Variant;

use candle_core::{DType, Tensor};

use crate::Result;

/// L_CS of a conv weight (`[S, C, k...]`, PyTorch layout) as a differentiable scalar tensor.
///
/// On CPU with f32/f64 weights this runs the fused engine as a candle custom op (forward and
/// backward); elsewhere the portable graph of candle ops. Both give the same value and gradient.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use cs_init::similarity::{conv_similarity, Variant};
///
/// let w = Var::from_tensor(&Tensor::randn(0f32, 1., (8, 3, 3, 3), &Device::Cpu)?)?;
/// let loss = conv_similarity(w.as_tensor(), Variant::Paper)?;
/// let grads = loss.backward()?;
/// assert_eq!(grads.get(w.as_tensor()).unwrap().dims(), &[8, 3, 3, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn conv_similarity(weight: &Tensor, variant: Variant) -> Result<Tensor> {
    if weight.device().is_cpu() && matches!(weight.dtype(), DType::F32 | DType::F64) {
        fused::conv_similarity(weight, variant)
    } else {
        portable::conv_similarity(weight, variant)
    }
}

/// L_CS as an `f64` number.
pub fn conv_similarity_value(weight: &Tensor, variant: Variant) -> Result<f64> {
    Ok(conv_similarity(weight, variant)?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?)
}
