//! What the command line's INPUT names: a safetensors file, a sharded checkpoint (its directory or
//! its index file), a PyTorch checkpoint file, a Hub reference, or a built-in architecture.

use std::path::{Path, PathBuf};

use super::hub::{self, HubEnv, HubFiles, HubSource};
use super::{
    looks_like_pth, read_pth, serialize, tensor_to_bytes, CheckpointError, Dtype, Result,
    SafetensorsFile, ShardIndex, INDEX_FILE,
};
use crate::arch::Architecture;

/// How PyTorch checkpoint files are read (`--key`, `--strip-prefix`).
#[derive(Debug, Clone, Default)]
pub struct PthOptions {
    /// The top-level entry holding the state dict (automatic when `None`).
    pub key: Option<String>,
    /// A prefix to remove from every name (`None`: remove a DataParallel `module.` prefix).
    pub strip_prefix: Option<String>,
}

/// How INPUT is resolved.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    /// Show Hub download progress on stderr.
    pub progress: bool,
    /// Use the local Hub cache only, as with `HF_HUB_OFFLINE=1`.
    pub cache_only: bool,
    pub pth: PthOptions,
}

/// The files of an input, ready to read, and what was changed on the way in.
pub struct Opened {
    /// One file, or one per shard (sorted by name).
    pub files: Vec<SafetensorsFile>,
    /// Human-readable notes (a PyTorch file's state-dict key, stripped prefix, dropped entries).
    pub notes: Vec<String>,
}

/// A resolved INPUT.
pub enum Input {
    /// One safetensors file.
    File(PathBuf),
    /// A PyTorch checkpoint file (`.pth`, `.pt`, `.bin`, `.th`; zip or legacy format).
    Pth(PathBuf, PthOptions),
    /// A sharded checkpoint.
    Sharded(ShardIndex),
    /// A freshly initialized built-in network.
    BuiltIn(Architecture),
    /// A checkpoint of the Hugging Face Hub, resolved to cached files (a `File` or `Sharded`).
    Hub(HubSource, Box<Input>),
}

impl Input {
    /// Resolves INPUT: an `hf://` reference (fetched into the Hub cache), `builtin:NAME`, an
    /// existing path, then a built-in architecture name.
    pub fn resolve(input: &str, options: &ResolveOptions) -> Result<Self> {
        if let Some(source) = HubSource::parse(input) {
            let source = source?;
            let mut env = HubEnv::from_env();
            env.offline |= options.cache_only;
            let files = match hub::fetch(&source, &env, options.progress)? {
                HubFiles::File(path) => Input::file(path, &options.pth)?,
                HubFiles::Sharded(index) => Input::Sharded(index),
            };
            return Ok(Input::Hub(source, Box::new(files)));
        }
        if let Some(name) = input.strip_prefix("builtin:") {
            return name
                .parse::<Architecture>()
                .map(Input::BuiltIn)
                .map_err(|_| CheckpointError::UnknownBuiltIn {
                    input: input.into(),
                    builtins: built_in_names(),
                });
        }
        let path = Path::new(input);
        if path.is_dir() {
            let index = path.join(INDEX_FILE);
            if index.is_file() {
                return Ok(Input::Sharded(ShardIndex::open(&index)?));
            }
            return Err(CheckpointError::DirectoryWithoutIndex {
                path: path.into(),
                index: INDEX_FILE,
            });
        }
        if path.is_file() {
            if input.ends_with(".index.json") {
                return Ok(Input::Sharded(ShardIndex::open(path)?));
            }
            return Input::file(path.into(), &options.pth);
        }
        if let Ok(arch) = input.parse::<Architecture>() {
            return Ok(Input::BuiltIn(arch));
        }
        Err(CheckpointError::NoSuchInput {
            input: input.into(),
            builtins: built_in_names(),
        })
    }

    /// A single file: PyTorch by its extension (or, without a known one, its first bytes),
    /// safetensors otherwise.
    fn file(path: PathBuf, pth: &PthOptions) -> Result<Self> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let pytorch = match extension.as_deref() {
            Some("pth" | "pt" | "bin" | "th" | "ckpt" | "tar") => true,
            Some("safetensors") => false,
            _ => {
                let mut head = [0u8; 24];
                let n = std::io::Read::read(
                    &mut std::fs::File::open(&path).map_err(|e| CheckpointError::io(&path, e))?,
                    &mut head,
                )
                .map_err(|e| CheckpointError::io(&path, e))?;
                looks_like_pth(&head[..n])
            }
        };
        Ok(if pytorch {
            Input::Pth(path, pth.clone())
        } else {
            Input::File(path)
        })
    }

    /// A short description for logs and reports.
    pub fn describe(&self) -> String {
        match self {
            Input::File(p) | Input::Pth(p, _) => p.display().to_string(),
            Input::Sharded(index) => index.dir().display().to_string(),
            Input::BuiltIn(arch) => format!("built-in {arch}"),
            Input::Hub(source, _) => source.describe(),
        }
    }

    /// The index of a sharded checkpoint.
    pub fn index(&self) -> Option<&ShardIndex> {
        match self {
            Input::Sharded(index) => Some(index),
            Input::Hub(_, files) => files.index(),
            _ => None,
        }
    }

    /// Opens every file of the input. Built-in architectures are initialized from `seed`; a
    /// PyTorch file is converted to safetensors in memory.
    pub fn open(&self, seed: u64) -> Result<Opened> {
        let one = |file| Opened {
            files: vec![file],
            notes: Vec::new(),
        };
        match self {
            Input::File(path) => Ok(one(SafetensorsFile::open(path)?)),
            Input::BuiltIn(arch) => Ok(one(built_in_file(*arch, seed)?)),
            Input::Pth(path, options) => open_pth(path, options),
            Input::Sharded(index) => {
                let files: Vec<SafetensorsFile> = index
                    .shards()
                    .iter()
                    .map(|s| SafetensorsFile::open(&index.shard_path(s)))
                    .collect::<Result<_>>()?;
                index.check_shards(&files)?;
                Ok(Opened {
                    files,
                    notes: Vec::new(),
                })
            }
            Input::Hub(_, files) => files.open(seed),
        }
    }

    /// The input's path on disk, if it has one (used to refuse writing over it).
    pub fn path(&self) -> Option<&Path> {
        match self {
            Input::File(p) | Input::Pth(p, _) => Some(p),
            Input::Sharded(index) => Some(index.dir()),
            Input::BuiltIn(_) => None,
            Input::Hub(_, files) => files.path(),
        }
    }
}

/// The built-in architectures' names, for messages.
pub fn built_in_names() -> String {
    let names: Vec<&str> = Architecture::ALL.iter().map(|a| a.name()).collect();
    names.join(", ")
}

/// A built-in network, freshly initialized with `seed`, as an in-memory safetensors file.
pub fn built_in_file(arch: Architecture, seed: u64) -> Result<SafetensorsFile> {
    SafetensorsFile::from_bytes(
        format!("built-in {arch} (seed {seed})"),
        built_in_bytes(arch, seed)?,
    )
}

/// A built-in network, freshly initialized with `seed`, serialized as safetensors.
pub fn built_in_bytes(arch: Architecture, seed: u64) -> Result<Vec<u8>> {
    let tensors = arch.tensors(seed).map_err(|e| CheckpointError::BuiltIn {
        arch: arch.to_string(),
        reason: e.to_string(),
    })?;
    let mut entries = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let (dtype, bytes) = match tensor.dtype() {
            candle_core::DType::I64 => {
                let values = tensor.flatten_all()?.to_vec1::<i64>()?;
                (
                    Dtype::I64,
                    values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                )
            }
            candle_core::DType::F32 => (Dtype::F32, tensor_to_bytes(&tensor)?),
            other => {
                return Err(CheckpointError::BuiltIn {
                    arch: arch.to_string(),
                    reason: format!("unexpected dtype {other:?} for {name}"),
                });
            }
        };
        entries.push((name, dtype, tensor.dims().to_vec(), bytes));
    }
    let metadata = std::collections::BTreeMap::from([("format".to_string(), "pt".to_string())]);
    Ok(serialize(Some(&metadata), &entries))
}

/// Reads a PyTorch checkpoint into an in-memory safetensors file, noting what was changed.
fn open_pth(path: &Path, options: &PthOptions) -> Result<Opened> {
    let checkpoint = read_pth(
        path,
        options.key.as_deref(),
        options.strip_prefix.as_deref(),
    )?;
    let mut notes = Vec::new();
    if let Some(key) = &checkpoint.key {
        notes.push(format!("state dict read from the entry '{key}'"));
    }
    if let Some(prefix) = &checkpoint.stripped_prefix {
        notes.push(format!("prefix '{prefix}' removed from tensor names"));
    }
    if let Some(prefix) = &checkpoint.shared_prefix {
        notes.push(format!(
            "every tensor name starts with '{prefix}' (a wrapper's attribute, as in a Lightning checkpoint); \
             --strip-prefix {prefix} removes it so that the names are the bare network's"
        ));
    }
    for (key, what) in &checkpoint.dropped {
        notes.push(format!("non-tensor entry '{key}' ({what}) dropped"));
    }
    let tensors: Vec<_> = checkpoint
        .tensors
        .into_iter()
        .map(|t| (t.name, t.dtype, t.shape, t.data))
        .collect();
    // `format: pt` tells loaders such as transformers that the tensors follow PyTorch's layout.
    let metadata = std::collections::BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let file = SafetensorsFile::from_bytes(path, serialize(Some(&metadata), &tensors))?;
    Ok(Opened {
        files: vec![file],
        notes,
    })
}
