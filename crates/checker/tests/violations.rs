//! One minimal model per violation, each beside its fixed twin: the buggy
//! one must produce the named violation, the fixed one must explore clean.

mod common;

use common::*;
use tlbcheck_checker::explore::{explore, Coverage};
use tlbcheck_checker::model::{Bounds, Model, Thread};
use tlbcheck_checker::op::{Op, Rely};
use tlbcheck_checker::random::{random_walks, shrink};
use tlbcheck_checker::sync::SyncOp;
use tlbcheck_checker::trace::run;
use tlbcheck_checker::violation::ViolationKind;
use tlbcheck_hw::addr::{Pa, Va};
use tlbcheck_hw::machine::Dsb;
use tlbcheck_hw::mem::Pfn;
use tlbcheck_hw::tlb::{AsidSel, InvalScope, Regime, StageSel};
use tlbcheck_hw::vmsa::desc::s1_page;

fn check(m: &Model) -> Option<ViolationKind> {
    let v = explore(m, Bounds::default());
    if v.violation.is_none() {
        assert_eq!(
            v.coverage,
            Coverage::Complete,
            "clean runs must be complete"
        );
    }
    v.violation.map(|v| v.kind)
}

#[test]
fn freed_frame_mapped_when_the_data_page_is_freed_before_the_dsb() {
    let buggy = vec![
        store(L3, 0),
        dsb(Dsb::Ishst),
        tlbi_va(true),
        free(DATA),
        dsb(Dsb::Ish),
    ];
    let fixed = vec![
        store(L3, 0),
        dsb(Dsb::Ishst),
        tlbi_va(true),
        dsb(Dsb::Ish),
        free(DATA),
    ];
    assert_eq!(
        check(&model("b", true, vec![thread(buggy)])),
        Some(ViolationKind::FreedFrameMapped)
    );
    assert_eq!(check(&model("f", true, vec![thread(fixed)])), None);
}

#[test]
fn walk_cache_uaf_when_a_table_is_freed_after_a_leaf_only_tlbi() {
    let ops = |leaf_only| {
        vec![
            store(L2, 0),
            dsb(Dsb::Ishst),
            tlbi_va(leaf_only),
            dsb(Dsb::Ish),
            free(L3),
        ]
    };
    let v = explore(
        &model("b", true, vec![thread(ops(true))]),
        Bounds::default(),
    );
    let viol = v.violation.expect("violation");
    assert_eq!(viol.kind, ViolationKind::WalkCacheUaf);
    assert_eq!(viol.entry.unwrap().output().flat_pa(), Pa(L3));
    let text = v.trace.unwrap().render_text();
    assert!(
        text.contains("last-level (leaf-only) form keeps walk-cache entries"),
        "{text}"
    );
    assert_eq!(check(&model("f", true, vec![thread(ops(false))])), None);
}

#[test]
fn stale_write_when_write_protection_is_relied_on_before_completion() {
    let ro = s1_page(DATA, false, true, false);
    let rely = Op::Rely(Rely::ReadOnly { ctx: 0, va: Va(0) });
    let buggy = vec![store(L3, ro), dsb(Dsb::Ishst), tlbi_va(true), rely.clone()];
    let fixed = vec![
        store(L3, ro),
        dsb(Dsb::Ishst),
        tlbi_va(true),
        dsb(Dsb::Ish),
        rely,
    ];
    assert_eq!(
        check(&model("b", true, vec![thread(buggy)])),
        Some(ViolationKind::StaleWrite)
    );
    assert_eq!(check(&model("f", true, vec![thread(fixed)])), None);
}

#[test]
fn fault_livelock_when_an_upgrade_skips_the_tlbi() {
    let rw = s1_page(DATA, true, true, false);
    let retry = Op::Rely(Rely::RetrySucceeds {
        ctx: 0,
        va: Va(0),
        write: true,
    });
    let buggy = vec![store(L3, rw), dsb(Dsb::Ish), retry.clone()];
    let fixed = vec![
        store(L3, rw),
        dsb(Dsb::Ishst),
        tlbi_va(true),
        dsb(Dsb::Ish),
        retry,
    ];
    assert_eq!(
        check(&model("b", false, vec![thread(buggy)])),
        Some(ViolationKind::FaultLivelock)
    );
    assert_eq!(check(&model("f", false, vec![thread(fixed)])), None);
}

#[test]
fn isolation_when_a_guest_thread_invalidates_another_vmid() {
    let vmall = |vmid| Op::Tlbi {
        text: format!("vmalls12e1is (VMID {vmid})"),
        ins: tlbcheck_hw::cpu::tlbi::Tlbi::new(tlbcheck_hw::cpu::tlbi::TlbiOp::VMALLS12E1, true),
        raw: None,
        scope: InvalScope {
            regime: Regime::El10,
            stages: StageSel::ALL,
            vmid: Some(vmid),
            asid: AsidSel::Any,
            range: None,
            granule: None,
            leaf_only: false,
            ttl_level: None,
        },
        broadcast: true,
    };
    let guest = |vmid| Thread {
        owns_vmids: Some(vec![1]),
        ..thread(vec![vmall(vmid), dsb(Dsb::Ish)])
    };
    assert_eq!(
        check(&model("b", true, vec![guest(2)])),
        Some(ViolationKind::Isolation)
    );
    assert_eq!(check(&model("f", true, vec![guest(1)])), None);
}

/// RCU: the table may be freed as soon as the grace period ends, which can
/// be before a TLBI issued later completes (seed 003, Will Deacon's point).
#[test]
fn rcu_deferred_free_needs_the_tlbi_before_the_grace_period() {
    let call = Op::Sync(SyncOp::CallRcuFree(Pfn::of(Pa(L3))));
    let buggy = vec![
        store(L2, 0),
        dsb(Dsb::Ishst),
        call.clone(),
        tlbi_va(false),
        dsb(Dsb::Ish),
    ];
    let fixed = vec![
        store(L2, 0),
        dsb(Dsb::Ishst),
        tlbi_va(false),
        dsb(Dsb::Ish),
        call,
    ];
    assert_eq!(
        check(&model("b", true, vec![thread(buggy)])),
        Some(ViolationKind::WalkCacheUaf)
    );
    assert_eq!(check(&model("f", true, vec![thread(fixed)])), None);
}

/// A reader inside an RCU critical section holds the grace period back.
#[test]
fn rcu_readers_delay_callbacks() {
    let reader = Thread {
        name: "r".into(),
        cpu: 1,
        program: script(vec![
            Op::Sync(SyncOp::RcuReadLock),
            Op::Sync(SyncOp::RcuReadUnlock),
        ]),
        owns_vmids: None,
    };
    let writer = thread(vec![
        store(L2, 0),
        dsb(Dsb::Ishst),
        tlbi_va(false),
        dsb(Dsb::Ish),
        Op::Sync(SyncOp::SynchronizeRcu),
        free(L3),
    ]);
    let m = model("sync", true, vec![writer, reader]);
    let v = explore(&m, Bounds::default());
    assert!(v.violation.is_none());
    assert_eq!(v.coverage, Coverage::Complete);
    assert!(
        v.stats.states > 10,
        "interleavings of two threads: {}",
        v.stats.states
    );
}

#[test]
fn exploration_is_deterministic() {
    let ops = vec![
        store(L2, 0),
        dsb(Dsb::Ishst),
        tlbi_va(true),
        dsb(Dsb::Ish),
        free(L3),
    ];
    let reader = Thread {
        name: "r".into(),
        cpu: 1,
        program: script(vec![
            Op::Sync(SyncOp::RcuReadLock),
            Op::Sync(SyncOp::RcuReadUnlock),
        ]),
        owns_vmids: None,
    };
    let m = model("det", true, vec![thread(ops), reader]);
    let a = explore(&m, Bounds::default());
    let b = explore(&m, Bounds::default());
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.stats.states, b.stats.states);
    let json = serde_json::to_string(a.trace.as_ref().unwrap()).unwrap();
    let back: tlbcheck_checker::Trace = serde_json::from_str(&json).unwrap();
    let replayed = run(&m, &back.choices, false, true).unwrap();
    assert_eq!(replayed.violation, a.violation);
}

/// A random walk that wanders through 40 irrelevant steps before failing
/// shrinks to the five steps that matter.
#[test]
fn shrinking_really_shrinks() {
    let noise = Thread {
        name: "noise".into(),
        cpu: 1,
        program: script((0..40).map(|_| dsb(Dsb::Ishst)).collect()),
        owns_vmids: None,
    };
    let buggy = thread(vec![
        store(L2, 0),
        dsb(Dsb::Ishst),
        tlbi_va(true),
        dsb(Dsb::Ish),
        free(L3),
    ]);
    let m = model("shrink", true, vec![noise, buggy]);
    // Build a 45-step failing path: all the noise first.
    let mut path: Vec<_> = (0..40)
        .map(|_| tlbcheck_checker::Choice::Thread(0))
        .collect();
    path.extend((0..5).map(|_| tlbcheck_checker::Choice::Thread(1)));
    let long = run(&m, &path, false, false).unwrap();
    assert_eq!(long.choices.len(), 45);
    assert_eq!(long.violation.unwrap().kind, ViolationKind::WalkCacheUaf);
    let small = shrink(&m, &path, ViolationKind::WalkCacheUaf);
    assert_eq!(small.len(), 5, "{small:?}");
    // Random mode finds and shrinks it too, the same way for the same seed.
    let a = random_walks(&m, 7, 10, 100);
    let b = random_walks(&m, 7, 10, 100);
    assert_eq!(a.trace.as_ref().unwrap().choices.len(), 5);
    assert_eq!(a.trace, b.trace);
}

/// DSB ISHST does not complete a TLBI: the report must say the TLBI was
/// never completed, not that its entry was refilled.
#[test]
fn a_store_barrier_after_the_tlbi_is_not_its_completion() {
    let ops = vec![
        store(L3, 0),
        dsb(Dsb::Ishst),
        tlbi_va(true),
        dsb(Dsb::Ishst),
        free(DATA),
    ];
    let v = explore(&model("ishst", true, vec![thread(ops)]), Bounds::default());
    assert_eq!(
        v.violation.as_ref().map(|v| v.kind),
        Some(ViolationKind::FreedFrameMapped)
    );
    let blame = v.trace.unwrap().should_have_removed.unwrap();
    assert!(blame.ends_with("no DSB completed it"), "{blame}");
}

/// A clean random run says it sampled, not that it proved anything.
#[test]
fn random_mode_reports_a_sample_not_a_proof() {
    let ops = vec![
        store(L3, 0),
        dsb(Dsb::Ishst),
        tlbi_va(true),
        dsb(Dsb::Ish),
        free(DATA),
    ];
    let v = random_walks(&model("clean", true, vec![thread(ops)]), 3, 4, 50);
    assert!(v.violation.is_none());
    assert_eq!(v.coverage, Coverage::RandomWalks(4));
    assert_eq!(v.stats.states, 4 * 5, "4 walks of 5 steps");
    assert!(
        v.coverage_statement().contains("not a proof"),
        "{}",
        v.coverage_statement()
    );
}
