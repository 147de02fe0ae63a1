//! The image-folder layout: `<split>/<class>/<name>.jpg` (or `.png`), class folders named after
//! the CIFAR-10 classes.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use super::{read, Dataset, CLASSES, IMAGE_BYTES, SIDE};

/// The label of a class folder.
pub fn label_of(class: &str) -> Option<u8> {
    CLASSES.iter().position(|&c| c == class).map(|i| i as u8)
}

/// Whether a file name is an image this layout holds.
pub fn is_image(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".jpg") || lower.ends_with(".jpeg") || lower.ends_with(".png")
}

/// Decodes one encoded image into planar RGB bytes.
pub fn decode(bytes: &[u8], origin: &str) -> Result<Vec<u8>> {
    let image = image::load_from_memory(bytes)
        .with_context(|| format!("cannot decode image {origin}"))?
        .to_rgb8();
    if image.width() as usize != SIDE || image.height() as usize != SIDE {
        bail!(
            "{origin} is {}x{}; CIFAR-10 images are {SIDE}x{SIDE}",
            image.width(),
            image.height()
        );
    }
    let mut planar = vec![0u8; IMAGE_BYTES];
    for (index, pixel) in image.pixels().enumerate() {
        for channel in 0..3 {
            planar[channel * SIDE * SIDE + index] = pixel[channel];
        }
    }
    Ok(planar)
}

/// Decodes `(label, origin, encoded bytes)` entries in parallel, keeping their order.
pub fn decode_all(entries: Vec<(u8, String, Vec<u8>)>) -> Result<Dataset> {
    let decoded: Vec<Vec<u8>> = entries
        .par_iter()
        .map(|(_, origin, bytes)| decode(bytes, origin))
        .collect::<Result<_>>()?;
    Ok(Dataset {
        pixels: decoded.concat(),
        labels: entries.iter().map(|(label, _, _)| *label).collect(),
    })
}

/// Every image under `split_dir`, class by class in label order, files by name.
pub fn load(split_dir: &Path) -> Result<Dataset> {
    let mut entries = Vec::new();
    let mut classes = Vec::new();
    for entry in std::fs::read_dir(split_dir)
        .with_context(|| format!("cannot list {}", split_dir.display()))?
    {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let Some(label) = label_of(&name) else {
            bail!(
                "{}: `{name}` is not a CIFAR-10 class (expected one of {})",
                split_dir.display(),
                CLASSES.join(", ")
            );
        };
        classes.push((label, path));
    }
    classes.sort();
    for (label, dir) in classes {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        files.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_image));
        files.sort();
        for file in files {
            let bytes = read(&file)?;
            entries.push((label, file.display().to_string(), bytes));
        }
    }
    decode_all(entries)
}
