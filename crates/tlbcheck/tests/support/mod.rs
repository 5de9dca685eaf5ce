//! What the end-to-end tests share: running the binary from the
//! repository's root, reading its output, writing scratch scenarios.
//!
//! Each test file is its own crate and uses a part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root (where `examples/` is).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `tlbcheck ARGS` from the repository's root.
pub fn tlbcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tlbcheck"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("the binary runs")
}

/// Standard output, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Standard output then standard error.
pub fn out(o: &Output) -> String {
    stdout(o) + &stderr(o)
}

/// A scratch file `name` with `contents`, in a directory of this test
/// file and process.
pub fn scratch(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tlbcheck-{}-{}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}
