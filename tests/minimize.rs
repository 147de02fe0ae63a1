//! Minimizing one layer: optimizer semantics, engine agreement, norm preservation, divergence.
//!
//! The portable engine and the candle training loop run on the device named by
//! `CS_INIT_TEST_DEVICE` (CPU by default, see `common::test_device`); the fused engine always runs
//! on CPU, and results are compared on CPU.

use crate::common::{
    device_for, kaiming, on_cpu, on_test_device, relative_norm, resnet18_conv_shapes, uniform,
    values,
};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::Optimizer;
use cs_init::optim::{Adam, AdamConfig, OptimizerConfig, Sgd, SgdConfig};
use cs_init::similarity::fused::{Iterations, Method};
use cs_init::similarity::KernelGeometry;
use cs_init::{minimize, Engine, Settings, Variant};

/// `W = [a, b]` as two 1x1 single-channel filters: L_CS = (ab)², gradient (2ab², 2a²b).
fn two_scalars(device: &Device) -> Tensor {
    Tensor::new(&[[[[1f64]]], [[[2.]]]], device).unwrap()
}

/// The fused engine on CPU and the portable one on the test device.
fn engines_and_devices(dtype: DType) -> [(Engine, Device); 2] {
    [
        (Engine::Fused, Device::Cpu),
        (Engine::Portable, device_for(dtype)),
    ]
}

fn settings(optimizer: OptimizerConfig, iterations: usize) -> Settings {
    Settings {
        variant: Variant::Paper,
        iterations,
        optimizer,
        keep_norm: false,
    }
}

/// Values computed by hand (in f64, from the algorithm boxes of PyTorch's documentation for
/// `torch.optim.Adam` and `torch.optim.SGD`) for L = (ab)² from a = 1, b = 2, lr = 0.1.
const ADAM: [[f64; 2]; 3] = [
    [0.900000000125, 1.90000000025],
    [0.8010696618013792, 1.80151131226089],
    [0.7040120123418707, 1.7056828830722333],
];
const SGD: [[f64; 2]; 3] = [
    [0.19999999999999996, 1.6],
    [0.09759999999999996, 1.5872000000000002],
    [0.048425141043199976, 1.5841761427456003],
];
const SGD_MOMENTUM: [[f64; 2]; 3] = [
    [0.19999999999999996, 1.6],
    [-0.6224000000000001, 1.2272],
    [-1.1750906503168, 0.7966010208256],
];

fn check_trajectory(optimizer: OptimizerConfig, expected: &[[f64; 2]; 3]) {
    for (engine, device) in engines_and_devices(DType::F64) {
        for (steps, want) in expected.iter().enumerate() {
            let out = minimize(
                &two_scalars(&device),
                &settings(optimizer, steps + 1),
                engine,
                &mut |_, _| {},
            )
            .unwrap();
            assert!(out.weight.device().same_device(&device), "{engine:?}");
            let got = values(&out.weight);
            for k in 0..2 {
                assert!(
                    (got[k] - want[k]).abs() <= 1e-12 * want[k].abs(),
                    "{engine:?} {optimizer:?} step {}: {got:?} vs {want:?}",
                    steps + 1
                );
            }
        }
    }
}

#[test]
fn adam_follows_pytorch() {
    check_trajectory(
        OptimizerConfig::Adam(AdamConfig {
            lr: 0.1,
            ..AdamConfig::default()
        }),
        &ADAM,
    );
}

#[test]
fn sgd_follows_pytorch() {
    check_trajectory(
        OptimizerConfig::Sgd(SgdConfig {
            lr: 0.1,
            momentum: 0.0,
        }),
        &SGD,
    );
}

#[test]
fn sgd_with_momentum_follows_pytorch() {
    check_trajectory(
        OptimizerConfig::Sgd(SgdConfig {
            lr: 0.1,
            momentum: 0.9,
        }),
        &SGD_MOMENTUM,
    );
}

/// Three steps of a candle optimizer on L = (ab)², as a user's training loop would run them.
fn candle_loop<O: Optimizer>(config: O::Config) -> Vec<[f64; 2]> {
    let var = Var::from_tensor(&two_scalars(&device_for(DType::F64))).unwrap();
    let mut opt = O::new(vec![var.clone()], config).unwrap();
    (0..3)
        .map(|_| {
            opt.backward_step(&cs_init::conv_similarity(var.as_tensor(), Variant::Paper).unwrap())
                .unwrap();
            let v = values(var.as_tensor());
            [v[0], v[1]]
        })
        .collect()
}

#[test]
fn optimizers_work_in_a_candle_training_loop() {
    let adam = candle_loop::<Adam>(AdamConfig {
        lr: 0.1,
        ..AdamConfig::default()
    });
    let sgd = candle_loop::<Sgd>(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
    });
    for (got, want) in adam.iter().zip(&ADAM).chain(sgd.iter().zip(&SGD_MOMENTUM)) {
        assert!((got[0] - want[0]).abs() < 1e-12 && (got[1] - want[1]).abs() < 1e-12);
    }
}

#[test]
fn invalid_optimizer_settings_are_rejected() {
    let bad = [
        OptimizerConfig::Adam(AdamConfig {
            lr: -1.0,
            ..AdamConfig::default()
        }),
        OptimizerConfig::Adam(AdamConfig {
            beta1: 1.0,
            ..AdamConfig::default()
        }),
        OptimizerConfig::Sgd(SgdConfig {
            lr: f64::NAN,
            momentum: 0.0,
        }),
        OptimizerConfig::Sgd(SgdConfig {
            lr: 0.1,
            momentum: -0.5,
        }),
    ];
    for optimizer in bad {
        let err = minimize(
            &two_scalars(&device_for(DType::F64)),
            &settings(optimizer, 1),
            Engine::Auto,
            &mut |_, _| {},
        );
        assert!(err.is_err(), "{optimizer:?}");
    }
}

/// `||Δ_a - Δ_b|| / ||Δ_b||` for the updates of two runs from the same start.
fn update_difference(start: &Tensor, a: &Tensor, b: &Tensor) -> f64 {
    let (s, a, b) = (values(start), values(a), values(b));
    let da: Vec<f64> = a.iter().zip(&s).map(|(x, y)| x - y).collect();
    let db: Vec<f64> = b.iter().zip(&s).map(|(x, y)| x - y).collect();
    relative_norm(&da, &db)
}

/// Runs the fused engine on CPU and the portable one on the test device from the same CPU weight.
fn compare_engines(weight: &Tensor, settings: &Settings) -> f64 {
    let fused = minimize(weight, settings, Engine::Fused, &mut |_, _| {}).unwrap();
    let on_device = on_test_device(weight);
    let portable = minimize(&on_device, settings, Engine::Portable, &mut |_, _| {}).unwrap();
    assert!(
        !fused.trace.diverged && !portable.trace.diverged,
        "{settings:?}"
    );
    assert_eq!(fused.weight.dtype(), weight.dtype());
    assert_eq!(portable.weight.dtype(), weight.dtype());
    assert!(portable.weight.device().same_device(on_device.device()));
    let last = |t: &cs_init::Trace| *t.losses.last().unwrap();
    if !settings.keep_norm {
        assert!(
            last(&fused.trace) < fused.trace.losses[0],
            "{settings:?}: {} -> {}",
            fused.trace.losses[0],
            last(&fused.trace)
        );
    }
    let loss_gap = (last(&fused.trace) - last(&portable.trace)).abs() / last(&portable.trace);
    assert!(loss_gap < 1e-3, "final losses differ by {loss_gap:e}");
    update_difference(weight, &fused.weight, &portable.weight)
}

#[test]
fn fused_engine_matches_portable_adam_on_resnet18_shapes() {
    let mut shapes = resnet18_conv_shapes();
    shapes.dedup();
    // The full list (with 512-channel layers) runs in the benchmark; tests keep the smaller half.
    for (n, dims) in shapes
        .iter()
        .filter(|d| d[0] * d[1] <= 128 * 128)
        .enumerate()
    {
        let weight = kaiming(dims, n as u64);
        let diff = compare_engines(&weight, &Settings::default());
        assert!(
            diff <= 1e-3,
            "{dims:?}: relative difference of the update {diff:e}"
        );
    }
}

#[test]
fn engines_agree_for_every_variant_optimizer_and_norm_mode() {
    let weight = kaiming(&[24, 16, 3, 3], 3);
    let optimizers = [
        OptimizerConfig::default(),
        OptimizerConfig::Sgd(SgdConfig {
            lr: 0.01,
            momentum: 0.0,
        }),
        OptimizerConfig::Sgd(SgdConfig {
            lr: 0.002,
            momentum: 0.9,
        }),
    ];
    for variant in Variant::ALL {
        for optimizer in optimizers {
            for keep_norm in [false, true] {
                let settings = Settings {
                    variant,
                    iterations: 50,
                    optimizer,
                    keep_norm,
                };
                let diff = compare_engines(&weight, &settings);
                assert!(
                    diff <= 1e-3,
                    "{variant} {optimizer:?} keep_norm={keep_norm}: {diff:e}"
                );
            }
        }
    }
}

#[test]
fn keep_norm_preserves_every_filter_norm() {
    let weight = kaiming(&[16, 8, 3, 3], 5);
    let before = cs_init::metrics::filter_norms(&weight).unwrap();
    for (engine, device) in engines_and_devices(weight.dtype()) {
        let settings = Settings {
            keep_norm: true,
            ..Settings::default()
        };
        let start = weight.to_device(&device).unwrap();
        let out = minimize(&start, &settings, engine, &mut |_, _| {}).unwrap();
        assert!(out.weight.device().same_device(&device), "{engine:?}");
        let after = cs_init::metrics::filter_norms(&on_cpu(&out.weight)).unwrap();
        for (b, a) in before.iter().zip(&after) {
            assert!((a - b).abs() <= 1e-5 * b, "{engine:?}: {b} -> {a}");
        }
        assert_ne!(values(&out.weight), values(&weight));
    }
}

#[test]
fn without_keep_norm_the_weights_shrink() {
    let weight = kaiming(&[32, 16, 3, 3], 6);
    // Engine::Auto: fused on CPU, portable on other devices.
    let start = on_test_device(&weight);
    let out = minimize(&start, &Settings::default(), Engine::Auto, &mut |_, _| {}).unwrap();
    let ratio = cs_init::metrics::NormRatio::between(&weight, &on_cpu(&out.weight)).unwrap();
    assert!(ratio.mean < 1.0, "{ratio:?}");
}

#[test]
fn trace_records_every_iteration_and_the_final_loss() {
    let weight = uniform(&[4, 3, 3, 3], 1);
    let expected =
        cs_init::similarity::literal::conv_similarity_value(&weight, Variant::Paper).unwrap();
    let settings = Settings {
        iterations: 7,
        ..Settings::default()
    };
    for (engine, device) in engines_and_devices(weight.dtype()) {
        let mut seen = Vec::new();
        let start = weight.to_device(&device).unwrap();
        let out = minimize(&start, &settings, engine, &mut |i, l| seen.push((i, l))).unwrap();
        assert_eq!(out.trace.losses.len(), 8, "{engine:?}");
        assert_eq!(
            seen.iter().map(|s| s.0).collect::<Vec<_>>(),
            (0..=7).collect::<Vec<_>>(),
            "{engine:?}"
        );
        assert_eq!(
            seen.iter().map(|s| s.1).collect::<Vec<_>>(),
            out.trace.losses,
            "{engine:?}"
        );
        assert!(
            (out.trace.losses[0] - expected).abs() < 1e-10 * expected,
            "{engine:?}"
        );
    }
}

#[test]
fn a_diverging_run_keeps_the_input_weights() {
    let weight = uniform(&[6, 4, 3, 3], 2);
    let settings = Settings {
        iterations: 100,
        optimizer: OptimizerConfig::Sgd(SgdConfig {
            lr: 10.0,
            momentum: 0.0,
        }),
        ..Settings::default()
    };
    for (engine, device) in engines_and_devices(weight.dtype()) {
        let start = weight.to_device(&device).unwrap();
        let out = minimize(&start, &settings, engine, &mut |_, _| {}).unwrap();
        assert!(out.trace.diverged, "{engine:?}");
        assert!(out.weight.device().same_device(&device), "{engine:?}");
        assert_eq!(values(&out.weight), values(&weight));
    }
}

#[test]
fn half_precision_weights_come_back_in_their_dtype() {
    let weight = kaiming(&[8, 4, 3, 3], 8);
    for dtype in [DType::F16, DType::BF16, DType::F32, DType::F64] {
        // Converted on CPU, then moved: the dtype lives on the test device from the start.
        let w = on_test_device(&weight.to_dtype(dtype).unwrap());
        let out = minimize(&w, &Settings::default(), Engine::Auto, &mut |_, _| {}).unwrap();
        assert_eq!(out.weight.dtype(), dtype);
        assert!(out.weight.device().same_device(w.device()), "{dtype:?}");
        let expected = if w.device().is_cpu() {
            Engine::Fused
        } else {
            Engine::Portable
        };
        assert_eq!(out.engine, expected, "{dtype:?}");
        assert!(out.trace.losses.last().unwrap() < &out.trace.losses[0]);
    }
}

/// `iterations` steps of one layer on `path`: the losses seen and the final weights.
fn run_path<T: cs_init::similarity::fused::Real>(
    path: Method,
    weight: &[T],
    dims: &[usize],
    settings: &Settings,
) -> (Vec<f64>, Vec<T>) {
    let geometry = KernelGeometry::from_dims(dims).unwrap();
    let mut run = Iterations::on(
        path,
        weight,
        &geometry,
        settings.variant,
        &settings.optimizer,
        settings.keep_norm,
    );
    assert_eq!(run.path(), path);
    let mut losses = Vec::new();
    for step in 0..=settings.iterations {
        losses.push(run.loss());
        if step < settings.iterations {
            run.step(step + 1);
        }
    }
    assert!(run.finite());
    let mut out = weight.to_vec();
    run.write_back(&mut out);
    (losses, out)
}

fn path_settings() -> Vec<Settings> {
    let mut all = Vec::new();
    for variant in Variant::ALL {
        for (optimizer, keep_norm) in [
            (OptimizerConfig::default(), false),
            (OptimizerConfig::default(), true),
            (
                OptimizerConfig::Sgd(SgdConfig {
                    lr: 0.01,
                    momentum: 0.0,
                }),
                false,
            ),
            (
                OptimizerConfig::Sgd(SgdConfig {
                    lr: 0.002,
                    momentum: 0.9,
                }),
                true,
            ),
        ] {
            all.push(Settings {
                variant,
                iterations: 12,
                optimizer,
                keep_norm,
            });
        }
    }
    all
}

#[test]
fn every_path_follows_the_same_trajectory() {
    for (n, dims) in [
        vec![19, 1, 5, 5],
        vec![5, 3, 40],
        vec![6, 18, 3, 3],
        vec![3, 2, 2, 3, 3],
    ]
    .iter()
    .enumerate()
    {
        let w64 = values(&kaiming(dims, 40 + n as u64));
        let w32: Vec<f32> = w64.iter().map(|&x| x as f32).collect();
        let start: Vec<f64> = w32.iter().map(|&x| f64::from(x)).collect();
        for settings in path_settings() {
            let (losses, reference) = run_path(Method::Channels, &w64, dims, &settings);
            let (_, reference32) = run_path(Method::Channels, &w32, dims, &settings);
            let update = |w: &[f64], start: &[f64]| -> Vec<f64> {
                w.iter().zip(start).map(|(a, b)| a - b).collect()
            };
            let widen = |w: &[f32]| -> Vec<f64> { w.iter().map(|&x| f64::from(x)).collect() };
            for path in [Method::Filters, Method::Spectral] {
                let (other_losses, other) = run_path(path, &w64, dims, &settings);
                for (a, b) in other_losses.iter().zip(&losses) {
                    assert!(
                        (a - b).abs() <= 1e-9 * b.abs(),
                        "{path:?} {dims:?} {settings:?}: loss {a} vs {b}"
                    );
                }
                let diff = relative_norm(&update(&other, &w64), &update(&reference, &w64));
                assert!(diff <= 1e-9, "{path:?} f64 {dims:?} {settings:?}: {diff:e}");
                let (_, other32) = run_path(path, &w32, dims, &settings);
                let diff = relative_norm(
                    &update(&widen(&other32), &start),
                    &update(&widen(&reference32), &start),
                );
                assert!(diff <= 1e-3, "{path:?} f32 {dims:?} {settings:?}: {diff:e}");
            }
        }
    }
}

#[test]
fn every_path_is_bit_identical_across_runs_and_thread_counts() {
    let settings = Settings {
        iterations: 5,
        keep_norm: true,
        ..Settings::default()
    };
    // Enough filters for several rayon tasks and several fixed loss chunks.
    for dims in [vec![150, 1, 7, 7], vec![140, 2, 30], vec![70, 24, 3, 3]] {
        let w: Vec<f32> = values(&kaiming(&dims, 7))
            .iter()
            .map(|&x| x as f32)
            .collect();
        for path in Method::ALL {
            for variant in [Variant::Paper, Variant::AdjacentSameChannel] {
                let settings = Settings {
                    variant,
                    ..settings.clone()
                };
                let run = |threads| {
                    cs_init::run::with_threads(Some(threads), || {
                        run_path(path, &w, &dims, &settings)
                    })
                    .unwrap()
                };
                let bits = |(losses, w): (Vec<f64>, Vec<f32>)| {
                    (
                        losses.iter().map(|l| l.to_bits()).collect::<Vec<_>>(),
                        w.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    )
                };
                let one = bits(run(1));
                assert_eq!(one, bits(run(2)), "{path:?} {dims:?} {variant}");
                assert_eq!(one, bits(run(3)), "{path:?} {dims:?} {variant}");
                assert_eq!(one, bits(run(2)), "{path:?} {dims:?} {variant}: rerun");
            }
        }
    }
}
