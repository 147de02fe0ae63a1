//! cs-init: minimize the Convolutional Similarity (Belmekki et al., "Feature Map Similarity
//! Reduction in Convolutional Neural Networks") of every conv layer of a network.
//!
//! The modules, in the order the data flows through a run (docs/architecture.md says why each
//! boundary is where it is):
//!
//! - [`input`]: what a run's input names (a file, a sharded directory, `hf://`, a built-in).
//! - [`checkpoint`]: the formats on disk: safetensors, shards, PyTorch files, the Hub's cache.
//! - [`arch`]: the built-in architectures, freshly initialized with PyTorch's names.
//! - [`plan`]: which tensors are conv weights to optimize, and why.
//! - [`device`]: which device a run computes on.
//! - `host`: arithmetic on tensors in CPU memory, the leaf the compute core stands on.
//! - [`similarity`]: the loss L_CS, its variants, its engines and the literal reference.
//! - [`optim`]: Adam and SGD with PyTorch's semantics, applied by the engines.
//! - [`minimize`]: minimizing one layer for its iterations.
//! - [`filter_sample`]: which filters the figures over filter pairs look at.
//! - [`metrics`] and [`probe`]: a layer's figures from its kernels, and from its feature maps.
//! - [`measure`]: a layer's figures at one moment, from the metrics and the probe.
//! - [`run`]: one run of the main job (settings, input, plan, engine, writer, report), shared
//!   by the command line, the service and the Python package.
//! - [`inspect`]: a checkpoint's figures, measured as a run measures them, changing nothing.
//! - [`check`]: the fast engines against the literal definition on a checkpoint's own layers.
//! - [`report`]: the run's report as data, and its renderings (JSON, table, plot).
//! - [`reproduce`]: the paper's 1-D experiments, re-run.
//!
//! As a regularizer in a candle training step:
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use candle_nn::{Optimizer, SGD};
//! use cs_init::similarity::{conv_similarity, Variant};
//!
//! let conv = Var::from_tensor(&Tensor::randn(0f32, 0.1, (16, 3, 3, 3), &Device::Cpu)?)?;
//! let mut optimizer = SGD::new(vec![conv.clone()], 0.1)?;
//! let before = conv_similarity(conv.as_tensor(), Variant::Paper)?.to_scalar::<f32>()?;
//! let task_loss = conv.sqr()?.mean_all()?; // stands for the model's loss
//! let loss = (task_loss + (conv_similarity(conv.as_tensor(), Variant::Paper)? * 1e-3)?)?;
//! optimizer.backward_step(&loss)?;
//! let after = conv_similarity(conv.as_tensor(), Variant::Paper)?.to_scalar::<f32>()?;
//! assert!(after < before);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The library's default build is the math, the checkpoint formats and the pipeline; it has no
//! command line and no HTTP stack (the `cs-init` binary in `cli/` and the job service in `serve/`
//! are crates of their own). Features add `hub` (downloads from the Hugging Face Hub),
//! `openapi` (the settings' OpenAPI schema, for the service), `cuda` and `metal`.

pub mod input;
pub mod checkpoint;
pub mod arch;
pub mod plan;
pub mod device;
mod host;
pub mod similarity;
pub mod optim;
pub mod minimize;
pub mod filter_sample;
pub mod metrics;
pub mod probe;
pub mod measure;
pub mod run;
pub mod inspect;
pub mod check;
pub mod report;
pub mod reproduce;
mod error;
#[cfg(test)]
mod test_tensors;

pub use error::{Error, Result};
pub use minimize::{minimize, minimize_while, Engine, Minimized, Settings, Trace};
pub use similarity::{conv_similarity, KernelGeometry, Variant};
