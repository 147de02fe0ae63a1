//! The real `cs-init` binary on generated and real checkpoints, good and bad.

use crate::common;

use std::collections::BTreeMap;
use std::process::{Command, Output};

use crate::common::{
    check_output, cs_init, loss, no_outputs, shared_checkpoints, small_network, write,
};
use candle_core::Tensor;
use cs_init::checkpoint::{
    serialize, tensor_from_bytes, tensor_to_bytes, Dtype, HeaderEntry, SafetensorsFile,
    SafetensorsWriter,
};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn user_metadata() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        ("author".to_string(), "test".to_string()),
    ])
}

#[test]
fn optimizes_convs_and_copies_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("net.safetensors");
    write(&input, Some(&user_metadata()), &small_network(Dtype::F32));
    let before = std::fs::read(&input).unwrap();
    let out = cs_init(&["net.safetensors", "--iters", "50"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&input).unwrap(), before, "input modified");
    let output = dir.path().join("net.cs.safetensors");
    check_output(
        &input,
        &output,
        &["conv1.weight", "conv2.weight", "proj.weight"],
    );

    let file = SafetensorsFile::open(&output).unwrap();
    let meta = file.metadata().unwrap();
    assert_eq!(meta["author"], "test");
    assert_eq!(meta["format"], "pt");
    assert_eq!(meta["cs_init.iters"], "50");
    assert_eq!(meta["cs_init.variant"], "paper");
    assert_eq!(meta["cs_init.optimizer"], "adam");
    assert_eq!(meta["cs_init.lr"], "0.001");
    assert_eq!(meta["cs_init.seed"], "0");
    // What defines the result, not how or where it was started: no command line, no path.
    assert!(!meta.contains_key("cs_init.command"));
    let dir_name = dir.path().to_string_lossy().into_owned();
    assert!(meta.values().all(|v| !v.contains(&dir_name)), "{meta:?}");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("net.cs.report.json")).unwrap())
            .unwrap();
    assert_eq!(report["schema_version"], 1);
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    let proj = layers.iter().find(|l| l["name"] == "proj.weight").unwrap();
    assert_eq!(proj["kind"], "pointwise");
    for l in layers {
        assert_eq!(l["status"], "optimized");
        assert!(l["loss_after"].as_f64().unwrap() < l["loss_before"].as_f64().unwrap());
        assert_eq!(l["curve"]["loss"].as_array().unwrap().len(), 51);
        assert!(l["norm_ratio"]["mean"].as_f64().unwrap() > 0.0);
        for key in [
            "scale_free_before",
            "scale_free_after",
            "kernel_cosine_before",
            "kernel_cosine_after",
            "seconds",
        ] {
            assert!(l[key].is_number(), "{key}");
        }
    }
    assert_eq!(report["totals"]["optimized"], 3);
}

#[test]
fn half_precision_dtypes_are_preserved() {
    for (dtype, name) in [
        (Dtype::F16, "f16"),
        (Dtype::BF16, "bf16"),
        (Dtype::F64, "f64"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join(format!("{name}.safetensors"));
        write(&input, None, &small_network(dtype));
        let out = cs_init(
            &[input.to_str().unwrap(), "--iters", "30", "-q"],
            dir.path(),
        );
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        check_output(
            &input,
            &dir.path().join(format!("{name}.cs.safetensors")),
            &["conv1.weight", "conv2.weight", "proj.weight"],
        );
    }
}

#[test]
fn zero_iterations_is_an_exact_copy() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("net.safetensors");
    write(&input, None, &small_network(Dtype::F64));
    let out = cs_init(&["net.safetensors", "--iters", "0", "-q"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    check_output(&input, &dir.path().join("net.cs.safetensors"), &[]);
}

#[test]
fn runs_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("net.safetensors"),
        None,
        &small_network(Dtype::F32),
    );
    let run = || {
        let out = cs_init(&["net.safetensors", "--force", "-q"], dir.path());
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::read(dir.path().join("net.cs.safetensors")).unwrap()
    };
    assert_eq!(run(), run());
}

#[test]
fn selection_flags_choose_the_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("net.safetensors");
    write(&input, None, &small_network(Dtype::F32));
    let cases: [(&[&str], &[&str]); 3] = [
        (&["--skip-pointwise"], &["conv1.weight", "conv2.weight"]),
        (&["--include", "conv"], &["conv1.weight", "conv2.weight"]),
        (
            &["--exclude", "^conv1", "--exclude", "proj"],
            &["conv2.weight"],
        ),
    ];
    for (flags, convs) in cases {
        let mut args = vec!["net.safetensors", "--iters", "10", "-q", "--force"];
        args.extend_from_slice(flags);
        let out = cs_init(&args, dir.path());
        assert!(out.status.success(), "{flags:?}: {}", stderr(&out));
        check_output(&input, &dir.path().join("net.cs.safetensors"), convs);
    }
}

#[test]
fn hwio_kernels_get_the_same_result_as_their_oihw_transpose() {
    let dir = tempfile::tempdir().unwrap();
    let oihw = common::kaiming(&[12, 4, 3, 5], 9);
    let hwio = oihw.permute((2, 3, 1, 0)).unwrap().contiguous().unwrap();
    let entry = |t: &Tensor| {
        vec![(
            "k.weight".to_string(),
            Dtype::F32,
            t.dims().to_vec(),
            tensor_to_bytes(t).unwrap(),
        )]
    };
    write(&dir.path().join("a.safetensors"), None, &entry(&oihw));
    write(&dir.path().join("b.safetensors"), None, &entry(&hwio));
    assert!(cs_init(&["a.safetensors", "-q"], dir.path())
        .status
        .success());
    let out = cs_init(&["b.safetensors", "--layout", "hwio", "-q"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |n: &str| {
        let f = SafetensorsFile::open(&dir.path().join(n)).unwrap();
        let t = f.tensor("k.weight").unwrap();
        tensor_from_bytes(f.data(t), t.dtype, &t.shape, &candle_core::Device::Cpu).unwrap()
    };
    let a = read("a.cs.safetensors");
    let b = read("b.cs.safetensors").permute((3, 2, 0, 1)).unwrap();
    assert_eq!(common::values(&a), common::values(&b));
}

#[test]
fn nan_layers_are_skipped_and_diverging_layers_keep_their_weights() {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = small_network(Dtype::F32);
    let mut nan = common::kaiming(&[8, 3, 3, 3], 1)
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    nan[5] = f32::NAN;
    tensors[0].3 = nan.iter().flat_map(|x| x.to_le_bytes()).collect();
    let input = dir.path().join("net.safetensors");
    write(&input, None, &tensors);
    let out = cs_init(&["net.safetensors", "--iters", "20", "--json"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let conv1 = &summary["layers"][0];
    assert_eq!(conv1["status"], "skipped");
    assert!(conv1["reason"].as_str().unwrap().contains("NaN"));
    check_output(
        &input,
        &dir.path().join("net.cs.safetensors"),
        &["conv2.weight", "proj.weight"],
    );

    // SGD with a huge step makes the quartic loss blow up: exit 3, everything still written.
    let out = cs_init(
        &[
            "net.safetensors",
            "--optimizer",
            "sgd",
            "--lr",
            "1e6",
            "--force",
            "-q",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let a = SafetensorsFile::open(&input).unwrap();
    let b = SafetensorsFile::open(&dir.path().join("net.cs.safetensors")).unwrap();
    for t in a.tensors() {
        assert_eq!(a.data(t), b.data(b.tensor(&t.name).unwrap()), "{}", t.name);
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("net.cs.report.json")).unwrap())
            .unwrap();
    assert_eq!(report["totals"]["diverged"], 2);
}

#[test]
fn sharded_input_gives_sharded_output() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    let tensors = small_network(Dtype::F32);
    let (first, second) = tensors.split_at(3);
    write(
        &model.join("model-00001-of-00002.safetensors"),
        Some(&user_metadata()),
        first,
    );
    write(
        &model.join("model-00002-of-00002.safetensors"),
        Some(&user_metadata()),
        second,
    );
    let weight_map: BTreeMap<&str, &str> = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                t.0.as_str(),
                if i < 3 {
                    "model-00001-of-00002.safetensors"
                } else {
                    "model-00002-of-00002.safetensors"
                },
            )
        })
        .collect();
    let total: usize = tensors.iter().map(|t| t.3.len()).sum();
    let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    std::fs::write(
        model.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let out = cs_init(&["model", "--iters", "20", "-q"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let output = dir.path().join("model.cs");
    for shard in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        let convs: &[&str] = if shard.contains("00001") {
            &["conv1.weight"]
        } else {
            &["conv2.weight", "proj.weight"]
        };
        check_output(&model.join(shard), &output.join(shard), convs);
    }
    let written: serde_json::Value = serde_json::from_slice(
        &std::fs::read(output.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(written["weight_map"], index["weight_map"]);
    assert_eq!(written["metadata"]["total_size"], total);
    assert!(dir.path().join("model.cs.report.json").is_file());

    // The index file itself works as INPUT too.
    let out = cs_init(
        &[
            "model/model.safetensors.index.json",
            "-o",
            "again",
            "--iters",
            "5",
            "-q",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir
        .path()
        .join("again/model.safetensors.index.json")
        .is_file());
}

/// A valid file's bytes, then broken in a given way.
fn broken_inputs() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let good = serialize(None, &small_network(Dtype::F32));
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(good[8..8 + header_len].to_vec()).unwrap();
    let with_header = |h: String| {
        let mut h = h.into_bytes();
        while !h.len().is_multiple_of(8) {
            h.push(b' ');
        }
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&h);
        out.extend_from_slice(&good[8 + header_len..]);
        out
    };
    let mut huge_len = good.clone();
    huge_len[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    // conv1.weight is first, at bytes [0, 864); bn1.weight follows at [864, 896).
    assert!(header.contains("\"data_offsets\":[0,864]"));
    let first = "\"data_offsets\":[0,864]";
    let out_of_bounds = header.replacen(first, "\"data_offsets\":[99999136,100000000]", 1);
    let overlapping = header.replacen(first, "\"data_offsets\":[16,880]", 1);
    vec![
        (
            "empty.safetensors",
            vec![],
            "shorter than the 8-byte header length",
        ),
        (
            "text.safetensors",
            b"hello, this is not a checkpoint".to_vec(),
            "claims",
        ),
        (
            "truncated.safetensors",
            good[..good.len() - 100].to_vec(),
            "extend beyond the data section",
        ),
        ("headerlen.safetensors", huge_len, "claims"),
        (
            "json.safetensors",
            with_header("{\"a\": [1, 2".into()),
            "not a JSON object",
        ),
        (
            "bounds.safetensors",
            with_header(out_of_bounds),
            "data_offsets",
        ),
        ("overlap.safetensors", with_header(overlapping), "overlap"),
        ("zip.pth", b"PK\x03\x04 rest of a zip".to_vec(), "zip"),
    ]
}

#[test]
fn bad_inputs_fail_clearly_and_write_nothing() {
    for (name, bytes, expected) in broken_inputs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), &bytes).unwrap();
        let out = cs_init(&[name, "-o", "out.safetensors"], dir.path());
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = stderr(&out);
        assert!(
            err.contains(name) && err.contains(expected),
            "{name}: {err}"
        );
        no_outputs(dir.path(), &[name]);
    }
}

#[test]
fn other_bad_inputs_fail_clearly_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["missing.safetensors"], "no such file"),
        (vec!["nets"], "without model.safetensors.index.json"),
        (vec!["shards"], "does not exist"),
        (vec!["noconv.safetensors"], "no conv layer"),
        (
            vec!["net.safetensors", "-o", "net.safetensors"],
            "would overwrite the input",
        ),
        (
            vec!["net.safetensors", "-o", "taken.safetensors"],
            "already exists",
        ),
        (
            vec!["net.safetensors", "--plot", "curves.pdf"],
            ".svg or .png",
        ),
    ];
    write(&d.join("net.safetensors"), None, &small_network(Dtype::F32));
    write(
        &d.join("noconv.safetensors"),
        None,
        &small_network(Dtype::F32)[1..3],
    );
    std::fs::write(d.join("taken.safetensors"), b"precious").unwrap();
    std::fs::create_dir(d.join("nets")).unwrap();
    std::fs::create_dir(d.join("shards")).unwrap();
    std::fs::write(
        d.join("shards/model.safetensors.index.json"),
        r#"{"weight_map": {"conv1.weight": "model-00001-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let keep = [
        "net.safetensors",
        "noconv.safetensors",
        "taken.safetensors",
        "nets",
        "shards",
    ];
    for (args, expected) in cases {
        let out = cs_init(&args, d);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        no_outputs(d, &keep);
    }
    assert_eq!(
        std::fs::read(d.join("taken.safetensors")).unwrap(),
        b"precious"
    );
    let usage: [&[&str]; 5] = [
        &["net.safetensors", "--iters"],
        &["net.safetensors", "--momentum", "0.9"],
        &["net.safetensors", "--lr=-1"],
        &["net.safetensors", "--lr", "nan"],
        &["net.safetensors", "--probe-batch", "0"],
    ];
    for args in usage {
        let out = cs_init(args, d);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: usage errors exit with 2"
        );
        no_outputs(d, &keep);
    }
}

#[test]
fn plan_inspect_and_json_output() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("net.safetensors"),
        None,
        &small_network(Dtype::F32),
    );
    let out = cs_init(&["plan", "net.safetensors", "--skip-pointwise"], dir.path());
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("skipped by --skip-pointwise") && text.contains("rank 2"),
        "{text}"
    );
    let out = cs_init(&["plan", "net.safetensors", "--json"], dir.path());
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["optimized"], 3);
    assert_eq!(plan["tensors"].as_array().unwrap().len(), 6);

    let out = cs_init(&["inspect", "net.safetensors", "--json"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = inspect["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    let file = SafetensorsFile::open(&dir.path().join("net.safetensors")).unwrap();
    let expected = loss(&file, "conv2.weight");
    let got = layers[1]["loss"].as_f64().unwrap();
    assert!((got - expected).abs() < 1e-4 * expected);
    no_outputs(dir.path(), &["net.safetensors"]);

    let out = cs_init(&["check", "net.safetensors"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn new_writes_torchvision_resnet18_and_the_builtin_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = cs_init(
        &["new", "resnet18", "-o", "r18.safetensors", "--seed", "3"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let file = SafetensorsFile::open(&dir.path().join("r18.safetensors")).unwrap();
    assert_eq!(file.tensors().len(), 122);
    let t = file.tensor("layer4.1.bn2.num_batches_tracked").unwrap();
    assert_eq!((t.dtype, t.shape.clone()), (Dtype::I64, vec![]));
    assert_eq!(file.tensor("fc.weight").unwrap().shape, vec![1000, 512]);
    let out = cs_init(&["new", "resnet18", "-o", "r18.safetensors"], dir.path());
    assert_eq!(out.status.code(), Some(1));

    let out = cs_init(
        &["cnn1", "--iters", "10", "--json", "--plot", "curves.svg"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["totals"]["optimized"], 4);
    assert!(dir.path().join("cnn1.cs.safetensors").is_file());
    let svg = std::fs::read_to_string(dir.path().join("curves.svg")).unwrap();
    assert!(svg.contains("conv4.weight"));
}

/// `../shared/data/checkpoints`, present in CI and in developer checkouts, absent in user clones.
#[test]
fn real_pretrained_resnet20_and_tinygrad_checkpoints() {
    let Some(shared) = shared_checkpoints() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // ResNet-20 was converted by PyTorch (`format: pt` metadata); tinygrad's file has none.
    for (file, conv_count, format) in [
        ("resnet20-cifar10.safetensors", 19, Some("pt")),
        ("tinygrad-mnist-cnn.safetensors", 4, None),
    ] {
        let input = shared.join(file);
        let out = cs_init(&[input.to_str().unwrap(), "-o", file, "-q"], dir.path());
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        let original = SafetensorsFile::open(&input).unwrap();
        let convs: Vec<&str> = original
            .tensors()
            .iter()
            .filter(|t| t.shape.len() == 4)
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(convs.len(), conv_count, "{file}");
        let output = dir.path().join(file);
        check_output(&input, &output, &convs);
        let written = SafetensorsFile::open(&output).unwrap();
        let metadata = written.metadata().unwrap();
        assert_eq!(metadata.get("format").map(String::as_str), format, "{file}");
        assert_eq!(metadata["cs_init.iters"], "200");
    }
}

#[test]
fn pytorch_checkpoints_convert_exactly_and_optimize() {
    let Some(shared) = shared_checkpoints() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let th = shared.join("resnet20-cifar10-12fca82f.th");
    let out = cs_init(
        &[
            th.to_str().unwrap(),
            "--iters",
            "0",
            "-o",
            "plain.safetensors",
            "--json",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let notes = summary["input_notes"].to_string();
    assert!(
        notes.contains("state_dict") && notes.contains("module.") && notes.contains("best_prec1"),
        "{notes}"
    );
    // --iters 0 is an exact conversion: every tensor equals PyTorch's own conversion.
    let reference = SafetensorsFile::open(&shared.join("resnet20-cifar10.safetensors")).unwrap();
    let converted = SafetensorsFile::open(&dir.path().join("plain.safetensors")).unwrap();
    assert_eq!(reference.tensors().len(), converted.tensors().len());
    for t in reference.tensors() {
        let c = converted
            .tensor(&t.name)
            .unwrap_or_else(|| panic!("{} missing", t.name));
        assert_eq!(
            (t.dtype, &t.shape, reference.data(t)),
            (c.dtype, &c.shape, converted.data(c)),
            "{}",
            t.name
        );
    }
    // And optimized, it is the same run as on the safetensors file.
    let out = cs_init(
        &[
            th.to_str().unwrap(),
            "--iters",
            "20",
            "-o",
            "a.safetensors",
            "-q",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let st = shared.join("resnet20-cifar10.safetensors");
    let out = cs_init(
        &[
            st.to_str().unwrap(),
            "--iters",
            "20",
            "-o",
            "b.safetensors",
            "-q",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (a, b) = (
        SafetensorsFile::open(&dir.path().join("a.safetensors")).unwrap(),
        SafetensorsFile::open(&dir.path().join("b.safetensors")).unwrap(),
    );
    for t in a.tensors() {
        assert_eq!(a.data(t), b.data(b.tensor(&t.name).unwrap()), "{}", t.name);
    }

    let th56 = shared.join("resnet56-cifar10-4bfd9763.th");
    let out = cs_init(&["plan", th56.to_str().unwrap(), "--json"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["optimized"], 55);
    let names: Vec<&str> = plan["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"layer3.8.conv2.weight") && !names.iter().any(|n| n.starts_with("module."))
    );
}

#[test]
fn bad_pytorch_files_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("garbage.pth"),
        b"\x80\x02this is not a pickle at all",
    )
    .unwrap();
    std::fs::write(dir.path().join("empty.pt"), b"").unwrap();
    for name in ["garbage.pth", "empty.pt"] {
        let out = cs_init(&[name, "-o", "out.safetensors"], dir.path());
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(stderr(&out).contains(name), "{name}: {}", stderr(&out));
        no_outputs(dir.path(), &["garbage.pth", "empty.pt"]);
    }
    let Some(shared) = shared_checkpoints() else {
        return;
    };
    let th = shared.join("resnet20-cifar10-12fca82f.th");
    let out = cs_init(
        &[
            th.to_str().unwrap(),
            "--key",
            "weights",
            "-o",
            "out.safetensors",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("state_dict"), "{}", stderr(&out));
    no_outputs(dir.path(), &["garbage.pth", "empty.pt"]);
}

#[test]
fn max_shard_size_splits_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("net.safetensors");
    let tensors = small_network(Dtype::F32);
    write(&input, Some(&user_metadata()), &tensors);
    let out = cs_init(
        &[
            "net.safetensors",
            "--max-shard-size",
            "2KB",
            "--iters",
            "5",
            "-q",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let output = dir.path().join("net.cs");
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(output.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let total: usize = tensors.iter().map(|t| t.3.len()).sum();
    assert_eq!(index["metadata"]["total_size"], total);
    let weight_map = index["weight_map"].as_object().unwrap();
    assert_eq!(weight_map.len(), tensors.len());
    let shards: std::collections::BTreeSet<&str> =
        weight_map.values().map(|v| v.as_str().unwrap()).collect();
    assert!(shards.len() >= 3, "{shards:?}");
    let original = SafetensorsFile::open(&input).unwrap();
    for (name, shard) in weight_map {
        let file = SafetensorsFile::open(&output.join(shard.as_str().unwrap())).unwrap();
        assert!(
            file.tensors()
                .iter()
                .map(|t| t.end - t.begin)
                .sum::<usize>()
                <= 2000
                || file.tensors().len() == 1
        );
        let (a, b) = (original.tensor(name).unwrap(), file.tensor(name).unwrap());
        assert_eq!((a.dtype, &a.shape), (b.dtype, &b.shape));
        let conv = ["conv1.weight", "conv2.weight", "proj.weight"].contains(&name.as_str());
        assert_eq!(original.data(a) == file.data(b), !conv, "{name}");
        assert_eq!(file.metadata().unwrap()["author"], "test");
    }
    // A size the checkpoint fits in gives one file.
    let out = cs_init(
        &[
            "net.safetensors",
            "--max-shard-size",
            "1GB",
            "-o",
            "one.safetensors",
            "-q",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("one.safetensors").is_file());
}

#[test]
fn memory_stays_near_one_layer_on_a_large_checkpoint() {
    // 128 conv layers of 2.36 MB: a 302 MB checkpoint, written as 100 MB shards.
    let dir = tempfile::tempdir().unwrap();
    let layer = common::kaiming(&[256, 256, 3, 3], 0);
    let bytes = tensor_to_bytes(&layer).unwrap();
    // Streamed to disk rather than built in memory: the test itself stays small.
    let name = |i: usize| format!("block{i}.conv.weight");
    // The same layers in a one-layer file and in the whole 128-layer file: what the process
    // needs beyond one layer must not grow with the checkpoint. (The baseline itself depends on
    // the build: a `cuda` build maps the CUDA libraries, 150+ MB of it.)
    let peak_for = |file_name: &str, layers: usize| -> Option<usize> {
        let entries: Vec<HeaderEntry> = (0..layers)
            .map(|i| HeaderEntry {
                name: name(i),
                dtype: Dtype::F32,
                shape: vec![256, 256, 3, 3],
                len: bytes.len(),
            })
            .collect();
        let file = std::fs::File::create(dir.path().join(file_name)).unwrap();
        let mut writer =
            SafetensorsWriter::new(std::io::BufWriter::new(file), None, entries).unwrap();
        for i in 0..layers {
            writer.write_tensor(&name(i), &bytes).unwrap();
        }
        std::io::Write::flush(&mut writer.finish().unwrap()).unwrap();
        let args = [
            file_name,
            "--iters",
            "2",
            "--no-probe",
            "--max-shard-size",
            "100MB",
            "-q",
        ];
        let out = cs_init(&args, dir.path());
        assert!(out.status.success(), "{}", stderr(&out));
        // Measured by cs-init itself (VmHWM): a parent's ru_maxrss would also count the test
        // process's memory that a forked child holds until it executes cs-init.
        let report_name = file_name.replace(".safetensors", ".cs.report.json");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(report_name)).unwrap()).unwrap();
        report["totals"]["peak_memory_bytes"]
            .as_u64()
            .map(|p| p as usize)
    };
    let Some(baseline) = peak_for("one.safetensors", 1) else {
        eprintln!("skipped: this system does not report peak memory (VmHWM)");
        return;
    };
    let peak = peak_for("big.safetensors", 128).expect("reported for the small file");
    let layer_bytes = bytes.len();
    eprintln!(
        "peak RSS {} MB for a {} MB checkpoint of {:.1} MB layers ({} MB for one layer)",
        peak >> 20,
        (128 * layer_bytes) >> 20,
        layer_bytes as f64 / 1e6,
        baseline >> 20
    );
    assert!(
        peak < baseline + 16 * layer_bytes,
        "peak RSS {peak} bytes, {baseline} for one layer, for {layer_bytes}-byte layers"
    );
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("big.cs/model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(index["weight_map"].as_object().unwrap().len(), 128);
    assert!(dir
        .path()
        .join("big.cs/model-00004-of-00004.safetensors")
        .is_file());
}

#[test]
fn outputs_never_replace_inputs_through_links_or_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        &d.join("real.safetensors"),
        None,
        &small_network(Dtype::F32),
    );
    std::os::unix::fs::symlink("real.safetensors", d.join("link.safetensors")).unwrap();
    let before = std::fs::read(d.join("real.safetensors")).unwrap();
    let out = cs_init(
        &["link.safetensors", "-o", "real.safetensors", "--force"],
        d,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("overwrite the input"));
    assert_eq!(std::fs::read(d.join("real.safetensors")).unwrap(), before);

    // A sharded checkpoint given as `.` or by its bare index name, from inside its directory.
    let model = d.join("model");
    std::fs::create_dir(&model).unwrap();
    let tensors = small_network(Dtype::F32);
    write(&model.join("a.safetensors"), None, &tensors[..3]);
    write(&model.join("b.safetensors"), None, &tensors[3..]);
    let map: BTreeMap<&str, &str> = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                t.0.as_str(),
                if i < 3 {
                    "a.safetensors"
                } else {
                    "b.safetensors"
                },
            )
        })
        .collect();
    let index = serde_json::json!({"weight_map": map}).to_string();
    std::fs::write(model.join("model.safetensors.index.json"), &index).unwrap();
    let shard = std::fs::read(model.join("a.safetensors")).unwrap();
    for input in [".", "model.safetensors.index.json"] {
        let out = cs_init(
            &[input, "--report", "a.safetensors", "--force", "-q"],
            &model,
        );
        assert_eq!(out.status.code(), Some(1), "{input}: {}", stderr(&out));
        assert_eq!(std::fs::read(model.join("a.safetensors")).unwrap(), shard);
    }
    let out = cs_init(
        &[
            "model.safetensors.index.json",
            "-o",
            "../out",
            "--iters",
            "3",
            "-q",
        ],
        &model,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Merged into one file, a sharded input gets a .safetensors name.
    let out = cs_init(
        &["model", "--max-shard-size", "1GB", "--iters", "3", "-q"],
        d,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(d.join("model.cs.safetensors").is_file());
}

#[test]
fn an_index_and_its_shards_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    let tensors = small_network(Dtype::F32);
    // b holds a second conv1.weight besides the conv2.weight the index gives it.
    write(&model.join("a.safetensors"), None, &tensors[..3]);
    write(
        &model.join("b.safetensors"),
        None,
        &[tensors[0].clone(), tensors[3].clone()],
    );
    let index = serde_json::json!({"weight_map": {
        "conv1.weight": "a.safetensors",
        "bn1.weight": "a.safetensors",
        "bn1.num_batches_tracked": "a.safetensors",
        "conv2.weight": "b.safetensors"
    }});
    std::fs::write(
        model.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    for command in [
        vec!["model"],
        vec!["plan", "model"],
        vec!["inspect", "model"],
    ] {
        let out = cs_init(&command, dir.path());
        assert_eq!(out.status.code(), Some(1), "{command:?}");
        assert!(
            stderr(&out).contains("b.safetensors"),
            "{command:?}: {}",
            stderr(&out)
        );
    }
    no_outputs(dir.path(), &["model"]);
}

#[test]
fn half_precision_overflow_is_a_divergence_and_reports_fail_early() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        &d.join("half.safetensors"),
        None,
        &small_network(Dtype::F16),
    );
    let args = [
        "half.safetensors",
        "--include",
        "^conv1",
        "--optimizer",
        "sgd",
        "--lr",
        "10",
        "--iters",
        "2",
        "-q",
    ];
    let out = cs_init(&args, d);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    check_output(
        &d.join("half.safetensors"),
        &d.join("half.cs.safetensors"),
        &[],
    );

    for flag in ["--report", "--plot"] {
        let out = cs_init(
            &[
                "half.safetensors",
                "-o",
                "x.safetensors",
                flag,
                "missing/dir/r.svg",
            ],
            d,
        );
        assert_eq!(out.status.code(), Some(1), "{flag}");
        assert!(
            !d.join("x.safetensors").exists(),
            "{flag}: the checkpoint was written"
        );
    }

    let mut nan = small_network(Dtype::F32);
    nan[0].3[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    write(&d.join("nan.safetensors"), None, &nan);
    let out = cs_init(&["check", "nan.safetensors", "-q"], d);
    assert_eq!(out.status.code(), Some(3), "check must not pass NaN layers");
}

#[test]
fn ctrl_c_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("net.safetensors"),
        None,
        &small_network(Dtype::F32),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_cs-init"))
        .args(["net.safetensors", "--iters", "100000000", "-q"])
        .args(["--plot", "curves.png"])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the temporary files of the report, the plot and the checkpoint exist, so the
    // interrupt lands mid-run with all three pending.
    let started = std::time::Instant::now();
    let partial = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".partial")
            })
            .count()
    };
    while partial() < 3 {
        assert!(
            started.elapsed().as_secs() < 60,
            "no temporary output appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: sending SIGINT to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"));
    no_outputs(dir.path(), &["net.safetensors"]);
}

/// The totals of a report: the mean feature-map |cos| before and after is the mean over the
/// layers' own figures, and the warning is printed (once, with the norm ratio) exactly when L_CS
/// fell while that mean did not.
fn check_similarity_totals(args: &[&str], expect_warning: bool) {
    let dir = tempfile::tempdir().unwrap();
    let out = cs_init(args, dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("net.report.json")).unwrap())
            .unwrap();
    let totals = &report["totals"];
    let layers = report["layers"].as_array().unwrap();
    let mean = |key: &str| {
        let values: Vec<f64> = layers.iter().map(|l| l[key].as_f64().unwrap()).collect();
        values.iter().sum::<f64>() / values.len() as f64
    };
    let (before, after) = (mean("feature_cosine_before"), mean("feature_cosine_after"));
    let norm_ratios: Vec<f64> = layers
        .iter()
        .map(|l| l["norm_ratio"]["mean"].as_f64().unwrap())
        .collect();
    let norm_ratio = norm_ratios.iter().sum::<f64>() / norm_ratios.len() as f64;
    assert_eq!(totals["feature_cosine_layers"], layers.len());
    for (key, value) in [
        ("feature_cosine_before", before),
        ("feature_cosine_after", after),
        ("norm_ratio_mean", norm_ratio),
    ] {
        assert!(
            (totals[key].as_f64().unwrap() - value).abs() < 1e-12,
            "{key}: {totals}"
        );
    }
    let loss_fell = totals["loss_after"].as_f64() < totals["loss_before"].as_f64();
    assert_eq!(loss_fell && after >= before, expect_warning, "{totals}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "mean feature-map |cos| (probe) {before:.3} -> {after:.3} over {} layers; mean filter norm ratio {norm_ratio:.3}",
            layers.len()
        )),
        "{stdout}"
    );
    let err = stderr(&out);
    let warnings: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix("cs-init: warning: "))
        .collect();
    assert_eq!(totals["warnings"].as_array().unwrap().len(), warnings.len());
    if expect_warning {
        assert_eq!(warnings.len(), 1, "{err}");
        assert!(
            warnings[0].contains(&format!("{before:.3} -> {after:.3}"))
                && warnings[0].contains(&format!("mean filter norm ratio {norm_ratio:.3}")),
            "{}",
            warnings[0]
        );
        assert_eq!(totals["warnings"][0], warnings[0]);
    } else {
        assert!(warnings.is_empty(), "{err}");
    }
}

#[test]
fn warns_when_l_cs_falls_and_the_feature_maps_do_not() {
    // Measured (docs/reproduction.md, "Does minimizing L_CS decorrelate feature maps?"): on a
    // fresh CNN1 the defaults cut L_CS by 99.5 % by shrinking the filters to 0.18 of their norm,
    // and the probe's mean |cos| rises, 0.410 -> 0.418.
    check_similarity_totals(&["builtin:cnn1", "-o", "net.safetensors"], true);
}

#[test]
fn no_warning_when_the_feature_maps_become_less_alike() {
    // With lr 0.1 the same network's mean |cos| falls, 0.410 -> 0.402.
    check_similarity_totals(
        &["builtin:cnn1", "-o", "net.safetensors", "--lr", "0.1"],
        false,
    );
}

#[test]
fn without_the_probe_the_totals_have_no_feature_means_and_no_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = cs_init(
        &["builtin:cnn1", "-o", "net.safetensors", "--no-probe"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("net.report.json")).unwrap())
            .unwrap();
    let totals = &report["totals"];
    assert!(totals["feature_cosine_before"].is_null(), "{totals}");
    assert!(totals["feature_cosine_after"].is_null(), "{totals}");
    assert_eq!(totals["feature_cosine_layers"], 0);
    assert!(totals["norm_ratio_mean"].is_number());
    assert_eq!(totals["warnings"], serde_json::json!([]));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("mean feature-map |cos|"));
}
