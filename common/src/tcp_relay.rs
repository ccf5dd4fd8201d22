//! TCP fault injection (Lab 02): a relay that delivers a stream in small pieces or coalesces
//! writes. Being written; see the Lab 02 issue.
