//! The gRPC services. Handlers validate, hand work to the engine (partition
//! writers, reader pool) or to the small blocking pool (SQLite calls), and
//! reply from `ctx.spawn` when the oneshot answers: a completion-queue
//! thread never blocks.

use super::partitioner::partition_for_key;
use crate::engine::{Engine, TopicInfo, TopicSpec};
use crate::error::Error;
use crate::partition::Acks;
use crate::proto::grpc::{AdminService, ConsumerService, ProducerService};
use crate::proto::{self as pb};
use crate::read::FetchRequest;
use crate::record::{Header, Record};
use futures::channel::oneshot;
use futures::SinkExt;
use grpcio::{RpcContext, RpcStatus, RpcStatusCode, ServerStreamingSink, UnarySink, WriteFlags};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Most records one produce request may carry.
pub const MAX_BATCH_RECORDS: usize = 100_000;
/// Longest long poll a fetch may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How long one Subscribe poll waits before checking for shutdown again.
const SUBSCRIBE_POLL: Duration = Duration::from_millis(500);

/// The one place engine errors become gRPC statuses.
pub fn error_to_status(e: &Error) -> RpcStatus {
    let code = match e {
        Error::InvalidArgument(_) => RpcStatusCode::INVALID_ARGUMENT,
        Error::NotFound(_) => RpcStatusCode::NOT_FOUND,
        Error::AlreadyExists(_) => RpcStatusCode::ALREADY_EXISTS,
        Error::OutOfRange(_) => RpcStatusCode::OUT_OF_RANGE,
        Error::Backpressure(_) => RpcStatusCode::RESOURCE_EXHAUSTED,
        Error::Unavailable(_) => RpcStatusCode::UNAVAILABLE,
        Error::Corruption { .. } => RpcStatusCode::DATA_LOSS,
        Error::Store(_) => RpcStatusCode::UNAVAILABLE,
        Error::Meta(_) | Error::Io { .. } => RpcStatusCode::INTERNAL,
    };
    RpcStatus::with_message(code, e.to_string())
}

fn status(code: RpcStatusCode, msg: impl Into<String>) -> RpcStatus {
    RpcStatus::with_message(code, msg.into())
}

/// A few threads for calls that block briefly (SQLite, object deletes), so
/// they stay off grpcio's completion-queue threads.
#[derive(Clone)]
pub struct BlockingPool {
    tx: crossbeam_channel::Sender<Box<dyn FnOnce() + Send>>,
}

impl BlockingPool {
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded::<Box<dyn FnOnce() + Send>>();
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("admin-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })?;
        }
        Ok(BlockingPool { tx })
    }

    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Box::new(move || {
            let _ = reply.send(f());
        }));
        rx
    }
}

/// Request latencies seen by the handlers (receipt to reply).
#[derive(Debug, Default)]
pub struct Latencies {
    pub produce: crate::metrics::Histogram,
    pub fetch: crate::metrics::Histogram,
}

/// What every handler shares.
#[derive(Clone)]
pub struct Shared {
    pub engine: Arc<Engine>,
    pub latencies: Arc<Latencies>,
    pub auth_token: Option<Arc<str>>,
    pub blocking: BlockingPool,
    pub shutting_down: Arc<AtomicBool>,
    round_robin: Arc<AtomicU32>,
}

impl Shared {
    pub fn new(engine: Arc<Engine>, auth_token: Option<String>, blocking: BlockingPool) -> Self {
        Shared {
            engine,
            latencies: Arc::new(Latencies::default()),
            auth_token: auth_token.map(Arc::from),
            blocking,
            shutting_down: Arc::new(AtomicBool::new(false)),
            round_robin: Arc::new(AtomicU32::new(0)),
        }
    }

    /// UNAUTHENTICATED unless the call carries `authorization: Bearer TOKEN`
    /// (compared in constant time), when a token is configured.
    fn check(&self, ctx: &RpcContext<'_>) -> Result<(), RpcStatus> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(status(
                RpcStatusCode::UNAVAILABLE,
                "the server is shutting down",
            ));
        }
        let Some(token) = &self.auth_token else {
            return Ok(());
        };
        let expected = format!("Bearer {token}");
        let ok = ctx.request_headers().iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("authorization") && constant_time_eq(v, expected.as_bytes())
        });
        if ok {
            Ok(())
        } else {
            Err(status(
                RpcStatusCode::UNAUTHENTICATED,
                "this server requires metadata `authorization: Bearer <token>` with the right token",
            ))
        }
    }
}

impl Shared {
    /// Checks the call, runs `f` on the blocking pool (SQLite and object
    /// deletes stay off the completion-queue threads) and replies with
    /// `map` of its result.
    fn blocking<T, R>(
        &self,
        ctx: &RpcContext<'_>,
        sink: UnarySink<R>,
        f: impl FnOnce(&Engine) -> Result<T, Error> + Send + 'static,
        map: impl FnOnce(T) -> R + Send + 'static,
    ) where
        T: Send + 'static,
        R: Send + 'static,
    {
        if let Err(st) = self.check(ctx) {
            return fail_now(ctx, sink, st);
        }
        let engine = Arc::clone(&self.engine);
        let rx = self.blocking.run(move || f(&engine));
        reply_later(ctx, sink, rx, map);
    }
}

/// Compares without an early exit, so timing does not reveal the prefix
/// that matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Replies from a spawned future once `rx` answers.
fn reply_later<T, R>(
    ctx: &RpcContext<'_>,
    sink: UnarySink<R>,
    rx: oneshot::Receiver<Result<T, Error>>,
    map: impl FnOnce(T) -> R + Send + 'static,
) where
    T: Send + 'static,
    R: Send + 'static,
{
    ctx.spawn(async move {
        let result = match rx.await {
            Ok(Ok(v)) => sink.success(map(v)).await,
            Ok(Err(e)) => sink.fail(error_to_status(&e)).await,
            Err(_) => {
                sink.fail(status(
                    RpcStatusCode::UNAVAILABLE,
                    "the server is shutting down",
                ))
                .await
            }
        };
        if let Err(e) = result {
            log::debug!("reply not delivered: {e}");
        }
    });
}

fn fail_now<R: Send + 'static>(ctx: &RpcContext<'_>, sink: UnarySink<R>, st: RpcStatus) {
    ctx.spawn(async move {
        let _ = sink.fail(st).await;
    });
}

// ---------------------------------------------------------------- admin

fn topic_info(t: TopicInfo) -> pb::TopicInfo {
    let mut out = pb::TopicInfo::new();
    out.set_name(t.name);
    out.set_partitions(t.partitions);
    out.set_retention_ms(t.retention_ms);
    out.set_retention_bytes(t.retention_bytes);
    out.set_created_at_ms(t.created_at_ms);
    for p in t.partition_info {
        let mut pi = pb::PartitionInfo::new();
        pi.set_partition(p.partition);
        pi.set_low_watermark(p.low_watermark);
        pi.set_high_watermark(p.high_watermark);
        pi.set_segment_count(p.segment_count);
        pi.set_stored_bytes(p.stored_bytes);
        out.mut_partition_info().push(pi);
    }
    out
}

#[derive(Clone)]
pub struct Admin(pub Shared);

impl AdminService for Admin {
    fn create_topic(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::CreateTopicRequest,
        sink: UnarySink<pb::TopicInfo>,
    ) {
        let spec = TopicSpec {
            name: req.get_name().to_string(),
            partitions: req.get_partitions(),
            retention_ms: req.get_retention_ms(),
            retention_bytes: req.get_retention_bytes(),
        };
        self.0
            .blocking(&ctx, sink, move |e| e.create_topic(&spec), topic_info);
    }

    fn describe_topic(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::DescribeTopicRequest,
        sink: UnarySink<pb::TopicInfo>,
    ) {
        self.0.blocking(
            &ctx,
            sink,
            move |e| e.describe_topic(req.get_name()),
            topic_info,
        );
    }

    fn list_topics(
        &mut self,
        ctx: RpcContext<'_>,
        _req: pb::ListTopicsRequest,
        sink: UnarySink<pb::ListTopicsResponse>,
    ) {
        self.0.blocking(
            &ctx,
            sink,
            |e| e.list_topics(),
            |topics| {
                let mut r = pb::ListTopicsResponse::new();
                r.set_topics(topics.into_iter().map(topic_info).collect());
                r
            },
        );
    }

    fn delete_topic(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::DeleteTopicRequest,
        sink: UnarySink<pb::DeleteTopicResponse>,
    ) {
        self.0.blocking(
            &ctx,
            sink,
            move |e| e.delete_topic(req.get_name()),
            |()| pb::DeleteTopicResponse::new(),
        );
    }
}

// ---------------------------------------------------------------- produce

fn to_record(mut r: pb::Record) -> Record {
    let key = r.take_key();
    Record {
        offset: 0,
        timestamp_ms: r.get_timestamp_ms(),
        key: (!key.is_empty()).then_some(key),
        value: r.take_value(),
        headers: r
            .take_headers()
            .into_iter()
            .map(|mut h| Header {
                key: h.take_key(),
                value: h.take_value(),
            })
            .collect(),
    }
}

fn to_proto(r: Record) -> pb::Record {
    let mut out = pb::Record::new();
    out.set_offset(r.offset);
    out.set_timestamp_ms(r.timestamp_ms);
    if let Some(k) = r.key {
        out.set_key(k);
    }
    out.set_value(r.value);
    for h in r.headers {
        let mut ph = pb::Header::new();
        ph.set_key(h.key);
        ph.set_value(h.value);
        out.mut_headers().push(ph);
    }
    out
}

#[derive(Clone)]
pub struct Producer(pub Shared);

impl Producer {
    /// Splits a request into per-partition batches, in request order.
    fn route(&self, req: &mut pb::ProduceRequest) -> Result<Vec<(u32, Vec<Record>)>, Error> {
        let topic = req.get_topic().to_string();
        let n = self.0.engine.partition_count(&topic)?;
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
            if p >= n {
                return Err(Error::NotFound(format!(
                    "partition {p} of topic {topic:?} does not exist (it has partitions 0..{n})"
                )));
            }
            return Ok(vec![(p, records.into_iter().map(to_record).collect())]);
        }
        let mut groups: Vec<Vec<Record>> = (0..n).map(|_| Vec::new()).collect();
        for r in records {
            let r = to_record(r);
            let p = match &r.key {
                Some(k) => partition_for_key(k, n),
                None => self.0.round_robin.fetch_add(1, Ordering::Relaxed) % n,
            };
            groups[p as usize].push(r);
        }
        Ok(groups
            .into_iter()
            .enumerate()
            .filter(|(_, g)| !g.is_empty())
            .map(|(p, g)| (p as u32, g))
            .collect())
    }
}

fn acks_of(a: pb::Acks) -> Acks {
    match a {
        pb::Acks::ACKS_WAL => Acks::Wal,
        pb::Acks::ACKS_UPLOADED => Acks::Uploaded,
        pb::Acks::ACKS_NONE => Acks::None,
    }
}

impl ProducerService for Producer {
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
        let topic = req.get_topic().to_string();
        let groups = match self.route(&mut req) {
            Ok(g) => g,
            Err(e) => return fail_now(&ctx, sink, error_to_status(&e)),
        };
        let mut pending = Vec::with_capacity(groups.len());
        for (p, records) in groups {
            match self.0.engine.produce(&topic, p, records, acks) {
                Ok(rx) => pending.push((p, rx)),
                Err(e) => return fail_now(&ctx, sink, error_to_status(&e)),
            }
        }
        let latencies = Arc::clone(&self.0.latencies);
        let started = std::time::Instant::now();
        ctx.spawn(async move {
            let mut resp = pb::ProduceResponse::new();
            for (p, rx) in pending {
                match rx.await {
                    Ok(Ok(ack)) => {
                        let mut a = pb::PartitionAck::new();
                        a.set_partition(p);
                        a.set_base_offset(ack.base_offset);
                        a.set_count(ack.count);
                        resp.mut_acks().push(a);
                    }
                    Ok(Err(e)) => {
                        let _ = sink.fail(error_to_status(&e)).await;
                        return;
                    }
                    Err(_) => {
                        let _ = sink
                            .fail(status(
                                RpcStatusCode::UNAVAILABLE,
                                "the server is shutting down",
                            ))
                            .await;
                        return;
                    }
                }
            }
            latencies.produce.observe(started.elapsed());
            let _ = sink.success(resp).await;
        });
    }
}

// ---------------------------------------------------------------- consume

fn fetch_response(partition: u32, r: crate::read::FetchResult) -> pb::FetchResponse {
    let mut out = pb::FetchResponse::new();
    out.set_partition(partition);
    out.set_next_offset(r.next_offset);
    out.set_high_watermark(r.high_watermark);
    out.set_low_watermark(r.low_watermark);
    for rec in r.records {
        out.mut_records().push(to_proto(rec));
    }
    out
}

#[derive(Clone)]
pub struct Consumer(pub Shared);

impl ConsumerService for Consumer {
    fn fetch(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::FetchRequest,
        sink: UnarySink<pb::FetchResponse>,
    ) {
        if let Err(st) = self.0.check(&ctx) {
            return fail_now(&ctx, sink, st);
        }
        let p = req.get_partition();
        let wait = Duration::from_millis(u64::from(req.get_max_wait_ms())).min(MAX_WAIT);
        let fr = FetchRequest {
            offset: req.get_offset(),
            max_records: req.get_max_records() as usize,
            max_bytes: req.get_max_bytes() as usize,
            max_wait: wait,
        };
        let latencies = Arc::clone(&self.0.latencies);
        let started = std::time::Instant::now();
        match self.0.engine.fetch(req.get_topic(), p, fr) {
            Ok(rx) => reply_later(&ctx, sink, rx, move |r| {
                latencies.fetch.observe(started.elapsed());
                fetch_response(p, r)
            }),
            Err(e) => fail_now(&ctx, sink, error_to_status(&e)),
        }
    }

    fn subscribe(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::SubscribeRequest,
        mut sink: ServerStreamingSink<pb::FetchResponse>,
    ) {
        if let Err(st) = self.0.check(&ctx) {
            ctx.spawn(async move {
                let _ = sink.fail(st).await;
            });
            return;
        }
        let shared = self.0.clone();
        let topic = req.get_topic().to_string();
        let p = req.get_partition();
        let mut offset = req.get_offset();
        ctx.spawn(async move {
            loop {
                if shared.shutting_down.load(Ordering::SeqCst) {
                    let _ = sink
                        .fail(status(
                            RpcStatusCode::UNAVAILABLE,
                            "the server is shutting down",
                        ))
                        .await;
                    return;
                }
                let rx = shared.engine.fetch(
                    &topic,
                    p,
                    FetchRequest {
                        offset,
                        max_records: 0,
                        max_bytes: 0,
                        max_wait: SUBSCRIBE_POLL,
                    },
                );
                let result = match rx {
                    Ok(rx) => rx.await.unwrap_or_else(|_| {
                        Err(Error::Unavailable("the server is shutting down".into()))
                    }),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(r) if r.records.is_empty() => continue,
                    Ok(r) => {
                        offset = r.next_offset;
                        // Awaiting the send is the backpressure: a slow
                        // reader slows its own stream only.
                        if sink
                            .send((fetch_response(p, r), WriteFlags::default()))
                            .await
                            .is_err()
                        {
                            return; // the client went away
                        }
                    }
                    Err(e) => {
                        let _ = sink.fail(error_to_status(&e)).await;
                        return;
                    }
                }
            }
        });
    }

    fn list_offsets(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::ListOffsetsRequest,
        sink: UnarySink<pb::ListOffsetsResponse>,
    ) {
        if let Err(st) = self.0.check(&ctx) {
            return fail_now(&ctx, sink, st);
        }
        match self.0.engine.list_offsets(
            req.get_topic(),
            req.get_partition(),
            req.get_timestamp_ms(),
        ) {
            Ok(rx) => reply_later(&ctx, sink, rx, |o| {
                let mut r = pb::ListOffsetsResponse::new();
                r.set_offset(o);
                r
            }),
            Err(e) => fail_now(&ctx, sink, error_to_status(&e)),
        }
    }

    fn commit_offset(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::CommitOffsetRequest,
        sink: UnarySink<pb::CommitOffsetResponse>,
    ) {
        self.0.blocking(
            &ctx,
            sink,
            move |e| {
                e.commit_offset(
                    req.get_group(),
                    req.get_topic(),
                    req.get_partition(),
                    req.get_offset(),
                    req.get_metadata(),
                )
            },
            |()| pb::CommitOffsetResponse::new(),
        );
    }

    fn get_committed_offset(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::GetCommittedOffsetRequest,
        sink: UnarySink<pb::GetCommittedOffsetResponse>,
    ) {
        self.0.blocking(
            &ctx,
            sink,
            move |e| e.committed_offset(req.get_group(), req.get_topic(), req.get_partition()),
            |o| {
                let mut r = pb::GetCommittedOffsetResponse::new();
                if let Some(o) = o {
                    r.set_found(true);
                    r.set_offset(o.offset);
                    r.set_metadata(o.metadata);
                }
                r
            },
        );
    }

    fn list_groups(
        &mut self,
        ctx: RpcContext<'_>,
        _req: pb::ListGroupsRequest,
        sink: UnarySink<pb::ListGroupsResponse>,
    ) {
        self.0.blocking(
            &ctx,
            sink,
            |e| e.groups(),
            |groups| {
                let mut r = pb::ListGroupsResponse::new();
                r.set_groups(groups.into());
                r
            },
        );
    }

    fn describe_group(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::DescribeGroupRequest,
        sink: UnarySink<pb::DescribeGroupResponse>,
    ) {
        let group = req.get_group().to_string();
        self.0.blocking(
            &ctx,
            sink,
            move |e| e.group_offsets(req.get_group()),
            move |offsets| {
                let mut r = pb::DescribeGroupResponse::new();
                r.set_group(group);
                for o in offsets {
                    let mut c = pb::CommittedOffset::new();
                    c.set_topic(o.topic);
                    c.set_partition(o.partition);
                    c.set_offset(o.offset);
                    c.set_metadata(o.metadata);
                    c.set_updated_at_ms(o.updated_at_ms);
                    r.mut_offsets().push(c);
                }
                r
            },
        );
    }
}
