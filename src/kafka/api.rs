//! Dispatch: the APIs and versions this node serves (ApiVersions lists
//! exactly [`SUPPORTED`]), each request's shape checked ([`guard`]) and
//! decoded, handed to its handler, and the answer encoded.
//!
//! [`guard`]: super::guard

use super::convert::code;
use super::sasl::{After, Session};
use super::wire::{self, RequestHeader};
use super::{admin, fetch, guard, membership, metadata, offsets, produce, Face};
use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use std::sync::Arc;

/// (API, lowest version, highest version) served. Produce starts at 3 and
/// Fetch at 4: older versions carry message sets v0/v1, which neither
/// kafka-protocol 0.18 nor this node decodes (Kafka 4.0 removed them too).
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::DescribeCluster, 0, 1),
];

/// Served, and listed by ApiVersions, only on a listener with SASL
/// (`--kafka-sasl-users`). SaslHandshake v0 is listed because librdkafka
/// uses SASL only with a broker that lists it; a v0 handshake (raw SASL
/// tokens outside Kafka's framing would follow it) is answered
/// UNSUPPORTED_VERSION and closed. Clients pick v1, the highest.
pub const SASL: &[(ApiKey, i16, i16)] = &[
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// What the connection does with a request.
pub enum Action {
    /// Send these bytes (in order).
    Reply(Vec<u8>),
    /// Run this (it may wait for the engine), then send what it returns;
    /// `None` closes the connection.
    Later(Box<dyn FnOnce() -> Option<Vec<u8>> + Send>),
    /// Nothing to send (a produce with acks=0).
    NoReply,
    /// Close the connection, for this reason (logged).
    Close(String),
    /// Send these bytes, then close, for this reason (a failed SASL
    /// authentication: the client reads why before the connection ends).
    ReplyThenClose(Vec<u8>, String),
}

/// A handler's answer: now, after waiting, or none at all.
pub enum Answer<R> {
    Now(R),
    Later(Box<dyn FnOnce() -> R + Send>),
    Nothing,
}

/// Who sent a request, for the group APIs (DescribeGroups shows them).
pub struct Client {
    /// The request header's client id.
    pub id: String,
    /// `/` and the peer's IP address, as Kafka writes it.
    pub host: String,
}

/// The index in [`SUPPORTED`] of the frame's API, if served.
pub fn served_index(frame: &[u8]) -> Option<usize> {
    let key = i16::from_be_bytes([*frame.first()?, *frame.get(1)?]);
    SUPPORTED.iter().position(|(k, ..)| *k as i16 == key)
}

/// Handles one request frame from `peer` (`ip:port`) on a connection
/// at `session`'s point of its authentication.
pub fn handle(face: &Arc<Face>, frame: Vec<u8>, peer: &str, session: &mut Session) -> Action {
    let (header, at) = match wire::parse_header(&frame) {
        Ok(h) => h,
        Err(e) => return Action::Close(e.to_string()),
    };
    let body = Bytes::from(frame).slice(at..);
    let Ok(key) = ApiKey::try_from(header.api_key) else {
        return Action::Close(format!("unknown api key {}", header.api_key));
    };
    let version = header.api_version;
    let served = advertised(face).any(|(k, lo, hi)| *k == key && (*lo..=*hi).contains(&version));
    if !served {
        if key == ApiKey::ApiVersions {
            return unsupported_api_versions(face, &header);
        }
        return Action::Close(format!("{key:?} version {version} is not supported"));
    }
    if let Err(e) = guard::check_request(header.api_key, version, &body) {
        return Action::Close(format!("malformed {key:?} v{version} request: {e}"));
    }
    match key {
        ApiKey::ApiVersions => {}
        ApiKey::SaslHandshake => {
            return sasl_step(face, header, body, |f, q| session.handshake(f, q, version));
        }
        ApiKey::SaslAuthenticate => {
            return sasl_step(face, header, body, |f, q| session.authenticate(f, q));
        }
        _ if !session.authenticated() => {
            return Action::Close(format!("{key:?} before SASL authentication"));
        }
        _ => {}
    }
    if key == ApiKey::JoinGroup {
        let ip = peer.rsplit_once(':').map_or(peer, |(ip, _)| ip);
        let client = Client {
            id: header.client_id.clone().unwrap_or_default(),
            host: format!("/{}", ip.trim_start_matches('[').trim_end_matches(']')),
        };
        let join = |f: &Arc<Face>, q, v| membership::join_group(f, q, v, &client);
        return run(face, header, body, join);
    }
    dispatch(face, key, header, body)
}

fn dispatch(face: &Arc<Face>, key: ApiKey, header: RequestHeader, body: Bytes) -> Action {
    match key {
        ApiKey::ApiVersions => run(face, header, body, |f, _: ApiVersionsRequest, _| {
            Answer::Now(api_versions(f, code::NONE))
        }),
        ApiKey::Metadata => run(face, header, body, metadata::metadata),
        ApiKey::Produce => run(face, header, body, produce::produce),
        ApiKey::InitProducerId => run(face, header, body, produce::init_producer_id),
        ApiKey::Fetch => run(face, header, body, fetch::fetch),
        ApiKey::ListOffsets => run(face, header, body, offsets::list_offsets),
        ApiKey::FindCoordinator => run(face, header, body, offsets::find_coordinator),
        ApiKey::OffsetCommit => run(face, header, body, offsets::offset_commit),
        ApiKey::OffsetFetch => run(face, header, body, offsets::offset_fetch),
        ApiKey::CreateTopics => run(face, header, body, admin::create_topics),
        ApiKey::DeleteTopics => run(face, header, body, admin::delete_topics),
        ApiKey::DescribeConfigs => run(face, header, body, admin::describe_configs),
        ApiKey::SyncGroup => run(face, header, body, membership::sync_group),
        ApiKey::Heartbeat => run(face, header, body, membership::heartbeat),
        ApiKey::LeaveGroup => run(face, header, body, membership::leave_group),
        ApiKey::DescribeGroups => run(face, header, body, membership::describe_groups),
        ApiKey::ListGroups => run(face, header, body, membership::list_groups),
        ApiKey::DescribeCluster => run(face, header, body, admin::describe_cluster),
        other => Action::Close(format!("{other:?} is not served")),
    }
}

/// Decodes the body as `Q`, runs the handler, encodes its answer.
fn run<Q, R>(
    face: &Arc<Face>,
    header: RequestHeader,
    mut body: Bytes,
    handler: impl FnOnce(&Arc<Face>, Q, i16) -> Answer<R>,
) -> Action
where
    Q: Decodable,
    R: Encodable + Send + 'static,
{
    let version = header.api_version;
    let req = match Q::decode(&mut body, version) {
        Ok(r) => r,
        Err(e) => {
            return Action::Close(format!(
                "cannot decode api {} v{version}: {e}",
                header.api_key
            ))
        }
    };
    let encode = move |resp: R| match wire::encode_response(&header, &resp, version) {
        Ok(b) => Some(b),
        Err(e) => {
            log::warn!("kafka: {e}");
            None
        }
    };
    match handler(face, req, version) {
        Answer::Now(resp) => match encode(resp) {
            Some(b) => Action::Reply(b),
            None => Action::Close("an answer could not be encoded".into()),
        },
        Answer::Later(work) => Action::Later(Box::new(move || encode(work()))),
        Answer::Nothing => Action::NoReply,
    }
}

/// A SASL request: its answer, and the connection closed after it when
/// the step says so.
fn sasl_step<Q: Decodable, R: Encodable + Send + 'static>(
    face: &Arc<Face>,
    header: RequestHeader,
    body: Bytes,
    step: impl FnOnce(&Arc<Face>, Q) -> (Answer<R>, After),
) -> Action {
    let mut after = After::GoOn;
    let action = run(face, header, body, |f, q, _| {
        let (answer, then) = step(f, q);
        after = then;
        answer
    });
    match (action, after) {
        (Action::Reply(b), After::Close(why)) => Action::ReplyThenClose(b, why),
        (_, After::Close(why)) => Action::Close(why),
        (action, After::GoOn) => action,
    }
}

/// The APIs this listener serves: [`SUPPORTED`], and [`SASL`]'s when on.
fn advertised(face: &Face) -> impl Iterator<Item = &'static (ApiKey, i16, i16)> {
    let sasl: &[_] = if face.config.sasl.is_some() {
        SASL
    } else {
        &[]
    };
    SUPPORTED.iter().chain(sasl)
}

/// The ApiVersions answer: every API this listener serves.
pub fn api_versions(face: &Face, error_code: i16) -> ApiVersionsResponse {
    let api_keys = advertised(face)
        .map(|(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*lo)
                .with_max_version(*hi)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
}

/// An ApiVersions request at a version we do not serve: Kafka's rule is
/// a v0 answer with UNSUPPORTED_VERSION and the list, so that the client
/// can pick a version both sides know.
fn unsupported_api_versions(face: &Face, header: &RequestHeader) -> Action {
    match wire::encode_response(header, &api_versions(face, code::UNSUPPORTED_VERSION), 0) {
        Ok(b) => Action::Reply(b),
        Err(e) => Action::Close(e),
    }
}

/// A string for kafka-protocol.
pub fn sb(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}
