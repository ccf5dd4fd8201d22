//! `cargo lab dev verify`: every suite test fails on the freshly generated skeleton and passes
//! on the solution, and belongs to a step of the manifest.

use std::path::Path;

use anyhow::{Result, bail};

use super::sync;
use crate::manifest::Lab;
use crate::runner;

/// Runs `cargo lab dev verify` on `labs`.
pub fn command(root: &Path, labs: &[Lab]) -> Result<bool> {
    let stale = sync::sync(root, labs, true)?;
    if !stale.is_empty() {
        bail!(
            "labs/ is not the freshly generated skeleton ({} files differ); run `cargo lab dev sync` first",
            stale.len()
        );
    }
    // Every solution and every skeleton at once: the suites mostly wait.
    let packages: Vec<String> = labs
        .iter()
        .flat_map(|l| [l.solution_package(), l.lab_package()])
        .collect();
    let runs = runner::with_spinner(
        format!("building and testing {} packages", packages.len()),
        || runner::run_suites(root, &packages, None),
    )?;
    let mut runs = runs.into_iter();
    let mut ok = true;
    for lab in labs {
        let (Some(solution), Some(skeleton)) = (runs.next(), runs.next()) else {
            bail!("a suite did not run");
        };
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
