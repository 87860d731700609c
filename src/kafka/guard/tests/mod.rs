use super::*;
use kafka_protocol::messages::{
    api_versions_request::*, create_topics_request::*, delete_topics_request::*,
    describe_cluster_request::*, describe_configs_request::*, describe_groups_request::*,
    fetch_request::*, find_coordinator_request::*, heartbeat_request::*,
    init_producer_id_request::*, join_group_request::*, leave_group_request::*,
    list_groups_request::*, list_offsets_request::*, metadata_request::*, offset_commit_request::*,
    offset_fetch_request::*, produce_request::*, sasl_authenticate_request::*,
    sasl_handshake_request::*, sync_group_request::*,
};
use kafka_protocol::protocol::Message;

mod requests;
use requests::*;

#[test]
fn the_table_is_the_brief_and_within_the_crate() {
    fn range<T: Message>() -> (i16, i16) {
        (T::VERSIONS.min, T::VERSIONS.max)
    }
    let expected = [
        (ApiKey::ApiVersions, (0, 4), range::<ApiVersionsRequest>()),
        (ApiKey::Metadata, (0, 13), range::<MetadataRequest>()),
        (ApiKey::Produce, (3, 13), range::<ProduceRequest>()),
        (ApiKey::Fetch, (4, 18), range::<FetchRequest>()),
        (ApiKey::ListOffsets, (1, 10), range::<ListOffsetsRequest>()),
        (
            ApiKey::FindCoordinator,
            (0, 6),
            range::<FindCoordinatorRequest>(),
        ),
        (ApiKey::OffsetCommit, (2, 9), range::<OffsetCommitRequest>()),
        (ApiKey::OffsetFetch, (1, 9), range::<OffsetFetchRequest>()),
        (
            ApiKey::InitProducerId,
            (0, 5),
            range::<InitProducerIdRequest>(),
        ),
        (ApiKey::CreateTopics, (2, 7), range::<CreateTopicsRequest>()),
        (ApiKey::DeleteTopics, (1, 6), range::<DeleteTopicsRequest>()),
        (
            ApiKey::DescribeConfigs,
            (1, 4),
            range::<DescribeConfigsRequest>(),
        ),
        (
            ApiKey::DescribeGroups,
            (0, 6),
            range::<DescribeGroupsRequest>(),
        ),
        (ApiKey::ListGroups, (0, 5), range::<ListGroupsRequest>()),
        (
            ApiKey::DescribeCluster,
            (0, 2),
            range::<DescribeClusterRequest>(),
        ),
        (ApiKey::JoinGroup, (0, 9), range::<JoinGroupRequest>()),
        (ApiKey::SyncGroup, (0, 5), range::<SyncGroupRequest>()),
        (ApiKey::Heartbeat, (0, 4), range::<HeartbeatRequest>()),
        (ApiKey::LeaveGroup, (0, 5), range::<LeaveGroupRequest>()),
        (
            ApiKey::SaslHandshake,
            (0, 1),
            range::<SaslHandshakeRequest>(),
        ),
        (
            ApiKey::SaslAuthenticate,
            (0, 2),
            range::<SaslAuthenticateRequest>(),
        ),
    ];
    assert_eq!(APIS.len(), expected.len());
    for (key, ours, crates) in expected {
        assert_eq!(version_range(key as i16), Some(ours), "{key:?}");
        assert!(
            crates.0 <= ours.0 && ours.1 <= crates.1,
            "{key:?}: crate has {crates:?}"
        );
    }
}

#[test]
fn every_version_of_every_api_is_accepted_and_decodes() {
    for (key, v) in every_version() {
        encoded(key, v);
    }
}

#[test]
fn unknown_apis_and_versions_are_refused() {
    let unsupported = |api_key, version| ShapeError {
        fault: Fault::Unsupported { api_key, version },
        offset: 0,
    };
    assert_eq!(check_request(0, 2, &[]), Err(unsupported(0, 2)));
    assert_eq!(check_request(1, 19, &[]), Err(unsupported(1, 19)));
    assert_eq!(check_request(18, -1, &[]), Err(unsupported(18, -1)));
    assert_eq!(check_request(21, 0, &[0; 64]), Err(unsupported(21, 0)));
    assert_eq!(check_request(-1, 0, &[]), Err(unsupported(-1, 0)));
    assert_eq!(version_range(21), None);
}

#[test]
fn every_truncation_is_refused_by_both() {
    for (key, v) in every_version() {
        let body = encoded(key, v);
        for len in 0..body.len() {
            let cut = &body[..len];
            let Err(e) = check_request(key as i16, v, cut) else {
                panic!("{key:?} v{v}: {len} of {} bytes accepted", body.len());
            };
            let short = [Fault::Truncated, Fault::CountTooLarge];
            assert!(short.contains(&e.fault), "{key:?} v{v} at {len}: {e}");
            assert!(e.offset <= len, "{key:?} v{v}: {e}");
            assert!(
                !decodes(key, v, cut),
                "{key:?} v{v}: crate decoded {len} bytes"
            );
        }
    }
}

#[test]
fn trailing_bytes_are_allowed() {
    for (key, v) in every_version() {
        let mut body = encoded(key, v);
        body.extend_from_slice(&[0xff; 7]);
        assert_eq!(check_request(key as i16, v, &body), Ok(()), "{key:?} v{v}");
    }
}

/// A varint of 2^32 - 1, the largest a compact count can hold.
const HUGE_VARINT: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];

/// `body` with the count at `at` (classic i32, or a 1-byte varint when
/// `flexible`) replaced by the largest count its encoding can hold.
fn forge_count(body: &[u8], at: usize, flexible: bool) -> Vec<u8> {
    let (width, huge) = if flexible {
        (1, &HUGE_VARINT[..])
    } else {
        (4, &i32::MAX.to_be_bytes()[..])
    };
    [&body[..at], huge, &body[at + width..]].concat()
}

#[test]
fn forged_huge_counts_are_refused() {
    // (api, flexible from, offset of the first array's count)
    let first_field_arrays = [
        (ApiKey::Metadata, 9),
        (ApiKey::CreateTopics, 5),
        (ApiKey::DescribeConfigs, 4),
        (ApiKey::DescribeGroups, 5),
        (ApiKey::DeleteTopics, 4),
    ];
    for (key, flexible_from) in first_field_arrays {
        let (lo, hi) = version_range(key as i16).unwrap_or((0, -1));
        for v in lo..=hi {
            let body = forge_count(&encoded(key, v), 0, v >= flexible_from);
            let e = check_request(key as i16, v, &body);
            assert_eq!(
                e,
                Err(ShapeError {
                    fault: Fault::CountTooLarge,
                    offset: 0
                }),
                "{key:?} v{v}"
            );
        }
    }
    // Nested: Produce's partitions, after transactional_id "tx", acks,
    // timeout, the topics count and the topic name "orders".
    let classic = forge_count(&encoded(ApiKey::Produce, 3), 4 + 6 + 4 + 8, false);
    let e = check_request(0, 3, &classic);
    assert_eq!(
        e,
        Err(ShapeError {
            fault: Fault::CountTooLarge,
            offset: 22
        })
    );
    let flexible = forge_count(&encoded(ApiKey::Produce, 9), 3 + 6 + 1 + 7, true);
    let e = check_request(0, 9, &flexible);
    assert_eq!(
        e,
        Err(ShapeError {
            fault: Fault::CountTooLarge,
            offset: 17
        })
    );
}

#[test]
fn ten_bytes_declaring_two_billion_elements_are_refused() {
    // Metadata v1: topics count i32::MAX, then six bytes of nothing.
    let body = [0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0];
    let e = check_request(3, 1, &body);
    assert_eq!(
        e,
        Err(ShapeError {
            fault: Fault::CountTooLarge,
            offset: 0
        })
    );
    // ListGroups v4 (flexible): states_filter count 2^32 - 2.
    let e = check_request(16, 4, &[0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0, 0]);
    assert_eq!(
        e,
        Err(ShapeError {
            fault: Fault::CountTooLarge,
            offset: 0
        })
    );
    // A tag buffer declaring 2^32 - 1 tags (DescribeCluster v0).
    let e = check_request(60, 0, &[1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0]);
    assert_eq!(
        e,
        Err(ShapeError {
            fault: Fault::CountTooLarge,
            offset: 1
        })
    );
}

#[test]
fn lengths_past_the_end_negative_and_null_are_refused() {
    let e = |fault, offset| Err(ShapeError { fault, offset });
    // Heartbeat v0 group_id: 0x7fff bytes declared, 2 present.
    assert_eq!(
        check_request(12, 0, &[0x7f, 0xff, b'g', b'g']),
        e(Fault::Truncated, 0)
    );
    // Heartbeat v0 group_id: -2, and null where not nullable.
    assert_eq!(
        check_request(12, 0, &[0xff, 0xfe, 0, 0, 0, 0, 0, 0]),
        e(Fault::BadLength, 0)
    );
    assert_eq!(
        check_request(12, 0, &[0xff, 0xff, 0, 0, 0, 0, 0, 0]),
        e(Fault::BadLength, 0)
    );
    // Heartbeat v4 group_id: compact null.
    assert_eq!(
        check_request(12, 4, &[0, 0, 0, 0, 0, 1, 0, 0]),
        e(Fault::BadLength, 0)
    );
    // JoinGroup v6's protocol metadata bytes: 2^32 - 2 declared.
    let mut body = vec![2, b'g', 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 2, b'c', 2, 2, b'r'];
    body.extend_from_slice(&HUGE_VARINT);
    assert_eq!(check_request(11, 6, &body), e(Fault::Truncated, 17));
    // Metadata's null topics array (all topics) is fine, v1 and v9.
    assert_eq!(check_request(3, 1, &(-1i32).to_be_bytes()), Ok(()));
    assert_eq!(check_request(3, 9, &[0, 1, 0, 0, 0]), Ok(()));
    let all_topics = MetadataRequest::default().with_topics(None);
    round_trip(ApiKey::Metadata, 1, all_topics.clone());
    round_trip(ApiKey::Metadata, 12, all_topics);
}

#[test]
fn bad_varints_are_refused() {
    let e = |fault, offset| Err(ShapeError { fault, offset });
    // DescribeCluster v0: bool, then the tag count.
    assert_eq!(
        check_request(60, 0, &[0, 0x80, 0x80, 0x80, 0x80, 0x10]),
        e(Fault::BadVarint, 1)
    );
    assert_eq!(
        check_request(60, 0, &[0, 0x80, 0x80, 0x80, 0x80, 0x80, 0]),
        e(Fault::BadVarint, 1)
    );
    assert_eq!(
        check_request(60, 0, &[0, 0x80, 0x80]),
        e(Fault::Truncated, 1)
    );
    // A non-minimal but in-range varint is still a varint.
    assert_eq!(check_request(60, 0, &[0, 0x80, 0x00]), Ok(()));
}

#[test]
fn tagged_fields_are_checked() {
    let e = |fault, offset| Err(ShapeError { fault, offset });
    // DescribeCluster v0: bool, then tags.
    assert_eq!(check_request(60, 0, &[0, 2, 1, 1, 0xaa, 3, 0]), Ok(()));
    assert_eq!(
        check_request(60, 0, &[0, 2, 3, 0, 1, 1, 0xaa]),
        e(Fault::BadTag, 4)
    );
    assert_eq!(
        check_request(60, 0, &[0, 2, 1, 0, 1, 0]),
        e(Fault::BadTag, 4)
    );
    assert_eq!(
        check_request(60, 0, &[0, 1, 1, 5, 0xaa]),
        e(Fault::Truncated, 2)
    );
    // Fetch v12 with no topics: tag 0 (cluster_id) must fill its size;
    // tag 1 (replica_state) does not exist before v15.
    let head = [[0u8; 25].as_slice(), &[1, 1, 1]].concat();
    let with = |tags: &[u8]| [head.as_slice(), tags].concat();
    assert_eq!(
        check_request(1, 12, &with(&[1, 0, 3, 3, b'c', b'l'])),
        Ok(())
    );
    assert_eq!(
        check_request(1, 12, &with(&[1, 0, 4, 3, b'c', b'l', 0])),
        e(Fault::BadTag, 29)
    );
    assert_eq!(
        check_request(1, 12, &with(&[1, 0, 2, 3, b'c', b'l'])),
        e(Fault::BadTag, 29)
    );
    assert_eq!(
        check_request(1, 12, &with(&[1, 1, 1, 0])),
        e(Fault::BadTag, 31)
    );
    assert_eq!(check_request(1, 12, &with(&[1, 2, 1, 0])), Ok(()));
}

/// Overwrites each position of every request with a huge count or
/// length (and with 0xff): whatever the guard accepts, kafka-protocol
/// must then decode without running away (this test would abort).
#[test]
fn accepted_mutations_decode_safely() {
    let mut accepted = 0;
    for (key, v) in every_version() {
        let body = encoded(key, v);
        for at in 0..body.len() {
            let mut ff = body.clone();
            ff[at] = 0xff;
            let end = (at + 4).min(body.len());
            let mut word = body.clone();
            word[at..end].copy_from_slice(&i32::MAX.to_be_bytes()[..end - at]);
            let varint = [&body[..at], &HUGE_VARINT[..], &body[at + 1..]].concat();
            for forged in [ff, word, varint] {
                if check_request(key as i16, v, &forged).is_ok() {
                    accepted += 1;
                    decodes(key, v, &forged);
                }
            }
        }
    }
    assert!(
        accepted > 0,
        "no mutation was accepted: the test proves nothing"
    );
}

#[test]
fn errors_say_what_and_where() {
    let err = ShapeError {
        fault: Fault::CountTooLarge,
        offset: 17,
    };
    assert_eq!(
        err.to_string(),
        "malformed request at byte 17: count exceeds the bytes that remain"
    );
    let err = ShapeError {
        fault: Fault::Unsupported {
            api_key: 1,
            version: 3,
        },
        offset: 0,
    };
    assert!(err.to_string().contains("api key 1 version 3"));
}
