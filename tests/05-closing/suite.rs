//! Lab 05 grading suite: closing semantics.
//!
//! Shared by `lab05-closing` (the student's work) and `solution05-closing` (the reference): each
//! package's `tests/grade.rs` defines `lab` (its library) and `BIN` (its binary) and includes
//! this file. Tests are named `stepN_...` after the step of the book chapter they check, so
//! `cargo test -p lab05-closing step2_` runs the checks of step 2.
//!
//! Every test stays on loopback with ephemeral ports (the TIME_WAIT scenario too), sets timeouts
//! on every socket, runs code that might block inside `within` or a `ServerThread`, and kills and
//! reaps every process it starts. The observations asserted are Linux's; where the kernel may
//! report a closed connection in more than one correct way (a write after a reset:
//! `ConnectionReset` or `BrokenPipe`), every correct answer is accepted.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::testing::{
    IO_TIMEOUT, ServerProcess, ServerThread, is_timeout, notice, run_within, set_stream_timeouts,
    tcp_connect, tcp_listener, tcp_pair, within,
};

use crate::{BIN, lab};
use lab::Outcome;

/// The longest a single library call may take before the test calls it hung.
const CALL_LIMIT: Duration = Duration::from_secs(10);
/// How long one scenario may run.
const EXPERIMENT_LIMIT: Duration = Duration::from_secs(30);
/// How long a test lets a client or experiment binary run before killing it.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// Extra time allowed over a computed timeout budget, for slow, busy machines.
const SLACK: Duration = Duration::from_millis(2000);
/// The size of the multi-MiB transfers: 8 MiB.
const BIG: usize = 8 * 1024 * 1024;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Bytes 0, 1, 2 ... 250, 0, 1 ... : a pattern in which a lost or repeated piece shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// FNV-1a 64, written here again so the suite does not trust the code it checks.
fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The reply line a server owes for `data`.
fn reply_line(data: &[u8]) -> String {
    format!("received {} bytes, fnv1a64 {:016x}\n", data.len(), fnv1a64(data))
}

/// Where two byte strings first differ, for failure messages about long data.
fn first_difference(got: &[u8], expected: &[u8]) -> String {
    match got.iter().zip(expected).position(|(a, b)| a != b) {
        Some(i) => format!("first difference at byte {i}"),
        None => format!("{} bytes expected, {} received", expected.len(), got.len()),
    }
}

/// Closes `stream` abortively, the test's own way: SO_LINGER 0 makes the close send a RST.
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(stream);
}

fn is_reset(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
    )
}

/// Reads `stream` (5 s timeout) until it ends; returns the bytes and how it ended.
fn read_until_closed(stream: &TcpStream) -> (Vec<u8>, io::Result<()>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match (&*stream).read(&mut buf) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (got, Err(e)),
        }
    }
}

/// A file of `data` in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, data: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("lab05-{}-{name}", std::process::id()));
        std::fs::write(&path, data).expect("test set-up: write a temporary file");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the scenario `name` through the library, within [`EXPERIMENT_LIMIT`].
fn experiment(name: &'static str) -> lab::experiments::Report {
    let context = lab::experiments::Context { exe: BIN.into() };
    within(EXPERIMENT_LIMIT, &format!("experiment {name}"), move || {
        lab::experiments::find(name).and_then(|s| s.run(&context))
    })
    .unwrap_or_else(|e| panic!("experiment {name} could not run: {e}"))
}

fn config() -> lab::ServerConfig {
    lab::ServerConfig {
        idle_timeout: Some(IO_TIMEOUT),
        message_timeout: Some(CALL_LIMIT),
        drain: IO_TIMEOUT,
        max_bytes: lab::DEFAULT_MAX_BYTES,
        max_connections: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Step 1: classify

#[test]
fn step1_data_and_end_of_stream() {
    assert_eq!(lab::classify(&Ok(5)), Outcome::Data(5), "classify(Ok(5))");
    assert_eq!(
        lab::classify(&Ok(0)),
        Outcome::EndOfStream,
        "a read that returns Ok(0) is the end of the stream: the peer has finished sending \
         (see Lab 05 § End of stream)"
    );
    assert_eq!(
        lab::classify(&Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short"))),
        Outcome::EndOfStream,
        "UnexpectedEof is how read_exact reports the end of the stream"
    );
}

#[test]
fn step1_classify_maps_every_error_kind_used() {
    use io::ErrorKind as K;
    let cases = [
        (K::ConnectionReset, Outcome::Reset),
        (K::ConnectionAborted, Outcome::Reset),
        (K::BrokenPipe, Outcome::BrokenPipe),
        (K::WouldBlock, Outcome::TimedOut),
        (K::TimedOut, Outcome::TimedOut),
        (K::UnexpectedEof, Outcome::EndOfStream),
        (K::NotConnected, Outcome::Other(K::NotConnected)),
        (K::AddrInUse, Outcome::Other(K::AddrInUse)),
        (K::ConnectionRefused, Outcome::Other(K::ConnectionRefused)),
        (K::Interrupted, Outcome::Other(K::Interrupted)),
        (K::InvalidData, Outcome::Other(K::InvalidData)),
    ];
    for (kind, expected) in cases {
        let got = lab::classify(&Err(io::Error::new(kind, "made by the test")));
        assert_eq!(
            got, expected,
            "classify(Err({kind:?})): a reset is not the end of the stream, and a timeout is \
             not a failure of the connection (see Lab 05 § FIN and RST)"
        );
    }
}

#[test]
fn step1_classifies_what_the_kernel_reports() {
    // A read timeout on an idle connection.
    let (client, server) = tcp_pair();
    client
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let idle = (&client).read(&mut [0u8; 8]);
    assert_eq!(
        lab::classify(&idle),
        Outcome::TimedOut,
        "a read timeout: {idle:?}"
    );
    // A real RST, then a real EPIPE.
    set_stream_timeouts(&client);
    reset(server);
    let read = (&client).read(&mut [0u8; 8]);
    assert_eq!(
        lab::classify(&read),
        Outcome::Reset,
        "the peer closed with SO_LINGER 0 and the read returned {read:?}"
    );
    let write = (&client).write(b"anyone?");
    assert!(
        matches!(lab::classify(&write), Outcome::BrokenPipe | Outcome::Reset),
        "a write after the reset returned {write:?}, classified {:?}",
        lab::classify(&write)
    );
}

#[test]
fn step1_experiment_read_after_close() {
    let report = experiment("read-after-close");
    assert_eq!(
        report.outcomes("client", "read"),
        [
            Outcome::Data(3),
            Outcome::EndOfStream,
            Outcome::EndOfStream,
            Outcome::EndOfStream
        ],
        "the 3 bytes, then end of stream on every later read (read, read again, read_exact):\n{report}"
    );
}

#[test]
fn step1_experiment_write_after_close() {
    let report = experiment("write-after-close");
    let writes = report.outcomes("client", "write");
    assert_eq!(
        writes.first(),
        Some(&Outcome::Data(5)),
        "the first write after the peer closed succeeds: the kernel takes the bytes (see Lab 05 § \
         Broken pipe and SIGPIPE):\n{report}"
    );
    assert!(
        writes.len() >= 3
            && writes[writes.len() - 2..]
                .iter()
                .all(|o| matches!(o, Outcome::BrokenPipe | Outcome::Reset)),
        "a later write fails with BrokenPipe (or ConnectionReset), and so does the next:\n{report}"
    );
}

#[test]
fn step1_experiment_unread_data() {
    let report = experiment("unread-data");
    let reads = report.outcomes("client", "read");
    if cfg!(target_os = "linux") {
        assert_eq!(
            reads,
            [Outcome::Reset],
            "on Linux, closing with unread data sends a RST, so the client's read is a reset \
             (see Lab 05 § Closing with unread data):\n{report}"
        );
    } else {
        assert!(
            matches!(reads[..], [Outcome::Reset | Outcome::EndOfStream]),
            "{report}"
        );
    }
    let writes = report.outcomes("client", "write");
    assert!(
        matches!(writes[..], [_, Outcome::BrokenPipe | Outcome::Reset]),
        "after the reset a write fails:\n{report}"
    );
}

#[test]
fn step1_experiment_shutdown_read() {
    let report = experiment("shutdown-read");
    let reads = report.outcomes("server", "read");
    assert_eq!(
        reads.first(),
        Some(&Outcome::EndOfStream),
        "after shutdown(Read), read returns Ok(0) at once:\n{report}"
    );
    assert_eq!(
        report.outcomes("client", "write"),
        [Outcome::Data(9)],
        "the peer is not told about shutdown(Read): its write succeeds:\n{report}"
    );
    if cfg!(target_os = "linux") {
        assert_eq!(
            reads.get(1),
            Some(&Outcome::Data(9)),
            "on Linux the 9 bytes sent after shutdown(Read) are still delivered:\n{report}"
        );
    }
}

#[test]
fn step1_experiment_process_exit() {
    let report = experiment("process-exit");
    let reads = report.outcomes("server", "read");
    assert!(
        matches!(
            reads[..],
            [Outcome::Data(_), Outcome::TimedOut, Outcome::EndOfStream]
        ),
        "the child's hello, then a read timeout while it lives, then end of stream once it is \
         killed (the kernel closes its socket; see Lab 05 § Processes that exit):\n{report}"
    );
}

#[test]
fn step1_experiment_time_wait() {
    let report = experiment("time-wait");
    assert_eq!(
        report.outcomes("client", "read"),
        [Outcome::EndOfStream, Outcome::EndOfStream],
        "the server closed first each time:\n{report}"
    );
    let restarts = report.calls("server", "restart");
    // On Linux the experiment looks the old connection up in /proc/net/tcp. A kernel whose
    // TIME_WAIT table is full (net.ipv4.tcp_max_tw_buckets, shared by every program on the
    // host) keeps no TIME_WAIT at all; then there is nothing to observe.
    let states = report.calls("server", "state of");
    if cfg!(target_os = "linux") && states.first() != Some(&Ok("TIME_WAIT".to_owned())) {
        notice(&format!(
            "step1_experiment_time_wait: the kernel kept no TIME_WAIT ({:?}); is its table full \
             (tcp_max_tw_buckets)? Only the restart with SO_REUSEADDR was checked",
            states.first()
        ));
        assert!(matches!(&restarts[..], [_, Ok(_)]), "{report}");
        return;
    }
    assert!(
        matches!(&restarts[..], [Err(io::ErrorKind::AddrInUse), Ok(_)]),
        "restarting without SO_REUSEADDR fails with AddrInUse (the old connection is in TIME_WAIT), \
         with it the restart works (see Lab 05 § TIME_WAIT and SO_REUSEADDR):\n{report}"
    );
    assert!(
        matches!(&report.calls("client", "connect")[..], [Ok(_)]),
        "{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// Step 2: orderly close

/// Runs `lab::orderly_close(stream, deadline)` in a server thread; its result arrives on the
/// returned channel.
fn closing_thread(
    stream: TcpStream,
    deadline: Duration,
) -> (ServerThread<()>, mpsc::Receiver<io::Result<u64>>) {
    let (tx, rx) = mpsc::channel();
    let thread = ServerThread::spawn("the thread running lab::orderly_close", move || {
        let _ = tx.send(lab::orderly_close(stream, deadline));
    });
    (thread, rx)
}

fn await_close(
    thread: ServerThread<()>,
    rx: &mpsc::Receiver<io::Result<u64>>,
    limit: Duration,
) -> io::Result<u64> {
    match rx.recv_timeout(limit) {
        Ok(result) => {
            thread.join_within(Duration::from_secs(5));
            result
        }
        Err(RecvTimeoutError::Disconnected) => {
            thread.join_within(Duration::from_secs(5));
            panic!("lab::orderly_close returned nothing")
        }
        Err(RecvTimeoutError::Timeout) => panic!(
            "lab::orderly_close did not return within {} ms",
            limit.as_millis()
        ),
    }
}

#[test]
fn step2_sends_fin_then_waits_for_the_peers_end_of_stream() {
    let (client, server) = tcp_pair();
    let (mut thread, rx) = closing_thread(server, IO_TIMEOUT);
    let got = thread
        .read_to_eof_from(
            &client,
            "end of stream after lab::orderly_close's shutdown(Write)",
        )
        .unwrap_or_else(|(e, _)| panic!("the client's read failed with {e} instead of end of stream"));
    assert!(
        got.is_empty(),
        "nothing was written, yet {} bytes arrived",
        got.len()
    );
    match rx.recv_timeout(Duration::from_millis(300)) {
        Err(RecvTimeoutError::Timeout) => {}
        Ok(result) => panic!(
            "lab::orderly_close returned {result:?} while the peer had not finished sending: it must \
             drain until the peer's end of stream (see Lab 05 § Orderly release)"
        ),
        Err(RecvTimeoutError::Disconnected) => {
            thread.join_within(Duration::from_secs(5));
            panic!("lab::orderly_close's thread ended without a result");
        }
    }
    client.shutdown(Shutdown::Write).expect("the client's half-close");
    let result = await_close(thread, &rx, Duration::from_secs(5));
    assert_eq!(
        result.map_err(|e| e.to_string()),
        Ok(0),
        "once the peer's end of stream arrives, orderly_close returns the bytes drained (none)"
    );
}

#[test]
fn step2_drains_what_the_peer_still_sends() {
    const LEN: usize = 1024 * 1024;
    let (client, server) = tcp_pair();
    let peer = std::thread::spawn(move || {
        let wrote = (&client).write_all(&pattern(LEN));
        let _ = client.shutdown(Shutdown::Write);
        let (got, end) = read_until_closed(&client);
        (wrote.map_err(|e| e.kind()), got.len(), end.map_err(|e| e.kind()))
    });
    let result = within(CALL_LIMIT, "lab::orderly_close", move || {
        lab::orderly_close(server, IO_TIMEOUT).map_err(|e| e.to_string())
    });
    let (wrote, got, end) = peer.join().expect("the test's peer thread");
    assert_eq!(
        (wrote, got, end),
        (Ok(()), 0, Ok(())),
        "the peer sent 1 MiB while the connection was being closed: its writes must succeed and its \
         read must end with end of stream, not a reset. Closing with unread data sends a RST: drain \
         first (see Lab 05 § Orderly release)"
    );
    assert_eq!(
        result,
        Ok(LEN as u64),
        "orderly_close returns how many bytes it drained"
    );
}

#[test]
fn step2_a_peer_that_never_finishes_cannot_hold_the_close_past_the_deadline() {
    let (client, server) = tcp_pair();
    // No timeout of the test's: only the deadline may end the drain.
    server.set_read_timeout(None).expect("no read timeout");
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let trickler = std::thread::spawn(move || {
        // One byte every 50 ms for up to 8 s, never a FIN.
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until {
            if (&client).write_all(b".").is_err() {
                break;
            }
            if stop_rx.recv_timeout(Duration::from_millis(50)).is_ok() {
                break;
            }
        }
    });
    let deadline = Duration::from_millis(500);
    let started = Instant::now();
    let (thread, rx) = closing_thread(server, deadline);
    let result = match rx.recv_timeout(CALL_LIMIT) {
        Ok(result) => result,
        Err(_) => {
            let _ = stop_tx.send(());
            panic!(
                "lab::orderly_close with a 500 ms deadline was still running after {} s against a peer \
                 that sends a byte every 50 ms: the deadline bounds the whole drain, not each read \
                 (see Lab 05 § Orderly release)",
                CALL_LIMIT.as_secs()
            );
        }
    };
    let took = started.elapsed();
    let _ = stop_tx.send(());
    thread.join_within(Duration::from_secs(5));
    let _ = trickler.join();
    match result {
        Err(e) if is_timeout(&e) => {}
        other => panic!(
            "the peer never finished sending: orderly_close must give up with TimedOut at the \
             deadline; got {other:?}"
        ),
    }
    assert!(
        took < deadline + SLACK,
        "with a 500 ms deadline orderly_close took {took:?}: the deadline bounds the whole drain, \
         not each read"
    );
}

#[test]
fn step2_an_8_mib_transfer_arrives_whole_before_end_of_stream() {
    let (client, server) = tcp_pair();
    let mut thread = ServerThread::spawn("the server thread (write 8 MiB, lab::orderly_close)", move || {
        server
            .set_write_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        (&server).write_all(&pattern(BIG)).expect("write 8 MiB");
        lab::orderly_close(server, Duration::from_secs(10)).map_err(|e| e.to_string())
    });
    let got = thread
        .read_to_eof_from(&client, "8 MiB, then end of stream")
        .unwrap_or_else(|(e, got)| {
            panic!(
                "after {} of {BIG} bytes the read failed with {e}: an orderly close delivers every byte \
                 written before it, then end of stream (see Lab 05 § Orderly release)",
                got.len()
            )
        });
    assert!(
        got == pattern(BIG),
        "8 MiB written, then orderly_close: {}",
        first_difference(&got, &pattern(BIG))
    );
    drop(client);
    assert_eq!(thread.join_within(Duration::from_secs(10)), Ok(0));
}

#[test]
fn step2_experiment_orderly_close_with_data_in_flight() {
    let report = experiment("orderly");
    assert_eq!(
        report.outcomes("client", "read"),
        [Outcome::EndOfStream],
        "after the data, end of stream:\n{report}"
    );
    assert!(
        report.finding.starts_with("all ") && report.finding.contains("intact"),
        "every byte written before the close arrives:\n{report}"
    );
    assert!(
        matches!(&report.calls("server", "orderly_close returns")[..], [Ok(_)]),
        "{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// Step 3: abortive close

#[test]
fn step3_the_peer_sees_a_reset_not_end_of_stream() {
    let (client, server) = tcp_pair();
    within(CALL_LIMIT, "lab::abortive_close", move || {
        lab::abortive_close(server)
    })
    .expect("abortive_close");
    let read = (&client).read(&mut [0u8; 16]);
    assert!(
        matches!(&read, Err(e) if is_reset(e.kind())),
        "after an abortive close the peer's read must fail with ConnectionReset, got {read:?}: \
         set SO_LINGER to 0 seconds before closing (see Lab 05 § Abortive close)"
    );
}

#[test]
fn step3_an_8_mib_transfer_cut_by_an_abortive_close_is_a_reset() {
    let (client, server) = tcp_pair();
    let mut thread = ServerThread::spawn(
        "the server thread (write 8 MiB, lab::abortive_close)",
        move || {
            server
                .set_write_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            (&server).write_all(&pattern(BIG)).expect("write 8 MiB");
            lab::abortive_close(server).map_err(|e| e.to_string())
        },
    );
    match thread.read_to_eof_from(&client, "the 8 MiB transfer") {
        Err((e, _)) if is_reset(e.kind()) => {}
        Err((e, got)) => panic!("after {} bytes: {e}; expected ConnectionReset", got.len()),
        Ok(got) => panic!(
            "all {} bytes arrived, then end of stream: that was an orderly close. An abortive close \
             sends a RST, and the reader sees ConnectionReset (see Lab 05 § Abortive close)",
            got.len()
        ),
    }
    assert_eq!(thread.join_within(Duration::from_secs(10)), Ok(()));
}

#[test]
fn step3_returns_at_once_with_data_unsent() {
    let (client, server) = tcp_pair();
    // Fill the buffers: the client reads nothing.
    server
        .set_write_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let chunk = vec![0u8; 64 * 1024];
    while (&server).write(&chunk).is_ok() {}
    let started = Instant::now();
    within(CALL_LIMIT, "lab::abortive_close", move || {
        lab::abortive_close(server)
    })
    .expect("abortive_close");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(500) + SLACK,
        "abortive_close took {took:?}: with SO_LINGER 0 the close discards unsent data and returns \
         at once (a non-zero linger waits for the data to go out)"
    );
    let (_, end) = read_until_closed(&client);
    assert!(
        matches!(&end, Err(e) if is_reset(e.kind())),
        "the reader must see a reset after the data that arrived, got {end:?}"
    );
}

#[test]
fn step3_experiment_abortive_close() {
    let report = experiment("abortive");
    assert_eq!(
        report.outcomes("client", "read"),
        [Outcome::Reset],
        "the client's reads end with a reset, not end of stream:\n{report}"
    );
    assert!(
        matches!(
            report.outcomes("client", "write")[..],
            [Outcome::Data(7), Outcome::BrokenPipe | Outcome::Reset]
        ),
        "after the reset a write fails:\n{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// Step 4: the half-close client

/// A test-side server for one connection: reads the request to end of stream, then answers with
/// `answer(request)` and closes. Returns what it received.
fn reading_server(
    answer: impl FnOnce(&[u8]) -> Vec<u8> + Send + 'static,
) -> (SocketAddr, ServerThread<Vec<u8>>) {
    let listener = tcp_listener();
    let addr = listener.local_addr().expect("addr");
    let thread = ServerThread::spawn("the test's server", move || {
        let (stream, _) = listener.accept().expect("accept");
        set_stream_timeouts(&stream);
        let (request, end) = read_until_closed(&stream);
        if let Err(e) = end {
            panic!(
                "the test's server waited for the end of the request (the client's half-close) and \
                 got {e} after {} bytes: call shutdown(Write) after sending (see Lab 05 § Half-close)",
                request.len()
            );
        }
        let _ = (&stream).write_all(&answer(&request));
        request
    });
    (addr, thread)
}

fn request(addr: SocketAddr, data: Vec<u8>, what: &str) -> io::Result<lab::Reply> {
    let stream = tcp_connect(addr);
    within(CALL_LIMIT, what, move || {
        let mut input = &data[..];
        lab::request(&stream, &mut input)
    })
}

#[test]
fn step4_half_closes_and_returns_the_parsed_reply() {
    let data = pattern(3 * 1024 * 1024 + 7);
    let (addr, thread) = reading_server(|request| reply_line(request).into_bytes());
    let reply = request(addr, data.clone(), "lab::request with 3 MiB");
    let received = thread.join_within(Duration::from_secs(10));
    assert!(
        received == data,
        "what the server received: {}",
        first_difference(&received, &data)
    );
    assert_eq!(
        reply.map_err(|e| e.to_string()),
        Ok(lab::Reply::Received(lab::Summary {
            bytes: data.len() as u64,
            fnv1a64: fnv1a64(&data)
        })),
        "the server replied {:?}",
        reply_line(&data)
    );
}

#[test]
fn step4_a_refusal_is_returned_as_such() {
    let (addr, _thread) = reading_server(|_| b"refused: more than 10 bytes\n".to_vec());
    let reply = request(addr, b"more than ten bytes".to_vec(), "lab::request");
    assert_eq!(
        reply.map_err(|e| e.to_string()),
        Ok(lab::Reply::Refused { max_bytes: 10 }),
        "parse the reply with lab::Reply::parse"
    );
}

#[test]
fn step4_a_server_that_closes_without_replying_is_unexpected_eof() {
    let (addr, _thread) = reading_server(|_| Vec::new());
    let reply = request(addr, b"hello?".to_vec(), "lab::request");
    assert_eq!(
        reply.map_err(|e| e.kind()),
        Err(io::ErrorKind::UnexpectedEof),
        "the server read the request and closed without a word: UnexpectedEof"
    );
}

#[test]
fn step4_an_endless_reply_is_invalid_data() {
    let listener = tcp_listener();
    let addr = listener.local_addr().expect("addr");
    let _talker = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        set_stream_timeouts(&stream);
        let _ = read_until_closed(&stream);
        let chunk = [b'x'; 4096];
        // Talks until the client goes away.
        while (&stream).write_all(&chunk).is_ok() {}
    });
    let reply = request(
        addr,
        b"say something".to_vec(),
        "lab::request against a server that never stops talking (is the reply capped?)",
    );
    assert_eq!(
        reply.map_err(|e| e.kind()),
        Err(io::ErrorKind::InvalidData),
        "a reply longer than MAX_REPLY bytes is InvalidData; read at most MAX_REPLY + 1 bytes"
    );
}

#[test]
fn step4_experiment_half_close() {
    let report = experiment("half-close");
    assert_eq!(
        report.outcomes("server", "read"),
        [Outcome::EndOfStream],
        "the server's reads end with end of stream (the client's half-close):\n{report}"
    );
    assert!(
        matches!(&report.calls("client", "request")[..], [Ok(reply)] if reply.contains("received 37 bytes")),
        "the client gets its reply after its half-close:\n{report}"
    );
}

#[test]
fn step4_client_binary_sends_a_file_and_checks_the_reply() {
    let data = pattern(2 * 1024 * 1024);
    let file = TempFile::new("step4.bin", &data);
    let (addr, thread) = reading_server(|request| reply_line(request).into_bytes());
    let out = run_within(
        BIN,
        &["client", "--server", &addr.to_string(), "--file", file.path()],
        RUN_LIMIT,
    );
    assert!(out.status.success(), "client failed: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("reply: {}", reply_line(&data).trim_end())) && stdout.contains("intact"),
        "{stdout}"
    );
    assert!(thread.join_within(Duration::from_secs(10)) == data);
}

#[test]
fn step4_experiment_all_prints_every_scenario_and_the_table() {
    let out = run_within(BIN, &["experiment", "all"], RUN_LIMIT);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "`experiment all` failed: {}\n{stdout}",
        text(&out.stderr)
    );
    for name in lab::experiments::names() {
        assert!(
            stdout.contains(&format!("== {name}: ")),
            "no transcript of {name}:\n{stdout}"
        );
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(name) && l.len() > name.len() + 2),
            "no table row for {name}:\n{stdout}"
        );
    }
    for seen in [
        "Ok(0) (end of stream)",
        "Err(ConnectionReset) (reset)",
        "Err(BrokenPipe) (broken pipe)",
        "observed on this machine",
    ] {
        assert!(
            stdout.contains(seen),
            "`experiment all` never shows {seen:?}:\n{stdout}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Step 5: the server's side

fn serving_thread(config: lab::ServerConfig) -> (TcpStream, ServerThread<Result<lab::Served, String>>) {
    let (client, server) = tcp_pair();
    let thread = ServerThread::spawn("the server thread (lab::serve_connection)", move || {
        lab::serve_connection(server, &config).map_err(|e| e.to_string())
    });
    (client, thread)
}

#[test]
fn step5_replies_with_count_and_checksum_then_closes_in_order() {
    let data = pattern(1024 * 1024 + 3);
    let (client, mut thread) = serving_thread(config());
    (&client).write_all(&data).expect("send the request");
    client.shutdown(Shutdown::Write).expect("half-close");
    let reply = thread
        .read_to_eof_from(&client, "the reply line, then end of stream")
        .unwrap_or_else(|(e, got)| {
            panic!(
                "the reply {:?} ended with {e} instead of end of stream: close with orderly_close",
                text(&got)
            )
        });
    assert_eq!(text(&reply), reply_line(&data), "the reply to 1 MiB + 3 bytes");
    assert_eq!(
        thread.join_within(Duration::from_secs(5)),
        Ok(lab::Served {
            reply: lab::Reply::Received(lab::Summary {
                bytes: data.len() as u64,
                fnv1a64: fnv1a64(&data)
            }),
            drained: 0
        })
    );
}

#[test]
fn step5_an_empty_request_gets_a_reply() {
    let (client, mut thread) = serving_thread(config());
    client.shutdown(Shutdown::Write).expect("half-close at once");
    let reply = thread
        .read_to_eof_from(&client, "the reply to an empty request")
        .unwrap_or_else(|(e, _)| panic!("{e}"));
    assert_eq!(text(&reply), "received 0 bytes, fnv1a64 cbf29ce484222325\n");
}

#[test]
fn step5_refuses_a_request_over_max_bytes_and_drains_the_rest() {
    const LEN: usize = 2 * 1024 * 1024;
    let mut small = config();
    small.max_bytes = 1000;
    let (client, mut thread) = serving_thread(small);
    let sender = client.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        let wrote = (&sender).write_all(&pattern(LEN));
        let _ = sender.shutdown(Shutdown::Write);
        wrote.map_err(|e| e.kind())
    });
    let reply = thread.read_to_eof_from(&client, "the refusal, then end of stream");
    let wrote = writer.join().expect("writer thread");
    assert_eq!(
        (wrote, reply.as_ref().map(|r| text(r)).map_err(|(e, _)| e.kind())),
        (Ok(()), Ok("refused: more than 1000 bytes\n".to_owned())),
        "(the client's 2 MiB write, the reply it read): the server refuses after 1000 bytes while the \
         client is still sending; its orderly close must drain the rest, or the client's writes and \
         reads fail with a reset (see Lab 05 § Orderly release)"
    );
    let served = thread.join_within(Duration::from_secs(10));
    assert!(
        matches!(&served, Ok(lab::Served { reply: lab::Reply::Refused { max_bytes: 1000 }, drained }) if *drained > 0),
        "serve_connection returns the refusal and what it drained: {served:?}"
    );
}

#[test]
fn step5_a_silent_client_is_dropped_after_the_idle_timeout() {
    let mut short = config();
    short.idle_timeout = Some(Duration::from_millis(300));
    let started = Instant::now();
    let (_client, thread) = serving_thread(short);
    let result = thread.join_within(Duration::from_millis(300) + SLACK + SLACK);
    assert!(
        result.is_err(),
        "a client that sends nothing for the idle timeout is an error: {result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(300) + SLACK,
        "with a 300 ms idle timeout serve_connection took {:?}",
        started.elapsed()
    );
}

#[test]
fn step5_binaries_transfer_5_mib_intact() {
    let data = pattern(5 * 1024 * 1024);
    let file = TempFile::new("step5.bin", &data);
    let server = ServerProcess::start(BIN, &["server", "--port", "0"]);
    let out = run_within(
        BIN,
        &[
            "client",
            "--server",
            &server.addr().to_string(),
            "--file",
            file.path(),
        ],
        RUN_LIMIT,
    );
    assert!(out.status.success(), "client failed: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(reply_line(&data).trim_end()) && stdout.contains("intact"),
        "{stdout}"
    );
    server.expect_stderr("received 5242880 bytes", Duration::from_secs(5));
}

#[test]
fn step5_server_binary_survives_a_client_that_resets() {
    let server = ServerProcess::start(BIN, &["server", "--port", "0"]);
    let rude = tcp_connect(server.addr());
    let me = rude.local_addr().expect("addr").to_string();
    (&rude).write_all(&[b'r'; 1000]).expect("send part of a request");
    server.expect_stderr(&format!("{me}: connected"), Duration::from_secs(5));
    reset(rude);
    let lines = server.expect_stderr_lines(&me, 2, Duration::from_secs(5));
    assert!(
        lines[1].contains("reset"),
        "the server logs the client's reset: {lines:?}"
    );
    let next = tcp_connect(server.addr());
    (&next).write_all(b"after the reset").expect("send");
    next.shutdown(Shutdown::Write).expect("half-close");
    let (reply, end) = read_until_closed(&next);
    assert_eq!(
        (text(&reply), end.map_err(|e| e.kind())),
        (reply_line(b"after the reset"), Ok(())),
        "the next client is served"
    );
}

#[test]
fn step5_server_binary_refuses_an_oversized_request_yet_the_client_reads_the_refusal() {
    // More than the socket buffers hold, so the client is still sending when the server closes.
    let data = pattern(24 * 1024 * 1024);
    let file = TempFile::new("step5-big.bin", &data);
    let server = ServerProcess::start(
        BIN,
        &["server", "--port", "0", "--max-bytes", "1000", "--drain", "10000"],
    );
    let out = run_within(
        BIN,
        &[
            "client",
            "--server",
            &server.addr().to_string(),
            "--file",
            file.path(),
        ],
        RUN_LIMIT,
    );
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success()
            && stdout.contains("reply: refused: more than 1000 bytes")
            && stderr.contains("refused"),
        "a refused request: the client must still read the refusal (the server drains before \
         closing) and exit 1:\nstdout: {stdout}\nstderr: {stderr}"
    );
}

/// The section that explains the message timeout.
const MESSAGE_SECTION: &str = "see Lab 05 § Slow uploads and the message timeout";

/// The idle timeout of the trickling tests: 1000 ms, far longer than the 100 ms between pieces.
const TRICKLE_IDLE: Duration = Duration::from_millis(1000);

/// The message timeout of the trickling tests: 600 ms.
const TRICKLE_MESSAGE: Duration = Duration::from_millis(600);

/// Runs `lab::serve_connection` on the server end of a new pair, keeping its error whole (its
/// kind, and whether it is the message timeout's).
fn upload_thread(config: lab::ServerConfig) -> (TcpStream, ServerThread<io::Result<lab::Served>>) {
    let (client, server) = tcp_pair();
    let thread = ServerThread::spawn("the server thread (lab::serve_connection)", move || {
        lab::serve_connection(server, &config)
    });
    (client, thread)
}

/// What a trickling client saw.
struct Trickle {
    /// When the server ended the connection (end of stream, a reset, a failed write), counted
    /// from the first piece; `None`: the connection was still open at the limit.
    closed: Option<Duration>,
    /// How many bytes the client sent.
    sent: usize,
    /// What it received: nothing is right, as the upload never ended.
    received: Vec<u8>,
    /// How the connection ended, in words.
    end: String,
}

/// Sends `pieces` pieces of 3 bytes (`abc`) on `stream`, one every 100 ms, never half-closing,
/// and watches until the server ends the connection or `limit` has passed since the first piece.
/// The pacing is a 100 ms read timeout, which also notices the end; `check` runs between pieces
/// (a server thread's check, so that a panic there fails the test at once).
fn trickle(stream: &TcpStream, pieces: usize, limit: Duration, mut check: impl FnMut()) -> Trickle {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let started = Instant::now();
    let mut seen = Trickle {
        closed: None,
        sent: 0,
        received: Vec::new(),
        end: "still open".to_owned(),
    };
    let mut buf = [0u8; 512];
    let mut left = pieces;
    while started.elapsed() < limit {
        if left > 0 {
            left -= 1;
            if let Err(e) = (&*stream).write_all(b"abc") {
                seen.closed = Some(started.elapsed());
                seen.end = format!("a write failed: {e}");
                return seen;
            }
            seen.sent += 3;
        }
        match (&*stream).read(&mut buf) {
            Ok(0) => {
                seen.closed = Some(started.elapsed());
                seen.end = "end of stream".to_owned();
                return seen;
            }
            Ok(n) => seen.received.extend_from_slice(&buf[..n]),
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                seen.closed = Some(started.elapsed());
                seen.end = format!("a read failed: {e}");
                return seen;
            }
        }
        check();
    }
    seen
}

/// The error of a connection cut off by the message timeout `limit`, or a failure that says
/// what came instead (`what`: how the client behaved).
fn expect_message_timeout(result: io::Result<lab::Served>, limit: Duration, what: &str) {
    let error = match result {
        Err(e) => e,
        Ok(served) => panic!(
            "{what}: serve_connection returned {served:?}; an upload cut off by the {} ms message \
             timeout ends the connection with an error ({MESSAGE_SECTION})",
            limit.as_millis()
        ),
    };
    assert!(
        error.kind() == io::ErrorKind::TimedOut && lab::message_timeout_of(&error) == Some(limit),
        "{what}: serve_connection ended the connection with {error:?} (kind {:?}); expected the \
         error of message_timed_out({} ms): kind TimedOut, and the log can tell it from an idle \
         timeout ({MESSAGE_SECTION})",
        error.kind(),
        limit.as_millis()
    );
}

#[test]
fn step5_a_trickled_upload_is_cut_off_by_the_message_timeout() {
    let config = lab::ServerConfig {
        idle_timeout: Some(TRICKLE_IDLE),
        message_timeout: Some(TRICKLE_MESSAGE),
        ..config()
    };
    let (client, mut thread) = upload_thread(config);
    let limit = TRICKLE_MESSAGE + SLACK;
    let seen = trickle(&client, usize::MAX, limit, || thread.check());
    let what = format!(
        "idle_timeout 1000 ms, message_timeout 600 ms: the client sent 3 bytes every 100 ms and never \
         half-closed ({} bytes in {} ms)",
        seen.sent,
        seen.closed.unwrap_or(limit).as_millis()
    );
    assert!(
        seen.closed.is_some(),
        "{what}, and the connection was still open. The server kept a trickling upload for {} ms \
         although the message timeout was 600 ms: the idle timeout bounds one read, not the whole \
         upload; take one deadline before the first read and give each read the timeout \
         min(idle, time left) ({MESSAGE_SECTION})",
        limit.as_millis()
    );
    assert!(
        seen.received.is_empty(),
        "{what}: the client received {:?} ({} bytes) before the connection ended ({}), but an upload \
         that never ended gets no reply: the message timeout ends the connection \
         ({MESSAGE_SECTION})",
        text(&seen.received),
        seen.received.len(),
        seen.end
    );
    expect_message_timeout(thread.join_within(SLACK), TRICKLE_MESSAGE, &what);
}

#[test]
fn step5_a_stalled_upload_ends_at_the_deadline_not_after_the_idle_timeout() {
    let idle = Duration::from_millis(4000);
    let config = lab::ServerConfig {
        idle_timeout: Some(idle),
        message_timeout: Some(TRICKLE_MESSAGE),
        ..config()
    };
    let (client, mut thread) = upload_thread(config);
    let limit = TRICKLE_MESSAGE + SLACK;
    let seen = trickle(&client, 1, limit, || thread.check());
    let what = "idle_timeout 4000 ms, message_timeout 600 ms: the client sent 3 bytes, then nothing";
    assert!(
        seen.closed.is_some(),
        "{what}. The server kept the upload for {} ms although the message timeout was 600 ms: a \
         read must not wait past the deadline, so give it the timeout min(idle, time left), not \
         the idle timeout alone, and do not look at the clock only after a read returns \
         ({MESSAGE_SECTION})",
        limit.as_millis()
    );
    expect_message_timeout(thread.join_within(SLACK), TRICKLE_MESSAGE, what);
}

#[test]
fn step5_an_upload_within_the_message_timeout_is_served() {
    // A message timeout shorter than the idle timeout: the time left sets every read's timeout.
    let config = lab::ServerConfig {
        idle_timeout: Some(IO_TIMEOUT),
        message_timeout: Some(Duration::from_millis(3000)),
        ..config()
    };
    let (client, mut thread) = upload_thread(config);
    let data = pattern(1000);
    let started = Instant::now();
    let mut wrote = Ok(());
    for piece in data.chunks(200) {
        wrote = (&client).write_all(piece);
        if wrote.is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        thread.check();
    }
    let wrote = wrote.and_then(|()| client.shutdown(Shutdown::Write));
    let took = started.elapsed();
    let reply = thread.read_to_eof_from(&client, "the reply to an upload sent in 5 pieces");
    let reply = reply
        .as_ref()
        .map(|r| text(r))
        .map_err(|(e, got)| format!("{e} after {:?}", text(got)));
    assert!(
        wrote.is_ok() && reply.as_deref() == Ok(reply_line(&data).as_str()),
        "idle_timeout 5000 ms, message_timeout 3000 ms: the client sent 1000 bytes in 5 pieces 100 \
         ms apart and half-closed after {} ms (its writes: {wrote:?}); it read {reply:?} instead \
         of {:?}. An upload that ends within the message timeout is served: the deadline ends the \
         connection only once no time is left, even when the time left is shorter than the idle \
         timeout ({MESSAGE_SECTION})",
        took.as_millis(),
        reply_line(&data)
    );
    let served = thread.join_within(SLACK).map_err(|e| e.to_string());
    assert_eq!(
        served,
        Ok(lab::Served {
            reply: lab::Reply::Received(lab::Summary {
                bytes: data.len() as u64,
                fnv1a64: fnv1a64(&data)
            }),
            drained: 0
        }),
        "serve_connection's result for an upload served within its message timeout"
    );
}

#[test]
fn step5_server_binary_serves_the_next_client_while_one_trickles() {
    let server = ServerProcess::start(
        BIN,
        &[
            "server",
            "--port",
            "0",
            "--idle-timeout",
            "1000",
            "--message-timeout",
            "600",
        ],
    );
    let trickler = tcp_connect(server.addr());
    let me = trickler.local_addr().expect("local address").to_string();
    // The trickler is first in the backlog, so the iterative server serves it first.
    let trickling = ServerThread::spawn("the trickling client", move || {
        trickle(&trickler, usize::MAX, Duration::from_secs(4), || {})
    });
    let started = Instant::now();
    let next = TcpStream::connect_timeout(&server.addr(), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("a second client cannot connect: {e}{}", server.log()));
    // Less than the trickler's 4 s, so that a server still busy with it fails here.
    let wait = Duration::from_millis(3500);
    next.set_read_timeout(Some(wait)).expect("read timeout");
    next.set_write_timeout(Some(IO_TIMEOUT)).expect("write timeout");
    let sent = (&next)
        .write_all(b"my turn")
        .and_then(|()| next.shutdown(Shutdown::Write));
    let (reply, end) = read_until_closed(&next);
    let waited = started.elapsed().as_millis();
    let expected = reply_line(b"my turn");
    if sent.is_err() || text(&reply) != expected {
        let setting = format!(
            "server --idle-timeout 1000 --message-timeout 600: a first client trickles its upload, 3 \
             bytes every 100 ms, never half-closing; a second client sent \"my turn\" and \
             half-closed ({sent:?})"
        );
        match &end {
            Err(e) if is_timeout(e) => panic!(
                "{setting}, and after {waited} ms it still had no reply (it read {:?}). The server \
                 kept a trickling upload for at least {waited} ms although the message timeout \
                 was 600 ms: the idle timeout bounds one read, not the whole upload \
                 ({MESSAGE_SECTION}){}",
                text(&reply),
                server.log()
            ),
            _ => panic!(
                "{setting}, and after {waited} ms it had read {:?}, then {end:?}, instead of its \
                 reply {expected:?}: once the trickler is cut off, the next client is served \
                 ({MESSAGE_SECTION}){}",
                text(&reply),
                server.log()
            ),
        }
    }
    let seen = trickling.join_within(Duration::from_secs(5));
    assert!(
        seen.closed.is_some() && seen.received.is_empty(),
        "the trickling client: its connection ended after {:?} ({}), having received {:?}; \
         expected the end of its connection without a reply ({MESSAGE_SECTION})",
        seen.closed,
        seen.end,
        text(&seen.received)
    );
    let lines = server.expect_stderr_lines(&me, 2, Duration::from_secs(5));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("took longer than the message timeout (600 ms)")),
        "the trickler's connection must end with a log line saying that \"the upload took longer \
         than the message timeout (600 ms)\" (the error of message_timed_out), not an idle \
         timeout's; got {lines:?} ({MESSAGE_SECTION})"
    );
}
