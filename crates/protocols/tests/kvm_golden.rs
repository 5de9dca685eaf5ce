//! Golden instruction streams of KVM's stage-2 unmap, per version, run
//! as programs over a real stage-2 table. The expected operands are
//! written from the kernel's algorithm (`stage2_unmap_walker`,
//! `stage2_unmap_put_pte`, `kvm_tlb_flush_vmid_range` and the hypervisor's
//! `__kvm_tlb_flush_vmid_ipa` / `__kvm_tlb_flush_vmid_range`) and the Arm
//! ARM's operand layouts, not from this crate's output:
//!
//! - IPAS2E1IS (D8.17.5.1): IPA\[47:12\] in bits \[35:0\], TTL in \[47:44\]
//!   (TTL\[3:2\] = TG, 0b01 for 4K; TTL\[1:0\] = level);
//! - RIPAS2E1IS (D8.17.5.2): TG \[47:46\], SCALE \[45:44\], NUM \[43:39\],
//!   TTL \[38:37\], BaseADDR \[36:0\] = IPA\[48:12\]; `(NUM+1) << (5*SCALE+1)`
//!   pages.

use std::sync::Arc;
use tlbcheck_checker::builder::{Features, ModelBuilder};
use tlbcheck_checker::model::{Choice, Model};
use tlbcheck_checker::op::Op;
use tlbcheck_checker::sync::SyncOp;
use tlbcheck_hw::addr::Granule;
use tlbcheck_hw::machine::Machine;
use tlbcheck_hw::mem::{FrameOwner, Pfn, PhysMem, TableOwner};
use tlbcheck_hw::tlb::Regime;
use tlbcheck_hw::vmsa::{Context, StageConfig};
use tlbcheck_protocols::kvm::mmu::{Hyp, Item, KvmThread, S2Call, S2Kind, Vm};
use tlbcheck_protocols::kvm::pgtable::setup_map;
use tlbcheck_protocols::kvm::tlb::{self, S2Op};
use tlbcheck_protocols::kvm::Version;
use tlbcheck_protocols::linux::arm64::{CpuFeatures, MAX_TLBI_RANGE_PAGES};

const TTL_CPU: CpuFeatures = CpuFeatures {
    tlbirange: false,
    ttl: true,
};
const RANGE_CPU: CpuFeatures = CpuFeatures {
    tlbirange: true,
    ttl: true,
};

/// TTL field \[47:44\] for a 4K leaf at `level`: TG 0b01, then the level.
const fn ttl(level: u64) -> u64 {
    (0b0100 | level) << 44
}

/// A RIPAS2E1IS operand for 4K: TG = 0b01.
const fn range(scale: u64, num: u64, ipa: u64) -> u64 {
    (1 << 46) | (scale << 44) | (num << 39) | (ipa >> 12)
}

/// The barriers and TLBIs of `__kvm_tlb_flush_vmid_ipa` around `operand`.
fn by_ipa(operand: u64) -> Vec<String> {
    vec![
        "DSB ISHST".into(),
        format!("TLBI IPAS2E1IS {operand:#018x}"),
        "DSB ISH".into(),
        "TLBI VMALLE1IS".into(),
        "DSB ISH".into(),
    ]
}

/// The stream `want`, written for the VHE helpers, as `v` issues it:
/// pKVM's nVHE helpers open with `__tlb_switch_to_guest`'s DSB ISH (DSB
/// NSH for the local one) where the VHE ones issue DSB ISHST (NSHST). A
/// helper's opening barrier is the one right before its first TLBI.
fn as_issued(v: Version, want: Vec<String>) -> Vec<String> {
    if v != Version::Pkvm {
        return want;
    }
    let mut out = want.clone();
    for (i, w) in want.iter().enumerate() {
        let before_tlbi = want.get(i + 1).is_some_and(|n| n.starts_with("TLBI"));
        if before_tlbi && (w == "DSB ISHST" || w == "DSB NSHST") {
            out[i] = w.trim_end_matches("ST").to_string();
        }
    }
    out
}

/// `__kvm_tlb_flush_vmid_range`'s barriers around its `tlbis`.
fn by_range(tlbis: &[String]) -> Vec<String> {
    let mut out = vec!["DSB ISHST".to_string()];
    out.extend_from_slice(tlbis);
    out.extend(["DSB ISH", "TLBI VMALLE1IS", "DSB ISH"].map(String::from));
    out
}

/// One VM (VMID 1) whose stage 2 maps `maps` (IPA, length, PA) at
/// set-up; one thread unmaps `[ipa, ipa + len)`. Returns the model and
/// the VM's level-3 table for IPA 0, if any.
fn unmap_model(
    v: Version,
    cpu: CpuFeatures,
    fwb: bool,
    maps: &[(u64, u64, u64)],
    ipa: u64,
    len: u64,
) -> (Model, Option<u64>) {
    s2_model(v, cpu, fwb, maps, S2Kind::Unmap { ipa, len }, true)
}

/// One VM as for [`unmap_model`], its mappings writable or not, and one
/// thread running `kind`.
fn s2_model(
    v: Version,
    cpu: CpuFeatures,
    fwb: bool,
    maps: &[(u64, u64, u64)],
    kind: S2Kind,
    write: bool,
) -> (Model, Option<u64>) {
    let mut mem = PhysMem::new(Pfn(0x100), 32);
    let root = mem
        .alloc(FrameOwner::Table {
            owner: TableOwner::Stage2 { vmid: 1 },
            level: 0,
        })
        .unwrap()
        .base()
        .0;
    for &(i, l, pa) in maps {
        setup_map(&mut mem, root, 1, i, l, pa, write).unwrap();
    }
    let l3 = tlbcheck_protocols::kvm::pgtable::entry_addr(&mem, root, 0, 3).map(|e| e & !0xfff);
    let ctx = Context {
        regime: Regime::El10,
        asid: 0,
        vmid: 1,
        s1: None,
        s2: Some(StageConfig::new(Granule::K4, root)),
    };
    let machine = Machine::new(mem, 1, vec![ctx]);
    let hyp = Arc::new(Hyp {
        version: v,
        cpu,
        fwb,
        vms: vec![Vm {
            name: "vm".into(),
            vmid: 1,
            root,
            ctx: 0,
        }],
        lock_base: 0,
        counter_base: 0,
    });
    let features = Features {
        tlbirange: cpu.tlbirange,
        ttl: cpu.ttl,
        smmu_ril: false,
    };
    let mut b = ModelBuilder::new("unmap", machine, features);
    b.context("vm", ctx);
    b.locks(hyp.locks());
    b.counters(hyp.counters());
    let items = vec![Item::S2(S2Call { vm: 0, kind })];
    b.program("kvm", 0, Arc::new(KvmThread::new(hyp, items)), None)
        .unwrap();
    (b.build().unwrap(), l3)
}

/// The thread's TLBIs, DSBs, frees (`FREE`, `CALL_RCU` for a free after a
/// grace period) and counted CMOs (`CMO`), in order.
fn stream(m: &Model) -> Vec<String> {
    let mut s = m.initial();
    let mut out = Vec::new();
    let mut n = 0;
    while let Some(e) = m.next_op(&s, 0) {
        match &*e.op {
            Op::Tlbi { .. } | Op::Dsb { .. } | Op::Free { .. } => out.push(e.op.instruction()),
            Op::Sync(SyncOp::CallRcuFree(f)) => out.push(format!("CALL_RCU {:#x}", f.base().0)),
            Op::Sync(SyncOp::AtomicAdd(..)) => out.push("CMO".into()),
            _ => {}
        }
        n += 1;
        // Violations are the corpus's business; the stream is all we read.
        let _ = m.step(&mut s, Choice::Thread(0), n);
    }
    out
}

/// Two pages at IPA 0 and 0x1000 (one level-3 table) and a 2 MiB block at
/// 0x200000, so that unmapping one of them frees nothing else.
const MAPS: [(u64, u64, u64); 2] = [
    (0, 0x2000, 0x4000_0000),
    (0x20_0000, 0x20_0000, 0x4020_0000),
];

#[test]
fn unmap_of_one_page() {
    // IPA 0x1000: IPA[47:12] = 1; a level-3 leaf.
    let eager = by_ipa(0x1 | ttl(3));
    // Deferred: a range flush of one page is the loop's single
    // non-range operation with the range helper's level: 0, which is no
    // hint before c910f2b65518, a (reserved) level-0 hint after it, and
    // TLBI_TTL_UNKNOWN from 0f0ff097bf77.
    let single = |operand: u64| by_range(&[format!("TLBI IPAS2E1IS {operand:#018x}")]);
    let cases = [
        (Version::Kvm6_5, RANGE_CPU, eager.clone()),
        (Version::Kvm6_6, TTL_CPU, eager.clone()),
        (Version::Kvm6_6, RANGE_CPU, single(0x1)),
        (Version::Will2024V1, RANGE_CPU, single(0x1 | ttl(0))),
        (Version::Rcu2024, RANGE_CPU, single(0x1 | ttl(0))),
        (Version::Kvm6_9, RANGE_CPU, single(0x1)),
        (Version::Kvm6_9, TTL_CPU, eager.clone()),
        (Version::Pkvm, RANGE_CPU, single(0x1)),
    ];
    for (v, cpu, want) in cases {
        let (m, _) = unmap_model(v, cpu, true, &MAPS, 0x1000, 0x1000);
        assert_eq!(stream(&m), as_issued(v, want), "{v} with {cpu:?}");
    }
}

#[test]
fn unmap_of_a_2mib_block() {
    // IPA 0x200000: IPA[47:12] = 0x200; a level-2 leaf.
    let eager = by_ipa(0x200 | ttl(2));
    // 512 pages: SCALE 1, NUM 7 ((7 + 1) * 2^6 = 512) in both loops.
    let ranged = by_range(&[format!("TLBI RIPAS2E1IS {:#018x}", range(1, 7, 0x20_0000))]);
    assert_eq!(range(1, 7, 0x20_0000), 0x0000_5380_0000_0200);
    for v in Version::ALL {
        let (m, _) = unmap_model(v, TTL_CPU, true, &MAPS, 0x20_0000, 0x20_0000);
        assert_eq!(
            stream(&m),
            as_issued(v, eager.clone()),
            "{v} without FEAT_TLBIRANGE"
        );
        let (m, _) = unmap_model(v, RANGE_CPU, true, &MAPS, 0x20_0000, 0x20_0000);
        let want = if v == Version::Kvm6_5 {
            &eager
        } else {
            &ranged
        };
        assert_eq!(
            stream(&m),
            as_issued(v, want.clone()),
            "{v} with FEAT_TLBIRANGE"
        );
    }
}

#[test]
fn unmap_of_a_range_that_frees_a_level3_table() {
    // [0, 2 MiB): the two pages, then the level-2 entry of their table.
    let leaves: Vec<String> = [0x0, 0x1]
        .iter()
        .flat_map(|&p| by_ipa(p | ttl(3)))
        .collect();
    let ranged = by_range(&[format!("TLBI RIPAS2E1IS {:#018x}", range(1, 7, 0))]);
    for v in Version::ALL {
        let (m, l3) = unmap_model(v, RANGE_CPU, true, &MAPS, 0, 0x20_0000);
        let l3 = l3.unwrap();
        let free = format!("FREE {l3:#x}");
        let want: Vec<String> = match v {
            // A TLBI per entry, the table's with its own level as hint.
            Version::Kvm6_5 => [leaves.clone(), by_ipa(ttl(2)), vec![free]].concat(),
            // Nothing until the walk is over, the table freed inside it.
            Version::Kvm6_6 => [vec![free], ranged.clone()].concat(),
            // The table eagerly, with the level-2 hint.
            Version::Will2024V1 => [by_ipa(ttl(2)), vec![free], ranged.clone()].concat(),
            Version::Rcu2024 => [vec![format!("CALL_RCU {l3:#x}")], ranged.clone()].concat(),
            // The table eagerly, no hint.
            Version::Kvm6_9 | Version::Pkvm => [by_ipa(0), vec![free], ranged.clone()].concat(),
        };
        assert_eq!(stream(&m), as_issued(v, want), "{v}");
    }
}

#[test]
fn without_fwb_nothing_is_deferred_and_each_leaf_is_cleaned() {
    let (m, _) = unmap_model(Version::Kvm6_6, RANGE_CPU, false, &MAPS, 0x1000, 0x1000);
    assert_eq!(
        stream(&m),
        [by_ipa(0x1 | ttl(3)), vec!["CMO".into()]].concat()
    );
}

#[test]
fn the_range_helper_without_tlbirange_flushes_the_vmid() {
    let ops = tlb::flush_vmid_range(Version::Kvm6_9.flush_code(), TTL_CPU, 0, 0x20_0000);
    let text: Vec<String> = ops.iter().map(S2Op::text).collect();
    assert_eq!(text, ["DSB ISHST", "VMALLS12E1IS", "DSB ISH", "ISB"]);
}

#[test]
fn the_range_helper_splits_at_max_tlbi_range_pages() {
    // MAX_TLBI_RANGE_PAGES + 2 pages at IPA 1 GiB: a chunk of 2^21 pages
    // (SCALE 3, NUM 31), then 2 pages (SCALE 0, NUM 0), each with its
    // DSB ISHST ... ISB.
    let base = 0x4000_0000u64;
    let ops = tlb::flush_vmid_range(
        Version::Kvm6_9.flush_code(),
        RANGE_CPU,
        base,
        (MAX_TLBI_RANGE_PAGES + 2) << 12,
    );
    let text: Vec<String> = ops
        .iter()
        .filter(|o| matches!(o, S2Op::Tlbi { .. }))
        .map(S2Op::text)
        .collect();
    let second = base + (MAX_TLBI_RANGE_PAGES << 12);
    assert_eq!(
        text,
        [
            format!("RIPAS2E1IS {:#018x}", range(3, 31, base)),
            "VMALLE1IS".into(),
            format!("RIPAS2E1IS {:#018x}", range(0, 0, second)),
            "VMALLE1IS".into(),
        ]
    );
    assert_eq!(range(3, 31, base), 0x0000_7f80_0004_0000);
}

#[test]
fn permission_relaxation_invalidates_locally() {
    let ops = tlb::flush_vmid_ipa_nsh(
        Version::Kvm6_9.flush_code(),
        TTL_CPU,
        0x1000,
        tlb::Level::At(3),
    );
    let text: Vec<String> = ops.iter().map(S2Op::text).collect();
    assert_eq!(
        text,
        [
            "DSB NSHST".to_string(),
            format!("IPAS2E1 {:#018x}", 0x1 | ttl(3)),
            "DSB NSH".into(),
            "VMALLE1".into(),
            "DSB NSH".into(),
            "ISB".into(),
        ]
    );
}

#[test]
fn a_reserved_level0_hint_reads_as_no_hint() {
    // c910f2b65518's level 0 on a 4K system without FEAT_LPA2: TTL
    // 0b0100 is in the operand, and the TLBI invalidates as unhinted
    // (Arm ARM Table D8-123).
    let ops = tlb::flush_vmid_ipa(
        Version::Will2024V1.flush_code(),
        TTL_CPU,
        0x1000,
        tlb::Level::At(0),
    );
    let S2Op::Tlbi { raw, operand, .. } = ops[1] else {
        panic!("{ops:?}")
    };
    assert_eq!(raw, Some(0x1 | ttl(0)));
    assert_eq!(
        operand,
        tlbcheck_hw::cpu::tlbi::TlbiOperand::ipa(tlbcheck_hw::addr::Ipa(0x1000), None)
    );
}

#[test]
fn permission_relaxation_flushes_the_leafs_level_locally() {
    // A read-only page at IPA 0x1000 made writable: the walk found a
    // level-3 leaf, so the local flush carries TTL level 3.
    let (m, _) = s2_model(
        Version::Kvm6_9,
        TTL_CPU,
        true,
        &MAPS,
        S2Kind::Relax { ipa: 0x1000 },
        false,
    );
    assert_eq!(
        stream(&m),
        [
            "DSB NSHST".to_string(),
            format!("TLBI IPAS2E1 {:#018x}", 0x1 | ttl(3)),
            "DSB NSH".into(),
            "TLBI VMALLE1".into(),
            "DSB NSH".into(),
        ]
    );
    // Already writable: the flush is still issued (the walk found the
    // leaf; stage2_attr_walker only skips the store).
    let (m, _) = s2_model(
        Version::Kvm6_9,
        TTL_CPU,
        true,
        &MAPS,
        S2Kind::Relax { ipa: 0x1000 },
        true,
    );
    assert_eq!(stream(&m).len(), 5);
}

#[test]
fn permission_relaxation_of_an_invalid_entry_flushes_from_v6_7() {
    // IPA 0x5000 is an empty entry of the level-3 table: stage2_attr_walker
    // returns -EAGAIN. Until v6.6 relax_perms flushes only on success.
    for v in [Version::Kvm6_5, Version::Kvm6_6] {
        let (m, _) = s2_model(
            v,
            TTL_CPU,
            true,
            &MAPS,
            S2Kind::Relax { ipa: 0x5000 },
            false,
        );
        assert!(stream(&m).is_empty(), "{v}");
    }
    // be097997a273 (v6.7) flushes on -EAGAIN too. The walk set no level,
    // so the operand is IPA[47:12] = 0x5 with TTL[47:44] = 0 (no hint).
    let local = [
        "DSB NSHST".to_string(),
        format!("TLBI IPAS2E1 {:#018x}", 0x5),
        "DSB NSH".into(),
        "TLBI VMALLE1".into(),
        "DSB NSH".into(),
    ];
    for v in [
        Version::Will2024V1,
        Version::Rcu2024,
        Version::Kvm6_9,
        Version::Pkvm,
    ] {
        let (m, _) = s2_model(
            v,
            TTL_CPU,
            true,
            &MAPS,
            S2Kind::Relax { ipa: 0x5000 },
            false,
        );
        assert_eq!(stream(&m), as_issued(v, local.to_vec()), "{v}");
    }
}

#[test]
fn aging_a_young_page_flushes_the_whole_vmid() {
    let vmid = ["DSB ISHST", "TLBI VMALLS12E1IS", "DSB ISH"].map(String::from);
    let (m, _) = s2_model(
        Version::Kvm6_9,
        RANGE_CPU,
        true,
        &MAPS,
        S2Kind::Age { ipa: 0x1000 },
        true,
    );
    assert_eq!(stream(&m), vmid);
    let (m, _) = s2_model(
        Version::Kvm6_9,
        RANGE_CPU,
        true,
        &MAPS,
        S2Kind::Age { ipa: 0x5000 },
        true,
    );
    assert!(stream(&m).is_empty(), "not young: nothing to flush");
}

#[test]
fn write_protection_flushes_the_vmid_before_v6_6_and_the_range_after() {
    let kind = S2Kind::Wrprotect {
        ipa: 0,
        len: 0x2000,
    };
    let (m, _) = s2_model(Version::Kvm6_5, RANGE_CPU, true, &MAPS, kind, true);
    assert_eq!(
        stream(&m),
        ["DSB ISHST", "TLBI VMALLS12E1IS", "DSB ISH"].map(String::from)
    );
    // Two pages: SCALE 0, NUM 0.
    let (m, _) = s2_model(Version::Kvm6_6, RANGE_CPU, true, &MAPS, kind, true);
    assert_eq!(
        stream(&m),
        by_range(&[format!("TLBI RIPAS2E1IS {:#018x}", range(0, 0, 0))])
    );
}

#[test]
fn a_block_over_a_table_flushes_the_tables_span_then_frees_it() {
    // The fault maps [0, 2 MiB) over the level-3 table of MAPS' two pages:
    // stage2_try_break_pte flushes the table's span (the whole VMID
    // before kvm_tlb_flush_vmid_range existed), the block is installed,
    // and the table goes after a grace period (at once in pKVM).
    let kind = S2Kind::Map {
        ipa: 0,
        len: 0x20_0000,
        pa: 0x4000_0000,
        write: true,
    };
    for v in Version::ALL {
        let (m, l3) = s2_model(v, RANGE_CPU, true, &MAPS, kind, true);
        let l3 = l3.unwrap();
        let flush = if v == Version::Kvm6_5 {
            vec![
                "DSB ISHST".to_string(),
                "TLBI VMALLS12E1IS".into(),
                "DSB ISH".into(),
            ]
        } else {
            by_range(&[format!("TLBI RIPAS2E1IS {:#018x}", range(1, 7, 0))])
        };
        let free = if v == Version::Pkvm {
            format!("FREE {l3:#x}")
        } else {
            format!("CALL_RCU {l3:#x}")
        };
        // kvm_pgtable_stage2_map ends with a DSB ISHST.
        let want = [flush, vec![free, "DSB ISHST".into()]].concat();
        assert_eq!(stream(&m), as_issued(v, want), "{v}");
    }
}

#[test]
fn pkvm_helpers_open_with_the_nvhe_dsb() {
    // hyp/nvhe/tlb.c: __tlb_switch_to_guest(mmu, &cxt, nsh) issues DSB ISH
    // (DSB NSH when nsh) before the TLBIs; there is no DSB ISHST.
    let (m, _) = unmap_model(Version::Pkvm, TTL_CPU, true, &MAPS, 0x1000, 0x1000);
    assert_eq!(
        stream(&m),
        [
            "DSB ISH".to_string(),
            format!("TLBI IPAS2E1IS {:#018x}", 0x1 | ttl(3)),
            "DSB ISH".into(),
            "TLBI VMALLE1IS".into(),
            "DSB ISH".into(),
        ]
    );
    let (m, _) = s2_model(
        Version::Pkvm,
        TTL_CPU,
        true,
        &MAPS,
        S2Kind::Relax { ipa: 0x1000 },
        false,
    );
    assert_eq!(
        stream(&m),
        [
            "DSB NSH".to_string(),
            format!("TLBI IPAS2E1 {:#018x}", 0x1 | ttl(3)),
            "DSB NSH".into(),
            "TLBI VMALLE1".into(),
            "DSB NSH".into(),
        ]
    );
}
