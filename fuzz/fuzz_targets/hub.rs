//! `hf://` references and the Hub cache's layout. Input: the reference, a newline, then the
//! text of the cache's `refs/REVISION` file (absent when there is no newline).
//!
//! A parsed reference must describe itself as a reference that parses back to it, and every
//! cache path it leads to must stay inside the repository's snapshots.

#![no_main]

use std::path::{Component, Path};

use cs_init::checkpoint::HubSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (reference, ref_contents) = match text.split_once('\n') {
        Some((reference, contents)) => (reference, Some(contents)),
        None => (text, None),
    };
    let Some(parsed) = HubSource::parse(reference) else {
        assert!(!reference.starts_with("hf://"));
        return;
    };
    let Ok(source) = parsed else {
        return;
    };
    let again = HubSource::parse(&source.describe())
        .expect("describe() gives an hf:// reference")
        .expect("describe() gives a valid reference");
    assert_eq!(again, source);

    let cache = Path::new("/cache");
    let snapshots = source.cache_dir(cache).join("snapshots");
    assert_eq!(source.cache_dir(cache).parent(), Some(cache));
    let file = source.path.as_deref().unwrap_or("model.safetensors");
    for contents in [ref_contents, None] {
        let Ok(path) = source.cache_path(cache, contents, file) else {
            continue;
        };
        let inside = path
            .strip_prefix(&snapshots)
            .unwrap_or_else(|_| panic!("{} is outside {}", path.display(), snapshots.display()));
        assert!(
            inside
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir)),
            "{} leaves the snapshots",
            path.display()
        );
        assert!(inside.components().count() >= 2, "{}", path.display());
    }
});
