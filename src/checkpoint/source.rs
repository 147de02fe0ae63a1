//! What the command line's INPUT names: a safetensors file, a sharded checkpoint (its directory or
//! its index file), or a built-in architecture.

use std::path::{Path, PathBuf};

use super::hub::{self, HubEnv, HubFiles, HubSource};
use super::{
    serialize, tensor_to_bytes, CheckpointError, Dtype, Result, SafetensorsFile, ShardIndex,
    INDEX_FILE,
};
use crate::arch::Architecture;

/// A resolved INPUT.
pub enum Input {
    /// One safetensors file.
    File(PathBuf),
    /// A sharded checkpoint.
    Sharded(ShardIndex),
    /// A freshly initialized built-in network.
    BuiltIn(Architecture),
    /// A checkpoint of the Hugging Face Hub, resolved to cached files (a `File` or `Sharded`).
    Hub(HubSource, Box<Input>),
}

impl Input {
    /// Resolves INPUT: an `hf://` reference (fetched into the Hub cache, with download progress
    /// on stderr when `progress`), an existing path, then a built-in architecture name.
    pub fn resolve(input: &str, progress: bool) -> Result<Self> {
        if let Some(source) = HubSource::parse(input) {
            let source = source?;
            let files = match hub::fetch(&source, &HubEnv::from_env(), progress)? {
                HubFiles::File(path) => Input::File(path),
                HubFiles::Sharded(index) => Input::Sharded(index),
            };
            return Ok(Input::Hub(source, Box::new(files)));
        }
        let path = Path::new(input);
        if path.is_dir() {
            let index = path.join(INDEX_FILE);
            if index.is_file() {
                return Ok(Input::Sharded(ShardIndex::open(&index)?));
            }
            return Err(CheckpointError::Input(format!(
                "{}: a directory without {INDEX_FILE}; pass a .safetensors file or a sharded checkpoint's directory",
                path.display()
            )));
        }
        if path.is_file() {
            if input.ends_with(".index.json") {
                return Ok(Input::Sharded(ShardIndex::open(path)?));
            }
            return Ok(Input::File(path.into()));
        }
        if let Ok(arch) = input.parse::<Architecture>() {
            return Ok(Input::BuiltIn(arch));
        }
        let names: Vec<&str> = Architecture::ALL.iter().map(|a| a.name()).collect();
        Err(CheckpointError::Input(format!(
            "{input}: no such file or directory, and not a built-in architecture ({})",
            names.join(", ")
        )))
    }

    /// A short description for logs and reports.
    pub fn describe(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
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

    /// Opens every file of the input: one, or one per shard (sorted by name). Built-in
    /// architectures are initialized from `seed`.
    pub fn open(&self, seed: u64) -> Result<Vec<SafetensorsFile>> {
        match self {
            Input::File(path) => Ok(vec![SafetensorsFile::open(path)?]),
            Input::BuiltIn(arch) => Ok(vec![built_in_file(*arch, seed)?]),
            Input::Sharded(index) => index
                .shards()
                .iter()
                .map(|s| SafetensorsFile::open(&index.shard_path(s)))
                .collect(),
            Input::Hub(_, files) => files.open(seed),
        }
    }

    /// The input's path on disk, if it has one (used to refuse writing over it).
    pub fn path(&self) -> Option<&Path> {
        match self {
            Input::File(p) => Some(p),
            Input::Sharded(index) => Some(index.dir()),
            Input::BuiltIn(_) => None,
            Input::Hub(_, files) => files.path(),
        }
    }
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
    let tensors = arch
        .tensors(seed)
        .map_err(|e| CheckpointError::Input(e.to_string()))?;
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
                return Err(CheckpointError::Input(format!(
                    "built-in {arch}: unexpected dtype {other:?} for {name}"
                )));
            }
        };
        entries.push((name, dtype, tensor.dims().to_vec(), bytes));
    }
    let metadata = std::collections::BTreeMap::from([("format".to_string(), "pt".to_string())]);
    Ok(serialize(Some(&metadata), &entries))
}
