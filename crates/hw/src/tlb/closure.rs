//! Closing a may-hold set under reachability: after memory changes, every
//! entry a walk could now produce joins the set (design.md §2).
//!
//! Walks start from each live context's roots and from every walk-cache
//! entry the agent may hold: a cached table pointer lets the walker skip the
//! levels above it, so it keeps reading a table even after the descriptor
//! that pointed at it is gone (the walk-cache use-after-free of seed 003).

use super::entry::{EntryKind, Stage, TlbEntry};
use super::mayhold::{MayHold, Provenance};
use crate::addr::{AddrRange, Pa};
use crate::mem::PhysMem;
use crate::vmsa::desc::TableStage;
use crate::vmsa::walk::{combine, enumerate_stage};
use crate::vmsa::{Context, StageConfig};

/// Held walk entries of `stage` for `ctx`'s tags whose granule is `cfg`'s.
fn held_walks(may: &MayHold, ctx: &Context, stage: Stage, cfg: StageConfig) -> Vec<TlbEntry> {
    may.iter()
        .map(|(e, _)| *e)
        .filter(|e| {
            e.kind == EntryKind::Walk
                && e.stage == stage
                && e.regime == ctx.regime
                && e.granule == cfg.granule
                && e.vmid == tag_vmid(ctx)
                && (stage == Stage::S2 || e.asid == Some(ctx.asid))
        })
        .collect()
}

fn tag_vmid(ctx: &Context) -> u16 {
    if ctx.regime == crate::tlb::Regime::El10 {
        ctx.vmid
    } else {
        0
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
    let mut added = 0;
    for ctx in contexts {
        let mut found: Vec<(TlbEntry, Pa)> = Vec::new();
        if let Some(s2) = ctx.s2 {
            let mut emit = |e: TlbEntry, pa: Pa| found.push((e, pa));
            let identity = |t: u64, f: &mut dyn FnMut(u64)| f(t);
            let start = s2.granule.start_level();
            enumerate_stage(
                mem,
                agent,
                ctx,
                TableStage::S2,
                s2,
                start,
                s2.ttb,
                0,
                &identity,
                &mut emit,
            );
            for w in held_walks(may, ctx, Stage::S2, s2) {
                enumerate_stage(
                    mem,
                    agent,
                    ctx,
                    TableStage::S2,
                    s2,
                    w.level + 1,
                    w.output,
                    w.input,
                    &identity,
                    &mut emit,
                );
            }
            added += insert_all(may, &mut found, step);
        }
        if let Some(s1) = ctx.s1 {
            // Stage-1 table addresses are IPAs when stage 2 is on: the walker
            // may read them wherever any stage-2 leaf it may hold points.
            let s2_leaves: Vec<TlbEntry> = match ctx.s2 {
                Some(_) => may
                    .iter()
                    .map(|(e, _)| *e)
                    .filter(|e| {
                        e.kind == EntryKind::Leaf && e.stage == Stage::S2 && e.vmid == tag_vmid(ctx)
                    })
                    .collect(),
                None => Vec::new(),
            };
            let nested = ctx.s2.is_some();
            let resolve = |t: u64, f: &mut dyn FnMut(u64)| {
                if !nested {
                    return f(t);
                }
                for l in &s2_leaves {
                    if l.input_range().contains(t) {
                        f(l.translate(t));
                    }
                }
            };
            let mut emit = |e: TlbEntry, pa: Pa| found.push((e, pa));
            let start = s1.granule.start_level();
            resolve(s1.ttb, &mut |root| {
                enumerate_stage(
                    mem,
                    agent,
                    ctx,
                    TableStage::S1,
                    s1,
                    start,
                    root,
                    0,
                    &resolve,
                    &mut emit,
                )
            });
            for w in held_walks(may, ctx, Stage::S1, s1) {
                resolve(w.output, &mut |table| {
                    enumerate_stage(
                        mem,
                        agent,
                        ctx,
                        TableStage::S1,
                        s1,
                        w.level + 1,
                        table,
                        w.input,
                        &resolve,
                        &mut emit,
                    )
                });
            }
            added += insert_all(may, &mut found, step);
            if nested {
                added += combine_all(may, ctx, &s2_leaves, step);
            }
        }
    }
    added
}

fn insert_all(may: &mut MayHold, found: &mut Vec<(TlbEntry, Pa)>, step: u32) -> usize {
    let mut added = 0;
    for (e, pa) in found.drain(..) {
        added += usize::from(may.insert(e, Provenance { step, source: pa.0 }));
    }
    added
}

/// Combined entries from every held stage-1 leaf of `ctx` and every held
/// stage-2 leaf its output overlaps (Arm ARM D8.14.1).
fn combine_all(may: &mut MayHold, ctx: &Context, s2_leaves: &[TlbEntry], step: u32) -> usize {
    let vmid = tag_vmid(ctx);
    let s1_leaves: Vec<(TlbEntry, Provenance)> = may
        .iter()
        .filter(|(e, _)| {
            e.kind == EntryKind::Leaf
                && e.stage == Stage::S1
                && e.regime == ctx.regime
                && e.vmid == vmid
                && e.asid.is_none_or(|a| a == ctx.asid)
        })
        .map(|(e, p)| (*e, *p))
        .collect();
    let mut added = 0;
    for (s1, p) in &s1_leaves {
        let out = AddrRange::span(s1.output, u32::from(s1.span_shift));
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
