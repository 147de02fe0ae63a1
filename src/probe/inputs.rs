//! The probe's inputs: U(0, 1) or centered noise drawn per layer from the seed, or images from
//! a folder, decoded once and resized.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::{Probe, ProbeSource};
use crate::{Error, Result};

impl Probe {
    /// The inputs for a layer with `channels` input channels, `[B, C, H, W]`; the same for the
    /// same `layer` index, so a layer is measured on the same inputs before and after.
    pub fn inputs(&self, channels: usize, layer: u64) -> Result<Tensor> {
        let s = &self.settings;
        let noise = |seed: u64, offset: f32| -> Result<Tensor> {
            // StdRng's generator: the floats `StdRng::random::<f32>()` would draw one at a time,
            // drawn in parallel chunks from their positions in the stream.
            let rng = rand_chacha::ChaCha12Rng::seed_from_u64(
                seed.wrapping_add(layer.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            );
            let mut data = vec![0f32; s.batch * channels * s.height * s.width];
            data.par_chunks_mut(NOISE_CHUNK)
                .enumerate()
                .for_each(|(chunk, out)| {
                    let mut rng = rng.clone();
                    rng.set_word_pos((chunk * NOISE_CHUNK) as u128);
                    let mut words = vec![0u32; out.len()];
                    rng.fill(&mut words[..]);
                    for (v, w) in out.iter_mut().zip(words) {
                        *v = unit_float(w) - offset;
                    }
                });
            Ok(Tensor::from_vec(
                data,
                (s.batch, channels, s.height, s.width),
                &self.device,
            )?)
        };
        match (&s.source, &self.images) {
            (ProbeSource::Random { seed }, _) => noise(*seed, 0.0),
            (ProbeSource::Centered { seed }, _) => noise(*seed, 0.5),
            (_, Some(images)) => {
                let picks: Vec<u32> = (0..channels as u32).map(|c| c % 3).collect();
                let index = Tensor::from_vec(picks, channels, &self.device)?;
                Ok(images.index_select(&index, 1)?)
            }
            (ProbeSource::Images { .. }, None) => unreachable!("images are loaded in Probe::new"),
        }
    }
}

/// Noise values drawn per task.
const NOISE_CHUNK: usize = 1 << 16;

/// `rand`'s `StandardUniform` f32 of a word: its 24 high bits scaled to [0, 1).
pub(super) fn unit_float(word: u32) -> f32 {
    (word >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// `batch` images evenly spaced over the files under `dir` sorted by path, as `[B, 3, H, W]` in
/// [0, 1].
pub(super) fn load_images(
    dir: &Path,
    batch: usize,
    height: usize,
    width: usize,
    device: &Device,
) -> Result<Tensor> {
    let mut files = Vec::new();
    collect_images(dir, &mut files)?;
    files.sort();
    if files.len() < batch {
        return Err(Error::Probe(format!(
            "{}: found {} PNG/JPEG images, the probe batch needs {batch}",
            dir.display(),
            files.len()
        )));
    }
    let mut data = Vec::with_capacity(batch * 3 * height * width);
    for k in 0..batch {
        let file = &files[k * files.len() / batch];
        let image =
            image::open(file).map_err(|e| Error::Probe(format!("{}: {e}", file.display())))?;
        let rgb = image
            .resize_exact(
                width as u32,
                height as u32,
                image::imageops::FilterType::Triangle,
            )
            .to_rgb8();
        for channel in 0..3 {
            data.extend(rgb.pixels().map(|p| f32::from(p.0[channel]) / 255.0));
        }
    }
    Ok(Tensor::from_vec(data, (batch, 3, height, width), device)?)
}

fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::Probe(format!("{}: {e}", dir.display())))?;
    for entry in entries {
        let path = entry
            .map_err(|e| Error::Probe(format!("{}: {e}", dir.display())))?
            .path();
        if path.is_dir() {
            collect_images(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        {
            out.push(path);
        }
    }
    Ok(())
}
