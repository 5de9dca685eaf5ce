//! TLBs: entries, invalidation scopes, the may-hold set and its closure
//! under reachability, and the realistic TLB.

pub mod closure;
pub mod entry;
pub mod mayhold;
pub mod realistic;

use serde::{Deserialize, Serialize};
use std::fmt;

/// A translation cache that may hold an entry: a CPU's TLB, the SMMU's
/// IOTLB, or a device's ATC. Reports name them; the scope rules differ
/// (a CPU TLBI reaches the IOTLB only through BTM and never an ATC).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "cache", content = "index")]
pub enum Holder {
    /// The TLB (with walk caches) of CPU `n`.
    Cpu(u8),
    /// The SMMU's TLB (with walk caches).
    SmmuIotlb,
    /// The ATC of device `n` (its index in the SMMU model).
    Atc(u16),
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Cpu(n) => write!(f, "CPU {n}"),
            Holder::SmmuIotlb => f.write_str("SMMU IOTLB"),
            Holder::Atc(n) => write!(f, "ATC of device {n}"),
        }
    }
}

pub use entry::{
    Access, AsidSel, EntryKind, InvalScope, Mapping, Miss, Perms, Regime, Stage, StageSel, TlbEntry,
};
pub use mayhold::{MayHold, Provenance};
pub use realistic::{RealisticTlb, TlbStats};
