//! The fast L_CS engines checked against each other and against the literal definition on a
//! checkpoint's own layers (`cs-init check`), in f64: the fused engine's loss and gradient, the
//! portable engine's, and the literal `O(S²C²k⁴)` sum where its cost allows.

use candle_core::{DType, Device, Var};

use crate::input::Input;
use crate::plan::{plan_files, ConvWeight, Selection};
use crate::run::RunError;
use crate::similarity::{fused, literal, portable, KernelGeometry};
use crate::Variant;

/// Relative difference of f64 computations below which the engines agree.
pub const TOLERANCE: f64 = 1e-9;

/// One layer's comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerCheck {
    pub name: String,
    /// L_CS by the literal definition, or by the portable engine where the literal one was
    /// skipped.
    pub reference: f64,
    /// Relative differences from the reference: the fused loss, the portable loss, and the
    /// fused gradient from the portable one (in norm).
    pub fused: f64,
    pub portable: f64,
    pub gradient: f64,
    /// Whether the literal definition was computed (it is skipped above `max_planes`).
    pub literal: bool,
}

impl LayerCheck {
    /// The largest of the three differences; infinite where one is NaN, so that NaN weights or
    /// an engine bug fail rather than vanish in a maximum.
    pub fn worst(&self) -> f64 {
        [self.fused, self.portable, self.gradient]
            .into_iter()
            .fold(0.0, |worst, e| {
                if e.is_nan() {
                    f64::INFINITY
                } else {
                    worst.max(e)
                }
            })
    }
}

/// Checks every conv weight of `input` that `selection` selects, under `variant`; the literal
/// definition is skipped for layers with more than `max_planes` kernel planes (`S C`), whose
/// cost grows with their square. Each layer goes to `layer_checked` as it is done.
pub fn check_engines(
    input: &Input,
    selection: &Selection,
    variant: Variant,
    max_planes: usize,
    layer_checked: &mut dyn FnMut(&LayerCheck),
) -> Result<Vec<LayerCheck>, RunError> {
    let files = input.open(0)?.files;
    let tensors: Vec<_> = files.iter().map(|f| f.tensors()).collect();
    let mut layers = Vec::new();
    for (file, plan) in files.iter().zip(plan_files(&tensors, selection)) {
        for (tensor, entry) in file.tensors().iter().zip(plan) {
            if !entry.optimize {
                continue;
            }
            let weight = ConvWeight::read(file, tensor, selection.layout, &Device::Cpu)?;
            let check = check_layer(entry.name, &weight, variant, max_planes)?;
            layer_checked(&check);
            layers.push(check);
        }
    }
    Ok(layers)
}

fn check_layer(
    name: String,
    weight: &ConvWeight,
    variant: Variant,
    max_planes: usize,
) -> Result<LayerCheck, RunError> {
    let weight = weight.weight_as(DType::F64)?;
    let geometry = KernelGeometry::from_dims(weight.dims())?;
    let data = weight.flatten_all()?.to_vec1::<f64>()?;
    let (fused_loss, fused_grad) = fused::loss_and_gradient(&data, &geometry, variant);
    let var = Var::from_tensor(&weight)?;
    let portable_loss = portable::conv_similarity(var.as_tensor(), variant)?;
    let grads = portable_loss.backward()?;
    let portable_grad = grads
        .get(var.as_tensor())
        .map(|g| g.flatten_all().and_then(|g| g.to_vec1::<f64>()))
        .transpose()?
        .unwrap_or_else(|| vec![0.0; data.len()]);
    let portable_loss = portable_loss.to_scalar::<f64>()?;
    let literal_loss = if geometry.filters * geometry.channels <= max_planes {
        Some(literal::conv_similarity_value(&weight, variant)?)
    } else {
        None
    };
    let reference = literal_loss.unwrap_or(portable_loss);
    let relative = |a: f64, b: f64| (a - b).abs() / b.abs().max(f64::MIN_POSITIVE);
    Ok(LayerCheck {
        name,
        reference,
        fused: relative(fused_loss, reference),
        portable: relative(portable_loss, reference),
        gradient: relative_norm(&fused_grad, &portable_grad),
        literal: literal_loss.is_some(),
    })
}

/// `||a - b|| / ||b||` (`||a - b||` where `b` is zero).
fn relative_norm(a: &[f64], b: &[f64]) -> f64 {
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if norm > 0.0 {
        diff / norm
    } else {
        diff
    }
}
