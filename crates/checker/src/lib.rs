//! # tlbcheck-checker: verdicts from the hardware model
//!
//! - [`setup`]: sets a machine up and validates it (frames in the pool,
//!   first memory contents, contexts, the SMMU's registers and structures);
//! - [`builder`]: builds and validates models (threads, their operations,
//!   contexts, locks);
//! - [`model`]: a machine, threads running [`program`]s, synchronisation,
//!   and the state explored;
//! - [`op`]: the operations a program emits, one explored step each;
//! - [`program`]: threads as programs ([`program::Program`]); a fixed list
//!   of operations ([`program::Script`]) is the simplest;
//! - [`sync`]: locks, RCU and sequence counts as enabling conditions;
//! - [`por`]: which steps commute, for sleep-set reduction;
//! - [`rules`]: one rule per expectation, producing the named
//!   [`violation`]s of docs/design.md;
//! - [`mod@explore`]: exhaustive breadth-first search with exact
//!   deduplication over compactly [`store`]d states, shortest
//!   counterexamples, honest coverage (`ok` only when complete);
//! - [`random`]: seeded random walks and ddmin shrinking;
//! - [`cost`]: what one run costs: steps counted by kind, and an
//!   estimated time from a table of per-item costs;
//! - [`trace`]: counterexample traces (text, JSON) that replay exactly.
//!
//! ```text
//! let verdict = tlbcheck_checker::explore(&model, Bounds::default());
//! if let Some(trace) = verdict.trace { print!("{}", trace.render_text()) }
//! ```

pub mod builder;
pub mod cost;
pub mod explore;
pub mod model;
pub mod op;
pub mod por;
pub mod program;
pub mod random;
pub mod rules;
pub mod setup;
pub mod store;
pub mod sync;
pub mod trace;
pub mod violation;

pub use builder::{BuildError, Features, ModelBuilder};
pub use explore::{explore, Conclusion, Coverage, Stats, Verdict};
pub use model::{Bounds, Choice, Model, State, Thread};
pub use op::{Op, Rely};
pub use program::{ProgState, Program, Script};
pub use trace::{run, Trace};
pub use violation::{Agent, Violation, ViolationKind};
