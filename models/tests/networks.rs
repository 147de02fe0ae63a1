//! The networks: parameter counts against PyTorch's, seeding, loading, and the arms' effect on
//! L_CS.

use crate::common;

use candle_core::{DType, Device, Tensor};
use models::data::{Normalization, Source, Split};
use models::train::{conv_similarities, initial_network, train, Arm, TrainConfig};
use models::{Architecture, Network};

#[test]
fn parameter_counts_match_pytorch() {
    // CNN1/CNN2: the paper (paper-tables.md). ResNet-20/56: pytorch_resnet_cifar10's
    // checkpoints without BatchNorm's running statistics. ResNet-18: the usual CIFAR variant.
    for (architecture, count) in [
        (Architecture::Cnn1, 118_858),
        (Architecture::Cnn2, 458_890),
        (Architecture::Resnet20, 269_722),
        (Architecture::Resnet56, 853_018),
        (Architecture::Resnet18, 11_173_962),
    ] {
        let network = Network::new(architecture, 0, &Device::Cpu).unwrap();
        assert_eq!(network.parameter_count(), count, "{architecture}");
    }
}

#[test]
fn every_network_maps_images_to_ten_logits_in_both_modes() {
    let images = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &Device::Cpu).unwrap();
    for architecture in [
        Architecture::Cnn1,
        Architecture::Cnn2,
        Architecture::Resnet20,
        Architecture::Resnet32,
        Architecture::Resnet18,
    ] {
        let network = Network::new(architecture, 0, &Device::Cpu).unwrap();
        for train in [true, false] {
            let logits = network.forward_t(&images, train).unwrap();
            assert_eq!(logits.dims(), [2, 10], "{architecture}");
        }
        let convs = network.conv_weights();
        assert!(convs
            .iter()
            .all(|(name, var)| name.ends_with("weight") && var.rank() == 4));
    }
    let resnet20 = Network::new(Architecture::Resnet20, 0, &Device::Cpu).unwrap();
    assert_eq!(resnet20.conv_weights().len(), 19);
    let resnet18 = Network::new(Architecture::Resnet18, 0, &Device::Cpu).unwrap();
    assert_eq!(resnet18.conv_weights().len(), 20);
}

#[test]
fn conv_inputs_are_what_each_conv_sees() {
    let images = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &Device::Cpu).unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for architecture in [
        Architecture::Cnn1,
        Architecture::Resnet20,
        Architecture::Resnet18,
    ] {
        let network = Network::new(architecture, 0, &Device::Cpu).unwrap();
        let inputs = network.conv_inputs(&images, false).unwrap();
        let mut names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
        let convs = network.conv_weights();
        let mut expected: Vec<&str> = convs.iter().map(|(n, _)| n.as_str()).collect();
        names.sort();
        expected.sort();
        assert_eq!(names, expected, "{architecture}: one input per conv");
        assert_eq!(flat(&inputs[0].1), flat(&images), "{architecture}");
        for (name, x) in &inputs {
            let (_, weight) = convs.iter().find(|(n, _)| n == name).unwrap();
            assert_eq!(x.dim(0).unwrap(), 2);
            assert_eq!(x.dim(1).unwrap(), weight.dim(1).unwrap(), "{name}");
        }
        // A plain forward records nothing, and a second capture starts empty.
        network.forward_t(&images, false).unwrap();
        assert_eq!(
            network.conv_inputs(&images, false).unwrap().len(),
            convs.len()
        );
    }
    // The second conv of CNN1 sees the first block's output.
    let cnn = Network::new(Architecture::Cnn1, 0, &Device::Cpu).unwrap();
    let inputs = cnn.conv_inputs(&images, false).unwrap();
    assert_eq!(inputs[1].1.dims(), [2, 64, 17, 17]);
}

fn tensors(network: &Network) -> Vec<(String, Vec<f32>)> {
    network
        .params
        .vars()
        .into_iter()
        .map(|(name, var)| (name, var.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[test]
fn seeds_make_initialization_reproducible() {
    let a = Network::new(Architecture::Cnn1, 7, &Device::Cpu).unwrap();
    let b = Network::new(Architecture::Cnn1, 7, &Device::Cpu).unwrap();
    let c = Network::new(Architecture::Cnn1, 8, &Device::Cpu).unwrap();
    assert_eq!(tensors(&a), tensors(&b));
    assert_ne!(tensors(&a), tensors(&c));
    // PyTorch's default bound for conv2 (fan-in 64*9): U(±1/24).
    let conv2 = a.params.var("conv2.weight").unwrap();
    let max = conv2
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(max <= 1.0 / 24.0 && max > 0.9 / 24.0, "{max}");
}

#[test]
fn saved_networks_load_back_and_mismatches_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cnn1.safetensors");
    let network = Network::new(Architecture::Cnn1, 3, &Device::Cpu).unwrap();
    network.params.save(&path).unwrap();
    let loaded = Network::load(Architecture::Cnn1, &path, &Device::Cpu).unwrap();
    assert_eq!(tensors(&loaded), tensors(&network));

    let error = match Network::load(Architecture::Resnet20, &path, &Device::Cpu) {
        Ok(_) => panic!("a CNN1 checkpoint loaded as ResNet-20"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("no tensor `conv1.weight`") || error.contains("shape"),
        "{error}"
    );
    assert!(error.contains("--model"), "{error}");

    // A tensor the network does not have.
    let mut extra = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    extra.insert(
        "head.weight".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&extra, &path).unwrap();
    let error = match Network::load(Architecture::Cnn1, &path, &Device::Cpu) {
        Ok(_) => panic!("an unknown tensor was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("head.weight"), "{error}");
}

fn config(arm: Arm) -> TrainConfig {
    TrainConfig {
        architecture: Architecture::Cnn1,
        arm,
        epochs: 1,
        batch_size: 32,
        lr: 0.01,
        momentum: 0.0,
        seed: 0,
        augment: Default::default(),
        normalization: Normalization::CIFAR10,
    }
}

#[test]
fn cs_initialization_lowers_every_layer_and_regularization_pulls_it_down() {
    let baseline = initial_network(&config(Arm::baseline()), &Device::Cpu).unwrap();
    let cs_init = Arm {
        cs_init_iterations: 20,
        ..Arm::baseline()
    };
    let initialized = initial_network(&config(cs_init), &Device::Cpu).unwrap();
    let before = conv_similarities(&baseline).unwrap();
    let after = conv_similarities(&initialized).unwrap();
    for (name, value) in &after {
        assert!(
            *value < 0.9 * before[name],
            "{name}: {} -> {value}",
            before[name]
        );
    }

    let Some(dir) = common::shared("cifar10/bin-prefix") else {
        return;
    };
    let data = Source::new(dir);
    let train_set = data.load(Split::Train).unwrap().balanced_subset(64);
    let test_set = data.load(Split::Test).unwrap().balanced_subset(20);
    let run = |arm: Arm| {
        let mut records = Vec::new();
        train(
            &config(arm),
            &train_set,
            &test_set,
            &Device::Cpu,
            &mut |r| {
                records.push(r.clone());
                Ok(())
            },
        )
        .unwrap();
        records
    };
    let plain = run(Arm::baseline());
    let regularized = run(Arm {
        cs_beta: 1.0,
        ..Arm::baseline()
    });
    assert_eq!(plain.len(), 2);
    assert_eq!(plain[0].l_cs, regularized[0].l_cs, "same seed, same start");
    for (name, value) in &regularized[1].l_cs {
        assert!(*value < plain[1].l_cs[name], "{name}");
    }
    let first = &plain[1];
    assert!(first.train_loss.unwrap().is_finite() && first.train_accuracy.is_some());
    assert_eq!(first.arm, "baseline");
    assert_eq!(regularized[1].arm, "cs-reg");
}
