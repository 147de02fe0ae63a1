//! The library's integration tests, one module per concept, linked into one test binary (a binary
//! per file linked candle 13 times). Run one module with `cargo test --test main -- similarity::`.
//!
//! Tests that read `../shared` (real checkpoints made by others) say "skipped" where it is absent;
//! with `CS_INIT_REQUIRE_SHARED=1` (CI sets it) they fail instead (`common::shared_file`).

mod common;

mod arch;
mod conv_kinds;
mod filter_sample;
mod fuzz_regressions;
mod identity;
mod in_memory;
mod minimize;
mod plot;
mod probe_sample;
mod pytorch;
mod pytorch_forms;
mod reproduce;
mod similarity;
mod totals;
