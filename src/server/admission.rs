//! What a request may cost before anyone looks at it: requests are checked
//! on their wire bytes, before they are decoded.
//!
//! A protobuf message decodes to many times its size: an empty record is 2
//! bytes on the wire and about 120 in memory, an unknown field 2 bytes and up
//! to 48. grpcio decodes a message before the handler runs, so a 64 MiB
//! produce request of empty records cost 3.8 GB before the handler could
//! answer that the caller had no token. Here every service is registered
//! with a decoder that refuses what would cost too much: a produce request
//! is counted (records, and headers plus unknown fields) by a scan of its
//! wire format, every other request must be small. A refused request is
//! answered by the handler's path (UNAUTHENTICATED first when the token is
//! wrong, else INVALID_ARGUMENT saying what is allowed), never decoded.
//!
//! Peak memory of a maximal request: the 65 MiB grpc buffer, one copy of it
//! when grpc holds it in several slices, and the decoded records with at
//! most `request::MAX_BATCH_RECORDS` + `request::MAX_REQUEST_ITEMS` structures.

use super::request::scan_produce;
use super::shared::Shared;
use super::status::fail_now;
use crate::proto as pb;
use crate::proto::grpc::{AdminService, ConsumerService, ProducerService};
use grpcio::{
    Marshaller, MessageReader, Method, MethodType, RpcContext, RpcStatus, RpcStatusCode,
    ServerStreamingSink, Service, ServiceBuilder, UnarySink,
};
use grpcio_health::proto::Health;
use protobuf::Message;
use std::io::{BufRead, Read};

/// Every request but Produce: names, offsets and metadata fit easily.
pub const MAX_SMALL_REQUEST_BYTES: usize = 1 << 20;

/// A request as the decoder leaves it for the handler.
pub enum Admitted<T> {
    Decoded(T),
    /// Not decoded: why, for the client.
    Refused(String),
}

/// The decoder for ProduceRequest: counts before it decodes.
pub fn produce_de(reader: MessageReader) -> grpcio::Result<Admitted<pb::ProduceRequest>> {
    with_bytes(reader, |bytes| {
        if let Err(why) = scan_produce(bytes) {
            return Admitted::Refused(why);
        }
        decode(bytes, "ProduceRequest")
    })
}

/// The decoder for every other request: at most [`MAX_SMALL_REQUEST_BYTES`].
pub fn small_de<T: Message>(reader: MessageReader) -> grpcio::Result<Admitted<T>> {
    let len = reader.len();
    if len > MAX_SMALL_REQUEST_BYTES {
        return Ok(Admitted::Refused(format!(
            "a {} of {len} bytes; requests other than Produce are at most {MAX_SMALL_REQUEST_BYTES} bytes",
            message_name::<T>()
        )));
    }
    with_bytes(reader, |bytes| decode(bytes, message_name::<T>()))
}

/// The message's name, from its Rust type (grpcio-health's descriptor does
/// not parse with this protobuf version, so reflection is not used).
fn message_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// Runs `f` on the message's bytes: grpc's own buffer when it is one slice,
/// else a copy (grpc's buffer is released before `f` decodes).
fn with_bytes<T>(
    mut reader: MessageReader,
    f: impl FnOnce(&[u8]) -> Admitted<T>,
) -> grpcio::Result<Admitted<T>> {
    // Reading grpc's own buffer does not fail; if it did, the request is
    // refused like any other that does not decode.
    let unreadable =
        |e: std::io::Error| Admitted::Refused(format!("the request cannot be read: {e}"));
    let len = reader.len();
    match reader.fill_buf() {
        Ok(first) if first.len() == len => return Ok(f(first)),
        Ok(_) => {}
        Err(e) => return Ok(unreadable(e)),
    }
    let mut bytes = Vec::with_capacity(len);
    if let Err(e) = reader.read_to_end(&mut bytes) {
        return Ok(unreadable(e));
    }
    drop(reader);
    Ok(f(&bytes))
}

fn decode<T: Message>(bytes: &[u8], what: &str) -> Admitted<T> {
    match T::parse_from_bytes(bytes) {
        Ok(m) => Admitted::Decoded(m),
        Err(e) => Admitted::Refused(format!("the {what} does not decode: {e}")),
    }
}

fn never_ser<T>(_: &Admitted<T>, _: &mut grpcio::GrpcSlice) -> grpcio::Result<()> {
    // Servers only decode requests.
    Err(grpcio::Error::Codec(
        "a server does not encode requests".into(),
    ))
}

fn method<Req, Resp: Message>(
    ty: MethodType,
    name: &'static str,
    de: fn(MessageReader) -> grpcio::Result<Admitted<Req>>,
) -> Method<Admitted<Req>, Resp> {
    Method {
        ty,
        name,
        req_mar: Marshaller { ser: never_ser, de },
        resp_mar: Marshaller {
            ser: grpcio::pb_ser,
            de: grpcio::pb_de,
        },
    }
}

/// Answers a refused request: the token check first, so an unauthenticated
/// caller learns nothing else.
fn refuse_unary<R: Send + 'static>(
    shared: &Shared,
    ctx: &RpcContext<'_>,
    sink: UnarySink<R>,
    why: String,
) {
    let st = shared
        .check(ctx)
        .err()
        .unwrap_or_else(|| RpcStatus::with_message(RpcStatusCode::INVALID_ARGUMENT, why));
    fail_now(ctx, sink, st);
}

fn refuse_stream<R: Send + 'static>(
    shared: &Shared,
    ctx: &RpcContext<'_>,
    sink: ServerStreamingSink<R>,
    why: String,
) {
    let st = shared
        .check(ctx)
        .err()
        .unwrap_or_else(|| RpcStatus::with_message(RpcStatusCode::INVALID_ARGUMENT, why));
    ctx.spawn(async move {
        let _ = sink.fail(st).await;
    });
}

/// Registers `$svc.$call` under `$name` with the admission decoder `$de`.
macro_rules! handler {
    ($builder:ident, $shared:ident, $svc:ident, unary $name:literal => $call:ident, $de:expr) => {{
        let (mut svc, shared) = ($svc.clone(), $shared.clone());
        $builder.add_unary_handler(
            &method(MethodType::Unary, $name, $de),
            move |ctx, req, sink| match req {
                Admitted::Decoded(r) => svc.$call(ctx, r, sink),
                Admitted::Refused(why) => refuse_unary(&shared, &ctx, sink, why),
            },
        )
    }};
    ($builder:ident, $shared:ident, $svc:ident, stream $name:literal => $call:ident, $de:expr) => {{
        let (mut svc, shared) = ($svc.clone(), $shared.clone());
        $builder.add_server_streaming_handler(
            &method(MethodType::ServerStreaming, $name, $de),
            move |ctx, req, sink| match req {
                Admitted::Decoded(r) => svc.$call(ctx, r, sink),
                Admitted::Refused(why) => refuse_stream(&shared, &ctx, sink, why),
            },
        )
    }};
}

/// The four services (admin, producer, consumer, health), each method
/// behind its admission decoder.
pub fn services<A, P, C, H>(
    shared: &Shared,
    admin: A,
    producer: P,
    consumer: C,
    health: H,
) -> Vec<Service>
where
    A: AdminService + Send + Clone + 'static,
    P: ProducerService + Send + Clone + 'static,
    C: ConsumerService + Send + Clone + 'static,
    H: Health + Send + Clone + 'static,
{
    let b = ServiceBuilder::new();
    let b = handler!(b, shared, admin, unary "/streamhouse.v1.AdminService/CreateTopic" => create_topic, small_de);
    let b = handler!(b, shared, admin, unary "/streamhouse.v1.AdminService/DescribeTopic" => describe_topic, small_de);
    let b = handler!(b, shared, admin, unary "/streamhouse.v1.AdminService/ListTopics" => list_topics, small_de);
    let b = handler!(b, shared, admin, unary "/streamhouse.v1.AdminService/DeleteTopic" => delete_topic, small_de);
    let b = handler!(b, shared, admin, unary "/streamhouse.v1.AdminService/AlterTopic" => alter_topic, small_de);
    let b = handler!(b, shared, admin, unary "/streamhouse.v1.AdminService/DescribeCluster" => describe_cluster, small_de);
    let admin = b.build();

    let b = ServiceBuilder::new();
    let b = handler!(b, shared, producer, unary "/streamhouse.v1.ProducerService/Produce" => produce, produce_de);
    let b = handler!(b, shared, producer, unary "/streamhouse.v1.ProducerService/InitProducer" => init_producer, small_de);
    let producer = b.build();

    let b = ServiceBuilder::new();
    let b = handler!(b, shared, consumer, unary "/streamhouse.v1.ConsumerService/Fetch" => fetch, small_de);
    let b = handler!(b, shared, consumer, stream "/streamhouse.v1.ConsumerService/Subscribe" => subscribe, small_de);
    let b = handler!(b, shared, consumer, unary "/streamhouse.v1.ConsumerService/ListOffsets" => list_offsets, small_de);
    let b = handler!(b, shared, consumer, unary "/streamhouse.v1.ConsumerService/CommitOffset" => commit_offset, small_de);
    let b = handler!(b, shared, consumer, unary "/streamhouse.v1.ConsumerService/GetCommittedOffset" => get_committed_offset, small_de);
    let b = handler!(b, shared, consumer, unary "/streamhouse.v1.ConsumerService/ListGroups" => list_groups, small_de);
    let b = handler!(b, shared, consumer, unary "/streamhouse.v1.ConsumerService/DescribeGroup" => describe_group, small_de);
    let b = handler!(b, shared, consumer, unary "/streamhouse.v1.ConsumerService/DeleteGroup" => delete_group, small_de);
    let consumer = b.build();

    // Health answers without a token; a refused check still says why.
    let b = ServiceBuilder::new();
    let b = handler!(b, shared, health, unary "/grpc.health.v1.Health/Check" => check, small_de);
    let b = handler!(b, shared, health, stream "/grpc.health.v1.Health/Watch" => watch, small_de);
    vec![admin, producer, consumer, b.build()]
}
