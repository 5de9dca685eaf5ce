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
use tlbcheck_hw::addr::{AddrRange, Va};
use tlbcheck_hw::mem::{Pfn, FRAME_SHIFT};
use tlbcheck_hw::smmu::cmd::Command;
use tlbcheck_hw::smmu::config::CfgEntry;
use tlbcheck_hw::smmu::model::{cfgi_scope, tlbi_scope, DeviceState, Smmu};
use tlbcheck_hw::tlb::{Access, EntryKind, Holder, InvalScope, Provenance, Stage, TlbEntry};
use tlbcheck_hw::vmsa::{translate, Context};

/// `freed-frame-mapped`, `walk-cache-uaf` and `stale-config` (a): frees
/// `frame` and reports an agent that may still hold a translation into it
/// (a leaf to the data, a walk-cache entry to the table) or a configuration
/// structure in or pointing into it.
pub fn free(s: &mut State, frame: Pfn, step: u32) -> Option<Violation> {
    let was = s.machine.mem.owner(frame);
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
    // A frame already free is a double free the caller reported; the
    // allocator state stays as it was.
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
/// would for the guest.
fn ideal<'a>(s: &State, cmds: impl Iterator<Item = &'a [u64; 2]>, step: u32) -> Option<Box<Smmu>> {
    let mut smmu = s.machine.smmu.clone()?;
    let mut mem = s.machine.mem.clone();
    for w in cmds.copied().chain([Command::SYNC_SEV.encode()]) {
        let _ = smmu.submit(&mut mem, w, step);
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
