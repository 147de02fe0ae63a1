//! The CIFAR ResNets of He et al. (2016), section 4.2: ResNet-20/32/44/56, 6n+2 layers in three
//! stages of 16, 32 and 64 channels, with the parameter-free "option A" shortcut. Tensor names
//! and initialization follow `pytorch_resnet_cifar10`, so its pretrained checkpoints load as they
//! are.

use anyhow::Result;
use candle_core::{Module, Tensor};
use candle_nn::Linear;

use super::layers::{linear, BatchNorm2d, Conv, ConvSpec, WeightInit};
use super::Net;
use crate::params::Scope;

struct Block {
    conv1: Conv,
    bn1: BatchNorm2d,
    conv2: Conv,
    bn2: BatchNorm2d,
    /// Zero channels added on each side by the shortcut, when the block downsamples.
    shortcut_padding: Option<usize>,
}

pub struct CifarResNet {
    conv1: Conv,
    bn1: BatchNorm2d,
    stages: Vec<Vec<Block>>,
    linear: Linear,
}

fn conv3x3(scope: &Scope, inputs: usize, outputs: usize, stride: usize) -> Result<Conv> {
    let spec = ConvSpec {
        in_channels: inputs,
        out_channels: outputs,
        kernel: 3,
        stride,
        padding: 1,
        bias: false,
    };
    Conv::new(scope, spec, WeightInit::KaimingNormal)
}

impl CifarResNet {
    /// `blocks_per_stage` = n: 3 for ResNet-20, 9 for ResNet-56.
    pub fn new(scope: &Scope, blocks_per_stage: usize) -> Result<Self> {
        let conv1 = conv3x3(&scope.pp("conv1"), 3, 16, 1)?;
        let bn1 = BatchNorm2d::new(&scope.pp("bn1"), 16)?;
        let mut inputs = 16;
        let mut stages = Vec::new();
        for (stage, planes) in [16, 32, 64].into_iter().enumerate() {
            let mut blocks = Vec::new();
            for index in 0..blocks_per_stage {
                let stride = if stage > 0 && index == 0 { 2 } else { 1 };
                let block = scope.pp(format!("layer{}", stage + 1)).pp(index);
                blocks.push(Block {
                    conv1: conv3x3(&block.pp("conv1"), inputs, planes, stride)?,
                    bn1: BatchNorm2d::new(&block.pp("bn1"), planes)?,
                    conv2: conv3x3(&block.pp("conv2"), planes, planes, 1)?,
                    bn2: BatchNorm2d::new(&block.pp("bn2"), planes)?,
                    shortcut_padding: (stride != 1 || inputs != planes).then_some(planes / 4),
                });
                inputs = planes;
            }
            stages.push(blocks);
        }
        let linear = linear(&scope.pp("linear"), 64, 10, WeightInit::KaimingNormal)?;
        Ok(Self {
            conv1,
            bn1,
            stages,
            linear,
        })
    }
}

/// `F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad))`.
fn option_a_shortcut(x: &Tensor, pad: usize) -> candle_core::Result<Tensor> {
    let (batch, _, height, width) = x.dims4()?;
    let every_other = |n: usize| {
        let indices: Vec<u32> = (0..n as u32).step_by(2).collect();
        Tensor::new(indices, x.device())
    };
    let x = x
        .index_select(&every_other(height)?, 2)?
        .index_select(&every_other(width)?, 3)?;
    let zeros = Tensor::zeros((batch, pad, x.dim(2)?, x.dim(3)?), x.dtype(), x.device())?;
    Tensor::cat(&[&zeros, &x, &zeros], 1)
}

impl Net for CifarResNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let mut x = self.bn1.forward_t(&self.conv1.forward(x)?, train)?.relu()?;
        for block in self.stages.iter().flatten() {
            let y = block
                .bn1
                .forward_t(&block.conv1.forward(&x)?, train)?
                .relu()?;
            let y = block.bn2.forward_t(&block.conv2.forward(&y)?, train)?;
            let shortcut = match block.shortcut_padding {
                Some(pad) => option_a_shortcut(&x, pad)?,
                None => x,
            };
            x = (y + shortcut)?.relu()?;
        }
        self.linear.forward(&x.mean((2, 3))?)
    }

    fn conv_weights(&self) -> Vec<String> {
        let mut names = vec![self.conv1.weight_name.clone()];
        for block in self.stages.iter().flatten() {
            names.push(block.conv1.weight_name.clone());
            names.push(block.conv2.weight_name.clone());
        }
        names
    }

    fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        let mut layers = vec![&self.bn1];
        for block in self.stages.iter().flatten() {
            layers.push(&block.bn1);
            layers.push(&block.bn2);
        }
        layers
    }
}
