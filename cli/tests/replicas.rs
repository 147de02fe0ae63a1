//! Three real `cs-init serve` replicas on one PostgreSQL database and one shared file directory,
//! as a platform runs them behind a load balancer: jobs submitted round-robin, a replica killed
//! mid-layer and started again, the database restarted mid-run, events and cancels through a
//! replica other than the one running the job, one Idempotency-Key sent to two replicas at once,
//! and the result cache hit from every replica. Needs `CS_INIT_TEST_POSTGRES` (skipped without
//! it; a failure under `CS_INIT_REQUIRE_POSTGRES=1`, as CI sets).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::server::{Options, Server};
use crate::common::{cs_init_ok, small_network};
use cs_init::checkpoint::{serialize, Dtype};
use serde_json::{json, Value};

#[path = "../../serve/testing/test_database.rs"]
mod test_database;
use test_database::TestDatabase;

/// Short, so that a dead replica's job runs elsewhere within seconds.
const LEASE: &str = "2s";
const JOBS: usize = 60;

fn replica(data: &Path, store: &str) -> Server {
    Server::start(
        data,
        &Options {
            args: ["--store", store, "--lease", LEASE]
                .map(String::from)
                .to_vec(),
            ..Options::default()
        },
    )
}

/// The id a replica printed when it started.
fn server_id(server: &Server) -> String {
    let log = server.log.lock().unwrap();
    let rest = log
        .split("(server ")
        .nth(1)
        .expect("the server prints its id");
    rest.split(',').next().unwrap().to_string()
}

/// Ids of the jobs each log says succeeded, and how many times.
fn successes(logs: &[String]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for line in logs.iter().flat_map(|log| log.lines()) {
        if let Some((head, _)) = line.split_once(" succeeded in ") {
            let id = head.rsplit("job ").next().unwrap().to_string();
            *seen.entry(id).or_insert(0) += 1;
        }
    }
    seen
}

fn download(server: &Server, job: &Value) -> Vec<u8> {
    let reply = server.get(job["result"]["files"][0]["url"].as_str().unwrap());
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.body
}

fn wait_all(server: &Server, ids: &[String]) -> Vec<Value> {
    ids.iter().map(|id| server.wait(id)).collect()
}

#[test]
fn replicas_on_one_database_run_every_job_exactly_once() {
    let Some(database) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shared");
    let mut replicas: Vec<Server> = (0..3).map(|_| replica(&data, &database.url)).collect();
    let mut old_logs = Vec::new();

    // A long job to kill a replica under; an upload sent to one replica, for jobs that
    // whichever replica claims them runs.
    let long_settings = json!({"iters": 2500, "seed": 7, "probe": false});
    let long = replicas[0].submit("builtin:cnn2", long_settings);
    let long = long["id"].as_str().unwrap().to_string();
    let upload = replicas[1].post(
        "/v1/uploads?name=net.safetensors",
        &[],
        &serialize(None, &small_network(Dtype::F32)),
    );
    assert_eq!(upload.status, 201, "{}", upload.text());
    let upload_input = upload.json()["input"].as_str().unwrap().to_string();
    // Kill -9 the replica running the long job mid-layer; follow the job through another one.
    let running = replicas[0].wait_until(&long, Duration::from_secs(120), |j| {
        j["progress"]["layer"].as_u64().unwrap_or(0) >= 2
            && j["progress"]["iteration"].as_u64().unwrap_or(0) > 0
    });
    let runner_id = running["server"].as_str().unwrap().to_string();
    let runner = replicas
        .iter()
        .position(|r| server_id(r) == runner_id)
        .expect("the job runs on one of the replicas");
    let watcher = (runner + 1) % 3;
    let stream = {
        let base = replicas[watcher].base.clone();
        let long = long.clone();
        std::thread::spawn(move || Server::attach(&base).events(&long))
    };
    std::thread::sleep(Duration::from_millis(300));
    let killed_at = Instant::now();
    replicas[runner].kill();
    old_logs.push(replicas[runner].log.lock().unwrap().clone());
    let rerun = replicas[watcher].wait_until(&long, Duration::from_secs(60), |j| {
        j["state"] == "running" && j["attempts"] == 2
    });
    let failover = killed_at.elapsed();
    assert_ne!(rerun["server"].as_str().unwrap(), runner_id);
    eprintln!("a killed replica's job ran elsewhere after {failover:?}");

    // 60 short jobs round-robin over the live replicas, while the database restarts: the
    // replicas reconnect and lose nothing accepted.
    let live = [watcher, (runner + 2) % 3];
    let short: Vec<String> = (0..JOBS)
        .map(|i| {
            let input = if i % 4 == 0 {
                upload_input.as_str()
            } else {
                "builtin:cnn1"
            };
            let settings = json!({"iters": 30, "seed": i, "probe": false});
            replicas[live[i % 2]].submit(input, settings)["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();

    let queued = replicas[watcher]
        .get("/v1/jobs?state=queued&limit=500")
        .json();
    eprintln!(
        "the database restarts with {} jobs queued",
        queued["jobs"].as_array().unwrap().len()
    );
    if let Ok(restart) = std::env::var("CS_INIT_TEST_POSTGRES_RESTART") {
        let status = std::process::Command::new("sh")
            .args(["-c", &restart])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{restart}");
    } else {
        assert!(
            std::env::var_os("CS_INIT_REQUIRE_POSTGRES").is_none(),
            "CS_INIT_REQUIRE_POSTGRES is set but CS_INIT_TEST_POSTGRES_RESTART is not"
        );
    }
    replicas[runner] = replica(&data, &database.url);

    let finished = wait_all(&replicas[2], &short);
    let long_done = replicas[1].wait(&long);
    assert_eq!(long_done["state"], "succeeded", "{long_done}");
    assert_eq!(long_done["attempts"], 2);
    for job in &finished {
        assert_eq!(job["state"], "succeeded", "{job}");
    }

    // Every job succeeded exactly once across the replicas' logs, the killed one's included.
    let logs: Vec<String> = old_logs
        .iter()
        .cloned()
        .chain(replicas.iter().map(|r| r.log.lock().unwrap().clone()))
        .collect();
    let succeeded = successes(&logs);
    for id in short.iter().chain([&long]) {
        assert_eq!(
            succeeded.get(id),
            Some(&1),
            "job {id} in the logs: {succeeded:?}"
        );
    }

    // The watcher's stream saw the run on other replicas, each layer of it, to its end.
    let events = stream.join().unwrap();
    let (last, last_data) = events.last().unwrap();
    assert_eq!(
        (last.as_str(), &last_data["state"]),
        ("job", &json!("succeeded"))
    );
    let ordinals: BTreeSet<u64> = events
        .iter()
        .filter(|(name, _)| name == "layer_finished")
        .map(|(_, data)| data["ordinal"].as_u64().unwrap())
        .collect();
    let report = replicas[0].get(&format!("/v1/jobs/{long}/report")).json();
    let layers = report["layers"].as_array().unwrap().len() as u64;
    assert_eq!(ordinals, (1..=layers).collect::<BTreeSet<_>>());

    // Outputs are the command line's, whichever replica made them.
    let cli = |args: &[&str], output: &str| {
        let mut args = args.to_vec();
        args.extend(["--no-probe", "-q", "-o", output]);
        cs_init_ok(&args, dir.path());
        std::fs::read(dir.path().join(output)).unwrap()
    };
    assert!(
        download(&replicas[2], &long_done)
            == cli(
                &["cnn2", "--iters", "2500", "--seed", "7"],
                "long.safetensors"
            ),
        "the re-run job's checkpoint differs from the command line's"
    );
    assert!(
        download(&replicas[0], &finished[3])
            == cli(
                &["cnn1", "--iters", "30", "--seed", "3"],
                "cnn1.safetensors"
            ),
        "a short job's checkpoint differs from the command line's"
    );
    std::fs::write(
        dir.path().join("net.safetensors"),
        serialize(None, &small_network(Dtype::F32)),
    )
    .unwrap();
    assert!(
        download(&replicas[1], &finished[4])
            == cli(
                &["net.safetensors", "--iters", "30", "--seed", "4"],
                "net.cs.safetensors"
            ),
        "an uploaded checkpoint's job differs from the command line's"
    );

    // The result cache, from every replica: the same input and settings are computed once.
    for server in &replicas {
        let again = server.submit(
            "builtin:cnn1",
            json!({"iters": 30, "seed": 3, "probe": false}),
        );
        let again = server.wait(again["id"].as_str().unwrap());
        assert_eq!(again["state"], "succeeded");
        assert!(again["result"]["cached_from"].is_string(), "{again}");
        assert_eq!(
            again["result"]["files"][0]["sha256"],
            finished[3]["result"]["files"][0]["sha256"]
        );
    }

    // The same input and settings sent to two replicas at once: computed once, by whichever
    // hashed the input first, the other job waiting for its result.
    let twins: Vec<String> = [0, 1]
        .map(|i| {
            let settings = json!({"iters": 1500, "seed": 77, "probe": false});
            replicas[i].submit("builtin:cnn2", settings)["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .to_vec();
    let twins: Vec<Value> = twins.iter().map(|id| replicas[2].wait(id)).collect();
    assert!(twins.iter().all(|t| t["state"] == "succeeded"), "{twins:?}");
    let (computed, reused): (Vec<&Value>, Vec<&Value>) = twins
        .iter()
        .partition(|t| t["result"]["cached_from"].is_null());
    assert_eq!((computed.len(), reused.len()), (1, 1), "{twins:?}");
    assert_eq!(reused[0]["result"]["cached_from"], computed[0]["id"]);
    let waited = format!(
        "job {}: job {} is computing",
        reused[0]["id"].as_str().unwrap(),
        computed[0]["id"].as_str().unwrap()
    );
    assert!(
        replicas
            .iter()
            .any(|r| r.log.lock().unwrap().contains(&waited)),
        "the second job did not wait for the first: it ran after it"
    );

    // One Idempotency-Key on two replicas at once: one job.
    let keyed: Vec<_> = [1, 2]
        .map(|i| {
            let base = replicas[i].base.clone();
            std::thread::spawn(move || {
                let reply = Server::attach(&base).post(
                    "/v1/jobs",
                    &[
                        ("Content-Type", "application/json"),
                        ("Idempotency-Key", "one-key-two-replicas"),
                    ],
                    json!({"input": "builtin:cnn1", "settings": {"iters": 5, "seed": 99}})
                        .to_string()
                        .as_bytes(),
                );
                let replayed = reply.header("idempotent-replayed").is_some();
                (reply.json()["id"].as_str().unwrap().to_string(), replayed)
            })
        })
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(keyed[0].0, keyed[1].0);
    assert_eq!(keyed.iter().filter(|(_, replayed)| *replayed).count(), 1);

    // Cancel through one replica a job that another runs: it stops within a layer.
    let endless = replicas[0].submit("builtin:cnn2", json!({"iters": 100000, "probe": false}));
    let endless = endless["id"].as_str().unwrap().to_string();
    let running = replicas[0].wait_until(&endless, Duration::from_secs(60), |j| {
        j["progress"]["iteration"].as_u64().unwrap_or(0) > 0
    });
    let runner = running["server"].as_str().unwrap();
    let other = replicas.iter().find(|r| server_id(r) != runner).unwrap();
    let asked = Instant::now();
    let reply = other.post(&format!("/v1/jobs/{endless}/cancel"), &[], b"");
    assert_eq!(reply.status, 202, "{}", reply.text());
    let canceled = other.wait_until(&endless, Duration::from_secs(30), |j| {
        j["state"] == "canceled"
    });
    assert!(canceled["result"].is_null());
    eprintln!(
        "a cancel sent to another replica took {:?}",
        asked.elapsed()
    );
}

/// `cs-init serve --store URL` that must not start: its exit code and stderr.
fn refused(store: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::common::cs_init(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
            "data",
            "--store",
            store,
        ],
        dir.path(),
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_store_that_cannot_serve_is_an_error_at_start() {
    let Some(database) = TestDatabase::create() else {
        return;
    };
    // Not a store this build knows: a usage error.
    let (code, stderr) = refused("mysql://cs:hunter2@db/jobs");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("expected postgres://"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    // Nothing listens there; the password is never printed.
    let (code, stderr) = refused("postgres://cs:hunter2@127.0.0.1:1/jobs");
    assert_ne!(code, 0);
    assert!(
        stderr.contains("--store postgres://cs@127.0.0.1:1/jobs") && stderr.contains("connect"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");

    // A user the server does not know, and a database that does not exist.
    let server = database.url.rsplit_once('/').unwrap().0;
    let (_, host) = server
        .rsplit_once('@')
        .unwrap_or(("", server.trim_start_matches("postgres://")));
    let (code, stderr) = refused(&format!("postgres://nobody-here@{host}/postgres"));
    assert_ne!(code, 0);
    assert!(
        stderr.contains("role \"nobody-here\" does not exist"),
        "{stderr}"
    );
    let (code, stderr) = refused(&format!("{server}/no_such_database_here"));
    assert_ne!(code, 0);
    assert!(
        stderr.contains("database \"no_such_database_here\" does not exist"),
        "{stderr}"
    );

    // A schema newer than this build's.
    let mut client = ::postgres::Client::connect(&database.url, ::postgres::NoTls).unwrap();
    client
        .batch_execute(
            "CREATE TABLE cs_init_schema (version BIGINT NOT NULL); \
             INSERT INTO cs_init_schema (version) VALUES (99)",
        )
        .unwrap();
    let (code, stderr) = refused(&database.url);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("schema is version 99, newer than this cs-init's"),
        "{stderr}"
    );
}

/// The S3-compatible server of `CS_INIT_TEST_S3` (a URL such as `http://127.0.0.1:5055`, as
/// .ci/s3.sh starts with moto), with a new bucket; `None` (the test skips) when it is not set,
/// a panic when `CS_INIT_REQUIRE_S3` is.
fn s3_bucket() -> Option<(String, String)> {
    let Ok(endpoint) = std::env::var("CS_INIT_TEST_S3") else {
        assert!(
            std::env::var_os("CS_INIT_REQUIRE_S3").is_none(),
            "CS_INIT_REQUIRE_S3 is set but CS_INIT_TEST_S3 is not"
        );
        eprintln!("skipped: set CS_INIT_TEST_S3 to an S3-compatible server's URL to run this");
        return None;
    };
    let bucket = format!("cs-init-test-{:016x}", rand::random::<u64>());
    let created = ureq::put(format!("{endpoint}/{bucket}"))
        .send_empty()
        .expect("the S3 server creates a bucket");
    assert_eq!(created.status().as_u16(), 200);
    Some((endpoint, bucket))
}

fn on_s3(endpoint: &str, store: &str, files: &str, extra: &[&str]) -> Options {
    let mut args = vec!["--store", store, "--files", files];
    args.extend(extra);
    Options {
        args: args.into_iter().map(String::from).collect(),
        env: [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT", endpoint),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec(),
        ..Options::default()
    }
}

/// The keys under `prefix` in the bucket (S3's ListObjectsV2, read roughly).
fn s3_keys(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    let listing = ureq::get(format!("{endpoint}/{bucket}?list-type=2&prefix={prefix}"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    listing
        .split("<Key>")
        .skip(1)
        .map(|k| k.split("</Key>").next().unwrap().to_string())
        .collect()
}

#[test]
fn replicas_without_a_shared_disk_share_files_through_s3() {
    let Some((endpoint, bucket)) = s3_bucket() else {
        return;
    };
    let Some(database) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files = format!("s3://{bucket}/cs-init");
    let options = on_s3(&endpoint, &database.url, &files, &[]);

    // An upload to A, which then dies with its data directory's copy.
    let mut a = Server::start(&dir.path().join("a"), &options);
    let bytes = serialize(None, &small_network(Dtype::F32));
    let upload = a.post("/v1/uploads?name=net.safetensors", &[], &bytes);
    assert_eq!(upload.status, 201, "{}", upload.text());
    let upload = upload.json();
    a.kill();
    std::fs::remove_dir_all(dir.path().join("a")).unwrap();

    // B, on a disk of its own, runs a job on it: the upload comes from the store.
    let b = Server::start(&dir.path().join("b"), &options);
    let settings = json!({"iters": 30, "seed": 4, "probe": false});
    let job = b.submit(upload["input"].as_str().unwrap(), settings.clone());
    let job = b.wait(job["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    let id = job["id"].as_str().unwrap();
    let keys = s3_keys(&endpoint, &bucket, "cs-init/");
    for name in ["net.cs.safetensors", "report.json", "plot.svg"] {
        assert!(
            keys.contains(&format!("cs-init/jobs/{id}/{name}")),
            "{keys:?}"
        );
    }

    // A again, on an empty disk: B's result downloads through it, whole, by range and by ETag.
    let a = Server::start(&dir.path().join("a"), &options);
    let file = job["result"]["files"][0]["url"].as_str().unwrap();
    let whole = a.get(file);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, download(&b, &job));
    std::fs::write(dir.path().join("net.safetensors"), &bytes).unwrap();
    let args = [
        "net.safetensors",
        "--iters",
        "30",
        "--seed",
        "4",
        "--no-probe",
        "-q",
    ];
    cs_init_ok(&args, dir.path());
    assert!(
        whole.body == std::fs::read(dir.path().join("net.cs.safetensors")).unwrap(),
        "the checkpoint through S3 differs from the command line's"
    );
    let part = a.get_with(file, &[("Range", "bytes=10-19")]);
    assert_eq!((part.status, &part.body[..]), (206, &whole.body[10..20]));
    let etag = whole.header("etag").unwrap();
    assert_eq!(a.get_with(file, &[("If-None-Match", &etag)]).status, 304);
    let health = a.get("/healthz").json();
    assert_eq!(
        health["files"]["backend"],
        format!("object store ({files})")
    );

    // The cache, from A: its worker reuses B's result, which it fetches from the store.
    let again = a.submit(upload["input"].as_str().unwrap(), settings);
    let again = a.wait(again["id"].as_str().unwrap());
    assert_eq!(again["result"]["cached_from"], job["id"], "{again}");

    // Retention deletes the objects too.
    drop(a);
    let sweeper = Server::start(
        &dir.path().join("c"),
        &on_s3(&endpoint, &database.url, &files, &["--keep", "1s"]),
    );
    sweeper.wait_until(id, Duration::from_secs(30), |j| {
        j["result"]["expired"] == true
    });
    let start = Instant::now();
    while !s3_keys(&endpoint, &bucket, &format!("cs-init/jobs/{id}/")).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the objects stay"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(b);

    // A bucket that does not exist stops the server at start.
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_cs-init"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("missing"))
        .args(["--files", "s3://no-such-bucket-here/x"])
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(
        stderr.contains("--files s3://no-such-bucket-here/x: cannot be listed"),
        "{stderr}"
    );
}
