//! The main job: minimize L_CS of every selected conv layer and write the checkpoint and the report.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::output::{print_json, Exit};
use super::progress::Progress;
use super::{
    check_settings, input_text, ExecutionArgs, ProbeArgs, PthArgs, SelectionArgs, VariantArg,
};
use cs_init::report::layer_table;
use cs_init::run::{prepare, Destination, Execution, InputAccess, OptimizerName, RunSettings};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A .safetensors file, a sharded checkpoint (its directory or its model.safetensors.index.json),
    /// a PyTorch file (.pth/.pt/.bin/.th), hf://OWNER/NAME[@REV][/PATH], or a built-in
    /// architecture: cnn1, cnn2, resnet18, resnet50.
    #[arg(value_name = "INPUT", required = true)]
    input: Option<PathBuf>,

    #[command(flatten)]
    optimization: OptimizationArgs,

    #[command(flatten)]
    output: OutputArgs,

    #[command(flatten)]
    selection: SelectionArgs,

    #[command(flatten)]
    pth: PthArgs,

    #[command(flatten)]
    execution: ExecutionArgs,

    #[command(flatten)]
    probe: ProbeArgs,

    /// Seed of the initialization when INPUT is a built-in architecture, and of the probe's inputs.
    #[arg(long, default_value_t = 0, help_heading = "Execution")]
    seed: u64,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Optimization")]
struct OptimizationArgs {
    /// Optimizer iterations per conv layer.
    #[arg(long, default_value_t = 200, value_name = "N")]
    iters: usize,

    /// Learning rate.
    #[arg(long, default_value_t = 1e-3, value_name = "X")]
    lr: f64,

    /// Optimizer, with PyTorch's semantics (Adam: betas 0.9/0.999, eps 1e-8).
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam)]
    optimizer: OptimizerArg,

    /// Momentum for --optimizer sgd (PyTorch's formula; 0 disables it).
    #[arg(long, value_name = "M")]
    momentum: Option<f64>,

    /// Which kernel pairs L_CS sums over.
    #[arg(long, value_enum, default_value_t = VariantArg::Paper)]
    variant: VariantArg,

    /// Rescale every filter to its starting norm after each step, so L_CS cannot fall by
    /// shrinking (on a fresh network it then barely falls; long runs turn filters into spikes).
    #[arg(long)]
    keep_norm: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OptimizerArg {
    Adam,
    Sgd,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Output")]
struct OutputArgs {
    /// Output checkpoint [default: <stem>.cs.safetensors beside the input; a directory for sharded input].
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,

    /// JSON report [default: beside the output, <output stem>.report.json].
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,

    /// Also draw every layer's loss curve (log scale) to this .svg or .png file.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,

    /// Overwrite existing output, report and plot files.
    #[arg(long)]
    force: bool,

    /// Split the output into shards of at most this size (e.g. 5GB, 500MiB), with an index
    /// [default: keep the input's sharding].
    #[arg(long, value_name = "SIZE")]
    max_shard_size: Option<String>,

    /// Print a machine-readable summary (JSON) on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

impl RunArgs {
    /// The run's settings, as the service's `settings` object would give them.
    fn settings(&self) -> RunSettings {
        let o = &self.optimization;
        let mut settings = RunSettings {
            iters: o.iters,
            lr: o.lr,
            optimizer: match o.optimizer {
                OptimizerArg::Adam => OptimizerName::Adam,
                OptimizerArg::Sgd => OptimizerName::Sgd,
            },
            momentum: o.momentum,
            variant: o.variant.into(),
            keep_norm: o.keep_norm,
            seed: self.seed,
            max_shard_size: self.output.max_shard_size.clone(),
            ..RunSettings::default()
        };
        self.selection.apply(&mut settings);
        self.pth.apply(&mut settings);
        self.probe.apply(&mut settings);
        settings
    }
}

pub fn run(args: RunArgs, quiet: bool, command_line: String) -> anyhow::Result<Exit> {
    let settings = args.settings();
    check_settings(&settings)?;
    let shown = !quiet && !args.output.json;
    let access = InputAccess {
        progress: !quiet,
        cache_only: false,
    };
    let prepared = prepare(&input_text(&args.input)?, &settings, &access)?;
    if shown {
        for note in prepared.notes() {
            eprintln!("cs-init: {note}");
        }
    }
    let execution = Execution {
        destination: Destination {
            checkpoint: args.output.output.clone(),
            report: args.output.report.clone(),
            plot: args.output.plot.clone(),
            force: args.output.force,
        },
        device: args.execution.open_device(quiet)?,
        command_line,
        input_label: None,
    };
    let mut progress = Progress::new(quiet || args.output.json);
    let outcome = args
        .execution
        .with_threads(|| prepared.execute(&execution, &mut progress))??;
    progress.finish();

    let report = &outcome.report;
    if args.output.json {
        let mut summary = report.summary();
        summary["report"] = outcome.report_path.display().to_string().into();
        summary["exit_code"] = serde_json::json!(if outcome.diverged() { 3 } else { 0 });
        print_json(&summary)?;
    } else if !quiet {
        print!("{}", layer_table(&report.layers));
        println!(
            "\n{} of {} conv tensors optimized ({} skipped, {} diverged) in {:.2} s (minimizing {:.2} s, probe {:.2} s, metrics {:.2} s); total L_CS {:.4e} -> {:.4e}",
            report.totals.optimized,
            report.totals.conv_tensors,
            report.totals.skipped,
            report.totals.diverged,
            report.totals.total_seconds,
            report.totals.optimize_seconds,
            report.totals.probe_seconds,
            report.totals.metrics_seconds,
            report.totals.loss_before,
            report.totals.loss_after
        );
        let totals = &report.totals;
        if let (Some(before), Some(after)) =
            (totals.feature_cosine_before, totals.feature_cosine_after)
        {
            println!(
                "mean feature-map |cos| (probe) {before:.3} -> {after:.3} over {} layers; mean filter norm ratio {:.3}",
                totals.feature_cosine_layers,
                totals.norm_ratio_mean.unwrap_or(f64::NAN)
            );
        }
        for warning in &totals.warnings {
            eprintln!("cs-init: warning: {warning}");
        }
        println!(
            "wrote {} and {}",
            outcome.checkpoint.display(),
            outcome.report_path.display()
        );
    }
    Ok(if outcome.diverged() {
        Exit::Diverged
    } else {
        Exit::Success
    })
}
