//! Explorer throughput and memory: states per second and bytes per stored
//! state on clean models of growing size (k threads on k CPUs, each
//! unmapping its own page: store, DSB ISHST, TLBI VALE1IS, DSB ISH, free).
//! Targets: >= 500 k states/s per core, <= 128 bytes per stored state.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use tlbcheck_checker::explore::{explore, peak_rss, rss_now};
use tlbcheck_checker::model::Bounds;

fn states_per_second(c: &mut Criterion) {
    let mut g = c.benchmark_group("explore");
    g.sample_size(10);
    for k in [2u8, 3, 4, 5, 6] {
        let m = common::parallel_unmaps(k);
        let before = rss_now();
        let v = explore(&m, Bounds::default());
        let grown = peak_rss().unwrap_or(0).saturating_sub(before);
        let full = explore(
            &m,
            Bounds {
                sleep_sets: false,
                ..Bounds::default()
            },
        );
        println!(
            "parallel-unmaps-{k}: {} states, {} transitions ({} without sleep sets), ~{} bytes per stored state (peak RSS growth / states)",
            v.stats.states,
            v.stats.transitions,
            full.stats.transitions,
            grown / v.stats.states.max(1)
        );
        g.throughput(Throughput::Elements(v.stats.states));
        g.bench_with_input(BenchmarkId::new("parallel-unmaps", k), &m, |b, m| {
            b.iter(|| black_box(explore(m, Bounds::default())))
        });
    }
    g.finish();
}

criterion_group!(benches, states_per_second);
criterion_main!(benches);
