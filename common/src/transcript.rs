//! Failure text that teaches: a [`Transcript`] records what a test did, step by step, and a
//! failure prints those steps, then what was expected and what came back, then why that is a
//! mistake and where the book explains it.
//!
//! The idea is CS144's (minnow's `tests/common.cc`: every step so far, then "should have been X,
//! but instead it was Y"), for sockets. A failure reads:
//!
//! ```text
//! What the test did:
//!   1. bound a client socket on 127.0.0.1:40001
//!   2. sent 5 bytes "hello" to the server at 127.0.0.1:40002
//!   3. waited 500 ms: nothing arrived
//! Expected: a 5-byte reply "HELLO" from 127.0.0.1:40002
//! Got:      nothing within 500 ms
//! Why: the server replied to a port other than the one the request came from
//! See: the book, Lab 01 § Replying to the sender
//! ```
//!
//! Payloads are shown with [`escaped`]: as text with escapes (`"hi\n\xff"`), never as decimal
//! byte arrays, and long ones shortened in the middle.

use std::fmt::{self, Display, Write as _};
use std::sync::Mutex;

/// How many bytes of a payload [`escaped`] shows at most: 60 from the start, 20 from the end.
pub const SHOWN_HEAD: usize = 60;
/// See [`SHOWN_HEAD`].
pub const SHOWN_TAIL: usize = 20;

/// The steps a test has taken so far, and the book section that explains what it checks.
///
/// Shared by reference (`&Transcript`); the steps sit behind a mutex, so a helper thread of the
/// test may record too.
#[derive(Debug)]
pub struct Transcript {
    section: String,
    steps: Mutex<Vec<String>>,
}

impl Transcript {
    /// A new, empty transcript for a test explained in `section`: "Lab 01 § Message size" (a
    /// heading of the book, which `cargo lab dev check` verifies).
    pub fn new(section: &str) -> Self {
        Transcript {
            section: section.to_owned(),
            steps: Mutex::new(Vec::new()),
        }
    }

    /// Records one step, in the past tense: "sent 5 bytes \"hello\" to the server".
    pub fn step(&self, what: impl Display) {
        self.steps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(what.to_string());
    }

    /// Records that `bytes` were sent from `from` to `to` (endpoints or words: "the server").
    pub fn sent(&self, bytes: &[u8], from: impl Display, to: impl Display) {
        self.step(format_args!("sent {} from {from} to {to}", sized(bytes)));
    }

    /// Records that `bytes` arrived from `from`.
    pub fn received(&self, bytes: &[u8], from: impl Display) {
        self.step(format_args!("received {} from {from}", sized(bytes)));
    }

    /// The section this transcript's failures cite.
    pub fn section(&self) -> &str {
        &self.section
    }

    /// The numbered steps so far, one per line, indented.
    pub fn steps(&self) -> String {
        let steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = String::new();
        for (i, s) in steps.iter().enumerate() {
            let _ = writeln!(text, "  {}. {s}", i + 1);
        }
        text
    }

    /// The whole failure text: the steps, expected, got, why, and the section.
    pub fn report(&self, expected: impl Display, got: impl Display, why: impl Display) -> String {
        let mut text = String::new();
        let steps = self.steps();
        if !steps.is_empty() {
            text.push_str("What the test did:\n");
            text.push_str(&steps);
        }
        let _ = writeln!(text, "Expected: {expected}");
        let _ = writeln!(text, "Got:      {got}");
        let _ = writeln!(text, "Why: {why}");
        let _ = write!(text, "See: the book, {}", self.section);
        text
    }

    /// Fails the test with [`Transcript::report`].
    #[track_caller]
    pub fn fail(&self, expected: impl Display, got: impl Display, why: impl Display) -> ! {
        panic!("{}", self.report(expected, got, why))
    }

    /// Fails the test unless `holds`; the arguments are only formatted on failure.
    #[track_caller]
    pub fn check(&self, holds: bool, expected: impl Display, got: impl Display, why: impl Display) {
        if !holds {
            self.fail(expected, got, why);
        }
    }

    /// Fails unless `got == expected`, both shown with [`escaped`]; `what` names the bytes ("the
    /// reply").
    #[track_caller]
    pub fn check_bytes(&self, what: &str, expected: &[u8], got: &[u8], why: impl Display) {
        if expected != got {
            self.fail(
                format_args!("{what}: {}", sized(expected)),
                format_args!("{what}: {}", sized(got)),
                why,
            );
        }
    }

    /// The value of `result`, or a failure saying that `doing` failed with its error: instead
    /// of an `.expect()` that would hide the test's own explanation.
    #[track_caller]
    pub fn ok<T, E: Display>(&self, result: Result<T, E>, doing: &str, why: impl Display) -> T {
        match result {
            Ok(value) => value,
            Err(e) => self.fail(
                format_args!("{doing} to succeed"),
                format_args!("error: {e}"),
                why,
            ),
        }
    }
}

/// `bytes` as a quoted, escaped string followed by its length: `"hi\n" (3 bytes)`.
pub fn sized(bytes: &[u8]) -> String {
    format!("{} ({})", escaped(bytes), count(bytes.len()))
}

/// "1 byte", "5 bytes".
pub fn count(n: usize) -> String {
    if n == 1 {
        "1 byte".to_owned()
    } else {
        format!("{n} bytes")
    }
}

/// `bytes` as a quoted string: printable ASCII as is, `\n`, `\r`, `\t`, `\0`, `\\`, `\"`, and
/// every other byte as `\xNN` (so UTF-8 text shows as its bytes: "é" is `\xc3\xa9`). A payload
/// longer than [`SHOWN_HEAD`] + [`SHOWN_TAIL`] bytes shows its start and end around
/// `…[N bytes]…`.
pub fn escaped(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len().min(SHOWN_HEAD + SHOWN_TAIL) + 16);
    text.push('"');
    if bytes.len() > SHOWN_HEAD + SHOWN_TAIL {
        push_escaped(&mut text, &bytes[..SHOWN_HEAD]);
        let _ = write!(text, "…[{} more]…", count(bytes.len() - SHOWN_HEAD - SHOWN_TAIL));
        push_escaped(&mut text, &bytes[bytes.len() - SHOWN_TAIL..]);
    } else {
        push_escaped(&mut text, bytes);
    }
    text.push('"');
    text
}

fn push_escaped(text: &mut String, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'\n' => text.push_str("\\n"),
            b'\r' => text.push_str("\\r"),
            b'\t' => text.push_str("\\t"),
            b'\0' => text.push_str("\\0"),
            b'\\' => text.push_str("\\\\"),
            b'"' => text.push_str("\\\""),
            0x20..=0x7e => text.push(char::from(b)),
            _ => {
                let _ = write!(text, "\\x{b:02x}");
            }
        }
    }
}

/// A payload that displays as [`sized`]: for `format!("{}", Payload(&bytes))`.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a>(pub &'a [u8]);

impl Display for Payload<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&sized(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_show_as_escaped_text_with_their_length() {
        assert_eq!(sized(b"hello"), "\"hello\" (5 bytes)");
        assert_eq!(sized(b"a"), "\"a\" (1 byte)");
        assert_eq!(escaped(b"hi\n\0\xff\"\\"), "\"hi\\n\\0\\xff\\\"\\\\\"");
        assert_eq!(escaped("é".as_bytes()), "\"\\xc3\\xa9\"");
        let long = vec![b'x'; 1000];
        let shown = escaped(&long);
        assert!(shown.contains("…[920 bytes more]…"), "{shown}");
        assert_eq!(shown.matches('x').count(), SHOWN_HEAD + SHOWN_TAIL, "{shown}");
    }

    #[test]
    fn a_failure_prints_the_numbered_steps_then_expected_got_why_and_where() {
        let t = Transcript::new("Lab 01 § Message size");
        t.sent(b"hello", "127.0.0.1:1", "the server");
        t.step("waited 500 ms: nothing arrived");
        let report = t.report("a reply", "nothing", "the reply went elsewhere");
        assert_eq!(
            report,
            "What the test did:\n  1. sent \"hello\" (5 bytes) from 127.0.0.1:1 to the server\n  \
             2. waited 500 ms: nothing arrived\nExpected: a reply\nGot:      nothing\n\
             Why: the reply went elsewhere\nSee: the book, Lab 01 § Message size"
        );
        let panic = std::panic::catch_unwind(|| t.check_bytes("the reply", b"ab", b"a\xff", "cut"))
            .expect_err("different bytes fail");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            message.contains("Got:      the reply: \"a\\xff\" (2 bytes)"),
            "{message}"
        );
        let ok: Result<u8, &str> = Err("refused");
        let panic = std::panic::catch_unwind(|| t.ok(ok, "connecting", "x")).expect_err("an error fails");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            message.contains("Expected: connecting to succeed\nGot:      error: refused"),
            "{message}"
        );
    }
}
