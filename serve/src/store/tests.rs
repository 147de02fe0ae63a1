use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store.sqlite")).unwrap();
    (dir, store)
}

fn queue(store: &Store, id: &str, max_queued: usize) -> Result<Created, CreateError> {
    store.create_job(&NewJob {
        id,
        input: "builtin:cnn1",
        settings: "{}",
        idempotency: None,
        max_queued,
        from_cache: None,
    })
}

#[test]
fn jobs_run_in_the_order_they_came() {
    let (_dir, store) = store();
    for id in ["a", "b", "c"] {
        queue(&store, id, 10).unwrap();
    }
    let order: Vec<String> =
        std::iter::from_fn(|| store.claim_next().unwrap().map(|j| j.id)).collect();
    assert_eq!(order, ["a", "b", "c"]);
    let job = store.job("a").unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Running, 1));
    assert!(job.started_at.is_some());
}

#[test]
fn a_full_queue_refuses_and_a_key_replays() {
    let (_dir, store) = store();
    queue(&store, "a", 1).unwrap();
    assert!(matches!(
        queue(&store, "b", 1),
        Err(CreateError::QueueFull { queued: 1 })
    ));
    let keyed = |id: &'static str, request: &'static str| {
        store.create_job(&NewJob {
            id,
            input: "builtin:cnn1",
            settings: "{}",
            idempotency: Some(("key", request)),
            max_queued: 10,
            from_cache: None,
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
}

#[test]
fn cancel_depends_on_the_state() {
    let (_dir, store) = store();
    queue(&store, "queued", 10).unwrap();
    assert!(
        matches!(store.cancel("queued").unwrap(), Some(Cancel::Canceled(j)) if j.state == JobState::Canceled)
    );
    queue(&store, "running", 10).unwrap();
    store.claim_next().unwrap();
    match store.cancel("running").unwrap() {
        Some(Cancel::Requested(j)) => assert!(j.cancel_requested && j.state == JobState::Running),
        other => panic!("{other:?}"),
    }
    store.finish("running", &Ending::Canceled).unwrap().unwrap();
    assert!(matches!(
        store.cancel("running").unwrap(),
        Some(Cancel::Finished(_))
    ));
    assert!(store.cancel("missing").unwrap().is_none());
    // Only a running job can end.
    assert!(store
        .finish(
            "queued",
            &Ending::Failed {
                code: "x",
                message: "y"
            }
        )
        .unwrap()
        .is_none());
}

#[test]
fn a_restart_requeues_running_jobs_and_forgets_their_layers() {
    let (dir, store) = store();
    queue(&store, "a", 10).unwrap();
    queue(&store, "b", 10).unwrap();
    store.claim_next().unwrap();
    store.claim_next().unwrap();
    store.record_layer("a", 1, "{}", "{\"layer\":1}").unwrap();
    store.cancel("b").unwrap();
    drop(store);
    let store = Store::open(&dir.path().join("store.sqlite")).unwrap();
    let recovery = store.recover().unwrap();
    assert_eq!(recovery.requeued, ["a"]);
    assert_eq!(recovery.canceled, ["b"]);
    let a = store.job("a").unwrap().unwrap();
    assert_eq!(
        (a.state, a.progress.clone(), a.attempts),
        (JobState::Queued, None, 1)
    );
    assert!(store.layers("a").unwrap().is_empty());
    assert_eq!(store.job("b").unwrap().unwrap().state, JobState::Canceled);
}

#[test]
fn pages_expiry_and_stale_uploads() {
    let (_dir, store) = store();
    for id in ["a", "b", "c", "d"] {
        queue(&store, id, 10).unwrap();
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
    store.claim_next().unwrap();
    let ending = Ending::Succeeded {
        result: "{}",
        cache_key: "k",
        cached_from: None,
    };
    store.finish("a", &ending).unwrap().unwrap();
    assert_eq!(store.cached("k").unwrap().unwrap().id, "a");
    assert!(store.expire(0).unwrap().is_empty());
    assert_eq!(store.expire(now_ms() + 1).unwrap(), ["a"]);
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
        created_at: 0,
    };
    store.insert_upload(&upload("used")).unwrap();
    store.insert_upload(&upload("free")).unwrap();
    store
        .create_job(&NewJob {
            id: "e",
            input: "upload:used",
            settings: "{}",
            idempotency: None,
            max_queued: 10,
            from_cache: None,
        })
        .unwrap();
    assert_eq!(store.stale_uploads(1).unwrap(), ["free"]);
}
