//! Lab 05 grading suite: closing semantics.
//!
//! Shared by `lab05-closing` (the student's work) and `solution05-closing` (the reference): each
//! package's `tests/grade.rs` defines `lab` (its library) and `BIN` (its binary) and includes
//! this file. Tests are named `stepN_...` after the step of the book chapter they check, so
//! `cargo test -p lab05-closing step2_` runs the checks of step 2.
//!
//! Every test stays on loopback with ephemeral ports (the TIME_WAIT scenario too), sets timeouts
//! on every socket, runs code that might block on a [`Worker`] thread, and kills and reaps every
//! process it starts; a wrong implementation fails its test within seconds. The observations
//! asserted are Linux's; where the kernel may report a closed connection in more than one correct
//! way (a write after a reset: `ConnectionReset` or `BrokenPipe`), every correct answer is
//! accepted. `partial_io` gives the client's input `Interrupted`, and
//! `common::testing::with_interrupts` sends signals to a thread blocked in a socket call.
//!
//! Failures are transcripts (`common::testing::Transcript`): the numbered steps the test took,
//! then what was expected, what came back (payloads as escaped text with their length), why
//! that is a mistake, and the section of the book that explains it. The bug zoo in
//! `tests/05-closing/mutants/` proves that each classic mistake fails a test here, with a
//! message that names it (`cargo lab dev mutants --lab 5`).

use std::fmt;
use std::io::{self, Cursor, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

#[cfg(unix)]
use common::testing::with_interrupts;
use common::testing::{
    IO_TIMEOUT, ServerProcess, Transcript, is_timeout, notice, panic_message, run_within,
    set_stream_timeouts, sized, tcp_connect, tcp_listener, tcp_pair,
};
use partial_io::{PartialOp, PartialRead};

use crate::{BIN, lab};
use lab::Outcome;

// The book's sections the failures cite.
const FIN_RST: &str = "Lab 05 § FIN and RST";
const ORDERLY: &str = "Lab 05 § Orderly release";
const HALF_CLOSE: &str = "Lab 05 § Half-close";
const EOS: &str = "Lab 05 § End of stream";
const ABORTIVE: &str = "Lab 05 § Abortive close";
const UNREAD: &str = "Lab 05 § Closing with unread data";
const PIPE: &str = "Lab 05 § Broken pipe and SIGPIPE";
const SHUTDOWN: &str = "Lab 05 § shutdown versus close";
const EXIT: &str = "Lab 05 § Processes that exit";
const TIME_WAIT: &str = "Lab 05 § TIME_WAIT and SO_REUSEADDR";
const PROTOCOL: &str = "Lab 05 § The protocol and the programs";
const EXPERIMENTS: &str = "Lab 05 § The experiments";
const STEP1: &str = "Lab 05 § Step 1: Classify how a read or write ended";
const STEP2: &str = "Lab 05 § Step 2: Close in an orderly way";
const STEP4: &str = "Lab 05 § Step 4: The half-close client";
const STEP5: &str = "Lab 05 § Step 5: The server's side: read to the end, reply, close in order";
const SLOW: &str = "Lab 05 § Slow uploads and the message timeout";

/// The longest a library call that should return at once may take before the test calls it
/// hung.
const CALL_LIMIT: Duration = Duration::from_secs(4);
/// How long a test waits for bytes or a FIN that a correct implementation sends at once.
const QUIET: Duration = Duration::from_secs(2);
/// How long one scenario may run (each bounds its own waits by 5 s).
const EXPERIMENT_LIMIT: Duration = Duration::from_secs(20);
/// How long a test lets a client or experiment binary run before killing it.
const RUN_LIMIT: Duration = Duration::from_secs(30);
/// Extra time allowed over a computed timeout budget, for slow, busy machines.
const SLACK: Duration = Duration::from_millis(2000);
/// How often waiting loops look again.
const POLL: Duration = Duration::from_millis(20);
/// When a test's data arrives in the tests that interrupt a blocked call with signals.
#[cfg(unix)]
const LATE: Duration = Duration::from_millis(200);
/// The size of the multi-MiB transfers: 8 MiB.
const BIG: usize = 8 * 1024 * 1024;
/// A message timeout no test reaches unless it means to: 10 000 ms.
const LONG_MESSAGE: Duration = Duration::from_secs(10);

/// Bytes that are not UTF-8, and non-ASCII UTF-8 ("é"), with a NUL and a `\r`: requests are
/// bytes, and must be sent, counted and drained unchanged.
const NON_UTF8: &[u8] = b"caf\xe9 \xc3\xa9 \xff\xfe\x00\x80\r ok";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Bytes 0, 1, 2 ... 250, 0, 1 ... : a pattern in which a lost or repeated piece shows (and
/// that is not UTF-8).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// FNV-1a 64, written here again so the suite does not trust the code it checks.
fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The summary of `data`, computed by the test.
fn summary_of(data: &[u8]) -> lab::Summary {
    lab::Summary {
        bytes: data.len() as u64,
        fnv1a64: fnv1a64(data),
    }
}

/// The reply line a server owes for `data`.
fn reply_line(data: &[u8]) -> String {
    format!("received {} bytes, fnv1a64 {:016x}\n", data.len(), fnv1a64(data))
}

/// Where two byte strings first differ, for failure messages about long data.
fn first_difference(got: &[u8], expected: &[u8]) -> String {
    match got.iter().zip(expected).position(|(a, b)| a != b) {
        Some(i) => format!("first difference at byte {i}"),
        None => format!("{} bytes expected, {} received", expected.len(), got.len()),
    }
}

/// How failure messages show a value: replies as their line of text, checksums in hex.
trait Show {
    fn show(&self) -> String;
}

impl Show for () {
    fn show(&self) -> String {
        "()".to_owned()
    }
}

impl Show for usize {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Show for u64 {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Show for lab::Reply {
    fn show(&self) -> String {
        format!("reply \"{self}\"")
    }
}

impl Show for lab::Served {
    fn show(&self) -> String {
        format!(
            "Served {{ reply \"{}\", drained {} bytes }}",
            self.reply, self.drained
        )
    }
}

impl<T: Show> Show for io::Result<T> {
    fn show(&self) -> String {
        shown(self)
    }
}

/// A result and how many signals interrupted it.
impl<T: Show> Show for (T, usize) {
    fn show(&self) -> String {
        format!("{} ({} signals sent)", self.0.show(), self.1)
    }
}

/// A result for failure messages: `Ok(..)`, or `Err(ConnectionReset: Connection reset by peer)`.
fn shown<T: Show>(result: &io::Result<T>) -> String {
    match result {
        Ok(value) => format!("Ok({})", value.show()),
        Err(e) => format!("Err({:?}: {e})", e.kind()),
    }
}

/// Closes `stream` abortively, the test's own way: SO_LINGER 0 makes the close send a RST.
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("test set-up: SO_LINGER 0");
    drop(stream);
}

fn is_reset(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
    )
}

/// A file of `data` in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, data: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("lab05-{}-{name}", std::process::id()));
        std::fs::write(&path, data).expect("test set-up: write a temporary file");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Running the code under test, and reading what it sends

/// Code under test (or a test-side peer) running on a thread of its own. Its panic, a skeleton's
/// `todo!()` say, fails the test at once with the panic's message; a call that does not return is
/// reported by the test with its own explanation instead of hanging the suite (the thread is
/// left behind, and ends with the test process or when its socket closes).
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

impl<T: Show + Send + 'static> Worker<T> {
    /// What it is doing, for failure messages: "lab::orderly_close had returned Ok(0)".
    fn status(&mut self) -> String {
        match (self.done(), &self.result) {
            (true, Some(result)) => format!("{} had returned {}", self.name, result.show()),
            _ => format!("{} was still running", self.name),
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
    /// `Ok(0)`: the peer's FIN.
    Eof,
    /// `ConnectionReset` or `ConnectionAborted`: a RST.
    Reset(io::ErrorKind),
    /// Another error.
    Failed(io::Error),
    /// Nothing arrived for this long, and the connection is still open.
    Quiet(Duration),
}

impl End {
    fn is_eof(&self) -> bool {
        matches!(self, End::Eof)
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Complete => Ok(()),
            End::Eof => f.write_str(", then end of stream (a FIN)"),
            End::Reset(kind) => write!(f, ", then a reset ({kind:?}: a RST)"),
            End::Failed(e) => write!(f, ", then the read failed: {e}"),
            End::Quiet(d) => write!(
                f,
                ", then nothing more for {} ms (the connection still open)",
                d.as_millis()
            ),
        }
    }
}

/// What arrived, with how the read ended: `"bye" (3 bytes), then end of stream (a FIN)`.
fn arrived(bytes: &[u8], end: &End) -> String {
    format!("{}{end}", sized(bytes))
}

/// Reads from `stream` until `want` bytes have arrived (`None`: until end of stream), the stream
/// ends, is reset or fails, or `quiet` passes without a byte.
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
            Err(e) if is_reset(e.kind()) => break End::Reset(e.kind()),
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

/// Waits up to `limit` for a RST to reach `stream` after its end of stream, and returns the
/// error it left pending on the socket (`SO_ERROR`: `BrokenPipe` on Linux once a FIN had
/// arrived, `ConnectionReset` otherwise), without reading or writing.
fn pending_reset(stream: &TcpStream, limit: Duration) -> Option<io::ErrorKind> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(e)) = socket2::SockRef::from(stream).take_error() {
            return Some(e.kind());
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL);
    }
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
                 accepted and when it ends, with the client's endpoint and how it ended",
            );
        }
        thread::sleep(POLL);
    }
}

/// Runs the scenario `name` through the library (as `experiment NAME` does) and returns its
/// report, or fails with why it could not run.
fn experiment(t: &Transcript, name: &'static str) -> lab::experiments::Report {
    t.step(format_args!(
        "ran the `{name}` scenario (lab::experiments, as `experiment {name}` does)"
    ));
    let context = lab::experiments::Context { exe: BIN.into() };
    let ran = call(t, &format!("experiment {name}"), EXPERIMENT_LIMIT, move || {
        lab::experiments::find(name)
            .and_then(|s| s.run(&context))
            .map_err(|e| e.to_string())
    });
    match ran {
        Ok(report) => report,
        Err(e) => t.fail(
            "the scenario to run and report what each side observed",
            format_args!("it could not run: {e}"),
            "each scenario passes every observation through your classify and calls the steps it \
             shows (orderly_close, abortive_close, request); the error above names the step that \
             panicked or failed",
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Step 1: classify

#[test]
fn step1_data_and_end_of_stream() {
    let t = Transcript::new(EOS);
    let cases: [(io::Result<usize>, &str, Outcome, &str); 4] = [
        (
            Ok(5),
            "Ok(5)",
            Outcome::Data(5),
            "Ok(n) with n > 0 is n bytes of data",
        ),
        (
            Ok(1),
            "Ok(1)",
            Outcome::Data(1),
            "Ok(n) with n > 0 is n bytes of data, even one",
        ),
        (
            Ok(0),
            "Ok(0)",
            Outcome::EndOfStream,
            "Ok(0) is the end of the stream, not data: the peer's FIN has arrived and every byte \
             before it has been read (match Ok(0) before Ok(n))",
        ),
        (
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "made by the test")),
            "Err(UnexpectedEof)",
            Outcome::EndOfStream,
            "UnexpectedEof is how read_exact reports the end of the stream: it is the end of the \
             stream too, not some other error",
        ),
    ];
    for (result, what, expected, why) in cases {
        let got = lab::classify(&result);
        t.step(format_args!("lab::classify(&{what}) returned {got:?}"));
        t.check(
            got == expected,
            format_args!("{expected:?}"),
            format_args!("{got:?}"),
            why,
        );
    }
}

#[test]
fn step1_classify_maps_every_error_kind_used() {
    use io::ErrorKind as K;
    let t = Transcript::new(FIN_RST);
    let other = "every other kind is Other with that kind: do not squeeze a kind into an outcome \
                 it does not mean";
    let cases: [(K, Outcome, &str); 14] = [
        (
            K::ConnectionReset,
            Outcome::Reset,
            "a RST ended the connection and data may have been lost: a reset is not the end of the \
             stream (taking it for one is the classic way to lose data silently)",
        ),
        (
            K::ConnectionAborted,
            Outcome::Reset,
            "ConnectionAborted is a reset too (Windows reports some resets so)",
        ),
        (
            K::BrokenPipe,
            Outcome::BrokenPipe,
            "BrokenPipe (EPIPE) is a write to a connection that can no longer carry data: it has \
             its own outcome, BrokenPipe, not Reset",
        ),
        (
            K::WouldBlock,
            Outcome::TimedOut,
            "WouldBlock is what a read or write timeout gives on Unix: TimedOut",
        ),
        (
            K::TimedOut,
            Outcome::TimedOut,
            "TimedOut is what Windows reports for a socket timeout: TimedOut as well",
        ),
        (
            K::UnexpectedEof,
            Outcome::EndOfStream,
            "UnexpectedEof is how read_exact reports the end of the stream",
        ),
        (
            K::Interrupted,
            Outcome::Other(K::Interrupted),
            "Interrupted (EINTR) is neither a timeout nor a failure of the connection: a signal \
             arrived and the caller retries; classify reports it as Other(Interrupted)",
        ),
        (K::NotConnected, Outcome::Other(K::NotConnected), other),
        (K::AddrInUse, Outcome::Other(K::AddrInUse), other),
        (K::ConnectionRefused, Outcome::Other(K::ConnectionRefused), other),
        (K::InvalidData, Outcome::Other(K::InvalidData), other),
        (K::InvalidInput, Outcome::Other(K::InvalidInput), other),
        (K::PermissionDenied, Outcome::Other(K::PermissionDenied), other),
        (K::OutOfMemory, Outcome::Other(K::OutOfMemory), other),
    ];
    for (kind, expected, why) in cases {
        let got = lab::classify(&Err(io::Error::new(kind, "made by the test")));
        t.step(format_args!("lab::classify(&Err({kind:?})) returned {got:?}"));
        t.check(
            got == expected,
            format_args!("{expected:?}"),
            format_args!("{got:?}"),
            why,
        );
    }
}

#[test]
fn step1_classifies_what_the_kernel_reports() {
    let t = Transcript::new(STEP1);
    let why = "look only at e.kind(): the kinds are the same on every system, OS error numbers are \
               not";
    let (client, server) = tcp_pair();
    client
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("test set-up: read timeout");
    let idle = (&client).read(&mut [0u8; 8]);
    let got = lab::classify(&idle);
    t.step(format_args!(
        "a read on an idle connection with a 50 ms timeout returned {}; lab::classify made it {got:?}",
        shown(&idle)
    ));
    t.check(got == Outcome::TimedOut, "TimedOut", format_args!("{got:?}"), why);
    set_stream_timeouts(&client);
    reset(server);
    t.step("the peer closed with SO_LINGER 0 (a RST)");
    let read = (&client).read(&mut [0u8; 8]);
    let got = lab::classify(&read);
    t.step(format_args!(
        "the next read returned {}; lab::classify made it {got:?}",
        shown(&read)
    ));
    t.check(got == Outcome::Reset, "Reset", format_args!("{got:?}"), why);
    let write = (&client).write(b"anyone?");
    let got = lab::classify(&write);
    t.step(format_args!(
        "a write then returned {}; lab::classify made it {got:?}",
        shown(&write)
    ));
    t.check(
        matches!(got, Outcome::BrokenPipe | Outcome::Reset),
        "BrokenPipe (or Reset)",
        format_args!("{got:?}"),
        why,
    );
}

#[test]
fn step1_experiment_read_after_close() {
    let t = Transcript::new(EOS);
    let report = experiment(&t, "read-after-close");
    let reads = report.outcomes("client", "read");
    t.check(
        reads
            == [
                Outcome::Data(3),
                Outcome::EndOfStream,
                Outcome::EndOfStream,
                Outcome::EndOfStream,
            ],
        "the client's reads: Data(3), then EndOfStream on every later read (read, read again, \
         read_exact)",
        format_args!("{reads:?}; the report:\n{report}"),
        "end of stream is sticky: every read after the FIN returns Ok(0) again, and read_exact's \
         UnexpectedEof is the end of the stream too",
    );
}

#[test]
fn step1_experiment_write_after_close() {
    let t = Transcript::new(PIPE);
    let report = experiment(&t, "write-after-close");
    let writes = report.outcomes("client", "write");
    t.check(
        writes.first() == Some(&Outcome::Data(5)),
        "the first write after the peer closed: Data(5)",
        format_args!("{writes:?}; the report:\n{report}"),
        "the first write after the peer closed succeeds: the kernel takes the bytes",
    );
    t.check(
        writes.len() >= 3
            && writes[writes.len() - 2..]
                .iter()
                .all(|o| matches!(o, Outcome::BrokenPipe | Outcome::Reset)),
        "a later write fails with BrokenPipe (or ConnectionReset), and so does the next",
        format_args!("{writes:?}; the report:\n{report}"),
        "the peer's kernel answers the first write with a RST; the writes after it fail",
    );
}

#[test]
fn step1_experiment_unread_data() {
    let t = Transcript::new(UNREAD);
    let report = experiment(&t, "unread-data");
    let reads = report.outcomes("client", "read");
    if cfg!(target_os = "linux") {
        t.check(
            reads == [Outcome::Reset],
            "the client's read: [Reset]",
            format_args!("{reads:?}; the report:\n{report}"),
            "on Linux, closing with unread data sends a RST, so the client's read is a reset",
        );
    } else {
        t.check(
            matches!(reads[..], [Outcome::Reset | Outcome::EndOfStream]),
            "the client's read: a reset (or end of stream)",
            format_args!("{reads:?}; the report:\n{report}"),
            "closing with unread data sends a RST on most systems",
        );
    }
    let writes = report.outcomes("client", "write");
    t.check(
        matches!(writes[..], [_, Outcome::BrokenPipe | Outcome::Reset]),
        "after the reset, a write fails: BrokenPipe (or Reset)",
        format_args!("{writes:?}; the report:\n{report}"),
        "a connection that was reset can no longer carry data",
    );
}

#[test]
fn step1_experiment_shutdown_read() {
    let t = Transcript::new(SHUTDOWN);
    let report = experiment(&t, "shutdown-read");
    let reads = report.outcomes("server", "read");
    t.check(
        reads.first() == Some(&Outcome::EndOfStream),
        "after shutdown(Read), the server's read: EndOfStream at once",
        format_args!("{reads:?}; the report:\n{report}"),
        "shutdown(Read) makes this side's reads return Ok(0)",
    );
    let writes = report.outcomes("client", "write");
    t.check(
        writes == [Outcome::Data(9)],
        "the client's write: Data(9)",
        format_args!("{writes:?}; the report:\n{report}"),
        "the peer is not told about shutdown(Read): TCP has no segment for it, so its write succeeds",
    );
    if cfg!(target_os = "linux") {
        t.check(
            reads.get(1) == Some(&Outcome::Data(9)),
            "the server's next read: Data(9)",
            format_args!("{reads:?}; the report:\n{report}"),
            "on Linux the 9 bytes sent after shutdown(Read) are still delivered",
        );
    }
}

#[test]
fn step1_experiment_process_exit() {
    let t = Transcript::new(EXIT);
    let report = experiment(&t, "process-exit");
    let reads = report.outcomes("server", "read");
    t.check(
        matches!(
            reads[..],
            [Outcome::Data(_), Outcome::TimedOut, Outcome::EndOfStream]
        ),
        "the server's reads: Data (the child's hello), TimedOut while it lives, EndOfStream once \
         it is killed",
        format_args!("{reads:?}; the report:\n{report}"),
        "the kernel closes the sockets of a process that exits or is killed, with a FIN",
    );
}

#[test]
fn step1_experiment_time_wait() {
    let t = Transcript::new(TIME_WAIT);
    let report = experiment(&t, "time-wait");
    let reads = report.outcomes("client", "read");
    t.check(
        reads == [Outcome::EndOfStream, Outcome::EndOfStream],
        "the client's reads: EndOfStream twice (the server closed first each time)",
        format_args!("{reads:?}; the report:\n{report}"),
        "the server closes first, with a FIN, so the client sees end of stream",
    );
    let restarts = report.calls("server", "restart");
    // On Linux the experiment looks the old connection up in /proc/net/tcp. A kernel whose
    // TIME_WAIT table is full (net.ipv4.tcp_max_tw_buckets, shared by every program on the
    // host) keeps no TIME_WAIT at all; then there is nothing to observe.
    let states = report.calls("server", "state of");
    if cfg!(target_os = "linux") && states.first() != Some(&Ok("TIME_WAIT".to_owned())) {
        notice(&format!(
            "step1_experiment_time_wait: the kernel kept no TIME_WAIT ({:?}); is its table full \
             (tcp_max_tw_buckets)? Only the restart with SO_REUSEADDR was checked",
            states.first()
        ));
        t.check(
            matches!(&restarts[..], [_, Ok(_)]),
            "the restart with SO_REUSEADDR works",
            format_args!("{restarts:?}; the report:\n{report}"),
            "SO_REUSEADDR lets a listener bind a port that only old connections still use",
        );
        return;
    }
    t.check(
        matches!(&restarts[..], [Err(io::ErrorKind::AddrInUse), Ok(_)]),
        "the restart without SO_REUSEADDR fails with AddrInUse, the one with it works",
        format_args!("{restarts:?}; the report:\n{report}"),
        "the old connection is in TIME_WAIT on the server's port; SO_REUSEADDR lets a listener \
         bind it anyway",
    );
    let connects = report.calls("client", "connect");
    t.check(
        matches!(&connects[..], [Ok(_)]),
        "the client connects to the restarted server",
        format_args!("{connects:?}; the report:\n{report}"),
        "the restarted server listens again",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 2: orderly close

/// Runs `lab::orderly_close(stream, deadline)` on a worker.
fn closing(stream: TcpStream, deadline: Duration) -> Worker<io::Result<u64>> {
    Worker::spawn("lab::orderly_close", move || lab::orderly_close(stream, deadline))
}

/// Runs `f` on a worker through [`with_interrupts`], and returns once the signals have started
/// and `f` is being called: data the test sends [`LATE`] later then arrives while `f` waits.
#[cfg(unix)]
fn interrupted<T: Send + 'static>(
    t: &Transcript,
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Worker<(T, usize)> {
    let (ready, started) = mpsc::channel();
    let mut worker = Worker::spawn(name, move || {
        with_interrupts(move || {
            let _ = ready.send(());
            f()
        })
    });
    let deadline = Instant::now() + CALL_LIMIT;
    loop {
        match started.recv_timeout(POLL) {
            Ok(()) => return worker,
            Err(_) if Instant::now() < deadline && !worker.done() => {}
            Err(_) => t.fail(
                format_args!("{name} to start"),
                "it did not",
                "test set-up: the thread under signals did not start",
            ),
        }
    }
}

/// For the tests that interrupt a blocked call with signals: after [`LATE`], sends
/// [`NON_UTF8`] on `client`; after [`LATE`] more, half-closes. A failure is recorded, not fatal:
/// the call under test may have given up already, and its result says why.
#[cfg(unix)]
fn late_upload(t: &Transcript, client: &TcpStream, to: &str) {
    thread::sleep(LATE);
    match (&*client).write_all(NON_UTF8) {
        Ok(()) => t.sent(
            NON_UTF8,
            format_args!("{} ms later, the client", LATE.as_millis()),
            to,
        ),
        Err(e) => t.step(format_args!(
            "{} ms later the client's write failed: {e}",
            LATE.as_millis()
        )),
    }
    thread::sleep(LATE);
    match client.shutdown(Shutdown::Write) {
        Ok(()) => t.step(format_args!(
            "{} ms later the client half-closed",
            LATE.as_millis()
        )),
        Err(e) => t.step(format_args!(
            "{} ms later the client's half-close failed: {e}",
            LATE.as_millis()
        )),
    }
}

/// A peer that sends a byte every 50 ms and never half-closes, until dropped.
struct Trickler {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Trickler {
    fn start(stream: TcpStream) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            loop {
                if (&stream).write_all(b".").is_err() {
                    break;
                }
                match stopped.recv_timeout(Duration::from_millis(50)) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            }
        });
        Trickler {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Trickler {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn step2_sends_fin_then_waits_for_the_peers_end_of_stream() {
    let t = Transcript::new(ORDERLY);
    let (client, server) = tcp_pair();
    // A second handle keeps the connection open when orderly_close drops its stream: only a
    // shutdown(Write) can send the FIN then.
    let _other = server
        .try_clone()
        .expect("test set-up: a second handle to the server's end");
    t.step(
        "connected a client; the test keeps a second handle to the server's end, so that dropping \
         the stream closes one handle and sends nothing: only shutdown(Write) can send a FIN",
    );
    t.step("called lab::orderly_close(the server's end, 5000 ms); the client sent nothing and kept its side open");
    let mut worker = closing(server, IO_TIMEOUT);
    let (got, end) = worker.read(&client, None, QUIET);
    t.step(format_args!("the client read {}", arrived(&got, &end)));
    match &end {
        End::Eof => {}
        End::Quiet(_) => {
            let status = worker.status();
            let why = if worker.done() {
                "no FIN: shutdown(Write) sends it, shutdown(Read) does not. shutdown(Read) only makes \
                 this side's own reads return end of stream at once, which is why the drain ended at \
                 once; and the drop at the end sends nothing while another handle to the socket is \
                 open (shutdown acts on the connection, close on one handle)"
            } else {
                "no FIN: shutdown(Write) sends it, shutdown(Read) does not. Shut down the sending side \
                 first, then drain: the peer sees end of stream and can finish in turn (a drain that \
                 waits for the peer before the FIN waits for a peer that waits for it)"
            };
            t.fail(
                "end of stream at once: the FIN that shutdown(Write) sends",
                format_args!("no FIN within {} ms; {status}", QUIET.as_millis()),
                why,
            );
        }
        _ => t.fail(
            "end of stream at once: the FIN that shutdown(Write) sends",
            arrived(&got, &end),
            "an orderly close sends a FIN, and nothing was unread: a reset here means the close was \
             abortive",
        ),
    }
    t.check(
        got.is_empty(),
        "no bytes: nothing was written",
        sized(&got),
        "orderly_close sends nothing but the FIN",
    );
    if let Some(result) = worker.wait(Duration::from_millis(300)) {
        t.step(format_args!("lab::orderly_close returned {}", shown(&result)));
        t.fail(
            "lab::orderly_close still draining: the peer had not finished sending (no FIN from it yet)",
            format_args!("it returned {}", shown(&result)),
            "drain until the peer's end of stream: read and discard until Ok(0), or until the \
             deadline. Closing before the peer has finished leaves its later bytes unread, and the \
             kernel answers them with a RST",
        );
    }
    t.step("300 ms later lab::orderly_close was still draining");
    client
        .shutdown(Shutdown::Write)
        .expect("test set-up: the client's half-close");
    t.step("the client half-closed (its FIN)");
    let Some(result) = worker.wait(CALL_LIMIT) else {
        t.fail(
            "lab::orderly_close to return once the peer's end of stream arrived",
            format_args!("it was still running {} ms later", CALL_LIMIT.as_millis()),
            "Ok(0) from read is the peer's end of stream: the drain is over, return",
        );
    };
    t.step(format_args!("lab::orderly_close returned {}", shown(&result)));
    t.check(
        matches!(result, Ok(0)),
        "Ok(0): nothing was drained",
        shown(&result),
        "once the peer's end of stream arrives, orderly_close returns how many bytes it drained",
    );
}

#[test]
fn step2_drains_what_the_peer_still_sends() {
    const LEN: usize = 1024 * 1024;
    let t = Transcript::new(ORDERLY);
    let (client, server) = tcp_pair();
    t.step(
        "the client writes 1 MiB (bytes 0..250 repeated: not UTF-8), then half-closes and reads \
         until the connection ends",
    );
    let peer = thread::spawn(move || {
        let wrote = (&client).write_all(&pattern(LEN));
        let _ = client.shutdown(Shutdown::Write);
        let (got, end) = read_some(&client, None, QUIET);
        (wrote, got, end)
    });
    t.step("meanwhile called lab::orderly_close(the server's end, 5000 ms)");
    let result = call(&t, "lab::orderly_close", IO_TIMEOUT + SLACK, move || {
        lab::orderly_close(server, IO_TIMEOUT)
    });
    t.step(format_args!("lab::orderly_close returned {}", shown(&result)));
    let (wrote, got, end) = peer.join().expect("the test's peer thread");
    t.step(format_args!(
        "the client's 1 MiB write: {}; then it read {}",
        shown(&wrote),
        arrived(&got, &end)
    ));
    t.check(
        wrote.is_ok() && got.is_empty() && end.is_eof(),
        "the client's writes succeed, and its read ends with end of stream",
        format_args!("the write: {}; the read: {}", shown(&wrote), arrived(&got, &end)),
        "closing with the peer's bytes unread makes the kernel send a RST, which fails the peer's \
         writes and reads: drain (read and discard until the peer's end of stream) before the \
         stream drops",
    );
    t.check(
        matches!(result, Ok(n) if n == LEN as u64),
        format_args!("Ok({LEN}): the bytes drained"),
        shown(&result),
        "orderly_close returns how many bytes it read and discarded",
    );
}

#[test]
fn step2_a_peer_that_never_finishes_cannot_hold_the_close_past_the_deadline() {
    let t = Transcript::new(ORDERLY);
    let (client, server) = tcp_pair();
    // No timeout of the test's: only the deadline may end the drain.
    server
        .set_read_timeout(None)
        .expect("test set-up: no read timeout");
    let _trickler = Trickler::start(client);
    t.step("the client sends a byte every 50 ms and never half-closes; the server's end has no read timeout");
    let deadline = Duration::from_millis(500);
    let started = Instant::now();
    let mut worker = closing(server, deadline);
    t.step("called lab::orderly_close(the server's end, 500 ms)");
    let Some(result) = worker.wait(deadline + SLACK) else {
        t.fail(
            "lab::orderly_close to give up with TimedOut at the 500 ms deadline",
            format_args!("it was still draining after {} ms", started.elapsed().as_millis()),
            "the deadline bounds the whole drain, not each read: take the end instant once, before \
             the loop, and give each read the time left until it. A new 500 ms for every read lets a \
             peer that sends a byte every 50 ms hold the socket (and the server) forever",
        );
    };
    let took = started.elapsed();
    t.step(format_args!(
        "lab::orderly_close returned {} after {} ms",
        shown(&result),
        took.as_millis()
    ));
    t.check(
        matches!(&result, Err(e) if is_timeout(e)),
        "Err(TimedOut)",
        shown(&result),
        "the peer never finished sending: at the deadline orderly_close gives up with TimedOut \
         (the stream closes anyway)",
    );
}

#[test]
fn step2_a_zero_deadline_is_timed_out_not_invalid_input() {
    let t = Transcript::new(STEP2);
    let (client, server) = tcp_pair();
    t.step("the client sent nothing and did not half-close");
    t.step("called lab::orderly_close(the server's end, Duration::ZERO)");
    let result = call(&t, "lab::orderly_close", CALL_LIMIT, move || {
        lab::orderly_close(server, Duration::ZERO)
    });
    t.step(format_args!("lab::orderly_close returned {}", shown(&result)));
    t.check(
        matches!(&result, Err(e) if is_timeout(e)),
        "Err(TimedOut): a zero deadline drains nothing",
        shown(&result),
        "check the time left before setting it as the read timeout: a zero socket timeout is an \
         error (InvalidInput), not \"at once\". With no time left, give up with TimedOut",
    );
    let (got, end) = read_some(&client, None, QUIET);
    t.step(format_args!("the client read {}", arrived(&got, &end)));
    t.check(
        got.is_empty() && end.is_eof(),
        "end of stream (the FIN)",
        arrived(&got, &end),
        "the shutdown comes first, whatever the deadline, and the stream closes in every case",
    );
}

#[cfg(unix)]
#[test]
fn step2_retries_a_drain_read_interrupted_by_a_signal() {
    let t = Transcript::new(STEP2);
    let (client, server) = tcp_pair();
    t.step(
        "called lab::orderly_close(the server's end, 5000 ms), with SIGUSR1 sent to its thread every 20 ms",
    );
    let mut worker = interrupted(&t, "lab::orderly_close", move || {
        lab::orderly_close(server, IO_TIMEOUT)
    });
    late_upload(&t, &client, "the draining server");
    let why = "each signal makes the blocked read fail with Interrupted (Linux never restarts a socket \
               call that has a timeout): Interrupted is neither the peer's end of stream nor a failure, \
               so read again";
    let Some((result, signals)) = worker.wait(CALL_LIMIT) else {
        t.fail(
            "lab::orderly_close to return after the client's end of stream",
            format_args!("{} was still running", worker.name),
            why,
        );
    };
    t.step(format_args!(
        "{signals} signals were sent; lab::orderly_close returned {}",
        shown(&result)
    ));
    t.check(
        matches!(result, Ok(n) if n == NON_UTF8.len() as u64),
        format_args!("Ok({}): the bytes drained", NON_UTF8.len()),
        shown(&result),
        why,
    );
    t.check(
        signals >= 2,
        "at least 2 signals",
        signals,
        "test set-up: the read was not interrupted",
    );
}

#[test]
fn step2_an_8_mib_transfer_arrives_whole_before_end_of_stream() {
    let t = Transcript::new(ORDERLY);
    let (client, server) = tcp_pair();
    t.step("the server's end wrote 8 MiB (bytes 0..250 repeated), then called lab::orderly_close(10 000 ms) at once; the client read meanwhile");
    let mut worker = Worker::spawn(
        "the server thread (write 8 MiB, then lab::orderly_close)",
        move || {
            server
                .set_write_timeout(Some(Duration::from_secs(30)))
                .expect("test set-up: write timeout");
            (&server)
                .write_all(&pattern(BIG))
                .expect("test set-up: the server's 8 MiB write");
            lab::orderly_close(server, Duration::from_secs(10))
        },
    );
    let (got, end) = worker.read(&client, None, QUIET);
    t.step(format_args!("the client read {} bytes{end}", got.len()));
    t.check(
        got == pattern(BIG) && end.is_eof(),
        format_args!("all {BIG} bytes intact, then end of stream"),
        format_args!(
            "{} bytes{end} ({})",
            got.len(),
            first_difference(&got, &pattern(BIG))
        ),
        "an orderly close delivers every byte written before it, then the FIN: shutdown(Write) \
         queues the FIN after the data, and closing discards nothing that was written",
    );
    drop(client);
    t.step("the client closed");
    let Some(result) = worker.wait(CALL_LIMIT) else {
        t.fail(
            "lab::orderly_close to return after the client's end of stream",
            "it was still running",
            "Ok(0) from read is the peer's end of stream: the drain is over",
        );
    };
    t.step(format_args!("lab::orderly_close returned {}", shown(&result)));
    t.check(
        matches!(result, Ok(0)),
        "Ok(0)",
        shown(&result),
        "the client sent nothing: nothing was drained",
    );
}

#[test]
fn step2_experiment_orderly_close_with_data_in_flight() {
    let t = Transcript::new(ORDERLY);
    let report = experiment(&t, "orderly");
    let reads = report.outcomes("client", "read");
    t.check(
        reads == [Outcome::EndOfStream],
        "after the data, the client's read: [EndOfStream]",
        format_args!("{reads:?}; the report:\n{report}"),
        "an orderly close ends with a FIN",
    );
    t.check(
        report.finding.starts_with("all ") && report.finding.contains("intact"),
        "every byte written before the close arrives intact",
        format_args!("{}; the report:\n{report}", report.finding),
        "closing after writing discards nothing",
    );
    let closed = report.calls("server", "orderly_close returns");
    t.check(
        matches!(&closed[..], [Ok(_)]),
        "orderly_close returns Ok",
        format_args!("{closed:?}; the report:\n{report}"),
        "the client closes after reading, so the drain ends with its end of stream",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 3: abortive close

#[test]
fn step3_the_peer_sees_a_reset_not_end_of_stream() {
    let t = Transcript::new(ABORTIVE);
    let (client, server) = tcp_pair();
    t.step("called lab::abortive_close on the server's end of an idle connection");
    let result = call(&t, "lab::abortive_close", CALL_LIMIT, move || {
        lab::abortive_close(server)
    });
    t.ok(
        result,
        "lab::abortive_close",
        "setting SO_LINGER on a connected socket does not fail",
    );
    let read = (&client).read(&mut [0u8; 16]);
    t.step(format_args!("the client's read returned {}", shown(&read)));
    let expected = "Err(ConnectionReset) on the first read: a RST, with no FIN before it";
    match &read {
        Err(e) if is_reset(e.kind()) => {}
        Ok(0) => {
            if let Some(kind) = pending_reset(&client, Duration::from_millis(500)) {
                t.step(format_args!(
                    "then a RST arrived too (the socket's pending error: {kind:?})"
                ));
                t.fail(
                    expected,
                    "Ok(0), end of stream (a FIN), and then a RST",
                    "the peer saw end of stream (a FIN) before the reset, so the close was orderly \
                     first: an abortive close must not shut down first, since shutdown(Write) sends a \
                     FIN. Set SO_LINGER to 0 seconds and drop the stream, nothing more",
                );
            }
            t.step("no RST followed within 500 ms");
            t.fail(
                expected,
                "Ok(0), end of stream (a FIN), and no reset",
                "that was an orderly close: SO_LINGER was not \"on, 0 seconds\". Without it (None is \
                 the default) the close sends a FIN, and a non-zero time only makes close wait for \
                 unsent data; set_linger(Some(Duration::ZERO)) through socket2::SockRef, then drop",
            );
        }
        _ => t.fail(
            expected,
            shown(&read),
            "after an abortive close the peer's next read fails with ConnectionReset",
        ),
    }
}

#[test]
fn step3_an_8_mib_transfer_cut_by_an_abortive_close_is_a_reset() {
    let t = Transcript::new(ABORTIVE);
    let (client, server) = tcp_pair();
    t.step("the server's end wrote 8 MiB, then called lab::abortive_close; the client read meanwhile");
    let mut worker = Worker::spawn(
        "the server thread (write 8 MiB, then lab::abortive_close)",
        move || {
            server
                .set_write_timeout(Some(Duration::from_secs(30)))
                .expect("test set-up: write timeout");
            (&server)
                .write_all(&pattern(BIG))
                .expect("test set-up: the server's 8 MiB write");
            lab::abortive_close(server)
        },
    );
    let (got, end) = worker.read(&client, None, QUIET);
    t.step(format_args!("the client read {} bytes{end}", got.len()));
    let why = match &end {
        End::Reset(_) => "",
        End::Eof => {
            "every byte arrived, then end of stream: that was an orderly close. An abortive close \
             (SO_LINGER 0 seconds, then close) sends a RST and throws away what is still queued"
        }
        _ => "an abortive close sends a RST: the reader sees ConnectionReset after what had arrived",
    };
    t.check(
        matches!(end, End::Reset(_)),
        "part of the data, then a reset (ConnectionReset)",
        format_args!("{} bytes{end}", got.len()),
        why,
    );
    let Some(result) = worker.wait(CALL_LIMIT) else {
        t.fail(
            "lab::abortive_close to return at once",
            "it was still running",
            "an abortive close never waits for the peer",
        );
    };
    t.step(format_args!("lab::abortive_close returned {}", shown(&result)));
    t.check(
        result.is_ok(),
        "Ok(())",
        shown(&result),
        "setting SO_LINGER does not fail",
    );
}

#[test]
fn step3_returns_at_once_with_data_unsent() {
    let t = Transcript::new(ABORTIVE);
    let (client, server) = tcp_pair();
    // Fill the buffers: the client reads nothing.
    server
        .set_write_timeout(Some(Duration::from_millis(300)))
        .expect("test set-up: write timeout");
    let chunk = vec![0u8; 64 * 1024];
    let mut filled = 0;
    while let Ok(n) = (&server).write(&chunk) {
        filled += n;
    }
    t.step(format_args!(
        "the server's end wrote {filled} bytes until the socket buffers were full (the client reads nothing)"
    ));
    let started = Instant::now();
    let result = call(&t, "lab::abortive_close", CALL_LIMIT, move || {
        lab::abortive_close(server)
    });
    let took = started.elapsed();
    t.step(format_args!(
        "lab::abortive_close returned {} after {} ms",
        shown(&result),
        took.as_millis()
    ));
    t.check(
        took < Duration::from_millis(500) + SLACK,
        "to return at once",
        format_args!("after {} ms", took.as_millis()),
        "with SO_LINGER 0 the close discards unsent data and returns at once; a non-zero linger \
         waits for the data to go out",
    );
    let (got, end) = read_some(&client, None, QUIET);
    t.step(format_args!("then the client read {} bytes{end}", got.len()));
    let why = if end.is_eof() {
        "every byte was delivered, then a FIN: the close was orderly. With SO_LINGER \"on, N \
         seconds\" (N > 0) close waits up to N s for the data to go out, then closes in order; only \
         0 seconds discards it and resets"
    } else {
        "an abortive close sends a RST: what had reached the reader arrives, then ConnectionReset"
    };
    t.check(
        matches!(end, End::Reset(_)),
        "what had arrived, then a reset (ConnectionReset)",
        format_args!("{} of {filled} bytes{end}", got.len()),
        why,
    );
}

#[test]
fn step3_experiment_abortive_close() {
    let t = Transcript::new(ABORTIVE);
    let report = experiment(&t, "abortive");
    let reads = report.outcomes("client", "read");
    t.check(
        reads == [Outcome::Reset],
        "the client's reads end with a reset, not end of stream: [Reset]",
        format_args!("{reads:?}; the report:\n{report}"),
        "abortive_close sends a RST",
    );
    let writes = report.outcomes("client", "write");
    t.check(
        matches!(
            writes[..],
            [Outcome::Data(7), Outcome::BrokenPipe | Outcome::Reset]
        ),
        "[Data(7), then BrokenPipe (or Reset)]",
        format_args!("{writes:?}; the report:\n{report}"),
        "after the reset the connection can no longer carry data",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 4: the half-close client

/// A test-side server for one connection: runs `before_read` (a wait), reads the request until end of
/// stream (or, when `want` is given, until that many bytes have arrived; or [`NO_FIN`] without
/// a byte), reports it, and if it was complete waits `reply_after`, writes `answer(request)`
/// and closes. A request that did not end is held open for up to `hold` (while the test looks
/// at the client), then closed.
struct TestServer {
    addr: SocketAddr,
    requests: mpsc::Receiver<(Vec<u8>, End)>,
    _release: mpsc::Sender<()>,
}

/// How long the test's server waits for the next byte or the FIN of a request: 1500 ms.
const NO_FIN: Duration = Duration::from_millis(1500);

impl TestServer {
    fn start(
        want: Option<usize>,
        before_read: impl FnOnce() + Send + 'static,
        reply_after: Duration,
        hold: Duration,
        answer: impl FnOnce(&[u8]) -> Vec<u8> + Send + 'static,
    ) -> Self {
        let listener = tcp_listener();
        let addr = listener
            .local_addr()
            .expect("test set-up: the listener's address");
        let (tx, requests) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        thread::spawn(move || {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            set_stream_timeouts(&stream);
            before_read();
            let (request, end) = read_some(&stream, want, NO_FIN);
            let complete = matches!(end, End::Eof | End::Complete);
            let reply = complete.then(|| answer(&request));
            let _ = tx.send((request, end));
            match reply {
                Some(reply) => {
                    thread::sleep(reply_after);
                    let _ = (&stream).write_all(&reply);
                }
                None => {
                    let _ = released.recv_timeout(hold);
                }
            }
        });
        TestServer {
            addr,
            requests,
            _release: release,
        }
    }

    /// A server that replies at once after the end of the request, for the library's request.
    fn replying(answer: impl FnOnce(&[u8]) -> Vec<u8> + Send + 'static) -> Self {
        TestServer::start(None, || {}, Duration::ZERO, IO_TIMEOUT, answer)
    }

    /// A server that replies as soon as `len` bytes have arrived, whether or not the client has
    /// half-closed: for the tests of what the client does with the reply.
    fn replying_after(len: usize, answer: impl FnOnce(&[u8]) -> Vec<u8> + Send + 'static) -> Self {
        TestServer::start(Some(len), || {}, Duration::ZERO, IO_TIMEOUT, answer)
    }

    /// What it received, and how the request ended, watching `client` meanwhile (its panic fails
    /// the test at once).
    fn request<T: Send + 'static>(&self, t: &Transcript, client: &mut Worker<T>) -> (Vec<u8>, End) {
        let deadline = Instant::now() + NO_FIN + Duration::from_secs(10);
        loop {
            match self.requests.recv_timeout(POLL) {
                Ok(request) => return request,
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    client.done();
                }
                Err(_) => t.fail(
                    "the test's server to report the request",
                    "nothing",
                    "test set-up: the test's server did not accept or read",
                ),
            }
        }
    }
}

/// Connects to `addr` and runs `f` (a call of `lab::request`) on the connection on a worker. The
/// test keeps the stream too, so it stays open when `lab::request` returns: only a shutdown can
/// end the request.
fn requesting<T: Send + 'static>(
    addr: SocketAddr,
    f: impl FnOnce(&TcpStream) -> T + Send + 'static,
) -> (Arc<TcpStream>, Worker<T>) {
    let stream = Arc::new(tcp_connect(addr));
    let theirs = Arc::clone(&stream);
    let worker = Worker::spawn("lab::request", move || f(&theirs));
    (stream, worker)
}

/// Checks that the test's server received `data`, then end of stream, and explains a missing
/// half-close.
fn expect_request<T: Show + Send + 'static>(
    t: &Transcript,
    server: &TestServer,
    worker: &mut Worker<T>,
    data: &[u8],
) {
    let (got, end) = server.request(t, worker);
    check_request(t, worker, &got, &end, data);
}

/// Checks that the test's server received `data` (it got `got`, then `end`), and explains a
/// missing half-close.
fn check_request<T: Show + Send + 'static>(
    t: &Transcript,
    worker: &mut Worker<T>,
    got: &[u8],
    end: &End,
    data: &[u8],
) {
    t.step(format_args!(
        "the test's server received {} bytes{end}",
        got.len()
    ));
    match end {
        End::Eof | End::Complete => {}
        End::Quiet(_) => {
            let status = worker.status();
            let why = if worker.done() {
                "no FIN: shutdown(Write) sends it, shutdown(Read) does not, and without it the server \
                 cannot know the request is complete. lab::request returned without sending one: with \
                 UnexpectedEof, its reads ended at once, which is what shutdown(Read) does to them; \
                 with another error, it gave up before the half-close"
            } else {
                "no FIN: the server still waits for the rest of the request while lab::request waits \
                 for its reply, and each waits for the other until a timeout. Half-close with \
                 shutdown(Write) right after sending everything, before reading the reply"
            };
            t.fail(
                "the request, then end of stream (the client's half-close, shutdown(Write))",
                format_args!(
                    "{} bytes, then no end of stream for {} ms; {status}",
                    got.len(),
                    NO_FIN.as_millis()
                ),
                why,
            );
        }
        _ => t.fail(
            "the request, then end of stream (the client's half-close, shutdown(Write))",
            format_args!("{} bytes{end}", got.len()),
            "the client must end its request with a half-close, not close or reset the connection: \
             the reply comes back on it",
        ),
    }
    t.check(
        got == data,
        format_args!("the request: {}", sized(data)),
        format_args!("{} ({})", sized(got), first_difference(got, data)),
        "send every byte input yields, unchanged (bytes, not text): io::copy loops until the input \
         ends, however many writes it takes",
    );
}

/// Waits for `lab::request` to return after the test's server replied and closed.
fn reply_of(t: &Transcript, worker: &mut Worker<io::Result<lab::Reply>>) -> io::Result<lab::Reply> {
    let Some(result) = worker.wait(CALL_LIMIT) else {
        t.fail(
            "lab::request to return the reply",
            "it was still running after the server replied and closed",
            "read the reply until end of stream: the server closes after its reply line",
        );
    };
    t.step(format_args!("lab::request returned {}", shown(&result)));
    result
}

#[test]
fn step4_half_closes_and_returns_the_parsed_reply() {
    let t = Transcript::new(HALF_CLOSE);
    let data = pattern(3 * 1024 * 1024 + 7);
    let server = TestServer::replying(|request| reply_line(request).into_bytes());
    t.step(format_args!(
        "a test server at {} reads the request until end of stream, then replies with its count and \
         checksum and closes",
        server.addr
    ));
    let input = data.clone();
    let (_stream, mut worker) = requesting(server.addr, move |s| lab::request(s, &mut &input[..]));
    t.step("called lab::request with 3 MiB + 7 bytes (bytes 0..250 repeated: not UTF-8) as input");
    expect_request(&t, &server, &mut worker, &data);
    t.sent(
        reply_line(&data).as_bytes(),
        "the test's server",
        "the client, then closed",
    );
    let result = reply_of(&t, &mut worker);
    let expected = lab::Reply::Received(summary_of(&data));
    match &result {
        Ok(reply) if *reply == expected => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => t.fail(
            format_args!("Ok({})", expected.show()),
            shown(&result),
            "the server replied after your end of stream, yet your reads found nothing: \
             shutdown(Both), or a close, shuts the direction the reply comes back on. Half-close \
             with Shutdown::Write only",
        ),
        _ => t.fail(
            format_args!("Ok({})", expected.show()),
            shown(&result),
            "read the reply until the server closes, then parse it with lab::Reply::parse",
        ),
    }
}

#[test]
fn step4_a_refusal_is_returned_as_such() {
    let t = Transcript::new(STEP4);
    let server = TestServer::replying_after(19, |_| b"refused: more than 10 bytes\n".to_vec());
    let (_stream, mut worker) =
        requesting(server.addr, |s| lab::request(s, &mut &b"more than ten bytes"[..]));
    t.step("a test server answers once the 19 bytes of the request have arrived");
    t.step("called lab::request with \"more than ten bytes\"");
    expect_request(&t, &server, &mut worker, b"more than ten bytes");
    t.sent(
        b"refused: more than 10 bytes\n",
        "the test's server",
        "the client, then closed",
    );
    let result = reply_of(&t, &mut worker);
    t.check(
        matches!(result, Ok(lab::Reply::Refused { max_bytes: 10 })),
        "Ok(reply \"refused: more than 10 bytes\")",
        shown(&result),
        "a refusal is a reply like any other: parse it with lab::Reply::parse (the client binary \
         reports it)",
    );
}

#[test]
fn step4_a_server_that_closes_without_replying_is_unexpected_eof() {
    let t = Transcript::new(STEP4);
    let server = TestServer::replying_after(6, |_| Vec::new());
    let (_stream, mut worker) = requesting(server.addr, |s| lab::request(s, &mut &b"hello?"[..]));
    t.step("a test server reads the 6 bytes of the request");
    t.step("called lab::request with \"hello?\"");
    expect_request(&t, &server, &mut worker, b"hello?");
    t.step("the test's server closed without a word");
    let result = reply_of(&t, &mut worker);
    t.check(
        matches!(&result, Err(e) if e.kind() == io::ErrorKind::UnexpectedEof),
        "Err(UnexpectedEof)",
        shown(&result),
        "end of stream before any reply byte is no reply: UnexpectedEof",
    );
}

/// A valid reply line for `data` of exactly `len` bytes, newline included: the byte count is
/// padded with leading zeros, which `Reply::parse` accepts.
fn padded_reply(data: &[u8], len: usize) -> Vec<u8> {
    let plain = reply_line(data);
    let zeros = len - plain.len();
    format!(
        "received {}{} bytes, fnv1a64 {:016x}\n",
        "0".repeat(zeros),
        data.len(),
        fnv1a64(data)
    )
    .into_bytes()
}

#[test]
fn step4_a_reply_of_max_reply_bytes_is_accepted_one_more_is_invalid_data() {
    let t = Transcript::new(STEP4);
    let max = lab::MAX_REPLY;
    t.check(
        max == 256,
        "MAX_REPLY = 256",
        max,
        "MAX_REPLY is given: 256 bytes",
    );
    for len in [max - 1, max, max + 1] {
        let line = padded_reply(b"cap?", len);
        let answer = line.clone();
        let server = TestServer::replying_after(4, move |_| answer);
        let (_stream, mut worker) = requesting(server.addr, |s| lab::request(s, &mut &b"cap?"[..]));
        t.step("a test server answers once the 4 bytes of the request have arrived");
        t.step("called lab::request with \"cap?\"");
        expect_request(&t, &server, &mut worker, b"cap?");
        t.sent(&line, "the test's server", "the client, then closed");
        let result = reply_of(&t, &mut worker);
        if len <= max {
            t.check(
                matches!(&result, Ok(reply) if *reply == lab::Reply::Received(summary_of(b"cap?"))),
                format_args!(
                    "Ok({}): a reply of {len} bytes is within MAX_REPLY",
                    lab::Reply::Received(summary_of(b"cap?")).show()
                ),
                shown(&result),
                "MAX_REPLY (256) counts the whole line, newline included: a reply of 256 bytes or \
                 fewer is a reply; only a longer one is InvalidData",
            );
        } else {
            t.check(
                matches!(&result, Err(e) if e.kind() == io::ErrorKind::InvalidData),
                "Err(InvalidData): 257 bytes is one byte over MAX_REPLY",
                shown(&result),
                "read at most MAX_REPLY + 1 bytes, so that one byte too many shows, and refuse a \
                 reply longer than MAX_REPLY: reading only MAX_REPLY bytes cuts the line and accepts \
                 what is left",
            );
        }
    }
}

#[test]
fn step4_an_endless_reply_is_invalid_data() {
    let t = Transcript::new(STEP4);
    let listener = tcp_listener();
    let addr = listener
        .local_addr()
        .expect("test set-up: the listener's address");
    let (stop, stopped) = mpsc::channel::<()>();
    let _talker = thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        set_stream_timeouts(&stream);
        let _ = read_some(&stream, Some(13), NO_FIN);
        let chunk = [b'x'; 4096];
        for _ in 0..256 {
            if (&stream).write_all(&chunk).is_err() {
                break;
            }
        }
        // Keeps the connection open, as a server that never stops talking would.
        let _ = stopped.recv_timeout(Duration::from_secs(4));
    });
    t.step("a test server reads the 13 bytes of the request, then sends 1 MiB of \"xxxx...\" and keeps the connection open");
    let (_stream, mut worker) = requesting(addr, |s| lab::request(s, &mut &b"say something"[..]));
    t.step("called lab::request with \"say something\"");
    let limit = Duration::from_millis(3000);
    let result = worker.wait(limit);
    drop(stop);
    let Some(result) = result else {
        t.fail(
            "lab::request to return InvalidData once the reply passes MAX_REPLY bytes",
            format_args!("it was still reading after {} ms", limit.as_millis()),
            "cap the reply: read at most MAX_REPLY + 1 bytes (Read::take), so that a server that \
             never stops talking cannot make the client buffer without bound",
        );
    };
    t.step(format_args!("lab::request returned {}", shown(&result)));
    t.check(
        matches!(&result, Err(e) if e.kind() == io::ErrorKind::InvalidData),
        "Err(InvalidData)",
        shown(&result),
        "a reply longer than MAX_REPLY bytes is InvalidData",
    );
}

#[test]
fn step4_sends_non_utf8_bytes_unchanged() {
    let t = Transcript::new(STEP4);
    let server = TestServer::replying_after(NON_UTF8.len(), |request| reply_line(request).into_bytes());
    t.step(format_args!(
        "a test server answers once the {} bytes of the request have arrived",
        NON_UTF8.len()
    ));
    let (_stream, mut worker) = requesting(server.addr, |s| lab::request(s, &mut &NON_UTF8[..]));
    t.step(format_args!(
        "called lab::request with {} as input",
        sized(NON_UTF8)
    ));
    let why = "the input is bytes, not text: send them unchanged. Reading them into a String fails on \
               bytes that are not UTF-8 (InvalidData), and from_utf8_lossy replaces them with U+FFFD";
    // Its result first: a request that gave up never sent anything.
    let first = worker.wait(Duration::from_millis(500));
    if let Some(result) = &first {
        t.step(format_args!("lab::request returned {}", shown(result)));
        t.check(
            !matches!(result, Err(e) if e.kind() == io::ErrorKind::InvalidData),
            "the request sent, and its reply",
            shown(result),
            why,
        );
    }
    let (got, end) = server.request(&t, &mut worker);
    t.step(format_args!("the test's server received {}{end}", sized(&got)));
    t.check_bytes("what the server received", NON_UTF8, &got, why);
    let result = match first {
        Some(result) => result,
        None => reply_of(&t, &mut worker),
    };
    let expected = lab::Reply::Received(summary_of(NON_UTF8));
    t.check(
        matches!(&result, Ok(reply) if *reply == expected),
        format_args!("Ok({})", expected.show()),
        shown(&result),
        "read the reply until the server closes, then parse it with lab::Reply::parse",
    );
}

#[test]
fn step4_retries_an_input_read_after_interrupted() {
    let t = Transcript::new(STEP4);
    let data: Vec<u8> = NON_UTF8.repeat(100);
    let server = TestServer::replying_after(data.len(), |request| reply_line(request).into_bytes());
    let ops = [
        PartialOp::Err(io::ErrorKind::Interrupted),
        PartialOp::Limited(3),
        PartialOp::Err(io::ErrorKind::Interrupted),
        PartialOp::Limited(500),
        PartialOp::Err(io::ErrorKind::Interrupted),
    ];
    let input = PartialRead::new(Cursor::new(data.clone()), ops);
    t.step(format_args!(
        "called lab::request with {} as input, through a reader whose 1st, 3rd and 5th reads fail \
         with Interrupted",
        sized(&data)
    ));
    let (_stream, mut worker) = requesting(server.addr, move |s| {
        let mut input = input;
        lab::request(s, &mut input)
    });
    let why = "Interrupted from the input means \"try again\": io::copy retries it, and a copy loop of \
               your own must too";
    // Its result first: a request that gave up never half-closes.
    let first = worker.wait(Duration::from_millis(500));
    if let Some(result) = &first {
        t.step(format_args!("lab::request returned {}", shown(result)));
        t.check(
            !matches!(result, Err(e) if e.kind() == io::ErrorKind::Interrupted),
            "the request sent, and its reply",
            shown(result),
            why,
        );
    }
    expect_request(&t, &server, &mut worker, &data);
    let result = match first {
        Some(result) => result,
        None => reply_of(&t, &mut worker),
    };
    t.check(
        matches!(&result, Ok(reply) if *reply == lab::Reply::Received(summary_of(&data))),
        format_args!("Ok({})", lab::Reply::Received(summary_of(&data)).show()),
        shown(&result),
        why,
    );
}

#[cfg(unix)]
#[test]
fn step4_retries_socket_calls_interrupted_by_a_signal() {
    let t = Transcript::new(STEP4);
    let data = pattern(2 * 1024 * 1024);
    // The server starts reading LATE after lab::request has started, under signals.
    let (gate, gated) = mpsc::channel::<()>();
    let before_read = move || {
        let _ = gated.recv_timeout(CALL_LIMIT);
        thread::sleep(LATE);
    };
    let server = TestServer::start(Some(data.len()), before_read, LATE, IO_TIMEOUT, |request| {
        reply_line(request).into_bytes()
    });
    t.step(format_args!(
        "a test server waits {} ms before reading, reads the 2 MiB, waits {} ms more, then replies \
         and closes",
        LATE.as_millis(),
        LATE.as_millis()
    ));
    let input = data.clone();
    let stream = Arc::new(tcp_connect(server.addr));
    let theirs = Arc::clone(&stream);
    let mut worker = interrupted(&t, "lab::request", move || lab::request(&theirs, &mut &input[..]));
    let _ = gate.send(());
    t.step("called lab::request with 2 MiB as input, with SIGUSR1 sent to its thread every 20 ms");
    let why = "each signal makes a blocked write or read fail with Interrupted (Linux never restarts a \
               socket call that has a timeout): retry it. io::copy and read_to_end do; a loop of your \
               own must too";
    let (got, end) = server.request(&t, &mut worker);
    // A call that gave up on Interrupted never half-closed: that is the mistake to name.
    if worker.done()
        && let Some((Err(e), signals)) = &worker.result
        && e.kind() == io::ErrorKind::Interrupted
    {
        t.step(format_args!(
            "{signals} signals were sent; lab::request returned Err(Interrupted: {e})"
        ));
        t.fail(
            format_args!("Ok({})", lab::Reply::Received(summary_of(&data)).show()),
            format_args!("Err(Interrupted: {e})"),
            why,
        );
    }
    check_request(&t, &mut worker, &got, &end, &data);
    let Some((result, signals)) = worker.wait(CALL_LIMIT) else {
        t.fail(
            "lab::request to return the reply",
            "it was still running after the server replied and closed",
            why,
        );
    };
    t.step(format_args!(
        "{signals} signals were sent; lab::request returned {}",
        shown(&result)
    ));
    t.check(
        matches!(&result, Ok(reply) if *reply == lab::Reply::Received(summary_of(&data))),
        format_args!("Ok({})", lab::Reply::Received(summary_of(&data)).show()),
        shown(&result),
        why,
    );
    t.check(
        signals >= 2,
        "at least 2 signals",
        signals,
        "test set-up: the calls were not interrupted",
    );
}

#[test]
fn step4_experiment_half_close() {
    let t = Transcript::new(HALF_CLOSE);
    let report = experiment(&t, "half-close");
    let reads = report.outcomes("server", "read");
    t.check(
        reads == [Outcome::EndOfStream],
        "the server's reads end with end of stream (the client's half-close)",
        format_args!("{reads:?}; the report:\n{report}"),
        "request ends the request with shutdown(Write)",
    );
    let calls = report.calls("client", "request");
    t.check(
        matches!(&calls[..], [Ok(reply)] if reply.contains("received 37 bytes")),
        "request() returns the reply: received 37 bytes",
        format_args!("{calls:?}; the report:\n{report}"),
        "the reply comes back on the direction the client kept open",
    );
}

#[test]
fn step4_client_binary_sends_a_file_and_checks_the_reply() {
    let t = Transcript::new(STEP4);
    let data = pattern(2 * 1024 * 1024);
    let file = TempFile::new("step4.bin", &data);
    let server = TestServer::start(
        None,
        || {},
        Duration::ZERO,
        Duration::ZERO,
        |request| reply_line(request).into_bytes(),
    );
    let target = server.addr.to_string();
    let out = run_within(
        BIN,
        &[
            "client",
            "--server",
            &target,
            "--file",
            file.path(),
            "--timeout",
            "3000",
        ],
        RUN_LIMIT,
    );
    t.step(format_args!(
        "ran `client --server {target} --file FILE --timeout 3000` with 2 MiB (bytes 0..250 repeated): {}",
        out.status
    ));
    let (got, end) = server
        .requests
        .recv_timeout(NO_FIN + SLACK)
        .unwrap_or_else(|_| (Vec::new(), End::Quiet(Duration::ZERO)));
    t.step(format_args!(
        "the test's server received {} bytes{end}",
        got.len()
    ));
    t.check(
        got == data && end.is_eof(),
        "the whole file, then end of stream",
        format_args!("{} bytes{end} ({})", got.len(), first_difference(&got, &data)),
        "the client sends the file with your request, which half-closes after it",
    );
    let stdout = text(&out.stdout);
    t.check(
        out.status.success()
            && stdout.contains(&format!("reply: {}", reply_line(&data).trim_end()))
            && stdout.contains("intact"),
        "exit status 0, the reply and \"intact\" on stdout",
        format_args!(
            "{}, stdout {}, stderr {}",
            out.status,
            sized(&out.stdout),
            sized(&out.stderr)
        ),
        "the client prints the reply your request returned and compares it with what it sent",
    );
}

#[test]
fn step4_experiment_all_prints_every_scenario_and_the_table() {
    let t = Transcript::new(EXPERIMENTS);
    let out = run_within(BIN, &["experiment", "all"], RUN_LIMIT);
    t.step(format_args!("ran `experiment all`: {}", out.status));
    let stdout = text(&out.stdout);
    t.check(
        out.status.success(),
        "exit status 0",
        format_args!("{}; stderr: {}\n{stdout}", out.status, text(&out.stderr)),
        "`experiment all` needs steps 1 to 4; the error names the one that failed",
    );
    for name in lab::experiments::names() {
        t.check(
            stdout.contains(&format!("== {name}: ")),
            format_args!("the transcript of {name}"),
            format_args!("stdout:\n{stdout}"),
            "every scenario prints what each side did and observed",
        );
        t.check(
            stdout
                .lines()
                .any(|l| l.starts_with(name) && l.len() > name.len() + 2),
            format_args!("a table row for {name}"),
            format_args!("stdout:\n{stdout}"),
            "the summary table has one row per scenario",
        );
    }
    for seen in [
        "Ok(0) (end of stream)",
        "Err(ConnectionReset) (reset)",
        "Err(BrokenPipe) (broken pipe)",
        "observed on this machine",
    ] {
        t.check(
            stdout.contains(seen),
            format_args!("{seen:?} somewhere in the output"),
            format_args!("stdout:\n{stdout}"),
            "the scenarios show end of stream, a reset and a broken pipe through your classify",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Step 5: the server's side

fn config() -> lab::ServerConfig {
    lab::ServerConfig {
        idle_timeout: Some(IO_TIMEOUT),
        message_timeout: Some(LONG_MESSAGE),
        drain: IO_TIMEOUT,
        max_bytes: lab::DEFAULT_MAX_BYTES,
        max_connections: None,
    }
}

/// Runs `lab::serve_connection` on the server end of a new pair, on a worker, keeping its error
/// whole (its kind, and whether it is the message timeout's).
fn serving(config: lab::ServerConfig) -> (TcpStream, Worker<io::Result<lab::Served>>) {
    let (client, server) = tcp_pair();
    let worker = Worker::spawn("lab::serve_connection", move || {
        lab::serve_connection(server, &config)
    });
    (client, worker)
}

/// Sends `data` on `client`, half-closes, and reads the reply until the connection ends,
/// recording each step.
fn upload(
    t: &Transcript,
    client: &TcpStream,
    worker: &mut Worker<io::Result<lab::Served>>,
    data: &[u8],
) -> (Vec<u8>, End) {
    match (&*client).write_all(data) {
        Ok(()) => t.sent(data, "the client", "lab::serve_connection"),
        Err(e) => t.step(format_args!(
            "the client's write of {} bytes failed: {e}",
            data.len()
        )),
    }
    match client.shutdown(Shutdown::Write) {
        Ok(()) => t.step("the client half-closed (its FIN: the end of the request)"),
        Err(e) => t.step(format_args!("the client's half-close failed: {e}")),
    }
    let (reply, end) = worker.read(client, None, QUIET);
    t.step(format_args!("the client read {}", arrived(&reply, &end)));
    (reply, end)
}

/// Why `got` is not the reply owed for `data`, from what it says.
fn wrong_reply(got: &[u8], data: &[u8]) -> String {
    let sent = data.len() as u64;
    match lab::Reply::parse(got) {
        Some(lab::Reply::Received(s)) if s.bytes > sent => format!(
            "it counts {} bytes, more than the {sent} sent: summary.update(&buf) counts the whole \
             buffer; count only &buf[..n], the n bytes this read returned",
            s.bytes
        ),
        Some(lab::Reply::Received(s)) if s.bytes < sent => format!(
            "it counts {} of the {sent} bytes sent: the reply went out before the end of the \
             request. A request is every byte until the client's half-close: read until Ok(0), as \
             one read returns only what has arrived so far",
            s.bytes
        ),
        Some(lab::Reply::Received(_)) => "the count is right but the checksum is not: bytes were \
                                          counted out of order, twice, or from the wrong part of \
                                          the buffer"
            .to_owned(),
        Some(lab::Reply::Refused { max_bytes }) => format!(
            "the request ({sent} bytes) is not over max_bytes ({max_bytes}): refuse only once more \
             than max_bytes bytes have arrived"
        ),
        None if got.is_empty() => "no reply at all: write reply.to_line() before closing".to_owned(),
        None => "not a reply line: write reply.to_line(), whole".to_owned(),
    }
}

/// Waits for `lab::serve_connection` to return after its connection ended.
fn served(t: &Transcript, worker: &mut Worker<io::Result<lab::Served>>) -> io::Result<lab::Served> {
    let Some(result) = worker.wait(CALL_LIMIT) else {
        t.fail(
            "lab::serve_connection to return once the connection had ended",
            "it was still running",
            "after the reply, orderly_close drains until the client's end of stream, which has \
             arrived: return",
        );
    };
    t.step(format_args!("lab::serve_connection returned {}", shown(&result)));
    result
}

#[test]
fn step5_replies_with_count_and_checksum_then_closes_in_order() {
    let t = Transcript::new(PROTOCOL);
    let data = pattern(1024 * 1024 + 3);
    let (client, mut worker) = serving(config());
    t.step("lab::serve_connection serves the server's end (idle 5000 ms, message timeout 10 000 ms, drain 5000 ms)");
    let (reply, end) = upload(&t, &client, &mut worker, &data);
    t.check_bytes(
        "the reply",
        reply_line(&data).as_bytes(),
        &reply,
        wrong_reply(&reply, &data),
    );
    t.check(
        end.is_eof(),
        "the reply, then end of stream",
        arrived(&reply, &end),
        "close with your orderly_close: shutdown(Write), drain, close. A reset here means the close \
         was abortive (never the way to end a normal exchange) or left bytes unread",
    );
    let result = served(&t, &mut worker);
    let expected = lab::Served {
        reply: lab::Reply::Received(summary_of(&data)),
        drained: 0,
    };
    t.check(
        matches!(&result, Ok(s) if *s == expected),
        format_args!("Ok({})", expected.show()),
        shown(&result),
        "serve_connection returns the reply it sent and what orderly_close drained",
    );
}

#[test]
fn step5_replies_only_after_the_end_of_stream() {
    let t = Transcript::new(PROTOCOL);
    let (client, mut worker) = serving(config());
    t.step("lab::serve_connection serves the server's end");
    (&client)
        .write_all(NON_UTF8)
        .expect("test set-up: the client's first write");
    t.sent(
        NON_UTF8,
        "the client",
        "lab::serve_connection, without half-closing",
    );
    let wait = Duration::from_millis(500);
    let (early, end) = worker.read(&client, None, wait);
    t.step(format_args!(
        "waited {} ms: {}",
        wait.as_millis(),
        arrived(&early, &end)
    ));
    t.check(
        early.is_empty() && matches!(end, End::Quiet(_)),
        "nothing yet: the request has not ended (no half-close yet)",
        arrived(&early, &end),
        "a request is every byte until the client's half-close: read until end of stream (Ok(0)) \
         before replying; one read returns whatever has arrived so far, not the whole request",
    );
    let rest = b", and the rest \xff\xfe";
    let (reply, end) = upload(&t, &client, &mut worker, rest);
    let all = [NON_UTF8, &rest[..]].concat();
    t.check_bytes(
        "the reply",
        reply_line(&all).as_bytes(),
        &reply,
        wrong_reply(&reply, &all),
    );
    t.check(
        end.is_eof(),
        "the reply, then end of stream",
        arrived(&reply, &end),
        "close with your orderly_close",
    );
    let result = served(&t, &mut worker);
    t.check(
        matches!(&result, Ok(s) if s.reply == lab::Reply::Received(summary_of(&all))),
        format_args!(
            "Ok(Served {{ reply \"{}\", .. }})",
            lab::Reply::Received(summary_of(&all))
        ),
        shown(&result),
        "serve_connection returns the reply it sent",
    );
}

#[test]
fn step5_an_empty_request_gets_a_reply() {
    let t = Transcript::new(PROTOCOL);
    let (client, mut worker) = serving(config());
    t.step("lab::serve_connection serves the server's end");
    let (reply, end) = upload(&t, &client, &mut worker, b"");
    t.check_bytes(
        "the reply",
        b"received 0 bytes, fnv1a64 cbf29ce484222325\n",
        &reply,
        "an empty request is a request: end of stream at once is a request of 0 bytes, whose \
         checksum is the offset basis",
    );
    t.check(
        end.is_eof(),
        "the reply, then end of stream",
        arrived(&reply, &end),
        "close with your orderly_close",
    );
}

#[test]
fn step5_refuses_a_request_over_max_bytes_and_drains_the_rest() {
    // More than the socket buffers hold, so the client is still sending when the server refuses.
    const LEN: usize = 16 * 1024 * 1024;
    let t = Transcript::new(ORDERLY);
    let small = lab::ServerConfig {
        max_bytes: 1000,
        ..config()
    };
    let (client, mut worker) = serving(small);
    t.step("lab::serve_connection serves the server's end with max_bytes 1000");
    let sender = client
        .try_clone()
        .expect("test set-up: clone the client's stream");
    let writer = thread::spawn(move || {
        let wrote = (&sender).write_all(&pattern(LEN));
        let _ = sender.shutdown(Shutdown::Write);
        wrote
    });
    t.step("the client writes 16 MiB (bytes 0..250 repeated), then half-closes, reading meanwhile");
    let (reply, end) = worker.read(&client, None, QUIET);
    let wrote = writer.join().expect("the test's writer thread");
    t.step(format_args!("the client's 16 MiB write: {}", shown(&wrote)));
    t.step(format_args!("the client read {}", arrived(&reply, &end)));
    // A RST after the FIN leaves reads at end of stream on Linux, but is pending on the socket.
    let late = if end.is_eof() {
        pending_reset(&client, Duration::from_millis(100))
    } else {
        None
    };
    if let Some(kind) = late {
        t.step(format_args!(
            "then a RST arrived (the socket's pending error: {kind:?})"
        ));
    }
    t.check(
        wrote.is_ok() && !matches!(end, End::Reset(_)) && late.is_none(),
        "the client's writes succeed, and no reset",
        format_args!(
            "the write: {}; the read: {}{}",
            shown(&wrote),
            arrived(&reply, &end),
            if late.is_some() { ", then a RST" } else { "" }
        ),
        "the server refuses after 1000 bytes while the client is still sending: its orderly close \
         must drain the rest (read and discard until the client's end of stream), as closing with \
         unread data sends a RST, which fails the client's writes and reads",
    );
    t.check_bytes(
        "the reply",
        b"refused: more than 1000 bytes\n",
        &reply,
        "once more than max_bytes have arrived, stop counting and reply Reply::Refused",
    );
    t.check(
        end.is_eof(),
        "the refusal, then end of stream",
        arrived(&reply, &end),
        "close with your orderly_close",
    );
    let result = served(&t, &mut worker);
    t.check(
        matches!(&result, Ok(lab::Served { reply: lab::Reply::Refused { max_bytes: 1000 }, drained }) if *drained > 0),
        "Ok(Served { reply \"refused: more than 1000 bytes\", drained more than 0 bytes })",
        shown(&result),
        "serve_connection returns the refusal and what its orderly close drained",
    );
}

#[test]
fn step5_max_bytes_is_the_longest_request_accepted() {
    let t = Transcript::new(PROTOCOL);
    for len in [999, 1000, 1001] {
        let data = pattern(len);
        let small = lab::ServerConfig {
            max_bytes: 1000,
            ..config()
        };
        let (client, mut worker) = serving(small);
        t.step("lab::serve_connection serves the server's end with max_bytes 1000");
        let (reply, _) = upload(&t, &client, &mut worker, &data);
        if len <= 1000 {
            t.check_bytes(
                "the reply",
                reply_line(&data).as_bytes(),
                &reply,
                "max_bytes is the longest request accepted: a request of exactly max_bytes (1000) \
                 bytes, or fewer, is received. Refuse only once more than max_bytes have arrived \
                 (summary.bytes > max_bytes)",
            );
        } else {
            t.check_bytes(
                "the reply",
                b"refused: more than 1000 bytes\n",
                &reply,
                "1001 bytes is one over max_bytes (1000): refused",
            );
        }
        let _ = served(&t, &mut worker);
    }
}

#[test]
fn step5_a_silent_client_is_dropped_after_the_idle_timeout() {
    let t = Transcript::new(STEP5);
    let idle = Duration::from_millis(300);
    let short = lab::ServerConfig {
        idle_timeout: Some(idle),
        ..config()
    };
    let started = Instant::now();
    let (_client, mut worker) = serving(short);
    t.step("lab::serve_connection serves the server's end with idle_timeout 300 ms (message timeout 10 000 ms); the client sends nothing");
    let Some(result) = worker.wait(idle + SLACK) else {
        t.fail(
            "lab::serve_connection to give up after the 300 ms idle timeout",
            format_args!("it was still waiting after {} ms", started.elapsed().as_millis()),
            "set the read timeout before each read: the idle timeout, or the time left until the \
             message deadline when that is shorter; without it a silent client holds the server \
             until the message timeout, or forever",
        );
    };
    t.step(format_args!(
        "lab::serve_connection returned {} after {} ms",
        shown(&result),
        started.elapsed().as_millis()
    ));
    t.check(
        matches!(&result, Err(e) if is_timeout(e) && lab::message_timeout_of(e).is_none()),
        "the read's timeout error (WouldBlock or TimedOut), not the message timeout's",
        shown(&result),
        "a silent client meets the idle timeout (300 ms) long before the message deadline \
         (10 000 ms): return the read's error as it is",
    );
}

#[cfg(unix)]
#[test]
fn step5_retries_reads_interrupted_by_a_signal() {
    let t = Transcript::new(STEP5);
    let (client, server) = tcp_pair();
    let config = config();
    let mut worker = interrupted(&t, "lab::serve_connection", move || {
        lab::serve_connection(server, &config)
    });
    t.step("lab::serve_connection serves the server's end, with SIGUSR1 sent to its thread every 20 ms");
    late_upload(&t, &client, "lab::serve_connection");
    let (reply, end) = worker.read(&client, None, QUIET);
    t.step(format_args!("the client read {}", arrived(&reply, &end)));
    let why = "each signal makes the blocked read fail with Interrupted (Linux never restarts a socket \
               call that has a timeout): Interrupted is neither the end of the request nor a failure of \
               the connection, so read again";
    let Some((result, signals)) = worker.wait(CALL_LIMIT) else {
        t.fail(
            "lab::serve_connection to return after the exchange",
            "it was still running",
            why,
        );
    };
    t.step(format_args!(
        "{signals} signals were sent; lab::serve_connection returned {}",
        shown(&result)
    ));
    t.check(
        matches!(&result, Ok(s) if s.reply == lab::Reply::Received(summary_of(NON_UTF8))),
        format_args!(
            "Ok(Served {{ reply \"{}\", .. }})",
            lab::Reply::Received(summary_of(NON_UTF8))
        ),
        shown(&result),
        why,
    );
    t.check_bytes("the reply", reply_line(NON_UTF8).as_bytes(), &reply, why);
    t.check(
        signals >= 2,
        "at least 2 signals",
        signals,
        "test set-up: the read was not interrupted",
    );
}

#[test]
fn step5_binaries_transfer_5_mib_intact() {
    let t = Transcript::new(PROTOCOL);
    let data = pattern(5 * 1024 * 1024);
    let file = TempFile::new("step5.bin", &data);
    let mut server = ServerProcess::start(BIN, &["server", "--port", "0"]);
    let target = server.addr().to_string();
    t.step(format_args!("started `server --port 0`: listening on {target}"));
    let out = run_within(
        BIN,
        &[
            "client",
            "--server",
            &target,
            "--file",
            file.path(),
            "--timeout",
            "3000",
        ],
        RUN_LIMIT,
    );
    t.step(format_args!(
        "ran `client --server {target} --file FILE --timeout 3000` with 5 MiB (bytes 0..250 repeated): {}",
        out.status
    ));
    let stdout = text(&out.stdout);
    t.check(
        out.status.success() && stdout.contains(reply_line(&data).trim_end()) && stdout.contains("intact"),
        format_args!(
            "exit status 0, {:?} and \"intact\" on stdout",
            reply_line(&data).trim_end()
        ),
        format_args!(
            "{}, stdout {}, stderr {}{}",
            out.status,
            sized(&out.stdout),
            sized(&out.stderr),
            server.log()
        ),
        "the client sends the file and half-closes (your request); the server reads to the end, \
         replies with the count and checksum and closes in order (your serve_connection)",
    );
    await_log(
        &t,
        &mut server,
        "received 5242880 bytes",
        1,
        Duration::from_secs(5),
    );
}

#[test]
fn step5_server_binary_survives_a_client_that_resets() {
    let t = Transcript::new(FIN_RST);
    let mut server = ServerProcess::start(BIN, &["server", "--port", "0"]);
    t.step(format_args!(
        "started `server --port 0`: listening on {}",
        server.addr()
    ));
    let rude = tcp_connect(server.addr());
    let me = rude.local_addr().expect("test set-up: local address").to_string();
    (&rude)
        .write_all(&[b'r'; 1000])
        .expect("test set-up: send part of a request");
    t.sent(&[b'r'; 1000], &me, "the server");
    await_log(
        &t,
        &mut server,
        &format!("{me}: connected"),
        1,
        Duration::from_secs(5),
    );
    reset(rude);
    t.step("the client reset the connection (SO_LINGER 0, close) in the middle of its request");
    let lines = await_log(&t, &mut server, &me, 2, Duration::from_secs(5));
    t.check(
        lines[1].contains("reset"),
        "a log line saying the connection ended with a reset",
        format_args!("{lines:?}"),
        "serve_connection returns the read's ConnectionReset, which the server logs through your \
         classify as a reset",
    );
    let next = tcp_connect(server.addr());
    let wrote = (&next)
        .write_all(b"after the reset")
        .and_then(|()| next.shutdown(Shutdown::Write));
    t.step(format_args!(
        "a second client sent \"after the reset\" and half-closed: {}",
        shown(&wrote)
    ));
    let (reply, end) = read_some(&next, None, QUIET);
    t.step(format_args!("it read {}", arrived(&reply, &end)));
    t.check(
        reply == reply_line(b"after the reset").as_bytes() && end.is_eof(),
        format_args!(
            "{}, then end of stream",
            sized(reply_line(b"after the reset").as_bytes())
        ),
        format_args!("{}{}", arrived(&reply, &end), server.log()),
        "a connection's error ends that connection only: the server serves the next client",
    );
}

#[test]
fn step5_server_binary_refuses_an_oversized_request_yet_the_client_reads_the_refusal() {
    let t = Transcript::new(ORDERLY);
    // More than the socket buffers hold, so the client is still sending when the server closes.
    let data = pattern(24 * 1024 * 1024);
    let file = TempFile::new("step5-big.bin", &data);
    let server = ServerProcess::start(
        BIN,
        &["server", "--port", "0", "--max-bytes", "1000", "--drain", "10000"],
    );
    let target = server.addr().to_string();
    t.step(format_args!(
        "started `server --port 0 --max-bytes 1000 --drain 10000`: listening on {target}"
    ));
    let out = run_within(
        BIN,
        &["client", "--server", &target, "--file", file.path()],
        RUN_LIMIT,
    );
    t.step(format_args!(
        "ran `client --server {target} --file FILE` with 24 MiB: {}",
        out.status
    ));
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    t.check(
        !out.status.success()
            && stdout.contains("reply: refused: more than 1000 bytes")
            && stderr.contains("refused"),
        "exit status 1, \"reply: refused: more than 1000 bytes\" on stdout, an error line saying so",
        format_args!(
            "{}, stdout {}, stderr {}{}",
            out.status,
            sized(&out.stdout),
            sized(&out.stderr),
            server.log()
        ),
        "the server refuses after 1000 bytes while the client is still sending: its orderly close \
         drains the rest, so the client can finish sending and read the refusal (without the \
         drain, the client's writes fail with a reset)",
    );
}

/// The idle timeout of the trickling tests: 1000 ms, far longer than the 100 ms between pieces.
const TRICKLE_IDLE: Duration = Duration::from_millis(1000);

/// The message timeout of the trickling tests: 600 ms.
const TRICKLE_MESSAGE: Duration = Duration::from_millis(600);

/// What a trickling client saw.
struct Trickle {
    /// When the server ended the connection (end of stream, a reset, a failed write), counted
    /// from the first piece; `None`: the connection was still open at the limit.
    closed: Option<Duration>,
    /// How many bytes the client sent.
    sent: usize,
    /// What it received: nothing is right, as the upload never ended.
    received: Vec<u8>,
    /// How the connection ended, in words.
    end: String,
}

/// Sends `pieces` pieces of 3 bytes (`abc`) on `stream`, one every 100 ms, never half-closing,
/// and watches until the server ends the connection or `limit` has passed since the first piece.
/// The pacing is a 100 ms read timeout, which also notices the end; `check` runs between pieces
/// (a server thread's check, so that a panic there fails the test at once).
fn trickle(stream: &TcpStream, pieces: usize, limit: Duration, mut check: impl FnMut()) -> Trickle {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("test set-up: read timeout");
    let started = Instant::now();
    let mut seen = Trickle {
        closed: None,
        sent: 0,
        received: Vec::new(),
        end: "still open".to_owned(),
    };
    let mut buf = [0u8; 512];
    let mut left = pieces;
    while started.elapsed() < limit {
        if left > 0 {
            left -= 1;
            if let Err(e) = (&*stream).write_all(b"abc") {
                seen.closed = Some(started.elapsed());
                seen.end = format!("a write failed: {e}");
                return seen;
            }
            seen.sent += 3;
        }
        match (&*stream).read(&mut buf) {
            Ok(0) => {
                seen.closed = Some(started.elapsed());
                seen.end = "end of stream".to_owned();
                return seen;
            }
            Ok(n) => seen.received.extend_from_slice(&buf[..n]),
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                seen.closed = Some(started.elapsed());
                seen.end = format!("a read failed: {e}");
                return seen;
            }
        }
        check();
    }
    seen
}

/// Checks that `result` is the error of a connection cut off by the message timeout `limit`.
fn expect_message_timeout(t: &Transcript, result: Option<io::Result<lab::Served>>, limit: Duration) {
    let Some(result) = result else {
        t.fail(
            "lab::serve_connection to return once it had ended the connection",
            "it was still running",
            "the message timeout ends the connection with message_timed_out(limit)",
        );
    };
    t.step(format_args!("lab::serve_connection returned {}", shown(&result)));
    let error = match result {
        Err(e) => e,
        Ok(served) => t.fail(
            format_args!("the error of message_timed_out({} ms)", limit.as_millis()),
            format_args!("Ok({})", served.show()),
            "an upload cut off by the message timeout ends the connection with an error, not a reply",
        ),
    };
    t.check(
        error.kind() == io::ErrorKind::TimedOut && lab::message_timeout_of(&error) == Some(limit),
        format_args!(
            "the error of message_timed_out({} ms): kind TimedOut, holding a MessageTimeout",
            limit.as_millis()
        ),
        format_args!(
            "{error:?} (kind {:?}, message timeout {:?})",
            error.kind(),
            lab::message_timeout_of(&error)
        ),
        "a read that timed out while the time left was the smaller timeout is the message timeout: \
         return message_timed_out(limit), so that the log can tell it from an idle timeout, not the \
         read's WouldBlock",
    );
}

#[test]
fn step5_a_trickled_upload_is_cut_off_by_the_message_timeout() {
    let t = Transcript::new(SLOW);
    let config = lab::ServerConfig {
        idle_timeout: Some(TRICKLE_IDLE),
        message_timeout: Some(TRICKLE_MESSAGE),
        ..config()
    };
    let (client, mut worker) = serving(config);
    t.step("lab::serve_connection serves the server's end with idle_timeout 1000 ms, message_timeout 600 ms");
    let limit = TRICKLE_MESSAGE + SLACK;
    let seen = trickle(&client, usize::MAX, limit, || {
        worker.done();
    });
    t.step(format_args!(
        "the client sent 3 bytes every 100 ms and never half-closed: {} bytes; after {} ms the \
         connection was {}",
        seen.sent,
        seen.closed.unwrap_or(limit).as_millis(),
        seen.end
    ));
    t.check(
        seen.closed.is_some(),
        "the server ends the connection once the 600 ms message timeout has passed",
        format_args!("the connection was still open after {} ms", limit.as_millis()),
        "the idle timeout bounds one read, not the whole upload, and restarts with every byte: take \
         one deadline before the first read and give each read the timeout min(idle, time left), \
         not a new deadline per read",
    );
    t.check(
        seen.received.is_empty(),
        "no reply: the upload never ended",
        format_args!(
            "{} before the connection ended ({})",
            sized(&seen.received),
            seen.end
        ),
        "an upload that never ended gets no reply: the message timeout ends the connection",
    );
    expect_message_timeout(&t, worker.wait(SLACK), TRICKLE_MESSAGE);
}

#[test]
fn step5_a_stalled_upload_ends_at_the_deadline_not_after_the_idle_timeout() {
    let t = Transcript::new(SLOW);
    let config = lab::ServerConfig {
        idle_timeout: Some(Duration::from_millis(4000)),
        message_timeout: Some(TRICKLE_MESSAGE),
        ..config()
    };
    let (client, mut worker) = serving(config);
    t.step("lab::serve_connection serves the server's end with idle_timeout 4000 ms, message_timeout 600 ms");
    let limit = TRICKLE_MESSAGE + SLACK;
    let seen = trickle(&client, 1, limit, || {
        worker.done();
    });
    t.step(format_args!(
        "the client sent 3 bytes, then nothing; after {} ms the connection was {}",
        seen.closed.unwrap_or(limit).as_millis(),
        seen.end
    ));
    t.check(
        seen.closed.is_some(),
        "the server ends the connection at the 600 ms deadline",
        format_args!("the connection was still open after {} ms", limit.as_millis()),
        "a read must not wait past the deadline: give it the timeout min(idle, time left), not the \
         idle timeout alone, and do not look at the clock only after a read returns",
    );
    expect_message_timeout(&t, worker.wait(SLACK), TRICKLE_MESSAGE);
}

#[test]
fn step5_no_time_left_is_the_message_timeout_not_invalid_input() {
    let t = Transcript::new(SLOW);
    let config = lab::ServerConfig {
        message_timeout: Some(Duration::ZERO),
        ..config()
    };
    let (client, mut worker) = serving(config);
    t.step("lab::serve_connection serves the server's end with message_timeout 0 ms: no time at all");
    let (got, end) = worker.read(&client, None, QUIET);
    t.step(format_args!("the client read {}", arrived(&got, &end)));
    let Some(result) = worker.wait(CALL_LIMIT) else {
        t.fail(
            "lab::serve_connection to give up at once",
            "it was still running",
            "no time is left before the first read: fail with message_timed_out(limit)",
        );
    };
    t.step(format_args!("lab::serve_connection returned {}", shown(&result)));
    t.check(
        matches!(&result, Err(e) if lab::message_timeout_of(e) == Some(Duration::ZERO)),
        "the error of message_timed_out(0 ms)",
        shown(&result),
        "check for time left before setting it as the timeout: with none left, fail with \
         message_timed_out(limit). A zero socket timeout is an error (InvalidInput), not \"at once\"",
    );
}

#[test]
fn step5_the_drain_after_a_refusal_is_not_counted_in_the_message_timeout() {
    let t = Transcript::new(SLOW);
    let config = lab::ServerConfig {
        message_timeout: Some(TRICKLE_MESSAGE),
        max_bytes: 1000,
        ..config()
    };
    let (client, mut worker) = serving(config);
    t.step("lab::serve_connection serves the server's end with max_bytes 1000, message_timeout 600 ms, drain 5000 ms");
    let started = Instant::now();
    let mut wrote = (&client).write_all(&pattern(2000));
    t.step(format_args!(
        "the client sent 2000 bytes (refused past 1000): {}",
        shown(&wrote)
    ));
    let mut sent = 2000;
    while wrote.is_ok() && started.elapsed() < Duration::from_millis(1200) {
        thread::sleep(Duration::from_millis(100));
        wrote = (&client).write_all(&[b'd'; 100]);
        if wrote.is_ok() {
            sent += 100;
        }
        worker.done();
    }
    let ended = started.elapsed().as_millis();
    if wrote.is_ok() {
        wrote = client.shutdown(Shutdown::Write);
    }
    t.step(format_args!(
        "it went on sending 100 bytes every 100 ms, {sent} bytes in all, then half-closed after \
         {ended} ms: {}",
        shown(&wrote)
    ));
    let (reply, end) = worker.read(&client, None, QUIET);
    t.step(format_args!("the client read {}", arrived(&reply, &end)));
    t.check(
        wrote.is_ok() && end.is_eof(),
        "the client's writes succeed, and its read ends with end of stream",
        format_args!(
            "the writes: {} after {ended} ms; the read: {}",
            shown(&wrote),
            arrived(&reply, &end)
        ),
        "the message timeout ends with the reply: the drain that follows has its own deadline, \
         config.drain (5000 ms here), and a refused client may rightly still be sending then. Give \
         orderly_close config.drain, not what is left of the upload's time",
    );
    t.check_bytes(
        "the reply",
        b"refused: more than 1000 bytes\n",
        &reply,
        "once more than max_bytes have arrived, reply Reply::Refused at once",
    );
    let result = served(&t, &mut worker);
    t.check(
        matches!(&result, Ok(s) if s.drained > 0),
        "Ok(Served { reply \"refused: more than 1000 bytes\", drained more than 0 bytes })",
        shown(&result),
        "serve_connection returns the refusal and what its orderly close drained",
    );
}

#[test]
fn step5_an_upload_within_the_message_timeout_is_served() {
    let t = Transcript::new(SLOW);
    // A message timeout shorter than the idle timeout: the time left sets every read's timeout.
    let config = lab::ServerConfig {
        idle_timeout: Some(IO_TIMEOUT),
        message_timeout: Some(Duration::from_millis(3000)),
        ..config()
    };
    let (client, mut worker) = serving(config);
    t.step(
        "lab::serve_connection serves the server's end with idle_timeout 5000 ms, message_timeout 3000 ms",
    );
    let data = pattern(1000);
    let started = Instant::now();
    let mut wrote = Ok(());
    for piece in data.chunks(200) {
        wrote = (&client).write_all(piece);
        if wrote.is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(100));
        worker.done();
    }
    let wrote = wrote.and_then(|()| client.shutdown(Shutdown::Write));
    t.step(format_args!(
        "the client sent 1000 bytes in 5 pieces 100 ms apart and half-closed after {} ms: {}",
        started.elapsed().as_millis(),
        shown(&wrote)
    ));
    let (reply, end) = worker.read(&client, None, QUIET);
    t.step(format_args!("the client read {}", arrived(&reply, &end)));
    t.check(
        wrote.is_ok() && reply == reply_line(&data).as_bytes(),
        format_args!("the reply {}", sized(reply_line(&data).as_bytes())),
        arrived(&reply, &end),
        "an upload that ends within the message timeout is served: the deadline ends the \
         connection only once no time is left, even when the time left is shorter than the idle \
         timeout",
    );
    let result = served(&t, &mut worker);
    let expected = lab::Served {
        reply: lab::Reply::Received(summary_of(&data)),
        drained: 0,
    };
    t.check(
        matches!(&result, Ok(s) if *s == expected),
        format_args!("Ok({})", expected.show()),
        shown(&result),
        "serve_connection returns the reply it sent",
    );
}

#[test]
fn step5_server_binary_serves_the_next_client_while_one_trickles() {
    let t = Transcript::new(SLOW);
    let mut server = ServerProcess::start(
        BIN,
        &[
            "server",
            "--port",
            "0",
            "--idle-timeout",
            "1000",
            "--message-timeout",
            "600",
        ],
    );
    t.step(format_args!(
        "started `server --port 0 --idle-timeout 1000 --message-timeout 600`: listening on {}",
        server.addr()
    ));
    let trickler = tcp_connect(server.addr());
    let me = trickler
        .local_addr()
        .expect("test set-up: local address")
        .to_string();
    // The trickler is first in the backlog, so the iterative server serves it first.
    let mut trickling = Worker::spawn("the trickling client", move || {
        trickle(&trickler, usize::MAX, Duration::from_secs(4), || {})
    });
    t.step(format_args!(
        "a first client ({me}) trickles its upload, 3 bytes every 100 ms, never half-closing"
    ));
    let started = Instant::now();
    let next = TcpStream::connect_timeout(&server.addr(), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("test set-up: a second client cannot connect: {e}{}", server.log()));
    // Less than the trickler's 4 s, so that a server still busy with it fails here.
    let wait = Duration::from_millis(3500);
    next.set_write_timeout(Some(IO_TIMEOUT))
        .expect("test set-up: write timeout");
    let sent = (&next)
        .write_all(b"my turn")
        .and_then(|()| next.shutdown(Shutdown::Write));
    t.step(format_args!(
        "a second client sent \"my turn\" and half-closed: {}",
        shown(&sent)
    ));
    let (reply, end) = read_some(&next, None, wait);
    let waited = started.elapsed().as_millis();
    t.step(format_args!(
        "after {waited} ms it had read {}",
        arrived(&reply, &end)
    ));
    let expected = reply_line(b"my turn");
    let why = if matches!(end, End::Quiet(_)) {
        "the server kept a trickling upload far longer than the 600 ms message timeout: the idle \
         timeout bounds one read, not the whole upload"
    } else {
        "once the trickler is cut off, the next client is served"
    };
    t.check(
        sent.is_ok() && reply == expected.as_bytes(),
        format_args!("its reply {}", sized(expected.as_bytes())),
        format_args!("{}{}", arrived(&reply, &end), server.log()),
        why,
    );
    let Some(seen) = trickling.wait(Duration::from_secs(5)) else {
        t.fail(
            "the trickling client to finish",
            "it was still running",
            "test set-up",
        );
    };
    t.check(
        seen.closed.is_some() && seen.received.is_empty(),
        "the trickler's connection ended, without a reply",
        format_args!(
            "it ended after {:?} ({}), having received {}",
            seen.closed,
            seen.end,
            sized(&seen.received)
        ),
        "the message timeout ends a trickling upload with no reply",
    );
    let lines = await_log(&t, &mut server, &me, 2, Duration::from_secs(5));
    t.check(
        lines
            .iter()
            .any(|l| l.contains("took longer than the message timeout (600 ms)")),
        "a log line saying that \"the upload took longer than the message timeout (600 ms)\"",
        format_args!("{lines:?}"),
        "the trickler's connection ends with the error of message_timed_out, not an idle timeout's",
    );
}
