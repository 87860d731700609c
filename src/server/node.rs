//! The running server: the engine, grpcio's C-core server with the three
//! services and health, and `/metrics`; start and graceful shutdown.

use super::admin::Admin;
use super::consumer::Consumer;
use super::flags::{KafkaListener, ServerConfig};
use super::gate::{Bound, Gate, GateStats};
use super::producer::Producer;
use super::shared::{BlockingPool, Shared};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::kafka::{self, Connections, Coordinator, Face, GroupLimits};
use crate::layout;
use crate::object_store::{LocalFsStore, ObjectStore, S3Store};
use crate::util::sync::lock;
use crate::util::thread;
use grpcio::{ChannelBuilder, Environment, ServerBuilder};
use grpcio_health::{HealthService, ServingStatus};
use std::os::fd::IntoRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running server.
pub struct Server {
    /// Shared with the accepting thread, which adds each connection.
    grpc: Arc<Mutex<grpcio::Server>>,
    gate: Gate,
    shared: Shared,
    health: HealthService,
    engine: Arc<Engine>,
    addr: String,
    metrics: Option<super::metrics_http::MetricsServer>,
    kafka: Option<KafkaListening>,
}

/// The Kafka listener: its gate, its open connections and its group
/// coordinator.
struct KafkaListening {
    gate: Gate,
    connections: Arc<Connections>,
    groups: Arc<Coordinator>,
    addr: String,
}

impl Server {
    /// Opens the engine (recovering what is on disk) and starts serving.
    pub fn start(config: &ServerConfig) -> Result<Server> {
        // Every open partition holds its WAL file open.
        let open_files_limit = crate::util::rlimit::raise_open_files_limit();
        match open_files_limit {
            Some(n) => log::info!("open-files limit: {n}"),
            None => log::warn!("cannot read the open-files limit"),
        }
        let store: Arc<dyn ObjectStore> = match &config.s3 {
            Some(s3) => Arc::new(S3Store::new(s3)?),
            None => Arc::new(LocalFsStore::open(layout::local_objects_dir(
                &config.engine.data_dir,
            ))?),
        };
        log::info!(
            "opening data in {} with objects in {}",
            config.engine.data_dir.display(),
            store.describe()
        );
        // Before the engine takes the data dir and the prefix: a port
        // another process holds is a configuration error.
        let bound = Bound::bind(&config.listen)?;
        let kafka_bound = match &config.kafka {
            Some(k) => Some(Bound::bind(&k.listen)?),
            None => None,
        };
        super::status::keep_private(&config.engine.data_dir);
        let engine_config = with_advertised(config, &bound, kafka_bound.as_ref());
        let engine = Engine::open(engine_config, store)?;
        let blocking = BlockingPool::start(4).map_err(|e| Error::io("start admin threads", e))?;
        // The Kafka face's group coordinator, which the gRPC admin calls
        // also show.
        let groups = match &config.kafka {
            Some(_) => Some(
                Coordinator::start(GroupLimits::default())
                    .map_err(|e| Error::io("start the Kafka group coordinator", e))?,
            ),
            None => None,
        };
        let memberships = groups.clone().map(|g| {
            let m: Arc<dyn crate::membership::Memberships> = g;
            m
        });
        let shared = Shared::new(
            Arc::clone(&engine),
            config.auth_token.clone(),
            blocking,
            config.max_streams,
            memberships,
        );
        let health = HealthService::default();
        health.set_serving_status("", ServingStatus::Serving);

        let grpc = Arc::new(Mutex::new(grpc_server(config, &shared, &health)?));
        let addr = bound.addr().to_string();
        if !bound.addr().ip().is_loopback() && config.auth_token.is_none() {
            log::warn!(
                "listening on {addr} without --auth-token: anyone who reaches this port can create and delete topics and read every record"
            );
        }
        let gate_stats = Arc::new(GateStats::default());
        let gate = bound.start(
            "grpc",
            config.max_connections,
            open_files_limit,
            Arc::clone(&gate_stats),
            hand_to(Arc::clone(&grpc)),
        )?;
        let kafka = match (&config.kafka, kafka_bound, groups) {
            (Some(k), Some(b), Some(g)) => Some(start_kafka(k, b, &engine, g, open_files_limit)?),
            _ => None,
        };
        let metrics = match &config.metrics_listen {
            Some(a) => Some(
                super::metrics_http::MetricsServer::start(
                    a,
                    Arc::clone(&engine),
                    Arc::clone(&shared.latencies),
                    gate_stats,
                    Arc::clone(&shared.streams),
                    kafka_metrics(kafka.as_ref()),
                )
                .map_err(|e| Error::io(format!("cannot serve /metrics on {a}"), e))?,
            ),
            None => None,
        };
        Ok(Server {
            grpc,
            gate,
            shared,
            health,
            engine,
            addr,
            metrics,
            kafka,
        })
    }

    /// The address actually bound (the port resolved when 0 was asked).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The Kafka listener's bound address (`None` when it is off).
    pub fn kafka_addr(&self) -> Option<&str> {
        self.kafka.as_ref().map(|k| k.addr.as_str())
    }

    pub fn metrics_addr(&self) -> Option<String> {
        self.metrics.as_ref().map(|m| m.addr().to_string())
    }

    /// Stops accepting calls, lets unary calls in flight finish, ends open
    /// streams with UNAVAILABLE, and flushes the engine.
    pub fn shutdown(mut self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        self.health
            .set_serving_status("", ServingStatus::NotServing);
        let grace = Duration::from_secs(5);
        self.gate.stop();
        if let Some(mut k) = self.kafka.take() {
            k.gate.stop();
            k.connections.close_all();
            k.groups.stop();
        }
        let done = lock(&self.grpc).shutdown();
        match thread::spawn("grpc-shutdown", move || {
            let _ = futures::executor::block_on(done);
        }) {
            Ok(w) => {
                if !w.join_until(Instant::now() + grace) {
                    log::warn!("calls still running after {grace:?}; closing anyway");
                }
            }
            Err(e) => log::warn!("cannot wait for calls in flight: {e}"),
        }
        self.health.shutdown();
        if let Some(m) = self.metrics.take() {
            m.stop();
        }
        self.engine.shutdown(Duration::from_secs(2));
        self.shared
            .blocking
            .shutdown(Instant::now() + Duration::from_secs(1));
        log::info!("stopped");
    }
}

/// The engine's configuration, with the addresses a cluster node tells
/// the other nodes and clients (the bound ones unless advertised).
fn with_advertised(
    config: &ServerConfig,
    grpc: &Bound,
    kafka: Option<&Bound>,
) -> crate::config::EngineConfig {
    let mut engine = config.engine.clone();
    if let Some(c) = &mut engine.cluster {
        if c.grpc_addr.is_empty() {
            c.grpc_addr = grpc.addr().to_string();
        }
        c.kafka_addr = match (&config.kafka, kafka) {
            (Some(k), Some(b)) => k
                .config
                .advertised
                .clone()
                .unwrap_or_else(|| b.addr().to_string()),
            _ => String::new(),
        };
    }
    engine
}

/// The Kafka listener's counters for `/metrics`, when it listens.
fn kafka_metrics(kafka: Option<&KafkaListening>) -> Vec<super::metrics_http::Section> {
    kafka
        .map(|k| {
            let c = Arc::clone(&k.connections);
            let s: super::metrics_http::Section = Box::new(move || c.render());
            s
        })
        .into_iter()
        .collect()
}

/// Starts accepting Kafka connections on `bound`.
fn start_kafka(
    k: &KafkaListener,
    bound: Bound,
    engine: &Arc<Engine>,
    groups: Arc<Coordinator>,
    open_files_limit: Option<u64>,
) -> Result<KafkaListening> {
    let addr = bound.addr();
    if !addr.ip().is_loopback() {
        log::warn!(
            "Kafka listener on {addr} has no authentication yet: anyone who reaches this port can read and write every topic"
        );
    }
    let face = Face::new(
        Arc::clone(engine),
        k.config.clone(),
        addr,
        Arc::clone(&groups),
    )
    .map_err(Error::Config)?;
    let face = Arc::new(face);
    let connections = Arc::new(Connections::default());
    let conns = Arc::clone(&connections);
    let gate = bound.start(
        "kafka",
        k.max_connections,
        open_files_limit,
        Arc::new(GateStats::default()),
        Box::new(move |stream| kafka::serve(Arc::clone(&face), Arc::clone(&conns), stream)),
    )?;
    Ok(KafkaListening {
        gate,
        connections,
        groups,
        addr: addr.to_string(),
    })
}

/// grpc's C-core server with every service behind its admission decoder,
/// started, without a listening port: connections come from the gate.
fn grpc_server(
    config: &ServerConfig,
    shared: &Shared,
    health: &HealthService,
) -> Result<grpcio::Server> {
    // Room for a full batch of maximal records; larger messages get
    // RESOURCE_EXHAUSTED from grpc rather than a dropped connection.
    let max_message = (64usize << 20).max(config.engine.max_record_bytes * 4) + (1 << 20);
    let env = Arc::new(Environment::new(2));
    // Connections come from the gate (no listening port of grpc's own);
    // one idle for 10 minutes (Kafka's connections.max.idle.ms) is
    // closed, and its client reconnects when it needs to.
    let args = ChannelBuilder::new(Arc::clone(&env))
        .max_receive_message_len(max_message as i32)
        .max_send_message_len(max_message as i32)
        .raw_cfg_int(c"grpc.max_connection_idle_ms".into(), 600_000)
        .build_args();
    let mut builder = ServerBuilder::new(env).channel_args(args);
    for service in super::admission::services(
        shared,
        Admin(shared.clone()),
        Producer(shared.clone()),
        Consumer(shared.clone()),
        health.clone(),
    ) {
        builder = builder.register_service(service);
    }
    let mut grpc = builder
        .build()
        .map_err(|e| Error::Unavailable(format!("cannot build the gRPC server: {e}")))?;
    grpc.start();
    Ok(grpc)
}

/// What the gate does with an admitted connection: hands its descriptor
/// to grpc.
fn hand_to(grpc: Arc<Mutex<grpcio::Server>>) -> super::gate::Sink {
    Box::new(move |stream| {
        let fd = stream.into_raw_fd();
        let mut grpc = lock(&grpc);
        #[allow(unsafe_code)]
        // SAFETY: `fd` is an open, connected TCP socket that nothing else
        // owns (taken out of its TcpStream); grpc owns and closes it from
        // here on.
        unsafe {
            grpc.add_channel_from_fd(fd)
        };
    })
}
