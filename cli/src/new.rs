//! `cs-init new`: a freshly initialized checkpoint of a built-in architecture.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::output::Exit;
use cs_init::arch::Architecture;
use cs_init::checkpoint::{OutputFile, SafetensorsFile};
use cs_init::input::built_in_bytes;

#[derive(Debug, Args)]
pub struct NewArgs {
    /// cnn1, cnn2 (the paper's Table 4), resnet18 or resnet50 (torchvision's names, shapes
    /// and init).
    #[arg(value_name = "ARCH")]
    arch: Architecture,

    /// Where to write the .safetensors checkpoint.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,

    /// Seed of the initialization.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
}

pub fn run(args: NewArgs, quiet: bool) -> anyhow::Result<Exit> {
    let bytes = built_in_bytes(args.arch, args.seed)?;
    let mut out = OutputFile::create(&args.output, args.force)?;
    out.write_all(&bytes)
        .with_context(|| args.output.display().to_string())?;
    out.commit()?;
    if !quiet {
        let file = SafetensorsFile::from_bytes(args.output.clone(), bytes)?;
        let buffers = ["running_mean", "running_var", "num_batches_tracked"];
        let parameters: usize = file
            .tensors()
            .iter()
            .filter(|t| !buffers.iter().any(|b| t.name.ends_with(b)))
            .map(|t| t.elements())
            .sum();
        println!(
            "wrote {} ({}, seed {}): {} tensors, {parameters} parameters",
            args.output.display(),
            args.arch.description(),
            args.seed,
            file.tensors().len()
        );
    }
    Ok(Exit::Success)
}
