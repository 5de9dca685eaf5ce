//! Exhaustive breadth-first exploration with exact deduplication.
//!
//! Every distinct state is stored once; a 64-bit hash only picks the
//! bucket, and states in a bucket are compared in full, so no state is ever
//! lost to a hash collision. Breadth-first order makes the first violation
//! found one with the fewest steps, and parent pointers rebuild its path.

use crate::model::{Bounds, Choice, Model, State};
use crate::trace::{run, Trace};
use crate::violation::Violation;
use rustc_hash::FxHasher;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// What the exploration covered.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "at")]
pub enum Coverage {
    /// Every reachable state was visited.
    Complete,
    /// Stopped at this depth; deeper states were not expanded.
    DepthBound(u32),
    /// Stopped after storing this many states.
    StateBound(u64),
    /// Stopped at the first violation (states beyond it were not needed).
    StoppedAtViolation,
    /// Random mode found nothing in this many walks: a sample, not a proof.
    RandomWalks(u32),
}

/// Counters of one exploration.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Distinct states stored; in random mode, states visited (repeats
    /// included).
    pub states: u64,
    /// Transitions executed.
    pub transitions: u64,
    /// Deepest level reached.
    pub depth: u32,
    /// Wall time.
    pub elapsed: Duration,
    /// Peak resident memory of the process, where the OS reports it.
    pub peak_rss_bytes: Option<u64>,
}

/// The outcome of checking a model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The first (shortest) violation found.
    pub violation: Option<Violation>,
    /// Its counterexample.
    pub trace: Option<Trace>,
    /// What was covered.
    pub coverage: Coverage,
    /// Counters.
    pub stats: Stats,
}

impl Verdict {
    /// "complete: 18432 states" / "bounded at depth 40" / ...
    pub fn coverage_statement(&self) -> String {
        match self.coverage {
            Coverage::Complete => format!(
                "complete: {} states, every interleaving within bounds",
                self.stats.states
            ),
            Coverage::DepthBound(d) => format!(
                "bounded at depth {d}: {} states (deeper paths unexplored)",
                self.stats.states
            ),
            Coverage::StateBound(n) => format!("bounded at {n} states (state limit reached)"),
            Coverage::RandomWalks(n) => format!(
                "random: {n} walks found no violation ({} steps taken; a sample, not a proof)",
                self.stats.transitions
            ),
            Coverage::StoppedAtViolation => format!(
                "stopped at the first violation after {} states",
                self.stats.states
            ),
        }
    }
}

fn hash_of(s: &State) -> u64 {
    let mut h = FxHasher::default();
    s.hash(&mut h);
    h.finish()
}

/// Peak resident set size from /proc (Linux); `None` elsewhere.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A successor computed during layer expansion: its parent, the choice that
/// made it, and the new state with its hash (or the violation it hit).
type Successor = (u32, Choice, Result<(State, u64), Violation>);

/// Computes the successors of `layer` (in layer order, then choice order).
fn expand(model: &Model, states: &[State], layer: &[u32], depth: u32) -> Vec<Successor> {
    let mut out = Vec::new();
    let mut choices = Vec::new();
    for &idx in layer {
        model.choices(&states[idx as usize], &mut choices);
        for &c in &choices {
            let mut s = states[idx as usize].clone();
            let r = match model.step(&mut s, c, depth + 1, None) {
                Some(v) => Err(v),
                None => {
                    let h = hash_of(&s);
                    Ok((s, h))
                }
            };
            out.push((idx, c, r));
        }
    }
    out
}

/// Layers smaller than this are expanded on one thread: spawning costs more.
const PARALLEL_LAYER: usize = 256;

/// Expands `layer` on up to two threads; the result is in the same order as
/// a sequential expansion, so exploration is deterministic.
fn expand_layer(model: &Model, states: &[State], layer: &[u32], depth: u32) -> Vec<Successor> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(2);
    if threads < 2 || layer.len() < PARALLEL_LAYER {
        return expand(model, states, layer, depth);
    }
    let (a, b) = layer.split_at(layer.len() / 2);
    std::thread::scope(|sc| {
        let second = sc.spawn(|| expand(model, states, b, depth));
        let mut first = expand(model, states, a, depth);
        first.extend(second.join().expect("expansion thread panicked"));
        first
    })
}

/// Explores every interleaving of `model` within `bounds`, breadth first,
/// expanding large layers on both cores.
pub fn explore(model: &Model, bounds: Bounds) -> Verdict {
    let start = Instant::now();
    let mut states: Vec<State> = vec![model.initial()];
    // (parent index, choice that led here); the root's parent is itself.
    let mut parents: Vec<(u32, Choice)> = vec![(0, Choice::Thread(0))];
    let mut buckets: HashMap<u64, Vec<u32>, std::hash::BuildHasherDefault<FxHasher>> =
        HashMap::default();
    buckets.entry(hash_of(&states[0])).or_default().push(0);
    let mut stats = Stats::default();
    let mut layer: Vec<u32> = vec![0];
    let mut coverage = Coverage::Complete;
    let mut depth = 0u32;
    let finish = |mut stats: Stats, states: usize, depth: u32| {
        stats.states = states as u64;
        stats.depth = depth;
        stats.elapsed = start.elapsed();
        stats.peak_rss_bytes = peak_rss();
        stats
    };
    'search: while !layer.is_empty() {
        if depth >= bounds.max_depth {
            coverage = Coverage::DepthBound(depth);
            break;
        }
        let successors = expand_layer(model, &states, &layer, depth);
        let mut next = Vec::new();
        for (idx, c, r) in successors {
            stats.transitions += 1;
            let (s, h) = match r {
                Ok(sh) => sh,
                Err(v) => {
                    let mut path = path_to(&parents, idx);
                    path.push(c);
                    let trace =
                        run(model, &path, false, true).expect("a path the explorer took replays");
                    return Verdict {
                        violation: trace.violation.clone().or(Some(v)),
                        trace: Some(trace),
                        coverage: Coverage::StoppedAtViolation,
                        stats: finish(stats, states.len(), depth + 1),
                    };
                }
            };
            let bucket = buckets.entry(h).or_default();
            if bucket.iter().any(|&i| states[i as usize] == s) {
                continue;
            }
            if states.len() as u64 >= bounds.max_states {
                coverage = Coverage::StateBound(bounds.max_states);
                break 'search;
            }
            let new = states.len() as u32;
            bucket.push(new);
            states.push(s);
            parents.push((idx, c));
            next.push(new);
        }
        if !next.is_empty() {
            depth += 1;
        }
        layer = next;
    }
    Verdict {
        violation: None,
        trace: None,
        coverage,
        stats: finish(stats, states.len(), depth),
    }
}

fn path_to(parents: &[(u32, Choice)], mut idx: u32) -> Vec<Choice> {
    let mut path = Vec::new();
    while idx != 0 {
        let (p, c) = parents[idx as usize];
        path.push(c);
        idx = p;
    }
    path.reverse();
    path
}
