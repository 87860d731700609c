//! Idempotent producers through the engine as a library: an id survives a
//! restart before it has written anything, and a producer idle for longer
//! than the expiry is forgotten (its id answers NOT_FOUND), in the registry
//! and in the partition's table, across a restart too.

mod common;

use common::engine::{config, topic};
use std::sync::Arc;
use std::time::Duration;
use streamhouse::engine::ProducerBatch;
use streamhouse::object_store::MemoryStore;
use streamhouse::{Acks, Engine, EngineConfig, Error, Record};

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            offset: 0,
            timestamp_ms: 0,
            key: None,
            value: format!("v{i}").into_bytes(),
            headers: vec![],
        })
        .collect()
}

fn send(engine: &Engine, id: (u64, u32), seq: i64, n: usize) -> Result<(i64, bool), Error> {
    let b = ProducerBatch {
        producer_id: id.0,
        epoch: id.1,
        first_sequence: seq,
    };
    let rx = engine.produce_idempotent("t", 0, records(n), Acks::Wal, b)?;
    let ack = futures::executor::block_on(rx).expect("answered")?;
    Ok((ack.base_offset, ack.duplicate))
}

fn short_expiry(dir: &std::path::Path) -> EngineConfig {
    let mut c = config(dir);
    c.producer_expiry = Duration::from_millis(1_000);
    c.retention_interval = Duration::from_millis(50);
    c.segment_max_age = Duration::from_millis(50);
    c
}

#[test]
fn an_id_is_known_after_a_restart_before_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(config(dir.path()), store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    let id = engine.init_producer("").unwrap();
    engine.shutdown(Duration::from_secs(5));
    drop(engine);
    let engine = Engine::open(config(dir.path()), store).unwrap();
    assert_eq!(send(&engine, id, 0, 2).unwrap(), (0, false));
    assert_eq!(send(&engine, id, 0, 2).unwrap(), (0, true));
    engine.shutdown(Duration::from_secs(5));
}

#[test]
fn an_idle_producer_expires_and_its_id_answers_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(short_expiry(dir.path()), store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    let idle = engine.init_producer("").unwrap();
    let busy = engine.init_producer("").unwrap();
    assert_eq!(send(&engine, idle, 0, 3).unwrap(), (0, false));
    // `busy` keeps writing (and sealing segments) while `idle` does not.
    let mut seq = 0;
    for _ in 0..25 {
        std::thread::sleep(Duration::from_millis(60));
        send(&engine, busy, seq, 1).unwrap();
        seq += 1;
    }
    let err = send(&engine, idle, 0, 3).unwrap_err();
    assert!(
        matches!(&err, Error::NotFound(m) if m.contains("unknown producer id")),
        "{err:?}"
    );
    assert!(!send(&engine, busy, seq, 1).unwrap().1, "a new batch");
    engine.shutdown(Duration::from_secs(5));
    drop(engine);
    // Gone after a restart too (its metadata row and its partition entry
    // expired); the active producer is still known.
    let engine = Engine::open(short_expiry(dir.path()), store).unwrap();
    assert!(matches!(send(&engine, idle, 3, 1), Err(Error::NotFound(_))));
    assert!(send(&engine, busy, seq, 1).unwrap().1, "a retry of it");
    engine.shutdown(Duration::from_secs(5));
}
