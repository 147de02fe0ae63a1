//! The store's whole suite, run against SQLite and against PostgreSQL. PostgreSQL's tests each
//! get a database of their own on the server named by `CS_INIT_TEST_POSTGRES` (a URL whose
//! user may create databases); without it they are skipped, and fail under
//! `CS_INIT_REQUIRE_POSTGRES=1`, as CI sets.

use std::sync::Arc;

use super::*;

#[path = "../../testing/test_database.rs"]
mod test_database;
use test_database::TestDatabase;

const START: i64 = 1_700_000_000_000;
const LEASE_MS: i64 = 10_000;

/// Where a test's store lives; it can be opened again, as a restarted server would.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase),
}

impl Backend {
    fn sqlite() -> Option<Self> {
        Some(Self::Sqlite(tempfile::tempdir().unwrap()))
    }

    fn postgres() -> Option<Self> {
        TestDatabase::create().map(Self::Postgres)
    }

    fn open(&self, clock: &Arc<ManualClock>) -> Result<Box<dyn JobStore>, StoreError> {
        let clock: Arc<dyn Clock> = clock.clone();
        match self {
            Backend::Sqlite(dir) => Ok(Box::new(SqliteStore::open(
                &dir.path().join("store.sqlite"),
                clock,
            )?)),
            Backend::Postgres(db) => Ok(Box::new(PostgresStore::open(&db.url, clock)?)),
        }
    }
}

/// Each test, once per backend.
macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $test() { if let Some(b) = super::Backend::sqlite() { super::$test(&b) } })*
        }
        mod postgres {
            $(#[test] fn $test() { if let Some(b) = super::Backend::postgres() { super::$test(&b) } })*
        }
    };
}

on_both_stores!(
    jobs_run_in_the_order_they_came,
    a_full_queue_refuses_and_a_key_replays,
    cancel_depends_on_the_state,
    leases_expire_into_the_queue_then_into_failure,
    a_server_that_lost_its_lease_cannot_finish_the_job,
    a_restart_alone_releases_every_running_job,
    pages_expiry_and_stale_uploads,
    a_newer_schema_is_refused,
    concurrent_claims_take_each_job_once,
    concurrent_requests_with_one_key_make_one_job,
    an_identical_run_waits_for_the_one_that_recorded_first,
);

/// A stored result, as a worker records it.
fn result() -> StoredResult {
    let file = |name: &str| crate::view::StoredFile {
        name: name.into(),
        path: name.into(),
        size: 1,
        sha256: "0".repeat(64),
    };
    StoredResult {
        files: vec![file("net.cs.safetensors")],
        report: file("report.json"),
        plot: file("plot.svg"),
        totals: serde_json::json!({"optimized": 1}),
        diverged: false,
    }
}

/// Progress at a layer boundary.
fn progress(layer: usize) -> Progress {
    Progress {
        layer,
        layers: 4,
        tensor: Some(format!("conv{layer}.weight")),
        iteration: 10,
        iterations: 10,
        loss: Some(1.5),
        layers_done: layer,
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(START))
}

fn lease(owner: &str) -> Lease {
    Lease {
        owner: owner.into(),
        duration_ms: LEASE_MS,
    }
}

fn queue(store: &dyn JobStore, id: &str, max_queued: usize) -> Result<Created, CreateError> {
    store.create_job(&NewJob {
        id,
        input: "builtin:cnn1",
        settings: "{}",
        idempotency: None,
        max_queued,
    })
}

fn state(store: &dyn JobStore, id: &str) -> JobState {
    store.job(id).unwrap().unwrap().state
}

fn jobs_run_in_the_order_they_came(backend: &Backend) {
    let store = backend.open(&clock()).unwrap();
    for id in ["a", "b", "c"] {
        queue(&*store, id, 10).unwrap();
    }
    let a = lease("a-server");
    let order: Vec<String> =
        std::iter::from_fn(|| store.claim_next(&a).unwrap().map(|j| j.id)).collect();
    assert_eq!(order, ["a", "b", "c"]);
    let job = store.job("a").unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Running, 1));
    assert_eq!(job.started_at, Some(START));
    assert_eq!(job.lease_owner.as_deref(), Some("a-server"));
    assert_eq!(job.lease_expires_at, Some(START + LEASE_MS));
}

fn a_full_queue_refuses_and_a_key_replays(backend: &Backend) {
    let store = backend.open(&clock()).unwrap();
    queue(&*store, "a", 1).unwrap();
    assert!(matches!(
        queue(&*store, "b", 1),
        Err(CreateError::QueueFull { queued: 1 })
    ));
    let keyed = |id: &'static str, request: &'static str| {
        store.create_job(&NewJob {
            id,
            input: "builtin:cnn1",
            settings: "{}",
            idempotency: Some(("key", request)),
            max_queued: 10,
        })
    };
    assert!(matches!(keyed("k1", "r1").unwrap(), Created::New(_)));
    match keyed("k2", "r1").unwrap() {
        Created::Replayed(job) => assert_eq!(job.id, "k1"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        keyed("k3", "r2"),
        Err(CreateError::IdempotencyConflict { job }) if job == "k1"
    ));
    assert!(store.job("k2").unwrap().is_none());
    let (job, digest) = store.job_by_idempotency_key("key").unwrap().unwrap();
    assert_eq!((job.id.as_str(), digest.as_deref()), ("k1", Some("r1")));
}

fn cancel_depends_on_the_state(backend: &Backend) {
    let store = backend.open(&clock()).unwrap();
    let here = lease("here");
    queue(&*store, "queued", 10).unwrap();
    assert!(
        matches!(store.cancel("queued").unwrap(), Some(Cancel::Canceled(j)) if j.state == JobState::Canceled)
    );
    queue(&*store, "running", 10).unwrap();
    store.claim_next(&here).unwrap();
    match store.cancel("running").unwrap() {
        Some(Cancel::Requested(j)) => assert!(j.cancel_requested && j.state == JobState::Running),
        other => panic!("{other:?}"),
    }
    // The running server hears of it at its next heartbeat, wherever the cancel was sent.
    assert_eq!(
        store.heartbeat(&here).unwrap(),
        [Held {
            id: "running".into(),
            cancel_requested: true
        }]
    );
    store
        .finish("running", &here, &Ending::Canceled)
        .unwrap()
        .unwrap();
    assert!(matches!(
        store.cancel("running").unwrap(),
        Some(Cancel::Finished(_))
    ));
    assert!(store.cancel("missing").unwrap().is_none());
    // Only a running job can end.
    let failed = Ending::Failed {
        code: "x",
        message: "y",
    };
    assert!(store.finish("queued", &here, &failed).unwrap().is_none());
}

fn leases_expire_into_the_queue_then_into_failure(backend: &Backend) {
    let clock = clock();
    let store = backend.open(&clock).unwrap();
    let (a, b) = (lease("a"), lease("b"));
    queue(&*store, "job", 10).unwrap();
    queue(&*store, "canceled", 10).unwrap();
    store.claim_next(&a).unwrap().unwrap();
    store.claim_next(&a).unwrap().unwrap();
    store
        .record_layer("job", &a, 1, "{}", Some(&progress(1)))
        .unwrap();
    store.cancel("canceled").unwrap();

    // Renewed by heartbeat, the lease holds past its first term.
    clock.advance(LEASE_MS / 2);
    assert_eq!(store.heartbeat(&a).unwrap().len(), 2);
    clock.advance(LEASE_MS / 2 + 1);
    assert!(store.release_abandoned(false, 2).unwrap().is_empty());

    // Server a stops: once the lease runs out its jobs go back, a canceled one to its end.
    clock.advance(LEASE_MS);
    let abandoned = store.release_abandoned(false, 2).unwrap();
    assert_eq!(abandoned.requeued, ["job"]);
    assert_eq!(abandoned.canceled, ["canceled"]);
    let job = store.job("job").unwrap().unwrap();
    assert_eq!(
        (job.state, job.lease_owner, job.progress),
        (JobState::Queued, None, None)
    );
    assert!(store.layers("job").unwrap().is_empty());

    // The second run's server stops too: with --max-attempts 2 the job fails, saying why.
    assert_eq!(store.claim_next(&b).unwrap().unwrap().attempts, 2);
    clock.advance(LEASE_MS + 1);
    assert_eq!(store.release_abandoned(false, 2).unwrap().failed, ["job"]);
    let job = store.job("job").unwrap().unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error_code.as_deref(), Some("attempts_exhausted"));
    assert!(job.error_message.unwrap().contains("2 times"));
}

fn a_server_that_lost_its_lease_cannot_finish_the_job(backend: &Backend) {
    let clock = clock();
    let store = backend.open(&clock).unwrap();
    let (slow, other) = (lease("slow"), lease("other"));
    queue(&*store, "job", 10).unwrap();
    store.claim_next(&slow).unwrap().unwrap();
    clock.advance(LEASE_MS + 1);
    store.release_abandoned(false, 5).unwrap();
    store.claim_next(&other).unwrap().unwrap();

    // The slow server wakes up: its heartbeat holds nothing, its writes change nothing.
    assert!(store.heartbeat(&slow).unwrap().is_empty());
    store
        .record_layer("job", &slow, 1, "\"slow\"", Some(&progress(1)))
        .unwrap();
    assert!(store.layers("job").unwrap().is_empty());
    let success = Ending::Succeeded {
        result: &result(),
        cache_key: "k",
        cached_from: None,
    };
    assert!(store.finish("job", &slow, &success).unwrap().is_none());
    assert!(store.release("job", &slow).unwrap().is_none());
    assert_eq!(state(&*store, "job"), JobState::Running);

    store
        .record_layer("job", &other, 1, "\"other\"", Some(&progress(1)))
        .unwrap();
    assert_eq!(store.layers("job").unwrap(), ["\"other\""]);
    let running = store.job("job").unwrap().unwrap();
    assert_eq!(running.progress, Some(progress(1)));
    let done = store.finish("job", &other, &success).unwrap().unwrap();
    assert_eq!((done.state, done.attempts), (JobState::Succeeded, 2));
    // The JSON columns come back as they went in.
    assert_eq!((done.result, done.progress), (Some(result()), None));
}

fn a_restart_alone_releases_every_running_job(backend: &Backend) {
    let clock = clock();
    let store = backend.open(&clock).unwrap();
    let before = lease("before");
    queue(&*store, "a", 10).unwrap();
    queue(&*store, "b", 10).unwrap();
    store.claim_next(&before).unwrap();
    store.claim_next(&before).unwrap();
    store
        .record_layer("a", &before, 1, "{}", Some(&progress(1)))
        .unwrap();
    store.cancel("b").unwrap();
    drop(store);

    let store = backend.open(&clock).unwrap();
    let abandoned = store.release_abandoned(true, 3).unwrap();
    assert_eq!(abandoned.requeued, ["a"]);
    assert_eq!(abandoned.canceled, ["b"]);
    let a = store.job("a").unwrap().unwrap();
    assert_eq!(
        (a.state, a.progress.clone(), a.attempts),
        (JobState::Queued, None, 1)
    );
    assert!(store.layers("a").unwrap().is_empty());
    assert_eq!(state(&*store, "b"), JobState::Canceled);
}

fn pages_expiry_and_stale_uploads(backend: &Backend) {
    let clock = clock();
    let store = backend.open(&clock).unwrap();
    for id in ["a", "b", "c", "d"] {
        queue(&*store, id, 10).unwrap();
    }
    let first = store.list_jobs(None, None, 2).unwrap();
    assert_eq!(
        first.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["d", "c"]
    );
    let next = store.list_jobs(None, Some(first[1].seq), 2).unwrap();
    assert_eq!(
        next.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["b", "a"]
    );
    let here = lease("here");
    store.claim_next(&here).unwrap();
    let running = store.list_jobs(Some(JobState::Running), None, 10).unwrap();
    assert_eq!(running.len(), 1);
    let ending = Ending::Succeeded {
        result: &result(),
        cache_key: "k",
        cached_from: None,
    };
    store.finish("a", &here, &ending).unwrap().unwrap();
    assert_eq!(store.cached("k").unwrap().unwrap().id, "a");
    assert_eq!(store.live_results().unwrap().len(), 1);
    assert!(store.expire(START).unwrap().is_empty());
    clock.advance(1000);
    assert_eq!(store.expire(START + 1).unwrap(), ["a"]);
    // A second sweeper finds nothing left to expire.
    assert!(store.expire(START + 1).unwrap().is_empty());
    assert!(store.cached("k").unwrap().is_none());
    let counts = store.counts().unwrap();
    assert_eq!(
        (counts[&JobState::Queued], counts[&JobState::Succeeded]),
        (3, 1)
    );

    let upload = |id: &str| UploadRow {
        id: id.into(),
        sha256: "0".into(),
        size: 1,
        format: "safetensors".into(),
        name: "n".into(),
        created_at: START,
    };
    store.insert_upload(&upload("used")).unwrap();
    store.insert_upload(&upload("free")).unwrap();
    assert_eq!(store.upload("used").unwrap().unwrap(), upload("used"));
    store
        .create_job(&NewJob {
            id: "e",
            input: "upload:used",
            settings: "{}",
            idempotency: None,
            max_queued: 10,
        })
        .unwrap();
    assert_eq!(store.stale_uploads(START + 1).unwrap(), ["free"]);
    store.delete_upload("free").unwrap();
    assert_eq!(store.upload_ids().unwrap(), ["used"]);
}

fn a_newer_schema_is_refused(backend: &Backend) {
    let store = backend.open(&clock()).unwrap();
    queue(&*store, "a", 10).unwrap();
    drop(store);
    match backend {
        Backend::Sqlite(dir) => {
            let conn = rusqlite::Connection::open(dir.path().join("store.sqlite")).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        Backend::Postgres(db) => {
            let mut client = ::postgres::Client::connect(&db.url, ::postgres::NoTls).unwrap();
            client
                .batch_execute("INSERT INTO cs_init_schema (version) VALUES (99)")
                .unwrap();
        }
    }
    match backend.open(&clock()) {
        Err(e @ StoreError::NewerSchema { found: 99, .. }) => {
            assert!(e.to_string().contains("newer than this cs-init's"), "{e}")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a newer schema was opened"),
    }
}

fn concurrent_claims_take_each_job_once(backend: &Backend) {
    let clock = clock();
    let store: Arc<dyn JobStore> = backend.open(&clock).unwrap().into();
    for i in 0..40 {
        queue(&*store, &format!("job{i:02}"), 100).unwrap();
    }
    let claimers: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let here = lease(&format!("server{t}"));
                let mut claimed = Vec::new();
                // A claim may miss a row another claimer holds for an instant: try until empty.
                for _ in 0..200 {
                    match store.claim_next(&here).unwrap() {
                        Some(job) => claimed.push(job.id),
                        None if store.counts().unwrap()[&JobState::Queued] == 0 => break,
                        None => {}
                    }
                }
                claimed
            })
        })
        .collect();
    let mut claimed: Vec<String> = claimers
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    claimed.sort();
    let expected: Vec<String> = (0..40).map(|i| format!("job{i:02}")).collect();
    assert_eq!(claimed, expected);
}

fn concurrent_requests_with_one_key_make_one_job(backend: &Backend) {
    let store: Arc<dyn JobStore> = backend.open(&clock()).unwrap().into();
    let requests: Vec<_> = (0..6)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let id = format!("job{t}");
                match store
                    .create_job(&NewJob {
                        id: &id,
                        input: "builtin:cnn1",
                        settings: "{}",
                        idempotency: Some(("same-key", "same-request")),
                        max_queued: 100,
                    })
                    .unwrap()
                {
                    Created::New(job) => (job.id, false),
                    Created::Replayed(job) => (job.id, true),
                }
            })
        })
        .collect();
    let answers: Vec<(String, bool)> = requests.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(answers.iter().filter(|(_, replayed)| !replayed).count(), 1);
    assert!(answers.iter().all(|(id, _)| *id == answers[0].0));
    assert_eq!(store.counts().unwrap()[&JobState::Queued], 1);
}

fn an_identical_run_waits_for_the_one_that_recorded_first(backend: &Backend) {
    let store = backend.open(&clock()).unwrap();
    let (a, b) = (lease("a"), lease("b"));
    queue(&*store, "first", 10).unwrap();
    queue(&*store, "second", 10).unwrap();
    store.claim_next(&a).unwrap().unwrap();
    store.claim_next(&b).unwrap().unwrap();
    // The younger job hashed first: it computes, and the older one waits for it.
    assert_eq!(store.running_with_key("second", &b, "k").unwrap(), None);
    assert_eq!(
        store.running_with_key("first", &a, "k").unwrap().as_deref(),
        Some("second")
    );
    // Other keys are other results; a server that lost the job cannot mark it.
    assert_eq!(store.running_with_key("first", &a, "other").unwrap(), None);
    store.running_with_key("first", &b, "k").unwrap();
    assert_eq!(
        store.job("first").unwrap().unwrap().cache_key.as_deref(),
        Some("other")
    );
    // A new run forgets the key of the run before (it may not get that far this time).
    store.release("second", &b).unwrap().unwrap();
    assert_eq!(store.claim_next(&b).unwrap().unwrap().cache_key, None);
}

#[test]
fn an_old_sqlite_store_is_migrated() {
    // A data directory from before versioned migrations: the first schema, user_version 0.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(include_str!("sqlite/001_initial.sql"))
        .unwrap();
    conn.execute(
        "INSERT INTO jobs (id, state, input, settings, created_at) \
         VALUES ('old', 'queued', 'builtin:cnn1', '{}', 1)",
        [],
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path, clock()).unwrap();
    let job = store.claim_next(&lease("new")).unwrap().unwrap();
    assert_eq!(
        (job.id.as_str(), job.lease_owner.as_deref()),
        ("old", Some("new"))
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
}

#[test]
fn store_urls_are_printed_without_their_password() {
    assert_eq!(
        redact_url("postgres://cs:s3cret@db.internal:5432/jobs?password=x"),
        "postgres://cs@db.internal:5432/jobs"
    );
    assert_eq!(redact_url("postgres://db/jobs"), "postgres://db/jobs");
    assert_eq!(
        url_password("postgres://cs:s3cret@db/jobs").as_deref(),
        Some("s3cret")
    );
    assert_eq!(url_password("postgres://cs@db/jobs"), None);
}
