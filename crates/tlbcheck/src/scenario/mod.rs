//! The scenario language: [`lex`] → [`parse`] → [`ast`] → [`lower`] →
//! checker [`Model`]. The grammar and an example of every construct are in
//! docs/scenario-format.md.

pub mod ast;
pub mod lex;
pub mod lower;
pub mod parse;

use crate::error::ScenarioError;
use ast::{Expect, Scenario};
use tlbcheck_checker::model::{Bounds, Model};

/// File extension of scenario files (`check DIR` looks for these).
pub const EXTENSION: &str = "tlb";

/// A scenario ready to check: the parsed text, the model and its bounds.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The file it came from (for reports).
    pub file: String,
    /// Its source text (kept so a counterexample file can rebuild the model).
    pub source: String,
    /// The parsed scenario (SMMU features and other declarations the
    /// checker does not use yet stay available here).
    pub scenario: Scenario,
    /// The model.
    pub model: Model,
    /// Bounds from the scenario (before command-line overrides).
    pub bounds: Bounds,
    /// What the scenario writes that the architecture accepts with a
    /// meaning its author probably did not intend (a malformed TLBI
    /// operand, an illegal SMMU command), located.
    pub warnings: Vec<ScenarioError>,
}

impl Loaded {
    /// What the scenario expects.
    pub fn expect(&self) -> Expect {
        self.scenario.expect.value
    }
}

/// Parses `source` (named `file` in messages) without lowering it.
pub fn parse_str(file: &str, source: &str) -> Result<Scenario, ScenarioError> {
    parse::parse(source).map_err(|e| ScenarioError::new(file, source, e))
}

/// Parses and lowers a scenario. Either everything succeeds or nothing is
/// built: the error names file, line and column.
pub fn load(file: &str, source: &str) -> Result<Loaded, ScenarioError> {
    let scenario = parse_str(file, source)?;
    let (model, bounds, warnings) =
        lower::lower_with_warnings(&scenario).map_err(|e| ScenarioError::new(file, source, e))?;
    let warnings = warnings
        .into_iter()
        .map(|w| ScenarioError::new(file, source, w))
        .collect();
    Ok(Loaded {
        file: file.to_string(),
        source: source.to_string(),
        scenario,
        model,
        bounds,
        warnings,
    })
}
