//! Reading PyTorch checkpoints (`.pth`, `.pt`, `.bin`, `.th`) without Python, so that they can
//! be converted to safetensors.
//!
//! Two layouts exist ([`container`]). Since PyTorch 1.6, `torch.save` writes a zip archive:
//! `<folder>/data.pkl` holds the pickled object and every storage is a file `<folder>/data/<key>`.
//! Before that, the file is a sequence of pickles: a magic number, a protocol version, a
//! `sys_info` dict, the object, and the list of storage keys, followed by each storage's data (an
//! 8-byte little-endian element count, then the elements) in that list's order.
//!
//! In both, a tensor is pickled as a call to `torch._utils._rebuild_tensor_v2(storage, offset,
//! size, stride, ...)` whose storage is a persistent id `('storage', torch.FloatStorage, key,
//! location, numel)`. The pickle is run by the small machine in [`pickle`], which never imports
//! anything and knows nothing of PyTorch; [`torch`] tells it what PyTorch's ids and globals
//! mean. Tensors are only described there; [`state_dict`] picks the state dict, and [`gather`]
//! reads the bytes of its tensors alone.

mod container;
mod gather;
mod pickle;
mod state_dict;
mod torch;

use std::path::Path;

use self::container::{open_legacy, open_zip, StorageData};
use self::pickle::Loaded;
use self::state_dict::{select_state_dict, shared_prefix, strip_names};
use self::torch::{TorchHooks, TorchObject};
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
    /// A prefix that every tensor name still has, e.g. "model." in a Lightning checkpoint: the
    /// names a loader of the bare network expects would need `--strip-prefix` to remove it.
    pub shared_prefix: Option<String>,
    /// Entries that are not tensors, left out: (key, short description like "int 91").
    pub dropped: Vec<(String, String)>,
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// The legacy format's magic number 0x1950a86a20f9469cfc6c, as the 10 little-endian bytes of a
/// pickled LONG1.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

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
    with_mapped(path, |bytes| read_pth_bytes(path, bytes, key, strip_prefix))
}

/// Checks that `path` is a readable PyTorch checkpoint (its container and pickle), without
/// choosing the state dict: for accepting an upload whose `--key` is given later, with its job.
pub fn check_pth(path: &Path) -> Result<(), CheckpointError> {
    with_mapped(path, |bytes| {
        let mut hooks = TorchHooks::default();
        open(path, bytes, &mut hooks).map(|_| ())
    })
}

/// Maps the file (an empty one as no bytes) and hands its bytes to `then`.
fn with_mapped<R>(
    path: &Path,
    then: impl FnOnce(&[u8]) -> Result<R, CheckpointError>,
) -> Result<R, CheckpointError> {
    let io = |e| CheckpointError::io(path, e);
    let file = std::fs::File::open(path).map_err(io)?;
    if file.metadata().map_err(io)?.len() == 0 {
        return then(&[]);
    }
    // SAFETY: the map is read-only; cs-init never writes its inputs. A file truncated by
    // another process while mapped is outside what any mmap reader can defend against.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    then(&map)
}

/// Reads a PyTorch checkpoint's state dict from the file's bytes, as [`read_pth`] does; `origin`
/// names the file in errors.
pub fn read_pth_bytes(
    origin: &Path,
    bytes: &[u8],
    key: Option<&str>,
    strip_prefix: Option<&str>,
) -> Result<PthCheckpoint, CheckpointError> {
    let fail = |reason: String| CheckpointError::StateDict {
        path: origin.into(),
        reason,
    };
    let mut hooks = TorchHooks::default();
    // `root` keeps what the pickle built alive (and takes it apart once dropped) while the
    // tensors found in it are read.
    let (root, mut data) = open(origin, bytes, &mut hooks)?;

    let selected = select_state_dict(&root.value, key).map_err(fail)?;
    let (named, stripped_prefix) = strip_names(selected.tensors, strip_prefix).map_err(fail)?;
    let shared_prefix = shared_prefix(named.iter().map(|(name, _)| name.as_str()));
    let tensors = gather::materialize(origin, named, &mut data)?;
    Ok(PthCheckpoint {
        tensors,
        key: selected.key,
        stripped_prefix,
        shared_prefix,
        dropped: selected.dropped,
    })
}

/// The container and its pickle, read: what the pickle built and the storages' bytes.
fn open<'a>(
    origin: &Path,
    bytes: &'a [u8],
    hooks: &mut TorchHooks,
) -> Result<(Loaded<TorchObject>, StorageData<'a>), CheckpointError> {
    let fail = |reason: String| CheckpointError::NotPyTorch {
        path: origin.into(),
        reason,
    };
    if bytes.is_empty() {
        return Err(fail("the file is empty".into()));
    }
    let opened = if bytes.starts_with(ZIP_MAGIC) {
        open_zip(bytes, hooks)
    } else if is_legacy(bytes) {
        open_legacy(bytes, hooks)
    } else {
        let start: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(fail(format!(
            "it starts with the bytes {}, neither a zip archive (PK\\x03\\x04) nor a legacy torch.save pickle",
            start.join(" ")
        )));
    };
    opened.map_err(|e| unreadable(origin, e))
}

fn unreadable(path: &Path, reason: String) -> CheckpointError {
    CheckpointError::UnreadablePyTorch {
        path: path.into(),
        reason,
    }
}
