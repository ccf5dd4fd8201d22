//! Lab 03 grading suite: iterative, thread-per-connection and fork-per-connection servers.
//!
//! Shared by `lab03-concurrent-servers` (the student's work) and `solution03-concurrent-servers`
//! (the reference): each package's `tests/grade.rs` defines `lab` (its library) and `BIN` (its
//! binary) and includes this file. Tests are named `stepN_...` after the step of the book chapter
//! they check, so `cargo test -p lab03-concurrent-servers step2_` runs the checks of step 2.
//!
//! Nothing here forks: the test process has many threads (see the chapter, § What fork copies
//! and what it shares). The forking server is tested by spawning the binary and looking at its
//! children from outside, in /proc (Linux). The step 3 and 5 functions are tested on children
//! started with `std::process::Command` (`sleep`, `sh`), which they must reap by pid only.
//! Every socket has timeouts, every server process is killed and reaped by its guard, and the
//! only signal handlers installed in the test process do nothing: they exist so that signals
//! sent on purpose to one thread (`common::testing::with_interrupts`) interrupt the call it is
//! blocked in. (A blocking `waitpid` is not tested that way: signal-hook installs its handlers
//! with `SA_RESTART`, so the kernel restarts `waitpid`, and a handler without it needs unsafe
//! code, which the suites do not have.)
//!
//! Failures are transcripts (`common::testing::Transcript`): the numbered steps the test took,
//! then what was expected, what came back (payloads as escaped text with their length), why that
//! is a mistake, and the section of the book that explains it. The bug zoo in
//! `tests/03-concurrent-servers/mutants/` proves that each classic mistake fails a test here,
//! with a message that names it (`cargo lab dev mutants --lab 3`).

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(unix)]
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[cfg(unix)]
use common::testing::with_interrupts;
use common::testing::{
    IO_TIMEOUT, ServerProcess, ServerThread, Transcript, is_timeout, panic_message, set_stream_timeouts,
    sized, tcp_listener,
};

use crate::{BIN, lab};

// The book's sections the failures cite.
const THREE_WAYS: &str = "Lab 03 § Three ways to serve many clients";
const ITERATIVE: &str = "Lab 03 § Iterative servers";
#[cfg(unix)]
const FORK_COPIES: &str = "Lab 03 § What fork copies and what it shares";
const REAPING: &str = "Lab 03 § Reaping and zombies";
const THREADS: &str = "Lab 03 § Threads and their cost";
const CAP: &str = "Lab 03 § The backlog and the cap";
#[cfg(unix)]
const SIGNALS: &str = "Lab 03 § Signals and stopping";
const SLOW: &str = "Lab 03 § Slow clients and the cap";
const PROTOCOL: &str = "Lab 03 § The protocol and the programs";
const STEP1: &str = "Lab 03 § Step 1: The iterative server";
const STEP2: &str = "Lab 03 § Step 2: A thread per connection";
#[cfg(unix)]
const STEP3: &str = "Lab 03 § Step 3: Reap the children";
#[cfg(unix)]
const STEP4: &str = "Lab 03 § Step 4: A process per connection";
#[cfg(unix)]
const STEP5: &str = "Lab 03 § Step 5: Stop the children";

/// How long a concurrent server may take to answer a second client while a first one is idle.
const PROMPT: Duration = Duration::from_millis(500);
/// How long a client that should be waiting must see no reply, to call it waiting.
const SILENCE: Duration = Duration::from_millis(1000);
/// How long a test waits for an echo that a correct server sends at once.
const REPLY_WITHIN: Duration = Duration::from_secs(2);
/// How long the server gets to notice something (a client gone, a child finished, a line in
/// its log).
const SETTLE: Duration = Duration::from_secs(3);
/// How long a finished child may stay a zombie: the forking server reaps every `TICK` (50 ms).
#[cfg(unix)]
const REAP_WITHIN: Duration = Duration::from_secs(2);
/// How long a library call that should return at once may take before the test calls it hung.
#[cfg(unix)]
const AT_ONCE: Duration = Duration::from_millis(1500);
/// How long a library call that should return after a few hundred milliseconds may take
/// before the test calls it hung.
#[cfg(unix)]
const CALL_LIMIT: Duration = Duration::from_secs(3);
/// How often waiting loops look again.
const POLL: Duration = Duration::from_millis(20);

/// Bytes that are not UTF-8, and non-ASCII UTF-8 ("é"), with a NUL and a `\r`: a line echo
/// server must send them back exactly as they came.
const NON_UTF8: &[u8] = b"caf\xe9 \xc3\xa9 \xff\xfe\x00\x80\r ok";

fn addr_of(listener: &TcpListener) -> SocketAddr {
    listener.local_addr().expect("a bound socket has a local address")
}

/// `bytes` and a newline: one request line.
fn with_newline(bytes: &[u8]) -> Vec<u8> {
    let mut line = bytes.to_vec();
    line.push(b'\n');
    line
}

/// A line of `len` bytes without a newline, every other byte value in turn (so bytes that are
/// not UTF-8 included).
fn long_line(len: usize) -> Vec<u8> {
    (0..=255u8).filter(|&b| b != b'\n').cycle().take(len).collect()
}

// ---------------------------------------------------------------------------------------------
// Clients and what they receive

/// How a read of an expected reply ended.
enum End {
    /// All the bytes asked for arrived.
    Complete,
    /// End of stream: the server closed the connection.
    Eof,
    /// Nothing more arrived before the wait was over.
    Silent,
    /// The connection failed (a reset).
    Failed(io::Error),
}

/// What a client received while it waited for a reply.
struct Reply {
    bytes: Vec<u8>,
    end: End,
    waited: Duration,
}

impl Reply {
    /// Whether the server closed the connection (end of stream or a reset).
    fn closed(&self) -> bool {
        matches!(self.end, End::Eof | End::Failed(_))
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.waited.as_millis();
        let got = sized(&self.bytes);
        match (&self.end, self.bytes.is_empty()) {
            (End::Complete, _) => write!(f, "received {got}"),
            (End::Eof, true) => write!(
                f,
                "the server closed the connection (end of stream) after {ms} ms, sending nothing"
            ),
            (End::Eof, false) => write!(f, "received {got}, then end of stream"),
            (End::Silent, true) => write!(f, "nothing arrived within {ms} ms"),
            (End::Silent, false) => write!(f, "received {got}, then nothing more within {ms} ms"),
            (End::Failed(e), true) => {
                write!(f, "the connection failed after {ms} ms ({e}), nothing received")
            }
            (End::Failed(e), false) => write!(f, "received {got}, then the connection failed ({e})"),
        }
    }
}

/// Reads from `stream` until `len` bytes have arrived, the stream ends or fails, or `wait` has
/// passed; calls `check` between short polls (to surface a panic of the server thread).
fn read_reply(stream: &TcpStream, len: usize, wait: Duration, check: &dyn Fn()) -> Reply {
    let restore = stream.read_timeout().ok().flatten();
    let _ = stream.set_read_timeout(Some(POLL));
    let started = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut reader = stream;
    let end = loop {
        if bytes.len() >= len {
            break End::Complete;
        }
        let room = (len - bytes.len()).min(buf.len());
        match reader.read(&mut buf[..room]) {
            Ok(0) => break End::Eof,
            Ok(n) => {
                bytes.extend_from_slice(&buf[..n]);
                continue;
            }
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break End::Failed(e),
        }
        check();
        if started.elapsed() >= wait {
            break End::Silent;
        }
    };
    let _ = stream.set_read_timeout(restore);
    Reply {
        bytes,
        end,
        waited: started.elapsed(),
    }
}

/// Sends `line` and a newline on `stream` and reads as many bytes back, within `wait`:
/// `Ok(())` when they are the echo, else what came.
#[cfg(unix)]
fn exchange(stream: &mut TcpStream, line: &[u8], wait: Duration, check: &dyn Fn()) -> Result<(), Reply> {
    let request = with_newline(line);
    if let Err(e) = stream.write_all(&request) {
        return Err(Reply {
            bytes: Vec::new(),
            end: End::Failed(e),
            waited: Duration::ZERO,
        });
    }
    let reply = read_reply(stream, request.len(), wait, check);
    if reply.bytes == request {
        Ok(())
    } else {
        Err(reply)
    }
}

/// A test's client: a connection with 5 s timeouts, named in the transcript.
struct Client {
    name: String,
    stream: TcpStream,
}

impl Client {
    /// Connects a client called `name` to `addr`; a refused connection fails the test with
    /// `extra` (the server's log).
    fn connect(t: &Transcript, addr: SocketAddr, name: &str, extra: &dyn Fn() -> String) -> Client {
        let stream = match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            Ok(stream) => stream,
            Err(e) => t.fail(
                format_args!("{name} to connect to the server at {addr}"),
                format_args!("error: {e}{}", extra()),
                "a server listens on the address it announced until it exits: a refused connection \
                 means that it has exited, or closed its listening socket",
            ),
        };
        set_stream_timeouts(&stream);
        let local = stream
            .local_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        let name = format!("{name} ({local})");
        t.step(format_args!("{name} connected to {addr}"));
        Client { name, stream }
    }

    /// The client's own endpoint, as the server's log shows it.
    fn me(&self) -> String {
        self.stream
            .local_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string())
    }

    /// Sends `bytes` (recorded in the transcript); the error if the connection is gone.
    fn send(&mut self, t: &Transcript, bytes: &[u8]) -> io::Result<()> {
        let result = self.stream.write_all(bytes);
        match &result {
            Ok(()) => t.sent(bytes, &self.name, "the server"),
            Err(e) => t.step(format_args!("{} tried to send {}: {e}", self.name, sized(bytes))),
        }
        result
    }

    /// Reads up to `len` bytes within `wait` (see [`read_reply`]), recorded in the transcript.
    fn read(&mut self, t: &Transcript, len: usize, wait: Duration, check: &dyn Fn()) -> Reply {
        let reply = read_reply(&self.stream, len, wait, check);
        t.step(format_args!("{}: {reply}", self.name));
        reply
    }

    /// Sends `line` and a newline, and reads the echo within `wait` (both recorded).
    fn echo(&mut self, t: &Transcript, line: &[u8], wait: Duration, check: &dyn Fn()) -> Result<(), Reply> {
        let request = with_newline(line);
        if let Err(e) = self.send(t, &request) {
            return Err(Reply {
                bytes: Vec::new(),
                end: End::Failed(e),
                waited: Duration::ZERO,
            });
        }
        let reply = self.read(t, request.len(), wait, check);
        if reply.bytes == request {
            Ok(())
        } else {
            Err(reply)
        }
    }

    /// Waits `wait` and expects nothing: `Err` with what came (bytes, or the end of the
    /// connection) otherwise.
    fn expect_silence(&mut self, t: &Transcript, wait: Duration) -> Result<(), Reply> {
        let reply = read_reply(&self.stream, 1, wait, &|| {});
        match reply.end {
            End::Silent if reply.bytes.is_empty() => {
                t.step(format_args!(
                    "{}: nothing arrived for {} ms",
                    self.name,
                    wait.as_millis()
                ));
                Ok(())
            }
            _ => {
                t.step(format_args!("{}: {reply}", self.name));
                Err(reply)
            }
        }
    }
}

/// Sends `line` from `client` and fails the test unless its echo comes within
/// [`REPLY_WITHIN`]; `extra` adds the server's log to the failure.
fn must_echo(
    t: &Transcript,
    client: &mut Client,
    line: &[u8],
    check: &dyn Fn(),
    extra: &dyn Fn() -> String,
    why: &str,
) {
    if let Err(reply) = client.echo(t, line, REPLY_WITHIN, check) {
        // A panic of the server thread (a todo!()) explains it best.
        check();
        t.fail(
            format_args!(
                "{} to receive the echo {}",
                client.name,
                sized(&with_newline(line))
            ),
            format_args!("{reply}{}", extra()),
            why,
        );
    }
}

/// Closes `stream` abortively: SO_LINGER 0 makes the close send a reset (RST).
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(stream);
}

// ---------------------------------------------------------------------------------------------
// Servers: the binary, and the library in a thread

/// The binary's server with `--model model --port 0` and `extra` arguments, recorded in `t`.
fn server(t: &Transcript, model: &str, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["server", "--model", model, "--port", "0"];
    args.extend_from_slice(extra);
    let server = ServerProcess::start(BIN, &args);
    t.step(format_args!(
        "started `server {}`: it listens on {}",
        args[1..].join(" "),
        server.addr()
    ));
    server
}

/// The end of what `server` printed on stderr (where a skeleton's `todo!()` panic appears), to
/// append to a failure's "Got".
fn log_tail(server: &ServerProcess) -> String {
    // Let the stderr reader catch up with a server that just died.
    std::thread::sleep(Duration::from_millis(100));
    let lines = server.stderr_lines();
    let mut text = String::new();
    if let Some(todo) = lines.iter().find(|l| l.contains("not yet implemented")) {
        text.push_str(&format!(
            "\n(the server stopped at the todo!() of a step not done yet: {})",
            todo.trim()
        ));
    }
    let start = lines.len().saturating_sub(20);
    if lines.is_empty() {
        text.push_str("\n--- the server's stderr: empty ---");
    } else {
        text.push_str(&format!(
            "\n--- the server's stderr (its last {} lines) ---\n{}",
            lines.len() - start,
            lines[start..].join("\n")
        ));
    }
    text
}

/// Whether `server` has exited (Linux: it is a zombie, or gone, in /proc; elsewhere never
/// known without waiting for it).
fn exited(server: &ServerProcess) -> bool {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_to_string(format!("/proc/{}/stat", server.id())).map_or(true, |stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = server;
        false
    }
}

/// Waits up to `timeout` for a line of `server`'s stderr containing `needle`; `None` when none
/// comes in time, or the server exits without logging it.
fn await_log(server: &ServerProcess, needle: &str, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let gone = exited(server);
        if gone {
            // Let the stderr reader catch up with the last lines.
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(line) = server.stderr_lines().into_iter().find(|l| l.contains(needle)) {
            return Some(line);
        }
        if gone || Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// "None" for a log line that did not come within `timeout`, saying whether the server exited
/// meanwhile, and the end of its stderr: for a failure's "Got".
fn no_log(server: &ServerProcess, timeout: Duration) -> String {
    format!(
        "none {}{}",
        if exited(server) {
            "(the server has exited)".to_owned()
        } else {
            format!("within {} ms", timeout.as_millis())
        },
        log_tail(server)
    )
}

/// The lines a [`memory_log`] keeps.
type LogLines = Arc<Mutex<Vec<String>>>;

/// A log that keeps every event's line, for the tests that call the library in a thread.
fn memory_log() -> (lab::Log, LogLines) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let log: lab::Log = Arc::new(move |event: &lab::Event| {
        if let Ok(mut lines) = sink.lock() {
            lines.push(event.to_string());
        }
    });
    (log, lines)
}

fn logged(lines: &LogLines) -> Vec<String> {
    lines.lock().map(|l| l.clone()).unwrap_or_default()
}

/// The log lines, to append to a failure's "Got".
fn show_log(lines: &LogLines) -> String {
    let lines = logged(lines);
    if lines.is_empty() {
        "\nthe server's log: empty".to_owned()
    } else {
        format!("\nthe server's log:\n  {}", lines.join("\n  "))
    }
}

fn config(max_clients: usize, max_connections: u64) -> lab::ServerConfig {
    lab::ServerConfig {
        max_clients,
        idle_timeout: Some(IO_TIMEOUT),
        message_timeout: None,
        max_connections: Some(max_connections),
    }
}

/// Runs `f` (a call into the code under test) on its own thread and waits at most `limit` for
/// its result: `None` when it is still running then (the thread is left behind). A panic of
/// `f` (a `todo!()`) fails the test with its message.
#[cfg(unix)]
fn call_within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => Some(value),
        Err(RecvTimeoutError::Timeout) => None,
        Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => panic!("{}", panic_message(&*panic)),
            Ok(()) => None,
        },
    }
}

/// Waits up to `limit` for a server thread to return; fails the test through `t` if it does
/// not (a panic of the thread fails it with the panic's message).
fn finish<T: Send + 'static>(
    t: &Transcript,
    thread: ServerThread<T>,
    limit: Duration,
    expected: &str,
    why: &str,
) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| thread.join_within(limit))) {
        Ok(value) => value,
        Err(panic) => {
            let message = panic_message(&*panic);
            if message.contains("did not finish within") {
                t.fail(
                    expected,
                    format_args!("still running {} ms later", limit.as_millis()),
                    why,
                )
            }
            std::panic::resume_unwind(panic)
        }
    }
}

/// What the cap counts in `model`.
fn live_word(model: &str) -> &'static str {
    if model == "fork" { "children" } else { "threads" }
}

/// What a model calls the one who serves a connection.
fn worker_of(model: &str) -> &'static str {
    match model {
        "fork" => "child process",
        "thread" => "thread",
        _ => "turn of the loop",
    }
}

// ---------------------------------------------------------------------------------------------
// Tests shared by the models

/// One client connected and answered, then idle; a second client must be answered within
/// [`PROMPT`] (fork, thread).
fn second_client_is_answered_promptly(model: &str) {
    let t = Transcript::new(THREE_WAYS);
    let server = server(&t, model, &[]);
    let log = || log_tail(&server);
    let mut first = Client::connect(&t, server.addr(), "client 1", &log);
    must_echo(
        &t,
        &mut first,
        b"first",
        &|| {},
        &log,
        "a server answers its only client",
    );
    t.step("client 1 stays connected and sends nothing more");
    let mut second = Client::connect(&t, server.addr(), "client 2", &log);
    let started = Instant::now();
    let result = second.echo(&t, b"second", Duration::from_secs(2), &|| {});
    let took = started.elapsed();
    let why = format!(
        "--model {model} serves each connection in its own {}: the accept loop hands the \
         connection over and accepts the next at once. A loop that serves the client itself, or \
         waits for its {} before accepting again, serves one client at a time",
        worker_of(model),
        if model == "fork" {
            "child (waitpid without WNOHANG)"
        } else {
            "thread (join)"
        }
    );
    if let Err(reply) = result {
        t.fail(
            "client 2's echo within 500 ms",
            format_args!("{reply}{}", log()),
            &why,
        );
    }
    t.check(
        took < PROMPT,
        "client 2's echo within 500 ms",
        format_args!("it took {} ms", took.as_millis()),
        &why,
    );
    must_echo(
        &t,
        &mut first,
        b"first again",
        &|| {},
        &log,
        "client 1 is still connected, so it is still served",
    );
}

/// With `--max-clients 2`, a third client waits in the backlog until one of the two leaves.
fn cap_holds_new_clients_in_the_backlog(model: &str) {
    let t = Transcript::new(CAP);
    let server = server(&t, model, &["--max-clients", "2"]);
    let log = || log_tail(&server);
    let mut a = Client::connect(&t, server.addr(), "client a", &log);
    must_echo(
        &t,
        &mut a,
        b"a",
        &|| {},
        &log,
        "one client, under the cap of 2: it is served",
    );
    let mut b = Client::connect(&t, server.addr(), "client b", &log);
    must_echo(
        &t,
        &mut b,
        b"b",
        &|| {},
        &log,
        "--max-clients 2 serves two clients at once: the second is at the cap, not over it. A \
         server that serves only one is off by one (it stops at max_clients - 1)",
    );
    let mut c = Client::connect(&t, server.addr(), "client c", &log);
    let _ = c.send(&t, b"c\n");
    if let Err(reply) = c.expect_silence(&t, SILENCE) {
        let why = if reply.closed() {
            "at the cap the server stops calling accept, and new connections wait in the backlog \
             until a client leaves; it must not accept and close them (refuse)"
                .to_owned()
        } else {
            format!(
                "--max-clients 2 with clients a and b connected: a third client is one over the \
                 cap and must wait in the backlog. Serving it means the cap is off by one (stop \
                 accepting when the number of live {} reaches max_clients: >=, not >) or missing",
                live_word(model)
            )
        };
        t.fail(
            "client c waits: nothing arrives for 1000 ms",
            format_args!("{reply}{}", log()),
            why,
        );
    }
    if await_log(&server, "the cap", Duration::from_secs(2)).is_none() {
        t.fail(
            "a log line \"2 clients being served, the cap: ...\" (Event::AtCapacity)",
            format_args!("none{}", log()),
            "log Event::AtCapacity once each time the cap is reached: it tells the operator why \
             clients wait",
        );
    }
    drop(a);
    t.step("client a closed its connection");
    let reply = c.read(&t, 2, REPLY_WITHIN, &|| {});
    t.check(
        reply.bytes == b"c\n",
        "client c's echo \"c\\n\" (2 bytes) once client a has left",
        format_args!("{reply}{}", log()),
        format!(
            "client a's {} has finished, so its place is free and client c, waiting in the \
             backlog, must be served: the count of live {} must go down when one finishes (join \
             the finished thread, or reap the finished child, and remove it from the list)",
            worker_of(model),
            live_word(model)
        ),
    );
    must_echo(
        &t,
        &mut b,
        b"b again",
        &|| {},
        &log,
        "client b is still connected, so it is still served",
    );
}

/// With `--max-clients 2`, clients one after the other are all served: a finished client frees
/// its place.
fn finished_clients_free_their_places(model: &str) {
    let t = Transcript::new(if model == "fork" { REAPING } else { THREADS });
    let server = server(&t, model, &["--max-clients", "2"]);
    let log = || log_tail(&server);
    for i in 1..=6 {
        let mut client = Client::connect(&t, server.addr(), &format!("client {i}"), &log);
        let why = format!(
            "clients come one after the other, each leaving before the next comes: with \
             --max-clients 2 there is always a place. A finished {} must free its place{}",
            worker_of(model),
            if model == "fork" {
                " (reap it and remove it from the list of children)"
            } else {
                " (join it and remove its handle from the list)"
            }
        );
        must_echo(
            &t,
            &mut client,
            format!("client {i}").as_bytes(),
            &|| {},
            &log,
            &why,
        );
        drop(client);
        t.step(format_args!("client {i} closed its connection"));
    }
}

/// A client that resets its connection in the middle of a line does not stop the server.
fn survives_a_client_reset(model: &str) {
    let t = Transcript::new(PROTOCOL);
    let mut server = server(&t, model, &[]);
    let mut rude = Client::connect(&t, server.addr(), "a rude client", &|| String::new());
    let me = rude.me();
    let _ = rude.send(&t, b"half a li");
    if await_log(&server, &format!("{me}: connected"), SETTLE).is_none() {
        t.fail(
            format_args!("a log line \"{me}: connected...\" (Event::Accepted)"),
            no_log(&server, SETTLE),
            "log Event::Accepted for each connection",
        );
    }
    reset(rude.stream);
    t.step("the rude client closed its connection abortively (SO_LINGER 0: a reset, RST)");
    let needle = format!("{me}: connection closed after an error");
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(status) = server.wait_exit(Duration::ZERO) {
            t.fail(
                format_args!("a log line {needle:?}, and the server serving on"),
                format_args!("the server exited ({status}){}", log_tail(&server)),
                "a connection's error (here a reset) ends that connection, not the server: serve it \
                 with serve_one, which logs how it ended, and never return its error from the accept \
                 loop (with ?)",
            );
        }
        if server.stderr_lines().iter().any(|l| l.contains(&needle)) {
            break;
        }
        if Instant::now() >= deadline {
            t.fail(
                format_args!("a log line {needle:?} (Event::Failed)"),
                no_log(&server, SETTLE),
                "serve each connection with serve_one, which logs how it ended",
            );
        }
        std::thread::sleep(POLL);
    }
    t.step(format_args!("the server logged {needle:?}"));
    let log = || log_tail(&server);
    let mut next = Client::connect(&t, server.addr(), "the next client", &log);
    must_echo(
        &t,
        &mut next,
        b"after the reset",
        &|| {},
        &log,
        "a client's reset ends its own connection only: the server goes on serving",
    );
}

/// Runs the binary's `bench --json` against a `--model model` server and checks the report.
fn bench_reports_no_errors(model: &str, connect_per_request: bool) {
    let t = Transcript::new(PROTOCOL);
    let server = server(&t, model, &[]);
    let target = server.addr().to_string();
    let mut args = vec![
        "bench",
        "--server",
        &target,
        "--clients",
        "8",
        "--requests",
        "400",
        "--size",
        "48",
        "--timeout",
        "1500",
        "--duration-limit",
        "3s",
        "--json",
    ];
    if connect_per_request {
        args.push("--connect-per-request");
    }
    t.step(format_args!("ran `{}`", args.join(" ")));
    let out = common::testing::run_within(BIN, &args, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let why = format!(
        "the benchmark's 8 clients send 400 different lines{} (each may wait 1500 ms for its reply, and \
         none starts after 3 s); the server must answer every one with its own line",
        if connect_per_request {
            ", each on a new connection"
        } else {
            ""
        }
    );
    let report: serde_json::Value = match serde_json::from_str(stdout.trim()) {
        Ok(report) => report,
        Err(e) => t.fail(
            "a JSON report on stdout",
            format_args!(
                "{} ({e}); its stderr: {}{}",
                sized(stdout.as_bytes()),
                sized(&out.stderr),
                log_tail(&server)
            ),
            &why,
        ),
    };
    t.step(format_args!("bench reported {report}"));
    let number = |key: &str| report[key].as_f64().unwrap_or(-1.0);
    let latency = |key: &str| report["latency_ms"][key].as_f64().unwrap_or(-1.0);
    t.check(
        number("completed") == 400.0 && number("errors") == 0.0,
        "400 requests completed, 0 errors",
        format_args!(
            "{} completed, {} errors ({}), {} not sent within the 3 s limit{}",
            number("completed"),
            number("errors"),
            report["error_kinds"],
            number("unsent"),
            log_tail(&server)
        ),
        &why,
    );
    t.check(
        out.status.success(),
        "bench exits 0",
        out.status,
        "bench exits 0 when every request was answered",
    );
    let rate = number("requests_per_s");
    let bytes = number("bytes_per_s");
    t.check(
        rate > 0.0 && (bytes - rate * 48.0).abs() <= rate * 48.0 * 0.01 + 1.0,
        "a positive rate, and bytes/s = requests/s × 48",
        format_args!("{rate} requests/s, {bytes} bytes/s"),
        "the benchmark's own arithmetic (given code)",
    );
    let (p50, p90, p99, max) = (latency("p50"), latency("p90"), latency("p99"), latency("max"));
    t.check(
        0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max,
        "latencies positive and ordered p50 <= p90 <= p99 <= max",
        format_args!("{p50}, {p90}, {p99}, {max}"),
        "the benchmark's own arithmetic (given code)",
    );
}

/// Runs a `--model model` server out of descriptors and back (Linux, with `prlimit(1)`): serves a
/// first client, lowers the server's soft descriptor limit (from outside) to the lowest number
/// it does not hold, so `accept` fails with `EMFILE`; a client waits meanwhile; once the limit
/// is restored, the waiting client and a new one must be served. `section` explains the step.
///
/// A blocking `accept` on Linux takes its descriptor number before it waits, so the call in
/// progress when the limit drops still succeeds: a client that connects and leaves at once
/// uses it up (iterative), and the `accept` after that fails.
#[cfg(target_os = "linux")]
fn backs_off_when_out_of_descriptors(model: &str, section: &str) {
    use common::descriptors;
    let t = Transcript::new(section);
    let mut server = server(&t, model, &[]);
    let pid = server.id();
    let baseline = descriptors::open_descriptors(pid).map_or(usize::MAX, |fds| fds.len());
    let log = || log_tail(&server);
    let mut first = Client::connect(&t, server.addr(), "client 1", &log);
    let me = first.me();
    must_echo(
        &t,
        &mut first,
        b"first",
        &|| {},
        &log,
        "a server answers its only client",
    );
    drop(first);
    t.step("client 1 closed its connection");
    if await_log(&server, &format!("{me}: closed"), SETTLE).is_none() {
        t.fail(
            format_args!("a log line \"{me}: closed after echoing 1 line\""),
            no_log(&server, SETTLE),
            "serve each connection with serve_one, which logs how it ended",
        );
    }
    // The server's copy of that connection is closed a moment later (in the fork model, by
    // the parent right after fork): until then its number is not free for the next accept.
    let _ = descriptors::await_at_most(pid, baseline, REAP_WITHIN);
    if !descriptors::prlimit_available() {
        common::testing::notice("descriptor exhaustion: skipped, prlimit(1) is not installed");
        return;
    }
    let (Ok(free), Some(original)) = (descriptors::lowest_free(pid), descriptors::soft_limit(pid)) else {
        panic!("test set-up: cannot read /proc/{pid}/fd and /proc/{pid}/limits");
    };
    descriptors::set_soft_limit(pid, u64::from(free)).unwrap_or_else(|e| panic!("test set-up: {e}"));
    let lowered = Instant::now();
    t.step(format_args!(
        "lowered the server's descriptor limit to {free} (prlimit): its next accept fails with \
         EMFILE, too many open files"
    ));
    // Connections may fail when the server has already exited: await_backoff then says so.
    drop(TcpStream::connect_timeout(&server.addr(), IO_TIMEOUT));
    let waiting = TcpStream::connect_timeout(&server.addr(), IO_TIMEOUT);
    if let Ok(mut stream) = waiting.as_ref() {
        set_stream_timeouts(stream);
        let _ = stream.write_all(b"waiting\n");
    }
    t.step(
        "a client connected and left at once; another connected (it waits in the backlog) and sent \
         \"waiting\\n\" (8 bytes)",
    );
    if let Err(e) = descriptors::await_backoff(&mut server, 2, lowered, SETTLE) {
        t.fail(
            "the server logs Event::AcceptBackoff (\"accept failed: ...; backing off 100 ms\"), sleeps \
             ACCEPT_BACKOFF and calls accept again, twice or more while the limit lasts",
            e,
            "running out of descriptors (EMFILE, ENFILE) concerns neither one client nor the \
             listening socket: the connection waits in the backlog until a descriptor is free. Log \
             it, sleep ACCEPT_BACKOFF (accepting again at once spins), and accept again; never \
             return the error",
        );
    }
    descriptors::set_soft_limit(pid, original).unwrap_or_else(|e| panic!("test set-up: {e}"));
    t.step(format_args!("restored the limit to {original}"));
    let waiting = t.ok(
        waiting,
        "the waiting client's connect",
        "connections complete in the backlog even while the server cannot accept them",
    );
    let reply = read_reply(&waiting, 8, SETTLE, &|| {});
    t.step(format_args!("the waiting client: {reply}"));
    t.check(
        reply.bytes == b"waiting\n",
        "the waiting client's echo \"waiting\\n\" (8 bytes)",
        format_args!("{reply}{}", log_tail(&server)),
        "once descriptors are free again, the connection that waited in the backlog is accepted and \
         served",
    );
    drop(waiting);
    let log = || log_tail(&server);
    let mut next = Client::connect(&t, server.addr(), "a new client", &log);
    must_echo(
        &t,
        &mut next,
        b"and the next",
        &|| {},
        &log,
        "once descriptors are free again the server serves as before",
    );
    if let Some(status) = server.wait_exit(Duration::ZERO) {
        t.fail(
            "the server still running",
            format_args!("it exited ({status}){}", log_tail(&server)),
            "a shortage of descriptors must not end the server",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Step 1: the iterative server

#[test]
fn step1_iterative_echoes_clients_one_after_another_and_logs_them() {
    let t = Transcript::new(STEP1);
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let (log, lines) = memory_log();
    t.step(format_args!(
        "called lab::serve_iterative on a listener on {addr}, with max_connections 2"
    ));
    let thread = RefCell::new(ServerThread::spawn(
        "the server thread (serve_iterative)",
        move || lab::serve_iterative(&listener, &config(8, 2), &log).map_err(|e| e.to_string()),
    ));
    let check = || thread.borrow_mut().check();
    let extra = || {
        check();
        show_log(&lines)
    };
    let mut peers = Vec::new();
    for who in ["client one", "client two"] {
        let mut client = Client::connect(&t, addr, who, &extra);
        peers.push(client.me());
        for line in [format!("{who}: hello"), format!("{who}: again")] {
            must_echo(
                &t,
                &mut client,
                line.as_bytes(),
                &check,
                &extra,
                "the iterative server accepts a connection and echoes its lines until the client \
                 closes, then accepts the next",
            );
        }
        drop(client);
        t.step(format_args!("{who} closed its connection"));
    }
    let accepted = finish(
        &t,
        thread.into_inner(),
        SETTLE,
        "serve_iterative to return Ok(2)",
        "with max_connections 2, serve_iterative returns once it has served two connections \
         (more_connections(config, accepted) says when)",
    );
    t.step(format_args!("serve_iterative returned {accepted:?}"));
    t.check(
        accepted == Ok(2),
        "Ok(2)",
        format_args!("{accepted:?}"),
        "with max_connections 2, serve_iterative returns how many connections it accepted, 2",
    );
    let log = logged(&lines);
    for peer in &peers {
        for needle in ["connected", "closed after echoing 2 lines"] {
            t.check(
                log.iter()
                    .any(|l| l.contains(peer.as_str()) && l.contains(needle)),
                format_args!("a log line with {peer} and {needle:?}"),
                format_args!("none{}", show_log(&lines)),
                "log Event::Accepted (Worker::Inline, live 1) for each connection, then serve it \
                 with serve_one, which logs how it ended",
            );
        }
    }
}

#[test]
fn step1_iterative_echoes_any_bytes_up_to_the_line_cap() {
    let t = Transcript::new(PROTOCOL);
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let (log, lines) = memory_log();
    t.step(format_args!(
        "called lab::serve_iterative on a listener on {addr}, with max_connections 3"
    ));
    let thread = RefCell::new(ServerThread::spawn(
        "the server thread (serve_iterative)",
        move || lab::serve_iterative(&listener, &config(8, 3), &log).map_err(|e| e.to_string()),
    ));
    let check = || thread.borrow_mut().check();
    let extra = || {
        check();
        show_log(&lines)
    };
    let bytes_why = "the echo is the line's bytes exactly as they came: handle_connection (the \
                     code of step 6) must keep the line a Vec<u8> and never pass it through a \
                     String (String::from_utf8_lossy replaces each byte that is not UTF-8 with \
                     U+FFFD, \"\\xef\\xbf\\xbd\", and the echo changes)";
    let mut client = Client::connect(&t, addr, "client 1", &extra);
    for (what, line) in [
        ("bytes that are not UTF-8", NON_UTF8.to_vec()),
        (
            "a line of exactly 65 536 bytes (MAX_LINE, the cap) without its newline",
            long_line(lab::MAX_LINE),
        ),
    ] {
        t.step(format_args!("client 1 sends {what}"));
        let request = with_newline(&line);
        let _ = client.send(&t, &request);
        let reply = client.read(&t, request.len(), REPLY_WITHIN, &check);
        if reply.bytes.len() == request.len() {
            t.check_bytes("the echo", &request, &reply.bytes, bytes_why);
        } else {
            t.fail(
                format_args!("the echo {}", sized(&request)),
                format_args!("{reply}{}", show_log(&lines)),
                if line.len() == lab::MAX_LINE {
                    "a line of MAX_LINE bytes is at the cap, not over it: it is echoed"
                } else {
                    bytes_why
                },
            );
        }
    }
    drop(client);
    t.step("client 1 closed its connection");
    let mut over = Client::connect(&t, addr, "client 2", &extra);
    let me = over.me();
    t.step("client 2 sends a line of 65 537 bytes (one over the cap) and its newline");
    let _ = over.send(&t, &with_newline(&long_line(lab::MAX_LINE + 1)));
    let reply = over.read(&t, 1, REPLY_WITHIN, &check);
    t.check(
        reply.closed(),
        "the server closes client 2's connection",
        format_args!("{reply}{}", show_log(&lines)),
        "a line over MAX_LINE bytes makes read_line fail with InvalidData: that connection ends (the \
         server buffers at most MAX_LINE + 1 bytes of a line)",
    );
    let needle = format!("{me}: connection closed after an error: a line longer than 65536 bytes");
    let deadline = Instant::now() + Duration::from_secs(2);
    while !logged(&lines).iter().any(|l| l.contains(&needle)) && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    t.check(
        logged(&lines).iter().any(|l| l.contains(&needle)),
        format_args!("a log line {needle:?}"),
        format_args!("none{}", show_log(&lines)),
        "serve_one logs how the connection ended",
    );
    let mut next = Client::connect(&t, addr, "client 3", &extra);
    must_echo(
        &t,
        &mut next,
        b"still serving",
        &check,
        &extra,
        "an over-long line ends that connection only; the server accepts the next",
    );
    drop(next);
    let accepted = finish(
        &t,
        thread.into_inner(),
        SETTLE,
        "serve_iterative to return Ok(3)",
        "with max_connections 3, serve_iterative returns after the third connection",
    );
    t.check(
        accepted == Ok(3),
        "Ok(3)",
        format_args!("{accepted:?}"),
        "with max_connections 3, serve_iterative returns 3, the over-long line's connection included",
    );
}

#[test]
fn step1_server_binary_iterative_echoes() {
    let t = Transcript::new(STEP1);
    let server = server(&t, "iterative", &[]);
    let log = || log_tail(&server);
    let mut client = Client::connect(&t, server.addr(), "client 1", &log);
    must_echo(
        &t,
        &mut client,
        b"hello, iterative",
        &|| {},
        &log,
        "`server --model iterative` runs serve_iterative: it echoes each line",
    );
    must_echo(
        &t,
        &mut client,
        NON_UTF8,
        &|| {},
        &log,
        "the same connection goes on: each line is echoed exactly as it came, bytes that are not \
             UTF-8 included (the line stays bytes, a Vec<u8>: from_utf8_lossy would replace them)",
    );
}

#[test]
fn step1_iterative_second_client_waits_until_the_first_leaves() {
    let t = Transcript::new(ITERATIVE);
    let server = server(&t, "iterative", &[]);
    let log = || log_tail(&server);
    let mut first = Client::connect(&t, server.addr(), "client 1", &log);
    must_echo(
        &t,
        &mut first,
        b"first",
        &|| {},
        &log,
        "a server answers its only client",
    );
    t.step("client 1 stays connected and sends nothing more");
    let mut second = Client::connect(&t, server.addr(), "client 2", &log);
    let _ = second.send(&t, b"second\n");
    if let Err(reply) = second.expect_silence(&t, SILENCE) {
        t.fail(
            "client 2 waits: nothing arrives for 1000 ms",
            format_args!("{reply}{}", log()),
            "the iterative server serves client 1 until it leaves: client 2's connection completes \
             (it waits in the backlog) and its bytes wait in the kernel, but nobody reads them yet. \
             An echo here means the server is not iterative; a closed connection, that it refused \
             the client",
        );
    }
    drop(first);
    t.step("client 1 closed its connection");
    let reply = second.read(&t, 7, SETTLE, &|| {});
    t.check(
        reply.bytes == b"second\n",
        "client 2's echo \"second\\n\" (7 bytes) now",
        format_args!("{reply}{}", log()),
        "client 1 has left, so the iterative server returns to accept and serves client 2",
    );
}

#[test]
fn step1_iterative_survives_a_client_reset() {
    survives_a_client_reset("iterative");
}

#[test]
fn step1_bench_against_the_iterative_server_reports_no_errors() {
    bench_reports_no_errors("iterative", false);
}

#[cfg(target_os = "linux")]
#[test]
fn step1_iterative_backs_off_when_out_of_descriptors_and_serves_on() {
    backs_off_when_out_of_descriptors("iterative", STEP1);
}

// ---------------------------------------------------------------------------------------------
// Step 2: a thread per connection

#[test]
fn step2_threads_serve_idle_clients_at_once_and_join_them() {
    let t = Transcript::new(THREE_WAYS);
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let (log, lines) = memory_log();
    t.step(format_args!(
        "called lab::serve_threads on a listener on {addr}, with max_clients 8 and max_connections 3"
    ));
    let thread = RefCell::new(ServerThread::spawn(
        "the server thread (serve_threads)",
        move || lab::serve_threads(&listener, &config(8, 3), &log).map_err(|e| e.to_string()),
    ));
    let check = || thread.borrow_mut().check();
    let extra = || {
        check();
        show_log(&lines)
    };
    let mut clients: Vec<Client> = (0..3)
        .map(|i| Client::connect(&t, addr, &format!("client {i}"), &extra))
        .collect();
    t.step("the clients ask in reverse order: the last one connected first");
    for (i, client) in clients.iter_mut().enumerate().rev() {
        must_echo(
            &t,
            client,
            format!("client {i}").as_bytes(),
            &check,
            &extra,
            "each connection is served by its own thread: three clients connected and idle do not \
             delay each other. An echo only for the first client to connect means the loop serves \
             connections itself, one at a time",
        );
    }
    drop(clients);
    t.step("the three clients closed their connections");
    let accepted = finish(
        &t,
        thread.into_inner(),
        SETTLE,
        "serve_threads to return Ok(3)",
        "after max_connections (3) connections serve_threads joins its threads and returns",
    );
    t.step(format_args!("serve_threads returned {accepted:?}"));
    t.check(
        accepted == Ok(3),
        "Ok(3)",
        format_args!("{accepted:?}"),
        "with max_connections 3, serve_threads returns how many connections it accepted",
    );
    let log = logged(&lines);
    t.check(
        log.iter()
            .filter(|l| l.contains("closed after echoing 1 line"))
            .count()
            == 3,
        "three \"closed after echoing 1 line\" lines, logged before serve_threads returned",
        format_args!("{}", show_log(&lines)),
        "serve_threads must wait for (join) every live thread before it returns: a thread still \
         serving when it returns logs its end later, or never (the process may exit first)",
    );
    t.check(
        log.iter().any(|l| l.contains("served by a new thread (3 live)")),
        "the third Accepted line counting 3 live threads",
        format_args!("{}", show_log(&lines)),
        "log Event::Accepted with Worker::Thread and the number of live threads, this one included",
    );
}

#[test]
fn step2_the_accept_loop_never_waits_for_a_running_thread() {
    let t = Transcript::new(THREADS);
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let (log, lines) = memory_log();
    t.step(format_args!(
        "called lab::serve_threads on a listener on {addr}, with max_clients 8 and max_connections 2"
    ));
    let thread = RefCell::new(ServerThread::spawn(
        "the server thread (serve_threads)",
        move || lab::serve_threads(&listener, &config(8, 2), &log).map_err(|e| e.to_string()),
    ));
    let check = || thread.borrow_mut().check();
    let extra = || {
        check();
        show_log(&lines)
    };
    let mut a = Client::connect(&t, addr, "client a", &extra);
    must_echo(
        &t,
        &mut a,
        b"a",
        &check,
        &extra,
        "a thread serves the first client",
    );
    t.step("client a stays connected and sends nothing more");
    let mut b = Client::connect(&t, addr, "client b", &extra);
    let b_me = b.me();
    let _ = b.send(&t, b"b\n");
    let reply = b.read(&t, 2, Duration::from_secs(2), &check);
    if reply.bytes == b"b\n" {
        drop((a, b));
        let accepted = finish(
            &t,
            thread.into_inner(),
            SETTLE,
            "serve_threads to return",
            "both clients left; after max_connections serve_threads joins its threads and returns",
        );
        t.check(
            accepted == Ok(2),
            "Ok(2)",
            format_args!("{accepted:?}"),
            "two connections",
        );
        return;
    }
    let accepted_b = logged(&lines)
        .iter()
        .any(|l| l.contains(&b_me) && l.contains("connected"));
    if accepted_b {
        t.fail(
            "client b's echo \"b\\n\" (2 bytes) within 2000 ms",
            format_args!("{reply}{}", show_log(&lines)),
            "client b was accepted, but its thread did not answer: start a thread that serves the \
             connection with serve_one",
        );
    }
    drop(a);
    t.step("client a closed its connection");
    let late = b.read(&t, 2, Duration::from_secs(2), &check);
    if late.bytes == b"b\n" {
        t.fail(
            "client b accepted and served while client a's thread is running",
            "client b was accepted (and served) only once client a had left",
            "the accept loop waited for client a's thread to end before it accepted again: it \
             joined (JoinHandle::join) a thread that was still running, which blocks until that \
             thread's client leaves. Join only the finished ones (JoinHandle::is_finished, or the \
             message the thread sends as its last act) and keep the handles of the others",
        );
    }
    t.fail(
        "client b's echo \"b\\n\" (2 bytes)",
        format_args!("{late}{}", show_log(&lines)),
        "after one connection handed to a thread, the loop must go back to accept at once",
    );
}

#[test]
fn step2_server_binary_thread_echoes() {
    let t = Transcript::new(STEP2);
    let server = server(&t, "thread", &[]);
    let log = || log_tail(&server);
    let mut client = Client::connect(&t, server.addr(), "client 1", &log);
    must_echo(
        &t,
        &mut client,
        b"hello, thread",
        &|| {},
        &log,
        "`server --model thread` runs serve_threads: it echoes each line",
    );
    must_echo(
        &t,
        &mut client,
        NON_UTF8,
        &|| {},
        &log,
        "the same connection goes on: each line is echoed exactly as it came, bytes that are not \
             UTF-8 included (the line stays bytes, a Vec<u8>: from_utf8_lossy would replace them)",
    );
}

#[test]
fn step2_thread_answers_a_second_client_while_the_first_is_idle() {
    second_client_is_answered_promptly("thread");
}

/// The number of threads of process `pid`, from /proc/PID/status; `None` once it has exited.
#[cfg(target_os = "linux")]
fn threads_of(pid: u32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(target_os = "linux")]
#[test]
fn step2_thread_count_returns_to_its_baseline_after_clients_leave() {
    let t = Transcript::new(THREADS);
    let server = server(&t, "thread", &[]);
    let log = || log_tail(&server);
    // Make sure the server is serving (not still starting) before taking the baseline.
    let mut probe = Client::connect(&t, server.addr(), "a first client", &log);
    must_echo(
        &t,
        &mut probe,
        b"probe",
        &|| {},
        &log,
        "a server answers its only client",
    );
    drop(probe);
    t.step("the first client closed its connection");
    let pid = server.id();
    let gone = |t: &Transcript| -> usize {
        t.fail(
            "the server running",
            format_args!("it has exited{}", log_tail(&server)),
            "a client's end must not end the server",
        )
    };
    let deadline = Instant::now() + SETTLE;
    let mut baseline = threads_of(pid).unwrap_or_else(|| gone(&t));
    while baseline > 1 && Instant::now() < deadline {
        std::thread::sleep(POLL);
        baseline = threads_of(pid).unwrap_or_else(|| gone(&t));
    }
    t.step(format_args!("the server has {baseline} thread(s)"));
    let mut clients: Vec<Client> = (0..4)
        .map(|i| Client::connect(&t, server.addr(), &format!("client {i}"), &log))
        .collect();
    for (i, client) in clients.iter_mut().enumerate() {
        must_echo(
            &t,
            client,
            format!("client {i}").as_bytes(),
            &|| {},
            &log,
            "each connection is served by its own thread",
        );
    }
    let busy = threads_of(pid).unwrap_or_else(|| gone(&t));
    t.step(format_args!(
        "with 4 clients connected the server has {busy} threads"
    ));
    t.check(
        busy >= baseline + 4,
        format_args!("at least {} threads: one per connection", baseline + 4),
        busy,
        "--model thread starts a thread for each connection, which lives as long as its client",
    );
    drop(clients);
    t.step("the four clients closed their connections");
    let deadline = Instant::now() + SETTLE;
    loop {
        let now = threads_of(pid).unwrap_or_else(|| gone(&t));
        if now <= baseline {
            break;
        }
        if Instant::now() >= deadline {
            t.fail(
                format_args!("{baseline} thread(s) again"),
                format_args!("{now} threads {} ms after the clients left", SETTLE.as_millis()),
                "a connection's thread must end when its client does: serve_one returns at end of \
                 stream, and the thread with it",
            );
        }
        std::thread::sleep(POLL);
    }
}

#[test]
fn step2_thread_cap_holds_new_clients_in_the_backlog() {
    cap_holds_new_clients_in_the_backlog("thread");
}

#[test]
fn step2_thread_finished_clients_free_their_places() {
    finished_clients_free_their_places("thread");
}

#[test]
fn step2_thread_survives_a_client_reset() {
    survives_a_client_reset("thread");
}

#[test]
fn step2_bench_against_the_thread_server_reports_no_errors() {
    bench_reports_no_errors("thread", false);
    bench_reports_no_errors("thread", true);
}

/// The issue's case: `ulimit -n 24` and 30 clients. Every live thread holds its client's
/// descriptor, so the thread server is the model that runs out.
#[cfg(unix)]
#[test]
fn step2_thread_backs_off_when_out_of_descriptors_and_serves_on() {
    let t = Transcript::new(STEP2);
    let mut server =
        common::descriptors::start_with_limit(24, BIN, &["server", "--model", "thread", "--port", "0"]);
    t.step(format_args!(
        "started `server --model thread --port 0` under `ulimit -n 24`: it listens on {}",
        server.addr()
    ));
    let started = Instant::now();
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..30 {
        match TcpStream::connect_timeout(&server.addr(), IO_TIMEOUT) {
            Ok(stream) => {
                set_stream_timeouts(&stream);
                held.push(stream);
            }
            Err(e) => t.fail(
                "30 connections (they wait in the backlog when the server cannot accept them)",
                format_args!("connection {} failed: {e}{}", held.len() + 1, log_tail(&server)),
                "a listening socket completes connections even while its server cannot accept them",
            ),
        }
    }
    t.step(
        "30 clients connected and stayed (about 20 descriptors are left for connections, so \
         accept fails with EMFILE, too many open files, after about 20 of them)",
    );
    if let Err(e) = common::descriptors::await_backoff(&mut server, 2, started, SETTLE) {
        t.fail(
            "the server logs Event::AcceptBackoff (\"accept failed: ...; backing off 100 ms\"), sleeps \
             ACCEPT_BACKOFF and calls accept again, twice or more while the clients stay",
            e,
            "running out of descriptors (EMFILE) is a shortage for a while, not a broken listening \
             socket: log it, sleep ACCEPT_BACKOFF (accepting again at once spins), and accept \
             again; never return the error",
        );
    }
    let first = held.remove(0);
    let mut first = Client {
        name: "the first client".to_owned(),
        stream: first,
    };
    let log = || log_tail(&server);
    must_echo(
        &t,
        &mut first,
        b"still served",
        &|| {},
        &log,
        "the first client was accepted before the shortage: its thread serves it on",
    );
    drop((first, held));
    t.step("all 30 clients closed their connections");
    let mut next = Client::connect(&t, server.addr(), "a new client", &log);
    must_echo(
        &t,
        &mut next,
        b"after the shortage",
        &|| {},
        &log,
        "once descriptors are free again the server serves as before",
    );
    if let Some(status) = server.wait_exit(Duration::ZERO) {
        t.fail(
            "the server still running",
            format_args!("it exited ({status}){}", log_tail(&server)),
            "a shortage of descriptors must not end the server",
        );
    }
}

#[test]
fn step2_a_thread_that_cannot_start_costs_only_its_connection() {
    let t = Transcript::new(STEP2);
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let (log, lines) = memory_log();
    let refused = Arc::new(AtomicBool::new(false));
    t.step(format_args!(
        "called lab::serve_threads_with on a listener on {addr}, max_connections 2, with a spawn \
         function whose first call fails with EAGAIN (as pthread_create does when no thread can \
         start)"
    ));
    let thread = RefCell::new(ServerThread::spawn(
        "the server thread (serve_threads_with)",
        move || {
            let spawn = move |name: String, work: lab::Work| {
                if refused.swap(true, Ordering::SeqCst) {
                    lab::spawn_thread(name, work)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "Resource temporarily unavailable (the test's spawn function fails like \
                     pthread_create with EAGAIN)",
                    ))
                }
            };
            lab::serve_threads_with(&listener, &config(8, 2), &log, spawn).map_err(|e| e.to_string())
        },
    ));
    let check = || thread.borrow_mut().check();
    let extra = || {
        check();
        show_log(&lines)
    };
    let mut doomed = Client::connect(&t, addr, "client 1", &extra);
    let me = doomed.me();
    let _ = doomed.send(&t, b"doomed\n");
    let end = doomed.read(&t, 1, REPLY_WITHIN, &check);
    t.check(
        end.closed(),
        "client 1's connection closed (end of stream or a reset)",
        format_args!("{end}{}", show_log(&lines)),
        "no thread serves this connection: dropping the Work that owns the stream closes it",
    );
    let next = TcpStream::connect_timeout(&addr, IO_TIMEOUT);
    let next = match next {
        Ok(stream) => stream,
        Err(e) => {
            check();
            t.fail(
                "client 2 to connect",
                format_args!("error: {e}{}", show_log(&lines)),
                "the connection refused means serve_threads_with has returned (and the listener is \
                 closed): a thread that cannot start costs its connection, not the server. Log \
                 Event::Dropped and accept the next; never return the spawn error (with ?)",
            );
        }
    };
    set_stream_timeouts(&next);
    let mut next = Client {
        name: format!(
            "client 2 ({})",
            next.local_addr()
                .map_or_else(|_| "?".to_owned(), |a| a.to_string())
        ),
        stream: next,
    };
    t.step(format_args!("{} connected", next.name));
    must_echo(
        &t,
        &mut next,
        b"served",
        &check,
        &extra,
        "a thread that cannot start costs its connection, not the server: the next client is \
         served as usual",
    );
    drop(next);
    let accepted = finish(
        &t,
        thread.into_inner(),
        SETTLE,
        "serve_threads_with to return Ok(2)",
        "with max_connections 2, serve_threads_with returns after the second connection",
    );
    t.check(
        accepted == Ok(2),
        "Ok(2)",
        format_args!("{accepted:?}"),
        "the dropped connection was accepted too, so it counts: max_connections 2 is reached",
    );
    t.check(
        logged(&lines)
            .iter()
            .any(|l| l.contains(&me) && l.contains("dropped") && l.contains("EAGAIN")),
        format_args!("a log line with {me}, \"dropped\" and the spawn error"),
        format_args!("none{}", show_log(&lines)),
        "log Event::Dropped with the client and the spawn error when a thread cannot start",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 6: a deadline for each line

/// The idle timeout of the step 6 tests: each single read or write may wait this long.
const IDLE_6: Duration = Duration::from_millis(1000);
/// The message timeout of the step 6 tests: each whole line and its echo may take this long.
const MESSAGE_6: Duration = Duration::from_millis(600);
/// How long after the message timeout the server may take to close (a busy machine).
const CUT_SLACK: Duration = Duration::from_millis(1400);
/// How much earlier than the message timeout a cut may be seen (timers and clocks differ).
const EARLY: Duration = Duration::from_millis(150);

/// A configuration for one connection with the step 6 timeouts.
fn slow_config() -> lab::ServerConfig {
    lab::ServerConfig {
        max_clients: 1,
        idle_timeout: Some(IDLE_6),
        message_timeout: Some(MESSAGE_6),
        max_connections: Some(1),
    }
}

/// The binary's server in `model` with the step 6 timeouts and `extra` arguments.
fn slow_server(t: &Transcript, model: &str, extra: &[&str]) -> ServerProcess {
    let (idle, message) = (IDLE_6.as_millis().to_string(), MESSAGE_6.as_millis().to_string());
    let mut args = vec![
        "--idle-timeout",
        idle.as_str(),
        "--message-timeout",
        message.as_str(),
    ];
    args.extend_from_slice(extra);
    server(t, model, &args)
}

/// A thread that accepts one connection on `listener` and serves it with `lab::serve_one`
/// (the step 6 timeouts, the log in memory); its result is what `serve_one` returned.
fn serve_one_thread(t: &Transcript, listener: TcpListener) -> (ServerThread<Result<bool, String>>, LogLines) {
    let (log, lines) = memory_log();
    t.step(format_args!(
        "called lab::serve_one on the next connection to {}, with idle_timeout {} ms and \
         message_timeout {} ms",
        addr_of(&listener),
        IDLE_6.as_millis(),
        MESSAGE_6.as_millis()
    ));
    let thread = ServerThread::spawn("the server thread (serve_one)", move || {
        let (stream, peer) = listener.accept().map_err(|e| format!("accept failed: {e}"))?;
        Ok(lab::serve_one(stream, peer, &slow_config(), &log))
    });
    (thread, lines)
}

/// The log line of a message timeout for client `me`.
fn message_timeout_line(me: &str) -> String {
    format!(
        "{me}: a message took longer than the message timeout ({} ms)",
        MESSAGE_6.as_millis()
    )
}

/// Sends `a`, then one more `a` every 100 ms, never a newline, until the peer closes the
/// connection or `limit` passes. The pacing is a 100 ms read timeout, which also notices the
/// close (end of stream, a reset, or a failed write). Returns when the close was seen (`None`:
/// never) and how many bytes were sent.
fn trickle(stream: &mut TcpStream, limit: Duration) -> (Option<Duration>, usize) {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let mut sent = 0;
    let mut buf = [0u8; 64];
    while started.elapsed() < limit {
        if stream.write_all(b"a").is_err() {
            return (Some(started.elapsed()), sent);
        }
        sent += 1;
        match stream.read(&mut buf) {
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            // End of stream, a reset, or (unexpectedly) bytes: the server is done with the line.
            _ => return (Some(started.elapsed()), sent),
        }
    }
    (None, sent)
}

/// Judges how the server ended a line that stopped arriving (or trickled) `held` after the
/// line's clock started: it must close at the message timeout and log it as one.
fn judge_cut(t: &Transcript, me: &str, held: Duration, log: &[String], extra: &str) {
    let needle = message_timeout_line(me);
    let expected = format!(
        "the connection closed about {} ms into the line, logged as {needle:?}",
        MESSAGE_6.as_millis()
    );
    let got = format!(
        "closed after {} ms; the log: {}{extra}",
        held.as_millis(),
        if log.is_empty() {
            "empty".to_owned()
        } else {
            log.join(" | ")
        }
    );
    if log.iter().any(|l| l.contains(&needle)) {
        t.check(
            held + EARLY >= MESSAGE_6,
            &expected,
            &got,
            "the line was cut off before its message timeout had passed",
        );
        return;
    }
    let idle = log
        .iter()
        .any(|l| l.contains(&format!("{me}: silent for longer than the idle timeout")));
    if idle && held + EARLY < IDLE_6 {
        t.fail(
            &expected,
            &got,
            "the deadline ended the read (the time left was shorter than the idle timeout), but \
             its timeout error was passed on as it came (WouldBlock or TimedOut), which serve_one \
             reports as an idle timeout: when a call whose timeout the deadline set times out, \
             return message_timed_out(limit) instead, so the log says why",
        );
    }
    if idle {
        t.fail(
            &expected,
            &got,
            "the line was cut off only by the idle timeout: nothing bounds the whole line. Take a \
             deadline when the server starts waiting for the line, and bound every read and write \
             by the time left",
        );
    }
    t.fail(
        &expected,
        &got,
        "handle_connection must fail with message_timed_out(limit) once the line's deadline has \
         passed; serve_one logs it",
    );
}

/// What the server kept a slow client for, in the suite's words.
fn kept_too_long(what: &str, held: Duration) -> String {
    format!(
        "the server kept a {what} for {} ms although the message timeout was {} ms: the idle timeout \
         ({} ms) bounds one read or write, not a whole line, and a deadline taken again for every \
         read is no better. Take one deadline per line, when the server starts waiting for it \
         (before read_line), and bound every read and write by the time left",
        held.as_millis(),
        MESSAGE_6.as_millis(),
        IDLE_6.as_millis()
    )
}

#[test]
fn step6_a_trickled_line_is_cut_off_by_the_message_timeout() {
    let t = Transcript::new(SLOW);
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let (thread, lines) = serve_one_thread(&t, listener);
    let thread = RefCell::new(thread);
    let check = || thread.borrow_mut().check();
    let mut client = Client::connect(&t, addr, "a trickling client", &|| String::new());
    let me = client.me();
    let limit = MESSAGE_6 + CUT_SLACK;
    let (closed, sent) = trickle(&mut client.stream, limit);
    check();
    t.step(format_args!(
        "the client sent \"a\", then one more \"a\" every 100 ms, never a newline ({sent} bytes sent)"
    ));
    let Some(closed) = closed else {
        t.fail(
            format_args!(
                "the connection closed about {} ms after it started",
                MESSAGE_6.as_millis()
            ),
            format_args!("still open after {} ms{}", limit.as_millis(), show_log(&lines)),
            kept_too_long("trickling client", limit),
        );
    };
    t.step(format_args!(
        "the connection closed after {} ms",
        closed.as_millis()
    ));
    let result = finish(
        &t,
        thread.into_inner(),
        IO_TIMEOUT,
        "serve_one to return once the connection is closed",
        "handle_connection returns when it closes the connection",
    );
    judge_cut(&t, &me, closed, &logged(&lines), "");
    t.check(
        result == Ok(false),
        "serve_one returns false",
        format_args!("{result:?}"),
        "the connection ended with an error (the message timeout), so serve_one returns false",
    );
}

#[test]
fn step6_a_stalled_line_is_cut_off_as_a_message_timeout() {
    let t = Transcript::new(SLOW);
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let (thread, lines) = serve_one_thread(&t, listener);
    let thread = RefCell::new(thread);
    let check = || thread.borrow_mut().check();
    let mut client = Client::connect(&t, addr, "a stalling client", &|| String::new());
    let me = client.me();
    let started = Instant::now();
    let _ = client.send(&t, b"half a line");
    t.step("the client sends nothing more");
    let end = client.read(&t, 1, MESSAGE_6 + CUT_SLACK, &check);
    let held = started.elapsed();
    if !end.closed() {
        t.fail(
            format_args!(
                "the connection closed about {} ms after it started",
                MESSAGE_6.as_millis()
            ),
            format_args!("{end}{}", show_log(&lines)),
            kept_too_long("stalled line", held),
        );
    }
    let result = finish(
        &t,
        thread.into_inner(),
        IO_TIMEOUT,
        "serve_one to return once the connection is closed",
        "handle_connection returns when it closes the connection",
    );
    judge_cut(&t, &me, held, &logged(&lines), "");
    t.check(
        result == Ok(false),
        "serve_one returns false",
        format_args!("{result:?}"),
        "the connection ended with an error (the message timeout), so serve_one returns false",
    );
}

#[cfg(unix)]
#[test]
fn step6_each_line_gets_its_own_deadline_even_when_signals_interrupt_it() {
    let t = Transcript::new(SLOW);
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let (log, lines) = memory_log();
    t.step(format_args!(
        "called lab::serve_one on the next connection to {addr}, with idle_timeout {} ms and \
         message_timeout {} ms, and SIGUSR1 sent to its thread every 20 ms: its blocked reads and \
         writes fail with Interrupted",
        IDLE_6.as_millis(),
        MESSAGE_6.as_millis()
    ));
    let thread = RefCell::new(ServerThread::spawn(
        "the server thread (serve_one, interrupted)",
        move || {
            let (stream, peer) = listener.accept().map_err(|e| format!("accept failed: {e}"))?;
            Ok::<_, String>(with_interrupts(|| {
                lab::serve_one(stream, peer, &slow_config(), &log)
            }))
        },
    ));
    let check = || thread.borrow_mut().check();
    let mut client = Client::connect(&t, addr, "the client", &|| String::new());
    let me = client.me();
    let connected = Instant::now();
    // Why a line that should have been echoed was not.
    let cut_short = |t: &Transcript, reply: &Reply, line_started: Instant, first: bool| -> ! {
        let line_ms = line_started.elapsed().as_millis();
        let log = logged(&lines);
        let timed_out = log.iter().any(|l| l.contains(&message_timeout_line(&me)));
        let why = if timed_out && !first && connected.elapsed() + EARLY >= MESSAGE_6 {
            format!(
                "the connection was cut off as a message timeout {} ms after it started, while the \
                 line had taken {line_ms} ms: the deadline must start again for each line, when \
                 the server starts waiting for it (before each read_line), not once per connection",
                connected.elapsed().as_millis()
            )
        } else if timed_out {
            format!(
                "the line was cut off as a message timeout after at most {line_ms} ms, while signals \
                 were interrupting the server: a read or write interrupted by a signal fails with \
                 Interrupted, which is no timeout. Pass it on as it is (read_line and write_all \
                 retry it), and turn only WouldBlock or TimedOut into message_timed_out"
            )
        } else {
            "the line arrived well within the message timeout, and signals that interrupt a read \
             or a write (Interrupted) are retried: it must be echoed"
                .to_owned()
        };
        t.fail(
            "the echo of the line",
            format_args!("{reply}{}", show_log(&lines)),
            why,
        );
    };
    let mut line_started = connected;
    let _ = client.send(&t, b"one ");
    std::thread::sleep(Duration::from_millis(300));
    t.step("waited 300 ms (half the message timeout)");
    let _ = client.send(&t, b"line\n");
    let reply = client.read(&t, 9, REPLY_WITHIN, &check);
    if reply.bytes != b"one line\n" {
        cut_short(&t, &reply, line_started, true);
    }
    for i in 0..4 {
        line_started = Instant::now();
        std::thread::sleep(Duration::from_millis(200));
        t.step("waited 200 ms");
        let line = format!("line {i}");
        if let Err(reply) = client.echo(&t, line.as_bytes(), REPLY_WITHIN, &check) {
            cut_short(&t, &reply, line_started, false);
        }
    }
    t.step(format_args!(
        "the connection has lasted {} ms, longer than the message timeout, each line far less",
        connected.elapsed().as_millis()
    ));
    let stalled = Instant::now();
    let _ = client.send(&t, b"stalled");
    t.step("the client sends nothing more");
    let end = client.read(&t, 1, MESSAGE_6 + CUT_SLACK, &check);
    let held = stalled.elapsed();
    if !end.closed() {
        t.fail(
            format_args!(
                "the connection closed about {} ms into the stalled line",
                MESSAGE_6.as_millis()
            ),
            format_args!("{end}{}", show_log(&lines)),
            kept_too_long("stalled line", held),
        );
    }
    let (result, signals) = finish(
        &t,
        thread.into_inner(),
        IO_TIMEOUT,
        "serve_one to return once the connection is closed",
        "handle_connection returns when it closes the connection",
    )
    .unwrap_or_else(|e| panic!("test set-up: {e}"));
    t.step(format_args!("{signals} signals were sent to the server thread"));
    judge_cut(&t, &me, held, &logged(&lines), "");
    t.check(
        !result,
        "serve_one returns false",
        result,
        "the connection ended with an error (the message timeout), so serve_one returns false",
    );
    t.check(
        signals >= 10,
        "at least 10 signals",
        signals,
        "test set-up: the server thread was not interrupted",
    );
}

#[test]
fn step6_a_client_that_drains_its_echo_slowly_is_cut_off_by_the_message_timeout() {
    // Lines of 60 000 bytes, sent without pause by a writer thread, and their echoes read 8 KiB
    // per 100 ms: once the socket buffers are full, each echo takes the server over 700 ms to
    // write, although each write makes some progress well within the idle timeout.
    const LINE: usize = 60_000;
    const PIECE: usize = 8 * 1024;
    let t = Transcript::new(SLOW);
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let (thread, lines) = serve_one_thread(&t, listener);
    let thread = RefCell::new(thread);
    let check = || thread.borrow_mut().check();
    let client = Client::connect(&t, addr, "a slowly draining client", &|| String::new());
    let me = client.me();
    let mut client = client.stream;
    let mut writer_end = client.try_clone().expect("clone the client's socket");
    let writer = std::thread::spawn(move || {
        let mut line = vec![b'd'; LINE];
        line.push(b'\n');
        let mut written = 0usize;
        // Ends when the connection fails: closed by the server, or shut down by the test.
        while writer_end.write_all(&line).is_ok() {
            written += line.len();
        }
        written
    });
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let started = Instant::now();
    let limit = Duration::from_millis(3000);
    let mut buf = vec![0u8; PIECE];
    let mut drained = 0usize;
    let mut closed = None;
    while started.elapsed() < limit && logged(&lines).is_empty() {
        let turn = Instant::now();
        match client.read(&mut buf) {
            Ok(0) => {
                closed = Some(started.elapsed());
                break;
            }
            Ok(n) => drained += n,
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                closed = Some(started.elapsed());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100).saturating_sub(turn.elapsed()));
    }
    let held = started.elapsed();
    // Stop the writer (a blocked write fails at once) before judging.
    let _ = client.shutdown(std::net::Shutdown::Both);
    let written = writer.join().unwrap_or(0);
    check();
    t.step(format_args!(
        "the client sent {LINE}-byte lines without pause ({written} bytes written) and read the \
         echoes {PIECE} bytes per 100 ms ({drained} bytes read in {} ms)",
        held.as_millis()
    ));
    if logged(&lines).is_empty() && closed.is_none() {
        t.fail(
            format_args!(
                "the connection cut off once one line and its echo had taken {} ms",
                MESSAGE_6.as_millis()
            ),
            format_args!("still served after {} ms", limit.as_millis()),
            format!(
                "{}. A client too slow to read holds a place as well as one too slow to send: the \
                 line's deadline must bound the writes of the echo too",
                kept_too_long("slowly draining client", held)
            ),
        );
    }
    let result = finish(
        &t,
        thread.into_inner(),
        IO_TIMEOUT,
        "serve_one to return once the connection is closed",
        "handle_connection returns when it closes the connection",
    );
    let log = logged(&lines);
    let needle = message_timeout_line(&me);
    t.check(
        result == Ok(false) && log.iter().any(|l| l.contains(&needle)),
        format_args!("serve_one returns false and logs {needle:?}"),
        format_args!("serve_one returned {result:?}{}", show_log(&lines)),
        "the line's deadline bounds the writes of its echo too, so a slow reader is cut off at the \
         message timeout, with message_timed_out. A write bounded by the idle timeout only ends the \
         connection if the client stops reading altogether",
    );
}

/// A `model` server (with `extra` arguments) serving a client that trickles a line: a second
/// client must be served once the trickler's line has run out of time.
fn next_client_is_served_while_one_trickles(model: &str, extra: &[&str]) {
    let t = Transcript::new(SLOW);
    let server = slow_server(&t, model, extra);
    let log = || log_tail(&server);
    let trickler = Client::connect(&t, server.addr(), "a trickling client", &log);
    let me = trickler.me();
    if await_log(&server, &format!("{me}: connected"), SETTLE).is_none() {
        t.fail(
            format_args!("a log line \"{me}: connected...\""),
            format_args!("none{}", log()),
            "the server accepts the first client and logs it",
        );
    }
    let mut stream = trickler.stream;
    let trickling = ServerThread::spawn("the trickling client", move || {
        trickle(&mut stream, Duration::from_secs(3))
    });
    t.step("the trickling client sends \"a\" every 100 ms, never a newline");
    let started = Instant::now();
    let mut next = Client::connect(&t, server.addr(), "a second client", &log);
    t.step("(it waits in the backlog: the one place is the trickler's)");
    let wait = MESSAGE_6 + CUT_SLACK + Duration::from_millis(1000);
    let result = next.echo(&t, b"my turn", wait, &|| {});
    if let Err(reply) = result {
        t.fail(
            "the echo \"my turn\\n\" once the trickler's line has run out of time",
            format_args!("{reply}{}", log()),
            kept_too_long("trickling client", started.elapsed()),
        );
    }
    let (closed, _) = trickling.join_within(Duration::from_secs(5));
    let needle = message_timeout_line(&me);
    let cut = await_log(&server, &needle, Duration::from_secs(1)).is_some();
    t.check(
        cut,
        format_args!("the trickler's end logged as {needle:?}"),
        format_args!("no such line{}", log()),
        "a line cut off by its deadline ends with message_timed_out, which Event::Failed logs as a \
         message timeout, not as an idle timeout",
    );
    t.check(
        closed.is_some(),
        "the trickler's connection closed",
        format_args!("it stayed open for 3000 ms{}", log()),
        if model == "fork" {
            "the child cut the trickler's line off (it logged the message timeout), yet the \
             connection stays open: the parent still holds its copy of the connected socket, and \
             a socket is closed only with its last descriptor. The parent must drop the stream \
             right after fork"
        } else {
            "the server cut the trickler's line off (it logged the message timeout): dropping the \
             stream closes the connection"
        },
    );
}

#[test]
fn step6_iterative_serves_the_next_client_while_one_trickles() {
    next_client_is_served_while_one_trickles("iterative", &[]);
}

#[test]
fn step6_thread_a_trickling_client_frees_its_place_at_the_message_timeout() {
    next_client_is_served_while_one_trickles("thread", &["--max-clients", "1"]);
}

#[cfg(unix)]
#[test]
fn step6_fork_a_trickling_client_frees_its_place_at_the_message_timeout() {
    next_client_is_served_while_one_trickles("fork", &["--max-clients", "1"]);
}

// ---------------------------------------------------------------------------------------------
// Steps 3 to 5 (Unix): children, reaping, fork, signals

#[cfg(unix)]
mod unix {
    use super::*;
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};

    fn pid_of(child: &Child) -> Pid {
        Pid::from_raw(i32::try_from(child.id()).expect("a pid fits i32"))
    }

    fn spawn(program: &str, args: &[&str]) -> Child {
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("test set-up: cannot start {program}: {e}"))
    }

    /// A child process the test started (`sleep 30`, `sh -c "exit N"`), killed and reaped on
    /// drop if the code under test has not reaped it.
    struct Kid(Child);

    impl Kid {
        fn sleeper() -> Kid {
            Kid(spawn("sleep", &["30"]))
        }

        fn exiting(code: u8) -> Kid {
            Kid(spawn("sh", &["-c", &format!("exit {code}")]))
        }

        /// A child that takes its time to stop: on SIGTERM it finishes its work first and
        /// exits with status `code` some 300 ms later. Returns once its trap is set.
        fn slow_to_stop(code: u8) -> Kid {
            let script =
                format!("trap 'sleep 0.3; exit {code}' TERM; echo ready; while :; do sleep 0.05; done");
            let mut child = Command::new("sh")
                .args(["-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("test set-up: cannot start sh: {e}"));
            let mut ready = String::new();
            if let Some(out) = child.stdout.take() {
                let _ = BufReader::new(out).read_line(&mut ready);
            }
            assert_eq!(ready.trim(), "ready", "test set-up: the slow child did not start");
            Kid(child)
        }

        fn pid(&self) -> Pid {
            pid_of(&self.0)
        }

        fn id(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for Kid {
        fn drop(&mut self) {
            // Only while it is still unreaped: a reaped pid could already belong to another process.
            if process_state(self.0.id()).is_some_and(|s| s != 'Z') {
                let _ = self.0.kill();
            }
            if process_state(self.0.id()).is_some() {
                let _ = self.0.wait();
            }
        }
    }

    /// The state letter of process `pid` (`R`, `S`, `Z` for a zombie...), or `None` when there is
    /// no such process. Linux reads /proc; elsewhere `kill(pid, 0)` tells only "exists".
    fn process_state(pid: u32) -> Option<char> {
        #[cfg(target_os = "linux")]
        {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            stat.rsplit_once(')')?.1.trim_start().chars().next()
        }
        #[cfg(not(target_os = "linux"))]
        {
            kill(Pid::from_raw(pid as i32), None).ok().map(|()| '?')
        }
    }

    /// Waits until the server `pid` is asleep in a system call, twice 20 ms apart: back in its
    /// accept loop's wait for a connection after the log line the test has just read. A test
    /// that signals the server, or lets a child exit, while the server is still on its way back
    /// from the fork would give a loop that blocks in accept the chance to notice on the way.
    fn await_server_waiting(pid: u32) {
        #[cfg(target_os = "linux")]
        {
            let deadline = Instant::now() + SETTLE;
            let mut asleep = 0;
            while asleep < 2 {
                assert!(
                    Instant::now() < deadline,
                    "test set-up: server {pid} never went back to waiting for a connection"
                );
                std::thread::sleep(Duration::from_millis(20));
                asleep = if process_state(pid) == Some('S') {
                    asleep + 1
                } else {
                    0
                };
            }
        }
        #[cfg(not(target_os = "linux"))]
        std::thread::sleep(Duration::from_millis(200));
    }

    /// Waits until process `pid` has exited and is a zombie (not yet reaped).
    fn await_zombie(pid: u32) {
        #[cfg(target_os = "linux")]
        {
            let deadline = Instant::now() + SETTLE;
            while process_state(pid) != Some('Z') {
                assert!(
                    Instant::now() < deadline,
                    "test set-up: process {pid} did not exit"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        #[cfg(not(target_os = "linux"))]
        std::thread::sleep(Duration::from_millis(500));
    }

    /// Waits up to `limit` until process `pid` has left the process table; its state if not.
    fn await_gone(pid: u32, limit: Duration) -> Option<char> {
        let deadline = Instant::now() + limit;
        loop {
            let state = process_state(pid)?;
            if Instant::now() >= deadline {
                return Some(state);
            }
            std::thread::sleep(POLL);
        }
    }

    /// What `state` means, for failure messages.
    fn described(pid: impl fmt::Display, state: Option<char>) -> String {
        match state {
            None => format!("process {pid} is gone (reaped)"),
            Some('Z') => format!("process {pid} is a zombie (state Z: exited, never reaped)"),
            Some(s) => format!("process {pid} is still running (state {s})"),
        }
    }

    /// Runs [`lab::reap_children`] on `children` (within [`AT_ONCE`]); its result, as text,
    /// and the list it left, or `None` if it did not return.
    fn reap(children: Vec<Pid>, log: lab::Log) -> Option<(Result<usize, String>, Vec<Pid>)> {
        call_within(AT_ONCE, move || {
            let mut children = children;
            let reaped = lab::reap_children(&mut children, &log).map_err(|e| e.to_string());
            (reaped, children)
        })
    }

    /// Fails `t` for a `reap_children` that did not return.
    fn reap_hung(t: &Transcript) -> ! {
        t.fail(
            "reap_children to return at once",
            format_args!("still running after {} ms", AT_ONCE.as_millis()),
            "reap_children must never wait for a child that is still running: \
             waitpid(pid, Some(WaitPidFlag::WNOHANG)) returns StillAlive at once, where waitpid \
             without WNOHANG blocks until the child exits",
        )
    }

    // -----------------------------------------------------------------------------------------
    // Step 3: reaping

    #[test]
    fn step3_reaps_a_finished_child_and_keeps_a_running_one() {
        let t = Transcript::new(REAPING);
        let finished = Kid::exiting(3);
        let running = Kid::sleeper();
        let (done_pid, running_pid) = (finished.pid(), running.pid());
        await_zombie(finished.id());
        t.step(format_args!(
            "started child {done_pid} (`sh -c \"exit 3\"`, now exited: a zombie) and child \
             {running_pid} (`sleep 30`)"
        ));
        let (log, lines) = memory_log();
        t.step(format_args!(
            "called reap_children with [{done_pid}, {running_pid}]"
        ));
        let Some((reaped, children)) = reap(vec![done_pid, running_pid], log) else {
            reap_hung(&t)
        };
        t.step(format_args!("it returned {reaped:?}, leaving {children:?}"));
        #[cfg(target_os = "linux")]
        t.check(
            process_state(finished.id()).is_none(),
            format_args!("child {done_pid} reaped: gone from the process table"),
            described(done_pid, process_state(finished.id())),
            "a child that has exited stays a zombie until its parent collects its exit status with \
             waitpid",
        );
        t.check(
            reaped == Ok(1),
            "Ok(1)",
            format_args!("{reaped:?}"),
            "reap_children returns how many children it reaped",
        );
        t.check(
            children == vec![running_pid],
            format_args!("[{running_pid}]"),
            format_args!("{children:?}"),
            "the reaped child leaves `children`; the one still running stays",
        );
        let expected = format!("child {done_pid} reaped: exit status 3");
        t.check(
            logged(&lines).iter().any(|l| l.contains(&expected)),
            format_args!("a log line {expected:?}"),
            format_args!("none{}", show_log(&lines)),
            "log Event::Reaped with the child's pid and how it ended (describe(&status))",
        );
    }

    #[test]
    fn step3_a_child_killed_by_a_signal_is_reaped_too() {
        let t = Transcript::new(REAPING);
        let mut victim = Kid::sleeper();
        let pid = victim.pid();
        victim.0.kill().expect("kill the sleep");
        await_zombie(victim.id());
        t.step(format_args!(
            "started child {pid} (`sleep 30`) and killed it with SIGKILL: a zombie"
        ));
        let (log, lines) = memory_log();
        t.step(format_args!("called reap_children with [{pid}]"));
        let Some((reaped, children)) = reap(vec![pid], log) else {
            reap_hung(&t)
        };
        t.step(format_args!("it returned {reaped:?}, leaving {children:?}"));
        let why = "a child killed by a signal has ended too: waitpid returns WaitStatus::Signaled \
                   for it (and has collected its status). Handle Signaled as well as Exited";
        t.check(reaped == Ok(1), "Ok(1)", format_args!("{reaped:?}"), why);
        t.check(children.is_empty(), "[]", format_args!("{children:?}"), why);
        let expected = format!("child {pid} reaped: killed by SIGKILL");
        t.check(
            logged(&lines).iter().any(|l| l.contains(&expected)),
            format_args!("a log line {expected:?}"),
            format_args!("none{}", show_log(&lines)),
            why,
        );
    }

    #[test]
    fn step3_running_children_are_left_alone_and_strangers_forgotten() {
        let t = Transcript::new(REAPING);
        let a = Kid::sleeper();
        let b = Kid::sleeper();
        let (pa, pb) = (a.pid(), b.pid());
        // Process 1 is never our child: waitpid fails with ECHILD.
        let stranger = Pid::from_raw(1);
        t.step(format_args!(
            "started children {pa} and {pb} (`sleep 30`, running); process 1 is not the test's child"
        ));
        let (log, lines) = memory_log();
        t.step(format_args!("called reap_children with [{pa}, 1, {pb}]"));
        let Some((reaped, children)) = reap(vec![pa, stranger, pb], log) else {
            reap_hung(&t)
        };
        t.step(format_args!("it returned {reaped:?}, leaving {children:?}"));
        t.check(
            reaped == Ok(0),
            "Ok(0)",
            format_args!("{reaped:?}"),
            "two children still running and a pid that is not our child (waitpid fails with \
             ECHILD): nothing is reaped, and ECHILD is no error",
        );
        let mut left = children.clone();
        left.sort();
        let mut expected = vec![pa, pb];
        expected.sort();
        t.check(
            left == expected,
            format_args!("{expected:?} (in any order)"),
            format_args!("{children:?}"),
            "the running children stay in `children`; a pid that is not our child (ECHILD) is \
             removed",
        );
        t.check(
            logged(&lines).is_empty(),
            "no log line",
            format_args!("{}", show_log(&lines)),
            "nothing was reaped, so nothing is logged",
        );
    }

    #[test]
    fn step3_reaps_every_finished_child_in_one_call() {
        let t = Transcript::new(STEP3);
        // Finished, finished, running, finished, finished: two adjacent, and two at the end.
        let kids = [
            Kid::exiting(10),
            Kid::exiting(11),
            Kid::sleeper(),
            Kid::exiting(13),
            Kid::exiting(14),
        ];
        let pids: Vec<Pid> = kids.iter().map(Kid::pid).collect();
        let finished: Vec<usize> = vec![0, 1, 3, 4];
        for &i in &finished {
            await_zombie(kids[i].id());
        }
        t.step(format_args!(
            "started 5 children: {} exited (zombies, exit statuses 10, 11, 13, 14) and {} \
             (`sleep 30`) running",
            finished
                .iter()
                .map(|&i| pids[i].to_string())
                .collect::<Vec<_>>()
                .join(", "),
            pids[2]
        ));
        let (log, lines) = memory_log();
        t.step(format_args!("called reap_children with {pids:?}"));
        let Some((reaped, children)) = reap(pids.clone(), log) else {
            reap_hung(&t)
        };
        t.step(format_args!("it returned {reaped:?}, leaving {children:?}"));
        let zombies: Vec<Pid> = finished
            .iter()
            .filter(|&&i| process_state(kids[i].id()) == Some('Z'))
            .map(|&i| pids[i])
            .collect();
        if !zombies.is_empty() {
            let why = if reaped == Ok(1) {
                "reap_children returned after the first finished child: the others stay zombies \
                 until the next call, and a server busy with clients piles them up. Go through the \
                 whole list, reaping every child that has ended"
                    .to_owned()
            } else {
                "reap_children skips a child after each one it removes: after remove(i) (or \
                 swap_remove(i)) another child is at index i, and advancing i as well jumps over it, \
                 so it stays a zombie. Advance i only past the children you keep (or build the \
                 list of survivors)"
                    .to_owned()
            };
            t.fail(
                "all four finished children reaped: gone from the process table",
                format_args!(
                    "{} still zombie(s): {}",
                    zombies.len(),
                    zombies
                        .iter()
                        .map(|p| format!("child {p}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                why,
            );
        }
        t.check(
            reaped == Ok(4),
            "Ok(4)",
            format_args!("{reaped:?}"),
            "reap_children returns how many children it reaped",
        );
        t.check(
            children == vec![pids[2]],
            format_args!("[{}]", pids[2]),
            format_args!("{children:?}"),
            "the reaped children leave `children`; the one still running stays",
        );
        let log = logged(&lines);
        for &i in &finished {
            let expected = format!("child {} reaped", pids[i]);
            t.check(
                log.iter().any(|l| l.contains(&expected)),
                format_args!("a log line {expected:?}"),
                format_args!("none{}", show_log(&lines)),
                "log Event::Reaped for every child reaped",
            );
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn step3_reaps_only_the_children_it_is_given() {
        let t = Transcript::new(REAPING);
        let stranger = Kid::exiting(5);
        let mine = Kid::exiting(6);
        let running = Kid::sleeper();
        await_zombie(stranger.id());
        await_zombie(mine.id());
        let (sp, mp, rp) = (stranger.pid(), mine.pid(), running.pid());
        t.step(format_args!(
            "started three children: {sp} and {mp} exited (zombies), {rp} (`sleep 30`) running"
        ));
        let (log, lines) = memory_log();
        t.step(format_args!(
            "called reap_children with [{mp}, {rp}]: child {sp} is not in the list"
        ));
        let Some((reaped, children)) = reap(vec![mp, rp], log) else {
            reap_hung(&t)
        };
        t.step(format_args!("it returned {reaped:?}, leaving {children:?}"));
        t.check(
            process_state(stranger.id()) == Some('Z'),
            format_args!("child {sp}, not in `children`, left alone (still a zombie)"),
            described(sp, process_state(stranger.id())),
            "reap_children reaped a child that was not in its list: waitpid(-1) (or None: any \
             child) collects the status of whatever child has ended, and the process may have \
             children that are none of the server's business. Wait for each pid of the list, \
             waitpid(pid, WNOHANG)",
        );
        t.check(
            process_state(mine.id()).is_none(),
            format_args!("child {mp} reaped"),
            described(mp, process_state(mine.id())),
            "child {mp} is in the list and has exited: reap it",
        );
        t.check(
            reaped == Ok(1) && children == vec![rp],
            format_args!("Ok(1), leaving [{rp}]"),
            format_args!("{reaped:?}, leaving {children:?}"),
            "one child of the list was reaped; the running one stays",
        );
        let expected = format!("child {mp} reaped: exit status 6");
        t.check(
            logged(&lines).iter().any(|l| l.contains(&expected)),
            format_args!("a log line {expected:?}"),
            format_args!("none{}", show_log(&lines)),
            "log Event::Reaped for the child reaped",
        );
    }

    // -----------------------------------------------------------------------------------------
    // Step 4: a process per connection

    /// The children of process `pid` as (pid, state), from /proc.
    #[cfg(target_os = "linux")]
    fn children_of(pid: u32) -> Vec<(u32, char)> {
        let mut children = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return children;
        };
        for entry in entries.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: comm may hold spaces and parentheses.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
            if fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
                children.push((child, state));
            }
        }
        children
    }

    /// The pids of the children named in the server's `served by child PID` log lines; fails
    /// `t` unless `count` of them appear within [`REPLY_WITHIN`].
    fn logged_children(t: &Transcript, server: &ServerProcess, count: usize) -> Vec<u32> {
        let deadline = Instant::now() + REPLY_WITHIN;
        loop {
            let pids: Vec<u32> = server
                .stderr_lines()
                .iter()
                .filter_map(|l| {
                    let rest = l.split("served by child ").nth(1)?;
                    rest.split_whitespace().next()?.parse().ok()
                })
                .collect();
            if pids.len() >= count {
                t.step(format_args!("the server logged children {pids:?}"));
                return pids;
            }
            if exited(server) || Instant::now() >= deadline {
                t.fail(
                    format_args!("{count} log line(s) \"...: connected; served by child PID (N live)\""),
                    format_args!("{}{}", pids.len(), log_tail(server)),
                    "the parent logs Event::Accepted with Worker::Child(pid) for each connection",
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Why a finished child that stays a zombie is a mistake, having checked whether a new
    /// client (`probe`) got it reaped: `true` when it did, which shows a loop that blocks in
    /// `accept`.
    fn zombie_why(reaped_by_probe: bool) -> &'static str {
        if reaped_by_probe {
            "the zombies were reaped only when a new client connected: the loop blocks in accept, so \
             while no client comes it never gets round to reap_children (nor to signals.pending()). \
             Wait for a connection at most one TICK with accept_within(&listener, TICK), and on \
             Ok(None) go round the loop again"
        } else {
            "the server's finished children were never reaped, not even when another client came: \
             call reap_children(&mut children, log) at every turn of the loop, so that a child \
             that has exited is collected within a tick"
        }
    }

    #[test]
    fn step4_server_binary_fork_echoes() {
        let t = Transcript::new(STEP4);
        let server = server(&t, "fork", &[]);
        let log = || log_tail(&server);
        let mut client = Client::connect(&t, server.addr(), "client 1", &log);
        must_echo(
            &t,
            &mut client,
            b"hello, fork",
            &|| {},
            &log,
            "`server --model fork` runs serve_fork: a child echoes each line",
        );
        must_echo(
            &t,
            &mut client,
            NON_UTF8,
            &|| {},
            &log,
            "the same connection goes on: each line is echoed exactly as it came, bytes that are not \
             UTF-8 included (the line stays bytes, a Vec<u8>: from_utf8_lossy would replace them)",
        );
    }

    #[test]
    fn step4_fork_answers_a_second_client_while_the_first_is_idle() {
        second_client_is_answered_promptly("fork");
    }

    #[test]
    fn step4_fork_each_client_is_served_by_its_own_child() {
        let t = Transcript::new(FORK_COPIES);
        let server = server(&t, "fork", &[]);
        let log = || log_tail(&server);
        let mut a = Client::connect(&t, server.addr(), "client a", &log);
        must_echo(&t, &mut a, b"a", &|| {}, &log, "a child serves client a");
        let mut b = Client::connect(&t, server.addr(), "client b", &log);
        must_echo(&t, &mut b, b"b", &|| {}, &log, "a child serves client b");
        let pids = logged_children(&t, &server, 2);
        let why = "the parent forks a child for each connection and logs its pid, which \
                   fork_process returned to it in ForkResult::Parent { child }";
        t.check(
            pids.len() == 2 && pids[0] != pids[1] && !pids.contains(&server.id()),
            format_args!("two different children, neither the server {}", server.id()),
            format_args!("{pids:?}"),
            why,
        );
        #[cfg(target_os = "linux")]
        {
            let children: Vec<u32> = children_of(server.id()).iter().map(|c| c.0).collect();
            for pid in &pids {
                t.check(
                    children.contains(pid),
                    format_args!("process {pid} a child of the server {}", server.id()),
                    format_args!("the server's children are {children:?}"),
                    why,
                );
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn step4_fork_leaves_no_zombies_after_50_short_connections() {
        let t = Transcript::new(REAPING);
        let server = server(&t, "fork", &[]);
        let log = || log_tail(&server);
        for i in 0..50 {
            let mut client = TcpStream::connect_timeout(&server.addr(), IO_TIMEOUT).unwrap_or_else(|e| {
                t.fail(
                    "a connection",
                    format_args!("error: {e}{}", log()),
                    "the server listens",
                )
            });
            set_stream_timeouts(&client);
            if let Err(reply) = exchange(
                &mut client,
                format!("short connection {i}").as_bytes(),
                REPLY_WITHIN,
                &|| {},
            ) {
                t.fail(
                    format_args!("the echo of \"short connection {i}\""),
                    format_args!("{reply}{}", log()),
                    "each client is served by its own child",
                );
            }
        }
        t.step("50 clients connected one after the other, each sent a line, got its echo and left");
        let deadline = Instant::now() + REAP_WITHIN;
        let mut children = children_of(server.id());
        while !children.is_empty() && Instant::now() < deadline {
            std::thread::sleep(POLL);
            children = children_of(server.id());
        }
        if children.is_empty() {
            return;
        }
        t.step(format_args!(
            "waited {} ms: the server still had {} children, {} of them zombies",
            REAP_WITHIN.as_millis(),
            children.len(),
            children.iter().filter(|c| c.1 == 'Z').count()
        ));
        let alive: Vec<&(u32, char)> = children.iter().filter(|c| c.1 != 'Z').collect();
        if !alive.is_empty() {
            t.fail(
                "no children: each exits after its client and is reaped",
                format_args!("{} live children: {alive:?}", alive.len()),
                "a child must exit (std::process::exit) once its client is served, never return \
                 into the accept loop: it would become a second server",
            );
        }
        let zombies: Vec<u32> = children.iter().map(|c| c.0).collect();
        let reaped_by_probe = probe_reaps(&t, &server, &zombies);
        t.fail(
            "no children: each is reaped within a tick (50 ms) of its exit",
            format_args!(
                "{} zombie children: {:?}{}",
                zombies.len(),
                &zombies[..zombies.len().min(8)],
                if zombies.len() > 8 { " ..." } else { "" }
            ),
            zombie_why(reaped_by_probe),
        );
    }

    /// Connects one more client to `server` (echo, leave) and reports whether the `zombies`
    /// were reaped after that.
    #[cfg(target_os = "linux")]
    fn probe_reaps(t: &Transcript, server: &ServerProcess, zombies: &[u32]) -> bool {
        if let Ok(mut probe) = TcpStream::connect_timeout(&server.addr(), IO_TIMEOUT) {
            set_stream_timeouts(&probe);
            let _ = exchange(&mut probe, b"probe", REPLY_WITHIN, &|| {});
        }
        t.step("another client connected, sent a line and left (to see whether that reaps them)");
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let reaped = zombies.iter().all(|&pid| process_state(pid) != Some('Z'));
            if reaped || Instant::now() >= deadline {
                t.step(format_args!(
                    "1000 ms later they were {}",
                    if reaped { "reaped" } else { "still zombies" }
                ));
                return reaped;
            }
            std::thread::sleep(POLL);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn step4_fork_reaps_a_finished_child_while_no_client_comes() {
        let t = Transcript::new(REAPING);
        let server = server(&t, "fork", &[]);
        let log = || log_tail(&server);
        let mut client = Client::connect(&t, server.addr(), "client 1", &log);
        must_echo(
            &t,
            &mut client,
            b"only one",
            &|| {},
            &log,
            "a child serves the client",
        );
        let pid = logged_children(&t, &server, 1)[0];
        await_server_waiting(server.id());
        drop(client);
        t.step(format_args!(
            "client 1 closed its connection: child {pid} reads end of stream and exits; no other \
             client comes"
        ));
        let state = await_gone(pid, REAP_WITHIN);
        t.step(format_args!(
            "waited up to {} ms: {}",
            REAP_WITHIN.as_millis(),
            described(pid, state)
        ));
        match state {
            None => {}
            Some('Z') => {
                let reaped_by_probe = probe_reaps(&t, &server, &[pid]);
                t.fail(
                    format_args!("child {pid} reaped within a tick (50 ms) of its exit"),
                    described(pid, Some('Z')),
                    zombie_why(reaped_by_probe),
                );
            }
            Some(_) => t.fail(
                format_args!("child {pid} to exit once its client has gone, and be reaped"),
                described(pid, state),
                "a child must exit (std::process::exit) once its client is served, never return \
                 into the accept loop",
            ),
        }
    }

    #[test]
    fn step4_fork_children_do_not_hold_the_listening_socket() {
        let t = Transcript::new(FORK_COPIES);
        let server = server(&t, "fork", &[]);
        let addr = server.addr();
        let log = || log_tail(&server);
        let mut client = Client::connect(&t, addr, "client 1", &log);
        must_echo(
            &t,
            &mut client,
            b"before",
            &|| {},
            &log,
            "a child serves client 1",
        );
        let child = logged_children(&t, &server, 1)[0];
        // The parent dies abruptly (it can do nothing about it): its child serves on alone.
        kill(Pid::from_raw(server.id() as i32), Signal::SIGKILL).expect("SIGKILL the server");
        // Not wait_exit: that waits for the end of the server's stderr, which the child holds.
        let deadline = Instant::now() + SETTLE;
        while !exited(&server) {
            assert!(Instant::now() < deadline, "the server survived SIGKILL?");
            std::thread::sleep(POLL);
        }
        t.step(format_args!("killed the server {} with SIGKILL", server.id()));
        must_echo(
            &t,
            &mut client,
            b"after the parent died",
            &|| {},
            &|| String::new(),
            "the child serves its client on its own, even after the parent has gone",
        );
        t.step(format_args!("a new client connects to {addr}"));
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Ok(_) => t.fail(
                "the connection refused: nobody listens any more",
                "the connection was accepted (into a backlog nobody will ever accept from)",
                format_args!(
                    "the server is dead, but child {child} still holds the listening socket, so the \
                     port stays open: the child must drop the listener right after fork"
                ),
            ),
            Err(e) => t.fail(
                "the connection refused",
                format_args!("error: {e}"),
                "nobody listens on the port once the server is dead and its child has dropped the \
                 listener",
            ),
        }
    }

    #[test]
    fn step4_fork_parent_does_not_hold_the_connection() {
        let t = Transcript::new(FORK_COPIES);
        let server = server(&t, "fork", &[]);
        let log = || log_tail(&server);
        let mut client = Client::connect(&t, server.addr(), "client 1", &log);
        must_echo(
            &t,
            &mut client,
            b"last line",
            &|| {},
            &log,
            "a child serves client 1",
        );
        let me = client.me();
        client
            .stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        t.step("client 1 half-closed its connection (shutdown(Write)): the child reads end of stream");
        let needle = format!("{me}: closed after echoing 1 line");
        if await_log(&server, &needle, SETTLE).is_none() {
            t.fail(
                format_args!("a log line {needle:?}"),
                no_log(&server, SETTLE),
                "the child serves the connection with serve_one, which logs how it ended",
            );
        }
        t.step(format_args!(
            "the server logged {needle:?}: the child has closed its copy and exits"
        ));
        let end = client.read(&t, 1, Duration::from_secs(3), &|| {});
        t.check(
            matches!(end.end, End::Eof) && end.bytes.is_empty(),
            "end of stream",
            format_args!("{end}{}", log_tail(&server)),
            "the child has closed its socket and exited, but the connection stays open: the parent \
             still holds its copy of the connected socket. A socket is closed when its last \
             descriptor is: the parent must drop the stream right after fork",
        );
    }

    #[test]
    fn step4_fork_cap_holds_new_clients_in_the_backlog() {
        cap_holds_new_clients_in_the_backlog("fork");
    }

    #[test]
    fn step4_fork_finished_children_free_their_places() {
        finished_clients_free_their_places("fork");
    }

    #[test]
    fn step4_fork_survives_a_client_reset() {
        survives_a_client_reset("fork");
    }

    #[test]
    fn step4_bench_against_the_fork_server_reports_no_errors() {
        bench_reports_no_errors("fork", true);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn step4_fork_backs_off_when_out_of_descriptors_and_serves_on() {
        backs_off_when_out_of_descriptors("fork", STEP4);
    }

    /// With one descriptor left, `accept` succeeds but `fork_process` cannot read
    /// /proc/self/task (`EMFILE`): that connection is lost, not the server.
    #[cfg(target_os = "linux")]
    #[test]
    fn step4_fork_a_failed_fork_costs_only_its_connection() {
        use common::descriptors;
        let t = Transcript::new(STEP4);
        let mut server = server(&t, "fork", &[]);
        let pid = server.id();
        let baseline = descriptors::open_descriptors(pid).map_or(usize::MAX, |fds| fds.len());
        let log = || log_tail(&server);
        let mut first = Client::connect(&t, server.addr(), "client 1", &log);
        must_echo(&t, &mut first, b"first", &|| {}, &log, "a child serves client 1");
        drop(first);
        t.step("client 1 closed its connection");
        logged_children(&t, &server, 1);
        let _ = descriptors::await_at_most(pid, baseline, REAP_WITHIN);
        if !descriptors::prlimit_available() {
            common::testing::notice("failed fork: skipped, prlimit(1) is not installed");
            return;
        }
        let (Ok(free), Some(original)) = (descriptors::lowest_free(pid), descriptors::soft_limit(pid)) else {
            panic!("test set-up: cannot read /proc/{pid}/fd and /proc/{pid}/limits");
        };
        let limit = u64::from(free) + 1;
        descriptors::set_soft_limit(pid, limit).unwrap_or_else(|e| panic!("test set-up: {e}"));
        t.step(format_args!(
            "lowered the server's descriptor limit to {limit} (prlimit): accept gets the last \
             descriptor, and fork_process, which must read /proc/self/task, fails with EMFILE"
        ));
        let mut doomed = Client::connect(&t, server.addr(), "client 2", &|| String::new());
        let me = doomed.me();
        let _ = doomed.send(&t, b"doomed\n");
        let end = doomed.read(&t, 1, REPLY_WITHIN, &|| {});
        let needle = format!("{me}: connection dropped");
        let deadline = Instant::now() + SETTLE;
        let dropped = loop {
            if let Some(line) = server.stderr_lines().into_iter().find(|l| l.contains(&needle)) {
                break line;
            }
            if let Some(status) = server.wait_exit(Duration::ZERO) {
                t.fail(
                    "the server logs Event::Dropped, drops that connection, backs off and goes on",
                    format_args!("it exited ({status}){}", log_tail(&server)),
                    "a fork that fails for lack of descriptors or memory (is_resource_exhaustion) \
                     costs its connection, not the server: log Event::Dropped, drop the stream, \
                     sleep ACCEPT_BACKOFF and go on; never return the error",
                );
            }
            if Instant::now() >= deadline {
                t.fail(
                    format_args!("a log line containing {needle:?} (Event::Dropped)"),
                    no_log(&server, SETTLE),
                    "log Event::Dropped with the client and the error when fork_process fails",
                );
            }
            std::thread::sleep(POLL);
        };
        t.step(format_args!("the server logged {dropped:?}"));
        t.check(
            end.closed(),
            "client 2's connection closed",
            format_args!("{end}{}", log_tail(&server)),
            "no child serves that connection: the parent drops the stream, which closes it",
        );
        t.check(
            dropped.contains("Too many open files"),
            "the log line naming the error (Too many open files)",
            sized(dropped.as_bytes()),
            "Event::Dropped carries fork_process's error",
        );
        descriptors::set_soft_limit(pid, original).unwrap_or_else(|e| panic!("test set-up: {e}"));
        t.step(format_args!("restored the limit to {original}"));
        let log = || log_tail(&server);
        let mut next = Client::connect(&t, server.addr(), "client 3", &log);
        must_echo(
            &t,
            &mut next,
            b"and the next",
            &|| {},
            &log,
            "once descriptors are free again the server forks for the next client as before",
        );
    }

    // -----------------------------------------------------------------------------------------
    // Step 5: stopping the children

    /// A call of [`lab::stop_children`], as [`stop`] hands it to an [`Around`].
    type StopCall<'a> = &'a mut (dyn FnMut() -> Result<(), String> + Send);

    /// Makes a [`StopCall`], perhaps with signals interrupting it: its result, and how many
    /// signals were sent.
    type Around = fn(StopCall<'_>) -> (Result<(), String>, usize);

    /// What [`stop`] saw: the result, the list left, how long the call took, the signals sent.
    type Stopped = (Result<(), String>, Vec<Pid>, Duration, usize);

    /// Runs [`lab::stop_children`] on `children` with SIGTERM (within [`CALL_LIMIT`]), wrapped
    /// by `around` (which may interrupt it); its result as text, the list it left, and how long
    /// it took, or `None` if it did not return.
    fn stop(children: Vec<Pid>, log: lab::Log, around: Around) -> Option<Stopped> {
        call_within(CALL_LIMIT, move || {
            let mut children = children;
            let started = Instant::now();
            let (result, signals) = around(&mut || {
                lab::stop_children(&mut children, Signal::SIGTERM, &log).map_err(|e| e.to_string())
            });
            (result, children, started.elapsed(), signals)
        })
    }

    /// Calls `f` as it is.
    fn plainly(f: StopCall<'_>) -> (Result<(), String>, usize) {
        (f(), 0)
    }

    /// Fails `t` for a `stop_children` that did not return.
    fn stop_hung(t: &Transcript) -> ! {
        t.fail(
            "stop_children to return once the children have exited",
            format_args!("still running after {} ms", CALL_LIMIT.as_millis()),
            "send the signal to every child first (kill), then wait for each: a child that was \
             never signalled never exits, and a blocking waitpid on it waits forever",
        )
    }

    #[test]
    fn step5_stop_children_signals_and_reaps_every_child() {
        let t = Transcript::new(SIGNALS);
        let a = Kid::sleeper();
        let b = Kid::sleeper();
        let (pa, pb) = (a.pid(), b.pid());
        t.step(format_args!("started children {pa} and {pb} (`sleep 30`)"));
        let (log, lines) = memory_log();
        t.step(format_args!("called stop_children with [{pa}, {pb}] and SIGTERM"));
        let Some((result, children, took, _)) = stop(vec![pa, pb], log, plainly) else {
            stop_hung(&t)
        };
        t.step(format_args!(
            "it returned {result:?} after {} ms, leaving {children:?}",
            took.as_millis()
        ));
        t.ok(
            result,
            "stop_children",
            "two running children can be signalled and waited for",
        );
        for kid in [&a, &b] {
            // A child signalled but never waited for becomes a zombie a moment later.
            let state = match process_state(kid.id()) {
                Some(s) if s != 'Z' => await_gone_or_zombie(kid.id()),
                state => state,
            };
            #[cfg(target_os = "linux")]
            t.check(
                state.is_none(),
                format_args!("child {} reaped when stop_children returns", kid.pid()),
                described(kid.pid(), state),
                "stop_children signalled the child but never waited for it, so it stays a zombie: \
                 after kill, wait for each child with a blocking waitpid(pid, None)",
            );
        }
        t.check(
            children.is_empty(),
            "[]",
            format_args!("{children:?}"),
            "every child is handled: `children` ends empty",
        );
        for pid in [pa, pb] {
            let expected = format!("child {pid} reaped: killed by SIGTERM");
            t.check(
                logged(&lines).iter().any(|l| l.contains(&expected)),
                format_args!("a log line {expected:?}"),
                format_args!("none{}", show_log(&lines)),
                "each child is sent the signal and reaped, with a log line (Event::Reaped)",
            );
        }
    }

    /// Waits up to a second for a dying process to become a zombie or go; its state then.
    fn await_gone_or_zombie(pid: u32) -> Option<char> {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let state = process_state(pid);
            if state.is_none_or(|s| s == 'Z') || Instant::now() >= deadline {
                return state;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops one child that takes 300 ms to exit after SIGTERM, through `around`.
    fn stops_a_slow_child(t: &Transcript, around: Around) -> usize {
        let kid = Kid::slow_to_stop(7);
        let pid = kid.pid();
        t.step(format_args!(
            "started child {pid}, which exits with status 7 some 300 ms after SIGTERM (it finishes \
             its work first, as a server's child finishing a reply would)"
        ));
        let (log, lines) = memory_log();
        t.step(format_args!("called stop_children with [{pid}] and SIGTERM"));
        let Some((result, children, took, signals)) = stop(vec![pid], log, around) else {
            stop_hung(t)
        };
        let state = process_state(kid.id());
        t.step(format_args!(
            "it returned {result:?} after {} ms, leaving {children:?}; then {}",
            took.as_millis(),
            described(pid, state)
        ));
        if signals > 0 {
            t.step(format_args!("{signals} signals interrupted it meanwhile"));
        }
        t.ok(
            result,
            "stop_children",
            "a signal that interrupts a blocking waitpid makes it fail with EINTR (Interrupted): \
             call waitpid again, it is no error, and the child is still there to wait for",
        );
        t.check(
            state.is_none(),
            format_args!("child {pid} reaped when stop_children returns"),
            described(pid, state),
            "a signalled child takes its time to exit (this one 300 ms): a waitpid with WNOHANG \
             right after kill finds it StillAlive, and forgetting it then leaves it running, and a \
             zombie once it exits. Wait for each child with a blocking waitpid(pid, None)",
        );
        t.check(
            children.is_empty(),
            "[]",
            format_args!("{children:?}"),
            "every child is handled: `children` ends empty",
        );
        let expected = format!("child {pid} reaped: exit status 7");
        t.check(
            logged(&lines).iter().any(|l| l.contains(&expected)),
            format_args!("a log line {expected:?}"),
            format_args!("none{}", show_log(&lines)),
            "log Event::Reaped with how the child ended (describe(&status))",
        );
        signals
    }

    #[test]
    fn step5_stop_children_waits_for_a_child_that_takes_time_to_exit() {
        let t = Transcript::new(STEP5);
        stops_a_slow_child(&t, plainly);
    }

    #[test]
    fn step5_stop_children_reaps_a_child_that_already_exited() {
        let t = Transcript::new(SIGNALS);
        let done = Kid::exiting(0);
        let pid = done.pid();
        await_zombie(done.id());
        t.step(format_args!(
            "started child {pid} (`sh -c \"exit 0\"`), now exited: a zombie"
        ));
        let (log, lines) = memory_log();
        t.step(format_args!("called stop_children with [{pid}] and SIGTERM"));
        let Some((result, children, _, _)) = stop(vec![pid], log, plainly) else {
            stop_hung(&t)
        };
        t.step(format_args!("it returned {result:?}, leaving {children:?}"));
        t.ok(
            result,
            "stop_children",
            "a child that has exited but is not yet reaped can still be signalled (kill succeeds, \
             nothing happens; ESRCH would mean it is gone already) and waited for",
        );
        t.check(
            children.is_empty(),
            "[]",
            format_args!("{children:?}"),
            "every child is handled",
        );
        let expected = format!("child {pid} reaped: exit status 0");
        t.check(
            logged(&lines).iter().any(|l| l.contains(&expected)),
            format_args!("a log line {expected:?}"),
            format_args!("none{}", show_log(&lines)),
            "the child is reaped, with a log line saying how it ended (Exited, not only Signaled)",
        );
    }

    /// Sends `signal` to a fork server with two idle clients: server and children must stop.
    fn signal_stops_server_and_children(signal: Signal) {
        let t = Transcript::new(SIGNALS);
        let mut server = server(&t, "fork", &[]);
        let log = || log_tail(&server);
        let mut clients: Vec<Client> = (0..2)
            .map(|i| Client::connect(&t, server.addr(), &format!("client {i}"), &log))
            .collect();
        for (i, client) in clients.iter_mut().enumerate() {
            must_echo(
                &t,
                client,
                format!("client {i}").as_bytes(),
                &|| {},
                &log,
                "a child serves each client",
            );
        }
        let children = logged_children(&t, &server, 2);
        await_server_waiting(server.id());
        kill(Pid::from_raw(server.id() as i32), signal).expect("signal the server");
        t.step(format_args!(
            "sent {signal} to the server {}; the two clients stay idle",
            server.id()
        ));
        let wait = Duration::from_secs(2);
        if server.wait_exit(wait).is_none() {
            t.step(format_args!(
                "waited {} ms: the server was still running",
                wait.as_millis()
            ));
            let probe = TcpStream::connect_timeout(&server.addr(), IO_TIMEOUT);
            t.step("another client connected (to see whether that wakes the server up)");
            let woke = server.wait_exit(Duration::from_millis(1500)).is_some();
            drop(probe);
            if woke {
                t.fail(
                    "the server stops within a tick (50 ms) of the signal",
                    "it stopped only once another client had connected",
                    "the loop blocks in accept, so while no client comes it never gets round to \
                     signals.pending() (nor to reap_children): wait for a connection at most one \
                     TICK with accept_within(&listener, TICK), then look at the signals again",
                );
            }
            t.fail(
                "the server stops within a tick (50 ms) of the signal",
                format_args!(
                    "still running {} ms after the signal, even after a new client came{}",
                    wait.as_millis() + 1500,
                    log_tail(&server)
                ),
                "check signals.pending() at the top of every turn of the loop; on a signal, log \
                 Event::Stopping, stop the children with stop_children(&mut children, \
                 Signal::SIGTERM, log) and return. stop_children must signal every child before \
                 it waits for any",
            );
        }
        t.step("the server exited");
        for client in clients.iter_mut() {
            let end = client.read(&t, 1, Duration::from_secs(3), &|| {});
            t.check(
                end.closed(),
                format_args!("{}'s connection closed", client.name),
                format_args!("{end}{}", log_tail(&server)),
                format_args!(
                    "{signal} stopped the server, but a child {children:?} lives on and keeps its \
                     client's connection: the server must stop its children (kill each with SIGTERM) \
                     before it exits"
                ),
            );
        }
        #[cfg(target_os = "linux")]
        for pid in &children {
            let state = process_state(*pid);
            t.check(
                state.is_none_or(|s| s == 'Z'),
                format_args!("child {pid} gone"),
                described(pid, state),
                "the server must stop its children before it exits",
            );
        }
        let lines = server.stderr_lines();
        for pid in &children {
            t.check(
                lines.iter().any(|l| l.contains(&format!("child {pid} reaped"))),
                format_args!("a log line \"child {pid} reaped: ...\" before the server exits"),
                format_args!("none{}", log_tail(&server)),
                "stop_children waits for (reaps) each child it signalled, and logs it",
            );
        }
    }

    #[test]
    fn step5_sigterm_stops_the_fork_server_and_its_children() {
        signal_stops_server_and_children(Signal::SIGTERM);
    }

    #[test]
    fn step5_sigint_stops_the_fork_server_and_its_children() {
        signal_stops_server_and_children(Signal::SIGINT);
    }
}
