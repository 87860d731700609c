//! The crate's umbrella error and `Result` alias.
//!
//! Each layer below has its own typed error ([`FormatError`] for segment
//! bytes, [`StoreError`] for object stores, [`MetaError`] for metadata,
//! [`IoError`] for local files); this enum wraps them with `From`
//! conversions, and adds the conditions the API contract names. The server
//! maps it to gRPC status codes in one function.

use crate::meta::MetaError;
use crate::object_store::StoreError;
use crate::segment::FormatError;
use crate::util::fs::IoError;
use crate::wal::ScanError;
use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug)]
pub enum Error {
    /// Stored bytes failed their check; names the object (or WAL file) and
    /// the part (header, footer, block N) that failed.
    Corruption {
        object: String,
        detail: FormatError,
    },
    /// An object StreamHouse wrote to the bucket (a manifest, a checkpoint)
    /// does not decode, or contradicts its key.
    Malformed {
        object: String,
        reason: String,
    },
    /// An object-store call failed (after the retry layer gave up).
    Store(StoreError),
    /// A metadata (SQLite) operation failed.
    Meta(MetaError),
    /// A local file operation failed.
    Io {
        context: String,
        source: std::io::Error,
    },
    /// The caller asked for something malformed; the message says what is
    /// allowed.
    InvalidArgument(String),
    NotFound(String),
    AlreadyExists(String),
    OutOfRange(String),
    /// Data that was written cannot be read back (DATA_LOSS upstream): a
    /// damaged WAL in the middle of a partition's log.
    DataLoss(String),
    /// Too much accepted data is not yet uploaded, or a queue is full:
    /// retry later (RESOURCE_EXHAUSTED upstream).
    Backpressure(String),
    /// The engine is shutting down, or a partition stopped after a local
    /// I/O failure (UNAVAILABLE upstream).
    Unavailable(String),
    /// Cluster mode: another node leads the partition, or none does at
    /// the moment (UNAVAILABLE upstream, with where the leader is).
    NotLeader {
        message: String,
        leader: Option<LeaderAt>,
    },
    /// The request does not fit the state it would change: an idempotent
    /// batch whose sequence number skips ahead (FAILED_PRECONDITION).
    FailedPrecondition(String),
    /// A producer epoch that a newer one fenced (ABORTED upstream).
    Aborted(String),
    /// The node cannot start as configured (the store refuses its
    /// credentials, a bucket that does not exist): retrying will not help.
    Config(String),
}

/// Where a partition's leader is, as a node last read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderAt {
    pub topic: String,
    pub partition: u32,
    pub node_id: String,
    pub grpc_addr: String,
    pub epoch: i64,
}

impl Error {
    pub fn corruption(object: impl Into<String>, detail: FormatError) -> Self {
        Error::Corruption {
            object: object.into(),
            detail,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A copy for fanning one failure out to several callers (errors are
    /// not `Clone`: they may hold an `io::Error`). The kinds that carry
    /// only a message copy exactly; others become UNAVAILABLE with the
    /// same text.
    pub fn clone_simple(&self) -> Error {
        match self {
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::NotFound(m) => Error::NotFound(m.clone()),
            Error::AlreadyExists(m) => Error::AlreadyExists(m.clone()),
            Error::OutOfRange(m) => Error::OutOfRange(m.clone()),
            Error::DataLoss(m) => Error::DataLoss(m.clone()),
            Error::Backpressure(m) => Error::Backpressure(m.clone()),
            Error::Unavailable(m) => Error::Unavailable(m.clone()),
            Error::NotLeader { message, leader } => Error::NotLeader {
                message: message.clone(),
                leader: leader.clone(),
            },
            Error::FailedPrecondition(m) => Error::FailedPrecondition(m.clone()),
            Error::Aborted(m) => Error::Aborted(m.clone()),
            other => Error::Unavailable(other.to_string()),
        }
    }

    /// What every call gets once shutdown has begun.
    pub fn shutting_down() -> Self {
        Error::Unavailable("the server is shutting down".to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Corruption { object, detail } => {
                write!(f, "corrupt data in {object}: {detail}")
            }
            Error::Malformed { object, reason } => write!(f, "malformed object {object}: {reason}"),
            Error::Store(e) => write!(f, "object store: {e}"),
            Error::Config(m) => write!(f, "configuration: {m}"),
            Error::Meta(e) => write!(f, "metadata: {e}"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::InvalidArgument(m)
            | Error::NotFound(m)
            | Error::AlreadyExists(m)
            | Error::OutOfRange(m)
            | Error::DataLoss(m)
            | Error::Backpressure(m)
            | Error::Unavailable(m)
            | Error::FailedPrecondition(m)
            | Error::Aborted(m)
            | Error::NotLeader { message: m, .. } => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Corruption { detail, .. } => Some(detail),
            Error::Store(e) => Some(e),
            Error::Meta(e) => Some(e),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

impl From<MetaError> for Error {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::NotFound(m) => Error::NotFound(m),
            MetaError::AlreadyExists(m) => Error::AlreadyExists(m),
            other => Error::Meta(other),
        }
    }
}

impl From<IoError> for Error {
    fn from(e: IoError) -> Self {
        Error::Io {
            context: e.context,
            source: e.source,
        }
    }
}

impl From<ScanError> for Error {
    fn from(e: ScanError) -> Self {
        match e {
            ScanError::Read(io) => io.into(),
            gap @ ScanError::Gap { .. } => Error::Unavailable(gap.to_string()),
        }
    }
}
