//! The gRPC listener: connections are accepted here and handed to grpc's
//! C core one by one, so that the node decides how many it takes.
//!
//! grpc 1.56 has no connection limit of its own, and a flood of idle
//! connections (620 that only sent the HTTP/2 preface) used to take the
//! descriptors a partition needed for its next WAL file. Here a connection
//! is refused (closed at once) when `--max-connections` are open, or when
//! the process is within [`reserve`] descriptors of its open-files limit:
//! the kernel hands out the lowest free descriptor, so an accepted socket
//! numbered past `limit - reserve` means at least that many are in use.
//!
//! Open connections are known by their socket inodes; once at the cap, the
//! ones grpc has closed since are found in `/proc/self/fd` (at most every
//! [`PRUNE_EVERY`]). Binding here also means no SO_REUSEPORT: a second
//! server on a held address fails to start.

use crate::metrics::Metrics;
use crate::util::thread;
use std::collections::HashSet;
use std::io;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the open connections are counted again while at the cap.
const PRUNE_EVERY: Duration = Duration::from_millis(100);
/// How long one wait for a connection lasts before the stop flag is read.
const ACCEPT_POLL: Duration = Duration::from_millis(200);
/// How often a refusal is logged (each is counted).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Descriptors kept free for WAL files, segment reads and the store's
/// connections: an eighth of the limit, between 32 and 256.
pub fn reserve(open_files_limit: u64) -> u64 {
    (open_files_limit / 8).clamp(32, 256)
}

/// Counters `/metrics` shows.
#[derive(Default)]
pub struct GateStats {
    pub open: AtomicU64,
    pub refused: AtomicU64,
}

/// The accepting thread; [`Gate::stop`] ends it.
pub struct Gate {
    stop: Arc<AtomicBool>,
    worker: Option<thread::Worker>,
}

/// What accepted connections go to.
pub type Sink = Box<dyn FnMut(TcpStream) + Send>;

/// The bound listener, not accepting yet (the port is held while the
/// engine opens).
pub struct Bound {
    listener: TcpListener,
    addr: std::net::SocketAddr,
}

impl Bound {
    /// Binds `listen`; a refusal names the address.
    pub fn bind(listen: &str) -> crate::Result<Bound> {
        let cannot =
            |e: io::Error| crate::Error::Unavailable(format!("cannot listen on {listen}: {e}"));
        let addrs: Vec<_> = listen.to_socket_addrs().map_err(cannot)?.collect();
        let listener = TcpListener::bind(&addrs[..]).map_err(|e| {
            let why = if e.kind() == io::ErrorKind::AddrInUse {
                "; another process holds the port"
            } else {
                ""
            };
            crate::Error::Unavailable(format!("cannot listen on {listen}: {e}{why}"))
        })?;
        let addr = listener.local_addr().map_err(cannot)?;
        Ok(Bound { listener, addr })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Accepts on a thread of its own, handing each admitted connection to
    /// `sink`.
    pub fn start(
        self,
        name: &str,
        max_connections: usize,
        open_files_limit: Option<u64>,
        stats: Arc<GateStats>,
        sink: Sink,
    ) -> crate::Result<Gate> {
        let Bound { listener, .. } = self;
        let stop = Arc::new(AtomicBool::new(false));
        let mut admission = Admission {
            max_connections,
            fd_ceiling: open_files_limit.map(|l| l.saturating_sub(reserve(l))),
            open: HashSet::new(),
            pruned_at: None,
            logged_at: None,
            stats,
        };
        let stopping = Arc::clone(&stop);
        let mut sink = sink;
        let worker = thread::spawn(format!("{name}-accept"), move || {
            accept_loop(&listener, &stopping, &mut admission, &mut sink)
        })
        .map_err(|e| crate::Error::io("start the accepting thread", e))?;
        Ok(Gate {
            stop,
            worker: Some(worker),
        })
    }
}

impl Gate {
    /// Stops accepting (within one [`ACCEPT_POLL`]).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(w) = self.worker.take() {
            if !w.join_until(Instant::now() + Duration::from_secs(2)) {
                log::warn!("the accepting thread did not stop within 2 s");
            }
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(
    listener: &TcpListener,
    stop: &AtomicBool,
    admission: &mut Admission,
    sink: &mut Sink,
) {
    // Nonblocking, with a wait for readiness first: a blocked accept takes
    // its descriptor number when it starts waiting (the lowest free then),
    // so after a flood every later connection would look near the limit.
    if let Err(e) = listener.set_nonblocking(true) {
        log::error!("cannot make the listener nonblocking: {e}; not accepting");
        return;
    }
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_readable(listener, ACCEPT_POLL);
            }
            Ok((stream, peer)) => match admission.admit(&stream) {
                Ok(()) => sink(stream),
                Err(why) => admission.refuse(peer, &why),
            },
            // Out of descriptors: the connection waits in the backlog.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                admission.refuse_unaccepted(&e);
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                log::debug!("accept: {e}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

struct Admission {
    max_connections: usize,
    /// The highest descriptor number a connection may have.
    fd_ceiling: Option<u64>,
    /// Socket inodes of the connections handed to grpc.
    open: HashSet<u64>,
    pruned_at: Option<Instant>,
    logged_at: Option<Instant>,
    stats: Arc<GateStats>,
}

impl Admission {
    fn admit(&mut self, stream: &TcpStream) -> Result<(), String> {
        let fd = stream.as_raw_fd();
        if let Some(ceiling) = self.fd_ceiling {
            if fd as u64 > ceiling {
                return Err(format!(
                    "descriptor {fd} is past {ceiling}: the node is near its open-files limit, and keeps the rest for its partitions"
                ));
            }
        }
        if self.open.len() >= self.max_connections {
            self.prune();
        }
        if self.open.len() >= self.max_connections {
            return Err(format!(
                "{} connections are open (--max-connections)",
                self.open.len()
            ));
        }
        let inode = socket_inode(fd).map_err(|e| format!("cannot stat the socket: {e}"))?;
        // grpc's endpoints expect what its own listener sets up.
        stream
            .set_nonblocking(true)
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|e| format!("cannot set up the socket: {e}"))?;
        self.open.insert(inode);
        self.stats
            .open
            .store(self.open.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Forgets the connections grpc has closed.
    fn prune(&mut self) {
        if self.pruned_at.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
            return;
        }
        self.pruned_at = Some(Instant::now());
        match open_socket_inodes() {
            Ok(alive) => self.open.retain(|i| alive.contains(i)),
            Err(e) => log::warn!("cannot count open connections in /proc/self/fd: {e}"),
        }
        self.stats
            .open
            .store(self.open.len() as u64, Ordering::Relaxed);
    }

    fn refuse(&mut self, peer: std::net::SocketAddr, why: &str) {
        Metrics::add(&self.stats.refused, 1);
        if self.logged_at.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            self.logged_at = Some(Instant::now());
            log::warn!(
                "refused a connection from {peer}: {why} ({} refused so far; logged every {LOG_EVERY:?})",
                self.stats.refused.load(Ordering::Relaxed)
            );
        }
    }

    fn refuse_unaccepted(&mut self, e: &io::Error) {
        if self.logged_at.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            self.logged_at = Some(Instant::now());
            log::warn!("cannot accept connections: {e}; they wait in the backlog");
        }
    }
}

/// Waits until `listener` has a connection to accept, or `timeout`.
#[allow(unsafe_code)]
fn wait_readable(listener: &TcpListener, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, valid for the call, for a descriptor the
    // listener owns; poll only reads the descriptor and writes `revents`.
    unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
}

fn socket_inode(fd: i32) -> io::Result<u64> {
    Ok(std::fs::metadata(format!("/proc/self/fd/{fd}"))?.ino())
}

/// Inodes of every socket this process has open.
fn open_socket_inodes() -> io::Result<HashSet<u64>> {
    let mut out = HashSet::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue; // closed since the listing
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse().ok())
        {
            out.insert(inode);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{mpsc, Mutex};

    fn gate(
        max: usize,
    ) -> (
        Gate,
        std::net::SocketAddr,
        Arc<GateStats>,
        mpsc::Receiver<TcpStream>,
    ) {
        let stats = Arc::new(GateStats::default());
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let bound = Bound::bind("127.0.0.1:0").expect("bind");
        let addr = bound.addr();
        let g = bound
            .start(
                "test",
                max,
                None,
                Arc::clone(&stats),
                Box::new(move |s| {
                    let _ = tx.lock().map(|t| t.send(s));
                }),
            )
            .expect("start");
        (g, addr, stats, rx)
    }

    #[test]
    fn connections_past_the_cap_are_closed_and_room_comes_back_when_one_closes() {
        let (_g, addr, stats, rx) = gate(2);
        let clients: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        let first = rx.recv_timeout(Duration::from_secs(5)).expect("first");
        let _second = rx.recv_timeout(Duration::from_secs(5)).expect("second");
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "a third was admitted"
        );
        assert_eq!(stats.refused.load(Ordering::Relaxed), 1);
        // The refused one was closed by the server: its read sees EOF.
        let mut buf = [0u8; 1];
        clients[2]
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        assert_eq!(io::Read::read(&mut &clients[2], &mut buf).expect("eof"), 0);
        // The server side of an admitted connection closes: room again.
        drop(first);
        std::thread::sleep(PRUNE_EVERY);
        let _again = TcpStream::connect(addr).expect("connect");
        rx.recv_timeout(Duration::from_secs(5))
            .expect("admitted after a close");
    }

    #[test]
    fn a_held_address_is_refused_naming_it() {
        let (_g, addr, _, _rx) = gate(1);
        let err = Bound::bind(&addr.to_string()).err().expect("second bind");
        let msg = err.to_string();
        assert!(
            msg.contains(&addr.to_string()) && msg.contains("another process holds the port"),
            "{msg}"
        );
    }

    #[test]
    fn the_reserve_is_an_eighth_between_32_and_256() {
        assert_eq!(reserve(100), 32);
        assert_eq!(reserve(1024), 128);
        assert_eq!(reserve(1 << 20), 256);
    }
}
