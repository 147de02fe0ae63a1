//! The two files torch.save writes around its pickle: the zip archive of PyTorch ≥ 1.6 and the
//! legacy sequence of pickles followed by raw storages. Both give the pickled object and where
//! each storage's bytes are.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::ops::Range;

use zip::ZipArchive;

use super::pickle::{self, Loaded, Value};
use super::torch::{TorchHooks, TorchObject, TorchValue};

/// The legacy format's protocol version, the only one ever written.
const LEGACY_VERSION: i128 = 1001;

/// Where the storages' bytes are.
pub(super) enum StorageData<'a> {
    Zip {
        archive: ZipArchive<Cursor<&'a [u8]>>,
        /// The archive's folder, with its trailing slash.
        folder: Vec<u8>,
    },
    Legacy {
        file: &'a [u8],
        /// Where each key's data lies in the file.
        ranges: HashMap<String, Range<usize>>,
    },
}

impl<'a> StorageData<'a> {
    /// The bytes of storage `key`: read from the archive, or borrowed from the file.
    pub(super) fn load(&mut self, key: &str) -> Result<Cow<'a, [u8]>, String> {
        match self {
            StorageData::Zip { archive, folder } => {
                let name = [folder.as_slice(), b"data/", key.as_bytes()].concat();
                let data = read_entry(archive, &name)?.ok_or_else(|| {
                    format!(
                        "storage '{key}' is missing from the archive (no entry {})",
                        String::from_utf8_lossy(&name)
                    )
                })?;
                Ok(Cow::Owned(data))
            }
            StorageData::Legacy { file, ranges } => {
                let file: &'a [u8] = file;
                ranges
                    .get(key)
                    .and_then(|range| file.get(range.clone()))
                    .map(Cow::Borrowed)
                    .ok_or_else(|| format!("storage '{key}' is not in the file's storage list"))
            }
        }
    }
}

/// The zip format: `<folder>/data.pkl`, `<folder>/data/<key>`, and from PyTorch 2.1 on
/// `<folder>/byteorder`.
pub(super) fn open_zip<'a>(
    bytes: &'a [u8],
    hooks: &mut TorchHooks,
) -> Result<(Loaded<TorchObject>, StorageData<'a>), String> {
    let mut archive = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("not a readable zip archive (truncated file?): {e}"))?;
    // The folder's name varies ("archive", or the file's stem in older versions): the pickle
    // closest to the root is the checkpoint's.
    let pickle_name = archive
        .file_names_raw()
        .filter(|name| *name == b"data.pkl" || name.ends_with(b"/data.pkl"))
        .min_by_key(|name| name.iter().filter(|&&b| b == b'/').count())
        .map(<[u8]>::to_vec)
        .ok_or("a zip archive without <folder>/data.pkl, so not a PyTorch checkpoint")?;
    let folder = pickle_name
        .strip_suffix(b"data.pkl")
        .unwrap_or_default()
        .to_vec();
    let shown = String::from_utf8_lossy(&pickle_name).into_owned();

    let byteorder = [folder.as_slice(), b"byteorder"].concat();
    if let Some(order) = read_entry(&mut archive, &byteorder)? {
        if order != b"little" {
            return Err(format!(
                "saved with byte order '{}'; only little-endian checkpoints are supported",
                String::from_utf8_lossy(&order)
            ));
        }
    }
    let pickle = read_entry(&mut archive, &pickle_name)?
        .ok_or_else(|| format!("{shown} cannot be opened"))?;
    let (root, _) = pickle::load(&pickle, 0, hooks).map_err(|e| format!("{shown}: {e}"))?;
    Ok((root, StorageData::Zip { archive, folder }))
}

/// An archive entry's bytes, or None when there is no such entry.
fn read_entry(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    name: &[u8],
) -> Result<Option<Vec<u8>>, String> {
    let shown = String::from_utf8_lossy(name);
    // The entries lie before the central directory: no more is reserved for an entry's claimed
    // size, which could be anything in a corrupt file.
    let limit = archive.central_directory_start();
    let Some(index) = archive.index_for_name_raw(name) else {
        return Ok(None);
    };
    let mut entry = archive
        .by_index(index)
        .map_err(|e| format!("{shown}: {e}"))?;
    let declared = entry.size();
    let capacity = usize::try_from(declared.min(limit)).unwrap_or(0);
    let mut data = Vec::with_capacity(capacity);
    // Never more than the declared size, whatever a compressed stream expands to.
    entry
        .by_ref()
        .take(declared)
        .read_to_end(&mut data)
        .map_err(|e| format!("{shown}: {e} (corrupt file?)"))?;
    // Reading on to the end of the entry is what makes the archive check its CRC.
    let longer = entry
        .read(&mut [0u8; 1])
        .map_err(|e| format!("{shown}: {e} (corrupt file?)"))?
        > 0;
    if longer || data.len() as u64 != declared {
        return Err(format!(
            "{shown}: its data does not have the {declared} bytes its header declares (corrupt file?)"
        ));
    }
    Ok(Some(data))
}

/// The legacy format: five pickles, then the storages' data.
pub(super) fn open_legacy<'a>(
    bytes: &'a [u8],
    hooks: &mut TorchHooks,
) -> Result<(Loaded<TorchObject>, StorageData<'a>), String> {
    let mut pos = 0;
    let mut next = |hooks: &mut TorchHooks| {
        let (value, len) = pickle::load(bytes.get(pos..).unwrap_or_default(), pos, hooks)?;
        pos += len;
        Ok::<_, String>(value)
    };
    next(hooks)?; // the magic number, already recognized by `is_legacy`
    let version = next(hooks)?;
    if !matches!(version.value, Value::Int(LEGACY_VERSION)) {
        return Err(format!(
            "unsupported legacy format version: {}",
            version.value.describe()
        ));
    }
    let sys_info = next(hooks)?;
    if matches!(
        dict_get(&sys_info.value, "little_endian"),
        Some(Value::Bool(false))
    ) {
        return Err(
            "saved on a big-endian machine; only little-endian checkpoints are supported".into(),
        );
    }
    let root = next(hooks)?;
    let keys = next(hooks)?;
    let Value::List(keys) = &keys.value else {
        return Err(format!(
            "the list of storages is a {}, not a list",
            keys.value.describe()
        ));
    };

    let mut ranges = HashMap::new();
    for key in &keys.borrow().0 {
        let Value::Str(key) = key else {
            return Err(format!("a storage key is a {}", key.describe()));
        };
        let storage = hooks.storages.get(&**key).ok_or_else(|| {
            format!("the list of storages names '{key}', which the pickle never refers to")
        })?;
        let element_size = storage.element_size.ok_or_else(|| {
            format!(
                "storage '{key}' has the type {}, which torch.save does not write, so its size is unknown",
                storage.class
            )
        })?;
        let truncated = |what: String| {
            format!(
                "truncated file: storage '{key}' {what}, but the file ends at byte {}",
                bytes.len()
            )
        };
        let count = bytes
            .get(pos..pos.saturating_add(8))
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| truncated(format!("starts at byte {pos}")))?;
        let start = pos + 8;
        pos = usize::try_from(count)
            .ok()
            .and_then(|count| count.checked_mul(element_size))
            .and_then(|len| start.checked_add(len))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| {
                truncated(format!(
                    "of {count} {} elements starts at byte {start}",
                    storage.class
                ))
            })?;
        ranges.insert(key.to_string(), start..pos);
    }
    Ok((
        root,
        StorageData::Legacy {
            file: bytes,
            ranges,
        },
    ))
}

/// The value under the string key `name` of a dict.
fn dict_get(dict: &TorchValue, name: &str) -> Option<TorchValue> {
    let Value::Dict(dict) = dict else {
        return None;
    };
    let entries = dict.borrow();
    entries
        .0
        .iter()
        .find(|(k, _)| matches!(k, Value::Str(s) if &**s == name))
        .map(|(_, v)| v.clone())
}
