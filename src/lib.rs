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
//! As a regularizer in a candle training loop:
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use cs_init::similarity::{conv_similarity, Variant};
//!
//! let conv = Var::from_tensor(&Tensor::randn(0f32, 0.1, (16, 3, 3, 3), &Device::Cpu)?)?;
//! let task_loss = conv.sqr()?.mean_all()?; // stands for the model's loss
//! let loss = (task_loss + (conv_similarity(conv.as_tensor(), Variant::Paper)? * 1e-3)?)?;
//! let grads = loss.backward()?;
//! assert!(grads.get(conv.as_tensor()).is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod arch;
pub mod checkpoint;
pub mod cli;
pub mod device;
mod error;
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

pub use error::{Error, Result};
pub use minimize::{minimize, minimize_while, Engine, Minimized, Settings, Trace};
pub use similarity::{conv_similarity, KernelGeometry, Variant};
