//! Where a run's files go: the default names beside the input, and the checks that no output
//! replaces the input or another output.

use std::path::{Path, PathBuf};

use super::RunError;
use crate::input::Input;
use crate::report::plot::PlotFormat;

/// The files a run writes, as the caller asks for them (`None`: the default name).
#[derive(Debug, Clone, Default)]
pub struct Destination {
    /// The checkpoint [default: `<stem>.cs.safetensors` beside the input; a directory for
    /// sharded output].
    pub checkpoint: Option<PathBuf>,
    /// The JSON report [default: beside the checkpoint, `<stem>.report.json`].
    pub report: Option<PathBuf>,
    /// The loss curves as SVG or PNG (by extension), when wanted.
    pub plot: Option<PathBuf>,
    /// Replace existing files.
    pub force: bool,
}

/// The paths a run writes.
#[derive(Debug, Clone)]
pub(super) struct OutputPaths {
    pub checkpoint: PathBuf,
    pub report: PathBuf,
    pub plot: Option<(PathBuf, PlotFormat)>,
}

impl OutputPaths {
    /// Resolves the default names and refuses paths that would overwrite the input or each other,
    /// or existing files without `force`.
    pub fn resolve(
        input: &Input,
        destination: &Destination,
        sharded: bool,
    ) -> Result<Self, RunError> {
        let checkpoint = match &destination.checkpoint {
            Some(p) => p.clone(),
            None => default_checkpoint(input, sharded)?,
        };
        let report = destination
            .report
            .clone()
            .unwrap_or_else(|| default_report(&checkpoint));
        let plot = match &destination.plot {
            None => None,
            Some(p) => match PlotFormat::from_path(p) {
                Some(format) => Some((p.clone(), format)),
                None => {
                    return Err(RunError::Output(format!(
                        "--plot {}: expected a .svg or .png file name",
                        p.display()
                    )))
                }
            },
        };
        let paths = Self {
            checkpoint,
            report,
            plot,
        };
        paths.check(input, destination.force)?;
        Ok(paths)
    }

    fn all(&self) -> Vec<(&'static str, &Path)> {
        let mut all = vec![
            ("output", self.checkpoint.as_path()),
            ("report", self.report.as_path()),
        ];
        if let Some((plot, _)) = &self.plot {
            all.push(("plot", plot.as_path()));
        }
        all
    }

    fn check(&self, input: &Input, force: bool) -> Result<(), RunError> {
        let outputs = self.all();
        if let Some(input_path) = input.path() {
            let input_path = canonical(input_path);
            for (what, p) in &outputs {
                let p = canonical(p);
                if p == input_path
                    || input_path.starts_with(&p)
                    || (p.starts_with(&input_path) && input_path.is_dir())
                {
                    return Err(RunError::Output(format!(
                        "the {what} path {} would overwrite the input; choose another with -o/--report/--plot",
                        p.display()
                    )));
                }
            }
        }
        for (i, (a, pa)) in outputs.iter().enumerate() {
            for (b, pb) in &outputs[i + 1..] {
                if canonical(pa) == canonical(pb) {
                    return Err(RunError::Output(format!(
                        "the {a} and the {b} would both be written to {}",
                        pa.display()
                    )));
                }
            }
        }
        if !force {
            for (what, p) in &outputs {
                if p.exists() {
                    return Err(RunError::Output(format!(
                        "the {what} {} already exists; pass --force to overwrite it",
                        p.display()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A path with symlinks resolved: completely when it exists, through its parent when it is new.
fn canonical(p: &Path) -> PathBuf {
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
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `<stem>.cs.safetensors` beside a file input, `<dir>.cs` beside a sharded one,
/// `<arch>.cs.safetensors` here.
fn default_checkpoint(input: &Input, sharded: bool) -> Result<PathBuf, RunError> {
    let file = match input {
        Input::Sharded(_) | Input::Hub(..) => None,
        Input::File(path) | Input::Pth(path, _) => Some(path.clone()),
        Input::BuiltIn(arch) => Some(PathBuf::from(format!("{arch}.safetensors"))),
    };
    if let (true, Some(path)) = (sharded, file) {
        // A single file split into shards: `model.safetensors` -> `model.cs/`.
        let name = file_name(&path);
        let stem = name.split('.').next().unwrap_or("model").to_string();
        return Ok(path.with_file_name(format!("{stem}.cs")));
    }
    Ok(match input {
        Input::File(path) => {
            let name = file_name(path);
            let stem = name.strip_suffix(".safetensors").unwrap_or(&name);
            path.with_file_name(format!("{stem}.cs.safetensors"))
        }
        // model.pth -> model.cs.safetensors: the output is always safetensors.
        Input::Pth(path, _) => path.with_extension("cs.safetensors"),
        Input::Sharded(index) => {
            let dir = index.dir().canonicalize().map_err(|e| {
                RunError::Checkpoint(crate::checkpoint::CheckpointError::io(index.dir(), e))
            })?;
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
    let name = file_name(output);
    let stem = name.strip_suffix(".safetensors").unwrap_or(&name);
    output.with_file_name(format!("{stem}.report.json"))
}
