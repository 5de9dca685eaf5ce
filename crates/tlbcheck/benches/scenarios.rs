//! Parse + lower + check of every example scenario, in process: the part of
//! a `tlbcheck check FILE` run that is ours (process start-up excluded).

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::{Path, PathBuf};
use tlbcheck::check::{check, Options};

fn corpus(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("examples/ exists") {
        let p = e.expect("readable entry").path();
        if p.is_dir() {
            corpus(&p, out);
        } else if p.extension().is_some_and(|x| x == "tlb") {
            out.push(p);
        }
    }
}

fn scenarios(c: &mut Criterion) {
    let mut files = Vec::new();
    corpus(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples"),
        &mut files,
    );
    files.sort();
    let mut group = c.benchmark_group("scenario");
    for f in &files {
        let src = std::fs::read_to_string(f).expect("readable scenario");
        let name = f.file_stem().unwrap().to_string_lossy().to_string();
        let file = f.display().to_string();
        group.bench_function(&name, |b| {
            b.iter(|| {
                let loaded = tlbcheck::load(&file, &src).expect("example loads");
                let out = check(&loaded, &Options::default());
                assert!(out.ok());
                out.verdict.stats.states
            })
        });
    }
    group.finish();
}

criterion_group!(benches, scenarios);
criterion_main!(benches);
