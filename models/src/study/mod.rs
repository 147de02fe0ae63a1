//! The feature-map similarity study (project issue 13; docs/reproduction.md, "Does minimizing
//! L_CS decorrelate feature maps?"): what minimizing L_CS does to the feature maps of real
//! networks, over a grid of iterations, learning rates, `--keep-norm` and variants.
//!
//! Every run starts from the same weights of a subject and seed, minimizes every conv layer as
//! `cs-init` does (Adam through [`cs_init::minimize`]), and records one [`Record`]: L_CS, the
//! scale-free similarity, filter norms and directions, and the probe's two figures
//! ([`cs_init::probe::FeatureSimilarity`]) on four kinds of inputs with three paddings, before
//! and after. Each layer sees the same inputs in every run. [`identity`] checks the probe against
//! Equation 3 on those inputs; [`report`] turns the records into tables and plots.

pub mod identity;
pub mod report;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use cs_init::filter_sample::PairSampling;
use cs_init::metrics::{LayerMetrics, NormRatio};
use cs_init::optim::{AdamConfig, OptimizerConfig};
use cs_init::probe::{
    feature_gram, FeatureSimilarity, Probe, ProbePadding, ProbeSettings, ProbeSource,
};
use cs_init::{Engine, Settings, Variant};
use serde::{Deserialize, Serialize};

use crate::data::{Batches, Dataset, Normalization, CLASSES, SIDE};
use crate::eval::evaluate;
use crate::{Architecture, Network};

use identity::{correlation_gram, Deviation};

/// The networks of the study.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Subject {
    /// torchvision's ResNet-18 as `cs-init resnet18` initializes it (7x7 stem, 1x1 downsamples).
    Resnet18,
    /// The paper's CNN1, freshly initialized (PyTorch's default).
    Cnn1,
    /// The CIFAR ResNet-20, freshly initialized (kaiming normal).
    Resnet20,
    /// The pretrained CIFAR ResNet-20 of `--checkpoint`.
    Resnet20Pretrained,
}

impl Subject {
    /// The `models` network that runs it, for the in-network inputs and the accuracy.
    fn architecture(self) -> Option<Architecture> {
        match self {
            Subject::Resnet18 => None,
            Subject::Cnn1 => Some(Architecture::Cnn1),
            Subject::Resnet20 | Subject::Resnet20Pretrained => Some(Architecture::Resnet20),
        }
    }

    /// The normalization of images fed to the network: what the pretrained network was trained
    /// with, CIFAR-10's own statistics for fresh ones.
    fn normalization(self) -> Normalization {
        match self {
            Subject::Resnet20Pretrained => Normalization::IMAGENET,
            _ => Normalization::CIFAR10,
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = clap::ValueEnum::to_possible_value(self).expect("no skipped variants");
        f.write_str(value.get_name())
    }
}

/// What the probe feeds a layer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Input {
    /// U(0, 1) noise (the paper's, and the probe's default).
    Uniform,
    /// The same noise less its mean, U(-1/2, 1/2).
    Centered,
    /// CIFAR-10 test images through the probe's `--probe-images` path: each layer gets the RGB
    /// planes, channel `c` seeing plane `c % 3`, scaled to [0, 1].
    Cifar,
    /// What each layer sees inside the network when it classifies CIFAR-10 test images (the
    /// starting network's activations; CIFAR networks only).
    Activations,
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = clap::ValueEnum::to_possible_value(self).expect("no skipped variants");
        f.write_str(value.get_name())
    }
}

/// The probe's paddings, in the order of the records.
pub const PADDINGS: [ProbePadding; 3] =
    [ProbePadding::Full, ProbePadding::Same, ProbePadding::Valid];

pub fn padding_name(padding: ProbePadding) -> &'static str {
    match padding {
        ProbePadding::Full => "full",
        ProbePadding::Same => "same",
        ProbePadding::Valid => "valid",
    }
}

/// The key of an input and a padding in [`Record::probe`]: `uniform/same`.
pub fn probe_key(input: Input, padding: ProbePadding) -> String {
    format!("{input}/{}", padding_name(padding))
}

/// The grid and the data of a sweep over one subject.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    pub subject: Subject,
    /// The pretrained subject's weights.
    pub checkpoint: Option<PathBuf>,
    /// CIFAR-10 test images for the probe, and the sets of the accuracy.
    pub images: ImageData,
    /// Seeds of the fresh subjects' initialization and of the noise inputs.
    pub seeds: Vec<u64>,
    pub variants: Vec<Variant>,
    pub learning_rates: Vec<f64>,
    pub keep_norm: Vec<bool>,
    /// Iteration counts; 0 records the starting point once per seed and variant.
    pub iterations: Vec<usize>,
    /// Probe inputs per layer, each `probe_size x probe_size`.
    pub probe_batch: usize,
    pub probe_size: usize,
    /// Measure the test accuracy of every run (networks with an architecture only).
    pub accuracy: bool,
}

/// The CIFAR-10 images a sweep uses.
#[derive(Debug, Clone)]
pub struct ImageData {
    /// Test images for the probe, drawn evenly from the classes (`probe_batch` of them).
    pub probe: Dataset,
    /// Test images for the accuracy.
    pub test: Dataset,
    /// Training images for re-estimating BatchNorm's statistics before the second accuracy.
    pub recalibration: Dataset,
}

/// The probe's figures for one input and padding, averaged over the layers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProbeChange {
    /// Layers measured (an input smaller than the kernel leaves a layer out of `valid`).
    pub layers: usize,
    pub cosine_before: f64,
    pub cosine_after: f64,
    pub inner_before: f64,
    pub inner_after: f64,
    /// Mean over layers of `mean_abs_inner` after / before: the paper's figure, which counts
    /// shrinking filters as decorrelation.
    pub raw_inner_ratio: f64,
    /// Layers whose cosine rose.
    pub cosine_up: usize,
    /// Layers whose normalised inner product rose.
    pub inner_up: usize,
}

/// Test accuracy of a run, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AccuracyRecord {
    /// With BatchNorm's stored statistics.
    pub stored_bn: f64,
    /// After re-estimating them from `recalibration_images` training images.
    pub recalibrated_bn: f64,
    pub test_images: usize,
    pub recalibration_images: usize,
}

/// One run: a subject and seed, minimized with one variant, learning rate, norm mode and
/// iteration count. Figures are sums (L_CS) or means over the conv layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub subject: Subject,
    pub seed: u64,
    pub variant: Variant,
    /// `None` for the starting point (`iters` 0).
    pub lr: Option<f64>,
    pub keep_norm: Option<bool>,
    pub iters: usize,
    pub layers: usize,
    /// Layers whose run stopped being finite (their weights are kept).
    pub diverged: usize,
    /// L_CS of the variant, summed over layers.
    pub loss_before: f64,
    pub loss_after: f64,
    /// Mean over layers of the per-layer reduction of L_CS, percent.
    pub loss_reduction: f64,
    pub scale_free_before: f64,
    pub scale_free_after: f64,
    /// Filter norm after / before: mean over layers of the per-layer mean, and the extremes.
    pub norm_ratio: f64,
    pub norm_ratio_min: f64,
    pub norm_ratio_max: f64,
    /// Mean over layers and filters of the angle between a filter before and after, degrees.
    pub turn_degrees: f64,
    pub kernel_cosine_before: f64,
    pub kernel_cosine_after: f64,
    /// The shape of the filters, averaged over layers and filters ([`FilterShape`]).
    pub shape_before: FilterShape,
    pub shape_after: FilterShape,
    /// By [`probe_key`].
    pub probe: BTreeMap<String, ProbeChange>,
    pub accuracy: Option<AccuracyRecord>,
    /// Wall time of the minimization and the measurements.
    pub seconds: f64,
}

/// How a filter's weights are spread, relative to its norm: what the probe's figures depend on
/// besides the filters' mutual directions (docs/math.md, "The input's mean").
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FilterShape {
    /// `max |w| / ||w||`: 1 for a filter with a single non-zero weight, `1/sqrt(n)` at the
    /// other end.
    pub peak: f64,
    /// `|sum w| / ||w||`: the filter's response to a constant input; about 0.8 for random
    /// weights (`E|z|` for z standard normal), 1 for a single weight.
    pub dc: f64,
}

impl FilterShape {
    /// The mean over the filters of `weight` (zero filters left out).
    pub fn of(weight: &Tensor) -> Result<FilterShape> {
        let rows = weight
            .flatten_from(1)?
            .to_dtype(DType::F64)?
            .to_vec2::<f64>()?;
        let (mut shape, mut count) = (FilterShape::default(), 0);
        for row in rows {
            let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm > 0.0 {
                shape.peak += row.iter().fold(0.0f64, |m, x| m.max(x.abs())) / norm;
                shape.dc += row.iter().sum::<f64>().abs() / norm;
                count += 1;
            }
        }
        if count > 0 {
            shape.peak /= count as f64;
            shape.dc /= count as f64;
        }
        Ok(shape)
    }
}

/// A conv layer of the starting network, with the inputs it is probed on.
struct Layer {
    name: String,
    /// `[S, C, k, k]`, f32.
    weight: Tensor,
    inputs: BTreeMap<Input, Tensor>,
}

/// Conv weights by name.
type Convs = Vec<(String, Tensor)>;

/// The conv weights of a subject at its start, and the network that runs them (if any).
fn start_weights(
    subject: Subject,
    seed: u64,
    checkpoint: Option<&Path>,
) -> Result<(Convs, Option<Network>)> {
    let network = match (subject, checkpoint) {
        (Subject::Resnet18, _) => {
            let tensors = cs_init::arch::Architecture::Resnet18.tensors(seed)?;
            let convs = tensors
                .into_iter()
                .filter(|(name, t)| t.rank() == 4 && name.ends_with("weight"))
                .collect();
            return Ok((convs, None));
        }
        (Subject::Resnet20Pretrained, Some(path)) => {
            Network::load(Architecture::Resnet20, path, &Device::Cpu)?
        }
        (Subject::Resnet20Pretrained, None) => bail!("resnet20-pretrained needs --checkpoint"),
        (fresh, _) => Network::new(
            fresh.architecture().expect("fresh CIFAR subjects have one"),
            seed,
            &Device::Cpu,
        )?,
    };
    let convs = network
        .conv_weights()
        .into_iter()
        .map(|(name, var)| Ok((name, var.as_tensor().copy()?)))
        .collect::<Result<_>>()?;
    Ok((convs, Some(network)))
}

/// Writes `dataset`'s images as `<class>/<index>.png` under `dir`, the layout `cs-init
/// --probe-images` reads.
pub fn export_images(dataset: &Dataset, dir: &Path) -> Result<()> {
    for (index, &label) in dataset.labels.iter().enumerate() {
        let planes = dataset.image(index);
        let image = image::RgbImage::from_fn(SIDE as u32, SIDE as u32, |x, y| {
            let at = y as usize * SIDE + x as usize;
            image::Rgb([0, 1, 2].map(|c| planes[c * SIDE * SIDE + at]))
        });
        let class = dir.join(CLASSES[label as usize]);
        std::fs::create_dir_all(&class)
            .with_context(|| format!("cannot create {}", class.display()))?;
        let path = class.join(format!("{index:05}.png"));
        image
            .save(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Every conv layer of a subject and seed with its probe inputs: the noise of the probe
/// (numbered from 1 as in cs-init's runs), the CIFAR-10 images through the probe's image path,
/// and for networks of this crate the activations each layer sees on the same images.
fn layers(config: &SweepConfig, seed: u64, images_dir: &Path) -> Result<Vec<Layer>> {
    let (convs, network) = start_weights(config.subject, seed, config.checkpoint.as_deref())?;
    let probe = |source| {
        Probe::new(
            ProbeSettings {
                source,
                batch: config.probe_batch,
                height: config.probe_size,
                width: config.probe_size,
                padding: ProbePadding::Same,
                // The study compares exact figures.
                sample: PairSampling::EXACT,
            },
            &Device::Cpu,
        )
    };
    let probes = [
        (Input::Uniform, probe(ProbeSource::Random { seed })?),
        (Input::Centered, probe(ProbeSource::Centered { seed })?),
        (
            Input::Cifar,
            probe(ProbeSource::Images {
                dir: images_dir.to_path_buf(),
            })?,
        ),
    ];
    let mut activations: BTreeMap<String, Tensor> = match &network {
        Some(network) => {
            let batch = Batches::sequential(
                &config.images.probe,
                config.probe_batch,
                config.subject.normalization(),
                &Device::Cpu,
            )
            .next()
            .context("no probe images")??;
            // A fresh network's stored statistics are those of no data; batch statistics are
            // what its first training step would use.
            let train = config.subject != Subject::Resnet20Pretrained;
            network
                .conv_inputs(&batch.images, train)?
                .into_iter()
                .collect()
        }
        None => BTreeMap::new(),
    };
    convs
        .into_iter()
        .enumerate()
        .map(|(index, (name, weight))| {
            let channels = weight.dim(1)?;
            let mut inputs = BTreeMap::new();
            for (input, probe) in &probes {
                inputs.insert(*input, probe.inputs(channels, index as u64 + 1)?);
            }
            if let Some(x) = activations.remove(&name) {
                inputs.insert(Input::Activations, x);
            }
            Ok(Layer {
                name,
                weight: weight.to_dtype(DType::F32)?,
                inputs,
            })
        })
        .collect()
}

/// The probe's figures of `weight` on every input of `layer` and every padding, by
/// [`probe_key`]; a padding that leaves the input smaller than the kernel is left out.
fn probe_figures(weight: &Tensor, layer: &Layer) -> Result<BTreeMap<String, FeatureSimilarity>> {
    let (_, _, kh, kw) = weight.dims4()?;
    let mut figures = BTreeMap::new();
    for (&input, x) in &layer.inputs {
        for padding in PADDINGS {
            if padding == ProbePadding::Valid && (x.dim(2)? < kh || x.dim(3)? < kw) {
                continue;
            }
            let gram = feature_gram(weight, x, padding)?;
            figures.insert(
                probe_key(input, padding),
                FeatureSimilarity::from_gram(&gram)?,
            );
        }
    }
    Ok(figures)
}

/// Mean over filters of the angle between `before[i]` and `after[i]`, in degrees; a filter that
/// is zero on either side is left out.
pub fn turn_degrees(before: &Tensor, after: &Tensor) -> Result<f64> {
    let rows = |t: &Tensor| -> Result<Vec<Vec<f64>>> {
        Ok(t.flatten_from(1)?.to_dtype(DType::F64)?.to_vec2::<f64>()?)
    };
    let angles: Vec<f64> = rows(before)?
        .iter()
        .zip(rows(after)?)
        .filter_map(|(a, b)| {
            let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let norms = (a.iter().map(|x| x * x).sum::<f64>()
                * b.iter().map(|x| x * x).sum::<f64>())
            .sqrt();
            (norms > 0.0).then(|| (dot / norms).clamp(-1.0, 1.0).acos().to_degrees())
        })
        .collect();
    Ok(if angles.is_empty() {
        0.0
    } else {
        angles.iter().sum::<f64>() / angles.len() as f64
    })
}

/// Test accuracy of the pretrained network with its conv weights replaced by `weights`.
fn accuracy(config: &SweepConfig, weights: &BTreeMap<String, Tensor>) -> Result<AccuracyRecord> {
    let (architecture, Some(checkpoint)) = (
        config
            .subject
            .architecture()
            .context("no network to evaluate")?,
        &config.checkpoint,
    ) else {
        bail!("the accuracy of a run needs the network's --checkpoint");
    };
    let network = Network::load(architecture, checkpoint, &Device::Cpu)?;
    for (name, var) in network.conv_weights() {
        var.set(&weights[&name])?;
    }
    let normalization = config.subject.normalization();
    let images = &config.images;
    let stored_bn = evaluate(&network, &images.test, normalization, &Device::Cpu)?.percent();
    network.recalibrate_batch_norm(&images.recalibration, normalization, &Device::Cpu)?;
    let recalibrated_bn = evaluate(&network, &images.test, normalization, &Device::Cpu)?.percent();
    Ok(AccuracyRecord {
        stored_bn,
        recalibrated_bn,
        test_images: images.test.len(),
        recalibration_images: images.recalibration.len(),
    })
}

/// Per layer, what a run is compared with: its figures at the start.
struct Before {
    metrics: LayerMetrics,
    shape: FilterShape,
    probe: BTreeMap<String, FeatureSimilarity>,
}

/// Runs the grid of `config`, calling `emit` with every record as it is done.
pub fn sweep(config: &SweepConfig, emit: &mut dyn FnMut(&Record) -> Result<()>) -> Result<()> {
    if config.accuracy && config.subject != Subject::Resnet20Pretrained {
        bail!("the accuracy is measured for the pretrained network only");
    }
    let images_dir = tempfile::tempdir()?;
    export_images(&config.images.probe, images_dir.path())?;
    for &seed in &config.seeds {
        let layers = layers(config, seed, images_dir.path())?;
        let probe_before = layers
            .iter()
            .map(|l| probe_figures(&l.weight, l))
            .collect::<Result<Vec<_>>>()?;
        for &variant in &config.variants {
            let before: Vec<Before> = layers
                .iter()
                .zip(&probe_before)
                .map(|(l, probe)| {
                    Ok(Before {
                        metrics: LayerMetrics::measure(&l.weight, variant)?,
                        shape: FilterShape::of(&l.weight)?,
                        probe: probe.clone(),
                    })
                })
                .collect::<Result<_>>()?;
            let mut runs: Vec<(Option<(f64, bool)>, usize)> = Vec::new();
            if config.iterations.contains(&0) {
                runs.push((None, 0));
            }
            for &keep_norm in &config.keep_norm {
                for &lr in &config.learning_rates {
                    for &iters in config.iterations.iter().filter(|&&i| i > 0) {
                        runs.push((Some((lr, keep_norm)), iters));
                    }
                }
            }
            for (optimizer, iters) in runs {
                let record = run(config, seed, variant, optimizer, iters, &layers, &before)?;
                emit(&record)?;
            }
        }
    }
    Ok(())
}

/// One run of the grid; `optimizer` is `(lr, keep_norm)`, `None` for the starting point.
fn run(
    config: &SweepConfig,
    seed: u64,
    variant: Variant,
    optimizer: Option<(f64, bool)>,
    iters: usize,
    layers: &[Layer],
    before: &[Before],
) -> Result<Record> {
    let started = Instant::now();
    let mut diverged = 0;
    let mut after_weights = BTreeMap::new();
    let (mut loss_before, mut loss_after, mut reduction) = (0.0, 0.0, 0.0);
    let (mut scale_free_before, mut scale_free_after) = (0.0, 0.0);
    let (mut kernel_before, mut kernel_after) = (0.0, 0.0);
    let (mut norm_mean, mut norm_min, mut norm_max) = (0.0, f64::INFINITY, f64::NEG_INFINITY);
    let mut turn = 0.0;
    let (mut shape_before, mut shape_after) = (FilterShape::default(), FilterShape::default());
    let mut probe: BTreeMap<String, (ProbeChange, f64)> = BTreeMap::new();
    for (layer, before) in layers.iter().zip(before) {
        let weight = match optimizer {
            None => layer.weight.clone(),
            Some((lr, keep_norm)) => {
                let settings = Settings {
                    variant,
                    iterations: iters,
                    optimizer: OptimizerConfig::Adam(AdamConfig {
                        lr,
                        ..AdamConfig::default()
                    }),
                    keep_norm,
                };
                let result =
                    cs_init::minimize(&layer.weight, &settings, Engine::Auto, &mut |_, _| {})
                        .with_context(|| format!("minimizing {}", layer.name))?;
                diverged += usize::from(result.trace.diverged);
                result.weight
            }
        };
        let metrics = LayerMetrics::measure(&weight, variant)?;
        let b = &before.metrics;
        loss_before += b.loss;
        loss_after += metrics.loss;
        reduction += if b.loss > 0.0 {
            100.0 * (1.0 - metrics.loss / b.loss)
        } else {
            0.0
        };
        scale_free_before += b.scale_free;
        scale_free_after += metrics.scale_free;
        kernel_before += b.kernel_cosine;
        kernel_after += metrics.kernel_cosine;
        let norms = NormRatio::between(&layer.weight, &weight)?;
        norm_mean += norms.mean;
        norm_min = norm_min.min(norms.min);
        norm_max = norm_max.max(norms.max);
        turn += turn_degrees(&layer.weight, &weight)?;
        let shape = FilterShape::of(&weight)?;
        shape_before.peak += before.shape.peak / layers.len() as f64;
        shape_before.dc += before.shape.dc / layers.len() as f64;
        shape_after.peak += shape.peak / layers.len() as f64;
        shape_after.dc += shape.dc / layers.len() as f64;
        let figures = if optimizer.is_some() {
            probe_figures(&weight, layer)?
        } else {
            before.probe.clone()
        };
        for (key, after) in figures {
            let Some(start) = before.probe.get(&key) else {
                continue;
            };
            let (change, raw) = probe.entry(key).or_insert((
                ProbeChange {
                    layers: 0,
                    cosine_before: 0.0,
                    cosine_after: 0.0,
                    inner_before: 0.0,
                    inner_after: 0.0,
                    raw_inner_ratio: 0.0,
                    cosine_up: 0,
                    inner_up: 0,
                },
                0.0,
            ));
            change.layers += 1;
            change.cosine_before += start.cosine;
            change.cosine_after += after.cosine;
            change.inner_before += start.inner;
            change.inner_after += after.inner;
            change.cosine_up += usize::from(after.cosine > start.cosine);
            change.inner_up += usize::from(after.inner > start.inner);
            if start.mean_abs_inner > 0.0 {
                *raw += after.mean_abs_inner / start.mean_abs_inner;
            }
        }
        after_weights.insert(layer.name.clone(), weight);
    }
    let n = layers.len() as f64;
    let probe = probe
        .into_iter()
        .map(|(key, (mut c, raw))| {
            let m = c.layers as f64;
            c.cosine_before /= m;
            c.cosine_after /= m;
            c.inner_before /= m;
            c.inner_after /= m;
            c.raw_inner_ratio = raw / m;
            (key, c)
        })
        .collect();
    let accuracy = if config.accuracy {
        Some(accuracy(config, &after_weights)?)
    } else {
        None
    };
    Ok(Record {
        subject: config.subject,
        seed,
        variant,
        lr: optimizer.map(|o| o.0),
        keep_norm: optimizer.map(|o| o.1),
        iters,
        layers: layers.len(),
        diverged,
        loss_before,
        loss_after,
        loss_reduction: reduction / n,
        scale_free_before: scale_free_before / n,
        scale_free_after: scale_free_after / n,
        norm_ratio: norm_mean / n,
        norm_ratio_min: norm_min,
        norm_ratio_max: norm_max,
        turn_degrees: turn / n,
        kernel_cosine_before: kernel_before / n,
        kernel_cosine_after: kernel_after / n,
        shape_before,
        shape_after,
        probe,
        accuracy,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// How far the probe's inner products are from Equation 3 on one kind of input with one padding,
/// over the layers checked: exact for `full` padding, Appendix 6.1's approximation otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityRecord {
    pub subject: Subject,
    pub seed: u64,
    pub input: Input,
    pub padding: String,
    /// The probe computing in f64 (the weight cast to f64).
    pub f64: Deviation,
    /// The probe as cs-init runs it, in f32.
    pub f32: Deviation,
    pub layers_checked: usize,
    /// Layers left out: wider than `max_width` (C·kh·kw), or smaller inputs than kernels.
    pub layers_skipped: Vec<String>,
    /// Probe inputs per layer compared.
    pub inputs_per_layer: usize,
}

/// Checks the probe's inner products against Equation 3 ([`correlation_gram`]) on the starting
/// weights of `config`'s first seed, for every input and padding, on the first
/// `inputs_per_layer` inputs of every layer of width `C·kh·kw` at most `max_width`.
pub fn identity_check(
    config: &SweepConfig,
    inputs_per_layer: usize,
    max_width: usize,
) -> Result<Vec<IdentityRecord>> {
    let seed = *config.seeds.first().context("no seed")?;
    let images_dir = tempfile::tempdir()?;
    export_images(&config.images.probe, images_dir.path())?;
    let layers = layers(config, seed, images_dir.path())?;
    let mut records: BTreeMap<(Input, &str), IdentityRecord> = BTreeMap::new();
    for layer in &layers {
        let (_, c, kh, kw) = layer.weight.dims4()?;
        let wide = c * kh * kw > max_width;
        for (&input, x) in &layer.inputs {
            let count = inputs_per_layer.min(x.dim(0)?);
            let x = x.narrow(0, 0, count)?;
            let equation = if wide {
                Vec::new()
            } else {
                (0..count)
                    .map(|b| Ok(correlation_gram(&layer.weight, &x.get(b)?)?.to_vec2::<f64>()?))
                    .collect::<Result<Vec<_>>>()?
            };
            for padding in PADDINGS {
                let record = records
                    .entry((input, padding_name(padding)))
                    .or_insert_with(|| IdentityRecord {
                        subject: config.subject,
                        seed,
                        input,
                        padding: padding_name(padding).into(),
                        f64: Deviation::default(),
                        f32: Deviation::default(),
                        layers_checked: 0,
                        layers_skipped: Vec::new(),
                        inputs_per_layer,
                    });
                if wide || (padding == ProbePadding::Valid && (x.dim(2)? < kh || x.dim(3)? < kw)) {
                    record.layers_skipped.push(layer.name.clone());
                    continue;
                }
                let measured = |weight: &Tensor| -> Result<Vec<Vec<Vec<f64>>>> {
                    Ok(feature_gram(weight, &x, padding)?.to_vec3::<f64>()?)
                };
                let exact = measured(&layer.weight.to_dtype(DType::F64)?)?;
                let as_run = measured(&layer.weight)?;
                record.f64 = record.f64.max(Deviation::between(&exact, &equation));
                record.f32 = record.f32.max(Deviation::between(&as_run, &equation));
                record.layers_checked += 1;
            }
        }
    }
    Ok(records.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_is_the_mean_angle_between_filters() {
        let before = Tensor::new(&[[1f32, 0.], [0., 2.], [1., 1.]], &Device::Cpu).unwrap();
        // Unchanged direction (scaled), a right angle, and a zero filter left out.
        let after = Tensor::new(&[[3f32, 0.], [5., 0.], [0., 0.]], &Device::Cpu).unwrap();
        let turn = turn_degrees(&before, &after).unwrap();
        assert!((turn - 45.0).abs() < 1e-9, "{turn}");
    }

    #[test]
    fn filter_shape_tells_single_weights_from_spread_ones() {
        let weight = Tensor::new(
            &[[0f32, -3., 0., 0.], [1., 1., 1., 1.], [0., 0., 0., 0.]],
            &Device::Cpu,
        )
        .unwrap();
        let shape = FilterShape::of(&weight).unwrap();
        // (1 + 1/2) / 2 and (1 + 4/2) / 2; the zero filter is left out.
        assert!((shape.peak - 0.75).abs() < 1e-12, "{shape:?}");
        assert!((shape.dc - 1.5).abs() < 1e-12, "{shape:?}");
    }

    #[test]
    fn exported_images_are_what_the_probe_reads() {
        let dataset = Dataset {
            pixels: (0..2 * crate::data::IMAGE_BYTES)
                .map(|i| (i * 7 % 251) as u8)
                .collect(),
            labels: vec![3, 8],
        };
        let dir = tempfile::tempdir().unwrap();
        export_images(&dataset, dir.path()).unwrap();
        assert!(dir.path().join("cat/00000.png").exists());
        let settings = ProbeSettings {
            source: ProbeSource::Images {
                dir: dir.path().to_path_buf(),
            },
            batch: 2,
            height: SIDE,
            width: SIDE,
            padding: ProbePadding::Same,
            sample: PairSampling::EXACT,
        };
        let probe = Probe::new(settings, &Device::Cpu).unwrap();
        let x = probe.inputs(3, 1).unwrap().flatten_all().unwrap();
        let expected: Vec<f32> = dataset
            .pixels
            .iter()
            .map(|&p| f32::from(p) / 255.0)
            .collect();
        // Sorted by path: cat (label 3) before ship (label 8), as in the dataset.
        assert_eq!(x.to_vec1::<f32>().unwrap(), expected);
    }
}
