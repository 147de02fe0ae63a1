//! The job store in SQLite, for one server: WAL mode with full synchronization, so that a state
//! change that returned has reached the disk. One connection behind a mutex: every statement is
//! short, and the file, not a server, is the source of truth, so a killed process loses nothing
//! committed. The schema's version is SQLite's `user_version`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use super::{
    attempts_exhausted_message, counts_of, from_json, to_json, Abandoned, Cancel, Clock,
    CreateError, Created, Ending, Held, JobRow, JobState, JobStore, Lease, NewJob, Progress,
    StoreError, UploadRow, JOB_COLUMNS,
};

/// The migrations, in order: migration N brings the schema from version N-1 to N.
const MIGRATIONS: [&str; 2] = [
    include_str!("sqlite/001_initial.sql"),
    include_str!("sqlite/002_leases.sql"),
];

pub struct SqliteStore {
    conn: Mutex<Connection>,
    clock: Arc<dyn Clock>,
    path: String,
}

impl ToSql for JobState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for JobState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        JobState::parse(text)
            .ok_or_else(|| FromSqlError::Other(format!("unknown job state '{text}'").into()))
    }
}

fn job_from_row(row: &Row) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        seq: row.get("seq")?,
        id: row.get("id")?,
        state: row.get("state")?,
        input: row.get("input")?,
        settings: row.get("settings")?,
        created_at: row.get("created_at")?,
        started_at: row.get("started_at")?,
        finished_at: row.get("finished_at")?,
        attempts: row.get("attempts")?,
        cancel_requested: row.get("cancel_requested")?,
        error_code: row.get("error_code")?,
        error_message: row.get("error_message")?,
        progress: json(row, "progress")?,
        result: json(row, "result")?,
        cache_key: row.get("cache_key")?,
        cached_from: row.get("cached_from")?,
        expired_at: row.get("expired_at")?,
        lease_owner: row.get("lease_owner")?,
        lease_expires_at: row.get("lease_expires_at")?,
    })
}

/// A JSON column, as its type.
fn json<T: serde::de::DeserializeOwned>(row: &Row, column: &str) -> rusqlite::Result<Option<T>> {
    from_json(column, row.get(column)?).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
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

/// Brings the schema to this build's version; refuses a newer one.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if found > supported {
        return Err(StoreError::NewerSchema { found, supported });
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

fn ids(tx: &Transaction, sql: &str, args: impl rusqlite::Params) -> rusqlite::Result<Vec<String>> {
    let mut stmt = tx.prepare(sql)?;
    let rows = stmt.query_map(args, |r| r.get::<_, String>(0))?;
    rows.collect()
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, migrated to this build's schema.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            clock,
            path: path.display().to_string(),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (a statement is atomic),
        // so the connection stays usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn job_in(tx: &Transaction, id: &str) -> rusqlite::Result<Option<JobRow>> {
        tx.query_row(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
            params![id],
            job_from_row,
        )
        .optional()
    }
}

impl JobStore for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite ({})", self.path)
    }

    fn shared(&self) -> bool {
        false
    }

    fn ping(&self) -> Result<(), StoreError> {
        Ok(self.conn().query_row("SELECT 1", [], |_| Ok(()))?)
    }

    fn insert_upload(&self, upload: &UploadRow) -> Result<(), StoreError> {
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

    fn upload(&self, id: &str) -> Result<Option<UploadRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT * FROM uploads WHERE id = ?1",
                params![id],
                upload_from_row,
            )
            .optional()?)
    }

    fn upload_ids(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM uploads")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn delete_upload(&self, id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM uploads WHERE id = ?1", params![id])?;
        Ok(())
    }

    fn stale_uploads(&self, cutoff: i64) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id FROM uploads WHERE created_at < ?1 AND NOT EXISTS (\
                 SELECT 1 FROM jobs WHERE jobs.input = 'upload:' || uploads.id \
                 AND jobs.state IN ('queued', 'running'))",
        )?;
        let rows = stmt.query_map(params![cutoff], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn create_job(&self, new: &NewJob) -> Result<Created, CreateError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(StoreError::from)?;
        let create = || -> Result<Created, CreateError> {
            if let Some((key, request)) = new.idempotency {
                let earlier = tx
                    .query_row(
                        &format!(
                            "SELECT {JOB_COLUMNS}, request_sha256 FROM jobs \
                             WHERE idempotency_key = ?1"
                        ),
                        params![key],
                        |r| {
                            Ok((
                                job_from_row(r)?,
                                r.get::<_, Option<String>>("request_sha256")?,
                            ))
                        },
                    )
                    .optional()
                    .map_err(StoreError::from)?;
                if let Some((job, digest)) = earlier {
                    return if digest.as_deref() == Some(request) {
                        Ok(Created::Replayed(job))
                    } else {
                        Err(CreateError::IdempotencyConflict { job: job.id })
                    };
                }
            }
            let now = self.now();
            let (key, request) = new.idempotency.unzip();
            let queued: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM jobs WHERE state = 'queued'",
                    [],
                    |r| r.get(0),
                )
                .map_err(StoreError::from)?;
            if queued as usize >= new.max_queued {
                return Err(CreateError::QueueFull {
                    queued: queued as usize,
                });
            }
            tx.execute(
                "INSERT INTO jobs (id, state, input, settings, created_at, idempotency_key, \
                 request_sha256) VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6)",
                params![new.id, new.input, new.settings, now, key, request],
            )
            .map_err(StoreError::from)?;
            let job = Self::job_in(&tx, new.id)
                .map_err(StoreError::from)?
                .ok_or_else(|| StoreError::Corrupt(format!("job {} vanished", new.id)))?;
            Ok(Created::New(job))
        };
        let created = create()?;
        tx.commit().map_err(StoreError::from)?;
        Ok(created)
    }

    fn job_by_idempotency_key(
        &self,
        key: &str,
    ) -> Result<Option<(JobRow, Option<String>)>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT {JOB_COLUMNS}, request_sha256 FROM jobs WHERE idempotency_key = ?1"
                ),
                params![key],
                |r| Ok((job_from_row(r)?, r.get("request_sha256")?)),
            )
            .optional()?)
    }

    fn job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                job_from_row,
            )
            .optional()?)
    }

    fn list_jobs(
        &self,
        state: Option<JobState>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<JobRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR state = ?1) \
             AND (?2 IS NULL OR seq < ?2) ORDER BY seq DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![state, before, limit as i64], job_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn claim_next(&self, lease: &Lease) -> Result<Option<JobRow>, StoreError> {
        let now = self.now();
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "UPDATE jobs SET state = 'running', started_at = ?1, attempts = attempts + 1, \
                     progress = NULL, cache_key = NULL, lease_owner = ?2, lease_expires_at = ?3 \
                     WHERE seq = (SELECT seq FROM jobs WHERE state = 'queued' \
                     ORDER BY seq LIMIT 1) RETURNING {JOB_COLUMNS}"
                ),
                params![now, lease.owner, now + lease.duration_ms],
                job_from_row,
            )
            .optional()?)
    }

    fn heartbeat(&self, lease: &Lease) -> Result<Vec<Held>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "UPDATE jobs SET lease_expires_at = ?2 WHERE state = 'running' AND lease_owner = ?1 \
             RETURNING id, cancel_requested",
        )?;
        let rows = stmt.query_map(params![lease.owner, self.now() + lease.duration_ms], |r| {
            Ok(Held {
                id: r.get(0)?,
                cancel_requested: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn release_abandoned(&self, all: bool, max_attempts: i64) -> Result<Abandoned, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = self.now();
        let before = if all { i64::MAX } else { now };
        let abandoned = "state = 'running' AND COALESCE(lease_expires_at, 0) < ?1";
        let canceled = ids(
            &tx,
            &format!(
                "UPDATE jobs SET state = 'canceled', finished_at = ?2, progress = NULL, \
                 lease_owner = NULL, lease_expires_at = NULL \
                 WHERE {abandoned} AND cancel_requested RETURNING id"
            ),
            params![before, now],
        )?;
        let mut failed = Vec::new();
        for (id, attempts) in {
            let mut stmt = tx.prepare(&format!(
                "SELECT id, attempts FROM jobs WHERE {abandoned} AND attempts >= ?2"
            ))?;
            let rows = stmt.query_map(params![before, max_attempts], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        } {
            tx.execute(
                "UPDATE jobs SET state = 'failed', finished_at = ?2, progress = NULL, \
                 error_code = 'attempts_exhausted', error_message = ?3, lease_owner = NULL, \
                 lease_expires_at = NULL WHERE id = ?1",
                params![id, now, attempts_exhausted_message(attempts)],
            )?;
            failed.push(id);
        }
        tx.execute(
            &format!(
                "DELETE FROM job_layers WHERE job_id IN (SELECT id FROM jobs WHERE {abandoned})"
            ),
            params![before],
        )?;
        let requeued = ids(
            &tx,
            &format!(
                "UPDATE jobs SET state = 'queued', started_at = NULL, progress = NULL, \
                 lease_owner = NULL, lease_expires_at = NULL WHERE {abandoned} RETURNING id"
            ),
            params![before],
        )?;
        tx.commit()?;
        Ok(Abandoned {
            requeued,
            canceled,
            failed,
        })
    }

    fn record_layer(
        &self,
        id: &str,
        lease: &Lease,
        ordinal: usize,
        layer: &str,
        progress: Option<&Progress>,
    ) -> Result<(), StoreError> {
        let progress = progress.map(to_json);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let holds = tx.execute(
            "UPDATE jobs SET progress = ?3 WHERE id = ?1 AND state = 'running' \
             AND lease_owner = ?2",
            params![id, lease.owner, progress],
        )?;
        if holds == 1 {
            tx.execute(
                "INSERT OR REPLACE INTO job_layers (job_id, ordinal, layer) VALUES (?1, ?2, ?3)",
                params![id, ordinal as i64, layer],
            )?;
        }
        Ok(tx.commit()?)
    }

    fn layers(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT layer FROM job_layers WHERE job_id = ?1 ORDER BY ordinal")?;
        let rows = stmt.query_map(params![id], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn finish(
        &self,
        id: &str,
        lease: &Lease,
        ending: &Ending,
    ) -> Result<Option<JobRow>, StoreError> {
        let now = self.now();
        let conn = self.conn();
        let held = "WHERE id = ?1 AND state = 'running' AND lease_owner = ?2";
        let cleared = "progress = NULL, lease_owner = NULL, lease_expires_at = NULL";
        let returning = format!("RETURNING {JOB_COLUMNS}");
        let row = match ending {
            Ending::Succeeded {
                result,
                cache_key,
                cached_from,
            } => conn.query_row(
                &format!(
                    "UPDATE jobs SET state = 'succeeded', finished_at = ?3, result = ?4, \
                     cache_key = ?5, cached_from = ?6, {cleared} {held} {returning}"
                ),
                params![
                    id,
                    lease.owner,
                    now,
                    to_json(result),
                    cache_key,
                    cached_from
                ],
                job_from_row,
            ),
            Ending::Failed { code, message } => conn.query_row(
                &format!(
                    "UPDATE jobs SET state = 'failed', finished_at = ?3, error_code = ?4, \
                     error_message = ?5, {cleared} {held} {returning}"
                ),
                params![id, lease.owner, now, code, message],
                job_from_row,
            ),
            Ending::Canceled => conn.query_row(
                &format!(
                    "UPDATE jobs SET state = 'canceled', finished_at = ?3, {cleared} \
                     {held} {returning}"
                ),
                params![id, lease.owner, now],
                job_from_row,
            ),
        };
        Ok(row.optional()?)
    }

    fn release(&self, id: &str, lease: &Lease) -> Result<Option<JobRow>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let row = tx
            .query_row(
                &format!(
                    "UPDATE jobs SET state = 'queued', started_at = NULL, progress = NULL, \
                     lease_owner = NULL, lease_expires_at = NULL \
                     WHERE id = ?1 AND state = 'running' AND lease_owner = ?2 \
                     RETURNING {JOB_COLUMNS}"
                ),
                params![id, lease.owner],
                job_from_row,
            )
            .optional()?;
        if row.is_some() {
            tx.execute("DELETE FROM job_layers WHERE job_id = ?1", params![id])?;
        }
        tx.commit()?;
        Ok(row)
    }

    fn requeue_lost_result(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let row = tx
            .query_row(
                &format!(
                    "UPDATE jobs SET state = 'queued', started_at = NULL, finished_at = NULL, \
                     progress = NULL, result = NULL WHERE id = ?1 AND state = 'succeeded' \
                     RETURNING {JOB_COLUMNS}"
                ),
                params![id],
                job_from_row,
            )
            .optional()?;
        if row.is_some() {
            tx.execute("DELETE FROM job_layers WHERE job_id = ?1", params![id])?;
        }
        tx.commit()?;
        Ok(row)
    }

    fn cancel(&self, id: &str) -> Result<Option<Cancel>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let Some(job) = Self::job_in(&tx, id)? else {
            return Ok(None);
        };
        let outcome = match job.state {
            JobState::Queued => {
                tx.execute(
                    "UPDATE jobs SET state = 'canceled', finished_at = ?2 WHERE id = ?1",
                    params![id, self.now()],
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
        let job = Self::job_in(&tx, id)?
            .ok_or_else(|| StoreError::Corrupt(format!("job {id} vanished")))?;
        tx.commit()?;
        Ok(Some(outcome(job)))
    }

    fn cached(&self, cache_key: &str) -> Result<Option<JobRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE cache_key = ?1 AND state = 'succeeded' \
                     AND expired_at IS NULL ORDER BY seq DESC LIMIT 1"
                ),
                params![cache_key],
                job_from_row,
            )
            .optional()?)
    }

    fn running_with_key(
        &self,
        id: &str,
        lease: &Lease,
        cache_key: &str,
    ) -> Result<Option<String>, StoreError> {
        // One connection behind a mutex: calls are serialized already.
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let earlier = tx
            .query_row(
                "SELECT id FROM jobs WHERE cache_key = ?2 AND state = 'running' AND id <> ?1 \
                 ORDER BY seq LIMIT 1",
                params![id, cache_key],
                |r| r.get(0),
            )
            .optional()?;
        tx.execute(
            "UPDATE jobs SET cache_key = ?3 WHERE id = ?1 AND state = 'running' \
             AND lease_owner = ?2",
            params![id, lease.owner, cache_key],
        )?;
        tx.commit()?;
        Ok(earlier)
    }

    fn live_results(&self) -> Result<Vec<JobRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'succeeded' AND expired_at IS NULL"
        ))?;
        let rows = stmt.query_map([], job_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn expire(&self, cutoff: i64) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "UPDATE jobs SET expired_at = ?2 WHERE state = 'succeeded' AND expired_at IS NULL \
             AND finished_at < ?1 RETURNING id",
        )?;
        let rows = stmt.query_map(params![cutoff, self.now()], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn counts(&self) -> Result<BTreeMap<JobState, u64>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(counts_of(rows.collect::<rusqlite::Result<Vec<_>>>()?))
    }

    fn wait_for_changes(&self, timeout: std::time::Duration) -> Result<Vec<String>, StoreError> {
        std::thread::sleep(timeout);
        Ok(Vec::new())
    }

    fn close(&self) -> Result<(), StoreError> {
        // Folds the write-ahead log into the database, so the directory is tidy after a stop.
        Ok(self
            .conn()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?)
    }
}
