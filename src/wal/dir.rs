//! The WAL directory of one partition and its open, append-only file.

use super::entry::encode_skip_entry;
use super::fs::{WalFile, WalFs};
use super::scan::{Damage, WalFileRef};
use crate::layout;
use crate::util::fs::IoError;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One partition's WAL directory. Clones share it.
#[derive(Debug, Clone)]
pub struct WalDir {
    dir: PathBuf,
    fs: Arc<dyn WalFs>,
}

impl WalDir {
    pub fn open(dir: impl Into<PathBuf>, fs: Arc<dyn WalFs>) -> Result<Self, IoError> {
        let dir = dir.into();
        fs.create_dir_all(&dir)
            .map_err(|e| IoError::new(format!("create WAL directory {}", dir.display()), e))?;
        Ok(WalDir { dir, fs })
    }

    /// The WAL files in offset order. Files that are not ours are ignored.
    pub fn files(&self) -> Result<Vec<WalFileRef>, IoError> {
        let names = self
            .fs
            .list(&self.dir)
            .map_err(|e| IoError::new(format!("list WAL directory {}", self.dir.display()), e))?;
        let mut out: Vec<WalFileRef> = names
            .iter()
            .filter_map(|name| {
                Some(WalFileRef {
                    first_offset: layout::parse_wal_file_name(name)?,
                    path: self.dir.join(name),
                })
            })
            .collect();
        out.sort_by_key(|f| f.first_offset);
        Ok(out)
    }

    /// Every WAL file with its bytes, read one at a time, in offset order.
    pub fn read_all(
        &self,
    ) -> Result<impl Iterator<Item = Result<(WalFileRef, Vec<u8>), IoError>> + '_, IoError> {
        Ok(self.files()?.into_iter().map(move |f| {
            let data = self
                .fs
                .read(&f.path)
                .map_err(|e| IoError::new(format!("read WAL {}", f.path.display()), e))?;
            Ok((f, data))
        }))
    }

    /// Creates the file for the segment starting at `first_offset` (empty;
    /// an existing file is truncated) and makes its name durable.
    pub fn create(&self, first_offset: i64) -> Result<WalWriter, IoError> {
        let path = self.dir.join(layout::wal_file_name(first_offset));
        let file = self
            .fs
            .create(&path)
            .map_err(|e| IoError::new(format!("create WAL {}", path.display()), e))?;
        self.sync_dir()?;
        Ok(WalWriter { file, path, len: 0 })
    }

    /// Reopens an existing file for appending after cutting it to
    /// `good_len` bytes (the end of its last good entry).
    pub fn reopen(&self, path: &Path, good_len: u64) -> Result<WalWriter, IoError> {
        let file = self
            .fs
            .reopen(path, good_len)
            .map_err(|e| IoError::new(format!("reopen WAL {}", path.display()), e))?;
        Ok(WalWriter {
            file,
            path: path.to_path_buf(),
            len: good_len,
        })
    }

    /// Deletes a WAL file whose records are all committed in segments.
    pub fn remove(&self, path: &Path) -> Result<(), IoError> {
        match self.fs.remove(path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(IoError::new(format!("remove WAL {}", path.display()), e)),
        }
    }

    /// Sets a file aside under a name recovery never reads again, keeping
    /// its bytes for a person to look at. Returns the new path.
    pub fn set_aside(&self, path: &Path) -> Result<PathBuf, IoError> {
        self.rename(path, layout::discarded_wal_path(path))
    }

    fn rename(&self, path: &Path, to: PathBuf) -> Result<PathBuf, IoError> {
        self.fs
            .rename(path, &to)
            .map_err(|e| IoError::new(format!("rename {}", path.display()), e))?;
        self.sync_dir()?;
        Ok(to)
    }

    /// Accepts the loss that `damage` describes, after an operator asked
    /// for it: the damaged file's bytes are kept (`.wal.damaged`), the file
    /// is replaced by its good prefix and a skip entry to an offset no lost
    /// record can have had, and later files are set aside. Offsets are
    /// never reused. Each step writes a whole file under a temporary name
    /// and renames it into place, so a crash or a full disk at any point
    /// leaves either the damaged file (the repair can be asked for again)
    /// or the repaired one, never neither. Returns where offsets go on.
    pub fn accept_loss(&self, damage: &Damage) -> Result<i64, IoError> {
        let next = damage.next_offset_bound();
        let bytes = self
            .fs
            .read(&damage.path)
            .map_err(|e| IoError::new(format!("read {}", damage.path.display()), e))?;
        self.write_whole(&layout::damaged_wal_path(&damage.path), &bytes)?;
        let mut fresh = bytes[..damage.at as usize].to_vec();
        encode_skip_entry(&mut fresh, next);
        self.write_whole(&damage.path, &fresh)?;
        for (later, _) in &damage.later {
            self.set_aside(&later.path)?;
        }
        Ok(next)
    }

    /// `data` at `path`, whole: written and fsynced under a name recovery
    /// never reads, then renamed over `path`.
    fn write_whole(&self, path: &Path, data: &[u8]) -> Result<(), IoError> {
        let tmp = path.with_extension("partial");
        let file = self
            .fs
            .create(&tmp)
            .map_err(|e| IoError::new(format!("create {}", tmp.display()), e))?;
        let mut w = WalWriter {
            file,
            path: tmp.clone(),
            len: 0,
        };
        w.append(data)?;
        w.finish()?;
        drop(w);
        self.rename(&tmp, path.to_path_buf()).map(|_| ())
    }

    fn sync_dir(&self) -> Result<(), IoError> {
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| IoError::new(format!("fsync directory {}", self.dir.display()), e))
    }
}

/// The open, append-only WAL file of the active segment.
#[derive(Debug)]
pub struct WalWriter {
    file: Box<dyn WalFile>,
    path: PathBuf,
    /// Bytes appended so far: where a failed append is cut back to.
    len: u64,
}

impl WalWriter {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends encoded entries (not yet durable). On a full disk (ENOSPC,
    /// EDQUOT) the file is cut back to where it was, and the error keeps
    /// its kind: then nothing of `bytes` is in the file and appending may
    /// go on once there is space. Any other failure may leave part of
    /// `bytes` behind.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), IoError> {
        match self.file.append(bytes) {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) if is_disk_full(&e) => match self.file.cut(self.len) {
                Ok(()) => Err(IoError::new(
                    format!(
                        "write WAL {} (cut back: nothing written)",
                        self.path.display()
                    ),
                    e,
                )),
                Err(cut) => Err(IoError::new(
                    format!(
                        "cut back WAL {} after a full disk ({e})",
                        self.path.display()
                    ),
                    io::Error::other(cut),
                )),
            },
            Err(e) => Err(IoError::new(
                format!("write WAL {}", self.path.display()),
                e,
            )),
        }
    }

    /// The file is done: cut to what was appended (zeros written ahead
    /// go) and durable, before any later file exists.
    pub fn finish(&mut self) -> Result<(), IoError> {
        self.file
            .finish(self.len)
            .map_err(|e| IoError::new(format!("finish WAL {}", self.path.display()), e))
    }

    /// Makes everything appended so far durable (fdatasync).
    pub fn sync(&mut self) -> Result<(), IoError> {
        self.file
            .sync()
            .map_err(|e| IoError::new(format!("fsync WAL {}", self.path.display()), e))
    }
}

/// The process is out of file descriptors (a connection flood, a low
/// limit): creating a file may succeed later.
pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// The disk (or the user's quota) has no room: nothing was lost, and a
/// write may succeed later.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}
