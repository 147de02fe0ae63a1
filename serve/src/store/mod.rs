//! The job store: SQLite in WAL mode with full synchronization, so that a state change that
//! returned has reached the disk. One connection behind a mutex: every statement is short, and
//! the file, not a server, is the source of truth, so a killed process loses nothing committed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

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
    /// The effective settings, JSON.
    pub settings: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub attempts: i64,
    pub cancel_requested: bool,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The last layer boundary reached, JSON.
    pub progress: Option<String>,
    /// A succeeded job's files and totals, JSON.
    pub result: Option<String>,
    pub cache_key: Option<String>,
    pub cached_from: Option<String>,
    pub expired_at: Option<i64>,
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
    /// A job that succeeds at once from an earlier job's result (its files already in place).
    pub from_cache: Option<CachedResult<'a>>,
}

/// An earlier result that a new job reuses.
pub struct CachedResult<'a> {
    pub source: &'a str,
    pub result: &'a str,
    pub cache_key: &'a str,
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
    Store(#[from] rusqlite::Error),
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
        result: &'a str,
        cache_key: &'a str,
        cached_from: Option<&'a str>,
    },
    Failed {
        code: &'a str,
        message: &'a str,
    },
    Canceled,
}

/// What a restart found and did.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Jobs that were running: queued again.
    pub requeued: Vec<String>,
    /// Jobs that were running with a cancel request: canceled.
    pub canceled: Vec<String>,
}

pub struct Store {
    conn: Mutex<Connection>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const JOB_COLUMNS: &str = "seq, id, state, input, settings, created_at, started_at, finished_at, \
     attempts, cancel_requested, error_code, error_message, progress, result, cache_key, \
     cached_from, expired_at";

fn job_from_row(row: &Row) -> rusqlite::Result<JobRow> {
    let state: String = row.get("state")?;
    Ok(JobRow {
        seq: row.get("seq")?,
        id: row.get("id")?,
        state: JobState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("unknown job state '{state}'").into(),
            )
        })?,
        input: row.get("input")?,
        settings: row.get("settings")?,
        created_at: row.get("created_at")?,
        started_at: row.get("started_at")?,
        finished_at: row.get("finished_at")?,
        attempts: row.get("attempts")?,
        cancel_requested: row.get::<_, i64>("cancel_requested")? != 0,
        error_code: row.get("error_code")?,
        error_message: row.get("error_message")?,
        progress: row.get("progress")?,
        result: row.get("result")?,
        cache_key: row.get("cache_key")?,
        cached_from: row.get("cached_from")?,
        expired_at: row.get("expired_at")?,
    })
}

fn upload_from_row(row: &Row) -> rusqlite::Result<UploadRow> {
    Ok(UploadRow {
        id: row.get("id")?,
        sha256: row.get("sha256")?,
        size: row.get::<_, i64>("size")? as u64,
        format: row.get("format")?,
        name: row.get("name")?,
        created_at: row.get("created_at")?,
    })
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(include_str!("schema.sql"))?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (a statement is atomic),
        // so the connection stays usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Folds the write-ahead log into the database, so the directory is tidy after a clean stop.
    pub fn checkpoint(&self) -> rusqlite::Result<()> {
        self.conn()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
    }

    /// After a restart: jobs that were running run again (or end canceled if that was asked).
    pub fn recover(&self) -> rusqlite::Result<Recovery> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now_ms();
        let ids = |tx: &rusqlite::Transaction, sql: &str| -> rusqlite::Result<Vec<String>> {
            let mut stmt = tx.prepare(sql)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect()
        };
        let canceled = ids(
            &tx,
            "SELECT id FROM jobs WHERE state = 'running' AND cancel_requested = 1",
        )?;
        tx.execute(
            "UPDATE jobs SET state = 'canceled', finished_at = ?1, progress = NULL \
             WHERE state = 'running' AND cancel_requested = 1",
            params![now],
        )?;
        let requeued = ids(&tx, "SELECT id FROM jobs WHERE state = 'running'")?;
        tx.execute(
            "DELETE FROM job_layers WHERE job_id IN (SELECT id FROM jobs WHERE state = 'running')",
            [],
        )?;
        tx.execute(
            "UPDATE jobs SET state = 'queued', started_at = NULL, progress = NULL \
             WHERE state = 'running'",
            [],
        )?;
        tx.commit()?;
        Ok(Recovery { requeued, canceled })
    }

    pub fn insert_upload(&self, upload: &UploadRow) -> rusqlite::Result<()> {
        self.conn().execute(
            "INSERT INTO uploads (id, sha256, size, format, name, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                upload.id,
                upload.sha256,
                upload.size as i64,
                upload.format,
                upload.name,
                upload.created_at
            ],
        )?;
        Ok(())
    }

    pub fn upload(&self, id: &str) -> rusqlite::Result<Option<UploadRow>> {
        self.conn()
            .query_row(
                "SELECT * FROM uploads WHERE id = ?1",
                params![id],
                upload_from_row,
            )
            .optional()
    }

    pub fn upload_ids(&self) -> rusqlite::Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM uploads")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    }

    pub fn delete_upload(&self, id: &str) -> rusqlite::Result<()> {
        self.conn()
            .execute("DELETE FROM uploads WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// Uploads created before `cutoff` that no queued or running job still needs.
    pub fn stale_uploads(&self, cutoff: i64) -> rusqlite::Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id FROM uploads WHERE created_at < ?1 AND NOT EXISTS (\
                 SELECT 1 FROM jobs WHERE jobs.input = 'upload:' || uploads.id \
                 AND jobs.state IN ('queued', 'running'))",
        )?;
        let rows = stmt.query_map(params![cutoff], |r| r.get(0))?;
        rows.collect()
    }

    /// Creates a job: queued, or succeeded at once from a cached result. An `Idempotency-Key`
    /// seen before returns the job it created, in one transaction with the check.
    pub fn create_job(&self, new: &NewJob) -> Result<Created, CreateError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if let Some((key, request)) = new.idempotency {
            let earlier = tx
                .query_row(
                    &format!(
                        "SELECT {JOB_COLUMNS}, request_sha256 FROM jobs WHERE idempotency_key = ?1"
                    ),
                    params![key],
                    |r| {
                        Ok((
                            job_from_row(r)?,
                            r.get::<_, Option<String>>("request_sha256")?,
                        ))
                    },
                )
                .optional()?;
            if let Some((job, digest)) = earlier {
                return if digest.as_deref() == Some(request) {
                    Ok(Created::Replayed(job))
                } else {
                    Err(CreateError::IdempotencyConflict { job: job.id })
                };
            }
        }
        let now = now_ms();
        let (key, request) = new.idempotency.unzip();
        match &new.from_cache {
            None => {
                let queued: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM jobs WHERE state = 'queued'",
                    [],
                    |r| r.get(0),
                )?;
                if queued as usize >= new.max_queued {
                    return Err(CreateError::QueueFull {
                        queued: queued as usize,
                    });
                }
                tx.execute(
                    "INSERT INTO jobs (id, state, input, settings, created_at, idempotency_key, request_sha256) \
                     VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6)",
                    params![new.id, new.input, new.settings, now, key, request],
                )?;
            }
            Some(cached) => {
                tx.execute(
                    "INSERT INTO jobs (id, state, input, settings, created_at, started_at, finished_at, \
                     result, cache_key, cached_from, idempotency_key, request_sha256) \
                     VALUES (?1, 'succeeded', ?2, ?3, ?4, ?4, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        new.id,
                        new.input,
                        new.settings,
                        now,
                        cached.result,
                        cached.cache_key,
                        cached.source,
                        key,
                        request
                    ],
                )?;
            }
        }
        let job = tx.query_row(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
            params![new.id],
            job_from_row,
        )?;
        tx.commit()?;
        Ok(Created::New(job))
    }

    /// The job an `Idempotency-Key` created, and the digest of the request it came with.
    pub fn job_by_idempotency_key(
        &self,
        key: &str,
    ) -> rusqlite::Result<Option<(JobRow, Option<String>)>> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {JOB_COLUMNS}, request_sha256 FROM jobs WHERE idempotency_key = ?1"
                ),
                params![key],
                |r| Ok((job_from_row(r)?, r.get("request_sha256")?)),
            )
            .optional()
    }

    pub fn job(&self, id: &str) -> rusqlite::Result<Option<JobRow>> {
        self.conn()
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                job_from_row,
            )
            .optional()
    }

    /// Jobs newest first, optionally of one state, created before the job `before` (its `seq`).
    pub fn list_jobs(
        &self,
        state: Option<JobState>,
        before: Option<i64>,
        limit: usize,
    ) -> rusqlite::Result<Vec<JobRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR state = ?1) \
             AND (?2 IS NULL OR seq < ?2) ORDER BY seq DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(
            params![state.map(JobState::as_str), before, limit as i64],
            job_from_row,
        )?;
        rows.collect()
    }

    /// The oldest queued job, now running.
    pub fn claim_next(&self) -> rusqlite::Result<Option<JobRow>> {
        self.conn()
            .query_row(
                &format!(
                    "UPDATE jobs SET state = 'running', started_at = ?1, attempts = attempts + 1, \
                     progress = NULL WHERE seq = (SELECT seq FROM jobs WHERE state = 'queued' \
                     ORDER BY seq LIMIT 1) RETURNING {JOB_COLUMNS}"
                ),
                params![now_ms()],
                job_from_row,
            )
            .optional()
    }

    /// Records a finished conv tensor of a running job, and the progress it marks.
    pub fn record_layer(
        &self,
        id: &str,
        ordinal: usize,
        layer: &str,
        progress: &str,
    ) -> rusqlite::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO job_layers (job_id, ordinal, layer) VALUES (?1, ?2, ?3)",
            params![id, ordinal as i64, layer],
        )?;
        tx.execute(
            "UPDATE jobs SET progress = ?2 WHERE id = ?1 AND state = 'running'",
            params![id, progress],
        )?;
        tx.commit()
    }

    /// The conv tensors a job has reported, in order (JSON each).
    pub fn layers(&self, id: &str) -> rusqlite::Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT layer FROM job_layers WHERE job_id = ?1 ORDER BY ordinal")?;
        let rows = stmt.query_map(params![id], |r| r.get(0))?;
        rows.collect()
    }

    /// Ends a running job. `None` when it was not running (a restart re-queued it meanwhile).
    pub fn finish(&self, id: &str, ending: &Ending) -> rusqlite::Result<Option<JobRow>> {
        let now = now_ms();
        let conn = self.conn();
        let returning = format!("RETURNING {JOB_COLUMNS}");
        let row = match ending {
            Ending::Succeeded {
                result,
                cache_key,
                cached_from,
            } => conn.query_row(
                &format!(
                    "UPDATE jobs SET state = 'succeeded', finished_at = ?2, result = ?3, \
                     cache_key = ?4, cached_from = ?5, progress = NULL \
                     WHERE id = ?1 AND state = 'running' {returning}"
                ),
                params![id, now, result, cache_key, cached_from],
                job_from_row,
            ),
            Ending::Failed { code, message } => conn.query_row(
                &format!(
                    "UPDATE jobs SET state = 'failed', finished_at = ?2, error_code = ?3, \
                     error_message = ?4, progress = NULL \
                     WHERE id = ?1 AND state = 'running' {returning}"
                ),
                params![id, now, code, message],
                job_from_row,
            ),
            Ending::Canceled => conn.query_row(
                &format!(
                    "UPDATE jobs SET state = 'canceled', finished_at = ?2, progress = NULL \
                     WHERE id = ?1 AND state = 'running' {returning}"
                ),
                params![id, now],
                job_from_row,
            ),
        };
        row.optional()
    }

    /// Puts a job back in the queue (a running one stopped by a shutdown, or a succeeded one whose
    /// files are gone), forgetting its layers.
    pub fn requeue(&self, id: &str) -> rusqlite::Result<Option<JobRow>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM job_layers WHERE job_id = ?1", params![id])?;
        let row = tx
            .query_row(
                &format!(
                    "UPDATE jobs SET state = 'queued', started_at = NULL, finished_at = NULL, \
                     progress = NULL, result = NULL WHERE id = ?1 {}",
                    format_args!("RETURNING {JOB_COLUMNS}")
                ),
                params![id],
                job_from_row,
            )
            .optional()?;
        tx.commit()?;
        Ok(row)
    }

    /// Cancels a queued job, or asks a running one to stop.
    pub fn cancel(&self, id: &str) -> rusqlite::Result<Option<Cancel>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let Some(job) = tx
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                job_from_row,
            )
            .optional()?
        else {
            return Ok(None);
        };
        let outcome = match job.state {
            JobState::Queued => {
                tx.execute(
                    "UPDATE jobs SET state = 'canceled', finished_at = ?2 WHERE id = ?1",
                    params![id, now_ms()],
                )?;
                Cancel::Canceled
            }
            JobState::Running => {
                tx.execute(
                    "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1",
                    params![id],
                )?;
                Cancel::Requested
            }
            _ => return Ok(Some(Cancel::Finished(job))),
        };
        let job = tx.query_row(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
            params![id],
            job_from_row,
        )?;
        tx.commit()?;
        Ok(Some(outcome(job)))
    }

    /// The newest succeeded, unexpired job with this cache key.
    pub fn cached(&self, cache_key: &str) -> rusqlite::Result<Option<JobRow>> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE cache_key = ?1 AND state = 'succeeded' \
                     AND expired_at IS NULL ORDER BY seq DESC LIMIT 1"
                ),
                params![cache_key],
                job_from_row,
            )
            .optional()
    }

    /// Succeeded, unexpired jobs (whose files must exist).
    pub fn live_results(&self) -> rusqlite::Result<Vec<JobRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'succeeded' AND expired_at IS NULL"
        ))?;
        let rows = stmt.query_map([], job_from_row)?;
        rows.collect()
    }

    /// Marks the results of jobs finished before `cutoff` as expired; returns their ids, whose
    /// files the caller then deletes.
    pub fn expire(&self, cutoff: i64) -> rusqlite::Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "UPDATE jobs SET expired_at = ?2 WHERE state = 'succeeded' AND expired_at IS NULL \
             AND finished_at < ?1 RETURNING id",
        )?;
        let rows = stmt.query_map(params![cutoff, now_ms()], |r| r.get(0))?;
        rows.collect()
    }

    /// How many jobs are in each state.
    pub fn counts(&self) -> rusqlite::Result<BTreeMap<JobState, u64>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut counts: BTreeMap<JobState, u64> =
            JobState::ALL.into_iter().map(|s| (s, 0)).collect();
        for row in rows {
            let (state, n) = row?;
            if let Some(state) = JobState::parse(&state) {
                counts.insert(state, n as u64);
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests;
