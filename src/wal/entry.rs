//! The WAL entry codec (format in the module doc of `wal`).

use crate::codec::{le_u32, put_header, put_uvarint, Cursor, DecodeError, DecodeResult};
use crate::record::{Header, Record};

pub(super) const ENTRY_HEADER_LEN: usize = 8;
const KIND_RECORDS: u8 = 1;
/// Bounds a corrupt length field: no entry is larger than this.
pub(super) const MAX_ENTRY_LEN: u32 = 1 << 30;

/// Encodes one WAL entry for `records` (whose offsets start at `base_offset`
/// and are contiguous) onto the end of `out`.
pub fn encode_entry(out: &mut Vec<u8>, base_offset: i64, records: &[Record]) {
    let start = out.len();
    out.extend_from_slice(&[0u8; ENTRY_HEADER_LEN]);
    out.push(KIND_RECORDS);
    out.extend_from_slice(&base_offset.to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        out.extend_from_slice(&r.timestamp_ms.to_le_bytes());
        match &r.key {
            None => out.push(0),
            Some(k) => {
                put_uvarint(out, k.len() as u64 + 1);
                out.extend_from_slice(k);
            }
        }
        put_uvarint(out, r.value.len() as u64);
        out.extend_from_slice(&r.value);
        put_uvarint(out, r.headers.len() as u64);
        for h in &r.headers {
            put_header(out, h);
        }
    }
    let len = (out.len() - start - ENTRY_HEADER_LEN) as u32;
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&len.to_le_bytes()),
        &out[start + ENTRY_HEADER_LEN..],
    );
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
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

/// Decodes one entry payload into records with their offsets.
pub(super) fn decode_payload(payload: &[u8]) -> DecodeResult<Vec<Record>> {
    let mut c = Cursor::new(payload, 0);
    let kind = c.u8("entry kind")?;
    if kind != KIND_RECORDS {
        return Err(DecodeError::new(format!("unknown entry kind {kind}")));
    }
    let base = c.i64_le("base offset")?;
    let count = c.u32_le("record count")? as usize;
    if count > payload.len() || base < 0 {
        return Err(DecodeError::new("record count or base offset out of range"));
    }
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
        let vlen = c.len("value length")?;
        let value = c.bytes(vlen, "value")?.to_vec();
        let hcount = c.len("header count")?;
        let mut headers = Vec::with_capacity(hcount);
        for _ in 0..hcount {
            let (k, v) = c.header()?;
            headers.push(Header {
                // Checked to be UTF-8 by `header()`.
                key: String::from_utf8_lossy(&payload[k]).into_owned(),
                value: payload[v].to_vec(),
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
    Ok(records)
}
