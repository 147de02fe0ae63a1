//! `checkpoints/` is reproducible: the commands of its README write the same bytes again.
//! (`resnet20.cs.safetensors` needs the `models` crate: `models/tests/checkpoints.rs`.)

use crate::common;

#[test]
fn the_paper_networks_regenerate_byte_for_byte() {
    let committed = common::repository().join("checkpoints");
    let dir = tempfile::tempdir().unwrap();
    for net in ["cnn1", "cnn2"] {
        let output = dir.path().join(format!("{net}.cs.safetensors"));
        let builtin = format!("builtin:{net}");
        common::cs_init_ok(
            &[
                "--seed",
                "0",
                "--iters",
                "500",
                "--lr",
                "0.001",
                "-q",
                "-o",
                output.to_str().unwrap(),
                &builtin,
            ],
            dir.path(),
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
