//! A run's settings as the service receives them: JSON from strangers, deserialized into
//! `RunSettings` and checked. What passes the check must be what the pipeline can run.

#![no_main]

use cs_init::run::RunSettings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(settings) = serde_json::from_slice::<RunSettings>(data) else {
        return;
    };
    let Ok(checked) = settings.check() else {
        return;
    };
    assert!(settings.lr.is_finite() && settings.lr >= 0.0);
    if let Some(probe) = &checked.probe {
        assert!(probe.batch >= 1 && probe.height >= 1 && probe.width >= 1);
    }
    if let Some(size) = checked.max_shard_size {
        assert!(size >= 1);
    }
    assert_eq!(checked.selection.include.len(), settings.include.len());
    assert_eq!(checked.selection.exclude.len(), settings.exclude.len());
    // What the service echoes back must serialize.
    serde_json::to_vec(&settings).expect("checked settings serialize");
});
