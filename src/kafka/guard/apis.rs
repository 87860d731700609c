//! One shape check per API: the request body's fields, version by version,
//! as kafka-protocol's generated `Decodable` impls read them.

use super::{Check, Cursor};

pub(super) fn produce(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 9;
    c.nullable_string(f)?; // transactional_id
    c.i16()?; // acks
    c.i32()?; // timeout_ms
    c.array(f, |c| {
        if v <= 12 {
            c.string(f)?; // name
        } else {
            c.uuid()?; // topic_id
        }
        c.array(f, |c| {
            c.i32()?; // index
            c.nullable_bytes(f)?; // records
            c.tags(f)
        })?;
        c.tags(f)
    })?;
    c.tags(f)
}

pub(super) fn fetch(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 12;
    if v <= 14 {
        c.i32()?; // replica_id
    }
    c.i32()?; // max_wait_ms
    c.i32()?; // min_bytes
    c.i32()?; // max_bytes
    c.i8()?; // isolation_level
    if v >= 7 {
        c.i32()?; // session_id
        c.i32()?; // session_epoch
    }
    c.array(f, |c| fetch_topic(c, v))?;
    if v >= 7 {
        c.array(f, |c| {
            // forgotten_topics_data
            if v <= 12 {
                c.string(f)?; // topic
            } else {
                c.uuid()?; // topic_id
            }
            c.array(f, Cursor::i32)?; // partitions
            c.tags(f)
        })?;
    }
    if v >= 11 {
        c.string(f)?; // rack_id
    }
    c.tagged(f, |c, tag| match tag {
        0 => Some(c.nullable_string(true)), // cluster_id
        1 if v >= 15 => Some(replica_state(c)),
        1 => c.tag_not_in_version(),
        _ => None,
    })
}

/// Fetch's tag 1 (version 15 on): replica_id, replica_epoch, tags.
fn replica_state(c: &mut Cursor<'_>) -> Check {
    c.i32()?;
    c.i64()?;
    c.tags(true)
}

fn fetch_topic(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 12;
    if v <= 12 {
        c.string(f)?; // topic
    } else {
        c.uuid()?; // topic_id
    }
    c.array(f, |c| {
        c.i32()?; // partition
        if v >= 9 {
            c.i32()?; // current_leader_epoch
        }
        c.i64()?; // fetch_offset
        if v >= 12 {
            c.i32()?; // last_fetched_epoch
        }
        if v >= 5 {
            c.i64()?; // log_start_offset
        }
        c.i32()?; // partition_max_bytes
        c.tagged(f, |c, tag| match tag {
            0 if v >= 17 => Some(c.uuid()), // replica_directory_id
            1 if v >= 18 => Some(c.i64()),  // high_watermark
            0 | 1 => c.tag_not_in_version(),
            _ => None,
        })
    })?;
    c.tags(f)
}

pub(super) fn list_offsets(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 6;
    c.i32()?; // replica_id
    if v >= 2 {
        c.i8()?; // isolation_level
    }
    c.array(f, |c| {
        c.string(f)?; // name
        c.array(f, |c| {
            c.i32()?; // partition_index
            if v >= 4 {
                c.i32()?; // current_leader_epoch
            }
            c.i64()?; // timestamp
            c.tags(f)
        })?;
        c.tags(f)
    })?;
    if v >= 10 {
        c.i32()?; // timeout_ms
    }
    c.tags(f)
}

pub(super) fn metadata(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 9;
    c.nullable_array(f, |c| {
        if v >= 10 {
            c.uuid()?; // topic_id
        }
        c.nullable_string(f)?; // name
        c.tags(f)
    })?;
    if v >= 4 {
        c.bool()?; // allow_auto_topic_creation
    }
    if (8..=10).contains(&v) {
        c.bool()?; // include_cluster_authorized_operations
    }
    if v >= 8 {
        c.bool()?; // include_topic_authorized_operations
    }
    c.tags(f)
}

pub(super) fn offset_commit(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 8;
    c.string(f)?; // group_id
    c.i32()?; // generation_id_or_member_epoch
    c.string(f)?; // member_id
    if v >= 7 {
        c.nullable_string(f)?; // group_instance_id
    }
    if v <= 4 {
        c.i64()?; // retention_time_ms
    }
    c.array(f, |c| {
        c.string(f)?; // name
        c.array(f, |c| {
            c.i32()?; // partition_index
            c.i64()?; // committed_offset
            if v >= 6 {
                c.i32()?; // committed_leader_epoch
            }
            c.nullable_string(f)?; // committed_metadata
            c.tags(f)
        })?;
        c.tags(f)
    })?;
    c.tags(f)
}

pub(super) fn offset_fetch(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 6;
    let topic = |c: &mut Cursor<'_>| {
        c.string(f)?; // name
        c.array(f, Cursor::i32)?; // partition_indexes
        c.tags(f)
    };
    if v <= 7 {
        c.string(f)?; // group_id
        c.nullable_array(f, topic)?; // topics
    } else {
        c.array(f, |c| {
            c.string(f)?; // group_id
            if v >= 9 {
                c.nullable_string(f)?; // member_id
                c.i32()?; // member_epoch
            }
            c.nullable_array(f, topic)?; // topics
            c.tags(f)
        })?;
    }
    if v >= 7 {
        c.bool()?; // require_stable
    }
    c.tags(f)
}

pub(super) fn find_coordinator(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 3;
    if v <= 3 {
        c.string(f)?; // key
    }
    if v >= 1 {
        c.i8()?; // key_type
    }
    if v >= 4 {
        c.array(f, |c| c.string(f))?; // coordinator_keys
    }
    c.tags(f)
}

pub(super) fn join_group(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 6;
    c.string(f)?; // group_id
    c.i32()?; // session_timeout_ms
    if v >= 1 {
        c.i32()?; // rebalance_timeout_ms
    }
    c.string(f)?; // member_id
    if v >= 5 {
        c.nullable_string(f)?; // group_instance_id
    }
    c.string(f)?; // protocol_type
    c.array(f, |c| {
        c.string(f)?; // name
        c.bytes(f)?; // metadata
        c.tags(f)
    })?;
    if v >= 8 {
        c.nullable_string(f)?; // reason
    }
    c.tags(f)
}

pub(super) fn heartbeat(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 4;
    c.string(f)?; // group_id
    c.i32()?; // generation_id
    c.string(f)?; // member_id
    if v >= 3 {
        c.nullable_string(f)?; // group_instance_id
    }
    c.tags(f)
}

pub(super) fn leave_group(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 4;
    c.string(f)?; // group_id
    if v <= 2 {
        c.string(f)?; // member_id
    } else {
        c.array(f, |c| {
            c.string(f)?; // member_id
            c.nullable_string(f)?; // group_instance_id
            if v >= 5 {
                c.nullable_string(f)?; // reason
            }
            c.tags(f)
        })?;
    }
    c.tags(f)
}

pub(super) fn sync_group(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 4;
    c.string(f)?; // group_id
    c.i32()?; // generation_id
    c.string(f)?; // member_id
    if v >= 3 {
        c.nullable_string(f)?; // group_instance_id
    }
    if v >= 5 {
        c.nullable_string(f)?; // protocol_type
        c.nullable_string(f)?; // protocol_name
    }
    c.array(f, |c| {
        c.string(f)?; // member_id
        c.bytes(f)?; // assignment
        c.tags(f)
    })?;
    c.tags(f)
}

pub(super) fn describe_groups(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 5;
    c.array(f, |c| c.string(f))?; // groups
    if v >= 3 {
        c.bool()?; // include_authorized_operations
    }
    c.tags(f)
}

pub(super) fn list_groups(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 3;
    if v >= 4 {
        c.array(f, |c| c.string(f))?; // states_filter
    }
    if v >= 5 {
        c.array(f, |c| c.string(f))?; // types_filter
    }
    c.tags(f)
}

pub(super) fn api_versions(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 3;
    if f {
        c.string(f)?; // client_software_name
        c.string(f)?; // client_software_version
    }
    c.tags(f)
}

pub(super) fn create_topics(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 5;
    c.array(f, |c| {
        c.string(f)?; // name
        c.i32()?; // num_partitions
        c.i16()?; // replication_factor
        c.array(f, |c| {
            // assignments
            c.i32()?; // partition_index
            c.array(f, Cursor::i32)?; // broker_ids
            c.tags(f)
        })?;
        c.array(f, |c| {
            // configs
            c.string(f)?; // name
            c.nullable_string(f)?; // value
            c.tags(f)
        })?;
        c.tags(f)
    })?;
    c.i32()?; // timeout_ms
    c.bool()?; // validate_only
    c.tags(f)
}

pub(super) fn delete_topics(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 4;
    if v >= 6 {
        c.array(f, |c| {
            c.nullable_string(f)?; // name
            c.uuid()?; // topic_id
            c.tags(f)
        })?;
    } else {
        c.array(f, |c| c.string(f))?; // topic_names
    }
    c.i32()?; // timeout_ms
    c.tags(f)
}

pub(super) fn init_producer_id(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 2;
    c.nullable_string(f)?; // transactional_id
    c.i32()?; // transaction_timeout_ms
    if v >= 3 {
        c.i64()?; // producer_id
        c.i16()?; // producer_epoch
    }
    c.tags(f)
}

pub(super) fn describe_configs(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 4;
    c.array(f, |c| {
        c.i8()?; // resource_type
        c.string(f)?; // resource_name
        c.nullable_array(f, |c| c.string(f))?; // configuration_keys
        c.tags(f)
    })?;
    c.bool()?; // include_synonyms
    if v >= 3 {
        c.bool()?; // include_documentation
    }
    c.tags(f)
}

pub(super) fn describe_cluster(c: &mut Cursor<'_>, v: i16) -> Check {
    c.bool()?; // include_cluster_authorized_operations
    if v >= 1 {
        c.i8()?; // endpoint_type
    }
    if v >= 2 {
        c.bool()?; // include_fenced_brokers
    }
    c.tags(true)
}

pub(super) fn sasl_handshake(c: &mut Cursor<'_>, _v: i16) -> Check {
    c.string(false) // mechanism
}

pub(super) fn sasl_authenticate(c: &mut Cursor<'_>, v: i16) -> Check {
    let f = v >= 2;
    c.bytes(f)?; // auth_bytes
    c.tags(f)
}
