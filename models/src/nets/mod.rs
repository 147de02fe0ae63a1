//! The networks of the experiments, built from a seed or loaded from a checkpoint.

mod cnn;
pub mod conv_op;
pub mod cpu_ops;
mod layers;
mod resnet18;
mod resnet_cifar;

use std::fmt;
use std::path::Path;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor, Var};

use crate::data::{Batches, Dataset, Normalization};
use crate::params::{Params, Scope};
pub use layers::BatchNorm2d;

/// A network's forward pass and the names of its conv weights.
pub trait Net: Send + Sync {
    /// Logits `[B, 10]` for images `[B, 3, 32, 32]`; `train` selects batch statistics in
    /// batch norm (and updates the running ones).
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor>;
    /// The conv weights, in forward order.
    fn conv_weights(&self) -> Vec<String>;
    /// Every batch-norm layer.
    fn batch_norms(&self) -> Vec<&BatchNorm2d>;
}

/// The networks this crate builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// The paper's CNN1: four 64-channel conv blocks (118,858 parameters).
    Cnn1,
    /// The paper's CNN2: four 128-channel conv blocks (458,890 parameters).
    Cnn2,
    /// CIFAR ResNet-20 (He et al.; option A shortcuts).
    Resnet20,
    Resnet32,
    Resnet44,
    /// CIFAR ResNet-56.
    Resnet56,
    /// ResNet-18 with a 3x3 stem and no max-pool.
    Resnet18,
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = clap::ValueEnum::to_possible_value(self).expect("no skipped variants");
        f.write_str(name.get_name())
    }
}

/// A network and its parameters.
pub struct Network {
    pub architecture: Architecture,
    pub params: Params,
    net: Box<dyn Net>,
}

impl Network {
    /// A new network initialized from `seed`.
    pub fn new(architecture: Architecture, seed: u64, device: &Device) -> Result<Self> {
        Self::build(architecture, Params::seeded(seed, device))
    }

    /// A network with the weights of a safetensors checkpoint. Every tensor the network needs
    /// must be there with its shape, and every float tensor there must be used (BatchNorm's
    /// integer `num_batches_tracked` counters are ignored).
    pub fn load(architecture: Architecture, checkpoint: &Path, device: &Device) -> Result<Self> {
        let network = Self::build(architecture, Params::load(checkpoint, device)?)?;
        let unused: Vec<String> = network
            .params
            .unused()
            .into_iter()
            .filter(|name| !name.ends_with("num_batches_tracked"))
            .collect();
        if !unused.is_empty() {
            bail!(
                "{}: tensors {} are not part of {architecture}; is --model right?",
                checkpoint.display(),
                unused.join(", ")
            );
        }
        Ok(network)
    }

    fn build(architecture: Architecture, params: Params) -> Result<Self> {
        let scope = Scope::root(&params);
        let net: Box<dyn Net> = match architecture {
            Architecture::Cnn1 => Box::new(cnn::Cnn::new(&scope, 64)?),
            Architecture::Cnn2 => Box::new(cnn::Cnn::new(&scope, 128)?),
            Architecture::Resnet20 => Box::new(resnet_cifar::CifarResNet::new(&scope, 3)?),
            Architecture::Resnet32 => Box::new(resnet_cifar::CifarResNet::new(&scope, 5)?),
            Architecture::Resnet44 => Box::new(resnet_cifar::CifarResNet::new(&scope, 7)?),
            Architecture::Resnet56 => Box::new(resnet_cifar::CifarResNet::new(&scope, 9)?),
            Architecture::Resnet18 => Box::new(resnet18::CifarResNet18::new(&scope)?),
        };
        Ok(Self {
            architecture,
            params,
            net,
        })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.net.forward_t(x, train)
    }

    /// Re-estimates every batch norm's running statistics from `dataset` (no augmentation): the
    /// average of the per-batch statistics weighted by batch size (PyTorch's `momentum=None`
    /// with equal batches). For weights whose
    /// scale or direction changed after the statistics were gathered, such as a pretrained
    /// network after cs-init. Only the running statistics change.
    pub fn recalibrate_batch_norm(
        &self,
        dataset: &Dataset,
        normalization: Normalization,
        device: &Device,
    ) -> Result<()> {
        let layers = self.net.batch_norms();
        let result = (|| {
            let mut seen = 0;
            for batch in Batches::sequential(dataset, 500, normalization, device) {
                let batch = batch?;
                let size = batch.labels.dim(0)?;
                seen += size;
                // Weighted by batch size, so a short last batch counts for what it holds.
                for layer in &layers {
                    layer.set_momentum(size as f64 / seen as f64);
                }
                self.forward_t(&batch.images, true)?;
            }
            Ok(())
        })();
        for layer in &layers {
            layer.reset_momentum();
        }
        result
    }

    /// The input of every conv layer on `images`, by weight name, in forward order: what each
    /// layer sees inside the network. `train` selects batch statistics in batch norm, as for
    /// [`Network::forward_t`] (and updates the running ones).
    pub fn conv_inputs(&self, images: &Tensor, train: bool) -> Result<Vec<(String, Tensor)>> {
        let (logits, inputs) = layers::capture_conv_inputs(|| self.forward_t(images, train));
        logits?;
        Ok(inputs)
    }

    /// The conv weights by name, in forward order.
    pub fn conv_weights(&self) -> Vec<(String, Var)> {
        self.net
            .conv_weights()
            .into_iter()
            .map(|name| {
                let var = self.params.var(&name).expect("the network created it");
                (name, var)
            })
            .collect()
    }

    /// The variables gradient descent trains: everything but BatchNorm's running statistics.
    pub fn trainable(&self) -> Vec<Var> {
        self.params
            .vars()
            .into_iter()
            .filter(|(name, _)| !name.ends_with("running_mean") && !name.ends_with("running_var"))
            .map(|(_, var)| var)
            .collect()
    }

    /// The number of trainable parameters (PyTorch's `sum(p.numel() for p in parameters())`).
    pub fn parameter_count(&self) -> usize {
        self.trainable().iter().map(|v| v.elem_count()).sum()
    }
}

/// `MaxPool2d(2, 2)`, flooring odd sizes as PyTorch does, as a reshape and two max reductions.
///
/// Not candle's `max_pool2d`: its backward (candle 0.11) scales the gradient by 1/4 (it multiplies
/// by the window's average of the max mask instead of dividing by the number of maxima) and, on
/// odd sizes, upsamples it onto the wrong rows. A max reduction's backward is exact.
pub fn max_pool_2x2(x: &Tensor) -> candle_core::Result<Tensor> {
    let (batch, channels, height, width) = x.dims4()?;
    let (out_h, out_w) = (height / 2, width / 2);
    x.narrow(2, 0, out_h * 2)?
        .narrow(3, 0, out_w * 2)?
        .reshape((batch, channels, out_h, 2, out_w, 2))?
        .max(5)?
        .max(3)
}
