//! What every handler shares: the engine, the auth check, request latency
//! histograms, and the small blocking pool for calls that wait on SQLite or
//! object deletes (never on a completion-queue thread).

use super::status::{fail_now, reply_later};
use super::streams::StreamSlots;
use crate::engine::Engine;
use crate::error::Error;
use crate::membership::Memberships;
use crate::metrics::Histogram;
use crate::util::sync::lock;
use crate::util::thread::{self, Worker};
use futures::channel::oneshot;
use grpcio::{RpcContext, RpcStatus, RpcStatusCode, UnarySink};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

type Job = Box<dyn FnOnce() + Send>;

/// Metadata calls queued for the blocking pool beyond which new ones are
/// refused with RESOURCE_EXHAUSTED (the queue does not grow without bound).
const BLOCKING_QUEUE: usize = 1024;

/// A few named threads for calls that block briefly (SQLite, object
/// deletes), so they stay off grpcio's completion-queue threads.
#[derive(Clone)]
pub struct BlockingPool {
    /// `None` asks one thread to stop.
    tx: crossbeam_channel::Sender<Option<Job>>,
    workers: Arc<Mutex<Vec<Worker>>>,
}

impl BlockingPool {
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded::<Option<Job>>(BLOCKING_QUEUE);
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = rx.clone();
            workers.push(thread::spawn(format!("admin-{i}"), move || {
                while let Ok(Some(job)) = rx.recv() {
                    job();
                }
            })?);
        }
        Ok(BlockingPool {
            tx,
            workers: Arc::new(Mutex::new(workers)),
        })
    }

    /// Queues `f`; RESOURCE_EXHAUSTED when too many calls are waiting.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<oneshot::Receiver<T>, Error> {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(f());
        });
        match self.tx.try_send(Some(job)) {
            Ok(()) => Ok(rx),
            Err(crossbeam_channel::TrySendError::Full(_)) => Err(Error::Backpressure(format!(
                "{BLOCKING_QUEUE} administrative calls are already waiting; retry later"
            ))),
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => Err(Error::shutting_down()),
        }
    }

    /// Lets queued jobs finish, then stops the threads (each waited for
    /// until `deadline`: a job may be stuck on a store that does not answer).
    pub fn shutdown(&self, deadline: Instant) {
        let workers = std::mem::take(&mut *lock(&self.workers));
        for _ in &workers {
            // Waits for room: the jobs ahead of it finish first.
            let _ = self.tx.send_deadline(None, deadline);
        }
        for w in workers {
            w.join_until(deadline);
        }
    }
}

/// Request latencies seen by the handlers (receipt to reply).
#[derive(Debug, Default)]
pub struct Latencies {
    pub produce: Histogram,
    pub fetch: Histogram,
    /// A subscription's records ready → sent (the stream's send awaited).
    pub subscribe_send: Histogram,
}

/// What every handler shares.
#[derive(Clone)]
pub struct Shared {
    pub engine: Arc<Engine>,
    pub latencies: Arc<Latencies>,
    pub auth_token: Option<Arc<str>>,
    pub blocking: BlockingPool,
    pub shutting_down: Arc<AtomicBool>,
    pub(super) round_robin: Arc<AtomicU32>,
    pub(super) streams: Arc<StreamSlots>,
    /// Groups' members (Kafka consumers), when a coordinator keeps them.
    pub memberships: Option<Arc<dyn Memberships>>,
}

impl Shared {
    pub fn new(
        engine: Arc<Engine>,
        auth_token: Option<String>,
        blocking: BlockingPool,
        max_streams: usize,
        memberships: Option<Arc<dyn Memberships>>,
    ) -> Self {
        Shared {
            memberships,
            streams: StreamSlots::new(max_streams),
            engine,
            latencies: Arc::new(Latencies::default()),
            auth_token: auth_token.map(Arc::from),
            blocking,
            shutting_down: Arc::new(AtomicBool::new(false)),
            round_robin: Arc::new(AtomicU32::new(0)),
        }
    }

    pub(super) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// UNAVAILABLE once shutting down; UNAUTHENTICATED unless the call
    /// carries `authorization: Bearer TOKEN` (compared in constant time),
    /// when a token is configured.
    pub(super) fn check(&self, ctx: &RpcContext<'_>) -> Result<(), RpcStatus> {
        if self.is_shutting_down() {
            return Err(super::status::error_to_status(&Error::shutting_down()));
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
            Err(RpcStatus::with_message(
                RpcStatusCode::UNAUTHENTICATED,
                "this server requires metadata `authorization: Bearer <token>` with the right token"
                    .to_string(),
            ))
        }
    }

    /// Checks the call, runs `f` on the blocking pool (SQLite and object
    /// deletes stay off the completion-queue threads) and replies with
    /// `map` of its result.
    pub(super) fn blocking<T, R>(
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
        match self.blocking.run(move || f(&engine)) {
            Ok(rx) => reply_later(ctx, sink, rx, map),
            Err(e) => fail_now(ctx, sink, super::status::error_to_status(&e)),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blocking_queue_is_bounded_and_drains_at_shutdown() {
        let pool = BlockingPool::start(1).unwrap();
        let (release, held) = crossbeam_channel::bounded::<()>(0);
        let (started, running) = crossbeam_channel::bounded::<()>(1);
        // One job holds the only thread; the queue fills behind it.
        let first = pool
            .run(move || {
                started.send(()).unwrap();
                held.recv().unwrap();
            })
            .unwrap();
        running.recv().unwrap();
        let queued: Vec<_> = (0..BLOCKING_QUEUE)
            .map(|i| pool.run(move || i).unwrap())
            .collect();
        match pool.run(|| 0) {
            Err(e) => assert!(matches!(e, Error::Backpressure(_)), "{e:?}"),
            Ok(_) => panic!("the queue took more than {BLOCKING_QUEUE} jobs"),
        }
        release.send(()).unwrap();
        pool.shutdown(Instant::now() + std::time::Duration::from_secs(10));
        assert!(futures::executor::block_on(first).is_ok());
        for (i, rx) in queued.into_iter().enumerate() {
            assert_eq!(futures::executor::block_on(rx).unwrap(), i);
        }
        assert!(matches!(pool.run(|| 0), Err(Error::Unavailable(_))));
    }
}
