//! The command line's small parsers: `--max-shard-size` (`parse_size`), `--probe-size`
//! (`parse_probe_size`) and `--device` (`DeviceChoice::from_str`), with the properties their
//! callers rely on.

#![no_main]

use cs_init::device::DeviceChoice;
use cs_init::run::parse_probe_size;
use cs_init::sharding::parse_size;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(bytes) = parse_size(text) {
        assert!(bytes >= 1);
        if bytes < 1 << 53 {
            assert_eq!(parse_size(&bytes.to_string()), Ok(bytes));
        }
    }
    if let Ok((height, width)) = parse_probe_size(text) {
        assert!(height >= 1 && width >= 1);
        assert_eq!(
            parse_probe_size(&format!("{height}x{width}")),
            Ok((height, width))
        );
    }
    if let Ok(device) = text.parse::<DeviceChoice>() {
        let name = match device {
            DeviceChoice::Auto => "auto".to_string(),
            DeviceChoice::Cpu => "cpu".to_string(),
            DeviceChoice::Cuda(n) => format!("cuda:{n}"),
            DeviceChoice::Metal => "metal".to_string(),
        };
        assert_eq!(name.parse::<DeviceChoice>(), Ok(device));
    }
});
