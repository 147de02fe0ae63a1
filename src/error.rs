//! The library's error type.

/// Errors of the cs-init library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    #[error("not a conv weight: shape {shape:?}: {reason}")]
    NotAConvWeight {
        shape: Vec<usize>,
        reason: &'static str,
    },

    #[error("unsupported dtype {dtype:?} for {what}: {expected}")]
    UnsupportedDType {
        dtype: candle_core::DType,
        what: &'static str,
        expected: &'static str,
    },

    #[error("invalid optimizer setting: {0}")]
    InvalidOptimizer(String),

    #[error("feature-map probe: {0}")]
    Probe(String),

    /// The caller's progress callback asked to stop; nothing was changed.
    #[error("stopped on request")]
    Stopped,
}

/// Result with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
