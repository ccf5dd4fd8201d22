//! Lab 05: closing semantics — how a TCP connection ends, and the closing code real programs need.
//!
//! A connection ends in one of two ways. In an **orderly release** each side sends a FIN when it
//! has finished sending; everything written before it is delivered, and the reader then sees
//! **end of stream** (`read` returns `Ok(0)`). In an **abortive close** a side sends a RST: data
//! still queued is thrown away and the peer's next `read` or `write` fails with
//! `ConnectionReset` (or `BrokenPipe` once the socket knows it is dead). `shutdown` ends one
//! direction without releasing the socket (a **half-close**); dropping a [`TcpStream`] (the
//! `close` system call) releases it.
//!
//! The program of this lab is a request-reply pair that depends on closing right: the client
//! sends a file, half-closes, and reads the reply; the server reads to end of stream, replies with
//! the byte count and an FNV-1a 64 checksum of what it received, and closes in an orderly way.
//! The [`experiments`] show each closing behaviour on real sockets.
//!
//! Lecture: "Closing a socket" (the Java slides), WinSock's `shutdown` (SD_SEND, SD_RECEIVE,
//! SD_BOTH) and `closesocket`. Protocol: RFC 9293 (TCP) §3.6 (closing a connection) and §3.10.7
//! (RST); RFC 1122 §4.2.2.13; RFC 2525 §2.17 (a close with unread data sends RST). Linux details:
//! tcp(7), socket(7) (`SO_LINGER`, `SO_REUSEADDR`), shutdown(2), close(2).
//!
//! Steps (see the book's Lab 05 chapter; `cargo test -p lab05-closing stepN_` checks step N):
//! 1. [`classify`]: how a read or write ended (data, end of stream, reset, broken pipe, timeout);
//! 2. [`orderly_close`]: shut down the sending side, drain to end of stream with a deadline, close;
//! 3. [`abortive_close`]: close with a reset (`SO_LINGER` 0);
//! 4. [`request`]: the client's side, ending its request with a half-close;
//! 5. [`serve_connection`]: the server's side, reading to end of stream within the message
//!    timeout, replying and closing in order.

pub mod experiments;

use std::fmt;
use std::io::Write; // solution-only
use std::io::{self, Read};
use std::net::Shutdown; // solution-only
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;
use std::time::Instant; // solution-only

pub use common::accept::{ACCEPT_BACKOFF, is_resource_exhaustion};

/// The server's default port, as in the lecture's Java TCPServer: 7896.
pub const DEFAULT_PORT: u16 = 7896;

/// How long the server's [`orderly_close`] waits for the client's end of stream: 2000 ms.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(2);

/// How long the server waits for a silent client before giving up on it: 10 000 ms.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a whole upload may take, from the server's first read until its reply line is
/// written: 30 000 ms.
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The default cap on one request, in bytes: 1 GiB (1 073 741 824). A larger request is refused.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// How many bytes the reading loops read at a time: 64 KiB.
pub const CHUNK: usize = 64 * 1024;

/// The longest reply line a client accepts, in bytes, newline included: 256.
pub const MAX_REPLY: usize = 256;

// ANCHOR: outcome
/// How one `read` or `write` on a stream ended, as [`classify`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `Ok(n)` with `n > 0`: `n` bytes were read or written.
    Data(usize),
    /// The peer has finished sending (its FIN arrived): `read` returned `Ok(0)`, or `read_exact`
    /// failed with `UnexpectedEof`.
    EndOfStream,
    /// The connection was reset (a RST arrived) or aborted by the local stack:
    /// `ConnectionReset` or `ConnectionAborted`.
    Reset,
    /// Writing to a connection that can no longer carry data (`EPIPE`): `BrokenPipe`.
    BrokenPipe,
    /// A read or write timeout expired: `WouldBlock` (Unix) or `TimedOut` (Windows).
    TimedOut,
    /// Any other error, with its kind (for example `NotConnected`, `AddrInUse`).
    Other(io::ErrorKind),
}
// ANCHOR_END: outcome

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Data(_) => f.write_str("data"),
            Outcome::EndOfStream => f.write_str("end of stream"),
            Outcome::Reset => f.write_str("reset"),
            Outcome::BrokenPipe => f.write_str("broken pipe"),
            Outcome::TimedOut => f.write_str("timed out"),
            Outcome::Other(_) => f.write_str("other error"),
        }
    }
}

/// The result of a read or write as the experiments print it: `Ok(5)` or `Err(ConnectionReset)`,
/// followed by what [`classify`] makes of it: `Ok(0) (end of stream)`. Given complete.
pub fn describe(result: &io::Result<usize>) -> String {
    let outcome = classify(result);
    match result {
        Ok(n) => format!("Ok({n}) ({outcome})"),
        Err(e) => format!("Err({:?}) ({outcome})", e.kind()),
    }
}

/// Whether `e` is what a socket read or write timeout produces: `WouldBlock` on Unix,
/// `TimedOut` on Windows. Given complete.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// The error inside the [`io::Error`] (of kind `TimedOut`) that ends a connection whose upload
/// took longer than the message timeout; see [`message_timed_out`]. Given complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageTimeout {
    /// The message timeout that was exceeded.
    pub timeout: Duration,
}

impl fmt::Display for MessageTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the upload took longer than the message timeout ({} ms)",
            self.timeout.as_millis()
        )
    }
}

impl std::error::Error for MessageTimeout {}

/// The error for an upload that took longer than `timeout`: kind `io::ErrorKind::TimedOut`
/// (so [`classify`] calls it [`Outcome::TimedOut`]), holding a [`MessageTimeout`] so that
/// [`message_timeout_of`] (and the log line) can tell it from an idle timeout. Given complete.
pub fn message_timed_out(timeout: Duration) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, MessageTimeout { timeout })
}

/// The message timeout `e` reports, if `e` was made by [`message_timed_out`]. Given complete.
pub fn message_timeout_of(e: &io::Error) -> Option<Duration> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<MessageTimeout>())
        .map(|m| m.timeout)
}

// ANCHOR: classify
/// Step 1. Says how a `read` or `write` on a stream ended, from its result.
///
/// - `Ok(0)` is [`Outcome::EndOfStream`] (for a read; a write of a non-empty buffer never
///   returns 0 on a socket), and so is the error `UnexpectedEof` (what `read_exact` reports when
///   the stream ends first);
/// - `Ok(n)` is [`Outcome::Data`]`(n)`;
/// - `ConnectionReset` and `ConnectionAborted` are [`Outcome::Reset`] (Windows reports a reset
///   seen by a `send` as `ConnectionAborted` in some cases);
/// - `BrokenPipe` is [`Outcome::BrokenPipe`];
/// - `WouldBlock` and `TimedOut` are [`Outcome::TimedOut`] (see [`is_timeout`]);
/// - every other kind is [`Outcome::Other`] with that kind.
///
/// Look only at [`io::Error::kind`], never at OS error numbers: the kinds are the same on every
/// platform.
pub fn classify(result: &io::Result<usize>) -> Outcome {
    // >>> step 1 (result): map Ok(0), Ok(n) and each io::ErrorKind to its Outcome
    match result {
        Ok(0) => Outcome::EndOfStream,
        Ok(n) => Outcome::Data(*n),
        Err(e) => match e.kind() {
            io::ErrorKind::UnexpectedEof => Outcome::EndOfStream,
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => Outcome::Reset,
            io::ErrorKind::BrokenPipe => Outcome::BrokenPipe,
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Outcome::TimedOut,
            kind => Outcome::Other(kind),
        },
    }
    // <<<
}
// ANCHOR_END: classify

// ANCHOR: orderly_close
/// Step 2. Closes `stream` in an orderly way and returns how many bytes were drained.
///
/// 1. `shutdown(Write)`: sends a FIN after everything already written ("I have finished
///    sending"); the peer reads what is left, then end of stream.
/// 2. **Drain**: reads and discards whatever the peer still sends, until its end of stream
///    (`Ok(0)`), but for at most `deadline` in all (not per read: a peer that trickles a byte
///    now and then must not keep the socket open forever). Closing a socket with unread data
///    in it makes the kernel send a RST, which can destroy the reply the peer has not read yet.
/// 3. Drops the stream, which closes the socket (`close`, WinSock's `closesocket`).
///
/// The socket is closed in every case, error or not.
///
/// # Errors
/// `io::ErrorKind::TimedOut` when the peer has not finished sending within `deadline` (a zero
/// deadline drains nothing); errors of `shutdown` (`NotConnected` when the connection was
/// already reset) and of `read` (`ConnectionReset` when the peer resets meanwhile).
pub fn orderly_close(stream: TcpStream, deadline: Duration) -> io::Result<u64> {
    // >>> step 2 (stream, deadline): shutdown(Write), drain until Ok(0) or the deadline passes, drop
    stream.shutdown(Shutdown::Write)?;
    let end = Instant::now() + deadline;
    let mut buf = vec![0u8; CHUNK];
    let mut drained = 0u64;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the peer did not finish sending within {} ms ({drained} bytes drained)",
                    deadline.as_millis()
                ),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match (&stream).read(&mut buf) {
            Ok(0) => return Ok(drained),
            Ok(n) => drained += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => {}
            Err(e) => return Err(e),
        }
    }
    // <<<
}
// ANCHOR_END: orderly_close

// ANCHOR: abortive_close
/// Step 3. Closes `stream` abortively: the kernel sends a RST instead of a FIN and throws away
/// whatever is still queued to send. The peer's next `read` or `write` fails with
/// `ConnectionReset` (its next ones with `BrokenPipe` or end of stream).
///
/// This is `SO_LINGER` set to "on, 0 seconds", then `close`. std has no stable setter for
/// `SO_LINGER`; socket2's [`socket2::SockRef`] gives any std socket socket2's methods. Returns
/// at once; it never waits for the peer.
///
/// # Errors
/// The error of setting `SO_LINGER` (the stream is closed, in an orderly way, anyway).
pub fn abortive_close(stream: TcpStream) -> io::Result<()> {
    // >>> step 3 (stream): set SO_LINGER to 0 seconds through socket2::SockRef, then drop the stream
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
    drop(stream);
    Ok(())
    // <<<
}
// ANCHOR_END: abortive_close

/// What a stream carried: how many bytes, and their FNV-1a 64 checksum. Given complete.
///
/// FNV-1a 64 (Fowler–Noll–Vo): start from the offset basis `0xcbf29ce484222325`; for each byte,
/// XOR it into the hash, then multiply by the prime `0x100000001b3` (wrapping, modulo 2^64). It
/// is fast and simple, and good enough to notice lost, repeated or reordered bytes; it is not a
/// cryptographic hash. The checksum of no bytes is the offset basis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// How many bytes.
    pub bytes: u64,
    /// Their FNV-1a 64 checksum.
    pub fnv1a64: u64,
}

impl Summary {
    /// FNV-1a 64's offset basis, the checksum of no bytes.
    pub const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    /// FNV-1a 64's prime.
    pub const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// The summary of no bytes.
    pub fn new() -> Self {
        Summary {
            bytes: 0,
            fnv1a64: Self::OFFSET_BASIS,
        }
    }

    /// The summary of `data`.
    pub fn of(data: &[u8]) -> Self {
        let mut summary = Summary::new();
        summary.update(data);
        summary
    }

    /// Adds `data`, the bytes that came after those already counted.
    pub fn update(&mut self, data: &[u8]) {
        for &byte in data {
            self.fnv1a64 = (self.fnv1a64 ^ u64::from(byte)).wrapping_mul(Self::PRIME);
        }
        self.bytes += data.len() as u64;
    }
}

impl Default for Summary {
    fn default() -> Self {
        Summary::new()
    }
}

impl fmt::Display for Summary {
    /// `5 bytes, fnv1a64 a430d84680aabd0b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes, fnv1a64 {:016x}", self.bytes, self.fnv1a64)
    }
}

// ANCHOR: reply
/// The server's reply: one line of text, then the server closes. Given complete.
///
/// On the wire: `received 5 bytes, fnv1a64 a430d84680aabd0b\n`, or
/// `refused: more than 1000 bytes\n` when the request was longer than the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The whole request arrived: its byte count and checksum.
    Received(Summary),
    /// The request was longer than `max_bytes`; the server stopped counting.
    Refused {
        /// The server's cap, in bytes.
        max_bytes: u64,
    },
}
// ANCHOR_END: reply

impl Reply {
    /// The reply as sent: its text and a `\n`.
    pub fn to_line(&self) -> String {
        format!("{self}\n")
    }

    /// Parses a reply line (with or without its `\n`); `None` when it is not one.
    pub fn parse(line: &[u8]) -> Option<Reply> {
        let text = std::str::from_utf8(line).ok()?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        if let Some(rest) = text.strip_prefix("refused: more than ") {
            let max_bytes = rest.strip_suffix(" bytes")?.parse().ok()?;
            return Some(Reply::Refused { max_bytes });
        }
        let rest = text.strip_prefix("received ")?;
        let (bytes, hash) = rest.split_once(" bytes, fnv1a64 ")?;
        if hash.len() != 16 {
            return None;
        }
        Some(Reply::Received(Summary {
            bytes: bytes.parse().ok()?,
            fnv1a64: u64::from_str_radix(hash, 16).ok()?,
        }))
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Received(summary) => write!(f, "received {summary}"),
            Reply::Refused { max_bytes } => write!(f, "refused: more than {max_bytes} bytes"),
        }
    }
}

/// A reader that passes bytes through and keeps the [`Summary`] of what it passed. Given
/// complete: the client wraps its input in one, so it knows what it sent.
#[derive(Debug)]
pub struct Tally<R> {
    inner: R,
    summary: Summary,
}

impl<R: Read> Tally<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Tally {
            inner,
            summary: Summary::new(),
        }
    }

    /// What has been read through it so far.
    pub fn summary(&self) -> Summary {
        self.summary
    }
}

impl<R: Read> Read for Tally<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.summary.update(&buf[..n]);
        Ok(n)
    }
}

// ANCHOR: request
/// Step 4. The client's side of one request: sends everything `input` yields on `stream`, then
/// **half-closes** (`shutdown(Write)`: the server's read returns end of stream, which is how it
/// knows the request is complete), then reads the reply until the server closes, and parses it
/// with [`Reply::parse`].
///
/// Do not drop or fully close the stream to end the request: that would close the direction the
/// reply comes back on. Read at most [`MAX_REPLY`] + 1 bytes of reply, so a server that never
/// stops talking cannot make the client buffer without bound.
///
/// # Errors
/// Errors of reading `input` and of writing (`ConnectionReset` or `BrokenPipe` when the server
/// reset the connection, for example by closing without reading everything);
/// `io::ErrorKind::UnexpectedEof` when the server closes without a reply;
/// `io::ErrorKind::InvalidData` when the reply is longer than [`MAX_REPLY`] bytes or is not a
/// reply line; `WouldBlock`/`TimedOut` when the stream's timeout expires.
pub fn request(stream: &TcpStream, input: &mut impl Read) -> io::Result<Reply> {
    // >>> step 4 (stream, input): copy input to the stream, shutdown(Write), read at most MAX_REPLY + 1 bytes to EOF, parse
    let mut output = stream;
    io::copy(input, &mut output)?;
    stream.shutdown(Shutdown::Write)?;
    let mut reply = Vec::new();
    Read::take(stream, MAX_REPLY as u64 + 1).read_to_end(&mut reply)?;
    if reply.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection without a reply",
        ));
    }
    if reply.len() > MAX_REPLY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the reply is longer than {MAX_REPLY} bytes"),
        ));
    }
    Reply::parse(&reply).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a reply line: {:?}", String::from_utf8_lossy(&reply)),
        )
    })
    // <<<
}
// ANCHOR_END: request

// ANCHOR: server_config
/// How the server treats its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Read and write timeout of each connection: a client silent this long is dropped. `None`
    /// waits forever.
    pub idle_timeout: Option<Duration>,
    /// The most time one upload may take: from the server's first read until its reply line is
    /// written. A client that trickles its request (each read well within the idle timeout) is
    /// dropped once this has passed. The drain of the orderly close is not counted (it has
    /// `drain`). `None`: no limit beyond the idle timeout.
    pub message_timeout: Option<Duration>,
    /// How long [`orderly_close`] waits for the client's end of stream after the reply.
    pub drain: Duration,
    /// The longest request accepted, in bytes; a longer one gets [`Reply::Refused`].
    pub max_bytes: u64,
    /// Stop after this many connections (served or failed); `None` serves forever.
    pub max_connections: Option<u64>,
}
// ANCHOR_END: server_config

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            message_timeout: Some(DEFAULT_MESSAGE_TIMEOUT),
            drain: DEFAULT_DRAIN,
            max_bytes: DEFAULT_MAX_BYTES,
            max_connections: None,
        }
    }
}

/// What [`serve_connection`] did with one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// The reply it sent.
    pub reply: Reply,
    /// How many bytes [`orderly_close`] drained after the reply.
    pub drained: u64,
}

// ANCHOR: serve_connection
/// Step 5. The server's side of one request: reads `stream` to end of stream (the client's
/// half-close), keeping the [`Summary`] of what arrives, writes the [`Reply`] line, and closes
/// with [`orderly_close`] and `config.drain`.
///
/// Reads [`CHUNK`] bytes at a time; once more than `config.max_bytes` have arrived it stops
/// counting and replies [`Reply::Refused`] at once. The client is still sending then: the drain
/// of the orderly close reads and discards the rest, so the client's writes succeed and it can
/// read the refusal. Closing without the drain would reset the connection under the client's
/// feet.
///
/// Two limits keep one client from holding the (iterative) server forever:
/// - `config.idle_timeout` bounds each single read and write: a client silent that long is
///   dropped;
/// - `config.message_timeout` bounds the whole upload, from the first read until the reply line
///   is written: a client that trickles its request a few bytes at a time, each read well within
///   the idle timeout, is dropped once it has passed. Compute the deadline (a
///   [`std::time::Instant`]) once, before the first read. Before each read, and before writing
///   the reply, set the socket's timeout to the smaller of the idle timeout and the time left
///   until the deadline; when no time is left, or a call timed out while the time left was the
///   smaller, fail with [`message_timed_out`]`(message_timeout)`. `None` means no such limit.
///
/// The orderly close after the reply is outside the message timeout: its drain has its own
/// deadline, `config.drain`, and a refused client may rightly still be sending then.
///
/// # Errors
/// Errors of `read` (`ConnectionReset` when the client resets, `WouldBlock`/`TimedOut` when it
/// stays silent for the idle timeout), `TimedOut` holding a [`MessageTimeout`] (see
/// [`message_timed_out`]) when the upload and its reply take longer than the message timeout,
/// errors of writing the reply, and of [`orderly_close`] (`TimedOut` when the client does not
/// finish within `config.drain`). The connection is closed in every case.
pub fn serve_connection(stream: TcpStream, config: &ServerConfig) -> io::Result<Served> {
    // >>> step 5 (stream, config): bound each read and the reply's write by min(idle timeout, time left until the message deadline), read to EOF summing (refuse past max_bytes), write the reply line, orderly_close
    /// The timeout for the next read or write: the idle timeout, or the time left until the
    /// upload's `deadline` (with its limit) when that is shorter; the `bool` says the deadline
    /// set it, so a timeout of that call is the message timeout. Once no time is left, the
    /// message-timeout error (a zero socket timeout would be an error anyway).
    fn next_timeout(
        idle: Option<Duration>,
        deadline: Option<(Instant, Duration)>,
    ) -> io::Result<(Option<Duration>, bool)> {
        let Some((deadline, limit)) = deadline else {
            return Ok((idle, false));
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(message_timed_out(limit));
        }
        Ok(match idle {
            Some(idle) if idle <= left => (Some(idle), false),
            _ => (Some(left), true),
        })
    }

    /// A timeout error of a call whose timeout the deadline set becomes the message timeout.
    fn explain(e: io::Error, by_deadline: bool, config: &ServerConfig) -> io::Error {
        match config.message_timeout {
            Some(limit) if by_deadline && is_timeout(&e) => message_timed_out(limit),
            _ => e,
        }
    }

    // The clock starts once, before the first read: the idle timeout restarts with every byte
    // that arrives, the deadline never does.
    let deadline = config
        .message_timeout
        .map(|limit| (Instant::now() + limit, limit));
    let mut summary = Summary::new();
    let mut buf = vec![0u8; CHUNK];
    let reply = loop {
        let (timeout, by_deadline) = next_timeout(config.idle_timeout, deadline)?;
        stream.set_read_timeout(timeout)?;
        match (&stream).read(&mut buf) {
            Ok(0) => break Reply::Received(summary),
            Ok(n) => {
                summary.update(&buf[..n]);
                if summary.bytes > config.max_bytes {
                    break Reply::Refused {
                        max_bytes: config.max_bytes,
                    };
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(explain(e, by_deadline, config)),
        }
    };
    // The reply is one short line into an empty send buffer, so this write does not wait in
    // practice; it still gets its timeout the same way, as the upload ends when it is written.
    let (timeout, by_deadline) = next_timeout(config.idle_timeout, deadline)?;
    stream.set_write_timeout(timeout)?;
    (&stream)
        .write_all(reply.to_line().as_bytes())
        .map_err(|e| explain(e, by_deadline, config))?;
    let drained = orderly_close(stream, config.drain)?;
    Ok(Served { reply, drained })
    // <<<
}
// ANCHOR_END: serve_connection

/// One thing the server did; its [`Display`](fmt::Display) is the server's log line.
#[derive(Debug)]
pub enum Event {
    /// A connection was accepted from `peer`.
    Accepted {
        /// The client's endpoint.
        peer: SocketAddr,
    },
    /// The connection was served, replied to and closed in order.
    Served {
        /// The client.
        peer: SocketAddr,
        /// What was done.
        served: Served,
    },
    /// The connection ended with an error and was closed.
    Failed {
        /// The client.
        peer: SocketAddr,
        /// What [`classify`] makes of the error.
        outcome: Outcome,
        /// The error.
        error: io::Error,
    },
    /// `accept` failed for one connection; the server goes on.
    AcceptFailed {
        /// The error.
        error: io::Error,
    },
    /// `accept` failed because the process or the system is out of descriptors or memory for
    /// the moment (see [`is_resource_exhaustion`]): the server waits `pause`, then accepts again.
    AcceptBackoff {
        /// The error (`EMFILE`: too many open files, ...).
        error: io::Error,
        /// How long the server waits before it calls `accept` again ([`ACCEPT_BACKOFF`]).
        pause: Duration,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Accepted { peer } => write!(f, "{peer}: connected"),
            Event::Served { peer, served } => write!(
                f,
                "{peer}: {}; replied and closed in order ({} bytes drained)",
                served.reply, served.drained
            ),
            Event::Failed { peer, outcome, error } => {
                write!(f, "{peer}: connection closed after an error ({outcome}): {error}")
            }
            Event::AcceptFailed { error } => write!(f, "accept failed (still serving): {error}"),
            Event::AcceptBackoff { error, pause } => write!(
                f,
                "accept failed: {error}; backing off {} ms (still serving)",
                pause.as_millis()
            ),
        }
    }
}

/// Creates a TCP socket listening on `addr`. Given complete (Lab 02 step 1).
///
/// # Errors
/// `AddrInUse` when another socket listens there; `AddrNotAvailable` for a foreign IP.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// The iterative server: accepts one connection at a time, serves it with
/// [`serve_connection`], and logs each [`Event`]. A connection's error is logged, never
/// returned; so is an `accept` error that concerns one connection ([`Event::AcceptFailed`]),
/// and one that says descriptors or memory ran out ([`is_resource_exhaustion`]: logged as
/// [`Event::AcceptBackoff`], then the loop sleeps [`ACCEPT_BACKOFF`] and accepts again).
/// Stops after `config.max_connections` connections and returns how many it served. Given
/// complete.
///
/// # Errors
/// Any other error of `accept` (`EBADF`, `EINVAL`: the listening socket itself is broken; see
/// [`common::accept`]).
pub fn serve(listener: &TcpListener, config: &ServerConfig, mut log: impl FnMut(&Event)) -> io::Result<u64> {
    let mut served = 0;
    while config.max_connections.is_none_or(|max| served < max) {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) =>
            {
                log(&Event::AcceptFailed { error });
                continue;
            }
            Err(error) if is_resource_exhaustion(&error) => {
                log(&Event::AcceptBackoff {
                    error,
                    pause: ACCEPT_BACKOFF,
                });
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
            Err(error) => return Err(error),
        };
        served += 1;
        log(&Event::Accepted { peer });
        match serve_connection(stream, config) {
            Ok(done) => log(&Event::Served { peer, served: done }),
            Err(error) => {
                let outcome = classify(&Err(io::Error::from(error.kind())));
                log(&Event::Failed { peer, outcome, error });
            }
        }
    }
    Ok(served)
}

/// Connects to the first of `addrs` that accepts within `timeout`, and sets `timeout` as the
/// stream's read and write timeout. Given complete (Lab 02 step 9).
///
/// # Errors
/// The error of the last address tried (`ConnectionRefused`, `TimedOut`...).
pub fn connect(addrs: &[SocketAddr], timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
    for addr in addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(stream) => {
                stream.set_read_timeout(Some(timeout))?;
                stream.set_write_timeout(Some(timeout))?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}
