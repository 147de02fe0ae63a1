//! `cs-init check`: the fast L_CS engines against the literal definition on a checkpoint's layers.

use std::path::PathBuf;

use clap::Args;

use super::output::Exit;
use super::{check_settings, resolve_input, PthArgs, SelectionArgs, VariantArg};
use crate::checkpoint::tensor_from_bytes;
use crate::plan::plan_files;
use crate::run::RunSettings;
use crate::similarity::{fused, literal, portable, KernelGeometry};
use crate::Variant;

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

/// Relative tolerance of f64 computations against each other.
const TOLERANCE: f64 = 1e-9;

pub fn run(args: CheckArgs, quiet: bool) -> anyhow::Result<Exit> {
    let mut settings = RunSettings::default();
    args.selection.apply(&mut settings);
    args.pth.apply(&mut settings);
    let checked = check_settings(&settings)?;
    let input = resolve_input(&args.input, &checked, !quiet)?;
    let selection = checked.selection;
    let variant: Variant = args.variant.into();
    let mut worst: f64 = 0.0;
    let mut checked = 0;
    let files = input.open(0)?.files;
    let tensors: Vec<_> = files.iter().map(|f| f.tensors()).collect();
    for (file, plan) in files.iter().zip(plan_files(&tensors, &selection)) {
        for (tensor, entry) in file.tensors().iter().zip(plan) {
            if !entry.optimize {
                continue;
            }
            let stored = tensor_from_bytes(
                file.data(tensor),
                tensor.dtype,
                &tensor.shape,
                &candle_core::Device::Cpu,
            )?;
            let weight = stored
                .permute(selection.layout.to_oihw_permutation(stored.rank()))?
                .contiguous()?
                .to_dtype(candle_core::DType::F64)?;
            let geometry = KernelGeometry::from_dims(weight.dims())?;
            let data = weight.flatten_all()?.to_vec1::<f64>()?;
            let (fused_loss, fused_grad) = fused::loss_and_gradient(&data, &geometry, variant);
            let var = candle_core::Var::from_tensor(&weight)?;
            let portable_loss = portable::conv_similarity(var.as_tensor(), variant)?;
            let grads = portable_loss.backward()?;
            let portable_grad = grads
                .get(var.as_tensor())
                .map(|g| g.flatten_all().and_then(|g| g.to_vec1::<f64>()))
                .transpose()?
                .unwrap_or_else(|| vec![0.0; data.len()]);
            let portable_loss = portable_loss.to_scalar::<f64>()?;
            let literal_loss = if geometry.filters * geometry.channels <= args.max_planes {
                Some(literal::conv_similarity_value(&weight, variant)?)
            } else {
                None
            };
            let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(f64::MIN_POSITIVE);
            let grad_diff = {
                let diff: f64 = fused_grad
                    .iter()
                    .zip(&portable_grad)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let norm: f64 = portable_grad.iter().map(|b| b * b).sum::<f64>().sqrt();
                if norm > 0.0 {
                    diff / norm
                } else {
                    diff
                }
            };
            let reference = literal_loss.unwrap_or(portable_loss);
            let errors = [
                rel(fused_loss, reference),
                rel(portable_loss, reference),
                grad_diff,
            ];
            // A NaN difference (NaN weights, or an engine bug) fails rather than vanishing in max().
            let layer_worst = errors.iter().copied().fold(0.0, |worst, e| {
                if e.is_nan() {
                    f64::INFINITY
                } else {
                    worst.max(e)
                }
            });
            worst = worst.max(layer_worst);
            checked += 1;
            if !quiet {
                println!(
                    "{:<40} L_CS {:.6e}  fused {:.1e}  portable {:.1e}  gradient {:.1e}  literal {}",
                    entry.name,
                    reference,
                    errors[0],
                    errors[1],
                    errors[2],
                    if literal_loss.is_some() { "yes" } else { "skipped (--max-planes)" }
                );
            }
        }
    }
    anyhow::ensure!(
        checked > 0,
        "no conv layer to check; `cs-init plan` shows why each tensor was left out"
    );
    let ok = worst <= TOLERANCE;
    if !quiet {
        println!(
            "\n{checked} layers checked in f64; largest relative difference {worst:.2e} ({})",
            if ok { "ok" } else { "FAILED" }
        );
    }
    Ok(if ok { Exit::Success } else { Exit::Diverged })
}
