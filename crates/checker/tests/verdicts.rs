//! Verdicts mean what they say: a search cut short is never `ok`, a thread
//! that can never run again is `stuck`, states that behave the same merge,
//! and the model builder refuses what cannot run.

mod common;

use common::*;
use std::borrow::Cow;
use std::sync::Arc;
use tlbcheck_checker::builder::{BuildError, Features, ModelBuilder};
use tlbcheck_checker::explore::{explore, Bound, Conclusion, Coverage};
use tlbcheck_checker::model::{Bounds, Model};
use tlbcheck_checker::op::{Op, Rely};
use tlbcheck_checker::program::{Emit, OpResult, ProgState, Program};
use tlbcheck_checker::random::random_walks;
use tlbcheck_checker::sync::SyncOp;
use tlbcheck_checker::violation::ViolationKind;
use tlbcheck_hw::addr::{Pa, Va};
use tlbcheck_hw::machine::Dsb;
use tlbcheck_hw::machine::Machine;
use tlbcheck_hw::mem::Pfn;

/// One thread: `dsbs` DSBs, then a free of the still-mapped data page.
fn long_chain_then_buggy_free(dsbs: usize) -> Model {
    let mut b = builder("chain", 1, 1);
    let mut t = b.thread("t", 0).unwrap();
    for _ in 0..dsbs {
        t.dsb(Dsb::Ish);
    }
    t.free(Pfn::of(Pa(DATA))).unwrap();
    t.done();
    b.build().unwrap()
}

#[test]
fn a_long_path_is_explored_to_its_end_by_default() {
    let v = explore(&long_chain_then_buggy_free(250), Bounds::default());
    assert_eq!(
        v.violation.map(|v| v.kind),
        Some(ViolationKind::FreedFrameMapped)
    );
}

#[test]
fn no_bound_that_stops_the_search_gives_ok() {
    let m = parallel_unmaps(3);
    let bounded = [
        Bounds {
            max_depth: 3,
            ..Bounds::default()
        },
        Bounds {
            max_states: 10,
            ..Bounds::default()
        },
        Bounds {
            max_states: 0,
            ..Bounds::default()
        },
        Bounds {
            max_memory: 1,
            ..Bounds::default()
        },
        Bounds {
            timeout_ms: 0,
            ..Bounds::default()
        },
    ];
    for b in bounded {
        let v = explore(&m, b);
        assert!(
            matches!(v.coverage, Coverage::Bounded(_)),
            "{b:?}: {:?}",
            v.coverage
        );
        assert_eq!(v.conclusion(), Conclusion::Inconclusive, "{b:?}");
        assert!(!v.complete());
        assert!(v.coverage_statement().starts_with("inconclusive"));
    }
    let v = explore(
        &m,
        Bounds {
            max_memory: 1,
            ..Bounds::default()
        },
    );
    assert_eq!(v.coverage, Coverage::Bounded(Bound::Memory(1)));
    // The same model, unbounded, is proved clean.
    let v = explore(&m, Bounds::default());
    assert_eq!(v.conclusion(), Conclusion::Ok);
}

#[test]
fn a_bug_past_the_depth_bound_is_inconclusive_not_ok() {
    let m = long_chain_then_buggy_free(250);
    let v = explore(
        &m,
        Bounds {
            max_depth: 200,
            ..Bounds::default()
        },
    );
    assert_eq!(v.conclusion(), Conclusion::Inconclusive);
    assert_eq!(v.coverage, Coverage::Bounded(Bound::Depth(200)));
}

#[test]
fn random_mode_without_a_violation_is_a_sample() {
    let v = random_walks(&parallel_unmaps(2), 1, 0, 100);
    assert_eq!(v.conclusion(), Conclusion::Inconclusive);
    let v = random_walks(&parallel_unmaps(2), 1, 20, 100);
    assert_eq!(v.coverage, Coverage::RandomWalks(20));
    assert_eq!(v.conclusion(), Conclusion::Inconclusive);
}

fn stuck(m: &Model) -> String {
    let v = explore(m, Bounds::default());
    let s = v.violation.expect("stuck");
    assert_eq!(s.kind, ViolationKind::Stuck, "{}", s.detail);
    // The counterexample replays to the same stuck state.
    let t = v.trace.expect("trace");
    assert_eq!(t.violation.map(|v| v.kind), Some(ViolationKind::Stuck));
    s.detail
}

#[test]
fn a_grace_period_inside_its_own_read_section_is_stuck() {
    let mut b = builder("own reader", 1, 1);
    let mut t = b.thread("t", 0).unwrap();
    t.sync(SyncOp::RcuReadLock).unwrap();
    t.sync(SyncOp::SynchronizeRcu).unwrap();
    t.sync(SyncOp::RcuReadUnlock).unwrap();
    t.done();
    let detail = stuck(&b.build().unwrap());
    assert!(detail.contains("grace period"), "{detail}");
}

#[test]
fn a_lock_never_released_leaves_the_waiter_stuck() {
    let mut b = builder("lock", 2, 1);
    b.locks(1);
    let mut t = b.thread("holder", 0).unwrap();
    t.sync(SyncOp::Lock(0)).unwrap();
    t.done();
    let mut t = b.thread("waiter", 1).unwrap();
    t.sync(SyncOp::Lock(0)).unwrap();
    t.sync(SyncOp::Unlock(0)).unwrap();
    t.done();
    let detail = stuck(&b.build().unwrap());
    assert!(
        detail.contains("waiter") && detail.contains("lock 0"),
        "{detail}"
    );
    // Released, the same model is clean and complete.
    let mut b = builder("lock", 2, 1);
    b.locks(1);
    for (name, cpu) in [("a", 0), ("b", 1)] {
        let mut t = b.thread(name, cpu).unwrap();
        t.sync(SyncOp::Lock(0)).unwrap();
        t.sync(SyncOp::Unlock(0)).unwrap();
        t.done();
    }
    let v = explore(&b.build().unwrap(), Bounds::default());
    assert_eq!(v.conclusion(), Conclusion::Ok);
}

#[test]
fn releasing_a_lock_not_held_is_reported_not_a_panic() {
    let mut b = builder("misuse", 1, 1);
    b.locks(1);
    let mut t = b.thread("t", 0).unwrap();
    t.sync(SyncOp::Unlock(0)).unwrap();
    t.done();
    let v = explore(&b.build().unwrap(), Bounds::default());
    let s = v.violation.expect("misuse is reported");
    assert_eq!(s.kind, ViolationKind::Stuck);
    assert!(s.detail.contains("does not hold"), "{}", s.detail);
}

/// Two threads each issue `k` TLBIs without a DSB, then a DSB ISH. The
/// states are exactly the pairs of thread positions: nothing of the order
/// in which the CPUs' TLBIs interleaved is kept.
#[test]
fn interleavings_of_independent_tlbis_merge() {
    for k in [4u64, 8, 12] {
        let mut b = builder("k tlbis", 2, 2 * k);
        for cpu in 0..2u64 {
            let mut t = b.thread(format!("t{cpu}"), cpu as u8).unwrap();
            for i in 0..k {
                let (ins, op, text) = tlbi_page(true, cpu * k + i);
                t.tlbi(ins, op, text).unwrap();
            }
            t.dsb(Dsb::Ish);
            t.done();
        }
        let v = explore(&b.build().unwrap(), Bounds::default());
        assert_eq!(v.conclusion(), Conclusion::Ok);
        assert_eq!(v.stats.states, (k + 2) * (k + 2), "k = {k}");
    }
}

/// The flusher of the handoff test: takes lock 0, reads sequence count 0
/// (the zapper's write section), and if the zap happened, DSB, TLBI VAE1IS,
/// DSB, unlock and free the page; else just unlock. A program that branches
/// on what it read, as a protocol does.
#[derive(Debug)]
struct Flusher {
    ops: Vec<Op>,
}

impl Flusher {
    fn new() -> Flusher {
        let (ins, op, _) = tlbi_page(false, 0);
        let scope = ins.scope(&op, 0);
        Flusher {
            ops: vec![
                Op::Sync(SyncOp::Lock(0)),
                Op::Sync(SyncOp::SeqRead(0)),
                Op::Dsb { kind: Dsb::Ish },
                Op::Tlbi {
                    text: "VAE1IS asid=1 va=0".into(),
                    ins: tlbcheck_hw::cpu::tlbi::Tlbi::new(
                        tlbcheck_hw::cpu::tlbi::TlbiOp::VAE1,
                        true,
                    ),
                    raw: Some(1 << 48),
                    scope,
                    broadcast: true,
                },
                Op::Dsb { kind: Dsb::Ish },
                Op::Sync(SyncOp::Unlock(0)),
                Op::Free {
                    frame: Pfn::of(Pa(DATA)),
                },
            ],
        }
    }
}

impl Program for Flusher {
    fn next<'a>(&'a self, st: &ProgState, _: &Machine) -> Option<Emit<'a>> {
        let op = self.ops.get(st.pc as usize)?;
        Some(Emit {
            op: Cow::Borrowed(op),
            origin: Some(Cow::Borrowed("flush after zap")),
        })
    }

    fn advance(&self, st: &mut ProgState, _: &Machine, r: OpResult) {
        st.pc = match st.pc {
            // Nothing zapped yet: unlock and stop (regs[0] = 0, no free).
            1 if r.value == 0 => 5,
            1 => {
                st.regs[0] = 1;
                2
            }
            5 if st.regs[0] == 0 => 7,
            pc => pc + 1,
        };
    }

    fn may_allocate(&self, _: &ProgState) -> bool {
        false
    }
}

/// A store made before a lock release is observed by the thread that takes
/// the lock: its DSB completes it before its TLBI, so the unmap is clean.
/// Made after the release, the store is not published, and the TLBI may be
/// performed while walkers still see the old descriptor.
#[test]
fn a_lock_handoff_publishes_the_releasers_stores() {
    let run = |store_before_release: bool| {
        let mut b = builder("handoff", 2, 1);
        b.locks(1);
        b.seqcounts(1);
        let mut t = b.thread("zap", 0).unwrap();
        t.sync(SyncOp::Lock(0)).unwrap();
        if !store_before_release {
            t.sync(SyncOp::Unlock(0)).unwrap();
        }
        t.sync(SyncOp::SeqWriteBegin(0)).unwrap();
        t.store(Pa(L3), 0).unwrap();
        t.sync(SyncOp::SeqWriteEnd(0)).unwrap();
        if store_before_release {
            t.sync(SyncOp::Unlock(0)).unwrap();
        }
        t.done();
        b.program("flush", 1, Arc::new(Flusher::new()), None)
            .unwrap();
        explore(&b.build().unwrap(), Bounds::default())
    };
    let v = run(true);
    assert_eq!(v.conclusion(), Conclusion::Ok, "{:?}", v.violation);
    let v = run(false);
    assert_eq!(
        v.violation.map(|v| v.kind),
        Some(ViolationKind::FreedFrameMapped)
    );
    // The trace shows the program's high-level operation.
    let t = v.trace.unwrap();
    assert!(t
        .steps
        .iter()
        .any(|s| s.origin.as_deref() == Some("flush after zap")));
}

#[test]
fn the_builder_refuses_what_cannot_run() {
    let mut b = builder("refusals", 2, 1);
    assert!(matches!(
        b.thread("t", 2),
        Err(BuildError::NoSuchCpu { cpu: 2, cpus: 2 })
    ));
    let mut t = b.thread("t", 0).unwrap();
    assert_eq!(
        t.store(Pa(L3 + 4), 0),
        Err(BuildError::Unaligned(Pa(L3 + 4)))
    );
    let range: tlbcheck_hw::cpu::tlbi::Tlbi = "RVALE1IS".parse().unwrap();
    assert_eq!(t.tlbi_exists(range), Err(BuildError::NoTlbiRange(range)));
    let (ins, _, _) = tlbi_page(true, 0);
    assert!(matches!(
        t.tlbi(
            ins,
            tlbcheck_hw::cpu::tlbi::TlbiOperand::None,
            String::new()
        ),
        Err(BuildError::Operand(..))
    ));
    let hinted = tlbcheck_hw::cpu::tlbi::TlbiOperand::Va {
        asid: 1,
        ttl: Some(tlbcheck_hw::cpu::tlbi::TtlHint {
            granule: tlbcheck_hw::addr::Granule::K4,
            level: 3,
        }),
        page: 0,
    };
    assert_eq!(
        t.tlbi(ins, hinted, String::new()),
        Err(BuildError::NoTtl(ins))
    );
    assert_eq!(t.free(Pfn(0x5)), Err(BuildError::NotInPool(Pfn(0x5))));
    assert!(matches!(
        t.sync(SyncOp::Lock(0)),
        Err(BuildError::NoSuchSync { what: "lock", .. })
    ));
    assert!(matches!(
        t.sync(SyncOp::SeqRead(1)),
        Err(BuildError::NoSuchSync {
            what: "sequence count",
            ..
        })
    ));
    assert_eq!(
        t.rely(Rely::ReadOnly { ctx: 3, va: Va(0) }),
        Err(BuildError::NoSuchContext(3))
    );
    assert_eq!(t.device_access(0, Va(0), true), Err(BuildError::NoSmmu));
    assert_eq!(
        t.rely(Rely::CurrentConfig { dev: 0 }),
        Err(BuildError::NoSmmu)
    );
    // Nothing refused was emitted.
    assert!(t.is_empty());
    t.done();
    let mut many = ModelBuilder::new("many", machine(true, 1, 1), Features::default());
    for i in 0..32 {
        many.thread(format!("t{i}"), 0).unwrap().done();
    }
    assert_eq!(
        many.thread("one too many", 0).err(),
        Some(BuildError::TooManyThreads)
    );
}

/// One random op of a small model over pages 0..3 of [`builder`]'s
/// machine: what the differential test below draws from.
#[derive(Clone, Debug)]
enum RandomOp {
    Store { page: u64, valid: bool },
    Dsb(u8),
    Tlbi { page: u64, leaf: bool },
    Free(u64),
    Lock(bool),
    Rcu(u8),
}

fn random_op() -> impl proptest::strategy::Strategy<Value = RandomOp> {
    use proptest::prelude::*;
    prop_oneof![
        (0..3u64, any::<bool>()).prop_map(|(page, valid)| RandomOp::Store { page, valid }),
        (0..3u8).prop_map(RandomOp::Dsb),
        (0..3u64, any::<bool>()).prop_map(|(page, leaf)| RandomOp::Tlbi { page, leaf }),
        (0..3u64).prop_map(RandomOp::Free),
        any::<bool>().prop_map(RandomOp::Lock),
        (0..3u8).prop_map(RandomOp::Rcu),
    ]
}

fn random_model(threads: &[Vec<RandomOp>]) -> Model {
    let mut b = builder("random", threads.len() as u8, 3);
    b.locks(1);
    for (cpu, ops) in threads.iter().enumerate() {
        let mut t = b.thread(format!("t{cpu}"), cpu as u8).unwrap();
        for op in ops {
            match *op {
                RandomOp::Store { page, valid } => {
                    let v = if valid {
                        tlbcheck_hw::vmsa::desc::s1_page(DATA + page * 0x1000, true, true, false)
                    } else {
                        0
                    };
                    t.store(Pa(L3 + 8 * page), v).unwrap();
                }
                RandomOp::Dsb(k) => t.dsb([Dsb::Ishst, Dsb::Ish, Dsb::Nsh][k as usize]),
                RandomOp::Tlbi { page, leaf } => {
                    let (ins, op, text) = tlbi_page(leaf, page);
                    t.tlbi(ins, op, text).unwrap();
                }
                RandomOp::Free(page) => t.free(Pfn::of(Pa(DATA + page * 0x1000))).unwrap(),
                RandomOp::Lock(take) => t
                    .sync(if take {
                        SyncOp::Lock(0)
                    } else {
                        SyncOp::Unlock(0)
                    })
                    .unwrap(),
                RandomOp::Rcu(k) => t
                    .sync(
                        [
                            SyncOp::RcuReadLock,
                            SyncOp::RcuReadUnlock,
                            SyncOp::CallRcuFree(Pfn::of(Pa(DATA))),
                        ][k as usize],
                    )
                    .unwrap(),
            }
        }
        t.done();
    }
    b.build().unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Sleep sets change how many transitions run, nothing else: the same
    /// states, the same verdict, a counterexample of the same length.
    #[test]
    fn sleep_sets_agree_with_full_exploration(
        threads in proptest::collection::vec(proptest::collection::vec(random_op(), 1..6), 2..4)
    ) {
        let m = random_model(&threads);
        let full = explore(&m, Bounds { sleep_sets: false, ..Bounds::default() });
        let reduced = explore(&m, Bounds::default());
        proptest::prop_assert_eq!(full.conclusion(), reduced.conclusion());
        proptest::prop_assert!(reduced.stats.transitions <= full.stats.transitions || full.violation.is_some());
        match (&full.trace, &reduced.trace) {
            (Some(a), Some(b)) => proptest::prop_assert_eq!(a.steps.len(), b.steps.len()),
            (None, None) => proptest::prop_assert_eq!(full.stats.states, reduced.stats.states),
            _ => proptest::prop_assert!(false, "one found a violation, the other not"),
        }
    }
}
