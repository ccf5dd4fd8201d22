//! Endpoints in Rust: parsing IPv4 and IPv6 socket addresses, binding port 0 to get an
//! ephemeral port, and resolving a name to its list of addresses. Loopback only.
//!
//! Run it with `cargo run -p common --example addresses`.
//! The book's chapter "Addresses, ports and byte order" walks through it.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ANCHOR: parse
    let a: SocketAddr = "127.0.0.1:6789".parse()?; // IPv4 endpoint
    let b: SocketAddr = "[::1]:6789".parse()?; // IPv6 endpoint: brackets required
    assert!(a.is_ipv4() && b.is_ipv6());
    assert!(a.ip().is_loopback() && b.ip().is_loopback());
    // ANCHOR_END: parse

    // ANCHOR: port0
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let local = socket.local_addr()?; // getsockname(): the port the OS chose
    assert_ne!(local.port(), 0);
    println!("listening on {local}"); // e.g. listening on 127.0.0.1:41237
    // ANCHOR_END: port0

    // ANCHOR: resolve
    for addr in "localhost:6789".to_socket_addrs()? {
        // Perhaps [::1]:6789 first, then 127.0.0.1:6789.
        println!("localhost:6789 -> {addr}");
    }
    // ANCHOR_END: resolve
    Ok(())
}
