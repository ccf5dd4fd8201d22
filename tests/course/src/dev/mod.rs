//! The maintainers' commands, `cargo lab dev ...`: `sync` (skeletons and generated files from
//! the solutions and manifests), `verify` (every suite test fails on the skeleton and passes on
//! the solution), `check` (the authoring rules: book, manifests, suites and solutions agree),
//! `mutants` (the bug zoo: every mistake of `tests/NN-slug/mutants/` caught, with its message)
//! and `soak` (the reference suites many times, in parallel, under load).

pub mod check;
pub mod listings;
pub mod mutants;
pub mod soak;
pub mod sync;
pub mod testlist;
pub mod verify;
