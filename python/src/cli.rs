//! The `cs-init` console script's entry: the Rust binary's command line, run in this process.

use std::ffi::OsString;

use pyo3::prelude::*;

/// Runs the `cs-init` command line on `args` (the program's name first, as `sys.argv`) with the
/// GIL released and returns its exit code. It takes over the process as the binary's `main` does
/// (Ctrl-C handler, SIGPIPE, logger; `--help` and a command line that does not parse exit from
/// inside), so only `cs_init._cli`, a console script's process, calls it.
#[pyfunction]
pub fn cli_main(py: Python<'_>, args: Vec<OsString>) -> u8 {
    py.allow_threads(|| cs_init_cli::main_from(args))
}
