//! Counterexample traces: numbered steps with what changed in which cache,
//! rendered as text or JSON, and replayed exactly from their choices.

use crate::model::{touches, Choice, Model, Op, StepEffects};
use crate::violation::Violation;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use tlbcheck_hw::smmu::cmd::Command;
use tlbcheck_hw::smmu::model::tlbi_scope;
use tlbcheck_hw::tlb::{EntryKind, InvalScope, TlbEntry};

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
    let mut executed: Vec<Option<(u8, &Op)>> = Vec::new();
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
        let (actor, op) = if record {
            model.describe(&s, c)
        } else {
            Default::default()
        };
        if record {
            executed.push(match c {
                Choice::Thread(t) => {
                    let th = &model.threads[t as usize];
                    Some((th.cpu, &th.ops[s.pcs[t as usize] as usize]))
                }
                Choice::RcuCallback(_) => None,
            });
        }
        let mut fx = StepEffects::default();
        let v = model.step(&mut s, c, n, record.then_some(&mut fx));
        taken.push(c);
        if record {
            steps.push(TraceStep {
                step: n,
                actor,
                op,
                changes: fx.changes,
            });
        }
        if v.is_some() {
            violation = v;
            break;
        }
    }
    let should_have_removed = match (&violation, record) {
        (Some(v), true) => v.entry.map(|e| blame(model, &executed, &e, &v.agent)),
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

/// An invalidation issued on the trace that reached the stale entry's
/// addresses: where, what, and whether a barrier or CMD_SYNC completed it.
struct Candidate {
    step: u32,
    cpu: u8,
    text: String,
    scope: InvalScope,
    /// A CPU TLBI in its IS form (else local); SMMU commands count as broadcast.
    broadcast: bool,
    smmu: bool,
    completed: bool,
}

/// Which cache holds a stale entry, as named in a violation's agent.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Holder {
    Cpu,
    Iotlb,
    Atc,
}

fn holder_of(agent: &str) -> Holder {
    if agent.starts_with("ATC") {
        Holder::Atc
    } else if agent.starts_with("SMMU") {
        Holder::Iotlb
    } else {
        Holder::Cpu
    }
}

/// Names the last invalidation that could have removed the stale entry from
/// the cache `agent` names, and says why it did not.
fn blame(model: &Model, executed: &[Option<(u8, &Op)>], entry: &TlbEntry, agent: &str) -> String {
    let holder = holder_of(agent);
    let smmu_opts = model.machine.smmu.as_ref().map(|m| m.opts);
    let e2h = smmu_opts.is_some_and(|o| o.e2h);
    let mut last: Option<Candidate> = None;
    for (i, ran) in executed.iter().enumerate() {
        if let Some((cpu, op)) = *ran {
            let step = i as u32 + 1;
            let candidate =
                |text: String, scope: InvalScope, broadcast: bool, smmu: bool| Candidate {
                    step,
                    cpu,
                    text,
                    scope,
                    broadcast,
                    smmu,
                    completed: false,
                };
            match op {
                // CPU TLBIs reach CPUs, and the SMMU's TLB through BTM; never an ATC.
                Op::Tlbi {
                    text,
                    scope,
                    broadcast,
                } if holder != Holder::Atc && touches(scope, entry) => {
                    last = Some(candidate(format!("tlbi {text}"), *scope, *broadcast, false));
                }
                Op::SmmuCmd { text, words } if holder != Holder::Cpu => {
                    let scope = Command::decode(*words)
                        .ok()
                        .and_then(|cmd| match (holder, &cmd) {
                            // ATC_INV reaches only ATCs (SMMUv3 4.5.1), over its aligned span.
                            (Holder::Atc, Command::AtcInv { .. }) => {
                                cmd.invalidated_range().map(|r| InvalScope {
                                    range: Some(entry.input_range().same_space(r)),
                                    ..atc_scope(entry)
                                })
                            }
                            (Holder::Iotlb, _) => tlbi_scope(&cmd, e2h),
                            _ => None,
                        });
                    if let Some(scope) = scope.filter(|sc| touches(sc, entry)) {
                        last = Some(candidate(format!("smmu cmd {text}"), scope, true, true));
                    }
                }
                Op::Dsb { kind } => {
                    let completes = |l: &&mut Candidate| {
                        !l.smmu && l.cpu == cpu && kind.completes_tlbi(l.broadcast)
                    };
                    if let Some(l) = last.as_mut().filter(completes) {
                        l.completed = true;
                    }
                }
                Op::SmmuSync => {
                    if let Some(l) = last.as_mut().filter(|l| l.smmu) {
                        l.completed = true;
                    }
                }
                _ => {}
            }
        }
    }
    let Some(l) = last else {
        return match holder {
            Holder::Atc => {
                "no ATC_INV reaching it was issued (TLBIs, CPU or SMMU, never reach a device ATC)"
                    .to_string()
            }
            _ => "no invalidation covering it was issued".to_string(),
        };
    };
    let scope = l.scope;
    let why = if holder == Holder::Iotlb && !l.smmu && !smmu_opts.is_some_and(|o| o.btm && !o.ptm) {
        "a CPU TLBI reaches the SMMU only with broadcast TLB maintenance (SMMU_IDR0.BTM set, SMMU_CR2.PTM clear)".to_string()
    } else if entry.kind == EntryKind::Walk && scope.leaf_only {
        "a last-level (leaf-only) form keeps walk-cache entries".to_string()
    } else if let Some(t) = scope.ttl_level.filter(|&t| {
        (entry.kind == EntryKind::Leaf && entry.level != t)
            || (entry.kind == EntryKind::Walk && entry.level >= t)
    }) {
        format!(
            "its TTL hint names level {t} but the entry is at level {}",
            entry.level
        )
    } else if scope.granule.is_some_and(|g| g != entry.granule) {
        "it names another granule than the entry's tables".to_string()
    } else if !l.completed && l.smmu {
        "no CMD_SYNC completed it".to_string()
    } else if !l.completed {
        "no DSB completed it".to_string()
    } else if !l.broadcast {
        "it is a local (non-IS) form: it reaches the issuing CPU only".to_string()
    } else if holder == Holder::Atc {
        "the ATC refilled from the SMMU TLB after it: the TLBI must complete (CMD_SYNC) before the ATC_INV (SMMUv3 4.5.1)"
            .to_string()
    } else {
        "the entry was refilled after it was performed (a value walkers could still read while it was in flight)"
            .to_string()
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
        for s in &self.steps {
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
