//! Reading PyTorch checkpoints: real legacy files from the shared data, and zip and legacy files
//! assembled here opcode by opcode the way `torch.save` lays them out.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use cs_init::checkpoint::{
    looks_like_pth, read_pth, CheckpointError, Dtype, PthCheckpoint, PthTensor, SafetensorsFile,
};
use half::{bf16, f16};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

fn tensor<'a>(checkpoint: &'a PthCheckpoint, name: &str) -> &'a PthTensor {
    checkpoint
        .tensors
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
}

fn f32_bytes(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
    values.into_iter().flat_map(f32::to_le_bytes).collect()
}

fn f16_bytes<const N: usize>(values: [f32; N]) -> Vec<u8> {
    values
        .into_iter()
        .flat_map(|x| f16::from_f32(x).to_le_bytes())
        .collect()
}

fn bf16_bytes<const N: usize>(values: [f32; N]) -> Vec<u8> {
    values
        .into_iter()
        .flat_map(|x| bf16::from_f32(x).to_le_bytes())
        .collect()
}

fn error_text(result: Result<PthCheckpoint, CheckpointError>) -> String {
    match result {
        Ok(c) => panic!("expected an error, read {} tensors", c.tensors.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn resnet20_legacy_file_matches_its_safetensors_conversion() {
    let (Some(th), Some(st)) = (
        crate::common::shared_checkpoint("resnet20-cifar10-12fca82f.th"),
        crate::common::shared_checkpoint("resnet20-cifar10.safetensors"),
    ) else {
        return;
    };
    let checkpoint = read_pth(&th, None, None).unwrap();
    assert_eq!(checkpoint.key.as_deref(), Some("state_dict"));
    assert_eq!(checkpoint.stripped_prefix.as_deref(), Some("module."));
    assert!(checkpoint
        .dropped
        .iter()
        .any(|(k, d)| k == "best_prec1" && d.starts_with("float 91.78")));

    let reference = SafetensorsFile::open(&st).unwrap();
    let names: BTreeSet<&str> = checkpoint.tensors.iter().map(|t| t.name.as_str()).collect();
    let expected: BTreeSet<&str> = reference
        .tensors()
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, expected);
    assert_eq!(checkpoint.tensors.len(), names.len(), "no duplicate names");
    for info in reference.tensors() {
        let t = tensor(&checkpoint, &info.name);
        assert_eq!(
            (t.dtype, &t.shape),
            (info.dtype, &info.shape),
            "{}",
            info.name
        );
        assert!(
            t.data == reference.data(info),
            "{}: bytes differ",
            info.name
        );
    }
    // The state dict's order is kept.
    assert_eq!(checkpoint.tensors[0].name, "conv1.weight");
}

#[test]
fn resnet56_legacy_file_has_the_56_layer_structure() {
    let Some(th) = crate::common::shared_checkpoint("resnet56-cifar10-4bfd9763.th") else {
        return;
    };
    let checkpoint = read_pth(&th, None, None).unwrap();
    assert_eq!(checkpoint.key.as_deref(), Some("state_dict"));
    assert_eq!(checkpoint.stripped_prefix.as_deref(), Some("module."));
    let shape = |name: &str| tensor(&checkpoint, name).shape.clone();
    assert_eq!(shape("conv1.weight"), [16, 3, 3, 3]);
    assert_eq!(shape("layer1.8.conv2.weight"), [16, 16, 3, 3]);
    assert_eq!(shape("layer2.0.conv1.weight"), [32, 16, 3, 3]);
    assert_eq!(shape("layer3.8.bn2.running_var"), [64]);
    assert_eq!(shape("linear.weight"), [10, 64]);
    assert_eq!(shape("linear.bias"), [10]);

    // 1 stem conv + 3 stages x 9 blocks x 2 convs, each followed by a BN of 4 tensors.
    let convs: Vec<&PthTensor> = checkpoint
        .tensors
        .iter()
        .filter(|t| t.name.contains("conv"))
        .collect();
    assert_eq!(convs.len(), 55);
    assert_eq!(
        checkpoint
            .tensors
            .iter()
            .filter(|t| t.name.contains("bn"))
            .count(),
        55 * 4
    );
    assert_eq!(checkpoint.tensors.len(), 55 + 55 * 4 + 2);
    for stage in 1..=3 {
        let width = 16 << (stage - 1);
        for block in 0..9 {
            for conv in 1..=2 {
                let t = tensor(
                    &checkpoint,
                    &format!("layer{stage}.{block}.conv{conv}.weight"),
                );
                assert_eq!(t.shape[0], width, "{}", t.name);
                assert_eq!(t.shape[2..], [3, 3]);
            }
        }
        assert!(!checkpoint
            .tensors
            .iter()
            .any(|t| t.name.starts_with(&format!("layer{stage}.9."))));
    }
    for t in &checkpoint.tensors {
        assert_eq!(t.dtype, Dtype::F32);
        assert_eq!(
            t.data.len(),
            t.shape.iter().product::<usize>() * 4,
            "{}",
            t.name
        );
    }
    assert!(checkpoint.dropped.iter().any(|(k, _)| k == "best_prec1"));
}

/// A pickle written opcode by opcode, in torch.save's layout: protocol 2 (GLOBAL, BINUNICODE,
/// BINPUT) or protocol 4 (STACK_GLOBAL, SHORT_BINUNICODE, MEMOIZE, one FRAME).
struct Pickle {
    protocol: u8,
    /// Legacy persistent ids always have a sixth field, the storage view or None.
    legacy: bool,
    ops: Vec<u8>,
    memo: u32,
}

/// A storage as a persistent id names it.
struct Storage {
    class: &'static str,
    key: &'static str,
    location: &'static str,
    numel: usize,
    /// (view key, offset, size) of a legacy storage view.
    view: Option<(&'static str, usize, usize)>,
}

impl Storage {
    fn new(class: &'static str, key: &'static str, numel: usize) -> Self {
        Storage {
            class,
            key,
            location: "cpu",
            numel,
            view: None,
        }
    }
}

impl Pickle {
    fn new(protocol: u8) -> Self {
        Pickle {
            protocol,
            legacy: false,
            ops: Vec::new(),
            memo: 0,
        }
    }

    fn op(&mut self, op: u8) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// Stores the top of the stack in the memo; returns its index.
    fn put(&mut self) -> u32 {
        let index = self.memo;
        if self.protocol >= 4 {
            self.op(0x94); // MEMOIZE
        } else if let Ok(i) = u8::try_from(index) {
            self.ops.extend([b'q', i]); // BINPUT
        } else {
            self.op(b'r').ops.extend(index.to_le_bytes()); // LONG_BINPUT
        }
        self.memo += 1;
        index
    }

    fn get(&mut self, index: u32) -> &mut Self {
        match u8::try_from(index) {
            Ok(i) => self.ops.extend([b'h', i]), // BINGET
            Err(_) => self.op(b'j').ops.extend(index.to_le_bytes()), // LONG_BINGET
        }
        self
    }

    fn str(&mut self, s: &str) -> &mut Self {
        if self.protocol >= 4 && s.len() < 256 {
            self.ops.extend([0x8c, s.len() as u8]); // SHORT_BINUNICODE
        } else {
            self.op(b'X').ops.extend((s.len() as u32).to_le_bytes()); // BINUNICODE
        }
        self.ops.extend(s.as_bytes());
        self
    }

    fn int(&mut self, n: i64) -> &mut Self {
        match n {
            0..=0xff => self.ops.extend([b'K', n as u8]), // BININT1
            0x100..=0xffff => self.op(b'M').ops.extend((n as u16).to_le_bytes()), // BININT2
            _ if i32::try_from(n).is_ok() => self.op(b'J').ops.extend((n as i32).to_le_bytes()), // BININT
            _ => self
                .ops
                .extend([0x8a, 8].into_iter().chain(n.to_le_bytes())), // LONG1
        }
        self
    }

    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        if self.protocol >= 4 {
            self.str(module).str(name).op(0x93); // STACK_GLOBAL
        } else {
            self.op(b'c')
                .ops
                .extend(format!("{module}\n{name}\n").as_bytes()); // GLOBAL
        }
        self.put();
        self
    }

    fn tuple(&mut self, items: &[usize]) -> &mut Self {
        self.op(b'(');
        for &i in items {
            self.int(i as i64);
        }
        self.op(b't')
    }

    fn empty_ordered_dict(&mut self) -> &mut Self {
        self.global("collections", "OrderedDict").op(b')').op(b'R') // EMPTY_TUPLE REDUCE
    }

    /// BINPERSID of `('storage', torch.<class>, key, location, numel[, view])`; returns the
    /// memo index of the storage.
    fn storage(&mut self, s: &Storage) -> u32 {
        self.op(b'(')
            .str("storage")
            .global("torch", s.class)
            .str(s.key)
            .str(s.location);
        self.int(s.numel as i64);
        match s.view {
            Some((key, offset, size)) => {
                self.op(b'(')
                    .str(key)
                    .int(offset as i64)
                    .int(size as i64)
                    .op(b't');
            }
            None if self.legacy => {
                self.op(b'N');
            }
            None => {}
        }
        self.op(b't').op(b'Q'); // TUPLE BINPERSID
        self.put()
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())` with the storage
    /// on the stack already.
    fn rebuild_v2(&mut self, offset: usize, shape: &[usize], stride: &[usize]) -> &mut Self {
        self.int(offset as i64).tuple(shape).tuple(stride).op(0x89); // NEWFALSE
        self.empty_ordered_dict().op(b't').op(b'R')
    }

    fn tensor(
        &mut self,
        storage: &Storage,
        offset: usize,
        shape: &[usize],
        stride: &[usize],
    ) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2").op(b'(');
        self.storage(storage);
        self.rebuild_v2(offset, shape, stride)
    }

    fn finish(&mut self) -> Vec<u8> {
        self.op(b'.');
        let mut out = vec![0x80, self.protocol];
        if self.protocol >= 4 {
            out.push(0x95); // FRAME
            out.extend((self.ops.len() as u64).to_le_bytes());
        }
        out.extend(&self.ops);
        out
    }
}

fn write_zip(path: &Path, entries: &[(&str, Vec<u8>)], deflated: &[&str]) {
    let mut zip = ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, data) in entries {
        let method = if deflated.contains(name) {
            CompressionMethod::Deflated
        } else {
            CompressionMethod::Stored
        };
        zip.start_file(
            *name,
            SimpleFileOptions::default().compression_method(method),
        )
        .unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
}

/// The expected result of the zip checkpoint below.
fn expected_zip_tensors() -> Vec<PthTensor> {
    let t = |name: &str, dtype, shape: &[usize], data: Vec<u8>| PthTensor {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
        data,
    };
    vec![
        t(
            "conv.weight",
            Dtype::F32,
            &[2, 1, 2, 2],
            f32_bytes((0..8).map(|i| i as f32)),
        ),
        // The transpose of [[10, 11, 12], [13, 14, 15]].
        t(
            "fc.weight",
            Dtype::F32,
            &[3, 2],
            f32_bytes([10., 13., 11., 14., 12., 15.]),
        ),
        // Elements 4..8 of a storage of 10.
        t(
            "offset",
            Dtype::F32,
            &[2, 2],
            f32_bytes([24., 25., 26., 27.]),
        ),
        t(
            "shared.a",
            Dtype::F32,
            &[4],
            f32_bytes([30., 31., 32., 33.]),
        ),
        t(
            "shared.b",
            Dtype::F32,
            &[2, 2],
            f32_bytes([34., 35., 36., 37.]),
        ),
        t("half", Dtype::F16, &[3], f16_bytes([0.5, -2., 3.25])),
        t("brain", Dtype::BF16, &[2], bf16_bytes([1.5, -0.25])),
        t(
            "bn.num_batches_tracked",
            Dtype::I64,
            &[],
            42i64.to_le_bytes().to_vec(),
        ),
        t("param", Dtype::F32, &[2], f32_bytes([7., 8.])),
        t("empty", Dtype::F32, &[0, 3], Vec::new()),
    ]
}

/// A zip checkpoint of torch >= 1.6: an OrderedDict state dict with `_metadata`, in folder
/// `tiny_model` rather than `archive`.
fn write_zip_checkpoint(path: &Path) {
    let mut p = Pickle::new(2);
    p.empty_ordered_dict();
    p.put();
    p.op(b'(');
    p.str("conv.weight").tensor(
        &Storage::new("FloatStorage", "0", 8),
        0,
        &[2, 1, 2, 2],
        &[4, 4, 2, 1],
    );
    p.str("fc.weight")
        .tensor(&Storage::new("FloatStorage", "1", 6), 0, &[3, 2], &[1, 3]);
    p.str("offset")
        .tensor(&Storage::new("FloatStorage", "2", 10), 4, &[2, 2], &[2, 1]);
    let shared = Storage::new("FloatStorage", "3", 8);
    p.str("shared.a").tensor(&shared, 0, &[4], &[1]);
    p.str("shared.b").tensor(&shared, 4, &[2, 2], &[2, 1]);
    p.str("half")
        .tensor(&Storage::new("HalfStorage", "4", 3), 0, &[3], &[1]);
    p.str("brain")
        .tensor(&Storage::new("BFloat16Storage", "5", 2), 0, &[2], &[1]);
    p.str("bn.num_batches_tracked")
        .tensor(&Storage::new("LongStorage", "6", 1), 0, &[], &[]);
    p.str("param")
        .global("torch._utils", "_rebuild_parameter")
        .op(b'(');
    p.tensor(&Storage::new("FloatStorage", "7", 2), 0, &[2], &[1]);
    p.op(0x88).empty_ordered_dict().op(b't').op(b'R'); // NEWTRUE, hooks; REDUCE
    p.str("empty")
        .tensor(&Storage::new("FloatStorage", "8", 0), 0, &[0, 3], &[3, 1]);
    p.op(b'u'); // SETITEMS
                // state_dict._metadata, set through BUILD.
    p.op(b'}')
        .op(b'(')
        .str("_metadata")
        .empty_ordered_dict()
        .op(b'(')
        .str("")
        .op(b'}')
        .op(b'(');
    p.str("version").int(1).op(b'u').op(b'u').op(b'u').op(b'b');
    let pickle = p.finish();

    write_zip(
        path,
        &[
            ("tiny_model/data.pkl", pickle),
            ("tiny_model/byteorder", b"little".to_vec()),
            ("tiny_model/data/0", f32_bytes((0..8).map(|i| i as f32))),
            ("tiny_model/data/1", f32_bytes((10..16).map(|i| i as f32))),
            ("tiny_model/data/2", f32_bytes((20..30).map(|i| i as f32))),
            ("tiny_model/data/3", f32_bytes((30..38).map(|i| i as f32))),
            ("tiny_model/data/4", f16_bytes([0.5, -2., 3.25])),
            ("tiny_model/data/5", bf16_bytes([1.5, -0.25])),
            ("tiny_model/data/6", 42i64.to_le_bytes().to_vec()),
            ("tiny_model/data/7", f32_bytes([7., 8.])),
            ("tiny_model/data/8", Vec::new()),
            ("tiny_model/version", b"3\n".to_vec()),
        ],
        &["tiny_model/data/1", "tiny_model/data/3"],
    );
}

#[test]
fn zip_checkpoint_assembled_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.pth");
    write_zip_checkpoint(&path);
    assert!(looks_like_pth(&std::fs::read(&path).unwrap()));

    let checkpoint = read_pth(&path, None, None).unwrap();
    assert_eq!(checkpoint.tensors, expected_zip_tensors());
    assert_eq!(checkpoint.key, None);
    assert_eq!(checkpoint.stripped_prefix, None);
    assert!(checkpoint.dropped.is_empty(), "{:?}", checkpoint.dropped);

    // An explicit prefix is removed where present.
    let stripped = read_pth(&path, None, Some("shared.")).unwrap();
    let names: Vec<&str> = stripped.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names[3..5], ["a", "b"]);
    assert_eq!(stripped.stripped_prefix.as_deref(), Some("shared."));
    let e = error_text(read_pth(&path, None, Some("model.")));
    assert!(e.contains("tiny.pth") && e.contains("'model.'"), "{e}");
    let e = error_text(read_pth(&path, Some("state_dict"), None));
    assert!(
        e.contains("no entry 'state_dict'") && e.contains("'conv.weight'"),
        "{e}"
    );
}

/// A legacy (pre-1.6) checkpoint in pickle protocol 4: {'epoch', 'model_state_dict',
/// 'optimizer_state_dict', 'args'} with `model.` names, a storage view, a storage shared
/// through the memo, and storages listed in another order than the pickle uses them.
fn write_legacy_checkpoint(path: &Path) {
    let mut file = Vec::new();
    let mut magic = Pickle::new(4);
    magic
        .op(0x8a)
        .op(10)
        .ops
        .extend(&0x1950a86a20f9469cfc6cu128.to_le_bytes()[..10]);
    file.extend(magic.finish());
    file.extend(Pickle::new(4).int(1001).finish());
    let mut info = Pickle::new(4);
    info.op(b'}')
        .op(b'(')
        .str("protocol_version")
        .int(1001)
        .str("little_endian")
        .op(0x88);
    info.str("type_sizes")
        .op(b'}')
        .op(b'(')
        .str("short")
        .int(2)
        .str("int")
        .int(4)
        .str("long")
        .int(4);
    file.extend(info.op(b'u').op(b'u').finish());

    let mut p = Pickle::new(4);
    p.legacy = true;
    p.op(b'}').op(b'(').str("epoch").int(12);
    p.str("model_state_dict").empty_ordered_dict().op(b'(');
    // A tensor on elements 3..6 of a view at offset 2 of a storage of 10, saved from CUDA.
    let root = Storage {
        location: "cuda:0",
        view: Some(("140", 2, 5)),
        ..Storage::new("FloatStorage", "100", 10)
    };
    p.str("model.view")
        .global("torch._utils", "_rebuild_tensor")
        .op(b'(');
    p.storage(&root);
    p.int(1).tuple(&[3]).tuple(&[1]).op(b't').op(b'R');
    p.str("model.ints")
        .global("torch._utils", "_rebuild_tensor_v2")
        .op(b'(');
    let ints = p.storage(&Storage::new("IntStorage", "200", 6));
    p.rebuild_v2(0, &[2, 3], &[3, 1]);
    p.str("model.ints_t")
        .global("torch._utils", "_rebuild_tensor_v2")
        .op(b'(')
        .get(ints);
    p.rebuild_v2(0, &[3, 2], &[1, 3]);
    p.str("model.mask")
        .tensor(&Storage::new("BoolStorage", "300", 3), 0, &[3], &[1]);
    p.op(b'u');
    p.str("optimizer_state_dict")
        .op(b'}')
        .op(b'(')
        .str("state")
        .op(b'}')
        .str("param_groups")
        .op(b']')
        .op(b'(');
    p.op(b'}')
        .op(b'(')
        .str("lr")
        .op(b'G')
        .ops
        .extend(0.1f64.to_be_bytes());
    p.op(b'u').op(b'e').op(b'u');
    // argparse.Namespace(lr=0.1), as protocol 2+ pickles an object: NEWOBJ then BUILD.
    p.str("args")
        .global("argparse", "Namespace")
        .op(b')')
        .op(0x81);
    p.op(b'}')
        .op(b'(')
        .str("lr")
        .op(b'G')
        .ops
        .extend(0.1f64.to_be_bytes());
    p.op(b'u').op(b'b').op(b'u');
    file.extend(p.finish());

    let mut keys = Pickle::new(4);
    keys.op(b']')
        .op(b'(')
        .str("300")
        .str("100")
        .str("200")
        .op(b'e');
    file.extend(keys.finish());
    file.extend(3u64.to_le_bytes());
    file.extend([1, 0, 1]);
    file.extend(10u64.to_le_bytes());
    file.extend(f32_bytes((0..10).map(|i| i as f32)));
    file.extend(6u64.to_le_bytes());
    file.extend((1..=6).flat_map(i32::to_le_bytes));
    std::fs::write(path, file).unwrap();
}

#[test]
fn legacy_checkpoint_assembled_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("legacy.pt");
    write_legacy_checkpoint(&path);
    assert!(looks_like_pth(&std::fs::read(&path).unwrap()[..24]));

    let ints = |v: &[i32]| v.iter().flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>();
    let expected = vec![
        PthTensor {
            name: "view".into(),
            dtype: Dtype::F32,
            shape: vec![3],
            data: f32_bytes([3., 4., 5.]),
        },
        PthTensor {
            name: "ints".into(),
            dtype: Dtype::I32,
            shape: vec![2, 3],
            data: ints(&[1, 2, 3, 4, 5, 6]),
        },
        PthTensor {
            name: "ints_t".into(),
            dtype: Dtype::I32,
            shape: vec![3, 2],
            data: ints(&[1, 4, 2, 5, 3, 6]),
        },
        PthTensor {
            name: "mask".into(),
            dtype: Dtype::BOOL,
            shape: vec![3],
            data: vec![1, 0, 1],
        },
    ];
    for key in [None, Some("model_state_dict")] {
        let checkpoint = read_pth(&path, key, Some("model.")).unwrap();
        assert_eq!(checkpoint.tensors, expected);
        assert_eq!(checkpoint.key.as_deref(), Some("model_state_dict"));
        assert_eq!(checkpoint.stripped_prefix.as_deref(), Some("model."));
        let dropped: Vec<(&str, &str)> = checkpoint
            .dropped
            .iter()
            .map(|(k, d)| (k.as_str(), d.as_str()))
            .collect();
        assert_eq!(
            dropped,
            [
                ("epoch", "int 12"),
                ("optimizer_state_dict", "dict with 2 entries"),
                ("args", "argparse.Namespace object"),
            ]
        );
    }
    // Automatic settings keep the names: not every one starts with "module.".
    let automatic = read_pth(&path, None, None).unwrap();
    assert_eq!(automatic.tensors[0].name, "model.view");
    assert_eq!(automatic.stripped_prefix, None);

    let e = error_text(read_pth(&path, Some("optimizer_state_dict"), None));
    assert!(
        e.contains("legacy.pt") && e.contains("not a dict of tensors"),
        "{e}"
    );
    let e = error_text(read_pth(&path, Some("nope"), None));
    assert!(
        e.contains("'epoch', 'model_state_dict', 'optimizer_state_dict', 'args'"),
        "{e}"
    );
}

#[test]
fn recognizes_checkpoints_by_their_first_bytes() {
    assert!(looks_like_pth(b"PK\x03\x04rest of a zip"));
    let legacy_v2 = [
        0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.',
    ];
    assert!(looks_like_pth(&legacy_v2));
    assert!(!looks_like_pth(&legacy_v2[..8]));
    assert!(!looks_like_pth(b"\x80\x02}q\x00."));
    assert!(!looks_like_pth(b"\x08\x00\x00\x00\x00\x00\x00\x00{}"));
    assert!(!looks_like_pth(b""));
}

fn assert_rejected(path: &Path, key: Option<&str>, expected: &[&str]) {
    let e = error_text(read_pth(path, key, None));
    let file = path.file_name().unwrap().to_str().unwrap();
    assert!(e.contains(file), "{e}");
    for part in expected {
        assert!(e.contains(part), "'{part}' missing from: {e}");
    }
}

#[test]
fn malformed_files_are_rejected_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    assert_rejected(
        &write("garbage.pth", b"hello, this is not a checkpoint"),
        None,
        &["not a PyTorch checkpoint", "68 65 6c 6c"],
    );
    assert_rejected(
        &write("empty.pth", b""),
        None,
        &["not a PyTorch checkpoint", "empty"],
    );
    assert_rejected(
        &write("torn.pth", b"PK\x03\x04\x14\x00\x00\x00"),
        None,
        &["zip archive"],
    );

    let no_pickle = dir.path().join("no_pickle.pth");
    write_zip(&no_pickle, &[("archive/version", b"3\n".to_vec())], &[]);
    assert_rejected(&no_pickle, None, &["data.pkl"]);

    // A one-tensor zip whose storage class, key and bytes are chosen to be wrong.
    let one_tensor =
        |name: &str, class: &'static str, key: &'static str, numel: usize, stored: Vec<u8>| {
            let mut p = Pickle::new(2);
            p.op(b'}')
                .op(b'(')
                .str("w")
                .tensor(&Storage::new(class, key, numel), 0, &[numel], &[1])
                .op(b'u');
            let path = dir.path().join(name);
            write_zip(
                &path,
                &[("archive/data.pkl", p.finish()), ("archive/data/0", stored)],
                &[],
            );
            path
        };
    // data.pkl names storage '7', which the archive lacks.
    let missing = one_tensor("missing.pth", "FloatStorage", "7", 1, vec![0; 4]);
    assert_rejected(
        &missing,
        None,
        &["storage '7'", "missing", "archive/data/7"],
    );
    // A storage shorter than its tensor.
    let short = one_tensor("short.pth", "FloatStorage", "0", 4, vec![0; 12]);
    assert_rejected(&short, None, &["tensor 'w'", "storage '0'", "holds 3"]);
    let complex = one_tensor("complex.pth", "ComplexDoubleStorage", "0", 1, vec![0; 16]);
    assert_rejected(
        &complex,
        None,
        &[
            "tensor 'w'",
            "unsupported storage type torch.ComplexDoubleStorage",
        ],
    );

    // INT is a text opcode that torch.save never writes.
    let mut p = Pickle::new(2);
    p.op(b'}')
        .op(b'(')
        .str("epoch")
        .op(b'I')
        .ops
        .extend(b"12\n");
    let text = dir.path().join("text.pth");
    write_zip(&text, &[("archive/data.pkl", p.op(b'u').finish())], &[]);
    assert_rejected(
        &text,
        None,
        &[
            "archive/data.pkl",
            "pickle opcode INT at byte 14",
            "not support",
        ],
    );

    let mut p = Pickle::new(2);
    p.op(b'}').op(b'(').str("epoch").int(1).op(b'u');
    let no_tensors = dir.path().join("no_tensors.pth");
    write_zip(&no_tensors, &[("archive/data.pkl", p.finish())], &[]);
    assert_rejected(&no_tensors, None, &["no state dict found", "'epoch'"]);

    let whole_model = dir.path().join("whole_model.pth");
    let mut p = Pickle::new(2);
    p.global("__main__", "Net")
        .op(b')')
        .op(0x81)
        .op(b'}')
        .op(b'b');
    write_zip(&whole_model, &[("archive/data.pkl", p.finish())], &[]);
    assert_rejected(&whole_model, None, &["__main__.Net object", "state_dict()"]);
}

#[test]
fn truncated_legacy_files_are_rejected() {
    let Some(th) = crate::common::shared_checkpoint("resnet20-cifar10-12fca82f.th") else {
        return;
    };
    let bytes = std::fs::read(&th).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The main pickle spans bytes 137..12018; storages follow from byte 14063 on.
    for (name, len, expected) in [
        ("cut_in_pickle.th", 5000, ["truncated file", "pickle"]),
        (
            "cut_in_storage.th",
            bytes.len() - 1000,
            ["truncated file", "storage '"],
        ),
        ("cut_in_header.th", 20, ["truncated file", "pickle"]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..len]).unwrap();
        assert_rejected(&path, None, &expected);
    }
}

#[test]
fn deeply_nested_pickles_do_not_overflow_the_stack() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pickle::new(2);
    p.op(b')');
    for _ in 0..1_000_000 {
        p.op(0x85); // TUPLE1
    }
    let path = dir.path().join("nested.pth");
    write_zip(&path, &[("archive/data.pkl", p.finish())], &[]);
    assert_rejected(&path, None, &["tuple of 1 item", "not a dict of tensors"]);
}

#[test]
fn one_storage_under_many_names_is_bounded() {
    // Tied weights (one storage, two names) are read; a storage under 17 names, which would let
    // a small file make an output that grows with the square of its size, is refused.
    let dir = tempfile::tempdir().unwrap();
    let shared = |names: usize| {
        let storage = Storage::new("FloatStorage", "0", 4);
        let mut p = Pickle::new(2);
        p.op(b'}').op(b'(');
        for i in 0..names {
            p.str(&format!("w{i}")).tensor(&storage, 0, &[4], &[1]);
        }
        p.op(b'u');
        let path = dir.path().join(format!("shared{names}.pth"));
        write_zip(
            &path,
            &[
                ("archive/data.pkl", p.finish()),
                ("archive/data/0", f32_bytes([1., 2., 3., 4.])),
            ],
            &[],
        );
        path
    };
    let tied = read_pth(&shared(2), None, None).unwrap();
    assert_eq!(tied.tensors.len(), 2);
    assert_eq!(tied.tensors[0].data, tied.tensors[1].data);
    assert_eq!(read_pth(&shared(16), None, None).unwrap().tensors.len(), 16);
    assert_rejected(
        &shared(17),
        None,
        &["tensor 'w16'", "more than 16 times the 16 bytes", "clone()"],
    );
}
