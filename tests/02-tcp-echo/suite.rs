//! Lab 02 grading suite: TCP echo and stream framing.
//!
//! Shared by `lab02-tcp-echo` (the student's work) and `solution02-tcp-echo` (the reference):
//! each package's `tests/grade.rs` defines `lab` (its library) and `BIN` (its binary) and
//! includes this file. Tests are named `stepN_...` after the step of the book chapter they check,
//! so `cargo test -p lab02-tcp-echo step3_` runs the checks of step 3.
//!
//! Every test stays on loopback with ephemeral ports, sets timeouts on every socket, runs code
//! that might block on a [`Worker`] thread, and fails within seconds when the code under test
//! panics (a `todo!()`) or hangs. Loopback never splits or merges writes on its own, so the
//! tests do it on purpose: `partial_io` wrappers give short reads, short writes and
//! `Interrupted`, `common::tcp_relay` slices a stream into 1-3 byte pieces or coalesces writes,
//! and `common::testing::with_interrupts` sends signals to a thread blocked in a socket call.
//!
//! Failures are transcripts (`common::testing::Transcript`): the numbered steps the test took,
//! then what was expected, what came back (payloads as escaped text with their length), why
//! that is a mistake, and the section of the book that explains it. The bug zoo in
//! `tests/02-tcp-echo/mutants/` proves that each classic mistake fails a test here, with a
//! message that names it (`cargo lab dev mutants --lab 2`).

use std::fmt;
use std::io::{self, BufRead, BufReader, Cursor, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::tcp_relay::{Shaping, TcpRelay};
#[cfg(unix)]
use common::testing::with_interrupts;
use common::testing::{
    IO_TIMEOUT, ServerProcess, Transcript, is_timeout, panic_message, set_stream_timeouts, sized,
    tcp_connect, tcp_listener, tcp_pair,
};
use partial_io::{PartialOp, PartialRead, PartialWrite};

use crate::{BIN, lab};

// The book's sections the failures cite.
const LISTENING: &str = "Lab 02 § Listening and connected sockets";
const BACKLOG: &str = "Lab 02 § The backlog";
const SHORT: &str = "Lab 02 § Short reads and short writes";
const FRAMING: &str = "Lab 02 § Byte order and framing";
const EOF: &str = "Lab 02 § End of stream";
const ITERATIVE: &str = "Lab 02 § Iterative servers";
const SLOW: &str = "Lab 02 § Slow clients and the message timeout";
const SETUP: &str = "Lab 02 § Connection set-up";
const PROTOCOL: &str = "Lab 02 § The protocol and the programs";
const CLI: &str = "Lab 02 § The command line";
const STEP8: &str = "Lab 02 § Step 8: The iterative accept loop";
const STEP10: &str = "Lab 02 § Step 10: The client's exchange, with half-close";

/// How long a test lets a client binary run before killing it: every run has its timeouts, and
/// the longest is 2000 ms.
const CLIENT_RUN_LIMIT: Duration = Duration::from_secs(4);
/// The longest a library call that should return at once may take before the test calls it
/// hung.
const CALL_LIMIT: Duration = Duration::from_secs(4);
/// How long a test waits for bytes (or a log line) that a correct implementation sends at once.
const QUIET: Duration = Duration::from_secs(2);
/// The read and write timeouts of the test's own servers, and of the client's connection in the
/// step 10 tests: what a correct peer sends comes at once.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// Extra time allowed over a computed timeout budget, for slow, busy machines.
const SLACK: Duration = Duration::from_millis(2000);
/// How often waiting loops look again.
const POLL: Duration = Duration::from_millis(20);
/// When a test's data arrives in the tests that interrupt a blocked call with signals.
#[cfg(unix)]
const LATE: Duration = Duration::from_millis(200);

/// Bytes that are not UTF-8, and non-ASCII UTF-8 ("é"), with a NUL and a `\r`: they must pass
/// through every path unchanged (and uppercasing must leave them alone).
const NON_UTF8: &[u8] = b"caf\xe9 \xc3\xa9 \xff\xfe\x00\x80\r ok";

fn addr_of(listener: &TcpListener) -> SocketAddr {
    listener.local_addr().expect("a bound socket has a local address")
}

fn local(stream: &TcpStream) -> SocketAddr {
    stream.local_addr().expect("local address")
}

/// A frame built by hand: 2-byte big-endian length, then the payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).expect("test frames fit");
    let mut out = vec![(len >> 8) as u8, (len & 0xff) as u8];
    out.extend_from_slice(payload);
    out
}

/// `bytes` followed by a newline.
fn line(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.push(b'\n');
    out
}

/// Operations for `partial_io`: every read or write limited to 1-3 bytes, seeded.
fn pieces(seed: u64) -> impl Iterator<Item = PartialOp> + Send + 'static {
    let mut rng = fastrand::Rng::with_seed(seed);
    std::iter::repeat_with(move || PartialOp::Limited(rng.usize(1..=3)))
}

/// Operations for `partial_io`: `Interrupted` before every piece of 1-3 bytes.
fn interrupted_pieces(seed: u64) -> impl Iterator<Item = PartialOp> + Send + 'static {
    pieces(seed).flat_map(|op| [PartialOp::Err(io::ErrorKind::Interrupted), op])
}

/// Bytes 0, 1, 2 ... 250, 0, 1 ... : a pattern in which a lost or repeated piece shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Where two byte strings first differ, for failure messages about long data.
fn first_difference(got: &[u8], expected: &[u8]) -> String {
    match got.iter().zip(expected).position(|(a, b)| a != b) {
        Some(i) => format!("first difference at byte {i}"),
        None => format!("{} bytes expected, {} received", expected.len(), got.len()),
    }
}

/// Results of repeated `read_line` or `read_frame` calls, for failure messages.
type Reads = Vec<Result<Option<Vec<u8>>, io::ErrorKind>>;

fn describe(reads: &[Result<Option<Vec<u8>>, io::ErrorKind>]) -> String {
    let each: Vec<String> = reads
        .iter()
        .map(|r| match r {
            Ok(Some(bytes)) => sized(bytes),
            Ok(None) => "None (end of stream)".to_owned(),
            Err(kind) => format!("error {kind:?}"),
        })
        .collect();
    format!("[{}]", each.join(", "))
}

/// `Ok(Some(..))` for each of `expected`, then `Ok(None)`: the stream's end.
fn lines_of(expected: &[&[u8]]) -> Reads {
    let mut reads: Reads = expected.iter().map(|l| Ok(Some(l.to_vec()))).collect();
    reads.push(Ok(None));
    reads
}

/// A socket bound to a loopback port but not listening: connecting to it is refused at once,
/// and no other test can take the port while it is held.
fn closed_port() -> (socket2::Socket, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    socket.bind(&any.into()).expect("bind");
    let addr = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("bound address");
    (socket, addr)
}

/// Closes `stream` abortively: SO_LINGER 0 makes the close send a reset (RST).
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(stream);
}

/// A connection to `addr` whose receive buffer is small (set before the handshake, so the
/// window stays small), with [`IO_TIMEOUT`] set: a peer's writes soon block when it does not
/// read.
fn connect_small(addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    socket
        .connect_timeout(&addr.into(), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("test set-up: cannot connect to {addr}: {e}"));
    let stream: TcpStream = socket.into();
    set_stream_timeouts(&stream);
    stream
}

/// Makes the send buffer of `stream` small, so its writes block soon when the peer does not
/// read.
fn small_send_buffer(stream: &TcpStream) {
    socket2::SockRef::from(stream)
        .set_send_buffer_size(16 * 1024)
        .expect("SO_SNDBUF");
}

// ---------------------------------------------------------------------------------------------
// Running the code under test, and reading what it sends

/// Code under test (or a test-side server) running on a thread of its own. Its panic, a
/// skeleton's `todo!()` say, fails the test at once with the panic's message; a call that does
/// not return is reported by the test with its own explanation instead of hanging the suite (the
/// thread is left behind, and ends with the test process).
struct Worker<T> {
    name: String,
    handle: Option<JoinHandle<T>>,
    result: Option<T>,
}

impl<T: Send + 'static> Worker<T> {
    fn spawn(name: &str, f: impl FnOnce() -> T + Send + 'static) -> Self {
        let handle = thread::Builder::new()
            .name(name.to_owned())
            .spawn(f)
            .unwrap_or_else(|e| panic!("test set-up: cannot spawn thread {name}: {e}"));
        Worker {
            name: name.to_owned(),
            handle: Some(handle),
            result: None,
        }
    }

    /// Whether it has returned (its result is kept); panics with its message if it panicked.
    fn done(&mut self) -> bool {
        if self.result.is_some() {
            return true;
        }
        if !self.handle.as_ref().is_some_and(JoinHandle::is_finished) {
            return false;
        }
        let Some(handle) = self.handle.take() else {
            return false;
        };
        match handle.join() {
            Ok(value) => {
                self.result = Some(value);
                true
            }
            Err(payload) => panic!("{} panicked: {}", self.name, panic_message(&*payload)),
        }
    }

    /// Waits up to `limit` for it to return: its result, or `None` while it is still running.
    fn wait(&mut self, limit: Duration) -> Option<T> {
        let deadline = Instant::now() + limit;
        loop {
            if self.done() {
                return self.result.take();
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL);
        }
    }

    /// Reads from `stream` (see [`read_some`]), failing at once if this thread panics.
    fn read(&mut self, stream: &TcpStream, want: Option<usize>, quiet: Duration) -> (Vec<u8>, End) {
        read_watching(stream, want, quiet, &mut || {
            self.done();
        })
    }
}

impl<T: Send + fmt::Debug + 'static> Worker<T> {
    /// What it is doing, for failure messages: "lab::serve_connection returned Ok(2)".
    fn status(&mut self) -> String {
        self.done();
        match &self.result {
            Some(value) => format!("{} returned {value:?}", self.name),
            None => format!("{} was still running", self.name),
        }
    }
}

/// What a [`Worker::wait`] gave, for failure messages: the value, or "still running".
struct Outcome<'a, T>(&'a Option<T>);

impl<T: fmt::Debug> fmt::Display for Outcome<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(value) => write!(f, "{value:?}"),
            None => f.write_str("still running"),
        }
    }
}

/// Runs `f`, a call into the code under test, on a [`Worker`] and waits up to `limit` for it;
/// fails the test when it is still running then.
fn call<T: Send + 'static>(
    t: &Transcript,
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let mut worker = Worker::spawn(what, f);
    match worker.wait(limit) {
        Some(value) => value,
        None => t.fail(
            format_args!("{what} to return within {} ms", limit.as_millis()),
            "it was still running: blocked in a call, or looping",
            "this call has everything it needs at once; a loop that never ends, or a wait for \
             something that never comes, hangs its caller",
        ),
    }
}

/// How a read by the test ended.
enum End {
    /// All the bytes wanted arrived.
    Complete,
    Eof,
    Failed(io::Error),
    /// Nothing arrived for this long.
    Quiet(Duration),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Complete => Ok(()),
            End::Eof => f.write_str(", then the stream ended (EOF)"),
            End::Failed(e) => write!(f, ", then the stream failed: {e}"),
            End::Quiet(d) => write!(f, ", then nothing more for {} ms", d.as_millis()),
        }
    }
}

/// What arrived, with how the read ended: `"one\n" (4 bytes), then the stream ended (EOF)`.
fn arrived(bytes: &[u8], end: &End) -> String {
    format!("{}{end}", sized(bytes))
}

/// Reads from `stream` until `want` bytes have arrived (`None`: until EOF), the stream ends or
/// fails, or `quiet` passes without a byte.
fn read_some(stream: &TcpStream, want: Option<usize>, quiet: Duration) -> (Vec<u8>, End) {
    read_watching(stream, want, quiet, &mut || {})
}

fn read_watching(
    stream: &TcpStream,
    want: Option<usize>,
    quiet: Duration,
    check: &mut dyn FnMut(),
) -> (Vec<u8>, End) {
    let restore = stream.read_timeout().ok().flatten();
    let _ = stream.set_read_timeout(Some(POLL));
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut last = Instant::now();
    let mut reader = stream;
    let end = loop {
        let room = want.map_or(buf.len(), |w| w.saturating_sub(got.len()).min(buf.len()));
        if room == 0 {
            break End::Complete;
        }
        match reader.read(&mut buf[..room]) {
            Ok(0) => break End::Eof,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                last = Instant::now();
                continue;
            }
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            // A close with our bytes unread resets the connection: that is its end too.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break End::Eof,
            Err(e) => break End::Failed(e),
        }
        check();
        if last.elapsed() >= quiet {
            break End::Quiet(quiet);
        }
    };
    let _ = stream.set_read_timeout(restore);
    (got, end)
}

/// Waits up to `timeout` until `server` has logged `count` lines containing `needle`; fails the
/// test with its log otherwise.
fn await_log(
    t: &Transcript,
    server: &mut ServerProcess,
    needle: &str,
    count: usize,
    timeout: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let found: Vec<String> = server
            .stderr_lines()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect();
        if found.len() >= count {
            return found;
        }
        let exited = server.wait_exit(Duration::ZERO);
        if exited.is_some() || Instant::now() >= deadline {
            let log = server.stderr_lines();
            let tail = log[log.len().saturating_sub(8)..].join("\n    ");
            t.fail(
                format_args!(
                    "{count} log line(s) containing {needle:?} within {} ms",
                    timeout.as_millis()
                ),
                format_args!(
                    "{} such line(s){}; the end of its stderr:\n    {tail}",
                    found.len(),
                    if exited.is_some() {
                        ", and the server exited"
                    } else {
                        ""
                    }
                ),
                "the server logs one line per event on stderr: each connection when it is \
                 accepted and when it ends, with the client's endpoint and why it ended",
            );
        }
        thread::sleep(POLL);
    }
}

fn config(framing: lab::Framing, uppercase: bool) -> lab::ServerConfig {
    lab::ServerConfig {
        framing,
        uppercase,
        max_line: 1000,
        idle_timeout: Some(IO_TIMEOUT),
        message_timeout: None,
        max_connections: None,
    }
}

/// A listener and a worker that accepts one connection, lets `prepare` adjust the accepted
/// stream, and runs the student's `serve_connection` on it.
fn serve_one_with(
    config: lab::ServerConfig,
    prepare: impl FnOnce(&TcpStream) + Send + 'static,
) -> (SocketAddr, Worker<io::Result<u64>>) {
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let worker = Worker::spawn("lab::serve_connection", move || {
        let (stream, _) = listener.accept().expect("accept");
        prepare(&stream);
        lab::serve_connection(stream, &config)
    });
    (addr, worker)
}

fn serve_one(config: lab::ServerConfig) -> (SocketAddr, Worker<io::Result<u64>>) {
    serve_one_with(config, |_| {})
}

/// Runs the client binary with `args` to completion, capturing its output, or fails the test
/// when it is still running after [`CLIENT_RUN_LIMIT`] (it is then killed and reaped).
fn run_client(t: &Transcript, args: &[&str]) -> std::process::Output {
    use std::process::{Command, Stdio};
    let mut child = Command::new(BIN)
        .arg("client")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("test set-up: cannot start the client binary: {e}"));
    let collect = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = collect(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = collect(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + CLIENT_RUN_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                t.fail(
                    format_args!(
                        "`client {}` to exit within {} ms",
                        args.join(" "),
                        CLIENT_RUN_LIMIT.as_millis()
                    ),
                    "it was still running, and was killed",
                    "every step of the client is bounded by --timeout: connect with connect_timeout, \
                     and set the stream's read and write timeouts",
                );
            }
        }
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `attempt`, one scenario under signals that returns how many signals
/// [`with_interrupts`] sent, up to 3 times, until at least 2 were sent while it ran: on a busy
/// machine the signalling thread may be starved during the 200 ms a scenario lasts, and then
/// nothing was interrupted. Each attempt checks the code under test itself, so a mistake fails
/// the first one.
#[cfg(unix)]
fn under_signals(t: &Transcript, mut attempt: impl FnMut(&Transcript) -> usize) {
    for _ in 0..3 {
        let signals = attempt(t);
        t.step(format_args!("{signals} signals were sent"));
        if signals >= 2 {
            return;
        }
        t.step("fewer than 2: the machine is busy, so the test tried again");
    }
    t.fail(
        "at least 2 signals sent while the call waited, in one of 3 attempts",
        "fewer each time",
        "test set-up: the machine is too busy for the signals to interrupt anything",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 1: a listening socket

#[test]
fn step1_listen_on_port_zero_gives_an_ephemeral_port() {
    let t = Transcript::new(LISTENING);
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let why = "port 0 asks the operating system for a free ephemeral port, a new one each time: \
               listen on the address given, never on a fixed port of your own";
    let first = t.ok(lab::listen(any), "lab::listen(127.0.0.1:0)", why);
    let local = addr_of(&first);
    t.step(format_args!(
        "lab::listen(127.0.0.1:0) returned a listener on {local}"
    ));
    t.check(
        local.ip().to_string() == "127.0.0.1" && local.port() != 0,
        "a listener on 127.0.0.1 and an ephemeral port (local_addr() shows the real port, not 0)",
        local,
        why,
    );
    let second = t.ok(lab::listen(any), "a second lab::listen(127.0.0.1:0)", why);
    let other = addr_of(&second);
    t.step(format_args!(
        "a second lab::listen(127.0.0.1:0) returned a listener on {other}"
    ));
    t.check(other.port() != local.port(), "another ephemeral port", other, why);
    let client = TcpStream::connect_timeout(&local, IO_TIMEOUT);
    t.ok(
        client,
        &format!("connecting to {local}"),
        "the listener must listen: TcpListener::bind does socket, bind and listen in one call",
    );
}

#[test]
fn step1_listen_reports_a_port_in_use() {
    let t = Transcript::new(LISTENING);
    let holder = tcp_listener();
    let addr = addr_of(&holder);
    t.step(format_args!("the test listened on {addr}"));
    t.step(format_args!("called lab::listen({addr})"));
    let why = "another socket already listens on that port: return bind's AddrInUse error as it \
               is (the binary reports it); listening on another port instead hides the problem, and \
               clients never find the server";
    match lab::listen(addr) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {}
        Err(e) => t.fail("error AddrInUse", format_args!("error {:?}: {e}", e.kind()), why),
        Ok(listener) => t.fail(
            "error AddrInUse",
            format_args!("a listener on {}", addr_of(&listener)),
            why,
        ),
    }
}

#[test]
fn step1_connections_wait_in_the_backlog_until_accepted() {
    let t = Transcript::new(BACKLOG);
    let listener = t.ok(
        lab::listen("127.0.0.1:0".parse().expect("addr")),
        "lab::listen(127.0.0.1:0)",
        "port 0 asks for a free ephemeral port",
    );
    let addr = addr_of(&listener);
    t.step(format_args!(
        "lab::listen returned a listener on {addr}; nobody calls accept yet"
    ));
    // Three clients connect and send before anyone calls accept: the kernel has already
    // completed their handshakes and queues them.
    let mut clients = Vec::new();
    for i in 0..3 {
        let connected = TcpStream::connect_timeout(&addr, IO_TIMEOUT);
        let mut c = t.ok(
            connected,
            &format!("client {i} connecting"),
            "a listening socket completes handshakes on its own and queues the connections in \
             its backlog: a socket that is bound but not listening refuses them",
        );
        set_stream_timeouts(&c);
        let request = format!("client {i}");
        c.write_all(request.as_bytes()).expect("send");
        t.sent(request.as_bytes(), local(&c), addr);
        clients.push(c);
    }
    for (i, client) in clients.iter().enumerate() {
        let listener = listener.try_clone().expect("clone");
        let (mut accepted, peer) = call(
            &t,
            "accept on the listener from lab::listen",
            CALL_LIMIT,
            move || listener.accept().expect("accept"),
        );
        t.step(format_args!("accept returned a connection from {peer}"));
        set_stream_timeouts(&accepted);
        t.check(
            peer == local(client),
            format_args!("client {i}, {}", local(client)),
            peer,
            "accept takes the oldest waiting connection: the backlog is a queue",
        );
        let mut buf = [0u8; 8];
        let _ = accepted.read_exact(&mut buf);
        t.check_bytes(
            "the queued bytes",
            format!("client {i}").as_bytes(),
            &buf,
            "the bytes a client sends while its connection waits in the backlog wait in the kernel",
        );
    }
}

#[test]
fn step1_server_binary_prints_its_ready_line() {
    let t = Transcript::new(CLI);
    let server = ServerProcess::start(BIN, &["server", "--port", "0"]);
    let addr = server.addr();
    t.step(format_args!(
        "started `server --port 0`; its ready line said {addr}"
    ));
    t.check(
        addr.ip().is_loopback() && addr.port() != 0,
        "listening on 127.0.0.1 and an ephemeral port (not 0)",
        addr,
        "the server binds 127.0.0.1 by default, and its ready line shows the port the OS chose",
    );
    t.ok(
        TcpStream::connect_timeout(&addr, IO_TIMEOUT),
        &format!("connecting to {addr}"),
        "the ready line comes once the server listens",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 2: write all of it

#[test]
fn step2_writes_everything_through_1_to_3_byte_writes() {
    let t = Transcript::new(SHORT);
    let data = pattern(1000);
    let expected = data.clone();
    t.step("called lab::write_fully with 1000 bytes on a writer that takes only 1-3 bytes per write call");
    let written = call(&t, "lab::write_fully", CALL_LIMIT, move || {
        let mut out = PartialWrite::new(Vec::new(), pieces(2));
        lab::write_fully(&mut out, &data).map(|()| out.into_inner())
    });
    let why = "each write returns how many bytes it took, which may be fewer than offered (a \
               short write): offer the rest again, from where the last write stopped, until nothing \
               is left";
    let written = t.ok(written, "lab::write_fully", why);
    t.check(
        written == expected,
        format_args!("the writer holds {}", sized(&expected)),
        format_args!(
            "it holds {} ({})",
            sized(&written),
            first_difference(&written, &expected)
        ),
        why,
    );
}

#[test]
fn step2_retries_after_interrupted() {
    let t = Transcript::new(SHORT);
    let ops = [
        PartialOp::Err(io::ErrorKind::Interrupted),
        PartialOp::Limited(2),
        PartialOp::Err(io::ErrorKind::Interrupted),
        PartialOp::Limited(3),
    ];
    t.step(
        "called lab::write_fully with \"interrupted twice\" on a writer whose 1st and 3rd write \
         calls fail with Interrupted, the 2nd takes 2 bytes and the rest take all",
    );
    let written = call(&t, "lab::write_fully", CALL_LIMIT, move || {
        let mut out = PartialWrite::new(Vec::new(), ops);
        lab::write_fully(&mut out, b"interrupted twice").map(|()| out.into_inner())
    });
    let why = "Interrupted means a signal arrived before anything was written: nothing happened, \
               so write again; it is not an error to return";
    match written {
        Ok(written) => t.check_bytes("the writer", b"interrupted twice", &written, why),
        Err(e) => t.fail("Ok(())", format_args!("error {:?}", e.kind()), why),
    }
}

/// A writer that takes nothing: `Ok(0)` for the first 1000 calls, then an error, so that a
/// loop that does not stop at `Ok(0)` ends anyway and the test can say so.
struct TakesNothing {
    calls: Arc<AtomicU64>,
}

impl Write for TakesNothing {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        if self.calls.fetch_add(1, Ordering::Relaxed) >= 1000 {
            Err(io::Error::other(
                "the test's writer: called again after 1000 writes of 0 bytes",
            ))
        } else {
            Ok(0)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn step2_a_writer_that_takes_nothing_is_write_zero() {
    let t = Transcript::new(SHORT);
    let calls = Arc::new(AtomicU64::new(0));
    let out = TakesNothing {
        calls: Arc::clone(&calls),
    };
    t.step("called lab::write_fully with \"nowhere to go\" on a writer whose every write returns Ok(0)");
    let result = call(&t, "lab::write_fully", CALL_LIMIT, move || {
        let mut out = out;
        lab::write_fully(&mut out, b"nowhere to go").map_err(|e| e.kind())
    });
    let calls = calls.load(Ordering::Relaxed);
    t.check(
        result == Err(io::ErrorKind::WriteZero),
        "error WriteZero",
        format_args!("{result:?} after {calls} write calls"),
        "a write that takes 0 bytes of a non-empty buffer will never take more: return WriteZero; \
         looping on Ok(0) spins forever",
    );
}

#[test]
fn step2_other_errors_are_returned() {
    let t = Transcript::new(SHORT);
    let ops = [PartialOp::Limited(3), PartialOp::Err(io::ErrorKind::BrokenPipe)];
    t.step(
        "called lab::write_fully with \"peer gone\" on a writer whose first write takes 3 bytes \
         and whose second fails with BrokenPipe",
    );
    let (result, written) = call(&t, "lab::write_fully", CALL_LIMIT, move || {
        let mut out = PartialWrite::new(Vec::new(), ops);
        let result = lab::write_fully(&mut out, b"peer gone").map_err(|e| e.kind());
        (result, out.into_inner())
    });
    t.check(
        result == Err(io::ErrorKind::BrokenPipe),
        "error BrokenPipe",
        format_args!("{result:?}"),
        "BrokenPipe means the peer has gone: every error but Interrupted goes back to the caller",
    );
    t.check_bytes("the writer", b"pee", &written, "the first write took 3 bytes");
}

#[cfg(unix)]
#[test]
fn step2_retries_a_socket_write_interrupted_by_a_signal() {
    const LEN: usize = 1024 * 1024;
    let t = Transcript::new(SHORT);
    under_signals(&t, |t| {
        let (client, server) = tcp_pair();
        small_send_buffer(&server);
        socket2::SockRef::from(&client)
            .set_recv_buffer_size(16 * 1024)
            .expect("SO_RCVBUF");
        t.step("connected a pair of sockets with small buffers and 5 s timeouts");
        t.step(
            "called lab::write_fully with 1 MiB on the server end, with SIGUSR1 sent to its thread \
         every 20 ms: its blocked writes fail with Interrupted",
        );
        let mut worker = Worker::spawn("lab::write_fully", move || {
            let (result, signals) = with_interrupts(|| lab::write_fully(&mut &server, &pattern(LEN)));
            (result.map_err(|e| e.to_string()), signals)
        });
        thread::sleep(LATE);
        t.step(format_args!("waited {} ms, then read", LATE.as_millis()));
        let (got, end) = worker.read(&client, Some(LEN), QUIET);
        t.received(&got, "the server end");
        let why = "a signal that interrupts a blocked write makes it fail with Interrupted (or return \
               a short count): write again, it is not an error";
        let Some((result, signals)) = worker.wait(QUIET) else {
            t.fail("lab::write_fully to return", worker.status(), why);
        };
        t.ok(result, "lab::write_fully", why);
        t.check(
            got == pattern(LEN),
            "all 1 MiB, in order",
            format_args!(
                "{} ({})",
                arrived(&got, &end),
                first_difference(&got, &pattern(LEN))
            ),
            why,
        );
        signals
    });
}

// ---------------------------------------------------------------------------------------------
// Step 3: echo a raw byte stream

/// A worker running the student's `echo_raw` on the server end of a fresh connection.
fn echo_worker(uppercase: bool) -> (TcpStream, Worker<io::Result<u64>>) {
    let (client, server) = tcp_pair();
    let worker = Worker::spawn("lab::echo_raw", move || {
        lab::echo_raw(&mut &server, &mut &server, uppercase)
    });
    (client, worker)
}

#[test]
fn step3_echoes_a_message_and_returns_at_eof() {
    let t = Transcript::new(EOF);
    let (mut client, mut worker) = echo_worker(false);
    let request = b"hello, stream";
    client.write_all(request).expect("send");
    t.sent(request, local(&client), "lab::echo_raw");
    client.shutdown(Shutdown::Write).expect("half-close");
    t.step("half-closed the connection (shutdown(Write)): echo_raw's next read returns 0");
    let (echo, end) = worker.read(&client, None, QUIET);
    t.received(&echo, "lab::echo_raw");
    let status = worker.status();
    t.check(
        echo == request && matches!(end, End::Eof),
        format_args!("the echo {}, then EOF", sized(request)),
        format_args!("{}; {status}", arrived(&echo, &end)),
        "echo exactly the bytes each read returned (&buf[..n], not the whole buffer), and stop at \
         the read that returns 0, the client's end of stream",
    );
    let result = worker.wait(QUIET).map(|r| r.map_err(|e| e.to_string()));
    t.check(
        result == Some(Ok(13)),
        "echo_raw returns Ok(13), the number of bytes echoed, once read returns 0",
        Outcome(&result),
        "read returning Ok(0) is the end of the stream: return the byte count",
    );
}

#[test]
fn step3_echoes_before_the_client_closes() {
    let t = Transcript::new(SHORT);
    let (mut client, mut worker) = echo_worker(false);
    for word in [b"ping", b"pong"] {
        client.write_all(word).expect("send");
        t.sent(word, local(&client), "lab::echo_raw");
        let (echo, end) = worker.read(&client, Some(4), Duration::from_secs(1));
        t.received(&echo, "lab::echo_raw");
        t.check_bytes(
            "the echo while the connection stays open",
            word,
            &echo,
            format_args!(
                "{}: write back what each read returns, at once; a server that reads until EOF \
                 before it writes never answers a client that waits for its echo (as the \
                 lecture's Python client does)",
                arrived(&echo, &end)
            ),
        );
    }
    client.shutdown(Shutdown::Write).expect("half-close");
    t.step("half-closed the connection");
    let result = worker.wait(QUIET).map(|r| r.map_err(|e| e.to_string()));
    t.check(
        result == Some(Ok(8)),
        "Ok(8)",
        Outcome(&result),
        "echo_raw returns the number of bytes echoed",
    );
}

#[test]
fn step3_uppercase_changes_only_ascii_letters() {
    let t = Transcript::new(PROTOCOL);
    let (mut client, mut worker) = echo_worker(true);
    let mut request = b"Hello, TCP 7896! ".to_vec();
    request.extend_from_slice(NON_UTF8);
    let expected = request.to_ascii_uppercase();
    client.write_all(&request).expect("send");
    t.sent(&request, local(&client), "lab::echo_raw with uppercase");
    client.shutdown(Shutdown::Write).expect("half-close");
    t.step("half-closed the connection");
    let (echo, end) = worker.read(&client, None, QUIET);
    t.received(&echo, "lab::echo_raw");
    t.check(
        echo == expected,
        format_args!("the echo {}", sized(&expected)),
        arrived(&echo, &end),
        "uppercase changes ASCII letters only (make_reply): non-ASCII bytes, UTF-8 like \"é\" \
         (\\xc3\\xa9) or not UTF-8 at all, are echoed unchanged; turning the bytes into a String \
         and calling to_uppercase changes them",
    );
}

#[test]
fn step3_echoes_8_mib_through_short_writes_while_the_client_reads() {
    const LEN: usize = 8 * 1024 * 1024;
    let t = Transcript::new(SHORT);
    let (client, server) = tcp_pair();
    let mut worker = Worker::spawn("lab::echo_raw", move || {
        // The server's writes take a random 1 to 64 KiB each, as a busy socket's might.
        let mut rng = fastrand::Rng::with_seed(8);
        let ops = std::iter::repeat_with(move || PartialOp::Limited(rng.usize(1..=64 * 1024)));
        let mut output = PartialWrite::new(&server, ops);
        lab::echo_raw(&mut &server, &mut output, false)
    });
    t.step("ran lab::echo_raw on a connection whose writes take only 1 byte to 64 KiB each");
    let sender = client.try_clone().expect("clone");
    let writer = thread::spawn(move || {
        let mut sender = sender;
        sender
            .set_write_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let result = sender.write_all(&pattern(LEN));
        let _ = sender.shutdown(Shutdown::Write);
        result
    });
    t.step("sent 8 MiB (bytes 0, 1, ... 250, 0, 1, ...) from another thread, then half-closed");
    let (echo, end) = worker.read(&client, None, QUIET);
    t.step(format_args!("read {} bytes of echo{end}", echo.len()));
    let sent = writer.join().expect("writer thread");
    t.ok(
        sent,
        "sending 8 MiB while reading the echo",
        "echo_raw must keep reading while it echoes",
    );
    t.check(
        echo.len() == LEN && echo == pattern(LEN),
        "the 8 MiB echoed, in order",
        first_difference(&echo, &pattern(LEN)),
        "the server's writes took fewer bytes than offered: write every chunk whole \
         (write_fully), and only the n bytes the read returned",
    );
    let result = worker.wait(QUIET).map(|r| r.map_err(|e| e.to_string()));
    t.check(
        result == Some(Ok(LEN as u64)),
        format_args!("Ok({LEN})"),
        Outcome(&result),
        "echo_raw returns the number of bytes echoed",
    );
}

#[test]
fn step3_returns_the_read_timeout_error() {
    let t = Transcript::new(ITERATIVE);
    let (client, server) = tcp_pair();
    server
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    t.step("ran lab::echo_raw on a connection with a 200 ms read timeout; the client sends nothing");
    let started = Instant::now();
    let mut worker = Worker::spawn("lab::echo_raw", move || {
        lab::echo_raw(&mut &server, &mut &server, false).map_err(|e| e.kind())
    });
    let result = worker.wait(Duration::from_millis(200) + SLACK);
    t.check(
        matches!(
            result,
            Some(Err(io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
        ),
        "within 2200 ms, error WouldBlock or TimedOut (the read timeout)",
        format_args!("{} after {} ms", Outcome(&result), started.elapsed().as_millis()),
        "a read timeout is an error to return: not the end of the stream, and not a reason to read \
         again",
    );
    drop(client);
}

#[test]
fn step3_retries_a_read_after_interrupted() {
    let t = Transcript::new(SHORT);
    let ops = [
        PartialOp::Err(io::ErrorKind::Interrupted),
        PartialOp::Limited(3),
        PartialOp::Err(io::ErrorKind::Interrupted),
        PartialOp::Unlimited,
    ];
    t.step(
        "called lab::echo_raw on a reader of \"interrupted twice\" whose 1st and 3rd reads fail \
         with Interrupted",
    );
    let (result, echo) = call(&t, "lab::echo_raw", CALL_LIMIT, move || {
        let mut input = PartialRead::new(Cursor::new(b"interrupted twice".to_vec()), ops);
        let mut output = Vec::new();
        let result = lab::echo_raw(&mut input, &mut output, false).map_err(|e| e.kind());
        (result, output)
    });
    let why = "Interrupted means a signal arrived before any byte did: read again; it is neither \
               an error nor the end of the stream";
    t.check(result == Ok(17), "Ok(17)", format_args!("{result:?}"), why);
    t.check_bytes("the echo", b"interrupted twice", &echo, why);
}

#[cfg(unix)]
#[test]
fn step3_retries_a_socket_read_interrupted_by_a_signal() {
    let t = Transcript::new(SHORT);
    under_signals(&t, |t| {
        let (mut client, server) = tcp_pair();
        t.step(
            "ran lab::echo_raw on a connection (5 s timeouts), with SIGUSR1 sent to its thread every 20 ms",
        );
        let mut worker = Worker::spawn("lab::echo_raw", move || {
            let (result, signals) = with_interrupts(|| lab::echo_raw(&mut &server, &mut &server, false));
            (result.map_err(|e| e.to_string()), signals)
        });
        thread::sleep(LATE);
        client.write_all(b"late").expect("send");
        t.sent(
            b"late",
            format_args!("{} ms later, {}", LATE.as_millis(), local(&client)),
            "lab::echo_raw",
        );
        client.shutdown(Shutdown::Write).expect("half-close");
        t.step("half-closed the connection");
        let (echo, end) = worker.read(&client, None, QUIET);
        t.received(&echo, "lab::echo_raw");
        let why = "each signal makes the blocked read fail with Interrupted (a socket with a timeout is \
               never restarted): read again";
        let Some((result, signals)) = worker.wait(QUIET) else {
            t.fail("lab::echo_raw to return", worker.status(), why);
        };
        t.check(result == Ok(4), "Ok(4)", format_args!("{result:?}"), why);
        t.check(
            echo == b"late",
            "the echo \"late\" (4 bytes), then EOF",
            arrived(&echo, &end),
            why,
        );
        signals
    });
}

// ---------------------------------------------------------------------------------------------
// Step 4: read a line, with a cap

/// Calls the student's `read_line` repeatedly on `input` (max `max`) until it returns `None`
/// or an error, at most 10 times; returns what each call gave.
fn read_lines(t: &Transcript, input: impl Read + Send + 'static, max: usize) -> Reads {
    call(t, "lab::read_line", CALL_LIMIT, move || {
        let mut reader = BufReader::with_capacity(64, input);
        let mut out = Vec::new();
        for _ in 0..10 {
            let got = lab::read_line(&mut reader, max).map_err(|e| e.kind());
            let done = !matches!(got, Ok(Some(_)));
            out.push(got);
            if done {
                break;
            }
        }
        out
    })
}

/// Feeds `input` to `read_line` (cap `max`) until it ends, and checks each call's result.
fn check_lines(
    t: &Transcript,
    bytes: &[u8],
    input: impl Read + Send + 'static,
    max: usize,
    expected: &Reads,
    why: &str,
) {
    t.step(format_args!(
        "called lab::read_line (max_line {max}) until it returned None or an error, on {}",
        sized(bytes)
    ));
    let got = read_lines(t, input, max);
    t.check(&got == expected, describe(expected), describe(&got), why);
}

#[test]
fn step4_reads_lines_that_arrive_in_pieces() {
    let t = Transcript::new(SHORT);
    let bytes = b"first line\nsecond\n";
    let input = PartialRead::new(Cursor::new(bytes.to_vec()), pieces(4));
    t.step("the reader returns 1-3 bytes per read");
    check_lines(
        &t,
        bytes,
        input,
        100,
        &lines_of(&[b"first line", b"second"]),
        "one read is not one line: keep reading until the newline, keeping what you already have",
    );
}

#[test]
fn step4_two_lines_in_one_read_are_two_lines() {
    let t = Transcript::new(FRAMING);
    let bytes = b"one\ntwo\n";
    check_lines(
        &t,
        bytes,
        Cursor::new(bytes.to_vec()),
        100,
        &lines_of(&[b"one", b"two"]),
        "both lines arrive in one read: the bytes after the first newline stay in the BufRead's \
         buffer for the next call",
    );
}

#[test]
fn step4_a_line_of_max_line_bytes_fits_and_one_more_does_not() {
    let t = Transcript::new(FRAMING);
    for (bytes, expected, why) in [
        (
            &b"012345678\n"[..],
            lines_of(&[b"012345678"]),
            "a 9-byte line is under max_line = 10",
        ),
        (
            b"0123456789\n",
            lines_of(&[b"0123456789"]),
            "a 10-byte line (its newline not counted) is exactly max_line = 10 and fits: read up \
             to max_line + 1 bytes looking for the newline",
        ),
        (
            b"0123456789X\n",
            vec![Err(io::ErrorKind::InvalidData)],
            "an 11-byte line is one over max_line = 10: InvalidData",
        ),
        (
            b"0123456789",
            vec![Err(io::ErrorKind::UnexpectedEof)],
            "10 bytes, then the end of the stream without a newline: the line is incomplete, not \
             too long (10 bytes fit)",
        ),
    ] {
        check_lines(&t, bytes, Cursor::new(bytes.to_vec()), 10, &expected, why);
    }
}

/// A reader that counts the bytes taken from it.
struct Counting<R> {
    inner: R,
    taken: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.taken.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[test]
fn step4_an_endless_line_is_refused_without_reading_it_all() {
    const SENT: u64 = 64 * 1024 * 1024;
    let t = Transcript::new(FRAMING);
    let taken = Arc::new(AtomicU64::new(0));
    let input = Counting {
        inner: io::repeat(b'x').take(SENT),
        taken: Arc::clone(&taken),
    };
    t.step("called lab::read_line (max_line 1000) on 64 MiB of \"x\" without a newline");
    let result = call(
        &t,
        "lab::read_line on 64 MiB without a newline",
        CALL_LIMIT,
        move || {
            let mut reader = BufReader::new(input);
            lab::read_line(&mut reader, 1000)
                .map(|l| l.map(|l| l.len()))
                .map_err(|e| e.kind())
        },
    );
    let taken = taken.load(Ordering::Relaxed);
    t.step(format_args!("read_line took {taken} bytes from the reader"));
    t.check(
        result == Err(io::ErrorKind::InvalidData) && taken <= 64 * 1024,
        "error InvalidData, after taking at most max_line + 1 bytes (and what one buffer holds)",
        format_args!("{result:?} after taking {taken} bytes"),
        "a line cap must be enforced while reading (Read::take(max_line + 1)), not checked once the \
         newline has come: otherwise a client that never sends one makes the server buffer \
         without bound",
    );
}

#[test]
fn step4_eof_inside_a_line_is_unexpected_eof() {
    let t = Transcript::new(EOF);
    let bytes = b"done\nhalf a li";
    check_lines(
        &t,
        bytes,
        Cursor::new(bytes.to_vec()),
        100,
        &vec![Ok(Some(b"done".to_vec())), Err(io::ErrorKind::UnexpectedEof)],
        "the stream ended after \"half a li\" without a newline: that line is incomplete, \
         UnexpectedEof, not a line",
    );
}

#[test]
fn step4_eof_before_a_line_is_the_end() {
    let t = Transcript::new(EOF);
    check_lines(
        &t,
        b"",
        Cursor::new(Vec::new()),
        100,
        &lines_of(&[]),
        "an empty stream has no line: Ok(None), the peer has finished; not an error",
    );
}

#[test]
fn step4_non_utf8_bytes_and_cr_are_part_of_the_line() {
    let t = Transcript::new(PROTOCOL);
    let mut bytes = line(NON_UTF8);
    bytes.extend_from_slice(b"\r\n");
    check_lines(
        &t,
        &bytes,
        Cursor::new(bytes.clone()),
        100,
        &lines_of(&[NON_UTF8, b"\r"]),
        "a line is bytes, not text: every byte before the newline is returned unchanged, non-UTF-8 \
         bytes and a \\r included",
    );
}

#[test]
fn step4_retries_a_read_after_interrupted() {
    let t = Transcript::new(SHORT);
    let bytes = b"one\ntwo\n";
    let input = PartialRead::new(Cursor::new(bytes.to_vec()), interrupted_pieces(7));
    t.step("the reader fails with Interrupted before every piece of 1-3 bytes");
    check_lines(
        &t,
        bytes,
        input,
        100,
        &lines_of(&[b"one", b"two"]),
        "Interrupted means a signal arrived before any byte did: read again (read_until does)",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 5: write a length-prefixed frame

fn written_frame(t: &Transcript, payload: Vec<u8>) -> io::Result<Vec<u8>> {
    t.step(format_args!("called lab::write_frame with {}", sized(&payload)));
    call(t, "lab::write_frame", CALL_LIMIT, move || {
        let mut out = Vec::new();
        lab::write_frame(&mut out, &payload).map(|()| out)
    })
}

#[test]
fn step5_hello_is_the_bytes_java_writeutf_writes() {
    let t = Transcript::new(FRAMING);
    let why = "writeUTF(\"hello\") sends 00 05, then the 5 bytes: the length first, in 2 bytes, \
               high byte first";
    let bytes = t.ok(written_frame(&t, b"hello".to_vec()), "lab::write_frame", why);
    t.check_bytes("the frame", b"\x00\x05hello", &bytes, why);
}

#[test]
fn step5_the_length_prefix_is_big_endian() {
    let t = Transcript::new(FRAMING);
    let payload = pattern(258);
    let why = "258 = 0x0102 goes out as 01 02 (big-endian, network byte order: u16::to_be_bytes); \
               02 01 is little-endian, which a Java reader takes for 513";
    let bytes = t.ok(written_frame(&t, payload.clone()), "lab::write_frame", why);
    t.check_bytes("the prefix", b"\x01\x02", &bytes[..bytes.len().min(2)], why);
    t.check(
        bytes.get(2..) == Some(&payload[..]),
        "the 258 payload bytes after the prefix, unchanged",
        first_difference(bytes.get(2..).unwrap_or_default(), &payload),
        "the payload follows the prefix as it is",
    );
}

#[test]
fn step5_empty_and_largest_payloads() {
    let t = Transcript::new(FRAMING);
    let empty = t.ok(
        written_frame(&t, Vec::new()),
        "lab::write_frame",
        "an empty frame is allowed",
    );
    t.check_bytes(
        "the frame",
        b"\x00\x00",
        &empty,
        "an empty frame is its prefix 00 00 alone",
    );
    for (len, prefix) in [(65_534, [0xff, 0xfe]), (65_535, [0xff, 0xff])] {
        let why = "a 2-byte length holds up to 65 535 (MAX_FRAME): 65 534 and 65 535 bytes fit";
        let bytes = t.ok(written_frame(&t, vec![b'z'; len]), "lab::write_frame", why);
        t.check(
            bytes.len() == len + 2 && bytes[..2] == prefix,
            format_args!("{} bytes starting {:02x} {:02x}", len + 2, prefix[0], prefix[1]),
            format_args!(
                "{} bytes starting {}",
                bytes.len(),
                sized(&bytes[..bytes.len().min(2)])
            ),
            why,
        );
    }
    t.step("called lab::write_frame with 65 536 bytes");
    let result = call(&t, "lab::write_frame", CALL_LIMIT, move || {
        let mut out = Vec::new();
        let r = lab::write_frame(&mut out, &[b'z'; 65_536]).map_err(|e| e.kind());
        (r, out.len())
    });
    t.check(
        result == (Err(io::ErrorKind::InvalidInput), 0),
        "error InvalidInput, with nothing written",
        format_args!("{:?}, with {} bytes written", result.0, result.1),
        "65 536 bytes do not fit a 2-byte length (one over MAX_FRAME): `as u16` wraps it to 0 and \
         desynchronises the stream; refuse it before writing anything (u16::try_from)",
    );
}

#[test]
fn step5_a_frame_survives_short_writes() {
    let t = Transcript::new(SHORT);
    t.step(
        "called lab::write_frame with \"short writes\" on a writer that takes 1-3 bytes per call \
         and fails with Interrupted before each",
    );
    let got = call(&t, "lab::write_frame", CALL_LIMIT, move || {
        let mut out = PartialWrite::new(Vec::new(), interrupted_pieces(5));
        lab::write_frame(&mut out, b"short writes").map(|()| out.into_inner())
    });
    let why = "a write may take only part of the frame, or be interrupted: write it with write_fully";
    let got = t.ok(got, "lab::write_frame", why);
    t.check_bytes("the writer", &frame(b"short writes"), &got, why);
}

// ---------------------------------------------------------------------------------------------
// Step 6: read a length-prefixed frame

/// Calls the student's `read_frame` until it returns `None` or an error, at most 10 times.
fn read_frames(t: &Transcript, input: impl Read + Send + 'static) -> Reads {
    call(t, "lab::read_frame", CALL_LIMIT, move || {
        let mut input = input;
        let mut out = Vec::new();
        for _ in 0..10 {
            let got = lab::read_frame(&mut input).map_err(|e| e.kind());
            let done = !matches!(got, Ok(Some(_)));
            out.push(got);
            if done {
                break;
            }
        }
        out
    })
}

fn check_frames(
    t: &Transcript,
    bytes: &[u8],
    input: impl Read + Send + 'static,
    expected: &Reads,
    why: &str,
) {
    t.step(format_args!(
        "called lab::read_frame until it returned None or an error, on {}",
        sized(bytes)
    ));
    let got = read_frames(t, input);
    t.check(&got == expected, describe(expected), describe(&got), why);
}

#[test]
fn step6_reads_a_hand_built_big_endian_frame() {
    let t = Transcript::new(FRAMING);
    let payload = pattern(258);
    let mut bytes = vec![0x01, 0x02];
    bytes.extend_from_slice(&payload);
    check_frames(
        &t,
        &bytes,
        Cursor::new(bytes.clone()),
        &vec![Ok(Some(payload)), Ok(None)],
        "the prefix 01 02 means 258 bytes (big-endian: u16::from_be_bytes); read as little-endian \
         it is 513, more than the stream holds",
    );
}

#[test]
fn step6_a_length_split_across_reads() {
    let t = Transcript::new(SHORT);
    let mut bytes = frame(b"hello");
    bytes.extend(frame(b"world"));
    // Every read returns a single byte: the 2-byte length always arrives in two pieces.
    let input = PartialRead::new(
        Cursor::new(bytes.clone()),
        std::iter::repeat(PartialOp::Limited(1)),
    );
    t.step("the reader returns 1 byte per read");
    check_frames(
        &t,
        &bytes,
        input,
        &lines_of(&[b"hello", b"world"]),
        "one read of the 2-byte length may return only its first byte: keep reading until you have \
         both",
    );
}

#[test]
fn step6_frames_in_pieces_of_1_to_3_bytes() {
    let t = Transcript::new(SHORT);
    let payloads = [Vec::new(), b"a".to_vec(), pattern(300), pattern(65_535)];
    let bytes: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
    let input = PartialRead::new(Cursor::new(bytes.clone()), pieces(6));
    t.step("the reader returns 1-3 bytes per read; the frames hold 0, 1, 300 and 65 535 bytes");
    let mut expected: Reads = payloads.iter().map(|p| Ok(Some(p.clone()))).collect();
    expected.push(Ok(None));
    check_frames(
        &t,
        &bytes,
        input,
        &expected,
        "one read of the payload returns only part of it: read exactly the announced length \
         (read_exact), however the bytes arrive",
    );
}

#[test]
fn step6_eof_before_a_frame_is_the_end() {
    let t = Transcript::new(EOF);
    check_frames(
        &t,
        b"",
        Cursor::new(Vec::new()),
        &lines_of(&[]),
        "an empty stream holds no frame: Ok(None), the peer has finished; not an error",
    );
}

#[test]
fn step6_eof_inside_a_frame_is_unexpected_eof() {
    let t = Transcript::new(EOF);
    for (bytes, why) in [
        (
            &b"\x00"[..],
            "the stream ended after 1 byte of the length: that is inside a frame, UnexpectedEof; \
             only an end before the first byte is Ok(None) (read_exact on the prefix cannot tell \
             the two apart)",
        ),
        (
            b"\x00\x05he",
            "the stream ended after 2 of 5 payload bytes: UnexpectedEof, not a short frame",
        ),
    ] {
        check_frames(
            &t,
            bytes,
            Cursor::new(bytes.to_vec()),
            &vec![Err(io::ErrorKind::UnexpectedEof)],
            why,
        );
    }
}

#[test]
fn step6_retries_a_read_after_interrupted() {
    let t = Transcript::new(SHORT);
    let mut bytes = frame(b"hello");
    bytes.extend(frame(NON_UTF8));
    let input = PartialRead::new(Cursor::new(bytes.clone()), interrupted_pieces(9));
    t.step("the reader fails with Interrupted before every piece of 1-3 bytes");
    check_frames(
        &t,
        &bytes,
        input,
        &lines_of(&[b"hello", NON_UTF8]),
        "Interrupted means a signal arrived before any byte did: read again, in the loop over the \
         prefix too; it is not an error (and the payload is bytes: non-UTF-8 ones come back \
         unchanged)",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 7: serve one connection

/// Sends `request`, expects `reply`, half-closes, and expects `serve_connection` to return
/// `Ok(count)`.
fn one_exchange(
    t: &Transcript,
    addr: SocketAddr,
    worker: &mut Worker<io::Result<u64>>,
    request: &[u8],
    reply: &[u8],
    count: u64,
    why: &str,
) {
    let mut client = tcp_connect(addr);
    client.write_all(request).expect("send");
    t.sent(request, local(&client), "lab::serve_connection");
    let (got, end) = worker.read(&client, Some(reply.len()), QUIET);
    t.received(&got, "the server");
    let status = worker.status();
    t.check(
        got == reply,
        format_args!("the reply {}", sized(reply)),
        format_args!("{}; {status}", arrived(&got, &end)),
        why,
    );
    client.shutdown(Shutdown::Write).expect("half-close");
    t.step("half-closed the connection");
    let (rest, end) = worker.read(&client, None, QUIET);
    let status = worker.status();
    t.check(
        rest.is_empty() && matches!(end, End::Eof),
        "nothing more, then EOF",
        format_args!("{}; {status}", arrived(&rest, &end)),
        why,
    );
    let result = worker.wait(QUIET).map(|r| r.map_err(|e| e.to_string()));
    t.check(
        result == Some(Ok(count)),
        format_args!("lab::serve_connection returns Ok({count}) at the client's EOF"),
        Outcome(&result),
        "serve_connection returns the number of bytes (raw), lines or frames echoed",
    );
}

#[test]
fn step7_two_lines_in_one_write_get_two_replies() {
    let t = Transcript::new(FRAMING);
    let (addr, mut worker) = serve_one(config(lab::Framing::Line, false));
    t.step("ran lab::serve_connection in line framing");
    one_exchange(
        &t,
        addr,
        &mut worker,
        b"one\ntwo\n",
        b"one\ntwo\n",
        2,
        "two lines that arrive in one read need two replies: keep one BufReader for the whole \
         connection, since the bytes it has buffered belong to the next line (a new one per line \
         loses them)",
    );
}

#[test]
fn step7_two_frames_in_one_write_get_two_replies() {
    let t = Transcript::new(FRAMING);
    let (addr, mut worker) = serve_one(config(lab::Framing::Utf, false));
    t.step("ran lab::serve_connection in utf framing");
    let mut both = frame(b"one");
    both.extend(frame(b"three"));
    one_exchange(
        &t,
        addr,
        &mut worker,
        &both,
        &both,
        2,
        "two frames that arrive in one read need two reply frames, in order: keep one BufReader \
         for the whole connection",
    );
}

/// Sends `request` through a relay that slices it into 1-3 byte pieces; expects `reply` and
/// then nothing more.
fn through_slicing_relay(t: &Transcript, framing: lab::Framing, request: &[u8], reply: &[u8]) {
    let (addr, mut worker) = serve_one(config(framing, false));
    let relay = TcpRelay::start(addr, Shaping::SLICE, Shaping::Intact, 11).expect("relay");
    t.step(format_args!(
        "ran lab::serve_connection in {framing} framing, behind a relay that delivers the request \
         in 1-3 byte pieces"
    ));
    one_exchange(
        t,
        relay.addr(),
        &mut worker,
        request,
        reply,
        1,
        "the message arrived in many pieces and gets exactly one reply: one read is not one \
         message",
    );
}

#[test]
fn step7_a_line_in_1_to_3_byte_pieces_gets_one_reply() {
    let t = Transcript::new(SHORT);
    through_slicing_relay(&t, lab::Framing::Line, b"hello, pieces\n", b"hello, pieces\n");
}

#[test]
fn step7_a_frame_in_1_to_3_byte_pieces_gets_one_reply() {
    let t = Transcript::new(SHORT);
    let request = frame(b"a frame cut into many small pieces");
    through_slicing_relay(&t, lab::Framing::Utf, &request, &request);
}

#[test]
fn step7_coalesced_frames_get_separate_replies() {
    let t = Transcript::new(SHORT);
    let (addr, mut worker) = serve_one(config(lab::Framing::Utf, false));
    let window = Duration::from_millis(300);
    let relay = TcpRelay::start(addr, Shaping::Coalesce { window }, Shaping::Intact, 0).expect("relay");
    t.step("ran lab::serve_connection in utf framing, behind a relay that merges writes made within 300 ms");
    let mut client = tcp_connect(relay.addr());
    for payload in [&b"first"[..], b"second"] {
        client.write_all(&frame(payload)).expect("send");
        t.sent(&frame(payload), local(&client), "the relay");
    }
    let mut expected = frame(b"first");
    expected.extend(frame(b"second"));
    let (got, end) = worker.read(&client, Some(expected.len()), QUIET);
    t.received(&got, "the server");
    let status = worker.status();
    t.check(
        got == expected,
        format_args!("two reply frames {}", sized(&expected)),
        format_args!("{}; {status}", arrived(&got, &end)),
        "two frames that arrive in one read need two replies",
    );
    client.shutdown(Shutdown::Write).expect("half-close");
    let result = worker.wait(QUIET).map(|r| r.map_err(|e| e.to_string()));
    t.check(
        result == Some(Ok(2)),
        "Ok(2)",
        Outcome(&result),
        "two frames echoed",
    );
}

/// The request and the expected reply for `payload` in `framing`.
fn framed(framing: lab::Framing, payload: &[u8], reply: &[u8]) -> (Vec<u8>, Vec<u8>) {
    match framing {
        lab::Framing::Raw => (payload.to_vec(), reply.to_vec()),
        lab::Framing::Line => (line(payload), line(reply)),
        lab::Framing::Utf => (frame(payload), frame(reply)),
    }
}

/// Sends `payload` in every framing to `serve_connection` (with `uppercase`), half-closes, and
/// expects `reply`, then EOF.
fn every_framing(t: &Transcript, uppercase: bool, payload: &[u8], reply: &[u8], why: &str) {
    for framing in [lab::Framing::Raw, lab::Framing::Line, lab::Framing::Utf] {
        let (addr, mut worker) = serve_one(config(framing, uppercase));
        t.step(format_args!(
            "ran lab::serve_connection, framing {framing}{}",
            if uppercase { ", uppercase" } else { "" }
        ));
        let (request, expected) = framed(framing, payload, reply);
        let mut client = tcp_connect(addr);
        client.write_all(&request).expect("send");
        t.sent(&request, local(&client), "the server");
        client.shutdown(Shutdown::Write).expect("half-close");
        t.step("half-closed the connection");
        let (got, end) = worker.read(&client, None, QUIET);
        t.received(&got, "the server");
        let status = worker.status();
        t.check(
            got == expected,
            format_args!("the {framing} reply {}, then EOF", sized(&expected)),
            format_args!("{}; {status}", arrived(&got, &end)),
            why,
        );
    }
}

#[test]
fn step7_uppercase_in_every_framing() {
    let t = Transcript::new(PROTOCOL);
    let mut payload = b"Mixed Case, ".to_vec();
    payload.extend_from_slice(NON_UTF8);
    every_framing(
        &t,
        true,
        &payload,
        &payload.to_ascii_uppercase(),
        "with uppercase, every framing replies with ASCII letters uppercased (make_reply with \
         config.uppercase) and every other byte, non-ASCII or not UTF-8, unchanged",
    );
}

#[test]
fn step7_non_utf8_bytes_are_echoed_unchanged_in_every_framing() {
    let t = Transcript::new(PROTOCOL);
    every_framing(
        &t,
        false,
        NON_UTF8,
        NON_UTF8,
        "the server echoes bytes, not text: non-UTF-8 bytes must come back unchanged (a String \
         made with from_utf8_lossy replaces them with U+FFFD, \\xef\\xbf\\xbd)",
    );
}

#[test]
fn step7_an_overlong_line_ends_the_connection_with_an_error() {
    let t = Transcript::new(FRAMING);
    let config = lab::ServerConfig {
        max_line: 16,
        ..config(lab::Framing::Line, false)
    };
    let (addr, mut worker) = serve_one(config);
    t.step("ran lab::serve_connection in line framing, max_line 16");
    let mut client = tcp_connect(addr);
    let mut request = b"short\n".to_vec();
    request.extend_from_slice(&[b'x'; 100]);
    request.push(b'\n');
    client.write_all(&request).expect("send");
    t.sent(&request, local(&client), "the server");
    let (got, end) = worker.read(&client, None, QUIET);
    t.received(&got, "the server");
    let status = worker.status();
    t.check(
        got == b"short\n" && matches!(end, End::Eof),
        "the reply \"short\\n\" (6 bytes), then the connection closed",
        format_args!("{}; {status}", arrived(&got, &end)),
        "a line over max_line ends the connection, without echoing any part of it",
    );
    let result = worker.wait(QUIET).map(|r| r.map_err(|e| e.kind()));
    t.check(
        result == Some(Err(io::ErrorKind::InvalidData)),
        "lab::serve_connection returns error InvalidData",
        Outcome(&result),
        "read_line's InvalidData ends the connection and goes back to the caller, which logs it",
    );
}

#[test]
fn step7_raw_mode_echoes_until_the_half_close() {
    const LEN: usize = 256 * 1024;
    let t = Transcript::new(EOF);
    let (addr, mut worker) = serve_one(config(lab::Framing::Raw, false));
    t.step("ran lab::serve_connection in raw framing");
    let client = tcp_connect(addr);
    let writer = {
        let mut sender = client.try_clone().expect("clone");
        thread::spawn(move || {
            let r = sender.write_all(&pattern(LEN));
            let _ = sender.shutdown(Shutdown::Write);
            r
        })
    };
    t.step("sent 256 KiB from another thread, then half-closed");
    let (echo, end) = worker.read(&client, None, QUIET);
    t.step(format_args!("read {} bytes of echo{end}", echo.len()));
    t.ok(
        writer.join().expect("writer"),
        "sending 256 KiB",
        "the server must read while it echoes",
    );
    let status = worker.status();
    t.check(
        echo == pattern(LEN) && matches!(end, End::Eof),
        "the 256 KiB echoed, then EOF",
        format_args!("{}; {status}", first_difference(&echo, &pattern(LEN))),
        "raw mode echoes every byte until the client's end of stream",
    );
    let result = worker.wait(QUIET).map(|r| r.map_err(|e| e.to_string()));
    t.check(
        result == Some(Ok(LEN as u64)),
        format_args!("Ok({LEN})"),
        Outcome(&result),
        "in raw mode serve_connection returns the number of bytes echoed",
    );
}

#[test]
fn step7_a_silent_client_is_dropped_after_the_idle_timeout() {
    let t = Transcript::new(ITERATIVE);
    let idle = Duration::from_millis(300);
    let config = lab::ServerConfig {
        idle_timeout: Some(idle),
        ..config(lab::Framing::Utf, false)
    };
    let (addr, mut worker) = serve_one(config);
    t.step("ran lab::serve_connection in utf framing, idle_timeout 300 ms");
    let mut client = tcp_connect(addr);
    client.write_all(&[0x00, 0x0a, b'a']).expect("send");
    t.sent(&[0x00, 0x0a, b'a'], local(&client), "the server");
    t.step("sent nothing more: 9 payload bytes are missing");
    let result = worker.wait(idle + SLACK);
    t.check(
        result.as_ref().is_some_and(|r| r.as_ref().is_err_and(is_timeout)),
        "within 2300 ms, a timeout error (WouldBlock or TimedOut)",
        Outcome(&result),
        "set config.idle_timeout as the stream's read timeout first: a client silent that long is \
         dropped, or it holds the iterative server forever",
    );
    let (rest, end) = read_some(&client, None, QUIET);
    t.check(
        matches!(end, End::Eof),
        "the connection closed",
        arrived(&rest, &end),
        "dropping the stream closes the connection",
    );
}

#[test]
fn step7_a_client_that_never_reads_is_dropped_after_the_idle_timeout() {
    let t = Transcript::new(ITERATIVE);
    let idle = Duration::from_millis(300);
    let config = lab::ServerConfig {
        idle_timeout: Some(idle),
        ..config(lab::Framing::Raw, false)
    };
    let (addr, mut worker) = serve_one_with(config, small_send_buffer);
    t.step("ran lab::serve_connection in raw framing, idle_timeout 300 ms, with a small send buffer");
    let client = connect_small(addr);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut sender = client.try_clone().expect("clone");
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            sender
                .set_write_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            let chunk = vec![b'w'; 64 * 1024];
            let mut sent = 0usize;
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(6) {
                match sender.write(&chunk) {
                    Ok(n) => sent += n,
                    Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            sent
        })
    };
    t.step(
        "the client sends 64 KiB writes without ever reading the echo: once the buffers are \
         full, the server's write of the echo blocks",
    );
    let limit = Duration::from_millis(1000) + SLACK;
    let result = worker.wait(limit);
    stop.store(true, Ordering::Relaxed);
    let sent = writer.join().expect("writer");
    t.step(format_args!("the client had sent {sent} bytes"));
    t.check(
        result.as_ref().is_some_and(|r| r.as_ref().is_err_and(is_timeout)),
        format_args!(
            "within {} ms, a timeout error (WouldBlock or TimedOut)",
            limit.as_millis()
        ),
        Outcome(&result),
        "the idle timeout is a read timeout and a write timeout: with set_read_timeout alone, a \
         client that never reads blocks the server's write (and the whole iterative server) \
         forever; set_write_timeout too",
    );
}

/// Sends `first`, then one byte `b'a'` every 100 ms, until the peer closes the connection or
/// `limit` passes. The pacing is a 100 ms read timeout, which also notices the close (EOF, a
/// reset, or a failed write). Returns when the close was seen (None: never) and the bytes sent.
fn trickle(stream: &mut TcpStream, first: &[u8], limit: Duration) -> (Option<Duration>, usize) {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let mut sent = 0;
    if stream.write_all(first).is_err() {
        return (Some(started.elapsed()), sent);
    }
    sent += first.len();
    let mut buf = [0u8; 64];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            // EOF, a reset, or (unexpectedly) an echo: the server is done with this message.
            _ => return (Some(started.elapsed()), sent),
        }
        if stream.write_all(b"a").is_err() {
            return (Some(started.elapsed()), sent);
        }
        sent += 1;
    }
    (None, sent)
}

/// Checks that `result`, what `serve_connection` returned, is the message-timeout error.
fn check_message_timeout(t: &Transcript, result: Option<io::Result<u64>>, message: Duration, why: &str) {
    let shown = Outcome(&result).to_string();
    let holds = matches!(&result, Some(Err(e))
        if e.kind() == io::ErrorKind::TimedOut && lab::message_timeout_of(e) == Some(message));
    t.check(
        holds,
        format_args!(
            "the error of message_timed_out({} ms): kind TimedOut, holding a MessageTimeout",
            message.as_millis()
        ),
        shown,
        why,
    );
}

/// A `serve_connection` with a 1 s idle timeout and a 500 ms message timeout, and a client that
/// trickles `first` then a byte every 100 ms: the connection must end within 4 s, with the
/// message-timeout error.
fn trickled_message_is_cut_off(framing: lab::Framing, first: &[u8], what: &str) {
    let t = Transcript::new(SLOW);
    let message = Duration::from_millis(500);
    let config = lab::ServerConfig {
        idle_timeout: Some(Duration::from_secs(1)),
        message_timeout: Some(message),
        ..config(framing, false)
    };
    let (addr, mut worker) = serve_one(config);
    t.step(format_args!(
        "ran lab::serve_connection in {framing} framing, idle_timeout 1000 ms, message_timeout 500 ms"
    ));
    let mut client = tcp_connect(addr);
    t.step(format_args!(
        "sent {what} ({}), then one more byte every 100 ms",
        sized(first)
    ));
    let limit = Duration::from_secs(4);
    let (closed, sent) = trickle(&mut client, first, limit);
    worker.done();
    let why = "each read made progress within the idle timeout, so only a deadline for the whole \
               message stops this: start it before each read_line/read_frame, set the timeout of \
               every read to min(idle, time left), and fail with message_timed_out once no time is \
               left (a deadline renewed on every read never comes)";
    t.check(
        closed.is_some(),
        "the connection closed about 500 ms after the message began",
        format_args!(
            "still open after {} ms and {sent} bytes; {}",
            limit.as_millis(),
            worker.status()
        ),
        why,
    );
    let result = worker.wait(SLACK);
    check_message_timeout(&t, result, message, why);
}

#[test]
fn step7_a_trickled_line_is_cut_off_by_the_message_timeout() {
    trickled_message_is_cut_off(lab::Framing::Line, b"a", "a line without its newline");
}

#[test]
fn step7_a_trickled_frame_is_cut_off_by_the_message_timeout() {
    trickled_message_is_cut_off(lab::Framing::Utf, &[0x00, 0xff], "the length of a 255-byte frame");
}

#[test]
fn step7_a_slowly_read_reply_is_cut_off_by_the_message_timeout() {
    const LEN: usize = 512 * 1024;
    let t = Transcript::new(SLOW);
    let message = Duration::from_millis(500);
    let config = lab::ServerConfig {
        max_line: LEN,
        idle_timeout: Some(Duration::from_secs(1)),
        message_timeout: Some(message),
        ..config(lab::Framing::Line, false)
    };
    let (addr, mut worker) = serve_one_with(config, small_send_buffer);
    t.step(
        "ran lab::serve_connection in line framing, idle_timeout 1000 ms, message_timeout 500 ms, \
         with a small send buffer",
    );
    let mut client = connect_small(addr);
    let request = line(&vec![b'r'; LEN]);
    client.write_all(&request).expect("send the line");
    t.sent(&request, local(&client), "the server");
    t.step("read the echo 4 KiB every 50 ms (80 KiB/s: the whole echo would take 6.4 s)");
    client
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let mut received = 0;
    let limit = Duration::from_secs(3);
    while !worker.done() && started.elapsed() < limit {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received += n,
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
        thread::sleep(Duration::from_millis(50));
    }
    t.step(format_args!(
        "received {received} bytes in {} ms",
        started.elapsed().as_millis()
    ));
    let why = "every write moved a little of the reply within the idle timeout, so only the \
               message's deadline stops a client that drains its reply this slowly: it bounds the \
               writes of the reply too, so set the write timeout to min(idle, time left) before \
               each write";
    t.check(
        worker.done(),
        "the connection cut off about 500 ms after the line began",
        format_args!("{} after {} ms", worker.status(), limit.as_millis()),
        why,
    );
    check_message_timeout(&t, worker.wait(Duration::ZERO), message, why);
}

#[test]
fn step7_each_message_gets_its_own_deadline() {
    let t = Transcript::new(SLOW);
    let message = Duration::from_millis(1000);
    let config = lab::ServerConfig {
        idle_timeout: Some(Duration::from_secs(2)),
        message_timeout: Some(message),
        ..config(lab::Framing::Line, false)
    };
    let (addr, mut worker) = serve_one(config);
    t.step("ran lab::serve_connection in line framing, idle_timeout 2000 ms, message_timeout 1000 ms");
    let mut client = tcp_connect(addr);
    let why = "the message timeout bounds each message, from the moment the server starts waiting \
               for it until its reply is written: start a new deadline before each read_line, not \
               one for the whole connection";
    for i in 1..=4 {
        if i > 1 {
            thread::sleep(Duration::from_millis(400));
            t.step("waited 400 ms");
        }
        let request = format!("line {i}\n");
        client.write_all(request.as_bytes()).expect("send");
        t.sent(request.as_bytes(), local(&client), "the server");
        let (got, end) = worker.read(&client, Some(request.len()), QUIET);
        t.received(&got, "the server");
        let status = worker.status();
        t.check(
            got == request.as_bytes(),
            format_args!("the reply {}", sized(request.as_bytes())),
            format_args!("{}; {status}", arrived(&got, &end)),
            why,
        );
    }
    client.shutdown(Shutdown::Write).expect("half-close");
    let result = worker.wait(QUIET).map(|r| r.map_err(|e| e.to_string()));
    t.check(result == Some(Ok(4)), "Ok(4)", Outcome(&result), why);
}

#[cfg(unix)]
#[test]
fn step7_survives_signals_in_every_framing() {
    let t = Transcript::new(SHORT);
    for framing in [lab::Framing::Raw, lab::Framing::Line, lab::Framing::Utf] {
        under_signals(&t, |t| {
            let listener = tcp_listener();
            let addr = addr_of(&listener);
            let config = lab::ServerConfig {
                message_timeout: Some(IO_TIMEOUT),
                ..config(framing, true)
            };
            let mut worker = Worker::spawn("lab::serve_connection", move || {
                let (stream, _) = listener.accept().expect("accept");
                let (result, signals) = with_interrupts(|| lab::serve_connection(stream, &config));
                (result.map_err(|e| e.to_string()), signals)
            });
            t.step(format_args!(
                "ran lab::serve_connection in {framing} framing, with SIGUSR1 sent to its thread every 20 ms"
            ));
            let mut client = tcp_connect(addr);
            thread::sleep(LATE);
            let (request, reply) = framed(framing, b"late, \xff", b"LATE, \xff");
            client.write_all(&request).expect("send");
            t.sent(
                &request,
                format_args!("{} ms later, {}", LATE.as_millis(), local(&client)),
                "the server",
            );
            client.shutdown(Shutdown::Write).expect("half-close");
            t.step("half-closed the connection");
            let (got, end) = read_some(&client, None, QUIET);
            t.received(&got, "the server");
            let why = "each signal makes a blocked read or write fail with Interrupted (a socket with a \
                   timeout is never restarted): every loop of steps 2 to 6 must try again, and \
                   Interrupted must not end the connection";
            let Some((result, signals)) = worker.wait(QUIET) else {
                t.fail(
                    "lab::serve_connection to return at the client's EOF",
                    worker.status(),
                    why,
                );
            };
            t.check(
                got == reply && result.is_ok(),
                format_args!(
                    "the reply {}, then EOF, and Ok from serve_connection",
                    sized(&reply)
                ),
                format_args!("{}; serve_connection returned {result:?}", arrived(&got, &end)),
                why,
            );
            signals
        });
    }
}

#[test]
fn step7_server_binary_serves_the_next_client_while_one_trickles() {
    let t = Transcript::new(SLOW);
    let mut server = ServerProcess::start(
        BIN,
        &[
            "server",
            "--port",
            "0",
            "--framing",
            "line",
            "--idle-timeout",
            "1000",
            "--message-timeout",
            "1000",
        ],
    );
    t.step("started `server --framing line --idle-timeout 1000 --message-timeout 1000`");
    let mut trickler = tcp_connect(server.addr());
    let me = local(&trickler).to_string();
    // The trickler is first in the backlog, so the iterative server serves it first.
    let mut trickling = Worker::spawn("the trickling client", move || {
        trickle(&mut trickler, b"a", Duration::from_secs(8))
    });
    t.step(format_args!("client {me} trickles a line, one byte every 100 ms"));
    let started = Instant::now();
    let mut next = tcp_connect(server.addr());
    next.write_all(b"my turn\n").expect("send");
    t.sent(b"my turn\n", local(&next), "the server");
    let (got, end) = read_some(&next, Some(8), Duration::from_secs(4));
    t.received(&got, "the server");
    t.check(
        got == b"my turn\n",
        "the reply \"my turn\\n\" (8 bytes) once the trickler's line is cut off after 1000 ms",
        format_args!(
            "{} after {} ms",
            arrived(&got, &end),
            started.elapsed().as_millis()
        ),
        "the trickler's line must be cut off by the message timeout, whatever the idle timeout, \
         so that the iterative server gets to the next client",
    );
    let closed = trickling
        .wait(Duration::from_secs(10))
        .and_then(|(closed, _)| closed);
    t.check(
        closed.is_some(),
        "the trickling client's connection closed",
        "still open",
        "a message over the message timeout ends its connection",
    );
    let lines = await_log(&t, &mut server, &me, 2, QUIET);
    t.check(
        lines
            .iter()
            .any(|l| l.contains("a message took longer than the message timeout (1000 ms)")),
        "a log line saying \"a message took longer than the message timeout (1000 ms)\"",
        format_args!("{lines:?}"),
        "the message timeout is its own error (message_timed_out), not the idle timeout's",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 8: the iterative accept loop

/// What a `serve` worker logged, reduced to what tests compare.
#[derive(Debug, PartialEq)]
enum Logged {
    Accepted(SocketAddr),
    Closed(SocketAddr, u64),
    Failed(SocketAddr, io::ErrorKind),
    AcceptFailed,
    AcceptBackoff,
}

type ServeLog = (Result<u64, String>, Vec<Logged>);

fn logged(event: &lab::Event) -> Logged {
    match event {
        lab::Event::Accepted { peer } => Logged::Accepted(*peer),
        lab::Event::Closed { peer, count, .. } => Logged::Closed(*peer, *count),
        lab::Event::Failed { peer, error } => Logged::Failed(*peer, error.kind()),
        lab::Event::AcceptFailed { .. } => Logged::AcceptFailed,
        lab::Event::AcceptBackoff { .. } => Logged::AcceptBackoff,
    }
}

fn serve_worker(config: lab::ServerConfig) -> (SocketAddr, Worker<ServeLog>) {
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let worker = Worker::spawn("lab::serve", move || {
        let mut log = Vec::new();
        let served = lab::serve(&listener, &config, |event| log.push(logged(event)));
        (served.map_err(|e| e.to_string()), log)
    });
    (addr, worker)
}

/// Sends `request` on `client` and expects `reply` from the server.
fn expect_reply<T: Send + fmt::Debug + 'static>(
    t: &Transcript,
    worker: &mut Worker<T>,
    client: &mut TcpStream,
    request: &[u8],
    reply: &[u8],
    why: &str,
) {
    client.write_all(request).expect("send");
    t.sent(request, local(client), "the server");
    let (got, end) = worker.read(client, Some(reply.len()), QUIET);
    t.received(&got, "the server");
    let status = worker.status();
    t.check(
        got == reply,
        format_args!("the reply {}", sized(reply)),
        format_args!("{}; {status}", arrived(&got, &end)),
        why,
    );
}

#[test]
fn step8_serves_clients_one_after_another_and_logs_each() {
    let t = Transcript::new(ITERATIVE);
    let (addr, mut worker) = serve_worker(lab::ServerConfig {
        max_connections: Some(2),
        ..config(lab::Framing::Line, false)
    });
    t.step("ran lab::serve in line framing, max_connections 2");
    let why = "serve accepts a connection, serves it until the client's EOF, and accepts the next";
    let mut a = tcp_connect(addr);
    expect_reply(&t, &mut worker, &mut a, b"a1\n", b"a1\n", why);
    a.shutdown(Shutdown::Write).expect("half-close");
    t.step("client A half-closed");
    let _ = worker.read(&a, None, QUIET);
    let mut b = tcp_connect(addr);
    expect_reply(&t, &mut worker, &mut b, b"b1\nb2\n", b"b1\nb2\n", why);
    b.shutdown(Shutdown::Write).expect("half-close");
    t.step("client B half-closed");
    let Some((served, log)) = worker.wait(QUIET) else {
        t.fail(
            "lab::serve to return Ok(2) after its second connection",
            "it was still running (waiting in accept for a third connection?)",
            "max_connections = 2: serve stops after exactly 2 connections (served < max, not <=)",
        );
    };
    t.check(
        served == Ok(2),
        "Ok(2)",
        format_args!("{served:?}"),
        "max_connections = 2",
    );
    let expected = [
        Logged::Accepted(local(&a)),
        Logged::Closed(local(&a), 1),
        Logged::Accepted(local(&b)),
        Logged::Closed(local(&b), 2),
    ];
    t.check(
        log == expected,
        format_args!("the events {expected:?}"),
        format_args!("{log:?}"),
        "log Accepted when a connection is accepted and Closed (with the count) when it ends",
    );
}

#[test]
fn step8_a_failed_connection_is_logged_and_the_next_client_served() {
    let t = Transcript::new(ITERATIVE);
    let (addr, mut worker) = serve_worker(lab::ServerConfig {
        max_connections: Some(2),
        max_line: 8,
        ..config(lab::Framing::Line, false)
    });
    t.step("ran lab::serve in line framing, max_line 8, max_connections 2");
    let a = tcp_connect(addr);
    (&a).write_all(b"this line is much too long\n").expect("send");
    t.sent(b"this line is much too long\n", local(&a), "the server");
    let (_, end) = worker.read(&a, None, QUIET);
    t.step(format_args!("client A's connection ended{end}"));
    thread::sleep(Duration::from_millis(100));
    let why = "a connection's error is logged as Event::Failed and serve goes on to the next client: \
               returning it (`?` on serve_connection) stops the whole server because of one client";
    if worker.done() {
        let status = worker.status();
        t.fail(
            "lab::serve still running, waiting for the next client",
            status,
            why,
        );
    }
    let mut b = tcp_connect(addr);
    expect_reply(&t, &mut worker, &mut b, b"fine\n", b"fine\n", why);
    b.shutdown(Shutdown::Write).expect("half-close");
    let Some((served, log)) = worker.wait(QUIET) else {
        t.fail("lab::serve to return after 2 connections", worker.status(), why);
    };
    t.check(served == Ok(2), "Ok(2)", format_args!("{served:?}"), why);
    let expected = [
        Logged::Accepted(local(&a)),
        Logged::Failed(local(&a), io::ErrorKind::InvalidData),
        Logged::Accepted(local(&b)),
        Logged::Closed(local(&b), 1),
    ];
    t.check(
        log == expected,
        format_args!("the events {expected:?}"),
        format_args!("{log:?}"),
        why,
    );
}

#[test]
fn step8_a_second_client_waits_while_the_first_is_served() {
    let t = Transcript::new(ITERATIVE);
    let (addr, mut worker) = serve_worker(lab::ServerConfig {
        max_connections: Some(2),
        ..config(lab::Framing::Raw, false)
    });
    t.step("ran lab::serve in raw framing, max_connections 2");
    let why = "this server is iterative: one connection at a time, the next waits in the backlog \
               (Lab 03 serves clients concurrently)";
    let mut a = tcp_connect(addr);
    expect_reply(&t, &mut worker, &mut a, b"A", b"A", why);
    // B connects (the handshake completes in the backlog) and sends while A is still served.
    let mut b = tcp_connect(addr);
    b.write_all(b"B").expect("send");
    t.sent(b"B", local(&b), "the server, while A is still connected");
    let (early, end) = worker.read(&b, Some(1), Duration::from_millis(300));
    t.check(
        early.is_empty(),
        "nothing for B while A is connected",
        arrived(&early, &end),
        why,
    );
    t.step("B got nothing for 300 ms");
    a.shutdown(Shutdown::Write).expect("A half-closes");
    t.step("A half-closed");
    let _ = worker.read(&a, None, QUIET);
    let (echo, end) = worker.read(&b, Some(1), QUIET);
    t.received(&echo, "the server");
    t.check(
        echo == b"B",
        "B's echo \"B\" once A has finished",
        format_args!("{}; {}", arrived(&echo, &end), worker.status()),
        why,
    );
    b.shutdown(Shutdown::Write).expect("half-close");
    let served = worker.wait(QUIET).map(|(served, _)| served);
    t.check(served == Some(Ok(2)), "Ok(2)", Outcome(&served), why);
}

#[cfg(unix)]
#[test]
fn step8_serves_on_through_signals() {
    // std's TcpListener::accept retries EINTR itself, so a signal never reaches serve as an
    // accept error; the signals here interrupt serve_connection's reads and writes instead.
    let t = Transcript::new(STEP8);
    under_signals(&t, |t| {
        let listener = tcp_listener();
        let addr = addr_of(&listener);
        let config = lab::ServerConfig {
            max_connections: Some(1),
            ..config(lab::Framing::Line, false)
        };
        let mut worker = Worker::spawn("lab::serve", move || {
            let mut log = Vec::new();
            let (served, signals) =
                with_interrupts(|| lab::serve(&listener, &config, |e| log.push(logged(e))));
            (served.map_err(|e| e.to_string()), log, signals)
        });
        t.step(
            "ran lab::serve in line framing, max_connections 1, with SIGUSR1 sent to its thread every 20 ms",
        );
        thread::sleep(LATE);
        let mut client = tcp_connect(addr);
        t.step(format_args!("connected {} ms later", LATE.as_millis()));
        let why = "a signal concerns no connection at all: an accept interrupted by one is retried \
               (is_per_connection holds for Interrupted: log Event::AcceptFailed and accept again), \
               and a read or write interrupted by one is tried again; a server must not stop, or \
               drop its client, because a signal arrived";
        expect_reply(
            t,
            &mut worker,
            &mut client,
            b"after the signals\n",
            b"after the signals\n",
            why,
        );
        client.shutdown(Shutdown::Write).expect("half-close");
        let Some((served, log, signals)) = worker.wait(QUIET) else {
            t.fail("lab::serve to return after 1 connection", worker.status(), why);
        };
        t.step(format_args!("serve logged {log:?}"));
        t.check(served == Ok(1), "Ok(1)", format_args!("{served:?}"), why);
        t.check(
            log.ends_with(&[
                Logged::Accepted(local(&client)),
                Logged::Closed(local(&client), 1),
            ]),
            "the events end with Accepted and Closed for the client",
            format_args!("{log:?}"),
            why,
        );
        signals
    });
}

#[test]
fn step8_server_binary_closes_an_overlong_line_and_serves_the_next_client() {
    let t = Transcript::new(ITERATIVE);
    let mut server = ServerProcess::start(
        BIN,
        &["server", "--port", "0", "--framing", "line", "--max-line", "16"],
    );
    t.step("started `server --framing line --max-line 16`");
    let first = tcp_connect(server.addr());
    let me = local(&first).to_string();
    let mut request = vec![b'x'; 100];
    request.push(b'\n');
    (&first).write_all(&request).expect("send");
    t.sent(&request, &me, "the server");
    let (echoed, end) = read_some(&first, None, QUIET);
    t.check(
        echoed.is_empty() && matches!(end, End::Eof),
        "no reply, and the connection closed",
        arrived(&echoed, &end),
        "a line over --max-line ends its connection, unanswered",
    );
    let logged = await_log(&t, &mut server, &me, 2, QUIET);
    t.check(
        logged.iter().any(|l| l.contains("16")),
        "a log line that says why the connection was closed (a line longer than 16 bytes)",
        format_args!("{logged:?}"),
        "each connection's end is logged with its reason",
    );
    let mut next = tcp_connect(server.addr());
    next.write_all(b"still there?\n").expect("send");
    t.sent(b"still there?\n", local(&next), "the server");
    let (got, end) = read_some(&next, Some(13), QUIET);
    t.check(
        got == b"still there?\n",
        "the reply \"still there?\\n\" (13 bytes)",
        arrived(&got, &end),
        "one client's error ends its connection, never the server",
    );
}

#[test]
fn step8_server_binary_survives_a_client_that_resets_mid_frame() {
    let t = Transcript::new(ITERATIVE);
    let mut server = ServerProcess::start(BIN, &["server", "--port", "0", "--framing", "utf"]);
    t.step("started `server --framing utf`");
    let mut rude = tcp_connect(server.addr());
    let me = local(&rude).to_string();
    let mut request = vec![0x00, 0x32];
    request.extend_from_slice(&[b'r'; 10]);
    rude.write_all(&request).expect("send");
    t.sent(&request, &me, "the server");
    await_log(&t, &mut server, &format!("{me}: connected"), 1, QUIET);
    reset(rude);
    t.step("reset that connection (SO_LINGER 0) in the middle of its 50-byte frame");
    await_log(&t, &mut server, &me, 2, QUIET);
    let mut next = tcp_connect(server.addr());
    next.write_all(&frame(b"after the reset")).expect("send");
    t.sent(&frame(b"after the reset"), local(&next), "the server");
    let (got, end) = read_some(&next, Some(17), QUIET);
    t.check(
        got == frame(b"after the reset"),
        format_args!("the reply frame {}", sized(&frame(b"after the reset"))),
        arrived(&got, &end),
        "a client that resets ends its connection (ConnectionReset), never the server",
    );
}

#[test]
fn step8_server_binary_drops_a_stalled_client() {
    let t = Transcript::new(ITERATIVE);
    let mut server = ServerProcess::start(
        BIN,
        &[
            "server",
            "--port",
            "0",
            "--framing",
            "utf",
            "--idle-timeout",
            "300",
        ],
    );
    t.step("started `server --framing utf --idle-timeout 300`");
    let mut stalled = tcp_connect(server.addr());
    let me = local(&stalled).to_string();
    stalled.write_all(&[0x00, 0x14, b'a']).expect("send");
    t.sent(&[0x00, 0x14, b'a'], &me, "the server");
    t.step("sent nothing more: 19 payload bytes are missing");
    let started = Instant::now();
    let mut next = tcp_connect(server.addr());
    next.write_all(&frame(b"my turn")).expect("send");
    t.sent(&frame(b"my turn"), local(&next), "the server");
    let (got, end) = read_some(&next, Some(9), Duration::from_millis(300) + SLACK);
    t.check(
        got == frame(b"my turn") && started.elapsed() < Duration::from_millis(300) + SLACK,
        "the reply frame \"\\0\\amy turn\" within 2300 ms",
        format_args!(
            "{} after {} ms",
            arrived(&got, &end),
            started.elapsed().as_millis()
        ),
        "the stalled client is dropped after the idle timeout, and the next one served",
    );
    await_log(&t, &mut server, &me, 2, QUIET);
    let (rest, end) = read_some(&stalled, None, QUIET);
    t.check(
        rest.is_empty() && matches!(end, End::Eof),
        "the stalled client's connection closed",
        arrived(&rest, &end),
        "a dropped connection is closed",
    );
}

#[test]
fn step8_server_binary_uppercase_in_every_framing() {
    let t = Transcript::new(PROTOCOL);
    let mut payload = b"make me loud ".to_vec();
    payload.extend_from_slice(NON_UTF8);
    let loud = payload.to_ascii_uppercase();
    for framing in [lab::Framing::Raw, lab::Framing::Line, lab::Framing::Utf] {
        let name = framing.to_string();
        let server = ServerProcess::start(BIN, &["server", "--port", "0", "--framing", &name, "--uppercase"]);
        t.step(format_args!("started `server --framing {name} --uppercase`"));
        let client = tcp_connect(server.addr());
        let (request, reply) = framed(framing, &payload, &loud);
        (&client).write_all(&request).expect("send");
        t.sent(&request, local(&client), "the server");
        let (got, end) = read_some(&client, Some(reply.len()), QUIET);
        t.check(
            got == reply,
            format_args!("the reply {}", sized(&reply)),
            arrived(&got, &end),
            "--uppercase reaches the library in every framing, and changes ASCII letters only",
        );
    }
}

#[test]
fn step8_server_binary_exits_after_max_connections() {
    let t = Transcript::new(CLI);
    let mut server = ServerProcess::start(BIN, &["server", "--port", "0", "--max-connections", "2"]);
    t.step("started `server --max-connections 2`");
    for msg in [&b"one"[..], b"two"] {
        let mut client = tcp_connect(server.addr());
        client.write_all(msg).expect("send");
        t.sent(msg, local(&client), "the server");
        client.shutdown(Shutdown::Write).expect("half-close");
        let (got, end) = read_some(&client, None, QUIET);
        t.check(
            got == msg && matches!(end, End::Eof),
            format_args!("the echo {}, then EOF", sized(msg)),
            arrived(&got, &end),
            "each connection is served",
        );
    }
    let status = server.wait_exit(QUIET);
    t.check(
        status.is_some_and(|s| s.success()),
        "exit status 0 within 2000 ms",
        format_args!("{status:?} (None: still running)"),
        "with --max-connections 2 the server exits after two connections",
    );
}

/// Runs out of descriptors on purpose: lowers the soft descriptor limit of the running server
/// (`prlimit`, from outside: never in the test process) to the lowest number it does not hold,
/// so that its next `accept` fails with `EMFILE`, and lets a client wait; then restores it.
///
/// A blocking `accept` on Linux takes its descriptor number before it waits, so the call in
/// progress when the limit drops still succeeds: a client that connects and leaves at once
/// uses it up, and the `accept` after that fails.
#[cfg(target_os = "linux")]
#[test]
fn step8_server_binary_backs_off_when_out_of_descriptors_and_serves_on() {
    use common::descriptors;
    let t = Transcript::new(STEP8);
    let mut server = ServerProcess::start(BIN, &["server", "--port", "0", "--framing", "line"]);
    t.step("started `server --framing line`");
    let pid = server.id();
    let baseline = descriptors::open_descriptors(pid).map_or(usize::MAX, |fds| fds.len());
    let first = tcp_connect(server.addr());
    let me = local(&first).to_string();
    (&first).write_all(b"first\n").expect("send");
    let (got, end) = read_some(&first, Some(6), QUIET);
    t.check(
        got == b"first\n",
        "the echo \"first\\n\"",
        arrived(&got, &end),
        "the server serves",
    );
    drop(first);
    t.step("a first client was served and left");
    await_log(&t, &mut server, &format!("{me}: closed"), 1, QUIET);
    // Until the server's end of that connection is closed, its number is not free.
    let _ = descriptors::await_at_most(pid, baseline, Duration::from_secs(5));
    if !descriptors::prlimit_available() {
        common::testing::notice("step8 descriptor exhaustion: skipped, prlimit(1) is not installed");
        return;
    }
    let (Ok(free), Some(original)) = (descriptors::lowest_free(pid), descriptors::soft_limit(pid)) else {
        panic!("test set-up: cannot read /proc/{pid}/fd and /proc/{pid}/limits");
    };
    descriptors::set_soft_limit(pid, u64::from(free)).unwrap_or_else(|e| panic!("test set-up: {e}"));
    let lowered = Instant::now();
    t.step(format_args!(
        "lowered the server's descriptor limit to {free} (prlimit): once the accept in progress has \
         returned, the next one fails with EMFILE, too many open files"
    ));
    // Connections may fail when the server has already exited: await_backoff then says so.
    drop(TcpStream::connect_timeout(&server.addr(), IO_TIMEOUT));
    let waiting = TcpStream::connect_timeout(&server.addr(), IO_TIMEOUT);
    if let Ok(mut stream) = waiting.as_ref() {
        set_stream_timeouts(stream);
        let _ = stream.write_all(b"waiting\n");
    }
    t.step("a client connected and left at once; another connected (it waits in the backlog) and sent \"waiting\\n\"");
    let backoff = descriptors::await_backoff(&mut server, 2, lowered, Duration::from_secs(5));
    // Restore even after a failure; a server that has exited makes prlimit fail, and the
    // failure to report is then the back-off's.
    let restored = descriptors::set_soft_limit(pid, original);
    let why = "EMFILE concerns neither one client nor the listener: log Event::AcceptBackoff, sleep \
               ACCEPT_BACKOFF and accept again (is_resource_exhaustion); returning the error stops \
               the server, and retrying without the pause spins, since the waiting connection keeps \
               the listener ready";
    if let Err(e) = backoff {
        t.fail(
            "two or more \"backing off\" log lines, at most one per 20 ms, while the limit lasts",
            e,
            why,
        );
    }
    restored.unwrap_or_else(|e| panic!("test set-up: {e}"));
    t.step(format_args!("restored the limit to {original}"));
    let waiting = t.ok(waiting, "the waiting client's connect", why);
    let (echo, end) = read_some(&waiting, Some(8), QUIET);
    t.check(
        echo == b"waiting\n",
        "the waiting client's echo \"waiting\\n\" (8 bytes)",
        arrived(&echo, &end),
        why,
    );
    drop(waiting);
    let next = tcp_connect(server.addr());
    (&next).write_all(b"and the next\n").expect("send");
    t.sent(b"and the next\n", local(&next), "the server");
    let (got, end) = read_some(&next, Some(13), QUIET);
    t.check(
        got == b"and the next\n",
        "the reply \"and the next\\n\" (13 bytes)",
        arrived(&got, &end),
        why,
    );
    t.check(
        server.wait_exit(Duration::ZERO).is_none(),
        "the server still running",
        "it exited",
        why,
    );
}

// ---------------------------------------------------------------------------------------------
// Step 9: connect

#[test]
fn step9_connects_and_sets_both_timeouts() {
    let t = Transcript::new(SETUP);
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let timeout = Duration::from_millis(3000);
    t.step(format_args!(
        "called lab::connect([{addr}], 3000 ms) on a listening socket"
    ));
    let stream = call(&t, "lab::connect", CALL_LIMIT, move || {
        lab::connect(&[addr], timeout)
    });
    let stream = t.ok(stream, "lab::connect", "the server listens");
    let peer = stream.peer_addr().ok();
    t.check(
        peer == Some(addr),
        addr,
        format_args!("{peer:?}"),
        "connect to the address given",
    );
    let timeouts = (
        stream.read_timeout().ok().flatten(),
        stream.write_timeout().ok().flatten(),
    );
    t.check(
        timeouts == (Some(timeout), Some(timeout)),
        "read and write timeouts of 3000 ms",
        format_args!("(read, write) timeouts {timeouts:?}"),
        "a client without them waits forever for a server that accepts but never answers: set \
         both to the timeout given",
    );
}

#[test]
fn step9_a_closed_port_is_refused_at_once() {
    let t = Transcript::new(SETUP);
    let (_holder, addr) = closed_port();
    t.step(format_args!(
        "called lab::connect([{addr}], 5000 ms), where nothing listens"
    ));
    let started = Instant::now();
    let result = call(&t, "lab::connect", Duration::from_secs(6), move || {
        lab::connect(&[addr], Duration::from_secs(5))
            .map(|_| ())
            .map_err(|e| e.kind())
    });
    let took = started.elapsed();
    t.check(
        result == Err(io::ErrorKind::ConnectionRefused) && took < Duration::from_millis(1000) + SLACK,
        "error ConnectionRefused, at once",
        format_args!("{result:?} after {} ms", took.as_millis()),
        "nothing listens there: the handshake is answered with a reset, and connect fails at once; \
         return that error, do not retry it until the timeout",
    );
}

#[test]
fn step9_tries_each_address_in_turn() {
    let t = Transcript::new(SETUP);
    let (_holder, closed) = closed_port();
    let listener = tcp_listener();
    let open = addr_of(&listener);
    t.step(format_args!(
        "called lab::connect([{closed}, {open}], 3000 ms): nothing listens on the first, the second listens"
    ));
    let stream = call(&t, "lab::connect", CALL_LIMIT, move || {
        lab::connect(&[closed, open], Duration::from_secs(3))
    });
    let why = "a name may resolve to several addresses: try each in turn, keep the first that \
               connects, and return the last error only when all fail";
    let stream = t.ok(stream, "lab::connect", why);
    let peer = stream.peer_addr().ok();
    t.check(peer == Some(open), open, format_args!("{peer:?}"), why);
}

#[test]
fn step9_gives_up_when_the_server_does_not_answer() {
    use socket2::{Domain, Socket, Type};
    let t = Transcript::new(SETUP);
    // A listener with a backlog of 1 that never accepts: once its queue is full, Linux drops
    // further SYNs, so a connect gets no answer (as behind a firewall that drops them).
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    listener.bind(&any.into()).expect("bind");
    listener.listen(1).expect("listen");
    let addr = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("bound address");
    // The queue counts as full once two connects in a row get no answer within 250 ms (one
    // slow handshake on a busy machine is not enough).
    let mut queued = Vec::new();
    let mut unanswered = 0;
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(250)) {
            Ok(stream) => {
                queued.push(stream);
                unanswered = 0;
            }
            Err(e) if is_timeout(&e) => {
                unanswered += 1;
                if unanswered == 2 {
                    break;
                }
            }
            // Some systems refuse once the queue is full instead of dropping the SYN.
            Err(_) => break,
        }
    }
    let full = unanswered == 2;
    t.step(format_args!(
        "listened on {addr} with a backlog of 1 and never accepted; {} connections filled the \
         queue, and the next two connects got no answer{}",
        queued.len(),
        if full {
            ""
        } else {
            " (not seen: this system refused them or queued all 16)"
        }
    ));
    let timeout = Duration::from_millis(300);
    t.step(format_args!("called lab::connect([{addr}], 300 ms)"));
    let started = Instant::now();
    let mut worker = Worker::spawn("lab::connect", move || {
        lab::connect(&[addr], timeout).map(|_| ()).map_err(|e| e.kind())
    });
    let limit = timeout + SLACK;
    let result = worker.wait(limit);
    let why = "a SYN that gets no answer is sent again for minutes (TcpStream::connect waits for \
               the kernel to give up): use TcpStream::connect_timeout with the timeout given, which \
               fails with TimedOut";
    match result {
        None => t.fail(
            format_args!("error TimedOut after about 300 ms"),
            format_args!("lab::connect was still waiting after {} ms", limit.as_millis()),
            why,
        ),
        Some(result) if full => t.check(
            result == Err(io::ErrorKind::TimedOut),
            "error TimedOut after about 300 ms",
            format_args!("{result:?} after {} ms", started.elapsed().as_millis()),
            why,
        ),
        Some(_) => {
            common::testing::notice("step9: the backlog could not be filled; only the wait was checked")
        }
    }
    drop(queued);
}

// ---------------------------------------------------------------------------------------------
// Step 10: the client's exchange

/// A test-side server (not the student's code) for one connection: `respond` gets the accepted
/// stream ([`PEER_TIMEOUT`] on reads and writes) and returns what the test wants to check.
fn test_server<T: Send + 'static>(
    respond: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (SocketAddr, Worker<T>) {
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let worker = Worker::spawn("the test's server", move || {
        let (stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(PEER_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(PEER_TIMEOUT)))
            .expect("timeouts");
        respond(stream)
    });
    (addr, worker)
}

/// Runs the student's `exchange` on a new connection to `addr` whose read and write timeouts
/// are `timeout`, and waits for it a little longer than that.
fn client_exchange(
    t: &Transcript,
    addr: SocketAddr,
    framing: lab::Framing,
    messages: &[&[u8]],
    max_reply: usize,
    timeout: Duration,
) -> io::Result<Vec<Vec<u8>>> {
    let stream = tcp_connect(addr);
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .expect("timeouts");
    let shown: Vec<String> = messages.iter().map(|m| sized(m)).collect();
    t.step(format_args!(
        "called lab::exchange in {framing} framing with the messages [{}] (max_reply {max_reply}), \
         on a connection with {} ms timeouts",
        shown.join(", "),
        timeout.as_millis()
    ));
    let messages: Vec<Vec<u8>> = messages.iter().map(|m| m.to_vec()).collect();
    let mut worker = Worker::spawn("lab::exchange", move || {
        let messages: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        lab::exchange(&stream, framing, &messages, max_reply)
    });
    let limit = timeout + SLACK;
    match worker.wait(limit) {
        Some(result) => result,
        None => t.fail(
            format_args!("lab::exchange to return within {} ms", limit.as_millis()),
            "it was still running",
            "every read and write of the exchange is bounded by the stream's timeout",
        ),
    }
}

/// The replies as text for messages: `["a" (1 byte), "b" (1 byte)]`.
fn replies_of(replies: &io::Result<Vec<Vec<u8>>>) -> String {
    match replies {
        Ok(replies) => {
            let shown: Vec<String> = replies.iter().map(|r| sized(r)).collect();
            format!("Ok([{}])", shown.join(", "))
        }
        Err(e) => format!("error {:?}: {e}", e.kind()),
    }
}

fn check_replies(t: &Transcript, replies: &io::Result<Vec<Vec<u8>>>, expected: &[&[u8]], why: &str) {
    let holds = replies
        .as_ref()
        .is_ok_and(|r| r.len() == expected.len() && r.iter().zip(expected).all(|(a, b)| a == b));
    let shown: Vec<String> = expected.iter().map(|r| sized(r)).collect();
    t.check(
        holds,
        format_args!("Ok([{}])", shown.join(", ")),
        replies_of(replies),
        why,
    );
}

#[test]
fn step10_raw_half_closes_then_reads_to_eof() {
    let t = Transcript::new(EOF);
    // This server echoes only once it has read the client's EOF, then closes.
    let (addr, mut server) = test_server(|mut s| {
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .expect("timeout");
        let mut request = Vec::new();
        let eof = s.read_to_end(&mut request);
        if eof.is_ok() {
            s.write_all(&request).expect("echo");
        }
        (request, eof.map(|_| ()).map_err(|e| e.kind()))
    });
    t.step("the test's server reads the request until the client's EOF (for up to 1500 ms), and only then echoes it");
    let replies = client_exchange(
        &t,
        addr,
        lab::Framing::Raw,
        &[b"hello, ", b"stream"],
        1000,
        Duration::from_secs(3),
    );
    let Some((request, eof)) = server.wait(QUIET) else {
        t.fail(
            "the test's server to finish",
            "it was still running",
            "test set-up",
        );
    };
    t.step(format_args!("the test's server received {}", sized(&request)));
    t.check(
        eof.is_ok() && request == b"hello, stream",
        "the 13 bytes \"hello, stream\" back to back, then the client's EOF",
        format_args!(
            "{}, then {}",
            sized(&request),
            if eof.is_ok() {
                "EOF"
            } else {
                "no EOF within 1500 ms"
            }
        ),
        "raw mode has no message boundaries, only the end of the stream: after sending, half-close \
         with stream.shutdown(Shutdown::Write) so the server's read returns 0; without it each \
         side waits for the other",
    );
    check_replies(
        &t,
        &replies,
        &[b"hello, stream"],
        "raw mode returns everything read until EOF as one reply",
    );
}

#[test]
fn step10_line_mode_one_reply_per_message() {
    let t = Transcript::new(FRAMING);
    let (addr, mut server) = test_server(|s| {
        let mut reader = BufReader::new(&s);
        let mut received = Vec::new();
        let mut request = Vec::new();
        while reader.read_until(b'\n', &mut request).unwrap_or(0) > 0 {
            let mut reply = b"reply to ".to_vec();
            reply.extend_from_slice(&request);
            if (&s).write_all(&reply).is_err() {
                break;
            }
            received.push(std::mem::take(&mut request));
        }
        received
    });
    t.step("the test's server answers each line L with the line \"reply to L\"");
    let replies = client_exchange(
        &t,
        addr,
        lab::Framing::Line,
        &[b"one", b"two"],
        1000,
        PEER_TIMEOUT,
    );
    check_replies(
        &t,
        &replies,
        &[b"reply to one", b"reply to two"],
        "each message is sent as a line and each reply line returned without its newline, one \
         reply read before the next message is sent",
    );
    let received = server.wait(QUIET).unwrap_or_default();
    let shown: Vec<String> = received.iter().map(|r| sized(r)).collect();
    t.check(
        received == [b"one\n".to_vec(), b"two\n".to_vec()],
        "the server received [\"one\\n\" (4 bytes), \"two\\n\" (4 bytes)]",
        format_args!("[{}]", shown.join(", ")),
        "a line ends with \\n",
    );
}

#[test]
fn step10_utf_mode_sends_and_reads_big_endian_frames() {
    let t = Transcript::new(FRAMING);
    let (addr, mut server) = test_server(|mut s| {
        let mut request = [0u8; 4];
        let _ = s.read_exact(&mut request);
        // A 258-byte reply: prefix 01 02, which is 513 when read as little-endian.
        let mut reply = vec![0x01, 0x02];
        reply.extend(std::iter::repeat_n(b'r', 258));
        let _ = s.write_all(&reply);
        request
    });
    t.step("the test's server reads a 4-byte request and replies with a frame of 258 bytes (prefix 01 02)");
    let replies = client_exchange(
        &t,
        addr,
        lab::Framing::Utf,
        &[b"hi"],
        1000,
        Duration::from_secs(2),
    );
    let request = server.wait(QUIET).unwrap_or_default();
    let why = "a frame is a 2-byte big-endian length, then the bytes: \"hi\" is 00 02 'h' 'i', and \
               a reply prefix 01 02 means 258 bytes (513 read as little-endian)";
    t.check_bytes("the request the server received", b"\x00\x02hi", &request, why);
    check_replies(&t, &replies, &[&[b'r'; 258]], why);
}

#[test]
fn step10_replies_arriving_in_pieces_are_read_whole() {
    let t = Transcript::new(SHORT);
    for framing in [lab::Framing::Line, lab::Framing::Utf] {
        let (addr, _server) = test_server(move |s| {
            let mut buf = [0u8; 64];
            let _ = (&s).read(&mut buf);
            let reply = match framing {
                lab::Framing::Line => b"a reply in many pieces\n".to_vec(),
                _ => frame(b"a reply in many pieces"),
            };
            let _ = (&s).write_all(&reply);
        });
        let relay = TcpRelay::start(addr, Shaping::Intact, Shaping::SLICE, 12).expect("relay");
        t.step("the test's server replies through a relay that delivers the reply in 1-3 byte pieces");
        let replies = client_exchange(&t, relay.addr(), framing, &[b"go"], 1000, PEER_TIMEOUT);
        check_replies(
            &t,
            &replies,
            &[b"a reply in many pieces"],
            "one read is not one reply: read the whole line or frame, however it arrives",
        );
    }
}

#[test]
fn step10_a_raw_echo_in_pieces_is_read_to_eof() {
    let t = Transcript::new(SHORT);
    let (addr, _server) = test_server(|mut s| {
        let _ = s.set_nodelay(true);
        let mut request = Vec::new();
        let _ = s.read_to_end(&mut request);
        for (i, piece) in [&b"a raw echo "[..], b"in three ", b"pieces"].iter().enumerate() {
            if i > 0 {
                thread::sleep(Duration::from_millis(100));
            }
            if s.write_all(piece).is_err() {
                break;
            }
        }
    });
    t.step("the test's server reads to the client's EOF, then writes \"a raw echo in three pieces\" in 3 writes, 100 ms apart, and closes");
    let replies = client_exchange(&t, addr, lab::Framing::Raw, &[b"go"], 1000, PEER_TIMEOUT);
    check_replies(
        &t,
        &replies,
        &[b"a raw echo in three pieces"],
        "one read returns what has arrived so far, not the whole reply: in raw mode read until \
         EOF (read_to_end through a take), not once",
    );
}

#[test]
fn step10_a_server_that_closes_early_is_unexpected_eof() {
    let t = Transcript::new(EOF);
    for framing in [lab::Framing::Line, lab::Framing::Utf] {
        let (addr, _server) = test_server(|mut s| {
            let mut buf = [0u8; 16];
            let _ = s.read(&mut buf);
            // Close without replying.
        });
        t.step("the test's server reads the request and closes without replying");
        let replies = client_exchange(&t, addr, framing, &[b"anyone?"], 1000, PEER_TIMEOUT);
        t.check(
            replies
                .as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::UnexpectedEof),
            "error UnexpectedEof",
            replies_of(&replies),
            "the server closed before replying: read_line/read_frame return None, which the client \
             turns into UnexpectedEof; an empty reply would be a lie",
        );
    }
}

/// A test server that reads the request to the client's EOF, then sends `len` bytes of
/// `pattern`, and then either closes or, with `hold`, keeps the connection open for 3 s.
fn raw_sender(len: usize, hold: bool) -> (SocketAddr, Worker<()>) {
    test_server(move |mut s| {
        let mut request = Vec::new();
        let _ = s.read_to_end(&mut request);
        let chunk = pattern(64 * 1024);
        let mut sent = 0;
        while sent < len {
            let n = chunk.len().min(len - sent);
            if s.write_all(&chunk[..n]).is_err() {
                return;
            }
            sent += n;
        }
        if hold {
            // Not a read: after the client's half-close it would return 0 at once.
            thread::sleep(Duration::from_secs(3));
        }
    })
}

#[test]
fn step10_a_raw_reply_is_capped_at_max_reply() {
    let t = Transcript::new(STEP10);
    for len in [999, 1000] {
        let (addr, _server) = raw_sender(len, false);
        t.step(format_args!(
            "the test's server reads to EOF, sends {len} bytes and closes"
        ));
        let replies = client_exchange(
            &t,
            addr,
            lab::Framing::Raw,
            &[b"give me a lot"],
            1000,
            PEER_TIMEOUT,
        );
        t.check(
            replies
                .as_ref()
                .is_ok_and(|r| r.len() == 1 && r[0] == pattern(len)),
            format_args!("Ok with one reply of {len} bytes"),
            replies_of(&replies),
            "max_reply = 1000: a reply of up to exactly 1000 bytes fits",
        );
    }
    let (addr, _server) = raw_sender(1001, false);
    t.step("the test's server reads to EOF, sends 1001 bytes and closes");
    let replies = client_exchange(
        &t,
        addr,
        lab::Framing::Raw,
        &[b"give me a lot"],
        1000,
        PEER_TIMEOUT,
    );
    t.check(
        replies
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::InvalidData && e.to_string().contains("1000")),
        "error InvalidData naming the cap (\"the reply exceeded 1000 bytes\")",
        replies_of(&replies),
        "1001 bytes are one over max_reply = 1000: read at most max_reply + 1 bytes, and more \
         than max_reply is an error; a take(max_reply) would cut the reply to 1000 bytes and \
         hide that it was too long",
    );
    // A server that sends more than the cap and keeps the connection open: the client must stop
    // at max_reply + 1 bytes (Read::take), not wait for the end of the stream.
    let (addr, _server) = raw_sender(64 * 1024 + 1 + 1000, true);
    t.step("the test's server reads to EOF, sends 64 KiB + 1001 bytes, and keeps the connection open");
    let started = Instant::now();
    let replies = client_exchange(
        &t,
        addr,
        lab::Framing::Raw,
        &[b"give me a lot"],
        64 * 1024,
        Duration::from_millis(1500),
    );
    t.check(
        replies
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::InvalidData)
            && started.elapsed() < Duration::from_millis(1000),
        "error InvalidData as soon as 65 537 bytes (max_reply + 1) have arrived, within 1000 ms",
        format_args!(
            "{} after {} ms",
            replies_of(&replies),
            started.elapsed().as_millis()
        ),
        "read at most max_reply + 1 bytes (Read::take) and then stop: a read_to_end without a cap \
         waits for an end of stream that an endless server never sends, buffering all it sends",
    );
}

#[test]
fn step10_a_reply_line_is_capped_at_default_max_line() {
    let t = Transcript::new(FRAMING);
    let max = lab::DEFAULT_MAX_LINE;
    for (len, fits) in [(max - 1, true), (max, true), (max + 1, false)] {
        let (addr, _server) = test_server(move |s| {
            let mut buf = [0u8; 64];
            let _ = (&s).read(&mut buf);
            let _ = (&s).write_all(&line(&vec![b'r'; len]));
            let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
            let _ = (&s).read(&mut buf);
        });
        t.step(format_args!(
            "the test's server replies with a line of {len} bytes and its newline"
        ));
        let replies = client_exchange(&t, addr, lab::Framing::Line, &[b"long?"], 1000, PEER_TIMEOUT);
        if fits {
            t.check(
                replies.as_ref().is_ok_and(|r| r.len() == 1 && r[0].len() == len),
                format_args!("Ok with one reply of {len} bytes"),
                replies_of(&replies),
                "a reply line of up to DEFAULT_MAX_LINE (65 536) bytes fits",
            );
        } else {
            t.check(
                replies
                    .as_ref()
                    .is_err_and(|e| e.kind() == io::ErrorKind::InvalidData),
                "error InvalidData",
                replies_of(&replies),
                "a reply line one over DEFAULT_MAX_LINE is refused: read replies with read_line and \
                 the cap DEFAULT_MAX_LINE, never without one",
            );
        }
    }
}

#[test]
fn step10_non_utf8_messages_and_replies_in_every_framing() {
    let t = Transcript::new(PROTOCOL);
    let messages: [&[u8]; 2] = [NON_UTF8, b"\xff"];
    for framing in [lab::Framing::Raw, lab::Framing::Line, lab::Framing::Utf] {
        // A test-side echo server in the framing.
        let (addr, _server) = test_server(move |s| {
            let mut reader = BufReader::new(&s);
            match framing {
                lab::Framing::Raw => {
                    let mut all = Vec::new();
                    let _ = reader.read_to_end(&mut all);
                    let _ = (&s).write_all(&all);
                }
                lab::Framing::Line => {
                    let mut request = Vec::new();
                    while reader.read_until(b'\n', &mut request).unwrap_or(0) > 0 {
                        let _ = (&s).write_all(&request);
                        request.clear();
                    }
                }
                lab::Framing::Utf => {
                    let mut prefix = [0u8; 2];
                    while reader.read_exact(&mut prefix).is_ok() {
                        let mut payload = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
                        let _ = reader.read_exact(&mut payload);
                        let _ = (&s).write_all(&frame(&payload));
                    }
                }
            }
        });
        t.step(format_args!("the test's server echoes in {framing} framing"));
        let replies = client_exchange(&t, addr, framing, &messages, 1000, PEER_TIMEOUT);
        let joined: Vec<u8> = messages.concat();
        let expected: Vec<&[u8]> = match framing {
            lab::Framing::Raw => vec![joined.as_slice()],
            _ => messages.to_vec(),
        };
        check_replies(
            &t,
            &replies,
            &expected,
            "messages and replies are bytes, not text: non-UTF-8 bytes go out and come back \
             unchanged",
        );
    }
}

#[cfg(unix)]
#[test]
fn step10_survives_signals_in_every_framing() {
    let t = Transcript::new(SHORT);
    for framing in [lab::Framing::Raw, lab::Framing::Line, lab::Framing::Utf] {
        under_signals(&t, |t| {
            let (addr, _server) = test_server(move |mut s| {
                let mut request = vec![0u8; 64];
                let n = if framing == lab::Framing::Raw {
                    request.clear();
                    s.read_to_end(&mut request).unwrap_or(0)
                } else {
                    s.read(&mut request).unwrap_or(0)
                };
                thread::sleep(LATE);
                let _ = s.write_all(&request[..n]);
            });
            t.step(format_args!(
                "the test's server reads the request and echoes it {} ms later",
                LATE.as_millis()
            ));
            let stream = tcp_connect(addr);
            t.step(format_args!(
                "called lab::exchange in {framing} framing with the message \"signals\", with SIGUSR1 \
             sent to its thread every 20 ms"
            ));
            let mut worker = Worker::spawn("lab::exchange", move || {
                let (result, signals) =
                    with_interrupts(|| lab::exchange(&stream, framing, &[b"signals".as_slice()], 1000));
                (result, signals)
            });
            let why = "each signal makes the blocked read fail with Interrupted (a socket with a timeout \
                   is never restarted): read again; read_to_end, read_until and read_exact do, a \
                   loop of your own must too";
            let Some((replies, signals)) = worker.wait(IO_TIMEOUT) else {
                t.fail("lab::exchange to return", "it was still running", why);
            };
            check_replies(t, &replies, &[b"signals"], why);
            signals
        });
    }
}

#[test]
fn step10_binaries_talk_in_every_framing() {
    let t = Transcript::new(CLI);
    for (framing, expected) in [
        ("raw", "Received: HELLO, STREAM\n"),
        ("line", "Received: HELLO, \nReceived: STREAM\n"),
        ("utf", "Received: HELLO, \nReceived: STREAM\n"),
    ] {
        let server = ServerProcess::start(
            BIN,
            &[
                "server",
                "--port",
                "0",
                "--framing",
                framing,
                "--uppercase",
                "--idle-timeout",
                "2000",
            ],
        );
        t.step(format_args!(
            "started `server --framing {framing} --uppercase --idle-timeout 2000`"
        ));
        let target = server.addr().to_string();
        let out = run_client(
            &t,
            &[
                "--server",
                &target,
                "--framing",
                framing,
                "--timeout",
                "2000",
                "hello, ",
                "stream",
            ],
        );
        t.step(format_args!(
            "ran `client --server {target} --framing {framing} --timeout 2000 \"hello, \" stream`: {}",
            out.status
        ));
        t.check(
            out.status.success() && out.stdout == expected.as_bytes(),
            format_args!("exit status 0 and the output {}", sized(expected.as_bytes())),
            format_args!(
                "{}, output {}, error output {}",
                out.status,
                sized(&out.stdout),
                sized(&out.stderr)
            ),
            "client and server agree on the framing: raw sends the messages back to back and gets \
             one reply; line and utf get one reply per message",
        );
    }
}

#[test]
fn step10_client_binary_against_a_closed_port_fails_fast() {
    let t = Transcript::new(SETUP);
    let (_holder, addr) = closed_port();
    let target = addr.to_string();
    let started = Instant::now();
    let out = run_client(&t, &["--server", &target, "hello?"]);
    let took = started.elapsed();
    t.step(format_args!(
        "ran `client --server {target} hello?` where nothing listens: {} after {} ms",
        out.status,
        took.as_millis()
    ));
    let err = text(&out.stderr);
    t.check(
        !out.status.success()
            && out.stdout.is_empty()
            && err.trim_end().lines().count() == 1
            && err.starts_with("error:")
            && err.contains(&target)
            && err.to_lowercase().contains("refused")
            && took < Duration::from_millis(1000) + SLACK,
        "at once, a non-zero exit status, no output, and one error line naming the server and \
         saying the connection was refused",
        format_args!(
            "{}, output {}, error output {}",
            out.status,
            sized(&out.stdout),
            sized(&out.stderr)
        ),
        "a refused connection fails at once: return connect's error",
    );
}

#[test]
fn step10_client_binary_times_out_when_the_server_is_silent() {
    let t = Transcript::new(SETUP);
    // A listener nobody accepts from: the connection completes in the backlog, no reply comes.
    let listener = tcp_listener();
    let target = addr_of(&listener).to_string();
    let started = Instant::now();
    let out = run_client(
        &t,
        &[
            "--server",
            &target,
            "--framing",
            "utf",
            "--timeout",
            "300",
            "hello?",
        ],
    );
    let took = started.elapsed();
    t.step(format_args!(
        "ran `client --server {target} --framing utf --timeout 300 hello?` against a listener \
         that never accepts: {} after {} ms",
        out.status,
        took.as_millis()
    ));
    let err = text(&out.stderr);
    t.check(
        !out.status.success()
            && err.trim_end().lines().count() == 1
            && err.starts_with("error:")
            && err.contains("300 ms")
            && took < Duration::from_millis(300) + SLACK,
        "within 2300 ms, a non-zero exit status and one error line saying the client timed out \
         after 300 ms",
        format_args!("{}, error output {}", out.status, sized(&out.stderr)),
        "a client waiting for a reply needs a read timeout (set by lab::connect), or a silent \
         server keeps it waiting forever",
    );
}

#[test]
fn step10_client_binary_reports_a_server_that_closes_early() {
    let t = Transcript::new(EOF);
    let (addr, _server) = test_server(|mut s| {
        let mut buf = [0u8; 16];
        let _ = s.read(&mut buf);
    });
    let target = addr.to_string();
    let out = run_client(&t, &["--server", &target, "--framing", "line", "hello?"]);
    t.step(format_args!(
        "ran `client --server {target} --framing line hello?` against a server that closes without \
         replying: {}",
        out.status
    ));
    let err = text(&out.stderr);
    t.check(
        !out.status.success()
            && out.stdout.is_empty()
            && err.starts_with("error:")
            && err.contains("closed the connection"),
        "a non-zero exit status, no output, and an error line saying the server closed the \
         connection early",
        format_args!(
            "{}, output {}, error output {}",
            out.status,
            sized(&out.stdout),
            sized(&out.stderr)
        ),
        "a server that closes before replying is UnexpectedEof, not an empty reply",
    );
}
