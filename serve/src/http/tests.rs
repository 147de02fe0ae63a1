//! The router in process (tower's `oneshot`, no socket): every status code the API answers
//! with, each from the request that should get it (all but 500, which only a failing server
//! gives). The real-binary tests
//! (cli/tests/service.rs) cover the same routes over TCP.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::router;
use crate::service::{Config, Service};
use crate::store::{Clock, ManualClock};
use cs_init::checkpoint::{serialize, Dtype};
use cs_init::device::DeviceChoice;
use cs_init::run::Limits;

const TOKEN: &str = "router-test-token";
const KEEP: Duration = Duration::from_secs(3600);

struct Harness {
    _dir: tempfile::TempDir,
    service: Arc<Service>,
    clock: Arc<ManualClock>,
    allowed: std::path::PathBuf,
}

impl Harness {
    fn new(token: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("allowed");
        std::fs::create_dir(&allowed).unwrap();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data: dir.path().join("data"),
            store: None,
            files: None,
            lease: Duration::from_secs(30),
            max_attempts: 3,
            workers: 1,
            token: token.map(str::to_string),
            max_upload: 4096,
            max_queued: 2,
            keep: KEEP,
            allow_dirs: vec![allowed.canonicalize().unwrap()],
            device: DeviceChoice::Cpu,
            limits: Limits {
                max_iters: Some(1000),
                max_probe_pixels: None,
            },
            job_time_limit: None,
        };
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let service = Service::open_with_clock(config, clock.clone() as Arc<dyn Clock>).unwrap();
        Self {
            _dir: dir,
            service,
            clock,
            allowed,
        }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let response = router(self.service.clone(), shutdown)
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, body.to_vec())
    }

    async fn status(&self, request: Request<Body>) -> StatusCode {
        self.send(request).await.0
    }

    async fn json(&self, request: Request<Body>) -> (StatusCode, Value) {
        let (status, _, body) = self.send(request).await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// Runs the queued jobs to their end on a worker of this thread's own.
    async fn run_queue(&self) {
        let service = self.service.clone();
        tokio::task::spawn_blocking(move || {
            while let Some(job) = service.claim_next().unwrap() {
                crate::worker::run_job(&service, &single_thread_pool(), job);
            }
        })
        .await
        .unwrap();
    }
}

fn single_thread_pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn post_json(path: &str, body: Value) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn checkpoint() -> Vec<u8> {
    let weights: Vec<u8> = (0..8 * 3 * 3 * 3)
        .flat_map(|i| ((i as f32 * 0.37).sin()).to_le_bytes())
        .collect();
    serialize(
        None,
        &[("conv.weight".into(), Dtype::F32, vec![8, 3, 3, 3], weights)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_comes_from_the_request_that_should_get_it() {
    let h = Harness::new(None);

    // 200, and 404 for a route or a job that does not exist; 405 for another method.
    assert_eq!(h.status(get("/healthz")).await, StatusCode::OK);
    assert_eq!(h.status(get("/v1/jobs")).await, StatusCode::OK);
    assert_eq!(h.status(get("/nowhere")).await, StatusCode::NOT_FOUND);
    let missing = format!("/v1/jobs/{}", "0".repeat(32));
    assert_eq!(h.status(get(&missing)).await, StatusCode::NOT_FOUND);
    let delete = Request::delete("/v1/jobs").body(Body::empty()).unwrap();
    assert_eq!(h.status(delete).await, StatusCode::METHOD_NOT_ALLOWED);

    // 201 for an upload; 413 over --max-upload; 422 for bytes that are no checkpoint.
    let upload = Request::post("/v1/uploads?name=net.safetensors")
        .body(Body::from(checkpoint()))
        .unwrap();
    let (status, upload) = h.json(upload).await;
    assert_eq!(status, StatusCode::CREATED, "{upload}");
    let large = Request::post("/v1/uploads")
        .header(header::CONTENT_LENGTH, "5000")
        .body(Body::from(vec![0u8; 5000]))
        .unwrap();
    assert_eq!(h.status(large).await, StatusCode::PAYLOAD_TOO_LARGE);
    let foreign = Request::post("/v1/uploads")
        .body(Body::from("not a checkpoint"))
        .unwrap();
    assert_eq!(h.status(foreign).await, StatusCode::UNPROCESSABLE_ENTITY);

    // 400 malformed JSON, 415 without its content type, 422 a bad or over-limit setting,
    // 403 a local path outside --allow-dir.
    let malformed = Request::post("/v1/jobs")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"input\": "))
        .unwrap();
    assert_eq!(h.status(malformed).await, StatusCode::BAD_REQUEST);
    let untyped = Request::post("/v1/jobs")
        .body(Body::from("{\"input\": \"builtin:cnn1\"}"))
        .unwrap();
    assert_eq!(h.status(untyped).await, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let over = post_json(
        "/v1/jobs",
        json!({"input": "builtin:cnn1", "settings": {"iters": 1000000000000u64}}),
    );
    let (status, body) = h.json(over).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "over_limit");
    let outside = post_json("/v1/jobs", json!({"input": "/etc/passwd"}));
    assert_eq!(h.status(outside).await, StatusCode::FORBIDDEN);
    std::fs::write(h.allowed.join("net.safetensors"), checkpoint()).unwrap();

    // 202 for a job, 429 past --max-queued (2), 409 for the files of an unfinished job.
    let input = upload["input"].as_str().unwrap();
    let (status, job) = h
        .json(post_json(
            "/v1/jobs",
            json!({"input": input, "settings": {"iters": 3}}),
        ))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let second = post_json(
        "/v1/jobs",
        json!({"input": "builtin:cnn1", "settings": {"iters": 1}}),
    );
    assert_eq!(h.status(second).await, StatusCode::ACCEPTED);
    let third = post_json(
        "/v1/jobs",
        json!({"input": "builtin:cnn1", "settings": {"iters": 2}}),
    );
    let (status, headers, _) = h.send(third).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key(header::RETRY_AFTER));
    let report = format!("/v1/jobs/{id}/report");
    assert_eq!(h.status(get(&report)).await, StatusCode::CONFLICT);

    // Once run: 200 for its file, 206 for a range, 416 for a range past its end, 304 for an
    // ETag it has, 409 to cancel it.
    h.run_queue().await;
    let (status, job) = h.json(get(&format!("/v1/jobs/{id}"))).await;
    assert_eq!(
        (status, &job["state"]),
        (StatusCode::OK, &json!("succeeded"))
    );
    let file = job["result"]["files"][0]["url"].as_str().unwrap();
    let (status, headers, whole) = h.send(get(file)).await;
    assert_eq!(status, StatusCode::OK);
    let ranged = Request::get(file)
        .header(header::RANGE, "bytes=0-9")
        .body(Body::empty())
        .unwrap();
    let (status, _, part) = h.send(ranged).await;
    assert_eq!(
        (status, part.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &whole[..10])
    );
    let beyond = Request::get(file)
        .header(header::RANGE, format!("bytes={}-", whole.len() + 10))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.status(beyond).await, StatusCode::RANGE_NOT_SATISFIABLE);
    let etag = headers[header::ETAG].clone();
    let cached = Request::get(file)
        .header(header::IF_NONE_MATCH, etag)
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.status(cached).await, StatusCode::NOT_MODIFIED);
    let cancel = Request::post(format!("/v1/jobs/{id}/cancel"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.status(cancel).await, StatusCode::CONFLICT);

    // 410 once retention deleted the files (the clock moved past --keep, no sleeping).
    h.clock.advance(KEEP.as_millis() as i64 + 1);
    h.service.sweep().unwrap();
    assert_eq!(h.status(get(file)).await, StatusCode::GONE);

    // 503 from /healthz when the file directory is gone.
    std::fs::remove_dir_all(h.service.layout.jobs()).unwrap();
    let (status, health) = h.json(get("/healthz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        (health["store"]["ok"].clone(), health["files"]["ok"].clone()),
        (json!(true), json!(false))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_guards_the_protected_routes_only() {
    let h = Harness::new(Some(TOKEN));
    for path in ["/v1/jobs", "/metrics", "/openapi.json"] {
        assert_eq!(
            h.status(get(path)).await,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        let with = Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(h.status(with).await, StatusCode::OK, "{path}");
    }
    let wrong = Request::get("/v1/jobs")
        .header(header::AUTHORIZATION, "Bearer router-test-tokem")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.status(wrong).await, StatusCode::UNAUTHORIZED);
    let job = post_json("/v1/jobs", json!({"input": "builtin:cnn1"}));
    assert_eq!(h.status(job).await, StatusCode::UNAUTHORIZED);
    for path in ["/healthz", "/", "/app.js", "/style.css"] {
        assert_eq!(h.status(get(path)).await, StatusCode::OK, "{path}");
    }
    let method = Request::builder()
        .method(Method::PUT)
        .uri("/healthz")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.status(method).await, StatusCode::METHOD_NOT_ALLOWED);
}
