//! `models eval`: test accuracy of a checkpoint.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use super::DataArgs;
use crate::data::Split;
use crate::eval::evaluate;
use crate::{Architecture, Network};

#[derive(Args)]
pub struct EvalArgs {
    #[arg(long, value_enum)]
    model: Architecture,
    /// A safetensors checkpoint with the model's tensor names.
    #[arg(long, value_name = "FILE")]
    checkpoint: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Print one JSON object instead of a sentence.
    #[arg(long)]
    json: bool,
    /// First re-estimate BatchNorm's running statistics from N training images (drawn evenly
    /// from the classes): the repair for weights changed after the statistics were gathered,
    /// such as a pretrained checkpoint after cs-init.
    #[arg(long, value_name = "N")]
    recalibrate_bn: Option<usize>,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let device = args.data.device()?;
    let test_set = args.data.source().load(Split::Test)?;
    let network = Network::load(args.model, &args.checkpoint, &device)?;
    if let Some(count) = args.recalibrate_bn {
        if count == 0 {
            bail!("--recalibrate-bn needs at least one image");
        }
        let train_set = args
            .data
            .source()
            .load(Split::Train)?
            .balanced_subset(count);
        network.recalibrate_batch_norm(&train_set, args.data.normalization(), &device)?;
    }
    let accuracy = evaluate(&network, &test_set, args.data.normalization(), &device)?;
    if args.json {
        let mut object = serde_json::json!({
            "model": args.model,
            "checkpoint": args.checkpoint,
            "accuracy": accuracy.percent(),
            "images": accuracy.images,
        });
        if let Some(count) = args.recalibrate_bn {
            object["recalibrated_bn_images"] = count.into();
        }
        println!("{object}");
    } else {
        println!(
            "{}: {:.2} % ({} of {} test images)",
            args.checkpoint.display(),
            accuracy.percent(),
            accuracy.correct,
            accuracy.images
        );
    }
    Ok(())
}
