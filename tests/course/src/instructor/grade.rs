//! `cargo lab grade`: runs every lab's suite on the student's packages and scores it from the
//! manifests, as a table, as JSON and as JUnit XML for a learning management system or a CI
//! dashboard.
//!
//! Scoring rule: step K of a lab earns its manifest `points` when every suite test of that step
//! (`stepK_...`) passes; a lab that does not compile scores 0. Reweighting a lab means editing
//! the `points` in its `tests/labs/NN-slug.toml`; nothing in the code changes.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;

use crate::manifest::{Lab, Manifest};
use crate::runner::SuiteRun;

/// The grades of every lab.
#[derive(Debug, Serialize)]
pub struct Gradebook {
    /// Points earned over all labs.
    pub points: u32,
    /// Points available over all labs.
    pub max_points: u32,
    /// One entry per lab, in lab order.
    pub labs: Vec<LabGrade>,
}

/// The grade of one lab.
#[derive(Debug, Serialize)]
pub struct LabGrade {
    /// Lab number.
    pub lab: u32,
    /// Lab title.
    pub title: String,
    /// The graded package, e.g. `lab01-udp`.
    pub package: String,
    /// Whether the package and its suite compiled.
    pub compiled: bool,
    /// Points earned.
    pub points: u32,
    /// Points available.
    pub max_points: u32,
    /// Suite tests passed.
    pub tests_passed: usize,
    /// Suite tests run.
    pub tests_total: usize,
    /// Per-step results.
    pub steps: Vec<StepGrade>,
    /// Per-test results.
    pub tests: Vec<TestGrade>,
}

/// The grade of one step.
#[derive(Debug, Serialize)]
pub struct StepGrade {
    /// Step number, 1-based.
    pub step: usize,
    /// Step title.
    pub title: String,
    /// Points earned (all or nothing).
    pub points: u32,
    /// Points available.
    pub max_points: u32,
    /// Tests passed.
    pub passed: usize,
    /// Tests of the step.
    pub total: usize,
}

/// The result of one suite test.
#[derive(Debug, Serialize)]
pub struct TestGrade {
    /// Test name, e.g. `step3_echoes_to_the_sender`.
    pub name: String,
    /// The step it belongs to.
    pub step: Option<usize>,
    /// Whether it passed.
    pub passed: bool,
    /// The failure message, if it failed.
    pub message: Option<String>,
}

/// Scores one lab's suite run.
pub fn score(lab: &Lab, package: &str, run: &SuiteRun) -> LabGrade {
    let steps: Vec<StepGrade> = lab
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (passed, total) = run.step(i + 1);
            let complete = run.compiled && total > 0 && passed == total;
            StepGrade {
                step: i + 1,
                title: s.title.clone(),
                points: if complete { s.points } else { 0 },
                max_points: s.points,
                passed,
                total,
            }
        })
        .collect();
    let tests = run
        .results
        .iter()
        .map(|(name, passed)| TestGrade {
            name: name.clone(),
            step: Lab::step_of(name),
            passed: *passed,
            message: run.failures.get(name).cloned(),
        })
        .collect();
    LabGrade {
        lab: lab.number,
        title: lab.title.clone(),
        package: package.to_owned(),
        compiled: run.compiled,
        points: steps.iter().map(|s| s.points).sum(),
        max_points: lab.points(),
        tests_passed: run.passed(),
        tests_total: run.total(),
        steps,
        tests,
    }
}

/// Scores every lab of `manifest` from its suite's run (`runs`, in the manifest's order).
pub fn gradebook(manifest: &Manifest, runs: &[SuiteRun]) -> Result<Gradebook> {
    ensure!(
        runs.len() == manifest.labs.len(),
        "{} suites ran for {} labs",
        runs.len(),
        manifest.labs.len()
    );
    let labs: Vec<LabGrade> = manifest
        .labs
        .iter()
        .zip(runs)
        .map(|(lab, run)| score(lab, &lab.lab_package(), run))
        .collect();
    Ok(Gradebook {
        points: labs.iter().map(|l| l.points).sum(),
        max_points: labs.iter().map(|l| l.max_points).sum(),
        labs,
    })
}

/// The gradebook as a table for the terminal.
pub fn table(book: &Gradebook) -> String {
    let mut out = format!("{:<6} {:<40} {:>12} {:>10}\n", "lab", "title", "tests", "points");
    for l in &book.labs {
        let tests = if l.compiled {
            format!("{}/{}", l.tests_passed, l.tests_total)
        } else {
            "no build".to_owned()
        };
        out.push_str(&format!(
            "{:<6} {:<40} {:>12} {:>10}\n",
            format!("{:02}", l.lab),
            l.title,
            tests,
            format!("{}/{}", l.points, l.max_points)
        ));
    }
    out.push_str(&format!(
        "{:<6} {:<40} {:>12} {:>10}\n",
        "total",
        "",
        "",
        format!("{}/{}", book.points, book.max_points)
    ));
    out
}

/// The gradebook as JUnit XML: one test suite per lab, one test case per suite test; each
/// suite's properties carry its points.
pub fn junit(book: &Gradebook) -> Result<String> {
    let mut report = Report::new("sockets-course");
    for l in &book.labs {
        let mut suite = TestSuite::new(format!("{:02} {}", l.lab, l.package));
        suite.add_property(("points", l.points.to_string().as_str()));
        suite.add_property(("max_points", l.max_points.to_string().as_str()));
        if !l.compiled {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message("the package or its suite does not compile");
            suite.add_test_case(TestCase::new("build", status));
        }
        for t in &l.tests {
            let status = if t.passed {
                TestCaseStatus::success()
            } else {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                if let Some(m) = &t.message {
                    status.set_message(m.lines().next().unwrap_or_default());
                    status.set_description(m.as_str());
                }
                status
            };
            let mut case = TestCase::new(t.name.as_str(), status);
            case.set_classname(l.package.as_str());
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string().context("cannot write the JUnit report")
}

/// Runs the grade command: prints the table, writes the optional JSON and JUnit files.
pub fn command(
    root: &Path,
    manifest: &Manifest,
    json: Option<&Path>,
    junit_file: Option<&Path>,
) -> Result<bool> {
    let packages: Vec<String> = manifest.labs.iter().map(Lab::lab_package).collect();
    let runs = crate::runner::with_spinner(format!("grading {} labs", packages.len()), || {
        crate::runner::run_suites(root, &packages, None)
    })?;
    let book = gradebook(manifest, &runs)?;
    print!("{}", table(&book));
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&book).context("cannot serialise the grades")?;
        std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = junit_file {
        std::fs::write(path, junit(&book)?).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::parse;

    fn fixture() -> Manifest {
        Manifest::load(&crate::manifest::fixture_root()).expect("the fixture's manifest loads")
    }

    #[test]
    fn a_step_earns_its_points_only_when_all_its_tests_pass() {
        let manifest = fixture();
        let lab = manifest.lab(1).expect("lab 1");
        let run = parse(
            "test suite::step1_a ... ok\ntest suite::step1_b ... ok\ntest suite::step2_a ... ok\n\
             test suite::step2_b ... FAILED\ntest result: FAILED. 3 passed; 1 failed;\n",
        );
        let grade = score(lab, "lab01-echo", &run);
        assert_eq!(grade.points, lab.steps[0].points, "step 1 complete, step 2 not");
        assert_eq!(grade.steps[1].points, 0);
        assert_eq!((grade.tests_passed, grade.tests_total), (3, 4));
        let broken = score(lab, "lab01-echo", &parse(""));
        assert_eq!((broken.compiled, broken.points), (false, 0));
    }

    #[test]
    fn json_and_junit_parse_back() {
        let manifest = fixture();
        let runs: Vec<SuiteRun> = manifest
            .labs
            .iter()
            .map(|_| {
                parse(
                    "test suite::step1_a ... ok\ntest suite::step2_a ... FAILED\n\n\
                     ---- suite::step2_a stdout ----\nthread 't' panicked at x.rs:1:1:\nexpected <1> & got \"2\"\n\n\
                     test result: FAILED. 1 passed; 1 failed;\n",
                )
            })
            .collect();
        let book = gradebook(&manifest, &runs).expect("gradebook");
        let json: serde_json::Value = serde_json::to_value(&book).expect("json");
        assert_eq!(json["labs"][0]["tests"][1]["message"], "expected <1> & got \"2\"");
        let xml = junit(&book).expect("junit");
        let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
        let failures = doc.descendants().filter(|n| n.has_tag_name("failure")).count();
        assert_eq!(failures, manifest.labs.len(), "one failing test per lab");
        assert!(
            table(&book)
                .lines()
                .last()
                .is_some_and(|l| l.starts_with("total"))
        );
    }
}
