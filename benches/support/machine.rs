//! What the benches print about the machine they ran on.

/// The CPU model and the threads rayon runs on.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU")
        .to_string();
    format!("{model}, {} threads (rayon)", rayon::current_num_threads())
}
