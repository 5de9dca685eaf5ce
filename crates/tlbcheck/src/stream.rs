//! One interleaving's instruction stream: what the threads (and the kernel
//! operations they run) issue, op by op, with operands bit-exact in hex.
//!
//! `tlbcheck trace` answers "what does kernel X issue for this munmap?":
//! it runs one schedule, by default each thread to completion in
//! declaration order, and lists every op with the high-level operation
//! ([`Emit::origin`](tlbcheck_checker::program::Emit)) that emitted it.
//! The run itself is the checker's [`trace::run`] over the chosen
//! [`Choice`]s, so the stream is the replay of a trace and stops at the
//! first violation, as a counterexample does.

use serde::Serialize;
use tlbcheck_checker::model::{Choice, Model};
use tlbcheck_checker::op::Op;
use tlbcheck_checker::trace::{self, Trace};

/// One op of the stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Line {
    /// 1-based step number (as in counterexamples).
    pub step: u32,
    /// The thread that issued it, or `RCU` for a callback.
    pub thread: String,
    /// The high-level operation it belongs to, if its program said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// What kind of op: `tlbi`, `dsb`, `smmu-cmd`, `cmd-sync`, `store`,
    /// `free`, `alloc`, `sync`, `rely`, `device`, `rcu-callback`.
    pub kind: &'static str,
    /// The instruction as text ([`Op::instruction`]).
    pub text: String,
    /// TLBI mnemonic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tlbi: Option<String>,
    /// TLBI operand `Xt`, in hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operand: Option<String>,
    /// SMMU command name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// SMMU command words (dw0, dw1), in hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub words: Option<[String; 2]>,
    /// Store address, or the base of a freed frame, in hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Stored value, in hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A run: its stream and the trace it replays.
#[derive(Clone, Debug)]
pub struct Stream {
    /// The ops, in execution order.
    pub lines: Vec<Line>,
    /// The replayed trace (its violation, if the run ends in one).
    pub trace: Trace,
}

/// A `--schedule` that names something the scenario does not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// An entry that is not a thread's name.
    #[error("schedule entry {pos} `{name}` is not a thread of this scenario (threads: {known})")]
    UnknownThread {
        /// 1-based position in the schedule.
        pos: usize,
        /// What was written.
        name: String,
        /// The scenario's threads, comma separated.
        known: String,
    },
    /// A thread named where it cannot run.
    #[error("schedule entry {pos} `{name}`: the thread cannot run here: {why}")]
    NotEnabled {
        /// 1-based position in the schedule.
        pos: usize,
        /// The thread.
        name: String,
        /// Why (finished, or what it waits for).
        why: String,
    },
}

fn hex(x: u64) -> String {
    format!("{x:#018x}")
}

/// The choices of one run: `schedule` (thread names, one step each) first,
/// then each thread to completion in declaration order. A thread that
/// cannot run is skipped until it can; ready RCU callbacks run at once.
/// The run stops at the first violation or when nothing can move.
pub fn choices(model: &Model, schedule: &[String]) -> Result<Vec<Choice>, ScheduleError> {
    let known = || {
        model
            .threads
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut wanted = Vec::new();
    for (i, name) in schedule.iter().enumerate() {
        let t = model
            .threads
            .iter()
            .position(|t| t.name == *name)
            .ok_or_else(|| ScheduleError::UnknownThread {
                pos: i + 1,
                name: name.clone(),
                known: known(),
            })?;
        wanted.push(t);
    }
    let mut s = model.initial();
    let mut enabled = Vec::new();
    let mut out = Vec::new();
    let mut pos = 0;
    // Every terminating model has a finite run; the cap only guards a
    // program that never finishes.
    for n in 1..=1_000_000u32 {
        model.choices(&s, &mut enabled);
        let c = if let Some(c) = enabled
            .iter()
            .copied()
            .find(|c| matches!(c, Choice::RcuCallback(_)))
        {
            c
        } else if let Some(&t) = wanted.get(pos) {
            pos += 1;
            let c = Choice::Thread(t as u8);
            if !enabled.contains(&c) {
                let why = match model.next_op(&s, t) {
                    None => "it has finished".to_string(),
                    Some(e) => model
                        .enabled(&s, t, &e.op)
                        .err()
                        .map_or_else(String::new, |w| format!("`{}`: {w}", e.op)),
                };
                return Err(ScheduleError::NotEnabled {
                    pos,
                    name: model.threads[t].name.clone(),
                    why,
                });
            }
            c
        } else {
            // The first thread in declaration order that can run.
            match enabled.first() {
                Some(&c) => c,
                None => break,
            }
        };
        out.push(c);
        if model.step(&mut s, c, n).is_some() {
            break;
        }
    }
    Ok(out)
}

/// Runs `choices` and lists what each step issued.
pub fn run(model: &Model, choices: &[Choice]) -> Result<Stream, trace::ReplayError> {
    let trace = trace::run(model, choices, false, true)?;
    // Re-walk the same choices to read each op before it runs (the trace
    // keeps ops as text only).
    let mut s = model.initial();
    let mut lines = Vec::new();
    for (i, &c) in trace.choices.iter().enumerate() {
        let step = i as u32 + 1;
        let line = match c {
            Choice::Thread(t) => {
                let th = &model.threads[t as usize];
                let e = model
                    .next_op(&s, t as usize)
                    .expect("a replayed choice names a thread with a next op");
                line(
                    step,
                    th.name.clone(),
                    e.origin.map(|o| o.into_owned()),
                    &e.op,
                )
            }
            Choice::RcuCallback(_) => {
                let st = &trace.steps[i];
                Line {
                    step,
                    thread: "RCU".to_string(),
                    origin: None,
                    kind: "rcu-callback",
                    text: st.op.clone(),
                    tlbi: None,
                    operand: None,
                    command: None,
                    words: None,
                    address: None,
                    value: None,
                }
            }
        };
        lines.push(line);
        model.step(&mut s, c, step);
    }
    Ok(Stream { lines, trace })
}

fn line(step: u32, thread: String, origin: Option<String>, op: &Op) -> Line {
    let mut l = Line {
        step,
        thread,
        origin,
        kind: "",
        text: op.instruction(),
        tlbi: None,
        operand: None,
        command: None,
        words: None,
        address: None,
        value: None,
    };
    l.kind = match op {
        Op::Tlbi { ins, raw, .. } => {
            l.tlbi = Some(ins.to_string());
            l.operand = raw.map(hex);
            "tlbi"
        }
        Op::Dsb { .. } => "dsb",
        Op::SmmuCmd { words, .. } => {
            l.command = tlbcheck_hw::smmu::cmd::Command::decode(*words)
                .ok()
                .map(|c| c.name().to_string());
            l.words = Some([hex(words[0]), hex(words[1])]);
            "smmu-cmd"
        }
        Op::SmmuSync { words } => {
            l.command = Some("CMD_SYNC".to_string());
            l.words = Some([hex(words[0]), hex(words[1])]);
            "cmd-sync"
        }
        Op::Store { pa, value } => {
            l.address = Some(format!("{:#x}", pa.0));
            l.value = Some(format!("{value:#x}"));
            "store"
        }
        Op::Free { frame } => {
            l.address = Some(format!("{:#x}", frame.base().0));
            "free"
        }
        Op::Alloc { .. } => "alloc",
        Op::Sync(_) => "sync",
        Op::Rely(_) => "rely",
        Op::DeviceAccess { .. } | Op::AwaitFault { .. } | Op::DeviceResume { .. } => "device",
        Op::SmmuCmdqRecover { .. } => "cmdq-recover",
        Op::Barrier { .. } => "barrier",
    };
    l
}

impl Stream {
    /// The stream as text: a `[thread] origin` header whenever the thread
    /// or the high-level operation changes, then one indented line per op.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let mut last: Option<(&str, Option<&str>)> = None;
        for l in &self.lines {
            let here = (l.thread.as_str(), l.origin.as_deref());
            if last != Some(here) {
                match &l.origin {
                    Some(o) => out.push_str(&format!("[{}] {o}\n", l.thread)),
                    None => out.push_str(&format!("[{}]\n", l.thread)),
                }
                last = Some(here);
            }
            out.push_str(&format!("{:>5}  {}\n", l.step, l.text));
        }
        if let Some(v) = &self.trace.violation {
            out.push_str(&format!(
                "\nviolation {} at step {}\n  {}\n",
                v.kind, v.step, v.detail
            ));
        }
        out
    }
}
