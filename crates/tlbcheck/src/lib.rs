//! # tlbcheck: the front end
//!
//! - [`scenario`]: the scenario language (lexer, parser, AST, lowering to a
//!   checker [`Model`](tlbcheck_checker::Model));
//! - [`codec`]: TLBI operands and SMMU commands from `key=value` fields and
//!   back, shared by scenarios and the `encode` / `decode` commands;
//! - [`check`]: running a loaded scenario and judging its expectation;
//! - [`cost`]: counts and estimated time of each variant beside its
//!   verdict (`tlbcheck cost`);
//! - [`stream`]: one interleaving's instruction stream (`tlbcheck trace`);
//! - [`import`]: traces recorded elsewhere (QEMU's SMMUv3 trace events)
//!   and the audit of their invalidations;
//! - [`report`]: a counterexample as a self-contained HTML timeline;
//! - [`error`]: located errors (file, line, column) rendered by miette.
//!
//! The `tlbcheck` binary (src/main.rs) is a thin command line over these.

pub mod check;
pub mod codec;
pub mod cost;
pub mod error;
pub mod import;
pub mod report;
pub mod scenario;
pub mod stream;

pub use error::ScenarioError;
pub use scenario::{load, Loaded};
