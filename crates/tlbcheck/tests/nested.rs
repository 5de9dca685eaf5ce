//! Guests with a virtual SMMU, end to end: the statements' errors, the
//! trace of a replayed batch, and the reports of the two guest rules.

mod support;
use support::{out, scratch, tlbcheck};

const SETUP: &str = "scenario s
machine cpus=1
smmu
frame S2L0 s2-table vm=1 level=0
frame S2L1 s2-table vm=1 level=1
S2L0[0] = table S2L1
S2L1[0] = s2block 0x0 rw
frame L0 s1-table process=1 level=0
frame CDT smmu
ste 3 nested cd=CDT vmid=1 s2root=S2L0
cd CDT[0] asid=1 ttb0=L0
device dev0 sid=3
";

/// `SETUP` + `rest` is refused (exit 2) at `line:col` with `needle`.
fn refused(name: &str, rest: &str, at: &str, needle: &str) {
    let f = scratch(name, &format!("{SETUP}{rest}"));
    let o = tlbcheck(&["check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    let text = out(&o);
    assert!(text.contains(needle), "{text}");
    assert!(text.contains(&format!("{name}:{at}")), "{text}");
}

#[test]
fn bad_guest_statements_are_located() {
    let thread =
        "thread vm cpu=0 guest=g1 {\n  smmu cmd CMD_TLBI_NSNH_ALL\n  cmd_sync\n}\nexpect ok\n";
    refused(
        "no-host.tlb",
        &format!("guest g1 vmid=1\nvdevice g1 dev0 vsid=1\n{thread}"),
        "15:23",
        "a guest thread needs a host service",
    );
    refused(
        "bad-host.tlb",
        "host iommufd-v2\nexpect ok\n",
        "13:6",
        "unknown host `iommufd-v2`",
    );
    refused(
        "vdevice-first.tlb",
        "vdevice g1 dev0 vsid=1\nexpect ok\n",
        "13:9",
        "no guest `g1` declared before",
    );
    refused(
        "no-vmid.tlb",
        "guest g1\nexpect ok\n",
        "13:1",
        "a guest needs vmid=N",
    );
    refused(
        "no-device.tlb",
        &format!("host strict\nguest g1 vmid=1\nvdevice g1 gpu vsid=1\n{thread}"),
        "15:12",
        "no device `gpu`",
    );
    refused(
        "dup-vsid.tlb",
        "guest g1 vmid=1\nvdevice g1 dev0 vsid=1\nvdevice g1 dev0 vsid=1\nexpect ok\n",
        "15:12",
        "already has vSID 0x1",
    );
    refused(
        "v1-range-no-ril.tlb",
        "host nested-2023-v1\nguest g1 vmid=1\nvdevice g1 dev0 vsid=1\nthread vm cpu=0 guest=g1 {\n  smmu cmd 0x0001000001f1f012 0x400\n  cmd_sync\n}\nexpect ok\n",
        "17:3",
        "one command per granule without RIL",
    );
    refused(
        "unissued.tlb",
        "host strict\nguest g1 vmid=1\nvdevice g1 dev0 vsid=1\nthread vm cpu=0 guest=g1 {\n  smmu cmd CMD_TLBI_NSNH_ALL\n}\nexpect ok\n",
        "17:3",
        "never issued",
    );
}

#[test]
fn raw_words_are_the_guests_to_write_only_in_a_guest_thread() {
    // dw0[10] set on CMD_TLBI_NH_ALL: RES0. Written by the host's own
    // thread the words reach the queue as they are (with a warning at the
    // words), the SMMU stops on them, and the CMD_SYNC behind never ends.
    let host_thread =
        "thread t cpu=0 {\n  smmu cmd 0x410 0x0\n  cmd_sync\n}\nexpect violation stuck\n";
    let f = scratch("raw.tlb", &format!("{SETUP}{host_thread}"));
    let o = tlbcheck(&["check", f.to_str().unwrap()]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(
        text.contains("raw.tlb:14:12") && text.contains("RES0"),
        "{text}"
    );
    // The same words from a guest reach the host service: iommufd-vsmmu
    // passes them on, the SMMU refuses them, the host skips them.
    let f = scratch(
        "raw-guest.tlb",
        &format!(
            "{SETUP}host iommufd-vsmmu\nguest g1 vmid=1\nvdevice g1 dev0 vsid=1\nthread vm cpu=0 guest=g1 {{\n  smmu cmd 0x410 0x0\n  cmd_sync\n}}\nexpect ok\n"
        ),
    );
    let o = tlbcheck(&["trace", f.to_str().unwrap()]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("refused with CERROR_ILL"), "{text}");
}

#[test]
fn trace_shows_each_guest_command_above_its_physical_commands() {
    let o = tlbcheck(&[
        "trace",
        "examples/seed002/13-guest-atc-inv-one-vsid-buggy.tlb",
    ]);
    let text = out(&o);
    let guest = text
        .find("g1 batch 0 entry 0 CMD_ATC_INV 0x0000000100000040 0x0000000000000000")
        .unwrap_or_else(|| panic!("{text}"));
    // vSID 1 went to StreamIDs 3 and 4 (dw0[63:32]), then a CMD_SYNC.
    let a = text
        .find("CMD_ATC_INV 0x0000000300000040")
        .expect("StreamID 3");
    let b = text
        .find("CMD_ATC_INV 0x0000000400000040")
        .expect("StreamID 4");
    let sync = text.find("CMD_SYNC 0x000000000fc02046").expect("CMD_SYNC");
    assert!(guest < a && a < b && b < sync, "{text}");
    assert!(text.contains("returns 0, entry_num = 1"), "{text}");
}

#[test]
fn reports_name_the_guest_command_and_what_it_became() {
    let o = tlbcheck(&["explain", "examples/seed002/12-guest-range-ttl-buggy.tlb"]);
    let text = out(&o);
    assert!(
        text.contains("violation missed-guest-invalidation"),
        "{text}"
    );
    // The guest's TTL 0 range (dw1 0x400) became TTL 3 (dw1 0x700), and
    // the level-2 block is what stays.
    assert!(
        text.contains("guest g1 batch 0 entry 0 [0x0001000001200012, 0x0000000000000400]"),
        "{text}"
    );
    assert!(
        text.contains("CMD_TLBI_NH_VA [0x0001000101200012, 0x0000000000000700]"),
        "{text}"
    );
    assert!(text.contains("leaf L2 VA 0x0"), "{text}");
    let o = tlbcheck(&[
        "explain",
        "examples/seed002/13-guest-atc-inv-one-vsid-buggy.tlb",
    ]);
    let text = out(&o);
    assert!(text.contains("violation isolation"), "{text}");
    assert!(
        text.contains("reaches StreamID 0x4, which the command did not name"),
        "{text}"
    );
}

#[test]
fn trace_names_guest_commands_that_became_nothing() {
    let o = tlbcheck(&["trace", "examples/seed002/14-guest-nsnh-all-buggy.tlb"]);
    let text = out(&o);
    assert!(
        text.contains(
            "arm_smmu_cache_invalidate_user returns 0, entry_num = 1; entry 0 CMD_TLBI_NSNH_ALL 0x0000000000000030 0x0000000000000000 issued nothing"
        ),
        "{text}"
    );
    let o = tlbcheck(&[
        "trace",
        "examples/seed002/17-iommufd-error-drops-block-buggy.tlb",
    ]);
    let text = out(&o);
    assert!(
        text.contains("returns -5, entry_num = 1: entry 1 refused (-5, field opcode)"),
        "{text}"
    );
    assert!(
        text.contains(
            "entry 0 CMD_TLBI_NH_VA 0x0001000000000012 0x0000000000000001 issued nothing"
        ),
        "{text}"
    );
}
