//! The main job: decorrelate every selected conv layer and write the checkpoint and the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::output::{print_json, Exit, UsageError};
use super::progress::Progress;
use super::{device, resolve_input, ExecutionArgs, ProbeArgs, PthArgs, SelectionArgs, VariantArg};
use crate::checkpoint::{index_json, Input, OutputDir, OutputFile, INDEX_FILE};
use crate::minimize::{Engine, Settings};
use crate::optim::{AdamConfig, OptimizerConfig, SgdConfig};
use crate::pipeline::{items, process, Job};
use crate::plan::plan;
use crate::report::plot::{render, Curve as PlotCurve, PlotFormat};
use crate::report::{layer_table, LayerReport, Status, Totals, SCHEMA_VERSION};
use crate::sharding::Sharding;

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

    /// Rescale every filter to its starting norm after each step, so L_CS cannot fall by shrinking.
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
    #[arg(long, value_name = "SIZE", value_parser = crate::sharding::parse_size)]
    max_shard_size: Option<usize>,

    /// Print a machine-readable summary (JSON) on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

/// The settings as recorded in the report.
#[derive(Debug, Serialize)]
struct RunSettings<'a> {
    #[serde(flatten)]
    settings: &'a Settings,
    seed: u64,
    device: String,
    engine: &'static str,
    layout: crate::plan::KernelLayout,
    probe: Option<&'a crate::probe::ProbeSettings>,
}

/// The JSON report.
#[derive(Debug, Serialize)]
struct Report<'a> {
    schema_version: u32,
    tool: &'static str,
    version: &'static str,
    command_line: String,
    input: String,
    /// What reading the input changed (a PyTorch file's key, stripped prefix, dropped entries).
    input_notes: Vec<String>,
    output: String,
    settings: RunSettings<'a>,
    totals: Totals,
    layers: Vec<LayerReport>,
}

pub fn run(args: RunArgs, quiet: bool) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let settings = settings(&args.optimization)?;
    args.execution.apply_threads()?;
    let input = resolve_input(&args.input, &args.pth, !quiet)?;
    let opened = input.open(args.seed)?;
    if !quiet && !args.output.json {
        for note in &opened.notes {
            eprintln!("cs-init: {note}");
        }
    }
    let files = &opened.files;
    let selection = args.selection.selection();
    let plans: Vec<_> = files
        .iter()
        .map(|f| plan(f.tensors(), &selection))
        .collect();
    let selected = plans.iter().flatten().filter(|e| e.optimize).count();
    ensure_conv_layers(
        selected,
        plans.iter().flatten().map(|e| e.name.as_str()),
        &input.describe(),
    )?;
    let sharding = Sharding::choose(files, input.index(), args.output.max_shard_size);
    let sharded = matches!(sharding, Sharding::Shards(_));
    let output = output_path(&input, args.output.output.as_deref(), sharded)?;
    let report_path = args
        .output
        .report
        .clone()
        .unwrap_or_else(|| default_report(&output));
    check_paths(
        &input,
        &output,
        &report_path,
        args.output.plot.as_deref(),
        args.output.force,
    )?;
    // The report and the plot are started now, so that an unwritable path fails before the work
    // rather than after the checkpoint is in place.
    let mut report_out = OutputFile::create(&report_path, args.output.force)?;
    let plot_out = args
        .output
        .plot
        .as_deref()
        .map(|p| OutputFile::create(p, args.output.force))
        .transpose()?;

    let device = args.execution.device.open(quiet)?;
    let job = Job {
        settings: settings.clone(),
        engine: Engine::Auto,
        device: device.clone(),
        layout: selection.layout,
        probe: args.probe.probe(args.seed, &device)?,
    };
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let provenance = provenance(&settings, args.seed, &command_line);
    let metadata = merged_metadata(files[0].metadata(), &provenance);
    let mut progress = Progress::new(quiet || args.output.json);
    let items = items(files, &plans);
    let mut position = (0, selected);
    let layers = match &sharding {
        Sharding::Single => {
            let out = OutputFile::create(&output, args.output.force)?;
            let (out, layers) = process(
                &items,
                &job,
                Some(&metadata),
                out,
                &mut position,
                &mut progress,
            )?;
            out.commit()?;
            layers
        }
        Sharding::Shards(shards) => {
            let index_metadata = input
                .index()
                .map(|i| i.metadata().clone())
                .unwrap_or_default();
            let dir = OutputDir::create(&output, args.output.force)?;
            let mut layers = Vec::new();
            let mut weight_map = BTreeMap::new();
            for shard in shards {
                let group = &items[shard.tensors.clone()];
                // Each shard keeps its own input file's metadata, plus the provenance.
                let metadata =
                    merged_metadata(group.first().and_then(|i| i.file.metadata()), &provenance);
                let out = dir.file(&shard.name)?;
                let (out, shard_layers) = process(
                    group,
                    &job,
                    Some(&metadata),
                    out,
                    &mut position,
                    &mut progress,
                )?;
                dir.finish(out, &shard.name)?;
                layers.extend(shard_layers);
                weight_map.extend(
                    group
                        .iter()
                        .map(|i| (i.tensor.name.clone(), shard.name.clone())),
                );
            }
            // Dtypes and shapes are unchanged, so the total size is the input's.
            let total_size = items.iter().map(|i| i.tensor.end - i.tensor.begin).sum();
            let mut index_file = dir.file(INDEX_FILE)?;
            std::io::Write::write_all(
                &mut index_file,
                index_json(&index_metadata, &weight_map, total_size).as_bytes(),
            )?;
            dir.finish(index_file, INDEX_FILE)?;
            dir.commit()?;
            layers
        }
    };
    let tensors = items.len();
    progress.finish();

    let mut totals = Totals::from_layers(tensors, &layers);
    totals.total_seconds = started.elapsed().as_secs_f64();
    totals.peak_memory_bytes = crate::report::peak_memory_bytes();
    let report = Report {
        schema_version: SCHEMA_VERSION,
        tool: "cs-init",
        version: env!("CARGO_PKG_VERSION"),
        command_line,
        input: input.describe(),
        input_notes: opened.notes.clone(),
        output: output.display().to_string(),
        settings: RunSettings {
            settings: &settings,
            seed: args.seed,
            device: device::describe(&device),
            engine: if device.is_cpu() { "fused" } else { "portable" },
            layout: job.layout,
            probe: job.probe.as_ref().map(|p| p.settings()),
        },
        totals,
        layers,
    };
    let report_text = serde_json::to_string_pretty(&report)? + "\n";
    std::io::Write::write_all(&mut report_out, report_text.as_bytes())
        .with_context(|| report_path.display().to_string())?;
    report_out.commit()?;
    if let (Some(mut plot_out), Some(plot)) = (plot_out, &args.output.plot) {
        let curves: Vec<PlotCurve> = report
            .layers
            .iter()
            .filter_map(|l| {
                l.curve.as_ref().map(|c| PlotCurve {
                    label: l.name.clone(),
                    points: c
                        .iteration
                        .iter()
                        .zip(&c.loss)
                        .map(|(&i, &y)| (i as f64, y))
                        .collect(),
                })
            })
            .collect();
        let format = PlotFormat::from_path(plot).expect("checked with the other paths");
        let bytes = render(
            format,
            &format!("L_CS per layer: {}", input.describe()),
            &curves,
        );
        std::io::Write::write_all(&mut plot_out, &bytes)
            .with_context(|| format!("writing the plot {}", plot.display()))?;
        plot_out.commit()?;
    }

    if args.output.json {
        print_json(&summary(&report, &report_path)?)?;
    } else if !quiet {
        print!("{}", layer_table(&report.layers));
        println!(
            "\n{} of {} conv tensors optimized ({} skipped, {} diverged) in {:.2} s; total L_CS {:.4e} -> {:.4e}",
            report.totals.optimized,
            report.totals.conv_tensors,
            report.totals.skipped,
            report.totals.diverged,
            report.totals.total_seconds,
            report.totals.loss_before,
            report.totals.loss_after
        );
        println!("wrote {} and {}", output.display(), report_path.display());
    }
    Ok(if report.totals.diverged > 0 {
        Exit::Diverged
    } else {
        Exit::Success
    })
}

fn settings(args: &OptimizationArgs) -> anyhow::Result<Settings> {
    let optimizer = match args.optimizer {
        OptimizerArg::Adam => {
            if args.momentum.is_some() {
                return Err(UsageError("--momentum applies to --optimizer sgd only".into()).into());
            }
            OptimizerConfig::Adam(AdamConfig {
                lr: args.lr,
                ..AdamConfig::default()
            })
        }
        OptimizerArg::Sgd => OptimizerConfig::Sgd(SgdConfig {
            lr: args.lr,
            momentum: args.momentum.unwrap_or(0.0),
        }),
    };
    optimizer
        .validate()
        .map_err(|e| UsageError(format!("{e} (from --lr/--momentum)")))?;
    Ok(Settings {
        variant: args.variant.into(),
        iterations: args.iters,
        optimizer,
        keep_norm: args.keep_norm,
    })
}

fn ensure_conv_layers<'a>(
    selected: usize,
    names: impl Iterator<Item = &'a str>,
    origin: &str,
) -> anyhow::Result<()> {
    if selected > 0 {
        return Ok(());
    }
    let names: Vec<&str> = names.collect();
    let shown = names
        .iter()
        .take(12)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let more = if names.len() > 12 {
        format!(", ... ({} in all)", names.len())
    } else {
        String::new()
    };
    bail!(
        "{origin}: no conv layer to optimize among its {} tensors ({shown}{more}); `cs-init plan` shows why each was left out",
        names.len()
    )
}

/// Provenance keys added to `__metadata__`.
fn provenance(settings: &Settings, seed: u64, command_line: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("cs_init.version".into(), env!("CARGO_PKG_VERSION").into());
    m.insert("cs_init.variant".into(), settings.variant.to_string());
    m.insert("cs_init.iters".into(), settings.iterations.to_string());
    m.insert("cs_init.lr".into(), settings.optimizer.lr().to_string());
    m.insert("cs_init.optimizer".into(), settings.optimizer.name().into());
    if let OptimizerConfig::Sgd(c) = settings.optimizer {
        m.insert("cs_init.momentum".into(), c.momentum.to_string());
    }
    m.insert("cs_init.keep_norm".into(), settings.keep_norm.to_string());
    m.insert("cs_init.seed".into(), seed.to_string());
    m.insert("cs_init.command".into(), command_line.into());
    m
}

fn merged_metadata(
    input: Option<&BTreeMap<String, String>>,
    provenance: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut m = input.cloned().unwrap_or_default();
    m.extend(provenance.iter().map(|(k, v)| (k.clone(), v.clone())));
    m
}

/// `<stem>.cs.safetensors` beside a file input, `<dir>.cs` beside a sharded one, `<arch>.cs.safetensors` here.
fn output_path(input: &Input, explicit: Option<&Path>, sharded: bool) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let file = match input {
        Input::Sharded(_) | Input::Hub(..) => None,
        Input::File(path) | Input::Pth(path, _) => Some(path.clone()),
        Input::BuiltIn(arch) => Some(PathBuf::from(format!("{arch}.safetensors"))),
    };
    if let (true, Some(path)) = (sharded, file) {
        // A single file split into shards: `model.safetensors` -> `model.cs/`.
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = name.split('.').next().unwrap_or("model").to_string();
        return Ok(path.with_file_name(format!("{stem}.cs")));
    }
    Ok(match input {
        Input::File(path) => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let stem = name.strip_suffix(".safetensors").unwrap_or(&name);
            path.with_file_name(format!("{stem}.cs.safetensors"))
        }
        // model.pth -> model.cs.safetensors: the output is always safetensors.
        Input::Pth(path, _) => path.with_extension("cs.safetensors"),
        Input::Sharded(index) => {
            let dir = index
                .dir()
                .canonicalize()
                .with_context(|| index.dir().display().to_string())?;
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into());
            // A sharded input merged into one file (a large --max-shard-size) gets a file name.
            let suffix = if sharded { "cs" } else { "cs.safetensors" };
            dir.with_file_name(format!("{name}.{suffix}"))
        }
        Input::BuiltIn(arch) => PathBuf::from(format!("{arch}.cs.safetensors")),
        // Never beside the input: that is the Hub cache.
        Input::Hub(source, _) if sharded => PathBuf::from(format!("{}.cs", source.name())),
        Input::Hub(source, _) => PathBuf::from(format!("{}.cs.safetensors", source.name())),
    })
}

fn default_report(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".safetensors").unwrap_or(&name);
    output.with_file_name(format!("{stem}.report.json"))
}

/// Refuses outputs that would overwrite the input or each other, or existing files without --force.
fn check_paths(
    input: &Input,
    output: &Path,
    report: &Path,
    plot: Option<&Path>,
    force: bool,
) -> anyhow::Result<()> {
    // Existing paths are resolved completely (symlinks included); new ones through their parent.
    let canonical = |p: &Path| -> PathBuf {
        if let Ok(full) = p.canonicalize() {
            return full;
        }
        let parent = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match (parent.canonicalize(), p.file_name()) {
            (Ok(dir), Some(name)) => dir.join(name),
            _ => p.to_path_buf(),
        }
    };
    let outputs: Vec<(&str, &Path)> = [
        ("output", Some(output)),
        ("report", Some(report)),
        ("plot", plot),
    ]
    .into_iter()
    .filter_map(|(what, p)| p.map(|p| (what, p)))
    .collect();
    if let Some(input_path) = input.path() {
        let input_path = canonical(input_path);

        for (what, p) in &outputs {
            let p = canonical(p);
            if p == input_path
                || input_path.starts_with(&p)
                || (p.starts_with(&input_path) && input_path.is_dir())
            {
                bail!("the {what} path {} would overwrite the input; choose another with -o/--report/--plot", p.display());
            }
        }
    }
    for (i, (a, pa)) in outputs.iter().enumerate() {
        for (b, pb) in &outputs[i + 1..] {
            if canonical(pa) == canonical(pb) {
                bail!(
                    "the {a} and the {b} would both be written to {}",
                    pa.display()
                );
            }
        }
    }
    if let Some(plot) = plot {
        if PlotFormat::from_path(plot).is_none() {
            bail!(
                "--plot {}: expected a .svg or .png file name",
                plot.display()
            );
        }
    }
    if !force {
        for (what, p) in &outputs {
            if p.exists() {
                bail!(
                    "the {what} {} already exists; pass --force to overwrite it",
                    p.display()
                );
            }
        }
    }
    Ok(())
}

/// The report without loss curves, plus where the files are.
fn summary(report: &Report, report_path: &Path) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(report)?;
    if let Some(layers) = value.get_mut("layers").and_then(|l| l.as_array_mut()) {
        for layer in layers {
            if let Some(obj) = layer.as_object_mut() {
                obj.remove("curve");
            }
        }
    }
    value["report"] = serde_json::Value::String(report_path.display().to_string());
    let diverged = report
        .layers
        .iter()
        .filter(|l| l.status == Status::Diverged)
        .count();
    value["exit_code"] = serde_json::json!(if diverged > 0 { 3 } else { 0 });
    Ok(value)
}
