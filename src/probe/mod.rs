//! The feature-map probe: how alike the feature maps of a conv layer's filters are, measured
//! directly. Inputs go through one layer on its own (stride 1, `same` padding by default), and two
//! figures summarize the inner products `<F_i, F_j>` of the feature maps of filter pairs `i < j`
//! (docs/math.md, "The feature-map probe"): the mean absolute cosine, and the mean absolute inner
//! product relative to the mean feature-map energy. This is the quantity L_CS is a bound for.
//!
//! - `inputs`: noise drawn per layer from the seed, or images decoded once.
//! - [`LayerSession`]: one layer's measurements, sharing its inputs and their patches.
//! - `measurement`: how a measurement is made (every filter or a sample, the maps or their
//!   Gram matrix's factors, the patches' dtype and layout), decided from its cost.
//! - `patches` and `winograd`: the inputs' patches and the maps computed from them.
//! - `pair_sums`: the figures from the maps' inner products ([`FeatureSimilarity`]).
//! - `sample`: a wide layer's figures estimated from a sample of its filters.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

use crate::filter_sample::PairSampling;
use crate::host::gemm::matmul;
use crate::{Error, Result};

mod inputs;
mod measurement;
mod pair_sums;
mod patches;
mod sample;
mod session;
mod winograd;

pub use pair_sums::FeatureSimilarity;
pub use session::LayerSession;

use patches::{PatchLayout, Patches};

/// Zero padding of the probe's convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbePadding {
    /// Output the size of the input (`k - 1` zeros split over both sides).
    #[default]
    Same,
    /// No padding.
    Valid,
    /// `k - 1` zeros on each side: every overlap of kernel and input.
    Full,
}

/// The probe's noise, when it is not given images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeNoise {
    /// U(0, 1), as in the paper's experiments ([`ProbeSource::Random`]).
    #[default]
    Uniform,
    /// U(-1/2, 1/2), the same draws without their mean ([`ProbeSource::Centered`]).
    Centered,
}

/// Where the probe's inputs come from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum ProbeSource {
    /// U(0, 1) noise, as in the paper's experiments; drawn per layer from `seed`.
    Random { seed: u64 },
    /// U(-1/2, 1/2) noise: the draws of `Random` with the same seed, less their mean 1/2. The two
    /// differ only by a constant input, so comparing them shows what the input's DC component
    /// does to the figures.
    Centered { seed: u64 },
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
    pub padding: ProbePadding,
    /// Which filters of a wide layer the figures look at (see [`Probe::feature_similarity`]).
    pub sample: PairSampling,
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
            ProbeSource::Random { .. } | ProbeSource::Centered { .. } => None,
            ProbeSource::Images { dir } => Some(inputs::load_images(
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

    /// The measurements of the `layer`-th layer: on the same inputs, made once, whichever of
    /// them come first. A run measures a layer before and after through one session.
    pub fn layer(&self, layer: u64) -> LayerSession<'_> {
        LayerSession::new(self, layer)
    }

    /// [`LayerSession::feature_cosine`] of a single measurement of `layer`.
    pub fn feature_cosine(&self, weight: &Tensor, layer: u64) -> Result<Option<f64>> {
        self.layer(layer).feature_cosine(weight)
    }

    /// [`LayerSession::feature_similarity`] of a single measurement of `layer`.
    pub fn feature_similarity(
        &self,
        weight: &Tensor,
        layer: u64,
    ) -> Result<Option<FeatureSimilarity>> {
        self.layer(layer).feature_similarity(weight, None)
    }

    /// [`LayerSession::inner_products`] of a single measurement of `layer`.
    pub fn inner_products(&self, weight: &Tensor, layer: u64) -> Result<Option<Tensor>> {
        self.layer(layer).inner_products(weight)
    }
}

/// `<F_i, F_j>` for every input and filter pair, `[B, S, S]` in f64: the feature maps
/// `F_i = sum_c x[b, c] ⊛ weight[i, c]` of a conv2d weight `[S, C, kh, kw]` on `inputs`
/// `[B, C, H, W]` zero-padded as `padding` says, stride 1. The convolution and the products run
/// in f64 for an f64 weight and in f32 otherwise.
pub fn feature_gram(weight: &Tensor, inputs: &Tensor, padding: ProbePadding) -> Result<Tensor> {
    gram(&feature_maps(weight, inputs, padding)?)
}

/// `maps mapsᵀ` of `[B, S, N]`, in f64.
fn gram(maps: &Tensor) -> Result<Tensor> {
    Ok(matmul(maps, &maps.transpose(1, 2)?)?.to_dtype(DType::F64)?)
}

/// The feature maps `[B, S, H' W']` of [`feature_gram`], in f64 for an f64 weight and in f32
/// otherwise.
fn feature_maps(weight: &Tensor, inputs: &Tensor, padding: ProbePadding) -> Result<Tensor> {
    let (_, _, kh, kw) = weight.dims4()?;
    let dtype = compute_dtype(weight);
    Patches::new(
        inputs,
        (kh, kw),
        padding,
        dtype,
        PatchLayout::for_maps((kh, kw), output_size(inputs, kh, kw, padding)?),
    )?
    .maps(weight)
}

/// f64 for an f64 weight, f32 otherwise.
fn compute_dtype(weight: &Tensor) -> DType {
    if weight.dtype() == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// The size of the feature maps of a `kh x kw` kernel on `inputs` `[B, C, H, W]`, stride 1.
fn output_size(
    inputs: &Tensor,
    kh: usize,
    kw: usize,
    padding: ProbePadding,
) -> Result<(usize, usize)> {
    let (h, w) = (inputs.dim(2)?, inputs.dim(3)?);
    let zeros = |k: usize| match padding {
        ProbePadding::Same => k - 1,
        ProbePadding::Valid => 0,
        ProbePadding::Full => 2 * (k - 1),
    };
    let (ph, pw) = (h + zeros(kh), w + zeros(kw));
    if ph < kh || pw < kw {
        return Err(Error::Probe(format!(
            "the input ({h}x{w}) is smaller than the {kh}x{kw} kernel with {padding:?} padding"
        )));
    }
    Ok((ph - kh + 1, pw - kw + 1))
}

/// The zeros `(top, bottom)` and `(left, right)` of an input's padding for a `kh x kw` kernel.
fn margins(kh: usize, kw: usize, padding: ProbePadding) -> ((usize, usize), (usize, usize)) {
    let split = |k: usize| match padding {
        ProbePadding::Same => ((k - 1) / 2, k - 1 - (k - 1) / 2),
        ProbePadding::Valid => (0, 0),
        ProbePadding::Full => (k - 1, k - 1),
    };
    (split(kh), split(kw))
}

/// Pads `[B, C, H, W]` for a `kh x kw` kernel, with candle's pads: what the probe's own
/// padding is tested against.
#[cfg(test)]
fn pad(x: &Tensor, kh: usize, kw: usize, padding: ProbePadding) -> Result<Tensor> {
    let ((top, bottom), (left, right)) = margins(kh, kw, padding);
    Ok(x.pad_with_zeros(2, top, bottom)?
        .pad_with_zeros(3, left, right)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_tensors::largest_difference;
    use rand::{Rng, SeedableRng};

    fn probe(padding: ProbePadding) -> Probe {
        let settings = ProbeSettings {
            source: ProbeSource::Random { seed: 1 },
            batch: 3,
            height: 9,
            width: 7,
            padding,
            sample: PairSampling::EXACT,
        };
        Probe::new(settings, &Device::Cpu).unwrap()
    }

    #[test]
    fn patch_moments_give_the_figures_of_the_maps() {
        // Depthwise, pointwise, few-channel and non-square kernels, every padding, f32 and f64:
        // the factored Gram against the maps' own.
        let shapes = [
            (9, 1, 3, 3),
            (7, 2, 1, 1),
            (5, 3, 3, 3),
            (6, 1, 5, 5),
            (4, 2, 1, 3),
        ];
        for (s, c, kh, kw) in shapes {
            for padding in [ProbePadding::Same, ProbePadding::Valid, ProbePadding::Full] {
                for dtype in [DType::F32, DType::F64] {
                    let w = Tensor::randn(0f64, 1., (s, c, kh, kw), &Device::Cpu)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap();
                    let x = probe(padding).inputs(c, 2).unwrap();
                    let direct =
                        FeatureSimilarity::from_maps(&feature_maps(&w, &x, padding).unwrap())
                            .unwrap();
                    let (_, _, kh, kw) = w.dims4().unwrap();
                    let patches =
                        Patches::new(&x, (kh, kw), padding, DType::F64, PatchLayout::PerInput)
                            .unwrap();
                    let factored = pair_sums::factored_similarity(&w, &patches).unwrap();
                    let tol = if dtype == DType::F64 { 1e-10 } else { 1e-4 };
                    for (a, b) in [
                        (direct.cosine, factored.cosine),
                        (direct.inner, factored.inner),
                        (
                            direct.mean_abs_inner / direct.mean_energy,
                            factored.mean_abs_inner / direct.mean_energy,
                        ),
                        (1.0, factored.mean_energy / direct.mean_energy),
                    ] {
                        assert!(
                            (a - b).abs() <= tol,
                            "{:?} {padding:?} {dtype:?}: {a} vs {b}",
                            (s, c, kh, kw)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn maps_from_patches_are_candles_convolution() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for draw in 0..24 {
            let (s, c) = (rng.random_range(1..6), rng.random_range(1..5));
            let (kh, kw) = (rng.random_range(1..6), rng.random_range(1..6));
            let padding = [ProbePadding::Same, ProbePadding::Valid, ProbePadding::Full][draw % 3];
            let dtype = [DType::F32, DType::F64][draw % 2];
            let x = probe(padding).inputs(c, draw as u64).unwrap();
            if output_size(&x, kh, kw, padding).is_err() {
                continue;
            }
            let w = Tensor::randn(0f64, 1., (s, c, kh, kw), &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let got = feature_maps(&w, &x, padding).unwrap();
            let want = pad(&x.to_dtype(dtype).unwrap(), kh, kw, padding)
                .unwrap()
                .conv2d(&w, 0, 1, 1, 1)
                .unwrap()
                .flatten_from(2)
                .unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = largest_difference(&got, &want);
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            assert!(
                diff <= tol,
                "{:?} {padding:?} {dtype:?}: {diff}",
                (s, c, kh, kw)
            );
        }
    }

    #[test]
    fn identical_filters_have_cosine_one_and_opposite_filters_too() {
        let k = Tensor::randn(0f32, 1., (1, 2, 3, 3), &Device::Cpu).unwrap();
        let w = Tensor::cat(&[&k, &k, &k.neg().unwrap()], 0).unwrap();
        let cos = probe(ProbePadding::Same)
            .feature_cosine(&w, 0)
            .unwrap()
            .unwrap();
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
        let p = probe(ProbePadding::Valid);
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

    /// `(A ⊛ B)[dy, dx] = sum_p A[p] B[p + (dy, dx)]` for `A` `ah x aw` and `B` `bh x bw`, with `B`
    /// read as zero outside its box: the definition, literally.
    fn xcorr(a: &[f64], aw: usize, b: &[f64], bw: usize, dy: isize, dx: isize) -> f64 {
        let (ah, bh) = (a.len() / aw, b.len() / bw);
        let mut total = 0.0;
        for y in 0..ah {
            for x in 0..aw {
                let (by, bx) = (y as isize + dy, x as isize + dx);
                if (0..bh as isize).contains(&by) && (0..bw as isize).contains(&bx) {
                    total += a[y * aw + x] * b[by as usize * bw + bx as usize];
                }
            }
        }
        total
    }

    #[test]
    fn full_padding_inner_products_are_equation_3() {
        // <F_i, F_j> = sum_{c1,c2} <W[i,c1] ⊛ W[j,c2], (X[c1] ⊛ X[c2]) over |n| <= k - 1>, per
        // input, on the probe's own inputs; f64 weights make the probe compute in f64.
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for draw in 0..12 {
            let (s, c) = (rng.random_range(2..5), rng.random_range(1..4));
            let (kh, kw) = (rng.random_range(1..5), rng.random_range(1..5));
            let (h, w) = (rng.random_range(1..7), rng.random_range(1..7));
            let seed = rng.random();
            let source = if draw % 2 == 0 {
                ProbeSource::Random { seed }
            } else {
                ProbeSource::Centered { seed }
            };
            let settings = ProbeSettings {
                source,
                batch: 2,
                height: h,
                width: w,
                padding: ProbePadding::Full,
                sample: PairSampling::EXACT,
            };
            let p = Probe::new(settings, &Device::Cpu).unwrap();
            let weights: Vec<f64> = (0..s * c * kh * kw)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let weight = Tensor::from_vec(weights.clone(), (s, c, kh, kw), &Device::Cpu).unwrap();
            let gram = p
                .inner_products(&weight, draw)
                .unwrap()
                .unwrap()
                .to_vec3::<f64>()
                .unwrap();
            let x = p.inputs(c, draw).unwrap().to_dtype(DType::F64).unwrap();
            for (b, g) in gram.iter().enumerate() {
                let x = x
                    .get(b)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                let kernel = |i: usize, c1: usize| &weights[(i * c + c1) * kh * kw..][..kh * kw];
                let plane = |c1: usize| &x[c1 * h * w..][..h * w];
                for i in 0..s {
                    for j in 0..s {
                        let mut expected = 0.0;
                        for (c1, c2) in (0..c).flat_map(|c1| (0..c).map(move |c2| (c1, c2))) {
                            for dy in 1 - kh as isize..kh as isize {
                                for dx in 1 - kw as isize..kw as isize {
                                    expected += xcorr(kernel(i, c1), kw, kernel(j, c2), kw, dy, dx)
                                        * xcorr(plane(c1), w, plane(c2), w, dy, dx);
                                }
                            }
                        }
                        let scale = (g[i][i] * g[j][j]).sqrt().max(1e-300);
                        assert!(
                            (g[i][j] - expected).abs() <= 1e-12 * scale,
                            "draw {draw}: S={s} C={c} {kh}x{kw} on {h}x{w}, input {b}, ({i},{j}): \
                             {} vs {expected}",
                            g[i][j]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn figures_match_their_definitions() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let (b, s, n) = (3, 5, 7);
        let mut maps: Vec<f64> = (0..b * s * n)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        // A zero map: orthogonal to everything, and no energy.
        maps[n..2 * n].fill(0.0);
        let map = |bi: usize, i: usize| &maps[(bi * s + i) * n..][..n];
        let dot = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(a, b)| a * b).sum::<f64>();
        let (mut cosine, mut inner, mut energy) = (0.0, 0.0, 0.0);
        for bi in 0..b {
            for i in 0..s {
                energy += dot(map(bi, i), map(bi, i)) / (b * s) as f64;
                for j in i + 1..s {
                    let g = dot(map(bi, i), map(bi, j));
                    inner += g.abs() / (b * s * (s - 1) / 2) as f64;
                    let norms = (dot(map(bi, i), map(bi, i)) * dot(map(bi, j), map(bi, j))).sqrt();
                    if norms > 0.0 {
                        cosine += (g / norms).abs() / (b * s * (s - 1) / 2) as f64;
                    }
                }
            }
        }
        let t = Tensor::from_vec(maps.clone(), (b, s, n), &Device::Cpu).unwrap();
        let gram = t.matmul(&t.transpose(1, 2).unwrap()).unwrap();
        let f = FeatureSimilarity::from_gram(&gram).unwrap();
        for (got, want) in [
            (f.cosine, cosine),
            (f.mean_abs_inner, inner),
            (f.mean_energy, energy),
            (f.inner, inner / energy),
        ] {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        // Scaling the layer scales the raw inner product by the square and nothing else.
        let scaled = FeatureSimilarity::from_gram(&(gram * 9.0).unwrap()).unwrap();
        assert!((scaled.mean_abs_inner - 9.0 * f.mean_abs_inner).abs() < 1e-12);
        assert!((scaled.inner - f.inner).abs() < 1e-12 && (scaled.cosine - f.cosine).abs() < 1e-12);
        assert!(FeatureSimilarity::from_gram(
            &Tensor::zeros((2, 1, 1), DType::F64, &Device::Cpu).unwrap()
        )
        .is_err());
    }

    #[test]
    fn the_normalised_inner_product_is_one_for_equal_maps_only() {
        let k = Tensor::randn(0f64, 1., (1, 2, 3, 3), &Device::Cpu).unwrap();
        let equal = Tensor::cat(&[&k, &k.neg().unwrap(), &k], 0).unwrap();
        let p = probe(ProbePadding::Same);
        let f = p.feature_similarity(&equal, 1).unwrap().unwrap();
        assert!(
            (f.inner - 1.0).abs() < 1e-12 && (f.cosine - 1.0).abs() < 1e-12,
            "{f:?}"
        );
        // Parallel maps of unequal energy: cosine 1, inner product below 1.
        let unequal = Tensor::cat(&[&k, &(&k * 3.0).unwrap()], 0).unwrap();
        let f = p.feature_similarity(&unequal, 1).unwrap().unwrap();
        assert!((f.cosine - 1.0).abs() < 1e-12, "{f:?}");
        assert!((f.inner - 0.6).abs() < 1e-12, "{f:?}"); // 3 / ((1 + 9) / 2)
        let random = Tensor::randn(0f64, 1., (6, 2, 3, 3), &Device::Cpu).unwrap();
        let f = p.feature_similarity(&random, 1).unwrap().unwrap();
        assert!(
            (0.0..1.0).contains(&f.inner) && (0.0..1.0).contains(&f.cosine),
            "{f:?}"
        );
    }

    #[test]
    fn noise_is_rands_uniform_floats() {
        // 3 x 9 x 7 floats per input, and more than a chunk of them with many channels.
        let p = probe(ProbePadding::Same);
        for channels in [3, 400] {
            let got = p.inputs(channels, 5).unwrap();
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(
                1u64.wrapping_add(5u64.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            );
            let want: Vec<f32> = (0..got.len()).map(|_| rng.random::<f32>()).collect();
            assert_eq!(got, want, "{channels} channels");
        }
    }

    #[test]
    fn centered_noise_is_the_uniform_noise_less_its_mean() {
        let with = |source| {
            let settings = ProbeSettings {
                source,
                batch: 2,
                height: 5,
                width: 4,
                padding: ProbePadding::Same,
                sample: PairSampling::EXACT,
            };
            let p = Probe::new(settings, &Device::Cpu).unwrap();
            p.inputs(3, 6)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let uniform = with(ProbeSource::Random { seed: 8 });
        let centered = with(ProbeSource::Centered { seed: 8 });
        assert!(uniform.iter().all(|v| (0.0..1.0).contains(v)));
        for (u, c) in uniform.iter().zip(&centered) {
            assert_eq!(u - 0.5, *c);
        }
    }

    #[test]
    fn inputs_repeat_per_layer_and_paddings_shape_the_maps() {
        let p = probe(ProbePadding::Same);
        let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(p.inputs(3, 2).unwrap()), flat(p.inputs(3, 2).unwrap()));
        assert_ne!(flat(p.inputs(3, 2).unwrap()), flat(p.inputs(3, 3).unwrap()));
        let x = p.inputs(2, 5).unwrap();
        assert_eq!(x.dims(), &[3, 2, 9, 7]);
        let same = pad(&x, 4, 3, ProbePadding::Same).unwrap();
        assert_eq!(same.dims(), &[3, 2, 12, 9]);
        assert_eq!(
            pad(&x, 4, 3, ProbePadding::Full).unwrap().dims(),
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
