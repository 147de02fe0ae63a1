//! ResNet-18 for CIFAR: torchvision's ResNet-18 with a 3x3 stride-1 stem and no max-pool, the
//! usual adaptation to 32x32 images and the paper's deep model. Tensor names are torchvision's
//! (`layerS.B.downsample.0/1`, `fc`).

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
    downsample: Option<(Conv, BatchNorm2d)>,
}

pub struct CifarResNet18 {
    conv1: Conv,
    bn1: BatchNorm2d,
    blocks: Vec<Block>,
    fc: Linear,
}

fn conv(
    scope: &Scope,
    inputs: usize,
    outputs: usize,
    kernel: usize,
    stride: usize,
) -> Result<Conv> {
    let spec = ConvSpec {
        in_channels: inputs,
        out_channels: outputs,
        kernel,
        stride,
        padding: kernel / 2,
        bias: false,
    };
    Conv::new(scope, spec, WeightInit::TorchDefault)
}

impl CifarResNet18 {
    pub fn new(scope: &Scope) -> Result<Self> {
        let conv1 = conv(&scope.pp("conv1"), 3, 64, 3, 1)?;
        let bn1 = BatchNorm2d::new(&scope.pp("bn1"), 64)?;
        let mut inputs = 64;
        let mut blocks = Vec::new();
        for (stage, planes) in [64, 128, 256, 512].into_iter().enumerate() {
            for index in 0..2 {
                let stride = if stage > 0 && index == 0 { 2 } else { 1 };
                let block = scope.pp(format!("layer{}", stage + 1)).pp(index);
                let downsample = if stride != 1 || inputs != planes {
                    let down = block.pp("downsample");
                    Some((
                        conv(&down.pp(0), inputs, planes, 1, stride)?,
                        BatchNorm2d::new(&down.pp(1), planes)?,
                    ))
                } else {
                    None
                };
                blocks.push(Block {
                    conv1: conv(&block.pp("conv1"), inputs, planes, 3, stride)?,
                    bn1: BatchNorm2d::new(&block.pp("bn1"), planes)?,
                    conv2: conv(&block.pp("conv2"), planes, planes, 3, 1)?,
                    bn2: BatchNorm2d::new(&block.pp("bn2"), planes)?,
                    downsample,
                });
                inputs = planes;
            }
        }
        let fc = linear(&scope.pp("fc"), 512, 10, WeightInit::TorchDefault)?;
        Ok(Self {
            conv1,
            bn1,
            blocks,
            fc,
        })
    }
}

impl Net for CifarResNet18 {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let mut x = self.bn1.forward_t(&self.conv1.forward(x)?, train)?.relu()?;
        for block in &self.blocks {
            let y = block
                .bn1
                .forward_t(&block.conv1.forward(&x)?, train)?
                .relu()?;
            let y = block.bn2.forward_t(&block.conv2.forward(&y)?, train)?;
            let shortcut = match &block.downsample {
                Some((conv, bn)) => bn.forward_t(&conv.forward(&x)?, train)?,
                None => x,
            };
            x = (y + shortcut)?.relu()?;
        }
        self.fc.forward(&x.mean((2, 3))?)
    }

    fn conv_weights(&self) -> Vec<String> {
        let mut names = vec![self.conv1.weight_name.clone()];
        for block in &self.blocks {
            names.push(block.conv1.weight_name.clone());
            names.push(block.conv2.weight_name.clone());
            if let Some((conv, _)) = &block.downsample {
                names.push(conv.weight_name.clone());
            }
        }
        names
    }

    fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        let mut layers = vec![&self.bn1];
        for block in &self.blocks {
            layers.push(&block.bn1);
            layers.push(&block.bn2);
            if let Some((_, bn)) = &block.downsample {
                layers.push(bn);
            }
        }
        layers
    }
}
