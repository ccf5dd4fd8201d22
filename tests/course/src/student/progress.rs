//! The student's hint progress: how many hints of each step they have seen, shared by
//! `cargo lab hint` and `cargo lab watch`, kept in `.course/progress.toml` in the repository
//! (ignored by git, so it is the student's alone; outside `target/`, so `cargo clean` keeps it).
//!
//! The file is TOML: `[hints]` maps `"NN-K"` (lab number, step number) to a count.
//!
//! ```toml
//! [hints]
//! 01-3 = 2
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Where the progress file lives, relative to the root.
pub const PROGRESS_FILE: &str = ".course/progress.toml";

/// Hints seen per step.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// `"NN-K"` to the number of hints of step K of lab NN seen so far.
    #[serde(default)]
    hints: BTreeMap<String, usize>,
}

impl Progress {
    fn path(root: &Path) -> PathBuf {
        root.join(PROGRESS_FILE)
    }

    /// The progress kept at `root`; empty when there is no file yet, or it does not parse (a
    /// broken file only costs the student their hint count).
    pub fn load(root: &Path) -> Progress {
        std::fs::read_to_string(Self::path(root))
            .ok()
            .and_then(|text| toml::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// Writes the progress back.
    ///
    /// # Errors
    /// When `.course/` cannot be created or the file cannot be written.
    pub fn save(&self, root: &Path) -> Result<()> {
        let path = Self::path(root);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = toml::to_string(self).context("cannot write the hint progress as TOML")?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    fn key(lab: u32, step: usize) -> String {
        format!("{lab:02}-{step}")
    }

    /// How many hints of `step` of lab `lab` were seen.
    pub fn hints_seen(&self, lab: u32, step: usize) -> usize {
        self.hints.get(&Self::key(lab, step)).copied().unwrap_or(0)
    }

    /// Records that `count` hints of the step were seen (never fewer than before).
    pub fn saw_hints(&mut self, lab: u32, step: usize, count: usize) {
        let seen = self.hints.entry(Self::key(lab, step)).or_insert(0);
        *seen = (*seen).max(count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_survive_a_save_and_never_go_down() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut p = Progress::load(dir.path());
        assert_eq!(p.hints_seen(1, 3), 0);
        p.saw_hints(1, 3, 2);
        p.saw_hints(1, 3, 1);
        p.save(dir.path()).expect("save");
        let again = Progress::load(dir.path());
        assert_eq!(again.hints_seen(1, 3), 2);
        assert_eq!(again.hints_seen(2, 3), 0);
        let text = std::fs::read_to_string(dir.path().join(PROGRESS_FILE)).expect("file");
        assert!(text.contains("01-3 = 2"), "{text}");
        std::fs::write(dir.path().join(PROGRESS_FILE), "not toml [").expect("write");
        assert_eq!(Progress::load(dir.path()), Progress::default());
    }
}
