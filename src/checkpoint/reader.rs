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

/// Why a file is not a valid safetensors file. `hint` names a format mistaken for it, if any.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("the file is {len} bytes long, shorter than the 8-byte header length{hint}")]
    Short { len: usize, hint: &'static str },
    #[error("the header claims {claimed} bytes but only {available} follow the length field (truncated file?){hint}")]
    Truncated {
        claimed: u64,
        available: usize,
        hint: &'static str,
    },
    #[error("the header is {0} bytes, more than the 100 MB limit")]
    TooLarge(usize),
    #[error("the header is not UTF-8: {cause}{hint}")]
    NotUtf8 {
        cause: std::str::Utf8Error,
        hint: &'static str,
    },
    #[error("the header is not a JSON object: {cause}{hint}")]
    NotJson {
        cause: serde_json::Error,
        hint: &'static str,
    },
    #[error("the header names '{0}' twice")]
    Duplicate(String),
    #[error("__metadata__ is not a JSON object")]
    MetadataNotAnObject,
    #[error("__metadata__ value of '{key}' is {found}, expected a string")]
    MetadataNotAString { key: String, found: Value },
    #[error("bytes {from}..{to} of the data section belong to no tensor (before '{before}')")]
    Gap {
        from: usize,
        to: usize,
        before: String,
    },
    #[error("{0} bytes after the last tensor belong to no tensor")]
    Trailing(usize),
    #[error("tensors '{first}' (bytes {}..{}) and '{second}' (bytes {}..{}) overlap", .first_range.0, .first_range.1, .second_range.0, .second_range.1)]
    Overlap {
        first: String,
        first_range: (usize, usize),
        second: String,
        second_range: (usize, usize),
    },
}

/// Why a tensor's entry in the header is invalid.
#[derive(Debug, thiserror::Error)]
pub enum TensorEntryError {
    #[error("expected {{\"dtype\", \"shape\", \"data_offsets\"}}: {0}")]
    Fields(serde_json::Error),
    #[error("unknown dtype '{0}'")]
    UnknownDtype(String),
    #[error("data_offsets [{begin}, {end}] run backwards")]
    Backwards { begin: usize, end: usize },
    #[error("data_offsets [{begin}, {end}] extend beyond the data section ({data_len} bytes; truncated file?)")]
    BeyondData {
        begin: usize,
        end: usize,
        data_len: usize,
    },
    #[error("shape {0:?} overflows")]
    Overflow(Vec<usize>),
    #[error("shape {shape:?} of {dtype:?} needs {expected} bytes but data_offsets [{begin}, {end}] hold {}", .end - .begin)]
    Size {
        shape: Vec<usize>,
        dtype: Dtype,
        expected: u128,
        begin: usize,
        end: usize,
    },
}

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
        let invalid = |reason| CheckpointError::NotSafetensors {
            path: path.clone(),
            reason: Box::new(reason),
        };
        if all.len() < 8 {
            return Err(invalid(HeaderError::Short {
                len: all.len(),
                hint: format_hint(all),
            }));
        }
        let header_len = u64::from_le_bytes(all[..8].try_into().expect("8 bytes"));
        if header_len as u128 > (all.len() - 8) as u128 {
            return Err(invalid(HeaderError::Truncated {
                claimed: header_len,
                available: all.len() - 8,
                hint: format_hint(all),
            }));
        }
        let header_len = header_len as usize;
        if header_len > MAX_HEADER {
            return Err(invalid(HeaderError::TooLarge(header_len)));
        }
        let header = std::str::from_utf8(&all[8..8 + header_len]).map_err(|cause| {
            invalid(HeaderError::NotUtf8 {
                cause,
                hint: format_hint(all),
            })
        })?;
        let Entries(header) = serde_json::from_str(header.trim_end()).map_err(|cause| {
            invalid(HeaderError::NotJson {
                cause,
                hint: format_hint(all),
            })
        })?;
        let mut seen = std::collections::HashSet::new();
        if let Some((name, _)) = header.iter().find(|(name, _)| !seen.insert(name.as_str())) {
            return Err(invalid(HeaderError::Duplicate(name.clone())));
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
                    reason: Box::new(reason),
                }
            })?;
            tensors.push(info);
        }
        tensors.sort_by_key(|t| (t.begin, t.end));
        // As the reference implementation requires: the tensors tile the data section exactly.
        let mut covered = 0;
        for t in &tensors {
            if t.begin > covered {
                return Err(invalid(HeaderError::Gap {
                    from: covered,
                    to: t.begin,
                    before: t.name.clone(),
                }));
            }
            covered = covered.max(t.end);
        }
        if covered != data_len {
            return Err(invalid(HeaderError::Trailing(data_len - covered)));
        }
        for pair in tensors.windows(2) {
            if pair[1].begin < pair[0].end {
                return Err(invalid(HeaderError::Overlap {
                    first: pair[0].name.clone(),
                    first_range: (pair[0].begin, pair[0].end),
                    second: pair[1].name.clone(),
                    second_range: (pair[1].begin, pair[1].end),
                }));
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

fn parse_metadata(entry: Value) -> std::result::Result<BTreeMap<String, String>, HeaderError> {
    let Value::Object(map) = entry else {
        return Err(HeaderError::MetadataNotAnObject);
    };
    map.into_iter()
        .map(|(key, v)| match v {
            Value::String(s) => Ok((key, s)),
            found => Err(HeaderError::MetadataNotAString { key, found }),
        })
        .collect()
}

fn parse_tensor(
    name: &str,
    entry: Value,
    data_len: usize,
) -> std::result::Result<TensorInfo, TensorEntryError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        dtype: String,
        shape: Vec<usize>,
        data_offsets: (usize, usize),
    }
    let entry: Entry = serde_json::from_value(entry).map_err(TensorEntryError::Fields)?;
    let dtype: Dtype = serde_json::from_value(Value::String(entry.dtype.clone()))
        .map_err(|_| TensorEntryError::UnknownDtype(entry.dtype.clone()))?;
    let (begin, end) = entry.data_offsets;
    if begin > end {
        return Err(TensorEntryError::Backwards { begin, end });
    }
    if end > data_len {
        return Err(TensorEntryError::BeyondData {
            begin,
            end,
            data_len,
        });
    }
    let elements = if entry.shape.contains(&0) {
        0
    } else {
        entry
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| TensorEntryError::Overflow(entry.shape.clone()))?
    };
    let expected = (elements as u128 * dtype.bitsize() as u128).div_ceil(8);
    if expected != (end - begin) as u128 {
        return Err(TensorEntryError::Size {
            shape: entry.shape,
            dtype,
            expected,
            begin,
            end,
        });
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
