//! Tests of the command line, which students are given complete. They would pass on the
//! skeleton too, so they live with the solution, not in the grading suite (which runs the
//! server and the client end to end).

use common::testing::{assert_help_mentions, assert_refused, assert_version};

const BIN: &str = env!("CARGO_BIN_EXE_solution06-request-reply");

#[test]
fn help_teaches_the_subcommands_and_options() {
    assert_help_mentions(BIN, &["--help"], &["server", "client", "experiment"]);
    assert_help_mentions(
        BIN,
        &["server", "--help"],
        &[
            "[default: 6790]",
            "at-least-once",
            "at-most-once",
            "--history-size <ENTRIES>",
            "[default: 1024]",
            "--history-ttl <MS>",
            "[default: 60000]",
            "--delay <MS>",
            "--max-requests",
        ],
    );
    assert_help_mentions(
        BIN,
        &["client", "--help"],
        &[
            "--timeout <MS>",
            "[default: 500]",
            "--retries",
            "[default: 10]",
            "--count <K>",
            "not idempotent",
        ],
    );
}

#[test]
fn version_is_printed() {
    assert_version(BIN, env!("CARGO_PKG_VERSION"));
}

#[test]
fn bad_values_are_one_clear_line() {
    assert_refused(BIN, &["server", "--semantics", "exactly-once"], 2, "exactly-once");
    assert_refused(BIN, &["server", "--history-size", "0"], 2, "--history-size");
    assert_refused(BIN, &["server", "--history-ttl", "0"], 2, "--history-ttl");
    assert_refused(
        BIN,
        &["client", "--server", "127.0.0.1:9", "--timeout", "0", "get"],
        2,
        "--timeout",
    );
    assert_refused(
        BIN,
        &["client", "--server", "127.0.0.1:9", "--count", "0", "get"],
        2,
        "--count",
    );
    assert_refused(
        BIN,
        &["client", "--server", "127.0.0.1:9", "multiply", "2"],
        2,
        "multiply",
    );
    assert_refused(
        BIN,
        &["client", "--server", "127.0.0.1:port", "get"],
        2,
        "127.0.0.1:port",
    );
}

#[test]
fn an_operation_with_a_missing_or_extra_argument_is_refused_before_sending() {
    // The client's own check, not clap's: status 1, before any datagram goes out.
    assert_refused(
        BIN,
        &["client", "--server", "127.0.0.1:9", "add"],
        1,
        "add needs an argument",
    );
    assert_refused(
        BIN,
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
        assert_refused(BIN, args, 2, "..=3600000");
    }
}
