//! The memory manager's programs run on the checker: what fork and the
//! COW write fault leave in the page tables, written from
//! `copy_present_pte` and `wp_page_copy`; what a demand fault allocates
//! and maps, written from `__pte_alloc` and `do_anonymous_page`.

use std::sync::Arc;
use tlbcheck_checker::builder::{Features, ModelBuilder};
use tlbcheck_checker::model::{Choice, Model, State};
use tlbcheck_hw::addr::{Granule, Pa};
use tlbcheck_hw::machine::Machine;
use tlbcheck_hw::mem::{Pfn, PhysMem};
use tlbcheck_hw::tlb::Regime;
use tlbcheck_hw::vmsa::desc::bits;
use tlbcheck_hw::vmsa::{Context, StageConfig};
use tlbcheck_protocols::linux::arm64::CpuFeatures;
use tlbcheck_protocols::linux::mm::*;
use tlbcheck_protocols::linux::sva::SmmuFeatures;
use tlbcheck_protocols::linux::Version;

fn process(name: &str, asid: u16, root: u64, ctx: usize) -> Process {
    Process {
        name: name.into(),
        asid,
        space: asid,
        root,
        ctx,
        vmas: Vec::new(),
        bonds: Vec::new(),
        mirror: None,
    }
}

/// p1 with one writable page at 0, c1 empty but for its tables; one
/// thread forks p1 into c1 then takes a write fault at 0 in p1.
fn model(version: Version) -> (Model, [u64; 2]) {
    let mut mem = PhysMem::new(Pfn(0x100), 32);
    let r1 = new_root(&mut mem, 1).unwrap();
    let r2 = new_root(&mut mem, 2).unwrap();
    map_new_page(&mut mem, r1, 1, 0, true).unwrap();
    prepare_tables(&mut mem, r2, 2, 0).unwrap();
    let vma = Vma {
        start: 0,
        end: 0x1000,
        writable: true,
        by_mmap: false,
    };
    let mut p1 = process("p1", 1, r1, 0);
    p1.vmas.push(vma);
    let mut c1 = process("c1", 2, r2, 1);
    c1.vmas.push(vma);
    let ctx = |asid, root| Context {
        regime: Regime::El10,
        asid,
        vmid: 0,
        s1: Some(StageConfig::new(Granule::K4, root)),
        s2: None,
    };
    let contexts = vec![ctx(1, r1), ctx(2, r2)];
    let machine = Machine::new(mem, 1, contexts.clone());
    let kernel = Arc::new(Kernel {
        version,
        cpu: CpuFeatures::default(),
        smmu: SmmuFeatures::default(),
        processes: vec![p1, c1],
        zero_page: 0,
        slots: Vec::new(),
    });
    let mut b = ModelBuilder::new("fork-cow", machine, Features::default());
    for (i, c) in contexts.into_iter().enumerate() {
        b.context(format!("ctx{i}"), c);
    }
    b.locks(kernel.locks());
    b.counters(kernel.counters());
    b.seqcounts(kernel.seqcounts());
    let items = vec![
        Item::Kernel(KOp::Fork { p: 0, child: 1 }),
        Item::Kernel(KOp::WriteFault { p: 0, va: 0 }),
    ];
    b.program("t", 0, Arc::new(KernelThread::new(kernel, items)), None)
        .unwrap();
    (b.build().unwrap(), [r1, r2])
}

/// Runs the one thread to its end; the state after each step.
fn run(m: &Model) -> Vec<State> {
    let mut s = m.initial();
    let mut out = Vec::new();
    let mut n = 0;
    while m.next_op(&s, 0).is_some() {
        n += 1;
        assert!(m.step(&mut s, Choice::Thread(0), n).is_none(), "step {n}");
        out.push(s.clone());
    }
    out
}

fn pte(s: &State, root: u64) -> u64 {
    let l3 = tables(&s.machine.mem, root, 0)[3].unwrap();
    s.machine.mem.read(Pa(l3))
}

#[test]
fn fork_write_protects_the_parent_and_cow_gives_it_a_writable_copy() {
    for v in Version::ALL {
        let (m, [r1, r2]) = model(v);
        let before = pte(&m.initial(), r1);
        let data = before & bits::ADDR_MASK;
        assert_eq!(before, user_pte(data, true));
        let states = run(&m);
        // Right after the fork both map the page read-only.
        let forked = states
            .iter()
            .find(|s| pte(s, r2) != 0)
            .expect("the child gets the PTE");
        assert_eq!(pte(forked, r1), user_pte(data, false), "{v}");
        assert_eq!(pte(forked, r2), user_pte(data, false), "{v}");
        // After the COW fault p1 maps a new frame writable; c1 keeps the
        // old one read-only.
        let last = states.last().unwrap();
        let copy = pte(last, r1);
        assert_ne!(copy & bits::ADDR_MASK, data, "{v}");
        assert_eq!(copy, user_pte(copy & bits::ADDR_MASK, true), "{v}");
        assert_eq!(pte(last, r2), user_pte(data, false), "{v}");
    }
}

/// p1 (root only) with a writable VMA of 2 pages at 2 MiB, made by an
/// `mmap` step when `late`; a zero page; one thread per item list.
fn touch_model(late: bool, threads: Vec<Vec<KOp>>) -> (Model, u64, u64) {
    let mut mem = PhysMem::new(Pfn(0x100), 32);
    let zero = mem
        .alloc(tlbcheck_hw::mem::FrameOwner::Data { space: 0 })
        .unwrap()
        .base()
        .0;
    let root = new_root(&mut mem, 1).unwrap();
    let mut p1 = process("p1", 1, root, 0);
    p1.vmas.push(Vma {
        start: 0x20_0000,
        end: 0x20_2000,
        writable: true,
        by_mmap: late,
    });
    let ctx = Context {
        regime: Regime::El10,
        asid: 1,
        vmid: 0,
        s1: Some(StageConfig::new(Granule::K4, root)),
        s2: None,
    };
    let machine = Machine::new(mem, threads.len() as u8, vec![ctx]);
    let kernel = Arc::new(Kernel {
        version: Version::Linux6_6,
        cpu: CpuFeatures::default(),
        smmu: SmmuFeatures::default(),
        processes: vec![p1],
        zero_page: zero,
        slots: Vec::new(),
    });
    let mut b = ModelBuilder::new("touch", machine, Features::default());
    b.context("p1".to_string(), ctx);
    b.locks(kernel.locks());
    b.counters(kernel.counters());
    b.seqcounts(kernel.seqcounts());
    for (i, ops) in threads.into_iter().enumerate() {
        let items = ops.into_iter().map(Item::Kernel).collect();
        let prog = Arc::new(KernelThread::new(Arc::clone(&kernel), items));
        b.program(format!("t{i}"), i as u8, prog, None).unwrap();
    }
    (b.build().unwrap(), root, zero)
}

/// Runs thread `t` for `n` steps (or to its end when `n` is `None`).
fn steps(m: &Model, s: &mut State, t: usize, n: Option<usize>) {
    let mut done = 0;
    while n.is_none_or(|n| done < n) && m.next_op(s, t).is_some() {
        done += 1;
        assert!(m
            .step(s, Choice::Thread(t as u8), 1000 + done as u32)
            .is_none());
    }
}

fn pte_at(s: &State, root: u64, va: u64) -> Option<u64> {
    let l3 = tables(&s.machine.mem, root, va)[3]?;
    Some(s.machine.mem.read(Pa(l3 + 8 * index(va, 3))))
}

const W: KOp = KOp::Touch {
    p: 0,
    va: 0x20_1000,
    write: true,
};
const R: KOp = KOp::Touch {
    p: 0,
    va: 0x20_1000,
    write: false,
};

#[test]
fn a_write_demand_fault_makes_three_tables_and_maps_a_new_page_writable() {
    let (m, root, zero) = touch_model(false, vec![vec![W]]);
    let mut s = m.initial();
    let free = s.machine.mem.free_frames();
    steps(&m, &mut s, 0, None);
    // Level 1, 2 and 3 tables and the data page: four frames.
    assert_eq!(s.machine.mem.free_frames(), free - 4);
    let pte = pte_at(&s, root, 0x20_1000).expect("tables linked");
    let data = pte & bits::ADDR_MASK;
    assert_ne!(data, zero);
    assert_eq!(pte, user_pte(data, true));
    // The neighbouring page stays empty.
    assert_eq!(pte_at(&s, root, 0x20_0000), Some(0));
}

#[test]
fn a_read_maps_the_zero_page_and_a_later_write_copies_it() {
    let (m, root, zero) = touch_model(false, vec![vec![R, W]]);
    let mut s = m.initial();
    // Run the read alone: it ends with the access.
    while pte_at(&s, root, 0x20_1000).is_none_or(|p| p == 0) {
        steps(&m, &mut s, 0, Some(1));
    }
    assert_eq!(pte_at(&s, root, 0x20_1000), Some(user_pte(zero, false)));
    steps(&m, &mut s, 0, None);
    let pte = pte_at(&s, root, 0x20_1000).unwrap();
    assert_ne!(pte & bits::ADDR_MASK, zero);
    assert_eq!(pte, user_pte(pte & bits::ADDR_MASK, true));
}

#[test]
fn the_loser_of_a_table_race_frees_its_table_and_uses_the_winners() {
    let (m, root, _) = touch_model(false, vec![vec![W], vec![W]]);
    let mut s = m.initial();
    let free = s.machine.mem.free_frames();
    // t0: mmap_read_lock, the walk's lock and unlock (nothing there),
    // then allocates its level-1 table.
    steps(&m, &mut s, 0, Some(4));
    assert_eq!(s.machine.mem.free_frames(), free - 1);
    // t1 runs to its end: three tables and a page.
    steps(&m, &mut s, 1, None);
    let pte = pte_at(&s, root, 0x20_1000).unwrap();
    // t0 finds the level-1 entry populated, frees its table, walks t1's
    // tables, and finds the PTE filled.
    steps(&m, &mut s, 0, None);
    assert_eq!(pte_at(&s, root, 0x20_1000), Some(pte));
    assert_eq!(s.machine.mem.free_frames(), free - 4);
}

#[test]
fn a_touch_before_the_mmap_is_a_sigsegv_and_after_it_a_fault() {
    let mmap = KOp::Mmap {
        p: 0,
        n: 0,
        start: 0x20_0000,
        len: 0x2000,
    };
    let (m, root, _) = touch_model(true, vec![vec![W, mmap, W]]);
    let mut s = m.initial();
    let free = s.machine.mem.free_frames();
    // The first touch: read lock, the VMA's absence, unlock; no access.
    steps(&m, &mut s, 0, Some(3));
    assert_eq!(s.machine.mem.free_frames(), free);
    assert!(tables(&s.machine.mem, root, 0x20_1000)[1].is_none());
    steps(&m, &mut s, 0, None);
    let pte = pte_at(&s, root, 0x20_1000).unwrap();
    assert_eq!(pte, user_pte(pte & bits::ADDR_MASK, true));
}
