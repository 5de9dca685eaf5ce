//! Model builders shared by the checker's tests and benchmarks.
#![allow(dead_code)]

use std::sync::Arc;
use tlbcheck_checker::builder::{Features, ModelBuilder};
use tlbcheck_checker::model::{Model, Thread};
use tlbcheck_checker::op::Op;
use tlbcheck_checker::program::Script;
use tlbcheck_hw::addr::{AddrRange, Granule, InputRange, Pa};
use tlbcheck_hw::cpu::tlbi::{Tlbi, TlbiOperand};
use tlbcheck_hw::machine::{Dsb, Machine};
use tlbcheck_hw::mem::{FrameOwner, Pfn, PhysMem, TableOwner};
use tlbcheck_hw::testing::{chain4k, claim_chain4k, s1_ctx};
use tlbcheck_hw::tlb::{AsidSel, InvalScope, Regime, StageSel};
use tlbcheck_hw::vmsa::desc::s1_page;
use tlbcheck_hw::vmsa::Context;

pub const L0: u64 = 0x10_0000;
pub const L2: u64 = 0x10_2000;
pub const L3: u64 = 0x10_3000;
pub const DATA: u64 = 0x10_8000;

/// The process-1 context: ASID 1, 4K, root L0.
pub fn ctx() -> Context {
    s1_ctx(Granule::K4, L0, 1, 0)
}

/// `cpus` CPUs running ASID 1, whose VA 0 maps DATA through L0..L3 (and,
/// for `pages` > 1, VA `n << 12` maps the frame after DATA's).
pub fn machine(writable: bool, cpus: u8, pages: u64) -> Machine {
    let mut mem = PhysMem::new(Pfn(0x100), 32);
    claim_chain4k(&mut mem, L0, TableOwner::Stage1 { space: 1 });
    assert_eq!(chain4k(&mut mem, L0), L3);
    for n in 0..pages {
        let data = DATA + n * 0x1000;
        mem.claim(Pfn::of(Pa(data)), FrameOwner::Data { space: 1 })
            .unwrap();
        mem.write(Pa(L3 + 8 * n), s1_page(data, writable, true, false))
            .unwrap();
    }
    Machine::new(mem, cpus, vec![ctx()])
}

/// A builder over [`machine`] with the process context declared.
pub fn builder(name: &str, cpus: u8, pages: u64) -> ModelBuilder {
    let mut b = ModelBuilder::new(name, machine(true, cpus, pages), Features::default());
    b.context("process 1", ctx());
    b
}

/// Two CPUs running ASID 1, whose VA 0 maps DATA through L0..L3.
pub fn model(name: &str, writable: bool, threads: Vec<Thread>) -> Model {
    let mut b = ModelBuilder::new(name, machine(writable, 2, 1), Features::default());
    b.context("process 1", ctx());
    for t in threads {
        b.program(t.name, t.cpu, t.program, t.owns_vmids).unwrap();
    }
    b.build().unwrap()
}

/// TLBI VALE1IS (leaf) or VAE1IS for ASID 1 at VA `page << 12`, as an
/// instruction and operand.
pub fn tlbi_page(leaf_only: bool, page: u64) -> (Tlbi, TlbiOperand, String) {
    let ins: Tlbi = if leaf_only { "VALE1IS" } else { "VAE1IS" }
        .parse()
        .unwrap();
    let op = TlbiOperand::Va {
        asid: 1,
        ttl: None,
        page,
    };
    (ins, op, format!("{ins} asid=1 va={:#x}", page << 12))
}

pub fn thread(ops: Vec<Op>) -> Thread {
    Thread {
        name: "t0".into(),
        cpu: 0,
        program: script(ops),
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
        ins: Tlbi::new(
            if leaf_only {
                tlbcheck_hw::cpu::tlbi::TlbiOp::VALE1
            } else {
                tlbcheck_hw::cpu::tlbi::TlbiOp::VAE1
            },
            true,
        ),
        raw: Some(1 << 48),
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
    let mut b = builder(&format!("parallel-unmaps-{k}"), k, u64::from(k));
    for t in 0..u64::from(k) {
        let mut th = b.thread(format!("t{t}"), t as u8).unwrap();
        th.store(Pa(L3 + 8 * t), 0).unwrap();
        th.dsb(Dsb::Ishst);
        let (ins, op, text) = tlbi_page(true, t);
        th.tlbi(ins, op, text).unwrap();
        th.dsb(Dsb::Ish);
        th.free(Pfn::of(Pa(DATA + t * 0x1000))).unwrap();
        th.done();
    }
    b.build().unwrap()
}

/// A thread program that runs `ops` in order.
pub fn script(ops: Vec<Op>) -> Arc<Script> {
    Arc::new(Script::new(ops))
}
