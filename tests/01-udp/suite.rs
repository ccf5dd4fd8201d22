//! Lab 01 grading suite: UDP datagrams.
//!
//! Shared by `lab01-udp` (the student's work) and `solution01-udp` (the reference): each
//! package's `tests/grade.rs` defines `lab` (its library) and `BIN` (its binary) and includes this
//! file. Tests are named `stepN_...` after the step of the book chapter they check, so
//! `cargo test -p lab01-udp step3_` runs the checks of step 3.
//!
//! Every test binds port 0 on loopback, sets timeouts on every socket, and fails within seconds
//! when the code under test panics (a `todo!()`) or hangs: calls into the student's code run on
//! a thread of their own with a bound ([`Running`]), and a reply that should come at once is
//! awaited for at most [`REPLY_WAIT`], or [`GRACE`] after the server says it has sent it.
//!
//! A failure is a transcript ([`Transcript`]): the numbered steps the test took, what it
//! expected, what it got (payloads as escaped text with their length), why that is a mistake,
//! and the section of the chapter that explains it. The tests of the bug zoo
//! (`tests/01-udp/mutants/`, `cargo lab dev mutants --lab 1`) hold the suite to that.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::relay::{Faults, UdpRelay};
use common::testing::{
    LOCALHOST_V6, ServerProcess, ServerThread, Transcript, ipv6_loopback_available, is_timeout, notice,
    panic_message, run_within, sized, udp_socket, udp_socket_on,
};

use crate::{BIN, lab};

/// How long a test lets a client binary run before killing it.
const CLIENT_RUN_LIMIT: Duration = Duration::from_secs(5);
/// The longest a library call may take before the test calls it hung, where its own timeout
/// gives no tighter bound: 4000 ms.
const CALL_LIMIT: Duration = Duration::from_secs(4);
/// Extra time allowed over a computed timeout budget, for slow, busy machines: 2000 ms.
const SLACK: Duration = Duration::from_millis(2000);
/// How long past its own timeout budget a call into the student's code may still be running
/// before the test calls it hung: 750 ms (a returning thread is scheduled within
/// milliseconds, even on a busy machine; a hung one would wait for ever).
const HANG_SLACK: Duration = Duration::from_millis(750);
/// How long a test waits for a reply that should come at once (loopback answers in
/// microseconds): 3000 ms.
const REPLY_WAIT: Duration = Duration::from_secs(3);
/// Once the server says it has replied, how much longer the test waits for the reply before it
/// concludes that the reply went elsewhere: 250 ms. (On loopback a datagram is in the
/// receiver's queue by the time `send_to` returns.)
const GRACE: Duration = Duration::from_millis(250);
/// How often waiting loops look again: 20 ms.
const POLL: Duration = Duration::from_millis(20);

// The chapter's sections that failures cite.
const PORTS: &str = "Lab 01 § Ports and binding";
const MESSAGE_SIZE: &str = "Lab 01 § Message size";
const TIMEOUTS: &str = "Lab 01 § Timeouts";
const RECEIVE_FROM_ANY: &str = "Lab 01 § Receive from any";
const FAILURE_MODEL: &str = "Lab 01 § Failure model";
const THE_PROTOCOL: &str = "Lab 01 § The protocol and the programs";
const THE_COMMAND_LINE: &str = "Lab 01 § The command line";
const STEP3: &str = "Lab 01 § Step 3: Reply to the sender";
const STEP4: &str = "Lab 01 § Step 4: The server loop";
const STEP5: &str = "Lab 01 § Step 5: One attempt, with a deadline and a sender check";
const STEP6: &str = "Lab 01 § Step 6: Retransmit, then give up";

fn addr_of(socket: &UdpSocket) -> SocketAddr {
    socket.local_addr().expect("a bound socket has a local address")
}

/// `127.0.0.1:0`: any free ephemeral port on IPv4 loopback.
fn loopback_any_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// Sends `bytes` from the test's `socket` to `to`, recording it as sent by `who`.
fn send(t: &Transcript, socket: &UdpSocket, bytes: &[u8], who: &str, to: SocketAddr, whom: &str) {
    socket
        .send_to(bytes, to)
        .unwrap_or_else(|e| panic!("test set-up: {who} cannot send to {to}: {e}"));
    t.sent(
        bytes,
        format_args!("{who} {}", addr_of(socket)),
        format_args!("{whom} {to}"),
    );
}

/// `bytes` followed by a few bytes that are not UTF-8, so payloads are checked byte for byte.
fn with_non_utf8(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.extend_from_slice(b" \xff\xfe\x00\xc3(");
    bytes
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An `io::Result` as a failure message shows it.
fn shown<T: std::fmt::Debug>(result: &io::Result<T>) -> String {
    match result {
        Ok(value) => format!("Ok({value:?})"),
        Err(e) => format!("Err({:?}: {e})", e.kind()),
    }
}

/// Payload checks that recognise the commonest way a payload goes wrong.
trait PayloadCheck {
    /// [`Transcript::check_bytes`], but a payload that arrived padded with zero bytes (the rest of
    /// a receive buffer) is called that, whatever test it turns up in.
    fn check_payload(&self, what: &str, expected: &[u8], got: &[u8], why: impl std::fmt::Display);
}

impl PayloadCheck for Transcript {
    fn check_payload(&self, what: &str, expected: &[u8], got: &[u8], why: impl std::fmt::Display) {
        let padded = got.len() > expected.len()
            && got.starts_with(expected)
            && got[expected.len()..].iter().all(|&b| b == 0);
        if padded {
            self.check_bytes(
                what,
                expected,
                got,
                format_args!(
                    "{} too many, all zero: that is the whole buffer, not the datagram. Keep only \
                     the bytes recv_from says it received (step 2's recv_datagram: Vec::truncate \
                     to its length)",
                    common::testing::count(got.len() - expected.len())
                ),
            );
        }
        self.check_bytes(what, expected, got, why);
    }
}

/// What `recv_datagram` returned, payloads as escaped text.
fn shown_received(result: &io::Result<lab::Received>) -> String {
    match result {
        Ok(lab::Received::Datagram { from, payload }) => {
            format!("Ok(Datagram {{ from: {from}, payload: {} }})", sized(payload))
        }
        other => shown(other),
    }
}

/// What `attempt` returned, the reply as escaped text.
fn shown_attempt(result: &io::Result<Option<Vec<u8>>>) -> String {
    match result {
        Ok(Some(reply)) => format!("Ok(Some({}))", sized(reply)),
        other => shown(other),
    }
}

/// A call into the student's code running in a thread of the test, with a flag set when it has
/// returned, so a test can wait for it with a bound of its own and explain a hang.
struct Running<T> {
    thread: ServerThread<T>,
    done: Arc<AtomicBool>,
}

impl<T: Send + 'static> Running<T> {
    fn spawn(name: &str, f: impl FnOnce() -> T + Send + 'static) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let thread = ServerThread::spawn(name, move || {
            let value = f();
            flag.store(true, Ordering::SeqCst);
            value
        });
        Running { thread, done }
    }

    /// Whether it has returned; fails the test at once, with the panic's message, if it
    /// panicked (a skeleton's `todo!()`).
    fn returned(&mut self) -> bool {
        self.thread.check();
        self.done.load(Ordering::SeqCst)
    }

    /// Its result, waiting up to `limit`; `None` when it is still running (it is left behind).
    fn finish(mut self, limit: Duration) -> Option<T> {
        let deadline = Instant::now() + limit;
        while !self.returned() {
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL);
        }
        Some(self.thread.join_within(SLACK))
    }
}

/// Runs `f` (a call into the student's code that may block) and waits up to `limit` for its
/// result; `None` if it is still running then.
fn call_within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    Running::spawn(what, f).finish(limit)
}

/// Waits for one datagram on the test's `socket`: at most [`REPLY_WAIT`], and at most [`GRACE`]
/// after `sent()` first returns true (the server says it has sent its reply, or has returned).
/// `sent` may fail the test itself (a server thread that panicked). Records what arrived, or
/// that nothing did; on silence returns how long the test waited.
fn await_datagram(
    t: &Transcript,
    socket: &UdpSocket,
    mut sent: impl FnMut() -> bool,
) -> Result<(Vec<u8>, SocketAddr), Duration> {
    let started = Instant::now();
    let mut claimed: Option<Instant> = None;
    let restore = socket.read_timeout().ok().flatten();
    socket
        .set_read_timeout(Some(POLL))
        .expect("test set-up: set a read timeout");
    let mut buf = vec![0u8; 65_536];
    let result = loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => break Ok((buf[..n].to_vec(), from)),
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            // An ICMP error from an earlier datagram; nothing arrived.
            Err(_) => {}
        }
        let now = Instant::now();
        if claimed.is_none() && sent() {
            claimed = Some(now);
        }
        if claimed.is_some_and(|at| now - at >= GRACE) || now - started >= REPLY_WAIT {
            break Err(now - started);
        }
    };
    let _ = socket.set_read_timeout(restore);
    match &result {
        Ok((bytes, from)) => t.step(format_args!(
            "received {} from {from} at {}",
            sized(bytes),
            addr_of(socket)
        )),
        Err(waited) => t.step(format_args!(
            "waited {} ms: nothing arrived at {}",
            waited.as_millis(),
            addr_of(socket)
        )),
    }
    result
}

/// Watches `socket` for `wait` to make sure nothing arrives; records the outcome.
fn quiet_for(t: &Transcript, socket: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let restore = socket.read_timeout().ok().flatten();
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65_536];
    let mut got = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        socket
            .set_read_timeout(Some(left))
            .expect("test set-up: set a read timeout");
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                got = Some((buf[..n].to_vec(), from));
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = socket.set_read_timeout(restore);
    match &got {
        Some((bytes, from)) => t.step(format_args!(
            "received {} from {from} at {}",
            sized(bytes),
            addr_of(socket)
        )),
        None => t.step(format_args!(
            "waited {} ms: nothing arrived at {}",
            wait.as_millis(),
            addr_of(socket)
        )),
    }
    got
}

/// A test-side echo server (not the student's code): echoes up to `count` requests and returns
/// what it received, with the senders. It gives up quietly after 5 s without a request.
fn echo_thread(socket: UdpSocket, count: usize) -> ServerThread<Vec<(Vec<u8>, SocketAddr)>> {
    ServerThread::spawn("the test's echo server", move || {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        while got.len() < count {
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let _ = socket.send_to(&buf[..n], from);
                    got.push((buf[..n].to_vec(), from));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        got
    })
}

/// Receives one datagram on a test-side socket within its timeout; `None` if none came.
fn test_recv(socket: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 65_536];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => return Some((buf[..n].to_vec(), from)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// Every datagram waiting on a test-side socket (it gives up after `quiet` without one).
fn drain(socket: &UdpSocket, quiet: Duration) -> Vec<(Vec<u8>, SocketAddr)> {
    socket
        .set_read_timeout(Some(quiet))
        .expect("test set-up: set a read timeout");
    let mut got = Vec::new();
    while let Some(d) = test_recv(socket) {
        got.push(d);
    }
    got
}

fn config(buffer: usize, uppercase: bool) -> lab::ServerConfig {
    lab::ServerConfig {
        buffer,
        uppercase,
        max_requests: None,
    }
}

/// Runs the client binary with `args`, killing it after `limit`; fails, explaining, when it
/// had to be killed.
fn run_client(t: &Transcript, args: &[&str], limit: Duration) -> std::process::Output {
    let args: Vec<&str> = std::iter::once("client").chain(args.iter().copied()).collect();
    t.step(format_args!(
        "ran the client binary: client {}",
        args[1..].join(" ")
    ));
    let run = std::panic::catch_unwind(|| run_within(BIN, &args, limit));
    let out = match run {
        Ok(out) => out,
        Err(payload) => t.fail(
            format_args!("the client to exit within {} ms", limit.as_millis()),
            panic_message(&*payload),
            "the client binary runs step 6's request, whose attempts (step 5) must each end at \
             their --timeout: see the step5_ and step6_ tests",
        ),
    };
    t.step(format_args!(
        "the client exited with {}; stdout {}; stderr {}",
        out.status,
        sized(&out.stdout),
        sized(&out.stderr)
    ));
    out
}

// ---------------------------------------------------------------------------------------------
// Step 1: bind a datagram socket

#[test]
fn step1_bind_port_zero_gives_an_ephemeral_port() {
    let t = Transcript::new(PORTS);
    let any = loopback_any_port();
    let why_error = "port 0 is never in use: it asks the OS for any free ephemeral port. An error \
                     here means the socket was not bound to the address asked for (a fixed port \
                     such as 6789 is taken once): bind exactly the address you are given";
    t.step("called bind(127.0.0.1:0)");
    let first = match lab::bind(any) {
        Ok(socket) => socket,
        Err(e) => t.fail(
            "a socket on 127.0.0.1 and an ephemeral port",
            format_args!("error: {e}"),
            why_error,
        ),
    };
    let a = addr_of(&first);
    t.step(format_args!("got a socket bound to {a}"));
    t.check(
        a.ip() == any.ip(),
        "a socket on 127.0.0.1",
        format_args!("a socket on {}", a.ip()),
        "bind exactly the address you are given, its IP included: 0.0.0.0 (Python's '') would \
         also accept datagrams from other hosts",
    );
    t.check(
        a.port() != 0,
        "a real port number in local_addr()",
        "port 0",
        "port 0 asks the OS for an ephemeral port; local_addr() must show the one it chose",
    );
    t.step("called bind(127.0.0.1:0) again, keeping the first socket open");
    let second = match lab::bind(any) {
        Ok(socket) => socket,
        Err(e) => t.fail(
            "a second socket, on another ephemeral port",
            format_args!("error: {e}"),
            format_args!(
                "each bind to port 0 gets a free port of its own; this one failed while the first \
                 socket holds port {}, so both asked for the same port: bind exactly the address \
                 you are given, port 0 included, not a fixed port",
                a.port()
            ),
        ),
    };
    let b = addr_of(&second);
    t.step(format_args!("got a socket bound to {b}"));
    t.check(
        b.port() != a.port() && b.port() != 0,
        format_args!("an ephemeral port other than {}", a.port()),
        format_args!("port {}", b.port()),
        "two open sockets cannot share a port: bind exactly the address you are given",
    );
}

#[test]
fn step1_bind_reports_a_port_in_use() {
    let t = Transcript::new(PORTS);
    let holder = udp_socket();
    let held = addr_of(&holder);
    t.step(format_args!("a test socket holds {held}"));
    t.step(format_args!("called bind({held})"));
    let result = std::panic::catch_unwind(move || lab::bind(held));
    match result {
        Err(payload) => {
            let message = panic_message(&*payload);
            if message.contains("not yet implemented") {
                std::panic::resume_unwind(payload);
            }
            t.fail(
                "Err(AddrInUse)",
                format_args!("bind panicked: {message}"),
                "bind must not panic on a port in use: return the io::Error to the caller (no \
                 unwrap() or expect() on UdpSocket::bind); the binary turns it into a one-line error",
            );
        }
        Ok(Ok(socket)) => t.fail(
            format_args!("Err(AddrInUse): another socket holds {held}"),
            format_args!(
                "Ok: a socket bound to {}",
                socket
                    .local_addr()
                    .map_or_else(|e| e.to_string(), |a| a.to_string())
            ),
            "falling back to another port (or sharing this one) hides the mistake from the user, \
             whose clients then talk to the wrong server: never quietly bind something else, \
             return the AddrInUse error",
        ),
        Ok(Err(e)) => t.check(
            e.kind() == io::ErrorKind::AddrInUse,
            "an error of kind AddrInUse",
            format_args!("an error of kind {:?}: {e}", e.kind()),
            "the caller needs the real io::Error: return UdpSocket::bind's error as it is, not a \
             new one of another kind",
        ),
    }
}

#[test]
fn step1_server_binary_prints_its_ready_line() {
    let t = Transcript::new(PORTS);
    t.step("started the server binary with --port 0");
    let server = ServerProcess::start(BIN, &["server", "--port", "0"]);
    let addr = server.addr();
    t.step(format_args!("its ready line named {addr}"));
    t.check(
        addr.ip().is_loopback(),
        "an endpoint on 127.0.0.1",
        addr,
        "the server binds 127.0.0.1 by default: bind the address you are given",
    );
    t.check(
        addr.port() != 0,
        "the ephemeral port the OS chose",
        "port 0",
        "the ready line must show the real port (local_addr() after bind), not 0",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 2: receive from any sender, detect truncation

/// Sends `payload` to a fresh receiver and calls `recv_datagram(receiver, capacity)` on it,
/// within `limit`.
fn recv_one(
    t: &Transcript,
    payload: &[u8],
    capacity: usize,
    limit: Duration,
) -> (SocketAddr, Option<io::Result<lab::Received>>) {
    let receiver = udp_socket();
    let sender = udp_socket();
    send(
        t,
        &sender,
        payload,
        "the test's socket",
        addr_of(&receiver),
        "the receiving socket",
    );
    t.step(format_args!("called recv_datagram(receiving socket, {capacity})"));
    let got = call_within("lab::recv_datagram", limit, move || {
        lab::recv_datagram(&receiver, capacity)
    });
    (addr_of(&sender), got)
}

#[test]
fn step2_receives_the_payload_and_the_sender() {
    let t = Transcript::new(MESSAGE_SIZE);
    let payload = with_non_utf8("hello");
    let (sender, got) = recv_one(&t, &payload, 100, CALL_LIMIT);
    let Some(got) = got else {
        t.fail(
            "recv_datagram to return the waiting datagram",
            format_args!("still waiting after {} ms", CALL_LIMIT.as_millis()),
            "a datagram was waiting in the socket's queue: one recv_from returns it",
        )
    };
    match got {
        Ok(lab::Received::Datagram { from, payload: got }) => {
            if got.len() > payload.len() && got.starts_with(&payload) {
                t.fail(
                    format_args!("the payload {}", sized(&payload)),
                    format_args!("the payload {}", sized(&got)),
                    "that is the whole buffer, not the datagram: keep only the bytes recv_from \
                     says it received (Vec::truncate to its length)",
                );
            }
            t.check_payload(
                "the payload",
                &payload,
                &got,
                "the payload must be exactly the bytes sent, non-UTF-8 bytes included",
            );
            t.check(
                from == sender,
                format_args!("from = {sender}, the sending socket"),
                format_args!("from = {from}"),
                "the sender's endpoint is the one recv_from returns; the reply goes there",
            );
        }
        other => t.fail(
            format_args!("Ok(Datagram {{ from: {sender}, payload: {} }})", sized(&payload)),
            shown_received(&other),
            format_args!(
                "a {}-byte datagram fits a 100-byte buffer: return it whole with its sender",
                payload.len()
            ),
        ),
    }
}

#[test]
fn step2_an_empty_datagram_is_a_whole_datagram() {
    let t = Transcript::new(MESSAGE_SIZE);
    let (sender, got) = recv_one(&t, b"", 100, SLACK);
    let valid = "0 bytes is a valid datagram: recv_from returns Ok((0, from)), and unlike TCP's \
                 read, 0 does not mean end of stream or \"nothing\"";
    match got {
        None => t.fail(
            "Ok(Datagram { payload: \"\" (0 bytes) })",
            format_args!(
                "still waiting after {} ms, with a 0-byte datagram received",
                SLACK.as_millis()
            ),
            valid,
        ),
        Some(Ok(lab::Received::Datagram { from, payload })) => {
            t.check_payload("the payload", b"", &payload, valid);
            t.check(
                from == sender,
                format_args!("from = {sender}"),
                format_args!("from = {from}"),
                "an empty datagram has a sender too",
            );
        }
        Some(other) => t.fail(
            format_args!("Ok(Datagram {{ from: {sender}, payload: \"\" (0 bytes) }})"),
            shown_received(&other),
            valid,
        ),
    }
}

#[test]
fn step2_detects_truncation_at_the_boundary() {
    let t = Transcript::new(MESSAGE_SIZE);
    let receiver = udp_socket();
    let sender = udp_socket();
    let me = addr_of(&sender);
    let receiver = Arc::new(receiver);
    // One under, exactly at, one over the 1000-byte capacity, and well over.
    for (len, fits) in [(999, true), (1000, true), (1001, false), (1500, false)] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        send(
            &t,
            &sender,
            &payload,
            "the test's socket",
            addr_of(&receiver),
            "the receiving socket",
        );
        t.step("called recv_datagram(receiving socket, 1000)");
        let r = Arc::clone(&receiver);
        let Some(got) = call_within("lab::recv_datagram", CALL_LIMIT, move || {
            lab::recv_datagram(&r, 1000)
        }) else {
            t.fail(
                "recv_datagram to return the waiting datagram",
                format_args!("still waiting after {} ms", CALL_LIMIT.as_millis()),
                "a datagram was waiting in the socket's queue: one recv_from returns it",
            )
        };
        match got {
            Ok(lab::Received::Datagram { payload: got, .. }) if fits => t.check_payload(
                "the payload",
                &payload,
                &got,
                format_args!("a {len}-byte datagram fits a 1000-byte buffer and comes back whole"),
            ),
            Ok(lab::Received::Datagram { payload: got, .. }) => t.fail(
                format_args!("Truncated {{ capacity: 1000, at_least: 1001.. }} for a {len}-byte datagram"),
                format_args!("Datagram with {}", sized(&got)),
                "the OS cut the datagram to fit and said nothing: without headroom you cannot tell. \
                 Receive into capacity + 1 bytes; if more than capacity arrive, it did not fit",
            ),
            Ok(lab::Received::Truncated {
                from,
                capacity,
                at_least,
            }) => {
                t.check(
                    !fits,
                    format_args!("Datagram with all {len} bytes"),
                    format_args!("Truncated {{ capacity: {capacity}, at_least: {at_least} }}"),
                    format_args!(
                        "a {len}-byte datagram fits a 1000-byte buffer{}: off by one. Call it \
                         truncated only when more than capacity bytes arrived (receive into \
                         capacity + 1 bytes)",
                        if len == 1000 { " exactly" } else { "" }
                    ),
                );
                t.check(
                    from == me && capacity == 1000 && (1001..=len).contains(&at_least),
                    format_args!("Truncated {{ from: {me}, capacity: 1000, at_least: 1001..={len} }}"),
                    format_args!("Truncated {{ from: {from}, capacity: {capacity}, at_least: {at_least} }}"),
                    "the report names the sender, the capacity asked for and the length seen",
                );
            }
            Err(e) => t.fail(
                format_args!("Ok(...) for a {len}-byte datagram"),
                format_args!("Err({:?}: {e})", e.kind()),
                "on Linux and macOS an over-long datagram is no error: it is cut silently, and the \
                 headroom byte tells",
            ),
        }
    }
}

#[test]
fn step2_returns_the_timeout_error() {
    let t = Transcript::new(TIMEOUTS);
    let receiver = udp_socket();
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("test set-up: set a read timeout");
    t.step(format_args!(
        "called recv_datagram on {} (200 ms read timeout); nothing was sent",
        addr_of(&receiver)
    ));
    let started = Instant::now();
    let got = call_within(
        "lab::recv_datagram",
        Duration::from_millis(200) + HANG_SLACK,
        move || lab::recv_datagram(&receiver, 100),
    );
    let took = started.elapsed();
    match got {
        None => t.fail(
            "Err(WouldBlock) after about 200 ms",
            format_args!("still waiting after {} ms", took.as_millis()),
            "the timeout was swallowed and the receive waited again: return the timeout error \
             to the caller (`?` does it); only the caller knows what a timeout means",
        ),
        Some(Err(e)) if is_timeout(&e) => {}
        Some(other) => t.fail(
            "Err(WouldBlock) (Unix) or Err(TimedOut) (Windows)",
            shown_received(&other),
            "a read timeout shows as an error; return it unchanged",
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Step 3: reply to the sender

/// One request to the student's `serve_one`, and what came of it.
struct Exchange {
    /// The server's socket.
    server: SocketAddr,
    /// The client's socket, which sent the request.
    client: SocketAddr,
    /// The reply and who sent it.
    reply: Vec<u8>,
    from: SocketAddr,
    /// What `serve_one` returned.
    outcome: io::Result<lab::Served>,
}

/// Why the reply to a request did not come, going by what the server did.
fn silence_why(
    request: &[u8],
    client: SocketAddr,
    buffer: usize,
    outcome: Option<&io::Result<lab::Served>>,
) -> String {
    match outcome {
        None => "the server neither replied nor returned, although the request was waiting in \
                 its socket's queue: receive it, then send the reply at once"
            .to_owned(),
        Some(Ok(lab::Served::Replied { to, .. })) if *to != client => format!(
            "the server replied to {to}, but the request came from {client}: the reply went to \
             the wrong port or address. Reply to the endpoint recv_from returned, IP and port"
        ),
        Some(Ok(lab::Served::Replied { .. })) if request.is_empty() => "a 0-byte request gets a \
             0-byte reply (send_to with an empty slice sends an empty datagram); do not skip it: \
             an empty datagram is a request like any other"
            .to_owned(),
        Some(Ok(lab::Served::Replied { .. })) => format!(
            "the server says it replied to {client}, but nothing arrived there: the reply went to \
             the wrong port or address. Send it with the server's socket to the `from` that \
             recv_from returned (IP and port), never to a fixed port such as 6789"
        ),
        Some(Ok(lab::Served::Dropped { capacity, .. })) if *capacity != buffer => format!(
            "the {}-byte request was received into {capacity} bytes, but config.buffer is \
             {buffer}: use the buffer size of the configuration, not one of your own",
            request.len()
        ),
        Some(Ok(lab::Served::Dropped { .. })) => format!(
            "a {}-byte request fits the {buffer}-byte buffer: only longer datagrams are dropped",
            request.len()
        ),
        Some(Err(e)) => format!(
            "the server failed on a {}-byte request with {e}: a request of any size up to the \
             buffer, 0 bytes included, gets its reply",
            request.len()
        ),
    }
}

/// Starts the student's `serve_one` with `config` on a fresh socket, sends `request` from a fresh
/// client socket, and returns the reply and serve_one's result; fails, naming the likely mistake,
/// when no reply comes.
fn serve_one_exchange(t: &Transcript, config: lab::ServerConfig, request: &[u8]) -> Exchange {
    let socket = udp_socket();
    let server = addr_of(&socket);
    let buffer = config.buffer;
    t.step(format_args!(
        "started serve_one on {server} (buffer {buffer} bytes, uppercase {})",
        config.uppercase
    ));
    let mut running = Running::spawn("the server thread (serve_one)", move || {
        lab::serve_one(&socket, &config)
    });
    let client = udp_socket();
    let me = addr_of(&client);
    send(t, &client, request, "the client", server, "serve_one at");
    match await_datagram(t, &client, || running.returned()) {
        Ok((reply, from)) => {
            let Some(outcome) = running.finish(SLACK) else {
                t.fail(
                    "serve_one to return once it has replied",
                    format_args!("still running {} ms after its reply", SLACK.as_millis()),
                    "serve_one serves one datagram and returns what it did; step 4 loops",
                )
            };
            t.step(format_args!("serve_one returned {}", shown(&outcome)));
            Exchange {
                server,
                client: me,
                reply,
                from,
                outcome,
            }
        }
        Err(waited) => {
            let outcome = running.finish(Duration::ZERO);
            t.fail(
                format_args!("a {}-byte reply at {me}", request.len()),
                format_args!(
                    "nothing within {} ms; serve_one {}",
                    waited.as_millis(),
                    outcome
                        .as_ref()
                        .map_or("has not returned".to_owned(), |o| format!(
                            "returned {}",
                            shown(o)
                        ))
                ),
                silence_why(request, me, buffer, outcome.as_ref()),
            )
        }
    }
}

#[test]
fn step3_echoes_to_the_sender() {
    let t = Transcript::new(RECEIVE_FROM_ANY);
    let x = serve_one_exchange(&t, config(1000, false), b"hello");
    t.check_payload(
        "the reply",
        b"hello",
        &x.reply,
        "the server echoes the request's bytes",
    );
    t.check(
        x.from == x.server,
        format_args!("a reply from the server's socket {}", x.server),
        format_args!("a reply from {}", x.from),
        "the reply came from another socket, not from the server's socket: send it with the \
         socket the request arrived on. A client checks who answers and would ignore this one",
    );
    let expected = lab::Served::Replied { to: x.client, len: 5 };
    t.check(
        matches!(&x.outcome, Ok(o) if *o == expected),
        format_args!("Ok({expected:?})"),
        shown(&x.outcome),
        "serve_one returns where the reply went and its length, for the log",
    );
}

#[test]
fn step3_non_utf8_bytes_come_back_unchanged() {
    let t = Transcript::new(THE_PROTOCOL);
    let request: Vec<u8> = (0..=255u8).rev().collect();
    let x = serve_one_exchange(&t, config(1000, false), &request);
    t.check_payload(
        "the reply",
        &request,
        &x.reply,
        "datagrams carry bytes, not text: echo them as they are (no String, no from_utf8_lossy, \
         which replaces invalid bytes with U+FFFD)",
    );
}

#[test]
fn step3_uppercase_changes_only_ascii_letters() {
    let t = Transcript::new(THE_PROTOCOL);
    let request = with_non_utf8("Hello, UDP 6789! é z");
    let mut expected = with_non_utf8("HELLO, UDP 6789! é Z");
    expected.truncate(request.len());
    let x = serve_one_exchange(&t, config(1000, true), &request);
    if x.reply == request {
        t.fail(
            format_args!("the reply: {}", sized(&expected)),
            format_args!("the reply: {}", sized(&x.reply)),
            "the reply is the request unchanged: config.uppercase was ignored (pass it to make_reply)",
        );
    }
    t.check_payload(
        "the reply",
        &expected,
        &x.reply,
        "only ASCII letters become uppercase; é and bytes that are not UTF-8 stay as they are \
         (make_reply does this; String::to_uppercase changes é, and from_utf8_lossy replaces \
         invalid bytes)",
    );
}

#[test]
fn step3_reply_goes_to_the_senders_port() {
    // Two sockets on the same IP, different ports: only the sender may get the reply.
    let t = Transcript::new(RECEIVE_FROM_ANY);
    let bystander = udp_socket();
    t.step(format_args!(
        "opened a bystander socket {} on the client's IP",
        addr_of(&bystander)
    ));
    let x = serve_one_exchange(&t, config(1000, false), b"mine");
    t.check_payload(
        "the reply",
        b"mine",
        &x.reply,
        "the server echoes the request's bytes",
    );
    if let Some((stray, from)) = quiet_for(&t, &bystander, Duration::from_millis(200)) {
        t.fail(
            "nothing at the bystander's port",
            format_args!("{} from {from}", sized(&stray)),
            "a reply went to another port than the sender's: send each reply to the endpoint \
             recv_from returned for that request",
        );
    }
}

#[test]
fn step3_empty_request_gets_an_empty_reply() {
    let t = Transcript::new(MESSAGE_SIZE);
    // A non-empty request first, so a failure below is about the empty one.
    let x = serve_one_exchange(&t, config(1000, false), b"x");
    t.check_payload(
        "the reply",
        b"x",
        &x.reply,
        "the server echoes the request's bytes",
    );
    let x = serve_one_exchange(&t, config(1000, false), b"");
    t.check_payload("the reply", b"", &x.reply, "an empty request gets an empty reply");
}

#[test]
fn step3_several_kilobytes_round_trip() {
    let t = Transcript::new(STEP3);
    // Exactly the configured buffer: it fits.
    let request: Vec<u8> = (0..9000u32).map(|i| (i % 251) as u8).collect();
    let x = serve_one_exchange(&t, config(9000, false), &request);
    t.check_payload(
        "the reply",
        &request,
        &x.reply,
        if x.reply.len() < request.len() {
            "a 9000-byte request fits a 9000-byte buffer exactly and comes back whole: receive into \
             config.buffer bytes"
        } else {
            "the reply's bytes differ from the request's: echo them as they are"
        },
    );
}

#[test]
fn step3_truncated_datagram_is_not_echoed() {
    let t = Transcript::new(MESSAGE_SIZE);
    let socket = udp_socket();
    let server = addr_of(&socket);
    t.step(format_args!("started serve_one on {server} (buffer 1000 bytes)"));
    let running = Running::spawn("the server thread (serve_one)", move || {
        lab::serve_one(&socket, &config(1000, false))
    });
    let client = udp_socket();
    let me = addr_of(&client);
    // One byte over the buffer.
    send(&t, &client, &[b'a'; 1001], "the client", server, "serve_one at");
    let Some(outcome) = running.finish(CALL_LIMIT) else {
        t.fail(
            "serve_one to return Dropped",
            format_args!("still running after {} ms", CALL_LIMIT.as_millis()),
            "the datagram was waiting: receive it, see that it did not fit, and return",
        )
    };
    t.step(format_args!("serve_one returned {}", shown(&outcome)));
    let echoed = quiet_for(&t, &client, Duration::from_millis(200));
    if let Some((reply, _)) = &echoed {
        t.fail(
            "no reply to a 1001-byte request with a 1000-byte buffer",
            format_args!("a reply {}", sized(reply)),
            "the datagram did not fit and its tail was cut off silently: an echo of what is left \
             is wrong, and the client could not know. Detect truncation (recv_datagram) and drop it",
        );
    }
    t.check(
        matches!(&outcome, Ok(lab::Served::Dropped { capacity: 1000, from, at_least }) if *from == me && *at_least > 1000),
        format_args!("Ok(Dropped {{ from: {me}, capacity: 1000, at_least: 1001.. }})"),
        shown(&outcome),
        "a datagram longer than the buffer is dropped, and serve_one says so for the log: Dropped \
         with the sender, the capacity, and a length seen over the capacity (at_least > capacity)",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 4: the server loop

/// What the student's `serve` logged.
type Log = Arc<Mutex<Vec<Result<lab::Served, String>>>>;

/// The student's `serve` running in a thread of the test, with its log.
struct Loop {
    addr: SocketAddr,
    running: Running<io::Result<u64>>,
    log: Log,
}

impl Loop {
    /// Starts `serve` (buffer 1000) on a fresh socket whose read timeout is `read_timeout`.
    fn start(t: &Transcript, max_requests: Option<u64>, read_timeout: Duration) -> Loop {
        let socket = udp_socket();
        socket
            .set_read_timeout(Some(read_timeout))
            .expect("test set-up: set a read timeout");
        let addr = addr_of(&socket);
        let log: Log = Arc::default();
        let sink = Arc::clone(&log);
        let cfg = lab::ServerConfig {
            max_requests,
            ..config(1000, false)
        };
        t.step(format_args!(
            "started serve on {addr} (buffer 1000 bytes, max_requests {max_requests:?}, read timeout {} ms)",
            read_timeout.as_millis()
        ));
        let running = Running::spawn("the server thread (serve)", move || {
            lab::serve(&socket, &cfg, |o| {
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(o.cloned().map_err(|e| e.to_string()));
            })
        });
        Loop { addr, running, log }
    }

    fn log(&self) -> Vec<Result<lab::Served, String>> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for a reply at `client`; the server "has sent" once its log holds `logged`
    /// entries, or it has returned.
    fn await_reply(
        &mut self,
        t: &Transcript,
        client: &UdpSocket,
        logged: usize,
    ) -> Result<(Vec<u8>, SocketAddr), Duration> {
        let (running, log) = (&mut self.running, &self.log);
        await_datagram(t, client, || {
            running.returned() || log.lock().unwrap_or_else(|p| p.into_inner()).len() >= logged
        })
    }
}

/// Sends `request`, the loop's datagram number `served + 1`, and checks the echo; fails naming
/// the mistake otherwise.
fn loop_round_trip(
    t: &Transcript,
    server: &mut Loop,
    client: &UdpSocket,
    request: &[u8],
    served: usize,
    why_if_wrong: &str,
) {
    let me = addr_of(client);
    send(t, client, request, "the client", server.addr, "serve at");
    match server.await_reply(t, client, served + 1) {
        Ok((reply, _)) => t.check_payload("the reply", request, &reply, why_if_wrong),
        Err(waited) => {
            let log = server.log();
            let returned = server.running.returned();
            let got = format!(
                "nothing within {} ms; serve {}; its log: {log:?}",
                waited.as_millis(),
                if returned {
                    "had returned"
                } else {
                    "is still running"
                }
            );
            if log.len() > served {
                // serve handled this datagram: the log says what it did.
                let outcome = log[served].clone().map_err(io::Error::other);
                t.fail(
                    format_args!("a reply to datagram {} at {me}", served + 1),
                    got,
                    silence_why(request, me, 1000, Some(&outcome)),
                );
            }
            if returned {
                t.fail(
                    format_args!("a reply to datagram {}", served + 1),
                    got,
                    format_args!(
                        "serve returned after {} datagrams: it stopped too early (max_requests \
                         is how many to serve; an off-by-one in the loop condition?)",
                        log.len()
                    ),
                );
            }
            t.fail(
                format_args!("a reply to datagram {} at {me}", served + 1),
                got,
                silence_why(request, me, 1000, None),
            );
        }
    }
}

#[test]
fn step4_serves_max_requests_and_logs_each() {
    let t = Transcript::new(STEP4);
    let mut server = Loop::start(&t, Some(3), Duration::from_secs(3));
    let client = udp_socket();
    let me = addr_of(&client);
    let mut sizes = Vec::new();
    for i in 1..=3 {
        let request = with_non_utf8(&format!("request {i}"));
        sizes.push(request.len());
        loop_round_trip(
            &t,
            &mut server,
            &client,
            &request,
            i - 1,
            "the server echoes each request byte for byte, non-UTF-8 bytes included",
        );
    }
    // One over the limit: the server must have stopped.
    send(
        &t,
        &client,
        b"one too many",
        "the client",
        server.addr,
        "serve at",
    );
    // A correct serve has already returned; one that goes on logs the 4th datagram at once.
    let deadline = Instant::now() + SLACK;
    while !(server.running.returned() || server.log().len() > 3) && Instant::now() < deadline {
        thread::sleep(POLL);
    }
    if let Some((reply, _)) = quiet_for(&t, &client, Duration::from_millis(200)) {
        t.fail(
            "no reply to a 4th datagram: serve returns after max_requests = 3",
            format_args!("a reply {}", sized(&reply)),
            "serve went on and answered a 4th datagram: stop once max_requests datagrams have \
             been served (an off-by-one in the loop condition, or max_requests ignored?)",
        );
    }
    let log = server.log();
    let Some(result) = server.running.finish(SLACK) else {
        t.fail(
            "serve to return Ok(3) after the third datagram",
            format_args!("still running; its log: {log:?}"),
            "with max_requests = Some(3), serve returns once it has served three datagrams",
        )
    };
    t.step(format_args!("serve returned {}", shown(&result)));
    t.check(
        matches!(result, Ok(3)),
        "Ok(3)",
        shown(&result),
        "serve returns the number of datagrams served: max_requests = 3",
    );
    let expected: Vec<Result<lab::Served, String>> = sizes
        .iter()
        .map(|&len| Ok(lab::Served::Replied { to: me, len }))
        .collect();
    t.check(
        log == expected,
        format_args!("one log entry per datagram: {expected:?}"),
        format_args!("{log:?}"),
        "serve passes every outcome to `log`, once per datagram",
    );
}

#[test]
fn step4_truncation_is_logged_and_the_next_datagram_served() {
    let t = Transcript::new(STEP4);
    let mut server = Loop::start(&t, Some(2), Duration::from_secs(3));
    let client = udp_socket();
    let me = addr_of(&client);
    // One byte over the buffer: dropped; then one that fits.
    send(&t, &client, &[b'z'; 1001], "the client", server.addr, "serve at");
    let next = with_non_utf8("next");
    loop_round_trip(
        &t,
        &mut server,
        &client,
        &next,
        1,
        "the reply must be the echo of this request. The 1001-byte datagram before it did not fit \
         the 1000-byte buffer: it is dropped, not echoed cut short (steps 2 and 3)",
    );
    let log = server.log();
    let Some(result) = server.running.finish(SLACK) else {
        t.fail(
            "serve to return Ok(2) after a dropped datagram and a reply",
            format_args!("still running {} ms later; its log: {log:?}", SLACK.as_millis()),
            "with max_requests = Some(2), serve returns after two datagrams, and a dropped datagram \
             counts as served: count every datagram replied to or dropped",
        )
    };
    t.step(format_args!("serve returned {}", shown(&result)));
    t.check(
        matches!(result, Ok(2)),
        "Ok(2)",
        shown(&result),
        "a dropped datagram counts as served: count every datagram replied to or dropped",
    );
    t.check(
        matches!(log.first(), Some(Ok(lab::Served::Dropped { from, capacity: 1000, .. })) if *from == me),
        format_args!("a first log entry Dropped {{ from: {me}, capacity: 1000, .. }}"),
        format_args!("{log:?}"),
        "the dropped datagram is logged, so the operator sees it",
    );
}

#[test]
fn step4_returns_the_error_when_the_socket_times_out() {
    let t = Transcript::new(STEP4);
    let socket = udp_socket();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("test set-up: set a read timeout");
    t.step(format_args!(
        "started serve on {} (200 ms read timeout, max_requests None); nothing was sent",
        addr_of(&socket)
    ));
    let limit = Duration::from_millis(200) + HANG_SLACK;
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let result = call_within("the server thread (serve)", limit, move || {
        lab::serve(&socket, &config(1000, false), |o| {
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(o.cloned().map_err(|e| e.to_string()));
        })
    });
    let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match result {
        None if log.is_empty() => t.fail(
            "Err(WouldBlock) after about 200 ms",
            format_args!(
                "still serving after {} ms, with nothing logged",
                limit.as_millis()
            ),
            "serve never saw the read timeout: does recv_datagram return the timeout error \
             instead of waiting again (step 2: step2_returns_the_timeout_error)? serve then \
             returns it: a read timeout is not a per-datagram error",
        ),
        None => t.fail(
            "Err(WouldBlock) after about 200 ms",
            format_args!("still serving after {} ms; its log: {log:?}", limit.as_millis()),
            "serve went on after the read timeout: a read timeout is not a per-datagram error, \
             return it (only what is_per_datagram accepts is logged and survived)",
        ),
        Some(Err(e)) if is_timeout(&e) => {}
        Some(other) => t.fail(
            "Err(WouldBlock) (Unix) or Err(TimedOut) (Windows)",
            shown(&other),
            "serve returns the error that ended the loop, here the read timeout",
        ),
    }
}

#[cfg(unix)]
#[test]
fn step4_survives_interrupted_calls() {
    let t = Transcript::new(STEP4);
    let socket = udp_socket();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("test set-up: set a read timeout");
    let addr = addr_of(&socket);
    t.step(format_args!(
        "started serve on {addr} (max_requests 2, 3000 ms read timeout), sending its thread a \
         signal (SIGUSR1) every 20 ms"
    ));
    let client = udp_socket();
    let me = addr_of(&client);
    let requests = [with_non_utf8("one"), with_non_utf8("two")];
    let to_send = requests.clone();
    let client = Arc::new(client);
    let sender = Arc::clone(&client);
    let peer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        for request in &to_send {
            let _ = sender.send_to(request, addr);
        }
    });
    let cfg = lab::ServerConfig {
        max_requests: Some(2),
        ..config(1000, false)
    };
    let result = call_within("the server thread (serve)", CALL_LIMIT, move || {
        common::testing::with_interrupts(move || {
            let mut log = Vec::new();
            let served = lab::serve(&socket, &cfg, |o| log.push(o.cloned().map_err(|e| e.to_string())));
            (served, log)
        })
    });
    t.step(format_args!(
        "the client {me} sent {} and {} 200 ms after the start",
        sized(&requests[0]),
        sized(&requests[1])
    ));
    let Some(((served, log), signals)) = result else {
        let _ = peer.join();
        let replies = (0..2)
            .filter(|_| await_datagram(&t, &client, || true).is_ok())
            .count();
        t.fail(
            "serve to return Ok(2) once both datagrams were served",
            format_args!(
                "still running after {} ms, having replied to {replies} of the 2 datagrams",
                CALL_LIMIT.as_millis()
            ),
            if replies == 2 {
                "serve replied to both datagrams but did not return: with max_requests = Some(2) it \
                 returns Ok(2) after two (see step4_serves_max_requests_and_logs_each)"
            } else {
                "two datagrams arrived 200 ms after the start, while signals kept interrupting \
                 recv_from: log each Interrupted error, go on, and serve the datagrams"
            },
        )
    };
    t.step(format_args!("{signals} signals interrupted serve's thread"));
    t.step(format_args!(
        "serve returned {}; its log: {log:?}",
        shown(&served)
    ));
    if let Err(e) = &served {
        t.fail(
            "Ok(2)",
            shown(&served),
            format_args!(
                "a signal interrupted recv_from ({:?}); that concerns no datagram, so the server \
                 must not stop: is_per_datagram(&e) says which errors to log and survive",
                e.kind()
            ),
        );
    }
    t.check(
        matches!(served, Ok(2)),
        "Ok(2)",
        shown(&served),
        "an interrupted call is logged but not counted: count only datagrams replied to or dropped",
    );
    t.check(
        signals > 0,
        "at least one signal sent while the call ran",
        "none",
        "test set-up: the call returned before any signal, so it was not tested with one",
    );
    let _ = peer.join();
    // serve has returned: both replies are already waiting at the client.
    for request in &requests {
        match await_datagram(&t, &client, || true) {
            Ok((reply, _)) => t.check_payload("the reply", request, &reply, "the server echoes each request"),
            Err(_) => t.fail(
                format_args!("a reply to {} at {me}", sized(request)),
                "nothing",
                "serve returned Ok(2), so it says it replied to both datagrams, but a reply never \
                 reached the port the request came from: it went to the wrong port or address \
                 (step 3's serve_one: see the step3_ tests)",
            ),
        }
    }
}

/// Waits for a reply from a server process: it "has sent" once its log has a new
/// `replied` line (or it has panicked or exited).
fn await_from_process(
    t: &Transcript,
    server: &ServerProcess,
    client: &UdpSocket,
) -> Result<(Vec<u8>, SocketAddr), Duration> {
    let count = |s: &ServerProcess| {
        s.stderr_lines()
            .iter()
            .filter(|l| l.contains("replied") || l.contains("panicked") || l.contains("error"))
            .count()
    };
    let before = count(server);
    await_datagram(t, client, || count(server) > before)
}

/// Sends `request` to a server process and returns its reply; fails naming the mistake otherwise.
fn process_round_trip(
    t: &Transcript,
    server: &ServerProcess,
    client: &UdpSocket,
    request: &[u8],
    expected: &[u8],
    why: &str,
) {
    send(
        t,
        client,
        request,
        "the client",
        server.addr(),
        "the server binary at",
    );
    match await_from_process(t, server, client) {
        Ok((reply, from)) => {
            t.check_payload("the reply", expected, &reply, why);
            if server.addr().ip().is_unspecified() {
                t.fail(
                    "a server on 127.0.0.1, as the ready line should say",
                    format_args!("a ready line naming {}", server.addr()),
                    "the server bound every interface instead of the address it was given: bind \
                     exactly the address you are given, its IP included (step 1)",
                );
            }
            t.check(
                from == server.addr(),
                format_args!("a reply from {}", server.addr()),
                format_args!("a reply from {from}"),
                "the reply came from another socket, not from the server's socket: send it with \
                 the socket the request arrived on (step 3)",
            );
        }
        Err(waited) => {
            let me = addr_of(client);
            let logged = server
                .stderr_lines()
                .iter()
                .any(|l| l.starts_with(&format!("{me}: replied")));
            t.fail(
                format_args!("a reply at {me}"),
                format_args!("nothing within {} ms{}", waited.as_millis(), server.log()),
                if logged {
                    "the server logged a reply to this client, but nothing arrived at its port: the \
                     reply went to the wrong port or address. Reply to the endpoint recv_from \
                     returned (step 3's serve_one: see the step3_ tests)"
                } else {
                    "the server did not reply, or logged nothing about it: see its log above, and \
                     the step3_ and step4_ tests"
                },
            );
        }
    }
}

#[test]
fn step4_server_binary_serves_two_clients_separately() {
    let t = Transcript::new(RECEIVE_FROM_ANY);
    t.step("started the server binary with --port 0");
    let server = ServerProcess::start(BIN, &["server", "--port", "0"]);
    let (a, b) = (udp_socket(), udp_socket());
    send(
        &t,
        &a,
        b"from A",
        "client A",
        server.addr(),
        "the server binary at",
    );
    process_round_trip(
        &t,
        &server,
        &b,
        b"from B",
        b"from B",
        "client B got a reply meant for another client: reply to each datagram's own sender",
    );
    match await_from_process(&t, &server, &a) {
        Ok((reply, _)) => t.check_payload(
            "client A's reply",
            b"from A",
            &reply,
            "client A got a reply meant for another client: reply to each datagram's own sender",
        ),
        Err(waited) => t.fail(
            "client A's reply \"from A\"",
            format_args!("nothing within {} ms{}", waited.as_millis(), server.log()),
            "every client gets its own reply, at its own port",
        ),
    }
}

#[test]
fn step4_server_binary_uppercase() {
    let t = Transcript::new(THE_COMMAND_LINE);
    t.step("started the server binary with --port 0 --uppercase");
    let server = ServerProcess::start(BIN, &["server", "--port", "0", "--uppercase"]);
    let client = udp_socket();
    let request = with_non_utf8("make me loud, é");
    let mut expected = with_non_utf8("MAKE ME LOUD, é");
    expected.truncate(request.len());
    process_round_trip(
        &t,
        &server,
        &client,
        &request,
        &expected,
        "with --uppercase, ASCII letters become uppercase and every other byte stays as it is",
    );
}

/// Waits up to `wait` until `count` lines of the server's log contain `needle`.
fn await_log_lines(server: &ServerProcess, needle: &str, count: usize, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    loop {
        let found: Vec<String> = server
            .stderr_lines()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect();
        if found.len() >= count || Instant::now() >= deadline {
            return found;
        }
        thread::sleep(POLL);
    }
}

#[test]
fn step4_server_binary_logs_truncation_and_keeps_serving() {
    let t = Transcript::new(STEP4);
    t.step("started the server binary with --port 0 --buffer 1000");
    let server = ServerProcess::start(BIN, &["server", "--port", "0", "--buffer", "1000"]);
    let client = udp_socket();
    let me = addr_of(&client).to_string();
    send(
        &t,
        &client,
        &[b'q'; 1001],
        "the client",
        server.addr(),
        "the server binary at",
    );
    let lines = await_log_lines(&server, "trunc", 1, REPLY_WAIT);
    t.step(format_args!("the server logged {lines:?}"));
    t.check(
        lines
            .first()
            .is_some_and(|l| l.contains(&me) && l.contains("1000")),
        format_args!("a log line about the truncated datagram, naming {me} and the 1000-byte buffer"),
        format_args!("{}", server.log()),
        "serve passes the Dropped outcome to the log: the operator sees who sent what did not fit",
    );
    process_round_trip(
        &t,
        &server,
        &client,
        b"still there?",
        b"still there?",
        "after dropping a datagram the server serves the next one",
    );
    // One log line per datagram, each naming the sender.
    let lines = await_log_lines(&server, &me, 2, REPLY_WAIT);
    t.check(
        lines.len() >= 2,
        format_args!("two log lines naming {me}"),
        format_args!("{}", server.log()),
        "serve logs every datagram, dropped or replied to",
    );
}

#[test]
fn step4_server_binary_exits_after_max_requests() {
    let t = Transcript::new(STEP4);
    t.step("started the server binary with --port 0 --max-requests 2");
    let mut server = ServerProcess::start(BIN, &["server", "--port", "0", "--max-requests", "2"]);
    let client = udp_socket();
    for msg in ["one", "two"] {
        process_round_trip(
            &t,
            &server,
            &client,
            msg.as_bytes(),
            msg.as_bytes(),
            "the server echoes each request",
        );
    }
    let status = server.wait_exit(Duration::from_secs(3));
    t.step(format_args!("the server's exit status: {status:?}"));
    t.check(
        status.is_some_and(|s| s.success()),
        "exit status 0 after two datagrams",
        format_args!(
            "{}{}",
            status.map_or("still running 3000 ms after the second reply".to_owned(), |s| s
                .to_string()),
            server.log()
        ),
        "with --max-requests 2, serve returns Ok(2) after two datagrams and the server exits",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 5: one attempt, with a deadline and a sender check

/// A test-side server that, on the first request, has `script` send datagrams back to the
/// client (`script` gets the server's socket and the client's endpoint). Returns the requests
/// it saw.
fn scripted_server(
    socket: UdpSocket,
    script: impl FnOnce(&UdpSocket, SocketAddr) + Send + 'static,
) -> ServerThread<Option<(Vec<u8>, SocketAddr)>> {
    ServerThread::spawn("the test's server", move || {
        let first = test_recv(&socket);
        if let Some((_, client)) = &first {
            script(&socket, *client);
        }
        first
    })
}

/// Why an attempt that should have returned by now still waits: no read timeout, or a receive
/// that waits again after its timeout (step 2).
fn hang_why(socket: &UdpSocket) -> &'static str {
    match socket.read_timeout() {
        Ok(None) => {
            "the socket has no read timeout, so recv_from waits until a datagram comes, \
                     forever if none does: before each receive, set_read_timeout to what is left \
                     of the deadline"
        }
        _ => {
            "attempt set a read timeout, yet it still waits: does recv_datagram return the \
              timeout error instead of waiting again (step 2: step2_returns_the_timeout_error)?"
        }
    }
}

/// A client socket as a student's program gets it: bound, with no read timeout at all.
fn socket_without_read_timeout(t: &Transcript) -> UdpSocket {
    let socket = UdpSocket::bind(loopback_any_port()).expect("test set-up: bind a client socket");
    socket
        .set_read_timeout(None)
        .and_then(|()| socket.set_write_timeout(Some(Duration::from_secs(5))))
        .expect("test set-up: set the timeouts");
    t.step(format_args!(
        "bound a client socket {} with no read timeout",
        addr_of(&socket)
    ));
    socket
}

#[test]
fn step5_attempt_returns_the_reply() {
    let t = Transcript::new(STEP5);
    let server = udp_socket();
    let server_addr = addr_of(&server);
    let echo = echo_thread(server, 1);
    let client = udp_socket();
    let request = with_non_utf8("ping");
    t.step(format_args!(
        "called attempt(client {}, server {server_addr} (an echo server), {}, 3000 ms, capacity 100)",
        addr_of(&client),
        sized(&request)
    ));
    let sent = request.clone();
    let got = call_within("lab::attempt", CALL_LIMIT, move || {
        lab::attempt(&client, server_addr, &sent, Duration::from_secs(3), 100)
    });
    let seen = echo.join_within(Duration::from_secs(6));
    t.step(format_args!(
        "the echo server received {}",
        seen.first().map_or("nothing".to_owned(), |(r, from)| format!(
            "{} from {from}",
            sized(r)
        ))
    ));
    let Some(got) = got else {
        t.fail(
            "Ok(Some(the echo))",
            format_args!("still waiting after {} ms", CALL_LIMIT.as_millis()),
            "the echo came back at once: take it, it is from the server",
        )
    };
    t.step(format_args!("attempt returned {}", shown_attempt(&got)));
    if seen.is_empty() {
        t.fail(
            "the request at the server",
            "nothing arrived there",
            "send `message` to `server` with send_to, once, before waiting",
        );
    }
    match got {
        Ok(Some(reply)) => t.check_payload(
            "the reply",
            &request,
            &reply,
            "attempt returns the reply's bytes exactly",
        ),
        other => t.fail(
            format_args!("Ok(Some({}))", sized(&request)),
            shown_attempt(&other),
            "the echo server replied at once, from `server`: return its reply",
        ),
    }
}

#[test]
fn step5_attempt_times_out_against_a_silent_socket() {
    let t = Transcript::new(TIMEOUTS);
    let silent = udp_socket();
    let silent_addr = addr_of(&silent);
    // As a program gets it: a fresh socket, with no read timeout; attempt must bound its wait.
    let client = socket_without_read_timeout(&t);
    let probe = client.try_clone().expect("test set-up: clone a socket");
    let timeout = Duration::from_millis(200);
    t.step(format_args!(
        "called attempt(that socket, server {silent_addr} (which never answers), \"anyone?\", 200 ms)"
    ));
    let started = Instant::now();
    let got = call_within("lab::attempt", timeout + HANG_SLACK, move || {
        lab::attempt(&client, silent_addr, b"anyone?", timeout, 100)
    });
    let took = started.elapsed();
    let Some(got) = got else {
        t.fail(
            "Ok(None) after about 200 ms",
            format_args!("still waiting after {} ms", took.as_millis()),
            hang_why(&probe),
        )
    };
    t.step(format_args!(
        "attempt returned {} after {} ms",
        shown_attempt(&got),
        took.as_millis()
    ));
    t.check(
        matches!(got, Ok(None)),
        "Ok(None)",
        shown_attempt(&got),
        "nobody replied, so the attempt ends with no reply (the timeout error of either kind means \
         \"no reply\")",
    );
    t.check(
        took >= timeout * 8 / 10,
        "about 200 ms",
        format_args!("{} ms", took.as_millis()),
        "the attempt gave up before its timeout: wait until the deadline, timeout after sending",
    );
    silent
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("test set-up: set a read timeout");
    match test_recv(&silent) {
        Some((request, _)) => t.check_payload(
            "the request",
            b"anyone?",
            &request,
            "attempt sends `message` once",
        ),
        None => t.fail(
            "the request at the server",
            "nothing",
            "send `message` to `server` before waiting",
        ),
    }
}

#[test]
fn step5_attempt_with_no_time_left_returns_none() {
    let t = Transcript::new(TIMEOUTS);
    let silent = udp_socket();
    let silent_addr = addr_of(&silent);
    let client = udp_socket();
    t.step(format_args!(
        "called attempt(client {}, server {silent_addr}, \"now?\", timeout 0 ms)",
        addr_of(&client)
    ));
    let got = call_within("lab::attempt", SLACK, move || {
        lab::attempt(&client, silent_addr, b"now?", Duration::ZERO, 100)
    });
    match got {
        None => t.fail(
            "Ok(None) at once",
            format_args!("still waiting after {} ms", SLACK.as_millis()),
            "a zero timeout leaves no time to wait: the attempt is over at once",
        ),
        Some(Ok(None)) => {}
        Some(other) => t.fail(
            "Ok(None) at once",
            shown_attempt(&other),
            "when no time is left the attempt is over: return Ok(None) before setting a read \
             timeout, because set_read_timeout(Some(Duration::ZERO)) is rejected (InvalidInput)",
        ),
    }
}

#[test]
fn step5_attempt_ignores_a_stranger() {
    let t = Transcript::new(RECEIVE_FROM_ANY);
    let server = udp_socket();
    let server_addr = addr_of(&server);
    let stranger = udp_socket();
    let stranger_addr = addr_of(&stranger);
    let _fake = scripted_server(server, move |server, client| {
        // A third socket on the same IP (another port) answers first.
        let _ = stranger.send_to(b"stray", client);
        thread::sleep(Duration::from_millis(50));
        let _ = server.send_to(b"real reply", client);
    });
    let client = udp_socket();
    t.step(format_args!(
        "called attempt(client {}, server {server_addr}, \"request\", 3000 ms)",
        addr_of(&client)
    ));
    t.step(format_args!(
        "on the request, a stranger {stranger_addr} (same IP, another port) sent \"stray\", then \
         the server sent \"real reply\" 50 ms later"
    ));
    let got = call_within("lab::attempt", CALL_LIMIT, move || {
        lab::attempt(&client, server_addr, b"request", Duration::from_secs(3), 100)
    });
    let Some(got) = got else {
        t.fail(
            "Ok(Some(\"real reply\"))",
            format_args!("still waiting after {} ms", CALL_LIMIT.as_millis()),
            "the server's reply came 50 ms after the request: take it",
        )
    };
    t.step(format_args!("attempt returned {}", shown_attempt(&got)));
    match got {
        Ok(Some(reply)) => t.check_payload(
            "the reply",
            b"real reply",
            &reply,
            format_args!(
                "a datagram from another endpoint ({stranger_addr}) is not the reply: compare the \
                 whole sender with the server, IP and port"
            ),
        ),
        other => t.fail(
            "Ok(Some(\"real reply\"))",
            shown_attempt(&other),
            "a stranger's datagram is ignored and the wait goes on, for the server's reply",
        ),
    }
}

#[test]
fn step5_strangers_do_not_extend_the_timeout() {
    let t = Transcript::new(TIMEOUTS);
    let silent = udp_socket();
    let client = udp_socket();
    let probe = client.try_clone().expect("test set-up: clone a socket");
    let client_addr = addr_of(&client);
    let silent_addr = addr_of(&silent);
    let stop = Arc::new(AtomicBool::new(false));
    let flood_stop = Arc::clone(&stop);
    let flood = thread::spawn(move || {
        let stranger = udp_socket();
        let until = Instant::now() + Duration::from_secs(4);
        while !flood_stop.load(Ordering::Relaxed) && Instant::now() < until {
            let _ = stranger.send_to(b"noise", client_addr);
            thread::sleep(Duration::from_millis(50));
        }
    });
    let timeout = Duration::from_millis(300);
    t.step(format_args!(
        "called attempt(client {client_addr}, server {silent_addr} (which never answers), 300 ms) \
         while a stranger sent \"noise\" to the client every 50 ms"
    ));
    let started = Instant::now();
    let got = call_within("lab::attempt", timeout + HANG_SLACK, move || {
        lab::attempt(&client, silent_addr, b"hello?", timeout, 100)
    });
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = flood.join();
    let why = "the timeout is a deadline: compute it once, before the loop, and set each receive's \
               read timeout to what is left of it, not a fresh timeout after each stray datagram";
    let Some(got) = got else {
        t.fail(
            "Ok(None) after about 300 ms",
            format_args!("still waiting after {} ms", took.as_millis()),
            if probe.read_timeout().ok().flatten().is_none() {
                hang_why(&probe)
            } else {
                why
            },
        )
    };
    t.step(format_args!(
        "attempt returned {} after {} ms",
        shown_attempt(&got),
        took.as_millis()
    ));
    match &got {
        Ok(None) => {}
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => t.fail(
            "Ok(None)",
            shown_attempt(&got),
            "when no time is left the attempt is over: return Ok(None) before setting a read \
             timeout, because set_read_timeout(Some(Duration::ZERO)) is rejected (InvalidInput)",
        ),
        _ => t.fail(
            "Ok(None)",
            shown_attempt(&got),
            "only strangers spoke: their datagrams are not the reply",
        ),
    }
    t.check(
        took <= timeout + SLACK,
        "about 300 ms",
        format_args!("{} ms", took.as_millis()),
        why,
    );
}

#[test]
fn step5_reply_sizes_at_the_capacity() {
    let t = Transcript::new(MESSAGE_SIZE);
    // One under, exactly at, and one over the 100-byte capacity.
    for len in [99usize, 100, 101] {
        let reply: Vec<u8> = (0..len).map(|i| (255 - i % 256) as u8).collect();
        let server = udp_socket();
        let server_addr = addr_of(&server);
        let scripted = reply.clone();
        let _fake = scripted_server(server, move |server, client| {
            let _ = server.send_to(&scripted, client);
        });
        let client = udp_socket();
        t.step(format_args!(
            "called attempt(client {}, server {server_addr}, \"size?\", 1000 ms, capacity 100); \
             the server answers with {len} bytes",
            addr_of(&client)
        ));
        let got = call_within("lab::attempt", CALL_LIMIT, move || {
            lab::attempt(&client, server_addr, b"size?", Duration::from_millis(1000), 100)
        });
        let Some(got) = got else {
            t.fail(
                "attempt to return at once",
                format_args!("still waiting after {} ms", CALL_LIMIT.as_millis()),
                "the server answered at once",
            )
        };
        t.step(format_args!("attempt returned {}", shown_attempt(&got)));
        match (len <= 100, got) {
            (true, Ok(Some(bytes))) => t.check_payload(
                "the reply",
                &reply,
                &bytes,
                format_args!("a {len}-byte reply fits the 100-byte buffer and comes back whole"),
            ),
            (true, other) => t.fail(
                format_args!("Ok(Some({}))", sized(&reply)),
                shown_attempt(&other),
                format_args!("a {len}-byte reply fits a 100-byte buffer: it is the reply"),
            ),
            (false, Err(e)) if e.kind() == io::ErrorKind::InvalidData => t.check(
                e.to_string().contains("100"),
                "an error message naming the 100-byte buffer",
                format_args!("{e:?}"),
                "say what did not fit where: the capacity, and the length seen",
            ),
            (false, other) => t.fail(
                "Err(InvalidData) naming the sizes",
                shown_attempt(&other),
                "a 101-byte reply from the server does not fit the 100-byte buffer: it is neither \
                 a reply (its tail is lost) nor silence: fail with ErrorKind::InvalidData",
            ),
        }
    }
}

#[test]
fn step5_a_strangers_over_long_datagram_is_ignored() {
    let t = Transcript::new(RECEIVE_FROM_ANY);
    let server = udp_socket();
    let server_addr = addr_of(&server);
    let stranger = udp_socket();
    let stranger_addr = addr_of(&stranger);
    let _fake = scripted_server(server, move |server, client| {
        let _ = stranger.send_to(&[b'S'; 200], client);
        thread::sleep(Duration::from_millis(50));
        let _ = server.send_to(b"real reply", client);
    });
    let client = udp_socket();
    t.step(format_args!(
        "called attempt(client {}, server {server_addr}, \"request\", 3000 ms, capacity 100)",
        addr_of(&client)
    ));
    t.step(format_args!(
        "on the request, a stranger {stranger_addr} sent 200 bytes, then the server sent \"real \
         reply\" 50 ms later"
    ));
    let got = call_within("lab::attempt", CALL_LIMIT, move || {
        lab::attempt(&client, server_addr, b"request", Duration::from_secs(3), 100)
    });
    let Some(got) = got else {
        t.fail(
            "Ok(Some(\"real reply\"))",
            format_args!("still waiting after {} ms", CALL_LIMIT.as_millis()),
            "the server's reply came 50 ms after the request: take it",
        )
    };
    t.step(format_args!("attempt returned {}", shown_attempt(&got)));
    match got {
        Ok(Some(reply)) => t.check_payload(
            "the reply",
            b"real reply",
            &reply,
            "the server's reply is the one to return",
        ),
        other => t.fail(
            "Ok(Some(\"real reply\"))",
            shown_attempt(&other),
            "a stranger's over-long datagram ended the attempt: check the sender first. Only the \
             server's over-long reply is an error (InvalidData); a stranger's is ignored like any \
             other stray datagram",
        ),
    }
}

#[cfg(unix)]
#[test]
fn step5_attempt_survives_interrupted_calls() {
    let t = Transcript::new(TIMEOUTS);
    let server = udp_socket();
    let server_addr = addr_of(&server);
    let reply = with_non_utf8("worth the wait");
    let scripted = reply.clone();
    let _fake = scripted_server(server, move |server, client| {
        thread::sleep(Duration::from_millis(200));
        let _ = server.send_to(&scripted, client);
    });
    let client = udp_socket();
    t.step(format_args!(
        "called attempt(client {}, server {server_addr}, \"slow?\", 3000 ms), sending its thread a \
         signal (SIGUSR1) every 20 ms; the server replies 200 ms after the request",
        addr_of(&client)
    ));
    let started = Instant::now();
    let got = call_within("lab::attempt", CALL_LIMIT, move || {
        common::testing::with_interrupts(move || {
            lab::attempt(&client, server_addr, b"slow?", Duration::from_secs(3), 100)
        })
    });
    let took = started.elapsed();
    let Some((got, signals)) = got else {
        t.fail(
            "Ok(Some(the reply)) after about 200 ms",
            format_args!("still waiting after {} ms", took.as_millis()),
            "the reply came 200 ms after the request: take it",
        )
    };
    t.step(format_args!(
        "attempt returned {} after {} ms and {signals} signals",
        shown_attempt(&got),
        took.as_millis()
    ));
    let why = "a signal interrupts recv_from with ErrorKind::Interrupted (Linux never restarts a \
               receive that has a timeout): that is neither a timeout nor a failure, so wait on \
               until the deadline";
    match got {
        Ok(Some(bytes)) => t.check_payload("the reply", &reply, &bytes, "attempt returns the reply"),
        other => t.fail(
            format_args!("Ok(Some({}))", sized(&reply)),
            shown_attempt(&other),
            why,
        ),
    }
    t.check(
        signals > 0,
        "at least one signal sent while the call ran",
        "none",
        "test set-up: the call returned before any signal, so it was not tested with one",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 6: retransmission and the whole client

fn options(timeout_ms: u64, retries: u32) -> lab::ClientOptions {
    lab::ClientOptions {
        timeout: Duration::from_millis(timeout_ms),
        retries,
        buffer: lab::MAX_DATAGRAM,
    }
}

/// A request's result as a failure message shows it.
fn shown_request(result: &Result<Vec<u8>, lab::RequestError>) -> String {
    match result {
        Ok(reply) => format!("Ok({})", sized(reply)),
        Err(e) => format!("Err({e:?}): {e}"),
    }
}

/// Why a request failed where it should have succeeded, from its error.
fn request_failed_why(result: &Result<Vec<u8>, lab::RequestError>, retries: u32) -> String {
    match result {
        Err(lab::RequestError::NoReply { attempts, .. }) if *attempts != retries + 1 => format!(
            "NoReply after {attempts} attempts with retries = {retries}: retries counts the \
             attempts after the first, so there are retries + 1 = {} in all",
            if retries == 0 {
                "1 attempt".to_owned()
            } else {
                format!("{} attempts", retries + 1)
            }
        ),
        _ => "the server answered every request at once: one of the attempts must get its reply \
              (step 5's attempt: see the step5_ tests)"
            .to_owned(),
    }
}

#[test]
fn step6_request_round_trip() {
    let t = Transcript::new(STEP6);
    let server = udp_socket();
    let server_addr = addr_of(&server);
    let _echo = echo_thread(server, 1);
    let request = with_non_utf8("round trip");
    t.step(format_args!(
        "called request({server_addr} (an echo server), {}, timeout 3000 ms, retries 0)",
        sized(&request)
    ));
    let sent = request.clone();
    let got = call_within("lab::request", CALL_LIMIT, move || {
        lab::request(server_addr, &sent, &options(3000, 0))
    });
    let Some(got) = got else {
        t.fail(
            "Ok(the echo)",
            format_args!("still waiting after {} ms", CALL_LIMIT.as_millis()),
            "the echo server replied at once",
        )
    };
    t.step(format_args!("request returned {}", shown_request(&got)));
    match &got {
        Ok(reply) => t.check_payload(
            "the reply",
            &request,
            reply,
            "request returns the reply's bytes exactly",
        ),
        Err(_) => t.fail(
            format_args!("Ok({})", sized(&request)),
            shown_request(&got),
            request_failed_why(&got, 0),
        ),
    }
}

#[test]
fn step6_retransmits_after_a_lost_request() {
    let t = Transcript::new(FAILURE_MODEL);
    let server = udp_socket();
    let server_addr = addr_of(&server);
    let _echo = echo_thread(server, 1);
    let lossy = Faults {
        drop_first: 1,
        ..Faults::default()
    };
    let relay =
        UdpRelay::start(server_addr, lossy, Faults::default(), 1).expect("test set-up: start a relay");
    let relay_addr = relay.addr();
    t.step(format_args!(
        "started a relay {relay_addr} in front of an echo server {server_addr}; it drops the first \
         datagram to the server"
    ));
    t.step(format_args!(
        "called request({relay_addr}, \"second time lucky\", timeout 150 ms, retries 2)"
    ));
    let got = call_within(
        "lab::request",
        Duration::from_millis(450) + HANG_SLACK,
        move || lab::request(relay_addr, b"second time lucky", &options(150, 2)),
    );
    let Some(got) = got else {
        t.fail(
            "Ok(\"second time lucky\") after about 150 ms",
            format_args!(
                "still waiting after {} ms",
                (Duration::from_millis(450) + HANG_SLACK).as_millis()
            ),
            format_args!(
                "{}: each attempt must end at its timeout. request's socket is new and has no read \
                 timeout: attempt sets one (set_read_timeout) and recv_datagram returns the \
                 timeout error (see step5_attempt_times_out_against_a_silent_socket and \
                 step2_returns_the_timeout_error)",
                "three attempts of 150 ms each end within 450 ms"
            ),
        )
    };
    t.step(format_args!(
        "request returned {}; the relay dropped {} datagrams",
        shown_request(&got),
        relay.stats().dropped.load(Ordering::Relaxed)
    ));
    match &got {
        Ok(reply) => t.check_payload(
            "the reply",
            b"second time lucky",
            reply,
            "the second attempt's reply",
        ),
        Err(_) => t.fail(
            "Ok(\"second time lucky\")",
            shown_request(&got),
            "the relay dropped the first request: after the attempt's timeout, send it again \
             (up to retries more times)",
        ),
    }
}

#[test]
fn step6_accepts_a_late_reply_to_an_earlier_attempt() {
    let t = Transcript::new(FAILURE_MODEL);
    let server = udp_socket();
    let server_addr = addr_of(&server);
    let reply = with_non_utf8("late, but here");
    let scripted = reply.clone();
    // The server answers the first request only, 300 ms late: after the first attempt's 200 ms.
    let fake = ServerThread::spawn("the test's slow server", move || {
        let Some((_, first)) = test_recv(&server) else {
            return Vec::new();
        };
        thread::sleep(Duration::from_millis(300));
        let _ = server.send_to(&scripted, first);
        let mut sources = vec![first];
        sources.extend(
            drain(&server, Duration::from_millis(100))
                .into_iter()
                .map(|(_, from)| from),
        );
        sources
    });
    t.step(format_args!(
        "called request({server_addr}, \"slow?\", timeout 200 ms, retries 3); the server answers \
         the first request only, 300 ms after it came"
    ));
    let limit = Duration::from_millis(800) + HANG_SLACK;
    let got = call_within("lab::request", limit, move || {
        lab::request(server_addr, b"slow?", &options(200, 3))
    });
    let sources = fake.join_within(Duration::from_secs(7));
    t.step(format_args!("the server received requests from {sources:?}"));
    let Some(got) = got else {
        t.fail(
            "Ok(the late reply) after about 300 ms",
            format_args!("still waiting after {} ms", limit.as_millis()),
            format_args!(
                "{}: each attempt must end at its timeout. request's socket is new and has no read \
                 timeout: attempt sets one (set_read_timeout) and recv_datagram returns the \
                 timeout error (see step5_attempt_times_out_against_a_silent_socket and \
                 step2_returns_the_timeout_error)",
                "four attempts of 200 ms end within 800 ms"
            ),
        )
    };
    t.step(format_args!("request returned {}", shown_request(&got)));
    let one_socket = sources.windows(2).all(|w| w[0] == w[1]);
    t.check(
        one_socket,
        "every attempt sent from one endpoint",
        format_args!("attempts sent from {sources:?}"),
        "a new socket for each attempt closes the port that a late reply to the earlier attempt \
         goes to: bind one socket before the first attempt and use it for all of them",
    );
    match &got {
        Ok(bytes) => t.check_payload("the reply", &reply, bytes, "the late reply is the reply"),
        Err(_) => t.fail(
            format_args!("Ok({})", sized(&reply)),
            shown_request(&got),
            "the reply to attempt 1 arrived during attempt 2: it answers the same request, so \
             accept it (keep receiving on the same socket)",
        ),
    }
}

#[test]
fn step6_gives_up_after_retries() {
    let t = Transcript::new(STEP6);
    let silent = udp_socket();
    let silent_addr = addr_of(&silent);
    t.step(format_args!(
        "called request({silent_addr} (which never answers), \"hello?\", timeout 100 ms, retries 2)"
    ));
    let started = Instant::now();
    let limit = Duration::from_millis(300) + HANG_SLACK;
    let got = call_within("lab::request", limit, move || {
        lab::request(silent_addr, b"hello?", &options(100, 2))
    });
    let took = started.elapsed();
    let Some(got) = got else {
        t.fail(
            "Err(NoReply) after about 300 ms",
            format_args!("still waiting after {} ms", limit.as_millis()),
            format_args!(
                "{}: each attempt must end at its timeout. request's socket is new and has no read \
                 timeout: attempt sets one (set_read_timeout) and recv_datagram returns the \
                 timeout error (see step5_attempt_times_out_against_a_silent_socket and \
                 step2_returns_the_timeout_error)",
                "three attempts of 100 ms each"
            ),
        )
    };
    t.step(format_args!(
        "request returned {} after {} ms",
        shown_request(&got),
        took.as_millis()
    ));
    let sent = drain(&silent, Duration::from_millis(100));
    t.step(format_args!(
        "the server received the request {} times",
        sent.len()
    ));
    t.check(
        sent.len() == 3,
        "the request 3 times",
        format_args!("the request {} times", sent.len()),
        "retries = 2 means 3 attempts in all: the first, then 2 more (retries + 1)",
    );
    match got {
        Err(lab::RequestError::NoReply {
            server,
            attempts,
            timeout,
        }) => t.check(
            server == silent_addr && attempts == 3 && timeout == Duration::from_millis(100),
            format_args!("NoReply {{ server: {silent_addr}, attempts: 3, timeout: 100ms }}"),
            format_args!("NoReply {{ server: {server}, attempts: {attempts}, timeout: {timeout:?} }}"),
            "NoReply reports the figures its error line shows: the server asked, how many times the \
             request went out (retries + 1), and the timeout of each attempt",
        ),
        other => t.fail(
            "Err(NoReply)",
            shown_request(&other),
            "when every attempt times out, request gives up with RequestError::NoReply",
        ),
    }
    let budget = Duration::from_millis(300);
    t.check(
        took >= budget * 8 / 10 && took <= budget + SLACK,
        "about 300 ms (3 attempts of 100 ms)",
        format_args!("{} ms", took.as_millis()),
        "each attempt waits its timeout, no more, no less",
    );
}

#[cfg(unix)]
#[test]
fn step6_request_survives_interrupted_calls() {
    let t = Transcript::new(STEP6);
    let server = udp_socket();
    let server_addr = addr_of(&server);
    let reply = with_non_utf8("signals or not");
    let scripted = reply.clone();
    let _fake = scripted_server(server, move |server, client| {
        thread::sleep(Duration::from_millis(200));
        let _ = server.send_to(&scripted, client);
    });
    t.step(format_args!(
        "called request({server_addr}, \"slow?\", timeout 3000 ms, retries 0), sending its thread a \
         signal (SIGUSR1) every 20 ms; the server replies 200 ms after the request"
    ));
    let got = call_within("lab::request", CALL_LIMIT, move || {
        common::testing::with_interrupts(move || lab::request(server_addr, b"slow?", &options(3000, 0)))
    });
    let Some((got, signals)) = got else {
        t.fail(
            "Ok(the reply) after about 200 ms",
            format_args!("still waiting after {} ms", CALL_LIMIT.as_millis()),
            "the reply came 200 ms after the request: take it",
        )
    };
    t.step(format_args!(
        "request returned {} after {signals} signals",
        shown_request(&got)
    ));
    match &got {
        Ok(bytes) => t.check_payload("the reply", &reply, bytes, "request returns the reply"),
        Err(lab::RequestError::NoReply { attempts, .. }) if *attempts != 1 => t.fail(
            format_args!("Ok({})", sized(&reply)),
            shown_request(&got),
            request_failed_why(&got, 0),
        ),
        Err(_) => t.fail(
            format_args!("Ok({})", sized(&reply)),
            shown_request(&got),
            "a signal interrupting a receive (ErrorKind::Interrupted) is no reason to give up: the \
             attempt waits on until its deadline (step 5's attempt: see \
             step5_attempt_survives_interrupted_calls)",
        ),
    }
    t.check(
        signals > 0,
        "at least one signal sent while the call ran",
        "none",
        "test set-up: the call returned before any signal, so it was not tested with one",
    );
}

#[test]
fn step6_binaries_talk_to_each_other() {
    let t = Transcript::new(THE_COMMAND_LINE);
    t.step("started the server binary with --port 0 --uppercase");
    let server = ServerProcess::start(BIN, &["server", "--port", "0", "--uppercase"]);
    let target = server.addr().to_string();
    let out = run_client(
        &t,
        &[
            "--server",
            &target,
            "--timeout",
            "300",
            "--retries",
            "1",
            "hello from the client, é",
        ],
        CLIENT_RUN_LIMIT,
    );
    t.check(
        out.status.success(),
        "exit status 0",
        format_args!("{}{}", out.status, server.log()),
        "the client got no reply from the server binary: if the server's log shows a reply, it \
         went to the wrong port (step 3); otherwise the client's error line says more (steps 5 \
         and 6)",
    );
    t.check_payload(
        "the client's stdout",
        "Reply: HELLO FROM THE CLIENT, é\n".as_bytes(),
        &out.stdout,
        "the client prints the server's uppercase reply",
    );
}

#[test]
fn step6_client_binary_reports_no_reply_in_one_line() {
    let t = Transcript::new(THE_COMMAND_LINE);
    let silent = udp_socket();
    let target = addr_of(&silent).to_string();
    let started = Instant::now();
    let out = run_client(
        &t,
        &[
            "--server",
            &target,
            "--timeout",
            "100",
            "--retries",
            "1",
            "hello?",
        ],
        Duration::from_millis(200) + HANG_SLACK,
    );
    let took = started.elapsed();
    t.check(
        !out.status.success(),
        "a non-zero exit status",
        out.status,
        "no reply is a failure: the client says so with its exit status",
    );
    t.check_payload(
        "the client's stdout",
        b"",
        &out.stdout,
        "nothing may be printed as a reply",
    );
    let err = text(&out.stderr);
    t.check(
        err.trim_end().lines().count() == 1,
        "one error line",
        format_args!("{}", sized(&out.stderr)),
        "the user gets one line that says what failed",
    );
    for part in [target.as_str(), "2 attempts", "100 ms"] {
        t.check(
            err.contains(part),
            format_args!("an error line containing {part:?}"),
            format_args!("{}", sized(&out.stderr)),
            "RequestError::NoReply's message names the server, the attempts and the timeout",
        );
    }
    t.check(
        took <= Duration::from_millis(200) + SLACK,
        "about 200 ms (2 attempts of 100 ms)",
        format_args!("{} ms", took.as_millis()),
        "each attempt waits its timeout, no more",
    );
}

#[test]
fn step6_client_binary_ignores_a_stray_datagram() {
    let t = Transcript::new(RECEIVE_FROM_ANY);
    let server = udp_socket();
    let server_addr = addr_of(&server);
    let _fake = scripted_server(server, move |server, client| {
        let _ = udp_socket().send_to(b"stray", client);
        thread::sleep(Duration::from_millis(50));
        let _ = server.send_to(b"genuine", client);
    });
    t.step(format_args!(
        "a test server {server_addr} answers a request with \"stray\" from another socket, then \
         \"genuine\" from its own"
    ));
    let out = run_client(
        &t,
        &["--server", &server_addr.to_string(), "--timeout", "3000", "hi"],
        CLIENT_RUN_LIMIT,
    );
    t.check(
        out.status.success(),
        "exit status 0",
        out.status,
        "the server's reply came 50 ms after the request",
    );
    t.check_payload(
        "the client's stdout",
        b"Reply: genuine\n",
        &out.stdout,
        "the stray datagram is not the server's reply: compare the sender with the server",
    );
}

#[test]
fn step6_client_binary_resolves_localhost_and_ipv6() {
    let t = Transcript::new(PORTS);
    // Bind where `localhost` resolves first on this host, so the first address tried answers.
    let first = ("localhost", 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .expect("test set-up: localhost resolves");
    let server = udp_socket_on(first.ip());
    let port = addr_of(&server).port();
    let _echo = echo_thread(server, 1);
    t.step(format_args!(
        "started a test echo server on {first} with port {port}"
    ));
    let out = run_client(
        &t,
        &["--server", &format!("localhost:{port}"), "by name"],
        CLIENT_RUN_LIMIT,
    );
    t.check(
        out.status.success(),
        "exit status 0",
        out.status,
        "the client resolves localhost and talks to it",
    );
    t.check_payload(
        "the client's stdout",
        b"Reply: by name\n",
        &out.stdout,
        "the client prints the echo",
    );

    if !ipv6_loopback_available() {
        notice(
            "no IPv6 loopback (::1) on this host: skipped the [::1]:PORT part of step6_client_binary_resolves_localhost_and_ipv6",
        );
        return;
    }
    let server = udp_socket_on(LOCALHOST_V6);
    let target = addr_of(&server).to_string();
    let _echo6 = echo_thread(server, 1);
    t.step(format_args!("started a test echo server on {target}"));
    let out = run_client(&t, &["--server", &target, "over IPv6"], CLIENT_RUN_LIMIT);
    t.check(
        out.status.success(),
        "exit status 0",
        out.status,
        "an IPv4 socket cannot send to [::1]: bind the server's family, ephemeral_for(server)",
    );
    t.check_payload(
        "the client's stdout",
        b"Reply: over IPv6\n",
        &out.stdout,
        "the client prints the echo",
    );
}
