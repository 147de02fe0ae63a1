//! The `models` command end to end.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

fn models(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_models"))
        .args(args)
        .current_dir(dir)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn eval_prints_one_json_object() {
    let Some(checkpoint) = common::shared("checkpoints/resnet20-cifar10.safetensors") else {
        return;
    };
    let Some(data) = common::shared("cifar10/bin-prefix") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, data) = (checkpoint.to_str().unwrap(), data.to_str().unwrap());
    let args = [
        "eval",
        "--model",
        "resnet20",
        "--checkpoint",
        checkpoint,
        "--data",
        data,
    ];
    let text = stdout(&models(&[&args[..], &["--json"]].concat(), dir.path()));
    let object: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(object["model"], "resnet20");
    assert_eq!(object["checkpoint"], checkpoint);
    assert_eq!(object["images"], 1017);
    assert!((object["accuracy"].as_f64().unwrap() - 91.6).abs() < 0.3);
    let text = stdout(&models(&args, dir.path()));
    assert!(
        text.contains("% (") && text.contains("of 1017 test images"),
        "{text}"
    );

    // The wrong architecture and a missing data directory fail with a reason and exit 1.
    let wrong = models(
        &[
            "eval",
            "--model",
            "cnn1",
            "--checkpoint",
            checkpoint,
            "--data",
            data,
        ],
        dir.path(),
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("--model"));
    let missing = models(
        &[
            "eval",
            "--model",
            "resnet20",
            "--checkpoint",
            checkpoint,
            "--data",
            "nowhere",
        ],
        dir.path(),
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nowhere"));
}

#[test]
fn init_cs_init_train_and_plot() {
    let Some(data) = common::shared("cifar10/bin-prefix") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = data.to_str().unwrap();
    stdout(&models(
        &[
            "init",
            "--model",
            "cnn1",
            "--seed",
            "4",
            "-o",
            "start.safetensors",
        ],
        dir.path(),
    ));

    // What cs-init does to that file, through the library.
    let start = candle_core::safetensors::load(
        dir.path().join("start.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let mut decorrelated = start.clone();
    for (name, tensor) in &start {
        if tensor.rank() == 4 {
            let settings = cs_init::Settings {
                iterations: 20,
                ..Default::default()
            };
            let result =
                cs_init::minimize(tensor, &settings, cs_init::Engine::Auto, &mut |_, _| {})
                    .unwrap();
            decorrelated.insert(name.clone(), result.weight);
        }
    }
    candle_core::safetensors::save(&decorrelated, dir.path().join("start.cs.safetensors")).unwrap();

    let common = [
        "train",
        "--model",
        "cnn1",
        "--data",
        data,
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--train-images",
        "64",
        "--test-images",
        "30",
        "--log",
        "runs.jsonl",
    ];
    stdout(&models(
        &[&common[..], &["--init-from", "start.cs.safetensors"]].concat(),
        dir.path(),
    ));
    let printed = stdout(&models(
        &[&common[..], &["--seed", "4", "--save", "end.safetensors"]].concat(),
        dir.path(),
    ));
    assert_eq!(printed.lines().count(), 3);

    let log = std::fs::read_to_string(dir.path().join("runs.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 6);
    assert_eq!(records[0]["arm"], "checkpoint");
    assert_eq!(records[3]["arm"], "baseline");
    assert_eq!(records[0]["epoch"], 0);
    assert!(records[0]["train_loss"].is_null());
    for record in &records[1..3] {
        for key in ["train_loss", "train_accuracy", "test_accuracy", "seconds"] {
            assert!(record[key].as_f64().is_some(), "{key} in {record}");
        }
        assert_eq!(record["l_cs"].as_object().unwrap().len(), 4);
    }
    // The decorrelated start has a far lower L_CS than the plain one from the same seed.
    let l_cs = |r: &serde_json::Value| r["l_cs"]["conv2.weight"].as_f64().unwrap();
    assert!(l_cs(&records[0]) < 0.5 * l_cs(&records[3]));
    assert!(dir.path().join("end.safetensors").is_file());

    stdout(&models(
        &["plot", "runs.jsonl", "-o", "accuracy.svg"],
        dir.path(),
    ));
    let svg = std::fs::read_to_string(dir.path().join("accuracy.svg")).unwrap();
    assert!(
        svg.contains("test accuracy (%)") && svg.contains("checkpoint (1 seed"),
        "plot legend"
    );
    let table = stdout(&models(
        &[
            "plot",
            "runs.jsonl",
            "-o",
            "loss.png",
            "--metric",
            "train-loss",
        ],
        dir.path(),
    ));
    assert!(
        table.contains("| best train loss") && table.contains("| baseline | 1 | 2 |"),
        "{table}"
    );
    assert!(std::fs::read(dir.path().join("loss.png"))
        .unwrap()
        .starts_with(b"\x89PNG"));
}
