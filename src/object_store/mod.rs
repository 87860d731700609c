//! Object storage: where sealed segments live.
//!
//! [`ObjectStore`] is the whole contract; implementations:
//! - [`LocalFsStore`]: a directory, the embedded default;
//! - [`S3Store`]: any S3-compatible service through rust-s3 (blocking);
//! - [`MemoryStore`]: in memory, with fault injection for tests.
//!
//! [`RetryingStore`] wraps any of them with bounded, jittered retries of
//! transient errors, cut short at shutdown; [`retry`] is the one retry loop,
//! also used by uploads.

mod local;
mod memory;
mod retry;
mod s3;

pub use local::LocalFsStore;
pub use memory::{Faults, MemoryStore};
pub use retry::{retry, RetryPolicy, RetryingStore};
pub use s3::{S3Config, S3Store};

use std::fmt;
use std::ops::Range;

/// An object's key and size, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
}

/// Why an object-store call failed. The retry layer retries `Transient` only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The key does not exist.
    NotFound { key: String },
    /// Worth retrying: 5xx, 503 SlowDown, 408, 429, timeouts, refused or
    /// reset connections.
    Transient { key: String, reason: String },
    /// Retrying cannot help: other 4xx (bad credentials, bad request), an
    /// invalid key, a range past the end of the object, local I/O errors
    /// such as permission denied.
    Permanent { key: String, reason: String },
    /// A conditional write found the object not as expected (HTTP 412).
    PreconditionFailed { key: String },
    /// A ranged read runs past the end of the object (it is shorter than
    /// the caller believed).
    OutOfBounds { key: String, reason: String },
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    pub fn key(&self) -> &str {
        match self {
            StoreError::NotFound { key }
            | StoreError::PreconditionFailed { key }
            | StoreError::Transient { key, .. }
            | StoreError::OutOfBounds { key, .. }
            | StoreError::Permanent { key, .. } => key,
        }
    }

    pub(crate) fn permanent(key: &str, reason: impl Into<String>) -> Self {
        StoreError::Permanent {
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn transient(key: &str, reason: impl Into<String>) -> Self {
        StoreError::Transient {
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound { key } => write!(f, "object {key:?} not found"),
            StoreError::Transient { key, reason } => {
                write!(f, "transient error on {key:?}: {reason}")
            }
            StoreError::Permanent { key, reason } => write!(f, "error on {key:?}: {reason}"),
            StoreError::OutOfBounds { key, reason } => write!(f, "{key:?}: {reason}"),
            StoreError::PreconditionFailed { key } => {
                write!(
                    f,
                    "{key:?} changed since it was read (conditional write refused)"
                )
            }
        }
    }
}

impl std::error::Error for StoreError {}

pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// An object's bytes with its version tag (the ETag on S3), for a
/// conditional write that must not overwrite a newer version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    pub data: Vec<u8>,
    pub etag: String,
}

/// What a conditional write expects to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect<'a> {
    /// No object (`If-None-Match: *`).
    Absent,
    /// This version (`If-Match: etag`).
    Version(&'a str),
}

/// A content tag for stores that compute their own.
pub(crate) fn content_etag(data: &[u8]) -> String {
    format!("{:08x}-{}", crc32c::crc32c(data), data.len())
}

/// A flat key → bytes store. Every implementation must behave the same way
/// (the contract suite in `tests/object_store_contract.rs` checks it):
///
/// - `put` is atomic: a reader sees the whole old object or the whole new
///   one, never a part; it replaces an existing object.
/// - `get_range` returns exactly the bytes of the range, or an error: a range
///   past the end of the object is `OutOfBounds`, a missing key `NotFound`.
/// - `list` returns every object whose key starts with `prefix`, in key order.
/// - `delete` of a missing key succeeds (deletes are idempotent).
/// - Keys are validated by [`validate_key`] everywhere, so a key that one
///   store refuses is refused by all.
pub trait ObjectStore: Send + Sync + fmt::Debug {
    fn put(&self, key: &str, data: &[u8]) -> StoreResult<()>;
    /// Writes `data` only if the object is as `expect` says, else
    /// `PreconditionFailed`. Some S3-compatible stores accept the condition
    /// and ignore it: the owner record probes before it relies on it.
    fn put_if(&self, key: &str, data: &[u8], expect: Expect<'_>) -> StoreResult<()>;
    fn get(&self, key: &str) -> StoreResult<Vec<u8>>;
    /// The object with its version tag.
    fn get_versioned(&self, key: &str) -> StoreResult<Versioned>;
    fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>>;
    /// The object's size in bytes (a HEAD request on S3).
    fn size(&self, key: &str) -> StoreResult<u64>;
    fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>>;
    fn delete(&self, key: &str) -> StoreResult<()>;
    /// Where the store keeps objects, for logs ("s3://bucket/prefix").
    fn describe(&self) -> String;
    /// What makes two handles the same store, for telling whether a data
    /// directory belongs to it (`describe` may name an endpoint that can
    /// change). Defaults to `describe`.
    fn identity(&self) -> String {
        self.describe()
    }
}

/// Longest key accepted (S3's limit).
pub const MAX_KEY_LEN: usize = 1024;

/// Checks that `key` is a relative, '/'-separated path that cannot leave the
/// store's root or prefix: non-empty, at most 1024 bytes, no leading '/', no
/// empty, `.` or `..` segments, no NUL, no backslash, no control characters.
pub fn validate_key(key: &str) -> StoreResult<()> {
    let bad = |why: &str| {
        Err(StoreError::permanent(
            key,
            format!("invalid object key: {why}"),
        ))
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > MAX_KEY_LEN {
        return bad("longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return bad("absolute path");
    }
    if key.contains('\\') {
        return bad("backslash");
    }
    if key.chars().any(char::is_control) {
        return bad("NUL or control character");
    }
    if key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("empty, '.' or '..' path segment");
    }
    Ok(())
}

/// Checks a list prefix: empty, or a key-like string that may end in '/'.
pub fn validate_prefix(prefix: &str) -> StoreResult<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    validate_key(prefix.strip_suffix('/').unwrap_or(prefix))
}

/// Checks a range against an object of `len` bytes.
pub(crate) fn check_range(key: &str, range: &Range<u64>, len: u64) -> StoreResult<()> {
    if range.start > range.end || range.end > len {
        return Err(StoreError::OutOfBounds {
            key: key.to_string(),
            reason: format!(
                "range {}..{} is outside the object of {len} bytes",
                range.start, range.end
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_escape_are_refused() {
        for bad in [
            "", "/abs", "a/../b", "..", ".", "a//b", "a/", "a\\b", "a\0b", "a/./b", "x\n",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?} should be refused");
        }
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert!(validate_key(&long).is_err());
        for good in [
            "a",
            "topics/t/0/00000000000000000000.seg",
            "weird key with spaces+plus=eq&amp,comma;semi'quote(paren)",
            "unicode/ключ/キー/🦀",
            "a..b/.hidden/..x",
        ] {
            assert!(validate_key(good).is_ok(), "{good:?} should be accepted");
        }
    }
}
