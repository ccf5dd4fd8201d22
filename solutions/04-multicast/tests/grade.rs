//! Runs the Lab 04 grading suite (`tests/04-multicast/suite.rs`) against
//! this package: `cargo test -p solution04-multicast`, or one step with
//! `cargo test -p solution04-multicast step3_`.

use solution04_multicast as lab;

/// The package's binary, built by cargo for this test.
const BIN: &str = env!("CARGO_BIN_EXE_solution04-multicast");

#[path = "../../../tests/04-multicast/suite.rs"]
mod suite;
