//! `cargo lab dev soak`: runs the reference suites many times, several at once, optionally
//! under a CPU hog, and reports every test that failed even once, with its first message.
//!
//! Loopback hides timing bugs on an idle machine; a suite that passes once can still flake on a
//! busy two-core grading server. Soak before resolving any change to a suite or a helper.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::manifest::Lab;
use crate::runner::{self, Built};

/// What `cargo lab dev soak` was asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Runs of each lab's suite.
    pub runs: usize,
    /// Suite runs at once.
    pub jobs: usize,
    /// Keep every core busy meanwhile.
    pub hog: bool,
}

/// Failures of one test over the soak: how many runs failed and the first message.
#[derive(Debug, Default)]
struct Flake {
    count: usize,
    first: String,
}

/// Runs `cargo lab dev soak` on the solutions of `labs`.
pub fn command(root: &Path, labs: &[Lab], plan: Plan) -> Result<bool> {
    if plan.runs == 0 || plan.jobs == 0 {
        bail!("--runs and --jobs must be at least 1");
    }
    let packages: Vec<String> = labs.iter().map(Lab::solution_package).collect();
    let built = runner::with_spinner("building the reference suites".to_owned(), || {
        runner::build(root, &packages)
    })?;
    let mut suites: Vec<(String, Built)> = Vec::new();
    for (package, result) in built {
        match result {
            Ok(b) => suites.push((package, b)),
            Err(errors) => bail!("{package} does not compile:\n{errors}"),
        }
    }
    // The queue interleaves the labs, so parallel runners mix suites as a grading server would.
    let queue: Vec<usize> = (0..plan.runs).flat_map(|_| 0..suites.len()).collect();
    let next = AtomicUsize::new(0);
    let failures: Mutex<BTreeMap<(String, String), Flake>> = Mutex::new(BTreeMap::new());
    let broken_runs = AtomicUsize::new(0);
    let progress = ProgressBar::new(queue.len() as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} suite runs ({elapsed}) {msg}") {
        progress.set_style(style);
    }
    let hog = plan.hog.then(Hog::start);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..plan.jobs {
            scope.spawn(|| {
                while let Some(&i) = queue.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let (package, suite) = &suites[i];
                    match runner::run_built(suite, None) {
                        Ok(run) if run.compiled => {
                            let mut map = failures.lock().unwrap_or_else(|p| p.into_inner());
                            for (test, _) in run.results.iter().filter(|(_, ok)| !**ok) {
                                let flake = map.entry((package.clone(), test.clone())).or_default();
                                flake.count += 1;
                                if flake.first.is_empty() {
                                    flake.first = run.failures.get(test).cloned().unwrap_or_default();
                                }
                            }
                            if run.passed() < run.total() {
                                progress.set_message("FAILURES");
                            }
                        }
                        _ => {
                            broken_runs.fetch_add(1, Ordering::SeqCst);
                            progress.set_message("a run did not finish");
                        }
                    }
                    progress.inc(1);
                }
            });
        }
    });
    drop(hog);
    progress.finish_and_clear();
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    let broken = broken_runs.load(Ordering::SeqCst);
    println!(
        "soak: {} runs of each of {} suites ({} runs), {} at once{}, in {:.0} s",
        plan.runs,
        suites.len(),
        queue.len(),
        plan.jobs,
        if plan.hog {
            ", under a CPU hog on every core"
        } else {
            ""
        },
        started.elapsed().as_secs_f64()
    );
    for (package, _) in &suites {
        let mine: Vec<_> = failures.iter().filter(|((p, _), _)| p == package).collect();
        if mine.is_empty() {
            println!("  {package}: no failures in {} runs", plan.runs);
            continue;
        }
        println!("  {package}: {} tests failed at least once", mine.len());
        for ((_, test), flake) in mine {
            println!(
                "    {test}: failed {} of {} runs; first message:",
                flake.count, plan.runs
            );
            for line in flake.first.lines().take(6) {
                println!("        {line}");
            }
        }
    }
    if broken > 0 {
        println!("  {broken} suite runs crashed or printed no result");
    }
    let ok = failures.is_empty() && broken == 0;
    println!("{}", if ok { "soak: ok" } else { "soak: FAILED" });
    Ok(ok)
}

/// A busy thread on every core until dropped: the machine a suite meets during grading.
struct Hog {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Hog {
    fn start() -> Hog {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let threads = (0..cores)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..10_000 {
                            x = std::hint::black_box(
                                x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1),
                            );
                        }
                    }
                })
            })
            .collect();
        Hog { stop, threads }
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hog_stops_when_dropped() {
        let hog = Hog::start();
        assert!(!hog.threads.is_empty());
        let t = Instant::now();
        drop(hog);
        assert!(
            t.elapsed().as_secs() < 5,
            "the hog took {:?} to stop",
            t.elapsed()
        );
    }
}
