//! What a UDP socket hears of an ICMP "port unreachable", unconnected and connected: the facts
//! behind `is_per_datagram`'s documentation (and the Lab 01 chapter's step 4).
//!
//! A datagram sent to a loopback port where nothing listens makes the kernel answer with an ICMP
//! "port unreachable". Linux, macOS and the BSDs report it only to a *connected* socket, as
//! `ECONNREFUSED` on its next call; an unconnected socket (a server's) never hears of it.
//! Windows reports it to both, as `WSAECONNRESET`. Not part of the grading suite: it tests the
//! operating system, not the student's code.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// How long a receive waits for an error or a datagram that will not come: 500 ms. On loopback
/// the ICMP message is back before `send` returns, so this is only a bound.
const WAIT: Duration = Duration::from_millis(500);

/// A UDP port on 127.0.0.1 where nothing listens: bound to learn an ephemeral port, then closed.
fn closed_port() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("local address")
}

fn socket() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(WAIT)).expect("read timeout");
    socket.set_write_timeout(Some(WAIT)).expect("write timeout");
    socket
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

#[test]
fn an_unconnected_socket_hears_of_port_unreachable_only_on_windows() {
    let socket = socket();
    let closed = closed_port();
    socket.send_to(b"anyone there?", closed).expect("send_to");
    let mut buf = [0u8; 64];
    let next = socket.recv_from(&mut buf);
    #[cfg(windows)]
    assert!(
        next.as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionReset),
        "Windows reports the ICMP port unreachable to an unconnected socket as WSAECONNRESET: {next:?}"
    );
    #[cfg(not(windows))]
    assert!(
        next.as_ref().is_err_and(is_timeout),
        "an unconnected socket never hears of the ICMP port unreachable here: the receive must \
         time out, got {next:?}"
    );
    // Either way the socket goes on working.
    socket.send_to(b"again", closed).expect("a later send_to works");
}

#[test]
fn a_connected_socket_hears_of_port_unreachable_on_its_next_call() {
    let socket = socket();
    let closed = closed_port();
    socket
        .connect(closed)
        .expect("connect (records the peer; sends nothing)");
    socket.send(b"anyone there?").expect("send");
    let mut buf = [0u8; 64];
    let next = socket.recv(&mut buf);
    #[cfg(windows)]
    assert!(
        next.as_ref().is_err_and(|e| matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
        )),
        "Windows reports the ICMP port unreachable to a connected socket: {next:?}"
    );
    #[cfg(not(windows))]
    assert!(
        next.as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionRefused),
        "a connected socket hears of the ICMP port unreachable on its next call, as \
         ECONNREFUSED: got {next:?}"
    );
    #[cfg(not(windows))]
    {
        // The error is reported once; the call after it waits as usual.
        let after = socket.recv(&mut buf);
        assert!(after.as_ref().is_err_and(is_timeout), "then nothing: {after:?}");
    }
}

/// The server's point of view: its unconnected socket replies to a client that has gone, then
/// receives the next request as if nothing happened (Linux, macOS, BSDs).
#[cfg(not(windows))]
#[test]
fn a_server_socket_replying_to_a_departed_client_sees_nothing_of_it() {
    let server = socket();
    let server_addr = server.local_addr().expect("local address");
    let departed = closed_port();
    server
        .send_to(b"a reply nobody reads", departed)
        .expect("send_to");
    let client = socket();
    client.send_to(b"next request", server_addr).expect("send_to");
    let mut buf = [0u8; 64];
    let (n, from) = server
        .recv_from(&mut buf)
        .expect("the next request arrives, with no error before it");
    assert_eq!(
        (&buf[..n], from),
        (&b"next request"[..], client.local_addr().expect("addr"))
    );
}
