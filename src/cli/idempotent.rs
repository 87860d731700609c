//! Exactly-once sending for `streamctl produce` and `perf-produce`: an
//! anonymous producer id from InitProducer, a sequence number per
//! partition, and retries that are safe because the server answers a batch
//! sent again with its original offsets (`duplicate`).

use super::args::CliResult;
use super::client::{Client, CALL_TIMEOUT};
use crate::proto as pb;
use crate::util::xorshift::XorShift64;
use grpcio::RpcStatusCode;
use std::collections::BTreeMap;
use std::time::Duration;

/// One producer session: its id and epoch, and the next sequence number
/// of each partition it wrote to.
pub(super) struct Session {
    pub id: u64,
    pub epoch: u32,
    next: BTreeMap<u32, i64>,
}

impl Session {
    /// Asks the server for a new anonymous producer id (retried like a
    /// batch: an id handed out whose answer was lost is merely unused).
    pub fn init(c: &Client, retries: u32) -> CliResult<Session> {
        let req = pb::InitProducerRequest::new();
        let resp = with_retries(retries, || {
            c.producer.init_producer_opt(&req, c.opt(CALL_TIMEOUT))
        })
        .map_err(|e| c.err("init producer", e))?;
        Ok(Session {
            id: resp.get_producer_id(),
            epoch: resp.get_epoch(),
            next: BTreeMap::new(),
        })
    }

    /// Makes `req` (its records all for `partition`) this session's next
    /// batch there: the producer fields and the partition's next sequence.
    /// The caller sends it until it is answered, never with other records.
    pub fn stamp(&mut self, req: &mut pb::ProduceRequest, partition: u32) {
        let next = self.next.entry(partition).or_insert(0);
        req.set_partition(partition);
        req.set_producer_id(self.id);
        req.set_producer_epoch(self.epoch);
        req.set_first_sequence(*next);
        *next += req.get_records().len() as i64;
    }
}

/// The partition has no state for this producer (it expired there, or a
/// node rebuilt from the bucket without it) and wants sequence 0: with one
/// batch in flight per partition, every earlier batch was answered, so the
/// refused one was not written and may go again under a new producer id.
/// The same holds when the whole node forgot the id (NOT_FOUND: it expired).
pub(super) fn state_lost(e: &grpcio::Error, sequence: i64) -> bool {
    match e {
        grpcio::Error::RpcFailure(s) => match s.code() {
            RpcStatusCode::FAILED_PRECONDITION => {
                sequence != 0 && s.message().contains("expected is 0,")
            }
            RpcStatusCode::NOT_FOUND => s.message().contains("unknown producer id"),
            _ => false,
        },
        _ => false,
    }
}

/// Failures after which the batch may or may not have been written, and
/// a retry of the same batch is answered once: the server was down or
/// restarting, or did not answer in time.
pub(super) fn retryable(e: &grpcio::Error) -> bool {
    match e {
        grpcio::Error::RpcFailure(s) => matches!(
            s.code(),
            RpcStatusCode::UNAVAILABLE | RpcStatusCode::DEADLINE_EXCEEDED
        ),
        _ => false,
    }
}

/// Exponential backoff with jitter: 50 ms doubling to 2 s.
pub(super) struct Backoff {
    attempt: u32,
    rng: XorShift64,
}

impl Backoff {
    pub fn new() -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::from(d.subsec_nanos()));
        Backoff {
            attempt: 0,
            rng: XorShift64::new(seed),
        }
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The next wait: half fixed, half random, so many clients that failed
    /// together do not retry together.
    pub fn next_wait(&mut self) -> Duration {
        let cap_ms = (50u64 << self.attempt.min(6)).min(2_000);
        self.attempt += 1;
        Duration::from_millis(cap_ms / 2 + self.rng.next_u64() % (cap_ms / 2 + 1))
    }
}

/// Sends an idempotent request until it is answered, retrying
/// UNAVAILABLE and DEADLINE_EXCEEDED up to `retries` times with backoff.
pub(super) fn send_until_answered(
    c: &Client,
    req: &pb::ProduceRequest,
    retries: u32,
) -> Result<pb::ProduceResponse, grpcio::Error> {
    with_retries(retries, || {
        c.producer.produce_opt(req, c.opt(Duration::from_secs(30)))
    })
}

/// Runs `call` until it succeeds, fails with a status that is not
/// [`retryable`], or has been retried `retries` times.
fn with_retries<T>(
    retries: u32,
    mut call: impl FnMut() -> Result<T, grpcio::Error>,
) -> Result<T, grpcio::Error> {
    let mut backoff = Backoff::new();
    loop {
        match call() {
            Err(e) if retryable(&e) && backoff.attempts() < retries => {
                std::thread::sleep(backoff.next_wait());
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::new();
        let waits: Vec<Duration> = (0..10).map(|_| b.next_wait()).collect();
        assert!(waits[0] >= Duration::from_millis(25) && waits[0] <= Duration::from_millis(50));
        assert!(
            waits[9] >= Duration::from_millis(1_000) && waits[9] <= Duration::from_millis(2_000)
        );
        assert_eq!(b.attempts(), 10);
    }

    #[test]
    fn lost_state_is_a_gap_expecting_0_for_a_later_batch() {
        let gap = |m: &str| {
            grpcio::Error::RpcFailure(grpcio::RpcStatus::with_message(
                RpcStatusCode::FAILED_PRECONDITION,
                m.to_string(),
            ))
        };
        let lost = gap("partition t/0, producer 7: sequence gap: the next sequence number expected is 0, the batch starts at 40; ...");
        assert!(state_lost(&lost, 40));
        assert!(!state_lost(&lost, 0));
        let ordinary =
            gap("sequence gap: the next sequence number expected is 30, the batch starts at 40");
        assert!(!state_lost(&ordinary, 40));
        let unavailable =
            grpcio::Error::RpcFailure(grpcio::RpcStatus::new(RpcStatusCode::UNAVAILABLE));
        assert!(!state_lost(&unavailable, 40));
    }

    #[test]
    fn only_unavailable_and_deadline_exceeded_are_retried() {
        let st = |code| grpcio::Error::RpcFailure(grpcio::RpcStatus::new(code));
        assert!(retryable(&st(RpcStatusCode::UNAVAILABLE)));
        assert!(retryable(&st(RpcStatusCode::DEADLINE_EXCEEDED)));
        assert!(!retryable(&st(RpcStatusCode::FAILED_PRECONDITION)));
        assert!(!retryable(&st(RpcStatusCode::INVALID_ARGUMENT)));
    }
}
