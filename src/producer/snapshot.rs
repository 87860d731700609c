//! The byte format of a partition's [`ProducerTable`]: committed in the
//! partition's metadata row with every segment, and put beside the segment
//! in the bucket (`{segment}.producers`) so a node rebuilt from the bucket
//! keeps it. Layout in docs/FORMAT.md ("Producer state").

use super::{ProducerEntry, ProducerTable, WrittenBatch, KEPT_BATCHES};
use crate::codec::{Cursor, DecodeError, DecodeResult};
use std::collections::VecDeque;

const MAGIC: &[u8; 4] = b"SHPS";
const VERSION: u8 = 1;
const CRC_LEN: usize = 4;

/// Encodes `table` as the state of a partition through `next_offset`
/// (one past the last offset it covers).
pub fn encode(table: &ProducerTable, next_offset: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + table.len() * (21 + KEPT_BATCHES * 20) + CRC_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&next_offset.to_le_bytes());
    out.extend_from_slice(&(table.len() as u32).to_le_bytes());
    for (id, e) in &table.entries {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&e.epoch.to_le_bytes());
        out.extend_from_slice(&e.last_write_ms.to_le_bytes());
        out.push(e.batches.len() as u8);
        for b in &e.batches {
            out.extend_from_slice(&b.first_sequence.to_le_bytes());
            out.extend_from_slice(&b.count.to_le_bytes());
            out.extend_from_slice(&b.base_offset.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes what [`encode`] wrote: the table and its `next_offset`.
/// Everything is checked (magic, version, CRC, counts, order); a failure
/// names what.
pub fn decode(bytes: &[u8]) -> DecodeResult<(ProducerTable, i64)> {
    if bytes.len() < MAGIC.len() + 1 + 8 + 4 + CRC_LEN {
        return Err(DecodeError::new("producer state: too short"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err(DecodeError::new("producer state: CRC mismatch"));
    }
    let mut c = Cursor::new(body, 0);
    if c.bytes(4, "magic")? != MAGIC {
        return Err(DecodeError::new("producer state: bad magic"));
    }
    let version = c.u8("version")?;
    if version != VERSION {
        return Err(DecodeError::new(format!(
            "producer state: unsupported version {version}"
        )));
    }
    let next_offset = c.i64_le("next offset")?;
    let count = c.u32_le("producer count")? as usize;
    let mut table = ProducerTable::default();
    let mut previous = 0u64;
    for _ in 0..count {
        let id = c.u64_le("producer id")?;
        if id <= previous {
            return Err(DecodeError::new(
                "producer state: ids not in increasing order (or 0)",
            ));
        }
        previous = id;
        table.insert(id, decode_entry(&mut c)?);
    }
    if c.remaining() != 0 {
        return Err(DecodeError::new("producer state: trailing bytes"));
    }
    Ok((table, next_offset))
}

fn decode_entry(c: &mut Cursor<'_>) -> DecodeResult<ProducerEntry> {
    let epoch = c.u32_le("epoch")?;
    let last_write_ms = c.i64_le("last write")?;
    let n = c.u8("batch count")? as usize;
    if n == 0 || n > KEPT_BATCHES {
        return Err(DecodeError::new(format!(
            "producer state: {n} batches (1..={KEPT_BATCHES} allowed)"
        )));
    }
    let mut batches = VecDeque::with_capacity(n);
    for _ in 0..n {
        let b = WrittenBatch {
            first_sequence: c.i64_le("first sequence")?,
            count: c.u32_le("batch count")?,
            base_offset: c.i64_le("base offset")?,
        };
        if b.first_sequence < 0 || b.count == 0 || b.base_offset < 0 {
            return Err(DecodeError::new("producer state: a batch out of range"));
        }
        batches.push_back(b);
    }
    Ok(ProducerEntry {
        epoch,
        last_write_ms,
        batches,
    })
}
