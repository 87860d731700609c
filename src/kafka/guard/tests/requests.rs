//! Requests of every served API at any version, built with kafka-protocol,
//! and what the tests do with them.

use super::super::*;
use kafka_protocol::messages::{
    api_versions_request::*, create_topics_request::*, delete_topics_request::*,
    describe_cluster_request::*, describe_configs_request::*, describe_groups_request::*,
    fetch_request::*, find_coordinator_request::*, heartbeat_request::*,
    init_producer_id_request::*, join_group_request::*, leave_group_request::*,
    list_groups_request::*, list_offsets_request::*, metadata_request::*, offset_commit_request::*,
    offset_fetch_request::*, produce_request::*, sasl_authenticate_request::*,
    sasl_handshake_request::*, sync_group_request::*, BrokerId, GroupId, ProducerId, TopicName,
    TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::fmt::Debug;

pub(super) fn s(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

pub(super) fn topic(text: &'static str) -> TopicName {
    TopicName(s(text))
}

/// A non-nil topic or directory id (the uuid type is not ours to name).
pub(super) fn id<T: std::str::FromStr>() -> T {
    match "5f0c6e5a-3e3b-4b8e-9a0d-2c7d9e1f4a6b".parse() {
        Ok(id) => id,
        Err(_) => panic!("uuid literal"),
    }
}

/// Adds an unknown tagged field (tag 9: above every known tag) when the
/// version is flexible.
macro_rules! tagged {
    ($value:expr, $flexible:expr) => {{
        let value = $value;
        if $flexible {
            value.with_unknown_tagged_field(9, s("tagged").into_bytes())
        } else {
            value
        }
    }};
}

pub(super) fn produce_request(v: i16) -> ProduceRequest {
    let f = v >= 9;
    let records = Some(s("a record batch").into_bytes());
    let partition = PartitionProduceData::default()
        .with_index(2)
        .with_records(records);
    let data = TopicProduceData::default().with_partition_data(vec![tagged!(partition, f)]);
    let data = if v <= 12 {
        data.with_name(topic("orders"))
    } else {
        data.with_topic_id(id())
    };
    let req = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(s("tx"))))
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![tagged!(data, f)]);
    tagged!(req, f)
}

pub(super) fn fetch_request(v: i16) -> FetchRequest {
    let f = v >= 12;
    let mut p = FetchPartition::default()
        .with_partition(1)
        .with_fetch_offset(42)
        .with_partition_max_bytes(1 << 20);
    if v >= 9 {
        p = p.with_current_leader_epoch(3);
    }
    if v >= 12 {
        p = p.with_last_fetched_epoch(2);
    }
    if v >= 5 {
        p = p.with_log_start_offset(0);
    }
    if v >= 17 {
        p = p.with_replica_directory_id(id());
    }
    if v >= 18 {
        p = p.with_high_watermark(100);
    }
    let t = FetchTopic::default().with_partitions(vec![tagged!(p, f)]);
    let t = if v <= 12 {
        t.with_topic(topic("orders"))
    } else {
        t.with_topic_id(id())
    };
    let mut req = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_topics(vec![tagged!(t, f)]);
    if v >= 7 {
        let g = ForgottenTopic::default().with_partitions(vec![0, 1]);
        let g = if v <= 12 {
            g.with_topic(topic("old"))
        } else {
            g.with_topic_id(id())
        };
        req = req
            .with_session_id(7)
            .with_session_epoch(1)
            .with_forgotten_topics_data(vec![tagged!(g, f)]);
    }
    if v >= 11 {
        req = req.with_rack_id(s("rack-a"));
    }
    if f {
        req = req.with_cluster_id(Some(s("cluster")));
    }
    if v >= 15 {
        let state = ReplicaState::default()
            .with_replica_id(BrokerId(3))
            .with_replica_epoch(9);
        req = req.with_replica_state(tagged!(state, f));
    }
    tagged!(req, f)
}

pub(super) fn list_offsets_request(v: i16) -> ListOffsetsRequest {
    let f = v >= 6;
    let mut p = ListOffsetsPartition::default()
        .with_partition_index(0)
        .with_timestamp(-1);
    if v >= 4 {
        p = p.with_current_leader_epoch(5);
    }
    let t = ListOffsetsTopic::default()
        .with_name(topic("orders"))
        .with_partitions(vec![tagged!(p, f)]);
    let mut req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![tagged!(t, f)]);
    if v >= 2 {
        req = req.with_isolation_level(1);
    }
    if v >= 10 {
        req = req.with_timeout_ms(1000);
    }
    tagged!(req, f)
}

pub(super) fn metadata_request(v: i16) -> MetadataRequest {
    let f = v >= 9;
    let mut t = MetadataRequestTopic::default().with_name(Some(topic("orders")));
    if v >= 10 {
        t = t.with_topic_id(id());
    }
    let mut req = MetadataRequest::default().with_topics(Some(vec![tagged!(t, f)]));
    if v >= 4 {
        req = req.with_allow_auto_topic_creation(false);
    }
    if (8..=10).contains(&v) {
        req = req.with_include_cluster_authorized_operations(true);
    }
    if v >= 8 {
        req = req.with_include_topic_authorized_operations(true);
    }
    tagged!(req, f)
}

pub(super) fn offset_commit_request(v: i16) -> OffsetCommitRequest {
    let f = v >= 8;
    let mut p = OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(42)
        .with_committed_metadata(Some(s("meta")));
    if v >= 6 {
        p = p.with_committed_leader_epoch(3);
    }
    let t = OffsetCommitRequestTopic::default()
        .with_name(topic("orders"))
        .with_partitions(vec![tagged!(p, f)]);
    let mut req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("group")))
        .with_generation_id_or_member_epoch(4)
        .with_member_id(s("member"))
        .with_topics(vec![tagged!(t, f)]);
    if v >= 7 {
        req = req.with_group_instance_id(Some(s("instance")));
    }
    if v <= 4 {
        req = req.with_retention_time_ms(60_000);
    }
    tagged!(req, f)
}

pub(super) fn offset_fetch_request(v: i16) -> OffsetFetchRequest {
    let f = v >= 6;
    let mut req = if v <= 7 {
        let t = OffsetFetchRequestTopic::default()
            .with_name(topic("orders"))
            .with_partition_indexes(vec![0, 1]);
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s("group")))
            .with_topics(Some(vec![tagged!(t, f)]))
    } else {
        let t = OffsetFetchRequestTopics::default()
            .with_name(topic("orders"))
            .with_partition_indexes(vec![0, 1]);
        let mut g = OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("group")))
            .with_topics(Some(vec![tagged!(t, f)]));
        if v >= 9 {
            g = g.with_member_id(Some(s("member"))).with_member_epoch(2);
        }
        OffsetFetchRequest::default().with_groups(vec![tagged!(g, f)])
    };
    if v >= 7 {
        req = req.with_require_stable(true);
    }
    tagged!(req, f)
}

pub(super) fn find_coordinator_request(v: i16) -> FindCoordinatorRequest {
    let f = v >= 3;
    let mut req = FindCoordinatorRequest::default();
    if v <= 3 {
        req = req.with_key(s("group"));
    }
    if v >= 1 {
        req = req.with_key_type(1);
    }
    if v >= 4 {
        req = req.with_coordinator_keys(vec![s("g1"), s("g2")]);
    }
    tagged!(req, f)
}

pub(super) fn join_group_request(v: i16) -> JoinGroupRequest {
    let f = v >= 6;
    let protocol = JoinGroupRequestProtocol::default()
        .with_name(s("range"))
        .with_metadata(s("subscription").into_bytes());
    let mut req = JoinGroupRequest::default()
        .with_group_id(GroupId(s("group")))
        .with_session_timeout_ms(10_000)
        .with_member_id(s("member"))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![tagged!(protocol, f)]);
    if v >= 1 {
        req = req.with_rebalance_timeout_ms(30_000);
    }
    if v >= 5 {
        req = req.with_group_instance_id(Some(s("instance")));
    }
    if v >= 8 {
        req = req.with_reason(Some(s("rejoin")));
    }
    tagged!(req, f)
}

pub(super) fn heartbeat_request(v: i16) -> HeartbeatRequest {
    let f = v >= 4;
    let mut req = HeartbeatRequest::default()
        .with_group_id(GroupId(s("group")))
        .with_generation_id(3)
        .with_member_id(s("member"));
    if v >= 3 {
        req = req.with_group_instance_id(Some(s("instance")));
    }
    tagged!(req, f)
}

pub(super) fn leave_group_request(v: i16) -> LeaveGroupRequest {
    let f = v >= 4;
    let req = LeaveGroupRequest::default().with_group_id(GroupId(s("group")));
    let req = if v <= 2 {
        req.with_member_id(s("member"))
    } else {
        let mut m = MemberIdentity::default()
            .with_member_id(s("member"))
            .with_group_instance_id(Some(s("instance")));
        if v >= 5 {
            m = m.with_reason(Some(s("bye")));
        }
        req.with_members(vec![tagged!(m, f)])
    };
    tagged!(req, f)
}

pub(super) fn sync_group_request(v: i16) -> SyncGroupRequest {
    let f = v >= 4;
    let a = SyncGroupRequestAssignment::default()
        .with_member_id(s("member"))
        .with_assignment(s("assignment").into_bytes());
    let mut req = SyncGroupRequest::default()
        .with_group_id(GroupId(s("group")))
        .with_generation_id(3)
        .with_member_id(s("member"))
        .with_assignments(vec![tagged!(a, f)]);
    if v >= 3 {
        req = req.with_group_instance_id(Some(s("instance")));
    }
    if v >= 5 {
        req = req
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")));
    }
    tagged!(req, f)
}

pub(super) fn describe_groups_request(v: i16) -> DescribeGroupsRequest {
    let f = v >= 5;
    let mut req =
        DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g1")), GroupId(s("g2"))]);
    if v >= 3 {
        req = req.with_include_authorized_operations(true);
    }
    tagged!(req, f)
}

pub(super) fn list_groups_request(v: i16) -> ListGroupsRequest {
    let f = v >= 3;
    let mut req = ListGroupsRequest::default();
    if v >= 4 {
        req = req.with_states_filter(vec![s("Stable")]);
    }
    if v >= 5 {
        req = req.with_types_filter(vec![s("classic"), s("consumer")]);
    }
    tagged!(req, f)
}

pub(super) fn sasl_handshake_request() -> SaslHandshakeRequest {
    SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-512"))
}

pub(super) fn sasl_authenticate_request(v: i16) -> SaslAuthenticateRequest {
    let req = SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from_static(
        b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL",
    ));
    tagged!(req, v >= 2)
}

pub(super) fn api_versions_request(v: i16) -> ApiVersionsRequest {
    let f = v >= 3;
    let mut req = ApiVersionsRequest::default();
    if f {
        req = req
            .with_client_software_name(s("librdkafka"))
            .with_client_software_version(s("2.3.0"));
    }
    tagged!(req, f)
}

pub(super) fn create_topics_request(v: i16) -> CreateTopicsRequest {
    let f = v >= 5;
    let a = CreatableReplicaAssignment::default()
        .with_partition_index(0)
        .with_broker_ids(vec![BrokerId(0), BrokerId(1)]);
    let c = CreatableTopicConfig::default()
        .with_name(s("cleanup.policy"))
        .with_value(Some(s("delete")));
    let t = CreatableTopic::default()
        .with_name(topic("orders"))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_assignments(vec![tagged!(a, f)])
        .with_configs(vec![tagged!(c, f)]);
    let req = CreateTopicsRequest::default()
        .with_topics(vec![tagged!(t, f)])
        .with_timeout_ms(5000)
        .with_validate_only(true);
    tagged!(req, f)
}

pub(super) fn delete_topics_request(v: i16) -> DeleteTopicsRequest {
    let f = v >= 4;
    let req = DeleteTopicsRequest::default().with_timeout_ms(5000);
    let req = if v >= 6 {
        let t = DeleteTopicState::default()
            .with_name(Some(topic("orders")))
            .with_topic_id(id());
        req.with_topics(vec![tagged!(t, f)])
    } else {
        req.with_topic_names(vec![topic("orders"), topic("events")])
    };
    tagged!(req, f)
}

pub(super) fn init_producer_id_request(v: i16) -> InitProducerIdRequest {
    let f = v >= 2;
    let mut req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s("tx"))))
        .with_transaction_timeout_ms(60_000);
    if v >= 3 {
        req = req.with_producer_id(ProducerId(12)).with_producer_epoch(1);
    }
    tagged!(req, f)
}

pub(super) fn describe_configs_request(v: i16) -> DescribeConfigsRequest {
    let f = v >= 4;
    let r = DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(s("orders"))
        .with_configuration_keys(Some(vec![s("retention.ms")]));
    let mut req = DescribeConfigsRequest::default()
        .with_resources(vec![tagged!(r, f)])
        .with_include_synonyms(true);
    if v >= 3 {
        req = req.with_include_documentation(true);
    }
    tagged!(req, f)
}

pub(super) fn describe_cluster_request(v: i16) -> DescribeClusterRequest {
    let mut req =
        DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
    if v >= 1 {
        req = req.with_endpoint_type(2);
    }
    if v >= 2 {
        req = req.with_include_fenced_brokers(true);
    }
    tagged!(req, true)
}

/// Encodes `req`, asserts the guard accepts it and kafka-protocol
/// decodes it back unchanged; returns the body.
pub(super) fn round_trip<T: Encodable + Decodable + PartialEq + Debug>(
    key: ApiKey,
    v: i16,
    req: T,
) -> Vec<u8> {
    let mut body = Vec::new();
    if let Err(e) = req.encode(&mut body, v) {
        panic!("{key:?} v{v}: encode: {e}");
    }
    assert_eq!(check_request(key as i16, v, &body), Ok(()), "{key:?} v{v}");
    match T::decode(&mut &body[..], v) {
        Ok(back) => assert_eq!(back, req, "{key:?} v{v}"),
        Err(e) => panic!("{key:?} v{v}: decode: {e}"),
    }
    body
}

/// A request of every field `key` has at version `v`, encoded.
pub(super) fn encoded(key: ApiKey, v: i16) -> Vec<u8> {
    match key {
        ApiKey::Produce => round_trip(key, v, produce_request(v)),
        ApiKey::Fetch => round_trip(key, v, fetch_request(v)),
        ApiKey::ListOffsets => round_trip(key, v, list_offsets_request(v)),
        ApiKey::Metadata => round_trip(key, v, metadata_request(v)),
        ApiKey::OffsetCommit => round_trip(key, v, offset_commit_request(v)),
        ApiKey::OffsetFetch => round_trip(key, v, offset_fetch_request(v)),
        ApiKey::FindCoordinator => round_trip(key, v, find_coordinator_request(v)),
        ApiKey::JoinGroup => round_trip(key, v, join_group_request(v)),
        ApiKey::Heartbeat => round_trip(key, v, heartbeat_request(v)),
        ApiKey::LeaveGroup => round_trip(key, v, leave_group_request(v)),
        ApiKey::SyncGroup => round_trip(key, v, sync_group_request(v)),
        ApiKey::DescribeGroups => round_trip(key, v, describe_groups_request(v)),
        ApiKey::ListGroups => round_trip(key, v, list_groups_request(v)),
        ApiKey::ApiVersions => round_trip(key, v, api_versions_request(v)),
        ApiKey::CreateTopics => round_trip(key, v, create_topics_request(v)),
        ApiKey::DeleteTopics => round_trip(key, v, delete_topics_request(v)),
        ApiKey::InitProducerId => round_trip(key, v, init_producer_id_request(v)),
        ApiKey::DescribeConfigs => round_trip(key, v, describe_configs_request(v)),
        ApiKey::DescribeCluster => round_trip(key, v, describe_cluster_request(v)),
        ApiKey::SaslHandshake => round_trip(key, v, sasl_handshake_request()),
        ApiKey::SaslAuthenticate => round_trip(key, v, sasl_authenticate_request(v)),
        other => panic!("{other:?} is not guarded"),
    }
}

/// Whether kafka-protocol decodes `body`; call only on accepted bodies.
pub(super) fn decodes(key: ApiKey, v: i16, body: &[u8]) -> bool {
    fn ok<T: Decodable>(v: i16, mut body: &[u8]) -> bool {
        T::decode(&mut body, v).is_ok()
    }
    match key {
        ApiKey::Produce => ok::<ProduceRequest>(v, body),
        ApiKey::Fetch => ok::<FetchRequest>(v, body),
        ApiKey::ListOffsets => ok::<ListOffsetsRequest>(v, body),
        ApiKey::Metadata => ok::<MetadataRequest>(v, body),
        ApiKey::OffsetCommit => ok::<OffsetCommitRequest>(v, body),
        ApiKey::OffsetFetch => ok::<OffsetFetchRequest>(v, body),
        ApiKey::FindCoordinator => ok::<FindCoordinatorRequest>(v, body),
        ApiKey::JoinGroup => ok::<JoinGroupRequest>(v, body),
        ApiKey::Heartbeat => ok::<HeartbeatRequest>(v, body),
        ApiKey::LeaveGroup => ok::<LeaveGroupRequest>(v, body),
        ApiKey::SyncGroup => ok::<SyncGroupRequest>(v, body),
        ApiKey::DescribeGroups => ok::<DescribeGroupsRequest>(v, body),
        ApiKey::ListGroups => ok::<ListGroupsRequest>(v, body),
        ApiKey::ApiVersions => ok::<ApiVersionsRequest>(v, body),
        ApiKey::CreateTopics => ok::<CreateTopicsRequest>(v, body),
        ApiKey::DeleteTopics => ok::<DeleteTopicsRequest>(v, body),
        ApiKey::InitProducerId => ok::<InitProducerIdRequest>(v, body),
        ApiKey::DescribeConfigs => ok::<DescribeConfigsRequest>(v, body),
        ApiKey::DescribeCluster => ok::<DescribeClusterRequest>(v, body),
        ApiKey::SaslHandshake => ok::<SaslHandshakeRequest>(v, body),
        ApiKey::SaslAuthenticate => ok::<SaslAuthenticateRequest>(v, body),
        other => panic!("{other:?} is not guarded"),
    }
}

/// Every (api, version) the guard covers.
pub(super) fn every_version() -> impl Iterator<Item = (ApiKey, i16)> {
    APIS.iter()
        .flat_map(|&(key, lo, hi, _)| (lo..=hi).map(move |v| (key, v)))
}
