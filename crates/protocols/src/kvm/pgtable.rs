//! KVM's stage-2 page-table walker (`arch/arm64/kvm/hyp/pgtable.c`): the
//! walk order of `__kvm_pgtable_walk` / `__kvm_pgtable_visit` and the
//! callbacks of the unmap, map and attribute walkers, as functions that
//! say what one visit of one entry does.
//!
//! Geometry: 4K granule, a 48-bit IPA space whose walk starts at level 0
//! (VTCR_EL2.SL0 = 0b10, T0SZ = 16), so every table is one 4 KiB frame of
//! 512 entries; blocks at levels 1 and 2 (`KVM_PGTABLE_MIN_BLOCK_LEVEL`).
//! A table page's reference count (`mm_ops->page_count`) is one plus its
//! non-zero entries, which is how `pgtable.c` counts them.

use super::tlb::{self, FlushCode, Level};
use super::Version;
use crate::linux::arm64::CpuFeatures;
use tlbcheck_hw::addr::{Granule, Pa};
use tlbcheck_hw::mem::{FrameOwner, MemError, Pfn, PhysMem, TableOwner};
use tlbcheck_hw::vmsa::desc::{bits, s2_block, s2_page, table};

/// Levels of the stage-2 walk (0 to 3).
pub const LEVELS: u8 = 4;
/// `KVM_INVALID_PTE_LOCKED` (bit 10 of an invalid entry): the value
/// `stage2_try_break_pte` leaves while it owns an entry.
pub const INVALID_PTE_LOCKED: u64 = 1 << 10;
/// The IPA space: 48 bits.
pub const IPA_BITS: u32 = 48;

/// `kvm_granule_size(level)`: the span one entry at `level` maps.
pub const fn granule(level: u8) -> u64 {
    1 << Granule::K4.level_shift(level)
}

/// Index of `addr` in its level-`level` table.
pub const fn index(addr: u64, level: u8) -> u64 {
    (addr >> Granule::K4.level_shift(level)) & 511
}

/// `kvm_pte_valid`.
pub const fn valid(pte: u64) -> bool {
    pte & bits::VALID != 0
}

/// `kvm_pte_table(pte, level)`: a valid table descriptor above level 3.
pub const fn is_table(pte: u64, level: u8) -> bool {
    level < LEVELS - 1 && valid(pte) && pte & bits::TABLE_OR_PAGE != 0
}

/// The next-level table or output address of a descriptor.
pub const fn follow(pte: u64) -> u64 {
    pte & bits::ADDR_MASK
}

/// `kvm_init_valid_leaf_pte` for normal memory, readable, writable when
/// asked, AF set (`stage2_set_prot_attr`).
pub const fn leaf(pa: u64, level: u8, write: bool) -> u64 {
    if level == LEVELS - 1 {
        s2_page(pa, true, write)
    } else {
        s2_block(pa, true, write)
    }
}

/// `stage2_pte_needs_update(old, new)`: the entry changes beyond its
/// permission bits (S2AP and XN).
pub const fn needs_update(old: u64, new: u64) -> bool {
    const PERMS: u64 = bits::S2AP_READ | bits::S2AP_WRITE | bits::UXN | bits::PXN;
    !valid(old) || !valid(new) || (old ^ new) & !PERMS != 0
}

/// `kvm_block_mapping_supported`: a leaf at `level` may map `[addr, end)`
/// from `phys`.
pub const fn leaf_allowed(level: u8, addr: u64, end: u64, phys: u64) -> bool {
    let g = granule(level);
    (level == LEVELS - 1 || Granule::K4.block_allowed(level))
        && g <= end - addr
        && phys % g == 0
        && addr % g == 0
}

/// The address of the level-`level` entry for `addr`, walking from
/// `root` through the tables above it; `None` if one of them is not a
/// table.
pub fn entry_addr(mem: &PhysMem, root: u64, addr: u64, level: u8) -> Option<u64> {
    let mut t = root;
    for l in 0..level {
        let d = mem.read(Pa(t + 8 * index(addr, l)));
        if !is_table(d, l) {
            return None;
        }
        t = follow(d);
    }
    Some(t + 8 * index(addr, level))
}

/// Whether a table page's count is 1: none of its entries is counted
/// (`stage2_pte_is_counted`: non-zero).
pub fn table_unused(mem: &PhysMem, table: u64) -> bool {
    (0..512).all(|i| mem.read(Pa(table + 8 * i)) == 0)
}

/// Where the walker stands: the entry for `addr` at `level`, on the way
/// down (`post` false: its LEAF or TABLE_PRE visit) or back up (its
/// TABLE_POST visit).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// `data->addr` when the entry was reached (`ctx->addr`).
    pub addr: u64,
    /// Its level.
    pub level: u8,
    /// The TABLE_POST visit.
    pub post: bool,
}

impl Cursor {
    /// The first visit of a walk from `start`: the level-0 entry.
    pub const fn start(start: u64) -> Cursor {
        Cursor {
            addr: start,
            level: 0,
            post: false,
        }
    }

    /// Packs into 52 bits: address, level, post.
    pub const fn pack(self) -> u64 {
        (self.addr & ((1 << IPA_BITS) - 1))
            | ((self.level as u64) << IPA_BITS)
            | ((self.post as u64) << (IPA_BITS + 2))
    }

    /// Unpacks [`Cursor::pack`].
    pub const fn unpack(x: u64) -> Cursor {
        Cursor {
            addr: x & ((1 << IPA_BITS) - 1),
            level: ((x >> IPA_BITS) & 3) as u8,
            post: (x >> (IPA_BITS + 2)) & 1 != 0,
        }
    }

    /// After the visit, with the entry now `pte`: descend into a table
    /// (`__kvm_pgtable_visit` reloads the entry after a LEAF or TABLE_PRE
    /// callback), else move to the next entry; `None` when the walk of
    /// `[.., end)` is over.
    pub fn next(self, pte: u64, end: u64) -> Option<Cursor> {
        if !self.post && is_table(pte, self.level) {
            return Some(Cursor {
                addr: self.addr,
                level: self.level + 1,
                post: false,
            });
        }
        let g = granule(self.level);
        self.sibling((self.addr & !(g - 1)) + g, end)
    }

    /// `data->addr` is `addr` after an entry at this level: the next entry
    /// of the same table while it is in range, else the TABLE_POST visit
    /// of the table entry above (the walker's loop ends at `end` or at the
    /// end of the table).
    fn sibling(self, addr: u64, end: u64) -> Option<Cursor> {
        if addr < end && index(addr, self.level) != 0 {
            return Some(Cursor {
                addr,
                level: self.level,
                post: false,
            });
        }
        if self.level == 0 {
            return None;
        }
        let up = self.level - 1;
        let g = granule(up);
        Some(Cursor {
            addr: (addr - 1) & !(g - 1),
            level: up,
            post: true,
        })
    }

    /// After a TABLE_POST visit: the entry after the table's span.
    pub fn after_post(self, end: u64) -> Option<Cursor> {
        let g = granule(self.level);
        let next = (self.addr & !(g - 1)) + g;
        Cursor {
            post: false,
            ..self
        }
        .sibling(next, end)
    }
}

/// `ctx->addr` of a visit: the walk's start for the first entry of a
/// level, the entry's aligned base after it.
pub const fn ctx_addr(c: Cursor, start: u64) -> u64 {
    let base = c.addr & !(granule(c.level) - 1);
    if base > start {
        base
    } else {
        start
    }
}

/// What one step of a visit does.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum WalkStep {
    /// Writes a descriptor (`WRITE_ONCE`, `smp_store_release`, or the
    /// `cmpxchg` of a shared walk, which the model takes as succeeding).
    Store {
        /// Entry address.
        pa: u64,
        /// New value.
        value: u64,
    },
    /// Writes a table descriptor pointing at the page the last
    /// [`WalkStep::AllocTable`] returned.
    StoreNewTable {
        /// Entry address.
        pa: u64,
    },
    /// A step of a flush helper.
    Flush(tlb::S2Op),
    /// `put_page` of a table page whose count drops to zero.
    Free(Pfn),
    /// The table page goes after a grace period (`free_unlinked_table`
    /// in the kernel: `call_rcu`).
    RcuFree(Pfn),
    /// `mm_ops->zalloc_page(memcache)`: a zeroed table page.
    AllocTable {
        /// The level the new table serves.
        level: u8,
    },
    /// `dcache_clean_inval_poc` of a leaf's memory, done without FWB: the
    /// model counts it and does nothing else.
    Cmo,
}

/// A step and the kernel function it belongs to.
pub type Step = (WalkStep, &'static str);

/// The fixed inputs of a walk's callbacks.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Walker {
    /// KVM version.
    pub version: Version,
    /// The CPU's features.
    pub cpu: CpuFeatures,
    /// FEAT_S2FWB in use (`stage2_has_fwb`).
    pub fwb: bool,
    /// The walk's start (`kvm_pgtable_walk(pgt, addr, ...)`).
    pub start: u64,
    /// Its end.
    pub end: u64,
}

impl Walker {
    fn code(&self) -> FlushCode {
        self.version.flush_code()
    }

    fn flush(out: &mut Vec<Step>, ops: Vec<tlb::S2Op>, func: &'static str) {
        out.extend(ops.into_iter().map(|o| (WalkStep::Flush(o), func)));
    }

    /// `stage2_unmap_walker`'s LEAF visit of a valid leaf `old` at
    /// entry `pa`: `stage2_unmap_put_pte` (clear; the TLBI unless
    /// deferred), then the CMO without FWB.
    pub fn unmap_leaf(&self, c: Cursor, pa: u64, old: u64) -> Vec<Step> {
        let mut out = Vec::new();
        if !valid(old) {
            return out;
        }
        out.push((
            WalkStep::Store { pa, value: 0 },
            "stage2_unmap_put_pte: kvm_clear_pte",
        ));
        if !self.version.defers_unmap(self.cpu, self.fwb) {
            let ops = tlb::flush_vmid_ipa(
                self.code(),
                self.cpu,
                ctx_addr(c, self.start),
                Level::At(c.level),
            );
            Self::flush(
                &mut out,
                ops,
                "stage2_unmap_put_pte: __kvm_tlb_flush_vmid_ipa",
            );
        }
        if !self.fwb {
            out.push((WalkStep::Cmo, "stage2_unmap_walker: dcache_clean_inval_poc"));
        }
        out
    }

    /// `stage2_unmap_walker`'s TABLE_POST visit of the table entry `old`
    /// at `pa`, whose child is unused (`page_count == 1`): clear it, the
    /// version's TLBI, then free the child.
    pub fn unmap_table(&self, c: Cursor, pa: u64, old: u64) -> Vec<Step> {
        let mut out = vec![(
            WalkStep::Store { pa, value: 0 },
            "stage2_unmap_put_pte: kvm_clear_pte",
        )];
        let deferring = self.version.defers_unmap(self.cpu, self.fwb);
        if let Some(level) = self.version.table_zap(deferring, c.level) {
            let ops = tlb::flush_vmid_ipa(self.code(), self.cpu, ctx_addr(c, self.start), level);
            Self::flush(
                &mut out,
                ops,
                "stage2_unmap_put_pte: __kvm_tlb_flush_vmid_ipa (table)",
            );
        }
        let child = Pfn(follow(old) >> 12);
        if self.version.unmap_frees_via_rcu() {
            out.push((
                WalkStep::RcuFree(child),
                "stage2_unmap_walker: free_unlinked_table",
            ));
        } else {
            out.push((
                WalkStep::Free(child),
                "stage2_unmap_walker: put_page(childp)",
            ));
        }
        out
    }

    /// `stage2_try_break_pte` of the entry `old` at `pa` (the walker owns
    /// it, `KVM_INVALID_PTE_LOCKED`), with the TLBI its old value needs: a
    /// table's span (`kvm_tlb_flush_vmid_range`, defc8cc7abf0; the whole
    /// VMID before it), a valid leaf by IPA at its level.
    fn break_pte(&self, out: &mut Vec<Step>, c: Cursor, pa: u64, old: u64) {
        out.push((
            WalkStep::Store {
                pa,
                value: INVALID_PTE_LOCKED,
            },
            "stage2_try_break_pte: stage2_try_set_pte(KVM_INVALID_PTE_LOCKED)",
        ));
        let addr = ctx_addr(c, self.start);
        if is_table(old, c.level) {
            if self.version.has_range_flush() {
                let g = granule(c.level);
                let at = if self.version.aligns_break_flush() {
                    addr & !(g - 1)
                } else {
                    addr
                };
                let ops = tlb::flush_vmid_range(self.code(), self.cpu, at, g);
                Self::flush(out, ops, "stage2_try_break_pte: kvm_tlb_flush_vmid_range");
            } else {
                Self::flush(
                    out,
                    tlb::flush_vmid(self.code()),
                    "stage2_try_break_pte: __kvm_tlb_flush_vmid",
                );
            }
        } else if valid(old) {
            let ops = tlb::flush_vmid_ipa(self.code(), self.cpu, addr, Level::At(c.level));
            Self::flush(out, ops, "stage2_try_break_pte: __kvm_tlb_flush_vmid_ipa");
        }
    }

    /// The leaf a map of `[start, end)` from `phys` installs at this
    /// visit, if one is allowed here.
    fn map_leaf(&self, c: Cursor, phys: u64, write: bool) -> Option<u64> {
        let addr = ctx_addr(c, self.start);
        let out = phys + (addr - self.start);
        leaf_allowed(c.level, addr, self.end, out).then(|| leaf(out, c.level, write))
    }

    /// `stage2_map_walker_try_leaf`: break the old entry, CMO without
    /// FWB, install the leaf; nothing when only permissions would change
    /// (`-EAGAIN`: the vCPU faults again and relaxes instead).
    fn try_leaf(&self, out: &mut Vec<Step>, c: Cursor, pa: u64, old: u64, new: u64) {
        if !needs_update(old, new) {
            return;
        }
        self.break_pte(out, c, pa, old);
        if !self.fwb {
            out.push((
                WalkStep::Cmo,
                "stage2_map_walker_try_leaf: dcache_clean_inval_poc",
            ));
        }
        out.push((WalkStep::Store { pa, value: new }, "stage2_make_pte"));
    }

    /// `stage2_map_walker`'s visit of the entry `old` at `pa` for a map
    /// from `phys`: TABLE_PRE on a table (`stage2_map_walk_table_pre`:
    /// replace it by a block when one fits, then `free_unlinked_table`),
    /// LEAF otherwise (`stage2_map_walk_leaf`: a leaf when one fits, else
    /// a new table under it). Whether the walk must stop (`-EAGAIN`: the
    /// mapping is already there but for permissions).
    pub fn map(&self, c: Cursor, pa: u64, old: u64, phys: u64, write: bool) -> (Vec<Step>, bool) {
        let mut out = Vec::new();
        match self.map_leaf(c, phys, write) {
            Some(new) if is_table(old, c.level) => {
                self.try_leaf(&mut out, c, pa, old, new);
                let child = Pfn(follow(old) >> 12);
                let free = if self.version.rcu() {
                    WalkStep::RcuFree(child)
                } else {
                    WalkStep::Free(child)
                };
                out.push((free, "stage2_map_walk_table_pre: free_unlinked_table"));
                (out, false)
            }
            Some(new) => {
                let again = !needs_update(old, new);
                self.try_leaf(&mut out, c, pa, old, new);
                (out, again)
            }
            None if is_table(old, c.level) => (out, false),
            None => {
                out.push((
                    WalkStep::AllocTable { level: c.level + 1 },
                    "stage2_map_walk_leaf: mm_ops->zalloc_page(memcache)",
                ));
                self.break_pte(&mut out, c, pa, old);
                out.push((
                    WalkStep::StoreNewTable { pa },
                    "stage2_map_walk_leaf: stage2_make_pte(table)",
                ));
                (out, false)
            }
        }
    }
}

/// `stage2_attr_walker`'s LEAF visit: set and clear attribute bits of a
/// valid leaf (`stage2_update_leaf_attrs`); `None` for an invalid entry
/// (`-EAGAIN`).
pub fn attr(pa: u64, old: u64, set: u64, clear: u64, func: &'static str) -> Option<Vec<Step>> {
    if !valid(old) {
        return None;
    }
    let new = (old & !clear) | set;
    Some(if new == old {
        Vec::new()
    } else {
        vec![(WalkStep::Store { pa, value: new }, func)]
    })
}

/// Set-up: `kvm_pgtable_stage2_map` of `[ipa, ipa + len)` from `phys`
/// before any thread runs, tables allocated from the pool for VM `vmid`,
/// leaves as large as alignment allows.
pub fn setup_map(
    mem: &mut PhysMem,
    root: u64,
    vmid: u16,
    ipa: u64,
    len: u64,
    phys: u64,
    write: bool,
) -> Result<(), MemError> {
    let end = ipa + len;
    let mut addr = ipa;
    while addr < end {
        let out = phys + (addr - ipa);
        let mut t = root;
        let mut level = 0;
        loop {
            let at = t + 8 * index(addr, level);
            if leaf_allowed(level, addr, end, out) {
                mem.write(Pa(at), leaf(out, level, write))?;
                addr += granule(level);
                break;
            }
            let d = mem.read(Pa(at));
            t = if is_table(d, level) {
                follow(d)
            } else {
                let f = mem.alloc(FrameOwner::Table {
                    owner: TableOwner::Stage2 { vmid },
                    level: level + 1,
                })?;
                mem.write(Pa(at), table(f.base().0))?;
                f.base().0
            };
            level += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_visits_leaves_then_the_tables_above_them_on_the_way_up() {
        // A walk of [0x1000, 0x3000) over tables down to level 3.
        let end = 0x3000;
        let mut c = Cursor::start(0x1000);
        let table_pte = table(0x10_0000);
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(c);
            c = c.next(table_pte, end).unwrap();
        }
        seen.push(c);
        c = c.next(0, end).unwrap();
        seen.push(c);
        c = c.next(0, end).unwrap();
        assert_eq!(
            (c.level, c.post, c.addr),
            (2, true, 0),
            "past the range: back to the level-2 entry"
        );
        c = c.after_post(end).unwrap();
        assert_eq!((c.level, c.post), (1, true));
        c = c.after_post(end).unwrap();
        assert_eq!((c.level, c.post), (0, true));
        assert_eq!(c.after_post(end), None);
        let levels: Vec<(u8, u64)> = seen.iter().map(|c| (c.level, c.addr)).collect();
        assert_eq!(
            levels,
            vec![
                (0, 0x1000),
                (1, 0x1000),
                (2, 0x1000),
                (3, 0x1000),
                (3, 0x2000)
            ]
        );
    }

    #[test]
    fn ctx_addr_is_the_start_for_the_first_entry_and_aligned_after() {
        let c = Cursor {
            addr: 0x1000,
            level: 2,
            post: true,
        };
        assert_eq!(ctx_addr(c, 0x1000), 0x1000);
        let c = Cursor {
            addr: 0x20_0000,
            level: 2,
            post: false,
        };
        assert_eq!(ctx_addr(c, 0x1000), 0x20_0000);
    }

    #[test]
    fn a_block_fits_only_aligned_and_whole() {
        assert!(leaf_allowed(2, 0x20_0000, 0x40_0000, 0x4020_0000));
        assert!(!leaf_allowed(2, 0x20_0000, 0x3f_f000, 0x4020_0000));
        assert!(!leaf_allowed(2, 0x20_0000, 0x40_0000, 0x4020_1000));
        assert!(!leaf_allowed(0, 0, 1 << 40, 0), "no level-0 block at 4K");
        assert!(leaf_allowed(3, 0x1000, 0x2000, 0x5000));
    }
}
