//! Runs the Lab 01 grading suite (`tests/01-udp/suite.rs`) against
//! this package: `cargo test -p solution01-udp`, or one step with `cargo test -p solution01-udp step3_`.

use solution01_udp as lab;

/// The package's binary, built by cargo for this test.
const BIN: &str = env!("CARGO_BIN_EXE_solution01-udp");

#[path = "../../../tests/01-udp/suite.rs"]
mod suite;
