//! Every scenario of the corpus in examples/ is a regression test: it must
//! load, and its `expect` line must hold under exhaustive exploration.

use std::path::{Path, PathBuf};
use tlbcheck::check::{check, Options};
use tlbcheck::scenario::ast::Expect;

fn scenarios(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            scenarios(&p, out);
        } else if p.extension().is_some_and(|x| x == "tlb") {
            out.push(p);
        }
    }
}

fn corpus() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut out = Vec::new();
    scenarios(&root, &mut out);
    out.sort();
    out
}

#[test]
fn every_example_meets_its_expectation() {
    let files = corpus();
    assert!(files.len() >= 16, "corpus too small: {files:?}");
    let mut failures = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        let loaded = match tlbcheck::load(&f.display().to_string(), &src) {
            Ok(l) => l,
            Err(e) => {
                failures.push(format!("{e}"));
                continue;
            }
        };
        let out = check(&loaded, &Options::default());
        if !out.ok() {
            failures.push(format!(
                "{}: expected {}, found {} ({})",
                f.display(),
                loaded.expect().name(),
                out.found,
                out.verdict.coverage_statement()
            ));
        }
        // A clean verdict must be a complete one: the corpus proves, it
        // does not sample.
        if loaded.expect() == Expect::Ok && out.ok() {
            assert!(
                out.verdict.coverage_statement().starts_with("complete"),
                "{}: {}",
                f.display(),
                out.verdict.coverage_statement()
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Sleep-set reduction changes no verdict and no counterexample length in
/// the corpus, and clean scenarios keep their state counts.
#[test]
fn reduction_keeps_every_verdict_and_counterexample_length() {
    for f in corpus() {
        let src = std::fs::read_to_string(&f).unwrap();
        let loaded = tlbcheck::load(&f.display().to_string(), &src).unwrap();
        let full = check(
            &loaded,
            &Options {
                no_reduction: true,
                ..Options::default()
            },
        );
        let reduced = check(&loaded, &Options::default());
        assert_eq!(full.found, reduced.found, "{}", f.display());
        let len = |o: &tlbcheck::check::Outcome| o.verdict.trace.as_ref().map(|t| t.steps.len());
        assert_eq!(len(&full), len(&reduced), "{}", f.display());
        if full.verdict.violation.is_none() {
            assert_eq!(
                full.verdict.stats.states,
                reduced.verdict.stats.states,
                "{}",
                f.display()
            );
        }
    }
}

/// Each buggy scenario sits beside its fixed twin, and the twins disagree.
#[test]
fn every_buggy_example_has_a_fixed_twin() {
    let files = corpus();
    let mut buggy = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        if let Some(stem) = name.strip_suffix("-buggy.tlb") {
            buggy += 1;
            let twin = f.with_file_name(format!("{stem}-fixed.tlb"));
            assert!(twin.exists(), "{} has no fixed twin", f.display());
            let load = |p: &Path| {
                tlbcheck::load(
                    &p.display().to_string(),
                    &std::fs::read_to_string(p).unwrap(),
                )
                .unwrap()
            };
            assert_ne!(load(f).expect(), Expect::Ok, "{}", f.display());
            assert_eq!(load(&twin).expect(), Expect::Ok, "{}", twin.display());
        }
    }
    assert!(buggy >= 8);
}
