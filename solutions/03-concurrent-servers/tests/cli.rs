//! Tests of the command line and of the load generator, which students are given complete. They
//! would pass on the skeleton too, so they live with the solution, not in the grading suite.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use assert_cmd::Command;
use common::testing::{ServerThread, assert_help_mentions, assert_refused, assert_version, tcp_listener};
use predicates::prelude::*;
use solution03_concurrent_servers::bench::{self, BenchConfig, request_line};
use solution03_concurrent_servers::plot::{self, Run};

const BIN: &str = env!("CARGO_BIN_EXE_solution03-concurrent-servers");

/// The binary. No `timeout()`: assert_cmd's would install a SIGCHLD handler, which interrupts
/// the socket reads of the other tests here (every command run here ends on its own).
fn bin() -> Command {
    Command::new(BIN)
}

#[test]
fn help_teaches_the_subcommands_and_options() {
    assert_help_mentions(BIN, &["--help"], &["server", "bench", "bench-plot"]);
    assert_help_mentions(
        BIN,
        &["server", "--help"],
        &[
            "--model <MODEL>",
            "iterative",
            "[default: 7896]",
            "--max-clients <N>",
            "[default: 64]",
            "backlog",
            "--idle-timeout <MS>",
            "--message-timeout <MS>",
            "[default: 30000]",
            "trickles",
        ],
    );
    assert_help_mentions(
        BIN,
        &["bench", "--help"],
        &[
            "--clients <CLIENTS>",
            "[default: 8]",
            "--requests <REQUESTS>",
            "[default: 1000]",
            "--size <BYTES>",
            "--connect-per-request",
            "--duration-limit <DURATION>",
            "[default: 30s]",
            "--json",
        ],
    );
}

#[test]
fn version_is_printed() {
    assert_version(BIN, env!("CARGO_PKG_VERSION"));
}

#[test]
fn server_needs_a_model() {
    bin()
        .args(["server", "--port", "0"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--model"));
}

#[test]
fn a_port_in_use_is_one_clear_line() {
    let holder = tcp_listener();
    let port = holder.local_addr().expect("addr").port().to_string();
    let out = bin()
        .args(["server", "--model", "thread", "--port", &port])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    assert!(
        err.starts_with("error: cannot listen on TCP 127.0.0.1:"),
        "{err:?}"
    );
}

#[test]
fn server_timeouts_of_zero_are_refused() {
    for option in ["--idle-timeout", "--message-timeout"] {
        bin()
            .args(["server", "--model", "iterative", "--port", "0", option, "0"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(option));
    }
}

#[test]
fn bench_rejects_bad_values_in_one_line() {
    for args in [
        ["--clients", "0"],
        ["--size", "1"],
        ["--duration-limit", "soon"],
        ["--duration-limit", "61m"],
        // 307445734561825861 minutes overflow a u64 of milliseconds: an error, not a panic.
        ["--duration-limit", "307445734561825861m"],
        ["--timeout", "0"],
    ] {
        let out = bin()
            .args(["bench", "--server", "127.0.0.1:7896"])
            .args(args)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(args[0]), "{args:?}");
    }
}

#[test]
fn bench_against_nothing_reports_errors_and_fails() {
    // Bound but not listening: every connect is refused at once.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().expect("addr").into())
        .expect("bind");
    let addr = socket.local_addr().expect("addr").as_socket().expect("inet");
    let out = bin()
        .args([
            "bench",
            "--server",
            &addr.to_string(),
            "--clients",
            "2",
            "--requests",
            "10",
            "--json",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success(), "errors make the exit status non-zero");
    let report: bench::Report = serde_json::from_slice(&out.stdout).expect("the report is still printed");
    assert_eq!((report.completed, report.errors), (0, 10));
    assert!(
        report.error_kinds.keys().any(|k| k.contains("refused")),
        "{report:?}"
    );
}

/// A test-side line echo server that answers each line with `reply(line)`, for `connections`
/// connections served one after the other.
fn echo_server(connections: usize, reply: fn(&str) -> String) -> (SocketAddr, ServerThread<()>) {
    let listener: TcpListener = tcp_listener();
    let addr = listener.local_addr().expect("addr");
    let thread = ServerThread::spawn("the test's echo server", move || {
        for _ in 0..connections {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut input = BufReader::new(&stream);
            let mut output = &stream;
            let mut line = String::new();
            while input.read_line(&mut line).is_ok_and(|n| n > 0) {
                if output.write_all(reply(&line).as_bytes()).is_err() {
                    break;
                }
                line.clear();
            }
        }
    });
    (addr, thread)
}

fn config(addr: SocketAddr, clients: usize, requests: u64) -> BenchConfig {
    BenchConfig {
        server: vec![addr],
        clients,
        requests,
        size: 32,
        connect_per_request: false,
        duration_limit: Duration::from_secs(20),
        timeout: Duration::from_secs(5),
    }
}

#[test]
fn bench_counts_every_request_against_a_correct_server() {
    let (addr, _server) = echo_server(1, str::to_owned);
    let report = bench::run(&config(addr, 1, 50), "test").expect("run");
    assert_eq!(
        (report.completed, report.errors, report.unsent),
        (50, 0, 0),
        "{report:?}"
    );
    assert!(report.latency_ms.p50 <= report.latency_ms.max);
    assert!((report.bytes_per_s - report.requests_per_s * 32.0).abs() < 1.0);
}

#[test]
fn bench_notices_wrong_replies() {
    let (addr, _server) = echo_server(5, |line| line.to_uppercase());
    let report = bench::run(&config(addr, 1, 5), "test").expect("run");
    assert_eq!(report.completed, 0, "{report:?}");
    assert_eq!(report.errors, 5);
    assert_eq!(report.error_kinds.get("wrong reply"), Some(&5), "{report:?}");
}

#[test]
fn bench_shares_requests_among_clients_and_uses_one_connection_each() {
    // The test's server serves connections one after the other: 3 clients, 3 connections.
    let (addr, server) = echo_server(3, str::to_owned);
    let report = bench::run(&config(addr, 3, 10), "test").expect("run");
    assert_eq!((report.completed, report.errors), (10, 0), "{report:?}");
    server.join_within(Duration::from_secs(5));
}

#[test]
fn bench_connects_per_request_when_asked() {
    let (addr, server) = echo_server(7, str::to_owned);
    let mut cfg = config(addr, 1, 7);
    cfg.connect_per_request = true;
    let report = bench::run(&cfg, "test").expect("run");
    assert_eq!((report.completed, report.errors), (7, 0), "{report:?}");
    server.join_within(Duration::from_secs(5));
}

#[test]
fn bench_stops_at_the_duration_limit() {
    let (addr, _server) = echo_server(1, str::to_owned);
    let mut cfg = config(addr, 1, 1_000_000_000);
    cfg.duration_limit = Duration::from_millis(200);
    let report = bench::run(&cfg, "test").expect("run");
    assert!(report.unsent > 0 && report.errors == 0, "{report:?}");
    assert!(report.elapsed_s < 5.0, "{report:?}");
}

#[test]
fn request_lines_are_unique_and_of_the_asked_size() {
    let a = request_line(1, 2, 40);
    let b = request_line(2, 1, 40);
    assert_eq!((a.len(), b.len()), (40, 40));
    assert_ne!(a, b);
    assert_eq!(a.last(), Some(&b'\n'));
    assert_eq!(request_line(0, 0, 2), b"c\n");
}

#[test]
fn table_and_plot_show_every_run() {
    let (addr, _server) = echo_server(1, str::to_owned);
    let report = bench::run(&config(addr, 1, 5), "test").expect("run");
    let runs: Vec<Run> = ["iterative", "thread"]
        .iter()
        .map(|s| Run {
            server: (*s).to_owned(),
            report: report.clone(),
        })
        .collect();
    let table = plot::table(&runs);
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.contains("| thread | 1 | per client |"), "{table}");
    let dir = std::env::temp_dir().join(format!("lab03-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("plot.svg");
    plot::draw(&path, "test", &runs).expect("draw");
    let svg = std::fs::read_to_string(&path).expect("svg");
    assert!(svg.starts_with("<svg") && svg.contains("iterative") && svg.contains("thread"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn waits_longer_than_an_hour_are_refused_in_one_line() {
    // common::cli::MAX_MS: a larger wait is a typo, and `Instant + timeout` can overflow (a
    // panic) where it does not fit the platform's clock.
    for args in [
        &["server", "--model", "thread", "--idle-timeout", "3600001"][..],
        &["server", "--model", "fork", "--message-timeout", "3600001"],
        &["bench", "--server", "127.0.0.1:7896", "--timeout", "3600001"],
    ] {
        assert_refused(BIN, args, 2, "..=3600000");
    }
}
