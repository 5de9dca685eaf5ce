//! KVM's stage-2 unmap run from a process's mmu notifier: a VM's memslot
//! backed by the process, the process unmaps a page of it, and
//! `kvm_mmu_notifier_invalidate_range_start` -> `kvm_unmap_gfn_range`
//! unmaps the IPA that page backs, inside the munmap. The expected
//! stream is written from v6.9's algorithm (`stage2_unmap_walker`
//! defers a leaf's TLBI with FEAT_TLBIRANGE and FWB;
//! `kvm_pgtable_stage2_unmap` ends with `kvm_tlb_flush_vmid_range`, whose
//! one-page flush is the loop's single non-range TLBI with
//! `TLBI_TTL_UNKNOWN`, then `__kvm_tlb_flush_vmid_range`'s DSB ISH, TLBI
//! VMALLE1IS, DSB ISH) and the Arm ARM's IPAS2E1IS operand (D8.17.5.1:
//! IPA\[47:12\] in bits \[35:0\], TTL in \[47:44\], here 0: no hint).

use std::sync::Arc;
use tlbcheck_checker::builder::{Features, ModelBuilder};
use tlbcheck_checker::model::{Choice, Model};
use tlbcheck_checker::op::Op;
use tlbcheck_checker::program::Frame;
use tlbcheck_hw::addr::{Granule, Pa};
use tlbcheck_hw::machine::Machine;
use tlbcheck_hw::mem::{FrameOwner, Pfn, PhysMem, TableOwner};
use tlbcheck_hw::tlb::Regime;
use tlbcheck_hw::vmsa::{Context, StageConfig};
use tlbcheck_protocols::kvm::mmu::{Hyp, Vm};
use tlbcheck_protocols::kvm::pgtable::{entry_addr, setup_map};
use tlbcheck_protocols::kvm::Version as KvmVersion;
use tlbcheck_protocols::linux::arm64::CpuFeatures;
use tlbcheck_protocols::linux::mm::*;
use tlbcheck_protocols::linux::sva::SmmuFeatures;
use tlbcheck_protocols::linux::Version;

const CPU: CpuFeatures = CpuFeatures {
    tlbirange: true,
    ttl: true,
};
/// The memslot: IPAs from 2 GiB backed by the process's HVAs from 0.
const SLOT_IPA: u64 = 0x8000_0000;
/// The page the process unmaps: the slot's second.
const HVA: u64 = 0x1000;

/// The process maps HVAs 0 and 0x1000; the VM maps the IPAs a memslot
/// from `slot_hva` gives them (one level-3 table, so the unmap frees no
/// table). One thread unmaps HVA 0x1000. Returns the model and the VM's
/// stage-2 root.
fn model(kvm: KvmVersion, slot_hva: u64) -> (Model, u64) {
    let mut mem = PhysMem::new(Pfn(0x100), 32);
    let r1 = new_root(&mut mem, 1).unwrap();
    map_new_page(&mut mem, r1, 1, 0, true).unwrap();
    map_new_page(&mut mem, r1, 1, HVA, true).unwrap();
    let s2 = mem
        .alloc(FrameOwner::Table {
            owner: TableOwner::Stage2 { vmid: 1 },
            level: 0,
        })
        .unwrap()
        .base()
        .0;
    setup_map(&mut mem, s2, 1, SLOT_IPA, 0x2000, 0x4000_0000, true).unwrap();
    let contexts = vec![
        Context {
            regime: Regime::El10,
            asid: 1,
            vmid: 0,
            s1: Some(StageConfig::new(Granule::K4, r1)),
            s2: None,
        },
        Context {
            regime: Regime::El10,
            asid: 0,
            vmid: 1,
            s1: None,
            s2: Some(StageConfig::new(Granule::K4, s2)),
        },
    ];
    let machine = Machine::new(mem, 1, contexts.clone());
    let p = Process {
        name: "p".into(),
        asid: 1,
        space: 1,
        root: r1,
        ctx: 0,
        vmas: vec![Vma {
            start: 0,
            end: 0x2000,
            writable: true,
            by_mmap: false,
        }],
        bonds: Vec::new(),
        mirror: None,
    };
    let mut kernel = Kernel {
        version: Version::Linux6_6,
        cpu: CPU,
        smmu: SmmuFeatures::default(),
        processes: vec![p],
        zero_page: 0,
        slots: Vec::new(),
    };
    let hyp = Arc::new(Hyp {
        version: kvm,
        cpu: CPU,
        fwb: true,
        vms: vec![Vm {
            name: "g".into(),
            vmid: 1,
            root: s2,
            ctx: 1,
        }],
        lock_base: kernel.locks(),
        counter_base: kernel.counters(),
    });
    kernel.slots.push(VmSlot {
        of: 0,
        hyp: hyp.clone(),
        vm: 0,
        ipa: SLOT_IPA,
        hva: slot_hva,
        len: 0x2000,
    });
    let mut b = ModelBuilder::new(
        "notifier",
        machine,
        Features {
            tlbirange: true,
            ttl: true,
            smmu_ril: false,
        },
    );
    b.context("p", contexts[0]);
    b.context("g", contexts[1]);
    b.locks(kernel.locks() + hyp.locks());
    b.counters(kernel.counters() + hyp.counters());
    b.seqcounts(kernel.seqcounts());
    let items = vec![Item::Kernel(KOp::Munmap {
        p: 0,
        start: HVA,
        len: 0x1000,
    })];
    b.program(
        "t",
        0,
        Arc::new(KernelThread::new(Arc::new(kernel), items)),
        None,
    )
    .unwrap();
    (b.build().unwrap(), s2)
}

/// Runs the thread to its end: its TLBIs and DSBs, each marked `kvm` when
/// KVM's notifier issued it, and the final state's memory.
fn run(m: &Model) -> (Vec<(bool, String)>, tlbcheck_checker::model::State) {
    let mut s = m.initial();
    let mut out = Vec::new();
    let mut n = 0;
    while let Some(e) = m.next_op(&s, 0) {
        if let Op::Tlbi { .. } | Op::Dsb { .. } = &*e.op {
            let kvm = e
                .origin
                .as_deref()
                .is_some_and(|o| o.contains(": g s2 unmap "));
            out.push((kvm, e.op.instruction()));
        }
        n += 1;
        assert!(m.step(&mut s, Choice::Thread(0), n).is_none(), "step {n}");
    }
    (out, s)
}

#[test]
fn a_one_page_munmap_unmaps_the_ipa_it_backs_with_one_deferred_tlbi() {
    // IPA 0x8000_1000: IPA[47:12] = 0x80001; no TTL.
    let want: Vec<String> = [
        "DSB ISHST",
        "TLBI IPAS2E1IS 0x0000000000080001",
        "DSB ISH",
        "TLBI VMALLE1IS",
        "DSB ISH",
    ]
    .map(String::from)
    .to_vec();
    let (m, s2) = model(KvmVersion::Kvm6_9, 0);
    let (stream, end) = run(&m);
    let kvm: Vec<String> = stream
        .iter()
        .filter(|(k, _)| *k)
        .map(|(_, s)| s.clone())
        .collect();
    assert_eq!(kvm, want);
    // invalidate_range_start runs before the process's PTE is zapped and
    // its own TLBI (tlb_end_vma) issued.
    let first_cpu = stream.iter().position(|(k, _)| !k).unwrap();
    assert!(stream[..first_cpu].iter().all(|(k, _)| *k));
    assert!(stream[first_cpu..].iter().all(|(k, _)| !k));
    // The backed IPA's leaf is gone, its neighbour's stays.
    let mem = &end.machine.mem;
    let leaf = |ipa| entry_addr(mem, s2, ipa, 3).unwrap();
    assert_eq!(mem.read(Pa(leaf(SLOT_IPA + HVA))), 0);
    assert_ne!(mem.read(Pa(leaf(SLOT_IPA))), 0);
    // The call's frame is empty again once KVM has returned.
    assert_eq!(end.threads[0].callee, Frame::default());
}

#[test]
fn a_munmap_outside_every_memslot_leaves_the_vm_alone() {
    let (m, s2) = model(KvmVersion::Kvm6_9, 0x10_0000);
    let (stream, end) = run(&m);
    assert!(!stream.is_empty() && stream.iter().all(|(k, _)| !k));
    let mem = &end.machine.mem;
    assert_ne!(
        mem.read(Pa(entry_addr(mem, s2, SLOT_IPA + HVA, 3).unwrap())),
        0
    );
}
