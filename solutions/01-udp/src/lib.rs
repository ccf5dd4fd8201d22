//! Lab 01: UDP datagrams — a request-reply server and a client with timeouts and retries.
//!
//! The server receives a datagram from any sender and sends a reply (the same bytes, or their
//! ASCII uppercase) back to the address the datagram came from. The client sends one request
//! and waits for the reply with a timeout, retransmitting a few times, and accepts a reply only
//! from the server it asked.
//!
//! Lecture: the UDPServer/UDPClient pair (port 6789) and the Python uppercase UDP pair; the
//! textbook's UDP datagram section (message size, blocking, timeouts, receive-from-any, failure
//! model). Protocol: RFC 768. Linux details: udp(7), socket(7).
//!
//! Steps (see the book's Lab 01 chapter; `cargo test -p lab01-udp stepN_` checks step N):
//! 1. [`bind`] a datagram socket;
//! 2. [`recv_datagram`]: receive from any sender and detect truncation;
//! 3. [`serve_one`]: reply to the sender;
//! 4. [`serve`]: the server loop that survives bad datagrams;
//! 5. [`attempt`]: send a request and wait for the server's reply, ignoring strangers;
//! 6. [`request`]: retransmit on timeout, then give up with a clear error.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;
use std::time::Instant; // solution-only

/// The server's default port, as in the lecture's UDPServer.
pub const DEFAULT_PORT: u16 = 6789;

/// The server's default receive buffer, in bytes, as in the lecture (`new byte[1000]`).
pub const DEFAULT_SERVER_BUFFER: usize = 1000;

/// The largest UDP payload over IPv4, in bytes: 65 535 (IP total length) − 20 (IPv4 header) −
/// 8 (UDP header) = 65 507. The client's default receive buffer.
pub const MAX_DATAGRAM: usize = 65_507;

// ANCHOR: received
/// What [`recv_datagram`] got: a whole datagram, or the news that one did not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A whole datagram: its bytes (possibly none) and the endpoint it came from.
    Datagram {
        /// The sender's endpoint (IP address and port): where a reply must go.
        from: SocketAddr,
        /// The datagram's bytes; empty for an empty datagram.
        payload: Vec<u8>,
    },
    /// A datagram longer than the buffer's `capacity`; the operating system kept only the
    /// first bytes, so the contents are discarded.
    Truncated {
        /// The sender's endpoint.
        from: SocketAddr,
        /// The buffer capacity in bytes that was too small.
        capacity: usize,
        /// A lower bound for the datagram's length, in bytes (at least `capacity + 1`).
        at_least: usize,
    },
}
// ANCHOR_END: received

/// What the server did with one datagram; its [`Display`](fmt::Display) is the server's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// Replied with `len` bytes to `to`, the sender of a `len`-byte request.
    Replied {
        /// Where the request came from and the reply went.
        to: SocketAddr,
        /// Request and reply length in bytes (they are equal in this protocol).
        len: usize,
    },
    /// Dropped a datagram that did not fit in the buffer; nothing was sent back.
    Dropped {
        /// The sender.
        from: SocketAddr,
        /// The buffer capacity in bytes.
        capacity: usize,
        /// A lower bound for the datagram's length in bytes.
        at_least: usize,
    },
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Served::Replied { to, len } => write!(f, "{to}: replied with {len} bytes"),
            Served::Dropped {
                from,
                capacity,
                at_least,
            } => write!(
                f,
                "{from}: datagram truncated (at least {at_least} bytes, buffer {capacity} bytes); dropped without reply"
            ),
        }
    }
}

/// How the server treats requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Receive buffer capacity in bytes; longer datagrams are detected and dropped.
    pub buffer: usize,
    /// Reply with the request's ASCII letters in uppercase (other bytes unchanged).
    pub uppercase: bool,
    /// Stop after this many datagrams (replied to or dropped); `None` serves forever.
    pub max_requests: Option<u64>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            buffer: DEFAULT_SERVER_BUFFER,
            uppercase: false,
            max_requests: None,
        }
    }
}

/// The reply to `request`: the same bytes, or with `uppercase` their ASCII uppercase (bytes
/// that are not ASCII letters, including non-UTF-8 bytes, are unchanged). Given complete.
pub fn make_reply(request: &[u8], uppercase: bool) -> Vec<u8> {
    if uppercase {
        request.to_ascii_uppercase()
    } else {
        request.to_vec()
    }
}

// ANCHOR: bind
/// Step 1. Creates a UDP socket bound to `addr` and returns it.
///
/// Port 0 asks the operating system for an ephemeral port; the caller learns which one with
/// [`UdpSocket::local_addr`] (the binary prints it on its ready line).
///
/// # Errors
/// `io::ErrorKind::AddrInUse` when another socket holds that address and port;
/// `io::ErrorKind::AddrNotAvailable` when `addr`'s IP is not an address of this host;
/// `io::ErrorKind::PermissionDenied` for ports below 1024 without privilege (Unix).
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    // >>> step 1 (addr): bind a UDP socket to `addr` and return it
    UdpSocket::bind(addr)
    // <<<
}
// ANCHOR_END: bind

// ANCHOR: recv_datagram
/// Step 2. Receives one datagram from any sender into a buffer of `capacity` bytes, and tells
/// a whole datagram from a truncated one.
///
/// A datagram longer than the buffer is cut to fit without any error on most systems, so the
/// function reads into `capacity + 1` bytes: if more than `capacity` bytes arrive, the datagram
/// did not fit. Blocks until a datagram arrives, or until the socket's read timeout.
///
/// # Errors
/// `io::ErrorKind::WouldBlock` (Unix) or `io::ErrorKind::TimedOut` (Windows) when the socket's
/// read timeout expires; other errors of `recv_from`. On Windows an earlier `send_to` to a
/// closed port can surface here as `io::ErrorKind::ConnectionReset`, and a datagram longer than
/// even `capacity + 1` bytes as error `WSAEMSGSIZE` (see [`is_message_too_long`]).
pub fn recv_datagram(socket: &UdpSocket, capacity: usize) -> io::Result<Received> {
    // >>> step 2 (socket, capacity): receive into capacity + 1 bytes and report what arrived
    let mut buf = vec![0u8; capacity + 1];
    match socket.recv_from(&mut buf) {
        Ok((len, from)) if len > capacity => Ok(Received::Truncated {
            from,
            capacity,
            at_least: len,
        }),
        Ok((len, from)) => {
            buf.truncate(len);
            Ok(Received::Datagram { from, payload: buf })
        }
        Err(e) => Err(e),
    }
    // <<<
}
// ANCHOR_END: recv_datagram

/// Whether `e` is Windows' report of a datagram longer than the buffer (`WSAEMSGSIZE`).
/// Always `false` on Unix, where the datagram is silently truncated instead. Given complete.
pub fn is_message_too_long(e: &io::Error) -> bool {
    cfg!(windows) && e.raw_os_error() == Some(10040)
}

// ANCHOR: serve_one
/// Step 3. Serves one request: receives a datagram with [`recv_datagram`] (buffer
/// `config.buffer` bytes) and sends [`make_reply`] of it back to the endpoint it came from.
/// A truncated datagram gets no reply (its tail is lost, so any reply would be wrong).
///
/// Returns what was done, for the log.
///
/// # Errors
/// Those of [`recv_datagram`], and of `send_to` (for example `io::ErrorKind::WouldBlock` when
/// the socket's write timeout expires).
pub fn serve_one(socket: &UdpSocket, config: &ServerConfig) -> io::Result<Served> {
    // >>> step 3 (socket, config): receive one datagram, reply to its sender or drop it if truncated
    match recv_datagram(socket, config.buffer)? {
        Received::Datagram { from, payload } => {
            let reply = make_reply(&payload, config.uppercase);
            socket.send_to(&reply, from)?;
            Ok(Served::Replied {
                to: from,
                len: reply.len(),
            })
        }
        Received::Truncated {
            from,
            capacity,
            at_least,
        } => Ok(Served::Dropped {
            from,
            capacity,
            at_least,
        }),
    }
    // <<<
}
// ANCHOR_END: serve_one

/// Whether an error from [`serve_one`] concerns one datagram only, so the server should log it
/// and go on: a signal (`Interrupted`), Windows' report of an over-long datagram
/// ([`is_message_too_long`]), or an ICMP "port unreachable" for an earlier reply (its client
/// has gone), reported by a later call.
///
/// Which sockets hear of that ICMP message differs. On Windows even an unconnected socket does,
/// as `ConnectionReset` (`WSAECONNRESET`) on its next `recv_from`: the case this server meets.
/// On Linux, macOS and the BSDs only a *connected* socket does, as `ConnectionRefused`
/// (`ECONNREFUSED`); an unconnected one, like this server's, never hears of it (Linux: udp(7),
/// unless `IP_RECVERR` is set, ip(7)). `ConnectionRefused` is accepted here all the same, for a
/// socket that is connected or sets `IP_RECVERR`. Given complete.
pub fn is_per_datagram(e: &io::Error) -> bool {
    is_message_too_long(e)
        || matches!(
            e.kind(),
            io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
        )
}

// ANCHOR: serve
/// Step 4. The server loop: calls [`serve_one`] until `config.max_requests` datagrams have been
/// served (forever when `None`), passing each outcome to `log` (`Ok(served)` for a datagram
/// replied to or dropped, `Err(error)` for a per-datagram error). A per-datagram error (see
/// [`is_per_datagram`]) is logged and the loop goes on; it does not count as a request.
///
/// Returns the number of datagrams served.
///
/// # Errors
/// Any other error of [`serve_one`] ends the loop and is returned, notably
/// `io::ErrorKind::WouldBlock`/`TimedOut` when the socket has a read timeout and nothing arrives
/// in time (tests use this to stop a server).
pub fn serve(
    socket: &UdpSocket,
    config: &ServerConfig,
    log: impl FnMut(Result<&Served, &io::Error>),
) -> io::Result<u64> {
    // >>> step 4 (socket, config, log): loop over serve_one, log every outcome, survive per-datagram errors
    let mut log = log;
    let mut served = 0;
    while config.max_requests.is_none_or(|max| served < max) {
        match serve_one(socket, config) {
            Ok(outcome) => {
                served += 1;
                log(Ok(&outcome));
            }
            Err(e) if is_per_datagram(&e) => log(Err(&e)),
            Err(e) => return Err(e),
        }
    }
    Ok(served)
    // <<<
}
// ANCHOR_END: serve

// ANCHOR: attempt
/// Step 5. One attempt of a request: sends `message` to `server` from `socket`, then waits up to
/// `timeout` in all for a datagram **from `server`**, receiving into `capacity` bytes.
///
/// A socket receives from any sender, so datagrams from other endpoints are ignored (and the
/// wait goes on only for what is left of `timeout`, so a stream of strangers cannot keep the
/// client waiting forever).
///
/// Returns `Ok(Some(reply))`, or `Ok(None)` when `timeout` passes without a reply.
///
/// # Errors
/// Errors of `send_to` and `recv_from` other than the timeout itself and `Interrupted` (a signal
/// arrived; the wait goes on: on Linux, a receive with a timeout is never restarted
/// automatically, see signal(7)); `io::ErrorKind::InvalidData` when the server's reply is longer
/// than `capacity` bytes.
pub fn attempt(
    socket: &UdpSocket,
    server: SocketAddr,
    message: &[u8],
    timeout: Duration,
    capacity: usize,
) -> io::Result<Option<Vec<u8>>> {
    // >>> step 5 (socket, server, message, timeout, capacity): send once, then wait for the server's reply until the deadline
    socket.send_to(message, server)?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        socket.set_read_timeout(Some(left))?;
        match recv_datagram(socket, capacity) {
            Ok(Received::Datagram { from, payload }) if from == server => return Ok(Some(payload)),
            Ok(Received::Truncated { from, at_least, .. }) if from == server => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "reply from {server} is longer than the {capacity}-byte buffer (at least {at_least} bytes)"
                    ),
                ));
            }
            Ok(_) => continue, // a stranger's datagram: not our reply
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue, // a signal: wait on
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
    // <<<
}
// ANCHOR_END: attempt

/// How a client request behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// How long each attempt waits for the reply.
    pub timeout: Duration,
    /// How many times the request is sent again after a timeout (so `retries + 1` attempts).
    pub retries: u32,
    /// Receive buffer capacity for the reply, in bytes.
    pub buffer: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_millis(1000),
            retries: 2,
            buffer: MAX_DATAGRAM,
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Every attempt timed out.
    #[error("no reply from {server} after {attempts} attempts ({} ms timeout each)", timeout.as_millis())]
    NoReply {
        /// The server asked.
        server: SocketAddr,
        /// How many times the request was sent.
        attempts: u32,
        /// The timeout of each attempt.
        timeout: Duration,
    },
    /// A socket error (binding, sending, receiving, or an over-long reply).
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The unspecified address of `server`'s family with port 0: where a client binds to get an
/// ephemeral port that can reach `server` (`0.0.0.0:0` or `[::]:0`). Given complete.
pub fn ephemeral_for(server: SocketAddr) -> SocketAddr {
    match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

// ANCHOR: request
/// Step 6. A whole request: binds a socket to an ephemeral port ([`ephemeral_for`]), then makes
/// up to `options.retries + 1` [`attempt`]s, each waiting `options.timeout`, and returns the
/// first reply.
///
/// UDP may lose the request or the reply; the client cannot tell which, so it simply sends the
/// request again (fine for this server: replying twice does no harm, the request is idempotent).
///
/// # Errors
/// [`RequestError::NoReply`] when every attempt timed out (after about
/// `(retries + 1) × timeout`); [`RequestError::Io`] for socket errors.
pub fn request(server: SocketAddr, message: &[u8], options: &ClientOptions) -> Result<Vec<u8>, RequestError> {
    // >>> step 6 (server, message, options): bind an ephemeral port, then attempt up to retries + 1 times
    let socket = UdpSocket::bind(ephemeral_for(server))?;
    socket.set_write_timeout(Some(options.timeout))?;
    let attempts = options.retries + 1;
    for _ in 0..attempts {
        if let Some(reply) = attempt(&socket, server, message, options.timeout, options.buffer)? {
            return Ok(reply);
        }
    }
    Err(RequestError::NoReply {
        server,
        attempts,
        timeout: options.timeout,
    })
    // <<<
}
// ANCHOR_END: request
