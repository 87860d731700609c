//! Cluster mode with the real binaries: three nodes on loopback sharing
//! the S3 test server and etcd. The leader of a partition is killed (-9)
//! again and again under an idempotent producer with `acks=uploaded`: the
//! partition is led again within seconds, and every acknowledged record
//! is in the log once, at the offset it was acknowledged with.

mod common;

use common::cluster::{leaders, wait_for_leaders, Cluster, Routed, TTL_MS};
use grpcio::RpcStatusCode;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use streamhouse::proto as pb;

const TOPIC: &str = "orders";
const PARTITIONS: u32 = 6;
/// Records per batch; record `n` of a partition has the value `{p}-{n}`.
const BATCH: i64 = 10;
/// Kills of partition 0's leader.
const KILLS: usize = 5;

/// An acknowledgement: when, from which node, for which sequence, at
/// which offset.
#[derive(Clone, Debug)]
struct Ack {
    at: Instant,
    addr: String,
    seq: i64,
    base_offset: i64,
}

/// What the producers share with the test.
#[derive(Default)]
struct Shared {
    /// The nodes running, as the test last set them.
    addrs: Mutex<Vec<String>>,
    acks: Mutex<HashMap<u32, Vec<Ack>>>,
    stop: AtomicBool,
}

fn batch(p: u32, producer: (u64, u32), seq: i64) -> pb::ProduceRequest {
    let mut req = pb::ProduceRequest::new();
    req.set_topic(TOPIC.into());
    req.set_partition(p);
    req.set_producer_id(producer.0);
    req.set_producer_epoch(producer.1);
    req.set_first_sequence(seq);
    req.set_acks(pb::Acks::ACKS_UPLOADED);
    for n in seq..seq + BATCH {
        let value = format!("{p}-{n}");
        req.mut_records()
            .push(common::grpc::record(b"", value.as_bytes(), &[]));
    }
    req
}

/// One partition's producer: one batch in flight, sent again (same
/// sequence) to whichever node leads until it is acknowledged.
fn produce(shared: &Shared, p: u32, producer: (u64, u32)) {
    let mut routed = Routed::default();
    let mut leader: Option<String> = None;
    let mut seq = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(addr) = leader.clone() else {
            let addrs = shared.addrs.lock().unwrap().clone();
            leader = leaders(&addrs)
                .remove(&(TOPIC.to_string(), p))
                .filter(|a| addrs.contains(a));
            if leader.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            continue;
        };
        let opt = grpcio::CallOption::default().timeout(Duration::from_secs(3));
        match routed
            .to(&addr)
            .producer
            .produce_opt(&batch(p, producer, seq), opt)
        {
            Ok(r) => {
                assert!(r.get_errors().is_empty(), "{:?}", r.get_errors());
                let a = &r.get_acks()[0];
                assert_eq!(a.get_count(), BATCH);
                let ack = Ack {
                    at: Instant::now(),
                    addr,
                    seq,
                    base_offset: a.get_base_offset(),
                };
                shared.acks.lock().unwrap().entry(p).or_default().push(ack);
                seq += BATCH;
            }
            Err(grpcio::Error::RpcFailure(s))
                if matches!(
                    s.code(),
                    RpcStatusCode::UNAVAILABLE | RpcStatusCode::DEADLINE_EXCEEDED
                ) =>
            {
                leader = None;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("partition {p}: produce to {addr}: {e:?}"),
        }
    }
}

/// Kills partition 0's leader and returns how long until partition 0's
/// first acknowledgement from another node; then starts the killed node
/// again on its data dir.
fn kill_leader_of_p0(c: &mut Cluster, shared: &Shared) -> Duration {
    let addrs = c.addrs();
    let victim_addr = leaders(&addrs)
        .remove(&(TOPIC.to_string(), 0))
        .expect("partition 0 has a leader");
    let victim = c.index_of(&victim_addr).expect("the leader is one of ours");
    let killed_at = Instant::now();
    c.kill(victim);
    *shared.addrs.lock().unwrap() = c.addrs();
    let failover = loop {
        let first = shared.acks.lock().unwrap().get(&0).and_then(|acks| {
            acks.iter()
                .find(|a| a.at > killed_at && a.addr != victim_addr)
                .map(|a| a.at - killed_at)
        });
        if let Some(d) = first {
            break d;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "partition 0 not acknowledged by another node 30 s after its leader was killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    // Its lease has expired (its partitions moved): it may join again.
    c.restart(victim);
    *shared.addrs.lock().unwrap() = c.addrs();
    failover
}

/// Producers of every partition, running until [`Producers::finish`].
struct Producers {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Producers {
    /// Creates the topic on `c`, waits for its leaders, and starts one
    /// idempotent producer per partition.
    fn start(c: &Cluster) -> Producers {
        let first = common::clients_for(&c.addrs()[0]);
        common::grpc::create(&first, TOPIC, PARTITIONS);
        wait_for_leaders(&c.addrs(), TOPIC, PARTITIONS);
        let producer = {
            let r = first
                .producer
                .init_producer(&pb::InitProducerRequest::new())
                .unwrap();
            (r.get_producer_id(), r.get_epoch())
        };
        let shared = Arc::new(Shared::default());
        *shared.addrs.lock().unwrap() = c.addrs();
        let threads = (0..PARTITIONS)
            .map(|p| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || produce(&shared, p, producer))
            })
            .collect();
        Producers { shared, threads }
    }

    /// Stops the producers, then checks that each partition's log is every
    /// acknowledged batch once, in order, at the offsets acknowledged.
    fn finish(self, c: &Cluster) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let acks = std::mem::take(&mut *self.shared.acks.lock().unwrap());
        let logs = partition_logs(&c.addrs());
        for p in 0..PARTITIONS {
            let acked = &acks[&p];
            let end = acked.last().map_or(0, |a| a.seq + BATCH);
            // Each batch once, in order: its records sit at their sequence
            // numbers, and nothing else is in the log.
            for a in acked {
                assert_eq!(
                    a.base_offset, a.seq,
                    "partition {p}: batch {} acknowledged at offset {}",
                    a.seq, a.base_offset
                );
            }
            let expected: Vec<String> = (0..end).map(|n| format!("{p}-{n}")).collect();
            assert_eq!(
                logs[p as usize].len(),
                expected.len(),
                "partition {p}: log length"
            );
            assert!(
                logs[p as usize] == expected,
                "partition {p}: the log is not every acknowledged record once, in order"
            );
        }
    }
}

#[test]
fn killing_a_leader_moves_its_partitions_and_loses_no_acknowledged_record() {
    let Some(mut c) = Cluster::start("cluster-failover", 3) else {
        return;
    };
    let producers = Producers::start(&c);
    std::thread::sleep(Duration::from_secs(1));
    let mut failovers = Vec::new();
    for _ in 0..KILLS {
        failovers.push(kill_leader_of_p0(&mut c, &producers.shared));
        // The restarted node settles for a TTL, then partitions move back.
        std::thread::sleep(Duration::from_millis(2 * TTL_MS));
    }
    failovers.sort();
    println!(
        "failover, kill -9 to the first acknowledgement on partition 0 by another node, over {KILLS} kills (TTL {TTL_MS} ms): p50 {:?}, max {:?}, all {failovers:?}",
        failovers[KILLS / 2],
        failovers[KILLS - 1]
    );
    producers.finish(&c);
}

#[test]
fn ten_seconds_without_etcd_acknowledge_nothing_uploaded_lose_nothing_and_writes_resume() {
    let Some(c) = Cluster::start("cluster-etcd-down", 3) else {
        return;
    };
    let producers = Producers::start(&c);
    std::thread::sleep(Duration::from_secs(1));
    let cut = Instant::now();
    c.etcd.set_up(false);
    std::thread::sleep(Duration::from_secs(10));
    let back = Instant::now();
    c.etcd.set_up(true);
    // Without etcd no commit can be made: past the commits in flight at
    // the cut, nothing is acknowledged as uploaded.
    let during: usize = {
        let acks = producers.shared.acks.lock().unwrap();
        acks.values()
            .flatten()
            .filter(|a| a.at > cut + Duration::from_millis(500) && a.at < back)
            .count()
    };
    assert_eq!(
        during, 0,
        "acknowledged as uploaded while etcd was unreachable"
    );
    // Every partition is written to again, without a restart.
    let deadline = back + Duration::from_secs(60);
    let resumed = loop {
        let last_resumed = {
            let acks = producers.shared.acks.lock().unwrap();
            (0..PARTITIONS)
                .map(|p| {
                    acks.get(&p)?
                        .iter()
                        .find(|a| a.at > back)
                        .map(|a| a.at - back)
                })
                .collect::<Option<Vec<Duration>>>()
        };
        if let Some(times) = last_resumed {
            break times.into_iter().max().unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "writes did not resume within 60 s of etcd's return"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    println!(
        "etcd unreachable for 10 s (TTL {TTL_MS} ms): every partition acknowledged again {resumed:?} after it came back"
    );
    producers.finish(&c);
}

/// Every partition's values, each read from its leader (in parallel: a
/// log of many small segments takes a fetch per segment).
fn partition_logs(addrs: &[String]) -> Vec<Vec<String>> {
    wait_for_leaders(addrs, TOPIC, PARTITIONS);
    let led = leaders(addrs);
    let readers: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let addr = led[&(TOPIC.to_string(), p)].clone();
            std::thread::spawn(move || {
                let c = common::clients_for(&addr);
                common::grpc::record_values(&common::grpc::fetch_all(&c, TOPIC, p, 0))
            })
        })
        .collect();
    readers.into_iter().map(|r| r.join().unwrap()).collect()
}

/// Waits until `p` of `TOPIC` is led by a node other than `not`, asking
/// only the nodes at `addrs`; returns the leader's address.
fn wait_for_new_leader(addrs: &[String], p: u32, not: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(a) = leaders(addrs).remove(&(TOPIC.to_string(), p)) {
            if a != not && addrs.contains(&a) {
                return a;
            }
        }
        assert!(
            Instant::now() < deadline,
            "partition {p} still led by {not} after 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A produce of `values` to partition `p` with `acks`; the base offset.
fn send(addr: &str, p: u32, values: &[String], acks: pb::Acks) -> grpcio::Result<i64> {
    let mut req = pb::ProduceRequest::new();
    req.set_topic(TOPIC.into());
    req.set_partition(p);
    req.set_acks(acks);
    for v in values {
        req.mut_records()
            .push(common::grpc::record(b"", v.as_bytes(), &[]));
    }
    let opt = grpcio::CallOption::default().timeout(Duration::from_secs(15));
    let r = common::clients_for(addr).producer.produce_opt(&req, opt)?;
    Ok(r.get_acks()[0].get_base_offset())
}

/// Partition 0's segment objects in the bucket: (base offset, epoch, key).
fn segments_of_p0(c: &Cluster) -> Vec<(i64, u64, String)> {
    c.bucket
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(&format!("topics/{TOPIC}/")) && k.ends_with(".seg"))
        .filter_map(|k| {
            let mut parts = k.rsplit('/');
            let file = parts.next()?;
            (parts.next()? == "0").then_some(())?;
            let (base, epoch) = file.strip_suffix(".seg")?.split_once('-')?;
            Some((base.parse().ok()?, epoch.parse().ok()?, k.clone()))
        })
        .collect()
}

/// What a fenced leader's upload, finished late, puts in the bucket: a
/// segment of `values` from offset `base` under its old `epoch`, beside
/// `beside` (a key of the same partition).
fn plant_late_segment(c: &Cluster, beside: &str, base: i64, epoch: u64, values: &[String]) {
    use streamhouse::object_store::ObjectStore;
    use streamhouse::segment::{SegmentWriter, DEFAULT_BLOCK_BYTES};
    let mut w = SegmentWriter::new(DEFAULT_BLOCK_BYTES);
    for (i, v) in values.iter().enumerate() {
        w.push_parts(base + i as i64, 1, None, Some(v.as_bytes()), &[])
            .unwrap();
    }
    let (bytes, _) = w.finish().unwrap();
    let dir = beside.rsplit_once('/').unwrap().0;
    c.bucket
        .store
        .put(&format!("{dir}/{base:020}-{epoch}.seg"), &bytes)
        .unwrap();
}

#[test]
fn a_paused_leader_acknowledges_nothing_after_its_lease_and_its_late_upload_is_never_adopted() {
    let Some(mut c) = Cluster::start("cluster-zombie", 3) else {
        return;
    };
    let addrs = c.addrs();
    common::grpc::create(&common::clients_for(&addrs[0]), TOPIC, PARTITIONS);
    wait_for_leaders(&addrs, TOPIC, PARTITIONS);
    let zombie_addr = leaders(&addrs)[&(TOPIC.to_string(), 0)].clone();
    let zombie = c.index_of(&zombie_addr).unwrap();
    let before = common::grpc::tagged("before", 5);
    assert_eq!(
        send(&zombie_addr, 0, &before, pb::Acks::ACKS_UPLOADED).unwrap(),
        0
    );
    let (_, zombie_epoch, first_key) = segments_of_p0(&c).remove(0);
    // In the zombie's WAL only: acknowledged as `acks=wal` means, and
    // lost with the node in a cluster (never committed).
    let wal_only = common::grpc::tagged("wal-only", 3);
    assert_eq!(
        send(&zombie_addr, 0, &wal_only, pb::Acks::ACKS_WAL).unwrap(),
        5
    );
    // Its store cut off, an upload of its waits and retries: when it wakes
    // up it finishes it, late.
    c.nodes[zombie].store.set_up(false);
    let waiting = {
        let addr = zombie_addr.clone();
        std::thread::spawn(move || send(&addr, 0, &["waiting".into()], pb::Acks::ACKS_UPLOADED))
    };
    std::thread::sleep(Duration::from_millis(300));
    c.pause(zombie, true);
    c.nodes[zombie].store.set_up(true);
    // Sent while it is paused: it reads it when it wakes up.
    let in_flight = {
        let addr = zombie_addr.clone();
        std::thread::spawn(move || send(&addr, 0, &["in-flight".into()], pb::Acks::ACKS_WAL))
    };
    let others: Vec<String> = addrs
        .iter()
        .filter(|a| **a != zombie_addr)
        .cloned()
        .collect();
    let next = wait_for_new_leader(&others, 0, &zombie_addr);
    let after = common::grpc::tagged("after", 5);
    assert_eq!(
        send(&next, 0, &after, pb::Acks::ACKS_UPLOADED).unwrap(),
        5,
        "the new leader continues at the commit point"
    );

    c.pause(zombie, false);
    let late = send(&zombie_addr, 0, &["zombie".into()], pb::Acks::ACKS_WAL);
    assert_eq!(common::grpc::code(late), RpcStatusCode::UNAVAILABLE);
    let in_flight = in_flight.join().unwrap();
    assert!(
        in_flight.is_err(),
        "the paused leader acknowledged {in_flight:?} after its lease"
    );
    let waiting = waiting.join().unwrap();
    assert!(
        waiting.is_err(),
        "the paused leader acknowledged {waiting:?} as uploaded"
    );
    // It finds out, stops the partition, and may upload what it had.
    std::thread::sleep(Duration::from_millis(2 * TTL_MS));
    let late_objects: Vec<String> = segments_of_p0(&c)
        .into_iter()
        .filter(|(base, epoch, _)| *epoch == zombie_epoch && *base >= 5)
        .map(|(_, _, key)| key)
        .collect();
    println!("objects the zombie (epoch {zombie_epoch}) uploaded past the commit point: {late_objects:?}");
    // Whether it got to upload or gave up first is a race; what it would
    // have uploaded is planted where no object of the log covers it (an
    // adoption that ignored epochs would take it).
    plant_late_segment(
        &c,
        &first_key,
        10,
        zombie_epoch,
        &common::grpc::tagged("late", 5),
    );

    // The leader now (the new one, or the zombie again once it rejoined
    // and settled) is killed: the next adopts partition 0 from the bucket,
    // and the zombie's objects are not part of its log.
    let current = leaders(&c.addrs())[&(TOPIC.to_string(), 0)].clone();
    c.kill(c.index_of(&current).unwrap());
    let survivors = c.addrs();
    wait_for_new_leader(&survivors, 0, &current);
    let log = &partition_logs(&survivors)[0];
    let expected: Vec<String> = before.iter().chain(&after).cloned().collect();
    assert_eq!(log, &expected);
}

/// The low watermark of `p`, asked of `addr`.
fn low_watermark(addr: &str, p: u32) -> i64 {
    let mut req = pb::ListOffsetsRequest::new();
    req.set_topic(TOPIC.into());
    req.set_partition(p);
    req.set_timestamp_ms(-2);
    common::clients_for(addr)
        .consumer
        .list_offsets(&req)
        .unwrap()
        .get_offset()
}

#[test]
fn retention_runs_on_the_leader_and_its_low_watermark_survives_a_failover() {
    let Some(mut c) = Cluster::start_with("cluster-retention", 3, &["--retention-check-ms", "200"])
    else {
        return;
    };
    let mut req = pb::CreateTopicRequest::new();
    req.set_name(TOPIC.into());
    req.set_partitions(1);
    req.set_retention_ms(6000);
    common::clients_for(&c.addrs()[0])
        .admin
        .create_topic(&req)
        .unwrap();
    wait_for_leaders(&c.addrs(), TOPIC, 1);
    let leader = leaders(&c.addrs())[&(TOPIC.to_string(), 0)].clone();
    for i in 0..3 {
        let values = common::grpc::tagged(&format!("old{i}"), 10);
        send(&leader, 0, &values, pb::Acks::ACKS_UPLOADED).unwrap();
    }
    // Past the old records' retention; the fresh ones then have 6 s, more
    // than the rest of the test takes.
    std::thread::sleep(Duration::from_millis(6500));
    let fresh = common::grpc::tagged("fresh", 10);
    assert_eq!(
        send(&leader, 0, &fresh, pb::Acks::ACKS_UPLOADED).unwrap(),
        30
    );
    // The three old segments expire; the fresh one is kept.
    let deadline = Instant::now() + Duration::from_secs(20);
    while low_watermark(&leader, 0) < 30 {
        assert!(
            Instant::now() < deadline,
            "retention did not run on the leader"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let old_objects = |c: &Cluster| segments_of_p0(c).iter().filter(|(b, _, _)| *b < 30).count();
    let deadline = Instant::now() + Duration::from_secs(20);
    while old_objects(&c) > 0 {
        assert!(
            Instant::now() < deadline,
            "the expired segments are still in the bucket"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The next leader knows the low watermark from the bucket's mark.
    c.kill(c.index_of(&leader).unwrap());
    let next = wait_for_new_leader(&c.addrs(), 0, &leader);
    assert_eq!(low_watermark(&next, 0), 30);
    let log = common::grpc::record_values(&common::grpc::fetch_all(
        &common::clients_for(&next),
        TOPIC,
        0,
        30,
    ));
    assert_eq!(log, fresh);
}

#[test]
fn streamctl_writes_and_reads_a_partition_through_any_node() {
    let Some(c) = Cluster::start("cluster-streamctl", 3) else {
        return;
    };
    let node = c.nodes[0].server.as_ref().unwrap();
    let created = node
        .ctl()
        .args(["topic", "create", TOPIC, "--partitions", "6"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    wait_for_leaders(&c.addrs(), TOPIC, PARTITIONS);
    let led = leaders(&c.addrs());
    // Node 0 leads some partitions, not all (rendezvous hashing).
    let elsewhere = (0..PARTITIONS)
        .filter(|p| led[&(TOPIC.to_string(), *p)] != node.addr)
        .count();
    println!("{elsewhere} of {PARTITIONS} partitions are led by other nodes");
    for p in 0..PARTITIONS {
        let value = format!("via-node-0-{p}");
        let part = p.to_string();
        let produced = node
            .ctl()
            .args([
                "produce",
                TOPIC,
                "--partition",
                &part,
                "--acks",
                "uploaded",
                "--value",
                &value,
            ])
            .output()
            .unwrap();
        assert!(produced.status.success(), "partition {p}: {produced:?}");
        let consumed = node
            .ctl()
            .args([
                "consume",
                TOPIC,
                "--partition",
                &part,
                "--from-beginning",
                "--limit",
                "1",
            ])
            .output()
            .unwrap();
        assert!(consumed.status.success(), "partition {p}: {consumed:?}");
        assert_eq!(String::from_utf8_lossy(&consumed.stdout).trim(), value);
    }
}

fn commit(addr: &str, group: &str, p: u32, offset: i64) -> grpcio::Result<()> {
    let mut req = pb::CommitOffsetRequest::new();
    req.set_group(group.into());
    req.set_topic(TOPIC.into());
    req.set_partition(p);
    req.set_offset(offset);
    req.set_metadata(format!("committed through {addr}"));
    common::clients_for(addr)
        .consumer
        .commit_offset(&req)
        .map(|_| ())
}

/// The committed offset and its metadata, if any.
fn committed(addr: &str, group: &str, p: u32) -> Option<(i64, String)> {
    let mut req = pb::GetCommittedOffsetRequest::new();
    req.set_group(group.into());
    req.set_topic(TOPIC.into());
    req.set_partition(p);
    let got = common::clients_for(addr)
        .consumer
        .get_committed_offset(&req)
        .unwrap();
    got.get_found()
        .then(|| (got.get_offset(), got.get_metadata().to_string()))
}

#[test]
fn group_offsets_committed_through_one_node_are_read_through_any_and_outlive_it() {
    let Some(mut c) = Cluster::start("cluster-groups", 3) else {
        return;
    };
    let addrs = c.addrs();
    create_topic(&addrs, PARTITIONS);
    let led = leaders(&addrs);
    for p in 0..PARTITIONS {
        let values = common::grpc::tagged(&format!("p{p}-"), 3);
        send(
            &led[&(TOPIC.to_string(), p)],
            p,
            &values,
            pb::Acks::ACKS_UPLOADED,
        )
        .unwrap();
    }
    // Node 0 takes every commit, wherever the partition is led; a '/' in
    // the name must not mix its keys with another group's.
    let group = "billing/eu";
    for p in 0..PARTITIONS {
        commit(&addrs[0], group, p, i64::from(p % 3 + 1)).unwrap();
    }
    commit(&addrs[0], "billing", 0, 2).unwrap();
    let missing = commit(&addrs[0], group, PARTITIONS, 0).unwrap_err();
    assert!(
        matches!(missing, grpcio::Error::RpcFailure(ref s) if s.code() == RpcStatusCode::NOT_FOUND),
        "{missing:?}"
    );
    // On the partition's leader the log's end is checked.
    let leader0 = &led[&(TOPIC.to_string(), 0)];
    let past = commit(leader0, group, 0, 4).unwrap_err();
    assert!(
        matches!(past, grpcio::Error::RpcFailure(ref s) if s.code() == RpcStatusCode::OUT_OF_RANGE),
        "{past:?}"
    );

    c.kill(0);
    let survivors = c.addrs();
    for addr in &survivors {
        for p in 0..PARTITIONS {
            let expected = (
                i64::from(p % 3 + 1),
                format!("committed through {}", addrs[0]),
            );
            assert_eq!(
                committed(addr, group, p),
                Some(expected),
                "{addr}, partition {p}"
            );
        }
        assert_eq!(committed(addr, "billing", 0).map(|c| c.0), Some(2));
        let listed = common::clients_for(addr)
            .consumer
            .list_groups(&pb::ListGroupsRequest::new())
            .unwrap();
        assert_eq!(listed.get_groups(), ["billing", group]);
    }
    let mut delete = pb::DeleteGroupRequest::new();
    delete.set_group(group.into());
    let deleted = common::clients_for(&survivors[0])
        .consumer
        .delete_group(&delete)
        .unwrap();
    assert_eq!(deleted.get_offsets_deleted(), i64::from(PARTITIONS));
    assert_eq!(committed(&survivors[1], group, 0), None);
    assert_eq!(committed(&survivors[1], "billing", 0).map(|c| c.0), Some(2));
}

/// The incarnations of `TOPIC` the bucket has objects of, in order.
fn incarnations(c: &Cluster) -> Vec<i64> {
    let mut found: Vec<i64> = c
        .bucket
        .keys()
        .iter()
        .filter_map(|k| {
            k.strip_prefix(&format!("topics/{TOPIC}/"))?
                .split('/')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Creates `TOPIC` with `partitions` through the first of `addrs`, and
/// waits until each partition is led.
fn create_topic(addrs: &[String], partitions: u32) {
    let mut req = pb::CreateTopicRequest::new();
    req.set_name(TOPIC.into());
    req.set_partitions(partitions);
    common::clients_for(&addrs[0])
        .admin
        .create_topic(&req)
        .unwrap();
    wait_for_leaders(addrs, TOPIC, partitions);
}

/// The leader a refusal's details name (google.rpc.Status, one Any).
fn leader_hint(status: &grpcio::RpcStatus) -> pb::LeaderHint {
    use protobuf::Message;
    let parsed = pb::ErrorStatus::parse_from_bytes(status.details()).unwrap();
    assert_eq!(parsed.get_code(), 14);
    let detail = &parsed.get_details()[0];
    assert_eq!(detail.get_type_url(), streamhouse::proto::LEADER_HINT_TYPE);
    pb::LeaderHint::parse_from_bytes(detail.get_value()).unwrap()
}

/// `addr`'s description of `topic`, or the status it answered.
fn describe(addr: &str, topic: &str) -> Result<pb::TopicInfo, RpcStatusCode> {
    let mut req = pb::DescribeTopicRequest::new();
    req.set_name(topic.into());
    match common::clients_for(addr).admin.describe_topic(&req) {
        Ok(t) => Ok(t),
        Err(grpcio::Error::RpcFailure(s)) => Err(s.code()),
        Err(e) => panic!("{addr}: {e}"),
    }
}

/// Waits until every node at `addrs` agrees on `topic` (`check`).
fn wait_until_all(addrs: &[String], what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for addr in addrs {
        while !check(addr) {
            assert!(
                Instant::now() < deadline,
                "{addr}: {what} not seen after 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_topic_altered_deleted_and_created_again_through_different_nodes() {
    let Some(mut c) = Cluster::start("cluster-topics", 3) else {
        return;
    };
    let addrs = c.addrs();
    create_topic(&addrs, 3);
    let led = leaders(&addrs);
    for p in 0..3 {
        let values = common::grpc::tagged(&format!("old{p}-"), 5);
        send(
            &led[&(TOPIC.to_string(), p)],
            p,
            &values,
            pb::Acks::ACKS_UPLOADED,
        )
        .unwrap();
    }
    commit(&addrs[0], "readers", 1, 5).unwrap();
    let first = incarnations(&c);
    assert_eq!(first.len(), 1, "{first:?}");

    // Through node 1: 3 -> 6 partitions, retention set; every node sees it.
    let mut alter = pb::AlterTopicRequest::new();
    alter.set_name(TOPIC.into());
    alter.set_partitions(6);
    alter.set_retention_ms(3_600_000);
    common::clients_for(&addrs[1])
        .admin
        .alter_topic(&alter)
        .unwrap();
    wait_until_all(&addrs, "6 partitions", |a| {
        describe(a, TOPIC)
            .is_ok_and(|t| t.get_partitions() == 6 && t.get_retention_ms() == 3_600_000)
    });
    wait_for_leaders(&addrs, TOPIC, 6);
    let led = leaders(&addrs);
    for p in 3..6 {
        let values = common::grpc::tagged(&format!("new{p}-"), 2);
        assert_eq!(
            send(
                &led[&(TOPIC.to_string(), p)],
                p,
                &values,
                pb::Acks::ACKS_UPLOADED
            )
            .unwrap(),
            0
        );
    }
    // Fewer partitions are refused.
    alter.set_partitions(2);
    let fewer = common::clients_for(&addrs[2])
        .admin
        .alter_topic(&alter)
        .unwrap_err();
    assert!(
        matches!(fewer, grpcio::Error::RpcFailure(ref s) if s.code() == RpcStatusCode::INVALID_ARGUMENT),
        "{fewer:?}"
    );

    // Node 1 is down while the topic is deleted and created again.
    c.kill(1);
    let live = c.addrs();
    // Through node 2: deleted everywhere, its leaders, offsets and objects gone.
    let mut delete = pb::DeleteTopicRequest::new();
    delete.set_name(TOPIC.into());
    common::clients_for(&addrs[2])
        .admin
        .delete_topic(&delete)
        .unwrap();
    wait_until_all(&live, "the deletion", |a| {
        describe(a, TOPIC) == Err(RpcStatusCode::NOT_FOUND)
    });
    for (p, addr) in led
        .iter()
        .filter(|((t, _), a)| t == TOPIC && live.contains(a))
    {
        let refused = send(addr, p.1, &["late".to_string()], pb::Acks::ACKS_WAL).unwrap_err();
        assert!(
            matches!(refused, grpcio::Error::RpcFailure(ref s) if s.code() == RpcStatusCode::NOT_FOUND),
            "{p:?}: {refused:?}"
        );
    }
    assert!(leaders(&live).keys().all(|(t, _)| t != TOPIC));
    let old_prefix = format!("topics/{TOPIC}/{}/", first[0]);
    let left: Vec<String> = c
        .bucket
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(&old_prefix))
        .collect();
    assert!(left.len() == 1 && left[0].ends_with("/deleted"), "{left:?}");

    // Through node 0 again: a new incarnation, an empty log, no old offsets.
    let mut req = pb::CreateTopicRequest::new();
    req.set_name(TOPIC.into());
    req.set_partitions(2);
    common::clients_for(&addrs[0])
        .admin
        .create_topic(&req)
        .unwrap();
    let now = incarnations(&c);
    assert!(now.len() == 2 && now[1] > first[0], "{now:?}");
    // Node 1 comes back to the new incarnation, not the one it knew.
    c.restart(1);
    let addrs = c.addrs();
    wait_until_all(&addrs, "the new topic", |a| {
        describe(a, TOPIC).is_ok_and(|t| t.get_partitions() == 2)
    });
    wait_for_leaders(&addrs, TOPIC, 2);
    let led = leaders(&addrs);
    let leader1 = &led[&(TOPIC.to_string(), 1)];
    assert_eq!(
        send(leader1, 1, &["again".to_string()], pb::Acks::ACKS_UPLOADED).unwrap(),
        0
    );
    let log = common::grpc::record_values(&common::grpc::fetch_all(
        &common::clients_for(leader1),
        TOPIC,
        1,
        0,
    ));
    assert_eq!(log, ["again"]);
    assert_eq!(committed(&addrs[2], "readers", 1), None);
}

#[test]
fn a_named_producer_keeps_its_id_across_nodes_and_each_init_fences_the_last_epoch() {
    let Some(c) = Cluster::start("cluster-named", 3) else {
        return;
    };
    let addrs = c.addrs();
    create_topic(&addrs, 1);
    let leader = leaders(&addrs)[&(TOPIC.to_string(), 0)].clone();
    let init = |addr: &String| {
        let mut r = pb::InitProducerRequest::new();
        r.set_producer_name("billing-writer".into());
        let got = common::clients_for(addr)
            .producer
            .init_producer(&r)
            .unwrap();
        (got.get_producer_id(), got.get_epoch())
    };
    let inits: Vec<(u64, u32)> = addrs.iter().map(init).collect();
    let id = inits[0].0;
    assert_eq!(inits, [(id, 0), (id, 1), (id, 2)]);
    let produce = |producer: (u64, u32), seq: i64| {
        common::clients_for(&leader)
            .producer
            .produce(&batch(0, producer, seq))
    };
    assert_eq!(
        produce((id, 2), 0).unwrap().get_acks()[0].get_base_offset(),
        0
    );
    let fenced = produce((id, 1), 10).unwrap_err();
    assert!(
        matches!(fenced, grpcio::Error::RpcFailure(ref s) if s.code() == RpcStatusCode::ABORTED),
        "{fenced:?}"
    );
    // The next InitProducer, wherever it goes, fences epoch 2 on every
    // node within a poll, before epoch 3 writes anything there (asked
    // of a node that does not lead the partition).
    let elsewhere = addrs.iter().find(|a| **a != leader).unwrap();
    assert_eq!(init(elsewhere), (id, 3));
    std::thread::sleep(Duration::from_millis(1500));
    let fenced = produce((id, 2), 10).unwrap_err();
    assert!(
        matches!(fenced, grpcio::Error::RpcFailure(ref s) if s.code() == RpcStatusCode::ABORTED),
        "{fenced:?}"
    );
    assert_eq!(
        produce((id, 3), 0).unwrap().get_acks()[0].get_base_offset(),
        10
    );
}

#[test]
fn committed_records_are_read_through_any_node_even_while_their_leader_is_down() {
    let Some(mut c) = Cluster::start("cluster-follower", 3) else {
        return;
    };
    let addrs = c.addrs();
    create_topic(&addrs, 1);
    let leader = leaders(&addrs)[&(TOPIC.to_string(), 0)].clone();
    let mut written = Vec::new();
    for i in 0..3 {
        let values = common::grpc::tagged(&format!("seg{i}-"), 10);
        send(&leader, 0, &values, pb::Acks::ACKS_UPLOADED).unwrap();
        written.extend(values);
    }
    let others: Vec<String> = addrs.iter().filter(|a| **a != leader).cloned().collect();
    let read = |addr: &str, from: i64| {
        common::grpc::record_values(&common::grpc::fetch_all(
            &common::clients_for(addr),
            TOPIC,
            0,
            from,
        ))
    };
    for a in &others {
        assert_eq!(read(a, 0), written, "through {a}");
        assert_eq!(read(a, 15), written[15..], "through {a}, from 15");
    }
    // A produce to a follower is refused, naming the leader in the
    // status's details (grpc-status-details-bin).
    let refused = send(&others[0], 0, &["x".to_string()], pb::Acks::ACKS_WAL).unwrap_err();
    let grpcio::Error::RpcFailure(status) = refused else {
        panic!("{refused:?}");
    };
    assert_eq!(status.code(), RpcStatusCode::UNAVAILABLE);
    let hint = leader_hint(&status);
    assert_eq!(
        (hint.get_topic(), hint.get_partition(), hint.get_grpc_addr()),
        (TOPIC, 0, leader.as_str())
    );
    assert!(hint.get_epoch() > 0 && !hint.get_node_id().is_empty());
    // Past what is committed the leader answers: a follower says so
    // rather than OUT_OF_RANGE.
    let past = common::grpc::fetch(&common::clients_for(&others[0]), TOPIC, 0, 1000).unwrap_err();
    assert!(
        matches!(past, grpcio::Error::RpcFailure(ref s) if s.code() == RpcStatusCode::UNAVAILABLE),
        "{past:?}"
    );
    // The leader dies: its committed records stay readable at once,
    // through the others, before any of them leads the partition.
    c.kill(c.index_of(&leader).unwrap());
    for a in &others {
        assert_eq!(read(a, 0), written, "through {a} with the leader down");
    }
}
