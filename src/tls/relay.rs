//! The relay: bytes between a TLS connection and the plain socket the
//! protocol code reads, on one thread, both sockets non-blocking, waiting
//! in poll(2) for whichever side OpenSSL or the socket says it needs.
//!
//! A buffer is refilled only once it is empty, so a TLS write that has to
//! be retried is retried with the same bytes, as OpenSSL requires.

use openssl::ssl::{ErrorCode, SslStream};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

/// Bytes read at once from either side: four TLS records.
const CHUNK: usize = 64 << 10;

/// Bytes read and not yet written on.
struct Buf {
    bytes: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buf {
    fn new() -> Buf {
        Buf {
            bytes: vec![0; CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }
    fn is_empty(&self) -> bool {
        self.start == self.end
    }
    fn pending(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
}

/// What a side of the relay waits for before it can go on.
#[derive(Default)]
struct Wants {
    tls: libc::c_short,
    plain: libc::c_short,
}

/// Relays until either side closes; what one side sent before it closed
/// is delivered to the other first. Returns the bytes relayed from TLS
/// and to TLS.
pub fn relay(mut tls: SslStream<TcpStream>, plain: UnixStream) -> io::Result<(u64, u64)> {
    tls.get_ref().set_nonblocking(true)?;
    plain.set_nonblocking(true)?;
    let (mut up, mut down) = (Buf::new(), Buf::new());
    let (mut tls_closed, mut plain_closed) = (false, false);
    let (mut from_tls, mut to_tls) = (0u64, 0u64);
    loop {
        let mut wants = Wants::default();
        let mut progress = true;
        while progress {
            progress = false;
            if !tls_closed && up.is_empty() {
                match tls.ssl_read(&mut up.bytes) {
                    Ok(0) => tls_closed = true,
                    Ok(n) => {
                        up.end = n;
                        from_tls += n as u64;
                        progress = true;
                    }
                    Err(e) => match e.code() {
                        ErrorCode::WANT_READ => wants.tls |= libc::POLLIN,
                        ErrorCode::WANT_WRITE => wants.tls |= libc::POLLOUT,
                        // close_notify, a reset, or an EOF without one.
                        _ => tls_closed = true,
                    },
                }
            }
            if !up.is_empty() {
                match (&plain).write(up.pending()) {
                    Ok(n) => {
                        up.consume(n);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => wants.plain |= libc::POLLOUT,
                    // The protocol side is gone: nothing more to do.
                    Err(_) => return Ok((from_tls, to_tls)),
                }
            }
            if !plain_closed && down.is_empty() {
                match (&plain).read(&mut down.bytes) {
                    Ok(0) => plain_closed = true,
                    Ok(n) => {
                        down.end = n;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => wants.plain |= libc::POLLIN,
                    Err(_) => plain_closed = true,
                }
            }
            if !down.is_empty() {
                match tls.ssl_write(down.pending()) {
                    Ok(n) => {
                        down.consume(n);
                        to_tls += n as u64;
                        progress = true;
                    }
                    Err(e) => match e.code() {
                        ErrorCode::WANT_READ => wants.tls |= libc::POLLIN,
                        ErrorCode::WANT_WRITE => wants.tls |= libc::POLLOUT,
                        // The client is gone.
                        _ => return Ok((from_tls, to_tls)),
                    },
                }
            }
        }
        if tls_closed && up.is_empty() {
            // The client closed: dropping `plain` tells the protocol side.
            return Ok((from_tls, to_tls));
        }
        if plain_closed && down.is_empty() {
            // The protocol side closed after its last answer went out.
            let _ = tls.shutdown();
            return Ok((from_tls, to_tls));
        }
        wait(tls.get_ref(), &plain, &wants)?;
    }
}

/// Waits until a side is ready for what it wants (or has hung up).
fn wait(tcp: &TcpStream, plain: &UnixStream, wants: &Wants) -> io::Result<()> {
    // A side nothing waits on is left out (a negative descriptor): its
    // hang-up would otherwise end every wait at once.
    let entry = |fd: i32, events: libc::c_short| libc::pollfd {
        fd: if events == 0 { -1 } else { fd },
        events,
        revents: 0,
    };
    let mut fds = [
        entry(tcp.as_raw_fd(), wants.tls),
        entry(plain.as_raw_fd(), wants.plain),
    ];
    loop {
        #[allow(unsafe_code)]
        // SAFETY: `fds` is a valid array of two pollfd for the call's
        // duration, and both descriptors are open (their owners are
        // borrowed).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
