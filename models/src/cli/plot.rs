//! `models plot`: test accuracy per epoch from training logs.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use cs_init::report::plot::{write_plot_with, Axes, Curve, YScale};

#[derive(Args)]
pub struct PlotArgs {
    /// Training logs (JSON lines written by `train --log`).
    #[arg(required = true)]
    logs: Vec<PathBuf>,
    /// The plot file, .svg or .png.
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
    #[arg(long, default_value = "CIFAR-10 test accuracy")]
    title: String,
}

/// Per arm, one `(epoch, test accuracy)` list per seed.
type Runs = BTreeMap<String, Vec<Vec<(usize, f64)>>>;

/// The test accuracies of every run in the logs.
fn read_logs(paths: &[PathBuf]) -> Result<Runs> {
    let mut runs: BTreeMap<(String, u64), Vec<(usize, f64)>> = Default::default();
    for path in paths {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        for (number, line) in BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let record: serde_json::Value = serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: not a JSON line", path.display(), number + 1))?;
            let field = |key: &str| {
                record.get(key).cloned().with_context(|| {
                    format!(
                        "{}:{}: no `{key}` (is this a training log?)",
                        path.display(),
                        number + 1
                    )
                })
            };
            let arm = field("arm")?.as_str().unwrap_or_default().to_string();
            let seed = field("seed")?.as_u64().unwrap_or_default();
            let epoch = field("epoch")?.as_u64().unwrap_or_default() as usize;
            let accuracy = field("test_accuracy")?.as_f64().unwrap_or(f64::NAN);
            runs.entry((arm, seed)).or_default().push((epoch, accuracy));
        }
    }
    let mut by_arm: Runs = BTreeMap::new();
    for ((arm, _), run) in runs {
        by_arm.entry(arm).or_default().push(run);
    }
    Ok(by_arm)
}

pub fn run(args: PlotArgs) -> Result<()> {
    let by_arm = read_logs(&args.logs)?;
    let curves: Vec<Curve> = by_arm
        .iter()
        .map(|(arm, runs)| {
            // Epochs every seed reached, averaged over the seeds.
            let epochs = runs.iter().map(Vec::len).min().unwrap_or(0);
            let points = (0..epochs)
                .map(|k| {
                    let mean = runs.iter().map(|run| run[k].1).sum::<f64>() / runs.len() as f64;
                    (runs[0][k].0 as f64, mean)
                })
                .collect();
            Curve {
                label: match runs.len() {
                    1 => format!("{arm} (1 seed)"),
                    n => format!("{arm} ({n} seeds)"),
                },
                points,
            }
        })
        .collect();
    let axes = Axes {
        x_label: "epoch",
        y_label: "test accuracy (%)",
        y_scale: YScale::Linear,
    };
    write_plot_with(&args.output, &args.title, &axes, &curves)
        .with_context(|| format!("cannot write the plot {}", args.output.display()))
}
