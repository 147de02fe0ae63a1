//! The CIFAR-10 loaders: the official binary format on real records, the image-folder layout and
//! its .tar.gz, and the mini-batches.

use crate::common;

use std::io::Write;
use std::path::Path;

use candle_core::Device;
use models::data::{Augment, Batches, Dataset, Normalization, Source, Split, CLASSES, IMAGE_BYTES};

fn bin_prefix() -> Option<Source> {
    let dir = common::shared("cifar10/bin-prefix")?;
    Some(Source::new(dir))
}

#[test]
fn official_binary_records_load_with_their_labels() {
    let Some(source) = bin_prefix() else { return };
    let test = source.load(Split::Test).unwrap();
    let train = source.load(Split::Train).unwrap();
    assert_eq!((test.len(), train.len()), (1017, 1017));
    assert_eq!(test.pixels.len(), 1017 * IMAGE_BYTES);
    assert_eq!(test.labels[..10], common::FIRST_TEST_LABELS);
    assert_eq!(train.labels[..10], common::FIRST_TRAIN_LABELS);
    assert!(
        test.class_counts().iter().all(|&n| n > 70),
        "{:?}",
        test.class_counts()
    );
}

#[test]
fn broken_binary_files_are_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("test_batch.bin"), vec![0u8; 3073 * 2 + 5]).unwrap();
    let error = Source::new(dir.path())
        .load(Split::Test)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("test_batch.bin") && error.contains("whole number"),
        "{error}"
    );

    let mut record = vec![0u8; 3073];
    record[0] = 10;
    std::fs::write(dir.path().join("test_batch.bin"), &record).unwrap();
    let error = Source::new(dir.path())
        .load(Split::Test)
        .unwrap_err()
        .to_string();
    assert!(error.contains("label 10"), "{error}");

    let error = Source::new(dir.path())
        .load(Split::Train)
        .unwrap_err()
        .to_string();
    assert!(error.contains("data_batch_N.bin"), "{error}");
    let error = Source::new(dir.path().join("missing"))
        .load(Split::Test)
        .unwrap_err()
        .to_string();
    assert!(error.contains("not found"), "{error}");
}

/// Writes `dataset` as PNG files (lossless) in the image-folder layout under `root/split`.
fn write_folder(root: &Path, split: &str, dataset: &Dataset) {
    for (index, &label) in dataset.labels.iter().enumerate() {
        let dir = root.join(split).join(CLASSES[label as usize]);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("{index:04}.png")),
            png(dataset.image(index)),
        )
        .unwrap();
    }
}

fn png(planar: &[u8]) -> Vec<u8> {
    let mut rgb = image::RgbImage::new(32, 32);
    for (i, pixel) in rgb.pixels_mut().enumerate() {
        *pixel = image::Rgb([planar[i], planar[1024 + i], planar[2048 + i]]);
    }
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(rgb)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes
}

/// The same images in class order, files by name: the order both folder loaders produce.
fn in_class_order(dataset: &Dataset) -> Dataset {
    let mut order: Vec<usize> = (0..dataset.len()).collect();
    order.sort_by_key(|&i| (dataset.labels[i], i));
    Dataset {
        pixels: order
            .iter()
            .flat_map(|&i| dataset.image(i).to_vec())
            .collect(),
        labels: order.iter().map(|&i| dataset.labels[i]).collect(),
    }
}

#[test]
fn image_folders_and_their_archive_decode_to_the_same_records() {
    let Some(source) = bin_prefix() else { return };
    let test = source.load(Split::Test).unwrap().balanced_subset(40);
    let train = source.load(Split::Train).unwrap().balanced_subset(30);
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    write_folder(&tree, "test", &test);
    write_folder(&tree, "train", &train);
    std::fs::write(tree.join("README.md"), "not an image").unwrap();

    let from_folder = Source::new(&tree);
    assert_eq!(
        from_folder.load(Split::Test).unwrap(),
        in_class_order(&test)
    );
    assert_eq!(
        from_folder.load(Split::Train).unwrap(),
        in_class_order(&train)
    );

    // The same tree as a .tar.gz, under a leading folder, read through a cache.
    let archive = dir.path().join("cifar.tar.gz");
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        std::fs::File::create(&archive).unwrap(),
        flate2::Compression::fast(),
    ));
    builder.append_dir_all("cifar10", &tree).unwrap();
    builder
        .into_inner()
        .unwrap()
        .finish()
        .unwrap()
        .flush()
        .unwrap();
    let cache = dir.path().join("cache");
    let from_archive = Source {
        path: archive.clone(),
        cache_dir: cache.clone(),
    };
    assert_eq!(
        from_archive.load(Split::Test).unwrap(),
        in_class_order(&test)
    );
    assert_eq!(
        from_archive.load(Split::Train).unwrap(),
        in_class_order(&train)
    );

    // A second load reads the cache, not the archive: change the cached test split and see it.
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "one cache entry: {entries:?}");
    let cached = entries[0].join("test.bin");
    let mut bytes = std::fs::read(&cached).unwrap();
    bytes.truncate(3073);
    std::fs::write(&cached, &bytes).unwrap();
    assert_eq!(from_archive.load(Split::Test).unwrap().len(), 1);
}

#[test]
fn unknown_class_folders_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("test/unicorn")).unwrap();
    let error = Source::new(dir.path())
        .load(Split::Test)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("unicorn") && error.contains("airplane"),
        "{error}"
    );
}

fn synthetic(count: usize) -> Dataset {
    Dataset {
        pixels: (0..count * IMAGE_BYTES)
            .map(|i| (i * 7 % 251) as u8)
            .collect(),
        labels: (0..count).map(|i| (i * 3 % 10) as u8).collect(),
    }
}

#[test]
fn balanced_subsets_take_every_class_in_turn() {
    let dataset = synthetic(200);
    let subset = dataset.balanced_subset(50);
    assert_eq!(subset.class_counts(), [5; 10]);
    assert_eq!(dataset.balanced_subset(1000).len(), 200);
    // Each class's images keep their order.
    let first_of_class_3 = dataset.labels.iter().position(|&l| l == 3).unwrap();
    let k = subset.labels.iter().position(|&l| l == 3).unwrap();
    assert_eq!(subset.image(k), dataset.image(first_of_class_3));
}

#[test]
fn batches_normalize_and_cover_every_image_once() {
    let dataset = synthetic(23);
    let n = Normalization::CIFAR10;
    let batches: Vec<_> = Batches::sequential(&dataset, 10, n, &Device::Cpu)
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        batches
            .iter()
            .map(|b| b.labels.dim(0).unwrap())
            .collect::<Vec<_>>(),
        [10, 10, 3]
    );
    let first = batches[0]
        .images
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for (i, &value) in first.iter().take(IMAGE_BYTES).enumerate() {
        let c = i / 1024;
        let expected = (f32::from(dataset.pixels[i]) / 255.0 - n.mean[c]) / n.std[c];
        assert!((value - expected).abs() < 1e-5);
    }
    for augment in [Augment::None, Augment::CropFlip] {
        let mut labels: Vec<u32> = Batches::shuffled(&dataset, 4, n, augment, 7, &Device::Cpu)
            .flat_map(|b| b.unwrap().labels.to_vec1::<u32>().unwrap())
            .collect();
        labels.sort();
        let mut expected: Vec<u32> = dataset.labels.iter().map(|&l| u32::from(l)).collect();
        expected.sort();
        assert_eq!(labels, expected);
    }
    // Seeded: the same seed gives the same augmented batches.
    let a = Batches::shuffled(&dataset, 23, n, Augment::CropFlip, 1, &Device::Cpu)
        .next()
        .unwrap()
        .unwrap();
    let b = Batches::shuffled(&dataset, 23, n, Augment::CropFlip, 1, &Device::Cpu)
        .next()
        .unwrap()
        .unwrap();
    let difference = (a.images - b.images)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap();
    assert_eq!(difference.to_scalar::<f32>().unwrap(), 0.0);
}
