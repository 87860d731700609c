//! Kafka consumer groups on the real `streamhoused`, through requests that
//! kafka-protocol encodes: a member's whole life at every advertised
//! version of JoinGroup, SyncGroup, Heartbeat and LeaveGroup, a join that
//! waits for the rest of the group, OffsetCommit's generation checks, and
//! requests refused before they reach the coordinator. (Real clients
//! subscribing, rebalancing and being killed: tests/kafka/groups.py and
//! kafkajs-group.js, run by scripts/kafka-clients.sh.)

mod common;

use bytes::Bytes;
use common::kafka::KafkaConn;
use common::TestServer;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::time::{Duration, Instant};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn server() -> (tempfile::TempDir, TestServer, String) {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start_in(dir.path(), &[]);
    let addr = srv.kafka_addr.clone().expect("kafka listener");
    (dir, srv, addr)
}

const MAX_JOIN: i16 = 7;
const MAX_SYNC: i16 = 5;
const MAX_HEARTBEAT: i16 = 4;
const MAX_LEAVE: i16 = 5;
const MAX_COMMIT: i16 = 9;

fn join_req(group: &str, member: &str, session_ms: i32) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"subscription"))])
}

/// Joins `group` as a new member at JoinGroup `v` (v4+: the id first).
fn join(k: &mut KafkaConn, v: i16, group: &str) -> JoinGroupResponse {
    let r = k.call(v, &join_req(group, "", 10_000));
    if v < 4 {
        return r;
    }
    assert_eq!(r.error_code, 79, "v{v}: MEMBER_ID_REQUIRED first");
    assert!(r.member_id.starts_with("sh-test-"), "{:?}", r.member_id);
    k.call(v, &join_req(group, &r.member_id, 10_000))
}

fn commit_req(group: &str, member: &str, generation: i32) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(0)])])
}

fn commit_error(r: &OffsetCommitResponse) -> i16 {
    r.topics[0].partitions[0].error_code
}

fn describe(k: &mut KafkaConn, group: &str) -> describe_groups_response::DescribedGroup {
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    k.call(5, &req).groups.remove(0)
}

#[test]
fn a_member_joins_syncs_heartbeats_commits_and_leaves_at_every_version() {
    let (_d, _srv, addr) = server();
    let mut k = KafkaConn::connect(&addr);
    let md = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(s("t")))),
    ]));
    assert_eq!(k.call(12, &md).topics[0].error_code, 0);
    for v in 0..=MAX_JOIN {
        let group = format!("g{v}");
        let j = join(&mut k, v, &group);
        assert_eq!(j.error_code, 0, "JoinGroup v{v}");
        assert_eq!((j.generation_id, &j.leader), (1, &j.member_id), "v{v}");
        assert_eq!(j.members.len(), 1, "v{v}: the leader sees the members");
        assert_eq!(j.protocol_name.as_deref(), Some("range"), "v{v}");
        let me = j.member_id.clone();
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(1)
            .with_member_id(me.clone())
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(me.clone())
                .with_assignment(Bytes::from_static(b"t:0"))]);
        let r = k.call(v.min(MAX_SYNC), &sync);
        assert_eq!((r.error_code, &r.assignment[..]), (0, &b"t:0"[..]), "v{v}");
        let hb = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(1)
            .with_member_id(me.clone());
        assert_eq!(k.call(v.min(MAX_HEARTBEAT), &hb).error_code, 0, "v{v}");
        assert_eq!(
            k.call(v.min(MAX_HEARTBEAT), &hb.clone().with_generation_id(2))
                .error_code,
            22,
            "v{v}: ILLEGAL_GENERATION"
        );
        // Commits: the member of generation 1 only.
        let c = |g, m: &str| commit_req(&group, m, g);
        let cv = (v + 2).min(MAX_COMMIT);
        assert_eq!(commit_error(&k.call(cv, &c(1, &me))), 0, "v{v}");
        assert_eq!(commit_error(&k.call(cv, &c(2, &me))), 22, "v{v}");
        assert_eq!(commit_error(&k.call(cv, &c(1, "other"))), 25, "v{v}");
        assert_eq!(commit_error(&k.call(cv, &c(-1, ""))), 25, "v{v}");
        let d = describe(&mut k, &group);
        assert_eq!(d.group_state.as_str(), "Stable", "v{v}");
        assert_eq!(d.protocol_data.as_str(), "range", "v{v}");
        assert_eq!(d.members[0].client_id.as_str(), "sh-test", "v{v}");
        assert_eq!(d.members[0].client_host.as_str(), "/127.0.0.1", "v{v}");
        assert_eq!(&d.members[0].member_assignment[..], b"t:0", "v{v}");
        let lv = v.min(MAX_LEAVE);
        let leave = LeaveGroupRequest::default().with_group_id(GroupId(s(&group)));
        let leave = if lv >= 3 {
            leave.with_members(vec![MemberIdentity::default().with_member_id(me.clone())])
        } else {
            leave.with_member_id(me.clone())
        };
        let r = k.call(lv, &leave);
        let err = r.members.first().map_or(r.error_code, |m| m.error_code);
        assert_eq!(err, 0, "LeaveGroup v{lv}");
        assert_eq!(describe(&mut k, &group).group_state.as_str(), "Empty");
        // An empty group takes commits from simple consumers again.
        assert_eq!(commit_error(&k.call(cv, &c(-1, ""))), 0, "v{v}");
    }
    let listed = k.call(4, &ListGroupsRequest::default());
    assert_eq!(listed.groups.len(), usize::from(MAX_JOIN as u8) + 1);
    assert!(listed
        .groups
        .iter()
        .all(|g| g.group_state.as_str() == "Empty"));
}

#[test]
fn a_join_waits_for_the_group_and_a_silent_member_is_evicted() {
    let (_d, _srv, addr) = server();
    let mut a = KafkaConn::connect(&addr);
    let mut b = KafkaConn::connect(&addr);
    let ja = a.call(1, &join_req("w", "", 1_000));
    assert_eq!((ja.error_code, ja.generation_id), (0, 1));
    // b's join waits: a must rejoin, which it learns from its heartbeat.
    b.send(1, &join_req("w", "", 1_000));
    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId(s("w")))
        .with_generation_id(1)
        .with_member_id(ja.member_id.clone());
    let started = Instant::now();
    loop {
        let e = a.call(0, &hb).error_code;
        if e == 27 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "heartbeat {e}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ja2 = a.call(1, &join_req("w", &ja.member_id, 1_000));
    let (_, jb) = b.receive::<JoinGroupRequest>(1);
    assert_eq!((ja2.generation_id, jb.generation_id), (2, 2));
    assert_eq!(ja2.members.len(), 2, "a still leads and sees both");
    assert!(jb.members.is_empty());
    // Neither syncs: the leader's deadline (the rebalance timeout, 10 s)
    // is longer than the session (1 s), but a member waiting for nothing
    // whose session runs out is removed. With no members and no commits
    // the group is forgotten: Kafka calls that Dead.
    std::thread::sleep(Duration::from_millis(1_500));
    let d = describe(&mut a, "w");
    assert_eq!(
        (d.group_state.as_str(), d.members.len()),
        ("Dead", 0),
        "{d:?}"
    );
}

#[test]
fn bad_joins_are_refused_with_kafkas_codes() {
    let (_d, _srv, addr) = server();
    let mut k = KafkaConn::connect(&addr);
    let cases = [
        (join_req("", "", 10_000), 24),
        (join_req("g", "", 0), 26),
        (join_req("g", "", 3_600_000), 26),
        (join_req("g", "", 10_000).with_protocols(vec![]), 23),
        (join_req("g", "nobody", 10_000), 25),
        (
            join_req("g", "", 10_000).with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from(vec![0u8; 2 << 20]))]),
            42,
        ),
    ];
    for (req, want) in cases {
        assert_eq!(k.call(5, &req).error_code, want, "{req:?}");
    }
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("nothing")))
        .with_member_id(s("x"));
    assert_eq!(k.call(3, &sync).error_code, 25);
    // Still serving.
    assert_eq!(join(&mut k, 5, "g").error_code, 0);
}

#[test]
fn streamctl_shows_a_groups_state_members_and_assignments() {
    let (_d, srv, addr) = server();
    let mut k = KafkaConn::connect(&addr);
    let mut j = join(&mut k, 5, "shown");
    // A consumer-protocol assignment: version 1, topic "t" partitions 0, 2.
    let mut assignment = vec![
        0, 1, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2,
    ];
    assignment.extend_from_slice(&[0xff; 4]);
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("shown")))
        .with_generation_id(j.generation_id)
        .with_member_id(j.member_id.clone())
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(j.member_id.clone())
            .with_assignment(Bytes::from(assignment))]);
    assert_eq!(k.call(5, &sync).error_code, 0);
    let out = |args: &[&str]| {
        let o = srv.ctl().args(args).output().unwrap();
        assert!(o.status.success(), "{o:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    let list = out(&["group", "list"]);
    assert!(list.contains("shown  Stable  1"), "{list}");
    let get = out(&["group", "get", "shown"]);
    let member = std::mem::take(&mut j.member_id);
    assert!(
        get.contains("group shown: Stable, generation 1, protocol range, 1 members"),
        "{get}"
    );
    assert!(get.contains(&format!("{member}")), "{get}");
    assert!(
        get.contains("sh-test") && get.contains("/127.0.0.1"),
        "{get}"
    );
    assert!(get.contains("t:0,2"), "{get}");
    let json = out(&["group", "get", "shown", "--format", "json"]);
    assert!(
        json.contains(r#""assignment":[{"topic":"t","partitions":[0,2]}]"#),
        "{json}"
    );
}
