//! Shared by the integration tests: the real `streamhoused` on a free port,
//! and ([`engine`]) helpers for tests of the engine as a library.
#![allow(dead_code)]

pub mod cluster;
pub mod engine;
pub mod grpc;
pub mod kafka;
pub mod s3;
pub mod store;

use grpcio::{ChannelBuilder, Environment};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use streamhouse::proto::grpc::{AdminServiceClient, ConsumerServiceClient, ProducerServiceClient};

pub struct TestServer {
    /// `http://host:port/metrics` when started with `--metrics-listen`.
    pub metrics_url: Option<String>,
    /// The Kafka listener's `host:port` (a free port unless the test
    /// passes `--kafka-listen`).
    pub kafka_addr: Option<String>,
    pub child: Child,
    pub addr: String,
    pub dir: std::path::PathBuf,
    pub extra: Vec<String>,
}

impl TestServer {
    pub fn start_in(dir: &std::path::Path, extra: &[&str]) -> TestServer {
        Self::start_at(dir, "127.0.0.1:0", extra)
    }

    /// Listening on `listen` (a restart at the same address, for clients
    /// that reconnect on their own).
    pub fn start_at(dir: &std::path::Path, listen: &str, extra: &[&str]) -> TestServer {
        let cmd = Command::new(env!("CARGO_BIN_EXE_streamhoused"));
        Self::spawn(cmd, listen, dir, extra)
    }

    /// Started the way a new user's shell would: a soft limit of `soft`
    /// open files.
    pub fn start_with_open_files(dir: &std::path::Path, soft: u32, extra: &[&str]) -> TestServer {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!(r#"ulimit -Sn {soft} && exec "$0" "$@""#))
            .arg(env!("CARGO_BIN_EXE_streamhoused"));
        Self::spawn(sh, "127.0.0.1:0", dir, extra)
    }

    /// Started with an open-files limit of `n`, soft and hard (the server
    /// cannot raise it).
    pub fn start_with_open_files_limit(
        dir: &std::path::Path,
        n: u32,
        extra: &[&str],
    ) -> TestServer {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!(r#"ulimit -n {n} && exec "$0" "$@""#))
            .arg(env!("CARGO_BIN_EXE_streamhoused"));
        Self::spawn(sh, "127.0.0.1:0", dir, extra)
    }

    fn spawn(mut cmd: Command, listen: &str, dir: &std::path::Path, extra: &[&str]) -> TestServer {
        let mut child = cmd
            .args(["--listen", listen, "--data-dir"])
            .arg(dir)
            .args(extra)
            .env("STREAMHOUSE_LOG", "warn")
            // Tests run in parallel: no fixed Kafka port.
            .env("STREAMHOUSE_KAFKA_LISTEN", "127.0.0.1:0")
            // A developer's shell may hold `scripts/s3-server.sh env`: the
            // tests choose their store with flags.
            .env_remove("STREAMHOUSE_S3_ENDPOINT")
            .env_remove("STREAMHOUSE_S3_BUCKET")
            .env_remove("STREAMHOUSE_S3_REGION")
            .env_remove("STREAMHOUSE_S3_PREFIX")
            .env_remove("STREAMHOUSE_S3_PATH_STYLE")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start streamhoused");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let metrics_url = extra.contains(&"--metrics-listen").then(|| {
            let mut m = String::new();
            stdout.read_line(&mut m).unwrap();
            m.trim().rsplit(' ').next().unwrap().to_string()
        });
        let kafka_off = extra
            .windows(2)
            .any(|w| w[0] == "--kafka-listen" && w[1] == "off");
        let kafka_addr = (!kafka_off).then(|| {
            let mut k = String::new();
            stdout.read_line(&mut k).unwrap();
            k.trim()
                .strip_prefix("streamhoused kafka on ")
                .unwrap_or_else(|| panic!("unexpected kafka line {k:?}"))
                .to_string()
        });
        let addr = line
            .trim()
            .strip_prefix("streamhoused listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        TestServer {
            metrics_url,
            kafka_addr,
            child,
            addr,
            dir: dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn restart(mut self) -> TestServer {
        self.sigterm_and_wait();
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        TestServer::start_in(&self.dir, &extra)
    }

    pub fn sigterm_and_wait(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }

    /// `streamctl` pointed at this server.
    pub fn ctl(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_streamctl"));
        c.env("STREAMHOUSE_ADDR", &self.addr)
            .env_remove("STREAMHOUSE_TOKEN");
        c
    }

    pub fn clients(&self) -> Clients {
        clients_for(&self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body (with status line and headers) of `GET url`, e.g. a server's
/// `metrics_url`.
pub fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut sock = std::net::TcpStream::connect(hostport).unwrap();
    write!(sock, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    sock.read_to_string(&mut body).unwrap();
    body
}

/// Clients on a connection of their own to `addr`.
pub fn clients_for(addr: &str) -> Clients {
    let env = Arc::new(Environment::new(1));
    let ch = ChannelBuilder::new(env)
        .max_receive_message_len(128 << 20)
        .max_send_message_len(128 << 20)
        // grpc shares connections between channels to one address unless
        // told otherwise.
        .use_local_subchannel_pool(true)
        .connect(addr);
    Clients {
        admin: AdminServiceClient::new(ch.clone()),
        producer: ProducerServiceClient::new(ch.clone()),
        consumer: ConsumerServiceClient::new(ch.clone()),
        health: grpcio_health::HealthClient::new(ch.clone()),
        channel: ch,
    }
}

pub struct Clients {
    pub admin: AdminServiceClient,
    pub producer: ProducerServiceClient,
    pub consumer: ConsumerServiceClient,
    pub health: grpcio_health::HealthClient,
    pub channel: grpcio::Channel,
}

/// The segment objects of one partition in a node's local object store
/// (`{data-dir}/objects`), by base offset.
pub fn local_segments(
    data_dir: &std::path::Path,
    topic: &str,
    partition: u32,
) -> Vec<(i64, std::path::PathBuf)> {
    let topic_dir = data_dir.join("objects/topics").join(topic);
    let incarnation = std::fs::read_dir(&topic_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut segs: Vec<_> = std::fs::read_dir(incarnation.join(partition.to_string()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let base: i64 = name.split('-').next().unwrap().parse().unwrap();
            (base, p)
        })
        .collect();
    segs.sort();
    segs
}

/// A path inside the project (or beside it: `../shared/data/...`), found at
/// run time: cargo sets CARGO_MANIFEST_DIR for the tests it runs. The
/// compile-time value is only a fallback, since the persistent target
/// directory may hold a binary built from another clone.
pub fn project_path(rel: &str) -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .join(rel)
}

/// Deterministic bytes that do not compress (xorshift), different per seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    streamhouse::util::xorshift::XorShift64::new(seed | 1).bytes(len)
}
