//! The report's run-level totals: the mean feature-map |cos| before and after over the layers the
//! probe measured, the mean norm ratio, and the warning that L_CS fell while the feature maps did
//! not become less alike.

use cs_init::metrics::{LayerMetrics, NormRatio};
use cs_init::plan::ConvKind;
use cs_init::report::{Curve, LayerOutcome, LayerReport, Totals, WeightFigures, Work};

fn figures(loss: f64, feature_cosine: Option<f64>) -> WeightFigures {
    WeightFigures {
        metrics: LayerMetrics {
            loss,
            scale_free: 1.0,
            kernel_cosine: 0.1,
        },
        feature_cosine,
        kernel_cosine_sampled: None,
        feature_cosine_sampled: None,
        metrics_seconds: 0.25,
        probe_seconds: 0.5,
    }
}

fn work() -> Work {
    Work {
        iterations: 1,
        seconds: 0.5,
        curve: Curve::sample(&[1.0, 0.5]),
    }
}

/// An optimized layer: L_CS and feature-map |cos| before and after, and the mean norm ratio.
fn optimized(loss: (f64, f64), cosine: (Option<f64>, Option<f64>), norm_ratio: f64) -> LayerReport {
    let outcome = LayerOutcome::Optimized {
        before: figures(loss.0, cosine.0),
        after: figures(loss.1, cosine.1),
        norm_ratio: NormRatio {
            mean: norm_ratio,
            min: norm_ratio,
            max: norm_ratio,
        },
        work: work(),
    };
    LayerReport::new("w", &[2, 1, 3, 3], "F32", ConvKind::Standard, outcome)
}

fn skipped() -> LayerReport {
    let outcome = LayerOutcome::Skipped {
        reason: "1x1".into(),
    };
    LayerReport::new("s", &[2, 2, 1, 1], "F32", ConvKind::Pointwise, outcome)
}

fn diverged() -> LayerReport {
    let outcome = LayerOutcome::Diverged {
        before: figures(9.0, Some(0.9)),
        reason: "loss not finite".into(),
        work: work(),
    };
    LayerReport::new("d", &[2, 1, 3, 3], "F32", ConvKind::Standard, outcome)
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-12)
}

#[test]
fn means_are_over_the_optimized_layers_the_probe_measured() {
    let layers = [
        optimized((10.0, 1.0), (Some(0.4), Some(0.2)), 0.5),
        optimized((10.0, 1.0), (Some(0.6), Some(0.5)), 0.3),
        // Optimized but not measured (a conv1d): in the norm ratio, not in the cosines.
        optimized((10.0, 1.0), (None, None), 1.0),
        skipped(),
        diverged(),
    ];
    let t = Totals::from_layers(7, &layers);
    assert_eq!((t.optimized, t.skipped, t.diverged), (3, 1, 1));
    assert_eq!(t.feature_cosine_layers, 2);
    assert!(close(t.feature_cosine_before, 0.5), "{t:?}");
    assert!(close(t.feature_cosine_after, 0.35), "{t:?}");
    assert!(close(t.norm_ratio_mean, 0.6), "{t:?}");
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

#[test]
fn warns_with_the_norm_ratio_when_l_cs_fell_and_the_feature_maps_did_not() {
    let layers = [
        optimized((100.0, 1.0), (Some(0.40), Some(0.45)), 0.2),
        optimized((100.0, 1.0), (Some(0.44), Some(0.41)), 0.3),
    ];
    let t = Totals::from_layers(2, &layers);
    assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
    let warning = &t.warnings[0];
    for part in [
        "total L_CS fell 99.0 %",
        "0.420 -> 0.430 over 2 layers",
        "mean filter norm ratio 0.250",
    ] {
        assert!(warning.contains(part), "{part:?} not in {warning:?}");
    }
    assert!(!warning.contains('\n'), "one line: {warning:?}");
}

#[test]
fn an_unchanged_mean_counts_as_not_decreased() {
    let layers = [optimized((2.0, 1.0), (Some(0.3), Some(0.3)), 1.0)];
    let t = Totals::from_layers(1, &layers);
    assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
    assert!(
        t.warnings[0].contains("norm ratio 1.000"),
        "{:?}",
        t.warnings
    );
}

#[test]
fn no_warning_when_l_cs_did_not_fall_or_nothing_was_probed() {
    // L_CS rose: the cosine rising with it is no contradiction.
    let rose = [optimized((1.0, 2.0), (Some(0.3), Some(0.4)), 1.1)];
    assert!(Totals::from_layers(1, &rose).warnings.is_empty());
    // No probe: no means and nothing to warn about.
    let unprobed = [optimized((2.0, 1.0), (None, None), 0.5)];
    let t = Totals::from_layers(1, &unprobed);
    assert_eq!(t.feature_cosine_layers, 0);
    assert_eq!(
        (t.feature_cosine_before, t.feature_cosine_after),
        (None, None)
    );
    assert!(t.warnings.is_empty());
    // Nothing optimized: no means at all.
    let t = Totals::from_layers(1, &[skipped()]);
    assert_eq!(t.norm_ratio_mean, None);
    assert!(t.warnings.is_empty());
}
