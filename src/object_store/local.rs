//! `LocalFsStore`: objects as files under a root directory.

use super::{
    check_range, content_etag, validate_key, validate_prefix, Expect, ObjectMeta, ObjectStore,
    StoreError, StoreResult, Versioned,
};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A directory of objects. `put` is atomic and durable: the bytes go to a
/// temporary file in the target's directory, are fsynced, renamed over the
/// target, and the directory is fsynced so the rename survives a crash.
///
/// Temporary names contain a backslash, which no valid key may, so they can
/// never collide with an object and `list` skips them.
#[derive(Debug)]
pub struct LocalFsStore {
    root: PathBuf,
    tmp_counter: AtomicU64,
    /// Makes a conditional put's read-compare-write one step (the data
    /// directory's lock keeps other processes out).
    conditional: std::sync::Mutex<()>,
}

impl LocalFsStore {
    /// Opens (creating if needed) the store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> StoreResult<Self> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| io_error(&root.display().to_string(), e))?;
        Ok(LocalFsStore {
            root,
            tmp_counter: AtomicU64::new(0),
            conditional: std::sync::Mutex::new(()),
        })
    }

    fn path_of(&self, key: &str) -> StoreResult<PathBuf> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    fn walk(&self, dir: &Path, rel: &str, out: &mut Vec<ObjectMeta>) -> io::Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue; // not a name any valid key maps to
            };
            if name.contains('\\') {
                continue; // an in-flight temporary file
            }
            let key = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let ft = entry.file_type()?;
            if ft.is_dir() {
                self.walk(&entry.path(), &key, out)?;
            } else if ft.is_file() {
                out.push(ObjectMeta {
                    key,
                    size: entry.metadata()?.len(),
                });
            }
        }
        Ok(())
    }
}

fn io_error(key: &str, e: io::Error) -> StoreError {
    match e.kind() {
        io::ErrorKind::NotFound => StoreError::NotFound {
            key: key.to_string(),
        },
        io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            StoreError::transient(key, e.to_string())
        }
        _ => StoreError::permanent(key, e.to_string()),
    }
}

impl ObjectStore for LocalFsStore {
    fn put(&self, key: &str, data: &[u8]) -> StoreResult<()> {
        let path = self.path_of(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object");
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{file_name}\\tmp.{}.{n}", std::process::id()));
        let result = (|| {
            fs::create_dir_all(&dir)?;
            let mut f = File::create(&tmp)?;
            crate::util::fs::write_smoothly(&mut f, data)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &path)?;
            crate::util::fs::sync_dir(&dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(|e| match e.kind() {
            // A missing directory during put is a failure of the put, not a
            // missing object.
            io::ErrorKind::NotFound => StoreError::permanent(key, e.to_string()),
            _ => io_error(key, e),
        })
    }

    fn put_if(&self, key: &str, data: &[u8], expect: Expect<'_>) -> StoreResult<()> {
        let _one_at_a_time = crate::util::sync::lock(&self.conditional);
        let current = match self.get(key) {
            Ok(d) => Some(content_etag(&d)),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let ok = match expect {
            Expect::Absent => current.is_none(),
            Expect::Version(tag) => current.as_deref() == Some(tag),
        };
        if !ok {
            return Err(StoreError::PreconditionFailed {
                key: key.to_string(),
            });
        }
        self.put(key, data)
    }

    fn get_versioned(&self, key: &str) -> StoreResult<Versioned> {
        let data = self.get(key)?;
        let etag = content_etag(&data);
        Ok(Versioned { data, etag })
    }

    fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        let path = self.path_of(key)?;
        if path.is_dir() {
            return Err(StoreError::NotFound {
                key: key.to_string(),
            });
        }
        fs::read(&path).map_err(|e| io_error(key, e))
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        let path = self.path_of(key)?;
        let mut f = File::open(&path).map_err(|e| io_error(key, e))?;
        let meta = f.metadata().map_err(|e| io_error(key, e))?;
        if meta.is_dir() {
            return Err(StoreError::NotFound {
                key: key.to_string(),
            });
        }
        check_range(key, &range, meta.len())?;
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        f.seek(SeekFrom::Start(range.start))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| io_error(key, e))?;
        Ok(buf)
    }

    fn size(&self, key: &str) -> StoreResult<u64> {
        let path = self.path_of(key)?;
        let meta = fs::metadata(&path).map_err(|e| io_error(key, e))?;
        if !meta.is_file() {
            return Err(StoreError::NotFound {
                key: key.to_string(),
            });
        }
        Ok(meta.len())
    }

    fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        // Walk only the directory the prefix points into.
        let dir_part = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        let mut out = Vec::new();
        self.walk(&start, dir_part, &mut out)
            .map_err(|e| io_error(prefix, e))?;
        out.retain(|o| o.key.starts_with(prefix));
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.path_of(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(key, e)),
        }
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    /// The local store lives in the data directory, wherever it moves.
    fn identity(&self) -> String {
        "the local object store".to_string()
    }
}
