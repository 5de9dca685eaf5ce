//! The violation rules: one function per expectation.
//!
//! A frame going back to the allocator carries the expectation that no
//! agent may still translate to it ([`free`]); the rest are stated by a
//! program with [`Rely`] or implied by its op (a TLBI stays within the
//! VMIDs the thread owns; a resumed device's retry succeeds). Each rule
//! reads the may-hold sets and reports the first stale entry it finds.

use crate::model::{Model, State, Thread};
use crate::op::{Rely, Responder};
use crate::violation::{Agent, FrameFate, Violation, ViolationKind};
use tlbcheck_hw::addr::{AddrRange, Granule, Pa, Va};
use tlbcheck_hw::mem::{FrameOwner, Pfn, TableOwner, FRAME_SHIFT};
use tlbcheck_hw::smmu::config::CfgEntry;
use tlbcheck_hw::smmu::model::DeviceState;
use tlbcheck_hw::tlb::{Access, EntryKind, Holder, InvalScope, Provenance, Stage, TlbEntry};
use tlbcheck_hw::vmsa::desc::{self, Descriptor};
use tlbcheck_hw::vmsa::{translate, Context, TableStage};

/// `freed-frame-mapped`, `walk-cache-uaf` and `stale-config` (a): frees
/// `frame` and reports an agent that may still hold a translation into it
/// (a leaf to the data, a walk-cache entry to the table) or a configuration
/// structure in or pointing into it.
///
/// A frame that is free already (freed twice, or never allocated) is
/// `bad-free`, reported before anything else: `by` is who freed it.
pub fn free(s: &mut State, frame: Pfn, step: u32, by: Agent) -> Option<Violation> {
    let was = s.machine.mem.owner(frame);
    if was == FrameOwner::Free {
        return Some(Violation {
            kind: ViolationKind::BadFree,
            step,
            agent: by,
            entry: None,
            provenance: None,
            frame: Some(FrameFate {
                frame: frame.base().0,
                was,
                freed_at: step,
            }),
            detail: format!(
                "frame {:#x} is freed but it is not allocated: it was freed already, or never \
                 allocated",
                frame.base().0
            ),
        });
    }
    let range = AddrRange::span(frame.base().0, FRAME_SHIFT);
    let mut holders: Vec<(Holder, TlbEntry, Provenance)> = s
        .machine
        .holders(range)
        .into_iter()
        .map(|(c, e, p)| (Holder::Cpu(c), e, p))
        .collect();
    let mut cfg_holders = Vec::new();
    if let Some(smmu) = &s.machine.smmu {
        holders.extend(smmu.holders(range));
        cfg_holders = smmu.config_holders(range);
    }
    // Only pool frames reach here (the builder refuses others), and the
    // frame is in use (checked above).
    let _ = s.machine.mem.free(frame);
    let fate = FrameFate {
        frame: frame.base().0,
        was,
        freed_at: step,
    };
    let Some((holder, entry, prov)) = holders
        .iter()
        .find(|(_, e, _)| e.kind == EntryKind::Walk)
        .or_else(|| holders.first())
        .copied()
    else {
        let (cfg, since) = *cfg_holders.first()?;
        let how = if cfg.location().overlaps(range) {
            "lives in"
        } else {
            "points into"
        };
        let detail = format!(
            "frame {:#x} ({was}) returned to the allocator while the SMMU config cache may still hold {cfg}, which {how} it",
            frame.base().0
        );
        return Some(stale_config(step, &cfg, since, Some(fate), detail));
    };
    let kind = match entry.kind {
        EntryKind::Walk => ViolationKind::WalkCacheUaf,
        EntryKind::Leaf => ViolationKind::FreedFrameMapped,
    };
    let detail = format!(
        "frame {:#x} ({was}) returned to the allocator while {holder} may still hold {entry} (entries pointing into it: {})",
        frame.base().0,
        holders.len()
    );
    Some(stale_entry(
        kind,
        step,
        holder,
        (entry, prov),
        Some(fate),
        detail,
    ))
}

/// A violation about the stale entry `e` that `holder` may hold since `p`.
fn stale_entry(
    kind: ViolationKind,
    step: u32,
    holder: Holder,
    (e, p): (TlbEntry, Provenance),
    frame: Option<FrameFate>,
    detail: String,
) -> Violation {
    Violation {
        kind,
        step,
        agent: holder.into(),
        entry: Some(e),
        provenance: Some(p),
        frame,
        detail,
    }
}

/// `isolation`: a thread that owns only some VMIDs issues an invalidation
/// reaching others.
pub fn isolation(th: &Thread, t: usize, scope: &InvalScope, step: u32) -> Option<Violation> {
    let owned = th.owns_vmids.as_ref()?;
    let crosses = scope.vmid.is_none_or(|v| !owned.contains(&v));
    crosses.then(|| Violation {
        kind: ViolationKind::Isolation,
        step,
        agent: Agent::Thread { index: t as u8 },
        entry: None,
        provenance: None,
        frame: None,
        detail: format!(
            "{} (CPU {}): invalidation reaches {} but the thread owns only VMID(s) {:?}",
            th.name,
            th.cpu,
            scope
                .vmid
                .map_or("every VMID".to_string(), |v| format!("VMID {v}")),
            owned
        ),
    })
}

/// The rule of an expectation a program states.
pub fn rely(model: &Model, s: &State, cpu: u8, r: &Rely, step: u32) -> Option<Violation> {
    match *r {
        Rely::ReadOnly { ctx, va } => read_only(model, s, ctx, va, step),
        Rely::RetrySucceeds { ctx, va, write } => retry(model, s, cpu, ctx, va, write, step),
        Rely::CurrentConfig { dev } => current_config(s, dev, step),
    }
}

/// `stale-write`: no agent may hold a writable entry for `va`.
fn read_only(model: &Model, s: &State, ctx: usize, va: Va, step: u32) -> Option<Violation> {
    let c = &model.contexts[ctx];
    let cpus = s.machine.cpus.iter().enumerate().flat_map(|(i, cpu)| {
        candidate_leaves(cpu, c, va)
            .into_iter()
            .map(move |(e, p)| (Holder::Cpu(i as u8), e, p))
    });
    let devices = s
        .machine
        .smmu
        .iter()
        .flat_map(|smmu| smmu.leaves_for_context(c, va));
    let (holder, e, p) = cpus.chain(devices).find(|(_, e, _)| e.perms.write)?;
    let detail = format!(
            "the software relies on VA {:#x} ({}) being read-only, but {} may still hold a writable {e}",
            va.0,
            model.context_names[ctx],
            match holder {
                Holder::Cpu(_) => holder.to_string(),
                _ => format!("the {holder}"),
            }
        );
    Some(stale_entry(
        ViolationKind::StaleWrite,
        step,
        holder,
        (e, p),
        None,
        detail,
    ))
}

/// `fault-livelock` on a CPU: the table grants the retried access, yet a
/// cached entry that forbids it may still be used.
fn retry(
    model: &Model,
    s: &State,
    cpu: u8,
    ctx: usize,
    va: Va,
    write: bool,
    step: u32,
) -> Option<Violation> {
    let c = &model.contexts[ctx];
    let access = Access { write, user: false };
    // The table must grant the access now, else a fault is legitimate.
    translate(&s.machine.mem, c, va, access).ok()?;
    let tlb = &s.machine.cpus[cpu as usize];
    let (e, p) = candidate_leaves(tlb, c, va)
        .into_iter()
        .find(|(e, _)| !e.perms.allows(access))?;
    Some(livelock(
        Holder::Cpu(cpu),
        e,
        p,
        step,
        va,
        write,
        "the page table now grants the",
    ))
}

/// Answers device `dev`'s fault with the command `respond` builds and
/// retries its access: `fault-livelock` when the retry may hit a stale
/// entry that forbids what the table now grants.
pub fn device_resume(
    s: &mut State,
    dev: usize,
    respond: Responder,
    step: u32,
) -> Option<Violation> {
    let m = &mut s.machine;
    let smmu = m.smmu.as_mut()?;
    let d = smmu.devices.get(dev)?;
    let (va, write) = match d.state {
        DeviceState::Stalled { va, write, .. } | DeviceState::AwaitingPri { va, write, .. } => {
            (va, write)
        }
        _ => return None,
    };
    let answer = respond(d)?;
    let _ = smmu.submit(&mut m.mem, answer.encode(), step);
    if !matches!(smmu.devices[dev].state, DeviceState::Retrying { .. }) {
        return None;
    }
    let stale = smmu.stale_denials(&m.mem, dev, va, write);
    // The retry happens whatever the verdict (it may stall again).
    smmu.device_access(&mut m.mem, dev, va, write);
    let (holder, e, p) = stale.into_iter().next()?;
    let what = format!("the page table now grants device {dev}'s");
    Some(livelock(holder, e, p, step, va, write, &what))
}

fn livelock(
    holder: Holder,
    e: TlbEntry,
    p: Provenance,
    step: u32,
    va: Va,
    write: bool,
    grants: &str,
) -> Violation {
    let the = match holder {
        Holder::Cpu(_) => String::new(),
        _ => "the ".to_string(),
    };
    let detail = format!(
            "{grants} {} at VA {:#x}, yet {the}{holder} may still hold {e} which forbids it: the retry can fault forever",
            if write { "write" } else { "read" },
            va.0
        );
    stale_entry(
        ViolationKind::FaultLivelock,
        step,
        holder,
        (e, p),
        None,
        detail,
    )
}

/// `stale-config` (b): the software relies on the SMMU using the
/// configuration now in memory for the device's stream; any held copy of
/// an STE, CD or L1 descriptor of that stream that differs from memory is
/// a violation.
fn current_config(s: &State, dev: usize, step: u32) -> Option<Violation> {
    let smmu = s.machine.smmu.as_ref()?;
    let (cfg, since) = *smmu.stale_configs(&s.machine.mem, dev).first()?;
    let detail = format!(
        "the software relies on device {dev}'s current configuration, but the SMMU config cache may still hold the old {cfg}"
    );
    Some(stale_config(step, &cfg, since, None, detail))
}

fn stale_config(
    step: u32,
    cfg: &CfgEntry,
    since: u32,
    frame: Option<FrameFate>,
    detail: String,
) -> Violation {
    Violation {
        kind: ViolationKind::StaleConfig,
        step,
        agent: Agent::SmmuConfig,
        entry: None,
        provenance: Some(Provenance {
            step: since,
            source: cfg.location().first,
        }),
        frame,
        detail,
    }
}

/// The leaves an access in `ctx` at `va` may hit in `cpu`'s TLB: combined
/// entries when nested, else stage-1 (or stage-2-only) entries.
fn candidate_leaves(
    cpu: &tlbcheck_hw::machine::Cpu,
    ctx: &Context,
    va: Va,
) -> Vec<(TlbEntry, Provenance)> {
    let stage = ctx.access_stage();
    let asid = (stage != Stage::S2).then_some(ctx.asid);
    cpu.tlb
        .leaves_for(
            ctx.regime,
            ctx.tag_vmid(),
            stage,
            asid,
            ctx.access_input(va),
        )
        .map(|(e, p)| (*e, *p))
        .collect()
}

/// Memory-attribute bits of a leaf: stage-1 AttrIndx\[4:2\] and SH\[9:8\],
/// stage-2 MemAttr\[5:2\] and SH\[9:8\] (Arm ARM D8.3.2, D8.4).
fn memory_attributes(raw: u64, stage: TableStage) -> u64 {
    let attr = match stage {
        TableStage::S1 => 0b111 << 2,
        TableStage::S2 => 0b1111 << 2,
    };
    raw & (attr | 0b11 << 8)
}

/// A store of `new` over the valid descriptor at `pa` (in a translation
/// table) that needs break-before-make: `bbm`. Arm ARM D8.17.1, "Using
/// break-before-make when updating translation table entries": replacing
/// one valid entry with another valid one needs the old one made invalid,
/// invalidated and the invalidation completed first when the change is of
/// the output address, between a table and a block (the block size), of
/// the contiguous bit, or of the memory type or shareability; otherwise
/// the TLBs may hold both, with TLB conflict aborts or an amalgamation of
/// the two as the result. Permission and Access-flag changes need no break.
/// The old descriptor is the latest value in memory: a break whose TLBI
/// has not completed is not this rule's (the stale entry it leaves is
/// found by the rules that use it). A table descriptor replaced by one
/// pointing at another table is not checked. FEAT_BBM, which relaxes the
/// block-size case, is not modelled.
pub fn bbm(model: &Model, s: &State, t: usize, pa: Pa, new: u64, step: u32) -> Option<Violation> {
    let FrameOwner::Table { owner, level } = s.machine.mem.owner(Pfn::of(pa)) else {
        return None;
    };
    let stage = match owner {
        TableOwner::Stage1 { .. } => TableStage::S1,
        TableOwner::Stage2 { .. } => TableStage::S2,
    };
    let granule = model
        .contexts
        .iter()
        .find_map(|c| match stage {
            TableStage::S1 => c.s1,
            TableStage::S2 => c.s2,
        })
        .map_or(Granule::K4, |c| c.granule);
    let old = s.machine.mem.read(pa);
    let decode = |raw| desc::decode(raw, stage, granule, level, 48).ok();
    let why = match (decode(old)?, decode(new)?) {
        (Descriptor::Leaf { output: a, .. }, Descriptor::Leaf { output: b, .. }) if a != b => {
            "the output address changes"
        }
        (Descriptor::Leaf { attrs: a, .. }, Descriptor::Leaf { attrs: b, .. })
            if a.contiguous != b.contiguous =>
        {
            "the contiguous bit changes"
        }
        (Descriptor::Leaf { .. }, Descriptor::Leaf { .. })
            if memory_attributes(old, stage) != memory_attributes(new, stage) =>
        {
            "the memory attributes (AttrIndx/MemAttr or shareability) change"
        }
        (Descriptor::Leaf { .. }, Descriptor::Table { .. }) => {
            "a block is replaced by a table (the block size changes)"
        }
        (Descriptor::Table { .. }, Descriptor::Leaf { .. }) => {
            "a table is replaced by a block (the block size changes)"
        }
        _ => return None,
    };
    let th = &model.threads[t];
    Some(Violation {
        kind: ViolationKind::Bbm,
        step,
        agent: Agent::Thread { index: t as u8 },
        entry: None,
        provenance: None,
        frame: None,
        detail: format!(
            "thread {} (CPU {}) replaces the valid descriptor {old:#018x} at {:#x} (level {level} \
             of a {} table) with the valid {new:#018x}: {why}, which needs break-before-make \
             (Arm ARM D8.17.1): write an invalid descriptor, complete its TLBI, then write the \
             new one",
            th.name,
            th.cpu,
            pa.0,
            match stage {
                TableStage::S1 => "stage-1",
                TableStage::S2 => "stage-2",
            }
        ),
    })
}

/// A store of a table descriptor `new` into the table at `pa` whose target
/// is not, now, a table of the same stage serving the next level: the walk
/// would read whatever the frame holds as that level's descriptors (Arm
/// ARM D8.2.1). `bad-table`. Stage-1 tables are not checked when a context
/// is nested, since its stage-1 table addresses are IPAs; targets outside
/// the pool are not checked.
pub fn table_target(
    model: &Model,
    s: &State,
    t: usize,
    pa: Pa,
    new: u64,
    step: u32,
) -> Option<Violation> {
    let FrameOwner::Table { owner, level } = s.machine.mem.owner(Pfn::of(pa)) else {
        return None;
    };
    if level == 3 || new & 0b11 != 0b11 {
        return None;
    }
    let stage1 = matches!(owner, TableOwner::Stage1 { .. });
    let nested = model
        .contexts
        .iter()
        .any(|c| c.s1.is_some() && c.s2.is_some());
    if stage1 && nested {
        return None;
    }
    let next = Pa(new & desc::bits::ADDR_MASK);
    let target = s.machine.mem.owner(Pfn::of(next));
    let fits = match target {
        FrameOwner::Table { owner: o, level: l } => {
            matches!(o, TableOwner::Stage1 { .. }) == stage1 && l == level + 1
        }
        FrameOwner::Reserved => return None,
        _ => false,
    };
    if fits {
        return None;
    }
    let th = &model.threads[t];
    Some(Violation {
        kind: ViolationKind::BadTable,
        step,
        agent: Agent::Thread { index: t as u8 },
        entry: None,
        provenance: None,
        frame: None,
        detail: format!(
            "thread {} (CPU {}) links {:#x} into the level-{level} table at {:#x}, but that frame \
             is {target}, not a {} level-{} table",
            th.name,
            th.cpu,
            next.0,
            pa.0,
            if stage1 { "stage-1" } else { "stage-2" },
            level + 1
        ),
    })
}
