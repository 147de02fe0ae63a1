//! Reading safetensors: an 8-byte little-endian header length, a JSON header, then the data.
//!
//! The header is validated completely before any tensor is used: every tensor's dtype, shape and
//! byte range, ranges inside the data section and not overlapping, so that a truncated or corrupt
//! file fails at once with the file and tensor named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use serde_json::Value;

use super::{CheckpointError, Result};

/// Largest header accepted (the safetensors reference implementation's limit).
const MAX_HEADER: usize = 100 * 1024 * 1024;

/// One tensor of a safetensors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Byte range inside the data section.
    pub begin: usize,
    pub end: usize,
}

impl TensorInfo {
    /// The number of elements. A valid file may give an empty tensor dimensions whose product
    /// overflows (`[2^40, 2^40, 0]`): the zero is looked for first.
    pub fn elements(&self) -> usize {
        if self.shape.contains(&0) {
            return 0;
        }
        self.shape
            .iter()
            .fold(1, |n: usize, &d| n.saturating_mul(d))
    }
}

enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

/// A validated safetensors file, memory-mapped (or held in memory for built-in networks).
pub struct SafetensorsFile {
    path: PathBuf,
    bytes: Bytes,
    data_start: usize,
    metadata: Option<BTreeMap<String, String>>,
    tensors: Vec<TensorInfo>,
}

impl SafetensorsFile {
    /// Maps and validates a file. The file is only read, never written.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| CheckpointError::io(path, e))?;
        // SAFETY: the map is read-only; cs-init never writes its inputs. A file truncated by
        // another process while mapped is outside what any mmap reader can defend against.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| CheckpointError::io(path, e))?;
        Self::parse(path.to_path_buf(), Bytes::Mapped(map))
    }

    /// Validates an in-memory safetensors buffer; `origin` names it in errors and reports.
    pub fn from_bytes(origin: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self> {
        Self::parse(origin.into(), Bytes::Owned(bytes))
    }

    fn parse(path: PathBuf, bytes: Bytes) -> Result<Self> {
        let all: &[u8] = match &bytes {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        };
        let invalid = |reason: String| CheckpointError::NotSafetensors {
            path: path.clone(),
            reason,
        };
        if all.len() < 8 {
            return Err(invalid(format!(
                "the file is {} bytes long, shorter than the 8-byte header length{}",
                all.len(),
                format_hint(all)
            )));
        }
        let header_len = u64::from_le_bytes(all[..8].try_into().expect("8 bytes"));
        if header_len as u128 > (all.len() - 8) as u128 {
            return Err(invalid(format!(
                "the header claims {header_len} bytes but only {} follow the length field (truncated file?){}",
                all.len() - 8,
                format_hint(all)
            )));
        }
        let header_len = header_len as usize;
        if header_len > MAX_HEADER {
            return Err(invalid(format!(
                "the header is {header_len} bytes, more than the 100 MB limit"
            )));
        }
        let header = std::str::from_utf8(&all[8..8 + header_len])
            .map_err(|e| invalid(format!("the header is not UTF-8: {e}{}", format_hint(all))))?;
        let Entries(header) = serde_json::from_str(header.trim_end()).map_err(|e| {
            invalid(format!(
                "the header is not a JSON object: {e}{}",
                format_hint(all)
            ))
        })?;
        let mut seen = std::collections::HashSet::new();
        if let Some((name, _)) = header.iter().find(|(name, _)| !seen.insert(name.as_str())) {
            return Err(invalid(format!("the header names '{name}' twice")));
        }
        let data_start = 8 + header_len;
        let data_len = all.len() - data_start;

        let mut metadata = None;
        let mut tensors = Vec::with_capacity(header.len());
        for (name, entry) in header {
            if name == "__metadata__" {
                metadata = Some(parse_metadata(entry).map_err(invalid)?);
                continue;
            }
            let info = parse_tensor(&name, entry, data_len).map_err(|reason| {
                CheckpointError::BadTensor {
                    path: path.clone(),
                    tensor: name.clone(),
                    reason,
                }
            })?;
            tensors.push(info);
        }
        tensors.sort_by_key(|t| (t.begin, t.end));
        // As the reference implementation requires: the tensors tile the data section exactly.
        let mut covered = 0;
        for t in &tensors {
            if t.begin > covered {
                return Err(invalid(format!(
                    "bytes {covered}..{} of the data section belong to no tensor (before '{}')",
                    t.begin, t.name
                )));
            }
            covered = covered.max(t.end);
        }
        if covered != data_len {
            return Err(invalid(format!(
                "{} bytes after the last tensor belong to no tensor",
                data_len - covered
            )));
        }
        for pair in tensors.windows(2) {
            if pair[1].begin < pair[0].end {
                return Err(invalid(format!(
                    "tensors '{}' (bytes {}..{}) and '{}' (bytes {}..{}) overlap",
                    pair[0].name,
                    pair[0].begin,
                    pair[0].end,
                    pair[1].name,
                    pair[1].begin,
                    pair[1].end
                )));
            }
        }
        Ok(Self {
            path,
            bytes,
            data_start,
            metadata,
            tensors,
        })
    }

    /// Where the file came from (its path, or the built-in network's name).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensors, in the order of their data in the file.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The `__metadata__` map, if the file has one.
    pub fn metadata(&self) -> Option<&BTreeMap<String, String>> {
        self.metadata.as_ref()
    }

    /// Lets the memory of a tensor's mapped pages go once it has been used, so that reading a large
    /// checkpoint keeps about one tensor resident rather than all it has read (the pages stay in
    /// the page cache; a later read maps them again).
    pub fn release(&self, tensor: &TensorInfo) {
        if let Bytes::Mapped(map) = &self.bytes {
            #[cfg(unix)]
            // SAFETY: the mapping is read-only and never written through, so dropping its pages only
            // means they are read again from the file if touched later: no data is lost and every
            // reference into the map still sees the file's bytes.
            unsafe {
                let _ = map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    self.data_start + tensor.begin,
                    tensor.end - tensor.begin,
                );
            }
            #[cfg(not(unix))]
            let _ = map;
        }
    }

    /// The whole file, when it is held in memory rather than mapped from disk.
    pub fn in_memory_bytes(&self) -> Option<&[u8]> {
        match &self.bytes {
            Bytes::Mapped(_) => None,
            Bytes::Owned(v) => Some(v),
        }
    }

    /// A tensor's raw little-endian bytes.
    pub fn data(&self, tensor: &TensorInfo) -> &[u8] {
        let all: &[u8] = match &self.bytes {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        };
        &all[self.data_start + tensor.begin..self.data_start + tensor.end]
    }
}

fn parse_metadata(entry: Value) -> std::result::Result<BTreeMap<String, String>, String> {
    let Value::Object(map) = entry else {
        return Err("__metadata__ is not a JSON object".into());
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            other => Err(format!(
                "__metadata__ value of '{k}' is {other}, expected a string"
            )),
        })
        .collect()
}

fn parse_tensor(
    name: &str,
    entry: Value,
    data_len: usize,
) -> std::result::Result<TensorInfo, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        dtype: String,
        shape: Vec<usize>,
        data_offsets: (usize, usize),
    }
    let entry: Entry = serde_json::from_value(entry)
        .map_err(|e| format!("expected {{\"dtype\", \"shape\", \"data_offsets\"}}: {e}"))?;
    let dtype: Dtype = serde_json::from_value(Value::String(entry.dtype.clone()))
        .map_err(|_| format!("unknown dtype '{}'", entry.dtype))?;
    let (begin, end) = entry.data_offsets;
    if begin > end {
        return Err(format!("data_offsets [{begin}, {end}] run backwards"));
    }
    if end > data_len {
        return Err(format!(
            "data_offsets [{begin}, {end}] extend beyond the data section ({data_len} bytes; truncated file?)"
        ));
    }
    let elements = if entry.shape.contains(&0) {
        0
    } else {
        entry
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("shape {:?} overflows", entry.shape))?
    };
    let expected = (elements as u128 * dtype.bitsize() as u128).div_ceil(8);
    if expected != (end - begin) as u128 {
        return Err(format!(
            "shape {:?} of {dtype:?} needs {expected} bytes but data_offsets [{begin}, {end}] hold {}",
            entry.shape,
            end - begin
        ));
    }
    Ok(TensorInfo {
        name: name.to_string(),
        dtype,
        shape: entry.shape,
        begin,
        end,
    })
}

/// A hint for files that are not safetensors but a format users confuse with it.
fn format_hint(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"PK\x03\x04") {
        " (this looks like a zip archive, e.g. a PyTorch .pth/.pt file: cs-init reads .safetensors)"
    } else if bytes.first() == Some(&0x80) {
        " (this looks like a Python pickle, e.g. a legacy PyTorch checkpoint: cs-init reads .safetensors)"
    } else {
        ""
    }
}

/// A JSON object's entries in file order, duplicates included (a map would keep only the last).
struct Entries(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}
