//! The service's errors: what went wrong, in words that say what to fix, and which kind of
//! failure it is. The HTTP layer maps each kind to a status once (`http/error.rs`).

use cs_init::checkpoint::CheckpointError;
use cs_init::run::RunError;

/// Kinds of failure, each one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is well-formed but its content is wrong (422).
    Invalid,
    /// Malformed request syntax (400).
    Malformed,
    /// Not allowed by the server's configuration (403).
    Forbidden,
    /// No such job, upload or file (404).
    NotFound,
    /// The result existed but was deleted by retention (410).
    Gone,
    /// The job is in a state that does not allow it (409).
    Conflict,
    /// The body is larger than the server accepts (413).
    TooLarge,
    /// The queue is full: try again later (429).
    Busy,
    /// The server itself failed (500).
    Internal,
}

/// A failure with a stable machine-readable code and a message for people.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    pub kind: ErrorKind,
    /// Stable, snake_case: `invalid_setting`, `upload_not_found`, ...
    pub code: &'static str,
    pub message: String,
    /// Seconds after which a retry may succeed (`Busy`).
    pub retry_after: Option<u64>,
}

impl ServiceError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Internal, "internal", message.to_string())
    }
}

impl From<crate::store::StoreError> for ServiceError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::internal(format!("job store: {e}"))
    }
}

impl From<std::io::Error> for ServiceError {
    fn from(e: std::io::Error) -> Self {
        Self::internal(e)
    }
}

/// The stable code of a run's failure, as a job's `error.code` and a request's 422.
pub fn run_error_code(e: &RunError) -> &'static str {
    match e {
        RunError::Settings(_) => "invalid_setting",
        RunError::Checkpoint(e) => match e {
            CheckpointError::NotInHubCache { .. }
            | CheckpointError::Hub { .. }
            | CheckpointError::NoCheckpointInRepo { .. } => "input_unavailable",
            CheckpointError::NoSuchInput { .. }
            | CheckpointError::UnknownBuiltIn { .. }
            | CheckpointError::DirectoryWithoutIndex { .. } => "input_not_found",
            CheckpointError::Io { .. } => "input_unreadable",
            CheckpointError::OutputExists { .. }
            | CheckpointError::OutputIsDirectory { .. }
            | CheckpointError::WillNotReplace { .. } => "output_conflict",
            _ => "bad_input",
        },
        RunError::NoConvLayers { .. } | RunError::NothingSelected { .. } => "no_conv_layer",
        RunError::Device(_) => "device_unavailable",
        RunError::Output(_) => "output_conflict",
        RunError::Stopped => "stopped",
        RunError::Compute(_) => "compute_failed",
    }
}
