//! SHA-256 of what a run reads and writes: outputs are hashed as they are written, inputs by
//! reading them once more (through the page cache, not the memory map, so that hashing a large
//! checkpoint does not make it resident).

use std::io::{Read, Write};

use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

use crate::checkpoint::{CheckpointError, SafetensorsFile};

/// A writer that counts and hashes what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The inner writer, the number of bytes written and their SHA-256 (hex).
    pub fn finish(self) -> (W, u64, String) {
        (
            self.inner,
            self.size,
            hex(self.hasher.finalize().as_slice()),
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// SHA-256 of every file of an input in order, each as its bytes (a PyTorch file as its
/// conversion to safetensors, a built-in network as its serialization); `None` once `abandon` is
/// set (checked between reads).
pub fn input_sha256(
    files: &[SafetensorsFile],
    abandon: &AtomicBool,
) -> Result<Option<String>, CheckpointError> {
    let mut hasher = Sha256::new();
    for file in files {
        match file.in_memory_bytes() {
            Some(bytes) => hasher.update(bytes),
            None => {
                let path = file.path();
                let mut reader =
                    std::fs::File::open(path).map_err(|e| CheckpointError::io(path, e))?;
                let mut buffer = vec![0u8; 1 << 20];
                loop {
                    if abandon.load(Ordering::Relaxed) {
                        return Ok(None);
                    }
                    let n = reader
                        .read(&mut buffer)
                        .map_err(|e| CheckpointError::io(path, e))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buffer[..n]);
                }
            }
        }
    }
    Ok(Some(hex(hasher.finalize().as_slice())))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
