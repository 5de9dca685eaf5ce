//! The `tlbcheck` binary, end to end: exit codes, output shapes, located
//! errors, counterexample round trips, and the operand codecs against the
//! worked vectors of linux-reference.md §B.6 and §C.8.

mod support;
use support::{repo, scratch, stderr, stdout, tlbcheck};

use std::process::{Command, Output};

/// `tlbcheck check` on `src`, written to a scratch file `name`.
fn check_src(name: &str, src: &str) -> Output {
    let f = scratch(name, src);
    tlbcheck(&["check", f.to_str().unwrap()])
}

/// `src` is refused as bad input (exit 2) with a message containing `needle`.
fn refused(name: &str, src: &str, needle: &str) {
    let o = check_src(name, src);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains(needle), "{}", stderr(&o));
}

/// Each `(from, to, at, text)` edit of the valid scenario `valid` is
/// refused as bad input (exit 2) at `at` (`:line:col:`) with a message
/// containing `text`; `valid` itself passes, so each refusal is the edit's.
fn each_edit_is_refused_where_it_is(tag: &str, valid: &str, cases: &[(&str, &str, &str, &str)]) {
    let broken = format!("{tag}-broken.tlb");
    for &(from, to, at, text) in cases {
        assert!(valid.contains(from), "{from}");
        let p = scratch(&broken, &valid.replacen(from, to, 1));
        let o = tlbcheck(&["check", p.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{to}: {err}");
        assert!(
            err.contains(&format!("{broken}{at}")),
            "{to}: want {at} in\n{err}"
        );
        assert!(err.contains(text), "{to}: want `{text}` in\n{err}");
    }
    let o = check_src(&format!("{tag}-valid.tlb"), valid);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

const BUGGY: &str = "examples/general/01-leaf-only-tlbi-frees-table-buggy.tlb";
const FIXED: &str = "examples/general/01-leaf-only-tlbi-frees-table-fixed.tlb";

const VALID: &str = "scenario s
machine cpus=2
frame L0 s1-table process=1 level=0
frame L1 s1-table process=1 level=1
frame L2 s1-table process=1 level=2
frame L3 s1-table process=1 level=3
frame DATA data process=1
context p1 stage1 asid=1 root=L0
L0[0] = table L1
L1[0] = table L2
L2[0] = table L3
L3[0] = page DATA rw user ng
thread t cpu=0 {
  L3[0] = invalid
  dsb ishst
  tlbi VALE1IS asid=1 va=0
  dsb ish
  free DATA
}
expect ok
";

#[test]
fn check_the_corpus_exits_zero_with_one_line_per_scenario() {
    let o = tlbcheck(&["check", "examples/"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("ok ")).collect();
    assert!(lines.len() >= 16, "{out}");
    assert!(out.contains("walk-cache-uaf"));
    assert!(!out.contains("FAIL"));
}

#[test]
fn an_unmet_expectation_exits_one() {
    let wrong = std::fs::read_to_string(repo().join(BUGGY))
        .unwrap()
        .replace("expect violation walk-cache-uaf", "expect ok");
    let p = scratch("wrong.tlb", &wrong);
    let o = tlbcheck(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("FAIL"));
    // Expecting another violation than the one found fails too.
    let other = wrong.replace("expect ok", "expect violation freed-frame-mapped");
    let p = scratch("other.tlb", &other);
    assert_eq!(
        tlbcheck(&["check", p.to_str().unwrap()]).status.code(),
        Some(1)
    );
}

#[test]
fn json_lines_have_the_documented_keys() {
    let o = tlbcheck(&["check", "--json", BUGGY, FIXED]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    let objs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(objs.len(), 2);
    for key in [
        "name",
        "file",
        "expected",
        "found",
        "ok",
        "states",
        "transitions",
        "depth",
        "coverage",
        "time_ms",
        "violation",
    ] {
        assert!(objs[0].get(key).is_some(), "missing {key}: {}", objs[0]);
    }
    assert_eq!(objs[0]["found"], "walk-cache-uaf");
    assert_eq!(objs[0]["violation"]["kind"], "walk-cache-uaf");
    assert_eq!(objs[1]["found"], "ok");
    assert!(objs[1]["violation"].is_null());
    assert!(objs[1]["coverage"]
        .as_str()
        .unwrap()
        .starts_with("complete"));
}

/// Several kinds of breakage, each reported with file, line and column.
#[test]
fn broken_scenarios_exit_two_with_line_and_column() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (what to replace, replacement, expected "line:col", expected text)
        (
            "  dsb ishst\n",
            "  dsb ld\n",
            ":15:7:",
            "expected a DSB kind",
        ),
        (
            "tlbi VALE1IS asid=1 va=0",
            "tlbi VALE1IS asid=1 va=0 ttl=9",
            ":16:28:",
            "expected a level 0..3",
        ),
        ("free DATA", "free DTA", ":18:8:", "unknown frame `DTA`"),
        ("  free DATA\n", "  cow 0 0x1000\n", ":18:3:", "reserved"),
        (
            "  free DATA\n",
            "  munmap p1 0x0 0x1000\n",
            ":18:3:",
            "needs `kernel VERSION`",
        ),
        (
            "  free DATA\n",
            "  munmap p1 0x0\n",
            ":18:16:",
            "expected a length in bytes",
        ),
        (
            "tlbi VALE1IS asid=1 va=0",
            "tlbi VALE1IS asid=0x10000 va=0",
            ":16:16:",
            "does not fit",
        ),
        (
            "tlbi VALE1IS asid=1 va=0",
            "tlbi RVALE1IS 0x0001000000000001",
            ":16:8:",
            "FEAT_TLBIRANGE",
        ),
        (
            "L3[0] = page DATA rw user ng",
            "L3[0] = block DATA rw",
            ":12:9:",
            "no block descriptors at level 3",
        ),
        (
            "thread t cpu=0",
            "thread t cpu=3",
            ":13:14:",
            "CPU 3 does not exist",
        ),
        (
            "expect ok",
            "expect violation wibble",
            ":20:18:",
            "unknown violation",
        ),
        ("expect ok\n", "", ":20:1:", "missing `expect"),
        ("}\n", "", ":19:1:", "not closed"),
        (
            "L2[0] = table L3",
            "L2[0] = table L3 @",
            ":11:18:",
            "unexpected character",
        ),
    ];
    each_edit_is_refused_where_it_is("base", VALID, cases);
}

#[test]
fn range_operand_decode_errors_point_at_the_operand() {
    let with_range = VALID
        .replace("machine cpus=2", "machine cpus=2 tlbirange")
        .replace(
            "tlbi VALE1IS asid=1 va=0",
            "tlbi RVALE1IS 0x0001000000000001",
        );
    let p = scratch("tg0.tlb", &with_range);
    let o = tlbcheck(&["check", p.to_str().unwrap()]);
    let err = stderr(&o);
    // Software can execute it: a warning at the operand naming the field,
    // the value and the rule, and the TLBI removes nothing, so the free
    // that relied on it is caught.
    assert!(err.contains("warning: "), "{err}");
    assert!(err.contains("tg0.tlb:16:17:"), "{err}");
    assert!(err.contains("field TG = 0b00 is reserved"), "{err}");
    assert!(err.contains("Table D8-122"), "{err}");
    assert!(err.contains("invalidates nothing"), "{err}");
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("freed-frame-mapped"), "{}", stdout(&o));
    // `decode` still reports the finding as an error.
    let o = tlbcheck(&["decode", "tlbi", "RVALE1IS", "0x0001000000000001"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("field TG = 0b00 is reserved"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn smmu_steps_need_an_smmu_and_illegal_commands_warn() {
    let s = "scenario s\nthread t cpu=0 {\n  cmd_sync\n}\nexpect ok\n";
    let p = scratch("smmu.tlb", s);
    let o = tlbcheck(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("smmu.tlb:3:3:"), "{err}");
    assert!(err.contains("the machine has no SMMU"), "{err}");
    // A command the SMMU would reject is written as it is, with a warning
    // naming the field; the queue stops on it, and with no CMD_SYNC behind
    // it nothing waits.
    let s = "scenario s\nsmmu\nthread t cpu=0 {\n  smmu cmd CMD_SYNC\n  smmu cmd TLBI_NH_VA tg=1 addr=0x1000\n}\nexpect ok\n";
    let p = scratch("smmu2.tlb", s);
    let o = tlbcheck(&["check", p.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(err.contains("warning: "), "{err}");
    assert!(err.contains("smmu2.tlb:5:23:"), "{err}");
    assert!(err.contains("Reserved combination"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // ATC_INV's Global bit is refused, not ignored.
    let s = "scenario s\nsmmu ats\nthread t cpu=0 {\n  smmu cmd CMD_ATC_INV sid=1 ssv=1 ssid=2 global=1 size=52\n}\nexpect ok\n";
    let p = scratch("smmu3.tlb", s);
    let o = tlbcheck(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("smmu3.tlb:4:3:"), "{err}");
    assert!(err.contains("Global = 1 is not modelled"), "{err}");
}

#[test]
fn missing_paths_and_empty_directories_are_bad_input() {
    assert_eq!(tlbcheck(&["check", "no/such/dir"]).status.code(), Some(2));
    let empty = std::env::temp_dir().join(format!("tlbcheck-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    assert_eq!(
        tlbcheck(&["check", empty.to_str().unwrap()]).status.code(),
        Some(2)
    );
}

#[test]
fn explain_shows_the_counterexample_or_the_proof() {
    let o = tlbcheck(&["explain", BUGGY]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.contains("counterexample (5 steps)"), "{out}");
    assert!(out.contains("violation walk-cache-uaf at step 5"), "{out}");
    assert!(out.contains("leaf-only"), "{out}");
    let o = tlbcheck(&["explain", FIXED]);
    let out = stdout(&o);
    assert!(
        out.contains("complete: ") && out.contains("every interleaving explored"),
        "{out}"
    );
}

#[test]
fn explain_blames_the_missing_isb_for_the_issuers_own_access() {
    let dir = "examples/tlbi/";
    let o = tlbcheck(&["explain", &format!("{dir}03-own-access-no-isb-buggy.tlb")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("violation freed-frame-mapped at step 6"),
        "{out}"
    );
    assert!(
        out.contains("6. mm (CPU 0)       read ctx 0 VA 0x0"),
        "{out}"
    );
    assert!(
        out.contains("the issuing CPU ran no ISB after the completing DSB"),
        "{out}"
    );
    // The ISB removes the verdict.
    let o = tlbcheck(&["check", &format!("{dir}03-own-access-no-isb-fixed.tlb")]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // An access through a context that is not declared is refused with
    // its place.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../");
    let src = std::fs::read_to_string(format!("{root}{dir}03-own-access-no-isb-fixed.tlb"))
        .unwrap()
        .replace("access read p1 0x0", "access read nope 0x0");
    let f = std::env::temp_dir().join(format!("tlbcheck-access-{}.tlb", std::process::id()));
    std::fs::write(&f, src).unwrap();
    let o = tlbcheck(&["check", f.to_str().unwrap()]);
    let _ = std::fs::remove_file(&f);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
    assert!(stderr(&o).contains(":26:"), "{}", stderr(&o));
}

#[test]
fn explain_json_replays_exactly() {
    let o = tlbcheck(&["explain", "--json", BUGGY]);
    assert_eq!(o.status.code(), Some(0));
    let json = stdout(&o);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["file"], BUGGY);
    assert!(v["source"].as_str().unwrap().contains("scenario "));
    assert_eq!(v["trace"]["violation"]["kind"], "walk-cache-uaf");
    let p = scratch("trace.json", &json);
    let o = tlbcheck(&["replay", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("violation walk-cache-uaf at step 5"));
    assert!(stdout(&o).contains("reproduced"));

    // Drop the last choice: the run no longer ends in the violation.
    let mut cut = v.clone();
    cut["trace"]["choices"].as_array_mut().unwrap().pop();
    let p = scratch("cut.json", &cut.to_string());
    assert_eq!(
        tlbcheck(&["replay", p.to_str().unwrap()]).status.code(),
        Some(1)
    );
    // Not a trace at all.
    let p = scratch("junk.json", "{\"hello\": 1}");
    assert_eq!(
        tlbcheck(&["replay", p.to_str().unwrap()]).status.code(),
        Some(2)
    );
}

#[test]
fn random_mode_finds_and_shrinks_the_same_violation() {
    let o = tlbcheck(&["check", "--json", "--random", "50", "--seed", "7", BUGGY]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["found"], "walk-cache-uaf");
}

#[test]
fn bounds_from_the_command_line_apply() {
    let o = tlbcheck(&["check", "--json", "--max-depth", "2", FIXED]);
    // A search cut short proves nothing: inconclusive, exit 3, never ok.
    assert_eq!(o.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(
        v["coverage"]
            .as_str()
            .unwrap()
            .starts_with("inconclusive: depth bound 2"),
        "{v}"
    );
    assert_eq!(v["complete"], false);
    assert_eq!(v["found"], "inconclusive");
    assert_eq!(v["bound"]["bound"], "depth");
}

/// The blame line names the invalidation meant for the stale entry: on a
/// stage-2 block left by a wrongly hinted RIPAS2E1IS, the VMALLE1IS issued
/// after it reaches only stage-1 and combined entries, so it is not blamed.
#[test]
fn blame_skips_invalidations_whose_stages_never_reach_the_entry() {
    let src = "scenario s2-blame
machine granule=4k cpus=2 ttl tlbirange
pool base=0x400000 frames=16
frame DATA data process=1 at=0x400000
frame S2L0 s2-table vm=1 level=0
frame S2L1 s2-table vm=1 level=1
frame S2L2 s2-table vm=1 level=2
context guest stage2 vmid=1 root=S2L0
S2L0[0] = table S2L1
S2L1[0] = table S2L2
S2L2[0] = s2block 0x400000 rw
thread kvm cpu=0 vmid=1 {
  S2L2[0] = invalid
  dsb ishst
  tlbi RIPAS2E1IS ipa=0 tg=4k scale=0 num=0 ttl=3
  tlbi VMALLE1IS
  dsb ish
  free DATA
}
expect violation freed-frame-mapped
";
    let p = scratch("s2-blame.tlb", src);
    let out = stdout(&tlbcheck(&["explain", p.to_str().unwrap()]));
    assert!(
        out.contains("step 3 (tlbi RIPAS2E1IS")
            && out.contains("its TTL hint names level 3 but the entry is at level 2"),
        "{out}"
    );
    assert!(!out.contains("(tlbi VMALLE1IS) did not remove"), "{out}");
}

/// `explain` heads the instructions a kernel operation emitted with the
/// operation, once per run of its steps.
#[test]
fn explain_shows_each_kernel_operation_above_its_instructions() {
    let o = tlbcheck(&["explain", "examples/seed000/05-kernel-upgrade-buggy.tlb"]);
    let out = stdout(&o);
    let head = "[p1 write fault at 0x0: ptep_set_access_flags: flush_tlb_page]";
    assert_eq!(out.matches(head).count(), 1, "{out}");
    let after = &out[out.find(head).unwrap()..];
    let dsb = after.find("dsb ishst").unwrap();
    let tlbi = after.find("tlbi VALE1IS 0x0001000000000000").unwrap();
    assert!(dsb < tlbi && after[..tlbi].lines().count() < 6, "{after}");
}

/// A reader that stops early (`| head`) ends the run quietly, as a Unix
/// filter does, instead of a panic about a broken pipe.
#[test]
fn a_closed_pipe_ends_the_run_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tlbcheck"))
        .args(["check", "examples/"])
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    // 141 when a later line met the closed pipe; 0 if the whole table
    // fitted in the pipe before the reader left.
    assert!(
        matches!(out.status.code(), Some(141 | 0)),
        "{:?}",
        out.status
    );
}

/// A search that did not finish never prints `ok`: exit 3, `inconclusive`.
#[test]
fn cut_short_searches_are_inconclusive() {
    for args in [
        &["check", "--max-states", "0", FIXED][..],
        &["check", "--max-depth", "1", FIXED],
        &["check", "--random", "0", FIXED],
        &["check", "--random", "5", FIXED],
        &["check", "--max-memory", "1k", FIXED],
        &["check", "--timeout", "0", FIXED],
    ] {
        let o = tlbcheck(args);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {out}");
        assert!(out.starts_with("INCONCLUSIVE"), "{args:?}: {out}");
        assert!(out.contains("1 inconclusive"), "{args:?}: {out}");
    }
    // A bound that is not reached changes nothing.
    assert_eq!(
        tlbcheck(&["check", "--max-depth", "1000", FIXED])
            .status
            .code(),
        Some(0)
    );
    let o = tlbcheck(&["check", "--max-memory", "lots", FIXED]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a size"));
}

/// The thread that can never run again is reported, with what it waits for.
#[test]
fn a_resume_of_a_device_that_never_faults_is_stuck() {
    let p = "crates/tlbcheck/benches/scale/stuck-resume-never-stalls-buggy.tlb";
    let o = tlbcheck(&["explain", p]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("violation stuck"), "{out}");
    assert!(out.contains("has no fault to answer"), "{out}");
    // The long DSB chain's bug is found: no default depth bound hides it.
    let o = tlbcheck(&[
        "check",
        "crates/tlbcheck/benches/scale/long-dsb-chain-buggy.tlb",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

/// An illegal command is accepted with a warning that names the field and
/// the rule, stops the queue, and the CMD_SYNC behind it is `stuck`.
#[test]
fn a_cmd_sync_behind_an_illegal_command_is_stuck() {
    let p = "crates/tlbcheck/benches/scale/stuck-cmd-sync-behind-illegal-buggy.tlb";
    let o = tlbcheck(&["explain", p]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("violation stuck"), "{out}");
    assert!(
        out.contains("command queue stopped, CONS.ERR = CERROR_ILL at index 0"),
        "{out}"
    );
    assert!(out.contains("cannot run `smmu CMD_SYNC (wait)`"), "{out}");
    let err = stderr(&o);
    assert!(
        err.contains("stuck-cmd-sync-behind-illegal-buggy.tlb:32:12: illegal command"),
        "{err}"
    );
    assert!(err.contains("TG = 0b1 with NUM = 0, SCALE = 0"), "{err}");
    assert!(err.contains("SMMUv3 4.1.3, 7.1"), "{err}");
}

/// Named fields that make an illegal command: the warning points at the
/// field the decoder blames, and `encode smmu` still refuses them.
#[test]
fn an_illegal_named_command_warns_at_its_field() {
    let p = "examples/smmu/01-illegal-range-cmd-buggy.tlb";
    let o = tlbcheck(&["check", p]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("01-illegal-range-cmd-buggy.tlb:35:43: illegal command 0x0001000000000012 0x0000000000000400"),
        "{err}"
    );
    let o = tlbcheck(&[
        "encode",
        "smmu",
        "CMD_TLBI_NH_VA",
        "asid=1",
        "addr=0",
        "tg=1",
        "scale=0",
        "num=0",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("Reserved combination"),
        "{}",
        stderr(&o)
    );
}

/// Frees that are wrong whatever the interleaving are load errors at the
/// free; where an allocation makes them depend on it, `bad-free`.
#[test]
fn wrong_frees_are_refused_or_reported() {
    let base = VALID.replace("  free DATA\n", "  free DATA\n  FREE2\n");
    for (second, at, text) in [
        ("free DATA", "19:8:", "freed a second time here"),
        ("call_rcu free DATA", "19:17:", "freed a second time here"),
        ("free 0x13f000", "19:8:", "is never allocated"),
        ("free 0x105008", "19:8:", "not the start of a frame"),
    ] {
        let src = base.replace("FREE2", second);
        let p = scratch("frees.tlb", &src);
        let o = tlbcheck(&["check", p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{second}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(err.contains(&format!("frees.tlb:{at}")), "{second}: {err}");
        assert!(err.contains(text), "{second}: {err}");
    }
    // With an allocation in the program the second free depends on the
    // interleaving: here it always comes first, so it is a bad free.
    let src = base.replace("FREE2", "free DATA").replace(
        "  L3[0] = invalid\n",
        "  L3[0] = invalid\n  alloc data process=1\n",
    );
    let p = scratch(
        "frees-dyn.tlb",
        &src.replace("expect ok", "expect violation bad-free"),
    );
    let o = tlbcheck(&["explain", p.to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("violation bad-free"), "{out}");
    assert!(out.contains("is freed but it is not allocated"), "{out}");
}

/// A table descriptor must point at a table of its stage serving the next
/// level: in the set-up and in a thread's store, at the target.
#[test]
fn a_table_descriptor_needs_a_next_level_table() {
    for (from, to, at, text) in [
        (
            "L2[0] = table L3",
            "L2[0] = table DATA",
            "11:15:",
            "frame `DATA` is data of process 1",
        ),
        (
            "L1[0] = table L2",
            "L1[0] = table L3",
            "10:15:",
            "must point at a stage-1 level-2 table",
        ),
        (
            "  L3[0] = invalid\n",
            "  L3[0] = invalid\n  L0[0] = table L2\n",
            "15:17:",
            "level-0 table must point at a stage-1 level-1 table",
        ),
    ] {
        let p = scratch("tables.tlb", &VALID.replace(from, to));
        let o = tlbcheck(&["check", p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{to}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(err.contains(&format!("tables.tlb:{at}")), "{to}: {err}");
        assert!(err.contains(text), "{to}: {err}");
    }
}

/// Valid -> valid stores that need break-before-make are `bbm`, with both
/// descriptors and the reason; a permission change is not.
#[test]
fn valid_to_valid_changes_that_need_a_break() {
    for (store, expect, why) in [
        ("L3[0] = page DATA ro user ng", "ok", ""),
        (
            "L3[0] = page DATA rw user ng contig",
            "violation bbm",
            "the contiguous bit changes",
        ),
        (
            "L3[0] = 0x0000000000104c4f",
            "violation bbm",
            "the memory attributes",
        ),
        (
            "L2[0] = block 0x0 rw user ng",
            "violation bbm",
            "a table is replaced by a block",
        ),
    ] {
        let src = VALID
            .replace(
                "  L3[0] = invalid\n",
                &format!("  {store}\n  L3[0] = invalid\n"),
            )
            .replace("expect ok", &format!("expect {expect}"));
        let p = scratch("bbm.tlb", &src);
        let o = tlbcheck(&["explain", p.to_str().unwrap()]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(0), "{store}: {out}{}", stderr(&o));
        assert!(out.contains(why), "{store}: {out}");
        if !why.is_empty() {
            assert!(
                out.contains("needs break-before-make (Arm ARM D8.17.1)"),
                "{out}"
            );
        }
    }
}

/// `map` builds the tables VALID spells out, named CTX.Ln; its mistakes
/// are errors at the statement.
#[test]
fn map_creates_the_intermediate_tables() {
    let short = VALID
        .replace("frame L1 s1-table process=1 level=1\n", "")
        .replace("frame L2 s1-table process=1 level=2\n", "")
        .replace("frame L3 s1-table process=1 level=3\n", "")
        .replace(
            "L0[0] = table L1\nL1[0] = table L2\nL2[0] = table L3\nL3[0] = page DATA rw user ng\n",
            "map p1 0x0 DATA rw user ng\n",
        )
        .replace("  L3[0] = invalid", "  p1.L3[0] = invalid");
    assert!(short.contains("map p1"), "{short}");
    let p = scratch("map.tlb", &short);
    let o = tlbcheck(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    // Without the TLBI the short form finds the same bug as the long one.
    let p = scratch(
        "map-bug.tlb",
        &short
            .replace("  tlbi VALE1IS asid=1 va=0\n", "")
            .replace("expect ok", "expect violation freed-frame-mapped"),
    );
    assert_eq!(
        tlbcheck(&["check", p.to_str().unwrap()]).status.code(),
        Some(0)
    );
    for (extra, at, text) in [
        ("map p1 0x0 DATA ro", "7:8:", "is mapped already at level 3"),
        (
            "map p1 0x200000 0x201000 rw level=2",
            "7:17:",
            "not aligned",
        ),
        ("map p2 0x0 DATA rw", "7:5:", "unknown context `p2`"),
        (
            "map p1 0x1000 DATA rw level=0",
            "7:29:",
            "no S1 leaf at level 0",
        ),
    ] {
        let src = short.replace(
            "map p1 0x0 DATA rw user ng\n",
            &format!("map p1 0x0 DATA rw user ng\n{extra}\n"),
        );
        let p = scratch("map-err.tlb", &src);
        let o = tlbcheck(&["check", p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{extra}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(err.contains(&format!("map-err.tlb:{at}")), "{extra}: {err}");
        assert!(err.contains(text), "{extra}: {err}");
    }
}

/// What each barrier completes: DSB OSH and SY complete the TLBI as DSB
/// ISH does, their store-only forms publish the store but complete no
/// TLBI, and neither DMB nor ISB completes anything.
#[test]
fn barriers_and_what_they_complete() {
    for (first, second, expect) in [
        ("dsb oshst", "dsb osh", "ok"),
        ("dsb st", "dsb sy", "ok"),
        ("dsb ishst", "dsb st", "violation freed-frame-mapped"),
        ("dsb ishst", "dsb oshst", "violation freed-frame-mapped"),
        ("dsb ishst", "isb", "violation freed-frame-mapped"),
        ("dsb ishst", "dmb ish", "violation freed-frame-mapped"),
        ("dmb ishst", "dsb ish", "violation freed-frame-mapped"),
    ] {
        let src = VALID
            .replace("  dsb ishst\n", &format!("  {first}\n"))
            .replace("  dsb ish\n", &format!("  {second}\n"))
            .replace("expect ok", &format!("expect {expect}"));
        let p = scratch("barrier.tlb", &src);
        let o = tlbcheck(&["check", p.to_str().unwrap()]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{first} / {second}: {}{}",
            stdout(&o),
            stderr(&o)
        );
    }
}

/// Linking a table that is no longer one (freed here) is found when it
/// happens, with its trace: `bad-table`.
#[test]
fn relinking_a_freed_table_is_bad_table() {
    let src = VALID
        .replace(
            "  free DATA\n",
            "  L2[0] = invalid\n  dsb ishst\n  tlbi VAE1IS asid=1 va=0\n  dsb ish\n  free DATA\n  free L3\n  L2[0] = table L3\n",
        )
        .replace("expect ok", "expect violation bad-table");
    let p = scratch("relink.tlb", &src);
    let o = tlbcheck(&["explain", p.to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("violation bad-table"), "{out}");
    assert!(
        out.contains("links 0x103000 into the level-2 table at 0x102000, but that frame is free"),
        "{out}"
    );
}

/// Each malformed-operand warning points at the field responsible and
/// names its value and rule; the TTLs the Arm ARM treats as no hint are
/// accepted silently.
#[test]
fn malformed_operand_warnings_name_field_value_and_rule() {
    let with = |tlbi: &str| {
        VALID
            .replace("machine cpus=2", "machine cpus=2 tlbirange ttl")
            .replace("tlbi VALE1IS asid=1 va=0", tlbi)
    };
    for (tlbi, at, text) in [
        (
            "tlbi RVALE1IS asid=1 va=0x1000 ttl=2 scale=0 num=0",
            "16:24:",
            "field BaseADDR = 0x1 is not aligned to the 2 MiB 4k level-2 block",
        ),
        (
            "tlbi VAAE1IS 0x0001000000000000",
            "16:16:",
            "field RES0 bits [63:48] = 0x1 is not zero",
        ),
    ] {
        let p = scratch("warn.tlb", &with(tlbi));
        let o = tlbcheck(&["check", p.to_str().unwrap()]);
        let err = stderr(&o);
        assert!(err.contains(&format!("warning: {}", p.display())), "{err}");
        assert!(err.contains(&format!("warn.tlb:{at}")), "{tlbi}: {err}");
        assert!(err.contains(text), "{tlbi}: {err}");
        assert!(err.contains("Arm ARM"), "{tlbi}: {err}");
        // The TLBI removed nothing, so the free is caught.
        assert_eq!(o.status.code(), Some(1), "{tlbi}: {}", stdout(&o));
    }
    // 4K with TTL 0b0100 (level 0 without FEAT_LPA2) is no hint: no
    // warning, and the TLBI covers every level.
    let p = scratch("nohint.tlb", &with("tlbi VALE1IS 0x0001400000000000"));
    let o = tlbcheck(&["check", p.to_str().unwrap()]);
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

/// Without FEAT_TTL the TTL field of a raw by-VA operand is RES0: any value
/// there, a real level hint or one that would read as "no hint", is taken
/// as invalidating nothing, with a warning naming the field.
#[test]
fn a_ttl_on_a_machine_without_feat_ttl_is_a_res0_field() {
    for operand in ["0x0001300000000000", "0x0001400000000000"] {
        let src = VALID.replace(
            "tlbi VALE1IS asid=1 va=0",
            &format!("tlbi VALE1IS {operand}"),
        );
        let p = scratch("nottl.tlb", &src);
        let o = tlbcheck(&["check", p.to_str().unwrap()]);
        let err = stderr(&o);
        assert!(err.contains("nottl.tlb:16:16:"), "{operand}: {err}");
        assert!(
            err.contains("field TTL") && err.contains("without FEAT_TTL"),
            "{err}"
        );
        // The TLBI removed nothing, so the free is caught.
        assert_eq!(o.status.code(), Some(1), "{operand}: {}", stdout(&o));
    }
}

/// linux-reference.md §B.6: (mnemonic, fields, operand).
const ARM64_VECTORS: &[(&str, &str, u64)] = &[
    (
        "VALE1IS",
        "asid=0x42 va=0xffff8a3b5000",
        0x0042_000f_fff8_a3b5,
    ),
    (
        "VALE1IS",
        "asid=0x42 va=0xffff8a3b5000 ttl=3",
        0x0042_700f_fff8_a3b5,
    ),
    (
        "VAE1IS",
        "asid=0x42 va=0x40200000 ttl=2",
        0x0042_6000_0004_0200,
    ),
    (
        "RVAE1IS",
        "asid=5 va=0x40000000 scale=1 num=7",
        0x0005_5380_0004_0000,
    ),
    (
        "RVAE1IS",
        "asid=1 va=0x1000 scale=0 num=0",
        0x0001_4000_0000_0001,
    ),
    ("VAE1IS", "asid=1 va=0x3000", 0x0001_0000_0000_0003),
    (
        "RVAE1IS",
        "asid=7 va=0x10000000 scale=1 num=14",
        0x0007_5700_0001_0000,
    ),
    (
        "RVAE1IS",
        "asid=7 va=0x103c0000 scale=0 num=19",
        0x0007_4980_0001_03c0,
    ),
    (
        "RVAE1IS",
        "asid=0 va=0x40000000 scale=3 num=31",
        0x0000_7f80_0004_0000,
    ),
    (
        "RIPAS2E1IS",
        "ipa=0x40000000 scale=1 num=7",
        0x0000_5380_0004_0000,
    ),
];

#[test]
fn tlbi_encode_decode_round_trips_the_worked_vectors() {
    for (op, fields, want) in ARM64_VECTORS {
        let mut args = vec!["encode", "tlbi", op];
        args.extend(fields.split(' '));
        let o = tlbcheck(&args);
        assert_eq!(o.status.code(), Some(0), "{op} {fields}: {}", stderr(&o));
        assert_eq!(stdout(&o).trim(), format!("{want:#018x}"), "{op} {fields}");
        let hex = format!("{want:#018x}");
        let o = tlbcheck(&["decode", "tlbi", op, &hex, "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        for key in [
            "asid",
            "ttl",
            "tg",
            "scale",
            "num",
            "base_addr",
            "va_start",
            "va_end",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        // Decoding then re-encoding from the decoded fields gives the operand back.
        if op.starts_with('R') {
            let base = v["base_addr"].as_u64().unwrap();
            let mut args = vec!["encode".to_string(), "tlbi".into(), op.to_string()];
            for k in ["asid", "scale", "num", "tg"] {
                if let Some(x) = v[k].as_u64() {
                    args.push(format!("{k}={x}"));
                }
            }
            args.push(format!("base={base:#x}"));
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            assert_eq!(stdout(&tlbcheck(&refs)).trim(), hex, "{args:?}");
        }
    }
    // The range of row 4: 512 pages of 4 KiB from 1 GiB.
    let o = tlbcheck(&["decode", "tlbi", "RVAE1IS", "0x0005538000040000", "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["va_start"], 0x4000_0000u64);
    assert_eq!(v["va_end"], 0x4000_0000u64 + 512 * 4096 - 1);
    assert_eq!(v["asid"], 5);
    assert_eq!(v["scale"], 1);
    assert_eq!(v["num"], 7);
}

#[test]
fn tlbi_codec_takes_the_outer_shareable_forms() {
    // VAE1OS, ASID 1 in [63:48], VA 0x4000 >> 12 = 4 in [43:0]: the
    // operand layout of VAE1IS (FEAT_TLBIOS changes only the domain).
    let o = tlbcheck(&["encode", "tlbi", "vae1os", "asid=1", "va=0x4000", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["op"], "VAE1OS");
    assert_eq!(v["operand"], "0x0001000000000004");
    // RVAE1OS: ASID 5, TG 4K, SCALE 1, NUM 7 = 512 pages from 1 GiB.
    let o = tlbcheck(&["decode", "tlbi", "RVAE1OS", "0x0005538000040000", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["va_start"], 0x4000_0000u64);
    assert_eq!(v["va_end"], 0x4000_0000u64 + 512 * 4096 - 1);
    // An OS suffix on an IS mnemonic names nothing.
    let o = tlbcheck(&["decode", "tlbi", "VAE1ISOS", "0x1"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("VAE1ISOS"), "{}", stderr(&o));
}

#[test]
fn tlbi_decode_errors_name_the_field() {
    let o = tlbcheck(&["decode", "tlbi", "RVAE1IS", "0x0001000000000001"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("field TG = 0b00"), "{}", stderr(&o));
    let o = tlbcheck(&["encode", "tlbi", "VAE1IS", "asid=1", "bogus=2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no field `bogus`"));
    // EL3 maintenance is not modelled; the EL2 forms are.
    let o = tlbcheck(&["decode", "tlbi", "VAE3IS", "0"]);
    assert_eq!(o.status.code(), Some(2));
    let o = tlbcheck(&["decode", "tlbi", "VAE2IS", "0"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// linux-reference.md §C.8: (opcode, fields, dw0, dw1).
const SMMU_VECTORS: &[(&str, &str, u64, u64)] = &[
    (
        "CMD_TLBI_NH_VA",
        "vmid=3 asid=0x42 addr=0x7f1234567000 leaf=1",
        0x0042_0003_0000_0012,
        0x0000_7f12_3456_7001,
    ),
    (
        "CMD_TLBI_NH_VA",
        "asid=1 addr=0x10000000 leaf=1 tg=1 ttl=3 scale=9 num=0",
        0x0001_0000_0090_0012,
        0x0000_0000_1000_0701,
    ),
    (
        "CMD_TLBI_NH_VA",
        "asid=0x42 addr=0x20000000 leaf=1 tg=1 ttl=3 scale=3 num=28",
        0x0042_0000_0031_c012,
        0x0000_0000_2000_0701,
    ),
    (
        "CMD_TLBI_NH_VA",
        "asid=0x42 addr=0x7f0000000000 tg=1 scale=1 num=16",
        0x0042_0000_0011_0012,
        0x0000_7f00_0000_0400,
    ),
    (
        "CMD_TLBI_S2_IPA",
        "vmid=7 addr=0x80000000 leaf=1 tg=1 ttl=3",
        0x0000_0007_0000_002a,
        0x0000_0000_8000_0701,
    ),
    (
        "CMD_TLBI_S2_IPA",
        "vmid=7 addr=0x40000000 leaf=1 tg=1 ttl=2 scale=18",
        0x0000_0007_0120_002a,
        0x0000_0000_4000_0601,
    ),
    ("CMD_TLBI_NH_ASID", "asid=0x42", 0x0042_0000_0000_0011, 0),
    ("CMD_TLBI_NH_ALL", "vmid=9", 0x0000_0009_0000_0010, 0),
    ("CMD_TLBI_S12_VMALL", "vmid=7", 0x0000_0007_0000_0028, 0),
    (
        "CMD_ATC_INV",
        "sid=0x100 ssid=5 ssv=1 addr=0 size=4",
        0x0000_0100_0000_5840,
        0x4,
    ),
    (
        "CMD_ATC_INV",
        "sid=0x100 size=52",
        0x0000_0100_0000_0040,
        0x34,
    ),
    (
        "CMD_CFGI_CD",
        "sid=0x100 ssid=5 leaf=1",
        0x0000_0100_0000_5005,
        1,
    ),
    ("CMD_CFGI_STE", "sid=0x100 leaf=1", 0x0000_0100_0000_0003, 1),
    ("CMD_CFGI_ALL", "", 0x4, 0x1f),
    (
        "CMD_SYNC",
        "cs=1 msh=3 msiattr=0xf msiaddr=0x880001230",
        0x0000_0000_0fc0_1046,
        0x0000_0008_8000_1230,
    ),
    (
        "CMD_PRI_RESP",
        "sid=0x100 ssid=5 ssv=1 prgindex=3 resp=2",
        0x0000_0100_0000_5841,
        0x2003,
    ),
    (
        "CMD_RESUME",
        "sid=0x100 stag=0x2a ac=1",
        0x0000_0100_0000_1044,
        0x2a,
    ),
];

#[test]
fn smmu_encode_decode_round_trips_the_worked_vectors() {
    for (op, fields, dw0, dw1) in SMMU_VECTORS {
        let mut args = vec!["encode", "smmu", op];
        args.extend(fields.split(' ').filter(|f| !f.is_empty()));
        let o = tlbcheck(&args);
        assert_eq!(o.status.code(), Some(0), "{op} {fields}: {}", stderr(&o));
        assert_eq!(
            stdout(&o).trim(),
            format!("{dw0:#018x} {dw1:#018x}"),
            "{op} {fields}"
        );
        let (h0, h1) = (format!("{dw0:#x}"), format!("{dw1:#x}"));
        let o = tlbcheck(&["decode", "smmu", &h0, &h1, "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        assert_eq!(v["opcode"], *op, "{v}");
        // Every field given to encode comes back from decode with its value.
        for f in fields.split(' ').filter(|f| !f.is_empty()) {
            let (k, val) = f.split_once('=').unwrap();
            let want = tlbcheck::scenario::lex::number(val).unwrap();
            assert_eq!(v[k].as_u64(), Some(want), "{op}: {k} in {v}");
        }
        // And the decoded fields encode back to the same words.
        let obj = v.as_object().unwrap();
        let mut args = vec!["encode".to_string(), "smmu".into(), op.to_string()];
        for (k, x) in obj.iter().filter(|(k, _)| *k != "opcode") {
            args.push(format!("{k}={}", x.as_u64().unwrap()));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(
            stdout(&tlbcheck(&refs)).trim(),
            format!("{dw0:#018x} {dw1:#018x}"),
            "{args:?}"
        );
    }
}

#[test]
fn smmu_decode_errors_name_field_and_value() {
    // CMD_SYNC with CS = 0b11.
    let o = tlbcheck(&["decode", "smmu", "0x3046", "0"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("CS") && err.contains("0x3"), "{err}");
    // An unknown opcode.
    let o = tlbcheck(&["decode", "smmu", "0xff", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("opcode 0xff"), "{}", stderr(&o));
    // NUM set with TG = 0.
    let o = tlbcheck(&["decode", "smmu", "0x1012", "0x1000"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("NUM"), "{}", stderr(&o));
    // Encoding a field the command does not have.
    let o = tlbcheck(&["encode", "smmu", "CMD_TLBI_NH_ALL", "asid=1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no field `asid`"), "{}", stderr(&o));
}

/// An SVA device behind an SMMU, fixed with CMD_TLBI_NH_VA + CMD_SYNC: the
/// base that the SMMU set-up error cases edit.
const VALID_SMMU: &str = "scenario s
machine cpus=2
smmu stall
frame L0 s1-table process=1 level=0
frame L1 s1-table process=1 level=1
frame L2 s1-table process=1 level=2
frame L3 s1-table process=1 level=3
frame DATA data process=1
frame CDT smmu
context p1 stage1 asid=1 root=L0
L0[0] = table L1
L1[0] = table L2
L2[0] = table L3
L3[0] = page DATA ro user ng
ste 3 s1 cd=CDT
cd CDT[0] ctx=p1 stall
device dev0 sid=3
thread h cpu=0 {
  await-fault dev0
  L3[0] = page DATA rw user ng
  dsb ishst
  tlbi VAE1IS asid=1 va=0
  dsb ish
  smmu cmd CMD_TLBI_NH_VA vmid=0 asid=1 addr=0x0
  cmd_sync
  resume dev0
}
thread d cpu=1 {
  device dev0 access write 0x0
}
expect ok
";

/// SMMU set-up mistakes are located at the statement, field or value at
/// fault, and nothing runs.
#[test]
fn broken_smmu_setups_exit_two_with_line_and_column() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("ste 3 s1 cd=CDT", "ste 3 s1", ":15:7:", "needs cd=FRAME"),
        (
            "ste 3 s1 cd=CDT",
            "ste 3 s1 cd=CDT s2root=L0",
            ":15:17:",
            "is a stage-2 setting",
        ),
        (
            "ste 3 s1 cd=CDT",
            "ste 3 s1 cd=CDT eats=1",
            ":15:1:",
            "lacks ATS",
        ),
        (
            "ste 3 s1 cd=CDT",
            "ste 3 wibble",
            ":15:7:",
            "expected an STE config",
        ),
        (
            "cd CDT[0] ctx=p1 stall",
            "cd CDT[64] ctx=p1 stall",
            ":16:8:",
            "slot 64 is out of range",
        ),
        (
            "cd CDT[0] ctx=p1 stall",
            "cd L3[0] ctx=p1 stall",
            ":16:4:",
            "must be an `smmu` frame",
        ),
        (
            "cd CDT[0] ctx=p1 stall",
            "cd CDT[0] ctx=p2 stall",
            ":16:15:",
            "unknown context `p2`",
        ),
        (
            "cd CDT[0] ctx=p1 stall",
            "cd CDT[0] stall",
            ":16:1:",
            "needs ctx=",
        ),
        ("smmu stall", "smmu", ":16:1:", "stall model"),
        (
            "device dev0 sid=3",
            "device dev0 sid=4",
            ":17:17:",
            "no `ste 4` describes it",
        ),
        ("device dev0 sid=3", "device dev0", ":17:1:", "needs sid=S"),
        (
            "frame CDT smmu",
            "frame CDT smmu\nstream 2-level split=7",
            ":10:22:",
            "SPLIT = 7",
        ),
        (
            "frame CDT smmu",
            "frame CDT smmu\nqueue cmdq at=DATA",
            ":10:15:",
            "must live in an `smmu` frame",
        ),
        (
            "device dev0 access write 0x0",
            "device dev1 access write 0x0",
            ":29:10:",
            "unknown device `dev1`",
        ),
        (
            "  resume dev0",
            "  rely-config dev9",
            ":26:15:",
            "unknown device",
        ),
        (
            "smmu cmd CMD_TLBI_NH_VA vmid=0 asid=1 addr=0x0",
            "smmu cmd CMD_ATC_INV sid=3 addr=0x0 size=0",
            ":24:3:",
            "needs ATS",
        ),
        ("smmu stall\n", "", ":14:1:", "the machine has no SMMU"),
    ];
    each_edit_is_refused_where_it_is("smmu", VALID_SMMU, cases);
}

/// `explain` on an SMMU counterexample names the SMMU agent that holds the
/// stale entry and the SMMU command that should have removed it.
#[test]
fn explain_names_the_smmu_agent_and_the_blamed_command() {
    let f = "examples/seed002/03-smmu-range-ttl-misses-block-buggy.tlb";
    let o = tlbcheck(&["explain", f]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("violation freed-frame-mapped"), "{out}");
    assert!(out.contains("agent:  SMMU IOTLB"), "{out}");
    let blame = out
        .lines()
        .find(|l| l.contains("did not remove it"))
        .unwrap_or_else(|| panic!("no blame line in\n{out}"));
    assert!(
        blame.contains("smmu cmd CMD_TLBI_NH_VA") && blame.contains("TTL hint"),
        "{blame}"
    );
}

/// A 16K stage 2 starts at level 1 with two concatenated tables (Arm ARM
/// D8.2.9): a root declared as a level-0 table is refused where it is named,
/// and a 32 KiB level-1 root is accepted.
#[test]
fn sixteen_k_stage2_roots_must_be_level1_tables() {
    let scenario = |level: u8, frames: u8| {
        format!(
            "scenario s\nmachine granule=16k cpus=1\nframe S0 s2-table vm=1 level={level} frames={frames}\n\
             context g stage2 vmid=1 root=S0\nthread t cpu=0 {{\n  dsb ish\n}}\nexpect ok\n"
        )
    };
    let p = scratch("s2root.tlb", &scenario(0, 4));
    let o = tlbcheck(&["check", p.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("s2root.tlb:4:30:"), "{err}");
    assert!(err.contains("stage-2 walk starts at level 1"), "{err}");
    let p = scratch("s2root-ok.tlb", &scenario(1, 8));
    let o = tlbcheck(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

/// munmap of one page alone in its VMA on linux-6.6, with a device bound
/// through SVA (no BTM, no RIL, no ATS).
const MUNMAP_SVA_6_6: &str = "scenario trace-munmap-sva-linux-6.6
machine granule=4k cpus=1
smmu
kernel linux-6.6
process p1 asid=1
vma p1 0x0 0x1000 rw
page p1 0x0 rw
frame CDT smmu
ste 3 s1 cd=CDT
cd CDT[0] ctx=p1
device dev0 sid=3
bind-sva dev0 p1
thread unmap cpu=0 {
  munmap p1 0x0 0x1000
}
expect ok
";

/// The stream, derived by hand (not from the program's output).
///
/// Frames: the declared `CDT` takes the pool's first frame (0x100000); the
/// SMMU's Stream table, Command queue and Event queue the next three;
/// then p1's level-0 table (0x104000) and, for `page p1 0x0`, its level-1,
/// level-2 and level-3 tables and the data frame (0x105000 to 0x108000).
///
/// `unmap_region` clears the PTE (L3[0] at 0x107000). `unmap_page_range`
/// ends with `tlb_end_vma`, which on arm64 (no MMU_GATHER_MERGE_VMAS)
/// flushes the gathered PTE: `__flush_tlb_range(0, 0x1000, PAGE_SIZE,
/// last_level = true, level 3)`, without FEAT_TLBIRANGE or FEAT_TTL one
/// TLBI VALE1IS with ASID 1 in [63:48], VA[55:12] = 0, no TTL
/// (linux-reference.md §B.1): 0x0001000000000000. v6.6's hook
/// (6bbd42e2df8f) follows the DSB ISH with the range the loop left,
/// (0x1000, 0x1000): the SMMU driver's size 0 becomes
/// `arm_smmu_tlb_inv_asid` (38b14e2e3de9): CMD_TLBI_NH_ASID, opcode 0x11,
/// ASID [63:48] = 1, VMID 0; then CMD_SYNC, opcode 0x46 with CS = SEV (2)
/// at [13:12], MSH = 3 at [23:22], MSIATTR = 0xf at [27:24] (§C.2).
/// `free_pgtables` finds no other VMA in p1, so it unlinks the level-3,
/// level-2 and level-1 tables innermost first (L2[0], L1[0], L0[0]; the
/// last through arm64's `set_p4d`, which ends with a DSB ISHST),
/// gathering [0, 0x1000) each time (0 is PMD, PUD and P4D aligned) with
/// cleared_pmds, _puds, _p4ds and freed_tables. `tlb_finish_mmu`'s
/// `tlb_flush`: stride PMD_SIZE (`tlb_get_unmap_size`), non-leaf, no
/// level: the range rounds to [0, 2 MiB), one stride, one TLBI VAE1IS
/// 0x0001000000000000, DSB ISH, and the hook again with an empty range
/// (0x200000, 0x200000): TLBI_NH_ASID. The data page is freed, then the
/// three tables.
const MUNMAP_SVA_6_6_STREAM: &[(&str, &str)] = &[
    (
        "zap_pte_range: ptep_get_and_clear_full",
        "STR [0x107000] = 0x0",
    ),
    ("tlb_end_vma: tlb_flush", "DSB ISHST"),
    ("tlb_end_vma: tlb_flush", "TLBI VALE1IS 0x0001000000000000"),
    ("tlb_end_vma: tlb_flush", "DSB ISH"),
    ("arm_smmu_cmdq_issue_cmdlist: dma_wmb", "DSB ISHST"),
    (
        "mmu_notifier_arch_invalidate_secondary_tlbs",
        "CMD_TLBI_NH_ASID 0x0001000000000011 0x0000000000000000",
    ),
    (
        "mmu_notifier_arch_invalidate_secondary_tlbs",
        "CMD_SYNC 0x000000000fc02046 0x0000000000000000",
    ),
    ("free_pgtables: pmd_clear", "STR [0x106000] = 0x0"),
    ("free_pgtables: pud_clear", "STR [0x105000] = 0x0"),
    ("free_pgtables: p4d_clear", "STR [0x104000] = 0x0"),
    ("free_pgtables: p4d_clear: set_p4d", "DSB ISHST"),
    ("tlb_finish_mmu: tlb_flush", "DSB ISHST"),
    (
        "tlb_finish_mmu: tlb_flush",
        "TLBI VAE1IS 0x0001000000000000",
    ),
    ("tlb_finish_mmu: tlb_flush", "DSB ISH"),
    ("arm_smmu_cmdq_issue_cmdlist: dma_wmb", "DSB ISHST"),
    (
        "mmu_notifier_arch_invalidate_secondary_tlbs",
        "CMD_TLBI_NH_ASID 0x0001000000000011 0x0000000000000000",
    ),
    (
        "mmu_notifier_arch_invalidate_secondary_tlbs",
        "CMD_SYNC 0x000000000fc02046 0x0000000000000000",
    ),
    (
        "tlb_flush_mmu_free: free_pages_and_swap_cache",
        "FREE 0x108000",
    ),
    ("tlb_flush_mmu_free: tlb_remove_table", "FREE 0x107000"),
    ("tlb_flush_mmu_free: tlb_remove_table", "FREE 0x106000"),
    ("tlb_flush_mmu_free: tlb_remove_table", "FREE 0x105000"),
];

#[test]
fn trace_prints_the_munmap_stream_of_linux_6_6_with_sva() {
    let f = scratch("trace-munmap.tlb", MUNMAP_SVA_6_6);
    let o = tlbcheck(&["trace", f.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let got: Vec<(String, String)> = lines
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] != "sync")
        .map(|l| {
            let origin = l["origin"].as_str().unwrap();
            let func = origin
                .strip_prefix("p1 munmap(0x0-0x1000): ")
                .unwrap_or(origin);
            (func.to_string(), l["text"].as_str().unwrap().to_string())
        })
        .collect();
    let want: Vec<(String, String)> = MUNMAP_SVA_6_6_STREAM
        .iter()
        .map(|&(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, want);
    // The structured fields carry the same operands.
    let tlbi = lines
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == "tlbi")
        .unwrap();
    assert_eq!(tlbi["tlbi"], "VALE1IS");
    assert_eq!(tlbi["operand"], "0x0001000000000000");

    // The text form: the kernel function as a header above its
    // instructions, operands in hex.
    let o = tlbcheck(&["trace", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let header = "[unmap] p1 munmap(0x0-0x1000): tlb_finish_mmu: tlb_flush\n";
    let at = out.find(header).unwrap_or_else(|| panic!("{out}"));
    let below: Vec<&str> = out[at + header.len()..].lines().take(3).collect();
    assert!(
        below[1].ends_with("TLBI VAE1IS 0x0001000000000000"),
        "{out}"
    );
    assert!(out.contains("CMD_TLBI_NH_ASID 0x0001000000000011 0x0000000000000000"));
    assert!(!out.contains("violation"), "{out}");
}

#[test]
fn trace_schedule_with_an_unknown_thread_is_bad_input() {
    let f = scratch("trace-schedule.tlb", MUNMAP_SVA_6_6);
    let o = tlbcheck(&["trace", f.to_str().unwrap(), "--schedule", "unmap,dma"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("schedule entry 2 `dma` is not a thread of this scenario (threads: unmap)"),
        "{err}"
    );
    assert!(stdout(&o).is_empty());
}

#[test]
fn trace_follows_the_schedule_then_the_default_order() {
    // seed 000's upgrade: the device faults first only if dma runs first.
    let file = "examples/seed000/05-kernel-upgrade-fixed.tlb";
    let o = tlbcheck(&["trace", file, "--schedule", "dma", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let first = &lines.as_array().unwrap()[0];
    assert_eq!(first["thread"], "dma");
    assert_eq!(first["kind"], "device");
    // The handler cannot start before the device has faulted.
    let o = tlbcheck(&["trace", file, "--schedule", "handler"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("schedule entry 1 `handler`: the thread cannot run here"),
        "{}",
        stderr(&o)
    );
}

/// The instructions of a run, without the synchronisation steps.
fn stream_texts(file: &str) -> Vec<String> {
    let o = tlbcheck(&["trace", file, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    lines
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] != "sync")
        .map(|l| l["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn fork_tells_the_atc_before_the_cpu_flush_on_6_5_and_after_it_on_6_6() {
    let pos = |v: &[String], p: &str| v.iter().position(|t| t.starts_with(p)).unwrap();
    // p1's PTE for its one page (L3[0] at 0x108000: frames 0x100000 CDT,
    // 0x101000-0x103000 SMMU structures, 0x104000 and 0x105000 the roots
    // of p1 and c1, 0x106000-0x108000 p1's tables, 0x109000 its data)
    // becomes read-only: AF, nG, AP[2:1] = 0b11, page, valid.
    let ro = "STR [0x108000] = 0x109cc3";
    let v65 = stream_texts("examples/fork/01-cow-btm-ats-linux-6.5.tlb");
    assert_eq!(v65[0], ro, "{v65:?}");
    assert!(
        pos(&v65, "CMD_ATC_INV") < pos(&v65, "TLBI ASIDE1IS"),
        "{v65:?}"
    );
    let v66 = stream_texts("examples/fork/01-cow-btm-ats-linux-6.6.tlb");
    assert_eq!(v66[0], ro, "{v66:?}");
    let tlbi = pos(&v66, "TLBI ASIDE1IS");
    assert_eq!(v66[tlbi + 1], "DSB ISH");
    // After the DSB ISH: the dma_wmb stand-in, then ATC_INV of everything
    // (Size = 52 = 0x34).
    assert_eq!(
        v66[tlbi + 3],
        "CMD_ATC_INV 0x0000000300000040 0x0000000000000034"
    );
}

#[test]
fn a_mirror_fault_names_a_mirror() {
    let src = MUNMAP_SVA_6_6.replace("munmap p1 0x0 0x1000", "mirror-fault p1 0x0");
    refused(
        "mirror-fault-on-a-process.tlb",
        &src,
        "`p1` is not a mirror",
    );
}

#[test]
fn the_mirror_retry_shows_in_the_stream() {
    let v = stream_texts("examples/mirror/01-seq-retry-fixed.tlb");
    // By default drv runs first: it installs p1's PTE into the shadow
    // table (m1's level-3 table, the frame after p1's data page), and the
    // madvise's invalidate_range_start zaps it and invalidates the SMMU's
    // TLB by ASID 5, leaf, before the page is freed.
    let install = v
        .iter()
        .position(|t| t.starts_with("STR [0x10c000] = 0x109"))
        .unwrap();
    let zap = v.iter().position(|t| t == "STR [0x10c000] = 0x0").unwrap();
    let tlbi = v
        .iter()
        .position(|t| t == "CMD_TLBI_NH_VA 0x0005000000000012 0x0000000000000001")
        .unwrap();
    let free = v.iter().position(|t| t == "FREE 0x109000").unwrap();
    assert!(install < zap && zap < tlbi && tlbi < free, "{v:?}");
}

#[test]
fn mremap_needs_a_declared_destination() {
    let src = MUNMAP_SVA_6_6.replace("munmap p1 0x0 0x1000", "mremap p1 0x0 0x1000 0x5000");
    refused(
        "mremap-nowhere.tlb",
        &src,
        "the new range lies inside one declared VMA",
    );
}

#[test]
fn mremap_on_6_6_tells_the_smmu_before_dropping_the_lock() {
    let o = tlbcheck(&[
        "trace",
        "examples/seed001/02-mremap-reclaim-fixed.tlb",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let ops: Vec<(String, String)> = lines
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["thread"] == "mv")
        .map(|l| {
            let o = l["origin"].as_str().unwrap_or("");
            (
                o.rsplit(": ").next().unwrap().to_string(),
                l["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let asid = ops
        .iter()
        .position(|(_, t)| t.starts_with("CMD_TLBI_NH_ASID 0x0001000000000011"))
        .unwrap_or_else(|| panic!("{ops:?}"));
    let unlock = ops
        .iter()
        .position(|(f, _)| f == "pte_unmap_unlock")
        .unwrap();
    assert!(asid < unlock, "{ops:?}");
}

#[test]
fn a_mirror_fault_that_raced_an_invalidation_starts_again() {
    // drv reads the PTE, then the MADV_DONTNEED opens the mirror's count
    // and zaps; drv's mmu_interval_read_retry sees the count moved, waits
    // for invalidate_range_end, reads the cleared PTE and installs nothing.
    let mut schedule = vec!["drv"; 3];
    schedule.extend(["madv"; 9]);
    let schedule = schedule.join(",");
    let o = tlbcheck(&[
        "trace",
        "examples/mirror/01-seq-retry-fixed.tlb",
        "--schedule",
        &schedule,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let retry = out
        .find("mmu_interval_read_retry: the count moved, fault again")
        .unwrap_or_else(|| panic!("{out}"));
    let end = out.find("invalidate_range_end: mirror").unwrap();
    let second_begin = out[end..].find("mmu_interval_read_begin").unwrap();
    assert!(retry < end && second_begin > 0, "{out}");
    assert!(!out.contains("install the shadow PTE"), "{out}");
    assert!(!out.contains("violation"), "{out}");
}

#[test]
fn fork_cow_with_sva_on_every_version() {
    // (kernel, SMMU features, verdict): only BTM with ATS separates the
    // versions; popple-2023-05 changes nothing on this path.
    let cases = [
        ("linux-6.5", "btm ats", "violation stale-write"),
        ("popple-2023-05", "btm ats", "violation stale-write"),
        ("linux-6.6", "btm ats", "ok"),
        ("linux-6.5", "ats", "ok"),
        ("popple-2023-05", "ats", "ok"),
        ("linux-6.6", "ats", "ok"),
        ("linux-6.5", "btm", "ok"),
        ("linux-6.6", "btm", "ok"),
    ];
    let base =
        std::fs::read_to_string(repo().join("examples/fork/01-cow-btm-ats-linux-6.5.tlb")).unwrap();
    for (i, (kernel, smmu, expect)) in cases.iter().enumerate() {
        let mut src = base
            .replace("kernel linux-6.5", &format!("kernel {kernel}"))
            .replace("smmu btm ats", &format!("smmu {smmu}"))
            .replace("expect violation stale-write", &format!("expect {expect}"));
        if !smmu.contains("ats") {
            src = src.replace(" eats=1", "").replace("sid=3 ats", "sid=3");
        }
        let o = check_src(&format!("fork-{i}.tlb"), &src);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{kernel} smmu {smmu}: {}{}",
            stdout(&o),
            stderr(&o)
        );
    }
}

#[test]
fn mprotect_to_read_only_with_sva_is_ok_on_every_version() {
    // mprotect finishes its mmu_gather before returning: v6.5 and the
    // Popple patch tell the secondaries again from tlb_flush_mmu_tlbonly
    // after the CPU flush completed, v6.6 from __flush_tlb_range after
    // its DSB ISH. No version or SMMU feature set leaves a writable entry.
    let base =
        std::fs::read_to_string(repo().join("examples/mprotect/01-ro-sva-btm-ats-linux-6.5.tlb"))
            .unwrap();
    for kernel in ["linux-6.5", "popple-2023-05", "linux-6.6"] {
        for smmu in ["btm ats", "ats", "btm", ""] {
            let mut src = base
                .replace("kernel linux-6.5", &format!("kernel {kernel}"))
                .replace("smmu btm ats", &format!("smmu {smmu}"));
            if !smmu.contains("ats") {
                src = src.replace(" eats=1", "").replace("sid=3 ats", "sid=3");
            }
            let o = check_src(
                &format!("mprotect-{kernel}-{}.tlb", smmu.replace(' ', "-")),
                &src,
            );
            assert_eq!(
                o.status.code(),
                Some(0),
                "{kernel} smmu {smmu}: {}{}",
                stdout(&o),
                stderr(&o)
            );
        }
    }
    // Without the mprotect the device's writable entry is still there:
    // the expectation is what finds it.
    let src = base.replace("  mprotect p1 0x0 0x1000 ro\n", "");
    let o = check_src("mprotect-none.tlb", &src);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("stale-write"), "{}", stdout(&o));
}

#[test]
fn mprotect_on_6_5_tells_the_smmu_twice_and_6_6_once_after_the_dsb() {
    let f = repo().join("examples/mprotect/01-ro-sva-btm-ats-linux-6.5.tlb");
    let texts = stream_texts(f.to_str().unwrap());
    let pos = |t: &str| texts.iter().position(|x| x.starts_with(t));
    let atc: Vec<usize> = (0..texts.len())
        .filter(|&i| texts[i].starts_with("CMD_ATC_INV"))
        .collect();
    let tlbi = pos("TLBI VALE1IS").expect("a leaf TLBI of the page");
    assert_eq!(atc.len(), 2, "{texts:?}");
    assert!(atc[0] < tlbi && tlbi < atc[1], "{texts:?}");
    let src = std::fs::read_to_string(&f)
        .unwrap()
        .replace("kernel linux-6.5", "kernel linux-6.6");
    let g = scratch("mprotect-6.6.tlb", &src);
    let texts = stream_texts(g.to_str().unwrap());
    let atc: Vec<usize> = (0..texts.len())
        .filter(|&i| texts[i].starts_with("CMD_ATC_INV"))
        .collect();
    let dsb = texts.iter().rposition(|x| x == "DSB ISH").unwrap();
    assert_eq!(atc.len(), 1, "{texts:?}");
    assert!(dsb < atc[0], "{texts:?}");
}

#[test]
fn exit_stream_matches_exit_mmap_and_arm_smmu_mm_release() {
    // Derived by hand from exit_mmap (v6.6) for the example: CDT is the
    // first frame (0x100000); the stream table and the queues take the
    // next three; p1's level-0 table is 0x104000, and set-up allocates
    // its level-1, -2 and -3 tables (0x105000..0x107000) and the two data
    // pages (0x108000, 0x109000).
    let f = repo().join("examples/exit/01-exit-sva-ats-linux-6.6.tlb");
    let cd0 =
        tlbcheck_hw::smmu::cd::Cd::new(1, 0x104000, tlbcheck_hw::addr::Granule::K4).encode()[0];
    let sync = "CMD_SYNC 0x000000000fc02046 0x0000000000000000";
    let want = [
        // mmu_notifier_release -> arm_smmu_mm_release:
        // arm_smmu_write_ctx_desc(quiet_cd) sets EPD0 (CD word 0 bit 14)
        format!("STR [0x100000] = {:#x}", cd0 | 1 << 14),
        // arm_smmu_sync_cd: CFGI_CD SID 3 SSID 0 Leaf, after dma_wmb
        "DSB ISHST".into(),
        "CMD_CFGI_CD 0x0000000300000005 0x0000000000000001".into(),
        sync.into(),
        // arm_smmu_tlb_inv_asid: TLBI_NH_ASID ASID 1
        "DSB ISHST".into(),
        "CMD_TLBI_NH_ASID 0x0001000000000011 0x0000000000000000".into(),
        sync.into(),
        // arm_smmu_atc_inv_domain(.., 0, 0): ATC_INV SID 3, Size 52 (all)
        "DSB ISHST".into(),
        "CMD_ATC_INV 0x0000000300000040 0x0000000000000034".into(),
        sync.into(),
        // unmap_vmas: ptep_get_and_clear_full of both PTEs
        "STR [0x107000] = 0x0".into(),
        "STR [0x107008] = 0x0".into(),
        // free_pgtables: pmd_clear, pud_clear, p4d_clear (arm64's
        // set_p4d ends with dsb(ishst))
        "STR [0x106000] = 0x0".into(),
        "STR [0x105000] = 0x0".into(),
        "STR [0x104000] = 0x0".into(),
        "DSB ISHST".into(),
        // tlb_finish_mmu -> tlb_flush, fullmm with tables freed:
        // flush_tlb_mm; its v6.6 notifier hook finds no subscription
        "DSB ISHST".into(),
        "TLBI ASIDE1IS 0x0001000000000000".into(),
        "DSB ISH".into(),
        // tlb_flush_mmu_free: the pages, then the tables
        "FREE 0x108000".into(),
        "FREE 0x109000".into(),
        "FREE 0x107000".into(),
        "FREE 0x106000".into(),
        "FREE 0x105000".into(),
        // the DMA thread runs after
        "device 0 write VA 0x1000".into(),
    ];
    assert_eq!(stream_texts(f.to_str().unwrap()), want);

    // Every version releases the same way and is ok; a CD the kernel
    // cannot find (no `ctx=p1`) is not quieted, the SMMU walks the table
    // again after the TLBI_NH_ASID, and the frees are caught.
    let base = std::fs::read_to_string(&f).unwrap();
    for kernel in ["linux-6.5", "popple-2023-05", "linux-6.6"] {
        for smmu in ["btm ats", "ats"] {
            let src = base
                .replace("kernel linux-6.6", &format!("kernel {kernel}"))
                .replace("smmu ats", &format!("smmu {smmu}"));
            let g = scratch(
                &format!("exit-{kernel}-{}.tlb", smmu.replace(' ', "-")),
                &src,
            );
            let o = tlbcheck(&["check", g.to_str().unwrap()]);
            assert_eq!(o.status.code(), Some(0), "{kernel} {smmu}: {}", stdout(&o));
        }
    }
    let src = base.replace("cd CDT[0] ctx=p1", "cd CDT[0] asid=1 ttb0=p1");
    let g = scratch("exit-loud-cd.tlb", &src);
    let o = tlbcheck(&["check", g.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("freed-frame-mapped"), "{}", stdout(&o));
}

#[test]
fn mmap_and_touch_are_checked_against_the_vmas() {
    let base = MUNMAP_SVA_6_6;
    let step = "munmap p1 0x0 0x1000";
    refused(
        "touch-outside.tlb",
        &base.replace(step, "touch p1 0x5000 read"),
        "0x5000 is in no VMA of `p1`",
    );
    refused(
        "touch-ro.tlb",
        &base
            .replace("vma p1 0x0 0x1000 rw", "vma p1 0x0 0x1000 ro")
            .replace("page p1 0x0 rw", "page p1 0x0 ro")
            .replace(step, "touch p1 0x0 write"),
        "SIGSEGV",
    );
    refused(
        "touch-exec.tlb",
        &base.replace(step, "touch p1 0x0 exec"),
        "expected `read` or `write`, found `exec`",
    );
    refused(
        "mmap-overlap.tlb",
        &base.replace(step, "mmap p1 0x0 0x2000 rw"),
        "overlaps another VMA",
    );
    refused(
        "munmap-part.tlb",
        &base.replace(
            step,
            "mmap p1 0x10000 0x2000 rw\n  munmap p1 0x10000 0x1000",
        ),
        "VMAs do not split",
    );
    refused(
        "clean-ro-vma.tlb",
        &base
            .replace("vma p1 0x0 0x1000 rw", "vma p1 0x0 0x1000 ro")
            .replace("page p1 0x0 rw", "page p1 0x0 clean"),
        "needs a writable VMA",
    );
    refused(
        "mmap-beside-munmap.tlb",
        &base.replace(
            "expect ok",
            "thread b cpu=0 {\n  mmap p1 0x1000 0x1000 rw\n}\nexpect ok",
        ),
        "mmap_write_downgrade is not atomic",
    );
    refused(
        "touch-after-munmap.tlb",
        &base.replace(step, "munmap p1 0x0 0x1000\n  touch p1 0x0 write"),
        "declared for the whole run",
    );
    // A touch in an mmap'd VMA: one frame for each table and the page.
    let ok = base.replace(
        step,
        "mmap p1 0x200000 0x1000 rw\n  touch p1 0x200000 write\n  munmap p1 0x200000 0x1000",
    );
    let o = check_src("mmap-touch-munmap.tlb", &ok);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

/// An mmap'd VMA, touched: the demand fault's stream, derived from
/// `__pte_alloc` / `do_anonymous_page` (v6.6) by hand. Frames: CDT
/// 0x100000, the SMMU's three 0x101000..0x103000, p1's root 0x104000,
/// p1's set-up tables and page for 0x0 (0x105000..0x108000). The level-1
/// and level-2 tables of 0x0 serve 0x200000 too, so the touch allocates
/// its level-3 table (0x109000) and the page (0x10a000).
#[test]
fn a_demand_fault_links_its_tables_then_maps_the_page() {
    let src = MUNMAP_SVA_6_6.replace(
        "munmap p1 0x0 0x1000",
        "mmap p1 0x200000 0x1000 rw\n  touch p1 0x200000 write",
    );
    let f = scratch("touch-stream.tlb", &src);
    let want = [
        "alloc frame as stage-1 table of process 1 level 3",
        // pmd_populate: L2[1] (0x106008) = table 0x109000, and set_pmd's
        // dsb(ishst) for a valid entry
        "STR [0x106008] = 0x109003",
        "DSB ISHST",
        "alloc frame as data of process 1",
        // set_pte_at: AF | nG | AP[1] (user) | page | valid, writable
        "STR [0x109000] = 0x10ac43",
        "retry write ctx 0 VA 0x200000",
    ];
    assert_eq!(stream_texts(f.to_str().unwrap()), want);
}

/// Seed 004's patch notifies from handle_pte_fault's own
/// ptep_set_access_flags (a clean PTE made dirty), not from do_wp_page's
/// wp_page_reuse: only the clean page is fixed by it. v6.5 fixes neither,
/// v6.6 (the arch flush) both.
#[test]
fn the_popple_patch_covers_the_clean_pte_only() {
    let base = std::fs::read_to_string(repo().join("examples/seed000/05-kernel-upgrade-buggy.tlb"))
        .unwrap()
        .replace("expect violation fault-livelock\n", "");
    for (kernel, page, want) in [
        ("linux-6.5", "ro", "fault-livelock"),
        ("linux-6.5", "clean", "fault-livelock"),
        ("popple-2023-05", "ro", "fault-livelock"),
        ("popple-2023-05", "clean", "ok"),
        ("linux-6.6", "ro", "ok"),
        ("linux-6.6", "clean", "ok"),
    ] {
        let expect = if want == "ok" {
            "expect ok\n".to_string()
        } else {
            format!("expect violation {want}\n")
        };
        let src = base
            .replace("kernel linux-6.5", &format!("kernel {kernel}"))
            .replace("page p1 0x0 ro", &format!("page p1 0x0 {page}"))
            + &expect;
        let o = check_src(&format!("upgrade-{kernel}-{page}.tlb"), &src);
        assert_eq!(o.status.code(), Some(0), "{kernel} {page}: {}", stdout(&o));
    }
}

/// A mirror's shadow PTE is no mapping of the page for do_wp_page: the
/// write fault reuses the page (v6.5, v6.6: the folio's map count sees
/// only p1).
#[test]
fn a_mirror_does_not_make_a_page_shared() {
    let src = std::fs::read_to_string(repo().join("examples/mirror/01-seq-retry-fixed.tlb"))
        .unwrap()
        .replace("page p1 0x0 rw", "page p1 0x0 ro")
        .replace("madvise-dontneed p1 0x0 0x1000", "write-fault p1 0x0");
    let f = scratch("mirror-reuse.tlb", &src);
    let o = tlbcheck(&["trace", f.to_str().unwrap(), "--schedule", "drv"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(out.contains("install the shadow PTE"), "{out}");
    assert!(
        out.contains("wp_page_reuse: ptep_set_access_flags"),
        "{out}"
    );
    assert!(!out.contains("wp_page_copy"), "{out}");
}

/// One-page reclaim with a device bound through SVA (no BTM, RIL or
/// ATS). The streams, derived by hand from `try_to_unmap_one` and
/// `shrink_folio_list`: frames as for munmap above (PTE at 0x107000, the
/// page 0x108000). v6.5: `ptep_clear_flush` (DSB ISHST, TLBI VALE1IS of
/// VA 0 for ASID 1, DSB ISH), `mmu_notifier_invalidate_range` for the
/// page under the lock and again from `invalidate_range_end`, each a
/// CMD_TLBI_NH_VA with Leaf = 0 (the SVA driver's) for ASID 1 and VA 0,
/// and a CMD_SYNC, after the dma_wmb stand-in. v6.6 (43b3dfdd0455,
/// 6bbd42e2df8f): `arch_tlbbatch_add_pending` issues the TLBI and, from
/// `__flush_tlb_page_nosync`, the SMMU's commands; `try_to_unmap_flush`'s
/// DSB ISH comes only before the free.
#[test]
fn reclaim_flushes_at_once_on_6_5_and_batches_on_6_6() {
    let src = MUNMAP_SVA_6_6.replace("munmap p1 0x0 0x1000", "reclaim p1 0x0");
    let nh_va = "CMD_TLBI_NH_VA 0x0001000000000012 0x0000000000000000";
    let sync = "CMD_SYNC 0x000000000fc02046 0x0000000000000000";
    let v66 = [
        "STR [0x107000] = 0x0",
        "DSB ISHST",
        "TLBI VALE1IS 0x0001000000000000",
        "DSB ISHST",
        nh_va,
        sync,
        "DSB ISH",
        "FREE 0x108000",
    ];
    let f = scratch("reclaim-6.6.tlb", &src);
    assert_eq!(stream_texts(f.to_str().unwrap()), v66);
    let v65 = [
        "STR [0x107000] = 0x0",
        "DSB ISHST",
        "TLBI VALE1IS 0x0001000000000000",
        "DSB ISH",
        "DSB ISHST",
        nh_va,
        sync,
        "DSB ISHST",
        nh_va,
        sync,
        "FREE 0x108000",
    ];
    let f = scratch(
        "reclaim-6.5.tlb",
        &src.replace("kernel linux-6.6", "kernel linux-6.5"),
    );
    assert_eq!(stream_texts(f.to_str().unwrap()), v65);
    // The batched DSB sits just before the free, after the lock is gone.
    let o = tlbcheck(&["trace", scratch("reclaim-6.6b.tlb", &src).to_str().unwrap()]);
    let out = stdout(&o);
    let flush = out.find("try_to_unmap_flush: arch_tlbbatch_flush").unwrap();
    let unlock = out.find("page_vma_mapped_walk_done").unwrap();
    assert!(unlock < flush, "{out}");
}

/// A page at 2 MiB + 4 KiB, alone in p1: `free_pgtables` frees its
/// level-3, level-2 and level-1 tables, gathering the PMD-aligned page
/// (0x200000) and the PUD- and P4D-aligned one (0x0). `tlb_finish_mmu`'s
/// `tlb_flush` rounds [0, 0x201000) to its PMD_SIZE stride: [0, 4 MiB),
/// two non-leaf TLBIs without a level hint, VA[55:12] = 0 and 0x200
/// with ASID 1 (the zap's own flush at `tlb_end_vma` is a leaf one of
/// 0x201).
#[test]
fn freed_tables_are_flushed_at_the_addresses_free_pgtables_gathers() {
    let src = MUNMAP_SVA_6_6
        .replace("vma p1 0x0 0x1000 rw", "vma p1 0x201000 0x1000 rw")
        .replace("page p1 0x0 rw", "page p1 0x201000 rw")
        .replace("munmap p1 0x0 0x1000", "munmap p1 0x201000 0x1000");
    let f = scratch("munmap-aligned.tlb", &src);
    let tlbis: Vec<String> = stream_texts(f.to_str().unwrap())
        .into_iter()
        .filter(|t| t.starts_with("TLBI"))
        .collect();
    assert_eq!(
        tlbis,
        [
            "TLBI VALE1IS 0x0001000000000201",
            "TLBI VAE1IS 0x0001000000000000",
            "TLBI VAE1IS 0x0001000000000200",
        ]
    );
}

/// v6.6's mprotect after a batched reclaim of its page: under the
/// page-table lock, flush_tlb_batched_pending finds one pending batch and
/// issues arm64's arch_flush_tlb_batched_pending, a DSB ISH on its own
/// CPU, and nothing else (the PTE is gone: no TLBI). v6.5 batches
/// nothing, so mprotect issues nothing at all.
#[test]
fn mprotect_drains_a_batched_reclaim_with_a_dsb_of_its_own() {
    let f = repo().join("examples/reclaim/01-mprotect-batched-linux-6.6.tlb");
    // kswapd to the unlock after its TLBI: isolate (2), walk lock, store,
    // DSB ISHST, TLBI, the count, unlock.
    let kswapd = ["kswapd"; 8].join(",");
    let o = tlbcheck(&[
        "trace",
        f.to_str().unwrap(),
        "--schedule",
        &kswapd,
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let app: Vec<(String, String)> = lines
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["thread"] == "app" && l["kind"] != "sync")
        .map(|l| {
            let origin = l["origin"].as_str().unwrap_or("");
            (origin.to_string(), l["text"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(app.len(), 2, "{app:?}");
    assert!(
        app[0].0.ends_with("arch_flush_tlb_batched_pending"),
        "{app:?}"
    );
    assert_eq!(app[0].1, "DSB ISH");
    assert!(app[1].1.starts_with("rely read-only"), "{app:?}");
    let g = repo().join("examples/reclaim/01-mprotect-linux-6.5.tlb");
    let kswapd = ["kswapd"; 9].join(",");
    let o = tlbcheck(&[
        "trace",
        g.to_str().unwrap(),
        "--schedule",
        &kswapd,
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(!lines
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["thread"] == "app" && l["kind"] == "dsb"));
}

/// One-page migration with a device bound through SVA (no BTM, RIL or
/// ATS), derived by hand from `migrate_pages_batch` and
/// `try_to_migrate_one`: frames as for munmap above (PTE at 0x107000,
/// the page 0x108000), the new page 0x109000. The migration entry the
/// model writes is the old frame with bits 2 (migration) and 3 (writable):
/// 0x10800c. MIGRATE_SYNC on v6.5: `ptep_clear_flush` (DSB ISHST, TLBI
/// VALE1IS, DSB ISH), no `invalidate_range` under the lock, the one from
/// `invalidate_range_end` (CMD_TLBI_NH_VA, Leaf = 0, CMD_SYNC). MIGRATE_ASYNC
/// on v6.6: `arch_tlbbatch_add_pending` with its hook, the DSB ISH of
/// `try_to_unmap_flush`. Then the copy's expectation, the new PTE (0x109000
/// with AF, nG, user, page, valid: 0x109c43) and the old page's free.
#[test]
fn migration_streams_per_mode_and_version() {
    let nh_va = "CMD_TLBI_NH_VA 0x0001000000000012 0x0000000000000000";
    let sync = "CMD_SYNC 0x000000000fc02046 0x0000000000000000";
    let tail = [
        "rely read-only ctx 0 VA 0x0",
        "STR [0x107000] = 0x109c43",
        "FREE 0x108000",
    ];
    let v65: Vec<&str> = [
        "alloc frame as data of process 1",
        "STR [0x107000] = 0x0",
        "DSB ISHST",
        "TLBI VALE1IS 0x0001000000000000",
        "DSB ISH",
        "STR [0x107000] = 0x10800c",
        "DSB ISHST",
        nh_va,
        sync,
    ]
    .into_iter()
    .chain(tail)
    .collect();
    let src = MUNMAP_SVA_6_6
        .replace("munmap p1 0x0 0x1000", "migrate p1 0x0 sync")
        .replace("kernel linux-6.6", "kernel linux-6.5");
    let f = scratch("migrate-sync-6.5.tlb", &src);
    assert_eq!(stream_texts(f.to_str().unwrap()), v65);
    let v66: Vec<&str> = [
        "alloc frame as data of process 1",
        "STR [0x107000] = 0x0",
        "DSB ISHST",
        "TLBI VALE1IS 0x0001000000000000",
        "DSB ISHST",
        nh_va,
        sync,
        "STR [0x107000] = 0x10800c",
        "DSB ISH",
    ]
    .into_iter()
    .chain(tail)
    .collect();
    let src = MUNMAP_SVA_6_6.replace("munmap p1 0x0 0x1000", "migrate p1 0x0 async");
    let f = scratch("migrate-async-6.6.tlb", &src);
    assert_eq!(stream_texts(f.to_str().unwrap()), v66);
    // Another thread's munmap of the process could meet the entry.
    refused(
        "migrate-munmap.tlb",
        &src.replace(
            "expect ok",
            "thread b cpu=0 {\n  munmap p1 0x0 0x1000\n}\nexpect ok",
        ),
        "may meet the migration entry",
    );
    refused(
        "migrate-mode.tlb",
        &MUNMAP_SVA_6_6.replace("munmap p1 0x0 0x1000", "migrate p1 0x0 lazy"),
        "expected `sync` or `async`, found `lazy`",
    );
}

const KVM_VALID: &str = "scenario k
machine cpus=2 ttl tlbirange fwb
kvm kvm-6.9
vm g vmid=1
s2-map g 0x0 0x1000 0x40000000 rw
s2-map g 0x200000 0x200000 0x40200000 rw
thread kvm cpu=0 {
  s2 unmap g 0x0 0x200000
}
vcpu v0 cpu=1 vm=g {
  s2 map g 0x0 0x1000 0x40000000 rw
}
expect ok
";

/// The stage-2 manager's statements: errors at file:line:col.
#[test]
fn kvm_statements_report_errors_with_line_and_column() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "kvm kvm-6.9",
            "kvm kvm-6.7",
            ":3:5:",
            "unknown KVM version `kvm-6.7`",
        ),
        ("vm g vmid=1", "vm g", ":4:1:", "a vm needs vmid=N"),
        (
            "  s2 unmap g 0x0 0x200000",
            "  s2 unmap h 0x0 0x200000",
            ":8:12:",
            "unknown VM `h`",
        ),
        (
            "  s2 unmap g 0x0 0x200000",
            "  s2 unmap g 0x10 0x200000",
            ":8:14:",
            "not page aligned",
        ),
        (
            "  s2 unmap g 0x0 0x200000",
            "  s2 unmap g 0x0 0x80000000",
            ":8:18:",
            "one 1 GiB region",
        ),
        (
            "  s2 map g 0x0 0x1000 0x40000000 rw",
            "  s2 map g 0x0 0x3000 0x40000000 rw",
            ":11:16:",
            "one page or one 2 MiB block",
        ),
        (
            "  s2 unmap g",
            "  s2 zap g",
            ":8:6:",
            "expected a stage-2 operation",
        ),
        (
            "vcpu v0 cpu=1 vm=g",
            "vcpu v0 cpu=1",
            ":10:1:",
            "a vcpu needs vm=VM",
        ),
        ("kvm kvm-6.9\n", "", ":3:1:", "needs a `kvm VERSION`"),
    ];
    each_edit_is_refused_where_it_is("kvm", KVM_VALID, cases);
}

/// `trace` prints the deferred range TLBI with its operand under the KVM
/// function that issued it: 512 pages at IPA 0, TG 4K, SCALE 1, NUM 7.
#[test]
fn trace_shows_kvms_tlbis_and_operands() {
    let p = scratch("kvm-trace.tlb", KVM_VALID);
    let o = tlbcheck(&["trace", p.to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    let at = out
        .find("kvm_pgtable_stage2_unmap: kvm_tlb_flush_vmid_range")
        .expect(&out);
    let operand = (1u64 << 46) | (1 << 44) | (7 << 39);
    assert!(
        out[at..].contains(&format!("TLBI RIPAS2E1IS {operand:#018x}")),
        "{out}"
    );
}

/// What the stage-2 model does not cover is refused, not mis-modelled.
#[test]
fn kvm_restrictions_are_refused_with_a_reason() {
    // Two threads taking faults of one VM: the model's shared walks have
    // no cmpxchg.
    let two = KVM_VALID.replace(
        "expect ok",
        "vcpu v1 cpu=1 vm=g {\n  s2 relax g 0x0\n}\nexpect ok",
    );
    refused("kvm-two.tlb", &two, "one shared walker per VM");
    // A VM's root must be a level-0 stage-2 table of its VMID.
    let root = KVM_VALID.replace(
        "vm g vmid=1\n",
        "frame R s2-table vm=2 level=0\nvm g vmid=1 root=R\n",
    );
    refused(
        "kvm-root.tlb",
        &root,
        "a VM's root is a level-0 stage-2 table of its VMID",
    );
    // Kernel and stage-2 operations in one thread.
    let mixed = KVM_VALID.replace(
        "  s2 unmap g 0x0 0x200000\n",
        "  s2 unmap g 0x0 0x200000\n  munmap p 0x0 0x1000\n",
    );
    let mixed = mixed.replace(
        "kvm kvm-6.9\n",
        "kvm kvm-6.9\nkernel linux-6.6\nprocess p asid=1\n",
    );
    refused("kvm-mixed.tlb", &mixed, "not both");
}
