//! Lab 04: IP multicast — a peer that joins a group, sends to it, receives from it and leaves.
//!
//! A multicast datagram is one UDP datagram sent to a **group address** (224.0.0.0/4 in IPv4);
//! every socket that has **joined** the group, on the interface where the datagram arrives, and
//! is bound to the datagram's destination port receives a copy. Membership is dynamic, and a
//! sender need not be a member.
//!
//! Lecture: the MulticastPeer example (join a group, send one message to it, receive three,
//! leave). Standards: RFC 1112 (host extensions for IP multicasting), RFC 5771 (IPv4 multicast
//! address assignments; 239.0.0.0/8 is administratively scoped), RFC 2365 (administratively
//! scoped IP multicast; 239.255.0.0/16 is the IPv4 local scope). Linux details: ip(7)
//! (`IP_ADD_MEMBERSHIP`, `IP_MULTICAST_IF`, `IP_MULTICAST_TTL`, `IP_MULTICAST_LOOP`,
//! `IP_MULTICAST_ALL`), socket(7) (`SO_REUSEADDR`, `SO_REUSEPORT`).
//!
//! Steps (see the book's Lab 04 chapter; `cargo test -p lab04-multicast stepN` checks step N):
//! 1. [`check_addresses`]: a group must be a multicast address, an interface one of this host's;
//! 2. [`open`]: a socket that shares its port with other members, created and bound with socket2;
//! 3. [`join`]: join a group on one interface;
//! 4. [`set_sending`]: the outgoing interface, the TTL and multicast loopback;
//! 5. [`open_sender`] and [`send_to_group`]: send to the group, as a member or not;
//! 6. [`receive`]: receive the next datagram, or nothing by a deadline;
//! 7. [`leave`]: leave the group.

use std::io;
use std::net::SocketAddrV4; // solution-only
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Instant;

use socket2::Socket;
use socket2::{Domain, Protocol, SockRef, Type}; // solution-only

/// The default port, as in the lecture's MulticastPeer.
pub const DEFAULT_PORT: u16 = 6789;

/// The default interface, named by its address: the loopback interface, so that nothing leaves
/// this machine unless you ask for a LAN interface on purpose.
pub const DEFAULT_INTERFACE: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The default time-to-live of multicast datagrams: 1, this link only (also the system default).
pub const DEFAULT_TTL: u32 = 1;

/// The largest UDP payload over IPv4, in bytes (65 535 − 20 − 8): the receive buffer of
/// [`receive`], so that no datagram is ever truncated.
pub const MAX_DATAGRAM: usize = 65_507;

// ANCHOR: send_options
/// How a socket sends to groups: set by [`set_sending`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOptions {
    /// The interface datagrams to a group leave by, named by one of its IPv4 addresses
    /// (`IP_MULTICAST_IF`). Without it the system picks one from its routing table, which on
    /// most machines means the LAN.
    pub interface: Ipv4Addr,
    /// Time-to-live: how many routers a datagram may cross, 0 to 255 (`IP_MULTICAST_TTL`). 0
    /// keeps it on this host, 1 on the local network.
    pub ttl: u32,
    /// Whether members on this host, the sender included, receive a copy
    /// (`IP_MULTICAST_LOOP`).
    pub loopback: bool,
}

impl Default for SendOptions {
    /// The course's safe defaults: [`DEFAULT_INTERFACE`] (127.0.0.1), [`DEFAULT_TTL`] (1),
    /// loopback on.
    fn default() -> Self {
        SendOptions {
            interface: DEFAULT_INTERFACE,
            ttl: DEFAULT_TTL,
            loopback: true,
        }
    }
}
// ANCHOR_END: send_options

// ANCHOR: datagram
/// One datagram received from a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The sender's endpoint (IP address and port). A member sends from its own member socket,
    /// so peers on one machine sharing a port all appear as `127.0.0.1:PORT`.
    pub from: SocketAddr,
    /// The datagram's bytes; empty for an empty datagram.
    pub payload: Vec<u8>,
}
// ANCHOR_END: datagram

/// Whether `ip` is an address of one of this host's interfaces. Given complete.
///
/// It asks the operating system to bind a UDP socket to `ip` (port 0): `bind` succeeds only for
/// local addresses, and sends nothing. `0.0.0.0` binds too (it means "any address"), so callers
/// rule it out first. On Linux with `net.ipv4.ip_nonlocal_bind = 1` every address binds; the
/// join then fails instead.
pub fn is_host_address(ip: Ipv4Addr) -> bool {
    UdpSocket::bind((ip, 0)).is_ok()
}

// ANCHOR: only_joined_groups
/// Makes `socket` (not yet bound) receive only datagrams for the groups it joins itself, and
/// returns the IP address to bind it to. Given complete.
///
/// - **Linux** delivers a multicast datagram to every socket bound to its port as soon as *any*
///   socket on the host joined the group (`IP_MULTICAST_ALL`, on by default). This turns it off
///   and returns `0.0.0.0`. Where the option cannot be set (kernels before 2.6.31, some
///   sandboxes), it returns `group` instead: a socket bound to a group address receives only
///   datagrams sent to that group, but it still receives them after leaving while another
///   socket on the host is a member.
/// - **macOS and the BSDs** check each socket's own memberships already: `0.0.0.0`.
/// - **Windows** has no such option and cannot bind a multicast address: `0.0.0.0`. Microsoft's
///   older documentation says every socket bound to the port gets each group datagram the host
///   accepts, so there a socket may hear groups that other sockets joined.
pub fn only_joined_groups(socket: &Socket, group: Ipv4Addr) -> Ipv4Addr {
    #[cfg(target_os = "linux")]
    {
        match socket.set_multicast_all_v4(false) {
            Ok(()) => Ipv4Addr::UNSPECIFIED,
            Err(_) => group,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (socket, group);
        Ipv4Addr::UNSPECIFIED
    }
}
// ANCHOR_END: only_joined_groups

// ANCHOR: check_addresses
/// Step 1. Checks the addresses a member is given: `group` must be an IPv4 multicast address
/// (224.0.0.0 to 239.255.255.255: the first four bits are 1110, RFC 1112 § 4) and `interface`
/// one of this host's unicast addresses (see [`is_host_address`]).
///
/// # Errors
/// `io::ErrorKind::InvalidInput` when `group` is not a multicast address, or `interface` is
/// `0.0.0.0`, a multicast or the broadcast address; `io::ErrorKind::AddrNotAvailable` when no
/// interface of this host has the address `interface`. Each message names the address.
pub fn check_addresses(group: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
    // >>> step 1 (group, interface): reject a group outside 224.0.0.0/4 and an interface address this host does not have
    if !group.is_multicast() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{group} is not a multicast group address: IPv4 groups are 224.0.0.0 to \
                 239.255.255.255 (first four bits 1110)"
            ),
        ));
    }
    if interface.is_unspecified() || interface.is_multicast() || interface.is_broadcast() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{interface} does not name an interface: give one of this host's unicast \
                 addresses, such as 127.0.0.1"
            ),
        ));
    }
    if !is_host_address(interface) {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!(
                "{interface} is not an address of this host: give the address of one of its \
                 interfaces, such as 127.0.0.1"
            ),
        ));
    }
    Ok(())
    // <<<
}
// ANCHOR_END: check_addresses

// ANCHOR: open
/// Step 2. Creates a UDP socket for a member of `group` that shares `port` with the other
/// members on this host, and binds it.
///
/// Address (and, on Unix, port) reuse is switched on **before** `bind`, so several peers on one
/// machine can bind the same port; [`only_joined_groups`] chooses the address to bind
/// (`0.0.0.0`, or `group` where Linux cannot filter by membership). Port 0 gives an ephemeral
/// port; [`UdpSocket::local_addr`] tells which.
///
/// # Errors
/// `io::ErrorKind::AddrInUse` when a socket that did *not* ask for reuse holds `port` (reuse
/// works only when every socket on the port asks for it); `io::ErrorKind::PermissionDenied` for
/// ports below 1024 without privilege (Unix); other errors of `socket`, `setsockopt` and `bind`.
///
/// # Platforms
/// Linux lets UDP sockets share a port with `SO_REUSEADDR` alone; macOS and the BSDs need
/// `SO_REUSEPORT` for a wildcard bind; Windows has only `SO_REUSEADDR` (which there lets any
/// program take the port over: `SO_EXCLUSIVEADDRUSE` is the cure).
pub fn open(group: Ipv4Addr, port: u16) -> io::Result<UdpSocket> {
    // >>> step 2 (group, port): create a socket2 UDP socket, allow reuse, keep only joined groups, bind, return it as a UdpSocket
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    let ip = only_joined_groups(&socket, group);
    socket.bind(&SocketAddrV4::new(ip, port).into())?;
    Ok(socket.into())
    // <<<
}
// ANCHOR_END: open

// ANCHOR: join
/// Step 3. Makes `socket` a member of `group` on the interface whose address is `interface`
/// (`IP_ADD_MEMBERSHIP`). From now on the host takes the group's datagrams arriving on that
/// interface (RFC 1112 § 7.2), and the socket receives those sent to its port.
///
/// Name the interface: with `0.0.0.0` the system picks one from its routing table, usually the
/// LAN, and datagrams sent on loopback never reach the socket.
///
/// # Errors
/// Those of `setsockopt`: on Linux "No such device" (`ENODEV`) when no interface has the address
/// `interface`, `io::ErrorKind::AddrInUse` when the socket already joined `group` there, and
/// `io::ErrorKind::InvalidInput` when `group` is not a multicast address.
pub fn join(socket: &UdpSocket, group: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
    // >>> step 3 (socket, group, interface): join the group on the given interface
    socket.join_multicast_v4(&group, &interface)
    // <<<
}
// ANCHOR_END: join

// ANCHOR: set_sending
/// Step 4. Sets how `socket` sends to groups: out of `options.interface` (`IP_MULTICAST_IF`,
/// through socket2), with time-to-live `options.ttl` (`IP_MULTICAST_TTL`) and with or without a
/// copy for members on this host (`IP_MULTICAST_LOOP`).
///
/// On the loopback interface every datagram sent comes back to this host anyway, so TTL and
/// loopback make a visible difference only on a real network interface.
///
/// # Errors
/// `io::ErrorKind::AddrNotAvailable` (Linux, macOS) when `options.interface` is not an address
/// of this host; `io::ErrorKind::InvalidInput` when `options.ttl` is above 255.
pub fn set_sending(socket: &UdpSocket, options: &SendOptions) -> io::Result<()> {
    // >>> step 4 (socket, options): set the outgoing interface, the TTL and loopback
    SockRef::from(socket).set_multicast_if_v4(&options.interface)?;
    socket.set_multicast_ttl_v4(options.ttl)?;
    socket.set_multicast_loop_v4(options.loopback)?;
    Ok(())
    // <<<
}
// ANCHOR_END: set_sending

// ANCHOR: open_sender
/// Step 5a. A socket for a sender that is not a member: bound to `options.interface` with an
/// ephemeral port (so its datagrams carry that source address), and set up with
/// [`set_sending`]. It joins nothing, so it receives nothing from any group.
///
/// # Errors
/// `io::ErrorKind::AddrNotAvailable` when `options.interface` is not an address of this host;
/// those of [`set_sending`].
pub fn open_sender(options: &SendOptions) -> io::Result<UdpSocket> {
    // >>> step 5 (options): bind a UDP socket to the interface's address and port 0, then set it up for sending
    let socket = UdpSocket::bind((options.interface, 0))?;
    set_sending(&socket, options)?;
    Ok(socket)
    // <<<
}
// ANCHOR_END: open_sender

// ANCHOR: send_to_group
/// Step 5b. Sends `message` as one datagram to `group` at `port`, from `socket` (a member's
/// socket or one from [`open_sender`], already set up with [`set_sending`]).
///
/// # Errors
/// Those of `send_to`, for example "Message too long" for more than [`MAX_DATAGRAM`] bytes, or
/// `io::ErrorKind::WouldBlock` when the socket's write timeout expires.
pub fn send_to_group(socket: &UdpSocket, group: Ipv4Addr, port: u16, message: &[u8]) -> io::Result<()> {
    // >>> step 5 (socket, group, port, message): send the message as one datagram to the group's address and port
    socket.send_to(message, SocketAddrV4::new(group, port))?;
    Ok(())
    // <<<
}
// ANCHOR_END: send_to_group

// ANCHOR: receive
/// Step 6. Receives the next datagram on `socket`, waiting until `deadline` at the latest, into a
/// buffer of [`MAX_DATAGRAM`] bytes (so nothing is truncated).
///
/// Returns `Ok(Some(datagram))`, or `Ok(None)` when `deadline` passes first (also when it has
/// passed already). Sets the socket's read timeout to what is left of the wait. A signal that
/// interrupts the wait (`io::ErrorKind::Interrupted`, Unix: socket calls with a timeout are
/// never restarted automatically, see signal(7)) does not end it.
///
/// # Errors
/// Errors of `recv_from` other than the timeout itself (`WouldBlock` on Unix, `TimedOut` on
/// Windows, which become `Ok(None)`) and `Interrupted`.
pub fn receive(socket: &UdpSocket, deadline: Instant) -> io::Result<Option<Datagram>> {
    // >>> step 6 (socket, deadline): wait for one datagram until the deadline; a timeout is Ok(None)
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                buf.truncate(len);
                return Ok(Some(Datagram { from, payload: buf }));
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Ok(None);
            }
            // A signal cut the wait short (Unix): wait again for what is left.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    // <<<
}
// ANCHOR_END: receive

// ANCHOR: leave
/// Step 7. Ends the membership of `socket` in `group` on `interface` (`IP_DROP_MEMBERSHIP`):
/// the same pair of addresses as the join. The socket stays open and bound, but receives no more
/// of the group's datagrams. (Closing a socket also ends its memberships.)
///
/// # Errors
/// `io::ErrorKind::AddrNotAvailable` (Linux) when the socket is not a member of `group` on that
/// interface.
pub fn leave(socket: &UdpSocket, group: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
    // >>> step 7 (socket, group, interface): leave the group on the interface it was joined on
    socket.leave_multicast_v4(&group, &interface)
    // <<<
}
// ANCHOR_END: leave
