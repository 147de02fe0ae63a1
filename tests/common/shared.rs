//! `../shared/data`, the real checkpoints and data sets made by others that developer checkouts
//! and CI have beside the repository, and that a user's clone has not. A test that needs it
//! skips, saying so, where it is absent; with `CS_INIT_REQUIRE_SHARED=1` (CI sets it) it fails
//! instead, so that a run cannot pass having checked nothing. No other dependency: the models
//! crate's tests include this file too.

use std::path::{Path, PathBuf};

/// The switch that turns an absent `../shared` into a failure.
pub const REQUIRE_SHARED_VARIABLE: &str = "CS_INIT_REQUIRE_SHARED";

/// `part` of `../shared/data` beside the repository whose root is `repository`: `Some` where it
/// exists; where it does not, a panic under `CS_INIT_REQUIRE_SHARED=1`, else `None` and a line
/// on stderr.
pub fn shared_data_at(repository: &Path, part: &str) -> Option<PathBuf> {
    let path = repository.join("../shared/data").join(part);
    if path.exists() {
        return Some(path);
    }
    let required = std::env::var(REQUIRE_SHARED_VARIABLE).is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{REQUIRE_SHARED_VARIABLE}=1 but {} is absent",
        path.display()
    );
    eprintln!(
        "skipped: {} is absent (only developer checkouts and CI have it)",
        path.display()
    );
    None
}
