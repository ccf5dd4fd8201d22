//! Lab 03: concurrent servers — one line echo server, three ways to serve many clients.
//!
//! An **iterative** server serves one connection at a time, so every client waits for the one
//! before it. Two classic ways out: a new **process per connection** (`fork(2)`, the UNIX way)
//! and a new **thread per connection** (the Java `Connection` thread of the lectures). All three
//! models here run the same per-connection code, [`handle_connection`], which is given complete
//! but for one limit added at the end: the lab is about the accept loop and the lifetimes of
//! processes, threads and descriptors, and then about the slow clients that hold them.
//!
//! Lecture: the UNIX socket slides (iterative servers, `fork()` per client), the Java
//! thread-per-connection echo server. Linux details: fork(2), waitpid(2), signal(7),
//! signalfd(2), pthreads(7), listen(2) (the backlog).
//!
//! Steps (see the book's Lab 03 chapter; `cargo test -p lab03-concurrent-servers stepN_` checks
//! step N):
//! 1. [`serve_iterative`]: accept, serve, repeat; back off when out of descriptors;
//! 2. [`serve_threads_with`] (which [`serve_threads`] calls): a thread per connection, finished
//!    threads joined, at most `max_clients` at once, a thread that cannot start costing only its
//!    connection;
//! 3. [`reap_children`]: collect the exit status of every finished child (no zombies);
//! 4. [`serve_fork`]: a process per connection, each side closing what it does not need;
//! 5. [`stop_children`]: on SIGINT or SIGTERM, stop the children and wait for them;
//! 6. [`handle_connection`]: bound each whole line and its echo by the message timeout, so a
//!    client that trickles a line (or drains its echo slowly) cannot keep its place forever.
//!
//! The load generator, [`bench`], and the plot of its results, [`plot`], are given complete.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::mpsc; // solution-only
use std::thread::{self, JoinHandle};
use std::time::Duration;
use std::time::Instant; // solution-only

pub use common::accept::{ACCEPT_BACKOFF, is_resource_exhaustion};

#[cfg(unix)]
use nix::sys::signal::Signal;
#[cfg(unix)]
use nix::sys::wait::WaitStatus;
#[cfg(unix)]
use nix::unistd::{ForkResult, Pid};

pub mod bench;
pub mod plot;

/// The server's default port, as in the lecture's Java TCPServer.
pub const DEFAULT_PORT: u16 = 7896;

/// The default cap on clients served at once by the `fork` and `thread` models: 64.
pub const DEFAULT_MAX_CLIENTS: usize = 64;

/// How long a connection may stay silent before the server closes it: 10 000 ms.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one whole line may take to arrive and its echo to be written: 30 000 ms.
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest request line [`handle_connection`] accepts, in bytes without the `\n`: 65 536.
pub const MAX_LINE: usize = 65_536;

/// How long the forking server waits for a connection before it looks at its children and at
/// the signals again: 50 ms. It bounds how long a finished child stays a zombie.
pub const TICK: Duration = Duration::from_millis(50);

// ANCHOR: model
/// How the server serves its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// One connection at a time, in the server's only thread; the others wait in the backlog.
    Iterative,
    /// A child process per connection (`fork`); Unix only.
    Fork,
    /// A thread per connection.
    Thread,
}
// ANCHOR_END: model

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Model::Iterative => "iterative",
            Model::Fork => "fork",
            Model::Thread => "thread",
        })
    }
}

impl FromStr for Model {
    type Err = String;

    /// Parses `iterative`, `fork` or `thread`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "iterative" => Ok(Model::Iterative),
            "fork" => Ok(Model::Fork),
            "thread" => Ok(Model::Thread),
            _ => Err(format!("`{s}` is not a model (iterative, fork or thread)")),
        }
    }
}

// ANCHOR: server_config
/// How the server treats its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The most clients served at once by `fork` and `thread` (at least 1). At the cap the server
    /// stops accepting: new connections wait in the listening socket's backlog until a client
    /// leaves.
    pub max_clients: usize,
    /// Read and write timeout of each connection: a client silent this long is dropped.
    /// `None` waits forever.
    pub idle_timeout: Option<Duration>,
    /// The most time one line may take: from the moment the server starts waiting for it until
    /// its echo is written. A client that trickles a line (or drains its echo) so slowly that no
    /// single read or write waits the idle timeout is dropped after this long. `None`: no limit
    /// beyond the idle timeout.
    pub message_timeout: Option<Duration>,
    /// Stop accepting after this many connections, wait for the clients being served, and
    /// return; `None` serves forever.
    pub max_connections: Option<u64>,
}
// ANCHOR_END: server_config

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_clients: DEFAULT_MAX_CLIENTS,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            message_timeout: Some(DEFAULT_MESSAGE_TIMEOUT),
            max_connections: None,
        }
    }
}

// ANCHOR: event
/// Who serves an accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Worker {
    /// The server's own thread, before it accepts anyone else (iterative).
    Inline,
    /// A new thread of the server.
    Thread,
    /// A new child process, with this process id.
    Child(u32),
}

/// One thing the server did; its [`Display`](fmt::Display) is the server's log line.
#[derive(Debug)]
pub enum Event {
    /// A connection from `peer` was accepted and handed to `worker`; `live` clients (this one
    /// included) are now being served.
    Accepted {
        /// The client's IP address and (ephemeral) port.
        peer: SocketAddr,
        /// Who serves it.
        worker: Worker,
        /// Clients being served now, this one included.
        live: usize,
    },
    /// The client finished (EOF) and the connection was closed after `lines` lines echoed.
    Closed {
        /// The client.
        peer: SocketAddr,
        /// Lines echoed.
        lines: u64,
    },
    /// The connection ended with an error (reset, idle timeout, message timeout, over-long
    /// line) and was closed.
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
    /// The connection from `peer` was accepted, but no thread or process could be started to
    /// serve it: it was closed at once, and the server goes on.
    Dropped {
        /// The client.
        peer: SocketAddr,
        /// Why the thread or the child could not start (`EAGAIN`, `ENOMEM`, `EMFILE`...).
        error: io::Error,
    },
    /// `max` clients are being served: the server accepts no one until one leaves, and new
    /// connections wait in the backlog. Logged once each time the cap is reached.
    AtCapacity {
        /// The cap, `max_clients`.
        max: usize,
    },
    /// A finished child process was reaped (its exit status collected): it is gone for good.
    Reaped {
        /// The child's process id.
        pid: u32,
        /// How it ended: `exit status 0`, `killed by SIGTERM`...
        how: String,
    },
    /// The server received `signal` and stops its `children` child processes.
    Stopping {
        /// The signal's name, `SIGINT` or `SIGTERM`.
        signal: String,
        /// How many children are still running.
        children: usize,
    },
}
// ANCHOR_END: event

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Accepted { peer, worker, live } => match worker {
                Worker::Inline => write!(f, "{peer}: connected; served now, the next clients wait"),
                Worker::Thread => write!(f, "{peer}: connected; served by a new thread ({live} live)"),
                Worker::Child(pid) => {
                    write!(f, "{peer}: connected; served by child {pid} ({live} live)")
                }
            },
            Event::Closed { peer, lines } => write!(
                f,
                "{peer}: closed after echoing {lines} line{}",
                if *lines == 1 { "" } else { "s" }
            ),
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
            Event::Dropped { peer, error } => write!(
                f,
                "{peer}: connection dropped, no thread or process could serve it: {error} (still serving)"
            ),
            Event::AtCapacity { max } => write!(
                f,
                "{max} clients being served, the cap: new connections wait in the backlog"
            ),
            Event::Reaped { pid, how } => write!(f, "child {pid} reaped: {how}"),
            Event::Stopping { signal, children } => write!(
                f,
                "{signal} received: stopping {children} child{} and exiting",
                if *children == 1 { "" } else { "ren" }
            ),
        }
    }
}

/// Where the server reports its [`Event`]s. Shared by every thread of the server, hence the
/// `Arc` and the `Send + Sync`; the binary writes each event as one line on stderr.
pub type Log = Arc<dyn Fn(&Event) + Send + Sync>;

/// Whether `e` is what a socket read or write timeout produces: `WouldBlock` on Unix,
/// `TimedOut` on Windows. Given complete.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
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

// ANCHOR: message_timeout
/// The error inside the [`io::Error`] (of kind `TimedOut`) that ends a connection whose line
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
            "a message took longer than the message timeout ({} ms)",
            self.timeout.as_millis()
        )
    }
}

impl std::error::Error for MessageTimeout {}

/// The error for a line that took longer than `timeout`: kind `io::ErrorKind::TimedOut`,
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
// ANCHOR_END: message_timeout

/// Reads one `\n`-terminated line from `input` into `line` (cleared first), the `\n` included,
/// and returns `Ok(true)`; `Ok(false)` when the stream ends cleanly before a line starts. Lines
/// are capped at [`MAX_LINE`] bytes (without the `\n`), so a client cannot make the server
/// buffer without bound. Given complete (Lab 02's `read_line`, keeping the newline).
///
/// # Errors
/// `io::ErrorKind::InvalidData` for a line over [`MAX_LINE`] bytes; `UnexpectedEof` when the
/// stream ends inside a line; the errors of `input` (timeouts, resets). `Interrupted` is retried.
pub fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<bool> {
    line.clear();
    let limit = MAX_LINE as u64 + 1;
    loop {
        match input.take(limit - line.len() as u64).read_until(b'\n', line) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    if line.is_empty() {
        return Ok(false);
    }
    if line.last() != Some(&b'\n') {
        let (kind, what) = if line.len() > MAX_LINE {
            (
                io::ErrorKind::InvalidData,
                format!("a line longer than {MAX_LINE} bytes"),
            )
        } else {
            (
                io::ErrorKind::UnexpectedEof,
                "the stream ended inside a line".to_owned(),
            )
        };
        return Err(io::Error::new(kind, what));
    }
    Ok(true)
}

// ANCHOR: handle_connection
/// Serves one connection: echoes each `\n`-terminated line back (read with [`read_line`], so
/// capped at [`MAX_LINE`] bytes), until the client's end of stream, and returns how many lines
/// were echoed. Given complete but for step 6 (it is Lab 02's line mode). The connection is
/// closed when `stream` is dropped, on return.
///
/// Two limits keep one client from holding its place (the iterative server, a thread or a
/// child under the cap) forever:
/// - `config.idle_timeout` bounds each single read and write: a client silent that long is
///   dropped;
/// - step 6: `config.message_timeout` bounds each whole line, from the moment the server starts
///   waiting for it until its echo is written. Before each read and each write, set the
///   socket's timeout to the smaller of the idle timeout and the time left until the line's
///   deadline (an [`std::time::Instant`]); when no time is left, or a read or write timed out
///   because the deadline came, fail with [`message_timed_out`]`(message_timeout)`. A small
///   adapter over `&TcpStream` that holds the deadline and implements [`Read`] and [`Write`]
///   lets [`read_line`] work unchanged. `None` means no such limit.
///
/// # Errors
/// Those of [`read_line`]: `InvalidData` for an over-long line, `UnexpectedEof` when the stream
/// ends inside a line; `WouldBlock`/`TimedOut` when the client is silent for the idle timeout;
/// `TimedOut` holding a [`MessageTimeout`] (see [`message_timed_out`]) when a line and its echo
/// take longer than the message timeout; `ConnectionReset`, `BrokenPipe` when the client has
/// gone.
pub fn handle_connection(stream: TcpStream, config: &ServerConfig) -> io::Result<u64> {
    // Replies go out at once, each in one write: no reason to let Nagle's algorithm wait.
    stream.set_nodelay(true)?;
    let mut lines = 0u64;
    let mut line = Vec::new();
    // >>> step 6: bound each read and write by the idle timeout and each line, with its echo, by config.message_timeout
    /// Reads and writes `stream`, each call bounded by the idle timeout and by the time left
    /// until `deadline`, the end of the current line.
    struct Paced<'a> {
        stream: &'a TcpStream,
        idle: Option<Duration>,
        message: Option<Duration>,
        deadline: Option<Instant>,
    }

    impl Paced<'_> {
        /// The server starts waiting for a new line: its deadline starts now.
        fn start_line(&mut self) {
            self.deadline = self.message.map(|limit| Instant::now() + limit);
        }

        /// The timeout for the next read or write, and whether the deadline (not the idle
        /// timeout) set it; an error once no time is left. (A socket timeout of zero is an
        /// error, hence the check.)
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

        /// A timeout caused by the deadline becomes the message-timeout error.
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

    // One BufReader for the whole connection: bytes it has read ahead belong to the next line.
    let mut input = BufReader::new(Paced {
        stream: &stream,
        idle: config.idle_timeout,
        message: config.message_timeout,
        deadline: None,
    });
    loop {
        // The line's clock starts when the server starts waiting for it, and runs until its
        // echo is written: a client slow to send or slow to read pays for it alike.
        input.get_mut().start_line();
        if !read_line(&mut input, &mut line)? {
            return Ok(lines);
        }
        input.get_mut().write_all(&line)?;
        lines += 1;
    }
    // === skeleton
    // stream.set_read_timeout(config.idle_timeout)?;
    // stream.set_write_timeout(config.idle_timeout)?;
    // let mut input = BufReader::new(&stream);
    // let mut output = &stream;
    // while read_line(&mut input, &mut line)? {
    //     output.write_all(&line)?;
    //     lines += 1;
    // }
    // Ok(lines)
    // <<<
}
// ANCHOR_END: handle_connection

/// Serves one accepted connection with [`handle_connection`] and logs how it ended
/// ([`Event::Closed`] or [`Event::Failed`]); returns whether it ended cleanly. Given complete.
pub fn serve_one(stream: TcpStream, peer: SocketAddr, config: &ServerConfig, log: &Log) -> bool {
    match handle_connection(stream, config) {
        Ok(lines) => {
            log(&Event::Closed { peer, lines });
            true
        }
        Err(error) => {
            log(&Event::Failed { peer, error });
            false
        }
    }
}

/// Whether the server may accept another connection after `accepted` of them: always when
/// `config.max_connections` is `None`, else while `accepted` is below it. Given complete.
pub fn more_connections(config: &ServerConfig, accepted: u64) -> bool {
    config.max_connections.is_none_or(|max| accepted < max)
}

// ANCHOR: serve_iterative
/// Step 1. The iterative server: accepts one connection from `listener`, serves it with
/// [`serve_one`] (which logs how it ended) and only then accepts the next. Logs
/// [`Event::Accepted`] (with [`Worker::Inline`] and `live` 1) for each connection.
///
/// Two kinds of `accept` errors do not end the loop (and are not counted):
/// - one for which [`is_per_connection`] holds: log [`Event::AcceptFailed`] and accept again;
/// - one for which [`is_resource_exhaustion`] holds (`EMFILE`, too many open files, and the
///   like): log [`Event::AcceptBackoff`], sleep [`ACCEPT_BACKOFF`] so the loop does not spin,
///   and accept again; the connection waits in the backlog until a descriptor is free.
///
/// Stops after `config.max_connections` connections (forever when `None`) and returns how many
/// it accepted. `config.max_clients` does not matter here: there is never more than one client.
///
/// # Errors
/// Any other error of `accept` (`EBADF`, `EINVAL`: the listening socket itself is broken) is
/// returned.
pub fn serve_iterative(listener: &TcpListener, config: &ServerConfig, log: &Log) -> io::Result<u64> {
    // >>> step 1 (listener, config, log): accept, log Accepted, serve_one; repeat until max_connections; back off when out of descriptors
    let mut accepted = 0;
    while more_connections(config, accepted) {
        let (stream, peer) = match listener.accept() {
            Ok(connection) => connection,
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
        accepted += 1;
        log(&Event::Accepted {
            peer,
            worker: Worker::Inline,
            live: 1,
        });
        serve_one(stream, peer, config, log);
    }
    Ok(accepted)
    // <<<
}
// ANCHOR_END: serve_iterative

// ANCHOR: serve_threads
/// The work of one connection's thread, as [`serve_threads_with`] hands it to its `spawn`
/// function: a closure that owns the stream, run once.
pub type Work = Box<dyn FnOnce() + Send + 'static>;

/// Starts a thread named `name` that runs `work`, and returns its handle: what
/// [`serve_threads`] uses to start each connection's thread. Given complete.
///
/// # Errors
/// When the operating system cannot create another thread: `EAGAIN` (a limit on threads or
/// processes, pthread_create(3)) or `ENOMEM`. `work` is dropped then, and with it the
/// connection it owns.
pub fn spawn_thread(name: String, work: Work) -> io::Result<JoinHandle<()>> {
    thread::Builder::new().name(name).spawn(work)
}

/// The thread-per-connection server of step 2: [`serve_threads_with`] with the real
/// [`spawn_thread`]. Given complete.
///
/// # Errors
/// Those of [`serve_threads_with`].
pub fn serve_threads(listener: &TcpListener, config: &ServerConfig, log: &Log) -> io::Result<u64> {
    serve_threads_with(listener, config, log, spawn_thread)
}

/// Step 2. The thread-per-connection server: accepts connections from `listener` and serves
/// each in a new thread with [`serve_one`], so a slow or idle client delays no one else. Each
/// thread is started with `spawn(name, work)`: [`serve_threads`] passes [`spawn_thread`], and
/// tests pass one that fails.
///
/// - Logs [`Event::Accepted`] with [`Worker::Thread`] and the number of live threads.
/// - **A thread that cannot start** (`spawn` returns an error: no memory, too many threads)
///   costs its connection only: log [`Event::Dropped`] (the connection is closed when the
///   [`Work`] that owns it is dropped) and accept the next one.
/// - **Cleans up**: a finished thread is joined (its [`JoinHandle`] consumed) and no longer
///   counts as live. Keep the handles of live threads only.
/// - **Caps**: while `config.max_clients` threads are live, accepts nothing (log
///   [`Event::AtCapacity`] once) and waits until one finishes; meanwhile new connections wait in
///   the backlog. A finished thread must free its place even if its client misbehaved.
/// - `accept` errors as in step 1: go on after [`is_per_connection`] ones, back off
///   [`ACCEPT_BACKOFF`] after [`is_resource_exhaustion`] ones (every live thread holds a
///   descriptor, so this is the model that runs out first).
/// - After `config.max_connections` connections, waits for (joins) every live thread, then
///   returns how many connections it accepted (dropped ones included).
///
/// # Errors
/// Any other `accept` error.
pub fn serve_threads_with(
    listener: &TcpListener,
    config: &ServerConfig,
    log: &Log,
    spawn: impl Fn(String, Work) -> io::Result<JoinHandle<()>>,
) -> io::Result<u64> {
    // >>> step 2 (listener, config, log, spawn): spawn a thread per connection (a failed spawn drops that one); join finished ones; wait at the cap; back off when out of descriptors
    // Each thread sends its number when it ends (even by a panic: the sender is dropped then,
    // and a disconnected receiver is handled below), so the loop learns which handle to join.
    let (done_tx, done_rx) = mpsc::channel::<u64>();
    let mut live: Vec<(u64, JoinHandle<()>)> = Vec::new();
    let mut accepted = 0u64;
    let join_finished = |live: &mut Vec<(u64, JoinHandle<()>)>, block: bool| {
        let first = if block {
            done_rx.recv_timeout(Duration::from_secs(1)).ok()
        } else {
            None
        };
        let mut finished: Vec<u64> = first.into_iter().collect();
        finished.extend(done_rx.try_iter());
        // A thread that panicked sent nothing: is_finished catches it too.
        let mut i = 0;
        while i < live.len() {
            if finished.contains(&live[i].0) || live[i].1.is_finished() {
                let (_, handle) = live.swap_remove(i);
                let _ = handle.join();
            } else {
                i += 1;
            }
        }
    };
    while more_connections(config, accepted) {
        join_finished(&mut live, false);
        if live.len() >= config.max_clients.max(1) {
            log(&Event::AtCapacity {
                max: config.max_clients,
            });
            while live.len() >= config.max_clients.max(1) {
                join_finished(&mut live, true);
            }
        }
        let (stream, peer) = match listener.accept() {
            Ok(connection) => connection,
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
        accepted += 1;
        let (config_, log_, done) = (config.clone(), Arc::clone(log), done_tx.clone());
        let number = accepted;
        let work: Work = Box::new(move || {
            serve_one(stream, peer, &config_, &log_);
            let _ = done.send(number);
        });
        match spawn(format!("client {peer}"), work) {
            Ok(handle) => {
                live.push((number, handle));
                log(&Event::Accepted {
                    peer,
                    worker: Worker::Thread,
                    live: live.len(),
                });
            }
            // The work, and the stream it owns, are gone: the connection is closed.
            Err(error) => log(&Event::Dropped { peer, error }),
        }
    }
    for (_, handle) in live {
        let _ = handle.join();
    }
    Ok(accepted)
    // <<<
}
// ANCHOR_END: serve_threads

/// Describes how a child ended, for [`Event::Reaped`]: `exit status 0`, `killed by SIGTERM`.
/// Given complete.
#[cfg(unix)]
pub fn describe(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit status {code}"),
        WaitStatus::Signaled(_, signal, _) => format!("killed by {}", signal.as_str()),
        other => format!("{other:?}"),
    }
}

// ANCHOR: reap_children
/// Step 3. Reaps every child in `children` that has finished, without waiting for the others:
/// collects its exit status with `waitpid(pid, WNOHANG)`, logs [`Event::Reaped`] and removes it
/// from `children`. Returns how many were reaped.
///
/// A child that has exited stays a **zombie** (an entry in the process table, state `Z` in
/// `ps`) until its parent collects its status; a server that forgets this fills the table.
/// Only the pids in `children` are waited for, never "any child" (`-1`): the caller may have
/// other children that are none of this function's business.
///
/// # Errors
/// An error of `waitpid` other than `ECHILD` (which means the pid is not, or no longer, our
/// child: it is removed from `children` without a log line).
#[cfg(unix)]
pub fn reap_children(children: &mut Vec<Pid>, log: &Log) -> io::Result<usize> {
    // >>> step 3 (children, log): waitpid(pid, WNOHANG) each child; log and forget those that ended
    let mut reaped = 0;
    let mut i = 0;
    while i < children.len() {
        let pid = children[i];
        match nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => i += 1,
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                children.swap_remove(i);
                reaped += 1;
                log(&Event::Reaped {
                    pid: pid.as_raw().unsigned_abs(),
                    how: describe(&status),
                });
            }
            // Stopped or continued: still alive, still ours.
            Ok(_) => i += 1,
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::ECHILD) => {
                children.swap_remove(i);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(reaped)
    // <<<
}
// ANCHOR_END: reap_children

// ANCHOR: signals
/// The forking server's watch for SIGINT and SIGTERM. Given complete.
///
/// On Linux and Android, [`Signals::watch`] blocks the two signals in the calling thread (so
/// their default action, ending the process, does not happen) and opens a `signalfd(2)`, from
/// which [`Signals::pending`] reads them without waiting. The forking server checks it between
/// connections and stops its children before it exits. [`fork_process`] unblocks them again in
/// each child, so a child dies of SIGINT or SIGTERM as usual.
///
/// The server stops its children with SIGTERM whichever of the two it received: a program
/// started in the background by a shell script (`server &`) inherits SIGINT *ignored*, and so do
/// its children, which a SIGINT would then not stop. (A blocked signal is still delivered to the
/// signalfd even when ignored, so the server itself does see SIGINT.)
///
/// On other Unix systems this is a no-op: the signals keep their default action (the server
/// dies at once), and a terminal's Ctrl-C still reaches the children, which share the server's
/// process group; `kill -TERM` on the server alone leaves them to finish their clients.
#[cfg(unix)]
pub struct Signals {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fd: nix::sys::signalfd::SignalFd,
}

#[cfg(unix)]
impl Signals {
    /// The signals watched: SIGINT (Ctrl-C) and SIGTERM (`kill`).
    fn set() -> nix::sys::signal::SigSet {
        let mut set = nix::sys::signal::SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        set
    }

    /// Starts watching SIGINT and SIGTERM (blocking them in this thread: call it before the
    /// process has other threads).
    ///
    /// # Errors
    /// When the signal mask cannot be changed or the signalfd cannot be opened.
    pub fn watch() -> io::Result<Signals> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use nix::sys::signalfd::{SfdFlags, SignalFd};
            Self::set().thread_block()?;
            let fd = SignalFd::with_flags(&Self::set(), SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
            Ok(Signals { fd })
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        Ok(Signals {})
    }

    /// The first watched signal received since the last call, if any; never waits.
    pub fn pending(&self) -> Option<Signal> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let info = self.fd.read_signal().ok().flatten()?;
            Signal::try_from(i32::try_from(info.ssi_signo).ok()?).ok()
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        None
    }
}
// ANCHOR_END: signals

// ANCHOR: fork_process
/// Creates a child process, a copy of this one, with `fork(2)`. Given complete: it holds the
/// lab's only `unsafe` code.
///
/// Returns [`ForkResult::Parent`] with the child's pid in the parent, and
/// [`ForkResult::Child`] in the child; both continue from here. The child gets a copy of the
/// parent's memory and **shares** its open file descriptions: every socket, including the
/// listening one, is open in both processes and is closed only when both have closed it.
///
/// Before forking, stdout and stderr are flushed (otherwise text still in the parent's buffer
/// would be printed twice, once by each process). In the child, SIGINT and SIGTERM are
/// unblocked again (the signal mask is inherited; see [`Signals`]).
///
/// # Errors
/// `io::ErrorKind::Other` when the process has more than one thread (Linux; see the safety
/// note below); `EAGAIN`/`ENOMEM` from `fork` when the system cannot create another process;
/// `EMFILE`/`ENFILE` when the process or the system has no descriptor left to read
/// `/proc/self/task` with (Linux).
#[cfg(unix)]
#[allow(unsafe_code)]
pub fn fork_process() -> io::Result<ForkResult> {
    io::stdout().flush()?;
    io::stderr().flush()?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let threads = std::fs::read_dir("/proc/self/task")?.count();
        if threads != 1 {
            return Err(io::Error::other(format!(
                "refusing to fork a process with {threads} threads (only the forking thread would \
                 exist in the child, and locks the others hold would stay locked forever)"
            )));
        }
    }
    // SAFETY: fork is unsafe because the child starts with a copy of the whole memory but only
    // the calling thread: a lock (the allocator's, stdout's, a Mutex) that another thread held
    // at that moment stays locked in the child forever, so a multi-threaded parent's child may
    // only call async-signal-safe functions until it execs or exits. This process has exactly
    // one thread (checked just above on Linux; the forking server runs in the main thread of a
    // program that starts no other, see `serve_fork`), so no lock can be held by anyone else
    // and the child may run ordinary Rust code (allocate, log, and exit with process::exit).
    let result = unsafe { nix::unistd::fork() }?;
    if let ForkResult::Child = result {
        Signals::set().thread_unblock()?;
    }
    Ok(result)
}
// ANCHOR_END: fork_process

/// Waits up to `tick` for a connection on `listener` and accepts it; `Ok(None)` when none came.
/// Given complete: it lets the forking server look at its children and at the signals between
/// connections, which a plain blocking `accept` would not (`accept` is retried after a signal).
///
/// The listener is switched to non-blocking mode; accepted streams are blocking.
///
/// # Errors
/// Errors of `poll(2)` and of `accept` (`WouldBlock` excepted).
#[cfg(unix)]
pub fn accept_within(listener: &TcpListener, tick: Duration) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    listener.set_nonblocking(true)?;
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(tick).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, timeout) {
        Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(e.into()),
    }
    match listener.accept() {
        Ok((stream, peer)) => {
            stream.set_nonblocking(false)?;
            Ok(Some((stream, peer)))
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

// ANCHOR: serve_fork
/// Step 4. The fork-per-connection server (Unix only). Takes `listener` by value: the child
/// must be able to close (drop) its copy.
///
/// Loops until `config.max_connections` connections have been accepted:
/// - if `signals` has a signal pending, logs [`Event::Stopping`], stops the children with
///   [`stop_children`] and SIGTERM (whichever signal arrived), and returns;
/// - reaps finished children with [`reap_children`];
/// - at the cap (`config.max_clients` children alive) logs [`Event::AtCapacity`] once and
///   accepts nothing: sleeps [`TICK`] and loops;
/// - otherwise waits up to [`TICK`] for a connection with [`accept_within`] (`accept` errors as
///   in step 1: go on after [`is_per_connection`] ones, back off [`ACCEPT_BACKOFF`] after
///   [`is_resource_exhaustion`] ones), then forks with [`fork_process`]:
///   - the **child** drops the listening socket, serves the connection with [`serve_one`], and
///     exits with `std::process::exit` (status 0, or 1 when the connection failed). It never
///     returns into the loop.
///   - the **parent** drops the connected socket, remembers the child's pid, and logs
///     [`Event::Accepted`] with [`Worker::Child`].
///   - when [`fork_process`] fails for lack of descriptors or memory
///     ([`is_resource_exhaustion`]), there is no child: log [`Event::Dropped`], drop the
///     connection, sleep [`ACCEPT_BACKOFF`], and go on.
///
/// After the last connection it waits (reaping, watching `signals`) until every child has
/// ended, and returns how many connections it accepted (dropped ones included).
///
/// Must run in a single-threaded process (see [`fork_process`]).
///
/// # Errors
/// Other `accept` errors, other errors of [`fork_process`] (a process with several threads,
/// `EAGAIN`), and errors of [`reap_children`] and [`stop_children`].
#[cfg(unix)]
pub fn serve_fork(
    listener: TcpListener,
    config: &ServerConfig,
    signals: &Signals,
    log: &Log,
) -> io::Result<u64> {
    // >>> step 4 (listener, config, signals, log): fork per connection; child: drop listener, serve, exit; parent: drop stream, reap; back off when out of descriptors
    let mut children: Vec<Pid> = Vec::new();
    let mut accepted = 0u64;
    let mut at_capacity = false;
    loop {
        if let Some(signal) = signals.pending() {
            log(&Event::Stopping {
                signal: signal.as_str().to_owned(),
                children: children.len(),
            });
            // SIGTERM whatever the server received: a child may ignore SIGINT (see Signals).
            stop_children(&mut children, Signal::SIGTERM, log)?;
            return Ok(accepted);
        }
        reap_children(&mut children, log)?;
        if !more_connections(config, accepted) {
            if children.is_empty() {
                return Ok(accepted);
            }
            thread::sleep(TICK);
            continue;
        }
        if children.len() >= config.max_clients.max(1) {
            if !at_capacity {
                log(&Event::AtCapacity {
                    max: config.max_clients,
                });
                at_capacity = true;
            }
            thread::sleep(TICK);
            continue;
        }
        at_capacity = false;
        let (stream, peer) = match accept_within(&listener, TICK) {
            Ok(Some(connection)) => connection,
            Ok(None) => continue,
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
        accepted += 1;
        let forked = match fork_process() {
            Ok(forked) => forked,
            Err(error) if is_resource_exhaustion(&error) => {
                drop(stream);
                log(&Event::Dropped { peer, error });
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
            Err(error) => return Err(error),
        };
        match forked {
            ForkResult::Child => {
                // The child serves this one client: it needs no listening socket. Keeping it
                // would keep the server's port open after the parent has gone.
                drop(listener);
                let ok = serve_one(stream, peer, config, log);
                std::process::exit(if ok { 0 } else { 1 });
            }
            ForkResult::Parent { child } => {
                // The child has its own copy of the connection; the parent's copy would keep
                // the connection open (no EOF for the client) after the child has closed it.
                drop(stream);
                children.push(child);
                log(&Event::Accepted {
                    peer,
                    worker: Worker::Child(child.as_raw().unsigned_abs()),
                    live: children.len(),
                });
            }
        }
    }
    // <<<
}
// ANCHOR_END: serve_fork

// ANCHOR: stop_children
/// Step 5. Stops every child in `children`: sends each one `signal` (SIGINT or SIGTERM) with
/// `kill(2)`, then waits for each one (a blocking `waitpid(pid)`), logs [`Event::Reaped`] and
/// removes it. On return `children` is empty and no zombie is left.
///
/// A child that has already exited but not yet been reaped can still be signalled (nothing
/// happens) and waited for; one that is not our child any more (`ESRCH` from `kill`, `ECHILD`
/// from `waitpid`) is removed without a log line.
///
/// # Errors
/// Other errors of `kill` or `waitpid` (`EINTR` is retried); the children not yet handled stay
/// in `children`.
#[cfg(unix)]
pub fn stop_children(children: &mut Vec<Pid>, signal: Signal, log: &Log) -> io::Result<()> {
    // >>> step 5 (children, signal, log): kill(pid, signal) each child, then waitpid(pid) each, logging Reaped
    use nix::errno::Errno;
    for pid in children.iter() {
        match nix::sys::signal::kill(*pid, signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => return Err(e.into()),
        }
    }
    while let Some(&pid) = children.last() {
        match nix::sys::wait::waitpid(pid, None) {
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => log(&Event::Reaped {
                pid: pid.as_raw().unsigned_abs(),
                how: describe(&status),
            }),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => {}
            Err(e) => return Err(e.into()),
        }
        children.pop();
    }
    Ok(())
    // <<<
}
// ANCHOR_END: stop_children
