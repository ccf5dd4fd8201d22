//! The students' commands: `status`, `watch`, `test`, `hint`, `demo`, `reset` (and `restore`),
//! the hint progress they share ([`progress`]) and the progress helpers.

pub mod demo;
pub mod hint;
pub mod progress;
pub mod reset;
pub mod status;
pub mod test;
pub mod watch;

use crate::manifest::Lab;
use crate::runner::SuiteRun;

/// The first step of `lab` with a failing (or no) test, 1-based; `None` when every step passes.
pub fn next_step(lab: &Lab, run: &SuiteRun) -> Option<usize> {
    (1..=lab.steps.len()).find(|&k| {
        let (passed, total) = run.step(k);
        total == 0 || passed < total
    })
}

/// A text progress bar, `[####....]`, `width` characters inside the brackets.
pub fn bar(done: usize, total: usize, width: usize) -> String {
    let filled = (done * width).checked_div(total).unwrap_or(0);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}
