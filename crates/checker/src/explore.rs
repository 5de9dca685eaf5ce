//! Exhaustive breadth-first exploration with exact deduplication.
//!
//! States are stored compactly ([`crate::store`]) and deduplicated exactly.
//! Breadth-first order makes the first violation found one with the fewest
//! steps, and parent pointers rebuild its path, which is then replayed to
//! produce the trace. A state in which no transition is enabled but a
//! thread has not finished is a `stuck` violation. Bounds (depth, states,
//! memory, time) are checked while states are generated; a search that
//! reaches one without a violation is inconclusive, never `ok`.

use crate::model::{Bounds, Choice, Model, State};
use crate::por::Footprint;
use crate::store::{Parts, StateStore};
use crate::trace::{run, Trace};
use crate::violation::Violation;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// The bound that stopped a search.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "bound", content = "limit")]
pub enum Bound {
    /// Paths longer than this many steps were not explored.
    Depth(u32),
    /// The state limit.
    States(u64),
    /// The memory limit, in bytes.
    Memory(u64),
    /// The time limit, in milliseconds.
    Time(u64),
}

/// What the exploration covered.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "at")]
pub enum Coverage {
    /// Every reachable state was visited.
    Complete,
    /// Stopped by a bound before every state was visited: inconclusive.
    Bounded(Bound),
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

/// What a check concluded.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Conclusion {
    /// Every reachable state explored, no violation.
    Ok,
    /// A violation, with a trace.
    Violation,
    /// Stopped by a bound, or random sampling, with no violation found.
    Inconclusive,
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
    /// Ok, violation or inconclusive.
    pub fn conclusion(&self) -> Conclusion {
        match (&self.violation, self.coverage) {
            (Some(_), _) => Conclusion::Violation,
            (None, Coverage::Complete) => Conclusion::Ok,
            (None, _) => Conclusion::Inconclusive,
        }
    }

    /// Whether every reachable state was explored (or a violation found,
    /// which needs no more).
    pub fn complete(&self) -> bool {
        self.conclusion() != Conclusion::Inconclusive
    }

    /// "complete: 18432 states" / "inconclusive: stopped at depth 40" / ...
    pub fn coverage_statement(&self) -> String {
        let n = self.stats.states;
        match self.coverage {
            Coverage::Complete => format!("complete: {n} states, every interleaving explored"),
            Coverage::Bounded(Bound::Depth(d)) => format!(
                "inconclusive: depth bound {d} reached after {n} states (longer paths unexplored)"
            ),
            Coverage::Bounded(Bound::States(b)) => {
                format!("inconclusive: state bound {b} reached (more states unexplored)")
            }
            Coverage::Bounded(Bound::Memory(b)) => format!(
                "inconclusive: memory bound {} MiB reached after {n} states",
                b >> 20
            ),
            Coverage::Bounded(Bound::Time(ms)) => format!(
                "inconclusive: time bound {:.1} s reached after {n} states",
                ms as f64 / 1e3
            ),
            Coverage::RandomWalks(w) => format!(
                "inconclusive: {w} random walks found no violation ({} steps taken; a sample, not a proof)",
                self.stats.transitions
            ),
            Coverage::StoppedAtViolation => {
                format!("stopped at the first violation after {n} states")
            }
        }
    }
}

/// Progress of a running search.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// States stored so far.
    pub states: u64,
    /// Transitions executed so far.
    pub transitions: u64,
    /// Depth of the layer being expanded.
    pub depth: u32,
    /// Time since the start.
    pub elapsed: Duration,
    /// Resident memory now.
    pub rss_bytes: u64,
}

/// Peak resident set size from /proc (Linux); `None` elsewhere.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resident set size now (Linux); 0 elsewhere.
pub fn rss_now() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// What one expanded state led to.
enum Expanded {
    /// A successor, taken apart for storing, with its sleep set.
    Next(u32, Choice, Box<Parts>, u32),
    /// A successor equal to a stored state (its id), with its sleep set.
    Seen(u32, u32),
    /// A transition that ends in a violation.
    Violation(u32, Choice),
    /// A state with no transition although a thread has not finished.
    Stuck(u32),
    /// A state with transitions, at the depth bound (not expanded).
    Cut,
}

/// A state to expand: its id, its sleep set (threads whose next step need
/// not be explored from it), and the threads to explore (all, or those a
/// later visit woke up).
#[derive(Copy, Clone)]
struct Task {
    id: u32,
    sleep: u32,
    only: Option<u32>,
}

/// What one layer's expansion needs besides the tasks.
#[derive(Copy, Clone)]
struct Layer<'a> {
    model: &'a Model,
    store: &'a StateStore,
    /// Depth of the states expanded.
    depth: u32,
    /// The depth bound is reached: states are not expanded, only told
    /// apart as stuck, finished or cut.
    at_bound: bool,
    /// Sleep sets are on.
    por: bool,
}

/// Expands `tasks` (states at `l.depth`), in order.
fn expand(l: Layer<'_>, tasks: &[Task]) -> Vec<Expanded> {
    let Layer {
        model,
        store,
        depth,
        at_bound,
        por,
    } = l;
    let mut out = Vec::new();
    let mut choices = Vec::new();
    let mut prints = Vec::new();
    for task in tasks {
        let id = task.id;
        let s = store.get(id);
        model.choices(&s, &mut choices);
        if choices.is_empty() {
            if model.stuck(&s, depth).is_some() {
                out.push(Expanded::Stuck(id));
            }
            continue;
        }
        if at_bound {
            out.push(Expanded::Cut);
            continue;
        }
        // Sleep sets: a thread asleep here was explored from an ancestor
        // through steps independent of it (crate::por).
        let thread_bit = |c: Choice| match c {
            Choice::Thread(t) => 1u32 << t,
            Choice::RcuCallback(_) => 0,
        };
        let explore_this = |c: Choice| {
            let bit = thread_bit(c);
            match task.only {
                Some(woken) => bit & woken != 0,
                None => bit & task.sleep == 0,
            }
        };
        let wanted: Vec<Choice> = choices
            .iter()
            .copied()
            .filter(|&c| explore_this(c))
            .collect();
        let Some(&last) = wanted.last() else { continue };
        let reduce = por && choices.len() > 1;
        prints.clear();
        if reduce {
            prints.extend(choices.iter().map(|&c| (c, Footprint::of(model, &s, c))));
        }
        let print = |c: Choice| prints.iter().find(|(x, _)| *x == c).map(|(_, f)| *f);
        let mut done_before = task.sleep;
        let mut parent = Some(s);
        for &c in &wanted {
            let mut sleep = 0u32;
            if reduce {
                if let Some(fc) = print(c) {
                    for &(u, fu) in prints.iter() {
                        let bit = thread_bit(u);
                        if bit & done_before != 0 && bit != thread_bit(c) && fu.independent(fc) {
                            sleep |= bit;
                        }
                    }
                }
            }
            // The last successor takes the parent itself: one clone fewer.
            let mut next: State = if c == last {
                parent.take().expect("taken once")
            } else {
                parent.clone().expect("still here")
            };
            match model.step(&mut next, c, depth + 1) {
                Some(_) => out.push(Expanded::Violation(id, c)),
                None => {
                    let mut parts = Parts::of(next);
                    out.push(match store.resolve(&mut parts) {
                        Some(old) => Expanded::Seen(old, sleep),
                        None => Expanded::Next(id, c, Box::new(parts), sleep),
                    });
                }
            }
            done_before |= thread_bit(c);
        }
    }
    out
}

/// A stored state reached again with sleep set `asleep`: its sleep set
/// narrows to the threads asleep on both visits, and if it was expanded
/// already, the threads that woke are queued for expansion.
fn revisit(
    store: &mut StateStore,
    woken: &mut Vec<Task>,
    old: u32,
    asleep: u32,
    expanded_below: u32,
) {
    let was = store.sleep(old);
    let now = was & asleep;
    if now != was {
        store.set_sleep(old, now);
        if old < expanded_below {
            woken.push(Task {
                id: old,
                sleep: now,
                only: Some(was & !now),
            });
        }
    }
}

/// Parents expanded per batch: bounds are checked between batches, so the
/// successors held in memory at once stay few.
const BATCH: u32 = 1024;

/// Expands a batch on up to two threads; the result is in the order of a
/// sequential expansion, so exploration is deterministic.
fn expand_batch(l: Layer<'_>, tasks: &[Task]) -> Vec<Expanded> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || tasks.len() < 64 {
        return expand(l, tasks);
    }
    let (a, b) = tasks.split_at(tasks.len() / 2);
    std::thread::scope(|sc| {
        let second = sc.spawn(|| expand(l, b));
        let mut first = expand(l, a);
        first.extend(second.join().expect("expansion thread panicked"));
        first
    })
}

/// Explores every interleaving of `model` within `bounds`, breadth first.
pub fn explore(model: &Model, bounds: Bounds) -> Verdict {
    explore_with(model, bounds, &mut |_| {})
}

/// [`explore`], calling `progress` now and then (about every 100 ms).
pub fn explore_with(model: &Model, bounds: Bounds, progress: &mut dyn FnMut(&Progress)) -> Verdict {
    let start = Instant::now();
    let mut store = StateStore::new(model);
    let root = store
        .insert(Parts::of(model.initial()))
        .expect("the first state is new");
    // Each state keeps, in the store, the parent and choice it was first
    // reached by (the root's are unused) and its sleep set (thread bits),
    // narrowed when it is reached again with a smaller one.
    store.set_origin(root, root, Choice::Thread(0), 0);
    // States expanded before a later visit woke some of their threads:
    // expanded again for those threads only.
    let mut woken: Vec<Task> = Vec::new();
    let mut stats = Stats::default();
    let mut depth = 0u32;
    let mut layer = 0u32..1u32;
    let mut last_report = Instant::now();
    let (mut first_check, mut last_memory_check, mut rss) = (true, Instant::now(), 0);
    let mut coverage = Coverage::Complete;
    let finish = |mut stats: Stats, states: usize, depth: u32| {
        stats.states = states as u64;
        stats.depth = depth;
        stats.elapsed = start.elapsed();
        stats.peak_rss_bytes = peak_rss();
        stats
    };
    let found = |stats: Stats, store: &StateStore, path_end: Vec<Choice>, at: u32, depth: u32| {
        let mut path = path_to(store, at);
        path.extend(path_end);
        let trace = run(model, &path, false, true).expect("a path the explorer took replays");
        Verdict {
            violation: trace.violation.clone(),
            trace: Some(trace),
            coverage: Coverage::StoppedAtViolation,
            stats: finish(stats, store.len(), depth),
        }
    };
    'search: while !layer.is_empty() || !woken.is_empty() {
        let at_bound = depth >= bounds.max_depth;
        let next_start = store.len() as u32;
        let mut tasks: Vec<Task> = std::mem::take(&mut woken);
        tasks.extend(layer.clone().map(|id| Task {
            id,
            sleep: store.sleep(id),
            only: None,
        }));
        for batch in tasks.chunks(BATCH as usize) {
            // States stored before this id were expanded already (or are
            // being expanded in this batch): a visit that wakes threads in
            // them queues them again.
            let expanded_below = batch.last().map_or(0, |t| t.id + 1).max(layer.start);
            let layer_ctx = Layer {
                model,
                store: &store,
                depth,
                at_bound,
                por: bounds.sleep_sets,
            };
            for e in expand_batch(layer_ctx, batch) {
                match e {
                    Expanded::Cut => {
                        coverage = Coverage::Bounded(Bound::Depth(depth));
                    }
                    Expanded::Stuck(id) => {
                        return found(stats, &store, Vec::new(), id, depth);
                    }
                    Expanded::Violation(id, c) => {
                        stats.transitions += 1;
                        return found(stats, &store, vec![c], id, depth + 1);
                    }
                    Expanded::Next(id, c, parts, asleep) => {
                        stats.transitions += 1;
                        if store.len() as u64 >= bounds.max_states {
                            coverage = Coverage::Bounded(Bound::States(bounds.max_states));
                            break 'search;
                        }
                        match store.insert(*parts) {
                            Ok(new) => store.set_origin(new, id, c, asleep),
                            Err(old) => {
                                revisit(&mut store, &mut woken, old, asleep, expanded_below)
                            }
                        }
                    }
                    Expanded::Seen(old, asleep) => {
                        stats.transitions += 1;
                        revisit(&mut store, &mut woken, old, asleep, expanded_below);
                    }
                }
            }
            let elapsed = start.elapsed();
            if elapsed.as_millis() as u64 >= bounds.timeout_ms {
                coverage = Coverage::Bounded(Bound::Time(bounds.timeout_ms));
                break 'search;
            }
            // Reading the resident size costs a system call: the first batch
            // and then every 20 ms, a moment in which the store grows by a
            // few hundred kilobytes at most.
            if first_check || last_memory_check.elapsed() >= Duration::from_millis(20) {
                first_check = false;
                last_memory_check = Instant::now();
                rss = rss_now();
                if rss >= bounds.max_memory {
                    coverage = Coverage::Bounded(Bound::Memory(bounds.max_memory));
                    break 'search;
                }
            }
            if last_report.elapsed() >= Duration::from_millis(100) {
                last_report = Instant::now();
                progress(&Progress {
                    states: store.len() as u64,
                    transitions: stats.transitions,
                    depth,
                    elapsed,
                    rss_bytes: rss,
                });
            }
        }
        if at_bound {
            break;
        }
        let next_end = store.len() as u32;
        if next_end > next_start {
            depth += 1;
        }
        layer = next_start..next_end;
    }
    if std::env::var_os("TLBCHECK_DEBUG_STORE").is_some() {
        eprintln!(
            "distinct components: {:?}; rows and index: {} bytes; rss {}",
            store.distinct(),
            store.table_bytes(),
            rss_now()
        );
    }
    Verdict {
        violation: None,
        trace: None,
        coverage,
        stats: finish(stats, store.len(), depth),
    }
}

fn path_to(store: &StateStore, mut idx: u32) -> Vec<Choice> {
    let mut path = Vec::new();
    while idx != 0 {
        let (p, c) = store.parent(idx);
        path.push(c);
        idx = p;
    }
    path.reverse();
    path
}
