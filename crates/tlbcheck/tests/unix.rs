//! The command line as a Unix tool: directory walks that survive symlink
//! loops and special files, `--json` everywhere (a record for a file that
//! failed to load too), `replay` comparing the whole recorded run, and the
//! same error worded the same way in every subcommand.

mod support;
use support::{repo, stderr, stdout, tlbcheck};

use std::path::PathBuf;
use std::process::{Command, Output};

const BUGGY: &str = "examples/general/01-leaf-only-tlbi-frees-table-buggy.tlb";
const FIXED: &str = "examples/general/01-leaf-only-tlbi-frees-table-fixed.tlb";

/// A fresh scratch directory for one test.
fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tlbcheck-unix-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[cfg(unix)]
#[test]
fn directory_walks_survive_symlink_loops_fifos_and_broken_links() {
    let d = scratch_dir("walk");
    let sub = d.join("a");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::copy(repo().join(FIXED), sub.join("fixed.tlb")).unwrap();
    std::os::unix::fs::symlink("..", sub.join("loop")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/x.tlb", sub.join("broken.tlb")).unwrap();
    // A FIFO named like a scenario: reading it would block forever.
    let fifo = sub.join("pipe.tlb");
    let made = Command::new("mkfifo").arg(&fifo).status();
    let o = tlbcheck(&["check", d.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    // The scenario is checked once, not once per trip round the loop.
    assert_eq!(
        stdout(&o).matches("general-table-freed").count(),
        1,
        "{}",
        stdout(&o)
    );
    let err = stderr(&o);
    assert!(
        err.contains("loop: already searched (a symbolic link loop"),
        "{err}"
    );
    assert!(
        err.contains("broken.tlb: a symbolic link to nothing, skipped"),
        "{err}"
    );
    if made.is_ok_and(|s| s.success()) {
        assert!(
            err.contains("pipe.tlb: not a regular file (a FIFO"),
            "{err}"
        );
    }
}

#[test]
fn an_empty_search_names_the_directories_searched() {
    let d = scratch_dir("empty");
    let o = tlbcheck(&["check", d.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!(
            "no .tlb scenario files found in {} (directories are searched recursively)",
            d.display()
        )),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_missing_file_is_worded_alike_everywhere() {
    let missing = "no/such/file";
    let runs: [&[&str]; 6] = [
        &["check", missing],
        &["explain", missing],
        &["trace", missing],
        &["replay", missing],
        &["import", "qemu-trace", missing],
        &["audit", "qemu-trace", missing],
    ];
    for args in runs {
        let o = tlbcheck(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_eq!(
            stderr(&o).trim(),
            "error: no/such/file: no such file or directory",
            "{args:?}"
        );
    }
}

#[test]
fn check_json_has_a_record_for_a_file_that_failed_to_load() {
    let d = scratch_dir("bad");
    std::fs::copy(repo().join(FIXED), d.join("a-good.tlb")).unwrap();
    std::fs::write(d.join("b-bad.tlb"), "scenario x\nbogus\n").unwrap();
    let o = tlbcheck(&["check", "--json", d.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let records: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "{}", stdout(&o));
    assert_eq!(records[0]["status"], "met");
    let bad = &records[1];
    assert_eq!(bad["status"], "error");
    assert!(bad["file"].as_str().unwrap().ends_with("b-bad.tlb"));
    assert_eq!((&bad["line"], &bad["column"]), (&2.into(), &1.into()));
    assert!(bad["error"].as_str().unwrap().contains("found `bogus`"));
}

#[test]
fn every_subcommand_speaks_json() {
    let o = tlbcheck(&[
        "encode",
        "tlbi",
        "VAE1IS",
        "asid=5",
        "va=0x40000000",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    // ASID in [63:48], VA[55:12] in [43:0]: 5 << 48 | 0x40000000 >> 12.
    assert_eq!(v["operand"], "0x0005000000040000");
    let o = tlbcheck(&["encode", "smmu", "CMD_SYNC", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    // CMD_SYNC is opcode 0x46 in bits [7:0].
    assert_eq!(
        (&v["opcode"], &v["dw0"]),
        (&"CMD_SYNC".into(), &"0x0000000000000046".into())
    );
    for args in [
        &["decode", "tlbi", "VAE1IS", "0x0005000000040000", "--json"][..],
        &["trace", "--json", FIXED][..],
        &["explain", "--json", FIXED][..],
        &["check", "--json", FIXED][..],
    ] {
        let o = tlbcheck(args);
        let text = stdout(&o);
        let first = text.lines().next().unwrap_or_default();
        assert!(
            serde_json::from_str::<serde_json::Value>(&text).is_ok()
                || serde_json::from_str::<serde_json::Value>(first).is_ok(),
            "{args:?}: {text}"
        );
    }
}

#[test]
fn unknown_names_list_the_valid_ones() {
    let o = tlbcheck(&["encode", "smmu", "CMD_FOO"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("expected one of CMD_PREFETCH_CONFIG,"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("CMD_SYNC"));
    let o = tlbcheck(&["trace", BUGGY, "--schedule", "nope"]);
    assert!(stderr(&o).contains("(threads: mm)"), "{}", stderr(&o));
}

/// `explain --json` of the buggy example, as a JSON value.
fn recorded() -> serde_json::Value {
    let o = tlbcheck(&["explain", "--json", BUGGY]);
    serde_json::from_str(&stdout(&o)).unwrap()
}

fn replay(v: &serde_json::Value, name: &str, json: bool) -> Output {
    let p = scratch_dir(name).join("trace.json");
    std::fs::write(&p, v.to_string()).unwrap();
    let mut args = vec!["replay", p.to_str().unwrap()];
    if json {
        args.push("--json");
    }
    tlbcheck(&args)
}

#[test]
fn replay_compares_the_whole_trace_and_says_what_differs() {
    let v = recorded();
    let o = replay(&v, "same", true);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["reproduced"], true);
    assert_eq!(r["differences"], serde_json::json!([]));

    // Same choices, so the same violation; but the recorded ops and cache
    // changes were edited: the replay must notice.
    let mut edited = v.clone();
    edited["trace"]["steps"][1]["op"] = "dsb ish".into();
    edited["trace"]["steps"][2]["changes"] = serde_json::json!(["CPU 1: + something else"]);
    let o = replay(&edited, "edited", false);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let text = stdout(&o);
    assert!(
        text.contains("NOT reproduced: the run differs from the recorded trace:"),
        "{text}"
    );
    assert!(
        text.contains("step 2: op was `dsb ish`, now `dsb ishst`"),
        "{text}"
    );
    assert!(
        text.contains("step 3: recorded `CPU 1: + something else`, not in the replay"),
        "{text}"
    );
    assert!(
        text.contains("step 3: the replay has `CPU 0: TLBI pending until DSB ISH"),
        "{text}"
    );

    // A recorded violation on another agent.
    let mut other = v.clone();
    other["trace"]["violation"]["agent"]["holder"]["index"] = 1.into();
    let o = replay(&other, "agent", true);
    assert_eq!(o.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let diffs = r["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert!(
        diffs[0]
            .as_str()
            .unwrap()
            .starts_with("violation: recorded walk-cache-uaf at step 5 (CPU 1"),
        "{diffs:?}"
    );
}
