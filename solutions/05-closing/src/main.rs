//! Lab 05 command line (given complete): `experiment`, `server` and `client` over the library.
//!
//! ```text
//! solution05-closing experiment <NAME|all>
//! solution05-closing server [--bind 127.0.0.1] [--port 7896] [--drain 2000] [--idle-timeout 10000]
//!                           [--message-timeout 30000] [--max-bytes 1073741824] [--max-connections N]
//! solution05-closing client --server HOST:PORT [--file PATH] [--timeout 5000]
//! ```

use std::fs::File;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Parser, Subcommand};
use common::endpoint::{self, Endpoint};
use solution05_closing as lab;
use solution05_closing::experiments;

/// Lab 05: how TCP connections end — orderly and abortive close, half-close, end of stream,
/// resets, broken pipes and TIME_WAIT.
///
/// Watch each behaviour on real sockets:
///
///   solution05-closing experiment all
///
/// Or send a file to a server that replies with its byte count and checksum, then closes:
///
///   solution05-closing server
///
///   solution05-closing client --server localhost:7896 --file Cargo.lock
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn experiment_names() -> PossibleValuesParser {
    let all = PossibleValue::new("all").help("every scenario, then a summary table");
    let each = experiments::SCENARIOS
        .iter()
        .map(|s| PossibleValue::new(s.name).help(s.title));
    PossibleValuesParser::new(std::iter::once(all).chain(each))
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a closing scenario on loopback and print what each side did and observed.
    ///
    /// Everything runs on loopback (127.0.0.1; on Linux `time-wait` uses an address of its own,
    /// 127.77.x.y) with ephemeral ports. The observations are this machine's: each scenario
    /// ends with a note on how other systems differ.
    Experiment {
        /// The scenario to run, or `all`.
        #[arg(value_name = "NAME", value_parser = experiment_names())]
        name: String,
    },
    /// Count and checksum what each client sends, reply, and close in an orderly way.
    ///
    /// A request is everything the client sends until it half-closes. The reply is one line,
    /// `received N bytes, fnv1a64 HEX` (or `refused: more than N bytes`), then the server
    /// shuts down its sending side, drains what the client still sends, and closes.
    /// Prints `listening on IP:PORT` on stdout once listening, then one line per event on stderr.
    Server {
        /// Local IP address to bind; 127.0.0.1 keeps the server on this machine
        /// (use 0.0.0.0 to accept connections from other hosts on purpose).
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
        /// TCP port to listen on; 0 lets the operating system choose an ephemeral port.
        #[arg(long, default_value_t = lab::DEFAULT_PORT)]
        port: u16,
        /// How long to wait for the client's end of stream after the reply, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = lab::DEFAULT_DRAIN.as_millis() as u64)]
        drain: u64,
        /// Close a connection whose client stays silent this long, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = lab::DEFAULT_IDLE_TIMEOUT.as_millis() as u64,
              value_parser = clap::value_parser!(u64).range(1..=common::cli::MAX_MS))]
        idle_timeout: u64,
        /// Close a connection whose upload takes longer than this to arrive complete and be
        /// answered, in milliseconds: bounds a client that trickles its request (each read within
        /// the idle timeout). The drain after the reply is not counted; --drain bounds it.
        #[arg(long, value_name = "MS", default_value_t = lab::DEFAULT_MESSAGE_TIMEOUT.as_millis() as u64,
              value_parser = clap::value_parser!(u64).range(1..=common::cli::MAX_MS))]
        message_timeout: u64,
        /// The longest request accepted, in bytes; a longer one is refused (and drained).
        #[arg(long, value_name = "BYTES", default_value_t = lab::DEFAULT_MAX_BYTES)]
        max_bytes: u64,
        /// Exit after this many connections (default: serve forever).
        #[arg(long, value_name = "N")]
        max_connections: Option<u64>,
    },
    /// Send a file (or stdin), half-close, and print the server's reply.
    ///
    /// Checks that the server received exactly what was sent (byte count and FNV-1a 64
    /// checksum); exits 1 if not, or if the server refused the request.
    Client {
        /// The server's endpoint: 127.0.0.1:7896, localhost:7896 or [::1]:7896.
        #[arg(long, value_name = "HOST:PORT", value_parser = endpoint::parse)]
        server: Endpoint,
        /// The file to send; without it, standard input is sent until its end.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// How long to wait to connect, and for each write and read, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 5000,
              value_parser = clap::value_parser!(u64).range(1..=common::cli::MAX_MS))]
        timeout: u64,
    },
    /// (For `experiment process-exit`.) Connect, say hello, and wait to be killed.
    #[command(hide = true)]
    Child {
        /// Where to connect.
        #[arg(long, value_name = "IP:PORT")]
        server: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Experiment { name } => run_experiments(&name),
        Command::Server {
            bind,
            port,
            drain,
            idle_timeout,
            message_timeout,
            max_bytes,
            max_connections,
        } => {
            let config = lab::ServerConfig {
                idle_timeout: Some(Duration::from_millis(idle_timeout)),
                message_timeout: Some(Duration::from_millis(message_timeout)),
                drain: Duration::from_millis(drain),
                max_bytes,
                max_connections,
            };
            run_server(SocketAddr::new(bind, port), &config)
        }
        Command::Client {
            server,
            file,
            timeout,
        } => run_client(&server, file.as_deref(), Duration::from_millis(timeout)),
        Command::Child { server } => {
            experiments::child(server).with_context(|| format!("child: cannot talk to {server}"))
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

fn run_experiments(name: &str) -> Result<()> {
    let context = experiments::Context {
        exe: std::env::current_exe().context("cannot find this program's path")?,
    };
    let scenarios: Vec<&experiments::Scenario> = if name == "all" {
        experiments::SCENARIOS.iter().collect()
    } else {
        vec![experiments::find(name)?]
    };
    let mut reports = Vec::new();
    for scenario in scenarios {
        let report = scenario
            .run(&context)
            .with_context(|| format!("experiment {}", scenario.name))?;
        println!("{report}");
        reports.push(report);
    }
    if reports.len() > 1 {
        print!("{}", experiments::table(&reports));
    }
    Ok(())
}

fn run_server(addr: SocketAddr, config: &lab::ServerConfig) -> Result<()> {
    let listener = lab::listen(addr).with_context(|| format!("cannot listen on TCP {addr}"))?;
    let local = listener.local_addr().context("cannot read the bound address")?;
    common::ready::announce(local).context("cannot write the ready line")?;
    eprintln!(
        "serving one connection at a time; requests up to {} bytes within {}; drain {} ms",
        config.max_bytes,
        config
            .message_timeout
            .map_or("no time limit".to_owned(), |t| format!("{} ms", t.as_millis())),
        config.drain.as_millis()
    );
    let served = lab::serve(&listener, config, |event| eprintln!("{event}"))
        .with_context(|| format!("server on {local} stopped"))?;
    eprintln!("served {served} connections; exiting");
    Ok(())
}

fn run_client(server: &Endpoint, file: Option<&std::path::Path>, timeout: Duration) -> Result<()> {
    let input: Box<dyn Read> = match file {
        Some(path) => Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?),
        None => Box::new(io::stdin().lock()),
    };
    let mut input = lab::Tally::new(input);
    let stream =
        lab::connect(&server.addrs, timeout).with_context(|| format!("cannot connect to {server}"))?;
    let reply = lab::request(&stream, &mut input).map_err(|e| explain(e, server, timeout))?;
    let sent = input.summary();
    println!("sent {sent}");
    println!("reply: {reply}");
    match reply {
        lab::Reply::Received(received) if received == sent => {
            println!("intact: the server received every byte that was sent");
            Ok(())
        }
        lab::Reply::Received(received) => {
            bail!("the server received {received}, but {sent} were sent")
        }
        lab::Reply::Refused { max_bytes } => {
            bail!("the server refused the request: it takes at most {max_bytes} bytes")
        }
    }
}

/// Turns an error of the exchange into one line that says what happened.
fn explain(e: io::Error, server: &Endpoint, timeout: Duration) -> anyhow::Error {
    match lab::classify(&Err(io::Error::from(e.kind()))) {
        lab::Outcome::TimedOut => anyhow!(
            "no progress with {server} within {} ms (timed out; is it serving another client?)",
            timeout.as_millis()
        ),
        lab::Outcome::Reset | lab::Outcome::BrokenPipe => {
            anyhow!("{server} reset the connection (it closed without reading everything?): {e}")
        }
        lab::Outcome::EndOfStream => anyhow!("{server} closed the connection without a reply: {e}"),
        _ => anyhow!(e).context(format!("exchange with {server}")),
    }
}
