//! Support for tests of descriptor exhaustion: start a server binary under a low descriptor
//! limit, change the limit of a server that runs, and look at the descriptors it holds.
//!
//! Nothing here changes the limits of the test process itself (its harness has many threads
//! and other tests need descriptors): a limit is set in a shell that then `exec`s the server
//! (`sh -c 'ulimit -n N; exec "$0" "$@"' BIN ARGS...`), or from outside with `prlimit(1)` on
//! the server's pid (Linux). Descriptors are read from `/proc/PID/fd` (Linux).
//!
//! A descriptor limit (`RLIMIT_NOFILE`, getrlimit(2)) bounds the descriptor *numbers* a process
//! may get: once every number below it is taken, `socket`, `open` and `accept` fail with
//! `EMFILE`. Numbers a process already holds above the limit (inherited ones, say) stay valid.

use crate::testing::ServerProcess;

/// Starts `bin` with `args` through `sh`, after `ulimit -n limit`, and waits for its ready
/// line (see [`ServerProcess::start`]). The shell `exec`s the program, so the process (and its
/// pid) is the server's, and the limit is its own; descriptors it inherits count too.
///
/// # Panics
/// As [`ServerProcess::start`]: when the server does not start or prints no ready line.
pub fn start_with_limit(limit: u32, bin: &str, args: &[&str]) -> ServerProcess {
    let script = format!("ulimit -n {limit} && exec \"$0\" \"$@\"");
    let mut argv = vec!["-c", script.as_str(), bin];
    argv.extend_from_slice(args);
    ServerProcess::start("sh", &argv)
}

/// The descriptor numbers process `pid` has open, in increasing order, from `/proc/PID/fd`.
///
/// # Errors
/// When the directory cannot be read (no such process, or not Linux).
pub fn open_descriptors(pid: u32) -> std::io::Result<Vec<u32>> {
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    Ok(fds)
}

/// How many descriptors process `pid` has open, on Linux (from `/proc/PID/fd`); `None` on other
/// systems or when the process is gone. The robustness tests take it as a server's baseline.
pub fn count(pid: u32) -> Option<usize> {
    if cfg!(target_os = "linux") {
        open_descriptors(pid).ok().map(|fds| fds.len())
    } else {
        None
    }
}

/// The lowest descriptor number process `pid` does not hold: the one its next `socket`, `open`
/// or `accept` gets. With its soft limit lowered to this number, the next one fails (`EMFILE`).
///
/// # Errors
/// As [`open_descriptors`].
pub fn lowest_free(pid: u32) -> std::io::Result<u32> {
    let fds = open_descriptors(pid)?;
    Ok((0..).find(|n| fds.binary_search(n).is_err()).unwrap_or(u32::MAX))
}

/// The soft descriptor limit of process `pid`, from `/proc/PID/limits` (`Max open files`);
/// `None` when unreadable or unlimited.
pub fn soft_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether `prlimit(1)` (util-linux) runs on this host.
pub fn prlimit_available() -> bool {
    std::process::Command::new("prlimit")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Sets the soft descriptor limit of the running process `pid` to `limit` with
/// `prlimit --pid PID --nofile=LIMIT:` (the hard limit stays). Takes effect at once: the
/// process's next `accept` is checked against it.
///
/// # Errors
/// A description of what failed: prlimit cannot run, or refuses (the limit is above the hard
/// limit, or the process has gone).
pub fn set_soft_limit(pid: u32, limit: u64) -> Result<(), String> {
    let out = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={limit}:")])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run prlimit: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "prlimit --pid {pid} --nofile={limit}: failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Waits up to `timeout` until process `pid` holds at most `count` descriptors (closes by the
/// server, its threads or children take a moment), polling `/proc/PID/fd`. Returns `Ok(n)`
/// with the count reached, or `Err(descriptors)` with the numbers still open at the deadline.
pub fn await_at_most(pid: u32, count: usize, timeout: std::time::Duration) -> Result<usize, Vec<u32>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let open = open_descriptors(pid).unwrap_or_default();
        if open.len() <= count {
            return Ok(open.len());
        }
        if std::time::Instant::now() >= deadline {
            return Err(open);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The log line fragment every server of the course writes when `accept` runs out of
/// descriptors and it backs off: `accept failed: Too many open files (os error 24); backing off
/// 100 ms (still serving)`.
pub const BACKOFF_LOG: &str = "backing off";

/// Waits up to `timeout` until `server` has logged `count` lines containing [`BACKOFF_LOG`]
/// since it ran out of descriptors at `since`, and checks that it backed off rather than spun:
/// no more than one such line per 20 ms on average (plus 5). Returns how many there were.
///
/// # Errors
/// What happened instead, in one paragraph with the end of the server's log: the server
/// exited (an `accept` error ended it), logged nothing of the kind in time, or logged the lines
/// so fast that it cannot have paused between attempts.
pub fn await_backoff(
    server: &mut ServerProcess,
    count: usize,
    since: std::time::Instant,
    timeout: std::time::Duration,
) -> Result<usize, String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let lines = server.stderr_lines();
        let seen = lines.iter().filter(|l| l.contains(BACKOFF_LOG)).count();
        if seen >= count {
            let elapsed = since.elapsed();
            let most = usize::try_from(elapsed.as_millis() / 20).unwrap_or(usize::MAX) + 5;
            if seen > most {
                return Err(format!(
                    "it logged {seen} lines containing {BACKOFF_LOG:?} in {} ms: it calls accept \
                     again at once instead of pausing, and spins at full speed while the shortage \
                     lasts{}",
                    elapsed.as_millis(),
                    log_tail(&lines)
                ));
            }
            return Ok(seen);
        }
        if let Some(status) = server.wait_exit(std::time::Duration::ZERO) {
            return Err(format!(
                "the server exited ({status}) instead of backing off: the accept error ended \
                 it{}",
                log_tail(&server.stderr_lines())
            ));
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "it logged {seen} of {count} lines containing {BACKOFF_LOG:?} within {} ms \
                 (log Event::AcceptBackoff each time accept fails this way, then sleep \
                 ACCEPT_BACKOFF and accept again){}",
                timeout.as_millis(),
                log_tail(&lines)
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The last lines of a server's log, for failure messages.
fn log_tail(lines: &[String]) -> String {
    let start = lines.len().saturating_sub(12);
    format!("\n--- the end of its stderr ---\n{}", lines[start..].join("\n"))
}

/// Runs `server` out of descriptors and back (Linux, with `prlimit(1)`): waits (up to 5 s)
/// until it holds at most `baseline` descriptors (those of earlier clients are closed a moment
/// after the clients leave), lowers its soft descriptor limit to the lowest number it does not
/// hold, calls `during` (which connects the clients that must wait), awaits two back-off lines
/// (see [`await_backoff`]), and restores the limit. Returns what `during` returned, or
/// `Ok(None)` when `prlimit` is not installed (after a notice; `during` is not called).
///
/// A blocking `accept` on Linux takes its descriptor number before it waits, so an `accept` in
/// progress when the limit drops still succeeds; `during` should first connect a client that
/// leaves at once, to use it up.
///
/// # Errors
/// What went wrong, in one paragraph: the server's descriptors cannot be read, or it did not
/// back off (see [`await_backoff`]).
pub fn run_out_of_descriptors<T>(
    server: &mut ServerProcess,
    baseline: usize,
    during: impl FnOnce() -> T,
) -> Result<Option<T>, String> {
    if !prlimit_available() {
        crate::testing::notice("descriptor exhaustion: skipped, prlimit(1) is not installed");
        return Ok(None);
    }
    let pid = server.id();
    // Lowering the limit while an earlier connection is still open would leave its number free
    // for the next accept once it closes.
    let _ = await_at_most(pid, baseline, std::time::Duration::from_secs(5));
    let free = lowest_free(pid).map_err(|e| format!("cannot read /proc/{pid}/fd: {e}"))?;
    let original = soft_limit(pid).ok_or_else(|| format!("cannot read /proc/{pid}/limits"))?;
    set_soft_limit(pid, u64::from(free))?;
    let lowered = std::time::Instant::now();
    let value = during();
    let waited = await_backoff(server, 2, lowered, std::time::Duration::from_secs(5));
    // Restore even after a failure; a server that has exited makes prlimit fail, and the
    // failure to report is then await_backoff's.
    let restored = set_soft_limit(pid, original);
    waited?;
    restored?;
    Ok(Some(value))
}
