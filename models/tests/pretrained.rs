//! The end-to-end check of the model code, the loaders and the data pipeline: the real pretrained
//! ResNet-20 scores in candle what it scores in PyTorch (about 91.6 % on the 1017 original test
//! records and about 81 % on the 10,000 JPEG test images).

use crate::common;

use candle_core::Device;
use models::data::{Normalization, Source, Split};
use models::eval::evaluate;
use models::{Architecture, Network};

fn resnet20() -> Option<Network> {
    let checkpoint = common::shared("checkpoints/resnet20-cifar10.safetensors")?;
    Some(Network::load(Architecture::Resnet20, &checkpoint, &Device::Cpu).unwrap())
}

#[test]
fn resnet20_on_the_original_test_records() {
    let Some(network) = resnet20() else { return };
    let Some(dir) = common::shared("cifar10/bin-prefix") else {
        return;
    };
    let test = Source::new(dir).load(Split::Test).unwrap();
    let accuracy = evaluate(&network, &test, Normalization::IMAGENET, &Device::Cpu).unwrap();
    assert_eq!(accuracy.images, 1017);
    assert!(
        (accuracy.percent() - 91.6).abs() < 0.3,
        "{}",
        accuracy.percent()
    );
}

#[test]
fn resnet20_on_the_jpeg_test_images() {
    let Some(network) = resnet20() else { return };
    let Some(archive) = common::shared("cifar10/cifar10-jpeg-q75.tar.gz") else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let source = Source {
        path: archive,
        cache_dir: cache.path().to_path_buf(),
    };
    let test = source.load(Split::Test).unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(test.class_counts(), [1000; 10]);
    let accuracy = evaluate(&network, &test, Normalization::IMAGENET, &Device::Cpu).unwrap();
    assert!(
        (accuracy.percent() - 81.0).abs() < 0.5,
        "{}",
        accuracy.percent()
    );
}

#[test]
fn recalibrated_batch_norm_undoes_a_change_of_conv_scale() {
    let Some(dir) = common::shared("cifar10/bin-prefix") else {
        return;
    };
    let Some(network) = resnet20() else { return };
    let source = Source::new(dir);
    let test = source.load(Split::Test).unwrap().balanced_subset(300);
    let train = source.load(Split::Train).unwrap().balanced_subset(500);
    let accuracy = |network: &Network| {
        evaluate(network, &test, Normalization::IMAGENET, &Device::Cpu)
            .unwrap()
            .percent()
    };
    let shrunk = resnet20().unwrap();
    for (_, var) in shrunk.conv_weights() {
        var.set(&(var.as_tensor() * 0.05).unwrap()).unwrap();
    }
    // The stored statistics no longer fit the weights: the network is broken.
    assert!(accuracy(&shrunk) < 30.0, "{}", accuracy(&shrunk));
    // Re-estimated from the same images, the statistics follow the scale, and batch norm makes
    // the network what it was (up to BatchNorm's eps).
    network
        .recalibrate_batch_norm(&train, Normalization::IMAGENET, &Device::Cpu)
        .unwrap();
    shrunk
        .recalibrate_batch_norm(&train, Normalization::IMAGENET, &Device::Cpu)
        .unwrap();
    let (original, repaired) = (accuracy(&network), accuracy(&shrunk));
    assert!(original > 80.0, "{original}");
    assert!(
        (original - repaired).abs() <= 1.0,
        "{original} vs {repaired}"
    );
}
