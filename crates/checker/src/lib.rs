//! # tlbcheck-checker: verdicts from the hardware model
//!
//! - [`model`]: a machine, threads of explicit operations (descriptor
//!   stores, TLBI, DSB, frame alloc/free, RCU), and the state explored;
//! - [`violation`]: the named violations of design.md §3;
//! - [`explore`]: exhaustive breadth-first search with exact deduplication,
//!   shortest counterexamples and a statement of coverage;
//! - [`random`]: seeded random walks and ddmin shrinking;
//! - [`trace`]: counterexample traces (text, JSON) that replay exactly.
//!
//! ```text
//! let verdict = tlbcheck_checker::explore::explore(&model, Bounds::default());
//! if let Some(trace) = verdict.trace { print!("{}", trace.render_text()) }
//! ```

pub mod explore;
pub mod model;
pub mod random;
pub mod trace;
pub mod violation;

pub use explore::{explore, Coverage, Stats, Verdict};
pub use model::{Bounds, Choice, Model, Op, State, Thread};
pub use trace::{run, Trace};
pub use violation::{Violation, ViolationKind};
