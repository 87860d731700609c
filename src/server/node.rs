//! The running server: the engine, grpcio's C-core server with the three
//! services and health, and `/metrics`; start and graceful shutdown.

use super::admin::Admin;
use super::consumer::Consumer;
use super::flags::ServerConfig;
use super::producer::Producer;
use super::shared::{BlockingPool, Shared};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::layout;
use crate::object_store::{LocalFsStore, ObjectStore, S3Store};
use crate::util::thread;
use grpcio::{ChannelBuilder, Environment, ServerBuilder, ServerCredentials};
use grpcio_health::{HealthService, ServingStatus};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A running server.
pub struct Server {
    grpc: grpcio::Server,
    shared: Shared,
    health: HealthService,
    engine: Arc<Engine>,
    addr: String,
    metrics: Option<super::metrics_http::MetricsServer>,
}

impl Server {
    /// Opens the engine (recovering what is on disk) and starts serving.
    pub fn start(config: &ServerConfig) -> Result<Server> {
        // Every open partition holds its WAL file open.
        match crate::util::rlimit::raise_open_files_limit() {
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
        refuse_held_port(&config.listen)?;
        let engine = Engine::open(config.engine.clone(), store)?;
        let blocking = BlockingPool::start(4).map_err(|e| Error::io("start admin threads", e))?;
        let shared = Shared::new(Arc::clone(&engine), config.auth_token.clone(), blocking);
        let health = HealthService::default();
        health.set_serving_status("", ServingStatus::Serving);

        // Room for a full batch of maximal records; larger messages get
        // RESOURCE_EXHAUSTED from grpc rather than a dropped connection.
        let max_message = (64usize << 20).max(config.engine.max_record_bytes * 4) + (1 << 20);
        let env = Arc::new(Environment::new(2));
        // No SO_REUSEPORT (gRPC's default): a second server on the same
        // address must fail, not share the port and split the clients.
        let args = ChannelBuilder::new(Arc::clone(&env))
            .max_receive_message_len(max_message as i32)
            .max_send_message_len(max_message as i32)
            .reuse_port(false)
            .build_args();
        let mut grpc = ServerBuilder::new(env)
            .channel_args(args)
            .register_service(crate::proto::grpc::create_admin_service(Admin(
                shared.clone(),
            )))
            .register_service(crate::proto::grpc::create_producer_service(Producer(
                shared.clone(),
            )))
            .register_service(crate::proto::grpc::create_consumer_service(Consumer(
                shared.clone(),
            )))
            .register_service(grpcio_health::create_health(health.clone()))
            .build()
            .map_err(|e| Error::Unavailable(format!("cannot build the gRPC server: {e}")))?;
        let port = grpc
            .add_listening_port(config.listen.clone(), ServerCredentials::insecure())
            .map_err(|e| Error::Unavailable(format!("cannot listen on {}: {e}", config.listen)))?;
        grpc.start();
        let host = config
            .listen
            .rsplit_once(':')
            .map_or("127.0.0.1", |(h, _)| h);
        let addr = format!("{host}:{port}");
        let metrics = match &config.metrics_listen {
            Some(a) => Some(
                super::metrics_http::MetricsServer::start(
                    a,
                    Arc::clone(&engine),
                    Arc::clone(&shared.latencies),
                )
                .map_err(|e| Error::io(format!("cannot serve /metrics on {a}"), e))?,
            ),
            None => None,
        };
        Ok(Server {
            grpc,
            shared,
            health,
            engine,
            addr,
            metrics,
        })
    }

    /// The address actually bound (the port resolved when 0 was asked).
    pub fn addr(&self) -> &str {
        &self.addr
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
        let done = self.grpc.shutdown();
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

/// Fails, naming the address, when another socket holds `listen`'s port: a
/// plain bind (no SO_REUSEPORT) is refused on a port any socket is bound
/// to, including one that gRPC bound with SO_REUSEPORT. Port 0 asks for a
/// free port and needs no check.
fn refuse_held_port(listen: &str) -> Result<()> {
    use std::net::ToSocketAddrs;
    let addrs = listen
        .to_socket_addrs()
        .map_err(|e| Error::Unavailable(format!("cannot listen on {listen}: {e}")))?;
    for addr in addrs.filter(|a| a.port() != 0) {
        if let Err(e) = std::net::TcpListener::bind(addr) {
            return Err(Error::Unavailable(format!(
                "cannot listen on {listen} ({addr}): {e}; another process holds the port"
            )));
        }
    }
    Ok(())
}
