//! File-system steps that more than one layer needs.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;

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
