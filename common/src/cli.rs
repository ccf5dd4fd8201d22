//! Bounds shared by the labs' command lines.
//!
//! Every option given in milliseconds (`--timeout`, `--idle-timeout`, `--history-ttl`, ...)
//! accepts at most [`MAX_MS`]. Without a bound, a value such as `u64::MAX` makes a program wait
//! practically for ever, and deadline arithmetic (`Instant::now() + timeout`) panics when the
//! sum does not fit the platform's clock. clap rejects a larger value with one line that names
//! the option and the range; the labs' `main.rs` use it as
//! `clap::value_parser!(u64).range(1..=common::cli::MAX_MS)`.

/// The longest wait any option of the course accepts: one hour, 3 600 000 ms. No exchange on
/// loopback needs more, and `Instant + Duration::from_millis(MAX_MS)` cannot overflow on any
/// platform.
pub const MAX_MS: u64 = 60 * 60 * 1000;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_bound_is_an_hour_and_fits_an_instant() {
        assert_eq!(Duration::from_millis(MAX_MS), Duration::from_secs(3600));
        assert!(
            Instant::now()
                .checked_add(Duration::from_millis(MAX_MS))
                .is_some()
        );
    }
}
