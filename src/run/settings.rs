//! The settings of a run as a user gives them (the command line's flags, the service's `settings`
//! object), their defaults, and the one check that turns them into what the pipeline runs. The
//! check is the single rule behind the command line's exit code 2 and the service's 422.

use std::path::PathBuf;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::filter_sample::PairSampling;
use crate::input::PthOptions;
use crate::minimize::Settings;
use crate::optim::{AdamConfig, OptimizerConfig, SgdConfig};
use crate::plan::{KernelLayout, Selection};
use crate::probe::{ProbeNoise, ProbePadding, ProbeSettings, ProbeSource};
use crate::Variant;

use super::limits::Limits;

/// Which optimizer minimizes L_CS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// PyTorch's Adam: betas 0.9/0.999, eps 1e-8, no weight decay.
    #[default]
    Adam,
    /// PyTorch's SGD, with optional momentum.
    Sgd,
}

/// Every option of a run, named as on the command line (`--keep-norm` is `keep_norm`,
/// `--no-probe` is `probe: false`), with the command line's defaults. Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct RunSettings {
    /// Optimizer iterations per conv layer.
    pub iters: usize,
    /// Learning rate (finite, at least 0).
    pub lr: f64,
    pub optimizer: OptimizerName,
    /// SGD momentum (optimizer `sgd` only; 0 disables it).
    pub momentum: Option<f64>,
    /// Which kernel pairs L_CS sums over.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "paper"))]
    pub variant: Variant,
    /// Rescale every filter to its starting norm after each step.
    pub keep_norm: bool,
    /// Only optimize conv weights whose name matches one of these regexes.
    pub include: Vec<String>,
    /// Leave conv weights whose name matches one of these regexes alone.
    pub exclude: Vec<String>,
    /// Leave 1x1 (pointwise) convs alone.
    pub skip_pointwise: bool,
    /// Kernel layout in the file: `oihw` (PyTorch) or `hwio` (Keras/Flax).
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "oihw"))]
    pub layout: KernelLayout,
    /// PyTorch files: the top-level entry holding the state dict.
    pub key: Option<String>,
    /// PyTorch files: a prefix to remove from tensor names.
    pub strip_prefix: Option<String>,
    /// Seed of a built-in architecture's initialization and of the probe's inputs.
    pub seed: u64,
    /// Measure feature-map similarity before and after.
    pub probe: bool,
    /// Probe inputs per layer (at least 1).
    pub probe_batch: u32,
    /// Probe input size, `HxW` (or one number for a square).
    pub probe_size: String,
    /// PNG/JPEG images from this folder instead of U(0,1) noise.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub probe_images: Option<PathBuf>,
    /// The probe's noise without `probe_images`: `uniform` U(0,1), or `centered` U(-1/2,1/2),
    /// the same draws without their mean.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "uniform"))]
    pub probe_noise: ProbeNoise,
    /// Padding of the probe's convolution: `same`, `valid` or `full`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "same"))]
    pub probe_padding: ProbePadding,
    /// The probe's figures of a layer with more filters than this, whose exact figures would be
    /// costly, are estimated on this many of them, drawn with `seed`; 0 measures every pair.
    pub probe_sample: u32,
    /// The kernel |cos| of a layer with more filters than this is estimated on this many of
    /// them, drawn with `seed`; 0 measures every pair.
    pub kernel_cosine_sample: u32,
    /// Write shards of at most this size (`5GB`, `500MiB`, bytes) with an index.
    pub max_shard_size: Option<String>,
}

impl Default for RunSettings {
    fn default() -> Self {
        let minimize = Settings::default();
        Self {
            iters: minimize.iterations,
            lr: minimize.optimizer.lr(),
            optimizer: OptimizerName::Adam,
            momentum: None,
            variant: minimize.variant,
            keep_norm: minimize.keep_norm,
            include: Vec::new(),
            exclude: Vec::new(),
            skip_pointwise: false,
            layout: KernelLayout::default(),
            key: None,
            strip_prefix: None,
            seed: 0,
            probe: true,
            probe_batch: 4,
            probe_size: "16x16".into(),
            probe_images: None,
            probe_noise: ProbeNoise::default(),
            probe_padding: ProbePadding::default(),
            probe_sample: DEFAULT_PROBE_SAMPLE,
            kernel_cosine_sample: DEFAULT_KERNEL_COSINE_SAMPLE,
            max_shard_size: None,
        }
    }
}

/// Filters the kernel |cos| of a wide layer looks at by default: within 0.002 of every pair's
/// figure on ResNet-50's layers (`tests/filter_sample.rs`), at a cost that no longer grows with
/// the square of the layer's width.
pub const DEFAULT_KERNEL_COSINE_SAMPLE: u32 = 128;

/// Filters the probe looks at in a wide, costly layer by default: a root-mean-square error of
/// about 0.002-0.004 per layer on ResNet-50 and EfficientNet-B0 (`tests/probe_sample.rs`,
/// docs/math.md), for a fifth of the exact probe's cost on ResNet-50.
pub const DEFAULT_PROBE_SAMPLE: u32 = 128;

/// A setting that makes no sense, or asks for more than a service's [`Limits`], named as in
/// [`RunSettings`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingsError {
    /// The field (`lr`, `momentum`, ...); the command line's flag is `--` plus it with dashes.
    pub field: &'static str,
    pub message: String,
    /// The setting is valid but over one of the [`Limits`] the check was given.
    pub over_limit: bool,
}

impl SettingsError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
            over_limit: false,
        }
    }

    pub(super) fn over_limit(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            over_limit: true,
            ..Self::new(field, message)
        }
    }
}

/// Settings that passed [`RunSettings::check`], in the form the pipeline uses.
#[derive(Debug, Clone)]
pub struct CheckedSettings {
    pub minimize: Settings,
    pub selection: Selection,
    pub pth: PthOptions,
    pub seed: u64,
    pub probe: Option<ProbeSettings>,
    pub sampling: PairSampling,
    pub max_shard_size: Option<usize>,
}

impl RunSettings {
    /// Checks every field and builds what the pipeline runs.
    pub fn check(&self) -> Result<CheckedSettings, SettingsError> {
        self.check_within(&Limits::NONE)
    }

    /// [`RunSettings::check`], also refusing what asks for more than `limits` (a service's).
    pub fn check_within(&self, limits: &Limits) -> Result<CheckedSettings, SettingsError> {
        limits.check_iters(self.iters)?;
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return Err(SettingsError::new(
                "lr",
                format!("must be a finite number of at least 0, got {}", self.lr),
            ));
        }
        let optimizer = match self.optimizer {
            OptimizerName::Adam => {
                if self.momentum.is_some() {
                    return Err(SettingsError::new(
                        "momentum",
                        "applies to the sgd optimizer only (Adam has no momentum setting)",
                    ));
                }
                OptimizerConfig::Adam(AdamConfig {
                    lr: self.lr,
                    ..AdamConfig::default()
                })
            }
            OptimizerName::Sgd => {
                let momentum = self.momentum.unwrap_or(0.0);
                if !(momentum.is_finite() && momentum >= 0.0) {
                    return Err(SettingsError::new(
                        "momentum",
                        format!("must be a finite number of at least 0, got {momentum}"),
                    ));
                }
                OptimizerConfig::Sgd(SgdConfig {
                    lr: self.lr,
                    momentum,
                })
            }
        };
        optimizer
            .validate()
            .map_err(|e| SettingsError::new("lr", e.to_string()))?;
        let selection = Selection {
            include: regexes("include", &self.include)?,
            exclude: regexes("exclude", &self.exclude)?,
            skip_pointwise: self.skip_pointwise,
            layout: self.layout,
        };
        let probe = if self.probe {
            let sample = filter_limit("probe_sample", self.probe_sample)?;
            if self.probe_batch == 0 {
                return Err(SettingsError::new("probe_batch", "must be at least 1"));
            }
            let (height, width) = parse_probe_size(&self.probe_size)
                .map_err(|e| SettingsError::new("probe_size", e.to_string()))?;
            limits.check_probe(self.probe_batch as usize, height, width)?;
            Some(ProbeSettings {
                source: match (&self.probe_images, self.probe_noise) {
                    (Some(_), ProbeNoise::Centered) => {
                        return Err(SettingsError::new(
                            "probe_noise",
                            "centered noise replaces the probe's images; give one or the other",
                        ))
                    }
                    (Some(dir), ProbeNoise::Uniform) => ProbeSource::Images { dir: dir.clone() },
                    (None, ProbeNoise::Uniform) => ProbeSource::Random { seed: self.seed },
                    (None, ProbeNoise::Centered) => ProbeSource::Centered { seed: self.seed },
                },
                batch: self.probe_batch as usize,
                height,
                width,
                padding: self.probe_padding,
                sample: PairSampling {
                    limit: sample,
                    seed: self.seed,
                },
            })
        } else {
            None
        };
        let sampling = PairSampling {
            limit: filter_limit("kernel_cosine_sample", self.kernel_cosine_sample)?,
            seed: self.seed,
        };
        let max_shard_size = self
            .max_shard_size
            .as_deref()
            .map(crate::checkpoint::parse_size)
            .transpose()
            .map_err(|e| SettingsError::new("max_shard_size", e.to_string()))?;
        Ok(CheckedSettings {
            minimize: Settings {
                variant: self.variant,
                iterations: self.iters,
                optimizer,
                keep_norm: self.keep_norm,
            },
            selection,
            pth: PthOptions {
                key: self.key.clone(),
                strip_prefix: self.strip_prefix.clone(),
            },
            seed: self.seed,
            probe,
            sampling,
            max_shard_size,
        })
    }
}

/// The limit of a filter sample: `None` for 0 (every pair).
fn filter_limit(field: &'static str, filters: u32) -> Result<Option<usize>, SettingsError> {
    match filters {
        0 => Ok(None),
        1 => Err(SettingsError::new(
            field,
            "a pair needs 2 filters: give at least 2, or 0 to measure every pair",
        )),
        m => Ok(Some(m as usize)),
    }
}

fn regexes(field: &'static str, patterns: &[String]) -> Result<Vec<Regex>, SettingsError> {
    patterns
        .iter()
        .map(|p| {
            Regex::new(p).map_err(|e| {
                let first = e.to_string();
                let first = first.lines().last().unwrap_or_default().trim().to_string();
                SettingsError::new(field, format!("'{p}' is not a valid regex: {first}"))
            })
        })
        .collect()
}

/// A probe size that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}': expected HxW with positive sizes, e.g. 32x32")]
pub struct ProbeSizeError(pub String);

/// `HxW` with positive sizes, or one number for a square.
pub fn parse_probe_size(s: &str) -> Result<(usize, usize), ProbeSizeError> {
    let parse = |v: &str| v.trim().parse::<usize>().ok().filter(|&n| n > 0);
    match s.split_once(['x', 'X']) {
        Some((h, w)) => parse(h).zip(parse(w)),
        None => parse(s).map(|n| (n, n)),
    }
    .ok_or_else(|| ProbeSizeError(s.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<CheckedSettings, SettingsError> {
        serde_json::from_str::<RunSettings>(json).unwrap().check()
    }

    #[test]
    fn defaults_are_the_command_lines() {
        let checked = check("{}").unwrap();
        assert_eq!(checked.minimize, Settings::default());
        assert_eq!(checked.seed, 0);
        let probe = checked.probe.unwrap();
        assert_eq!((probe.batch, probe.height, probe.width), (4, 16, 16));
        assert!(checked.max_shard_size.is_none());
    }

    #[test]
    fn every_rule_names_its_field() {
        let cases = [
            (r#"{"lr": -1}"#, "lr"),
            (r#"{"momentum": 0.9}"#, "momentum"),
            (r#"{"optimizer": "sgd", "momentum": -0.5}"#, "momentum"),
            (r#"{"include": ["("]}"#, "include"),
            (r#"{"exclude": ["[a"]}"#, "exclude"),
            (r#"{"probe_batch": 0}"#, "probe_batch"),
            (r#"{"probe_size": "0x3"}"#, "probe_size"),
            (
                r#"{"probe_images": "imgs", "probe_noise": "centered"}"#,
                "probe_noise",
            ),
            (r#"{"max_shard_size": "5 parsecs"}"#, "max_shard_size"),
            (r#"{"kernel_cosine_sample": 1}"#, "kernel_cosine_sample"),
            (r#"{"probe_sample": 1}"#, "probe_sample"),
        ];
        for (json, field) in cases {
            assert_eq!(check(json).unwrap_err().field, field, "{json}");
        }
        // A disabled probe's settings are not looked at.
        assert!(check(r#"{"probe": false, "probe_batch": 0}"#).is_ok());
    }

    #[test]
    fn unknown_fields_and_values_are_refused() {
        for json in [
            r#"{"iterations": 10}"#,
            r#"{"variant": "diagonal"}"#,
            r#"{"optimizer": "lbfgs"}"#,
            r#"{"iters": -3}"#,
        ] {
            assert!(serde_json::from_str::<RunSettings>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn sample_limits_are_filters_or_every_pair() {
        let checked =
            check(r#"{"seed": 4, "probe_sample": 0, "kernel_cosine_sample": 2}"#).unwrap();
        assert_eq!(
            checked.probe.unwrap().sample,
            PairSampling {
                limit: None,
                seed: 4
            }
        );
        assert_eq!(checked.sampling.limit, Some(2));
        let defaults = check("{}").unwrap();
        assert_eq!(
            defaults.probe.unwrap().sample.limit,
            Some(DEFAULT_PROBE_SAMPLE as usize)
        );
    }

    #[test]
    fn probe_noise_chooses_the_source() {
        let source = |json: &str| check(json).unwrap().probe.unwrap().source;
        assert_eq!(source(r#"{"seed": 3}"#), ProbeSource::Random { seed: 3 });
        assert_eq!(
            source(r#"{"seed": 3, "probe_noise": "centered"}"#),
            ProbeSource::Centered { seed: 3 }
        );
        assert_eq!(
            source(r#"{"probe_images": "imgs", "probe_noise": "uniform"}"#),
            ProbeSource::Images { dir: "imgs".into() }
        );
        assert!(serde_json::from_str::<RunSettings>(r#"{"probe_noise": "gaussian"}"#).is_err());
    }

    #[test]
    fn sgd_with_momentum_is_accepted() {
        let checked = check(r#"{"optimizer": "sgd", "lr": 0.1, "momentum": 0.9}"#).unwrap();
        assert_eq!(
            checked.minimize.optimizer,
            OptimizerConfig::Sgd(SgdConfig {
                lr: 0.1,
                momentum: 0.9
            })
        );
    }

    #[test]
    fn limits_refuse_what_is_over_them_and_name_them() {
        let limits = Limits {
            max_iters: Some(1000),
            max_probe_pixels: Some(4 * 64 * 64),
        };
        let within = |json: &str| {
            serde_json::from_str::<RunSettings>(json)
                .unwrap()
                .check_within(&limits)
        };
        assert!(within(r#"{"iters": 1000, "probe_batch": 4, "probe_size": "64x64"}"#).is_ok());

        let e = within(r#"{"iters": 1000000000000}"#).unwrap_err();
        assert_eq!((e.field, e.over_limit), ("iters", true));
        assert!(e.message.contains("limit of 1000") && e.message.contains("max_iters"));

        let e = within(r#"{"probe_batch": 5, "probe_size": "64x64"}"#).unwrap_err();
        assert_eq!((e.field, e.over_limit), ("probe_size", true));
        assert!(e.message.contains("20480 pixels") && e.message.contains("max_probe_pixels"));
        // A size overflowing usize is still over the limit, not wrapped below it.
        let e = within(r#"{"probe_size": "99999999999x99999999999"}"#).unwrap_err();
        assert!(e.over_limit);
        // Without the probe its size is not run, so not capped.
        assert!(within(r#"{"probe": false, "probe_size": "1000x1000"}"#).is_ok());

        // Invalid settings are still invalid, not over a limit; the command line has no limits.
        assert!(!within(r#"{"lr": -1}"#).unwrap_err().over_limit);
        assert!(check(r#"{"iters": 1000000000000, "probe_size": "1000x1000"}"#).is_ok());
    }
}
