//! Closing a may-hold set under reachability: after memory changes, every
//! entry a walk could now produce joins the set (docs/design.md §2.2).
//!
//! Walks start from each live context's roots and from every walk-cache
//! entry the agent may hold: a cached table pointer lets the walker skip the
//! levels above it, so it keeps reading a table even after the descriptor
//! that pointed at it is gone (the walk-cache use-after-free of seed 003;
//! intermediate TLB caching structures, Arm ARM DDI 0487M.a D8.16 RSQBCS
//! and D8.17 RRVJDB).

use super::entry::{EntryKind, Stage, TlbEntry};
use super::mayhold::{MayHold, Provenance};
use crate::addr::{AddrRange, InputRange, Ipa, Pa};
use crate::mem::PhysMem;
use crate::tlb::InvalScope;
use crate::vmsa::desc::TableStage;
use crate::vmsa::walk::{combine, enumerate_stage_within, Start};
use crate::vmsa::{Context, StageConfig};

/// Held walk entries of `stage` for `ctx`'s tags whose granule is `cfg`'s.
fn held_walks(may: &MayHold, ctx: &Context, stage: Stage, cfg: StageConfig) -> Vec<TlbEntry> {
    may.block(ctx.regime, ctx.tag_vmid(), stage)
        .map(|(e, _)| *e)
        .filter(|e| {
            e.kind == EntryKind::Walk
                && e.granule == cfg.granule
                && (stage == Stage::S2 || e.asid == Some(ctx.asid))
        })
        .collect()
}

/// Input-address ranges a closure may restrict itself to: VAs for
/// stage-1 and combined entries, IPAs for stage-2 entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Within {
    /// Stage-1 (and combined) input ranges.
    pub va: Vec<AddrRange>,
    /// Stage-2 input ranges.
    pub ipa: Vec<AddrRange>,
}

impl Within {
    /// No restriction.
    pub fn everything() -> Within {
        Within {
            va: vec![AddrRange::ALL],
            ipa: vec![AddrRange::ALL],
        }
    }

    /// Sorts and merges overlapping or adjacent ranges, as enumeration needs.
    fn normalized(mut self) -> Within {
        for v in [&mut self.va, &mut self.ipa] {
            v.sort();
            let mut out: Vec<AddrRange> = Vec::with_capacity(v.len());
            for r in v.drain(..) {
                match out.last_mut() {
                    Some(l) if r.first <= l.last.saturating_add(1) => l.last = l.last.max(r.last),
                    _ => out.push(r),
                }
            }
            *v = out;
        }
        self
    }

    /// The input ranges of `entries`.
    ///
    /// After entries are removed from a closed set (memory unchanged), only
    /// those entries can come back, and every walk that makes one reads
    /// only descriptors whose span overlaps its input range: closing within
    /// these ranges is exact.
    pub fn of_entries<'a>(entries: impl IntoIterator<Item = &'a TlbEntry>) -> Within {
        let mut w = Within::default();
        for e in entries {
            match e.input_range() {
                InputRange::Ipa(r) => w.ipa.push(r),
                InputRange::Va(r) => w.va.push(r),
            }
        }
        w.normalized()
    }

    /// What a refill after an invalidation must walk: the input ranges it
    /// reaches, and every IPA when it reaches stage-1 entries, since in a
    /// nested context a stage-1 walk reads its tables through stage-2
    /// mappings, old ones included (contexts without stage 2 walk no IPAs).
    ///
    /// A range reaches only the entries of its own space: a VA range no
    /// stage-2 entry, an IPA range no stage-1 or combined entry.
    pub fn of_scope(scope: &InvalScope) -> Within {
        let (va, ipa) = match scope.range {
            None => (Some(AddrRange::ALL), Some(AddrRange::ALL)),
            Some(InputRange::Va(r)) => (Some(r), None),
            Some(InputRange::Ipa(r)) => (None, Some(r)),
        };
        let stage1 = scope.stages.s1 || scope.stages.combined;
        Within {
            va: va.filter(|_| stage1).into_iter().collect(),
            ipa: match (scope.stages.s2, stage1) {
                (_, true) => vec![AddrRange::ALL],
                (true, false) => ipa.into_iter().collect(),
                (false, false) => vec![],
            },
        }
    }
}

/// Adds to `may` every entry agent `agent` could create now in any of
/// `contexts`, reading `mem` as its walkers may see it. New entries get
/// provenance `step` and the PA of the descriptor they came from. Returns
/// how many entries were added.
pub fn close(
    may: &mut MayHold,
    mem: &PhysMem,
    agent: u8,
    contexts: &[Context],
    step: u32,
) -> usize {
    close_within(may, mem, agent, contexts, step, &Within::everything())
}

/// [`close`] restricted to entries whose input range overlaps `within`.
pub fn close_within(
    may: &mut MayHold,
    mem: &PhysMem,
    agent: u8,
    contexts: &[Context],
    step: u32,
    within: &Within,
) -> usize {
    let mut added = 0;
    let mut found: Vec<(TlbEntry, Pa)> = Vec::new();
    for ctx in contexts {
        let nested = ctx.s2.is_some();
        if let (Some(s2), false) = (ctx.s2, within.ipa.is_empty()) {
            let identity = |t: u64, f: &mut dyn FnMut(u64)| f(t);
            let root = Start {
                level: s2.granule.s2_start_level(),
                table: s2.ttb,
                input_base: 0,
            };
            let stage = TableStage::S2;
            let ipa = &within.ipa;
            enumerate_stage_within(
                mem,
                agent,
                ctx,
                stage,
                s2,
                root,
                ipa,
                &identity,
                &mut |e, pa| found.push((e, pa)),
            );
            let reached = walks_in(&found);
            for w in held_walks(may, ctx, Stage::S2, s2) {
                // A walk entry the root walk reached has had its subtree listed.
                if reached.binary_search(&w).is_ok() {
                    continue;
                }
                // A stage-2 walk entry: IPA in, next-level table PA out.
                let at = Start {
                    level: w.level + 1,
                    table: w.output().get(),
                    input_base: w.input().get(),
                };
                enumerate_stage_within(
                    mem,
                    agent,
                    ctx,
                    stage,
                    s2,
                    at,
                    ipa,
                    &identity,
                    &mut |e, pa| found.push((e, pa)),
                );
            }
            added += insert_all(may, &mut found, step);
        }
        let Some(s1) = ctx.s1.filter(|_| !within.va.is_empty()) else {
            continue;
        };
        // Stage-1 table addresses are IPAs when stage 2 is on (Arm ARM D8.2.1,
        // RBTTHB): the walker may read them wherever any stage-2 leaf it may
        // hold points (stage-2 entries serve stage-1 walks, D8.16.3.1 IYWBQX).
        let s2_leaves: Vec<TlbEntry> = if nested {
            may.block(ctx.regime, ctx.tag_vmid(), Stage::S2)
                .map(|(e, _)| *e)
                .filter(|e| e.kind == EntryKind::Leaf)
                .collect()
        } else {
            Vec::new()
        };
        let resolve = |t: u64, f: &mut dyn FnMut(u64)| {
            if !nested {
                return f(Ipa(t).flat_pa().0);
            }
            for pa in s2_leaves.iter().filter_map(|l| l.translate_ipa(Ipa(t))) {
                f(pa.0);
            }
        };
        let stage = TableStage::S1;
        let level = s1.granule.start_level();
        resolve(s1.ttb, &mut |table| {
            let root = Start {
                level,
                table,
                input_base: 0,
            };
            enumerate_stage_within(
                mem,
                agent,
                ctx,
                stage,
                s1,
                root,
                &within.va,
                &resolve,
                &mut |e, pa| found.push((e, pa)),
            )
        });
        let reached = walks_in(&found);
        let mut emit = |e: TlbEntry, pa: Pa| found.push((e, pa));
        for w in held_walks(may, ctx, Stage::S1, s1) {
            if reached.binary_search(&w).is_ok() {
                continue;
            }
            // A stage-1 walk entry: VA in, next-level table IPA out.
            resolve(w.output().get(), &mut |table| {
                let at = Start {
                    level: w.level + 1,
                    table,
                    input_base: w.input().get(),
                };
                enumerate_stage_within(
                    mem, agent, ctx, stage, s1, at, &within.va, &resolve, &mut emit,
                )
            });
        }
        added += insert_all(may, &mut found, step);
        if nested {
            added += combine_all(may, ctx, &s2_leaves, step);
        }
    }
    added
}

/// The walk entries among `found`, sorted for lookup.
fn walks_in(found: &[(TlbEntry, Pa)]) -> Vec<TlbEntry> {
    let mut w: Vec<TlbEntry> = found
        .iter()
        .filter(|(e, _)| e.kind == EntryKind::Walk)
        .map(|(e, _)| *e)
        .collect();
    w.sort_unstable();
    w
}

fn insert_all(may: &mut MayHold, found: &mut Vec<(TlbEntry, Pa)>, step: u32) -> usize {
    let mut added = 0;
    for (e, pa) in found.drain(..) {
        added += usize::from(may.insert(e, Provenance { step, source: pa.0 }));
    }
    added
}

/// Combined entries from every held stage-1 leaf of `ctx` and every held
/// stage-2 leaf its output overlaps ("structures combining stage 1 and
/// stage 2 information", Arm ARM D8.17; D8.16.3.4, RZVRZW).
fn combine_all(may: &mut MayHold, ctx: &Context, s2_leaves: &[TlbEntry], step: u32) -> usize {
    let s1_leaves: Vec<(TlbEntry, Provenance)> = may
        .block(ctx.regime, ctx.tag_vmid(), Stage::S1)
        .filter(|(e, _)| e.kind == EntryKind::Leaf && e.asid.is_none_or(|a| a == ctx.asid))
        .map(|(e, p)| (*e, *p))
        .collect();
    let mut added = 0;
    for (s1, p) in &s1_leaves {
        // Its output IPAs, as stage-2 inputs.
        let out = InputRange::Ipa(s1.output_span());
        for s2 in s2_leaves.iter().filter(|l| l.input_range().overlaps(out)) {
            if let Some(c) = combine(s1, s2) {
                let prov = Provenance {
                    step,
                    source: p.source,
                };
                added += usize::from(may.insert(c, prov));
            }
        }
    }
    added
}
