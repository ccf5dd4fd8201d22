//! Tests of the command line, which students are given complete. They would pass on the
//! skeleton too, so they live with the solution, not in the grading suite (which runs the
//! server and the client end to end).

use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_solution06-request-reply"));
    cmd.timeout(Duration::from_secs(10));
    cmd
}

/// Runs `args`, which must be refused before anything is sent: clap's usage error status (2)
/// or the client's own refusal (1), and a first line holding `says`.
fn refused(args: &[&str], code: i32, says: &str) {
    let out = bin().args(args).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}: exit status; stderr: {err}"
    );
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.contains(says),
        "{args:?}: the first line should say {says:?}; stderr: {err}"
    );
}

#[test]
fn help_teaches_the_subcommands_and_options() {
    bin().arg("--help").assert().success().stdout(
        predicate::str::contains("server")
            .and(predicate::str::contains("client"))
            .and(predicate::str::contains("experiment")),
    );
    bin().args(["server", "--help"]).assert().success().stdout(
        predicate::str::contains("[default: 6790]")
            .and(predicate::str::contains("at-least-once"))
            .and(predicate::str::contains("at-most-once"))
            .and(predicate::str::contains("--history-size <ENTRIES>"))
            .and(predicate::str::contains("[default: 1024]"))
            .and(predicate::str::contains("--history-ttl <MS>"))
            .and(predicate::str::contains("[default: 60000]"))
            .and(predicate::str::contains("--delay <MS>"))
            .and(predicate::str::contains("--max-requests")),
    );
    bin().args(["client", "--help"]).assert().success().stdout(
        predicate::str::contains("--timeout <MS>")
            .and(predicate::str::contains("[default: 500]"))
            .and(predicate::str::contains("--retries"))
            .and(predicate::str::contains("[default: 10]"))
            .and(predicate::str::contains("--count <K>"))
            .and(predicate::str::contains("not idempotent")),
    );
}

#[test]
fn version_is_printed() {
    bin()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("solution06-request-reply "));
}

#[test]
fn bad_values_are_one_clear_line() {
    refused(&["server", "--semantics", "exactly-once"], 2, "exactly-once");
    refused(&["server", "--history-size", "0"], 2, "--history-size");
    refused(&["server", "--history-ttl", "0"], 2, "--history-ttl");
    refused(
        &["client", "--server", "127.0.0.1:9", "--timeout", "0", "get"],
        2,
        "--timeout",
    );
    refused(
        &["client", "--server", "127.0.0.1:9", "--count", "0", "get"],
        2,
        "--count",
    );
    refused(
        &["client", "--server", "127.0.0.1:9", "multiply", "2"],
        2,
        "multiply",
    );
    refused(
        &["client", "--server", "127.0.0.1:port", "get"],
        2,
        "127.0.0.1:port",
    );
}

#[test]
fn an_operation_with_a_missing_or_extra_argument_is_refused_before_sending() {
    refused(
        &["client", "--server", "127.0.0.1:9", "add"],
        1,
        "add needs an argument",
    );
    refused(
        &["client", "--server", "127.0.0.1:9", "get", "5"],
        1,
        "get takes no argument",
    );
}

#[test]
fn waits_longer_than_an_hour_are_refused_in_one_line() {
    // common::cli::MAX_MS: a larger wait is a typo, and `Instant + timeout` can overflow (a
    // panic) where it does not fit the platform's clock.
    for args in [
        &["server", "--history-ttl", "3600001"][..],
        &["server", "--delay", "3600001"],
        &["client", "--server", "127.0.0.1:9", "--timeout", "3600001", "get"],
        &["experiment", "--timeout", "3600001"],
    ] {
        refused(args, 2, "..=3600000");
    }
}
