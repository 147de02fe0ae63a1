//! The data, normalization and device flags every data-reading subcommand shares.

use std::path::PathBuf;

use anyhow::Result;
use candle_core::Device;
use clap::{Args, ValueEnum};

use crate::data::{Normalization, Source};

#[derive(Args)]
pub struct DataArgs {
    /// CIFAR-10: a directory of the official binary batches, an image-folder tree
    /// (train/<class>/*.jpg, test/<class>/*.jpg), or a .tar.gz of that tree.
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,
    /// Where a decoded .tar.gz is cached [default: $XDG_CACHE_HOME/cs-init/cifar10].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Input normalization.
    #[arg(long, value_enum, default_value_t = NormalizationChoice::Imagenet)]
    pub normalization: NormalizationChoice,
    /// Run on this device.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum NormalizationChoice {
    /// mean 0.485/0.456/0.406, std 0.229/0.224/0.225 (what the pretrained CIFAR ResNets expect).
    Imagenet,
    /// CIFAR-10's own statistics.
    Cifar10,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DeviceChoice {
    Cpu,
    /// The first CUDA GPU (needs a build with `--features cuda`).
    Cuda,
}

impl DataArgs {
    pub fn source(&self) -> Source {
        let mut source = Source::new(&self.data);
        if let Some(dir) = &self.cache_dir {
            source.cache_dir = dir.clone();
        }
        source
    }

    pub fn normalization(&self) -> Normalization {
        match self.normalization {
            NormalizationChoice::Imagenet => Normalization::IMAGENET,
            NormalizationChoice::Cifar10 => Normalization::CIFAR10,
        }
    }

    pub fn device(&self) -> Result<Device> {
        match self.device {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            // The first line only: candle appends a backtrace when RUST_BACKTRACE is set.
            DeviceChoice::Cuda => Device::new_cuda(0).map_err(|e| {
                let reason = e.to_string().lines().next().unwrap_or_default().to_string();
                anyhow::anyhow!(
                    "cannot use the CUDA device (is this a build with `--features cuda`, on a machine with an NVIDIA GPU?): {reason}"
                )
            }),
        }
    }
}
