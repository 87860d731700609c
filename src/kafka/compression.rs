//! The compressed records of a Kafka batch: gzip, snappy (the xerial
//! framing Java clients write, and a raw block), lz4 (frame format) and
//! zstd, each decoded by a pure-Rust crate and never past a bound: a small
//! batch that inflates to gigabytes (a decompression bomb) is refused when
//! its output reaches the bound, not after.

use std::io::Read;

/// Kafka's codec ids (bits 0-2 of a batch's attributes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Codec {
    pub fn from_id(id: i16) -> Option<Codec> {
        match id {
            1 => Some(Codec::Gzip),
            2 => Some(Codec::Snappy),
            3 => Some(Codec::Lz4),
            4 => Some(Codec::Zstd),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// Why compressed records did not decode.
#[derive(Debug, PartialEq, Eq)]
pub enum InflateError {
    /// The output would pass the bound.
    TooLarge,
    /// Not valid data for the codec (why).
    Corrupt(String),
}

/// The start of the xerial framing: magic, then version and compatible
/// version (both 1, big-endian).
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// `input` decompressed, at most `max` bytes.
pub fn decompress(codec: Codec, input: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    match codec {
        Codec::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(input), max),
        Codec::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(input), max),
        Codec::Zstd => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(input)
                .map_err(|e| InflateError::Corrupt(format!("zstd: {e}")))?;
            read_bounded(decoder, max)
        }
        Codec::Snappy if input.starts_with(XERIAL_MAGIC) => xerial(input, max),
        Codec::Snappy => snappy_block(input, max),
    }
}

/// Reads `r` to its end, refusing more than `max` bytes.
fn read_bounded(r: impl Read, max: usize) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    r.take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| InflateError::Corrupt(e.to_string()))?;
    if out.len() > max {
        return Err(InflateError::TooLarge);
    }
    Ok(out)
}

/// One raw snappy block; its header says its length, checked first.
fn snappy_block(input: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    let len = snap::raw::decompress_len(input)
        .map_err(|e| InflateError::Corrupt(format!("snappy: {e}")))?;
    if len > max {
        return Err(InflateError::TooLarge);
    }
    snap::raw::Decoder::new()
        .decompress_vec(input)
        .map_err(|e| InflateError::Corrupt(format!("snappy: {e}")))
}

/// The xerial framing: the 16-byte header, then blocks of a big-endian
/// length and a raw snappy block.
fn xerial(input: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    let corrupt = |why: &str| InflateError::Corrupt(format!("snappy (xerial): {why}"));
    let mut rest = input
        .get(XERIAL_HEADER_LEN..)
        .ok_or_else(|| corrupt("header cut short"))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len_bytes: [u8; 4] = rest
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("block length cut short"))?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let block = rest
            .get(4..4 + len)
            .ok_or_else(|| corrupt("block runs past the end"))?;
        out.extend(snappy_block(block, max - out.len())?);
        rest = &rest[4 + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn movies() -> Vec<u8> {
        // Real records, repetitive as JSON is.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/movies.jsonl");
        std::fs::read(path).expect("../shared/data/movies.jsonl")[..64 << 10].to_vec()
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).expect("gzip");
        e.finish().expect("gzip")
    }

    fn lz4(b: &[u8]) -> Vec<u8> {
        let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
        e.write_all(b).expect("lz4");
        e.finish().expect("lz4")
    }

    fn zstd(b: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(b, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn snappy_raw(b: &[u8]) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(b).expect("snappy")
    }

    /// The xerial framing Java clients write, blocks of `block` bytes.
    fn snappy_xerial(b: &[u8], block: usize) -> Vec<u8> {
        let mut out = XERIAL_MAGIC.to_vec();
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&1u32.to_be_bytes());
        for chunk in b.chunks(block) {
            let c = snappy_raw(chunk);
            out.extend_from_slice(&(c.len() as u32).to_be_bytes());
            out.extend_from_slice(&c);
        }
        out
    }

    #[test]
    fn every_codec_inflates_what_its_encoder_wrote() {
        let plain = movies();
        for (codec, packed) in [
            (Codec::Gzip, gzip(&plain)),
            (Codec::Lz4, lz4(&plain)),
            (Codec::Zstd, zstd(&plain)),
            (Codec::Snappy, snappy_raw(&plain)),
            (Codec::Snappy, snappy_xerial(&plain, 8 << 10)),
        ] {
            assert!(packed.len() < plain.len(), "{codec:?} compressed");
            assert_eq!(
                decompress(codec, &packed, 1 << 20).as_deref(),
                Ok(&plain[..]),
                "{codec:?}"
            );
            // One byte short of the output: refused, not truncated.
            assert_eq!(
                decompress(codec, &packed, plain.len() - 1),
                Err(InflateError::TooLarge),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn bombs_stop_at_the_bound_and_garbage_is_corrupt() {
        // 64 MiB of zeros is a few KB compressed.
        let zeros = vec![0u8; 64 << 20];
        for (codec, packed) in [
            (Codec::Gzip, gzip(&zeros)),
            (Codec::Lz4, lz4(&zeros)),
            (Codec::Snappy, snappy_raw(&zeros)),
        ] {
            assert!(packed.len() < 4 << 20, "{codec:?}: {} bytes", packed.len());
            assert_eq!(
                decompress(codec, &packed, 1 << 20),
                Err(InflateError::TooLarge),
                "{codec:?}"
            );
        }
        for codec in [Codec::Gzip, Codec::Lz4, Codec::Zstd, Codec::Snappy] {
            let e = decompress(codec, b"definitely not compressed data", 1 << 20);
            assert!(
                matches!(e, Err(InflateError::Corrupt(_))),
                "{codec:?}: {e:?}"
            );
        }
        let mut cut = snappy_xerial(&movies(), 4096);
        cut.truncate(cut.len() - 3);
        assert!(matches!(
            decompress(Codec::Snappy, &cut, 1 << 20),
            Err(InflateError::Corrupt(_))
        ));
    }
}
