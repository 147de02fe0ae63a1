//! The real `cs-init serve` on an ephemeral loopback port and a temporary data directory, driven
//! over HTTP: uploads, jobs, events, downloads, the result cache, idempotency, cancel,
//! retention, crashes and restarts, tokens, and every bad request.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::common::hub_cache::{cache_file, set_ref};
use crate::common::server::{Options, Server};
use crate::common::{cs_init_ok, small_network};
use cs_init::checkpoint::{serialize, Dtype, SafetensorsFile};
use serde_json::{json, Value};

fn network_bytes() -> Vec<u8> {
    let metadata = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        ("author".to_string(), "test".to_string()),
    ]);
    serialize(Some(&metadata), &small_network(Dtype::F32))
}

fn opts(args: &[&str]) -> Options {
    Options {
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Options::default()
    }
}

/// The checkpoint's bytes of a succeeded job.
fn download(server: &Server, job: &Value) -> Vec<u8> {
    let file = &job["result"]["files"][0];
    let reply = server.get(file["url"].as_str().unwrap());
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len() as u64, file["size"].as_u64().unwrap());
    reply.body
}

#[test]
fn upload_job_events_download_match_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &Options::default());
    let bytes = network_bytes();
    let upload = server.post("/v1/uploads?name=net.safetensors", &[], &bytes);
    assert_eq!(upload.status, 201, "{}", upload.text());
    let upload = upload.json();
    assert_eq!(upload["format"], "safetensors");
    assert_eq!(upload["size"], bytes.len());
    assert_eq!(upload["id"].as_str().unwrap().len(), 32);

    let settings = json!({"iters": 40, "lr": 0.002, "keep_norm": true});
    let job = server.submit(upload["input"].as_str().unwrap(), settings);
    let id = job["id"].as_str().unwrap().to_string();
    // The effective settings: the request's, every default filled in.
    assert_eq!(job["settings"]["iters"], 40);
    assert_eq!(job["settings"]["optimizer"], "adam");
    assert_eq!(job["settings"]["probe"], true);

    let events = server.events(&id);
    assert_eq!(events[0].0, "job", "the current state comes first");
    let (last, final_job) = events.last().unwrap();
    assert_eq!(last, "job");
    assert_eq!(final_job["state"], "succeeded");
    let finished: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "layer_finished")
        .map(|(_, d)| &d["layer"])
        .collect();
    // Each layer once: the stored ones, then the live ones after them.
    let names: Vec<&str> = finished
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["conv1.weight", "conv2.weight", "proj.weight"]);

    let job = server.wait(&id);
    let served = download(&server, &job);
    // The command line on the same bytes with the same settings writes the same bytes.
    std::fs::write(dir.path().join("net.safetensors"), &bytes).unwrap();
    cs_init_ok(
        &[
            "net.safetensors",
            "--iters",
            "40",
            "--lr",
            "0.002",
            "--keep-norm",
            "-q",
        ],
        dir.path(),
    );
    let written = std::fs::read(dir.path().join("net.cs.safetensors")).unwrap();
    assert!(
        served == written,
        "the service's checkpoint differs from the CLI's"
    );
    let file = SafetensorsFile::from_bytes("served", served).unwrap();
    assert_eq!(file.metadata().unwrap()["author"], "test");

    let report = server.get(&format!("/v1/jobs/{id}/report"));
    assert_eq!(report.status, 200);
    assert_eq!(report.header("content-type").unwrap(), "application/json");
    let report = report.json();
    let cli_report: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("net.cs.report.json")).unwrap())
            .unwrap();
    assert_eq!(report["schema_version"], cli_report["schema_version"]);
    assert_eq!(report["settings"], cli_report["settings"]);
    assert_eq!(report["input_sha256"], cli_report["input_sha256"]);
    assert_eq!(report["input"], upload["input"]);
    for (a, b) in report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(cli_report["layers"].as_array().unwrap())
    {
        for key in [
            "name",
            "loss_before",
            "loss_after",
            "curve",
            "feature_cosine_after",
        ] {
            assert_eq!(a[key], b[key], "{key}");
        }
    }
    let plot = server.get(&format!("/v1/jobs/{id}/plot.svg"));
    assert_eq!(plot.status, 200);
    assert!(plot.text().contains("<svg"));
    assert_eq!(plot.header("content-type").unwrap(), "image/svg+xml");
}

#[test]
fn downloads_have_etags_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &Options::default());
    let job = server.submit("builtin:cnn1", json!({"iters": 5, "probe": false}));
    let job = server.wait(job["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    let file = &job["result"]["files"][0];
    assert_eq!(file["name"], "cnn1.cs.safetensors");
    let url = file["url"].as_str().unwrap();
    let whole = server.get(url);
    let etag = whole.header("etag").unwrap();
    assert_eq!(etag, format!("\"{}\"", file["sha256"].as_str().unwrap()));
    assert_eq!(
        whole.header("content-length").unwrap(),
        file["size"].to_string()
    );
    let part = server.get_with(url, &[("Range", "bytes=8-15")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, whole.body[8..16]);
    assert_eq!(
        server.get_with(url, &[("If-None-Match", &etag)]).status,
        304
    );
    let id = job["id"].as_str().unwrap();
    // Names are looked up, never joined onto a path.
    for name in [
        "..%2F..%2Fstore.sqlite",
        "../report.json",
        "nope.safetensors",
        "%2e%2e",
    ] {
        let reply = server.get(&format!("/v1/jobs/{id}/files/{name}"));
        assert_eq!(reply.status, 404, "{name}: {}", reply.text());
    }
}

#[test]
fn the_result_cache_and_idempotency_keys_give_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &Options::default());
    let settings = json!({"iters": 15, "seed": 2});
    let first = server.submit("builtin:cnn1", settings.clone());
    let first = server.wait(first["id"].as_str().unwrap());
    assert_eq!(first["state"], "succeeded");
    assert!(first["result"]["cached_from"].is_null());

    let second = server.submit("builtin:cnn1", settings.clone());
    let second = server.wait(second["id"].as_str().unwrap());
    assert_eq!(second["state"], "succeeded");
    assert_eq!(second["result"]["cached_from"], first["id"]);
    assert_ne!(second["id"], first["id"]);
    assert_eq!(
        second["result"]["files"][0]["sha256"],
        first["result"]["files"][0]["sha256"]
    );
    assert_eq!(download(&server, &second), download(&server, &first));
    // Other settings are another result.
    let other = server.submit("builtin:cnn1", json!({"iters": 16, "seed": 2}));
    let other = server.wait(other["id"].as_str().unwrap());
    assert!(other["result"]["cached_from"].is_null());

    let body = json!({"input": "builtin:cnn2", "settings": {"iters": 3}}).to_string();
    let headers = [
        ("Content-Type", "application/json"),
        ("Idempotency-Key", "retry-me"),
    ];
    let a = server.post("/v1/jobs", &headers, body.as_bytes());
    let b = server.post("/v1/jobs", &headers, body.as_bytes());
    assert_eq!((a.status, b.status), (202, 202));
    assert_eq!(a.json()["id"], b.json()["id"]);
    assert_eq!(b.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(
        a.header("location").unwrap(),
        format!("/v1/jobs/{}", a.json()["id"].as_str().unwrap())
    );
    let different = json!({"input": "builtin:cnn2", "settings": {"iters": 4}}).to_string();
    let c = server.post("/v1/jobs", &headers, different.as_bytes());
    assert_eq!(c.status, 422);
    assert_eq!(c.code(), "idempotency_key_reused");
    let list = server.get("/v1/jobs?state=queued&limit=500").json();
    let same: Vec<_> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["input"] == "builtin:cnn2")
        .collect();
    assert!(same.len() <= 1);
}

#[test]
fn jobs_list_newest_first_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &Options::default());
    let ids: Vec<String> = (0..5)
        .map(|seed| {
            server.submit(
                "builtin:cnn1",
                json!({"iters": 1, "seed": seed, "probe": false}),
            )["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = server.get(&format!("/v1/jobs?limit=2{cursor}")).json();
        seen.extend(
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    for id in &ids {
        server.wait(id);
    }
    let succeeded = server.get("/v1/jobs?state=succeeded").json();
    assert_eq!(succeeded["jobs"].as_array().unwrap().len(), 5);
    for bad in [
        "state=done",
        "limit=0",
        "limit=9999",
        "cursor=abc",
        "colour=red",
    ] {
        let reply = server.get(&format!("/v1/jobs?{bad}"));
        assert_eq!(reply.status, 422, "{bad}: {}", reply.text());
    }
}

#[test]
fn cancel_drops_queued_jobs_and_stops_running_ones_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &opts(&["--max-queued", "1"]));
    let running = server.submit("builtin:cnn2", json!({"iters": 100000, "probe": false}));
    let running_id = running["id"].as_str().unwrap();
    server.wait_until(running_id, Duration::from_secs(60), |j| {
        j["progress"]["iteration"].as_u64().unwrap_or(0) > 0
    });
    let queued = server.submit("builtin:cnn1", json!({"iters": 1}));
    let queued_id = queued["id"].as_str().unwrap();

    // The queue holds one job.
    let full = server.post_json("/v1/jobs", &json!({"input": "builtin:cnn1"}));
    assert_eq!(full.status, 429, "{}", full.text());
    assert_eq!(full.code(), "queue_full");
    let retry: u64 = full.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);

    let canceled = server.post(&format!("/v1/jobs/{queued_id}/cancel"), &[], b"");
    assert_eq!(canceled.status, 200);
    assert_eq!(canceled.json()["state"], "canceled");
    let again = server.post(&format!("/v1/jobs/{queued_id}/cancel"), &[], b"");
    assert_eq!(again.status, 409);

    let asked = server.post(&format!("/v1/jobs/{running_id}/cancel"), &[], b"");
    assert_eq!(asked.status, 202, "{}", asked.text());
    assert_eq!(asked.json()["cancel_requested"], true);
    let stopped = server.wait(running_id);
    assert_eq!(stopped["state"], "canceled");
    assert!(stopped["result"].is_null());
    let leftovers: Vec<_> = std::fs::read_dir(server.data.join("jobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let files = server.get(&format!("/v1/jobs/{running_id}/files/cnn2.cs.safetensors"));
    assert_eq!(files.status, 409);
}

#[test]
fn kill_9_mid_layer_loses_nothing_and_the_job_completes_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &Options::default());
    let settings = json!({"iters": 1500, "seed": 5, "probe": false});
    let job = server.submit("builtin:cnn2", settings);
    let id = job["id"].as_str().unwrap().to_string();
    let queued_behind = server.submit("builtin:cnn1", json!({"iters": 2}));
    server.wait_until(&id, Duration::from_secs(120), |j| {
        j["progress"]["layer"].as_u64().unwrap_or(0) >= 2
            && j["progress"]["iteration"].as_u64().unwrap_or(0) > 0
    });
    server.kill();
    // A cut-off upload left behind by the crash is never usable.
    std::fs::write(
        data.join("uploads/.0123456789abcdef0123456789abcdef.partial"),
        b"half",
    )
    .unwrap();

    let server = Server::start(&data, &Options::default());
    let requeued = server.job(&id);
    assert!(
        matches!(requeued["state"].as_str(), Some("queued" | "running")),
        "{requeued}"
    );
    let done = server.wait(&id);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2);
    assert_eq!(
        server.wait(queued_behind["id"].as_str().unwrap())["state"],
        "succeeded"
    );
    assert!(!data
        .join("uploads/.0123456789abcdef0123456789abcdef.partial")
        .exists());
    let served = download(&server, &done);
    cs_init_ok(
        &[
            "cnn2",
            "--iters",
            "1500",
            "--seed",
            "5",
            "--no-probe",
            "-q",
            "-o",
            "cnn2.safetensors",
        ],
        dir.path(),
    );
    assert!(
        served == std::fs::read(dir.path().join("cnn2.safetensors")).unwrap(),
        "the re-run job's checkpoint differs from an uninterrupted run's"
    );
}

#[test]
fn sigterm_stops_gracefully_and_the_running_job_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &Options::default());
    let job = server.submit("builtin:cnn2", json!({"iters": 100000, "probe": false}));
    let id = job["id"].as_str().unwrap().to_string();
    server.wait_until(&id, Duration::from_secs(60), |j| {
        j["progress"]["iteration"].as_u64().unwrap_or(0) > 0
    });
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(server.log.lock().unwrap().contains("stopped"));
    let server = Server::start(&data, &Options::default());
    let job = server.job(&id);
    assert!(
        matches!(job["state"].as_str(), Some("queued" | "running")),
        "{job}"
    );
    let canceled = server.post(&format!("/v1/jobs/{id}/cancel"), &[], b"");
    assert!(matches!(canceled.status, 200 | 202));
    assert_eq!(server.wait(&id)["state"], "canceled");
}

#[test]
fn retention_deletes_old_results_and_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &opts(&["--keep", "1500ms"]));
    let upload = server
        .post("/v1/uploads?name=net.safetensors", &[], &network_bytes())
        .json();
    let job = server.submit(upload["input"].as_str().unwrap(), json!({"iters": 2}));
    let id = job["id"].as_str().unwrap();
    let done = server.wait(id);
    assert_eq!(done["state"], "succeeded");
    let expired = server.wait_until(id, Duration::from_secs(30), |j| {
        j["result"]["expired"] == true
    });
    assert!(expired["result"]["totals"]["optimized"].as_u64().unwrap() > 0);
    let file = server.get(expired["result"]["files"][0]["url"].as_str().unwrap());
    assert_eq!(file.status, 410, "{}", file.text());
    assert_eq!(file.code(), "result_expired");
    // Marked expired first, then deleted: the files go right after.
    let start = std::time::Instant::now();
    while server.data.join("jobs").join(id).exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "the files stay");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The upload went too.
    let start = std::time::Instant::now();
    loop {
        let again = server.post_json("/v1/jobs", &json!({"input": upload["input"]}));
        if again.status == 422 {
            assert_eq!(again.code(), "upload_not_found");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            again.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn hub_inputs_come_from_the_cache_offline() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hub");
    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
    cache_file(
        &cache,
        "owner/net",
        COMMIT,
        "model.safetensors",
        &network_bytes(),
    );
    set_ref(&cache, "owner/net", "main", COMMIT);
    let options = Options {
        env: vec![("HF_HUB_CACHE".into(), cache.display().to_string())],
        ..Options::default()
    };
    let server = Server::start(&dir.path().join("data"), &options);
    let job = server.submit("hf://owner/net", json!({"iters": 3}));
    let job = server.wait(job["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["files"][0]["name"], "net.cs.safetensors");
    // A repository not in the cache is found missing by the worker, which reads the input.
    let missing = server.submit("hf://owner/absent", json!({}));
    let missing = server.wait(missing["id"].as_str().unwrap());
    assert_eq!(missing["state"], "failed");
    assert_eq!(missing["error"]["code"], "input_unavailable");
    assert!(missing["error"]["message"]
        .as_str()
        .unwrap()
        .contains("HF_HUB_OFFLINE"));
}

#[test]
fn the_hub_token_never_appears_in_a_response_or_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "hf_TOPSECRETtokenvalue1234567890";
    let options = Options {
        env: vec![
            ("HF_TOKEN".into(), secret.into()),
            ("HF_HUB_OFFLINE".into(), "0".into()),
            // A closed local port: the download fails without touching the network.
            ("HF_ENDPOINT".into(), "http://127.0.0.1:9".into()),
            (
                "HF_HUB_CACHE".into(),
                dir.path().join("hub").display().to_string(),
            ),
        ],
        ..Options::default()
    };
    let server = Server::start(&dir.path().join("data"), &options);
    let job = server.submit("hf://owner/absent", json!({}));
    let failed = server.wait(job["id"].as_str().unwrap());
    assert_eq!(failed["state"], "failed", "{failed}");
    let everything = [
        failed.to_string(),
        server.get("/v1/jobs").text(),
        server
            .get(&format!("/v1/jobs/{}", failed["id"].as_str().unwrap()))
            .text(),
        server.get("/metrics").text(),
        server.log.lock().unwrap().clone(),
    ];
    for text in everything {
        assert!(!text.contains(secret), "the token leaked: {text}");
    }
}

#[test]
fn a_token_guards_every_route_but_health_and_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let args = ["--token-file", token_file.to_str().unwrap()];
    let open = Server::start(&dir.path().join("data"), &opts(&args));
    for path in [
        "/v1/jobs",
        "/metrics",
        "/openapi.json",
        "/v1/jobs/0123456789abcdef0123456789abcdef",
    ] {
        let reply = open.get(path);
        assert_eq!(reply.status, 401, "{path}");
        assert_eq!(reply.code(), "unauthorized");
        assert_eq!(reply.header("www-authenticate").as_deref(), Some("Bearer"));
        let wrong = open.get_with(path, &[("Authorization", "Bearer s3cret-tokem")]);
        assert_eq!(wrong.status, 401, "{path}");
    }
    assert_eq!(
        open.post_json("/v1/jobs", &json!({"input": "builtin:cnn1"}))
            .status,
        401
    );
    assert_eq!(open.post("/v1/uploads", &[], b"x").status, 401);
    assert_eq!(open.get("/healthz").status, 200);
    let page = open.get("/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<form"));
    drop(open);

    let with_token = Server::start(
        &dir.path().join("data"),
        &Options {
            token: Some("s3cret-token".into()),
            ..opts(&args)
        },
    );
    assert_eq!(with_token.get("/v1/jobs").status, 200);
    let job = with_token.submit("builtin:cnn1", json!({"iters": 1}));
    assert_eq!(
        with_token.wait(job["id"].as_str().unwrap())["state"],
        "succeeded"
    );
}

#[test]
fn bad_requests_get_their_status_and_a_message_that_says_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("allowed");
    std::fs::create_dir(&allowed).unwrap();
    std::fs::write(allowed.join("net.safetensors"), network_bytes()).unwrap();
    let outside = dir.path().join("outside.safetensors");
    std::fs::write(&outside, network_bytes()).unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &opts(&[
            "--max-upload",
            "1MB",
            "--allow-dir",
            allowed.to_str().unwrap(),
        ]),
    );
    let jobs = |body: &str| {
        server.post(
            "/v1/jobs",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };
    let cases: Vec<(&str, u16, &str, &str)> = vec![
        (r#"{"input": "builtin:cnn1""#, 400, "malformed_json", "EOF"),
        (
            r#"{"input": "builtin:cnn1", "colour": 1}"#,
            422,
            "invalid_request",
            "unknown field `colour`",
        ),
        (
            r#"{"input": "builtin:cnn1", "settings": {"iterations": 3}}"#,
            422,
            "invalid_request",
            "settings.iterations",
        ),
        (
            r#"{"input": "builtin:cnn1", "settings": {"lr": -1}}"#,
            422,
            "invalid_setting",
            "settings.lr",
        ),
        (
            r#"{"input": "builtin:cnn1", "settings": {"momentum": 0.9}}"#,
            422,
            "invalid_setting",
            "sgd optimizer only",
        ),
        (
            r#"{"input": "builtin:cnn1", "settings": {"variant": "diagonal"}}"#,
            422,
            "invalid_request",
            "unknown variant `diagonal`",
        ),
        (
            r#"{"input": "builtin:cnn1", "settings": {"include": ["("]}}"#,
            422,
            "invalid_setting",
            "settings.include",
        ),
        (
            r#"{"input": "s3://bucket/model"}"#,
            422,
            "unknown_input_scheme",
            "hf://",
        ),
        (
            r#"{"input": "builtin:vgg"}"#,
            422,
            "unknown_builtin",
            "resnet18",
        ),
        (
            r#"{"input": "upload:0123456789abcdef0123456789abcdef"}"#,
            422,
            "upload_not_found",
            "/v1/uploads",
        ),
        (
            r#"{"settings": {}}"#,
            422,
            "invalid_request",
            "missing field `input`",
        ),
    ];
    for (body, status, code, text) in cases {
        let reply = jobs(body);
        assert_eq!(reply.status, status, "{body}: {}", reply.text());
        assert_eq!(reply.code(), code, "{body}");
        assert!(reply.text().contains(text), "{body}: {}", reply.text());
    }
    let not_json = server.post("/v1/jobs", &[], br#"{"input": "builtin:cnn1"}"#);
    assert_eq!(not_json.status, 415);

    // Local paths: only under --allow-dir, after resolving links.
    let inside = jobs(&json!({"input": allowed.join("net.safetensors")}).to_string());
    assert_eq!(inside.status, 202, "{}", inside.text());
    let refused = jobs(&json!({"input": outside}).to_string());
    assert_eq!(refused.status, 403);
    assert_eq!(refused.code(), "path_not_allowed");
    std::os::unix::fs::symlink(&outside, allowed.join("link.safetensors")).unwrap();
    let linked = jobs(&json!({"input": allowed.join("link.safetensors")}).to_string());
    assert_eq!(linked.status, 403);
    let dotted = jobs(
        &json!({"input": format!("{}/../outside.safetensors", allowed.display())}).to_string(),
    );
    assert_eq!(dotted.status, 403);

    // Uploads: truncated, foreign, empty, too large.
    let bytes = network_bytes();
    let uploads = |body: &[u8]| server.post("/v1/uploads", &[], body);
    let truncated = uploads(&bytes[..bytes.len() - 10]);
    assert_eq!(truncated.status, 422, "{}", truncated.text());
    assert_eq!(truncated.code(), "not_a_checkpoint");
    assert!(truncated.text().contains("the upload"));
    assert_eq!(
        uploads(b"PK\x03\x04 this is no zip").code(),
        "not_a_checkpoint"
    );
    assert_eq!(uploads(b"hello").status, 422);
    assert_eq!(uploads(b"").status, 422);
    // Over the limit: refused on its declared length before the body is read, or while it
    // streams in when no length is declared.
    let declared = server.raw(
        "POST /v1/uploads HTTP/1.1\r\nHost: x\r\nContent-Length: 1000001\r\n\r\n",
        &vec![0u8; 1_000_001],
    );
    assert!(declared.contains(" 413 "), "{declared}");
    let mut chunked = Vec::new();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 65536).as_bytes());
        chunked.extend_from_slice(&[0u8; 65536]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let streamed = server.raw(
        "POST /v1/uploads HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        &chunked,
    );
    assert!(streamed.contains(" 413 "), "{streamed}");
    let leftovers: Vec<_> = std::fs::read_dir(server.data.join("uploads"))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "refused uploads must leave nothing");

    // A checkpoint with no conv layer.
    let no_conv = serialize(None, &small_network(Dtype::F32)[1..3]);
    let upload = uploads(&no_conv);
    assert_eq!(upload.status, 201, "{}", upload.text());
    let reply = jobs(&json!({"input": upload.json()["input"]}).to_string());
    assert_eq!(reply.status, 202, "creating a job does not read its input");
    let failed = server.wait(reply.json()["id"].as_str().unwrap());
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["error"]["code"], "no_conv_layer");

    // Unknown ids, routes and methods.
    for path in [
        "/v1/jobs/0123456789abcdef0123456789abcdef",
        "/v1/jobs/not-an-id",
        "/v1/jobs/0123456789abcdef0123456789abcdef/events",
        "/v1/jobs/0123456789abcdef0123456789abcdef/report",
        "/v2/jobs",
    ] {
        let reply = server.get(path);
        assert_eq!(reply.status, 404, "{path}");
        assert!(reply.json()["error"]["message"].is_string());
    }
    assert_eq!(
        server
            .post("/v1/jobs/0123456789abcdef0123456789abcdef/cancel", &[], b"")
            .status,
        404
    );
    assert_eq!(server.post("/healthz", &[], b"").status, 405);
    // The server keeps serving after all of that.
    assert_eq!(server.get("/healthz").json()["status"], "ok");
}

#[test]
fn a_failing_job_is_failed_with_the_command_lines_message() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &opts(&["--allow-dir", images.to_str().unwrap()]),
    );
    // An empty folder of probe images passes the checks of creation and fails when the job runs.
    let job = server.submit("builtin:cnn1", json!({"iters": 1, "probe_images": images}));
    let failed = server.wait(job["id"].as_str().unwrap());
    assert_eq!(failed["state"], "failed", "{failed}");
    let out = Command::new(env!("CARGO_BIN_EXE_cs-init"))
        .args(["cnn1", "--iters", "1", "--probe-images"])
        .arg(&images)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let cli_message = String::from_utf8_lossy(&out.stderr);
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(cli_message.contains(message), "{message} vs {cli_message}");
    assert!(message.contains("PNG/JPEG"), "{message}");
    // The server keeps serving, and a diverging job still succeeds, its layers marked.
    let job = server.submit(
        "builtin:cnn1",
        json!({"iters": 3, "lr": 1e30, "optimizer": "sgd"}),
    );
    let done = server.wait(job["id"].as_str().unwrap());
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["result"]["diverged"], true);
    // Probe images outside --allow-dir are refused like any local path.
    let refused = server.post_json(
        "/v1/jobs",
        &json!({"input": "builtin:cnn1", "settings": {"probe_images": "/nonexistent"}}),
    );
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert!(refused.text().contains("settings.probe_images"));
}

#[test]
fn limits_refuse_what_a_hostile_client_asks_and_end_runaway_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &opts(&[
            "--max-iters",
            "5000",
            "--max-probe-pixels",
            "4096",
            "--job-time-limit",
            "1s",
        ]),
    );
    let create = |settings: Value| {
        server.post_json(
            "/v1/jobs",
            &json!({"input": "builtin:cnn1", "settings": settings}),
        )
    };
    for (settings, field, limit) in [
        (
            json!({"iters": 1_000_000_000_000u64}),
            "settings.iters",
            "max_iters",
        ),
        (json!({"iters": 5001}), "settings.iters", "max_iters"),
        (
            json!({"probe_batch": 5, "probe_size": "32x32"}),
            "settings.probe_size",
            "max_probe_pixels",
        ),
        (
            json!({"probe_size": "1000000x1000000"}),
            "settings.probe_size",
            "max_probe_pixels",
        ),
    ] {
        let refused = create(settings.clone());
        assert_eq!(refused.status, 422, "{settings}: {}", refused.text());
        assert_eq!(refused.code(), "over_limit", "{settings}");
        let message = refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            message.starts_with(field) && message.contains(limit),
            "{message}"
        );
    }
    assert_eq!(
        server.get("/v1/jobs").json()["jobs"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // The limits are in the description a client reads.
    let spec = server.get("/openapi.json").json();
    let properties = &spec["components"]["schemas"]["RunSettings"]["properties"];
    assert_eq!(
        properties["iters"]["maximum"], 5000,
        "{}",
        properties["iters"]
    );
    let probe_size = properties["probe_size"]["description"].as_str().unwrap();
    assert!(probe_size.contains("4096") && probe_size.contains("max_probe_pixels"));
    let description = spec["info"]["description"].as_str().unwrap();
    assert!(description.contains("over_limit") && description.contains("time_limit"));

    // At the caps a job is accepted; one that outlives the time limit ends failed, saying so,
    // within a layer (an iteration of a ResNet-18 layer takes milliseconds), and leaves no files.
    let job = server.submit(
        "builtin:resnet18",
        json!({"iters": 5000, "probe_size": "32x32"}),
    );
    let id = job["id"].as_str().unwrap();
    let failed = server.wait(id);
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "time_limit", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(message.contains("time limit of 1s"), "{message}");
    assert!(failed["result"].is_null(), "{failed}");
    assert_eq!(server.get(&format!("/v1/jobs/{id}/report")).status, 409);
    let jobs = server.data.join("jobs");
    assert!(!jobs.join(id).exists() && !jobs.join(format!(".{id}.staging")).exists());
}

#[test]
fn openapi_metrics_and_health_describe_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &Options::default());
    let job = server.submit("builtin:cnn1", json!({"iters": 2}));
    server.wait(job["id"].as_str().unwrap());
    let spec = server.get("/openapi.json").json();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/uploads", "post"),
        ("/v1/jobs", "post"),
        ("/v1/jobs", "get"),
        ("/v1/jobs/{id}", "get"),
        ("/v1/jobs/{id}/events", "get"),
        ("/v1/jobs/{id}/cancel", "post"),
        ("/v1/jobs/{id}/files/{name}", "get"),
        ("/v1/jobs/{id}/report", "get"),
        ("/v1/jobs/{id}/plot.svg", "get"),
        ("/healthz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path} missing");
    }
    assert!(spec["components"]["schemas"]["JobView"].is_object());
    assert!(spec["components"]["schemas"]["RunSettings"].is_object());

    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for needle in [
        "cs_init_jobs{state=\"succeeded\"} 1",
        "cs_init_queue_depth 0",
        "cs_init_job_seconds_count 1",
        "cs_init_uploaded_bytes_total",
        "cs_init_served_bytes_total",
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
}
