//! The `cs-init` binary's tests, run as a user runs it, one module per concept in one test binary.
//! `service` and `browser` start `cs-init serve` (the `serve` feature: `cargo test --workspace`
//! has it, as the Python package asks for it; `cargo test -p cs-init-cli --features serve`).

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
mod replicas;
#[cfg(feature = "serve")]
mod service;

/// The service's and the browser's tests need the `serve` feature; where the browser test is
/// required (`CS_INIT_REQUIRE_BROWSER=1`, as CI sets it) a build without it fails here rather
/// than passing having left them out.
#[cfg(not(feature = "serve"))]
#[test]
fn the_service_tests_are_built_where_they_are_required() {
    assert_ne!(
        std::env::var("CS_INIT_REQUIRE_BROWSER").as_deref(),
        Ok("1"),
        "CS_INIT_REQUIRE_BROWSER=1 but this build has no `serve` feature: run the tests with \
         `--features cs-init-cli/serve` (or `cargo test --workspace`)"
    );
}
