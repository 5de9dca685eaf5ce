//! TLBs: entries, invalidation scopes, the may-hold set and the realistic TLB.

pub mod entry;

pub use entry::{Access, AsidSel, EntryKind, InvalScope, Perms, Regime, Stage, StageSel, TlbEntry};
