//! The course tool, run as `cargo lab <command>` (an alias in `.cargo/config.toml`).
//!
//! Students: `status`, `test N`, `hint N [STEP]`, `demo N`, `reset N`. Instructors: `grade`,
//! `handout DIR`, `relay`. Maintainers: `sync [--check]`, `verify`. The labs, steps, points and hints come from `tests/labs/NN-slug.toml`.

mod classroom;
mod grade;
mod handout;
mod manifest;
mod runner;
mod sync;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use manifest::{Lab, Manifest};
use runner::SuiteRun;

/// The sockets course tool: your progress, a lab's tests, hints and demos.
///
/// Start with `cargo lab status`.
#[derive(Debug, Parser)]
#[command(name = "cargo lab", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Your progress over all labs: tests passing per lab and step, and what to do next.
    Status,
    /// Run a lab's grading suite on your code and explain each failure.
    Test {
        /// The lab number, e.g. 1.
        lab: u32,
        /// Only this step's tests.
        #[arg(long)]
        step: Option<usize>,
        /// Run the suite on the reference solution instead (instructors).
        #[arg(long)]
        solution: bool,
    },
    /// Show the next hint for a step (the first unfinished step if none is given).
    Hint {
        /// The lab number.
        lab: u32,
        /// The step number.
        step: Option<usize>,
        /// Show all of the step's hints at once.
        #[arg(long)]
        all: bool,
    },
    /// Put a lab back to its generated skeleton; your files are saved in lab-backups/ first.
    Reset {
        /// The lab number.
        lab: u32,
    },
    /// Grade every lab's suite on the student's code, with points from the manifests (instructors).
    Grade {
        /// Also write the grades as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Also write the results as JUnit XML to this file.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Write a student copy of the course into DIR: no solutions, no instructor pages (instructors).
    Handout {
        /// A new (or empty) folder.
        dir: PathBuf,
    },
    /// Run the reference server and clients of a lab on loopback and show the exchange.
    Demo {
        /// The lab number.
        lab: u32,
    },
    /// Put a lossy UDP relay in front of a server on loopback, to watch retransmission work.
    ///
    /// Send to the relay's address (its ready line) instead of the server's, for example
    /// `cargo lab relay --server 127.0.0.1:6789 --drop 0.5` then
    /// `cargo run -p lab01-udp -- client --server 127.0.0.1:RELAYPORT hello`.
    Relay {
        /// The server's endpoint (a loopback address).
        #[arg(long, value_name = "HOST:PORT", value_parser = common::endpoint::parse)]
        server: common::endpoint::Endpoint,
        /// Drop the first N client datagrams.
        #[arg(long, default_value_t = 0, value_name = "N")]
        drop_first: u64,
        /// Probability (0 to 1) of dropping each datagram, both ways.
        #[arg(long, default_value_t = 0.0, value_parser = probability)]
        drop: f64,
        /// Probability (0 to 1) of delivering a datagram twice, both ways.
        #[arg(long, default_value_t = 0.0, value_parser = probability)]
        duplicate: f64,
        /// Delay added to every datagram, in milliseconds.
        #[arg(long, default_value_t = 0, value_name = "MS")]
        delay: u64,
        /// Seed of the fault generator: the same seed replays the same faults.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 600, value_name = "SECONDS")]
        duration: u64,
    },
    /// Regenerate the student skeletons in labs/ from solutions/ (maintainers).
    Sync {
        /// Change nothing; fail if labs/ differs from what would be generated.
        #[arg(long)]
        check: bool,
        /// Only this lab (default: all).
        #[arg(long, value_name = "N")]
        lab: Option<u32>,
    },
    /// Prove every suite test fails on the skeleton and passes on the solution (maintainers).
    Verify {
        /// Only this lab (default: all).
        #[arg(long, value_name = "N")]
        lab: Option<u32>,
    },
}

/// The repository root (the folder holding `tests/labs/`): the parent of this package's folder.
///
/// Taken from `CARGO_MANIFEST_DIR` at run time (`cargo run`, so `cargo lab`, and `cargo test`
/// set it), falling back to where the binary was compiled. The run-time value matters when two
/// checkouts share a target folder: the binary there may have been built from the other one.
pub(crate) fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn main() -> ExitCode {
    // `cargo lab status | head` closes the pipe early; Rust ignores SIGPIPE, so `println!` would
    // panic. Stop quietly instead, as a command-line tool in a pipeline should.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command; `Ok(false)` means it ran and reports failure (tests failing, out of sync).
fn run(command: Cmd) -> Result<bool> {
    let root = root();
    let manifest = Manifest::load(&root)?;
    match command {
        Cmd::Status => status(&root, &manifest),
        Cmd::Test { lab, step, solution } => test(&root, manifest.lab(lab)?, step, solution),
        Cmd::Hint { lab, step, all } => hint(&root, manifest.lab(lab)?, step, all),
        Cmd::Demo { lab } => demo(&root, manifest.lab(lab)?),
        Cmd::Reset { lab } => {
            let lab = manifest.lab(lab)?;
            let backup = handout::reset(&root, lab)?;
            println!(
                "{} is back to its skeleton; your files are in {}",
                lab.name(),
                backup.display()
            );
            Ok(true)
        }
        Cmd::Grade { json, junit } => grade::command(&root, &manifest, json.as_deref(), junit.as_deref()),
        Cmd::Handout { dir } => {
            let n = handout::handout(&root, &manifest, &dir)?;
            println!("wrote a student handout of {n} files to {}", dir.display());
            println!(
                "next: cd {} && git init && git add -A && git commit -m 'Handout'",
                dir.display()
            );
            Ok(true)
        }
        Cmd::Sync { .. } | Cmd::Verify { .. } if !root.join("solutions").exists() => {
            bail!(
                "this is a student handout: sync and verify need the solutions/ folder, which it does not have"
            )
        }
        Cmd::Sync { check, lab } => sync_command(&root, &manifest, lab, check),
        Cmd::Verify { lab } => verify(&root, manifest.select(lab)?),
        Cmd::Relay {
            server,
            drop_first,
            drop,
            duplicate,
            delay,
            seed,
            duration,
        } => {
            let to_client = common::relay::Faults {
                drop,
                duplicate,
                delay: Duration::from_millis(delay),
                ..Default::default()
            };
            let to_server = common::relay::Faults {
                drop_first,
                ..to_client.clone()
            };
            relay(&server, to_server, to_client, seed, Duration::from_secs(duration))
        }
    }
}

fn probability(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("`{text}` is not a probability between 0 and 1")),
    }
}

fn relay(
    server: &common::endpoint::Endpoint,
    to_server: common::relay::Faults,
    to_client: common::relay::Faults,
    seed: u64,
    duration: Duration,
) -> Result<bool> {
    let target = server.addrs[0];
    let relay = common::relay::UdpRelay::start(target, to_server, to_client, seed)
        .with_context(|| format!("cannot start a relay to {target}"))?;
    common::ready::announce(relay.addr())?;
    eprintln!(
        "relaying to {target} for {} s (Ctrl-C stops it); seed {seed}",
        duration.as_secs()
    );
    let deadline = Instant::now() + duration;
    let mut reported = (0, 0);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let stats = relay.stats();
        let now = (stats.forwarded.load(Relaxed), stats.dropped.load(Relaxed));
        if now != reported {
            eprintln!("forwarded {} datagrams, dropped {}", now.0, now.1);
            reported = now;
        }
    }
    Ok(true)
}

/// Runs a suite behind a spinner (shown only on a terminal).
pub(crate) fn run_with_spinner(root: &Path, package: &str, filter: Option<&str>) -> Result<SuiteRun> {
    let spinner = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").context("spinner style")?)
        .with_message(format!("building and testing {package}"));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let run = runner::run_suite(root, package, filter);
    spinner.finish_and_clear();
    run
}

/// Prints a lab's progress row: an indicatif bar on a terminal, plain text elsewhere (indicatif
/// draws nothing when stdout is not a terminal, so pipes and CI logs get the text form).
fn lab_row(lab: &Lab, run: &SuiteRun, state: &str) -> Result<()> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        let pb =
            ProgressBar::with_draw_target(Some(run.total() as u64), indicatif::ProgressDrawTarget::stdout())
                .with_style(
                    ProgressStyle::with_template("{prefix}  {msg} [{bar:20.green/white}] {pos}/{len}")
                        .context("bar style")?
                        .progress_chars("=> "),
                )
                .with_prefix(lab.name())
                .with_message(format!("{:<36} {state}", lab.title));
        pb.set_position(run.passed() as u64);
        pb.finish();
    } else {
        println!(
            "{}  {:<38} {} {state}",
            lab.name(),
            lab.title,
            bar(run.passed(), run.total(), 20)
        );
    }
    Ok(())
}

fn bar(done: usize, total: usize, width: usize) -> String {
    let filled = (done * width).checked_div(total).unwrap_or(0);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

/// The first step of `lab` with a failing (or no) test, 1-based.
fn next_step(lab: &Lab, run: &SuiteRun) -> Option<usize> {
    (1..=lab.steps.len()).find(|&k| {
        let (passed, total) = run.step(k);
        total == 0 || passed < total
    })
}

fn status(root: &Path, manifest: &Manifest) -> Result<bool> {
    let mut next: Option<(&Lab, usize)> = None;
    let (mut passed_all, mut total_all, mut complete) = (0, 0, 0);
    let mut rows = Vec::new();
    for lab in &manifest.labs {
        let run = run_with_spinner(root, &lab.lab_package(), None)?;
        passed_all += run.passed();
        total_all += run.total();
        let step = next_step(lab, &run);
        if step.is_none() && run.compiled {
            complete += 1;
        } else if next.is_none() {
            next = Some((lab, step.unwrap_or(1)));
        }
        rows.push((lab, run, step));
    }
    println!(
        "Course progress {} {passed_all}/{total_all} tests, {complete} of {} labs complete\n",
        bar(passed_all, total_all, 30),
        manifest.labs.len()
    );
    for (lab, run, step) in &rows {
        let state = if !run.compiled {
            "does not compile".to_owned()
        } else if step.is_none() {
            "complete".to_owned()
        } else {
            format!("{}/{} tests", run.passed(), run.total())
        };
        let earned: u32 = (1..=lab.steps.len())
            .filter(|&k| matches!(run.step(k), (p, t) if t > 0 && p == t))
            .map(|k| lab.steps[k - 1].points)
            .sum();
        let state = format!("{state}, {earned}/{} points", lab.points());
        lab_row(lab, run, &state)?;
        if !run.compiled {
            println!("        {}", run.compile_errors.replace('\n', "\n        "));
            continue;
        }
        for (k, s) in lab.steps.iter().enumerate() {
            let (p, t) = run.step(k + 1);
            let mark = if t > 0 && p == t { "done" } else { "    " };
            let label = format!("step {}:", k + 1);
            println!("        {mark} {label:<8} {:<52} {p}/{t}", s.title);
        }
    }
    println!();
    match next {
        None => println!("All labs complete. Well done! Try the questions at the end of each chapter."),
        Some((lab, k)) => {
            let step = &lab.steps[k - 1];
            println!("Next: {} step {k}: {}", lab.name(), step.title);
            println!(
                "  Read:  book/src/{}#{} (mdbook serve book)",
                lab.chapter, step.section
            );
            println!(
                "  Edit:  {}/src/lib.rs, the todo!(\"lab {:02} step {k}: ...\")",
                lab.lab_dir().display(),
                lab.number
            );
            println!(
                "  Check: cargo test -p {} step{k}_   (or: cargo lab test {} --step {k})",
                lab.lab_package(),
                lab.number
            );
            println!("  Stuck: cargo lab hint {} {k}", lab.number);
        }
    }
    Ok(true)
}

fn test(root: &Path, lab: &Lab, step: Option<usize>, solution: bool) -> Result<bool> {
    if let Some(k) = step {
        ensure!(
            (1..=lab.steps.len()).contains(&k),
            "{} has steps 1 to {}",
            lab.name(),
            lab.steps.len()
        );
    }
    let package = if solution {
        lab.solution_package()
    } else {
        lab.lab_package()
    };
    let filter = step.map(Lab::step_prefix);
    let run = run_with_spinner(root, &package, filter.as_deref())?;
    if !run.compiled {
        println!("{package} does not compile:\n{}", run.compile_errors);
        return Ok(false);
    }
    for (k, s) in lab.steps.iter().enumerate() {
        let (p, t) = run.step(k + 1);
        if t == 0 {
            continue;
        }
        println!("Step {}: {} ({p}/{t})", k + 1, s.title);
        for (name, ok) in run.results.iter().filter(|(n, _)| Lab::step_of(n) == Some(k + 1)) {
            println!("  {} {name}", if *ok { "pass" } else { "FAIL" });
            if let Some(why) = run.failures.get(name) {
                for line in why.lines().take(8) {
                    println!("         {line}");
                }
            }
        }
    }
    println!("\n{} of {} tests pass.", run.passed(), run.total());
    let next = match step {
        Some(k) => Some(k).filter(|_| run.passed() < run.total()),
        None => next_step(lab, &run).filter(|_| run.passed() < run.total()),
    };
    match next {
        None if step.is_some() => println!("This step is complete."),
        None => println!("{} is complete.", lab.name()),
        Some(k) => println!(
            "Work on step {k}: read book/src/{}#{}; a hint: cargo lab hint {} {k}",
            lab.chapter,
            lab.steps[k - 1].section,
            lab.number
        ),
    }
    Ok(run.passed() == run.total())
}

fn hint(root: &Path, lab: &Lab, step: Option<usize>, all: bool) -> Result<bool> {
    let k = match step {
        Some(k) => k,
        None => {
            let run = run_with_spinner(root, &lab.lab_package(), None)?;
            match next_step(lab, &run) {
                Some(k) => k,
                None => {
                    println!(
                        "{} is complete; name a step to see its hints: cargo lab hint {} STEP",
                        lab.name(),
                        lab.number
                    );
                    return Ok(true);
                }
            }
        }
    };
    let s = lab
        .steps
        .get(k.wrapping_sub(1))
        .with_context(|| format!("{} has steps 1 to {}", lab.name(), lab.steps.len()))?;
    ensure!(!s.hints.is_empty(), "{} step {k} has no hints", lab.name());
    // Hints are shown one at a time; how many were shown is kept under target/.
    let state = root
        .join("target/course-hints")
        .join(format!("{:02}-{k}", lab.number));
    let shown: usize = std::fs::read_to_string(&state)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    let upto = if all {
        s.hints.len()
    } else {
        (shown + 1).min(s.hints.len())
    };
    println!("{} step {k}: {}", lab.name(), s.title);
    for (i, h) in s.hints.iter().enumerate().take(upto) {
        println!("  Hint {} of {}: {h}", i + 1, s.hints.len());
    }
    if upto < s.hints.len() {
        println!("  (run the same command again for the next hint)");
    }
    println!("  Read: book/src/{}#{}", lab.chapter, s.section);
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    std::fs::write(&state, upto.to_string()).ok();
    Ok(true)
}

/// The path of a workspace binary after `cargo build -p <package>`.
fn built_binary(root: &Path, package: &str) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--quiet", "-p", package])
        .status()
        .context("cannot run cargo build")?;
    ensure!(status.success(), "cargo build -p {package} failed");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target
        .join("debug")
        .join(format!("{package}{}", std::env::consts::EXE_SUFFIX)))
}

fn demo(root: &Path, lab: &Lab) -> Result<bool> {
    let demo = lab
        .demo
        .as_ref()
        .with_context(|| format!("{} has no demo", lab.name()))?;
    // The reference when it is there; in a student handout, the student's own lab.
    let package = if root.join(lab.solution_dir()).exists() {
        lab.solution_package()
    } else {
        lab.lab_package()
    };
    let bin = built_binary(root, &package)?;
    let Some(server_args) = &demo.server else {
        return demo_runs(&bin, &package, &demo.clients, None, demo.parallel);
    };
    println!("$ {package} {}", command_line(server_args));
    let mut server = Command::new(&bin)
        .args(server_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let result = ready_endpoint(&mut server)
        .and_then(|addr| demo_runs(&bin, &package, &demo.clients, Some(addr), demo.parallel));
    // Let the server write its last log lines before it is stopped.
    std::thread::sleep(Duration::from_millis(100));
    let _ = server.kill();
    let _ = server.wait();
    if let Some(err) = server.stderr.take() {
        println!("\nthe server's log (stderr):");
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            println!("  {line}");
        }
    }
    result
}

/// Waits up to 10 s for the server's ready line, prints it and returns its endpoint.
fn ready_endpoint(server: &mut std::process::Child) -> Result<std::net::SocketAddr> {
    let out = server.stdout.take().context("server stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .context("the server printed no ready line within 10 s")?;
    print!("{line}");
    common::ready::parse(&line).with_context(|| format!("not a ready line: {line:?}"))
}

/// Runs the demo's clients (or peers) one after the other, or all at once with `parallel`, and
/// prints each one's command, output and exit status.
fn demo_runs(
    bin: &Path,
    package: &str,
    runs: &[Vec<String>],
    addr: Option<std::net::SocketAddr>,
    parallel: bool,
) -> Result<bool> {
    let runs: Vec<Vec<String>> = runs
        .iter()
        .map(|args| {
            let endpoint = addr.map(|a| a.to_string()).unwrap_or_default();
            args.iter().map(|a| a.replace("{addr}", &endpoint)).collect()
        })
        .collect();
    let start = |args: &Vec<String>| {
        Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start a demo run")
    };
    let mut ok = true;
    let mut report = |args: &Vec<String>, child: std::process::Child, started: Instant| -> Result<()> {
        let output = child.wait_with_output().context("a demo run failed")?;
        println!("\n$ {package} {}", command_line(args));
        print!("{}", String::from_utf8_lossy(&output.stdout));
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        println!(
            "  ({} ms, exit status {})",
            started.elapsed().as_millis(),
            output.status.code().unwrap_or(-1)
        );
        ok &= output.status.success();
        Ok(())
    };
    let started = Instant::now();
    if parallel {
        let children = runs.iter().map(start).collect::<Result<Vec<_>>>()?;
        for (args, child) in runs.iter().zip(children) {
            report(args, child, started)?;
        }
    } else {
        for args in &runs {
            report(args, start(args)?, Instant::now())?;
        }
    }
    Ok(ok)
}

fn command_line(args: &[String]) -> String {
    args.iter().map(|a| shell_word(a)).collect::<Vec<_>>().join(" ")
}

fn shell_word(arg: &str) -> String {
    if arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:/[]".contains(c))
    {
        arg.to_owned()
    } else {
        format!("\"{arg}\"")
    }
}

fn sync_command(root: &Path, manifest: &Manifest, lab: Option<u32>, check: bool) -> Result<bool> {
    let mut stale = sync::sync(root, manifest.select(lab)?, check)?;
    if lab.is_none() {
        // The GitHub Classroom files follow every lab's points.
        stale.extend(sync::write_or_check(root, classroom::generate(manifest), check)?);
    }
    if stale.is_empty() {
        let what = if lab.is_some() {
            "the lab"
        } else {
            "labs/ and the classroom files"
        };
        println!("{what}: in sync with solutions/ and the manifests");
        return Ok(true);
    }
    for path in &stale {
        println!(
            "{} {}",
            if check { "out of date:" } else { "wrote" },
            path.display()
        );
    }
    if check {
        println!("labs/ differs from what solutions/ generates: run `cargo lab sync` and commit the result");
    }
    Ok(!check)
}

fn verify(root: &Path, labs: &[Lab]) -> Result<bool> {
    let stale = sync::sync(root, labs, true)?;
    if !stale.is_empty() {
        bail!(
            "labs/ is not the freshly generated skeleton ({} files differ); run `cargo lab sync` first",
            stale.len()
        );
    }
    let mut ok = true;
    for lab in labs {
        let solution = run_with_spinner(root, &lab.solution_package(), None)?;
        let skeleton = run_with_spinner(root, &lab.lab_package(), None)?;
        let mut problems = Vec::new();
        if !solution.compiled || !skeleton.compiled {
            problems.push(format!(
                "does not compile: {}{}",
                solution.compile_errors, skeleton.compile_errors
            ));
        }
        if solution.total() == 0 {
            problems.push("the suite has no tests".to_owned());
        }
        for (name, passed) in &solution.results {
            if !passed {
                problems.push(format!(
                    "{name} fails on the solution: {}",
                    solution.failures.get(name).map_or("", |s| s.as_str())
                ));
            }
            match skeleton.results.get(name) {
                Some(false) => {}
                Some(true) => problems.push(format!(
                    "{name} passes on the skeleton: it checks nothing the student writes"
                )),
                None => problems.push(format!("{name} did not run on the skeleton")),
            }
            match Lab::step_of(name) {
                Some(k) if (1..=lab.steps.len()).contains(&k) => {}
                _ => problems.push(format!(
                    "{name} belongs to no step of the manifest (name it stepK_...)"
                )),
            }
        }
        for k in 1..=lab.steps.len() {
            if solution.step(k).1 == 0 {
                problems.push(format!("step {k} has no tests"));
            }
        }
        println!(
            "{}: solution passes {}/{}, skeleton fails {}/{}, {} steps",
            lab.name(),
            solution.passed(),
            solution.total(),
            skeleton.total() - skeleton.passed(),
            skeleton.total(),
            lab.steps.len()
        );
        for p in &problems {
            println!("  problem: {p}");
        }
        ok &= problems.is_empty();
    }
    println!("{}", if ok { "verify: ok" } else { "verify: FAILED" });
    Ok(ok)
}
