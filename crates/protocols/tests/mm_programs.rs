//! The memory manager's programs run alone on the checker: what fork and
//! the COW write fault leave in the page tables, written from
//! `copy_present_pte` and `wp_page_copy`.

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
