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
use crate::student::demo::{self, RECORDINGS};

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
    let n = handout(root, manifest, dir, Demos::Record)?;
    println!("wrote a student handout of {n} files to {}", dir.display());
    println!(
        "next: cd {} && git init && git add -A && git commit -m 'Handout'",
        dir.display()
    );
    Ok(true)
}

/// Whether [`handout`] records the labs' demos (which builds and runs the reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demos {
    /// Record each lab's demo from a run of the reference, for the handout's `cargo lab demo`.
    Record,
    /// Leave them out (`cargo lab dev check`, which builds and runs nothing).
    Skip,
}

/// Writes a student handout of the repository at `root` into `dest` (which must not exist, or
/// be empty). Returns the number of files written.
pub fn handout(root: &Path, manifest: &Manifest, dest: &Path, demos: Demos) -> Result<usize> {
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
            "README.md" => student_readme(manifest).into_bytes(),
            _ if rel.starts_with("book/src/") && rel.ends_with(".md") => {
                student_page(&String::from_utf8(bytes)?)
                    .with_context(|| format!("in {rel}"))?
                    .into_bytes()
            }
            _ => bytes,
        };
        write(&rel, &bytes)?;
    }
    for lab in &manifest.labs {
        // A handout has no solution code to run, so its `cargo lab demo N` replays a recording
        // of the reference, made here from a real run.
        let recording = match demos {
            Demos::Record => {
                demo::record(root, lab).with_context(|| format!("recording the demo of {}", lab.name()))?
            }
            Demos::Skip => None,
        };
        if let Some(text) = recording {
            write(&format!("{RECORDINGS}/{}.txt", lab.dir_name()), text.as_bytes())?;
        }
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

/// The handout's README: what the course is, its labs, the set-up and the everyday commands as
/// they work in a handout, and how grading works. Generated, so it can never promise solutions.
fn student_readme(manifest: &Manifest) -> String {
    let labs: String = manifest
        .labs
        .iter()
        .map(|l| {
            format!(
                "| {:02} | {} | {} | `labs/{}` |\n",
                l.number,
                l.title,
                l.points(),
                l.dir_name()
            )
        })
        .collect();
    let total: u32 = manifest.labs.iter().map(crate::manifest::Lab::points).sum();
    let first = manifest.labs.first();
    let package = first.map_or_else(|| "lab01-udp".to_owned(), crate::manifest::Lab::lab_package);
    format!(
        "# Sockets in Rust: interprocess communication over the Internet\n\n\
         Your copy of a hands-on course in network programming with Rust's `std::net` and `socket2`.\n\
         Lab by lab you write real clients and servers; each lab has a chapter in the book, a skeleton\n\
         to complete, and a grading suite that explains every failure. All traffic stays on this\n\
         machine (loopback only).\n\n\
         | lab | topic | points | your code |\n| --- | --- | --- | --- |\n{labs}\n\
         ## Set up\n\n\
         You need Rust (stable, from [rustup](https://rustup.rs)) and git; `python3` is optional. Then,\n\
         at the root of this folder:\n\n\
         ```sh\n\
         cargo lab status    # your progress over all labs, and what to do next\n\
         cargo test          # every lab's grading suite on your code (it fails until you finish the labs)\n\
         ```\n\n\
         `cargo lab` is an alias (in `.cargo/config.toml`) for the course tool in `tests/course`.\n\n\
         ## Read the book\n\n\
         ```sh\n\
         cargo install mdbook --locked\n\
         mdbook serve book       # then open http://localhost:3000\n\
         ```\n\n\
         Start with \"Introduction and set-up\", then the foundations chapters, then Lab 01.\n\n\
         ## Working on a lab\n\n\
         1. `cargo lab status` names the next step and the book section to read.\n\
         2. Write your code in `labs/NN-slug/src/lib.rs`, where the `todo!(\"lab NN step K: ...\")` are.\n\
         3. `cargo lab watch` runs your current step's tests each time you save, and moves on when the\n   \
         step passes (`h` hint, `l` steps, `q` quit). `cargo lab test 1 --step 1` runs one step once;\n   \
         `cargo test -p {package} step1_` is the plain cargo command. `cargo lab hint 1 1` shows one hint at a time.\n\
         4. `cargo lab demo 1` replays a recording of the finished programs at work; `cargo lab demo 1\n   \
         --mine` runs the same exchange with yours.\n\
         5. `cargo lab reset 1` puts a lab back to its skeleton after asking, saving your files in\n   \
         `lab-backups/` first; `cargo lab restore` puts them back.\n\n\
         ## Grading\n\n\
         Each step of a lab is worth the points its manifest (`tests/NN-slug/lab.toml`) gives, {total} in\n\
         all; a step earns them when all of its tests pass. `cargo lab status` shows where you stand. If\n\
         your course uses GitHub Classroom, every push runs the same suites step by step\n\
         (`.github/workflows/classroom.yml`), and the run lists the points of each step. Don't edit the\n\
         suites in `tests/`: the grader uses its own copy.\n\n\
         ## Layout\n\n\
         ```\n\
         labs/NN-slug/   your code (package labNN-slug): src/lib.rs to complete, src/main.rs given\n\
         tests/NN-slug/  per lab: the manifest (lab.toml) and the grading suite (suite.rs)\n\
         tests/course/   the course tool, run as `cargo lab`\n\
         common/         shared helpers: the ready line, endpoints, test support\n\
         book/           the book (mdBook)\n\
         ```\n"
    )
}

/// A book page as a handout shows it. Two kinds of HTML comment mark text for one copy only:
/// `<!-- repository only -->` ... `<!-- end -->` is dropped (text about the reference solutions),
/// and the inside of a `<!-- handout only` ... `-->` comment, invisible in the repository's
/// book, becomes visible.
///
/// # Errors
/// A marker left open.
pub fn student_page(text: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut skipping = false;
    let mut showing = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if skipping {
            skipping = trimmed != "<!-- end -->";
            continue;
        }
        if showing {
            if trimmed == "-->" {
                showing = false;
            } else {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        match trimmed {
            "<!-- repository only -->" => skipping = true,
            "<!-- handout only" => showing = true,
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    ensure!(
        !skipping,
        "a `<!-- repository only -->` block has no `<!-- end -->`"
    );
    ensure!(!showing, "a `<!-- handout only` block has no closing `-->` line");
    Ok(out)
}

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
    fn book_pages_drop_repository_text_and_show_handout_text() {
        let page = "a\n<!-- repository only -->\nsolutions/ is here\n<!-- end -->\nb\n<!-- handout only\nno solutions here\n-->\nc\n";
        assert_eq!(student_page(page).expect("valid"), "a\nb\nno solutions here\nc\n");
        assert!(student_page("<!-- repository only -->\nx\n").is_err());
        assert!(student_page("<!-- handout only\nx\n").is_err());
    }

    #[test]
    fn the_student_readme_promises_no_solutions() {
        let manifest = Manifest::load(&crate::manifest::fixture_root()).expect("fixture");
        let text = student_readme(&manifest);
        assert!(!text.contains("solution"), "{text}");
        assert!(!text.contains("dev "), "{text}");
        assert!(
            text.contains("cargo lab status") && text.contains("cargo lab demo 1\n   --mine"),
            "{text}"
        );
    }

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
