//! The built-in architectures against PyTorch's definitions: names, shapes, order, dtypes,
//! parameter counts, and the initial distributions.

use candle_core::{DType, Tensor};
use cs_init::arch::Architecture;
use cs_init::checkpoint::SafetensorsFile;

fn is_buffer(name: &str) -> bool {
    name.ends_with(".running_mean")
        || name.ends_with(".running_var")
        || name.ends_with(".num_batches_tracked")
}

fn parameter_count(arch: Architecture) -> usize {
    arch.tensors(0)
        .unwrap()
        .iter()
        .filter(|(name, _)| !is_buffer(name))
        .map(|(_, t)| t.elem_count())
        .sum()
}

fn find(tensors: &[(String, Tensor)], name: &str) -> Tensor {
    tensors
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
        .1
        .clone()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn parameter_counts_match_pytorch() {
    assert_eq!(parameter_count(Architecture::Cnn1), 118_858);
    assert_eq!(parameter_count(Architecture::Cnn2), 458_890);
    assert_eq!(parameter_count(Architecture::Resnet18), 11_689_512);
    assert_eq!(parameter_count(Architecture::Resnet50), 25_557_032);
}

/// Transcribed from torchvision's `resnet18()`: every conv with the BatchNorm that follows
/// it, in module registration order.
const RESNET18_CONVS: [(&str, &str, [usize; 4]); 20] = [
    ("conv1.weight", "bn1", [64, 3, 7, 7]),
    ("layer1.0.conv1.weight", "layer1.0.bn1", [64, 64, 3, 3]),
    ("layer1.0.conv2.weight", "layer1.0.bn2", [64, 64, 3, 3]),
    ("layer1.1.conv1.weight", "layer1.1.bn1", [64, 64, 3, 3]),
    ("layer1.1.conv2.weight", "layer1.1.bn2", [64, 64, 3, 3]),
    ("layer2.0.conv1.weight", "layer2.0.bn1", [128, 64, 3, 3]),
    ("layer2.0.conv2.weight", "layer2.0.bn2", [128, 128, 3, 3]),
    (
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1",
        [128, 64, 1, 1],
    ),
    ("layer2.1.conv1.weight", "layer2.1.bn1", [128, 128, 3, 3]),
    ("layer2.1.conv2.weight", "layer2.1.bn2", [128, 128, 3, 3]),
    ("layer3.0.conv1.weight", "layer3.0.bn1", [256, 128, 3, 3]),
    ("layer3.0.conv2.weight", "layer3.0.bn2", [256, 256, 3, 3]),
    (
        "layer3.0.downsample.0.weight",
        "layer3.0.downsample.1",
        [256, 128, 1, 1],
    ),
    ("layer3.1.conv1.weight", "layer3.1.bn1", [256, 256, 3, 3]),
    ("layer3.1.conv2.weight", "layer3.1.bn2", [256, 256, 3, 3]),
    ("layer4.0.conv1.weight", "layer4.0.bn1", [512, 256, 3, 3]),
    ("layer4.0.conv2.weight", "layer4.0.bn2", [512, 512, 3, 3]),
    (
        "layer4.0.downsample.0.weight",
        "layer4.0.downsample.1",
        [512, 256, 1, 1],
    ),
    ("layer4.1.conv1.weight", "layer4.1.bn1", [512, 512, 3, 3]),
    ("layer4.1.conv2.weight", "layer4.1.bn2", [512, 512, 3, 3]),
];

#[test]
fn resnet18_names_and_shapes_match_torchvision() {
    let mut expected: Vec<(String, Vec<usize>)> = Vec::new();
    for (conv, bn, shape) in RESNET18_CONVS {
        expected.push((conv.to_string(), shape.to_vec()));
        for buffer in ["weight", "bias", "running_mean", "running_var"] {
            expected.push((format!("{bn}.{buffer}"), vec![shape[0]]));
        }
        expected.push((format!("{bn}.num_batches_tracked"), vec![]));
    }
    expected.push(("fc.weight".to_string(), vec![1000, 512]));
    expected.push(("fc.bias".to_string(), vec![1000]));

    let actual: Vec<(String, Vec<usize>)> = Architecture::Resnet18
        .tensors(1)
        .unwrap()
        .into_iter()
        .map(|(name, t)| (name, t.dims().to_vec()))
        .collect();
    assert_eq!(actual.len(), 122);
    assert_eq!(actual, expected);
}

/// Transcribed from torchvision's `resnet50()` (`Bottleneck`, layers [3, 4, 6, 3], expansion
/// 4): every conv with the BatchNorm that follows it, in module registration order. In
/// v1.5 the stride sits on conv2, the 3x3, which leaves every shape as it is.
const RESNET50_CONVS: [(&str, &str, [usize; 4]); 53] = [
    ("conv1.weight", "bn1", [64, 3, 7, 7]),
    ("layer1.0.conv1.weight", "layer1.0.bn1", [64, 64, 1, 1]),
    ("layer1.0.conv2.weight", "layer1.0.bn2", [64, 64, 3, 3]),
    ("layer1.0.conv3.weight", "layer1.0.bn3", [256, 64, 1, 1]),
    (
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1",
        [256, 64, 1, 1],
    ),
    ("layer1.1.conv1.weight", "layer1.1.bn1", [64, 256, 1, 1]),
    ("layer1.1.conv2.weight", "layer1.1.bn2", [64, 64, 3, 3]),
    ("layer1.1.conv3.weight", "layer1.1.bn3", [256, 64, 1, 1]),
    ("layer1.2.conv1.weight", "layer1.2.bn1", [64, 256, 1, 1]),
    ("layer1.2.conv2.weight", "layer1.2.bn2", [64, 64, 3, 3]),
    ("layer1.2.conv3.weight", "layer1.2.bn3", [256, 64, 1, 1]),
    ("layer2.0.conv1.weight", "layer2.0.bn1", [128, 256, 1, 1]),
    ("layer2.0.conv2.weight", "layer2.0.bn2", [128, 128, 3, 3]),
    ("layer2.0.conv3.weight", "layer2.0.bn3", [512, 128, 1, 1]),
    (
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1",
        [512, 256, 1, 1],
    ),
    ("layer2.1.conv1.weight", "layer2.1.bn1", [128, 512, 1, 1]),
    ("layer2.1.conv2.weight", "layer2.1.bn2", [128, 128, 3, 3]),
    ("layer2.1.conv3.weight", "layer2.1.bn3", [512, 128, 1, 1]),
    ("layer2.2.conv1.weight", "layer2.2.bn1", [128, 512, 1, 1]),
    ("layer2.2.conv2.weight", "layer2.2.bn2", [128, 128, 3, 3]),
    ("layer2.2.conv3.weight", "layer2.2.bn3", [512, 128, 1, 1]),
    ("layer2.3.conv1.weight", "layer2.3.bn1", [128, 512, 1, 1]),
    ("layer2.3.conv2.weight", "layer2.3.bn2", [128, 128, 3, 3]),
    ("layer2.3.conv3.weight", "layer2.3.bn3", [512, 128, 1, 1]),
    ("layer3.0.conv1.weight", "layer3.0.bn1", [256, 512, 1, 1]),
    ("layer3.0.conv2.weight", "layer3.0.bn2", [256, 256, 3, 3]),
    ("layer3.0.conv3.weight", "layer3.0.bn3", [1024, 256, 1, 1]),
    (
        "layer3.0.downsample.0.weight",
        "layer3.0.downsample.1",
        [1024, 512, 1, 1],
    ),
    ("layer3.1.conv1.weight", "layer3.1.bn1", [256, 1024, 1, 1]),
    ("layer3.1.conv2.weight", "layer3.1.bn2", [256, 256, 3, 3]),
    ("layer3.1.conv3.weight", "layer3.1.bn3", [1024, 256, 1, 1]),
    ("layer3.2.conv1.weight", "layer3.2.bn1", [256, 1024, 1, 1]),
    ("layer3.2.conv2.weight", "layer3.2.bn2", [256, 256, 3, 3]),
    ("layer3.2.conv3.weight", "layer3.2.bn3", [1024, 256, 1, 1]),
    ("layer3.3.conv1.weight", "layer3.3.bn1", [256, 1024, 1, 1]),
    ("layer3.3.conv2.weight", "layer3.3.bn2", [256, 256, 3, 3]),
    ("layer3.3.conv3.weight", "layer3.3.bn3", [1024, 256, 1, 1]),
    ("layer3.4.conv1.weight", "layer3.4.bn1", [256, 1024, 1, 1]),
    ("layer3.4.conv2.weight", "layer3.4.bn2", [256, 256, 3, 3]),
    ("layer3.4.conv3.weight", "layer3.4.bn3", [1024, 256, 1, 1]),
    ("layer3.5.conv1.weight", "layer3.5.bn1", [256, 1024, 1, 1]),
    ("layer3.5.conv2.weight", "layer3.5.bn2", [256, 256, 3, 3]),
    ("layer3.5.conv3.weight", "layer3.5.bn3", [1024, 256, 1, 1]),
    ("layer4.0.conv1.weight", "layer4.0.bn1", [512, 1024, 1, 1]),
    ("layer4.0.conv2.weight", "layer4.0.bn2", [512, 512, 3, 3]),
    ("layer4.0.conv3.weight", "layer4.0.bn3", [2048, 512, 1, 1]),
    (
        "layer4.0.downsample.0.weight",
        "layer4.0.downsample.1",
        [2048, 1024, 1, 1],
    ),
    ("layer4.1.conv1.weight", "layer4.1.bn1", [512, 2048, 1, 1]),
    ("layer4.1.conv2.weight", "layer4.1.bn2", [512, 512, 3, 3]),
    ("layer4.1.conv3.weight", "layer4.1.bn3", [2048, 512, 1, 1]),
    ("layer4.2.conv1.weight", "layer4.2.bn1", [512, 2048, 1, 1]),
    ("layer4.2.conv2.weight", "layer4.2.bn2", [512, 512, 3, 3]),
    ("layer4.2.conv3.weight", "layer4.2.bn3", [2048, 512, 1, 1]),
];

#[test]
fn resnet50_names_and_shapes_match_torchvision() {
    let mut expected: Vec<(String, Vec<usize>)> = Vec::new();
    for (conv, bn, shape) in RESNET50_CONVS {
        expected.push((conv.to_string(), shape.to_vec()));
        for buffer in ["weight", "bias", "running_mean", "running_var"] {
            expected.push((format!("{bn}.{buffer}"), vec![shape[0]]));
        }
        expected.push((format!("{bn}.num_batches_tracked"), vec![]));
    }
    expected.push(("fc.weight".to_string(), vec![1000, 2048]));
    expected.push(("fc.bias".to_string(), vec![1000]));

    let tensors = Architecture::Resnet50.tensors(1).unwrap();
    let actual: Vec<(String, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| (name.clone(), t.dims().to_vec()))
        .collect();
    assert_eq!(actual.len(), 320);
    assert_eq!(actual, expected);

    // The projection shortcuts: one per layer, on its first block only.
    let downsample: Vec<(&str, Vec<usize>)> = tensors
        .iter()
        .filter(|(name, _)| name.contains("downsample") && name.ends_with(".weight"))
        .map(|(name, t)| (name.as_str(), t.dims().to_vec()))
        .collect();
    assert_eq!(
        downsample,
        [
            ("layer1.0.downsample.0.weight", vec![256, 64, 1, 1]),
            ("layer1.0.downsample.1.weight", vec![256]),
            ("layer2.0.downsample.0.weight", vec![512, 256, 1, 1]),
            ("layer2.0.downsample.1.weight", vec![512]),
            ("layer3.0.downsample.0.weight", vec![1024, 512, 1, 1]),
            ("layer3.0.downsample.1.weight", vec![1024]),
            ("layer4.0.downsample.0.weight", vec![2048, 1024, 1, 1]),
            ("layer4.0.downsample.1.weight", vec![2048]),
        ]
    );
}

#[test]
fn conv_weight_shapes_are_the_transcribed_convs() {
    let r18: Vec<Vec<usize>> = RESNET18_CONVS.iter().map(|c| c.2.to_vec()).collect();
    assert_eq!(Architecture::Resnet18.conv_weight_shapes(), r18);
    let r50: Vec<Vec<usize>> = RESNET50_CONVS.iter().map(|c| c.2.to_vec()).collect();
    let shapes = Architecture::Resnet50.conv_weight_shapes();
    assert_eq!(shapes.len(), 53);
    assert_eq!(shapes, r50);
}

#[test]
fn cnn_names_and_shapes() {
    for (arch, c) in [(Architecture::Cnn1, 64), (Architecture::Cnn2, 128)] {
        let actual: Vec<(String, Vec<usize>)> = arch
            .tensors(1)
            .unwrap()
            .into_iter()
            .map(|(name, t)| (name, t.dims().to_vec()))
            .collect();
        let mut expected = Vec::new();
        for (i, cin) in [(1, 3), (2, c), (3, c), (4, c)] {
            expected.push((format!("conv{i}.weight"), vec![c, cin, 3, 3]));
            expected.push((format!("conv{i}.bias"), vec![c]));
            expected.push((format!("bn{i}.weight"), vec![c]));
            expected.push((format!("bn{i}.bias"), vec![c]));
            expected.push((format!("bn{i}.running_mean"), vec![c]));
            expected.push((format!("bn{i}.running_var"), vec![c]));
            expected.push((format!("bn{i}.num_batches_tracked"), vec![]));
        }
        expected.push(("fc.weight".to_string(), vec![10, 9 * c]));
        expected.push(("fc.bias".to_string(), vec![10]));
        assert_eq!(actual, expected, "{arch}");
    }
}

#[test]
fn dtypes_and_batch_norm_state() {
    for arch in Architecture::ALL {
        for (name, t) in arch.tensors(3).unwrap() {
            assert!(t.device().is_cpu(), "{arch} {name}");
            if name.ends_with(".num_batches_tracked") {
                assert_eq!(t.dtype(), DType::I64, "{arch} {name}");
                assert_eq!(t.rank(), 0, "{arch} {name}");
                assert_eq!(t.to_scalar::<i64>().unwrap(), 0, "{arch} {name}");
                continue;
            }
            assert_eq!(t.dtype(), DType::F32, "{arch} {name}");
            let is_bn =
                name.starts_with("bn") || name.contains(".bn") || name.contains("downsample.1");
            if !is_bn {
                continue;
            }
            let expected = if name.ends_with(".weight") || name.ends_with(".running_var") {
                1.0
            } else {
                0.0
            };
            assert!(
                values(&t).iter().all(|&v| v == expected),
                "{arch} {name} is not all {expected}"
            );
        }
    }
}

#[test]
fn resnet18_convs_are_kaiming_normal_fan_out() {
    let tensors = Architecture::Resnet18.tensors(7).unwrap();
    for (name, fan_out) in [
        ("layer1.0.conv1.weight", 64 * 9),
        ("layer3.1.conv2.weight", 256 * 9),
        ("conv1.weight", 64 * 49),
    ] {
        let v = values(&find(&tensors, name));
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let expected = (2.0 / fan_out as f64).sqrt();
        assert!(
            (var.sqrt() / expected - 1.0).abs() < 0.05,
            "{name}: std {} vs {expected}",
            var.sqrt()
        );
        assert!(mean.abs() < 0.05 * expected, "{name}: mean {mean}");
    }
}

#[test]
fn resnet50_convs_are_kaiming_normal_fan_out() {
    let tensors = Architecture::Resnet50.tensors(7).unwrap();
    for (name, fan_out) in [
        ("conv1.weight", 64 * 49),
        ("layer1.0.conv1.weight", 64),
        ("layer2.3.conv2.weight", 128 * 9),
        ("layer3.5.conv3.weight", 1024),
        ("layer4.0.downsample.0.weight", 2048),
    ] {
        let v = values(&find(&tensors, name));
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let expected = (2.0 / fan_out as f64).sqrt();
        assert!(
            (var.sqrt() / expected - 1.0).abs() < 0.05,
            "{name}: std {} vs {expected}",
            var.sqrt()
        );
        assert!(mean.abs() < 0.05 * expected, "{name}: mean {mean}");
    }
}

#[test]
fn default_init_is_uniform_within_one_over_sqrt_fan_in() {
    let cnn1 = Architecture::Cnn1.tensors(11).unwrap();
    let resnet = Architecture::Resnet18.tensors(11).unwrap();
    let resnet50 = Architecture::Resnet50.tensors(11).unwrap();
    for (tensors, name, fan_in) in [
        (&cnn1, "conv1.weight", 3 * 9),
        (&cnn1, "conv2.weight", 64 * 9),
        (&cnn1, "conv2.bias", 64 * 9),
        (&cnn1, "fc.weight", 576),
        (&resnet, "fc.weight", 512),
        (&resnet, "fc.bias", 512),
        (&resnet50, "fc.weight", 2048),
        (&resnet50, "fc.bias", 2048),
    ] {
        let v = values(&find(tensors, name));
        let bound = 1.0 / (fan_in as f64).sqrt();
        let max = v.iter().map(|x| x.abs() as f64).fold(0.0, f64::max);
        assert!(max <= bound * (1.0 + 1e-6), "{name}: max {max} > {bound}");
        // All n draws stay below bound * (1 - 20/n) with probability about e^-20.
        let floor = bound * (1.0 - 20.0 / v.len() as f64);
        assert!(max >= floor, "{name}: max {max} far below {bound}");
    }
}

#[test]
fn same_seed_same_tensors_different_seed_different_tensors() {
    for arch in Architecture::ALL {
        let a = arch.tensors(42).unwrap();
        let b = arch.tensors(42).unwrap();
        let c = arch.tensors(43).unwrap();
        let mut differs = false;
        for ((name, ta), ((_, tb), (_, tc))) in a.iter().zip(b.iter().zip(&c)) {
            if ta.dtype() != DType::F32 {
                continue;
            }
            assert_eq!(values(ta), values(tb), "{arch} {name}");
            differs |= values(ta) != values(tc);
        }
        assert!(differs, "{arch}: seeds 42 and 43 give the same tensors");
    }
}

#[test]
fn names_round_trip_and_unknown_names_list_the_valid_ones() {
    for arch in Architecture::ALL {
        assert_eq!(arch.to_string(), arch.name());
        assert_eq!(arch.name().parse::<Architecture>(), Ok(arch));
        assert!(!arch.description().is_empty());
        assert!(!arch.description().contains('\n'));
    }
    let err = "resnet34".parse::<Architecture>().unwrap_err().to_string();
    assert!(err.contains("resnet34"), "{err}");
    for name in ["cnn1", "cnn2", "resnet18", "resnet50"] {
        assert!(err.contains(name), "{err}");
    }
}

/// `cs-init new NAME` writes every built-in with the names and shapes of `tensors`.
#[test]
fn new_writes_every_builtin() {
    let dir = tempfile::tempdir().unwrap();
    for arch in Architecture::ALL {
        let file = format!("{arch}.safetensors");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cs-init"))
            .args(["new", arch.name(), "-o", &file, "--quiet"])
            .current_dir(dir.path())
            .output()
            .expect("cs-init runs");
        assert!(
            out.status.success(),
            "{arch}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let written = SafetensorsFile::open(&dir.path().join(&file)).unwrap();
        let mut actual: Vec<(String, Vec<usize>)> = written
            .tensors()
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect();
        let mut expected: Vec<(String, Vec<usize>)> = arch
            .tensors(0)
            .unwrap()
            .into_iter()
            .map(|(name, t)| (name, t.dims().to_vec()))
            .collect();
        actual.sort();
        expected.sort();
        assert_eq!(actual, expected, "{arch}");
    }
}
