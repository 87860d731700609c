//! The byte-level building blocks shared by the segment format and the WAL:
//! little-endian integers, LEB128 varints (zigzag for signed values), a
//! bounds-checked cursor, and the encoding of one record header.
//!
//! Decoders return [`DecodeError`] with what was being read; the caller
//! adds where (a segment block, a WAL entry).

use crate::record::{Header, Record};
use std::fmt;
use std::ops::Range;

/// Why bytes did not decode: names the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl DecodeError {
    pub fn new(reason: impl Into<String>) -> Self {
        DecodeError(reason.into())
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub type DecodeResult<T> = Result<T, DecodeError>;

// The slices below always have the exact width (callers index fixed ranges
// of buffers whose length they checked), so the conversions cannot fail.
pub fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}
pub fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
pub fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}
pub fn le_i64(b: &[u8]) -> i64 {
    le_u64(b) as i64
}

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` zigzag-encoded as a varint (small magnitudes of either sign
/// take one byte).
pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag(v));
}

/// Maps signed to unsigned so that small magnitudes stay small.
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Number of bytes `put_uvarint(v)` writes.
pub fn uvarint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// How the lengths of values (record values and header values) are
/// written. `Plain`, the original encoding, has no null; `Nullable` writes
/// `0` for a null value and `n + 1` for `n` bytes, as keys always have.
/// Writers use `Nullable` only for data that holds a null, so data without
/// nulls keeps its original bytes (and older readers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lengths {
    #[default]
    Plain,
    Nullable,
}

impl Lengths {
    /// `Nullable` when any of `records` has a null value or header value.
    pub fn for_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> Lengths {
        if records.into_iter().any(Record::has_null) {
            Lengths::Nullable
        } else {
            Lengths::Plain
        }
    }

    /// The length field of `value`. (`Plain` is never chosen for data with
    /// a null; a null there would read back as empty.)
    pub fn field(self, value: Option<&[u8]>) -> u64 {
        match (self, value) {
            (Lengths::Plain, v) => v.map_or(0, <[u8]>::len) as u64,
            (Lengths::Nullable, None) => 0,
            (Lengths::Nullable, Some(v)) => v.len() as u64 + 1,
        }
    }

    /// A length field read back: the value's byte count, or `None` (null).
    pub fn decode(self, field: u64) -> Option<u64> {
        match self {
            Lengths::Plain => Some(field),
            Lengths::Nullable => field.checked_sub(1),
        }
    }
}

/// One header: `uvarint key length, key (UTF-8), uvarint value length
/// field ([`Lengths`]), value`. The WAL and segment blocks both store
/// headers this way.
pub fn put_header(out: &mut Vec<u8>, h: &Header, lengths: Lengths) {
    put_uvarint(out, h.key.len() as u64);
    out.extend_from_slice(h.key.as_bytes());
    put_uvarint(out, lengths.field(h.value.as_deref()));
    out.extend_from_slice(h.value_bytes());
}

/// Bytes [`put_header`] writes for `h`.
pub fn header_encoded_len(h: &Header, lengths: Lengths) -> usize {
    uvarint_len(h.key.len() as u64)
        + h.key.len()
        + uvarint_len(lengths.field(h.value.as_deref()))
        + h.value_bytes().len()
}

/// A bounds-checked reader over a byte buffer.
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8], pos: usize) -> Self {
        Cursor { buf, pos }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn uvarint(&mut self, what: &str) -> DecodeResult<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(DecodeError::new(format!(
                    "{what}: varint runs past the end"
                )));
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(DecodeError::new(format!(
                    "{what}: varint overflows 64 bits"
                )));
            }
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::new(format!(
            "{what}: varint longer than 10 bytes"
        )))
    }

    pub fn varint(&mut self, what: &str) -> DecodeResult<i64> {
        let u = self.uvarint(what)?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// A length that must fit in the rest of the buffer.
    pub fn len(&mut self, what: &str) -> DecodeResult<usize> {
        let v = self.uvarint(what)?;
        let rest = self.remaining() as u64;
        if v > rest {
            return Err(DecodeError::new(format!(
                "{what} {v} exceeds the {rest} bytes left"
            )));
        }
        Ok(v as usize)
    }

    /// Skips `n` bytes, returning the range they occupy.
    pub fn skip(&mut self, n: usize, what: &str) -> DecodeResult<Range<usize>> {
        let start = self.pos;
        let end = start
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| DecodeError::new(format!("{what} runs past the end")))?;
        self.pos = end;
        Ok(start..end)
    }

    /// `n` bytes as a slice.
    pub fn bytes(&mut self, n: usize, what: &str) -> DecodeResult<&'a [u8]> {
        let r = self.skip(n, what)?;
        Ok(&self.buf[r])
    }

    pub fn u8(&mut self, what: &str) -> DecodeResult<u8> {
        Ok(self.bytes(1, what)?[0])
    }

    pub fn u32_le(&mut self, what: &str) -> DecodeResult<u32> {
        Ok(le_u32(self.bytes(4, what)?))
    }

    pub fn u64_le(&mut self, what: &str) -> DecodeResult<u64> {
        Ok(le_u64(self.bytes(8, what)?))
    }

    pub fn i64_le(&mut self, what: &str) -> DecodeResult<i64> {
        Ok(le_i64(self.bytes(8, what)?))
    }

    /// One header written by [`put_header`]: the byte ranges of its key
    /// (checked to be UTF-8) and value (`None`: null).
    pub fn header(
        &mut self,
        lengths: Lengths,
    ) -> DecodeResult<(Range<usize>, Option<Range<usize>>)> {
        let kl = self.len("header key length")?;
        let key = self.skip(kl, "header key")?;
        if std::str::from_utf8(&self.buf[key.clone()]).is_err() {
            return Err(DecodeError::new("header key is not UTF-8"));
        }
        let value = self.value(lengths, "header value")?;
        Ok((key, value))
    }

    /// A value written with a [`Lengths`] field: its byte range, or `None`
    /// for a null.
    pub fn value(&mut self, lengths: Lengths, what: &str) -> DecodeResult<Option<Range<usize>>> {
        let field = self.uvarint(what)?;
        match lengths.decode(field) {
            None => Ok(None),
            Some(n) => {
                let n = usize::try_from(n)
                    .map_err(|_| DecodeError::new(format!("{what} length {n}")))?;
                self.skip(n, what).map(Some)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges() {
        let values = [0u64, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX];
        for &v in &values {
            let mut buf = Vec::new();
            put_uvarint(&mut buf, v);
            assert_eq!(buf.len(), uvarint_len(v), "length of {v}");
            let mut c = Cursor::new(&buf, 0);
            assert_eq!(c.uvarint("v").unwrap(), v);
            assert_eq!(c.remaining(), 0);
        }
        for &v in &[0i64, -1, 1, -64, 64, i64::MIN, i64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(Cursor::new(&buf, 0).varint("v").unwrap(), v);
        }
    }

    #[test]
    fn overlong_and_truncated_varints_are_errors() {
        let overlong = [0xffu8; 11];
        assert!(Cursor::new(&overlong, 0).uvarint("x").is_err());
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(Cursor::new(&overflow, 0).uvarint("x").is_err());
        let truncated = [0x80u8];
        assert!(Cursor::new(&truncated, 0).uvarint("x").is_err());
    }

    #[test]
    fn headers_round_trip_and_bad_ones_are_refused() {
        for lengths in [Lengths::Plain, Lengths::Nullable] {
            for value in [Some(vec![0, 1, 255]), Some(vec![]), None] {
                if lengths == Lengths::Plain && value.is_none() {
                    continue; // plain lengths are never written with a null
                }
                let h = Header {
                    key: "trace-ü".into(),
                    value,
                };
                let mut buf = Vec::new();
                put_header(&mut buf, &h, lengths);
                assert_eq!(buf.len(), header_encoded_len(&h, lengths));
                let mut c = Cursor::new(&buf, 0);
                let (k, v) = c.header(lengths).unwrap();
                assert_eq!(&buf[k], h.key.as_bytes());
                assert_eq!(v.map(|v| buf[v].to_vec()), h.value);
                assert_eq!(c.remaining(), 0);
            }
        }
        let not_utf8 = [2u8, 0xff, 0xfe, 0];
        assert!(Cursor::new(&not_utf8, 0).header(Lengths::Plain).is_err());
        let value_too_long = [0u8, 5, 1];
        assert!(Cursor::new(&value_too_long, 0)
            .header(Lengths::Plain)
            .is_err());
        // Nullable: 0 is null, 1 is empty; plain: 0 is empty.
        let (_, null) = Cursor::new(&[0, 0], 0).header(Lengths::Nullable).unwrap();
        assert_eq!(null, None);
        let (_, empty) = Cursor::new(&[0, 0], 0).header(Lengths::Plain).unwrap();
        assert_eq!(empty, Some(2..2));
    }
}
