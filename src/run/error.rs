//! Why a run did not complete, sorted by what the caller should do about it.

use super::SettingsError;
use crate::checkpoint::CheckpointError;
use crate::device::DeviceError;

/// Why a run did not complete. Whatever the reason, no output was left behind.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A setting makes no sense (the command line's exit code 2, the service's 422).
    #[error("{0}")]
    Settings(#[from] SettingsError),

    /// The input cannot be found or read, or an output cannot be written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),

    #[error(transparent)]
    Device(#[from] DeviceError),

    /// The input holds no tensor that the selection rules make a conv weight to optimize.
    #[error("{origin}: no conv layer to optimize among its {count} tensors ({names}); `cs-init plan` shows why each was left out")]
    NoConvLayers {
        origin: String,
        count: usize,
        names: String,
    },

    /// No conv weight handed over in memory (a model's) is one the selection rules optimize.
    #[error("{origin}: no conv layer to optimize among its {count} conv weights ({reasons})")]
    NothingSelected {
        origin: String,
        count: usize,
        reasons: String,
    },

    /// The outputs would replace the input, each other, or existing files.
    #[error("{0}")]
    Output(String),

    /// The observer asked the run to stop.
    #[error("stopped on request; no output was written")]
    Stopped,

    /// A computation failed (candle, the feature-map probe).
    #[error(transparent)]
    Compute(crate::Error),
}

impl From<crate::Error> for RunError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Stopped => RunError::Stopped,
            other => RunError::Compute(other),
        }
    }
}

impl From<candle_core::Error> for RunError {
    fn from(e: candle_core::Error) -> Self {
        RunError::Compute(crate::Error::Candle(e))
    }
}
