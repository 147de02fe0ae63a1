//! `checkpoints/resnet20.cs.safetensors` is reproducible: `models init` then cs-init's pipeline
//! (the library call the `cs-init` command makes), with the settings of checkpoints/README.md.

use std::path::Path;
use std::process::Command;

use cs_init::run::{prepare, Destination, Execution, InputAccess, RunSettings, Silent};

#[test]
fn the_cifar_resnet20_regenerates_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("resnet20.safetensors");
    let out = Command::new(env!("CARGO_BIN_EXE_models"))
        .args(["init", "--model", "resnet20", "--seed", "0", "-o"])
        .arg(&fresh)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let settings = RunSettings {
        iters: 500,
        lr: 0.001,
        ..RunSettings::default()
    };
    let prepared = prepare(fresh.to_str().unwrap(), &settings, &InputAccess::default()).unwrap();
    let written = dir.path().join("resnet20.cs.safetensors");
    let execution = Execution {
        destination: Destination {
            checkpoint: Some(written.clone()),
            ..Destination::default()
        },
        device: candle_core::Device::Cpu,
        command_line: "models/tests/checkpoints.rs".into(),
        input_label: None,
    };
    prepared.execute(&execution, &mut Silent).unwrap();
    let committed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../checkpoints/resnet20.cs.safetensors");
    assert!(
        std::fs::read(&written).unwrap() == std::fs::read(&committed).unwrap(),
        "checkpoints/resnet20.cs.safetensors is not what its command writes; regenerate it (checkpoints/README.md)"
    );
}
