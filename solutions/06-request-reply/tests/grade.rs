//! Runs the Lab 06 grading suite (`tests/06-request-reply/suite.rs`) against this package:
//! `cargo test -p solution06-request-reply`, or one step with `cargo test -p solution06-request-reply step3_`.

use solution06_request_reply as lab;

/// The package's binary, built by cargo for this test.
const BIN: &str = env!("CARGO_BIN_EXE_solution06-request-reply");

#[path = "../../../tests/06-request-reply/suite.rs"]
mod suite;
