//! The course manifest, `tests/labs.toml`: the labs, their steps, points, hints and demos.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde::Deserialize;

/// The whole manifest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The labs in lecture order.
    #[serde(rename = "lab")]
    pub labs: Vec<Lab>,
}

/// One lab.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lab {
    /// Its number, 1-based: lab 1 lives in `labs/01-<slug>`.
    pub number: u32,
    /// Its short name: `udp` gives `labs/01-udp`, package `lab01-udp`, suite `tests/01_udp.rs`.
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
    /// Hints, the gentlest first.
    #[serde(default)]
    pub hints: Vec<String>,
}

/// The demo: a server, then clients against the endpoint of its ready line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Demo {
    /// Arguments of the server.
    pub server: Vec<String>,
    /// Arguments of each client run; `{addr}` becomes the server's endpoint.
    pub clients: Vec<Vec<String>>,
}

impl Manifest {
    /// Reads and checks `tests/labs.toml` under `root`.
    pub fn load(root: &Path) -> Result<Manifest> {
        let path = root.join("tests/labs.toml");
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let manifest: Manifest =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        for (i, lab) in manifest.labs.iter().enumerate() {
            ensure!(
                lab.number as usize == i + 1,
                "labs.toml: lab {} is listed in position {}",
                lab.number,
                i + 1
            );
            ensure!(
                !lab.steps.is_empty(),
                "labs.toml: lab {} has no steps",
                lab.number
            );
        }
        Ok(manifest)
    }

    /// The lab numbered `number`.
    pub fn lab(&self, number: u32) -> Result<&Lab> {
        self.labs
            .iter()
            .find(|l| l.number == number)
            .with_context(|| format!("there is no lab {number}; the labs are 1 to {}", self.labs.len()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_manifest_loads() {
        let root = crate::root();
        let manifest = Manifest::load(&root).expect("tests/labs.toml loads");
        let lab = manifest.lab(1).expect("lab 1");
        assert_eq!(lab.lab_package(), "lab01-udp");
        assert_eq!(lab.points(), 100);
        assert!(manifest.lab(99).is_err());
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
