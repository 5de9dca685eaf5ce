//! A checkable model: a machine, threads running programs, synchronisation,
//! and the state the explorer searches.
//!
//! Models are made by [`crate::builder::ModelBuilder`], which validates
//! everything a scenario states. What a program can still get wrong at run
//! time (releasing a lock it does not hold, an unaligned store) is reported
//! as a violation of the thread, never a panic.

use crate::op::Op;
use crate::program::{OpResult, ProgState, Program};
use crate::rules;
use crate::sync::{SyncDone, SyncOp, SyncState};
use crate::violation::{Agent, Violation, ViolationKind};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tlbcheck_hw::addr::Pa;
use tlbcheck_hw::machine::Machine;
use tlbcheck_hw::smmu::model::DeviceState;
use tlbcheck_hw::vmsa::Context;

/// A thread: a program running on one CPU.
#[derive(Clone, Debug)]
pub struct Thread {
    /// Name used in traces.
    pub name: String,
    /// CPU the thread runs on.
    pub cpu: u8,
    /// What it runs.
    pub program: Arc<dyn Program>,
    /// VMIDs this thread may invalidate (`None`: any, e.g. the host).
    pub owns_vmids: Option<Vec<u16>>,
}

/// Exploration bounds (a search that reaches one is inconclusive) and
/// options.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    /// Longest path explored (`u32::MAX`: unbounded; every model whose
    /// threads terminate has finitely many states).
    pub max_depth: u32,
    /// Most distinct states stored.
    pub max_states: u64,
    /// Most resident memory, in bytes (checked as states are stored).
    pub max_memory: u64,
    /// Longest wall time, in milliseconds (`u64::MAX`: none).
    pub timeout_ms: u64,
    /// Prune transitions with sleep sets ([`crate::por`]): the same states,
    /// verdicts and shortest counterexamples, fewer steps executed.
    pub sleep_sets: bool,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_depth: u32::MAX,
            max_states: 50_000_000,
            max_memory: default_max_memory(),
            timeout_ms: u64::MAX,
            sleep_sets: true,
        }
    }
}

/// Half the machine's memory (from /proc/meminfo), or 4 GiB where unknown.
pub fn default_max_memory() -> u64 {
    static HALF: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HALF.get_or_init(|| {
        let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        });
        total.map_or(4 << 30, |kb| kb * 1024 / 2)
    })
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
    /// Locks and sequence counts, all free.
    pub sync: SyncState,
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

/// Everything that changes as the model runs. Nothing in it records
/// history that no later step can observe: states reached by different
/// paths that behave the same are equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Memory, TLBs, TLBIs in flight, the SMMU.
    pub machine: Machine,
    /// Each thread's program state.
    pub threads: Vec<ProgState>,
    /// Locks, RCU, sequence counts.
    pub sync: SyncState,
}

impl Model {
    /// The initial state.
    pub fn initial(&self) -> State {
        let mut s = State {
            machine: self.machine.clone(),
            threads: vec![ProgState::default(); self.threads.len()],
            sync: self.sync.clone(),
        };
        self.canonicalize(&mut s);
        s
    }

    /// The op thread `t` runs next in `s`, if it has not finished.
    pub fn next_op<'a>(&'a self, s: &State, t: usize) -> Option<crate::program::Emit<'a>> {
        self.threads[t].program.next(&s.threads[t], &s.machine)
    }

    /// Whether thread `t` may run `op` in `s`; otherwise what it waits for.
    pub fn enabled(&self, s: &State, t: usize, op: &Op) -> Result<(), String> {
        let smmu = s.machine.smmu.as_deref();
        let device = |dev: usize| smmu.and_then(|m| m.devices.get(dev)).map(|d| d.state);
        match op {
            Op::Sync(o) => s.sync.enabled(t, *o).map_err(|b| b.to_string()),
            Op::Alloc { .. } if s.machine.mem.free_frames() == 0 => {
                Err("the allocator has no free frame".to_string())
            }
            // A command error stops consumption until software recovers
            // (SMMUv3 7.1): a CMD_SYNC behind it never completes.
            Op::SmmuSync { .. } => match smmu {
                Some(m) if m.cmdq.error.is_some() => Err(format!(
                    "the command queue is stopped (CERROR_ILL at index {}) and nothing recovers it",
                    m.cmdq.cons_index()
                )),
                _ => Ok(()),
            },
            // The error handler runs once the SMMU has raised the error.
            Op::SmmuCmdqRecover { .. } => match smmu {
                Some(m) if m.cmdq.error.is_some() => Ok(()),
                _ => Err("no command error has stopped the command queue".to_string()),
            },
            // Software writes a command only into a free slot (SMMUv3 3.5.1).
            Op::SmmuCmd { .. } => match smmu {
                Some(m) if m.cmdq.ring.is_full() => {
                    Err("the command queue is full and nothing consumes it".to_string())
                }
                _ => Ok(()),
            },
            // A stalled transaction waits for CMD_RESUME, a page request
            // for CMD_PRI_RESP (SMMUv3 3.12.2, 8.2).
            Op::DeviceAccess { dev, .. } => match device(*dev) {
                Some(DeviceState::Stalled { .. } | DeviceState::AwaitingPri { .. }) => {
                    Err(format!("device {dev} waits for the answer to its fault"))
                }
                _ => Ok(()),
            },
            Op::DeviceResume { dev, .. } | Op::AwaitFault { dev } => match device(*dev) {
                Some(DeviceState::Stalled { .. } | DeviceState::AwaitingPri { .. }) => Ok(()),
                _ => Err(format!("device {dev} has no fault to answer")),
            },
            _ => Ok(()),
        }
    }

    /// The transitions enabled in `s`, in a fixed order.
    pub fn choices(&self, s: &State, out: &mut Vec<Choice>) {
        out.clear();
        for t in 0..self.threads.len() {
            if let Some(e) = self.next_op(s, t) {
                if self.enabled(s, t, &e.op).is_ok() {
                    out.push(Choice::Thread(t as u8));
                }
            }
        }
        out.extend(
            s.sync
                .ready_callbacks()
                .map(|i| Choice::RcuCallback(i as u8)),
        );
    }

    /// In a state with no enabled transition, the first unfinished thread
    /// and why it cannot run: it never will (`stuck`).
    pub fn stuck(&self, s: &State, step: u32) -> Option<Violation> {
        (0..self.threads.len()).find_map(|t| {
            let e = self.next_op(s, t)?;
            let why = self.enabled(s, t, &e.op).err()?;
            Some(self.stuck_violation(t, step, format!("cannot run `{}`: {why}", e.op)))
        })
    }

    fn stuck_violation(&self, t: usize, step: u32, what: String) -> Violation {
        let th = &self.threads[t];
        Violation {
            kind: ViolationKind::Stuck,
            step,
            agent: Agent::Thread { index: t as u8 },
            entry: None,
            provenance: None,
            frame: None,
            detail: format!("thread {} (CPU {}) {what}", th.name, th.cpu),
        }
    }

    /// Human description of `choice` in `s` (before it runs): actor, op,
    /// and the high-level operation it belongs to.
    pub fn describe(&self, s: &State, choice: Choice) -> (String, String, Option<String>) {
        match choice {
            Choice::Thread(t) => {
                let th = &self.threads[t as usize];
                let e = self.next_op(s, t as usize);
                (
                    format!("{} (CPU {})", th.name, th.cpu),
                    e.as_ref().map_or(String::new(), |e| e.op.to_string()),
                    e.and_then(|e| e.origin.map(|o| o.into_owned())),
                )
            }
            Choice::RcuCallback(i) => (
                "RCU".to_string(),
                format!(
                    "callback: free frame {:#x}",
                    s.sync.callback(i as usize).frame.base().0
                ),
                None,
            ),
        }
    }

    /// Executes `choice` in `s` as step number `step`. Returns a violation
    /// when this step makes one possible.
    pub fn step(&self, s: &mut State, choice: Choice, step: u32) -> Option<Violation> {
        let v = match choice {
            Choice::Thread(t) => self.thread_step(s, t as usize, step),
            Choice::RcuCallback(i) => {
                let cb = s.sync.take_callback(i as usize);
                rules::free(s, cb.frame, step, Agent::RcuCallback)
            }
        };
        self.canonicalize(s);
        v
    }

    /// Drops what no later step can observe: the free list's order once no
    /// thread may allocate again.
    fn canonicalize(&self, s: &mut State) {
        let allocating = self
            .threads
            .iter()
            .zip(&s.threads)
            .any(|(th, st)| th.program.may_allocate(st));
        if !allocating {
            s.machine.mem.forget_free_order();
        }
    }

    /// Memory ordering across a lock handoff: descriptor stores pending on
    /// the releasing CPU are published with the lock, and the thread that
    /// takes it has observed them, so its later DSB completes them for its
    /// TLBIs (Arm is other-multi-copy atomic, Arm ARM B2.3; the herd7 VMSA
    /// model forbids the stale outcome in coRRExpNExp+DSB.LD-TLBI-DSB-ISB
    /// and WRC+shoot+dsb-isb).
    fn lock_handoff(&self, s: &mut State, cpu: u8, op: SyncOp) {
        if let Some(i) = SyncState::releases(op) {
            let mine = s.machine.mem.completable_by(cpu);
            let pending = s.machine.mem.pending_stores();
            s.sync.publish(i, mine, |&(pa, old)| {
                pending.iter().any(|p| p.pa == pa && p.old == old)
            });
        } else if let Some(i) = SyncState::acquires(op) {
            let seen = s.sync.published(i).to_vec();
            if !seen.is_empty() {
                s.machine.mem.observe(&seen, cpu);
            }
        }
    }

    fn thread_step(&self, s: &mut State, t: usize, step: u32) -> Option<Violation> {
        let th = &self.threads[t];
        let emit = th.program.next(&s.threads[t], &s.machine)?;
        let op = emit.op;
        let cpu = th.cpu;
        let mut result = OpResult::default();
        let mut done = true;
        let misuse = |what: String| Some(self.stuck_violation(t, step, what));
        let v = match &*op {
            Op::Store { pa, value } => {
                if let Some(v) = rules::bbm(self, s, t, *pa, *value, step)
                    .or_else(|| rules::table_target(self, s, t, *pa, *value, step))
                {
                    return Some(v);
                }
                if let Err(e) = s.machine.store(step, cpu, *pa, *value) {
                    return misuse(format!("cannot store: {e}"));
                }
                None
            }
            Op::Tlbi {
                scope, broadcast, ..
            } => {
                let v = rules::isolation(th, t, scope, step);
                s.machine.tlbi(step, cpu, *scope, *broadcast);
                v
            }
            Op::Dsb { kind } => {
                s.machine.dsb(step, cpu, *kind);
                None
            }
            Op::Free { frame } => rules::free(s, *frame, step, Agent::Thread { index: t as u8 }),
            Op::Alloc { owner } => match s.machine.mem.alloc(*owner) {
                Ok(pfn) => {
                    result.value = pfn.0;
                    None
                }
                Err(e) => return misuse(format!("cannot allocate: {e}")),
            },
            Op::Sync(o) => match s.sync.run(t, *o) {
                Ok(SyncDone::Done { value }) => {
                    result.value = value;
                    self.lock_handoff(s, cpu, *o);
                    None
                }
                Ok(SyncDone::Waiting) => {
                    done = false;
                    None
                }
                Err(e) => return misuse(e),
            },
            Op::Rely(r) => rules::rely(self, s, cpu, r, step),
            Op::SmmuCmd { words, .. } | Op::SmmuSync { words } => {
                let m = &mut s.machine;
                let Some(smmu) = m.smmu.as_mut() else {
                    return misuse("issues an SMMU command, but the machine has no SMMU".into());
                };
                if let Err(e) = smmu.submit(&mut m.mem, *words, step) {
                    return misuse(format!("cannot submit: {e}"));
                }
                None
            }
            Op::DeviceAccess { dev, va, write } => {
                let m = &mut s.machine;
                let Some(smmu) = m.smmu.as_mut().filter(|x| *dev < x.devices.len()) else {
                    return misuse(format!("device {dev} does not exist"));
                };
                smmu.device_access(&mut m.mem, *dev, *va, *write);
                None
            }
            Op::Barrier { isb: true, .. } => {
                s.machine.isb(cpu);
                None
            }
            Op::AwaitFault { .. } | Op::Barrier { isb: false, .. } => None,
            Op::SmmuCmdqRecover { recover } => {
                let m = &mut s.machine;
                let Some(smmu) = m.smmu.as_mut() else {
                    return misuse("recovers an SMMU, but the machine has no SMMU".into());
                };
                let Some(err) = smmu.cmdq.error else {
                    return misuse("no command error to recover from".into());
                };
                let at = smmu.cmdq.ring.slot(smmu.cmdq.ring.cons);
                let words = [m.mem.read(at), m.mem.read(Pa(at.0 + 8))];
                smmu.acknowledge_error(&mut m.mem, recover(err, words), step);
                None
            }
            Op::DeviceResume { dev, respond } => rules::device_resume(s, *dev, *respond, step),
        };
        if done {
            th.program.advance(&mut s.threads[t], &s.machine, result);
        }
        v
    }
}
