//! Steps 1-3: the wire format and the client.
//!
//! Step 1's tests call `encode` and `decode` directly (no sockets) and compare with the test's
//! own codec ([`request_bytes`], [`reply_bytes`]). Steps 2 and 3 play the server themselves: a
//! socket of the test sends exactly the datagrams a test needs (a late reply, a stranger's
//! datagram, junk), so what arrives, and in what order, is never left to chance. A call into the
//! student's code that may block runs on a thread of its own with a bound ([`call_within`]), so
//! a hang fails its test within about a second instead of hanging the suite.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::testing::{Transcript, is_timeout, panic_message, run_within, sized, udp_socket};

use super::{
    COMMAND_LINE, FAILURE_MODEL, PROTOCOLS, REQUEST_IDS, STEP1, STEP2, STEP3, WIRE_FORMAT, parse_reply,
    reply_bytes, request_bytes,
};
use crate::{BIN, lab};

/// The longest a library call may take before the test calls it hung, where its own timeout
/// gives no tighter bound: 4000 ms.
const CALL_LIMIT: Duration = Duration::from_secs(4);
/// How long past its own timeout budget a call into the student's code may still be running
/// before the test calls it hung: 750 ms (a returning thread is scheduled within
/// milliseconds, even on a busy machine; a hung one would wait for ever).
const HANG_SLACK: Duration = Duration::from_millis(750);
/// Extra time allowed over a computed timeout budget, for slow, busy machines: 2000 ms.
const SLACK: Duration = Duration::from_millis(2000);
/// How long a test lets a client binary run before killing it: 5000 ms.
const CLIENT_RUN_LIMIT: Duration = Duration::from_secs(5);
/// How often the test's server looks at its stop flag when nothing arrives: 20 ms.
const POLL: Duration = Duration::from_millis(20);
/// An id whose four bytes all differ, so a byte-order mistake shows: 0x01020304.
const ID: u32 = 0x0102_0304;

fn addr_of(socket: &UdpSocket) -> SocketAddr {
    socket.local_addr().expect("a bound socket has a local address")
}

/// `text` followed by a few bytes that are not UTF-8, so bodies are checked byte for byte.
fn with_non_utf8(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.extend_from_slice(b" \xff\xfe\x00\xc3(");
    bytes
}

/// An id in decimal and in hex (so a byte-order mistake is plain to see).
fn id(n: u32) -> String {
    format!("{n} (0x{n:08x})")
}

/// A request's fields `(request_id, operation, arguments)`, or `None` when `bytes` is not a
/// request: the test's own reading of the wire format, never the student's `decode`.
fn parse_request(bytes: &[u8]) -> Option<(u32, u8, Vec<u8>)> {
    if bytes.len() < 6 || bytes[0] != 0 {
        return None;
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Some((id, bytes[5], bytes[6..].to_vec()))
}

fn shown_status(status: lab::Status) -> &'static str {
    match status {
        lab::Status::Ok => "Ok",
        lab::Status::Error => "Error",
    }
}

fn shown_reply(reply: &lab::Reply) -> String {
    format!(
        "Reply {{ request_id: {}, status: {}, result: {} }}",
        id(reply.request_id),
        shown_status(reply.status),
        sized(&reply.result)
    )
}

fn shown_request(request: &lab::Request) -> String {
    format!(
        "Request {{ request_id: {}, operation: {}, arguments: {} }}",
        id(request.request_id),
        request.operation,
        sized(&request.arguments)
    )
}

/// What `decode` returned, bodies as escaped text.
fn shown_decoded(result: &Result<lab::Message, lab::DecodeError>) -> String {
    match result {
        Ok(lab::Message::Request(r)) => format!("Ok(Message::{})", shown_request(r)),
        Ok(lab::Message::Reply(r)) => format!("Ok(Message::{})", shown_reply(r)),
        Err(e) => format!("Err({e:?})"),
    }
}

/// What `await_reply` returned, the result as escaped text.
fn shown_await(result: &io::Result<Option<lab::Reply>>) -> String {
    match result {
        Ok(Some(reply)) => format!("Ok(Some({}))", shown_reply(reply)),
        Ok(None) => "Ok(None)".to_owned(),
        Err(e) => format!("Err({:?}: {e})", e.kind()),
    }
}

/// What `do_operation` returned, the result as escaped text.
fn shown_outcome(result: &Result<lab::Outcome, lab::OperationError>) -> String {
    match result {
        Ok(o) => format!(
            "Ok(Outcome {{ reply: {}, attempts: {} }})",
            shown_reply(&o.reply),
            o.attempts
        ),
        Err(lab::OperationError::NoReply {
            server,
            request_id,
            attempts,
            timeout,
        }) => format!(
            "Err(NoReply {{ server: {server}, request_id: {}, attempts: {attempts}, timeout: {} ms }})",
            id(*request_id),
            timeout.as_millis()
        ),
        Err(lab::OperationError::Io(e)) => format!("Err(Io({:?}: {e}))", e.kind()),
    }
}

/// Runs `f` (the student's code) and returns its value, or fails the test when it panics: a
/// panic on bad input is a mistake the test names (`why`, given the panic's message). A
/// skeleton's `todo!()` is passed on as it is.
fn no_panic<T>(t: &Transcript, what: &str, f: impl FnOnce() -> T, why: impl FnOnce(&str) -> String) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(payload) => {
            let message = panic_message(&*payload);
            if message.contains("not yet implemented") {
                std::panic::resume_unwind(payload);
            }
            t.fail(
                format_args!("{what} to return"),
                format_args!("it panicked: {message}"),
                why(&message),
            )
        }
    }
}

/// How a bounded call into the student's code ended.
enum Call<T> {
    /// It returned this.
    Returned(T),
    /// It panicked with this message (not a skeleton's `todo!()`, which fails the test at once).
    Panicked(String),
    /// It was still running at the limit (the thread is left behind).
    Hung,
}

/// Runs `f` (a call into the student's code that may block) on a thread of its own and waits up
/// to `limit` for it. A `todo!()` panic fails the test at once with its message.
fn call_within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Call<T> {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name(what.to_owned())
        .spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        })
        .unwrap_or_else(|e| panic!("test set-up: cannot spawn a thread for {what}: {e}"));
    match rx.recv_timeout(limit) {
        Ok(Ok(value)) => Call::Returned(value),
        Ok(Err(payload)) => {
            let message = panic_message(&*payload);
            if message.contains("not yet implemented") {
                panic!("{what} panicked: {message}");
            }
            Call::Panicked(message)
        }
        Err(_) => Call::Hung,
    }
}

/// A client socket as a program gets it: bound to 127.0.0.1:0, with no read timeout at all.
fn socket_without_read_timeout(t: &Transcript) -> UdpSocket {
    let socket = UdpSocket::bind(("127.0.0.1", 0)).expect("test set-up: bind a client socket");
    socket
        .set_read_timeout(None)
        .and_then(|()| socket.set_write_timeout(Some(Duration::from_secs(5))))
        .expect("test set-up: set the timeouts");
    t.step(format_args!(
        "bound a client socket {} with no read timeout",
        addr_of(&socket)
    ));
    socket
}

/// Sends `bytes` from the test's `socket` to `to`, recording it as sent by `who`.
fn send(t: &Transcript, socket: &UdpSocket, bytes: &[u8], who: &str, to: SocketAddr) {
    socket
        .send_to(bytes, to)
        .unwrap_or_else(|e| panic!("test set-up: {who} cannot send to {to}: {e}"));
    t.sent(
        bytes,
        format_args!("{who} {}", addr_of(socket)),
        format_args!("the client {to}"),
    );
}

// ---------------------------------------------------------------------------------------------
// Step 1: encode and decode messages

/// Why an encoded datagram differs from the wire format's `expected` bytes (a request when
/// `kind` is 0, a reply when 1).
fn encode_why(kind: u8, expected: &[u8], got: &[u8]) -> String {
    let name = if kind == 0 { "request" } else { "reply" };
    let field = if kind == 0 { "operation" } else { "status" };
    if got.first() != Some(&kind) {
        return format!("a {name} starts with its type byte, {kind}, before the request id");
    }
    if got.len() == expected.len() - 2 {
        return "the datagram is 2 bytes short: the request id is a u32 and takes 4 bytes on the wire \
                (u32::to_be_bytes), not 2 (a u16)"
            .to_owned();
    }
    if got.len() >= 5 && got[1..5] == [expected[4], expected[3], expected[2], expected[1]] {
        return "the request id's four bytes are in reverse order: that is little-endian (to_le_bytes, \
                or to_ne_bytes on this machine). Integers on the wire are big-endian, network byte \
                order: u32::to_be_bytes"
            .to_owned();
    }
    if got.len() == expected.len() && got[..5] == expected[..5] && got[5] != expected[5] {
        return format!(
            "byte 6 is the {field}: {}",
            if kind == 0 {
                "the request's operation byte, as it is".to_owned()
            } else {
                format!(
                    "0 for Status::Ok, 1 for Status::Error; this one is {}",
                    parse_reply(expected).map_or("?", |(_, s, _)| if s == 0 { "Ok" } else { "Error" })
                )
            }
        );
    }
    if got.windows(3).any(|w| w == "\u{fffd}".as_bytes()) {
        return "the body went through a String: from_utf8_lossy replaced the bytes that are not \
                UTF-8 with U+FFFD. A body is bytes: extend_from_slice them as they are"
            .to_owned();
    }
    format!(
        "the fields go in the wire format's order: type ({kind}), request id (4 bytes, big-endian), \
         {field} (1 byte), then the body as it is, every byte, none added"
    )
}

#[test]
fn step1_request_encode_lays_out_the_fields() {
    let t = Transcript::new(WIRE_FORMAT);
    let cases: [(u32, u8, &[u8]); 3] = [
        (ID, lab::operation::ADD, b"-12"),
        (0xfffe_fdfc, lab::operation::ECHO, b"x"),
        (0, lab::operation::GET, b""),
    ];
    for (request_id, operation, arguments) in cases {
        let request = lab::Request {
            request_id,
            operation,
            arguments: arguments.to_vec(),
        };
        t.step(format_args!("called {}.encode()", shown_request(&request)));
        let got = request.encode();
        let expected = request_bytes(request_id, operation, arguments);
        t.check_bytes("the datagram", &expected, &got, encode_why(0, &expected, &got));
    }
}

#[test]
fn step1_reply_encode_lays_out_the_fields_and_the_status() {
    let t = Transcript::new(WIRE_FORMAT);
    let cases: [(u32, lab::Status, u8, &[u8]); 3] = [
        (ID, lab::Status::Ok, 0, b"42"),
        (ID, lab::Status::Error, 1, b"unknown operation 9"),
        (u32::MAX, lab::Status::Ok, 0, b"-7"),
    ];
    for (request_id, status, byte, result) in cases {
        let reply = lab::Reply {
            request_id,
            status,
            result: result.to_vec(),
        };
        t.step(format_args!("called {}.encode()", shown_reply(&reply)));
        let got = reply.encode();
        let expected = reply_bytes(request_id, byte, result);
        t.check_bytes("the datagram", &expected, &got, encode_why(1, &expected, &got));
    }
}

#[test]
fn step1_encode_keeps_empty_and_non_utf8_bodies() {
    let t = Transcript::new(WIRE_FORMAT);
    let request = lab::Request {
        request_id: ID,
        operation: lab::operation::GET,
        arguments: Vec::new(),
    };
    t.step(format_args!("called {}.encode()", shown_request(&request)));
    let got = request.encode();
    let expected = request_bytes(ID, lab::operation::GET, b"");
    t.check_bytes(
        "the datagram",
        &expected,
        &got,
        if got.len() > 6 {
            "no arguments add no bytes: a request without arguments is its 6-byte header alone".to_owned()
        } else {
            encode_why(0, &expected, &got)
        },
    );
    let arguments = with_non_utf8("echo me");
    let request = lab::Request {
        request_id: ID,
        operation: lab::operation::ECHO,
        arguments: arguments.clone(),
    };
    t.step(format_args!("called {}.encode()", shown_request(&request)));
    let got = request.encode();
    let expected = request_bytes(ID, lab::operation::ECHO, &arguments);
    t.check_bytes("the datagram", &expected, &got, encode_why(0, &expected, &got));
    let every_byte: Vec<u8> = (0..=255u8).rev().collect();
    let reply = lab::Reply {
        request_id: ID,
        status: lab::Status::Ok,
        result: every_byte.clone(),
    };
    t.step(format_args!("called {}.encode()", shown_reply(&reply)));
    let got = reply.encode();
    let expected = reply_bytes(ID, 0, &every_byte);
    t.check_bytes("the datagram", &expected, &got, encode_why(1, &expected, &got));
    let reply = lab::Reply {
        request_id: ID,
        status: lab::Status::Error,
        result: Vec::new(),
    };
    t.step(format_args!("called {}.encode()", shown_reply(&reply)));
    let got = reply.encode();
    let expected = reply_bytes(ID, 1, b"");
    t.check_bytes("the datagram", &expected, &got, encode_why(1, &expected, &got));
}

/// Calls `decode(datagram)`, recording it; a panic fails the test, named.
fn decode(t: &Transcript, datagram: &[u8]) -> Result<lab::Message, lab::DecodeError> {
    t.step(format_args!("called decode({})", sized(datagram)));
    let got = no_panic(
        t,
        "decode",
        || lab::decode(datagram),
        |_| {
            format!(
                "decode panicked on a datagram of {}: indexing past the end of a short datagram (or slicing \
                 it) panics. A datagram comes from anyone and can be any length, the empty one \
                 included: check the length before reading each field (split_first, \
                 split_at_checked and get return None instead of panicking)",
                common::testing::count(datagram.len())
            )
        },
    );
    t.step(format_args!("decode returned {}", shown_decoded(&got)));
    got
}

/// Why a decoded request id is not `expected`.
fn decoded_id_why(expected: u32, got: u32) -> String {
    if got == expected.swap_bytes() {
        "the id's bytes were read in reverse order (little-endian: from_le_bytes): the wire \
         format is big-endian, u32::from_be_bytes of bytes 2 to 5"
            .to_owned()
    } else if got == expected & 0xffff || got == expected >> 16 {
        "only 2 of the id's 4 bytes were read: the id is a u32, bytes 2 to 5 of the datagram".to_owned()
    } else {
        "the request id is bytes 2 to 5 of the datagram (after the type byte), big-endian".to_owned()
    }
}

#[test]
fn step1_decode_reads_a_request_and_a_reply() {
    let t = Transcript::new(WIRE_FORMAT);
    let arguments = with_non_utf8("41");
    let got = decode(&t, &request_bytes(ID, lab::operation::ADD, &arguments));
    let expected = lab::Request {
        request_id: ID,
        operation: lab::operation::ADD,
        arguments: arguments.clone(),
    };
    match &got {
        Ok(lab::Message::Request(r)) => {
            t.check(
                r.request_id == ID,
                format_args!("request_id {}", id(ID)),
                format_args!("request_id {}", id(r.request_id)),
                decoded_id_why(ID, r.request_id),
            );
            t.check(
                *r == expected,
                format_args!("Ok(Message::{})", shown_request(&expected)),
                shown_decoded(&got),
                "byte 6 of a request is the operation, and the arguments are every byte after it",
            );
        }
        _ => t.fail(
            format_args!("Ok(Message::{})", shown_request(&expected)),
            shown_decoded(&got),
            "type 0 is a request: a 6-byte header (type, request id, operation), then the arguments",
        ),
    }
    for (byte, status, result) in [
        (0, lab::Status::Ok, with_non_utf8("42")),
        (1, lab::Status::Error, b"add needs a decimal integer".to_vec()),
    ] {
        let got = decode(&t, &reply_bytes(ID, byte, &result));
        let expected = lab::Reply {
            request_id: ID,
            status,
            result,
        };
        match &got {
            Ok(lab::Message::Reply(r)) => {
                t.check(
                    r.request_id == ID,
                    format_args!("request_id {}", id(ID)),
                    format_args!("request_id {}", id(r.request_id)),
                    decoded_id_why(ID, r.request_id),
                );
                t.check(
                    *r == expected,
                    format_args!("Ok(Message::{})", shown_reply(&expected)),
                    shown_decoded(&got),
                    "byte 6 of a reply is the status (0 Ok, 1 Error), and the result is every byte \
                     after it",
                );
            }
            _ => t.fail(
                format_args!("Ok(Message::{})", shown_reply(&expected)),
                shown_decoded(&got),
                "type 1 is a reply: a 6-byte header (type, request id, status), then the result",
            ),
        }
    }
}

#[test]
fn step1_decode_undoes_encode() {
    let t = Transcript::new(STEP1);
    let big: Vec<u8> = (0..lab::MAX_DATAGRAM - lab::REQUEST_HEADER)
        .map(|i| (i % 251) as u8)
        .collect();
    let requests = [
        (0, lab::operation::GET, Vec::new()),
        (u32::MAX, lab::operation::ECHO, with_non_utf8("round")),
        (ID, 0xff, big.clone()),
    ];
    for (request_id, operation, arguments) in requests {
        let request = lab::Request {
            request_id,
            operation,
            arguments,
        };
        let bytes = request.encode();
        t.step(format_args!(
            "encoded {} into {}",
            shown_request(&request),
            sized(&bytes)
        ));
        let got = decode(&t, &bytes);
        t.check(
            matches!(&got, Ok(lab::Message::Request(r)) if *r == request),
            format_args!("Ok(Message::{})", shown_request(&request)),
            shown_decoded(&got),
            "decode reads back what encode wrote: the same fields, the same bytes",
        );
    }
    for (request_id, status, result) in [
        (0, lab::Status::Error, Vec::new()),
        (u32::MAX, lab::Status::Ok, with_non_utf8("trip")),
        (ID, lab::Status::Ok, big),
    ] {
        let reply = lab::Reply {
            request_id,
            status,
            result,
        };
        let bytes = reply.encode();
        t.step(format_args!(
            "encoded {} into {}",
            shown_reply(&reply),
            sized(&bytes)
        ));
        let got = decode(&t, &bytes);
        t.check(
            matches!(&got, Ok(lab::Message::Reply(r)) if *r == reply),
            format_args!("Ok(Message::{})", shown_reply(&reply)),
            shown_decoded(&got),
            "decode reads back what encode wrote: the same fields, the same bytes",
        );
    }
}

#[test]
fn step1_decode_short_datagrams_are_too_short() {
    let t = Transcript::new(STEP1);
    // Every prefix of a valid header is too short: 0 to 5 bytes. Exactly 6 is a whole message
    // with an empty body.
    for whole in [
        request_bytes(ID, lab::operation::GET, b""),
        reply_bytes(ID, 0, b""),
    ] {
        for len in 0..whole.len() {
            let got = decode(&t, &whole[..len]);
            t.check(
                matches!(&got, Err(lab::DecodeError::TooShort { len: l, .. }) if *l == len),
                format_args!("Err(TooShort {{ len: {len}, .. }})"),
                shown_decoded(&got),
                format_args!(
                    "a datagram of {} is shorter than the 6-byte header: it is no message, and TooShort \
                     says how long it was",
                    common::testing::count(len)
                ),
            );
        }
        let got = decode(&t, &whole);
        t.check(
            got.is_ok(),
            "Ok(a message with an empty body)",
            shown_decoded(&got),
            "6 bytes are a whole header: a request without arguments or a reply with an empty \
             result is a message, not too short (an off-by-one in the length check?)",
        );
    }
}

#[test]
fn step1_decode_unknown_type_whatever_the_length() {
    let t = Transcript::new(WIRE_FORMAT);
    let mut long = vec![0xff];
    long.extend_from_slice(&[7; 99]);
    let cases = [
        vec![2],
        vec![0xff],
        reply_bytes(ID, 0, b"type 1 made 2")
            .into_iter()
            .enumerate()
            .map(|(i, b)| if i == 0 { 2 } else { b })
            .collect::<Vec<u8>>(),
        long,
    ];
    for datagram in cases {
        let kind = datagram[0];
        let got = decode(&t, &datagram);
        let why = match &got {
            Err(lab::DecodeError::TooShort { .. }) => format!(
                "look at the type byte before the length: a datagram of type {kind} is of an unknown \
                 type, whatever its length, not a short request or reply"
            ),
            Ok(_) => format!("only type 0 is a request and only type 1 a reply; type {kind} is neither"),
            _ => format!("the type byte is {kind}: UnknownType({kind})"),
        };
        t.check(
            matches!(got, Err(lab::DecodeError::UnknownType(k)) if k == kind),
            format_args!("Err(UnknownType({kind}))"),
            shown_decoded(&got),
            why,
        );
    }
}

#[test]
fn step1_decode_unknown_status_and_any_operation() {
    let t = Transcript::new(WIRE_FORMAT);
    for status in [2u8, 0xff] {
        let got = decode(&t, &reply_bytes(ID, status, b"maybe"));
        t.check(
            matches!(got, Err(lab::DecodeError::UnknownStatus(s)) if s == status),
            format_args!("Err(UnknownStatus({status}))"),
            shown_decoded(&got),
            format_args!(
                "a reply's status is 0 (Ok) or 1 (Error), nothing else: {status} is not \"not 0, so an \
                 error\" but a datagram this protocol does not know, UnknownStatus({status})"
            ),
        );
    }
    // The operation byte is the server's business: an unknown operation gets an error reply,
    // so decode must hand it over as it is.
    for operation in [0u8, 2, 0xff] {
        let got = decode(&t, &request_bytes(ID, operation, b"x"));
        t.check(
            matches!(&got, Ok(lab::Message::Request(r)) if r.operation == operation && r.arguments == b"x"),
            format_args!("Ok(Message::Request {{ operation: {operation}, arguments: \"x\" (1 byte), .. }})"),
            shown_decoded(&got),
            "a request's operation byte is not a status: any value decodes, and the server refuses an \
             unknown operation with an error reply",
        );
    }
}

#[test]
fn step1_decode_body_is_everything_after_the_header() {
    let t = Transcript::new(WIRE_FORMAT);
    let big: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
    let bodies: [&[u8]; 3] = [b"x", b"abc\xff", &big];
    for body in bodies {
        for kind in [0u8, 1] {
            let (datagram, header_byte) = if kind == 0 {
                (
                    request_bytes(ID, lab::operation::ECHO, body),
                    lab::operation::ECHO,
                )
            } else {
                (reply_bytes(ID, 0, body), 0)
            };
            let got = decode(&t, &datagram);
            let got_body = match &got {
                Ok(lab::Message::Request(r)) if kind == 0 => r.arguments.clone(),
                Ok(lab::Message::Reply(r)) if kind == 1 => r.result.clone(),
                _ => t.fail(
                    format_args!(
                        "Ok(a {} with the body {})",
                        if kind == 0 { "request" } else { "reply" },
                        sized(body)
                    ),
                    shown_decoded(&got),
                    "a well-formed message decodes (see step1_decode_reads_a_request_and_a_reply)",
                ),
            };
            let mut with_header = vec![header_byte];
            with_header.extend_from_slice(body);
            let why = if got_body.as_slice() == &body[..body.len() - 1] {
                "the body's last byte is missing: the body runs from byte 7 to the very end, \
                 datagram[6..] (a range's end is exclusive: ..len, not ..len - 1)"
            } else if got_body == with_header {
                "the body includes the last header byte (the operation or status): it starts after \
                 the 6-byte header, at datagram[6]"
            } else {
                "the body is every byte after the 6-byte header, as it is"
            };
            t.check_bytes("the body", body, &got_body, why);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Step 2: wait for the matching reply

/// Calls `await_reply(socket, server, request_id, timeout)` on a thread, waiting up to `limit`;
/// returns how it ended and how long it took.
fn await_within(
    t: &Transcript,
    socket: UdpSocket,
    server: SocketAddr,
    request_id: u32,
    timeout: Duration,
    limit: Duration,
) -> (Call<io::Result<Option<lab::Reply>>>, Duration) {
    t.step(format_args!(
        "called await_reply(client {}, server {server}, request id {}, {} ms)",
        addr_of(&socket),
        id(request_id),
        timeout.as_millis()
    ));
    let started = Instant::now();
    let got = call_within("lab::await_reply", limit, move || {
        lab::await_reply(&socket, server, request_id, timeout)
    });
    let took = started.elapsed();
    match &got {
        Call::Returned(r) => t.step(format_args!(
            "await_reply returned {} after {} ms",
            shown_await(r),
            took.as_millis()
        )),
        Call::Panicked(m) => t.step(format_args!("await_reply panicked: {m}")),
        Call::Hung => t.step(format_args!(
            "await_reply was still waiting after {} ms",
            took.as_millis()
        )),
    }
    (got, took)
}

/// The reply `await_reply` returned, or a failure: it hung (`hung_why`), panicked, or returned
/// something else than a reply (`expected` names the reply awaited).
fn awaited(
    t: &Transcript,
    got: Call<io::Result<Option<lab::Reply>>>,
    expected: &lab::Reply,
    hung_why: &str,
) -> lab::Reply {
    let want = format!("Ok(Some({}))", shown_reply(expected));
    match got {
        Call::Returned(Ok(Some(reply))) => reply,
        Call::Returned(Ok(None)) => t.fail(
            want,
            "Ok(None)",
            "the reply was in the socket's queue, from the server, with the request id awaited: \
             receive it, check the sender, decode it, compare the id, and return it",
        ),
        Call::Returned(Err(e)) => t.fail(
            want,
            format_args!("Err({:?}: {e})", e.kind()),
            "datagrams that are not the reply (from a stranger, junk, a request, another request \
             id) are ignored and the wait goes on: none of them is an error",
        ),
        Call::Panicked(message) => t.fail(
            want,
            format_args!("await_reply panicked: {message}"),
            "await_reply must not panic on any datagram: decode returns an error for bad bytes \
             (step 1), and a datagram that does not decode is ignored",
        ),
        Call::Hung => t.fail(want, "still waiting", hung_why),
    }
}

/// Checks that `got` is `expected`, field by field, naming the first difference.
fn check_reply(t: &Transcript, expected: &lab::Reply, got: &lab::Reply, why: impl std::fmt::Display) {
    t.check(
        got == expected,
        format_args!("Ok(Some({}))", shown_reply(expected)),
        format_args!("Ok(Some({}))", shown_reply(got)),
        why,
    );
}

#[test]
fn step2_returns_the_matching_reply() {
    let t = Transcript::new(STEP2);
    let server = udp_socket();
    let server_addr = addr_of(&server);
    for (byte, status, result) in [
        (0, lab::Status::Ok, with_non_utf8("42")),
        (1, lab::Status::Error, b"add needs a decimal integer".to_vec()),
    ] {
        let client = udp_socket();
        let expected = lab::Reply {
            request_id: ID,
            status,
            result: result.clone(),
        };
        send(
            &t,
            &server,
            &reply_bytes(ID, byte, &result),
            "the server",
            addr_of(&client),
        );
        let (got, _) = await_within(&t, client, server_addr, ID, Duration::from_secs(3), CALL_LIMIT);
        let reply = awaited(
            &t,
            got,
            &expected,
            "the reply was already waiting in the socket's queue: one recv_from returns it",
        );
        check_reply(
            &t,
            &expected,
            &reply,
            "await_reply returns the reply as decode reads it; an error reply (status 1) is a reply \
             too: the server answered, and refused",
        );
    }
}

#[test]
fn step2_ignores_a_late_reply_to_another_id() {
    let t = Transcript::new(REQUEST_IDS);
    let server = udp_socket();
    let client = udp_socket();
    let (server_addr, client_addr) = (addr_of(&server), addr_of(&client));
    let late = b"the late reply to the previous request";
    // A late reply to the previous request, and a duplicate of it, come first.
    send(
        &t,
        &server,
        &reply_bytes(ID - 1, 0, late),
        "the server",
        client_addr,
    );
    send(
        &t,
        &server,
        &reply_bytes(ID - 1, 0, late),
        "the server",
        client_addr,
    );
    let mine = with_non_utf8("the reply to this request");
    send(&t, &server, &reply_bytes(ID, 0, &mine), "the server", client_addr);
    let (got, _) = await_within(&t, client, server_addr, ID, Duration::from_secs(3), CALL_LIMIT);
    let expected = lab::Reply {
        request_id: ID,
        status: lab::Status::Ok,
        result: mine,
    };
    let reply = awaited(
        &t,
        got,
        &expected,
        "the reply to this request was waiting in the queue",
    );
    check_reply(
        &t,
        &expected,
        &reply,
        if reply.request_id != ID {
            format!(
                "await_reply took a late reply (request id {}) for the reply to request {}: a reply \
                 with another request id answers an earlier request (it came late, or is a \
                 duplicate). Compare reply.request_id with request_id, ignore it and wait on",
                id(reply.request_id),
                id(ID)
            )
        } else {
            "await_reply returns the reply with the request id awaited, as decode reads it".to_owned()
        },
    );
}

#[test]
fn step2_ignores_strangers() {
    let t = Transcript::new(PROTOCOLS);
    let server = udp_socket();
    let client = udp_socket();
    let (server_addr, client_addr) = (addr_of(&server), addr_of(&client));
    // Another socket on the server's IP (another port) sends a reply with the right id first.
    let stranger = udp_socket();
    let stranger_addr = addr_of(&stranger);
    send(
        &t,
        &stranger,
        &reply_bytes(ID, 0, b"from a stranger"),
        "a stranger (the server's IP, another port)",
        client_addr,
    );
    let real = with_non_utf8("from the server");
    send(&t, &server, &reply_bytes(ID, 0, &real), "the server", client_addr);
    let (got, _) = await_within(&t, client, server_addr, ID, Duration::from_secs(3), CALL_LIMIT);
    let expected = lab::Reply {
        request_id: ID,
        status: lab::Status::Ok,
        result: real,
    };
    let reply = awaited(&t, got, &expected, "the server's reply was waiting in the queue");
    check_reply(
        &t,
        &expected,
        &reply,
        if reply.result == b"from a stranger" {
            format!(
                "await_reply took the datagram of a stranger ({stranger_addr}) for the server's \
                 reply: anyone can send to the client's port, and the request id alone proves \
                 nothing. Compare the whole sender with `server`, IP and port (127.0.0.1 is both \
                 the server's IP and the stranger's)"
            )
        } else {
            "await_reply returns the server's reply as decode reads it".to_owned()
        },
    );
}

#[test]
fn step2_ignores_junk_and_requests() {
    let t = Transcript::new(PROTOCOLS);
    let server = udp_socket();
    let client = udp_socket();
    let (server_addr, client_addr) = (addr_of(&server), addr_of(&client));
    let junk: [Vec<u8>; 5] = [
        Vec::new(),
        vec![1, 1, 2],
        {
            let mut b = reply_bytes(ID, 0, b"type 9");
            b[0] = 9;
            b
        },
        reply_bytes(ID, 2, b"status 2"),
        request_bytes(ID, lab::operation::ECHO, b"a request, not a reply"),
    ];
    for datagram in &junk {
        send(&t, &server, datagram, "the server", client_addr);
    }
    let real = with_non_utf8("the reply");
    send(&t, &server, &reply_bytes(ID, 0, &real), "the server", client_addr);
    let (got, _) = await_within(&t, client, server_addr, ID, Duration::from_secs(3), CALL_LIMIT);
    let expected = lab::Reply {
        request_id: ID,
        status: lab::Status::Ok,
        result: real,
    };
    let reply = awaited(
        &t,
        got,
        &expected,
        "the reply was waiting in the queue, after the junk",
    );
    check_reply(
        &t,
        &expected,
        &reply,
        "a datagram that does not decode, or decodes as a request, is not the reply: ignore it and \
         wait on",
    );
}

#[test]
fn step2_returns_none_after_the_timeout() {
    let t = Transcript::new(STEP2);
    let silent = udp_socket();
    let silent_addr = addr_of(&silent);
    let timeout = Duration::from_millis(300);
    let client = udp_socket();
    let (got, took) = await_within(&t, client, silent_addr, ID, timeout, timeout + HANG_SLACK);
    match got {
        Call::Returned(Ok(None)) => {}
        Call::Returned(Err(e)) if is_timeout(&e) => t.fail(
            "Ok(None)",
            format_args!("Err({:?}: {e})", e.kind()),
            "the read timeout is the end of the wait, not an error: when it fires (is_timeout), \
             return Ok(None), which tells the caller to retransmit",
        ),
        Call::Returned(other) => t.fail(
            "Ok(None)",
            shown_await(&other),
            "nothing arrived: after the timeout there is no reply",
        ),
        Call::Panicked(m) => t.fail(
            "Ok(None)",
            format_args!("await_reply panicked: {m}"),
            "nothing arrived",
        ),
        Call::Hung => t.fail(
            "Ok(None) after about 300 ms",
            format_args!("still waiting after {} ms", took.as_millis()),
            "the wait must end at the timeout: set the socket's read timeout (set_read_timeout) to \
             what is left of the deadline before each recv_from",
        ),
    }
    t.check(
        took >= timeout * 8 / 10,
        "about 300 ms",
        format_args!("{} ms", took.as_millis()),
        "await_reply gave up before its timeout: wait until the deadline, now + timeout",
    );
    // No time at all: over at once, and no error (set_read_timeout(Some(0)) is rejected).
    let client = udp_socket();
    let (got, _) = await_within(&t, client, silent_addr, ID, Duration::ZERO, SLACK);
    match got {
        Call::Returned(Ok(None)) => {}
        Call::Returned(other) => t.fail(
            "Ok(None) at once",
            shown_await(&other),
            "when no time is left the wait is over: return Ok(None) before setting a read timeout, \
             because set_read_timeout(Some(Duration::ZERO)) is rejected (InvalidInput). That \
             happens in real use too, when a stray datagram arrives just at the deadline",
        ),
        Call::Panicked(m) => t.fail(
            "Ok(None) at once",
            format_args!("panicked: {m}"),
            "no time was left",
        ),
        Call::Hung => t.fail(
            "Ok(None) at once",
            format_args!("still waiting after {} ms", SLACK.as_millis()),
            "a zero timeout leaves no time to wait",
        ),
    }
}

#[test]
fn step2_strangers_and_other_ids_do_not_extend_the_timeout() {
    let t = Transcript::new(STEP2);
    let server = udp_socket();
    let client = udp_socket();
    let probe = client.try_clone().expect("test set-up: clone a socket");
    let (server_addr, client_addr) = (addr_of(&server), addr_of(&client));
    let stop = Arc::new(AtomicBool::new(false));
    let flood_stop = Arc::clone(&stop);
    // Every 40 ms: a stranger's reply with the right id, and the server's reply to another id.
    let flood = thread::spawn(move || {
        let stranger = udp_socket();
        let until = Instant::now() + Duration::from_secs(3);
        while !flood_stop.load(Ordering::Relaxed) && Instant::now() < until {
            let _ = stranger.send_to(&reply_bytes(ID, 0, b"noise"), client_addr);
            let _ = server.send_to(&reply_bytes(ID + 7, 0, b"another id"), client_addr);
            thread::sleep(Duration::from_millis(40));
        }
    });
    t.step(format_args!(
        "every 40 ms a stranger sent a reply with request id {} and the server a reply to request \
         id {}",
        id(ID),
        id(ID + 7)
    ));
    let timeout = Duration::from_millis(300);
    let (got, took) = await_within(&t, client, server_addr, ID, timeout, timeout + HANG_SLACK);
    stop.store(true, Ordering::Relaxed);
    let _ = flood.join();
    let why = "the timeout is one deadline for the whole wait: compute it once, before the loop, \
               and give each recv_from what is left of it, not a fresh timeout after each datagram \
               that is not the reply (a stranger that keeps sending would keep the client waiting \
               for ever)";
    match got {
        Call::Returned(Ok(None)) => {}
        Call::Returned(other) => t.fail(
            "Ok(None)",
            shown_await(&other),
            "only strangers and replies to another request id arrived: none is the reply",
        ),
        Call::Panicked(m) => t.fail("Ok(None)", format_args!("await_reply panicked: {m}"), why),
        Call::Hung => t.fail(
            "Ok(None) after about 300 ms",
            format_args!("still waiting after {} ms", took.as_millis()),
            if probe.read_timeout().ok().flatten().is_none() {
                "the socket has no read timeout: set_read_timeout to what is left of the deadline \
                 before each recv_from"
            } else {
                why
            },
        ),
    }
    t.check(
        took <= timeout + SLACK,
        "about 300 ms",
        format_args!("{} ms", took.as_millis()),
        why,
    );
}

#[test]
fn step2_sets_a_read_timeout_itself() {
    let t = Transcript::new(STEP2);
    let silent = udp_socket();
    // As a Client's socket is: no read timeout, so await_reply must bound every receive.
    let client = socket_without_read_timeout(&t);
    let probe = client.try_clone().expect("test set-up: clone a socket");
    let timeout = Duration::from_millis(200);
    let (got, took) = await_within(&t, client, addr_of(&silent), ID, timeout, timeout + HANG_SLACK);
    match got {
        Call::Returned(Ok(None)) => {}
        Call::Returned(other) => t.fail("Ok(None)", shown_await(&other), "nothing arrived"),
        Call::Panicked(m) => t.fail(
            "Ok(None)",
            format_args!("await_reply panicked: {m}"),
            "nothing arrived",
        ),
        Call::Hung => t.fail(
            "Ok(None) after about 200 ms",
            format_args!("still waiting after {} ms", took.as_millis()),
            if probe.read_timeout().ok().flatten().is_none() {
                "the socket has no read timeout, so recv_from waits until a datagram comes, for \
                 ever if none does: before each receive, set_read_timeout to what is left of the \
                 deadline"
            } else {
                "await_reply set a read timeout, yet it still waits: when recv_from fails with the \
                 timeout (is_timeout), return Ok(None)"
            },
        ),
    }
}

#[cfg(unix)]
#[test]
fn step2_survives_interrupted_calls() {
    let t = Transcript::new(STEP2);
    let server = udp_socket();
    let client = udp_socket();
    let (server_addr, client_addr) = (addr_of(&server), addr_of(&client));
    let result = with_non_utf8("worth the wait");
    let datagram = reply_bytes(ID, 0, &result);
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        let _ = server.send_to(&datagram, client_addr);
    });
    t.step(format_args!(
        "called await_reply(client {client_addr}, server {server_addr}, request id {}, 3000 ms), \
         sending its thread a signal (SIGUSR1) every 20 ms; the server replies 200 ms later",
        id(ID)
    ));
    let got = call_within("lab::await_reply", CALL_LIMIT, move || {
        common::testing::with_interrupts(move || {
            lab::await_reply(&client, server_addr, ID, Duration::from_secs(3))
        })
    });
    let _ = sender.join();
    let expected = lab::Reply {
        request_id: ID,
        status: lab::Status::Ok,
        result,
    };
    let why = "a signal interrupts recv_from with ErrorKind::Interrupted (Linux never restarts a \
               receive that has a timeout): that is neither a timeout nor a failure, so wait on \
               until the deadline";
    let (got, signals) = match got {
        Call::Returned(r) => r,
        Call::Panicked(m) => t.fail("Ok(Some(the reply))", format_args!("panicked: {m}"), why),
        Call::Hung => t.fail(
            "Ok(Some(the reply)) after about 200 ms",
            format_args!("still waiting after {} ms", CALL_LIMIT.as_millis()),
            "the reply came 200 ms after the call: take it",
        ),
    };
    t.step(format_args!(
        "await_reply returned {} after {signals} signals",
        shown_await(&got)
    ));
    match got {
        Ok(Some(reply)) => check_reply(&t, &expected, &reply, "await_reply returns the reply"),
        other => t.fail(
            format_args!("Ok(Some({}))", shown_reply(&expected)),
            shown_await(&other),
            why,
        ),
    }
    t.check(
        signals > 0,
        "at least one signal sent while the call ran",
        "none",
        "test set-up: the call returned before any signal, so it was not tested with one",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 3: request ids and retransmission

/// A datagram the test's server received.
#[derive(Debug, Clone)]
struct Got {
    bytes: Vec<u8>,
    from: SocketAddr,
}

impl Got {
    /// The request id, if the datagram is a request.
    fn id(&self) -> Option<u32> {
        parse_request(&self.bytes).map(|(id, _, _)| id)
    }

    /// Sends the reply `(status, result)` to this request's sender, with its request id.
    fn answer(&self, socket: &UdpSocket, status: u8, result: &[u8]) {
        if let Some(id) = self.id() {
            let _ = socket.send_to(&reply_bytes(id, status, result), self.from);
        }
    }
}

/// The test's own server (not the student's code), on a thread: it calls `script` for every
/// datagram that arrives, with its socket, the datagram and every datagram so far (this one
/// last), until [`FakeServer::finish`].
struct FakeServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<Vec<Got>>>,
}

impl FakeServer {
    fn start(mut script: impl FnMut(&UdpSocket, &Got, &[Got]) + Send + 'static) -> FakeServer {
        let socket = udp_socket();
        socket
            .set_read_timeout(Some(POLL))
            .expect("test set-up: set a read timeout");
        let addr = addr_of(&socket);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut all: Vec<Got> = Vec::new();
            let mut buf = vec![0u8; 65_536];
            // At most 10 s, so a server left behind by a failed test ends by itself.
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                match socket.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        all.push(Got {
                            bytes: buf[..n].to_vec(),
                            from,
                        });
                        let got = all[all.len() - 1].clone();
                        script(&socket, &got, &all);
                    }
                    // Only once the queue is empty: every datagram sent before `finish` is seen.
                    Err(_) if flag.load(Ordering::SeqCst) => break,
                    Err(_) => {}
                }
            }
            all
        });
        FakeServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// A server that never answers.
    fn silent() -> FakeServer {
        FakeServer::start(|_, _, _| {})
    }

    /// Stops the server and returns every datagram it received. (On loopback a datagram is in
    /// the receiver's queue by the time `send_to` returns, so nothing the client sent is missed.)
    fn finish(mut self) -> Vec<Got> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What the server received, one line per datagram, for a failure message.
fn shown_gots(gots: &[Got]) -> String {
    if gots.is_empty() {
        return "nothing".to_owned();
    }
    gots.iter()
        .map(|g| match parse_request(&g.bytes) {
            Some((rid, op, _)) => format!(
                "request id {} op {op}: {} from {}",
                id(rid),
                sized(&g.bytes),
                g.from
            ),
            None => format!("{} from {}", sized(&g.bytes), g.from),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn options(timeout_ms: u64, retries: u32) -> lab::ClientOptions {
    lab::ClientOptions {
        timeout: Duration::from_millis(timeout_ms),
        retries,
    }
}

/// A `Client` of `server` whose first request id is `first_id` (given code).
fn client_of(t: &Transcript, server: SocketAddr, options: lab::ClientOptions, first_id: u32) -> lab::Client {
    t.step(format_args!(
        "created Client::with_first_id({server}, timeout {} ms, retries {}, first id {})",
        options.timeout.as_millis(),
        options.retries,
        id(first_id)
    ));
    t.ok(
        lab::Client::with_first_id(server, options, first_id),
        "Client::with_first_id",
        "test set-up: binding an ephemeral port",
    )
}

type Operated = (lab::Client, Result<lab::Outcome, lab::OperationError>);

/// Calls `client.do_operation(operation, arguments)` on a thread, waiting up to `limit`; returns
/// the client and the result, or fails when it panicked or hung (`budget` says how long it should
/// take at most).
fn operate(
    t: &Transcript,
    client: lab::Client,
    operation: u8,
    arguments: &[u8],
    limit: Duration,
    budget: &str,
) -> (Operated, Duration) {
    t.step(format_args!(
        "called do_operation({operation}, {})",
        sized(arguments)
    ));
    let args = arguments.to_vec();
    let started = Instant::now();
    let got = call_within("Client::do_operation", limit, move || {
        let mut client = client;
        let result = client.do_operation(operation, &args);
        (client, result)
    });
    let took = started.elapsed();
    match got {
        Call::Returned(done) => {
            t.step(format_args!(
                "do_operation returned {} after {} ms",
                shown_outcome(&done.1),
                took.as_millis()
            ));
            (done, took)
        }
        Call::Panicked(message) => t.fail(
            "do_operation to return",
            format_args!("it panicked: {message}"),
            if message.contains("overflow") {
                "the request id overflowed: after u32::MAX comes 0 (ids wrap), so move next_id on \
                 with wrapping_add(1), not + 1 (which panics in a debug build)"
            } else {
                "do_operation must not panic: it returns the reply, or an OperationError"
            },
        ),
        Call::Hung => t.fail(
            format_args!("do_operation to return within {budget}"),
            format_args!("still running after {} ms", took.as_millis()),
            "every attempt must end at its timeout: the Client's socket has no read timeout, so \
             await_reply sets one before each receive (see step2_sets_a_read_timeout_itself and \
             step2_strangers_and_other_ids_do_not_extend_the_timeout)",
        ),
    }
}

/// Checks that the outcome is the reply `(request_id, result)` after `attempts` attempts.
fn check_outcome(
    t: &Transcript,
    result: &Result<lab::Outcome, lab::OperationError>,
    request_id: u32,
    expected_result: &[u8],
    attempts: u32,
    why_not_ok: &str,
) {
    let expected = lab::Reply {
        request_id,
        status: lab::Status::Ok,
        result: expected_result.to_vec(),
    };
    let want = format!(
        "Ok(Outcome {{ reply: {}, attempts: {attempts} }})",
        shown_reply(&expected)
    );
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(_) => t.fail(&want, shown_outcome(result), why_not_ok),
    };
    t.check(
        outcome.reply == expected,
        &want,
        shown_outcome(result),
        if outcome.reply.request_id == request_id {
            "do_operation returns the reply as await_reply got it"
        } else {
            "the reply's request id is not the request's: await_reply must return only the reply \
             with the request id awaited"
        },
    );
    t.check(
        outcome.attempts == attempts,
        &want,
        shown_outcome(result),
        if outcome.attempts + 1 == attempts {
            "Outcome.attempts counts the times the request went out, from 1: it is 1 when the first \
             copy got its reply (count the attempts from 1, not 0)"
        } else {
            "Outcome.attempts is how many times the request went out (the server counted them)"
        },
    );
}

/// How many copies of request `request_id` the test's server received.
fn copies(gots: &[Got], request_id: u32) -> u32 {
    gots.iter().filter(|g| g.id() == Some(request_id)).count() as u32
}

/// Performs `operations` one after the other on `client`, stopping after the first that fails
/// (the rest would fail the same way, only slower); returns the client and the results.
fn operate_all(
    t: &Transcript,
    mut client: lab::Client,
    operations: &[(u8, Vec<u8>)],
    limit: Duration,
    budget: &str,
) -> (lab::Client, Vec<Result<lab::Outcome, lab::OperationError>>) {
    let mut results = Vec::new();
    for (operation, arguments) in operations {
        let ((back, result), _) = operate(t, client, *operation, arguments, limit, budget);
        client = back;
        let failed = result.is_err();
        results.push(result);
        if failed {
            break;
        }
    }
    (client, results)
}

/// A test server that answers every request at once, its arguments as the result (and every
/// copy of a request again, so a retransmission on a slow machine does no harm).
fn echo_server() -> FakeServer {
    FakeServer::start(|socket, got, _| {
        if let Some((_, _, args)) = parse_request(&got.bytes) {
            got.answer(socket, 0, &args);
        }
    })
}

#[test]
fn step3_request_ids_count_up_from_first_id() {
    let t = Transcript::new(REQUEST_IDS);
    let server = echo_server();
    t.step("the test's server answers every request at once, its arguments as the result");
    let first = 0x0102_03fe;
    let client = client_of(&t, server.addr, options(200, 3), first);
    let me = t.ok(client.local_addr(), "Client::local_addr", "test set-up");
    let operations: [(u8, Vec<u8>); 3] = [
        (lab::operation::ECHO, with_non_utf8("one")),
        (lab::operation::GET, Vec::new()),
        (lab::operation::ADD, b"-7".to_vec()),
    ];
    let limit = Duration::from_millis(800) + HANG_SLACK;
    let (client, results) = operate_all(&t, client, &operations, limit, "800 ms (4 attempts of 200 ms)");
    // What went out first: a wrong id shows there, before the replies to it are judged.
    let gots = server.finish();
    t.step(format_args!("the server received {}", shown_gots(&gots)));
    let expected_ids: Vec<u32> = (0..3).map(|k| first.wrapping_add(k)).collect();
    let expected: Vec<Vec<u8>> = operations
        .iter()
        .zip(&expected_ids)
        .map(|((operation, arguments), &rid)| request_bytes(rid, *operation, arguments))
        .collect();
    // Every datagram is a copy of the current operation's request, or the first of the next.
    let mut k = 0;
    for (j, got) in gots.iter().enumerate() {
        let new_operation = j > 0 && got.bytes != gots[j - 1].bytes;
        if new_operation {
            k += 1;
        }
        let Some(want) = expected.get(k) else {
            t.fail(
                "the requests of the 3 operations and nothing else",
                shown_gots(&gots),
                "each operation sends its request, and copies of that same request only after a timeout",
            )
        };
        let why = match got.id() {
            Some(rid) if new_operation && Some(rid) == gots[j - 1].id() => format!(
                "operation {} used the same request id as operation {k}: take self.next_id and move \
                 it on (wrapping_add(1)) at the start of every operation. The server would take \
                 the new operation for a retransmission of the previous one and answer it from \
                 its history",
                k + 1
            ),
            Some(rid) if rid != expected_ids[k] => format!(
                "operation {} must carry request id {}: first_id, then first_id + 1, and so on",
                k + 1,
                id(expected_ids[k])
            ),
            _ => "the request is Request { request_id, operation, arguments }.encode()".to_owned(),
        };
        t.check_bytes(
            &format!("datagram {} (operation {})", j + 1, k + 1),
            want,
            &got.bytes,
            why,
        );
        t.check(
            got.from.port() == me.port(),
            format_args!("every request from the client's port {}", me.port()),
            format_args!("datagram {} from {}", j + 1, got.from),
            "a Client has one socket for all its operations: use self.socket, bind nothing new",
        );
    }
    t.check(
        !gots.is_empty() && k + 1 == results.len(),
        format_args!("the requests of the {} operations performed", results.len()),
        shown_gots(&gots),
        "each operation sends its request to the server",
    );
    for (k, result) in results.iter().enumerate() {
        check_outcome(
            &t,
            result,
            expected_ids[k],
            &operations[k].1,
            copies(&gots, expected_ids[k]),
            "the server answered every request at once, with its request id",
        );
    }
    t.check(
        client.next_id() == first.wrapping_add(3),
        format_args!("next_id() = {}", id(first.wrapping_add(3))),
        format_args!("next_id() = {}", id(client.next_id())),
        "after three operations, the next one gets first_id + 3",
    );
}

#[test]
fn step3_request_ids_wrap_after_u32_max() {
    let t = Transcript::new(REQUEST_IDS);
    let server = echo_server();
    t.step("the test's server answers every request at once, its arguments as the result");
    let client = client_of(&t, server.addr, options(200, 3), u32::MAX);
    let operations: Vec<(u8, Vec<u8>)> = ["a", "b", "c"]
        .iter()
        .map(|a| (lab::operation::ECHO, a.as_bytes().to_vec()))
        .collect();
    let limit = Duration::from_millis(800) + HANG_SLACK;
    let (_, results) = operate_all(&t, client, &operations, limit, "800 ms (4 attempts of 200 ms)");
    let gots = server.finish();
    let mut ids: Vec<Option<u32>> = gots.iter().map(Got::id).collect();
    ids.dedup();
    t.step(format_args!(
        "the server received request ids {ids:?} (copies of one request counted once)"
    ));
    t.check(
        ids == [Some(u32::MAX), Some(0), Some(1)],
        format_args!("request ids {}, 0, 1", u32::MAX),
        format_args!("{ids:?}"),
        "ids wrap: after u32::MAX comes 0 (wrapping_add(1))",
    );
    for ((expected, result), (_, arguments)) in [u32::MAX, 0, 1].into_iter().zip(&results).zip(&operations) {
        check_outcome(
            &t,
            result,
            expected,
            arguments,
            copies(&gots, expected),
            "the server answered every request at once, with its request id",
        );
    }
}

#[test]
fn step3_retransmissions_carry_the_same_id_and_bytes() {
    let t = Transcript::new(STEP3);
    // The first two copies are "lost": the server answers from the third copy on.
    let server = FakeServer::start(|socket, got, all| {
        if all.len() >= 3 {
            got.answer(socket, 0, b"5");
        }
    });
    t.step("the test's server ignores the first two datagrams and answers the ones after");
    let client = client_of(&t, server.addr, options(150, 5), ID);
    let me = t.ok(client.local_addr(), "Client::local_addr", "test set-up");
    let limit = Duration::from_millis(900) + HANG_SLACK;
    let ((_, result), _) = operate(
        &t,
        client,
        lab::operation::ADD,
        b"5",
        limit,
        "900 ms (6 attempts of 150 ms)",
    );
    let gots = server.finish();
    t.step(format_args!("the server received {}", shown_gots(&gots)));
    t.check(
        gots.len() >= 3,
        "at least 3 copies of the request",
        format_args!("{} datagrams", gots.len()),
        "after each attempt's timeout the request goes out again, up to retries (5) more times",
    );
    let expected = request_bytes(ID, lab::operation::ADD, b"5");
    for (k, got) in gots.iter().enumerate() {
        let why = match got.id() {
            Some(rid) if rid != ID && k > 0 => format!(
                "copy {} carries request id {}, copy 1 carried {}: every retransmission of one \
                 operation carries the same id (take the id and encode the request once, before \
                 the loop). With a new id every copy is a new request, which the server executes \
                 again",
                k + 1,
                id(rid),
                gots[0].id().map_or("none".to_owned(), id)
            ),
            _ => "every copy is the same datagram: Request { request_id, operation, arguments }, \
                  encoded once"
                .to_owned(),
        };
        t.check_bytes(&format!("copy {}", k + 1), &expected, &got.bytes, why);
        t.check(
            got.from.port() == me.port(),
            format_args!("every copy from the client's port {}", me.port()),
            format_args!("copy {} from {}", k + 1, got.from),
            "a new socket for an attempt closes the port that a late reply to an earlier copy goes \
             to: use one socket, the Client's, for every attempt and operation",
        );
    }
    check_outcome(
        &t,
        &result,
        ID,
        b"5",
        gots.len() as u32,
        "the server answered the third copy and those after it",
    );
}

#[test]
fn step3_accepts_a_late_reply_to_an_earlier_copy() {
    let t = Transcript::new(FAILURE_MODEL);
    // The first copy is answered late (after its attempt's timeout); the others never.
    let server = FakeServer::start(|socket, got, all| {
        if all.len() == 1 {
            thread::sleep(Duration::from_millis(250));
            got.answer(socket, 0, b"late but mine");
        }
    });
    t.step("the test's server answers the first copy only, 250 ms after it came");
    let client = client_of(&t, server.addr, options(150, 5), ID);
    let limit = Duration::from_millis(900) + HANG_SLACK;
    let ((_, result), _) = operate(&t, client, lab::operation::ECHO, b"slow?", limit, "900 ms");
    let gots = server.finish();
    t.step(format_args!("the server received {}", shown_gots(&gots)));
    let sources: Vec<SocketAddr> = gots.iter().map(|g| g.from).collect();
    let one_socket = sources.windows(2).all(|w| w[0] == w[1]);
    t.check(
        one_socket,
        "every copy from one endpoint",
        format_args!("copies from {sources:?}"),
        "a new socket for each attempt closes the port that the late reply to the earlier copy \
         goes to: bind one socket (the Client's) and use it for every attempt",
    );
    let outcome = match &result {
        Ok(outcome) => outcome,
        Err(_) => t.fail(
            "Ok(the late reply)",
            shown_outcome(&result),
            "the reply to copy 1 arrived during a later attempt: it answers the same request (same \
             id), so take it; keep receiving on the same socket",
        ),
    };
    t.check(
        outcome.reply.request_id == ID && outcome.reply.result == b"late but mine",
        format_args!("the reply to request {} \"late but mine\"", id(ID)),
        shown_outcome(&result),
        "the late reply is the reply",
    );
}

#[test]
fn step3_gives_up_after_retries_plus_one_attempts() {
    let t = Transcript::new(STEP3);
    let server = FakeServer::silent();
    let server_addr = server.addr;
    t.step(format_args!("the test's server {server_addr} never answers"));
    let client = client_of(&t, server_addr, options(150, 2), ID);
    let budget = Duration::from_millis(450);
    let ((client, result), took) = operate(
        &t,
        client,
        lab::operation::ADD,
        b"1",
        budget + HANG_SLACK,
        "450 ms (3 attempts of 150 ms)",
    );
    let gots = server.finish();
    t.step(format_args!("the server received {}", shown_gots(&gots)));
    t.check(
        gots.len() == 3,
        "the request 3 times",
        format_args!("{} datagrams", gots.len()),
        "retries = 2 means 3 attempts in all: the first, then 2 more (retries + 1)",
    );
    match result {
        Err(lab::OperationError::NoReply {
            server,
            request_id,
            attempts,
            timeout,
        }) => t.check(
            server == server_addr
                && request_id == ID
                && attempts == 3
                && timeout == Duration::from_millis(150),
            format_args!(
                "NoReply {{ server: {server_addr}, request_id: {}, attempts: 3, timeout: 150 ms }}",
                id(ID)
            ),
            format_args!(
                "NoReply {{ server: {server}, request_id: {}, attempts: {attempts}, timeout: {} ms }}",
                id(request_id),
                timeout.as_millis()
            ),
            "NoReply reports what the error line shows: the server asked, the request's id, how \
             many times it went out (retries + 1) and each attempt's timeout",
        ),
        other => t.fail(
            "Err(NoReply)",
            shown_outcome(&other),
            "when every attempt times out, do_operation gives up with OperationError::NoReply",
        ),
    }
    t.check(
        took >= budget * 8 / 10 && took <= budget + SLACK,
        "about 450 ms (3 attempts of 150 ms)",
        format_args!("{} ms", took.as_millis()),
        "each attempt waits its timeout, no more, no less",
    );
    t.check(
        client.next_id() == ID + 1,
        format_args!("next_id() = {}", id(ID + 1)),
        format_args!("next_id() = {}", id(client.next_id())),
        "a failed operation uses up its id too",
    );
}

#[test]
fn step3_a_failed_operation_uses_up_its_id() {
    let t = Transcript::new(REQUEST_IDS);
    // Requests with the first id are "lost"; all others are answered at once.
    let server = FakeServer::start(|socket, got, _| match parse_request(&got.bytes) {
        Some((rid, _, args)) if rid != ID => got.answer(socket, 0, &args),
        _ => {}
    });
    t.step(format_args!(
        "the test's server ignores request id {} and answers every other",
        id(ID)
    ));
    let client = client_of(&t, server.addr, options(100, 1), ID);
    let limit = Duration::from_millis(200) + HANG_SLACK;
    let ((client, first), _) = operate(&t, client, lab::operation::ADD, b"1", limit, "200 ms");
    t.check(
        matches!(first, Err(lab::OperationError::NoReply { .. })),
        "Err(NoReply)",
        shown_outcome(&first),
        "nothing answered request 1: after retries + 1 attempts, NoReply",
    );
    let ((_, second), _) = operate(
        &t,
        client,
        lab::operation::ECHO,
        b"after the failure",
        limit,
        "200 ms",
    );
    let gots = server.finish();
    t.step(format_args!("the server received {}", shown_gots(&gots)));
    let why = format!(
        "the second operation must carry request id {}: a failed operation uses up its id (move \
         next_id on at the start of the operation, before sending). The server may have executed \
         the request whose reply was lost; the same id again would make the new operation look \
         like a retransmission of it",
        id(ID + 1)
    );
    t.check(
        gots.last().and_then(Got::id) == Some(ID + 1),
        format_args!("the last request with id {}", id(ID + 1)),
        shown_gots(&gots),
        &why,
    );
    check_outcome(
        &t,
        &second,
        ID + 1,
        b"after the failure",
        copies(&gots, ID + 1),
        &why,
    );
}

#[test]
fn step3_a_late_reply_is_not_taken_for_the_next_operation() {
    let t = Transcript::new(REQUEST_IDS);
    // Request n is answered at once; its reply comes again, late, when request n + 1 arrives,
    // just before the reply to n + 1.
    let server = FakeServer::start(|socket, got, all| {
        let Some((rid, _, args)) = parse_request(&got.bytes) else {
            return;
        };
        let previous = all[..all.len() - 1]
            .iter()
            .rev()
            .find_map(|g| parse_request(&g.bytes).filter(|(p, _, _)| *p != rid));
        if let Some((prev_id, _, prev_args)) = previous {
            let _ = socket.send_to(&reply_bytes(prev_id, 0, &prev_args), got.from);
        }
        got.answer(socket, 0, &args);
    });
    t.step(
        "the test's server answers each request at once, and when a request with a new id comes, \
         first sends the previous request's reply again (a late duplicate), then the new reply",
    );
    let client = client_of(&t, server.addr, options(200, 3), ID);
    let operations = [
        (lab::operation::ECHO, b"first".to_vec()),
        (lab::operation::ECHO, b"second".to_vec()),
    ];
    let limit = Duration::from_millis(800) + HANG_SLACK;
    let (_, results) = operate_all(&t, client, &operations, limit, "800 ms (4 attempts of 200 ms)");
    let gots = server.finish();
    t.step(format_args!("the server received {}", shown_gots(&gots)));
    check_outcome(
        &t,
        &results[0],
        ID,
        b"first",
        copies(&gots, ID),
        "the server answered at once",
    );
    let second = &results[1];
    let late = matches!(&second, Ok(o) if o.reply.request_id == ID && o.reply.result == b"first");
    t.check(
        !late,
        format_args!(
            "the reply to request {} \"second\", not the late reply to request {}",
            id(ID + 1),
            id(ID)
        ),
        shown_outcome(second),
        format_args!(
            "do_operation took the late reply to the previous operation (request {}) for the reply \
             to request {}: a reply whose request id is not the request's answers an earlier \
             request. await_reply must ignore it (compare reply.request_id with request_id)",
            id(ID),
            id(ID + 1)
        ),
    );
    check_outcome(
        &t,
        second,
        ID + 1,
        b"second",
        copies(&gots, ID + 1),
        "the server answered request 2 at once, just after the late duplicate",
    );
}

// ---------------------------------------------------------------------------------------------
// Step 3, through the binary

/// Runs the client binary with `args`, killing it after `limit`; fails, explaining, when it
/// had to be killed.
fn run_client(t: &Transcript, args: &[&str], limit: Duration) -> std::process::Output {
    let args: Vec<&str> = std::iter::once("client").chain(args.iter().copied()).collect();
    t.step(format_args!(
        "ran the client binary: client {}",
        args[1..].join(" ")
    ));
    let run = std::panic::catch_unwind(|| run_within(BIN, &args, limit));
    let out = match run {
        Ok(out) => out,
        Err(payload) => t.fail(
            format_args!("the client to exit within {} ms", limit.as_millis()),
            panic_message(&*payload),
            "the client binary runs do_operation (step 3), whose attempts (await_reply, step 2) \
             must each end at their --timeout: see the step2_ and step3_ tests",
        ),
    };
    t.step(format_args!(
        "the client exited with {}; stdout {}; stderr {}",
        out.status,
        sized(&out.stdout),
        sized(&out.stderr)
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(at) = stderr.find("panicked at") {
        // The panic's location and message: the line with "panicked at" and the one after it.
        let panic: Vec<&str> = stderr[at..].lines().take(2).collect();
        t.fail(
            "the client to run without panicking",
            format_args!("it {}", panic.join(" ")),
            "the client binary panicked in the library (see the step1_ to step3_ tests)",
        );
    }
    out
}

#[test]
fn step3_client_binary_prints_a_reply_per_operation() {
    let t = Transcript::new(COMMAND_LINE);
    // The test's counter server: `add N` adds N for each new request id, and a retransmission
    // (an id seen before) gets the same reply again, so the totals are 1, 2, 3.
    let server = FakeServer::start({
        let mut total = 0i64;
        let mut replies: Vec<(u32, Vec<u8>)> = Vec::new();
        move |socket, got, _| {
            let Some((rid, _, args)) = parse_request(&got.bytes) else {
                return;
            };
            let reply = match replies.iter().find(|(r, _)| *r == rid) {
                Some((_, reply)) => reply.clone(),
                None => {
                    total += String::from_utf8_lossy(&args).parse::<i64>().unwrap_or(0);
                    let reply = total.to_string().into_bytes();
                    replies.push((rid, reply.clone()));
                    reply
                }
            };
            got.answer(socket, 0, &reply);
        }
    });
    let target = server.addr.to_string();
    t.step(format_args!(
        "the test's counter server {target} adds once per request id and answers retransmissions \
         with the same reply"
    ));
    let out = run_client(
        &t,
        &[
            "--server",
            &target,
            "--timeout",
            "300",
            "--retries",
            "5",
            "--count",
            "3",
            "add",
            "1",
        ],
        CLIENT_RUN_LIMIT,
    );
    let gots = server.finish();
    t.step(format_args!("the server received {}", shown_gots(&gots)));
    let mut ids: Vec<u32> = gots.iter().filter_map(Got::id).collect();
    ids.dedup();
    t.check(
        ids.len() == 3 && ids.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "3 operations with consecutive request ids",
        format_args!(
            "request ids {}",
            ids.iter().map(|&i| id(i)).collect::<Vec<_>>().join(", ")
        ),
        if ids.len() < 3 && gots.len() >= 3 {
            "the three operations used the same request id: each operation takes the next id. A \
             server with a history takes a repeated id for a retransmission and answers it with \
             the old reply"
        } else {
            "--count 3 runs three operations in sequence from one Client, ids first, first + 1, \
             first + 2"
        },
    );
    t.check(
        out.status.success(),
        "exit status 0",
        out.status,
        "the server answered every request at once",
    );
    t.check_bytes(
        "the client's stdout",
        b"Reply: 1\nReply: 2\nReply: 3\n",
        &out.stdout,
        "the client prints `Reply: <result>` per operation: the totals after each add",
    );
}

#[test]
fn step3_client_binary_reports_no_reply_in_one_line() {
    let t = Transcript::new(COMMAND_LINE);
    let server = FakeServer::silent();
    let target = server.addr.to_string();
    t.step(format_args!("the test's server {target} never answers"));
    let started = Instant::now();
    let out = run_client(
        &t,
        &["--server", &target, "--timeout", "100", "--retries", "1", "get"],
        Duration::from_millis(200) + SLACK + HANG_SLACK,
    );
    let took = started.elapsed();
    let gots = server.finish();
    t.step(format_args!("the server received {}", shown_gots(&gots)));
    t.check(
        !out.status.success(),
        "a non-zero exit status",
        out.status,
        "no reply is a failure: the client says so with its exit status",
    );
    t.check_bytes(
        "the client's stdout",
        b"",
        &out.stdout,
        "nothing may be printed as a reply",
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    t.check(
        err.trim_end().lines().count() == 1,
        "one error line",
        sized(&out.stderr),
        "the user gets one line that says what failed",
    );
    for part in [target.as_str(), "2 attempts"] {
        t.check(
            err.contains(part),
            format_args!("an error line containing {part:?}"),
            sized(&out.stderr),
            "OperationError::NoReply's message names the server and the attempts (retries + 1): \
             return NoReply with the real figures",
        );
    }
    t.check(
        gots.len() == 2,
        "the request twice (--retries 1)",
        shown_gots(&gots),
        "retries = 1 means 2 attempts: the first, then 1 more",
    );
    t.check(
        took <= Duration::from_millis(200) + SLACK,
        "about 200 ms (2 attempts of 100 ms)",
        format_args!("{} ms", took.as_millis()),
        "each attempt waits its timeout, no more",
    );
}
