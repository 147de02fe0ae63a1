//! Inputs the fuzz targets of fuzz/ found crashing or misbehaving (docs/fuzzing.md), minimized,
//! each kept fixed here without nightly or libFuzzer.

use cs_init::checkpoint::HubSource;

/// fuzz target `hub`: `hf://o/n@main./././.` was accepted, and its cache path was the snapshot
/// directory itself rather than a file inside it.
#[test]
fn hub_path_of_dot_components_is_refused() {
    for reference in [
        "hf://o/n@main./././.",
        "hf://o/n/.",
        "hf://o/n/sub/./model.safetensors",
    ] {
        let e = HubSource::parse(reference)
            .expect("an hf:// reference")
            .expect_err(reference);
        assert!(e.to_string().contains("must be plain"), "{reference}: {e}");
    }
    let fine = HubSource::parse("hf://o/n@main./sub/model.safetensors")
        .unwrap()
        .unwrap();
    assert_eq!(fine.revision, "main.");
    assert_eq!(fine.path.as_deref(), Some("sub/model.safetensors"));
}
