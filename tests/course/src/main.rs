//! The course tool, run as `cargo lab <command>` (an alias in `.cargo/config.toml`).
//!
//! Students: `status`, `watch`, `test N`, `hint N [STEP]`, `demo N`, `reset N` (in `student/`).
//! Instructors: `grade`, `handout DIR`, `relay` (in `instructor/`). Maintainers: `dev sync
//! [--check]`, `dev verify`, `dev check`, `dev soak` (in `dev/`). The clap definitions are in `cli.rs`; the
//! labs, steps, points and hints come from the manifests, `tests/NN-slug/lab.toml`.

mod cli;
mod dev;
mod instructor;
mod manifest;
mod runner;
mod student;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;

use cli::{Cli, Cmd, DevCmd};
use manifest::Manifest;

/// The repository root: the folder that holds `tests/NN-slug/lab.toml`.
///
/// Read at run time from `COURSE_ROOT`, which `.cargo/config.toml` sets (`[env]`, relative to
/// the repository, forced) for every `cargo run`, so `cargo lab`, and `cargo test`. Run time
/// matters when two checkouts share a target folder: the binary there may have been built in the
/// other one. Outside cargo, the current folder.
pub(crate) fn root() -> PathBuf {
    std::env::var_os("COURSE_ROOT")
        .filter(|r| !r.is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
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
    if matches!(command, Cmd::Dev(DevCmd::Check)) && root.join("solutions").exists() {
        // `dev check` reports a manifest that does not load as one of its problems.
        return dev::check::command(&root);
    }
    let manifest = Manifest::load(&root)
        .with_context(|| format!("{} does not look like the course repository", root.display()))?;
    match command {
        Cmd::Status => student::status::command(&root, &manifest),
        Cmd::Watch { lab, manual_run } => student::watch::command(&root, &manifest, lab, manual_run),
        Cmd::Test {
            lab,
            step,
            all,
            solution,
        } => student::test::command(&root, manifest.lab(lab)?, step, all, solution),
        Cmd::Hint { lab, step, all } => student::hint::command(&root, manifest.lab(lab)?, step, all),
        Cmd::Demo { lab, mine } => student::demo::command(&root, manifest.lab(lab)?, mine),
        Cmd::Reset { lab, yes } => student::reset::command(&root, manifest.lab(lab)?, yes),
        Cmd::Restore { backup } => student::reset::restore_command(&root, &manifest, &backup),
        Cmd::Grade { json, junit } => {
            instructor::grade::command(&root, &manifest, json.as_deref(), junit.as_deref())
        }
        Cmd::Handout { dir } => instructor::handout::command(&root, &manifest, &dir),
        Cmd::Relay(args) => instructor::relay::command(&args),
        Cmd::Dev(_) if !root.join("solutions").exists() => {
            bail!(
                "this is a student handout: `cargo lab dev` needs the solutions/ folder, which it does not have"
            )
        }
        Cmd::Dev(DevCmd::Sync { check, lab }) => dev::sync::command(&root, &manifest, lab, check),
        Cmd::Dev(DevCmd::Verify { lab }) => dev::verify::command(&root, manifest.select(lab)?),
        Cmd::Dev(DevCmd::Check) => dev::check::command(&root),
        Cmd::Dev(DevCmd::Mutants { lab, jobs, only }) => {
            dev::mutants::command(&root, manifest.select(lab)?, &dev::mutants::Plan { jobs, only })
        }
        Cmd::Dev(DevCmd::Soak { lab, runs, jobs, hog }) => {
            dev::soak::command(&root, manifest.select(lab)?, dev::soak::Plan { runs, jobs, hog })
        }
    }
}
