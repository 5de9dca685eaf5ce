//! The SMMU set-up statements lower to the SMMU the checker runs: the
//! Stream table, queues and devices land where the scenario (or the
//! defaults) put them, and every structure is in `smmu`-owned memory.

use tlbcheck_hw::addr::Pa;
use tlbcheck_hw::mem::{FrameOwner, Pfn};
use tlbcheck_hw::smmu::config::StrtabFmt;
use tlbcheck_hw::smmu::ste::{L1Std, Ste};

const BASE: &str = "scenario s
machine cpus=2
smmu ats stall
frame L0 s1-table process=1 level=0
frame CDT smmu
context p1 stage1 asid=1 root=L0
ste 3 s1 cd=CDT eats=1
cd CDT[0] ctx=p1 stall
device dev0 sid=3 ats
expect ok
";

fn smmu_of(src: &str) -> tlbcheck_hw::machine::Machine {
    tlbcheck::load("t.tlb", src)
        .unwrap_or_else(|e| panic!("{e}"))
        .model
        .machine
}

#[test]
fn defaults_claim_smmu_frames_after_the_declared_ones() {
    let m = smmu_of(BASE);
    let s = m.smmu.as_ref().expect("an SMMU");
    assert_eq!(s.strtab.fmt, StrtabFmt::Linear);
    // StreamID 3 needs 4 STEs: log2size 2.
    assert_eq!(s.strtab.log2size, 2);
    for pa in [s.strtab.base, s.cmdq.ring.base, s.evtq.ring.base] {
        assert_eq!(m.mem.owner(Pfn::of(Pa(pa))), FrameOwner::Smmu, "{pa:#x}");
        // After L0 (0x100000) and CDT (0x101000).
        assert!(pa >= 0x10_2000, "{pa:#x}");
    }
    assert_eq!(s.cmdq.ring.log2size, 8);
    assert_eq!(s.evtq.ring.log2size, 7);
    assert_eq!(s.devices.len(), 1);
    assert!(s.devices[0].ats);
    // The STE is where a linear table puts StreamID 3, and decodes.
    let mut w = [0u64; 8];
    for (i, x) in w.iter_mut().enumerate() {
        *x = m.mem.read(Pa(s.strtab.base + 64 * 3 + 8 * i as u64));
    }
    let ste = Ste::decode(&w).unwrap();
    assert_eq!(ste.s1_context_ptr, 0x10_1000);
    assert_eq!(ste.eats, 1);
}

#[test]
fn two_level_stream_tables_get_an_l1std_and_a_level2_array() {
    let src = BASE.replace(
        "smmu ats stall\n",
        "smmu ats stall\nframe Q smmu\nstream 2-level split=6 log2size=8\nqueue cmdq at=Q log2size=4\n",
    );
    let m = smmu_of(&src);
    let s = m.smmu.as_ref().unwrap();
    assert_eq!(s.strtab.fmt, StrtabFmt::TwoLevel { split: 6 });
    assert_eq!(s.cmdq.ring.base, 0x10_0000, "Q is the first frame declared");
    assert_eq!(s.cmdq.ring.log2size, 4);
    let l1 = L1Std::decode(m.mem.read(Pa(s.strtab.base))).unwrap();
    assert_eq!(l1.span, 7);
    assert_eq!(m.mem.owner(Pfn::of(Pa(l1.l2ptr))), FrameOwner::Smmu);
    let mut w = [0u64; 8];
    for (i, x) in w.iter_mut().enumerate() {
        *x = m.mem.read(Pa(l1.l2ptr + 64 * 3 + 8 * i as u64));
    }
    assert!(Ste::decode(&w).is_ok());
}

#[test]
fn set_up_words_may_still_name_frames() {
    let src = BASE.replace(
        "frame CDT smmu\n",
        "frame CDT smmu\nframe cd data process=1\ncd[0] = 0x5\n",
    );
    let m = smmu_of(&src);
    assert_eq!(m.mem.read(Pa(0x10_2000)), 5);
}

/// `e2h` sets SMMU_CR2.E2H; it is off by default.
#[test]
fn e2h_keyword_sets_smmu_cr2_e2h() {
    assert!(!smmu_of(BASE).smmu.as_ref().unwrap().opts.e2h);
    let src = BASE.replacen("smmu", "smmu e2h", 1);
    assert!(src.contains("smmu e2h"), "{src}");
    assert!(smmu_of(&src).smmu.as_ref().unwrap().opts.e2h);
}
