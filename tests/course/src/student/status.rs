//! `cargo lab status`: every lab's suite, run in parallel on the student's code; tests and
//! points per lab and step, and the next thing to do.

use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::{bar, next_step};
use crate::dev::testlist;
use crate::manifest::{Lab, Manifest};
use crate::runner::{self, SuiteRun};

/// Runs `cargo lab status`.
pub fn command(root: &Path, manifest: &Manifest) -> Result<bool> {
    let packages: Vec<String> = manifest.labs.iter().map(Lab::lab_package).collect();
    let runs = runner::with_spinner(format!("building and testing {} labs", packages.len()), || {
        runner::run_suites(root, &packages, None)
    })?;
    let mut next: Option<(&Lab, usize)> = None;
    let (mut passed_all, mut total_all, mut complete) = (0, 0, 0);
    let mut rows = Vec::new();
    for (lab, mut run) in manifest.labs.iter().zip(runs) {
        if !run.compiled {
            // A lab that does not build runs no test; its tests still count, as failing.
            for name in testlist::tests_here(root, lab) {
                run.results.insert(name, false);
            }
        }
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
            format!("does not compile, 0/{} tests", run.total())
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
            // The first error and where it is; `cargo build` shows them all.
            for line in run
                .compile_errors
                .lines()
                .filter(|l| !l.trim().is_empty())
                .take(2)
            {
                println!("        {}", line.trim_end());
            }
            println!(
                "        (all the errors: cargo build -p {} --tests)",
                lab.lab_package()
            );
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
