//! cs-init: minimize the Convolutional Similarity (Belmekki et al., "Feature Map Similarity
//! Reduction in Convolutional Neural Networks") of every conv layer of a network.
//!
//! - [`similarity`]: the loss L_CS in linear time, its variants, and its engines.
//! - [`optim`]: Adam and SGD with PyTorch's semantics.
//! - [`minimize`]: minimizing one layer.
//! - [`metrics`]: the per-layer figures of the reports.
//! - [`run`]: one run of the main job (settings, input, plan, engine, writer, report), shared by
//!   the command line and the service.
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
//! The library's default build is the math, the checkpoint formats and the pipeline. Features add
//! the rest: `hub` (downloads from the Hugging Face Hub), `cli` (the command line, `cs_init::cli`,
//! which the `cs-init` binary in `cli/` calls), `serve` (the job service), `cuda` and `metal`.

pub mod arch;
pub mod checkpoint;
#[cfg(feature = "cli")]
pub mod cli;
pub mod device;
mod error;
pub mod filter_sample;
mod host_gemm;
mod host_values;
pub mod input;
pub mod metrics;
pub mod minimize;
pub mod optim;
pub mod plan;
pub mod probe;
pub mod report;
pub mod reproduce;
pub mod run;
#[cfg(feature = "serve")]
pub mod serve;
pub mod sharding;
pub mod similarity;
#[cfg(test)]
mod test_tensors;

pub use error::{Error, Result};
pub use minimize::{minimize, minimize_while, Engine, Minimized, Settings, Trace};
pub use similarity::{conv_similarity, KernelGeometry, Variant};
