//! Lab 06 grading suite: request-reply over UDP.
//!
//! Shared by `lab06-request-reply` (the student's work) and `solution06-request-reply` (the
//! reference): each package's `tests/grade.rs` defines `lab` (its library) and `BIN` (its binary)
//! and includes this file. Tests are named `stepN_...` after the step of the book chapter they
//! check, so `cargo test -p lab06-request-reply step3_` runs the checks of step 3.
//!
//! - [`client`] (steps 1-3): the wire format, `await_reply` and `do_operation`, against
//!   servers the test plays itself, so that a late reply or a stranger arrives exactly when the
//!   test wants it to.
//! - [`server`] (steps 4-7): the history, the server's side of the wire, and the server with both
//!   semantics, driven by clients the test plays itself, directly or through `common`'s seeded
//!   relay (drops, duplicates, reordering and delay in both directions).
//!
//! The test's own messages are built and read by [`request_bytes`], [`reply_bytes`] and
//! [`parse_reply`] below, never by the student's `encode`/`decode`, so a test of a later step
//! does not take its bytes from the code it checks.
//!
//! Every test binds port 0 on loopback, sets timeouts on every socket, and fails within seconds
//! when the code under test panics (a `todo!()`) or hangs. A failure is a transcript
//! ([`Transcript`](common::testing::Transcript)): the numbered steps, what was expected, what came
//! back (payloads as escaped text with their length), why that is a mistake, and the chapter's
//! section. The bug zoo (`tests/06-request-reply/mutants/`, `cargo lab dev mutants --lab 6`)
//! holds the suite to that.

// The chapter's sections that failures cite.
const FAILURE_MODEL: &str = "Lab 06 § The failure model, again";
const PROTOCOLS: &str = "Lab 06 § Request-reply protocols";
const REQUEST_IDS: &str = "Lab 06 § Request ids";
const IDEMPOTENT: &str = "Lab 06 § Idempotent operations";
const HISTORY: &str = "Lab 06 § Duplicate filtering and the history";
const HISTORY_COST: &str = "Lab 06 § The cost of the history";
const SEMANTICS: &str = "Lab 06 § Invocation semantics";
const WIRE_FORMAT: &str = "Lab 06 § The wire format";
const COMMAND_LINE: &str = "Lab 06 § The command line";
const STEP1: &str = "Lab 06 § Step 1: Encode and decode messages";
const STEP2: &str = "Lab 06 § Step 2: Wait for the matching reply";
const STEP3: &str = "Lab 06 § Step 3: Request ids and retransmission";
const STEP4: &str = "Lab 06 § Step 4: Filter duplicates with a history";
const STEP5: &str = "Lab 06 § Step 5: Bound the history";
const STEP6: &str = "Lab 06 § Step 6: Receive requests, send replies";
const STEP7: &str = "Lab 06 § Step 7: The server, with both semantics";

#[path = "suite/client.rs"]
mod client;
#[path = "suite/server.rs"]
mod server;

/// A request datagram as the wire format lays it out: `0`, the id (big-endian), the operation,
/// the arguments.
fn request_bytes(request_id: u32, operation: u8, arguments: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0];
    bytes.extend_from_slice(&request_id.to_be_bytes());
    bytes.push(operation);
    bytes.extend_from_slice(arguments);
    bytes
}

/// A reply datagram: `1`, the id (big-endian), the status (0 ok, 1 error), the result.
fn reply_bytes(request_id: u32, status: u8, result: &[u8]) -> Vec<u8> {
    let mut bytes = vec![1];
    bytes.extend_from_slice(&request_id.to_be_bytes());
    bytes.push(status);
    bytes.extend_from_slice(result);
    bytes
}

/// A reply's fields `(request_id, status, result)`, or `None` when `bytes` is not a reply.
fn parse_reply(bytes: &[u8]) -> Option<(u32, u8, Vec<u8>)> {
    if bytes.len() < 6 || bytes[0] != 1 {
        return None;
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Some((id, bytes[5], bytes[6..].to_vec()))
}
