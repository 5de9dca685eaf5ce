//! TLBs: entries, invalidation scopes, the may-hold set and its closure
//! under reachability, and the realistic TLB.

pub mod closure;
pub mod entry;
pub mod mayhold;
pub mod realistic;

pub use entry::{
    Access, AsidSel, EntryKind, InvalScope, Mapping, Perms, Regime, Stage, StageSel, TlbEntry,
};
pub use mayhold::{MayHold, Provenance};
pub use realistic::{RealisticTlb, TlbStats};
