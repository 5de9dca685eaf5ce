//! The cost run of each bundled S-scenario (`examples/cost/`): parse,
//! lower, one run counted by kind and its estimate. These are single runs,
//! not explorations; the verdicts are the corpus benchmark's business.

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::Path;
use tlbcheck::cost::variant;
use tlbcheck::load;
use tlbcheck_checker::cost::CostTable;

fn cost_runs(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/cost");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/cost exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "tlb"))
        .collect();
    files.sort();
    let table = CostTable::default();
    for f in files {
        let src = std::fs::read_to_string(&f).expect("readable scenario");
        let name = f
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        c.bench_function(&format!("cost/{name}"), |b| {
            b.iter(|| {
                let loaded = load(&name, &src).expect("loads");
                variant(&loaded, &table, None).expect("runs")
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = cost_runs
}
criterion_main!(benches);
