//! Shared by the tool's end-to-end tests: a scratch copy of the fixture course and the tool
//! run on it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A copy of the fixture course in a fresh folder under the test's target folder, without its
/// build output; removed when dropped unless the test failed (then kept, to look at).
pub struct Course {
    /// The copy's root.
    pub dir: PathBuf,
}

impl Course {
    /// A fresh copy named after `name`.
    pub fn new(name: &str) -> Course {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture"), &dir);
        Course { dir }
    }

    /// The course tool on this copy, building into a target folder kept between runs.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_course"));
        cmd.args(args)
            .current_dir(&self.dir)
            .env("COURSE_ROOT", &self.dir)
            .env(
                "CARGO_TARGET_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixture-target"),
            );
        cmd
    }
}

impl Drop for Course {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("list the fixture") {
        let entry = entry.expect("fixture entry");
        let path = entry.path();
        if entry.file_name() == "target" {
            continue;
        }
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy a fixture file");
        }
    }
}
