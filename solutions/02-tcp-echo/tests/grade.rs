//! Runs the Lab 02 grading suite (`tests/02-tcp-echo/suite.rs`) against
//! this package: `cargo test -p solution02-tcp-echo`, or one step with
//! `cargo test -p solution02-tcp-echo step3_`.

use solution02_tcp_echo as lab;

/// The package's binary, built by cargo for this test.
const BIN: &str = env!("CARGO_BIN_EXE_solution02-tcp-echo");

#[path = "../../../tests/02-tcp-echo/suite.rs"]
mod suite;
