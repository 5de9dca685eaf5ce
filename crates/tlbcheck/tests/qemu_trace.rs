//! `tlbcheck import qemu-trace` and `tlbcheck audit qemu-trace` on QEMU
//! log-backend traces written by hand (examples/qemu/): a correct
//! emulator, and one whose range invalidation removes only the first page.

mod support;
use support::{repo, scratch, stderr, stdout, tlbcheck};

use proptest::prelude::*;
use tlbcheck::import::qemu::parse;

const CORRECT: &str = "examples/qemu/smmuv3-range-inval-correct.log";
const FIRST_PAGE_ONLY: &str = "examples/qemu/smmuv3-range-inval-first-page-only.log";

#[test]
fn import_counts_commands_batches_and_uses() {
    let o = tlbcheck(&["import", "qemu-trace", "--json", CORRECT]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    // Three doorbells: CFGI_STE + CFGI_CD + SYNC, TLBI_NH_VA + SYNC,
    // TLBI_NH_ASID + SYNC.
    assert_eq!(v["commands"]["CMD_SYNC"], 3);
    assert_eq!(v["commands"]["CMD_TLBI_NH_VA"], 1);
    assert_eq!(v["commands"]["CMD_CFGI_STE"], 1);
    assert_eq!(
        v["commands_per_doorbell"],
        serde_json::json!({"2": 2, "3": 1})
    );
    assert_eq!(v["commands_per_sync"], serde_json::json!({"1": 2, "2": 1}));
    // One range TLBI: TG=4K, NUM=3, SCALE=0 -> (3+1) * 2^0 = 4 pages, TTL 3.
    assert_eq!(v["tlbi_pages"], serde_json::json!({"4": 1}));
    assert_eq!(v["tlbi_ttl"], serde_json::json!({"3": 1}));
    // ASID 1: the range TLBI and the ASID TLBI; 4 first touches + 2 after
    // the unmap + 1 remap + 1 after the ASID TLBI miss, 2 hits, 6 walks.
    let asid = &v["asids"]["1"];
    assert_eq!(
        (&asid["invalidations"], &asid["pages_invalidated"]),
        (&2.into(), &4.into())
    );
    assert_eq!(
        (&asid["hits"], &asid["misses"], &asid["inserts"]),
        (&2.into(), &8.into(), &6.into())
    );
    let sid = &v["streams"]["8"];
    assert_eq!(
        (&sid["translated"], &sid["aborted"], &sid["cfgi"]),
        (&8.into(), &2.into(), &2.into())
    );
    // Events this importer does not read are counted, not refused.
    assert_eq!(v["unknown_events"]["smmuv3_write_mmio"], 3);
    assert_eq!(v["other_lines"], 1);

    let o = tlbcheck(&["import", "qemu-trace", CORRECT]);
    let text = stdout(&o);
    for needle in [
        "commands by opcode",
        "CMD_TLBI_NH_VA",
        "per ASID",
        "per StreamID",
        "TTL hint",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

#[test]
fn audit_flags_the_hit_a_first_page_only_range_invalidation_leaves() {
    let o = tlbcheck(&["audit", "qemu-trace", FIRST_PAGE_ONLY]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    // Line 51 hits 0x12040; the TLBI at line 40 covered 0x10000-0x13fff
    // and the CMD_SYNC at line 43 completed it; the entry was inserted at
    // line 27, before the command.
    assert!(
        text.contains("line 51: FORBIDDEN IOTLB hit, asid 1 addr 0x12040"),
        "{text}"
    );
    assert!(text.contains("covered by line 40"), "{text}");
    assert!(text.contains("CMD_SYNC at line 43"), "{text}");
    assert!(text.contains("inserted at line 27"), "{text}");
    // The hit at line 59 follows a new insert (line 56): allowed.
    assert_eq!(text.matches("FORBIDDEN").count(), 1, "{text}");

    let o = tlbcheck(&["audit", "qemu-trace", "--json", FIRST_PAGE_ONLY]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["status"], "forbidden-hits");
    assert_eq!(v["forbidden"][0]["hit_line"], 51);
    assert_eq!(v["forbidden"][0]["covered_by"]["line"], 40);
    assert_eq!(v["forbidden"][0]["covered_by"]["sync_line"], 43);
}

#[test]
fn audit_passes_the_correct_emulator() {
    let o = tlbcheck(&["audit", "qemu-trace", CORRECT]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("ok: no IOTLB hit"), "{}", stdout(&o));
}

#[test]
fn a_trace_without_lookups_is_inconclusive() {
    let f = scratch(
        "cmd-level.log",
        "1@1.000001:smmuv3_cmdq_opcode <--- SMMU_CMD_SYNC\n",
    );
    let o = tlbcheck(&["audit", "qemu-trace", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    assert!(stdout(&o).contains("nothing to audit"));
}

#[test]
fn a_malformed_line_is_bad_input_naming_file_and_line() {
    let f = scratch(
        "bad.log",
        "1@1.000001:smmuv3_cmdq_opcode <--- SMMU_CMD_SYNC\n\
         1@1.000002:smmu_iotlb_insert IOTLB ++ asid=1 addr=0x1000 tg=1\n",
    );
    for cmd in ["import", "audit"] {
        let o = tlbcheck(&[cmd, "qemu-trace", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
        let e = stderr(&o);
        assert!(
            e.contains("bad.log:2: smmu_iotlb_insert: expected `level=NUMBER`"),
            "{e}"
        );
    }
    let o = tlbcheck(&["import", "qemu-trace", "no/such.log"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no/such.log"), "{}", stderr(&o));
}

/// Lines of the correct trace, each a known event.
fn known_lines() -> Vec<String> {
    std::fs::read_to_string(repo().join(CORRECT))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any text: the importer returns, and an error names a line of it.
    #[test]
    fn arbitrary_text_never_panics(text in "(\\PC{0,40}\n){0,8}") {
        if let Err(e) = parse(&text) {
            prop_assert!(e.line >= 1 && e.line <= text.lines().count());
            prop_assert!(!e.message.is_empty());
        }
    }

    /// One line of a good trace corrupted: the trace still loads, or the
    /// error names exactly that line.
    #[test]
    fn a_corrupted_line_is_the_line_blamed(
        pick in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        cut in 0usize..12,
        junk in "[ =:0-9a-fx@.<>_-]{0,6}",
    ) {
        let mut lines = known_lines();
        let k = pick.index(lines.len());
        let line = &lines[k];
        let mut start = at.index(line.len() + 1);
        while !line.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (start + cut).min(line.len());
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        lines[k] = format!("{}{junk}{}", &line[..start], &line[end..]);
        let text = lines.join("\n");
        if let Err(e) = parse(&text) {
            prop_assert_eq!(e.line, k + 1, "{}", e);
        }
    }
}
