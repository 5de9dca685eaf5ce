//! The explorer's scale targets (issue 9): parse + lower + check of the
//! scenarios in benches/scale/, in process. Before timing a scenario the
//! bench checks it once and prints its states, transitions and states/s.
//!
//! The largest (two-threads-12-tlbis, unmap-4x6, tlbis-in-flight-4000) run
//! only with `TLBCHECK_BENCH_LARGE=1`, so that a plain `cargo bench` stays
//! bounded with today's explorer: the first two run out of a 4 GB address
//! space before their default bound of 2,000,000 states. Run them under a
//! memory limit and pick one with a filter, e.g. `(ulimit -v 8000000;
//! TLBCHECK_BENCH_LARGE=1 cargo bench -p tlbcheck --bench scale -- 4000)`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::Path;
use tlbcheck::check::{check, Options};

/// (file stem, large): the large ones need `TLBCHECK_BENCH_LARGE=1`.
const SCENARIOS: &[(&str, bool)] = &[
    ("two-threads-4-tlbis", false),
    ("two-threads-8-tlbis", false),
    ("two-threads-12-tlbis", true),
    ("unmap-3x6", false),
    ("unmap-4x6", true),
    ("tlbis-in-flight-1000", false),
    ("tlbis-in-flight-4000", true),
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
    let large = std::env::var("TLBCHECK_BENCH_LARGE").is_ok_and(|v| v == "1");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/scale");
    let mut group = c.benchmark_group("scale");
    group.sample_size(10);
    for &(stem, is_large) in SCENARIOS {
        if is_large && !large {
            println!("{stem}: skipped (set TLBCHECK_BENCH_LARGE=1)");
            continue;
        }
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
