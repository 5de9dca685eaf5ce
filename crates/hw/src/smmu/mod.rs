//! SMMUv3: commands, event records and in-memory configuration structures.

pub mod cmd;
pub mod event;
