//! A buffered output file whose data the kernel starts writing to disk while the run goes on.

use std::io::{BufWriter, Write};

/// Asks the kernel to start writing a file's data out every this many bytes.
const WRITEBACK_BYTES: u64 = 16 << 20;

/// A buffered file that starts the kernel's writeback of every [`WRITEBACK_BYTES`] written, so
/// that the sync before the output is renamed into place waits only for the tail: syncing a
/// whole 94 MB checkpoint at the end took 60-70 ms, with the disk idle during the work before.
/// The writeback is a hint; errors are the final sync's to report.
pub struct Writeback<F: Write + WritebackTarget> {
    writer: BufWriter<F>,
    /// Bytes written, and how many of them the kernel was asked to write out.
    written: u64,
    started: u64,
}

/// A file whose data the kernel can be asked to write out.
pub trait WritebackTarget {
    /// Starts writing bytes `offset..offset + len` out, without waiting.
    fn start_writeback(&self, offset: u64, len: u64);
}

impl WritebackTarget for std::fs::File {
    fn start_writeback(&self, offset: u64, len: u64) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain system call on an open descriptor; its result is only a hint.
            unsafe {
                libc::sync_file_range(
                    self.as_raw_fd(),
                    offset as libc::off64_t,
                    len as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (offset, len);
    }
}

impl WritebackTarget for tempfile::NamedTempFile {
    fn start_writeback(&self, offset: u64, len: u64) {
        self.as_file().start_writeback(offset, len)
    }
}

impl<F: Write + WritebackTarget> Writeback<F> {
    pub fn new(file: F) -> Self {
        Self {
            writer: BufWriter::with_capacity(1 << 20, file),
            written: 0,
            started: 0,
        }
    }

    /// Flushes the buffer and returns the file.
    pub fn into_inner(self) -> std::io::Result<F> {
        self.writer.into_inner().map_err(|e| e.into_error())
    }
}

impl<F: Write + WritebackTarget> Write for Writeback<F> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.writer.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= WRITEBACK_BYTES {
            self.writer.flush()?;
            let file = self.writer.get_ref();
            file.start_writeback(self.started, self.written - self.started);
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn everything_written_reaches_the_file_in_order() {
        let mut out = Writeback::new(tempfile::NamedTempFile::new().unwrap());
        // More than one writeback's worth, in uneven pieces.
        let data: Vec<u8> = (0..(WRITEBACK_BYTES as usize * 2 + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        for piece in data.chunks(1 << 19 | 7) {
            out.write_all(piece).unwrap();
        }
        assert!(out.started >= WRITEBACK_BYTES * 2 && out.started <= out.written);
        let mut file = out.into_inner().unwrap().reopen().unwrap();
        let mut read = Vec::new();
        file.read_to_end(&mut read).unwrap();
        assert_eq!(read, data);
    }
}
