//! The explorer's scale targets (issue 9): parse + lower + check of the
//! scenarios in benches/scale/, in process. Before timing a scenario the
//! bench checks it once and prints its states, transitions and states/s.
//!
//! Targets: two threads x 12 in-flight TLBIs in under a second, five
//! threads x 6 unmap steps within 4 GB, 4 000 TLBIs in flight in memory
//! linear in the count.

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::Path;
use tlbcheck::check::{check, Options};

/// The scenarios benchmarked, by file stem.
const SCENARIOS: &[&str] = &[
    "two-threads-4-tlbis",
    "two-threads-8-tlbis",
    "two-threads-12-tlbis",
    "unmap-3x6",
    "unmap-4x6",
    "unmap-5x6",
    "tlbis-in-flight-1000",
    "tlbis-in-flight-4000",
];

/// Checks one scenario, asserts its expectation and prints its size and speed.
fn report(stem: &str, file: &str, src: &str) {
    let loaded = tlbcheck::load(file, src).expect("scale scenario loads");
    let out = check(&loaded, &Options::default());
    assert!(out.ok(), "{stem}: expected ok, found {}", out.found);
    let s = &out.verdict.stats;
    println!(
        "{stem}: {} states, {} transitions, {:.0} states/s ({})",
        s.states,
        s.transitions,
        s.states as f64 / s.elapsed.as_secs_f64().max(1e-9),
        out.verdict.coverage_statement(),
    );
}

fn scale(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/scale");
    let mut group = c.benchmark_group("scale");
    group.sample_size(10);
    for &stem in SCENARIOS {
        let path = dir.join(format!("{stem}.tlb"));
        let file = path.display().to_string();
        let src = std::fs::read_to_string(&path).expect("readable scenario");
        // States and states/s of one check, printed when criterion first
        // runs this benchmark (not at all when a filter leaves it out).
        let mut first = true;
        group.bench_function(stem, |b| {
            if std::mem::take(&mut first) {
                report(stem, &file, &src);
            }
            b.iter(|| {
                let loaded = tlbcheck::load(&file, &src).expect("scale scenario loads");
                check(&loaded, &Options::default()).verdict.stats.states
            })
        });
    }
    group.finish();
}

criterion_group!(benches, scale);
criterion_main!(benches);
