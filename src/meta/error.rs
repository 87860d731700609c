//! What a metadata call can fail with.

use std::fmt;

#[derive(Debug)]
pub enum MetaError {
    Sqlite {
        context: &'static str,
        source: rusqlite::Error,
    },
    NotFound(String),
    AlreadyExists(String),
    /// A write would break an invariant (e.g. a segment that does not start at
    /// the partition's committed high watermark).
    Conflict(String),
    /// The database was written by a newer build.
    SchemaTooNew {
        found: i64,
        supported: i64,
    },
}

impl fmt::Display for MetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaError::Sqlite { context, source } => write!(f, "sqlite ({context}): {source}"),
            MetaError::NotFound(m) | MetaError::AlreadyExists(m) | MetaError::Conflict(m) => {
                f.write_str(m)
            }
            MetaError::SchemaTooNew { found, supported } => write!(
                f,
                "metadata schema version {found} is newer than this build supports ({supported}); upgrade streamhoused"
            ),
        }
    }
}

impl std::error::Error for MetaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MetaError::Sqlite { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for MetaError {
    fn from(source: rusqlite::Error) -> Self {
        MetaError::Sqlite {
            context: "query",
            source,
        }
    }
}

pub type MetaResult<T> = Result<T, MetaError>;
