//! `cargo lab demo` and `cargo lab handout` end to end on a copy of the fixture course, whose
//! Lab 01 demo has two scenes ("through a lossy relay", "every datagram twice"), each with its
//! own server (`serve`, a loopback UDP doubler on port 0) and a relay in front of it, and clients
//! (`ask HOST:PORT N`) that go through the relay (`{relay}`) or past it (`{addr}`).
//!
//! The commands run with `assert_cmd`'s timeout. Its `SIGCHLD` handler cannot disturb anything
//! here: this test binary opens no socket (the tool and the fixture's programs do).

mod support;

use std::path::Path;
use std::time::Duration;

use support::Course;

/// Runs `course ARGS` on `course` within 120 s, building into a target folder of its own, named
/// after `target`; returns (success, stdout, stderr).
///
/// Not the shared `fixture-target`: tests that build different versions of the same package
/// there (a skeleton, a finished step) replace each other's binary between a build and a run.
fn run(course: &Course, target: &str, args: &[&str]) -> (bool, String, String) {
    let mut command = course.command(args);
    command.env(
        "CARGO_TARGET_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fixture-target-{target}")),
    );
    let output = assert_cmd::Command::from_std(command)
        .timeout(Duration::from_secs(120))
        .output()
        .expect("run the course tool");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.code().is_some(),
        "`course {}` did not finish within 120 s (or was killed)\nstdout:\n{stdout}\nstderr:\n{stderr}",
        args.join(" ")
    );
    (output.status.success(), stdout, stderr)
}

/// The port at the end of `IP:PORT`, the first word after `prefix` on the first line that starts
/// with it, searched from byte `from` of `text`.
fn port_after(text: &str, from: usize, prefix: &str) -> u16 {
    text[from..]
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|endpoint| endpoint.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no `{prefix}IP:PORT` line after byte {from}:\n{text}"))
}

/// Where `needle` first occurs in `text` at or after byte `from`.
fn position(text: &str, from: usize, needle: &str) -> usize {
    text[from..]
        .find(needle)
        .map(|i| from + i)
        .unwrap_or_else(|| panic!("no `{needle}` after byte {from} of the transcript:\n{text}"))
}

/// The two numbers of a counters line, `the relay forwarded N datagrams and dropped M`.
fn counters(line: &str) -> (u64, u64) {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words[..] {
        [
            "the",
            "relay",
            "forwarded",
            n,
            "datagram" | "datagrams",
            "and",
            "dropped",
            m,
        ] => (
            n.parse().expect("forwarded count"),
            m.parse().expect("dropped count"),
        ),
        _ => panic!("not a counters line: {line:?}"),
    }
}

#[test]
fn every_scene_runs_with_its_own_server_and_relay() {
    let course = Course::new("demo-scenes");
    let (ok, out, stderr) = run(&course, "demo", &["demo", "1"]);
    assert!(
        ok,
        "the fixture's demo must succeed\nstdout:\n{out}\nstderr:\n{stderr}"
    );

    let first = position(&out, 0, "== through a lossy relay ==\n");
    let second = position(&out, first, "\n== every datagram twice ==\n");
    let (scene1, scene2) = (&out[first..second], &out[second..]);

    // Scene 1: the server, then the relay in front of it, its clients, its counters, its log.
    let server = port_after(scene1, 0, "listening on ");
    let relay = port_after(scene1, 0, "relay ");
    assert_ne!(relay, server, "the relay has a port of its own:\n{scene1}");
    let relay_line = position(
        scene1,
        position(scene1, 0, "listening on "),
        &format!("relay 127.0.0.1:{relay} before the server, both ways: drops 30%, duplicates 30%, seed 3\n"),
    );
    let through = position(
        scene1,
        relay_line,
        &format!("$ solution01-echo ask 127.0.0.1:{relay} 21\n"),
    );
    let answer = position(scene1, through, &format!("asked port {relay} for twice 21: 42"));
    let past = position(
        scene1,
        answer,
        &format!("$ solution01-echo ask 127.0.0.1:{server} 4\n"),
    );
    position(scene1, past, &format!("asked port {server} for twice 4: 8"));
    let count_at = position(scene1, past, "the relay forwarded ");
    let log = position(scene1, count_at, "the server's log (stderr):\n");
    let (forwarded, _) = counters(scene1[count_at..log].trim());
    assert!(
        forwarded >= 2,
        "a request and its reply went through the relay:\n{scene1}"
    );
    position(scene1, log, "request 1 from port ");

    // Scene 2: a new server, a new relay that duplicates everything, exact counters.
    let server2 = port_after(scene2, 0, "listening on ");
    let relay2 = port_after(scene2, 0, "relay ");
    assert!(
        server2 != server && relay2 != relay && relay2 != server2,
        "scene 2 has its own server and relay:\n{out}"
    );
    position(
        scene2,
        0,
        &format!("relay 127.0.0.1:{relay2} before the server, both ways: duplicates 100%, seed 1\n"),
    );
    let ask = position(
        scene2,
        0,
        &format!("$ solution01-echo ask 127.0.0.1:{relay2} 5\n"),
    );
    let count_at = position(scene2, ask, "the relay forwarded ");
    let log = position(scene2, count_at, "the server's log (stderr):\n");
    let (forwarded, dropped) = counters(scene2[count_at..log].trim());
    // Each attempt: the request twice to the server, its two replies twice each to the client.
    assert!(
        dropped == 0 && forwarded > 0 && forwarded % 6 == 0,
        "every datagram twice: 6 forwarded per request, none dropped:\n{scene2}"
    );
    position(scene2, log, "request 2 from port ");
}

#[test]
fn mine_fails_politely_when_the_server_never_starts() {
    let course = Course::new("demo-mine-skeleton");
    // The skeleton's `serve` calls `greet`, a `todo!()`, before its ready line.
    let (ok, out, stderr) = run(&course, "demo-skeleton", &["demo", "1", "--mine"]);
    assert!(!ok, "an unfinished lab's demo fails\n{out}");
    assert_eq!(
        out.matches("(the server did not start: it exited (status 101) before printing its ready line")
            .count(),
        2,
        "each scene says its server did not start:\n{out}"
    );
    assert!(
        out.contains("== through a lossy relay ==") && out.contains("== every datagram twice =="),
        "every scene runs:\n{out}"
    );
    assert!(
        out.contains("not yet implemented: lab 01 step 2"),
        "the server's log shows why:\n{out}"
    );
    assert!(
        out.contains("Your programs did not complete the demo yet"),
        "{out}"
    );
    assert!(
        !stderr.contains("panicked"),
        "the tool itself must not panic:\n{stderr}"
    );
}

#[test]
fn mine_fails_politely_when_the_clients_fail() {
    let course = Course::new("demo-mine-step2");
    // Step 2 done, step 1 not: the server starts, then panics on its first request (`double`).
    let lib = course.dir.join("labs/01-echo/src/lib.rs");
    let text = std::fs::read_to_string(&lib).expect("the fixture lab");
    let todo = "todo!(\"lab 01 step 2: say hello to name\")";
    assert_eq!(
        text.matches(todo).count(),
        1,
        "the fixture's step 2 changed: update this test"
    );
    std::fs::write(&lib, text.replace(todo, "format!(\"hello, {name}\")")).expect("do step 2");
    let (ok, out, stderr) = run(&course, "demo-step2", &["demo", "1", "--mine"]);
    assert!(!ok, "the demo fails while step 1 is unfinished\n{out}");
    assert_eq!(out.matches("listening on 127.0.0.1:").count(), 2, "{out}");
    assert_eq!(
        out.matches("exit status 1)").count(),
        3,
        "every client gives up with status 1:\n{out}"
    );
    assert_eq!(out.matches("the relay forwarded ").count(), 2, "{out}");
    assert!(
        out.contains("Your programs did not complete the demo yet"),
        "{out}"
    );
    assert!(
        !stderr.contains("panicked"),
        "the tool itself must not panic:\n{stderr}"
    );
}

#[test]
fn a_handout_records_every_scene() {
    let course = Course::new("demo-handout");
    let dir = course.dir.with_file_name(format!(
        "{}-handout",
        course.dir.file_name().and_then(|n| n.to_str()).expect("a name")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let (ok, out, stderr) = run(
        &course,
        "demo-handout",
        &["handout", dir.to_str().expect("a UTF-8 path")],
    );
    assert!(ok, "handout\nstdout:\n{out}\nstderr:\n{stderr}");
    let recording = std::fs::read_to_string(dir.join(".course/demos/01-echo.txt")).expect("a recording");
    let _ = std::fs::remove_dir_all(&dir);
    for expected in [
        "== through a lossy relay ==",
        "both ways: drops 30%, duplicates 30%, seed 3",
        "== every datagram twice ==",
        "both ways: duplicates 100%, seed 1",
        "$ lab01-echo serve",
        "$ lab01-echo ask 127.0.0.1:",
    ] {
        assert!(
            recording.contains(expected),
            "no `{expected}` in the recording:\n{recording}"
        );
    }
    assert_eq!(
        recording.matches("the relay forwarded ").count(),
        2,
        "{recording}"
    );
    assert!(
        !recording.contains("solution"),
        "the recording names the student's package:\n{recording}"
    );
}
