//! The ready line: how a server tells whoever started it that it is listening, and where.
//!
//! Every server in the course prints `listening on IP:PORT` as the **first line on stdout** and
//! flushes it, after the socket is bound (and, for TCP, listening). A test or a script that
//! started the server with `--port 0` reads this line to learn the ephemeral port the operating
//! system chose, instead of guessing a free port or sleeping. IPv6 endpoints are printed in the
//! bracket form, e.g. `listening on [::1]:40001`.

use std::io::{self, Write};
use std::net::SocketAddr;

/// The text before the endpoint on the ready line.
pub const PREFIX: &str = "listening on ";

/// Formats the ready line for `addr`, without a newline: `listening on 127.0.0.1:6789`.
pub fn line(addr: SocketAddr) -> String {
    format!("{PREFIX}{addr}")
}

/// Prints the ready line for `addr` on stdout and flushes stdout.
///
/// # Errors
/// Any error writing to or flushing stdout (for example `io::ErrorKind::BrokenPipe` when the
/// reader of a pipe has gone away).
pub fn announce(addr: SocketAddr) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{}", line(addr))?;
    out.flush()
}

/// Parses a ready line back into the endpoint it announces.
///
/// Returns `None` when `text` (surrounding white space ignored) is not `listening on IP:PORT`.
///
/// ```
/// let addr = common::ready::parse("listening on 127.0.0.1:6789\n").unwrap();
/// assert_eq!(addr.port(), 6789);
/// assert!(common::ready::parse("hello").is_none());
/// ```
pub fn parse(text: &str) -> Option<SocketAddr> {
    text.trim().strip_prefix(PREFIX)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_v4_and_v6() {
        for addr in ["127.0.0.1:0", "127.0.0.1:65535", "[::1]:6789"] {
            let addr: SocketAddr = addr.parse().expect("valid test address");
            assert_eq!(parse(&line(addr)), Some(addr));
        }
    }

    #[test]
    fn rejects_other_lines() {
        assert_eq!(parse("listening on nowhere"), None);
        assert_eq!(parse("bound to 127.0.0.1:1"), None);
        assert_eq!(parse(""), None);
    }
}
