//! TLB benchmarks (issue 2, item 7):
//! - `realistic/hit`: a lookup that hits in the realistic TLB (target: at
//!   least 50 M lookups/s on one core, i.e. at most 20 ns each);
//! - `mayhold/tlbi-*`: removing entries from a populated may-hold set by VA,
//!   by range and by ASID, at several set sizes: the time must follow the
//!   entries removed, not the size of the set. (In the explorer a set shared
//!   with its parent state is copied once on its first change; that copy is
//!   the price of O(1) state clones and is not measured here.)

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use tlbcheck_hw::addr::{AddrRange, Granule, InputAddr, InputRange, Ipa, Va};
use tlbcheck_hw::tlb::{
    AsidSel, InvalScope, Mapping, MayHold, Perms, Provenance, RealisticTlb, Regime, Stage,
    StageSel, TlbEntry,
};

fn page(asid: u16, input: u64) -> TlbEntry {
    let map = Mapping::S1 {
        input: Va(input),
        output: Ipa(0x8000_0000 + input),
    };
    TlbEntry::leaf(map, 3, Granule::K4)
        .tagged(Regime::El10, 0, Some(asid))
        .with_perms(Perms {
            read: true,
            write: true,
            ..Perms::default()
        })
}

fn realistic_hit(c: &mut Criterion) {
    let mut tlb = RealisticTlb::new(64, 4);
    let pages: Vec<u64> = (0..128u64).map(|i| i << 12).collect();
    for &va in &pages {
        tlb.insert(page(1, va));
    }
    let mut g = c.benchmark_group("realistic");
    g.throughput(Throughput::Elements(pages.len() as u64));
    g.bench_function("hit", |b| {
        b.iter(|| {
            for &va in &pages {
                let va = InputAddr::Va(Va(va + 0x10));
                black_box(tlb.lookup(Regime::El10, 0, Stage::S1, Some(1), black_box(va)));
            }
        })
    });
    g.finish();
}

/// A may-hold set of `n` pages spread over 16 ASIDs.
fn populated(n: u64) -> MayHold {
    let mut m = MayHold::new();
    for i in 0..n {
        m.insert(
            page((i % 16) as u16, (i / 16) << 12),
            Provenance { step: 0, source: 0 },
        );
    }
    m
}

fn scope(asid: AsidSel, range: Option<AddrRange>) -> InvalScope {
    let range = range.map(InputRange::Va);
    InvalScope {
        regime: Regime::El10,
        stages: StageSel::STAGE1,
        vmid: Some(0),
        asid,
        range,
        granule: None,
        leaf_only: true,
        ttl_level: None,
    }
}

fn mayhold_tlbi(c: &mut Criterion) {
    let mut g = c.benchmark_group("mayhold");
    for n in [1_000u64, 10_000, 100_000] {
        // Each iteration gets its own, unshared set: a clone would share the
        // map copy-on-write and time a full copy instead of the removal.
        // By VA: removes exactly one entry whatever the set size.
        let by_va = scope(
            AsidSel::Only {
                asid: 3,
                with_global: true,
            },
            Some(AddrRange::from_len(5 << 12, 0x1000)),
        );
        g.bench_with_input(BenchmarkId::new("tlbi-va-removes-1", n), &n, |b, _| {
            b.iter_batched_ref(
                || populated(n),
                |m| black_box(m.invalidate(&by_va)),
                criterion::BatchSize::LargeInput,
            )
        });
        // By range: 32 pages of one ASID.
        let by_range = scope(
            AsidSel::Only {
                asid: 3,
                with_global: true,
            },
            Some(AddrRange::from_len(0, 32 << 12)),
        );
        g.bench_with_input(BenchmarkId::new("tlbi-range-removes-32", n), &n, |b, _| {
            b.iter_batched_ref(
                || populated(n),
                |m| black_box(m.invalidate(&by_range)),
                criterion::BatchSize::LargeInput,
            )
        });
        // By ASID: removes n/16 entries.
        let by_asid = scope(
            AsidSel::Only {
                asid: 3,
                with_global: false,
            },
            None,
        );
        g.bench_with_input(BenchmarkId::new("tlbi-asid-removes-n/16", n), &n, |b, _| {
            b.iter_batched_ref(
                || populated(n),
                |m| black_box(m.invalidate(&by_asid)),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, realistic_hit, mayhold_tlbi);
criterion_main!(benches);
