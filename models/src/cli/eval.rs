//! `models eval`: test accuracy of a checkpoint.

use std::path::PathBuf;

use anyhow::Result;
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
}

pub fn run(args: EvalArgs) -> Result<()> {
    let device = args.data.device()?;
    let test_set = args.data.source().load(Split::Test)?;
    let network = Network::load(args.model, &args.checkpoint, &device)?;
    let accuracy = evaluate(&network, &test_set, args.data.normalization(), &device)?;
    if args.json {
        let object = serde_json::json!({
            "model": args.model,
            "checkpoint": args.checkpoint,
            "accuracy": accuracy.percent(),
            "images": accuracy.images,
        });
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
