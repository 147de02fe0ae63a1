//! The job store: the durable record of every upload and job, and the job's life cycle as
//! transactions. Two implementations of one trait: [`SqliteStore`] (one server, a file in the
//! data directory) and [`PostgresStore`] (any number of replicas on one database). Both run
//! versioned migrations when opened and refuse a schema newer than this build's.

mod clock;
mod postgres;
mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::view::{Progress, StoredResult};

pub use self::postgres::PostgresStore;
pub use clock::{Clock, ManualClock, SystemClock};
pub use sqlite::SqliteStore;

/// Where a job is in its life.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// Succeeded, failed or canceled: nothing more will happen to the job.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Canceled
        )
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub seq: i64,
    pub id: String,
    pub state: JobState,
    pub input: String,
    /// The effective settings, as JSON: the exact text the cache key and the idempotency digest
    /// were computed from.
    pub settings: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Runs started (a claim counts one).
    pub attempts: i64,
    pub cancel_requested: bool,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The last layer boundary reached (a JSON column).
    pub progress: Option<Progress>,
    /// A succeeded job's files and totals (a JSON column).
    pub result: Option<StoredResult>,
    pub cache_key: Option<String>,
    pub cached_from: Option<String>,
    pub expired_at: Option<i64>,
    /// The server running it, while it runs.
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
}

/// An accepted upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    pub id: String,
    pub sha256: String,
    pub size: u64,
    pub format: String,
    pub name: String,
    pub created_at: i64,
}

/// A job to create.
pub struct NewJob<'a> {
    pub id: &'a str,
    pub input: &'a str,
    pub settings: &'a str,
    /// `Idempotency-Key` and the digest of the request it came with.
    pub idempotency: Option<(&'a str, &'a str)>,
    /// Refuse a queued job when this many are already waiting.
    pub max_queued: usize,
}

/// What creating a job did.
#[derive(Debug)]
pub enum Created {
    New(JobRow),
    /// The same `Idempotency-Key` with the same request: the job it created then.
    Replayed(JobRow),
}

/// Why a job was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{queued} jobs are already queued")]
    QueueFull { queued: usize },
    #[error("the Idempotency-Key was used for a different request (job {job})")]
    IdempotencyConflict { job: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a cancel request did.
#[derive(Debug)]
pub enum Cancel {
    /// A queued job, now canceled.
    Canceled(JobRow),
    /// A running job: the worker will stop it within the current layer.
    Requested(JobRow),
    /// Already succeeded, failed or canceled.
    Finished(JobRow),
}

/// How a job ended, as the worker reports it.
pub enum Ending<'a> {
    Succeeded {
        result: &'a StoredResult,
        cache_key: &'a str,
        cached_from: Option<&'a str>,
    },
    Failed {
        code: &'a str,
        message: &'a str,
    },
    Canceled,
}

/// Running jobs whose server stopped renewing their lease, and what became of them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Abandoned {
    /// Queued again, to run on whichever server claims them.
    pub requeued: Vec<String>,
    /// A cancel had been asked for: canceled.
    pub canceled: Vec<String>,
    /// Their runs had been started `max_attempts` times: failed (`attempts_exhausted`).
    pub failed: Vec<String>,
}

impl Abandoned {
    pub fn is_empty(&self) -> bool {
        self.requeued.is_empty() && self.canceled.is_empty() && self.failed.is_empty()
    }
}

/// A server's hold on the jobs it runs: its id, and how long a claim or a heartbeat holds.
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: String,
    pub duration_ms: i64,
}

/// A running job as its server's heartbeat found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub id: String,
    pub cancel_requested: bool,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {}", postgres_message(.0))]
    Postgres(#[from] ::postgres::Error),
    #[error("PostgreSQL connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error(
        "the store's schema is version {found}, newer than this cs-init's ({supported}); \
         run the cs-init that wrote it, or a newer one"
    )]
    NewerSchema { found: i64, supported: i64 },
    #[error("the store holds a value this cs-init cannot read: {0}")]
    Corrupt(String),
}

/// A PostgreSQL error in full: the server's own message (`role "x" does not exist`), or the
/// chain of causes (`error connecting to server: Connection refused`), where the driver's
/// `Display` says only `db error`.
fn postgres_message(e: &::postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Why a job ended failed when its server stopped too often.
pub fn attempts_exhausted_message(attempts: i64) -> String {
    format!(
        "the job's run was started {attempts} times and its server stopped each time before it \
         finished (the server's --max-attempts); it is not run again"
    )
}

/// The job store's operations. Every method is one transaction; a state change that returned
/// is durable. Methods that change a running job take the claiming server's lease, so a server
/// that lost a job (its lease expired and another server claimed it) cannot finish it.
pub trait JobStore: Send + Sync {
    /// Which store this is, and where, without credentials (for logs and `/healthz`).
    fn describe(&self) -> String;
    /// Whether several servers may use this store at once.
    fn shared(&self) -> bool;
    /// Answers if the store is reachable.
    fn ping(&self) -> Result<(), StoreError>;

    fn insert_upload(&self, upload: &UploadRow) -> Result<(), StoreError>;
    fn upload(&self, id: &str) -> Result<Option<UploadRow>, StoreError>;
    fn upload_ids(&self) -> Result<Vec<String>, StoreError>;
    fn delete_upload(&self, id: &str) -> Result<(), StoreError>;
    /// Uploads created before `cutoff` that no queued or running job still needs.
    fn stale_uploads(&self, cutoff: i64) -> Result<Vec<String>, StoreError>;

    /// Creates a queued job. An `Idempotency-Key` seen before returns the job it created.
    fn create_job(&self, new: &NewJob) -> Result<Created, CreateError>;
    /// The job an `Idempotency-Key` created, and the digest of the request it came with.
    fn job_by_idempotency_key(
        &self,
        key: &str,
    ) -> Result<Option<(JobRow, Option<String>)>, StoreError>;
    fn job(&self, id: &str) -> Result<Option<JobRow>, StoreError>;
    /// Jobs newest first, optionally of one state, created before the job `before` (its `seq`).
    fn list_jobs(
        &self,
        state: Option<JobState>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<JobRow>, StoreError>;

    /// The oldest queued job, now running under `lease` (its attempt counted). No two servers
    /// claim the same job.
    fn claim_next(&self, lease: &Lease) -> Result<Option<JobRow>, StoreError>;
    /// Renews the lease on every job `lease.owner` runs; returns them, with their cancel flags.
    fn heartbeat(&self, lease: &Lease) -> Result<Vec<Held>, StoreError>;
    /// Running jobs whose lease expired (all running jobs when `all`: nobody else can be
    /// running them): queued again, canceled if asked, or failed after `max_attempts` runs.
    fn release_abandoned(&self, all: bool, max_attempts: i64) -> Result<Abandoned, StoreError>;
    /// Records a finished conv tensor of a running job, and the progress it marks.
    fn record_layer(
        &self,
        id: &str,
        lease: &Lease,
        ordinal: usize,
        layer: &str,
        progress: Option<&Progress>,
    ) -> Result<(), StoreError>;
    /// The conv tensors a job has reported, in order (JSON each).
    fn layers(&self, id: &str) -> Result<Vec<String>, StoreError>;
    /// Ends a running job. `None` when it was no longer running under `lease`.
    fn finish(
        &self,
        id: &str,
        lease: &Lease,
        ending: &Ending,
    ) -> Result<Option<JobRow>, StoreError>;
    /// Queues a job running under `lease` again (its server is stopping), forgetting its layers.
    fn release(&self, id: &str, lease: &Lease) -> Result<Option<JobRow>, StoreError>;
    /// Queues a succeeded job again whose files are gone, forgetting its layers.
    fn requeue_lost_result(&self, id: &str) -> Result<Option<JobRow>, StoreError>;
    /// Cancels a queued job, or asks a running one to stop.
    fn cancel(&self, id: &str) -> Result<Option<Cancel>, StoreError>;

    /// The newest succeeded, unexpired job with this cache key.
    fn cached(&self, cache_key: &str) -> Result<Option<JobRow>, StoreError>;
    /// Records the cache key of a job running under `lease` (known once its input is hashed);
    /// returns another running job that recorded the same key before, which is computing (or
    /// waiting for) the same result, if any. Serialized per key, so of two runs recording one
    /// key at once exactly one sees the other; a run only ever waits for runs that recorded
    /// before it, so no two wait for each other. (A claim forgets an earlier run's key.)
    fn running_with_key(
        &self,
        id: &str,
        lease: &Lease,
        cache_key: &str,
    ) -> Result<Option<String>, StoreError>;
    /// Succeeded, unexpired jobs (whose files must exist).
    fn live_results(&self) -> Result<Vec<JobRow>, StoreError>;
    /// Marks the results of jobs finished before `cutoff` as expired; returns their ids, whose
    /// files the caller then deletes. Several sweepers at once each get distinct ids.
    fn expire(&self, cutoff: i64) -> Result<Vec<String>, StoreError>;
    /// How many jobs are in each state.
    fn counts(&self) -> Result<BTreeMap<JobState, u64>, StoreError>;
    /// Waits up to `timeout` for other servers to change jobs; returns the ids they announced.
    /// A store no other server uses has nothing to announce.
    fn wait_for_changes(&self, timeout: std::time::Duration) -> Result<Vec<String>, StoreError>;
    /// Leaves the store tidy for a clean stop.
    fn close(&self) -> Result<(), StoreError>;
}

/// Opens the store `spec` names: `postgres://…` (or `postgresql://…`), or else SQLite at the
/// data directory's `store.sqlite`.
pub fn open(
    spec: Option<&str>,
    sqlite_path: &std::path::Path,
    clock: Arc<dyn Clock>,
) -> Result<Box<dyn JobStore>, StoreError> {
    match spec {
        Some(url) if PostgresStore::handles(url) => Ok(Box::new(PostgresStore::open(url, clock)?)),
        _ => Ok(Box::new(SqliteStore::open(sqlite_path, clock)?)),
    }
}

/// The columns of a [`JobRow`], in every query that returns one.
const JOB_COLUMNS: &str = "seq, id, state, input, settings, created_at, started_at, finished_at, \
     attempts, cancel_requested, error_code, error_message, progress, result, cache_key, \
     cached_from, expired_at, lease_owner, lease_expires_at";

/// A store URL fit to print: no password, no query (which may carry one).
pub fn redact_url(url: &str) -> String {
    let url = url.split('?').next().unwrap_or(url);
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((credentials, place)) => {
                let user = credentials.split(':').next().unwrap_or("");
                format!("{scheme}://{user}@{place}")
            }
            None => format!("{scheme}://{rest}"),
        },
        None => url.to_string(),
    }
}

/// The password in a store URL, to keep out of every message.
pub fn url_password(url: &str) -> Option<String> {
    let config: ::postgres::Config = url.parse().ok()?;
    let password = String::from_utf8_lossy(config.get_password()?).into_owned();
    (!password.is_empty()).then_some(password)
}

/// A JSON column's text, as its type; `None` for NULL.
fn from_json<T: DeserializeOwned>(column: &str, text: Option<String>) -> Result<Option<T>, String> {
    text.map(|text| serde_json::from_str(&text).map_err(|e| format!("jobs.{column}: {e}")))
        .transpose()
}

/// A value as its JSON column's text.
fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("a stored value serializes")
}

/// Counts per state, every state present.
fn counts_of(rows: impl IntoIterator<Item = (JobState, i64)>) -> BTreeMap<JobState, u64> {
    let mut counts: BTreeMap<JobState, u64> = JobState::ALL.into_iter().map(|s| (s, 0)).collect();
    for (state, n) in rows {
        counts.insert(state, n as u64);
    }
    counts
}

#[cfg(test)]
mod tests;
