//! The paper's shallow CNNs: four blocks of `Conv2d(3x3, padding 2) -> BatchNorm2d ->
//! LeakyReLU(0.2) -> MaxPool2d(2, 2)`, then one linear layer. CNN1 has 64 channels per block,
//! CNN2 128.

use anyhow::Result;
use candle_core::{Module, Tensor};
use candle_nn::Linear;

use super::cpu_ops::LeakyMaxPool;
use super::layers::{linear, BatchNorm2d, Conv, ConvSpec, WeightInit};
use super::{max_pool_2x2, Net};
use crate::params::Scope;

const BLOCKS: usize = 4;

pub struct Cnn {
    blocks: Vec<(Conv, BatchNorm2d)>,
    fc: Linear,
}

impl Cnn {
    /// Tensors `conv1..conv4`, `bn1..bn4` and `fc`.
    pub fn new(scope: &Scope, width: usize) -> Result<Self> {
        let mut blocks = Vec::with_capacity(BLOCKS);
        // 32 -> 34 -> 17 -> 19 -> 9 -> 11 -> 5 -> 7 -> 3: padding 2 grows each side by 2.
        let mut side = 32;
        for block in 1..=BLOCKS {
            let spec = ConvSpec {
                in_channels: if block == 1 { 3 } else { width },
                out_channels: width,
                kernel: 3,
                stride: 1,
                padding: 2,
                bias: true,
            };
            let conv = Conv::new(
                &scope.pp(format!("conv{block}")),
                spec,
                WeightInit::TorchDefault,
            )?;
            let bn = BatchNorm2d::new(&scope.pp(format!("bn{block}")), width)?;
            blocks.push((conv, bn));
            side = (side + 2) / 2;
        }
        let fc = linear(
            &scope.pp("fc"),
            width * side * side,
            10,
            WeightInit::TorchDefault,
        )?;
        Ok(Self { blocks, fc })
    }
}

impl Net for Cnn {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        for (conv, bn) in &self.blocks {
            let y = bn.forward_t(&conv.forward(&x)?, train)?;
            x = leaky_max_pool(&y)?;
        }
        self.fc.forward(&x.flatten_from(1)?)
    }

    fn conv_weights(&self) -> Vec<String> {
        self.blocks
            .iter()
            .map(|(c, _)| c.weight_name.clone())
            .collect()
    }

    fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        self.blocks.iter().map(|(_, bn)| bn).collect()
    }
}

const SLOPE: f64 = 0.2;

/// `MaxPool2d(2, 2)(LeakyReLU(0.2)(x))`, fused on the CPU.
fn leaky_max_pool(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        x.contiguous()?.apply_op1(LeakyMaxPool {
            slope: SLOPE as f32,
        })
    } else {
        max_pool_2x2(&candle_nn::ops::leaky_relu(x, SLOPE)?)
    }
}
