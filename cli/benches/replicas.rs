//! Replicas of `cs-init serve` on one PostgreSQL database (a benchmark, not a test):
//! `CS_INIT_TEST_POSTGRES=postgres://USER@HOST:PORT/postgres cargo bench -p cs-init-cli
//! --features serve --bench replicas` (the user must be able to create databases; each setup
//! gets its own). `.ci/postgres.sh` starts such a server on loopback.
//!
//! 1. Tiny jobs per second (the claim's overhead): one server on SQLite, one and three on
//!    PostgreSQL.
//! 2. `GET /v1/jobs/{id}` latency (p50, p99) under 200 pollers spread over the servers, while
//!    jobs run: one server on SQLite against three on PostgreSQL.
//! 3. Failover: from a replica's death (SIGKILL) to its job running on another, for two leases.
//!
//! Run it on a quiet machine; the figures go to docs/benchmarks.md.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

#[path = "support/service.rs"]
mod support;
use support::{agent, get, percentile, start_on, submit, wait, Server};

#[path = "../../serve/testing/test_database.rs"]
mod test_database;
use test_database::TestDatabase;

/// Tiny jobs: one iteration of CNN1, each with its own seed so the result cache cannot answer.
const TINY_JOBS: usize = 150;

/// `count` servers on one data directory, on `store` (SQLite in the directory when `None`).
fn servers(data: &Path, count: usize, store: Option<&str>, extra: &[&str]) -> Vec<Server> {
    let mut args: Vec<&str> = extra.to_vec();
    if let Some(url) = store {
        args.extend(["--store", url]);
    }
    (0..count).map(|_| start_on(data, &args)).collect()
}

fn bases(servers: &[Server]) -> Vec<String> {
    servers.iter().map(|s| s.base.clone()).collect()
}

/// Submits the tiny jobs round-robin from 10 threads and waits for all: jobs per second.
fn tiny_jobs_per_second(label: &str, servers: &[Server]) {
    let bases = Arc::new(bases(servers));
    let start = Instant::now();
    let submitters: Vec<_> = (0..10)
        .map(|t| {
            let bases = bases.clone();
            std::thread::spawn(move || {
                let agent = agent();
                (t..TINY_JOBS)
                    .step_by(10)
                    .map(|i| {
                        let base = &bases[i % bases.len()];
                        let settings = json!({"iters": 1, "seed": i, "probe": false});
                        (base.clone(), submit(&agent, base, "builtin:cnn1", settings))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let jobs: Vec<(String, String)> = submitters
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    let agent = agent();
    let succeeded = jobs
        .iter()
        .filter(|(base, id)| wait(&agent, base, id)["state"] == "succeeded")
        .count();
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{label}: {succeeded}/{TINY_JOBS} tiny jobs in {seconds:.2} s: {:.1} jobs/s",
        TINY_JOBS as f64 / seconds
    );
}

/// 200 pollers spread over the servers, for `duration`, while CNN2 jobs run: latency.
fn poll_latency(label: &str, servers: &[Server], duration: Duration) {
    let bases = bases(servers);
    let client = agent();
    let jobs: Vec<(String, String)> = (0..6)
        .map(|i| {
            let base = bases[i % bases.len()].clone();
            let settings = json!({"iters": 100000, "seed": 1000 + i, "probe": false});
            let id = submit(&client, &base, "builtin:cnn2", settings);
            (base, id)
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let pollers: Vec<_> = (0..200)
        .map(|i| {
            let url = format!(
                "{}/v1/jobs/{}",
                bases[i % bases.len()],
                jobs[i % jobs.len()].1
            );
            let (stop, latencies) = (stop.clone(), latencies.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    get(&agent, &url);
                    mine.push(start.elapsed().as_secs_f64() * 1e3);
                }
                latencies.lock().unwrap().extend(mine);
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for poller in pollers {
        poller.join().unwrap();
    }
    for (base, id) in &jobs {
        client
            .post(format!("{base}/v1/jobs/{id}/cancel"))
            .send_empty()
            .unwrap();
    }
    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(f64::total_cmp);
    println!(
        "{label}: 200 pollers for {duration:?}: {} polls ({:.0}/s), p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        l.len(),
        l.len() as f64 / duration.as_secs_f64(),
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        l.last().unwrap()
    );
}

/// Kills the replica running a job and times until another runs it.
fn failover(lease: &str) {
    let database = TestDatabase::create().expect("CS_INIT_TEST_POSTGRES is required");
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = servers(
        &dir.path().join("data"),
        3,
        Some(&database.url),
        &["--lease", lease],
    );
    let agent = agent();
    let base = replicas[0].base.clone();
    let settings = json!({"iters": 100000, "probe": false});
    let id = submit(&agent, &base, "builtin:cnn2", settings);
    let runner = loop {
        let job = get(&agent, &format!("{base}/v1/jobs/{id}"));
        if let Some(server) = job["server"].as_str() {
            break server.to_string();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let index = replicas.iter().position(|r| r.id == runner).unwrap();
    let watcher = replicas[(index + 1) % 3].base.clone();
    let killed = Instant::now();
    replicas[index].kill();
    loop {
        let job = get(&agent, &format!("{watcher}/v1/jobs/{id}"));
        if job["state"] == "running" && job["attempts"] == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "--lease {lease}: a killed replica's job ran on another after {:.2} s",
        killed.elapsed().as_secs_f64()
    );
    agent
        .post(format!("{watcher}/v1/jobs/{id}/cancel"))
        .send_empty()
        .unwrap();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let machine = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{machine} cores; each server has one worker");

    let dir = tempfile::tempdir().unwrap();
    let sqlite = servers(&dir.path().join("sqlite"), 1, None, &[]);
    tiny_jobs_per_second("1 server, SQLite", &sqlite);
    poll_latency("1 server, SQLite", &sqlite, Duration::from_secs(15));
    drop(sqlite);

    for count in [1, 3] {
        let database = TestDatabase::create().expect("CS_INIT_TEST_POSTGRES is required");
        let data = dir.path().join(format!("postgres-{count}"));
        let replicas = servers(&data, count, Some(&database.url), &[]);
        let label = format!(
            "{count} server{}, PostgreSQL",
            if count > 1 { "s" } else { "" }
        );
        tiny_jobs_per_second(&label, &replicas);
        if count == 3 {
            poll_latency(&label, &replicas, Duration::from_secs(15));
        }
    }

    failover("5s");
    failover("30s");
}
