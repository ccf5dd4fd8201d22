//! Lab 02: TCP echo and stream framing — an iterative echo server and its client.
//!
//! TCP gives each side of a connection a reliable, ordered **byte stream** with no message
//! boundaries: one `write` is not one `read`, `write` may take fewer bytes than offered, and
//! `read` returning 0 (end of stream, EOF) is how the peer says it has finished sending. The
//! server here echoes what a client sends in one of three framings:
//!
//! - [`Framing::Raw`]: bytes as they come, until the client's EOF (the Python uppercase pair);
//! - [`Framing::Line`]: one reply per `\n`-terminated line, with a cap on the line length;
//! - [`Framing::Utf`]: frames of a 2-byte big-endian length and that many bytes, as Java's
//!   `DataOutputStream.writeUTF` writes and `DataInputStream.readUTF` reads (the TCPClient /
//!   TCPServer pair on port 7896).
//!
//! Lecture: the Java TCPClient/TCPServer (port 7896), the WinSock and UNIX stream call
//! sequences (partial sends, iterative servers), the Python uppercase TCP pair. Protocol:
//! RFC 9293 (TCP). Linux details: tcp(7), socket(7), send(2), recv(2), shutdown(2).
//!
//! Steps (see the book's Lab 02 chapter; `cargo test -p lab02-tcp-echo stepN_` checks step N; the
//! underscore keeps `step1_` from also running the tests of step 10):
//! 1. [`listen`]: a listening socket;
//! 2. [`write_fully`]: write every byte, over `write` calls that take only some;
//! 3. [`echo_raw`]: echo a byte stream until EOF;
//! 4. [`read_line`]: read one line, refusing lines longer than a cap;
//! 5. [`write_frame`]: write one length-prefixed frame;
//! 6. [`read_frame`]: read one length-prefixed frame, however the bytes arrive;
//! 7. [`serve_connection`]: serve one connection in the configured framing;
//! 8. [`serve`]: the iterative accept loop that survives bad clients and a shortage of
//!    descriptors;
//! 9. [`connect`]: the client's connection, with timeouts;
//! 10. [`exchange`]: send the messages, half-close in raw mode, read the replies (with a cap).

use std::fmt;
use std::io::BufReader; // solution-only
use std::io::{self, BufRead, Read, Write};
use std::net::Shutdown; // solution-only
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::str::FromStr;
use std::thread; // solution-only
use std::time::Duration;
use std::time::Instant; // solution-only

pub use common::accept::{ACCEPT_BACKOFF, is_resource_exhaustion};

/// The server's default port, as in the lecture's Java TCPServer.
pub const DEFAULT_PORT: u16 = 7896;

/// The default cap on a line in [`Framing::Line`], in bytes, not counting the `\n`: 65 536.
pub const DEFAULT_MAX_LINE: usize = 65_536;

/// The largest payload of a frame in [`Framing::Utf`], in bytes: 65 535, the largest number a
/// 2-byte length prefix can hold (and the limit of Java's `writeUTF`).
pub const MAX_FRAME: usize = 65_535;

/// How long the server waits for a silent client before giving up on it: 10 000 ms.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one whole line or frame may take to arrive and its reply to be written, in line and
/// utf framing: 30 000 ms.
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// How many bytes the echo loops read at a time: 16 KiB.
pub const CHUNK: usize = 16 * 1024;

/// The default cap on a raw reply the client accepts, in bytes: 16 MiB (16 777 216). A server
/// that sends more makes [`exchange`] fail rather than fill the client's memory.
pub const DEFAULT_MAX_REPLY: usize = 16 * 1024 * 1024;

// ANCHOR: framing
/// How the bytes of a connection are cut into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No messages: bytes are echoed as they arrive, until the client's EOF.
    Raw,
    /// Messages are lines ending in `\n`; each gets one reply line.
    Line,
    /// Messages are frames: a 2-byte unsigned big-endian length, then that many bytes
    /// (Java's `writeUTF`/`readUTF`); each gets one reply frame.
    Utf,
}
// ANCHOR_END: framing

impl Framing {
    /// What the framing counts, for log lines, in the singular or plural that suits `count`:
    /// `byte(s)`, `line(s)` or `frame(s)`.
    pub fn unit(self, count: u64) -> &'static str {
        match (self, count == 1) {
            (Framing::Raw, true) => "byte",
            (Framing::Raw, false) => "bytes",
            (Framing::Line, true) => "line",
            (Framing::Line, false) => "lines",
            (Framing::Utf, true) => "frame",
            (Framing::Utf, false) => "frames",
        }
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Framing::Raw => "raw",
            Framing::Line => "line",
            Framing::Utf => "utf",
        })
    }
}

impl FromStr for Framing {
    type Err = String;

    /// Parses `raw`, `line` or `utf`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "raw" => Ok(Framing::Raw),
            "line" => Ok(Framing::Line),
            "utf" => Ok(Framing::Utf),
            _ => Err(format!("`{s}` is not a framing (raw, line or utf)")),
        }
    }
}

// ANCHOR: server_config
/// How the server treats its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// How requests are cut into messages.
    pub framing: Framing,
    /// Reply with ASCII letters in uppercase (other bytes unchanged).
    pub uppercase: bool,
    /// The longest line accepted in [`Framing::Line`], in bytes without the `\n`.
    pub max_line: usize,
    /// Read and write timeout of each accepted connection: a client silent for this long is
    /// dropped. `None` waits forever (a stalled client then blocks an iterative server).
    pub idle_timeout: Option<Duration>,
    /// In line and utf framing, the most time one message may take: from the moment the server
    /// starts waiting for a line or frame until its reply is written. A client that trickles a
    /// message (or drains its reply) slower than this is dropped even though no single read or
    /// write waits the idle timeout. Raw framing has no messages and ignores it. `None`: no
    /// limit beyond the idle timeout.
    pub message_timeout: Option<Duration>,
    /// Stop after this many connections (served or failed); `None` serves forever.
    pub max_connections: Option<u64>,
}
// ANCHOR_END: server_config

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            framing: Framing::Raw,
            uppercase: false,
            max_line: DEFAULT_MAX_LINE,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            message_timeout: Some(DEFAULT_MESSAGE_TIMEOUT),
            max_connections: None,
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

/// Whether `e` is what a socket read or write timeout produces: `WouldBlock` on Unix,
/// `TimedOut` on Windows. Given complete.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// The error inside the [`io::Error`] (of kind `TimedOut`) that ends a connection whose
/// message took longer than the message timeout; see [`message_timed_out`]. Given complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageTimeout {
    /// The message timeout that was exceeded.
    pub timeout: Duration,
}

impl fmt::Display for MessageTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a message took longer than the message timeout ({} ms)",
            self.timeout.as_millis()
        )
    }
}

impl std::error::Error for MessageTimeout {}

/// The error for a message that took longer than `timeout`: kind `io::ErrorKind::TimedOut`,
/// holding a [`MessageTimeout`] so that [`message_timeout_of`] (and the log line) can tell it
/// from an idle timeout. Given complete.
pub fn message_timed_out(timeout: Duration) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, MessageTimeout { timeout })
}

/// The message timeout `e` reports, if `e` was made by [`message_timed_out`]. Given complete.
pub fn message_timeout_of(e: &io::Error) -> Option<Duration> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<MessageTimeout>())
        .map(|m| m.timeout)
}

// ANCHOR: listen
/// Step 1. Creates a TCP socket bound to `addr` and listening for connections, and returns it.
///
/// This is `socket`, `bind` and `listen` in one call. Port 0 asks for an ephemeral port, which
/// [`TcpListener::local_addr`] reveals. Once it listens, the operating system completes the
/// handshake with connecting clients on its own and queues the new connections (the
/// **backlog**) until [`TcpListener::accept`] takes them.
///
/// # Errors
/// `io::ErrorKind::AddrInUse` when another socket listens on that address and port;
/// `io::ErrorKind::AddrNotAvailable` when `addr`'s IP is not an address of this host;
/// `io::ErrorKind::PermissionDenied` for ports below 1024 without privilege (Unix).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    // >>> step 1 (addr): create a listening TCP socket on `addr` and return it
    TcpListener::bind(addr)
    // <<<
}
// ANCHOR_END: listen

// ANCHOR: write_fully
/// Step 2. Writes all of `bytes` to `output`, calling [`Write::write`] as often as it takes.
///
/// `write` may accept fewer bytes than it was given (a "short write": on a socket when the
/// send buffer is nearly full, a timeout strikes or a signal arrives) and returns how many it
/// took; the rest must be offered again. This is what [`Write::write_all`] does for you; here
/// you write it once by hand, to know what it hides.
///
/// # Errors
/// `io::ErrorKind::WriteZero` when `write` accepts 0 bytes of a non-empty rest (the stream can
/// take no more, and trying again would loop forever). `io::ErrorKind::Interrupted` is not an
/// error: the call is repeated. Any other error of `write` is returned, for example
/// `BrokenPipe` or `ConnectionReset` when the peer has gone, and `WouldBlock`/`TimedOut` when a
/// socket's write timeout expires; some bytes may have been written by then.
pub fn write_fully(output: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    // >>> step 2 (output, bytes): call write until every byte is taken; retry on Interrupted
    let mut rest = bytes;
    while !rest.is_empty() {
        match output.write(rest) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("the stream took 0 of the last {} bytes", rest.len()),
                ));
            }
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
    // <<<
}
// ANCHOR_END: write_fully

// ANCHOR: echo_raw
/// Step 3. Echoes everything read from `input` to `output` (in ASCII uppercase with
/// `uppercase`, see [`make_reply`]) as it arrives, until `input` reaches its end (a `read`
/// returning 0: the client closed or half-closed its side). Returns the number of bytes echoed.
///
/// Reads up to [`CHUNK`] bytes at a time and writes back at once whatever one read returned,
/// however little, so a client that waits for its echo before sending more is answered. Every
/// chunk is written whole with [`write_fully`].
///
/// # Errors
/// Errors of `read` (`Interrupted` excepted, which is retried) and of [`write_fully`]; on a
/// socket with a read timeout, `WouldBlock`/`TimedOut` when the client stays silent that long.
pub fn echo_raw(input: &mut impl Read, output: &mut impl Write, uppercase: bool) -> io::Result<u64> {
    // >>> step 3 (input, output, uppercase): read a chunk, write its reply whole, until read returns 0
    let mut buf = vec![0u8; CHUNK];
    let mut echoed = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(echoed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        write_fully(output, &make_reply(&buf[..n], uppercase))?;
        echoed += n as u64;
    }
    // <<<
}
// ANCHOR_END: echo_raw

// ANCHOR: read_line
/// Step 4. Reads one line from `input`: the bytes up to a `\n`, returned without it. At most
/// `max_line` bytes (not counting the `\n`) are accepted, and at most `max_line + 1` bytes are
/// taken from `input` looking for the end of the line, so a client that never sends `\n` cannot
/// make the server buffer without bound.
///
/// Returns `Ok(None)` when `input` is at its end before the first byte of a line (the peer has
/// finished: no more lines). A `\r` before the `\n` is part of the line.
///
/// # Errors
/// `io::ErrorKind::InvalidData` when no `\n` comes within `max_line + 1` bytes (the line is too
/// long); `io::ErrorKind::UnexpectedEof` when `input` ends inside a line (bytes, then EOF
/// without `\n`); errors of `read` (for a socket with a read timeout, `WouldBlock`/`TimedOut`).
pub fn read_line(input: &mut impl BufRead, max_line: usize) -> io::Result<Option<Vec<u8>>> {
    // >>> step 4 (input, max_line): read up to max_line + 1 bytes looking for '\n'; too long is InvalidData
    let mut line = Vec::new();
    let limit = u64::try_from(max_line).unwrap_or(u64::MAX).saturating_add(1);
    input.take(limit).read_until(b'\n', &mut line)?;
    if line.last() == Some(&b'\n') {
        line.pop();
        Ok(Some(line))
    } else if line.is_empty() {
        Ok(None)
    } else if line.len() > max_line {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("line longer than {max_line} bytes (no newline within the limit)"),
        ))
    } else {
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the stream ended inside a line ({} bytes without newline)",
                line.len()
            ),
        ))
    }
    // <<<
}
// ANCHOR_END: read_line

// ANCHOR: write_frame
/// Step 5. Writes `payload` to `output` as one frame: its length as a 2-byte unsigned integer
/// in **big-endian** (network) byte order, then the payload's bytes, all with [`write_fully`].
///
/// This is the layout of Java's `DataOutputStream.writeUTF` for ASCII text (Java encodes the
/// string in "modified UTF-8", which differs from UTF-8 only for U+0000 and characters beyond
/// U+FFFF).
///
/// # Errors
/// `io::ErrorKind::InvalidInput`, before anything is written, when `payload` is longer than
/// [`MAX_FRAME`] (65 535) bytes; errors of [`write_fully`].
pub fn write_frame(output: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    // >>> step 5 (output, payload): refuse payloads over MAX_FRAME, write the big-endian length then the bytes
    let Ok(len) = u16::try_from(payload.len()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a frame holds at most {MAX_FRAME} bytes, not {}", payload.len()),
        ));
    };
    let mut frame = Vec::with_capacity(2 + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    write_fully(output, &frame)
    // <<<
}
// ANCHOR_END: write_frame

// ANCHOR: read_frame
/// Step 6. Reads one frame from `input` (see [`write_frame`]) and returns its payload.
///
/// The 2 bytes of the length, and the payload, may arrive in any number of pieces: keep reading
/// until each is complete. Returns `Ok(None)` when `input` is at its end before the first byte
/// of a frame (the peer has finished: no more frames).
///
/// # Errors
/// `io::ErrorKind::UnexpectedEof` when `input` ends inside a frame (after 1 byte of the length,
/// or before the whole payload); errors of `read` (`Interrupted` is retried; for a socket with a
/// read timeout, `WouldBlock`/`TimedOut`).
pub fn read_frame(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    // >>> step 6 (input): read the 2-byte big-endian length (EOF before it: None), then exactly that many bytes
    let mut prefix = [0u8; 2];
    let mut got = 0;
    while got < prefix.len() {
        match input.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a frame's length",
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    let len = usize::from(u16::from_be_bytes(prefix));
    let mut payload = vec![0u8; len];
    input.read_exact(&mut payload).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the stream ended inside a {len}-byte frame"),
            )
        } else {
            e
        }
    })?;
    Ok(Some(payload))
    // <<<
}
// ANCHOR_END: read_frame

// ANCHOR: serve_connection
/// Step 7. Serves one accepted connection until the client's EOF, in `config.framing`, and
/// returns how many bytes (raw), lines or frames were echoed. Dropping `stream` at the end
/// closes the connection.
///
/// Two limits keep one client from holding the (iterative) server forever:
/// - `config.idle_timeout` bounds each single read and write: a client silent that long is
///   dropped;
/// - in line and utf framing, `config.message_timeout` bounds each whole message: the time
///   from the moment the server starts waiting for a line or frame until its reply is written.
///   Before each read and each write, set the socket's timeout to the smaller of the idle
///   timeout and the time left until the message's deadline (an [`std::time::Instant`]); when
///   no time is left, or a read or write times out because the deadline came, fail with
///   [`message_timed_out`]`(message_timeout)`. A small adapter over `&TcpStream` that holds the
///   deadline and implements [`Read`] and [`Write`] lets [`read_line`], [`read_frame`],
///   [`write_fully`] and [`write_frame`] work unchanged. `None` means no such limit.
///
/// Raw framing has no messages, so only the idle timeout applies. Then:
/// - raw ([`Framing::Raw`]): [`echo_raw`];
/// - line ([`Framing::Line`]): for each [`read_line`] (cap `config.max_line`), writes the reply
///   and `\n`;
/// - utf ([`Framing::Utf`]): for each [`read_frame`], writes one reply frame with [`write_frame`].
///
/// Replies are made with [`make_reply`] and `config.uppercase`.
///
/// # Errors
/// Those of the functions above: `InvalidData` for an over-long line, `UnexpectedEof` for a
/// client gone mid-message, `ConnectionReset` for one that reset, `WouldBlock`/`TimedOut` for
/// one silent for longer than the idle timeout, and `TimedOut` holding a [`MessageTimeout`]
/// (see [`message_timed_out`]) for a message that took longer than the message timeout. The
/// connection is closed in every case.
pub fn serve_connection(stream: TcpStream, config: &ServerConfig) -> io::Result<u64> {
    // >>> step 7 (stream, config): bound each read and write by the idle timeout and each message by the message timeout, then echo in the configured framing until EOF
    /// Reads and writes `stream`, each call bounded by the idle timeout and by the time left
    /// until `deadline`, the end of the current message (none in raw framing).
    struct Paced<'a> {
        stream: &'a TcpStream,
        idle: Option<Duration>,
        message: Option<Duration>,
        deadline: Option<Instant>,
    }

    impl Paced<'_> {
        /// The server starts waiting for a new message: its deadline starts now.
        fn start_message(&mut self) {
            self.deadline = self.message.map(|limit| Instant::now() + limit);
        }

        /// The timeout for the next read or write, and whether the deadline (not the idle
        /// timeout) set it; an error once no time is left.
        fn next_timeout(&self) -> io::Result<(Option<Duration>, bool)> {
            match (self.deadline, self.message) {
                (Some(deadline), Some(limit)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(message_timed_out(limit));
                    }
                    match self.idle {
                        Some(idle) if idle <= left => Ok((Some(idle), false)),
                        _ => Ok((Some(left), true)),
                    }
                }
                _ => Ok((self.idle, false)),
            }
        }

        /// A timeout error caused by the deadline becomes the message-timeout error.
        fn explain<T>(&self, result: io::Result<T>, by_deadline: bool) -> io::Result<T> {
            match (result, self.message) {
                (Err(e), Some(limit)) if by_deadline && is_timeout(&e) => Err(message_timed_out(limit)),
                (result, _) => result,
            }
        }
    }

    impl Read for Paced<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let (timeout, by_deadline) = self.next_timeout()?;
            self.stream.set_read_timeout(timeout)?;
            let result = self.stream.read(buf);
            self.explain(result, by_deadline)
        }
    }

    impl Write for Paced<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (timeout, by_deadline) = self.next_timeout()?;
            self.stream.set_write_timeout(timeout)?;
            let result = self.stream.write(buf);
            self.explain(result, by_deadline)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    stream.set_read_timeout(config.idle_timeout)?;
    stream.set_write_timeout(config.idle_timeout)?;
    let message = match config.framing {
        Framing::Raw => None,
        Framing::Line | Framing::Utf => config.message_timeout,
    };
    let paced = Paced {
        stream: &stream,
        idle: config.idle_timeout,
        message,
        deadline: None,
    };
    let mut input = BufReader::new(paced);
    let mut count = 0u64;
    match config.framing {
        Framing::Raw => {
            let mut output = &stream;
            count = echo_raw(&mut input, &mut output, config.uppercase)?;
        }
        Framing::Line => loop {
            input.get_mut().start_message();
            let Some(line) = read_line(&mut input, config.max_line)? else {
                break;
            };
            let mut reply = make_reply(&line, config.uppercase);
            reply.push(b'\n');
            write_fully(input.get_mut(), &reply)?;
            count += 1;
        },
        Framing::Utf => loop {
            input.get_mut().start_message();
            let Some(payload) = read_frame(&mut input)? else {
                break;
            };
            write_frame(input.get_mut(), &make_reply(&payload, config.uppercase))?;
            count += 1;
        },
    }
    Ok(count)
    // <<<
}
// ANCHOR_END: serve_connection

// ANCHOR: event
/// One thing the server did; its [`Display`](fmt::Display) is the server's log line.
#[derive(Debug)]
pub enum Event {
    /// A connection was accepted from `peer` (the client's endpoint).
    Accepted {
        /// The client's IP address and (ephemeral) port.
        peer: SocketAddr,
    },
    /// The client finished (EOF) and the connection was closed after `count` units echoed.
    Closed {
        /// The client.
        peer: SocketAddr,
        /// The framing, which says what `count` counts.
        framing: Framing,
        /// Bytes (raw), lines or frames echoed.
        count: u64,
    },
    /// The connection ended with an error (over-long line, reset, timeout...) and was closed.
    Failed {
        /// The client.
        peer: SocketAddr,
        /// What went wrong.
        error: io::Error,
    },
    /// `accept` failed for one connection (see [`is_per_connection`]); the server goes on.
    AcceptFailed {
        /// What went wrong.
        error: io::Error,
    },
    /// `accept` failed because the process or the system is out of descriptors or memory for
    /// the moment (see [`is_resource_exhaustion`]): the server waits `pause`, then accepts again.
    AcceptBackoff {
        /// What went wrong (`EMFILE`: too many open files, ...).
        error: io::Error,
        /// How long the server waits before it calls `accept` again ([`ACCEPT_BACKOFF`]).
        pause: Duration,
    },
}
// ANCHOR_END: event

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Accepted { peer } => write!(f, "{peer}: connected"),
            Event::Closed { peer, framing, count } => {
                write!(f, "{peer}: closed after echoing {count} {}", framing.unit(*count))
            }
            Event::Failed { peer, error } if message_timeout_of(error).is_some() => {
                write!(f, "{peer}: {error}; connection closed")
            }
            Event::Failed { peer, error } if is_timeout(error) => write!(
                f,
                "{peer}: silent for longer than the idle timeout; connection closed"
            ),
            Event::Failed { peer, error } => write!(f, "{peer}: connection closed after an error: {error}"),
            Event::AcceptFailed { error } => write!(f, "accept failed (still serving): {error}"),
            Event::AcceptBackoff { error, pause } => write!(
                f,
                "accept failed: {error}; backing off {} ms (still serving)",
                pause.as_millis()
            ),
        }
    }
}

/// Whether an error of `accept` concerns one connection only, so the server should log it and
/// go on at once: a connection reset or aborted before it was accepted, or a signal. Given
/// complete. (A shortage of descriptors or memory is another case: see
/// [`is_resource_exhaustion`]; and [`common::accept`] for all the kinds of `accept` errors.)
pub fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    )
}

// ANCHOR: serve
/// Step 8. The iterative server: accepts one connection at a time from `listener`, serves it
/// with [`serve_connection`] until it ends, and only then accepts the next. Reports each step to
/// `log`: [`Event::Accepted`], then [`Event::Closed`] or [`Event::Failed`]. A connection that
/// fails is logged and the loop goes on. So do two kinds of `accept` errors, which are not
/// counted as connections:
/// - one for which [`is_per_connection`] holds: log [`Event::AcceptFailed`] and accept again;
/// - one for which [`is_resource_exhaustion`] holds (`EMFILE`, too many open files, and the
///   like): log [`Event::AcceptBackoff`], sleep [`ACCEPT_BACKOFF`] (without the pause the loop
///   would spin: the waiting connection keeps the listener ready), and accept again. The
///   connection waits in the backlog meanwhile, and is served once a descriptor is free.
///
/// Stops after `config.max_connections` connections (forever when `None`) and returns how many
/// it served.
///
/// # Errors
/// Any other error of `accept` (`EBADF`, `EINVAL`: the listening socket itself is broken) ends
/// the loop and is returned.
pub fn serve(listener: &TcpListener, config: &ServerConfig, log: impl FnMut(&Event)) -> io::Result<u64> {
    // >>> step 8 (listener, config, log): accept, log, serve_connection, log the outcome; repeat; back off when out of descriptors
    let mut log = log;
    let mut served = 0;
    while config.max_connections.is_none_or(|max| served < max) {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(error) if is_per_connection(&error) => {
                log(&Event::AcceptFailed { error });
                continue;
            }
            Err(error) if is_resource_exhaustion(&error) => {
                log(&Event::AcceptBackoff {
                    error,
                    pause: ACCEPT_BACKOFF,
                });
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
            Err(error) => return Err(error),
        };
        served += 1;
        log(&Event::Accepted { peer });
        match serve_connection(stream, config) {
            Ok(count) => log(&Event::Closed {
                peer,
                framing: config.framing,
                count,
            }),
            Err(error) => log(&Event::Failed { peer, error }),
        }
    }
    Ok(served)
    // <<<
}
// ANCHOR_END: serve

// ANCHOR: connect
/// Step 9. Connects to the first of `addrs` that accepts, waiting at most `timeout` for each,
/// and sets `timeout` as the stream's read and write timeout.
///
/// A name such as `localhost` may resolve to several addresses (`::1` and `127.0.0.1`); try
/// them in order. A closed port answers the handshake with a reset, so that attempt fails at
/// once.
///
/// # Errors
/// The error of the last address tried: `io::ErrorKind::ConnectionRefused` when nothing
/// listens there, `TimedOut` when no answer comes within `timeout`, `InvalidInput` when `addrs`
/// is empty or `timeout` is zero.
pub fn connect(addrs: &[SocketAddr], timeout: Duration) -> io::Result<TcpStream> {
    // >>> step 9 (addrs, timeout): connect_timeout to each address in turn; set both timeouts on success
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
    // <<<
}
// ANCHOR_END: connect

// ANCHOR: exchange
/// Step 10. The client's side of a connection: sends `messages` in `framing` and returns the
/// replies.
///
/// - raw ([`Framing::Raw`]): writes the messages' bytes one after the other (there are no message
///   boundaries on a stream), then **half-closes** the connection (`shutdown(Write)`: "I have
///   finished sending"), and reads the echo until EOF. Returns one reply: every byte read, at
///   most `max_reply` bytes of them (the binary's `--max-reply`, [`DEFAULT_MAX_REPLY`] by
///   default). At most `max_reply + 1` bytes are read, so a server that never stops sending
///   cannot make the client buffer without bound.
/// - line ([`Framing::Line`]): for each message, writes it and `\n`, then reads one reply line (cap
///   [`DEFAULT_MAX_LINE`]).
/// - utf ([`Framing::Utf`]): for each message, writes one frame, then reads one reply frame (at
///   most [`MAX_FRAME`] bytes: the 2-byte length is the cap).
///
/// # Errors
/// `io::ErrorKind::InvalidData` when a raw reply is longer than `max_reply` bytes ("the reply
/// exceeded N bytes") or a reply line longer than [`DEFAULT_MAX_LINE`];
/// `io::ErrorKind::UnexpectedEof` when the server closes before a line or frame reply;
/// `WouldBlock`/`TimedOut` when the stream's read timeout expires (the server is silent);
/// errors of the functions above (an over-long message in `utf`: `InvalidInput`).
pub fn exchange(
    stream: &TcpStream,
    framing: Framing,
    messages: &[&[u8]],
    max_reply: usize,
) -> io::Result<Vec<Vec<u8>>> {
    // >>> step 10 (stream, framing, messages, max_reply): raw: send all, shutdown(Write), read to EOF (at most max_reply bytes); else one request, one reply
    let mut input = BufReader::new(stream);
    let mut output = stream;
    let closed_early = || {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection before replying",
        )
    };
    let mut replies = Vec::new();
    match framing {
        Framing::Raw => {
            for message in messages {
                write_fully(&mut output, message)?;
            }
            stream.shutdown(Shutdown::Write)?;
            let mut reply = Vec::new();
            let limit = u64::try_from(max_reply).unwrap_or(u64::MAX).saturating_add(1);
            (&mut input).take(limit).read_to_end(&mut reply)?;
            if reply.len() > max_reply {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the reply exceeded {max_reply} bytes"),
                ));
            }
            replies.push(reply);
        }
        Framing::Line => {
            for message in messages {
                let mut line = message.to_vec();
                line.push(b'\n');
                write_fully(&mut output, &line)?;
                replies.push(read_line(&mut input, DEFAULT_MAX_LINE)?.ok_or_else(closed_early)?);
            }
        }
        Framing::Utf => {
            for message in messages {
                write_frame(&mut output, message)?;
                replies.push(read_frame(&mut input)?.ok_or_else(closed_early)?);
            }
        }
    }
    Ok(replies)
    // <<<
}
// ANCHOR_END: exchange
