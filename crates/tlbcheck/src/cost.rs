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

/// A sweep: each variant's estimate at each value of one variable.
#[derive(Clone, Debug, Serialize)]
pub struct Sweep {
    /// The variable (`PAGES` for `$PAGES` in the sources).
    pub var: String,
    /// Its values, in order.
    pub values: Vec<u64>,
    /// Per variant: its name and the estimated microseconds at each value.
    pub series: Vec<(String, Vec<f64>)>,
    /// The cost table used.
    pub table: String,
}

/// Runs each source (file name, text) with every `$VAR` replaced by each
/// value in turn, and estimates each run. Sources are templates: a value
/// is pasted as decimal text wherever `$VAR` appears.
pub fn sweep(
    sources: &[(String, String)],
    var: &str,
    values: &[u64],
    table: &CostTable,
) -> Result<Sweep, String> {
    let mut series = Vec::new();
    let needle = format!("${var}");
    for (file, text) in sources {
        if !text.contains(&needle) {
            return Err(format!("{file}: `{needle}` does not appear in it"));
        }
        let mut name = String::new();
        let mut ys = Vec::new();
        for &v in values {
            let src = text.replace(&needle, &v.to_string());
            let loaded = crate::scenario::load(file, &src)
                .map_err(|e| format!("{var}={v}: {:?}", miette::Report::new(e)))?;
            if name.is_empty() {
                name = loaded.model.name.clone();
            }
            let one = variant(&loaded, table, None).map_err(|e| format!("{file}: {e}"))?;
            ys.push(one.estimate.total_ns / 1e3);
        }
        series.push((name, ys));
    }
    Ok(Sweep {
        var: var.to_string(),
        values: values.to_vec(),
        series,
        table: table.name.clone(),
    })
}

/// The sweep as text: one row per value, one column per variant (us).
pub fn render_sweep(s: &Sweep) -> String {
    let mut out = format!("{:>10}", s.var);
    for (n, _) in &s.series {
        let _ = write!(out, "  {n:>24}");
    }
    out.push('\n');
    for (i, v) in s.values.iter().enumerate() {
        let _ = write!(out, "{v:>10}");
        for (_, ys) in &s.series {
            let _ = write!(out, "  {:>24.3}", ys[i]);
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\nEstimated microseconds from the cost table `{}` (estimates, not measurements).",
        s.table
    );
    out
}

/// Draws the sweep as an SVG: estimated time against the variable, both
/// on log scales, one line per variant.
pub fn plot_svg(s: &Sweep, path: &std::path::Path) -> Result<(), String> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let xs: Vec<f64> = s.values.iter().map(|&v| v.max(1) as f64).collect();
    let ys = s.series.iter().flat_map(|(_, y)| y.iter().copied());
    let floor = 1e-3;
    let ymax = ys.clone().fold(floor, f64::max) * 2.0;
    let ymin = ys.fold(f64::INFINITY, f64::min).max(floor) / 2.0;
    let xmin = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let xmax = xs.iter().copied().fold(1.0, f64::max).max(xmin * 2.0);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("estimated time vs {} (cost table: {})", s.var, s.table),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((xmin..xmax).log_scale(), (ymin..ymax).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(s.var.as_str())
        .y_desc("estimated time (us)")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, ys)) in s.series.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = xs.iter().zip(ys).map(|(&x, &y)| (x, y.max(ymin))).collect();
        chart
            .draw_series(LineSeries::new(pts, colour.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
