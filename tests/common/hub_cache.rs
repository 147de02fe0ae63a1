//! A Hugging Face Hub cache on disk, in the layout the real clients write.

use std::path::{Path, PathBuf};

/// Stores `bytes` as `file` of `repo` at `commit` (a blob plus a snapshot symlink to it).
pub fn cache_file(cache: &Path, repo: &str, commit: &str, file: &str, bytes: &[u8]) -> PathBuf {
    let dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    let blob = dir
        .join("blobs")
        .join(format!("{:x}", bytes.len() * 7919 + file.len()));
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::write(&blob, bytes).unwrap();
    let link = dir.join("snapshots").join(commit).join(file);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    let depth = file.matches('/').count() + 2;
    let target = Path::new(&"../".repeat(depth))
        .join("blobs")
        .join(blob.file_name().unwrap());
    std::os::unix::fs::symlink(target, &link).unwrap();
    link
}

pub fn set_ref(cache: &Path, repo: &str, name: &str, commit: &str) {
    let refs = cache
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("refs");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::write(refs.join(name), commit).unwrap();
}
