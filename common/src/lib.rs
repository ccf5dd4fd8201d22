//! Shared helpers for the sockets course.
//!
//! - [`your_code_here`]: what a student skeleton calls where the solution was cut out.
//! - [`accept`]: which errors of `accept` a server survives, and how long it backs off after
//!   running out of descriptors (Labs 02, 03 and 05).
//! - [`ready`]: the `listening on IP:PORT` line every server prints first.
//! - [`endpoint`]: parsing `HOST:PORT` arguments with the system resolver.
//! - [`cli`]: the bound every millisecond option of the labs' command lines shares.
//! - [`testing`]: support for the grading suites (timeouts, child-process guards, deadlines,
//!   UDP and TCP sockets on loopback with timeouts set).
//! - [`relay`]: a seeded UDP relay that drops, duplicates, reorders, delays or truncates
//!   datagrams, so loopback behaves like a real network (Lab 01).
//! - [`tcp_relay`]: a seeded TCP relay that delivers a stream in 1-3 byte pieces or coalesces
//!   writes (Lab 02).
//! - [`descriptors`]: support for descriptor-exhaustion tests (a server under `ulimit -n`, its
//!   limit changed from outside, its open descriptors).
//!
//! Nothing here is socket code the labs teach; the labs' own crates hold that ([`accept`]
//! classifies errors for them, as a given helper).

pub mod accept;
pub mod cli;
pub mod descriptors;
pub mod endpoint;
pub mod ready;
pub mod relay;
pub mod tcp_relay;
pub mod testing;
pub mod transcript;

/// Marks a place where the student's code goes, and uses its arguments.
///
/// The generated skeletons call this just before a `todo!("lab NN step K: ...")` with the
/// parameters and locals the cut-out solution used, so the skeleton compiles without
/// "unused variable" warnings and without blanket `allow`s. It does nothing at run time.
///
/// ```
/// fn bind(port: u16) -> std::io::Result<std::net::UdpSocket> {
///     common::your_code_here(port);
///     todo!("lab 01 step 1: bind a datagram socket")
/// }
/// # let _ = bind;
/// ```
#[inline(always)]
pub fn your_code_here<T>(_uses: T) {}
