//! The paper's experiments with cs-init: its networks in candle, CIFAR-10 loaders, an
//! evaluator and a trainer with the three arms of Table 5 (baseline, CS initialization, CS
//! regularization). See `docs/experiments.md` for the protocol and the results.

pub mod cli;
pub mod data;
pub mod eval;
pub mod nets;
pub mod params;
pub mod plot;
pub mod study;
pub mod train;

pub use nets::{Architecture, Network};
