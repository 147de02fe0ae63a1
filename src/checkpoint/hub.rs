//! Checkpoints on the Hugging Face Hub: `hf://OWNER/NAME[@REVISION][/PATH]`.
//!
//! Files are looked up in the local Hub cache first (the layout the Python client and `hf-hub`
//! write: `models--OWNER--NAME/refs/REV`, `snapshots/COMMIT/...`, `blobs/...`), so cached files
//! never touch the network. Otherwise they are downloaded with `hf-hub`, small files first: a
//! sharded checkpoint's index comes before its shards, so a bad index fails before a large download.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Repo, RepoType};

use super::{CheckpointError, Result, ShardIndex, INDEX_FILE};

const SINGLE_FILE: &str = "model.safetensors";

/// A parsed `hf://` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSource {
    /// `OWNER/NAME`.
    pub repo: String,
    pub revision: String,
    /// A file inside the repo, when given.
    pub path: Option<String>,
}

impl HubSource {
    /// Parses `hf://OWNER/NAME[@REVISION][/PATH]`; `None` when `input` is not an `hf://` reference.
    pub fn parse(input: &str) -> Option<Result<Self>> {
        let rest = input.strip_prefix("hf://")?;
        let bad = |why: &str| {
            Some(Err(CheckpointError::BadHubReference {
                input: input.into(),
                why: why.into(),
            }))
        };
        let mut parts = rest.splitn(3, '/');
        let (Some(owner), Some(name_rev)) = (parts.next(), parts.next()) else {
            return bad("no repository name");
        };
        let path = parts.next().filter(|p| !p.is_empty()).map(str::to_string);
        let (name, revision) = match name_rev.split_once('@') {
            Some((name, rev)) => (name, rev),
            None => (name_rev, "main"),
        };
        if owner.is_empty() || name.is_empty() || revision.is_empty() {
            return bad("empty owner, name or revision");
        }
        if revision.contains("..") || revision.starts_with('.') {
            return bad("the revision must be a branch, tag or commit name");
        }
        // `.` components too: `hf://o/n/./.` would name the snapshot directory, not a file.
        if path
            .as_deref()
            .is_some_and(|p| p.split('/').any(|c| c == ".." || c == "." || c.is_empty()))
        {
            return bad(
                "the path inside the repository must be plain (no '.', '..' or empty parts)",
            );
        }
        Some(Ok(Self {
            repo: format!("{owner}/{name}"),
            revision: revision.to_string(),
            path,
        }))
    }

    /// The repository name, for default output names.
    pub fn name(&self) -> &str {
        self.repo.rsplit('/').next().unwrap_or(&self.repo)
    }

    /// `hf://OWNER/NAME@REVISION[/PATH]`.
    pub fn describe(&self) -> String {
        let path = self
            .path
            .as_deref()
            .map(|p| format!("/{p}"))
            .unwrap_or_default();
        format!("hf://{}@{}{path}", self.repo, self.revision)
    }

    /// The repository's directory in the Hub cache `cache`: `models--OWNER--NAME`.
    pub fn cache_dir(&self, cache: &Path) -> PathBuf {
        cache.join(format!("models--{}", self.repo.replace('/', "--")))
    }

    /// Where the cache keeps `file` (a plain relative path) of this revision:
    /// `snapshots/COMMIT/FILE`, where COMMIT is what `refs/REVISION` holds (`ref_contents`, the
    /// file's text), or the revision itself when there is no such ref (a commit hash given as
    /// the revision). The cache is another program's data: a ref that is not a plain commit
    /// name is refused, so that no path leaves the repository's snapshots.
    pub fn cache_path(
        &self,
        cache: &Path,
        ref_contents: Option<&str>,
        file: &str,
    ) -> Result<PathBuf> {
        let dir = self.cache_dir(cache);
        let commit = match ref_contents {
            Some(text) => plain_commit(text.trim()).ok_or_else(|| {
                let shown: String = text.trim().chars().take(80).collect();
                CheckpointError::DamagedHubCache {
                    reference: self.describe(),
                    ref_path: dir.join("refs").join(&self.revision),
                    content: shown,
                }
            })?,
            None => self.revision.as_str(),
        };
        Ok(dir.join("snapshots").join(commit).join(file))
    }
}

/// `text` when it is a commit name that is one plain path component: letters, digits, `-`, `_`
/// and `.`, not starting with a dot (a 40-hex-digit hash, as the Hub clients write).
fn plain_commit(text: &str) -> Option<&str> {
    let plain = !text.is_empty()
        && text.len() <= 255
        && !text.starts_with('.')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    plain.then_some(text)
}

/// The Hub settings of the environment, as the Python client reads them.
#[derive(Debug, Clone)]
pub struct HubEnv {
    /// `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
    pub cache: PathBuf,
    /// `HF_HUB_OFFLINE=1`: the cache only.
    pub offline: bool,
    /// `HF_TOKEN`, else the token file of `HF_HOME`. Never printed.
    token: Option<String>,
    /// `HF_ENDPOINT`, for mirrors.
    endpoint: Option<String>,
}

impl HubEnv {
    /// The token, for callers that must keep it out of what they show (the service's redaction).
    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let user = var("HOME").map(PathBuf::from).unwrap_or_default();
            user.join(".cache").join("huggingface")
        });
        let token = var("HF_TOKEN").or_else(|| {
            std::fs::read_to_string(home.join("token"))
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
        });
        Self {
            cache: var("HF_HUB_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join("hub")),
            offline,
            token,
            endpoint: var("HF_ENDPOINT"),
        }
    }
}

/// What a Hub reference resolved to, with every file in the local cache.
pub enum HubFiles {
    File(PathBuf),
    Sharded(ShardIndex),
}

/// Finds (downloading if needed and allowed) the checkpoint a reference names.
pub fn fetch(source: &HubSource, env: &HubEnv, progress: bool) -> Result<HubFiles> {
    let fetcher = Fetcher {
        source,
        env,
        progress,
    };
    if let Some(path) = &source.path {
        let local = fetcher.required(path)?;
        return if path.ends_with(".index.json") {
            fetcher.sharded(&local)
        } else {
            Ok(HubFiles::File(local))
        };
    }
    // Cached files first, so that a cached checkpoint never touches the network.
    if let Some(index) = fetcher.cached(INDEX_FILE)? {
        return fetcher.sharded(&index);
    }
    if let Some(file) = fetcher.cached(SINGLE_FILE)? {
        return Ok(HubFiles::File(file));
    }
    if env.offline {
        return Err(CheckpointError::NotInHubCache {
            reference: source.describe(),
            file: format!("neither {SINGLE_FILE} nor {INDEX_FILE}"),
            cache: fetcher.repo_dir(),
        });
    }
    if let Some(index) = fetcher.download(INDEX_FILE)? {
        return fetcher.sharded(&index);
    }
    match fetcher.download(SINGLE_FILE)? {
        Some(file) => Ok(HubFiles::File(file)),
        None => Err(CheckpointError::NoCheckpointInRepo {
            reference: source.describe(),
            single: SINGLE_FILE,
            index: INDEX_FILE,
        }),
    }
}

struct Fetcher<'a> {
    source: &'a HubSource,
    env: &'a HubEnv,
    progress: bool,
}

impl Fetcher<'_> {
    fn repo_dir(&self) -> PathBuf {
        self.source.cache_dir(&self.env.cache)
    }

    /// A file of the revision in the cache: through `refs/REVISION`, or a snapshot named by a
    /// commit hash given as the revision.
    fn cached(&self, file: &str) -> Result<Option<PathBuf>> {
        let reference = self.repo_dir().join("refs").join(&self.source.revision);
        let contents = std::fs::read_to_string(reference).ok();
        let path = self
            .source
            .cache_path(&self.env.cache, contents.as_deref(), file)?;
        Ok(path.is_file().then_some(path))
    }

    /// Downloads `file`; `None` when the repository has no such file.
    fn download(&self, file: &str) -> Result<Option<PathBuf>> {
        let mut builder = ApiBuilder::from_cache(hf_hub::Cache::new(self.env.cache.clone()))
            .with_progress(self.progress)
            .with_token(self.env.token.clone());
        if let Some(endpoint) = &self.env.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        let api = builder
            .build()
            .map_err(|e| self.error(file, &e.to_string()))?;
        let repo = api.repo(Repo::with_revision(
            self.source.repo.clone(),
            RepoType::Model,
            self.source.revision.clone(),
        ));
        match repo.get(file) {
            Ok(path) => Ok(Some(path)),
            Err(hf_hub::api::sync::ApiError::RequestError(e)) if matches!(*e, ureq::Error::StatusCode(404)) => Ok(None),
            Err(e) => Err(self.error(
                file,
                &format!("{e} (for a private or gated repository set HF_TOKEN; to use the cache only set HF_HUB_OFFLINE=1)"),
            )),
        }
    }

    /// A file that must exist: cached, or downloaded when allowed.
    fn required(&self, file: &str) -> Result<PathBuf> {
        if let Some(path) = self.cached(file)? {
            return Ok(path);
        }
        if self.env.offline {
            return Err(CheckpointError::NotInHubCache {
                reference: self.source.describe(),
                file: file.into(),
                cache: self.repo_dir(),
            });
        }
        self.download(file)?
            .ok_or_else(|| self.error(file, "no such file in the repository"))
    }

    /// Checks the index, fetches every shard it names, then opens it beside them.
    fn sharded(&self, index: &Path) -> Result<HubFiles> {
        let parsed = ShardIndex::parse(index)?;
        let prefix = self
            .source
            .path
            .as_deref()
            .and_then(|p| p.rsplit_once('/'))
            .map(|(dir, _)| format!("{dir}/"))
            .unwrap_or_default();
        for shard in parsed.shards() {
            self.required(&format!("{prefix}{shard}"))?;
        }
        Ok(HubFiles::Sharded(ShardIndex::open(index)?))
    }

    fn error(&self, file: &str, why: &str) -> CheckpointError {
        CheckpointError::Hub {
            reference: self.source.describe(),
            file: file.into(),
            why: why.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let parse = |s| HubSource::parse(s).unwrap().unwrap();
        assert_eq!(
            parse("hf://timm/resnet18.a1_in1k"),
            HubSource {
                repo: "timm/resnet18.a1_in1k".into(),
                revision: "main".into(),
                path: None
            }
        );
        let s = parse("hf://o/n@v1.0/sub/model.safetensors");
        assert_eq!(
            (s.revision.as_str(), s.path.as_deref()),
            ("v1.0", Some("sub/model.safetensors"))
        );
        assert_eq!(s.name(), "n");
        assert!(HubSource::parse("model.safetensors").is_none());
        for bad in [
            "hf://",
            "hf://owner",
            "hf://o/",
            "hf://o/n@",
            "hf://o/n/../x",
        ] {
            assert!(HubSource::parse(bad).unwrap().is_err(), "{bad}");
        }
    }

    #[test]
    fn cache_paths_stay_in_the_snapshots() {
        let source = HubSource::parse("hf://o/n@main/sub/w.safetensors")
            .unwrap()
            .unwrap();
        let cache = Path::new("/hub");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            source
                .cache_path(cache, Some(&format!("{commit}\n")), "w.safetensors")
                .unwrap(),
            Path::new("/hub/models--o--n/snapshots")
                .join(commit)
                .join("w.safetensors")
        );
        // No ref: the revision names the snapshot (a commit given as the revision).
        assert_eq!(
            source.cache_path(cache, None, "x").unwrap(),
            Path::new("/hub/models--o--n/snapshots/main/x")
        );
        // A ref is another program's file: its text is never a way out of the snapshots.
        for text in ["../../../etc", "/etc", "a/b", "", ".hidden", "main\0"] {
            let e = source.cache_path(cache, Some(text), "x").unwrap_err();
            assert!(e.to_string().contains("not a commit hash"), "{text:?}: {e}");
        }
    }
}
