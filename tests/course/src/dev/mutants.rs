//! `cargo lab dev mutants`: the bug zoo. Each `tests/NN-slug/mutants/*.patch` is one realistic
//! student mistake, written as a small patch against the solution's `src/lib.rs`; this command
//! proves that the lab's suite catches every one of them, with a message that names the mistake.
//!
//! A mutant file starts with a header, then the unified diff (`diff -u` or `git diff` output):
//!
//! ```text
//! Mistake: bind() ignores the requested port and always binds the lecture's 6789
//! Caught-by: step1_bind_port_zero_gives_an_ephemeral_port
//! Expect: ephemeral port
//! (any further lines up to the diff are notes for the reader)
//! --- a/solutions/01-udp/src/lib.rs
//! +++ b/solutions/01-udp/src/lib.rs
//! @@ ...
//! ```
//!
//! `Caught-by` names the suite test that must fail (it may list several, comma-separated: each
//! must fail) and `Expect` a fragment of the first one's failure message. For each mutant the
//! command writes the mutated solution in place of the skeleton's `lib.rs` in a scratch copy of
//! the course (one per parallel job and selection of labs, under `target/mutants/`, each with
//! its own target folder so jobs never wait on each other's build lock), builds the lab's suite,
//! runs the tests that `Caught-by` names (and only those: the rest of the suite has no say in
//! the verdict, and skipping it makes a mutant's run take a second or two instead of the whole
//! suite's) with a time limit, and reports:
//! - `CAUGHT`: the named tests failed and the message holds the fragment;
//! - `ESCAPED`: the named tests passed — the suite misses this mistake;
//! - `MISSED`: tests failed, but not the named one or not with the expected message;
//! - `SLOW`: caught, but the named tests took longer than [`SLOW_SUITE`] (a mistake must fail
//!   fast);
//! - `HUNG`: the suite ran past [`HUNG_SUITE`] and was killed;
//! - `NOBUILD`: the mutant does not compile, or the patch does not apply to the solution.
//!
//! In the scratch copies the lab's package builds without optimisation or debug info, which
//! halves each mutant's build (1.5 s instead of 2.7 s for Lab 06 on two cores); the rest of
//! the course builds as it always does. A job stays with one lab while that lab has mutants
//! left (see [`Schedule`]), so each scratch copy builds a lab from nothing at most once.
//!
//! Anything but `CAUGHT` fails the command, and the mutants that failed it are listed again
//! at the very end, so the tail of a long CI log names them. Mutants are instructor material:
//! handouts leave them out.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use wait_timeout::ChildExt;

use crate::instructor::handout;
use crate::manifest::Lab;
use crate::runner::{self, SuiteRun};

/// A suite that takes longer than this to fail on one mistake is too slow for a student: 20 s.
pub const SLOW_SUITE: Duration = Duration::from_secs(20);

/// A suite run still going after this is killed and reported `HUNG`: 60 s.
pub const HUNG_SUITE: Duration = Duration::from_secs(60);

/// The least number of mutants a lab's zoo holds (`cargo lab dev check` enforces it).
pub const MIN_MUTANTS: usize = 15;

/// One mutant of the zoo, as read from its file.
#[derive(Debug, Clone)]
pub struct Mutant {
    /// The file's stem: `bind-fixed-port`.
    pub name: String,
    /// The file, relative to the root.
    pub file: PathBuf,
    /// The one-line description of the mistake.
    pub mistake: String,
    /// The tests that must fail.
    pub caught_by: Vec<String>,
    /// A fragment of the first `caught_by` test's failure message.
    pub expect: String,
    /// The unified diff against the solution's `src/lib.rs`.
    pub diff: String,
}

/// `tests/NN-slug/mutants`, relative to the root.
pub fn zoo_dir(lab: &Lab) -> PathBuf {
    Path::new("tests").join(lab.dir_name()).join("mutants")
}

/// Reads and parses every mutant of `lab`, sorted by name.
///
/// # Errors
/// A file without a `Mistake:`, `Caught-by:` or `Expect:` line, or without a diff.
pub fn load(root: &Path, lab: &Lab) -> Result<Vec<Mutant>> {
    let dir = root.join(zoo_dir(lab));
    let mut mutants = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(mutants);
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "patch") {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = zoo_dir(lab).join(format!("{name}.patch"));
        mutants.push(parse(&name, &file, &text).with_context(|| format!("{}", file.display()))?);
    }
    mutants.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(mutants)
}

/// Parses one mutant file (see the module docs for its format).
pub fn parse(name: &str, file: &Path, text: &str) -> Result<Mutant> {
    let start = text
        .lines()
        .position(|l| l.starts_with("--- "))
        .context("no diff: expected a `--- a/solutions/NN-slug/src/lib.rs` line")?;
    let header: Vec<&str> = text.lines().take(start).collect();
    let field = |key: &str| {
        header
            .iter()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .with_context(|| format!("no `{key}` line in the header"))
    };
    let mistake = field("Mistake:")?;
    let caught_by: Vec<String> = field("Caught-by:")?
        .split(',')
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    let expect = field("Expect:")?;
    let diff: String = text.lines().skip(start).fold(String::new(), |mut acc, l| {
        acc.push_str(l);
        acc.push('\n');
        acc
    });
    Ok(Mutant {
        name: name.to_owned(),
        file: file.to_path_buf(),
        mistake,
        caught_by,
        expect,
        diff,
    })
}

/// The solution's `src/lib.rs` with `mutant` applied.
///
/// # Errors
/// A diff that does not parse, or whose context no longer matches the solution (the solution
/// changed since the mutant was written: regenerate the patch).
pub fn apply(root: &Path, lab: &Lab, mutant: &Mutant) -> Result<String> {
    let lib = root.join(lab.solution_dir()).join("src/lib.rs");
    let base = std::fs::read_to_string(&lib).with_context(|| format!("cannot read {}", lib.display()))?;
    let patch =
        diffy::Patch::from_str(&mutant.diff).map_err(|e| anyhow::anyhow!("the diff does not parse: {e}"))?;
    diffy::apply(&base, &patch).map_err(|e| {
        anyhow::anyhow!(
            "the patch no longer applies to {} ({e}); rewrite it against the current solution",
            lib.display()
        )
    })
}

/// What running one mutant came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Caught by the named test with the expected message.
    Caught,
    /// None of the named tests failed.
    Escaped,
    /// Tests failed, but not the named one, or without the expected fragment.
    Missed,
    /// Caught, but the suite ran longer than [`SLOW_SUITE`].
    Slow,
    /// Killed after [`HUNG_SUITE`].
    Hung,
    /// Did not apply or did not compile.
    NoBuild,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Caught => "CAUGHT",
            Verdict::Escaped => "ESCAPED",
            Verdict::Missed => "MISSED",
            Verdict::Slow => "SLOW",
            Verdict::Hung => "HUNG",
            Verdict::NoBuild => "NOBUILD",
        }
    }
}

/// The outcome of one mutant.
#[derive(Debug)]
struct Outcome {
    verdict: Verdict,
    /// How long the suite ran.
    took: Duration,
    /// How long cargo took to build the mutant and its suite.
    build: Duration,
    /// The failing tests.
    failed: Vec<String>,
    /// The message to show: the named test's failure, a compiler error, or why it missed.
    message: String,
}

/// What `cargo lab dev mutants` was asked to do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Mutants run at once (each in its own scratch copy).
    pub jobs: usize,
    /// Only mutants whose name contains this.
    pub only: Option<String>,
}

/// Runs `cargo lab dev mutants` on `labs`.
pub fn command(root: &Path, labs: &[Lab], plan: &Plan) -> Result<bool> {
    if plan.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let mut queue: Vec<(&Lab, Mutant)> = Vec::new();
    for lab in labs {
        for m in load(root, lab)? {
            if plan.only.as_deref().is_none_or(|o| m.name.contains(o)) {
                queue.push((lab, m));
            }
        }
    }
    if queue.is_empty() {
        bail!("no mutants to run (the zoos are tests/NN-slug/mutants/*.patch)");
    }
    let jobs = plan.jobs.min(queue.len());
    let started = Instant::now();
    // One scratch copy per job and per selection of labs: two runs on different labs (two
    // authors at work) never write into each other's copy.
    let selection = match labs {
        [lab] => format!("lab{:02}", lab.number),
        _ => "all".to_owned(),
    };
    let scratches: Vec<PathBuf> = (1..=jobs)
        .map(|j| {
            root.join("target")
                .join("mutants")
                .join(format!("{selection}-job-{j}"))
        })
        .collect();
    runner::with_spinner(format!("preparing {jobs} scratch copies"), || {
        scratches.iter().try_for_each(|s| prepare(root, s))
    })?;
    let progress = ProgressBar::new(queue.len() as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} mutants ({elapsed}) {msg}") {
        progress.set_style(style);
    }
    let schedule = Mutex::new(Schedule::new(queue.iter().map(|(lab, _)| lab.number)));
    let outcomes: Mutex<BTreeMap<usize, Outcome>> = Mutex::new(BTreeMap::new());
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for scratch in &scratches {
            scope.spawn(|| {
                let mut current = None;
                loop {
                    let taken = schedule.lock().unwrap_or_else(|p| p.into_inner()).take(current);
                    let Some((group, i)) = taken else { break };
                    current = Some(group);
                    let (lab, mutant) = &queue[i];
                    progress.set_message(mutant.name.clone());
                    match run_one(root, scratch, lab, mutant) {
                        Ok(outcome) => {
                            if outcome.verdict != Verdict::Caught {
                                progress.println(format!("{} {}", outcome.verdict.label(), mutant.name));
                            }
                            outcomes
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(i, outcome);
                        }
                        Err(e) => {
                            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            schedule.lock().unwrap_or_else(|p| p.into_inner()).clear();
                        }
                    }
                    progress.inc(1);
                }
                // Put the skeleton back, so the scratch copy builds as the course does.
                let _ = prepare(root, scratch);
            });
        }
    });
    progress.finish_and_clear();
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let outcomes = outcomes.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut ok = true;
    let mut not_caught: Vec<String> = Vec::new();
    for lab in labs {
        let mine: Vec<(&Mutant, &Outcome)> = queue
            .iter()
            .enumerate()
            .filter(|(_, (l, _))| l.number == lab.number)
            .filter_map(|(i, (_, m))| outcomes.get(&i).map(|o| (m, o)))
            .collect();
        if mine.is_empty() && plan.only.is_some() {
            continue;
        }
        let total = mine.len();
        let caught = mine.iter().filter(|(_, o)| o.verdict == Verdict::Caught).count();
        let slowest = mine.iter().map(|(_, o)| o.took).max().unwrap_or_default();
        let builds: Duration = mine.iter().map(|(_, o)| o.build).sum();
        let runs: Duration = mine.iter().map(|(_, o)| o.took).sum();
        println!(
            "{} ({}): {caught}/{} mutants caught, slowest suite run {:.1} s (in all: builds {:.0} s, suite runs {:.0} s)",
            lab.name(),
            lab.title,
            mine.len(),
            slowest.as_secs_f64(),
            builds.as_secs_f64(),
            runs.as_secs_f64()
        );
        for (m, o) in mine {
            println!(
                "  {:<8} {} ({:.1} s): {}",
                o.verdict.label(),
                m.name,
                o.took.as_secs_f64(),
                m.mistake
            );
            if o.verdict != Verdict::Caught {
                println!("           mutant: {}", m.file.display());
                if !o.failed.is_empty() {
                    println!("           failing tests: {}", o.failed.join(", "));
                }
            }
            for line in shown_lines(&o.message, o.verdict) {
                println!("           | {line}");
            }
            if o.verdict != Verdict::Caught {
                let why = o.message.lines().next().unwrap_or_default();
                not_caught.push(format!(
                    "  {:<8} {} {}: {why}",
                    o.verdict.label(),
                    lab.name(),
                    m.name
                ));
            }
            ok &= o.verdict == Verdict::Caught;
        }
        if plan.only.is_none() && total < MIN_MUTANTS {
            println!(
                "  too few mutants: {total} in {}, at least {MIN_MUTANTS} wanted (every lesson of the chapter needs its mistakes)",
                zoo_dir(lab).display()
            );
            ok = false;
        }
    }
    if !not_caught.is_empty() {
        println!("not caught ({}; each is shown in full above):", not_caught.len());
        for line in &not_caught {
            println!("{line}");
        }
    }
    println!(
        "mutants: {} run in {:.0} s, {} at once; {}",
        outcomes.len(),
        started.elapsed().as_secs_f64(),
        jobs,
        if ok { "all caught" } else { "FAILED" }
    );
    Ok(ok)
}

/// Which mutant each job runs next. A job stays with one lab as long as that lab has mutants
/// left: its scratch copy then builds each lab's package from nothing once, and every later
/// build of it is a small incremental one. A job whose lab is done takes the lab with the most
/// mutants left per job already on it, and joins a lab another job has begun only if enough
/// are left to pay for the fresh build.
#[derive(Debug)]
struct Schedule {
    /// Per lab, in the order the labs came: its number, the queue indices of its mutants not
    /// yet taken, and how many jobs are on it.
    groups: Vec<(u32, VecDeque<usize>, usize)>,
}

/// A job joins a lab that another job has begun only if each job on it would still have this
/// many mutants to run: fewer do not repay the build of the lab in a fresh scratch copy.
const JOIN_AT_LEAST: usize = 6;

impl Schedule {
    /// A schedule of the mutants whose labs, in queue order, are `labs`.
    fn new(labs: impl IntoIterator<Item = u32>) -> Schedule {
        let mut groups: Vec<(u32, VecDeque<usize>, usize)> = Vec::new();
        for (i, number) in labs.into_iter().enumerate() {
            match groups.iter_mut().find(|(n, _, _)| *n == number) {
                Some((_, left, _)) => left.push_back(i),
                None => groups.push((number, VecDeque::from([i]), 0)),
            }
        }
        Schedule { groups }
    }

    /// The next mutant for a job that last ran one of group `current`: `(group, queue index)`,
    /// or `None` when nothing is left for it.
    fn take(&mut self, current: Option<usize>) -> Option<(usize, usize)> {
        if let Some(g) = current {
            if let Some(i) = self.groups[g].1.pop_front() {
                return Some((g, i));
            }
            self.groups[g].2 -= 1;
        }
        // A lab nobody has begun, the largest first; else the one with most left per job.
        let fresh = (0..self.groups.len())
            .filter(|&g| self.groups[g].2 == 0 && !self.groups[g].1.is_empty())
            .max_by_key(|&g| (self.groups[g].1.len(), std::cmp::Reverse(g)));
        let g = fresh.or_else(|| {
            (0..self.groups.len())
                .filter(|&g| self.groups[g].1.len() / (self.groups[g].2 + 1) >= JOIN_AT_LEAST)
                .max_by_key(|&g| {
                    (
                        self.groups[g].1.len() / (self.groups[g].2 + 1),
                        std::cmp::Reverse(g),
                    )
                })
        })?;
        self.groups[g].2 += 1;
        let i = self.groups[g].1.pop_front()?;
        Some((g, i))
    }

    /// Forgets every mutant not yet taken (after an error that stops the run).
    fn clear(&mut self) {
        for (_, left, _) in &mut self.groups {
            left.clear();
        }
    }
}

/// The lines of a failure message worth showing: for a caught mutant, a transcript's `Got:` and
/// `Why:` lines (its steps are long and the same for every mutant a test catches), else its
/// first three lines; the first twelve lines otherwise.
fn shown_lines(message: &str, verdict: Verdict) -> Vec<&str> {
    if verdict != Verdict::Caught {
        return message.lines().take(12).collect();
    }
    let verdict_lines: Vec<&str> = message
        .lines()
        .filter(|l| l.starts_with("Got:") || l.starts_with("Why:"))
        .collect();
    if verdict_lines.is_empty() {
        message.lines().take(3).collect()
    } else {
        verdict_lines
    }
}

/// Makes `scratch` a copy of the course's files (without build output), writing only the files
/// that differ so cargo's fingerprints stay valid between runs.
fn prepare(root: &Path, scratch: &Path) -> Result<()> {
    for rel in handout::repository_files(root)? {
        if rel.starts_with("book/") || rel.starts_with(".git") {
            continue;
        }
        let from = root.join(&rel);
        let to = scratch.join(&rel);
        let data = std::fs::read(&from).with_context(|| format!("cannot read {}", from.display()))?;
        if std::fs::read(&to).is_ok_and(|old| old == data) {
            continue;
        }
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&to, data).with_context(|| format!("cannot write {}", to.display()))?;
    }
    Ok(())
}

/// Builds and runs the suite of `lab` in `scratch` with `mutant` in place of the skeleton.
fn run_one(root: &Path, scratch: &Path, lab: &Lab, mutant: &Mutant) -> Result<Outcome> {
    let no_build = |message: String| Outcome {
        verdict: Verdict::NoBuild,
        took: Duration::ZERO,
        build: Duration::ZERO,
        failed: Vec::new(),
        message,
    };
    let mutated = match apply(root, lab, mutant) {
        Ok(text) => text,
        Err(e) => return Ok(no_build(format!("{e:#}"))),
    };
    let lib = scratch.join(lab.lab_dir()).join("src/lib.rs");
    std::fs::write(&lib, mutated).with_context(|| format!("cannot write {}", lib.display()))?;
    let package = lab.lab_package();
    let building = Instant::now();
    // Unoptimised and without debug info: the mutant's package is built for one run.
    let mut built = runner::build_in(
        scratch,
        std::slice::from_ref(&package),
        Some(&scratch.join("target")),
        &[
            format!("profile.dev.package.{package}.opt-level=0"),
            format!("profile.dev.package.{package}.debug=false"),
        ],
    )?;
    let build = building.elapsed();
    let suite = match built.remove(&package) {
        Some(Ok(suite)) => suite,
        Some(Err(errors)) => return Ok(no_build(errors)),
        None => bail!("cargo built no suite for {package}"),
    };
    let started = Instant::now();
    let Some(run) = run_bounded(&suite.executable, &suite.dir, &mutant.caught_by, HUNG_SUITE)? else {
        return Ok(Outcome {
            verdict: Verdict::Hung,
            took: started.elapsed(),
            build,
            failed: Vec::new(),
            message: format!("the suite was still running after {} s", HUNG_SUITE.as_secs()),
        });
    };
    Ok(Outcome {
        build,
        ..judge(mutant, &run, started.elapsed())
    })
}

/// The verdict on one suite run of a mutant.
fn judge(mutant: &Mutant, run: &SuiteRun, took: Duration) -> Outcome {
    let failed: Vec<String> = run
        .results
        .iter()
        .filter(|(_, ok)| !**ok)
        .map(|(name, _)| name.clone())
        .collect();
    let outcome = |verdict, message: String| Outcome {
        verdict,
        took,
        build: Duration::ZERO,
        failed: failed.clone(),
        message,
    };
    if !run.compiled {
        return outcome(
            Verdict::Hung,
            "the suite printed no result (it crashed)".to_owned(),
        );
    }
    if failed.is_empty() {
        return outcome(
            Verdict::Escaped,
            format!(
                "{} passed: the suite misses this mistake",
                mutant.caught_by.join(", ")
            ),
        );
    }
    let not_failed: Vec<&String> = mutant.caught_by.iter().filter(|t| !failed.contains(t)).collect();
    if !not_failed.is_empty() {
        let first = &failed[0];
        return outcome(
            Verdict::Missed,
            format!(
                "expected {} to fail; it did not. {first} failed with:\n{}",
                not_failed
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                run.failures.get(first).map_or("", String::as_str)
            ),
        );
    }
    let named = &mutant.caught_by[0];
    let message = run.failures.get(named).cloned().unwrap_or_default();
    if !message.contains(&mutant.expect) {
        return outcome(
            Verdict::Missed,
            format!(
                "{named} failed, but its message lacks \"{}\":\n{message}",
                mutant.expect
            ),
        );
    }
    if took > SLOW_SUITE {
        return outcome(
            Verdict::Slow,
            format!(
                "the suite took {:.1} s (at most {} s); {named}:\n{message}",
                took.as_secs_f64(),
                SLOW_SUITE.as_secs()
            ),
        );
    }
    outcome(Verdict::Caught, format!("{named}: {message}"))
}

/// Runs the tests of a suite executable whose names contain one of `tests` (libtest's filters),
/// in `dir`, for at most `limit`; `None` if it had to be killed. The suite runs in a process
/// group of its own, so the servers it spawned die with it.
fn run_bounded(executable: &Path, dir: &Path, tests: &[String], limit: Duration) -> Result<Option<SuiteRun>> {
    let mut cmd = Command::new(executable);
    cmd.current_dir(dir)
        .args(["--color", "never", "--format", "pretty"])
        .args(tests)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", executable.display()))?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        text
    });
    let status = child.wait_timeout(limit)?;
    if status.is_none() {
        kill_group(&mut child);
    }
    let text = reader.join().unwrap_or_default();
    Ok(status.map(|_| runner::parse(&String::from_utf8_lossy(&text))))
}

/// Kills a suite and everything it started, and reaps it.
fn kill_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "Mistake: adds instead of multiplying\nCaught-by: step1_mul, step1_more\nExpect: 2 * 3\nA note.\n--- a/solutions/01-x/src/lib.rs\n+++ b/solutions/01-x/src/lib.rs\n@@ -1,3 +1,3 @@\n fn f(a: u8, b: u8) -> u8 {\n-    a * b\n+    a + b\n }\n";

    #[test]
    fn reads_the_header_and_the_diff() {
        let m = parse("add", Path::new("x.patch"), FILE).expect("parses");
        assert_eq!(m.mistake, "adds instead of multiplying");
        assert_eq!(m.caught_by, ["step1_mul", "step1_more"]);
        assert_eq!(m.expect, "2 * 3");
        assert!(m.diff.starts_with("--- a/"));
        let patch = diffy::Patch::from_str(&m.diff).expect("diff parses");
        let base = "fn f(a: u8, b: u8) -> u8 {\n    a * b\n}\n";
        assert_eq!(
            diffy::apply(base, &patch).expect("applies"),
            "fn f(a: u8, b: u8) -> u8 {\n    a + b\n}\n"
        );
    }

    #[test]
    fn a_header_line_missing_is_an_error() {
        let text = FILE.replace("Expect: 2 * 3\n", "");
        let err = parse("add", Path::new("x.patch"), &text).expect_err("no Expect");
        assert!(err.to_string().contains("Expect:"), "{err}");
        assert!(parse("add", Path::new("x.patch"), "Mistake: x\n").is_err());
    }

    fn run_of(results: &[(&str, bool, &str)]) -> SuiteRun {
        let mut run = SuiteRun {
            compiled: true,
            ..SuiteRun::default()
        };
        for (name, ok, message) in results {
            run.results.insert((*name).to_owned(), *ok);
            if !ok {
                run.failures.insert((*name).to_owned(), (*message).to_owned());
            }
        }
        run
    }

    #[test]
    fn the_verdicts() {
        let m = parse("add", Path::new("x.patch"), FILE).expect("parses");
        let quick = Duration::from_secs(1);
        let all_pass = run_of(&[("step1_mul", true, ""), ("step1_more", true, "")]);
        assert_eq!(judge(&m, &all_pass, quick).verdict, Verdict::Escaped);
        let caught = run_of(&[
            ("step1_mul", false, "expected 2 * 3 = 6, got 5"),
            ("step1_more", false, "no"),
        ]);
        assert_eq!(judge(&m, &caught, quick).verdict, Verdict::Caught);
        assert_eq!(judge(&m, &caught, SLOW_SUITE * 2).verdict, Verdict::Slow);
        let wrong_message = run_of(&[("step1_mul", false, "boom"), ("step1_more", false, "no")]);
        assert_eq!(judge(&m, &wrong_message, quick).verdict, Verdict::Missed);
        let other_test = run_of(&[("step1_mul", false, "2 * 3"), ("step1_more", true, "")]);
        assert_eq!(judge(&m, &other_test, quick).verdict, Verdict::Missed);
    }

    #[test]
    fn a_job_stays_with_its_lab_and_joins_another_only_when_it_pays() {
        // Lab 1: 3 mutants, lab 2: 20, lab 3: 2; two jobs.
        let labs: Vec<u32> = [1; 3].into_iter().chain([2; 20]).chain([3; 2]).collect();
        let mut s = Schedule::new(labs);
        // The largest lab first, then the next largest nobody has begun.
        let (a, i) = s.take(None).expect("a mutant");
        assert_eq!((a, i), (1, 3));
        let (b, j) = s.take(None).expect("a mutant");
        assert_eq!((b, j), (0, 0));
        // Each job stays with its lab.
        assert_eq!(s.take(Some(a)), Some((1, 4)));
        assert_eq!(s.take(Some(b)), Some((0, 1)));
        assert_eq!(s.take(Some(b)), Some((0, 2)));
        // Lab 1 is done: the job takes lab 3, which nobody has begun, before joining lab 2.
        assert_eq!(s.take(Some(b)), Some((2, 23)));
        assert_eq!(s.take(Some(2)), Some((2, 24)));
        // Lab 3 is done: 18 mutants of lab 2 are left, 9 per job once it joins: it joins.
        assert_eq!(s.take(Some(2)), Some((1, 5)));
        // Take lab 2 down to 10 left, with two jobs on it: 3 per job is not worth a third job.
        for _ in 0..7 {
            assert!(s.take(Some(1)).is_some());
        }
        assert_eq!(s.groups[1].1.len(), 10);
        assert_eq!(s.take(None), None);
        // Every mutant is taken exactly once.
        let mut rest = Vec::new();
        while let Some((g, i)) = s.take(Some(1)) {
            assert_eq!(g, 1);
            rest.push(i);
        }
        assert_eq!(rest, (13..23).collect::<Vec<_>>());
    }
}
