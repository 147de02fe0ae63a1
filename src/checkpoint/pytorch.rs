//! Reading PyTorch checkpoints (`.pth`, `.pt`, `.bin`, `.th`) without Python, so that they can
//! be converted to safetensors.
//!
//! Two layouts exist. Since PyTorch 1.6, `torch.save` writes a zip archive: `<folder>/data.pkl`
//! holds the pickled object and every storage is a file `<folder>/data/<key>`. Before that, the
//! file is a sequence of pickles: a magic number, a protocol version, a `sys_info` dict, the
//! object, and the list of storage keys, followed by each storage's data (an 8-byte
//! little-endian element count, then the elements) in that list's order.
//!
//! In both, a tensor is pickled as a call to `torch._utils._rebuild_tensor_v2(storage, offset,
//! size, stride, ...)` whose storage is a persistent id `('storage', torch.FloatStorage, key,
//! location, numel)`. The pickle is run by the small machine in [`super::pickle`], which never
//! imports anything; tensors are only described there, and their bytes are read afterwards for
//! the tensors of the state dict alone.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Read};
use std::ops::Range;
use std::path::Path;
use std::rc::Rc;

use zip::ZipArchive;

use super::pickle::{self, Entries, Global, Hooks, Value};
use super::{CheckpointError, Dtype};

/// One tensor of a PyTorch checkpoint, as contiguous little-endian row-major bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct PthTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// What was read, and what was left out or changed on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct PthCheckpoint {
    /// The tensors, in the state dict's order.
    pub tensors: Vec<PthTensor>,
    /// The top-level entry the state dict was found under, if it was not the top level itself.
    pub key: Option<String>,
    /// The prefix removed from every tensor name that had it, e.g. "module.".
    pub stripped_prefix: Option<String>,
    /// Entries that are not tensors, left out: (key, short description like "int 91").
    pub dropped: Vec<(String, String)>,
}

/// Entries tried in order, when the top level is not itself the state dict.
const STATE_DICT_KEYS: [&str; 8] = [
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "network",
    "module",
    "state",
    "weights",
];

/// The prefix `torch.nn.DataParallel` adds to every name.
const DATA_PARALLEL_PREFIX: &str = "module.";

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// The legacy format's magic number 0x1950a86a20f9469cfc6c, as the 10 little-endian bytes of a
/// pickled LONG1.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// The legacy format's protocol version, the only one ever written.
const LEGACY_VERSION: i128 = 1001;

/// True when the file starts like a PyTorch checkpoint (zip magic "PK\x03\x04" or the legacy
/// pickle magic), for choosing a reader. 24 bytes are enough to decide.
pub fn looks_like_pth(first_bytes: &[u8]) -> bool {
    first_bytes.starts_with(ZIP_MAGIC) || is_legacy(first_bytes)
}

/// Whether `bytes` start with the legacy format's first pickle: PROTO, a FRAME from protocol 4
/// on, then LONG1 with the magic number.
fn is_legacy(bytes: &[u8]) -> bool {
    let [0x80, _, rest @ ..] = bytes else {
        return false;
    };
    let rest = match rest {
        [0x95, _, _, _, _, _, _, _, _, after_frame @ ..] => after_frame,
        _ => rest,
    };
    match rest {
        [0x8a, 10, magic @ ..] => magic.starts_with(&LEGACY_MAGIC),
        _ => false,
    }
}

/// Reads a PyTorch checkpoint's state dict.
///
/// `key`: which top-level entry holds the state dict (None: automatic). `strip_prefix`: a prefix
/// to remove from every name (None: automatic removal of a `module.` prefix that every key has,
/// as DataParallel adds; `Some("")`: no removal at all).
pub fn read_pth(
    path: &Path,
    key: Option<&str>,
    strip_prefix: Option<&str>,
) -> Result<PthCheckpoint, CheckpointError> {
    with_parsed(path, |root, mut data| {
        let fail = |reason: String| CheckpointError::Input(format!("{}: {reason}", path.display()));
        let selected = select_state_dict(&root, key).map_err(fail)?;
        let (named, stripped_prefix) = strip_names(selected.tensors, strip_prefix).map_err(fail)?;
        let tensors = materialize(path, named, &mut data)?;
        Ok(PthCheckpoint {
            tensors,
            key: selected.key,
            stripped_prefix,
            dropped: selected.dropped,
        })
    })
}

/// Checks that `path` is a readable PyTorch checkpoint (its container and pickle), without
/// choosing the state dict: for accepting an upload whose `--key` is given later, with its job.
pub fn check_pth(path: &Path) -> Result<(), CheckpointError> {
    with_parsed(path, |_, _| Ok(()))
}

/// Maps and parses a checkpoint file, and hands its pickled root and storages to `then`.
fn with_parsed<R>(
    path: &Path,
    then: impl FnOnce(Value, StorageData<'_>) -> Result<R, CheckpointError>,
) -> Result<R, CheckpointError> {
    let io = |e| CheckpointError::io(path, e);
    let fail = |reason: String| CheckpointError::Input(format!("{}: {reason}", path.display()));
    let file = std::fs::File::open(path).map_err(io)?;
    if file.metadata().map_err(io)?.len() == 0 {
        return Err(fail("not a PyTorch checkpoint: the file is empty".into()));
    }
    // SAFETY: the map is read-only; cs-init never writes its inputs. A file truncated by
    // another process while mapped is outside what any mmap reader can defend against.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    let bytes: &[u8] = &map;

    let mut hooks = TorchHooks::default();
    let opened = if bytes.starts_with(ZIP_MAGIC) {
        open_zip(bytes, &mut hooks)
    } else if is_legacy(bytes) {
        open_legacy(bytes, &mut hooks)
    } else {
        let start: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(fail(format!(
            "not a PyTorch checkpoint: it starts with the bytes {}, neither a zip archive (PK\\x03\\x04) nor a legacy torch.save pickle",
            start.join(" ")
        )));
    };
    let (root, data) = opened.map_err(|e| unreadable(path, e))?;
    then(root, data)
}

fn unreadable(path: &Path, reason: String) -> CheckpointError {
    CheckpointError::Input(format!(
        "{}: unreadable PyTorch checkpoint: {reason}",
        path.display()
    ))
}

/// A storage named by a persistent id; its bytes are read once the pickle is done.
pub(super) struct StorageRef {
    pub(super) key: String,
    /// The storage class, e.g. `torch.FloatStorage`, for messages.
    class: String,
    /// None for a storage type this reader does not support.
    dtype: Option<Dtype>,
    /// Where a legacy storage view starts inside its key's data, in elements.
    view_offset: usize,
}

/// A tensor as pickled: a strided view of a storage, in elements.
pub(super) struct TensorRef {
    storage: Rc<StorageRef>,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

impl TensorRef {
    pub(super) fn describe(&self) -> String {
        match self.storage.dtype {
            Some(dtype) => format!("tensor {dtype:?} {:?}", self.shape),
            None => format!("tensor of {} {:?}", self.storage.class, self.shape),
        }
    }
}

/// The element type of a storage class (`torch.cuda` classes come from very old versions).
fn storage_dtype(class: &Global) -> Option<Dtype> {
    if class.module != "torch" && class.module != "torch.cuda" {
        return None;
    }
    Some(match class.name.as_str() {
        "DoubleStorage" => Dtype::F64,
        "FloatStorage" => Dtype::F32,
        "HalfStorage" => Dtype::F16,
        "BFloat16Storage" => Dtype::BF16,
        "ComplexFloatStorage" => Dtype::C64,
        "LongStorage" => Dtype::I64,
        "IntStorage" => Dtype::I32,
        "ShortStorage" => Dtype::I16,
        "CharStorage" => Dtype::I8,
        "ByteStorage" => Dtype::U8,
        "BoolStorage" => Dtype::BOOL,
        _ => return None,
    })
}

/// Interprets the persistent ids and the globals of torch.save's pickles.
#[derive(Default)]
struct TorchHooks {
    /// The first storage met under each key: the legacy format's data walk needs their types.
    storages: HashMap<String, Rc<StorageRef>>,
}

impl Hooks for TorchHooks {
    /// `('storage', torch.FloatStorage, key, location, numel[, view])`, where the legacy
    /// format's `view` is None or `(view_key, offset, size)` inside the key's storage.
    fn persistent_load(&mut self, pid: Value) -> Result<Value, String> {
        let unsupported = || format!("unsupported persistent id: {}", pid.describe());
        let Value::Tuple(fields) = &pid else {
            return Err(unsupported());
        };
        let [Value::Str(kind), Value::Global(class), key, _location, _numel, view @ ..] =
            fields.0.as_slice()
        else {
            return Err(unsupported());
        };
        if &**kind != "storage" {
            return Err(unsupported());
        }
        let view_offset = match view {
            [] | [Value::None] => 0,
            [Value::Tuple(view)] => match view.0.as_slice() {
                [_view_key, offset, _size] => as_usize(offset).ok_or_else(unsupported)?,
                _ => return Err(unsupported()),
            },
            _ => return Err(unsupported()),
        };
        let storage = Rc::new(StorageRef {
            key: key_text(key),
            class: class.to_string(),
            dtype: storage_dtype(class),
            view_offset,
        });
        match self.storages.entry(storage.key.clone()) {
            Entry::Occupied(first) if first.get().dtype != storage.dtype => {
                return Err(format!(
                    "storage '{}' is used both as {} and as {}",
                    storage.key,
                    first.get().class,
                    storage.class
                ))
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(slot) => {
                slot.insert(storage.clone());
            }
        }
        Ok(Value::Storage(storage))
    }

    fn call(&mut self, global: &Global, args: &[Value]) -> Result<Option<Value>, String> {
        let value = match (global.module.as_str(), global.name.as_str()) {
            ("collections", "OrderedDict") if args.is_empty() => Value::empty_dict(),
            ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2") => rebuild_tensor(args)?,
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                match args.first() {
                    Some(tensor @ Value::Tensor(_)) => tensor.clone(),
                    _ => return Err(format!("{global} expects a tensor first")),
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(value))
    }
}

/// `_rebuild_tensor(storage, offset, size, stride)`; `_rebuild_tensor_v2` adds arguments
/// (requires_grad, backward hooks, metadata) that do not change the data.
fn rebuild_tensor(args: &[Value]) -> Result<Value, String> {
    let [Value::Storage(storage), offset, Value::Tuple(size), Value::Tuple(stride), ..] = args
    else {
        return Err("_rebuild_tensor expects (storage, offset, size, stride, ...)".into());
    };
    let dims = |t: &pickle::Items| t.0.iter().map(as_usize).collect::<Option<Vec<_>>>();
    let (Some(offset), Some(shape), Some(stride)) = (as_usize(offset), dims(size), dims(stride))
    else {
        return Err(
            "a tensor's offset, size or stride is not made of non-negative integers".into(),
        );
    };
    if shape.len() != stride.len() {
        return Err(format!(
            "a tensor's size {shape:?} and stride {stride:?} differ in length"
        ));
    }
    Ok(Value::Tensor(Rc::new(TensorRef {
        storage: storage.clone(),
        offset,
        shape,
        stride,
    })))
}

fn as_usize(value: &Value) -> Option<usize> {
    match value {
        Value::Int(i) => usize::try_from(*i).ok(),
        _ => None,
    }
}

/// A dict key as text: strings as they are, other keys (e.g. an optimizer's parameter
/// numbers) described.
fn key_text(key: &Value) -> String {
    match key {
        Value::Str(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        other => other.describe(),
    }
}

/// Where the storages' bytes are.
enum StorageData<'a> {
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
    /// The bytes of storage `key`: read from the archive, or borrowed from the mapped file.
    fn load(&mut self, key: &str) -> Result<Cow<'a, [u8]>, String> {
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
fn open_zip<'a>(
    bytes: &'a [u8],
    hooks: &mut TorchHooks,
) -> Result<(Value, StorageData<'a>), String> {
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
    let capacity = usize::try_from(entry.size().min(limit)).unwrap_or(0);
    let mut data = Vec::with_capacity(capacity);
    entry
        .read_to_end(&mut data)
        .map_err(|e| format!("{shown}: {e} (corrupt file?)"))?;
    Ok(Some(data))
}

/// The legacy format: five pickles, then the storages' data.
fn open_legacy<'a>(
    bytes: &'a [u8],
    hooks: &mut TorchHooks,
) -> Result<(Value, StorageData<'a>), String> {
    let mut pos = 0;
    let mut next = |hooks: &mut TorchHooks| {
        let (value, len) = pickle::load(bytes.get(pos..).unwrap_or_default(), pos, hooks)?;
        pos += len;
        Ok::<_, String>(value)
    };
    next(hooks)?; // the magic number, already recognized by `is_legacy`
    let version = next(hooks)?;
    if !matches!(version, Value::Int(LEGACY_VERSION)) {
        return Err(format!(
            "unsupported legacy format version: {}",
            version.describe()
        ));
    }
    let sys_info = next(hooks)?;
    if matches!(
        dict_get(&sys_info, "little_endian"),
        Some(Value::Bool(false))
    ) {
        return Err(
            "saved on a big-endian machine; only little-endian checkpoints are supported".into(),
        );
    }
    let root = next(hooks)?;
    let keys = next(hooks)?;
    let Value::List(keys) = &keys else {
        return Err(format!(
            "the list of storages is a {}, not a list",
            keys.describe()
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
        let dtype = storage
            .dtype
            .ok_or_else(|| format!("storage '{key}' has the unsupported type {}", storage.class))?;
        let truncated = |what: String| {
            format!(
                "truncated file: storage '{key}' {what}, but the file ends at byte {}",
                bytes.len()
            )
        };
        let count = bytes
            .get(pos..pos + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| truncated(format!("starts at byte {pos}")))?;
        let start = pos + 8;
        pos = usize::try_from(count)
            .ok()
            .and_then(|count| count.checked_mul(dtype.bitsize() / 8))
            .and_then(|len| start.checked_add(len))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| {
                truncated(format!(
                    "of {count} {dtype:?} elements starts at byte {start}"
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
fn dict_get(dict: &Value, name: &str) -> Option<Value> {
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

/// Tensors by name, in the state dict's order.
type Named = Vec<(String, Rc<TensorRef>)>;

/// The state dict picked from a checkpoint: its tensors by name, and what was left out.
struct Selected {
    tensors: Named,
    key: Option<String>,
    dropped: Vec<(String, String)>,
}

/// Finds the state dict: the top level when all its values are tensors, else the entry `key`,
/// else the first of [`STATE_DICT_KEYS`] that is a dict holding tensors, else the top level if
/// it holds tensors among other things.
fn select_state_dict(root: &Value, key: Option<&str>) -> Result<Selected, String> {
    let Value::Dict(top) = root else {
        return Err(format!(
            "the checkpoint holds a {}, not a dict of tensors (was the whole model saved rather than its state_dict()?)",
            root.describe()
        ));
    };
    let top = top.borrow();
    let entries = top.0.as_slice();
    let is_tensor = |v: &Value| matches!(v, Value::Tensor(_));
    let position = |name: &str| {
        entries
            .iter()
            .position(|(k, _)| matches!(k, Value::Str(s) if &**s == name))
    };

    let chosen = match key {
        Some(key) => {
            let i = position(key).ok_or_else(|| {
                format!(
                    "no entry '{key}' at the top level of the checkpoint; its keys are {}",
                    list_keys(entries)
                )
            })?;
            let (_, value) = &entries[i];
            let dict = tensor_dict(value).ok_or_else(|| {
                format!(
                    "entry '{key}' is a {}, not a dict of tensors",
                    value.describe()
                )
            })?;
            Some((i, dict))
        }
        None if !entries.is_empty() && entries.iter().all(|(_, v)| is_tensor(v)) => None,
        None => {
            let found = STATE_DICT_KEYS.iter().find_map(|name| {
                let i = position(name)?;
                Some((i, tensor_dict(&entries[i].1)?))
            });
            if found.is_none() && !entries.iter().any(|(_, v)| is_tensor(v)) {
                return Err(format!(
                    "no state dict found: none of the top-level entries {} is a dict of tensors; name the one that holds the state dict",
                    list_keys(entries)
                ));
            }
            found
        }
    };

    let mut selected = Selected {
        tensors: Vec::new(),
        key: None,
        dropped: Vec::new(),
    };
    let mut sort = |entries: &[(Value, Value)]| {
        for (k, v) in entries {
            match v {
                Value::Tensor(t) => selected.tensors.push((key_text(k), t.clone())),
                other => selected.dropped.push((key_text(k), other.describe())),
            }
        }
    };
    match chosen {
        Some((i, state)) => {
            sort(&state.borrow().0);
            for (j, (k, v)) in entries.iter().enumerate() {
                if j == i {
                    selected.key = Some(key_text(k));
                } else {
                    selected.dropped.push((key_text(k), v.describe()));
                }
            }
        }
        None => sort(entries),
    }
    Ok(selected)
}

/// The entries of `value` if it is a dict holding at least one tensor.
fn tensor_dict(value: &Value) -> Option<&RefCell<Entries>> {
    match value {
        Value::Dict(dict)
            if dict
                .borrow()
                .0
                .iter()
                .any(|(_, v)| matches!(v, Value::Tensor(_))) =>
        {
            Some(dict)
        }
        _ => None,
    }
}

/// Up to 20 keys, quoted, for messages.
fn list_keys(entries: &[(Value, Value)]) -> String {
    let mut keys: Vec<String> = entries
        .iter()
        .take(20)
        .map(|(k, _)| format!("'{}'", key_text(k)))
        .collect();
    if entries.len() > keys.len() {
        keys.push(format!("... ({} more)", entries.len() - keys.len()));
    }
    if keys.is_empty() {
        "none (the dict is empty)".into()
    } else {
        keys.join(", ")
    }
}

/// Removes `strip_prefix` (None: a `module.` prefix that every name has) from the names that
/// have it, and checks that the names stay distinct and non-empty.
fn strip_names(
    tensors: Named,
    strip_prefix: Option<&str>,
) -> Result<(Named, Option<String>), String> {
    let prefix = match strip_prefix {
        Some("") => None,
        Some(p) if tensors.iter().any(|(name, _)| name.starts_with(p)) => Some(p),
        Some(p) => {
            let first = tensors.first().map_or("", |(name, _)| name.as_str());
            return Err(format!(
                "no tensor name starts with the prefix '{p}' to strip (the first name is '{first}')"
            ));
        }
        None => (!tensors.is_empty()
            && tensors
                .iter()
                .all(|(name, _)| name.starts_with(DATA_PARALLEL_PREFIX)))
        .then_some(DATA_PARALLEL_PREFIX),
    };
    let mut seen = HashSet::new();
    let mut named = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let name = match prefix.and_then(|p| name.strip_prefix(p)) {
            Some(stripped) => stripped.to_string(),
            None => name,
        };
        if name.is_empty() {
            return Err("a tensor's name is empty".into());
        }
        if !seen.insert(name.clone()) {
            let after = prefix.map_or(String::new(), |p| format!(" once '{p}' is removed"));
            return Err(format!("two tensors are named '{name}'{after}"));
        }
        named.push((name, tensor));
    }
    Ok((named, prefix.map(String::from)))
}

/// Reads the tensors' bytes. Each storage is loaded once and kept only while tensors still
/// need it; the last tensor of a storage takes its bytes without a copy when it covers the
/// storage exactly.
fn materialize(
    path: &Path,
    named: Named,
    data: &mut StorageData,
) -> Result<Vec<PthTensor>, CheckpointError> {
    let mut uses: HashMap<String, usize> = HashMap::new();
    for (_, tensor) in &named {
        *uses.entry(tensor.storage.key.clone()).or_default() += 1;
    }
    let mut loaded: HashMap<String, Cow<[u8]>> = HashMap::new();
    let mut tensors = Vec::with_capacity(named.len());
    for (name, tensor) in named {
        let bad = |reason: String| CheckpointError::BadTensor {
            path: path.to_path_buf(),
            tensor: name.clone(),
            reason,
        };
        let storage = &tensor.storage;
        let dtype = storage
            .dtype
            .ok_or_else(|| bad(format!("unsupported storage type {}", storage.class)))?;
        let bytes = match loaded.remove(&storage.key) {
            Some(bytes) => bytes,
            None => data.load(&storage.key).map_err(|e| unreadable(path, e))?,
        };
        let left = uses.get_mut(&storage.key).map_or(0, |n| {
            *n = n.saturating_sub(1);
            *n
        });
        let start = storage
            .view_offset
            .checked_add(tensor.offset)
            .ok_or_else(|| bad("the storage offset overflows".into()))?;
        let elem = dtype.bitsize() / 8;
        let gathered = if left == 0 {
            take_or_gather(bytes, elem, start, &tensor.shape, &tensor.stride)
        } else {
            let gathered = gather(&bytes, elem, start, &tensor.shape, &tensor.stride);
            loaded.insert(storage.key.clone(), bytes);
            gathered
        };
        let data = gathered.map_err(|e| bad(format!("storage '{}': {e}", storage.key)))?;
        tensors.push(PthTensor {
            name,
            dtype,
            shape: tensor.shape.clone(),
            data,
        });
    }
    Ok(tensors)
}

/// The tensor's bytes, moving `bytes` when they are exactly the tensor.
fn take_or_gather(
    bytes: Cow<[u8]>,
    elem: usize,
    start: usize,
    shape: &[usize],
    stride: &[usize],
) -> Result<Vec<u8>, String> {
    let exact = |len: usize| {
        start == 0
            && is_contiguous(shape, stride)
            && shape
                .iter()
                .try_fold(elem, |n, &d| n.checked_mul(d))
                .is_some_and(|size| size == len)
    };
    match bytes {
        Cow::Owned(owned) if exact(owned.len()) => Ok(owned),
        bytes => gather(&bytes, elem, start, shape, stride),
    }
}

/// Whether a view with these strides reads its elements in row-major order without gaps.
fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&size, &step) in shape.iter().zip(stride).rev() {
        if size != 1 && step != expected {
            return false;
        }
        expected = expected.saturating_mul(size);
    }
    true
}

/// Copies the elements of a strided view of `src` (in elements of `elem` bytes, starting at
/// element `start`) into contiguous row-major bytes.
fn gather(
    src: &[u8],
    elem: usize,
    start: usize,
    shape: &[usize],
    stride: &[usize],
) -> Result<Vec<u8>, String> {
    let overflow = || format!("the shape {shape:?} is too large");
    let numel = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(overflow)?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    // The last element the view reads; every size is at least 1 here.
    let last = shape
        .iter()
        .zip(stride)
        .try_fold(start, |at, (&size, &step)| {
            (size - 1).checked_mul(step)?.checked_add(at)
        })
        .ok_or_else(overflow)?;
    let available = src.len() / elem;
    if last >= available {
        return Err(format!(
            "a view at offset {start} with size {shape:?} and stride {stride:?} needs {} elements, but the storage holds {available} (truncated or corrupt file?)",
            last + 1
        ));
    }
    if is_contiguous(shape, stride) {
        return Ok(src[start * elem..(start + numel) * elem].to_vec());
    }
    let mut out = Vec::with_capacity(numel * elem);
    let mut index = vec![0usize; shape.len()];
    let mut at = start;
    loop {
        out.extend_from_slice(&src[at * elem..(at + 1) * elem]);
        // Next index, the last dimension fastest; `at` never passes `last`.
        let mut dim = shape.len();
        loop {
            if dim == 0 {
                return Ok(out);
            }
            dim -= 1;
            if index[dim] + 1 < shape[dim] {
                index[dim] += 1;
                at += stride[dim];
                break;
            }
            at -= stride[dim] * index[dim];
            index[dim] = 0;
        }
    }
}
