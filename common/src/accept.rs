//! Errors of `accept`: which concern one connection, which the whole process for a while, and
//! which end a server.
//!
//! `accept(2)` fails for three kinds of reasons, and a server treats each differently:
//!
//! 1. **One connection.** `ECONNABORTED` (the client reset the connection while it waited in
//!    the backlog), `ECONNRESET` (the same on Windows and some BSDs), `EINTR` (a signal arrived
//!    before a connection did). Only that connection, or that call, is lost: log it and accept
//!    the next one at once. Linux also passes errors already pending on the new connection
//!    (`EPROTO`, `ENETDOWN`, `EHOSTUNREACH`, `ENETUNREACH`, ...) to `accept`, and accept(2) asks
//!    to treat them "like EAGAIN by retrying". The labs' own `is_per_connection` recognises the
//!    first three.
//! 2. **The whole process, for a while** ([`is_resource_exhaustion`]). `EMFILE` (this process
//!    has as many descriptors open as its limit, `ulimit -n`, allows), `ENFILE` (the whole
//!    system has), `ENOBUFS` and `ENOMEM` (no memory for the new socket, often the socket
//!    buffer limits rather than the RAM). The connection is not lost: on Linux it stays in the
//!    backlog, and `accept` succeeds once a client leaves and its descriptor is closed. So a
//!    server logs the error, waits a little ([`ACCEPT_BACKOFF`]), and tries again. It must not
//!    stop: the clients it is serving are fine, and a burst of connections would otherwise end
//!    it. It must not retry at once either: the listening socket is still readable, so a loop
//!    without a pause spins at full speed, writing a log line each turn, until a client leaves.
//! 3. **The server itself.** `EBADF`, `ENOTSOCK`, `EINVAL` (the socket is not listening),
//!    `EOPNOTSUPP`, `EFAULT`: the listening socket is broken or the program is wrong, and every
//!    later call would fail the same way. Return the error and let the program end.
//!
//! Sources: accept(2) (Linux man-pages, ERRORS and NOTES), POSIX `accept`, and WinSock's
//! `accept` (`WSAEMFILE` 10024, `WSAENOBUFS` 10055, `WSAECONNRESET` 10054).

use std::io;
use std::time::Duration;

/// How long a server waits before it calls `accept` again after an error for which
/// [`is_resource_exhaustion`] holds: 100 ms. Long enough not to spin (ten tries and ten log
/// lines a second), short enough that a client that comes once a descriptor is free waits
/// hardly at all.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Whether `e`, an error of `accept`, means the process or the system has run out of
/// descriptors or memory for the moment: `EMFILE`, `ENFILE`, `ENOBUFS` or `ENOMEM` on Unix,
/// `WSAEMFILE` or `WSAENOBUFS` on Windows, and any [`io::ErrorKind::OutOfMemory`].
///
/// Such an error concerns neither one client nor the listening socket: log it, sleep
/// [`ACCEPT_BACKOFF`], and accept again; the connections being served go on, and the waiting
/// ones are accepted once descriptors are free again. See the module documentation for the
/// other kinds of `accept` errors.
///
/// ```
/// use std::io;
/// use common::accept::is_resource_exhaustion;
///
/// assert!(is_resource_exhaustion(&io::Error::from(io::ErrorKind::OutOfMemory)));
/// assert!(!is_resource_exhaustion(&io::Error::from(io::ErrorKind::ConnectionAborted)));
/// # #[cfg(target_os = "linux")]
/// assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(24))); // EMFILE
/// ```
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    if e.kind() == io::ErrorKind::OutOfMemory {
        return true;
    }
    let Some(code) = e.raw_os_error() else {
        return false;
    };
    #[cfg(unix)]
    {
        use nix::errno::Errno;
        [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM]
            .iter()
            .any(|&errno| errno as i32 == code)
    }
    #[cfg(windows)]
    {
        // WSAEMFILE: too many open sockets; WSAENOBUFS: no buffer space available.
        const WSAEMFILE: i32 = 10024;
        const WSAENOBUFS: i32 = 10055;
        code == WSAEMFILE || code == WSAENOBUFS
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = code;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_connection_and_fatal_errors_are_not_exhaustion() {
        for kind in [
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::Interrupted,
            io::ErrorKind::InvalidInput,
            io::ErrorKind::WouldBlock,
        ] {
            assert!(!is_resource_exhaustion(&io::Error::from(kind)), "{kind:?}");
        }
        assert!(!is_resource_exhaustion(&io::Error::other("not an OS error")));
    }

    #[cfg(unix)]
    #[test]
    fn the_four_unix_errnos_are_exhaustion_and_their_neighbours_are_not() {
        use nix::errno::Errno;
        for errno in [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM] {
            let e = io::Error::from_raw_os_error(errno as i32);
            assert!(is_resource_exhaustion(&e), "{errno}: {e}");
        }
        for errno in [
            Errno::EBADF,
            Errno::EINVAL,
            Errno::ENOTSOCK,
            Errno::ECONNABORTED,
            Errno::EINTR,
            Errno::EAGAIN,
        ] {
            let e = io::Error::from_raw_os_error(errno as i32);
            assert!(!is_resource_exhaustion(&e), "{errno}: {e}");
        }
    }
}
