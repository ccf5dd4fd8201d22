//! `cargo lab demo N`: the lab's server and clients (from the manifest's `[demo]`) on loopback,
//! with their commands, output and the server's log.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::manifest::Lab;

/// Runs `cargo lab demo`.
pub fn command(root: &Path, lab: &Lab) -> Result<bool> {
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
