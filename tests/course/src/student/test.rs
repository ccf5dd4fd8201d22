//! `cargo lab test N [--step K] [--all]`: one lab's suite on the student's code, step by step,
//! each failure explained; it stops at the first step that fails and ends with the next command.

use std::path::Path;

use anyhow::{Result, ensure};

use super::next_step;
use crate::manifest::Lab;
use crate::runner;

/// Runs `cargo lab test`: only step `step`, or the steps up to the first that fails (every step
/// with `all`), of the student's lab or (with `solution`) the reference.
pub fn command(root: &Path, lab: &Lab, step: Option<usize>, all: bool, solution: bool) -> Result<bool> {
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
    let run = runner::with_spinner(format!("building and testing {package}"), || {
        runner::run_suite(root, &package, filter.as_deref())
    })?;
    if !run.compiled {
        println!("{package} does not compile:\n{}", run.compile_errors);
        return Ok(false);
    }
    let mut hidden = 0;
    let mut stopped_at = None;
    for (k, s) in lab.steps.iter().enumerate() {
        let (p, t) = run.step(k + 1);
        if t == 0 {
            continue;
        }
        if stopped_at.is_some() {
            hidden += 1;
            continue;
        }
        println!("Step {}: {} ({p}/{t})", k + 1, s.title);
        for (name, ok) in run.results.iter().filter(|(n, _)| Lab::step_of(n) == Some(k + 1)) {
            println!("  {} {name}", if *ok { "pass" } else { "FAIL" });
            if let Some(why) = run.failures.get(name) {
                // A transcript (what the test did, expected, got, why, the section) is whole
                // at 30 lines; longer texts are captured output that the full run shows.
                for line in why.lines().take(30) {
                    println!("         {line}");
                }
            }
            if let Some(at) = run.locations.get(name) {
                println!("         (panicked at {at})");
            }
        }
        // Later steps usually build on this one: their failures would only repeat it.
        if p < t && !all && step.is_none() {
            stopped_at = Some(k + 1);
        }
    }
    println!("\n{} of {} tests pass.", run.passed(), run.total());
    if hidden > 0 {
        println!(
            "({hidden} later steps not shown; `cargo lab test {} --all` shows them)",
            lab.number
        );
    }
    let next = match step {
        Some(k) => Some(k).filter(|_| run.passed() < run.total()),
        None => next_step(lab, &run).filter(|_| run.passed() < run.total()),
    };
    match next {
        None if step.is_some() => match step.filter(|&k| k < lab.steps.len()) {
            Some(k) => println!(
                "This step is complete. Next: cargo lab test {} --step {}",
                lab.number,
                k + 1
            ),
            None => println!("This step is complete. Next: cargo lab status"),
        },
        None => println!("{} is complete. Next: cargo lab status", lab.name()),
        Some(k) => {
            println!(
                "Work on step {k}: read book/src/{}#{}",
                lab.chapter,
                lab.steps[k - 1].section
            );
            println!(
                "Next: cargo lab test {} --step {k}   (a hint: cargo lab hint {} {k})",
                lab.number, lab.number
            );
        }
    }
    Ok(run.passed() == run.total())
}
