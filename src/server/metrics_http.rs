//! A small `/metrics` responder in the Prometheus text format: the engine's
//! counters and gauges. One thread, one request at a time — scrapes are rare
//! — and each request done within 5 s or dropped.

use super::gate::GateStats;
use super::shared::Latencies;
use super::streams::StreamSlots;
use crate::engine::Engine;
use crate::util::thread::{self, Worker};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// More exposition text from another face (the Kafka listener's counters).
pub type Section = Box<dyn Fn() -> String + Send>;

pub struct MetricsServer {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<Worker>,
}

impl MetricsServer {
    pub fn start(
        addr: &str,
        engine: Arc<Engine>,
        latencies: Arc<Latencies>,
        connections: Arc<GateStats>,
        streams: Arc<StreamSlots>,
        more: Vec<Section>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn("metrics-http", move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(c) = conn {
                    let faces = (&*connections, &*streams, &more[..]);
                    if let Err(e) = serve(c, &engine, &latencies, faces) {
                        log::debug!("metrics request: {e}");
                    }
                }
            }
        })?;
        log::info!("serving /metrics on http://{addr}/metrics");
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop; a request being served ends by its deadline.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let until = Instant::now() + REQUEST_DEADLINE + Duration::from_secs(1);
            if !t.join_until(until) {
                log::warn!("/metrics did not stop in time; leaving it");
            }
        }
    }
}

/// Bytes of an HTTP request read before giving up on it.
const MAX_REQUEST_BYTES: u64 = 8 * 1024;
/// The whole exchange, request and reply: a client trickling its request
/// a byte at a time cannot hold the one thread longer.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// A socket whose reads and writes all end by one deadline.
struct ByDeadline {
    conn: TcpStream,
    until: Instant,
}

impl ByDeadline {
    fn remaining(&self) -> std::io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request took longer than its deadline",
            ));
        }
        Ok(left)
    }
}

impl Read for ByDeadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.conn.set_read_timeout(Some(self.remaining()?))?;
        self.conn.read(buf)
    }
}

impl Write for ByDeadline {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.conn.set_write_timeout(Some(self.remaining()?))?;
        self.conn.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.conn.flush()
    }
}

fn serve(
    conn: TcpStream,
    engine: &Engine,
    latencies: &Latencies,
    (connections, streams, more): (&GateStats, &StreamSlots, &[Section]),
) -> std::io::Result<()> {
    let until = Instant::now() + REQUEST_DEADLINE;
    let reading = ByDeadline {
        conn: conn.try_clone()?,
        until,
    };
    // A request (line and headers) is read up to 8 KiB, never more.
    let mut reader = BufReader::new(reading.take(MAX_REQUEST_BYTES));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut out = ByDeadline { conn, until };
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    if path != "/metrics" {
        let body = "not found; try /metrics\n";
        return write!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    let mut body = render(engine, latencies, connections, streams);
    for section in more {
        body.push_str(&section());
    }
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The exposition text.
pub fn render(
    engine: &Engine,
    latencies: &Latencies,
    connections: &GateStats,
    streams: &StreamSlots,
) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# HELP streamhouse_grpc_connections gRPC connections open (counted again when at --max-connections).\n\
         # TYPE streamhouse_grpc_connections gauge\nstreamhouse_grpc_connections {}\n\
         # HELP streamhouse_grpc_connections_refused_total Connections closed at once: at --max-connections, or near the open-files limit.\n\
         # TYPE streamhouse_grpc_connections_refused_total counter\nstreamhouse_grpc_connections_refused_total {}\n",
        connections.open.load(Ordering::Relaxed),
        connections.refused.load(Ordering::Relaxed),
    ));
    s.push_str(&format!(
        "# HELP streamhouse_subscribe_streams Subscribe streams open.\n\
         # TYPE streamhouse_subscribe_streams gauge\nstreamhouse_subscribe_streams {}\n",
        streams.open()
    ));
    s.push_str(&latencies.produce.render(
        "streamhouse_produce_latency_seconds",
        "Successful produce requests, receipt to acknowledgement (acks=uploaded includes the upload).",
    ));
    s.push_str(&latencies.fetch.render(
        "streamhouse_fetch_latency_seconds",
        "Successful fetches, receipt to reply (includes long-poll waits).",
    ));
    s.push_str(&latencies.subscribe_send.render(
        "streamhouse_stage_subscribe_send_seconds",
        "A subscription's records ready to sent on its stream.",
    ));
    s.push_str(&engine.stages().render());
    for (name, help, value) in engine.metrics().pairs() {
        s.push_str(&format!(
            "# HELP streamhouse_{name}_total {help}\n# TYPE streamhouse_{name}_total counter\nstreamhouse_{name}_total {value}\n"
        ));
    }
    s.push_str(
        "# HELP streamhouse_partitions Partitions by state: only open ones take writes.\n\
         # TYPE streamhouse_partitions gauge\n",
    );
    for (state, n) in engine.partition_states() {
        s.push_str(&format!(
            "streamhouse_partitions{{state=\"{state}\"}} {n}\n"
        ));
    }
    s.push_str(&format!(
        "# HELP streamhouse_fenced 1 when another node took the prefix over and this one refuses writes.\n\
         # TYPE streamhouse_fenced gauge\nstreamhouse_fenced {}\n",
        u8::from(engine.is_fenced())
    ));
    s.push_str(&format!(
        "# TYPE streamhouse_backlog_bytes gauge\nstreamhouse_backlog_bytes {}\n",
        engine.backlog_bytes()
    ));
    s.push_str(&format!(
        "# TYPE streamhouse_cache_bytes gauge\nstreamhouse_cache_bytes {}\n",
        engine.cache_bytes()
    ));
    s.push_str("# TYPE streamhouse_high_watermark gauge\n");
    if let Ok(topics) = engine.list_topics() {
        for t in topics {
            for p in t.partition_info {
                s.push_str(&format!(
                    "streamhouse_high_watermark{{topic=\"{}\",partition=\"{}\"}} {}\n",
                    t.name, p.partition, p.high_watermark
                ));
            }
        }
    }
    s
}
