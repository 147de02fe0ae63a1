//! `models init`: a newly initialized network, written to a file.

use std::path::PathBuf;

use anyhow::Result;
use candle_core::Device;
use clap::Args;

use crate::{Architecture, Network};

#[derive(Args)]
pub struct InitArgs {
    #[arg(long, value_enum)]
    model: Architecture,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
}

pub fn run(args: InitArgs) -> Result<()> {
    let network = Network::new(args.model, args.seed, &Device::Cpu)?;
    network.params.save(&args.output)?;
    eprintln!(
        "{}: {} ({} parameters, seed {})",
        args.output.display(),
        args.model,
        network.parameter_count(),
        args.seed
    );
    Ok(())
}
