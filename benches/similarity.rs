//! Benchmarks of the L_CS engines, printed as Markdown for docs/benchmarks.md.
//!
//! `cargo bench --bench similarity` runs everything; `-- --iters N` changes the iteration count of
//! the ResNet-18 runs (default 200), `-- --portable-iters N` the portable path's (default 200; with
//! equal counts the weight updates of the two engines are compared), `-- --quick` skips the
//! literal and the portable runs.

// The tests' helpers: the same weights, shapes and conversions as the engine-agreement tests.
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/heap.rs"]
mod heap;
#[path = "support/machine.rs"]
mod machine;

use std::time::Instant;

use candle_core::{DType, Tensor, Var};
use common::{kaiming, resnet18_conv_shapes, values};
use cs_init::similarity::{fused, literal, portable, KernelGeometry, Variant};
use cs_init::{minimize, Engine, Settings};
use machine::machine;

/// Median seconds of `runs` calls of `f` after one warm-up call.
fn median_seconds(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    seconds(runs, f)
}

/// Median seconds of `runs` calls of `f`, no warm-up.
fn seconds(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

fn literal_vs_fast() {
    println!("## Loss + gradient of one 64x64x3x3 layer\n");
    println!("| path | dtype | ms | ratio to literal |");
    println!("|---|---|---|---|");
    let w64 = kaiming(&[64, 64, 3, 3], 1).to_dtype(DType::F64).unwrap();
    let geometry = KernelGeometry::from_dims(w64.dims()).unwrap();
    let backward = |loss: &dyn Fn(&Tensor) -> Tensor, w: &Tensor| {
        let var = Var::from_tensor(w).unwrap();
        loss(var.as_tensor()).backward().unwrap();
    };
    // About half a minute per call: one call, no warm-up.
    let literal_s = seconds(1, || {
        backward(
            &|w| literal::conv_similarity(w, Variant::Paper).unwrap(),
            &w64,
        )
    });
    println!(
        "| literal (Eq. 10, candle autograd) | f64 | {:.1} | 1 |",
        literal_s * 1e3
    );
    for dtype in [DType::F64, DType::F32] {
        let w = w64.to_dtype(dtype).unwrap();
        let portable_s = median_seconds(20, || {
            backward(
                &|w| portable::conv_similarity(w, Variant::Paper).unwrap(),
                &w,
            )
        });
        let fused_s = if dtype == DType::F64 {
            let data = w.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            median_seconds(50, || {
                fused::loss_and_gradient(&data, &geometry, Variant::Paper);
            })
        } else {
            let data = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            median_seconds(50, || {
                fused::loss_and_gradient(&data, &geometry, Variant::Paper);
            })
        };
        let name = format!("{dtype:?}").to_lowercase();
        println!(
            "| portable (candle autograd) | {name} | {:.3} | {:.0}x faster |",
            portable_s * 1e3,
            literal_s / portable_s
        );
        println!(
            "| fused (loss_and_gradient) | {name} | {:.3} | {:.0}x faster |",
            fused_s * 1e3,
            literal_s / fused_s
        );
    }
    println!();
}

fn resnet18(iterations: usize, portable_iterations: Option<usize>) {
    println!("## ResNet-18: 20 conv weights (11.2 M parameters), Adam lr 1e-3, f32\n");
    let weights: Vec<Tensor> = resnet18_conv_shapes()
        .iter()
        .enumerate()
        .map(|(i, d)| kaiming(d, i as u64))
        .collect();
    let run = |engine: Engine, iterations: usize| -> (f64, Vec<f64>, Vec<Tensor>) {
        let settings = Settings {
            iterations,
            ..Settings::default()
        };
        let mut per_layer = Vec::new();
        let mut results = Vec::new();
        let start = Instant::now();
        for w in &weights {
            let t = Instant::now();
            let out = minimize(w, &settings, engine, &mut |_, _| {}).unwrap();
            assert!(!out.trace.diverged);
            per_layer.push(t.elapsed().as_secs_f64());
            results.push(out.weight);
        }
        (start.elapsed().as_secs_f64(), per_layer, results)
    };
    run(Engine::Fused, 5); // warm-up
    let (fused_s, fused_layers, fused_weights) = run(Engine::Fused, iterations);
    println!("| engine | iterations | total s | ms per iteration |");
    println!("|---|---|---|---|");
    println!(
        "| fused | {iterations} | {fused_s:.2} | {:.2} |",
        fused_s * 1e3 / iterations as f64
    );
    let mut differences = None;
    if let Some(n) = portable_iterations {
        let (portable_s, _, portable_weights) = run(Engine::Portable, n);
        println!(
            "| portable | {n} | {portable_s:.2} | {:.1} ({:.1}x the fused engine) |",
            portable_s * 1e3 / n as f64,
            (portable_s / n as f64) / (fused_s / iterations as f64)
        );
        if n == iterations {
            differences = Some(update_differences(
                &weights,
                &fused_weights,
                &portable_weights,
            ));
        }
    }
    println!(
        "\nPer layer, fused engine (and, with equal iteration counts, how far its weight update is"
    );
    println!("from the portable path's: `||Δ_fused - Δ_portable|| / ||Δ_portable||`):\n");
    println!("| layer | shape | ms per iteration | update difference |");
    println!("|---|---|---|---|");
    for (i, (dims, s)) in resnet18_conv_shapes().iter().zip(&fused_layers).enumerate() {
        let diff = differences
            .as_ref()
            .map_or("-".to_string(), |d| format!("{:.1e}", d[i]));
        println!(
            "| {i} | {dims:?} | {:.3} | {diff} |",
            s * 1e3 / iterations as f64
        );
    }
    println!();
}

fn update_differences(start: &[Tensor], a: &[Tensor], b: &[Tensor]) -> Vec<f64> {
    start
        .iter()
        .zip(a.iter().zip(b))
        .map(|(s, (a, b))| {
            let (s, a, b) = (values(s), values(a), values(b));
            let (mut diff, mut norm) = (0.0, 0.0);
            for ((s, a), b) in s.iter().zip(&a).zip(&b) {
                diff += ((a - s) - (b - s)) * ((a - s) - (b - s));
                norm += (b - s) * (b - s);
            }
            (diff / norm).sqrt()
        })
        .collect()
}

fn memory() {
    println!("## Peak extra memory of the fused engine, relative to the layer's f32 size\n");
    println!("| shape | variant | Adam | SGD |");
    println!("|---|---|---|---|");
    let mut shapes = resnet18_conv_shapes();
    shapes.dedup();
    shapes.sort();
    shapes.dedup();
    for dims in shapes {
        let data = kaiming(&dims, 0)
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let geometry = KernelGeometry::from_dims(&dims).unwrap();
        for variant in [Variant::Paper, Variant::SameChannel] {
            let mut row = format!("| {dims:?} | {variant} |");
            for optimizer in [
                cs_init::optim::OptimizerConfig::default(),
                cs_init::optim::OptimizerConfig::Sgd(cs_init::optim::SgdConfig {
                    lr: 1e-3,
                    momentum: 0.0,
                }),
            ] {
                let settings = Settings {
                    variant,
                    iterations: 2,
                    optimizer,
                    keep_norm: false,
                };
                let mut w = data.clone();
                let extra = heap::peak_extra_bytes(|| {
                    cs_init::minimize::fused::minimize(
                        &mut w,
                        &geometry,
                        &settings,
                        &mut |_, _| std::ops::ControlFlow::Continue(()),
                    )
                    .unwrap();
                });
                row += &format!(" {:.2}x |", extra as f64 / (data.len() * 4) as f64);
            }
            println!("{row}");
        }
    }
    println!();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse().expect("a number"))
            .unwrap_or(default)
    };
    let quick = args.iter().any(|a| a == "--quick");
    println!("Machine: {}\n", machine());
    if !quick {
        literal_vs_fast();
    }
    resnet18(
        value("--iters", 200),
        (!quick).then(|| value("--portable-iters", 200)),
    );
    memory();
}
