//! Steps 4-7: the history and the server.
//!
//! Steps 4 and 5 call the history directly, with made-up client endpoints and instants, so age
//! and size bounds are checked to the millisecond without waiting. Steps 6 and 7 talk to the
//! student's server over real sockets, with clients the test plays itself ([`TestClient`], built
//! on the suite's own codec): a server test never depends on the student's client. The headline
//! tests go through `common`'s seeded relay, which drops, duplicates and reorders datagrams in
//! both directions.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::relay::{Faults, UdpRelay};
use common::testing::{ServerProcess, ServerThread, Transcript, is_timeout, sized, udp_socket, within};

use super::{
    HISTORY, HISTORY_COST, IDEMPOTENT, SEMANTICS, STEP4, STEP5, STEP6, STEP7, parse_reply, reply_bytes,
    request_bytes,
};
use crate::{BIN, lab};

/// How long a test waits for a reply that should come at once (loopback answers in
/// microseconds, a machine under a CPU hog within tens of milliseconds): 1000 ms. Short, because a
/// broken server makes every test wait this long for each reply it never sends.
const REPLY_WAIT: Duration = Duration::from_millis(1000);
/// The status the test gives a datagram from the server that is not a reply at all, so a test
/// fails at once instead of waiting for a reply that will never decode.
const GARBLED: u8 = 0xff;
/// How long a test listens to be sure that no reply comes: 300 ms (three of the server's ticks).
const QUIET: Duration = Duration::from_millis(300);
/// The longest a library call may take before the test calls it hung: 4000 ms.
const CALL_LIMIT: Duration = Duration::from_secs(4);
/// The operations' codes, as the wire format has them.
const ECHO: u8 = 1;
const GET: u8 = 2;
const ADD: u8 = 3;

/// A made-up client endpoint on loopback.
fn endpoint(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn reply(request_id: u32, result: &str) -> lab::Reply {
    lab::Reply {
        request_id,
        status: lab::Status::Ok,
        result: result.as_bytes().to_vec(),
    }
}

fn shown_seen(seen: &lab::Seen<'_>) -> String {
    match seen {
        lab::Seen::New => "New".to_owned(),
        lab::Seen::Acknowledged => "Acknowledged".to_owned(),
        lab::Seen::Replied(r) => format!("Replied(reply to {} with {})", r.request_id, sized(&r.result)),
    }
}

fn is_new(seen: &lab::Seen<'_>) -> bool {
    matches!(seen, lab::Seen::New)
}

fn replied_with(seen: &lab::Seen<'_>, result: &str) -> bool {
    matches!(seen, lab::Seen::Replied(r) if r.result == result.as_bytes())
}

/// A history as the server uses it: each request is acknowledged-then-recorded, at `at`.
fn executed(history: &mut lab::History, client: SocketAddr, id: u32, result: &str, at: Instant) {
    history.acknowledge(client, id);
    history.record(client, id, reply(id, result), at);
}

// ---------------------------------------------------------------------------------------------
// Step 4: lookup and record

#[test]
fn step4_an_unknown_request_is_new() {
    let t = Transcript::new(STEP4);
    let history = lab::History::new(8, Duration::from_secs(60));
    t.step("an empty history is asked about request 7 from 127.0.0.1:40000");
    let seen = history.lookup(endpoint(40_000), 7);
    t.check(
        is_new(&seen),
        "New",
        shown_seen(&seen),
        "a request the history has no entry for has not been executed: it is new",
    );
}

#[test]
fn step4_a_recorded_reply_is_found_again() {
    let t = Transcript::new(HISTORY);
    let mut history = lab::History::new(8, Duration::from_secs(60));
    let client = endpoint(40_001);
    t.step("record the reply \"5\" to request 7 from 127.0.0.1:40001");
    history.record(client, 7, reply(7, "5"), Instant::now());
    let seen = history.lookup(client, 7);
    t.check(
        replied_with(&seen, "5"),
        "Replied(reply to 7 with \"5\")",
        shown_seen(&seen),
        "a duplicate of an executed request must find its recorded reply, to be sent again instead \
         of executing the request a second time",
    );
    t.check(
        history.len() == 1,
        "1 entry",
        format!("{} entries", history.len()),
        "one request, one entry",
    );
}

#[test]
fn step4_the_key_is_the_endpoint_and_the_request_id() {
    let t = Transcript::new(HISTORY);
    let mut history = lab::History::new(8, Duration::from_secs(60));
    let client = endpoint(40_002);
    t.step("record the reply to request 7 from 127.0.0.1:40002");
    history.record(client, 7, reply(7, "5"), Instant::now());
    let other_port = endpoint(40_003);
    let other_ip = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 40_002);
    for (who, id, what) in [
        (other_port, 7, "request 7 from another port, 127.0.0.1:40003"),
        (other_ip, 7, "request 7 from another address, 127.0.0.2:40002"),
        (client, 8, "request 8 from the same client"),
    ] {
        t.step(format_args!("look up {what}"));
        let seen = history.lookup(who, id);
        t.check(
            is_new(&seen),
            "New",
            shown_seen(&seen),
            "the history is keyed by the pair (client endpoint, request id): two clients may use the \
             same id, and one client uses a new id for each operation; neither is a duplicate",
        );
    }
}

#[test]
fn step4_record_keeps_the_entries_oldest_first() {
    let t = Transcript::new(STEP4);
    let mut history = lab::History::new(8, Duration::from_secs(60));
    let start = Instant::now();
    for (i, port) in [40_010u16, 40_011, 40_012].into_iter().enumerate() {
        t.step(format_args!("record request {i} from 127.0.0.1:{port}"));
        history.record(
            endpoint(port),
            i as u32,
            reply(i as u32, "1"),
            start + Duration::from_millis(i as u64),
        );
    }
    let oldest = history.oldest().map(|(c, id, _)| (c, id));
    t.check(
        oldest == Some((endpoint(40_010), 0)) && history.len() == 3,
        "3 entries, the oldest request 0 from 127.0.0.1:40010",
        format!("{} entries, the oldest {oldest:?}", history.len()),
        "record puts each new entry at the back of the order, which trim reads from the front: \
         push_back the key",
    );
}

#[test]
fn step4_recording_again_replaces_the_reply() {
    let t = Transcript::new(STEP4);
    let mut history = lab::History::new(8, Duration::from_secs(60));
    let client = endpoint(40_020);
    t.step("record \"1\" for request 7, then \"2\" for the same request");
    history.record(client, 7, reply(7, "1"), Instant::now());
    history.record(client, 7, reply(7, "2"), Instant::now());
    let seen = history.lookup(client, 7);
    t.check(
        replied_with(&seen, "2") && history.len() == 1,
        "1 entry, Replied(reply to 7 with \"2\")",
        format!("{} entries, {}", history.len(), shown_seen(&seen)),
        "the same key recorded twice is one entry with the newer reply",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 5: acknowledge and trim

#[test]
fn step5_a_new_request_id_acknowledges_the_previous_reply() {
    let t = Transcript::new(HISTORY_COST);
    let mut history = lab::History::new(8, Duration::from_secs(60));
    let client = endpoint(40_030);
    t.step("client 127.0.0.1:40030: request 7 executed (acknowledge, then record)");
    executed(&mut history, client, 7, "1", Instant::now());
    t.step("the same client sends request 8: acknowledge(client, 8)");
    history.acknowledge(client, 8);
    let seen = history.lookup(client, 7);
    t.check(
        matches!(seen, lab::Seen::Acknowledged),
        "request 7: Acknowledged (the entry kept, its reply dropped)",
        format!("request 7: {}", shown_seen(&seen)),
        "a client sends its next request only after it has the reply to the last, so request 8 \
         acknowledges reply 7: drop that reply (it is no longer needed) but keep the entry, so a \
         stale duplicate of 7 is recognised and dropped",
    );
    t.check(
        history.replies_kept() == 0 && history.len() == 1,
        "1 entry, 0 replies kept",
        format!(
            "{} entries, {} replies kept",
            history.len(),
            history.replies_kept()
        ),
        "acknowledging frees the reply, not the entry",
    );
}

#[test]
fn step5_a_retransmission_is_not_an_acknowledgement() {
    let t = Transcript::new(STEP5);
    let mut history = lab::History::new(8, Duration::from_secs(60));
    let client = endpoint(40_031);
    t.step("client 127.0.0.1:40031: request 7 executed; then request 7 arrives again");
    executed(&mut history, client, 7, "1", Instant::now());
    history.acknowledge(client, 7);
    let seen = history.lookup(client, 7);
    t.check(
        replied_with(&seen, "1"),
        "Replied(reply to 7 with \"1\")",
        shown_seen(&seen),
        "the same id again is a retransmission (its reply was lost), not a new request: its reply \
         must stay, to be sent again",
    );
}

#[test]
fn step5_acknowledgements_are_per_client() {
    let t = Transcript::new(STEP5);
    let mut history = lab::History::new(8, Duration::from_secs(60));
    let (a, b) = (endpoint(40_032), endpoint(40_033));
    t.step("request 7 from 127.0.0.1:40032 and request 7 from 127.0.0.1:40033 executed");
    executed(&mut history, a, 7, "1", Instant::now());
    executed(&mut history, b, 7, "2", Instant::now());
    t.step("127.0.0.1:40032 sends request 8");
    history.acknowledge(a, 8);
    let seen = history.lookup(b, 7);
    t.check(
        replied_with(&seen, "2"),
        "127.0.0.1:40033's request 7: Replied(reply to 7 with \"2\")",
        shown_seen(&seen),
        "a client's new request acknowledges only that client's earlier reply: the other client may \
         still be waiting for its own",
    );
}

#[test]
fn step5_trim_forgets_entries_older_than_the_ttl() {
    let t = Transcript::new(HISTORY_COST);
    let mut history = lab::History::new(8, Duration::from_millis(1000));
    let t0 = Instant::now();
    t.step("ttl 1000 ms: request 1 recorded at 0 ms, request 2 at 600 ms");
    executed(&mut history, endpoint(40_040), 1, "1", t0);
    executed(
        &mut history,
        endpoint(40_041),
        2,
        "2",
        t0 + Duration::from_millis(600),
    );
    t.step("trim at 1000 ms");
    history.trim(t0 + Duration::from_millis(1000));
    t.check(
        history.len() == 2,
        "2 entries (request 1 is exactly 1000 ms old, not older)",
        format!("{} entries", history.len()),
        "trim forgets entries *older* than the ttl; an entry exactly ttl old stays",
    );
    t.step("trim at 1001 ms");
    history.trim(t0 + Duration::from_millis(1001));
    let first = history.lookup(endpoint(40_040), 1);
    let second = history.lookup(endpoint(40_041), 2);
    t.check(
        is_new(&first) && replied_with(&second, "2"),
        "request 1 forgotten (New), request 2 kept",
        format!(
            "request 1: {}, request 2: {}",
            shown_seen(&first),
            shown_seen(&second)
        ),
        "pop the oldest while it is older than the ttl, and stop at the first entry that is young \
         enough: the order is oldest first",
    );
    t.step("trim at 1700 ms");
    history.trim(t0 + Duration::from_millis(1700));
    t.check(
        history.is_empty(),
        "no entries",
        format!("{} entries", history.len()),
        "every entry older than the ttl is forgotten, not only the first",
    );
}

#[test]
fn step5_trim_keeps_at_most_capacity_entries() {
    let t = Transcript::new(HISTORY_COST);
    let mut history = lab::History::new(3, Duration::from_secs(60));
    let t0 = Instant::now();
    t.step("capacity 3: five clients' requests recorded, one after the other");
    for i in 0..5u16 {
        executed(
            &mut history,
            endpoint(40_050 + i),
            u32::from(i),
            "1",
            t0 + Duration::from_millis(u64::from(i)),
        );
    }
    t.step("trim");
    history.trim(t0 + Duration::from_millis(10));
    let kept: Vec<bool> = (0..5u16)
        .map(|i| !is_new(&history.lookup(endpoint(40_050 + i), u32::from(i))))
        .collect();
    t.check(
        history.len() == 3 && kept == [false, false, true, true, true],
        "3 entries: the newest three kept, the two oldest forgotten",
        format!("{} entries; kept (oldest first): {kept:?}", history.len()),
        "the size bound is the capacity, exactly: forget the oldest entries (the front of the \
         order) while there are more than capacity",
    );
}

#[test]
fn step5_forgotten_clients_leave_no_trace() {
    let t = Transcript::new(HISTORY_COST);
    let mut history = lab::History::new(100, Duration::from_millis(500));
    let t0 = Instant::now();
    t.step("20 clients, one request each, recorded at 0 ms (ttl 500 ms); trim at 501 ms");
    for i in 0..20u16 {
        executed(&mut history, endpoint(40_100 + i), 1, "1", t0);
    }
    history.trim(t0 + Duration::from_millis(501));
    t.check(
        history.is_empty() && history.clients_tracked() == 0,
        "no entries, no clients tracked",
        format!(
            "{} entries, {} clients tracked",
            history.len(),
            history.clients_tracked()
        ),
        "when an entry goes and it is its client's latest, remove the client from `latest` too: \
         otherwise that map grows with every client ever seen, and the bound is a lie",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 6: get_request and send_reply

/// The server's socket for step 6: loopback, port 0, read timeout `read_ms` ms.
fn server_socket(read_ms: u64) -> UdpSocket {
    let socket = udp_socket();
    let _ = socket.set_read_timeout(Some(Duration::from_millis(read_ms)));
    socket
}

fn shown_incoming(result: &io::Result<lab::Incoming>) -> String {
    match result {
        Ok(lab::Incoming::Request { from, request }) => format!(
            "Ok(Request {{ from: {from}, request_id: {}, operation: {}, arguments: {} }})",
            request.request_id,
            request.operation,
            sized(&request.arguments)
        ),
        Ok(lab::Incoming::Malformed { from, len, why }) => {
            format!("Ok(Malformed {{ from: {from}, len: {len}, why: {why:?} }})")
        }
        Err(e) => format!("Err({:?}: {e})", e.kind()),
    }
}

/// `get_request` on a clone of `socket`, bounded by [`CALL_LIMIT`].
fn get_request(socket: &UdpSocket) -> io::Result<lab::Incoming> {
    let socket = socket.try_clone().expect("test set-up: cannot clone a socket");
    within(CALL_LIMIT, "get_request", move || lab::get_request(&socket))
}

#[test]
fn step6_get_request_decodes_a_request_and_its_sender() {
    let t = Transcript::new(STEP6);
    let server = server_socket(2000);
    let client = udp_socket();
    let bytes = request_bytes(0x0102_0304, ADD, b"12");
    t.sent(&bytes, "the test's client", "the server");
    client
        .send_to(&bytes, server.local_addr().expect("bound"))
        .expect("send");
    let got = get_request(&server);
    let me = client.local_addr().expect("bound");
    let ok = matches!(&got, Ok(lab::Incoming::Request { from, request })
        if *from == me && request.request_id == 0x0102_0304 && request.operation == ADD
            && request.arguments == b"12");
    t.check(
        ok,
        format!(
            "Ok(Request {{ from: {me}, request_id: 16909060, operation: 3, arguments: \"12\" (2 bytes) }})"
        ),
        shown_incoming(&got),
        "receive with recv_from, keep the sender (the reply goes there) and decode only the bytes \
         that arrived, &buf[..len]",
    );
}

#[test]
fn step6_get_request_turns_bad_datagrams_into_malformed() {
    let t = Transcript::new(STEP6);
    let server = server_socket(2000);
    let client = udp_socket();
    let me = client.local_addr().expect("bound");
    let full = request_bytes(9, GET, b"");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "an empty datagram"),
        (full[..3].to_vec(), "3 bytes of a request"),
        (full[..5].to_vec(), "5 bytes of a request"),
        (reply_bytes(9, 0, b"5"), "a reply, sent to the server"),
        (vec![7, 0, 0, 0, 9, 2], "an unknown type"),
    ];
    for (bytes, what) in cases {
        t.step(format_args!("send {what}: {}", sized(&bytes)));
        client
            .send_to(&bytes, server.local_addr().expect("bound"))
            .expect("send");
        let got = get_request(&server);
        let ok = matches!(&got, Ok(lab::Incoming::Malformed { from, len, .. })
            if *from == me && *len == bytes.len());
        t.check(
            ok,
            format!("Ok(Malformed {{ from: {me}, len: {}, .. }})", bytes.len()),
            shown_incoming(&got),
            "a datagram that is not a request is Incoming::Malformed, with its sender and length for \
             the log: not an Err (the server would stop or log a socket error) and never a panic",
        );
    }
}

#[test]
fn step6_get_request_returns_the_timeout_unchanged() {
    let t = Transcript::new(STEP6);
    let server = server_socket(150);
    t.step("nothing is sent; the server's socket has a 150 ms read timeout");
    let got = get_request(&server);
    t.check(
        matches!(&got, Err(e) if is_timeout(e)),
        "Err(WouldBlock) or Err(TimedOut)",
        shown_incoming(&got),
        "socket errors go back to the caller unchanged (`?`): the server loop uses the read \
         timeout as its tick",
    );
}

#[test]
fn step6_send_reply_sends_the_encoded_reply_to_the_client() {
    let t = Transcript::new(STEP6);
    let server = server_socket(2000);
    let client = udp_socket();
    let to = client.local_addr().expect("bound");
    let answer = lab::Reply {
        request_id: 0x0a0b_0c0d,
        status: lab::Status::Error,
        result: b"no \xff".to_vec(),
    };
    t.step(format_args!(
        "send_reply to {to}: an error reply to request 0x0a0b0c0d, result \"no \\xff\""
    ));
    let socket = server.try_clone().expect("clone");
    let sent = within(CALL_LIMIT, "send_reply", move || {
        lab::send_reply(&socket, to, &answer)
    });
    t.check(
        sent.is_ok(),
        "Ok(())",
        format!("{sent:?}"),
        "sending one datagram on loopback succeeds",
    );
    let mut buf = [0u8; 1024];
    let got = client.recv_from(&mut buf);
    let expected = reply_bytes(0x0a0b_0c0d, 1, b"no \xff");
    match got {
        Ok((n, _)) => t.check_bytes(
            "the datagram",
            &expected,
            &buf[..n],
            "send_reply sends exactly the encoded reply (Reply::encode) to the client's endpoint",
        ),
        Err(e) => t.fail(
            "the reply datagram",
            format!("nothing arrived: {e}"),
            "send it with send_to to `to`",
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Step 7: the server

/// The test's own client: one socket, requests built and replies read with the suite's codec.
struct TestClient {
    socket: UdpSocket,
    server: SocketAddr,
    /// The ids of the requests sent so far: a reply to any other id is garbled.
    sent: std::cell::RefCell<Vec<u32>>,
}

impl TestClient {
    fn new(server: SocketAddr) -> Self {
        TestClient {
            socket: udp_socket(),
            server,
            sent: std::cell::RefCell::new(Vec::new()),
        }
    }

    fn send(&self, bytes: &[u8]) {
        if bytes.len() >= 6 && bytes[0] == 0 {
            self.sent
                .borrow_mut()
                .push(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]));
        }
        self.socket
            .send_to(bytes, self.server)
            .expect("test set-up: cannot send");
    }

    /// Waits up to `wait` for a reply to `id` from the server; `(status, result)`. A datagram
    /// from the server that is not a reply comes back at once as `(GARBLED, its bytes)`; replies
    /// to other ids (duplicates of earlier ones) are skipped.
    fn reply_to(&self, id: u32, wait: Duration) -> Option<(u8, Vec<u8>)> {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65_536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let _ = self.socket.set_read_timeout(Some(left));
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) if from == self.server => match parse_reply(&buf[..n]) {
                    Some((rid, status, result)) if rid == id && status <= 1 => return Some((status, result)),
                    // A late reply to an earlier request of this client (a duplicate).
                    Some((rid, ..)) if rid != id && self.sent.borrow().contains(&rid) => {}
                    _ => return Some((GARBLED, buf[..n].to_vec())),
                },
                Ok(_) => {}
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }

    /// Sends request `id` once and waits [`REPLY_WAIT`] for its reply.
    fn ask(&self, id: u32, op: u8, args: &[u8]) -> Option<(u8, Vec<u8>)> {
        self.send(&request_bytes(id, op, args));
        self.reply_to(id, REPLY_WAIT)
    }

    /// Sends request `id`, retransmitting every `timeout` up to `retries` more times.
    fn reliably(
        &self,
        id: u32,
        op: u8,
        args: &[u8],
        timeout: Duration,
        retries: u32,
    ) -> Option<(u8, Vec<u8>)> {
        let bytes = request_bytes(id, op, args);
        (0..=retries).find_map(|_| {
            self.send(&bytes);
            self.reply_to(id, timeout)
        })
    }
}

fn shown_answer(answer: &Option<(u8, Vec<u8>)>) -> String {
    match answer {
        Some((0, result)) => format!("an ok reply, {}", sized(result)),
        Some((GARBLED, bytes)) => format!(
            "a datagram that is not a reply of this protocol, {} (the server's encode or send_reply?)",
            sized(bytes)
        ),
        Some((status, result)) => format!("a reply with status {status}, {}", sized(result)),
        None => "no reply".to_owned(),
    }
}

/// The server's total, asked straight from the server (past any relay) with a fresh client.
fn total_of(server: SocketAddr) -> Option<String> {
    let client = TestClient::new(server);
    client
        .ask(fastrand::u32(..), GET, b"")
        .map(|(_, r)| String::from_utf8_lossy(&r).into_owned())
}

/// `answer`, which must be an ok reply: fails the test at once otherwise, with the server's log.
fn must(t: &Transcript, server: &ServerProcess, what: &str, answer: Option<(u8, Vec<u8>)>) -> Vec<u8> {
    match answer {
        Some((0, result)) => {
            t.received(&result, format_args!("the ok reply to {what}"));
            result
        }
        other => t.fail(
            format!("an ok reply to {what}"),
            format!("{}; the server's log:\n{}", shown_answer(&other), server.log()),
            "a request of this protocol gets its reply at once on loopback (see the server's log for \
             what it did with it)",
        ),
    }
}

fn start(args: &[&str]) -> ServerProcess {
    let mut all = vec!["server", "--port", "0"];
    all.extend_from_slice(args);
    ServerProcess::start(BIN, &all)
}

#[test]
fn step7_bad_datagrams_get_no_reply_and_do_not_stop_the_server() {
    let t = Transcript::new(STEP7);
    let server = start(&["--semantics", "at-most-once"]);
    let client = TestClient::new(server.addr());
    let full = request_bytes(3, ECHO, b"hi");
    let mut junk: Vec<Vec<u8>> = (0..6).map(|n| full[..n].to_vec()).collect();
    junk.push(reply_bytes(3, 0, b"hi"));
    junk.push(vec![9; 12]);
    // Bytes of no protocol, starting with a type byte that is neither 0 nor 1.
    junk.push(
        std::iter::once(0xfe)
            .chain((1..200u32).map(|i| (i * 37 % 251) as u8))
            .collect(),
    );
    for bytes in &junk {
        t.sent(bytes, "the test's client", "the server");
        client.send(bytes);
    }
    t.step(format_args!("listen {} ms for any answer", QUIET.as_millis()));
    let mut buf = [0u8; 2048];
    let _ = client.socket.set_read_timeout(Some(QUIET));
    if let Ok((n, _)) = client.socket.recv_from(&mut buf) {
        t.fail(
            "no answer to a datagram that is not a request",
            format!("the server answered {}", sized(&buf[..n])),
            "short datagrams, unknown types and replies are dropped and logged, never answered: an \
             answer to a reply could start two servers answering each other for ever",
        );
    }
    t.step("then a good request: echo \"still here\"");
    let answer = client.ask(4, ECHO, b"still here");
    t.check(
        matches!(&answer, Some((0, r)) if r == b"still here"),
        "an ok reply, \"still here\" (10 bytes)",
        format!("{}; the server's log:\n{}", shown_answer(&answer), server.log()),
        "bad datagrams are dropped and the server keeps serving: log them (Served::Dropped) and go on",
    );
    let dropped = server
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("dropped"))
        .count();
    t.check(
        dropped >= junk.len(),
        format!("{} log lines saying `dropped`", junk.len()),
        format!("{dropped}; the log:\n{}", server.log()),
        "every dropped datagram gets a log line (serve passes each Served::Dropped to log)",
    );
}

#[test]
fn step7_a_refused_operation_gets_an_error_reply() {
    let t = Transcript::new(STEP7);
    let server = start(&[]);
    let client = TestClient::new(server.addr());
    for (id, op, args, what) in [
        (10, 9, &b""[..], "unknown operation 9"),
        (11, ADD, b"ten", "add \"ten\""),
    ] {
        t.step(format_args!("request {id}: {what}"));
        let answer = client.ask(id, op, args);
        t.check(
            matches!(answer, Some((1, _))),
            "a reply with status 1 (error)",
            format!("{}; the server's log:\n{}", shown_answer(&answer), server.log()),
            "an unknown operation or a bad argument is still a request: it gets an error reply \
             (Counter::execute makes it), and the server goes on",
        );
    }
    let total = total_of(server.addr());
    t.check(
        total.as_deref() == Some("0"),
        "total \"0\"",
        format!("{total:?}"),
        "refused operations change nothing",
    );
}

#[test]
fn step7_at_least_once_executes_a_duplicate_again() {
    let t = Transcript::new(IDEMPOTENT);
    let server = start(&["--semantics", "at-least-once"]);
    let client = TestClient::new(server.addr());
    t.step("send request 5, add 1, twice (a retransmission after a lost reply)");
    let first = Some((0, must(&t, &server, "request 5", client.ask(5, ADD, b"1"))));
    let second = client.ask(5, ADD, b"1");
    let total = total_of(server.addr());
    t.check(
        matches!(&first, Some((0, r)) if r == b"1")
            && matches!(&second, Some((0, r)) if r == b"2")
            && total.as_deref() == Some("2"),
        "replies \"1\" then \"2\", total \"2\": at-least-once executes every copy",
        format!(
            "{}, then {}, total {total:?}",
            shown_answer(&first),
            shown_answer(&second)
        ),
        "with at-least-once semantics the server executes every request that arrives, duplicates \
         included; that is the lesson: add is not idempotent, so a retransmission adds twice",
    );
}

#[test]
fn step7_at_most_once_answers_a_duplicate_from_the_history() {
    let t = Transcript::new(HISTORY);
    let server = start(&["--semantics", "at-most-once"]);
    let client = TestClient::new(server.addr());
    t.step("send request 5, add 1, twice");
    let first = Some((0, must(&t, &server, "request 5", client.ask(5, ADD, b"1"))));
    let second = client.ask(5, ADD, b"1");
    let total = total_of(server.addr());
    t.check(
        matches!(&first, Some((0, r)) if r == b"1")
            && matches!(&second, Some((0, r)) if r == b"1")
            && total.as_deref() == Some("1"),
        "the same reply \"1\" twice, total \"1\"",
        format!(
            "{}, then {}, total {total:?}; the server's log:\n{}",
            shown_answer(&first),
            shown_answer(&second),
            server.log()
        ),
        "at-most-once looks the request up in the history before executing it: a duplicate gets \
         the recorded reply again and is not executed",
    );
}

#[test]
fn step7_a_stale_duplicate_is_dropped() {
    let t = Transcript::new(HISTORY_COST);
    let server = start(&["--semantics", "at-most-once"]);
    let client = TestClient::new(server.addr());
    t.step("request 20 add 1, then request 21 add 1 (which acknowledges 20)");
    must(&t, &server, "request 20", client.ask(20, ADD, b"1"));
    must(&t, &server, "request 21", client.ask(21, ADD, b"1"));
    t.step("a delayed copy of request 20 arrives");
    client.send(&request_bytes(20, ADD, b"1"));
    let late = client.reply_to(20, QUIET);
    let total = total_of(server.addr());
    t.check(
        late.is_none() && total.as_deref() == Some("2"),
        "no reply to the stale copy, total \"2\"",
        format!(
            "{}, total {total:?}; the server's log:\n{}",
            shown_answer(&late),
            server.log()
        ),
        "a duplicate of an acknowledged request finds its entry without a reply (Seen::Acknowledged): \
         drop it. Executing it would break at-most-once; the client has its reply already",
    );
}

/// Faults for the relay tests: 30% drops, 30% duplicates, 10% reordering, each way.
fn lossy() -> Faults {
    Faults {
        drop: 0.3,
        duplicate: 0.3,
        reorder: 0.1,
        ..Faults::default()
    }
}

/// K `add 1` operations through a relay in front of `server`, each retransmitted every 60 ms.
///
/// Odds of a give-up: a round trip survives both ways with probability 0.7 x 0.7 = 0.49 (a
/// held-back datagram is only late), so one attempt fails with at most 0.51 and 41 attempts all
/// fail with 0.51^41 < 1e-11 per operation.
fn adds_through_relay(t: &Transcript, server: SocketAddr, k: u32, seed: u64) -> u32 {
    let relay = UdpRelay::start(server, lossy(), lossy(), seed).expect("test set-up: a relay");
    t.step(format_args!(
        "{k} add 1 operations through a relay dropping 30%, duplicating 30% and reordering 10% each way (seed {seed})"
    ));
    let client = TestClient::new(relay.addr());
    let first = fastrand::u32(..1 << 30);
    // The first operation without a reply ends the run: a server that stopped would otherwise
    // cost 2.5 s per remaining operation.
    (0..k)
        .take_while(|i| {
            client
                .reliably(first + i, ADD, b"1", Duration::from_millis(60), 40)
                .is_some()
        })
        .count() as u32
}

#[test]
fn step7_at_most_once_through_a_lossy_relay_executes_each_operation_once() {
    let t = Transcript::new(SEMANTICS);
    let server = start(&["--semantics", "at-most-once"]);
    let done = adds_through_relay(&t, server.addr(), 20, 3);
    let total = total_of(server.addr());
    t.check(
        done == 20 && total.as_deref() == Some("20"),
        "20 operations completed, total \"20\"",
        format!(
            "{done} completed, total {total:?}; the server's log:\n{}",
            server.log()
        ),
        "at-most-once: every copy of a request (retransmitted or duplicated by the network) after the \
         first is answered from the history, so each operation is executed once",
    );
}

#[test]
fn step7_at_least_once_through_a_lossy_relay_executes_more_than_once() {
    let t = Transcript::new(SEMANTICS);
    let server = start(&["--semantics", "at-least-once"]);
    // 20 operations: each executed request's reply is lost with 30% and each request
    // duplicated with 30%, so no re-execution at all has odds below (0.7 x 0.7)^20 < 1e-6.
    let done = adds_through_relay(&t, server.addr(), 20, 3);
    let total: Option<u64> = total_of(server.addr()).and_then(|s| s.parse().ok());
    t.check(
        done == 20 && total.is_some_and(|n| n > 20),
        "20 operations completed, total more than 20",
        format!(
            "{done} completed, total {total:?}; the server's log:\n{}",
            server.log()
        ),
        "that is the lesson of at-least-once: a lost reply or a duplicated request makes the server \
         execute the operation again, and add is not idempotent. A total of exactly 20 means the \
         server filtered duplicates although it was asked for at-least-once",
    );
}

#[test]
fn step7_a_duplicate_during_a_slow_execution_is_not_executed_twice() {
    let t = Transcript::new(HISTORY);
    let server = start(&["--semantics", "at-most-once", "--delay", "300"]);
    let client = TestClient::new(server.addr());
    t.step("request 40, add 1, sent every 80 ms while the server takes 300 ms to execute it");
    let answer = client.reliably(40, ADD, b"1", Duration::from_millis(80), 30);
    t.step("wait for the answers to the other copies");
    while client.reply_to(40, QUIET * 3).is_some() {}
    let total = total_of(server.addr());
    t.check(
        answer.is_some() && total.as_deref() == Some("1"),
        "an ok reply, total \"1\"",
        format!(
            "{}, total {total:?}; the server's log:\n{}",
            shown_answer(&answer),
            server.log()
        ),
        "the copies that arrive while the request executes wait in the socket's buffer; the reply \
         must be in the history before the next datagram is read, so they find it and are not \
         executed again",
    );
}

/// A library server on a thread of the test, stopped by the returned flag; the thread returns
/// the server, so its history can be inspected.
fn library_server(config: lab::ServerConfig) -> (SocketAddr, Arc<AtomicBool>, ServerThread<lab::Server>) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("test set-up: bind");
    let mut server = lab::Server::new(socket, config).expect("test set-up: server");
    let addr = server.local_addr().expect("bound");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = ServerThread::spawn("the server", move || {
        let _ = server.serve(&flag, |_| {});
        server
    });
    (addr, stop, thread)
}

#[test]
fn step7_the_history_stays_within_its_bounds() {
    let t = Transcript::new(HISTORY_COST);
    let config = lab::ServerConfig {
        semantics: lab::Semantics::AtMostOnce,
        history_size: 8,
        ..lab::ServerConfig::default()
    };
    let (addr, stop, mut thread) = library_server(config);
    t.step("history size 8: 30 clients, each with its own socket, 1 add each");
    for i in 0..30 {
        let client = TestClient::new(addr);
        thread.check();
        let answer = client.ask(100 + i, ADD, b"1");
        if answer.is_none() {
            t.fail(
                "a reply to each client",
                format!("no reply to client {i}"),
                "the server must answer each request",
            );
        }
    }
    t.step("one client: 20 operations in sequence, from one socket");
    let client = TestClient::new(addr);
    for i in 0..20 {
        if client.ask(500 + i, ADD, b"1").is_none() {
            t.fail(
                "a reply to each operation",
                format!("no reply to operation {i}"),
                "the server must answer each request",
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let server = thread.join_within(Duration::from_secs(3));
    let history = server.history();
    t.check(
        history.len() <= 8 && history.clients_tracked() <= 8,
        "at most 8 entries and 8 clients tracked",
        format!(
            "{} entries, {} clients tracked",
            history.len(),
            history.clients_tracked()
        ),
        "the server trims its history after recording each reply, so it never holds more than \
         --history-size entries however many clients come",
    );
    t.check(
        history.replies_kept() <= 1,
        "at most 1 reply kept (the last client's last one)",
        format!("{} replies kept", history.replies_kept()),
        "each new request of a client acknowledges its previous reply, which the history then drops: \
         call acknowledge before executing a new request",
    );
}

#[test]
fn step7_serve_stops_at_max_requests_and_on_the_stop_flag() {
    let t = Transcript::new(STEP7);
    let mut server = start(&["--max-requests", "3"]);
    let client = TestClient::new(server.addr());
    t.step("--max-requests 3: a junk datagram, then 2 requests");
    client.send(b"x");
    must(&t, &server, "request 1", client.ask(1, ECHO, b"a"));
    let second = client.ask(2, ECHO, b"b");
    let exited = server.wait_exit(Duration::from_secs(3));
    t.check(
        second.is_some() && exited.is_some_and(|s| s.success()),
        "the 2 requests answered, then the server exits with status 0",
        format!(
            "{}, exit {exited:?}; the log:\n{}",
            shown_answer(&second),
            server.log()
        ),
        "serve counts every datagram it served, dropped ones included, and stops after max_requests",
    );
    t.step("a library server, idle; the stop flag is set");
    let (_addr, stop, thread) = library_server(lab::ServerConfig::default());
    thread::sleep(Duration::from_millis(250));
    stop.store(true, Ordering::Relaxed);
    let _ = thread.join_within(Duration::from_secs(2));
}
