//! Tests of the code students are given complete: the command line, the checksum, the reply
//! format. They would pass on the skeleton too, so they live with the solution, not in the
//! grading suite. Binaries that might block run through `run_within` (no SIGCHLD handler).

use std::time::Duration;

use assert_cmd::Command;
use common::testing::{ServerProcess, assert_help_mentions, assert_refused, assert_version, run_within};
use predicates::prelude::*;
use solution05_closing::{Reply, Summary, Tally};

const BIN: &str = env!("CARGO_BIN_EXE_solution05-closing");
const LIMIT: Duration = Duration::from_secs(20);

fn bin() -> Command {
    Command::new(BIN)
}

#[test]
fn help_teaches_the_subcommands_and_options() {
    bin().arg("--help").assert().success().stdout(
        predicate::str::contains("experiment")
            .and(predicate::str::contains("server"))
            .and(predicate::str::contains("client"))
            .and(predicate::str::contains("child").not()),
    );
    let mut experiment = predicate::str::contains("all").boxed();
    for scenario in solution05_closing::experiments::SCENARIOS {
        experiment = experiment
            .and(predicate::str::contains(scenario.name))
            .and(predicate::str::contains(scenario.title))
            .boxed();
    }
    bin()
        .args(["experiment", "--help"])
        .assert()
        .success()
        .stdout(experiment);
    assert_help_mentions(
        BIN,
        &["server", "--help"],
        &[
            "[default: 7896]",
            "--drain <MS>",
            "[default: 2000]",
            "--idle-timeout <MS>",
            "[default: 10000]",
            "--message-timeout <MS>",
            "[default: 30000]",
            "--max-bytes <BYTES>",
            "[default: 1073741824]",
            "--max-connections",
        ],
    );
    assert_help_mentions(
        BIN,
        &["client", "--help"],
        &["--file <PATH>", "half-close", "--timeout <MS>", "[default: 5000]"],
    );
}

#[test]
fn version_is_printed() {
    assert_version(BIN, env!("CARGO_PKG_VERSION"));
}

#[test]
fn an_unknown_experiment_is_refused_with_the_list() {
    bin()
        .args(["experiment", "slam-the-door"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid value").and(predicate::str::contains("time-wait")));
}

#[test]
fn bad_values_are_refused() {
    bin().args(["client", "--server", "localhost"]).assert().code(2);
    bin()
        .args(["client", "--server", "127.0.0.1:1", "--timeout", "0"])
        .assert()
        .code(2);
    bin().args(["server", "--idle-timeout", "0"]).assert().code(2);
    bin().args(["server", "--message-timeout", "0"]).assert().code(2);
}

#[test]
fn a_missing_file_is_one_clear_line() {
    let out = run_within(
        BIN,
        &["client", "--server", "127.0.0.1:9", "--file", "/no/such/file"],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: cannot open /no/such/file"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_port_in_use_is_one_clear_line() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port().to_string();
    let out = run_within(BIN, &["server", "--port", &port], LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: cannot listen on TCP 127.0.0.1:"), "{err}");
}

#[test]
fn the_client_sends_stdin_when_no_file_is_given() {
    let server = ServerProcess::start(BIN, &["server", "--port", "0"]);
    // run_within gives the client an empty stdin.
    let out = run_within(BIN, &["client", "--server", &server.addr().to_string()], LIMIT);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "sent 0 bytes, fnv1a64 cbf29ce484222325\n\
         reply: received 0 bytes, fnv1a64 cbf29ce484222325\n\
         intact: the server received every byte that was sent\n"
    );
}

#[test]
fn fnv1a64_matches_the_published_test_vectors() {
    assert_eq!(Summary::of(b"").fnv1a64, 0xcbf2_9ce4_8422_2325);
    assert_eq!(Summary::of(b"a").fnv1a64, 0xaf63_dc4c_8601_ec8c);
    assert_eq!(Summary::of(b"foobar").fnv1a64, 0x8594_4171_f739_67e8);
    let mut pieces = Summary::new();
    pieces.update(b"foo");
    pieces.update(b"bar");
    assert_eq!(
        pieces,
        Summary::of(b"foobar"),
        "updates in pieces give the same summary"
    );
    assert_eq!(pieces.to_string(), "6 bytes, fnv1a64 85944171f73967e8");
}

#[test]
fn replies_round_trip_and_garbage_is_refused() {
    for reply in [
        Reply::Received(Summary::of(b"hello")),
        Reply::Received(Summary::new()),
        Reply::Refused { max_bytes: 1000 },
    ] {
        let line = reply.to_line();
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line:?}"
        );
        assert_eq!(Reply::parse(line.as_bytes()), Some(reply));
    }
    for bad in [
        &b""[..],
        b"received 5 bytes",
        b"received x bytes, fnv1a64 0000000000000000\n",
        b"received 5 bytes, fnv1a64 123\n",
        b"refused: more than lots of bytes\n",
        b"\xff\xfe",
    ] {
        assert_eq!(Reply::parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn tally_counts_what_passes_through() {
    use std::io::Read;
    let mut tally = Tally::new(&b"foobar"[..]);
    let mut out = Vec::new();
    tally.read_to_end(&mut out).expect("read");
    assert_eq!(out, b"foobar");
    assert_eq!(tally.summary(), Summary::of(b"foobar"));
}

#[test]
fn waits_longer_than_an_hour_are_refused_in_one_line() {
    // common::cli::MAX_MS: a larger wait is a typo, and `Instant + timeout` can overflow (a
    // panic) where it does not fit the platform's clock.
    for args in [
        &["server", "--idle-timeout", "3600001"][..],
        &["server", "--message-timeout", "3600001"],
        &["client", "--server", "127.0.0.1:9", "--timeout", "3600001"],
    ] {
        assert_refused(BIN, args, 2, "..=3600000");
    }
}
