//! The kernel cosine of wide layers estimated on a sample of filters (`--kernel-cosine-sample`):
//! unbiased, within the error docs/math.md states, and exact where the layer is no wider than
//! the sample.

use crate::common;

use candle_core::{Device, Tensor};
use cs_init::arch::Architecture;
use cs_init::filter_sample::PairSampling;
use cs_init::metrics::kernel_cosine;
use cs_init::run::DEFAULT_KERNEL_COSINE_SAMPLE;
use cs_init::Variant;

/// The kernel cosine of `weight` as the `layer`-th layer, and how many filters it looked at.
fn measured(weight: &Tensor, sampling: &PairSampling, layer: u64) -> (f64, Option<usize>) {
    let (f, _) =
        cs_init::measure::weight_figures(weight, None, Variant::Paper, None, sampling, layer)
            .unwrap();
    (f.metrics.kernel_cosine, f.kernel_cosine_sampled)
}

fn cosine(weight: &Tensor, sampling: &PairSampling, layer: u64) -> f64 {
    measured(weight, sampling, layer).0
}

fn limit(m: usize, seed: u64) -> PairSampling {
    PairSampling {
        limit: Some(m),
        seed,
    }
}

#[test]
fn a_layer_no_wider_than_the_sample_is_measured_exactly() {
    let weight = Tensor::randn(0f32, 1., (12, 5, 3, 3), &Device::Cpu).unwrap();
    let exact = kernel_cosine(&weight).unwrap();
    assert_eq!(measured(&weight, &PairSampling::EXACT, 3), (exact, None));
    assert_eq!(measured(&weight, &limit(12, 9), 3), (exact, None));
    let (estimate, sampled) = measured(&weight, &limit(5, 9), 3);
    assert_eq!(sampled, Some(5));
    assert_ne!(estimate, exact);
}

#[test]
fn estimates_on_trained_layers_are_unbiased_with_the_stated_error() {
    // The pretrained CIFAR ResNet-20's 64-filter layers, 16 filters drawn (120 of 2016 pairs),
    // 40 draws per layer: the mean estimate must lie within 4 standard errors of the exact
    // figure (a biased draw, such as always the first filters, fails this) and the
    // root-mean-square error within the bound docs/math.md gives.
    let Some(path) = common::shared_checkpoint("resnet20-cifar10.safetensors") else {
        return;
    };
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let mut layers: Vec<(String, Tensor)> = tensors
        .into_iter()
        .filter(|(name, t)| name.contains("conv") && t.rank() == 4 && t.dim(0).unwrap() == 64)
        .collect();
    layers.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(layers.len() >= 6, "{} layers", layers.len());
    let draws = 40;
    let mut worst_rms: f64 = 0.0;
    for (layer, (name, weight)) in layers.iter().enumerate() {
        let layer = layer as u64 + 1;
        let exact = cosine(weight, &PairSampling::EXACT, layer);
        let values: Vec<f64> = (0..draws)
            .map(|seed| cosine(weight, &limit(16, seed), layer))
            .collect();
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let rms = (values.iter().map(|v| (v - exact).powi(2)).sum::<f64>() / n).sqrt();
        eprintln!("{name}: exact {exact:.4}, mean {mean:.4}, sd {sd:.4}, rms error {rms:.4}");
        assert!(
            (mean - exact).abs() <= 4.0 * sd / n.sqrt(),
            "{name}: mean estimate {mean} vs exact {exact} (sd {sd})"
        );
        worst_rms = worst_rms.max(rms);
    }
    assert!(worst_rms <= 0.015, "worst rms error {worst_rms}");
}

#[test]
fn the_default_sample_of_wide_layers_measures_level_and_change_closely() {
    // Fresh ResNet-50 layers wider than the default sample, before and after 200 Adam
    // iterations.
    let layers: Vec<(String, Tensor)> = Architecture::Resnet50
        .tensors(0)
        .unwrap()
        .into_iter()
        .filter(|(name, t)| {
            name.ends_with("weight")
                && t.rank() == 4
                && t.dim(0).unwrap() > DEFAULT_KERNEL_COSINE_SAMPLE as usize
        })
        .collect();
    let sampling = limit(DEFAULT_KERNEL_COSINE_SAMPLE as usize, 0);
    let settings = cs_init::Settings::default();
    let (mut level, mut change): (f64, f64) = (0.0, 0.0);
    for (layer, (name, before)) in layers.iter().enumerate().step_by(4) {
        let layer = layer as u64 + 1;
        let after = cs_init::minimize(before, &settings, cs_init::Engine::Fused, &mut |_, _| {})
            .unwrap()
            .weight;
        let exact = (
            cosine(before, &PairSampling::EXACT, layer),
            cosine(&after, &PairSampling::EXACT, layer),
        );
        let (estimate, sampled) = measured(before, &sampling, layer);
        assert_eq!(sampled, Some(DEFAULT_KERNEL_COSINE_SAMPLE as usize));
        let estimate = (estimate, cosine(&after, &sampling, layer));
        common::print_level_and_change(name, before.dims(), exact, estimate);
        level = level.max((estimate.0 - exact.0).abs());
        change = change.max(((estimate.1 - estimate.0) - (exact.1 - exact.0)).abs());
    }
    assert!(level <= 0.002, "worst error of the level {level}");
    assert!(change <= 0.001, "worst error of the change {change}");
}
