//! ProducerService: splits a request by partition (Kafka's key hash, or
//! round-robin), hands each part to its partition's writer, and replies
//! when every part is acknowledged.

use super::convert::acks_of;
use super::request::{split, Routed};
use super::shared::Shared;
use super::status::{error_to_status, fail_now};
use crate::error::Error;
use crate::partition::{AckReceiver, Acks};
use crate::proto as pb;
use crate::proto::grpc::ProducerService;
use grpcio::{RpcContext, UnarySink};
use std::sync::Arc;

#[derive(Clone)]
pub struct Producer(pub Shared);

impl Producer {
    /// Validates and queues a request: one idempotent batch (a producer id
    /// and one partition), or records split by partition.
    fn submit(
        &self,
        req: &mut pb::ProduceRequest,
        acks: Acks,
    ) -> Result<Vec<(u32, AckReceiver)>, Error> {
        let topic = req.get_topic().to_string();
        let partitions = self.0.engine.partition_count(&topic)?;
        let Routed { producer, groups } = split(req, partitions, &self.0.round_robin)?;
        let Some(producer) = producer else {
            return self.0.engine.produce_batch(&topic, groups, acks);
        };
        let mut out = Vec::with_capacity(1);
        for (p, records) in groups {
            let rx = self
                .0
                .engine
                .produce_idempotent(&topic, p, records, acks, producer)?;
            out.push((p, rx));
        }
        Ok(out)
    }
}

impl ProducerService for Producer {
    fn init_producer(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::InitProducerRequest,
        sink: UnarySink<pb::InitProducerResponse>,
    ) {
        self.0.blocking(
            &ctx,
            sink,
            move |e| e.init_producer(req.get_producer_name()),
            |(id, epoch)| {
                let mut r = pb::InitProducerResponse::new();
                r.set_producer_id(id);
                r.set_epoch(epoch);
                r
            },
        );
    }

    fn produce(
        &mut self,
        ctx: RpcContext<'_>,
        mut req: pb::ProduceRequest,
        sink: UnarySink<pb::ProduceResponse>,
    ) {
        if let Err(st) = self.0.check(&ctx) {
            return fail_now(&ctx, sink, st);
        }
        let acks = acks_of(req.get_acks());
        // Validated whole and reserved before any partition gets a record.
        let pending = match self.submit(&mut req, acks) {
            Ok(p) => p,
            Err(e) => return fail_now(&ctx, sink, error_to_status(&e)),
        };
        let latencies = Arc::clone(&self.0.latencies);
        let started = std::time::Instant::now();
        ctx.spawn(async move {
            let mut resp = pb::ProduceResponse::new();
            let mut first_error = None;
            for (p, rx) in pending {
                match rx.await.unwrap_or_else(|_| Err(Error::shutting_down())) {
                    Ok(ack) => {
                        let mut a = pb::PartitionAck::new();
                        a.set_partition(p);
                        a.set_base_offset(ack.base_offset);
                        a.set_count(ack.count);
                        a.set_duplicate(ack.duplicate);
                        resp.mut_acks().push(a);
                    }
                    Err(e) => {
                        let st = error_to_status(&e);
                        let mut pe = pb::PartitionError::new();
                        pe.set_partition(p);
                        pe.set_code(i32::from(st.code()).unsigned_abs());
                        pe.set_message(st.message().to_string());
                        resp.mut_errors().push(pe);
                        first_error.get_or_insert(st);
                    }
                }
            }
            // Nothing written anywhere: the call fails. Some partitions
            // written: the call succeeds and says which were not.
            if let (true, Some(st)) = (resp.get_acks().is_empty(), first_error) {
                let _ = sink.fail(st).await;
                return;
            }
            latencies.produce.observe(started.elapsed());
            let _ = sink.success(resp).await;
        });
    }
}
