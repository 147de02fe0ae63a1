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

/// Found while writing the `safetensors` target's byte-count check (the fuzzer did not reach
/// it): an empty tensor whose other dimensions overflow when multiplied is valid, and
/// `TensorInfo::elements` overflowed on it.
#[test]
fn empty_tensor_with_huge_dimensions_has_no_elements() {
    let header =
        br#"{"e":{"dtype":"F32","shape":[1099511627776,1099511627776,0],"data_offsets":[0,0]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    let file =
        cs_init::checkpoint::SafetensorsFile::from_bytes("empty.safetensors", bytes).unwrap();
    let tensor = &file.tensors()[0];
    assert_eq!(tensor.elements(), 0);
    assert!(file.data(tensor).is_empty());
}

/// fuzz target `sharded`: a weight map naming the shard `./` (or `/`, `a/`, `a/.`) was accepted
/// as a plain file name, and the shard's path was the index's directory (or the root).
#[test]
fn sharded_index_refuses_shard_names_that_are_not_file_names() {
    use cs_init::checkpoint::ShardIndex;
    let index = std::path::Path::new("model/model.safetensors.index.json");
    for shard in ["./", "/", "a/", "a/.", ".", "..", "a/b", ""] {
        let text = format!(r#"{{"metadata": null, "weight_map": {{"x.": "{shard}"}}}}"#);
        let e = ShardIndex::from_json(index, &text)
            .expect_err(shard)
            .to_string();
        assert!(e.contains("is not a plain file name"), "{shard:?}: {e}");
    }
    let fine = ShardIndex::from_json(index, r#"{"weight_map": {"x": "a.safetensors"}}"#).unwrap();
    assert_eq!(
        fine.shard_path("a.safetensors"),
        std::path::Path::new("model/a.safetensors")
    );
}
