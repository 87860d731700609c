//! Bit-packed columns of small integers inside a block payload.

use crate::codec::{put_uvarint, uvarint_len, Cursor, DecodeError, DecodeResult};

/// A column of small unsigned integers (lengths, counts) stored as
/// frame-of-reference plus bit-packing: the column's minimum as a varint, a
/// bit width `w` (u8, 0..=32), then each `value - min` in `w` bits, packed
/// LSB-first into `ceil(n * w / 8)` bytes. Lengths of similar records need
/// only a few bits each, where varints would take a byte that LZ4 cannot
/// compress away.
#[derive(Default, Clone, Debug)]
pub(crate) struct PackedColumn {
    values: Vec<u32>,
    min: u32,
    max: u32,
}

fn bit_width(x: u32) -> usize {
    (32 - x.leading_zeros()) as usize
}

impl PackedColumn {
    pub(crate) fn push(&mut self, v: u32) {
        if self.values.is_empty() {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.values.push(v);
    }

    pub(crate) fn clear(&mut self) {
        self.values.clear();
    }

    fn len_for(n: usize, min: u32, max: u32) -> usize {
        uvarint_len(u64::from(min)) + 1 + (n * bit_width(max - min)).div_ceil(8)
    }

    /// Encoded size in bytes.
    pub(crate) fn encoded_len(&self) -> usize {
        Self::len_for(self.values.len(), self.min, self.max)
    }

    /// Encoded size if `v` were pushed.
    pub(crate) fn encoded_len_with(&self, v: u32) -> usize {
        if self.values.is_empty() {
            return Self::len_for(1, v, v);
        }
        Self::len_for(self.values.len() + 1, self.min.min(v), self.max.max(v))
    }

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        put_uvarint(out, u64::from(self.min));
        let w = bit_width(self.max - self.min);
        out.push(w as u8);
        if w == 0 {
            return;
        }
        let (mut acc, mut bits) = (0u64, 0usize);
        for &v in &self.values {
            acc |= u64::from(v - self.min) << bits;
            bits += w;
            while bits >= 8 {
                out.push(acc as u8);
                acc >>= 8;
                bits -= 8;
            }
        }
        if bits > 0 {
            out.push(acc as u8);
        }
    }
}

/// Reads a [`PackedColumn`] of `n` values.
pub(crate) fn read_packed(c: &mut Cursor<'_>, n: usize, what: &str) -> DecodeResult<Vec<u32>> {
    let min = u32::try_from(c.uvarint(what)?)
        .map_err(|_| DecodeError::new(format!("{what}: minimum exceeds 32 bits")))?;
    let w = usize::from(c.u8(what)?);
    if w > 32 {
        return Err(DecodeError::new(format!(
            "{what}: bit width {w} exceeds 32"
        )));
    }
    let packed = c.bytes((n * w).div_ceil(8), what)?;
    let mask = if w == 32 {
        u64::from(u32::MAX)
    } else {
        (1u64 << w) - 1
    };
    let mut out = Vec::with_capacity(n);
    let (mut acc, mut bits, mut next) = (0u64, 0usize, 0usize);
    for _ in 0..n {
        while bits < w {
            acc |= u64::from(packed[next]) << bits;
            next += 1;
            bits += 8;
        }
        let delta = (acc & mask) as u32;
        acc >>= w;
        bits -= w;
        out.push(
            min.checked_add(delta)
                .ok_or_else(|| DecodeError::new(format!("{what}: value overflows 32 bits")))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_columns_round_trip() {
        let cases: Vec<Vec<u32>> = vec![
            vec![0],
            vec![7, 7, 7, 7],
            vec![33, 45, 38, 40, 41, 33],
            vec![0, u32::MAX, 5],
            (0..1000).map(|i| (i * 7919) % 1024).collect(),
        ];
        for values in cases {
            let mut col = PackedColumn::default();
            for (i, &v) in values.iter().enumerate() {
                if i > 0 {
                    let predicted = col.encoded_len_with(v);
                    col.push(v);
                    assert_eq!(col.encoded_len(), predicted);
                } else {
                    col.push(v);
                }
            }
            let mut buf = Vec::new();
            col.encode_into(&mut buf);
            assert_eq!(buf.len(), col.encoded_len());
            let mut c = Cursor::new(&buf, 0);
            assert_eq!(read_packed(&mut c, values.len(), "col").unwrap(), values);
            assert_eq!(c.remaining(), 0);
        }
        // A width over 32 and a truncated body are errors.
        assert!(read_packed(&mut Cursor::new(&[0, 33, 0, 0, 0, 0, 0], 0), 1, "c").is_err());
        assert!(read_packed(&mut Cursor::new(&[0, 8], 0), 1, "c").is_err());
    }
}
