//! `cargo lab status` end to end on a copy of the fixture course: a lab that does not compile
//! keeps its tests in the total, marked as not compiling with its first error.

mod support;

use support::Course;

#[test]
fn a_lab_that_does_not_compile_keeps_its_tests_in_the_total() {
    let course = Course::new("status-broken");
    let lib = course.dir.join("labs/01-echo/src/lib.rs");
    let mut text = std::fs::read_to_string(&lib).expect("the fixture lab");
    text.push_str("\nfn broken( {\n");
    std::fs::write(&lib, text).expect("break the lab");
    let output = course
        .command(&["status"])
        .output()
        .expect("run cargo lab status");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let list = std::fs::read_to_string(course.dir.join("tests/01-echo/tests.toml")).expect("test list");
    let tests = list
        .lines()
        .find(|l| l.starts_with("linux"))
        .map_or(0, |l| l.matches("step").count());
    assert!(tests > 0, "the fixture's test list names no test:\n{list}");
    assert!(
        stdout.contains(&format!("does not compile, 0/{tests} tests")),
        "status must count the {tests} tests of the lab that does not compile:\n{stdout}"
    );
    assert!(
        stdout.contains(&format!("0/{tests} tests, 0 of 1 labs complete")),
        "{stdout}"
    );
    assert!(
        stdout.contains("error"),
        "status must show the first compiler error:\n{stdout}"
    );
}
