//! Test helper: a directory of a test's own under the system's temporary
//! directory, removed (with what it holds) when the value is dropped.
//!
//! Include it with `#[path = "common/dir.rs"] mod dir;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A fresh, empty directory for one test.
pub struct TestDir(PathBuf);

impl TestDir {
    /// `<temp>/nearfar-<test>-<pid>`, emptied if a previous run left it.
    pub fn new(test: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!("nearfar-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test's directory");
        TestDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A file in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The names of the files in the directory, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .expect("list the directory")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
