//! `cs-init inspect`: per-layer metrics of a checkpoint, changing nothing.

use std::path::PathBuf;

use super::output::{print_json, Exit};
use super::{
    check_settings, resolve_input, ExecutionArgs, ProbeArgs, PthArgs, SelectionArgs, VariantArg,
};
use clap::Args;
use cs_init::report::{render, shape};
use cs_init::run::RunSettings;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A .safetensors file, a sharded checkpoint, a PyTorch file, hf://OWNER/NAME, or a built-in
    /// architecture (cnn1, cnn2, resnet18, resnet50).
    #[arg(value_name = "INPUT")]
    input: Option<PathBuf>,

    /// Which kernel pairs L_CS sums over.
    #[arg(long, value_enum, default_value_t = VariantArg::Paper)]
    variant: VariantArg,

    /// Seed of the initialization when INPUT is a built-in architecture, and of the probe's inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    #[command(flatten)]
    probe: ProbeArgs,

    #[command(flatten)]
    selection: SelectionArgs,

    #[command(flatten)]
    pth: PthArgs,

    #[command(flatten)]
    execution: ExecutionArgs,

    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InspectArgs, quiet: bool) -> anyhow::Result<Exit> {
    let mut settings = RunSettings {
        seed: args.seed,
        variant: args.variant.into(),
        ..RunSettings::default()
    };
    args.selection.apply(&mut settings);
    args.pth.apply(&mut settings);
    args.probe.apply(&mut settings);
    let checked = check_settings(&settings)?;
    let input = resolve_input(&args.input, &checked, !quiet)?;
    let device = args.execution.open_device(quiet)?;
    args.execution
        .with_threads(|| inspect(&args, &checked, &input, &device, quiet))?
}

fn inspect(
    args: &InspectArgs,
    checked: &cs_init::run::CheckedSettings,
    input: &cs_init::input::Input,
    device: &candle_core::Device,
    quiet: bool,
) -> anyhow::Result<Exit> {
    let mut note = |text: &str| {
        if !quiet {
            eprintln!("cs-init: {text}");
        }
    };
    let report = cs_init::inspect::inspect(input, checked, args.seed, device, &mut note)?;
    if args.json {
        print_json(&report)?;
        return Ok(Exit::Success);
    }
    let layers = &report.layers;
    let rows: Vec<Vec<String>> = layers
        .iter()
        .map(|l| {
            // `~`: estimated on a sample of the filters (--kernel-cosine-sample, --probe-sample).
            let mark = |sampled: Option<usize>| if sampled.is_some() { "~" } else { "" };
            vec![
                l.name.clone(),
                shape(&l.shape),
                l.kind.name().to_string(),
                format!("{:.4e}", l.metrics.loss),
                format!("{:.4e}", l.metrics.scale_free),
                format!(
                    "{}{:.4}",
                    mark(l.kernel_cosine_sampled),
                    l.metrics.kernel_cosine
                ),
                l.feature_cosine.map_or("-".into(), |c| {
                    format!("{}{c:.4}", mark(l.feature_cosine_sampled))
                }),
            ]
        })
        .collect();
    print!(
        "{}",
        render(
            &[
                "layer",
                "shape",
                "kind",
                "L_CS",
                "scale-free",
                "kernel |cos|",
                "feature-map |cos|"
            ],
            &[false, true, false, true, true, true, true],
            &rows,
        )
    );
    Ok(Exit::Success)
}
