//! Explorer throughput (issue 4, item 7): states per second and bytes per
//! stored state on three clean models of growing size (k threads on k CPUs,
//! each unmapping its own page). Targets: >= 1 M states/s per core and
//! <= 256 bytes per stored state.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use tlbcheck_checker::explore::{explore, peak_rss};
use tlbcheck_checker::model::Bounds;

fn rss_now() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn states_per_second(c: &mut Criterion) {
    let mut g = c.benchmark_group("explore");
    g.sample_size(10);
    for k in [2u8, 3, 4] {
        let m = common::parallel_unmaps(k);
        let before = rss_now();
        let v = explore(&m, Bounds::default());
        let grown = peak_rss().unwrap_or(0).saturating_sub(before);
        println!(
            "parallel-unmaps-{k}: {} states, {} transitions, ~{} bytes per stored state (peak RSS growth / states)",
            v.stats.states,
            v.stats.transitions,
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
