//! TLS for both listeners and for `streamctl`, with the system's OpenSSL
//! (the library the S3 client already links).
//!
//! ```text
//! client ══TLS══► gate ─► relay thread ─socketpair─► grpc's C core (gRPC)
//!                         (handshake, then bytes)    or the Kafka connection
//! ```
//!
//! The protocol code never sees TLS: each accepted connection gets a
//! thread that does the handshake (10 s at most), then relays bytes
//! between the TLS socket and one end of a socket pair whose other end is
//! handed on exactly like a plain TCP connection. grpc's C core is built
//! without its own TLS (building it with TLS doubles its sources and the
//! fresh build), and the Kafka listener gets the same code.
//!
//! Certificates are read at start and again by [`ServerTls::reload`]
//! (SIGHUP); connections already open keep the session they have.

mod relay;

pub use relay::relay;

use openssl::ssl::{
    AlpnError, ErrorCode, HandshakeError, SslAcceptor, SslConnector, SslFiletype, SslMethod,
    SslStream, SslVerifyMode,
};
use openssl::x509::X509Name;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Longest a handshake may take before the connection is closed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A relay thread's stack: its buffers are on the heap.
const STACK: usize = 128 << 10;

/// The PEM files a listener's TLS is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must present a certificate signed by one of these (mutual
    /// TLS); `None`: no client certificate is asked for.
    pub client_ca: Option<PathBuf>,
}

/// Which application protocol a listener tells clients it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/2, which gRPC clients require the server to select.
    H2,
    /// None (Kafka clients ask for none).
    None,
}

/// Handshakes counted for `/metrics`.
#[derive(Default)]
pub struct TlsStats {
    pub handshakes: AtomicU64,
    pub handshake_failures: AtomicU64,
}

/// One listener's TLS: the acceptor built from the files, replaced whole
/// on reload.
pub struct ServerTls {
    files: TlsFiles,
    alpn: Alpn,
    /// Which listener, for logs and metrics (`grpc`, `kafka`).
    pub listener: &'static str,
    current: RwLock<Arc<SslAcceptor>>,
    pub stats: TlsStats,
}

impl ServerTls {
    /// Reads the files; an error names the file and what is wrong.
    pub fn load(files: &TlsFiles, alpn: Alpn, listener: &'static str) -> Result<ServerTls, String> {
        let acceptor = acceptor(files, alpn)?;
        Ok(ServerTls {
            files: files.clone(),
            alpn,
            listener,
            current: RwLock::new(Arc::new(acceptor)),
            stats: TlsStats::default(),
        })
    }

    /// Reads the files again; new connections use them from now on. On an
    /// error the certificates in use stay.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = Arc::new(acceptor(&self.files, self.alpn)?);
        match self.current.write() {
            Ok(mut c) => *c = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    fn current(&self) -> Arc<SslAcceptor> {
        match self.current.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Serves `tcp` on a thread of its own: the handshake, then `then`
    /// gets the plain end of the relay and the peer's address. A failed
    /// handshake (no TLS, an untrusted certificate, too slow) closes the
    /// connection and is counted.
    pub fn serve(
        self: &Arc<Self>,
        tcp: TcpStream,
        then: impl FnOnce(UnixStream, String) + Send + 'static,
    ) {
        let tls = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("tls-{}", self.listener))
            .stack_size(STACK)
            .spawn(move || tls.handshake_and_relay(tcp, then));
        if let Err(e) = spawned {
            log::warn!("{}: cannot serve a TLS connection: {e}", self.listener);
        }
    }

    fn handshake_and_relay(&self, tcp: TcpStream, then: impl FnOnce(UnixStream, String)) {
        let peer = tcp
            .peer_addr()
            .map_or_else(|_| "?".to_string(), |a| a.to_string());
        let _ = tcp.set_nodelay(true);
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let stream = match handshake(&self.current(), tcp, deadline) {
            Ok(s) => s,
            Err(e) => {
                self.stats
                    .handshake_failures
                    .fetch_add(1, Ordering::Relaxed);
                log::info!("{}: TLS handshake with {peer} failed: {e}", self.listener);
                return;
            }
        };
        self.stats.handshakes.fetch_add(1, Ordering::Relaxed);
        let (ours, theirs) = match UnixStream::pair() {
            Ok(p) => p,
            Err(e) => {
                log::warn!("{}: cannot serve {peer}: {e}", self.listener);
                return;
            }
        };
        then(theirs, peer.clone());
        if let Err(e) = relay(stream, ours) {
            log::debug!("{}: relay for {peer} ended: {e}", self.listener);
        }
    }

    /// The Prometheus exposition of the handshake counters.
    pub fn render(&self) -> String {
        let l = self.listener;
        format!(
            "streamhouse_tls_handshakes_total{{listener=\"{l}\"}} {}\n\
             streamhouse_tls_handshake_failures_total{{listener=\"{l}\"}} {}\n",
            self.stats.handshakes.load(Ordering::Relaxed),
            self.stats.handshake_failures.load(Ordering::Relaxed),
        )
    }
}

/// The `# HELP`/`# TYPE` lines of [`ServerTls::render`]'s counters.
pub const METRICS_HEADER: &str = "# HELP streamhouse_tls_handshakes_total TLS handshakes completed, by listener.\n\
     # TYPE streamhouse_tls_handshakes_total counter\n\
     # HELP streamhouse_tls_handshake_failures_total TLS handshakes that failed (no TLS, an untrusted client certificate, a timeout), by listener.\n\
     # TYPE streamhouse_tls_handshake_failures_total counter\n";

/// The server's side of a handshake, non-blocking, done by `deadline` or
/// failed (a client that sends a byte every few seconds does not hold the
/// thread longer).
fn handshake(
    acceptor: &SslAcceptor,
    tcp: TcpStream,
    deadline: Instant,
) -> Result<SslStream<TcpStream>, String> {
    tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
    let mut attempt = acceptor.accept(tcp);
    loop {
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(HandshakeError::WouldBlock(mid)) => {
                let events = match mid.error().code() {
                    ErrorCode::WANT_WRITE => libc::POLLOUT,
                    _ => libc::POLLIN,
                };
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(format!("not done within {HANDSHAKE_TIMEOUT:?}"));
                }
                relay::wait_for(mid.get_ref(), events, left).map_err(|e| e.to_string())?;
                attempt = mid.handshake();
            }
            Err(HandshakeError::Failure(mid)) => return Err(mid.error().to_string()),
            Err(HandshakeError::SetupFailure(e)) => return Err(e.to_string()),
        }
    }
}

fn acceptor(files: &TlsFiles, alpn: Alpn) -> Result<SslAcceptor, String> {
    let named = |path: &PathBuf, what: &str| {
        let path = path.display().to_string();
        let what = what.to_string();
        move |e: openssl::error::ErrorStack| format!("{what} {path}: {e}")
    };
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    b.set_certificate_chain_file(&files.cert)
        .map_err(named(&files.cert, "certificate"))?;
    b.set_private_key_file(&files.key, SslFiletype::PEM)
        .map_err(named(&files.key, "private key"))?;
    b.check_private_key().map_err(|e| {
        format!(
            "private key {} does not match certificate {}: {e}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    // Without a context, a TLS 1.2 client resuming a session on a node
    // that verifies client certificates fails its handshake.
    b.set_session_id_context(b"streamhouse")
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    if let Some(ca) = &files.client_ca {
        b.set_ca_file(ca).map_err(named(ca, "client CA"))?;
        let names = X509Name::load_client_ca_file(ca).map_err(named(ca, "client CA"))?;
        b.set_client_ca_list(names);
        b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    if alpn == Alpn::H2 {
        b.set_alpn_select_callback(|_, offered| {
            openssl::ssl::select_next_proto(b"\x02h2", offered).ok_or(AlpnError::NOACK)
        });
    }
    Ok(b.build())
}

/// A client's TLS (`streamctl --tls-ca/--tls-cert/--tls-key`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// CA certificates the server's must chain to; `None`: the system's.
    pub ca: Option<PathBuf>,
    /// A client certificate and its key, for mutual TLS.
    pub cert: Option<(PathBuf, PathBuf)>,
}

impl ClientTls {
    /// Connects to `addr` (`host:port`), checks the server's certificate
    /// against the host name or IP address, and returns the plain end of
    /// a relay that a thread of its own keeps running (gRPC is offered
    /// through ALPN). The end returned is blocking.
    pub fn connect(&self, addr: &str) -> Result<UnixStream, String> {
        let mut b = SslConnector::builder(SslMethod::tls_client())
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        if let Some(ca) = &self.ca {
            // These CAs only: the builder starts with the system's.
            b.set_cert_store(only_these_cas(ca)?);
        }
        if let Some((cert, key)) = &self.cert {
            b.set_certificate_chain_file(cert)
                .map_err(|e| format!("certificate {}: {e}", cert.display()))?;
            b.set_private_key_file(key, SslFiletype::PEM)
                .map_err(|e| format!("private key {}: {e}", key.display()))?;
        }
        b.set_alpn_protos(b"\x02h2")
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        let connector = b.build();
        let host = host_of(addr);
        let tcp = TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let _ = tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
        let stream = connector
            .connect(host, tcp)
            .map_err(|e| format!("TLS handshake with {addr} failed: {e}"))?;
        let _ = stream.get_ref().set_read_timeout(None);
        let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        std::thread::Builder::new()
            .name("tls-client".into())
            .stack_size(STACK)
            .spawn(move || {
                let _ = relay(stream, ours);
            })
            .map_err(|e| format!("cannot start the TLS thread: {e}"))?;
        Ok(theirs)
    }
}

/// A certificate store with the CAs of the PEM file `path`, and no other.
fn only_these_cas(path: &std::path::Path) -> Result<openssl::x509::store::X509Store, String> {
    let bad = |e: &dyn std::fmt::Display| format!("CA file {}: {e}", path.display());
    let pem = std::fs::read(path).map_err(|e| bad(&e))?;
    let certs = openssl::x509::X509::stack_from_pem(&pem).map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"no certificate in it"));
    }
    let mut store = openssl::x509::store::X509StoreBuilder::new().map_err(|e| bad(&e))?;
    for cert in certs {
        store.add_cert(cert).map_err(|e| bad(&e))?;
    }
    Ok(store.build())
}

/// The host of `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests;
