//! `cargo lab watch` end to end: the real binary on a copy of the fixture course, driven through
//! a pseudo-terminal as a student would use it (Unix; Windows has no pty for this, so the test
//! says it is skipped there).

mod support;

use std::process::Stdio;

use support::Course;

#[test]
fn without_a_terminal_it_says_it_needs_one() {
    let course = Course::new("watch-notty");
    let output = course
        .command(&["watch"])
        .stdin(Stdio::null())
        .output()
        .expect("run cargo lab watch");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cargo lab watch needs a terminal") && stderr.lines().count() == 1,
        "{stderr}"
    );
}

#[cfg(not(unix))]
#[test]
fn watch_through_a_terminal() {
    eprintln!("skipped: the watch test needs a Unix pseudo-terminal, which this platform lacks");
}

#[cfg(unix)]
#[test]
fn watch_through_a_terminal() {
    use std::time::{Duration, Instant};

    use rexpect::process::WaitStatus;
    use rexpect::reader::Options;
    use rexpect::session::PtySession;

    /// Reads the terminal until `needle` appears, or fails at `deadline` (or the test's).
    fn expect(p: &mut PtySession, seen: &mut String, needle: &str, within: Duration, end: Instant) {
        let deadline = (Instant::now() + within).min(end);
        loop {
            while let Some(c) = p.try_read() {
                seen.push(c);
            }
            if let Some(i) = seen.find(needle) {
                seen.drain(..i + needle.len());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited {within:?} for {needle:?}; the terminal showed:\n{seen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    let end = Instant::now() + Duration::from_secs(55);
    let course = Course::new("watch-pty");
    let options = Options::new()
        .timeout_ms(Some(30_000))
        .strip_ansi_escape_codes(true);
    let mut p = rexpect::session::spawn_with_options(course.command(&["watch"]), options)
        .expect("start cargo lab watch in a pty");
    // Killed (SIGTERM, then SIGKILL after 2 s) and reaped when `p` drops, so also on a failure.
    p.process_mut().set_kill_timeout(Some(2_000));
    let mut seen = String::new();
    let s = &mut seen;

    // The first run builds the fixture: give it longer.
    expect(
        &mut p,
        s,
        "Lab 01 step 1 of 2: Double",
        Duration::from_secs(10),
        end,
    );
    expect(
        &mut p,
        s,
        "not yet implemented: lab 01 step 1: return twice x",
        Duration::from_secs(40),
        end,
    );
    expect(
        &mut p,
        s,
        "panicked at labs/01-echo/src/lib.rs:",
        Duration::from_secs(5),
        end,
    );
    expect(&mut p, s, "q quit", Duration::from_secs(5), end);

    let lib = course.dir.join("labs/01-echo/src/lib.rs");
    let text = std::fs::read_to_string(&lib).expect("read the skeleton");
    let solved = text.replace(
        "    common::your_code_here(x);\n    todo!(\"lab 01 step 1: return twice x\")",
        "    x * 2",
    );
    assert_ne!(solved, text, "the fixture's skeleton changed: update this test");
    std::fs::write(&lib, solved).expect("save step 1");

    expect(&mut p, s, "Lab 01 step 1 passes", Duration::from_secs(20), end);
    expect(
        &mut p,
        s,
        "Lab 01 step 2 of 2: Greet",
        Duration::from_secs(20),
        end,
    );
    expect(
        &mut p,
        s,
        "not yet implemented: lab 01 step 2: say hello to name",
        Duration::from_secs(20),
        end,
    );
    expect(&mut p, s, "q quit", Duration::from_secs(5), end);

    p.send("h").expect("press h");
    p.flush().expect("flush");
    expect(
        &mut p,
        s,
        "Hint 1 of 1: format! builds a String.",
        Duration::from_secs(5),
        end,
    );

    p.send("q").expect("press q");
    p.flush().expect("flush");
    expect(&mut p, s, "Stopped watching Lab 01.", Duration::from_secs(5), end);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        match p.process().status() {
            Some(WaitStatus::StillAlive) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            status => break status,
        }
    };
    assert!(
        matches!(status, Some(WaitStatus::Exited(_, 0))),
        "cargo lab watch should exit 0 on q, not {status:?}"
    );
}
