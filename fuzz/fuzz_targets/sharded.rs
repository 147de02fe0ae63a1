//! A sharded checkpoint: its index JSON, then the agreement of the index with its shards.
//!
//! Input framing: a 2-byte little-endian length, the index's text, then for each shard the index
//! names (in sorted order) a 4-byte little-endian length and the shard's bytes. Missing frames
//! are empty shards. `fuzz/seed.py` writes seeds in this framing.

#![no_main]

use std::path::Path;

use cs_init::checkpoint::{SafetensorsFile, ShardIndex};
use libfuzzer_sys::fuzz_target;

fn frame<'a>(data: &mut &'a [u8], width: usize) -> &'a [u8] {
    if data.len() < width {
        return std::mem::take(data);
    }
    let (len, rest) = data.split_at(width);
    let mut wide = [0u8; 8];
    wide[..width].copy_from_slice(len);
    let len = (u64::from_le_bytes(wide) as usize).min(rest.len());
    let (frame, rest) = rest.split_at(len);
    *data = rest;
    frame
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let index = frame(&mut data, 2);
    let Ok(text) = std::str::from_utf8(index) else {
        return;
    };
    let dir = Path::new("fuzz-shards");
    let Ok(index) = ShardIndex::from_json(&dir.join("model.safetensors.index.json"), text) else {
        return;
    };
    for shard in index.shards() {
        let path = index.shard_path(shard);
        assert!(
            path.starts_with(dir),
            "{} leaves the index's directory",
            path.display()
        );
        assert_eq!(path.parent(), Some(dir), "{shard} is not a plain file name");
    }
    let mut files = Vec::new();
    for shard in index.shards() {
        match SafetensorsFile::from_bytes(index.shard_path(shard), frame(&mut data, 4).to_vec()) {
            Ok(file) => files.push(file),
            Err(_) => return,
        }
    }
    if index.check_shards(&files).is_ok() {
        for (tensor, shard) in index.weight_map() {
            let i = index.shards().binary_search(shard).expect("listed shard");
            let info = files[i].tensor(tensor).expect("checked tensor");
            std::hint::black_box(files[i].data(info));
        }
    }
    // Fewer files than shards must be an error, not a panic.
    if !files.is_empty() {
        assert!(index.check_shards(&files[1..]).is_err());
    }
});
