//! Robustness of the reference UDP server: bad datagrams and a flood of clients do not stop it.
//!
//! Each test starts the server binary (`--port 0`), attacks it on loopback, then checks that a
//! normal client is served within a deadline, that the server is still running, and (Linux)
//! that it holds no more descriptors than before the attack. Not part of the grading suite:
//! the server loop is the student's, but these cases go beyond what a step asks.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::testing::{ServerProcess, udp_socket};

const BIN: &str = env!("CARGO_BIN_EXE_solution01-udp");

/// How long a normal client may wait for its reply after an attack, resending meanwhile.
const SERVED_WITHIN: Duration = Duration::from_secs(5);

/// The largest UDP payload over IPv4, in bytes.
const MAX_DATAGRAM: usize = 65_507;

fn start() -> (ServerProcess, Option<usize>) {
    let server = ServerProcess::start(BIN, &["server", "--port", "0"]);
    let baseline = common::descriptors::count(server.id());
    (server, baseline)
}

/// Receives one datagram from `from` within `limit` (others are ignored), or `None`.
fn recv_from_peer(socket: &UdpSocket, from: SocketAddr, limit: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 65_536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        socket.set_read_timeout(Some(left)).expect("read timeout");
        match socket.recv_from(&mut buf) {
            Ok((n, sender)) if sender == from => return Some(buf[..n].to_vec()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// Sends `request` from `socket` to `server` and waits for the echo, resending every 500 ms
/// (loopback does not lose datagrams, but a full receive queue does); `None` after `limit`.
fn request(socket: &UdpSocket, server: SocketAddr, request: &[u8], limit: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        socket.send_to(request, server).expect("send_to");
        if let Some(reply) = recv_from_peer(socket, server, Duration::from_millis(500)) {
            return Some(reply);
        }
    }
    None
}

/// After `attack`: a normal client is echoed, the server runs, and (Linux) it holds no more
/// descriptors than `baseline`.
fn still_serving(server: &mut ServerProcess, baseline: Option<usize>, attack: &str) {
    let client = udp_socket();
    let reply = request(&client, server.addr(), b"normal request", SERVED_WITHIN);
    assert_eq!(
        reply.as_deref(),
        Some(&b"normal request"[..]),
        "after {attack}, a normal client got no echo within {} ms; the server's log:\n{}",
        SERVED_WITHIN.as_millis(),
        server.stderr_lines().join("\n")
    );
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "the server exited after {attack}"
    );
    if let Some(baseline) = baseline {
        let settled = common::descriptors::await_at_most(server.id(), baseline, Duration::from_secs(5));
        assert!(
            settled.is_ok(),
            "after {attack}, the server holds descriptors {settled:?}, {baseline} before"
        );
    }
}

#[test]
fn an_oversize_datagram_is_dropped_and_an_empty_one_echoed() {
    let (mut server, baseline) = start();
    let attacker = udp_socket();
    attacker
        .send_to(&vec![b'x'; MAX_DATAGRAM], server.addr())
        .expect("send a 65 507-byte datagram");
    server.expect_stderr("truncated", Duration::from_secs(5));
    assert_eq!(
        recv_from_peer(&attacker, server.addr(), Duration::from_millis(300)),
        None,
        "a truncated datagram must get no reply"
    );
    attacker
        .send_to(b"", server.addr())
        .expect("send an empty datagram");
    assert_eq!(
        recv_from_peer(&attacker, server.addr(), Duration::from_secs(5)),
        Some(Vec::new()),
        "an empty datagram gets an empty reply"
    );
    let garbage = [0xff, 0xfe, 0x00, 0xc3, 0x28];
    assert_eq!(
        request(&attacker, server.addr(), &garbage, SERVED_WITHIN).as_deref(),
        Some(&garbage[..]),
        "non-UTF-8 bytes are echoed unchanged"
    );
    still_serving(
        &mut server,
        baseline,
        "a 65 507-byte, an empty and a non-UTF-8 datagram",
    );
}

#[test]
fn a_flood_from_200_ephemeral_ports_is_answered_port_by_port() {
    let (mut server, baseline) = start();
    let clients: Vec<UdpSocket> = (0..200).map(|_| udp_socket()).collect();
    for (i, client) in clients.iter().enumerate() {
        client
            .send_to(format!("flood {i}").as_bytes(), server.addr())
            .expect("send_to");
    }
    // Half of them leave at once: the server's replies to them meet closed ports (an ICMP port
    // unreachable, which the server's unconnected socket never hears of on Linux, and hears
    // of as ConnectionReset on Windows: a per-datagram error).
    let (stayed, left): (Vec<_>, Vec<_>) = clients.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    drop(left);
    for (i, client) in &stayed {
        let expected = format!("flood {i}");
        let reply = recv_from_peer(client, server.addr(), Duration::from_millis(500))
            .or_else(|| request(client, server.addr(), expected.as_bytes(), SERVED_WITHIN));
        assert_eq!(
            reply.map(|r| String::from_utf8_lossy(&r).into_owned()),
            Some(expected),
            "each client gets the reply to its own request, at its own ephemeral port"
        );
    }
    still_serving(
        &mut server,
        baseline,
        "a flood from 200 ephemeral ports, half of them gone",
    );
}
