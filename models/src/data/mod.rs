//! CIFAR-10 in memory, from any of the layouts it is distributed in, and its mini-batches.
//!
//! Every layout is decoded into the same form, the official binary one: per image one label
//! byte and 3072 pixel bytes (1024 R, 1024 G, 1024 B, row-major), so everything downstream sees
//! exactly what a PyTorch `ToTensor` pipeline would see before normalization.

mod archive;
mod batches;
mod binary;
mod folder;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use batches::{Augment, Batch, Batches, Normalization};

/// The ten classes, in the official label order.
pub const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Side of a CIFAR image.
pub const SIDE: usize = 32;
/// Bytes of one image: 3 planes of 32x32.
pub const IMAGE_BYTES: usize = 3 * SIDE * SIDE;

/// The training or the test part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    /// The folder name of the image-folder layout.
    pub fn folder(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.folder())
    }
}

/// Decoded images and their labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// `len() * IMAGE_BYTES` bytes, image after image, each as 3 planes (R, G, B) of 32x32.
    pub pixels: Vec<u8>,
    /// One class index (0..10) per image.
    pub labels: Vec<u8>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixel bytes of image `index`.
    pub fn image(&self, index: usize) -> &[u8] {
        &self.pixels[index * IMAGE_BYTES..(index + 1) * IMAGE_BYTES]
    }

    /// `count` images drawn evenly from the classes: the first image of every class, then the
    /// second of every class, and so on (all of them when there are fewer). Deterministic, and
    /// balanced whatever the order of the full set (the image-folder layout is sorted by class).
    pub fn balanced_subset(&self, count: usize) -> Dataset {
        let mut by_class: [Vec<usize>; 10] = Default::default();
        for (index, &label) in self.labels.iter().enumerate() {
            by_class[label as usize].push(index);
        }
        let longest = by_class.iter().map(Vec::len).max().unwrap_or(0);
        let chosen = (0..longest)
            .flat_map(|rank| {
                by_class
                    .iter()
                    .filter_map(move |class| class.get(rank).copied())
            })
            .take(count);
        let mut subset = Dataset {
            pixels: Vec::with_capacity(count.min(self.len()) * IMAGE_BYTES),
            labels: Vec::with_capacity(count.min(self.len())),
        };
        for index in chosen {
            subset.pixels.extend_from_slice(self.image(index));
            subset.labels.push(self.labels[index]);
        }
        subset
    }

    /// How many images of each class.
    pub fn class_counts(&self) -> [usize; 10] {
        let mut counts = [0; 10];
        for &label in &self.labels {
            counts[label as usize] += 1;
        }
        counts
    }
}

/// Where the data is and how to read it.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    /// Where a decoded archive is kept so that it is decoded only once.
    pub cache_dir: PathBuf,
}

impl Source {
    /// `path` with the default cache directory.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            cache_dir: default_cache_dir(),
        }
    }

    /// Loads one split. The layout is recognized from what `path` is:
    /// - a directory with `data_batch_*.bin` / `test_batch*.bin` files: the official binary format;
    /// - a directory with `train/` and `test/` class folders: the image-folder layout;
    /// - a `.tar.gz` / `.tgz` file holding that layout: decoded once into the cache.
    pub fn load(&self, split: Split) -> Result<Dataset> {
        let path = &self.path;
        if !path.exists() {
            bail!("CIFAR-10 data not found at {}", path.display());
        }
        let dataset = if path.is_dir() {
            if binary::holds_batches(path)? {
                binary::load_dir(path, split)?
            } else if path.join(split.folder()).is_dir() {
                folder::load(&path.join(split.folder()))?
            } else {
                bail!(
                    "{} is neither a CIFAR-10 binary directory (data_batch_N.bin, test_batch.bin) \
                     nor an image-folder tree with a `{}` folder",
                    path.display(),
                    split.folder()
                );
            }
        } else if archive::is_archive(path) {
            archive::load(path, &self.cache_dir, split)?
        } else {
            bail!(
                "{}: expected a directory or a .tar.gz of the CIFAR-10 image-folder layout",
                path.display()
            );
        };
        if dataset.is_empty() {
            bail!("{} holds no {split} images", path.display());
        }
        Ok(dataset)
    }
}

/// `$XDG_CACHE_HOME/cs-init/cifar10`, or `~/.cache/cs-init/cifar10`.
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("cs-init").join("cifar10")
}

/// Reads a whole file, naming it in the error.
fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}
