//! Support for the grading suites: nothing hangs, nothing collides, failures explain themselves.
//!
//! The rules the suites follow (see the book's instructor guide):
//! - every socket binds port 0 on a loopback address and gets read and write timeouts
//!   ([`udp_socket`], [`IO_TIMEOUT`]);
//! - a server under test runs either in a thread of the test ([`ServerThread`]), whose panic
//!   (for example a skeleton's `todo!()`) fails the test at once with the panic message, or as a
//!   child process ([`ServerProcess`]) whose ready line is awaited with a deadline and which is
//!   killed and reaped when the guard is dropped;
//! - failures explain themselves: a [`Transcript`] records what the test did and prints it,
//!   with expected, got, why and the book section; payloads show as escaped text ([`sized`]);
//! - notices (a test skipped for lack of IPv6 or python3) reach the terminal even though the
//!   test harness captures output ([`notice`]).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use crate::transcript::{Payload, Transcript, count, escaped, sized};

/// Read and write timeout on every socket a test creates: 5000 ms. Generous, because CI
/// machines are small and busy; a correct implementation answers in microseconds on loopback.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a test waits for a spawned server's ready line: 10000 ms.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often waiting loops look at a server thread or process again: 20 ms.
const POLL: Duration = Duration::from_millis(20);

/// IPv4 loopback, 127.0.0.1.
pub const LOCALHOST_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// IPv6 loopback, ::1.
pub const LOCALHOST_V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// A UDP socket bound to `127.0.0.1:0` (an ephemeral port) with [`IO_TIMEOUT`] on reads and writes.
///
/// # Panics
/// When the socket cannot be created or configured: the test cannot run at all.
pub fn udp_socket() -> UdpSocket {
    udp_socket_on(LOCALHOST_V4)
}

/// A UDP socket bound to port 0 of the loopback address `ip`, with [`IO_TIMEOUT`] set.
///
/// # Panics
/// When `ip` is not a loopback address (tests stay on this machine), or the socket cannot be
/// created or configured.
pub fn udp_socket_on(ip: IpAddr) -> UdpSocket {
    assert!(ip.is_loopback(), "tests use loopback addresses only, not {ip}");
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0))
        .unwrap_or_else(|e| panic!("test set-up: cannot bind a UDP socket on {ip}: {e}"));
    set_timeouts(&socket);
    socket
}

/// Sets [`IO_TIMEOUT`] as the read and write timeout of `socket`.
///
/// # Panics
/// When the operating system refuses the option.
pub fn set_timeouts(socket: &UdpSocket) {
    socket
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| socket.set_write_timeout(Some(IO_TIMEOUT)))
        .unwrap_or_else(|e| panic!("test set-up: cannot set socket timeouts: {e}"));
}

/// Whether this host has a usable IPv6 loopback (`::1`); some containers and CI hosts do not.
pub fn ipv6_loopback_available() -> bool {
    UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}

/// Whether a `python3` interpreter runs on this host (for the interoperability tests).
pub fn python3_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Prints `notice: {message}` straight to the terminal, past the test harness's capture, so
/// that a skipped check is visible in a normal `cargo test` run.
pub fn notice(message: &str) {
    let _ = writeln!(io::stderr(), "notice: {message}");
}

/// Extracts the message of a panic payload (`&str` or `String`), as `todo!()` produces.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

/// A server (or any code under test) running in a thread of the test process.
///
/// Waiting methods check the thread between short polls: when it has panicked, the test fails at
/// once with the panic's message (`not yet implemented: lab 01 step 3: ...`) instead of waiting
/// for a socket timeout.
pub struct ServerThread<T> {
    name: String,
    state: ThreadState<T>,
}

/// Where a [`ServerThread`] is: running, finished with its result kept (a check that finds the
/// thread done joins it, and the result must still be there for a later `join_within`), or
/// joined and its result handed out.
enum ThreadState<T> {
    Running(JoinHandle<T>),
    Finished(T),
    Joined,
}

impl<T: Send + 'static> ServerThread<T> {
    /// Runs `f` in a new thread named `name` (the name appears in failure messages).
    pub fn spawn(name: &str, f: impl FnOnce() -> T + Send + 'static) -> Self {
        let handle = thread::Builder::new()
            .name(name.to_owned())
            .spawn(f)
            .unwrap_or_else(|e| panic!("test set-up: cannot spawn thread {name}: {e}"));
        ServerThread {
            name: name.to_owned(),
            state: ThreadState::Running(handle),
        }
    }

    /// Fails the test with the thread's panic message if it has panicked. A thread that
    /// finished normally is joined and its result kept for [`ServerThread::join_within`].
    ///
    /// # Panics
    /// When the thread has panicked.
    pub fn check(&mut self) {
        if !matches!(&self.state, ThreadState::Running(h) if h.is_finished()) {
            return;
        }
        if let ThreadState::Running(handle) = std::mem::replace(&mut self.state, ThreadState::Joined) {
            match handle.join() {
                Ok(value) => self.state = ThreadState::Finished(value),
                Err(payload) => panic!("{} panicked: {}", self.name, panic_message(&*payload)),
            }
        }
    }

    /// Waits up to `timeout` for the thread to finish and returns its result.
    ///
    /// # Panics
    /// When the thread panicked (with its message), or is still running after `timeout`.
    pub fn join_within(mut self, timeout: Duration) -> T {
        let deadline = Instant::now() + timeout;
        let handle = match std::mem::replace(&mut self.state, ThreadState::Joined) {
            ThreadState::Running(handle) => handle,
            ThreadState::Finished(value) => return value,
            ThreadState::Joined => panic!("test set-up: {} was already joined", self.name),
        };
        while !handle.is_finished() {
            assert!(
                Instant::now() < deadline,
                "{} did not finish within {} ms",
                self.name,
                timeout.as_millis()
            );
            thread::sleep(POLL);
        }
        handle
            .join()
            .unwrap_or_else(|payload| panic!("{} panicked: {}", self.name, panic_message(&*payload)))
    }

    /// Receives one datagram on `socket` within [`IO_TIMEOUT`], checking this thread meanwhile.
    ///
    /// Returns the bytes and the sender. `what` names the awaited datagram in the failure
    /// message ("the reply to 'hello'").
    ///
    /// # Panics
    /// When this thread panics, or nothing arrives within [`IO_TIMEOUT`].
    pub fn recv_from(&mut self, socket: &UdpSocket, what: &str) -> (Vec<u8>, SocketAddr) {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut buf = vec![0u8; 65_536];
        let restore = socket.read_timeout().ok().flatten();
        let _ = socket.set_read_timeout(Some(POLL));
        let result = loop {
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => break Ok((buf[..n].to_vec(), from)),
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
            self.check();
            if Instant::now() >= deadline {
                break Err(io::Error::new(io::ErrorKind::TimedOut, "nothing arrived"));
            }
        };
        let _ = socket.set_read_timeout(restore);
        result.unwrap_or_else(|e| {
            panic!(
                "waited {} ms for {what} from {}: {e}",
                IO_TIMEOUT.as_millis(),
                self.name
            )
        })
    }
}

/// Runs `f` (a call into the code under test that might block) in its own thread and waits at
/// most `limit` for its result, so a call that waits forever fails its test instead of hanging
/// the suite. `what` names the call in the failure message.
///
/// # Panics
/// When `f` panics (with its message) or is still running after `limit` (the thread is left
/// behind; the test process ends soon after).
pub fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    ServerThread::spawn(what, f).join_within(limit)
}

/// Runs `bin` with `args` to completion, capturing stdout and stderr, and kills it if it is still
/// running after `limit`.
///
/// Unlike `assert_cmd`'s `timeout`, this installs no `SIGCHLD` handler: a signal handler in the
/// test process would make socket reads with a timeout in *other* test threads fail with
/// `io::ErrorKind::Interrupted` (signal(7): they are never restarted).
///
/// # Panics
/// When the program cannot start, or runs past `limit` (it is then killed and reaped).
pub fn run_within(bin: &str, args: &[&str], limit: Duration) -> Output {
    let description = format!("`{} {}`", short_name(bin), args.join(" "));
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("test set-up: cannot start {description}: {e}"));
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
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{description} was still running after {} ms; killed it",
                    limit.as_millis()
                );
            }
        }
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Runs `bin` with `args`, which it must refuse before doing anything else: it exits with
/// `code` (2 is clap's usage error) within 10 s, and the first line of its stderr is an error
/// (`error: ...` from clap, `Error: ...` from anyhow) that holds `says`. For the tests of a
/// lab's command line (`solutions/NN-slug/tests/cli.rs`).
///
/// # Panics
/// When it runs on, exits with another status, or says something else first; the message
/// gives the arguments and the whole stderr.
pub fn assert_refused(bin: &str, args: &[&str], code: i32, says: &str) {
    let out = run_within(bin, args, Duration::from_secs(10));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}: the exit status; stderr: {err}"
    );
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.to_ascii_lowercase().starts_with("error: ") && first.contains(says),
        "{args:?}: the first line of stderr should be an error that holds {says:?}; stderr: {err}"
    );
}

/// Runs `bin` with `args` (a request for help, such as `["server", "--help"]`), which must
/// succeed within 10 s and print every one of `mentions` on stdout. For the tests of a lab's
/// command line: an option, a default (`[default: 6790]`) or a lesson word the help must show.
///
/// # Panics
/// When it fails or runs on, or when some mentions are missing; the message lists those missing
/// and the whole help text.
pub fn assert_help_mentions(bin: &str, args: &[&str], mentions: &[&str]) {
    let out = run_within(bin, args, Duration::from_secs(10));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: should succeed, but {}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let missing: Vec<&str> = mentions.iter().copied().filter(|m| !help.contains(m)).collect();
    assert!(
        missing.is_empty(),
        "{args:?}: the help should mention {missing:?}; it printed:\n{help}"
    );
}

/// Runs `bin --version`, which must succeed within 10 s and print one line: the program's name
/// (the file name of `bin`, which clap takes from the package) and `version` (pass
/// `env!("CARGO_PKG_VERSION")`).
///
/// # Panics
/// When it fails, runs on or prints anything else; the message quotes what it printed.
pub fn assert_version(bin: &str, version: &str) {
    let out = run_within(bin, &["--version"], Duration::from_secs(10));
    let printed = String::from_utf8_lossy(&out.stdout);
    let expected = format!("{} {version}\n", short_name(bin));
    assert!(
        out.status.success() && printed == expected,
        "`--version` should print {expected:?} and succeed; it printed {printed:?} and {}",
        out.status
    );
}

/// Whether `e` is what a socket read timeout produces (`WouldBlock` on Unix, `TimedOut` on Windows).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// A server binary running as a child process, killed and reaped when dropped.
///
/// [`ServerProcess::start`] waits for the ready line (`listening on IP:PORT`) with a deadline;
/// the server's stderr is collected so failure messages can show it.
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Set once stderr reached end of file (the process exited) and every line was collected.
    stderr_done: Arc<AtomicBool>,
    description: String,
}

impl ServerProcess {
    /// Starts `bin` with `args` and waits up to [`READY_TIMEOUT`] for its ready line.
    ///
    /// # Panics
    /// When the program cannot start, exits or prints something else first, or stays silent
    /// past the deadline; the message includes what it printed on stderr (where a skeleton's
    /// `todo!()` panic appears).
    pub fn start(bin: &str, args: &[&str]) -> Self {
        let description = format!("`{} {}`", short_name(bin), args.join(" "));
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("test set-up: cannot start {description}: {e}"));
        let (tx, stdout) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_done = Arc::new(AtomicBool::new(false));
        if let Some(err) = child.stderr.take() {
            let (sink, done) = (Arc::clone(&stderr), Arc::clone(&stderr_done));
            thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if let Ok(mut lines) = sink.lock() {
                        lines.push(line);
                    }
                }
                done.store(true, Ordering::SeqCst);
            });
        }
        let mut server = ServerProcess {
            child,
            addr: SocketAddr::new(LOCALHOST_V4, 0),
            stdout,
            stderr,
            stderr_done,
            description,
        };
        server.addr = server.await_ready_line();
        server
    }

    fn await_ready_line(&mut self) -> SocketAddr {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.stdout.recv_timeout(POLL) {
                Ok(line) => {
                    return crate::ready::parse(&line).unwrap_or_else(|| {
                        panic!(
                            "{}: first stdout line was {line:?}, expected `listening on IP:PORT` \
                             (see Lab 01, the ready line){}",
                            self.description,
                            self.stderr_report()
                        )
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // stdout closed: the process is exiting; give stderr a moment to arrive.
                    let status = self.wait_exit(Duration::from_secs(2));
                    panic!(
                        "{} exited ({}) before printing its ready line `listening on IP:PORT`{}",
                        self.description,
                        status.map_or("still running".to_owned(), |s| s.to_string()),
                        self.stderr_report()
                    );
                }
                Err(RecvTimeoutError::Timeout) => {
                    assert!(
                        Instant::now() < deadline,
                        "{} printed no ready line within {} ms (print `listening on IP:PORT` \
                         and flush stdout once the socket is bound){}",
                        self.description,
                        READY_TIMEOUT.as_millis(),
                        self.stderr_report()
                    );
                }
            }
        }
    }

    /// The endpoint from the ready line.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the server printed on stderr so far, as a block to append to a failure message.
    pub fn log(&self) -> String {
        format!(
            "\n--- the server's stderr ---\n{}",
            self.stderr_lines().join("\n")
        )
    }

    /// Everything the server printed on stderr so far, one entry per line.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn stderr_report(&self) -> String {
        // Let the stderr reader catch up with a process that just died.
        self.await_stderr_end(Duration::from_millis(200));
        let lines = self.stderr_lines();
        if lines.is_empty() {
            String::new()
        } else {
            format!("\n--- its stderr ---\n{}", lines.join("\n"))
        }
    }

    /// Waits up to `timeout` for a stderr line containing `needle` and returns it.
    ///
    /// # Panics
    /// When no such line appears in time (the message shows what the server did log).
    pub fn expect_stderr(&self, needle: &str, timeout: Duration) -> String {
        self.expect_stderr_lines(needle, 1, timeout).remove(0)
    }

    /// Waits up to `timeout` until `count` stderr lines contain `needle`, and returns them all.
    ///
    /// # Panics
    /// When fewer lines appear in time, or at once when the process has exited without logging
    /// them (a skeleton's `todo!()` panic, say); the message shows what the server did log.
    pub fn expect_stderr_lines(&self, needle: &str, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self.stderr_done.load(Ordering::SeqCst);
            let found: Vec<String> = self
                .stderr_lines()
                .into_iter()
                .filter(|l| l.contains(needle))
                .collect();
            if found.len() >= count {
                return found;
            }
            assert!(
                !exited,
                "{} exited after logging {} of the {count} expected lines containing {needle:?}{}",
                self.description,
                found.len(),
                self.stderr_report()
            );
            assert!(
                Instant::now() < deadline,
                "{} logged {} of the {count} expected lines containing {needle:?} within {} ms{}",
                self.description,
                found.len(),
                timeout.as_millis(),
                self.stderr_report()
            );
            thread::sleep(POLL);
        }
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    ///
    /// Once it has exited, this also waits (up to 2 s more) for its stderr to reach end of file,
    /// so [`ServerProcess::stderr_lines`] then holds every line it wrote: a reader that lags
    /// behind the exit must not make a test miss the last lines of the log. (A forked child
    /// still holding stderr open after its parent exited delays end of file; hence the bound.)
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.await_stderr_end(Duration::from_secs(2));
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
                _ => return None,
            }
        }
    }

    /// Waits up to `limit` for the stderr reader to reach end of file; true if it did.
    fn await_stderr_end(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.stderr_done.load(Ordering::SeqCst) {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Kill and reap: no orphaned servers, no zombies, whatever the test's outcome.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn short_name(bin: &str) -> &str {
    std::path::Path::new(bin)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(bin)
}

// ---------------------------------------------------------------------------------------------
// TCP (Lab 02 on): streams with timeouts, and reads that watch the server thread.

/// A TCP listener on `127.0.0.1:0` (an ephemeral port). Connections to it complete (they wait
/// in its backlog) even before anyone calls `accept`.
///
/// # Panics
/// When the socket cannot be created.
pub fn tcp_listener() -> TcpListener {
    TcpListener::bind((LOCALHOST_V4, 0))
        .unwrap_or_else(|e| panic!("test set-up: cannot listen on a TCP socket on 127.0.0.1: {e}"))
}

/// A TCP connection to `addr` (a loopback address), made within [`IO_TIMEOUT`], with
/// [`IO_TIMEOUT`] as its read and write timeout.
///
/// # Panics
/// When `addr` is not a loopback address, or the connection fails: the test cannot run.
pub fn tcp_connect(addr: SocketAddr) -> TcpStream {
    assert!(
        addr.ip().is_loopback(),
        "tests use loopback addresses only, not {addr}"
    );
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("test set-up: cannot connect to {addr}: {e}"));
    set_stream_timeouts(&stream);
    stream
}

/// A connected pair on loopback, both ends with [`IO_TIMEOUT`] set: `(client, server)`, where
/// `server` is the end `accept` returned.
///
/// # Panics
/// When the sockets cannot be created or connected.
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = tcp_listener();
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("test set-up: no local address: {e}"));
    let client = tcp_connect(addr);
    // The connection is already in the backlog, so accept returns at once.
    let (server, _) = listener
        .accept()
        .unwrap_or_else(|e| panic!("test set-up: cannot accept: {e}"));
    set_stream_timeouts(&server);
    (client, server)
}

/// Sets [`IO_TIMEOUT`] as the read and write timeout of `stream`.
///
/// # Panics
/// When the operating system refuses the option.
pub fn set_stream_timeouts(stream: &TcpStream) {
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .unwrap_or_else(|e| panic!("test set-up: cannot set stream timeouts: {e}"));
}

impl<T: Send + 'static> ServerThread<T> {
    /// Reads exactly `len` bytes from `stream`, checking this thread between short polls, and
    /// gives up when no byte arrives for [`IO_TIMEOUT`].
    ///
    /// # Panics
    /// When this thread panics, the stream ends or fails first, or it stalls for [`IO_TIMEOUT`];
    /// the message names `what` and shows the bytes that did arrive.
    pub fn read_exact_from(&mut self, stream: &TcpStream, len: usize, what: &str) -> Vec<u8> {
        let mut got = Vec::with_capacity(len);
        let end = self.poll_read(stream, &mut got, Some(len));
        if got.len() < len {
            panic!(
                "waited for {what} ({len} bytes) from {}: {end}; got {} bytes: {:?}",
                self.name,
                got.len(),
                String::from_utf8_lossy(&got)
            );
        }
        got
    }

    /// Reads `stream` to its end (EOF), checking this thread between short polls; waits as long
    /// as bytes keep coming, and gives up when none arrives for [`IO_TIMEOUT`].
    ///
    /// Returns the bytes, or the error that ended the stream instead of EOF (for example
    /// `ConnectionReset` when the peer closed with unread data), with the bytes read before it.
    ///
    /// # Panics
    /// When this thread panics, or the stream stalls for [`IO_TIMEOUT`] without reaching EOF
    /// ("the server never closed": the message names `what` and shows what arrived).
    pub fn read_to_eof_from(
        &mut self,
        stream: &TcpStream,
        what: &str,
    ) -> Result<Vec<u8>, (io::Error, Vec<u8>)> {
        let mut got = Vec::new();
        match self.poll_read(stream, &mut got, None) {
            StreamEnd::Eof => Ok(got),
            StreamEnd::Error(e) => Err((e, got)),
            StreamEnd::Stalled => panic!(
                "waited for {what} from {}: no byte and no EOF for {} ms (the connection was never \
                 closed); got {} bytes: {:?}",
                self.name,
                IO_TIMEOUT.as_millis(),
                got.len(),
                String::from_utf8_lossy(&got[..got.len().min(200)])
            ),
            StreamEnd::Enough => Ok(got),
        }
    }

    fn poll_read(&mut self, stream: &TcpStream, got: &mut Vec<u8>, want: Option<usize>) -> StreamEnd {
        let restore = stream.read_timeout().ok().flatten();
        let _ = stream.set_read_timeout(Some(POLL));
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_progress = Instant::now();
        let mut reader = stream;
        let end = loop {
            let room = want.map_or(buf.len(), |w| (w - got.len()).min(buf.len()));
            if room == 0 {
                break StreamEnd::Enough;
            }
            match reader.read(&mut buf[..room]) {
                Ok(0) => break StreamEnd::Eof,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    last_progress = Instant::now();
                    continue;
                }
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break StreamEnd::Error(e),
            }
            self.check();
            if last_progress.elapsed() >= IO_TIMEOUT {
                break StreamEnd::Stalled;
            }
        };
        let _ = stream.set_read_timeout(restore);
        end
    }
}

/// Reads `stream` until its peer closes it (end of stream or a reset), discarding what arrives,
/// for the robustness tests: an attacker's connection must be closed by the server.
///
/// # Panics
/// When the connection stays open for 5 s (`what` names it in the message).
pub fn await_close(stream: &mut TcpStream, what: &str) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("test set-up: cannot set a read timeout: {e}"));
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                return;
            }
            Err(e) => panic!("{what}: the server did not close the connection within 5 s ({e})"),
        }
    }
}

/// Writes up to `total` bytes, `piece` repeated, in 64 KiB writes, until one fails (the peer
/// closed or reset) or 5 s pass with no progress; returns how many bytes were written.
pub fn write_until_closed(stream: &mut TcpStream, piece: &[u8], total: usize) -> usize {
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("test set-up: cannot set a write timeout: {e}"));
    let chunk: Vec<u8> = piece.iter().copied().cycle().take(64 * 1024).collect();
    let mut written = 0;
    while written < total {
        match stream.write(&chunk) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    written
}

/// How a polled read ended.
enum StreamEnd {
    Enough,
    Eof,
    Error(io::Error),
    Stalled,
}

impl std::fmt::Display for StreamEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamEnd::Enough => f.write_str("done"),
            StreamEnd::Eof => f.write_str("the stream ended (EOF) first"),
            StreamEnd::Error(e) => write!(f, "the stream failed: {e}"),
            StreamEnd::Stalled => write!(f, "nothing arrived for {} ms", IO_TIMEOUT.as_millis()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_found_by_check_is_kept_for_join() {
        let mut t = ServerThread::spawn("quick", || 42);
        while !matches!(&t.state, ThreadState::Running(h) if h.is_finished()) {
            thread::sleep(Duration::from_millis(1));
        }
        t.check();
        assert!(matches!(t.state, ThreadState::Finished(42)));
        assert_eq!(t.join_within(Duration::from_secs(1)), 42);
    }

    #[test]
    fn the_whole_log_is_there_once_wait_exit_returns() {
        // A process that writes many lines and exits at once: without waiting for end of file,
        // the reader thread is often still behind when the exit is seen.
        let script = "i=0; while [ $i -lt 2000 ]; do echo line $i >&2; i=$((i+1)); done; echo listening on 127.0.0.1:9; exit 0";
        if !std::path::Path::new("/bin/sh").exists() {
            return;
        }
        let mut server = ServerProcess::start("/bin/sh", &["-c", script]);
        let status = server.wait_exit(Duration::from_secs(10));
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
        let lines = server.stderr_lines();
        assert_eq!(lines.len(), 2000, "last line: {:?}", lines.last());
    }
}

/// How often [`with_interrupts`] signals the thread running the call under test: 20 ms.
#[cfg(unix)]
pub const INTERRUPT_EVERY: Duration = Duration::from_millis(20);

/// Runs `f` on a thread of its own and, until it returns, sends that thread `SIGUSR1` every
/// [`INTERRUPT_EVERY`]; returns what `f` returned and how many signals were sent.
///
/// The handler installed for `SIGUSR1` (once per process, through `signal-hook`) does nothing,
/// so each signal only interrupts the system call the thread is blocked in. Linux never restarts
/// a socket call that has a timeout set (`SO_RCVTIMEO`/`SO_SNDTIMEO`, see signal(7)), so such a
/// call fails with `io::ErrorKind::Interrupted` (EINTR): the code under test must retry it, as
/// it would after any signal. A test arranges for its data to arrive only after a few signals
/// (say, 200 ms later), then checks the call still succeeded. Unix only (`pthread_kill(3)`).
///
/// # Panics
/// When the handler cannot be installed; `f`'s own panic is passed on.
#[cfg(unix)]
pub fn with_interrupts<T: Send>(f: impl FnOnce() -> T + Send) -> (T, usize) {
    use nix::sys::pthread::{pthread_kill, pthread_self};
    use nix::sys::signal::Signal;
    use std::sync::OnceLock;

    static HANDLER: OnceLock<()> = OnceLock::new();
    HANDLER.get_or_init(|| {
        // The flag is never read: the handler exists so that SIGUSR1 interrupts instead of
        // killing the process.
        let flag = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGUSR1, flag)
            .expect("install a SIGUSR1 handler for the EINTR tests");
    });
    // `done` is set under the lock by the worker before it ends; the signaller signals only while
    // holding the lock and seeing `done` unset, so it never signals a thread that has exited.
    let done = Mutex::new(false);
    let (tid_tx, tid_rx) = mpsc::channel();
    thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let _ = tid_tx.send(pthread_self());
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            *done.lock().unwrap_or_else(|p| p.into_inner()) = true;
            result
        });
        let mut sent = 0;
        if let Ok(tid) = tid_rx.recv() {
            loop {
                {
                    let finished = done.lock().unwrap_or_else(|p| p.into_inner());
                    if *finished {
                        break;
                    }
                    if pthread_kill(tid, Signal::SIGUSR1).is_ok() {
                        sent += 1;
                    }
                }
                thread::sleep(INTERRUPT_EVERY);
            }
        }
        match worker.join() {
            Ok(Ok(value)) => (value, sent),
            Ok(Err(panic)) | Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(all(test, unix))]
mod interrupt_tests {
    use super::*;

    #[test]
    fn a_blocked_socket_read_with_a_timeout_fails_with_interrupted() {
        let socket = udp_socket();
        let (result, sent) = with_interrupts(|| {
            let mut buf = [0u8; 16];
            socket.recv_from(&mut buf).map(|_| ())
        });
        let e = result.expect_err("nothing was sent, so the read cannot succeed");
        assert_eq!(e.kind(), io::ErrorKind::Interrupted, "{e}");
        assert!(sent >= 1);
    }

    #[test]
    fn a_call_that_retries_survives_the_signals() {
        let socket = udp_socket();
        let to = socket.local_addr().expect("bound");
        let sender = thread::spawn(move || {
            thread::sleep(Duration::from_millis(150));
            udp_socket().send_to(b"late", to).expect("send");
        });
        let (got, sent) = with_interrupts(|| {
            let mut buf = [0u8; 16];
            loop {
                match socket.recv_from(&mut buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other.map(|(n, _)| buf[..n].to_vec()),
                }
            }
        });
        sender.join().expect("sender");
        assert_eq!(got.expect("the retried read gets the datagram"), b"late");
        assert!(sent >= 2, "only {sent} signals were sent in 150 ms");
    }
}
