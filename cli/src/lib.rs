//! The `cs-init` command: its arguments, one module per subcommand, and everything that concerns
//! the whole process (SIGPIPE, the allocator, Ctrl-C, logging, the exit code). The work itself is
//! the library's (`cs_init`) and the job service's (`cs_init_serve`).
//!
//! [`main_from`] is the command's whole `main`, so that two front doors run the same command line:
//! the Rust binary (`src/main.rs`) and the Python package's `cs-init` console script, which calls
//! it in the interpreter's process (python/src/cli.rs).

mod check;
mod inspect;
mod new;
mod output;
mod plan;
mod progress;
mod reproduce;
mod run;
#[cfg_attr(not(feature = "serve"), path = "serve_unavailable.rs")]
mod serve;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use cs_init::device::DeviceChoice;
use cs_init::plan::KernelLayout;
use cs_init::probe::{ProbeNoise, ProbePadding};
use cs_init::run::{CheckedSettings, RunSettings, SettingsError};
use cs_init::Variant;

pub use output::{Exit, UsageError};

const AFTER_HELP: &str = "\
Examples:
  cs-init resnet18                   minimize L_CS of a new ResNet-18 (no file needed)
  cs-init model.safetensors          write model.cs.safetensors + model.cs.report.json
  cs-init plan model.safetensors     which tensors would be optimized, and why
  cs-init inspect model.safetensors  per-layer L_CS, scale-free similarity, |cos|

Exit codes: 0 success; 1 error (nothing written); 2 invalid command line;
3 some layer diverged (output written, those layers keep their input weights).
The math: docs/math.md. Every flag: docs/cli.md.";

/// Minimize the Convolutional Similarity of every conv layer of a checkpoint.
///
/// cs-init reads a checkpoint (safetensors, sharded safetensors, a PyTorch file, a Hugging Face Hub
/// repository, or a built-in architecture), runs --iters steps of an optimizer on the Convolutional Similarity L_CS of each conv weight,
/// one layer at a time, and writes a new checkpoint with every other tensor copied byte for byte,
/// plus a JSON report of each layer's loss curve. On a freshly initialized network L_CS falls by
/// shrinking the filters and their feature maps stay as alike as before; on a trained one they
/// become less alike and the network loses accuracy (docs/reproduction.md). The summary shows the
/// probe's mean feature-map |cos| before and after, and warns when it did not fall.
#[derive(Debug, Parser)]
#[command(name = "cs-init", version, after_help = AFTER_HELP)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    run: run::RunArgs,

    #[command(flatten)]
    global: GlobalArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Dry run: list every tensor, whether it would be optimized, and why. Writes nothing.
    Plan(plan::PlanArgs),
    /// Per-layer metrics of a checkpoint (L_CS, scale-free similarity, kernel cosine). Writes nothing.
    Inspect(inspect::InspectArgs),
    /// Write a freshly initialized checkpoint of a built-in architecture.
    New(new::NewArgs),
    /// Check the fast L_CS engines against the literal definition on a checkpoint's layers.
    Check(check::CheckArgs),
    /// Re-run the paper's 1-D experiments (Tables 1, 3, 6) and print them next to the paper's.
    Reproduce(reproduce::ReproduceArgs),
    /// Run the job service: an HTTP API, a web page, a job store (docs/service.md).
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
    /// Run the job service (not in this build: build with `--features serve`).
    #[cfg(not(feature = "serve"))]
    Serve(serve::Unavailable),
}

/// Options every command takes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Output")]
struct GlobalArgs {
    /// No progress, notes or summary table: only errors, and what the command exists to print
    /// (plan and inspect tables, --json).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,

    /// More log output (-v: debug, -vv: trace), on stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// Which tensors are conv weights to optimize.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Selection")]
struct SelectionArgs {
    /// Only optimize conv weights whose name matches this regex (repeatable).
    #[arg(long, value_name = "REGEX")]
    include: Vec<String>,

    /// Leave conv weights whose name matches this regex alone (repeatable).
    #[arg(long, value_name = "REGEX")]
    exclude: Vec<String>,

    /// Leave 1x1 (pointwise) convs alone.
    #[arg(long)]
    skip_pointwise: bool,

    /// Kernel layout in the file: oihw (PyTorch) or hwio (Keras/Flax).
    #[arg(long, value_enum, default_value_t = LayoutArg::Oihw)]
    layout: LayoutArg,
}

impl SelectionArgs {
    fn apply(&self, settings: &mut RunSettings) {
        settings.include = self.include.clone();
        settings.exclude = self.exclude.clone();
        settings.skip_pointwise = self.skip_pointwise;
        settings.layout = match self.layout {
            LayoutArg::Oihw => KernelLayout::Oihw,
            LayoutArg::Hwio => KernelLayout::Hwio,
        };
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LayoutArg {
    Oihw,
    Hwio,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum VariantArg {
    /// All filter pairs, all channel pairs (the paper's Equation 10).
    Paper,
    /// All filter pairs, same input channel only.
    SameChannel,
    /// Adjacent filters only, all channel pairs.
    Adjacent,
    /// Adjacent filters, same channel (the paper authors' released code).
    AdjacentSameChannel,
}

impl From<VariantArg> for Variant {
    fn from(v: VariantArg) -> Self {
        match v {
            VariantArg::Paper => Variant::Paper,
            VariantArg::SameChannel => Variant::SameChannel,
            VariantArg::Adjacent => Variant::Adjacent,
            VariantArg::AdjacentSameChannel => Variant::AdjacentSameChannel,
        }
    }
}

/// The feature-map probe.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Similarity figures")]
struct ProbeArgs {
    /// Do not measure feature-map similarity (it costs a convolution per layer).
    #[arg(long)]
    no_probe: bool,

    /// Inputs per layer.
    #[arg(long, default_value_t = 4, value_name = "N")]
    probe_batch: u32,

    /// Input size, HxW.
    #[arg(long, default_value = "16x16", value_name = "HxW")]
    probe_size: String,

    /// Use PNG/JPEG images from this folder (resized) instead of noise.
    #[arg(long, value_name = "DIR")]
    probe_images: Option<PathBuf>,

    /// Padding of the probe's convolution (stride 1).
    #[arg(long, value_enum, default_value_t = PaddingArg::Same)]
    probe_padding: PaddingArg,

    /// Noise without --probe-images: uniform U(0,1), the paper's, whose |cos| mostly reflects
    /// each filter's response to the input's mean; or centered U(-1/2,1/2) (the same draws
    /// without their mean), whose |cos| is close to the kernels' own cosine.
    #[arg(long, value_enum, default_value_t = NoiseArg::Uniform)]
    probe_noise: NoiseArg,

    /// The feature-map |cos| of a layer with more filters than N, where every pair would cost
    /// more than about 5 ms, is estimated on N of them, corrected by each filter's response to
    /// the input's mean (the same filters before and after; inspect marks it ~): per layer
    /// within about 0.004 of every pair's figure. 0 measures every pair.
    #[arg(long, default_value_t = cs_init::run::DEFAULT_PROBE_SAMPLE, value_name = "N")]
    probe_sample: u32,

    /// The kernel |cos| of a layer with more filters than N is estimated on N of them (the same
    /// ones before and after; inspect marks it ~), since over every pair its cost grows with
    /// the square of the filters. 0 measures every pair.
    #[arg(long, default_value_t = cs_init::run::DEFAULT_KERNEL_COSINE_SAMPLE, value_name = "N")]
    kernel_cosine_sample: u32,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum NoiseArg {
    Uniform,
    Centered,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PaddingArg {
    Same,
    Valid,
    Full,
}

impl ProbeArgs {
    fn apply(&self, settings: &mut RunSettings) {
        settings.probe = !self.no_probe;
        settings.probe_batch = self.probe_batch;
        settings.probe_size = self.probe_size.clone();
        settings.probe_images = self.probe_images.clone();
        settings.kernel_cosine_sample = self.kernel_cosine_sample;
        settings.probe_sample = self.probe_sample;
        settings.probe_padding = match self.probe_padding {
            PaddingArg::Same => ProbePadding::Same,
            PaddingArg::Valid => ProbePadding::Valid,
            PaddingArg::Full => ProbePadding::Full,
        };
        settings.probe_noise = match self.probe_noise {
            NoiseArg::Uniform => ProbeNoise::Uniform,
            NoiseArg::Centered => ProbeNoise::Centered,
        };
    }
}

/// Where and how to compute.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Execution")]
struct ExecutionArgs {
    /// Device: auto (best compiled-in device that works), cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    device: DeviceChoice,

    /// CPU threads (default: all cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
}

impl ExecutionArgs {
    /// Opens the device, printing the notice of a fallback to the CPU unless `quiet`.
    fn open_device(&self, quiet: bool) -> anyhow::Result<candle_core::Device> {
        let opened = self.device.open()?;
        if let (Some(notice), false) = (&opened.notice, quiet) {
            eprintln!("cs-init: {notice}");
        }
        Ok(opened.device)
    }

    /// Runs `f` with `--threads` threads.
    fn with_threads<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        Ok(cs_init::run::with_threads(
            self.threads.map(usize::from),
            f,
        )?)
    }
}

/// Checks settings built from the command line; a bad one is a usage error (exit code 2) that
/// names the flag.
fn check_settings(settings: &RunSettings) -> anyhow::Result<CheckedSettings> {
    Ok(settings.check().map_err(usage)?)
}

/// A settings error as the command line's usage error, named by its flag.
fn usage(e: SettingsError) -> UsageError {
    let flag = match e.field {
        "probe" => "--no-probe".to_string(),
        field => format!("--{}", field.replace('_', "-")),
    };
    UsageError(format!("{flag}: {}", e.message))
}

/// Parses `args` (the program's name first, as `std::env::args_os` gives it) and runs the command,
/// returning its exit code (docs/cli.md). It takes over the process as a command's `main` does:
/// SIGPIPE's default disposition, a Ctrl-C handler that exits, a global logger; so it is for a
/// process that exists to run the command (a binary, a console script), not for a library's
/// caller. `--help`, `--version` and a command line that does not parse exit the process from
/// inside, as clap does.
pub fn main_from(args: impl IntoIterator<Item = OsString>) -> u8 {
    // Like other Unix tools, end quietly when the reader of stdout goes away (`cs-init plan | head`)
    // instead of panicking on the write.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    cs_init::run::keep_freed_memory();
    let args: Vec<OsString> = args.into_iter().collect();
    // The report's record of the command as typed (the console script's own process is `python`).
    let command_line = args
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let cli = Cli::parse_from(args);
    let serving = cfg!(feature = "serve") && matches!(cli.command, Some(Command::Serve(_)));
    init_tracing(&cli.global, serving);
    // The service stops gracefully on its own signal handlers instead.
    if !serving {
        ctrlc::set_handler(|| {
            cs_init::checkpoint::remove_pending_outputs();
            eprintln!("cs-init: interrupted; no output was written");
            std::process::exit(130);
        })
        .ok();
    }
    let quiet = cli.global.quiet;
    let result = match cli.command {
        Some(Command::Plan(args)) => plan::run(args),
        Some(Command::Inspect(args)) => inspect::run(args, quiet),
        Some(Command::New(args)) => new::run(args, quiet),
        Some(Command::Check(args)) => check::run(args, quiet),
        Some(Command::Reproduce(args)) => reproduce::run(args, quiet),
        Some(Command::Serve(args)) => serve::run(args),
        None => run::run(cli.run, quiet, command_line),
    };
    match result {
        Ok(exit) => exit.status(),
        Err(e) if is_usage(&e) => {
            eprintln!("cs-init: error: {e:#}\n\nFor more information, try '--help'.");
            Exit::Usage.status()
        }
        Err(e) => {
            eprintln!("cs-init: error: {e:#}");
            Exit::Error.status()
        }
    }
}

fn is_usage(e: &anyhow::Error) -> bool {
    e.downcast_ref::<UsageError>().is_some()
        || matches!(
            e.downcast_ref::<cs_init::run::RunError>(),
            Some(cs_init::run::RunError::Settings(_))
        )
}

/// Logs on stderr: warnings for a command, what happens to each job for the service.
fn init_tracing(global: &GlobalArgs, serving: bool) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) if serving => "info",
        (false, 0) => "warn",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CS_INIT_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("cs_init={level},cs_init_serve={level}"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init()
        // A process that runs the command twice (a console script's test) keeps its first logger.
        .ok();
}

/// How PyTorch checkpoint files are read.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "PyTorch input (.pth, .pt, .bin, .th)")]
struct PthArgs {
    /// The top-level entry holding the state dict [default: the file itself, else state_dict,
    /// model_state_dict, model, ...].
    #[arg(long, value_name = "NAME")]
    key: Option<String>,

    /// Remove this prefix from tensor names [default: a `module.` prefix that every name has].
    #[arg(long, value_name = "PREFIX")]
    strip_prefix: Option<String>,
}

impl PthArgs {
    fn apply(&self, settings: &mut RunSettings) {
        settings.key = self.key.clone();
        settings.strip_prefix = self.strip_prefix.clone();
    }
}

/// INPUT as given on the command line.
fn input_text(input: &Option<PathBuf>) -> anyhow::Result<String> {
    input
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow::anyhow!("INPUT is required"))
}

/// Resolves INPUT as given on the command line.
fn resolve_input(
    input: &Option<PathBuf>,
    settings: &CheckedSettings,
    progress: bool,
) -> anyhow::Result<cs_init::input::Input> {
    let options = cs_init::input::ResolveOptions {
        progress,
        cache_only: false,
        pth: settings.pth.clone(),
    };
    Ok(cs_init::input::Input::resolve(
        &input_text(input)?,
        &options,
    )?)
}
