//! The real `cs-init serve` on an ephemeral loopback port, and a small HTTP client for it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running server; killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub data: PathBuf,
    /// Everything it printed on stderr so far.
    pub log: Arc<Mutex<String>>,
    agent: ureq::Agent,
    token: Option<String>,
}

/// How to start a server.
#[derive(Default, Clone)]
pub struct Options {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Sent as `Authorization: Bearer` on every request.
    pub token: Option<String>,
}

/// A response: status, headers and body.
pub struct Reply {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    /// The error code of a JSON error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code: {}", self.text()))
            .to_string()
    }
}

impl Server {
    /// Starts a server on `data` and waits until it listens.
    pub fn start(data: &Path, options: &Options) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cs-init"));
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(&options.args)
            .env("HF_HUB_OFFLINE", "1")
            .env_remove("HF_TOKEN")
            .env("HF_HOME", data.join("no-hf-home"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &options.env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("cs-init serve starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let address = rest.split_whitespace().next().unwrap().to_string();
                        tx.send(address).unwrap();
                        sent = true;
                    }
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let address = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the server did not start: {}", log.lock().unwrap()));
        Self {
            child: Some(child),
            base: format!("http://{address}"),
            data: data.to_path_buf(),
            log,
            agent: Self::agent(),
            token: options.token.clone(),
        }
    }

    fn reply(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let response = response.expect("the server answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        response
            .into_body()
            .into_reader()
            .read_to_end(&mut body)
            .expect("the body arrives");
        Reply {
            status,
            headers,
            body,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => request.header("Authorization", format!("Bearer {t}")),
            None => request,
        }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into()
    }

    /// A client of a server started elsewhere (for another thread), which it does not own.
    pub fn attach(base: &str) -> Self {
        Self {
            child: None,
            base: base.to_string(),
            data: PathBuf::new(),
            log: Arc::default(),
            agent: Self::agent(),
            token: None,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.get_with(path, &[])
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.auth(self.agent.get(self.url(path)));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        Self::reply(request.call())
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut request = self.auth(self.agent.post(self.url(path)));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        Self::reply(request.send(body))
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.post(
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// Creates a job; panics unless it is accepted.
    pub fn submit(&self, input: &str, settings: Value) -> Value {
        let reply = self.post_json(
            "/v1/jobs",
            &serde_json::json!({"input": input, "settings": settings}),
        );
        assert_eq!(reply.status, 202, "{}", reply.text());
        reply.json()
    }

    pub fn job(&self, id: &str) -> Value {
        let reply = self.get(&format!("/v1/jobs/{id}"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }

    /// Polls a job until `done` says so (at most `timeout`).
    pub fn wait_until(&self, id: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let job = self.job(id);
            if done(&job) {
                return job;
            }
            assert!(
                start.elapsed() < timeout,
                "job {id} did not get there in {timeout:?}: {job}\n{}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls a job until it is terminal.
    pub fn wait(&self, id: &str) -> Value {
        self.wait_until(id, Duration::from_secs(300), |j| {
            matches!(
                j["state"].as_str(),
                Some("succeeded" | "failed" | "canceled")
            )
        })
    }

    /// Reads a job's event stream until it ends: (event, data) pairs.
    pub fn events(&self, id: &str) -> Vec<(String, Value)> {
        let request = self.auth(self.agent.get(self.url(&format!("/v1/jobs/{id}/events"))));
        let response = request.call().expect("the stream opens");
        assert_eq!(response.status().as_u16(), 200);
        let reader = BufReader::new(response.into_body().into_reader());
        let mut events = Vec::new();
        let (mut name, mut data) = (String::new(), String::new());
        for line in reader.lines() {
            let line = line.expect("the stream reads");
            if line.is_empty() {
                if !data.is_empty() {
                    events.push((name.clone(), serde_json::from_str(&data).unwrap()));
                }
                name.clear();
                data.clear();
            } else if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        events
    }

    /// Sends `head` (request line and headers) and `body` over a plain connection and returns
    /// the status line: for requests a server answers before reading their whole body.
    pub fn raw(&self, head: &str, body: &[u8]) -> String {
        use std::io::Write;
        let address = self.base.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        // The server may answer and close before all of it is sent.
        let _ = stream.write_all(body);
        let mut answer = String::new();
        let mut reader = BufReader::new(stream);
        reader.read_line(&mut answer).unwrap();
        answer.trim_end().to_string()
    }

    /// Kills the server at once (SIGKILL): nothing is flushed or cleaned up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Stops the server with SIGTERM and waits for it to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the server did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
