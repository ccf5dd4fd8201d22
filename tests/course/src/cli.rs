//! The command line of `cargo lab`: the clap definitions only (parsing, no behaviour). Commands
//! are grouped by audience: students at the top level, instructors beside them, maintainers
//! under `dev`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The sockets course tool: your progress, a lab's tests, hints and demos.
///
/// Start with `cargo lab status`, or `cargo lab watch` to re-run your current step on every save.
#[derive(Debug, Parser)]
#[command(name = "cargo lab", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The commands of `cargo lab`.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Your progress over all labs: tests passing per lab and step, and what to do next.
    Status,
    /// Re-run your current step's tests each time you save a file of its lab, and move on when it passes.
    ///
    /// Keys: h next hint, r run again, l list the steps, q quit.
    Watch {
        /// Start at this lab (default: the first unfinished one).
        lab: Option<u32>,
        /// Run only when you press `r`, never on a save (for file systems whose change events
        /// never arrive: WSL2 under /mnt, network mounts).
        #[arg(long)]
        manual_run: bool,
    },
    /// Run a lab's grading suite on your code and explain each failure.
    ///
    /// Stops after the first step that fails; `--all` shows every step.
    Test {
        /// The lab number, e.g. 1.
        lab: u32,
        /// Only this step's tests.
        #[arg(long, conflicts_with = "all")]
        step: Option<usize>,
        /// Show every step, not only up to the first that fails.
        #[arg(long)]
        all: bool,
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
    /// Put a lab back to its generated skeleton, after asking; your files are saved first.
    ///
    /// The saved copy is lab-backups/NN-slug-DATE_TIME/; `cargo lab restore` puts it back.
    Reset {
        /// The lab number.
        lab: u32,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
    /// Put a lab's files back from a backup that `cargo lab reset` made (what the lab holds
    /// now is saved first).
    Restore {
        /// The backup folder, e.g. lab-backups/01-udp-2026-12-02_14-03-55.
        backup: PathBuf,
    },
    /// Show a lab's finished programs at work: its server and clients on loopback, with their
    /// output and the server's log.
    ///
    /// Runs the reference solution where it is here; a student handout replays a recording of
    /// it. `--mine` runs the same exchange with your own programs.
    Demo {
        /// The lab number.
        lab: u32,
        /// Run your own programs (the lab's package) instead of the reference.
        #[arg(long)]
        mine: bool,
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
    /// Put a lossy UDP relay in front of a server on loopback, to watch retransmission work.
    ///
    /// Send to the relay's address (its ready line) instead of the server's, for example
    /// `cargo lab relay --server 127.0.0.1:6789 --drop 0.5` then
    /// `cargo run -p lab01-udp -- client --server 127.0.0.1:RELAYPORT hello`.
    Relay(RelayArgs),
    /// Maintainer commands: generate the skeletons, verify the suites, check the course's rules.
    #[command(subcommand)]
    Dev(DevCmd),
}

/// `cargo lab relay`'s options.
#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// The server's endpoint (a loopback address).
    #[arg(long, value_name = "HOST:PORT", value_parser = common::endpoint::parse)]
    pub server: common::endpoint::Endpoint,
    /// Drop the first N client datagrams.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub drop_first: u64,
    /// Probability (0 to 1) of dropping each datagram, both ways.
    #[arg(long, default_value_t = 0.0, value_name = "P", value_parser = probability)]
    pub drop: f64,
    /// Probability (0 to 1) of delivering a datagram twice, both ways.
    #[arg(long, default_value_t = 0.0, value_name = "P", value_parser = probability)]
    pub duplicate: f64,
    /// Probability (0 to 1) of holding a datagram back and delivering it after the next one,
    /// both ways.
    #[arg(long, default_value_t = 0.0, value_name = "P", value_parser = probability)]
    pub reorder: f64,
    /// Delay added to every datagram, in milliseconds (at most an hour).
    #[arg(long, default_value_t = 0, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=common::cli::MAX_MS))]
    pub delay: u64,
    /// Seed of the fault generator: the same seed replays the same faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop after this many seconds (at most an hour).
    #[arg(long, default_value_t = 600, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=common::cli::MAX_MS / 1000))]
    pub duration: u64,
}

/// `cargo lab dev ...`: the maintainers' commands.
#[derive(Debug, Subcommand)]
pub enum DevCmd {
    /// Regenerate the student skeletons in labs/ (and the Classroom files) from solutions/.
    Sync {
        /// Change nothing; fail if a generated file differs from what would be generated.
        #[arg(long)]
        check: bool,
        /// Only this lab (default: all).
        #[arg(long, value_name = "N")]
        lab: Option<u32>,
    },
    /// Prove every suite test fails on the skeleton and passes on the solution.
    Verify {
        /// Only this lab (default: all).
        #[arg(long, value_name = "N")]
        lab: Option<u32>,
    },
    /// Check that the book, the manifests, the suites and the solutions agree (runs no test).
    Check,
    /// Run the bug zoo: each mutant of tests/NN-slug/mutants/ (a student mistake as a patch
    /// against the solution) in place of the skeleton; fail on any the suite does not catch with
    /// its expected message, or catches too slowly.
    Mutants {
        /// Only this lab (default: all).
        #[arg(long, value_name = "N")]
        lab: Option<u32>,
        /// Mutants run at once, each in its own scratch copy under target/mutants/.
        #[arg(long, default_value_t = 2, value_name = "J")]
        jobs: usize,
        /// Only the mutants whose name contains this.
        #[arg(long, value_name = "NAME")]
        only: Option<String>,
    },
    /// Run the reference suites many times, several at once, optionally under a CPU hog, and
    /// list every test that failed even once, with its first message.
    Soak {
        /// Only this lab (default: all).
        #[arg(long, value_name = "N")]
        lab: Option<u32>,
        /// Runs of each suite.
        #[arg(long, default_value_t = 50, value_name = "R")]
        runs: usize,
        /// Suite runs at once.
        #[arg(long, default_value_t = 3, value_name = "J")]
        jobs: usize,
        /// Keep every core busy meanwhile (the tool starts and stops the hog itself).
        #[arg(long)]
        hog: bool,
    },
}

fn probability(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("`{text}` is not a probability between 0 and 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_delays_and_durations_over_an_hour_are_refused() {
        let relay = |extra: &[&str]| {
            let mut args = vec!["cargo-lab", "relay", "--server", "127.0.0.1:6789"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        assert!(relay(&["--delay", "3600000", "--duration", "3600"]).is_ok());
        for extra in [
            &["--delay", "3600001"][..],
            &["--duration", "3601"],
            &["--duration", "0"],
        ] {
            let err = relay(extra).expect_err("out of range");
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{extra:?}");
        }
    }
}
