//! Robustness of the reference counting server: a request megabytes past the cap, stalled,
//! silent and resetting clients, a client that never reads nor closes, clients that trickle
//! their upload or trickle on into the drain after a refusal, 200 connections at once and a
//! shortage of descriptors do not stop it, and leave no descriptor behind.
//!
//! Each test starts the server binary (`--port 0`, short `--idle-timeout`), attacks it on
//! loopback, then checks that a normal client gets its reply within a deadline, that the server
//! is still running, and (Linux) that its open descriptors in /proc/PID/fd are back to what
//! they were before the attack. Not part of the grading suite: the server loop is given
//! complete, and some cases need Linux.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::testing::{ServerProcess, await_close, set_stream_timeouts, tcp_connect};
use solution05_closing::{Reply, Summary};

const BIN: &str = env!("CARGO_BIN_EXE_solution05-closing");

/// The cap on a request in these tests, in bytes: 1 MB.
const MAX_BYTES: u64 = 1_000_000;

/// How long a normal client may wait for its reply after an attack (the iterative server may
/// still be waiting out an attacker's idle timeout).
const SERVED_WITHIN: Duration = Duration::from_secs(5);

/// A server with a 300 ms idle timeout, a 2 s drain and a 1 MB cap, and its descriptor count
/// (Linux).
fn start() -> (ServerProcess, Option<usize>) {
    start_with("300", &[])
}

/// A server with the idle timeout `idle_ms`, a 2 s drain, a 1 MB cap and the options `extra`,
/// and its descriptor count (Linux).
fn start_with(idle_ms: &str, extra: &[&str]) -> (ServerProcess, Option<usize>) {
    let max_bytes = MAX_BYTES.to_string();
    let mut args = vec![
        "server",
        "--port",
        "0",
        "--idle-timeout",
        idle_ms,
        "--drain",
        "2000",
        "--max-bytes",
        &max_bytes,
    ];
    args.extend_from_slice(extra);
    let server = ServerProcess::start(BIN, &args);
    let baseline = common::descriptors::count(server.id());
    (server, baseline)
}

/// Reads the reply on `stream` to end of stream (at most 1 KiB) and parses it.
fn read_reply(stream: &mut TcpStream) -> io::Result<Option<Reply>> {
    let mut reply = Vec::new();
    stream.take(1024).read_to_end(&mut reply)?;
    Ok(Reply::parse(&reply))
}

/// Sends `request` on a new connection, half-closes, and checks the reply counts it.
fn normal_client(server: &ServerProcess, request: &[u8], attack: &str) {
    let mut stream = tcp_connect(server.addr());
    stream
        .set_read_timeout(Some(SERVED_WITHIN))
        .expect("read timeout");
    stream.write_all(request).expect("send");
    stream.shutdown(Shutdown::Write).expect("half-close");
    match read_reply(&mut stream) {
        Ok(Some(reply)) => assert_eq!(reply, Reply::Received(Summary::of(request)), "after {attack}"),
        other => panic!(
            "after {attack}, a normal client got no reply within {} ms: {other:?}{}",
            SERVED_WITHIN.as_millis(),
            server.log()
        ),
    }
}

/// After `attack`: a normal client is served, the server runs, its descriptors are back.
fn still_serving(server: &mut ServerProcess, baseline: Option<usize>, attack: &str) {
    normal_client(server, b"a normal request", attack);
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "the server exited after {attack}{}",
        server.log()
    );
    if let Some(baseline) = baseline {
        let settled = common::descriptors::await_at_most(server.id(), baseline, Duration::from_secs(5));
        assert!(
            settled.is_ok(),
            "after {attack}, the server still holds descriptors {settled:?}; it held {baseline} before"
        );
    }
}

#[test]
fn a_request_megabytes_past_the_cap_is_refused_and_drained() {
    let (mut server, baseline) = start();
    let mut big = tcp_connect(server.addr());
    // 3 MB against a 1 MB cap: the server refuses after 1 MB and drains the rest, so every
    // write succeeds and the refusal can be read after the half-close.
    let chunk = vec![b'b'; 64 * 1024];
    let mut sent = 0u64;
    while sent < 3 * MAX_BYTES {
        big.write_all(&chunk)
            .unwrap_or_else(|e| panic!("write after {sent} bytes failed: {e}{}", server.log()));
        sent += chunk.len() as u64;
    }
    big.shutdown(Shutdown::Write).expect("half-close");
    let reply = read_reply(&mut big);
    assert_eq!(
        reply.as_ref().ok().copied().flatten(),
        Some(Reply::Refused { max_bytes: MAX_BYTES }),
        "the reply to {sent} bytes: {reply:?}{}",
        server.log()
    );
    still_serving(&mut server, baseline, "a request of 3 MB (cap 1 MB)");
}

#[test]
fn a_stalled_request_is_dropped_after_the_idle_timeout() {
    let (mut server, baseline) = start();
    let mut stalled = tcp_connect(server.addr());
    let me = stalled.local_addr().expect("local address").to_string();
    stalled.write_all(b"the start of a request").expect("send");
    server.expect_stderr(
        &format!("{me}: connection closed after an error"),
        Duration::from_secs(5),
    );
    await_close(&mut stalled, "the stalled client");
    still_serving(&mut server, baseline, "a request that stalled before its end");
}

#[test]
fn a_silent_client_is_dropped_after_the_idle_timeout() {
    let (mut server, baseline) = start();
    let mut silent = tcp_connect(server.addr());
    let me = silent.local_addr().expect("local address").to_string();
    server.expect_stderr(
        &format!("{me}: connection closed after an error"),
        Duration::from_secs(5),
    );
    await_close(&mut silent, "the silent client");
    still_serving(&mut server, baseline, "a client that sent nothing");
}

#[test]
fn a_reset_mid_request_ends_that_connection_only() {
    let (mut server, baseline) = start();
    let rude = tcp_connect(server.addr());
    let me = rude.local_addr().expect("local address").to_string();
    (&rude).write_all(b"half a request").expect("send");
    server.expect_stderr(&format!("{me}: connected"), Duration::from_secs(5));
    socket2::SockRef::from(&rude)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(rude);
    server.expect_stderr(
        &format!("{me}: connection closed after an error"),
        Duration::from_secs(5),
    );
    still_serving(&mut server, baseline, "a reset in the middle of a request");
}

#[test]
fn a_client_that_never_reads_nor_closes_costs_nothing() {
    let (mut server, baseline) = start();
    let mut mute = tcp_connect(server.addr());
    let me = mute.local_addr().expect("local address").to_string();
    mute.write_all(b"a request whose reply nobody reads")
        .expect("send");
    mute.shutdown(Shutdown::Write).expect("half-close");
    // The reply fits in the socket buffers and the half-close lets the drain end: the server
    // closes in order and goes on, whatever the client does next.
    server.expect_stderr(&format!("{me}: received"), Duration::from_secs(5));
    still_serving(
        &mut server,
        baseline,
        "a client that never reads its reply nor closes",
    );
    drop(mute);
}

#[test]
fn two_hundred_connections_at_once_are_served_in_turn() {
    let (mut server, baseline) = start();
    let addr = server.addr();
    let clients: Vec<(Vec<u8>, TcpStream)> = (0..200)
        .map(|i| {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("client {i} cannot connect: {e}{}", server.log()));
            // Generous: a handshake that overflowed the backlog completes after a retransmission.
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("read timeout");
            let request = format!("request {i}").into_bytes();
            stream.write_all(&request).expect("send");
            stream.shutdown(Shutdown::Write).expect("half-close");
            (request, stream)
        })
        .collect();
    for (request, mut stream) in clients {
        let reply = read_reply(&mut stream);
        assert_eq!(
            reply.as_ref().ok().copied().flatten(),
            Some(Reply::Received(Summary::of(&request))),
            "{}: {reply:?}{}",
            String::from_utf8_lossy(&request),
            server.log()
        );
    }
    still_serving(&mut server, baseline, "200 connections at once");
}

#[cfg(target_os = "linux")]
#[test]
fn running_out_of_descriptors_is_survived() {
    let (mut server, baseline) = start();
    let addr = server.addr();
    normal_client(&server, b"first", "nothing");
    let waiting =
        common::descriptors::run_out_of_descriptors(&mut server, baseline.unwrap_or(usize::MAX), || {
            // Uses up the descriptor that the accept in progress already holds.
            drop(TcpStream::connect_timeout(&addr, Duration::from_secs(5)));
            let waiting = TcpStream::connect_timeout(&addr, Duration::from_secs(5));
            if let Ok(mut stream) = waiting.as_ref() {
                set_stream_timeouts(stream);
                let _ = stream.write_all(b"waiting");
                let _ = stream.shutdown(Shutdown::Write);
            }
            waiting
        })
        .unwrap_or_else(|e| panic!("out of descriptors: {e}"));
    let Some(waiting) = waiting else { return };
    let mut waiting = waiting.expect("the waiting client connects");
    let reply = read_reply(&mut waiting);
    assert_eq!(
        reply.as_ref().ok().copied().flatten(),
        Some(Reply::Received(Summary::of(b"waiting"))),
        "the waiting client's reply once descriptors were free: {reply:?}{}",
        server.log()
    );
    still_serving(&mut server, baseline, "a shortage of descriptors (EMFILE)");
}

/// The options of the slow-client tests: 1 s idle timeout, 1 s message timeout.
const SLOW_IDLE_MS: &str = "1000";
const SLOW_OPTIONS: [&str; 2] = ["--message-timeout", "1000"];

/// How long a slow client may hold the server before the test calls the limit broken.
const SLOW_LIMIT: Duration = Duration::from_secs(8);

#[test]
fn a_client_that_trickles_its_upload_is_cut_off_by_the_message_timeout() {
    let (mut server, baseline) = start_with(SLOW_IDLE_MS, &SLOW_OPTIONS);
    let mut trickler = tcp_connect(server.addr());
    let me = trickler.local_addr().expect("local address").to_string();
    // One byte every 100 ms, never a half-close (paced by the read timeout, which also notices
    // the close): each read of the server succeeds well within the 1 s idle timeout.
    trickler
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let closed = loop {
        if started.elapsed() > SLOW_LIMIT {
            break false;
        }
        if trickler.write_all(b"t").is_err() {
            break true;
        }
        match trickler.read(&mut buf) {
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            _ => break true,
        }
    };
    assert!(
        closed,
        "a client trickling one byte per 100 ms held the server for {} ms{}",
        started.elapsed().as_millis(),
        server.log()
    );
    server.expect_stderr(
        &format!("{me}: connection closed after an error (timed out): the upload took longer than the message timeout (1000 ms)"),
        Duration::from_secs(5),
    );
    drop(trickler);
    still_serving(&mut server, baseline, "a client that trickles its upload");
}

#[test]
fn a_refused_client_that_trickles_into_the_drain_is_cut_off_by_the_drain_deadline() {
    // The message timeout ends with the refusal; the drain that follows has its own deadline
    // (2 s, longer than the 1 s message timeout on purpose), and that is what ends this client.
    let (mut server, baseline) = start_with(SLOW_IDLE_MS, &SLOW_OPTIONS);
    let mut client = tcp_connect(server.addr());
    let me = client.local_addr().expect("local address").to_string();
    client
        .write_all(&vec![b'r'; MAX_BYTES as usize + 1])
        .unwrap_or_else(|e| panic!("send 1 MB + 1 byte: {e}{}", server.log()));
    // The refusal, then the server's FIN (its shutdown(Write)), while the drain goes on.
    let reply = read_reply(&mut client);
    assert_eq!(
        reply.as_ref().ok().copied().flatten(),
        Some(Reply::Refused { max_bytes: MAX_BYTES }),
        "the reply to 1 MB + 1 byte: {reply:?}{}",
        server.log()
    );
    let refused = Instant::now();
    // Keep sending a byte every 100 ms, never half-closing, until the server closes (a write
    // after its close gets a RST, and the next one fails).
    let cut = loop {
        if refused.elapsed() > SLOW_LIMIT {
            break false;
        }
        if client.write_all(b"t").is_err() {
            break true;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        cut,
        "a refused client trickling on into the drain held the server for {} ms{}",
        refused.elapsed().as_millis(),
        server.log()
    );
    server.expect_stderr(
        &format!("{me}: connection closed after an error (timed out): the peer did not finish sending within 2000 ms"),
        Duration::from_secs(5),
    );
    drop(client);
    still_serving(
        &mut server,
        baseline,
        "a refused client that trickles on into the drain",
    );
}
