//! Files in an object store (`--files s3://BUCKET/PREFIX`, `file:///DIR`), through Apache
//! Arrow's `object_store`, so that replicas on separate hosts share uploads and results without
//! a shared file system. The store is the files' home; each server's data directory is its
//! working copy: an upload or a result is written there first, put in the store (multipart for
//! large files: the object appears whole, or not at all), and only then named by a row; a
//! server that needs a file it does not have (an upload for its worker, a result to serve or
//! reuse) fetches it into its data directory.
//!
//! Keys: `PREFIX/uploads/ID` and `PREFIX/jobs/ID/NAME` (NAME as in the job's result).

use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as Key;
use object_store::ObjectStore;
use tokio::io::AsyncWriteExt;

use super::error::ServiceError;

/// Parts of a multipart upload, and the size under which a file is one `PUT`.
const PART: usize = 8 << 20;

pub struct ObjectFiles {
    store: Arc<dyn ObjectStore>,
    prefix: Key,
    url: String,
    /// The server's async runtime, which the store's client runs on; called from blocking
    /// threads (the workers, the handlers' `spawn_blocking`).
    runtime: tokio::runtime::Handle,
}

impl ObjectFiles {
    /// Opens the store at `url` and checks that it answers (a bucket that does not exist, or
    /// credentials it refuses, are an error now). S3's settings come from the usual
    /// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT` for an S3-compatible server, `AWS_ALLOW_HTTP`).
    pub fn open(url: &str, runtime: tokio::runtime::Handle) -> Result<Self, ServiceError> {
        let bad = |e: &dyn std::fmt::Display| {
            ServiceError::internal(format!(
                "--files {url}: {e}; expected s3://BUCKET/PREFIX or file:///DIRECTORY"
            ))
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(&e))?;
        let (store, prefix): (Arc<dyn ObjectStore>, Key) = match parsed.scheme() {
            "s3" => {
                let store = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| bad(&e))?;
                let prefix =
                    Key::parse(parsed.path().trim_start_matches('/')).map_err(|e| bad(&e))?;
                (Arc::new(store), prefix)
            }
            "file" => {
                let root = parsed
                    .to_file_path()
                    .map_err(|()| bad(&"not a local path"))?;
                std::fs::create_dir_all(&root).map_err(|e| bad(&e))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&root)
                    .map_err(|e| bad(&e))?;
                (Arc::new(store), Key::default())
            }
            other => return Err(bad(&format!("no object store for {other}://"))),
        };
        let files = Self {
            store,
            prefix,
            url: url.to_string(),
            runtime,
        };
        files.check()?;
        Ok(files)
    }

    /// The store's URL (credentials come from the environment, never from it).
    pub fn describe(&self) -> String {
        format!("object store ({})", self.url)
    }

    /// Lists the prefix: fails when the bucket is missing or refuses the credentials.
    pub fn check(&self) -> Result<(), ServiceError> {
        self.runtime
            .block_on(self.store.list_with_delimiter(Some(&self.prefix)))
            .map(drop)
            .map_err(|e| self.error("cannot be listed", &e))
    }

    fn error(&self, what: &str, e: &dyn std::fmt::Display) -> ServiceError {
        ServiceError::internal(format!("--files {}: {what}: {e}", self.url))
    }

    fn upload_key(&self, id: &str) -> Key {
        self.prefix.child("uploads").child(id)
    }

    fn result_key(&self, id: &str, name: &str) -> Key {
        name.split('/')
            .fold(self.prefix.child("jobs").child(id), |key, part| {
                key.child(part)
            })
    }

    /// Puts the file at `local` under `key`, whole or not at all.
    fn put(&self, local: &Path, key: Key) -> Result<(), ServiceError> {
        let failed = |e: &dyn std::fmt::Display| self.error(&format!("putting {key}"), e);
        self.runtime.block_on(async {
            let mut file = tokio::fs::File::open(local).await.map_err(|e| failed(&e))?;
            let mut writer = BufWriter::with_capacity(self.store.clone(), key.clone(), PART);
            if let Err(e) = tokio::io::copy(&mut file, &mut writer).await {
                let _ = writer.abort().await;
                return Err(failed(&e));
            }
            writer.shutdown().await.map_err(|e| failed(&e))
        })
    }

    /// Fetches `key` into `local`, which appears whole (written beside it, then renamed).
    fn fetch(&self, key: Key, local: &Path) -> Result<(), ServiceError> {
        let failed = |e: &dyn std::fmt::Display| self.error(&format!("fetching {key}"), e);
        let partial = local.with_file_name(format!(
            ".{}.{:016x}.fetch",
            local
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            rand::random::<u64>()
        ));
        let fetched = self.runtime.block_on(async {
            let mut stream = self
                .store
                .get(&key)
                .await
                .map_err(|e| failed(&e))?
                .into_stream();
            let mut file = tokio::fs::File::create(&partial)
                .await
                .map_err(|e| failed(&e))?;
            while let Some(bytes) = stream.next().await {
                file.write_all(&bytes.map_err(|e| failed(&e))?)
                    .await
                    .map_err(|e| failed(&e))?;
            }
            file.sync_all().await.map_err(|e| failed(&e))
        });
        let renamed =
            fetched.and_then(|()| std::fs::rename(&partial, local).map_err(|e| failed(&e)));
        if renamed.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        renamed
    }

    pub fn put_upload(&self, id: &str, local: &Path) -> Result<(), ServiceError> {
        self.put(local, self.upload_key(id))
    }

    pub fn fetch_upload(&self, id: &str, local: &Path) -> Result<(), ServiceError> {
        self.fetch(self.upload_key(id), local)
    }

    /// Puts a result's files (`names`, relative to `dir`).
    pub fn put_result<'a>(
        &self,
        id: &str,
        dir: &Path,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ServiceError> {
        names
            .into_iter()
            .try_for_each(|name| self.put(&dir.join(name), self.result_key(id, name)))
    }

    /// Fetches a result's files into `dir`.
    pub fn fetch_result<'a>(
        &self,
        id: &str,
        dir: &Path,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ServiceError> {
        names.into_iter().try_for_each(|name| {
            let local = dir.join(name);
            if let Some(parent) = local.parent() {
                std::fs::create_dir_all(parent)?;
            }
            self.fetch(self.result_key(id, name), &local)
        })
    }

    /// Whether every file of a result is in the store, with its size.
    pub fn result_present<'a>(
        &self,
        id: &str,
        files: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> bool {
        self.runtime.block_on(async {
            for (name, size) in files {
                match self.store.head(&self.result_key(id, name)).await {
                    Ok(meta) if meta.size == size => {}
                    _ => return false,
                }
            }
            true
        })
    }

    /// Deletes a result's files (retention; several sweepers may delete the same).
    pub fn delete_result<'a>(
        &self,
        id: &str,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ServiceError> {
        names
            .into_iter()
            .try_for_each(|name| self.delete(self.result_key(id, name)))
    }

    pub fn delete_upload(&self, id: &str) -> Result<(), ServiceError> {
        self.delete(self.upload_key(id))
    }

    fn delete(&self, key: Key) -> Result<(), ServiceError> {
        match self.runtime.block_on(self.store.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(&format!("deleting {key}"), &e)),
        }
    }
}
