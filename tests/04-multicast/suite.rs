//! Lab 04 grading suite: IP multicast.
//!
//! Shared by `lab04-multicast` (the student's work) and `solution04-multicast` (the reference):
//! each package's `tests/grade.rs` defines `lab` (its library) and `BIN` (its binary) and
//! includes this file. Tests are named `stepN_...` after the step of the book chapter they
//! check, so `cargo test -p lab04-multicast step3` runs the checks of step 3.
//!
//! Rules these tests keep (see the book's instructor guide):
//! - **loopback only**: every membership is on interface 127.0.0.1, every datagram is sent out
//!   of 127.0.0.1 with TTL 0, and before a socket set up by the code under test sends anything
//!   (or a binary that sends is started), its outgoing interface and TTL are read back and the
//!   test stops if they are not 127.0.0.1 and 0;
//! - **no collisions**: each test uses its own group in 239.255.0.0/16 ([`unique_group`]: the
//!   process id and a counter) and an ephemeral port, which its other sockets share by reuse;
//!   test sockets, like the reference, receive only the groups they joined;
//! - **no hangs**: every socket has read and write timeouts, calls that might block run on a
//!   thread of their own with a limit ([`bounded`]), binaries run in a guard that kills them on
//!   drop, and every wait has a deadline: a wrong implementation makes no test wait more than
//!   about 5 s;
//! - **failures teach**: each test records what it did in a [`Transcript`] and fails with the
//!   steps, what it expected, what it got, why that is a mistake and the book section.

use std::io::{self, BufRead, BufReader, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::{Child, Command as StdCommand, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[cfg(unix)]
use common::testing::with_interrupts;
use common::testing::{
    Transcript, escaped, is_timeout, notice, panic_message, set_timeouts, sized, udp_socket,
};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::{BIN, lab};

/// The only interface these tests use.
const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// An address no host should have (TEST-NET-3, RFC 5737): the "wrong interface".
const NOT_HERE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// How long a test waits for a datagram that must arrive: loopback delivers in microseconds,
/// so 2000 ms is generous even on a busy machine, and short enough that a suite full of
/// missing datagrams still ends quickly.
const RECV_WAIT: Duration = Duration::from_millis(2000);
/// How long a socket must stay silent once the datagram it must not get has reached another
/// socket of this host (the kernel hands a multicast datagram to all local members at once).
const QUIET: Duration = Duration::from_millis(300);
/// How long past its deadline a call to `receive` may run before the test calls it hung.
const CALL_SLACK: Duration = Duration::from_millis(3000);
/// Extra time allowed over a computed wait when timing a call, for slow, busy machines.
const SLACK: Duration = Duration::from_millis(2000);
/// How long a binary may take to print its ready line.
const READY_WAIT: Duration = Duration::from_secs(5);
/// How long a binary may run past the waits it was given before the test kills it.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// `--timeout` given to the binaries that must receive: each datagram they wait for comes
/// within milliseconds when all is well.
const BIN_TIMEOUT: &str = "3000";

/// A group for one test: 239.255.X.Y with X from the process id and Y from a counter, so
/// parallel tests never share a group, and parallel test processes (almost) never do; they
/// use different ports as well.
fn unique_group() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    Ipv4Addr::new(239, 255, (pid % 256) as u8, (1 + n % 254) as u8)
}

/// Send options on loopback with TTL 0 (the datagram may not leave the host).
fn on_loopback(loopback: bool) -> lab::SendOptions {
    lab::SendOptions {
        interface: LO,
        ttl: 0,
        loopback,
    }
}

/// The test's own member socket (not the student's code): reuse, only joined groups, bound to
/// `port` (0 for an ephemeral one), joined to `group` on 127.0.0.1, with timeouts.
fn test_member(group: Ipv4Addr, port: u16) -> UdpSocket {
    let setup = || -> io::Result<UdpSocket> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
        #[cfg(target_os = "linux")]
        let ip = match socket.set_multicast_all_v4(false) {
            Ok(()) => Ipv4Addr::UNSPECIFIED,
            Err(_) => group,
        };
        #[cfg(not(target_os = "linux"))]
        let ip = Ipv4Addr::UNSPECIFIED;
        socket.bind(&SocketAddrV4::new(ip, port).into())?;
        socket.join_multicast_v4(&group, &LO)?;
        Ok(socket.into())
    };
    let socket = setup().unwrap_or_else(|e| panic!("test set-up: cannot join {group} on {LO}: {e}"));
    set_timeouts(&socket);
    socket
}

/// The test's own sender (not the student's code): bound to 127.0.0.1, sending out of
/// 127.0.0.1 with TTL 0 and loopback on.
fn test_sender() -> UdpSocket {
    let socket = udp_socket();
    let sock = SockRef::from(&socket);
    sock.set_multicast_if_v4(&LO)
        .and_then(|()| sock.set_multicast_ttl_v4(0))
        .and_then(|()| sock.set_multicast_loop_v4(true))
        .unwrap_or_else(|e| panic!("test set-up: cannot set up a multicast sender: {e}"));
    socket
}

fn port_of(socket: &UdpSocket) -> u16 {
    addr_of(socket).port()
}

fn addr_of(socket: &UdpSocket) -> SocketAddr {
    socket.local_addr().expect("a bound socket has a local address")
}

/// Sends `payload` from the test's own `sender` to the group and records it.
fn send_from_test(t: &Transcript, sender: &UdpSocket, group: Ipv4Addr, port: u16, payload: &[u8]) {
    sender
        .send_to(payload, SocketAddrV4::new(group, port))
        .unwrap_or_else(|e| {
            panic!(
                "test set-up: cannot send {} to {group}:{port}: {e}",
                sized(payload)
            )
        });
    t.sent(
        payload,
        format_args!("the test's sender {}", addr_of(sender)),
        format_args!("{group}:{port}"),
    );
}

/// One datagram from `socket` within `wait` (a signal does not end the wait), or `None`; the
/// socket's timeouts are reset afterwards.
fn try_recv(socket: &UdpSocket, wait: Duration) -> io::Result<Option<(Vec<u8>, SocketAddr)>> {
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65_536];
    let result = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Ok(None);
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => break Ok(Some((buf[..n].to_vec(), from))),
            Err(e) if is_timeout(&e) => break Ok(None),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        }
    };
    set_timeouts(socket);
    result
}

/// Waits up to [`RECV_WAIT`] for a datagram at `who` (read by the test itself, not through
/// `receive`), checks that it holds `expected`, and returns its sender.
fn expect_datagram(
    t: &Transcript,
    socket: &UdpSocket,
    who: &str,
    expected: &[u8],
    why_missing: &str,
    why_different: &str,
) -> SocketAddr {
    match try_recv(socket, RECV_WAIT) {
        Ok(Some((got, from))) => {
            t.step(format_args!("{who} received {} from {from}", sized(&got)));
            t.check_bytes(&format!("the datagram at {who}"), expected, &got, why_different);
            from
        }
        Ok(None) => {
            t.step(format_args!(
                "waited {} ms at {who}: nothing arrived",
                RECV_WAIT.as_millis()
            ));
            t.fail(
                format_args!("{who} to receive {}", sized(expected)),
                format_args!("nothing within {} ms", RECV_WAIT.as_millis()),
                why_missing,
            )
        }
        Err(e) => t.fail(
            format_args!("{who} to receive {}", sized(expected)),
            format_args!("the test's own recv_from failed: {e}"),
            "the test could not read its socket; run it again",
        ),
    }
}

/// Checks that nothing arrives at `who` for [`QUIET`].
fn expect_silence(t: &Transcript, socket: &UdpSocket, who: &str, why: &str) {
    match try_recv(socket, QUIET) {
        Ok(None) => t.step(format_args!(
            "waited {} ms at {who}: nothing arrived",
            QUIET.as_millis()
        )),
        Ok(Some((got, from))) => {
            t.step(format_args!("{who} received {} from {from}", sized(&got)));
            t.fail(
                format_args!("nothing at {who} for {} ms", QUIET.as_millis()),
                format_args!("{} from {from}", sized(&got)),
                why,
            )
        }
        Err(e) => t.fail(
            format_args!("nothing at {who} for {} ms", QUIET.as_millis()),
            format_args!("recv_from failed: {e}"),
            why,
        ),
    }
}

/// Stops the test unless `socket` sends out of 127.0.0.1 with TTL 0 or 1: the suite never sends
/// on another interface, even when the code under test forgot an option.
fn check_stays_on_loopback(t: &Transcript, socket: &UdpSocket, whose: &str, why: &str) {
    let sock = SockRef::from(socket);
    let interface = sock.multicast_if_v4().expect("read IP_MULTICAST_IF");
    let ttl = sock.multicast_ttl_v4().expect("read IP_MULTICAST_TTL");
    t.step(format_args!(
        "read back {whose}: IP_MULTICAST_IF {interface}, IP_MULTICAST_TTL {ttl}"
    ));
    t.check(
        interface == LO && ttl <= 1,
        "interface 127.0.0.1 and the TTL asked for (0)",
        format_args!(
            "interface {interface}, TTL {ttl}; the test sent nothing, so that nothing left this \
             machine"
        ),
        why,
    );
}

/// Before running a binary that sends: checks, through the library the binary uses, that its
/// sockets would send out of 127.0.0.1 with TTL 0.
fn check_binary_stays_on_loopback(t: &Transcript) {
    let why = "the binary sends with your set_sending (step 4) and open_sender (step 5): make \
               their tests pass first; the test runs no binary that could send on the LAN";
    let probe = udp_socket();
    t.ok(
        lab::set_sending(&probe, &on_loopback(true)),
        "your set_sending(127.0.0.1, TTL 0) on a fresh socket",
        why,
    );
    check_stays_on_loopback(t, &probe, "a socket set up by your set_sending", why);
    let sender = t.ok(
        lab::open_sender(&on_loopback(true)),
        "your open_sender(127.0.0.1, TTL 0)",
        why,
    );
    check_stays_on_loopback(t, &sender, "the socket from your open_sender", why);
}

/// A member socket made by the code under test: `open`, then `join` on 127.0.0.1, with
/// timeouts set by the test. For tests of later steps: a failure names the step to fix first.
fn lab_member(t: &Transcript, group: Ipv4Addr, port: u16) -> UdpSocket {
    let socket = t.ok(
        lab::open(group, port),
        &format!("your open({group}, {port})"),
        "this test builds on open (step 2): make the step2 tests pass first",
    );
    set_timeouts(&socket);
    t.ok(
        lab::join(&socket, group, LO),
        &format!("your join({group}, 127.0.0.1)"),
        "this test builds on join (step 3): make the step3 tests pass first",
    );
    t.step(format_args!(
        "opened a member socket with your open and join: bound to {}, joined {group} on 127.0.0.1",
        addr_of(&socket)
    ));
    socket
}

/// Runs `f` (a call into the code under test that might block) on a thread of its own and waits
/// at most `limit` for it: `Err` says that it panicked (with the message, for a `todo!()`) or
/// was still running (the thread is left behind).
fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => Ok(value),
        Err(RecvTimeoutError::Disconnected) => Err(match worker.join() {
            Err(panic) => format!("it panicked: {}", panic_message(&*panic)),
            Ok(()) => "it ended without a result".to_owned(),
        }),
        Err(RecvTimeoutError::Timeout) => Err(format!("it was still running after {} ms", limit.as_millis())),
    }
}

/// `Ok(())` or the error with its kind.
fn outcome(result: &io::Result<()>) -> String {
    match result {
        Ok(()) => "Ok(())".to_owned(),
        Err(e) => format!("Err({:?}: {e})", e.kind()),
    }
}

/// A result of `receive`, with the payload escaped.
fn shown(result: &io::Result<Option<lab::Datagram>>) -> String {
    match result {
        Ok(Some(d)) => format!("a datagram {} from {}", sized(&d.payload), d.from),
        Ok(None) => "Ok(None)".to_owned(),
        Err(e) => format!("Err({:?}: {e})", e.kind()),
    }
}

/// What `receive` returned, or why it did not return; and how long the call took.
type Received = (Result<io::Result<Option<lab::Datagram>>, String>, Duration);

/// Calls your `receive(socket, now + wait)` on a thread of its own, giving up [`CALL_SLACK`]
/// after the deadline.
fn call_receive(socket: &Arc<UdpSocket>, wait: Duration) -> Received {
    let socket = Arc::clone(socket);
    let started = Instant::now();
    let result = bounded(wait + CALL_SLACK, move || {
        lab::receive(&socket, Instant::now() + wait)
    });
    (result, started.elapsed())
}

/// Receives one datagram through your `receive` (deadline [`RECV_WAIT`] away) and fails,
/// with `why_missing`, unless one came.
fn receive_one(t: &Transcript, socket: &Arc<UdpSocket>, who: &str, why_missing: &str) -> lab::Datagram {
    let (result, took) = call_receive(socket, RECV_WAIT);
    let expected = format!(
        "your receive at {who}, deadline {} ms away, to return a datagram",
        RECV_WAIT.as_millis()
    );
    match result {
        Ok(Ok(Some(d))) => {
            t.step(format_args!(
                "called your receive at {who}: a datagram {} from {} after {} ms",
                sized(&d.payload),
                d.from,
                took.as_millis()
            ));
            d
        }
        Ok(other) => {
            t.step(format_args!(
                "called your receive at {who}: {} after {} ms",
                shown(&other),
                took.as_millis()
            ));
            t.fail(expected, shown(&other), why_missing)
        }
        Err(stuck) => t.fail(
            expected,
            stuck,
            "receive must return by its deadline: set the read timeout to what is left before \
             each recv_from (see Lab 04 § Step 6: Receive with a deadline)",
        ),
    }
}

/// A peer or listener binary running as a child process, killed and reaped when dropped.
struct PeerProcess {
    child: Child,
    description: String,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// What a finished [`PeerProcess`] printed after its ready line, and how it ended.
struct Finished {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

impl PeerProcess {
    fn start(t: &Transcript, args: &[&str]) -> Self {
        let description = format!("`{} {}`", short(BIN), args.join(" "));
        let mut child = StdCommand::new(BIN)
            .args(args)
            // A panic's message is what the report needs, not the binary's backtrace.
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("test set-up: cannot start {description}: {e}"));
        t.step(format_args!("started {description}"));
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
        if let Some(err) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if let Ok(mut lines) = sink.lock() {
                        lines.push(line);
                    }
                }
            });
        }
        PeerProcess {
            child,
            description,
            stdout,
            stderr,
        }
    }

    fn stderr_now(&self) -> Vec<String> {
        thread::sleep(Duration::from_millis(50));
        self.stderr.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits for the ready line `joined GROUP on 127.0.0.1 port PORT` and returns PORT.
    fn ready(&mut self, t: &Transcript, group: Ipv4Addr) -> u16 {
        let prefix = format!("joined {group} on {LO} port ");
        let expected = format!("the ready line `{prefix}PORT` (with the real port) on stdout");
        let why = "the ready line comes once the socket has joined: the binary runs your \
                   check_addresses, open and join (steps 1 to 3) first";
        match self.stdout.recv_timeout(READY_WAIT) {
            Ok(line) => {
                t.step(format_args!("it printed {}", escaped(line.as_bytes())));
                match line
                    .strip_prefix(&prefix)
                    .and_then(|p| p.trim().parse().ok())
                    .filter(|&p| p != 0)
                {
                    Some(port) => port,
                    None => t.fail(expected, format_args!("{}", escaped(line.as_bytes())), why),
                }
            }
            Err(RecvTimeoutError::Disconnected) => t.fail(
                expected,
                format_args!(
                    "it ended without printing it; stderr: {}",
                    lines(&self.stderr_now())
                ),
                why,
            ),
            Err(RecvTimeoutError::Timeout) => t.fail(
                expected,
                format_args!(
                    "no line within {} ms; stderr: {}",
                    READY_WAIT.as_millis(),
                    lines(&self.stderr_now())
                ),
                why,
            ),
        }
    }

    /// Waits up to `limit` for the process to exit and collects what it printed; `why` says
    /// why it should have ended by then.
    fn finish(mut self, t: &Transcript, limit: Duration, why: &str) -> Finished {
        let deadline = Instant::now() + limit;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = self.child.kill();
                    t.fail(
                        format_args!("{} to exit within {} ms", self.description, limit.as_millis()),
                        format_args!(
                            "still running (the test killed it); stderr: {}",
                            lines(&self.stderr_now())
                        ),
                        why,
                    )
                }
            }
        };
        let mut stdout = Vec::new();
        // The reader ends when the pipe closes; wait a little for the last lines.
        while let Ok(line) = self.stdout.recv_timeout(Duration::from_secs(2)) {
            stdout.push(line);
        }
        let stderr = self.stderr_now();
        t.step(format_args!(
            "it exited with {}; stdout after the ready line: {}; stderr: {}",
            status_text(status),
            lines(&stdout),
            lines(&stderr)
        ));
        Finished {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to its end (at most [`EXIT_WAIT`]) and returns what it printed. (Not
/// assert_cmd's `timeout`: it installs a SIGCHLD handler, and a signal interrupts socket calls
/// with a timeout in every thread of the test process with `Interrupted`.)
fn run(t: &Transcript, args: &[&str], why_running: &str) -> Finished {
    PeerProcess::start(t, args).finish(t, EXIT_WAIT, why_running)
}

fn short(bin: &str) -> &str {
    std::path::Path::new(bin)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(bin)
}

fn status_text(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("status {code}"),
        None => "no status (killed by a signal)".to_owned(),
    }
}

/// Output lines, each escaped (empty ones left out), or "(nothing)".
fn lines(lines: &[String]) -> String {
    let shown: Vec<String> = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| escaped(l.as_bytes()))
        .collect();
    if shown.is_empty() {
        "(nothing)".to_owned()
    } else {
        shown.join(", ")
    }
}

/// "1 signal", "5 signals".
#[cfg(unix)]
fn signals_text(n: usize) -> String {
    if n == 1 {
        "1 signal".to_owned()
    } else {
        format!("{n} signals")
    }
}

/// The interfaces on which this host is a member of `group`, as Linux lists them in
/// `/proc/net/igmp` (a device line, then one tab-indented line per group, the address in hex
/// as the kernel stores it); `None` where that file does not exist.
fn igmp_memberships(group: Ipv4Addr) -> Option<Vec<String>> {
    let text = std::fs::read_to_string("/proc/net/igmp").ok()?;
    let wanted = format!("{:08X}", u32::from_ne_bytes(group.octets()));
    let mut device = String::new();
    let mut found = Vec::new();
    for line in text.lines().skip(1) {
        if line.starts_with('\t') {
            if line.split_whitespace().next() == Some(wanted.as_str()) {
                found.push(device.clone());
            }
        } else if let Some(name) = line.split_whitespace().nth(1) {
            device = name.to_owned();
        }
    }
    Some(found)
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

/// `len` bytes of lowercase letters, a pattern in which a cut shows.
fn letters(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Bytes that are not UTF-8: a lone continuation byte, 0xff and 0xfe (never in UTF-8), a NUL,
/// and a valid "é" (0xc3 0xa9) among them.
const NOT_UTF8: &[u8] = b"caf\xc3\xa9 \xff\xfe \x80\x00 end";

// ---------------------------------------------------------------------------------------------
// Step 1: check the group and the interface

#[test]
fn step1_accepts_every_group_in_224_0_0_0_slash_4() {
    let t = Transcript::new("Lab 04 § Group addresses");
    for group in [
        Ipv4Addr::new(224, 0, 0, 0),
        Ipv4Addr::new(224, 0, 0, 251),
        Ipv4Addr::new(232, 1, 2, 3),
        Ipv4Addr::new(239, 255, 0, 1),
        Ipv4Addr::new(239, 255, 255, 255),
    ] {
        let result = lab::check_addresses(group, LO);
        t.step(format_args!(
            "called check_addresses({group}, 127.0.0.1): {}",
            outcome(&result)
        ));
        let first = group.octets()[0];
        t.check(
            result.is_ok(),
            format_args!("Ok(()) for the group {group}"),
            outcome(&result),
            format_args!(
                "{group} is a group address: its first octet {first} is {first:08b} in binary, \
                 which starts with the bits 1110; groups run from 224.0.0.0 to 239.255.255.255, \
                 both ends included (Ipv4Addr::is_multicast tests exactly this)"
            ),
        );
    }
}

#[test]
fn step1_rejects_an_address_outside_224_0_0_0_slash_4() {
    let t = Transcript::new("Lab 04 § Group addresses");
    for group in [
        Ipv4Addr::new(223, 255, 255, 255),
        Ipv4Addr::new(240, 0, 0, 0),
        Ipv4Addr::BROADCAST,
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::UNSPECIFIED,
    ] {
        let result = lab::check_addresses(group, LO);
        t.step(format_args!(
            "called check_addresses({group}, 127.0.0.1): {}",
            outcome(&result)
        ));
        let first = group.octets()[0];
        let expected = format!("Err(InvalidInput) naming {group}");
        match result {
            Ok(()) => t.fail(
                expected,
                "Ok(())",
                format_args!(
                    "{group} was accepted as a group, but its first octet {first} is \
                     {first:08b} in binary, which does not start with 1110: only 224.0.0.0 to \
                     239.255.255.255 are IPv4 groups"
                ),
            ),
            Err(e) => {
                t.check(
                    e.kind() == ErrorKind::InvalidInput,
                    &expected,
                    format_args!("Err({:?}: {e})", e.kind()),
                    "an address that can never be a group is bad input: io::ErrorKind::InvalidInput",
                );
                t.check(
                    e.to_string().contains(&group.to_string()),
                    &expected,
                    format_args!("the message {}", escaped(e.to_string().as_bytes())),
                    format_args!("the error is the line the user sees: it must name the address {group}"),
                );
            }
        }
    }
}

#[test]
fn step1_rejects_an_interface_this_host_does_not_have() {
    let t = Transcript::new("Lab 04 § Membership at the IP level");
    let group = unique_group();
    let cases = [
        (
            Ipv4Addr::UNSPECIFIED,
            ErrorKind::InvalidInput,
            "0.0.0.0 means \"any address\" and names no interface (binding it always works, so \
             rule it out before is_host_address)",
        ),
        (
            group,
            ErrorKind::InvalidInput,
            "a multicast address names a group, never an interface",
        ),
        (
            Ipv4Addr::BROADCAST,
            ErrorKind::InvalidInput,
            "255.255.255.255 is the broadcast address, not an interface",
        ),
        (
            NOT_HERE,
            ErrorKind::AddrNotAvailable,
            "no interface of this host has the address 203.0.113.1 (is_host_address says so): \
             that is io::ErrorKind::AddrNotAvailable, while InvalidInput is for addresses that \
             can never name an interface",
        ),
    ];
    for (interface, kind, why) in cases {
        if interface == NOT_HERE && lab::is_host_address(NOT_HERE) {
            notice(
                "this host has the address 203.0.113.1: skipped that case of step1_rejects_an_interface_this_host_does_not_have",
            );
            continue;
        }
        let result = lab::check_addresses(group, interface);
        t.step(format_args!(
            "called check_addresses({group}, {interface}): {}",
            outcome(&result)
        ));
        let expected = format!("Err({kind:?}) naming {interface}");
        match result {
            Ok(()) => t.fail(
                expected,
                "Ok(())",
                format_args!("the interface {interface} was accepted: {why}"),
            ),
            Err(e) => {
                t.check(
                    e.kind() == kind,
                    &expected,
                    format_args!("Err({:?}: {e})", e.kind()),
                    why,
                );
                t.check(
                    e.to_string().contains(&interface.to_string()),
                    &expected,
                    format_args!("the message {}", escaped(e.to_string().as_bytes())),
                    format_args!("the error is the line the user sees: it must name the address {interface}"),
                );
            }
        }
    }
}

/// Checks that a binary run ended with status 1, printed nothing on stdout and exactly one
/// `error: ` line on stderr holding every one of `needles`.
fn check_one_error_line(t: &Transcript, out: &Finished, needles: &[&str], why: &str) {
    t.check(
        out.status.code() == Some(1),
        "exit status 1",
        status_text(out.status),
        why,
    );
    t.check(
        out.stdout.is_empty(),
        "nothing on stdout",
        lines(&out.stdout),
        "the program must stop before it joins: it prints no ready line",
    );
    let err = out.stderr.join("\n");
    t.check(
        out.stderr.len() == 1 && err.starts_with("error: ") && needles.iter().all(|n| err.contains(n)),
        format_args!(
            "one stderr line `error: ...` holding {}",
            needles
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(" and ")
        ),
        lines(&out.stderr),
        why,
    );
}

#[test]
fn step1_binary_rejects_a_bad_group_in_one_line() {
    let t = Transcript::new("Lab 04 § Step 1: Check the group and the interface");
    let out = run(
        &t,
        &[
            "peer", "--group", "10.0.0.1", "--port", "0", "--ttl", "0", "hello?",
        ],
        "a bad group must end the peer at once",
    );
    check_one_error_line(
        &t,
        &out,
        &["10.0.0.1", "multicast"],
        "check_addresses must reject 10.0.0.1 with an error naming it and saying it is not a \
         multicast group; the binary prints that error as its one line and exits with status 1",
    );
}

#[test]
fn step1_binary_rejects_an_unknown_interface_in_one_line() {
    if lab::is_host_address(NOT_HERE) {
        notice(
            "this host has the address 203.0.113.1: skipped step1_binary_rejects_an_unknown_interface_in_one_line",
        );
        return;
    }
    let t = Transcript::new("Lab 04 § Step 1: Check the group and the interface");
    let group = unique_group().to_string();
    let out = run(
        &t,
        &[
            "listen",
            "--group",
            &group,
            "--port",
            "0",
            "--interface",
            "203.0.113.1",
        ],
        "an unknown interface must end the listener at once",
    );
    check_one_error_line(
        &t,
        &out,
        &["203.0.113.1"],
        "check_addresses must reject 203.0.113.1, which no interface of this host has, with an \
         error naming it; the binary prints that error as its one line and exits with status 1",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 2: share the port

#[test]
fn step2_port_zero_gives_an_ephemeral_port() {
    let t = Transcript::new("Lab 04 § Why the port is shared");
    let group = unique_group();
    let socket = t.ok(
        lab::open(group, 0),
        &format!("your open({group}, 0)"),
        "open creates a socket, sets options and binds; on a free ephemeral port nothing should fail",
    );
    let local = addr_of(&socket);
    t.step(format_args!("called open({group}, 0): bound to {local}"));
    t.check(
        local.port() != 0,
        "an ephemeral port (not 0)",
        local,
        "port 0 asks the system for an ephemeral port: bind it, and local_addr shows which",
    );
    t.check(
        local.ip() == Ipv4Addr::UNSPECIFIED || local.ip() == group,
        format_args!("bound to 0.0.0.0 (or, where Linux cannot filter groups, {group})"),
        format_args!("bound to {local}"),
        "multicast datagrams are addressed to the group, not to 127.0.0.1: a socket bound to a \
         unicast address never receives them. Bind the address only_joined_groups returns",
    );
    let reuse = SockRef::from(&socket).reuse_address().expect("read SO_REUSEADDR");
    t.step(format_args!("read back SO_REUSEADDR: {reuse}"));
    t.check(
        reuse,
        "SO_REUSEADDR on",
        "SO_REUSEADDR off",
        "every member sets SO_REUSEADDR before bind: it is what lets UDP sockets share a port on \
         every system (SO_REUSEPORT is the extra one macOS and the BSDs need)",
    );
}

#[test]
fn step2_members_on_one_host_share_the_port() {
    let t = Transcript::new("Lab 04 § Why the port is shared");
    let group = unique_group();
    let first = t.ok(
        lab::open(group, 0),
        &format!("your open({group}, 0)"),
        "open creates a socket, sets options and binds; on a free ephemeral port nothing should fail",
    );
    let port = port_of(&first);
    t.step(format_args!(
        "member 1: open({group}, 0) bound {}",
        addr_of(&first)
    ));
    for n in 2..=3 {
        match lab::open(group, port) {
            Ok(other) => {
                t.step(format_args!(
                    "member {n}: open({group}, {port}) bound {}",
                    addr_of(&other)
                ));
                t.check(
                    port_of(&other) == port,
                    format_args!("member {n} bound to port {port}"),
                    format_args!("bound to {}", addr_of(&other)),
                    "open binds the port it is given: the members of a group meet on one port",
                );
            }
            Err(e) => {
                t.step(format_args!(
                    "member {n}: open({group}, {port}) failed: {:?}: {e}",
                    e.kind()
                ));
                let sock = SockRef::from(&first);
                let reuse_addr = sock.reuse_address().unwrap_or(false);
                #[cfg(unix)]
                let reuse_port = sock.reuse_port().unwrap_or(false);
                #[cfg(not(unix))]
                let reuse_port = false;
                t.step(format_args!(
                    "read back member 1's options: SO_REUSEADDR {reuse_addr}, SO_REUSEPORT {reuse_port}"
                ));
                let why = if reuse_addr || reuse_port {
                    "member 1 has reuse on now, yet the bind of member {n} was refused: the \
                     options were set after bind, which is too late (a bind checks the options \
                     each socket has at that moment). Set them after Socket::new, before bind"
                        .replace("{n}", &n.to_string())
                } else {
                    "member 1 set neither SO_REUSEADDR nor SO_REUSEPORT, so it holds the port \
                     alone: every member must ask for reuse, before bind"
                        .to_owned()
                };
                t.fail(
                    format_args!("member {n} to share port {port} with member 1"),
                    format_args!("Err({:?}: {e})", e.kind()),
                    why,
                );
            }
        }
    }
    // The test's own member (also reusing) can join in.
    let _test = test_member(group, port);
}

#[test]
fn step2_a_port_held_without_reuse_is_refused() {
    let t = Transcript::new("Lab 04 § Why the port is shared");
    // A plain socket, without reuse, on the wildcard address: it conflicts with every address.
    let holder = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind 0.0.0.0:0");
    let port = port_of(&holder);
    t.step(format_args!(
        "the test bound {} without address reuse",
        addr_of(&holder)
    ));
    let group = unique_group();
    let result = lab::open(group, port);
    let expected = format!("Err(AddrInUse) from open({group}, {port})");
    let why = "reuse works only when every socket on the port asks for it; a socket that did not \
               keeps the port to itself, and open must report the system's AddrInUse";
    match result {
        Err(e) => {
            t.step(format_args!(
                "called open({group}, {port}): Err({:?}: {e})",
                e.kind()
            ));
            t.check(
                e.kind() == ErrorKind::AddrInUse,
                expected,
                format_args!("Err({:?}: {e})", e.kind()),
                why,
            );
        }
        Ok(socket) => t.fail(expected, format_args!("Ok: bound {}", addr_of(&socket)), why),
    }
}

#[test]
fn step2_a_socket_that_did_not_join_receives_nothing() {
    let t = Transcript::new("Lab 04 § Membership at the socket");
    let group = unique_group();
    let member = test_member(group, 0);
    let port = port_of(&member);
    t.step(format_args!(
        "the test's member joined {group} on 127.0.0.1, port {port}"
    ));
    let bystander = t.ok(
        lab::open(group, port),
        &format!("your open({group}, {port}) beside the test's member"),
        "open must share the port with a member that asked for reuse",
    );
    set_timeouts(&bystander);
    t.step(format_args!(
        "opened a bystander with your open({group}, {port}), which joins nothing"
    ));
    let payload = b"for members only";
    send_from_test(&t, &test_sender(), group, port, payload);
    expect_datagram(
        &t,
        &member,
        "the test's member",
        payload,
        "the test's own member should have received it; run the test again",
        "the test's own member should have received it unchanged",
    );
    expect_silence(
        &t,
        &bystander,
        "the bystander",
        "a socket that shares the port but did not join must receive nothing: on Linux every \
         socket on the port gets the groups *any* socket of the host joined, unless \
         IP_MULTICAST_ALL is off. Call the given only_joined_groups before bind and bind the \
         address it returns",
    );
}

#[test]
fn step2_binary_reports_a_port_in_use_in_one_line() {
    let t = Transcript::new("Lab 04 § Why the port is shared");
    let holder = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind 0.0.0.0:0");
    let port = port_of(&holder).to_string();
    t.step(format_args!(
        "the test bound {} without address reuse",
        addr_of(&holder)
    ));
    let group = unique_group().to_string();
    let out = run(
        &t,
        &[
            "listen",
            "--group",
            &group,
            "--port",
            &port,
            "--count",
            "1",
            "--timeout",
            "1000",
        ],
        "a port in use must end the listener at once",
    );
    check_one_error_line(
        &t,
        &out,
        &[&port, "in use"],
        "open must return the system's AddrInUse, which the binary prints as one line naming \
         the port, then exits with status 1",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 3: join the group on an interface

#[test]
fn step3_a_member_receives_the_groups_datagrams() {
    let t = Transcript::new("Lab 04 § Membership at the IP level");
    let group = unique_group();
    let socket = t.ok(
        lab::open(group, 0),
        &format!("your open({group}, 0)"),
        "this test builds on open (step 2): make the step2 tests pass first",
    );
    set_timeouts(&socket);
    let port = port_of(&socket);
    t.step(format_args!("opened {} with your open", addr_of(&socket)));
    match lab::join(&socket, group, LO) {
        Ok(()) => t.step(format_args!("called join({group}, 127.0.0.1): Ok(())")),
        Err(e) => {
            t.step(format_args!(
                "called join({group}, 127.0.0.1): Err({:?}: {e})",
                e.kind()
            ));
            let why = if e.kind() == ErrorKind::InvalidInput {
                "InvalidInput: the system was handed something other than a multicast address \
                 as the group. join_multicast_v4 takes the group first, then the interface"
            } else {
                "joining a group on 127.0.0.1 works on every host: pass the group and the \
                 interface you were given to join_multicast_v4"
            };
            t.fail(
                format_args!("join({group}, 127.0.0.1) to succeed"),
                format_args!("Err({:?}: {e})", e.kind()),
                why,
            );
        }
    }
    let sender = test_sender();
    let payload = b"welcome";
    send_from_test(&t, &sender, group, port, payload);
    let from = expect_datagram(
        &t,
        &socket,
        "your member socket",
        payload,
        "a socket that joined the group on the interface it was given (127.0.0.1) receives \
         what is sent to the group out of 127.0.0.1; a membership on another interface \
         (joining with 0.0.0.0 lands on the LAN) or none receives nothing from loopback",
        "the datagram arrives as it was sent",
    );
    t.check(
        from == addr_of(&sender),
        format_args!("the datagram from the test's sender {}", addr_of(&sender)),
        format_args!("it came from {from}"),
        "the only datagram sent to this group came from the test's sender",
    );
}

#[test]
fn step3_joining_on_an_address_the_host_lacks_fails() {
    if lab::is_host_address(NOT_HERE) {
        notice(
            "this host has the address 203.0.113.1: skipped step3_joining_on_an_address_the_host_lacks_fails",
        );
        return;
    }
    let t = Transcript::new("Lab 04 § Membership at the IP level");
    let group = unique_group();
    let socket = t.ok(
        lab::open(group, 0),
        &format!("your open({group}, 0)"),
        "this test builds on open (step 2): make the step2 tests pass first",
    );
    t.step(format_args!("opened {} with your open", addr_of(&socket)));
    let result = lab::join(&socket, group, NOT_HERE);
    t.step(format_args!(
        "called join({group}, {NOT_HERE}): {}",
        outcome(&result)
    ));
    t.check(
        result.is_err(),
        format_args!("an error: no interface has the address {NOT_HERE}"),
        outcome(&result),
        "join must use the interface it is given: the system refuses 203.0.113.1, which no \
         interface has. Success means the join ignored it and joined elsewhere (on 0.0.0.0, \
         which lets the system pick the LAN, or on a fixed address)",
    );
}

#[test]
fn step3_two_groups_on_the_same_port_stay_apart() {
    let t = Transcript::new("Lab 04 § Membership at the socket");
    let (red, blue) = (unique_group(), unique_group());
    let red_member = lab_member(&t, red, 0);
    let port = port_of(&red_member);
    let blue_member = lab_member(&t, blue, port);
    let sender = test_sender();
    send_from_test(&t, &sender, red, port, b"red news");
    send_from_test(&t, &sender, blue, port, b"blue news");
    let missing = "a member receives what is sent to its group on its port";
    expect_datagram(&t, &red_member, "the red member", b"red news", missing, missing);
    expect_datagram(
        &t,
        &blue_member,
        "the blue member",
        b"blue news",
        missing,
        missing,
    );
    let why = |me: Ipv4Addr, other: Ipv4Addr| {
        format!(
            "a member of {me} must not receive datagrams for {other}, although both groups use \
             port {port}: on Linux, only_joined_groups before bind turns IP_MULTICAST_ALL off"
        )
    };
    expect_silence(&t, &red_member, "the red member", &why(red, blue));
    expect_silence(&t, &blue_member, "the blue member", &why(blue, red));
}

#[test]
fn step3_listen_binary_prints_its_ready_line() {
    let t = Transcript::new("Lab 04 § Joining late");
    let group = unique_group();
    let g = group.to_string();
    let mut listener = PeerProcess::start(&t, &["listen", "--group", &g, "--port", "0", "--count", "1"]);
    let port = listener.ready(&t, group);
    // The ready line promises membership on 127.0.0.1 (Linux lists it; the test's own member
    // has not joined yet, so the listener is the only member).
    if let Some(devices) = igmp_memberships(group) {
        let listed = if devices.is_empty() {
            "no interface".to_owned()
        } else {
            devices.join(", ")
        };
        t.step(format_args!(
            "read /proc/net/igmp: this host is a member of {group} on {listed}"
        ));
        t.check(
            devices.iter().any(|d| d == "lo"),
            format_args!("a membership of {group} on lo, the interface of 127.0.0.1"),
            format_args!("memberships on {listed}"),
            "the ready line promises that the listener is a member on the interface it names: \
             join must use the interface it is given (with 0.0.0.0 the system picks one, \
             usually the LAN)",
        );
    }
    // A datagram sent now reaches a member sharing the port.
    let member = test_member(group, port);
    t.step(format_args!(
        "the test's member joined {group} on 127.0.0.1, port {port}"
    ));
    let payload = b"are you there?";
    send_from_test(&t, &test_sender(), group, port, payload);
    expect_datagram(
        &t,
        &member,
        "the test's member",
        payload,
        "the listener's port must be shared with other members: the test's member could not get \
         the datagram",
        "the datagram arrives as it was sent",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 4: the outgoing interface, TTL and loopback

#[test]
fn step4_options_are_applied() {
    let t = Transcript::new("Lab 04 § Loopback and TTL");
    let socket = udp_socket();
    let sock = SockRef::from(&socket);
    // TTL 2 first: a forgotten or fixed option reads back as the default (1), and the unicast
    // TTL (IP_TTL, which refuses 0) shows the mix-up. Nothing is sent in this test.
    for (ttl, loopback) in [(2, false), (0, true), (1, true), (0, false)] {
        let options = lab::SendOptions {
            interface: LO,
            ttl,
            loopback,
        };
        let result = lab::set_sending(&socket, &options);
        t.step(format_args!(
            "called set_sending(interface 127.0.0.1, ttl {ttl}, loopback {loopback}): {}",
            outcome(&result)
        ));
        t.ok(
            result,
            "set_sending",
            "127.0.0.1 and TTL 0 to 2 are valid: each of the three options can be set",
        );
        let got_if = sock.multicast_if_v4().expect("read IP_MULTICAST_IF");
        let got_ttl = sock.multicast_ttl_v4().expect("read IP_MULTICAST_TTL");
        let got_loop = sock.multicast_loop_v4().expect("read IP_MULTICAST_LOOP");
        let unicast_ttl = socket.ttl().expect("read IP_TTL");
        t.step(format_args!(
            "read back IP_MULTICAST_IF {got_if}, IP_MULTICAST_TTL {got_ttl}, IP_MULTICAST_LOOP \
             {got_loop}, IP_TTL {unicast_ttl}"
        ));
        t.check(
            got_if == LO,
            "IP_MULTICAST_IF 127.0.0.1",
            format_args!("IP_MULTICAST_IF {got_if}"),
            "the outgoing interface decides where datagrams to a group leave; unset, the \
             routing table picks (the LAN). std has no call for it: \
             SockRef::from(socket).set_multicast_if_v4(&options.interface)",
        );
        let why_ttl = if unicast_ttl == ttl && ttl != 64 {
            "IP_TTL holds the TTL asked for, IP_MULTICAST_TTL does not: set_ttl sets the unicast \
             TTL, which datagrams to a group do not use. Call set_multicast_ttl_v4"
        } else {
            "the TTL of datagrams to a group is IP_MULTICAST_TTL (set_multicast_ttl_v4); the \
             system's default is 1, so a forgotten or fixed TTL shows when 0 or 2 is asked for"
        };
        t.check(
            got_ttl == ttl,
            format_args!("IP_MULTICAST_TTL {ttl}"),
            format_args!("IP_MULTICAST_TTL {got_ttl}"),
            why_ttl,
        );
        t.check(
            got_loop == loopback,
            format_args!("IP_MULTICAST_LOOP {loopback}"),
            format_args!("IP_MULTICAST_LOOP {got_loop}"),
            "multicast loopback is options.loopback (set_multicast_loop_v4); the default is on, \
             so a forgotten or fixed option shows when loopback off is asked for",
        );
    }
}

#[test]
fn step4_ttl_up_to_255_is_accepted_and_256_refused() {
    let t = Transcript::new("Lab 04 § Loopback and TTL");
    let socket = udp_socket();
    // Nothing is sent in this test: the TTLs are only set and read back.
    for ttl in [254, 255] {
        let result = lab::set_sending(
            &socket,
            &lab::SendOptions {
                ttl,
                ..on_loopback(true)
            },
        );
        t.step(format_args!(
            "called set_sending(interface 127.0.0.1, ttl {ttl}, loopback true): {}",
            outcome(&result)
        ));
        t.ok(
            result,
            "set_sending",
            format_args!("a TTL runs from 0 to 255, both included: {ttl} is valid"),
        );
        let got = SockRef::from(&socket)
            .multicast_ttl_v4()
            .expect("read IP_MULTICAST_TTL");
        t.step(format_args!("read back IP_MULTICAST_TTL {got}"));
        t.check(
            got == ttl,
            format_args!("IP_MULTICAST_TTL {ttl}"),
            format_args!("IP_MULTICAST_TTL {got}"),
            "set_sending sets the TTL asked for",
        );
    }
    let result = lab::set_sending(
        &socket,
        &lab::SendOptions {
            ttl: 256,
            ..on_loopback(true)
        },
    );
    t.step(format_args!(
        "called set_sending(interface 127.0.0.1, ttl 256, loopback true): {}",
        outcome(&result)
    ));
    t.check(
        result
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::InvalidInput),
        "Err(InvalidInput): 256 is no TTL",
        outcome(&result),
        "a TTL is one byte of the IP header, 0 to 255: the system refuses 256 with \
         InvalidInput, and set_sending passes that on instead of clamping or wrapping it",
    );
}

#[test]
fn step4_a_socket_set_up_for_sending_reaches_a_member() {
    let t = Transcript::new("Lab 04 § Loopback and TTL");
    let group = unique_group();
    let member = test_member(group, 0);
    let port = port_of(&member);
    t.step(format_args!(
        "the test's member joined {group} on 127.0.0.1, port {port}"
    ));
    let socket = udp_socket();
    t.ok(
        lab::set_sending(&socket, &on_loopback(true)),
        "your set_sending(127.0.0.1, TTL 0, loopback on)",
        "127.0.0.1 and TTL 0 are valid: each of the three options can be set",
    );
    t.step(format_args!(
        "set up {} with your set_sending (127.0.0.1, TTL 0, loopback on)",
        addr_of(&socket)
    ));
    check_stays_on_loopback(
        &t,
        &socket,
        "the socket after your set_sending",
        "set_sending must set the outgoing interface (IP_MULTICAST_IF, through SockRef) and the \
         TTL asked for; the test refuses to send rather than let a datagram go out on the LAN",
    );
    let payload = b"set up by you";
    socket
        .send_to(payload, SocketAddrV4::new(group, port))
        .unwrap_or_else(|e| panic!("test set-up: cannot send to {group}:{port}: {e}"));
    t.sent(
        payload,
        format_args!("that socket {}", addr_of(&socket)),
        format_args!("{group}:{port}"),
    );
    expect_datagram(
        &t,
        &member,
        "the test's member",
        payload,
        "a datagram sent out of 127.0.0.1 with TTL 0 and loopback on reaches the members on \
         127.0.0.1",
        "the datagram arrives as it was sent",
    );
}

#[test]
fn step4_an_unknown_interface_is_refused() {
    if lab::is_host_address(NOT_HERE) {
        notice("this host has the address 203.0.113.1: skipped step4_an_unknown_interface_is_refused");
        return;
    }
    let t = Transcript::new("Lab 04 § Step 4: The outgoing interface, TTL and loopback");
    let socket = udp_socket();
    let options = lab::SendOptions {
        interface: NOT_HERE,
        ..on_loopback(true)
    };
    let result = lab::set_sending(&socket, &options);
    t.step(format_args!(
        "called set_sending(interface {NOT_HERE}, ttl 0, loopback true): {}",
        outcome(&result)
    ));
    t.check(
        result.is_err(),
        format_args!("an error: no interface has the address {NOT_HERE}"),
        outcome(&result),
        "setting IP_MULTICAST_IF to an address this host lacks fails (AddrNotAvailable); \
         set_sending must pass that error on with `?`, not ignore it",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 5: send to the group

/// Your `open_sender` on 127.0.0.1 with TTL 0, checked to stay on loopback.
fn lab_sender(t: &Transcript, loopback: bool) -> UdpSocket {
    let sender = t.ok(
        lab::open_sender(&on_loopback(loopback)),
        "your open_sender(127.0.0.1, TTL 0)",
        "open_sender binds 127.0.0.1 with port 0 and calls set_sending: both work on every host",
    );
    t.step(format_args!(
        "opened a sender with your open_sender: {}",
        addr_of(&sender)
    ));
    check_stays_on_loopback(
        t,
        &sender,
        "the socket from your open_sender",
        "open_sender must set the socket up with set_sending (the outgoing interface and the \
         TTL asked for); the test refuses to send rather than let a datagram go out on the LAN",
    );
    sender
}

#[test]
fn step5_open_sender_binds_the_interface_and_sets_it_up() {
    let t = Transcript::new("Lab 04 § Step 5: Send to the group");
    let sender = t.ok(
        lab::open_sender(&on_loopback(false)),
        "your open_sender(127.0.0.1, TTL 0, loopback off)",
        "open_sender binds 127.0.0.1 with port 0 and calls set_sending: both work on every host",
    );
    let local = addr_of(&sender);
    t.step(format_args!("called open_sender: bound to {local}"));
    t.check(
        local.ip() == LO && local.port() != 0,
        "bound to 127.0.0.1 with an ephemeral port",
        format_args!("bound to {local}"),
        "a sender binds the interface's address (options.interface) with port 0, so its \
         datagrams carry that source address, and any number of senders can run at once",
    );
    check_stays_on_loopback(
        &t,
        &sender,
        "the socket from your open_sender",
        "open_sender must set the socket up with your set_sending",
    );
    let sock = SockRef::from(&sender);
    let ttl = sock.multicast_ttl_v4().expect("read IP_MULTICAST_TTL");
    let looped = sock.multicast_loop_v4().expect("read IP_MULTICAST_LOOP");
    t.step(format_args!(
        "read back IP_MULTICAST_TTL {ttl}, IP_MULTICAST_LOOP {looped}"
    ));
    t.check(
        ttl == 0 && !looped,
        "TTL 0 and loopback off, as asked",
        format_args!("TTL {ttl}, loopback {looped}"),
        "open_sender must set the socket up with set_sending and the options it is given",
    );
}

#[test]
fn step5_a_sender_that_is_not_a_member_reaches_every_member() {
    let t = Transcript::new("Lab 04 § Step 5: Send to the group");
    let group = unique_group();
    let first = test_member(group, 0);
    let port = port_of(&first);
    let second = test_member(group, port);
    t.step(format_args!(
        "the test's two members joined {group} on 127.0.0.1, port {port}"
    ));
    let sender = lab_sender(&t, true);
    let payload = b"to all members";
    let result = lab::send_to_group(&sender, group, port, payload);
    t.step(format_args!(
        "called send_to_group(sender, {group}, {port}, {}): {}",
        sized(payload),
        outcome(&result)
    ));
    t.ok(
        result,
        "send_to_group",
        "sending to a group on loopback works on every host",
    );
    for who in ["the test's member 1", "the test's member 2"] {
        let socket = if who.ends_with('1') { &first } else { &second };
        let from = expect_datagram(
            &t,
            socket,
            who,
            payload,
            &format!(
                "send_to_group sends one datagram to the group's address and the port it is given \
                 ({group}:{port}); every member on that port gets a copy"
            ),
            "send_to_group sends the message's bytes, all of them, unchanged",
        );
        t.check(
            from == addr_of(&sender),
            format_args!("the datagram from the sender {}", addr_of(&sender)),
            format_args!("it came from {from}"),
            "send_to_group sends from the socket it is given",
        );
    }
}

#[test]
fn step5_send_to_group_keeps_non_utf8_bytes() {
    let t = Transcript::new("Lab 04 § The protocol and the programs");
    let group = unique_group();
    let member = test_member(group, 0);
    let port = port_of(&member);
    t.step(format_args!(
        "the test's member joined {group} on 127.0.0.1, port {port}"
    ));
    let sender = lab_sender(&t, true);
    let result = lab::send_to_group(&sender, group, port, NOT_UTF8);
    t.step(format_args!(
        "called send_to_group(sender, {group}, {port}, {}): {}",
        sized(NOT_UTF8),
        outcome(&result)
    ));
    t.ok(
        result,
        "send_to_group",
        "a message is any bytes; sending them cannot fail",
    );
    expect_datagram(
        &t,
        &member,
        "the test's member",
        NOT_UTF8,
        "send_to_group sends one datagram to the group's address and port",
        "send_to_group sends the bytes it is given, unchanged: a message need not be UTF-8 text \
         (String::from_utf8_lossy replaces every invalid byte with the 3 bytes of U+FFFD)",
    );
}

#[test]
fn step5_send_to_group_sends_up_to_max_datagram_bytes() {
    let t = Transcript::new("Lab 04 § Step 5: Send to the group");
    let group = unique_group();
    let member = test_member(group, 0);
    let port = port_of(&member);
    t.step(format_args!(
        "the test's member joined {group} on 127.0.0.1, port {port}"
    ));
    let sender = lab_sender(&t, true);
    for len in [lab::MAX_DATAGRAM - 1, lab::MAX_DATAGRAM] {
        let message = letters(len);
        let result = lab::send_to_group(&sender, group, port, &message);
        t.step(format_args!(
            "called send_to_group(sender, {group}, {port}, {len} bytes): {}",
            outcome(&result)
        ));
        t.ok(
            result,
            "send_to_group",
            format_args!(
                "{len} bytes fit in one IPv4 UDP datagram (at most MAX_DATAGRAM = 65507 bytes: \
                 65535 - 20 - 8), so the system sends them"
            ),
        );
        expect_datagram(
            &t,
            &member,
            "the test's member",
            &message,
            "send_to_group sends the message as one datagram to the group's address and port",
            "send_to_group sends the whole message as one datagram, unchanged",
        );
    }
    let too_long = letters(lab::MAX_DATAGRAM + 1);
    let result = lab::send_to_group(&sender, group, port, &too_long);
    t.step(format_args!(
        "called send_to_group(sender, {group}, {port}, {} bytes): {}",
        too_long.len(),
        outcome(&result)
    ));
    t.check(
        result.is_err(),
        "an error (\"Message too long\")",
        outcome(&result),
        "65508 bytes do not fit in one IPv4 UDP datagram (MAX_DATAGRAM = 65507): the system \
         refuses them with \"Message too long\", and send_to_group must return that error, never \
         Ok(())",
    );
}

#[test]
fn step5_a_member_receives_its_own_datagram() {
    let t = Transcript::new("Lab 04 § Loopback and TTL");
    let group = unique_group();
    let me = lab_member(&t, group, 0);
    let port = port_of(&me);
    let other = test_member(group, port);
    t.step(format_args!(
        "the test's member joined {group} on 127.0.0.1, port {port}"
    ));
    t.ok(
        lab::set_sending(&me, &on_loopback(true)),
        "your set_sending(127.0.0.1, TTL 0, loopback on)",
        "this test builds on set_sending (step 4): make the step4 tests pass first",
    );
    check_stays_on_loopback(
        &t,
        &me,
        "your member socket after set_sending",
        "this test builds on set_sending (step 4): make the step4 tests pass first",
    );
    let payload = b"echo of myself";
    let result = lab::send_to_group(&me, group, port, payload);
    t.step(format_args!(
        "called send_to_group(your member, {group}, {port}, {}): {}",
        sized(payload),
        outcome(&result)
    ));
    t.ok(
        result,
        "send_to_group from a member socket",
        "a member's socket can send to its own group",
    );
    expect_datagram(
        &t,
        &other,
        "the test's member",
        payload,
        "send_to_group sends one datagram to the group's address and the port it is given",
        "send_to_group sends the message's bytes unchanged",
    );
    expect_datagram(
        &t,
        &me,
        "your member socket (the sender)",
        payload,
        "with multicast loopback on, the sender, a member itself, gets a copy of its own datagram",
        "the sender's copy holds the bytes sent",
    );
}

#[test]
fn step5_send_binary_reaches_a_member() {
    let t = Transcript::new("Lab 04 § Step 5: Send to the group");
    check_binary_stays_on_loopback(&t);
    let group = unique_group();
    let member = test_member(group, 0);
    let port = port_of(&member).to_string();
    t.step(format_args!(
        "the test's member joined {group} on 127.0.0.1, port {port}"
    ));
    let g = group.to_string();
    let out = run(
        &t,
        &[
            "send",
            "--group",
            &g,
            "--port",
            &port,
            "--ttl",
            "0",
            "news for the group",
        ],
        "`send` sends one datagram and exits",
    );
    t.check(
        out.status.success(),
        "exit status 0",
        format_args!("{}; stderr: {}", status_text(out.status), lines(&out.stderr)),
        "`send` runs your check_addresses, open_sender and send_to_group: each must succeed for \
         a group on 127.0.0.1",
    );
    expect_datagram(
        &t,
        &member,
        "the test's member",
        b"news for the group",
        "`send` sends its message with your send_to_group to the group and port it is given",
        "`send` sends its message's bytes unchanged",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 6: receive with a deadline

#[test]
fn step6_receive_returns_the_datagram_and_its_sender() {
    let t = Transcript::new("Lab 04 § Step 6: Receive with a deadline");
    let group = unique_group();
    let member = Arc::new(test_member(group, 0));
    let port = port_of(&member);
    t.step(format_args!(
        "the test's member joined {group} on 127.0.0.1, port {port}"
    ));
    let sender = test_sender();
    send_from_test(&t, &sender, group, port, b"first");
    let got = receive_one(
        &t,
        &member,
        "the test's member",
        "a datagram was waiting: receive returns it",
    );
    t.check_bytes(
        "the payload",
        b"first",
        &got.payload,
        "the payload is the first LEN bytes of the buffer, LEN being what recv_from returned: \
         truncate the buffer to it",
    );
    t.check(
        got.from == addr_of(&sender),
        format_args!("from {}", addr_of(&sender)),
        format_args!("from {}", got.from),
        "the sender is the address recv_from returns with the datagram",
    );
}

#[test]
fn step6_receive_keeps_long_datagrams_whole() {
    let t = Transcript::new("Lab 04 § Step 6: Receive with a deadline");
    let group = unique_group();
    let member = Arc::new(test_member(group, 0));
    let port = port_of(&member);
    t.step(format_args!(
        "the test's member joined {group} on 127.0.0.1, port {port}"
    ));
    let sender = test_sender();
    // MAX_DATAGRAM is the largest UDP payload over IPv4: one byte more cannot be sent at all
    // (step5_send_to_group_sends_up_to_max_datagram_bytes), so the cap is tested at and under.
    for len in [9000, lab::MAX_DATAGRAM - 1, lab::MAX_DATAGRAM] {
        let message = letters(len);
        send_from_test(&t, &sender, group, port, &message);
        let got = receive_one(
            &t,
            &member,
            "the test's member",
            "a datagram was waiting: receive returns it",
        );
        t.check_bytes(
            "the payload",
            &message,
            &got.payload,
            format_args!(
                "a datagram larger than the buffer is cut short without an error: a {len}-byte \
                 datagram came back with {} bytes. Receive into MAX_DATAGRAM (65507) bytes, the \
                 largest UDP payload over IPv4, all of them",
                got.payload.len()
            ),
        );
    }
}

#[test]
fn step6_receive_keeps_non_utf8_bytes() {
    let t = Transcript::new("Lab 04 § The protocol and the programs");
    let group = unique_group();
    let member = Arc::new(test_member(group, 0));
    let port = port_of(&member);
    t.step(format_args!(
        "the test's member joined {group} on 127.0.0.1, port {port}"
    ));
    send_from_test(&t, &test_sender(), group, port, NOT_UTF8);
    let got = receive_one(
        &t,
        &member,
        "the test's member",
        "a datagram was waiting: receive returns it",
    );
    t.check_bytes(
        "the payload",
        NOT_UTF8,
        &got.payload,
        "receive returns the datagram's bytes unchanged: a message need not be UTF-8 text \
         (String::from_utf8_lossy replaces every invalid byte with the 3 bytes of U+FFFD); only \
         the binary, when it prints, shows them as text",
    );
}

#[test]
fn step6_receive_returns_an_empty_datagram() {
    let t = Transcript::new("Lab 04 § Step 6: Receive with a deadline");
    let group = unique_group();
    let member = Arc::new(test_member(group, 0));
    let port = port_of(&member);
    t.step(format_args!(
        "the test's member joined {group} on 127.0.0.1, port {port}"
    ));
    let sender = test_sender();
    send_from_test(&t, &sender, group, port, b"");
    let got = receive_one(
        &t,
        &member,
        "the test's member",
        "an empty datagram is a datagram: recv_from returns 0 bytes and the sender. Unlike a \
         TCP read, 0 does not mean the end of anything, and the deadline has not passed",
    );
    t.check(
        got.payload.is_empty() && got.from == addr_of(&sender),
        format_args!("an empty payload from {}", addr_of(&sender)),
        format_args!("{} from {}", sized(&got.payload), got.from),
        "the payload is the first 0 bytes of the buffer",
    );
}

#[test]
fn step6_receive_returns_none_at_the_deadline() {
    let t = Transcript::new("Lab 04 § Step 6: Receive with a deadline");
    let group = unique_group();
    let member = test_member(group, 0);
    let port = port_of(&member);
    member.set_read_timeout(None).expect("no timeout");
    let member = Arc::new(member);
    t.step(format_args!(
        "the test's member joined {group} on 127.0.0.1, port {port}; its read timeout is off"
    ));
    let wait = Duration::from_millis(300);
    let (result, took) = call_receive(&member, wait);
    let expected = format!("Ok(None) after about {} ms", wait.as_millis());
    match result {
        Err(stuck) => {
            t.step(format_args!(
                "called your receive, deadline {} ms away, with nothing sent",
                wait.as_millis()
            ));
            // Let the stuck call end: a datagram is what it waits for.
            send_from_test(&t, &test_sender(), group, port, b"wake up");
            t.fail(
                expected,
                stuck,
                "receive must return by its deadline although the socket has no read timeout: \
                 set the read timeout to what is left of the wait before each recv_from",
            )
        }
        Ok(result) => {
            t.step(format_args!(
                "called your receive, deadline {} ms away, with nothing sent: {} after {} ms",
                wait.as_millis(),
                shown(&result),
                took.as_millis()
            ));
            let why = match &result {
                Err(e) if is_timeout(e) => {
                    "the read timeout is no error: it means the deadline passed. It fails with \
                     WouldBlock on Unix and TimedOut on Windows; both are Ok(None)"
                }
                _ => "nothing was sent, so receive returns Ok(None) once the deadline passes",
            };
            t.check(matches!(result, Ok(None)), &expected, shown(&result), why);
            t.check(
                took >= wait * 8 / 10 && took <= wait + SLACK,
                &expected,
                format_args!("Ok(None) after {} ms", took.as_millis()),
                "receive waits until the deadline, no less and not much more: set the read \
                 timeout to what is left",
            );
        }
    }
}

#[test]
fn step6_a_deadline_already_past_returns_at_once() {
    let t = Transcript::new("Lab 04 § Step 6: Receive with a deadline");
    let member = test_member(unique_group(), 0);
    member.set_read_timeout(None).expect("no timeout");
    let member = Arc::new(member);
    t.step("the test's member joined its group; its read timeout is off");
    let (result, took) = call_receive(&member, Duration::ZERO);
    let expected = "Ok(None) at once";
    let result = match result {
        Ok(result) => result,
        Err(stuck) => t.fail(
            expected,
            stuck,
            "a deadline that has passed leaves no time to wait: return Ok(None) before touching \
             the socket",
        ),
    };
    t.step(format_args!(
        "called your receive with a deadline that had passed: {} after {} ms",
        shown(&result),
        took.as_millis()
    ));
    t.check(
        matches!(result, Ok(None)) && took < SLACK,
        expected,
        format_args!("{} after {} ms", shown(&result), took.as_millis()),
        "a deadline that has passed leaves no time: return Ok(None) before touching the socket \
         (set_read_timeout(Some(Duration::ZERO)) fails with InvalidInput)",
    );
}

#[cfg(unix)]
#[test]
fn step6_receive_retries_when_interrupted() {
    let t = Transcript::new("Lab 04 § Step 6: Receive with a deadline");
    let group = unique_group();
    let member = test_member(group, 0);
    let port = port_of(&member);
    t.step(format_args!(
        "the test's member joined {group} on 127.0.0.1, port {port}"
    ));
    let sender = test_sender();
    let from = addr_of(&sender);
    let wait = Duration::from_millis(3000);
    let late = Duration::from_millis(200);
    let payload: &[u8] = b"worth the wait";
    let send_late = thread::spawn(move || {
        thread::sleep(late);
        let sent = sender.send_to(payload, SocketAddrV4::new(group, port));
        (sender, sent)
    });
    let started = Instant::now();
    let result = bounded(wait + CALL_SLACK, move || {
        with_interrupts(|| lab::receive(&member, Instant::now() + wait))
    });
    let took = started.elapsed();
    t.step(format_args!(
        "called your receive, deadline {} ms away, while a signal (SIGUSR1) interrupted the call \
         every 20 ms",
        wait.as_millis()
    ));
    match send_late.join() {
        Ok((_, Ok(_))) => t.sent(
            payload,
            format_args!("the test's sender {from}, {} ms later,", late.as_millis()),
            format_args!("{group}:{port}"),
        ),
        _ => panic!("test set-up: the delayed send failed"),
    }
    let expected = format!("a datagram {} from {from}", sized(payload));
    let (result, signals) = match result {
        Ok(done) => done,
        Err(stuck) => t.fail(
            expected,
            stuck,
            "receive must return the datagram that came 200 ms into the wait",
        ),
    };
    t.step(format_args!(
        "your receive returned {} after {} ms; {} had been sent",
        shown(&result),
        took.as_millis(),
        signals_text(signals)
    ));
    let why = match &result {
        Err(e) if e.kind() == ErrorKind::Interrupted => {
            "a signal cut the wait short (Interrupted: Unix never restarts a socket call with a \
             timeout): that is no failure, wait again for what is left of the wait"
        }
        Ok(None) => {
            "receive gave up long before its deadline: a signal (Interrupted) is not a timeout; \
             wait again for what is left of the wait"
        }
        _ => "receive returns the datagram that came while it waited, and its sender",
    };
    match &result {
        Ok(Some(d)) => {
            t.check_bytes("the payload", payload, &d.payload, why);
            t.check(d.from == from, &expected, shown(&result), why);
        }
        _ => t.fail(&expected, shown(&result), why),
    }
    t.check(
        signals >= 1,
        "at least one signal during the call",
        signals_text(signals),
        "the test could not interrupt the call; run it again",
    );
}

#[cfg(unix)]
#[test]
fn step6_a_signal_does_not_stretch_the_deadline() {
    let t = Transcript::new("Lab 04 § Step 6: Receive with a deadline");
    let group = unique_group();
    let member = test_member(group, 0);
    let port = port_of(&member);
    t.step(format_args!(
        "the test's member joined {group} on 127.0.0.1, port {port}"
    ));
    let wait = Duration::from_millis(500);
    let started = Instant::now();
    let result = bounded(wait + CALL_SLACK, move || {
        with_interrupts(|| lab::receive(&member, Instant::now() + wait))
    });
    let took = started.elapsed();
    t.step(format_args!(
        "called your receive, deadline {} ms away, with nothing sent, while a signal (SIGUSR1) \
         interrupted the call every 20 ms",
        wait.as_millis()
    ));
    let expected = format!("Ok(None) after about {} ms", wait.as_millis());
    let (result, signals) = match result {
        Ok(done) => done,
        Err(stuck) => {
            // Let the stuck call end: a datagram is what it waits for.
            send_from_test(&t, &test_sender(), group, port, b"wake up");
            t.fail(
                expected,
                stuck,
                "after an interrupted wait (Interrupted), wait again only for what is left until \
                 the deadline, and return Ok(None) when nothing is left: a wait that starts over \
                 after every signal never ends",
            )
        }
    };
    t.step(format_args!(
        "your receive returned {} after {} ms; {} had been sent",
        shown(&result),
        took.as_millis(),
        signals_text(signals)
    ));
    let why = match &result {
        Err(e) if e.kind() == ErrorKind::Interrupted => {
            "a signal cut the wait short (Interrupted): that is no failure, wait again for what \
             is left of the wait"
        }
        _ => "nothing was sent: receive returns Ok(None) at its deadline, signals or not",
    };
    t.check(
        matches!(result, Ok(None)) && took >= wait * 8 / 10 && took <= wait + SLACK,
        &expected,
        format_args!("{} after {} ms", shown(&result), took.as_millis()),
        why,
    );
}

#[test]
fn step6_listen_binary_prints_each_datagram() {
    let t = Transcript::new("Lab 04 § The command line");
    let group = unique_group();
    let g = group.to_string();
    let mut listener = PeerProcess::start(
        &t,
        &[
            "listen",
            "--group",
            &g,
            "--port",
            "0",
            "--count",
            "2",
            "--timeout",
            BIN_TIMEOUT,
        ],
    );
    let port = listener.ready(&t, group);
    let sender = test_sender();
    send_from_test(&t, &sender, group, port, b"one");
    send_from_test(&t, &sender, group, port, b"two");
    let done = listener.finish(
        &t,
        EXIT_WAIT,
        "the listener had its two datagrams and should have left and exited",
    );
    t.check(
        done.stdout == ["Received: one", "Received: two"],
        "stdout \"Received: one\", \"Received: two\"",
        lines(&done.stdout),
        "the listener prints each datagram your receive returns, then leaves with your leave",
    );
}

#[test]
fn step6_listen_binary_times_out_in_one_line() {
    let t = Transcript::new("Lab 04 § The command line");
    let group = unique_group();
    let g = group.to_string();
    let mut listener = PeerProcess::start(
        &t,
        &[
            "listen",
            "--group",
            &g,
            "--port",
            "0",
            "--count",
            "1",
            "--timeout",
            "300",
        ],
    );
    listener.ready(&t, group);
    let done = listener.finish(
        &t,
        EXIT_WAIT,
        "with --timeout 300 and nothing sent, your receive must return Ok(None) after 300 ms: \
         set the read timeout to what is left",
    );
    let errors: Vec<&String> = done.stderr.iter().filter(|l| l.starts_with("error:")).collect();
    t.check(
        done.status.code() == Some(1)
            && done.stdout.is_empty()
            && errors.len() == 1
            && errors[0].contains("300 ms"),
        "exit status 1, nothing on stdout, one `error:` line naming the 300 ms",
        format_args!(
            "{}; stdout: {}; stderr: {}",
            status_text(done.status),
            lines(&done.stdout),
            lines(&done.stderr)
        ),
        "no datagram came within --timeout 300: your receive returns Ok(None) at the deadline, \
         and the binary reports that as one error line",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 7: leave the group; the whole peer

#[test]
fn step7_after_leaving_a_member_receives_no_more() {
    let t = Transcript::new("Lab 04 § Membership at the socket");
    let group = unique_group();
    let leaver = lab_member(&t, group, 0);
    let port = port_of(&leaver);
    let stayer = test_member(group, port);
    t.step(format_args!(
        "the test's member joined {group} on 127.0.0.1, port {port}"
    ));
    let sender = test_sender();
    send_from_test(&t, &sender, group, port, b"before");
    let missing = "a member receives what is sent to its group on its port";
    expect_datagram(&t, &leaver, "your member", b"before", missing, missing);
    expect_datagram(&t, &stayer, "the test's member", b"before", missing, missing);
    let result = lab::leave(&leaver, group, LO);
    t.step(format_args!(
        "called leave({group}, 127.0.0.1) on your member: {}",
        outcome(&result)
    ));
    if let Err(e) = &result {
        let why = if e.kind() == ErrorKind::AddrInUse {
            "AddrInUse is what joining a group a second time says: leave must drop the membership \
             (leave_multicast_v4), not join again"
        } else {
            "the socket is a member of the group on 127.0.0.1: leaving it there succeeds"
        };
        t.fail(
            format_args!("leave({group}, 127.0.0.1) to succeed"),
            outcome(&result),
            why,
        );
    }
    send_from_test(&t, &sender, group, port, b"after");
    expect_datagram(
        &t,
        &stayer,
        "the test's member",
        b"after",
        "the test's member is still in the group",
        missing,
    );
    expect_silence(
        &t,
        &leaver,
        "your member, which left",
        "after leave() the socket must receive no more of the group's datagrams: drop the \
         membership (leave_multicast_v4) with the same group and interface as the join; closing \
         the socket would, but leave keeps it open",
    );
}

#[test]
fn step7_leaving_on_another_interface_fails() {
    if lab::is_host_address(NOT_HERE) {
        notice("this host has the address 203.0.113.1: skipped step7_leaving_on_another_interface_fails");
        return;
    }
    let t = Transcript::new("Lab 04 § Membership at the socket");
    let group = unique_group();
    let member = lab_member(&t, group, 0);
    let result = lab::leave(&member, group, NOT_HERE);
    t.step(format_args!(
        "called leave({group}, {NOT_HERE}) on your member: {}",
        outcome(&result)
    ));
    t.check(
        result.is_err(),
        format_args!("an error: the membership is on 127.0.0.1, not on {NOT_HERE}"),
        outcome(&result),
        "a membership is a (group, interface) pair: leave must use the interface it is given, \
         and the system refuses to drop a membership the socket does not have (AddrNotAvailable)",
    );
    let result = lab::leave(&member, group, LO);
    t.step(format_args!(
        "called leave({group}, 127.0.0.1) on your member: {}",
        outcome(&result)
    ));
    t.check(
        result.is_ok(),
        "Ok(()): the membership on 127.0.0.1 is still there",
        outcome(&result),
        "leaving on the wrong interface must not drop the membership on 127.0.0.1",
    );
}

#[test]
fn step7_two_peers_receive_each_others_messages_and_their_own() {
    let t = Transcript::new("Lab 04 § Loopback and TTL");
    let group = unique_group();
    let alice = Arc::new(lab_member(&t, group, 0));
    let port = port_of(&alice);
    let bob = Arc::new(lab_member(&t, group, port));
    for (name, peer) in [("alice", &alice), ("bob", &bob)] {
        t.ok(
            lab::set_sending(peer, &on_loopback(true)),
            &format!("your set_sending on {name}"),
            "this test builds on set_sending (step 4): make the step4 tests pass first",
        );
        check_stays_on_loopback(
            &t,
            peer,
            name,
            "this test builds on set_sending (step 4): make the step4 tests pass first",
        );
    }
    // Both have joined before either sends: no message can be missed.
    for (name, peer, payload) in [
        ("alice", &alice, &b"from alice"[..]),
        ("bob", &bob, &b"from bob"[..]),
    ] {
        let result = lab::send_to_group(peer, group, port, payload);
        t.step(format_args!(
            "{name} called send_to_group({group}, {port}, {}): {}",
            sized(payload),
            outcome(&result)
        ));
        t.ok(
            result,
            "send_to_group",
            "this test builds on send_to_group (step 5): make the step5 tests pass first",
        );
    }
    for (name, peer) in [("alice", &alice), ("bob", &bob)] {
        let mut got = Vec::new();
        for _ in 0..2 {
            let d = receive_one(
                &t,
                peer,
                name,
                "both peers sent to the group after both had joined, with loopback on: each \
                 receives both messages, its own included",
            );
            got.push(String::from_utf8_lossy(&d.payload).into_owned());
        }
        t.check(
            sorted(got.clone()) == ["from alice", "from bob"],
            "\"from alice\" and \"from bob\"",
            lines(&got),
            "each peer receives each message once, its own included",
        );
        let left = lab::leave(peer, group, LO);
        t.step(format_args!("{name} called leave: {}", outcome(&left)));
        t.ok(
            left,
            "leave",
            "each peer is a member on 127.0.0.1, so it can leave there",
        );
    }
}

#[test]
fn step7_peer_binary_receives_its_own_message_and_leaves() {
    let t = Transcript::new("Lab 04 § Step 7: Leave the group");
    check_binary_stays_on_loopback(&t);
    let group = unique_group();
    let g = group.to_string();
    let mut peer = PeerProcess::start(
        &t,
        &[
            "peer",
            "--group",
            &g,
            "--port",
            "0",
            "--ttl",
            "0",
            "--count",
            "1",
            "--timeout",
            BIN_TIMEOUT,
            "just me",
        ],
    );
    peer.ready(&t, group);
    let done = peer.finish(
        &t,
        EXIT_WAIT,
        "the peer should have received its own message, left and exited",
    );
    t.check(
        done.status.success() && done.stdout == ["Received: just me"],
        "exit status 0 and stdout \"Received: just me\"",
        format_args!("{}; stdout: {}", status_text(done.status), lines(&done.stdout)),
        "the lecture's peer alone: it joins, sends, hears its own message (multicast loopback) \
         and leaves",
    );
    t.check(
        done.stderr.iter().any(|l| l == &format!("left {group}")),
        format_args!("the stderr line \"left {group}\""),
        lines(&done.stderr),
        "the peer leaves the group with your leave, then says so",
    );
}

#[test]
fn step7_peer_binaries_hear_those_that_joined_after_them() {
    let t = Transcript::new("Lab 04 § Joining late");
    check_binary_stays_on_loopback(&t);
    let group = unique_group();
    let g = group.to_string();
    // The test's member joins first, so it sees when the first peer has sent.
    let witness = test_member(group, 0);
    let port = port_of(&witness);
    let p = port.to_string();
    t.step(format_args!(
        "the test's member joined {group} on 127.0.0.1, port {port}"
    ));
    let peer_args = |count: &'static str, message: &'static str| -> Vec<String> {
        [
            "peer",
            "--group",
            &g,
            "--port",
            &p,
            "--ttl",
            "0",
            "--count",
            count,
            "--timeout",
            BIN_TIMEOUT,
            message,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let first_args = peer_args("3", "from the first");
    let first_args: Vec<&str> = first_args.iter().map(String::as_str).collect();
    let mut first = PeerProcess::start(&t, &first_args);
    let first_port = first.ready(&t, group);
    t.check(
        first_port == port,
        format_args!("the first peer on port {port}"),
        format_args!("port {first_port}"),
        "the peer binds the port it is given (--port), shared with the test's member",
    );
    expect_datagram(
        &t,
        &witness,
        "the test's member",
        b"from the first",
        "the first peer sends its message to the group once it has joined",
        "the peer sends its message's bytes unchanged",
    );
    // Only now, after the first peer's message has gone out, does the second peer start.
    let second_args = peer_args("2", "from the second");
    let second_args: Vec<&str> = second_args.iter().map(String::as_str).collect();
    let mut second = PeerProcess::start(&t, &second_args);
    let second_port = second.ready(&t, group);
    t.check(
        second_port == port,
        format_args!("the second peer on port {port}"),
        format_args!("port {second_port}"),
        "the second peer shares the first one's port",
    );
    // Both are members now; the test sends the second peer's other datagram.
    send_from_test(&t, &test_sender(), group, port, b"from the test");
    let why_running = "each peer had its datagrams and should have left and exited";
    let first = first.finish(&t, EXIT_WAIT, why_running);
    let second = second.finish(&t, EXIT_WAIT, why_running);
    t.check(
        first.status.success()
            && sorted(first.stdout.clone())
                == [
                    "Received: from the first",
                    "Received: from the second",
                    "Received: from the test",
                ],
        "the first peer: status 0 and \"Received: \" lines for \"from the first\", \"from the \
         second\" and \"from the test\"",
        format_args!("{}; stdout: {}", status_text(first.status), lines(&first.stdout)),
        "the first peer hears itself and everything sent after it joined",
    );
    t.check(
        second.status.success()
            && sorted(second.stdout.clone()) == ["Received: from the second", "Received: from the test"],
        "the second peer: status 0 and \"Received: \" lines for \"from the second\" and \"from \
         the test\"",
        format_args!(
            "{}; stdout: {}",
            status_text(second.status),
            lines(&second.stdout)
        ),
        "the second peer joined after the first one sent, so it hears only itself and the test",
    );
}
