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
//! - **no hangs**: every socket has read and write timeouts, calls that might block run under
//!   `within`, binaries run in a guard that kills them on drop, and every wait has a deadline.

use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::{Child, Command as StdCommand, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::testing::{IO_TIMEOUT, READY_TIMEOUT, is_timeout, notice, set_timeouts, udp_socket, within};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::{BIN, lab};

/// The only interface these tests use.
const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// An address no host should have (TEST-NET-3, RFC 5737): the "wrong interface".
const NOT_HERE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// How long a binary may run before the test kills it.
const RUN_LIMIT: Duration = Duration::from_secs(15);
/// The longest a single library call may take before the test calls it hung.
const CALL_LIMIT: Duration = Duration::from_secs(10);
/// Extra time allowed over a computed wait, for slow, busy machines.
const SLACK: Duration = Duration::from_millis(2000);
/// How long a socket must stay silent once the datagram it must not get has reached another
/// socket of this host (the kernel hands a multicast datagram to all local members at once).
const QUIET: Duration = Duration::from_millis(300);

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
    let setup = || -> std::io::Result<UdpSocket> {
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
    socket
        .local_addr()
        .expect("a bound socket has a local address")
        .port()
}

fn addr_of(socket: &UdpSocket) -> SocketAddr {
    socket.local_addr().expect("a bound socket has a local address")
}

fn send(sender: &UdpSocket, group: Ipv4Addr, port: u16, message: &str) {
    sender
        .send_to(message.as_bytes(), SocketAddrV4::new(group, port))
        .unwrap_or_else(|e| panic!("test set-up: cannot send {message:?} to {group}:{port}: {e}"));
}

/// Receives one datagram within [`IO_TIMEOUT`]; `what` names it in the failure message.
fn recv_text(socket: &UdpSocket, what: &str) -> (String, SocketAddr) {
    let mut buf = vec![0u8; 65_536];
    match socket.recv_from(&mut buf) {
        Ok((n, from)) => (String::from_utf8_lossy(&buf[..n]).into_owned(), from),
        Err(e) => panic!(
            "{what}: nothing arrived within {} ms ({e})",
            IO_TIMEOUT.as_millis()
        ),
    }
}

/// Asserts that nothing arrives on `socket` for [`QUIET`].
fn assert_silent(socket: &UdpSocket, why: &str) {
    let deadline = Instant::now() + QUIET;
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        socket.set_read_timeout(Some(left)).expect("set timeout");
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => panic!(
                "{why}; but it received {:?} from {from}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) if is_timeout(&e) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("{why}; but receiving failed instead: {e}"),
        }
    }
    set_timeouts(socket);
}

/// Stops the test unless `socket` sends out of 127.0.0.1 with TTL 0 or 1: the suite never sends
/// on another interface, even when the code under test forgot an option.
fn assert_stays_on_loopback(socket: &UdpSocket, whose: &str) {
    let sock = SockRef::from(socket);
    let interface = sock.multicast_if_v4().expect("read IP_MULTICAST_IF");
    let ttl = sock.multicast_ttl_v4().expect("read IP_MULTICAST_TTL");
    assert!(
        interface == LO && ttl <= 1,
        "{whose} would send to the group out of interface {interface} with TTL {ttl}; expected \
         interface 127.0.0.1 and the TTL asked for (0 here). Nothing was sent: set the outgoing \
         interface and the TTL (see Lab 04 § Loopback and TTL)"
    );
}

/// Before running a binary that sends: checks, through the library the binary uses, that its
/// sockets would send out of 127.0.0.1 with TTL 0.
fn assert_binary_stays_on_loopback() {
    let probe = udp_socket();
    lab::set_sending(&probe, &on_loopback(true)).expect("set_sending on a fresh socket");
    assert_stays_on_loopback(&probe, "a socket set up by set_sending (used by the binary)");
    let sender = lab::open_sender(&on_loopback(true)).expect("open_sender on 127.0.0.1");
    assert_stays_on_loopback(&sender, "the socket from open_sender (used by `send`)");
}

/// A member socket made by the code under test: `open`, then `join` on 127.0.0.1, with
/// timeouts set by the test.
fn lab_member(group: Ipv4Addr, port: u16) -> UdpSocket {
    let socket = lab::open(group, port).unwrap_or_else(|e| {
        panic!("open({group}, {port}) failed: {e} (see Lab 04 § Why the port is shared)")
    });
    set_timeouts(&socket);
    lab::join(&socket, group, LO).unwrap_or_else(|e| panic!("join({group}, {LO}) failed: {e}"));
    socket
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the binary to its end (at most [`RUN_LIMIT`]) and returns what it printed. (Not
/// assert_cmd's `timeout`: it installs a SIGCHLD handler, and a signal interrupts socket calls
/// with a timeout in every thread of the test process with `Interrupted`.)
fn run(args: &[&str]) -> Finished {
    PeerProcess::start(args).finish()
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
    fn start(args: &[&str]) -> Self {
        let description = format!("`{} {}`", short(BIN), args.join(" "));
        let mut child = StdCommand::new(BIN)
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

    fn stderr_report(&self) -> String {
        thread::sleep(Duration::from_millis(50));
        let lines = self.stderr.lock().map(|l| l.clone()).unwrap_or_default();
        if lines.is_empty() {
            String::new()
        } else {
            format!("\n--- its stderr ---\n{}", lines.join("\n"))
        }
    }

    /// Waits for the ready line `joined GROUP on 127.0.0.1 port PORT` and returns PORT.
    fn ready(&mut self, group: Ipv4Addr) -> u16 {
        let prefix = format!("joined {group} on {LO} port ");
        match self.stdout.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line
                .strip_prefix(&prefix)
                .and_then(|p| p.trim().parse().ok())
                .filter(|&p| p != 0)
                .unwrap_or_else(|| {
                    panic!(
                        "{}: first stdout line was {line:?}, expected `{prefix}PORT` with the real \
                         port, printed once the socket has joined{}",
                        self.description,
                        self.stderr_report()
                    )
                }),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "{} ended before printing its ready line `{prefix}PORT`{}",
                self.description,
                self.stderr_report()
            ),
            Err(RecvTimeoutError::Timeout) => panic!(
                "{} printed no ready line `{prefix}PORT` within {} ms{}",
                self.description,
                READY_TIMEOUT.as_millis(),
                self.stderr_report()
            ),
        }
    }

    /// Waits up to [`RUN_LIMIT`] for the process to exit and collects what it printed.
    fn finish(mut self) -> Finished {
        let deadline = Instant::now() + RUN_LIMIT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => panic!(
                    "{} still runs after {} s{}",
                    self.description,
                    RUN_LIMIT.as_secs(),
                    self.stderr_report()
                ),
            }
        };
        let mut stdout = Vec::new();
        // The reader ends when the pipe closes; wait a little for the last lines.
        while let Ok(line) = self.stdout.recv_timeout(Duration::from_secs(2)) {
            stdout.push(line);
        }
        thread::sleep(Duration::from_millis(50));
        let stderr = self.stderr.lock().map(|l| l.clone()).unwrap_or_default();
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

fn short(bin: &str) -> &str {
    std::path::Path::new(bin)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(bin)
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

// ---------------------------------------------------------------------------------------------
// Step 1: check the group and the interface

#[test]
fn step1_accepts_every_group_in_224_0_0_0_slash_4() {
    for group in [
        "224.0.0.0",
        "224.0.0.251",
        "232.1.2.3",
        "239.255.0.1",
        "239.255.255.255",
    ] {
        let group: Ipv4Addr = group.parse().expect("address");
        let result = lab::check_addresses(group, LO);
        assert!(
            result.is_ok(),
            "{group} starts with the bits 1110, so it is a multicast group; got {result:?} \
             (see Lab 04 § Group addresses)"
        );
    }
}

#[test]
fn step1_rejects_an_address_outside_224_0_0_0_slash_4() {
    for group in [
        "223.255.255.255",
        "240.0.0.0",
        "255.255.255.255",
        "127.0.0.1",
        "10.0.0.1",
        "0.0.0.0",
    ] {
        let group: Ipv4Addr = group.parse().expect("address");
        match lab::check_addresses(group, LO) {
            Err(e) => {
                assert_eq!(
                    e.kind(),
                    std::io::ErrorKind::InvalidInput,
                    "{group} is not a group: expected InvalidInput, got {e}"
                );
                assert!(
                    e.to_string().contains(&group.to_string()),
                    "the error must name the address {group}: {e}"
                );
            }
            Ok(()) => panic!(
                "{group} was accepted as a group, but only 224.0.0.0 to 239.255.255.255 (first \
                 four bits 1110) are IPv4 groups (see Lab 04 § Group addresses)"
            ),
        }
    }
}

#[test]
fn step1_rejects_an_interface_this_host_does_not_have() {
    let group = unique_group();
    for (interface, kind) in [
        (Ipv4Addr::UNSPECIFIED, std::io::ErrorKind::InvalidInput),
        (group, std::io::ErrorKind::InvalidInput),
        (Ipv4Addr::BROADCAST, std::io::ErrorKind::InvalidInput),
        (NOT_HERE, std::io::ErrorKind::AddrNotAvailable),
    ] {
        if interface == NOT_HERE && lab::is_host_address(NOT_HERE) {
            notice(
                "this host has the address 203.0.113.1: skipped that case of step1_rejects_an_interface_this_host_does_not_have",
            );
            continue;
        }
        match lab::check_addresses(group, interface) {
            Err(e) => {
                assert_eq!(
                    e.kind(),
                    kind,
                    "interface {interface}: expected {kind:?}, got {e}"
                );
                assert!(
                    e.to_string().contains(&interface.to_string()),
                    "the error must name the interface address {interface}: {e}"
                );
            }
            Ok(()) => panic!(
                "interface {interface} was accepted; an interface is named by one of this host's \
                 unicast addresses (see Lab 04 § Membership at the IP level)"
            ),
        }
    }
}

#[test]
fn step1_binary_rejects_a_bad_group_in_one_line() {
    let out = run(&[
        "peer", "--group", "10.0.0.1", "--port", "0", "--ttl", "0", "hello?",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a group outside 224.0.0.0/4 must end the peer with status 1; stderr: {}",
        out.stderr.join("\n")
    );
    assert!(
        out.stdout.is_empty(),
        "nothing may be printed on stdout: {}",
        out.stdout.join("\n")
    );
    let err = out.stderr.join("\n");
    assert_eq!(err.lines().count(), 1, "one error line expected: {err:?}");
    assert!(
        err.starts_with("error: ") && err.contains("10.0.0.1") && err.contains("multicast"),
        "the line must name the address and say it is not a multicast group: {err:?}"
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
    let group = unique_group().to_string();
    let args = [
        "listen",
        "--group",
        &group,
        "--port",
        "0",
        "--interface",
        "203.0.113.1",
    ];
    let out = run(&args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an interface address this host lacks must end the listener with status 1; stderr: {}",
        out.stderr.join("\n")
    );
    assert!(
        out.stdout.is_empty(),
        "nothing may be printed on stdout: {}",
        out.stdout.join("\n")
    );
    let err = out.stderr.join("\n");
    assert_eq!(err.lines().count(), 1, "one error line expected: {err:?}");
    assert!(
        err.starts_with("error: ") && err.contains("203.0.113.1"),
        "the line must name the interface address: {err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Step 2: share the port

#[test]
fn step2_port_zero_gives_an_ephemeral_port() {
    let group = unique_group();
    let socket = lab::open(group, 0).expect("open(group, 0)");
    let local = addr_of(&socket);
    assert_ne!(
        local.port(),
        0,
        "port 0 asks for an ephemeral port; local_addr() shows the real one"
    );
    assert!(
        local.ip() == Ipv4Addr::UNSPECIFIED || local.ip() == group,
        "a member binds 0.0.0.0 (or, where Linux cannot filter groups, the group address), so \
         datagrams to the group reach it; bound to {local} (see Lab 04 § Why the port is shared)"
    );
    let sock = SockRef::from(&socket);
    assert!(
        sock.reuse_address().expect("read SO_REUSEADDR"),
        "SO_REUSEADDR is off: set it before bind so other members can share the port"
    );
}

#[test]
fn step2_members_on_one_host_share_the_port() {
    let group = unique_group();
    let first = lab::open(group, 0).expect("open(group, 0)");
    let port = port_of(&first);
    for n in 2..=3 {
        let other = lab::open(group, port).unwrap_or_else(|e| {
            panic!(
                "member {n} could not bind port {port}, which member 1 holds: {e}. Allow address \
                 reuse (and port reuse on Unix) before bind, in every member (see Lab 04 § Why \
                 the port is shared)"
            )
        });
        assert_eq!(
            port_of(&other),
            port,
            "member {n} must be bound to the shared port"
        );
    }
    // The test's own member (also reusing) can join in.
    let _test = test_member(group, port);
}

#[test]
fn step2_a_port_held_without_reuse_is_refused() {
    // A plain socket, without reuse, on the wildcard address: it conflicts with every address.
    let holder = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind 0.0.0.0:0");
    let port = port_of(&holder);
    match lab::open(unique_group(), port) {
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::AddrInUse,
            "port {port} is held by a socket without reuse: expected AddrInUse, got {e}"
        ),
        Ok(socket) => panic!(
            "open bound {} although a socket without address reuse holds port {port}: reuse \
             works only when every socket asks for it; report the error",
            addr_of(&socket)
        ),
    }
}

#[test]
fn step2_a_socket_that_did_not_join_receives_nothing() {
    let group = unique_group();
    let member = test_member(group, 0);
    let port = port_of(&member);
    let bystander = lab::open(group, port).expect("open(group, port) beside a member");
    set_timeouts(&bystander);
    send(&test_sender(), group, port, "for members only");
    assert_eq!(
        recv_text(&member, "the datagram at the test's member").0,
        "for members only"
    );
    assert_silent(
        &bystander,
        "a socket that shares the port but did not join must receive nothing; on Linux every \
         socket on the port gets the groups *any* socket joined unless IP_MULTICAST_ALL is off: \
         call only_joined_groups before bind (see Lab 04 § Membership at the socket)",
    );
}

#[test]
fn step2_binary_reports_a_port_in_use_in_one_line() {
    let holder = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind 0.0.0.0:0");
    let port = port_of(&holder).to_string();
    let group = unique_group().to_string();
    let out = run(&[
        "listen",
        "--group",
        &group,
        "--port",
        &port,
        "--count",
        "1",
        "--timeout",
        "1000",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a port held without reuse must end the listener with status 1; stderr: {}",
        out.stderr.join("\n")
    );
    let err = out.stderr.join("\n");
    assert_eq!(err.lines().count(), 1, "one error line expected: {err:?}");
    assert!(
        err.starts_with("error: ") && err.contains(&port) && err.contains("in use"),
        "the line must name the port and say it is in use: {err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Step 3: join the group on an interface

#[test]
fn step3_a_member_receives_the_groups_datagrams() {
    let group = unique_group();
    let socket = lab::open(group, 0).expect("open(group, 0)");
    set_timeouts(&socket);
    lab::join(&socket, group, LO).expect("join on 127.0.0.1");
    let port = port_of(&socket);
    let sender = test_sender();
    send(&sender, group, port, "welcome");
    let (got, from) = recv_text(
        &socket,
        &format!(
            "sent \"welcome\" to {group}:{port} out of 127.0.0.1 after join({group}, 127.0.0.1); \
             a membership on another interface (or none) gets nothing from loopback (see Lab 04 § \
             Membership at the IP level)"
        ),
    );
    assert_eq!(got, "welcome");
    assert_eq!(
        from,
        addr_of(&sender),
        "the datagram must come from the test's sender"
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
    let group = unique_group();
    let socket = lab::open(group, 0).expect("open(group, 0)");
    let result = lab::join(&socket, group, NOT_HERE);
    assert!(
        result.is_err(),
        "join({group}, {NOT_HERE}) succeeded, but no interface has that address: pass the \
         interface you were given to the join, not 0.0.0.0 or a fixed address"
    );
}

#[test]
fn step3_two_groups_on_the_same_port_stay_apart() {
    let (red, blue) = (unique_group(), unique_group());
    let red_member = lab_member(red, 0);
    let port = port_of(&red_member);
    let blue_member = lab_member(blue, port);
    let sender = test_sender();
    send(&sender, red, port, "red news");
    send(&sender, blue, port, "blue news");
    assert_eq!(
        recv_text(&red_member, &format!("\"red news\" sent to {red}")).0,
        "red news"
    );
    assert_eq!(
        recv_text(&blue_member, &format!("\"blue news\" sent to {blue}")).0,
        "blue news"
    );
    let why = |me: Ipv4Addr, other: Ipv4Addr| {
        format!(
            "a member of {me} must not receive datagrams for {other}, although both groups use \
             port {port} (see Lab 04 § Membership at the socket)"
        )
    };
    assert_silent(&red_member, &why(red, blue));
    assert_silent(&blue_member, &why(blue, red));
}

#[test]
fn step3_listen_binary_prints_its_ready_line() {
    let group = unique_group();
    let g = group.to_string();
    let mut listener = PeerProcess::start(&["listen", "--group", &g, "--port", "0", "--count", "1"]);
    let port = listener.ready(group);
    // The ready line promises membership: a datagram sent now must arrive.
    let member = test_member(group, port);
    send(&test_sender(), group, port, "are you there?");
    assert_eq!(recv_text(&member, "the test member's copy").0, "are you there?");
}

// ---------------------------------------------------------------------------------------------
// Step 4: the outgoing interface, TTL and loopback

#[test]
fn step4_options_are_applied() {
    let socket = udp_socket();
    let sock = SockRef::from(&socket);
    for (ttl, loopback) in [(0, false), (1, true), (0, true)] {
        let options = lab::SendOptions {
            interface: LO,
            ttl,
            loopback,
        };
        lab::set_sending(&socket, &options).expect("set_sending");
        let got_if = sock.multicast_if_v4().expect("read IP_MULTICAST_IF");
        let got_ttl = sock.multicast_ttl_v4().expect("read IP_MULTICAST_TTL");
        let got_loop = sock.multicast_loop_v4().expect("read IP_MULTICAST_LOOP");
        assert_eq!(
            got_if, LO,
            "asked for interface 127.0.0.1, IP_MULTICAST_IF reads {got_if}: without it the \
             system sends by its routing table (see Lab 04 § Loopback and TTL)"
        );
        assert_eq!(
            got_ttl, ttl,
            "asked for TTL {ttl}, IP_MULTICAST_TTL reads {got_ttl}"
        );
        assert_eq!(
            got_loop, loopback,
            "asked for loopback {loopback}, IP_MULTICAST_LOOP reads {got_loop}"
        );
    }
}

#[test]
fn step4_a_socket_set_up_for_sending_reaches_a_member() {
    let group = unique_group();
    let member = test_member(group, 0);
    let port = port_of(&member);
    let socket = udp_socket();
    lab::set_sending(&socket, &on_loopback(true)).expect("set_sending");
    assert_stays_on_loopback(&socket, "the socket after set_sending");
    send(&socket, group, port, "set up by you");
    assert_eq!(
        recv_text(&member, "a datagram from the socket set up by set_sending").0,
        "set up by you"
    );
}

#[test]
fn step4_an_unknown_interface_is_refused() {
    if lab::is_host_address(NOT_HERE) {
        notice("this host has the address 203.0.113.1: skipped step4_an_unknown_interface_is_refused");
        return;
    }
    let socket = udp_socket();
    let options = lab::SendOptions {
        interface: NOT_HERE,
        ..on_loopback(true)
    };
    let result = lab::set_sending(&socket, &options);
    assert!(
        result.is_err(),
        "set_sending accepted interface {NOT_HERE}, which this host lacks: the system reports \
         it when IP_MULTICAST_IF is set; return that error"
    );
}

// ---------------------------------------------------------------------------------------------
// Step 5: send to the group

#[test]
fn step5_open_sender_binds_the_interface_and_sets_it_up() {
    let sender = lab::open_sender(&on_loopback(false)).expect("open_sender");
    let local = addr_of(&sender);
    assert_eq!(
        local.ip().to_string(),
        "127.0.0.1",
        "a sender binds the interface's address, so its datagrams carry it as source"
    );
    assert_ne!(local.port(), 0, "bind port 0 for an ephemeral port");
    assert_stays_on_loopback(&sender, "the socket from open_sender");
    let sock = SockRef::from(&sender);
    assert_eq!(sock.multicast_ttl_v4().expect("ttl"), 0, "asked for TTL 0");
    assert!(!sock.multicast_loop_v4().expect("loop"), "asked for loopback off");
}

#[test]
fn step5_a_sender_that_is_not_a_member_reaches_every_member() {
    let group = unique_group();
    let first = test_member(group, 0);
    let port = port_of(&first);
    let second = test_member(group, port);
    let sender = lab::open_sender(&on_loopback(true)).expect("open_sender");
    assert_stays_on_loopback(&sender, "the socket from open_sender");
    lab::send_to_group(&sender, group, port, b"to all members").expect("send_to_group");
    for (n, member) in [(1, &first), (2, &second)] {
        let (got, from) = recv_text(
            member,
            &format!("member {n}: \"to all members\" sent to {group}:{port} by a non-member"),
        );
        assert_eq!(got, "to all members");
        assert_eq!(
            from,
            addr_of(&sender),
            "the datagram must come from the sender's socket"
        );
    }
}

#[test]
fn step5_a_member_receives_its_own_datagram() {
    let group = unique_group();
    let me = lab_member(group, 0);
    let port = port_of(&me);
    let other = test_member(group, port);
    lab::set_sending(&me, &on_loopback(true)).expect("set_sending");
    assert_stays_on_loopback(&me, "the member socket");
    lab::send_to_group(&me, group, port, b"echo of myself").expect("send_to_group");
    assert_eq!(recv_text(&other, "the other member's copy").0, "echo of myself");
    assert_eq!(
        recv_text(
            &me,
            "the sender's own copy (multicast loopback; see Lab 04 § Loopback and TTL)"
        )
        .0,
        "echo of myself"
    );
}

#[test]
fn step5_send_binary_reaches_a_member() {
    assert_binary_stays_on_loopback();
    let group = unique_group();
    let member = test_member(group, 0);
    let port = port_of(&member).to_string();
    let g = group.to_string();
    let out = run(&[
        "send",
        "--group",
        &g,
        "--port",
        &port,
        "--ttl",
        "0",
        "news for the group",
    ]);
    assert!(out.status.success(), "send failed: {}", out.stderr.join("\n"));
    assert_eq!(
        recv_text(&member, "the datagram of the send subcommand").0,
        "news for the group"
    );
}

// ---------------------------------------------------------------------------------------------
// Step 6: receive with a deadline

#[test]
fn step6_receive_returns_the_datagram_and_its_sender() {
    let group = unique_group();
    let member = test_member(group, 0);
    let port = port_of(&member);
    let sender = test_sender();
    send(&sender, group, port, "first");
    let got = within(CALL_LIMIT, "lab::receive", move || {
        lab::receive(&member, Instant::now() + Duration::from_secs(5))
    })
    .expect("receive");
    assert_eq!(
        got,
        Some(lab::Datagram {
            from: addr_of(&sender),
            payload: b"first".to_vec()
        }),
        "sent \"first\" from {}",
        addr_of(&sender)
    );
}

#[test]
fn step6_receive_keeps_long_datagrams_whole() {
    let group = unique_group();
    let member = test_member(group, 0);
    let port = port_of(&member);
    let sender = test_sender();
    let long: Vec<u8> = (0..9000u32).map(|i| b'a' + (i % 26) as u8).collect();
    sender
        .send_to(&long, SocketAddrV4::new(group, port))
        .expect("send");
    let got = within(CALL_LIMIT, "lab::receive", move || {
        lab::receive(&member, Instant::now() + Duration::from_secs(5))
    })
    .expect("receive")
    .expect("a datagram");
    assert_eq!(
        got.payload.len(),
        long.len(),
        "a 9000-byte datagram came back with {} bytes: the buffer truncates it; use MAX_DATAGRAM",
        got.payload.len()
    );
    assert!(got.payload == long, "the bytes differ from those sent");
}

#[test]
fn step6_receive_returns_none_at_the_deadline() {
    let member = test_member(unique_group(), 0);
    member.set_read_timeout(None).expect("no timeout");
    let wait = Duration::from_millis(300);
    let started = Instant::now();
    let got = within(CALL_LIMIT, "lab::receive", move || {
        lab::receive(&member, Instant::now() + wait).map_err(|e| e.to_string())
    });
    let took = started.elapsed();
    assert_eq!(
        got,
        Ok(None),
        "nothing was sent, so receive must return Ok(None) at the deadline"
    );
    assert!(
        took >= wait * 8 / 10 && took <= wait + SLACK,
        "receive took {took:?} for a deadline {wait:?} away: set the read timeout to what is left"
    );
}

#[test]
fn step6_a_deadline_already_past_returns_at_once() {
    let member = test_member(unique_group(), 0);
    member.set_read_timeout(None).expect("no timeout");
    let started = Instant::now();
    let got = within(CALL_LIMIT, "lab::receive", move || {
        lab::receive(&member, Instant::now()).map_err(|e| e.to_string())
    });
    assert_eq!(
        got,
        Ok(None),
        "a deadline that has passed means no time is left: Ok(None), without calling \
         set_read_timeout(Some(0)) (which fails with InvalidInput)"
    );
    assert!(started.elapsed() < SLACK, "took {:?}", started.elapsed());
}

#[test]
fn step6_listen_binary_prints_each_datagram() {
    let group = unique_group();
    let g = group.to_string();
    let mut listener = PeerProcess::start(&["listen", "--group", &g, "--port", "0", "--count", "2"]);
    let port = listener.ready(group);
    let sender = test_sender();
    send(&sender, group, port, "one");
    send(&sender, group, port, "two");
    let done = listener.finish();
    assert_eq!(
        done.stdout,
        ["Received: one", "Received: two"],
        "sent \"one\" and \"two\" to {group}:{port} after the ready line; stderr: {:?}",
        done.stderr
    );
}

#[test]
fn step6_listen_binary_times_out_in_one_line() {
    let group = unique_group();
    let g = group.to_string();
    let started = Instant::now();
    let mut listener = PeerProcess::start(&[
        "listen",
        "--group",
        &g,
        "--port",
        "0",
        "--count",
        "1",
        "--timeout",
        "300",
    ]);
    listener.ready(group);
    let done = listener.finish();
    assert_eq!(
        done.status.code(),
        Some(1),
        "no datagram came within --timeout 300: expected status 1; stderr: {:?}",
        done.stderr
    );
    assert!(
        done.stdout.is_empty(),
        "nothing was sent, nothing may be printed: {:?}",
        done.stdout
    );
    let errors: Vec<&String> = done.stderr.iter().filter(|l| l.starts_with("error:")).collect();
    assert!(
        errors.len() == 1 && errors[0].contains("300 ms"),
        "one error line naming the 300 ms expected: {:?}",
        done.stderr
    );
    assert!(
        started.elapsed() <= Duration::from_millis(300) + READY_TIMEOUT,
        "took too long"
    );
}

// ---------------------------------------------------------------------------------------------
// Step 7: leave the group; the whole peer

#[test]
fn step7_after_leaving_a_member_receives_no_more() {
    let group = unique_group();
    let leaver = lab_member(group, 0);
    let port = port_of(&leaver);
    let stayer = test_member(group, port);
    let sender = test_sender();
    send(&sender, group, port, "before");
    assert_eq!(recv_text(&leaver, "\"before\", sent while a member").0, "before");
    assert_eq!(recv_text(&stayer, "the other member's \"before\"").0, "before");
    lab::leave(&leaver, group, LO).expect("leave(group, 127.0.0.1)");
    send(&sender, group, port, "after");
    assert_eq!(
        recv_text(&stayer, "\"after\" at the member that stayed").0,
        "after"
    );
    assert_silent(
        &leaver,
        "after leave() the socket must receive no more of the group's datagrams: drop the \
         membership on the interface it was joined on (see Lab 04 § Membership at the socket)",
    );
}

#[test]
fn step7_two_peers_receive_each_others_messages_and_their_own() {
    let group = unique_group();
    let alice = lab_member(group, 0);
    let port = port_of(&alice);
    let bob = lab_member(group, port);
    for (name, peer) in [("alice", &alice), ("bob", &bob)] {
        lab::set_sending(peer, &on_loopback(true)).expect("set_sending");
        assert_stays_on_loopback(peer, name);
    }
    // Both have joined before either sends: no message can be missed.
    lab::send_to_group(&alice, group, port, b"from alice").expect("alice sends");
    lab::send_to_group(&bob, group, port, b"from bob").expect("bob sends");
    for (name, peer) in [("alice", alice), ("bob", bob)] {
        let got = within(CALL_LIMIT, "lab::receive", move || {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut got = Vec::new();
            for _ in 0..2 {
                match lab::receive(&peer, deadline) {
                    Ok(Some(d)) => got.push(text(&d.payload)),
                    Ok(None) => break,
                    Err(e) => panic!("receive failed: {e}"),
                }
            }
            let left = lab::leave(&peer, group, LO).map_err(|e| e.to_string());
            (got, left)
        });
        assert_eq!(
            sorted(got.0),
            ["from alice", "from bob"],
            "{name} must receive both messages, its own included (see Lab 04 § Loopback and TTL)"
        );
        assert_eq!(got.1, Ok(()), "{name} could not leave");
    }
}

#[test]
fn step7_peer_binary_receives_its_own_message_and_leaves() {
    assert_binary_stays_on_loopback();
    let group = unique_group();
    let g = group.to_string();
    let mut peer = PeerProcess::start(&[
        "peer", "--group", &g, "--port", "0", "--ttl", "0", "--count", "1", "just me",
    ]);
    peer.ready(group);
    let done = peer.finish();
    assert!(done.status.success(), "the peer failed: {:?}", done.stderr);
    assert_eq!(done.stdout, ["Received: just me"], "stderr: {:?}", done.stderr);
    assert!(
        done.stderr.iter().any(|l| l == &format!("left {group}")),
        "the peer must leave the group and say so (`left {group}`): {:?}",
        done.stderr
    );
}

#[test]
fn step7_peer_binaries_hear_those_that_joined_after_them() {
    assert_binary_stays_on_loopback();
    let group = unique_group();
    let g = group.to_string();
    // The test's member joins first, so it sees when the first peer has sent.
    let witness = test_member(group, 0);
    let port = port_of(&witness);
    let p = port.to_string();
    let mut first = PeerProcess::start(&[
        "peer",
        "--group",
        &g,
        "--port",
        &p,
        "--ttl",
        "0",
        "--count",
        "3",
        "from the first",
    ]);
    assert_eq!(
        first.ready(group),
        port,
        "the first peer must bind the port it was given"
    );
    assert_eq!(
        recv_text(&witness, "the first peer's message").0,
        "from the first"
    );
    // Only now, after the first peer's message has gone out, does the second peer start.
    let mut second = PeerProcess::start(&[
        "peer",
        "--group",
        &g,
        "--port",
        &p,
        "--ttl",
        "0",
        "--count",
        "2",
        "from the second",
    ]);
    assert_eq!(
        second.ready(group),
        port,
        "the second peer must share the first one's port"
    );
    // Both are members now; the test sends the second peer's other datagram.
    send(&test_sender(), group, port, "from the test");
    let (first, second) = (first.finish(), second.finish());
    assert!(
        first.status.success(),
        "the first peer failed: {:?}",
        first.stderr
    );
    assert!(
        second.status.success(),
        "the second peer failed: {:?}",
        second.stderr
    );
    assert_eq!(
        sorted(first.stdout),
        [
            "Received: from the first",
            "Received: from the second",
            "Received: from the test"
        ],
        "the first peer hears itself and everything sent after it joined"
    );
    assert_eq!(
        sorted(second.stdout),
        ["Received: from the second", "Received: from the test"],
        "the second peer joined after the first one sent, so it hears only itself and the test"
    );
}
