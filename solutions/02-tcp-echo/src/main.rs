//! Lab 02 command line (given complete): `server` and `client` over the library's socket code.
//!
//! ```text
//! solution02-tcp-echo server [--bind 127.0.0.1] [--port 7896] [--framing raw|line|utf] [--uppercase]
//!                            [--max-line 65536] [--idle-timeout 10000] [--message-timeout 30000]
//!                            [--max-connections N]
//! solution02-tcp-echo client --server HOST:PORT [--framing raw|line|utf] [--timeout 5000]
//!                            [--max-reply 16777216] MESSAGE...
//! ```

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand, ValueEnum};
use common::endpoint::{self, Endpoint};
use solution02_tcp_echo as lab;

/// Lab 02: a TCP echo server (one client at a time) and its client, in three framings.
///
/// Start a server in one terminal and talk to it from another:
///
///   solution02-tcp-echo server --framing line --uppercase
///
///   solution02-tcp-echo client --server localhost:7896 --framing line "hello" "stream"
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How messages are cut out of the byte stream.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum FramingArg {
    /// No messages: bytes are echoed as they arrive, until the client half-closes.
    Raw,
    /// One reply line per line ending in a newline (\n).
    Line,
    /// One reply frame per frame: 2-byte big-endian length, then the bytes (Java writeUTF).
    Utf,
}

impl From<FramingArg> for lab::Framing {
    fn from(f: FramingArg) -> Self {
        match f {
            FramingArg::Raw => lab::Framing::Raw,
            FramingArg::Line => lab::Framing::Line,
            FramingArg::Utf => lab::Framing::Utf,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Echo what each client sends, one connection at a time, until the client has finished.
    ///
    /// Prints `listening on IP:PORT` on stdout once listening, then one line per event on stderr.
    Server {
        /// Local IP address to bind; 127.0.0.1 keeps the server on this machine
        /// (use 0.0.0.0 to accept connections from other hosts on purpose).
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
        /// TCP port to listen on; 0 lets the operating system choose an ephemeral port.
        #[arg(long, default_value_t = lab::DEFAULT_PORT)]
        port: u16,
        /// How requests are cut into messages.
        #[arg(long, value_enum, default_value_t = FramingArg::Raw)]
        framing: FramingArg,
        /// Reply with ASCII letters in uppercase, like the lecture's Python server.
        #[arg(long)]
        uppercase: bool,
        /// Longest line accepted with --framing line, in bytes; a longer one ends that connection.
        #[arg(long, value_name = "BYTES", default_value_t = lab::DEFAULT_MAX_LINE as u32,
              value_parser = clap::value_parser!(u32).range(1..))]
        max_line: u32,
        /// Close a connection whose client stays silent this long, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = lab::DEFAULT_IDLE_TIMEOUT.as_millis() as u64,
              value_parser = clap::value_parser!(u64).range(1..=common::cli::MAX_MS))]
        idle_timeout: u64,
        /// With --framing line or utf, close a connection whose line or frame takes longer than
        /// this to arrive and be echoed, in milliseconds: bounds a client that trickles a
        /// message (or drains its reply) slowly. Raw framing has no messages and ignores it.
        #[arg(long, value_name = "MS", default_value_t = lab::DEFAULT_MESSAGE_TIMEOUT.as_millis() as u64,
              value_parser = clap::value_parser!(u64).range(1..=common::cli::MAX_MS))]
        message_timeout: u64,
        /// Exit after this many connections (default: serve forever).
        #[arg(long, value_name = "N")]
        max_connections: Option<u64>,
    },
    /// Send each MESSAGE to a server in the chosen framing and print the replies.
    ///
    /// With --framing raw the messages are sent back to back, the sending side is shut down
    /// (half-close), and everything echoed until the server closes is printed as one reply.
    Client {
        /// The server's endpoint: 127.0.0.1:7896, localhost:7896 or [::1]:7896.
        #[arg(long, value_name = "HOST:PORT", value_parser = endpoint::parse)]
        server: Endpoint,
        /// How messages are cut out of the byte stream (must match the server's).
        #[arg(long, value_enum, default_value_t = FramingArg::Raw)]
        framing: FramingArg,
        /// How long to wait to connect and for each reply, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 5000,
              value_parser = clap::value_parser!(u64).range(1..=common::cli::MAX_MS))]
        timeout: u64,
        /// Longest reply accepted with --framing raw, in bytes; a server that sends more is an
        /// error (the client stops reading after one byte more). Line replies are capped at
        /// 65536 bytes, and a utf frame holds at most 65535.
        #[arg(long, value_name = "BYTES", default_value_t = lab::DEFAULT_MAX_REPLY as u64,
              value_parser = clap::value_parser!(u64).range(1..))]
        max_reply: u64,
        /// The messages to send (as UTF-8 bytes).
        #[arg(required = true)]
        messages: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server {
            bind,
            port,
            framing,
            uppercase,
            max_line,
            idle_timeout,
            message_timeout,
            max_connections,
        } => {
            let config = lab::ServerConfig {
                framing: framing.into(),
                uppercase,
                max_line: max_line as usize,
                idle_timeout: Some(Duration::from_millis(idle_timeout)),
                message_timeout: Some(Duration::from_millis(message_timeout)),
                max_connections,
            };
            run_server(SocketAddr::new(bind, port), &config)
        }
        Command::Client {
            server,
            framing,
            timeout,
            max_reply,
            messages,
        } => run_client(
            &server,
            framing.into(),
            Duration::from_millis(timeout),
            usize::try_from(max_reply).unwrap_or(usize::MAX),
            &messages,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_server(addr: SocketAddr, config: &lab::ServerConfig) -> Result<()> {
    let listener = lab::listen(addr).with_context(|| format!("cannot listen on TCP {addr}"))?;
    let local = listener.local_addr().context("cannot read the bound address")?;
    common::ready::announce(local).context("cannot write the ready line")?;
    eprintln!(
        "serving one connection at a time, framing {}{}",
        config.framing,
        if config.uppercase { ", uppercase" } else { "" }
    );
    let served = lab::serve(&listener, config, |event| eprintln!("{event}"))
        .with_context(|| format!("server on {local} stopped"))?;
    eprintln!("served {served} connections; exiting");
    Ok(())
}

fn run_client(
    server: &Endpoint,
    framing: lab::Framing,
    timeout: Duration,
    max_reply: usize,
    messages: &[String],
) -> Result<()> {
    if framing == lab::Framing::Line
        && let Some(bad) = messages.iter().find(|m| m.contains('\n'))
    {
        return Err(anyhow!(
            "with --framing line a MESSAGE cannot contain a newline: {bad:?}"
        ));
    }
    let stream =
        lab::connect(&server.addrs, timeout).with_context(|| format!("cannot connect to {server}"))?;
    let messages: Vec<&[u8]> = messages.iter().map(|m| m.as_bytes()).collect();
    let replies = lab::exchange(&stream, framing, &messages, max_reply)
        .map_err(|e| explain(e, server, framing, timeout))?;
    for reply in replies {
        println!("Received: {}", String::from_utf8_lossy(&reply));
    }
    Ok(())
}

/// Turns an error of the exchange into one line that says what happened.
fn explain(e: io::Error, server: &Endpoint, framing: lab::Framing, timeout: Duration) -> anyhow::Error {
    if lab::is_timeout(&e) {
        anyhow!(
            "no reply from {server} within {} ms (timed out; is it serving another client, or using another framing?)",
            timeout.as_millis()
        )
    } else if e.kind() == io::ErrorKind::UnexpectedEof {
        anyhow!("{server} closed the connection early: {e}")
    } else if e.kind() == io::ErrorKind::InvalidData {
        let hint = if framing == lab::Framing::Raw {
            " (--max-reply raises the cap)"
        } else {
            ""
        };
        anyhow!("reply from {server} refused: {e}{hint}")
    } else {
        anyhow!(e).context(format!("exchange with {server}"))
    }
}
