//! Raw little-endian tensor bytes to candle tensors and back, for the floating-point dtypes that
//! conv weights are stored in.

use candle_core::{DType, Device, Tensor};
use half::{bf16, f16};
use safetensors::Dtype;

use super::Result;

/// The candle dtype of a floating-point safetensors dtype that cs-init computes with.
pub fn candle_dtype(dtype: Dtype) -> Option<DType> {
    match dtype {
        Dtype::F16 => Some(DType::F16),
        Dtype::BF16 => Some(DType::BF16),
        Dtype::F32 => Some(DType::F32),
        Dtype::F64 => Some(DType::F64),
        _ => None,
    }
}

fn decode<T, const N: usize>(bytes: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| from(c.try_into().expect("chunk of N bytes")))
        .collect()
}

/// A tensor from raw bytes; `dtype` must be one [`candle_dtype`] accepts.
pub fn tensor_from_bytes(
    bytes: &[u8],
    dtype: Dtype,
    shape: &[usize],
    device: &Device,
) -> Result<Tensor> {
    // Little-endian bytes are the values' own: one copy, as candle's safetensors loader does.
    #[cfg(target_endian = "little")]
    if let Some(dtype) = candle_dtype(dtype) {
        return Ok(Tensor::from_raw_buffer(bytes, dtype, shape, device)?);
    }
    let tensor = match dtype {
        Dtype::F16 => Tensor::from_vec(decode(bytes, f16::from_le_bytes), shape, device)?,
        Dtype::BF16 => Tensor::from_vec(decode(bytes, bf16::from_le_bytes), shape, device)?,
        Dtype::F32 => Tensor::from_vec(decode(bytes, f32::from_le_bytes), shape, device)?,
        Dtype::F64 => Tensor::from_vec(decode(bytes, f64::from_le_bytes), shape, device)?,
        other => {
            return Err(
                candle_core::Error::Msg(format!("cannot compute on {other:?} tensors")).into(),
            );
        }
    };
    Ok(tensor)
}

/// The raw little-endian bytes of a floating-point tensor, in its own dtype.
pub fn tensor_to_bytes(tensor: &Tensor) -> Result<Vec<u8>> {
    let flat = tensor.flatten_all()?.to_device(&Device::Cpu)?;
    let bytes = match tensor.dtype() {
        DType::F16 => flat
            .to_vec1::<f16>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::BF16 => flat
            .to_vec1::<bf16>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::F32 => flat
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::F64 => flat
            .to_vec1::<f64>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        other => {
            return Err(candle_core::Error::Msg(format!("cannot store {other:?} tensors")).into());
        }
    };
    Ok(bytes)
}
