//! Lab 03 grading suite: iterative, thread-per-connection and fork-per-connection servers.
//!
//! Shared by `lab03-concurrent-servers` (the student's work) and `solution03-concurrent-servers`
//! (the reference): each package's `tests/grade.rs` defines `lab` (its library) and `BIN` (its
//! binary) and includes this file. Tests are named `stepN_...` after the step of the book chapter
//! they check, so `cargo test -p lab03-concurrent-servers step2_` runs the checks of step 2.
//!
//! Nothing here forks: the test process has many threads (see the chapter, § What fork copies
//! and what it shares). The forking server is tested by spawning the binary and looking at its
//! children from outside, in /proc (Linux). The step 3 and 5 functions are tested on children
//! started with `std::process::Command` (`sleep`, `sh`), which they must reap by pid only.
//! Every socket has timeouts, every server process is killed and reaped by its guard, and no
//! signal handler is installed in the test process.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::testing::{IO_TIMEOUT, ServerProcess, ServerThread, is_timeout, tcp_connect, tcp_listener};

use crate::{BIN, lab};

/// How long a concurrent server may take to answer a second client while a first one is idle.
const PROMPT: Duration = Duration::from_millis(500);
/// How long a client that should be waiting must see no reply, to call it waiting.
const SILENCE: Duration = Duration::from_millis(1000);
/// How long the server gets to notice something (a client gone, a child finished).
const SETTLE: Duration = Duration::from_secs(5);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn addr_of(listener: &TcpListener) -> SocketAddr {
    listener.local_addr().expect("a bound socket has a local address")
}

/// The binary's server with `--model model --port 0` and `extra` arguments.
fn server(model: &str, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["server", "--model", model, "--port", "0"];
    args.extend_from_slice(extra);
    ServerProcess::start(BIN, &args)
}

/// Sends `line` and a newline on `stream` and reads the echo (5 s timeout); returns the reply
/// without its newline, or a description of what went wrong.
fn try_echo(stream: &mut TcpStream, line: &str) -> Result<String, String> {
    let request = format!("{line}\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending {line:?} failed: {e}"))?;
    let mut reply = vec![0u8; request.len()];
    let mut got = 0;
    while got < reply.len() {
        match stream.read(&mut reply[got..]) {
            Ok(0) => {
                return Err(format!(
                    "the server closed the connection after {got} bytes of the echo"
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(format!(
                    "no echo of {line:?} within {} ms",
                    IO_TIMEOUT.as_millis()
                ));
            }
            Err(e) => return Err(format!("reading the echo of {line:?} failed: {e}")),
        }
    }
    let reply = text(&reply);
    if reply == request {
        Ok(line.to_owned())
    } else {
        Err(format!("sent {request:?}, the echo was {reply:?}"))
    }
}

/// What `server` printed on stderr (where a skeleton's `todo!()` panic appears), for failure
/// messages.
fn server_log(server: &ServerProcess) -> String {
    // Let the stderr reader catch up with a server that just died.
    std::thread::sleep(Duration::from_millis(100));
    let lines = server.stderr_lines();
    let start = lines.len().saturating_sub(20);
    format!("\n--- the server's stderr ---\n{}", lines[start..].join("\n"))
}

/// A connection to `server` with 5 s timeouts; panics with the server's stderr if it fails.
fn connect(server: &ServerProcess) -> TcpStream {
    match TcpStream::connect_timeout(&server.addr(), IO_TIMEOUT) {
        Ok(stream) => {
            common::testing::set_stream_timeouts(&stream);
            stream
        }
        Err(e) => panic!(
            "cannot connect to the server at {}: {e}{}",
            server.addr(),
            server_log(server)
        ),
    }
}

/// Like [`try_echo`], panicking with `context` and `server`'s stderr on failure.
fn echo(server: &ServerProcess, stream: &mut TcpStream, line: &str, context: &str) {
    if let Err(e) = try_echo(stream, line) {
        panic!("{context}: {e}{}", server_log(server));
    }
}

/// Sends `line` and asserts that `stream` receives nothing (and is not closed) for [`SILENCE`].
fn send_and_expect_silence(server: &ServerProcess, stream: &mut TcpStream, line: &str, context: &str) {
    stream
        .write_all(format!("{line}\n").as_bytes())
        .expect("send the request");
    let deadline = Instant::now() + SILENCE;
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => panic!(
                "{context}: the server closed this connection instead of letting it wait{}",
                server_log(server)
            ),
            Ok(n) => panic!(
                "{context}: got {:?} within {} ms, but this client should still be waiting",
                text(&buf[..n]),
                SILENCE.as_millis()
            ),
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("{context}: the connection failed: {e}{}", server_log(server)),
        }
    }
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
}

/// Reads the rest of a request sent before: `line` and its newline, within `limit`.
fn expect_late_echo(
    server: &ServerProcess,
    stream: &mut TcpStream,
    line: &str,
    limit: Duration,
    context: &str,
) {
    stream.set_read_timeout(Some(limit)).expect("read timeout");
    let mut reply = vec![0u8; line.len() + 1];
    if let Err(e) = stream.read_exact(&mut reply) {
        panic!(
            "{context}: no echo of {line:?} within {} ms ({e}){}",
            limit.as_millis(),
            server_log(server)
        );
    }
    assert_eq!(text(&reply), format!("{line}\n"), "{context}");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
}

/// Closes `stream` abortively: SO_LINGER 0 makes the close send a reset (RST).
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(stream);
}

/// A log that keeps every event's line, for the tests that call the library in a thread.
fn memory_log() -> (lab::Log, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let log: lab::Log = Arc::new(move |event: &lab::Event| {
        if let Ok(mut lines) = sink.lock() {
            lines.push(event.to_string());
        }
    });
    (log, lines)
}

fn logged(lines: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    lines.lock().map(|l| l.clone()).unwrap_or_default()
}

fn config(max_clients: usize, max_connections: u64) -> lab::ServerConfig {
    lab::ServerConfig {
        max_clients,
        idle_timeout: Some(IO_TIMEOUT),
        message_timeout: None,
        max_connections: Some(max_connections),
    }
}

/// One client connected and answered, then idle; a second client must be answered within
/// [`PROMPT`] (fork, thread).
fn second_client_is_answered_promptly(model: &str) {
    let server = server(model, &[]);
    let mut first = connect(&server);
    echo(&server, &mut first, "first", "the first client");
    // The first client now stays connected and says nothing.
    let mut second = connect(&server);
    let started = Instant::now();
    echo(
        &server,
        &mut second,
        "second",
        &format!("--model {model}: a second client while the first is connected and idle"),
    );
    let took = started.elapsed();
    assert!(
        took < PROMPT,
        "--model {model}: the second client waited {took:?} for its echo while the first was idle; a \
         concurrent server answers at once (see Lab 03 § Three ways to serve many clients)"
    );
    echo(
        &server,
        &mut first,
        "first again",
        "the first client, still connected",
    );
}

/// With `--max-clients 2`, a third client waits in the backlog until one of the two leaves.
fn cap_holds_new_clients_in_the_backlog(model: &str) {
    let server = server(model, &["--max-clients", "2"]);
    let mut a = connect(&server);
    echo(&server, &mut a, "a", "client a (1 of 2 allowed)");
    let mut b = connect(&server);
    echo(&server, &mut b, "b", "client b (2 of 2 allowed)");
    let mut c = connect(&server);
    send_and_expect_silence(
        &server,
        &mut c,
        "c",
        &format!(
            "--model {model} --max-clients 2 with two clients connected: a third must wait in the \
             backlog (see Lab 03 § The backlog and the cap)"
        ),
    );
    server.expect_stderr("the cap", SETTLE);
    drop(a);
    expect_late_echo(
        &server,
        &mut c,
        "c",
        SETTLE,
        &format!("--model {model} --max-clients 2: client a left, so the waiting client c must be served"),
    );
    echo(&server, &mut b, "b again", "client b, still connected");
}

/// With `--max-clients 2`, clients one after the other are all served: a finished client frees
/// its place.
fn finished_clients_free_their_places(model: &str) {
    let server = server(model, &["--max-clients", "2"]);
    for i in 1..=6 {
        let mut client = connect(&server);
        if let Err(e) = try_echo(&mut client, &format!("client {i}")) {
            panic!(
                "--model {model} --max-clients 2: clients come one after the other, each leaving \
                 before the next; client {i}: {e}. A finished {} must free its place (see Lab 03 § {}){}",
                if model == "fork" { "child" } else { "thread" },
                if model == "fork" {
                    "Reaping and zombies"
                } else {
                    "Threads and their cost"
                },
                server_log(&server)
            );
        }
    }
}

/// A client that resets its connection in the middle of a line does not stop the server.
fn survives_a_client_reset(model: &str) {
    let server = server(model, &[]);
    let mut rude = connect(&server);
    let me = rude.local_addr().expect("local address").to_string();
    rude.write_all(b"half a li").expect("send half a line");
    server.expect_stderr(&format!("{me}: connected"), SETTLE);
    reset(rude);
    server.expect_stderr(&format!("{me}: connection closed after an error"), SETTLE);
    let mut next = connect(&server);
    echo(
        &server,
        &mut next,
        "after the reset",
        &format!("--model {model}: a new client after another client reset its connection"),
    );
}

/// Runs the binary's `bench --json` against a `--model model` server and checks the report.
fn bench_reports_no_errors(model: &str, connect_per_request: bool) {
    let server = server(model, &[]);
    let target = server.addr().to_string();
    let mut args = vec![
        "bench",
        "--server",
        &target,
        "--clients",
        "8",
        "--requests",
        "400",
        "--size",
        "48",
        "--json",
    ];
    if connect_per_request {
        args.push("--connect-per-request");
    }
    let out = common::testing::run_within(BIN, &args, Duration::from_secs(60));
    let stdout = text(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "`bench --json` printed no JSON ({e}): {stdout:?}; stderr {:?}",
            text(&out.stderr)
        )
    });
    let number = |key: &str| {
        report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no {key} in {report}"))
    };
    let latency = |key: &str| {
        report["latency_ms"][key]
            .as_f64()
            .unwrap_or_else(|| panic!("no latency_ms.{key} in {report}"))
    };
    assert_eq!(
        (number("completed"), number("errors")),
        (400.0, 0.0),
        "bench --clients 8 --requests 400 against --model {model}{}: every request must be answered \
         with its own line; the report was {report}{}",
        if connect_per_request {
            " (a connection per request)"
        } else {
            ""
        },
        server_log(&server)
    );
    assert!(
        out.status.success(),
        "bench without errors exits 0: {:?}",
        out.status
    );
    let rate = number("requests_per_s");
    assert!(rate > 0.0, "requests/s must be positive: {report}");
    let bytes = number("bytes_per_s");
    assert!(
        (bytes - rate * 48.0).abs() <= rate * 48.0 * 0.01 + 1.0,
        "bytes/s must be requests/s times 48 bytes: {report}"
    );
    let (p50, p90, p99, max) = (latency("p50"), latency("p90"), latency("p99"), latency("max"));
    assert!(
        0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max,
        "latencies must be positive and ordered p50 <= p90 <= p99 <= max: {report}"
    );
}

/// Runs a `--model model` server out of descriptors and back (Linux, with `prlimit(1)`): serves a
/// first client, lowers the server's soft descriptor limit (from outside) to the lowest number
/// it does not hold, so `accept` fails with `EMFILE`; a client waits meanwhile; once the limit
/// is restored, the waiting client and a new one must be served. `section` explains the step.
///
/// A blocking `accept` on Linux takes its descriptor number before it waits, so the call in
/// progress when the limit drops still succeeds: a client that connects and leaves at once
/// uses it up (iterative), and the `accept` after that fails.
#[cfg(target_os = "linux")]
fn backs_off_when_out_of_descriptors(model: &str, section: &str) {
    use common::descriptors;
    let mut server = server(model, &[]);
    let pid = server.id();
    let baseline = descriptors::open_descriptors(pid).map_or(usize::MAX, |fds| fds.len());
    let mut first = connect(&server);
    let me = first.local_addr().expect("local address").to_string();
    echo(
        &server,
        &mut first,
        "first",
        &format!("--model {model}: a first client"),
    );
    drop(first);
    server.expect_stderr(&format!("{me}: closed"), SETTLE);
    // The server's copy of that connection is closed a moment later (in the fork model, by
    // the parent right after fork): until then its number is not free for the next accept.
    let _ = descriptors::await_at_most(pid, baseline, SETTLE);
    if !descriptors::prlimit_available() {
        common::testing::notice("descriptor exhaustion: skipped, prlimit(1) is not installed");
        return;
    }
    let (Ok(free), Some(original)) = (descriptors::lowest_free(pid), descriptors::soft_limit(pid)) else {
        panic!("test set-up: cannot read /proc/{pid}/fd and /proc/{pid}/limits");
    };
    descriptors::set_soft_limit(pid, u64::from(free)).unwrap_or_else(|e| panic!("test set-up: {e}"));
    let lowered = Instant::now();
    // Connections may fail when the server has already exited: await_backoff then says so.
    drop(TcpStream::connect_timeout(&server.addr(), IO_TIMEOUT));
    let waiting = TcpStream::connect_timeout(&server.addr(), IO_TIMEOUT);
    if let Ok(mut stream) = waiting.as_ref() {
        common::testing::set_stream_timeouts(stream);
        let _ = stream.write_all(b"waiting\n");
    }
    let steps = format!(
        "--model {model}:\n\
         1. a first client was served and left\n\
         2. the server's descriptor limit was lowered to {free} (prlimit): its next accept fails \
         with EMFILE, too many open files\n\
         3. a client connected and left at once; another connected (it waits in the backlog) \
         and sent \"waiting\\n\""
    );
    if let Err(e) = descriptors::await_backoff(&mut server, 2, lowered, SETTLE) {
        panic!(
            "{steps}\nexpected: the server logs Event::AcceptBackoff (\"accept failed: ...; backing \
             off 100 ms\"), sleeps ACCEPT_BACKOFF and calls accept again, twice or more while the \
             limit lasts\ngot: {e}\n(see Lab 03 § {section})"
        );
    }
    descriptors::set_soft_limit(pid, original).unwrap_or_else(|e| panic!("test set-up: {e}"));
    let mut waiting = waiting.unwrap_or_else(|e| panic!("{steps}\ngot: the client could not connect: {e}"));
    expect_late_echo(
        &server,
        &mut waiting,
        "waiting",
        SETTLE,
        &format!(
            "{steps}\n4. the limit was restored to {original}\nexpected: the waiting client is \
             accepted and echoed (see Lab 03 § {section})"
        ),
    );
    drop(waiting);
    let mut next = connect(&server);
    echo(
        &server,
        &mut next,
        "and the next",
        &format!("--model {model}: a new client once descriptors are free again"),
    );
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "--model {model}: the server exited after the descriptor shortage (see Lab 03 § {section})"
    );
}

// ---------------------------------------------------------------------------------------------
// Step 1: the iterative server

#[test]
fn step1_iterative_echoes_clients_one_after_another_and_logs_them() {
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let (log, lines) = memory_log();
    let mut thread = ServerThread::spawn("the server thread (serve_iterative)", move || {
        lab::serve_iterative(&listener, &config(8, 2), &log)
    });
    let mut peers = Vec::new();
    for who in ["one", "two"] {
        let mut client = tcp_connect(addr);
        peers.push(client.local_addr().expect("local address").to_string());
        for line in [format!("{who}: hello"), format!("{who}: again")] {
            if let Err(e) = try_echo(&mut client, &line) {
                thread.check();
                panic!("serve_iterative: {e}");
            }
        }
    }
    let accepted = thread.join_within(SETTLE);
    assert_eq!(
        accepted.map_err(|e| e.to_string()),
        Ok(2),
        "with max_connections 2, serve_iterative returns 2 once both clients have been served"
    );
    let lines = logged(&lines);
    for peer in &peers {
        for needle in ["connected", "closed after echoing 2 lines"] {
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains(peer.as_str()) && l.contains(needle)),
                "no log line with {peer} and {needle:?}: log Accepted, then serve_one logs how it ended; \
                 the log was {lines:?}"
            );
        }
    }
}

#[test]
fn step1_server_binary_iterative_echoes() {
    let server = server("iterative", &[]);
    let mut client = connect(&server);
    echo(&server, &mut client, "hello, iterative", "--model iterative");
    echo(
        &server,
        &mut client,
        "a second line",
        "--model iterative, same connection",
    );
}

#[test]
fn step1_iterative_second_client_waits_until_the_first_leaves() {
    let server = server("iterative", &[]);
    let mut first = connect(&server);
    echo(&server, &mut first, "first", "the first client");
    let mut second = connect(&server);
    send_and_expect_silence(
        &server,
        &mut second,
        "second",
        "--model iterative: the first client is connected and idle, so the second must wait \
         (its connection is complete, but waits in the backlog; see Lab 03 § Iterative servers)",
    );
    drop(first);
    expect_late_echo(
        &server,
        &mut second,
        "second",
        SETTLE,
        "--model iterative: the first client left, so the second must now be served",
    );
}

#[test]
fn step1_iterative_survives_a_client_reset() {
    survives_a_client_reset("iterative");
}

#[test]
fn step1_bench_against_the_iterative_server_reports_no_errors() {
    bench_reports_no_errors("iterative", false);
}

#[cfg(target_os = "linux")]
#[test]
fn step1_iterative_backs_off_when_out_of_descriptors_and_serves_on() {
    backs_off_when_out_of_descriptors("iterative", "Step 1: The iterative server");
}

// ---------------------------------------------------------------------------------------------
// Step 2: a thread per connection

#[test]
fn step2_threads_serve_idle_clients_at_once_and_join_them() {
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let (log, lines) = memory_log();
    let mut thread = ServerThread::spawn("the server thread (serve_threads)", move || {
        lab::serve_threads(&listener, &config(8, 3), &log)
    });
    let mut clients: Vec<TcpStream> = (0..3).map(|_| tcp_connect(addr)).collect();
    // Served last-connected first: with one client at a time this would wait for the others.
    for (i, client) in clients.iter_mut().enumerate().rev() {
        let line = format!("client {i}");
        if let Err(e) = try_echo(client, &line) {
            thread.check();
            panic!(
                "three clients connected and idle; client {i} asked first: {e}. Each connection needs \
                 its own thread (see Lab 03 § Three ways to serve many clients)"
            );
        }
    }
    drop(clients);
    let accepted = thread.join_within(SETTLE);
    assert_eq!(
        accepted.map_err(|e| e.to_string()),
        Ok(3),
        "with max_connections 3, serve_threads returns 3 once all three threads have finished"
    );
    let lines = logged(&lines);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("closed after echoing 1 line"))
            .count(),
        3,
        "serve_threads must wait for (join) its threads before returning: every client's end is \
         logged before; the log was {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("served by a new thread (3 live)")),
        "the third Accepted event counts 3 live threads: {lines:?}"
    );
}

#[test]
fn step2_server_binary_thread_echoes() {
    let server = server("thread", &[]);
    let mut client = connect(&server);
    echo(&server, &mut client, "hello, thread", "--model thread");
    echo(
        &server,
        &mut client,
        "a second line",
        "--model thread, same connection",
    );
}

#[test]
fn step2_thread_answers_a_second_client_while_the_first_is_idle() {
    second_client_is_answered_promptly("thread");
}

/// The number of threads of process `pid`, from /proc/PID/status.
#[cfg(target_os = "linux")]
fn threads_of(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status (has the server exited?): {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Threads: line in /proc/{pid}/status"))
}

#[cfg(target_os = "linux")]
#[test]
fn step2_thread_count_returns_to_its_baseline_after_clients_leave() {
    let server = server("thread", &[]);
    // Make sure the server is serving (not still starting) before taking the baseline.
    let mut probe = connect(&server);
    echo(&server, &mut probe, "probe", "--model thread");
    drop(probe);
    let pid = server.id();
    let deadline = Instant::now() + SETTLE;
    let mut baseline = threads_of(pid);
    while baseline > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        baseline = threads_of(pid);
    }
    let mut clients: Vec<TcpStream> = (0..4).map(|_| connect(&server)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        echo(
            &server,
            client,
            &format!("client {i}"),
            "--model thread, four clients",
        );
    }
    let busy = threads_of(pid);
    assert!(
        busy >= baseline + 4,
        "four clients connected, but the server has {busy} threads (baseline {baseline}): one thread per \
         connection expected"
    );
    drop(clients);
    let deadline = Instant::now() + SETTLE;
    loop {
        let now = threads_of(pid);
        if now <= baseline {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the four clients left {} ms ago, but the server still has {now} threads (baseline \
             {baseline}): a connection's thread must end when its client does",
            SETTLE.as_millis()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn step2_thread_cap_holds_new_clients_in_the_backlog() {
    cap_holds_new_clients_in_the_backlog("thread");
}

#[test]
fn step2_thread_finished_clients_free_their_places() {
    finished_clients_free_their_places("thread");
}

#[test]
fn step2_thread_survives_a_client_reset() {
    survives_a_client_reset("thread");
}

#[test]
fn step2_bench_against_the_thread_server_reports_no_errors() {
    bench_reports_no_errors("thread", false);
    bench_reports_no_errors("thread", true);
}

/// The case: `ulimit -n 24` and 30 clients. Every live thread holds its client's
/// descriptor, so the thread server is the model that runs out.
#[cfg(unix)]
#[test]
fn step2_thread_backs_off_when_out_of_descriptors_and_serves_on() {
    const SECTION: &str = "see Lab 03 § Step 2: A thread per connection";
    let mut server =
        common::descriptors::start_with_limit(24, BIN, &["server", "--model", "thread", "--port", "0"]);
    let started = Instant::now();
    let mut held: Vec<TcpStream> = (0..30).map(|_| connect(&server)).collect();
    let steps = "--model thread under `ulimit -n 24`:\n\
                 1. 30 clients connected and stayed (about 20 descriptors are left for connections, \
                 so accept fails with EMFILE, too many open files, after about 20 of them)";
    if let Err(e) = common::descriptors::await_backoff(&mut server, 2, started, SETTLE) {
        panic!(
            "{steps}\nexpected: the server logs Event::AcceptBackoff (\"accept failed: ...; backing \
             off 100 ms\"), sleeps ACCEPT_BACKOFF and calls accept again, twice or more while \
             the clients stay\ngot: {e}\n({SECTION})"
        );
    }
    echo(
        &server,
        &mut held[0],
        "still served",
        &format!("{steps}\n2. the first client, accepted before the shortage, sent a line ({SECTION})"),
    );
    drop(held);
    let mut next = connect(&server);
    echo(
        &server,
        &mut next,
        "after the shortage",
        &format!(
            "{steps}\n2. all 30 left\n3. a new client connected: once descriptors are free again it \
             must be served ({SECTION})"
        ),
    );
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "--model thread: the server exited after the descriptor shortage ({SECTION})"
    );
}

#[test]
fn step2_a_thread_that_cannot_start_costs_only_its_connection() {
    const SECTION: &str = "see Lab 03 § Step 2: A thread per connection";
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let (log, lines) = memory_log();
    let refused = Arc::new(AtomicBool::new(false));
    let mut thread = ServerThread::spawn("the server thread (serve_threads_with)", move || {
        // The first thread cannot start, as when pthread_create fails with EAGAIN.
        let spawn = move |name: String, work: lab::Work| {
            if refused.swap(true, Ordering::SeqCst) {
                lab::spawn_thread(name, work)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "Resource temporarily unavailable (the test's spawn function fails like pthread_create with EAGAIN)",
                ))
            }
        };
        lab::serve_threads_with(&listener, &config(8, 2), &log, spawn)
    });
    let mut doomed = tcp_connect(addr);
    let me = doomed.local_addr().expect("local address").to_string();
    doomed.write_all(b"doomed\n").expect("send");
    let mut buf = [0u8; 64];
    let end = loop {
        match doomed.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => break other,
        }
    };
    thread.check();
    match end {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!(
            "1. serve_threads_with got a spawn function whose first call fails\n\
             2. a client connected and sent \"doomed\\n\"\n\
             expected: its connection closed (end of stream or a reset): no thread serves it, and \
             dropping the Work that owns the stream closes it\ngot: {other:?}\nthe log: {:?} ({SECTION})",
            logged(&lines)
        ),
    }
    let mut next = match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
        Ok(stream) => stream,
        Err(e) => panic!(
            "the first connection's thread could not start; then a new client could not even \
             connect ({e}): serve_threads_with has returned and closed the listener. A failed \
             spawn costs one connection, not the server ({SECTION}); the log: {:?}",
            logged(&lines)
        ),
    };
    common::testing::set_stream_timeouts(&next);
    if let Err(e) = try_echo(&mut next, "served") {
        thread.check();
        panic!(
            "the first connection's thread could not start; the next client must be served as \
             usual: {e}. A failed spawn costs one connection, not the server ({SECTION}); the \
             log: {:?}",
            logged(&lines)
        );
    }
    drop(next);
    let accepted = thread.join_within(SETTLE);
    assert_eq!(
        accepted.map_err(|e| e.to_string()),
        Ok(2),
        "with max_connections 2 serve_threads_with returns 2: the dropped connection was accepted \
         too, so it counts ({SECTION})"
    );
    let lines = logged(&lines);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&me) && l.contains("dropped") && l.contains("EAGAIN")),
        "log Event::Dropped with the client and the spawn error when a thread cannot start; the \
         log was {lines:?} ({SECTION})"
    );
}

// ---------------------------------------------------------------------------------------------
// Steps 3 to 5 (Unix): children, reaping, fork, signals

#[cfg(unix)]
mod unix {
    use super::*;
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use std::process::{Child, Command, Stdio};

    fn pid_of(child: &Child) -> Pid {
        Pid::from_raw(i32::try_from(child.id()).expect("a pid fits i32"))
    }

    fn spawn(program: &str, args: &[&str]) -> Child {
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("test set-up: cannot start {program}: {e}"))
    }

    /// A child process the test started (`sleep 30`, `sh -c "exit N"`), killed and reaped on
    /// drop if the code under test has not reaped it.
    struct Kid(Child);

    impl Kid {
        fn sleeper() -> Kid {
            Kid(spawn("sleep", &["30"]))
        }
        fn exiting(code: u8) -> Kid {
            Kid(spawn("sh", &["-c", &format!("exit {code}")]))
        }
        fn pid(&self) -> Pid {
            pid_of(&self.0)
        }
        fn id(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for Kid {
        fn drop(&mut self) {
            // Only while it is still unreaped: a reaped pid could already belong to another process.
            if process_state(self.0.id()).is_some_and(|s| s != 'Z') {
                let _ = self.0.kill();
            }
            if process_state(self.0.id()).is_some() {
                let _ = self.0.wait();
            }
        }
    }

    /// The state letter of process `pid` (`R`, `S`, `Z` for a zombie...), or `None` when there is
    /// no such process. Linux reads /proc; elsewhere `kill(pid, 0)` tells only "exists".
    fn process_state(pid: u32) -> Option<char> {
        #[cfg(target_os = "linux")]
        {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            stat.rsplit_once(')')?.1.trim_start().chars().next()
        }
        #[cfg(not(target_os = "linux"))]
        {
            kill(Pid::from_raw(pid as i32), None).ok().map(|()| '?')
        }
    }

    /// Waits until process `pid` has exited and is a zombie (not yet reaped).
    fn await_zombie(pid: u32) {
        #[cfg(target_os = "linux")]
        {
            let deadline = Instant::now() + SETTLE;
            while process_state(pid) != Some('Z') {
                assert!(
                    Instant::now() < deadline,
                    "test set-up: process {pid} did not exit"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        #[cfg(not(target_os = "linux"))]
        std::thread::sleep(Duration::from_millis(500));
    }

    // -----------------------------------------------------------------------------------------
    // Step 3: reaping

    #[test]
    fn step3_reaps_a_finished_child_and_keeps_a_running_one() {
        let finished = Kid::exiting(3);
        let running = Kid::sleeper();
        let (done_pid, running_pid) = (finished.pid(), running.pid());
        await_zombie(finished.id());
        let (log, lines) = memory_log();
        let (reaped, children) = within_limit("lab::reap_children", move || {
            let mut children = vec![done_pid, running_pid];
            let reaped = lab::reap_children(&mut children, &log).map_err(|e| e.to_string());
            (reaped, children)
        });
        assert_eq!(
            reaped,
            Ok(1),
            "one of the two children has exited: reap_children reaps it and returns 1; it must \
             not wait for the one still running (WNOHANG; see Lab 03 § Reaping and zombies)"
        );
        assert_eq!(
            children,
            vec![running_pid],
            "the reaped child leaves `children`; the running one stays"
        );
        #[cfg(target_os = "linux")]
        assert_eq!(
            process_state(finished.id()),
            None,
            "the finished child is still in the process table (a zombie): its status was not collected"
        );
        let lines = logged(&lines);
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("child {done_pid} reaped: exit status 3"))),
            "log Event::Reaped with the child's exit status (describe(&status)); the log was {lines:?}"
        );
    }

    fn within_limit<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        common::testing::within(SETTLE, what, f)
    }

    #[test]
    fn step3_a_child_killed_by_a_signal_is_reaped_too() {
        let mut victim = Kid::sleeper();
        let pid = victim.pid();
        victim.0.kill().expect("kill the sleep");
        await_zombie(victim.id());
        let (log, lines) = memory_log();
        let (reaped, children) = within_limit("lab::reap_children", move || {
            let mut children = vec![pid];
            let reaped = lab::reap_children(&mut children, &log).map_err(|e| e.to_string());
            (reaped, children)
        });
        assert_eq!(reaped, Ok(1), "a child killed by SIGKILL has ended too: reap it");
        assert!(children.is_empty(), "the reaped child must leave `children`");
        let lines = logged(&lines);
        assert!(
            lines.iter().any(|l| l.contains("killed by SIGKILL")),
            "the log must say how the child ended: {lines:?}"
        );
    }

    #[test]
    fn step3_running_children_are_left_alone_and_strangers_forgotten() {
        let a = Kid::sleeper();
        let b = Kid::sleeper();
        let (pa, pb) = (a.pid(), b.pid());
        // Process 1 is never our child: waitpid fails with ECHILD.
        let stranger = Pid::from_raw(1);
        let (log, lines) = memory_log();
        let (reaped, children) = within_limit(
            "lab::reap_children with two running children (waiting for them instead of WNOHANG?)",
            move || {
                let mut children = vec![pa, stranger, pb];
                let reaped = lab::reap_children(&mut children, &log).map_err(|e| e.to_string());
                (reaped, children)
            },
        );
        assert_eq!(
            reaped,
            Ok(0),
            "two children still running and one pid that is not our child (ECHILD): nothing is reaped"
        );
        let mut left = children;
        left.sort();
        let mut expected = vec![pa, pb];
        expected.sort();
        assert_eq!(
            left, expected,
            "the running children stay in `children`; a pid that is not our child (ECHILD) is removed"
        );
        assert!(
            logged(&lines).is_empty(),
            "nothing was reaped, so nothing is logged"
        );
    }

    // -----------------------------------------------------------------------------------------
    // Step 4: a process per connection

    /// The children of process `pid` as (pid, state), from /proc.
    #[cfg(target_os = "linux")]
    fn children_of(pid: u32) -> Vec<(u32, char)> {
        let mut children = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return children;
        };
        for entry in entries.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: comm may hold spaces and parentheses.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
            if fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
                children.push((child, state));
            }
        }
        children
    }

    /// The pids of the children named in the server's `served by child PID` log lines.
    fn logged_children(server: &ServerProcess, count: usize) -> Vec<u32> {
        server
            .expect_stderr_lines("served by child", count, SETTLE)
            .iter()
            .filter_map(|l| {
                let rest = l.split("served by child ").nth(1)?;
                rest.split_whitespace().next()?.parse().ok()
            })
            .collect()
    }

    #[test]
    fn step4_server_binary_fork_echoes() {
        let server = server("fork", &[]);
        let mut client = connect(&server);
        echo(&server, &mut client, "hello, fork", "--model fork");
        echo(
            &server,
            &mut client,
            "a second line",
            "--model fork, same connection",
        );
    }

    #[test]
    fn step4_fork_answers_a_second_client_while_the_first_is_idle() {
        second_client_is_answered_promptly("fork");
    }

    #[test]
    fn step4_fork_each_client_is_served_by_its_own_child() {
        let server = server("fork", &[]);
        let mut a = connect(&server);
        echo(&server, &mut a, "a", "--model fork, client a");
        let mut b = connect(&server);
        echo(&server, &mut b, "b", "--model fork, client b");
        let pids = logged_children(&server, 2);
        assert_eq!(pids.len(), 2, "two `served by child PID` log lines expected");
        assert_ne!(pids[0], pids[1], "two clients, two children: {pids:?}");
        for pid in &pids {
            assert_ne!(*pid, server.id(), "the server itself is not a child");
        }
        #[cfg(target_os = "linux")]
        {
            let children: Vec<u32> = children_of(server.id()).iter().map(|c| c.0).collect();
            for pid in &pids {
                assert!(
                    children.contains(pid),
                    "process {pid} is not a child of the server {}: its children are {children:?}",
                    server.id()
                );
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn step4_fork_leaves_no_zombies_after_50_short_connections() {
        let server = server("fork", &[]);
        for i in 0..50 {
            let mut client = connect(&server);
            echo(
                &server,
                &mut client,
                &format!("short connection {i}"),
                "--model fork",
            );
        }
        let deadline = Instant::now() + SETTLE;
        loop {
            let children = children_of(server.id());
            if children.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                let zombies = children.iter().filter(|c| c.1 == 'Z').count();
                let alive = children.len() - zombies;
                panic!(
                    "50 clients have come and gone, and {} ms later the server still has {zombies} \
                     zombie children (exited, never reaped: call reap_children; see Lab 03 § Reaping \
                     and zombies) and {alive} live ones (a child must exit after its client, never \
                     return into the accept loop; see Lab 03 § What fork copies and what it shares): \
                     {children:?}",
                    SETTLE.as_millis()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn step4_fork_children_do_not_hold_the_listening_socket() {
        let mut server = server("fork", &[]);
        let addr = server.addr();
        let mut client = connect(&server);
        echo(&server, &mut client, "before", "--model fork");
        logged_children(&server, 1);
        // The parent dies abruptly (it can do nothing about it): its child serves on alone.
        kill(Pid::from_raw(server.id() as i32), Signal::SIGKILL).expect("SIGKILL the server");
        assert!(server.wait_exit(SETTLE).is_some(), "the server survived SIGKILL?");
        echo(
            &server,
            &mut client,
            "after the parent died",
            "the child serves its client on its own, even after the parent has gone",
        );
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Ok(_) => panic!(
                "the server process is dead, yet a new connection to {addr} was accepted: a child \
                 still holds the listening socket. The child must drop it right after fork (see Lab \
                 03 § What fork copies and what it shares)"
            ),
            Err(e) => panic!("a new connection to {addr} must be refused, but: {e}"),
        }
    }

    #[test]
    fn step4_fork_parent_does_not_hold_the_connection() {
        let server = server("fork", &[]);
        let mut client = connect(&server);
        echo(&server, &mut client, "last line", "--model fork");
        let me = client.local_addr().expect("local address").to_string();
        client.shutdown(std::net::Shutdown::Write).expect("half-close");
        // The child reads our EOF, closes its socket and exits: the connection must end now.
        server.expect_stderr(&format!("{me}: closed after echoing 1 line"), SETTLE);
        client
            .set_read_timeout(Some(Duration::from_secs(3)))
            .expect("read timeout");
        let mut buf = [0u8; 64];
        loop {
            match client.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => panic!("unexpected bytes after the echo: {:?}", text(&buf[..n])),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!(
                    "the child closed the connection and exited, but the client saw no end of stream \
                     within 3 s ({e}): the parent still holds its copy of the connected socket. The \
                     parent must drop it right after fork (see Lab 03 § What fork copies and what it \
                     shares)"
                ),
            }
        }
    }

    #[test]
    fn step4_fork_cap_holds_new_clients_in_the_backlog() {
        cap_holds_new_clients_in_the_backlog("fork");
    }

    #[test]
    fn step4_fork_finished_children_free_their_places() {
        finished_clients_free_their_places("fork");
    }

    #[test]
    fn step4_fork_survives_a_client_reset() {
        survives_a_client_reset("fork");
    }

    #[test]
    fn step4_bench_against_the_fork_server_reports_no_errors() {
        bench_reports_no_errors("fork", true);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn step4_fork_backs_off_when_out_of_descriptors_and_serves_on() {
        backs_off_when_out_of_descriptors("fork", "Step 4: A process per connection");
    }

    /// With one descriptor left, `accept` succeeds but `fork_process` cannot read
    /// /proc/self/task (`EMFILE`): that connection is lost, not the server.
    #[cfg(target_os = "linux")]
    #[test]
    fn step4_fork_a_failed_fork_costs_only_its_connection() {
        use common::descriptors;
        const SECTION: &str = "see Lab 03 § Step 4: A process per connection";
        let mut server = server("fork", &[]);
        let pid = server.id();
        let baseline = descriptors::open_descriptors(pid).map_or(usize::MAX, |fds| fds.len());
        let mut first = connect(&server);
        echo(&server, &mut first, "first", "--model fork: a first client");
        drop(first);
        logged_children(&server, 1);
        let _ = descriptors::await_at_most(pid, baseline, SETTLE);
        if !descriptors::prlimit_available() {
            common::testing::notice("failed fork: skipped, prlimit(1) is not installed");
            return;
        }
        let (Ok(free), Some(original)) = (descriptors::lowest_free(pid), descriptors::soft_limit(pid)) else {
            panic!("test set-up: cannot read /proc/{pid}/fd and /proc/{pid}/limits");
        };
        let limit = u64::from(free) + 1;
        descriptors::set_soft_limit(pid, limit).unwrap_or_else(|e| panic!("test set-up: {e}"));
        let mut doomed = connect(&server);
        let me = doomed.local_addr().expect("local address").to_string();
        doomed.write_all(b"doomed\n").expect("send");
        let steps = format!(
            "--model fork:\n\
             1. a first client was served and left\n\
             2. the server's descriptor limit was lowered to {limit} (prlimit): accept gets the \
             last descriptor, and fork_process, which must read /proc/self/task, fails with EMFILE\n\
             3. a client connected and sent \"doomed\\n\""
        );
        let mut buf = [0u8; 64];
        let end = loop {
            match doomed.read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        let needle = format!("{me}: connection dropped");
        let deadline = Instant::now() + SETTLE;
        let dropped = loop {
            if let Some(line) = server.stderr_lines().into_iter().find(|l| l.contains(&needle)) {
                break line;
            }
            if let Some(status) = server.wait_exit(Duration::ZERO) {
                panic!(
                    "{steps}\nexpected: the server logs Event::Dropped, drops that connection, backs \
                     off and goes on\ngot: it exited ({status}){}\n({SECTION})",
                    server_log(&server)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{steps}\nexpected: a log line containing {needle:?} (Event::Dropped)\ngot none within \
                 {} ms{}\n({SECTION})",
                SETTLE.as_millis(),
                server_log(&server)
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            matches!(&end, Ok(0))
                || end
                    .as_ref()
                    .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionReset),
            "{steps}\nexpected: that connection is closed (no child serves it)\ngot: {end:?}{}\n({SECTION})",
            server_log(&server)
        );
        assert!(
            dropped.contains("Too many open files"),
            "the log line names the error: {dropped:?}"
        );
        descriptors::set_soft_limit(pid, original).unwrap_or_else(|e| panic!("test set-up: {e}"));
        let mut next = connect(&server);
        echo(
            &server,
            &mut next,
            "and the next",
            &format!("{steps}\n4. the limit was restored; a new client must be served ({SECTION})"),
        );
    }

    // -----------------------------------------------------------------------------------------
    // Step 5: stopping the children

    #[test]
    fn step5_stop_children_signals_and_reaps_every_child() {
        let a = Kid::sleeper();
        let b = Kid::sleeper();
        let (pa, pb) = (a.pid(), b.pid());
        let (log, lines) = memory_log();
        let (result, children) = within_limit("lab::stop_children", move || {
            let mut children = vec![pa, pb];
            let result = lab::stop_children(&mut children, Signal::SIGTERM, &log).map_err(|e| e.to_string());
            (result, children)
        });
        assert_eq!(result, Ok(()), "stop_children on two running children");
        assert!(
            children.is_empty(),
            "every child is handled: `children` must end empty"
        );
        for pid in [pa, pb] {
            #[cfg(target_os = "linux")]
            assert_eq!(
                process_state(pid.as_raw().unsigned_abs()),
                None,
                "child {pid} is still in the process table: stop_children must wait for (reap) each child"
            );
        }
        let lines = logged(&lines);
        for pid in [pa, pb] {
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains(&format!("child {pid} reaped: killed by SIGTERM"))),
                "each child is sent the signal and reaped, with a log line; the log was {lines:?}"
            );
        }
    }

    #[test]
    fn step5_stop_children_reaps_a_child_that_already_exited() {
        let done = Kid::exiting(0);
        let pid = done.pid();
        await_zombie(done.id());
        let (log, lines) = memory_log();
        let (result, children) = within_limit("lab::stop_children", move || {
            let mut children = vec![pid];
            let result = lab::stop_children(&mut children, Signal::SIGTERM, &log).map_err(|e| e.to_string());
            (result, children)
        });
        assert_eq!(
            result,
            Ok(()),
            "a child that has exited but is not yet reaped can still be signalled and waited for"
        );
        assert!(children.is_empty());
        let lines = logged(&lines);
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("child {pid} reaped: exit status 0"))),
            "the log was {lines:?}"
        );
    }

    /// Sends `signal` to a fork server with two idle clients: server and children must stop.
    fn signal_stops_server_and_children(signal: Signal) {
        let mut server = server("fork", &[]);
        let mut clients: Vec<TcpStream> = (0..2).map(|_| connect(&server)).collect();
        for (i, client) in clients.iter_mut().enumerate() {
            echo(&server, client, &format!("client {i}"), "--model fork");
        }
        let children = logged_children(&server, 2);
        kill(Pid::from_raw(server.id() as i32), signal).expect("signal the server");
        let status = server.wait_exit(SETTLE);
        assert!(
            status.is_some(),
            "{signal} was sent to the fork server {} ms ago and it is still running",
            SETTLE.as_millis()
        );
        for (i, client) in clients.iter_mut().enumerate() {
            client
                .set_read_timeout(Some(Duration::from_secs(3)))
                .expect("read timeout");
            let mut buf = [0u8; 64];
            match client.read(&mut buf) {
                Ok(0) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                Ok(n) => panic!("client {i}: unexpected bytes {:?}", text(&buf[..n])),
                Err(e) => panic!(
                    "{signal} stopped the server, but client {i}'s connection is still open ({e}): its \
                     child {children:?} lives on. The server must stop its children (see Lab 03 § \
                     Signals and stopping)"
                ),
            }
        }
        #[cfg(target_os = "linux")]
        for pid in &children {
            let state = process_state(*pid);
            assert!(
                state.is_none() || state == Some('Z'),
                "child {pid} is still running after {signal} (state {state:?})"
            );
        }
        let lines = server.stderr_lines();
        for pid in &children {
            assert!(
                lines.iter().any(|l| l.contains(&format!("child {pid} reaped"))),
                "the server must reap child {pid} before it exits; its log was {lines:?}"
            );
        }
    }

    #[test]
    fn step5_sigterm_stops_the_fork_server_and_its_children() {
        signal_stops_server_and_children(Signal::SIGTERM);
    }

    #[test]
    fn step5_sigint_stops_the_fork_server_and_its_children() {
        signal_stops_server_and_children(Signal::SIGINT);
    }
}

// ---------------------------------------------------------------------------------------------
// Step 6: a deadline for each line

/// The section that explains why a per-read timeout does not bound a slow client.
const SLOW_SECTION: &str = "see Lab 03 § Slow clients and the cap";

/// The idle timeout of the step 6 tests: each single read or write may wait this long.
const IDLE_6: Duration = Duration::from_millis(1000);
/// The message timeout of the step 6 tests: each whole line and its echo may take this long.
const MESSAGE_6: Duration = Duration::from_millis(600);
/// How long after the message timeout the server may take to close (a busy machine).
const CUT_SLACK: Duration = Duration::from_millis(1400);

/// A configuration for one connection with the step 6 timeouts.
fn slow_config() -> lab::ServerConfig {
    lab::ServerConfig {
        max_clients: 1,
        idle_timeout: Some(IDLE_6),
        message_timeout: Some(MESSAGE_6),
        max_connections: Some(1),
    }
}

/// The binary's server in `model` with the step 6 timeouts and `extra` arguments.
fn slow_server(model: &str, extra: &[&str]) -> ServerProcess {
    let (idle, message) = (IDLE_6.as_millis().to_string(), MESSAGE_6.as_millis().to_string());
    let mut args = vec![
        "--idle-timeout",
        idle.as_str(),
        "--message-timeout",
        message.as_str(),
    ];
    args.extend_from_slice(extra);
    server(model, &args)
}

/// The lines a [`memory_log`] keeps.
type LogLines = Arc<Mutex<Vec<String>>>;

/// A thread that accepts one connection on `listener` and serves it with `lab::serve_one`
/// (the step 6 timeouts, the log in memory); its result is what `serve_one` returned.
fn serve_one_thread(listener: TcpListener) -> (ServerThread<Result<bool, String>>, LogLines) {
    let (log, lines) = memory_log();
    let thread = ServerThread::spawn("the server thread (serve_one)", move || {
        let (stream, peer) = listener.accept().map_err(|e| format!("accept failed: {e}"))?;
        Ok(lab::serve_one(stream, peer, &slow_config(), &log))
    });
    (thread, lines)
}

/// Sends `a`, then one more `a` every 100 ms, never a newline, until the peer closes the
/// connection or `limit` passes. The pacing is a 100 ms read timeout, which also notices the
/// close (end of stream, a reset, or a failed write). Returns when the close was seen (`None`:
/// never) and how many bytes were sent.
fn trickle(stream: &mut TcpStream, limit: Duration) -> (Option<Duration>, usize) {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let mut sent = 0;
    let mut buf = [0u8; 64];
    while started.elapsed() < limit {
        if stream.write_all(b"a").is_err() {
            return (Some(started.elapsed()), sent);
        }
        sent += 1;
        match stream.read(&mut buf) {
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            // End of stream, a reset, or (unexpectedly) bytes: the server is done with the line.
            _ => return (Some(started.elapsed()), sent),
        }
    }
    (None, sent)
}

/// What the server kept a slow client for, in the suite's words.
fn kept_too_long(what: &str, held: Duration) -> String {
    format!(
        "the server kept a {what} for {} ms although the message timeout was {} ms: the idle timeout \
         ({} ms) bounds one read or write, not a whole line; give each line a deadline and bound every \
         read and write by the time left ({SLOW_SECTION})",
        held.as_millis(),
        MESSAGE_6.as_millis(),
        IDLE_6.as_millis()
    )
}

#[test]
fn step6_a_trickled_line_is_cut_off_by_the_message_timeout() {
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let (mut thread, lines) = serve_one_thread(listener);
    let mut client = tcp_connect(addr);
    let me = client.local_addr().expect("local address").to_string();
    let limit = MESSAGE_6 + CUT_SLACK;
    let (closed, sent) = trickle(&mut client, limit);
    thread.check();
    let steps = format!(
        "serve_one with idle_timeout {} ms and message_timeout {} ms:\n\
         1. a client connected and sent \"a\", then one more \"a\" every 100 ms, never a newline \
         ({sent} bytes sent)",
        IDLE_6.as_millis(),
        MESSAGE_6.as_millis()
    );
    let Some(closed) = closed else {
        panic!(
            "{steps}\nexpected: the connection closed about {} ms after it started\ngot: still open \
             after {} ms; {}",
            MESSAGE_6.as_millis(),
            limit.as_millis(),
            kept_too_long("trickling client", limit)
        );
    };
    assert!(
        closed >= MESSAGE_6.saturating_sub(Duration::from_millis(150)),
        "{steps}\nexpected: the connection closed once the line had taken {} ms\ngot: closed after {} \
         ms, before the message timeout ({SLOW_SECTION})",
        MESSAGE_6.as_millis(),
        closed.as_millis()
    );
    let result = thread.join_within(IO_TIMEOUT);
    let log = logged(&lines);
    let needle = format!(
        "{me}: a message took longer than the message timeout ({} ms)",
        MESSAGE_6.as_millis()
    );
    assert!(
        result == Ok(false) && log.iter().any(|l| l.contains(&needle)),
        "{steps}\n2. the connection closed after {} ms\nexpected: serve_one returns false and logs \
         {needle:?} (handle_connection fails with message_timed_out({} ms), kind TimedOut, which \
         Event::Failed tells apart from an idle timeout)\ngot: serve_one returned {result:?}, the log \
         was {log:?} ({SLOW_SECTION})",
        closed.as_millis(),
        MESSAGE_6.as_millis()
    );
}

#[test]
fn step6_a_client_that_drains_its_echo_slowly_is_cut_off_by_the_message_timeout() {
    // Lines of 60 000 bytes, sent without pause by a writer thread, and their echoes read 8 KiB
    // per 100 ms: once the socket buffers are full, each echo takes the server over 700 ms to
    // write, although each write makes some progress well within the idle timeout.
    const LINE: usize = 60_000;
    const PIECE: usize = 8 * 1024;
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let (mut thread, lines) = serve_one_thread(listener);
    let mut client = tcp_connect(addr);
    let me = client.local_addr().expect("local address").to_string();
    let mut writer_end = client.try_clone().expect("clone the client's socket");
    let writer = std::thread::spawn(move || {
        let mut line = vec![b'd'; LINE];
        line.push(b'\n');
        let mut written = 0usize;
        // Ends when the connection fails: closed by the server, or shut down by the test.
        while writer_end.write_all(&line).is_ok() {
            written += line.len();
        }
        written
    });
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let started = Instant::now();
    let limit = Duration::from_millis(3000);
    let mut buf = vec![0u8; PIECE];
    let mut drained = 0usize;
    let mut closed = None;
    while started.elapsed() < limit && logged(&lines).is_empty() {
        let turn = Instant::now();
        match client.read(&mut buf) {
            Ok(0) => {
                closed = Some(started.elapsed());
                break;
            }
            Ok(n) => drained += n,
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                closed = Some(started.elapsed());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100).saturating_sub(turn.elapsed()));
    }
    let held = started.elapsed();
    // Stop the writer (a blocked write fails at once) before judging.
    let _ = client.shutdown(std::net::Shutdown::Both);
    let written = writer.join().unwrap_or(0);
    thread.check();
    let steps = format!(
        "serve_one with idle_timeout {} ms and message_timeout {} ms:\n\
         1. a client sent {LINE}-byte lines without pause ({written} bytes written) and read the echoes \
         {PIECE} bytes per 100 ms ({drained} bytes read in {} ms)",
        IDLE_6.as_millis(),
        MESSAGE_6.as_millis(),
        held.as_millis()
    );
    let log = logged(&lines);
    if log.is_empty() && closed.is_none() {
        panic!(
            "{steps}\nexpected: the connection cut off once one line and its echo had taken {} ms\ngot: \
             still served after {} ms; {}",
            MESSAGE_6.as_millis(),
            limit.as_millis(),
            kept_too_long("slowly draining client", held)
        );
    }
    let result = thread.join_within(IO_TIMEOUT);
    let log = logged(&lines);
    let needle = format!(
        "{me}: a message took longer than the message timeout ({} ms)",
        MESSAGE_6.as_millis()
    );
    assert!(
        result == Ok(false) && log.iter().any(|l| l.contains(&needle)),
        "{steps}\nexpected: serve_one returns false and logs {needle:?}: the line's deadline bounds the \
         write of its echo too, so a slow reader is cut off at the message timeout\ngot: serve_one \
         returned {result:?}, the log was {log:?}. A write that waits for the idle timeout only \
         ends the connection if the client stops reading altogether ({SLOW_SECTION})"
    );
}

/// A `model` server (with `extra` arguments) serving a client that trickles a line: a second
/// client must be served once the trickler's line has run out of time.
fn next_client_is_served_while_one_trickles(model: &str, extra: &[&str]) {
    let server = slow_server(model, extra);
    let mut trickler = connect(&server);
    let me = trickler.local_addr().expect("local address").to_string();
    server.expect_stderr(&format!("{me}: connected"), SETTLE);
    let trickling = ServerThread::spawn("the trickling client", move || {
        trickle(&mut trickler, Duration::from_secs(4))
    });
    let started = Instant::now();
    let mut next = connect(&server);
    let wait = MESSAGE_6 + CUT_SLACK + Duration::from_millis(1000);
    next.set_read_timeout(Some(wait)).expect("read timeout");
    next.write_all(b"my turn\n").expect("send");
    let mut reply = [0u8; 8];
    let got = next.read_exact(&mut reply);
    let options = format!(
        "server --model {model} --idle-timeout {} --message-timeout {}{}{}",
        IDLE_6.as_millis(),
        MESSAGE_6.as_millis(),
        if extra.is_empty() { "" } else { " " },
        extra.join(" ")
    );
    let steps = format!(
        "{options}:\n\
         1. a first client connected and trickled a line: \"a\" every 100 ms, never a newline\n\
         2. a second client connected (it waits in the backlog) and sent \"my turn\\n\""
    );
    if got.is_err() || &reply != b"my turn\n" {
        panic!(
            "{steps}\nexpected: the echo \"my turn\\n\" once the first client's line has run out of \
             time\ngot: {}; {}{}",
            match &got {
                Err(e) if is_timeout(e) => format!("no echo within {} ms", wait.as_millis()),
                Err(e) => format!("no echo: {e}"),
                Ok(()) => format!("{:?}", text(&reply)),
            },
            kept_too_long("trickling client", started.elapsed()),
            server_log(&server)
        );
    }
    let (closed, _) = trickling.join_within(Duration::from_secs(6));
    assert!(
        closed.is_some(),
        "{steps}\n3. the second client was served\nexpected: the trickler's connection closed\ngot: it \
         stayed open ({SLOW_SECTION}){}",
        server_log(&server)
    );
    let needle = format!(
        "{me}: a message took longer than the message timeout ({} ms)",
        MESSAGE_6.as_millis()
    );
    if !server.stderr_lines().iter().any(|l| l.contains(&needle)) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let lines = server.stderr_lines();
    assert!(
        lines.iter().any(|l| l.contains(&needle)),
        "{steps}\nexpected: the trickler's end logged as {needle:?} (Event::Failed with the error of \
         message_timed_out), not as an idle timeout ({SLOW_SECTION}){}",
        server_log(&server)
    );
}

#[test]
fn step6_iterative_serves_the_next_client_while_one_trickles() {
    next_client_is_served_while_one_trickles("iterative", &[]);
}

#[test]
fn step6_thread_a_trickling_client_frees_its_place_at_the_message_timeout() {
    next_client_is_served_while_one_trickles("thread", &["--max-clients", "1"]);
}

#[cfg(unix)]
#[test]
fn step6_fork_a_trickling_client_frees_its_place_at_the_message_timeout() {
    next_client_is_served_while_one_trickles("fork", &["--max-clients", "1"]);
}
