//! A `.tar.gz` of the image-folder layout, decoded once and cached in the binary format.
//!
//! The archive is read as a stream (nothing is unpacked to disk); the decoded splits are written
//! to `<cache>/<archive name>-<size>-<mtime>/{train,test}.bin`, so a changed archive gets a new
//! cache entry and a second run reads 180 MB of records instead of decoding 60,000 JPEGs.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{bail, Context, Result};

use super::folder::{decode_all, is_image, label_of};
use super::{binary, read, Dataset, Split};

pub fn is_archive(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

/// The cache entry of `archive`: its name, size and modification time.
fn cache_entry(archive: &Path, cache_dir: &Path) -> Result<PathBuf> {
    let meta =
        std::fs::metadata(archive).with_context(|| format!("cannot read {}", archive.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let name = archive.file_name().unwrap_or_default().to_string_lossy();
    Ok(cache_dir.join(format!("{name}-{}-{mtime}", meta.len())))
}

pub fn load(archive: &Path, cache_dir: &Path, split: Split) -> Result<Dataset> {
    let entry = cache_entry(archive, cache_dir)?;
    let cached = entry.join(format!("{}.bin", split.folder()));
    if !cached.exists() {
        decode_into_cache(archive, &entry)?;
    }
    binary::parse(&read(&cached)?, &cached)
}

/// The split and label of an archive member such as `test/cat/0001.jpg` (any leading folders
/// are allowed: `cifar10/test/cat/0001.jpg`).
fn classify(path: &Path) -> Option<(Split, u8)> {
    let parts: Vec<&str> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => p.to_str(),
            _ => None,
        })
        .collect();
    let [.., split, class, file] = parts.as_slice() else {
        return None;
    };
    if !is_image(file) {
        return None;
    }
    let split = match *split {
        "train" => Split::Train,
        "test" => Split::Test,
        _ => return None,
    };
    Some((split, label_of(class)?))
}

fn decode_into_cache(archive: &Path, entry: &Path) -> Result<()> {
    let file = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut members: [Vec<(u8, String, Vec<u8>)>; 2] = [Vec::new(), Vec::new()];
    let context = || format!("cannot read the archive {}", archive.display());
    for member in tar.entries().with_context(context)? {
        let mut member = member.with_context(context)?;
        let path = member.path().with_context(context)?.into_owned();
        let Some((split, label)) = classify(&path) else {
            continue;
        };
        let mut bytes = Vec::with_capacity(member.size() as usize);
        member.read_to_end(&mut bytes).with_context(context)?;
        let origin = format!("{}:{}", archive.display(), path.display());
        members[split as usize].push((label, origin, bytes));
    }
    if members.iter().all(|m| m.is_empty()) {
        bail!(
            "{} holds no train/<class>/*.jpg or test/<class>/*.jpg images",
            archive.display()
        );
    }
    let parent = entry.parent().expect("a cache entry has a parent");
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create the cache directory {}", parent.display()))?;
    // Decoded into a temporary directory renamed into place, so an interrupted run leaves no
    // half-written cache behind.
    let staging = tempfile_dir(parent)?;
    for (split, mut list) in [Split::Train, Split::Test].into_iter().zip(members) {
        // Class by class, files by name: the same order as the unpacked folder layout gives.
        list.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let dataset = decode_all(list)?;
        let path = staging.join(format!("{}.bin", split.folder()));
        std::fs::write(&path, binary::encode(&dataset))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    match std::fs::rename(&staging, entry) {
        Ok(()) => Ok(()),
        // Another process finished the same entry first.
        Err(_) if entry.join("test.bin").exists() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", entry.display())),
    }
}

fn tempfile_dir(parent: &Path) -> Result<PathBuf> {
    let path = parent.join(format!(".decoding-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(path)
}
