//! Lab 03 command line (given complete): `server`, `bench` and `bench-plot` over the library.
//!
//! ```text
//! solution03-concurrent-servers server --model iterative|fork|thread [--bind 127.0.0.1] [--port 7896]
//!                                      [--max-clients 64] [--idle-timeout 10000] [--message-timeout 30000]
//!                                      [--max-connections N]
//! solution03-concurrent-servers bench --server HOST:PORT [--clients 8] [--requests 1000] [--size 64]
//!                                     [--connect-per-request] [--duration-limit 30s] [--timeout 5000] [--json]
//! solution03-concurrent-servers bench-plot [--out FILE] [--requests 2000] [--also NAME=HOST:PORT]...
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::builder::TypedValueParser as _;
use clap::{Parser, Subcommand, ValueEnum};
use common::endpoint::{self, Endpoint};
use solution03_concurrent_servers as lab;
use solution03_concurrent_servers::bench::{self, BenchConfig};
use solution03_concurrent_servers::plot::{self, Run};

/// Lab 03: a line echo server in three models (iterative, fork, thread) and a load generator.
///
/// Start a server in one terminal, load it from another:
///
///   solution03-concurrent-servers server --model thread
///
///   solution03-concurrent-servers bench --server localhost:7896 --clients 8
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command_,
}

/// How the server serves its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModelArg {
    /// One client at a time; the others wait in the backlog.
    Iterative,
    /// A child process per client (fork); Unix only.
    Fork,
    /// A thread per client.
    Thread,
}

impl From<ModelArg> for lab::Model {
    fn from(m: ModelArg) -> Self {
        match m {
            ModelArg::Iterative => lab::Model::Iterative,
            ModelArg::Fork => lab::Model::Fork,
            ModelArg::Thread => lab::Model::Thread,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command_ {
    /// Echo each line a client sends, serving clients in the chosen model.
    ///
    /// Prints `listening on IP:PORT` on stdout once listening, then one line per event on
    /// stderr. SIGINT (Ctrl-C) or SIGTERM stops the server; the fork model stops its children too.
    Server {
        /// How clients are served: iterative (one at a time), fork (a process each) or thread
        /// (a thread each).
        #[arg(long, value_enum)]
        model: ModelArg,
        /// Local IP address to bind; 127.0.0.1 keeps the server on this machine
        /// (use 0.0.0.0 to accept connections from other hosts on purpose).
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
        /// TCP port to listen on; 0 lets the operating system choose an ephemeral port.
        #[arg(long, default_value_t = lab::DEFAULT_PORT)]
        port: u16,
        /// Most clients served at once (fork and thread); further connections wait in the
        /// backlog until a client leaves.
        #[arg(long, value_name = "N", default_value_t = lab::DEFAULT_MAX_CLIENTS,
              value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
        max_clients: usize,
        /// Close a connection whose client stays silent this long, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = lab::DEFAULT_IDLE_TIMEOUT.as_millis() as u64,
              value_parser = clap::value_parser!(u64).range(1..=common::cli::MAX_MS))]
        idle_timeout: u64,
        /// Close a connection whose line takes longer than this to arrive and be echoed, in
        /// milliseconds: bounds a client that trickles a line (or drains its echo) slowly, which
        /// the idle timeout, reset by every byte, does not.
        #[arg(long, value_name = "MS", default_value_t = lab::DEFAULT_MESSAGE_TIMEOUT.as_millis() as u64,
              value_parser = clap::value_parser!(u64).range(1..=common::cli::MAX_MS))]
        message_timeout: u64,
        /// Stop accepting after this many connections, wait for the clients being served, and
        /// exit (default: serve forever).
        #[arg(long, value_name = "N")]
        max_connections: Option<u64>,
    },
    /// Load a line echo server with concurrent clients and report throughput and latency.
    ///
    /// Every reply is checked against its request. Use it on loopback or on servers you run.
    Bench(BenchArgs),
    /// Benchmark the three models at 1, 8 and 64 clients, with one connection per client and
    /// with a connection per request; print a Markdown table and write an SVG plot.
    ///
    /// Each model's server is this program's `server --port 0`, started and stopped for you.
    BenchPlot {
        /// Where to write the plot.
        #[arg(long, value_name = "FILE", default_value = "lab03-bench.svg")]
        out: PathBuf,
        /// Requests per run, shared out among the clients.
        #[arg(long, default_value_t = 10_000)]
        requests: u64,
        /// Bytes per request line, newline included.
        #[arg(long, value_name = "BYTES", default_value_t = 64)]
        size: usize,
        /// Also measure another line echo server already running (for example socat), as
        /// NAME=HOST:PORT; may be repeated.
        #[arg(long, value_name = "NAME=HOST:PORT")]
        also: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// The server's endpoint: 127.0.0.1:7896, localhost:7896 or [::1]:7896.
    #[arg(long, value_name = "HOST:PORT", value_parser = endpoint::parse)]
    server: Endpoint,
    /// Concurrent clients, each in its own thread.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024).map(usize::from))]
    clients: usize,
    /// Requests in all, shared out among the clients.
    #[arg(long, default_value_t = 1000)]
    requests: u64,
    /// Bytes per request line, newline included (at least 2).
    #[arg(long, value_name = "BYTES", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(2..=(lab::MAX_LINE as i64)).map(|v| v as usize))]
    size: usize,
    /// Open a new connection for every request (and close it after the reply).
    #[arg(long)]
    connect_per_request: bool,
    /// Start no request after this long: 500ms, 30s, 2m.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    duration_limit: Duration,
    /// Limit on each connect, send and reply, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=common::cli::MAX_MS))]
    timeout: u64,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Parses `500ms`, `30s`, `2m` (a bare number is seconds), at most an hour
/// ([`common::cli::MAX_MS`]): a longer load test is a typo.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 500ms, 30s or 2m"))?;
    let ms_per_unit: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        _ => return Err(format!("`{text}`: the unit must be ms, s or m")),
    };
    n.checked_mul(ms_per_unit)
        .filter(|ms| *ms <= common::cli::MAX_MS)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is longer than an hour, the longest load test"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command_::Server {
            model,
            bind,
            port,
            max_clients,
            idle_timeout,
            message_timeout,
            max_connections,
        } => {
            let config = lab::ServerConfig {
                max_clients,
                idle_timeout: Some(Duration::from_millis(idle_timeout)),
                message_timeout: Some(Duration::from_millis(message_timeout)),
                max_connections,
            };
            run_server(model.into(), SocketAddr::new(bind, port), &config).map(|()| true)
        }
        Command_::Bench(args) => run_bench(&args),
        Command_::BenchPlot {
            out,
            requests,
            size,
            also,
        } => bench_plot(&out, requests, size, &also).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes each event as one line on stderr, in one write: lines from several threads or
/// processes sharing the stream do not interleave.
fn stderr_log() -> lab::Log {
    Arc::new(|event: &lab::Event| {
        let line = format!("{event}\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
    })
}

fn run_server(model: lab::Model, addr: SocketAddr, config: &lab::ServerConfig) -> Result<()> {
    if cfg!(not(unix)) && model == lab::Model::Fork {
        bail!("--model fork needs fork(2), which only Unix systems have; use --model thread");
    }
    let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on TCP {addr}"))?;
    let local = listener.local_addr().context("cannot read the bound address")?;
    // The forking server watches SIGINT and SIGTERM itself, to stop its children; it must
    // start watching while the process has one thread (it always has, here).
    #[cfg(unix)]
    let signals = if model == lab::Model::Fork {
        Some(lab::Signals::watch().context("cannot watch SIGINT and SIGTERM")?)
    } else {
        None
    };
    common::ready::announce(local).context("cannot write the ready line")?;
    let log = stderr_log();
    let accepted = match model {
        lab::Model::Iterative => {
            eprintln!("model iterative: one client at a time");
            lab::serve_iterative(&listener, config, &log)
        }
        lab::Model::Thread => {
            eprintln!(
                "model thread: a thread per client, at most {}",
                config.max_clients
            );
            lab::serve_threads(&listener, config, &log)
        }
        #[cfg(unix)]
        lab::Model::Fork => {
            eprintln!(
                "model fork: a child process per client, at most {}; server pid {}",
                config.max_clients,
                std::process::id()
            );
            let signals = signals.context("no signal watch")?;
            lab::serve_fork(listener, config, &signals, &log)
        }
        #[cfg(not(unix))]
        lab::Model::Fork => unreachable!("refused above"),
    }
    .with_context(|| format!("server on {local} stopped"))?;
    eprintln!("accepted {accepted} connections; exiting");
    Ok(())
}

fn bench_config(args: &BenchArgs) -> BenchConfig {
    BenchConfig {
        server: args.server.addrs.clone(),
        clients: args.clients,
        requests: args.requests,
        size: args.size,
        connect_per_request: args.connect_per_request,
        duration_limit: args.duration_limit,
        timeout: Duration::from_millis(args.timeout),
    }
}

/// Runs one benchmark and prints its report; `Ok(false)` when some requests failed.
fn run_bench(args: &BenchArgs) -> Result<bool> {
    let report = bench::run(&bench_config(args), &args.server.text).context("cannot run the benchmark")?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).context("cannot encode the report")?
        );
    } else {
        println!("{report}");
    }
    if report.errors > 0 {
        eprintln!("error: {} of {} requests failed", report.errors, report.requests);
    }
    Ok(report.errors == 0)
}

/// A server of ours started for `bench-plot`, stopped on drop.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            // SIGTERM lets the forking server stop its children; then make sure.
            let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..100 {
                if matches!(self.0.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(model: &str) -> Result<(Spawned, SocketAddr)> {
    let exe = std::env::current_exe().context("cannot find this program")?;
    let mut child = Command::new(exe)
        .args(["server", "--model", model, "--port", "0", "--max-clients", "64"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start a server")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let guard = Spawned(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("no ready line")?;
    let addr = common::ready::parse(&line).with_context(|| format!("not a ready line: {line:?}"))?;
    Ok((guard, addr))
}

fn bench_plot(out: &std::path::Path, requests: u64, size: usize, also: &[String]) -> Result<()> {
    let mut targets: Vec<(String, Option<Endpoint>)> = Vec::new();
    for model in ["iterative", "fork", "thread"] {
        if cfg!(unix) || model != "fork" {
            targets.push((model.to_owned(), None));
        }
    }
    for extra in also {
        let (name, endpoint) = extra
            .split_once('=')
            .ok_or_else(|| anyhow!("--also {extra}: expected NAME=HOST:PORT"))?;
        targets.push((
            name.to_owned(),
            Some(endpoint::parse(endpoint).map_err(|e| anyhow!(e))?),
        ));
    }
    let mut runs = Vec::new();
    for (name, endpoint) in &targets {
        for per_request in [false, true] {
            for clients in [1, 8, 64] {
                // A fresh server for each run, so one run's leftovers do not slow the next.
                let (_guard, addrs, text) = match endpoint {
                    Some(e) => (None, e.addrs.clone(), e.text.clone()),
                    None => {
                        let (guard, addr) = start_server(name)?;
                        (Some(guard), vec![addr], addr.to_string())
                    }
                };
                let config = BenchConfig {
                    server: addrs,
                    clients,
                    requests,
                    size,
                    connect_per_request: per_request,
                    duration_limit: Duration::from_secs(60),
                    timeout: Duration::from_secs(10),
                };
                let report = bench::run(&config, &text).with_context(|| format!("bench of {name}"))?;
                eprintln!(
                    "{name:>9} {clients:>2} clients, {}: {:.0} requests/s, {} errors",
                    if per_request {
                        "a connection per request"
                    } else {
                        "one connection per client"
                    },
                    report.requests_per_s,
                    report.errors
                );
                runs.push(Run {
                    server: name.clone(),
                    report,
                });
            }
        }
    }
    print!("{}", plot::table(&runs));
    let title = format!("Line echo on loopback: {requests} requests of {size} bytes per run");
    plot::draw(out, &title, &runs).map_err(|e| anyhow!("cannot draw {}: {e}", out.display()))?;
    eprintln!("wrote {}", out.display());
    if runs.iter().any(|r| r.report.errors > 0) {
        bail!("some requests failed; see the errors column");
    }
    Ok(())
}
