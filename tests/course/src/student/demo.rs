//! `cargo lab demo N [--mine]`: the lab's server and clients (from the manifest's `[demo]`) on
//! loopback, with their commands, output and the server's log.
//!
//! A demo is one or more scenes (`[demo]`, then each `[[demo.then]]`), run one after the other
//! under their `== title ==` headings. Each scene starts its own server and waits for its ready
//! line, optionally puts a seeded lossy relay (`common::relay::UdpRelay`, in this process) in
//! front of it and shows the relay's faults, runs the clients (`{addr}`: the server, `{relay}`:
//! the relay), shows the relay's counters, then stops the server and shows its log.
//!
//! Where the reference solutions are (the course repository), `demo N` runs them. A student
//! handout has no solution code, so `cargo lab handout` records each demo (every scene) from a
//! real run of the reference into [`RECORDINGS`], and a handout's `demo N` replays that
//! recording, labelled as one. `demo N --mine` runs the same scenes with the student's own
//! binary, to compare; on an unfinished lab it says which part did not work, not a panic.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use common::relay::UdpRelay;

use crate::manifest::{self, Demo, Lab, Scene};

/// Where a handout keeps the recorded demos, relative to its root: `NN-slug.txt` each.
pub const RECORDINGS: &str = ".course/demos";

/// How long a demo's server may take to print its ready line: 10 000 ms.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// How long one client (or peer) run of a demo may take before it is stopped: 30 000 ms.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// How long a relay's counters must stay unchanged before the demo shows them: 50 ms.
const SETTLE: Duration = Duration::from_millis(50);

/// The longest a demo waits for a relay's counters to settle: 1 000 ms.
const SETTLE_WITHIN: Duration = Duration::from_secs(1);

/// Runs `cargo lab demo N [--mine]`.
pub fn command(root: &Path, lab: &Lab, mine: bool) -> Result<bool> {
    let demo = lab
        .demo
        .as_ref()
        .with_context(|| format!("{} has no demo", lab.name()))?;
    if mine {
        println!(
            "Your own {} programs ({}), in the exchange of `cargo lab demo {}`:\n",
            lab.name(),
            lab.lab_package(),
            lab.number
        );
        let (text, ok) = run(root, &lab.lab_package(), demo)?;
        print!("{text}");
        if !ok {
            println!(
                "\nYour programs did not complete the demo yet: `cargo lab status` shows which step is next."
            );
        }
        return Ok(ok);
    }
    if root.join(lab.solution_dir()).exists() {
        let (text, ok) = run(root, &lab.solution_package(), demo)?;
        print!("{text}");
        return Ok(ok);
    }
    let file = root.join(RECORDINGS).join(format!("{}.txt", lab.dir_name()));
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "no recorded demo at {} (a handout made by `cargo lab handout` has one per lab); \
             `cargo lab demo {} --mine` runs your own programs",
            file.display(),
            lab.number
        )
    })?;
    println!(
        "A recording of the reference solution (this copy of the course has no solution code).\n\
         `cargo lab demo {} --mine` runs the same exchange with your programs.\n",
        lab.number
    );
    print!("{text}");
    Ok(true)
}

/// Runs the demo of `lab` (all of its scenes) with the reference solution and returns its
/// transcript, for a handout's [`RECORDINGS`]; `None` when the lab has no demo.
///
/// # Errors
/// When the reference does not build, or its demo fails (a broken reference must not be
/// recorded).
pub fn record(root: &Path, lab: &Lab) -> Result<Option<String>> {
    let Some(demo) = &lab.demo else {
        return Ok(None);
    };
    let package = lab.solution_package();
    let (text, ok) = run(root, &package, demo)?;
    ensure!(
        ok,
        "the demo of {} failed with the reference {package}:\n{text}",
        lab.name()
    );
    // The student runs the same commands with their own package's name.
    Ok(Some(text.replace(&package, &lab.lab_package())))
}

/// Runs every scene of `demo` with `package`'s binary, one after the other; returns what they
/// showed and whether every scene succeeded (its server started, its relay too, and every run
/// exited with status 0). A scene that fails does not stop the next one.
///
/// # Errors
/// When the binary does not build, or a process cannot be started at all.
fn run(root: &Path, package: &str, demo: &Demo) -> Result<(String, bool)> {
    let bin = built_binary(root, package)?;
    let mut out = String::new();
    let mut ok = true;
    for (k, scene) in demo.scenes.iter().enumerate() {
        if k > 0 {
            out.push('\n');
        }
        if let Some(title) = &scene.title {
            let _ = writeln!(out, "== {title} ==\n");
        }
        ok &= run_scene(&mut out, &bin, package, scene)?;
    }
    Ok((out, ok))
}

/// Runs one scene: its server (started, ready line awaited, stopped and reaped, its log shown),
/// the relay in front of it, and its client runs. Returns whether all of that worked.
fn run_scene(out: &mut String, bin: &Path, package: &str, scene: &Scene) -> Result<bool> {
    let Some(server_args) = &scene.server else {
        return demo_runs(out, bin, package, &scene.clients, &[], scene.parallel);
    };
    let _ = writeln!(out, "$ {package} {}", command_line(server_args));
    // A panic (a skeleton's `todo!()`) shows as its message, not as a backtrace.
    let mut server = Command::new(bin)
        .args(server_args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let log = server.stderr.take().map(read_in_background);
    let ok = match ready_endpoint(&mut server) {
        Ok((line, addr)) => {
            out.push_str(&line);
            match &scene.relay {
                None => demo_runs(
                    out,
                    bin,
                    package,
                    &scene.clients,
                    &[("{addr}", addr)],
                    scene.parallel,
                )?,
                Some(relay) => relayed_runs(out, bin, package, scene, addr, relay)?,
            }
        }
        Err(why) => {
            let _ = writeln!(out, "(the server did not start: {why})");
            false
        }
    };
    // Let the server write its last log lines before it is stopped.
    std::thread::sleep(Duration::from_millis(100));
    let _ = server.kill();
    let _ = server.wait();
    if let Some(log) = log {
        let text = log.join().unwrap_or_default();
        out.push_str("\nthe server's log (stderr):\n");
        for line in text.trim_start_matches('\n').lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    Ok(ok)
}

/// Starts the scene's relay in front of the server at `addr` (the same faults both ways), runs
/// the clients with `{relay}` standing for the relay and `{addr}` for the server, then shows the
/// relay's counters. Returns whether the relay started and every run succeeded.
fn relayed_runs(
    out: &mut String,
    bin: &Path,
    package: &str,
    scene: &Scene,
    addr: SocketAddr,
    relay: &manifest::Relay,
) -> Result<bool> {
    let faults = relay.faults();
    let udp = match UdpRelay::start(addr, faults.clone(), faults, relay.seed) {
        Ok(udp) => udp,
        Err(e) => {
            let _ = writeln!(out, "(the relay did not start in front of {addr}: {e})");
            return Ok(false);
        }
    };
    let _ = writeln!(
        out,
        "relay {} before the server, both ways: {}, seed {}",
        udp.addr(),
        relay.describe(),
        relay.seed
    );
    let endpoints = [("{addr}", addr), ("{relay}", udp.addr())];
    let ok = demo_runs(out, bin, package, &scene.clients, &endpoints, scene.parallel)?;
    let (forwarded, dropped) = settled_counts(&udp);
    let _ = writeln!(
        out,
        "\nthe relay forwarded {forwarded} datagram{} and dropped {dropped}",
        if forwarded == 1 { "" } else { "s" }
    );
    Ok(ok)
}

/// The relay's counters (datagrams forwarded, dropped) once they have stopped changing: a
/// duplicate or a late reply may still be on its way when the last client exits. Waits for
/// [`SETTLE`] without a change, at most [`SETTLE_WITHIN`].
fn settled_counts(relay: &UdpRelay) -> (u64, u64) {
    let counts = || {
        let stats = relay.stats();
        (stats.forwarded.load(Relaxed), stats.dropped.load(Relaxed))
    };
    let deadline = Instant::now() + SETTLE_WITHIN;
    let mut last = counts();
    loop {
        std::thread::sleep(SETTLE);
        let now = counts();
        if now == last || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

/// Reads a pipe to its end on a thread of its own.
fn read_in_background(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
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
    let target = if target.is_absolute() {
        target
    } else {
        root.join(target)
    };
    Ok(target
        .join("debug")
        .join(format!("{package}{}", std::env::consts::EXE_SUFFIX)))
}

/// Waits up to [`READY_WITHIN`] for the server's ready line; returns it and its endpoint, or
/// why there is none (the server exited: a skeleton's `todo!()`, say).
fn ready_endpoint(server: &mut Child) -> Result<(String, SocketAddr)> {
    let out = server.stdout.take().context("server stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let Ok(line) = rx.recv_timeout(READY_WITHIN) else {
        bail!("it printed no ready line within {} s", READY_WITHIN.as_secs());
    };
    if line.is_empty() {
        let status = server.wait().ok().and_then(|s| s.code());
        bail!(
            "it exited (status {}) before printing its ready line; its log is below",
            status.map_or_else(|| "killed by a signal".to_owned(), |c| c.to_string())
        );
    }
    let addr = common::ready::parse(&line).with_context(|| format!("not a ready line: {line:?}"))?;
    Ok((line, addr))
}

/// Runs a scene's clients (or peers) one after the other, or all at once with `parallel`, and
/// writes each one's command, output and exit status to `out`. In their arguments, each
/// placeholder of `endpoints` (`{addr}`, `{relay}`) becomes its endpoint.
fn demo_runs(
    out: &mut String,
    bin: &Path,
    package: &str,
    runs: &[Vec<String>],
    endpoints: &[(&str, SocketAddr)],
    parallel: bool,
) -> Result<bool> {
    let runs: Vec<Vec<String>> = runs
        .iter()
        .map(|args| {
            args.iter()
                .map(|arg| {
                    endpoints
                        .iter()
                        .fold(arg.clone(), |arg, (placeholder, endpoint)| {
                            arg.replace(placeholder, &endpoint.to_string())
                        })
                })
                .collect()
        })
        .collect();
    let start = |args: &Vec<String>| {
        Command::new(bin)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start a demo run")
    };
    let mut ok = true;
    let mut report = |args: &Vec<String>, child: Child, started: Instant| -> Result<()> {
        let (stdout, stderr, status) = finish_within(child, RUN_LIMIT)?;
        let _ = writeln!(out, "\n$ {package} {}", command_line(args));
        out.push_str(&stdout);
        out.push_str(&stderr);
        match status {
            Some(code) => {
                let _ = writeln!(
                    out,
                    "  ({} ms, exit status {code})",
                    started.elapsed().as_millis()
                );
                ok &= code == 0;
            }
            None => {
                let _ = writeln!(out, "  (stopped after {} s)", RUN_LIMIT.as_secs());
                ok = false;
            }
        }
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

/// Waits for a run for at most `limit`, then kills it; its stdout, stderr and exit code (`None`
/// if it had to be stopped, `-1` when a signal ended it).
fn finish_within(mut child: Child, limit: Duration) -> Result<(String, String, Option<i32>)> {
    use wait_timeout::ChildExt;
    let stdout = child.stdout.take().map(read_in_background);
    let stderr = child.stderr.take().map(read_in_background);
    let status = child.wait_timeout(limit).context("waiting for a demo run")?;
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = |h: Option<std::thread::JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok((text(stdout), text(stderr), status.map(|s| s.code().unwrap_or(-1))))
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
