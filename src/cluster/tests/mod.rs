//! The same behaviour asked of the in-memory store and of a real etcd
//! (`STREAMHOUSE_TEST_ETCD=http://host:port`, which `scripts/etcd-server.sh
//! env` prints; with `STREAMHOUSE_REQUIRE_ETCD=1` its absence fails the
//! test instead of skipping the etcd half). Each etcd test works under a
//! prefix of its own.

use super::lease::{LeaseKeeper, LeaseState};
use super::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn etcd() -> Option<EtcdCoordination> {
    match std::env::var("STREAMHOUSE_TEST_ETCD") {
        Ok(url) if !url.is_empty() => Some(EtcdCoordination::new(&url).unwrap()),
        _ => {
            assert!(
                std::env::var("STREAMHOUSE_REQUIRE_ETCD").as_deref() != Ok("1"),
                "STREAMHOUSE_REQUIRE_ETCD=1 but STREAMHOUSE_TEST_ETCD is not set (scripts/etcd-server.sh start)"
            );
            eprintln!("no STREAMHOUSE_TEST_ETCD: the etcd half is skipped");
            None
        }
    }
}

/// A prefix no other test (or earlier run) uses.
fn prefix(test: &str) -> Vec<u8> {
    format!(
        "/streamhouse-test/{test}/{}-{}/",
        std::process::id(),
        crate::util::clock::now_ms()
    )
    .into_bytes()
}

fn key(p: &[u8], k: &str) -> Vec<u8> {
    [p, k.as_bytes()].concat()
}

/// Runs `check` on the in-memory store and, when there is one, on etcd.
fn on_both(test: &str, check: impl Fn(&dyn Coordination, &[u8])) {
    check(&MemoryCoordination::new(), &prefix(test));
    if let Some(e) = etcd() {
        check(&e, &prefix(test));
    }
}

fn put(key: &[u8], value: &str, lease: LeaseId) -> Op {
    Op::Put {
        key: key.to_vec(),
        value: value.as_bytes().to_vec(),
        lease,
    }
}

#[test]
fn keys_carry_create_and_mod_revisions_and_a_prefix_lists_only_its_own() {
    on_both("revisions", |c, p| {
        let a = key(p, "a");
        let r1 = c.put(&a, b"1", 0).unwrap();
        let r2 = c.put(&a, b"2", 0).unwrap();
        assert!(r2 > r1);
        let kv = c.get(&a).unwrap().unwrap();
        assert_eq!(
            (kv.value.as_slice(), kv.create_revision, kv.mod_revision),
            (&b"2"[..], r1, r2)
        );
        c.put(&key(p, "b"), b"x", 0).unwrap();
        // A sibling prefix that shares the first bytes is not listed.
        let other = [&p[..p.len() - 1], b"x/c".as_slice()].concat();
        c.put(&other, b"y", 0).unwrap();
        let (kvs, rev) = c.list(p).unwrap();
        let keys: Vec<Vec<u8>> = kvs.iter().map(|kv| kv.key.clone()).collect();
        assert_eq!(keys, vec![a.clone(), key(p, "b")]);
        assert!(rev >= r2);
        // Deleted and created again: a new create revision (an epoch).
        c.txn(&[], &[Op::Delete(a.clone())], &[]).unwrap();
        assert_eq!(c.get(&a).unwrap(), None);
        let r3 = c.put(&a, b"3", 0).unwrap();
        assert_eq!(c.get(&a).unwrap().unwrap().create_revision, r3);
        assert!(r3 > r2);
    });
}

#[test]
fn only_one_of_two_creates_wins_and_the_loser_reads_the_winner() {
    on_both("claim", |c, p| {
        let k = key(p, "leader");
        let claim = |who: &str| {
            c.txn(
                &[Compare::CreateRevision(k.clone(), 0)],
                &[put(&k, who, 0)],
                &[Op::Get(k.clone())],
            )
            .unwrap()
        };
        let first = claim("node-1");
        assert!(first.succeeded);
        assert!(first.gets.is_empty());
        let second = claim("node-2");
        assert!(!second.succeeded);
        let holder = second.gets[0].clone().unwrap();
        assert_eq!(holder.value, b"node-1");
        assert_eq!(holder.create_revision, first.revision);
        // A write fenced on the holder's revision: the old one fails.
        let fenced = |rev: i64| {
            c.txn(
                &[Compare::CreateRevision(k.clone(), rev)],
                &[put(&key(p, "commit"), "x", 0)],
                &[],
            )
            .unwrap()
            .succeeded
        };
        assert!(fenced(holder.create_revision));
        assert!(!fenced(holder.create_revision - 1));
        assert!(
            c.txn(&[Compare::Value(k.clone(), b"node-1".to_vec())], &[], &[])
                .unwrap()
                .succeeded
        );
        assert!(
            !c.txn(&[Compare::ModRevision(k.clone(), 0)], &[], &[])
                .unwrap()
                .succeeded
        );
    });
}

#[test]
fn a_revoked_lease_takes_its_keys_and_refuses_renewals_and_puts() {
    on_both("lease", |c, p| {
        let (lease, ttl) = c.grant(Duration::from_secs(30)).unwrap();
        assert!(lease != 0 && ttl >= Duration::from_secs(30));
        let k = key(p, "member");
        c.put(&k, b"node-1", lease).unwrap();
        assert_eq!(c.get(&k).unwrap().unwrap().lease, lease);
        assert!(c.keep_alive(lease).unwrap() >= Duration::from_secs(29));
        c.revoke(lease).unwrap();
        assert_eq!(c.get(&k).unwrap(), None);
        assert_eq!(c.keep_alive(lease), Err(CoordError::LeaseNotFound));
        assert_eq!(c.put(&k, b"again", lease), Err(CoordError::LeaseNotFound));
        assert_eq!(c.revoke(lease), Err(CoordError::LeaseNotFound));
    });
}

#[test]
fn an_expired_lease_takes_its_keys() {
    let mem = MemoryCoordination::new();
    let p = prefix("expiry");
    let (lease, _) = mem.grant(Duration::from_secs(2)).unwrap();
    mem.put(&key(&p, "k"), b"v", lease).unwrap();
    mem.advance(Duration::from_millis(1500));
    assert!(mem.get(&key(&p, "k")).unwrap().is_some());
    mem.advance(Duration::from_millis(600));
    assert_eq!(mem.get(&key(&p, "k")).unwrap(), None);
    assert_eq!(mem.keep_alive(lease), Err(CoordError::LeaseNotFound));

    // The same against etcd, in real time (its shortest TTL is about 2 s).
    let Some(e) = etcd() else { return };
    let p = prefix("expiry");
    let (lease, ttl) = e.grant(Duration::from_secs(2)).unwrap();
    e.put(&key(&p, "k"), b"v", lease).unwrap();
    let deadline = Instant::now() + ttl + Duration::from_secs(10);
    while e.get(&key(&p, "k")).unwrap().is_some() {
        assert!(Instant::now() < deadline, "the key outlived its lease");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(e.keep_alive(lease), Err(CoordError::LeaseNotFound));
}

#[test]
fn an_unreachable_etcd_is_unavailable_and_bad_endpoints_are_refused() {
    // Port 1 on loopback: nothing listens there.
    let e = EtcdCoordination::new("http://127.0.0.1:1").unwrap();
    let started = Instant::now();
    assert!(matches!(e.get(b"k"), Err(CoordError::Unavailable(_))));
    assert!(matches!(
        e.put(b"k", b"v", 0),
        Err(CoordError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(10));
    for bad in [
        "",
        "https://127.0.0.1:2379",
        "http://127.0.0.1",
        "http://:2379",
        "127.0.0.1:x",
    ] {
        assert!(EtcdCoordination::new(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(
        etcd::parse_endpoint("http://10.0.0.1:2379/").unwrap(),
        "10.0.0.1:2379"
    );
}

#[test]
fn a_kept_lease_outlives_its_ttl_and_revokes_at_stop() {
    let check = |c: Arc<dyn Coordination>, p: Vec<u8>| {
        let keeper = LeaseKeeper::start(Arc::clone(&c), Duration::from_secs(2)).unwrap();
        let k = key(&p, "member");
        c.put(&k, b"node-1", keeper.id()).unwrap();
        std::thread::sleep(Duration::from_millis(3500));
        assert!(keeper.may_act());
        assert!(c.get(&k).unwrap().is_some(), "the kept lease expired");
        keeper.stop();
        assert_eq!(c.get(&k).unwrap(), None, "stop did not revoke");
    };
    check(Arc::new(MemoryCoordination::new()), prefix("keeper"));
    if let Some(e) = etcd() {
        check(Arc::new(e), prefix("keeper"));
    }
}

#[test]
fn a_node_that_cannot_renew_stops_acting_before_its_lease_can_expire() {
    let mem = Arc::new(MemoryCoordination::new());
    let keeper = LeaseKeeper::start(mem.clone(), Duration::from_secs(2)).unwrap();
    // etcd gone: the node must stop acting by 80% of the TTL after its
    // last renewal, before the lease can expire in the store (at 100%).
    mem.set_available(false);
    let LeaseState::Held { until } = keeper.state() else {
        panic!("not held at start")
    };
    let cut_off = Instant::now();
    assert!(until <= cut_off + Duration::from_millis(1600));
    while keeper.may_act() {
        assert!(cut_off.elapsed() < Duration::from_secs(2), "still acting");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(Instant::now() <= until + Duration::from_millis(100));
    // Back after the lease expired in the store: lost, for good.
    mem.advance(Duration::from_secs(3));
    mem.set_available(true);
    let deadline = Instant::now() + Duration::from_secs(5);
    while keeper.state() != LeaseState::Lost {
        assert!(Instant::now() < deadline, "the keeper did not see the loss");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!keeper.may_act());
    keeper.stop();
}

mod control;
mod placement;
mod registry;

#[test]
fn a_dead_endpoint_is_skipped_for_the_next_live_one() {
    let Some(url) = std::env::var("STREAMHOUSE_TEST_ETCD")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        return;
    };
    // The first endpoint refuses connections; the second is etcd.
    let e = EtcdCoordination::new(&format!("http://127.0.0.1:1,{url}")).unwrap();
    let p = prefix("endpoints");
    // A read tries every endpoint before it fails: it finds etcd.
    assert_eq!(e.get(&key(&p, "k")).unwrap(), None);
    // Writes go to the endpoint that answered last.
    e.put(&key(&p, "k"), b"v", 0).unwrap();
    // A fresh client's first write is not retried on the next endpoint
    // (it may have been applied), but moves the client on: the second
    // write succeeds.
    let fresh = EtcdCoordination::new(&format!("http://127.0.0.1:1,{url}")).unwrap();
    assert!(matches!(
        fresh.put(&key(&p, "k2"), b"v", 0),
        Err(CoordError::Unavailable(_))
    ));
    fresh.put(&key(&p, "k2"), b"v", 0).unwrap();
    assert_eq!(e.get(&key(&p, "k2")).unwrap().unwrap().value, b"v");
}

#[test]
fn a_watch_hears_of_changes_under_its_prefix_only() {
    on_both("watch", |c, p| {
        let w = c.watch(p).unwrap();
        let next = || w.changes.recv_timeout(Duration::from_secs(5));
        // etcd sets a watch up asynchronously: a first change may come
        // before it is in place, so the test writes until one is heard.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "the watch heard nothing");
            c.put(&key(p, "warm-up"), b"x", 0).unwrap();
            if w.changes.recv_timeout(Duration::from_millis(200)).is_ok() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        while w.changes.try_recv().is_ok() {}
        // Outside the prefix: nothing. Inside: heard, with the revision.
        let outside = [&p[..p.len() - 1], b"x/k".as_slice()].concat();
        c.put(&outside, b"v", 0).unwrap();
        let r = c.put(&key(p, "k"), b"v", 0).unwrap();
        assert_eq!(next().unwrap(), r);
        // A lease's keys going is a change too.
        let (lease, _) = c.grant(Duration::from_secs(30)).unwrap();
        c.put(&key(p, "member"), b"n", lease).unwrap();
        assert!(next().is_ok());
        c.revoke(lease).unwrap();
        assert!(next().is_ok());
        assert!(w.changes.recv_timeout(Duration::from_millis(300)).is_err());
    });
}
