//! Lab 04 command line (given complete): `peer`, `listen` and `send` over the library's socket
//! code.
//!
//! ```text
//! solution04-multicast peer --group GROUP [--port 6789] [--interface 127.0.0.1] [--ttl 1] [--no-loopback]
//!                           [--count 3] [--timeout 5000] [--wait 0] MESSAGE
//! solution04-multicast listen --group GROUP [--port 6789] [--interface 127.0.0.1] [--count 3] [--timeout 5000]
//! solution04-multicast send --group GROUP [--port 6789] [--interface 127.0.0.1] [--ttl 1] [--no-loopback] MESSAGE
//! ```

use std::io::Write;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use solution04_multicast as lab;

/// Lab 04: an IP multicast peer, like the lecture's MulticastPeer.
///
/// A peer joins a group, sends its message to it and prints the next datagrams from the group
/// (its own included). Try three terminals on this machine:
///
///   solution04-multicast listen --group 239.255.0.1 --timeout 60000
///
///   solution04-multicast peer --group 239.255.0.1 "hello, group"
///
///   solution04-multicast send --group 239.255.0.1 "from a non-member"
///
/// Everything stays on the loopback interface (127.0.0.1) unless --interface names another.
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join GROUP, send MESSAGE to it, print the next COUNT datagrams from it, leave.
    ///
    /// Prints `joined GROUP on INTERFACE port PORT` on stdout once a member, then one
    /// `Received: TEXT` line per datagram (its own message included, through multicast
    /// loopback). Exits 1 with one error line if a datagram takes longer than --timeout.
    Peer {
        #[command(flatten)]
        member: MemberArgs,
        #[command(flatten)]
        sending: SendingArgs,
        #[command(flatten)]
        receiving: ReceivingArgs,
        /// Wait this long after joining before sending, in milliseconds, so that peers started
        /// at the same moment have all joined when the first message goes out.
        #[arg(long, value_name = "MS", default_value_t = 0)]
        wait: u64,
        /// The message to send to the group (as UTF-8 bytes).
        message: String,
    },
    /// Join GROUP and print the next COUNT datagrams from it, then leave; sends nothing.
    ///
    /// Prints `joined GROUP on INTERFACE port PORT` on stdout once a member, then one
    /// `Received: TEXT` line per datagram.
    Listen {
        #[command(flatten)]
        member: MemberArgs,
        #[command(flatten)]
        receiving: ReceivingArgs,
    },
    /// Send MESSAGE to GROUP without joining it: a sender need not be a member.
    Send {
        #[command(flatten)]
        member: MemberArgs,
        #[command(flatten)]
        sending: SendingArgs,
        /// The message to send to the group (as UTF-8 bytes).
        message: String,
    },
}

#[derive(Debug, Args)]
struct MemberArgs {
    /// The group: an IPv4 multicast address, 224.0.0.0 to 239.255.255.255. Use 239.255.x.y
    /// (local scope) for experiments.
    #[arg(long)]
    group: Ipv4Addr,
    /// The UDP port the group's members share; 0 lets the operating system choose one.
    #[arg(long, default_value_t = lab::DEFAULT_PORT)]
    port: u16,
    /// The interface to join on and send by, named by one of its IPv4 addresses. 127.0.0.1
    /// keeps everything on this machine; a LAN address (see `ip addr`) reaches other hosts.
    #[arg(long, value_name = "IP", default_value_t = lab::DEFAULT_INTERFACE)]
    interface: Ipv4Addr,
}

#[derive(Debug, Args)]
struct SendingArgs {
    /// Time-to-live of the datagrams sent: 0 stays on this host, 1 on the local network.
    #[arg(long, default_value_t = lab::DEFAULT_TTL,
          value_parser = clap::value_parser!(u32).range(0..=255))]
    ttl: u32,
    /// Do not deliver a copy of our datagrams to members on this host (IP_MULTICAST_LOOP off;
    /// visible only on a real network interface: loopback delivers everything anyway).
    #[arg(long)]
    no_loopback: bool,
}

#[derive(Debug, Args)]
struct ReceivingArgs {
    /// How many datagrams to print before leaving.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// The longest wait for each datagram, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=common::cli::MAX_MS))]
    timeout: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Peer {
            member,
            sending,
            receiving,
            wait,
            message,
        } => run_peer(
            &member,
            &sending,
            &receiving,
            Duration::from_millis(wait),
            &message,
        ),
        Command::Listen { member, receiving } => run_listen(&member, &receiving),
        Command::Send {
            member,
            sending,
            message,
        } => run_send(&member, &sending, &message),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn send_options(member: &MemberArgs, sending: &SendingArgs) -> lab::SendOptions {
    lab::SendOptions {
        interface: member.interface,
        ttl: sending.ttl,
        loopback: !sending.no_loopback,
    }
}

/// Checks the addresses, opens the member socket and joins, then prints the ready line.
/// Returns the socket and the port it is bound to.
fn become_member(member: &MemberArgs) -> Result<(UdpSocket, u16)> {
    let MemberArgs { group, interface, .. } = *member;
    lab::check_addresses(group, interface)?;
    let socket = lab::open(group, member.port).with_context(|| {
        format!(
            "cannot bind UDP port {} for group {group} (held by a socket without address reuse?)",
            member.port
        )
    })?;
    let local = socket.local_addr().context("cannot read the bound address")?;
    if local.ip().is_multicast() {
        eprintln!(
            "note: IP_MULTICAST_ALL could not be turned off here; bound to {local} instead, so only \
             datagrams sent to {group} arrive (see Lab 04 § Membership at the socket)"
        );
    }
    lab::join(&socket, group, interface)
        .with_context(|| format!("cannot join {group} on interface {interface}"))?;
    // The ready line: tests and scripts start sending once they have read it.
    let mut out = std::io::stdout().lock();
    writeln!(out, "joined {group} on {interface} port {}", local.port())
        .and_then(|()| out.flush())
        .context("cannot write the ready line")?;
    Ok((socket, local.port()))
}

/// Prints the next `count` datagrams as `Received: TEXT`, each awaited for at most `timeout`.
fn print_datagrams(socket: &UdpSocket, group: Ipv4Addr, port: u16, receiving: &ReceivingArgs) -> Result<()> {
    let timeout = Duration::from_millis(receiving.timeout);
    for got in 0..receiving.count {
        let datagram = lab::receive(socket, Instant::now() + timeout)
            .with_context(|| format!("cannot receive from {group}:{port}"))?;
        let Some(datagram) = datagram else {
            bail!(
                "received {got} of {} datagrams from {group}:{port}: none arrived within {} ms",
                receiving.count,
                receiving.timeout
            );
        };
        println!("Received: {}", String::from_utf8_lossy(&datagram.payload));
        eprintln!("{} bytes from {}", datagram.payload.len(), datagram.from);
    }
    Ok(())
}

/// Receives, then leaves the group. When receiving fails the error is returned at once: the
/// process exits, and closing its socket ends the membership anyway.
fn receive_then_leave(
    socket: &UdpSocket,
    member: &MemberArgs,
    port: u16,
    receiving: &ReceivingArgs,
) -> Result<()> {
    print_datagrams(socket, member.group, port, receiving)?;
    lab::leave(socket, member.group, member.interface)
        .with_context(|| format!("cannot leave {} on interface {}", member.group, member.interface))?;
    eprintln!("left {}", member.group);
    Ok(())
}

fn run_peer(
    member: &MemberArgs,
    sending: &SendingArgs,
    receiving: &ReceivingArgs,
    wait: Duration,
    message: &str,
) -> Result<()> {
    let (socket, port) = become_member(member)?;
    let options = send_options(member, sending);
    lab::set_sending(&socket, &options).with_context(|| {
        format!(
            "cannot set up sending (interface {}, TTL {}, loopback {})",
            options.interface, options.ttl, options.loopback
        )
    })?;
    std::thread::sleep(wait);
    lab::send_to_group(&socket, member.group, port, message.as_bytes())
        .with_context(|| format!("cannot send to {}:{port}", member.group))?;
    receive_then_leave(&socket, member, port, receiving)
}

fn run_listen(member: &MemberArgs, receiving: &ReceivingArgs) -> Result<()> {
    let (socket, port) = become_member(member)?;
    receive_then_leave(&socket, member, port, receiving)
}

fn run_send(member: &MemberArgs, sending: &SendingArgs, message: &str) -> Result<()> {
    let MemberArgs {
        group,
        port,
        interface,
    } = *member;
    lab::check_addresses(group, interface)?;
    let options = send_options(member, sending);
    let socket = lab::open_sender(&options)
        .with_context(|| format!("cannot open a sending socket on interface {interface}"))?;
    lab::send_to_group(&socket, group, port, message.as_bytes())
        .with_context(|| format!("cannot send to {group}:{port}"))?;
    let from = socket.local_addr().context("cannot read the bound address")?;
    eprintln!("sent {} bytes to {group}:{port} from {from}", message.len());
    Ok(())
}
