//! Realistic SMMU caches for the cost model: an IOTLB, a config cache and
//! one ATC per ATS device, each with a fixed number of sets and ways, LRU
//! replacement, filled on demand.
//!
//! The may-hold sets in [`Smmu`] answer "can it go wrong": every entry the
//! architecture allows the SMMU to hold. The caches here answer "what does
//! it cost": one execution's hits, misses, walk reads and structure fetches.
//! They are filled only by device accesses (a miss walks memory as it is
//! now: the configuration through the Stream table and CD table, the
//! translation through the page tables) and they drop entries by the same
//! completed commands, with the same scopes, as the may-hold side. So every
//! entry they hold is one the may-hold side holds too
//! (`tests/smmu_realistic.rs` checks it on random operation sequences).
//!
//! # Why a separate struct
//!
//! [`SmmuCosts`] lives beside the [`Smmu`], not inside it. The checker
//! clones and hashes whole machine states at every transition and merges
//! states that are architecturally equal; these caches are one execution's
//! history (LRU clocks, counters) and must not split states that behave the
//! same, nor be cloned with them. Keeping them out of [`Smmu`] keeps its
//! derived `Eq` and `Hash` exact without hand-written impls that would have
//! to be kept in step with every new field, and leaves the checker's cost
//! unchanged. The price is that a driver makes one extra call beside each
//! SMMU call that matters to the caches: [`SmmuCosts::device_access`],
//! [`SmmuCosts::commands_consumed`] (or [`SmmuCosts::submit`]),
//! [`SmmuCosts::cpu_tlbi`] and [`SmmuCosts::cpu_dsb`]. Stores need no call:
//! these caches do not snoop memory (SMMUv3 3.21: software must invalidate
//! after changing a structure the SMMU may have cached).
//!
//! # Limits
//!
//! - Walks start at the root every time: walk-cache entries are filled and
//!   invalidated like leaves (so the invalidation cost is right) but do not
//!   shorten later walks, so `walk_reads` is an upper bound.
//! - A broadcast TLBI (BTM) removes every IOTLB entry its scope covers,
//!   including entries of CDs with ASET = 1, which SMMUv3 3.17 lets an SMMU
//!   keep: removing more than required is always permitted, and doing so
//!   keeps the "never outside the may-hold set" property without a
//!   predicate-based invalidation in [`RealisticTlb`].

use super::cd::{Cd, CdContext, L1Cd};
use super::cmd::Command;
use super::config::{
    effective_ssid, l2_cd_address, l2_ste_address, read_words, ste_cd_split, CfgEntry, CfgiScope,
    ConfigFault, ResolvedConfig, StrtabFmt, CD_SPLITS, STRUCT_BYTES,
};
use super::model::{cfgi_scope, tlbi_scope, Consumed, Smmu};
use super::queue::QueueFull;
use super::ste::Ste;
use crate::addr::{AddrRange, InputRange, Pa, Va};
use crate::machine::Dsb;
use crate::mem::PhysMem;
use crate::tlb::{
    Access, AsidSel, EntryKind, InvalScope, RealisticTlb, Regime, Stage, StageSel, TlbEntry,
    TlbStats,
};
use crate::vmsa::{translate, Context, Fault};
use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};

/// Counters of one realistic cache. Fields that do not apply to a cache stay 0.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Lookups answered by the cache.
    pub hits: u64,
    /// Lookups that missed. For an ATC, each miss is one ATS Translation
    /// Request to the SMMU (SMMUv3 3.9).
    pub misses: u64,
    /// Translation-table descriptors read by walks after IOTLB misses.
    pub walk_reads: u64,
    /// Configuration structures (L1STD, STE, L1CD, CD) read from memory
    /// after config-cache misses.
    pub config_fetches: u64,
    /// Entries dropped by completed invalidations.
    pub invalidated: u64,
    /// Entries evicted for capacity.
    pub evicted: u64,
}

impl From<TlbStats> for CacheStats {
    fn from(t: TlbStats) -> CacheStats {
        CacheStats {
            hits: t.hits,
            misses: t.misses,
            walk_reads: t.walk_reads,
            config_fetches: 0,
            invalidated: t.invalidated,
            evicted: t.evicted,
        }
    }
}

/// Sets (a power of two) and ways of one cache.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Geometry {
    /// Number of sets; a power of two.
    pub sets: usize,
    /// Ways per set; at least 1.
    pub ways: usize,
}

/// The shape of every realistic cache. The defaults are of the order of
/// published SMMU implementations (a few hundred IOTLB entries, tens of
/// configurations, a small ATC per endpoint); the cost model only compares
/// protocols, so the exact figures matter less than using the same ones.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostGeometry {
    /// IOTLB, leaf and walk-cache entries together.
    pub iotlb: Geometry,
    /// Config cache: L1STDs, STEs, L1CDs and CDs together.
    pub config: Geometry,
    /// Each ATS device's ATC.
    pub atc: Geometry,
}

impl Default for CostGeometry {
    fn default() -> Self {
        CostGeometry {
            iotlb: Geometry { sets: 64, ways: 4 },
            config: Geometry { sets: 16, ways: 4 },
            atc: Geometry { sets: 16, ways: 2 },
        }
    }
}

/// What a config-cache entry is looked up by. The SMMU finds a cached
/// structure by the StreamID (and SubstreamID) of the transaction, not by
/// address: that is what the CFGI commands name (SMMUv3 4.3), and why a
/// cached structure outlives a change of the pointer that located it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CfgKey {
    /// An L1STD by `StreamID >> SPLIT` (SMMUv3 5.1).
    L1Std {
        /// L1 index.
        index: u32,
    },
    /// An STE by StreamID (SMMUv3 5.2).
    Ste {
        /// StreamID.
        sid: u32,
    },
    /// An L1CD by StreamID and `SubstreamID >> split` (SMMUv3 5.3, 4.3.3).
    L1Cd {
        /// StreamID.
        sid: u32,
        /// L1CD index.
        index: u32,
    },
    /// A CD by StreamID and SubstreamID (SMMUv3 5.4, 4.3.3).
    Cd {
        /// StreamID.
        sid: u32,
        /// SubstreamID (0 when substreams are off).
        ssid: u32,
    },
}

impl CfgKey {
    /// The key `e` is cached under.
    pub fn of(e: &CfgEntry) -> CfgKey {
        match *e {
            CfgEntry::L1Std { index, .. } => CfgKey::L1Std { index },
            CfgEntry::Ste { sid, .. } => CfgKey::Ste { sid },
            CfgEntry::L1Cd { sid, index, .. } => CfgKey::L1Cd { sid, index },
            CfgEntry::Cd { sid, ssid, .. } => CfgKey::Cd { sid, ssid },
        }
    }
}

/// A structure's decoded form, kept beside its raw words so that a hit
/// does not decode again (the raw words stay the identity, for comparison
/// with the may-hold side).
#[derive(Copy, Clone, Debug)]
enum Decoded {
    /// Not decoded yet, or an L1 descriptor (cheap to decode).
    Raw,
    /// An STE.
    Ste(Ste),
    /// A CD with the STE-dependent context it was validated in.
    Cd(Cd, CdContext),
}

#[derive(Copy, Clone, Debug)]
struct CfgSlot {
    entry: CfgEntry,
    decoded: Decoded,
    last_use: u64,
}

/// A set-associative LRU config cache of raw structures (the same
/// [`CfgEntry`] values as the may-hold config cache, so the two compare
/// directly), at most one per [`CfgKey`].
#[derive(Clone, Debug)]
pub struct RealisticConfigCache {
    geometry: Geometry,
    slots: Vec<Option<CfgSlot>>,
    clock: u64,
    /// Counters.
    pub stats: CacheStats,
}

impl RealisticConfigCache {
    /// An empty cache.
    ///
    /// # Panics
    /// If `g.sets` is not a power of two or `g.ways` is 0: a configuration bug.
    pub fn new(g: Geometry) -> RealisticConfigCache {
        assert!(
            g.sets.is_power_of_two() && g.ways > 0,
            "sets must be a power of two, ways > 0"
        );
        RealisticConfigCache {
            geometry: g,
            slots: vec![None; g.sets * g.ways],
            clock: 0,
            stats: CacheStats::default(),
        }
    }

    /// Capacity in entries.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn ways_of(&mut self, key: CfgKey) -> &mut [Option<CfgSlot>] {
        let mut h = rustc_hash::FxHasher::default();
        key.hash(&mut h);
        // Fold the high half in: Fx leaves the low bits weak for small keys.
        let h = h.finish();
        let set = ((h ^ (h >> 29) ^ (h >> 47)) as usize) & (self.geometry.sets - 1);
        let w = self.geometry.ways;
        &mut self.slots[set * w..(set + 1) * w]
    }

    /// The structure cached under `key`, counted as a hit or a miss.
    pub fn lookup(&mut self, key: CfgKey) -> Option<CfgEntry> {
        self.lookup_slot(key).map(|(e, _)| e)
    }

    fn lookup_slot(&mut self, key: CfgKey) -> Option<(CfgEntry, Decoded)> {
        self.clock += 1;
        let now = self.clock;
        let hit = self
            .ways_of(key)
            .iter_mut()
            .flatten()
            .find(|s| CfgKey::of(&s.entry) == key)
            .map(|s| {
                s.last_use = now;
                (s.entry, s.decoded)
            });
        if hit.is_some() {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
        }
        hit
    }

    /// Keeps the decoded form of the entry held under `key`, if any.
    fn remember(&mut self, key: CfgKey, d: Decoded) {
        if let Some(s) = self
            .ways_of(key)
            .iter_mut()
            .flatten()
            .find(|s| CfgKey::of(&s.entry) == key)
        {
            s.decoded = d;
        }
    }

    /// Fills `entry`, replacing the entry of the same key or evicting the
    /// least recently used way of its set.
    pub fn insert(&mut self, entry: CfgEntry) {
        self.clock += 1;
        let now = self.clock;
        let key = CfgKey::of(&entry);
        let ways = self.ways_of(key);
        let victim = ways
            .iter()
            .position(|s| s.is_some_and(|s| CfgKey::of(&s.entry) == key))
            .or_else(|| ways.iter().position(Option::is_none));
        let evicts = victim.is_none();
        let victim = victim.unwrap_or_else(|| {
            ways.iter()
                .enumerate()
                .min_by_key(|(_, s)| s.map_or(0, |s| s.last_use))
                .map_or(0, |(i, _)| i)
        });
        ways[victim] = Some(CfgSlot {
            entry,
            decoded: Decoded::Raw,
            last_use: now,
        });
        if evicts {
            self.stats.evicted += 1;
        }
    }

    /// Drops every entry for which `doomed` holds; returns how many.
    pub fn invalidate(&mut self, mut doomed: impl FnMut(&CfgEntry) -> bool) -> usize {
        let mut n = 0;
        for slot in &mut self.slots {
            if slot.is_some_and(|s| doomed(&s.entry)) {
                *slot = None;
                n += 1;
            }
        }
        self.stats.invalidated += n as u64;
        n
    }

    /// Every entry held now.
    pub fn entries(&self) -> impl Iterator<Item = &CfgEntry> {
        self.slots.iter().flatten().map(|s| &s.entry)
    }
}

/// Why a realistic access failed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CostFault {
    /// The configuration could not be used (the event the SMMU would record).
    Config(ConfigFault),
    /// The translation faulted (a walk, or a cached leaf denying the access).
    Translation(Fault),
}

/// What one realistic access did and where it was answered.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AccessCost {
    /// Output address, or why not.
    pub result: Result<Pa, CostFault>,
    /// Every configuration structure needed came from the config cache.
    pub config_hit: bool,
    /// For an ATS device: whether its ATC had the translation.
    pub atc_hit: Option<bool>,
    /// Whether the IOTLB had the translation (`None` when the IOTLB was not
    /// asked: an ATC hit, bypass, or a configuration error).
    pub iotlb_hit: Option<bool>,
}

/// Counters of every realistic cache.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmmuCostStats {
    /// The IOTLB.
    pub iotlb: CacheStats,
    /// The config cache.
    pub config: CacheStats,
    /// Each device's ATC, `None` for devices without ATS.
    pub atc: Vec<Option<CacheStats>>,
}

/// A consumed invalidation waiting for its CMD_SYNC.
#[derive(Copy, Clone, Debug)]
enum Deferred {
    Tlb(InvalScope),
    Cfg(CfgiScope),
    Atc { dev: usize, span: AddrRange },
}

/// The realistic caches of one SMMU and its ATS devices (see the module
/// notes for why they sit beside the [`Smmu`] rather than in it).
#[derive(Clone, Debug)]
pub struct SmmuCosts {
    /// The IOTLB: leaf and walk-cache entries.
    pub iotlb: RealisticTlb,
    /// The config cache.
    pub config: RealisticConfigCache,
    /// Each device's ATC (indexed like [`Smmu::devices`]); `None` without ATS.
    pub atc: Vec<Option<RealisticTlb>>,
    pending: Vec<Deferred>,
    btm: Vec<(u8, InvalScope)>,
}

/// The access a walk is made for: a read, so that a leaf that forbids the
/// requested write is still cached, as the architecture allows (the
/// fault-forever hazard of a cached read-only entry).
const WALK_ACCESS: Access = Access {
    write: false,
    user: false,
};

/// Translates `va` in `ctx` through `tlb`: the cached leaf on a hit, else a
/// walk of memory as it is now that fills every entry it made (leaf and
/// walk-cache entries alike). Returns the leaf of the access stage.
fn iotlb_leaf(
    tlb: &mut RealisticTlb,
    mem: &PhysMem,
    ctx: &Context,
    va: Va,
    hit: &mut Option<bool>,
) -> Result<TlbEntry, Fault> {
    let stage = ctx.access_stage();
    let asid = (stage != Stage::S2).then_some(ctx.asid);
    let input = ctx.access_input(va);
    if let Some(e) = tlb.lookup(ctx.regime, ctx.tag_vmid(), stage, asid, input) {
        *hit = Some(true);
        return Ok(e);
    }
    *hit = Some(false);
    tlb.stats.misses += 1;
    let t = translate(mem, ctx, va, WALK_ACCESS)?;
    // A combined entry is made from the two stages' leaves, not read.
    tlb.stats.walk_reads += t
        .entries
        .iter()
        .filter(|e| e.stage() != Stage::Combined)
        .count() as u64;
    for e in &t.entries {
        tlb.insert(*e);
    }
    Ok(*t
        .entries
        .iter()
        .rev()
        .find(|e| e.kind == EntryKind::Leaf && e.stage() == stage)
        .expect("a successful walk ends in a leaf of the access stage"))
}

impl SmmuCosts {
    /// Empty caches for `smmu`'s devices, shaped by `g`.
    pub fn new(smmu: &Smmu, g: CostGeometry) -> SmmuCosts {
        SmmuCosts {
            iotlb: RealisticTlb::new(g.iotlb.sets, g.iotlb.ways),
            config: RealisticConfigCache::new(g.config),
            atc: smmu
                .devices
                .iter()
                .map(|d| d.ats.then(|| RealisticTlb::new(g.atc.sets, g.atc.ways)))
                .collect(),
            pending: Vec::new(),
            btm: Vec::new(),
        }
    }

    /// Every counter.
    pub fn stats(&self) -> SmmuCostStats {
        SmmuCostStats {
            iotlb: self.iotlb.stats.into(),
            config: self.config.stats,
            atc: self
                .atc
                .iter()
                .map(|a| a.as_ref().map(|a| a.stats.into()))
                .collect(),
        }
    }

    /// Invalidations consumed and waiting for a CMD_SYNC.
    pub fn pending_invalidations(&self) -> usize {
        self.pending.len()
    }

    /// A transaction by device `dev` at `va`, as one SMMU would perform it:
    /// configuration from the config cache (a miss fetches the structures
    /// from memory as it is now), then for an ATS device its ATC (a miss is
    /// an ATS Translation Request answered through the IOTLB, and the ATC
    /// caches the leaf returned, SMMUv3 3.9), else the IOTLB (a miss walks).
    /// A cached leaf that denies the access faults without a walk (a cached
    /// permission fault). The device's stall or PRI state is the caller's
    /// business: call this only when the device issues the transaction.
    pub fn device_access(
        &mut self,
        smmu: &Smmu,
        mem: &PhysMem,
        dev: usize,
        va: Va,
        write: bool,
    ) -> AccessCost {
        let d = &smmu.devices[dev];
        let mut cost = AccessCost {
            result: Ok(va.flat_ipa().flat_pa()),
            config_hit: true,
            atc_hit: None,
            iotlb_hit: None,
        };
        let cfg = match self.resolve_config(smmu, mem, d.sid, d.ssid, &mut cost.config_hit) {
            Ok(c) => c,
            Err(f) => {
                cost.result = Err(CostFault::Config(f));
                return cost;
            }
        };
        // No stage translates: bypass, the address goes out unchanged.
        let Some(ctx) = smmu.context_of(&cfg) else {
            return cost;
        };
        // STE.EATS = 0b00 aborts ATS Translation Requests (SMMUv3 5.2): the
        // ATC gets nothing and the transaction goes untranslated through
        // the IOTLB.
        let ats = self
            .atc
            .get_mut(dev)
            .and_then(Option::as_mut)
            .filter(|_| cfg.ste.eats != 0);
        let leaf = match ats {
            Some(atc) => {
                let stage = ctx.access_stage();
                let asid = (stage != Stage::S2).then_some(ctx.asid);
                let input = ctx.access_input(va);
                match atc.lookup(ctx.regime, ctx.tag_vmid(), stage, asid, input) {
                    Some(e) => {
                        cost.atc_hit = Some(true);
                        Ok(e)
                    }
                    None => {
                        cost.atc_hit = Some(false);
                        atc.stats.misses += 1;
                        let r = iotlb_leaf(&mut self.iotlb, mem, &ctx, va, &mut cost.iotlb_hit);
                        // A failed Translation Completion caches nothing.
                        if let Ok(e) = r {
                            atc.insert(e);
                        }
                        r
                    }
                }
            }
            None => iotlb_leaf(&mut self.iotlb, mem, &ctx, va, &mut cost.iotlb_hit),
        };
        let access = Access { write, user: false };
        cost.result = match leaf {
            // A stage-1 leaf is the access stage only without stage 2.
            Ok(e) if e.perms.allows(access) => Ok(e
                .translate(ctx.access_input(va))
                .expect("the leaf covers the address")
                .flat_pa()),
            Ok(e) => Err(CostFault::Translation(Fault::from_cached_leaf(&e))),
            Err(f) => Err(CostFault::Translation(f)),
        };
        cost
    }

    /// Looks the structure up under `key`; on a miss reads `N` words at
    /// `pa` and, if `valid`, caches them as `make` builds them. Invalid
    /// structures are not cached: they fault on every use (SMMUv3 16.2).
    fn fetch<const N: usize>(
        &mut self,
        mem: &PhysMem,
        key: CfgKey,
        pa: impl FnOnce(&mut Self, &mut bool) -> Result<u64, ConfigFault>,
        valid: impl FnOnce(&[u64; N]) -> bool,
        make: impl FnOnce(u64, [u64; N]) -> CfgEntry,
        all_hit: &mut bool,
    ) -> Result<(CfgEntry, Decoded), ConfigFault> {
        if let Some(hit) = self.config.lookup_slot(key) {
            return Ok(hit);
        }
        *all_hit = false;
        let pa = pa(self, all_hit)?;
        let words = read_words::<N>(mem, pa);
        self.config.stats.config_fetches += 1;
        let e = make(pa, words);
        if valid(&words) {
            self.config.insert(e);
        }
        Ok((e, Decoded::Raw))
    }

    /// The configuration of (`sid`, `ssid`) through the config cache: the
    /// STE by StreamID (on a miss located through the cached or fetched
    /// L1STD, SMMUv3 5.1), then the CD by StreamID and SubstreamID (on a
    /// miss located through the cached or fetched L1CD, SMMUv3 5.3). Each
    /// structure is checked as the may-hold side checks it, so an entry is
    /// cached here only if [`super::config::close_config`] would admit it.
    fn resolve_config(
        &mut self,
        smmu: &Smmu,
        mem: &PhysMem,
        sid: u32,
        ssid: Option<u32>,
        all_hit: &mut bool,
    ) -> Result<ResolvedConfig, ConfigFault> {
        let strtab = smmu.strtab;
        let f = smmu.opts.features;
        if u64::from(sid) >> strtab.log2size != 0 {
            return Err(ConfigFault::BadStreamId);
        }
        let ste_pa = |me: &mut Self, all_hit: &mut bool| match strtab.fmt {
            StrtabFmt::Linear => Ok(strtab.base + STRUCT_BYTES * u64::from(sid)),
            StrtabFmt::TwoLevel { split } => {
                let index = sid >> split;
                let l1 = me.fetch::<1>(
                    mem,
                    CfgKey::L1Std { index },
                    |_, _| Ok(strtab.base + 8 * u64::from(index)),
                    // Cached only when it locates this StreamID's STE, as
                    // the may-hold side admits it.
                    |[desc]| l2_ste_address(split, sid, *desc).is_some(),
                    |pa, [desc]| CfgEntry::L1Std { index, pa, desc },
                    all_hit,
                )?;
                let (CfgEntry::L1Std { desc, .. }, _) = l1 else {
                    unreachable!("keyed by L1Std")
                };
                l2_ste_address(split, sid, desc).ok_or(ConfigFault::BadStreamId)
            }
        };
        let ste_key = CfgKey::Ste { sid };
        let e = self.fetch::<8>(
            mem,
            ste_key,
            ste_pa,
            |w| Ste::decode_with(w, &f).is_ok(),
            |pa, words| CfgEntry::Ste { sid, pa, words },
            all_hit,
        )?;
        let ste = match e {
            (_, Decoded::Ste(ste)) => ste,
            (CfgEntry::Ste { words, .. }, _) => {
                // SMMUv3 5.2.2: V = 0 or ILLEGAL is C_BAD_STE.
                let ste = Ste::decode_with(&words, &f).map_err(|_| ConfigFault::BadSte)?;
                self.config.remember(ste_key, Decoded::Ste(ste));
                ste
            }
            _ => unreachable!("keyed by Ste"),
        };
        // SMMUv3 5.2 Config: abort terminates silently.
        if ste.config.aborts() {
            return Err(ConfigFault::Abort);
        }
        // SMMUv3 5.2 S1CDMax, S1DSS.
        let Some(s) = effective_ssid(&ste, ssid, &f)? else {
            return Ok(ResolvedConfig { ste, cd: None });
        };
        let cd_ctx = CdContext::from_ste(&ste, false);
        let cd_pa = |me: &mut Self, all_hit: &mut bool| match ste_cd_split(&ste) {
            None => Ok(ste.s1_context_ptr + STRUCT_BYTES * u64::from(s)),
            Some(split) => {
                let index = s >> split;
                let l1 = me.fetch::<1>(
                    mem,
                    CfgKey::L1Cd { sid, index },
                    |_, _| Ok(ste.s1_context_ptr + 8 * u64::from(index)),
                    |[desc]| L1Cd::decode(*desc).is_ok_and(|d| d.valid),
                    |pa, [desc]| CfgEntry::L1Cd {
                        sid,
                        index,
                        pa,
                        desc,
                    },
                    all_hit,
                )?;
                let (CfgEntry::L1Cd { desc, .. }, _) = l1 else {
                    unreachable!("keyed by L1Cd")
                };
                // SMMUv3 5.3, 7.3.9: an invalid L1CD is C_BAD_SUBSTREAMID.
                match L1Cd::decode(desc) {
                    Ok(d) if d.valid => Ok(l2_cd_address(d.l2ptr, split, s)),
                    _ => Err(ConfigFault::BadSubstreamId),
                }
            }
        };
        let cd_key = CfgKey::Cd { sid, ssid: s };
        let e = self.fetch::<8>(
            mem,
            cd_key,
            cd_pa,
            |w| Cd::decode_with(w, &f, &cd_ctx).is_ok(),
            |pa, words| CfgEntry::Cd {
                sid,
                ssid: s,
                pa,
                words,
            },
            all_hit,
        )?;
        let cd = match e {
            (_, Decoded::Cd(cd, ctx)) if ctx == cd_ctx => cd,
            (CfgEntry::Cd { words, .. }, _) => {
                // SMMUv3 5.4.2, 7.3.11: V = 0 or ILLEGAL is C_BAD_CD. CD
                // validity depends on the STE in use, so a CD cached under
                // an earlier STE is checked again against this one.
                let cd = Cd::decode_with(&words, &f, &cd_ctx).map_err(|_| ConfigFault::BadCd)?;
                self.config.remember(cd_key, Decoded::Cd(cd, cd_ctx));
                cd
            }
            _ => unreachable!("keyed by Cd"),
        };
        Ok(ResolvedConfig { ste, cd: Some(cd) })
    }

    /// Software submits `cmd` and the SMMU consumes (see
    /// [`Smmu::submit`]); the realistic caches then see what was consumed.
    pub fn submit(
        &mut self,
        smmu: &mut Smmu,
        mem: &mut PhysMem,
        cmd: [u64; 2],
        step: u32,
    ) -> Result<Consumed, QueueFull> {
        let c = smmu.submit(mem, cmd, step)?;
        self.commands_consumed(smmu, &c);
        Ok(c)
    }

    /// The SMMU consumed `consumed.commands` in order (from
    /// [`Smmu::consume`], [`Smmu::submit`] or [`Smmu::acknowledge_error`]).
    /// Invalidations are performed at the next CMD_SYNC, with the scope the
    /// may-hold side uses: performing an invalidation anywhere between its
    /// consumption and the CMD_SYNC is allowed (SMMUv3 4.7.3), and at the
    /// CMD_SYNC it also removes whatever was refilled in between.
    pub fn commands_consumed(&mut self, smmu: &Smmu, consumed: &Consumed) {
        for cmd in &consumed.commands {
            if let Some(scope) = tlbi_scope(cmd, smmu.opts.e2h) {
                self.pending.push(Deferred::Tlb(scope));
                continue;
            }
            if let Some(scope) = cfgi_scope(cmd) {
                self.pending.push(Deferred::Cfg(scope));
                continue;
            }
            match *cmd {
                Command::AtcInv { sid, ssv, ssid, .. } => {
                    // SMMUv3 4.5.1: SSV = 0 reaches every PASID of the
                    // function and its non-PASID translations.
                    let span = cmd.invalidated_range().unwrap_or(AddrRange::ALL);
                    for (dev, d) in smmu.devices.iter().enumerate() {
                        if d.sid == sid && d.ats && (!ssv || d.ssid == Some(ssid)) {
                            self.pending.push(Deferred::Atc { dev, span });
                        }
                    }
                }
                Command::Sync { .. } => self.complete(smmu),
                _ => {}
            }
        }
    }

    /// CMD_SYNC: every consumed invalidation is performed (SMMUv3 4.7.3).
    fn complete(&mut self, smmu: &Smmu) {
        let split = smmu.strtab.split();
        for p in std::mem::take(&mut self.pending) {
            match p {
                // SMMUv3 4.4: IOTLB entries only; never an ATC (4.5.1).
                Deferred::Tlb(scope) => {
                    self.iotlb.invalidate(&scope);
                }
                // SMMUv3 4.3. Which L1CD a CMD_CFGI_CD with Leaf = 0 reaches
                // depends on the CD table's split; the cached L1CD may have
                // been located under an STE of either format, so both are
                // tried (invalidating more than required is permitted).
                Deferred::Cfg(scope) => {
                    self.config
                        .invalidate(|e| CD_SPLITS.iter().any(|&s| scope.covers(e, split, Some(s))));
                }
                // SMMUv3 4.5.1: ATC entries whose input overlaps the span,
                // whatever their tags. The span holds untranslated
                // addresses: VAs, which for a stream that bypasses stage 1
                // are the IPAs its stage-2 entries hold (`Va::flat_ipa`).
                Deferred::Atc { dev, span } => {
                    if let Some(atc) = self.atc.get_mut(dev).and_then(Option::as_mut) {
                        for regime in [Regime::El10, Regime::El2] {
                            for range in [InputRange::Va(span), InputRange::Ipa(span)] {
                                atc.invalidate(&InvalScope {
                                    regime,
                                    stages: StageSel::ALL,
                                    vmid: None,
                                    asid: AsidSel::Any,
                                    range: Some(range),
                                    granule: None,
                                    leaf_only: false,
                                    ttl_level: None,
                                });
                            }
                        }
                    }
                }
            }
        }
    }

    /// A CPU TLBI (call beside [`Smmu::cpu_tlbi`]): with BTM on and PTM off
    /// a broadcast form also invalidates the IOTLB, completing at the
    /// issuer's DSB ISH (SMMUv3 3.17). Never the config cache, never an ATC.
    pub fn cpu_tlbi(&mut self, smmu: &Smmu, issuer: u8, scope: &InvalScope, broadcast: bool) {
        if broadcast && smmu.opts.btm && !smmu.opts.ptm {
            self.btm.push((issuer, *scope));
        }
    }

    /// A CPU DSB (call beside [`Smmu::cpu_dsb`]): DSB ISH by the issuer
    /// completes its broadcast TLBIs in the SMMU (Arm ARM D8.13.8; SMMUv3 3.17).
    pub fn cpu_dsb(&mut self, cpu: u8, kind: Dsb) {
        if kind != Dsb::Ish {
            return;
        }
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.btm)
            .into_iter()
            .partition(|(issuer, _)| *issuer == cpu);
        self.btm = keep;
        for (_, scope) in done {
            self.iotlb.invalidate(&scope);
        }
    }
}
