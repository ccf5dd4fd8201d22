//! `cargo lab reset N`: a lab back to its generated skeleton, the student's files saved first.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};

use crate::dev::sync;
use crate::instructor::handout::{SKELETONS, walk};
use crate::manifest::Lab;

/// Runs `cargo lab reset N`.
pub fn command(root: &Path, lab: &Lab) -> Result<bool> {
    let backup = reset(root, lab)?;
    println!(
        "{} is back to its skeleton; your files are in {}",
        lab.name(),
        backup.display()
    );
    Ok(true)
}

/// The pristine files of `lab`'s skeleton: generated from the solution when it is here, or the
/// copy a handout keeps in [`SKELETONS`].
fn pristine(root: &Path, lab: &Lab) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    if root.join(lab.solution_dir()).exists() {
        return Ok(sync::generate(root, lab)?
            .into_iter()
            .map(|f| (f.path, f.contents.into_bytes()))
            .collect());
    }
    let base = root.join(SKELETONS).join(lab.dir_name());
    ensure!(
        base.exists(),
        "neither {} nor {} is here, so there is no skeleton to reset to",
        lab.solution_dir().display(),
        base.display()
    );
    let mut names = Vec::new();
    walk(&base, Path::new(""), &mut names)?;
    names
        .into_iter()
        .map(|name| Ok((lab.lab_dir().join(&name), std::fs::read(base.join(&name))?)))
        .collect()
}

/// Puts `lab` back to its generated skeleton after moving the student's whole lab folder to
/// `lab-backups/NN-slug-<seconds since 1970>/`. Returns the backup folder.
pub fn reset(root: &Path, lab: &Lab) -> Result<PathBuf> {
    let files = pristine(root, lab)?;
    let dir = root.join(lab.lab_dir());
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let backup = root
        .join("lab-backups")
        .join(format!("{}-{stamp}", lab.dir_name()));
    if backup.exists() {
        bail!("{} already exists; try again in a second", backup.display());
    }
    if dir.exists() {
        let mut names = Vec::new();
        walk(&dir, Path::new(""), &mut names)?;
        for name in names {
            let to = backup.join(&name);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(dir.join(&name), &to).with_context(|| format!("cannot back up {name}"))?;
        }
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    for (path, contents) in files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(backup)
}
