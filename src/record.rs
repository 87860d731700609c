//! The record: the unit a producer writes and a consumer reads.
//!
//! These are plain Rust values that cross every internal boundary (engine,
//! segment codec, WAL); protobuf types stay in `src/server/` and `src/cli/`.

/// One header of a record: a UTF-8 key and a value, which may be empty or
/// (as Kafka allows) null.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

impl Header {
    /// A header with a (non-null) value.
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Header {
        Header {
            key: key.into(),
            value: Some(value.into()),
        }
    }

    /// The value's bytes; a null value has none.
    pub fn value_bytes(&self) -> &[u8] {
        self.value.as_deref().unwrap_or_default()
    }
}

/// One record of a partition.
///
/// `key` distinguishes "no key" (`None`) from "an empty key" (`Some(vec![])`),
/// and `value` a null value (`None`: Kafka's tombstone) from an empty one;
/// the WAL and the segment format keep both differences.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
}

/// Charged for every record on top of its bytes, in all size accounting
/// (the record limit, the backlog bound, segment size, fetch budgets): a
/// record is never free, whatever its key and value.
pub const RECORD_OVERHEAD: usize = 16;
/// Charged for every header on top of its key and value: a million empty
/// headers are not free either.
pub const HEADER_OVERHEAD: usize = 8;
/// Most headers one record may carry.
pub const MAX_HEADERS: usize = 1024;

/// The charged size of a record with these parts.
pub fn accounted_len(key: usize, value: usize, headers: usize, header_bytes: usize) -> usize {
    RECORD_OVERHEAD + key + value + headers * HEADER_OVERHEAD + header_bytes
}

impl Record {
    /// The value's bytes; a null value has none.
    pub fn value_bytes(&self) -> &[u8] {
        self.value.as_deref().unwrap_or_default()
    }

    /// A null value, or a header with a null value: the record needs the
    /// nullable length encoding (WAL kind bit, segment block flag).
    pub fn has_null(&self) -> bool {
        self.value.is_none() || self.headers.iter().any(|h| h.value.is_none())
    }

    /// What a record costs in every size limit: key, value, header keys and
    /// values, plus [`RECORD_OVERHEAD`] and [`HEADER_OVERHEAD`] per header.
    pub fn accounted_len(&self) -> usize {
        accounted_len(
            self.key.as_ref().map_or(0, Vec::len),
            self.value_bytes().len(),
            self.headers.len(),
            self.headers
                .iter()
                .map(|h| h.key.len() + h.value_bytes().len())
                .sum::<usize>(),
        )
    }
}
