//! # tlbcheck-hw: the hardware model
//!
//! The architectural side of tlbcheck: what Armv8-A and SMMUv3 hardware is
//! *allowed* to do with translations, so that the checker can hold software
//! to the worst case.
//!
//! - [`addr`]: VA / IPA / PA types and granule geometry.
//! - [`mem`]: simulated physical memory: frames, owners, a LIFO allocator,
//!   descriptor stores that walkers may not see before a DSB.
//! - [`vmsa`]: VMSAv8-64 descriptors and the stage-1, stage-2 and nested walker.
//! - [`tlb`]: TLB entries and invalidation scopes; the *may-hold* set (every
//!   entry the architecture lets an agent hold now) and a realistic
//!   set-associative TLB for the cost model.
//! - [`cpu`]: CPU TLB maintenance: TLBI operations with bit-exact operands.
//! - [`machine`]: memory + CPUs: descriptor stores, TLBI issue, DSB completion.
//! - [`plist`]: a persistent list (shared tails) for state that grows by
//!   one element per step, such as the TLBIs in flight.
//! - [`smmu`]: SMMUv3 commands, events and configuration structures.
//! - `testing` (feature `testing`): fixtures shared by tests and benchmarks.
//!
//! References are to the Arm Architecture Reference Manual for A-profile
//! (DDI 0487, "Arm ARM") and the SMMUv3 specification (IHI 0070).

pub mod addr;
pub mod cpu;
pub mod machine;
pub mod mem;
pub mod plist;
pub mod smmu;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tlb;
pub mod vmsa;
