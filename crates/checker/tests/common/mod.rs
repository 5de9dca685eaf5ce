//! Model builders shared by the checker's tests and benchmarks.
#![allow(dead_code)]

use tlbcheck_checker::model::{Model, Op, Thread};
use tlbcheck_hw::addr::{AddrRange, Granule, InputRange, Pa};
use tlbcheck_hw::machine::{Dsb, Machine};
use tlbcheck_hw::mem::{FrameOwner, Pfn, PhysMem, TableOwner};
use tlbcheck_hw::tlb::{AsidSel, InvalScope, Regime, StageSel};
use tlbcheck_hw::vmsa::desc::{s1_page, table};
use tlbcheck_hw::vmsa::{Context, StageConfig};

pub const L0: u64 = 0x10_0000;
pub const L2: u64 = 0x10_2000;
pub const L3: u64 = 0x10_3000;
pub const DATA: u64 = 0x10_8000;

/// Two CPUs running ASID 1, whose VA 0 maps DATA through L0..L3.
pub fn model(name: &str, writable: bool, threads: Vec<Thread>) -> Model {
    let mut mem = PhysMem::new(Pfn(0x100), 16);
    for (i, level) in (0..4u64).zip(0u8..) {
        let owner = FrameOwner::Table {
            owner: TableOwner::Stage1 { space: 1 },
            level,
        };
        mem.claim(Pfn(0x100 + i), owner).unwrap();
    }
    mem.claim(Pfn::of(Pa(DATA)), FrameOwner::Data { space: 1 })
        .unwrap();
    for lvl in 0..3u64 {
        mem.write(Pa(L0 + lvl * 0x1000), table(L0 + (lvl + 1) * 0x1000))
            .unwrap();
    }
    mem.write(Pa(L3), s1_page(DATA, writable, true, false))
        .unwrap();
    let ctx = Context {
        regime: Regime::El10,
        asid: 1,
        vmid: 0,
        s1: Some(StageConfig::new(Granule::K4, L0)),
        s2: None,
    };
    Model {
        name: name.into(),
        machine: Machine::new(mem, 2, vec![ctx]),
        threads,
        contexts: vec![ctx],
        context_names: vec!["process 1".into()],
    }
}

pub fn thread(ops: Vec<Op>) -> Thread {
    Thread {
        name: "t0".into(),
        cpu: 0,
        ops,
        owns_vmids: None,
    }
}

pub fn tlbi_va(leaf_only: bool) -> Op {
    Op::Tlbi {
        text: if leaf_only {
            "vale1is va=0"
        } else {
            "vae1is va=0"
        }
        .into(),
        scope: InvalScope {
            regime: Regime::El10,
            stages: StageSel::STAGE1,
            vmid: Some(0),
            asid: AsidSel::Only {
                asid: 1,
                with_global: true,
            },
            range: Some(InputRange::Va(AddrRange::from_len(0, 0x1000))),
            granule: None,
            leaf_only,
            ttl_level: None,
        },
        broadcast: true,
    }
}

pub fn dsb(kind: Dsb) -> Op {
    Op::Dsb { kind }
}

pub fn store(pa: u64, value: u64) -> Op {
    Op::Store { pa: Pa(pa), value }
}

pub fn free(pa: u64) -> Op {
    Op::Free {
        frame: Pfn::of(Pa(pa)),
    }
}

/// `k` threads on CPUs 0..k, each unmapping its own page of VA 0..k pages
/// (store, DSB ISHST, TLBI VALE1IS, DSB ISH, free): a clean model whose
/// state space grows with every interleaving of the threads.
pub fn parallel_unmaps(k: u8) -> Model {
    let mut mem = PhysMem::new(Pfn(0x100), 32);
    for (i, level) in (0..4u64).zip(0u8..) {
        let owner = FrameOwner::Table {
            owner: TableOwner::Stage1 { space: 1 },
            level,
        };
        mem.claim(Pfn(0x100 + i), owner).unwrap();
    }
    for lvl in 0..3u64 {
        mem.write(Pa(L0 + lvl * 0x1000), table(L0 + (lvl + 1) * 0x1000))
            .unwrap();
    }
    let mut threads = Vec::new();
    for t in 0..u64::from(k) {
        let data = DATA + t * 0x1000;
        mem.claim(Pfn::of(Pa(data)), FrameOwner::Data { space: 1 })
            .unwrap();
        mem.write(Pa(L3 + 8 * t), s1_page(data, true, true, false))
            .unwrap();
        let mut tlbi = tlbi_va(true);
        if let Op::Tlbi { scope, .. } = &mut tlbi {
            scope.range = Some(InputRange::Va(AddrRange::from_len(t << 12, 0x1000)));
        }
        threads.push(Thread {
            name: format!("t{t}"),
            cpu: t as u8,
            ops: vec![
                store(L3 + 8 * t, 0),
                dsb(Dsb::Ishst),
                tlbi,
                dsb(Dsb::Ish),
                free(data),
            ],
            owns_vmids: None,
        });
    }
    let ctx = Context {
        regime: Regime::El10,
        asid: 1,
        vmid: 0,
        s1: Some(StageConfig::new(Granule::K4, L0)),
        s2: None,
    };
    Model {
        name: format!("parallel-unmaps-{k}"),
        machine: Machine::new(mem, k, vec![ctx]),
        threads,
        contexts: vec![ctx],
        context_names: vec!["process 1".into()],
    }
}
