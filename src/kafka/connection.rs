//! One Kafka connection: a reader thread that reads each request, checks
//! and decodes it, and starts its work (a produce is queued into the
//! partition writers at once); a responder thread that sends the answers
//! in the order the requests came, each when its work completes. A client
//! with five produce requests in flight therefore has all five in the
//! writers' queues, sharing fsyncs, while it waits for the first answer.
//!
//! A malformed frame or header closes the connection (as Kafka does);
//! malformed bodies get the API's error answer where one can be encoded.

use super::api::{self, Action};
use super::sasl::Session;
use super::wire::{self, FrameError};
use super::Face;
use crate::util::sync::lock;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a connection reads requests from and writes answers to: a TCP
/// socket, or the plain end of a TLS relay (`tls`).
pub trait Socket: Read + Write + Send + Sized + 'static {
    fn try_clone(&self) -> io::Result<Self>;
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

macro_rules! socket {
    ($t:ty) => {
        impl Socket for $t {
            fn try_clone(&self) -> io::Result<Self> {
                <$t>::try_clone(self)
            }
            fn shutdown(&self, how: Shutdown) -> io::Result<()> {
                <$t>::shutdown(self, how)
            }
            fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
                <$t>::set_read_timeout(self, timeout)
            }
        }
    };
}
socket!(TcpStream);
socket!(UnixStream);

/// Closes a registered connection (its threads then end).
type Closer = Box<dyn Fn() + Send>;

/// Answers a connection may have outstanding before its reader waits:
/// more than librdkafka's 5 in flight, few enough to bound the memory.
const MAX_IN_FLIGHT: usize = 16;
/// Stack of a connection's threads: they decode requests and wait.
const STACK: usize = 256 << 10;
/// How long the answer to a failed SASL authentication waits (Kafka's
/// `connection.failed.authentication.delay.ms` is 100 ms too).
const FAILED_AUTH_DELAY: Duration = Duration::from_millis(100);

/// The open connections, so that stopping the server closes them, and
/// what `/metrics` counts of them.
#[derive(Default)]
pub struct Connections {
    open: Mutex<HashMap<u64, Closer>>,
    next: AtomicU64,
    pub accepted: AtomicU64,
    /// Requests by API, in the order of [`api::SUPPORTED`].
    pub requests: [AtomicU64; api::SUPPORTED.len()],
    /// Connections closed for a malformed frame, header or request, or an
    /// API or version not served.
    pub closed_bad: AtomicU64,
}

impl Connections {
    /// Closes every open connection (their threads then end).
    pub fn close_all(&self) {
        for (_, close) in lock(&self.open).drain() {
            close();
        }
    }

    pub fn open_count(&self) -> usize {
        lock(&self.open).len()
    }

    /// The Prometheus exposition of these counters.
    pub fn render(&self) -> String {
        let mut s = format!(
            "# HELP streamhouse_kafka_connections Kafka connections open.\n\
             # TYPE streamhouse_kafka_connections gauge\nstreamhouse_kafka_connections {}\n\
             # HELP streamhouse_kafka_connections_accepted_total Kafka connections accepted.\n\
             # TYPE streamhouse_kafka_connections_accepted_total counter\nstreamhouse_kafka_connections_accepted_total {}\n\
             # HELP streamhouse_kafka_closed_bad_total Kafka connections closed for a malformed frame, header or request, or an API or version not served.\n\
             # TYPE streamhouse_kafka_closed_bad_total counter\nstreamhouse_kafka_closed_bad_total {}\n\
             # HELP streamhouse_kafka_requests_total Kafka requests received, by API.\n\
             # TYPE streamhouse_kafka_requests_total counter\n",
            self.open_count(),
            self.accepted.load(Ordering::Relaxed),
            self.closed_bad.load(Ordering::Relaxed),
        );
        for ((key, ..), n) in api::SUPPORTED.iter().zip(&self.requests) {
            s.push_str(&format!(
                "streamhouse_kafka_requests_total{{api=\"{key:?}\"}} {}\n",
                n.load(Ordering::Relaxed)
            ));
        }
        s
    }
}

/// Serves a plain TCP connection (see [`serve`]).
pub fn serve_tcp(face: Arc<Face>, conns: Arc<Connections>, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    // The gate accepts without blocking; requests are read blocking.
    if let Err(e) = stream.set_nonblocking(false) {
        log::warn!("kafka: cannot serve {peer}: {e}");
        return;
    }
    let _ = stream.set_nodelay(true);
    serve(face, conns, stream, peer, false);
}

/// Serves `stream` from `peer` on two threads of its own; returns at once.
/// `secure`: it came through TLS (SASL PLAIN needs that).
pub fn serve<S: Socket>(
    face: Arc<Face>,
    conns: Arc<Connections>,
    stream: S,
    peer: String,
    secure: bool,
) {
    let _ = stream.set_read_timeout(Some(face.config.idle_timeout));
    let (Ok(writer), Ok(registered)) = (stream.try_clone(), stream.try_clone()) else {
        log::warn!("kafka: cannot serve {peer}: out of descriptors");
        return;
    };
    let id = conns.next.fetch_add(1, Ordering::Relaxed);
    conns.accepted.fetch_add(1, Ordering::Relaxed);
    let close: Closer = Box::new(move || {
        let _ = registered.shutdown(Shutdown::Both);
    });
    lock(&conns.open).insert(id, close);
    let (tx, rx) = bounded::<Action>(MAX_IN_FLIGHT);
    let responder_peer = peer.clone();
    let responder = std::thread::Builder::new()
        .name("kafka-respond".into())
        .stack_size(STACK)
        .spawn(move || respond(writer, rx, &responder_peer));
    if let Err(e) = responder {
        log::warn!("kafka: cannot serve {peer}: {e}");
        lock(&conns.open).remove(&id);
        return;
    }
    let reader = std::thread::Builder::new()
        .name("kafka-read".into())
        .stack_size(STACK)
        .spawn(move || {
            read_requests(&face, &conns, stream, tx, &peer, secure);
            lock(&conns.open).remove(&id);
        });
    if let Err(e) = reader {
        // The sender went with the failed closure: the responder ends.
        log::warn!("kafka: cannot serve a connection: {e}");
    }
}

/// Reads requests until the peer closes, a frame is malformed, or the
/// responder has stopped.
fn read_requests<S: Socket>(
    face: &Arc<Face>,
    conns: &Connections,
    mut stream: S,
    tx: Sender<Action>,
    peer: &str,
    secure: bool,
) {
    let mut session = Session::new(face, secure);
    loop {
        let max = session.max_request_bytes(face.config.max_request_bytes);
        let frame = match wire::read_frame(&mut stream, max) {
            Ok(f) => f,
            Err(FrameError::Closed) => break,
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                log::debug!("kafka: closing {peer}: idle");
                break;
            }
            Err(e) => {
                log::info!("kafka: closing {peer}: {e}");
                conns.closed_bad.fetch_add(1, Ordering::Relaxed);
                break;
            }
        };
        if let Some(i) = api::served_index(&frame) {
            conns.requests[i].fetch_add(1, Ordering::Relaxed);
        }
        let action = api::handle(face, frame, peer, &mut session);
        match &action {
            Action::Close(why) => {
                log::info!("kafka: closing {peer}: {why}");
                conns.closed_bad.fetch_add(1, Ordering::Relaxed);
            }
            Action::ReplyThenClose(_, why) => log::info!("kafka: closing {peer}: {why}"),
            _ => {}
        }
        let close = matches!(action, Action::Close(_) | Action::ReplyThenClose(..));
        if tx.send(action).is_err() || close {
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Read);
}

/// Sends answers in request order; ends when the reader has ended and
/// every answer is out, or the peer stops reading.
fn respond<S: Socket>(mut stream: S, rx: Receiver<Action>, peer: &str) {
    for action in rx {
        let bytes = match action {
            Action::ReplyThenClose(b, _) => {
                // A failed authentication is answered late, as Kafka's
                // connection.failed.authentication.delay.ms does: one
                // connection guesses passwords at most 10 times a second.
                std::thread::sleep(FAILED_AUTH_DELAY);
                let _ = stream.write_all(&b);
                break;
            }
            Action::Reply(b) => b,
            Action::Later(work) => match work() {
                Some(b) => b,
                None => break,
            },
            Action::NoReply => continue,
            Action::Close(_) => break,
        };
        if let Err(e) = stream.write_all(&bytes) {
            log::debug!("kafka: {peer} stopped reading: {e}");
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}
