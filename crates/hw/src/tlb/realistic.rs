//! A realistic TLB for the cost model: fixed capacity, sets and ways, LRU
//! replacement, filled on demand by walks.
//!
//! It answers "what does it cost" (hits, misses, descriptor reads); the
//! may-hold set answers "can it go wrong". Every entry it holds was filled
//! by a walk of memory and is dropped by the same scope rule as the may-hold
//! set, so it never holds an entry outside the may-hold set.

use super::entry::{Access, EntryKind, InvalScope, Regime, Stage, TlbEntry};
use crate::addr::{InputAddr, Pa, Va};
use crate::mem::PhysMem;
use crate::vmsa::{translate, Context, Fault};
use serde::{Deserialize, Serialize};

/// Counters the cost model reads.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlbStats {
    /// Lookups answered by a leaf entry.
    pub hits: u64,
    /// Lookups that needed a walk.
    pub misses: u64,
    /// Descriptors read by walks.
    pub walk_reads: u64,
    /// Entries dropped by invalidations.
    pub invalidated: u64,
    /// Entries evicted for capacity.
    pub evicted: u64,
}

#[derive(Copy, Clone, Debug)]
struct Slot {
    entry: TlbEntry,
    last_use: u64,
}

/// A set-associative TLB holding leaf and walk-cache entries alike.
#[derive(Clone, Debug)]
pub struct RealisticTlb {
    sets: usize,
    ways: usize,
    slots: Vec<Option<Slot>>,
    clock: u64,
    /// Bit `s` set when a leaf with span `1 << s` may be present.
    leaf_spans: u64,
    /// Counters.
    pub stats: TlbStats,
}

impl RealisticTlb {
    /// A TLB of `sets` sets (a power of two) and `ways` ways.
    ///
    /// # Panics
    /// If `sets` is not a power of two or `ways` is 0: a configuration bug.
    pub fn new(sets: usize, ways: usize) -> RealisticTlb {
        assert!(
            sets.is_power_of_two() && ways > 0,
            "sets must be a power of two, ways > 0"
        );
        RealisticTlb {
            sets,
            ways,
            slots: vec![None; sets * ways],
            clock: 0,
            leaf_spans: 0,
            stats: TlbStats::default(),
        }
    }

    /// Capacity in entries.
    pub fn capacity(&self) -> usize {
        self.sets * self.ways
    }

    #[inline]
    fn set_of(&self, input: u64, span: u8) -> usize {
        // Index by the page number of the span, folding the span in so that
        // blocks and pages of one region land in different sets.
        let page = input >> span;
        ((page ^ (page >> 7) ^ u64::from(span)) as usize) & (self.sets - 1)
    }

    /// The leaf of `stage` that translates `input` for these tags, if
    /// cached. Stage-1 and combined entries translate VAs, stage-2 entries
    /// IPAs: an address of the other space finds nothing (and is a caller's
    /// bug, asserted in debug builds).
    #[inline]
    pub fn lookup(
        &mut self,
        regime: Regime,
        vmid: u16,
        stage: Stage,
        asid: Option<u16>,
        input: InputAddr,
    ) -> Option<TlbEntry> {
        let space_ok = matches!(
            (stage, input),
            (Stage::S2, InputAddr::Ipa(_)) | (Stage::S1 | Stage::Combined, InputAddr::Va(_))
        );
        debug_assert!(space_ok, "{stage:?} entries do not translate {input:?}");
        let input = input.get();
        let mut spans = if space_ok { self.leaf_spans } else { 0 };
        while spans != 0 {
            let span = spans.trailing_zeros() as u8;
            spans &= spans - 1;
            let base = input & !((1u64 << span) - 1);
            let set = self.set_of(base, span);
            for slot in self.slots[set * self.ways..(set + 1) * self.ways]
                .iter_mut()
                .flatten()
            {
                let e = &slot.entry;
                if e.input().get() == base
                    && e.span_shift == span
                    && e.kind == EntryKind::Leaf
                    && e.stage() == stage
                    && e.regime == regime
                    && e.vmid == vmid
                    && (e.asid.is_none() || e.asid == asid)
                {
                    self.clock += 1;
                    slot.last_use = self.clock;
                    self.stats.hits += 1;
                    return Some(*e);
                }
            }
        }
        None
    }

    /// Fills `entry`, evicting the least recently used way of its set.
    pub fn insert(&mut self, entry: TlbEntry) {
        if entry.kind == EntryKind::Leaf {
            self.leaf_spans |= 1 << entry.span_shift;
        }
        let set = self.set_of(entry.input().get(), entry.span_shift);
        self.clock += 1;
        let ways = &mut self.slots[set * self.ways..(set + 1) * self.ways];
        if let Some(s) = ways.iter_mut().flatten().find(|s| s.entry == entry) {
            s.last_use = self.clock;
            return;
        }
        let victim = match ways.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.stats.evicted += 1;
                ways.iter()
                    .enumerate()
                    .min_by_key(|(_, s)| s.map_or(0, |s| s.last_use))
                    .map_or(0, |(i, _)| i)
            }
        };
        ways[victim] = Some(Slot {
            entry,
            last_use: self.clock,
        });
    }

    /// Fills the entries one walk made, counting its descriptor reads.
    fn fill(&mut self, entries: &[TlbEntry]) {
        self.stats.walk_reads += entries
            .iter()
            .filter(|e| e.stage() != Stage::Combined)
            .count() as u64;
        for e in entries {
            self.insert(*e);
        }
    }

    /// Drops every entry `scope` covers; returns how many.
    pub fn invalidate(&mut self, scope: &InvalScope) -> usize {
        let mut n = 0;
        for slot in &mut self.slots {
            if slot.is_some_and(|s| scope.covers(&s.entry)) {
                *slot = None;
                n += 1;
            }
        }
        self.stats.invalidated += n as u64;
        n
    }

    /// Every entry held now.
    pub fn entries(&self) -> impl Iterator<Item = &TlbEntry> {
        self.slots.iter().flatten().map(|s| &s.entry)
    }

    /// Translates an access at `va` in `ctx`: a hit returns the cached leaf
    /// (whose permissions may forbid the access: a cached permission fault,
    /// Arm ARM D8.15.1.5, RJVXRH); a miss walks the latest memory and fills
    /// every entry the walk made.
    pub fn access(
        &mut self,
        mem: &PhysMem,
        ctx: &Context,
        va: Va,
        access: Access,
    ) -> Result<Pa, Fault> {
        let stage = ctx.access_stage();
        let vmid = ctx.tag_vmid();
        let asid = (stage != Stage::S2).then_some(ctx.asid);
        if ctx.s1.is_some() || ctx.s2.is_some() {
            let input = ctx.access_input(va);
            if let Some(e) = self.lookup(ctx.regime, vmid, stage, asid, input) {
                if !e.perms.allows(access) {
                    return Err(Fault::from_cached_leaf(&e));
                }
                // A stage-1 leaf is the access stage only without stage 2.
                let out = e
                    .translate(input)
                    .expect("the leaf covers its lookup address");
                return Ok(out.flat_pa());
            }
        }
        self.stats.misses += 1;
        match translate(mem, ctx, va, access) {
            Ok(t) => {
                self.fill(&t.entries);
                Ok(t.pa)
            }
            // A leaf whose permission check failed may still be cached (Arm
            // ARM D8.15.1.5, RJVXRH): walk again as a read to get it.
            Err(f) if f.kind == crate::vmsa::FaultKind::Permission => {
                let read = Access {
                    write: false,
                    user: false,
                };
                if let Ok(t) = translate(mem, ctx, va, read) {
                    self.fill(&t.entries);
                }
                Err(f)
            }
            Err(f) => Err(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{Granule, Ipa};
    use crate::mem::Pfn;
    use crate::tlb::{AsidSel, Mapping, StageSel};
    use crate::vmsa::desc::{s1_page, table};
    use crate::vmsa::StageConfig;

    fn page(input: u64, asid: u16) -> TlbEntry {
        let map = Mapping::S1 {
            input: Va(input),
            output: Ipa(input + 0x1000_0000),
        };
        TlbEntry::leaf(map, 3, Granule::K4).tagged(Regime::El10, 0, Some(asid))
    }

    #[test]
    fn lru_evicts_the_least_recently_used_way() {
        let mut t = RealisticTlb::new(1, 2);
        t.insert(page(0x1000, 1));
        t.insert(page(0x2000, 1));
        assert!(t
            .lookup(Regime::El10, 0, Stage::S1, Some(1), Va(0x1000).into())
            .is_some());
        t.insert(page(0x3000, 1));
        assert!(t
            .lookup(Regime::El10, 0, Stage::S1, Some(1), Va(0x2000).into())
            .is_none());
        assert!(t
            .lookup(Regime::El10, 0, Stage::S1, Some(1), Va(0x1000).into())
            .is_some());
        assert_eq!(t.stats.evicted, 1);
    }

    #[test]
    fn asid_tags_separate_entries() {
        let mut t = RealisticTlb::new(4, 2);
        t.insert(page(0x1000, 1));
        assert!(t
            .lookup(Regime::El10, 0, Stage::S1, Some(2), Va(0x1000).into())
            .is_none());
        let s = InvalScope {
            regime: Regime::El10,
            stages: StageSel::STAGE1,
            vmid: Some(0),
            asid: AsidSel::Only {
                asid: 1,
                with_global: false,
            },
            range: None,
            granule: None,
            leaf_only: false,
            ttl_level: None,
        };
        assert_eq!(t.invalidate(&s), 1);
        assert_eq!(t.entries().count(), 0);
    }

    /// A read-only page cached by a read keeps faulting writes after the
    /// table grants write, until invalidated: the fault-forever hazard (Arm
    /// ARM D8.15.1.5, IWJLXV).
    #[test]
    fn cached_read_only_entry_faults_after_an_upgrade_until_invalidated() {
        let mut m = PhysMem::new(Pfn(0x100), 8);
        for (lvl, next) in [(0u64, 0x10_1000u64), (1, 0x10_2000), (2, 0x10_3000)] {
            m.write(Pa(0x10_0000 + lvl * 0x1000), table(next)).unwrap();
        }
        m.write(Pa(0x10_3000), s1_page(0x50_0000, false, false, false))
            .unwrap();
        let ctx = Context {
            regime: Regime::El10,
            asid: 1,
            vmid: 0,
            s1: Some(StageConfig::new(Granule::K4, 0x10_0000)),
            s2: None,
        };
        let mut t = RealisticTlb::new(16, 4);
        let read = Access {
            write: false,
            user: false,
        };
        let write = Access {
            write: true,
            user: false,
        };
        assert_eq!(t.access(&m, &ctx, Va(0x10), read), Ok(Pa(0x50_0010)));
        m.write(Pa(0x10_3000), s1_page(0x50_0000, true, false, false))
            .unwrap();
        assert!(
            t.access(&m, &ctx, Va(0x10), write).is_err(),
            "stale read-only entry"
        );
        t.invalidate(&InvalScope {
            regime: Regime::El10,
            stages: StageSel::STAGE1,
            vmid: Some(0),
            asid: AsidSel::Any,
            range: None,
            granule: None,
            leaf_only: true,
            ttl_level: None,
        });
        assert_eq!(t.access(&m, &ctx, Va(0x10), write), Ok(Pa(0x50_0010)));
        assert_eq!((t.stats.hits, t.stats.misses), (1, 2));
    }
}
