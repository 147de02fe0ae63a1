//! The same input and settings give byte-identical checkpoints on CPU: across runs, thread
//! counts, working directories and output paths, and between a PyTorch file and cs-init's own
//! conversion of it to safetensors.

use crate::common;

use std::path::{Path, PathBuf};

use crate::common::cs_init_ok;

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    format!("{:x}", sha2::Sha256::digest(&bytes))
}

#[test]
fn outputs_are_the_same_bytes_wherever_and_however_they_run() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b/deeper"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let settings = ["--iters", "60", "--seed", "4", "-q"];
    let run = |cwd: &Path, output: &str, threads: &str| -> PathBuf {
        let mut args = vec!["cnn2", "-o", output, "--threads", threads];
        args.extend(settings);
        cs_init_ok(&args, cwd);
        cwd.join(output)
    };
    let first = run(&a, "one.safetensors", "2");
    let digest = sha256(&first);
    for (cwd, output, threads) in [
        (&a, "two.safetensors", "2"),
        (&a, "three.safetensors", "1"),
        (&b, "elsewhere.cs.safetensors", "1"),
        (&b, "four.safetensors", "2"),
    ] {
        let path = run(cwd, output, threads);
        assert_eq!(
            sha256(&path),
            digest,
            "{output} in {} with {threads} threads",
            cwd.display()
        );
    }
    // Where it ran is nowhere in the file.
    let bytes = std::fs::read(&first).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains(&*dir.path().to_string_lossy()));
}

#[test]
fn a_pytorch_file_and_its_conversion_give_the_same_bytes() {
    let Some(shared) = common::shared_checkpoint("resnet20-cifar10-12fca82f.th") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(&shared, d.join("resnet20.th")).unwrap();
    cs_init_ok(
        &[
            "resnet20.th",
            "--iters",
            "0",
            "-q",
            "-o",
            "converted.safetensors",
        ],
        d,
    );
    let settings = ["--iters", "40", "--lr", "0.002", "-q"];
    let mut from_pth = vec!["resnet20.th", "-o", "from-pth.safetensors"];
    from_pth.extend(settings);
    cs_init_ok(&from_pth, d);
    let mut from_converted = vec!["converted.safetensors", "-o", "from-converted.safetensors"];
    from_converted.extend(settings);
    cs_init_ok(&from_converted, d);
    assert_eq!(
        sha256(&d.join("from-pth.safetensors")),
        sha256(&d.join("from-converted.safetensors"))
    );
}
