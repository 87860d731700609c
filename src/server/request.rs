//! A produce request checked and split by partition before the engine sees
//! it. Plain functions over the proto message, so the fuzz targets run
//! exactly what the server runs, without a server.

use super::convert::to_record;
use super::partitioner::partition_for_key;
use crate::engine::ProducerBatch;
use crate::error::Error;
use crate::proto as pb;
use crate::record::Record;
use std::sync::atomic::{AtomicU32, Ordering};

/// Most records one produce request may carry.
pub const MAX_BATCH_RECORDS: usize = 100_000;

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
