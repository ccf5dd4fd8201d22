//! `cargo lab dev check`: the authoring rules as code (placeholder, being written).

use std::path::Path;

use anyhow::Result;

use crate::manifest::Manifest;

/// Runs `cargo lab dev check`.
pub fn command(_root: &Path, _manifest: &Manifest) -> Result<bool> {
    Ok(true)
}
