//! Helpers shared by the models tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

#[path = "../../../tests/common/shared.rs"]
mod shared;

/// `../shared/data/<part>` beside the repository, present in CI and developer checkouts and
/// absent in user clones: tests that need it skip with a message, or fail under
/// `CS_INIT_REQUIRE_SHARED=1`.
pub fn shared(part: &str) -> Option<PathBuf> {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    shared::shared_data_at(&repository, part)
}

/// The first labels of the official test and training batches.
pub const FIRST_TEST_LABELS: [u8; 10] = [3, 8, 8, 0, 6, 6, 1, 6, 3, 1];
pub const FIRST_TRAIN_LABELS: [u8; 10] = [6, 9, 9, 4, 1, 1, 2, 7, 8, 3];
