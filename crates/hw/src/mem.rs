//! Simulated physical memory: 4 KiB frames, an owner tag per frame, a LIFO
//! allocator, and 64-bit descriptor words whose stores may be invisible to
//! table walkers until a DSB (Arm ARM, DDI 0487 issue M.a, D8.2.6.1,
//! RSPVBD).
//!
//! Memory is stored sparsely (only non-zero words) in a sorted vector, so
//! that a whole machine state stays small, clones cheaply and hashes
//! deterministically: the checker keeps millions of them.

use crate::addr::Pa;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use thiserror::Error;

/// log2 of the frame size. Frames are 4 KiB whatever the translation
/// granule; a 16K or 64K table occupies 4 or 16 consecutive frames.
pub const FRAME_SHIFT: u32 = 12;
/// Frame size in bytes.
pub const FRAME_SIZE: u64 = 1 << FRAME_SHIFT;

/// A physical frame number (`PA >> 12`).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pfn(pub u64);

impl Pfn {
    /// The frame containing `pa`.
    #[inline]
    pub const fn of(pa: Pa) -> Pfn {
        Pfn(pa.0 >> FRAME_SHIFT)
    }
    /// The first byte of the frame.
    #[inline]
    pub const fn base(self) -> Pa {
        Pa(self.0 << FRAME_SHIFT)
    }
}

impl fmt::Debug for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "frame {:#x}", self.0)
    }
}

/// Which translation regime and stage a page-table frame belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TableOwner {
    /// Stage-1 tables of an address space (process), by scenario id.
    Stage1 {
        /// Address-space id in the scenario.
        space: u16,
    },
    /// Stage-2 tables of a VM, by VMID.
    Stage2 {
        /// The VM's VMID.
        vmid: u16,
    },
}

/// What a frame currently holds. Reports use it to say what a stale entry
/// points at now ("table of VM 1 level 3, freed at step 4, now data of process 2").
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum FrameOwner {
    /// In the allocator's free list.
    Free,
    /// A translation table of the given owner at `level`.
    Table {
        /// Whose tables.
        owner: TableOwner,
        /// Lookup level the table serves.
        level: u8,
    },
    /// A data page of an address space (scenario id).
    Data {
        /// Address-space id in the scenario.
        space: u16,
    },
    /// SMMU in-memory structures (stream table, CD tables, queues).
    Smmu,
    /// Outside the allocator's pool; never handed out.
    Reserved,
}

impl fmt::Display for FrameOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameOwner::Free => f.write_str("free"),
            FrameOwner::Table {
                owner: TableOwner::Stage1 { space },
                level,
            } => write!(f, "stage-1 table of process {space} level {level}"),
            FrameOwner::Table {
                owner: TableOwner::Stage2 { vmid },
                level,
            } => write!(f, "stage-2 table of VM {vmid} level {level}"),
            FrameOwner::Data { space } => write!(f, "data of process {space}"),
            FrameOwner::Smmu => f.write_str("SMMU structure"),
            FrameOwner::Reserved => f.write_str("reserved"),
        }
    }
}

/// Bit mask of agents (CPUs, SMMU, device ATCs), bit `n` for agent `n`.
pub type AgentMask = u32;

/// A descriptor store that some table walkers may not observe yet
/// (Arm ARM D8.2.6.1, RSPVBD: an explicit write to the translation tables
/// is guaranteed observable by table walks only after a DSB executed by the
/// writing PE; RTGRMW: a walk is a separate observer, even on that PE).
/// Those walkers may see `old`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PendingStore {
    /// Word address.
    pub pa: Pa,
    /// The value before the store.
    pub old: u64,
    /// CPUs whose DSB completes it (bit per CPU): the storing CPU, and
    /// CPUs that observed the store through a lock handoff (a store before
    /// a release is observed by the thread that takes the lock, and Arm is
    /// other-multi-copy atomic, Arm ARM B2.3: that thread's later DSB orders
    /// it before the TLBIs that follow).
    pub by: AgentMask,
    /// Agents whose walkers may still see `old`.
    pub stale_for: AgentMask,
}

/// Errors from memory operations: each names what was wrong.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MemError {
    /// A descriptor access that is not 8-byte aligned.
    #[error("unaligned 64-bit access at {0:?}")]
    Unaligned(Pa),
    /// The allocator has no free frame.
    #[error("out of frames: every frame of the pool is in use")]
    OutOfFrames,
    /// Freeing a frame that is not in use.
    #[error("double free of {0:?}: it is already free")]
    DoubleFree(Pfn),
    /// Freeing a frame outside the allocator's pool.
    #[error("{0:?} is outside the allocator's pool")]
    NotInPool(Pfn),
}

/// The whole simulated physical memory.
///
/// Equality and hashing are those of a value: two memories are equal when
/// their words, owners, free frames and pending stores are. The free list's
/// order is part of the value only while [`PhysMem::forget_free_order`] has
/// not been called; pending stores are kept as a sorted set, so the order in
/// which independent CPUs stored does not tell two states apart.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhysMem {
    /// Non-zero 64-bit words, sorted by address. Shared copy-on-write: the
    /// explorer clones memory at every transition and few transitions store.
    words: Arc<Vec<(Pa, u64)>>,
    /// Wrapping sum of a mixed hash of each word: kept up to date by every
    /// write, so hashing a memory costs O(1) in the number of words.
    words_hash: u64,
    /// First frame of the allocator's pool.
    pool_base: Pfn,
    /// Owner of each frame of the pool (shared copy-on-write).
    owners: Arc<Vec<FrameOwner>>,
    /// Wrapping sum of a mixed hash of each frame's owner, kept up to date
    /// by every change of owner, so hashing a memory does not read every
    /// frame.
    owners_hash: u64,
    /// Free frames; the last one is handed out next, so the most recently
    /// freed frame is reused first and a use-after-free shows at once.
    free: Vec<u32>,
    /// Stores not yet visible to every walker, sorted, without repeats.
    pending: Vec<PendingStore>,
}

impl PartialEq for PhysMem {
    fn eq(&self, o: &Self) -> bool {
        self.words_hash == o.words_hash
            && self.owners_hash == o.owners_hash
            && self.pool_base == o.pool_base
            && self.free == o.free
            && self.pending == o.pending
            && (Arc::ptr_eq(&self.owners, &o.owners) || self.owners == o.owners)
            && (Arc::ptr_eq(&self.words, &o.words) || self.words == o.words)
    }
}
impl Eq for PhysMem {}

impl std::hash::Hash for PhysMem {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(self.words_hash);
        h.write_usize(self.words.len());
        self.pool_base.hash(h);
        h.write_u64(self.owners_hash);
        self.free.hash(h);
        self.pending.hash(h);
    }
}

/// A well-mixed hash of frame `idx`'s owner, for the order-independent sum.
fn owner_hash(idx: u32, owner: FrameOwner) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    owner.hash(&mut h);
    word_hash(Pa(u64::from(idx)), h.finish())
}

/// A well-mixed hash of one word, for the order-independent sum.
fn word_hash(pa: Pa, value: u64) -> u64 {
    let mut z = pa.0.rotate_left(29) ^ value.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl PhysMem {
    /// A memory whose allocator pool is `frames` frames starting at `pool_base`,
    /// all free. Frames are handed out in ascending order at first.
    pub fn new(pool_base: Pfn, frames: u32) -> PhysMem {
        PhysMem {
            words: Arc::new(Vec::new()),
            words_hash: 0,
            pool_base,
            owners: Arc::new(vec![FrameOwner::Free; frames as usize]),
            owners_hash: (0..frames).fold(0u64, |sum, i| {
                sum.wrapping_add(owner_hash(i, FrameOwner::Free))
            }),
            free: (0..frames).rev().collect(),
            pending: Vec::new(),
        }
    }

    /// Reads the 64-bit word at `pa` as the storing CPUs see it (latest value).
    #[inline]
    pub fn read(&self, pa: Pa) -> u64 {
        match self.words.binary_search_by_key(&pa, |w| w.0) {
            Ok(i) => self.words[i].1,
            Err(_) => 0,
        }
    }

    /// Calls `f` with every value a table walker of `agent` may read at `pa`:
    /// the latest value, then the old value of each store not yet visible to it.
    #[inline]
    pub fn for_each_walker_value(&self, agent: u8, pa: Pa, mut f: impl FnMut(u64)) {
        let latest = self.read(pa);
        f(latest);
        for p in &self.pending {
            if p.pa == pa && p.stale_for & (1 << agent) != 0 && p.old != latest {
                f(p.old);
            }
        }
    }

    /// Calls `f(pa, value)` for every word a table walker of `agent` may read
    /// as non-zero in `[first, first + len)`: latest values, then old values
    /// of stores it may not see yet (a word can come twice, with each value).
    pub fn for_each_walker_word(&self, agent: u8, first: Pa, len: u64, mut f: impl FnMut(Pa, u64)) {
        for &(pa, v) in self.words_in(first, len) {
            f(pa, v);
        }
        let end = first.0.saturating_add(len);
        for p in &self.pending {
            if p.pa >= first
                && p.pa.0 < end
                && p.stale_for & (1 << agent) != 0
                && p.old != 0
                && p.old != self.read(p.pa)
            {
                f(p.pa, p.old);
            }
        }
    }

    /// Writes a word with immediate visibility (set-up, and stores by agents
    /// whose writes are coherent with walkers, such as the SMMU).
    pub fn write(&mut self, pa: Pa, value: u64) -> Result<(), MemError> {
        if pa.0 & 7 != 0 {
            return Err(MemError::Unaligned(pa));
        }
        match self.words.binary_search_by_key(&pa, |w| w.0) {
            Ok(i) if value == 0 => {
                let (_, old) = Arc::make_mut(&mut self.words).remove(i);
                self.words_hash = self.words_hash.wrapping_sub(word_hash(pa, old));
            }
            Ok(i) if self.words[i].1 != value => {
                let old = std::mem::replace(&mut Arc::make_mut(&mut self.words)[i].1, value);
                self.words_hash = self
                    .words_hash
                    .wrapping_sub(word_hash(pa, old))
                    .wrapping_add(word_hash(pa, value));
            }
            Err(i) if value != 0 => {
                Arc::make_mut(&mut self.words).insert(i, (pa, value));
                self.words_hash = self.words_hash.wrapping_add(word_hash(pa, value));
            }
            _ => {}
        }
        Ok(())
    }

    /// A descriptor store by CPU `cpu`: visible to CPU reads at once, but the
    /// walkers of every agent in `walkers` may keep seeing the old value until
    /// a DSB by `cpu` completes it (Arm ARM D8.2.6.1, RSPVBD).
    pub fn store(
        &mut self,
        cpu: u8,
        walkers: AgentMask,
        pa: Pa,
        value: u64,
    ) -> Result<(), MemError> {
        let old = self.read(pa);
        self.write(pa, value)?;
        if old != value && walkers != 0 {
            insert_sorted(
                &mut self.pending,
                PendingStore {
                    pa,
                    old,
                    by: 1 << cpu,
                    stale_for: walkers,
                },
            );
        }
        Ok(())
    }

    /// DSB by `cpu` with the given reach: completes its stores for the
    /// walkers in `reach` (all agents for ISH/ISHST, only itself for NSH).
    /// A DSB whose access types include writes completes earlier writes in
    /// its shareability domain (Arm ARM B2.6.9, B2.6.10 Table B2-1), and a
    /// table write is then observable to walks (D8.2.6.1, RSPVBD).
    pub fn complete_stores(&mut self, cpu: u8, reach: AgentMask) {
        let mut changed = false;
        for p in &mut self.pending {
            if p.by & (1 << cpu) != 0 && p.stale_for & reach != 0 {
                p.stale_for &= !reach;
                changed = true;
            }
        }
        if changed {
            self.pending.retain(|p| p.stale_for != 0);
            // A narrowed mask may now sort elsewhere or repeat another entry.
            self.pending.sort_unstable();
            self.pending.dedup();
        }
    }

    /// Memory as walkers may have read it while an invalidation was in
    /// flight: these words with each of `window`'s old values visible to
    /// them again (stores not yet visible when it was issued, or replaced
    /// before it completed). `None` when `window` is empty: that view is
    /// memory as it is now.
    pub fn window(&self, window: &[PendingStore]) -> Option<PhysMem> {
        if window.is_empty() {
            return None;
        }
        let mut view = self.clone();
        for p in window {
            insert_sorted(&mut view.pending, *p);
        }
        Some(view)
    }

    /// The stores a DSB by `cpu` would complete now, as (address, old
    /// value): what a thread releasing a lock on `cpu` publishes to the
    /// next holder.
    pub fn completable_by(&self, cpu: u8) -> Vec<(Pa, u64)> {
        self.pending
            .iter()
            .filter(|p| p.by & (1 << cpu) != 0)
            .map(|p| (p.pa, p.old))
            .collect()
    }

    /// `cpu` has observed `stores` (published by a lock release it has now
    /// acquired): its DSBs complete them too, where they are still pending.
    pub fn observe(&mut self, stores: &[(Pa, u64)], cpu: u8) {
        let mut changed = false;
        for p in &mut self.pending {
            if stores.contains(&(p.pa, p.old)) && p.by & (1 << cpu) == 0 {
                p.by |= 1 << cpu;
                changed = true;
            }
        }
        if changed {
            self.pending.sort_unstable();
            self.pending.dedup();
        }
    }

    /// Declares that no allocation will observe the free list's order again:
    /// from now on it is kept as a sorted set, so that states differing only
    /// in the order their frames were freed are one state.
    pub fn forget_free_order(&mut self) {
        // Called after every step: most steps free nothing, and checking is
        // cheaper than sorting a sorted list.
        if !self.free.is_sorted() {
            self.free.sort_unstable();
        }
    }

    /// Stores some walker may not observe yet, in sorted order.
    pub fn pending_stores(&self) -> &[PendingStore] {
        &self.pending
    }

    /// Sets the owner of pool frame `idx`, keeping `owners_hash` in step.
    fn put_owner(&mut self, idx: u32, owner: FrameOwner) {
        let slot = &mut Arc::make_mut(&mut self.owners)[idx as usize];
        self.owners_hash = self
            .owners_hash
            .wrapping_sub(owner_hash(idx, *slot))
            .wrapping_add(owner_hash(idx, owner));
        *slot = owner;
    }

    /// Hands out a frame (most recently freed first), zeroed, tagged `owner`.
    pub fn alloc(&mut self, owner: FrameOwner) -> Result<Pfn, MemError> {
        let idx = self.free.pop().ok_or(MemError::OutOfFrames)?;
        let pfn = Pfn(self.pool_base.0 + u64::from(idx));
        self.zero_frame(pfn);
        self.put_owner(idx, owner);
        Ok(pfn)
    }

    /// Takes a specific free frame out of the pool (scenario set-up that
    /// places tables at fixed addresses).
    pub fn claim(&mut self, pfn: Pfn, owner: FrameOwner) -> Result<(), MemError> {
        let idx = self.pool_index(pfn)?;
        let pos = self
            .free
            .iter()
            .position(|&f| f == idx)
            .ok_or(MemError::DoubleFree(pfn))?;
        self.free.remove(pos);
        self.put_owner(idx, owner);
        Ok(())
    }

    /// Number of frames the allocator can hand out now.
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    /// Whether `pfn` may be freed now (in the pool and in use).
    pub fn check_free(&self, pfn: Pfn) -> Result<(), MemError> {
        let idx = self.pool_index(pfn)?;
        if self.owners[idx as usize] == FrameOwner::Free {
            return Err(MemError::DoubleFree(pfn));
        }
        Ok(())
    }

    /// Returns a frame to the allocator. Its contents stay until reuse
    /// (a stale walker may still read them).
    pub fn free(&mut self, pfn: Pfn) -> Result<(), MemError> {
        self.check_free(pfn)?;
        let idx = self.pool_index(pfn)?;
        self.put_owner(idx, FrameOwner::Free);
        self.free.push(idx);
        Ok(())
    }

    /// What the frame holds now (`Reserved` outside the pool).
    pub fn owner(&self, pfn: Pfn) -> FrameOwner {
        match self.pool_index(pfn) {
            Ok(i) => self.owners[i as usize],
            Err(_) => FrameOwner::Reserved,
        }
    }

    /// Re-tags a frame in use (for example a data page that becomes a table).
    pub fn set_owner(&mut self, pfn: Pfn, owner: FrameOwner) -> Result<(), MemError> {
        let idx = self.pool_index(pfn)?;
        self.put_owner(idx, owner);
        Ok(())
    }

    /// Non-zero words in `[first, first + len)`, in address order.
    pub fn words_in(&self, first: Pa, len: u64) -> &[(Pa, u64)] {
        let lo = self.words.partition_point(|w| w.0 < first);
        let end = Pa(first.0.saturating_add(len));
        let hi = self.words.partition_point(|w| w.0 < end);
        &self.words[lo..hi]
    }

    fn zero_frame(&mut self, pfn: Pfn) {
        let base = pfn.base();
        let lo = self.words.partition_point(|w| w.0 < base);
        let hi = self
            .words
            .partition_point(|w| w.0 < Pa(base.0 + FRAME_SIZE));
        if lo < hi {
            for &(pa, v) in &self.words[lo..hi] {
                self.words_hash = self.words_hash.wrapping_sub(word_hash(pa, v));
            }
            Arc::make_mut(&mut self.words).drain(lo..hi);
        }
    }

    fn pool_index(&self, pfn: Pfn) -> Result<u32, MemError> {
        pfn.0
            .checked_sub(self.pool_base.0)
            .filter(|&i| i < self.owners.len() as u64)
            .map(|i| i as u32)
            .ok_or(MemError::NotInPool(pfn))
    }
}

/// Inserts `p` into the sorted set `v` (no repeats).
pub fn insert_sorted<T: Ord>(v: &mut Vec<T>, p: T) {
    if let Err(i) = v.binary_search(&p) {
        v.insert(i, p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> PhysMem {
        PhysMem::new(Pfn(0x100), 4)
    }

    #[test]
    fn allocator_reuses_the_most_recently_freed_frame() {
        let mut m = mem();
        let a = m.alloc(FrameOwner::Data { space: 1 }).unwrap();
        let b = m.alloc(FrameOwner::Data { space: 1 }).unwrap();
        assert_eq!((a, b), (Pfn(0x100), Pfn(0x101)));
        m.free(a).unwrap();
        m.free(b).unwrap();
        assert_eq!(m.alloc(FrameOwner::Smmu).unwrap(), b);
        assert_eq!(m.alloc(FrameOwner::Smmu).unwrap(), a);
        assert_eq!(m.owner(a), FrameOwner::Smmu);
    }

    #[test]
    fn double_free_and_foreign_frames_are_errors() {
        let mut m = mem();
        let a = m.alloc(FrameOwner::Data { space: 0 }).unwrap();
        m.free(a).unwrap();
        assert_eq!(m.free(a), Err(MemError::DoubleFree(a)));
        assert_eq!(m.free(Pfn(0x5)), Err(MemError::NotInPool(Pfn(0x5))));
        assert_eq!(m.owner(Pfn(0x5)), FrameOwner::Reserved);
    }

    #[test]
    fn freed_contents_survive_until_reuse_then_read_zero() {
        let mut m = mem();
        let a = m.alloc(FrameOwner::Data { space: 0 }).unwrap();
        m.write(Pa(a.base().0 + 8), 0xdead).unwrap();
        m.free(a).unwrap();
        assert_eq!(m.read(Pa(a.base().0 + 8)), 0xdead);
        assert_eq!(m.alloc(FrameOwner::Data { space: 1 }).unwrap(), a);
        assert_eq!(m.read(Pa(a.base().0 + 8)), 0);
    }

    #[test]
    fn walkers_see_old_values_until_the_storing_cpu_completes_a_dsb() {
        let mut m = mem();
        let pa = Pa(0x100_000);
        m.write(pa, 1).unwrap();
        m.store(0, 0b111, pa, 2).unwrap();
        let seen = |m: &PhysMem, agent| {
            let mut v = vec![];
            m.for_each_walker_value(agent, pa, |x| v.push(x));
            v
        };
        assert_eq!(m.read(pa), 2);
        assert_eq!(seen(&m, 1), vec![2, 1]);
        // A DSB by another CPU completes nothing.
        m.complete_stores(1, 0b111);
        assert_eq!(seen(&m, 1), vec![2, 1]);
        // DSB NSH: only the storing CPU's own walker.
        m.complete_stores(0, 0b001);
        assert_eq!(seen(&m, 0), vec![2]);
        assert_eq!(seen(&m, 2), vec![2, 1]);
        m.complete_stores(0, 0b111);
        assert_eq!(seen(&m, 2), vec![2]);
        assert!(m.pending_stores().is_empty());
    }

    #[test]
    fn equal_contents_are_equal_memories_whatever_the_history() {
        let (a, b) = (Pa(0x100_000), Pa(0x100_008));
        let mut m1 = mem();
        m1.write(a, 1).unwrap();
        m1.write(b, 2).unwrap();
        m1.store(0, 1, a, 3).unwrap();
        m1.store(1, 1, b, 4).unwrap();
        let mut m2 = mem();
        m2.write(b, 7).unwrap();
        m2.write(b, 2).unwrap();
        m2.write(a, 1).unwrap();
        m2.store(1, 1, b, 4).unwrap();
        m2.store(0, 1, a, 3).unwrap();
        assert_eq!(m1, m2);
        let hash = |m: &PhysMem| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            m.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&m1), hash(&m2));
        m2.write(a, 0).unwrap();
        assert_ne!(m1, m2);
    }

    #[test]
    fn the_free_order_counts_until_it_is_forgotten() {
        let mut m1 = mem();
        let mut m2 = mem();
        for m in [&mut m1, &mut m2] {
            m.alloc(FrameOwner::Smmu).unwrap();
            m.alloc(FrameOwner::Smmu).unwrap();
        }
        m1.free(Pfn(0x100)).unwrap();
        m1.free(Pfn(0x101)).unwrap();
        m2.free(Pfn(0x101)).unwrap();
        m2.free(Pfn(0x100)).unwrap();
        assert_ne!(m1, m2, "the next allocation tells them apart");
        m1.forget_free_order();
        m2.forget_free_order();
        assert_eq!(m1, m2);
    }

    #[test]
    fn unaligned_writes_are_rejected_without_effect() {
        let mut m = mem();
        assert_eq!(
            m.write(Pa(0x100_004), 1),
            Err(MemError::Unaligned(Pa(0x100_004)))
        );
        assert_eq!(m.read(Pa(0x100_000)), 0);
    }
}
