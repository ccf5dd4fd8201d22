//! The maintainers' commands, `cargo lab dev ...`: `sync` (skeletons and generated files from
//! the solutions and manifests), `verify` (every suite test fails on the skeleton and passes on
//! the solution), `check` (the authoring rules: book, manifests, suites and solutions agree) and
//! `soak` (the reference suites many times, in parallel, under load).

pub mod check;
pub mod soak;
pub mod sync;
pub mod verify;
