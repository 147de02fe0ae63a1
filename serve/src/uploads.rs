//! Receiving an upload: the bytes go to a hidden partial file while their SHA-256 is computed;
//! the file is checked as a checkpoint, synced and renamed, and only then recorded. A cut-off,
//! oversized or foreign upload leaves nothing behind.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::error::{ErrorKind, ServiceError};
use super::layout::{new_id, Layout};
use super::service::Service;
use super::store::UploadRow;
use cs_init::checkpoint::{check_pth, looks_like_pth, SafetensorsFile};
use cs_init::run::hex;

/// An upload being received.
pub struct PendingUpload {
    id: String,
    name: String,
    partial: PathBuf,
    file: Option<BufWriter<std::fs::File>>,
    hasher: Sha256,
    /// Bytes received (all written by the time the upload is finished).
    size: u64,
    limit: u64,
}

impl PendingUpload {
    /// Starts receiving; `name` (the client's file name) names the outputs.
    pub fn begin(service: &Service, name: Option<&str>) -> Result<Self, ServiceError> {
        let id = new_id();
        let partial = service.layout.upload_partial(&id);
        let file = std::fs::File::create(&partial)?;
        Ok(Self {
            name: name
                .filter(|n| !n.is_empty())
                .unwrap_or("upload")
                .chars()
                .take(255)
                .collect(),
            id,
            partial,
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            hasher: Sha256::new(),
            size: 0,
            limit: service.config.max_upload,
        })
    }

    /// Refuses at once a body whose declared length is over the limit.
    pub fn check_length(limit: u64, declared: Option<u64>) -> Result<(), ServiceError> {
        match declared {
            Some(n) if n > limit => Err(too_large(limit)),
            _ => Ok(()),
        }
    }

    /// Refuses the upload as soon as the bytes received pass the limit, before they are kept.
    pub fn check_size(&mut self, more: usize) -> Result<(), ServiceError> {
        self.size += more as u64;
        if self.size > self.limit {
            return Err(too_large(self.limit));
        }
        Ok(())
    }

    /// Writes and hashes bytes that [`PendingUpload::check_size`] accepted.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), ServiceError> {
        self.hasher.update(chunk);
        self.file
            .as_mut()
            .expect("open until finished")
            .write_all(chunk)?;
        Ok(())
    }

    /// Checks, syncs and publishes the upload, then records it.
    pub fn finish(mut self, service: &Service) -> Result<UploadRow, ServiceError> {
        let file = self.file.take().expect("open until finished");
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        if self.size == 0 {
            return Err(ServiceError::invalid(
                "not_a_checkpoint",
                "the upload is empty; send the checkpoint's bytes as the request body",
            ));
        }
        let format = self.check()?;
        let path = service.layout.upload(&self.id);
        std::fs::rename(&self.partial, &path)?;
        Layout::sync_dir(&service.layout.uploads())?;
        let upload = UploadRow {
            id: self.id.clone(),
            sha256: hex(std::mem::take(&mut self.hasher).finalize().as_slice()),
            size: self.size,
            format: format.into(),
            name: self.name.clone(),
            created_at: service.now_ms(),
        };
        // In the object store before a row names it.
        if let Err(e) = service
            .share_upload(&upload.id)
            .and_then(|()| service.insert_upload(&upload))
        {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        service.metrics.uploaded(self.size);
        Ok(upload)
    }

    /// The checkpoint format, once the whole file reads as one.
    fn check(&self) -> Result<&'static str, ServiceError> {
        let mut head = [0u8; 24];
        let n = std::io::Read::read(&mut std::fs::File::open(&self.partial)?, &mut head)?;
        let label = |e: cs_init::checkpoint::CheckpointError| {
            let message = e
                .to_string()
                .replace(&self.partial.display().to_string(), "the upload");
            ServiceError::invalid("not_a_checkpoint", message)
        };
        if looks_like_pth(&head[..n]) {
            check_pth(&self.partial).map_err(label)?;
            Ok("pytorch")
        } else {
            let file = SafetensorsFile::open(&self.partial).map_err(label)?;
            drop(file);
            Ok("safetensors")
        }
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        // Whatever did not become an upload is deleted: a cut-off body, a refused file.
        let _ = std::fs::remove_file(&self.partial);
    }
}

fn too_large(limit: u64) -> ServiceError {
    ServiceError::new(
        ErrorKind::TooLarge,
        "upload_too_large",
        format!("the upload is larger than the server's --max-upload of {limit} bytes"),
    )
}
