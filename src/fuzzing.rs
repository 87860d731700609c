//! Entry points for the fuzz targets in `fuzz/` (built with the `fuzzing`
//! feature, and in tests). Each takes arbitrary bytes, runs the decoder or
//! check the server runs on untrusted input, and asserts what must hold of
//! any answer it gives. A panic here is a finding.
//!
//! Checksums guard every stored structure, so random bytes rarely get past
//! them; the block and WAL targets therefore seal the fuzzer's bytes with a
//! valid checksum first, which is what reaches the parsers behind it.

use crate::engine::validate_records;
use crate::producer::snapshot;
use crate::proto as pb;
use crate::segment::format::{FrameHeader, Trailer, FORMAT_VERSION, HEADER_LEN};
use crate::segment::{BlockIndexEntry, DecodedBlock, Footer, SegmentBytes, SegmentWriter};
use crate::server::partitioner::partition_for_key;
use crate::server::request::{scan_produce, split};
use crate::Record;
use protobuf::Message;
use std::sync::atomic::AtomicU32;

/// Reads fixed-size fields off the front of the input; missing bytes are 0.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let n = N.min(self.0.len());
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        b
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take())
    }
    fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// A block frame whose checksum and lengths agree with its index entry, so
/// decompression and the column parsers see the fuzzer's bytes. The first
/// byte picks whether the rest is an uncompressed payload (we compress it)
/// or the compressed bytes themselves.
pub fn segment_block(data: &[u8]) {
    let mut f = Fields(data);
    let mode = f.u8();
    let record_count = f.u32() % 4096;
    let entry_fields = (f.i64(), f.i64(), f.i64(), f.i64());
    let raw_uncompressed_len = f.u32() % (2 << 20);
    let body = f.rest();
    let (compressed, uncompressed_len) = if mode & 1 == 0 {
        (lz4_flex::block::compress(body), body.len() as u32)
    } else {
        (body.to_vec(), raw_uncompressed_len)
    };
    let header = FrameHeader::encode(uncompressed_len, record_count, &compressed);
    let mut frame = header.to_vec();
    frame.extend_from_slice(&compressed);
    let (first_offset, last_offset, min_ts, max_ts) = entry_fields;
    let entry = BlockIndexEntry {
        first_offset,
        last_offset,
        min_timestamp_ms: min_ts,
        max_timestamp_ms: max_ts,
        position: 16,
        frame_len: frame.len() as u32,
        record_count,
    };
    let Ok(block) = DecodedBlock::decode(&frame, &entry, 0) else {
        return;
    };
    assert_eq!(block.len(), record_count as usize);
    let mut prev: Option<i64> = None;
    for i in 0..block.len() {
        let r = block.get(i).expect("every counted record is readable");
        assert!(prev.is_none_or(|p| r.offset > p), "offsets ascend");
        assert!((min_ts..=max_ts).contains(&r.timestamp_ms));
        prev = Some(r.offset);
        let owned = r.to_record();
        assert_eq!(owned.headers.len(), r.headers().count());
    }
    if let Some(last) = prev {
        assert_eq!(last, last_offset);
        assert_eq!(block.get(0).map(|r| r.offset), Some(first_offset));
    }
}

/// A footer (the block index) with a valid checksum, so the entry decoder
/// and its checks see the fuzzer's bytes. The first 8 bytes are where the
/// footer claims to start.
pub fn segment_footer(data: &[u8]) {
    let mut f = Fields(data);
    let footer_position = u64::from(f.u32());
    let bytes = f.rest();
    let trailer = Trailer {
        footer_position,
        footer_len: bytes.len() as u32,
        footer_crc: crc32c::crc32c(bytes),
        version: FORMAT_VERSION,
    };
    let Ok(footer) = Footer::decode(bytes, &trailer) else {
        return;
    };
    let entries = footer.entries();
    let mut end = HEADER_LEN as u64;
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.position, end, "blocks are contiguous");
        assert!(e.first_offset <= e.last_offset);
        end = e.position + u64::from(e.frame_len);
        assert_eq!(footer.block_for_offset(e.first_offset), Some(i));
        assert_eq!(footer.block_for_offset(e.last_offset), Some(i));
        let _ = footer.block_for_timestamp(e.min_timestamp_ms);
    }
    assert!(end <= footer_position);
}

/// A whole segment object: the first byte picks whether the rest is the
/// object itself, or records (split at newlines) that the real writer
/// encodes and whose bytes the next input bytes then overwrite.
pub fn segment_object(data: &[u8]) {
    let mut f = Fields(data);
    let mode = f.u8();
    let object = if mode & 1 == 0 {
        f.rest().to_vec()
    } else {
        let flips = f.take::<4>();
        let text = f.rest();
        let lines = text.split(|&b| b == b'\n').count();
        let Some(mut object) = encode_lines(text) else {
            return;
        };
        // Damage up to two bytes where the input says (a pair of zeros: none).
        let mut damaged = false;
        for pair in flips.chunks(2) {
            if pair != [0, 0] {
                let at = usize::from(u16::from_le_bytes([pair[0], pair[1]]));
                let i = at % object.len();
                object[i] ^= pair[0] | 1;
                damaged = true;
            }
        }
        if !damaged {
            let records =
                crate::segment::verify(&object).expect("the writer's own object reads back");
            assert_eq!(records.len(), lines);
        }
        object
    };
    let Ok(segment) = SegmentBytes::open(&object) else {
        return;
    };
    let entries = segment.footer().entries().to_vec();
    for i in 0..entries.len() {
        let _ = segment.block(i);
    }
    if let Ok(records) = crate::segment::verify(&object) {
        let counted: u64 = entries.iter().map(|e| u64::from(e.record_count)).sum();
        assert_eq!(records.len() as u64, counted);
    }
}

/// The records of `text` (one per line, the first 8 bytes as the key)
/// through the real segment writer, with small blocks so there are several.
fn encode_lines(text: &[u8]) -> Option<Vec<u8>> {
    let mut w = SegmentWriter::new(256);
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let (key, value) = line.split_at(line.len().min(8));
        let r = Record {
            offset: i as i64,
            timestamp_ms: 1_700_000_000_000 + i as i64,
            key: (!key.is_empty()).then(|| key.to_vec()),
            value: Some(value.to_vec()),
            headers: Vec::new(),
        };
        w.push(&r).ok()?;
    }
    w.finish().ok().map(|(bytes, _)| bytes)
}

/// A WAL file whose entries are the input's chunks, each sealed with a
/// valid length and checksum, so recovery's entry parser sees them. The
/// first 8 bytes are the offset the file's name promises.
pub fn wal_file(data: &[u8]) {
    let mut f = Fields(data);
    let first_offset = f.i64();
    let mut file = Vec::new();
    for payload in f.rest().split(|&b| b == 0xA5) {
        crate::wal::seal_payload_for_fuzzing(&mut file, payload);
    }
    let scan = crate::wal::scan_file(&file, first_offset);
    assert!(scan.good_len <= file.len() as u64);
    let mut expected = first_offset;
    for r in &scan.records {
        assert!(r.offset >= expected, "offsets ascend");
        expected = r.offset + 1;
    }
    assert!(scan.next_offset >= expected);
    // Only a clean end is read to the end; any cut is reported.
    assert_eq!(scan.cut.is_none(), scan.good_len == file.len() as u64);
}

/// A produce request as the server receives it: counted on the wire
/// (refused past the limits), decoded, split by partition and checked. The
/// first byte picks the topic's partition count.
pub fn produce_request(data: &[u8]) {
    let mut f = Fields(data);
    let partitions = u32::from(f.u8() % 16) + 1;
    let bytes = f.rest();
    let Ok(counts) = scan_produce(bytes) else {
        return;
    };
    let Ok(mut req) = pb::ProduceRequest::parse_from_bytes(bytes) else {
        return;
    };
    // The scan saw what the decoder made of the bytes: it bounded them.
    let sent = req.get_records().len();
    assert_eq!(sent, counts.records, "records counted on the wire");
    let headers: usize = req
        .get_records()
        .iter()
        .map(|r| r.get_headers().len())
        .sum();
    assert!(headers <= counts.items, "headers counted on the wire");
    let named = req.has_partition().then(|| req.get_partition());
    let Ok(routed) = split(&mut req, partitions, &AtomicU32::new(0)) else {
        return;
    };
    let mut total = 0;
    for (p, records) in &routed.groups {
        assert!(*p < partitions);
        assert!(!records.is_empty());
        if let Some(n) = named {
            assert_eq!(*p, n);
        }
        for r in records {
            if let (Some(k), None) = (&r.key, named) {
                assert_eq!(partition_for_key(k, partitions), *p);
            }
        }
        total += records.len();
        if let Ok(bytes) = validate_records(records, 1 << 20) {
            let counted: u64 = records.iter().map(|r| r.accounted_len() as u64).sum();
            assert_eq!(bytes, counted);
        }
    }
    assert_eq!(total, sent, "every record goes to exactly one partition");
    if routed.producer.is_some() {
        assert_eq!(routed.groups.len(), 1);
    }
}

/// A producer-state object from the bucket: what decodes re-encodes to an
/// object that decodes to the same table.
pub fn producer_snapshot(data: &[u8]) {
    let Ok((table, next_offset)) = snapshot::decode(data) else {
        return;
    };
    let again = snapshot::encode(&table, next_offset);
    let (table2, next2) = snapshot::decode(&again).expect("our own encoding decodes");
    assert_eq!((table2, next2), (table, next_offset));
}

/// Bytes a Kafka producer sent as record batches. With the first byte odd
/// the CRC of the first batch is set right first, so the fuzzer gets past
/// it to the records. What decodes encodes to bytes that decode the same.
pub fn kafka_record_batch(data: &[u8]) {
    use crate::kafka::record_batch::{decode_batches, encode_batch, Limits};
    let mut f = Fields(data);
    let fix_crc = f.u8() & 1 == 1;
    let mut bytes = f.rest().to_vec();
    if fix_crc && bytes.len() >= 21 {
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    let limits = Limits {
        max_records: 10_000,
        max_batch_bytes: 4 << 20,
    };
    let Ok(batches) = decode_batches(&bytes, limits) else {
        return;
    };
    for b in batches {
        let again = decode_batches(&encode_batch(&b), limits).expect("an encoded batch decodes");
        assert_eq!(again.len(), 1);
        // Attributes other than the timestamp type are not written back.
        assert_eq!(again[0].records, b.records);
        assert_eq!(again[0].base_offset, b.base_offset);
        assert_eq!(again[0].producer_id, b.producer_id);
        assert_eq!(again[0].base_sequence, b.base_sequence);
    }
}

/// A Kafka request as the listener reads it: the whole input as a frame
/// for the header parser; then the first byte picks an API of the served
/// table, the second a version in its range, and the rest is the body. A
/// body the shape check lets through must decode or fail cleanly through
/// kafka-protocol: an abort (an allocation past libFuzzer's limit) is the
/// finding this target exists for.
pub fn kafka_request(data: &[u8]) {
    use crate::kafka::api::SUPPORTED;
    use crate::kafka::{guard, wire};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Decodable;
    let _ = wire::parse_header(data);
    // The leader's assignments, which `streamctl group get` decodes.
    let _ = crate::kafka::consumer_assignment(data);
    let mut f = Fields(data);
    let (key, lo, hi) = SUPPORTED[usize::from(f.u8()) % SUPPORTED.len()];
    let version = lo + (i16::from(f.u8()) % (hi - lo + 1));
    let body = f.rest();
    if guard::check_request(key as i16, version, body).is_err() {
        return;
    }
    fn decode<R: Decodable>(body: &[u8], version: i16) {
        let mut b = bytes::Bytes::copy_from_slice(body);
        let _ = R::decode(&mut b, version);
    }
    match key {
        ApiKey::Produce => decode::<ProduceRequest>(body, version),
        ApiKey::Fetch => decode::<FetchRequest>(body, version),
        ApiKey::ListOffsets => decode::<ListOffsetsRequest>(body, version),
        ApiKey::Metadata => decode::<MetadataRequest>(body, version),
        ApiKey::OffsetCommit => decode::<OffsetCommitRequest>(body, version),
        ApiKey::OffsetFetch => decode::<OffsetFetchRequest>(body, version),
        ApiKey::FindCoordinator => decode::<FindCoordinatorRequest>(body, version),
        ApiKey::DescribeGroups => decode::<DescribeGroupsRequest>(body, version),
        ApiKey::ListGroups => decode::<ListGroupsRequest>(body, version),
        ApiKey::ApiVersions => decode::<ApiVersionsRequest>(body, version),
        ApiKey::CreateTopics => decode::<CreateTopicsRequest>(body, version),
        ApiKey::DeleteTopics => decode::<DeleteTopicsRequest>(body, version),
        ApiKey::InitProducerId => decode::<InitProducerIdRequest>(body, version),
        ApiKey::DescribeConfigs => decode::<DescribeConfigsRequest>(body, version),
        ApiKey::DescribeCluster => decode::<DescribeClusterRequest>(body, version),
        ApiKey::JoinGroup => decode::<JoinGroupRequest>(body, version),
        ApiKey::SyncGroup => decode::<SyncGroupRequest>(body, version),
        ApiKey::Heartbeat => decode::<HeartbeatRequest>(body, version),
        ApiKey::LeaveGroup => decode::<LeaveGroupRequest>(body, version),
        other => panic!("{other:?} is served but not decoded here"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::xorshift::XorShift64;

    /// Every target over short random inputs and mutations of a valid
    /// segment: a smoke run of what `scripts/fuzz.sh` runs for minutes.
    #[test]
    fn targets_survive_random_inputs() {
        let mut rng = XorShift64::new(7);
        let mut seed_text = Vec::new();
        for i in 0..200 {
            seed_text.extend_from_slice(format!("key{i:05}{{\"flight\":{i}}}\n").as_bytes());
        }
        let mut valid_object = vec![1u8, 0, 0, 0, 0];
        valid_object.extend_from_slice(&seed_text);
        for round in 0..3000 {
            let len = (rng.next_u64() % 300) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            segment_block(&data);
            segment_footer(&data);
            wal_file(&data);
            produce_request(&data);
            producer_snapshot(&data);
            kafka_request(&data);
            segment_object(&data);
            // Mutations of a valid object: flips where the random bytes say.
            data = valid_object.clone();
            data[1..5].copy_from_slice(&(rng.next_u64() as u32).to_le_bytes());
            if round % 2 == 0 {
                data[0] = 0;
            }
            segment_object(&data);
        }
    }
}
