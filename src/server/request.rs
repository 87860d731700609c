//! A produce request checked and split by partition before the engine sees
//! it, and counted on the wire before it is even decoded ([`scan_produce`]).
//! Plain functions over the proto message and its bytes, so the fuzz
//! targets run exactly what the server runs, without a server.

use super::convert::to_record;
use super::partitioner::partition_for_key;
use crate::engine::ProducerBatch;
use crate::error::Error;
use crate::proto as pb;
use crate::record::Record;
use std::sync::atomic::{AtomicU32, Ordering};

/// Most records one produce request may carry.
pub const MAX_BATCH_RECORDS: usize = 100_000;
/// Headers plus unknown fields, summed over a produce request's records:
/// counted on the wire before decoding (see `admission`).
pub const MAX_REQUEST_ITEMS: usize = 262_144;

/// Where a request's records go.
#[derive(Debug)]
pub struct Routed {
    /// Set for an idempotent request: then `groups` has one partition.
    pub producer: Option<ProducerBatch>,
    /// Records per partition, in request order, partitions ascending.
    pub groups: Vec<(u32, Vec<Record>)>,
}

/// Splits a request for a topic of `partitions` partitions: the named
/// partition, or Kafka's key hash, or round-robin for keyless records.
/// Takes the records out of `req`.
pub fn split(
    req: &mut pb::ProduceRequest,
    partitions: u32,
    round_robin: &AtomicU32,
) -> Result<Routed, Error> {
    if partitions == 0 {
        // A topic has at least one partition; a caller passing 0 is a bug,
        // answered as an error rather than a division by zero.
        return Err(Error::NotFound("the topic has no partitions".into()));
    }
    let producer = (req.get_producer_id() != 0).then(|| ProducerBatch {
        producer_id: req.get_producer_id(),
        epoch: req.get_producer_epoch(),
        first_sequence: req.get_first_sequence(),
    });
    if producer.is_some() && !req.has_partition() {
        return Err(Error::InvalidArgument(
            "an idempotent produce (producer_id set) names one partition; split keyed records by partition on the client".into(),
        ));
    }
    let records = req.take_records();
    if records.is_empty() {
        return Err(Error::InvalidArgument(
            "a produce request needs at least one record".into(),
        ));
    }
    if records.len() > MAX_BATCH_RECORDS {
        return Err(Error::InvalidArgument(format!(
            "{} records in one request; the limit is {MAX_BATCH_RECORDS}",
            records.len()
        )));
    }
    if req.has_partition() {
        let p = req.get_partition();
        if p >= partitions {
            return Err(Error::NotFound(format!(
                "partition {p} of topic {:?} does not exist (it has partitions 0..{partitions})",
                req.get_topic()
            )));
        }
        let groups = vec![(p, records.into_iter().map(to_record).collect())];
        return Ok(Routed { producer, groups });
    }
    let mut groups: Vec<Vec<Record>> = (0..partitions).map(|_| Vec::new()).collect();
    for r in records {
        let r = to_record(r);
        let p = match &r.key {
            Some(k) => partition_for_key(k, partitions),
            None => round_robin.fetch_add(1, Ordering::Relaxed) % partitions,
        };
        groups[p as usize].push(r);
    }
    let groups = groups
        .into_iter()
        .enumerate()
        .filter(|(_, g)| !g.is_empty())
        .map(|(p, g)| (p as u32, g))
        .collect();
    Ok(Routed { producer, groups })
}

/// What a produce request holds, counted on the wire.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ProduceCounts {
    pub records: usize,
    /// Headers and unknown fields at any depth.
    pub items: usize,
}

/// Counts a ProduceRequest's records, headers and unknown fields without
/// decoding it, and refuses one over the limits (or one that is not
/// protobuf at all).
pub fn scan_produce(bytes: &[u8]) -> Result<ProduceCounts, String> {
    let mut counts = ProduceCounts::default();
    let mut wire = Wire::new(bytes);
    while let Some((field, value)) = wire.next_field()? {
        match (field, value) {
            (3, Value::Bytes(record)) => {
                counts.records += 1;
                if counts.records > MAX_BATCH_RECORDS {
                    return Err(format!(
                        "more than {MAX_BATCH_RECORDS} records in one request; the limit is {MAX_BATCH_RECORDS}"
                    ));
                }
                scan_record(record, &mut counts)?;
            }
            (1..=7, _) => {}
            _ => counts.add_item()?,
        }
    }
    Ok(counts)
}

fn scan_record(bytes: &[u8], counts: &mut ProduceCounts) -> Result<(), String> {
    let mut wire = Wire::new(bytes);
    while let Some((field, value)) = wire.next_field()? {
        match (field, value) {
            (5, Value::Bytes(header)) => {
                counts.add_item()?;
                let mut h = Wire::new(header);
                while let Some((field, _)) = h.next_field()? {
                    if !(1..=3).contains(&field) {
                        counts.add_item()?;
                    }
                }
            }
            (1..=7, _) => {}
            _ => counts.add_item()?,
        }
    }
    Ok(())
}

impl ProduceCounts {
    fn add_item(&mut self) -> Result<(), String> {
        self.items += 1;
        if self.items > MAX_REQUEST_ITEMS {
            return Err(format!(
                "more than {MAX_REQUEST_ITEMS} headers (and unknown fields) in one request; the limit is {MAX_REQUEST_ITEMS}"
            ));
        }
        Ok(())
    }
}

/// One field's value; only length-delimited ones are looked into.
enum Value<'a> {
    Scalar,
    Bytes(&'a [u8]),
}

/// The protobuf wire format, one field at a time.
struct Wire<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Wire<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Wire { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(malformed("a varint runs past the end"));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed("a varint is longer than 10 bytes"))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let rest = (self.buf.len() - self.pos) as u64;
        if n > rest {
            return Err(malformed("a field runs past the end"));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, String> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let value = match tag & 7 {
            0 => self.varint().map(|_| Value::Scalar)?,
            1 => self.take(8).map(|_| Value::Scalar)?,
            2 => {
                let n = self.varint()?;
                Value::Bytes(self.take(n)?)
            }
            5 => self.take(4).map(|_| Value::Scalar)?,
            w => return Err(malformed(&format!("wire type {w} is not used by this API"))),
        };
        Ok(Some((tag >> 3, value)))
    }
}

fn malformed(why: &str) -> String {
    format!("the ProduceRequest does not decode: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::Message;

    fn request(records: &[pb::Record]) -> Vec<u8> {
        let mut req = pb::ProduceRequest::new();
        req.set_topic("t".into());
        req.set_partition(0);
        req.set_records(records.to_vec().into());
        req.write_to_bytes().expect("encode")
    }

    fn record(headers: usize) -> pb::Record {
        let mut r = pb::Record::new();
        r.set_key(b"k".to_vec());
        r.set_value(b"{\"flight\": 1}".to_vec());
        for i in 0..headers {
            let mut h = pb::Header::new();
            h.set_key(format!("h{i}"));
            h.set_value(vec![i as u8]);
            r.mut_headers().push(h);
        }
        r
    }

    #[test]
    fn counts_records_and_headers_as_the_decoder_would_see_them() {
        let bytes = request(&[record(2), record(0), record(3)]);
        assert_eq!(
            scan_produce(&bytes),
            Ok(ProduceCounts {
                records: 3,
                items: 5
            })
        );
    }

    #[test]
    fn unknown_fields_count_as_items_at_every_depth() {
        let mut bytes = request(&[record(1)]);
        // Field 99 (varint 1) at the top level, twice.
        for _ in 0..2 {
            bytes.extend_from_slice(&[0x98, 0x06, 0x01]);
        }
        assert_eq!(scan_produce(&bytes).map(|c| c.items), Ok(3));
    }

    #[test]
    fn a_request_of_empty_records_is_refused_past_the_record_limit() {
        // Two bytes per empty record: what made 64 MiB cost gigabytes.
        let bytes: Vec<u8> = std::iter::repeat_n([0x1a, 0x00], MAX_BATCH_RECORDS + 1)
            .flatten()
            .collect();
        let err = scan_produce(&bytes).expect_err("over the limit");
        assert!(err.contains("100000 records"), "{err}");
        let at_limit = &bytes[..2 * MAX_BATCH_RECORDS];
        assert_eq!(
            scan_produce(at_limit).map(|c| c.records),
            Ok(MAX_BATCH_RECORDS)
        );
    }

    #[test]
    fn empty_headers_are_refused_past_the_item_limit() {
        // One record of many empty headers (field 5, length 0).
        let mut inner = Vec::new();
        for _ in 0..=MAX_REQUEST_ITEMS {
            inner.extend_from_slice(&[0x2a, 0x00]);
        }
        let mut bytes = vec![0x1a];
        crate::codec::put_uvarint(&mut bytes, inner.len() as u64);
        bytes.extend_from_slice(&inner);
        let err = scan_produce(&bytes).expect_err("over the limit");
        assert!(err.contains("262144 headers"), "{err}");
    }

    #[test]
    fn truncated_and_odd_bytes_are_refused_with_a_reason() {
        let bytes = request(&[record(1)]);
        for cut in 1..bytes.len() {
            // Every prefix either scans (a shorter valid message) or says why.
            if let Err(e) = scan_produce(&bytes[..cut]) {
                assert!(e.starts_with("the ProduceRequest does not decode"), "{e}");
            }
        }
        assert!(scan_produce(&[0x1b]).is_err(), "wire type 3 (group)");
        assert!(
            scan_produce(&[0x1a, 0x05, 0x00]).is_err(),
            "length past the end"
        );
        assert!(scan_produce(&[0x08; 11]).is_err(), "an endless varint");
    }
}
