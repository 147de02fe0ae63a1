//! `cs-init inspect`: per-layer metrics of a checkpoint, changing nothing.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::output::{print_json, Exit};
use super::{
    check_settings, resolve_input, ExecutionArgs, ProbeArgs, PthArgs, SelectionArgs, VariantArg,
};
use crate::checkpoint::tensor_from_bytes;
use crate::metrics::LayerMetrics;
use crate::plan::{plan_files, ConvKind};
use crate::report::{render, shape, Figures, SCHEMA_VERSION};
use crate::run::RunSettings;
use crate::Variant;

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

#[derive(Serialize)]
struct LayerFigures {
    name: String,
    shape: Vec<usize>,
    kind: ConvKind,
    #[serde(flatten)]
    metrics: LayerMetrics,
    /// Mean |cos| between the feature maps of filter pairs on the probe's inputs (conv2d only).
    feature_cosine: Option<f64>,
    /// The kernel cosine was estimated on this many filters (`null`: every pair).
    kernel_cosine_sampled: Option<usize>,
    /// The feature-map cosine was estimated on this many filters (`null`: every pair).
    feature_cosine_sampled: Option<usize>,
}

#[derive(Serialize)]
struct InspectReport {
    schema_version: u32,
    input: String,
    variant: Variant,
    probe: Option<crate::probe::ProbeSettings>,
    kernel_cosine_sample: Option<usize>,
    layers: Vec<LayerFigures>,
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
    checked: &crate::run::CheckedSettings,
    input: &crate::input::Input,
    device: &candle_core::Device,
    quiet: bool,
) -> anyhow::Result<Exit> {
    let selection = &checked.selection;
    let variant: Variant = checked.minimize.variant;
    let probe = checked
        .probe
        .clone()
        .map(|p| crate::probe::Probe::new(p, device))
        .transpose()?;
    let mut layers = Vec::new();
    let opened = input.open(args.seed)?;
    if !quiet {
        for note in &opened.notes {
            eprintln!("cs-init: {note}");
        }
    }
    let tensors: Vec<_> = opened.files.iter().map(|f| f.tensors()).collect();
    let plans = plan_files(&tensors, selection);
    for (file, plan) in opened.files.iter().zip(plans) {
        for (tensor, entry) in file.tensors().iter().zip(plan) {
            let (Some(kind), true) = (entry.kind, entry.optimize) else {
                continue;
            };
            let stored = tensor_from_bytes(file.data(tensor), tensor.dtype, &tensor.shape, device)?;
            let weight = stored
                .permute(selection.layout.to_oihw_permutation(stored.rank()))?
                .contiguous()?
                .to_dtype(candle_core::DType::F32)?;
            let layer = layers.len() as u64 + 1;
            let (figures, _) = Figures::measure(
                &weight,
                None,
                variant,
                probe.as_ref(),
                &checked.sampling,
                layer,
            )?;
            layers.push(LayerFigures {
                name: entry.name,
                shape: entry.shape,
                kind,
                metrics: figures.metrics,
                feature_cosine: figures.feature_cosine,
                kernel_cosine_sampled: figures.kernel_cosine_sampled,
                feature_cosine_sampled: figures.feature_cosine_sampled,
            });
        }
    }
    if args.json {
        print_json(&InspectReport {
            schema_version: SCHEMA_VERSION,
            input: input.describe(),
            variant,
            probe: probe.as_ref().map(|p| p.settings().clone()),
            kernel_cosine_sample: checked.sampling.limit,
            layers,
        })?;
        return Ok(Exit::Success);
    }
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
