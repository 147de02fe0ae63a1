//! Helpers of the tests that run the `cs-init` binary: the library's test helpers, and the
//! binary's own.
#![allow(dead_code)]

#[path = "../../../tests/common/mod.rs"]
mod library;
#[cfg(feature = "serve")]
pub mod server;

#[allow(unused_imports)] // each test binary uses some of the helpers
pub use library::*;

use std::path::Path;

/// Runs the `cs-init` binary in `dir`.
pub fn cs_init(args: &[&str], dir: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cs-init"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("cs-init runs")
}

/// Runs the `cs-init` binary in `dir`; fails the test with its stderr unless it succeeds.
/// Returns its standard output.
pub fn cs_init_ok(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = cs_init(args, dir);
    assert!(
        out.status.success(),
        "cs-init {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
