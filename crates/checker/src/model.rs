//! A checkable model: a machine, threads of explicit operations, RCU, and
//! the state the explorer searches.

use crate::violation::{FrameFate, Violation, ViolationKind};
use serde::{Deserialize, Serialize};
use std::fmt;
use tlbcheck_hw::addr::{AddrRange, Pa, Va};
use tlbcheck_hw::machine::{Dsb, Machine};
use tlbcheck_hw::mem::{FrameOwner, Pfn, FRAME_SHIFT};
use tlbcheck_hw::smmu::cmd::{Command, PriResp, SyncCs};
use tlbcheck_hw::smmu::config::CfgEntry;
use tlbcheck_hw::smmu::model::{DeviceState, Smmu};
use tlbcheck_hw::tlb::{
    Access, AsidSel, EntryKind, InvalScope, MayHold, Provenance, Stage, TlbEntry,
};
use tlbcheck_hw::vmsa::{translate, Context};

/// One explicit operation of a thread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub enum Op {
    /// A 64-bit descriptor store by the thread's CPU.
    Store {
        /// Word address.
        pa: Pa,
        /// New value.
        value: u64,
    },
    /// A TLBI instruction, already decoded to its scope.
    Tlbi {
        /// Mnemonic and operand as written, for traces.
        text: String,
        /// What it removes.
        scope: InvalScope,
        /// IS form.
        broadcast: bool,
    },
    /// A DSB.
    Dsb {
        /// Which one.
        kind: Dsb,
    },
    /// Returns a frame to the allocator.
    Free {
        /// The frame.
        frame: Pfn,
    },
    /// Takes the next frame from the allocator (the most recently freed)
    /// for a new owner.
    Alloc {
        /// What the frame will hold.
        owner: FrameOwner,
    },
    /// Enters an RCU read-side critical section.
    RcuLock,
    /// Leaves it.
    RcuUnlock,
    /// Queues freeing `frame` after the next grace period (call_rcu).
    CallRcuFree {
        /// The frame.
        frame: Pfn,
    },
    /// Waits for a grace period (synchronize_rcu).
    SynchronizeRcu,
    /// The software now relies on `va` being read-only in context `ctx`
    /// (COW, dirty logging, mprotect): no agent may hold a writable entry.
    RelyReadOnly {
        /// Context index.
        ctx: usize,
        /// Virtual (or, for a stage-2-only context, intermediate) address.
        va: u64,
    },
    /// The thread's CPU retries an access after its fault was handled: the
    /// retry must not be able to fault again on a stale entry.
    Retry {
        /// Context index.
        ctx: usize,
        /// Address.
        va: u64,
        /// A write (else a read).
        write: bool,
    },
    /// The thread writes one command into the SMMU Command queue and moves
    /// PROD; the SMMU consumes it at once (its effect still waits for a
    /// CMD_SYNC). An illegal command stops the queue (CERROR_ILL).
    SmmuCmd {
        /// The command as written, for traces.
        text: String,
        /// Its 16 bytes (dw0, dw1).
        words: [u64; 2],
    },
    /// The thread issues CMD_SYNC and waits for its completion; it cannot
    /// proceed while the queue is stopped by a command error.
    SmmuSync,
    /// Device `dev` issues a transaction (a device thread's op). It waits
    /// while the device is stalled or waiting for a PRI response. A fault is
    /// recorded in the Event queue; with stall the device stalls until
    /// RESUME; with ATS + PRI it sends a page request.
    DeviceAccess {
        /// Device index.
        dev: usize,
        /// Input address (VA, or IPA for a stage-2-only stream).
        va: u64,
        /// A write (else a read).
        write: bool,
    },
    /// The fault handler resumes device `dev` (waiting until it is stalled or
    /// has a page request): CMD_RESUME with retry, or CMD_PRI_RESP success;
    /// the device then retries through its caches. Reports `fault-livelock`
    /// if the device may still use a stale entry that denies the access
    /// while the current tables grant it.
    DeviceResume {
        /// Device index.
        dev: usize,
    },
    /// The software relies on device `dev`'s stream using the configuration
    /// now in memory (after changing an STE/CD and its invalidation):
    /// `stale-config` if the config cache may still hold a different copy.
    SmmuRelyConfig {
        /// Device index.
        dev: usize,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Store { pa, value } => write!(f, "store {pa} = {value:#x}"),
            Op::Tlbi { text, .. } => write!(f, "tlbi {text}"),
            Op::Dsb { kind } => write!(f, "dsb {}", format!("{kind:?}").to_lowercase()),
            Op::Free { frame } => write!(f, "free frame {:#x}", frame.base().0),
            Op::Alloc { owner } => write!(f, "alloc frame as {owner}"),
            Op::RcuLock => f.write_str("rcu_read_lock"),
            Op::RcuUnlock => f.write_str("rcu_read_unlock"),
            Op::CallRcuFree { frame } => write!(f, "call_rcu(free frame {:#x})", frame.base().0),
            Op::SynchronizeRcu => f.write_str("synchronize_rcu"),
            Op::RelyReadOnly { ctx, va } => write!(f, "rely read-only ctx {ctx} VA {va:#x}"),
            Op::Retry { ctx, va, write } => {
                write!(
                    f,
                    "retry {} ctx {ctx} VA {va:#x}",
                    if *write { "write" } else { "read" }
                )
            }
            Op::SmmuCmd { text, .. } => write!(f, "smmu cmd {text}"),
            Op::SmmuSync => f.write_str("smmu CMD_SYNC (wait)"),
            Op::DeviceAccess { dev, va, write } => write!(
                f,
                "device {dev} {} VA {va:#x}",
                if *write { "write" } else { "read" }
            ),
            Op::DeviceResume { dev } => write!(f, "resume device {dev} (retry)"),
            Op::SmmuRelyConfig { dev } => {
                write!(f, "rely on current SMMU config of device {dev}")
            }
        }
    }
}

/// A thread: a CPU running a fixed list of operations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    /// Name used in traces.
    pub name: String,
    /// CPU the thread runs on.
    pub cpu: u8,
    /// Its operations, in program order.
    pub ops: Vec<Op>,
    /// VMIDs this thread may invalidate (`None`: any, e.g. the host).
    pub owns_vmids: Option<Vec<u16>>,
}

/// Exploration bounds.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    /// Longest path explored.
    pub max_depth: u32,
    /// Most distinct states stored.
    pub max_states: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_depth: 200,
            max_states: 2_000_000,
        }
    }
}

/// A model ready to explore: the initial machine and the threads.
#[derive(Clone, Debug)]
pub struct Model {
    /// Scenario name.
    pub name: String,
    /// The machine after set-up.
    pub machine: Machine,
    /// The threads.
    pub threads: Vec<Thread>,
    /// Translation contexts, by index (for ops naming a context).
    pub contexts: Vec<Context>,
    /// Names of contexts, for reports.
    pub context_names: Vec<String>,
}

/// One transition: a thread's next op, or a ready RCU callback.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "index")]
pub enum Choice {
    /// Thread `n` executes its next op.
    Thread(u8),
    /// The RCU callback at queue position `n` runs (its grace period is over).
    RcuCallback(u8),
}

/// A queued call_rcu callback.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
struct RcuCallback {
    frame: Pfn,
    /// Readers (thread bits) that were inside a critical section when it was
    /// queued; it may run once they have all left.
    waits_for: u32,
}

/// Everything that changes as the model runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Memory, TLBs, TLBIs in flight.
    pub machine: Machine,
    /// Next op index per thread.
    pub pcs: Vec<u16>,
    readers: u32,
    callbacks: Vec<RcuCallback>,
    /// Per thread: readers a synchronize_rcu in progress still waits for.
    gp_waits: Vec<Option<u32>>,
}

/// What a step did, for traces.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepEffects {
    /// Lines such as "CPU 1 - stage-1 leaf L3 VA 0x0 ... (TLBI completed)".
    pub changes: Vec<String>,
}

impl Model {
    /// The initial state.
    pub fn initial(&self) -> State {
        State {
            machine: self.machine.clone(),
            pcs: vec![0; self.threads.len()],
            readers: 0,
            callbacks: Vec::new(),
            gp_waits: vec![None; self.threads.len()],
        }
    }

    /// The transitions enabled in `s`, in a fixed order.
    pub fn choices(&self, s: &State, out: &mut Vec<Choice>) {
        out.clear();
        for (t, th) in self.threads.iter().enumerate() {
            let pc = s.pcs[t] as usize;
            if pc >= th.ops.len() {
                continue;
            }
            if th.ops[pc] == Op::SynchronizeRcu && s.gp_waits[t].is_some_and(|w| w != 0) {
                continue;
            }
            if !smmu_op_enabled(&th.ops[pc], s) {
                continue;
            }
            out.push(Choice::Thread(t as u8));
        }
        for (i, cb) in s.callbacks.iter().enumerate() {
            if cb.waits_for == 0 {
                out.push(Choice::RcuCallback(i as u8));
            }
        }
    }

    /// Human description of `choice` in `s` (before it runs).
    pub fn describe(&self, s: &State, choice: Choice) -> (String, String) {
        match choice {
            Choice::Thread(t) => {
                let th = &self.threads[t as usize];
                let op = &th.ops[s.pcs[t as usize] as usize];
                (format!("{} (CPU {})", th.name, th.cpu), op.to_string())
            }
            Choice::RcuCallback(i) => {
                let cb = s.callbacks[i as usize];
                (
                    "RCU".to_string(),
                    format!("callback: free frame {:#x}", cb.frame.base().0),
                )
            }
        }
    }

    /// Executes `choice` in `s` as step number `step`. Returns a violation
    /// when this step makes one possible.
    pub fn step(
        &self,
        s: &mut State,
        choice: Choice,
        step: u32,
        fx: Option<&mut StepEffects>,
    ) -> Option<Violation> {
        let before = fx.is_some().then(|| s.machine.clone());
        let v = match choice {
            Choice::Thread(t) => self.thread_step(s, t as usize, step),
            Choice::RcuCallback(i) => {
                let cb = s.callbacks.remove(i as usize);
                self.free(s, cb.frame, step)
            }
        };
        if let (Some(fx), Some(before)) = (fx, before) {
            fx.changes = diff(&before, &s.machine);
        }
        v
    }

    fn thread_step(&self, s: &mut State, t: usize, step: u32) -> Option<Violation> {
        let th = &self.threads[t];
        let op = &th.ops[s.pcs[t] as usize];
        let cpu = th.cpu;
        let mut advance = true;
        let v = match op {
            Op::Store { pa, value } => {
                // Scenario loading validates alignment; a failure here is a bug.
                s.machine
                    .store(step, cpu, *pa, *value)
                    .expect("validated store");
                None
            }
            Op::Tlbi {
                scope, broadcast, ..
            } => {
                let v = self.isolation(th, scope, step);
                s.machine.tlbi(step, cpu, *scope, *broadcast);
                v
            }
            Op::Dsb { kind } => {
                s.machine.dsb(step, cpu, *kind);
                None
            }
            Op::Free { frame } => self.free(s, *frame, step),
            Op::Alloc { owner } => {
                // Out of frames is a scenario error caught at load time by
                // sizing the pool; treat it as a no-op here.
                let _ = s.machine.mem.alloc(*owner);
                None
            }
            Op::RcuLock => {
                s.readers |= 1 << t;
                None
            }
            Op::RcuUnlock => {
                s.readers &= !(1 << t);
                for cb in &mut s.callbacks {
                    cb.waits_for &= !(1 << t);
                }
                for w in s.gp_waits.iter_mut().flatten() {
                    *w &= !(1 << t);
                }
                None
            }
            Op::CallRcuFree { frame } => {
                s.callbacks.push(RcuCallback {
                    frame: *frame,
                    waits_for: s.readers,
                });
                None
            }
            Op::SynchronizeRcu => {
                match s.gp_waits[t] {
                    None if s.readers & !(1 << t) != 0 => {
                        s.gp_waits[t] = Some(s.readers & !(1 << t));
                        advance = false;
                    }
                    _ => s.gp_waits[t] = None,
                }
                None
            }
            Op::RelyReadOnly { ctx, va } => self.rely_read_only(s, *ctx, *va, step),
            Op::Retry { ctx, va, write } => self.retry(s, cpu, *ctx, *va, *write, step),
            Op::SmmuCmd { words, .. } => {
                let m = &mut s.machine;
                if let Some(smmu) = m.smmu.as_mut() {
                    // A full queue is a scenario sizing error; drop the command.
                    let _ = smmu.submit(&mut m.mem, *words, step);
                }
                None
            }
            Op::SmmuSync => {
                let m = &mut s.machine;
                if let Some(smmu) = m.smmu.as_mut() {
                    let _ = smmu.submit(&mut m.mem, sync_words(), step);
                }
                None
            }
            Op::DeviceAccess { dev, va, write } => {
                let m = &mut s.machine;
                if let Some(smmu) = m.smmu.as_mut() {
                    smmu.device_access(&mut m.mem, *dev, Va(*va), *write);
                }
                None
            }
            Op::DeviceResume { dev } => self.device_resume(s, *dev, step),
            Op::SmmuRelyConfig { dev } => self.rely_config(s, *dev, step),
        };
        if advance {
            s.pcs[t] += 1;
        }
        v
    }

    /// A thread that owns only some VMIDs must not issue an invalidation
    /// reaching others (design.md §3, `isolation`).
    fn isolation(&self, th: &Thread, scope: &InvalScope, step: u32) -> Option<Violation> {
        let owned = th.owns_vmids.as_ref()?;
        let crosses = match scope.vmid {
            None => true,
            Some(v) => !owned.contains(&v),
        };
        crosses.then(|| Violation {
            kind: ViolationKind::Isolation,
            step,
            agent: format!("{} (CPU {})", th.name, th.cpu),
            entry: None,
            provenance: None,
            frame: None,
            detail: format!(
                "invalidation reaches {} but the thread owns only VMID(s) {:?}",
                scope
                    .vmid
                    .map_or("every VMID".to_string(), |v| format!("VMID {v}")),
                owned
            ),
        })
    }

    fn free(&self, s: &mut State, frame: Pfn, step: u32) -> Option<Violation> {
        let was = s.machine.mem.owner(frame);
        let range = AddrRange::span(frame.base().0, FRAME_SHIFT);
        let mut holders: Vec<(String, TlbEntry, Provenance)> = s
            .machine
            .holders(range)
            .into_iter()
            .map(|(c, e, p)| (format!("CPU {c}"), e, p))
            .collect();
        let mut cfg_holders = Vec::new();
        if let Some(smmu) = &s.machine.smmu {
            holders.extend(smmu.holders(range));
            cfg_holders = smmu.config_holders(range);
        }
        // Scenario loading checks frames are in the pool and owned.
        let _ = s.machine.mem.free(frame);
        let fate = FrameFate {
            frame: frame.base().0,
            was,
            freed_at: step,
        };
        let Some((cpu, entry, prov)) = holders
            .iter()
            .find(|(_, e, _)| e.kind == EntryKind::Walk)
            .or_else(|| holders.first())
            .cloned()
        else {
            // stale-config rule (a): a frame holding a configuration
            // structure the SMMU config cache may hold, or one such a
            // structure points into (an L2 Stream/CD table, a CD table, a
            // translation table root), is freed.
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
        Some(Violation {
            kind,
            step,
            agent: cpu.clone(),
            entry: Some(entry),
            provenance: Some(prov),
            frame: Some(fate),
            detail: format!(
                "frame {:#x} ({was}) returned to the allocator while {cpu} may still hold {entry} (entries pointing into it: {})",
                frame.base().0,
                holders.len()
            ),
        })
    }

    fn rely_read_only(&self, s: &State, ctx: usize, va: u64, step: u32) -> Option<Violation> {
        let c = &self.contexts[ctx];
        for (i, cpu) in s.machine.cpus.iter().enumerate() {
            for (e, p) in candidate_leaves(cpu, c, va) {
                if e.perms.write {
                    return Some(Violation {
                        kind: ViolationKind::StaleWrite,
                        step,
                        agent: format!("CPU {i}"),
                        entry: Some(e),
                        provenance: Some(p),
                        frame: None,
                        detail: format!(
                            "the software relies on VA {va:#x} ({}) being read-only, but CPU {i} may still hold a writable {e}",
                            self.context_names[ctx]
                        ),
                    });
                }
            }
        }
        // A device sharing the address space (same tags) through the SMMU.
        let smmu = s.machine.smmu.as_ref()?;
        let (agent, e, p) = smmu
            .leaves_for_context(c, Va(va))
            .into_iter()
            .find(|(_, e, _)| e.perms.write)?;
        Some(Violation {
            kind: ViolationKind::StaleWrite,
            step,
            agent: agent.clone(),
            entry: Some(e),
            provenance: Some(p),
            frame: None,
            detail: format!(
                "the software relies on VA {va:#x} ({}) being read-only, but the {agent} may still hold a writable {e}",
                self.context_names[ctx]
            ),
        })
    }

    fn device_resume(&self, s: &mut State, dev: usize, step: u32) -> Option<Violation> {
        let m = &mut s.machine;
        let smmu = m.smmu.as_mut()?;
        let (sid, ssid) = (smmu.devices[dev].sid, smmu.devices[dev].ssid);
        let (cmd, va, write) = match smmu.devices[dev].state {
            DeviceState::Stalled { stag, va, write } => (
                Command::Resume {
                    sid,
                    stag,
                    retry: true,
                    abort: false,
                },
                va,
                write,
            ),
            DeviceState::AwaitingPri { grpid, va, write } => (
                Command::PriResp {
                    sid,
                    ssv: ssid.is_some(),
                    ssid: ssid.unwrap_or(0),
                    grpid,
                    resp: PriResp::Success,
                },
                va,
                write,
            ),
            _ => return None,
        };
        let _ = smmu.submit(&mut m.mem, cmd.encode(), step);
        if !matches!(smmu.devices[dev].state, DeviceState::Retrying { .. }) {
            return None;
        }
        let stale = smmu.stale_denials(&m.mem, dev, va, write);
        // The retry happens whatever the verdict (it may stall again).
        smmu.device_access(&mut m.mem, dev, va, write);
        let (agent, e, p) = stale.into_iter().next()?;
        Some(Violation {
            kind: ViolationKind::FaultLivelock,
            step,
            agent: agent.clone(),
            entry: Some(e),
            provenance: Some(p),
            frame: None,
            detail: format!(
                "the page table now grants device {dev}'s {} at VA {va:#x}, yet the {agent} may still hold {e} which forbids it: the retry can fault forever",
                if write { "write" } else { "read" }
            ),
        })
    }

    /// stale-config rule (b): the software relies on the SMMU using the
    /// configuration now in memory for the device's stream; any held copy
    /// of an STE, CD or L1 descriptor of that stream that differs from
    /// memory is a violation.
    fn rely_config(&self, s: &State, dev: usize, step: u32) -> Option<Violation> {
        let smmu = s.machine.smmu.as_ref()?;
        let (cfg, since) = *smmu.stale_configs(&s.machine.mem, dev).first()?;
        let detail = format!(
            "the software relies on device {dev}'s current configuration, but the SMMU config cache may still hold the old {cfg}"
        );
        Some(stale_config(step, &cfg, since, None, detail))
    }

    fn retry(
        &self,
        s: &State,
        cpu: u8,
        ctx: usize,
        va: u64,
        write: bool,
        step: u32,
    ) -> Option<Violation> {
        let c = &self.contexts[ctx];
        let access = Access { write, user: false };
        // The table must grant the access now, else a fault is legitimate.
        translate(&s.machine.mem, c, Va(va), access).ok()?;
        let tlb = &s.machine.cpus[cpu as usize];
        let (e, p) = candidate_leaves(tlb, c, va)
            .into_iter()
            .find(|(e, _)| !e.perms.allows(access))?;
        Some(Violation {
            kind: ViolationKind::FaultLivelock,
            step,
            agent: format!("CPU {cpu}"),
            entry: Some(e),
            provenance: Some(p),
            frame: None,
            detail: format!(
                "the page table now grants the {} at VA {va:#x}, yet CPU {cpu} may still hold {e} which forbids it: the retry can fault forever",
                if write { "write" } else { "read" }
            ),
        })
    }
}

/// Whether an SMMU-related op can run now: CMD_SYNC waits while the queue
/// is stopped by a command error; a device access waits while its device
/// is stalled or awaiting a PRI response; a resume waits for one of those.
fn smmu_op_enabled(op: &Op, s: &State) -> bool {
    let Some(smmu) = &s.machine.smmu else {
        return true;
    };
    match op {
        Op::SmmuSync => smmu.cmdq.error.is_none(),
        Op::DeviceAccess { dev, .. } => matches!(
            smmu.devices[*dev].state,
            DeviceState::Idle | DeviceState::Retrying { .. }
        ),
        Op::DeviceResume { dev } => matches!(
            smmu.devices[*dev].state,
            DeviceState::Stalled { .. } | DeviceState::AwaitingPri { .. }
        ),
        _ => true,
    }
}

/// CMD_SYNC with SEV completion, as Linux issues without MSI polling.
fn sync_words() -> [u64; 2] {
    Command::Sync {
        cs: SyncCs::Sev,
        msh: 3,
        msiattr: 0xf,
        msidata: 0,
        msiaddr: 0,
    }
    .encode()
}

/// A `stale-config` violation about the configuration entry `cfg`, held
/// since step `since`.
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
        agent: "SMMU config cache".to_string(),
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
    va: u64,
) -> Vec<(TlbEntry, Provenance)> {
    let stage = ctx.access_stage();
    let asid = (stage != Stage::S2).then_some(ctx.asid);
    let input = ctx.access_input(Va(va));
    cpu.tlb
        .leaves_for(ctx.regime, ctx.tag_vmid(), stage, asid, input)
        .map(|(e, p)| (*e, *p))
        .collect()
}

/// Lines describing how the CPUs' may-hold sets changed.
fn diff(before: &Machine, after: &Machine) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (b, a)) in before.cpus.iter().zip(&after.cpus).enumerate() {
        may_hold_diff(&format!("CPU {i}"), &b.tlb, &a.tlb, &mut out);
    }
    for p in &after.pending {
        if !before.pending.contains(p) {
            out.push(format!(
                "CPU {}: TLBI pending until DSB{} ({} entries covered now)",
                p.issuer,
                if p.broadcast { " ISH" } else { " NSH" },
                p.doomed.len()
            ));
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
            "SMMU: command queue stopped, CONS.ERR = CERROR_ILL at index {}",
            a.cmdq.cons_index()
        ));
    }
    if a.evtq.ring.prod != b.evtq.ring.prod {
        out.push("SMMU: event recorded in the Event queue".to_string());
    }
}

/// Whether `scope` reaches an address range (ignores level hints), used to
/// point at "the step that should have removed it".
pub fn touches(scope: &InvalScope, e: &TlbEntry) -> bool {
    let same_asid = match scope.asid {
        AsidSel::Any => true,
        AsidSel::Only { asid, .. } => e.asid.is_none_or(|a| a == asid),
    };
    scope.vmid.is_none_or(|v| v == e.vmid)
        && same_asid
        && scope.range.is_none_or(|r| r.overlaps(e.input_range()))
}
