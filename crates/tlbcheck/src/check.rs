//! Running a loaded scenario: exhaustive exploration (default) or seeded
//! random walks with shrinking, the judgement against the scenario's
//! expectation, and the replayable counterexample file.

use crate::scenario::ast::Expect;
use crate::scenario::Loaded;
use crate::ScenarioError;
use serde::{Deserialize, Serialize};
use tlbcheck_checker::explore::{explore_with, Bound, Conclusion, Coverage, Progress, Verdict};
use tlbcheck_checker::model::Bounds;
use tlbcheck_checker::random::random_walks;
use tlbcheck_checker::trace::{run as replay_choices, ReplayError, Trace};
use tlbcheck_checker::violation::Violation;

/// How to check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// Seed of random mode.
    pub seed: u64,
    /// Random mode: this many walks instead of exhaustive search.
    pub random: Option<u32>,
    /// Overrides the scenario's depth bound.
    pub max_depth: Option<u32>,
    /// Overrides the scenario's state bound.
    pub max_states: Option<u64>,
    /// Memory bound in bytes (default: half the machine's memory).
    #[serde(default)]
    pub max_memory: Option<u64>,
    /// Time bound in milliseconds (default: none).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Explore every transition, without sleep-set reduction.
    #[serde(default)]
    pub no_reduction: bool,
}

/// Whether a check met the scenario's expectation.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The expectation holds: the expected violation was found, or the
    /// exploration was complete and found none.
    Met,
    /// It does not: another violation, or none where one was expected
    /// after a complete exploration.
    Failed,
    /// Neither: a bound (or random sampling) stopped the search before
    /// anything was decided.
    Inconclusive,
}

/// The result of checking one scenario.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The checker's verdict.
    pub verdict: Verdict,
    /// Bounds actually used.
    pub bounds: Bounds,
    /// `ok`, `inconclusive`, or the name of the violation found.
    pub found: &'static str,
    /// Whether the expectation holds.
    pub status: Status,
}

impl Outcome {
    /// Whether the expectation holds.
    pub fn ok(&self) -> bool {
        self.status == Status::Met
    }
}

/// Longest random walk when no depth bound is given.
const RANDOM_WALK_STEPS: u32 = 10_000;

/// Checks `loaded` with `opts`.
pub fn check(loaded: &Loaded, opts: &Options) -> Outcome {
    check_with(loaded, opts, &mut |_| {})
}

/// [`check`], reporting the exploration's progress now and then.
pub fn check_with(loaded: &Loaded, opts: &Options, progress: &mut dyn FnMut(&Progress)) -> Outcome {
    let bounds = Bounds {
        max_depth: opts.max_depth.unwrap_or(loaded.bounds.max_depth),
        max_states: opts.max_states.unwrap_or(loaded.bounds.max_states),
        max_memory: opts.max_memory.unwrap_or(loaded.bounds.max_memory),
        timeout_ms: opts.timeout_ms.unwrap_or(loaded.bounds.timeout_ms),
        sleep_sets: !opts.no_reduction,
    };
    let verdict = match opts.random {
        Some(walks) => random_walks(
            &loaded.model,
            opts.seed,
            walks,
            bounds.max_depth.min(RANDOM_WALK_STEPS),
        ),
        None => explore_with(&loaded.model, bounds, progress),
    };
    let conclusion = verdict.conclusion();
    let found = match (&verdict.violation, conclusion) {
        (Some(v), _) => v.kind.name(),
        (None, Conclusion::Inconclusive) => "inconclusive",
        (None, _) => "ok",
    };
    let status = match (loaded.expect(), &verdict.violation, conclusion) {
        (Expect::Violation(k), Some(v), _) if v.kind == k => Status::Met,
        (_, Some(_), _) => Status::Failed,
        (_, None, Conclusion::Inconclusive) => Status::Inconclusive,
        (Expect::Ok, None, _) => Status::Met,
        (Expect::Violation(_), None, _) => Status::Failed,
    };
    Outcome {
        verdict,
        bounds,
        found,
        status,
    }
}

/// One line of `check --json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name.
    pub name: String,
    /// File.
    pub file: String,
    /// `ok` or the violation expected.
    pub expected: String,
    /// `ok`, `inconclusive`, or the violation found.
    pub found: String,
    /// Whether the expectation holds.
    pub ok: bool,
    /// Met, failed or inconclusive.
    pub status: Status,
    /// Whether every reachable state was explored (or a violation found).
    pub complete: bool,
    /// The bound that stopped an inconclusive search.
    pub bound: Option<Bound>,
    /// States stored (exhaustive) or walks completed (random).
    pub states: u64,
    /// Transitions executed.
    pub transitions: u64,
    /// Deepest level reached.
    pub depth: u32,
    /// The coverage statement ("complete: ...", "bounded at ...").
    pub coverage: String,
    /// Wall time of the check (parse excluded), in milliseconds.
    pub time_ms: f64,
    /// The violation found, if any.
    pub violation: Option<Violation>,
}

impl Report {
    /// The report of `outcome` for `loaded`.
    pub fn new(loaded: &Loaded, outcome: &Outcome) -> Report {
        let s = &outcome.verdict.stats;
        Report {
            name: loaded.model.name.clone(),
            file: loaded.file.clone(),
            expected: loaded.expect().name().to_string(),
            found: outcome.found.to_string(),
            ok: outcome.ok(),
            status: outcome.status,
            complete: outcome.verdict.complete(),
            bound: match outcome.verdict.coverage {
                Coverage::Bounded(b) => Some(b),
                _ => None,
            },
            states: s.states,
            transitions: s.transitions,
            depth: s.depth,
            coverage: outcome.verdict.coverage_statement(),
            time_ms: s.elapsed.as_secs_f64() * 1e3,
            violation: outcome.verdict.violation.clone(),
        }
    }
}

/// Format tag of counterexample files.
pub const TRACE_FORMAT: &str = "tlbcheck-trace/1";

/// A replayable counterexample: the scenario's source travels with the
/// choices, so replay rebuilds exactly the model that produced them even if
/// the file has changed or moved since.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TraceFile {
    /// [`TRACE_FORMAT`].
    pub format: String,
    /// The scenario file's path when the trace was made.
    pub file: String,
    /// Its source text then.
    pub source: String,
    /// How it was checked.
    pub options: Options,
    /// The coverage statement of that check.
    pub coverage: String,
    /// The counterexample; `None` when the check found no violation.
    pub trace: Option<Trace>,
}

/// Why a trace file could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayFailure {
    /// Not JSON of the right shape.
    #[error("not a tlbcheck trace file: {0}")]
    Format(String),
    /// The embedded scenario no longer loads.
    #[error("{0}")]
    Scenario(#[from] ScenarioError),
    /// A recorded choice is not enabled.
    #[error("{0}")]
    Diverged(#[from] ReplayError),
}

/// A replay's result: the re-run trace and whether it reproduces the
/// recorded violation (same kind, same step).
#[derive(Clone, Debug)]
pub struct Replayed {
    /// The scenario re-built from the file.
    pub loaded: Loaded,
    /// The re-run.
    pub trace: Trace,
    /// Whether the recorded run happened again: the same violation (kind,
    /// step, agent, entry) and no difference in [`Replayed::differences`].
    pub reproduced: bool,
    /// How the re-run differs from the recorded trace, step by step (ops,
    /// actors, cache changes, the violation and its blame); empty when
    /// they agree.
    pub differences: Vec<String>,
}

/// Replays a trace file's JSON text.
pub fn replay(json: &str) -> Result<Replayed, ReplayFailure> {
    let tf: TraceFile =
        serde_json::from_str(json).map_err(|e| ReplayFailure::Format(e.to_string()))?;
    if tf.format != TRACE_FORMAT {
        return Err(ReplayFailure::Format(format!(
            "format `{}`, expected `{TRACE_FORMAT}`",
            tf.format
        )));
    }
    let loaded = crate::scenario::load(&tf.file, &tf.source)?;
    let Some(recorded) = tf.trace else {
        return Err(ReplayFailure::Format(
            "the file holds no counterexample (its check found no violation)".to_string(),
        ));
    };
    let trace = replay_choices(&loaded.model, &recorded.choices, false, true)?;
    let differences = trace_differences(&recorded, &trace);
    let reproduced = differences.is_empty() && recorded.violation.is_some();
    Ok(Replayed {
        loaded,
        trace,
        reproduced,
        differences,
    })
}

/// What differs between a recorded trace and its re-run: each step's
/// actor, op, origin and cache changes, the violation (kind, step, agent,
/// entry, provenance) and the blame line. Empty when the whole run agrees.
pub fn trace_differences(recorded: &Trace, replayed: &Trace) -> Vec<String> {
    let mut out = Vec::new();
    if recorded.steps.len() != replayed.steps.len() {
        out.push(format!(
            "the recorded trace has {} steps, the replay {}",
            recorded.steps.len(),
            replayed.steps.len()
        ));
    }
    for (a, b) in recorded.steps.iter().zip(&replayed.steps) {
        let n = a.step;
        if a.actor != b.actor {
            out.push(format!(
                "step {n}: actor was `{}`, now `{}`",
                a.actor, b.actor
            ));
        }
        if a.op != b.op {
            out.push(format!("step {n}: op was `{}`, now `{}`", a.op, b.op));
        }
        if a.origin != b.origin {
            out.push(format!(
                "step {n}: operation was `{}`, now `{}`",
                a.origin.as_deref().unwrap_or("-"),
                b.origin.as_deref().unwrap_or("-")
            ));
        }
        for c in a.changes.iter().filter(|c| !b.changes.contains(c)) {
            out.push(format!("step {n}: recorded `{c}`, not in the replay"));
        }
        for c in b.changes.iter().filter(|c| !a.changes.contains(c)) {
            out.push(format!("step {n}: the replay has `{c}`, not recorded"));
        }
    }
    let describe = |v: &Option<Violation>| match v {
        None => "none".to_string(),
        Some(v) => {
            let entry = v.entry.map_or(String::new(), |e| format!(", entry {e}"));
            let since = v.provenance.map_or(String::new(), |p| {
                format!(", holdable since step {}", p.step)
            });
            format!("{} at step {} ({}{entry}{since})", v.kind, v.step, v.agent)
        }
    };
    let same = match (&recorded.violation, &replayed.violation) {
        (Some(a), Some(b)) => {
            a.kind == b.kind
                && a.step == b.step
                && a.agent == b.agent
                && a.entry == b.entry
                && a.provenance == b.provenance
        }
        (None, None) => true,
        _ => false,
    };
    if !same {
        out.push(format!(
            "violation: recorded {}, replay {}",
            describe(&recorded.violation),
            describe(&replayed.violation)
        ));
    }
    if recorded.should_have_removed != replayed.should_have_removed {
        out.push(format!(
            "blame: recorded `{}`, replay `{}`",
            recorded.should_have_removed.as_deref().unwrap_or("-"),
            replayed.should_have_removed.as_deref().unwrap_or("-")
        ));
    }
    out
}
