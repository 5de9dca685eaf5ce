//! KVM/arm64's stage-2 manager, as named versions (seed 003).
//!
//! A [`Version`] fixes what changed in the stage-2 page-table code
//! between the kernels and patches the seed thread discusses: whether an
//! unmap defers its TLBIs to one range TLBI after the walk
//! ([`Version::defers_unmap`]), which level hint a zapped table entry's
//! TLBI carries ([`Version::table_zap`]), whether zapped tables are freed
//! at once or through RCU ([`Version::unmap_frees_via_rcu`]), and how the
//! flush helpers encode their operands ([`Version::flush_code`]).
//!
//! [`tlb`] holds the hypervisor's flush helpers, [`pgtable`] the
//! stage-2 walker and its callbacks (`arch/arm64/kvm/hyp/pgtable.c`),
//! [`mmu`] the operations that call them under `kvm->mmu_lock` and RCU
//! (`arch/arm64/kvm/mmu.c`) as checker programs.

pub mod mmu;
pub mod pgtable;
pub mod tlb;

use crate::linux::arm64::{CpuFeatures, RangeLoop};
use std::fmt;
use std::str::FromStr;
use tlb::{FlushCode, Level, LevelAbi};

/// A KVM version a scenario runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// Linux v6.5: `stage2_put_pte` clears an entry and invalidates it at
    /// once with `__kvm_tlb_flush_vmid_ipa(mmu, ctx->addr, ctx->level)`,
    /// table entries included, whose level hint is wrong from
    /// 6d9d2115c480 (v5.10) until 36e008323926 names it as fixed; then
    /// `put_page(childp)`. `stage2_try_break_pte` invalidates a replaced
    /// table with `__kvm_tlb_flush_vmid`, write-protection flushes the
    /// whole VMID. `__tlbi_level` reads level 0 as "no hint".
    Kvm6_5,
    /// Linux v6.6: 7657ea920c54 ("KVM: arm64: Use TLBI range-based
    /// instructions for unmap"): with FEAT_TLBIRANGE and FWB
    /// (`stage2_unmap_defer_tlb_flush`) `stage2_unmap_put_pte` issues no
    /// TLBI, leaf or table, and `kvm_pgtable_stage2_unmap` ends with one
    /// `kvm_tlb_flush_vmid_range` (117940aa6e5f), while
    /// `stage2_unmap_walker` has already `put_page`d the zapped table
    /// (seed 003's bug); defc8cc7abf0 makes `stage2_try_break_pte` flush a
    /// replaced table's range, and the same series flushes
    /// write-protection by range (`kvm_arch_flush_remote_tlbs_range`). The
    /// range loop is the v6.6 scale-up one.
    Kvm6_6,
    /// Will Deacon's first fix (v1 1/3, 25 Mar 2024, on v6.9-rc1): a
    /// table entry is invalidated eagerly even when deferring, still with
    /// `ctx->level` as the hint (Oliver Upton's objection: TTL names the
    /// level of a *leaf*). v6.9-rc1 has c910f2b65518 (a level of 0 is a
    /// hint) and the scale-down range loop, and its
    /// `__kvm_tlb_flush_vmid_range` still passes level 0.
    Will2024V1,
    /// Oliver Upton's alternative in the same thread (26 Mar 2024, on
    /// v6.9-rc1): no eager TLBI, but `stage2_unmap_walker` frees the table
    /// through `mm_ops->free_unlinked_table`, after a grace period, and
    /// `stage2_unmap_defer_tlb_flush` adds `!is_hyp_code()`. Will Deacon's
    /// objection: the deferred TLBI still runs after the walk's RCU
    /// read-side section, so the grace period may end first.
    Rcu2024,
    /// Linux v6.9 with Will Deacon's merged series: f62d4c3eb687 (eager
    /// TLBI for a zapped table entry, only leaves deferred), 36e008323926
    /// (no level hint, `TLBI_TTL_UNKNOWN`, for a table entry),
    /// 0f0ff097bf77 (`__kvm_tlb_flush_vmid_range` passes
    /// `TLBI_TTL_UNKNOWN`) and 4c36a1567388 (`stage2_try_break_pte` aligns
    /// the range flush to the table's granule).
    Kvm6_9,
    /// pKVM: v6.9's `pgtable.c` compiled into the nVHE hypervisor for a
    /// stage 2 it owns. Its `kvm_pgtable_walk_begin` takes no RCU read
    /// lock (and refuses shared walks), its mm_ops free an unlinked table
    /// in place, with no grace period (`host_s2_free_unlinked_table`), and
    /// its flush helpers are `hyp/nvhe/tlb.c`'s, opening with the DSB of
    /// `__tlb_switch_to_guest`.
    ///
    /// At v6.9 the only stage 2 the hypervisor owned was the host's
    /// (`host_stage2_idmap`, exclusive under `host_mmu.lock`, created with
    /// NOFWB so it never defers); guests' stage 2 moved to EL2 with
    /// d0bd3e6570ae (`__pkvm_host_share_guest`, v6.14). This version runs
    /// the guest-shaped operations of the other versions (vCPU faults,
    /// `s2 unmap`) with the hypervisor's freeing and flushes: the design
    /// of a hypervisor-owned guest stage 2, not one release's code path.
    Pkvm,
}

impl Version {
    /// Every version, in age order.
    pub const ALL: [Version; 6] = [
        Version::Kvm6_5,
        Version::Kvm6_6,
        Version::Will2024V1,
        Version::Rcu2024,
        Version::Kvm6_9,
        Version::Pkvm,
    ];

    /// The name scenarios use.
    pub const fn name(self) -> &'static str {
        match self {
            Version::Kvm6_5 => "kvm-6.5",
            Version::Kvm6_6 => "kvm-6.6",
            Version::Will2024V1 => "kvm-2024-will-v1",
            Version::Rcu2024 => "kvm-2024-rcu",
            Version::Kvm6_9 => "kvm-6.9",
            Version::Pkvm => "pkvm",
        }
    }

    /// `stage2_unmap_defer_tlb_flush`: FEAT_TLBIRANGE and FWB
    /// (7657ea920c54; the predicate did not exist before v6.6). Oliver
    /// Upton's added `!is_hyp_code()` is true in the kernel, so it does
    /// not change the answer for a kernel-managed VM.
    pub fn defers_unmap(self, cpu: CpuFeatures, fwb: bool) -> bool {
        self != Version::Kvm6_5 && cpu.tlbirange && fwb
    }

    /// Whether `stage2_unmap_put_pte` invalidates a zapped *table* entry,
    /// and with which level: `None` when it is left to the deferred range
    /// TLBI.
    pub fn table_zap(self, deferring: bool, level: u8) -> Option<Level> {
        match self {
            Version::Kvm6_9 | Version::Pkvm => Some(Level::Unknown),
            Version::Will2024V1 => Some(Level::At(level)),
            Version::Kvm6_5 | Version::Kvm6_6 | Version::Rcu2024 => {
                (!deferring).then_some(Level::At(level))
            }
        }
    }

    /// Whether `kvm_pgtable_stage2_relax_perms` issues its local TLBI
    /// when the walk returns `-EAGAIN` too (be097997a273, "Always
    /// invalidate TLB for stage-2 permission faults", v6.7), as it does
    /// when `stage2_attr_walker` meets an invalid entry. The walk then
    /// never set the level: v6.9 passes an uninitialised `level`, which
    /// the model reads as no hint (`TLBI_TTL_UNKNOWN`, the value a later
    /// fix of be097997a273 gives it).
    pub const fn relax_flushes_on_eagain(self) -> bool {
        !matches!(self, Version::Kvm6_5 | Version::Kvm6_6)
    }

    /// Whether a table zapped by an unmap is freed through RCU
    /// (`free_unlinked_table`) rather than at once (`put_page`).
    pub const fn unmap_frees_via_rcu(self) -> bool {
        matches!(self, Version::Rcu2024)
    }

    /// Whether walks run inside an RCU read-side section and unlinked
    /// tables wait for a grace period: the kernel's mm_ops, not pKVM's.
    pub const fn rcu(self) -> bool {
        !matches!(self, Version::Pkvm)
    }

    /// Whether `kvm_tlb_flush_vmid_range` exists (117940aa6e5f, v6.6):
    /// before it, a replaced table and a write-protected range flush the
    /// whole VMID.
    pub const fn has_range_flush(self) -> bool {
        !matches!(self, Version::Kvm6_5)
    }

    /// Whether `stage2_try_break_pte` aligns the range flush of a replaced
    /// table down to the table's span (4c36a1567388).
    pub const fn aligns_break_flush(self) -> bool {
        matches!(self, Version::Kvm6_9 | Version::Pkvm)
    }

    /// Whether the flush helpers are the nVHE hypervisor's: pKVM's. The
    /// kernel versions are taken on a VHE host.
    pub const fn is_nvhe(self) -> bool {
        matches!(self, Version::Pkvm)
    }

    /// The flush helpers of this version.
    pub const fn flush_code(self) -> FlushCode {
        match self {
            Version::Kvm6_5 | Version::Kvm6_6 => FlushCode {
                abi: LevelAbi::ZeroIsUnknown,
                range_loop: RangeLoop::ScaleUp,
                range_level: Level::At(0),
                nvhe: false,
            },
            Version::Will2024V1 | Version::Rcu2024 => FlushCode {
                abi: LevelAbi::Lpa2,
                range_loop: RangeLoop::ScaleDown,
                range_level: Level::At(0),
                nvhe: false,
            },
            Version::Kvm6_9 | Version::Pkvm => FlushCode {
                abi: LevelAbi::Lpa2,
                range_loop: RangeLoop::ScaleDown,
                range_level: Level::Unknown,
                nvhe: self.is_nvhe(),
            },
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl crate::version::Named for Version {
    const WHAT: &'static str = "KVM version";
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
