//! Linux, as named versions.
//!
//! A [`Version`] fixes every behaviour that changed between the kernels
//! the seed threads discuss (docs/design.md §6): where the secondary TLBs
//! of an mmu-notifier subscription are invalidated, what range they get,
//! how arm64 splits a range flush into TLBI instructions.

pub mod arm64;
pub mod dma;
pub mod mm;
pub mod sva;

use std::fmt;
use std::str::FromStr;

/// A kernel version a scenario runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// Linux v6.5, before Alistair Popple's series. Secondary TLBs that
    /// share the CPU page table are invalidated through the notifier's
    /// `invalidate_range` op, called from `mmu_notifier_invalidate_range_end`
    /// (unless the caller used `_only_end`) and from the generic
    /// `tlb_flush_mmu_tlbonly` with the gather's range; a permission
    /// upgrade (`ptep_set_access_flags`) notifies nobody; a nested
    /// `tlb_finish_mmu` resets the range to (-1, -1) before that call.
    /// The SMMU SVA notifier computes `size = end - start` and has no
    /// whole-ASID path (the code that mainline 38b14e2e3de9 patches).
    /// Reclaim flushes each page at once (no arm64 `arch_tlbbatch_*`).
    Linux6_5,
    /// Alistair Popple's "mmu_notifiers: Notify on pte permission upgrades"
    /// (22 May 2023, based on v6.2, never merged; seed 004): v6.5
    /// behaviour plus, after a write fault's `ptep_set_access_flags`
    /// changed the PTE, an `invalidate_range_start`/`_end` pair once the
    /// page-table lock is dropped, which reaches `invalidate_range`.
    Popple2023_05,
    /// Linux v6.6, with Popple's series merged (seed 000): 1af5a8109904
    /// (rename to `arch_invalidate_secondary_tlbs`), 38b14e2e3de9 (the SMMU
    /// SVA notifier maps a ULONG_MAX size to a TLBI by ASID), 6bbd42e2df8f
    /// (arm64 `flush_tlb_mm`, `__flush_tlb_page_nosync` and
    /// `__flush_tlb_range` call the secondaries themselves) and
    /// ec8832d007cb (`invalidate_range_end` no longer does). As merged,
    /// `__flush_tlb_range` hands the secondaries `(end, end)`: its loop had
    /// advanced `start` (fixed much later by f7edb07ad7c6), which the SMMU
    /// turns into a whole-ASID invalidation. Also 43b3dfdd0455 (arm64
    /// batches reclaim's flushes: [`Version::tlbbatch`]), merged in the
    /// same window.
    Linux6_6,
}

impl Version {
    /// Every version, in age order.
    pub const ALL: [Version; 3] = [Version::Linux6_5, Version::Popple2023_05, Version::Linux6_6];

    /// The name scenarios use.
    pub const fn name(self) -> &'static str {
        match self {
            Version::Linux6_5 => "linux-6.5",
            Version::Popple2023_05 => "popple-2023-05",
            Version::Linux6_6 => "linux-6.6",
        }
    }

    /// Whether the arm64 flush functions call
    /// `mmu_notifier_arch_invalidate_secondary_tlbs` (6bbd42e2df8f).
    pub const fn arch_notifies(self) -> bool {
        matches!(self, Version::Linux6_6)
    }

    /// Whether `mmu_notifier_invalidate_range_end` and the generic
    /// `tlb_flush_mmu_tlbonly` call the secondaries' `invalidate_range`
    /// (removed by ec8832d007cb and 6bbd42e2df8f).
    pub const fn range_end_notifies(self) -> bool {
        !self.arch_notifies()
    }

    /// Whether a write fault that upgraded a PTE notifies after dropping
    /// the page-table lock (seed 004's patch).
    pub const fn upgrade_notifies(self) -> bool {
        matches!(self, Version::Popple2023_05)
    }

    /// Whether arm64 batches reclaim's TLB flushes
    /// (`ARCH_WANT_BATCHED_UNMAP_TLB_FLUSH`, 43b3dfdd0455 "arm64: support
    /// batched/deferred tlb shootdown during page reclamation/migration").
    /// It was reviewed as v10 in July 2023, after v6.5-rc1, and merged
    /// for v6.6 through the mm tree in the same merge window as Popple's
    /// series, so v6.5 and seed 004's patch (on v6.5 here) flush each page
    /// at once with `ptep_clear_flush`. From v6.6, `try_to_unmap_one`
    /// defers (`should_defer_flush`: arm64's `arch_tlbbatch_should_defer`
    /// refuses only on ARM64_WORKAROUND_REPEAT_TLBI, whatever the CPU
    /// count).
    pub const fn tlbbatch(self) -> bool {
        matches!(self, Version::Linux6_6)
    }

    /// The arm64 flush code of this version.
    pub const fn arm64(self) -> arm64::FlushCode {
        match self {
            Version::Linux6_6 => arm64::FlushCode::V6_6,
            _ => arm64::FlushCode::V6_5,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl crate::version::Named for Version {
    const WHAT: &'static str = "kernel";
    const ALL: &'static [Version] = &Version::ALL;
    fn name(self) -> &'static str {
        Version::name(self)
    }
}

impl FromStr for Version {
    type Err = crate::version::UnknownName;
    fn from_str(s: &str) -> Result<Version, Self::Err> {
        crate::version::parse(s)
    }
}
