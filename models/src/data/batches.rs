//! Mini-batches as normalized tensors, with optional shuffling and augmentation.

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::{Dataset, IMAGE_BYTES, SIDE};

/// Per-channel normalization, `(pixel / 255 - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    /// The ImageNet statistics, used by the pretrained CIFAR ResNets of `pytorch_resnet_cifar10`.
    pub const IMAGENET: Normalization = Normalization {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
    /// CIFAR-10's own training-set statistics.
    pub const CIFAR10: Normalization = Normalization {
        mean: [0.4914, 0.4822, 0.4465],
        std: [0.2470, 0.2435, 0.2616],
    };
}

/// Training-time augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Augment {
    /// The images as they are (the paper's setting).
    #[default]
    None,
    /// A random 32x32 crop of the image zero-padded by 4 pixels, then a horizontal flip with
    /// probability 1/2 (torchvision's `RandomCrop(32, padding=4)` + `RandomHorizontalFlip`).
    CropFlip,
}

/// One mini-batch.
pub struct Batch {
    /// `[B, 3, 32, 32]` f32, normalized.
    pub images: Tensor,
    /// `[B]` u32 class indices.
    pub labels: Tensor,
}

/// Iterates over a dataset in mini-batches; the last batch may be smaller.
pub struct Batches<'a> {
    dataset: &'a Dataset,
    order: Vec<usize>,
    position: usize,
    batch_size: usize,
    normalization: Normalization,
    augment: Augment,
    rng: StdRng,
    device: Device,
}

impl<'a> Batches<'a> {
    /// In dataset order, without augmentation (evaluation).
    pub fn sequential(
        dataset: &'a Dataset,
        batch_size: usize,
        normalization: Normalization,
        device: &Device,
    ) -> Self {
        Self {
            dataset,
            order: (0..dataset.len()).collect(),
            position: 0,
            batch_size,
            normalization,
            augment: Augment::None,
            rng: StdRng::seed_from_u64(0),
            device: device.clone(),
        }
    }

    /// In an order shuffled by `seed`, augmented as asked (one training epoch).
    pub fn shuffled(
        dataset: &'a Dataset,
        batch_size: usize,
        normalization: Normalization,
        augment: Augment,
        seed: u64,
        device: &Device,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..dataset.len()).collect();
        order.shuffle(&mut rng);
        Self {
            order,
            augment,
            rng,
            ..Self::sequential(dataset, batch_size, normalization, device)
        }
    }
}

impl Iterator for Batches<'_> {
    type Item = candle_core::Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.position >= self.order.len() {
            return None;
        }
        let end = (self.position + self.batch_size).min(self.order.len());
        let count = end - self.position;
        let mut images = Vec::with_capacity(count * IMAGE_BYTES);
        let mut labels = Vec::with_capacity(count);
        for k in self.position..end {
            let index = self.order[k];
            let (dy, dx, flip) = match self.augment {
                Augment::None => (0, 0, false),
                Augment::CropFlip => (
                    self.rng.random_range(-4i32..=4) as isize,
                    self.rng.random_range(-4i32..=4) as isize,
                    self.rng.random_bool(0.5),
                ),
            };
            push_normalized(
                &mut images,
                self.dataset.image(index),
                &self.normalization,
                (dy, dx, flip),
            );
            labels.push(u32::from(self.dataset.labels[index]));
        }
        self.position = end;
        Some((|| {
            Ok(Batch {
                images: Tensor::from_vec(images, (count, 3, SIDE, SIDE), &self.device)?,
                labels: Tensor::from_vec(labels, count, &self.device)?,
            })
        })())
    }
}

/// Appends one image, shifted by `(dy, dx)` with zero (black) fill and optionally mirrored, then
/// normalized: the same as padding by 4 and cropping at `(4 + dy, 4 + dx)`.
fn push_normalized(
    out: &mut Vec<f32>,
    image: &[u8],
    normalization: &Normalization,
    (dy, dx, flip): (isize, isize, bool),
) {
    let side = SIDE as isize;
    for c in 0..3 {
        let plane = &image[c * SIDE * SIDE..(c + 1) * SIDE * SIDE];
        let scale = 1.0 / (255.0 * normalization.std[c]);
        let offset = normalization.mean[c] / normalization.std[c];
        for y in 0..side {
            for x in 0..side {
                let sy = y + dy;
                let sx = if flip { side - 1 - x } else { x } + dx;
                let value = if (0..side).contains(&sy) && (0..side).contains(&sx) {
                    plane[(sy * side + sx) as usize]
                } else {
                    0
                };
                out.push(f32::from(value) * scale - offset);
            }
        }
    }
}
