//! Which `[C, 1, k, k]` weights are depthwise and which read a one-channel input: on the shared
//! tinygrad MNIST network, a torch.save'd grayscale network, and the names and shapes of real
//! architectures (torchvision and timm MobileNet/EfficientNet/ConvNeXt).

use std::path::Path;

use cs_init::checkpoint::{Dtype, SafetensorsFile, TensorInfo};
use cs_init::input::{Input, ResolveOptions};
use cs_init::plan::{plan, plan_files, ConvKind, KernelLayout, PlanEntry, Selection};

fn tensors(shapes: &[(&str, &[usize])]) -> Vec<TensorInfo> {
    shapes
        .iter()
        .map(|(name, shape)| TensorInfo {
            name: name.to_string(),
            dtype: Dtype::F32,
            shape: shape.to_vec(),
            begin: 0,
            end: 0,
        })
        .collect()
}

fn kind_of<'a>(entries: &'a [PlanEntry], name: &str) -> (Option<ConvKind>, &'a str) {
    let e = entries
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no plan entry {name}"));
    (e.kind, e.reason.as_str())
}

fn assert_kinds(entries: &[PlanEntry], expected: &[(&str, ConvKind)]) {
    for (name, kind) in expected {
        let (got, reason) = kind_of(entries, name);
        assert_eq!(got, Some(*kind), "{name}: {reason}");
    }
}

/// torchvision's mobilenet_v2: the RGB stem, then inverted residual blocks (expansion 1x1,
/// depthwise 3x3, projection 1x1), the last 1x1 conv and the classifier. Listed out of order, as
/// a safetensors file sorted by name would hold them.
const MOBILENET_V2: &[(&str, &[usize])] = &[
    ("classifier.1.weight", &[1000, 1280]),
    ("features.0.0.weight", &[32, 3, 3, 3]),
    ("features.0.1.weight", &[32]),
    ("features.1.conv.0.0.weight", &[32, 1, 3, 3]),
    ("features.1.conv.1.weight", &[16, 32, 1, 1]),
    ("features.10.conv.0.0.weight", &[384, 64, 1, 1]),
    ("features.10.conv.1.0.weight", &[384, 1, 3, 3]),
    ("features.10.conv.2.weight", &[64, 384, 1, 1]),
    ("features.18.0.weight", &[1280, 320, 1, 1]),
    ("features.2.conv.0.0.weight", &[96, 16, 1, 1]),
    ("features.2.conv.1.0.weight", &[96, 1, 3, 3]),
    ("features.2.conv.2.weight", &[24, 96, 1, 1]),
];

#[test]
fn torchvision_mobilenet_v2_depthwise_convs() {
    let entries = plan(&tensors(MOBILENET_V2), &Selection::default());
    assert_kinds(
        &entries,
        &[
            ("features.0.0.weight", ConvKind::Standard),
            ("features.1.conv.0.0.weight", ConvKind::Depthwise),
            ("features.1.conv.1.weight", ConvKind::Pointwise),
            ("features.2.conv.1.0.weight", ConvKind::Depthwise),
            ("features.10.conv.1.0.weight", ConvKind::Depthwise),
        ],
    );
    let (_, reason) = kind_of(&entries, "features.1.conv.0.0.weight");
    assert!(
        reason.contains("another layer makes its 32 input channels"),
        "{reason}"
    );
}

#[test]
fn timm_names_where_the_blocks_sort_before_the_stem() {
    // timm's efficientnet_b0 and convnext_tiny: `blocks...` and `stages...` sort before
    // `conv_stem` and `stem`, so the first name is a depthwise conv, not the stem.
    let efficientnet: &[(&str, &[usize])] = &[
        ("blocks.0.0.conv_dw.weight", &[32, 1, 3, 3]),
        ("blocks.0.0.se.conv_reduce.weight", &[8, 32, 1, 1]),
        ("blocks.0.0.se.conv_expand.weight", &[32, 8, 1, 1]),
        ("blocks.0.0.conv_pw.weight", &[16, 32, 1, 1]),
        ("blocks.1.0.conv_pw.weight", &[96, 16, 1, 1]),
        ("blocks.1.0.conv_dw.weight", &[96, 1, 3, 3]),
        ("classifier.weight", &[1000, 1280]),
        ("conv_head.weight", &[1280, 320, 1, 1]),
        ("conv_stem.weight", &[32, 3, 3, 3]),
    ];
    let entries = plan(&tensors(efficientnet), &Selection::default());
    assert_kinds(
        &entries,
        &[
            ("blocks.0.0.conv_dw.weight", ConvKind::Depthwise),
            ("blocks.1.0.conv_dw.weight", ConvKind::Depthwise),
            ("conv_stem.weight", ConvKind::Standard),
        ],
    );

    let convnext: &[(&str, &[usize])] = &[
        ("head.fc.weight", &[1000, 768]),
        ("stages.0.blocks.0.conv_dw.weight", &[96, 1, 7, 7]),
        ("stages.0.blocks.0.mlp.fc1.weight", &[384, 96]),
        ("stages.0.blocks.0.mlp.fc2.weight", &[96, 384]),
        ("stages.1.downsample.1.weight", &[192, 96, 2, 2]),
        ("stages.1.blocks.0.conv_dw.weight", &[192, 1, 7, 7]),
        ("stem.0.weight", &[96, 3, 4, 4]),
    ];
    let entries = plan(&tensors(convnext), &Selection::default());
    assert_kinds(
        &entries,
        &[
            ("stages.0.blocks.0.conv_dw.weight", ConvKind::Depthwise),
            ("stages.1.blocks.0.conv_dw.weight", ConvKind::Depthwise),
            ("stem.0.weight", ConvKind::Standard),
        ],
    );
}

#[test]
fn a_grayscale_network_with_depthwise_convs() {
    // A MobileNet for one-channel images: its stem has the depthwise convs' shape.
    let gray: &[(&str, &[usize])] = &[
        ("features.0.0.weight", &[32, 1, 3, 3]),
        ("features.1.conv.0.0.weight", &[32, 1, 3, 3]),
        ("features.1.conv.1.weight", &[16, 32, 1, 1]),
        ("features.2.conv.0.0.weight", &[96, 16, 1, 1]),
        ("features.2.conv.1.0.weight", &[96, 1, 3, 3]),
        ("features.10.conv.1.0.weight", &[96, 1, 3, 3]),
        ("classifier.weight", &[10, 96]),
    ];
    let entries = plan(&tensors(gray), &Selection::default());
    assert_kinds(
        &entries,
        &[
            ("features.0.0.weight", ConvKind::SingleChannel),
            ("features.1.conv.0.0.weight", ConvKind::Depthwise),
            ("features.2.conv.1.0.weight", ConvKind::Depthwise),
            ("features.10.conv.1.0.weight", ConvKind::Depthwise),
        ],
    );
    let (_, reason) = kind_of(&entries, "features.0.0.weight");
    assert!(reason.contains("first conv"), "{reason}");
    assert!(
        entries
            .iter()
            .find(|e| e.name == "features.0.0.weight")
            .unwrap()
            .optimize
    );
}

#[test]
fn a_one_channel_conv_that_nothing_feeds_reads_the_input() {
    // LeNet on MNIST: no other layer has 6 outputs.
    let lenet: &[(&str, &[usize])] = &[
        ("conv1.weight", &[6, 1, 5, 5]),
        ("conv2.weight", &[16, 6, 5, 5]),
        ("fc1.weight", &[120, 400]),
        ("fc2.weight", &[10, 120]),
    ];
    let entries = plan(&tensors(lenet), &Selection::default());
    let (kind, reason) = kind_of(&entries, "conv1.weight");
    assert_eq!(kind, Some(ConvKind::SingleChannel));
    assert!(
        reason.contains("no other layer makes 6 channels"),
        "{reason}"
    );

    // Keras/Flax layout: `[k, k, in, out]` kernels and `[in, out]` dense kernels.
    let hwio: &[(&str, &[usize])] = &[
        ("conv_stem.weight", &[3, 3, 3, 16]),
        ("dw.weight", &[3, 3, 1, 16]),
        ("head.weight", &[16, 10]),
    ];
    let selection = Selection {
        layout: KernelLayout::Hwio,
        ..Selection::default()
    };
    let entries = plan(&tensors(hwio), &selection);
    assert_kinds(&entries, &[("dw.weight", ConvKind::Depthwise)]);
}

#[test]
fn shards_are_planned_together() {
    // The depthwise conv's producer is in the other shard.
    let first = tensors(&[
        ("features.0.0.weight", &[32, 3, 3, 3]),
        ("features.1.conv.1.weight", &[16, 32, 1, 1]),
    ]);
    let second = tensors(&[("features.1.conv.0.0.weight", &[32, 1, 3, 3])]);
    let plans = plan_files(&[&first, &second], &Selection::default());
    assert_eq!(plans.len(), 2);
    assert_eq!(plans[1][0].kind, Some(ConvKind::Depthwise));
    // Alone, the shard would not know.
    assert_eq!(
        plan(&second, &Selection::default())[0].kind,
        Some(ConvKind::SingleChannel)
    );
}

#[test]
fn the_tinygrad_mnist_cnn_starts_with_a_single_channel_conv() {
    let Some(path) = crate::common::shared_checkpoint("tinygrad-mnist-cnn.safetensors") else {
        return;
    };
    let file = SafetensorsFile::open(&path).unwrap();
    let entries = plan(file.tensors(), &Selection::default());
    // layers.2 also has 32 filters, but it reads layers.0's output: layers.0 is the first conv
    // of a network whose input has one channel.
    assert_kinds(
        &entries,
        &[
            ("layers.0.weight", ConvKind::SingleChannel),
            ("layers.2.weight", ConvKind::Standard),
            ("layers.6.weight", ConvKind::Standard),
            ("layers.8.weight", ConvKind::Standard),
        ],
    );
    let layer0 = entries
        .iter()
        .find(|e| e.name == "layers.0.weight")
        .unwrap();
    assert!(layer0.optimize, "{}", layer0.reason);
    let json = serde_json::to_value(layer0).unwrap();
    assert_eq!(json["kind"], "single_channel");
}

#[test]
fn a_torch_saved_grayscale_network_with_a_depthwise_conv() {
    // make.py's Net: conv1 reads the input's one channel, conv2 (groups=4) conv1's 4 channels.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch/training.pth");
    let input = Input::resolve(path.to_str().unwrap(), &ResolveOptions::default()).unwrap();
    let opened = input.open(0).unwrap();
    let entries = plan(opened.files[0].tensors(), &Selection::default());
    assert_kinds(
        &entries,
        &[
            ("conv1.weight", ConvKind::SingleChannel),
            ("conv2.weight", ConvKind::Depthwise),
        ],
    );
}

#[test]
fn real_architectures_get_the_kinds_their_modules_define() {
    // tests/fixtures/architectures/make.py: torchvision and timm models, two of them with a
    // one-channel stem, each line `NAME SHAPE KIND` with the kind from the module's groups.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/architectures");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 13, "{files:?}");
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut infos = Vec::new();
        let mut expected = Vec::new();
        for line in text.lines() {
            let [name, shape, kind] = line.split(' ').collect::<Vec<_>>()[..] else {
                panic!("{}: bad line '{line}'", file.display());
            };
            infos.push(TensorInfo {
                name: name.into(),
                dtype: Dtype::F32,
                shape: shape.split('x').map(|d| d.parse().unwrap()).collect(),
                begin: 0,
                end: 0,
            });
            expected.push(match kind {
                "depthwise" => Some(ConvKind::Depthwise),
                "single_channel" => Some(ConvKind::SingleChannel),
                _ => None,
            });
        }
        for (entry, expected) in plan(&infos, &Selection::default()).iter().zip(expected) {
            let one_channel = matches!(
                entry.kind,
                Some(ConvKind::Depthwise | ConvKind::SingleChannel)
            );
            match expected {
                Some(kind) => {
                    assert_eq!(
                        entry.kind,
                        Some(kind),
                        "{}: {}: {}",
                        file.display(),
                        entry.name,
                        entry.reason
                    );
                    checked += 1;
                }
                None => assert!(
                    !one_channel,
                    "{}: {}: {}",
                    file.display(),
                    entry.name,
                    entry.reason
                ),
            }
        }
    }
    assert!(checked > 150, "{checked}");
}
