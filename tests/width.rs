//! Width (real binary): more partitions than the usual soft limit of open
//! files, and a wide topic created while another topic is in use. The
//! 10,000-partition figures come from `cargo bench --bench width`.

mod common;

use common::grpc::{create, fetch, produce, record};
use common::TestServer;
use std::time::Duration;
use streamhouse::proto as pb;

#[test]
fn more_partitions_than_the_soft_open_files_limit_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // 600 partitions, each with an open WAL file, under a soft limit of 256:
    // the server raises it to the hard limit.
    let s = TestServer::start_with_open_files(dir.path(), 256, &[]);
    let c = s.clients();
    for t in 0..2 {
        create(&c, &format!("wide-{t}"), 300);
    }
    for t in 0..2 {
        for p in 0..300 {
            let v = format!("wide-{t}/{p}");
            produce(
                &c,
                &format!("wide-{t}"),
                Some(p),
                vec![record(b"", v.as_bytes(), &[])],
            )
            .unwrap();
        }
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.child.id())).unwrap();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(soft > 600, "soft limit {soft}");
    drop(c);
    let mut s = s;
    assert!(s.sigterm_and_wait().success());
    let s = TestServer::start_with_open_files(dir.path(), 256, &[]);
    let c = s.clients();
    for t in 0..2 {
        for p in 0..300 {
            let got = fetch(&c, &format!("wide-{t}"), p, 0).unwrap();
            assert_eq!(got.get_records().len(), 1, "wide-{t}/{p}");
            assert_eq!(
                got.get_records()[0].get_value(),
                format!("wide-{t}/{p}").as_bytes()
            );
        }
    }
}

#[test]
fn creating_a_wide_topic_does_not_block_another_topic() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[]);
    let c = s.clients();
    create(&c, "hot", 1);
    produce(&c, "hot", Some(0), vec![record(b"", b"warm", &[])]).unwrap();
    let addr = s.addr.clone();
    let creating = std::thread::spawn(move || {
        let c = common::clients_for(&addr);
        create(&c, "wide", 1000)
    });
    // Give the create time to reach the server (it takes hundreds of
    // milliseconds: a thread, a directory and a WAL file per partition).
    std::thread::sleep(Duration::from_millis(100));
    let mut done = 0;
    for i in 0..20 {
        let v = format!("during-{i}");
        produce(&c, "hot", Some(0), vec![record(b"", v.as_bytes(), &[])]).unwrap();
        let mut req = pb::FetchRequest::new();
        req.set_topic("hot".into());
        req.set_partition(0);
        req.set_offset(i + 1);
        assert_eq!(c.consumer.fetch(&req).unwrap().get_records().len(), 1);
        done += 1;
    }
    assert!(
        !creating.is_finished(),
        "the create finished before {done} produces and fetches on another topic: the test shows nothing"
    );
    let info = creating.join().unwrap();
    assert_eq!(info.get_partitions(), 1000);
    produce(&c, "wide", Some(999), vec![record(b"", b"last", &[])]).unwrap();
}
