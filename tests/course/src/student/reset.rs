//! `cargo lab reset N`: a lab back to its generated skeleton, the student's files saved first
//! (after a confirmation; `--yes` skips it), and `cargo lab restore BACKUP`, which puts a saved
//! copy back.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use crate::dev::sync;
use crate::instructor::handout::{SKELETONS, walk};
use crate::manifest::{Lab, Manifest};

/// Where backups go, relative to the root (ignored by git).
pub const BACKUPS: &str = "lab-backups";

/// Runs `cargo lab reset N`: asks first unless `yes`; a session without a terminal must pass
/// `--yes`.
pub fn command(root: &Path, lab: &Lab, yes: bool) -> Result<bool> {
    if !yes {
        ensure!(
            std::io::stdin().is_terminal(),
            "cargo lab reset replaces your code in {}; without a terminal to ask, pass --yes",
            lab.lab_dir().display()
        );
        let question = format!(
            "Put {} back to its skeleton? Your files in {} are saved to {BACKUPS}/ first",
            lab.name(),
            lab.lab_dir().display()
        );
        let confirmed = dialoguer::Confirm::new()
            .with_prompt(question)
            .default(false)
            .interact()
            .context("cannot read the answer")?;
        if !confirmed {
            println!("Nothing changed.");
            return Ok(true);
        }
    }
    let backup = reset(root, lab)?;
    let shown = backup.strip_prefix(root).unwrap_or(&backup).display().to_string();
    println!(
        "{} is back to its skeleton; your files are in {shown}/",
        lab.name()
    );
    println!("To put them back: cargo lab restore {}", shown.replace('\\', "/"));
    Ok(true)
}

/// Runs `cargo lab restore BACKUP`: the lab the backup folder belongs to gets the saved files
/// back; what the lab holds now is saved first, as `reset` would.
pub fn restore_command(root: &Path, manifest: &Manifest, backup: &Path) -> Result<bool> {
    let dir = if backup.is_absolute() {
        backup.to_path_buf()
    } else {
        root.join(backup)
    };
    ensure!(
        dir.is_dir(),
        "{} is no backup folder (they are in {BACKUPS}/)",
        backup.display()
    );
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lab = manifest
        .labs
        .iter()
        .find(|l| name.starts_with(&format!("{}-", l.dir_name())))
        .with_context(|| format!("{name} is not named after a lab (NN-slug-DATE)"))?;
    let current = save(root, lab)?;
    let mut names = Vec::new();
    walk(&dir, Path::new(""), &mut names)?;
    let lab_dir = root.join(lab.lab_dir());
    for name in names {
        let to = lab_dir.join(&name);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(dir.join(&name), &to).with_context(|| format!("cannot restore {name}"))?;
    }
    println!("{} has the files of {} again.", lab.name(), backup.display());
    if let Some(current) = current {
        let shown = current
            .strip_prefix(root)
            .unwrap_or(&current)
            .display()
            .to_string();
        println!("What it held before is in {shown}/");
    }
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

/// A new backup folder for `lab`: `lab-backups/NN-slug-YYYY-MM-DD_HH-MM-SS/` in local time (a
/// suffix `-2`, `-3`, ... when one of that second exists).
fn backup_dir(root: &Path, lab: &Lab) -> PathBuf {
    let stamp = chrono::Local::now().format("%Y-%m-%d_%H-%M-%S");
    let base = root.join(BACKUPS).join(format!("{}-{stamp}", lab.dir_name()));
    let mut dir = base.clone();
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = PathBuf::from(format!("{}-{n}", base.display()));
    }
    dir
}

/// Moves the student's whole lab folder to a new backup folder and returns it (`None` when the
/// lab folder does not exist).
fn save(root: &Path, lab: &Lab) -> Result<Option<PathBuf>> {
    let dir = root.join(lab.lab_dir());
    if !dir.exists() {
        return Ok(None);
    }
    let backup = backup_dir(root, lab);
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
    Ok(Some(backup))
}

/// Puts `lab` back to its generated skeleton after moving the student's whole lab folder to
/// `lab-backups/NN-slug-YYYY-MM-DD_HH-MM-SS/`. Returns the backup folder.
pub fn reset(root: &Path, lab: &Lab) -> Result<PathBuf> {
    let files = pristine(root, lab)?;
    let Some(backup) = save(root, lab)? else {
        bail!(
            "{} does not exist, so there is nothing to reset",
            lab.lab_dir().display()
        );
    };
    for (path, contents) in files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(backup)
}
