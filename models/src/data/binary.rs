//! The official CIFAR-10 binary format: records of `<1 byte label><3072 pixel bytes>`, in
//! `data_batch_1.bin` … `data_batch_5.bin` and `test_batch.bin`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{read, Dataset, Split, IMAGE_BYTES};

const RECORD_BYTES: usize = 1 + IMAGE_BYTES;

/// Parses the records of one batch file.
pub fn parse(bytes: &[u8], origin: &Path) -> Result<Dataset> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD_BYTES) {
        bail!(
            "{}: {} bytes is not a whole number of CIFAR-10 records ({RECORD_BYTES} bytes each)",
            origin.display(),
            bytes.len()
        );
    }
    let count = bytes.len() / RECORD_BYTES;
    let mut dataset = Dataset {
        pixels: Vec::with_capacity(count * IMAGE_BYTES),
        labels: Vec::with_capacity(count),
    };
    for (index, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let label = record[0];
        if label > 9 {
            bail!(
                "{}: record {index} has label {label}; CIFAR-10 labels are 0 to 9",
                origin.display()
            );
        }
        dataset.labels.push(label);
        dataset.pixels.extend_from_slice(&record[1..]);
    }
    Ok(dataset)
}

/// Writes records in the same format (used for the decoded-archive cache).
pub fn encode(dataset: &Dataset) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(dataset.len() * RECORD_BYTES);
    for (index, &label) in dataset.labels.iter().enumerate() {
        bytes.push(label);
        bytes.extend_from_slice(dataset.image(index));
    }
    bytes
}

/// The batch files of `split` in `dir`, in order: `data_batch_*.bin` for training and
/// `test_batch*.bin` for testing (the prefixes also match cut-down copies such as
/// `test_batch_first1017.bin`).
fn batch_files(dir: &Path, split: Split) -> Result<Vec<PathBuf>> {
    let prefix = match split {
        Split::Train => "data_batch",
        Split::Test => "test_batch",
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with(prefix) && name.ends_with(".bin") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Whether `dir` holds batch files of either split.
pub fn holds_batches(dir: &Path) -> Result<bool> {
    Ok(!batch_files(dir, Split::Train)?.is_empty() || !batch_files(dir, Split::Test)?.is_empty())
}

/// All records of `split` in `dir`.
pub fn load_dir(dir: &Path, split: Split) -> Result<Dataset> {
    let files = batch_files(dir, split)?;
    if files.is_empty() {
        bail!(
            "{} has no {} batch file ({})",
            dir.display(),
            split,
            match split {
                Split::Train => "data_batch_N.bin",
                Split::Test => "test_batch.bin",
            }
        );
    }
    let mut all = Dataset {
        pixels: Vec::new(),
        labels: Vec::new(),
    };
    for file in files {
        let part = parse(&read(&file)?, &file)?;
        all.pixels.extend_from_slice(&part.pixels);
        all.labels.extend_from_slice(&part.labels);
    }
    Ok(all)
}
