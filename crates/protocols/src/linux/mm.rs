//! An OS memory manager as [`Program`]s: processes with an ASID and a
//! 4K-granule stage-1 table in simulated memory, VMAs, and the operations
//! of the seed threads as Linux performs them, with mmap_lock, the
//! page-table lock and the mmu_gather's pending-flush count as checker
//! synchronisation, so that operations interleave where Linux lets them.
//!
//! A thread runs a list of [`Item`]s: explicit operations (a device
//! access, a fault handler's wait and resume) and kernel operations
//! ([`KOp`]). A kernel operation reads the page tables when it runs, under
//! the locks Linux holds for that read, and keeps what it read in the
//! thread's registers ([`ProgState`]): the frames it will free, the tables
//! it unlinks, the pending-flush count it saw. Its instruction sequence is
//! then a function of those registers, recomputed at each step: every
//! operation at position *i* depends only on what was read before *i*.
//!
//! Restrictions (checked when a scenario is loaded): a kernel operation
//! covers at most [`MAX_PAGES`] pages inside one 2 MiB region; frames lie
//! below 256 MiB (their numbers fit the 16-bit register slots); VMAs are
//! fixed for the run (munmap does not detach its VMA from the view of
//! other threads); one page-table lock per process (Linux splits it per
//! PTE page; the operations here touch one PTE page each, where the two
//! coincide); munmap's `mmap_write_downgrade` is an unlock followed by a
//! read lock, which lets a writer in between, a superset of Linux's
//! interleavings.
//!
//! Page tables a kernel operation would allocate before anyone can walk
//! them to any effect (a fork child's, an mremap destination's, a
//! mirror's shadow tables) are made at set-up. fork and mremap ranges lie
//! in one 2 MiB region; the user PTEs they move or copy are
//! [`user_pte`]s. Reclaim handles a page mapped once, and gives a
//! mirror's `invalidate_range_start` the whole VMA it visits (no page
//! offsets are kept); one thread at a time may invalidate a mirror.

use super::arm64::{self, ArchOp, CpuFeatures, PAGE_SIZE};
use super::sva::{self, SmmuFeatures, SmmuOp, SvaBond};
use super::Version;
use crate::kvm::mmu::{Hyp, Item as KvmItem, KvmThread, S2Call, S2Kind};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use tlbcheck_checker::op::{Op, Rely};
use tlbcheck_checker::program::{Emit, Frame, OpResult, ProgState, Program};
use tlbcheck_checker::sync::{SyncId, SyncOp};
use tlbcheck_hw::addr::{Granule, Pa, Va};
use tlbcheck_hw::machine::{Dsb, Machine};
use tlbcheck_hw::mem::{FrameOwner, MemError, Pfn, PhysMem, TableOwner};
use tlbcheck_hw::smmu::cmd::Command;
use tlbcheck_hw::vmsa::desc::{bits, s1_page, table};

/// Most pages one kernel operation covers.
pub const MAX_PAGES: u64 = 8;
/// Frames must lie below this physical address (16-bit frame numbers).
pub const FRAME_LIMIT: u64 = 1 << 28;
/// The span one level-3 table maps (2 MiB).
pub const L3_SPAN: u64 = 1 << 21;

/// A migration entry as the model writes it in a PTE: not valid (bit 0
/// clear, so no walker uses it), the migrating frame in the address bits,
/// this bit set, and [`MIGRATION_WRITE`] when the page was writable
/// (Linux's swap-entry layout differs; only these facts are used).
pub const MIGRATION: u64 = 1 << 2;
/// A writable migration entry (`is_writable_migration_entry`).
pub const MIGRATION_WRITE: u64 = 1 << 3;

/// The migration entry for `frame` (a physical address).
pub const fn migration_entry(frame: u64, writable: bool) -> u64 {
    (frame & bits::ADDR_MASK) | MIGRATION | if writable { MIGRATION_WRITE } else { 0 }
}

/// A virtual memory area: `[start, end)`, writable or not.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Vma {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// VM_WRITE.
    pub writable: bool,
    /// Created by an `mmap` step ([`KOp::Mmap`]): the process has it only
    /// once that step has run (and until a `munmap` covering it), which
    /// an atomic counter of the kernel records ([`Kernel::vma_counter`]).
    pub by_mmap: bool,
}

/// A process: an address space with its ASID and stage-1 table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// Name in scenarios and traces.
    pub name: String,
    /// Its ASID (the CPUs' and any SVA device's).
    pub asid: u16,
    /// The owner tag of its frames (`process=` in frame reports).
    pub space: u16,
    /// Physical address of its level-0 table (TTBR0).
    pub root: u64,
    /// Index of its stage-1 context in the model (what a read-only
    /// expectation names).
    pub ctx: usize,
    /// Its VMAs.
    pub vmas: Vec<Vma>,
    /// Devices bound to it with SVA (mmu-notifier subscriptions that share
    /// its page table).
    pub bonds: Vec<SvaBond>,
    /// Set when this "process" is a shadow page table mirroring another
    /// one: a secondary MMU with tables of its own (KVM's stage 2, an HMM
    /// device's page table), not one that shares the CPU's.
    pub mirror: Option<Mirror>,
}

/// A shadow page table subscribed to a process's mmu notifier, KVM and
/// HMM style (docs/design.md §6): its own ASID and tables, walked by a
/// device behind the SMMU; filled by [`KOp::MirrorFault`] from the
/// process's PTEs; emptied by `invalidate_range_start`, which zaps the
/// shadow PTEs and invalidates the SMMU's TLB for them, and which opens a
/// sequence count that `invalidate_range_end` closes. A fault waits while
/// it is open (`mmu_interval_read_begin`), and installs only if the count
/// did not move meanwhile (`mmu_interval_read_retry` under the driver's
/// lock, KVM's `mmu_invalidate_retry`); without the retry it installs
/// what it read.
///
/// One thread at a time may invalidate a given mirror (the count is a
/// seqcount: nested invalidations, which KVM counts in
/// `mmu_invalidate_in_progress`, are a program error here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// The process mirrored.
    pub of: usize,
    /// The fault path re-checks the sequence count.
    pub retry: bool,
    /// The shadow level-3 tables: (2 MiB region base, table address),
    /// one per region of the mirrored process's VMAs.
    pub l3: Vec<(u64, u64)>,
}

impl Mirror {
    /// Address of the shadow PTE for `va`, if the mirror covers it.
    pub fn pte(&self, va: u64) -> Option<u64> {
        let region = va & !(L3_SPAN - 1);
        self.l3
            .iter()
            .find(|&&(r, _)| r == region)
            .map(|&(_, t)| t + 8 * index(va, 3))
    }
}

impl Process {
    /// The VMA containing `va`.
    pub fn vma(&self, va: u64) -> Option<&Vma> {
        self.vmas.iter().find(|v| v.start <= va && va < v.end)
    }
}

/// The kernel every thread of a scenario runs: its version, the
/// machine's features and the processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// Which kernel.
    pub version: Version,
    /// CPU features the arm64 flush code tests.
    pub cpu: CpuFeatures,
    /// SMMU features the SVA driver tests.
    pub smmu: SmmuFeatures,
    /// The processes, by index.
    pub processes: Vec<Process>,
    /// Physical address of the shared zero page (`ZERO_PAGE(0)`), which a
    /// read fault on an empty anonymous PTE maps read-only; 0 when no
    /// operation can map it.
    pub zero_page: u64,
    /// KVM memslots backed by the processes: VMs subscribed to their mmu
    /// notifiers.
    pub slots: Vec<VmSlot>,
}

/// A KVM memslot backed by a process (`KVM_SET_USER_MEMORY_REGION`): the
/// VM maps `[ipa, ipa + len)` onto the process's `[hva, hva + len)`, and
/// KVM is subscribed to the process's mmu notifier
/// (`kvm_init_mmu_notifier`). Its `invalidate_range_start`
/// (`kvm_mmu_notifier_invalidate_range_start` -> `kvm_unmap_gfn_range`)
/// runs the stage-2 manager's unmap of the IPAs the invalidated HVAs back,
/// as a called program ([`ProgState::callee`]) inside the mm operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSlot {
    /// The process whose memory backs the slot.
    pub of: usize,
    /// The stage-2 manager.
    pub hyp: Arc<Hyp>,
    /// The VM's index in `hyp`.
    pub vm: usize,
    /// First IPA (`base_gfn << PAGE_SHIFT`).
    pub ipa: u64,
    /// First HVA (`userspace_addr`).
    pub hva: u64,
    /// Length.
    pub len: u64,
}

impl VmSlot {
    /// The stage-2 unmap `kvm_unmap_gfn_range` makes for an invalidation
    /// of `[start, end)`: the slot's part of it, as IPAs
    /// (`kvm_handle_hva_range` clips the range to each memslot, then
    /// `hva_to_gfn_memslot`); `None` when they do not meet.
    pub fn unmap_for(&self, start: u64, end: u64) -> Option<S2Call> {
        let s = start.max(self.hva);
        let e = end.min(self.hva + self.len);
        (s < e).then(|| S2Call {
            vm: self.vm,
            kind: S2Kind::Unmap {
                ipa: self.ipa + (s - self.hva),
                len: e - s,
            },
        })
    }

    /// The called program that runs `call`.
    fn program(&self, call: S2Call) -> KvmThread {
        KvmThread::new(self.hyp.clone(), vec![KvmItem::S2(call)])
    }
}

impl Kernel {
    /// Locks the kernel needs: mmap_lock and the page-table lock of each
    /// process, and the driver lock of each mirror (one slot per process).
    pub fn locks(&self) -> usize {
        3 * self.processes.len()
    }

    /// Sequence counts: one per mirror (one slot per process).
    pub fn seqcounts(&self) -> usize {
        self.processes.len()
    }

    fn mirror_lock(&self, m: usize) -> SyncId {
        (2 * self.processes.len() + m) as SyncId
    }

    /// The mirrors of process `p`, by process index.
    fn mirrors_of(&self, p: usize) -> impl Iterator<Item = (usize, &Process, &Mirror)> + '_ {
        self.processes
            .iter()
            .enumerate()
            .filter_map(move |(m, mp)| match &mp.mirror {
                Some(mi) if mi.of == p => Some((m, mp, mi)),
                _ => None,
            })
    }

    /// Atomic counters it needs: `mm->tlb_flush_pending` of each process,
    /// then one per VMA an `mmap` step creates (1 while the process has
    /// it), then `mm->tlb_flush_batched` of each process (reclaim's
    /// batched flushes no `flush_tlb_batched_pending` has seen yet).
    pub fn counters(&self) -> usize {
        2 * self.processes.len() + self.late_vmas().count()
    }

    fn flush_batched(&self, p: usize) -> SyncId {
        (self.processes.len() + self.late_vmas().count() + p) as SyncId
    }

    /// Every VMA made by an `mmap` step: (process, VMA index).
    fn late_vmas(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.processes.iter().enumerate().flat_map(|(p, pr)| {
            pr.vmas
                .iter()
                .enumerate()
                .filter(|(_, v)| v.by_mmap)
                .map(move |(n, _)| (p, n))
        })
    }

    /// The counter recording whether process `p` has VMA number `n`, if
    /// an `mmap` step creates that VMA.
    pub fn vma_counter(&self, p: usize, n: usize) -> Option<SyncId> {
        let at = self.late_vmas().position(|x| x == (p, n))?;
        Some((self.processes.len() + at) as SyncId)
    }

    /// Whether `frame` is mapped by a process other than `p` at `va`, or
    /// is the zero page: `do_wp_page` must then copy it. A mirror's
    /// shadow PTE is not a mapping of the page (it holds no reference
    /// the folio's map count sees).
    fn shared(&self, mem: &PhysMem, p: usize, va: u64, frame: u64) -> bool {
        (self.zero_page != 0 && frame == self.zero_page)
            || self.processes.iter().enumerate().any(|(q, o)| {
                q != p
                    && o.mirror.is_none()
                    && tables(mem, o.root, va)[3].is_some_and(|l3| {
                        let d = mem.read(Pa(l3 + 8 * index(va, 3)));
                        d & bits::VALID != 0 && d & bits::ADDR_MASK == frame
                    })
            })
    }

    fn mmap_lock(p: usize) -> SyncId {
        (2 * p) as SyncId
    }

    fn ptl(p: usize) -> SyncId {
        (2 * p + 1) as SyncId
    }

    fn flush_pending(p: usize) -> SyncId {
        p as SyncId
    }
}

/// The span one entry of a level-`level` table maps (4K granule): the
/// alignment of the addresses `free_pgtables` gathers for the table that
/// entry linked.
pub const fn table_span(level: u8) -> u64 {
    1 << (39 - 9 * level as u32)
}

/// Index of `va` in its level-`level` table (4K granule, 48-bit VA).
pub const fn index(va: u64, level: u8) -> u64 {
    (va >> (39 - 9 * level as u32)) & 511
}

/// The tables a walk of `va` from `root` passes through: `[L0, L1, L2,
/// L3]` table addresses, `None` from the first missing one on.
pub fn tables(mem: &PhysMem, root: u64, va: u64) -> [Option<u64>; 4] {
    let mut out = [Some(root), None, None, None];
    for level in 0..3u8 {
        let Some(t) = out[level as usize] else { break };
        let d = mem.read(Pa(t + 8 * index(va, level)));
        if d & (bits::VALID | bits::TABLE_OR_PAGE) == bits::VALID | bits::TABLE_OR_PAGE {
            out[level as usize + 1] = Some(d & bits::ADDR_MASK);
        }
    }
    out
}

/// Reads `pages` PTEs from `src` = (root, first address) for a copy or a
/// move to `dst` = (root, first address), page `j` into slot `first + j`:
/// its frame in registers 1 and 2 (16 bits a slot), whether it is present
/// (bit i of register 3) and writable (bit 8 + i); and the source and
/// destination level-3 tables (bits 32..48 and 16..32 of register 3,
/// frame numbers). Each range lies in one 2 MiB region, and a present PTE
/// is [`user_pte`] of its frame.
fn copy_snapshot(
    mem: &PhysMem,
    src: (u64, u64),
    dst: (u64, u64),
    pages: u64,
    first: usize,
    regs: &mut [u64; 4],
) {
    let src_l3 = tables(mem, src.0, src.1)[3];
    let dst_l3 = tables(mem, dst.0, dst.1)[3];
    regs[3] &= !(0xffff_ffff << 16);
    regs[3] |= (src_l3.unwrap_or(0) >> 12) << 32 | (dst_l3.unwrap_or(0) >> 12) << 16;
    for j in 0..pages {
        let i = first + j as usize;
        regs[1 + i / 4] &= !(0xffff << (16 * (i % 4)));
        regs[3] &= !(1 << i | 1 << (8 + i));
        let Some(l3) = src_l3 else { continue };
        let pte = mem.read(Pa(l3 + 8 * index(src.1 + j * PAGE_SIZE, 3)));
        if pte & bits::VALID != 0 {
            regs[1 + i / 4] |= ((pte & bits::ADDR_MASK) >> 12) << (16 * (i % 4));
            regs[3] |= 1 << i;
            if pte & bits::AP_RO == 0 {
                regs[3] |= 1 << (8 + i);
            }
        }
    }
}

/// Allocates the level-0 table of a new process whose frames are tagged
/// `space`.
pub fn new_root(mem: &mut PhysMem, space: u16) -> Result<u64, MemError> {
    let f = mem.alloc(FrameOwner::Table {
        owner: TableOwner::Stage1 { space },
        level: 0,
    })?;
    Ok(f.base().0)
}

/// Set-up: maps `va` to a newly allocated data frame, read-only or
/// writable, allocating the missing tables (user, not global: tagged with
/// the ASID). Returns the data frame.
pub fn map_new_page(
    mem: &mut PhysMem,
    root: u64,
    space: u16,
    va: u64,
    writable: bool,
) -> Result<Pfn, MemError> {
    let t = prepare_tables(mem, root, space, va)?;
    let data = mem.alloc(FrameOwner::Data { space })?;
    mem.write(Pa(t + 8 * index(va, 3)), user_pte(data.base().0, writable))?;
    Ok(data)
}

/// A user page descriptor as the processes here map them: AF set, user,
/// not global (tagged with the ASID), writable or read-only.
pub const fn user_pte(pa: u64, writable: bool) -> u64 {
    s1_page(pa, writable, true, false)
}

/// Set-up: allocates the level-1 to level-3 tables a walk of `va` from
/// `root` needs and links them; returns the level-3 table. (A forked
/// child's tables are made this way: `copy_page_range`'s `pte_alloc` and
/// friends run before the child exists for anyone else, so only the PTE
/// copies are steps.)
pub fn prepare_tables(mem: &mut PhysMem, root: u64, space: u16, va: u64) -> Result<u64, MemError> {
    let mut t = root;
    for level in 0..3u8 {
        let at = Pa(t + 8 * index(va, level));
        let d = mem.read(at);
        t = if d & bits::VALID != 0 {
            d & bits::ADDR_MASK
        } else {
            let f = mem.alloc(FrameOwner::Table {
                owner: TableOwner::Stage1 { space },
                level: level + 1,
            })?;
            mem.write(at, table(f.base().0))?;
            f.base().0
        };
    }
    Ok(t)
}

/// A kernel operation a thread performs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum KOp {
    /// `madvise(start, len, MADV_DONTNEED)`: zap the range under
    /// mmap_lock held for read (`zap_page_range_single`).
    MadviseDontneed {
        /// Process index.
        p: usize,
        /// First byte (page aligned).
        start: u64,
        /// Length in bytes (page multiple).
        len: u64,
    },
    /// `munmap(start, len)`: zap the range and free the page tables no
    /// other VMA uses (`unmap_region`: `unmap_vmas`, `free_pgtables`,
    /// `tlb_finish_mmu`), after downgrading mmap_lock to read.
    Munmap {
        /// Process index.
        p: usize,
        /// First byte.
        start: u64,
        /// Length in bytes.
        len: u64,
    },
    /// `fork()` of process `p` into the (empty) process `child`:
    /// `dup_mmap` under the parent's mmap_lock held for write; for each
    /// VMA `copy_page_range` write-protects the parent's writable PTEs
    /// (`copy_present_pte`: `ptep_set_wrprotect`) and copies them, read
    /// only, into the child, under the page-table lock; at the end
    /// `flush_tlb_mm(oldmm)`. The parent's VMAs lie in one 2 MiB region
    /// and cover at most [`MAX_PAGES`] pages.
    Fork {
        /// The parent's process index.
        p: usize,
        /// The child's process index.
        child: usize,
    },
    /// `mremap(old, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, new)`:
    /// `move_page_tables` under mmap_lock held for write, between
    /// `invalidate_range_start` and `_end` of the old range; `move_ptes`
    /// with the page-table lock held clears each old PTE, sets it at the
    /// new address and flushes the old range with `flush_tlb_range`. The
    /// destination lies in a declared VMA (VMAs are fixed for the run, so
    /// the old VMA's unmapping, which finds nothing left to zap, is not
    /// run); each range lies in one 2 MiB region, at most [`MAX_PAGES`]
    /// pages.
    Mremap {
        /// Process index.
        p: usize,
        /// Old address.
        old: u64,
        /// Length in bytes.
        len: u64,
        /// New address.
        new: u64,
    },
    /// Reclaim of the page mapped at `va` when the operation starts
    /// (`shrink_folio_list` -> `try_to_unmap`): an rmap walk that holds no
    /// mmap_lock visits the process's VMAs in order and, in the first
    /// where the page is mapped, clears the PTE under the page-table lock
    /// (`try_to_unmap_one`), between `invalidate_range_start` and `_end`
    /// of that VMA; an unmapped page is freed. v6.5: `ptep_clear_flush`,
    /// then the secondaries' `invalidate_range` for the page under the
    /// lock and again from `invalidate_range_end`. v6.6 batches
    /// ([`Version::tlbbatch`]): `ptep_get_and_clear` and
    /// `arch_tlbbatch_add_pending` (the TLBI without its DSB; the
    /// secondaries from `__flush_tlb_page_nosync`) under the lock, and
    /// `try_to_unmap_flush`'s `arch_tlbbatch_flush` (DSB ISH) before the
    /// free, and counts the batch in `mm->tlb_flush_batched`, which other
    /// operations drain under the page-table lock
    /// (`Planner::batched_pending`). The page is mapped once.
    Reclaim {
        /// Process index.
        p: usize,
        /// The page's address.
        va: u64,
    },
    /// Migration of the page mapped at `va` when the operation starts to a
    /// new page (`migrate_pages` -> `migrate_pages_batch`, v6.5 and v6.6):
    /// `migrate_folio_unmap` allocates the new page, then `try_to_migrate`
    /// walks the rmap as [`KOp::Reclaim`] does and `try_to_migrate_one`
    /// clears the PTE and sets a [`migration_entry`], with TTU_BATCH_FLUSH
    /// only for MIGRATE_ASYNC (`batch`): batched as reclaim is on v6.6,
    /// `ptep_clear_flush` otherwise; the secondaries hear of it as
    /// reclaim's do, except that v6.5's migration-entry path has no
    /// `invalidate_range` of its own under the lock (only
    /// `invalidate_range_end`'s). After `try_to_unmap_flush`,
    /// `migrate_folio_move` copies the page (relying on nobody writing it
    /// any more) and `remove_migration_ptes` maps the new page where the
    /// migration entry still is, writable if the entry is, under the
    /// page-table lock (no flush: the entry is not valid); the old page is
    /// freed, and the new one too if nothing maps it. Other operations
    /// that meet the entry: `mprotect` to read-only makes it read-only
    /// (`change_pte_range`), a fault waits for it to go (here: returns
    /// and retries); zapping, forking or moving it is not modelled.
    Migrate {
        /// Process index.
        p: usize,
        /// The page's address.
        va: u64,
        /// MIGRATE_ASYNC: `try_to_migrate(src, TTU_BATCH_FLUSH)`.
        batch: bool,
    },
    /// The fault path of mirror `m` for `va` (`hmm_range_fault` between
    /// `mmu_interval_read_begin` and `mmu_interval_read_retry`, KVM's
    /// `mmu_invalidate_seq` read and `mmu_invalidate_retry`): read the
    /// mirrored process's PTE under its mmap_lock held for read, then,
    /// under the driver's lock, install it in the shadow table (with
    /// [`Mirror::retry`], only if no invalidation moved the sequence
    /// count meanwhile; otherwise start again).
    MirrorFault {
        /// The mirror's process index.
        m: usize,
        /// The address.
        va: u64,
    },
    /// `mprotect(start, len, PROT_READ | PROT_WRITE or PROT_READ)` as
    /// `do_mprotect_pkey` runs it: under mmap_lock held for write, with an
    /// mmu_gather (`tlb_gather_mmu`, 4a18419f71cd "mm/mprotect: use
    /// mmu_gather", v6.1), `change_protection` ->
    /// `change_pmd_range` opens `invalidate_range_start`
    /// (`MMU_NOTIFY_PROTECTION_VMA`) and `change_pte_range` rewrites each
    /// present PTE under the page-table lock
    /// (`ptep_modify_prot_start`, which is `ptep_get_and_clear` on arm64
    /// without erratum 2645198, then `ptep_modify_prot_commit`) and adds
    /// it to the gather (`tlb_flush_pte_range`: arm64 has no
    /// `pte_needs_flush`, so every rewritten PTE is flushed);
    /// `invalidate_range_end` (v6.5: the secondaries' `invalidate_range`
    /// here), then `tlb_end_vma` (arm64 does not select
    /// MMU_GATHER_MERGE_VMAS: the arm64 `tlb_flush`, leaf, level 3; v6.5's
    /// `tlb_flush_mmu_tlbonly` tells the secondaries again) and
    /// `tlb_finish_mmu` (nested: `flush_tlb_mm`) before `mmap_write_unlock`.
    ///
    /// VMAs are fixed for the run: only the PTEs change. `rw` makes a PTE
    /// writable only when no other process maps its page
    /// (`can_change_pte_writable` of a private anonymous page: an
    /// exclusive page); otherwise it stays read-only for the write fault.
    Mprotect {
        /// Process index.
        p: usize,
        /// First byte.
        start: u64,
        /// Length in bytes.
        len: u64,
        /// `rw` (true) or `ro`.
        writable: bool,
    },
    /// The last user of the address space goes: `exit_mmap` (v6.5,
    /// v6.6). `mmu_notifier_release` comes first: each SVA binding's
    /// `release` (`arm_smmu_mm_release`, [`sva::release`]) disables the
    /// CD and invalidates the SMMU's TLB and the ATC, and core mm unhooks
    /// every subscription, so nothing after it tells a secondary anything.
    /// Then, with a fullmm mmu_gather, `unmap_vmas` under mmap_lock held
    /// for read clears every PTE of every VMA under the page-table lock;
    /// under mmap_lock held for write `free_pgtables` unlinks and queues
    /// every page table below the root; `tlb_finish_mmu`'s arm64
    /// `tlb_flush` is `flush_tlb_mm` (tables were freed), then the pages
    /// and tables are freed. The level-0 table is freed later
    /// (`__mmdrop`), which is not modelled. The process's VMAs lie in one
    /// 2 MiB region, at most [`MAX_PAGES`] pages; it has no mirror. The
    /// unhooking is not state: a kernel operation on the process that
    /// runs after its exit (a scenario error Linux cannot make) would
    /// still call the SVA notifier.
    Exit {
        /// Process index.
        p: usize,
    },
    /// `mmap(start, len, prot, MAP_PRIVATE | MAP_ANONYMOUS |
    /// MAP_FIXED_NOREPLACE)`: under mmap_lock held for write,
    /// `mmap_region` links the VMA (number `n` of the process, declared
    /// with [`Vma::by_mmap`]) if the range is free. No PTE and no page
    /// table is made, so nothing is flushed: the pages come with the
    /// first touch.
    Mmap {
        /// Process index.
        p: usize,
        /// The VMA's index in the process.
        n: usize,
        /// Its first byte, for traces.
        start: u64,
        /// Its length, for traces.
        len: u64,
    },
    /// A CPU access at `va` (`write` or a read) that takes the fault
    /// path as arm64's `do_page_fault` -> `handle_mm_fault` runs it (v6.5,
    /// v6.6). The model takes that path even when the tables grant the
    /// access: a TLB may still hold an entry that denies it, and only the
    /// retry after the handler, which meets the thread that changed the
    /// PTE at the page-table lock, must not fault again. (Linux takes no
    /// lock for an access its TLB or a walk grants, so the model orders
    /// such an access after mmap_lock writers.) mmap_lock held for read
    /// stands for the VMA lock
    /// (`lock_vma_under_rcu`, which excludes the same writers): a VMA an
    /// `mmap` step makes must exist (otherwise SIGSEGV: no access). An
    /// empty PTE is a demand fault: the missing page tables are allocated
    /// one level at a time (`__pud_alloc`, `__pmd_alloc`, `__pte_alloc`:
    /// allocate, then under the page-table lock link it, or free it if
    /// another thread linked one first), then `do_anonymous_page` maps a
    /// new zeroed page writable for a write, or the zero page read-only
    /// for a read, under the page-table lock if the PTE is still empty
    /// (`set_pte_at`: no TLB maintenance, an invalid entry is never
    /// cached). A write to a read-only PTE is [`KOp::WriteFault`]'s path.
    /// Then the access is made, or retried after the fault: it must not
    /// fault again on a stale entry (`fault-livelock`).
    Touch {
        /// Process index.
        p: usize,
        /// The address (page aligned).
        va: u64,
        /// A write (else a read).
        write: bool,
    },
    /// A write fault at `va` on a present read-only PTE of a writable VMA
    /// (`handle_pte_fault` -> `do_wp_page`). An exclusive page is reused:
    /// `ptep_set_access_flags`, which on arm64 flushes the page because
    /// permissions may be cached (the RO -> RW upgrade of seeds 000 and
    /// 004). A page another process maps too (after `fork`) is copied:
    /// `wp_page_copy`. Taken by the CPU, or by the IOMMU fault handler on a
    /// device's behalf.
    WriteFault {
        /// Process index.
        p: usize,
        /// Faulting address.
        va: u64,
    },
}

impl KOp {
    fn process(&self) -> usize {
        match *self {
            KOp::MadviseDontneed { p, .. }
            | KOp::Munmap { p, .. }
            | KOp::WriteFault { p, .. }
            | KOp::Fork { p, .. }
            | KOp::MirrorFault { m: p, .. }
            | KOp::Mremap { p, .. }
            | KOp::Reclaim { p, .. }
            | KOp::Migrate { p, .. }
            | KOp::Mprotect { p, .. }
            | KOp::Mmap { p, .. }
            | KOp::Touch { p, .. }
            | KOp::Exit { p } => p,
        }
    }
}

impl fmt::Display for KOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            KOp::MadviseDontneed { start, len, .. } => {
                write!(f, "madvise({start:#x}-{:#x}, MADV_DONTNEED)", start + len)
            }
            KOp::Munmap { start, len, .. } => write!(f, "munmap({start:#x}-{:#x})", start + len),
            KOp::WriteFault { va, .. } => write!(f, "write fault at {va:#x}"),
            KOp::Fork { .. } => f.write_str("fork"),
            KOp::MirrorFault { va, .. } => write!(f, "mirror fault at {va:#x}"),
            KOp::Mremap { old, len, new, .. } => {
                write!(f, "mremap({old:#x}-{:#x} -> {new:#x})", old + len)
            }
            KOp::Reclaim { va, .. } => write!(f, "reclaim of the page at {va:#x}"),
            KOp::Migrate { va, batch, .. } => write!(
                f,
                "{} migration of the page at {va:#x}",
                if batch { "async" } else { "sync" }
            ),
            KOp::Exit { .. } => f.write_str("exit_mmap"),
            KOp::Mmap { start, len, .. } => write!(f, "mmap({start:#x}-{:#x})", start + len),
            KOp::Touch { va, write, .. } => write!(
                f,
                "{} access at {va:#x}",
                if write { "write" } else { "read" }
            ),
            KOp::Mprotect {
                start,
                len,
                writable,
                ..
            } => write!(
                f,
                "mprotect({start:#x}-{:#x}, {})",
                start + len,
                if writable { "rw" } else { "ro" }
            ),
        }
    }
}

/// One item of a kernel thread.
#[derive(Clone, Debug)]
pub enum Item {
    /// An explicit operation, run as written.
    Op(Op),
    /// A kernel operation.
    Kernel(KOp),
}

/// What `advance` does with an op's result.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum After {
    /// Nothing.
    Go,
    /// Read the page tables into the registers (the locks are held now).
    Snapshot,
    /// Keep the op's result in register 0 (plus one, so 0 means unread).
    Save,
    /// Read the PTEs of the parent's VMA number `n` for `fork`.
    ForkVma(usize),
    /// The rmap walk reads VMA number `n`.
    RmapVma(usize),
    /// The write fault re-took the page-table lock: note in register 3
    /// whether the PTE changed since it was read (`pte_same`).
    Recheck,
    /// The mirror fault read its sequence count again: note in register
    /// 3 whether it moved since register 0's read.
    SeqChanged,
    /// Start the kernel operation again, registers cleared (a retry).
    Restart,
    /// `munmap` read whether the process has its `n`-th VMA made by an
    /// `mmap` step: bit 56 + n of register 3.
    VmaPresent(u8),
    /// `touch` walked the page tables under the page-table lock: the
    /// tables at levels 1 to 3 in the 16-bit slots 0 to 2 of register 1
    /// (frame numbers, 0 when missing), and in register 3 whether the PTE
    /// is present (bit 61), whether it grants the access (bit 60) and
    /// that the walk happened (bit 62).
    TouchWalk,
    /// Keep the allocated frame in 16-bit slot `n` of register 2.
    SaveSlot(u8),
    /// `touch` took the page-table lock to link its new table at level
    /// `n`: if another thread linked one first (bit 8 + n of register 3),
    /// that one is used and the levels below are walked again.
    Install(u8),
    /// `do_anonymous_page` re-read the PTE under the lock: bit 63 of
    /// register 3 when another thread filled it.
    PteRaced,
    /// `migrate` allocated the new page: its frame number in bits 32 to
    /// 47 of register 3.
    SaveNew,
    /// `remove_migration_pte` found its migration entry (bit 48 of
    /// register 3; bit 49 when it is writable).
    MigrationEntry,
    /// `flush_tlb_batched_pending` read `mm->tlb_flush_batched`: the
    /// count (at most 15) in the 4 bits of register 3 from this one.
    Batched(u8),
    /// Run `call` as memslot number `slot`'s called program: the step
    /// stands for all of its steps, which run in the callee frame while
    /// this program's position and registers wait.
    Call(usize, S2Call),
}

struct Step {
    op: Op,
    func: &'static str,
    after: After,
}

/// A thread of the kernel: explicit operations and kernel operations.
#[derive(Debug)]
pub struct KernelThread {
    kernel: Arc<Kernel>,
    items: Vec<Item>,
}

/// `pc`: the item index above [`MICRO_BITS`], the step inside it below.
const MICRO_BITS: u32 = 12;

impl KernelThread {
    /// A thread running `items` in order on `kernel`.
    pub fn new(kernel: Arc<Kernel>, items: Vec<Item>) -> KernelThread {
        KernelThread { kernel, items }
    }

    fn plan(&self, k: &KOp, regs: &[u64; 4]) -> Vec<Step> {
        let mut pl = Planner {
            k: &self.kernel,
            out: Vec::new(),
        };
        match *k {
            KOp::MadviseDontneed { p, start, len } => pl.zap(p, start, len, false, regs),
            KOp::Munmap { p, start, len } => pl.zap(p, start, len, true, regs),
            KOp::WriteFault { p, va } => pl.write_fault(p, va, regs),
            KOp::Fork { p, .. } => pl.fork(p, regs),
            KOp::MirrorFault { m, va } => pl.mirror_fault(m, va, regs),
            KOp::Mremap { p, old, len, new } => pl.mremap(p, old, len, new, regs),
            KOp::Reclaim { p, .. } => pl.reclaim(p, regs, None),
            KOp::Migrate { p, batch, .. } => pl.reclaim(p, regs, Some(batch)),
            KOp::Mprotect {
                p,
                start,
                len,
                writable,
            } => pl.mprotect(p, start, len, writable, regs),
            KOp::Exit { p } => pl.exit(p, regs),
            KOp::Mmap { p, n, .. } => pl.mmap(p, n, regs),
            KOp::Touch { p, va, write } => pl.touch(p, va, write, regs),
        }
        pl.out
    }

    /// `copy_pte_range` reads VMA `n` of the parent under the page-table
    /// lock (see [`copy_snapshot`]).
    fn fork_snapshot(&self, p: usize, child: usize, n: usize, m: &Machine, regs: &mut [u64; 4]) {
        let k = &self.kernel;
        let (parent, ch) = (&k.processes[p], &k.processes[child]);
        let vma = parent.vmas[n];
        let first: u64 = parent.vmas[..n]
            .iter()
            .map(|v| (v.end - v.start) / PAGE_SIZE)
            .sum();
        let src = (parent.root, vma.start);
        let dst = (ch.root, vma.start);
        let pages = (vma.end - vma.start) / PAGE_SIZE;
        copy_snapshot(&m.mem, src, dst, pages, first as usize, regs);
    }

    /// The reclaim's rmap walk reaches VMA `n` of process `p` with the
    /// page-table lock held: if the page (register 0, frame + 1) is mapped
    /// there and was not found before, note the PTE's address (register
    /// 1), its value (register 2) and the VMA (bits 8..16 of register 3,
    /// index + 1).
    fn rmap_snapshot(&self, p: usize, n: usize, m: &Machine, regs: &mut [u64; 4]) {
        if regs[0] == 0 || (regs[3] >> 8) & 0xff != 0 {
            return;
        }
        let frame = (regs[0] - 1) << 12;
        let proc_ = &self.kernel.processes[p];
        let vma = proc_.vmas[n];
        let mut va = vma.start;
        while va < vma.end {
            if let Some(l3) = tables(&m.mem, proc_.root, va)[3] {
                let at = l3 + 8 * index(va, 3);
                let pte = m.mem.read(Pa(at));
                if pte & bits::VALID != 0 && pte & bits::ADDR_MASK == frame {
                    regs[1] = at;
                    regs[2] = pte;
                    regs[3] |= ((n + 1) as u64) << 8;
                    return;
                }
            }
            va += PAGE_SIZE;
        }
    }

    /// [`After::TouchWalk`]: `touch` reads the walk of `va` under the
    /// page-table lock. Missing tables are to be made (bit 12 + level of
    /// register 3).
    fn touch_walk(&self, p: usize, va: u64, write: bool, m: &Machine, regs: &mut [u64; 4]) {
        let t = tables(&m.mem, self.kernel.processes[p].root, va);
        regs[1] = 0;
        for (n, table) in t.iter().enumerate().skip(1) {
            match table {
                Some(a) => regs[1] |= (a >> 12) << (16 * (n - 1)),
                None => regs[3] |= 1 << (12 + n),
            }
        }
        regs[3] |= 1 << 62;
        if let Some(l3) = t[3] {
            let pte = m.mem.read(Pa(l3 + 8 * index(va, 3)));
            if pte & bits::VALID != 0 {
                regs[3] |= 1 << 61;
                if !write || pte & bits::AP_RO == 0 {
                    regs[3] |= 1 << 60;
                }
            }
        }
    }

    /// [`After::Install`]: `touch` holds the lock that links its level-`n`
    /// table. If the entry is populated now, another thread won: use its
    /// table and walk the levels below it again.
    fn touch_install(&self, p: usize, va: u64, n: u8, m: &Machine, regs: &mut [u64; 4]) {
        let slot = |r: u64, l: u8| ((r >> (16 * u32::from(l - 1))) & 0xffff) << 12;
        let parent = if n == 1 {
            self.kernel.processes[p].root
        } else {
            slot(regs[1], n - 1)
        };
        let d = m.mem.read(Pa(parent + 8 * index(va, n - 1)));
        let set = |r: &mut u64, l: u8, a: u64| {
            let sh = 16 * u32::from(l - 1);
            *r = *r & !(0xffff << sh) | (a >> 12) << sh;
        };
        if d & bits::VALID == 0 {
            let mine = slot(regs[2], n);
            set(&mut regs[1], n, mine);
            return;
        }
        regs[3] |= 1 << (8 + n);
        set(&mut regs[1], n, d & bits::ADDR_MASK);
        let mut t = d & bits::ADDR_MASK;
        for l in n + 1..=3 {
            let e = m.mem.read(Pa(t + 8 * index(va, l - 1)));
            if e & bits::VALID == 0 {
                break;
            }
            t = e & bits::ADDR_MASK;
            set(&mut regs[1], l, t);
            regs[3] &= !(1 << (12 + l));
        }
    }

    /// Reads what kernel operation `k` needs once its locks are held.
    fn snapshot(&self, k: &KOp, m: &Machine, regs: &mut [u64; 4]) {
        let proc_ = &self.kernel.processes[k.process()];
        let mem = &m.mem;
        match *k {
            KOp::MadviseDontneed { start, len, .. } | KOp::Munmap { start, len, .. } => {
                let t = tables(mem, proc_.root, start);
                for i in 0..(len / PAGE_SIZE) as usize {
                    let va = start + i as u64 * PAGE_SIZE;
                    let Some(l3) = t[3] else { break };
                    let pte = mem.read(Pa(l3 + 8 * index(va, 3)));
                    if pte & bits::VALID != 0 {
                        let pfn = (pte & bits::ADDR_MASK) >> 12;
                        regs[1 + i / 4] |= pfn << (16 * (i % 4));
                    }
                }
                if let KOp::Munmap { .. } = k {
                    // free_pgtables: a table goes when no VMA left after
                    // the unmap reaches into the span it maps.
                    let end = start + len;
                    // A VMA an `mmap` step makes counts only while the
                    // process has it (bit 56 + j, read under the lock).
                    let p = k.process();
                    let kernel = &self.kernel;
                    let has = |n: usize| {
                        let late = (0..n)
                            .filter(|&i| kernel.vma_counter(p, i).is_some())
                            .count();
                        kernel.vma_counter(p, n).is_none() || regs[3] >> (56 + late) & 1 != 0
                    };
                    let used = |lo: u64, hi: u64| {
                        proc_
                            .vmas
                            .iter()
                            .enumerate()
                            .filter(|&(n, _)| has(n))
                            .any(|(_, v)| {
                                let parts =
                                    [(v.start, v.end.min(start)), (v.start.max(end), v.end)];
                                parts.iter().any(|&(a, b)| a < b && a < hi && lo < b)
                            })
                    };
                    let mut levels = 0u64;
                    for (lvl, span) in [(3u8, 1u64 << 21), (2, 1 << 30), (1, 1 << 39)] {
                        let lo = start & !(span - 1);
                        if t[lvl as usize].is_some() && !used(lo, lo + span) {
                            levels += 1;
                        } else {
                            break;
                        }
                    }
                    regs[3] |= levels << 48;
                }
                // The tables on the path: slot 0 the level-3 table, 1 the
                // level-2, 2 the level-1.
                for (slot, lvl) in [3usize, 2, 1].into_iter().enumerate() {
                    if let Some(a) = t[lvl] {
                        regs[3] |= (a >> 12) << (16 * slot);
                    }
                }
            }
            KOp::WriteFault { p, va } | KOp::Touch { p, va, .. } => {
                // The bits from 8 up belong to `touch` (its walk).
                regs[3] &= !0xff;
                if let Some(l3) = tables(mem, proc_.root, va)[3] {
                    let at = l3 + 8 * index(va, 3);
                    regs[1] = at;
                    regs[2] = mem.read(Pa(at));
                    // The page is shared when another process maps the
                    // same frame (a fork's COW copy; `do_wp_page` asks the
                    // folio's map count), or is the zero page.
                    let frame = regs[2] & bits::ADDR_MASK;
                    let shared =
                        regs[2] & bits::VALID != 0 && self.kernel.shared(mem, p, va, frame);
                    regs[3] |= u64::from(shared);
                } else {
                    regs[1] = 0;
                    regs[2] = 0;
                }
            }
            KOp::Fork { .. } | KOp::Mmap { .. } => {}
            KOp::Exit { .. } => {
                // Every page of every VMA, numbered in VMA order (frames
                // in registers 1 and 2); the tables on the one path, as
                // for munmap (slots 0, 1, 2 of register 3: levels 3, 2, 1).
                let Some(first) = proc_.vmas.first() else {
                    return;
                };
                let t = tables(mem, proc_.root, first.start);
                let mut i = 0usize;
                for vma in &proc_.vmas {
                    let mut va = vma.start;
                    while va < vma.end {
                        if let Some(l3) = t[3] {
                            let pte = mem.read(Pa(l3 + 8 * index(va, 3)));
                            if pte & bits::VALID != 0 {
                                regs[1 + i / 4] |=
                                    ((pte & bits::ADDR_MASK) >> 12) << (16 * (i % 4));
                            }
                        }
                        va += PAGE_SIZE;
                        i += 1;
                    }
                }
                for (slot, lvl) in [3usize, 2, 1].into_iter().enumerate() {
                    if let Some(a) = t[lvl] {
                        regs[3] |= (a >> 12) << (16 * slot);
                    }
                }
            }
            KOp::Mprotect { p, start, len, .. } => {
                // change_pte_range's view under the page-table lock: each
                // present PTE's frame (registers 1 and 2), the level-3
                // table (bits 0..16 of register 3) and, at bit 32 + i,
                // whether another process maps page i's frame.
                let Some(l3) = tables(mem, proc_.root, start)[3] else {
                    return;
                };
                regs[3] |= l3 >> 12;
                for i in 0..(len / PAGE_SIZE) as usize {
                    let va = start + i as u64 * PAGE_SIZE;
                    let pte = mem.read(Pa(l3 + 8 * index(va, 3)));
                    if pte & bits::VALID == 0 {
                        // A writable migration entry: bit 40 + i, and its
                        // frame in page i's slot.
                        if pte & MIGRATION != 0 && pte & MIGRATION_WRITE != 0 {
                            regs[3] |= 1 << (40 + i);
                            regs[1 + i / 4] |= ((pte & bits::ADDR_MASK) >> 12) << (16 * (i % 4));
                        }
                        continue;
                    }
                    let frame = pte & bits::ADDR_MASK;
                    regs[1 + i / 4] |= (frame >> 12) << (16 * (i % 4));
                    let shared = self.kernel.shared(mem, p, va, frame);
                    regs[3] |= u64::from(shared) << (32 + i);
                }
            }
            KOp::Mremap { old, len, new, .. } => {
                let src = (proc_.root, old);
                let dst = (proc_.root, new);
                copy_snapshot(mem, src, dst, len / PAGE_SIZE, 0, regs);
            }
            KOp::Reclaim { va, .. } | KOp::Migrate { va, .. } => {
                // folio_isolate_lru: the page reclaim picked.
                if let Some(l3) = tables(mem, proc_.root, va)[3] {
                    let pte = mem.read(Pa(l3 + 8 * index(va, 3)));
                    if pte & bits::VALID != 0 {
                        regs[0] = ((pte & bits::ADDR_MASK) >> 12) + 1;
                    }
                }
            }
            KOp::MirrorFault { va, .. } => {
                // hmm_range_fault reads the mirrored process's PTE.
                let of = proc_.mirror.as_ref().map_or(0, |mi| mi.of);
                let src = &self.kernel.processes[of];
                if let Some(l3) = tables(mem, src.root, va)[3] {
                    regs[2] = mem.read(Pa(l3 + 8 * index(va, 3)));
                }
            }
        }
    }

    fn split(st: &ProgState) -> (usize, usize) {
        (
            (st.pc >> MICRO_BITS) as usize,
            (st.pc & ((1 << MICRO_BITS) - 1)) as usize,
        )
    }
}

impl Program for KernelThread {
    fn next<'a>(&'a self, st: &ProgState, m: &Machine) -> Option<Emit<'a>> {
        let (item, micro) = Self::split(st);
        match self.items.get(item)? {
            Item::Op(op) => Some(Emit {
                op: Cow::Borrowed(op),
                origin: None,
            }),
            Item::Kernel(k) => {
                let step = self.plan(k, &st.regs).into_iter().nth(micro)?;
                if let After::Call(slot, call) = step.after {
                    let sub = self.kernel.slots[slot].program(call);
                    let e = sub.next(&st.callee_state(), m)?;
                    return Some(Emit {
                        op: Cow::Owned(e.op.into_owned()),
                        origin: Some(Cow::Owned(format!(
                            "{} {k}: {}: {}",
                            self.kernel.processes[k.process()].name,
                            step.func,
                            e.origin.unwrap_or_default()
                        ))),
                    });
                }
                Some(Emit {
                    op: Cow::Owned(step.op),
                    origin: Some(Cow::Owned(format!(
                        "{} {k}: {}",
                        self.kernel.processes[k.process()].name,
                        step.func
                    ))),
                })
            }
        }
    }

    fn advance(&self, st: &mut ProgState, m: &Machine, result: OpResult) {
        let (item, micro) = Self::split(st);
        let done = match &self.items[item] {
            Item::Op(_) => true,
            Item::Kernel(k) => {
                let after = self.plan(k, &st.regs)[micro].after;
                match after {
                    After::Go => {}
                    After::Snapshot => self.snapshot(k, m, &mut st.regs),
                    After::Save => st.regs[0] = result.value + 1,
                    After::ForkVma(n) => {
                        if let KOp::Fork { p, child } = *k {
                            self.fork_snapshot(p, child, n, m, &mut st.regs);
                        }
                    }
                    After::RmapVma(n) => {
                        if let KOp::Reclaim { p, .. } | KOp::Migrate { p, .. } = *k {
                            self.rmap_snapshot(p, n, m, &mut st.regs);
                        }
                    }
                    After::Recheck => {
                        if m.mem.read(Pa(st.regs[1])) != st.regs[2] {
                            st.regs[3] |= 2;
                        }
                    }
                    After::SeqChanged => {
                        if result.value + 1 != st.regs[0] {
                            st.regs[3] |= 1;
                        }
                    }
                    After::Restart => {
                        st.pc = (item as u32) << MICRO_BITS;
                        st.regs = [0; 4];
                        return;
                    }
                    After::VmaPresent(n) => {
                        if result.value > 0 {
                            st.regs[3] |= 1 << (56 + n);
                        }
                    }
                    After::TouchWalk => {
                        if let KOp::Touch { p, va, write } = *k {
                            self.touch_walk(p, va, write, m, &mut st.regs);
                        }
                    }
                    After::SaveSlot(n) => {
                        let sh = 16 * u32::from(n);
                        st.regs[2] = st.regs[2] & !(0xffff << sh) | (result.value & 0xffff) << sh;
                    }
                    After::Install(n) => {
                        if let KOp::Touch { p, va, .. } = *k {
                            self.touch_install(p, va, n, m, &mut st.regs);
                        }
                    }
                    After::SaveNew => {
                        st.regs[3] &= !(0xffff << 32);
                        st.regs[3] |= (result.value & 0xffff) << 32;
                    }
                    After::MigrationEntry => {
                        let e = m.mem.read(Pa(st.regs[1]));
                        let old = (st.regs[0].wrapping_sub(1)) << 12;
                        if e & bits::VALID == 0 && e & MIGRATION != 0 && e & bits::ADDR_MASK == old
                        {
                            st.regs[3] |= 1 << 48;
                            if e & MIGRATION_WRITE != 0 {
                                st.regs[3] |= 1 << 49;
                            }
                        }
                    }
                    After::Batched(at) => {
                        st.regs[3] &= !(15 << at);
                        st.regs[3] |= result.value.min(15) << at;
                    }
                    After::Call(slot, call) => {
                        let sub = self.kernel.slots[slot].program(call);
                        let mut sub_st = st.callee_state();
                        sub.advance(&mut sub_st, m, result);
                        if sub.next(&sub_st, m).is_some() {
                            st.set_callee(&sub_st);
                            return;
                        }
                        st.callee = Frame::default();
                    }
                    After::PteRaced => {
                        let l3 = ((st.regs[1] >> 32) & 0xffff) << 12;
                        if let KOp::Touch { va, .. } = *k {
                            if m.mem.read(Pa(l3 + 8 * index(va, 3))) != 0 {
                                st.regs[3] |= 1 << 63;
                            }
                        }
                    }
                }
                micro + 1 >= self.plan(k, &st.regs).len()
            }
        };
        if done {
            st.pc = ((item as u32) + 1) << MICRO_BITS;
            st.regs = [0; 4];
        } else {
            st.pc += 1;
        }
    }

    fn may_allocate(&self, st: &ProgState) -> bool {
        let (item, _) = Self::split(st);
        // A write fault may copy the page (`wp_page_copy`); a touch may
        // allocate tables and a page.
        self.items[item.min(self.items.len())..].iter().any(|i| {
            matches!(
                i,
                Item::Op(Op::Alloc { .. })
                    | Item::Kernel(
                        KOp::WriteFault { .. } | KOp::Touch { .. } | KOp::Migrate { .. }
                    )
            )
        })
    }
}

/// Builds one kernel operation's steps.
struct Planner<'k> {
    k: &'k Kernel,
    out: Vec<Step>,
}

impl Planner<'_> {
    fn push(&mut self, op: Op, func: &'static str) {
        self.out.push(Step {
            op,
            func,
            after: After::Go,
        });
    }

    fn push_then(&mut self, op: Op, func: &'static str, after: After) {
        self.out.push(Step { op, func, after });
    }

    fn sync(&mut self, s: SyncOp, func: &'static str) {
        self.push(Op::Sync(s), func);
    }

    /// `tlb_end_vma` on arm64, which does not select
    /// MMU_GATHER_MERGE_VMAS: `tlb_flush_mmu_tlbonly` flushes the cleared
    /// PTEs of `[start, end)` (last level, level 3, PAGE_SIZE stride) and,
    /// before 6bbd42e2df8f, tells the secondaries.
    fn tlb_end_vma(
        &mut self,
        p: usize,
        v: Version,
        cpu: CpuFeatures,
        asid: u16,
        start: u64,
        end: u64,
    ) {
        self.arch(
            p,
            arm64::tlb_flush(
                v.arm64(),
                cpu,
                asid,
                false,
                start,
                end,
                PAGE_SIZE,
                false,
                Some(3),
            ),
            "tlb_end_vma: tlb_flush",
        );
        if v.range_end_notifies() {
            self.secondary(
                p,
                start,
                end,
                "tlb_end_vma: tlb_flush_mmu_tlbonly: invalidate_range",
            );
        }
    }

    /// The arm64 flush steps, with the secondaries expanded.
    fn arch(&mut self, p: usize, ops: Vec<ArchOp>, func: &'static str) {
        for a in ops {
            match a {
                ArchOp::Tlbi { tlbi, operand } => self.push(
                    Op::Tlbi {
                        text: a.text(),
                        ins: tlbi,
                        raw: a.raw(),
                        scope: tlbi.scope(&operand, 0),
                        broadcast: tlbi.broadcast,
                    },
                    func,
                ),
                ArchOp::Dsb(kind) => self.push(Op::Dsb { kind }, func),
                ArchOp::Secondary { start, end } => {
                    self.secondary(p, start, end, "mmu_notifier_arch_invalidate_secondary_tlbs")
                }
            }
        }
    }

    /// Every SVA subscription of process `p` invalidates `[start, end)`.
    fn secondary(&mut self, p: usize, start: u64, end: u64, func: &'static str) {
        let k = self.k;
        for bond in &k.processes[p].bonds {
            // The driver's dma_wmb() orders the PTE stores before the
            // command queue's PROD write, so the SMMU's walks see them
            // before it consumes a command; the model has no DMB and
            // stands a DSB ISHST in for it.
            // Every range the operations here hand over is at most one
            // 2 MiB region, (-1, -1) or, from v6.6's hooks, (0, -1UL),
            // which v6.6's driver turns into a TLBI by ASID: no driver
            // loop runs away.
            self.smmu_ops(
                sva::invalidate(k.version, k.smmu, Granule::K4, bond, start, end),
                func,
            );
        }
    }

    /// The barrier arm64's table-entry setters end with: `set_p4d` (a
    /// level-0 entry with four levels) always, `set_pud` and `set_pmd` for
    /// a valid entry: `dsb(ishst)` (then an ISB, which the model has no
    /// use for), publishing the entry to the table walkers at once. The
    /// caller says whether this store is one of those.
    fn table_entry_barrier(&mut self, barrier: bool, func: &'static str) {
        if barrier {
            self.push(Op::Dsb { kind: Dsb::Ishst }, func);
        }
    }

    /// `flush_tlb_batched_pending(mm)` (v6.6: 3ea277194daa's drain of
    /// reclaim's pending flushes, with arm64's 43b3dfdd0455 hook), called
    /// with the page-table lock held: when reclaim batched a flush for the
    /// mm since the last drain, `arch_flush_tlb_batched_pending` and the
    /// count marked flushed. The count read goes to register 3 bits `at`
    /// to `at + 3`.
    fn batched_pending(&mut self, p: usize, at: u8, regs: &[u64; 4]) {
        let k = self.k;
        if !k.version.tlbbatch() {
            return;
        }
        let c = k.flush_batched(p);
        self.push_then(
            Op::Sync(SyncOp::AtomicRead(c)),
            "flush_tlb_batched_pending: atomic_read(&mm->tlb_flush_batched)",
            After::Batched(at),
        );
        let n = (regs[3] >> at) & 15;
        if n > 0 {
            self.arch(
                p,
                arm64::flush_tlb_batched_pending(),
                "flush_tlb_batched_pending: arch_flush_tlb_batched_pending",
            );
            self.sync(
                SyncOp::AtomicAdd(c, -(n as i8)),
                "flush_tlb_batched_pending: atomic_cmpxchg (all flushed)",
            );
        }
    }

    /// MADV_DONTNEED and munmap: `zap_page_range_single` /
    /// `unmap_region` as v6.5 and v6.6 have them.
    fn zap(&mut self, p: usize, start: u64, len: u64, unmap: bool, regs: &[u64; 4]) {
        let k = self.k;
        let v = k.version;
        let proc_ = &k.processes[p];
        let mmap = Kernel::mmap_lock(p);
        if unmap {
            self.sync(SyncOp::Lock(mmap), "mmap_write_lock");
            // The VMAs `mmap` steps make: which the process has now
            // (find_vma), and those the range covers are detached.
            let late = (0..proc_.vmas.len()).filter_map(|n| k.vma_counter(p, n).map(|c| (n, c)));
            for (j, (n, c)) in late.enumerate() {
                self.push_then(
                    Op::Sync(SyncOp::AtomicRead(c)),
                    "do_vmi_munmap: find_vma",
                    After::VmaPresent(j as u8),
                );
                let vma = proc_.vmas[n];
                if regs[3] >> (56 + j) & 1 != 0 && start <= vma.start && vma.end <= start + len {
                    self.sync(
                        SyncOp::AtomicAdd(c, -1),
                        "do_vmi_align_munmap: vma_iter_clear (detach)",
                    );
                }
            }
            // do_vmi_align_munmap: mmap_write_downgrade once the VMAs are
            // detached.
            self.sync(SyncOp::Unlock(mmap), "mmap_write_downgrade");
            self.sync(SyncOp::ReadLock(mmap), "mmap_write_downgrade");
        } else {
            self.sync(SyncOp::ReadLock(mmap), "mmap_read_lock");
        }
        let pending = Kernel::flush_pending(p);
        self.sync(
            SyncOp::AtomicAdd(pending, 1),
            "tlb_gather_mmu: inc_tlb_flush_pending",
        );
        self.range_start(p, start, start + len);
        self.push_then(
            Op::Sync(SyncOp::Lock(Kernel::ptl(p))),
            "zap_pte_range: pte_offset_map_lock",
            After::Snapshot,
        );
        self.batched_pending(p, 50, regs);
        // What the snapshot read.
        let pages = (len / PAGE_SIZE) as usize;
        let frame = |i: usize| (regs[1 + i / 4] >> (16 * (i % 4))) & 0xffff;
        let table_pa = |slot: usize| ((regs[3] >> (16 * slot)) & 0xffff) << 12;
        let free_levels = ((regs[3] >> 48) & 3) as usize;
        let l3 = table_pa(0);
        let mut tlb_start = u64::MAX;
        let mut tlb_end = 0;
        let mut cleared = false;
        let mut freed = Vec::new();
        for i in 0..pages {
            if frame(i) != 0 {
                let va = start + i as u64 * PAGE_SIZE;
                self.push(
                    Op::Store {
                        pa: Pa(l3 + 8 * index(va, 3)),
                        value: 0,
                    },
                    "zap_pte_range: ptep_get_and_clear_full",
                );
                freed.push(Pfn(frame(i)));
                tlb_start = tlb_start.min(va);
                tlb_end = tlb_end.max(va + PAGE_SIZE);
                cleared = true;
            }
        }
        self.sync(
            SyncOp::Unlock(Kernel::ptl(p)),
            "zap_pte_range: pte_unmap_unlock",
        );
        let cpu = k.cpu;
        let asid = proc_.asid;
        let code = v.arm64();
        // unmap_page_range ends with tlb_end_vma: arm64 does not select
        // MMU_GATHER_MERGE_VMAS, so tlb_flush_mmu_tlbonly flushes the
        // cleared PTEs at the VMA's end, before invalidate_range_end
        // (only cleared_ptes: last level, level 3, PAGE_SIZE stride), and
        // resets the gather's range.
        if cleared {
            self.tlb_end_vma(p, v, cpu, asid, tlb_start, tlb_end);
        }
        if v.range_end_notifies() {
            self.secondary(
                p,
                start,
                start + len,
                "mmu_notifier_invalidate_range_end: invalidate_range",
            );
        }
        self.range_end(p);
        let mut tables = Vec::new();
        let (mut tlb_start, mut tlb_end) = (u64::MAX, 0);
        if unmap && free_levels > 0 {
            // free_pgtables, innermost first: clear the entry linking each
            // freed table (free_pte_range: pmd_clear; free_pmd_range:
            // pud_clear; ...), then queue the table for freeing after the
            // flush. free_pgd_range starts from the PMD-aligned address,
            // so pte_free_tlb gathers [addr & PMD_MASK, + PAGE_SIZE) and
            // sets cleared_pmds; pmd_free_tlb the PUD-aligned page
            // (cleared_puds), pud_free_tlb the P4D-aligned one
            // (cleared_p4ds); each sets freed_tables.
            for slot in 0..free_levels {
                let parent = if slot == 2 {
                    proc_.root
                } else {
                    table_pa(slot + 1)
                };
                let parent_level = 2 - slot as u8;
                self.push(
                    Op::Store {
                        pa: Pa(parent + 8 * index(start, parent_level)),
                        value: 0,
                    },
                    [
                        "free_pgtables: pmd_clear",
                        "free_pgtables: pud_clear",
                        "free_pgtables: p4d_clear",
                    ][slot],
                );
                self.table_entry_barrier(slot == 2, "free_pgtables: p4d_clear: set_p4d");
                tables.push(Pfn(table_pa(slot) >> 12));
                let at = start & !(table_span(parent_level) - 1);
                tlb_start = tlb_start.min(at);
                tlb_end = tlb_end.max(at + PAGE_SIZE);
            }
        }
        self.push_then(
            Op::Sync(SyncOp::AtomicRead(pending)),
            "tlb_finish_mmu: mm_tlb_flush_nested",
            After::Save,
        );
        let nested = regs[0] > 2; // the count read, plus one, above 1
        let freed_tables = !tables.is_empty();
        if nested {
            // tlb_finish_mmu: fullmm = 1, __tlb_reset_range (start = end =
            // ~0), freed_tables = 1; tlb_flush flushes the whole ASID.
            self.arch(
                p,
                arm64::tlb_flush(code, cpu, asid, true, 0, 0, PAGE_SIZE, true, None),
                "tlb_flush (nested: fullmm)",
            );
            if v.range_end_notifies() {
                self.secondary(
                    p,
                    u64::MAX,
                    u64::MAX,
                    "tlb_flush_mmu_tlbonly: invalidate_range(-1, -1)",
                );
            }
        } else if freed_tables {
            // Only the tables are left in the gather: tlb_get_unmap_size
            // is PMD_SIZE (cleared_pmds, the innermost freed table's),
            // tlb_get_level is TLBI_TTL_UNKNOWN (freed_tables), not last
            // level.
            self.arch(
                p,
                arm64::tlb_flush(
                    code, cpu, asid, false, tlb_start, tlb_end, L3_SPAN, true, None,
                ),
                "tlb_finish_mmu: tlb_flush",
            );
            if v.range_end_notifies() {
                self.secondary(
                    p,
                    tlb_start,
                    tlb_end,
                    "tlb_flush_mmu_tlbonly: invalidate_range",
                );
            }
        }
        self.free_gathered(freed, tables);
        self.sync(
            SyncOp::AtomicAdd(pending, -1),
            "tlb_finish_mmu: dec_tlb_flush_pending",
        );
        self.sync(SyncOp::ReadUnlock(mmap), "mmap_read_unlock");
    }

    /// `tlb_flush_mmu_free`: the gathered pages, then the gathered page
    /// tables, once the flush that covered them has been issued.
    fn free_gathered(&mut self, freed: Vec<Pfn>, tables: Vec<Pfn>) {
        for f in freed {
            self.push(
                Op::Free { frame: f },
                "tlb_flush_mmu_free: free_pages_and_swap_cache",
            );
        }
        for f in tables {
            self.push(
                Op::Free { frame: f },
                "tlb_flush_mmu_free: tlb_remove_table",
            );
        }
    }

    /// `exit_mmap` (v6.5, v6.6) for [`KOp::Exit`].
    fn exit(&mut self, p: usize, regs: &[u64; 4]) {
        let k = self.k;
        let proc_ = &k.processes[p];
        let mmap = Kernel::mmap_lock(p);
        let ptl = Kernel::ptl(p);
        let pending = Kernel::flush_pending(p);
        // mmu_notifier_release: each subscription's release, then the
        // list is emptied (mn_hlist_release).
        for bond in &proc_.bonds {
            let mut batch = Vec::new();
            for op in sva::release(bond) {
                match op {
                    sva::ReleaseOp::CdStore { pa, value } => self.push(
                        Op::Store { pa: Pa(pa), value },
                        "arm_smmu_mm_release: arm_smmu_write_ctx_desc(quiet_cd)",
                    ),
                    sva::ReleaseOp::Smmu(o) => {
                        batch.push(o);
                        if o == SmmuOp::Sync {
                            let func = match batch[0] {
                                SmmuOp::Cmd(Command::CfgiCd { .. }) => {
                                    "arm_smmu_mm_release: arm_smmu_sync_cd"
                                }
                                SmmuOp::Cmd(Command::TlbiNhAsid { .. }) => {
                                    "arm_smmu_mm_release: arm_smmu_tlb_inv_asid"
                                }
                                _ => "arm_smmu_mm_release: arm_smmu_atc_inv_domain",
                            };
                            self.smmu_ops(std::mem::take(&mut batch), func);
                        }
                    }
                }
            }
        }
        self.sync(SyncOp::ReadLock(mmap), "exit_mmap: mmap_read_lock");
        self.sync(
            SyncOp::AtomicAdd(pending, 1),
            "tlb_gather_mmu_fullmm: inc_tlb_flush_pending",
        );
        self.push_then(
            Op::Sync(SyncOp::Lock(ptl)),
            "unmap_vmas: zap_pte_range: pte_offset_map_lock",
            After::Snapshot,
        );
        self.batched_pending(p, 50, regs);
        let frame = |i: usize| (regs[1 + i / 4] >> (16 * (i % 4))) & 0xffff;
        let table_pa = |slot: usize| ((regs[3] >> (16 * slot)) & 0xffff) << 12;
        let l3 = table_pa(0);
        let mut freed = Vec::new();
        let mut i = 0usize;
        for vma in &proc_.vmas {
            let mut va = vma.start;
            while va < vma.end {
                if frame(i) != 0 {
                    self.push(
                        Op::Store {
                            pa: Pa(l3 + 8 * index(va, 3)),
                            value: 0,
                        },
                        "unmap_vmas: zap_pte_range: ptep_get_and_clear_full",
                    );
                    freed.push(Pfn(frame(i)));
                }
                va += PAGE_SIZE;
                i += 1;
            }
        }
        self.sync(
            SyncOp::Unlock(ptl),
            "unmap_vmas: zap_pte_range: pte_unmap_unlock",
        );
        self.sync(SyncOp::ReadUnlock(mmap), "exit_mmap: mmap_read_unlock");
        self.sync(SyncOp::Lock(mmap), "exit_mmap: mmap_write_lock");
        // free_pgtables(FIRST_USER_ADDRESS, USER_PGTABLES_CEILING): every
        // table on the path goes, innermost first, as in munmap.
        let start = proc_.vmas.first().map_or(0, |v| v.start);
        let mut tables = Vec::new();
        for slot in 0..3usize {
            if table_pa(slot) == 0 {
                break;
            }
            let parent = if slot == 2 {
                proc_.root
            } else {
                table_pa(slot + 1)
            };
            self.push(
                Op::Store {
                    pa: Pa(parent + 8 * index(start, 2 - slot as u8)),
                    value: 0,
                },
                [
                    "free_pgtables: pmd_clear",
                    "free_pgtables: pud_clear",
                    "free_pgtables: p4d_clear",
                ][slot],
            );
            self.table_entry_barrier(slot == 2, "free_pgtables: p4d_clear: set_p4d");
            tables.push(Pfn(table_pa(slot) >> 12));
        }
        self.push_then(
            Op::Sync(SyncOp::AtomicRead(pending)),
            "tlb_finish_mmu: mm_tlb_flush_nested",
            After::Save,
        );
        // A fullmm gather: flush_tlb_mm once tables were freed (a nested
        // flush forces freed_tables too), nothing otherwise. The
        // notifier list is empty now, so the v6.6 hook in flush_tlb_mm
        // and v6.5's tlb_flush_mmu_tlbonly call reach nobody.
        let freed_tables = !tables.is_empty() || regs[0] > 2;
        let ops: Vec<ArchOp> = arm64::tlb_flush(
            k.version.arm64(),
            k.cpu,
            proc_.asid,
            true,
            0,
            0,
            PAGE_SIZE,
            freed_tables,
            None,
        )
        .into_iter()
        .filter(|a| !matches!(a, ArchOp::Secondary { .. }))
        .collect();
        self.arch(p, ops, "tlb_finish_mmu: tlb_flush (fullmm)");
        self.free_gathered(freed, tables);
        self.sync(
            SyncOp::AtomicAdd(pending, -1),
            "tlb_finish_mmu: dec_tlb_flush_pending",
        );
        self.sync(SyncOp::Unlock(mmap), "exit_mmap: mmap_write_unlock");
    }

    /// `do_mprotect_pkey` -> `mprotect_fixup` -> `change_protection`
    /// (v6.5, v6.6) for [`KOp::Mprotect`].
    fn mprotect(&mut self, p: usize, start: u64, len: u64, writable: bool, regs: &[u64; 4]) {
        let k = self.k;
        let v = k.version;
        let proc_ = &k.processes[p];
        let mmap = Kernel::mmap_lock(p);
        let ptl = Kernel::ptl(p);
        let pending = Kernel::flush_pending(p);
        self.sync(
            SyncOp::Lock(mmap),
            "do_mprotect_pkey: mmap_write_lock_killable",
        );
        self.sync(
            SyncOp::AtomicAdd(pending, 1),
            "tlb_gather_mmu: inc_tlb_flush_pending",
        );
        // change_pmd_range opens the notifier range once it meets a
        // populated PMD (MMU_NOTIFY_PROTECTION_VMA).
        self.range_start(p, start, start + len);
        self.push_then(
            Op::Sync(SyncOp::Lock(ptl)),
            "change_pte_range: pte_offset_map_lock",
            After::Snapshot,
        );
        self.batched_pending(p, 56, regs);
        let l3 = (regs[3] & 0xffff) << 12;
        let mut tlb_start = u64::MAX;
        let mut tlb_end = 0;
        for i in 0..(len / PAGE_SIZE) as usize {
            let frame = (regs[1 + i / 4] >> (16 * (i % 4))) & 0xffff;
            if regs[3] >> (40 + i) & 1 != 0 {
                // A writable migration entry. To read-only: "a protection
                // check is difficult so just be safe and disable write",
                // make_readable_migration_entry, with no flush (nothing
                // caches an invalid entry); to writable: left alone.
                if !writable {
                    let va = start + i as u64 * PAGE_SIZE;
                    self.push(
                        Op::Store {
                            pa: Pa(l3 + 8 * index(va, 3)),
                            value: migration_entry(frame << 12, false),
                        },
                        "change_pte_range: make_readable_migration_entry",
                    );
                }
                continue;
            }
            if frame == 0 {
                continue;
            }
            let va = start + i as u64 * PAGE_SIZE;
            let at = Pa(l3 + 8 * index(va, 3));
            let shared = regs[3] >> (32 + i) & 1 != 0;
            self.push(
                Op::Store { pa: at, value: 0 },
                "change_pte_range: ptep_modify_prot_start",
            );
            self.push(
                Op::Store {
                    pa: at,
                    value: user_pte(frame << 12, writable && !shared),
                },
                "change_pte_range: ptep_modify_prot_commit",
            );
            tlb_start = tlb_start.min(va);
            tlb_end = tlb_end.max(va + PAGE_SIZE);
        }
        self.sync(SyncOp::Unlock(ptl), "change_pte_range: pte_unmap_unlock");
        let changed = tlb_end != 0;
        if l3 != 0 && v.range_end_notifies() {
            self.secondary(
                p,
                start,
                start + len,
                "change_pmd_range: mmu_notifier_invalidate_range_end: invalidate_range",
            );
        }
        self.range_end(p);
        let code = v.arm64();
        // change_protection_range ends with tlb_end_vma (no
        // MMU_GATHER_MERGE_VMAS on arm64): only PTEs were touched
        // (cleared_ptes), so a leaf flush at level 3.
        if changed {
            self.tlb_end_vma(p, v, k.cpu, proc_.asid, tlb_start, tlb_end);
        }
        self.push_then(
            Op::Sync(SyncOp::AtomicRead(pending)),
            "tlb_finish_mmu: mm_tlb_flush_nested",
            After::Save,
        );
        if regs[0] > 2 {
            self.arch(
                p,
                arm64::tlb_flush(code, k.cpu, proc_.asid, true, 0, 0, PAGE_SIZE, true, None),
                "tlb_flush (nested: fullmm)",
            );
            if v.range_end_notifies() {
                self.secondary(
                    p,
                    u64::MAX,
                    u64::MAX,
                    "tlb_flush_mmu_tlbonly: invalidate_range(-1, -1)",
                );
            }
        }
        self.sync(
            SyncOp::AtomicAdd(pending, -1),
            "tlb_finish_mmu: dec_tlb_flush_pending",
        );
        self.sync(SyncOp::Unlock(mmap), "do_mprotect_pkey: mmap_write_unlock");
    }

    /// The write fault on a present read-only PTE of a writable VMA.
    fn write_fault(&mut self, p: usize, va: u64, regs: &[u64; 4]) {
        let mmap = Kernel::mmap_lock(p);
        self.sync(SyncOp::ReadLock(mmap), "mmap_read_lock");
        self.wp_locked(p, va, regs);
        self.sync(SyncOp::ReadUnlock(mmap), "mmap_read_unlock");
    }

    /// `handle_pte_fault` for a write to a present PTE, mmap_lock held
    /// for read (v6.5, v6.6; seed 004's patch where it hooks). Linux's
    /// `pte_write` is PTE_WRITE, the DBM bit (51): a PTE with it and
    /// PTE_RDONLY is writable but clean. Such a PTE is made dirty in
    /// `handle_pte_fault` itself (`pte_mkdirty` clears PTE_RDONLY,
    /// `ptep_set_access_flags` with `dirty` flushes the page, since the
    /// read-only entry may be cached), and seed 004's patch notifies
    /// there, after `pte_unmap_unlock`, since the PTE changed. A PTE
    /// without PTE_WRITE goes to `do_wp_page`: a page only this process
    /// maps is reused (`wp_page_reuse`: the same store and flush, but no
    /// notification in seed 004's patch, which does not touch it), a
    /// shared one or the zero page is copied ([`Planner::wp_page_copy`]).
    fn wp_locked(&mut self, p: usize, va: u64, regs: &[u64; 4]) {
        let k = self.k;
        let proc_ = &k.processes[p];
        let ptl = Kernel::ptl(p);
        self.push_then(
            Op::Sync(SyncOp::Lock(ptl)),
            "handle_pte_fault: pte_offset_map_lock",
            After::Snapshot,
        );
        let (at, pte) = (regs[1], regs[2]);
        let writable_vma = proc_.vma(va).is_some_and(|v| v.writable);
        let upgrade = at != 0 && pte & bits::VALID != 0 && pte & bits::AP_RO != 0 && writable_vma;
        let page = va & !(PAGE_SIZE - 1);
        let flush = |pl: &mut Planner<'_>, what: &'static str| {
            pl.push(
                Op::Store {
                    pa: Pa(at),
                    value: pte & !bits::AP_RO,
                },
                what,
            );
            pl.arch(
                p,
                arm64::flush_tlb_page(k.version.arm64(), proc_.asid, page),
                "ptep_set_access_flags: flush_tlb_page",
            );
        };
        if upgrade && pte & bits::DBM != 0 {
            flush(self, "handle_pte_fault: pte_mkdirty, ptep_set_access_flags");
            self.sync(SyncOp::Unlock(ptl), "handle_pte_fault: pte_unmap_unlock");
            if k.version.upgrade_notifies() {
                self.range_start(p, page, page + PAGE_SIZE);
                self.secondary(
                    p,
                    page,
                    page + PAGE_SIZE,
                    "handle_pte_fault: mmu_notifier_invalidate_range_end (PROTECTION_UPGRADE): invalidate_range",
                );
                self.range_end(p);
            }
            return;
        }
        if upgrade && regs[3] & 1 != 0 {
            self.sync(SyncOp::Unlock(ptl), "do_wp_page: pte_unmap_unlock");
            self.wp_page_copy(p, page, regs);
            return;
        }
        if upgrade {
            flush(self, "wp_page_reuse: ptep_set_access_flags");
            self.sync(SyncOp::Unlock(ptl), "wp_page_reuse: pte_unmap_unlock");
            return;
        }
        self.sync(SyncOp::Unlock(ptl), "pte_unmap_unlock");
    }

    /// `mmap` of VMA `n` ([`KOp::Mmap`]).
    fn mmap(&mut self, p: usize, n: usize, regs: &[u64; 4]) {
        let Some(c) = self.k.vma_counter(p, n) else {
            return;
        };
        let mmap = Kernel::mmap_lock(p);
        self.sync(SyncOp::Lock(mmap), "do_mmap: mmap_write_lock_killable");
        self.push_then(
            Op::Sync(SyncOp::AtomicRead(c)),
            "mmap_region: is the range free",
            After::Save,
        );
        // The count read, plus one: 1 when the process lacks the VMA.
        if regs[0] == 1 {
            self.sync(SyncOp::AtomicAdd(c, 1), "mmap_region: vma_link");
        }
        self.sync(SyncOp::Unlock(mmap), "do_mmap: mmap_write_unlock");
    }

    /// A CPU access with its fault path ([`KOp::Touch`]). Registers:
    /// 0 the VMA's counter (plus one) and later `wp_page_copy`'s page;
    /// 1 the tables at levels 1..3 (16-bit slots, frame numbers), or the
    /// PTE's address on the write-fault path; 2 the tables and page this
    /// operation allocated (slots 0..2 and 3), or the PTE on the
    /// write-fault path; 3 the flags of [`After::TouchWalk`],
    /// [`After::Install`] and [`After::PteRaced`], and in bits 12 + n
    /// whether the level-`n` table must be made.
    fn touch(&mut self, p: usize, va: u64, write: bool, regs: &[u64; 4]) {
        let k = self.k;
        let proc_ = &k.processes[p];
        let mmap = Kernel::mmap_lock(p);
        let ptl = Kernel::ptl(p);
        self.sync(
            SyncOp::ReadLock(mmap),
            "do_page_fault: lock_mm_and_find_vma",
        );
        let n = proc_.vmas.iter().position(|v| v.start <= va && va < v.end);
        if let Some(c) = n.and_then(|n| k.vma_counter(p, n)) {
            self.push_then(
                Op::Sync(SyncOp::AtomicRead(c)),
                "do_page_fault: find_vma",
                After::Save,
            );
            if regs[0] == 1 {
                self.sync(
                    SyncOp::ReadUnlock(mmap),
                    "do_page_fault: bad_area (no VMA: SIGSEGV)",
                );
                return;
            }
        }
        self.push_then(
            Op::Sync(SyncOp::Lock(ptl)),
            "handle_pte_fault: pte_offset_map_lock",
            After::TouchWalk,
        );
        if regs[3] >> 62 & 1 == 0 {
            return;
        }
        let tbl = |n: u8| ((regs[1] >> (16 * u32::from(n - 1))) & 0xffff) << 12;
        let ours = |n: u8| ((regs[2] >> (16 * u32::from(n - 1))) & 0xffff) << 12;
        if regs[3] >> 61 & 1 != 0 {
            self.sync(SyncOp::Unlock(ptl), "handle_pte_fault: pte_unmap_unlock");
            if regs[3] >> 60 & 1 == 0 {
                self.wp_locked(p, va, regs);
            }
        } else {
            self.sync(SyncOp::Unlock(ptl), "handle_pte_fault: pte_none");
            const ALLOC: [&str; 3] = [
                "__pud_alloc: pud_alloc_one",
                "__pmd_alloc: pmd_alloc_one",
                "__pte_alloc: pte_alloc_one",
            ];
            const POPULATE: [&str; 3] = [
                "__pud_alloc: p4d_populate",
                "__pmd_alloc: pud_populate",
                "pmd_install: pmd_populate",
            ];
            const FREE: [&str; 3] = [
                "__pud_alloc: pud_free (populated meanwhile)",
                "__pmd_alloc: pmd_free (populated meanwhile)",
                "__pte_alloc: pte_free (populated meanwhile)",
            ];
            for n in 1..=3u8 {
                if regs[3] >> (12 + n) & 1 == 0 {
                    continue;
                }
                let i = usize::from(n - 1);
                self.push_then(
                    Op::Alloc {
                        owner: FrameOwner::Table {
                            owner: TableOwner::Stage1 { space: proc_.space },
                            level: n,
                        },
                    },
                    ALLOC[i],
                    After::SaveSlot(n - 1),
                );
                self.push_then(
                    Op::Sync(SyncOp::Lock(ptl)),
                    "spin_lock(page_table_lock)",
                    After::Install(n),
                );
                if regs[3] >> (8 + n) & 1 != 0 {
                    self.sync(SyncOp::Unlock(ptl), "spin_unlock(page_table_lock)");
                    self.push(
                        Op::Free {
                            frame: Pfn(ours(n) >> 12),
                        },
                        FREE[i],
                    );
                } else {
                    let parent = if n == 1 { proc_.root } else { tbl(n - 1) };
                    self.push(
                        Op::Store {
                            pa: Pa(parent + 8 * index(va, n - 1)),
                            value: table(ours(n)),
                        },
                        POPULATE[i],
                    );
                    // A valid entry: set_p4d, set_pud and set_pmd all end
                    // with dsb(ishst).
                    self.table_entry_barrier(true, POPULATE[i]);
                    self.sync(SyncOp::Unlock(ptl), "spin_unlock(page_table_lock)");
                }
            }
            let data = ((regs[2] >> 48) & 0xffff) << 12;
            if write {
                self.push_then(
                    Op::Alloc {
                        owner: FrameOwner::Data { space: proc_.space },
                    },
                    "do_anonymous_page: vma_alloc_zeroed_movable_folio",
                    After::SaveSlot(3),
                );
            }
            self.push_then(
                Op::Sync(SyncOp::Lock(ptl)),
                "do_anonymous_page: pte_offset_map_lock",
                After::PteRaced,
            );
            if regs[3] >> 63 & 1 != 0 {
                self.sync(
                    SyncOp::Unlock(ptl),
                    "do_anonymous_page: update_mmu_tlb (filled meanwhile)",
                );
                if write {
                    self.push(
                        Op::Free {
                            frame: Pfn(data >> 12),
                        },
                        "do_anonymous_page: folio_put",
                    );
                }
            } else {
                let value = if write {
                    user_pte(data, true)
                } else {
                    user_pte(k.zero_page, false)
                };
                self.push(
                    Op::Store {
                        pa: Pa(tbl(3) + 8 * index(va, 3)),
                        value,
                    },
                    "do_anonymous_page: set_pte_at",
                );
                self.sync(SyncOp::Unlock(ptl), "do_anonymous_page: pte_unmap_unlock");
            }
        }
        self.sync(SyncOp::ReadUnlock(mmap), "do_page_fault: mmap_read_unlock");
        self.push(
            Op::Rely(Rely::RetrySucceeds {
                ctx: proc_.ctx,
                va: Va(va),
                write,
            }),
            "the access, retried after the fault",
        );
    }

    /// `wp_page_copy` (v6.5, v6.6) for the read-only PTE `regs[2]` at
    /// `regs[1]`, with the page-table lock dropped: allocate a page, copy
    /// the old one into it (`__wp_page_copy_user`: from here on the kernel
    /// relies on nobody writing the old page through this mapping, or the
    /// write is lost to the copy), re-take the lock and, if the PTE is
    /// unchanged (`pte_same`), clear it and flush the page
    /// (`ptep_clear_flush`; v6.5's `ptep_clear_flush_notify` adds the
    /// secondaries' `invalidate_range`), then map the copy writable
    /// (`set_pte_at_notify`). The old page stays: the other mapping holds
    /// it. Otherwise the copy is dropped.
    fn wp_page_copy(&mut self, p: usize, page: u64, regs: &[u64; 4]) {
        let k = self.k;
        let proc_ = &k.processes[p];
        let ptl = Kernel::ptl(p);
        let (at, pte) = (regs[1], regs[2]);
        // The zero page is not copied: the new page comes zeroed.
        let zero = k.zero_page != 0 && pte & bits::ADDR_MASK == k.zero_page;
        self.push_then(
            Op::Alloc {
                owner: FrameOwner::Data { space: proc_.space },
            },
            if zero {
                "wp_page_copy: vma_alloc_zeroed_movable_folio"
            } else {
                "wp_page_copy: vma_alloc_folio"
            },
            After::Save,
        );
        let new = regs[0].wrapping_sub(1);
        if !zero {
            self.push(
                Op::Rely(Rely::ReadOnly {
                    ctx: proc_.ctx,
                    va: Va(page),
                }),
                "wp_page_copy: __wp_page_copy_user",
            );
        }
        self.range_start(p, page, page + PAGE_SIZE);
        self.push_then(
            Op::Sync(SyncOp::Lock(ptl)),
            "wp_page_copy: pte_offset_map_lock",
            After::Recheck,
        );
        if regs[3] & 2 != 0 {
            self.sync(SyncOp::Unlock(ptl), "wp_page_copy: pte_unmap_unlock");
            self.range_end(p);
            self.push(
                Op::Free { frame: Pfn(new) },
                "wp_page_copy: folio_put (the PTE changed)",
            );
            return;
        }
        self.push(
            Op::Store {
                pa: Pa(at),
                value: 0,
            },
            "wp_page_copy: ptep_clear_flush",
        );
        self.arch(
            p,
            arm64::flush_tlb_page(k.version.arm64(), proc_.asid, page),
            "wp_page_copy: ptep_clear_flush: flush_tlb_page",
        );
        if k.version.range_end_notifies() {
            self.secondary(
                p,
                page,
                page + PAGE_SIZE,
                "wp_page_copy: ptep_clear_flush_notify: invalidate_range",
            );
        }
        self.push(
            Op::Store {
                pa: Pa(at),
                value: (pte & !bits::ADDR_MASK & !bits::AP_RO) | (new << 12),
            },
            "wp_page_copy: set_pte_at_notify",
        );
        self.sync(SyncOp::Unlock(ptl), "wp_page_copy: pte_unmap_unlock");
        self.range_end(p);
    }

    /// `dup_mmap` (v6.5, v6.6) of process `p` into `child`.
    fn fork(&mut self, p: usize, regs: &[u64; 4]) {
        let k = self.k;
        let v = k.version;
        let proc_ = &k.processes[p];
        let mmap = Kernel::mmap_lock(p);
        let ptl = Kernel::ptl(p);
        self.sync(
            SyncOp::Lock(mmap),
            "dup_mmap: mmap_write_lock_killable(oldmm)",
        );
        let frame = |i: usize| (regs[1 + i / 4] >> (16 * (i % 4))) & 0xffff;
        let present = |i: usize| regs[3] >> i & 1 != 0;
        let writable = |i: usize| regs[3] >> (8 + i) & 1 != 0;
        let src_l3 = ((regs[3] >> 32) & 0xffff) << 12;
        let dst_l3 = ((regs[3] >> 16) & 0xffff) << 12;
        let mut i = 0usize;
        for (n, vma) in proc_.vmas.iter().enumerate() {
            // copy_page_range of a private mapping (is_cow_mapping):
            // mmu_notifier_invalidate_range_start(MMU_NOTIFY_PROTECTION_PAGE),
            // which reaches no SVA subscription, then copy_pte_range with
            // the source page-table lock held.
            self.range_start(p, vma.start, vma.end);
            self.push_then(
                Op::Sync(SyncOp::Lock(ptl)),
                "copy_pte_range: spin_lock(src_ptl)",
                After::ForkVma(n),
            );
            let mut va = vma.start;
            while va < vma.end {
                if present(i) {
                    let pa = frame(i) << 12;
                    if writable(i) {
                        self.push(
                            Op::Store {
                                pa: Pa(src_l3 + 8 * index(va, 3)),
                                value: user_pte(pa, false),
                            },
                            "copy_present_pte: ptep_set_wrprotect",
                        );
                    }
                    self.push(
                        Op::Store {
                            pa: Pa(dst_l3 + 8 * index(va, 3)),
                            value: user_pte(pa, false),
                        },
                        "copy_present_pte: set_pte_at(dst_mm)",
                    );
                }
                va += PAGE_SIZE;
                i += 1;
            }
            self.sync(SyncOp::Unlock(ptl), "copy_pte_range: spin_unlock(src_ptl)");
            if v.range_end_notifies() {
                self.secondary(
                    p,
                    vma.start,
                    vma.end,
                    "copy_page_range: mmu_notifier_invalidate_range_end: invalidate_range",
                );
            }
            self.range_end(p);
        }
        self.arch(
            p,
            arm64::flush_tlb_mm(v.arm64(), proc_.asid),
            "dup_mmap: flush_tlb_mm(oldmm)",
        );
        self.sync(SyncOp::Unlock(mmap), "dup_mmap: mmap_write_unlock(oldmm)");
    }

    /// `mmu_notifier_invalidate_range_start(p, start, end)` as each mirror
    /// of `p` answers it: under its driver lock, open the sequence count
    /// (`mmu_interval_set_seq`; KVM's `mmu_invalidate_begin`), zap the
    /// shadow PTEs of the range, and invalidate the SMMU's TLB for them
    /// (leaf `CMD_TLBI_NH_VA`s by the mirror's ASID, `CMD_SYNC`) before
    /// returning (SMMUv3 4.4.2.4, 4.7.3). SVA subscriptions have no
    /// `invalidate_range_start`.
    fn range_start(&mut self, p: usize, start: u64, end: u64) {
        let k = self.k;
        for (m, mp, mi) in k.mirrors_of(p) {
            let lock = k.mirror_lock(m);
            self.sync(SyncOp::Lock(lock), "invalidate_range_start: mirror lock");
            self.sync(
                SyncOp::SeqWriteBegin(m as SyncId),
                "invalidate_range_start: mmu_interval_set_seq",
            );
            let mut zapped = false;
            let mut va = start;
            while va < end {
                if let Some(at) = mi.pte(va) {
                    self.push(
                        Op::Store {
                            pa: Pa(at),
                            value: 0,
                        },
                        "invalidate_range_start: zap the shadow PTE",
                    );
                    zapped = true;
                }
                va += PAGE_SIZE;
            }
            if zapped {
                self.smmu_ops(
                    sva::tlb_inv_range_asid(
                        k.smmu,
                        Granule::K4,
                        mp.asid,
                        start,
                        end - start,
                        true,
                        k.version == Version::Linux6_6,
                    ),
                    "invalidate_range_start: invalidate the shadow TLB",
                );
            }
            self.sync(
                SyncOp::Unlock(lock),
                "invalidate_range_start: mirror unlock",
            );
        }
        for (n, slot) in k.slots.iter().enumerate() {
            if slot.of != p {
                continue;
            }
            if let Some(call) = slot.unmap_for(start, end) {
                // The op is never issued: `next` runs the called
                // program's ops in its place.
                self.push_then(
                    Op::Barrier {
                        text: String::new(),
                        isb: false,
                    },
                    "invalidate_range_start: kvm_mmu_notifier",
                    After::Call(n, call),
                );
            }
        }
    }

    /// `mmu_notifier_invalidate_range_end(p)` as each mirror of `p`
    /// answers it: the sequence count closes, and faults may fill the
    /// shadow table again.
    fn range_end(&mut self, p: usize) {
        let k = self.k;
        for (m, _, _) in k.mirrors_of(p) {
            self.sync(
                SyncOp::SeqWriteEnd(m as SyncId),
                "invalidate_range_end: mirror",
            );
        }
    }

    /// The SMMU commands of a driver, after the `dma_wmb` that orders the
    /// table stores before them.
    fn smmu_ops(&mut self, ops: Vec<SmmuOp>, func: &'static str) {
        if ops.is_empty() {
            return;
        }
        self.push(
            Op::Dsb { kind: Dsb::Ishst },
            "arm_smmu_cmdq_issue_cmdlist: dma_wmb",
        );
        for o in ops {
            let op = match o {
                SmmuOp::Cmd(c) => Op::SmmuCmd {
                    text: c.to_string(),
                    words: c.encode(),
                },
                SmmuOp::Sync => Op::SmmuSync {
                    words: sva::cmd_sync().encode(),
                },
                SmmuOp::Lockup => unreachable!("no range handed to the driver here runs away"),
            };
            self.push(op, func);
        }
    }

    /// The fault path of mirror `m` at `va` ([`KOp::MirrorFault`]).
    fn mirror_fault(&mut self, m: usize, va: u64, regs: &[u64; 4]) {
        let k = self.k;
        let mp = &k.processes[m];
        let Some(mi) = &mp.mirror else { return };
        let seq = m as SyncId;
        let lock = k.mirror_lock(m);
        let mmap = Kernel::mmap_lock(mi.of);
        self.push_then(
            Op::Sync(SyncOp::SeqReadBegin(seq)),
            "mmu_interval_read_begin",
            After::Save,
        );
        self.push_then(
            Op::Sync(SyncOp::ReadLock(mmap)),
            "hmm_range_fault: mmap_read_lock",
            After::Snapshot,
        );
        self.sync(
            SyncOp::ReadUnlock(mmap),
            "hmm_range_fault: mmap_read_unlock",
        );
        self.sync(SyncOp::Lock(lock), "mirror lock");
        if mi.retry {
            self.push_then(
                Op::Sync(SyncOp::SeqRead(seq)),
                "mmu_interval_read_retry",
                After::SeqChanged,
            );
            if regs[3] & 1 != 0 {
                self.push_then(
                    Op::Sync(SyncOp::Unlock(lock)),
                    "mmu_interval_read_retry: the count moved, fault again",
                    After::Restart,
                );
                return;
            }
        }
        let pte = regs[2];
        if let (true, Some(at)) = (pte & bits::VALID != 0, mi.pte(va)) {
            self.push(
                Op::Store {
                    pa: Pa(at),
                    value: pte,
                },
                "install the shadow PTE",
            );
        }
        self.sync(SyncOp::Unlock(lock), "mirror unlock");
    }

    /// `move_page_tables` / `move_ptes` (v6.5, v6.6) for
    /// [`KOp::Mremap`].
    fn mremap(&mut self, p: usize, old: u64, len: u64, new: u64, regs: &[u64; 4]) {
        let k = self.k;
        let v = k.version;
        let proc_ = &k.processes[p];
        let mmap = Kernel::mmap_lock(p);
        let ptl = Kernel::ptl(p);
        self.sync(SyncOp::Lock(mmap), "mmap_write_lock_killable");
        self.range_start(p, old, old + len);
        self.push_then(
            Op::Sync(SyncOp::Lock(ptl)),
            "move_ptes: pte_offset_map_lock (old and new)",
            After::Snapshot,
        );
        self.batched_pending(p, 56, regs);
        let src_l3 = ((regs[3] >> 32) & 0xffff) << 12;
        let dst_l3 = ((regs[3] >> 16) & 0xffff) << 12;
        let mut moved = false;
        for i in 0..(len / PAGE_SIZE) as usize {
            if regs[3] >> i & 1 == 0 {
                continue;
            }
            let frame = (regs[1 + i / 4] >> (16 * (i % 4))) & 0xffff;
            let writable = regs[3] >> (8 + i) & 1 != 0;
            let (from, to) = (old + i as u64 * PAGE_SIZE, new + i as u64 * PAGE_SIZE);
            self.push(
                Op::Store {
                    pa: Pa(src_l3 + 8 * index(from, 3)),
                    value: 0,
                },
                "move_ptes: ptep_get_and_clear",
            );
            self.push(
                Op::Store {
                    pa: Pa(dst_l3 + 8 * index(to, 3)),
                    value: user_pte(frame << 12, writable),
                },
                "move_ptes: set_pte_at",
            );
            moved = true;
        }
        if moved {
            // force_flush: flush_tlb_range(vma, old_end - len, old_end),
            // non-leaf, no level hint; v6.6 tells the secondaries inside.
            self.arch(
                p,
                arm64::flush_tlb_range(
                    v.arm64(),
                    k.cpu,
                    proc_.asid,
                    old,
                    old + len,
                    PAGE_SIZE,
                    false,
                    None,
                ),
                "move_ptes: flush_tlb_range",
            );
        }
        self.sync(SyncOp::Unlock(ptl), "move_ptes: pte_unmap_unlock");
        if v.range_end_notifies() {
            self.secondary(
                p,
                old,
                old + len,
                "move_page_tables: mmu_notifier_invalidate_range_end: invalidate_range",
            );
        }
        self.range_end(p);
        self.sync(SyncOp::Unlock(mmap), "mmap_write_unlock");
    }

    /// `shrink_folio_list` -> `try_to_unmap` (v6.5, v6.6) for
    /// [`KOp::Reclaim`], or, with `migrate` (MIGRATE_ASYNC or not),
    /// `migrate_pages_batch` -> `try_to_migrate` for [`KOp::Migrate`].
    fn reclaim(&mut self, p: usize, regs: &[u64; 4], migrate: Option<bool>) {
        let k = self.k;
        let v = k.version;
        let proc_ = &k.processes[p];
        let ptl = Kernel::ptl(p);
        // TTU_BATCH_FLUSH: always for reclaim, for MIGRATE_ASYNC only for
        // migration; it batches only where arm64 has arch_tlbbatch_*.
        let batch = v.tlbbatch() && migrate.unwrap_or(true);
        let name = |unmap: &'static str, migration: &'static str| {
            if migrate.is_some() {
                migration
            } else {
                unmap
            }
        };
        // The page's identity is read once (folio_isolate_lru); the lock
        // pair only places the read.
        let isolate = name(
            "shrink_folio_list: folio_isolate_lru",
            "migrate_pages: folio_isolate_lru",
        );
        self.push_then(Op::Sync(SyncOp::Lock(ptl)), isolate, After::Snapshot);
        self.sync(SyncOp::Unlock(ptl), isolate);
        if regs[0] == 0 {
            return;
        }
        let frame = regs[0] - 1;
        let new = (regs[3] >> 32) & 0xffff;
        if migrate.is_some() {
            self.push_then(
                Op::Alloc {
                    owner: FrameOwner::Data { space: proc_.space },
                },
                "migrate_folio_unmap: get_new_folio",
                After::SaveNew,
            );
        }
        let found = ((regs[3] >> 8) & 0xff) as usize;
        let mut mapped = None;
        for (n, vma) in proc_.vmas.iter().enumerate() {
            if found != 0 && n + 1 > found {
                // The page is unmapped: the walk's `done` (folio_not_mapped)
                // ends it.
                break;
            }
            // try_to_unmap_one's invalidate_range_start covers the page's
            // address in the VMA; the model keeps no page offsets and
            // gives the mirrors the whole VMA.
            self.range_start(p, vma.start, vma.end);
            self.push_then(
                Op::Sync(SyncOp::Lock(ptl)),
                name(
                    "try_to_unmap_one: page_vma_mapped_walk",
                    "try_to_migrate_one: page_vma_mapped_walk",
                ),
                After::RmapVma(n),
            );
            // The PTE's index in its level-3 table gives the address
            // within the VMA's 2 MiB region.
            let at = regs[1];
            let page = (vma.start & !(L3_SPAN - 1)) + ((at & 0xfff) / 8) * PAGE_SIZE;
            if found == n + 1 && batch {
                // TTU_BATCH_FLUSH: the TLBI now, its DSB later.
                self.push(
                    Op::Store {
                        pa: Pa(at),
                        value: 0,
                    },
                    name(
                        "try_to_unmap_one: ptep_get_and_clear",
                        "try_to_migrate_one: ptep_get_and_clear",
                    ),
                );
                self.arch(
                    p,
                    arm64::tlbbatch_add_pending(v.arm64(), proc_.asid, page),
                    "set_tlb_ubc_flush_pending: arch_tlbbatch_add_pending",
                );
                self.sync(
                    SyncOp::AtomicAdd(k.flush_batched(p), 1),
                    "set_tlb_ubc_flush_pending: mm->tlb_flush_batched (one more pending)",
                );
            } else if found == n + 1 {
                self.push(
                    Op::Store {
                        pa: Pa(at),
                        value: 0,
                    },
                    name(
                        "try_to_unmap_one: ptep_clear_flush",
                        "try_to_migrate_one: ptep_clear_flush",
                    ),
                );
                self.arch(
                    p,
                    arm64::flush_tlb_page(v.arm64(), proc_.asid, page),
                    name(
                        "try_to_unmap_one: ptep_clear_flush: flush_tlb_page",
                        "try_to_migrate_one: ptep_clear_flush: flush_tlb_page",
                    ),
                );
            }
            if found == n + 1 && migrate.is_some() {
                self.push(
                    Op::Store {
                        pa: Pa(at),
                        value: migration_entry(frame << 12, regs[2] & bits::AP_RO == 0),
                    },
                    "try_to_migrate_one: set_pte_at (migration entry)",
                );
            } else if found == n + 1 && !batch && v.range_end_notifies() {
                // The anonymous page's swap entry is set (the model leaves
                // the PTE empty), then, in v6.5, "invalidate as we cleared
                // the pte".
                self.secondary(
                    p,
                    page,
                    page + PAGE_SIZE,
                    "try_to_unmap_one: mmu_notifier_invalidate_range",
                );
            }
            self.sync(
                SyncOp::Unlock(ptl),
                name(
                    "try_to_unmap_one: page_vma_mapped_walk_done",
                    "try_to_migrate_one: page_vma_mapped_walk_done",
                ),
            );
            // v6.5's mmu_notifier_invalidate_range_end (not _only_end)
            // calls invalidate_range again, for the notifier range: the
            // page's address to the end of the folio, within the VMA.
            if found == n + 1 && v.range_end_notifies() {
                self.secondary(
                    p,
                    page,
                    (page + PAGE_SIZE).min(vma.end),
                    name(
                        "try_to_unmap_one: mmu_notifier_invalidate_range_end: invalidate_range",
                        "try_to_migrate_one: mmu_notifier_invalidate_range_end: invalidate_range",
                    ),
                );
            }
            self.range_end(p);
            if found == n + 1 {
                mapped = Some((at, page));
            }
        }
        let Some((at, page)) = mapped else {
            if migrate.is_some() {
                self.push(
                    Op::Free { frame: Pfn(new) },
                    "migrate_folio_undo_dst: put_new_folio",
                );
            }
            return;
        };
        if batch {
            self.arch(
                p,
                arm64::tlbbatch_flush(),
                name(
                    "shrink_folio_list: try_to_unmap_flush: arch_tlbbatch_flush",
                    "migrate_pages_batch: try_to_unmap_flush: arch_tlbbatch_flush",
                ),
            );
        }
        if migrate.is_some() {
            // The copy: a write that reached the old page after it would
            // be lost.
            self.push(
                Op::Rely(Rely::ReadOnly {
                    ctx: proc_.ctx,
                    va: Va(page),
                }),
                "migrate_folio_move: folio_copy",
            );
            self.push_then(
                Op::Sync(SyncOp::Lock(ptl)),
                "remove_migration_pte: page_vma_mapped_walk",
                After::MigrationEntry,
            );
            let entry = regs[3] >> 48 & 1 != 0;
            if entry {
                self.push(
                    Op::Store {
                        pa: Pa(at),
                        value: user_pte(new << 12, regs[3] >> 49 & 1 != 0),
                    },
                    "remove_migration_pte: set_pte_at",
                );
            }
            self.sync(
                SyncOp::Unlock(ptl),
                "remove_migration_pte: page_vma_mapped_walk_done",
            );
            self.push(
                Op::Free { frame: Pfn(frame) },
                "migrate_folio_done: folio_put",
            );
            if !entry {
                self.push(
                    Op::Free { frame: Pfn(new) },
                    "migrate_folio_move: folio_put (mapped nowhere)",
                );
            }
            return;
        }
        self.push(
            Op::Free { frame: Pfn(frame) },
            "shrink_folio_list: free_unref_page_list",
        );
    }
}
