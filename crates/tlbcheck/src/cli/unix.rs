//! Behaving like a Unix tool: directory walks that survive symlink loops
//! and special files, file errors worded alike everywhere, and JSON
//! records for files that did not load.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use tlbcheck::scenario::EXTENSION;

/// `PATH: reason`, the same words for the same failure in every
/// subcommand (no `(os error N)` suffix).
pub fn io_message(path: &Path, e: &io::Error) -> String {
    let reason = match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::IsADirectory => "is a directory".to_string(),
        io::ErrorKind::InvalidData => "not UTF-8 text".to_string(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    };
    format!("{}: {reason}", path.display())
}

/// What a walk found.
pub struct Found {
    /// Scenario files, each directory's in name order.
    pub files: Vec<PathBuf>,
    /// Things skipped, one line each (special files, loops, broken links).
    pub skipped: Vec<String>,
}

/// Every scenario file under `paths`: a named file is taken as it is (a
/// FIFO from `<(...)` included); a directory is searched recursively for
/// `*.tlb` regular files, following symbolic links to directories once
/// each (a link back up the tree is a loop, skipped) and skipping FIFOs,
/// sockets and devices, which would block or make no sense to read.
pub fn scenario_files(paths: &[PathBuf]) -> Result<Found, String> {
    let mut found = Found {
        files: Vec::new(),
        skipped: Vec::new(),
    };
    let mut seen: HashSet<PathBuf> = HashSet::new();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => walk(p, &mut seen, &mut found)?,
            Ok(_) => found.files.push(p.clone()),
            Err(e) => return Err(io_message(p, &e)),
        }
    }
    Ok(found)
}

fn walk(dir: &Path, seen: &mut HashSet<PathBuf>, found: &mut Found) -> Result<(), String> {
    // A directory reached twice (through a link) is searched once: that
    // ends symlink loops and duplicate reports alike.
    let real = std::fs::canonicalize(dir).map_err(|e| io_message(dir, &e))?;
    if !seen.insert(real) {
        found.skipped.push(format!(
            "{}: already searched (a symbolic link loop or a second link to it)",
            dir.display()
        ));
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_message(dir, &e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        // `metadata` follows links; a link that leads nowhere (or round in
        // a circle of links) fails here.
        let m = match std::fs::metadata(&p) {
            Ok(m) => m,
            Err(e) => {
                if p.is_symlink() && e.kind() == io::ErrorKind::NotFound {
                    found.skipped.push(format!(
                        "{}: a symbolic link to nothing, skipped",
                        p.display()
                    ));
                } else if p.extension().is_some_and(|x| x == EXTENSION) || p.is_symlink() {
                    found.skipped.push(io_message(&p, &e));
                }
                continue;
            }
        };
        if m.is_dir() {
            walk(&p, seen, found)?;
        } else if p.extension().is_some_and(|x| x == EXTENSION) {
            if m.is_file() {
                found.files.push(p);
            } else {
                found.skipped.push(format!(
                    "{}: not a regular file (a FIFO, socket or device), skipped",
                    p.display()
                ));
            }
        }
    }
    Ok(())
}

/// The `check --json` record of a file that did not load: its file, and
/// the error with line and column when the scenario had one.
pub fn load_error_record(path: &Path) -> serde_json::Value {
    let file = path.display().to_string();
    let (message, line, column) = match std::fs::read_to_string(path) {
        Err(e) => (io_message(path, &e), None, None),
        Ok(src) => match tlbcheck::load(&file, &src) {
            Err(e) => (e.to_string(), Some(e.line), Some(e.column)),
            // It loads now: it changed under us.
            Ok(_) => ("the file changed while it was read".to_string(), None, None),
        },
    };
    serde_json::json!({
        "file": file,
        "status": "error",
        "error": message,
        "line": line,
        "column": column,
    })
}
