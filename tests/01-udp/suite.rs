//! Lab 01 grading suite: UDP datagrams.
//!
//! Shared by `lab01-udp` (the student's work) and `solution01-udp` (the reference): each
//! package's `tests/grade.rs` defines `lab` (its library) and `BIN` (its binary) and includes this
//! file. Tests are named `stepN_...` after the step of the book chapter they check, so
//! `cargo test -p lab01-udp step3_` runs the checks of step 3.
//!
//! Every test binds port 0 on loopback, sets timeouts on every socket, and fails within seconds
//! when the code under test panics (a `todo!()`) or hangs.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::relay::{Faults, UdpRelay};
use common::testing::{
    LOCALHOST_V6, ServerProcess, ServerThread, ipv6_loopback_available, notice, run_within, udp_socket,
    udp_socket_on, within,
};

use crate::{BIN, lab};

/// How long a test lets a client binary run before killing it.
const CLIENT_RUN_LIMIT: Duration = Duration::from_secs(15);
/// The longest a single library call may take before the test calls it hung.
const CALL_LIMIT: Duration = Duration::from_secs(10);
/// Extra time allowed over a computed timeout budget, for slow, busy machines.
const SLACK: Duration = Duration::from_millis(2000);

fn addr_of(socket: &UdpSocket) -> SocketAddr {
    socket.local_addr().expect("a bound socket has a local address")
}

/// Receives one datagram on a test socket (5 s timeout), failing with `what` in the message.
fn recv(socket: &UdpSocket, what: &str) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65_536];
    let (n, from) = loop {
        match socket.recv_from(&mut buf) {
            Ok(got) => break got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue, // a signal; not a timeout
            Err(e) => panic!("no {what} arrived within 5 s: {e}"),
        }
    };
    buf.truncate(n);
    (buf, from)
}

/// Asserts that nothing arrives on `socket` for `wait`.
fn assert_silent(socket: &UdpSocket, wait: Duration, why: &str) {
    socket.set_read_timeout(Some(wait)).expect("set timeout");
    let mut buf = [0u8; 65_536];
    if let Ok((n, from)) = socket.recv_from(&mut buf) {
        panic!("{why}; but {n} bytes arrived from {from}");
    }
}

/// A test-side echo server (not the student's code) answering `count` requests with `reply`
/// (or the request itself when `None`).
fn echo_thread(socket: UdpSocket, count: usize) -> ServerThread<()> {
    ServerThread::spawn("the test's echo server", move || {
        for _ in 0..count {
            let (payload, from) = recv(&socket, "request for the test's echo server");
            socket.send_to(&payload, from).expect("echo reply");
        }
    })
}

/// A server thread running the student's `serve_one` once on a fresh socket.
fn serve_one_thread(config: lab::ServerConfig) -> (SocketAddr, ServerThread<std::io::Result<lab::Served>>) {
    let socket = udp_socket();
    let addr = addr_of(&socket);
    let thread = ServerThread::spawn("the server thread (serve_one)", move || {
        lab::serve_one(&socket, &config)
    });
    (addr, thread)
}

/// What a `serve` thread returns: its result, and every outcome it logged.
type ServeLog = (Result<u64, String>, Vec<Result<lab::Served, String>>);

/// A server thread running the student's `serve` with `max_requests`, collecting its log.
fn serve_thread(max_requests: u64) -> (SocketAddr, ServerThread<ServeLog>) {
    let socket = udp_socket();
    let addr = addr_of(&socket);
    let thread = ServerThread::spawn("the server thread (serve)", move || {
        let mut log = Vec::new();
        let cfg = lab::ServerConfig {
            max_requests: Some(max_requests),
            ..config(1000, false)
        };
        let served = lab::serve(&socket, &cfg, |o| log.push(o.cloned().map_err(|e| e.to_string())));
        (served.map_err(|e| e.to_string()), log)
    });
    (addr, thread)
}

fn config(buffer: usize, uppercase: bool) -> lab::ServerConfig {
    lab::ServerConfig {
        buffer,
        uppercase,
        max_requests: None,
    }
}

fn run_client(args: &[&str]) -> std::process::Output {
    let args: Vec<&str> = std::iter::once("client").chain(args.iter().copied()).collect();
    run_within(BIN, &args, CLIENT_RUN_LIMIT)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Step 1: bind a datagram socket

#[test]
fn step1_bind_port_zero_gives_an_ephemeral_port() {
    let socket = lab::bind("127.0.0.1:0".parse().expect("addr")).expect("bind 127.0.0.1:0");
    let local = addr_of(&socket);
    assert_eq!(local.ip().to_string(), "127.0.0.1", "bound to the wrong address");
    assert_ne!(
        local.port(),
        0,
        "port 0 asks the OS for an ephemeral port; local_addr() must show the real one"
    );
}

#[test]
fn step1_bind_reports_a_port_in_use() {
    let holder = udp_socket();
    let err = lab::bind(addr_of(&holder))
        .expect_err("binding a port another socket holds must fail (see Lab 01 § Ports and binding)");
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::AddrInUse,
        "unexpected error: {err}"
    );
}

#[test]
fn step1_server_binary_prints_its_ready_line() {
    let server = ServerProcess::start(BIN, &["server", "--port", "0"]);
    let addr = server.addr();
    assert!(
        addr.ip().is_loopback(),
        "the server binds 127.0.0.1 by default, got {addr}"
    );
    assert_ne!(
        addr.port(),
        0,
        "the ready line must show the ephemeral port, not 0"
    );
}

// ---------------------------------------------------------------------------------------------
// Step 2: receive from any sender, detect truncation

#[test]
fn step2_receives_the_payload_and_the_sender() {
    let receiver = udp_socket();
    let sender = udp_socket();
    sender.send_to(b"hello", addr_of(&receiver)).expect("send");
    let got = lab::recv_datagram(&receiver, 100).expect("recv_datagram");
    assert_eq!(
        got,
        lab::Received::Datagram {
            from: addr_of(&sender),
            payload: b"hello".to_vec()
        },
        "sent b\"hello\" from {}",
        addr_of(&sender)
    );
}

#[test]
fn step2_an_empty_datagram_is_a_whole_datagram() {
    let receiver = udp_socket();
    let sender = udp_socket();
    sender.send_to(b"", addr_of(&receiver)).expect("send");
    let got = lab::recv_datagram(&receiver, 100).expect("recv_datagram");
    assert_eq!(
        got,
        lab::Received::Datagram {
            from: addr_of(&sender),
            payload: Vec::new()
        },
        "a datagram of 0 bytes is valid in UDP (see Lab 01 § Message size)"
    );
}

#[test]
fn step2_detects_truncation_at_the_boundary() {
    let receiver = udp_socket();
    let sender = udp_socket();
    for (len, fits) in [(1000, true), (1001, false), (1500, false)] {
        sender
            .send_to(&vec![b'x'; len], addr_of(&receiver))
            .expect("send");
        let got = lab::recv_datagram(&receiver, 1000).expect("recv_datagram");
        match got {
            lab::Received::Datagram { payload, .. } => assert!(
                fits,
                "a {len}-byte datagram was reported whole ({} bytes) with a 1000-byte buffer: \
                 the OS truncates silently; see Lab 01 § Message size",
                payload.len()
            ),
            lab::Received::Truncated {
                from,
                capacity,
                at_least,
            } => {
                assert!(
                    !fits,
                    "a {len}-byte datagram fits a 1000-byte buffer exactly; it is not truncated"
                );
                assert_eq!(from, addr_of(&sender), "wrong sender for the truncated datagram");
                assert_eq!(capacity, 1000, "capacity must be the buffer size asked for");
                assert!(
                    (1001..=len).contains(&at_least),
                    "at_least = {at_least} for a {len}-byte datagram"
                );
            }
        }
    }
}

#[test]
fn step2_returns_the_timeout_error() {
    let receiver = udp_socket();
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let started = Instant::now();
    let err = lab::recv_datagram(&receiver, 100).expect_err("nothing was sent, so the read must time out");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "a read timeout shows as WouldBlock (Unix) or TimedOut (Windows), got {err}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(200) + SLACK,
        "returned too late"
    );
}

// ---------------------------------------------------------------------------------------------
// Step 3: reply to the sender

#[test]
fn step3_echoes_to_the_sender() {
    let (server, mut thread) = serve_one_thread(config(1000, false));
    let client = udp_socket();
    client.send_to(b"hello", server).expect("send");
    let (reply, from) = thread.recv_from(&client, "the reply to \"hello\"");
    assert_eq!(text(&reply), "hello");
    assert_eq!(from, server, "the reply must come from the server's socket");
    let outcome = thread
        .join_within(Duration::from_secs(5))
        .expect("serve_one succeeds");
    assert_eq!(
        outcome,
        lab::Served::Replied {
            to: addr_of(&client),
            len: 5
        }
    );
}

#[test]
fn step3_uppercase_changes_only_ascii_letters() {
    let (server, mut thread) = serve_one_thread(config(1000, true));
    let client = udp_socket();
    let request = "Hello, UDP 6789! é".as_bytes();
    client.send_to(request, server).expect("send");
    let (reply, _) = thread.recv_from(&client, "the uppercase reply");
    assert_eq!(text(&reply), "HELLO, UDP 6789! é", "sent {:?}", text(request));
}

#[test]
fn step3_reply_goes_to_the_senders_port() {
    // Two clients on the same IP, different ports: only the sender may get the reply.
    let (server, mut thread) = serve_one_thread(config(1000, false));
    let bystander = udp_socket();
    let client = udp_socket();
    client.send_to(b"mine", server).expect("send");
    let (reply, _) = thread.recv_from(&client, "the reply at the sender's own port");
    assert_eq!(text(&reply), "mine");
    assert_silent(
        &bystander,
        Duration::from_millis(200),
        "the reply went to another port: send it to the address recv_from returned (Lab 01 § Receive from any)",
    );
}

#[test]
fn step3_empty_request_gets_an_empty_reply() {
    let (server, mut thread) = serve_one_thread(config(1000, false));
    let client = udp_socket();
    client.send_to(b"", server).expect("send");
    let (reply, _) = thread.recv_from(&client, "an empty reply to an empty datagram");
    assert!(
        reply.is_empty(),
        "expected an empty reply, got {} bytes",
        reply.len()
    );
}

#[test]
fn step3_several_kilobytes_round_trip() {
    let (server, mut thread) = serve_one_thread(config(9000, false));
    let client = udp_socket();
    let request: Vec<u8> = (0..8000u32).map(|i| (i % 251) as u8).collect();
    client.send_to(&request, server).expect("send");
    let (reply, _) = thread.recv_from(&client, "the 8000-byte reply");
    assert_eq!(
        reply.len(),
        request.len(),
        "server replied with {} of {} bytes (buffer 9000)",
        reply.len(),
        request.len()
    );
    assert!(reply == request, "the reply's bytes differ from the request's");
}

#[test]
fn step3_truncated_datagram_is_not_echoed() {
    let (server, thread) = serve_one_thread(config(1000, false));
    let client = udp_socket();
    client.send_to(&[b'a'; 1500], server).expect("send");
    let outcome = thread
        .join_within(Duration::from_secs(5))
        .expect("serve_one succeeds");
    assert!(
        matches!(outcome, lab::Served::Dropped { capacity: 1000, from, .. } if from == addr_of(&client)),
        "a 1500-byte datagram into a 1000-byte buffer must be dropped, got {outcome:?}"
    );
    assert_silent(
        &client,
        Duration::from_millis(200),
        "a truncated datagram must not be echoed (its tail is lost; see Lab 01 § Message size)",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 4: the server loop

#[test]
fn step4_serves_max_requests_and_logs_each() {
    let (server, mut thread) = serve_thread(3);
    let client = udp_socket();
    for i in 0..3 {
        let msg = format!("request {i}");
        client.send_to(msg.as_bytes(), server).expect("send");
        let (reply, _) = thread.recv_from(&client, &format!("the reply to {msg:?}"));
        assert_eq!(text(&reply), msg);
    }
    let (served, log) = thread.join_within(Duration::from_secs(5));
    assert_eq!(
        served,
        Ok(3),
        "serve must return after max_requests = 3 datagrams"
    );
    assert_eq!(log.len(), 3, "one log entry per request expected, got {log:?}");
    assert!(log.iter().all(Result::is_ok), "{log:?}");
}

#[test]
fn step4_truncation_is_logged_and_the_next_datagram_served() {
    let (server, mut thread) = serve_thread(2);
    let client = udp_socket();
    client.send_to(&[b'z'; 1500], server).expect("send");
    client.send_to(b"next", server).expect("send");
    let (reply, _) = thread.recv_from(&client, "the reply to \"next\" after a truncated datagram");
    assert_eq!(
        text(&reply),
        "next",
        "the truncated datagram must not be echoed, the next one must"
    );
    let (served, log) = thread.join_within(Duration::from_secs(5));
    assert_eq!(served, Ok(2), "a dropped datagram counts as served");
    assert!(
        matches!(log.first(), Some(Ok(lab::Served::Dropped { .. }))),
        "the first log entry must report the dropped datagram, got {log:?}"
    );
}

#[test]
fn step4_returns_the_error_when_the_socket_times_out() {
    let socket = udp_socket();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let thread = ServerThread::spawn("the server thread (serve)", move || {
        lab::serve(&socket, &config(1000, false), |_| {}).map_err(|e| e.kind())
    });
    let result = thread.join_within(Duration::from_millis(200) + SLACK);
    assert!(
        matches!(
            result,
            Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        ),
        "serve must return the read-timeout error, not loop on it; got {result:?}"
    );
}

#[test]
fn step4_server_binary_serves_two_clients_separately() {
    let server = ServerProcess::start(BIN, &["server", "--port", "0"]);
    let (a, b) = (udp_socket(), udp_socket());
    a.send_to(b"from A", server.addr()).expect("send");
    b.send_to(b"from B", server.addr()).expect("send");
    assert_eq!(
        text(&recv(&b, "B's reply").0),
        "from B",
        "client B got another client's reply"
    );
    assert_eq!(
        text(&recv(&a, "A's reply").0),
        "from A",
        "client A got another client's reply"
    );
}

#[test]
fn step4_server_binary_uppercase() {
    let server = ServerProcess::start(BIN, &["server", "--port", "0", "--uppercase"]);
    let client = udp_socket();
    client.send_to(b"make me loud", server.addr()).expect("send");
    assert_eq!(text(&recv(&client, "the uppercase reply").0), "MAKE ME LOUD");
}

#[test]
fn step4_server_binary_logs_truncation_and_keeps_serving() {
    let server = ServerProcess::start(BIN, &["server", "--port", "0", "--buffer", "1000"]);
    let client = udp_socket();
    let me = addr_of(&client).to_string();
    client.send_to(&[b'q'; 1500], server.addr()).expect("send");
    let line = server.expect_stderr("trunc", Duration::from_secs(5));
    assert!(
        line.contains(&me) && line.contains("1000"),
        "the truncation log line must name the sender ({me}) and the buffer size (1000): {line:?}"
    );
    client.send_to(b"still there?", server.addr()).expect("send");
    let (reply, _) = recv(&client, "a reply after the truncated datagram");
    assert_eq!(
        text(&reply),
        "still there?",
        "got a reply to the truncated datagram instead"
    );
    // One log line per datagram, each naming the sender.
    server.expect_stderr_lines(&me, 2, Duration::from_secs(5));
}

#[test]
fn step4_server_binary_exits_after_max_requests() {
    let mut server = ServerProcess::start(BIN, &["server", "--port", "0", "--max-requests", "2"]);
    let client = udp_socket();
    for msg in ["one", "two"] {
        client.send_to(msg.as_bytes(), server.addr()).expect("send");
        assert_eq!(text(&recv(&client, "a reply").0), msg);
    }
    let status = server.wait_exit(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "with --max-requests 2 the server must exit 0 after two datagrams; status {status:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Step 5: one attempt, with a deadline and a sender check

#[test]
fn step5_attempt_returns_the_reply() {
    let server = udp_socket();
    let server_addr = addr_of(&server);
    let _echo = echo_thread(server, 1);
    let client = udp_socket();
    let reply = within(CALL_LIMIT, "lab::attempt", move || {
        lab::attempt(&client, server_addr, b"ping", Duration::from_secs(3), 100)
    })
    .expect("attempt");
    assert_eq!(
        reply.as_deref(),
        Some(&b"ping"[..]),
        "sent \"ping\" to an echo server"
    );
}

#[test]
fn step5_attempt_times_out_against_a_silent_socket() {
    let silent = udp_socket();
    let client = udp_socket();
    let timeout = Duration::from_millis(300);
    let silent_addr = addr_of(&silent);
    let started = Instant::now();
    let reply = within(CALL_LIMIT, "lab::attempt", move || {
        lab::attempt(&client, silent_addr, b"anyone?", timeout, 100)
    })
    .expect("attempt");
    let took = started.elapsed();
    assert_eq!(reply, None, "nobody replied, so the attempt must return None");
    assert!(
        took >= timeout * 8 / 10 && took <= timeout + SLACK,
        "the attempt took {took:?} with a {timeout:?} timeout (see Lab 01 § Timeouts)"
    );
    assert_eq!(
        recv(&silent, "the request").0,
        b"anyone?",
        "the request must be sent"
    );
}

#[test]
fn step5_attempt_ignores_a_stranger() {
    let server = udp_socket();
    let server_addr = addr_of(&server);
    let stranger = udp_socket();
    let _fake = ServerThread::spawn("the test's server", move || {
        let (_, client) = recv(&server, "the request");
        // A third socket on the same IP (another port) answers first.
        stranger.send_to(b"stray", client).expect("stray");
        thread::sleep(Duration::from_millis(50));
        server.send_to(b"real reply", client).expect("reply");
    });
    let client = udp_socket();
    let reply = within(CALL_LIMIT, "lab::attempt", move || {
        lab::attempt(&client, server_addr, b"request", Duration::from_secs(3), 100)
    })
    .expect("attempt");
    assert_eq!(
        reply.as_deref().map(text),
        Some("real reply".to_owned()),
        "a datagram from another endpoint is not the reply: compare the sender with the server \
         (IP and port; see Lab 01 § Receive from any)"
    );
}

#[test]
fn step5_strangers_do_not_extend_the_timeout() {
    let silent = udp_socket();
    let client = udp_socket();
    let client_addr = addr_of(&client);
    let silent_addr = addr_of(&silent);
    let stop = Arc::new(AtomicBool::new(false));
    let flood_stop = Arc::clone(&stop);
    let flood = thread::spawn(move || {
        let stranger = udp_socket();
        let until = Instant::now() + Duration::from_secs(5);
        while !flood_stop.load(Ordering::Relaxed) && Instant::now() < until {
            let _ = stranger.send_to(b"noise", client_addr);
            thread::sleep(Duration::from_millis(50));
        }
    });
    let timeout = Duration::from_millis(400);
    let started = Instant::now();
    let reply = within(CALL_LIMIT, "lab::attempt", move || {
        lab::attempt(&client, silent_addr, b"hello?", timeout, 100)
    });
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = flood.join();
    assert!(
        matches!(reply, Ok(None)),
        "only strangers spoke; expected Ok(None), got {reply:?}"
    );
    assert!(
        took <= timeout + Duration::from_millis(600),
        "with a stranger sending every 50 ms the attempt took {took:?} for a {timeout:?} timeout: \
         wait for what is left of the deadline, not a fresh timeout after each stray datagram"
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

#[test]
fn step6_request_round_trip() {
    let server = udp_socket();
    let server_addr = addr_of(&server);
    let _echo = echo_thread(server, 1);
    let reply = within(CALL_LIMIT, "lab::request", move || {
        lab::request(server_addr, b"round trip", &options(3000, 0))
    })
    .expect("request");
    assert_eq!(text(&reply), "round trip");
}

#[test]
fn step6_retransmits_after_a_lost_request() {
    let server = udp_socket();
    let server_addr = addr_of(&server);
    let _echo = echo_thread(server, 1);
    let lossy = Faults {
        drop_first: 1,
        ..Faults::default()
    };
    let relay = UdpRelay::start(server_addr, lossy, Faults::default(), 1).expect("relay");
    let relay_addr = relay.addr();
    let reply = within(CALL_LIMIT, "lab::request", move || {
        lab::request(relay_addr, b"second time lucky", &options(300, 2))
    });
    assert_eq!(
        reply.map(|r| text(&r)).map_err(|e| e.to_string()),
        Ok("second time lucky".to_owned()),
        "the relay dropped the first request; the client must send it again after its timeout \
         (see Lab 01 § Failure model)"
    );
    assert_eq!(relay.stats().dropped.load(Ordering::Relaxed), 1);
}

#[test]
fn step6_gives_up_after_retries() {
    let silent = udp_socket();
    let silent_addr = addr_of(&silent);
    let started = Instant::now();
    let result = within(CALL_LIMIT, "lab::request", move || {
        lab::request(silent_addr, b"hello?", &options(200, 2))
    });
    let took = started.elapsed();
    match result {
        Err(lab::RequestError::NoReply {
            server,
            attempts,
            timeout,
        }) => {
            assert_eq!(server, addr_of(&silent));
            assert_eq!(attempts, 3, "retries = 2 means 3 attempts in all");
            assert_eq!(timeout, Duration::from_millis(200));
        }
        other => panic!("expected RequestError::NoReply, got {other:?}"),
    }
    let budget = Duration::from_millis(600);
    assert!(
        took >= budget * 8 / 10 && took <= budget + SLACK,
        "3 attempts of 200 ms took {took:?}"
    );
    let mut sent = 0;
    silent
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    while silent.recv_from(&mut [0u8; 64]).is_ok() {
        sent += 1;
    }
    assert_eq!(
        sent, 3,
        "the silent server must have received the request 3 times"
    );
}

#[test]
fn step6_binaries_talk_to_each_other() {
    let server = ServerProcess::start(BIN, &["server", "--port", "0", "--uppercase"]);
    let out = run_client(&["--server", &server.addr().to_string(), "hello from the client"]);
    assert!(out.status.success(), "client failed: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Reply: HELLO FROM THE CLIENT\n");
}

#[test]
fn step6_client_binary_reports_no_reply_in_one_line() {
    let silent = udp_socket();
    let target = addr_of(&silent).to_string();
    let started = Instant::now();
    let out = run_client(&[
        "--server",
        &target,
        "--timeout",
        "200",
        "--retries",
        "1",
        "hello?",
    ]);
    let took = started.elapsed();
    assert!(!out.status.success(), "no reply must give a non-zero exit status");
    assert!(
        out.stdout.is_empty(),
        "nothing may be printed as a reply: {}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one error line expected: {err:?}"
    );
    for part in [target.as_str(), "2 attempts", "200 ms"] {
        assert!(err.contains(part), "the error line must say {part:?}: {err:?}");
    }
    assert!(
        took <= Duration::from_millis(400) + SLACK,
        "the client took {took:?}"
    );
}

#[test]
fn step6_client_binary_ignores_a_stray_datagram() {
    let server = udp_socket();
    let server_addr = addr_of(&server);
    let _fake = ServerThread::spawn("the test's server", move || {
        let (_, client) = recv(&server, "the request");
        udp_socket().send_to(b"stray", client).expect("stray");
        thread::sleep(Duration::from_millis(50));
        server.send_to(b"genuine", client).expect("reply");
    });
    let out = run_client(&["--server", &server_addr.to_string(), "--timeout", "3000", "hi"]);
    assert!(out.status.success(), "client failed: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "Reply: genuine\n",
        "the stray datagram must be ignored, not printed"
    );
}

#[test]
fn step6_client_binary_resolves_localhost_and_ipv6() {
    // Bind where `localhost` resolves first on this host, so the first address tried answers.
    let first = ("localhost", 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .expect("localhost resolves");
    let server = udp_socket_on(first.ip());
    let port = addr_of(&server).port();
    let _echo = echo_thread(server, 1);
    let out = run_client(&["--server", &format!("localhost:{port}"), "by name"]);
    assert!(
        out.status.success(),
        "client with localhost:{port} failed: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "Reply: by name\n");

    if !ipv6_loopback_available() {
        notice(
            "no IPv6 loopback (::1) on this host: skipped the [::1]:PORT part of step6_client_binary_resolves_localhost_and_ipv6",
        );
        return;
    }
    let server = udp_socket_on(LOCALHOST_V6);
    let target = addr_of(&server).to_string();
    let _echo6 = echo_thread(server, 1);
    let out = run_client(&["--server", &target, "over IPv6"]);
    assert!(
        out.status.success(),
        "client with {target} failed: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "Reply: over IPv6\n");
}
