//! Lab 01 command line (given complete): `server` and `client` over the library's socket code.
//!
//! ```text
//! solution01-udp server [--bind 127.0.0.1] [--port 6789] [--buffer 1000] [--uppercase] [--max-requests N]
//! solution01-udp client --server HOST:PORT [--timeout 1000] [--retries 2] [--buffer 65507] MESSAGE
//! ```

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};
use common::endpoint::{self, Endpoint};
use solution01_udp as lab;

/// Lab 01: a UDP request-reply server and a client with timeouts and retries.
///
/// Start a server in one terminal and send it requests from another:
///
///   solution01-udp server --port 6789 --uppercase
///
///   solution01-udp client --server localhost:6789 "hello, datagram"
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reply to every datagram with the same bytes (or their uppercase), sent back to its sender.
    ///
    /// Prints `listening on IP:PORT` on stdout once bound, then one line per request on stderr.
    Server {
        /// Local IP address to bind; 127.0.0.1 keeps the server on this machine
        /// (use 0.0.0.0 to accept datagrams from other hosts on purpose).
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
        /// UDP port to bind; 0 lets the operating system choose an ephemeral port.
        #[arg(long, default_value_t = lab::DEFAULT_PORT)]
        port: u16,
        /// Receive buffer in bytes; longer datagrams are detected as truncated and dropped.
        #[arg(long, default_value_t = lab::DEFAULT_SERVER_BUFFER as u32,
              value_parser = clap::value_parser!(u32).range(1..=65_507))]
        buffer: u32,
        /// Reply with ASCII letters in uppercase, like the lecture's Python server.
        #[arg(long)]
        uppercase: bool,
        /// Exit after serving this many datagrams (default: serve forever).
        #[arg(long, value_name = "N")]
        max_requests: Option<u64>,
    },
    /// Send MESSAGE to a server, wait for the reply (retransmitting on timeout) and print it.
    Client {
        /// The server's endpoint: 127.0.0.1:6789, localhost:6789 or [::1]:6789.
        #[arg(long, value_name = "HOST:PORT", value_parser = endpoint::parse)]
        server: Endpoint,
        /// How long to wait for the reply to each attempt, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 1000,
              value_parser = clap::value_parser!(u64).range(1..=common::cli::MAX_MS))]
        timeout: u64,
        /// How many times to send the request again after a timeout.
        #[arg(long, default_value_t = 2)]
        retries: u32,
        /// Receive buffer for the reply, in bytes.
        #[arg(long, default_value_t = lab::MAX_DATAGRAM as u32,
              value_parser = clap::value_parser!(u32).range(1..=65_507))]
        buffer: u32,
        /// The request to send (as UTF-8 bytes).
        message: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server {
            bind,
            port,
            buffer,
            uppercase,
            max_requests,
        } => {
            let config = lab::ServerConfig {
                buffer: buffer as usize,
                uppercase,
                max_requests,
            };
            run_server(SocketAddr::new(bind, port), &config)
        }
        Command::Client {
            server,
            timeout,
            retries,
            buffer,
            message,
        } => {
            let options = lab::ClientOptions {
                timeout: Duration::from_millis(timeout),
                retries,
                buffer: buffer as usize,
            };
            run_client(&server, message.as_bytes(), &options)
        }
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
    let socket = lab::bind(addr).with_context(|| format!("cannot bind UDP socket to {addr}"))?;
    let local = socket.local_addr().context("cannot read the bound address")?;
    common::ready::announce(local).context("cannot write the ready line")?;
    let served = lab::serve(&socket, config, |outcome| match outcome {
        Ok(served) => eprintln!("{served}"),
        Err(e) => eprintln!("error on one datagram (still serving): {e}"),
    })
    .with_context(|| format!("server on {local} stopped"))?;
    eprintln!("served {served} datagrams; exiting");
    Ok(())
}

fn run_client(server: &Endpoint, message: &[u8], options: &lab::ClientOptions) -> Result<()> {
    let mut last_error = None;
    // A name may resolve to several addresses (IPv6 and IPv4): try each in turn.
    for &addr in &server.addrs {
        match lab::request(addr, message, options) {
            Ok(reply) => {
                println!("Reply: {}", String::from_utf8_lossy(&reply));
                return Ok(());
            }
            Err(e) => last_error = Some(anyhow!(e).context(format!("request to {server}"))),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("{server} resolved to no address")))
}
