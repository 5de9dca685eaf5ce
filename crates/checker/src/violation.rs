//! The named violations (docs/design.md, "Violations") and their reports.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use tlbcheck_hw::mem::FrameOwner;
use tlbcheck_hw::tlb::{Holder, Provenance, TlbEntry};

/// A violation name. The names are part of the user interface: scenarios
/// say `expect violation walk-cache-uaf`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViolationKind {
    /// A data frame is freed while an agent may still translate to it.
    FreedFrameMapped,
    /// A page-table frame is freed while an agent may still hold a
    /// walk-cache entry pointing into it (seed 003).
    WalkCacheUaf,
    /// The software relies on write protection while an agent may still
    /// hold a writable entry.
    StaleWrite,
    /// A resumed access can keep faulting on a stale entry although the
    /// table now grants it (seeds 000/004).
    FaultLivelock,
    /// An STE/CD changed or was freed while the SMMU may hold the old one.
    StaleConfig,
    /// An access or invalidation crosses an ASID, VMID or StreamID the
    /// actor does not own (seed 002).
    Isolation,
    /// A guest's invalidation, as translated by the host, left an entry the
    /// guest believes gone (seed 002).
    MissedGuestInvalidation,
    /// A reachable state in which an unfinished thread can never run again
    /// (waiting on a device that never stalls, a CMD_SYNC behind a stopped
    /// queue, a grace period that waits for its own reader, a lock never
    /// released).
    Stuck,
    /// A frame is freed that is not allocated: freed twice, or never
    /// allocated (a program's own bookkeeping error, which the kernel's
    /// allocator would turn into memory corruption).
    BadFree,
    /// A valid descriptor is replaced by another valid one in a way that
    /// needs break-before-make: another output address, a table replaced
    /// by a block or the reverse, the contiguous bit or the memory
    /// attributes changed.
    Bbm,
    /// A table descriptor is stored that points at a frame that is not,
    /// at that moment, a table of the same stage serving the next level
    /// (freed, data, or another level).
    BadTable,
}

impl ViolationKind {
    /// Every kind, in report order.
    pub const ALL: [ViolationKind; 11] = [
        ViolationKind::FreedFrameMapped,
        ViolationKind::WalkCacheUaf,
        ViolationKind::StaleWrite,
        ViolationKind::FaultLivelock,
        ViolationKind::StaleConfig,
        ViolationKind::Isolation,
        ViolationKind::MissedGuestInvalidation,
        ViolationKind::Stuck,
        ViolationKind::BadFree,
        ViolationKind::Bbm,
        ViolationKind::BadTable,
    ];

    /// The name used in scenarios and reports.
    pub const fn name(self) -> &'static str {
        match self {
            ViolationKind::FreedFrameMapped => "freed-frame-mapped",
            ViolationKind::WalkCacheUaf => "walk-cache-uaf",
            ViolationKind::StaleWrite => "stale-write",
            ViolationKind::FaultLivelock => "fault-livelock",
            ViolationKind::StaleConfig => "stale-config",
            ViolationKind::Isolation => "isolation",
            ViolationKind::MissedGuestInvalidation => "missed-guest-invalidation",
            ViolationKind::Stuck => "stuck",
            ViolationKind::BadFree => "bad-free",
            ViolationKind::Bbm => "bbm",
            ViolationKind::BadTable => "bad-table",
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown violation name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown violation `{0}` (expected one of: freed-frame-mapped, walk-cache-uaf, stale-write, fault-livelock, stale-config, isolation, missed-guest-invalidation, stuck, bad-free, bbm, bad-table)")]
pub struct UnknownViolation(pub String);

impl FromStr for ViolationKind {
    type Err = UnknownViolation;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ViolationKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownViolation(s.to_string()))
    }
}

/// What happened to the frame a stale entry points at.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameFate {
    /// Physical address of the frame.
    pub frame: u64,
    /// What it held before it was freed.
    pub was: FrameOwner,
    /// Step that freed it.
    pub freed_at: u32,
}

/// Who a violation is about.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "agent")]
pub enum Agent {
    /// A translation cache that may hold a stale entry.
    Cache {
        /// Which one.
        holder: Holder,
    },
    /// The SMMU's configuration cache (STEs, CDs, L1 descriptors).
    SmmuConfig,
    /// A thread of the model (an isolation breach, a stuck thread).
    Thread {
        /// Its index.
        index: u8,
    },
    /// An RCU callback (a `call_rcu` free run after its grace period).
    RcuCallback,
}

impl Agent {
    /// The cache holding a stale translation, if this agent is one.
    pub fn holder(self) -> Option<Holder> {
        match self {
            Agent::Cache { holder } => Some(holder),
            _ => None,
        }
    }
}

impl From<Holder> for Agent {
    fn from(holder: Holder) -> Agent {
        Agent::Cache { holder }
    }
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Agent::Cache { holder } => holder.fmt(f),
            Agent::SmmuConfig => f.write_str("SMMU config cache"),
            Agent::Thread { index } => write!(f, "thread {index}"),
            Agent::RcuCallback => f.write_str("RCU callback"),
        }
    }
}

/// One violation, detected at the step where it became possible.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Which rule.
    pub kind: ViolationKind,
    /// Step (1-based) at which it became possible.
    pub step: u32,
    /// The agent involved.
    pub agent: Agent,
    /// The stale entry, where one is involved.
    pub entry: Option<TlbEntry>,
    /// Which step made that entry holdable, and from which descriptor.
    pub provenance: Option<Provenance>,
    /// The frame involved, where one is.
    pub frame: Option<FrameFate>,
    /// One sentence saying what went wrong.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at step {}: {}", self.kind, self.step, self.detail)
    }
}
