//! Builds and runs the labs' grading suites and reads the results from libtest's output.
//!
//! Suites are compiled together by one `cargo build --keep-going --test grade-...` (so a lab that
//! does not compile does not stop the others from building) and their test binaries then run in
//! parallel: a suite spends most of its time waiting on sockets, so `cargo lab status` costs
//! about as long as its slowest suite, not the sum of all of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

/// The outcome of one suite run.
#[derive(Debug, Default)]
pub struct SuiteRun {
    /// Whether the package and its suite compiled.
    pub compiled: bool,
    /// Test name (without the `suite::` module) to whether it passed.
    pub results: BTreeMap<String, bool>,
    /// Failure messages by test name (the panic message, without backtraces).
    pub failures: BTreeMap<String, String>,
    /// Where each failing test panicked, `file:line:col` from the root: in the lab's own code
    /// (`labs/NN-slug/src/...`) when a panic was there, else the test's own (last) panic.
    pub locations: BTreeMap<String, String>,
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

/// A grading suite built and ready to run: its test binary, and the folder cargo would run it in.
#[derive(Debug, Clone)]
pub struct Built {
    /// The test executable of the `grade-<package>` target.
    pub executable: PathBuf,
    /// The package's folder (libtest's working directory under `cargo test`).
    pub dir: PathBuf,
}

/// Builds the grading suites of `packages` with one `cargo build --keep-going` (so cargo schedules
/// the compilation of all of them at once, and a package that does not compile does not stop
/// the others). Returns each package's built suite, or the compiler's first error lines.
pub fn build(root: &Path, packages: &[String]) -> Result<BTreeMap<String, Result<Built, String>>> {
    build_in(root, packages, None, &[])
}

/// [`build`] with cargo's build output in `target` instead of the workspace's own (or
/// `CARGO_TARGET_DIR`'s): `cargo lab dev mutants` gives each scratch copy its own.
pub fn build_in(
    root: &Path,
    packages: &[String],
    target: Option<&Path>,
    config: &[String],
) -> Result<BTreeMap<String, Result<Built, String>>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    if let Some(dir) = target {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    cmd.current_dir(root)
        .args(["build", "--keep-going", "--quiet"])
        .args(["--message-format", "json"]);
    for c in config {
        cmd.args(["--config", c]);
    }
    for p in packages {
        cmd.args(["-p", p, "--test", &format!("grade-{p}")]);
    }
    let output = cmd.output().context("cannot run cargo build")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut built = BTreeMap::new();
    let mut errors: BTreeMap<String, String> = BTreeMap::new();
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-message" && msg["message"]["level"] == "error" {
            if let (Some(id), Some(text)) = (msg["package_id"].as_str(), msg["message"]["rendered"].as_str())
            {
                errors
                    .entry(package_name(id).to_owned())
                    .or_default()
                    .push_str(text);
            }
            continue;
        }
        let (Some(exe), Some(target), Some(manifest)) = (
            msg["executable"].as_str(),
            msg["target"]["name"].as_str(),
            msg["manifest_path"].as_str(),
        ) else {
            continue;
        };
        let Some(package) = target.strip_prefix("grade-") else {
            continue;
        };
        let dir = Path::new(manifest)
            .parent()
            .map_or_else(|| root.to_path_buf(), Path::to_path_buf);
        built.insert(
            package.to_owned(),
            Ok(Built {
                executable: PathBuf::from(exe),
                dir,
            }),
        );
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Ok(packages
        .iter()
        .map(|p| {
            let result = built
                .remove(p)
                .unwrap_or_else(|| Err(compile_errors(errors.get(p).map_or(&*stderr, String::as_str))));
            (p.clone(), result)
        })
        .collect())
}

/// Runs a built suite, keeping only the tests whose names contain `filter`.
pub fn run_built(built: &Built, filter: Option<&str>) -> Result<SuiteRun> {
    let mut cmd = Command::new(&built.executable);
    cmd.current_dir(&built.dir)
        .args(["--color", "never", "--format", "pretty"])
        .env("RUST_BACKTRACE", "0");
    if let Some(f) = filter {
        cmd.arg(f);
    }
    let output = cmd
        .output()
        .with_context(|| format!("cannot run {}", built.executable.display()))?;
    Ok(parse(&String::from_utf8_lossy(&output.stdout)))
}

/// Builds and runs the grading suites of `packages`, all at once (a suite mostly waits on
/// sockets and timeouts, so the runs overlap well even on two cores). The results are in the
/// order of `packages`.
pub fn run_suites(root: &Path, packages: &[String], filter: Option<&str>) -> Result<Vec<SuiteRun>> {
    let built = build(root, packages)?;
    std::thread::scope(|scope| {
        let handles: Vec<_> = packages
            .iter()
            .map(|p| {
                let suite = built[p].clone();
                scope.spawn(move || match suite {
                    Ok(b) => run_built(&b, filter),
                    Err(errors) => Ok(SuiteRun {
                        compile_errors: errors,
                        ..SuiteRun::default()
                    }),
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("a suite runner panicked"))?)
            .collect()
    })
}

/// Builds and runs the grading suite of one package.
pub fn run_suite(root: &Path, package: &str, filter: Option<&str>) -> Result<SuiteRun> {
    let mut runs = run_suites(root, &[package.to_owned()], filter)?;
    runs.pop().context("no suite ran")
}

/// Runs `work` behind a spinner labelled `message` (drawn only on a terminal).
pub fn with_spinner<T>(message: String, work: impl FnOnce() -> T) -> T {
    let spinner = ProgressBar::new_spinner().with_message(message);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        spinner.set_style(style);
    }
    spinner.enable_steady_tick(Duration::from_millis(120));
    let result = work();
    spinner.finish_and_clear();
    result
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
    for (name, text) in &mut run.failures {
        if let Some(at) = panic_location(text) {
            run.locations.insert(name.clone(), at);
        }
        *text = tidy_failure(text);
    }
    run
}

/// The location to show for a failure's `thread '...' panicked at FILE:LINE:COL:` lines: the
/// last one in a package's own code (`labs/NN-slug/src/`, or `solutions/...`), where the student
/// should look first, else the last one (the test's own panic, in the suite). Paths are
/// tidied: the suite's `labs/01-udp/tests/../../../tests/01-udp/suite.rs` becomes
/// `tests/01-udp/suite.rs`.
fn panic_location(text: &str) -> Option<String> {
    let all: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("thread '"))
        .filter_map(|l| l.split_once(" panicked at ").map(|(_, at)| at))
        .map(|at| tidy_path(at.trim().trim_end_matches(':')))
        .collect();
    let in_src = |at: &&String| {
        let mut parts = at.split('/');
        matches!(
            (parts.next(), parts.next(), parts.next()),
            (Some("labs" | "solutions"), Some(_), Some("src"))
        )
    };
    all.iter().rev().find(in_src).or(all.last()).cloned()
}

/// `a/b/../c` as `a/c`, with `/` separators (Windows paths come with `\`).
fn tidy_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split(['/', '\\']) {
        match part {
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            "." => {}
            _ => parts.push(part),
        }
    }
    parts.join("/")
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

/// The package name in a cargo package id: `path+file:///x/labs/01-udp#lab01-udp@0.1.0` (cargo
/// 1.77 and later; `path+file:///x/common#0.1.0` when the folder has the package's name) or
/// `lab01-udp 0.1.0 (path+file:///x)` (before).
fn package_name(id: &str) -> &str {
    match id.rsplit_once('#') {
        Some((url, tail)) => match tail.split_once('@') {
            Some((name, _)) => name,
            None => url.rsplit('/').next().unwrap_or(url),
        },
        None => id.split(' ').next().unwrap_or(id),
    }
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
    fn keeps_where_the_test_panicked() {
        let run = parse(OUTPUT);
        assert_eq!(run.locations["step2_recv"], "tests/01_udp.rs:10:5");
        // The lab's own code wins over the suite, and the suite's path is tidied.
        let text = "thread 'h' panicked at labs/01-udp/src/lib.rs:9:5:\nnot yet implemented\n\
                    thread 't' (7) panicked at labs/01-udp/tests/../../../tests/01-udp/suite.rs:7:5:\nboom\n";
        assert_eq!(
            panic_location(text).as_deref(),
            Some("labs/01-udp/src/lib.rs:9:5")
        );
        let text = "thread 't' (7) panicked at labs\\01-udp\\tests\\..\\..\\..\\tests\\01-udp\\suite.rs:7:5:\nboom\n";
        assert_eq!(panic_location(text).as_deref(), Some("tests/01-udp/suite.rs:7:5"));
        assert_eq!(panic_location("no panic here"), None);
    }

    #[test]
    fn keeps_only_the_tests_own_panic() {
        let text = "thread 'helper' panicked at src/lib.rs:1:1:\nboom\n\nthread 't' panicked at x.rs:2:2:\nhelper panicked: boom\n";
        assert_eq!(tidy_failure(text), "helper panicked: boom");
    }

    #[test]
    fn package_names_come_from_either_id_format() {
        assert_eq!(
            package_name("path+file:///x/labs/01-udp#lab01-udp@0.1.0"),
            "lab01-udp"
        );
        assert_eq!(package_name("path+file:///x/common#0.1.0"), "common");
        assert_eq!(package_name("lab01-udp 0.1.0 (path+file:///x)"), "lab01-udp");
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
