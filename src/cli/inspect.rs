//! `cs-init inspect`: per-layer metrics of a checkpoint, changing nothing.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::output::{print_json, Exit};
use super::{input_arg, ExecutionArgs, SelectionArgs, VariantArg};
use crate::checkpoint::{tensor_from_bytes, Input};
use crate::metrics::LayerMetrics;
use crate::plan::{plan, ConvKind};
use crate::report::{shape, SCHEMA_VERSION};
use crate::Variant;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A .safetensors file, a sharded checkpoint, or a built-in architecture.
    #[arg(value_name = "INPUT")]
    input: Option<PathBuf>,

    /// Which kernel pairs L_CS sums over.
    #[arg(long, value_enum, default_value_t = VariantArg::Paper)]
    variant: VariantArg,

    /// Seed of the initialization when INPUT is a built-in architecture.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    #[command(flatten)]
    selection: SelectionArgs,

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
}

#[derive(Serialize)]
struct InspectReport {
    schema_version: u32,
    input: String,
    variant: Variant,
    layers: Vec<LayerFigures>,
}

pub fn run(args: InspectArgs, quiet: bool) -> anyhow::Result<Exit> {
    args.execution.apply_threads()?;
    let input = Input::resolve(&input_arg(&args.input)?)?;
    let device = args.execution.device.open(quiet)?;
    let selection = args.selection.selection();
    let variant: Variant = args.variant.into();
    let mut layers = Vec::new();
    for file in input.open(args.seed)? {
        for (tensor, entry) in file.tensors().iter().zip(plan(file.tensors(), &selection)) {
            let (Some(kind), true) = (entry.kind, entry.optimize) else {
                continue;
            };
            let stored =
                tensor_from_bytes(file.data(tensor), tensor.dtype, &tensor.shape, &device)?;
            let weight = stored
                .permute(selection.layout.to_oihw_permutation(stored.rank()))?
                .contiguous()?
                .to_dtype(candle_core::DType::F32)?;
            layers.push(LayerFigures {
                name: entry.name,
                shape: entry.shape,
                kind,
                metrics: LayerMetrics::measure(&weight, variant)?,
            });
        }
    }
    if args.json {
        print_json(&InspectReport {
            schema_version: SCHEMA_VERSION,
            input: input.describe(),
            variant,
            layers,
        })?;
        return Ok(Exit::Success);
    }
    let rows: Vec<String> = layers
        .iter()
        .map(|l| {
            let shape = shape(&l.shape);
            format!(
                "{:<40} {:>14} {:>10} {:>12.4e} {:>12.4e} {:>8.4}",
                l.name,
                shape,
                format!("{:?}", l.kind).to_lowercase(),
                l.metrics.loss,
                l.metrics.scale_free,
                l.metrics.kernel_cosine
            )
        })
        .collect();
    println!(
        "{:<40} {:>14} {:>10} {:>12} {:>12} {:>8}",
        "layer", "shape", "kind", "L_CS", "scale-free", "|cos|"
    );
    for row in rows {
        println!("{}", row.trim_end());
    }
    Ok(Exit::Success)
}
