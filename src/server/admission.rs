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
//! most [`MAX_BATCH_RECORDS`] + [`MAX_REQUEST_ITEMS`] structures.

use super::request::MAX_BATCH_RECORDS;
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

/// Headers plus unknown fields, summed over a produce request's records.
pub const MAX_REQUEST_ITEMS: usize = 262_144;
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

/// What a produce request holds, counted on the wire.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ProduceCounts {
    pub records: usize,
    /// Headers and unknown fields at any depth.
    pub items: usize,
}

/// Counts a ProduceRequest's records, headers and unknown fields without
/// decoding it, and refuses one over the limits (or one that is not
/// protobuf at all).
pub fn scan_produce(bytes: &[u8]) -> Result<ProduceCounts, String> {
    let mut counts = ProduceCounts::default();
    let mut wire = Wire::new(bytes);
    while let Some((field, value)) = wire.next_field()? {
        match (field, value) {
            (3, Value::Bytes(record)) => {
                counts.records += 1;
                if counts.records > MAX_BATCH_RECORDS {
                    return Err(format!(
                        "more than {MAX_BATCH_RECORDS} records in one request; the limit is {MAX_BATCH_RECORDS}"
                    ));
                }
                scan_record(record, &mut counts)?;
            }
            (1..=7, _) => {}
            _ => counts.add_item()?,
        }
    }
    Ok(counts)
}

fn scan_record(bytes: &[u8], counts: &mut ProduceCounts) -> Result<(), String> {
    let mut wire = Wire::new(bytes);
    while let Some((field, value)) = wire.next_field()? {
        match (field, value) {
            (5, Value::Bytes(header)) => {
                counts.add_item()?;
                let mut h = Wire::new(header);
                while let Some((field, _)) = h.next_field()? {
                    if !(1..=2).contains(&field) {
                        counts.add_item()?;
                    }
                }
            }
            (1..=5, _) => {}
            _ => counts.add_item()?,
        }
    }
    Ok(())
}

impl ProduceCounts {
    fn add_item(&mut self) -> Result<(), String> {
        self.items += 1;
        if self.items > MAX_REQUEST_ITEMS {
            return Err(format!(
                "more than {MAX_REQUEST_ITEMS} headers (and unknown fields) in one request; the limit is {MAX_REQUEST_ITEMS}"
            ));
        }
        Ok(())
    }
}

/// One field's value; only length-delimited ones are looked into.
enum Value<'a> {
    Scalar,
    Bytes(&'a [u8]),
}

/// The protobuf wire format, one field at a time.
struct Wire<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Wire<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Wire { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(malformed("a varint runs past the end"));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed("a varint is longer than 10 bytes"))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let rest = (self.buf.len() - self.pos) as u64;
        if n > rest {
            return Err(malformed("a field runs past the end"));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, String> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let value = match tag & 7 {
            0 => self.varint().map(|_| Value::Scalar)?,
            1 => self.take(8).map(|_| Value::Scalar)?,
            2 => {
                let n = self.varint()?;
                Value::Bytes(self.take(n)?)
            }
            5 => self.take(4).map(|_| Value::Scalar)?,
            w => return Err(malformed(&format!("wire type {w} is not used by this API"))),
        };
        Ok(Some((tag >> 3, value)))
    }
}

fn malformed(why: &str) -> String {
    format!("the ProduceRequest does not decode: {why}")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(records: &[pb::Record]) -> Vec<u8> {
        let mut req = pb::ProduceRequest::new();
        req.set_topic("t".into());
        req.set_partition(0);
        req.set_records(records.to_vec().into());
        req.write_to_bytes().expect("encode")
    }

    fn record(headers: usize) -> pb::Record {
        let mut r = pb::Record::new();
        r.set_key(b"k".to_vec());
        r.set_value(b"{\"flight\": 1}".to_vec());
        for i in 0..headers {
            let mut h = pb::Header::new();
            h.set_key(format!("h{i}"));
            h.set_value(vec![i as u8]);
            r.mut_headers().push(h);
        }
        r
    }

    #[test]
    fn counts_records_and_headers_as_the_decoder_would_see_them() {
        let bytes = request(&[record(2), record(0), record(3)]);
        assert_eq!(
            scan_produce(&bytes),
            Ok(ProduceCounts {
                records: 3,
                items: 5
            })
        );
    }

    #[test]
    fn unknown_fields_count_as_items_at_every_depth() {
        let mut bytes = request(&[record(1)]);
        // Field 99 (varint 1) at the top level, twice.
        for _ in 0..2 {
            bytes.extend_from_slice(&[0x98, 0x06, 0x01]);
        }
        assert_eq!(scan_produce(&bytes).map(|c| c.items), Ok(3));
    }

    #[test]
    fn a_request_of_empty_records_is_refused_past_the_record_limit() {
        // Two bytes per empty record: what made 64 MiB cost gigabytes.
        let bytes: Vec<u8> = std::iter::repeat_n([0x1a, 0x00], MAX_BATCH_RECORDS + 1)
            .flatten()
            .collect();
        let err = scan_produce(&bytes).expect_err("over the limit");
        assert!(err.contains("100000 records"), "{err}");
        let at_limit = &bytes[..2 * MAX_BATCH_RECORDS];
        assert_eq!(
            scan_produce(at_limit).map(|c| c.records),
            Ok(MAX_BATCH_RECORDS)
        );
    }

    #[test]
    fn empty_headers_are_refused_past_the_item_limit() {
        // One record of many empty headers (field 5, length 0).
        let mut inner = Vec::new();
        for _ in 0..=MAX_REQUEST_ITEMS {
            inner.extend_from_slice(&[0x2a, 0x00]);
        }
        let mut bytes = vec![0x1a];
        crate::codec::put_uvarint(&mut bytes, inner.len() as u64);
        bytes.extend_from_slice(&inner);
        let err = scan_produce(&bytes).expect_err("over the limit");
        assert!(err.contains("262144 headers"), "{err}");
    }

    #[test]
    fn truncated_and_odd_bytes_are_refused_with_a_reason() {
        let bytes = request(&[record(1)]);
        for cut in 1..bytes.len() {
            // Every prefix either scans (a shorter valid message) or says why.
            if let Err(e) = scan_produce(&bytes[..cut]) {
                assert!(e.starts_with("the ProduceRequest does not decode"), "{e}");
            }
        }
        assert!(scan_produce(&[0x1b]).is_err(), "wire type 3 (group)");
        assert!(
            scan_produce(&[0x1a, 0x05, 0x00]).is_err(),
            "length past the end"
        );
        assert!(scan_produce(&[0x08; 11]).is_err(), "an endless varint");
    }
}
