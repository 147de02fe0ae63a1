//! `models plot`: a training metric per epoch from training logs, and a summary table.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use cs_init::report::plot::{Axes, Scale, Series};

use crate::plot::write_plot;

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
    /// What to plot and summarize.
    #[arg(long, value_enum, default_value_t = Metric::TestAccuracy)]
    metric: Metric,
}

/// A per-epoch figure of the training log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Metric {
    TestAccuracy,
    TrainAccuracy,
    TrainLoss,
}

impl Metric {
    /// The field of the log line.
    fn key(self) -> &'static str {
        match self {
            Metric::TestAccuracy => "test_accuracy",
            Metric::TrainAccuracy => "train_accuracy",
            Metric::TrainLoss => "train_loss",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Metric::TestAccuracy => "test accuracy (%)",
            Metric::TrainAccuracy => "train accuracy (%)",
            Metric::TrainLoss => "train loss (cross-entropy)",
        }
    }

    /// The better of two values: the larger accuracy, the smaller loss.
    fn better(self, a: f64, b: f64) -> f64 {
        match self {
            Metric::TrainLoss => a.min(b),
            _ => a.max(b),
        }
    }
}

/// Per arm, one `(epoch, value)` list per seed; epoch 0 (before training) has no training
/// figures and is left out of those.
type Runs = BTreeMap<String, Vec<Vec<(usize, f64)>>>;

/// One metric of every run in the logs.
fn read_logs(paths: &[PathBuf], metric: Metric) -> Result<Runs> {
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
            let Some(value) = field(metric.key())?.as_f64() else {
                continue;
            };
            runs.entry((arm, seed)).or_default().push((epoch, value));
        }
    }
    let mut by_arm: Runs = BTreeMap::new();
    for ((arm, _), run) in runs {
        by_arm.entry(arm).or_default().push(run);
    }
    Ok(by_arm)
}

/// `mean (min to max)` of the finite values (a run without trained epochs has none).
fn spread(values: &[f64]) -> String {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return "-".to_string();
    }
    let mean = finite.iter().sum::<f64>() / finite.len() as f64;
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{mean:.2} ({min:.2} to {max:.2})")
}

/// A Markdown table of the best and the final value of every arm, over its seeds.
fn summary(by_arm: &Runs, metric: Metric) -> String {
    let name = metric.label();
    let mut table =
        format!("| arm | seeds | epochs | best {name} | final {name} |\n|---|---|---|---|---|\n");
    for (arm, runs) in by_arm {
        let trained = |run: &Vec<(usize, f64)>| -> Vec<f64> {
            run.iter()
                .filter(|(epoch, _)| *epoch > 0)
                .map(|r| r.1)
                .collect()
        };
        let best: Vec<f64> = runs
            .iter()
            .map(|run| {
                trained(run)
                    .into_iter()
                    .reduce(|a, b| metric.better(a, b))
                    .unwrap_or(f64::NAN)
            })
            .collect();
        let last: Vec<f64> = runs
            .iter()
            .map(|run| run.last().map_or(f64::NAN, |r| r.1))
            .collect();
        let epochs = runs
            .iter()
            .map(|run| run.last().map_or(0, |r| r.0))
            .min()
            .unwrap_or(0);
        table += &format!(
            "| {arm} | {} | {epochs} | {} | {} |\n",
            runs.len(),
            spread(&best),
            spread(&last)
        );
    }
    table
}

pub fn run(args: PlotArgs) -> Result<()> {
    let by_arm = read_logs(&args.logs, args.metric)?;
    print!("{}", summary(&by_arm, args.metric));
    let curves: Vec<Series> = by_arm
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
            Series {
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
        y_label: args.metric.label(),
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
    };
    write_plot(&args.output, &args.title, &axes, &curves)
        .with_context(|| format!("cannot write the plot {}", args.output.display()))
}
