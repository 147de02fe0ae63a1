//! A checkpoint being written: one safetensors file, or a directory of shards and their index.
//! A single file is the one shard of an output without an index; either kind appears at its path
//! only when [`CheckpointOutput::commit`] succeeds, so a failed or stopped run leaves nothing.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::writer::{OutputDir, OutputFile};
use super::{CheckpointError, Result};

/// The output of a run's checkpoint, written shard by shard.
pub struct CheckpointOutput {
    staging: Staging,
}

enum Staging {
    /// One file: `None` while its one shard is out being written.
    File(Option<OutputFile>),
    /// A directory of shards (and the index, written as one more of its files).
    Dir(OutputDir),
}

/// One shard (or the index) being written, at its temporary place.
pub struct ShardWriter {
    file: ShardFile,
    path: PathBuf,
}

enum ShardFile {
    File(OutputFile),
    Dir(BufWriter<std::fs::File>),
}

impl CheckpointOutput {
    /// Starts the output at `path`: a directory of shards when `directory`, else one file. Fails
    /// now if it exists and `overwrite` is false.
    pub fn create(path: &Path, directory: bool, overwrite: bool) -> Result<Self> {
        let staging = if directory {
            Staging::Dir(OutputDir::create(path, overwrite)?)
        } else {
            Staging::File(Some(OutputFile::create(path, overwrite)?))
        };
        Ok(Self { staging })
    }

    /// Starts the file `name` of a directory; for a single file, its one shard (whatever the
    /// name).
    pub fn shard(&mut self, name: &str) -> Result<ShardWriter> {
        match &mut self.staging {
            Staging::File(file) => {
                let file = file
                    .take()
                    .expect("a single-file checkpoint is written as one shard");
                Ok(ShardWriter {
                    path: file.path().to_path_buf(),
                    file: ShardFile::File(file),
                })
            }
            Staging::Dir(dir) => Ok(ShardWriter {
                path: dir.path().join(name),
                file: ShardFile::Dir(dir.file(name)?),
            }),
        }
    }

    /// Ends a shard: a directory's file is flushed and synced now, a single file when committed.
    pub fn finish_shard(&mut self, shard: ShardWriter) -> Result<()> {
        match (&mut self.staging, shard.file) {
            (Staging::File(slot), ShardFile::File(file)) => {
                *slot = Some(file);
                Ok(())
            }
            (Staging::Dir(dir), ShardFile::Dir(file)) => dir.finish(file, &shard.path),
            _ => unreachable!("a shard goes back to the output that made it"),
        }
    }

    /// Puts the finished checkpoint at its path.
    pub fn commit(self) -> Result<()> {
        match self.staging {
            Staging::File(Some(file)) => file.commit(),
            Staging::File(None) => unreachable!("the single file's shard was not finished"),
            Staging::Dir(dir) => dir.commit(),
        }
    }
}

impl ShardWriter {
    /// Where the file will be once the output is committed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An I/O error writing this file.
    pub fn error(&self, e: std::io::Error) -> CheckpointError {
        CheckpointError::io(&self.path, e)
    }
}

impl Write for ShardWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.file {
            ShardFile::File(file) => file.write(buf),
            ShardFile::Dir(file) => file.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            ShardFile::File(file) => file.flush(),
            ShardFile::Dir(file) => file.flush(),
        }
    }
}
