//! The JSON the API speaks: the job object, uploads, errors, progress and results.

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::store::{JobRow, JobState, UploadRow};
use cs_init::run::RunSettings;

/// An RFC 3339 timestamp (UTC, milliseconds) of milliseconds since the epoch.
pub fn timestamp(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case (`invalid_setting`, `upload_not_found`, `queue_full`, ...).
    pub code: String,
    /// What went wrong and what to do about it.
    pub message: String,
}

/// `POST /v1/jobs`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// `upload:<id>`, `hf://OWNER/NAME[@REV][/PATH]`, `builtin:<arch>` (cnn1, cnn2, resnet18,
    /// resnet50), or a path under one of the server's `--allow-dir`s.
    #[schema(example = "builtin:resnet18")]
    pub input: String,
    /// The command line's options; omitted fields take the command line's defaults.
    #[serde(default)]
    pub settings: RunSettings,
}

/// An accepted upload.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UploadView {
    pub id: String,
    /// SHA-256 of the bytes received, hex.
    pub sha256: String,
    pub size: u64,
    /// `safetensors` or `pytorch`.
    pub format: String,
    /// The name given with `?name=`, used to name the outputs.
    pub name: String,
    /// Use as a job's `input`.
    pub input: String,
    pub created_at: String,
}

impl From<&UploadRow> for UploadView {
    fn from(u: &UploadRow) -> Self {
        Self {
            id: u.id.clone(),
            sha256: u.sha256.clone(),
            size: u.size,
            format: u.format.clone(),
            name: u.name.clone(),
            input: format!("upload:{}", u.id),
            created_at: timestamp(u.created_at),
        }
    }
}

/// How far a running job is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// The conv tensor being optimized, counting from 1 (0 before the first).
    pub layer: usize,
    /// Conv tensors to optimize.
    pub layers: usize,
    /// The tensor's name.
    pub tensor: Option<String>,
    /// Iteration of the current tensor.
    pub iteration: usize,
    pub iterations: usize,
    /// L_CS of the current tensor at `iteration`.
    pub loss: Option<f64>,
    /// Conv tensors finished (optimized, skipped or diverged).
    pub layers_done: usize,
}

/// A file of a result, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFile {
    /// The name in URLs (`/v1/jobs/{id}/files/{name}`).
    pub name: String,
    /// Where it is inside the job's directory.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// A succeeded job's files and totals, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResult {
    /// The checkpoint: one file, or every shard and the index.
    pub files: Vec<StoredFile>,
    pub report: StoredFile,
    pub plot: StoredFile,
    /// The report's `totals`.
    pub totals: serde_json::Value,
    /// Some layer diverged and kept its input weights.
    pub diverged: bool,
}

impl StoredResult {
    /// Every file, checkpoint first.
    pub fn all_files(&self) -> impl Iterator<Item = &StoredFile> {
        self.files.iter().chain([&self.report, &self.plot])
    }

    /// Where every file is inside the job's directory (and under its key in an object store).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.all_files().map(|f| f.path.as_str())
    }
}

/// A file of a result, with its link.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileView {
    pub name: String,
    pub size: u64,
    /// SHA-256, hex; also the file's ETag.
    pub sha256: String,
    pub url: String,
}

/// A succeeded job's outputs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResultView {
    /// The checkpoint: one file, or every shard and the index.
    pub files: Vec<FileView>,
    pub report: FileView,
    pub plot: FileView,
    /// The report's totals (tensors, optimized, skipped, diverged, loss before/after, seconds).
    #[schema(value_type = Object)]
    pub totals: serde_json::Value,
    pub diverged: bool,
    /// The job whose result this one reuses (same input bytes, settings and version).
    pub cached_from: Option<String>,
    /// Retention deleted the files; the figures remain.
    pub expired: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobLinks {
    #[serde(rename = "self")]
    pub this: String,
    pub events: String,
    pub cancel: String,
}

/// A job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub state: JobState,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub input: String,
    /// The effective settings: the request's, with every default filled in.
    pub settings: RunSettings,
    /// How many times a worker started it (a restart re-runs a job that was running).
    pub attempts: i64,
    pub cancel_requested: bool,
    /// While it runs: the id of the server running it (each server prints its id when it
    /// starts; several replicas share one store).
    pub server: Option<String>,
    pub progress: Option<Progress>,
    pub error: Option<ErrorDetail>,
    pub result: Option<ResultView>,
    pub links: JobLinks,
}

/// A page of jobs, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

fn file_view(file: &StoredFile, url: String) -> FileView {
    FileView {
        name: file.name.clone(),
        size: file.size,
        sha256: file.sha256.clone(),
        url,
    }
}

impl JobView {
    /// The job as stored; `live` replaces the stored progress of a running job.
    pub fn new(row: &JobRow, live: Option<Progress>) -> Self {
        let base = format!("/v1/jobs/{}", row.id);
        let result = row.result.as_ref().map(|r| ResultView {
            files: r
                .files
                .iter()
                .map(|f| file_view(f, format!("{base}/files/{}", f.name)))
                .collect(),
            report: file_view(&r.report, format!("{base}/report")),
            plot: file_view(&r.plot, format!("{base}/plot.svg")),
            totals: r.totals.clone(),
            diverged: r.diverged,
            cached_from: row.cached_from.clone(),
            expired: row.expired_at.is_some(),
        });
        let progress = match row.state {
            JobState::Running => live.or_else(|| row.progress.clone()),
            _ => None,
        };
        Self {
            id: row.id.clone(),
            state: row.state,
            created_at: timestamp(row.created_at),
            started_at: row.started_at.map(timestamp),
            finished_at: row.finished_at.map(timestamp),
            input: row.input.clone(),
            settings: serde_json::from_str(&row.settings).unwrap_or_default(),
            attempts: row.attempts,
            cancel_requested: row.cancel_requested,
            server: row.lease_owner.clone(),
            progress,
            error: row.error_code.as_ref().map(|code| ErrorDetail {
                code: code.clone(),
                message: row.error_message.clone().unwrap_or_default(),
            }),
            result,
            links: JobLinks {
                events: format!("{base}/events"),
                cancel: format!("{base}/cancel"),
                this: base,
            },
        }
    }
}
