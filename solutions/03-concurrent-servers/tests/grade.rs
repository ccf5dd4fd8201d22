//! Runs the Lab 03 grading suite (`tests/03-concurrent-servers/suite.rs`)
//! against this package: `cargo test -p solution03-concurrent-servers`, or one step with
//! `cargo test -p solution03-concurrent-servers step2_`.

use solution03_concurrent_servers as lab;

/// The package's binary, built by cargo for this test.
const BIN: &str = env!("CARGO_BIN_EXE_solution03-concurrent-servers");

#[path = "../../../tests/03-concurrent-servers/suite.rs"]
mod suite;
