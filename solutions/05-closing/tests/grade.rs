//! Runs the Lab 05 grading suite (`tests/05-closing/suite.rs`) against
//! this package: `cargo test -p solution05-closing`, or one step with
//! `cargo test -p solution05-closing step3_`.

use solution05_closing as lab;

/// The package's binary, built by cargo for this test.
const BIN: &str = env!("CARGO_BIN_EXE_solution05-closing");

#[path = "../../../tests/05-closing/suite.rs"]
mod suite;
