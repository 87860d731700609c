//! File-system steps that more than one layer needs.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// A local I/O failure with what was being done.
#[derive(Debug)]
pub struct IoError {
    pub context: String,
    pub source: io::Error,
}

impl IoError {
    pub fn new(context: impl Into<String>, source: io::Error) -> Self {
        IoError {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl std::error::Error for IoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Makes the names in `dir` durable (after a create, rename or unlink).
/// Writes a small file whole or not at all: a temporary file, fsynced,
/// renamed over `path`, and the directory fsynced.
pub fn write_durably(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        std::io::Write::write_all(&mut f, data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => Ok(()),
    }
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes `dir` and everything under it; a missing directory is fine.
pub fn remove_dir_all_if_exists(dir: &Path) -> Result<(), IoError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IoError::new(format!("remove {}", dir.display()), e)),
    }
}

/// An exclusive lock on a file, held until dropped (or the process ends,
/// however it ends: the kernel releases it). The holder's pid is written
/// into the file so that a refused process can name it.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

/// Why a lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process (or another open of this file) holds it.
    Held {
        path: PathBuf,
        pid: Option<u32>,
    },
    Io(IoError),
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Held { path, pid } => {
                write!(f, "{} is locked by another process", path.display())?;
                match pid {
                    Some(pid) => write!(f, " (pid {pid})"),
                    None => Ok(()),
                }
            }
            LockError::Io(e) => e.fmt(f),
        }
    }
}

impl FileLock {
    /// Takes the lock on `path` (creating the file) without waiting.
    pub fn try_acquire(path: &Path) -> Result<FileLock, LockError> {
        let ctx =
            |what: &str, e| LockError::Io(IoError::new(format!("{what} {}", path.display()), e));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| ctx("open lock file", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    path: path.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(ctx("lock", e)),
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(|e| ctx("write lock file", e))?;
        Ok(FileLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Bytes written between two waits for writeback in [`write_smoothly`]:
/// 256 KiB rather than 1 MiB gave a lower ack p99 at 300K records/s
/// (median of 6 and of 8 paired runs, `scripts/bench-latency-ab.sh`: 4.9
/// and 5.6 ms against 7.3 and 8.7 ms) and no lower max rate.
const WRITEBACK_CHUNK: usize = 256 << 10;

/// Writes `data` to `f` in [`WRITEBACK_CHUNK`] steps, waiting after each
/// for the kernel to have written it out (Linux `sync_file_range`), so
/// that a large file never sits dirty in the page cache all at once. Why:
/// on ext4 an fsync of a small file (the WAL) that needs a journal commit
/// waits for the dirty data of every file in that commit; a 16 MiB segment
/// flushed in one go held WAL fsyncs for up to 20 ms, written in 1 MiB
/// steps about 5 ms (measured on this machine; see scripts/bench-grpc.sh).
/// The caller still fsyncs the file after.
pub fn write_smoothly(f: &mut File, data: &[u8]) -> std::io::Result<()> {
    let mut offset = 0usize;
    for chunk in data.chunks(WRITEBACK_CHUNK) {
        f.write_all(chunk)?;
        wait_for_writeback(f, offset as u64, chunk.len() as u64);
        offset += chunk.len();
    }
    Ok(())
}

/// Starts writeback of `len` bytes at `offset` and waits for it. A
/// failure only loses the smoothing: the caller's fsync still makes the
/// data durable (and reports errors).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn wait_for_writeback(f: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: sync_file_range reads its integer arguments only; the
    // descriptor is open for as long as `f` is borrowed.
    let rc = unsafe { libc::sync_file_range(f.as_raw_fd(), offset as i64, len as i64, flags) };
    if rc != 0 {
        log::debug!("sync_file_range: {}", std::io::Error::last_os_error());
    }
}

#[cfg(not(target_os = "linux"))]
fn wait_for_writeback(_f: &File, _offset: u64, _len: u64) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_smooth_write_writes_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("obj");
        // Not a multiple of the chunk: the last step is short.
        let data: Vec<u8> = (0..(5 * WRITEBACK_CHUNK / 2))
            .map(|i| (i % 251) as u8)
            .collect();
        let mut f = File::create(&path).unwrap();
        write_smoothly(&mut f, &data).unwrap();
        f.sync_all().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("LOCK");
        let first = FileLock::try_acquire(&path).unwrap();
        assert_eq!(first.path(), path);
        match FileLock::try_acquire(&path) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        FileLock::try_acquire(&path).unwrap();
    }
}
