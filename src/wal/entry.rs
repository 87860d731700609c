//! The WAL entry codec (format in the module doc of `wal`).

use crate::codec::{
    le_i64, le_u32, put_header, put_uvarint, Cursor, DecodeError, DecodeResult, Lengths,
};
use crate::producer::ProducerBatch;
use crate::record::{Header, Record};

pub(super) const ENTRY_HEADER_LEN: usize = 8;
const KIND_RECORDS: u8 = 1;
const KIND_SKIP: u8 = 2;
/// Records of an idempotent producer's batch: the records kind plus the
/// producer id, epoch and first sequence number.
const KIND_PRODUCER_RECORDS: u8 = 3;
/// Added to a records kind: value lengths are nullable ([`Lengths`]).
const KIND_NULLABLE: u8 = 0x10;
/// Bounds a corrupt length field: no entry is larger than this.
pub(super) const MAX_ENTRY_LEN: u32 = 1 << 30;

/// Encodes one WAL entry for `records` (whose offsets start at `base_offset`
/// and are contiguous) onto the end of `out`; with `producer`, the entry
/// carries the idempotent batch's identity and when it was written (server
/// clock, ms), so recovery rebuilds the partition's producer table together
/// with its records.
pub fn encode_entry(
    out: &mut Vec<u8>,
    base_offset: i64,
    records: &[Record],
    producer: Option<(&ProducerBatch, i64)>,
) {
    let start = out.len();
    out.extend_from_slice(&[0u8; ENTRY_HEADER_LEN]);
    let lengths = Lengths::for_records(records);
    let kind = if producer.is_some() {
        KIND_PRODUCER_RECORDS
    } else {
        KIND_RECORDS
    };
    out.push(match lengths {
        Lengths::Plain => kind,
        Lengths::Nullable => kind | KIND_NULLABLE,
    });
    out.extend_from_slice(&base_offset.to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    if let Some((p, written_ms)) = producer {
        out.extend_from_slice(&p.producer_id.to_le_bytes());
        out.extend_from_slice(&p.epoch.to_le_bytes());
        out.extend_from_slice(&p.first_sequence.to_le_bytes());
        out.extend_from_slice(&written_ms.to_le_bytes());
    }
    for r in records {
        out.extend_from_slice(&r.timestamp_ms.to_le_bytes());
        match &r.key {
            None => out.push(0),
            Some(k) => {
                put_uvarint(out, k.len() as u64 + 1);
                out.extend_from_slice(k);
            }
        }
        put_uvarint(out, lengths.field(r.value.as_deref()));
        out.extend_from_slice(r.value_bytes());
        put_uvarint(out, r.headers.len() as u64);
        for h in &r.headers {
            put_header(out, h, lengths);
        }
    }
    seal_entry(out, start);
}

/// Encodes a skip entry: offsets continue at `next_offset`. Written once, by
/// an operator's repair, so that offsets lost to damage are never reused.
pub fn encode_skip_entry(out: &mut Vec<u8>, next_offset: i64) {
    let start = out.len();
    out.extend_from_slice(&[0u8; ENTRY_HEADER_LEN]);
    out.push(KIND_SKIP);
    out.extend_from_slice(&next_offset.to_le_bytes());
    seal_entry(out, start);
}

/// Fills in the length and CRC of the entry that starts at `start`.
/// Appends `payload` as one entry with a valid length and checksum, so the
/// fuzz targets reach the payload parser.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn seal_payload_for_fuzzing(out: &mut Vec<u8>, payload: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0u8; ENTRY_HEADER_LEN]);
    out.extend_from_slice(payload);
    seal_entry(out, start);
}

fn seal_entry(out: &mut [u8], start: usize) {
    let len = (out.len() - start - ENTRY_HEADER_LEN) as u32;
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&len.to_le_bytes()),
        &out[start + ENTRY_HEADER_LEN..],
    );
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// One decoded entry.
#[derive(Debug)]
pub(super) enum Entry {
    /// Records with their offsets (contiguous, never empty), and the
    /// idempotent batch they were (with its write time), if they were one.
    Records(Vec<Record>, Option<(ProducerBatch, i64)>),
    /// Offsets continue at this one.
    Skip(i64),
}

/// One entry's frame at the start of `rest`: its payload, or why it is not
/// a whole, intact entry.
pub(super) enum Frame<'a> {
    Whole {
        payload: &'a [u8],
        len: usize,
    },
    /// Runs past the end of the file: a torn write.
    Torn(&'static str),
    /// Fails its checksum.
    BadChecksum,
}

pub(super) fn frame(rest: &[u8]) -> Frame<'_> {
    if rest.len() < ENTRY_HEADER_LEN {
        return Frame::Torn("torn entry header");
    }
    let crc = le_u32(&rest[0..4]);
    let len = le_u32(&rest[4..8]);
    if len > MAX_ENTRY_LEN || (len as usize) > rest.len() - ENTRY_HEADER_LEN {
        return Frame::Torn("entry runs past the end of the file (torn write)");
    }
    let payload = &rest[ENTRY_HEADER_LEN..ENTRY_HEADER_LEN + len as usize];
    if crc32c::crc32c_append(crc32c::crc32c(&rest[4..8]), payload) != crc {
        return Frame::BadChecksum;
    }
    Frame::Whole {
        payload,
        len: ENTRY_HEADER_LEN + len as usize,
    }
}

/// Whether a whole, intact entry of a plausible kind starts at `rest`, for
/// an entry that would continue offsets at or after `min_offset` (a valid
/// entry after a bad one means damage, not a torn tail). The cheap checks
/// come first, so scanning garbage stays fast.
pub(super) fn plausible_entry_at(rest: &[u8], min_offset: i64) -> bool {
    if rest.len() < ENTRY_HEADER_LEN + 9 {
        return false;
    }
    let payload = &rest[ENTRY_HEADER_LEN..];
    let kind = payload[0];
    let offset = le_i64(&payload[1..9]);
    let fits = (le_u32(&rest[4..8]) as usize) <= payload.len();
    let records = kind & !KIND_NULLABLE;
    fits && (kind == KIND_SKIP || matches!(records, KIND_RECORDS | KIND_PRODUCER_RECORDS))
        && offset >= min_offset
        && matches!(frame(rest), Frame::Whole { .. })
}

/// Decodes one entry payload.
pub(super) fn decode_payload(payload: &[u8]) -> DecodeResult<Entry> {
    let mut c = Cursor::new(payload, 0);
    match c.u8("entry kind")? {
        KIND_RECORDS => decode_records(payload, c, false, Lengths::Plain),
        KIND_PRODUCER_RECORDS => decode_records(payload, c, true, Lengths::Plain),
        k if k == KIND_RECORDS | KIND_NULLABLE => {
            decode_records(payload, c, false, Lengths::Nullable)
        }
        k if k == KIND_PRODUCER_RECORDS | KIND_NULLABLE => {
            decode_records(payload, c, true, Lengths::Nullable)
        }
        KIND_SKIP => {
            let next = c.i64_le("next offset")?;
            if c.remaining() != 0 || next < 0 {
                return Err(DecodeError::new("malformed skip entry"));
            }
            Ok(Entry::Skip(next))
        }
        kind => Err(DecodeError::new(format!("unknown entry kind {kind}"))),
    }
}

fn decode_records(
    payload: &[u8],
    mut c: Cursor<'_>,
    idempotent: bool,
    lengths: Lengths,
) -> DecodeResult<Entry> {
    let base = c.i64_le("base offset")?;
    let count = c.u32_le("record count")? as usize;
    if count == 0 || count > payload.len() || base < 0 {
        return Err(DecodeError::new("record count or base offset out of range"));
    }
    let producer = if idempotent {
        let p = ProducerBatch {
            producer_id: c.u64_le("producer id")?,
            epoch: c.u32_le("producer epoch")?,
            first_sequence: c.i64_le("first sequence")?,
        };
        let written_ms = c.i64_le("write time")?;
        if p.producer_id == 0 || p.first_sequence < 0 {
            return Err(DecodeError::new("producer id or sequence out of range"));
        }
        Some((p, written_ms))
    } else {
        None
    };
    let mut records = Vec::with_capacity(count);
    for i in 0..count {
        let timestamp_ms = c.i64_le("timestamp")?;
        let key = match c.uvarint("key code")? {
            0 => None,
            code => {
                let len = usize::try_from(code - 1).map_err(|_| DecodeError::new("key length"))?;
                Some(c.bytes(len, "key")?.to_vec())
            }
        };
        let value = c.value(lengths, "value")?.map(|v| payload[v].to_vec());
        let hcount = c.len("header count")?;
        let mut headers = Vec::with_capacity(hcount);
        for _ in 0..hcount {
            let (k, v) = c.header(lengths)?;
            headers.push(Header {
                // Checked to be UTF-8 by `header()`.
                key: String::from_utf8_lossy(&payload[k]).into_owned(),
                value: v.map(|v| payload[v].to_vec()),
            });
        }
        records.push(Record {
            offset: base + i as i64,
            timestamp_ms,
            key,
            value,
            headers,
        });
    }
    if c.remaining() != 0 {
        return Err(DecodeError::new("trailing bytes after the last record"));
    }
    Ok(Entry::Records(records, producer))
}
