//! The data directory: the store, uploads and job results, and how files get there whole.
//!
//! ```text
//! DATA/store.sqlite           the durable record of every upload and job (plus -wal, -shm)
//! DATA/uploads/ID             an accepted upload
//! DATA/uploads/.ID.partial    an upload being received (deleted on restart)
//! DATA/jobs/ID/               a succeeded job's files (checkpoint, report.json, plot.svg)
//! DATA/jobs/.ID.staging/      a running job's files (renamed to jobs/ID when complete)
//! ```

use std::io;
use std::path::{Path, PathBuf};

/// Paths inside the data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Creates the directories if needed.
    pub fn create(root: &Path) -> io::Result<Self> {
        let layout = Self {
            root: root.to_path_buf(),
        };
        for dir in [layout.root.clone(), layout.uploads(), layout.jobs()] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        }
        Ok(layout)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn store(&self) -> PathBuf {
        self.root.join("store.sqlite")
    }

    pub fn uploads(&self) -> PathBuf {
        self.root.join("uploads")
    }

    pub fn upload(&self, id: &str) -> PathBuf {
        self.uploads().join(id)
    }

    pub fn upload_partial(&self, id: &str) -> PathBuf {
        self.uploads().join(format!(".{id}.partial"))
    }

    pub fn jobs(&self) -> PathBuf {
        self.root.join("jobs")
    }

    pub fn job(&self, id: &str) -> PathBuf {
        self.jobs().join(id)
    }

    /// Where a run (`attempt`) of a job writes its files. Each run has its own, so that a
    /// server that lost a job cannot write into the files of the run that took it over.
    pub fn staging(&self, id: &str, attempt: i64) -> PathBuf {
        self.jobs().join(format!(".{id}.{attempt}.staging"))
    }

    /// Makes a rename or deletion inside `dir` durable.
    pub fn sync_dir(dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    /// Renames a finished staging directory to its job's directory, durably. When another run
    /// of the job published first (a server that lost it, finishing anyway), its files are the
    /// same bytes, as runs are deterministic, and are kept.
    pub fn publish(&self, id: &str, attempt: i64) -> io::Result<()> {
        self.publish_from(&self.staging(id, attempt), id)
    }

    /// Where a copy of a job's result fetched from the object store is gathered, before it is
    /// published as the job's directory. Random, as two requests may fetch one result at once.
    pub fn fetching(&self, id: &str) -> PathBuf {
        self.jobs()
            .join(format!(".{id}.{:016x}.fetch", rand::random::<u64>()))
    }

    /// [`Layout::publish`] from any staging directory.
    pub fn publish_from(&self, staging: &Path, id: &str) -> io::Result<()> {
        Self::sync_dir(staging)?;
        match std::fs::rename(staging, self.job(id)) {
            Err(e) if self.job(id).is_dir() => {
                tracing::warn!("job {id}: its files were published meanwhile ({e})");
                Self::remove(staging)?;
            }
            other => other?,
        }
        Self::sync_dir(&self.jobs())
    }

    /// Deletes a directory or file if it exists.
    pub fn remove(path: &Path) -> io::Result<()> {
        let result = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        match result {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// A random 128-bit id, as 32 lower-case hex digits.
pub fn new_id() -> String {
    let value: u128 = rand::random();
    format!("{value:032x}")
}

/// True for strings [`new_id`] could have made: ids from URLs are checked before any lookup.
pub fn is_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_hex() {
        let (a, b) = (new_id(), new_id());
        assert!(is_id(&a) && is_id(&b));
        assert_ne!(a, b);
        for bad in [
            "",
            "../etc",
            &a[..31],
            "0123456789ABCDEF0123456789abcdef",
            &format!("{a}0"),
        ] {
            assert!(!is_id(bad), "{bad}");
        }
    }
}
