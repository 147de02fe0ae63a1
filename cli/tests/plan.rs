//! `cs-init plan` and the run report name what kind of conv each weight is.

use crate::common;

#[test]
fn plan_and_the_run_report_name_the_kind() {
    let Some(path) = common::shared_checkpoint("tinygrad-mnist-cnn.safetensors") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| common::cs_init_ok(args, dir.path());
    let input = path.to_str().unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&run(&["plan", "--json", input])).unwrap();
    let kinds: Vec<(&str, &str)> = plan["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| Some((t["name"].as_str()?, t["kind"].as_str()?)))
        .collect();
    assert_eq!(
        kinds,
        [
            ("layers.0.weight", "single_channel"),
            ("layers.2.weight", "standard"),
            ("layers.6.weight", "standard"),
            ("layers.8.weight", "standard"),
        ]
    );

    run(&[
        input,
        "--iters",
        "1",
        "--no-probe",
        "-q",
        "-o",
        "mnist.cs.safetensors",
    ]);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("mnist.cs.report.json")).unwrap())
            .unwrap();
    let layer0 = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "layers.0.weight")
        .unwrap();
    assert_eq!(layer0["kind"], "single_channel");
}
