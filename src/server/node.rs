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
use crate::tls::{Alpn, ServerTls};
use crate::util::sync::lock;
use crate::util::thread;
use grpcio::{ChannelBuilder, Environment, ServerBuilder};
use grpcio_health::{HealthService, ServingStatus};
use std::os::fd::{IntoRawFd, OwnedFd};
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
    /// Each listener's TLS, re-read by [`Server::reload_tls`].
    tls: Vec<Arc<ServerTls>>,
}

/// The names `grpc.health.v1.Health` answers for: the server ("") and
/// each service, so that a probe can ask for the one it needs.
pub const HEALTH_NAMES: [&str; 4] = [
    "",
    "streamhouse.v1.AdminService",
    "streamhouse.v1.ProducerService",
    "streamhouse.v1.ConsumerService",
];

/// The Kafka listener: its gate, its open connections and its group
/// coordinator.
struct KafkaListening {
    gate: Gate,
    connections: Arc<Connections>,
    groups: Arc<Coordinator>,
    addr: String,
    face: Arc<Face>,
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
        let (grpc_tls, kafka_tls) = load_tls(config)?;
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
        let memberships = groups
            .clone()
            .map(|g| -> Arc<dyn crate::membership::Memberships> { g });
        let shared = Shared::new(
            Arc::clone(&engine),
            config.auth_token.clone(),
            blocking,
            config.max_streams,
            memberships,
        );
        let health = HealthService::default();
        set_health(&health, ServingStatus::Serving);

        let grpc = Arc::new(Mutex::new(grpc_server(config, &shared, &health)?));
        let addr = bound.addr().to_string();
        warn_if_exposed(config, &bound);
        let gate_stats = Arc::new(GateStats::default());
        let gate = bound.start(
            "grpc",
            config.max_connections,
            open_files_limit,
            Arc::clone(&gate_stats),
            hand_to(Arc::clone(&grpc), grpc_tls.clone()),
        )?;
        let kafka = match (&config.kafka, kafka_bound, groups) {
            (Some(k), Some(b), Some(g)) => Some(start_kafka(
                k,
                b,
                &engine,
                g,
                open_files_limit,
                kafka_tls.clone(),
            )?),
            _ => None,
        };
        let tls: Vec<_> = grpc_tls.into_iter().chain(kafka_tls).collect();
        let metrics = match &config.metrics_listen {
            Some(a) => Some(start_metrics(
                a,
                &engine,
                &shared,
                gate_stats,
                kafka.as_ref(),
                &tls,
            )?),
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
            tls,
        })
    }

    /// Reads every listener's certificate files again (SIGHUP): new
    /// connections get the new ones, open connections keep theirs. A file
    /// that does not load leaves that listener as it was.
    pub fn reload_tls(&self) {
        if self.tls.is_empty() {
            log::info!("no TLS to reload");
        }
        for t in &self.tls {
            match t.reload() {
                Ok(()) => log::info!("{}: TLS certificates reloaded", t.listener),
                Err(e) => log::error!(
                    "{}: TLS certificates not reloaded, the old ones stay: {e}",
                    t.listener
                ),
            }
        }
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
        set_health(&self.health, ServingStatus::NotServing);
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

/// `/metrics` on `addr`: the engine's, the gRPC calls' and listeners'.
fn start_metrics(
    addr: &str,
    engine: &Arc<Engine>,
    shared: &Shared,
    gate_stats: Arc<GateStats>,
    kafka: Option<&KafkaListening>,
    tls: &[Arc<ServerTls>],
) -> Result<super::metrics_http::MetricsServer> {
    super::metrics_http::MetricsServer::start(
        addr,
        Arc::clone(engine),
        Arc::clone(&shared.latencies),
        gate_stats,
        Arc::clone(&shared.streams),
        listener_metrics(kafka, tls),
    )
    .map_err(|e| Error::io(format!("cannot serve /metrics on {addr}"), e))
}

/// The Kafka listener's counters and the TLS handshakes for `/metrics`.
fn listener_metrics(
    kafka: Option<&KafkaListening>,
    tls: &[Arc<ServerTls>],
) -> Vec<super::metrics_http::Section> {
    let mut sections: Vec<super::metrics_http::Section> = Vec::new();
    if let Some(k) = kafka {
        let (c, face) = (Arc::clone(&k.connections), Arc::clone(&k.face));
        sections.push(Box::new(move || c.render() + &face.sasl_stats.render()));
    }
    if !tls.is_empty() {
        let tls = tls.to_vec();
        sections.push(Box::new(move || {
            let mut s = crate::tls::METRICS_HEADER.to_string();
            tls.iter().for_each(|t| s.push_str(&t.render()));
            s
        }));
    }
    sections
}

/// Every name of [`HEALTH_NAMES`] at `status`.
fn set_health(health: &HealthService, status: ServingStatus) {
    for name in HEALTH_NAMES {
        health.set_serving_status(name, status);
    }
}

/// One listener's TLS (`None`: plain TCP).
type ListenerTls = Option<Arc<ServerTls>>;

/// Each listener's TLS, from the same files (`None`s without
/// `--tls-cert`); and the users file checked before anything listens.
fn load_tls(config: &ServerConfig) -> Result<(ListenerTls, ListenerTls)> {
    let load = |alpn, listener| {
        config
            .tls
            .as_ref()
            .map(|f| ServerTls::load(f, alpn, listener).map(Arc::new))
            .transpose()
            .map_err(Error::Config)
    };
    let grpc = load(Alpn::H2, "grpc")?;
    let kafka = match &config.kafka {
        Some(k) => {
            check_sasl(k)?;
            load(Alpn::None, "kafka")?
        }
        None => None,
    };
    Ok((grpc, kafka))
}

/// A users file that cannot be read stops the start (exit 2), rather
/// than every client's authentication.
fn check_sasl(k: &KafkaListener) -> Result<()> {
    if let Some(sasl) = &k.config.sasl {
        let users = crate::auth::users::Users::load(&sasl.users)
            .map_err(|e| Error::Config(format!("{e} (create it with streamctl user add)")))?;
        if users.list().is_empty() {
            log::warn!(
                "the users file {} has no users: every Kafka client will be refused",
                sasl.users.display()
            );
        }
    }
    Ok(())
}

/// Warns when a listener is reachable beyond this machine without what
/// keeps strangers out or secrets off the wire.
fn warn_if_exposed(config: &ServerConfig, grpc: &Bound) {
    let mutual = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    let addr = grpc.addr();
    if !addr.ip().is_loopback() {
        if config.auth_token.is_none() && !mutual {
            log::warn!(
                "gRPC on {addr} without --auth-token or --tls-client-ca: anyone who reaches this port can create and delete topics and read every record"
            );
        } else if config.tls.is_none() {
            log::warn!(
                "gRPC on {addr} without --tls-cert: the token and every record cross the network in clear text"
            );
        }
    }
}

/// Starts accepting Kafka connections on `bound`.
fn start_kafka(
    k: &KafkaListener,
    bound: Bound,
    engine: &Arc<Engine>,
    groups: Arc<Coordinator>,
    open_files_limit: Option<u64>,
    tls: Option<Arc<ServerTls>>,
) -> Result<KafkaListening> {
    let addr = bound.addr();
    let mutual = tls.as_ref().is_some_and(|t| t.mutual());
    if !addr.ip().is_loopback() {
        if k.config.sasl.is_none() && !mutual {
            log::warn!(
                "Kafka on {addr} without --kafka-sasl-users or --tls-client-ca: anyone who reaches this port can read and write every topic"
            );
        } else if tls.is_none() {
            log::warn!(
                "Kafka on {addr} without --tls-cert: records cross the network in clear text"
            );
        }
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
    let serving = Arc::clone(&face);
    let sink: super::gate::Sink = match tls {
        None => {
            Box::new(move |tcp| kafka::serve_tcp(Arc::clone(&serving), Arc::clone(&conns), tcp))
        }
        Some(tls) => Box::new(move |tcp| {
            let (face, conns) = (Arc::clone(&serving), Arc::clone(&conns));
            tls.serve(tcp, move |plain, peer| {
                kafka::serve(face, conns, plain, peer, true)
            });
        }),
    };
    let gate = bound.start(
        "kafka",
        k.max_connections,
        open_files_limit,
        Arc::new(GateStats::default()),
        sink,
    )?;
    Ok(KafkaListening {
        gate,
        connections,
        groups,
        addr: addr.to_string(),
        face,
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
/// to grpc, or with TLS the plain end of its relay once the handshake is
/// done.
fn hand_to(grpc: Arc<Mutex<grpcio::Server>>, tls: Option<Arc<ServerTls>>) -> super::gate::Sink {
    match tls {
        // The gate's sockets are non-blocking already.
        None => Box::new(move |tcp| add_channel(&grpc, tcp.into())),
        Some(tls) => Box::new(move |tcp| {
            let grpc = Arc::clone(&grpc);
            tls.serve(tcp, move |plain, _peer| match plain.set_nonblocking(true) {
                Ok(()) => add_channel(&grpc, plain.into()),
                Err(e) => log::warn!("grpc: cannot serve a TLS connection: {e}"),
            });
        }),
    }
}

/// Hands a non-blocking socket to grpc (it reads until EAGAIN: a
/// blocking one would stall its poller thread).
fn add_channel(grpc: &Mutex<grpcio::Server>, socket: OwnedFd) {
    let fd = socket.into_raw_fd();
    let mut grpc = lock(grpc);
    #[allow(unsafe_code)]
    // SAFETY: `fd` is an open, connected stream socket (TCP, or a Unix
    // socket pair's end) that nothing else owns (taken out of its
    // OwnedFd); grpc owns and closes it from here on.
    unsafe {
        grpc.add_channel_from_fd(fd)
    };
}
