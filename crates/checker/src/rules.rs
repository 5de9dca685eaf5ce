//! The violation rules: one function per expectation.
//!
//! A frame going back to the allocator carries the expectation that no
//! agent may still translate to it ([`free`]); the rest are stated by a
//! program with [`Rely`] or implied by its op (a TLBI stays within the
//! VMIDs the thread owns; a resumed device's retry succeeds). Each rule
//! reads the may-hold sets and reports the first stale entry it finds.

use crate::model::{Model, State, Thread};
use crate::op::{GuestBatch, GuestEntry, Rely, Responder};
use crate::violation::{Agent, FrameFate, Violation, ViolationKind};
use tlbcheck_hw::addr::{AddrRange, Granule, Pa, Va};
use tlbcheck_hw::mem::{FrameOwner, Pfn, TableOwner, FRAME_SHIFT};
use tlbcheck_hw::smmu::cmd::Command;
use tlbcheck_hw::smmu::config::CfgEntry;
use tlbcheck_hw::smmu::model::{cfgi_scope, tlbi_scope, DeviceState, Smmu};
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
        Rely::Access { ctx, va, write } => own_access(model, s, cpu, ctx, va, write, step),
        Rely::CurrentConfig { dev } => current_config(s, dev, step),
        Rely::GuestBatch(ref b) => guest_batch(s, b, step),
    }
}

/// `isolation`, then `missed-guest-invalidation`, for a guest batch a host
/// service replayed (seed 002).
fn guest_batch(s: &State, b: &GuestBatch, step: u32) -> Option<Violation> {
    let smmu = s.machine.smmu.as_ref()?;
    b.entries
        .iter()
        .find_map(|e| crosses(smmu, b, e, step))
        .or_else(|| missed(s, b, step))
}

/// A guest command as reports show it: name, words and decoded fields.
fn guest_cmd(b: &GuestBatch, e: &GuestEntry) -> String {
    let [dw0, dw1] = e.words;
    let fields = match Command::decode_permissive(e.words) {
        Ok(c) => format!("{} {c:?}", c.name()),
        Err(err) => format!("not a command: {err}"),
    };
    format!(
        "guest {} batch {} entry {} [{dw0:#018x}, {dw1:#018x}] ({fields})",
        b.guest, b.batch, e.index
    )
}

/// The physical commands an entry became, as reports show them.
fn host_cmds(e: &GuestEntry) -> String {
    if e.host.is_empty() {
        return "nothing".to_string();
    }
    let one = |w: &[u64; 2]| match Command::decode(*w) {
        Ok(c) => c.to_string(),
        Err(_) => format!("[{:#018x}, {:#018x}] (CERROR_ILL)", w[0], w[1]),
    };
    e.host.iter().map(one).collect::<Vec<_>>().join(", ")
}

/// The StreamID a command names, for the commands that name one.
fn cmd_sid(c: &Command) -> Option<u32> {
    match *c {
        Command::CfgiSte { sid, .. }
        | Command::CfgiCd { sid, .. }
        | Command::CfgiCdAll { sid }
        | Command::AtcInv { sid, .. }
        | Command::PrefetchConfig { sid, .. }
        | Command::PrefetchAddr { sid, .. }
        | Command::PriResp { sid, .. }
        | Command::Resume { sid, .. }
        | Command::StallTerm { sid } => Some(sid),
        _ => None,
    }
}

/// `isolation`: a physical command of entry `e` reaches a VMID other than
/// the guest's (or every VMID), a StreamID of a device the guest does not
/// own, or, for a command that names a StreamID, another of its devices.
fn crosses(smmu: &Smmu, b: &GuestBatch, e: &GuestEntry, step: u32) -> Option<Violation> {
    // A command that names a StreamID may reach only the device behind
    // it; one that names none (a TLBI) any of the guest's devices (as
    // Linux follows a TLBI with ATC_INVs of the domain's devices).
    let names_sid = Command::decode_permissive(e.words)
        .ok()
        .as_ref()
        .and_then(cmd_sid)
        .is_some();
    let named: Vec<u32> = if names_sid {
        e.expect
            .iter()
            .filter_map(|w| Command::decode(*w).ok().as_ref().and_then(cmd_sid))
            .collect()
    } else {
        b.sids.clone()
    };
    let why = e.host.iter().find_map(|w| {
        // The SMMU refuses an illegal command: it reaches nothing.
        let c = Command::decode(*w).ok()?;
        if let Some(scope) = tlbi_scope(&c, smmu.opts.e2h) {
            return match scope.vmid {
                Some(v) if v == b.vmid => None,
                Some(v) => Some((
                    Agent::from(Holder::SmmuIotlb),
                    format!("{c} reaches VMID {v}"),
                )),
                None => Some((
                    Agent::from(Holder::SmmuIotlb),
                    format!("{c} reaches every VMID"),
                )),
            };
        }
        let sids: Vec<u32> = match cfgi_scope(&c) {
            Some(tlbcheck_hw::smmu::config::CfgiScope::SteRange { first, last }) => smmu
                .devices
                .iter()
                .map(|d| d.sid)
                .filter(|s| (first..=last).contains(s))
                .collect(),
            _ => cmd_sid(&c).into_iter().collect(),
        };
        let sid = sids.into_iter().find(|s| !named.contains(s))?;
        let agent = match c {
            Command::AtcInv { .. } => smmu
                .devices
                .iter()
                .position(|d| d.sid == sid)
                .map_or(Agent::SmmuConfig, |d| Holder::Atc(d as u16).into()),
            _ => Agent::SmmuConfig,
        };
        Some(if b.sids.contains(&sid) {
            (
                agent,
                format!("{c} reaches StreamID {sid:#x}, which the command did not name"),
            )
        } else {
            (
                agent,
                format!("{c} reaches StreamID {sid:#x}, a device the guest does not own"),
            )
        })
    })?;
    let (agent, what) = why;
    Some(Violation {
        kind: ViolationKind::Isolation,
        step,
        agent,
        entry: None,
        provenance: None,
        frame: None,
        detail: format!(
            "{} became, on {}: {}; {what}",
            guest_cmd(b, e),
            b.host,
            host_cmds(e)
        ),
    })
}

/// Something a cache may hold.
#[derive(Copy, Clone)]
enum Held {
    Tlb(Holder, TlbEntry, Provenance),
    Cfg(CfgEntry, u32),
}

impl Held {
    fn still_in(&self, smmu: &Smmu) -> bool {
        match *self {
            Held::Tlb(Holder::Atc(d), e, _) => smmu.devices[d as usize].atc.contains(&e),
            Held::Tlb(_, e, _) => smmu.iotlb.contains(&e),
            Held::Cfg(c, _) => smmu.config.contains(&c),
        }
    }
}

/// Applies `cmds` and a CMD_SYNC to a copy of the SMMU, as a correct SMMU
/// would for the guest. They are performed directly, not queued: the
/// physical queue may be full or stopped by the host's own commands, and
/// the guest's expectation must not shrink with it. Words that do not
/// decode are none of a correct SMMU's commands and change nothing.
fn ideal<'a>(s: &State, cmds: impl Iterator<Item = &'a [u64; 2]>, step: u32) -> Option<Box<Smmu>> {
    let mut smmu = s.machine.smmu.clone()?;
    let mut mem = s.machine.mem.clone();
    for w in cmds.copied().chain([Command::SYNC_SEV.encode()]) {
        if let Ok(c) = Command::decode(w) {
            smmu.perform(&mut mem, &c, step);
        }
    }
    Some(smmu)
}

/// `missed-guest-invalidation`: an entry that the guest's commands, done
/// by a correct SMMU now, would remove is still held after the host's
/// commands completed.
fn missed(s: &State, b: &GuestBatch, step: u32) -> Option<Violation> {
    let believed: Vec<&GuestEntry> = b
        .entries
        .iter()
        .filter(|e| e.believed && !e.expect.is_empty())
        .collect();
    if believed.is_empty() {
        return None;
    }
    // Both sides end with a CMD_SYNC, which also completes invalidations
    // other threads have in flight: only what the guest's commands add
    // to that counts.
    let base = ideal(s, std::iter::empty(), step)?;
    let all = ideal(s, believed.iter().flat_map(|e| e.expect.iter()), step)?;
    let iotlb = base
        .iotlb
        .iter()
        .map(|(e, p)| Held::Tlb(Holder::SmmuIotlb, *e, *p));
    let atcs = base.devices.iter().enumerate().flat_map(|(d, dev)| {
        dev.atc
            .iter()
            .map(move |(e, p)| Held::Tlb(Holder::Atc(d as u16), *e, *p))
    });
    let cfg = base.config.iter().map(|(c, since)| Held::Cfg(*c, *since));
    let stale = iotlb.chain(atcs).chain(cfg).find(|h| !h.still_in(&all))?;
    let blamed = believed
        .iter()
        .find(|e| ideal(s, e.expect.iter(), step).is_some_and(|one| !stale.still_in(&one)))
        .unwrap_or(&believed[0]);
    let what = |who: String, held: String| {
        format!(
            "{} became, on {}: {}; the guest believes it removed, but {who} may still hold {held}",
            guest_cmd(b, blamed),
            b.host,
            host_cmds(blamed)
        )
    };
    Some(match stale {
        Held::Tlb(holder, e, p) => {
            let detail = what(format!("the {holder}"), e.to_string());
            stale_entry(
                ViolationKind::MissedGuestInvalidation,
                step,
                holder,
                (e, p),
                None,
                detail,
            )
        }
        Held::Cfg(c, since) => Violation {
            kind: ViolationKind::MissedGuestInvalidation,
            step,
            agent: Agent::SmmuConfig,
            entry: None,
            provenance: Some(Provenance {
                step: since,
                source: c.location().first,
            }),
            frame: None,
            detail: what("the SMMU config cache".to_string(), c.to_string()),
        },
    })
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

/// The CPU's explicit access to `va` before an ISB: `freed-frame-mapped`
/// when an entry its own completed TLBIs removed, which it may still use
/// (Arm ARM D8.17.8, see [`tlbcheck_hw::machine::Machine::unsynced`]),
/// translates `va` into a freed frame.
fn own_access(
    model: &Model,
    s: &State,
    cpu: u8,
    ctx: usize,
    va: Va,
    write: bool,
    step: u32,
) -> Option<Violation> {
    let c = &model.contexts[ctx];
    let stage = c.access_stage();
    let input = c.access_input(va);
    let (e, p, pa) = s.machine.unsynced(cpu).iter().find_map(|&(e, p)| {
        let tagged = e.kind == EntryKind::Leaf
            && e.regime == c.regime
            && e.vmid == c.tag_vmid()
            && e.stage() == stage
            && (stage == Stage::S2 || e.asid.is_none_or(|a| a == c.asid));
        // The entry's stage is the one the context's accesses use, so a
        // stage-1 output is final: the context has no stage 2.
        let pa = Pa(e.translate(input).filter(|_| tagged)?.get());
        (s.machine.mem.owner(Pfn::of(pa)) == FrameOwner::Free).then_some((e, p, pa))
    })?;
    let detail = format!(
        "CPU {cpu} {} VA {:#x} with no ISB after the DSB that completed the TLBI removing {e}: its own access may still use that entry, which maps freed PA {:#x}",
        if write { "writes" } else { "reads" },
        va.0,
        pa.0
    );
    Some(stale_entry(
        ViolationKind::FreedFrameMapped,
        step,
        Holder::Cpu(cpu),
        (e, p),
        None,
        detail,
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
