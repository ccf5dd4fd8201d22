//! Byte order on the wire: how a port number and a 32-bit value look in
//! big-endian (network) order and in little-endian order, and how to get
//! them back.
//!
//! Run it with `cargo run -p common --example byte_order`.
//! The book's chapter "Addresses, ports and byte order" walks through it.

use std::net::Ipv4Addr;

/// Formats bytes as space-separated two-digit hex, in the order given.
fn hex(bytes: &[u8]) -> String {
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(" ")
}

fn main() {
    // ANCHOR: to_be
    // A port is a u16. On the wire it travels most significant byte first.
    let port: u16 = 6789; // the lecture's UDP port, 0x1a85
    let wire = port.to_be_bytes(); // network byte order
    let little = port.to_le_bytes(); // how x86-64 keeps it in memory
    println!("port {port} (0x{port:04x})");
    println!("  big-endian (network): {}", hex(&wire));
    println!("  little-endian:        {}", hex(&little));
    println!("  native on this host:  {}", hex(&port.to_ne_bytes()));

    // Reading the bytes back with the same order restores the value ...
    assert_eq!(u16::from_be_bytes(wire), port);
    // ... reading them with the other order silently gives another port.
    let misread = u16::from_le_bytes(wire);
    println!("  network bytes misread as little-endian: {misread}");
    assert_ne!(misread, port);

    // A u32 works the same way. 127.0.0.1 as one number is 0x7f000001;
    // in network order its bytes are exactly the dotted-quad octets.
    let loopback = u32::from(Ipv4Addr::LOCALHOST);
    let wire32 = loopback.to_be_bytes();
    println!("u32 {loopback} (0x{loopback:08x})");
    println!("  big-endian (network): {}", hex(&wire32));
    println!("  little-endian:        {}", hex(&loopback.to_le_bytes()));
    assert_eq!(wire32, Ipv4Addr::LOCALHOST.octets());
    assert_eq!(u32::from_be_bytes(wire32), loopback);

    // A 2-byte big-endian length prefix, the framing Java's writeUTF uses.
    let text = "hello";
    let len = u16::try_from(text.len()).expect("a short string fits in u16");
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(text.as_bytes());
    println!("frame for {text:?}: {}", hex(&frame));

    // The receiver reads the prefix first, then exactly that many bytes.
    let (prefix, body) = frame.split_at(2);
    let body_len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    assert_eq!(&body[..body_len], text.as_bytes());
    println!("  decoded length {body_len}, round trip ok");
    // ANCHOR_END: to_be
}
