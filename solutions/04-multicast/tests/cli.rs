//! Tests of the command line, which students are given complete. They would pass on the
//! skeleton too, so they live with the solution, not in the grading suite.

use std::time::Duration;

use assert_cmd::Command;
use common::testing::{assert_help_mentions, assert_refused, assert_version};
use predicates::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_solution04-multicast");

fn bin() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.timeout(Duration::from_secs(10));
    cmd
}

#[test]
fn help_teaches_the_subcommands_and_options() {
    assert_help_mentions(BIN, &["--help"], &["peer", "listen", "send"]);
    assert_help_mentions(
        BIN,
        &["peer", "--help"],
        &[
            "--group",
            "[default: 6789]",
            "[default: 127.0.0.1]",
            "--ttl",
            "--no-loopback",
            "--count",
            "[default: 3]",
            "--timeout <MS>",
            "[default: 5000]",
            "--wait <MS>",
        ],
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
    assert_version(BIN, env!("CARGO_PKG_VERSION"));
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
    assert_refused(
        BIN,
        &["listen", "--group", "239.255.0.1", "--timeout", "3600001"],
        2,
        "..=3600000",
    );
}
