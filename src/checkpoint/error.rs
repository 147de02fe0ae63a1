//! Errors that name the file and the tensor, and say what was expected.

use std::path::PathBuf;

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    // The cause is in the message, not in `source()`, so `{:#}` does not print it twice.
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("{}: not a valid safetensors file: {reason}", path.display())]
    NotSafetensors { path: PathBuf, reason: String },

    #[error("{}: tensor '{tensor}': {reason}", path.display())]
    BadTensor {
        path: PathBuf,
        tensor: String,
        reason: String,
    },

    #[error("{}: invalid sharded-checkpoint index: {reason}", path.display())]
    BadIndex { path: PathBuf, reason: String },

    /// A Hub file that is not in the local cache while downloads are off.
    #[error("{reference} ({file}): not in the Hub cache {} and HF_HUB_OFFLINE is set; download it once with network access, or unset HF_HUB_OFFLINE", cache.display())]
    NotInHubCache {
        reference: String,
        file: String,
        cache: PathBuf,
    },

    #[error("{}: already exists; pass --force to overwrite it, or choose another path with -o", path.display())]
    OutputExists { path: PathBuf },

    /// INPUT names no file, directory or built-in network.
    #[error("{input}: no such file or directory, and not a built-in architecture ({builtins})")]
    NoSuchInput { input: String, builtins: String },

    #[error("{input}: not a built-in architecture ({builtins})")]
    UnknownBuiltIn { input: String, builtins: String },

    #[error("{}: a directory without {index}; pass a .safetensors file or a sharded checkpoint's directory", path.display())]
    DirectoryWithoutIndex { path: PathBuf, index: &'static str },

    #[error("built-in {arch}: {reason}")]
    BuiltIn { arch: String, reason: String },

    #[error("{input}: {why}; expected hf://OWNER/NAME[@REVISION][/PATH]")]
    BadHubReference { input: String, why: String },

    /// A Hub file could not be found or downloaded.
    #[error("{reference} ({file}): {why}")]
    Hub {
        reference: String,
        file: String,
        why: String,
    },

    #[error("{reference}: the repository has neither {single} nor {index}; name a file with {reference}/FILE")]
    NoCheckpointInRepo {
        reference: String,
        single: &'static str,
        index: &'static str,
    },

    #[error("{reference}: the Hub cache's ref {} holds '{content}', not a commit hash; the cache is damaged: delete that file (it is downloaded again when needed)", ref_path.display())]
    DamagedHubCache {
        reference: String,
        ref_path: PathBuf,
        content: String,
    },

    #[error("{}: not a PyTorch checkpoint: {reason}", path.display())]
    NotPyTorch { path: PathBuf, reason: String },

    #[error("{}: unreadable PyTorch checkpoint: {reason}", path.display())]
    UnreadablePyTorch { path: PathBuf, reason: String },

    /// The file reads, but holds no state dict as asked (`--key`, `--strip-prefix`).
    #[error("{}: {reason}", path.display())]
    StateDict { path: PathBuf, reason: String },

    #[error("{}: is a directory; give a file name", path.display())]
    OutputIsDirectory { path: PathBuf },

    #[error("{}: will not replace it ({why}); remove it yourself or choose another -o", path.display())]
    WillNotReplace { path: PathBuf, why: String },

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl CheckpointError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CheckpointError::Io {
            path: path.into(),
            cause: source,
        }
    }
}
