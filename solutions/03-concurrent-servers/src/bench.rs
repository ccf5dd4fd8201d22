//! The load generator: drives any line echo server with concurrent clients and measures it.
//! Given complete.
//!
//! [`run`] starts `clients` threads. Together they send `requests` request lines (shared out as
//! evenly as possible), each of `size` bytes including its `\n`, and each unique (it names its
//! client and sequence number), so a reply that belongs to another request is noticed. Every
//! reply is read whole and compared with its request. A client keeps one connection for all its
//! requests, or with `connect_per_request` opens a new connection for each (the latency then
//! includes the handshake, and for a forking server a `fork`).
//!
//! Nothing runs unbounded: every connect, read and write has the `timeout`, a failed request
//! counts as an error and the client reconnects for the next one, and no request starts after
//! `duration_limit` (those are reported as `unsent`).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchConfig {
    /// The server's addresses, tried in order for every connection (a name's resolutions).
    pub server: Vec<SocketAddr>,
    /// Concurrent clients, each in its own thread (at least 1).
    pub clients: usize,
    /// Requests in all, shared out among the clients.
    pub requests: u64,
    /// Bytes per request line, `\n` included (at least 2; the reply is as long).
    pub size: usize,
    /// A new connection for every request instead of one per client.
    pub connect_per_request: bool,
    /// No request starts after this much time; the rest are reported as unsent.
    pub duration_limit: Duration,
    /// Limit on each connect, read and write.
    pub timeout: Duration,
}

/// Latency figures, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median: half of the requests took at most this long.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// The slowest request.
    pub max: f64,
}

/// What a run measured; `--json` prints it as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The server as given on the command line.
    pub server: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Requests asked for.
    pub requests: u64,
    /// Bytes per request, `\n` included.
    pub size: usize,
    /// Whether every request had its own connection.
    pub connect_per_request: bool,
    /// Requests answered with the right reply.
    pub completed: u64,
    /// Requests that failed (no connection, timeout, closed early, wrong reply).
    pub errors: u64,
    /// Requests never sent because the duration limit was reached.
    pub unsent: u64,
    /// Seconds from the start of the clients to the end of the last one.
    pub elapsed_s: f64,
    /// Completed requests per second.
    pub requests_per_s: f64,
    /// Bytes of correct replies received per second (as many were sent).
    pub bytes_per_s: f64,
    /// Latency of the completed requests, from the request's first byte (or its connect) to
    /// the reply's last byte.
    pub latency_ms: Latency,
    /// The errors, counted by description.
    pub error_kinds: BTreeMap<String, u64>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "bench {}: {} clients, {} requests of {} bytes, {}",
            self.server,
            self.clients,
            self.requests,
            self.size,
            if self.connect_per_request {
                "a connection per request"
            } else {
                "one connection per client"
            }
        )?;
        writeln!(
            f,
            "  completed  {} in {:.3} s, {} errors, {} unsent",
            self.completed, self.elapsed_s, self.errors, self.unsent
        )?;
        writeln!(
            f,
            "  throughput {:.0} requests/s, {:.0} bytes/s",
            self.requests_per_s, self.bytes_per_s
        )?;
        let l = self.latency_ms;
        write!(
            f,
            "  latency    p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            l.p50, l.p90, l.p99, l.max
        )?;
        for (kind, count) in &self.error_kinds {
            write!(f, "\n  error      {count} x {kind}")?;
        }
        Ok(())
    }
}

/// What one client thread measured.
#[derive(Default)]
struct ClientResult {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, u64>,
    unsent: u64,
}

/// One connection: the stream for writing and a buffered reader on a clone of it.
struct Connection {
    output: TcpStream,
    input: BufReader<TcpStream>,
}

/// Runs the benchmark described by `config` and reports the figures; `server` is the endpoint
/// as the user wrote it, for the report.
///
/// # Errors
/// `io::ErrorKind::InvalidInput` for no address, no client or a size under 2 bytes; an error
/// when a client thread cannot be started. Failed requests are not errors: they are counted.
pub fn run(config: &BenchConfig, server: &str) -> io::Result<Report> {
    let invalid = |what: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, what.to_owned()));
    if config.server.is_empty() {
        return invalid("no server address");
    }
    if config.clients == 0 {
        return invalid("at least one client is needed");
    }
    if config.size < 2 {
        return invalid("a request is at least 2 bytes (one byte and the newline)");
    }
    let clients = config.clients as u64;
    let barrier = Arc::new(Barrier::new(config.clients + 1));
    let mut threads = Vec::with_capacity(config.clients);
    for client in 0..clients {
        let share = config.requests / clients + u64::from(client < config.requests % clients);
        let (config, barrier) = (config.clone(), Arc::clone(&barrier));
        let spawned = thread::Builder::new()
            .name(format!("bench client {client}"))
            .spawn(move || {
                barrier.wait();
                run_client(&config, client, share)
            });
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                // Release the threads already waiting, then give up.
                drop(threads);
                return Err(e);
            }
        }
    }
    barrier.wait();
    let started = Instant::now();
    let mut all = ClientResult::default();
    for handle in threads {
        let result = handle.join().unwrap_or_else(|_| {
            let mut r = ClientResult::default();
            r.errors.insert("a client thread panicked".to_owned(), 1);
            r
        });
        all.latencies.extend(result.latencies);
        for (kind, count) in result.errors {
            *all.errors.entry(kind).or_default() += count;
        }
        all.unsent += result.unsent;
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    all.latencies.sort_unstable();
    let completed = all.latencies.len() as u64;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let percentile = |p: f64| {
        if all.latencies.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * all.latencies.len() as f64).ceil() as usize;
        ms(all.latencies[rank.clamp(1, all.latencies.len()) - 1])
    };
    Ok(Report {
        server: server.to_owned(),
        clients: config.clients,
        requests: config.requests,
        size: config.size,
        connect_per_request: config.connect_per_request,
        completed,
        errors: all.errors.values().sum(),
        unsent: all.unsent,
        elapsed_s: elapsed,
        requests_per_s: completed as f64 / elapsed,
        bytes_per_s: (completed * config.size as u64) as f64 / elapsed,
        latency_ms: Latency {
            p50: percentile(50.0),
            p90: percentile(90.0),
            p99: percentile(99.0),
            max: all.latencies.last().map_or(0.0, |d| ms(*d)),
        },
        error_kinds: all.errors,
    })
}

/// The request line `seq` of `client`: `client C request S ` padded with dots to `size - 1`
/// bytes, then `\n`.
pub fn request_line(client: u64, seq: u64, size: usize) -> Vec<u8> {
    let mut line = format!("client {client} request {seq} ").into_bytes();
    line.resize(size.saturating_sub(1), b'.');
    line.push(b'\n');
    line
}

fn run_client(config: &BenchConfig, client: u64, share: u64) -> ClientResult {
    let started = Instant::now();
    let mut result = ClientResult::default();
    let mut connection: Option<Connection> = None;
    for seq in 0..share {
        if started.elapsed() >= config.duration_limit {
            result.unsent = share - seq;
            break;
        }
        let line = request_line(client, seq, config.size);
        let begun = Instant::now();
        match one_request(config, &mut connection, &line) {
            Ok(()) => result.latencies.push(begun.elapsed()),
            Err(e) => {
                *result.errors.entry(e).or_default() += 1;
                connection = None;
            }
        }
        if config.connect_per_request {
            connection = None;
        }
    }
    result
}

fn connect(config: &BenchConfig) -> Result<Connection, String> {
    let mut last = String::from("no address");
    for addr in &config.server {
        match TcpStream::connect_timeout(addr, config.timeout) {
            Ok(stream) => {
                let setup = || -> io::Result<Connection> {
                    stream.set_read_timeout(Some(config.timeout))?;
                    stream.set_write_timeout(Some(config.timeout))?;
                    stream.set_nodelay(true)?;
                    Ok(Connection {
                        input: BufReader::new(stream.try_clone()?),
                        output: stream,
                    })
                };
                return setup().map_err(|e| format!("cannot set up a connection: {}", e.kind()));
            }
            Err(e) => last = format!("connect failed: {}", e.kind()),
        }
    }
    Err(last)
}

/// Sends `line` and checks its reply; an error is described in a few words, for counting.
fn one_request(config: &BenchConfig, connection: &mut Option<Connection>, line: &[u8]) -> Result<(), String> {
    if connection.is_none() {
        *connection = Some(connect(config)?);
    }
    let Some(conn) = connection.as_mut() else {
        return Err("no connection".to_owned());
    };
    let describe = |what: &str, e: io::Error| {
        if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut {
            format!("{what} timed out")
        } else {
            format!("{what} failed: {}", e.kind())
        }
    };
    loop {
        match conn.output.write_all(line) {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(describe("send", e)),
        }
    }
    let mut reply = Vec::with_capacity(line.len());
    loop {
        let limit = (line.len() + 1 - reply.len()) as u64;
        match (&mut conn.input).take(limit).read_until(b'\n', &mut reply) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(describe("reply", e)),
        }
    }
    if reply == line {
        Ok(())
    } else if reply.is_empty() {
        Err("the server closed the connection".to_owned())
    } else if reply.last() != Some(&b'\n') && reply.len() <= line.len() {
        Err("the server closed the connection inside a reply".to_owned())
    } else {
        Err("wrong reply".to_owned())
    }
}
