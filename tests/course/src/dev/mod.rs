//! The maintainers' commands, `cargo lab dev ...`: `sync` (skeletons and generated files from
//! the solutions and manifests), `verify` (every suite test fails on the skeleton and passes on
//! the solution) and `check` (the authoring rules: book, manifests, suites and solutions agree).

pub mod check;
pub mod sync;
pub mod verify;
