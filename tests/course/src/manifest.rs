//! The course manifest, one file per lab in `tests/NN-slug/lab.toml`: the labs, their steps,
//! points, hints and demos. Adding a lab means adding its folder; nothing else lists the labs.

use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The demo (`[demo]`): one or more scenes, run one after the other. The `[demo]` table is the
/// first scene; each `[[demo.then]]` table, of the same shape, is one more.
///
/// ```toml
/// [demo]
/// title = "at-least-once"
/// server = ["server", "--port", "0"]
/// relay = { drop = 0.3, duplicate = 0.3, seed = 3 }
/// clients = [["client", "--server", "{relay}", "hello"]]
///
/// [[demo.then]]
/// title = "at-most-once"
/// server = ["server", "--port", "0", "--at-most-once"]
/// relay = { drop = 0.3, duplicate = 0.3, seed = 3 }
/// clients = [["client", "--server", "{relay}", "hello"]]
/// ```
#[derive(Debug, Deserialize)]
#[serde(from = "DemoTable")]
pub struct Demo {
    /// The scenes in the order they run: `[demo]` first, then each `[[demo.then]]`. Never empty.
    pub scenes: Vec<Scene>,
}

/// One scene of a demo: optionally a server (its own process, started for the scene and stopped
/// after it), optionally a relay in front of that server, then client (or peer) runs.
///
/// In a run's arguments, `{addr}` becomes the endpoint of the server's ready line and `{relay}`
/// the relay's endpoint, so a client can go through the relay or past it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scene {
    /// A heading printed before the scene (`== TITLE ==`).
    pub title: Option<String>,
    /// Arguments of the server, if the scene has one.
    pub server: Option<Vec<String>>,
    /// Arguments of each client or peer run.
    pub clients: Vec<Vec<String>>,
    /// Start all runs at once (peers of a group) instead of one after the other.
    #[serde(default)]
    pub parallel: bool,
    /// A lossy UDP relay in front of the server (`common::relay::UdpRelay`), same faults both ways.
    pub relay: Option<Relay>,
}

/// The faults of a scene's relay, applied the same way in both directions (client to server,
/// server to client). Every field is optional: the default relay forwards everything intact.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Relay {
    /// Probability (0 to 1) that a datagram is dropped.
    pub drop: f64,
    /// Probability (0 to 1) that a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability (0 to 1) that a datagram is held back and delivered after the next one.
    pub reorder: f64,
    /// Delay before each datagram is forwarded, in milliseconds.
    pub delay: u64,
    /// Seed of the fault generator: the same seed and the same traffic give the same faults.
    pub seed: u64,
}

/// `[demo]` as written: the first scene's keys beside the list of further scenes. serde cannot
/// combine `flatten` with `deny_unknown_fields`, hence the keys of [`Scene`] spelt out again.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoTable {
    title: Option<String>,
    server: Option<Vec<String>>,
    clients: Vec<Vec<String>>,
    #[serde(default)]
    parallel: bool,
    relay: Option<Relay>,
    #[serde(default)]
    then: Vec<Scene>,
}

impl From<DemoTable> for Demo {
    fn from(table: DemoTable) -> Demo {
        let first = Scene {
            title: table.title,
            server: table.server,
            clients: table.clients,
            parallel: table.parallel,
            relay: table.relay,
        };
        Demo {
            scenes: std::iter::once(first).chain(table.then).collect(),
        }
    }
}

impl Demo {
    /// Checks what the types cannot: every scene's relay has a server to stand in front of and
    /// probabilities between 0 and 1, its clients run one after the other, and `{addr}` and
    /// `{relay}` appear only where there is a server and a relay.
    ///
    /// # Errors
    /// A one-line message naming the scene (`scene 2 "at-most-once"`) and what to change.
    pub fn check(&self) -> Result<()> {
        for (k, scene) in self.scenes.iter().enumerate() {
            let name = match &scene.title {
                Some(title) => format!("demo scene {} {title:?}", k + 1),
                None => format!("demo scene {}", k + 1),
            };
            let uses = |placeholder: &str| scene.clients.iter().flatten().any(|a| a.contains(placeholder));
            ensure!(
                scene.server.is_some() || !uses("{addr}"),
                "{name}: a client's arguments use {{addr}}, but the scene has no server"
            );
            let Some(relay) = &scene.relay else {
                ensure!(
                    !uses("{relay}"),
                    "{name}: a client's arguments use {{relay}}, but the scene has no relay"
                );
                continue;
            };
            ensure!(
                scene.server.is_some(),
                "{name}: a relay needs a server to stand in front of; add `server = [...]` or remove `relay`"
            );
            ensure!(
                !scene.parallel,
                "{name}: a relay returns the server's datagrams to the client that sent last,                  so its clients must run one after the other (remove `parallel = true`)"
            );
            for (key, p) in [
                ("drop", relay.drop),
                ("duplicate", relay.duplicate),
                ("reorder", relay.reorder),
            ] {
                ensure!(
                    (0.0..=1.0).contains(&p),
                    "{name}: relay {key} = {p} is not a probability between 0 and 1"
                );
            }
        }
        Ok(())
    }
}

impl Default for Relay {
    /// No faults, seed 1 (as `cargo lab relay`).
    fn default() -> Relay {
        Relay {
            drop: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            delay: 0,
            seed: 1,
        }
    }
}

impl Relay {
    /// The faults of one direction, for `common::relay::UdpRelay::start`.
    pub fn faults(&self) -> common::relay::Faults {
        common::relay::Faults {
            drop: self.drop,
            duplicate: self.duplicate,
            reorder: self.reorder,
            delay: Duration::from_millis(self.delay),
            ..common::relay::Faults::default()
        }
    }

    /// The faults in words, for a demo's transcript: `drops 30%, duplicates 30%` (or `no faults`).
    pub fn describe(&self) -> String {
        let percent = |p: f64| (p * 1000.0).round() / 10.0;
        let mut parts = Vec::new();
        for (verb, p) in [
            ("drops", self.drop),
            ("duplicates", self.duplicate),
            ("reorders", self.reorder),
        ] {
            if p > 0.0 {
                parts.push(format!("{verb} {}%", percent(p)));
            }
        }
        if self.delay > 0 {
            parts.push(format!("delays each datagram {} ms", self.delay));
        }
        if parts.is_empty() {
            "no faults".to_owned()
        } else {
            parts.join(", ")
        }
    }
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
            if let Some(demo) = &lab.demo {
                demo.check()
                    .with_context(|| format!("{} is not valid", path.display()))?;
            }
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
/// with two steps worth 40 and 60 points and a demo of two scenes, each with a relay. Tests only
/// read it; those that change it work on a copy.
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

    /// The `[demo]` of a manifest made of `toml`, checked as [`Manifest::load`] checks it.
    fn parse_demo(toml: &str) -> Result<Demo> {
        #[derive(Deserialize)]
        struct Wrapper {
            demo: Demo,
        }
        let demo = toml::from_str::<Wrapper>(toml)?.demo;
        demo.check()?;
        Ok(demo)
    }

    #[test]
    fn the_fixture_demo_has_two_scenes_with_relays() {
        let manifest = Manifest::load(&fixture_root()).expect("tests/*/lab.toml load");
        let demo = manifest.lab(1).expect("lab 1").demo.as_ref().expect("a demo");
        let titles: Vec<_> = demo.scenes.iter().map(|s| s.title.as_deref()).collect();
        assert_eq!(
            titles,
            [Some("through a lossy relay"), Some("every datagram twice")]
        );
        let relays: Vec<_> = demo
            .scenes
            .iter()
            .map(|s| s.relay.clone().expect("a relay"))
            .collect();
        assert_eq!(
            relays[0],
            Relay {
                drop: 0.3,
                duplicate: 0.3,
                seed: 3,
                ..Relay::default()
            }
        );
        assert_eq!(relays[1].seed, 1, "the seed defaults to 1");
        assert_eq!(relays[0].describe(), "drops 30%, duplicates 30%");
        assert_eq!(relays[1].describe(), "duplicates 100%");
    }

    #[test]
    fn a_demo_without_relay_or_scenes_keeps_its_old_shape() {
        let demo = parse_demo("[demo]\nserver = [\"server\"]\nclients = [[\"client\", \"{addr}\"]]\n")
            .expect("valid");
        assert_eq!(demo.scenes.len(), 1);
        assert!(demo.scenes[0].relay.is_none() && demo.scenes[0].title.is_none());
        let peers =
            parse_demo("[demo]\nparallel = true\nclients = [[\"peer\"], [\"peer\"]]\n").expect("valid");
        assert!(peers.scenes[0].parallel && peers.scenes[0].server.is_none());
    }

    #[test]
    fn relays_are_described_in_percent_and_milliseconds() {
        let relay = Relay {
            drop: 0.125,
            reorder: 0.1,
            delay: 20,
            ..Relay::default()
        };
        assert_eq!(
            relay.describe(),
            "drops 12.5%, reorders 10%, delays each datagram 20 ms"
        );
        assert_eq!(Relay::default().describe(), "no faults");
        assert_eq!(relay.faults().delay, Duration::from_millis(20));
    }

    #[test]
    fn a_relay_without_a_server_is_refused_in_one_line() {
        let dir = std::env::temp_dir().join(format!("course-manifest-relay-{}", std::process::id()));
        let lab = dir.join("tests/01-x");
        std::fs::create_dir_all(&lab).expect("create");
        let toml = "number = 1\nslug = \"x\"\ntitle = \"X\"\nchapter = \"lab01-x.md\"\n\
                    [demo]\nserver = [\"server\"]\nclients = [[\"client\"]]\n\
                    [[demo.then]]\ntitle = \"lossy\"\nrelay = { drop = 0.5 }\nclients = [[\"peer\"]]\n\
                    [[steps]]\ntitle = \"S\"\nsection = \"s\"\npoints = 1\n";
        std::fs::write(lab.join("lab.toml"), toml).expect("write");
        let err = Manifest::load(&dir).expect_err("a relay without a server");
        std::fs::remove_dir_all(&dir).expect("clean up");
        let text = format!("{err:#}");
        assert!(
            text.contains("lab.toml is not valid: demo scene 2 \"lossy\": a relay needs a server"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn demo_mistakes_are_refused() {
        let cases = [
            (
                "[demo]\nclients = [[\"c\", \"{addr}\"]]\n",
                "use {addr}, but the scene has no server",
            ),
            (
                "[demo]\nserver = [\"s\"]\nclients = [[\"c\", \"{relay}\"]]\n",
                "use {relay}, but the scene has no relay",
            ),
            (
                "[demo]\nserver = [\"s\"]\nparallel = true\nrelay = {}\nclients = [[\"c\"]]\n",
                "one after the other",
            ),
            (
                "[demo]\nserver = [\"s\"]\nrelay = { drop = 1.5 }\nclients = [[\"c\"]]\n",
                "relay drop = 1.5 is not a probability",
            ),
            (
                "[demo]\nserver = [\"s\"]\nrelay = { lose = 0.5 }\nclients = [[\"c\"]]\n",
                "unknown field `lose`",
            ),
            (
                "[demo]\nclients = [[\"c\"]]\n[[demo.then]]\nclients = [[\"c\"]]\n\
                 [[demo.then.then]]\nclients = [[\"c\"]]\n",
                "unknown field `then`",
            ),
            (
                "[demo]\nclients = [[\"c\"]]\nscene = 2\n",
                "unknown field `scene`",
            ),
        ];
        for (toml, expected) in cases {
            let err = parse_demo(toml).expect_err(toml);
            assert!(format!("{err:#}").contains(expected), "{toml}\n{err:#}");
        }
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
