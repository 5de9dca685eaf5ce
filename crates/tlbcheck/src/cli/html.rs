//! `tlbcheck explain SCENARIO --html FILE`.

use crate::{bad_input, exit_code, load_file, progress_message, search_line, write_out};
use std::path::Path;
use tlbcheck::check::{check_with, Options};

/// Checks `file` and writes its counterexample (or the statement of what
/// was proved) to `html`; the exit code is `explain`'s.
pub fn explain_html(file: &Path, html: &Path, opts: &Options) -> u8 {
    let loaded = match load_file(file) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let line = search_line();
    let outcome = check_with(&loaded, opts, &mut |p| {
        line.set_message(progress_message(p))
    });
    line.finish_and_clear();
    let page = match tlbcheck::report::html::timeline(&loaded, &outcome) {
        Ok(p) => p,
        Err(e) => return bad_input(format!("rendering the report: {e}")),
    };
    if let Err(e) = std::fs::write(html, page) {
        return bad_input(super::unix::io_message(html, &e));
    }
    let steps = outcome.verdict.trace.as_ref().map_or(0, |t| t.steps.len());
    outln!(
        "wrote {} ({}: found {}, {} steps)",
        html.display(),
        loaded.model.name,
        outcome.found,
        steps
    );
    exit_code(outcome.status)
}
