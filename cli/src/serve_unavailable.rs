//! `cs-init serve` in a build without the `serve` feature: a usage error that says how to get the
//! service, rather than clap's "unrecognized subcommand".

use clap::Args;

use super::output::{Exit, UsageError};

/// Whatever follows `serve`; this build cannot run it.
#[derive(Debug, Args)]
pub struct Unavailable {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

pub fn run(_: Unavailable) -> anyhow::Result<Exit> {
    Err(UsageError(
        "this cs-init was built without the job service; build it with \
         `cargo install --path cli --features serve` (or run \
         `cargo run --release --features serve -- serve`), or use the Python package's cs-init"
            .into(),
    )
    .into())
}
