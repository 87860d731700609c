//! The S3 test server for integration tests (`scripts/s3-server.sh env`),
//! and a TCP proxy in front of it that a test can switch off and on to make
//! the store unreachable.

use super::TestServer;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use streamhouse::object_store::{ObjectStore, S3Config, S3Store};

/// Where the S3 test server is, from the environment; `None` (the test
/// skips) when it is not set, unless S3 tests are required (CI).
pub fn endpoint() -> Option<String> {
    let endpoint = std::env::var("STREAMHOUSE_TEST_S3_ENDPOINT").ok();
    let required = std::env::var("STREAMHOUSE_REQUIRE_S3").is_ok_and(|v| v == "1");
    if endpoint.is_none() {
        assert!(
            !required,
            "STREAMHOUSE_TEST_S3_ENDPOINT is not set but S3 tests are required; run scripts/s3-server.sh start"
        );
        eprintln!("skipping: STREAMHOUSE_TEST_S3_ENDPOINT not set (see scripts/s3-server.sh)");
    }
    endpoint
}

pub fn bucket() -> String {
    std::env::var("STREAMHOUSE_TEST_S3_BUCKET").unwrap_or_else(|_| "streamhouse-test".into())
}

/// A prefix no other test run uses.
pub fn unique_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{tag}-{}-{nanos}", std::process::id())
}

/// `streamhoused` flags for the S3 test server at `endpoint` under `prefix`.
pub fn flags(endpoint: &str, prefix: &str) -> Vec<String> {
    [
        "--s3-endpoint",
        endpoint,
        "--s3-bucket",
        &bucket(),
        "--s3-prefix",
        prefix,
        "--s3-path-style",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Forwards connections to a target while up; while down, closes every
/// connection at once (the store is unreachable).
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(target: &str) -> Proxy {
        let target: SocketAddr = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("endpoint is host:port");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&up);
        std::thread::Builder::new()
            .name("test-proxy".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    if !flag.load(Ordering::SeqCst) {
                        continue; // dropped: closed at once
                    }
                    if let Ok(upstream) = TcpStream::connect(target) {
                        pipe(conn, upstream, Arc::clone(&flag));
                    }
                }
            })
            .unwrap();
        Proxy { addr, up }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

/// Copies both ways until either side closes or the proxy goes down.
fn pipe(a: TcpStream, b: TcpStream, up: Arc<AtomicBool>) {
    for (mut from, mut to) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)] {
        let up = Arc::clone(&up);
        std::thread::spawn(move || {
            let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
            let mut buf = [0u8; 64 * 1024];
            loop {
                if !up.load(Ordering::SeqCst) {
                    break;
                }
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
    }
}

/// A test's own prefix in the S3 test server's bucket.
pub struct Bucket {
    pub endpoint: String,
    pub prefix: String,
    pub store: Arc<S3Store>,
}

impl Bucket {
    pub fn new(endpoint: &str, tag: &str) -> Bucket {
        let prefix = unique_prefix(tag);
        let store = S3Store::new(
            &S3Config {
                endpoint: Some(endpoint.to_string()),
                region: "us-east-1".into(),
                bucket: bucket(),
                prefix: prefix.clone(),
                path_style: true,
                request_timeout: std::time::Duration::from_secs(30),
                ..Default::default()
            }
            .with_env_credentials(),
        )
        .expect("S3 store");
        Bucket {
            endpoint: endpoint.to_string(),
            prefix,
            store: Arc::new(store),
        }
    }

    pub fn start(&self, dir: &Path, extra: &[&str]) -> TestServer {
        let mut args = flags(&self.endpoint, &self.prefix);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        TestServer::start_in(dir, &args)
    }

    pub fn keys(&self) -> Vec<String> {
        self.store
            .list("")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect()
    }
}
