//! The safetensors reader: header length, JSON header, tensor layout. Every tensor a file passes
//! validation with must be readable, with as many bytes as its dtype and shape need.

#![no_main]

use cs_init::checkpoint::SafetensorsFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = SafetensorsFile::from_bytes("fuzz.safetensors", data.to_vec()) else {
        return;
    };
    let mut checksum = 0u8;
    for tensor in file.tensors() {
        let bytes = file.data(tensor);
        assert_eq!(bytes.len(), tensor.end - tensor.begin, "{}", tensor.name);
        let bits = tensor.elements() as u128 * tensor.dtype.bitsize() as u128;
        assert_eq!(bits.div_ceil(8), bytes.len() as u128, "{}", tensor.name);
        checksum ^= bytes.iter().fold(0, |a, b| a ^ b);
        assert!(file.tensor(&tensor.name).is_some());
    }
    std::hint::black_box((checksum, file.metadata()));
});
