//! Counterexample traces: numbered steps with what changed in which cache,
//! rendered as text or JSON, and replayed exactly from their choices.

use crate::model::{Choice, Model};
use crate::op::{Op, Rely};
use crate::violation::Violation;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use tlbcheck_hw::machine::Machine;
use tlbcheck_hw::smmu::cmd::Command;
use tlbcheck_hw::smmu::model::{tlbi_scope, Smmu};
use tlbcheck_hw::tlb::{Holder, InvalScope, MayHold, Miss, TlbEntry};

/// One executed step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    /// 1-based step number.
    pub step: u32,
    /// Who acted ("t0 (CPU 0)", "RCU").
    pub actor: String,
    /// What it did.
    pub op: String,
    /// What changed in caches and memory visibility.
    pub changes: Vec<String>,
    /// The high-level operation the step belongs to, if its program said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// A run of a model: the choices that drive it, the steps, and the
/// violation it ends in (if any). The JSON form replays exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// Scenario name.
    pub scenario: String,
    /// The transitions taken, in order: replaying them reproduces the run.
    pub choices: Vec<Choice>,
    /// The executed steps.
    pub steps: Vec<TraceStep>,
    /// The violation the run ends in.
    pub violation: Option<Violation>,
    /// Which earlier step should have removed the stale entry, and why it did not.
    pub should_have_removed: Option<String>,
}

/// A choice that is not enabled where a trace says it was taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("step {step}: {choice:?} is not enabled here (the trace does not belong to this scenario, or the scenario changed)")]
pub struct ReplayError {
    /// Step at which replay diverged.
    pub step: u32,
    /// The choice that could not be taken.
    pub choice: Choice,
}

/// Runs `choices` from the initial state, stopping at the first violation.
/// With `lenient`, choices that are not enabled are skipped (used when
/// shrinking); otherwise they are an error.
pub fn run(
    model: &Model,
    choices: &[Choice],
    lenient: bool,
    record: bool,
) -> Result<Trace, ReplayError> {
    let mut s = model.initial();
    let mut enabled = Vec::new();
    let mut taken = Vec::new();
    let mut steps = Vec::new();
    // (CPU, op) of every thread step, in order, for the blame line.
    let mut executed: Vec<Option<(u8, Op)>> = Vec::new();
    let mut violation = None;
    for &c in choices {
        model.choices(&s, &mut enabled);
        if !enabled.contains(&c) {
            if lenient {
                continue;
            }
            return Err(ReplayError {
                step: taken.len() as u32 + 1,
                choice: c,
            });
        }
        let n = taken.len() as u32 + 1;
        let before = record.then(|| {
            executed.push(match c {
                Choice::Thread(t) => {
                    let op = model.next_op(&s, t as usize).map(|e| e.op.into_owned());
                    op.map(|op| (model.threads[t as usize].cpu, op))
                }
                Choice::RcuCallback(_) => None,
            });
            (model.describe(&s, c), s.machine.clone())
        });
        let v = model.step(&mut s, c, n);
        taken.push(c);
        if let Some(((actor, op, origin), machine)) = before {
            steps.push(TraceStep {
                step: n,
                actor,
                op,
                changes: diff(&machine, &s.machine),
                origin,
            });
        }
        if v.is_some() {
            violation = v;
            break;
        }
    }
    if violation.is_none() {
        // A run that ends where nothing can move but a thread is unfinished.
        model.choices(&s, &mut enabled);
        if enabled.is_empty() {
            violation = model.stuck(&s, taken.len() as u32);
        }
    }
    let should_have_removed = match (&violation, record) {
        (Some(v), true) => match (v.entry, v.agent.holder()) {
            (Some(e), Some(h)) => Some(blame(model, &executed, &e, h)),
            _ => None,
        },
        _ => None,
    };
    Ok(Trace {
        scenario: model.name.clone(),
        choices: taken,
        steps,
        violation,
        should_have_removed,
    })
}

/// An invalidation issued on the trace that was meant for the stale entry
/// (it reaches the entry's tags and addresses): where, what, how it
/// missed if it did, and whether a barrier or CMD_SYNC completed it.
struct Candidate {
    step: u32,
    cpu: u8,
    text: String,
    reach: Result<(), Miss>,
    /// A CPU TLBI in its IS form (else local); SMMU commands count as broadcast.
    broadcast: bool,
    smmu: bool,
    completed: bool,
    /// The issuing CPU ran an ISB after the DSB that completed it.
    synced: bool,
}

/// Names the last invalidation that was meant to remove the stale entry
/// from `holder`, and says why it did not. The scope rule is the hardware
/// model's ([`InvalScope::reach`]): an invalidation whose tags, stages or
/// range never reach the entry is not a candidate.
fn blame(model: &Model, executed: &[Option<(u8, Op)>], entry: &TlbEntry, holder: Holder) -> String {
    let smmu_opts = model.machine.smmu.as_ref().map(|m| m.opts);
    let e2h = smmu_opts.is_some_and(|o| o.e2h);
    let mut last: Option<Candidate> = None;
    for (i, ran) in executed.iter().enumerate() {
        let Some((cpu, op)) = ran else { continue };
        let cpu = *cpu;
        let step = i as u32 + 1;
        let mut consider = |text: String, scope: InvalScope, broadcast: bool, smmu: bool| {
            let reach = scope.reach(entry);
            if reach.is_ok() || reach.is_err_and(Miss::near) {
                last = Some(Candidate {
                    step,
                    cpu,
                    text,
                    reach,
                    broadcast,
                    smmu,
                    completed: false,
                    synced: false,
                });
            }
        };
        match op {
            // CPU TLBIs reach CPUs, and the SMMU's TLB through BTM; never an ATC.
            Op::Tlbi {
                text,
                scope,
                broadcast,
                ..
            } if !matches!(holder, Holder::Atc(_)) => {
                consider(format!("tlbi {text}"), *scope, *broadcast, false);
            }
            Op::SmmuCmd { text, words } if !matches!(holder, Holder::Cpu(_)) => {
                let Ok(cmd) = Command::decode(*words) else {
                    continue;
                };
                let scope = match (holder, &cmd) {
                    // ATC_INV reaches only ATCs (SMMUv3 4.5.1), over its aligned span.
                    (Holder::Atc(_), Command::AtcInv { .. }) => {
                        cmd.invalidated_range().map(|r| InvalScope {
                            range: Some(entry.input_range().same_space(r)),
                            ..atc_scope(entry)
                        })
                    }
                    (Holder::SmmuIotlb, _) => tlbi_scope(&cmd, e2h),
                    _ => None,
                };
                if let Some(scope) = scope {
                    consider(format!("smmu cmd {text}"), scope, true, true);
                }
            }
            Op::Dsb { kind } => {
                if let Some(l) = last.as_mut() {
                    if !l.smmu && l.cpu == cpu && kind.completes_tlbi(l.broadcast) {
                        l.completed = true;
                    }
                }
            }
            Op::SmmuSync { .. } => {
                if let Some(l) = last.as_mut().filter(|l| l.smmu) {
                    l.completed = true;
                }
            }
            Op::Barrier { isb: true, .. } => {
                if let Some(l) = last.as_mut() {
                    if !l.smmu && l.cpu == cpu && l.completed {
                        l.synced = true;
                    }
                }
            }
            _ => {}
        }
    }
    let Some(l) = last else {
        return match holder {
            Holder::Atc(_) => {
                "no ATC_INV reaching it was issued (TLBIs, CPU or SMMU, never reach a device ATC)"
                    .to_string()
            }
            _ => "no invalidation covering it was issued".to_string(),
        };
    };
    let btm = smmu_opts.is_some_and(|o| o.btm && !o.ptm);
    // The violation is the issuer's own access, the last step run.
    let own_access = executed
        .iter()
        .rev()
        .flatten()
        .next()
        .is_some_and(|(_, op)| matches!(op, Op::Rely(Rely::Access { .. })));
    let why = match l.reach {
        _ if holder == Holder::SmmuIotlb && !l.smmu && !btm => "a CPU TLBI reaches the SMMU only with broadcast TLB maintenance (SMMU_IDR0.BTM set, SMMU_CR2.PTM clear)".to_string(),
        // A TTL hint promises a leaf at that level and table entries
        // only above it (Arm ARM D8.17.5.3).
        Err(Miss::Ttl { hint }) if entry.kind == tlbcheck_hw::tlb::EntryKind::Walk => format!(
            "its TTL hint promises a leaf at level {hint}, which reaches walk-cache entries only above that level, and this one is at level {}",
            entry.level
        ),
        Err(Miss::Ttl { hint }) => format!(
            "its TTL hint names level {hint} but the entry is at level {}",
            entry.level
        ),
        Err(miss) => miss.to_string(),
        Ok(()) if !l.completed && l.smmu => "no CMD_SYNC completed it".to_string(),
        Ok(()) if !l.completed => "no DSB completed it".to_string(),
        Ok(()) if !l.broadcast => {
            "it is a local (non-IS) form: it reaches the issuing CPU only".to_string()
        }
        Ok(()) if own_access && !l.synced && holder == Holder::Cpu(l.cpu) => "it completed, but the issuing CPU ran no ISB after the completing DSB, so its own later accesses may still use the entry (Arm ARM D8.17.8)".to_string(),
        Ok(()) if matches!(holder, Holder::Atc(_)) => "the ATC refilled from the SMMU TLB after it: the TLBI must complete (CMD_SYNC) before the ATC_INV (SMMUv3 4.5.1)".to_string(),
        Ok(()) => "the entry was refilled after it was performed (a value walkers could still read while it was in flight)".to_string(),
    };
    format!("step {} ({}) did not remove it: {why}", l.step, l.text)
}

/// A scope matching the tags of an ATC entry, for range comparisons.
fn atc_scope(entry: &TlbEntry) -> InvalScope {
    InvalScope {
        regime: entry.regime,
        stages: tlbcheck_hw::tlb::StageSel::ALL,
        vmid: Some(entry.vmid),
        asid: tlbcheck_hw::tlb::AsidSel::Any,
        range: None,
        granule: None,
        leaf_only: false,
        ttl_level: None,
    }
}

impl Trace {
    /// The trace as numbered text lines.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        // A high-level operation heads the run of steps it emitted.
        let mut heading: Option<(&str, &str)> = None;
        for s in &self.steps {
            if let Some(o) = &s.origin {
                if heading != Some((s.actor.as_str(), o.as_str())) {
                    let _ = writeln!(out, "     [{o}]");
                }
            }
            heading = s.origin.as_deref().map(|o| (s.actor.as_str(), o));
            let _ = writeln!(out, "{:>3}. {:<16} {}", s.step, s.actor, s.op);
            for c in &s.changes {
                let _ = writeln!(out, "       {c}");
            }
        }
        if let Some(v) = &self.violation {
            let _ = writeln!(out, "\nviolation {} at step {}", v.kind, v.step);
            let _ = writeln!(out, "  {}", v.detail);
            if let (Some(e), Some(p)) = (v.entry, v.provenance) {
                let _ = writeln!(out, "  agent:  {}", v.agent);
                let _ = writeln!(out, "  entry:  {e}");
                let since = match p.step {
                    0 => "set-up".to_string(),
                    n => format!("step {n}"),
                };
                let _ = writeln!(
                    out,
                    "  holdable since {since} (descriptor at {:#x})",
                    p.source
                );
            }
            if let Some(w) = &self.should_have_removed {
                let _ = writeln!(out, "  {w}");
            }
            if let Some(f) = v.frame {
                let _ = writeln!(
                    out,
                    "  frame {:#x}: was {}, freed at step {}, now back in the allocator (the next allocation reuses it)",
                    f.frame, f.was, f.freed_at
                );
            }
        }
        out
    }
}

/// Lines describing how the machine's caches and memory visibility changed.
fn diff(before: &Machine, after: &Machine) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (b, a)) in before.cpus.iter().zip(&after.cpus).enumerate() {
        may_hold_diff(&format!("CPU {i}"), &b.tlb, &a.tlb, &mut out);
    }
    for (b, a) in before.pending.iter().zip(&after.pending) {
        if a.len() > b.len() {
            if let Some(p) = a.iter().next() {
                out.push(format!(
                    "CPU {}: TLBI pending until DSB{} ({} entries covered now)",
                    p.issuer,
                    if p.broadcast { " ISH" } else { " NSH" },
                    p.doomed.len()
                ));
            }
        }
    }
    if let (Some(b), Some(a)) = (&before.smmu, &after.smmu) {
        smmu_diff(b, a, &mut out);
    }
    let stores_before = before.mem.pending_stores().len();
    let stores_after = after.mem.pending_stores().len();
    if stores_after > stores_before {
        out.push("store not yet visible to table walkers (needs DSB)".to_string());
    } else if stores_after < stores_before {
        out.push(format!(
            "{} store(s) now visible to table walkers",
            stores_before - stores_after
        ));
    }
    out
}

/// Lines for the entries `name`'s may-hold set lost and gained.
fn may_hold_diff(name: &str, before: &MayHold, after: &MayHold, out: &mut Vec<String>) {
    for (e, _) in before.iter() {
        if !after.contains(e) {
            out.push(format!("{name}: - {e}"));
        }
    }
    for (e, p) in after.iter() {
        if !before.contains(e) {
            out.push(format!(
                "{name}: + {e} (from descriptor at {:#x})",
                p.source
            ));
        }
    }
}

/// Lines describing how the SMMU's caches, queue and devices changed.
fn smmu_diff(b: &Smmu, a: &Smmu, out: &mut Vec<String>) {
    may_hold_diff("SMMU IOTLB", &b.iotlb, &a.iotlb, out);
    for (i, (bd, ad)) in b.devices.iter().zip(&a.devices).enumerate() {
        may_hold_diff(&format!("ATC of device {i}"), &bd.atc, &ad.atc, out);
        if bd.state != ad.state {
            out.push(format!("device {i}: {:?}", ad.state));
        }
    }
    for (e, _) in b.config.iter() {
        if !a.config.contains(e) {
            out.push(format!("SMMU config cache: - {e}"));
        }
    }
    for (e, _) in a.config.iter() {
        if !b.config.contains(e) {
            out.push(format!("SMMU config cache: + {e}"));
        }
    }
    if a.pending_invalidations() > b.pending_invalidations() {
        out.push(format!(
            "SMMU: {} invalidation(s) consumed, waiting for CMD_SYNC",
            a.pending_invalidations()
        ));
    }
    if a.cmdq.error.is_some() && b.cmdq.error.is_none() {
        out.push(format!(
            "SMMU: command queue stopped, CONS.ERR = CERROR_ILL at index {}, GERROR.CMDQ_ERR active",
            a.cmdq.cons_index()
        ));
    }
    if a.cmdq.error.is_none() && b.cmdq.error.is_some() {
        out.push(format!(
            "SMMU: GERRORN acknowledged the command error; consumption resumed, CONS = {}",
            a.cmdq.cons_index()
        ));
    }
    if a.evtq.ring.prod != b.evtq.ring.prod {
        out.push("SMMU: event recorded in the Event queue".to_string());
    }
}
