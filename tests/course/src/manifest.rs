//! The course manifest, one file per lab in `tests/NN-slug/lab.toml`: the labs, their steps,
//! points, hints and demos. Adding a lab means adding its folder; nothing else lists the labs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde::Deserialize;

/// The whole manifest.
#[derive(Debug)]
pub struct Manifest {
    /// The labs in lecture order.
    pub labs: Vec<Lab>,
}

/// One lab.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lab {
    /// Its number, 1-based: lab 1 lives in `labs/01-<slug>`.
    pub number: u32,
    /// Its short name: `udp` gives `labs/01-udp`, package `lab01-udp`, `tests/01-udp/suite.rs`.
    pub slug: String,
    /// Its title.
    pub title: String,
    /// Its chapter file under `book/src`.
    pub chapter: String,
    /// How `cargo lab demo` runs it.
    pub demo: Option<Demo>,
    /// Its steps, in order; step K is `steps[K - 1]`.
    pub steps: Vec<Step>,
}

/// A step of a lab.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Its title, as in the chapter's heading.
    pub title: String,
    /// The heading id of the step in the chapter.
    pub section: String,
    /// Points for passing all of its tests.
    pub points: u32,
    /// Hints, the gentlest first, in Markdown: the only copy (`cargo lab hint` shows them, and
    /// `cargo lab dev sync` writes them to the book's hint file of the step).
    #[serde(default)]
    pub hints: Vec<String>,
}

/// The demo: optionally a server, then client (or peer) runs. With a server, `{addr}` in a
/// run's arguments becomes the endpoint of the server's ready line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Demo {
    /// Arguments of the server, if the demo has one.
    pub server: Option<Vec<String>>,
    /// Arguments of each client or peer run.
    pub clients: Vec<Vec<String>>,
    /// Start all runs at once (peers of a group) instead of one after the other.
    #[serde(default)]
    pub parallel: bool,
}

impl Manifest {
    /// Reads and checks every `tests/NN-slug/lab.toml` under `root`, in lab-number order.
    pub fn load(root: &Path) -> Result<Manifest> {
        let dir = root.join("tests");
        let mut labs = Vec::new();
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let path = entry?.path().join("lab.toml");
            if !path.is_file() {
                continue;
            }
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let lab: Lab =
                toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
            let expected = lab.dir_name();
            ensure!(
                path.parent()
                    .and_then(Path::file_name)
                    .is_some_and(|n| n == expected.as_str()),
                "{} describes lab {} `{}`, so it must be in tests/{expected}/",
                path.display(),
                lab.number,
                lab.slug
            );
            ensure!(!lab.steps.is_empty(), "{}: the lab has no steps", path.display());
            labs.push(lab);
        }
        labs.sort_by_key(|l| l.number);
        for pair in labs.windows(2) {
            ensure!(
                pair[0].number != pair[1].number,
                "two manifests describe lab {}",
                pair[0].number
            );
        }
        ensure!(
            !labs.is_empty(),
            "{} holds no lab manifests (NN-slug/lab.toml)",
            dir.display()
        );
        Ok(Manifest { labs })
    }

    /// All labs, or only lab `number`.
    pub fn select(&self, number: Option<u32>) -> Result<&[Lab]> {
        match number {
            None => Ok(&self.labs),
            Some(n) => {
                let i = self.labs.iter().position(|l| l.number == n);
                i.map(|i| &self.labs[i..=i])
                    .with_context(|| format!("there is no lab {n}"))
            }
        }
    }

    /// The lab numbered `number`.
    pub fn lab(&self, number: u32) -> Result<&Lab> {
        self.labs.iter().find(|l| l.number == number).with_context(|| {
            let numbers: Vec<String> = self.labs.iter().map(|l| l.number.to_string()).collect();
            format!("there is no lab {number}; the labs are {}", numbers.join(", "))
        })
    }
}

impl Lab {
    /// `01-udp`.
    pub fn dir_name(&self) -> String {
        format!("{:02}-{}", self.number, self.slug)
    }

    /// `lab01-udp`: the student's package.
    pub fn lab_package(&self) -> String {
        format!("lab{:02}-{}", self.number, self.slug)
    }

    /// `solution01-udp`: the reference package.
    pub fn solution_package(&self) -> String {
        format!("solution{:02}-{}", self.number, self.slug)
    }

    /// `labs/01-udp`, relative to the root.
    pub fn lab_dir(&self) -> PathBuf {
        Path::new("labs").join(self.dir_name())
    }

    /// `solutions/01-udp`, relative to the root.
    pub fn solution_dir(&self) -> PathBuf {
        Path::new("solutions").join(self.dir_name())
    }

    /// `Lab 01`.
    pub fn name(&self) -> String {
        format!("Lab {:02}", self.number)
    }

    /// The book's hint file of step `k` (1-based), relative to `book/src` (as a chapter includes
    /// it): `hints/lab01-udp-step3.md`. `cargo lab dev sync` writes it from the step's hints.
    pub fn hints_file(&self, k: usize) -> String {
        format!("hints/{}-step{k}.md", self.lab_package())
    }

    /// The test-name prefix of step `k` (1-based): `step3_`.
    pub fn step_prefix(k: usize) -> String {
        format!("step{k}_")
    }

    /// The 1-based step a test belongs to, from its name (`suite::step3_x` is step 3).
    pub fn step_of(test: &str) -> Option<usize> {
        let name = test.rsplit("::").next()?;
        let digits: String = name
            .strip_prefix("step")?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        name.strip_prefix("step")?
            .strip_prefix(digits.as_str())?
            .strip_prefix('_')?;
        digits.parse().ok()
    }

    /// Total points of the lab.
    pub fn points(&self) -> u32 {
        self.steps.iter().map(|s| s.points).sum()
    }
}

/// The fixture course of the tool's own tests (`tests/course/tests/fixture`): one lab, `01-echo`,
/// with two steps worth 40 and 60 points. Tests only read it; those that change it work on a copy.
#[cfg(test)]
pub fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_manifest_loads() {
        let manifest = Manifest::load(&fixture_root()).expect("tests/*/lab.toml load");
        let lab = manifest.lab(1).expect("lab 1");
        assert_eq!(lab.lab_package(), "lab01-echo");
        assert_eq!(lab.points(), 100);
        assert_eq!(lab.hints_file(2), "hints/lab01-echo-step2.md");
        assert!(manifest.lab(99).is_err());
        assert!(manifest.select(Some(2)).is_err());
    }

    #[test]
    fn a_broken_manifest_names_its_file() {
        let dir = std::env::temp_dir().join(format!("course-manifest-test-{}", std::process::id()));
        let lab = dir.join("tests/01-x");
        std::fs::create_dir_all(&lab).expect("create");
        std::fs::write(lab.join("lab.toml"), "number = 1\nslug = \"x\"\n").expect("write");
        let err = Manifest::load(&dir).expect_err("missing keys");
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert!(format!("{err:#}").contains("lab.toml is not valid"), "{err:#}");
    }

    #[test]
    fn tests_belong_to_steps_by_prefix() {
        assert_eq!(Lab::step_of("suite::step3_echoes"), Some(3));
        assert_eq!(Lab::step_of("step12_x"), Some(12));
        assert_eq!(Lab::step_of("suite::stepx_echoes"), None);
        assert_eq!(Lab::step_of("suite::step3echo"), None);
        assert_eq!(Lab::step_of("helper"), None);
    }
}
