//! `cargo lab handout DIR`: a student copy of the course without solutions or instructor pages.
//!
//! A handout keeps everything a student needs: `labs/` (freshly generated, never copied, so a
//! lab the instructor has filled in cannot leak), `tests/` (the suites, the manifests, the course
//! tool), `common/`, the book without the instructor guide, and the GitHub Classroom files. It
//! drops `solutions/`, `.ci/` and the course's own CI workflow, makes the labs the workspace's
//! default members (so `cargo test` grades them), and keeps a pristine copy of every skeleton in
//! `.course/skeletons/` for `cargo lab reset`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::dev::sync;
use crate::manifest::Manifest;

/// Where a handout keeps the pristine skeletons, relative to its root.
pub const SKELETONS: &str = ".course/skeletons";

/// Paths (relative, `/`-separated) that never go into a handout.
fn excluded(path: &str) -> bool {
    path.starts_with("solutions/")
        || path.starts_with("labs/") // regenerated instead of copied
        || path.starts_with(".ci/")
        || path.starts_with("target/")
        || path.starts_with("book/book/")
        || path.starts_with("lab-backups/")
        // The tool's own tests and their fixture course (which has a solutions/ of its own).
        || path.starts_with("tests/course/tests/")
        // The bug zoos: each mutant is a patch against a solution.
        || (path.starts_with("tests/") && path.contains("/mutants/"))
        || path == "book/src/instructor-guide.md"
        || path == ".github/workflows/ci.yml"
}

/// The repository's files: tracked and untracked-but-not-ignored ones when git is there,
/// otherwise every file outside `.git` and build output.
pub fn repository_files(root: &Path) -> Result<Vec<String>> {
    let git = Command::new("git")
        .current_dir(root)
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .output();
    if let Ok(out) = git {
        if out.status.success() {
            let text = String::from_utf8(out.stdout).context("git printed a non-UTF-8 path")?;
            return Ok(text
                .split('\0')
                .filter(|p| !p.is_empty() && root.join(p).is_file())
                .map(str::to_owned)
                .collect());
        }
    }
    let mut files = Vec::new();
    walk(root, Path::new(""), &mut files)?;
    Ok(files)
}

/// Every file under `root.join(rel)`, as `/`-separated paths relative to `root`, skipping `.git`,
/// `target` and the built book.
pub fn walk(root: &Path, rel: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let rel = rel.join(entry.file_name());
        let name = rel.to_string_lossy().replace('\\', "/");
        if name == ".git" || name == "target" || name == "book/book" {
            continue;
        }
        if entry.file_type()?.is_dir() {
            walk(root, &rel, out)?;
        } else {
            out.push(name);
        }
    }
    Ok(())
}

/// Runs `cargo lab handout DIR`.
pub fn command(root: &Path, manifest: &Manifest, dir: &Path) -> Result<bool> {
    let n = handout(root, manifest, dir)?;
    println!("wrote a student handout of {n} files to {}", dir.display());
    println!(
        "next: cd {} && git init && git add -A && git commit -m 'Handout'",
        dir.display()
    );
    Ok(true)
}

/// Writes a student handout of the repository at `root` into `dest` (which must not exist, or
/// be empty). Returns the number of files written.
pub fn handout(root: &Path, manifest: &Manifest, dest: &Path) -> Result<usize> {
    ensure!(
        root.join("solutions").exists(),
        "this is already a handout (there is no solutions/ here)"
    );
    if dest.exists() {
        ensure!(
            dest.read_dir()?.next().is_none(),
            "{} exists and is not empty; choose a new folder",
            dest.display()
        );
    }
    let mut written = 0;
    let mut write = |rel: &str, contents: &[u8]| -> Result<()> {
        let path = dest.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
        written += 1;
        Ok(())
    };
    for rel in repository_files(root)? {
        if excluded(&rel) {
            continue;
        }
        let bytes = std::fs::read(root.join(&rel)).with_context(|| format!("cannot read {rel}"))?;
        let bytes = match rel.as_str() {
            "Cargo.toml" => student_workspace(&String::from_utf8(bytes)?)?.into_bytes(),
            "book/src/SUMMARY.md" => String::from_utf8(bytes)?
                .lines()
                .filter(|l| !l.contains("instructor-guide.md"))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
                .into_bytes(),
            "README.md" => format!("{HANDOUT_NOTE}{}", String::from_utf8(bytes)?).into_bytes(),
            _ => bytes,
        };
        write(&rel, &bytes)?;
    }
    for lab in &manifest.labs {
        for file in sync::generate(root, lab)? {
            let rel = file.path.to_string_lossy().replace('\\', "/");
            write(&rel, file.contents.as_bytes())?;
            let pristine = Path::new(SKELETONS).join(file.path.strip_prefix("labs")?);
            write(
                &pristine.to_string_lossy().replace('\\', "/"),
                file.contents.as_bytes(),
            )?;
        }
    }
    Ok(written)
}

const HANDOUT_NOTE: &str = "> **Student handout.** The reference solutions and the instructor pages are not part of \
this copy. `cargo test` runs the grading suites on your labs: they fail until you complete the \
steps. Start with `cargo lab status`.\n\n";

/// The workspace manifest of a handout: no solution packages, and every member a default member.
fn student_workspace(text: &str) -> Result<String> {
    let mut doc: toml_edit::DocumentMut = text.parse().context("the root Cargo.toml does not parse")?;
    let workspace = doc["workspace"]
        .as_table_mut()
        .context("the root Cargo.toml has no [workspace]")?;
    let members = workspace["members"]
        .as_array_mut()
        .context("[workspace] has no members array")?;
    members.retain(|m| m.as_str() != Some("solutions/*"));
    workspace.remove("default-members");
    if let Some(mut key) = workspace.key_mut("members") {
        key.leaf_decor_mut()
            .set_prefix("# A student handout: the labs are default members, so `cargo test` grades them.\n");
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_student_workspace_drops_solutions_and_default_members() {
        let text = "[workspace]\nresolver = \"3\"\n# the instructor's comment\nmembers = [\"common\", \"tests\", \"solutions/*\", \"labs/*\"]\ndefault-members = [\"common\"]\n";
        let out = student_workspace(text).expect("edits");
        assert!(out.contains("the labs are default members"), "{out}");
        assert!(
            out.contains("members = [\"common\", \"tests\", \"labs/*\"]"),
            "{out}"
        );
        assert!(!out.contains("default-members"), "{out}");
    }
}
