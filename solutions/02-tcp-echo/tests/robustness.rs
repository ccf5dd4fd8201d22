//! Robustness of the reference echo server: over-long lines, stalled frames, silent, resetting
//! and non-reading clients, clients that trickle a message or drain its echo slowly, 200 connections at once and a shortage of descriptors do not stop
//! it, and leave no descriptor behind.
//!
//! Each test starts the server binary (`--port 0`, short `--idle-timeout`), attacks it on
//! loopback, then checks that a normal client is served within a deadline, that the server is
//! still running, and (Linux) that its open descriptors in /proc/PID/fd are back to what they
//! were before the attack. Not part of the grading suite: these cases go beyond what a step
//! asks, and some need Linux.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::testing::{ServerProcess, await_close, set_stream_timeouts, tcp_connect, write_until_closed};

const BIN: &str = env!("CARGO_BIN_EXE_solution02-tcp-echo");

/// The server's idle timeout in these tests, in milliseconds.
const IDLE_MS: &str = "300";

/// How long a normal client may wait for its echo after an attack (the iterative server may
/// still be waiting out an attacker's idle timeout).
const SERVED_WITHIN: Duration = Duration::from_secs(5);

/// A server with `framing` and a 300 ms idle timeout, and its descriptor count (Linux).
fn start(framing: &str) -> (ServerProcess, Option<usize>) {
    start_with(&["--framing", framing, "--idle-timeout", IDLE_MS])
}

/// A server with the options `args` (after `server --port 0`), and its descriptor count (Linux).
fn start_with(args: &[&str]) -> (ServerProcess, Option<usize>) {
    let args: Vec<&str> = ["server", "--port", "0"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    let server = ServerProcess::start(BIN, &args);
    let baseline = common::descriptors::count(server.id());
    (server, baseline)
}

/// One request and its echo in `framing`, on a new connection; the echo must come within
/// [`SERVED_WITHIN`].
fn normal_client(server: &ServerProcess, framing: &str, attack: &str) {
    let mut stream = tcp_connect(server.addr());
    stream
        .set_read_timeout(Some(SERVED_WITHIN))
        .expect("read timeout");
    let message = b"a normal request";
    let request = match framing {
        "line" => [&message[..], b"\n"].concat(),
        "utf" => [&[0, message.len() as u8][..], message].concat(),
        _ => message.to_vec(),
    };
    stream.write_all(&request).expect("send");
    if framing == "raw" {
        stream.shutdown(Shutdown::Write).expect("half-close");
    }
    let mut echo = vec![0u8; request.len()];
    if let Err(e) = stream.read_exact(&mut echo) {
        panic!(
            "after {attack}, a normal client got no echo within {} ms: {e}{}",
            SERVED_WITHIN.as_millis(),
            server.log()
        );
    }
    assert_eq!(echo, request, "after {attack}: the echo");
}

/// After `attack`: a normal client is served, the server runs, its descriptors are back.
fn still_serving(server: &mut ServerProcess, baseline: Option<usize>, framing: &str, attack: &str) {
    normal_client(server, framing, attack);
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
fn a_line_megabytes_past_the_cap_ends_that_connection_only() {
    let (mut server, baseline) = start("line");
    let mut attacker = tcp_connect(server.addr());
    let me = attacker.local_addr().expect("local address").to_string();
    // 3 MiB without a newline: the cap is 65 536 bytes (the default --max-line).
    write_until_closed(&mut attacker, b"x", 3 << 20);
    await_close(&mut attacker, "a line of megabytes");
    let line = server.expect_stderr(
        &format!("{me}: connection closed after an error"),
        Duration::from_secs(5),
    );
    assert!(line.contains("65536"), "the log says why: {line}");
    still_serving(&mut server, baseline, "line", "a line of 3 MiB (cap 64 KiB)");
}

#[test]
fn a_stalled_frame_is_dropped_after_the_idle_timeout() {
    let (mut server, baseline) = start("utf");
    let mut stalled = tcp_connect(server.addr());
    stalled
        .write_all(&[0x00, 0x14, b'a'])
        .expect("send 1 of a frame's 20 bytes");
    let started = Instant::now();
    still_serving(
        &mut server,
        baseline,
        "utf",
        "a frame stalled after 1 of 20 bytes",
    );
    assert!(
        started.elapsed() < Duration::from_millis(300) + Duration::from_secs(3),
        "the next client waited {:?}",
        started.elapsed()
    );
    await_close(&mut stalled, "the stalled client");
}

#[test]
fn a_silent_client_is_dropped_after_the_idle_timeout() {
    let (mut server, baseline) = start("line");
    let mut silent = tcp_connect(server.addr());
    let me = silent.local_addr().expect("local address").to_string();
    server.expect_stderr(&format!("{me}: connected"), Duration::from_secs(5));
    server.expect_stderr(&format!("{me}: silent"), Duration::from_secs(5));
    await_close(&mut silent, "the silent client");
    still_serving(&mut server, baseline, "line", "a client that sent nothing");
}

#[test]
fn a_reset_mid_message_ends_that_connection_only() {
    for framing in ["line", "utf", "raw"] {
        let (mut server, baseline) = start(framing);
        let rude = tcp_connect(server.addr());
        let me = rude.local_addr().expect("local address").to_string();
        (&rude)
            .write_all(b"\x00\x30half a mess")
            .expect("send part of a message");
        server.expect_stderr(&format!("{me}: connected"), Duration::from_secs(5));
        socket2::SockRef::from(&rude)
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER 0");
        drop(rude);
        server.expect_stderr_lines(&me, 2, Duration::from_secs(5));
        still_serving(
            &mut server,
            baseline,
            framing,
            &format!("a reset in the middle of a {framing} message"),
        );
    }
}

#[test]
fn two_hundred_connections_at_once_are_served_in_turn() {
    let (mut server, baseline) = start("line");
    let addr = server.addr();
    // All 200 open at once: each sends its line and half-closes at once, and reads its echo
    // only once all are connected. The iterative server answers them one after the other.
    let clients: Vec<(usize, TcpStream)> = (0..200)
        .map(|i| {
            let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("client {i} cannot connect: {e}{}", server.log()));
            // Generous: a handshake that overflowed the backlog completes after a retransmission.
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("read timeout");
            stream
                .set_write_timeout(Some(Duration::from_secs(10)))
                .expect("write timeout");
            (&stream)
                .write_all(format!("client {i}\n").as_bytes())
                .expect("send");
            stream.shutdown(Shutdown::Write).expect("half-close");
            (i, stream)
        })
        .collect();
    for (i, mut stream) in clients {
        let mut echo = String::new();
        stream
            .read_to_string(&mut echo)
            .unwrap_or_else(|e| panic!("client {i}: no echo ({e}){}", server.log()));
        assert_eq!(echo, format!("client {i}\n"));
    }
    still_serving(&mut server, baseline, "line", "200 connections at once");
}

#[test]
fn a_client_that_never_reads_is_dropped_after_the_idle_timeout() {
    let (mut server, baseline) = start("raw");
    let mut hog = tcp_connect(server.addr());
    let me = hog.local_addr().expect("local address").to_string();
    // The echo fills the hog's receive buffer, then the server's send buffer; the server's
    // write then times out (300 ms) and it closes the connection.
    let written = write_until_closed(&mut hog, b"e", 256 << 20);
    assert!(
        written < 256 << 20,
        "the server never stopped reading ({written} bytes written)"
    );
    server.expect_stderr(
        &format!("{me}: silent for longer than the idle timeout"),
        Duration::from_secs(5),
    );
    drop(hog);
    still_serving(&mut server, baseline, "raw", "a client that never reads its echo");
}

#[cfg(target_os = "linux")]
#[test]
fn running_out_of_descriptors_is_survived() {
    let (mut server, baseline) = start("line");
    let addr = server.addr();
    normal_client(&server, "line", "nothing");
    let waiting =
        common::descriptors::run_out_of_descriptors(&mut server, baseline.unwrap_or(usize::MAX), || {
            drop(TcpStream::connect_timeout(&addr, Duration::from_secs(5)));
            let waiting = TcpStream::connect_timeout(&addr, Duration::from_secs(5));
            if let Ok(mut stream) = waiting.as_ref() {
                set_stream_timeouts(stream);
                let _ = stream.write_all(b"waiting\n");
            }
            waiting
        })
        .unwrap_or_else(|e| panic!("out of descriptors: {e}"));
    let Some(waiting) = waiting else { return };
    let mut waiting = waiting.expect("the waiting client connects");
    let mut echo = [0u8; 8];
    waiting.read_exact(&mut echo).unwrap_or_else(|e| {
        panic!(
            "the waiting client got no echo once descriptors were free: {e}{}",
            server.log()
        )
    });
    assert_eq!(&echo, b"waiting\n");
    drop(waiting);
    still_serving(
        &mut server,
        baseline,
        "line",
        "a shortage of descriptors (EMFILE)",
    );
}

/// The options of the slow-client tests: 1 s idle timeout, 1 s message timeout.
const SLOW_OPTIONS: [&str; 4] = ["--idle-timeout", "1000", "--message-timeout", "1000"];

/// How long a slow client may hold the server before the test calls the message timeout broken.
const SLOW_LIMIT: Duration = Duration::from_secs(8);

/// Whether the server has logged that `me`'s message exceeded the 1000 ms message timeout.
fn logged_message_timeout(server: &ServerProcess, me: &str) -> bool {
    let needle = format!("{me}: a message took longer than the message timeout (1000 ms)");
    server.stderr_lines().iter().any(|l| l.contains(&needle))
}

#[test]
fn a_client_that_trickles_a_line_is_cut_off_by_the_message_timeout() {
    let (mut server, baseline) = start_with(&[&["--framing", "line"][..], &SLOW_OPTIONS].concat());
    let mut trickler = tcp_connect(server.addr());
    let me = trickler.local_addr().expect("local address").to_string();
    // One byte every 100 ms (paced by the read timeout, which also notices the close): each
    // read of the server succeeds well within the 1 s idle timeout.
    trickler
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let closed = loop {
        if started.elapsed() > SLOW_LIMIT {
            break false;
        }
        if trickler.write_all(b"a").is_err() {
            break true;
        }
        match trickler.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {}
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
        &format!("{me}: a message took longer than the message timeout (1000 ms)"),
        Duration::from_secs(5),
    );
    drop(trickler);
    still_serving(&mut server, baseline, "line", "a client that trickles a line");
}

#[test]
fn a_client_that_drains_its_echo_slowly_is_cut_off_by_the_message_timeout() {
    // A reply far larger than the socket buffers, so the server's writes must wait for the
    // client to read; the client reads 16 KiB per 100 ms, so each write makes some progress
    // within the idle timeout and only the message timeout ends it.
    const LINE: usize = 16 << 20;
    let max_line = LINE.to_string();
    let (mut server, baseline) = start_with(
        &[
            &["--framing", "line", "--max-line", max_line.as_str()][..],
            &SLOW_OPTIONS,
        ]
        .concat(),
    );
    let mut drainer = tcp_connect(server.addr());
    let me = drainer.local_addr().expect("local address").to_string();
    let mut request = vec![b'd'; LINE];
    request.push(b'\n');
    drainer
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    drainer.write_all(&request).expect("send the 16 MiB line");
    drainer
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let started = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    let mut drained = 0usize;
    // The server's log says when it gave up; the bytes already in the client's receive buffer
    // would take far longer to drain at this pace.
    while !logged_message_timeout(&server, &me) {
        assert!(
            started.elapsed() < SLOW_LIMIT,
            "a client draining its echo at 16 KiB per 100 ms ({drained} bytes so far) held the \
             server for {} ms{}",
            started.elapsed().as_millis(),
            server.log()
        );
        match drainer.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                drained += n;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!("the slow drainer's read failed: {e}{}", server.log()),
        }
    }
    server.expect_stderr(
        &format!("{me}: a message took longer than the message timeout (1000 ms)"),
        Duration::from_secs(5),
    );
    drop(drainer);
    still_serving(
        &mut server,
        baseline,
        "line",
        "a client that drains its echo slowly",
    );
}
