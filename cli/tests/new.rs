//! `cs-init new`: every built-in architecture, written by the command, as the library defines it.

use cs_init::arch::Architecture;
use cs_init::checkpoint::SafetensorsFile;

/// `cs-init new NAME` writes every built-in with the names and shapes of `tensors`.
#[test]
fn new_writes_every_builtin() {
    let dir = tempfile::tempdir().unwrap();
    for arch in Architecture::ALL {
        let file = format!("{arch}.safetensors");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cs-init"))
            .args(["new", arch.name(), "-o", &file, "--quiet"])
            .current_dir(dir.path())
            .output()
            .expect("cs-init runs");
        assert!(
            out.status.success(),
            "{arch}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let written = SafetensorsFile::open(&dir.path().join(&file)).unwrap();
        let mut actual: Vec<(String, Vec<usize>)> = written
            .tensors()
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect();
        let mut expected: Vec<(String, Vec<usize>)> = arch
            .tensors(0)
            .unwrap()
            .into_iter()
            .map(|(name, t)| (name, t.dims().to_vec()))
            .collect();
        actual.sort();
        expected.sort();
        assert_eq!(actual, expected, "{arch}");
    }
}
