//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod hub_cache;
mod shared;

/// Prints a layer's exact and estimated figures before -> after, for the sampling tests.
pub fn print_level_and_change(name: &str, dims: &[usize], exact: (f64, f64), estimate: (f64, f64)) {
    eprintln!(
        "{name} {dims:?}: exact {:.4} -> {:.4}, estimate {:.4} -> {:.4}",
        exact.0, exact.1, estimate.0, estimate.1
    );
}

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use cs_init::checkpoint::{serialize, tensor_from_bytes, tensor_to_bytes, Dtype, SafetensorsFile};
use cs_init::similarity::{conv_similarity_value, Variant};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The environment variable that picks the device of the core tests (`tests/similarity.rs`,
/// `tests/minimize.rs`): unset or `cpu`, `cuda`, `cuda:N`, `metal`, `metal:N`.
pub const TEST_DEVICE_VARIABLE: &str = "CS_INIT_TEST_DEVICE";

/// The device named by `CS_INIT_TEST_DEVICE` (CPU when unset), opened once per test binary.
///
/// Panics when the variable names an unknown device or one that cannot be opened (a build without
/// the cargo feature, no GPU): a GPU test run must never pass on CPU.
pub fn test_device() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let raw = std::env::var_os(TEST_DEVICE_VARIABLE).unwrap_or_default();
            let name = raw
                .to_str()
                .unwrap_or_else(|| panic!("{TEST_DEVICE_VARIABLE}={raw:?} is not valid UTF-8"));
            open_test_device(name)
        })
        .clone()
}

fn open_test_device(name: &str) -> Device {
    let name = name.trim().to_ascii_lowercase();
    let (kind, ordinal) = match name.split_once(':') {
        Some((kind, n)) => {
            let ordinal = n.parse::<usize>().unwrap_or_else(|_| {
                panic!("{TEST_DEVICE_VARIABLE}={name}: `{n}` is not a device ordinal")
            });
            (kind, ordinal)
        }
        None => (name.as_str(), 0),
    };
    let opened = match kind {
        "" | "cpu" if ordinal == 0 => return Device::Cpu,
        "cuda" => Device::new_cuda(ordinal),
        "metal" => Device::new_metal(ordinal),
        _ => panic!(
            "{TEST_DEVICE_VARIABLE}={name}: unknown device (expected cpu, cuda, cuda:N, metal \
             or metal:N)"
        ),
    };
    opened.unwrap_or_else(|e| {
        let message = e.to_string();
        let first = message.lines().next().unwrap_or_default();
        panic!(
            "{TEST_DEVICE_VARIABLE}={name}: cannot open the device: {first} (build the tests \
             with `--features {kind}`; they never fall back to CPU)"
        )
    })
}

/// The device for a tensor of `dtype`: [`test_device`], except f64 on Metal, which candle's Metal
/// backend does not support: f64 checks then run on CPU (the f32 and half-precision ones on Metal).
pub fn device_for(dtype: DType) -> Device {
    let device = test_device();
    if dtype == DType::F64 && device.is_metal() {
        Device::Cpu
    } else {
        device
    }
}

/// `t` moved to [`device_for`] its dtype.
pub fn on_test_device(t: &Tensor) -> Tensor {
    t.to_device(&device_for(t.dtype())).unwrap()
}

/// `t` copied to CPU (for metrics that compute in f64, which Metal lacks).
pub fn on_cpu(t: &Tensor) -> Tensor {
    t.to_device(&Device::Cpu).unwrap()
}

/// A deterministic U(-1, 1) f64 weight of the given shape.
pub fn uniform(dims: &[usize], seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = dims.iter().product();
    let data: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

/// A deterministic normal weight with torchvision's kaiming-normal (fan-out) scale, in f32.
pub fn kaiming(dims: &[usize], seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let fan_out: usize = dims[0] * dims[2..].iter().product::<usize>();
    let std = (2.0 / fan_out as f64).sqrt();
    let normal = rand_distr::Normal::new(0.0, std).unwrap();
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.sample(normal) as f32).collect();
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

pub fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

pub fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// `|a - b| / max(|b|, tiny)`.
pub fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

/// `||a - b|| / ||b||` over flattened tensors.
pub fn relative_norm(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if norm == 0.0 {
        diff
    } else {
        diff / norm
    }
}

/// The 20 conv weight shapes of torchvision's ResNet-18.
pub fn resnet18_conv_shapes() -> Vec<Vec<usize>> {
    cs_init::arch::Architecture::Resnet18.conv_weight_shapes()
}

/// A small network: two convs, a BN, a linear layer and an integer counter.
pub fn small_network(dtype: Dtype) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    let to = |t: Tensor| {
        let t = t
            .to_dtype(cs_init::checkpoint::candle_dtype(dtype).unwrap())
            .unwrap();
        tensor_to_bytes(&t).unwrap()
    };
    vec![
        (
            "conv1.weight".into(),
            dtype,
            vec![8, 3, 3, 3],
            to(kaiming(&[8, 3, 3, 3], 1)),
        ),
        (
            "bn1.weight".into(),
            dtype,
            vec![8],
            to(kaiming(&[8, 1, 1], 2).flatten_all().unwrap()),
        ),
        (
            "bn1.num_batches_tracked".into(),
            Dtype::I64,
            vec![],
            7i64.to_le_bytes().to_vec(),
        ),
        (
            "conv2.weight".into(),
            dtype,
            vec![16, 8, 3, 3],
            to(kaiming(&[16, 8, 3, 3], 3)),
        ),
        (
            "proj.weight".into(),
            dtype,
            vec![16, 8, 1, 1],
            to(kaiming(&[16, 8, 1, 1], 4)),
        ),
        (
            "fc.weight".into(),
            dtype,
            vec![10, 16],
            to(kaiming(&[10, 16, 1], 5).flatten_from(1).unwrap()),
        ),
    ]
}

pub fn write(
    path: &Path,
    metadata: Option<&BTreeMap<String, String>>,
    tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)],
) {
    std::fs::write(path, serialize(metadata, tensors)).unwrap();
}

pub fn loss(file: &SafetensorsFile, name: &str) -> f64 {
    let t = file.tensor(name).unwrap();
    let w = tensor_from_bytes(file.data(t), t.dtype, &t.shape, &candle_core::Device::Cpu).unwrap();
    conv_similarity_value(&w.to_dtype(DType::F64).unwrap(), Variant::Paper).unwrap()
}

/// Checks an output against its input: convs changed with lower L_CS, all else byte-identical.
pub fn check_output(input: &Path, output: &Path, convs: &[&str]) {
    let a = SafetensorsFile::open(input).unwrap();
    let b = SafetensorsFile::open(output).unwrap();
    assert_eq!(a.tensors().len(), b.tensors().len());
    for ta in a.tensors() {
        let tb = b
            .tensor(&ta.name)
            .unwrap_or_else(|| panic!("{} missing", ta.name));
        assert_eq!((ta.dtype, &ta.shape), (tb.dtype, &tb.shape), "{}", ta.name);
        if convs.contains(&ta.name.as_str()) {
            assert_ne!(a.data(ta), b.data(tb), "{} unchanged", ta.name);
            assert!(
                loss(&b, &ta.name) < loss(&a, &ta.name),
                "{} L_CS not lower",
                ta.name
            );
        } else {
            assert_eq!(a.data(ta), b.data(tb), "{} not byte-identical", ta.name);
        }
    }
}

pub fn no_outputs(dir: &Path, keep: &[&str]) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect();
    assert!(left.is_empty(), "unexpected files left behind: {left:?}");
}

/// `part` of `../shared/data` (`checkpoints/NAME`, `cifar10/...`); `None`, said on stderr,
/// where it is absent, and a failure instead under `CS_INIT_REQUIRE_SHARED=1`.
pub fn shared_data(part: &str) -> Option<std::path::PathBuf> {
    shared::shared_data_at(&repository(), part)
}

/// `../shared/data/checkpoints`, as [`shared_data`].
pub fn shared_checkpoints() -> Option<std::path::PathBuf> {
    shared_data("checkpoints")
}

/// One of the shared checkpoints, as [`shared_data`].
pub fn shared_checkpoint(name: &str) -> Option<std::path::PathBuf> {
    shared_data(&format!("checkpoints/{name}"))
}

/// The repository's root, where `checkpoints/`, `tests/fixtures/` and `../shared` are: the
/// library's manifest directory, also when the binary's tests (`cli/tests/`) include this file.
pub fn repository() -> std::path::PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    match manifest.file_name() {
        Some(name) if name == "cli" => manifest.parent().expect("cli/ has a parent").into(),
        _ => manifest.into(),
    }
}
