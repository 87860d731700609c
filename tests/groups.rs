//! Consumer-group offsets through the engine as a library: the bucket
//! checkpoint is a base plus a delta of what changed (its size follows the
//! groups that commit, not every group there is), a rebuild reads both, a
//! deleted group stays deleted, and the number of groups is capped.

mod common;

use common::engine::{config, topic};
use std::sync::Arc;
use std::time::Duration;
use streamhouse::object_store::{MemoryStore, ObjectStore};
use streamhouse::{Acks, Engine, Error, Record};

fn object_len(store: &MemoryStore, key: &str) -> Option<usize> {
    store.get(key).ok().map(|b| b.len())
}

#[test]
fn checkpoints_write_what_changed_and_a_rebuild_reads_base_and_delta() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(config(dir.path()), store.clone()).unwrap();
    engine.create_topic(&topic("t", 2)).unwrap();
    // Offsets past a partition's log are clamped at a start: give the log
    // room (uploaded, so a new disk sees it).
    for p in 0..2 {
        let records = (0..10)
            .map(|i| Record {
                offset: 0,
                timestamp_ms: 0,
                key: None,
                value: Some(format!("r{i}").into_bytes()),
                headers: vec![],
            })
            .collect();
        engine
            .produce_sync("t", p, records, Acks::Uploaded)
            .unwrap();
    }
    // 300 idle groups, each with 1 KiB of metadata.
    let meta = "m".repeat(1024);
    for g in 0..300 {
        engine
            .commit_offset(&format!("idle-{g}"), "t", 0, 7, &meta)
            .unwrap();
    }
    engine.checkpoint_groups();
    let base = store.get("groups/offsets").unwrap();
    assert!(base.len() > 300 * 2048, "{} bytes", base.len());
    // One active group commits, checkpoint after checkpoint: only the
    // delta is written, and it stays small.
    for round in 1..=5 {
        engine.commit_offset("active", "t", 1, round, "").unwrap();
        engine.checkpoint_groups();
    }
    assert_eq!(
        store.get("groups/offsets").unwrap(),
        base,
        "the base was not rewritten"
    );
    let delta = object_len(&store, "groups/offsets-delta").unwrap();
    assert!(delta < 1024, "the delta is {delta} bytes");
    // A deletion cannot be said by a delta: the next checkpoint is a base.
    engine.delete_group("idle-0").unwrap();
    assert!(matches!(
        engine.delete_group("idle-0"),
        Err(Error::NotFound(_))
    ));
    engine.commit_offset("active", "t", 1, 6, "").unwrap();
    engine.checkpoint_groups();
    assert_ne!(store.get("groups/offsets").unwrap(), base, "a new base");
    engine.commit_offset("active", "t", 1, 7, "").unwrap();
    engine.commit_offset("idle-1", "t", 0, 8, "x").unwrap();
    engine.checkpoint_groups();
    engine.shutdown(Duration::from_secs(5));
    drop(engine);

    // A new disk: base and delta together.
    let fresh = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(fresh.path()), store).unwrap();
    let groups = engine.groups().unwrap();
    assert_eq!(groups.len(), 300, "299 idle groups and the active one");
    assert!(!groups.contains(&"idle-0".to_string()));
    let active = engine.committed_offset("active", "t", 1).unwrap().unwrap();
    assert_eq!(active.offset, 7);
    let one = engine.committed_offset("idle-1", "t", 0).unwrap().unwrap();
    assert_eq!((one.offset, one.metadata.as_str()), (8, "x"));
    let two = engine.committed_offset("idle-2", "t", 0).unwrap().unwrap();
    assert_eq!((two.offset, two.metadata.len()), (7, 1024));
    engine.shutdown(Duration::from_secs(5));
}

#[test]
fn the_number_of_groups_is_capped_and_deleting_one_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.max_groups = 3;
    let engine = Engine::open(c, Arc::new(MemoryStore::new())).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    for g in ["a", "b", "c"] {
        engine.commit_offset(g, "t", 0, 0, "").unwrap();
    }
    let err = engine.commit_offset("d", "t", 0, 0, "").unwrap_err();
    assert!(
        matches!(&err, Error::Backpressure(m) if m.contains("3 groups")),
        "{err:?}"
    );
    // An existing group still commits.
    engine.commit_offset("a", "t", 0, 0, "").unwrap();
    engine.delete_group("b").unwrap();
    engine.commit_offset("d", "t", 0, 0, "").unwrap();
    engine.shutdown(Duration::from_secs(5));
}
