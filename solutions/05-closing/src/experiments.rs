//! The experiments behind `experiment <NAME>|all`, given complete.
//!
//! Each scenario sets up a connection on loopback (`127.0.0.1`, ephemeral ports only), makes one
//! side close, shut down or die in some way, and records in a [`Report`] what each side did and
//! what it observed. Every read and write result goes through your [`classify`], and the
//! scenarios call your [`orderly_close`], [`abortive_close`] and [`request`], so the reports are
//! only as right as your steps. Every socket has a 5000 ms timeout; nothing waits forever.
//!
//! The observations are those of the machine that runs them: Linux, macOS and Windows differ on
//! several, and each report says how ([`Report::note`]).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use thiserror::Error;

use crate::{CHUNK, Outcome, Reply, Summary, abortive_close, classify, is_timeout, orderly_close, request};

/// Read and write timeout of every socket in the experiments: 5000 ms.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// How many bytes the in-flight scenarios write before the reader reads any: up to 1 MiB (less
/// if the socket buffers fill up first).
pub const IN_FLIGHT: usize = 1024 * 1024;

/// How long a write may wait for room in the socket buffers while filling them: 500 ms.
const FILL_TIMEOUT: Duration = Duration::from_millis(500);

/// How long the `process-exit` child lives at most, should nobody kill it: 30 s.
const CHILD_LIFETIME: Duration = Duration::from_secs(30);

/// What the experiments need from outside: the path of this program, which the `process-exit`
/// scenario starts as its child (`<exe> child --server ADDR`).
#[derive(Debug, Clone)]
pub struct Context {
    /// This program's executable (`std::env::current_exe()`, or a test's `CARGO_BIN_EXE_...`).
    pub exe: PathBuf,
}

/// Why an experiment could not run (not what it observed: errors it observes are in the report).
#[derive(Debug, Error)]
pub enum ExperimentError {
    /// No scenario has this name.
    #[error("there is no experiment `{name}`; try `all` or one of: {}", names().join(", "))]
    Unknown {
        /// The name asked for.
        name: String,
    },
    /// Setting up the scenario failed (a socket, a thread, the child process).
    #[error("{what}")]
    Setup {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// A side of the scenario panicked, typically in a `todo!()` of a step not done yet.
    #[error("the {side} panicked: {message}")]
    Panicked {
        /// Which side.
        side: &'static str,
        /// The panic's message.
        message: String,
    },
}

fn setup(what: impl Into<String>) -> impl FnOnce(io::Error) -> ExperimentError {
    let what = what.into();
    move |source| ExperimentError::Setup { what, source }
}

/// What one step of a scenario showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A read or write: its result (the byte count or the error's kind) and what [`classify`]
    /// made of it.
    Io {
        /// `Ok(bytes)` or `Err(kind)`.
        result: Result<usize, io::ErrorKind>,
        /// [`classify`] of the result.
        outcome: Outcome,
    },
    /// Another call (bind, shutdown, a close, a summary of several reads): `Ok` with what it
    /// gave, or the error's kind.
    Call(Result<String, io::ErrorKind>),
    /// An action with nothing to observe.
    Nothing,
}

/// One step of a scenario: who did what, and what it showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `client`, `server` or `child`.
    pub actor: &'static str,
    /// What it did, e.g. `read` or `write "first"`.
    pub action: String,
    /// What that showed.
    pub seen: Seen,
}

/// The transcript of one scenario.
#[derive(Debug, Clone)]
pub struct Report {
    /// The scenario's name, as given to `experiment`.
    pub name: &'static str,
    /// What it shows, in a few words.
    pub title: &'static str,
    /// What happened, in order.
    pub events: Vec<Event>,
    /// The result in one line, from what was observed here.
    pub finding: String,
    /// How other systems differ.
    pub note: &'static str,
}

impl Report {
    fn new(scenario: &Scenario) -> Self {
        Report {
            name: scenario.name,
            title: scenario.title,
            events: Vec::new(),
            finding: String::new(),
            note: scenario.note,
        }
    }

    /// Records a read or write and returns what [`classify`] makes of it.
    fn io(&mut self, actor: &'static str, action: impl Into<String>, result: &io::Result<usize>) -> Outcome {
        let outcome = classify(result);
        self.events.push(Event {
            actor,
            action: action.into(),
            seen: Seen::Io {
                result: result.as_ref().map(|n| *n).map_err(io::Error::kind),
                outcome,
            },
        });
        outcome
    }

    /// Records another call's result, shown with `shown` when it succeeded.
    fn call<T>(
        &mut self,
        actor: &'static str,
        action: impl Into<String>,
        result: &io::Result<T>,
        shown: impl FnOnce(&T) -> String,
    ) {
        self.events.push(Event {
            actor,
            action: action.into(),
            seen: Seen::Call(result.as_ref().map(shown).map_err(io::Error::kind)),
        });
    }

    /// Records an action with nothing to observe.
    fn did(&mut self, actor: &'static str, action: impl Into<String>) {
        self.events.push(Event {
            actor,
            action: action.into(),
            seen: Seen::Nothing,
        });
    }

    /// The outcomes of `actor`'s reads or writes whose action starts with `action`, in order.
    pub fn outcomes(&self, actor: &str, action: &str) -> Vec<Outcome> {
        self.matching(actor, action)
            .filter_map(|e| match &e.seen {
                Seen::Io { outcome, .. } => Some(*outcome),
                _ => None,
            })
            .collect()
    }

    /// The results of `actor`'s other calls whose action starts with `action`, in order.
    pub fn calls(&self, actor: &str, action: &str) -> Vec<Result<String, io::ErrorKind>> {
        self.matching(actor, action)
            .filter_map(|e| match &e.seen {
                Seen::Call(result) => Some(result.clone()),
                _ => None,
            })
            .collect()
    }

    fn matching<'a>(&'a self, actor: &'a str, action: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
        self.events
            .iter()
            .filter(move |e| e.actor == actor && e.action.starts_with(action))
    }
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Io {
                result: Ok(n),
                outcome,
            } => write!(f, "Ok({n}) ({outcome})"),
            Seen::Io {
                result: Err(kind),
                outcome,
            } => write!(f, "Err({kind:?}) ({outcome})"),
            Seen::Call(Ok(text)) => f.write_str(text),
            Seen::Call(Err(kind)) => write!(f, "Err({kind:?})"),
            Seen::Nothing => Ok(()),
        }
    }
}

impl fmt::Display for Report {
    /// The transcript: a heading, one line per event, the finding and the note.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "== {}: {} ==", self.name, self.title)?;
        for event in &self.events {
            match event.seen {
                Seen::Nothing => writeln!(f, "  {:<6} {}", event.actor, event.action)?,
                _ => writeln!(f, "  {:<6} {:<52} -> {}", event.actor, event.action, event.seen)?,
            }
        }
        writeln!(f, "  => {}", self.finding)?;
        for (i, line) in wrap(self.note, 92).iter().enumerate() {
            writeln!(f, "  {} {line}", if i == 0 { "note:" } else { "     " })?;
        }
        Ok(())
    }
}

/// Splits `text` into lines of at most `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The summary table of `reports`: one line per scenario with its finding, headed by the
/// operating system the observations come from.
pub fn table(reports: &[Report]) -> String {
    let width = reports.iter().map(|r| r.name.len()).max().unwrap_or(8).max(8);
    let mut out = format!(
        "{:<width$}  observed on this machine ({})\n",
        "scenario",
        std::env::consts::OS
    );
    out.push_str(&format!("{:-<width$}  {:-<60}\n", "", ""));
    for report in reports {
        out.push_str(&format!("{:<width$}  {}\n", report.name, report.finding));
    }
    out
}

/// One scenario: its name, what it shows, and how other systems differ.
pub struct Scenario {
    /// The name `experiment` takes.
    pub name: &'static str,
    /// What it shows.
    pub title: &'static str,
    /// How other systems differ.
    pub note: &'static str,
    run: fn(&Context, &mut Report) -> Result<String, ExperimentError>,
}

impl Scenario {
    /// Runs the scenario and returns its report.
    ///
    /// # Errors
    /// When the scenario cannot be set up, or one of its sides panics (a step not done yet).
    pub fn run(&self, context: &Context) -> Result<Report, ExperimentError> {
        let mut report = Report::new(self);
        report.finding = (self.run)(context, &mut report)?;
        Ok(report)
    }
}

/// Every scenario, in the order `experiment all` runs them.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "orderly",
        title: "orderly close with data in flight",
        note: "The same everywhere: closing after writing discards nothing; TCP delivers every byte, then \
               the FIN, and the reader sees end of stream. (Unless SO_LINGER is 0 or data was left \
               unread: see abortive and unread-data.)",
        run: orderly,
    },
    Scenario {
        name: "read-after-close",
        title: "reading after the peer closed",
        note: "The same everywhere: read returns Ok(0) once the queued data is read, and again on every \
               later call. Java's readUTF throws EOFException instead; Rust's read_exact reports \
               UnexpectedEof.",
        run: read_after_close,
    },
    Scenario {
        name: "half-close",
        title: "the client has finished sending (half-close), the reply still comes back",
        note: "The same everywhere (WinSock: shutdown(SD_SEND)). Without the half-close the server would \
               wait for more of the request and the client for the reply, until a timeout.",
        run: half_close,
    },
    Scenario {
        name: "write-after-close",
        title: "writing after the peer closed",
        note: "Rust ignores SIGPIPE, so a failing write returns an error instead of killing the process. \
               Linux says BrokenPipe here because the RST hit a connection that had already \
               received the peer's FIN (before any FIN it says ConnectionReset once, then \
               BrokenPipe); macOS says BrokenPipe or ConnectionReset; Windows ConnectionReset or \
               ConnectionAborted.",
        run: write_after_close,
    },
    Scenario {
        name: "abortive",
        title: "abortive close: SO_LINGER 0, then close",
        note: "A reset on every system. Linux still hands the reader the bytes that had reached its \
               receive buffer, then ConnectionReset; what was still in the sender's buffer is lost. \
               Windows may discard the receive buffer too.",
        run: abortive,
    },
    Scenario {
        name: "unread-data",
        title: "closing with unread data in the receive buffer",
        note: "Linux and Windows send a RST, as RFC 2525 §2.17 recommends, so the peer learns its data \
               was lost; some stacks have sent a plain FIN. A server that replies and closes without \
               reading the whole request causes exactly this.",
        run: unread_data,
    },
    Scenario {
        name: "shutdown-read",
        title: "shutdown(Read): no more reading on this side",
        note: "TCP has no segment for 'stop sending', so the peer is not told. Linux keeps delivering \
               data that arrives later; macOS and the BSDs discard it silently; on Windows data \
               arriving after shutdown(SD_RECEIVE) resets the connection.",
        run: shutdown_read,
    },
    Scenario {
        name: "process-exit",
        title: "a process that exits while connected",
        note: "The same everywhere: the kernel closes the sockets of a process that exits or is killed, \
               with a FIN (a RST if data was left unread). A socket shared with another process (fork, \
               inherited handles) stays open until its last holder closes it.",
        run: process_exit,
    },
    Scenario {
        name: "time-wait",
        title: "restarting a server on its port right after it closed (TIME_WAIT, SO_REUSEADDR)",
        note: "The side that closes first keeps the connection in TIME_WAIT for 2 MSL: 60 s on Linux, \
               about 30 s on macOS, 2 to 4 minutes on Windows. std's TcpListener::bind sets \
               SO_REUSEADDR on Unix, so Rust servers restart at once there. On Windows SO_REUSEADDR \
               means something else (another socket may take a port in use) and servers set \
               SO_EXCLUSIVEADDRUSE instead.",
        run: time_wait,
    },
];

/// The names of all scenarios.
pub fn names() -> Vec<&'static str> {
    SCENARIOS.iter().map(|s| s.name).collect()
}

/// The scenario called `name`.
///
/// # Errors
/// [`ExperimentError::Unknown`] when there is none.
pub fn find(name: &str) -> Result<&'static Scenario, ExperimentError> {
    SCENARIOS
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ExperimentError::Unknown {
            name: name.to_owned(),
        })
}

/// The `child` subcommand, for the `process-exit` scenario: connects to `server`, sends
/// `hello from process PID\n`, then waits (for a reply that never comes) until it is killed,
/// the server closes, or 30 s pass.
///
/// # Errors
/// When it cannot connect or send.
pub fn child(server: SocketAddr) -> io::Result<()> {
    let stream = TcpStream::connect_timeout(&server, IO_TIMEOUT)?;
    (&stream).write_all(format!("hello from process {}\n", std::process::id()).as_bytes())?;
    stream.set_read_timeout(Some(CHILD_LIFETIME))?;
    let mut buf = [0u8; 64];
    let _ = (&stream).read(&mut buf);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn timeouts(stream: &TcpStream) -> Result<(), ExperimentError> {
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(setup("set the socket timeouts"))
}

/// A connection on loopback: `(client, server)`, both with [`IO_TIMEOUT`] set.
fn pair() -> Result<(TcpStream, TcpStream), ExperimentError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(setup("listen on 127.0.0.1:0"))?;
    let addr = listener
        .local_addr()
        .map_err(setup("read the listener's address"))?;
    let client =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(setup(format!("connect to {addr}")))?;
    // The connection is already in the backlog: accept returns at once.
    let (server, _) = listener.accept().map_err(setup("accept"))?;
    timeouts(&client)?;
    timeouts(&server)?;
    Ok((client, server))
}

/// Bytes 0, 1, ... 250, 0, 1 ...
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Writes up to `len` bytes while nobody reads: stops when the socket buffers are full (no room
/// for [`FILL_TIMEOUT`]). Returns how many bytes were taken.
fn fill(stream: &TcpStream, len: usize) -> io::Result<usize> {
    stream.set_write_timeout(Some(FILL_TIMEOUT))?;
    let data = pattern(len);
    let mut sent = 0;
    while sent < len {
        match (&*stream).write(&data[sent..]) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) && sent > 0 => break,
            Err(e) => return Err(e),
        }
    }
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(sent)
}

/// What [`read_until_end`] read.
struct ReadEnd {
    summary: Summary,
    end: Outcome,
}

/// Reads `stream` until a read gives anything but data; records one line for all the data and
/// one for the read that ended it.
fn read_until_end(report: &mut Report, actor: &'static str, stream: &TcpStream) -> ReadEnd {
    let mut buf = vec![0u8; CHUNK];
    let mut summary = Summary::new();
    let mut reads = 0;
    loop {
        let result = (&*stream).read(&mut buf);
        if matches!(&result, Err(e) if e.kind() == io::ErrorKind::Interrupted) {
            continue;
        }
        match (&result, classify(&result)) {
            (Ok(n), Outcome::Data(_)) if *n > 0 => {
                summary.update(&buf[..*n]);
                reads += 1;
            }
            _ => {
                if reads > 0 {
                    let all = Ok(summary.bytes);
                    report.call(
                        actor,
                        format!("read, {reads} time{}", if reads == 1 { "" } else { "s" }),
                        &all,
                        |n| format!("{n} bytes in all"),
                    );
                }
                let end = report.io(actor, "read", &result);
                return ReadEnd { summary, end };
            }
        }
    }
}

/// A thread for one side of a scenario.
fn side<T: Send + 'static>(
    name: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, ExperimentError> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(setup(format!("start the {name}")))
}

fn join<T>(name: &'static str, handle: JoinHandle<T>) -> Result<T, ExperimentError> {
    handle.join().map_err(|payload| ExperimentError::Panicked {
        side: name,
        message: payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned()),
    })
}

fn read_once(stream: &TcpStream) -> io::Result<usize> {
    let mut buf = [0u8; 64];
    loop {
        match (&*stream).read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

fn write_once(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match (&*stream).write(bytes) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// A list of outcomes as text: `data, then end of stream`.
fn list(outcomes: &[Outcome]) -> String {
    let words: Vec<String> = outcomes.iter().map(Outcome::to_string).collect();
    words.join(", then ")
}

// ---------------------------------------------------------------------------------------------
// The scenarios

fn orderly(_: &Context, r: &mut Report) -> Result<String, ExperimentError> {
    let (client, server) = pair()?;
    let (tx, rx) = mpsc::channel();
    let closer = side("server thread", move || {
        let _ = tx.send(fill(&server, IN_FLIGHT));
        orderly_close(server, IO_TIMEOUT)
    })?;
    let Ok(wrote) = rx.recv_timeout(IO_TIMEOUT) else {
        let _ = join("server thread", closer)?;
        return Err(setup("wait for the server thread")(
            io::ErrorKind::TimedOut.into(),
        ));
    };
    let wrote_n = *wrote.as_ref().unwrap_or(&0);
    r.io("server", "write up to 1 MiB; the client reads none yet", &wrote);
    r.did("server", "orderly_close(): shutdown(Write), drain, close");
    let got = read_until_end(r, "client", &client);
    drop(client);
    r.did("client", "close (drop)");
    let closed = join("server thread", closer)?;
    r.call("server", "orderly_close returns", &closed, |n| {
        format!("Ok({n} bytes drained)")
    });
    Ok(
        if got.end == Outcome::EndOfStream && got.summary == Summary::of(&pattern(wrote_n)) {
            format!("all {wrote_n} bytes arrived intact, then end of stream")
        } else {
            format!(
                "{} of {wrote_n} bytes arrived, then {}",
                got.summary.bytes, got.end
            )
        },
    )
}

fn read_after_close(_: &Context, r: &mut Report) -> Result<String, ExperimentError> {
    let (mut client, server) = pair()?;
    let wrote = (&server).write_all(b"bye").map(|()| 3);
    r.io("server", "write \"bye\"", &wrote);
    drop(server);
    r.did("server", "close (drop the stream)");
    r.io("client", "read", &read_once(&client));
    r.io("client", "read", &read_once(&client));
    r.io("client", "read again", &read_once(&client));
    let exact = client.read_exact(&mut [0u8; 4]).map(|()| 4);
    r.io("client", "read_exact of 4 bytes", &exact);
    let seen = r.outcomes("client", "read");
    Ok(
        if seen
            == [
                Outcome::Data(3),
                Outcome::EndOfStream,
                Outcome::EndOfStream,
                Outcome::EndOfStream,
            ]
        {
            "the 3 bytes, then end of stream (Ok(0)) on every later read".to_owned()
        } else {
            format!("the reads saw {}", list(&seen))
        },
    )
}

fn half_close(_: &Context, r: &mut Report) -> Result<String, ExperimentError> {
    let (client, server) = pair()?;
    const REQUEST: &[u8] = b"a request that ends with a half-close";
    let asking = side("client thread (request)", move || {
        let mut input = REQUEST;
        request(&client, &mut input)
    })?;
    r.did(
        "client",
        format!(
            "request(): write {} bytes, shutdown(Write), read the reply",
            REQUEST.len()
        ),
    );
    let got = read_until_end(r, "server", &server);
    let reply = Reply::Received(got.summary);
    let wrote = (&server)
        .write_all(reply.to_line().as_bytes())
        .map(|()| reply.to_line().len());
    r.io("server", "write the reply after the end of stream", &wrote);
    drop(server);
    r.did("server", "close (drop)");
    let answer = join("client thread (request)", asking)?;
    r.call("client", "request() returns", &answer, |reply| {
        format!("Ok: {reply}")
    });
    Ok(match answer {
        Ok(answered) if got.end == Outcome::EndOfStream && answered == reply => {
            "the server read end of stream, and its reply still reached the client".to_owned()
        }
        Ok(answered) => format!("the server's read saw {}; the client got: {answered}", got.end),
        Err(e) => format!("the server's read saw {}; the client failed: {e}", got.end),
    })
}

fn write_after_close(_: &Context, r: &mut Report) -> Result<String, ExperimentError> {
    let (client, server) = pair()?;
    drop(server);
    r.did("server", "close (drop); nothing was unread, so a FIN goes out");
    let first = r.io("client", "write \"first\"", &write_once(&client, b"first"));
    // The server's kernel answers the data with a RST; a later write learns of it.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut failed = None;
    while failed.is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        let outcome = r.io("client", "write \"later\"", &write_once(&client, b"later"));
        if !matches!(outcome, Outcome::Data(_)) {
            failed = Some(outcome);
        }
    }
    let again = r.io("client", "write \"again\"", &write_once(&client, b"again"));
    Ok(match failed {
        Some(failed) => format!("the first write: {first}; a later one: {failed}, then {again}"),
        None => format!("every write for 2 s succeeded ({first})"),
    })
}

fn abortive(_: &Context, r: &mut Report) -> Result<String, ExperimentError> {
    let (client, server) = pair()?;
    let sent = (&client).write_all(b"request").map(|()| 7);
    r.io("client", "write \"request\"", &sent);
    let read = (&server).read_exact(&mut [0u8; 7]).map(|()| 7);
    r.io("server", "read the 7 bytes (nothing is left unread)", &read);
    let wrote = fill(&server, IN_FLIGHT);
    let wrote_n = *wrote.as_ref().unwrap_or(&0);
    r.io("server", "write up to 1 MiB; the client reads none yet", &wrote);
    let started = Instant::now();
    let closed = abortive_close(server);
    let took = started.elapsed().as_millis();
    r.call("server", "abortive_close(): SO_LINGER 0, close", &closed, |()| {
        format!("Ok, after {took} ms")
    });
    let got = read_until_end(r, "client", &client);
    let more = r.io("client", "write \"more\"", &write_once(&client, b"more"));
    Ok(format!(
        "{} of {wrote_n} bytes arrived, then {}; a write then: {more}",
        got.summary.bytes, got.end
    ))
}

fn unread_data(_: &Context, r: &mut Report) -> Result<String, ExperimentError> {
    let (client, server) = pair()?;
    let sent = (&client).write_all(b"never read").map(|()| 10);
    r.io("client", "write \"never read\"", &sent);
    let peeked = server.peek(&mut [0u8; 64]);
    r.io(
        "server",
        "peek: the bytes are there (peek does not consume)",
        &peeked,
    );
    drop(server);
    r.did("server", "close (drop) without reading them");
    let read = r.io("client", "read", &read_once(&client));
    let write = r.io("client", "write \"more\"", &write_once(&client, b"more"));
    Ok(format!(
        "the client's read: {read} (not end of stream); a write then: {write}"
    ))
}

fn shutdown_read(_: &Context, r: &mut Report) -> Result<String, ExperimentError> {
    let (client, server) = pair()?;
    let shut = server.shutdown(Shutdown::Read);
    r.call("server", "shutdown(Read)", &shut, |()| "Ok".to_owned());
    let first = r.io("server", "read", &read_once(&server));
    let sent = r.io(
        "client",
        "write \"more data\"",
        &write_once(&client, b"more data"),
    );
    // Poll: after shutdown(Read), read returns Ok(0) at once while nothing is queued.
    let deadline = Instant::now() + Duration::from_secs(1);
    let later = loop {
        let result = read_once(&server);
        if matches!(result, Ok(0)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
            continue;
        }
        break result;
    };
    let later = r.io("server", "read again, polling for up to 1 s", &later);
    drop(server);
    r.did("server", "close (drop)");
    let end = r.io("client", "read", &read_once(&client));
    Ok(match later {
        Outcome::Data(n) => format!("read: {first} at once; the client's {n} later bytes still arrived"),
        other => {
            format!("read: {first} at once; the client's write ({sent}) was dropped ({other}), read {end}")
        }
    })
}

/// A child process, killed and reaped when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn process_exit(context: &Context, r: &mut Report) -> Result<String, ExperimentError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(setup("listen on 127.0.0.1:0"))?;
    let addr = listener
        .local_addr()
        .map_err(setup("read the listener's address"))?;
    let mut child = ChildGuard(
        Command::new(&context.exe)
            .args(["child", "--server", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(setup(format!("start {} child", context.exe.display())))?,
    );
    r.did(
        "server",
        format!(
            "start this program as a child process (pid {}): `child --server {addr}`",
            child.0.id()
        ),
    );
    // Accept with a deadline, watching the child.
    listener
        .set_nonblocking(true)
        .map_err(setup("make accept non-blocking"))?;
    let deadline = Instant::now() + 2 * IO_TIMEOUT;
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(setup("accept the child's connection")(e)),
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            let message = format!("the child exited ({status}) before connecting");
            return Err(setup(message)(io::ErrorKind::NotConnected.into()));
        }
        if Instant::now() >= deadline {
            return Err(setup("wait for the child to connect")(
                io::ErrorKind::TimedOut.into(),
            ));
        }
        thread::sleep(Duration::from_millis(10));
    };
    stream
        .set_nonblocking(false)
        .map_err(setup("make the stream blocking"))?;
    timeouts(&stream)?;
    let mut hello = [0u8; 64];
    let read = (&stream).read(&mut hello);
    r.io("server", "read the child's hello", &read);
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .map_err(setup("set a short read timeout"))?;
    let alive = r.io("server", "read, waiting 300 ms", &read_once(&stream));
    let killed = child.0.kill();
    r.call(
        "server",
        "kill the child (it runs no more code, calls no close)",
        &killed,
        |()| "Ok".to_owned(),
    );
    let status = child.0.wait();
    r.call("server", "wait for the child", &status, |s| format!("Ok: {s}"));
    timeouts(&stream)?;
    let end = r.io("server", "read", &read_once(&stream));
    Ok(format!(
        "while the child lived, a read {alive}; once it was killed, the read saw {end}"
    ))
}

/// A listening socket on `ip:port` made with socket2, with `SO_REUSEADDR` set to `reuse`
/// explicitly (std's `TcpListener::bind` would turn it on, on Unix).
fn listener_on(ip: Ipv4Addr, port: u16, reuse: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(reuse)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(ip, port)).into())?;
    socket.listen(8)?;
    Ok(socket.into())
}

/// The loopback address the `time-wait` scenario listens on. Between the close and the restart
/// the port is free for anyone: a program binding `127.0.0.1:0` with `SO_REUSEADDR` may be given
/// it. On Linux every 127.x.y.z is loopback, so the scenario uses an address of its own, such as
/// 127.77.12.3, that nobody else binds; elsewhere (macOS has only 127.0.0.1) 127.0.0.1.
fn quiet_loopback() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let ip = Ipv4Addr::new(127, 77, (pid % 251) as u8 + 1, (n % 251) as u8 + 1);
    match Socket::new(Domain::IPV4, Type::STREAM, None)
        .and_then(|s| s.bind(&SocketAddr::V4(SocketAddrV4::new(ip, 0)).into()))
    {
        Ok(()) => ip,
        Err(_) => Ipv4Addr::LOCALHOST,
    }
}

/// The names of the states in `/proc/net/tcp`, by number.
const TCP_STATES: [&str; 12] = [
    "?",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
];

/// Looks up, in Linux's `/proc/net/tcp`, the socket bound to `local` and connected to `remote`,
/// or with `remote` `None` the socket listening on `local`, and returns its state's name
/// (`None` when there is no such socket).
///
/// # Errors
/// `Unsupported` where there is no `/proc/net/tcp` (every system but Linux).
fn proc_tcp_state(local: SocketAddr, remote: Option<SocketAddr>) -> io::Result<Option<&'static str>> {
    if !cfg!(target_os = "linux") {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "only Linux has /proc/net/tcp",
        ));
    }
    // Addresses appear as 0100007F:1F1E: the IPv4 address in host (little-endian) order, the
    // port in big-endian hex.
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!("{:08X}:{:04X}", u32::from_le_bytes(v4.ip().octets()), v4.port()),
        SocketAddr::V6(_) => String::new(),
    };
    let local = hex(local);
    let remote = remote.map(hex);
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    Ok(table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let state = u8::from_str_radix(fields.get(3).copied().unwrap_or("0"), 16).unwrap_or(0);
        let name = TCP_STATES.get(usize::from(state)).copied().unwrap_or("?");
        let wanted = match &remote {
            Some(remote) => fields.get(2) == Some(&remote.as_str()),
            None => name == "LISTEN",
        };
        (fields.get(1) == Some(&local.as_str()) && wanted).then_some(name)
    }))
}

/// The state of the connection `local` -> `remote` in `/proc/net/tcp`, waiting up to 1 s for
/// it to reach TIME_WAIT: `TIME_WAIT`, another state's name, or `gone` when the kernel kept
/// nothing (its TIME_WAIT table, `net.ipv4.tcp_max_tw_buckets`, is full).
fn time_wait_state(local: SocketAddr, remote: SocketAddr) -> io::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let name = proc_tcp_state(local, Some(remote))?.unwrap_or("gone");
        if name == "TIME_WAIT" || Instant::now() >= deadline {
            return Ok(name.to_owned());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to 2 s until nothing listens on `local` any more (Linux only; elsewhere returns at
/// once) and says whether that happened. A dropped listener can outlive its `close` for a
/// moment: a process that another thread is starting holds a copy of every descriptor between
/// its `fork` and its `exec`, as when this runs inside a multithreaded test.
fn listener_gone(local: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match proc_tcp_state(local, None) {
            Ok(Some(_)) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(Some(_)) => return false,
            Ok(None) | Err(_) => return true,
        }
    }
}

fn time_wait(_: &Context, r: &mut Report) -> Result<String, ExperimentError> {
    let mut restarts = Vec::new();
    for reuse in [false, true] {
        let option = if reuse {
            "SO_REUSEADDR on"
        } else {
            "SO_REUSEADDR off"
        };
        let ip = quiet_loopback();
        let listener = listener_on(ip, 0, reuse).map_err(setup(format!("listen on {ip}:0")))?;
        let addr = listener
            .local_addr()
            .map_err(setup("read the listener's address"))?;
        r.did("server", format!("listen on {addr} ({option})"));
        let client =
            TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(setup(format!("connect to {addr}")))?;
        timeouts(&client)?;
        let (server, _) = listener.accept().map_err(setup("accept"))?;
        let peer = client.local_addr().map_err(setup("read the client's address"))?;
        drop(server);
        r.did("server", "close the connection first: its end goes to TIME_WAIT");
        r.io("client", "read", &read_once(&client));
        drop(client);
        r.did("client", "close");
        let state = time_wait_state(addr, peer);
        r.call(
            "server",
            format!("state of {addr} -> {peer} in /proc/net/tcp"),
            &state,
            String::clone,
        );
        drop(listener);
        r.did("server", "stop (drop the listener)");
        if !listener_gone(addr) {
            r.did(
                "server",
                "(a socket still listens there after 2 s: another process holds a copy)",
            );
        }
        let again = listener_on(ip, addr.port(), reuse);
        r.call(
            "server",
            format!("restart: listen on {addr} again ({option})"),
            &again,
            |_| "Ok".to_owned(),
        );
        if again.is_ok() {
            let connected = TcpStream::connect_timeout(&addr, IO_TIMEOUT);
            r.call("client", "connect to the restarted server", &connected, |_| {
                "Ok".to_owned()
            });
        }
        restarts.push(match again {
            Ok(_) => format!("{option}: the restart works"),
            Err(e) => format!("{option}: Err({:?})", e.kind()),
        });
    }
    Ok(restarts.join("; "))
}
