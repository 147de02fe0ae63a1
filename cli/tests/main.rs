//! The `cs-init` binary's tests, run as a user runs it, one module per concept in one test binary.
//! `service` and `browser` start `cs-init serve` (the `serve` feature, on by default).

mod common;

#[cfg(feature = "serve")]
mod browser;
mod checkpoints;
mod cli;
mod determinism;
mod hub;
mod new;
mod plan;
#[cfg(feature = "serve")]
mod service;
