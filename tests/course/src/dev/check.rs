//! `cargo lab dev check`: the authoring rules as code. The book, the manifests, the suites and
//! the solutions must agree; this finds where they do not, fast (it runs no test and no cargo
//! build), and prints one line per problem: the file and line, what is wrong, how to fix it.
//!
//! The rules, one function each (each returns its problems):
//! - the manifests load ([`Manifest::load`]);
//! - a lab's chapter exists in `book/src` and `SUMMARY.md` lists it ([`chapter_rules`]);
//! - each step's `section` is a heading id of its chapter, computed as mdBook 0.5 does, and the
//!   heading reads "Step K: title" ([`section_rules`]);
//! - each step has hints, none empty or holding raw HTML ([`hint_rules`]); the chapter includes
//!   each step's generated hint file in the step's section and writes no hint block of its own
//!   ([`hint_include_rules`]);
//! - every `#[test]` of a suite is named `stepK_...` for a step K of the manifest, and every step
//!   has tests ([`test_rules`]); the chapter names every test ([`named_test_rules`]) and no test
//!   the suite does not have ([`stale_test_name_rules`]);
//! - every "§ Heading" cited in a suite or a solution is a heading of the book, of lab NN's
//!   chapter for "Lab NN § Heading" ([`citation_rules`]);
//! - every `{{#include file:anchor}}` (and `rustdoc_include`, `playground`) of the book names a
//!   file that exists and an anchor that file has, never a line range and never the student's
//!   `labs/` ([`include_rules`]); a `rust,ignore` block is only an included fragment
//!   ([`ignore_rules`]);
//! - the solution markers are valid ([`marker_rules`]) and `labs/`, the hint files and the
//!   Classroom files are exactly what `cargo lab dev sync` generates ([`generated_rules`]);
//! - every mutant of a lab's bug zoo parses, applies to the current solution, and names suite
//!   tests that exist ([`mutant_rules`]);
//! - a student handout holds no solution code ([`handout_rules`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::mutants;
use super::sync::{self, BOOK_SRC, Generated};
use crate::instructor::{classroom, handout};
use crate::manifest::{Lab, Manifest};

/// One broken rule: where (a file, with its line when known) and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Problem {
    /// `book/src/lab01-udp.md:42`, `tests/01-udp/lab.toml`, or empty when nowhere in particular.
    pub place: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Problem {
    fn at(file: impl fmt::Display, line: Option<usize>, message: impl Into<String>) -> Problem {
        let place = match line {
            Some(n) => format!("{file}:{n}"),
            None => file.to_string(),
        };
        Problem {
            place,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.place.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.place, self.message)
        }
    }
}

/// Runs `cargo lab dev check`: prints each problem, then `check: ok` or `check: N problems`.
pub fn command(root: &Path) -> Result<bool> {
    let problems = check(root);
    for p in &problems {
        println!("{p}");
    }
    match problems.len() {
        0 => println!("check: ok"),
        1 => println!("check: 1 problem"),
        n => println!("check: {n} problems"),
    }
    Ok(problems.is_empty())
}

/// Every problem of the course at `root`, in a stable order.
pub fn check(root: &Path) -> Vec<Problem> {
    let book = Book::load(root);
    let mut problems = book.problems.clone();
    for (rel, text) in &book.files {
        problems.extend(include_rules(root, rel, text));
        problems.extend(ignore_rules(rel, text));
    }
    let manifest = match Manifest::load(root) {
        Ok(m) => Some(m),
        Err(e) => {
            let message = format!("{e:#}").replace(&format!("{}/", root.display()), "");
            problems.push(Problem::at(
                "",
                None,
                format!("the manifests do not load: {message}"),
            ));
            None
        }
    };
    let labs: &[Lab] = manifest.as_ref().map_or(&[], |m| &m.labs);
    // The handout is the slowest rule (it copies the course and generates every skeleton): run it
    // beside the others.
    std::thread::scope(|scope| {
        let leaks = manifest.as_ref().map(|m| scope.spawn(|| handout_rules(root, m)));
        for lab in labs {
            problems.extend(lab_rules(root, lab, &book));
        }
        let citable = Citable::new(&book, labs);
        for file in citing_files(root, labs) {
            if let Ok(text) = std::fs::read_to_string(root.join(&file)) {
                problems.extend(citation_rules(&file, &text, &citable));
            }
        }
        if let Some(m) = &manifest {
            problems.extend(generated_rules(root, m));
        }
        if let Some(leaks) = leaks {
            problems.extend(
                leaks
                    .join()
                    .unwrap_or_else(|_| vec![Problem::at("", None, "the handout check panicked")]),
            );
        }
    });
    let mut seen = HashSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    problems
}

/// The rules about one lab: its chapter, steps, hints, tests and solution markers.
fn lab_rules(root: &Path, lab: &Lab, book: &Book) -> Vec<Problem> {
    let toml_rel = format!("tests/{}/lab.toml", lab.dir_name());
    let toml = TomlLines::read(&root.join(&toml_rel));
    let mut problems = chapter_rules(lab, book, &toml_rel, &toml);
    problems.extend(hint_rules(lab, &toml_rel, &toml));
    let tests = suite_tests(root, lab);
    if tests.is_empty() {
        problems.push(Problem::at(
            format!("tests/{}", lab.dir_name()),
            None,
            "no suite tests found: write them in suite.rs (or suite/*.rs) as `#[test] fn stepK_...`",
        ));
    } else {
        problems.extend(test_rules(lab, &tests, &toml_rel, &toml));
    }
    let chapter_rel = format!("{BOOK_SRC}/{}", lab.chapter);
    if let Some(chapter) = book.files.get(&lab.chapter) {
        let headings = headings(chapter);
        problems.extend(section_rules(lab, &headings, &chapter_rel, &toml_rel, &toml));
        problems.extend(hint_include_rules(lab, chapter, &headings, &chapter_rel));
        problems.extend(named_test_rules(&tests, chapter, &chapter_rel));
        problems.extend(stale_test_name_rules(&tests, chapter, &chapter_rel));
    }
    problems.extend(marker_rules(root, lab));
    problems.extend(mutant_rules(root, lab, &tests));
    problems
}

/// Every mutant of `tests/NN-slug/mutants/` parses, still applies to the solution's `lib.rs`
/// (a solution that changed under it would make `dev mutants` report it NOBUILD), and names in
/// `Caught-by` only tests the suite has.
fn mutant_rules(root: &Path, lab: &Lab, tests: &[TestFn]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let zoo = mutants::zoo_dir(lab);
    let Ok(entries) = std::fs::read_dir(root.join(&zoo)) else {
        return problems;
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
    {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let rel = zoo
            .join(format!("{name}.patch"))
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mutant = match mutants::parse(&name, Path::new(&rel), &text) {
            Ok(m) => m,
            Err(e) => {
                problems.push(Problem::at(&rel, None, format!("{e:#}")));
                continue;
            }
        };
        if let Err(e) = mutants::apply(root, lab, &mutant) {
            problems.push(Problem::at(&rel, None, format!("{e:#}")));
        }
        for t in &mutant.caught_by {
            if !tests.iter().any(|f| &f.name == t) {
                problems.push(Problem::at(
                    &rel,
                    None,
                    format!("`Caught-by: {t}` names no test of the suite"),
                ));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// The book

/// The book's Markdown files, `book/src/**/*.md`, by path relative to `book/src`.
struct Book {
    files: BTreeMap<String, String>,
    problems: Vec<Problem>,
}

impl Book {
    fn load(root: &Path) -> Book {
        let src = root.join(BOOK_SRC);
        let mut names = Vec::new();
        let mut problems = Vec::new();
        if let Err(e) = handout::walk(&src, Path::new(""), &mut names) {
            problems.push(Problem::at(
                BOOK_SRC,
                None,
                format!("cannot list the book: {e:#}"),
            ));
        }
        let files = names
            .into_iter()
            .filter(|n| n.ends_with(".md"))
            .filter_map(|n| std::fs::read_to_string(src.join(&n)).ok().map(|t| (n, t)))
            .collect();
        Book { files, problems }
    }

    /// The headings of every chapter (every Markdown file but `SUMMARY.md` and the hint files),
    /// with the file they are in.
    fn all_headings(&self) -> Vec<(&str, Heading)> {
        self.files
            .iter()
            .filter(|(n, _)| *n != "SUMMARY.md" && !n.starts_with("hints/"))
            .flat_map(|(n, t)| headings(t).into_iter().map(move |h| (n.as_str(), h)))
            .collect()
    }
}

/// A heading of a chapter.
#[derive(Debug, Clone, PartialEq)]
struct Heading {
    /// Its 1-based line.
    pub line: usize,
    /// 1 for `#`, 2 for `##` ...
    pub level: usize,
    /// Its text without Markdown markup (`` `SO_LINGER` `` reads `SO_LINGER`).
    pub text: String,
    /// Its HTML id, as mdBook gives it.
    pub id: String,
}

/// The ATX headings (`## Title`) of a Markdown text, outside fenced code blocks, with the ids
/// mdBook 0.5 gives them: an explicit `{#id}` attribute as written; otherwise the heading's text,
/// trimmed and lowercased, keeping alphanumerics, `_` and `-`, spaces becoming `-`, every other
/// character dropped, and `-1`, `-2` ... appended to repeats within the chapter
/// (`mdbook-html`'s `id_from_content` and `unique_id`). mdBook's smart punctuation turns `--`
/// outside code into a dash, which the id then drops. (mdBook counts definition-list terms
/// with the headings; the book has none.)
fn headings(markdown: &str) -> Vec<Heading> {
    let mut out = Vec::new();
    let mut used = HashSet::new();
    let mut fence: Option<(char, usize)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let body = line.trim_start_matches(' ');
        let run = |c: char| body.chars().take_while(|&x| x == c).count();
        if indent <= 3 {
            let (ticks, tildes) = (run('`'), run('~'));
            let opening = if ticks >= 3 {
                Some(('`', ticks))
            } else if tildes >= 3 {
                Some(('~', tildes))
            } else {
                None
            };
            match (fence, opening) {
                (None, Some(open)) => {
                    fence = Some(open);
                    continue;
                }
                (Some((c, n)), Some((c2, n2))) if c == c2 && n2 >= n && body[n2..].trim().is_empty() => {
                    fence = None;
                    continue;
                }
                _ => {}
            }
        }
        if fence.is_some() || indent > 3 {
            continue;
        }
        let level = run('#');
        if !(1..=6).contains(&level) {
            continue;
        }
        let rest = &body[level..];
        if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
            continue;
        }
        let mut content = rest.trim();
        // An optional closing sequence of `#`s.
        let without_hashes = content.trim_end_matches('#');
        if without_hashes.is_empty() || without_hashes.ends_with([' ', '\t']) {
            content = without_hashes.trim_end();
        }
        // Heading attributes: `{#id .class}`.
        let mut explicit = None;
        if content.ends_with('}') {
            if let Some(open) = content.rfind('{') {
                explicit = content[open + 1..content.len() - 1]
                    .split_whitespace()
                    .find_map(|a| a.strip_prefix('#'))
                    .map(str::to_owned);
                content = content[..open].trim_end();
            }
        }
        let (text, id_source) = plain_text(content);
        let id = match explicit {
            Some(id) => id,
            None => unique_id(&id_from_content(&id_source), &mut used),
        };
        out.push(Heading {
            line: i + 1,
            level,
            text,
            id,
        });
    }
    out
}

/// The text of inline Markdown without its markup, and the same text as mdBook's id sees it
/// (smart punctuation applied: runs of `-` outside code spans become dashes, here dropped).
fn plain_text(inline: &str) -> (String, String) {
    let mut text = String::new();
    let mut id = String::new();
    let mut chars = inline.chars().peekable();
    let mut in_code = false;
    let mut dashes = 0;
    let flush = |dashes: &mut usize, id: &mut String| {
        if *dashes == 1 {
            id.push('-');
        }
        *dashes = 0;
    };
    while let Some(c) = chars.next() {
        if c != '-' || in_code {
            flush(&mut dashes, &mut id);
        }
        match c {
            '`' => in_code = !in_code,
            '\\' if !in_code => {
                if let Some(&next) = chars.peek() {
                    if next.is_ascii_punctuation() {
                        chars.next();
                        text.push(next);
                        id.push(next);
                        continue;
                    }
                }
                text.push(c);
                id.push(c);
            }
            '!' if !in_code && chars.peek() == Some(&'[') => {}
            '*' | '[' if !in_code => {}
            ']' if !in_code => {
                // `[text](url)`: drop the `(url)`.
                if chars.peek() == Some(&'(') {
                    for c in chars.by_ref() {
                        if c == ')' {
                            break;
                        }
                    }
                }
            }
            '-' if !in_code => {
                text.push(c);
                dashes += 1;
            }
            _ => {
                text.push(c);
                id.push(c);
            }
        }
    }
    flush(&mut dashes, &mut id);
    (text.trim().to_owned(), id)
}

/// mdBook's `id_from_content`.
fn id_from_content(content: &str) -> String {
    content
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c)
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// mdBook's `unique_id`.
fn unique_id(id: &str, used: &mut HashSet<String>) -> String {
    if used.insert(id.to_owned()) {
        return id.to_owned();
    }
    (1..)
        .map(|n| format!("{id}-{n}"))
        .find(|candidate| used.insert(candidate.clone()))
        .unwrap_or_default()
}

/// The lines of `headings[at]`'s section: from its heading to the next heading of the same or
/// a higher level (1-based, end exclusive; `usize::MAX` for the end of the file).
fn section_lines(headings: &[Heading], at: usize) -> (usize, usize) {
    let h = &headings[at];
    let end = headings[at + 1..]
        .iter()
        .find(|n| n.level <= h.level)
        .map_or(usize::MAX, |n| n.line);
    (h.line, end)
}

// ---------------------------------------------------------------------------------------------
// Manifests: line numbers for messages

/// A lab.toml's text, parsed with spans, to point at the line of a key.
struct TomlLines {
    text: String,
    doc: Option<toml_edit::Document<String>>,
}

impl TomlLines {
    fn read(path: &Path) -> TomlLines {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let doc = toml_edit::Document::parse(text.clone()).ok();
        TomlLines { text, doc }
    }

    fn line(&self, span: Option<std::ops::Range<usize>>) -> Option<usize> {
        span.map(|s| line_of(&self.text, s.start))
    }

    /// The line of top-level `key`.
    fn key(&self, key: &str) -> Option<usize> {
        self.line(self.doc.as_ref()?.get(key)?.span())
    }

    fn step(&self, k: usize) -> Option<&toml_edit::Table> {
        self.doc.as_ref()?.get("steps")?.as_array_of_tables()?.get(k - 1)
    }

    /// The line of `key` in step `k` (1-based), or of the step's title when it has no such key.
    fn step_key(&self, k: usize, key: &str) -> Option<usize> {
        let step = self.step(k)?;
        let item = step.get(key).or_else(|| step.get("title"))?;
        self.line(item.span())
    }

    /// The line of hint `i` (0-based) of step `k`.
    fn hint(&self, k: usize, i: usize) -> Option<usize> {
        let hints = self.step(k)?.get("hints")?.as_array()?;
        self.line(hints.get(i)?.span())
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

// ---------------------------------------------------------------------------------------------
// Rules: chapters, sections, hints

/// The lab's chapter exists and `SUMMARY.md` lists it.
fn chapter_rules(lab: &Lab, book: &Book, toml_rel: &str, toml: &TomlLines) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !book.files.contains_key(&lab.chapter) {
        problems.push(Problem::at(
            toml_rel,
            toml.key("chapter"),
            format!(
                "chapter \"{}\" is not in {BOOK_SRC}: create {BOOK_SRC}/{} or fix `chapter`",
                lab.chapter, lab.chapter
            ),
        ));
    }
    let summary = book.files.get("SUMMARY.md").map_or("", String::as_str);
    if !summary.contains(&format!("]({})", lab.chapter)) {
        problems.push(Problem::at(
            format!("{BOOK_SRC}/SUMMARY.md"),
            None,
            format!(
                "does not list {}'s chapter: add `- [{}: {}]({})` under # Labs",
                lab.name(),
                lab.name(),
                lab.title,
                lab.chapter
            ),
        ));
    }
    problems
}

/// Each step's `section` is a heading id of the chapter, and that heading reads "Step K: title".
fn section_rules(
    lab: &Lab,
    headings: &[Heading],
    chapter_rel: &str,
    toml_rel: &str,
    toml: &TomlLines,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, step) in lab.steps.iter().enumerate() {
        let k = i + 1;
        match headings.iter().find(|h| h.id == step.section) {
            None => {
                let ids: Vec<&str> = headings.iter().map(|h| h.id.as_str()).collect();
                let hint = closest(&step.section, &ids)
                    .map(|id| format!(" (did you mean \"{id}\"?)"))
                    .unwrap_or_default();
                problems.push(Problem::at(
                    toml_rel,
                    toml.step_key(k, "section"),
                    format!(
                        "step {k}'s section \"{}\" is no heading id of {chapter_rel}{hint}: \
                         set it to the id of the step's heading",
                        step.section
                    ),
                ));
            }
            Some(h) => {
                let expected = format!("Step {k}: {}", step.title);
                if h.text != expected {
                    problems.push(Problem::at(
                        toml_rel,
                        toml.step_key(k, "title"),
                        format!(
                            "step {k}'s heading ({chapter_rel}:{}) reads \"{}\", not \"{expected}\": \
                             make the manifest's title and the heading agree",
                            h.line, h.text
                        ),
                    ));
                }
            }
        }
    }
    problems
}

/// Every step has hints; no hint is empty, or holds raw HTML (`<T>` outside backticks, which the
/// book would swallow as a tag).
fn hint_rules(lab: &Lab, toml_rel: &str, toml: &TomlLines) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, step) in lab.steps.iter().enumerate() {
        let k = i + 1;
        if step.hints.is_empty() {
            problems.push(Problem::at(
                toml_rel,
                toml.step_key(k, "hints"),
                format!("step {k} has no hints: add `hints = [...]`, the gentlest first"),
            ));
        }
        for (j, hint) in step.hints.iter().enumerate() {
            let line = toml.hint(k, j).or_else(|| toml.step_key(k, "hints"));
            if hint.trim().is_empty() {
                problems.push(Problem::at(
                    toml_rel,
                    line,
                    format!("hint {} of step {k} is empty: write it or remove it", j + 1),
                ));
            } else if let Some(tag) = raw_html(hint) {
                problems.push(Problem::at(
                    toml_rel,
                    line,
                    format!(
                        "hint {} of step {k} has `{tag}` outside backticks, which the book renders as an \
                         HTML tag: put the code in backticks",
                        j + 1
                    ),
                ));
            }
        }
    }
    problems
}

/// The first `<x` (a letter or `/` after `<`) outside code spans, if any.
fn raw_html(text: &str) -> Option<String> {
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            continue;
        }
        if let Some(at) = part.find('<') {
            let next = part[at + 1..].chars().next();
            if next.is_some_and(|c| c.is_ascii_alphabetic() || c == '/') {
                let tag: String = part[at..].chars().take_while(|&c| c != '>' && c != ' ').collect();
                return Some(format!("{tag}>"));
            }
        }
    }
    None
}

/// The chapter includes each step's hint file within the step's section, and has no
/// `<details>` block of its own (hints come from the manifest).
fn hint_include_rules(lab: &Lab, chapter: &str, headings: &[Heading], chapter_rel: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let includes = includes(chapter);
    for (i, step) in lab.steps.iter().enumerate() {
        let k = i + 1;
        let file = lab.hints_file(k);
        let Some(at) = headings.iter().position(|h| h.id == step.section) else {
            continue; // section_rules reports it
        };
        let (start, end) = section_lines(headings, at);
        let found: Vec<usize> = includes
            .iter()
            .filter(|inc| inc.path == file && inc.selector.is_none())
            .map(|inc| inc.line)
            .collect();
        if !found.iter().any(|&l| l > start && l < end) {
            let elsewhere = found
                .first()
                .map(|l| format!(" (line {l} includes it outside the step's section)"))
                .unwrap_or_default();
            problems.push(Problem::at(
                chapter_rel,
                Some(start),
                format!(
                    "step {k} does not show its hints{elsewhere}: add `{{{{#include {file}}}}}` after its check list"
                ),
            ));
        }
    }
    for (i, line) in chapter.lines().enumerate() {
        if line.contains("<details") {
            problems.push(Problem::at(
                chapter_rel,
                Some(i + 1),
                format!(
                    "a hint block written in the chapter: move its text to the step's hints in tests/{}/lab.toml \
                     (the chapter includes them from {BOOK_SRC}/hints/)",
                    lab.dir_name()
                ),
            ));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Rules: suites

/// A `#[test]` function of a suite.
#[derive(Debug, Clone, PartialEq)]
struct TestFn {
    /// Its file, relative to the root.
    pub file: String,
    /// The line of its `fn`.
    pub line: usize,
    /// Its name.
    pub name: String,
}

/// The suite files of `lab`: `tests/NN-slug/suite.rs` and every `.rs` under `tests/NN-slug/suite/`.
fn suite_files(root: &Path, lab: &Lab) -> Vec<String> {
    let dir = format!("tests/{}", lab.dir_name());
    let mut files = Vec::new();
    if root.join(&dir).join("suite.rs").is_file() {
        files.push(format!("{dir}/suite.rs"));
    }
    let mut nested = Vec::new();
    if root.join(&dir).join("suite").is_dir()
        && handout::walk(&root.join(&dir), Path::new("suite"), &mut nested).is_ok()
    {
        nested.sort();
        files.extend(
            nested
                .into_iter()
                .filter(|f| f.ends_with(".rs"))
                .map(|f| format!("{dir}/{f}")),
        );
    }
    files
}

fn suite_tests(root: &Path, lab: &Lab) -> Vec<TestFn> {
    suite_files(root, lab)
        .into_iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(root.join(&f)).unwrap_or_default();
            test_fns(&f, &text)
        })
        .collect()
}

/// The `#[test]` functions of a Rust file: `fn name` after a line starting with `#[test]`
/// (other attributes, comments and blank lines may stand between).
fn test_fns(file: &str, text: &str) -> Vec<TestFn> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(after) = line.trim_start().strip_prefix("#[test]") else {
            continue;
        };
        let candidates =
            std::iter::once((i, after)).chain((i + 1..lines.len().min(i + 20)).map(|j| (j, lines[j])));
        for (j, l) in candidates {
            let t = l.trim();
            if t.is_empty() || t.starts_with("#[") || t.starts_with("//") {
                continue;
            }
            let words: Vec<&str> = t.split_whitespace().collect();
            if let Some(at) = words.iter().position(|w| *w == "fn") {
                let name: String = words
                    .get(at + 1)
                    .unwrap_or(&"")
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(TestFn {
                        file: file.to_owned(),
                        line: j + 1,
                        name,
                    });
                }
            }
            break;
        }
    }
    out
}

/// Every test is `stepK_...` for a step K of the manifest, and every step has tests.
fn test_rules(lab: &Lab, tests: &[TestFn], toml_rel: &str, toml: &TomlLines) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut per_step = vec![0; lab.steps.len()];
    let n = lab.steps.len();
    for t in tests {
        match Lab::step_of(&t.name) {
            None => problems.push(Problem::at(
                &t.file,
                Some(t.line),
                format!(
                    "test `{}` is not named after its step: rename it `stepK_...` (K from 1 to {n}), \
                     or make it a helper without #[test]",
                    t.name
                ),
            )),
            Some(k) if k == 0 || k > n => problems.push(Problem::at(
                &t.file,
                Some(t.line),
                format!(
                    "test `{}` belongs to step {k}, but {} has steps 1 to {n} ({toml_rel}): rename it \
                     or add the step",
                    t.name,
                    lab.name()
                ),
            )),
            Some(k) => per_step[k - 1] += 1,
        }
    }
    for (i, count) in per_step.iter().enumerate() {
        if *count == 0 {
            problems.push(Problem::at(
                toml_rel,
                toml.step_key(i + 1, "title"),
                format!(
                    "step {} has no tests: the suite needs `#[test] fn {}...` for it",
                    i + 1,
                    Lab::step_prefix(i + 1)
                ),
            ));
        }
    }
    problems
}

/// The chapter names every test (in its step's check list), so a failing test's name leads the
/// student to the text that explains it.
fn named_test_rules(tests: &[TestFn], chapter: &str, chapter_rel: &str) -> Vec<Problem> {
    tests
        .iter()
        .filter(|t| !contains_word(chapter, &t.name))
        .map(|t| {
            Problem::at(
                &t.file,
                Some(t.line),
                format!(
                    "test `{}` is never named in {chapter_rel}: list it in its step's check list with \
                     the mistake it catches",
                    t.name
                ),
            )
        })
        .collect()
}

/// Every test the chapter names (a code span `stepK_name`) is a test of the suite: a renamed or
/// removed test leaves no stale name behind.
fn stale_test_name_rules(tests: &[TestFn], chapter: &str, chapter_rel: &str) -> Vec<Problem> {
    let names: HashSet<&str> = tests.iter().map(|t| t.name.as_str()).collect();
    let mut problems = Vec::new();
    for (i, line) in chapter.lines().enumerate() {
        for (j, span) in line.split('`').enumerate() {
            let is_name = span.starts_with("step")
                && !span.ends_with('_')
                && span.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && Lab::step_of(span).is_some();
            if j % 2 == 1 && is_name && !names.contains(span) {
                problems.push(Problem::at(
                    chapter_rel,
                    Some(i + 1),
                    format!("names test `{span}`, which the suite does not have: rename or remove it"),
                ));
            }
        }
    }
    problems
}

/// `text` has `word` with no identifier character just before or after it.
fn contains_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        !text[..at].chars().next_back().is_some_and(ident)
            && !text[at + word.len()..].chars().next().is_some_and(ident)
    })
}

// ---------------------------------------------------------------------------------------------
// Rules: § citations

/// A "§ Heading" cited in a source file.
#[derive(Debug, Clone, PartialEq)]
struct Citation {
    /// The line of the `§`.
    pub line: usize,
    /// `Some(3)` for "Lab 03 § ...".
    pub lab: Option<u32>,
    /// The text after the `§` to the end of its sentence, continued over a string's `\` line
    /// break or the next comment line; a section number ("1.4 ") dropped.
    pub text: String,
}

/// The "§ Heading" citations of a Rust file. A `§` followed by a number alone ("RFC 1112 § 4",
/// "§3.6") cites a standard, not the book, and a `§ {}` is a format placeholder: both are skipped.
fn citations(text: &str) -> Vec<Citation> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        for (at, _) in line.match_indices('§') {
            let before = &line[..at];
            let comment = before.contains("//");
            let mut rest = line[at + '§'.len_utf8()..].to_owned();
            let mut j = i;
            while j + 1 < lines.len() && j < i + 3 {
                let next = lines[j + 1];
                if !comment && rest.trim_end().ends_with('\\') {
                    // A string's line continuation skips the newline and the next line's indent.
                    let kept = rest.trim_end();
                    rest = format!("{}{}", &kept[..kept.len() - 1], next.trim_start());
                } else if comment
                    && !rest.contains([')', '"', '.', ';'])
                    && next.trim_start().starts_with("//")
                {
                    let t = next.trim_start().trim_start_matches('/').trim_start_matches('!');
                    rest = format!("{} {}", rest.trim_end(), t.trim());
                } else {
                    break;
                }
                j += 1;
            }
            let cited = rest.trim_start();
            if cited.starts_with('{') {
                continue;
            }
            // A section number: `1.4 Message size`.
            let digits = cited
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(cited.len());
            let cited = if digits > 0 && cited[digits..].starts_with(' ') {
                cited[digits..].trim_start()
            } else {
                cited
            };
            if !cited.starts_with(|c: char| c.is_uppercase() || c == '`') {
                continue;
            }
            let words: Vec<&str> = before.split_whitespace().collect();
            let lab = match words.as_slice() {
                [.., "Lab", n] => n.parse().ok(),
                _ => None,
            };
            out.push(Citation {
                line: i + 1,
                lab,
                text: cited.replace('`', ""),
            });
        }
    }
    out
}

/// The heading that `cited` begins with (the longest), if it then ends: a heading must be
/// followed by the end of the text or by punctuation (`)`, `"`, `;` ...), not by more words.
fn cited_heading<'a>(cited: &str, headings: &'a [String]) -> Option<&'a str> {
    headings
        .iter()
        .filter(|h| {
            !h.is_empty()
                && cited.starts_with(h.as_str())
                && !cited[h.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphanumeric() || c.is_whitespace() || c == '_' || c == '-')
        })
        .max_by_key(|h| h.len())
        .map(String::as_str)
}

/// The files whose § citations are checked: the suites and every Rust file of the solutions.
fn citing_files(root: &Path, labs: &[Lab]) -> Vec<String> {
    let mut files = Vec::new();
    for lab in labs {
        files.extend(suite_files(root, lab));
        let mut names = Vec::new();
        let dir = lab.solution_dir();
        if handout::walk(root, &dir, &mut names).is_ok() {
            names.sort();
            files.extend(names.into_iter().filter(|n| n.ends_with(".rs")));
        }
    }
    files
}

/// The headings a citation may name, as text: of the whole book, and of each lab's chapter.
struct Citable {
    all: Vec<String>,
    labs: HashMap<u32, (String, Vec<String>)>,
}

impl Citable {
    fn new(book: &Book, labs: &[Lab]) -> Citable {
        let all = book.all_headings().into_iter().map(|(_, h)| h.text).collect();
        let labs = labs
            .iter()
            .map(|lab| {
                let texts = book
                    .files
                    .get(&lab.chapter)
                    .map(|t| headings(t).into_iter().map(|h| h.text).collect())
                    .unwrap_or_default();
                (lab.number, (format!("{BOOK_SRC}/{}", lab.chapter), texts))
            })
            .collect();
        Citable { all, labs }
    }
}

/// Every "§ Heading" in `file` is a heading of the book ("Lab NN § Heading": of lab NN's chapter).
fn citation_rules(file: &str, text: &str, citable: &Citable) -> Vec<Problem> {
    let mut problems = Vec::new();
    for c in citations(text) {
        let (scope, names) = match c.lab {
            Some(n) => match citable.labs.get(&n) {
                Some((chapter, names)) => (chapter.as_str(), names),
                None => {
                    problems.push(Problem::at(
                        file,
                        Some(c.line),
                        format!("cites Lab {n:02}, which has no manifest"),
                    ));
                    continue;
                }
            },
            None => ("the book", &citable.all),
        };
        if cited_heading(&c.text, names).is_some() {
            continue;
        }
        let shown: String = c
            .text
            .split([')', '"', ';', '\\'])
            .next()
            .unwrap_or_default()
            .trim()
            .chars()
            .take(80)
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let hint = closest(&shown, &refs)
            .map(|h| format!(" (did you mean § {h}?)"))
            .unwrap_or_default();
        problems.push(Problem::at(
            file,
            Some(c.line),
            format!(
                "cites § {shown}, which is no heading of {scope}{hint}: cite a heading as written, \
                 ended by `)` or the end of the string"
            ),
        ));
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Rules: includes

/// An mdBook `{{#include ...}}` (or `rustdoc_include`, `playground`) of a Markdown file.
#[derive(Debug, Clone, PartialEq)]
struct Include {
    /// Its 1-based line.
    pub line: usize,
    /// `include`, `rustdoc_include` or `playground`.
    pub kind: String,
    /// The file, relative to the Markdown file's folder.
    pub path: String,
    /// What follows the path's first `:` (an anchor or a line range), if anything.
    pub selector: Option<String>,
}

/// The includes of a Markdown text, as mdBook's link preprocessor finds them: `{{#kind target}}`
/// anywhere (code blocks too); an escaped `\{{#...}}` is prose and skipped.
fn includes(markdown: &str) -> Vec<Include> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = markdown[from..].find("{{") {
        let at = from + pos;
        let inner_start = at + 2;
        let Some(close) = markdown[inner_start..].find("}}") else {
            break;
        };
        let inner = &markdown[inner_start..inner_start + close];
        from = inner_start + close + 2;
        if markdown[..at].ends_with('\\') || inner.contains('}') {
            continue;
        }
        let Some(link) = inner.trim_start().strip_prefix('#') else {
            continue;
        };
        let kind: String = link
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let target = link[kind.len()..].trim();
        if !matches!(kind.as_str(), "include" | "rustdoc_include" | "playground") || target.is_empty() {
            continue;
        }
        let spec = target.split_whitespace().next().unwrap_or_default();
        let (path, selector) = match spec.split_once(':') {
            Some((p, s)) => (p, Some(s.to_owned())),
            None => (spec, None),
        };
        out.push(Include {
            line: line_of(markdown, at),
            kind,
            path: path.to_owned(),
            selector,
        });
    }
    out
}

/// Every include of `book/src/<md>` names a file that exists and, with an anchor, an anchor
/// that file opens and closes around some lines; line ranges are refused (they rot silently).
/// A ```` ```rust,ignore ```` block holds only an included fragment (a listing's or a
/// solution's anchor, which cannot compile alone); any other Rust block must compile, so that
/// `mdbook test` proves it.
fn ignore_rules(md: &str, text: &str) -> Vec<Problem> {
    let md_rel = format!("{BOOK_SRC}/{md}");
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != "```rust,ignore" {
            continue;
        }
        let body: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.trim() != "```")
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        let fragment = !body.is_empty()
            && body
                .iter()
                .all(|l| l.starts_with("{{#include ") && l.contains(".rs:"));
        if !fragment {
            problems.push(Problem::at(
                &md_rel,
                Some(i + 1),
                "a `rust,ignore` block that is not an included fragment: make it compile (and `mdbook test` \
                 checks it), or include it from a file by anchor",
            ));
        }
    }
    problems
}

fn include_rules(root: &Path, md: &str, text: &str) -> Vec<Problem> {
    let md_rel = format!("{BOOK_SRC}/{md}");
    let base = root
        .join(BOOK_SRC)
        .join(md)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut problems = Vec::new();
    for inc in includes(text) {
        let at = |message: String| Problem::at(&md_rel, Some(inc.line), message);
        if inc.path.replace('\\', "/").split('/').any(|part| part == "labs") {
            problems.push(at(format!(
                "{{{{#{} {}}}}} includes from labs/, the student's working copy, whose code the book \
                 would then show: include the pristine listing, listings/NN-slug/FILE.rs, that `cargo lab dev sync` writes",
                inc.kind, inc.path
            )));
            continue;
        }
        let file = base.join(&inc.path);
        let Ok(source) = std::fs::read_to_string(&file) else {
            problems.push(at(format!(
                "{{{{#{} {}}}}}: there is no file {} (paths are relative to {}): fix the path{}",
                inc.kind,
                inc.path,
                inc.path,
                Path::new(&md_rel)
                    .parent()
                    .map_or(BOOK_SRC.into(), |p| p.display().to_string()),
                if inc.path.starts_with("hints/") {
                    ", or run `cargo lab dev sync` to write the hint files"
                } else {
                    ""
                }
            )));
            continue;
        };
        let Some(selector) = inc.selector.as_deref().filter(|s| !s.is_empty()) else {
            continue;
        };
        if inc.kind == "playground" {
            continue;
        }
        let first = selector.split(':').next().unwrap_or_default();
        if first.is_empty() || first.parse::<usize>().is_ok() {
            problems.push(at(format!(
                "{{{{#{} {}:{selector}}}}} includes lines by number, which shift when the file changes: \
                 mark the code with `// ANCHOR: name` ... `// ANCHOR_END: name` and include `{}:name`",
                inc.kind, inc.path, inc.path
            )));
            continue;
        }
        match anchored_lines(&source, first) {
            Err(message) => problems.push(at(format!(
                "{{{{#{} {}:{first}}}}}: {message}",
                inc.kind, inc.path
            ))),
            Ok(lines) if lines.iter().all(|l| l.trim().is_empty()) => problems.push(at(format!(
                "{{{{#{} {}:{first}}}}}: the anchor `{first}` holds no lines",
                inc.kind, inc.path
            ))),
            Ok(_) => {}
        }
    }
    problems
}

/// The name of an `ANCHOR:` (or, with `end`, `ANCHOR_END:`) line, as mdBook reads it
/// (`ANCHOR:\s*([\w_-]+)` anywhere in the line).
fn anchor_name(line: &str, end: bool) -> Option<&str> {
    let tag = if end { "ANCHOR_END:" } else { "ANCHOR:" };
    let at = line.find(tag)?;
    let rest = line[at + tag.len()..].trim_start();
    let len = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(rest.len());
    (len > 0).then(|| &rest[..len])
}

/// The lines between `ANCHOR: name` and `ANCHOR_END: name`, without other anchor lines.
fn anchored_lines<'a>(source: &'a str, name: &str) -> Result<Vec<&'a str>, String> {
    let mut lines = source.lines();
    if !lines.by_ref().any(|l| anchor_name(l, false) == Some(name)) {
        return Err(format!(
            "the file has no `ANCHOR: {name}` line, so mdBook would show an empty block: add `// ANCHOR: {name}` \
             and `// ANCHOR_END: {name}` around the code, or fix the name"
        ));
    }
    let mut kept = Vec::new();
    for l in lines {
        if anchor_name(l, true) == Some(name) {
            return Ok(kept);
        }
        if anchor_name(l, false).is_none() && anchor_name(l, true).is_none() {
            kept.push(l);
        }
    }
    Err(format!(
        "the file opens `ANCHOR: {name}` but has no `ANCHOR_END: {name}`, so mdBook would include the rest of \
         the file: close the anchor"
    ))
}

// ---------------------------------------------------------------------------------------------
// Rules: markers and generated files

/// The solution's markers are valid (`// >>> step K (uses): message` with a message, or
/// `// >>> solution only`, each closed by `// <<<`), as `cargo lab dev sync` applies them.
fn marker_rules(root: &Path, lab: &Lab) -> Vec<Problem> {
    let sources = match sync::sources(root, lab) {
        Ok(s) => s,
        Err(e) => return vec![Problem::at(lab.solution_dir().display(), None, format!("{e:#}"))],
    };
    let mut problems = Vec::new();
    for rel in sources
        .iter()
        .filter(|r| r.extension().is_some_and(|e| e == "rs"))
    {
        let shown = lab
            .solution_dir()
            .join(rel)
            .display()
            .to_string()
            .replace('\\', "/");
        let Ok(text) = std::fs::read_to_string(root.join(lab.solution_dir()).join(rel)) else {
            problems.push(Problem::at(&shown, None, "cannot be read"));
            continue;
        };
        if let Err(e) = sync::cut_solutions(&text, lab.number, &shown) {
            // The error names the file and line.
            problems.push(Problem::at("", None, e.to_string()));
        }
    }
    problems
}

/// `labs/`, the book's hint files and the Classroom files are what `cargo lab dev sync` writes,
/// and nothing else is there: no stray file in `labs/NN-slug` or `book/src/hints`, no folder in
/// `labs/` or `solutions/` without a manifest.
fn generated_rules(root: &Path, manifest: &Manifest) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut expected: Vec<Generated> = classroom::generate(manifest);
    let mut ungenerated: BTreeSet<String> = BTreeSet::new();
    for lab in &manifest.labs {
        match sync::generate(root, lab) {
            Ok(files) => expected.extend(files),
            Err(e) => {
                // Broken markers are reported by marker_rules; say only what else went wrong.
                if marker_rules(root, lab).is_empty() {
                    problems.push(Problem::at(
                        "",
                        None,
                        format!("cannot generate {}: {e:#}", lab.lab_dir().display()),
                    ));
                }
                ungenerated.insert(slash(&lab.lab_dir()));
            }
        }
        match sync::lab_files(root, lab) {
            Ok(files) => expected.extend(files),
            Err(e) => problems.push(Problem::at(
                "",
                None,
                format!("cannot generate {}'s files: {e:#}", lab.name()),
            )),
        }
    }
    let mut generated = BTreeSet::new();
    for file in &expected {
        let rel = slash(&file.path);
        generated.insert(rel.clone());
        match std::fs::read_to_string(root.join(&file.path)) {
            Err(_) => problems.push(Problem::at(
                &rel,
                None,
                "is missing: run `cargo lab dev sync` (it generates this file)",
            )),
            Ok(text) if text != file.contents => problems.push(Problem::at(
                &rel,
                first_difference(&text, &file.contents),
                format!(
                    "differs from what {} generates: run `cargo lab dev sync`",
                    source_of(&rel)
                ),
            )),
            Ok(_) => {}
        }
    }
    // Stray files where only generated ones belong.
    let labs: HashMap<String, &Lab> = manifest.labs.iter().map(|l| (l.dir_name(), l)).collect();
    for (top, what) in [("labs", "skeleton"), ("solutions", "solution")] {
        let Ok(entries) = std::fs::read_dir(root.join(top)) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            if !labs.contains_key(&name) {
                problems.push(Problem::at(
                    format!("{top}/{name}"),
                    None,
                    format!("a {what} without a manifest: add tests/{name}/lab.toml, or delete the folder"),
                ));
            } else if top == "labs" && !ungenerated.contains(&format!("labs/{name}")) {
                let mut files = Vec::new();
                if handout::walk(root, Path::new(&format!("labs/{name}")), &mut files).is_ok() {
                    files.sort();
                    let stray = files
                        .into_iter()
                        .filter(|f| !generated.contains(f) && !f.contains("/target/"));
                    for f in stray {
                        problems.push(Problem::at(
                            &f,
                            None,
                            format!(
                                "`cargo lab dev sync` does not generate this file: delete it, or add it to \
                                 solutions/{name} (the source of truth)"
                            ),
                        ));
                    }
                }
            }
        }
    }
    let mut hints = Vec::new();
    if handout::walk(root, Path::new(&format!("{BOOK_SRC}/hints")), &mut hints).is_ok() {
        hints.sort();
        for f in hints.into_iter().filter(|f| !generated.contains(f)) {
            problems.push(Problem::at(
                &f,
                None,
                "no step of any manifest has this hint file: delete it",
            ));
        }
    }
    problems
}

fn slash(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

/// Where a generated file comes from, for messages.
fn source_of(rel: &str) -> String {
    if let Some(rest) = rel.strip_prefix(&format!("{BOOK_SRC}/hints/")) {
        // hints/lab01-udp-step3.md comes from tests/01-udp/lab.toml.
        let dir = rest
            .strip_prefix("lab")
            .and_then(|r| r.rsplit_once("-step"))
            .map(|(d, _)| d);
        return dir.map_or("the manifests".to_owned(), |d| format!("tests/{d}/lab.toml"));
    }
    if let Some(rest) = rel.strip_prefix("labs/") {
        return format!("solutions/{}", rest.split('/').next().unwrap_or_default());
    }
    "the manifests".to_owned()
}

/// The first line where two texts differ.
fn first_difference(a: &str, b: &str) -> Option<usize> {
    let mut la = a.lines();
    let mut lb = b.lines();
    (1..).find(|_| {
        let (x, y) = (la.next(), lb.next());
        x != y || x.is_none()
    })
}

// ---------------------------------------------------------------------------------------------
// Rules: the handout

/// The code inside the solution regions of `text`, with the line of each: lines of real code (a
/// call or an assignment) long enough to be distinctive, not a bare name the book may mention.
fn solution_lines(text: &str) -> Vec<(usize, String)> {
    let mut inside = false;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with("// >>>") {
            inside = true;
        } else if t == "// <<<" {
            inside = false;
        } else if inside && t.len() >= 32 && !t.starts_with("//") && (t.contains('(') || t.contains(" = ")) {
            lines.push((i + 1, t.to_owned()));
        }
    }
    lines
}

/// A folder under the system's temporary folder, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Scratch(std::env::temp_dir().join(format!("course-{what}-{}-{nanos}", std::process::id())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Finds many fixed strings in texts at once: each needle is looked up by its first bytes.
struct Needles<'a> {
    by_prefix: HashMap<&'a [u8], Vec<usize>>,
    needles: &'a [String],
}

const PREFIX: usize = 16;

impl<'a> Needles<'a> {
    fn new(needles: &'a [String]) -> Needles<'a> {
        let mut by_prefix: HashMap<&[u8], Vec<usize>> = HashMap::new();
        for (i, n) in needles.iter().enumerate() {
            by_prefix
                .entry(&n.as_bytes()[..PREFIX.min(n.len())])
                .or_default()
                .push(i);
        }
        Needles { by_prefix, needles }
    }

    /// The (byte offset, needle index) of every needle found in `text`. Needles must be at
    /// least `PREFIX` bytes long.
    fn find(&self, text: &str) -> Vec<(usize, usize)> {
        let bytes = text.as_bytes();
        let mut found = Vec::new();
        for at in 0..bytes.len().saturating_sub(PREFIX - 1) {
            if let Some(ids) = self.by_prefix.get(&bytes[at..at + PREFIX]) {
                for &i in ids {
                    if bytes[at..].starts_with(self.needles[i].as_bytes()) {
                        found.push((at, i));
                    }
                }
            }
        }
        found
    }
}

/// A handout (`cargo lab handout`, built in a temporary folder) holds no solution code: no line
/// of a solution region appears in any of its files, no solution marker outside the course
/// tool's sources, no `solutions/`, no instructor guide.
fn handout_rules(root: &Path, manifest: &Manifest) -> Vec<Problem> {
    let scratch = Scratch::new("check-handout");
    if let Err(e) = handout::handout(root, manifest, &scratch.0, handout::Demos::Skip) {
        return vec![Problem::at("", None, format!("cannot build a handout: {e:#}"))];
    }
    let dest = &scratch.0;
    let read_all = |base: &Path, dir: &str, filter: &dyn Fn(&str) -> bool| -> Vec<(String, String)> {
        let mut names = Vec::new();
        let _ = handout::walk(base, Path::new(dir), &mut names);
        names.sort();
        names
            .into_iter()
            .filter(|n| filter(n))
            .filter_map(|n| std::fs::read_to_string(base.join(&n)).ok().map(|t| (n, t)))
            .collect()
    };
    // Every line of solution code, with where it comes from.
    let mut secrets: Vec<(String, usize, String)> = Vec::new();
    for (file, text) in read_all(root, "solutions", &|n| n.ends_with(".rs")) {
        secrets.extend(
            solution_lines(&text)
                .into_iter()
                .map(|(l, s)| (file.clone(), l, s)),
        );
    }
    // Lines the skeletons (outside their regions) or the shared code (common/, tests/) also have
    // are idioms, not solutions.
    let texts: Vec<String> = secrets.iter().map(|s| s.2.clone()).collect();
    let needles = Needles::new(&texts);
    let mut idioms = HashSet::new();
    let shared = read_all(root, "common", &|n| n.ends_with(".rs"))
        .into_iter()
        .chain(read_all(root, "tests", &|n| n.ends_with(".rs")))
        .chain(read_all(dest, "labs", &|_| true));
    for (_, text) in shared {
        idioms.extend(needles.find(&text).into_iter().map(|(_, i)| i));
    }
    let mut problems = Vec::new();
    let mut reported = HashSet::new();
    for (file, text) in read_all(dest, "", &|_| true) {
        if file.starts_with("solutions/") || file.contains("instructor-guide") {
            problems.push(Problem::at(
                &file,
                None,
                "is in the handout: the handout must leave it out",
            ));
        }
        if !file.starts_with("tests/course/")
            && !file.starts_with("labs/")
            && !file.starts_with(handout::SKELETONS)
        {
            if let Some(at) = text.find("// >>> step") {
                problems.push(Problem::at(
                    &file,
                    Some(line_of(&text, at)),
                    "holds a solution marker, `// >>> step`: a handout must not show where solutions go",
                ));
            }
        }
        // What students read must not send them to solutions or to the maintainers' commands.
        if file == "README.md" || (file.starts_with("book/src/") && file.ends_with(".md")) {
            for needle in [
                "solutions/",
                "cargo lab dev",
                "cargo lab grade",
                "cargo lab handout",
            ] {
                // An HTML comment line (a generated file's header) is not shown, and an include
                // is the include rules' business.
                let shown = text.lines().enumerate().find(|(_, l)| {
                    let l = l.trim_start();
                    !l.starts_with("<!--") && !l.starts_with("{{#") && l.contains(needle)
                });
                if let Some((n, _)) = shown {
                    problems.push(Problem::at(
                        &file,
                        Some(n + 1),
                        format!(
                            "the handout's copy names `{needle}`, which a student's copy does not have: \
                             put it between `<!-- repository only -->` and `<!-- end -->` (and the \
                             student's version in a `<!-- handout only` ... `-->` comment)"
                        ),
                    ));
                }
            }
        }
        for (at, i) in needles.find(&text) {
            if idioms.contains(&i) || !reported.insert((file.clone(), i)) {
                continue;
            }
            let (from, from_line, code) = &secrets[i];
            problems.push(Problem::at(
                &file,
                Some(line_of(&text, at)),
                format!(
                    "quotes solution code, `{code}` ({from}:{from_line}), and goes to students: reword it \
                     without the code"
                ),
            ));
        }
    }
    match std::fs::read_to_string(dest.join("Cargo.toml")) {
        Ok(cargo) if cargo.contains("solutions/") || cargo.contains("default-members") => {
            problems.push(Problem::at(
                "Cargo.toml",
                None,
                "the handout's workspace still names solutions/ or default-members: see student_workspace in instructor/handout.rs",
            ));
        }
        _ => {}
    }
    problems
}

// ---------------------------------------------------------------------------------------------

/// The candidate closest to `wanted` (by edit distance), if it is close enough to be a typo.
fn closest<'a>(wanted: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let best = candidates.iter().min_by_key(|c| edit_distance(wanted, c))?;
    (edit_distance(wanted, best) <= (wanted.chars().count() / 4).max(2)).then_some(*best)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(markdown: &str) -> Vec<String> {
        headings(markdown).into_iter().map(|h| h.id).collect()
    }

    #[test]
    fn heading_ids_follow_mdbook() {
        assert_eq!(
            ids(
                "# `--passes`: add more rustdoc passes\n## Method-call 🐙 expressions\n### _-_12345\n#### Über"
            ),
            [
                "--passes-add-more-rustdoc-passes",
                "method-call--expressions",
                "_-_12345",
                "über"
            ]
        );
        assert_eq!(
            ids("### Step 10: The client's exchange, with half-close\n## TIME_WAIT and SO_REUSEADDR"),
            [
                "step-10-the-clients-exchange-with-half-close",
                "time_wait-and-so_reuseaddr"
            ]
        );
        // Smart punctuation: `--` outside code is a dash, dropped.
        assert_eq!(
            ids("## The `--port` flag -- and more"),
            ["the---port-flag--and-more"]
        );
    }

    #[test]
    fn headings_repeat_explicit_ids_and_code_blocks() {
        let md = "# Steps\n\n```sh\n# not a heading\n```\n## Steps\n## Steps ##\n## Custom {#mine .x}\n    # indented code\n#nospace\n";
        let hs = headings(md);
        assert_eq!(
            hs.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
            ["steps", "steps-1", "steps-2", "mine"]
        );
        assert_eq!(hs[3].text, "Custom");
        assert_eq!((hs[1].line, hs[1].level), (6, 2));
        assert_eq!(
            headings("## [A link](x.md) and `code`")[0].text,
            "A link and code"
        );
    }

    #[test]
    fn sections_end_at_the_next_heading_of_their_level() {
        let hs = headings("## A\n### A1\ntext\n### A2\n## B\n");
        assert_eq!(section_lines(&hs, 0), (1, 5));
        assert_eq!(section_lines(&hs, 1), (2, 4));
        assert_eq!(section_lines(&hs, 3), (5, usize::MAX));
    }

    #[test]
    fn finds_includes_but_not_escaped_ones() {
        let md = "a {{#include ../x.rs:bind}}\n\\{{#include nope.rs}}\n{{ #rustdoc_include y.rs:1:3 }}\n{{#title T}}\n";
        let inc = includes(md);
        assert_eq!(inc.len(), 2, "{inc:?}");
        assert_eq!(
            (inc[0].line, inc[0].path.as_str(), inc[0].selector.as_deref()),
            (1, "../x.rs", Some("bind"))
        );
        assert_eq!(
            (inc[1].kind.as_str(), inc[1].selector.as_deref()),
            ("rustdoc_include", Some("1:3"))
        );
    }

    #[test]
    fn anchors_open_close_and_hold_lines() {
        let src = "// ANCHOR: a\nfn a() {}\n// ANCHOR: inner\n// ANCHOR_END: inner\n// ANCHOR_END: a\n// ANCHOR: open\nx\n";
        assert_eq!(anchored_lines(src, "a"), Ok(vec!["fn a() {}"]));
        assert_eq!(anchored_lines(src, "inner"), Ok(vec![]));
        assert!(
            anchored_lines(src, "open")
                .expect_err("unclosed")
                .contains("ANCHOR_END: open")
        );
        assert!(
            anchored_lines(src, "ab")
                .expect_err("missing")
                .contains("no `ANCHOR: ab`")
        );
    }

    #[test]
    fn finds_test_functions_after_their_attributes() {
        let src = "#[test]\nfn step1_a() {}\n\n#[test]\n#[cfg(unix)]\n/// doc\npub fn step2_b() {}\n// #[test] in a comment\nfn helper() {}\n#[test] fn inline_one() {}\n";
        let names: Vec<(usize, String)> = test_fns("s.rs", src)
            .into_iter()
            .map(|t| (t.line, t.name))
            .collect();
        assert_eq!(
            names,
            [
                (2, "step1_a".to_owned()),
                (7, "step2_b".to_owned()),
                (10, "inline_one".to_owned())
            ]
        );
    }

    #[test]
    fn stale_test_names_are_found() {
        let tests = test_fns("s.rs", "#[test]\nfn step1_a() {}\n");
        let chapter = "`step1_a` and `step1_` and `cargo test step1_`\n- `step1_gone`: x\n";
        let problems = stale_test_name_rules(&tests, chapter, "c.md");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].place, "c.md:2");
    }

    #[test]
    fn names_are_whole_words() {
        assert!(contains_word("- `step1_bind`: x", "step1_bind"));
        assert!(!contains_word("- `step1_bind_port`: x", "step1_bind"));
        assert!(!contains_word("xstep1_bind", "step1_bind"));
    }

    #[test]
    fn citations_follow_continuations_and_skip_standards() {
        let src = "\
let a = \"see Lab 01 § Message size\";
let b = \"(see Lab 03 § Reaping \\
         and zombies)\";
//! the chapter, § What fork copies
//! and what it shares).
// RFC 1112 § 4 and RFC 9293 §3.6, § {section}
let c = \"see § 1.4 `Message` size)\";
";
        let c = citations(src);
        assert_eq!(
            c.iter()
                .map(|c| (c.line, c.lab, c.text.as_str()))
                .collect::<Vec<_>>(),
            [
                (1, Some(1), "Message size\";"),
                (2, Some(3), "Reaping and zombies)\";"),
                (4, None, "What fork copies and what it shares)."),
                (7, None, "Message size)\";"),
            ]
        );
        let heads = [
            "Message".to_owned(),
            "Message size".to_owned(),
            "Reaping".to_owned(),
        ];
        assert_eq!(cited_heading("Message size\";", &heads), Some("Message size"));
        assert_eq!(
            cited_heading("Reaping and zombies)", &heads),
            None,
            "more words follow"
        );
        assert_eq!(cited_heading("Message sizes)", &heads), None);
    }

    #[test]
    fn hints_with_raw_html_are_found() {
        assert_eq!(
            raw_html("returns io::Result<UdpSocket>"),
            Some("<UdpSocket>".to_owned())
        );
        assert_eq!(raw_html("returns `io::Result<UdpSocket>` and 1 < 2"), None);
    }

    #[test]
    fn solution_lines_are_long_code_lines_inside_regions() {
        let src = "let outside_of_any_region = compute(1, 2, 3);\n// >>> step 1 (x): go\nlet inside_the_region_is_secret = compute(x);\nx\n// a comment line that is long enough (really)\n// <<<\n";
        assert_eq!(
            solution_lines(src),
            [(3, "let inside_the_region_is_secret = compute(x);".to_owned())]
        );
    }

    #[test]
    fn needles_are_found_by_prefix() {
        let needles = [
            "a needle of some length".to_owned(),
            "another needle, longer still".to_owned(),
        ];
        let n = Needles::new(&needles);
        assert_eq!(
            n.find("hay a needle of some length hay another needle, longer"),
            [(4, 0)]
        );
    }

    #[test]
    fn typos_find_their_closest_candidate() {
        assert_eq!(
            closest(
                "step-1-bind-a-datagrm-socket",
                &["step-1-bind-a-datagram-socket", "steps"]
            ),
            Some("step-1-bind-a-datagram-socket")
        );
        assert_eq!(closest("something else", &["steps"]), None);
        assert_eq!(first_difference("a\nb\nc", "a\nx\nc"), Some(2));
        assert_eq!(first_difference("a\n", "a\nb\n"), Some(2));
    }

    #[test]
    fn the_fixture_passes() {
        let problems = check(&crate::manifest::fixture_root());
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
