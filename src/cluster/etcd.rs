//! [`Coordination`] over etcd's v3 gRPC API, through grpcio (synchronous
//! calls; the lease renewal's bidirectional stream is driven with
//! `block_on`, no async runtime).
//!
//! Endpoints are tried in turn: a call that finds etcd unavailable moves
//! the next call to the next endpoint. Reads are tried on every endpoint
//! before they fail; writes are not tried again here, because a write
//! that timed out may have been applied (the caller decides, knowing what
//! the write was).

use super::{
    Compare, CoordError, CoordResult, Coordination, KeyValue, LeaseId, Op, TxnOutcome, Watch,
};
use crate::proto::etcd::etcdserverpb as pb;
use crate::proto::etcd::etcdserverpb_grpc::{KvClient, LeaseClient, WatchClient};
use crate::util::thread::{spawn, Worker};
use futures::executor::block_on;
use futures::{SinkExt, StreamExt};
use grpcio::{CallOption, ChannelBuilder, RpcStatusCode, WriteFlags};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The deadline of every call.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Clients of one etcd cluster.
pub struct EtcdCoordination {
    endpoints: Vec<Endpoint>,
    /// The endpoint calls go to first.
    current: AtomicUsize,
}

struct Endpoint {
    addr: String,
    kv: KvClient,
    lease: LeaseClient,
    watch: WatchClient,
}

impl std::fmt::Debug for EtcdCoordination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<&str> = self.endpoints.iter().map(|e| e.addr.as_str()).collect();
        f.debug_struct("EtcdCoordination")
            .field("endpoints", &addrs)
            .finish()
    }
}

/// `host:port` from `http://host:port` (or a bare `host:port`).
pub fn parse_endpoint(url: &str) -> Result<String, String> {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "etcd endpoint {url:?}: scheme {scheme:?} is not supported (use http://host:port)"
            ))
        }
        None => url,
    };
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(rest.into()),
        _ => Err(format!("etcd endpoint {url:?} is not http://host:port")),
    }
}

impl EtcdCoordination {
    /// Clients of the comma-separated `endpoints` (`http://host:port`).
    /// Connects lazily: this does not reach etcd.
    pub fn new(endpoints: &str) -> Result<Self, String> {
        let env = Arc::new(
            grpcio::EnvBuilder::new()
                .cq_count(1)
                .name_prefix("etcd-grpc")
                .build(),
        );
        let endpoints = endpoints
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|url| {
                let addr = parse_endpoint(url)?;
                // etcd back after an outage must be found within a
                // fraction of a lease's TTL: grpc's default reconnect
                // backoff grows to two minutes (measured: 4.4-5.3 s lost
                // after a 10 s outage).
                let ch = ChannelBuilder::new(Arc::clone(&env))
                    .initial_reconnect_backoff(Duration::from_millis(100))
                    .max_reconnect_backoff(Duration::from_millis(500))
                    .connect(&addr);
                Ok(Endpoint {
                    kv: KvClient::new(ch.clone()),
                    lease: LeaseClient::new(ch.clone()),
                    watch: WatchClient::new(ch),
                    addr,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if endpoints.is_empty() {
            return Err("no etcd endpoint given".into());
        }
        Ok(EtcdCoordination {
            endpoints,
            current: AtomicUsize::new(0),
        })
    }

    /// `f` on the current endpoint; when etcd is unavailable there, the
    /// next call starts at the next endpoint, and with `every` so does
    /// this one, until each has been tried.
    fn call<T>(
        &self,
        every: bool,
        f: impl Fn(&Endpoint, CallOption) -> grpcio::Result<T>,
    ) -> CoordResult<T> {
        let n = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed) % n;
        let tries = if every { n } else { 1 };
        let mut last = CoordError::Unavailable("no endpoint tried".into());
        for i in 0..tries {
            let at = (start + i) % n;
            let ep = &self.endpoints[at];
            match f(ep, CallOption::default().timeout(CALL_TIMEOUT)).map_err(|e| error(&ep.addr, e))
            {
                Err(e @ CoordError::Unavailable(_)) => {
                    self.current.store((at + 1) % n, Ordering::Relaxed);
                    last = e;
                }
                other => return other,
            }
        }
        Err(last)
    }
}

/// How a gRPC failure reads: unreachable or slow is Unavailable (may be
/// tried again), a missing lease is LeaseNotFound, the rest is a refusal.
fn error(addr: &str, e: grpcio::Error) -> CoordError {
    match &e {
        grpcio::Error::RpcFailure(s) => match s.code() {
            RpcStatusCode::NOT_FOUND if s.message().contains("lease not found") => {
                CoordError::LeaseNotFound
            }
            RpcStatusCode::UNAVAILABLE
            | RpcStatusCode::DEADLINE_EXCEEDED
            | RpcStatusCode::CANCELLED
            | RpcStatusCode::RESOURCE_EXHAUSTED => {
                CoordError::Unavailable(format!("{addr}: {}", s.message()))
            }
            _ => CoordError::Refused(format!("{addr}: {:?} {}", s.code(), s.message())),
        },
        grpcio::Error::RemoteStopped | grpcio::Error::RpcFinished(_) => {
            CoordError::Unavailable(format!("{addr}: {e}"))
        }
        _ => CoordError::Refused(format!("{addr}: {e}")),
    }
}

fn key_value(mut kv: pb::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.take_key(),
        value: kv.take_value(),
        create_revision: kv.get_create_revision(),
        mod_revision: kv.get_mod_revision(),
        lease: kv.get_lease(),
    }
}

fn range_request(key: &[u8], range_end: Option<Vec<u8>>) -> pb::RangeRequest {
    let mut r = pb::RangeRequest::new();
    r.set_key(key.to_vec());
    if let Some(end) = range_end {
        r.set_range_end(end);
    }
    r
}

fn compare(c: &Compare) -> pb::Compare {
    let mut out = pb::Compare::new();
    out.set_result(pb::Compare_CompareResult::EQUAL);
    match c {
        Compare::CreateRevision(k, r) => {
            out.set_target(pb::Compare_CompareTarget::CREATE);
            out.set_key(k.clone());
            out.set_create_revision(*r);
        }
        Compare::ModRevision(k, r) => {
            out.set_target(pb::Compare_CompareTarget::MOD);
            out.set_key(k.clone());
            out.set_mod_revision(*r);
        }
        Compare::Value(k, v) => {
            out.set_target(pb::Compare_CompareTarget::VALUE);
            out.set_key(k.clone());
            out.set_value(v.clone());
        }
    }
    out
}

fn request_op(op: &Op) -> pb::RequestOp {
    let mut out = pb::RequestOp::new();
    match op {
        Op::Put { key, value, lease } => {
            let mut p = pb::PutRequest::new();
            p.set_key(key.clone());
            p.set_value(value.clone());
            p.set_lease(*lease);
            out.set_request_put(p);
        }
        Op::Delete(key) => {
            let mut d = pb::DeleteRangeRequest::new();
            d.set_key(key.clone());
            out.set_request_delete_range(d);
        }
        Op::DeletePrefix(prefix) => {
            let mut d = pb::DeleteRangeRequest::new();
            d.set_key(prefix.clone());
            d.set_range_end(super::prefix_end(prefix));
            out.set_request_delete_range(d);
        }
        Op::Get(key) => out.set_request_range(range_request(key, None)),
    }
    out
}

impl Coordination for EtcdCoordination {
    fn get(&self, key: &[u8]) -> CoordResult<Option<KeyValue>> {
        let req = range_request(key, None);
        let mut resp = self.call(true, |ep, opt| ep.kv.range_opt(&req, opt))?;
        Ok(resp.take_kvs().into_iter().next().map(key_value))
    }

    fn list(&self, prefix: &[u8]) -> CoordResult<(Vec<KeyValue>, i64)> {
        let req = range_request(prefix, Some(super::prefix_end(prefix)));
        let mut resp = self.call(true, |ep, opt| ep.kv.range_opt(&req, opt))?;
        let revision = resp.get_header().get_revision();
        Ok((
            resp.take_kvs().into_iter().map(key_value).collect(),
            revision,
        ))
    }

    fn txn(&self, when: &[Compare], then: &[Op], otherwise: &[Op]) -> CoordResult<TxnOutcome> {
        let mut req = pb::TxnRequest::new();
        req.set_compare(when.iter().map(compare).collect());
        req.set_success(then.iter().map(request_op).collect());
        req.set_failure(otherwise.iter().map(request_op).collect());
        let mut resp = self.call(false, |ep, opt| ep.kv.txn_opt(&req, opt))?;
        let gets = resp
            .take_responses()
            .into_iter()
            .filter(|r| r.has_response_range())
            .map(|mut r| {
                r.take_response_range()
                    .take_kvs()
                    .into_iter()
                    .next()
                    .map(key_value)
            })
            .collect();
        Ok(TxnOutcome {
            succeeded: resp.get_succeeded(),
            revision: resp.get_header().get_revision(),
            gets,
        })
    }

    fn grant(&self, ttl: Duration) -> CoordResult<(LeaseId, Duration)> {
        let mut req = pb::LeaseGrantRequest::new();
        req.set_TTL(ttl.as_secs().max(1) as i64);
        let resp = self.call(false, |ep, opt| ep.lease.lease_grant_opt(&req, opt))?;
        if !resp.get_error().is_empty() {
            return Err(CoordError::Refused(resp.get_error().to_string()));
        }
        Ok((
            resp.get_ID(),
            Duration::from_secs(resp.get_TTL().max(0) as u64),
        ))
    }

    fn keep_alive(&self, lease: LeaseId) -> CoordResult<Duration> {
        let mut req = pb::LeaseKeepAliveRequest::new();
        req.set_ID(lease);
        let resp = self.call(true, |ep, opt| {
            let (mut tx, mut rx) = ep.lease.lease_keep_alive_opt(opt)?;
            block_on(tx.send((req.clone(), WriteFlags::default())))?;
            let answer = block_on(rx.next());
            // The stream ends here; a failure to close it changes nothing.
            let _ = block_on(tx.close());
            match answer {
                Some(r) => r,
                None => Err(grpcio::Error::RemoteStopped),
            }
        })?;
        // etcd answers an expired or unknown lease with TTL 0, not an error.
        match resp.get_TTL() {
            ttl if ttl > 0 => Ok(Duration::from_secs(ttl as u64)),
            _ => Err(CoordError::LeaseNotFound),
        }
    }

    fn watch(&self, prefix: &[u8]) -> CoordResult<Watch> {
        let mut create = pb::WatchCreateRequest::new();
        create.set_key(prefix.to_vec());
        create.set_range_end(super::prefix_end(prefix));
        let mut req = pb::WatchRequest::new();
        req.set_create_request(create);
        // The stream lives as long as the watch: no deadline on the call.
        // etcd's first answer ("created") is read by the thread: a stream
        // that never gets going ends the thread and disconnects the
        // channel, which tells the caller to watch again.
        let (tx, rx) = self.call(true, |ep, _| {
            let (mut tx, rx) = ep.watch.watch_opt(CallOption::default())?;
            block_on(tx.send((req.clone(), WriteFlags::default())))?;
            Ok((tx, rx))
        })?;
        let (changes_tx, changes) = crossbeam_channel::unbounded();
        let mut rx = rx;
        let worker = spawn("etcd-watch", move || {
            while let Some(Ok(resp)) = block_on(rx.next()) {
                if resp.get_canceled() {
                    break;
                }
                if !resp.get_events().is_empty()
                    && changes_tx.send(resp.get_header().get_revision()).is_err()
                {
                    break;
                }
            }
        })
        .map_err(|e| CoordError::Unavailable(format!("cannot start a watch thread: {e}")))?;
        Ok(Watch {
            changes,
            _end: Some(Box::new(EndWatch {
                tx: Some(tx),
                worker: Some(worker),
            })),
        })
    }

    fn revoke(&self, lease: LeaseId) -> CoordResult<()> {
        let mut req = pb::LeaseRevokeRequest::new();
        req.set_ID(lease);
        self.call(false, |ep, opt| ep.lease.lease_revoke_opt(&req, opt))
            .map(|_| ())
    }
}

/// Ends an etcd watch when dropped: the call is cancelled (closing our
/// side would not do: etcd keeps a watch stream open until the client
/// goes), and the thread reading it returns.
struct EndWatch {
    tx: Option<grpcio::ClientDuplexSender<pb::WatchRequest>>,
    worker: Option<Worker>,
}

impl Drop for EndWatch {
    fn drop(&mut self) {
        if let Some(mut tx) = self.tx.take() {
            tx.cancel();
        }
        if let Some(w) = self.worker.take() {
            w.join_until(Instant::now() + CALL_TIMEOUT);
        }
    }
}
