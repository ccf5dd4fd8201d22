//! Lab 06: a request-reply protocol over UDP, with at-least-once and at-most-once semantics.
//!
//! A client sends a *request* (an operation and its arguments) in one datagram and waits for the
//! *reply*. Every request carries a *request id*; the client retransmits with the same id until a
//! reply with that id comes back, and it ignores strangers and replies to other ids. The server
//! runs a small counter service. With *at-least-once* semantics it executes every copy of a
//! request it receives. With *at-most-once* semantics it filters duplicates: it keeps the reply of
//! each request in a bounded *history*, keyed by the client's endpoint and the request id, and
//! resends it instead of executing the request again.
//!
//! Wire format (one message per datagram, integers big-endian, see [`Request`] and [`Reply`]):
//!
//! ```text
//! request: type u8 = 0 | request_id u32 | operation u8 | arguments (the rest)
//! reply:   type u8 = 1 | request_id u32 | status u8 (0 ok, 1 error) | result (the rest)
//! ```
//!
//! Sources: the textbook's UDP failure model (omission failures, no ordering; lecture 000) and
//! the request-reply protocol that follows it (request ids, the R, RR and RRA exchanges, the
//! history, invocation semantics). Transport: RFC 768. Linux details: udp(7), socket(7).
//!
//! Steps (see the book's Lab 06 chapter; `cargo test -p lab06-request-reply stepN_` checks step N):
//! 1. [`Request::encode`], [`Reply::encode`] and [`decode`]: the wire format, with length checks;
//! 2. [`await_reply`]: wait for the reply with the right id from the right endpoint;
//! 3. [`Client::do_operation`]: a request id per operation, retransmission with the same id;
//! 4. [`History::lookup`] and [`History::record`]: duplicate filtering;
//! 5. [`History::acknowledge`] and [`History::trim`]: a history bounded in size and age;
//! 6. [`get_request`] and [`send_reply`]: the server's side of the wire;
//! 7. [`Server::serve_one`] and [`Server::serve`]: both semantics, and a loop that survives bad
//!    datagrams.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering; // solution-only
use std::time::{Duration, Instant};

pub mod experiment;

/// The server's default UDP port. The lectures have no port for this protocol; 6790 sits beside
/// Lab 01's 6789.
pub const DEFAULT_PORT: u16 = 6790;

/// The largest UDP payload over IPv4, in bytes: 65 535 − 20 (IPv4 header) − 8 (UDP header).
/// Both sides receive into a buffer this large, so no message of this protocol is truncated.
pub const MAX_DATAGRAM: usize = 65_507;

/// The `type` byte of a request.
pub const REQUEST: u8 = 0;
/// The `type` byte of a reply.
pub const REPLY: u8 = 1;

/// The length in bytes of a request's header (type, request id, operation): 6. Shorter
/// datagrams are not requests.
pub const REQUEST_HEADER: usize = 6;
/// The length in bytes of a reply's header (type, request id, status): 6.
pub const REPLY_HEADER: usize = 6;

/// The counter service's operations (the `operation` byte of a request).
pub mod operation {
    /// `echo ARG`: the result is the argument bytes, unchanged. Idempotent.
    pub const ECHO: u8 = 1;
    /// `get`: the result is the counter's total, as decimal ASCII. Idempotent.
    pub const GET: u8 = 2;
    /// `add N`: adds the decimal ASCII integer N to the total; the result is the new total.
    /// Not idempotent: executing it twice adds twice.
    pub const ADD: u8 = 3;

    /// The name of operation `code` (`echo`, `get`, `add`), or `None` for an unknown code.
    pub fn name(code: u8) -> Option<&'static str> {
        match code {
            ECHO => Some("echo"),
            GET => Some("get"),
            ADD => Some("add"),
            _ => None,
        }
    }
}

// ANCHOR: messages
/// A request: `type` 0, then the fields below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Chosen by the client; the same for every retransmission of one operation, different for
    /// the next operation. Big-endian on the wire.
    pub request_id: u32,
    /// Which operation (see [`operation`]).
    pub operation: u8,
    /// The operation's arguments: every byte after the header, possibly none.
    pub arguments: Vec<u8>,
}

/// Whether the server executed the operation (`0` on the wire) or refused it (`1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The operation ran; the result is its value.
    Ok,
    /// The operation was refused (unknown operation, bad argument); the result says why.
    Error,
}

/// A reply: `type` 1, then the fields below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The id of the request this answers.
    pub request_id: u32,
    /// Executed or refused.
    pub status: Status,
    /// The result (or the reason for an error): every byte after the header.
    pub result: Vec<u8>,
}

/// One decoded datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `type` 0.
    Request(Request),
    /// `type` 1.
    Reply(Reply),
}
// ANCHOR_END: messages

/// Why a datagram is not a message of this protocol. Its `Display` is the log's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its header (an empty datagram has no type byte at all).
    #[error("{len}-byte datagram is too short: a {kind} needs at least {needed} bytes")]
    TooShort {
        /// `"request"`, `"reply"` or, with no type byte, `"message"`.
        kind: &'static str,
        /// The datagram's length in bytes.
        len: usize,
        /// The header's length in bytes.
        needed: usize,
    },
    /// A `type` byte that is neither 0 nor 1.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A reply whose `status` byte is neither 0 nor 1.
    #[error("unknown status {0} in a reply")]
    UnknownStatus(u8),
}

// ANCHOR: encode
impl Request {
    /// Step 1. The request as one datagram's bytes: `0`, `request_id` (4 bytes, big-endian),
    /// `operation`, then the arguments.
    pub fn encode(&self) -> Vec<u8> {
        // >>> step 1 (self): the type byte, the id in network byte order, the operation, the arguments
        let mut bytes = Vec::with_capacity(REQUEST_HEADER + self.arguments.len());
        bytes.push(REQUEST);
        bytes.extend_from_slice(&self.request_id.to_be_bytes());
        bytes.push(self.operation);
        bytes.extend_from_slice(&self.arguments);
        bytes
        // <<<
    }
}

impl Reply {
    /// Step 1. The reply as one datagram's bytes: `1`, `request_id` (4 bytes, big-endian),
    /// `status` (`0` ok, `1` error), then the result.
    pub fn encode(&self) -> Vec<u8> {
        // >>> step 1 (self): the type byte, the id in network byte order, the status, the result
        let mut bytes = Vec::with_capacity(REPLY_HEADER + self.result.len());
        bytes.push(REPLY);
        bytes.extend_from_slice(&self.request_id.to_be_bytes());
        bytes.push(match self.status {
            Status::Ok => 0,
            Status::Error => 1,
        });
        bytes.extend_from_slice(&self.result);
        bytes
        // <<<
    }
}
// ANCHOR_END: encode

// ANCHOR: decode
/// Step 1. Decodes one datagram. Never panics, whatever the bytes: a datagram comes from anyone.
///
/// # Errors
/// [`DecodeError::TooShort`] for a datagram shorter than its header (6 bytes; an empty one has
/// no type), [`DecodeError::UnknownType`] for a type other than 0 and 1, and
/// [`DecodeError::UnknownStatus`] for a reply whose status is neither 0 nor 1.
pub fn decode(datagram: &[u8]) -> Result<Message, DecodeError> {
    // >>> step 1 (datagram): check the length before reading each field; the rest is the body
    let Some((&kind, _)) = datagram.split_first() else {
        return Err(DecodeError::TooShort {
            kind: "message",
            len: 0,
            needed: 1,
        });
    };
    let name = match kind {
        REQUEST => "request",
        REPLY => "reply",
        other => return Err(DecodeError::UnknownType(other)),
    };
    // Both headers are 6 bytes: type, a 4-byte id, one more byte.
    let Some((header, body)) = datagram.split_at_checked(REQUEST_HEADER) else {
        return Err(DecodeError::TooShort {
            kind: name,
            len: datagram.len(),
            needed: REQUEST_HEADER,
        });
    };
    let request_id = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let last = header[5];
    if kind == REQUEST {
        return Ok(Message::Request(Request {
            request_id,
            operation: last,
            arguments: body.to_vec(),
        }));
    }
    let status = match last {
        0 => Status::Ok,
        1 => Status::Error,
        other => return Err(DecodeError::UnknownStatus(other)),
    };
    Ok(Message::Reply(Reply {
        request_id,
        status,
        result: body.to_vec(),
    }))
    // <<<
}
// ANCHOR_END: decode

/// Whether `e` is a receive timeout: `WouldBlock` on Unix, `TimedOut` on Windows. Given complete.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

// ANCHOR: await_reply
/// Step 2. Waits up to `timeout` in all for the reply to request `request_id` from `server`, on
/// `socket` (which has sent the request already).
///
/// Everything else that arrives is ignored and the wait goes on for what is left of `timeout`:
/// datagrams from other endpoints, datagrams that do not decode, requests, and replies to other
/// request ids (a late reply to an earlier request, or a duplicate of one, is not this
/// request's reply).
///
/// Returns `Ok(Some(reply))`, or `Ok(None)` when `timeout` passes first.
///
/// # Errors
/// Errors of `recv_from` other than the timeout itself and `Interrupted` (a signal; the wait
/// goes on). On Windows an ICMP "port unreachable" for the request can surface as
/// `ConnectionReset`; it is returned.
pub fn await_reply(
    socket: &UdpSocket,
    server: SocketAddr,
    request_id: u32,
    timeout: Duration,
) -> io::Result<Option<Reply>> {
    // >>> step 2 (socket, server, request_id, timeout): one deadline; ignore strangers, junk and other ids
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        socket.set_read_timeout(Some(left))?;
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        if from != server {
            continue; // a stranger
        }
        match decode(&buf[..len]) {
            Ok(Message::Reply(reply)) if reply.request_id == request_id => return Ok(Some(reply)),
            _ => continue, // junk, a request, or the reply to another request
        }
    }
    // <<<
}
// ANCHOR_END: await_reply

/// How a client retransmits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// How long each attempt waits for the reply.
    pub timeout: Duration,
    /// How many times a request is sent again after a timeout (so `retries + 1` attempts).
    pub retries: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_millis(500),
            retries: 10,
        }
    }
}

/// What one operation took: the reply, and how many times the request was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The server's reply (its `request_id` is the request's).
    pub reply: Reply,
    /// How many times the request went out: 1 when the first attempt got its reply.
    pub attempts: u32,
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// Every attempt timed out.
    #[error(
        "no reply from {server} to request {request_id} after {attempts} attempts ({} ms timeout each)",
        timeout.as_millis()
    )]
    NoReply {
        /// The server asked.
        server: SocketAddr,
        /// The request's id.
        request_id: u32,
        /// How many times the request was sent.
        attempts: u32,
        /// The timeout of each attempt.
        timeout: Duration,
    },
    /// A socket error while sending or receiving.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A client of one server: one socket, on an ephemeral port, for all its operations, and the id
/// its next request gets.
#[derive(Debug)]
pub struct Client {
    socket: UdpSocket,
    server: SocketAddr,
    next_id: u32,
    options: ClientOptions,
}

/// The unspecified address of `server`'s family with port 0 (`0.0.0.0:0` or `[::]:0`): where a
/// client binds to get an ephemeral port that can reach `server`. Given complete.
pub fn ephemeral_for(server: SocketAddr) -> SocketAddr {
    match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

impl Client {
    /// A client of `server` whose first request id is random. Given complete.
    ///
    /// The id is random so that ids do not repeat across runs: behind a relay every client
    /// shares the relay's endpoint, and a server with a history would take a new run's request
    /// for a duplicate of an old run's if both started at 0.
    ///
    /// # Errors
    /// Those of binding an ephemeral port and setting its write timeout.
    pub fn new(server: SocketAddr, options: ClientOptions) -> io::Result<Client> {
        Client::with_first_id(server, options, fastrand::u32(..))
    }

    /// A client of `server` whose first request gets id `first_id` (then `first_id + 1`, and so
    /// on, wrapping after `u32::MAX`). Given complete.
    ///
    /// # Errors
    /// Those of binding an ephemeral port and setting its write timeout.
    pub fn with_first_id(server: SocketAddr, options: ClientOptions, first_id: u32) -> io::Result<Client> {
        let socket = UdpSocket::bind(ephemeral_for(server))?;
        socket.set_write_timeout(Some(options.timeout))?;
        Ok(Client {
            socket,
            server,
            next_id: first_id,
            options,
        })
    }

    /// The client's own endpoint (its ephemeral port). Given complete.
    ///
    /// # Errors
    /// Those of `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The id the next operation's request gets. Given complete.
    pub fn next_id(&self) -> u32 {
        self.next_id
    }

    /// The server this client asks. Given complete.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The client's timeout and retries. Given complete.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    // ANCHOR: do_operation
    /// Step 3. Performs one operation: sends a request with the next request id and waits for
    /// its reply ([`await_reply`], `options.timeout` per attempt), sending the same request
    /// (same id) again after each timeout, up to `options.retries` more times.
    ///
    /// Each operation gets a new id (the next one, wrapping after `u32::MAX`), whether it
    /// succeeds or not; every copy of one operation's request carries the same id, so that the
    /// server can tell a retransmission from a new operation.
    ///
    /// # Errors
    /// [`OperationError::NoReply`] after `retries + 1` attempts without a reply;
    /// [`OperationError::Io`] for socket errors.
    pub fn do_operation(&mut self, operation: u8, arguments: &[u8]) -> Result<Outcome, OperationError> {
        // >>> step 3 (self, operation, arguments): take the next id, then send and wait, retries + 1 times
        let request_id = self.next_id;
        self.next_id = request_id.wrapping_add(1);
        let datagram = Request {
            request_id,
            operation,
            arguments: arguments.to_vec(),
        }
        .encode();
        let attempts = self.options.retries + 1;
        for attempt in 1..=attempts {
            self.socket.send_to(&datagram, self.server)?;
            if let Some(reply) = await_reply(&self.socket, self.server, request_id, self.options.timeout)? {
                return Ok(Outcome {
                    reply,
                    attempts: attempt,
                });
            }
        }
        Err(OperationError::NoReply {
            server: self.server,
            request_id,
            attempts,
            timeout: self.options.timeout,
        })
        // <<<
    }
    // ANCHOR_END: do_operation
}

/// What the history knows of a request, by its client's endpoint and request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen<'a> {
    /// Not in the history: a new request, to execute.
    New,
    /// Executed already; this is its reply, to send again.
    Replied(&'a Reply),
    /// Executed, and its reply acknowledged by a later request of the same client (so the
    /// reply is gone): a stale duplicate, to drop.
    Acknowledged,
}

/// One request the server has executed.
#[derive(Debug, Clone)]
struct Entry {
    /// Its reply, until the client acknowledges it.
    reply: Option<Reply>,
    /// When the reply was recorded.
    recorded: Instant,
}

// ANCHOR: history
/// The at-most-once server's memory of the requests it has executed, keyed by the client's
/// endpoint and the request id, bounded in size (`capacity` entries) and age (`ttl`).
///
/// An entry keeps its reply until the client *acknowledges* it: a client sends its next request
/// only once it has the reply to the last, so a new request id from a client tells the server
/// that the client's earlier replies arrived (the RRA exchange, with the next request as the
/// acknowledgement). The entry stays, without its reply, so that a stale duplicate of that
/// request is recognised and dropped rather than executed again.
#[derive(Debug, Clone)]
pub struct History {
    capacity: usize,
    ttl: Duration,
    /// Every entry, by (client endpoint, request id).
    entries: HashMap<(SocketAddr, u32), Entry>,
    /// The same keys, oldest first: what [`History::trim`] forgets first.
    order: VecDeque<(SocketAddr, u32)>,
    /// Each client's latest request id, whose reply it has not acknowledged yet.
    latest: HashMap<SocketAddr, u32>,
}
// ANCHOR_END: history

impl History {
    /// An empty history of at most `capacity` entries (at least 1), each forgotten `ttl` after
    /// it was recorded. Given complete.
    pub fn new(capacity: usize, ttl: Duration) -> History {
        History {
            capacity: capacity.max(1),
            ttl,
            entries: HashMap::new(),
            order: VecDeque::new(),
            latest: HashMap::new(),
        }
    }

    /// How many entries the history holds, with or without their replies. Given complete.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the history is empty. Given complete.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many entries still keep their reply (not acknowledged yet). Given complete.
    pub fn replies_kept(&self) -> usize {
        self.entries.values().filter(|e| e.reply.is_some()).count()
    }

    /// The size bound, in entries. Given complete.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The age bound. Given complete.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The oldest entry's key (client endpoint, request id) and when it was recorded: the
    /// entry [`History::trim`] forgets first. Given complete.
    pub fn oldest(&self) -> Option<(SocketAddr, u32, Instant)> {
        let &key = self.order.front()?;
        let entry = self.entries.get(&key)?;
        Some((key.0, key.1, entry.recorded))
    }

    /// How many clients have a latest request id on record (at most one per client with an
    /// entry). Given complete.
    pub fn clients_tracked(&self) -> usize {
        self.latest.len()
    }

    // ANCHOR: lookup
    /// Step 4. What the history knows of request `request_id` from `client`.
    pub fn lookup(&self, client: SocketAddr, request_id: u32) -> Seen<'_> {
        // >>> step 4 (self, client, request_id): find the entry by endpoint and id; no entry means new
        match self.entries.get(&(client, request_id)) {
            None => Seen::New,
            Some(Entry {
                reply: Some(reply), ..
            }) => Seen::Replied(reply),
            Some(Entry { reply: None, .. }) => Seen::Acknowledged,
        }
        // <<<
    }

    /// Step 4. Records the `reply` to request `request_id` from `client`, executed at `now`, as
    /// the newest entry. Recording a key that is already there replaces its reply and keeps its
    /// place.
    pub fn record(&mut self, client: SocketAddr, request_id: u32, reply: Reply, now: Instant) {
        // >>> step 4 (self, client, request_id, reply, now): insert the entry and remember its place in the order
        let entry = Entry {
            reply: Some(reply),
            recorded: now,
        };
        if self.entries.insert((client, request_id), entry).is_none() {
            self.order.push_back((client, request_id));
        }
        // <<<
    }
    // ANCHOR_END: lookup

    // ANCHOR: trim
    /// Step 5. A new request `request_id` has come from `client`: its earlier request's reply is
    /// acknowledged, so the history drops that reply (the entry stays, as
    /// [`Seen::Acknowledged`]). Other clients' entries are not touched.
    pub fn acknowledge(&mut self, client: SocketAddr, request_id: u32) {
        // >>> step 5 (self, client, request_id): the client's previous id is acknowledged: drop its reply
        let Some(previous) = self.latest.insert(client, request_id) else {
            return; // the client's first request in the history
        };
        if previous != request_id
            && let Some(entry) = self.entries.get_mut(&(client, previous))
        {
            entry.reply = None;
        }
        // <<<
    }

    /// Step 5. Forgets the entries recorded more than `ttl` before `now`, then the oldest ones
    /// until at most `capacity` are left.
    pub fn trim(&mut self, now: Instant) {
        // >>> step 5 (self, now): pop the oldest while too old, then while too many
        while let Some(&key) = self.order.front() {
            let expired = self
                .entries
                .get(&key)
                .is_none_or(|e| now.saturating_duration_since(e.recorded) > self.ttl);
            if !expired && self.entries.len() <= self.capacity {
                break;
            }
            self.order.pop_front();
            self.entries.remove(&key);
            // The client's acknowledgement marker goes with its entry, or it would grow forever.
            if self.latest.get(&key.0) == Some(&key.1) {
                self.latest.remove(&key.0);
            }
        }
        // <<<
    }
    // ANCHOR_END: trim
}

/// What a server does with duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Semantics {
    /// Execute every request that arrives, duplicates included; only right for idempotent
    /// operations.
    #[default]
    AtLeastOnce,
    /// Execute each request once: resend a duplicate's reply from the history.
    AtMostOnce,
}

/// How the server behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// At-least-once or at-most-once.
    pub semantics: Semantics,
    /// The history's size bound, in entries (at-most-once only).
    pub history_size: usize,
    /// How long the history keeps an entry (at-most-once only).
    pub history_ttl: Duration,
    /// How long each execution takes, on purpose, so that retransmissions arrive meanwhile.
    pub delay: Duration,
    /// Stop after this many datagrams (requests, duplicates and dropped ones); `None` serves
    /// forever.
    pub max_requests: Option<u64>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            semantics: Semantics::AtLeastOnce,
            history_size: 1024,
            history_ttl: Duration::from_millis(60_000),
            delay: Duration::ZERO,
            max_requests: None,
        }
    }
}

/// How many times the server executed each operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Executions {
    /// `echo` executions.
    pub echo: u64,
    /// `get` executions.
    pub get: u64,
    /// `add` executions (refused ones not counted).
    pub add: u64,
    /// Requests refused with an error reply (unknown operation, bad argument).
    pub refused: u64,
}

impl fmt::Display for Executions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "echo {}, get {}, add {}, refused {}",
            self.echo, self.get, self.add, self.refused
        )
    }
}

/// The counter service behind the server: a total, changed by `add`. Given complete.
#[derive(Debug, Clone, Default)]
pub struct Counter {
    total: i64,
    delay: Duration,
    executions: Executions,
}

impl Counter {
    /// A counter at 0 whose every execution takes `delay`.
    pub fn new(delay: Duration) -> Counter {
        Counter {
            delay,
            ..Counter::default()
        }
    }

    /// The total.
    pub fn total(&self) -> i64 {
        self.total
    }

    /// How many times each operation was executed.
    pub fn executions(&self) -> Executions {
        self.executions
    }

    /// Executes `request` (after the configured delay) and returns its reply: `Status::Ok` with
    /// the result, or `Status::Error` with the reason for an unknown operation, an `add` whose
    /// argument is not a decimal integer (ASCII, optional sign), or a total that would overflow
    /// an `i64`.
    pub fn execute(&mut self, request: &Request) -> Reply {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        let answer = |status, result: Vec<u8>| Reply {
            request_id: request.request_id,
            status,
            result,
        };
        let refuse = |counter: &mut Counter, why: String| {
            counter.executions.refused += 1;
            answer(Status::Error, why.into_bytes())
        };
        match request.operation {
            operation::ECHO => {
                self.executions.echo += 1;
                answer(Status::Ok, request.arguments.clone())
            }
            operation::GET => {
                self.executions.get += 1;
                answer(Status::Ok, self.total.to_string().into_bytes())
            }
            operation::ADD => {
                let Some(n) = std::str::from_utf8(&request.arguments)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                else {
                    let arg = String::from_utf8_lossy(&request.arguments);
                    return refuse(self, format!("add needs a decimal integer, not {arg:?}"));
                };
                let Some(total) = self.total.checked_add(n) else {
                    return refuse(self, format!("adding {n} to {} would overflow", self.total));
                };
                self.total = total;
                self.executions.add += 1;
                answer(Status::Ok, total.to_string().into_bytes())
            }
            other => refuse(self, format!("unknown operation {other}")),
        }
    }
}

/// What [`get_request`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A request, and the endpoint it came from (where the reply goes).
    Request {
        /// The client's endpoint.
        from: SocketAddr,
        /// The decoded request.
        request: Request,
    },
    /// A datagram that is not a request: too short, an unknown type, or a reply (which a
    /// server never answers, so that two servers cannot keep each other busy for ever).
    Malformed {
        /// The sender.
        from: SocketAddr,
        /// The datagram's length in bytes.
        len: usize,
        /// Why it is dropped, for the log.
        why: String,
    },
}

// ANCHOR: get_request
/// Step 6. Receives one datagram on `socket` from any client and decodes it. Never panics on
/// bad bytes: they come back as [`Incoming::Malformed`].
///
/// # Errors
/// Those of `recv_from`, unchanged: `WouldBlock`/`TimedOut` at the socket's read timeout,
/// `Interrupted` on a signal, and on Windows `ConnectionReset` for an ICMP "port unreachable"
/// caused by an earlier reply.
pub fn get_request(socket: &UdpSocket) -> io::Result<Incoming> {
    // >>> step 6 (socket): receive from anyone, decode, and keep only requests
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let (len, from) = socket.recv_from(&mut buf)?;
    Ok(match decode(&buf[..len]) {
        Ok(Message::Request(request)) => Incoming::Request { from, request },
        Ok(Message::Reply(reply)) => Incoming::Malformed {
            from,
            len,
            why: format!("a reply (to request {}) is never answered", reply.request_id),
        },
        Err(e) => Incoming::Malformed {
            from,
            len,
            why: e.to_string(),
        },
    })
    // <<<
}

/// Step 6. Sends `reply` to the client at `to`, as one datagram.
///
/// # Errors
/// Those of `send_to` (`WouldBlock`/`TimedOut` when the write timeout expires).
pub fn send_reply(socket: &UdpSocket, to: SocketAddr, reply: &Reply) -> io::Result<()> {
    // >>> step 6 (socket, to, reply): encode and send to the client
    socket.send_to(&reply.encode(), to)?;
    Ok(())
    // <<<
}
// ANCHOR_END: get_request

/// What the server did with one datagram; its `Display` is the server's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// Executed a request and sent its reply.
    Executed {
        /// The client.
        from: SocketAddr,
        /// The request.
        request: Request,
        /// The reply sent.
        reply: Reply,
    },
    /// A duplicate of a request executed earlier: its reply, from the history, sent again.
    Resent {
        /// The client.
        from: SocketAddr,
        /// The request's id.
        request_id: u32,
    },
    /// A duplicate of a request whose reply the client has acknowledged: dropped.
    Stale {
        /// The client.
        from: SocketAddr,
        /// The request's id.
        request_id: u32,
    },
    /// A datagram that is not a request: dropped without a reply.
    Dropped {
        /// The sender.
        from: SocketAddr,
        /// Its length in bytes.
        len: usize,
        /// Why.
        why: String,
    },
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Served::Executed { from, request, reply } => {
                let op = operation::name(request.operation)
                    .map_or_else(|| format!("operation {}", request.operation), str::to_owned);
                let status = match reply.status {
                    Status::Ok => "ok",
                    Status::Error => "error",
                };
                write!(
                    f,
                    "{from}: request {} ({op} {:?}) executed: {status} {:?}",
                    request.request_id,
                    String::from_utf8_lossy(&request.arguments),
                    String::from_utf8_lossy(&reply.result)
                )
            }
            Served::Resent { from, request_id } => {
                write!(
                    f,
                    "{from}: request {request_id} again: duplicate, reply resent from the history"
                )
            }
            Served::Stale { from, request_id } => write!(
                f,
                "{from}: request {request_id} again: duplicate of an acknowledged request, dropped"
            ),
            Served::Dropped { from, len, why } => {
                write!(f, "{from}: {len}-byte datagram dropped, no reply: {why}")
            }
        }
    }
}

/// The server's read timeout, in milliseconds: how often [`Server::serve`] looks at its stop
/// flag when no datagram comes (100 ms).
pub const TICK: Duration = Duration::from_millis(100);

/// A request-reply server: its socket, the counter service and (at-most-once) the history.
#[derive(Debug)]
pub struct Server {
    socket: UdpSocket,
    config: ServerConfig,
    service: Counter,
    history: History,
}

impl Server {
    /// A server on `socket` (already bound); sets its read timeout to [`TICK`] and its write
    /// timeout to 1000 ms. Given complete.
    ///
    /// # Errors
    /// Those of setting the timeouts.
    pub fn new(socket: UdpSocket, config: ServerConfig) -> io::Result<Server> {
        socket.set_read_timeout(Some(TICK))?;
        socket.set_write_timeout(Some(Duration::from_millis(1000)))?;
        Ok(Server {
            service: Counter::new(config.delay),
            history: History::new(config.history_size, config.history_ttl),
            socket,
            config,
        })
    }

    /// The server's endpoint. Given complete.
    ///
    /// # Errors
    /// Those of `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// How the server was configured. Given complete.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The history (empty with at-least-once semantics). Given complete.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The counter service. Given complete.
    pub fn service(&self) -> &Counter {
        &self.service
    }

    // ANCHOR: serve_one
    /// Step 7. Serves one datagram ([`get_request`]): drops what is not a request; executes a
    /// request with the counter service and sends the reply ([`send_reply`]).
    ///
    /// With [`Semantics::AtMostOnce`] a request goes through the history first: expired entries
    /// are forgotten ([`History::trim`]); a duplicate gets its recorded reply again, a stale
    /// duplicate nothing; a new request acknowledges the client's earlier reply, is executed,
    /// and its reply is recorded *before* it is sent (then the history is trimmed to its size).
    ///
    /// # Errors
    /// Those of [`get_request`] and [`send_reply`].
    pub fn serve_one(&mut self) -> io::Result<Served> {
        // >>> step 7 (self): drop junk; at-least-once executes every copy, at-most-once asks the history first
        let (from, request) = match get_request(&self.socket)? {
            Incoming::Request { from, request } => (from, request),
            Incoming::Malformed { from, len, why } => return Ok(Served::Dropped { from, len, why }),
        };
        let request_id = request.request_id;
        if self.config.semantics == Semantics::AtMostOnce {
            self.history.trim(Instant::now());
            match self.history.lookup(from, request_id) {
                Seen::Replied(reply) => {
                    send_reply(&self.socket, from, reply)?;
                    return Ok(Served::Resent { from, request_id });
                }
                Seen::Acknowledged => return Ok(Served::Stale { from, request_id }),
                Seen::New => self.history.acknowledge(from, request_id),
            }
        }
        let reply = self.service.execute(&request);
        if self.config.semantics == Semantics::AtMostOnce {
            let now = Instant::now();
            self.history.record(from, request_id, reply.clone(), now);
            self.history.trim(now);
        }
        send_reply(&self.socket, from, &reply)?;
        Ok(Served::Executed { from, request, reply })
        // <<<
    }

    /// Step 7. The server loop: [`Server::serve_one`] until `config.max_requests` datagrams have
    /// been served (forever when `None`) or `stop` is set, passing each outcome to `log`.
    ///
    /// The socket's read timeout ([`TICK`]) and `Interrupted` (a signal, which may have set
    /// `stop`) are not errors here: they are when the loop looks at `stop`. A per-datagram
    /// error (`ConnectionReset` or `ConnectionRefused`: an earlier reply's ICMP "port
    /// unreachable", reported on Windows) is logged and the loop goes on; it does not count as
    /// a datagram served.
    ///
    /// Returns the number of datagrams served.
    ///
    /// # Errors
    /// Any other error of [`Server::serve_one`] ends the loop and is returned.
    pub fn serve(
        &mut self,
        stop: &AtomicBool,
        log: impl FnMut(Result<&Served, &io::Error>),
    ) -> io::Result<u64> {
        // >>> step 7 (self, stop, log): loop until the limit or the stop flag; a timeout is a tick
        let mut log = log;
        let mut served = 0;
        while self.config.max_requests.is_none_or(|max| served < max) && !stop.load(Ordering::Relaxed) {
            match self.serve_one() {
                Ok(outcome) => {
                    served += 1;
                    log(Ok(&outcome));
                }
                // A tick, or a signal (SIGINT/SIGTERM set `stop`): look at the stop flag.
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
                    ) =>
                {
                    log(Err(&e));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(served)
        // <<<
    }
    // ANCHOR_END: serve_one
}
