//! The pickle forms real checkpoints take, in files torch.save itself wrote
//! (tests/fixtures/pytorch/make.py says how; the tests need neither Python nor torch).

use std::path::{Path, PathBuf};

use cs_init::checkpoint::{
    read_pth, CheckpointError, Dtype, Input, PthCheckpoint, PthTensor, ResolveOptions,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pytorch")
        .join(name)
}

fn read(name: &str) -> PthCheckpoint {
    read_pth(&fixture(name), None, None).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// make.py's `ramp(shape, start)`: start, start+1, ... as f32 bytes.
fn ramp(shape: &[usize], start: f32) -> PthTensor {
    let n: usize = shape.iter().product();
    PthTensor {
        name: String::new(),
        dtype: Dtype::F32,
        shape: shape.to_vec(),
        data: (0..n)
            .flat_map(|i| (start + i as f32).to_le_bytes())
            .collect(),
    }
}

fn named(name: &str, tensor: PthTensor) -> PthTensor {
    PthTensor {
        name: name.into(),
        ..tensor
    }
}

fn names(checkpoint: &PthCheckpoint) -> Vec<&str> {
    checkpoint.tensors.iter().map(|t| t.name.as_str()).collect()
}

fn tensor<'a>(checkpoint: &'a PthCheckpoint, name: &str) -> &'a PthTensor {
    checkpoint
        .tensors
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tensor {name} among {:?}", names(checkpoint)))
}

/// make.py's `pairs()`.
fn pairs() -> Vec<PthTensor> {
    vec![
        named("conv.weight", ramp(&[2, 1, 2, 2], 0.)),
        named("conv.bias", ramp(&[2], 100.)),
        named("fc.weight", ramp(&[3, 2], 200.)),
    ]
}

fn notes(name: &str) -> Vec<String> {
    let input = Input::resolve(fixture(name).to_str().unwrap(), &ResolveOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    input.open(0).unwrap().notes
}

#[test]
fn ordered_dict_from_a_list_of_key_value_lists() {
    // Python 2's OrderedDict.__reduce__: OrderedDict([[key, tensor], ...]), its `_metadata` set
    // by BUILD when there is one; the legacy file is what PyTorch under Python 2 wrote.
    for name in [
        "ordered_dict_lists.pth",
        "ordered_dict_lists_metadata.pth",
        "ordered_dict_lists_metadata_legacy.pth",
    ] {
        let checkpoint = read(name);
        assert_eq!(checkpoint.tensors, pairs(), "{name}");
        assert_eq!(checkpoint.key, None, "{name}");
        assert!(
            checkpoint.dropped.is_empty(),
            "{name}: {:?}",
            checkpoint.dropped
        );
    }
}

#[test]
fn ordered_dict_from_a_list_of_key_value_tuples() {
    for name in [
        "ordered_dict_tuples.pth",
        "ordered_dict_tuples_metadata.pth",
    ] {
        let checkpoint = read(name);
        assert_eq!(checkpoint.tensors, pairs(), "{name}");
        assert!(
            checkpoint.dropped.is_empty(),
            "{name}: {:?}",
            checkpoint.dropped
        );
    }
}

#[test]
fn parameters_read_as_their_tensors() {
    // nn.Parameter pickles as torch._utils._rebuild_parameter(tensor, requires_grad, hooks).
    let checkpoint = read("parameters.pth");
    assert_eq!(checkpoint.tensors, pairs());
}

#[test]
fn strided_views_and_offsets_into_one_shared_storage() {
    // make.py: base = ramp((4, 12), 0), and six views of its storage.
    let base = |r: usize, c: usize| (r * 12 + c) as f32;
    let tensor_of = |name: &str, shape: &[usize], values: Vec<f32>| PthTensor {
        name: name.into(),
        dtype: Dtype::F32,
        shape: shape.to_vec(),
        data: values.into_iter().flat_map(f32::to_le_bytes).collect(),
    };
    let grid = |rows: usize, cols: usize, at: &dyn Fn(usize, usize) -> f32| {
        (0..rows)
            .flat_map(|r| (0..cols).map(move |c| (r, c)))
            .map(|(r, c)| at(r, c))
            .collect::<Vec<f32>>()
    };
    let expected = vec![
        tensor_of("columns", &[4, 3], grid(4, 3, &|r, c| base(r, 2 + c))),
        tensor_of("transposed", &[12, 4], grid(12, 4, &|r, c| base(c, r))),
        tensor_of("row", &[12], grid(1, 12, &|_, c| base(1, c))),
        tensor_of("strided", &[2, 4], grid(2, 4, &|r, c| base(2 * r, 3 * c))),
        tensor_of(
            "kernel",
            &[2, 3, 2, 2],
            (24..48).map(|v| v as f32).collect(),
        ),
        tensor_of("whole", &[4, 12], (0..48).map(|v| v as f32).collect()),
    ];
    for name in ["shared_views.pth", "shared_views_legacy.pth"] {
        assert_eq!(read(name).tensors, expected, "{name}");
    }
}

/// make.py's `Net` state dict: parameters are `ramp(shape, 1000 * i)` in parameters() order.
fn assert_net_state(checkpoint: &PthCheckpoint, prefix: &str) {
    let expected_names: Vec<String> = [
        "conv1.weight",
        "conv1.bias",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
        "bn1.num_batches_tracked",
        "conv2.weight",
        "conv2.bias",
        "fc.weight",
        "fc.bias",
    ]
    .iter()
    .map(|n| format!("{prefix}{n}"))
    .collect();
    assert_eq!(names(checkpoint), expected_names);
    let parameters = [
        ("conv1.weight", &[4, 1, 3, 3][..]),
        ("conv1.bias", &[4]),
        ("bn1.weight", &[4]),
        ("bn1.bias", &[4]),
        ("conv2.weight", &[4, 1, 3, 3]),
        ("conv2.bias", &[4]),
        ("fc.weight", &[2, 4]),
        ("fc.bias", &[2]),
    ];
    for (i, (name, shape)) in parameters.into_iter().enumerate() {
        let name = format!("{prefix}{name}");
        assert_eq!(
            *tensor(checkpoint, &name),
            named(&name, ramp(shape, 1000. * i as f32)),
        );
    }
    // One training step was taken.
    let tracked = tensor(checkpoint, &format!("{prefix}bn1.num_batches_tracked"));
    assert_eq!(
        (
            tracked.dtype,
            tracked.shape.as_slice(),
            tracked.data.as_slice()
        ),
        (Dtype::I64, &[][..], &1i64.to_le_bytes()[..])
    );
}

#[test]
fn training_checkpoints_keep_the_tensors_and_list_what_was_dropped() {
    for name in ["training.pth", "training_legacy.pth"] {
        let checkpoint = read(name);
        assert_eq!(checkpoint.key.as_deref(), Some("model_state_dict"));
        assert_net_state(&checkpoint, "");
        assert_eq!(checkpoint.shared_prefix, None);
        let dropped: Vec<(&str, &str)> = checkpoint
            .dropped
            .iter()
            .map(|(k, d)| (k.as_str(), d.as_str()))
            .collect();
        assert_eq!(
            dropped,
            [
                ("epoch", "int 7"),
                ("best_acc", "numpy._core.multiarray.scalar object"),
                ("lr", "numpy._core.multiarray.scalar object"),
                ("args", "argparse.Namespace object"),
                ("input_size", "torch.Size object"),
                ("optimizer_state_dict", "dict with 2 entries"),
                ("history", "dict with 2 entries"),
                ("classes", "list of 2 items"),
                ("seen", "__builtin__.set object"),
                ("spectrum", "tensor of torch.ComplexDoubleStorage [2]"),
                ("quantized", "torch._utils._rebuild_qtensor object"),
            ],
            "{name}"
        );
        let notes = notes(name);
        assert_eq!(
            notes[0],
            "state dict read from the entry 'model_state_dict'"
        );
        for (key, what) in dropped {
            let note = format!("non-tensor entry '{key}' ({what}) dropped");
            assert!(
                notes.contains(&note),
                "{name}: no note '{note}' in {notes:?}"
            );
        }
    }
}

#[test]
fn lightning_checkpoints_are_read_and_their_prefix_named() {
    let checkpoint = read("lightning.ckpt");
    assert_eq!(checkpoint.key.as_deref(), Some("state_dict"));
    assert_net_state(&checkpoint, "model.");
    assert_eq!(checkpoint.stripped_prefix, None);
    assert_eq!(checkpoint.shared_prefix.as_deref(), Some("model."));
    let dropped: Vec<&str> = checkpoint.dropped.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        dropped,
        [
            "epoch",
            "global_step",
            "pytorch-lightning_version",
            "loops",
            "callbacks",
            "optimizer_states",
            "lr_schedulers",
            "hparams_name",
            "hyper_parameters",
        ]
    );
    let notes = notes("lightning.ckpt");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("every tensor name starts with 'model.'")
                && n.contains("--strip-prefix model.")),
        "{notes:?}"
    );

    let stripped = read_pth(&fixture("lightning.ckpt"), None, Some("model.")).unwrap();
    assert_net_state(&stripped, "");
    assert_eq!(stripped.stripped_prefix.as_deref(), Some("model."));
    assert_eq!(stripped.shared_prefix, None);
}

#[test]
fn a_whole_pickled_module_is_refused_with_what_to_do() {
    let path = fixture("whole_model.pth");
    let e = match read_pth(&path, None, None) {
        Ok(c) => panic!("read {} tensors from a pickled module", c.tensors.len()),
        // Not a state dict: the file reads, what it holds is the wrong thing.
        Err(e @ CheckpointError::StateDict { .. }) => e.to_string(),
        Err(e) => panic!("unexpected error kind: {e}"),
    };
    for part in [
        "whole_model.pth",
        "__main__.Net object",
        "whole pickled model",
        "torch.save(model.state_dict(), 'weights.pth')",
    ] {
        assert!(e.contains(part), "'{part}' missing from: {e}");
    }
}

#[test]
fn dtypes_of_untyped_storages() {
    // torch >= 2.1: _rebuild_tensor_v3(UntypedStorage, ..., dtype) for float8 and uint16.
    let checkpoint = read("untyped_dtypes.pth");
    let t = |name: &str, dtype, shape: &[usize], data: Vec<u8>| PthTensor {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
        data,
    };
    assert_eq!(
        checkpoint.tensors,
        [
            // 0, 1, 2, 3 in float8 e4m3fn: sign 0, exponent bias 7, 3 mantissa bits.
            t("f8", Dtype::F8_E4M3, &[4], vec![0x00, 0x38, 0x40, 0x44]),
            t(
                "u16",
                Dtype::U16,
                &[4],
                [0u16, 300, 600, 900]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect()
            ),
            named("w", ramp(&[2, 2], 0.)),
        ]
    );
}
