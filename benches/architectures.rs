//! The fused engine on the conv weights of ten networks, against PyTorch, printed as Markdown for
//! docs/benchmarks.md.
//!
//! `cargo bench --bench architectures` times, per network (shape lists in `benches/shapes/`),
//! 200 Adam iterations (lr 1e-3, f32, kaiming-normal weights) of every conv layer, one layer
//! after the other, and the same in PyTorch through `benches/pytorch_similarity.py` when
//! `python3` with torch is found (the column is left out otherwise). Options:
//!
//! - `--iters N`: cs-init iterations per layer (default 200);
//! - `--torch-iters N`: PyTorch iterations per layer, scaled to `--iters` (default 200; 0 skips
//!   PyTorch);
//! - `--only a,b`: only these networks (file stems of `benches/shapes/`);
//! - `--calibrate`: instead, time every path of the engine on a grid of shapes next to the cost
//!   model's estimate (how the model's constants were fitted);
//! - `--layer S,C,k... [--path channels|filters|spectral]`: instead, time one layer (for
//!   profiling, e.g. under `valgrind --tool=callgrind`);
//! - `--probe-layer S,C,kh,kw`: instead, time the default probe's two measurements of one conv2d
//!   layer, over `--iters` fresh inputs (the first draws the inputs and builds the patches).
//!
//! Each network is also run as the whole command would run it (`cs-init INPUT --iters N`,
//! default probe, through `cs_init::run` on a checkpoint of its conv weights), with the shares of
//! minimizing, the probe and the metrics from the report's totals.
//!
//! The work rate of a layer is its time per multiply-add of the direct count `S·C·P²`, relative
//! to that of `[512, 512, 3, 3]` measured in the same run: 1 is as efficient as the widest
//! ResNet layer, 3 means three times slower per multiply-add.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/heap.rs"]
mod heap;
#[path = "support/machine.rs"]
mod machine;

use std::path::{Path as FsPath, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::Device;
use common::kaiming;
use cs_init::optim::{OptimizerConfig, SgdConfig};
use cs_init::probe::Probe;
use cs_init::run::{
    prepare, with_threads, Destination, Execution, InputAccess, RunSettings, Silent,
};
use cs_init::similarity::fused::{Iterations, Method};
use cs_init::similarity::{KernelGeometry, Variant};
use cs_init::Settings;
use machine::machine;

const NETWORKS: [(&str, &str); 10] = [
    ("resnet18", "ResNet-18"),
    ("resnet50", "ResNet-50"),
    ("convnext_tiny", "ConvNeXt-T"),
    ("efficientnet_b0", "EfficientNet-B0"),
    ("mobilenet_v3_large", "MobileNetV3-L"),
    ("regnet_y_400mf", "RegNetY-400MF"),
    ("resnext50_32x4d", "ResNeXt-50 32x4d"),
    ("inception_v3", "Inception-v3"),
    ("r3d_18", "R3D-18 (3-D)"),
    ("audio", "1-D audio"),
];

struct Conv {
    name: String,
    dims: Vec<usize>,
}

fn shapes_dir() -> PathBuf {
    FsPath::new(env!("CARGO_MANIFEST_DIR")).join("benches/shapes")
}

fn read_shapes(stem: &str) -> Vec<Conv> {
    let path = shapes_dir().join(format!("{stem}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut fields = l.split_whitespace();
            let name = fields.next().expect("a name").to_string();
            let dims = fields.map(|d| d.parse().expect("a dimension")).collect();
            Conv { name, dims }
        })
        .collect()
}

fn macs(dims: &[usize]) -> f64 {
    let p: usize = dims[2..].iter().product();
    (dims[0] * dims[1]) as f64 * (p * p) as f64
}

fn weight(dims: &[usize], seed: u64) -> Vec<f32> {
    kaiming(dims, seed)
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// Seconds of `iterations` Adam steps of one layer on `path`, the loss evaluated before each
/// step as the minimize loop does.
fn time_layer(dims: &[usize], path: Method, iterations: usize, seed: u64) -> f64 {
    let data = weight(dims, seed);
    let geometry = KernelGeometry::from_dims(dims).unwrap();
    let settings = Settings::default();
    let start = Instant::now();
    let mut run = Iterations::on(
        path,
        &data,
        &geometry,
        settings.variant,
        &settings.optimizer,
        false,
    );
    for step in 0..=iterations {
        let loss = run.loss();
        assert!(loss.is_finite(), "{dims:?} diverged");
        if step < iterations {
            run.step(step + 1);
        }
    }
    let mut out = data;
    run.write_back(&mut out);
    start.elapsed().as_secs_f64()
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// PyTorch seconds per layer for `iterations` steps, scaled from `measured` steps; `None` when
/// python3 or torch is missing.
fn pytorch(stem: &str, measured: usize, iterations: usize) -> Option<Vec<f64>> {
    let script = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("benches/pytorch_similarity.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(shapes_dir().join(format!("{stem}.txt")))
        .args(["--iters", &measured.to_string(), "--threads", "2"])
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!(
            "PyTorch column skipped for {stem}: {}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let scale = iterations as f64 / measured as f64;
    json["layers"]
        .as_array()?
        .iter()
        .map(|l| l["seconds"].as_f64().map(|s| s * scale))
        .collect()
}

fn torch_available() -> bool {
    Command::new("python3")
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success())
}

struct Row {
    label: &'static str,
    convs: usize,
    parameters: usize,
    seconds: f64,
    torch: Option<f64>,
    worst: (f64, String),
    whole: Whole,
}

/// The whole command on one network: seconds, and where they went (from the report's totals).
struct Whole {
    seconds: f64,
    optimize: f64,
    probe: f64,
    metrics: f64,
    optimized: usize,
}

/// Runs the pipeline with the command line's defaults (`iterations` iterations) on a checkpoint
/// holding the network's conv weights, timing everything from opening the input to the report.
fn whole_command(convs: &[Conv], iterations: usize) -> Whole {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("network.safetensors");
    let tensors: std::collections::HashMap<String, candle_core::Tensor> = convs
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), kaiming(&c.dims, i as u64)))
        .collect();
    candle_core::safetensors::save(&tensors, &input).unwrap();
    // On disk before the clock starts, as a user's checkpoint is: otherwise the kernel writes the
    // input back during the run, and the output's final sync waits behind it.
    std::fs::File::open(&input).unwrap().sync_all().unwrap();
    let settings = RunSettings {
        iters: iterations,
        ..RunSettings::default()
    };
    let execution = Execution {
        destination: Destination {
            checkpoint: Some(dir.path().join("out.safetensors")),
            report: Some(dir.path().join("report.json")),
            plot: None,
            force: true,
        },
        device: candle_core::Device::Cpu,
        command_line: "cargo bench --bench architectures".into(),
        input_label: None,
    };
    // On a pool of its own, as the command line runs it: parallel calls made from outside a
    // pool each wait for a wake-up, which costs a tiny layer more than its work.
    let (outcome, seconds) = with_threads(None, || {
        let start = Instant::now();
        let prepared =
            prepare(input.to_str().unwrap(), &settings, &InputAccess::default()).unwrap();
        let outcome = prepared.execute(&execution, &mut Silent).unwrap();
        (outcome, start.elapsed().as_secs_f64())
    })
    .unwrap();
    let totals = &outcome.report.totals;
    Whole {
        seconds,
        optimize: totals.optimize_seconds,
        probe: totals.probe_seconds,
        metrics: totals.metrics_seconds,
        optimized: totals.optimized,
    }
}

fn networks(only: Option<&[String]>, iterations: usize, torch_iterations: usize) {
    let torch = torch_iterations > 0 && torch_available();
    let reference_dims = [512, 512, 3, 3];
    let reference = time_layer(
        &reference_dims,
        Method::choose(
            &KernelGeometry::from_dims(&reference_dims).unwrap(),
            Variant::Paper,
        ),
        iterations,
        0,
    ) / macs(&reference_dims);
    println!(
        "Reference: `[512, 512, 3, 3]`, {:.2} ns per multiply-add of `S·C·P²` per iteration.\n",
        reference * 1e9 / iterations as f64
    );
    let mut rows = Vec::new();
    let mut outliers = Vec::new();
    for (stem, label) in NETWORKS {
        if only.is_some_and(|o| !o.iter().any(|s| s == stem)) {
            continue;
        }
        let convs = read_shapes(stem);
        let mut per_layer = Vec::new();
        for (i, conv) in convs.iter().enumerate() {
            let geometry = KernelGeometry::from_dims(&conv.dims).unwrap();
            let path = Method::choose(&geometry, Variant::Paper);
            per_layer.push((path, time_layer(&conv.dims, path, iterations, i as u64)));
        }
        let torch_layers = if torch {
            pytorch(stem, torch_iterations, iterations)
        } else {
            None
        };
        let seconds: f64 = per_layer.iter().map(|l| l.1).sum();
        let mut worst = (0.0, String::new());
        for (i, (conv, &(path, s))) in convs.iter().zip(&per_layer).enumerate() {
            let rate = s / macs(&conv.dims) / reference;
            let versus = torch_layers.as_ref().map(|t| t[i] / s);
            if rate > worst.0 {
                worst = (rate, format!("{:?}", conv.dims));
            }
            if rate > 3.0 || versus.is_some_and(|v| v < 20.0) {
                outliers.push(format!(
                    "| {label} | `{}` | {:?} | {path:?} | {:.1} | {:.3} | {} |",
                    conv.name,
                    conv.dims,
                    rate,
                    s,
                    versus.map_or("-".into(), |v| format!("{v:.1}x"))
                ));
            }
        }
        let whole = whole_command(&convs, iterations);
        eprintln!(
            "{label}: {seconds:.2} s, whole command {:.2} s (load {})",
            whole.seconds,
            load()
        );
        rows.push(Row {
            label,
            convs: convs.len(),
            parameters: convs.iter().map(|c| c.dims.iter().product::<usize>()).sum(),
            seconds,
            torch: torch_layers.map(|t| t.iter().sum()),
            worst,
            whole,
        });
    }
    println!(
        "| network | conv weights | parameters | cs-init s | PyTorch s | ratio | worst work rate (layer) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in &rows {
        let (torch, ratio) = match row.torch {
            Some(t) => (format!("{t:.1}"), format!("{:.0}x", t / row.seconds)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {:.2} M | {:.2} | {torch} | {ratio} | {:.1} (`{}`) |",
            row.label,
            row.convs,
            row.parameters as f64 / 1e6,
            row.seconds,
            row.worst.0,
            row.worst.1
        );
    }
    let geomean = |ratios: Vec<f64>| {
        (!ratios.is_empty())
            .then(|| (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp())
    };
    if let Some(g) = geomean(
        rows.iter()
            .filter_map(|r| r.torch.map(|t| t / r.seconds))
            .collect(),
    ) {
        println!("\nGeometric mean of the ratios to PyTorch: {g:.0}x.");
    }
    println!(
        "\nThe whole command (`cs-init INPUT --iters {iterations}`, default probe, every conv \
         weight), and its ratio to the PyTorch iterations above:\n"
    );
    println!(
        "| network | optimized | whole command s | minimizing | probe | metrics | rest | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let share = |part: f64, whole: &Whole| format!("{:.0} %", 100.0 * part / whole.seconds);
    for row in &rows {
        let w = &row.whole;
        let rest = w.seconds - w.optimize - w.probe - w.metrics;
        println!(
            "| {} | {}/{} | {:.2} | {} | {} | {} | {} | {} |",
            row.label,
            w.optimized,
            row.convs,
            w.seconds,
            share(w.optimize, w),
            share(w.probe, w),
            share(w.metrics, w),
            share(rest, w),
            row.torch
                .map_or("-".into(), |t| format!("{:.0}x", t / w.seconds))
        );
    }
    if let Some(g) = geomean(
        rows.iter()
            .filter_map(|r| r.torch.map(|t| t / r.whole.seconds))
            .collect(),
    ) {
        println!("\nGeometric mean of the whole command's ratios to PyTorch: {g:.0}x.");
    }
    println!("\nLayers slower than 3x the reference per multiply-add, or less than 20x PyTorch:\n");
    println!("| network | layer | shape | path | work rate | cs-init s | vs PyTorch |");
    println!("|---|---|---|---|---|---|---|");
    for o in &outliers {
        println!("{o}");
    }
    println!();
}

/// Every path on a grid of shapes, measured against the cost model.
/// Milliseconds of the default probe's first and second measurement of a layer, averaged over
/// `repeats` layer indices (fresh inputs each).
fn time_probe(dims: &[usize], repeats: usize) -> cs_init::Result<[f64; 2]> {
    let settings = RunSettings::default()
        .check()
        .expect("the defaults are valid");
    let probe = Probe::new(settings.probe.expect("the default probe"), &Device::Cpu)?;
    let weight = kaiming(dims, 0);
    let after = (&weight * 0.5)?;
    let mut seconds = [0.0; 2];
    for layer in 0..repeats as u64 {
        let session = probe.layer(layer);
        for (second, w) in seconds.iter_mut().zip([&weight, &after]) {
            let started = Instant::now();
            session.feature_similarity(w, None)?;
            *second += started.elapsed().as_secs_f64();
        }
    }
    Ok(seconds.map(|s| s * 1e3 / repeats.max(1) as f64))
}

fn calibrate(iterations: usize) {
    let grid: [&[usize]; 16] = [
        &[512, 512, 3, 3],
        &[256, 128, 1, 1],
        &[64, 3, 7, 7],
        &[768, 1, 7, 7],
        &[384, 1, 3, 3],
        &[240, 1, 5, 5],
        &[208, 8, 3, 3],
        &[256, 4, 3, 3],
        &[512, 16, 3, 3],
        &[96, 24, 3, 3],
        &[64, 3, 3, 7, 7],
        &[64, 2, 11, 11],
        &[258, 1, 256],
        &[128, 129, 3],
        &[256, 1, 64, 1],
        &[128, 32, 1, 7],
    ];
    println!("| shape | path | ms per iteration | model (M cycles) | chosen |");
    println!("|---|---|---|---|---|");
    for dims in grid {
        let geometry = KernelGeometry::from_dims(dims).unwrap();
        let chosen = Method::choose(&geometry, Variant::Paper);
        for path in Method::ALL {
            let s = time_layer(dims, path, iterations, 0);
            println!(
                "| {dims:?} | {path:?} | {:.3} | {:.3} | {} |",
                s * 1e3 / iterations as f64,
                path.cost(&geometry, Variant::Paper) / 1e6,
                if path == chosen { "yes" } else { "" }
            );
        }
    }
    println!();
}

fn memory() {
    println!("## Peak extra memory of each path, relative to the layer's f32 size\n");
    println!("| shape | path | variant | Adam | SGD |");
    println!("|---|---|---|---|---|");
    let shapes: [&[usize]; 5] = [
        &[512, 512, 3, 3],
        &[768, 1, 7, 7],
        &[64, 3, 7, 7],
        &[258, 1, 256],
        &[1024, 1, 512, 1],
    ];
    for dims in shapes {
        let data = weight(dims, 0);
        let geometry = KernelGeometry::from_dims(dims).unwrap();
        for path in Method::ALL {
            for variant in [Variant::Paper, Variant::SameChannel] {
                let mut row = format!("| {dims:?} | {path:?} | {variant} |");
                for optimizer in [
                    OptimizerConfig::default(),
                    OptimizerConfig::Sgd(SgdConfig {
                        lr: 1e-3,
                        momentum: 0.0,
                    }),
                ] {
                    let peak = heap::peak_extra_bytes(|| {
                        let mut run =
                            Iterations::on(path, &data, &geometry, variant, &optimizer, false);
                        for step in 1..=2 {
                            run.loss();
                            run.step(step);
                        }
                        let mut out = data.clone();
                        run.write_back(&mut out);
                    });
                    // The copy written back is the caller's, not the engine's.
                    let extra = peak - data.len() * 4;
                    row += &format!(" {:.2}x |", extra as f64 / (data.len() * 4) as f64);
                }
                println!("{row}");
            }
        }
    }
    println!();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let number =
        |flag: &str, default: usize| value(flag).map_or(default, |v| v.parse().expect("a number"));
    let iterations = number("--iters", 200);
    // As the command line does, so that the whole command is timed as users run it.
    cs_init::run::keep_freed_memory();
    println!("Machine: {}; load average {}\n", machine(), load());
    if let Some(layer) = value("--layer") {
        // One layer on one path, for profiling: `--layer 258,1,256 --path spectral`.
        let dims: Vec<usize> = layer
            .split(',')
            .map(|d| d.parse().expect("a dimension"))
            .collect();
        let geometry = KernelGeometry::from_dims(&dims).unwrap();
        let path = match value("--path").as_deref() {
            Some("channels") => Method::Channels,
            Some("filters") => Method::Filters,
            Some("spectral") => Method::Spectral,
            _ => Method::choose(&geometry, Variant::Paper),
        };
        let s = with_threads(None, || time_layer(&dims, path, iterations, 0)).unwrap();
        println!(
            "{dims:?} {path:?}: {:.3} ms per iteration",
            s * 1e3 / iterations as f64
        );
        return;
    }
    if let Some(layer) = value("--probe-layer") {
        let dims: Vec<usize> = layer
            .split(',')
            .map(|d| d.parse().expect("a dimension"))
            .collect();
        let [first, second] = with_threads(None, || time_probe(&dims, number("--iters", 20)))
            .unwrap()
            .unwrap();
        println!("{dims:?}: first measurement {first:.3} ms, second {second:.3} ms");
        return;
    }
    if args.iter().any(|a| a == "--calibrate") {
        with_threads(None, || calibrate(number("--iters", 20))).unwrap();
        return;
    }
    let only: Option<Vec<String>> =
        value("--only").map(|v| v.split(',').map(str::to_string).collect());
    println!(
        "## {iterations} Adam iterations over every conv layer (f32, lr 1e-3, paper variant)\n"
    );
    // On a pool, as the command line and the service run: see `whole_command`.
    with_threads(None, || {
        networks(only.as_deref(), iterations, number("--torch-iters", 200))
    })
    .unwrap();
    memory();
    println!("Load average at the end: {}", load());
}
