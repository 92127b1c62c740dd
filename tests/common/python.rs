//! Test helper: the Python peers of the interop tests (pymemcache 4.0.0,
//! python-memcached 1.62, and python-memcached 1.59 for its older server
//! hash), from the virtual environment `bash .ci/deps` makes.
//!
//! Include it with `#[path = "common/python.rs"] mod python;`. The venv is
//! `$NEARFAR_PYENV` if set, else `$CARGO_TARGET_DIR/pyenv`, else
//! `target/pyenv` in this package: the places `.ci/deps` puts it. Never the
//! `python3` on the PATH, whose packages are the user's. A missing venv
//! fails the test with the command that makes it: these tests never skip.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The venv's folder.
pub fn venv() -> PathBuf {
    if let Some(dir) = std::env::var_os("NEARFAR_PYENV") {
        return dir.into();
    }
    let package = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => package.join(dir),
        None => package.join("target"),
    };
    target.join("pyenv")
}

/// The venv's interpreter, checked once to hold the pinned peers.
fn interpreter() -> &'static Path {
    static CHECKED: OnceLock<PathBuf> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let venv = venv();
        let python = venv.join("bin").join("python");
        let fix = format!(
            "run `bash .ci/deps`: it makes the venv {} with the Python peers of these \
             tests (pymemcache 4.0.0, python-memcached 1.62 and 1.59); set \
             NEARFAR_PYENV to use a venv elsewhere",
            venv.display()
        );
        let check = Command::new(&python)
            .env_remove("PYTHONPATH")
            .args([
                "-c",
                "import importlib.metadata as m\n\
                 assert m.version('pymemcache') == '4.0.0', m.version('pymemcache')\n\
                 assert m.version('python-memcached') == '1.62', m.version('python-memcached')",
            ])
            .output();
        match check {
            Err(e) => panic!("no Python test venv ({}: {e}): {fix}", python.display()),
            Ok(out) if !out.status.success() => panic!(
                "the Python test venv lacks its peers ({}): {fix}\n{}",
                python.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
            Ok(_) => python,
        }
    })
}

/// The folder of python-memcached 1.59, put first on `PYTHONPATH` by
/// [`run_legacy`].
fn legacy_path() -> PathBuf {
    venv().join("python-memcached-1.59")
}

/// Runs `script` with `args` as `sys.argv[1..]`; returns its stdout.
///
/// # Panics
///
/// When the venv is missing, or the script fails (its output shown).
pub fn run(script: &str, args: &[String]) -> String {
    run_with(script, args, None)
}

/// As [`run`], with python-memcached 1.59 as `memcache` (checked).
pub fn run_legacy(script: &str, args: &[String]) -> String {
    let guard = "import memcache\n\
                 assert memcache.cmemcache_hash(b'') == 1, 'not python-memcached 1.59: ' + memcache.__file__\n";
    run_with(&format!("{guard}{script}"), args, Some(legacy_path()))
}

fn run_with(script: &str, args: &[String], path: Option<PathBuf>) -> String {
    let mut command = Command::new(interpreter());
    command.env_remove("PYTHONPATH");
    if let Some(path) = path {
        assert!(
            path.is_dir(),
            "{} is missing: run `bash .ci/deps`",
            path.display()
        );
        command.env("PYTHONPATH", path);
    }
    let out = command
        .args(["-c", script])
        .args(args)
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Text over pymemcache's 400-byte compression threshold that zlib
/// shrinks; the scripts write it as `"the quick brown fox jumps over the
/// lazy dog; " * 40`.
pub fn long_text() -> String {
    "the quick brown fox jumps over the lazy dog; ".repeat(40)
}

/// Bytes likewise; the scripts write them as `bytes(i % 7 for i in
/// range(2000))`.
pub fn long_bytes() -> Vec<u8> {
    (0..2000u32).map(|i| (i % 7) as u8).collect()
}
