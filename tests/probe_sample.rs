//! The probe's figures of wide, costly layers estimated on a sample of filters (`--probe-sample`)
//! with each filter's response to the input's mean as a control variate: unbiased, within the
//! error docs/math.md states, far closer than the same sample without the correction, and exact
//! where the layer is narrow or cheap.

use crate::common;

use crate::common::kaiming;
use candle_core::{Device, Tensor};
use cs_init::arch::Architecture;
use cs_init::filter_sample::PairSampling;
use cs_init::probe::{FeatureSimilarity, Probe, ProbePadding, ProbeSettings, ProbeSource};
use cs_init::run::DEFAULT_PROBE_SAMPLE;

fn probe(sample: PairSampling) -> Probe {
    let settings = ProbeSettings {
        source: ProbeSource::Random { seed: 0 },
        batch: 4,
        height: 16,
        width: 16,
        padding: ProbePadding::Same,
        sample,
    };
    Probe::new(settings, &Device::Cpu).unwrap()
}

fn limit(m: usize, seed: u64) -> PairSampling {
    PairSampling {
        limit: Some(m),
        seed,
    }
}

fn figures(weight: &Tensor, sample: PairSampling, layer: u64) -> FeatureSimilarity {
    probe(sample)
        .feature_similarity(weight, layer)
        .unwrap()
        .unwrap()
}

#[test]
fn narrow_and_cheap_layers_are_measured_exactly() {
    let exact = |w: &Tensor| figures(w, PairSampling::EXACT, 2);
    let narrow = kaiming(&[100, 300, 3, 3], 1);
    assert_eq!(figures(&narrow, limit(128, 5), 2), exact(&narrow));
    // Depthwise: wider than the sample, but every pair costs less than the threshold.
    let depthwise = kaiming(&[1152, 1, 3, 3], 2);
    let f = figures(&depthwise, limit(128, 5), 2);
    assert_eq!(f, exact(&depthwise));
    assert_eq!(f.sampled, None);
    let wide = kaiming(&[600, 256, 1, 1], 3);
    assert_eq!(figures(&wide, limit(128, 5), 2).sampled, Some(128));
    assert_eq!(exact(&wide).sampled, None);
}

#[test]
fn estimates_are_unbiased_and_far_closer_than_a_plain_sample() {
    // A fresh [1024, 256, 1, 1] layer, 24 draws of 128 filters: the corrected estimate's mean
    // lies within 4 standard errors of every pair's figure, its root-mean-square error within
    // docs/math.md's bound, and the uncorrected figure of the same filters errs 4 times more.
    let weight = kaiming(&[1024, 256, 1, 1], 7);
    let layer = 3;
    let exact = figures(&weight, PairSampling::EXACT, layer);
    let draws = 24;
    let (mut corrected, mut plain, mut inner) = (Vec::new(), Vec::new(), Vec::new());
    for seed in 0..draws {
        let sampling = limit(128, seed);
        let estimate = figures(&weight, sampling, layer);
        assert_eq!(estimate.sampled, Some(128));
        corrected.push(estimate.cosine);
        inner.push(estimate.inner);
        let drawn = sampling.for_layer(1024, layer).select(&weight).unwrap();
        plain.push(figures(&drawn, PairSampling::EXACT, layer).cosine);
    }
    let n = draws as f64;
    let rms =
        |v: &[f64], exact: f64| (v.iter().map(|x| (x - exact).powi(2)).sum::<f64>() / n).sqrt();
    let mean = corrected.iter().sum::<f64>() / n;
    let sd = (corrected.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let (rms_corrected, rms_plain) = (rms(&corrected, exact.cosine), rms(&plain, exact.cosine));
    let rms_inner = rms(&inner, exact.inner);
    eprintln!(
        "exact {:.4}, mean estimate {mean:.4} (sd {sd:.4}), rms error {rms_corrected:.4}, \
         uncorrected {rms_plain:.4}; inner product {:.4}, rms error {rms_inner:.4}",
        exact.cosine, exact.inner
    );
    assert!(
        (mean - exact.cosine).abs() <= 4.0 * sd / n.sqrt(),
        "mean estimate {mean} vs exact {} (sd {sd})",
        exact.cosine
    );
    assert!(rms_corrected <= 0.005, "rms error {rms_corrected}");
    assert!(
        4.0 * rms_corrected <= rms_plain,
        "corrected {rms_corrected} vs uncorrected {rms_plain}"
    );
    assert!(
        rms_inner <= 0.01,
        "rms error of the inner product {rms_inner}"
    );
}

#[test]
fn the_default_sample_measures_resnet50_level_and_change_closely() {
    // Fresh ResNet-50 layers the default probe estimates, before and after 200 Adam
    // iterations, on the same filters.
    let sampling = limit(DEFAULT_PROBE_SAMPLE as usize, 0);
    let layers: Vec<(String, Tensor)> = Architecture::Resnet50
        .tensors(0)
        .unwrap()
        .into_iter()
        .filter(|(name, t)| name.ends_with("weight") && t.rank() == 4)
        .collect();
    let settings = cs_init::Settings::default();
    let (mut level, mut change, mut estimated): (f64, f64, usize) = (0.0, 0.0, 0);
    for (layer, (name, before)) in layers.iter().enumerate() {
        let layer = layer as u64 + 1;
        let estimate_before = figures(before, sampling, layer);
        if estimate_before.sampled.is_none() {
            continue;
        }
        estimated += 1;
        if estimated % 5 != 1 {
            continue;
        }
        let after = cs_init::minimize(before, &settings, cs_init::Engine::Fused, &mut |_, _| {})
            .unwrap()
            .weight;
        let exact = (
            figures(before, PairSampling::EXACT, layer).cosine,
            figures(&after, PairSampling::EXACT, layer).cosine,
        );
        let estimate = (
            estimate_before.cosine,
            figures(&after, sampling, layer).cosine,
        );
        common::print_level_and_change(name, before.dims(), exact, estimate);
        level = level
            .max((estimate.0 - exact.0).abs())
            .max((estimate.1 - exact.1).abs());
        change = change.max(((estimate.1 - estimate.0) - (exact.1 - exact.0)).abs());
    }
    assert!(estimated >= 20, "{estimated} layers estimated");
    assert!(level <= 0.012, "worst error of the level {level}");
    assert!(change <= 0.012, "worst error of the change {change}");
}
