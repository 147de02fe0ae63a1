//! A whole PyTorch checkpoint file: the zip archive of torch >= 1.6 or the legacy format, the
//! pickle inside, the storages and the tensors' views of them.

#![no_main]

use std::path::Path;

use cs_init::checkpoint::{looks_like_pth, read_pth_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let origin = Path::new("fuzz.pth");
    let looks = looks_like_pth(data);
    match read_pth_bytes(origin, data, None, None) {
        Ok(checkpoint) => {
            assert!(looks, "read a file that does not look like a checkpoint");
            for t in &checkpoint.tensors {
                let bits = t.shape.iter().product::<usize>() as u128 * t.dtype.bitsize() as u128;
                assert_eq!(bits / 8, t.data.len() as u128, "{}", t.name);
                assert!(!t.name.is_empty());
            }
        }
        Err(e) => assert!(e.to_string().contains("fuzz.pth"), "{e}"),
    }
});
