//! The `cs-init` binary: the command line is the `cs_init_cli` library's, so that the Python
//! package's console script runs the very same one.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(cs_init_cli::main_from(std::env::args_os()))
}
