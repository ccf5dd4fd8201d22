//! `cargo lab watch [LAB] [--manual-run]`: re-runs the current step's tests each time a file of
//! its lab is saved, shows the first failure and the section to read, and moves on when the step
//! passes.
//!
//! Three parts: [`Watch`], the state machine (which lab and step, what the last run said, the
//! hints shown; no I/O, unit-tested); [`render`], the screen it describes, as lines; and
//! [`command`], the I/O around them: the terminal in raw mode (crossterm), the file watcher
//! (notify), and the suite runs in a worker thread, all feeding one channel.
//!
//! Without a terminal (stdin or stdout redirected) it stops with a one-line error: its keys need
//! one, and scripts have `cargo lab test`.

use std::io::{IsTerminal, Write};
use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::style::{Attribute, Color, Print, ResetColor, SetAttribute, SetForegroundColor};
use crossterm::terminal::{Clear, ClearType};
use crossterm::{cursor, queue};
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};

use super::next_step;
use super::progress::Progress;
use crate::manifest::{Lab, Manifest};
use crate::runner::{self, SuiteRun};

/// How long the files must be quiet after a change before a run starts: an editor's save is
/// often several events (write, close, rename), and a "save all" several files.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// The most compiler-error lines shown; the rest are a `cargo build` away.
const MAX_ERROR_LINES: usize = 30;

// ---------------------------------------------------------------------------------------------
// The state machine.

/// A run for the I/O side to do: build and run suites, then hand the result to
/// [`Watch::finished`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// The whole suites of these labs (indices into the labs), to find the first unfinished step.
    Scan(Vec<usize>),
    /// Only step `step`'s tests (1-based) of lab `lab` (an index).
    Step {
        /// The lab's index.
        lab: usize,
        /// The step, 1-based.
        step: usize,
    },
}

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `h`: one more hint.
    Hint,
    /// `r`: run the step again.
    Run,
    /// `l`: show or hide the list of the lab's steps.
    List,
    /// `q`, Esc or Ctrl-C: stop.
    Quit,
}

/// A step's state as of the last run that covered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    /// No run has covered it yet.
    NotRun,
    /// All its tests passed.
    Pass,
    /// Some test failed (or the step has no test).
    Fail,
}

/// What the screen shows below the heading, from the last run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// Nothing has run yet.
    Nothing,
    /// The step's first failing test.
    Failure {
        /// The test's name, `step2_replies`.
        test: String,
        /// Tests of the step that pass.
        passed: usize,
        /// Tests of the step.
        total: usize,
        /// Its panic message, in full.
        message: String,
        /// Where it panicked, `file:line:col`, when known.
        location: Option<String>,
    },
    /// The step has no test to run (a manifest out of step with its suite).
    NoTests,
    /// The lab does not compile: the compiler's errors.
    CompileErrors(String),
    /// The run itself failed (cargo could not be started, ...).
    Error(String),
    /// Every lab is complete.
    AllDone,
}

/// The watch session: where the student is and what the last run said.
#[derive(Debug)]
pub struct Watch<'a> {
    labs: &'a [Lab],
    /// The current lab's index.
    lab: usize,
    /// The current step, 1-based; `None` until a scan has found it (and while the lab does not
    /// compile after a scan, which cannot tell which step the student is at).
    step: Option<usize>,
    /// Each lab's steps, as of the last run that covered them.
    states: Vec<Vec<StepState>>,
    shown: Shown,
    /// What happened since the student last saved: `Step 1 passes`, `Lab 01 is complete`.
    notes: Vec<String>,
    /// How many hints of this step are shown: those seen before (in `progress`), then one more
    /// each time `h` is pressed.
    hints_asked: usize,
    /// The hints seen per step, shared with `cargo lab hint` through `.course/progress.toml`.
    progress: Progress,
    list: bool,
    running: Option<Job>,
    wanted: Option<Job>,
    /// A save (or `r`) arrived during a run: run again when it ends.
    again: bool,
    /// How long the last run took.
    took: Option<Duration>,
    quit: bool,
}

impl<'a> Watch<'a> {
    /// A session over `labs` starting at lab index `start` (`None`: the first unfinished lab).
    /// Its first job scans those labs' suites.
    pub fn new(labs: &'a [Lab], start: Option<usize>) -> Self {
        let scan = match start {
            Some(i) => vec![i],
            None => (0..labs.len()).collect(),
        };
        Watch {
            labs,
            lab: start.unwrap_or(0),
            step: None,
            states: labs
                .iter()
                .map(|l| vec![StepState::NotRun; l.steps.len()])
                .collect(),
            shown: Shown::Nothing,
            notes: Vec::new(),
            hints_asked: 0,
            progress: Progress::default(),
            list: false,
            running: None,
            wanted: Some(Job::Scan(scan)),
            again: false,
            took: None,
            quit: false,
        }
    }

    /// The session, knowing the hints seen so far (from `cargo lab hint` or an earlier watch).
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// The hints seen so far, for the caller to save.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The job to start now, if one is wanted and none is running; it is then running.
    pub fn start(&mut self) -> Option<Job> {
        if self.running.is_some() {
            return None;
        }
        let job = self.wanted.take()?;
        self.running = Some(job.clone());
        Some(job)
    }

    /// A file of the lab was saved.
    pub fn saved(&mut self) {
        self.notes.clear();
        if self.running.is_some() {
            self.again = true;
        } else {
            self.wanted = Some(self.current_job());
        }
    }

    /// A key was pressed.
    pub fn key(&mut self, key: Key) {
        match key {
            Key::Hint => {
                self.hints_asked += 1;
                if let Some(k) = self.step {
                    let hints = self.labs[self.lab].steps[k - 1].hints.len();
                    self.progress
                        .saw_hints(self.labs[self.lab].number, k, self.hints_asked.min(hints));
                }
            }
            Key::Run => self.saved(),
            Key::List => self.list = !self.list,
            Key::Quit => self.quit = true,
        }
    }

    /// The running job ended with `result` (one run per lab of the job), after `took`.
    pub fn finished(&mut self, result: Result<Vec<SuiteRun>, String>, took: Duration) {
        let Some(job) = self.running.take() else {
            return;
        };
        self.took = Some(took);
        match (job, result) {
            (_, Err(e)) => self.shown = Shown::Error(e),
            (Job::Scan(labs), Ok(runs)) => self.scanned(&labs, &runs),
            (Job::Step { lab, step }, Ok(runs)) => match runs.first() {
                Some(run) => self.stepped(lab, step, run),
                None => self.shown = Shown::Error("the run returned no result".to_owned()),
            },
        }
        if std::mem::take(&mut self.again) && self.wanted.is_none() {
            self.wanted = Some(self.current_job());
        }
    }

    fn scanned(&mut self, labs: &[usize], runs: &[SuiteRun]) {
        for (&i, run) in labs.iter().zip(runs) {
            self.record(i, run, None);
        }
        let unfinished = labs
            .iter()
            .zip(runs)
            .find(|&(&i, run)| !run.compiled || next_step(&self.labs[i], run).is_some());
        match unfinished {
            Some((&i, run)) => {
                self.enter_lab(i);
                match next_step(&self.labs[i], run).filter(|_| run.compiled) {
                    Some(k) => {
                        self.enter_step(k);
                        self.shown = self.verdict(run, k);
                    }
                    None => {
                        self.step = None;
                        self.shown = Shown::CompileErrors(run.compile_errors.clone());
                    }
                }
            }
            None => {
                for &i in labs {
                    self.notes.push(format!("{} is complete.", self.labs[i].name()));
                }
                match labs.last().map(|&i| i + 1).filter(|&i| i < self.labs.len()) {
                    Some(next) => self.next_lab(next),
                    None => self.all_done(),
                }
            }
        }
    }

    fn stepped(&mut self, lab: usize, k: usize, run: &SuiteRun) {
        self.record(lab, run, Some(k));
        let (passed, total) = run.step(k);
        if !run.compiled || passed < total || total == 0 {
            self.shown = self.verdict(run, k);
            return;
        }
        self.notes.push(format!(
            "{} step {k} passes ({total} of {total} tests).",
            self.labs[lab].name()
        ));
        if k < self.labs[lab].steps.len() {
            self.enter_step(k + 1);
            self.wanted = Some(Job::Step { lab, step: k + 1 });
        } else {
            self.notes.push(format!("{} is complete!", self.labs[lab].name()));
            if lab + 1 < self.labs.len() {
                self.next_lab(lab + 1);
            } else {
                self.all_done();
            }
        }
    }

    fn next_lab(&mut self, i: usize) {
        self.enter_lab(i);
        self.step = None;
        self.wanted = Some(Job::Scan(vec![i]));
    }

    fn all_done(&mut self) {
        self.step = None;
        self.shown = Shown::AllDone;
    }

    fn enter_lab(&mut self, i: usize) {
        if self.lab != i {
            self.lab = i;
            self.step = None;
            self.hints_asked = 0;
        }
    }

    fn enter_step(&mut self, k: usize) {
        if self.step != Some(k) {
            self.step = Some(k);
            self.hints_asked = self.progress.hints_seen(self.labs[self.lab].number, k);
        }
    }

    /// Keeps the states of lab `i`'s steps from `run` (only step `only` for a one-step run).
    fn record(&mut self, i: usize, run: &SuiteRun, only: Option<usize>) {
        if !run.compiled {
            return;
        }
        for (k, state) in self.states[i].iter_mut().enumerate() {
            if only.is_some_and(|o| o != k + 1) {
                continue;
            }
            *state = match run.step(k + 1) {
                (_, 0) => StepState::NotRun,
                (p, t) if p == t => StepState::Pass,
                _ => StepState::Fail,
            };
        }
    }

    /// What a run says of step `k`, when it did not pass.
    fn verdict(&self, run: &SuiteRun, k: usize) -> Shown {
        if !run.compiled {
            return Shown::CompileErrors(run.compile_errors.clone());
        }
        let (passed, total) = run.step(k);
        let failing = run
            .results
            .iter()
            .find(|&(name, ok)| !ok && Lab::step_of(name) == Some(k));
        match failing {
            None => Shown::NoTests,
            Some((test, _)) => Shown::Failure {
                test: test.clone(),
                passed,
                total,
                message: run
                    .failures
                    .get(test)
                    .cloned()
                    .unwrap_or_else(|| "(the test printed no message)".to_owned()),
                location: run.locations.get(test).cloned(),
            },
        }
    }

    /// The job that checks the student's work where they are.
    fn current_job(&self) -> Job {
        match (&self.shown, self.step) {
            (Shown::AllDone, _) => Job::Scan((0..self.labs.len()).collect()),
            (_, Some(step)) => Job::Step { lab: self.lab, step },
            (_, None) => Job::Scan(vec![self.lab]),
        }
    }

    /// The current lab.
    pub fn lab(&self) -> &'a Lab {
        &self.labs[self.lab]
    }

    /// Whether `q` was pressed.
    pub fn quit(&self) -> bool {
        self.quit
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering.

/// How a line of the screen looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Ordinary text.
    Plain,
    /// The heading.
    Title,
    /// Good news.
    Good,
    /// A failure.
    Bad,
    /// Secondary text: the keys, the mode.
    Dim,
}

/// The screen for `w`, as lines; `mode` says how runs start (watching which folder, or manual).
pub fn render(w: &Watch<'_>, mode: &str) -> Vec<(Tone, String)> {
    let mut out: Vec<(Tone, String)> = Vec::new();
    let mut line = |tone: Tone, text: String| out.push((tone, text));
    let lab = w.lab();
    if w.shown == Shown::AllDone && w.running.is_none() {
        line(Tone::Title, "All labs complete. Well done!".to_owned());
        line(
            Tone::Plain,
            "Try the questions at the end of each chapter; `cargo lab status` shows your points.".to_owned(),
        );
    } else {
        match w.step {
            Some(k) => {
                let s = &lab.steps[k - 1];
                line(
                    Tone::Title,
                    format!("{} step {k} of {}: {}", lab.name(), lab.steps.len(), s.title),
                );
                line(
                    Tone::Plain,
                    format!("Read: book/src/{}#{}", lab.chapter, s.section),
                );
            }
            None => {
                line(Tone::Title, format!("{}: {}", lab.name(), lab.title));
                line(Tone::Plain, format!("Read: book/src/{}", lab.chapter));
            }
        }
    }
    line(Tone::Plain, String::new());
    for note in &w.notes {
        line(Tone::Good, note.clone());
    }
    if !w.notes.is_empty() {
        line(Tone::Plain, String::new());
    }
    match &w.running {
        Some(job) => {
            let what = match job {
                Job::Scan(labs) if labs.len() > 1 => "every lab's suite, to find where you are".to_owned(),
                Job::Scan(labs) => format!("cargo test -p {}", w.labs[labs[0]].lab_package()),
                Job::Step { lab, step } => format!(
                    "cargo test -p {} {}",
                    w.labs[*lab].lab_package(),
                    Lab::step_prefix(*step)
                ),
            };
            line(Tone::Dim, format!("running... ({what})"));
        }
        None => render_shown(w, &mut line),
    }
    if let Some(k) = w.step.filter(|_| w.hints_asked > 0) {
        let hints = &lab.steps[k - 1].hints;
        line(Tone::Plain, String::new());
        for (i, h) in hints.iter().enumerate().take(w.hints_asked) {
            line(Tone::Plain, format!("Hint {} of {}: {h}", i + 1, hints.len()));
        }
        if hints.is_empty() {
            line(Tone::Dim, "This step has no hints.".to_owned());
        } else if w.hints_asked > hints.len() {
            line(Tone::Dim, "(no more hints for this step)".to_owned());
        }
    }
    if w.step.is_none() && w.hints_asked > 0 && w.shown != Shown::AllDone {
        line(Tone::Plain, String::new());
        line(
            Tone::Dim,
            "Hints come with a step: once the lab compiles, h shows the step's hints.".to_owned(),
        );
    }
    if w.list {
        line(Tone::Plain, String::new());
        line(
            Tone::Plain,
            format!("{} steps (as of their last run):", lab.name()),
        );
        for (k, (s, state)) in lab.steps.iter().zip(&w.states[w.lab]).enumerate() {
            let (tone, label) = match state {
                StepState::Pass => (Tone::Good, "pass"),
                StepState::Fail => (Tone::Bad, "FAIL"),
                StepState::NotRun => (Tone::Plain, "not run"),
            };
            let here = if w.step == Some(k + 1) {
                "  <- you are here"
            } else {
                ""
            };
            line(tone, format!("  step {:<2} {label:<8} {}{here}", k + 1, s.title));
        }
    }
    line(Tone::Plain, String::new());
    line(Tone::Dim, mode.to_owned());
    line(
        Tone::Dim,
        "keys: h next hint | r run again | l list steps | q quit".to_owned(),
    );
    // One blank line between parts, however many parts were empty.
    out.dedup_by(|b, a| a.1.is_empty() && b.1.is_empty());
    out
}

fn render_shown(w: &Watch<'_>, line: &mut impl FnMut(Tone, String)) {
    let took = match w.took {
        Some(t) if t < Duration::from_secs(1) => format!(" (ran in {} ms)", t.as_millis()),
        Some(t) => format!(" (ran in {:.1} s)", t.as_secs_f64()),
        None => String::new(),
    };
    match &w.shown {
        Shown::Nothing | Shown::AllDone => {}
        Shown::Failure {
            test,
            passed,
            total,
            message,
            location,
        } => {
            let k = w.step.unwrap_or(0);
            line(
                Tone::Bad,
                format!("FAIL {test}: {passed} of {total} tests of step {k} pass{took}"),
            );
            line(Tone::Plain, String::new());
            for l in message.lines() {
                line(Tone::Plain, l.to_owned());
            }
            if let Some(at) = location {
                line(Tone::Dim, format!("panicked at {at}"));
            }
        }
        Shown::NoTests => line(
            Tone::Bad,
            format!(
                "No test of this step ran: the suite has no test named {}*.",
                Lab::step_prefix(w.step.unwrap_or(0))
            ),
        ),
        Shown::CompileErrors(errors) => {
            line(
                Tone::Bad,
                format!("{} does not compile{took}:", w.lab().lab_package()),
            );
            line(Tone::Plain, String::new());
            let lines: Vec<&str> = errors.lines().collect();
            for l in lines.iter().take(MAX_ERROR_LINES) {
                line(Tone::Plain, (*l).to_owned());
            }
            if lines.len() > MAX_ERROR_LINES {
                line(
                    Tone::Dim,
                    format!(
                        "... {} more lines: cargo build -p {} shows them all",
                        lines.len() - MAX_ERROR_LINES,
                        w.lab().lab_package()
                    ),
                );
            }
        }
        Shown::Error(e) => line(Tone::Bad, format!("The run failed: {e}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Input: keys and file events.

/// The key a terminal key event stands for. In raw mode Ctrl-C arrives as a key: it quits.
pub fn key_of(event: &KeyEvent) -> Option<Key> {
    // Windows reports releases too; a key counts once, when pressed.
    if event.kind != KeyEventKind::Press {
        return None;
    }
    let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
    match event.code {
        KeyCode::Char('c' | 'd') if ctrl => Some(Key::Quit),
        _ if ctrl => None,
        KeyCode::Char('h' | 'H') => Some(Key::Hint),
        KeyCode::Char('r' | 'R') => Some(Key::Run),
        KeyCode::Char('l' | 'L') => Some(Key::List),
        KeyCode::Char('q' | 'Q') | KeyCode::Esc => Some(Key::Quit),
        _ => None,
    }
}

/// Whether a file event is a save of a source file. Editors' temporary and backup files
/// (`.lib.rs.swp`, `lib.rs~`, `#lib.rs#`, `4913`, `lib.rs___jb_tmp___`) are not `*.rs`; reads
/// (cargo's own, of the sources it builds) are not saves.
pub fn is_save(event: &notify::Event) -> bool {
    let kind = match event.kind {
        EventKind::Any | EventKind::Create(_) => true,
        EventKind::Modify(ModifyKind::Name(mode)) => {
            matches!(mode, RenameMode::Any | RenameMode::To | RenameMode::Both)
        }
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(mode)) => matches!(mode, AccessMode::Write),
        EventKind::Access(_) | EventKind::Remove(_) | EventKind::Other => false,
    };
    kind && event.paths.iter().any(|p| is_source(p))
}

/// `*.rs`, not hidden.
fn is_source(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && name.len() > 3 && name.ends_with(".rs")
}

// ---------------------------------------------------------------------------------------------
// The I/O loop.

/// What arrives on the loop's channel.
enum Msg {
    Key(Key),
    /// The terminal changed size: draw again.
    Redraw,
    /// A source file of the watched lab changed (not yet debounced).
    Changed,
    /// The file watcher reported an error.
    WatchError(String),
    /// The running job ended.
    Finished(Result<Vec<SuiteRun>, String>, Duration),
    /// Something that ends the session: the keyboard cannot be read.
    Fatal(String),
}

/// Runs `cargo lab watch`.
pub fn command(root: &Path, manifest: &Manifest, lab: Option<u32>, manual_run: bool) -> Result<bool> {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        bail!(
            "cargo lab watch needs a terminal (it reads keys and redraws the screen); \
             in a script use `cargo lab test N [--step K]`"
        );
    }
    let start = match lab {
        Some(n) => {
            let number = manifest.lab(n)?.number;
            manifest.labs.iter().position(|l| l.number == number)
        }
        None => None,
    };
    let mut watch = Watch::new(&manifest.labs, start).with_progress(Progress::load(root));
    let guard = RawMode::enter()?;
    let result = run_loop(root, &mut watch, manual_run);
    drop(guard);
    result?;
    println!(
        "Stopped watching {}. `cargo lab status` shows your progress.",
        watch.lab().name()
    );
    Ok(true)
}

fn run_loop(root: &Path, watch: &mut Watch<'_>, manual_run: bool) -> Result<()> {
    let (tx, rx) = mpsc::channel::<Msg>();
    read_keys(tx.clone());
    let mut out = std::io::stdout();
    // The folder being watched, with its watcher (which stops when dropped).
    let mut watching: Option<(String, notify::RecommendedWatcher)> = None;
    let mut watch_error: Option<String> = None;
    let mut quiet_until: Option<Instant> = None;
    let mut dirty = true;
    loop {
        if let Some(job) = watch.start() {
            spawn_run(root, watch.labs, job, tx.clone());
            dirty = true;
        }
        let lab_dir = watch.lab().lab_dir().join("src");
        let lab_key = lab_dir.display().to_string();
        if !manual_run && watching.as_ref().is_none_or(|(k, _)| *k != lab_key) {
            watching = None;
            match watch_files(&root.join(&lab_dir), tx.clone()) {
                Ok(w) => {
                    watching = Some((lab_key.clone(), w));
                    watch_error = None;
                }
                Err(e) => watch_error = Some(format!("cannot watch {lab_key}/ ({e})")),
            }
            dirty = true;
        }
        if dirty {
            let mode = match (&watch_error, manual_run) {
                (_, true) => "Manual mode (--manual-run): files are not watched; press r to run.".to_owned(),
                (Some(e), false) => format!("{e}: press r to run."),
                (None, false) => format!(
                    "Watching {}/: each save runs your step again.",
                    lab_key.replace('\\', "/")
                ),
            };
            draw(&mut out, &render(watch, &mode)).context("cannot draw on the terminal")?;
        }
        if watch.quit() {
            return Ok(());
        }
        let msg = match quiet_until {
            Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        // A change only (re)starts the quiet period; everything else may change the screen.
        dirty = !matches!(msg, Ok(Msg::Changed));
        match msg {
            Ok(Msg::Key(key)) => {
                watch.key(key);
                if key == Key::Hint {
                    // Losing the count is harmless; the session goes on.
                    let _ = watch.progress().save(root);
                }
            }
            Ok(Msg::Redraw) => {}
            Ok(Msg::Changed) => quiet_until = Some(Instant::now() + DEBOUNCE),
            Ok(Msg::WatchError(e)) => watch_error = Some(format!("file events failed ({e})")),
            Ok(Msg::Finished(result, took)) => watch.finished(result, took),
            Ok(Msg::Fatal(e)) => bail!(e),
            Err(RecvTimeoutError::Timeout) => {
                quiet_until = None;
                watch.saved();
            }
            Err(RecvTimeoutError::Disconnected) => bail!("the watch loop lost its inputs"),
        }
    }
}

/// Reads the keyboard in a thread of its own (it blocks), for as long as the loop listens.
fn read_keys(tx: Sender<Msg>) {
    std::thread::spawn(move || {
        loop {
            let msg = match crossterm::event::read() {
                Ok(TermEvent::Key(k)) => match key_of(&k) {
                    Some(key) => Msg::Key(key),
                    None => continue,
                },
                Ok(TermEvent::Resize(..)) => Msg::Redraw,
                Ok(_) => continue,
                Err(e) => Msg::Fatal(format!("cannot read the keyboard: {e}")),
            };
            let fatal = matches!(msg, Msg::Fatal(_));
            if tx.send(msg).is_err() || fatal {
                return;
            }
        }
    });
}

/// Watches `dir` (recursively) and sends [`Msg::Changed`] for each save in it.
fn watch_files(dir: &Path, tx: Sender<Msg>) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let msg = match event {
            Ok(e) if is_save(&e) => Msg::Changed,
            Ok(_) => return,
            Err(e) => Msg::WatchError(e.to_string()),
        };
        let _ = tx.send(msg);
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    Ok(watcher)
}

/// Starts `job` in a worker thread; its result comes back as [`Msg::Finished`].
fn spawn_run(root: &Path, labs: &[Lab], job: Job, tx: Sender<Msg>) {
    let (packages, filter): (Vec<String>, Option<String>) = match &job {
        Job::Scan(indices) => (indices.iter().map(|&i| labs[i].lab_package()).collect(), None),
        Job::Step { lab, step } => (vec![labs[*lab].lab_package()], Some(Lab::step_prefix(*step))),
    };
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        let started = Instant::now();
        let result = runner::run_suites(&root, &packages, filter.as_deref()).map_err(|e| format!("{e:#}"));
        let _ = tx.send(Msg::Finished(result, started.elapsed()));
    });
}

/// Clears the screen and draws `lines` (raw mode: lines end with `\r\n`).
fn draw(out: &mut impl Write, lines: &[(Tone, String)]) -> std::io::Result<()> {
    queue!(out, Clear(ClearType::All), cursor::MoveTo(0, 0))?;
    for (tone, text) in lines {
        match tone {
            Tone::Plain => {}
            Tone::Title => queue!(out, SetAttribute(Attribute::Bold))?,
            Tone::Good => queue!(out, SetForegroundColor(Color::Green))?,
            Tone::Bad => queue!(out, SetForegroundColor(Color::Red))?,
            Tone::Dim => queue!(out, SetForegroundColor(Color::DarkGrey))?,
        }
        queue!(out, Print(text.replace('\n', "\r\n")))?;
        if *tone != Tone::Plain {
            queue!(out, SetAttribute(Attribute::Reset), ResetColor)?;
        }
        queue!(out, Print("\r\n"))?;
    }
    out.flush()
}

/// The terminal in raw mode for as long as this lives: it is restored when dropped (quit or
/// error) and by a panic hook, which then ends the process (a panic anywhere in the session).
struct RawMode;

impl RawMode {
    fn enter() -> Result<RawMode> {
        crossterm::terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        let previous = std::panic::take_hook();
        // A panic in any thread (the keys', a run's) ends the session: the terminal first.
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
            std::process::exit(101);
        }));
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore_terminal();
    }
}

fn restore_terminal() {
    let mut out = std::io::stdout();
    let _ = queue!(out, SetAttribute(Attribute::Reset), ResetColor, cursor::Show);
    let _ = out.flush();
    let _ = crossterm::terminal::disable_raw_mode();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Step;

    fn lab(number: u32, steps: &[(&str, &[&str])]) -> Lab {
        Lab {
            number,
            slug: format!("l{number}"),
            title: format!("Lab {number} title"),
            chapter: format!("lab{number:02}.md"),
            demo: None,
            steps: steps
                .iter()
                .enumerate()
                .map(|(i, (title, hints))| Step {
                    title: (*title).to_owned(),
                    section: format!("step-{}", i + 1),
                    points: 10,
                    hints: hints.iter().map(|h| (*h).to_owned()).collect(),
                })
                .collect(),
        }
    }

    fn labs() -> Vec<Lab> {
        vec![
            lab(1, &[("Double", &["Multiply.", "By two."]), ("Greet", &[])]),
            lab(2, &[("Only", &["Look."])]),
        ]
    }

    /// A compiled run with these tests' outcomes; failures say `<name> failed` at `at.rs:1:1`.
    fn run(results: &[(&str, bool)]) -> SuiteRun {
        let mut run = SuiteRun {
            compiled: true,
            ..SuiteRun::default()
        };
        for (name, ok) in results {
            run.results.insert((*name).to_owned(), *ok);
            if !ok {
                run.failures
                    .insert((*name).to_owned(), format!("{name} failed\nsecond line"));
                run.locations.insert((*name).to_owned(), "at.rs:1:1".to_owned());
            }
        }
        run
    }

    fn broken() -> SuiteRun {
        SuiteRun {
            compile_errors: "error[E0425]: oops".to_owned(),
            ..SuiteRun::default()
        }
    }

    fn finish(w: &mut Watch<'_>, runs: Vec<SuiteRun>) {
        w.finished(Ok(runs), Duration::from_millis(5));
    }

    fn screen(w: &Watch<'_>) -> String {
        render(w, "MODE")
            .into_iter()
            .map(|(_, l)| l)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn starts_by_scanning_and_stops_at_the_first_failing_step() {
        let labs = labs();
        let mut w = Watch::new(&labs, None);
        assert_eq!(w.start(), Some(Job::Scan(vec![0, 1])));
        assert_eq!(w.start(), None, "one job at a time");
        assert!(screen(&w).contains("running... (every lab's suite"));
        finish(
            &mut w,
            vec![
                run(&[("step1_a", true), ("step2_a", false), ("step2_b", true)]),
                run(&[]),
            ],
        );
        assert_eq!((w.lab, w.step), (0, Some(2)));
        assert_eq!(w.start(), None, "the scan's result is shown, not run again");
        let s = screen(&w);
        assert!(
            s.starts_with("Lab 01 step 2 of 2: Greet\nRead: book/src/lab01.md#step-2\n"),
            "{s}"
        );
        assert!(s.contains("FAIL step2_a: 1 of 2 tests of step 2 pass"), "{s}");
        assert!(
            s.contains("step2_a failed\nsecond line\npanicked at at.rs:1:1"),
            "{s}"
        );
        assert!(
            s.ends_with("MODE\nkeys: h next hint | r run again | l list steps | q quit"),
            "{s}"
        );
    }

    #[test]
    fn a_passing_step_moves_on_then_the_next_lab_then_all_done() {
        let labs = labs();
        let mut w = Watch::new(&labs, Some(0));
        assert_eq!(w.start(), Some(Job::Scan(vec![0])));
        finish(&mut w, vec![run(&[("step1_a", false), ("step2_a", false)])]);
        assert_eq!(w.step, Some(1));
        w.saved();
        assert_eq!(w.start(), Some(Job::Step { lab: 0, step: 1 }));
        finish(&mut w, vec![run(&[("step1_a", true)])]);
        assert_eq!(w.step, Some(2));
        assert!(screen(&w).contains("Lab 01 step 1 passes (1 of 1 tests)."));
        assert_eq!(
            w.start(),
            Some(Job::Step { lab: 0, step: 2 }),
            "runs the next step at once"
        );
        finish(&mut w, vec![run(&[("step2_a", true)])]);
        assert_eq!((w.lab, w.step), (1, None));
        assert_eq!(w.start(), Some(Job::Scan(vec![1])), "finds where the next lab is");
        let s = screen(&w);
        assert!(
            s.contains("Lab 01 is complete!") && s.contains("Lab 02: Lab 2 title"),
            "{s}"
        );
        finish(&mut w, vec![run(&[("step1_x", true)])]);
        assert_eq!(w.shown, Shown::AllDone);
        assert!(screen(&w).starts_with("All labs complete."));
        w.saved();
        assert_eq!(
            w.start(),
            Some(Job::Scan(vec![0, 1])),
            "a save when done checks everything"
        );
    }

    #[test]
    fn a_save_during_a_run_runs_again_after_it() {
        let labs = labs();
        let mut w = Watch::new(&labs, Some(0));
        w.start();
        finish(&mut w, vec![run(&[("step1_a", false)])]);
        w.saved();
        assert_eq!(w.start(), Some(Job::Step { lab: 0, step: 1 }));
        w.saved();
        w.key(Key::Run);
        assert_eq!(w.start(), None);
        finish(&mut w, vec![run(&[("step1_a", false)])]);
        assert_eq!(
            w.start(),
            Some(Job::Step { lab: 0, step: 1 }),
            "once, however many saves"
        );
        finish(&mut w, vec![run(&[("step1_a", false)])]);
        assert_eq!(w.start(), None);
    }

    #[test]
    fn compile_errors_keep_the_step_or_rescan_when_it_is_unknown() {
        let labs = labs();
        let mut w = Watch::new(&labs, Some(0));
        w.start();
        finish(&mut w, vec![broken()]);
        assert_eq!(w.step, None, "a lab that does not compile cannot tell its step");
        let s = screen(&w);
        assert!(
            s.contains("Lab 01: Lab 1 title") && s.contains("lab01-l1 does not compile"),
            "{s}"
        );
        assert!(s.contains("error[E0425]: oops"), "{s}");
        w.key(Key::Hint);
        assert!(screen(&w).contains("Hints come with a step"));
        w.saved();
        assert_eq!(w.start(), Some(Job::Scan(vec![0])));
        finish(&mut w, vec![run(&[("step1_a", true), ("step2_a", false)])]);
        assert!(!screen(&w).contains("Hint"), "a new step starts without hints");
        assert_eq!(w.step, Some(2));
        w.saved();
        w.start();
        finish(&mut w, vec![broken()]);
        assert_eq!(
            w.step,
            Some(2),
            "a step run that does not compile stays on its step"
        );
        assert!(matches!(w.shown, Shown::CompileErrors(_)));
        w.saved();
        assert_eq!(w.start(), Some(Job::Step { lab: 0, step: 2 }));
    }

    #[test]
    fn hints_come_one_at_a_time_and_restart_with_each_step() {
        let labs = labs();
        let mut w = Watch::new(&labs, Some(0));
        w.start();
        finish(&mut w, vec![run(&[("step1_a", false), ("step2_a", false)])]);
        assert!(!screen(&w).contains("Hint"));
        w.key(Key::Hint);
        let s = screen(&w);
        assert!(
            s.contains("Hint 1 of 2: Multiply.") && !s.contains("Hint 2"),
            "{s}"
        );
        w.key(Key::Hint);
        w.key(Key::Hint);
        let s = screen(&w);
        assert!(
            s.contains("Hint 2 of 2: By two.\n(no more hints for this step)"),
            "{s}"
        );
        w.saved();
        w.start();
        finish(&mut w, vec![run(&[("step1_a", true)])]);
        assert!(!screen(&w).contains("Hint"), "step 2 starts without hints");
        w.key(Key::Hint);
        assert!(screen(&w).contains("This step has no hints."));
    }

    #[test]
    fn hints_seen_before_are_shown_again_and_counted_for_cargo_lab_hint() {
        let labs = labs();
        let mut seen = Progress::default();
        seen.saw_hints(labs[0].number, 1, 1);
        let mut w = Watch::new(&labs, Some(0)).with_progress(seen);
        w.start();
        finish(&mut w, vec![run(&[("step1_a", false), ("step2_a", false)])]);
        let s = screen(&w);
        assert!(
            s.contains("Hint 1 of 2: Multiply.") && !s.contains("Hint 2"),
            "{s}"
        );
        w.key(Key::Hint);
        w.key(Key::Hint);
        assert_eq!(
            w.progress().hints_seen(labs[0].number, 1),
            2,
            "capped at the step's hints"
        );
    }

    #[test]
    fn the_list_shows_each_steps_state_and_q_quits() {
        let labs = labs();
        let mut w = Watch::new(&labs, Some(0));
        w.start();
        finish(&mut w, vec![run(&[("step1_a", false)])]);
        w.key(Key::List);
        let s = screen(&w);
        assert!(s.contains("  step 1  FAIL     Double  <- you are here"), "{s}");
        assert!(s.contains("  step 2  not run  Greet"), "{s}");
        w.key(Key::List);
        assert!(!screen(&w).contains("not run"));
        assert!(!w.quit());
        w.key(Key::Quit);
        assert!(w.quit());
    }

    #[test]
    fn a_failed_run_is_shown_and_a_step_without_tests_says_so() {
        let labs = labs();
        let mut w = Watch::new(&labs, Some(0));
        w.start();
        w.finished(Err("cannot run cargo".to_owned()), Duration::ZERO);
        assert!(screen(&w).contains("The run failed: cannot run cargo"));
        w.saved();
        w.start();
        finish(&mut w, vec![run(&[("step1_a", true)])]);
        assert_eq!(w.step, Some(2), "step 2 has no test, so it is unfinished");
        assert!(screen(&w).contains("No test of this step ran: the suite has no test named step2_*."));
    }

    #[test]
    fn keys_map_to_actions_and_ctrl_c_quits() {
        let press = |code, modifiers| key_of(&KeyEvent::new(code, modifiers));
        assert_eq!(press(KeyCode::Char('h'), KeyModifiers::NONE), Some(Key::Hint));
        assert_eq!(press(KeyCode::Char('r'), KeyModifiers::NONE), Some(Key::Run));
        assert_eq!(press(KeyCode::Char('l'), KeyModifiers::NONE), Some(Key::List));
        assert_eq!(press(KeyCode::Char('q'), KeyModifiers::NONE), Some(Key::Quit));
        assert_eq!(press(KeyCode::Char('c'), KeyModifiers::CONTROL), Some(Key::Quit));
        assert_eq!(press(KeyCode::Char('h'), KeyModifiers::CONTROL), None);
        assert_eq!(press(KeyCode::Char('x'), KeyModifiers::NONE), None);
        let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(key_of(&release), None, "Windows reports releases too");
    }

    #[test]
    fn only_saves_of_source_files_count() {
        use notify::event::{CreateKind, DataChange};
        let event = |kind, path: &str| notify::Event::new(kind).add_path(PathBuf::from(path));
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Content));
        assert!(is_save(&event(write, "labs/01-udp/src/lib.rs")));
        assert!(is_save(&event(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            "src/lib.rs"
        )));
        assert!(is_save(&event(
            EventKind::Create(CreateKind::File),
            "src/extra.rs"
        )));
        for temp in [
            ".lib.rs.swp",
            "lib.rs~",
            "#lib.rs#",
            ".#lib.rs",
            "4913",
            "lib.rs___jb_tmp___",
        ] {
            assert!(!is_save(&event(write, &format!("src/{temp}"))), "{temp}");
        }
        // cargo reading the sources it builds is not a save.
        assert!(!is_save(&event(
            EventKind::Access(AccessKind::Open(notify::event::AccessMode::Any)),
            "src/lib.rs"
        )));
        assert!(!is_save(&event(
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            "src/lib.rs"
        )));
        assert!(!is_save(&event(
            EventKind::Remove(notify::event::RemoveKind::File),
            "src/lib.rs"
        )));
    }
}
