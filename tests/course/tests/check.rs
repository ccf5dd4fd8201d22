//! `cargo lab dev check` end to end: the real binary on a copy of the fixture course, pristine
//! (no problem) and broken one way at a time (the line that names the problem).
//!
//! The commands run with `assert_cmd`'s timeout. Its `SIGCHLD` handler cannot disturb anything
//! here: this test binary opens no socket (see the instructor guide, "How the tests are written").

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use tempfile::TempDir;

/// A copy of the fixture course in a fresh temporary folder (outside any git checkout, as a
/// student's copy would be), without build output.
fn fixture() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("course-check-")
        .tempdir()
        .expect("create a temporary folder");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture"),
        dir.path(),
    );
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a folder of the copy");
    for entry in std::fs::read_dir(from).expect("list the fixture") {
        let entry = entry.expect("fixture entry");
        let path = entry.path();
        if entry.file_name() == "target" {
            continue;
        }
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy a fixture file");
        }
    }
}

/// Runs `course ARGS` on the course at `dir`; returns (success, stdout).
fn course(dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_course"))
        .args(args)
        .env("COURSE_ROOT", dir)
        .current_dir(dir)
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run the course tool");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.code().is_some(),
        "`course {}` did not finish within 60 s (or was killed)\nstdout:\n{stdout}\nstderr:\n{stderr}",
        args.join(" ")
    );
    (output.status.success(), stdout)
}

/// Replaces the one occurrence of `from` in the file `rel` of the course at `dir`.
fn edit(dir: &Path, rel: &str, from: &str, to: &str) {
    let path: PathBuf = dir.join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {rel}: {e}"));
    assert_eq!(
        text.matches(from).count(),
        1,
        "the fixture's {rel} should hold `{from}` once: update this test"
    );
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap_or_else(|e| panic!("write {rel}: {e}"));
}

/// The 1-based line of the first `needle` in the file `rel`.
fn line_of(dir: &Path, rel: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(dir.join(rel)).expect("read");
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{rel} has no `{needle}`"))
        + 1
}

/// `dev check` fails, and one line of its output holds every fragment of `line`.
#[track_caller]
fn check_fails_with(dir: &Path, line: &[&str]) -> String {
    let (ok, out) = course(dir, &["dev", "check"]);
    assert!(!ok, "dev check passed, but the course is broken:\n{out}");
    assert!(
        out.lines().any(|l| line.iter().all(|f| l.contains(f))),
        "no line of dev check's output holds all of {line:?}:\n{out}"
    );
    assert!(
        out.lines().last().is_some_and(
            |l| (l.starts_with("check: ") && l.ends_with(" problems")) || l == "check: 1 problem"
        ),
        "the last line counts the problems:\n{out}"
    );
    out
}

#[test]
fn the_pristine_fixture_passes() {
    let course_dir = fixture();
    let (ok, out) = course(course_dir.path(), &["dev", "check"]);
    assert!(ok, "{out}");
    assert_eq!(out, "check: ok\n");
    let (ok, out) = course(course_dir.path(), &["dev", "sync", "--check"]);
    assert!(
        ok,
        "the fixture's generated files are stale: run dev sync in it\n{out}"
    );
}

#[test]
fn a_removed_anchor_is_named_with_the_include() {
    let c = fixture();
    let dir = c.path();
    let include = line_of(dir, "book/src/lab01-echo.md", "lib.rs:double");
    edit(dir, "solutions/01-echo/src/lib.rs", "// ANCHOR: double\n", "");
    // The book includes the listing that sync writes from the skeleton.
    assert!(course(dir, &["dev", "sync"]).0, "dev sync on the fixture");
    check_fails_with(
        dir,
        &[
            &format!("book/src/lab01-echo.md:{include}:"),
            "no `ANCHOR: double` line",
        ],
    );
}

#[test]
fn an_ignored_rust_block_must_be_an_included_fragment() {
    let c = fixture();
    let dir = c.path();
    edit(
        dir,
        "book/src/lab01-echo.md",
        "{{#include listings/01-echo/lib.rs:double}}",
        "let x = 1;",
    );
    check_fails_with(
        dir,
        &[
            "book/src/lab01-echo.md:7:",
            "a `rust,ignore` block that is not an included fragment",
        ],
    );
}

#[test]
fn an_include_from_the_students_working_copy_is_refused() {
    let c = fixture();
    let dir = c.path();
    edit(
        dir,
        "book/src/lab01-echo.md",
        "listings/01-echo/lib.rs:double",
        "../../labs/01-echo/src/lib.rs:double",
    );
    check_fails_with(
        dir,
        &[
            "book/src/lab01-echo.md:8:",
            "includes from labs/, the student's working copy",
        ],
    );
}

#[test]
fn a_misspelled_section_id_is_named_in_the_manifest() {
    let c = fixture();
    let dir = c.path();
    edit(
        dir,
        "tests/01-echo/lab.toml",
        "\"step-1-double\"",
        "\"step-1-dubble\"",
    );
    let line = line_of(dir, "tests/01-echo/lab.toml", "step-1-dubble");
    check_fails_with(
        dir,
        &[
            &format!("tests/01-echo/lab.toml:{line}:"),
            "\"step-1-dubble\" is no heading id of book/src/lab01-echo.md",
            "did you mean \"step-1-double\"",
        ],
    );
}

#[test]
fn a_test_of_a_step_that_does_not_exist_is_named() {
    let c = fixture();
    let dir = c.path();
    edit(
        dir,
        "tests/01-echo/suite.rs",
        "fn step1_doubles",
        "fn step3_doubles",
    );
    let line = line_of(dir, "tests/01-echo/suite.rs", "fn step3_doubles");
    let out = check_fails_with(
        dir,
        &[
            &format!("tests/01-echo/suite.rs:{line}:"),
            "`step3_doubles` belongs to step 3, but Lab 01 has steps 1 to 2",
        ],
    );
    assert!(out.contains("step 1 has no tests"), "{out}");
    assert!(
        out.contains("`step3_doubles` is never named in book/src/lab01-echo.md"),
        "{out}"
    );
    assert!(
        out.contains("names test `step1_doubles`, which the suite does not have"),
        "{out}"
    );
}

#[test]
fn a_test_not_named_after_a_step_is_named() {
    let c = fixture();
    let dir = c.path();
    edit(dir, "tests/01-echo/suite.rs", "fn step2_greets", "fn greets");
    check_fails_with(
        dir,
        &["tests/01-echo/suite.rs:", "`greets` is not named after its step"],
    );
}

#[test]
fn a_hint_that_quotes_solution_code_is_a_leak() {
    let c = fixture();
    let dir = c.path();
    edit(
        dir,
        "tests/01-echo/lab.toml",
        "\"format! builds a String.\"",
        "'Try `let greeting = String::from(\"hello, \");`.'",
    );
    let line = line_of(dir, "tests/01-echo/lab.toml", "let greeting");
    check_fails_with(
        dir,
        &[
            &format!("tests/01-echo/lab.toml:{line}:"),
            "quotes solution code",
            "solutions/01-echo/src/lib.rs:",
        ],
    );
}

#[test]
fn a_step_without_its_hints_include_and_a_hint_written_in_the_chapter() {
    let c = fixture();
    let dir = c.path();
    edit(
        dir,
        "book/src/lab01-echo.md",
        "{{#include hints/lab01-echo-step2.md}}\n",
        "<details><summary>Hint</summary>\n\nAsk a friend.\n\n</details>\n",
    );
    let heading = line_of(dir, "book/src/lab01-echo.md", "## Step 2: Greet");
    let out = check_fails_with(
        dir,
        &[
            &format!("book/src/lab01-echo.md:{heading}:"),
            "step 2 does not show its hints",
            "{{#include hints/lab01-echo-step2.md}}",
        ],
    );
    assert!(out.contains("a hint block written in the chapter"), "{out}");
}

#[test]
fn a_stale_skeleton_and_a_stray_file_need_a_sync() {
    let c = fixture();
    let dir = c.path();
    edit(
        dir,
        "labs/01-echo/src/lib.rs",
        "    todo!(\"lab 01 step 1: return twice x\")",
        "    x * 2",
    );
    std::fs::write(dir.join("labs/01-echo/src/extra.rs"), "// mine\n").expect("write");
    let out = check_fails_with(
        dir,
        &[
            "labs/01-echo/src/lib.rs:",
            "differs from what solutions/01-echo generates: run `cargo lab dev sync`",
        ],
    );
    assert!(
        out.contains("labs/01-echo/src/extra.rs: `cargo lab dev sync` does not generate this file"),
        "{out}"
    );
}

#[test]
fn a_citation_of_a_heading_that_does_not_exist_is_named() {
    let c = fixture();
    let dir = c.path();
    edit(
        dir,
        "tests/01-echo/suite.rs",
        "\"see § Step 2: Greet\"",
        "\"see § Step 2: Greeting\"",
    );
    let line = line_of(dir, "tests/01-echo/suite.rs", "Step 2: Greeting");
    check_fails_with(
        dir,
        &[
            &format!("tests/01-echo/suite.rs:{line}:"),
            "cites § Step 2: Greeting, which is no heading of the book",
            "did you mean § Step 2: Greet?",
        ],
    );
}

#[test]
fn a_step_region_without_its_message_is_named() {
    let c = fixture();
    let dir = c.path();
    edit(
        dir,
        "solutions/01-echo/src/lib.rs",
        "// >>> step 2 (name): say hello to name",
        "// >>> step 2 (name):",
    );
    let line = line_of(dir, "solutions/01-echo/src/lib.rs", "// >>> step 2");
    check_fails_with(
        dir,
        &[
            &format!("solutions/01-echo/src/lib.rs:{line}:"),
            "this step region has no message",
        ],
    );
}

#[test]
fn an_include_by_line_numbers_and_a_missing_file_are_named() {
    let c = fixture();
    let dir = c.path();
    edit(dir, "book/src/lab01-echo.md", "lib.rs:double}}", "lib.rs:5:9}}");
    edit(
        dir,
        "book/src/lab01-echo.md",
        "`step2_greets` checks it.",
        "`step2_greets` checks it.\n\n{{#include nowhere.rs}}\n\\{{#include escaped.rs}}",
    );
    let out = check_fails_with(dir, &["book/src/lab01-echo.md:", "includes lines by number"]);
    assert!(out.contains("there is no file nowhere.rs"), "{out}");
    assert!(!out.contains("escaped.rs"), "an escaped include is prose: {out}");
}

#[test]
fn a_manifest_that_does_not_load_is_one_problem() {
    let c = fixture();
    let dir = c.path();
    edit(dir, "tests/01-echo/lab.toml", "points = 40", "points = \"forty\"");
    check_fails_with(dir, &["the manifests do not load", "tests/01-echo/lab.toml"]);
}

#[test]
fn a_changed_hint_makes_its_file_stale_until_sync() {
    let c = fixture();
    let dir = c.path();
    edit(
        dir,
        "tests/01-echo/lab.toml",
        "\"By two.\"",
        "\"By two, `x + x`.\"",
    );
    let (ok, out) = course(dir, &["dev", "sync", "--check"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("out of date: book/src/hints/lab01-echo-step1.md"),
        "{out}"
    );
    check_fails_with(
        dir,
        &[
            "book/src/hints/lab01-echo-step1.md:",
            "differs from what tests/01-echo/lab.toml generates",
        ],
    );
    let (ok, out) = course(dir, &["dev", "sync"]);
    assert!(ok, "{out}");
    let hints = std::fs::read_to_string(dir.join("book/src/hints/lab01-echo-step1.md")).expect("read");
    assert!(
        hints.contains("<details><summary>Hint 2 of 2</summary>\n\nBy two, `x + x`.\n\n</details>"),
        "{hints}"
    );
    let (ok, out) = course(dir, &["dev", "check"]);
    assert!(ok, "{out}");
}
