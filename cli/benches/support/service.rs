//! The real `cs-init serve` for the benchmarks, and a small client: shared by
//! cli/benches/service.rs and cli/benches/replicas.rs.
#![allow(dead_code)] // each bench uses some of the helpers

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

pub struct Server {
    child: Child,
    pub base: String,
    /// The id the server printed when it started.
    pub id: String,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Kills the server at once (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server on a data directory of its own.
pub fn start(args: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_on(&dir.path().join("data"), args);
    server._dir = Some(dir);
    server
}

/// A server on `data`, which other servers may share.
pub fn start_on(data: &Path, args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cs-init"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (address, id) = loop {
        let line = lines.next().expect("the server starts").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let address = rest.split_whitespace().next().unwrap().to_string();
            let id = rest
                .split("(server ")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap();
            break (address, id.to_string());
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        base: format!("http://{address}"),
        id,
        _dir: None,
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

pub fn get(agent: &ureq::Agent, url: &str) -> Value {
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

pub fn submit(agent: &ureq::Agent, base: &str, input: &str, settings: Value) -> String {
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

pub fn wait(agent: &ureq::Agent, base: &str, id: &str) -> Value {
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

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn seconds_between(job: &Value, from: &str, to: &str) -> f64 {
    let t = |k: &str| {
        humantime::parse_rfc3339(job[k].as_str().unwrap())
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    t(to) - t(from)
}
