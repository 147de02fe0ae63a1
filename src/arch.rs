//! Built-in architectures: freshly initialized checkpoints with PyTorch tensor names.
//!
//! They let the tool run without a PyTorch install: the tensors carry the names, shapes,
//! order and initial distributions that PyTorch itself would produce, so a checkpoint
//! written from here loads with `model.load_state_dict` and starts from the same kind of
//! network the paper minimizes. The values are drawn from our own seeded RNG, not from
//! PyTorch's, so they match PyTorch in distribution only.

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use crate::Result;

/// A network whose initial state this crate can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// The paper's Table 4 CNN with 64 channels.
    Cnn1,
    /// The same CNN with 128 channels.
    Cnn2,
    /// torchvision's `resnet18()`.
    Resnet18,
    /// torchvision's `resnet50()` (v1.5: the stride on the 3x3 conv of each bottleneck).
    Resnet50,
}

impl Architecture {
    /// Every architecture, in the order help texts list them.
    pub const ALL: [Architecture; 4] = [Self::Cnn1, Self::Cnn2, Self::Resnet18, Self::Resnet50];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cnn1 => "cnn1",
            Self::Cnn2 => "cnn2",
            Self::Resnet18 => "resnet18",
            Self::Resnet50 => "resnet50",
        }
    }

    /// One line for help texts and reports.
    pub fn description(self) -> &'static str {
        match self {
            Self::Cnn1 => "the paper's Table 4 CNN, 64 channels (118,858 parameters)",
            Self::Cnn2 => "the paper's Table 4 CNN, 128 channels (458,890 parameters)",
            Self::Resnet18 => "torchvision ResNet-18 (ImageNet head, 11.7 M parameters)",
            Self::Resnet50 => "torchvision ResNet-50 (ImageNet head, 25.6 M parameters)",
        }
    }

    /// Shapes of the conv weights (rank-4 tensors ending in `weight`), in state-dict order.
    pub fn conv_weight_shapes(self) -> Vec<Vec<usize>> {
        self.tensors(0)
            .expect("built-in architectures build")
            .into_iter()
            .filter(|(name, t)| t.rank() == 4 && name.ends_with("weight"))
            .map(|(_, t)| t.dims().to_vec())
            .collect()
    }

    /// Tensors in PyTorch state_dict order, on the CPU, F32 except `num_batches_tracked`
    /// (an I64 scalar, as PyTorch saves it). One RNG stream runs over the tensors in order,
    /// so the result depends on `seed` only.
    pub fn tensors(self, seed: u64) -> Result<Vec<(String, Tensor)>> {
        let mut b = Builder {
            rng: StdRng::seed_from_u64(seed),
            tensors: Vec::new(),
        };
        match self {
            Self::Cnn1 => b.table4_cnn(64)?,
            Self::Cnn2 => b.table4_cnn(128)?,
            Self::Resnet18 => b.resnet18()?,
            Self::Resnet50 => b.resnet50()?,
        }
        Ok(b.tensors)
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no built-in architecture.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown architecture '{name}'; expected one of: {known}")]
pub struct UnknownArchitecture {
    pub name: String,
    pub known: String,
}

impl std::str::FromStr for Architecture {
    type Err = UnknownArchitecture;

    fn from_str(s: &str) -> std::result::Result<Self, UnknownArchitecture> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|a| a.name()).collect();
                UnknownArchitecture {
                    name: s.into(),
                    known: names.join(", "),
                }
            })
    }
}

/// Appends named tensors while drawing every random value from one stream.
struct Builder {
    rng: StdRng,
    tensors: Vec<(String, Tensor)>,
}

impl Builder {
    /// Four conv blocks on a 32x32 input leave a 3x3 map, hence the `9 * channels` features.
    fn table4_cnn(&mut self, channels: usize) -> Result<()> {
        let mut in_channels = 3;
        for i in 1..=4 {
            self.torch_default(&format!("conv{i}"), &[channels, in_channels, 3, 3])?;
            self.batch_norm(&format!("bn{i}"), channels)?;
            in_channels = channels;
        }
        self.torch_default("fc", &[10, 9 * channels])
    }

    /// Follows torchvision's `ResNet.__init__` and `BasicBlock.__init__`, whose attribute
    /// order is the state_dict order.
    fn resnet18(&mut self) -> Result<()> {
        self.kaiming_conv("conv1.weight", &[64, 3, 7, 7])?;
        self.batch_norm("bn1", 64)?;
        let mut in_channels = 64;
        for (layer, channels) in [64, 128, 256, 512].into_iter().enumerate() {
            for block in 0..2 {
                let p = format!("layer{}.{block}", layer + 1);
                self.kaiming_conv(&format!("{p}.conv1.weight"), &[channels, in_channels, 3, 3])?;
                self.batch_norm(&format!("{p}.bn1"), channels)?;
                self.kaiming_conv(&format!("{p}.conv2.weight"), &[channels, channels, 3, 3])?;
                self.batch_norm(&format!("{p}.bn2"), channels)?;
                // A projection shortcut exactly where the block changes the channel count
                // (and the stride, which always changes with it in ResNet-18).
                if in_channels != channels {
                    let w = &[channels, in_channels, 1, 1];
                    self.kaiming_conv(&format!("{p}.downsample.0.weight"), w)?;
                    self.batch_norm(&format!("{p}.downsample.1"), channels)?;
                }
                in_channels = channels;
            }
        }
        self.torch_default("fc", &[1000, 512])
    }

    /// Follows torchvision's `ResNet.__init__` and `Bottleneck.__init__` (layers [3, 4, 6, 3],
    /// expansion 4, zero_init_residual=False), whose attribute order is the state_dict order:
    /// conv1, bn1, conv2, bn2, conv3, bn3, then the downsample shortcut. The stride sits on
    /// conv2 (ResNet v1.5), which changes no shape here.
    fn resnet50(&mut self) -> Result<()> {
        self.kaiming_conv("conv1.weight", &[64, 3, 7, 7])?;
        self.batch_norm("bn1", 64)?;
        let mut in_channels = 64;
        for (layer, (width, blocks)) in [(64, 3), (128, 4), (256, 6), (512, 3)]
            .into_iter()
            .enumerate()
        {
            let out_channels = 4 * width;
            for block in 0..blocks {
                let p = format!("layer{}.{block}", layer + 1);
                self.kaiming_conv(&format!("{p}.conv1.weight"), &[width, in_channels, 1, 1])?;
                self.batch_norm(&format!("{p}.bn1"), width)?;
                self.kaiming_conv(&format!("{p}.conv2.weight"), &[width, width, 3, 3])?;
                self.batch_norm(&format!("{p}.bn2"), width)?;
                self.kaiming_conv(&format!("{p}.conv3.weight"), &[out_channels, width, 1, 1])?;
                self.batch_norm(&format!("{p}.bn3"), out_channels)?;
                // torchvision adds the projection when the stride is not 1 or the channel
                // count changes: on the first block of every layer, layer1's included
                // (64 -> 256 channels at stride 1).
                if in_channels != out_channels {
                    let w = &[out_channels, in_channels, 1, 1];
                    self.kaiming_conv(&format!("{p}.downsample.0.weight"), w)?;
                    self.batch_norm(&format!("{p}.downsample.1"), out_channels)?;
                }
                in_channels = out_channels;
            }
        }
        self.torch_default("fc", &[1000, 2048])
    }

    /// `nn.Conv2d`/`nn.Linear.reset_parameters`: kaiming_uniform_(a=sqrt(5)) reduces to
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias uses the same bound.
    fn torch_default(&mut self, prefix: &str, weight_shape: &[usize]) -> Result<()> {
        let fan_in: usize = weight_shape[1..].iter().product();
        let bound = 1.0 / (fan_in as f32).sqrt();
        self.uniform(format!("{prefix}.weight"), weight_shape, bound)?;
        self.uniform(format!("{prefix}.bias"), &weight_shape[..1], bound)
    }

    /// torchvision's ResNet conv init: kaiming_normal_(mode='fan_out', nonlinearity='relu').
    fn kaiming_conv(&mut self, name: &str, shape: &[usize]) -> Result<()> {
        let fan_out: usize = shape[0] * shape[2..].iter().product::<usize>();
        let std = (2.0 / fan_out as f32).sqrt();
        let data = (0..shape.iter().product())
            .map(|_| std * self.rng.sample::<f32, _>(StandardNormal))
            .collect();
        let t = Tensor::from_vec(data, shape, &Device::Cpu)?;
        self.tensors.push((name.to_string(), t));
        Ok(())
    }

    /// A freshly constructed `nn.BatchNorm2d`: identity affine map, unit running statistics.
    /// Each tensor gets its own storage, so in-place updates of one leave the others alone.
    fn batch_norm(&mut self, prefix: &str, channels: usize) -> Result<()> {
        for (suffix, value) in [
            ("weight", 1f32),
            ("bias", 0.0),
            ("running_mean", 0.0),
            ("running_var", 1.0),
        ] {
            let t = Tensor::from_vec(vec![value; channels], channels, &Device::Cpu)?;
            self.tensors.push((format!("{prefix}.{suffix}"), t));
        }
        let count = Tensor::new(0i64, &Device::Cpu)?;
        self.tensors
            .push((format!("{prefix}.num_batches_tracked"), count));
        Ok(())
    }

    fn uniform(&mut self, name: String, shape: &[usize], bound: f32) -> Result<()> {
        let data = (0..shape.iter().product())
            .map(|_| self.rng.random_range(-bound..bound))
            .collect();
        self.tensors
            .push((name, Tensor::from_vec(data, shape, &Device::Cpu)?));
        Ok(())
    }
}
