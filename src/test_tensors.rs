//! Tensors the unit tests draw and compare.

use candle_core::{DType, Device, Tensor};

/// Standard normal values of `dims`, drawn in f64 and stored as `dtype`, on the CPU.
pub fn standard_normal(dims: &[usize], dtype: DType) -> Tensor {
    Tensor::randn(0f64, 1., dims, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .expect("a CPU tensor of any shape and float dtype")
}

/// The largest difference between two tensors' values.
pub fn largest_difference(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .and_then(|d| d.abs()?.max_all()?.to_dtype(DType::F64)?.to_scalar::<f64>())
        .expect("tensors of one shape and dtype")
}
