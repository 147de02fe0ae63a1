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

    #[error("{0}")]
    Input(String),

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
