//! Helpers shared by the integration tests.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A deterministic U(-1, 1) f64 weight of the given shape.
pub fn uniform(dims: &[usize], seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = dims.iter().product();
    let data: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

/// A deterministic normal weight with torchvision's kaiming-normal (fan-out) scale, in f32.
pub fn kaiming(dims: &[usize], seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let fan_out: usize = dims[0] * dims[2..].iter().product::<usize>();
    let std = (2.0 / fan_out as f64).sqrt();
    let normal = rand_distr::Normal::new(0.0, std).unwrap();
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.sample(normal) as f32).collect();
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

pub fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

pub fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// `|a - b| / max(|b|, tiny)`.
pub fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

/// `||a - b|| / ||b||` over flattened tensors.
pub fn relative_norm(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if norm == 0.0 {
        diff
    } else {
        diff / norm
    }
}

/// The 20 conv weight shapes of torchvision's ResNet-18.
pub fn resnet18_conv_shapes() -> Vec<Vec<usize>> {
    cs_init::arch::Architecture::Resnet18
        .tensors(0)
        .unwrap()
        .into_iter()
        .map(|(_, t)| t.dims().to_vec())
        .filter(|dims| dims.len() == 4)
        .collect()
}
