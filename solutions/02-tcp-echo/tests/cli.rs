//! Tests of the command line, which students are given complete. They would pass on the
//! skeleton too, so they live with the solution, not in the grading suite.

use std::time::Duration;

use assert_cmd::Command;
use common::testing::{assert_help_mentions, assert_refused, assert_version};
use predicates::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_solution02-tcp-echo");

fn bin() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.timeout(Duration::from_secs(10));
    cmd
}

#[test]
fn help_teaches_the_subcommands_and_options() {
    assert_help_mentions(BIN, &["--help"], &["server", "client"]);
    assert_help_mentions(
        BIN,
        &["server", "--help"],
        &[
            "--port",
            "[default: 7896]",
            "--framing <FRAMING>",
            "writeUTF",
            "--max-line <BYTES>",
            "[default: 65536]",
            "--idle-timeout <MS>",
            "[default: 10000]",
            "--message-timeout <MS>",
            "[default: 30000]",
            "--uppercase",
            "--max-connections",
        ],
    );
    assert_help_mentions(
        BIN,
        &["client", "--help"],
        &[
            "--timeout <MS>",
            "[default: 5000]",
            "half-close",
            "--max-reply <BYTES>",
            "[default: 16777216]",
            "<MESSAGES>...",
        ],
    );
}

#[test]
fn version_is_printed() {
    assert_version(BIN, env!("CARGO_PKG_VERSION"));
}

#[test]
fn a_bad_server_value_is_one_clear_line() {
    for bad in [
        "localhost",
        "127.0.0.1:port",
        "no-such-host.invalid:7896",
        "127.0.0.1:70000",
    ] {
        let out = bin()
            .args(["client", "--server", bad, "hi"])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "clap's usage error status for {bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: invalid value") && first.contains(bad),
            "{bad}: {err}"
        );
    }
}

#[test]
fn out_of_range_values_are_refused() {
    bin().args(["server", "--max-line", "0"]).assert().code(2);
    bin().args(["server", "--idle-timeout", "0"]).assert().code(2);
    bin().args(["server", "--message-timeout", "0"]).assert().code(2);
    bin().args(["server", "--framing", "json"]).assert().code(2);
    bin()
        .args(["client", "--server", "127.0.0.1:9", "--timeout", "0", "hi"])
        .assert()
        .code(2);
    // At least one message.
    bin().args(["client", "--server", "127.0.0.1:9"]).assert().code(2);
    bin()
        .args(["client", "--server", "127.0.0.1:9", "--max-reply", "0", "hi"])
        .assert()
        .code(2);
}

/// A server that reads the request to the client's EOF and answers with `len` bytes.
fn server_sending(len: usize) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s.set_write_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut request = Vec::new();
        let _ = s.read_to_end(&mut request);
        let _ = s.write_all(&vec![b'r'; len]);
    });
    addr
}

#[test]
fn max_reply_caps_a_raw_reply_with_one_clear_line() {
    let addr = server_sending(2000).to_string();
    let out = bin()
        .args(["client", "--server", &addr, "--max-reply", "1000", "hi"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "no reply is printed: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: reply from ")
            && err.contains("the reply exceeded 1000 bytes")
            && err.contains("--max-reply"),
        "{err}"
    );
    let addr = server_sending(1000).to_string();
    bin()
        .args(["client", "--server", &addr, "--max-reply", "1000", "hi"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("Received: rrrr"));
}

#[test]
fn a_newline_in_a_line_message_is_refused_before_connecting() {
    let out = bin()
        .args([
            "client",
            "--server",
            "127.0.0.1:9",
            "--framing",
            "line",
            "two\nlines",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: with --framing line") && err.contains("newline"),
        "{err}"
    );
}

#[test]
fn a_port_in_use_is_one_clear_line() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port().to_string();
    let out = bin().args(["server", "--port", &port]).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot listen on TCP 127.0.0.1:") && err.contains("in use"),
        "{err}"
    );
}

#[test]
fn waits_longer_than_an_hour_are_refused_in_one_line() {
    // common::cli::MAX_MS: a larger wait is a typo, and `Instant + timeout` can overflow (a
    // panic) where it does not fit the platform's clock.
    for args in [
        &["server", "--idle-timeout", "3600001"][..],
        &["server", "--message-timeout", "3600001"],
        &["client", "--server", "127.0.0.1:9", "--timeout", "3600001", "hi"],
    ] {
        assert_refused(BIN, args, 2, "..=3600000");
    }
}
