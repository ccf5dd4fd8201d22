//! `cargo lab watch`: re-runs the current step on every save (placeholder, being written).

use std::path::Path;

use anyhow::{Result, bail};

use crate::manifest::Manifest;

/// Runs `cargo lab watch`.
pub fn command(_root: &Path, _manifest: &Manifest, _lab: Option<u32>, _manual_run: bool) -> Result<bool> {
    bail!("cargo lab watch is not written yet")
}
