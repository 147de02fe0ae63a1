//! The feature-map probe: how alike the feature maps of a conv layer's filters are, measured
//! directly. Inputs go through one layer on its own (stride 1, `same` padding by default), and two
//! figures summarize the inner products `<F_i, F_j>` of the feature maps of filter pairs `i < j`
//! (docs/math.md, "The feature-map probe"): the mean absolute cosine, and the mean absolute inner
//! product relative to the mean feature-map energy. This is the quantity L_CS is a bound for.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::filter_sample::PairSampling;
use crate::host::gemm::matmul;
use crate::host::values::{row_dots, run_moments};
use crate::host::{filter_squares, UpperGram};
use crate::{Error, Result};

mod patches;
mod sample;
mod winograd;

use patches::{PatchLayout, Patches};
use sample::MeanResponse;

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

/// How alike the feature maps of a layer's filters are on a batch of inputs, from their inner
/// products `G_b[i, j] = <F_i, F_j>` on input `b` (docs/math.md, "The feature-map probe").
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FeatureSimilarity {
    /// Mean over inputs and pairs `i < j` of `|G_b[i,j]| / sqrt(G_b[i,i] G_b[j,j])`; a pair with
    /// a zero map counts as orthogonal.
    pub cosine: f64,
    /// The paper's inner product, normalised per layer: `mean_abs_inner / mean_energy`, in
    /// [0, 1]. Unlike the cosine it weighs each pair by its maps' energy, and it is unchanged by
    /// scaling the whole layer (not by scaling single filters).
    pub inner: f64,
    /// Mean over inputs and pairs `i < j` of `|G_b[i,j]|`: the paper's figure as it is, which
    /// scales with the square of the weights.
    pub mean_abs_inner: f64,
    /// Mean over inputs and filters of `G_b[i,i] = ||F_i||²`.
    pub mean_energy: f64,
    /// The figures were estimated on this many filters ([`MeanResponse`]); `None`: exact.
    pub sampled: Option<usize>,
}

impl FeatureSimilarity {
    fn new(cosine: f64, mean_abs_inner: f64, mean_energy: f64, sampled: Option<usize>) -> Self {
        Self {
            cosine,
            inner: if mean_energy > 0.0 {
                mean_abs_inner / mean_energy
            } else {
                0.0
            },
            mean_abs_inner,
            mean_energy,
            sampled,
        }
    }

    /// The figures of inner products `[B, S, S]` (`S >= 2`).
    pub fn from_gram(gram: &Tensor) -> Result<Self> {
        let (b, s, _) = gram.dims3()?;
        let mut sums = PairSums::new(b, s)?;
        let g = gram.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        for g in g.chunks_exact(s * s) {
            let energies: Vec<f64> = (0..s).map(|i| g[i * s + i]).collect();
            let scales = inverse_norms(&energies);
            for i in 0..s {
                let [inner, cosine] = PairSums::row(&scales, i, &g[i * s + i + 1..(i + 1) * s]);
                sums.inner += inner;
                sums.cosine += cosine;
            }
            sums.energy += energies.iter().sum::<f64>();
        }
        Ok(sums.figures())
    }

    /// The figures of feature maps `[B, S, N]`, without the whole Gram matrix: blocks of rows
    /// against the rows from theirs on (`UpperGram`), half the multiply-adds of `maps mapsᵀ`.
    fn from_maps(maps: &Tensor) -> Result<Self> {
        Self::from_factors(maps, maps)
    }

    /// The figures of inner products `G_b = left_b right_bᵀ` (`[B, S, K]` each, `G_b` symmetric):
    /// the maps twice, or [`PatchMoments`]' factors.
    fn from_factors(left: &Tensor, right: &Tensor) -> Result<Self> {
        let (b, s, k) = left.dims3()?;
        let mut sums = PairSums::new(b, s)?;
        // In place: widened to f64 tensors, multiplied and summed by candle, the diagonal cost a
        // small layer's probe as much as its Gram matrix.
        let energies = row_dots(left, right, k)?;
        sums.energy = energies.iter().sum();
        let scales = inverse_norms(&energies);
        [sums.inner, sums.cosine] = UpperGram::between(left, right)?
            .sum_rows(|bi, i, row| PairSums::row(&scales[bi * s..(bi + 1) * s], i, row))?;
        Ok(sums.figures())
    }
}

/// The feature maps' inner products without the maps, for layers whose patches are shorter than
/// their maps. With `P_b` the input's patches (`[K, N]`, `K = C kh kw` values for each of the `N`
/// output positions), the maps are `F = W P_b` and `G_b = W (P_b P_bᵀ) Wᵀ`: the Gram matrix
/// costs `S² K / 2` instead of `S² N / 2`, and the convolution `S K N` becomes `K² N`. A
/// depthwise `3x3` layer on the default 16x16 probe has `K = 9` against `N = 256`.
struct PatchMoments;

impl PatchMoments {
    /// Whether the factored form is the cheaper one for this layer and input. Patches shorter
    /// than the maps are not enough: the moments cost `K² N` per input whatever the filter
    /// count, which a narrow layer with long patches (`[10, 240, 1, 1]`) never earns back. The
    /// moments are taken in f64, at about half the speed of f32.
    fn pays(weight: &Tensor, inputs: &Tensor, padding: ProbePadding) -> Result<bool> {
        let cost = ExactCost::of(weight, inputs, padding)?;
        let moments_in_f64 = if compute_dtype(weight) == DType::F64 {
            0.0
        } else {
            cost.moments()
        };
        Ok(cost.factored() + moments_in_f64 < cost.direct())
    }

    /// The figures of the layer's feature maps on the inputs of `patches`, from `W Σ_b` and
    /// `W`.
    fn similarity(weight: &Tensor, patches: &Patches) -> Result<FeatureSimilarity> {
        let (s, c, kh, kw) = weight.dims4()?;
        let dtype = compute_dtype(weight);
        let moments = patches.moments()?.to_dtype(dtype)?;
        let (b, k) = (moments.dim(0)?, c * kh * kw);
        let rows = weight
            .to_dtype(dtype)?
            .reshape((1, s, k))?
            .broadcast_as((b, s, k))?
            .contiguous()?;
        // `Σ_b` is symmetric, so `W Σ_b` needs no transpose.
        let left = matmul(&rows, &moments)?;
        FeatureSimilarity::from_factors(&left, &rows)
    }
}

/// `1 / sqrt(e)` of every energy, 0 for a zero map (its pairs count as orthogonal): a cosine is
/// then two multiplications instead of a square root and a division.
fn inverse_norms(energies: &[f64]) -> Vec<f64> {
    energies
        .iter()
        .map(|&e| if e > 0.0 { 1.0 / e.sqrt() } else { 0.0 })
        .collect()
}

/// The sums behind [`FeatureSimilarity`].
struct PairSums {
    batch: usize,
    filters: usize,
    cosine: f64,
    inner: f64,
    energy: f64,
}

impl PairSums {
    fn new(batch: usize, filters: usize) -> Result<Self> {
        if filters < 2 {
            return Err(Error::Probe(format!(
                "feature-map similarity needs at least 2 filters, got {filters}"
            )));
        }
        Ok(Self {
            batch,
            filters,
            cosine: 0.0,
            inner: 0.0,
            energy: 0.0,
        })
    }

    /// The inner-product and cosine sums of row `i`: `row[k] = G_b[i, i + 1 + k]`,
    /// `scales[i] = 1 / sqrt(G_b[i, i])` ([`inverse_norms`]).
    fn row(scales: &[f64], i: usize, row: &[f64]) -> [f64; 2] {
        // Four partial sums each: with one, every addition waits for the one before, and the
        // row sums of a wide depthwise layer's Gram cost as much as its products.
        let (mut inner, mut cosine) = ([0.0; 4], [0.0; 4]);
        let (scale_i, scales) = (scales[i], &scales[i + 1..]);
        let (rows, row_scales) = (row.chunks_exact(4), scales.chunks_exact(4));
        let (mut tail_inner, mut tail_cosine) = (0.0, 0.0);
        for (&g, &scale) in rows.remainder().iter().zip(row_scales.remainder()) {
            tail_inner += g.abs();
            tail_cosine += g.abs() * scale;
        }
        for (g, scale) in rows.zip(row_scales) {
            for l in 0..4 {
                inner[l] += g[l].abs();
                cosine[l] += g[l].abs() * scale[l];
            }
        }
        let sum = |lanes: [f64; 4], tail: f64| lanes.iter().sum::<f64>() + tail;
        [sum(inner, tail_inner), sum(cosine, tail_cosine) * scale_i]
    }

    fn figures(&self) -> FeatureSimilarity {
        let s = self.filters;
        let pairs = (self.batch * s * (s - 1) / 2) as f64;
        let (mean_abs_inner, mean_energy) =
            (self.inner / pairs, self.energy / (self.batch * s) as f64);
        FeatureSimilarity::new(self.cosine / pairs, mean_abs_inner, mean_energy, None)
    }
}

/// A probe ready to measure layers: the images are decoded once.
pub struct Probe {
    settings: ProbeSettings,
    images: Option<Tensor>,
    device: Device,
    /// The inputs last drawn: a run measures each layer twice in a row.
    last_inputs: Mutex<Option<Arc<LayerInputs>>>,
}

/// A layer's inputs and what the probe derives from them, kept for the layer's second
/// measurement: drawing the noise and copying it into patches cost as much as measuring a wide
/// layer's sample of filters.
struct LayerInputs {
    layer: u64,
    inputs: Tensor,
    /// The variance of the inputs' values, once asked for ([`MeanResponse`]).
    variance: OnceLock<f64>,
    /// The patches last asked for, by kernel size, dtype and layout.
    patches: Mutex<Option<(PatchKey, Arc<Patches>)>>,
}

type PatchKey = ((usize, usize), DType, PatchLayout);

impl LayerInputs {
    fn new(layer: u64, inputs: Tensor) -> Self {
        Self {
            layer,
            inputs,
            variance: OnceLock::new(),
            patches: Mutex::new(None),
        }
    }

    fn channels(&self) -> usize {
        self.inputs.dim(1).unwrap_or(0)
    }

    /// The patches for a kernel, kept for the next call if they take at most `keep_bytes`: they
    /// stay in memory while the layer is minimized, which must not grow much past the layer
    /// and its optimizer state.
    fn patches(
        &self,
        kernel: (usize, usize),
        padding: ProbePadding,
        dtype: DType,
        layout: PatchLayout,
        keep_bytes: usize,
    ) -> Result<Arc<Patches>> {
        let mut last = self.patches.lock().unwrap_or_else(|e| e.into_inner());
        let key = (kernel, dtype, layout);
        // Taken, not borrowed: patches for another kernel are dropped before new ones are made.
        if let Some((k, patches)) = last.take() {
            if k == key {
                *last = Some((k, patches.clone()));
                return Ok(patches);
            }
        }
        let patches = Arc::new(Patches::new(&self.inputs, kernel, padding, dtype, layout)?);
        if patches.bytes() <= keep_bytes {
            *last = Some((key, patches.clone()));
        }
        Ok(patches)
    }

    /// The variance of the inputs' values.
    fn variance(&self) -> Result<f64> {
        if let Some(&variance) = self.variance.get() {
            return Ok(variance);
        }
        // Runs of equal length: the means over all values are the means of the runs' means.
        let (h, w) = (self.inputs.dim(2)?, self.inputs.dim(3)?);
        let runs = run_moments(&self.inputs, h * w)?;
        let count = runs.len() as f64;
        let mean = runs.iter().map(|[m, _]| m).sum::<f64>() / count;
        let square = runs.iter().map(|[_, q]| q).sum::<f64>() / count;
        let variance = (square - mean * mean).max(0.0);
        Ok(*self.variance.get_or_init(|| variance))
    }
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
            last_inputs: Default::default(),
        })
    }

    pub fn settings(&self) -> &ProbeSettings {
        &self.settings
    }

    /// The inputs for a layer with `channels` input channels, `[B, C, H, W]`; the same for the
    /// same `layer` index, so a layer is measured on the same inputs before and after.
    pub fn inputs(&self, channels: usize, layer: u64) -> Result<Tensor> {
        Ok(self.layer_inputs(channels, layer)?.inputs.clone())
    }

    fn layer_inputs(&self, channels: usize, layer: u64) -> Result<Arc<LayerInputs>> {
        let mut last = self.last_inputs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(inputs) = &*last {
            if (inputs.layer, inputs.channels()) == (layer, channels) {
                return Ok(inputs.clone());
            }
        }
        let inputs = Arc::new(LayerInputs::new(layer, self.draw_inputs(channels, layer)?));
        *last = Some(inputs.clone());
        Ok(inputs)
    }

    fn draw_inputs(&self, channels: usize, layer: u64) -> Result<Tensor> {
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

    /// Mean `|cos|` between the feature maps of filter pairs of a conv2d weight `[S, C, kh, kw]`,
    /// on the inputs of `layer`. `None` for weights that are not conv2d or have a single filter.
    pub fn feature_cosine(&self, weight: &Tensor, layer: u64) -> Result<Option<f64>> {
        Ok(self.feature_similarity(weight, layer)?.map(|f| f.cosine))
    }

    /// Both figures of a conv2d weight `[S, C, kh, kw]` on the inputs of `layer`. `None` for
    /// weights that are not conv2d or have a single filter.
    pub fn feature_similarity(
        &self,
        weight: &Tensor,
        layer: u64,
    ) -> Result<Option<FeatureSimilarity>> {
        self.similarity(weight, None, layer)
    }

    /// [`Probe::feature_similarity`] of a weight whose filters' squared norms
    /// ([`crate::host::filter_squares`]) the caller has: a wide layer's estimate needs them.
    pub fn feature_similarity_with_squares(
        &self,
        weight: &Tensor,
        squares: &[f64],
        layer: u64,
    ) -> Result<Option<FeatureSimilarity>> {
        self.similarity(weight, Some(squares), layer)
    }

    fn similarity(
        &self,
        weight: &Tensor,
        squares: Option<&[f64]>,
        layer: u64,
    ) -> Result<Option<FeatureSimilarity>> {
        let padding = self.settings.padding;
        self.with_inputs(weight, layer, |inputs| {
            let x = &inputs.inputs;
            let (s, _, kh, kw) = weight.dims4()?;
            let sample = self.settings.sample.for_layer(s, layer);
            // Whether to estimate is a matter of the whole layer's cost, in its cheaper form.
            let whole_factored = PatchMoments::pays(weight, x, padding)?;
            let estimated = match sample.picks() {
                Some(picks)
                    if ExactCost::of(weight, x, padding)?.of_form(whole_factored)
                        > SAMPLE_ABOVE_MULTIPLY_ADDS =>
                {
                    Some(picks)
                }
                _ => None,
            };
            let measured = match estimated {
                Some(_) => sample.select(weight)?,
                None => weight.clone(),
            };
            // The form is the measured filters': a sample of a wide layer can be narrow enough
            // for the maps to cost less than the moments.
            let factored = PatchMoments::pays(&measured, x, padding)?;
            // The factored form takes each input's moments in f64.
            let (dtype, layout) = if factored {
                (DType::F64, PatchLayout::PerInput)
            } else {
                let output = output_size(x, kh, kw, padding)?;
                (
                    compute_dtype(weight),
                    PatchLayout::for_maps((kh, kw), output),
                )
            };
            // The same for the layer's second measurement: made once.
            let layer_bytes = weight.elem_count() * weight.dtype().size_in_bytes();
            let keep = KEEP_PATCHES_BYTES.max(2 * layer_bytes);
            let patches = inputs.patches((kh, kw), padding, dtype, layout, keep)?;
            let figures = if factored {
                PatchMoments::similarity(&measured, &patches)?
            } else {
                FeatureSimilarity::from_maps(&patches.maps(&measured)?)?
            };
            match estimated {
                Some(picks) => {
                    let squares = match squares {
                        Some(squares) => squares.to_vec(),
                        None => filter_squares(weight)?,
                    };
                    let response =
                        MeanResponse::new(weight, &squares, inputs.variance()?, &patches)?;
                    Ok(response.estimate(&figures, picks))
                }
                None => Ok(figures),
            }
        })
    }

    /// `<F_i, F_j>` for every input of `layer` and filter pair, `[B, S, S]` in f64 (see
    /// [`feature_gram`]). `None` for weights that are not conv2d or have a single filter.
    pub fn inner_products(&self, weight: &Tensor, layer: u64) -> Result<Option<Tensor>> {
        let padding = self.settings.padding;
        self.with_inputs(weight, layer, |x| {
            gram(&feature_maps(weight, &x.inputs, padding)?)
        })
    }

    /// `measure` of the inputs of `layer` for a conv2d weight; `None` for weights that are not
    /// conv2d or have a single filter.
    fn with_inputs<R>(
        &self,
        weight: &Tensor,
        layer: u64,
        measure: impl FnOnce(&LayerInputs) -> Result<R>,
    ) -> Result<Option<R>> {
        let &[s, c, _, _] = weight.dims() else {
            return Ok(None);
        };
        if s < 2 {
            return Ok(None);
        }
        let inputs = self.layer_inputs(c, layer)?;
        let figures = measure(&inputs).map_err(|e| match e {
            Error::Probe(m) => Error::Probe(format!("{m}; use a larger --probe-size")),
            other => other,
        })?;
        Ok(Some(figures))
    }
}

/// Patches up to this size, or twice the layer's, are kept for a layer's second measurement
/// (about what the default probe makes of a `[512, 512, 3, 3]` layer).
const KEEP_PATCHES_BYTES: usize = 16 << 20;

/// A layer whose exact figures would cost more multiply-adds than this (about 5 ms here) is
/// measured on a sample of its filters when it has more than the sample's limit. Below it are
/// the depthwise layers, whose exact figures are cheap and whose estimates would err the most.
const SAMPLE_ABOVE_MULTIPLY_ADDS: f64 = (1u64 << 27) as f64;

/// Multiply-adds of a layer's exact figures on a batch of inputs, in either form.
struct ExactCost {
    /// Inputs, filters, patch length `C kh kw` and map length `H' W'`.
    b: f64,
    s: f64,
    k: f64,
    n: f64,
}

impl ExactCost {
    fn of(weight: &Tensor, inputs: &Tensor, padding: ProbePadding) -> Result<Self> {
        let (s, c, kh, kw) = weight.dims4()?;
        let (oh, ow) = output_size(inputs, kh, kw, padding)?;
        Ok(Self {
            b: inputs.dim(0)? as f64,
            s: s as f64,
            k: (c * kh * kw) as f64,
            n: (oh * ow) as f64,
        })
    }

    /// The convolution and the upper Gram matrix of the maps.
    fn direct(&self) -> f64 {
        let Self { b, s, k, n } = *self;
        b * (s * k * n + s * s * n / 2.0)
    }

    /// [`PatchMoments`]' moments, their product with the weight and its upper Gram matrix.
    fn factored(&self) -> f64 {
        let Self { b, s, k, .. } = *self;
        self.moments() + b * (s * k * k + s * s * k / 2.0)
    }

    /// The patches' moments alone.
    fn moments(&self) -> f64 {
        let Self { b, k, n, .. } = *self;
        b * k * k * n
    }

    fn of_form(&self, factored: bool) -> f64 {
        if factored {
            self.factored()
        } else {
            self.direct()
        }
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

/// Noise values drawn per task.
const NOISE_CHUNK: usize = 1 << 16;

/// `rand`'s `StandardUniform` f32 of a word: its 24 high bits scaled to [0, 1).
fn unit_float(word: u32) -> f32 {
    (word >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
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
    use crate::test_tensors::largest_difference;

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
    fn patches_are_kept_for_the_second_measurement_within_their_bound() {
        let inputs = LayerInputs::new(0, probe(ProbePadding::Same).inputs(4, 0).unwrap());
        let patches = |keep: usize, kernel: (usize, usize)| {
            inputs
                .patches(
                    kernel,
                    ProbePadding::Same,
                    DType::F32,
                    PatchLayout::Rows,
                    keep,
                )
                .unwrap()
        };
        let first = patches(usize::MAX, (3, 3));
        assert!(Arc::ptr_eq(&first, &patches(0, (3, 3))));
        // Another kernel replaces them; patches over the bound are not kept.
        let other = patches(0, (1, 3));
        assert!(!Arc::ptr_eq(&other, &patches(0, (1, 3))));
        assert!(!Arc::ptr_eq(&first, &patches(usize::MAX, (3, 3))));
        assert_eq!(first.bytes(), 4 * 9 * 3 * 9 * 7 * 4);
    }

    #[test]
    fn the_factored_form_is_taken_where_it_costs_less() {
        // The default probe: 4 inputs of 16x16, same padding.
        let inputs = Tensor::zeros((4, 1, 16, 16), DType::F32, &Device::Cpu).unwrap();
        let pays = |s: usize, c: usize, k: usize, dtype: DType| {
            let weight = Tensor::zeros((s, c, k, k), dtype, &Device::Cpu).unwrap();
            let inputs = inputs.broadcast_as((4, c, 16, 16)).unwrap();
            PatchMoments::pays(&weight, &inputs, ProbePadding::Same).unwrap()
        };
        // Short patches and many filters: depthwise and narrow 1x1 layers.
        assert!(pays(1152, 1, 5, DType::F32));
        assert!(pays(480, 80, 1, DType::F32));
        // Patches nearly as long as the maps, few filters: the moments would cost 25x the maps.
        assert!(!pays(10, 240, 1, DType::F32));
        // Patches longer than the maps.
        assert!(!pays(64, 64, 3, DType::F32));
        // In f64 the moments cost no more than the rest: the balance moves.
        assert!(!pays(150, 100, 1, DType::F32));
        assert!(pays(150, 100, 1, DType::F64));
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
                    let factored = PatchMoments::similarity(&w, &patches).unwrap();
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
