//! The record: the unit a producer writes and a consumer reads.
//!
//! These are plain Rust values that cross every internal boundary (engine,
//! segment codec, WAL); protobuf types stay in `src/server/` and `src/cli/`.

/// One header of a record: a UTF-8 key and an arbitrary (possibly empty) value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Vec<u8>,
}

/// One record of a partition.
///
/// `key` distinguishes "no key" (`None`) from "an empty key" (`Some(vec![])`);
/// the segment format keeps that difference.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<Header>,
}

impl Record {
    /// The bytes a record costs against `--max-record-bytes`: key, value and
    /// every header key and value.
    pub fn payload_len(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len)
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.len())
                .sum::<usize>()
    }
}
