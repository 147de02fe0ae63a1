//! The `cs-init` binary: all logic lives in the library (`cs_init::cli`).

fn main() -> std::process::ExitCode {
    cs_init::cli::main()
}
