//! The null server: the same grpcio stack, proto and channel settings as
//! `streamhoused`, answering Produce (and InitProducer, CreateTopic) without
//! storing anything. `scripts/bench-grpc.sh` runs it beside the real server
//! so the real server's produce rate can be read as a ratio of what this
//! machine's gRPC stack and clients can do at all.
//!
//!   null_server [--listen ADDR]     prints "null server listening on ADDR"

use grpcio::{
    ChannelBuilder, Environment, RpcContext, ServerBuilder, ServerCredentials, UnarySink,
};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use streamhouse::proto as pb;
use streamhouse::proto::grpc::{AdminService, ProducerService};

#[derive(Clone, Default)]
struct NullProducer {
    next_offset: Arc<AtomicI64>,
    next_id: Arc<AtomicU64>,
}

impl ProducerService for NullProducer {
    fn produce(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::ProduceRequest,
        sink: UnarySink<pb::ProduceResponse>,
    ) {
        let count = req.get_records().len() as i64;
        let mut ack = pb::PartitionAck::new();
        ack.set_partition(req.get_partition());
        ack.set_base_offset(self.next_offset.fetch_add(count, Ordering::Relaxed));
        ack.set_count(count);
        let mut resp = pb::ProduceResponse::new();
        resp.mut_acks().push(ack);
        // Replied from a spawned future, as the real server does.
        ctx.spawn(async move {
            let _ = sink.success(resp).await;
        });
    }

    fn init_producer(
        &mut self,
        ctx: RpcContext<'_>,
        _req: pb::InitProducerRequest,
        sink: UnarySink<pb::InitProducerResponse>,
    ) {
        let mut resp = pb::InitProducerResponse::new();
        resp.set_producer_id(self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        ctx.spawn(async move {
            let _ = sink.success(resp).await;
        });
    }
}

#[derive(Clone)]
struct NullAdmin;

impl AdminService for NullAdmin {
    fn create_topic(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::CreateTopicRequest,
        sink: UnarySink<pb::TopicInfo>,
    ) {
        let mut info = pb::TopicInfo::new();
        info.set_name(req.get_name().to_string());
        info.set_partitions(req.get_partitions());
        ctx.spawn(async move {
            let _ = sink.success(info).await;
        });
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:0".to_string();
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            // `cargo bench` passes --bench; nothing else is expected.
            ("--bench", _) => {}
            _ => {
                eprintln!("usage: null_server [--listen ADDR]");
                std::process::exit(2);
            }
        }
    }
    // As streamhoused: two completion queues, a 65 MiB message limit.
    let env = Arc::new(Environment::new(2));
    let max_message = (64 << 20) + (1 << 20);
    let channel = ChannelBuilder::new(Arc::clone(&env))
        .max_receive_message_len(max_message)
        .max_send_message_len(max_message)
        .build_args();
    let mut server = ServerBuilder::new(env)
        .channel_args(channel)
        .register_service(streamhouse::proto::grpc::create_producer_service(
            NullProducer::default(),
        ))
        .register_service(streamhouse::proto::grpc::create_admin_service(NullAdmin))
        .build()
        .expect("build the gRPC server");
    let port = server
        .add_listening_port(listen.clone(), ServerCredentials::insecure())
        .expect("listen");
    server.start();
    let host = listen.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
    println!("null server listening on {host}:{port}");
    loop {
        std::thread::park();
    }
}
