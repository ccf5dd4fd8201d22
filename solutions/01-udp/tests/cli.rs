//! Tests of the command line, which students are given complete. They would pass on the
//! skeleton too, so they live with the solution, not in the grading suite.

use std::time::Duration;

use assert_cmd::Command;
use common::testing::{assert_help_mentions, assert_refused, assert_version};

const BIN: &str = env!("CARGO_BIN_EXE_solution01-udp");

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
            "[default: 6789]",
            "--buffer",
            "[default: 1000]",
            "--max-requests",
        ],
    );
    assert_help_mentions(
        BIN,
        &["client", "--help"],
        &[
            "--timeout <MS>",
            "[default: 1000]",
            "--retries",
            "[default: 65507]",
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
        "no-such-host.invalid:6789",
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
fn out_of_range_buffers_and_timeouts_are_refused() {
    bin().args(["server", "--buffer", "0"]).assert().code(2);
    bin().args(["server", "--buffer", "70000"]).assert().code(2);
    bin()
        .args(["client", "--server", "127.0.0.1:9", "--timeout", "0", "hi"])
        .assert()
        .code(2);
}

#[test]
fn a_port_in_use_is_one_clear_line() {
    let holder = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port().to_string();
    let out = bin().args(["server", "--port", &port]).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot bind UDP socket to 127.0.0.1:") && err.contains("in use"),
        "{err}"
    );
}

#[test]
fn waits_longer_than_an_hour_are_refused_in_one_line() {
    // common::cli::MAX_MS: a larger wait is a typo, and `Instant + timeout` can overflow (a
    // panic) where it does not fit the platform's clock.
    assert_refused(
        BIN,
        &["client", "--server", "127.0.0.1:9", "--timeout", "3600001", "hi"],
        2,
        "..=3600000",
    );
}
