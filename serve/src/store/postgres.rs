//! The job store in PostgreSQL, for any number of servers on one database. Claims skip rows
//! another server holds (`FOR UPDATE SKIP LOCKED`), so no two servers run one job; a running
//! job is leased to its server and renewed by heartbeat. Every change to a job also sends
//! `NOTIFY cs_init_jobs, '<id>'` on commit, for servers following the job from elsewhere.
//! The schema's version is the table `cs_init_schema`, migrated under an advisory lock so that
//! servers starting together migrate once.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::postgres::error::SqlState;
use ::postgres::fallible_iterator::FallibleIterator;
use ::postgres::types::{FromSql, Type};
use ::postgres::{Client, Config, GenericClient, NoTls, Row};
use r2d2_postgres::PostgresConnectionManager;

use super::{
    attempts_exhausted_message, counts_of, from_json, to_json, Abandoned, Cancel, Clock,
    CreateError, Created, Ending, Held, JobRow, JobState, JobStore, Lease, NewJob, Progress,
    StoreError, UploadRow, JOB_COLUMNS,
};

/// The migrations, in order: migration N brings the schema from version N-1 to N.
const MIGRATIONS: [&str; 1] = [include_str!("postgres/001_initial.sql")];

/// The advisory lock held while migrating (any constant unlikely to collide: "csinit" in ASCII).
const MIGRATION_LOCK: i64 = 0x6373_696e_6974;

/// The channel job changes are announced on; the payload is the job's id.
pub const CHANNEL: &str = "cs_init_jobs";

/// Connections each server keeps: its workers, its heartbeat and its request handlers.
const POOL_SIZE: u32 = 16;

pub struct PostgresStore {
    /// `None` only while being dropped.
    connections: Option<Connections>,
    config: Config,
    clock: Arc<dyn Clock>,
}

struct Connections {
    pool: r2d2::Pool<PostgresConnectionManager<NoTls>>,
    /// The connection that `LISTEN`s, opened on first use and again after it fails.
    listener: Mutex<Option<Client>>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // The synchronous client closes a connection by blocking on a runtime of its own, which
        // a thread of the server's async runtime must not do: closed on a thread of their own.
        if let Some(connections) = self.connections.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::spawn(move || drop(connections)).join();
            }
        }
    }
}

impl<'a> FromSql<'a> for JobState {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let text = <&str as FromSql>::from_sql(ty, raw)?;
        JobState::parse(text).ok_or_else(|| format!("unknown job state '{text}'").into())
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

fn job_from_row(row: &Row) -> Result<JobRow, StoreError> {
    Ok(JobRow {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        state: row.try_get("state")?,
        input: row.try_get("input")?,
        settings: row.try_get("settings")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        attempts: row.try_get("attempts")?,
        cancel_requested: row.try_get("cancel_requested")?,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        progress: json(row, "progress")?,
        result: json(row, "result")?,
        cache_key: row.try_get("cache_key")?,
        cached_from: row.try_get("cached_from")?,
        expired_at: row.try_get("expired_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
    })
}

/// A JSON column, as its type.
fn json<T: serde::de::DeserializeOwned>(row: &Row, column: &str) -> Result<Option<T>, StoreError> {
    from_json(column, row.try_get(column)?).map_err(StoreError::Corrupt)
}

fn upload_from_row(row: &Row) -> Result<UploadRow, StoreError> {
    Ok(UploadRow {
        id: row.try_get("id")?,
        sha256: row.try_get("sha256")?,
        size: row.try_get::<_, i64>("size")? as u64,
        format: row.try_get("format")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

fn jobs(rows: Vec<Row>) -> Result<Vec<JobRow>, StoreError> {
    rows.iter().map(job_from_row).collect()
}

fn first_column(rows: Vec<Row>) -> Result<Vec<String>, StoreError> {
    rows.iter()
        .map(|r| r.try_get(0).map_err(StoreError::from))
        .collect()
}

fn job_in(client: &mut impl GenericClient, id: &str) -> Result<Option<JobRow>, StoreError> {
    client
        .query_opt(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"),
            &[&id],
        )?
        .as_ref()
        .map(job_from_row)
        .transpose()
}

/// Tells servers following the job that it changed (delivered when the transaction commits).
fn announce(client: &mut impl GenericClient, id: &str) -> Result<(), StoreError> {
    client.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &id])?;
    Ok(())
}

/// Brings the schema to this build's version; refuses a newer one.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS cs_init_schema (version BIGINT NOT NULL)")?;
    let found: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM cs_init_schema", &[])?
        .try_get(0)?;
    let supported = MIGRATIONS.len() as i64;
    if found > supported {
        return Err(StoreError::NewerSchema { found, supported });
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO cs_init_schema (version) VALUES ($1)",
            &[&(version as i64 + 1)],
        )?;
    }
    tx.commit()?;
    Ok(())
}

impl PostgresStore {
    /// Whether `spec` names a PostgreSQL database.
    pub fn handles(spec: &str) -> bool {
        spec.starts_with("postgres://") || spec.starts_with("postgresql://")
    }

    /// Connects to the database at `url` and migrates it. A database that cannot be reached,
    /// refuses the credentials or has a newer schema is an error now, not at the first job.
    pub fn open(url: &str, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let mut config: Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("cs-init serve");
        let mut client = config.connect(NoTls)?;
        migrate(&mut client)?;
        drop(client);
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            // Opened as needed: replicas idle at one connection each (plus the listener).
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            .build(PostgresConnectionManager::new(config.clone(), NoTls))?;
        Ok(Self {
            connections: Some(Connections {
                pool,
                listener: Mutex::new(None),
            }),
            config,
            clock,
        })
    }

    fn client(
        &self,
    ) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>, StoreError> {
        Ok(self.connections().pool.get()?)
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn connections(&self) -> &Connections {
        self.connections.as_ref().expect("open until dropped")
    }

    /// Creates the job, or reports the `Idempotency-Key`'s earlier job; `Err(None)` when a
    /// concurrent request with the same key committed first.
    fn try_create(&self, new: &NewJob) -> Result<Created, Option<CreateError>> {
        let store = |e: StoreError| Some(CreateError::Store(e));
        let mut client = self.client().map_err(store)?;
        let mut tx = client.transaction().map_err(|e| store(e.into()))?;
        if let Some((key, request)) = new.idempotency {
            if let Some(earlier) = replay(&mut tx, key, request).map_err(store)? {
                return earlier.map_err(Some);
            }
        }
        let now = self.now();
        let (key, request) = new.idempotency.unzip();
        let queued: i64 = tx
            .query_one("SELECT COUNT(*) FROM jobs WHERE state = 'queued'", &[])
            .and_then(|r| r.try_get(0))
            .map_err(|e| store(e.into()))?;
        if queued as usize >= new.max_queued {
            return Err(Some(CreateError::QueueFull {
                queued: queued as usize,
            }));
        }
        let inserted = tx.query_one(
            &format!(
                "INSERT INTO jobs (id, state, input, settings, created_at, idempotency_key, \
                 request_sha256) VALUES ($1, 'queued', $2, $3, $4, $5, $6) \
                 RETURNING {JOB_COLUMNS}"
            ),
            &[&new.id, &new.input, &new.settings, &now, &key, &request],
        );
        let row = match inserted {
            Ok(row) => row,
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) && key.is_some() => {
                return Err(None)
            }
            Err(e) => return Err(store(e.into())),
        };
        let job = job_from_row(&row).map_err(store)?;
        tx.commit().map_err(|e| store(e.into()))?;
        Ok(Created::New(job))
    }
}

/// The job an `Idempotency-Key` created: replayed when the request is the same, a conflict when
/// it is not; `None` when the key is new.
fn replay(
    client: &mut impl GenericClient,
    key: &str,
    request: &str,
) -> Result<Option<Result<Created, CreateError>>, StoreError> {
    let Some(row) = client.query_opt(
        &format!("SELECT {JOB_COLUMNS}, request_sha256 FROM jobs WHERE idempotency_key = $1"),
        &[&key],
    )?
    else {
        return Ok(None);
    };
    let job = job_from_row(&row)?;
    let digest: Option<String> = row.try_get("request_sha256")?;
    Ok(Some(if digest.as_deref() == Some(request) {
        Ok(Created::Replayed(job))
    } else {
        Err(CreateError::IdempotencyConflict { job: job.id })
    }))
}

impl JobStore for PostgresStore {
    fn describe(&self) -> String {
        let host = self
            .config
            .get_hosts()
            .first()
            .map(|h| match h {
                ::postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                ::postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_default();
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "postgresql ({}@{host}:{port}/{})",
            self.config.get_user().unwrap_or(""),
            self.config.get_dbname().unwrap_or("")
        )
    }

    fn shared(&self) -> bool {
        true
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.client()?.batch_execute("SELECT 1")?;
        Ok(())
    }

    fn insert_upload(&self, upload: &UploadRow) -> Result<(), StoreError> {
        self.client()?.execute(
            "INSERT INTO uploads (id, sha256, size, format, name, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &upload.id,
                &upload.sha256,
                &(upload.size as i64),
                &upload.format,
                &upload.name,
                &upload.created_at,
            ],
        )?;
        Ok(())
    }

    fn upload(&self, id: &str) -> Result<Option<UploadRow>, StoreError> {
        self.client()?
            .query_opt("SELECT * FROM uploads WHERE id = $1", &[&id])?
            .as_ref()
            .map(upload_from_row)
            .transpose()
    }

    fn upload_ids(&self) -> Result<Vec<String>, StoreError> {
        first_column(self.client()?.query("SELECT id FROM uploads", &[])?)
    }

    fn delete_upload(&self, id: &str) -> Result<(), StoreError> {
        self.client()?
            .execute("DELETE FROM uploads WHERE id = $1", &[&id])?;
        Ok(())
    }

    fn stale_uploads(&self, cutoff: i64) -> Result<Vec<String>, StoreError> {
        first_column(self.client()?.query(
            "SELECT id FROM uploads WHERE created_at < $1 AND NOT EXISTS (\
                 SELECT 1 FROM jobs WHERE jobs.input = 'upload:' || uploads.id \
                 AND jobs.state IN ('queued', 'running'))",
            &[&cutoff],
        )?)
    }

    fn create_job(&self, new: &NewJob) -> Result<Created, CreateError> {
        match self.try_create(new) {
            Ok(created) => Ok(created),
            Err(Some(e)) => Err(e),
            // Another server committed a job with this key meanwhile: it is the one.
            Err(None) => {
                let (key, request) = new.idempotency.expect("only a keyed request races");
                let mut client = self.client()?;
                match replay(&mut *client, key, request)? {
                    Some(earlier) => earlier,
                    None => Err(StoreError::Corrupt(format!(
                        "Idempotency-Key {key:?} was taken and then vanished"
                    ))
                    .into()),
                }
            }
        }
    }

    fn job_by_idempotency_key(
        &self,
        key: &str,
    ) -> Result<Option<(JobRow, Option<String>)>, StoreError> {
        self.client()?
            .query_opt(
                &format!(
                    "SELECT {JOB_COLUMNS}, request_sha256 FROM jobs WHERE idempotency_key = $1"
                ),
                &[&key],
            )?
            .map(|r| Ok((job_from_row(&r)?, r.try_get("request_sha256")?)))
            .transpose()
    }

    fn job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        job_in(&mut *self.client()?, id)
    }

    fn list_jobs(
        &self,
        state: Option<JobState>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<JobRow>, StoreError> {
        jobs(self.client()?.query(
            &format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1::TEXT IS NULL OR state = $1) \
                 AND ($2::BIGINT IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3"
            ),
            &[&state.map(JobState::as_str), &before, &(limit as i64)],
        )?)
    }

    fn claim_next(&self, lease: &Lease) -> Result<Option<JobRow>, StoreError> {
        let now = self.now();
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let row = tx.query_opt(
            &format!(
                "UPDATE jobs SET state = 'running', started_at = $1, attempts = attempts + 1, \
                 progress = NULL, cache_key = NULL, lease_owner = $2, lease_expires_at = $3 \
                 WHERE seq = (SELECT seq FROM jobs WHERE state = 'queued' ORDER BY seq LIMIT 1 \
                 FOR UPDATE SKIP LOCKED) RETURNING {JOB_COLUMNS}"
            ),
            &[&now, &lease.owner, &(now + lease.duration_ms)],
        )?;
        let job = row.as_ref().map(job_from_row).transpose()?;
        if let Some(job) = &job {
            announce(&mut tx, &job.id)?;
        }
        tx.commit()?;
        Ok(job)
    }

    fn heartbeat(&self, lease: &Lease) -> Result<Vec<Held>, StoreError> {
        let rows = self.client()?.query(
            "UPDATE jobs SET lease_expires_at = $2 WHERE state = 'running' AND lease_owner = $1 \
             RETURNING id, cancel_requested",
            &[&lease.owner, &(self.now() + lease.duration_ms)],
        )?;
        rows.iter()
            .map(|r| {
                Ok(Held {
                    id: r.try_get(0)?,
                    cancel_requested: r.try_get(1)?,
                })
            })
            .collect()
    }

    fn release_abandoned(&self, all: bool, max_attempts: i64) -> Result<Abandoned, StoreError> {
        let now = self.now();
        let before = if all { i64::MAX } else { now };
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        // Locked and skipped if locked, so that servers sweeping at once take distinct jobs.
        let rows = tx.query(
            "SELECT id, attempts, cancel_requested FROM jobs WHERE state = 'running' \
             AND COALESCE(lease_expires_at, 0) < $1 ORDER BY seq FOR UPDATE SKIP LOCKED",
            &[&before],
        )?;
        let mut abandoned = Abandoned::default();
        let cleared = "progress = NULL, lease_owner = NULL, lease_expires_at = NULL";
        for row in rows {
            let id: String = row.try_get(0)?;
            let attempts: i64 = row.try_get(1)?;
            let cancel_requested: bool = row.try_get(2)?;
            if cancel_requested {
                tx.execute(
                    &format!(
                        "UPDATE jobs SET state = 'canceled', finished_at = $2, {cleared} \
                         WHERE id = $1"
                    ),
                    &[&id, &now],
                )?;
                abandoned.canceled.push(id.clone());
            } else if attempts >= max_attempts {
                tx.execute(
                    &format!(
                        "UPDATE jobs SET state = 'failed', finished_at = $2, \
                         error_code = 'attempts_exhausted', error_message = $3, {cleared} \
                         WHERE id = $1"
                    ),
                    &[&id, &now, &attempts_exhausted_message(attempts)],
                )?;
                abandoned.failed.push(id.clone());
            } else {
                tx.execute("DELETE FROM job_layers WHERE job_id = $1", &[&id])?;
                tx.execute(
                    &format!(
                        "UPDATE jobs SET state = 'queued', started_at = NULL, {cleared} \
                         WHERE id = $1"
                    ),
                    &[&id],
                )?;
                abandoned.requeued.push(id.clone());
            }
            announce(&mut tx, &id)?;
        }
        tx.commit()?;
        Ok(abandoned)
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
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let holds = tx.execute(
            "UPDATE jobs SET progress = $3 WHERE id = $1 AND state = 'running' \
             AND lease_owner = $2",
            &[&id, &lease.owner, &progress],
        )?;
        if holds == 1 {
            tx.execute(
                "INSERT INTO job_layers (job_id, ordinal, layer) VALUES ($1, $2, $3) \
                 ON CONFLICT (job_id, ordinal) DO UPDATE SET layer = EXCLUDED.layer",
                &[&id, &(ordinal as i64), &layer],
            )?;
            announce(&mut tx, id)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn layers(&self, id: &str) -> Result<Vec<String>, StoreError> {
        first_column(self.client()?.query(
            "SELECT layer FROM job_layers WHERE job_id = $1 ORDER BY ordinal",
            &[&id],
        )?)
    }

    fn finish(
        &self,
        id: &str,
        lease: &Lease,
        ending: &Ending,
    ) -> Result<Option<JobRow>, StoreError> {
        let now = self.now();
        let held = "WHERE id = $1 AND state = 'running' AND lease_owner = $2";
        let cleared = "progress = NULL, lease_owner = NULL, lease_expires_at = NULL";
        let returning = format!("RETURNING {JOB_COLUMNS}");
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let row = match ending {
            Ending::Succeeded {
                result,
                cache_key,
                cached_from,
            } => tx.query_opt(
                &format!(
                    "UPDATE jobs SET state = 'succeeded', finished_at = $3, result = $4, \
                     cache_key = $5, cached_from = $6, {cleared} {held} {returning}"
                ),
                &[
                    &id,
                    &lease.owner,
                    &now,
                    &to_json(result),
                    cache_key,
                    cached_from,
                ],
            )?,
            Ending::Failed { code, message } => tx.query_opt(
                &format!(
                    "UPDATE jobs SET state = 'failed', finished_at = $3, error_code = $4, \
                     error_message = $5, {cleared} {held} {returning}"
                ),
                &[&id, &lease.owner, &now, code, message],
            )?,
            Ending::Canceled => tx.query_opt(
                &format!(
                    "UPDATE jobs SET state = 'canceled', finished_at = $3, {cleared} \
                     {held} {returning}"
                ),
                &[&id, &lease.owner, &now],
            )?,
        };
        let job = row.as_ref().map(job_from_row).transpose()?;
        if job.is_some() {
            announce(&mut tx, id)?;
        }
        tx.commit()?;
        Ok(job)
    }

    fn release(&self, id: &str, lease: &Lease) -> Result<Option<JobRow>, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let row = tx.query_opt(
            &format!(
                "UPDATE jobs SET state = 'queued', started_at = NULL, progress = NULL, \
                 lease_owner = NULL, lease_expires_at = NULL \
                 WHERE id = $1 AND state = 'running' AND lease_owner = $2 \
                 RETURNING {JOB_COLUMNS}"
            ),
            &[&id, &lease.owner],
        )?;
        let job = row.as_ref().map(job_from_row).transpose()?;
        if job.is_some() {
            tx.execute("DELETE FROM job_layers WHERE job_id = $1", &[&id])?;
            announce(&mut tx, id)?;
        }
        tx.commit()?;
        Ok(job)
    }

    fn requeue_lost_result(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let row = tx.query_opt(
            &format!(
                "UPDATE jobs SET state = 'queued', started_at = NULL, finished_at = NULL, \
                 progress = NULL, result = NULL WHERE id = $1 AND state = 'succeeded' \
                 RETURNING {JOB_COLUMNS}"
            ),
            &[&id],
        )?;
        let job = row.as_ref().map(job_from_row).transpose()?;
        if job.is_some() {
            tx.execute("DELETE FROM job_layers WHERE job_id = $1", &[&id])?;
            announce(&mut tx, id)?;
        }
        tx.commit()?;
        Ok(job)
    }

    fn cancel(&self, id: &str) -> Result<Option<Cancel>, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let Some(row) = tx.query_opt(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE"),
            &[&id],
        )?
        else {
            return Ok(None);
        };
        let job = job_from_row(&row)?;
        let outcome = match job.state {
            JobState::Queued => {
                tx.execute(
                    "UPDATE jobs SET state = 'canceled', finished_at = $2 WHERE id = $1",
                    &[&id, &self.now()],
                )?;
                Cancel::Canceled
            }
            JobState::Running => {
                tx.execute(
                    "UPDATE jobs SET cancel_requested = TRUE WHERE id = $1",
                    &[&id],
                )?;
                Cancel::Requested
            }
            _ => return Ok(Some(Cancel::Finished(job))),
        };
        let job = job_in(&mut tx, id)?
            .ok_or_else(|| StoreError::Corrupt(format!("job {id} vanished")))?;
        announce(&mut tx, id)?;
        tx.commit()?;
        Ok(Some(outcome(job)))
    }

    fn cached(&self, cache_key: &str) -> Result<Option<JobRow>, StoreError> {
        self.client()?
            .query_opt(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE cache_key = $1 AND state = 'succeeded' \
                     AND expired_at IS NULL ORDER BY seq DESC LIMIT 1"
                ),
                &[&cache_key],
            )?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }

    fn running_with_key(
        &self,
        id: &str,
        lease: &Lease,
        cache_key: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        // Runs recording one key take turns, so that one of them sees the other.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&cache_key],
        )?;
        let earlier = tx
            .query_opt(
                "SELECT id FROM jobs WHERE cache_key = $2 AND state = 'running' AND id <> $1 \
                 ORDER BY seq LIMIT 1",
                &[&id, &cache_key],
            )?
            .map(|r| r.try_get(0))
            .transpose()?;
        tx.execute(
            "UPDATE jobs SET cache_key = $3 WHERE id = $1 AND state = 'running' \
             AND lease_owner = $2",
            &[&id, &lease.owner, &cache_key],
        )?;
        tx.commit()?;
        Ok(earlier)
    }

    fn live_results(&self) -> Result<Vec<JobRow>, StoreError> {
        jobs(self.client()?.query(
            &format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'succeeded' AND expired_at IS NULL"
            ),
            &[],
        )?)
    }

    fn expire(&self, cutoff: i64) -> Result<Vec<String>, StoreError> {
        first_column(self.client()?.query(
            "UPDATE jobs SET expired_at = $2 WHERE state = 'succeeded' AND expired_at IS NULL \
             AND finished_at < $1 RETURNING id",
            &[&cutoff, &self.now()],
        )?)
    }

    fn counts(&self) -> Result<BTreeMap<JobState, u64>, StoreError> {
        let rows = self
            .client()?
            .query("SELECT state, COUNT(*) FROM jobs GROUP BY state", &[])?;
        let counts = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(counts_of(counts))
    }

    fn wait_for_changes(&self, timeout: Duration) -> Result<Vec<String>, StoreError> {
        let mut listener = self
            .connections()
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let client = match listener.as_mut() {
            Some(client) => client,
            None => {
                let mut client = self.config.connect(NoTls)?;
                client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
                listener.insert(client)
            }
        };
        let mut ids = Vec::new();
        let mut received = || -> Result<(), ::postgres::Error> {
            let mut notifications = client.notifications();
            let first = notifications.timeout_iter(timeout).next()?;
            if let Some(first) = first {
                ids.push(first.payload().to_string());
                let mut pending = notifications.iter();
                while let Some(next) = pending.next()? {
                    ids.push(next.payload().to_string());
                }
            }
            Ok(())
        };
        if let Err(e) = received() {
            // Listened again on a new connection next time (the database may have restarted).
            *listener = None;
            return Err(e.into());
        }
        Ok(ids)
    }

    fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
