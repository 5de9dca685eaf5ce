//! Property: on random operation sequences, the realistic TLB never holds
//! (and so never returns) an entry outside the may-hold set (issue 2, item 4).

use proptest::prelude::*;
use tlbcheck_hw::addr::{AddrRange, Granule, InputRange, Pa, Va};
use tlbcheck_hw::machine::{Dsb, Machine};
use tlbcheck_hw::mem::{Pfn, PhysMem};
use tlbcheck_hw::testing::{chain4k, s1_ctx};
use tlbcheck_hw::tlb::{Access, AsidSel, InvalScope, RealisticTlb, Regime, StageSel};
use tlbcheck_hw::vmsa::desc::{s1_block, s1_page, table};
use tlbcheck_hw::vmsa::Context;

const L0: u64 = 0x10_0000;
const L1: u64 = 0x10_1000;
const L2: u64 = 0x10_2000;
const L3: u64 = 0x10_3000;
const L3B: u64 = 0x10_4000;

#[derive(Clone, Debug)]
enum Step {
    Store {
        slot: u64,
        value: u64,
    },
    Dsb(Dsb),
    Tlbi {
        va: u64,
        leaf_only: bool,
        by_asid: bool,
        broadcast: bool,
    },
    Access {
        va: u64,
        write: bool,
    },
}

fn slots() -> Vec<u64> {
    vec![L0, L1, L2, L2 + 8, L3, L3 + 8, L3 + 16, L3B, L3B + 8]
}

fn values() -> Vec<u64> {
    vec![
        0,
        table(L1),
        table(L2),
        table(L3),
        table(L3B),
        s1_page(0x50_0000, true, false, false),
        s1_page(0x51_0000, false, false, false),
        s1_page(0x52_0000, true, false, true),
        s1_block(0x60_0000, true, false, false),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let vas = prop::sample::select(vec![
        0u64,
        0x1000,
        0x2000,
        0x20_0000,
        0x20_1000,
        0x4000_0000,
    ]);
    prop_oneof![
        (
            prop::sample::select(slots()),
            prop::sample::select(values())
        )
            .prop_map(|(slot, value)| Step::Store { slot, value }),
        prop::sample::select(vec![Dsb::Ish, Dsb::Ishst, Dsb::Nsh, Dsb::Nshst]).prop_map(Step::Dsb),
        (vas.clone(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(va, leaf_only, by_asid, broadcast)| Step::Tlbi {
                va,
                leaf_only,
                by_asid,
                broadcast
            }
        ),
        (vas, any::<bool>()).prop_map(|(va, write)| Step::Access { va, write }),
    ]
}

fn initial() -> (Machine, Context) {
    let mut mem = PhysMem::new(Pfn(0x100), 16);
    assert_eq!(chain4k(&mut mem, L0), L3);
    mem.write(Pa(L3), s1_page(0x50_0000, true, false, false))
        .unwrap();
    let ctx = s1_ctx(Granule::K4, L0, 1, 0);
    (Machine::new(mem, 2, vec![ctx]), ctx)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn realistic_tlb_stays_within_the_may_hold_set(steps in prop::collection::vec(step(), 1..40)) {
        let (mut m, ctx) = initial();
        let mut real = [RealisticTlb::new(4, 2), RealisticTlb::new(4, 2)];
        for (n, s) in steps.iter().enumerate() {
            let step = n as u32 + 1;
            match *s {
                Step::Store { slot, value } => m.store(step, 0, Pa(slot), value).unwrap(),
                Step::Dsb(kind) => {
                    for done in m.dsb(step, 0, kind) {
                        for (cpu, r) in real.iter_mut().enumerate() {
                            if done.tlbi.broadcast || cpu == 0 {
                                r.invalidate(&done.tlbi.scope);
                            }
                        }
                    }
                }
                Step::Tlbi { va, leaf_only, by_asid, broadcast } => {
                    let scope = InvalScope {
                        regime: Regime::El10,
                        stages: StageSel::STAGE1,
                        vmid: Some(0),
                        asid: if by_asid { AsidSel::Only { asid: 1, with_global: true } } else { AsidSel::Any },
                        range: Some(InputRange::Va(AddrRange::from_len(va, 0x1000))),
                        granule: None,
                        leaf_only,
                        ttl_level: None,
                    };
                    m.tlbi(step, 0, scope, broadcast);
                }
                Step::Access { va, write } => {
                    // Both CPUs access, so the second CPU's TLB fills too.
                    for r in real.iter_mut() {
                        let _ = r.access(&m.mem, &ctx, Va(va), Access { write, user: false });
                    }
                }
            }
            for (cpu, r) in real.iter().enumerate() {
                for e in r.entries() {
                    prop_assert!(
                        m.cpus[cpu].tlb.contains(e),
                        "step {}: CPU {} realistic TLB holds {} outside its may-hold set", step, cpu, e
                    );
                }
            }
        }
    }
}
