//! Set-up refusals come from the checker's machine builder and are located
//! here at the statement, field or value at fault: each case edits a valid
//! scenario once and names the text the error must point at.

const VALID: &str = "scenario s
machine cpus=2
smmu ats stall
frame L0 s1-table process=1 level=0
frame L1 s1-table process=1 level=1
frame L2 s1-table process=1 level=2
frame L3 s1-table process=1 level=3
frame DATA data process=1
frame CDT smmu
frame Q smmu
context p1 stage1 asid=1 root=L0
L0[0] = table L1
L1[0] = table L2
L2[0] = table L3
L3[0] = page DATA rw user ng
ste 3 s1 cd=CDT
cd CDT[0] ctx=p1
device dev0 sid=3 ats
thread t cpu=0 {
  L3[0] = invalid
  dsb ish
}
expect ok
";

/// Line and column (1-based) of byte offset `at` in `src`.
fn line_col(src: &str, at: usize) -> String {
    let before = &src[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
    format!(":{line}:{col}:")
}

#[test]
fn set_up_refusals_point_at_what_was_wrong() {
    // (replace, with, the error points at the first `at` from the edit on,
    // message text)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "frame L1 s1-table process=1 level=1",
            "frame L1 s1-table process=1 level=1 at=0x100000",
            "0x100000",
            "overlaps frame `L0`",
        ),
        (
            "frame DATA data process=1",
            "frame DATA data process=1 at=0x900000",
            "0x900000",
            "outside the pool",
        ),
        (
            "frame L1 s1-table process=1 level=1",
            "frame L1 s1-table process=1 level=1\nframe L1 data process=1",
            "L1 data",
            "declared twice",
        ),
        (
            "L1[0] = table L2",
            "L1[512] = table L2",
            "512",
            "out of range",
        ),
        (
            "L1[0] = table L2",
            "L1[0] = page DATA rw",
            "page",
            "belongs in a level-3 table",
        ),
        (
            "L3[0] = page DATA rw user ng",
            "L3[0] = page DATA+0x800 rw user ng",
            "DATA+",
            "output address 0x",
        ),
        (
            "L3[0] = page DATA rw user ng",
            "L3[0] = s2page DATA rw",
            "s2page",
            "stage-2 descriptor in a stage-1 table",
        ),
        (
            "context p1 stage1 asid=1 root=L0",
            "context p1 stage1 asid=1 root=L1",
            "L1\n",
            "walk starts at level 0",
        ),
        (
            "context p1 stage1 asid=1 root=L0",
            "context p1 stage1 asid=1 root=0x100800",
            "0x100800",
            "not aligned to the 4k granule",
        ),
        (
            "context p1 stage1 asid=1 root=L0",
            "context p1 stage1 asid=1 root=L0\ncontext p1 stage1 asid=2 root=L0",
            "p1 stage1 asid=2",
            "context `p1` is declared twice",
        ),
        (
            "ste 3 s1 cd=CDT",
            "ste 3 s1 cd=0x105008",
            "0x105008",
            "0x105008 is not 64-byte aligned",
        ),
        (
            "ste 3 s1 cd=CDT",
            "ste 3 s1 cd=CDT\nste 3 bypass",
            "3 bypass",
            "StreamID 3 has two STEs",
        ),
        (
            "cd CDT[0] ctx=p1",
            "cd CDT[0] asid=1 ttb0=0x100800",
            "0x100800",
            "table 0x100800 is not aligned",
        ),
        (
            "smmu ats stall",
            "smmu stall",
            "device dev0",
            "the SMMU lacks ATS",
        ),
        (
            "smmu ats stall",
            "smmu ats stall\nstream linear log2size=1",
            "1\n",
            "log2size=1 covers StreamIDs below 2, but StreamID 3 is used",
        ),
        (
            "smmu ats stall",
            "smmu ats stall\nqueue eventq at=Q log2size=8",
            "Q log2size",
            "the Event queue needs 0x2000 bytes but `Q` holds 0x1000",
        ),
        (
            "smmu ats stall",
            "smmu ats stall\nqueue cmdq log2size=16",
            "queue cmdq",
            "no room in the pool for the SMMU's Command queue",
        ),
        (
            "smmu ats stall",
            "smmu ats stall\nqueue cmdq at=Q\nqueue eventq at=Q",
            "Q\nframe L0",
            "the Event queue and the Command queue are both placed in `Q`",
        ),
        (
            "smmu ats stall",
            "smmu ats stall\nqueue cmdq at=CDT",
            "CDT[0]",
            "the CD table and the Command queue are both placed in `CDT`",
        ),
        (
            "device dev0 sid=3 ats",
            "device dev0 sid=3 ats pri",
            "device dev0",
            "PRI needs ATS on the device, and PRI and ATS on the SMMU",
        ),
    ];
    for (from, to, at, text) in cases {
        assert!(VALID.contains(from), "{from}");
        let src = VALID.replacen(from, to, 1);
        let start = src.find(to).expect("the edit");
        let pos = start + src[start..].find(at).expect("the marker is in the edit");
        let err = match tlbcheck::load("t.tlb", &src) {
            Ok(_) => panic!("{to}: accepted"),
            Err(e) => e.to_string(),
        };
        let want = format!("t.tlb{}", line_col(&src, pos));
        assert!(err.starts_with(&want), "{to}: want {want} in\n{err}");
        assert!(err.contains(text), "{to}: want `{text}` in\n{err}");
    }
    // The valid base really is valid, so each refusal above is the edit's.
    assert!(tlbcheck::load("t.tlb", VALID).is_ok());
}

const MEMSLOT: &str = "scenario s
machine granule=4k cpus=2 ttl tlbirange fwb
pool frames=24
kernel linux-6.6
kvm kvm-6.9
process p asid=1
vma p 0x0 0x1000 rw
page p 0x0 rw
vm g vmid=1 backs=p ipa=0x0 hva=0x0 len=0x1000
s2-map g 0x0 0x1000 0x40000000 rw
thread t cpu=0 {
  munmap p 0x0 0x1000
}
expect ok
";

#[test]
fn memslot_refusals_point_at_what_was_wrong() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "vm g vmid=1 backs=p ipa=0x0 hva=0x0",
            "vm g",
            "a memslot needs backs=PROCESS, ipa=, hva= and len= together",
        ),
        (
            "vm g vmid=1 backs=q ipa=0x0 hva=0x0 len=0x1000",
            "q ipa",
            "unknown process `q`",
        ),
        (
            "vm g vmid=1 backs=p ipa=0x3ffff000 hva=0x0 len=0x2000",
            "0x2000",
            "inside one 1 GiB region",
        ),
        (
            "vm g vmid=1 backs=p ipa=0x0 hva=0x800 len=0x1000",
            "0x800",
            "aligned",
        ),
    ];
    let line = "vm g vmid=1 backs=p ipa=0x0 hva=0x0 len=0x1000";
    for (to, at, text) in cases {
        let src = MEMSLOT.replacen(line, to, 1);
        let start = src.find(to).expect("the edit");
        let pos = start + src[start..].find(at).expect("the marker is in the edit");
        let err = match tlbcheck::load("t.tlb", &src) {
            Ok(_) => panic!("{to}: accepted"),
            Err(e) => e.to_string(),
        };
        let want = format!("t.tlb{}", line_col(&src, pos));
        assert!(err.starts_with(&want), "{to}: want {want} in\n{err}");
        assert!(err.contains(text), "{to}: want `{text}` in\n{err}");
    }
    assert!(tlbcheck::load("t.tlb", MEMSLOT).is_ok());
}
