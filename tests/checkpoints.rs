//! `checkpoints/` is reproducible: the commands of its README write the same bytes again.
//! (`resnet20.cs.safetensors` needs the `models` crate: `models/tests/checkpoints.rs`.)

use std::path::Path;
use std::process::Command;

#[test]
fn the_paper_networks_regenerate_byte_for_byte() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints");
    let dir = tempfile::tempdir().unwrap();
    for net in ["cnn1", "cnn2"] {
        let output = dir.path().join(format!("{net}.cs.safetensors"));
        let out = Command::new(env!("CARGO_BIN_EXE_cs-init"))
            .args(["--seed", "0", "--iters", "500", "--lr", "0.001", "-q", "-o"])
            .arg(&output)
            .arg(format!("builtin:{net}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = std::fs::read(committed.join(format!("{net}.cs.safetensors"))).unwrap();
        assert!(
            std::fs::read(&output).unwrap() == want,
            "checkpoints/{net}.cs.safetensors is not what its command writes; regenerate it (checkpoints/README.md)"
        );
        let report: serde_json::Value = serde_json::from_slice(
            &std::fs::read(committed.join(format!("{net}.cs.report.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(report["settings"]["iterations"], 500);
        assert_eq!(
            report["totals"]["optimized"],
            report["totals"]["conv_tensors"]
        );
    }
}
