//! `models study`: the feature-map similarity study (docs/reproduction.md, "Does minimizing L_CS
//! decorrelate feature maps?").

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use cs_init::probe::ProbePadding;
use cs_init::Variant;

use crate::data::{Source, Split};
use crate::study::report::{
    accuracy_table, identity_table, read_lines, runs_table, start_table, write_plots,
};
use crate::study::{export_images, identity_check, sweep, ImageData, Subject, SweepConfig};

#[derive(Subcommand)]
pub enum StudyCommand {
    /// Run a grid of cs-init settings on one network and write one JSON line per run.
    Sweep(SweepArgs),
    /// Check the probe's inner products against Equation 3 on the sweep's inputs (JSON lines).
    Identity(IdentityArgs),
    /// Print Markdown tables of sweep records and write their plots.
    Report(ReportArgs),
    /// Write CIFAR-10 test images as PNG files, drawn evenly from the classes, for
    /// `cs-init --probe-images`.
    Images(ImagesArgs),
}

impl StudyCommand {
    pub fn run(self) -> Result<()> {
        match self {
            StudyCommand::Sweep(args) => run_sweep(args),
            StudyCommand::Identity(args) => run_identity(args),
            StudyCommand::Report(args) => run_report(args),
            StudyCommand::Images(args) => run_images(args),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// cs-init's default: filters may shrink.
    Plain,
    /// `--keep-norm`.
    KeepNorm,
}

/// The network, the data and the grid, shared by `sweep` and `identity`.
#[derive(Args)]
pub struct GridArgs {
    #[arg(long, value_enum)]
    subject: Subject,
    /// The pretrained network's safetensors checkpoint (resnet20-pretrained).
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// CIFAR-10 (binary batches, image folders or their .tar.gz): probe images and accuracy.
    #[arg(long, value_name = "PATH")]
    data: PathBuf,
    /// Where a decoded .tar.gz is cached [default: $XDG_CACHE_HOME/cs-init/cifar10].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    #[arg(long, value_delimiter = ',', default_value = "0")]
    seeds: Vec<u64>,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "paper,adjacent-same-channel"
    )]
    variants: Vec<Variant>,
    /// Adam learning rates.
    #[arg(long, value_delimiter = ',', default_value = "1e-4,1e-3,1e-2,1e-1")]
    lrs: Vec<f64>,
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "plain,keep-norm"
    )]
    modes: Vec<Mode>,
    #[arg(long, value_delimiter = ',', default_value = "0,10,50,200,1000,5000")]
    iters: Vec<usize>,
    /// Probe inputs per layer (noise draws, and CIFAR-10 test images).
    #[arg(long, default_value_t = 16)]
    probe_batch: usize,
    /// Side of the probe's square inputs.
    #[arg(long, default_value_t = 32)]
    probe_size: usize,
}

#[derive(Args)]
pub struct SweepArgs {
    #[command(flatten)]
    grid: GridArgs,
    /// Measure the test accuracy of every run, with BatchNorm's stored statistics and after
    /// re-estimating them (resnet20-pretrained).
    #[arg(long)]
    accuracy: bool,
    /// Test images of the accuracy, drawn evenly from the classes.
    #[arg(long, default_value_t = 1000)]
    test_images: usize,
    /// Training images BatchNorm's statistics are re-estimated from.
    #[arg(long, default_value_t = 1000)]
    recalibration_images: usize,
    /// Write the records here (and print them).
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
}

#[derive(Args)]
pub struct IdentityArgs {
    #[command(flatten)]
    grid: GridArgs,
    /// Probe inputs per layer to check.
    #[arg(long, default_value_t = 2)]
    inputs_per_layer: usize,
    /// Leave out layers wider than this (C·kh·kw): the check costs S·(C·kh·kw)² per input.
    #[arg(long, default_value_t = 2304)]
    max_width: usize,
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
}

#[derive(Args)]
pub struct ReportArgs {
    /// Records written by `study sweep`.
    #[arg(required = true)]
    records: Vec<PathBuf>,
    /// Records written by `study identity`.
    #[arg(long, value_name = "FILE")]
    identity: Vec<PathBuf>,
    /// Write the plots into this directory.
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
    /// Write each plot as PNG as well as SVG.
    #[arg(long)]
    png: bool,
}

#[derive(Args)]
pub struct ImagesArgs {
    /// CIFAR-10 (binary batches, image folders or their .tar.gz).
    #[arg(long, value_name = "PATH")]
    data: PathBuf,
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    count: usize,
    /// The folder to write `<class>/<index>.png` into.
    #[arg(long, short, value_name = "DIR")]
    output: PathBuf,
}

fn source(data: &PathBuf, cache_dir: &Option<PathBuf>) -> Source {
    let mut source = Source::new(data);
    if let Some(dir) = cache_dir {
        source.cache_dir = dir.clone();
    }
    source
}

impl GridArgs {
    fn config(&self, accuracy: Option<(usize, usize)>) -> Result<SweepConfig> {
        if self.probe_batch == 0 || self.probe_size == 0 {
            bail!("--probe-batch and --probe-size must be at least 1");
        }
        if self.seeds.is_empty() || self.iters.is_empty() {
            bail!("--seeds and --iters need at least one value");
        }
        let source = source(&self.data, &self.cache_dir);
        let test = source.load(Split::Test)?;
        let (test_images, recalibration) = match accuracy {
            Some((tests, recalibrations)) => (
                test.balanced_subset(tests),
                source.load(Split::Train)?.balanced_subset(recalibrations),
            ),
            None => (test.balanced_subset(0), test.balanced_subset(0)),
        };
        Ok(SweepConfig {
            subject: self.subject,
            checkpoint: self.checkpoint.clone(),
            images: ImageData {
                probe: test.balanced_subset(self.probe_batch),
                test: test_images,
                recalibration,
            },
            seeds: self.seeds.clone(),
            variants: self.variants.clone(),
            learning_rates: self.lrs.clone(),
            keep_norm: self.modes.iter().map(|&m| m == Mode::KeepNorm).collect(),
            iterations: self.iters.clone(),
            probe_batch: self.probe_batch,
            probe_size: self.probe_size,
            accuracy: accuracy.is_some(),
        })
    }
}

/// `value` with every fractional number rounded to 6 significant digits: the records are
/// committed, and 17 digits of a mean over a few layers are noise.
fn rounded(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) if !(n.is_u64() || n.is_i64()) => n
            .as_f64()
            .and_then(|x| format!("{x:.5e}").parse::<f64>().ok())
            .map_or(Value::Number(n), Value::from),
        Value::Array(items) => Value::Array(items.into_iter().map(rounded).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, rounded(v))).collect())
        }
        other => other,
    }
}

/// Opens `path` for writing, naming it in the error.
fn create(path: &PathBuf) -> Result<std::fs::File> {
    std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))
}

fn run_sweep(args: SweepArgs) -> Result<()> {
    let accuracy = args
        .accuracy
        .then_some((args.test_images, args.recalibration_images));
    let config = args.grid.config(accuracy)?;
    let mut file = create(&args.output)?;
    sweep(&config, &mut |record| {
        let line = serde_json::to_string(&rounded(serde_json::to_value(record)?))?;
        writeln!(file, "{line}")?;
        file.flush()?;
        let uniform = record.probe.get("uniform/same");
        eprintln!(
            "{} seed {} {} lr {} keep-norm {} iters {}: L_CS {:+.1} %, norm ratio {:.3}, |cos| (uniform, same) {}, {:.1} s",
            record.subject,
            record.seed,
            record.variant,
            record.lr.map_or("-".into(), |lr| format!("{lr:.0e}")),
            record.keep_norm.map_or("-".into(), |k| k.to_string()),
            record.iters,
            -record.loss_reduction,
            record.norm_ratio,
            uniform.map_or("-".into(), |p| format!("{:.3} -> {:.3}", p.cosine_before, p.cosine_after)),
            record.seconds
        );
        Ok(())
    })
}

fn run_identity(args: IdentityArgs) -> Result<()> {
    let config = args.grid.config(None)?;
    let mut file = create(&args.output)?;
    for record in identity_check(&config, args.inputs_per_layer, args.max_width)? {
        let line = serde_json::to_string(&rounded(serde_json::to_value(&record)?))?;
        println!("{line}");
        writeln!(file, "{line}")?;
    }
    Ok(())
}

fn run_report(args: ReportArgs) -> Result<()> {
    let records = read_lines(&args.records)?;
    println!("### Starting figures\n\n{}", start_table(&records));
    for padding in [ProbePadding::Same, ProbePadding::Full, ProbePadding::Valid] {
        println!(
            "\n### Runs, {} padding\n{}",
            crate::study::padding_name(padding),
            runs_table(&records, padding)
        );
    }
    if records.iter().any(|r| r.accuracy.is_some()) {
        println!("\n### Test accuracy\n\n{}", accuracy_table(&records));
    }
    if !args.identity.is_empty() {
        println!(
            "\n### Equation 3\n\n{}",
            identity_table(&read_lines(&args.identity)?)
        );
    }
    if let Some(dir) = &args.plots {
        let extensions: &[&str] = if args.png { &["svg", "png"] } else { &["svg"] };
        let written = write_plots(&records, dir, extensions)?;
        eprintln!("{} plots in {}", written.len(), dir.display());
    }
    Ok(())
}

fn run_images(args: ImagesArgs) -> Result<()> {
    let test = source(&args.data, &args.cache_dir).load(Split::Test)?;
    let images = test.balanced_subset(args.count);
    export_images(&images, &args.output)?;
    eprintln!("{} images in {}", images.len(), args.output.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn rounding_keeps_six_significant_digits_and_integers() {
        let value = serde_json::json!({"a": [0.123456789, 12345678.9, 3], "b": {"c": -1.0e-9}});
        assert_eq!(
            super::rounded(value),
            serde_json::json!({"a": [0.123457, 12345700.0, 3], "b": {"c": -1.0e-9}})
        );
    }
}
