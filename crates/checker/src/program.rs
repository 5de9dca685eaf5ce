//! Threads as programs.
//!
//! A thread runs a [`Program`]: given its small per-thread state
//! ([`ProgState`], kept in the explored state) and the machine as it is
//! now, the program says what it does next. A protocol reads the page
//! tables when it runs and branches on them; a fixed list of operations
//! ([`Script`]) is the simplest program. The checker executes the returned
//! [`Op`] as one step, then tells the program what the op produced (the
//! frame an allocation returned, the value a sequence count read), so the
//! program can move on.

use crate::op::Op;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use tlbcheck_hw::machine::Machine;

/// Number of registers a program may keep between steps.
pub const REGS: usize = 4;

/// A program's position and registers: all a program may remember between
/// steps. It is part of the explored state, so it must say nothing about
/// history a later step cannot observe.
///
/// `callee` is one level of call: a program that runs another program for
/// a span of its steps (an mm operation whose mmu-notifier call runs
/// KVM's stage-2 unmap) keeps its own position and registers unchanged
/// meanwhile and lends the callee this frame. It is all zeros when no
/// call is under way, so programs that make none hash as before.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProgState {
    /// Position in the program.
    pub pc: u32,
    /// Values the program keeps (addresses, counts, frames it allocated).
    pub regs: [u64; REGS],
    /// The called program's frame.
    #[serde(default)]
    pub callee: Frame,
}

/// A called program's position and registers ([`ProgState::callee`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    /// Position in the called program.
    pub pc: u32,
    /// Its registers.
    pub regs: [u64; REGS],
}

impl ProgState {
    /// The state the called program runs from: the callee frame, with no
    /// call of its own (calls nest one level).
    pub fn callee_state(&self) -> ProgState {
        ProgState {
            pc: self.callee.pc,
            regs: self.callee.regs,
            callee: Frame::default(),
        }
    }

    /// Keeps the called program's state `st` in the callee frame.
    pub fn set_callee(&mut self, st: &ProgState) {
        self.callee = Frame {
            pc: st.pc,
            regs: st.regs,
        };
    }
}

/// What an executed op gave back to its program.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct OpResult {
    /// The frame number an allocation returned, or the value a sequence
    /// count read; 0 otherwise.
    pub value: u64,
}

/// One operation a program emits, with the high-level operation it belongs
/// to (for traces: `munmap 0x1000` above the instructions it issued).
/// Borrowed where the program holds the op already, so that asking a
/// thread what it does next (done for every thread in every state) copies
/// nothing.
#[derive(Clone, Debug)]
pub struct Emit<'a> {
    /// The op.
    pub op: Cow<'a, Op>,
    /// The high-level operation that emitted it, if any.
    pub origin: Option<Cow<'a, str>>,
}

/// A thread's program.
///
/// Implementations must be deterministic functions of their arguments:
/// exploration, replay and shrinking re-run them and rely on getting the
/// same op for the same state.
pub trait Program: fmt::Debug + Send + Sync {
    /// The next operation from `st`, reading `m` as it is now; `None` when
    /// the program has finished.
    fn next<'a>(&'a self, st: &ProgState, m: &Machine) -> Option<Emit<'a>>;

    /// Moves `st` past the op [`Program::next`] returned, which produced
    /// `result`.
    fn advance(&self, st: &mut ProgState, m: &Machine, result: OpResult);

    /// Whether the program may still allocate a frame from `st`: while some
    /// thread may, the allocator's free-list order is observable and is
    /// kept in the state.
    fn may_allocate(&self, st: &ProgState) -> bool;

    /// Whether `next` and `advance` ignore the machine (a fixed list of
    /// ops). Partial-order reduction takes a program that reads the
    /// machine as reading all of it, so only such programs' steps can be
    /// independent of others' writes.
    fn ignores_machine(&self) -> bool {
        false
    }
}

/// A fixed list of operations: the program of a low-level scenario thread.
#[derive(Clone, Debug, Default)]
pub struct Script {
    ops: Vec<Op>,
    /// Index of the last `Alloc` + 1 (0: none), so `may_allocate` is O(1).
    allocs_until: u32,
}

impl Script {
    /// A script of `ops` in program order.
    pub fn new(ops: Vec<Op>) -> Script {
        let allocs_until = ops
            .iter()
            .rposition(|o| matches!(o, Op::Alloc { .. }))
            .map_or(0, |i| i as u32 + 1);
        Script { ops, allocs_until }
    }

    /// The operations.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}

impl Program for Script {
    fn next<'a>(&'a self, st: &ProgState, _: &Machine) -> Option<Emit<'a>> {
        self.ops.get(st.pc as usize).map(|op| Emit {
            op: Cow::Borrowed(op),
            origin: None,
        })
    }

    fn advance(&self, st: &mut ProgState, _: &Machine, _: OpResult) {
        st.pc += 1;
    }

    fn may_allocate(&self, st: &ProgState) -> bool {
        st.pc < self.allocs_until
    }

    fn ignores_machine(&self) -> bool {
        true
    }
}
