//! `tlbcheck cost`: what each variant of a protocol costs, side by side
//! with whether it is safe.
//!
//! A variant is one scenario file. Its cost run is the run `tlbcheck
//! trace` prints (each thread to completion in declaration order), counted
//! by [`tlbcheck_checker::cost::count`]; its verdict is the scenario's
//! check against its `expect` line. The estimate comes from a
//! [`CostTable`], the defaults or one read from a JSON file.

use crate::check::{check, Options, Report};
use crate::scenario::Loaded;
use serde::Serialize;
use std::fmt::Write as _;
use tlbcheck_checker::cost::{count, CostTable, Estimate, Run};

/// One variant's cost run and verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Variant {
    /// Scenario name.
    pub name: String,
    /// Its file.
    pub file: String,
    /// The counted run.
    pub run: Run,
    /// The estimate.
    pub estimate: Estimate,
    /// The check against the scenario's expectation (`None` when not asked).
    pub verdict: Option<Report>,
}

/// Counts, estimates and (with `verdict`) checks one loaded scenario.
pub fn variant(
    loaded: &Loaded,
    table: &CostTable,
    verdict: Option<&Options>,
) -> Result<Variant, String> {
    let choices = crate::stream::choices(&loaded.model, &[]).map_err(|e| e.to_string())?;
    let run = count(&loaded.model, &choices).map_err(|e| e.to_string())?;
    let estimate = table.estimate(&run);
    let verdict = verdict.map(|o| Report::new(loaded, &check(loaded, o)));
    Ok(Variant {
        name: loaded.model.name.clone(),
        file: loaded.file.clone(),
        run,
        estimate,
        verdict,
    })
}

/// A table file: JSON with any subset of [`CostTable`]'s fields. Errors
/// carry the file, line and column.
pub fn load_table(path: &str) -> Result<CostTable, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    CostTable::from_json(&text, path)
        .map_err(|e| format!("{path}:{}:{}: {e}", e.line(), e.column()))
}

/// Microseconds with three decimals.
fn us(ns: f64) -> String {
    format!("{:.3}", ns / 1e3)
}

/// The side-by-side table: one column per variant, one row per counted
/// item, then the estimate (labelled as such, with its table) and the
/// verdict.
pub fn render(variants: &[Variant]) -> String {
    // The rows any variant has, in the counts' own order.
    let mut union = tlbcheck_checker::cost::Counts::default();
    for v in variants {
        union.add(&v.run.counts);
    }
    let rows: Vec<String> = union.rows(false).into_iter().map(|(k, _)| k).collect();
    let width = variants
        .iter()
        .map(|v| v.name.len())
        .max()
        .unwrap_or(0)
        .max(12);
    let mut out = String::new();
    let head = |out: &mut String, label: &str| {
        let _ = write!(out, "{label:<26}");
    };
    head(&mut out, "");
    for v in variants {
        let _ = write!(out, "  {:>width$}", v.name);
    }
    out.push('\n');
    for r in &rows {
        head(&mut out, r);
        for v in variants {
            let n = v
                .run
                .counts
                .rows(true)
                .into_iter()
                .find(|(k, _)| k == r)
                .map_or(0, |(_, n)| n);
            let _ = write!(out, "  {n:>width$}");
        }
        out.push('\n');
    }
    head(&mut out, "estimated time (us)");
    for v in variants {
        let _ = write!(out, "  {:>width$}", us(v.estimate.total_ns));
    }
    out.push('\n');
    head(&mut out, "run ends in");
    for v in variants {
        let s = v.run.violation.as_ref().map_or("-", |x| x.kind.name());
        let _ = write!(out, "  {s:>width$}");
    }
    out.push('\n');
    if variants.iter().any(|v| v.verdict.is_some()) {
        head(&mut out, "verdict");
        for v in variants {
            let s = v.verdict.as_ref().map_or("-".to_string(), |r| {
                format!("{}{}", r.found, if r.complete { "" } else { "?" })
            });
            let _ = write!(out, "  {s:>width$}");
        }
        out.push('\n');
    }
    let mut tables: Vec<&str> = variants.iter().map(|v| v.estimate.table.as_str()).collect();
    tables.dedup();
    let _ = writeln!(
        out,
        "\nTimes are estimates from the cost table `{}`, not measurements; counts are exact for the run.",
        tables.join("`, `")
    );
    out
}
