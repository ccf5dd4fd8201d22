//! Lab 06 command line (given complete): `server`, `client` and `experiment` over the library.
//!
//! ```text
//! solution06-request-reply server [--bind 127.0.0.1] [--port 6790] [--semantics at-least-once|at-most-once]
//!     [--history-size 1024] [--history-ttl 60000] [--delay MS] [--max-requests N]
//! solution06-request-reply client --server HOST:PORT [--timeout 500] [--retries 10] [--count K] OPERATION [ARG]
//! solution06-request-reply experiment [--loss 0,0.1,0.2,0.3,0.4,0.5] [--operations 200] [--svg FILE]
//! ```

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use common::endpoint::{self, Endpoint};
use solution06_request_reply as lab;

/// Lab 06: request-reply over UDP, with request ids, retransmission and duplicate filtering.
///
/// Start a server in one terminal, a lossy relay in front of it in another, and send it
/// operations through the relay from a third:
///
///   solution06-request-reply server --port 6790 --semantics at-most-once
///
///   cargo lab relay --server 127.0.0.1:6790 --drop 0.3 --duplicate 0.3 --seed 3
///
///   solution06-request-reply client --server RELAY --count 20 add 1
///
///   solution06-request-reply client --server 127.0.0.1:6790 get
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SemanticsArg {
    /// Execute every request that arrives, retransmissions and duplicates included.
    AtLeastOnce,
    /// Execute each request once; answer duplicates from the history.
    AtMostOnce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OperationArg {
    /// Reply with ARG, unchanged (idempotent).
    Echo,
    /// Reply with the counter's total (idempotent).
    Get,
    /// Add the integer ARG to the total and reply with the new total (not idempotent).
    Add,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the counter service: execute requests and reply to their senders.
    ///
    /// Prints `listening on IP:PORT` on stdout once bound, then one line per datagram on
    /// stderr (executed, duplicate answered from the history, or dropped). Stops after
    /// --max-requests datagrams or on SIGINT/SIGTERM (Ctrl-C), and then prints how many times
    /// each operation was executed.
    Server {
        /// Local IP address to bind; 127.0.0.1 keeps the server on this machine.
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
        /// UDP port to bind; 0 lets the operating system choose an ephemeral port.
        #[arg(long, default_value_t = lab::DEFAULT_PORT)]
        port: u16,
        /// What to do with a duplicate request: execute it again, or resend the recorded reply.
        #[arg(long, value_enum, default_value_t = SemanticsArg::AtLeastOnce)]
        semantics: SemanticsArg,
        /// The most entries the history holds (at-most-once).
        #[arg(long, value_name = "ENTRIES", default_value_t = 1024,
              value_parser = clap::value_parser!(u32).range(1..))]
        history_size: u32,
        /// How long the history keeps an entry, in milliseconds (at-most-once).
        #[arg(long, value_name = "MS", default_value_t = 60_000,
              value_parser = clap::value_parser!(u64).range(1..=common::cli::MAX_MS))]
        history_ttl: u64,
        /// Make every execution take this long, in milliseconds, so that retransmissions arrive
        /// while the server is still working.
        #[arg(long, value_name = "MS", default_value_t = 0,
              value_parser = clap::value_parser!(u64).range(0..=common::cli::MAX_MS))]
        delay: u64,
        /// Exit after serving this many datagrams (default: serve until stopped).
        #[arg(long, value_name = "N")]
        max_requests: Option<u64>,
    },
    /// Perform OPERATION on a server, COUNT times, retransmitting each request on timeout.
    ///
    /// Prints `Reply: RESULT` for each operation. Exits non-zero with one line when the server
    /// refuses an operation or never replies.
    Client {
        /// The server's endpoint (or a relay's): 127.0.0.1:6790, localhost:6790 or [::1]:6790.
        #[arg(long, value_name = "HOST:PORT", value_parser = endpoint::parse)]
        server: Endpoint,
        /// How long to wait for the reply to each attempt, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 500,
              value_parser = clap::value_parser!(u64).range(1..=common::cli::MAX_MS))]
        timeout: u64,
        /// How many times to send a request again after a timeout.
        #[arg(long, default_value_t = 10)]
        retries: u32,
        /// How many operations to perform, one after the other, with consecutive request ids.
        #[arg(long, value_name = "K", default_value_t = 1,
              value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
        /// The operation.
        #[arg(value_enum)]
        operation: OperationArg,
        /// Its argument: the bytes to echo, or the integer to add.
        arg: Option<String>,
    },
    /// Measure executions per operation for both semantics over a range of loss rates, through
    /// a seeded lossy relay on loopback; print a Markdown table and write an SVG plot.
    Experiment {
        /// The loss rates to try, each the probability that a datagram is dropped (both ways).
        #[arg(long, value_delimiter = ',', default_value = "0,0.1,0.2,0.3,0.4,0.5")]
        loss: Vec<f64>,
        /// The probability that a datagram is delivered twice (both ways).
        #[arg(long, default_value_t = 0.0)]
        duplicate: f64,
        /// How many `add 1` operations per semantics and loss rate.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
        operations: u64,
        /// The client's timeout per attempt, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 20,
              value_parser = clap::value_parser!(u64).range(1..=common::cli::MAX_MS))]
        timeout: u64,
        /// The relay's seed (the same seed gives the same faults for the same traffic).
        #[arg(long, default_value_t = 6)]
        seed: u64,
        /// Where to write the plot (SVG); none when not given.
        #[arg(long, value_name = "FILE")]
        svg: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server {
            bind,
            port,
            semantics,
            history_size,
            history_ttl,
            delay,
            max_requests,
        } => {
            let config = lab::ServerConfig {
                semantics: match semantics {
                    SemanticsArg::AtLeastOnce => lab::Semantics::AtLeastOnce,
                    SemanticsArg::AtMostOnce => lab::Semantics::AtMostOnce,
                },
                history_size: history_size as usize,
                history_ttl: Duration::from_millis(history_ttl),
                delay: Duration::from_millis(delay),
                max_requests,
            };
            run_server(SocketAddr::new(bind, port), config)
        }
        Command::Client {
            server,
            timeout,
            retries,
            count,
            operation,
            arg,
        } => {
            let options = lab::ClientOptions {
                timeout: Duration::from_millis(timeout),
                retries,
            };
            run_client(&server, &options, count, operation, arg.as_deref())
        }
        Command::Experiment {
            loss,
            duplicate,
            operations,
            timeout,
            seed,
            svg,
        } => run_experiment(&loss, duplicate, operations, timeout, seed, svg.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_server(addr: SocketAddr, config: lab::ServerConfig) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in signal_hook::consts::TERM_SIGNALS {
        signal_hook::flag::register(*signal, Arc::clone(&stop)).context("cannot watch for SIGINT/SIGTERM")?;
    }
    let socket =
        std::net::UdpSocket::bind(addr).with_context(|| format!("cannot bind UDP socket to {addr}"))?;
    let semantics = config.semantics;
    let mut server = lab::Server::new(socket, config).context("cannot set the socket's timeouts")?;
    let local = server.local_addr().context("cannot read the bound address")?;
    common::ready::announce(local).context("cannot write the ready line")?;
    let served = server
        .serve(&stop, |outcome| match outcome {
            Ok(served) => eprintln!("{served}"),
            Err(e) => eprintln!("error on one datagram (still serving): {e}"),
        })
        .with_context(|| format!("server on {local} stopped"))?;
    eprintln!(
        "served {served} datagrams; executions: {}; total {}",
        server.service().executions(),
        server.service().total()
    );
    if semantics == lab::Semantics::AtMostOnce {
        let history = server.history();
        eprintln!(
            "history: {} entries (at most {}), {} replies kept",
            history.len(),
            history.capacity(),
            history.replies_kept()
        );
    }
    Ok(())
}

fn run_client(
    server: &Endpoint,
    options: &lab::ClientOptions,
    count: u64,
    operation: OperationArg,
    arg: Option<&str>,
) -> Result<()> {
    let (code, arguments) = match (operation, arg) {
        (OperationArg::Echo, arg) => (lab::operation::ECHO, arg.unwrap_or_default()),
        (OperationArg::Get, None) => (lab::operation::GET, ""),
        (OperationArg::Get, Some(_)) => bail!("get takes no argument"),
        (OperationArg::Add, Some(n)) => (lab::operation::ADD, n),
        (OperationArg::Add, None) => bail!("add needs an argument: the integer to add"),
    };
    // A name may resolve to several addresses; this protocol uses the first (a client keeps
    // one server for all its operations, so that request ids stay in sequence).
    let addr = *server
        .addrs
        .first()
        .ok_or_else(|| anyhow!("{server} resolved to no address"))?;
    let mut client = lab::Client::new(addr, options.clone()).context("cannot bind the client's socket")?;
    for _ in 0..count {
        let request_id = client.next_id();
        let outcome = client
            .do_operation(code, arguments.as_bytes())
            .with_context(|| format!("operation on {server}"))?;
        if outcome.attempts > 1 {
            eprintln!("request {request_id}: {} attempts", outcome.attempts);
        }
        let result = String::from_utf8_lossy(&outcome.reply.result);
        match outcome.reply.status {
            lab::Status::Ok => println!("Reply: {result}"),
            lab::Status::Error => bail!("the server refused request {request_id}: {result}"),
        }
    }
    Ok(())
}

fn run_experiment(
    loss: &[f64],
    duplicate: f64,
    operations: u64,
    timeout: u64,
    seed: u64,
    svg: Option<&std::path::Path>,
) -> Result<()> {
    if let Some(bad) = loss.iter().chain([&duplicate]).find(|p| !(0.0..0.9).contains(*p)) {
        bail!("a probability must be at least 0 and below 0.9, not {bad}");
    }
    let setup = lab::experiment::Setup {
        operations,
        timeout: Duration::from_millis(timeout),
        duplicate,
        seed,
    };
    let mut rows = Vec::new();
    for &p in loss {
        for semantics in [lab::Semantics::AtLeastOnce, lab::Semantics::AtMostOnce] {
            let row = lab::experiment::measure(semantics, p, &setup)
                .with_context(|| format!("the run with {semantics:?} at {p} loss"))?;
            eprintln!("{}", row.summary());
            rows.push(row);
        }
    }
    print!("{}", lab::experiment::table(&rows));
    if let Some(path) = svg {
        lab::experiment::plot(&rows, &setup, path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
