//! Tests of the command line, which students are given complete. They would pass on the
//! skeleton too, so they live with the solution, not in the grading suite.

use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_solution04-multicast"));
    cmd.timeout(Duration::from_secs(10));
    cmd
}

#[test]
fn help_teaches_the_subcommands_and_options() {
    bin().arg("--help").assert().success().stdout(
        predicate::str::contains("peer")
            .and(predicate::str::contains("listen"))
            .and(predicate::str::contains("send")),
    );
    bin().args(["peer", "--help"]).assert().success().stdout(
        predicate::str::contains("--group")
            .and(predicate::str::contains("[default: 6789]"))
            .and(predicate::str::contains("[default: 127.0.0.1]"))
            .and(predicate::str::contains("--ttl"))
            .and(predicate::str::contains("--no-loopback"))
            .and(predicate::str::contains("--count"))
            .and(predicate::str::contains("[default: 3]"))
            .and(predicate::str::contains("--timeout <MS>"))
            .and(predicate::str::contains("[default: 5000]"))
            .and(predicate::str::contains("--wait <MS>")),
    );
    bin()
        .args(["listen", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--count").and(predicate::str::contains("--ttl").not()));
    bin()
        .args(["send", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--ttl").and(predicate::str::contains("--count").not()));
}

#[test]
fn version_is_printed() {
    bin()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("solution04-multicast "));
}

#[test]
fn values_clap_refuses_are_usage_errors() {
    for args in [
        &["peer", "--group", "not-an-address", "hi"][..],
        &["peer", "--group", "ff02::1", "hi"],
        &["peer", "--group", "239.255.0.1", "--ttl", "256", "hi"],
        &["peer", "--group", "239.255.0.1", "--count", "0", "hi"],
        &["listen", "--group", "239.255.0.1", "--timeout", "0"],
        &["send", "--group", "239.255.0.1", "--interface", "lo", "hi"],
        &["peer", "--group", "239.255.0.1"],
    ] {
        let out = bin().args(args).output().expect("runs");
        assert_eq!(
            out.status.code(),
            Some(2),
            "clap's usage error status for {args:?}"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
}

#[test]
fn waits_longer_than_an_hour_are_refused_in_one_line() {
    // common::cli::MAX_MS: a larger wait is a typo, and `Instant + timeout` can overflow (a
    // panic) where it does not fit the platform's clock.
    let args = &["listen", "--group", "239.255.0.1", "--timeout", "3600001"];
    let out = bin().args(args).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?}: clap's usage error status; {err}"
    );
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: invalid value") && first.contains("..=3600000"),
        "{args:?}: one line naming the range; {err}"
    );
}
