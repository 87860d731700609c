//! The file operations the WAL performs, behind a small trait so that tests
//! can make any of them fail: [`OsWalFs`] is the real thing, [`FaultyWalFs`]
//! wraps it with switchable faults (a failed write, a failed fsync).

use super::zero_ahead::{write_claimed, ZeroAhead};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// An open WAL file, positioned at its end.
pub trait WalFile: Send + fmt::Debug {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the file back to `len` bytes; appends continue there. Takes
    /// back what a failed append left (part of its bytes).
    fn cut(&mut self, len: u64) -> io::Result<()>;
    /// The file is done (its segment is sealed): anything past the
    /// appended bytes is cut off, and all of it is made durable.
    fn finish(&mut self, len: u64) -> io::Result<()>;
}

/// Directory and file operations of the WAL.
pub trait WalFs: Send + Sync + fmt::Debug {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// File names in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Creates `path` empty (truncating an existing file) for appending.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>>;
    /// Opens `path` for appending after cutting it to `len` bytes; the cut
    /// is durable before this returns.
    fn reopen(&self, path: &Path, len: u64) -> io::Result<Box<dyn WalFile>>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the names in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsWalFs;

/// A file written at `end` by position, with zeros written ahead of it
/// once it is busy ([`super::zero_ahead`]).
#[derive(Debug)]
struct OsFile {
    file: Arc<File>,
    end: u64,
    zero: Arc<ZeroAhead>,
}

impl OsFile {
    fn new(file: File, len: u64) -> Self {
        OsFile {
            file: Arc::new(file),
            end: len,
            zero: ZeroAhead::new(len),
        }
    }
}

impl WalFile for OsFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        write_claimed(&self.file, &self.zero, self.end, bytes)?;
        self.end += bytes.len() as u64;
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn cut(&mut self, len: u64) -> io::Result<()> {
        self.zero.stop_at(len, true);
        self.file.set_len(len)?;
        self.end = len;
        Ok(())
    }
    fn finish(&mut self, len: u64) -> io::Result<()> {
        self.zero.stop_at(len, false);
        self.file.set_len(len)?;
        self.end = len;
        self.file.sync_all()
    }
}

impl WalFs for OsWalFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(OsFile::new(f, 0)))
    }

    fn reopen(&self, path: &Path, len: u64) -> io::Result<Box<dyn WalFile>> {
        let f = OpenOptions::new().write(true).open(path)?;
        if f.metadata()?.len() != len {
            f.set_len(len)?;
            f.sync_all()?;
        }
        Ok(Box::new(OsFile::new(f, len)))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        crate::util::fs::sync_dir(dir)
    }
}

/// Which operations fail next. Each counter is the number of upcoming
/// calls that fail (`u32::MAX`: every call until cleared).
#[derive(Debug, Default)]
pub struct WalFaults {
    pub fail_writes: AtomicU32,
    pub fail_syncs: AtomicU32,
    pub fail_creates: AtomicU32,
    /// Creates that fail with EMFILE, as when the process is out of
    /// descriptors.
    pub creates_out_of_descriptors: AtomicU32,
    /// While set, every append writes half its bytes and fails with
    /// ENOSPC, as a full disk does, and creating a file fails with ENOSPC.
    pub disk_full: AtomicBool,
}

impl WalFaults {
    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                0 => None,
                u32::MAX => Some(u32::MAX),
                n => Some(n - 1),
            })
            .is_ok()
    }

    /// Ends every fault.
    pub fn clear(&self) {
        for c in [
            &self.fail_writes,
            &self.fail_syncs,
            &self.fail_creates,
            &self.creates_out_of_descriptors,
        ] {
            c.store(0, Ordering::SeqCst);
        }
        self.disk_full.store(false, Ordering::SeqCst);
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure"))
}

/// [`OsWalFs`] with faults switched on and off through [`WalFaults`].
#[derive(Debug, Default, Clone)]
pub struct FaultyWalFs {
    pub faults: Arc<WalFaults>,
}

#[derive(Debug)]
struct FaultyFile {
    inner: Box<dyn WalFile>,
    faults: Arc<WalFaults>,
    path: PathBuf,
}

impl WalFile for FaultyFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.faults.disk_full.load(Ordering::SeqCst) {
            let _ = self.inner.append(&bytes[..bytes.len() / 2]);
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        if WalFaults::take(&self.faults.fail_writes) {
            // A failed write may still have written a part.
            let _ = self.inner.append(&bytes[..bytes.len() / 2]);
            return Err(injected(&format!("write to {}", self.path.display())));
        }
        self.inner.append(bytes)
    }
    fn sync(&mut self) -> io::Result<()> {
        if WalFaults::take(&self.faults.fail_syncs) {
            return Err(injected("fsync"));
        }
        self.inner.sync()
    }
    fn cut(&mut self, len: u64) -> io::Result<()> {
        self.inner.cut(len)
    }
    fn finish(&mut self, len: u64) -> io::Result<()> {
        if WalFaults::take(&self.faults.fail_syncs) {
            return Err(injected("fsync"));
        }
        self.inner.finish(len)
    }
}

impl FaultyWalFs {
    fn wrap(&self, inner: Box<dyn WalFile>, path: &Path) -> Box<dyn WalFile> {
        Box::new(FaultyFile {
            inner,
            faults: Arc::clone(&self.faults),
            path: path.to_path_buf(),
        })
    }
}

impl WalFs for FaultyWalFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        OsWalFs.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        OsWalFs.list(dir)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        OsWalFs.read(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        if self.faults.disk_full.load(Ordering::SeqCst) {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        if WalFaults::take(&self.faults.fail_creates) {
            return Err(injected("create"));
        }
        if WalFaults::take(&self.faults.creates_out_of_descriptors) {
            return Err(io::Error::from_raw_os_error(libc::EMFILE));
        }
        Ok(self.wrap(OsWalFs.create(path)?, path))
    }
    fn reopen(&self, path: &Path, len: u64) -> io::Result<Box<dyn WalFile>> {
        Ok(self.wrap(OsWalFs.reopen(path, len)?, path))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        OsWalFs.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsWalFs.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if WalFaults::take(&self.faults.fail_syncs) {
            return Err(injected("directory fsync"));
        }
        OsWalFs.sync_dir(dir)
    }
}
