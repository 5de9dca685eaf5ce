//! Random mode: seeded random walks for models too large to exhaust, and
//! delta-debugging to shrink a failing walk to a minimal one that fails the
//! same way.

use crate::explore::{peak_rss, Coverage, Stats, Verdict};
use crate::model::{Choice, Model};
use crate::trace::run;
use crate::violation::ViolationKind;
use std::time::Instant;

/// SplitMix64 (Steele, Lea, Flood 2014): our own fixed generator, so a seed
/// means the same run on every machine and every version of every crate.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (`n > 0`), by Lemire's multiply-shift.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// Runs `walks` random walks of at most `max_depth` steps from `seed`; the
/// first failing walk is shrunk and returned as the counterexample.
pub fn random_walks(model: &Model, seed: u64, walks: u32, max_depth: u32) -> Verdict {
    let start = Instant::now();
    let mut rng = SplitMix64::new(seed);
    let mut stats = Stats::default();
    let mut enabled = Vec::new();
    for _ in 0..walks {
        let mut s = model.initial();
        let mut path = Vec::new();
        for depth in 0..max_depth {
            model.choices(&s, &mut enabled);
            if enabled.is_empty() {
                if let Some(v) = model.stuck(&s, depth) {
                    return found(model, &path, v.kind, stats, start);
                }
                break;
            }
            let c = enabled[rng.below(enabled.len())];
            path.push(c);
            stats.transitions += 1;
            stats.states += 1; // states visited, repeats included
            stats.depth = stats.depth.max(depth + 1);
            if let Some(v) = model.step(&mut s, c, depth + 1) {
                return found(model, &path, v.kind, stats, start);
            }
        }
    }
    stats.elapsed = start.elapsed();
    stats.peak_rss_bytes = peak_rss();
    Verdict {
        violation: None,
        trace: None,
        coverage: Coverage::RandomWalks(walks),
        stats,
    }
}

/// The verdict of a failing walk: shrunk, then replayed for its trace.
fn found(
    model: &Model,
    path: &[Choice],
    kind: ViolationKind,
    mut stats: Stats,
    start: Instant,
) -> Verdict {
    let small = shrink(model, path, kind);
    let trace = run(model, &small, false, true).expect("shrunk choices replay");
    stats.elapsed = start.elapsed();
    stats.peak_rss_bytes = peak_rss();
    Verdict {
        violation: trace.violation.clone(),
        trace: Some(trace),
        coverage: Coverage::StoppedAtViolation,
        stats,
    }
}

/// Whether replaying `choices` (skipping disabled ones) ends in `kind`.
fn fails_with(model: &Model, choices: &[Choice], kind: ViolationKind) -> Option<Vec<Choice>> {
    let t = run(model, choices, true, false).ok()?;
    (t.violation.as_ref()?.kind == kind).then_some(t.choices)
}

/// Zeller's ddmin over the choice list: removes chunks while the run still
/// fails with the same violation, down to a 1-minimal list.
pub fn shrink(model: &Model, choices: &[Choice], kind: ViolationKind) -> Vec<Choice> {
    let mut cur = fails_with(model, choices, kind).unwrap_or_else(|| choices.to_vec());
    let mut n = 2usize;
    while cur.len() >= 2 {
        match first_failing_complement(model, &cur, n, kind) {
            Some(kept) => {
                cur = kept;
                n = (n - 1).max(2);
            }
            None if n >= cur.len() => break,
            None => n = (2 * n).min(cur.len()),
        }
    }
    cur
}

/// Splits `cur` into `n` chunks and returns the first list with one chunk
/// removed that still fails with `kind` (as actually executed).
fn first_failing_complement(
    model: &Model,
    cur: &[Choice],
    n: usize,
    kind: ViolationKind,
) -> Option<Vec<Choice>> {
    let chunk = cur.len().div_ceil(n);
    (0..n)
        .map(|i| i * chunk)
        .take_while(|&lo| lo < cur.len())
        .find_map(|lo| {
            let hi = (lo + chunk).min(cur.len());
            let candidate: Vec<Choice> = cur[..lo].iter().chain(&cur[hi..]).copied().collect();
            fails_with(model, &candidate, kind)
        })
}
