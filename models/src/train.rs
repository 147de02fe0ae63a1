//! The trainer of the paper's Table 5: SGD on cross-entropy, with the three arms (baseline, CS
//! initialization, CS regularization), logging one record per epoch.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::Optimizer;
use cs_init::optim::{AdamConfig, OptimizerConfig, Sgd, SgdConfig};
use cs_init::{conv_similarity, Engine, Settings, Variant};

use crate::data::{Augment, Batches, Dataset, Normalization};
use crate::eval::{count_correct, evaluate};
use crate::{Architecture, Network};

/// Where the weights start and what is added to the loss.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Arm {
    /// Start from this checkpoint (for example one written by `cs-init`) instead of a seeded
    /// initialization.
    pub init_from: Option<PathBuf>,
    /// CS initialization: minimize L_CS of every conv layer with Adam for this many iterations
    /// before training (0: none).
    pub cs_init_iterations: usize,
    /// The Adam learning rate of CS initialization (the paper: 1e-3).
    pub cs_init_lr: f64,
    /// CS initialization keeps every filter's norm (cs-init's `--keep-norm`), so that only
    /// decorrelation, not shrinking, changes the start.
    pub cs_init_keep_norm: bool,
    /// CS regularization: add `beta * sum of L_CS over conv layers` to the loss (0: none).
    pub cs_beta: f64,
}

impl Arm {
    pub fn baseline() -> Self {
        Self {
            init_from: None,
            cs_init_iterations: 0,
            cs_init_lr: 1e-3,
            cs_init_keep_norm: false,
            cs_beta: 0.0,
        }
    }

    /// A short name for logs and tables: `baseline`, `cs-init`, `cs-init-keep-norm`, `cs-reg`,
    /// `checkpoint`, or a combination.
    pub fn name(&self) -> String {
        let mut parts = Vec::new();
        if self.init_from.is_some() {
            parts.push("checkpoint");
        }
        if self.cs_init_iterations > 0 {
            parts.push(if self.cs_init_keep_norm {
                "cs-init-keep-norm"
            } else {
                "cs-init"
            });
        }
        if self.cs_beta > 0.0 {
            parts.push("cs-reg");
        }
        if parts.is_empty() {
            "baseline".to_string()
        } else {
            parts.join("+")
        }
    }
}

/// Everything a training run depends on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainConfig {
    pub architecture: Architecture,
    pub arm: Arm,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    pub seed: u64,
    pub augment: Augment,
    pub normalization: Normalization,
}

/// One line of the training log. Epoch 0 is the starting point (after CS initialization),
/// before any training step; it has no training figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EpochRecord {
    pub arm: String,
    pub seed: u64,
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's batches (without the regularizer).
    pub train_loss: Option<f64>,
    /// Percent of training images classified correctly during the epoch (in training mode).
    pub train_accuracy: Option<f64>,
    pub test_accuracy: f64,
    /// L_CS of every conv layer at the end of the epoch.
    pub l_cs: BTreeMap<String, f64>,
    /// Wall time of the epoch's training steps (for epoch 0: of building the network and CS
    /// initialization).
    pub seconds: f64,
}

/// Builds the starting network of `config`'s arm.
pub fn initial_network(config: &TrainConfig, device: &Device) -> Result<Network> {
    let network = match &config.arm.init_from {
        Some(path) => Network::load(config.architecture, path, device)?,
        None => Network::new(config.architecture, config.seed, device)?,
    };
    if config.arm.cs_init_iterations > 0 {
        let settings = Settings {
            variant: Variant::Paper,
            iterations: config.arm.cs_init_iterations,
            optimizer: OptimizerConfig::Adam(AdamConfig {
                lr: config.arm.cs_init_lr,
                ..AdamConfig::default()
            }),
            keep_norm: config.arm.cs_init_keep_norm,
        };
        for (name, var) in network.conv_weights() {
            let result =
                cs_init::minimize(var.as_tensor(), &settings, Engine::Auto, &mut |_, _| {})
                    .with_context(|| format!("CS initialization of {name}"))?;
            var.set(&result.weight)?;
        }
    }
    Ok(network)
}

/// L_CS of every conv layer.
pub fn conv_similarities(network: &Network) -> Result<BTreeMap<String, f64>> {
    network
        .conv_weights()
        .into_iter()
        .map(|(name, var)| {
            let value =
                cs_init::similarity::conv_similarity_value(var.as_tensor(), Variant::Paper)?;
            Ok((name, value))
        })
        .collect()
}

/// Trains a network as `config` says, calling `log` after the starting point and after every
/// epoch, and returns the trained network.
pub fn train(
    config: &TrainConfig,
    train_set: &Dataset,
    test_set: &Dataset,
    device: &Device,
    log: &mut dyn FnMut(&EpochRecord) -> Result<()>,
) -> Result<Network> {
    let started = Instant::now();
    let network = initial_network(config, device)?;
    let record =
        |epoch, seconds, train: Option<(f64, f64)>, network: &Network| -> Result<EpochRecord> {
            Ok(EpochRecord {
                arm: config.arm.name(),
                seed: config.seed,
                epoch,
                train_loss: train.map(|t| t.0),
                train_accuracy: train.map(|t| t.1),
                test_accuracy: evaluate(network, test_set, config.normalization, device)?.percent(),
                l_cs: conv_similarities(network)?,
                seconds,
            })
        };
    log(&record(0, started.elapsed().as_secs_f64(), None, &network)?)?;

    let convs = network.conv_weights();
    let mut optimizer = Sgd::new(
        network.trainable(),
        SgdConfig {
            lr: config.lr,
            momentum: config.momentum,
        },
    )?;
    for epoch in 1..=config.epochs {
        let started = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0, 0);
        let batches = Batches::shuffled(
            train_set,
            config.batch_size,
            config.normalization,
            config.augment,
            config
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(epoch as u64),
            device,
        );
        for batch in batches {
            let batch = batch?;
            let logits = network.forward_t(&batch.images, true)?;
            let cross_entropy = candle_nn::loss::cross_entropy(&logits, &batch.labels)?;
            let loss = if config.arm.cs_beta > 0.0 {
                let similarities = convs
                    .iter()
                    .map(|(_, var)| conv_similarity(var.as_tensor(), Variant::Paper))
                    .collect::<cs_init::Result<Vec<Tensor>>>()?;
                let total = Tensor::stack(&similarities, 0)?.sum_all()?;
                (&cross_entropy + (total * config.arm.cs_beta)?)?
            } else {
                cross_entropy.clone()
            };
            optimizer.backward_step(&loss)?;
            let count = batch.labels.dim(0)?;
            loss_sum += f64::from(cross_entropy.to_scalar::<f32>()?) * count as f64;
            correct += count_correct(&logits, &batch.labels)?;
            seen += count;
        }
        let seconds = started.elapsed().as_secs_f64();
        let train = (loss_sum / seen as f64, 100.0 * correct as f64 / seen as f64);
        log(&record(epoch, seconds, Some(train), &network)?)?;
    }
    Ok(network)
}
