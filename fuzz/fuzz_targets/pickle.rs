//! The pickle machine with PyTorch's hooks, fed through the legacy container: the input is
//! everything after the legacy header (magic number, protocol version and sys_info pickles,
//! which are fixed here), so it is the main pickle, then the pickle listing the storage keys,
//! then the storages. Errors are fine; panics, aborts, leaks and unbounded allocations are not.

#![no_main]

use std::path::Path;

use cs_init::checkpoint::read_pth_bytes;
use libfuzzer_sys::fuzz_target;

/// The magic number, protocol version 1001 and a sys_info dict, as torch.save writes them.
const HEADER: &[u8] = &[
    // LONG1 10 bytes: 0x1950a86a20f9469cfc6c
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.',
    // BININT2 1001
    0x80, 0x02, b'M', 0xe9, 0x03, b'.', // {'little_endian': True}
    0x80, 0x02, b'}', b'q', 0x00, b'X', 0x0d, 0x00, 0x00, 0x00, b'l', b'i', b't', b't', b'l', b'e',
    b'_', b'e', b'n', b'd', b'i', b'a', b'n', 0x88, b's', b'.',
];

fuzz_target!(|data: &[u8]| {
    let file = [HEADER, data].concat();
    let origin = Path::new("fuzz.pt");
    if let Ok(checkpoint) = read_pth_bytes(origin, &file, None, None) {
        for t in &checkpoint.tensors {
            let bits = t.shape.iter().product::<usize>() as u128 * t.dtype.bitsize() as u128;
            assert_eq!(bits / 8, t.data.len() as u128, "{}", t.name);
        }
        // An explicit key and prefix take the other paths of the state-dict search.
        if let Some(key) = &checkpoint.key {
            let _ = read_pth_bytes(origin, &file, Some(key), Some(""));
        }
    }
});
