//! Load on `cs-init serve` (a benchmark, not a test): `cargo bench --bench service`.
//!
//! 1. While a ResNet-18 job runs (200 Adam iterations), 200 clients poll `GET /v1/jobs/{id}`
//!    and 50 listen to its events: the latency of the polls (p50, p99, max) and whether every
//!    listener saw the end.
//! 2. 100 jobs submitted at once from 10 threads: every one completes, none lost.
//! 3. The same ResNet-18 job through the service and through the command line, alternating,
//!    three times each: the service's time against the CLI's.
//!
//! Run it on a quiet machine; the figures go to docs/benchmarks.md.

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::json;

#[path = "support/service.rs"]
mod support;
use support::{agent, get, percentile, seconds_between, start, submit, wait};

fn pollers_and_listeners() {
    let server = start(&[]);
    let base = server.base.clone();
    let id = submit(&agent(), &base, "builtin:resnet18", json!({"iters": 200}));
    let done = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let listeners: Vec<_> = (0..50)
        .map(|_| {
            let url = format!("{base}/v1/jobs/{id}/events");
            std::thread::spawn(move || {
                let response = agent().get(&url).call().unwrap();
                let mut last = String::new();
                for line in BufReader::new(response.into_body().into_reader()).lines() {
                    let line = line.unwrap();
                    if line.starts_with("data:") {
                        last = line;
                    }
                }
                last.contains("\"state\":\"succeeded\"")
            })
        })
        .collect();
    let pollers: Vec<_> = (0..200)
        .map(|_| {
            let (url, done, latencies) = (
                format!("{base}/v1/jobs/{id}"),
                done.clone(),
                latencies.clone(),
            );
            std::thread::spawn(move || {
                let agent = agent();
                let mut mine = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    get(&agent, &url);
                    mine.push(start.elapsed().as_secs_f64() * 1e3);
                }
                latencies.lock().unwrap().extend(mine);
            })
        })
        .collect();
    let job = wait(&agent(), &base, &id);
    done.store(true, Ordering::Relaxed);
    for p in pollers {
        p.join().unwrap();
    }
    let ended = listeners
        .into_iter()
        .map(|l| l.join().unwrap())
        .filter(|&ok| ok)
        .count();
    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(f64::total_cmp);
    println!(
        "ResNet-18 job ({}, {:.2} s) under 200 pollers + 50 SSE listeners: {} polls, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {ended}/50 listeners saw it succeed",
        job["state"],
        seconds_between(&job, "started_at", "finished_at"),
        l.len(),
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        l.last().unwrap()
    );
}

fn hundred_jobs() {
    let server = start(&[]);
    let base = server.base.clone();
    let start = Instant::now();
    let submitters: Vec<_> = (0..10)
        .map(|t| {
            let base = base.clone();
            std::thread::spawn(move || {
                let agent = agent();
                (0..10)
                    .map(|k| {
                        submit(
                            &agent,
                            &base,
                            "builtin:cnn1",
                            json!({"iters": 20, "seed": t * 10 + k, "probe": false}),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<String> = submitters
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    let submitted = start.elapsed().as_secs_f64();
    let agent = agent();
    let succeeded = ids
        .iter()
        .filter(|id| wait(&agent, &base, id)["state"] == "succeeded")
        .count();
    println!(
        "100 jobs submitted from 10 threads in {submitted:.2} s: {succeeded}/100 succeeded, all done in {:.2} s",
        start.elapsed().as_secs_f64()
    );
}

fn service_against_cli() {
    let server = start(&[]);
    let agent = agent();
    let dir = tempfile::tempdir().unwrap();
    let (mut service, mut cli) = (Vec::new(), Vec::new());
    for seed in 0..3 {
        let start = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_cs-init"))
            .args([
                "resnet18",
                "--iters",
                "200",
                "-q",
                "--seed",
                &seed.to_string(),
            ])
            .args(["-o", &format!("r{seed}.safetensors")])
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(out.success());
        cli.push(start.elapsed().as_secs_f64());
        // Another seed than the CLI's, so that the result cache cannot answer.
        let id = submit(
            &agent,
            &server.base,
            "builtin:resnet18",
            json!({"iters": 200, "seed": seed + 100}),
        );
        let job = wait(&agent, &server.base, &id);
        service.push(seconds_between(&job, "started_at", "finished_at"));
    }
    service.sort_by(f64::total_cmp);
    cli.sort_by(f64::total_cmp);
    println!(
        "ResNet-18, 200 iterations: service job {:.2} s (median of {:?}), CLI command {:.2} s (median of {:?}): {:+.1} %",
        service[1],
        service,
        cli[1],
        cli,
        100.0 * (service[1] / cli[1] - 1.0)
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    service_against_cli();
    pollers_and_listeners();
    hundred_jobs();
}
