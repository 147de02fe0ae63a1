//! A job's `input`: which schemes the service accepts, and the input the library then reads.

use std::path::{Path, PathBuf};

use super::error::{ErrorKind, ServiceError};
use super::layout::{is_id, Layout};
use super::store::JobStore;
use cs_init::arch::Architecture;
use cs_init::checkpoint::HubSource;
use cs_init::input::built_in_names;

/// A job's input, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInput {
    /// What the library resolves: a path, `hf://...` or `builtin:NAME`.
    pub source: String,
    /// The stem of the output's file names (`resnet18` gives `resnet18.cs.safetensors`).
    pub stem: String,
    /// The upload's path, when the input is one; named `upload:ID` in messages instead.
    pub upload: Option<(PathBuf, String)>,
}

const SCHEMES: &str = "upload:<id>, hf://OWNER/NAME[@REV][/PATH], builtin:<arch>, or a path under the server's --allow-dir";

impl JobInput {
    /// Checks `input` against what the server allows. Local paths must resolve (symlinks
    /// included) to somewhere under one of `allow_dirs` (already canonical).
    pub fn parse(
        input: &str,
        store: &dyn JobStore,
        layout: &Layout,
        allow_dirs: &[PathBuf],
    ) -> Result<Self, ServiceError> {
        if let Some(id) = input.strip_prefix("upload:") {
            let missing = || {
                ServiceError::invalid(
                    "upload_not_found",
                    format!("input {input}: no such upload; POST the file to /v1/uploads first (uploads are deleted after the server's --keep)"),
                )
            };
            if !is_id(id) {
                return Err(missing());
            }
            let upload = store.upload(id)?.ok_or_else(missing)?;
            let path = layout.upload(id);
            return Ok(Self {
                source: path.display().to_string(),
                stem: stem_of(&upload.name),
                upload: Some((path, input.to_string())),
            });
        }
        if let Some(source) = HubSource::parse(input) {
            let source = source.map_err(|e| ServiceError::invalid("bad_input", e.to_string()))?;
            return Ok(Self {
                source: input.to_string(),
                stem: source.name().to_string(),
                upload: None,
            });
        }
        if let Some(name) = input.strip_prefix("builtin:") {
            let arch: Architecture = name.parse().map_err(|_| {
                ServiceError::invalid(
                    "unknown_builtin",
                    format!(
                        "input {input}: not a built-in architecture; expected one of {}",
                        built_in_names()
                    ),
                )
            })?;
            return Ok(Self {
                source: format!("builtin:{}", arch.name()),
                stem: arch.name().to_string(),
                upload: None,
            });
        }
        if has_scheme(input) {
            return Err(ServiceError::invalid(
                "unknown_input_scheme",
                format!("input {input}: unknown scheme; expected {SCHEMES}"),
            ));
        }
        let path = allowed_path(input, allow_dirs)?;
        let stem = path
            .file_name()
            .map(|n| stem_of(&n.to_string_lossy()))
            .unwrap_or_else(|| "model".into());
        Ok(Self {
            source: path.display().to_string(),
            stem,
            upload: None,
        })
    }

    /// A message of the library about this input, with the upload's path named as the client
    /// knows it.
    pub fn relabel(&self, message: &str) -> String {
        match &self.upload {
            Some((path, name)) => message.replace(&path.display().to_string(), name),
            None => message.to_string(),
        }
    }
}

/// `s3://...`, `file:...`, `http://...`: a scheme the service does not read.
fn has_scheme(input: &str) -> bool {
    match input.split_once(':') {
        Some((scheme, _)) => {
            scheme.len() > 1
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}

/// A local path, resolved, if it lies under an allowed directory.
pub fn allowed_path(input: &str, allow_dirs: &[PathBuf]) -> Result<PathBuf, ServiceError> {
    if allow_dirs.is_empty() {
        return Err(ServiceError::new(
            ErrorKind::Forbidden,
            "path_not_allowed",
            format!("{input}: local paths are refused; upload the file to /v1/uploads, or start the server with --allow-dir DIR"),
        ));
    }
    let path = Path::new(input)
        .canonicalize()
        .map_err(|e| ServiceError::invalid("input_not_found", format!("{input}: {e}")))?;
    if !allow_dirs.iter().any(|dir| path.starts_with(dir)) {
        return Err(ServiceError::new(
            ErrorKind::Forbidden,
            "path_not_allowed",
            format!(
                "{input}: resolves outside the server's --allow-dir ({})",
                allow_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(path)
}

/// `resnet20.th` gives `resnet20`; `model.safetensors` gives `model`.
fn stem_of(name: &str) -> String {
    let name = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let known = [
        ".safetensors",
        ".pth",
        ".pt",
        ".bin",
        ".th",
        ".ckpt",
        ".tar",
        ".index.json",
    ];
    let stem = known
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(name);
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.trim_matches('.').is_empty() {
        "model".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_plain_file_names() {
        assert_eq!(
            stem_of("resnet20-cifar10-12fca82f.th"),
            "resnet20-cifar10-12fca82f"
        );
        assert_eq!(stem_of("model.safetensors"), "model");
        assert_eq!(stem_of("../../etc/passwd"), "passwd");
        assert_eq!(stem_of("a b;c"), "a_b_c");
        assert_eq!(stem_of(".."), "model");
        assert_eq!(stem_of(""), "model");
    }

    #[test]
    fn schemes_are_told_from_paths() {
        for s in [
            "s3://bucket/x",
            "file:/etc/passwd",
            "http://host/x",
            "gs://b",
        ] {
            assert!(has_scheme(s), "{s}");
        }
        for s in ["/data/model.safetensors", "model.safetensors", "./a:b", "C"] {
            assert!(!has_scheme(s), "{s}");
        }
    }

    #[test]
    fn paths_outside_the_allowed_directories_are_refused() {
        let allowed = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let inside = allowed.path().join("net.safetensors");
        let outside = other.path().join("net.safetensors");
        std::fs::write(&inside, b"x").unwrap();
        std::fs::write(&outside, b"x").unwrap();
        let dirs = vec![allowed.path().canonicalize().unwrap()];
        assert!(allowed_path(inside.to_str().unwrap(), &dirs).is_ok());
        let refused = allowed_path(outside.to_str().unwrap(), &dirs).unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Forbidden);
        // A link inside pointing outside resolves outside.
        #[cfg(unix)]
        {
            let link = allowed.path().join("link.safetensors");
            std::os::unix::fs::symlink(&outside, &link).unwrap();
            let refused = allowed_path(link.to_str().unwrap(), &dirs).unwrap_err();
            assert_eq!(refused.code, "path_not_allowed");
        }
        let dotted = format!("{}/../{}", allowed.path().display(), "x");
        assert!(allowed_path(&dotted, &dirs).is_err());
        assert_eq!(
            allowed_path("/x", &[]).unwrap_err().kind,
            ErrorKind::Forbidden
        );
    }
}
