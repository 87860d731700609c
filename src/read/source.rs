//! Reading a segment object by byte ranges: the read side's small trait
//! over wherever objects live, and the two reads a fetch makes, footer then
//! block, each one ranged GET driving the segment format's pure steps.

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::object_store::ObjectStore;
use crate::segment::{tail_range, DecodedBlock, Footer, FormatError, Part, TailLookup};
use std::ops::Range;

/// Something a segment can be read from by byte range.
pub(crate) trait ObjectRanges {
    /// Exactly the bytes of `range`, or an error.
    fn read_range(&self, range: Range<u64>) -> Result<Vec<u8>>;
    /// The object key, for error messages.
    fn name(&self) -> &str;
}

/// One object in a store, with the GETs counted.
pub(crate) struct StoredObject<'a> {
    pub store: &'a dyn ObjectStore,
    pub key: &'a str,
    pub metrics: &'a Metrics,
}

impl ObjectRanges for StoredObject<'_> {
    fn read_range(&self, range: Range<u64>) -> Result<Vec<u8>> {
        let data = self.store.get_range(self.key, range)?;
        Metrics::add(&self.metrics.gets, 1);
        Metrics::add(&self.metrics.get_bytes, data.len() as u64);
        Ok(data)
    }

    fn name(&self) -> &str {
        self.key
    }
}

/// Reads the footer of the `object_len`-byte segment: one ranged read of
/// the tail, a second only when the footer is larger than the first read.
pub(crate) fn read_footer(src: &dyn ObjectRanges, object_len: u64) -> Result<Footer> {
    let corrupt = |e: FormatError| Error::corruption(src.name(), e);
    let tail = src.read_range(tail_range(object_len).map_err(corrupt)?)?;
    match Footer::from_tail(&tail, object_len).map_err(corrupt)? {
        TailLookup::Found(footer) => Ok(footer),
        TailLookup::FooterAt { range, trailer } => {
            let bytes = src.read_range(range)?;
            Footer::decode(&bytes, &trailer).map_err(corrupt)
        }
    }
}

/// Fetches (one ranged read) and decodes block `i`.
pub(crate) fn read_block(
    src: &dyn ObjectRanges,
    footer: &Footer,
    i: usize,
) -> Result<DecodedBlock> {
    let entry = footer.entries().get(i).ok_or_else(|| {
        Error::corruption(
            src.name(),
            FormatError::Malformed {
                part: Part::Footer,
                reason: format!("no block {i}"),
            },
        )
    })?;
    let frame = src.read_range(entry.frame_range())?;
    DecodedBlock::decode(&frame, entry, i as u32).map_err(|e| Error::corruption(src.name(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_store::MemoryStore;
    use crate::record::Record;
    use crate::segment::format::INDEX_ENTRY_LEN;
    use crate::segment::{SegmentWriter, TAIL_READ_BYTES};

    fn segment(n: usize, block_bytes: usize) -> (Vec<u8>, Vec<Record>) {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                offset: i as i64,
                value: Some(format!("value-{i}").into_bytes()),
                ..Default::default()
            })
            .collect();
        let mut w = SegmentWriter::new(block_bytes);
        for r in &records {
            w.push(r).unwrap();
        }
        (w.finish().unwrap().0, records)
    }

    fn object<'a>(store: &'a MemoryStore, key: &'a str, m: &'a Metrics) -> StoredObject<'a> {
        StoredObject {
            store,
            key,
            metrics: m,
        }
    }

    #[test]
    fn opening_is_one_ranged_read_and_a_block_is_one_more() {
        let (bytes, records) = segment(300, 1024);
        let store = MemoryStore::new();
        store.put("p/0.seg", &bytes).unwrap();
        let metrics = Metrics::default();
        let src = object(&store, "p/0.seg", &metrics);
        let footer = read_footer(&src, bytes.len() as u64).unwrap();
        assert_eq!(metrics.snapshot().gets, 1, "open = one ranged read");
        let i = footer.block_for_offset(150).unwrap();
        let block = read_block(&src, &footer, i).unwrap();
        assert_eq!(metrics.snapshot().gets, 2, "one block = one ranged read");
        let pos = block.position_of(150);
        assert_eq!(block.get(pos).unwrap().to_record(), records[150]);
    }

    #[test]
    fn a_footer_larger_than_the_first_tail_read_takes_a_second_read() {
        // One record per block, so the footer exceeds TAIL_READ_BYTES.
        let n = (TAIL_READ_BYTES as usize / INDEX_ENTRY_LEN) + 100;
        let (bytes, records) = segment(n, 1);
        let store = MemoryStore::new();
        store.put("big.seg", &bytes).unwrap();
        let metrics = Metrics::default();
        let src = object(&store, "big.seg", &metrics);
        let footer = read_footer(&src, bytes.len() as u64).unwrap();
        assert_eq!(metrics.snapshot().gets, 2);
        assert_eq!(footer.entries().len(), n);
        let last = read_block(&src, &footer, n - 1).unwrap();
        assert_eq!(last.get(0).unwrap().to_record(), records[n - 1]);
    }

    #[test]
    fn a_wrong_length_or_missing_block_names_the_object() {
        let (bytes, _) = segment(10, 1024);
        let store = MemoryStore::new();
        store.put("s.seg", &bytes).unwrap();
        let metrics = Metrics::default();
        let src = object(&store, "s.seg", &metrics);
        // Told a shorter length than the object: the "trailer" is garbage.
        match read_footer(&src, bytes.len() as u64 - 1) {
            Err(Error::Corruption { object, .. }) => assert_eq!(object, "s.seg"),
            other => panic!("expected corruption, got {other:?}"),
        }
        let footer = read_footer(&src, bytes.len() as u64).unwrap();
        assert!(matches!(
            read_block(&src, &footer, 99),
            Err(Error::Corruption { .. })
        ));
    }
}
