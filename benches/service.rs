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

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cs-init"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = loop {
        let line = lines.next().expect("the server starts").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        base: format!("http://{address}"),
        _dir: dir,
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn get(agent: &ureq::Agent, url: &str) -> Value {
    let mut body = String::new();
    agent
        .get(url)
        .call()
        .unwrap()
        .into_body()
        .into_reader()
        .read_to_string(&mut body)
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

fn submit(agent: &ureq::Agent, base: &str, input: &str, settings: Value) -> String {
    let body = json!({"input": input, "settings": settings}).to_string();
    let mut text = String::new();
    let response = agent
        .post(format!("{base}/v1/jobs"))
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    response
        .into_body()
        .into_reader()
        .read_to_string(&mut text)
        .unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn wait(agent: &ureq::Agent, base: &str, id: &str) -> Value {
    loop {
        let job = get(agent, &format!("{base}/v1/jobs/{id}"));
        if matches!(
            job["state"].as_str(),
            Some("succeeded" | "failed" | "canceled")
        ) {
            return job;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn seconds_between(job: &Value, from: &str, to: &str) -> f64 {
    let t = |k: &str| {
        humantime::parse_rfc3339(job[k].as_str().unwrap())
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    t(to) - t(from)
}

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
