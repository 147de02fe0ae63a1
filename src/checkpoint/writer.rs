//! Writing safetensors atomically: the data goes to a hidden temporary file beside the output,
//! which is renamed into place only when complete. An error drops (deletes) the temporary file,
//! and [`remove_pending_outputs`] lets a Ctrl-C handler delete it before the process exits.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use safetensors::Dtype;
use serde_json::{json, Map, Value};

use super::{CheckpointError, Result};

/// The directory an output goes into (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `.NAME.`: temporary names beside an output are hidden and say what they will become.
fn hidden_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.")
}

/// A builder of temporary names `PREFIX.XXXXXX.partial` with the usual permissions of a new
/// file or directory: tempfile's default, 0600, would leave the output private to its owner.
fn temp_builder(prefix: &str, mode: u32) -> tempfile::Builder<'_, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix).suffix(".partial");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    builder
}

/// Temporary files not yet committed, for the Ctrl-C handler.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Deletes every temporary output not yet committed. Called on Ctrl-C before exiting.
pub fn remove_pending_outputs() {
    let pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    for path in pending.iter() {
        if path.is_dir() {
            let _ = std::fs::remove_dir_all(path);
        } else {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// An output file that appears at its path only when [`OutputFile::commit`] succeeds.
pub struct OutputFile {
    path: PathBuf,
    writer: BufWriter<tempfile::NamedTempFile>,
    overwrite: bool,
    _pending: Pending,
}

/// Registers a temporary file for the Ctrl-C handler for as long as it may exist under its name.
struct Pending(PathBuf);

impl Pending {
    /// Creates a temporary output with `create` and registers it, holding the registry's lock
    /// throughout: a Ctrl-C handler that runs meanwhile waits for the registration instead of
    /// missing a file that already exists on disk.
    fn create<T: AsRef<Path>>(create: impl FnOnce() -> Result<T>) -> Result<(T, Self)> {
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        let temp = create()?;
        let path = temp.as_ref().to_path_buf();
        pending.push(path.clone());
        Ok((temp, Self(path)))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        PENDING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| p != &self.0);
    }
}

impl OutputFile {
    /// Starts an output at `path`. Fails now if it exists and `overwrite` is false.
    pub fn create(path: &Path, overwrite: bool) -> Result<Self> {
        if path.is_dir() {
            return Err(CheckpointError::OutputIsDirectory { path: path.into() });
        }
        if !overwrite && path.exists() {
            return Err(CheckpointError::OutputExists { path: path.into() });
        }
        let dir = parent_dir(path);
        let prefix = hidden_prefix(path);
        let (temp, pending) = Pending::create(|| {
            temp_builder(&prefix, 0o644)
                .tempfile_in(dir)
                .map_err(|e| CheckpointError::io(dir, e))
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            _pending: pending,
            writer: BufWriter::with_capacity(1 << 20, temp),
            overwrite,
        })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes, syncs and renames the temporary file into place.
    pub fn commit(self) -> Result<()> {
        let OutputFile {
            path,
            writer,
            overwrite,
            _pending,
        } = self;
        let temp = writer
            .into_inner()
            .map_err(|e| CheckpointError::io(&path, e.into_error()))?;
        temp.as_file()
            .sync_all()
            .map_err(|e| CheckpointError::io(&path, e))?;
        let persisted = if overwrite {
            temp.persist(&path).map_err(|e| e.error)
        } else {
            temp.persist_noclobber(&path).map_err(|e| e.error)
        };
        match persisted {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(CheckpointError::OutputExists { path })
            }
            Err(e) => Err(CheckpointError::io(path, e)),
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

/// A tensor of the header: its sizes are known before its data is.
#[derive(Debug, Clone)]
pub struct HeaderEntry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub len: usize,
}

/// Streams a safetensors file: the header first (all sizes are known up front), then every
/// tensor's bytes in header order, so only one tensor is in memory at a time.
pub struct SafetensorsWriter<W: Write> {
    out: W,
    entries: Vec<HeaderEntry>,
    next: usize,
}

impl<W: Write> SafetensorsWriter<W> {
    /// Writes the header; `entries` fixes the order of the data.
    pub fn new(
        mut out: W,
        metadata: Option<&BTreeMap<String, String>>,
        entries: Vec<HeaderEntry>,
    ) -> std::io::Result<Self> {
        let mut header = Map::new();
        if let Some(metadata) = metadata {
            header.insert("__metadata__".into(), json!(metadata));
        }
        let mut offset = 0usize;
        for e in &entries {
            if header.contains_key(&e.name) {
                return Err(std::io::Error::other(format!(
                    "tensor '{}' appears twice",
                    e.name
                )));
            }
            let dtype = serde_json::to_value(e.dtype).expect("dtype serializes");
            header.insert(
                e.name.clone(),
                json!({"dtype": dtype, "shape": e.shape, "data_offsets": [offset, offset + e.len]}),
            );
            offset += e.len;
        }
        let mut text = serde_json::to_string(&Value::Object(header)).expect("header serializes");
        // Pad to 8 bytes so the data section is aligned, as the reference writer does.
        while !text.len().is_multiple_of(8) {
            text.push(' ');
        }
        out.write_all(&(text.len() as u64).to_le_bytes())?;
        out.write_all(text.as_bytes())?;
        Ok(Self {
            out,
            entries,
            next: 0,
        })
    }

    /// Writes the next tensor's bytes; name and length must match the header.
    pub fn write_tensor(&mut self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let expected = self.entries.get(self.next).ok_or_else(|| {
            std::io::Error::other(format!(
                "tensor '{name}' written after the last header entry"
            ))
        })?;
        if expected.name != name || expected.len != bytes.len() {
            return Err(std::io::Error::other(format!(
                "tensor '{name}' ({} bytes) written where the header has '{}' ({} bytes)",
                bytes.len(),
                expected.name,
                expected.len
            )));
        }
        self.next += 1;
        self.out.write_all(bytes)
    }

    /// Checks that every tensor was written and returns the underlying writer.
    pub fn finish(self) -> std::io::Result<W> {
        if self.next != self.entries.len() {
            return Err(std::io::Error::other(format!(
                "only {} of {} tensors were written",
                self.next,
                self.entries.len()
            )));
        }
        Ok(self.out)
    }
}

/// A whole safetensors file in memory (for small generated checkpoints).
pub fn serialize(
    metadata: Option<&BTreeMap<String, String>>,
    tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)],
) -> Vec<u8> {
    let entries = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| HeaderEntry {
            name: name.clone(),
            dtype: *dtype,
            shape: shape.clone(),
            len: bytes.len(),
        })
        .collect();
    let mut writer =
        SafetensorsWriter::new(Vec::new(), metadata, entries).expect("writing to memory");
    for (name, _, _, bytes) in tensors {
        writer.write_tensor(name, bytes).expect("writing to memory");
    }
    writer.finish().expect("all tensors written")
}

/// An output directory (a sharded checkpoint) that appears at its path only when complete: its
/// files are written into a hidden temporary directory beside it, renamed into place at the end.
pub struct OutputDir {
    path: PathBuf,
    temp: tempfile::TempDir,
    overwrite: bool,
    _pending: Pending,
}

impl OutputDir {
    /// Starts an output directory. An existing one is replaced only with `overwrite`, and only if
    /// it holds nothing but checkpoint files (`.safetensors`, `.json`), so that a mistyped `-o`
    /// with `--force` cannot delete unrelated data.
    pub fn create(path: &Path, overwrite: bool) -> Result<Self> {
        if path.exists() {
            if !overwrite {
                return Err(CheckpointError::OutputExists { path: path.into() });
            }
            check_replaceable(path)?;
        }
        let parent = parent_dir(path);
        let prefix = hidden_prefix(path);
        let (temp, pending) = Pending::create(|| {
            temp_builder(&prefix, 0o755)
                .tempdir_in(parent)
                .map_err(|e| CheckpointError::io(parent, e))
        })?;
        Ok(Self {
            path: path.into(),
            _pending: pending,
            temp,
            overwrite,
        })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file inside the (temporary) directory.
    pub fn file(&self, name: &str) -> Result<BufWriter<std::fs::File>> {
        let path = self.temp.path().join(name);
        let file = std::fs::File::create(&path)
            .map_err(|e| CheckpointError::io(self.path.join(name), e))?;
        Ok(BufWriter::with_capacity(1 << 20, file))
    }

    /// Flushes and syncs a file made by [`OutputDir::file`]; `path` (its final path) names it in
    /// errors.
    pub fn finish(&self, file: BufWriter<std::fs::File>, path: &Path) -> Result<()> {
        let file = file
            .into_inner()
            .map_err(|e| CheckpointError::io(path, e.into_error()))?;
        file.sync_all().map_err(|e| CheckpointError::io(path, e))
    }

    /// Renames the finished directory into place.
    pub fn commit(self) -> Result<()> {
        let OutputDir {
            path,
            temp,
            overwrite,
            _pending,
        } = self;
        if path.exists() {
            if !overwrite {
                return Err(CheckpointError::OutputExists { path });
            }
            check_replaceable(&path)?;
            std::fs::remove_dir_all(&path).map_err(|e| CheckpointError::io(&path, e))?;
        }
        let temp = temp.keep();
        std::fs::rename(&temp, &path).map_err(|e| {
            let _ = std::fs::remove_dir_all(&temp);
            CheckpointError::io(&path, e)
        })
    }
}

fn check_replaceable(path: &Path) -> Result<()> {
    let refuse = |why: String| CheckpointError::WillNotReplace {
        path: path.into(),
        why,
    };
    if !path.is_dir() {
        return Err(refuse("it is not a directory".into()));
    }
    let entries = std::fs::read_dir(path).map_err(|e| CheckpointError::io(path, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| CheckpointError::io(path, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if !is_file || !(name.ends_with(".safetensors") || name.ends_with(".json")) {
            return Err(refuse(format!(
                "it holds '{name}', which is not a checkpoint file"
            )));
        }
    }
    Ok(())
}
