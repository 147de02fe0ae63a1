//! `hf://` inputs against a Hub cache the tests build on disk, in the layout the real clients
//! write. No test touches the network: HF_HUB_OFFLINE is set, or HF_ENDPOINT points at a closed
//! local port.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::common::hub_cache::{cache_file, set_ref};
use crate::common::{check_output, no_outputs, small_network};
use cs_init::checkpoint::{serialize, Dtype};

const MAIN: &str = "0123456789abcdef0123456789abcdef01234567";
const V1: &str = "89abcdef0123456789abcdef0123456789abcdef";

fn network(tensors: usize) -> Vec<u8> {
    serialize(None, &small_network(Dtype::F32)[..tensors])
}

struct Hub {
    dir: tempfile::TempDir,
}

impl Hub {
    /// A cache with `owner/net` (main and v1.0 differ), a sharded `owner/sharded`, and a file in a
    /// subfolder of `owner/net`.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        cache_file(&cache, "owner/net", MAIN, "model.safetensors", &network(6));
        cache_file(&cache, "owner/net", V1, "model.safetensors", &network(4));
        cache_file(
            &cache,
            "owner/net",
            MAIN,
            "sub/other.safetensors",
            &network(5),
        );
        set_ref(&cache, "owner/net", "main", MAIN);
        set_ref(&cache, "owner/net", "v1.0", V1);
        let all = small_network(Dtype::F32);
        cache_file(
            &cache,
            "owner/sharded",
            MAIN,
            "model-00001-of-00002.safetensors",
            &serialize(None, &all[..3]),
        );
        cache_file(
            &cache,
            "owner/sharded",
            MAIN,
            "model-00002-of-00002.safetensors",
            &serialize(None, &all[3..]),
        );
        let weight_map: serde_json::Map<String, serde_json::Value> = all
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let shard = if i < 3 {
                    "model-00001-of-00002.safetensors"
                } else {
                    "model-00002-of-00002.safetensors"
                };
                (t.0.clone(), serde_json::json!(shard))
            })
            .collect();
        let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
        cache_file(
            &cache,
            "owner/sharded",
            MAIN,
            "model.safetensors.index.json",
            index.to_string().as_bytes(),
        );
        set_ref(&cache, "owner/sharded", "main", MAIN);
        std::fs::create_dir(dir.path().join("work")).unwrap();
        Self { dir }
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn snapshot(&self, repo: &str, commit: &str, file: &str) -> PathBuf {
        self.cache()
            .join(format!("models--{}", repo.replace('/', "--")))
            .join("snapshots")
            .join(commit)
            .join(file)
    }

    /// Runs cs-init in `work/`, offline unless `online`, with a token that must never be printed.
    fn run(&self, args: &[&str], online: bool) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cs-init"));
        cmd.args(args)
            .current_dir(self.work())
            .env_remove("HF_HOME")
            .env("HF_HUB_CACHE", self.cache())
            .env("HF_TOKEN", "hf_secret_token_never_printed")
            .env("HF_ENDPOINT", "http://127.0.0.1:9");
        if online {
            cmd.env_remove("HF_HUB_OFFLINE");
        } else {
            cmd.env("HF_HUB_OFFLINE", "1");
        }
        let out = cmd.output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains("hf_secret_token_never_printed"),
            "the token was printed"
        );
        out
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const CONVS: [&str; 3] = ["conv1.weight", "conv2.weight", "proj.weight"];

#[test]
fn a_cached_single_file_repo() {
    let hub = Hub::new();
    let out = hub.run(&["hf://owner/net", "--iters", "5", "-q"], false);
    assert!(out.status.success(), "{}", stderr(&out));
    let input = hub.snapshot("owner/net", MAIN, "model.safetensors");
    check_output(&input, &hub.work().join("net.cs.safetensors"), &CONVS);
    assert!(hub.work().join("net.cs.report.json").is_file());
    // The cache is never written to.
    assert_eq!(std::fs::read(&input).unwrap(), network(6));
}

#[test]
fn cached_files_do_not_touch_the_network_when_online() {
    let hub = Hub::new();
    let out = hub.run(&["hf://owner/net", "--iters", "5", "-q"], true);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_cached_sharded_repo() {
    let hub = Hub::new();
    let out = hub.run(&["hf://owner/sharded", "--iters", "5", "-q"], false);
    assert!(out.status.success(), "{}", stderr(&out));
    let shard = |n: &str| hub.snapshot("owner/sharded", MAIN, n);
    check_output(
        &shard("model-00001-of-00002.safetensors"),
        &hub.work()
            .join("sharded.cs/model-00001-of-00002.safetensors"),
        &CONVS[..1],
    );
    check_output(
        &shard("model-00002-of-00002.safetensors"),
        &hub.work()
            .join("sharded.cs/model-00002-of-00002.safetensors"),
        &CONVS[1..],
    );
    assert!(hub
        .work()
        .join("sharded.cs/model.safetensors.index.json")
        .is_file());
}

#[test]
fn revisions_branches_and_commits() {
    let hub = Hub::new();
    for (rev, out_name) in [("v1.0", "a.safetensors"), (V1, "b.safetensors")] {
        let reference = format!("hf://owner/net@{rev}");
        let out = hub.run(&[&reference, "-o", out_name, "--iters", "5", "-q"], false);
        assert!(out.status.success(), "{rev}: {}", stderr(&out));
        check_output(
            &hub.snapshot("owner/net", V1, "model.safetensors"),
            &hub.work().join(out_name),
            &CONVS[..2],
        );
    }
}

#[test]
fn a_file_inside_the_repo() {
    let hub = Hub::new();
    let out = hub.run(
        &["hf://owner/net/sub/other.safetensors", "--iters", "5", "-q"],
        false,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    check_output(
        &hub.snapshot("owner/net", MAIN, "sub/other.safetensors"),
        &hub.work().join("net.cs.safetensors"),
        &CONVS,
    );
}

#[test]
fn missing_files_fail_offline_with_repo_file_and_cache_named() {
    let hub = Hub::new();
    let cases = [
        ("hf://owner/absent", "model.safetensors"),
        ("hf://owner/net/nope.safetensors", "nope.safetensors"),
        ("hf://owner/net@v9", "model.safetensors"),
    ];
    for (reference, file) in cases {
        let out = hub.run(&[reference], false);
        assert_eq!(out.status.code(), Some(1), "{reference}");
        let err = stderr(&out);
        let repo = reference
            .trim_start_matches("hf://")
            .split(['/', '@'])
            .take(2)
            .collect::<Vec<_>>()
            .join("/");
        assert!(
            err.contains(&repo) && err.contains(file),
            "{reference}: {err}"
        );
        assert!(
            err.contains(hub.cache().to_str().unwrap()),
            "{reference}: {err}"
        );
        assert!(err.contains("HF_HUB_OFFLINE"), "{reference}: {err}");
        no_outputs(&hub.work(), &[]);
    }
    let out = hub.run(&["hf://owner"], false);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("hf://OWNER/NAME"));
}

#[test]
fn plan_and_inspect_take_hub_references() {
    let hub = Hub::new();
    let out = hub.run(&["plan", "hf://owner/net", "--json"], false);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["optimized"], 3);
    let out = hub.run(&["inspect", "hf://owner/sharded", "--json"], false);
    assert!(out.status.success(), "{}", stderr(&out));
    no_outputs(&hub.work(), &[]);
}
