//! The feature-map probe: how alike the feature maps of a conv layer's filters are, measured
//! directly. Inputs go through one layer on its own (stride 1, `same` padding by default), and
//! the figure is the mean absolute cosine between the feature maps of filter pairs `i < j`,
//! averaged over the inputs. This is the quantity L_CS is a bound for (docs/math.md).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};

use crate::{Error, Result};

/// Zero padding of the probe's convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// Output the size of the input (`k - 1` zeros split over both sides).
    #[default]
    Same,
    /// No padding.
    Valid,
    /// `k - 1` zeros on each side: every overlap of kernel and input.
    Full,
}

/// Where the probe's inputs come from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum ProbeSource {
    /// U(0, 1) noise, as in the paper's experiments; drawn per layer from `seed`.
    Random { seed: u64 },
    /// Images from a folder (PNG/JPEG, searched recursively; `batch` of them evenly spaced over the
    /// files sorted by path, so that class folders are all represented), resized, scaled to [0, 1].
    /// A layer with `C` input channels sees channel `c % 3` of the RGB image as channel `c`.
    Images { dir: PathBuf },
}

/// The probe's settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProbeSettings {
    pub source: ProbeSource,
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub padding: Padding,
}

/// A probe ready to measure layers: the images are decoded once.
pub struct Probe {
    settings: ProbeSettings,
    images: Option<Tensor>,
    device: Device,
}

impl Probe {
    pub fn new(settings: ProbeSettings, device: &Device) -> Result<Self> {
        if settings.batch == 0 || settings.height == 0 || settings.width == 0 {
            return Err(Error::Probe(
                "the probe needs a batch and a size of at least 1".into(),
            ));
        }
        let images = match &settings.source {
            ProbeSource::Random { .. } => None,
            ProbeSource::Images { dir } => Some(load_images(
                dir,
                settings.batch,
                settings.height,
                settings.width,
                device,
            )?),
        };
        Ok(Self {
            settings,
            images,
            device: device.clone(),
        })
    }

    pub fn settings(&self) -> &ProbeSettings {
        &self.settings
    }

    /// The inputs for a layer with `channels` input channels, `[B, C, H, W]`; the same for the
    /// same `layer` index, so a layer is measured on the same inputs before and after.
    pub fn inputs(&self, channels: usize, layer: u64) -> Result<Tensor> {
        let s = &self.settings;
        match (&s.source, &self.images) {
            (ProbeSource::Random { seed }, _) => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(
                    seed.wrapping_add(layer.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                );
                let n = s.batch * channels * s.height * s.width;
                let data: Vec<f32> = (0..n).map(|_| rng.random::<f32>()).collect();
                Ok(Tensor::from_vec(
                    data,
                    (s.batch, channels, s.height, s.width),
                    &self.device,
                )?)
            }
            (_, Some(images)) => {
                let picks: Vec<u32> = (0..channels as u32).map(|c| c % 3).collect();
                let index = Tensor::from_vec(picks, channels, &self.device)?;
                Ok(images.index_select(&index, 1)?)
            }
            (ProbeSource::Images { .. }, None) => unreachable!("images are loaded in Probe::new"),
        }
    }

    /// Mean `|cos|` between the feature maps of filter pairs of a conv2d weight `[S, C, kh, kw]`,
    /// on the inputs of `layer`. `None` for weights that are not conv2d or have a single filter.
    pub fn feature_cosine(&self, weight: &Tensor, layer: u64) -> Result<Option<f64>> {
        let &[s, c, kh, kw] = weight.dims() else {
            return Ok(None);
        };
        if s < 2 {
            return Ok(None);
        }
        let x = self.inputs(c, layer)?;
        let x = pad(&x, kh, kw, self.settings.padding)?;
        let (h, w) = (x.dim(2)?, x.dim(3)?);
        if h < kh || w < kw {
            return Err(Error::Probe(format!(
                "the probe input ({}x{}) is smaller than the {kh}x{kw} kernel with {:?} padding; use a larger --probe-size",
                self.settings.height, self.settings.width, self.settings.padding
            )));
        }
        let maps = x.conv2d(&weight.to_dtype(DType::F32)?, 0, 1, 1, 1)?;
        let b = maps.dim(0)?;
        Ok(Some(mean_abs_cosine(&maps.flatten_from(2)?, b, s)?))
    }
}

/// Pads `[B, C, H, W]` for a `kh x kw` kernel.
fn pad(x: &Tensor, kh: usize, kw: usize, padding: Padding) -> Result<Tensor> {
    let split = |k: usize| match padding {
        Padding::Same => ((k - 1) / 2, k - 1 - (k - 1) / 2),
        Padding::Valid => (0, 0),
        Padding::Full => (k - 1, k - 1),
    };
    let ((top, bottom), (left, right)) = (split(kh), split(kw));
    Ok(x.pad_with_zeros(2, top, bottom)?
        .pad_with_zeros(3, left, right)?)
}

/// Mean `|cos|` over pairs `i < j` of rows of `[B, S, N]`, averaged over `B`. Zero rows count as
/// orthogonal to everything.
fn mean_abs_cosine(maps: &Tensor, b: usize, s: usize) -> Result<f64> {
    let maps = maps.to_dtype(DType::F64)?;
    let norms = maps.sqr()?.sum_keepdim(2)?.sqrt()?;
    let safe = norms.gt(0.0)?.where_cond(&norms, &norms.ones_like()?)?;
    let unit = maps.broadcast_div(&safe)?;
    let cos = unit.matmul(&unit.t()?)?.abs()?;
    let all = cos.sum_all()?.to_scalar::<f64>()?;
    let diagonal: f64 = (0..s)
        .map(|i| {
            cos.narrow(1, i, 1)
                .and_then(|r| r.narrow(2, i, 1))
                .and_then(|d| d.sum_all())
                .and_then(|d| d.to_scalar::<f64>())
        })
        .sum::<candle_core::Result<f64>>()?;
    Ok((all - diagonal) / (b * s * (s - 1)) as f64)
}

/// `batch` images evenly spaced over the files under `dir` sorted by path, as `[B, 3, H, W]` in
/// [0, 1].
fn load_images(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(padding: Padding) -> Probe {
        let settings = ProbeSettings {
            source: ProbeSource::Random { seed: 1 },
            batch: 3,
            height: 9,
            width: 7,
            padding,
        };
        Probe::new(settings, &Device::Cpu).unwrap()
    }

    #[test]
    fn identical_filters_have_cosine_one_and_opposite_filters_too() {
        let k = Tensor::randn(0f32, 1., (1, 2, 3, 3), &Device::Cpu).unwrap();
        let w = Tensor::cat(&[&k, &k, &k.neg().unwrap()], 0).unwrap();
        let cos = probe(Padding::Same).feature_cosine(&w, 0).unwrap().unwrap();
        assert!((cos - 1.0).abs() < 1e-6, "{cos}");
    }

    #[test]
    fn matches_a_direct_computation() {
        // 1x1 kernels: feature maps are weighted sums of input channels, computed here by hand.
        let w = Tensor::new(
            &[[[[1f32]], [[0.]]], [[[0.]], [[1.]]], [[[1.]], [[1.]]]],
            &Device::Cpu,
        )
        .unwrap();
        let p = probe(Padding::Valid);
        let x = p.inputs(2, 4).unwrap().to_dtype(DType::F64).unwrap();
        let (a, b) = (x.narrow(1, 0, 1).unwrap(), x.narrow(1, 1, 1).unwrap());
        let maps = [a.clone(), b.clone(), (&a + &b).unwrap()];
        let mut total = 0.0;
        for n in 0..3 {
            for (i, j) in [(0, 1), (0, 2), (1, 2)] {
                let (u, v) = (
                    maps[i].get(n).unwrap().flatten_all().unwrap(),
                    maps[j].get(n).unwrap().flatten_all().unwrap(),
                );
                let sum = |t: Tensor| t.sum_all().unwrap().to_scalar::<f64>().unwrap();
                let dot = sum((&u * &v).unwrap());
                let (nu, nv) = (sum(u.sqr().unwrap()).sqrt(), sum(v.sqr().unwrap()).sqrt());
                total += (dot / (nu * nv)).abs();
            }
        }
        let expected = total / 9.0;
        let got = p.feature_cosine(&w, 4).unwrap().unwrap();
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
    }

    #[test]
    fn inputs_repeat_per_layer_and_paddings_shape_the_maps() {
        let p = probe(Padding::Same);
        let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(p.inputs(3, 2).unwrap()), flat(p.inputs(3, 2).unwrap()));
        assert_ne!(flat(p.inputs(3, 2).unwrap()), flat(p.inputs(3, 3).unwrap()));
        let x = p.inputs(2, 5).unwrap();
        assert_eq!(x.dims(), &[3, 2, 9, 7]);
        let same = pad(&x, 4, 3, Padding::Same).unwrap();
        assert_eq!(same.dims(), &[3, 2, 12, 9]);
        assert_eq!(
            pad(&x, 4, 3, Padding::Full).unwrap().dims(),
            &[3, 2, 15, 11]
        );
        let w = Tensor::randn(0f32, 1., (4, 3, 5, 5), &Device::Cpu).unwrap();
        assert!(p
            .feature_cosine(&w.narrow(0, 0, 1).unwrap(), 0)
            .unwrap()
            .is_none());
        let a = p.feature_cosine(&w, 7).unwrap().unwrap();
        let b = p.feature_cosine(&w, 7).unwrap().unwrap();
        assert_eq!(a, b);
        assert!((0.0..=1.0).contains(&a));
    }
}
