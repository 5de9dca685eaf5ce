//! Reports meant for people: a counterexample as an HTML timeline.
//!
//! [`html::timeline`] lays a trace out as lanes (one per agent: each CPU,
//! the SMMU's IOTLB and configuration cache, each device's ATC, RCU) and
//! columns (one per step), and marks the stale entry's life, the violation
//! and the invalidation that should have removed the entry.

pub mod html;
