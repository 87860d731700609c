//! Kafka's RecordBatch, format v2 (magic 2), as its protocol documents it:
//! the batch header in big-endian, a CRC-32C over everything from the
//! attributes to the end, then the records, each with zigzag varints.
//!
//! ```text
//! baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 = 2
//! | crc u32 | attributes i16 | lastOffsetDelta i32 | baseTimestamp i64
//! | maxTimestamp i64 | producerId i64 | producerEpoch i16 | baseSequence i32
//! | recordCount i32 | records
//! record: length varint | attributes i8 | timestampDelta varlong
//!   | offsetDelta varint | keyLength varint (-1: null) | key
//!   | valueLength varint (-1: null) | value | headerCount varint
//!   | headers: keyLength varint | key (UTF-8) | valueLength varint (-1: null) | value
//! ```
//!
//! Null keys and values, empty ones, duplicate header keys and null header
//! values are kept apart exactly. Control batches and transactional batches
//! are refused (no transactions here). Compressed records (gzip, snappy,
//! lz4, zstd) are inflated within [`Limits::max_batch_bytes`] by
//! [`super::compression`]; batches are written uncompressed.

use super::compression::{decompress, Codec, InflateError};
use crate::codec::{put_varint, Cursor};
use std::borrow::Cow;
use std::fmt;

/// The only record format this codec reads and writes.
pub const MAGIC: i8 = 2;
/// Bytes before `records`: the fixed batch header.
pub const BATCH_HEADER_LEN: usize = 61;
/// `baseOffset` and `batchLength`: the part outside `batchLength`.
const LOG_OVERHEAD: usize = 12;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_LOG_APPEND: i16 = 0x08;
const TRANSACTIONAL: i16 = 0x10;
const CONTROL: i16 = 0x20;

/// One record as a Kafka client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaRecord {
    /// Absolute: the batch's base timestamp plus the record's delta.
    pub timestamp_ms: i64,
    /// From the batch's base offset.
    pub offset_delta: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// In order, duplicate keys kept.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A decoded batch (uncompressed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordBatch {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    /// Only the timestamp type bit may be set in what this codec accepts.
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records: Vec<KafkaRecord>,
}

/// Why bytes are not a batch this node takes; [`BatchError::kafka_code`]
/// is the error a produce response carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// Truncated, inconsistent, or a CRC mismatch.
    Corrupt(String),
    /// A magic other than 2 (the v0/v1 message sets of clients older than
    /// Kafka 0.11).
    UnsupportedMagic(i8),
    /// A compression type that does not exist (5-7).
    UnsupportedCompression(i16),
    /// Transactional or control batches: no transactions here.
    Transactional,
    /// More records or bytes than the caller allows.
    TooLarge(String),
}

impl BatchError {
    /// Kafka's error code for a produce response.
    pub fn kafka_code(&self) -> i16 {
        match self {
            BatchError::Corrupt(_) => 2,                 // CORRUPT_MESSAGE
            BatchError::UnsupportedMagic(_) => 43,       // UNSUPPORTED_FOR_MESSAGE_FORMAT
            BatchError::UnsupportedCompression(_) => 76, // UNSUPPORTED_COMPRESSION_TYPE
            BatchError::Transactional => 48,             // INVALID_TXN_STATE
            BatchError::TooLarge(_) => 10,               // MESSAGE_TOO_LARGE
        }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Corrupt(why) => write!(f, "corrupt record batch: {why}"),
            BatchError::UnsupportedMagic(m) => write!(
                f,
                "record batch magic {m}; this node reads magic 2 (Kafka 0.11 and later)"
            ),
            BatchError::UnsupportedCompression(c) => write!(
                f,
                "compression type {c} does not exist (0-4: none, gzip, snappy, lz4, zstd)"
            ),
            BatchError::Transactional => {
                write!(f, "transactional and control batches are not supported")
            }
            BatchError::TooLarge(why) => write!(f, "record batch too large: {why}"),
        }
    }
}

/// What one decode may produce.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_records: usize,
    /// Records of one batch once inflated.
    pub max_batch_bytes: usize,
}

fn corrupt(why: impl Into<String>) -> BatchError {
    BatchError::Corrupt(why.into())
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}
fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

/// Every batch in `bytes` (a produce request's records field). A batch
/// cut short at the end is corrupt: a producer never sends a partial one.
pub fn decode_batches(bytes: &[u8], limits: Limits) -> Result<Vec<RecordBatch>, BatchError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut records = 0usize;
    while !rest.is_empty() {
        let (batch, used) = decode_batch(rest, limits.max_records - records, limits)?;
        records += batch.records.len();
        out.push(batch);
        rest = &rest[used..];
    }
    Ok(out)
}

/// One batch at the start of `bytes`, and the bytes it took.
fn decode_batch(
    bytes: &[u8],
    max_records: usize,
    limits: Limits,
) -> Result<(RecordBatch, usize), BatchError> {
    if bytes.len() < LOG_OVERHEAD + 5 {
        return Err(corrupt(format!(
            "{} bytes cannot hold a batch header",
            bytes.len()
        )));
    }
    let magic = bytes[16] as i8;
    if magic != MAGIC {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    let batch_length = be_i32(&bytes[8..12]);
    let total = usize::try_from(batch_length)
        .ok()
        .and_then(|l| l.checked_add(LOG_OVERHEAD))
        .filter(|t| *t >= BATCH_HEADER_LEN && *t <= bytes.len())
        .ok_or_else(|| {
            corrupt(format!(
                "batchLength {batch_length} does not fit the {} bytes given",
                bytes.len()
            ))
        })?;
    let b = &bytes[..total];
    let crc = u32::from_be_bytes([b[17], b[18], b[19], b[20]]);
    let actual = crc32c::crc32c(&b[21..]);
    if crc != actual {
        return Err(corrupt(format!("CRC {crc:#010x}, computed {actual:#010x}")));
    }
    let attributes = be_i16(&b[21..23]);
    if attributes & (TRANSACTIONAL | CONTROL) != 0 {
        return Err(BatchError::Transactional);
    }
    let records = inflate(attributes, &b[BATCH_HEADER_LEN..], limits.max_batch_bytes)?;
    let mut batch = RecordBatch {
        base_offset: be_i64(&b[0..8]),
        partition_leader_epoch: be_i32(&b[12..16]),
        attributes,
        last_offset_delta: be_i32(&b[23..27]),
        base_timestamp: be_i64(&b[27..35]),
        max_timestamp: be_i64(&b[35..43]),
        producer_id: be_i64(&b[43..51]),
        producer_epoch: be_i16(&b[51..53]),
        base_sequence: be_i32(&b[53..57]),
        records: Vec::new(),
    };
    let count = be_i32(&b[57..61]);
    let count = usize::try_from(count).map_err(|_| corrupt(format!("record count {count}")))?;
    if count > max_records {
        return Err(BatchError::TooLarge(format!(
            "{count} records; at most {max_records} more in this request"
        )));
    }
    // Each record takes at least 7 bytes: no allocation beyond the input.
    if count > records.len() / 7 {
        return Err(corrupt(format!(
            "{count} records cannot fit in {} bytes",
            records.len()
        )));
    }
    batch.records.reserve(count);
    let mut c = Cursor::new(&records, 0);
    for i in 0..count {
        let r = decode_record(&mut c, batch.base_timestamp)
            .map_err(|e| corrupt(format!("record {i}: {e}")))?;
        batch.records.push(r);
    }
    if c.remaining() != 0 {
        return Err(corrupt(format!(
            "{} bytes after the last record",
            c.remaining()
        )));
    }
    let last = batch.records.last().map_or(-1, |r| r.offset_delta);
    if count > 0 && last != batch.last_offset_delta {
        return Err(corrupt(format!(
            "lastOffsetDelta {} but the last record's delta is {last}",
            batch.last_offset_delta
        )));
    }
    Ok((batch, total))
}

/// A batch's records as stored: borrowed when uncompressed, inflated
/// within `max` bytes otherwise.
fn inflate(attributes: i16, stored: &[u8], max: usize) -> Result<Cow<'_, [u8]>, BatchError> {
    let id = attributes & COMPRESSION_MASK;
    if id == 0 {
        return Ok(Cow::Borrowed(stored));
    }
    let codec = Codec::from_id(id).ok_or(BatchError::UnsupportedCompression(id))?;
    match decompress(codec, stored, max) {
        Ok(plain) => Ok(Cow::Owned(plain)),
        Err(InflateError::TooLarge) => Err(BatchError::TooLarge(format!(
            "its {} records inflate past {max} bytes",
            codec.name()
        ))),
        Err(InflateError::Corrupt(why)) => Err(corrupt(why)),
    }
}

fn decode_record(c: &mut Cursor<'_>, base_timestamp: i64) -> Result<KafkaRecord, String> {
    let length = c.varint("length").map_err(|e| e.0)?;
    let length = usize::try_from(length).map_err(|_| format!("length {length}"))?;
    if length > c.remaining() {
        return Err(format!("length {length} runs past the batch"));
    }
    let start = c.remaining();
    let _attributes = c.u8("attributes").map_err(|e| e.0)?;
    let delta = c.varint("timestampDelta").map_err(|e| e.0)?;
    let offset_delta = c.varint("offsetDelta").map_err(|e| e.0)?;
    let offset_delta =
        i32::try_from(offset_delta).map_err(|_| format!("offsetDelta {offset_delta}"))?;
    let key = nullable_bytes(c, "key")?;
    let value = nullable_bytes(c, "value")?;
    let header_count = c.varint("headerCount").map_err(|e| e.0)?;
    let header_count =
        usize::try_from(header_count).map_err(|_| format!("headerCount {header_count}"))?;
    if header_count > c.remaining() / 2 {
        return Err(format!("{header_count} headers cannot fit"));
    }
    let mut headers = Vec::with_capacity(header_count);
    for _ in 0..header_count {
        let key = nullable_bytes(c, "header key")?.ok_or("a null header key")?;
        let key = String::from_utf8(key).map_err(|_| "a header key is not UTF-8".to_string())?;
        headers.push((key, nullable_bytes(c, "header value")?));
    }
    if start - c.remaining() != length {
        return Err(format!(
            "length {length} but the record took {} bytes",
            start - c.remaining()
        ));
    }
    Ok(KafkaRecord {
        timestamp_ms: base_timestamp.wrapping_add(delta),
        offset_delta,
        key,
        value,
        headers,
    })
}

/// varint length (-1: null) and the bytes.
fn nullable_bytes(c: &mut Cursor<'_>, what: &str) -> Result<Option<Vec<u8>>, String> {
    let len = c.varint(what).map_err(|e| e.0)?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| format!("{what} length {len}"))?;
    Ok(Some(c.bytes(len, what).map_err(|e| e.0)?.to_vec()))
}

fn put_nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// One batch, uncompressed, as a fetch answers it. Offset deltas and the
/// timestamps are the records' own; `last_offset_delta` and the
/// timestamps of the header are taken from them.
pub fn encode_batch(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    write_batch(&mut out, batch, batch.records.len(), |body| {
        for r in &batch.records {
            put_record(
                body,
                r.timestamp_ms.wrapping_sub(batch.base_timestamp),
                r.offset_delta,
                r.key.as_deref(),
                r.value.as_deref(),
                r.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
            );
        }
    });
    out
}

/// Appends a batch to `out`: the header fields of `header` (its `records`
/// are not read), `count`, then what `records` writes; then the length and
/// the CRC are filled in. Lets a caller write records straight from its own
/// type, without a `KafkaRecord` copy of each.
pub fn write_batch(
    out: &mut Vec<u8>,
    header: &RecordBatch,
    count: usize,
    records: impl FnOnce(&mut Vec<u8>),
) {
    let start = out.len();
    out.extend_from_slice(&header.base_offset.to_be_bytes());
    out.extend_from_slice(&[0; 4]); // batchLength, below
    out.extend_from_slice(&header.partition_leader_epoch.to_be_bytes());
    out.push(MAGIC as u8);
    out.extend_from_slice(&[0; 4]); // the CRC, below
    let crc_from = out.len();
    out.extend_from_slice(&(header.attributes & TIMESTAMP_LOG_APPEND).to_be_bytes());
    out.extend_from_slice(&header.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&header.base_timestamp.to_be_bytes());
    out.extend_from_slice(&header.max_timestamp.to_be_bytes());
    out.extend_from_slice(&header.producer_id.to_be_bytes());
    out.extend_from_slice(&header.producer_epoch.to_be_bytes());
    out.extend_from_slice(&header.base_sequence.to_be_bytes());
    out.extend_from_slice(&(count as i32).to_be_bytes());
    records(out);
    let batch_length = (out.len() - start - LOG_OVERHEAD) as i32;
    out[start + 8..start + 12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&out[crc_from..]);
    out[crc_from - 4..crc_from].copy_from_slice(&crc.to_be_bytes());
}

fn nullable_len(b: Option<&[u8]>) -> usize {
    match b {
        None => varint_len(-1),
        Some(b) => varint_len(b.len() as i64) + b.len(),
    }
}

fn varint_len(v: i64) -> usize {
    crate::codec::uvarint_len(crate::codec::zigzag(v))
}

/// One record, length-prefixed, written in place (its size is computed
/// first, so no buffer per record).
pub fn put_record<'a>(
    out: &mut Vec<u8>,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + Clone,
) {
    let (count, header_bytes) = headers.clone().fold((0usize, 0usize), |(n, b), (k, v)| {
        (
            n + 1,
            b + nullable_len(Some(k.as_bytes())) + nullable_len(v),
        )
    });
    let len = 1
        + varint_len(timestamp_delta)
        + varint_len(i64::from(offset_delta))
        + nullable_len(key)
        + nullable_len(value)
        + varint_len(count as i64)
        + header_bytes;
    out.reserve(len + 5);
    put_varint(out, len as i64);
    out.push(0); // attributes
    put_varint(out, timestamp_delta);
    put_varint(out, i64::from(offset_delta));
    put_nullable(out, key);
    put_nullable(out, value);
    put_varint(out, count as i64);
    for (k, v) in headers {
        put_nullable(out, Some(k.as_bytes()));
        put_nullable(out, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_records: 1000,
        max_batch_bytes: 1 << 20,
    };

    fn sample() -> RecordBatch {
        RecordBatch {
            base_offset: 0,
            partition_leader_epoch: -1,
            attributes: 0,
            last_offset_delta: 3,
            base_timestamp: 1_764_806_400_000,
            max_timestamp: 1_764_806_400_007,
            producer_id: 42,
            producer_epoch: 1,
            base_sequence: 7,
            records: vec![
                KafkaRecord {
                    timestamp_ms: 1_764_806_400_000,
                    offset_delta: 0,
                    key: None,
                    value: Some(br#"{"title":"Up"}"#.to_vec()),
                    headers: vec![],
                },
                KafkaRecord {
                    timestamp_ms: 1_764_806_400_003,
                    offset_delta: 1,
                    key: Some(vec![]),
                    value: None,
                    headers: vec![
                        ("trace".into(), Some(b"a".to_vec())),
                        ("trace".into(), None),
                        ("trace".into(), Some(vec![])),
                    ],
                },
                KafkaRecord {
                    timestamp_ms: 1_764_806_400_001,
                    offset_delta: 2,
                    key: Some(b"k".to_vec()),
                    value: Some(vec![]),
                    headers: vec![("é".into(), Some(vec![0, 255]))],
                },
                KafkaRecord {
                    timestamp_ms: 1_764_806_400_007,
                    offset_delta: 3,
                    key: Some(b"k".to_vec()),
                    value: Some(b"v".to_vec()),
                    headers: vec![],
                },
            ],
        }
    }

    #[test]
    fn nulls_empties_and_duplicate_headers_round_trip() {
        let b = sample();
        let bytes = encode_batch(&b);
        assert_eq!(decode_batches(&bytes, LIMITS).unwrap(), vec![b.clone()]);
        // Two batches back to back.
        let two = [bytes.clone(), bytes].concat();
        assert_eq!(decode_batches(&two, LIMITS).unwrap().len(), 2);
    }

    /// The layout written out by hand from Kafka's protocol guide, not by
    /// the encoder: one record, key "k", value "v", header ("h", null).
    #[test]
    fn a_batch_laid_out_by_hand_decodes() {
        let mut rec = vec![
            0x00, // attributes
            0x04, // timestampDelta 2 (zigzag)
            0x00, // offsetDelta 0
            0x02, b'k', // key length 1
            0x02, b'v', // value length 1
            0x02, // 1 header
            0x02, b'h', // header key "h"
            0x01, // header value length -1: null
        ];
        let mut records = vec![rec.len() as u8 * 2]; // length, zigzag
        records.append(&mut rec);
        let mut after_crc = Vec::new();
        after_crc.extend_from_slice(&0i16.to_be_bytes()); // attributes
        after_crc.extend_from_slice(&0i32.to_be_bytes()); // lastOffsetDelta
        after_crc.extend_from_slice(&1000i64.to_be_bytes()); // baseTimestamp
        after_crc.extend_from_slice(&1002i64.to_be_bytes()); // maxTimestamp
        after_crc.extend_from_slice(&(-1i64).to_be_bytes()); // producerId
        after_crc.extend_from_slice(&(-1i16).to_be_bytes()); // producerEpoch
        after_crc.extend_from_slice(&(-1i32).to_be_bytes()); // baseSequence
        after_crc.extend_from_slice(&1i32.to_be_bytes()); // records
        after_crc.extend_from_slice(&records);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&5i64.to_be_bytes()); // baseOffset
        let batch_length = 4 + 1 + 4 + after_crc.len();
        bytes.extend_from_slice(&(batch_length as i32).to_be_bytes());
        bytes.extend_from_slice(&0i32.to_be_bytes()); // partitionLeaderEpoch
        bytes.push(2); // magic
        bytes.extend_from_slice(&crc32c::crc32c(&after_crc).to_be_bytes());
        bytes.extend_from_slice(&after_crc);
        let got = decode_batches(&bytes, LIMITS).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].base_offset, got[0].producer_id), (5, -1));
        assert_eq!(
            got[0].records,
            vec![KafkaRecord {
                timestamp_ms: 1002,
                offset_delta: 0,
                key: Some(b"k".to_vec()),
                value: Some(b"v".to_vec()),
                headers: vec![("h".into(), None)],
            }]
        );
        // The encoder writes the same bytes for it.
        assert_eq!(encode_batch(&got[0]), bytes);
    }

    #[test]
    fn flipped_bits_and_cuts_are_corrupt_and_never_panic() {
        let bytes = encode_batch(&sample());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            // Either refused, or (a bit in baseOffset, batchLength's
            // high bits cut elsewhere, the leader epoch) read differently.
            if let Ok(b) = decode_batches(&bad, LIMITS) {
                assert!(i < 16, "byte {i} flipped and accepted");
                assert_eq!(b[0].records, sample().records);
            }
        }
        for cut in 0..bytes.len() {
            assert!(decode_batches(&bytes[..cut], LIMITS).is_err() || cut == 0);
        }
    }

    #[test]
    fn what_is_not_taken_says_why() {
        let mut b = sample();
        let limited = decode_batches(
            &encode_batch(&b),
            Limits {
                max_records: 3,
                ..LIMITS
            },
        );
        assert!(matches!(limited, Err(BatchError::TooLarge(_))));
        // No such codec, transactional, control and old-magic batches.
        for (attributes, code) in [(5i16, 76i16), (7, 76), (0x10, 48), (0x20, 48)] {
            let mut bytes = encode_batch(&b);
            bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
            let crc = crc32c::crc32c(&bytes[21..]);
            bytes[17..21].copy_from_slice(&crc.to_be_bytes());
            let e = decode_batches(&bytes, LIMITS).unwrap_err();
            assert_eq!(e.kafka_code(), code, "{e}");
        }
        let mut old = encode_batch(&b);
        old[16] = 1;
        assert_eq!(
            decode_batches(&old, LIMITS),
            Err(BatchError::UnsupportedMagic(1))
        );
        // A record count far past the limit is refused before allocating.
        b.records.truncate(1);
        b.last_offset_delta = 0;
        let mut bytes = encode_batch(&b);
        let count_at = BATCH_HEADER_LEN - 4;
        bytes[count_at..count_at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            decode_batches(&bytes, LIMITS),
            Err(BatchError::TooLarge(_))
        ));
    }

    /// `batch` encoded with its records compressed by `codec` (id).
    fn compressed(batch: &RecordBatch, codec: i16, pack: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
        let plain = encode_batch(batch);
        let mut out = plain[..BATCH_HEADER_LEN].to_vec();
        out.extend(pack(&plain[BATCH_HEADER_LEN..]));
        let batch_length = (out.len() - LOG_OVERHEAD) as i32;
        out[8..12].copy_from_slice(&batch_length.to_be_bytes());
        out[21..23].copy_from_slice(&codec.to_be_bytes());
        let crc = crc32c::crc32c(&out[21..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out
    }

    #[test]
    fn compressed_batches_decode_to_the_same_records_within_the_bound() {
        use std::io::Write;
        let gzip = |b: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(b).expect("gzip");
            e.finish().expect("gzip")
        };
        let lz4 = |b: &[u8]| {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(b).expect("lz4");
            e.finish().expect("lz4")
        };
        let zstd = |b: &[u8]| {
            ruzstd::encoding::compress_to_vec(b, ruzstd::encoding::CompressionLevel::Fastest)
        };
        let snappy = |b: &[u8]| snap::raw::Encoder::new().compress_vec(b).expect("snappy");
        let b = sample();
        type Pack<'a> = &'a dyn Fn(&[u8]) -> Vec<u8>;
        let packs: [(i16, Pack<'_>); 4] = [(1, &gzip), (2, &snappy), (3, &lz4), (4, &zstd)];
        for (codec, pack) in packs {
            let bytes = compressed(&b, codec, pack);
            let got = decode_batches(&bytes, LIMITS).unwrap_or_else(|e| panic!("{codec}: {e}"));
            assert_eq!(got[0].records, b.records, "codec {codec}");
            // Records that inflate past the bound: MESSAGE_TOO_LARGE.
            let tight = Limits {
                max_batch_bytes: 10,
                ..LIMITS
            };
            let e = decode_batches(&bytes, tight).unwrap_err();
            assert_eq!(e.kafka_code(), 10, "codec {codec}: {e}");
        }
        // Garbage where the compressed records should be: CORRUPT_MESSAGE.
        let bytes = compressed(&b, 4, |_| b"not zstd at all".to_vec());
        assert_eq!(decode_batches(&bytes, LIMITS).unwrap_err().kafka_code(), 2);
    }
}
