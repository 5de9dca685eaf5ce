//! The explorer's state counts against a naive explorer: depth-first over
//! every path with no pruning but a full visited set, on tiny models.

mod common;

use common::*;
use std::collections::HashSet;
use tlbcheck_checker::explore::{explore, Bound, Conclusion, Coverage};
use tlbcheck_checker::model::{Bounds, Model, State, Thread};
use tlbcheck_checker::op::Op;
use tlbcheck_checker::sync::SyncOp;

fn naive(model: &Model, s: &State, depth: u32, seen: &mut HashSet<State>) {
    let mut choices = Vec::new();
    model.choices(s, &mut choices);
    for c in choices {
        let mut next = s.clone();
        assert!(
            model.step(&mut next, c, depth + 1).is_none(),
            "clean models only"
        );
        // Re-expand even already seen states: every path is walked.
        seen.insert(next.clone());
        naive(model, &next, depth + 1, seen);
    }
}

fn naive_count(model: &Model) -> usize {
    let init = model.initial();
    let mut seen = HashSet::from([init.clone()]);
    naive(model, &init, 0, &mut seen);
    seen.len()
}

#[test]
fn state_counts_match_a_naive_explorer() {
    let reader = Thread {
        name: "r".into(),
        cpu: 1,
        program: script(vec![
            Op::Sync(SyncOp::RcuReadLock),
            Op::Sync(SyncOp::RcuReadUnlock),
        ]),
        owns_vmids: None,
    };
    let rcu_writer = thread(vec![
        store(L2, 0),
        dsb(tlbcheck_hw::machine::Dsb::Ishst),
        tlbi_va(false),
        dsb(tlbcheck_hw::machine::Dsb::Ish),
        Op::Sync(SyncOp::SynchronizeRcu),
        free(L3),
    ]);
    let models = [
        parallel_unmaps(1),
        parallel_unmaps(2),
        model("rcu", true, vec![rcu_writer, reader]),
    ];
    for m in &models {
        let v = explore(m, Bounds::default());
        assert_eq!(v.coverage, Coverage::Complete, "{}", m.name);
        assert_eq!(v.stats.states as usize, naive_count(m), "{}", m.name);
    }
    // Interleavings really are explored: 2 threads of 5 steps.
    assert!(explore(&models[1], Bounds::default()).stats.states >= 6 * 6);
}

#[test]
fn bounds_are_reported() {
    let m = parallel_unmaps(3);
    let v = explore(
        &m,
        Bounds {
            max_depth: 4,
            ..Bounds::default()
        },
    );
    assert_eq!(v.coverage, Coverage::Bounded(Bound::Depth(4)));
    assert!(!v.complete(), "a bounded search is not a proof");
    assert_eq!(v.conclusion(), Conclusion::Inconclusive);
    let v = explore(
        &m,
        Bounds {
            max_states: 50,
            ..Bounds::default()
        },
    );
    assert_eq!(v.coverage, Coverage::Bounded(Bound::States(50)));
    assert!(v.coverage_statement().contains("inconclusive"));
    assert_eq!(v.conclusion(), Conclusion::Inconclusive);
    // A depth bound the search never needs is no bound at all.
    let v = explore(
        &m,
        Bounds {
            max_depth: 15,
            ..Bounds::default()
        },
    );
    assert_eq!(v.coverage, Coverage::Complete, "{}", v.coverage_statement());
}
