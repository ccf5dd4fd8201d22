//! `cargo lab hint N [STEP]`: the manifest's hints for a step, one more each time.

use std::path::Path;

use anyhow::{Context, Result, ensure};

use super::next_step;
use super::progress::Progress;
use crate::manifest::Lab;
use crate::runner;

/// Runs `cargo lab hint`: the next hint of step `step` (the first unfinished one if `None`), or
/// all of them with `all`.
pub fn command(root: &Path, lab: &Lab, step: Option<usize>, all: bool) -> Result<bool> {
    let k = match step {
        Some(k) => k,
        None => {
            let package = lab.lab_package();
            let run = runner::with_spinner(format!("building and testing {package}"), || {
                runner::run_suite(root, &package, None)
            })?;
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
    // Hints are shown one at a time; how many were seen is kept in .course/progress.toml,
    // which `cargo lab watch` shares.
    let mut progress = Progress::load(root);
    let shown = progress.hints_seen(lab.number, k);
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
    progress.saw_hints(lab.number, k, upto);
    progress.save(root)?;
    Ok(true)
}
