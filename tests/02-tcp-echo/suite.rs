//! Lab 02 grading suite: TCP echo and stream framing.
//!
//! Shared by `lab02-tcp-echo` (the student's work) and `solution02-tcp-echo` (the reference):
//! each package's `tests/grade.rs` defines `lab` (its library) and `BIN` (its binary) and
//! includes this file. Tests are named `stepN_...` after the step of the book chapter they check,
//! so `cargo test -p lab02-tcp-echo step3_` runs the checks of step 3.
//!
//! Every test stays on loopback with ephemeral ports, sets timeouts on every socket, runs code
//! that might block inside `within` or a `ServerThread`, and fails within seconds when the code
//! under test panics (a `todo!()`) or hangs. Loopback never splits or merges writes on its own,
//! so the tests do it on purpose: `partial_io` wrappers give short reads and short writes, and
//! `common::tcp_relay` slices a stream into 1-3 byte pieces or coalesces writes.

use std::io::{self, BufReader, Cursor, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::tcp_relay::{Shaping, TcpRelay};
use common::testing::{
    IO_TIMEOUT, ServerProcess, ServerThread, is_timeout, run_within, set_stream_timeouts, tcp_connect,
    tcp_listener, tcp_pair, within,
};
use partial_io::{PartialOp, PartialRead, PartialWrite};

use crate::{BIN, lab};

/// How long a test lets a client binary run before killing it.
const CLIENT_RUN_LIMIT: Duration = Duration::from_secs(15);
/// The longest a single library call may take before the test calls it hung.
const CALL_LIMIT: Duration = Duration::from_secs(10);
/// Extra time allowed over a computed timeout budget, for slow, busy machines.
const SLACK: Duration = Duration::from_millis(2000);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn addr_of(listener: &TcpListener) -> SocketAddr {
    listener.local_addr().expect("a bound socket has a local address")
}

/// A frame built by hand: 2-byte big-endian length, then the payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).expect("test frames fit");
    let mut out = vec![(len >> 8) as u8, (len & 0xff) as u8];
    out.extend_from_slice(payload);
    out
}

/// Operations for `partial_io`: every read or write limited to 1-3 bytes, seeded.
fn pieces(seed: u64) -> impl Iterator<Item = PartialOp> + Send + 'static {
    let mut rng = fastrand::Rng::with_seed(seed);
    std::iter::repeat_with(move || PartialOp::Limited(rng.usize(1..=3)))
}

/// Bytes 0, 1, 2 ... 250, 0, 1 ... : a pattern in which a lost or repeated piece shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Where two byte strings first differ, for failure messages about long data.
fn first_difference(got: &[u8], expected: &[u8]) -> String {
    match got.iter().zip(expected).position(|(a, b)| a != b) {
        Some(i) => format!("first difference at byte {i}"),
        None => format!("{} bytes expected, {} received", expected.len(), got.len()),
    }
}

/// A socket bound to a loopback port but not listening: connecting to it is refused at once,
/// and no other test can take the port while it is held.
fn closed_port() -> (socket2::Socket, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    socket.bind(&any.into()).expect("bind");
    let addr = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("bound address");
    (socket, addr)
}

/// Closes `stream` abortively: SO_LINGER 0 makes the close send a reset (RST).
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(stream);
}

/// Reads `stream` until the peer closes it (EOF, or a reset when it closed with our bytes still
/// unread), and returns what arrived first. Panics if it stays open for [`IO_TIMEOUT`].
fn read_until_closed(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("{what}: the connection was not closed within 5 s ({e}); received {got:?}"),
        }
    }
}

/// Reads exactly `len` bytes from a binary server, with the stream's 5 s timeout.
fn read_reply(stream: &mut TcpStream, len: usize, what: &str) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    if let Err(e) = stream.read_exact(&mut buf) {
        panic!("waited for {what} ({len} bytes): {e}");
    }
    buf
}

fn config(framing: lab::Framing, uppercase: bool) -> lab::ServerConfig {
    lab::ServerConfig {
        framing,
        uppercase,
        max_line: 1000,
        idle_timeout: Some(IO_TIMEOUT),
        message_timeout: None,
        max_connections: None,
    }
}

/// A listener and a thread that accepts one connection and runs the student's
/// `serve_connection` on it.
fn connection_thread(config: lab::ServerConfig) -> (SocketAddr, ServerThread<io::Result<u64>>) {
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let thread = ServerThread::spawn("the server thread (serve_connection)", move || {
        let (stream, _) = listener.accept().expect("accept");
        lab::serve_connection(stream, &config)
    });
    (addr, thread)
}

fn run_client(args: &[&str]) -> std::process::Output {
    let args: Vec<&str> = std::iter::once("client").chain(args.iter().copied()).collect();
    run_within(BIN, &args, CLIENT_RUN_LIMIT)
}

// ---------------------------------------------------------------------------------------------
// Step 1: a listening socket

#[test]
fn step1_listen_on_port_zero_gives_an_ephemeral_port() {
    let listener = lab::listen("127.0.0.1:0".parse().expect("addr")).expect("listen on 127.0.0.1:0");
    let local = addr_of(&listener);
    assert_eq!(local.ip().to_string(), "127.0.0.1", "bound to the wrong address");
    assert_ne!(
        local.port(),
        0,
        "port 0 asks the OS for an ephemeral port; local_addr() must show the real one"
    );
}

#[test]
fn step1_listen_reports_a_port_in_use() {
    let holder = tcp_listener();
    let err = lab::listen(addr_of(&holder))
        .expect_err("listening on a port another socket listens on must fail (see Lab 02 § Listening and connected sockets)");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "unexpected error: {err}");
}

#[test]
fn step1_connections_wait_in_the_backlog_until_accepted() {
    let listener = lab::listen("127.0.0.1:0".parse().expect("addr")).expect("listen");
    let addr = addr_of(&listener);
    // Three clients connect and send before anyone calls accept: the kernel has already
    // completed their handshakes and queues them.
    let clients: Vec<TcpStream> = (0..3).map(|_| tcp_connect(addr)).collect();
    for (i, mut c) in clients.iter().enumerate() {
        c.write_all(format!("client {i}").as_bytes()).expect("send");
    }
    for (i, client) in clients.iter().enumerate() {
        let (mut accepted, peer) = within(CALL_LIMIT, "accept on the listener from lab::listen", {
            let listener = listener.try_clone().expect("clone");
            move || listener.accept().expect("accept")
        });
        set_stream_timeouts(&accepted);
        assert_eq!(
            peer,
            client.local_addr().expect("addr"),
            "connections are accepted in the order they were queued (see Lab 02 § The backlog)"
        );
        let mut buf = [0u8; 8];
        accepted.read_exact(&mut buf).expect("the queued bytes");
        assert_eq!(text(&buf), format!("client {i}"));
    }
}

#[test]
fn step1_server_binary_prints_its_ready_line() {
    let server = ServerProcess::start(BIN, &["server", "--port", "0"]);
    let addr = server.addr();
    assert!(
        addr.ip().is_loopback(),
        "the server binds 127.0.0.1 by default, got {addr}"
    );
    assert_ne!(
        addr.port(),
        0,
        "the ready line must show the ephemeral port, not 0"
    );
    // It must really listen: a connection succeeds.
    drop(tcp_connect(addr));
}

// ---------------------------------------------------------------------------------------------
// Step 2: write all of it

#[test]
fn step2_writes_everything_through_1_to_3_byte_writes() {
    let data = pattern(1000);
    let expected = data.clone();
    let written = within(CALL_LIMIT, "lab::write_fully", move || {
        let mut out = PartialWrite::new(Vec::new(), pieces(2));
        lab::write_fully(&mut out, &data).map(|()| out.into_inner())
    })
    .expect("write_fully over a writer that takes 1-3 bytes per call");
    assert!(
        written == expected,
        "wrote 1000 bytes to a writer that takes only 1-3 bytes per write call: {}. Each write \
         returns how many bytes it took; offer the rest again (see Lab 02 § Short reads and short writes)",
        first_difference(&written, &expected)
    );
}

#[test]
fn step2_retries_after_interrupted() {
    let ops = [
        PartialOp::Err(io::ErrorKind::Interrupted),
        PartialOp::Limited(2),
        PartialOp::Err(io::ErrorKind::Interrupted),
        PartialOp::Limited(3),
    ];
    let written = within(CALL_LIMIT, "lab::write_fully", move || {
        let mut out = PartialWrite::new(Vec::new(), ops);
        lab::write_fully(&mut out, b"interrupted twice").map(|()| out.into_inner())
    });
    match written {
        Ok(bytes) => assert_eq!(text(&bytes), "interrupted twice"),
        Err(e) => panic!(
            "Interrupted means a signal arrived before anything was written: try again, \
             do not give up (see Lab 02 § Short reads and short writes); got {e}"
        ),
    }
}

#[test]
fn step2_a_writer_that_takes_nothing_is_write_zero() {
    let result = within(
        Duration::from_secs(5),
        "lab::write_fully on a writer that accepts 0 bytes (looping forever?)",
        move || {
            let mut out = PartialWrite::new(Vec::new(), std::iter::repeat(PartialOp::Limited(0)));
            lab::write_fully(&mut out, b"nowhere to go").map_err(|e| e.kind())
        },
    );
    assert_eq!(
        result,
        Err(io::ErrorKind::WriteZero),
        "a write that takes 0 of a non-empty buffer will never take more: return WriteZero"
    );
}

#[test]
fn step2_other_errors_are_returned() {
    let ops = [PartialOp::Limited(3), PartialOp::Err(io::ErrorKind::BrokenPipe)];
    let (result, written) = within(CALL_LIMIT, "lab::write_fully", move || {
        let mut out = PartialWrite::new(Vec::new(), ops);
        let result = lab::write_fully(&mut out, b"peer gone").map_err(|e| e.kind());
        (result, out.into_inner())
    });
    assert_eq!(
        result,
        Err(io::ErrorKind::BrokenPipe),
        "the second write failed with BrokenPipe (the peer has gone): return that error"
    );
    assert_eq!(text(&written), "pee", "the first write took 3 bytes");
}

// ---------------------------------------------------------------------------------------------
// Step 3: echo a raw byte stream

/// A thread running the student's `echo_raw` on the server end of a fresh connection.
fn echo_thread(uppercase: bool) -> (TcpStream, ServerThread<io::Result<u64>>) {
    let (client, server) = tcp_pair();
    let thread = ServerThread::spawn("the server thread (echo_raw)", move || {
        lab::echo_raw(&mut &server, &mut &server, uppercase)
    });
    (client, thread)
}

#[test]
fn step3_echoes_a_message_and_returns_at_eof() {
    let (mut client, mut thread) = echo_thread(false);
    client.write_all(b"hello, stream").expect("send");
    client.shutdown(Shutdown::Write).expect("half-close");
    let echo = thread
        .read_to_eof_from(&client, "the echo of \"hello, stream\", then EOF")
        .unwrap_or_else(|(e, got)| panic!("the stream failed ({e}) after {:?}", text(&got)));
    assert_eq!(text(&echo), "hello, stream");
    let result = thread.join_within(Duration::from_secs(5));
    assert_eq!(
        result.map_err(|e| e.to_string()),
        Ok(13),
        "echo_raw must return the number of bytes echoed once read returns 0 (see Lab 02 § End of stream)"
    );
}

#[test]
fn step3_echoes_before_the_client_closes() {
    let (mut client, mut thread) = echo_thread(false);
    client.write_all(b"ping").expect("send");
    let echo = thread.read_exact_from(
        &client,
        4,
        "the echo of \"ping\" while the connection stays open (write back what each read returns, \
         at once; see Lab 02 § Short reads and short writes)",
    );
    assert_eq!(text(&echo), "ping");
    client.write_all(b"pong").expect("send more");
    assert_eq!(
        text(&thread.read_exact_from(&client, 4, "the echo of \"pong\"")),
        "pong"
    );
    client.shutdown(Shutdown::Write).expect("half-close");
    let result = thread.join_within(Duration::from_secs(5));
    assert_eq!(result.map_err(|e| e.to_string()), Ok(8));
}

#[test]
fn step3_uppercase_changes_only_ascii_letters() {
    let (mut client, mut thread) = echo_thread(true);
    let request = "Hello, TCP 7896! é";
    client.write_all(request.as_bytes()).expect("send");
    client.shutdown(Shutdown::Write).expect("half-close");
    let echo = thread
        .read_to_eof_from(&client, "the uppercase echo")
        .unwrap_or_else(|(e, _)| panic!("the stream failed: {e}"));
    assert_eq!(text(&echo), "HELLO, TCP 7896! é", "sent {request:?}");
}

#[test]
fn step3_echoes_8_mib_through_short_writes_while_the_client_reads() {
    const LEN: usize = 8 * 1024 * 1024;
    let (client, server) = tcp_pair();
    let mut thread = ServerThread::spawn("the server thread (echo_raw, short writes)", move || {
        // The server's writes take a random 1 to 64 KiB each, as a busy socket's might.
        let mut rng = fastrand::Rng::with_seed(8);
        let ops = std::iter::repeat_with(move || PartialOp::Limited(rng.usize(1..=64 * 1024)));
        let mut output = PartialWrite::new(&server, ops);
        lab::echo_raw(&mut &server, &mut output, false)
    });
    let sender = client.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        let mut sender = sender;
        sender
            .set_write_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let result = sender.write_all(&pattern(LEN));
        let _ = sender.shutdown(Shutdown::Write);
        result
    });
    let echo = thread
        .read_to_eof_from(&client, "the echo of 8 MiB")
        .unwrap_or_else(|(e, got)| panic!("the stream failed ({e}) after {} bytes", got.len()));
    writer
        .join()
        .expect("writer thread")
        .expect("the test could send 8 MiB while reading the echo");
    assert!(
        echo.len() == LEN && echo == pattern(LEN),
        "sent 8 MiB, the echo differs: {}. The server's writes took fewer bytes than offered; \
         write every chunk whole (see Lab 02 § Short reads and short writes)",
        first_difference(&echo, &pattern(LEN))
    );
    let result = thread.join_within(Duration::from_secs(5));
    assert_eq!(result.map_err(|e| e.to_string()), Ok(LEN as u64));
}

#[test]
fn step3_returns_the_read_timeout_error() {
    let (client, server) = tcp_pair();
    server
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let started = Instant::now();
    let thread = ServerThread::spawn("the server thread (echo_raw)", move || {
        lab::echo_raw(&mut &server, &mut &server, false).map_err(|e| e.kind())
    });
    let result = thread.join_within(Duration::from_millis(200) + SLACK);
    assert!(
        matches!(result, Err(io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)),
        "the client sent nothing for longer than the read timeout: echo_raw must return the \
         timeout error, not treat it as EOF or wait again; got {result:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(200) + SLACK);
    drop(client);
}

// ---------------------------------------------------------------------------------------------
// Step 4: read a line, with a cap

/// Calls the student's `read_line` repeatedly on `input` (max `max`) until it returns `None`
/// or an error, at most 10 times; returns what each call gave.
fn read_lines(input: impl Read + Send + 'static, max: usize) -> Vec<Result<Option<String>, io::ErrorKind>> {
    within(CALL_LIMIT, "lab::read_line", move || {
        let mut reader = BufReader::with_capacity(64, input);
        let mut out = Vec::new();
        for _ in 0..10 {
            let got = lab::read_line(&mut reader, max)
                .map(|l| l.map(|l| text(&l)))
                .map_err(|e| e.kind());
            let done = !matches!(got, Ok(Some(_)));
            out.push(got);
            if done {
                break;
            }
        }
        out
    })
}

#[test]
fn step4_reads_lines_that_arrive_in_pieces() {
    let input = PartialRead::new(Cursor::new(b"first line\nsecond\n".to_vec()), pieces(4));
    assert_eq!(
        read_lines(input, 100),
        [Ok(Some("first line".into())), Ok(Some("second".into())), Ok(None)],
        "sent \"first line\\nsecond\\n\" in 1-3 byte reads: one read is not one line; keep \
         reading until the newline (see Lab 02 § Byte order and framing)"
    );
}

#[test]
fn step4_two_lines_in_one_read_are_two_lines() {
    assert_eq!(
        read_lines(Cursor::new(b"one\ntwo\n".to_vec()), 100),
        [Ok(Some("one".into())), Ok(Some("two".into())), Ok(None)],
        "\"one\\ntwo\\n\" arrives in one read and holds two lines"
    );
}

#[test]
fn step4_a_line_of_max_line_bytes_fits_and_one_more_does_not() {
    assert_eq!(
        read_lines(Cursor::new(b"0123456789\n".to_vec()), 10),
        [Ok(Some("0123456789".into())), Ok(None)],
        "a 10-byte line (plus its newline) fits max_line = 10"
    );
    assert_eq!(
        read_lines(Cursor::new(b"0123456789X\n".to_vec()), 10),
        [Err(io::ErrorKind::InvalidData)],
        "an 11-byte line is over max_line = 10: InvalidData (see Lab 02 § Byte order and framing)"
    );
}

/// A reader that counts the bytes taken from it.
struct Counting<R> {
    inner: R,
    taken: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.taken.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[test]
fn step4_an_endless_line_is_refused_without_reading_it_all() {
    const SENT: u64 = 64 * 1024 * 1024;
    let taken = Arc::new(AtomicU64::new(0));
    let input = Counting {
        inner: io::repeat(b'x').take(SENT),
        taken: Arc::clone(&taken),
    };
    let result = within(
        CALL_LIMIT,
        "lab::read_line on 64 MiB without a newline",
        move || {
            let mut reader = BufReader::new(input);
            lab::read_line(&mut reader, 1000)
                .map(|l| l.map(|l| l.len()))
                .map_err(|e| e.kind())
        },
    );
    let taken = taken.load(Ordering::Relaxed);
    assert_eq!(
        result,
        Err(io::ErrorKind::InvalidData),
        "64 MiB without a newline, max_line = 1000: the line is too long"
    );
    assert!(
        taken <= 64 * 1024,
        "read_line took {taken} bytes from the stream to refuse a line over 1000 bytes: stop \
         after max_line + 1 bytes, or a client can make the server buffer without bound \
         (see Lab 02 § Byte order and framing)"
    );
}

#[test]
fn step4_eof_inside_a_line_is_unexpected_eof() {
    assert_eq!(
        read_lines(Cursor::new(b"done\nhalf a li".to_vec()), 100),
        [Ok(Some("done".into())), Err(io::ErrorKind::UnexpectedEof)],
        "the stream ended after \"half a li\" without a newline: that line is incomplete"
    );
}

#[test]
fn step4_eof_before_a_line_is_the_end() {
    assert_eq!(
        read_lines(Cursor::new(Vec::new()), 100),
        [Ok(None)],
        "an empty stream has no line: return Ok(None) (see Lab 02 § End of stream)"
    );
}

// ---------------------------------------------------------------------------------------------
// Step 5: write a length-prefixed frame

fn written_frame(payload: Vec<u8>) -> io::Result<Vec<u8>> {
    within(CALL_LIMIT, "lab::write_frame", move || {
        let mut out = Vec::new();
        lab::write_frame(&mut out, &payload).map(|()| out)
    })
}

#[test]
fn step5_hello_is_the_bytes_java_writeutf_writes() {
    let bytes = written_frame(b"hello".to_vec()).expect("write_frame");
    assert_eq!(
        bytes,
        [0x00, 0x05, b'h', b'e', b'l', b'l', b'o'],
        "writeUTF(\"hello\") sends 00 05 then the 5 bytes: the length first, high byte first \
         (see Lab 02 § Byte order and framing)"
    );
}

#[test]
fn step5_the_length_prefix_is_big_endian() {
    let payload = pattern(258);
    let bytes = written_frame(payload.clone()).expect("write_frame");
    assert!(bytes.len() >= 2, "a frame has at least 2 bytes, got {bytes:?}");
    assert_eq!(
        (bytes[0], bytes[1]),
        (0x01, 0x02),
        "258 = 0x0102 must go out as 01 02 (big-endian, network byte order); 02 01 is \
         little-endian (see Lab 02 § Byte order and framing)"
    );
    assert!(
        bytes[2..] == payload[..],
        "the payload must follow the prefix unchanged"
    );
}

#[test]
fn step5_empty_and_largest_payloads() {
    assert_eq!(
        written_frame(Vec::new()).expect("empty"),
        [0, 0],
        "an empty frame is 00 00"
    );
    let largest = written_frame(vec![b'z'; 65_535]).expect("a 65 535-byte frame is allowed");
    assert_eq!((largest.len(), largest[0], largest[1]), (65_537, 0xff, 0xff));
    let result = within(CALL_LIMIT, "lab::write_frame", move || {
        let mut out = Vec::new();
        let r = lab::write_frame(&mut out, &[b'z'; 65_536]).map_err(|e| e.kind());
        (r, out.len())
    });
    assert_eq!(
        result,
        (Err(io::ErrorKind::InvalidInput), 0),
        "65 536 bytes do not fit a 2-byte length: return InvalidInput and write nothing \
         (a wrapped length would desynchronise the stream)"
    );
}

#[test]
fn step5_a_frame_survives_short_writes() {
    let got = within(CALL_LIMIT, "lab::write_frame", move || {
        let mut out = PartialWrite::new(Vec::new(), pieces(5));
        lab::write_frame(&mut out, b"short writes").map(|()| out.into_inner())
    })
    .expect("write_frame");
    assert_eq!(
        got,
        frame(b"short writes"),
        "through a writer that takes 1-3 bytes per call the frame was cut (use write_fully)"
    );
}

// ---------------------------------------------------------------------------------------------
// Step 6: read a length-prefixed frame

/// Calls the student's `read_frame` until it returns `None` or an error, at most 10 times.
fn read_frames(input: impl Read + Send + 'static) -> Vec<Result<Option<Vec<u8>>, io::ErrorKind>> {
    within(CALL_LIMIT, "lab::read_frame", move || {
        let mut input = input;
        let mut out = Vec::new();
        for _ in 0..10 {
            let got = lab::read_frame(&mut input).map_err(|e| e.kind());
            let done = !matches!(got, Ok(Some(_)));
            out.push(got);
            if done {
                break;
            }
        }
        out
    })
}

#[test]
fn step6_reads_a_hand_built_big_endian_frame() {
    let payload = pattern(258);
    let mut bytes = vec![0x01, 0x02];
    bytes.extend_from_slice(&payload);
    let got = read_frames(Cursor::new(bytes));
    assert_eq!(
        got.first()
            .and_then(|r| r.as_ref().ok())
            .and_then(|f| f.as_ref())
            .map(Vec::len),
        Some(258),
        "the prefix 01 02 means 258 bytes (big-endian); read as little-endian it would be 513 \
         (see Lab 02 § Byte order and framing); got {:?}",
        got.iter()
            .map(|r| r.as_ref().map(|f| f.as_ref().map(Vec::len)))
            .collect::<Vec<_>>()
    );
    assert_eq!(got[0], Ok(Some(payload)));
    assert_eq!(got[1], Ok(None));
}

#[test]
fn step6_a_length_split_across_reads() {
    let mut bytes = frame(b"hello");
    bytes.extend(frame(b"world"));
    // Every read returns a single byte: the 2-byte length always arrives in two pieces.
    let input = PartialRead::new(Cursor::new(bytes), std::iter::repeat(PartialOp::Limited(1)));
    assert_eq!(
        read_frames(input),
        [Ok(Some(b"hello".to_vec())), Ok(Some(b"world".to_vec())), Ok(None)],
        "with 1-byte reads, one read of the 2-byte length returns only its first byte: keep \
         reading until you have both (see Lab 02 § Short reads and short writes)"
    );
}

#[test]
fn step6_frames_in_pieces_of_1_to_3_bytes() {
    let payloads = [Vec::new(), b"a".to_vec(), pattern(300), pattern(65_535)];
    let bytes: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
    let input = PartialRead::new(Cursor::new(bytes), pieces(6));
    let got = read_frames(input);
    let lens: Vec<_> = got
        .iter()
        .map(|r| r.as_ref().map(|f| f.as_ref().map(Vec::len)))
        .collect();
    assert_eq!(
        lens,
        [
            Ok(Some(0)),
            Ok(Some(1)),
            Ok(Some(300)),
            Ok(Some(65_535)),
            Ok(None)
        ],
        "four frames (0, 1, 300 and 65 535 bytes) arriving 1-3 bytes per read"
    );
    for (got, sent) in got.iter().zip(&payloads) {
        assert!(
            got.as_ref().ok().and_then(|f| f.as_ref()) == Some(sent),
            "a payload changed"
        );
    }
}

#[test]
fn step6_eof_before_a_frame_is_the_end() {
    assert_eq!(
        read_frames(Cursor::new(Vec::new())),
        [Ok(None)],
        "an empty stream holds no frame: Ok(None) (see Lab 02 § End of stream)"
    );
}

#[test]
fn step6_eof_inside_a_frame_is_unexpected_eof() {
    assert_eq!(
        read_frames(Cursor::new(vec![0x00])),
        [Err(io::ErrorKind::UnexpectedEof)],
        "the stream ended after 1 byte of the length"
    );
    assert_eq!(
        read_frames(Cursor::new(vec![0x00, 0x05, b'h', b'e'])),
        [Err(io::ErrorKind::UnexpectedEof)],
        "the stream ended after 2 of 5 payload bytes"
    );
}

// ---------------------------------------------------------------------------------------------
// Step 7: serve one connection

#[test]
fn step7_two_lines_in_one_write_get_two_replies() {
    let (addr, mut thread) = connection_thread(config(lab::Framing::Line, false));
    let mut client = tcp_connect(addr);
    client
        .write_all(b"one\ntwo\n")
        .expect("send both lines in one write");
    let replies = thread.read_exact_from(&client, 8, "the replies to \"one\\ntwo\\n\"");
    assert_eq!(text(&replies), "one\ntwo\n");
    client.shutdown(Shutdown::Write).expect("half-close");
    let rest = thread.read_to_eof_from(&client, "EOF after the replies");
    assert_eq!(
        rest.map_err(|(e, _)| e.kind()),
        Ok(Vec::new()),
        "nothing more than two replies"
    );
    assert_eq!(
        thread
            .join_within(Duration::from_secs(5))
            .map_err(|e| e.to_string()),
        Ok(2),
        "serve_connection returns the number of lines"
    );
}

#[test]
fn step7_two_frames_in_one_write_get_two_replies() {
    let (addr, mut thread) = connection_thread(config(lab::Framing::Utf, false));
    let mut client = tcp_connect(addr);
    let mut both = frame(b"one");
    both.extend(frame(b"three"));
    client.write_all(&both).expect("send both frames in one write");
    let replies = thread.read_exact_from(&client, both.len(), "the two reply frames");
    assert_eq!(replies, both, "one reply frame per request frame, in order");
    client.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(
        thread
            .join_within(Duration::from_secs(5))
            .map_err(|e| e.to_string()),
        Ok(2)
    );
}

/// Sends `request` through a relay that slices it into 1-3 byte pieces; expects `reply` and
/// then nothing more.
fn through_slicing_relay(framing: lab::Framing, request: &[u8], reply: &[u8]) {
    let (addr, mut thread) = connection_thread(config(framing, false));
    let relay = TcpRelay::start(addr, Shaping::SLICE, Shaping::Intact, 11).expect("relay");
    let mut client = tcp_connect(relay.addr());
    client.write_all(request).expect("send");
    let got = thread.read_exact_from(&client, reply.len(), "the reply to a message sent in pieces");
    assert_eq!(got, reply);
    client.shutdown(Shutdown::Write).expect("half-close");
    let pieces = relay.stats().writes.load(Ordering::Relaxed);
    let rest = thread.read_to_eof_from(&client, "EOF after the one reply");
    assert_eq!(
        rest.map_err(|(e, _)| e.kind()).map(|r| text(&r)),
        Ok(String::new()),
        "the message arrived in {pieces} pieces and must get exactly one reply: one read is \
         not one message (see Lab 02 § Short reads and short writes)"
    );
    assert_eq!(
        thread
            .join_within(Duration::from_secs(5))
            .map_err(|e| e.to_string()),
        Ok(1)
    );
}

#[test]
fn step7_a_line_in_1_to_3_byte_pieces_gets_one_reply() {
    through_slicing_relay(lab::Framing::Line, b"hello, pieces\n", b"hello, pieces\n");
}

#[test]
fn step7_a_frame_in_1_to_3_byte_pieces_gets_one_reply() {
    let request = frame(b"a frame cut into many small pieces");
    through_slicing_relay(lab::Framing::Utf, &request, &request);
}

#[test]
fn step7_coalesced_frames_get_separate_replies() {
    let (addr, mut thread) = connection_thread(config(lab::Framing::Utf, false));
    let window = Duration::from_millis(300);
    let relay = TcpRelay::start(addr, Shaping::Coalesce { window }, Shaping::Intact, 0).expect("relay");
    let mut client = tcp_connect(relay.addr());
    client.write_all(&frame(b"first")).expect("send");
    client.write_all(&frame(b"second")).expect("send");
    let mut expected = frame(b"first");
    expected.extend(frame(b"second"));
    let got = thread.read_exact_from(&client, expected.len(), "two reply frames");
    assert_eq!(
        got, expected,
        "two frames that arrive in one read need two replies"
    );
    client.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(
        thread
            .join_within(Duration::from_secs(5))
            .map_err(|e| e.to_string()),
        Ok(2)
    );
}

#[test]
fn step7_uppercase_in_every_framing() {
    let sent = "Mixed Case, é";
    let expected = "MIXED CASE, é";
    for framing in [lab::Framing::Raw, lab::Framing::Line, lab::Framing::Utf] {
        let (addr, mut thread) = connection_thread(config(framing, true));
        let mut client = tcp_connect(addr);
        let (request, reply) = match framing {
            lab::Framing::Raw => (sent.as_bytes().to_vec(), expected.as_bytes().to_vec()),
            lab::Framing::Line => (
                format!("{sent}\n").into_bytes(),
                format!("{expected}\n").into_bytes(),
            ),
            lab::Framing::Utf => (frame(sent.as_bytes()), frame(expected.as_bytes())),
        };
        client.write_all(&request).expect("send");
        client.shutdown(Shutdown::Write).expect("half-close");
        let got = thread
            .read_to_eof_from(&client, &format!("the {framing} reply"))
            .unwrap_or_else(|(e, _)| panic!("{framing}: the stream failed: {e}"));
        assert_eq!(
            text(&got),
            text(&reply),
            "--framing {framing} --uppercase, sent {sent:?}"
        );
    }
}

#[test]
fn step7_an_overlong_line_ends_the_connection_with_an_error() {
    let config = lab::ServerConfig {
        max_line: 16,
        ..config(lab::Framing::Line, false)
    };
    let (addr, mut thread) = connection_thread(config);
    let mut client = tcp_connect(addr);
    client.write_all(b"short\n").expect("send");
    client.write_all(&[b'x'; 100]).expect("send a 100-byte line");
    client.write_all(b"\n").expect("send");
    let first = thread.read_exact_from(&client, 6, "the reply to \"short\"");
    assert_eq!(text(&first), "short\n");
    let rest = thread.read_to_eof_from(
        &client,
        "the server closing the connection after a 100-byte line (max 16)",
    );
    // The server may close with our bytes unread, which resets the connection: fine too.
    let rest = rest.unwrap_or_else(|(_, got)| got);
    assert!(
        rest.is_empty(),
        "the over-long line must not be echoed, got {:?}",
        text(&rest)
    );
    let result = thread.join_within(Duration::from_secs(5)).map_err(|e| e.kind());
    assert_eq!(
        result,
        Err(io::ErrorKind::InvalidData),
        "a line over max_line ends the connection with InvalidData (see Lab 02 § Byte order and framing)"
    );
}

#[test]
fn step7_raw_mode_echoes_until_the_half_close() {
    let (addr, mut thread) = connection_thread(config(lab::Framing::Raw, false));
    let client = tcp_connect(addr);
    let data = pattern(256 * 1024);
    let writer = {
        let mut sender = client.try_clone().expect("clone");
        let data = data.clone();
        std::thread::spawn(move || {
            let r = sender.write_all(&data);
            let _ = sender.shutdown(Shutdown::Write);
            r
        })
    };
    let echo = thread
        .read_to_eof_from(&client, "the raw echo of 256 KiB, then EOF after our half-close")
        .unwrap_or_else(|(e, got)| panic!("the stream failed ({e}) after {} bytes", got.len()));
    writer.join().expect("writer").expect("send 256 KiB");
    assert!(
        echo == data,
        "raw echo of 256 KiB: {}",
        first_difference(&echo, &data)
    );
    assert_eq!(
        thread
            .join_within(Duration::from_secs(5))
            .map_err(|e| e.to_string()),
        Ok(256 * 1024),
        "in raw mode serve_connection returns the number of bytes echoed"
    );
}

#[test]
fn step7_a_silent_client_is_dropped_after_the_idle_timeout() {
    let idle = Duration::from_millis(300);
    let config = lab::ServerConfig {
        idle_timeout: Some(idle),
        ..config(lab::Framing::Utf, false)
    };
    let (addr, thread) = connection_thread(config);
    let mut client = tcp_connect(addr);
    client
        .write_all(&[0x00, 0x0a, b'a'])
        .expect("send 3 bytes of a 12-byte frame");
    let result = thread.join_within(idle + SLACK);
    assert!(
        result.as_ref().is_err_and(is_timeout),
        "the client sent 1 of 10 payload bytes and went silent: with idle_timeout 300 ms, \
         serve_connection must give up with the timeout error (set the read timeout on the \
         stream first); got {result:?}"
    );
    assert!(read_until_closed(&mut client, "the dropped client").is_empty());
}

/// The section that explains the message timeout.
const MESSAGE_SECTION: &str = "see Lab 02 § Slow clients and the message timeout";

/// Sends `first`, then one byte `b'a'` every 100 ms, until the peer closes the connection or
/// `limit` passes. The pacing is a 100 ms read timeout, which also notices the close (EOF, a
/// reset, or a failed write). Returns when the close was seen (None: never) and the bytes sent.
fn trickle(stream: &mut TcpStream, first: &[u8], limit: Duration) -> (Option<Duration>, usize) {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let mut sent = 0;
    if stream.write_all(first).is_err() {
        return (Some(started.elapsed()), sent);
    }
    sent += first.len();
    let mut buf = [0u8; 64];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            // EOF, a reset, or (unexpectedly) an echo: the server is done with this message.
            _ => return (Some(started.elapsed()), sent),
        }
        if stream.write_all(b"a").is_err() {
            return (Some(started.elapsed()), sent);
        }
        sent += 1;
    }
    (None, sent)
}

/// A `serve_connection` thread with a 1 s idle timeout and a 500 ms message timeout, and a
/// client that trickles `first` then a byte every 100 ms: the connection must end within 4 s,
/// with the message-timeout error.
fn trickled_message_is_cut_off(framing: lab::Framing, first: &[u8], what: &str) {
    let message = Duration::from_millis(500);
    let config = lab::ServerConfig {
        idle_timeout: Some(Duration::from_secs(1)),
        message_timeout: Some(message),
        ..config(framing, false)
    };
    let (addr, thread) = connection_thread(config);
    let mut client = tcp_connect(addr);
    let limit = Duration::from_secs(4);
    let (closed, sent) = trickle(&mut client, first, limit);
    // On a skeleton the thread panicked: report its message first.
    let result = thread.join_within(if closed.is_some() { SLACK } else { IO_TIMEOUT });
    assert!(
        closed.is_some(),
        "{framing} framing, idle_timeout 1 s, message_timeout 500 ms: the client sent {what} and \
         then one more byte every 100 ms ({sent} bytes in {} ms) and the connection was still \
         open. Each read made progress within the idle timeout, so only a deadline for the whole \
         message stops this: before each read set the timeout to min(idle, time left) ({MESSAGE_SECTION}); \
         serve_connection returned {result:?} once the client stopped",
        limit.as_millis()
    );
    let error = match result {
        Err(e) => e,
        Ok(count) => panic!(
            "{framing} framing: a message trickled past the 500 ms message timeout must end the \
             connection with an error, but serve_connection returned Ok({count}) ({MESSAGE_SECTION})"
        ),
    };
    assert!(
        error.kind() == io::ErrorKind::TimedOut && lab::message_timeout_of(&error) == Some(message),
        "{framing} framing: the connection of a client that trickled {what} past the 500 ms \
         message timeout ended with {error:?} ({:?}); expected the error of \
         message_timed_out(500 ms): kind TimedOut, telling it apart from an idle timeout \
         ({MESSAGE_SECTION})",
        error.kind()
    );
}

#[test]
fn step7_a_trickled_line_is_cut_off_by_the_message_timeout() {
    trickled_message_is_cut_off(lab::Framing::Line, b"a", "a line without its newline");
}

#[test]
fn step7_a_trickled_frame_is_cut_off_by_the_message_timeout() {
    trickled_message_is_cut_off(lab::Framing::Utf, &[0x00, 0xff], "the length of a 255-byte frame");
}

#[test]
fn step7_server_binary_serves_the_next_client_while_one_trickles() {
    let server = ServerProcess::start(
        BIN,
        &[
            "server",
            "--port",
            "0",
            "--framing",
            "line",
            "--idle-timeout",
            "1000",
            "--message-timeout",
            "1000",
        ],
    );
    let mut trickler = tcp_connect(server.addr());
    let me = local(&trickler).to_string();
    // The trickler is first in the backlog, so the iterative server serves it first.
    let trickling = ServerThread::spawn("the trickling client", move || {
        trickle(&mut trickler, b"a", Duration::from_secs(8))
    });
    let started = Instant::now();
    let mut next = tcp_connect(server.addr());
    next.write_all(b"my turn\n").expect("send");
    next.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut reply = [0u8; 8];
    let got = next.read_exact(&mut reply);
    assert!(
        got.is_ok() && &reply == b"my turn\n",
        "server --framing line --idle-timeout 1000 --message-timeout 1000: one client trickles a \
         line one byte per 100 ms; a second client sent \"my turn\\n\" and after {} ms got {got:?} \
         {:?} instead of its echo. The trickler's line must be cut off after 1000 ms, whatever the \
         idle timeout ({MESSAGE_SECTION})",
        started.elapsed().as_millis(),
        text(&reply)
    );
    let (closed, _) = trickling.join_within(Duration::from_secs(10));
    assert!(
        closed.is_some(),
        "the trickling client's connection was never closed ({MESSAGE_SECTION})"
    );
    let lines = server.expect_stderr_lines(&me, 2, Duration::from_secs(5));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("a message took longer than the message timeout (1000 ms)")),
        "the trickler's connection must end with a log line saying \"a message took longer than \
         the message timeout (1000 ms)\", not the idle timeout's; got {lines:?} ({MESSAGE_SECTION})"
    );
}

// ---------------------------------------------------------------------------------------------
// Step 8: the iterative accept loop

/// What a `serve` thread logged, reduced to what tests compare.
#[derive(Debug, PartialEq)]
enum Logged {
    Accepted(SocketAddr),
    Closed(SocketAddr, u64),
    Failed(SocketAddr, io::ErrorKind),
    AcceptFailed,
    AcceptBackoff,
}

type ServeLog = (Result<u64, String>, Vec<Logged>);

fn serve_thread(config: lab::ServerConfig) -> (SocketAddr, ServerThread<ServeLog>) {
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let thread = ServerThread::spawn("the server thread (serve)", move || {
        let mut log = Vec::new();
        let served = lab::serve(&listener, &config, |event| {
            log.push(match event {
                lab::Event::Accepted { peer } => Logged::Accepted(*peer),
                lab::Event::Closed { peer, count, .. } => Logged::Closed(*peer, *count),
                lab::Event::Failed { peer, error } => Logged::Failed(*peer, error.kind()),
                lab::Event::AcceptFailed { .. } => Logged::AcceptFailed,
                lab::Event::AcceptBackoff { .. } => Logged::AcceptBackoff,
            });
        });
        (served.map_err(|e| e.to_string()), log)
    });
    (addr, thread)
}

fn local(stream: &TcpStream) -> SocketAddr {
    stream.local_addr().expect("local address")
}

#[test]
fn step8_serves_clients_one_after_another_and_logs_each() {
    let (addr, mut thread) = serve_thread(lab::ServerConfig {
        max_connections: Some(2),
        ..config(lab::Framing::Line, false)
    });
    let mut a = tcp_connect(addr);
    a.write_all(b"a1\n").expect("send");
    assert_eq!(
        text(&thread.read_exact_from(&a, 3, "the reply to client A")),
        "a1\n"
    );
    a.shutdown(Shutdown::Write).expect("half-close");
    let _ = thread.read_to_eof_from(&a, "the server closing A's connection after A's EOF");
    let mut b = tcp_connect(addr);
    b.write_all(b"b1\nb2\n").expect("send");
    assert_eq!(
        text(&thread.read_exact_from(&b, 6, "the replies to client B")),
        "b1\nb2\n"
    );
    b.shutdown(Shutdown::Write).expect("half-close");
    let (served, log) = thread.join_within(Duration::from_secs(5));
    assert_eq!(served, Ok(2), "serve must return after max_connections = 2");
    assert_eq!(
        log,
        [
            Logged::Accepted(local(&a)),
            Logged::Closed(local(&a), 1),
            Logged::Accepted(local(&b)),
            Logged::Closed(local(&b), 2),
        ],
        "log Accepted when a connection is accepted and Closed (with the count) when it ends"
    );
}

#[test]
fn step8_a_failed_connection_is_logged_and_the_next_client_served() {
    let (addr, mut thread) = serve_thread(lab::ServerConfig {
        max_connections: Some(2),
        max_line: 8,
        ..config(lab::Framing::Line, false)
    });
    let mut a = tcp_connect(addr);
    a.write_all(b"this line is much too long\n").expect("send");
    let _ = read_until_closed(&mut a, "the connection with an over-long line");
    thread.check();
    let mut b = tcp_connect(addr);
    b.write_all(b"fine\n").expect("send");
    assert_eq!(
        text(&thread.read_exact_from(&b, 5, "the reply to the next client after a failed connection")),
        "fine\n"
    );
    b.shutdown(Shutdown::Write).expect("half-close");
    let (served, log) = thread.join_within(Duration::from_secs(5));
    assert_eq!(served, Ok(2), "a failed connection must not stop serve");
    assert_eq!(
        log,
        [
            Logged::Accepted(local(&a)),
            Logged::Failed(local(&a), io::ErrorKind::InvalidData),
            Logged::Accepted(local(&b)),
            Logged::Closed(local(&b), 1),
        ],
        "a connection that fails is logged as Failed, and serve goes on"
    );
}

#[test]
fn step8_a_second_client_waits_while_the_first_is_served() {
    let (addr, mut thread) = serve_thread(lab::ServerConfig {
        max_connections: Some(2),
        ..config(lab::Framing::Raw, false)
    });
    let mut a = tcp_connect(addr);
    a.write_all(b"A").expect("send");
    assert_eq!(text(&thread.read_exact_from(&a, 1, "A's echo")), "A");
    // B connects (the handshake completes in the backlog) and sends while A is still served.
    let mut b = tcp_connect(addr);
    b.write_all(b"B").expect("send");
    b.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buf = [0u8; 1];
    let early = b.read(&mut buf);
    assert!(
        early.as_ref().is_err_and(is_timeout),
        "B got {early:?} while A was still connected: this server is iterative, one connection \
         at a time (see Lab 02 § Iterative servers); Lab 03 serves clients concurrently"
    );
    set_stream_timeouts(&b);
    a.shutdown(Shutdown::Write).expect("A half-closes");
    let _ = thread.read_to_eof_from(&a, "the end of A's connection");
    assert_eq!(
        text(&thread.read_exact_from(&b, 1, "B's echo once A has finished")),
        "B"
    );
    b.shutdown(Shutdown::Write).expect("half-close");
    let (served, _) = thread.join_within(Duration::from_secs(5));
    assert_eq!(served, Ok(2));
}

#[test]
fn step8_server_binary_closes_an_overlong_line_and_serves_the_next_client() {
    let server = ServerProcess::start(
        BIN,
        &["server", "--port", "0", "--framing", "line", "--max-line", "16"],
    );
    let mut first = tcp_connect(server.addr());
    let me = local(&first).to_string();
    first.write_all(&[b'x'; 100]).expect("send");
    first.write_all(b"\n").expect("send");
    let echoed = read_until_closed(
        &mut first,
        "the server closing a connection with a 100-byte line (--max-line 16)",
    );
    assert!(
        echoed.is_empty(),
        "the over-long line was answered: {:?}",
        text(&echoed)
    );
    let line = server.expect_stderr(&me, Duration::from_secs(5));
    let logged = server.expect_stderr_lines(&me, 2, Duration::from_secs(5));
    assert!(
        logged.iter().any(|l| l.contains("16")),
        "the log must say why {me} was closed (a line longer than 16 bytes): {line:?}, {logged:?}"
    );
    let mut next = tcp_connect(server.addr());
    next.write_all(b"still there?\n").expect("send");
    assert_eq!(
        text(&read_reply(&mut next, 13, "the next client's reply")),
        "still there?\n"
    );
}

#[test]
fn step8_server_binary_survives_a_client_that_resets_mid_frame() {
    let server = ServerProcess::start(BIN, &["server", "--port", "0", "--framing", "utf"]);
    let mut rude = tcp_connect(server.addr());
    let me = local(&rude).to_string();
    rude.write_all(&[0x00, 0x32]).expect("send a 50-byte length");
    rude.write_all(&[b'r'; 10]).expect("and 10 of the bytes");
    server.expect_stderr(&format!("{me}: connected"), Duration::from_secs(5));
    reset(rude);
    server.expect_stderr_lines(&me, 2, Duration::from_secs(5));
    let mut next = tcp_connect(server.addr());
    next.write_all(&frame(b"after the reset")).expect("send");
    let reply = read_reply(&mut next, 17, "a reply frame after another client's reset");
    assert_eq!(reply, frame(b"after the reset"));
}

#[test]
fn step8_server_binary_drops_a_stalled_client() {
    let server = ServerProcess::start(
        BIN,
        &[
            "server",
            "--port",
            "0",
            "--framing",
            "utf",
            "--idle-timeout",
            "300",
        ],
    );
    let mut stalled = tcp_connect(server.addr());
    let me = local(&stalled).to_string();
    stalled
        .write_all(&[0x00, 0x14, b'a'])
        .expect("send 1 of 20 payload bytes");
    let started = Instant::now();
    let mut next = tcp_connect(server.addr());
    next.write_all(&frame(b"my turn")).expect("send");
    let reply = read_reply(
        &mut next,
        9,
        "a reply while another client stalls (--idle-timeout 300)",
    );
    assert_eq!(reply, frame(b"my turn"));
    assert!(
        started.elapsed() < Duration::from_millis(300) + SLACK,
        "the next client waited {:?}",
        started.elapsed()
    );
    server.expect_stderr_lines(&me, 2, Duration::from_secs(5));
    assert!(read_until_closed(&mut stalled, "the stalled client's connection").is_empty());
}

#[test]
fn step8_server_binary_uppercase_in_every_framing() {
    for framing in ["raw", "line", "utf"] {
        let server = ServerProcess::start(
            BIN,
            &["server", "--port", "0", "--framing", framing, "--uppercase"],
        );
        let mut client = tcp_connect(server.addr());
        let (request, reply) = match framing {
            "raw" => (b"make me loud".to_vec(), b"MAKE ME LOUD".to_vec()),
            "line" => (b"make me loud\n".to_vec(), b"MAKE ME LOUD\n".to_vec()),
            _ => (frame(b"make me loud"), frame(b"MAKE ME LOUD")),
        };
        client.write_all(&request).expect("send");
        let got = read_reply(
            &mut client,
            reply.len(),
            &format!("the --framing {framing} --uppercase reply"),
        );
        assert_eq!(text(&got), text(&reply), "--framing {framing} --uppercase");
    }
}

#[test]
fn step8_server_binary_exits_after_max_connections() {
    let mut server = ServerProcess::start(BIN, &["server", "--port", "0", "--max-connections", "2"]);
    for msg in ["one", "two"] {
        let mut client = tcp_connect(server.addr());
        client.write_all(msg.as_bytes()).expect("send");
        client.shutdown(Shutdown::Write).expect("half-close");
        assert_eq!(text(&read_until_closed(&mut client, "the echo")), msg);
    }
    let status = server.wait_exit(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "with --max-connections 2 the server must exit 0 after two connections; status {status:?}"
    );
}

/// Runs out of descriptors on purpose: lowers the soft descriptor limit of the running server
/// (`prlimit`, from outside: never in the test process) to the lowest number it does not hold,
/// so that its next `accept` fails with `EMFILE`, and lets a client wait; then restores it.
///
/// A blocking `accept` on Linux takes its descriptor number before it waits, so the call in
/// progress when the limit drops still succeeds: a client that connects and leaves at once
/// uses it up, and the `accept` after that fails.
#[cfg(target_os = "linux")]
#[test]
fn step8_server_binary_backs_off_when_out_of_descriptors_and_serves_on() {
    use common::descriptors;
    const SECTION: &str = "see Lab 02 § Step 8: The iterative accept loop";
    let mut server = ServerProcess::start(BIN, &["server", "--port", "0", "--framing", "line"]);
    let pid = server.id();
    let baseline = descriptors::open_descriptors(pid).map_or(usize::MAX, |fds| fds.len());
    let mut first = tcp_connect(server.addr());
    let me = local(&first).to_string();
    first.write_all(b"first\n").expect("send");
    assert_eq!(
        text(&read_reply(&mut first, 6, "the first client's echo")),
        "first\n"
    );
    drop(first);
    server.expect_stderr(&format!("{me}: closed"), Duration::from_secs(5));
    // Until the server's end of that connection is closed, its number is not free.
    let _ = descriptors::await_at_most(pid, baseline, Duration::from_secs(5));
    if !descriptors::prlimit_available() {
        common::testing::notice("step8 descriptor exhaustion: skipped, prlimit(1) is not installed");
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
        set_stream_timeouts(stream);
        let _ = stream.write_all(b"waiting\n");
    }
    let steps = format!(
        "1. a first client was served and left\n\
         2. the server's descriptor limit was lowered to {free} (prlimit): once the accept in \
         progress has returned, the next one fails with EMFILE, too many open files\n\
         3. a client connected and left at once; another connected (it waits in the backlog) \
         and sent \"waiting\\n\""
    );
    if let Err(e) = descriptors::await_backoff(&mut server, 2, lowered, Duration::from_secs(5)) {
        panic!(
            "{steps}\nexpected: the server logs Event::AcceptBackoff (\"accept failed: ...; backing \
             off 100 ms\"), sleeps ACCEPT_BACKOFF and calls accept again, twice or more while the \
             limit lasts\ngot: {e}\n({SECTION})"
        );
    }
    descriptors::set_soft_limit(pid, original).unwrap_or_else(|e| panic!("test set-up: {e}"));
    let mut waiting = waiting.unwrap_or_else(|e| panic!("{steps}\ngot: the client could not connect: {e}"));
    let mut echo = [0u8; 8];
    if let Err(e) = waiting.read_exact(&mut echo) {
        panic!(
            "{steps}\n4. the limit was restored to {original}\nexpected: the waiting client is accepted \
             and gets its echo within {} ms (the server backs off, it does not give up)\ngot: {e}\n({SECTION})",
            IO_TIMEOUT.as_millis()
        );
    }
    assert_eq!(text(&echo), "waiting\n", "the waiting client's echo");
    drop(waiting);
    let mut next = tcp_connect(server.addr());
    next.write_all(b"and the next\n").expect("send");
    assert_eq!(
        text(&read_reply(
            &mut next,
            13,
            "a new client's echo once descriptors are free again"
        )),
        "and the next\n"
    );
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "the server exited after the descriptor shortage ({SECTION})"
    );
}

// ---------------------------------------------------------------------------------------------
// Step 9: connect

#[test]
fn step9_connects_and_sets_both_timeouts() {
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let timeout = Duration::from_millis(3000);
    let stream = within(CALL_LIMIT, "lab::connect", move || lab::connect(&[addr], timeout)).expect("connect");
    assert_eq!(
        stream.peer_addr().expect("peer"),
        addr,
        "connected to the wrong endpoint"
    );
    assert_eq!(
        (
            stream.read_timeout().ok().flatten(),
            stream.write_timeout().ok().flatten()
        ),
        (Some(timeout), Some(timeout)),
        "(read, write) timeouts: a client without them can wait forever for a silent server \
         (see Lab 02 § Connection set-up)"
    );
}

#[test]
fn step9_a_closed_port_is_refused_at_once() {
    let (_holder, addr) = closed_port();
    let started = Instant::now();
    let result = within(CALL_LIMIT, "lab::connect", move || {
        lab::connect(&[addr], Duration::from_secs(5)).map_err(|e| e.kind())
    });
    assert_eq!(
        result.err(),
        Some(io::ErrorKind::ConnectionRefused),
        "nothing listens on {addr}: the connection is refused"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1000) + SLACK,
        "a refused connection fails at once, not after the timeout; took {:?}",
        started.elapsed()
    );
}

#[test]
fn step9_tries_each_address_in_turn() {
    let (_holder, closed) = closed_port();
    let listener = tcp_listener();
    let open = addr_of(&listener);
    let stream = within(CALL_LIMIT, "lab::connect", move || {
        lab::connect(&[closed, open], Duration::from_secs(3))
    })
    .unwrap_or_else(|e| {
        panic!("the first address refuses, the second listens: connect must try both; got {e}")
    });
    assert_eq!(stream.peer_addr().expect("peer"), open);
}

// ---------------------------------------------------------------------------------------------
// Step 10: the client's exchange

/// A test-side server (not the student's code) for one connection: `respond` gets the accepted
/// stream (5 s timeouts) and returns what the test wants to check.
fn test_server<T: Send + 'static>(
    respond: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (SocketAddr, ServerThread<T>) {
    let listener = tcp_listener();
    let addr = addr_of(&listener);
    let thread = ServerThread::spawn("the test's server", move || {
        let (stream, _) = listener.accept().expect("accept");
        set_stream_timeouts(&stream);
        respond(stream)
    });
    (addr, thread)
}

fn exchange(
    addr: SocketAddr,
    framing: lab::Framing,
    messages: &[&str],
    what: &str,
) -> io::Result<Vec<String>> {
    let stream = tcp_connect(addr);
    let messages: Vec<Vec<u8>> = messages.iter().map(|m| m.as_bytes().to_vec()).collect();
    within(Duration::from_secs(4), what, move || {
        let messages: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        lab::exchange(&stream, framing, &messages, lab::DEFAULT_MAX_REPLY)
            .map(|r| r.iter().map(|m| text(m)).collect())
    })
}

#[test]
fn step10_raw_half_closes_then_reads_to_eof() {
    // This server echoes only once it has read the client's EOF, then closes.
    let (addr, thread) = test_server(|mut s| {
        let mut request = Vec::new();
        s.read_to_end(&mut request)
            .expect("the request, then the client's EOF");
        s.write_all(&request).expect("echo");
        request
    });
    let replies = exchange(
        addr,
        lab::Framing::Raw,
        &["hello, ", "stream"],
        "lab::exchange in raw mode (this server echoes once it reads your EOF: did you \
         shutdown(Write) after sending? see Lab 02 § End of stream)",
    );
    assert_eq!(
        replies.map_err(|e| e.to_string()),
        Ok(vec!["hello, stream".to_owned()]),
        "raw mode sends the messages back to back and returns everything read until EOF as one reply"
    );
    assert_eq!(text(&thread.join_within(Duration::from_secs(5))), "hello, stream");
}

#[test]
fn step10_line_mode_one_reply_per_message() {
    let (addr, thread) = test_server(|s| {
        let mut reader = BufReader::new(&s);
        let mut received = Vec::new();
        let mut line = String::new();
        while io::BufRead::read_line(&mut reader, &mut line).expect("a request line") > 0 {
            received.push(line.clone());
            (&s).write_all(format!("reply to {line}").as_bytes())
                .expect("reply");
            line.clear();
        }
        received
    });
    let replies = exchange(
        addr,
        lab::Framing::Line,
        &["one", "two"],
        "lab::exchange in line mode",
    );
    assert_eq!(
        replies.map_err(|e| e.to_string()),
        Ok(vec!["reply to one".to_owned(), "reply to two".to_owned()]),
        "each message is sent as a line and each reply line returned without its newline"
    );
    assert_eq!(
        thread.join_within(Duration::from_secs(5)),
        ["one\n", "two\n"],
        "what the server received"
    );
}

#[test]
fn step10_utf_mode_sends_and_reads_big_endian_frames() {
    let (addr, thread) = test_server(|mut s| {
        let mut request = [0u8; 4];
        s.read_exact(&mut request).expect("a 4-byte request frame");
        // A 258-byte reply: prefix 01 02, which is 513 when read as little-endian.
        let mut reply = vec![0x01, 0x02];
        reply.extend(std::iter::repeat_n(b'r', 258));
        s.write_all(&reply).expect("reply");
        request
    });
    let replies = exchange(addr, lab::Framing::Utf, &["hi"], "lab::exchange in utf mode");
    let request = thread.join_within(Duration::from_secs(5));
    assert_eq!(
        request,
        [0x00, 0x02, b'h', b'i'],
        "the frame for \"hi\" is 00 02 'h' 'i' (see Lab 02 § Byte order and framing)"
    );
    assert_eq!(
        replies
            .map(|r| r.iter().map(String::len).collect::<Vec<_>>())
            .map_err(|e| e.to_string()),
        Ok(vec![258]),
        "the reply's prefix 01 02 means 258 bytes"
    );
}

#[test]
fn step10_replies_arriving_in_pieces_are_read_whole() {
    for framing in [lab::Framing::Line, lab::Framing::Utf] {
        let (addr, _thread) = test_server(move |s| {
            let mut buf = [0u8; 64];
            let _ = (&s).read(&mut buf).expect("the request");
            let reply = match framing {
                lab::Framing::Line => b"a reply in many pieces\n".to_vec(),
                _ => frame(b"a reply in many pieces"),
            };
            (&s).write_all(&reply).expect("reply");
        });
        let relay = TcpRelay::start(addr, Shaping::Intact, Shaping::SLICE, 12).expect("relay");
        let replies = exchange(relay.addr(), framing, &["go"], "lab::exchange");
        assert_eq!(
            replies.map_err(|e| e.to_string()),
            Ok(vec!["a reply in many pieces".to_owned()]),
            "{framing} mode: the reply arrived 1-3 bytes per read (see Lab 02 § Short reads and short writes)"
        );
    }
}

#[test]
fn step10_a_server_that_closes_early_is_unexpected_eof() {
    let (addr, _thread) = test_server(|mut s| {
        let mut buf = [0u8; 16];
        let _ = s.read(&mut buf);
        // Close without replying.
    });
    let result = exchange(addr, lab::Framing::Utf, &["anyone?"], "lab::exchange");
    assert_eq!(
        result.map_err(|e| e.kind()),
        Err(io::ErrorKind::UnexpectedEof),
        "the server closed the connection before replying: UnexpectedEof, not an empty reply"
    );
}

/// A test server that reads the request to the client's EOF, then sends `len` bytes of
/// `pattern` (and closes), stopping early when the client has gone.
fn raw_sender(len: usize) -> (SocketAddr, ServerThread<()>) {
    test_server(move |mut s| {
        let mut request = Vec::new();
        let _ = s.read_to_end(&mut request);
        let chunk = pattern(64 * 1024);
        let mut sent = 0;
        while sent < len {
            let n = chunk.len().min(len - sent);
            if s.write_all(&chunk[..n]).is_err() {
                break;
            }
            sent += n;
        }
    })
}

/// Runs the student's `exchange` in raw mode with `max_reply`; `Ok(reply length)` or the error's
/// kind and text.
fn raw_exchange(addr: SocketAddr, max_reply: usize) -> Result<usize, (io::ErrorKind, String)> {
    let stream = tcp_connect(addr);
    within(Duration::from_secs(8), "lab::exchange in raw mode", move || {
        lab::exchange(
            &stream,
            lab::Framing::Raw,
            &[b"give me a lot".as_slice()],
            max_reply,
        )
        .map(|replies| replies.iter().map(Vec::len).sum())
        .map_err(|e| (e.kind(), e.to_string()))
    })
}

#[test]
fn step10_a_raw_reply_is_capped_at_max_reply() {
    const SECTION: &str = "see Lab 02 § Step 10: The client's exchange, with half-close";
    let (addr, _thread) = raw_sender(1000);
    assert_eq!(
        raw_exchange(addr, 1000),
        Ok(1000),
        "the server sent exactly max_reply = 1000 bytes: that reply fits ({SECTION})"
    );
    let (addr, _thread) = raw_sender(1001);
    let over = raw_exchange(addr, 1000);
    assert!(
        matches!(&over, Err((io::ErrorKind::InvalidData, message)) if message.contains("1000")),
        "the server sent 1001 bytes with max_reply = 1000: expected an InvalidData error that \
         names the cap (\"the reply exceeded 1000 bytes\"), got {over:?} ({SECTION})"
    );
    // A server that sends far more than the cap: the client must stop reading at once (at most
    // max_reply + 1 bytes, Read::take), not buffer everything before it looks.
    let (addr, _thread) = raw_sender(64 * 1024 * 1024);
    let started = Instant::now();
    let flood = raw_exchange(addr, 64 * 1024);
    assert!(
        matches!(flood, Err((io::ErrorKind::InvalidData, _))),
        "the server sent 64 MiB with max_reply = 64 KiB: expected InvalidData after 64 KiB + 1 \
         bytes, got {flood:?} after {:?}: read at most max_reply + 1 bytes ({SECTION})",
        started.elapsed()
    );
}

#[test]
fn step10_binaries_talk_in_every_framing() {
    for (framing, expected) in [
        ("raw", "Received: HELLO, STREAM\n"),
        ("line", "Received: HELLO, \nReceived: STREAM\n"),
        ("utf", "Received: HELLO, \nReceived: STREAM\n"),
    ] {
        let server = ServerProcess::start(
            BIN,
            &["server", "--port", "0", "--framing", framing, "--uppercase"],
        );
        let out = run_client(&[
            "--server",
            &server.addr().to_string(),
            "--framing",
            framing,
            "hello, ",
            "stream",
        ]);
        assert!(
            out.status.success(),
            "--framing {framing}: client failed: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), expected, "--framing {framing}");
    }
}

#[test]
fn step10_client_binary_against_a_closed_port_fails_fast() {
    let (_holder, addr) = closed_port();
    let target = addr.to_string();
    let started = Instant::now();
    let out = run_client(&["--server", &target, "hello?"]);
    let took = started.elapsed();
    assert!(
        !out.status.success(),
        "no server: the exit status must be non-zero"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing may be printed as a reply: {}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one error line expected: {err:?}"
    );
    assert!(
        err.starts_with("error:") && err.contains(&target) && err.to_lowercase().contains("refused"),
        "the error line must name the server and say the connection was refused: {err:?}"
    );
    assert!(
        took < Duration::from_millis(1000) + SLACK,
        "the client took {took:?}"
    );
}

#[test]
fn step10_client_binary_times_out_when_the_server_is_silent() {
    // A listener nobody accepts from: the connection completes in the backlog, no reply comes.
    let listener = tcp_listener();
    let target = addr_of(&listener).to_string();
    let started = Instant::now();
    let out = run_client(&[
        "--server",
        &target,
        "--framing",
        "utf",
        "--timeout",
        "300",
        "hello?",
    ]);
    let took = started.elapsed();
    assert!(
        !out.status.success(),
        "no reply: the exit status must be non-zero"
    );
    let err = text(&out.stderr);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one error line expected: {err:?}"
    );
    assert!(
        err.starts_with("error:") && err.contains("300 ms"),
        "the error line must say the client timed out after 300 ms: {err:?}"
    );
    assert!(
        took < Duration::from_millis(300) + SLACK,
        "with --timeout 300 the client took {took:?} (set the read timeout; see Lab 02 § Connection set-up)"
    );
}

#[test]
fn step10_client_binary_reports_a_server_that_closes_early() {
    let (addr, _thread) = test_server(|mut s| {
        let mut buf = [0u8; 16];
        let _ = s.read(&mut buf);
    });
    let out = run_client(&["--server", &addr.to_string(), "--framing", "line", "hello?"]);
    assert!(
        !out.status.success(),
        "no reply: the exit status must be non-zero"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing may be printed as a reply: {}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error:") && err.contains("closed the connection"),
        "the error line must say the server closed the connection early: {err:?}"
    );
}
