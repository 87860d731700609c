//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup, converted to and from
//! the [`Coordinator`]'s calls; DescribeGroups and ListGroups, which show
//! its groups beside those that only have committed offsets.
//!
//! A join or sync that must wait is answered [`Answer::Later`]: the
//! connection's responder thread waits for the coordinator's reply (Kafka
//! answers a connection's requests in order, so nothing behind it could
//! be sent anyway).
//!
//! [`Coordinator`]: super::coordinator::Coordinator

use super::api::{sb, Answer, Client};
use super::convert::code as kcode;
use super::coordinator::COORDINATOR_NOT_AVAILABLE;
use super::group::{code, join_error, Caller, Join, Reply};
use super::metadata::NO_OPERATIONS;
use super::Face;
use crate::engine::GroupHome;
use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Session timeouts accepted (Kafka's `group.min.session.timeout.ms` is 6 s;
/// shorter ones are allowed here, for tests and small deployments).
const MIN_SESSION: Duration = Duration::from_secs(1);
/// Kafka's `group.max.session.timeout.ms`; also the cap on a rebalance
/// timeout, so that no request waits longer.
const MAX_TIMEOUT: Duration = Duration::from_secs(1800);
/// A member's protocols (names and metadata) and each assignment, at most.
pub const MAX_MEMBER_BYTES: usize = 1 << 20;
/// Longest a join or sync waits for its answer: the longest rebalance
/// timeout, plus room for the ticker.
const MAX_WAIT: Duration = Duration::from_secs(1800 + 5);
const INVALID_SESSION_TIMEOUT: i16 = 26;

fn ms(v: i32) -> Duration {
    Duration::from_millis(u64::try_from(v).unwrap_or(0))
}

/// The reason a join is refused before it reaches the coordinator.
fn refuse_join(req: &JoinGroupRequest, version: i16) -> Option<i16> {
    let session = ms(req.session_timeout_ms);
    let bytes: usize = req
        .protocols
        .iter()
        .map(|p| p.name.len() + p.metadata.len())
        .sum();
    if req.group_id.0.is_empty() {
        Some(kcode::INVALID_GROUP_ID)
    } else if !(MIN_SESSION..=MAX_TIMEOUT).contains(&session) {
        Some(INVALID_SESSION_TIMEOUT)
    } else if req.protocol_type.is_empty() || req.protocols.is_empty() {
        Some(code::INCONSISTENT_GROUP_PROTOCOL)
    } else if bytes > MAX_MEMBER_BYTES || (version >= 1 && req.rebalance_timeout_ms < 0) {
        Some(kcode::INVALID_REQUEST)
    } else {
        None
    }
}

pub fn join_group(
    face: &Arc<Face>,
    req: JoinGroupRequest,
    version: i16,
    client: &Client,
) -> Answer<JoinGroupResponse> {
    let asked_id = req.member_id.to_string();
    let elsewhere = || super::offsets::not_coordinator(face, req.group_id.0.as_str());
    if let Some(error) = refuse_join(&req, version).or_else(elsewhere) {
        return Answer::Now(join_response(join_error(&asked_id, error), version));
    }
    let session = ms(req.session_timeout_ms);
    // v0 has no rebalance timeout: the session timeout serves as both.
    let rebalance = if version == 0 {
        session
    } else {
        ms(req.rebalance_timeout_ms).min(MAX_TIMEOUT)
    };
    let j = Join {
        member_id: asked_id.clone(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: client.id.clone(),
        client_host: client.host.clone(),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.to_vec()))
            .collect(),
        session_timeout: session,
        rebalance_timeout: rebalance,
        require_known_member: version >= 4,
    };
    let protocol_type = j.protocol_type.clone();
    let rx = face.groups.join(req.group_id.0.as_str(), j, Instant::now());
    let answer = move |reply: Option<Reply>| {
        let reply = reply.unwrap_or_else(|| join_error(&asked_id, COORDINATOR_NOT_AVAILABLE));
        let mut r = join_response(reply, version);
        if version >= 7 && r.error_code == code::NONE {
            r.protocol_type = Some(sb(protocol_type));
        }
        r
    };
    match rx.try_recv() {
        Ok(reply) => Answer::Now(answer(Some(reply))),
        Err(_) => Answer::Later(Box::new(move || answer(rx.recv_timeout(MAX_WAIT).ok()))),
    }
}

fn join_response(reply: Reply, version: i16) -> JoinGroupResponse {
    let Reply::Join { joined: j, .. } = reply else {
        return JoinGroupResponse::default().with_error_code(COORDINATOR_NOT_AVAILABLE);
    };
    // Non-nullable before v7.
    let protocol = match (j.protocol, version) {
        (None, v) if v < 7 => Some(sb("")),
        (p, _) => p.map(sb),
    };
    let members = j
        .members
        .into_iter()
        .map(|(id, instance, meta)| {
            let m = JoinGroupResponseMember::default()
                .with_member_id(sb(id))
                .with_metadata(Bytes::from(meta));
            if version >= 5 {
                m.with_group_instance_id(instance.map(sb))
            } else {
                m
            }
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(j.error)
        .with_generation_id(j.generation)
        .with_protocol_name(protocol)
        .with_leader(sb(j.leader))
        .with_member_id(sb(j.member_id))
        .with_members(members)
}

pub fn sync_group(
    face: &Arc<Face>,
    req: SyncGroupRequest,
    version: i16,
) -> Answer<SyncGroupResponse> {
    let respond = move |error: i16, assignment: Vec<u8>| {
        let r = SyncGroupResponse::default()
            .with_error_code(error)
            .with_assignment(Bytes::from(assignment));
        if version >= 5 {
            r.with_protocol_type(req.protocol_type.clone())
                .with_protocol_name(req.protocol_name.clone())
        } else {
            r
        }
    };
    if req
        .assignments
        .iter()
        .any(|a| a.assignment.len() > MAX_MEMBER_BYTES)
    {
        return Answer::Now(respond(kcode::INVALID_REQUEST, Vec::new()));
    }
    if let Some(error) = super::offsets::not_coordinator(face, req.group_id.0.as_str()) {
        return Answer::Now(respond(error, Vec::new()));
    }
    let assignments = req
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.to_vec()))
        .collect();
    let instance = req.group_instance_id.as_ref().map(|s| s.as_str());
    let caller = Caller::new(req.member_id.as_str(), instance);
    let rx = face.groups.sync(
        req.group_id.0.as_str(),
        caller,
        req.generation_id,
        assignments,
        Instant::now(),
    );
    let answer = move |reply: Option<Reply>| match reply {
        Some(Reply::Sync {
            error, assignment, ..
        }) => respond(error, assignment),
        _ => respond(COORDINATOR_NOT_AVAILABLE, Vec::new()),
    };
    match rx.try_recv() {
        Ok(reply) => Answer::Now(answer(Some(reply))),
        Err(_) => Answer::Later(Box::new(move || answer(rx.recv_timeout(MAX_WAIT).ok()))),
    }
}

pub fn heartbeat(face: &Arc<Face>, req: HeartbeatRequest, _v: i16) -> Answer<HeartbeatResponse> {
    let instance = req.group_instance_id.as_ref().map(|s| s.as_str());
    let caller = Caller::new(req.member_id.as_str(), instance);
    let group = req.group_id.0.as_str();
    let error = super::offsets::not_coordinator(face, group)
        .unwrap_or_else(|| face.groups.heartbeat(group, caller, req.generation_id));
    Answer::Now(HeartbeatResponse::default().with_error_code(error))
}

/// v0–2 name one member; v3+ a batch, each answered on its own.
pub fn leave_group(
    face: &Arc<Face>,
    req: LeaveGroupRequest,
    version: i16,
) -> Answer<LeaveGroupResponse> {
    let group = req.group_id.0.as_str();
    if let Some(error) = super::offsets::not_coordinator(face, group) {
        return Answer::Now(LeaveGroupResponse::default().with_error_code(error));
    }
    if version < 3 {
        let codes = face
            .groups
            .leave(group, &[Caller::new(req.member_id.as_str(), None)]);
        let error = codes.first().copied().unwrap_or(code::UNKNOWN_MEMBER_ID);
        return Answer::Now(LeaveGroupResponse::default().with_error_code(error));
    }
    let callers: Vec<Caller<'_>> = req
        .members
        .iter()
        .map(|m| Caller::new(m.member_id.as_str(), m.group_instance_id.as_deref()))
        .collect();
    let codes = face.groups.leave(group, &callers);
    let members = req
        .members
        .iter()
        .zip(codes)
        .map(|(m, error)| {
            MemberResponse::default()
                .with_member_id(m.member_id.clone())
                .with_group_instance_id(m.group_instance_id.clone())
                .with_error_code(error)
        })
        .collect();
    Answer::Now(LeaveGroupResponse::default().with_members(members))
}

pub fn describe_groups(
    face: &Arc<Face>,
    req: DescribeGroupsRequest,
    version: i16,
) -> Answer<DescribeGroupsResponse> {
    let with_offsets = face.engine.groups().unwrap_or_default();
    let groups = req
        .groups
        .into_iter()
        .map(|g| {
            let d = DescribedGroup::default().with_authorized_operations(NO_OPERATIONS);
            if let Some(error) = super::offsets::not_coordinator(face, g.0.as_str()) {
                return d.with_group_id(g).with_error_code(error);
            }
            if let Some(v) = face.groups.describe(g.0.as_str()) {
                let members = v
                    .members
                    .into_iter()
                    .map(|m| {
                        let d = DescribedGroupMember::default()
                            .with_member_id(sb(m.member_id))
                            .with_client_id(sb(m.client_id))
                            .with_client_host(sb(m.client_host))
                            .with_member_metadata(Bytes::from(m.metadata))
                            .with_member_assignment(Bytes::from(m.assignment));
                        if version >= 4 {
                            d.with_group_instance_id(m.instance_id.map(sb))
                        } else {
                            d
                        }
                    })
                    .collect();
                return d
                    .with_group_id(g)
                    .with_group_state(sb(v.state.name()))
                    .with_protocol_type(sb(v.protocol_type))
                    .with_protocol_data(sb(v.protocol))
                    .with_members(members);
            }
            // Offsets only, no members: Kafka calls such a group Empty, and
            // one it does not know Dead.
            let known = with_offsets.iter().any(|k| k.as_str() == g.0.as_str());
            let (state, kind) = if known {
                ("Empty", "consumer")
            } else {
                ("Dead", "")
            };
            d.with_group_id(g)
                .with_group_state(sb(state))
                .with_protocol_type(sb(kind))
        })
        .collect();
    Answer::Now(DescribeGroupsResponse::default().with_groups(groups))
}

pub fn list_groups(
    face: &Arc<Face>,
    req: ListGroupsRequest,
    version: i16,
) -> Answer<ListGroupsResponse> {
    let with_offsets = match face.engine.groups() {
        Ok(g) => g,
        Err(e) => {
            let error = super::convert::error_code(&e);
            return Answer::Now(ListGroupsResponse::default().with_error_code(error));
        }
    };
    // In a cluster each node lists the groups it coordinates (clients
    // ask every broker and merge).
    let mut listed: std::collections::BTreeMap<String, (String, &'static str)> = with_offsets
        .into_iter()
        .filter(|g| matches!(face.engine.group_home(g), GroupHome::Here { .. }))
        .map(|g| (g, ("consumer".to_string(), "Empty")))
        .collect();
    for (id, v) in face.groups.list() {
        listed.insert(id, (v.protocol_type, v.state.name()));
    }
    let wanted = |state: &str| {
        req.states_filter.is_empty()
            || req
                .states_filter
                .iter()
                .any(|s| s.as_str().eq_ignore_ascii_case(state))
    };
    let groups = listed
        .into_iter()
        .filter(|(_, (_, state))| wanted(state))
        .map(|(id, (kind, state))| {
            let g = ListedGroup::default()
                .with_group_id(GroupId(sb(id)))
                .with_protocol_type(sb(kind));
            if version >= 4 {
                g.with_group_state(sb(state))
            } else {
                g
            }
        })
        .collect();
    Answer::Now(ListGroupsResponse::default().with_groups(groups))
}
