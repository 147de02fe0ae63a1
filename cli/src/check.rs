//! `cs-init check`: the fast L_CS engines against the literal definition on a checkpoint's layers.

use std::path::PathBuf;

use clap::Args;

use super::output::Exit;
use super::{check_settings, resolve_input, PthArgs, SelectionArgs, VariantArg};
use cs_init::check::{check_engines, LayerCheck, TOLERANCE};
use cs_init::run::RunSettings;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A .safetensors file, a sharded checkpoint, a PyTorch file, hf://OWNER/NAME, or a built-in
    /// architecture (cnn1, cnn2, resnet18, resnet50).
    #[arg(value_name = "INPUT")]
    input: Option<PathBuf>,

    /// Which kernel pairs L_CS sums over.
    #[arg(long, value_enum, default_value_t = VariantArg::Paper)]
    variant: VariantArg,

    /// Skip the literal reference for layers with more than this many kernel planes (S*C): its
    /// cost grows with their square.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    max_planes: usize,

    #[command(flatten)]
    selection: SelectionArgs,

    #[command(flatten)]
    pth: PthArgs,
}

pub fn run(args: CheckArgs, quiet: bool) -> anyhow::Result<Exit> {
    let mut settings = RunSettings::default();
    args.selection.apply(&mut settings);
    args.pth.apply(&mut settings);
    let checked = check_settings(&settings)?;
    let input = resolve_input(&args.input, &checked, !quiet)?;
    let mut print =
        |layer: &LayerCheck| {
            if !quiet {
                println!(
                "{:<40} L_CS {:.6e}  fused {:.1e}  portable {:.1e}  gradient {:.1e}  literal {}",
                layer.name,
                layer.reference,
                layer.fused,
                layer.portable,
                layer.gradient,
                if layer.literal { "yes" } else { "skipped (--max-planes)" }
            );
            }
        };
    let layers = check_engines(
        &input,
        &checked.selection,
        args.variant.into(),
        args.max_planes,
        &mut print,
    )?;
    anyhow::ensure!(
        !layers.is_empty(),
        "no conv layer to check; `cs-init plan` shows why each tensor was left out"
    );
    let worst = layers.iter().map(LayerCheck::worst).fold(0.0, f64::max);
    let ok = worst <= TOLERANCE;
    if !quiet {
        println!(
            "\n{} layers checked in f64; largest relative difference {worst:.2e} ({})",
            layers.len(),
            if ok { "ok" } else { "FAILED" }
        );
    }
    Ok(if ok { Exit::Success } else { Exit::Diverged })
}
