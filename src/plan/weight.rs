//! A selected conv weight as read: its stored form (the file's dtype and layout) and the view
//! the engines and the figures take of it (`[out, in, k...]`, f32). The pipeline, `inspect` and
//! `check` read every weight through it, and the pipeline stores every new weight through it.

use candle_core::{DType, Device, Tensor};

use super::KernelLayout;
use crate::checkpoint::{tensor_from_bytes, Result, SafetensorsFile, TensorInfo};

/// A conv weight in its stored form, and in the form the engines see.
pub struct ConvWeight {
    stored: Tensor,
    layout: KernelLayout,
    weight: Tensor,
}

impl ConvWeight {
    /// Reads `tensor` of `file` onto `device`.
    pub fn read(
        file: &SafetensorsFile,
        tensor: &TensorInfo,
        layout: KernelLayout,
        device: &Device,
    ) -> Result<Self> {
        let stored = tensor_from_bytes(file.data(tensor), tensor.dtype, &tensor.shape, device)?;
        Self::from_stored(stored, layout)
    }

    /// A weight already in memory, in `layout` and its own dtype.
    pub fn from_stored(stored: Tensor, layout: KernelLayout) -> Result<Self> {
        let weight = oihw(&stored, layout, DType::F32)?;
        Ok(Self {
            stored,
            layout,
            weight,
        })
    }

    /// The weight as stored.
    pub fn stored(&self) -> &Tensor {
        &self.stored
    }

    /// The weight as the engines see it: `[out, in, k...]`, f32.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The weight as `[out, in, k...]` in `dtype`, for a caller that computes in another
    /// precision (`check` works in f64).
    pub fn weight_as(&self, dtype: DType) -> Result<Tensor> {
        oihw(&self.stored, self.layout, dtype)
    }

    /// Whether the stored dtype holds every f32 value exactly, so that what the engines see of
    /// a new weight is that weight.
    pub fn holds_f32(&self) -> bool {
        matches!(self.stored.dtype(), DType::F32 | DType::F64)
    }

    /// A new weight (`[out, in, k...]`) in the stored layout and dtype, and what the engines see
    /// of it after the rounding to that dtype.
    pub fn store(&self, weight: &Tensor) -> Result<(Tensor, Tensor)> {
        let stored = weight
            .permute(self.layout.from_oihw_permutation(self.stored.rank()))?
            .contiguous()?
            .to_dtype(self.stored.dtype())?;
        let seen = oihw(&stored, self.layout, DType::F32)?;
        Ok((stored, seen))
    }
}

fn oihw(stored: &Tensor, layout: KernelLayout, dtype: DType) -> Result<Tensor> {
    Ok(stored
        .permute(layout.to_oihw_permutation(stored.rank()))?
        .contiguous()?
        .to_dtype(dtype)?)
}
