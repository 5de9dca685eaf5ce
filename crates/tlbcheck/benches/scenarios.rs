//! Parse + lower + check of every example scenario, in process: the part of
//! a `tlbcheck check FILE` run that is ours (process start-up excluded).
//! Before criterion measures, one run of each prints its verdict, the
//! states it stored and its time, marking the scenarios that run the
//! protocols layer (`kernel VERSION` or `kvm VERSION`): the figures the
//! README quotes.

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::{Path, PathBuf};
use std::time::Instant;
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

/// `DIR/STEM` of an example: stems repeat across the corpus directories.
fn name(f: &Path) -> String {
    let dir = f.parent().and_then(Path::file_name).unwrap_or_default();
    format!(
        "{}/{}",
        dir.to_string_lossy(),
        f.file_stem().unwrap_or_default().to_string_lossy()
    )
}

/// Which protocol of the protocols layer a scenario runs: `kernel` (the
/// memory manager, a `kernel` statement), `kvm` (the stage-2 manager, a
/// `kvm` statement) or none, `low` (comments start with `#`).
fn level(src: &str) -> &'static str {
    let has = |kw: &str| src.lines().any(|l| l.split_whitespace().next() == Some(kw));
    if has("kernel") {
        "kernel"
    } else if has("kvm") {
        "kvm"
    } else {
        "low"
    }
}

fn scenarios(c: &mut Criterion) {
    let mut files = Vec::new();
    corpus(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples"),
        &mut files,
    );
    files.sort();
    let files: Vec<(PathBuf, String)> = files
        .into_iter()
        .map(|f| {
            let src = std::fs::read_to_string(&f).expect("readable scenario");
            (f, src)
        })
        .collect();
    println!(
        "{:<48} {:>6} {:>8} {:>10}  found",
        "scenario", "level", "states", "time"
    );
    for (f, src) in &files {
        let file = f.display().to_string();
        let t = Instant::now();
        let loaded = tlbcheck::load(&file, src).expect("example loads");
        let out = check(&loaded, &Options::default());
        let dt = t.elapsed();
        assert!(out.ok(), "{file}: expectation not met");
        println!(
            "{:<48} {:>6} {:>8} {:>8.2}ms  {}",
            name(f),
            level(src),
            out.verdict.stats.states,
            dt.as_secs_f64() * 1e3,
            out.found,
        );
    }
    let mut group = c.benchmark_group("scenario");
    for (f, src) in &files {
        let file = f.display().to_string();
        group.bench_function(name(f).replace('/', "-"), |b| {
            b.iter(|| {
                let loaded = tlbcheck::load(&file, src).expect("example loads");
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
