//! `models train`: one training run, logged per epoch as JSON lines.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::DataArgs;
use crate::data::{Augment, Split};
use crate::train::{train, Arm, TrainConfig};
use crate::Architecture;

#[derive(Args)]
pub struct TrainArgs {
    #[arg(long, value_enum)]
    model: Architecture,
    #[command(flatten)]
    data: DataArgs,
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    #[arg(long, default_value_t = 512)]
    batch_size: usize,
    /// SGD learning rate.
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// SGD momentum (0: plain SGD, the paper's setting).
    #[arg(long, default_value_t = 0.0)]
    momentum: f64,
    /// Seeds the initialization and the order of the batches.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Random crop (padding 4) and horizontal flip; off in the paper.
    #[arg(long)]
    augment: bool,
    /// Train on N training images only, drawn evenly from the ten classes.
    #[arg(long, value_name = "N")]
    train_images: Option<usize>,
    /// Evaluate on N test images only, drawn evenly from the ten classes.
    #[arg(long, value_name = "N")]
    test_images: Option<usize>,
    /// Start from this checkpoint instead of a seeded initialization.
    #[arg(long, value_name = "FILE")]
    init_from: Option<PathBuf>,
    /// CS initialization: Adam on L_CS of every conv layer for this many iterations first.
    #[arg(long, value_name = "I", default_value_t = 0)]
    cs_init: usize,
    /// Adam learning rate of the CS initialization.
    #[arg(long, default_value_t = 1e-3)]
    cs_init_lr: f64,
    /// Keep every filter's norm during CS initialization (cs-init's --keep-norm).
    #[arg(long, requires = "cs_init")]
    cs_init_keep_norm: bool,
    /// CS regularization: add beta * (sum of L_CS over conv layers) to the loss.
    #[arg(long, value_name = "BETA", default_value_t = 0.0)]
    cs_reg: f64,
    /// Append the per-epoch JSON lines to this file as well as printing them.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Write the trained network here (safetensors).
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
}

pub fn run(args: TrainArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let device = args.data.device()?;
    let source = args.data.source();
    let mut train_set = source.load(Split::Train)?;
    let mut test_set = source.load(Split::Test)?;
    if let Some(n) = args.train_images {
        train_set = train_set.balanced_subset(n);
    }
    if let Some(n) = args.test_images {
        test_set = test_set.balanced_subset(n);
    }
    let config = TrainConfig {
        architecture: args.model,
        arm: Arm {
            init_from: args.init_from,
            cs_init_iterations: args.cs_init,
            cs_init_lr: args.cs_init_lr,
            cs_init_keep_norm: args.cs_init_keep_norm,
            cs_beta: args.cs_reg,
        },
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        momentum: args.momentum,
        seed: args.seed,
        augment: if args.augment {
            Augment::CropFlip
        } else {
            Augment::None
        },
        normalization: args.data.normalization(),
    };
    eprintln!(
        "training {} ({}) on {} images, testing on {}",
        config.architecture,
        config.arm.name(),
        train_set.len(),
        test_set.len()
    );
    let mut log_file = match &args.log {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the log {}", path.display()))?,
        ),
        None => None,
    };
    let network = train(&config, &train_set, &test_set, &device, &mut |record| {
        let line = serde_json::to_string(record)?;
        println!("{line}");
        if let Some(file) = log_file.as_mut() {
            writeln!(file, "{line}")?;
            file.flush()?;
        }
        Ok(())
    })?;
    if let Some(path) = &args.save {
        network.params.save(path)?;
    }
    Ok(())
}
