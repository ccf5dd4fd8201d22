//! Runs a lab's grading suite with `cargo test` and reads the results from libtest's output.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

/// The outcome of one suite run.
#[derive(Debug, Default)]
pub struct SuiteRun {
    /// Whether the package and its suite compiled.
    pub compiled: bool,
    /// Test name (without the `suite::` module) to whether it passed.
    pub results: BTreeMap<String, bool>,
    /// Failure messages by test name (the panic message, without backtraces).
    pub failures: BTreeMap<String, String>,
    /// The compiler's first error lines when it did not compile.
    pub compile_errors: String,
}

impl SuiteRun {
    /// Tests passed.
    pub fn passed(&self) -> usize {
        self.results.values().filter(|ok| **ok).count()
    }

    /// Tests run.
    pub fn total(&self) -> usize {
        self.results.len()
    }

    /// `(passed, total)` of the tests of step `k`.
    pub fn step(&self, k: usize) -> (usize, usize) {
        let prefix = crate::manifest::Lab::step_prefix(k);
        let of_step: Vec<bool> = self
            .results
            .iter()
            .filter(|(name, _)| name.starts_with(&prefix))
            .map(|(_, ok)| *ok)
            .collect();
        (of_step.iter().filter(|ok| **ok).count(), of_step.len())
    }
}

/// Runs the grading suite of `package` (its `grade-<package>` test target) under `root`,
/// keeping only the tests whose names contain `filter`.
pub fn run_suite(root: &Path, package: &str, filter: Option<&str>) -> Result<SuiteRun> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["test", "--quiet", "--color", "never", "-p", package, "--test"])
        .arg(format!("grade-{package}"))
        .args(["--", "--color", "never", "--format", "pretty"])
        .env("RUST_BACKTRACE", "0");
    if let Some(f) = filter {
        cmd.arg(f);
    }
    let output = cmd
        .output()
        .with_context(|| format!("cannot run cargo test -p {package}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut run = parse(&stdout);
    if !run.compiled {
        let stderr = String::from_utf8_lossy(&output.stderr);
        run.compile_errors = compile_errors(&stderr);
    }
    Ok(run)
}

/// Reads libtest's pretty output: `test suite::name ... ok|FAILED` lines, then the captured
/// output of each failure between `---- suite::name stdout ----` lines.
pub fn parse(stdout: &str) -> SuiteRun {
    let mut run = SuiteRun::default();
    let mut current: Option<String> = None;
    for line in stdout.lines() {
        if line.starts_with("test result:") {
            run.compiled = true;
        }
        if let Some(rest) = line.strip_prefix("test ") {
            if let Some((name, outcome)) = rest.rsplit_once(" ... ") {
                let name = short(name).to_owned();
                match outcome.trim() {
                    "ok" => {
                        run.results.insert(name, true);
                    }
                    "FAILED" => {
                        run.results.insert(name, false);
                    }
                    _ => {} // ignored tests are neither passed nor failed
                }
                continue;
            }
        }
        if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" stdout ----"))
        {
            current = Some(short(name).to_owned());
            continue;
        }
        if line == "failures:" || line.starts_with("test result:") {
            current = None;
            continue;
        }
        if let Some(name) = &current {
            let text = run.failures.entry(name.clone()).or_default();
            if line.starts_with("note: run with `RUST_BACKTRACE") || (line.is_empty() && text.is_empty()) {
                continue;
            }
            text.push_str(line);
            text.push('\n');
        }
    }
    for text in run.failures.values_mut() {
        *text = tidy_failure(text);
    }
    run
}

fn short(name: &str) -> &str {
    name.trim().rsplit("::").next().unwrap_or(name)
}

/// Keeps the message of the test's own (last) panic, dropping the `thread '...' panicked at
/// file:line:` lines and earlier panics of helper threads, which the last one repeats.
fn tidy_failure(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.starts_with("thread '") && l.contains("panicked at"))
        .map_or(0, |i| i + 1);
    lines[start..].join("\n").trim().to_owned()
}

fn compile_errors(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let start = lines.iter().position(|l| l.starts_with("error")).unwrap_or(0);
    lines[start..]
        .iter()
        .take(20)
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "
running 3 tests
test suite::step1_bind ... ok
test suite::step2_recv ... FAILED
test suite::step2_slow ... ignored

failures:

---- suite::step2_recv stdout ----

thread 'suite::step2_recv' (42) panicked at tests/01_udp.rs:10:5:
not yet implemented: lab 01 step 2: receive
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace


failures:
    suite::step2_recv

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s
";

    #[test]
    fn reads_results_and_failure_messages() {
        let run = parse(OUTPUT);
        assert!(run.compiled);
        assert_eq!((run.passed(), run.total()), (1, 2));
        assert_eq!(run.step(2), (0, 1));
        assert_eq!(
            run.failures["step2_recv"],
            "not yet implemented: lab 01 step 2: receive"
        );
    }

    #[test]
    fn keeps_only_the_tests_own_panic() {
        let text = "thread 'helper' panicked at src/lib.rs:1:1:\nboom\n\nthread 't' panicked at x.rs:2:2:\nhelper panicked: boom\n";
        assert_eq!(tidy_failure(text), "helper panicked: boom");
    }

    #[test]
    fn no_result_line_means_it_did_not_compile() {
        let run = parse("");
        assert!(!run.compiled);
        assert_eq!(run.total(), 0);
        assert_eq!(
            compile_errors("   Compiling x\nerror[E0425]: oops\n  --> src/lib.rs:1:1"),
            "error[E0425]: oops\n  --> src/lib.rs:1:1"
        );
    }
}
