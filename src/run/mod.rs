//! One run of the main job, the same for every front door (the command line, the service):
//! settings and input → plan → per-layer engine → writer → report.
//!
//! ```no_run
//! use cs_init::run::{prepare, Destination, Execution, InputAccess, RunSettings, Silent};
//!
//! let settings = RunSettings { iters: 200, ..RunSettings::default() };
//! let prepared = prepare("resnet18", &settings, &InputAccess::default())?;
//! let execution = Execution {
//!     destination: Destination::default(),
//!     device: candle_core::Device::Cpu,
//!     command_line: "example".into(),
//!     input_label: None,
//! };
//! let outcome = prepared.execute(&execution, &mut Silent)?;
//! println!("{}", outcome.report.totals.loss_after);
//! # Ok::<(), cs_init::run::RunError>(())
//! ```

mod digest;
mod error;
mod in_memory;
mod limits;
mod metadata;
mod observer;
mod outputs;
pub mod pipeline;
mod settings;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::Device;

use crate::checkpoint::{
    index_json, CheckpointOutput, OutputFile, ShardWriter, Sharding, INDEX_FILE,
};
use crate::input::{Input, Opened, ResolveOptions};
use crate::plan::{plan_files, PlanEntry};
use crate::report::RunReport;
use digest::HashingWriter;
use outputs::OutputPaths;
use pipeline::{items, process, run_totals, Job, LayerCount};

pub use digest::hex;
pub use error::RunError;
pub use in_memory::{run_in_memory, InMemoryOutcome, RunLabels, StateDict};
pub use limits::Limits;
pub use observer::{LayerStart, Observer, Silent};
pub use outputs::Destination;
pub use settings::{
    parse_probe_size, CheckedSettings, OptimizerName, RunSettings, SettingsError,
    DEFAULT_KERNEL_COSINE_SAMPLE, DEFAULT_PROBE_SAMPLE,
};

/// How the input may be fetched.
#[derive(Debug, Clone, Copy, Default)]
pub struct InputAccess {
    /// Show Hub download progress on stderr.
    pub progress: bool,
    /// Use the local Hub cache only, as with `HF_HUB_OFFLINE=1`.
    pub cache_only: bool,
}

/// A run ready to execute: its settings checked, its input opened and planned, its output's
/// sharding chosen. Nothing has been written.
pub struct Prepared {
    settings: CheckedSettings,
    input: Input,
    opened: Opened,
    plans: Vec<Vec<PlanEntry>>,
    selected: usize,
    sharding: Sharding,
    input_sha256: std::sync::OnceLock<String>,
}

/// Checks the settings, resolves and opens the input (a path, `hf://...` or a built-in name) and
/// decides which tensors are optimized. Fails when none is.
pub fn prepare(
    input: &str,
    settings: &RunSettings,
    access: &InputAccess,
) -> Result<Prepared, RunError> {
    let settings = settings.check()?;
    let options = ResolveOptions {
        progress: access.progress,
        cache_only: access.cache_only,
        pth: settings.pth.clone(),
    };
    let input = Input::resolve(input, &options)?;
    let opened = input.open(settings.seed)?;
    let tensors: Vec<_> = opened.files.iter().map(|f| f.tensors()).collect();
    let plans: Vec<Vec<PlanEntry>> = plan_files(&tensors, &settings.selection);
    let selected = plans.iter().flatten().filter(|e| e.optimize).count();
    if selected == 0 {
        return Err(no_conv_layers(&input, &plans));
    }
    let sharding = Sharding::choose(&opened.files, input.index(), settings.max_shard_size);
    Ok(Prepared {
        settings,
        input,
        opened,
        plans,
        selected,
        sharding,
        input_sha256: std::sync::OnceLock::new(),
    })
}

fn no_conv_layers(input: &Input, plans: &[Vec<PlanEntry>]) -> RunError {
    let names: Vec<&str> = plans.iter().flatten().map(|e| e.name.as_str()).collect();
    let mut shown = names
        .iter()
        .take(12)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 12 {
        shown.push_str(&format!(", ... ({} in all)", names.len()));
    }
    RunError::NoConvLayers {
        origin: input.describe(),
        count: names.len(),
        names: shown,
    }
}

/// Where and how a prepared run executes.
pub struct Execution {
    pub destination: Destination,
    pub device: Device,
    /// How the run was started, for the report.
    pub command_line: String,
    /// The input's name in the report [default: its path or reference].
    pub input_label: Option<String>,
}

/// A file of the output checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WrittenFile {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// What a completed run wrote.
pub struct Outcome {
    pub report: RunReport,
    /// The checkpoint: a file, or a directory of shards.
    pub checkpoint: PathBuf,
    /// The checkpoint's files (one, or every shard and the index), with their digests.
    pub files: Vec<WrittenFile>,
    pub report_path: PathBuf,
    pub plot_path: Option<PathBuf>,
}

impl Outcome {
    /// True when some layer diverged and kept its input weights (the command line's exit code 3).
    pub fn diverged(&self) -> bool {
        self.report.totals.diverged > 0
    }
}

impl Prepared {
    /// What reading the input changed (a PyTorch file's key, stripped prefix, dropped entries).
    pub fn notes(&self) -> &[String] {
        &self.opened.notes
    }

    /// The input as a user would name it.
    pub fn describe_input(&self) -> String {
        self.input.describe()
    }

    /// How many conv tensors will be optimized.
    pub fn selected(&self) -> usize {
        self.selected
    }

    pub fn settings(&self) -> &CheckedSettings {
        &self.settings
    }

    /// True when the output is a directory of shards with an index, not one file.
    pub fn sharded(&self) -> bool {
        self.sharding.has_index()
    }

    /// SHA-256 of the input as read (every file, after a PyTorch file's conversion), hex;
    /// computed once.
    pub fn input_sha256(&self) -> Result<String, RunError> {
        let never = AtomicBool::new(false);
        Ok(self
            .input_sha256_unless(&never)?
            .expect("only abandoned hashing stops early"))
    }

    /// [`Prepared::input_sha256`], or `None` once `abandon` is set.
    fn input_sha256_unless(&self, abandon: &AtomicBool) -> Result<Option<String>, RunError> {
        if let Some(digest) = self.input_sha256.get() {
            return Ok(Some(digest.clone()));
        }
        let Some(digest) = digest::input_sha256(&self.opened.files, abandon)? else {
            return Ok(None);
        };
        Ok(Some(self.input_sha256.get_or_init(|| digest).clone()))
    }

    /// Runs every layer and writes the checkpoint, the report and the plot. Each file appears
    /// only once complete; on any error, including a stop, none is left behind.
    pub fn execute(
        &self,
        execution: &Execution,
        observer: &mut dyn Observer,
    ) -> Result<Outcome, RunError> {
        let started = Instant::now();
        let destination = &execution.destination;
        let paths = OutputPaths::resolve(&self.input, destination, self.sharded())?;
        // The report and the plot are started now, so that an unwritable path fails before the
        // work rather than after the checkpoint is in place.
        let mut report_out = OutputFile::create(&paths.report, destination.force)?;
        let plot_out = paths
            .plot
            .as_ref()
            .map(|(p, _)| OutputFile::create(p, destination.force))
            .transpose()?;
        let device = &execution.device;
        let job = Job::new(&self.settings, device)?;
        // The input is hashed beside the work, on a thread of its own, and needed only before the
        // checkpoint is committed: hashing is sequential, and up front it kept a core idle for
        // 0.1 s per 100 MB. A run that ends early abandons it.
        let abandon = AtomicBool::new(false);
        let (layers, files, input_sha256) = std::thread::scope(|scope| {
            let hashing = scope.spawn(|| self.input_sha256_unless(&abandon));
            let hashed = || match hashing.join() {
                Ok(digest) => Ok(digest?.expect("not abandoned before the commit")),
                Err(panic) => std::panic::resume_unwind(panic),
            };
            let written = self.write_checkpoint(&paths, &job, destination.force, observer, hashed);
            if written.is_err() {
                abandon.store(true, Ordering::Relaxed);
            }
            written
        })?;

        let totals = run_totals(self.tensor_count(), &layers, started);
        let report = RunReport {
            schema_version: crate::report::SCHEMA_VERSION,
            tool: "cs-init",
            version: env!("CARGO_PKG_VERSION"),
            command_line: execution.command_line.clone(),
            input: execution
                .input_label
                .clone()
                .unwrap_or_else(|| self.input.describe()),
            input_sha256,
            input_notes: self.opened.notes.clone(),
            output: paths.checkpoint.display().to_string(),
            settings: job.report_settings(self.settings.seed),
            totals,
            layers,
        };
        std::io::Write::write_all(&mut report_out, report.to_json().as_bytes())
            .map_err(|e| crate::checkpoint::CheckpointError::io(&paths.report, e))?;
        report_out.commit()?;
        if let (Some(mut plot_out), Some((plot, format))) = (plot_out, &paths.plot) {
            std::io::Write::write_all(&mut plot_out, &report.plot(*format))
                .map_err(|e| crate::checkpoint::CheckpointError::io(plot, e))?;
            plot_out.commit()?;
        }
        Ok(Outcome {
            report,
            checkpoint: paths.checkpoint,
            files,
            report_path: paths.report,
            plot_path: paths.plot.map(|(p, _)| p),
        })
    }

    fn tensor_count(&self) -> usize {
        self.opened.files.iter().map(|f| f.tensors().len()).sum()
    }

    /// Writes the checkpoint (one file, or shards and their index) and returns every conv
    /// tensor's report and the files written.
    fn write_checkpoint(
        &self,
        paths: &OutputPaths,
        job: &Job,
        force: bool,
        observer: &mut dyn Observer,
        input_sha256: impl FnOnce() -> Result<String, RunError>,
    ) -> Result<(Vec<crate::report::LayerReport>, Vec<WrittenFile>, String), RunError> {
        let files = &self.opened.files;
        let provenance = metadata::provenance(&self.settings);
        let items = items(files, &self.plans);
        let mut count = LayerCount {
            done: 0,
            selected: self.selected,
        };
        let mut out = CheckpointOutput::create(&paths.checkpoint, self.sharded(), force)?;
        let file_name = paths.checkpoint.file_name().unwrap_or_default();
        let mut layers = Vec::new();
        let mut written = Vec::new();
        let mut weight_map = BTreeMap::new();
        for shard in self
            .sharding
            .shards(items.len(), &file_name.to_string_lossy())
        {
            let group = &items[shard.tensors.clone()];
            // Each shard keeps its own input file's metadata, plus the provenance.
            let source = group.first().map_or(&files[0], |i| i.file);
            let metadata = metadata::merged(source.metadata(), &provenance);
            let writer = HashingWriter::new(out.shard(&shard.name)?);
            let (writer, shard_layers) =
                process(group, job, Some(&metadata), writer, &mut count, observer)?;
            written.push(finish_file(&mut out, writer)?);
            layers.extend(shard_layers);
            weight_map.extend(
                group
                    .iter()
                    .map(|i| (i.tensor.name.clone(), shard.name.clone())),
            );
        }
        if self.sharded() {
            let index_metadata = self
                .input
                .index()
                .map(|i| i.metadata().clone())
                .unwrap_or_default();
            // Dtypes and shapes are unchanged, so the total size is the input's.
            let total_size = items.iter().map(|i| i.tensor.end - i.tensor.begin).sum();
            let index = index_json(&index_metadata, &weight_map, total_size);
            let mut writer = HashingWriter::new(out.shard(INDEX_FILE)?);
            std::io::Write::write_all(&mut writer, index.as_bytes())
                .map_err(|e| writer.get_ref().error(e))?;
            written.push(finish_file(&mut out, writer)?);
        }
        if observer.stop_requested() {
            return Err(RunError::Stopped);
        }
        let input_sha256 = input_sha256()?;
        out.commit()?;
        Ok((layers, written, input_sha256))
    }
}

/// Ends a file of the checkpoint and says what was written.
fn finish_file(
    out: &mut CheckpointOutput,
    writer: HashingWriter<ShardWriter>,
) -> Result<WrittenFile, RunError> {
    let (file, size, sha256) = writer.finish();
    let path = file.path().to_path_buf();
    out.finish_shard(file)?;
    Ok(WrittenFile { path, size, sha256 })
}

/// Has glibc's allocator keep the memory a layer frees for the next one. By default it maps
/// every block over 128 KiB to fresh pages (the limit creeps up only as such blocks are freed)
/// and hands freed memory back, so each layer's copies, optimizer state, records and probe
/// buffers paid the kernel to zero and fault in their pages again: about 5 % of ResNet-50's
/// command (3.57-3.63 s -> 3.39-3.54 s, peak memory 101 -> 111 MB). Blocks and free memory over
/// 256 MiB are still mapped and returned, so a long-running service gives back what one huge
/// layer took. The command line and the service set this at start; a program running many
/// layers through the library may do the same.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's parameters (it takes the allocator's lock).
    unsafe {
        const LIMIT: libc::c_int = 256 << 20;
        libc::mallopt(libc::M_MMAP_THRESHOLD, LIMIT);
        libc::mallopt(libc::M_TRIM_THRESHOLD, LIMIT);
    }
}

/// Runs `f` on a rayon pool of `threads` threads (all cores when `None`), so that every parallel
/// loop of the run, candle's included, uses that many threads.
pub fn with_threads<T: Send>(
    threads: Option<usize>,
    f: impl FnOnce() -> T + Send,
) -> Result<T, rayon::ThreadPoolBuildError> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = threads {
        builder = builder.num_threads(n);
    }
    Ok(builder.build()?.install(f))
}
