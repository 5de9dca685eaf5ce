//! SMMU configuration in simulated memory (Stream table, CD tables) and the
//! configuration cache as a may-hold set.
//!
//! The Stream table is linear or 2-level (SMMUv3 3.3.2, 5.1); a stage-1 STE
//! points at one CD or at a linear or 2-level CD table indexed by
//! SubstreamID (SMMUv3 3.3.3, 5.3). Every structure is read from
//! [`PhysMem`] and decoded by [`Ste::decode_with`] / [`Cd::decode_with`];
//! a structure that is out of range or invalid yields the event the
//! specification names (SMMUv3 7.3.3, 7.3.5, 7.3.9, 7.3.11).
//!
//! The config cache holds L1STDs, STEs, L1CDs and CDs separately: the
//! specification tells software to consider every structure type
//! individually cached (SMMUv3 4.3, 16.2). Like a TLB it may hold any valid
//! structure the SMMU could have read since it was last invalidated.

use super::cd::{Cd, CdContext, L1Cd};
use super::event::EventKind;
use super::ste::{L1Std, S1Dss, S1Fmt, SmmuFeatures, Ste};
use crate::addr::Pa;
use crate::machine::SMMU_AGENT;
use crate::mem::PhysMem;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bytes in an STE or a CD (SMMUv3 5.2, 5.4).
pub const STRUCT_BYTES: u64 = 64;

/// `SMMU_STRTAB_BASE_CFG.FMT` and SPLIT (SMMUv3 6.3.24).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StrtabFmt {
    /// 0b00: one array of `2^LOG2SIZE` STEs.
    Linear,
    /// 0b01: an array of L1STDs, each locating up to `2^split` STEs.
    /// SPLIT is 6, 8 or 10 (SMMUv3 6.3.24).
    TwoLevel {
        /// StreamID bits resolved by the level-2 arrays.
        split: u8,
    },
}

/// The Stream table registers: `SMMU_STRTAB_BASE` and `SMMU_STRTAB_BASE_CFG`
/// (SMMUv3 6.3.23, 6.3.24).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StrtabConfig {
    /// Physical address of the table (linear STEs or L1STDs).
    pub base: u64,
    /// log2 of the number of StreamIDs covered.
    pub log2size: u8,
    /// Format.
    pub fmt: StrtabFmt,
}

impl StrtabConfig {
    /// SPLIT of a 2-level table, `None` for a linear one (SMMUv3 6.3.24).
    pub fn split(&self) -> Option<u8> {
        match self.fmt {
            StrtabFmt::TwoLevel { split } => Some(split),
            StrtabFmt::Linear => None,
        }
    }
}

/// Why a lookup failed, as the event the SMMU records (SMMUv3 7.3).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConfigFault {
    /// StreamID beyond the table, or an L1STD that does not cover it (SMMUv3 5.1, 7.3.3).
    BadStreamId,
    /// STE with V = 0 or ILLEGAL (SMMUv3 5.2.2, 7.3.5).
    BadSte,
    /// SubstreamID out of range, given when substreams are disabled, or
    /// located through an invalid L1CD (SMMUv3 5.3, 7.3.9).
    BadSubstreamId,
    /// CD with V = 0 or ILLEGAL (SMMUv3 5.4.2, 7.3.11).
    BadCd,
    /// Non-substream traffic with S1DSS = terminate (SMMUv3 5.2 S1DSS, 7.3.7).
    StreamDisabled,
    /// STE.Config = abort: terminated without an event (SMMUv3 5.2 Config).
    Abort,
}

impl ConfigFault {
    /// The event record kind, or `None` for a silent abort.
    pub const fn event(self) -> Option<EventKind> {
        match self {
            ConfigFault::BadStreamId => Some(EventKind::CBadStreamId),
            ConfigFault::BadSte => Some(EventKind::CBadSte),
            ConfigFault::BadSubstreamId => Some(EventKind::CBadSubstreamId),
            ConfigFault::BadCd => Some(EventKind::CBadCd),
            ConfigFault::StreamDisabled => Some(EventKind::FStreamDisabled),
            ConfigFault::Abort => None,
        }
    }
}

/// One cached configuration structure, with the address it was read from.
/// Raw words are kept (not decoded structs) so that entries order and hash
/// exactly; they are decoded again on use.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CfgEntry {
    /// A level-1 Stream table descriptor, by L1 index (`StreamID >> SPLIT`).
    L1Std {
        /// `StreamID >> SPLIT`.
        index: u32,
        /// Where it was read.
        pa: u64,
        /// Its value.
        desc: u64,
    },
    /// An STE.
    Ste {
        /// StreamID.
        sid: u32,
        /// Where it was read.
        pa: u64,
        /// Its 64 bytes.
        words: [u64; 8],
    },
    /// A level-1 CD descriptor cached using `sid` (SMMUv3 4.3.3: CD caching
    /// is per StreamID).
    L1Cd {
        /// StreamID used to locate it.
        sid: u32,
        /// `SubstreamID >> split`.
        index: u32,
        /// Where it was read.
        pa: u64,
        /// Its value.
        desc: u64,
    },
    /// A CD cached using `sid`.
    Cd {
        /// StreamID used to locate it.
        sid: u32,
        /// SubstreamID (0 when substreams are off).
        ssid: u32,
        /// Where it was read.
        pa: u64,
        /// Its 64 bytes.
        words: [u64; 8],
    },
}

impl CfgEntry {
    /// The bytes the structure occupies in memory.
    pub fn location(&self) -> crate::addr::AddrRange {
        match *self {
            CfgEntry::L1Std { pa, .. } | CfgEntry::L1Cd { pa, .. } => {
                crate::addr::AddrRange::from_len(pa, 8)
            }
            CfgEntry::Ste { pa, .. } | CfgEntry::Cd { pa, .. } => {
                crate::addr::AddrRange::from_len(pa, STRUCT_BYTES)
            }
        }
    }

    /// Physical addresses this structure makes the SMMU read next: the
    /// level-2 array of an L1STD or L1CD, the CD (table) of an STE, the
    /// stage-2 root of an STE, the stage-1 root of a non-nested CD.
    pub fn points_to(&self) -> Vec<u64> {
        match *self {
            CfgEntry::L1Std { desc, .. } => L1Std::decode(desc)
                .ok()
                .filter(|d| d.span != 0)
                .map(|d| vec![d.l2_base()])
                .unwrap_or_default(),
            CfgEntry::L1Cd { desc, .. } => L1Cd::decode(desc)
                .ok()
                .filter(|d| d.valid)
                .map(|d| vec![d.l2ptr])
                .unwrap_or_default(),
            CfgEntry::Ste { words, .. } => match Ste::decode(&words) {
                Ok(s) => {
                    let mut v = Vec::new();
                    if s.config.stage1() {
                        v.push(s.s1_context_ptr);
                    }
                    if s.config.stage2() {
                        v.push(s.s2_ttb);
                    }
                    v
                }
                Err(_) => Vec::new(),
            },
            // A CD's TTB0 is an IPA when nested; the caller filters.
            CfgEntry::Cd { words, .. } => match Cd::decode(&words) {
                Ok(c) if !c.epd0 => vec![c.ttb0],
                _ => Vec::new(),
            },
        }
    }

    /// The StreamID the entry is cached under (`None` for an L1STD, which
    /// serves every StreamID of its span).
    pub fn sid(&self) -> Option<u32> {
        match *self {
            CfgEntry::L1Std { .. } => None,
            CfgEntry::Ste { sid, .. } | CfgEntry::L1Cd { sid, .. } | CfgEntry::Cd { sid, .. } => {
                Some(sid)
            }
        }
    }
}

impl std::fmt::Display for CfgEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            CfgEntry::L1Std { index, pa, desc } => {
                write!(f, "L1STD[{index}] at {pa:#x} = {desc:#x}")
            }
            CfgEntry::Ste { sid, pa, .. } => write!(f, "STE of StreamID {sid} at {pa:#x}"),
            CfgEntry::L1Cd {
                sid,
                index,
                pa,
                desc,
            } => write!(f, "L1CD[{index}] of StreamID {sid} at {pa:#x} = {desc:#x}"),
            CfgEntry::Cd { sid, ssid, pa, .. } => {
                write!(f, "CD of StreamID {sid} SubstreamID {ssid} at {pa:#x}")
            }
        }
    }
}

/// The config cache: every structure the SMMU may hold, with the step that
/// made it holdable. Equality and hashing ignore the steps.
#[derive(Clone, Debug, Default)]
pub struct ConfigCache {
    entries: BTreeMap<CfgEntry, u32>,
}

impl PartialEq for ConfigCache {
    fn eq(&self, o: &Self) -> bool {
        self.entries.len() == o.entries.len() && self.entries.keys().eq(o.entries.keys())
    }
}
impl Eq for ConfigCache {}
impl std::hash::Hash for ConfigCache {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_usize(self.entries.len());
        for e in self.entries.keys() {
            e.hash(h);
        }
    }
}

impl ConfigCache {
    /// Adds an entry; returns whether it was new.
    pub fn insert(&mut self, e: CfgEntry, step: u32) -> bool {
        match self.entries.entry(e) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(step);
                true
            }
            std::collections::btree_map::Entry::Occupied(_) => false,
        }
    }

    /// Every held entry with the step it became holdable.
    pub fn iter(&self) -> impl Iterator<Item = (&CfgEntry, &u32)> {
        self.entries.iter()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `e` is held.
    pub fn contains(&self, e: &CfgEntry) -> bool {
        self.entries.contains_key(e)
    }

    /// Held entries for which `pred` holds.
    pub fn matching(&self, mut pred: impl FnMut(&CfgEntry) -> bool) -> Vec<CfgEntry> {
        self.entries.keys().filter(|e| pred(e)).copied().collect()
    }

    /// Removes those of `doomed` still held; returns how many.
    pub fn remove_entries(&mut self, doomed: &[CfgEntry]) -> usize {
        doomed
            .iter()
            .filter(|e| self.entries.remove(e).is_some())
            .count()
    }

    /// Held STEs for `sid`, decoded.
    pub fn stes(&self, sid: u32) -> Vec<(CfgEntry, Ste)> {
        self.entries
            .keys()
            .filter_map(|e| match e {
                CfgEntry::Ste { sid: s, words, .. } if *s == sid => {
                    Ste::decode(words).ok().map(|d| (*e, d))
                }
                _ => None,
            })
            .collect()
    }
}

/// Every value of the `n` words at `pa` the SMMU may read: the latest
/// values, and the values before any CPU store it may not see yet (a whole
/// structure is read either new or old; the model does not tear structures,
/// because SMMUv3 3.21.3 makes software responsible for single-copy
/// atomicity of the words the SMMU must see together).
fn versions<const N: usize>(mem: &PhysMem, pa: u64) -> Vec<[u64; N]> {
    let mut latest = [0u64; N];
    for (i, w) in latest.iter_mut().enumerate() {
        *w = mem.read(Pa(pa + 8 * i as u64));
    }
    let mut old = latest;
    let mut stale = false;
    for p in mem.pending_stores() {
        if p.stale_for & (1 << SMMU_AGENT) != 0 && p.pa.0 >= pa && p.pa.0 < pa + 8 * N as u64 {
            old[((p.pa.0 - pa) / 8) as usize] = p.old;
            stale = true;
        }
    }
    if stale && old != latest {
        vec![latest, old]
    } else {
        vec![latest]
    }
}

/// The latest values of the `N` words at `pa`.
pub(crate) fn read_words<const N: usize>(mem: &PhysMem, pa: u64) -> [u64; N] {
    let mut w = [0u64; N];
    for (i, v) in w.iter_mut().enumerate() {
        *v = mem.read(Pa(pa + 8 * i as u64));
    }
    w
}

/// Where the STE for `sid` lives, given an L1STD (2-level) or none (linear).
/// `Err` is C_BAD_STREAMID (SMMUv3 5.1: Span 0, Reserved, beyond SPLIT, or
/// a StreamID outside the level-2 span).
fn ste_address(cfg: &StrtabConfig, sid: u32, l1: Option<u64>) -> Result<u64, ConfigFault> {
    if u64::from(sid) >> cfg.log2size != 0 {
        return Err(ConfigFault::BadStreamId);
    }
    match cfg.fmt {
        StrtabFmt::Linear => Ok(cfg.base + STRUCT_BYTES * u64::from(sid)),
        StrtabFmt::TwoLevel { split } => {
            l2_ste_address(split, sid, l1.unwrap_or(0)).ok_or(ConfigFault::BadStreamId)
        }
    }
}

/// Where the STE for `sid` lives in the level-2 array an L1STD locates;
/// `None` is C_BAD_STREAMID: Span 0 or Reserved, Span beyond SPLIT + 1, or
/// the StreamID beyond the array (SMMUv3 5.1).
pub(crate) fn l2_ste_address(split: u8, sid: u32, desc: u64) -> Option<u64> {
    let d = L1Std::decode(desc).ok()?;
    let n = d.l2_entries()?;
    let low = sid & ((1u32 << split) - 1);
    (d.span <= split + 1 && low < n).then(|| d.l2_base() + STRUCT_BYTES * u64::from(low))
}

/// L1CD splits the architecture defines (SMMUv3 5.2 S1Fmt): 64 or 1024 CDs
/// per leaf table.
pub(crate) const CD_SPLITS: [u32; 2] = [6, 10];

/// L1CD index bits: 2-level CD tables have leaf tables of 64 (4 KiB) or
/// 1024 (64 KiB) CDs (SMMUv3 5.2 S1Fmt).
fn cd_split(fmt: S1Fmt) -> Option<u32> {
    match fmt {
        S1Fmt::TwoLevel4K => Some(CD_SPLITS[0]),
        S1Fmt::TwoLevel64K => Some(CD_SPLITS[1]),
        S1Fmt::Linear | S1Fmt::Reserved => None,
    }
}

/// The L1CD split of the CD table `ste` points at, `None` when it points at
/// a linear table or a single CD (SMMUv3 5.2: S1Fmt is ignored when
/// S1CDMax is 0).
pub(crate) fn ste_cd_split(ste: &Ste) -> Option<u32> {
    cd_split(ste.s1_fmt).filter(|_| ste.s1_cd_max > 0)
}

/// Where the CD for SubstreamID `ssid` lives in the leaf CD table at
/// `l2ptr` of a 2-level CD table with `split` index bits (SMMUv3 5.3).
pub(crate) fn l2_cd_address(l2ptr: u64, split: u32, ssid: u32) -> u64 {
    l2ptr + STRUCT_BYTES * u64::from(ssid & ((1u32 << split) - 1))
}

/// The SubstreamID whose CD a transaction uses, from the STE and the
/// transaction's SubstreamID (SMMUv3 5.2 S1CDMax and S1DSS).
pub fn effective_ssid(
    ste: &Ste,
    ssid: Option<u32>,
    f: &SmmuFeatures,
) -> Result<Option<u32>, ConfigFault> {
    if !ste.config.stage1() {
        // Substreams are meaningless without stage 1: a SubstreamID is
        // C_BAD_SUBSTREAMID (SMMUv3 7.3.9).
        return match ssid {
            Some(_) => Err(ConfigFault::BadSubstreamId),
            None => Ok(None),
        };
    }
    let substreams = f.ssid_bits > 0 && ste.s1_cd_max > 0;
    match (substreams, ssid) {
        (false, None) => Ok(Some(0)),
        (false, Some(_)) => Err(ConfigFault::BadSubstreamId),
        (true, Some(s)) if u64::from(s) >> ste.s1_cd_max != 0 => Err(ConfigFault::BadSubstreamId),
        (true, Some(s)) => Ok(Some(s)),
        (true, None) => match ste.s1_dss {
            S1Dss::Bypass => Ok(None),
            S1Dss::Ssid0 => Ok(Some(0)),
            S1Dss::Terminate | S1Dss::Reserved => Err(ConfigFault::StreamDisabled),
        },
    }
}

/// A configuration a transaction may use: the STE and, with stage 1 and a
/// CD in use, the CD.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResolvedConfig {
    /// The STE.
    pub ste: Ste,
    /// The CD (stage 1 in use).
    pub cd: Option<Cd>,
}

/// Reads the configuration of (`sid`, `ssid`) from the latest memory
/// values, as an uncached SMMU would: the STE, then the CD.
pub fn lookup(
    mem: &PhysMem,
    strtab: &StrtabConfig,
    f: &SmmuFeatures,
    sid: u32,
    ssid: Option<u32>,
) -> Result<ResolvedConfig, ConfigFault> {
    let l1 = match strtab.fmt {
        StrtabFmt::Linear => None,
        StrtabFmt::TwoLevel { split } => {
            if u64::from(sid) >> strtab.log2size != 0 {
                return Err(ConfigFault::BadStreamId);
            }
            Some(mem.read(Pa(strtab.base + 8 * u64::from(sid >> split))))
        }
    };
    let pa = ste_address(strtab, sid, l1)?;
    let words = read_words::<8>(mem, pa);
    let ste = Ste::decode_with(&words, f).map_err(|_| ConfigFault::BadSte)?;
    resolve_cd(mem, f, &ste, ssid)
}

/// Given an STE, finds the CD for `ssid` in the latest memory values.
fn resolve_cd(
    mem: &PhysMem,
    f: &SmmuFeatures,
    ste: &Ste,
    ssid: Option<u32>,
) -> Result<ResolvedConfig, ConfigFault> {
    if ste.config.aborts() {
        return Err(ConfigFault::Abort);
    }
    let Some(s) = effective_ssid(ste, ssid, f)? else {
        return Ok(ResolvedConfig {
            ste: *ste,
            cd: None,
        });
    };
    let cd_pa = match ste_cd_split(ste) {
        None => ste.s1_context_ptr + STRUCT_BYTES * u64::from(s),
        Some(split) => {
            let l1 = mem.read(Pa(ste.s1_context_ptr + 8 * u64::from(s >> split)));
            match L1Cd::decode(l1) {
                Ok(d) if d.valid => l2_cd_address(d.l2ptr, split, s),
                _ => return Err(ConfigFault::BadSubstreamId),
            }
        }
    };
    let words = read_words::<8>(mem, cd_pa);
    let cd = Cd::decode_with(&words, f, &CdContext::from_ste(ste, false))
        .map_err(|_| ConfigFault::BadCd)?;
    Ok(ResolvedConfig {
        ste: *ste,
        cd: Some(cd),
    })
}

/// Adds to `cache` every structure the SMMU may read now for the stream
/// (`sid`, `ssid`): fresh reads from memory (latest or not-yet-visible old
/// values) and reads through held intermediate descriptors. Invalid or
/// ILLEGAL structures are never cached: they raise an event on each use
/// (SMMUv3 16.2: configuration errors are not cached). Returns how many
/// entries were added.
pub fn close_config(
    cache: &mut ConfigCache,
    mem: &PhysMem,
    strtab: &StrtabConfig,
    f: &SmmuFeatures,
    sid: u32,
    ssid: Option<u32>,
    step: u32,
) -> usize {
    let mut added = 0;
    if u64::from(sid) >> strtab.log2size != 0 {
        return 0;
    }
    // Level 1 of the Stream table.
    let mut ste_pas = Vec::new();
    match strtab.fmt {
        StrtabFmt::Linear => ste_pas.extend(ste_address(strtab, sid, None).ok()),
        StrtabFmt::TwoLevel { split } => {
            let index = sid >> split;
            let pa = strtab.base + 8 * u64::from(index);
            for [desc] in versions::<1>(mem, pa) {
                if ste_address(strtab, sid, Some(desc)).is_ok() {
                    added += usize::from(cache.insert(CfgEntry::L1Std { index, pa, desc }, step));
                }
            }
            for e in
                cache.matching(|e| matches!(e, CfgEntry::L1Std { index: i, .. } if *i == index))
            {
                if let CfgEntry::L1Std { desc, .. } = e {
                    ste_pas.extend(ste_address(strtab, sid, Some(desc)).ok());
                }
            }
        }
    }
    ste_pas.sort_unstable();
    ste_pas.dedup();
    for pa in ste_pas {
        for words in versions::<8>(mem, pa) {
            if Ste::decode_with(&words, f).is_ok() {
                added += usize::from(cache.insert(CfgEntry::Ste { sid, pa, words }, step));
            }
        }
    }
    // CDs through every held STE.
    for (_, ste) in cache.stes(sid) {
        if ste.config.aborts() || !ste.config.stage1() {
            continue;
        }
        let Ok(Some(s)) = effective_ssid(&ste, ssid, f) else {
            continue;
        };
        let mut cd_pas = Vec::new();
        match ste_cd_split(&ste) {
            None => cd_pas.push(ste.s1_context_ptr + STRUCT_BYTES * u64::from(s)),
            Some(split) => {
                let index = s >> split;
                let pa = ste.s1_context_ptr + 8 * u64::from(index);
                for [desc] in versions::<1>(mem, pa) {
                    if L1Cd::decode(desc).is_ok_and(|d| d.valid) {
                        added += usize::from(cache.insert(
                            CfgEntry::L1Cd {
                                sid,
                                index,
                                pa,
                                desc,
                            },
                            step,
                        ));
                    }
                }
                // A held L1CD for this index, whatever table it came from:
                // the cache is indexed by StreamID and SubstreamID.
                for e in cache.matching(|e| {
                    matches!(e, CfgEntry::L1Cd { sid: s2, index: i, .. } if *s2 == sid && *i == index)
                }) {
                    if let CfgEntry::L1Cd { desc, .. } = e {
                        if let Ok(d) = L1Cd::decode(desc) {
                            cd_pas.push(l2_cd_address(d.l2ptr, split, s));
                        }
                    }
                }
            }
        }
        cd_pas.sort_unstable();
        cd_pas.dedup();
        for pa in cd_pas {
            for words in versions::<8>(mem, pa) {
                if Cd::decode_with(&words, f, &CdContext::from_ste(&ste, false)).is_ok() {
                    added += usize::from(cache.insert(
                        CfgEntry::Cd {
                            sid,
                            ssid: s,
                            pa,
                            words,
                        },
                        step,
                    ));
                }
            }
        }
    }
    added
}

/// Every configuration the SMMU may use for (`sid`, `ssid`): each held STE
/// combined with each held CD for the StreamID and effective SubstreamID
/// (the cache is looked up by those tags, so an old CD can meet a newer
/// STE). Requires [`close_config`] to have run.
pub fn held_configs(
    cache: &ConfigCache,
    f: &SmmuFeatures,
    sid: u32,
    ssid: Option<u32>,
) -> Vec<ResolvedConfig> {
    let mut out = Vec::new();
    for (_, ste) in cache.stes(sid) {
        if ste.config.aborts() {
            continue;
        }
        match effective_ssid(&ste, ssid, f) {
            Err(_) => {}
            Ok(None) => out.push(ResolvedConfig { ste, cd: None }),
            Ok(Some(s)) => {
                for (e, _) in cache.iter() {
                    if let CfgEntry::Cd {
                        sid: cs,
                        ssid: css,
                        words,
                        ..
                    } = e
                    {
                        if *cs == sid && *css == s {
                            if let Ok(cd) =
                                Cd::decode_with(words, f, &CdContext::from_ste(&ste, false))
                            {
                                out.push(ResolvedConfig { ste, cd: Some(cd) });
                            }
                        }
                    }
                }
            }
        }
    }
    // A stable order (devices try configurations in it); the Debug text
    // is the only total order the decoded structures have, so it is made
    // once per configuration and not at all for the usual single one.
    if out.len() > 1 {
        out.sort_by_cached_key(|c| format!("{c:?}"));
        out.dedup();
    }
    out
}

/// Which cached structures a CFGI command removes (SMMUv3 4.3).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CfgiScope {
    /// CMD_CFGI_STE (4.3.1): the STE and every CD and L1CD cached using the
    /// StreamID; with Leaf = 0 also the L1STD that locates it.
    Ste {
        /// StreamID.
        sid: u32,
        /// Leaf.
        leaf: bool,
    },
    /// CMD_CFGI_STE_RANGE / CMD_CFGI_ALL (4.3.2, 4.3.6): STEs, CDs, L1CDs
    /// and L1STDs of the aligned range `[first, last]`.
    SteRange {
        /// First StreamID.
        first: u32,
        /// Last StreamID.
        last: u32,
    },
    /// CMD_CFGI_CD (4.3.3): the CD of (StreamID, SubstreamID); with Leaf = 0
    /// also the L1CD that locates it.
    Cd {
        /// StreamID.
        sid: u32,
        /// SubstreamID.
        ssid: u32,
        /// Leaf.
        leaf: bool,
    },
    /// CMD_CFGI_CD_ALL (4.3.4): every CD and L1CD cached using the StreamID.
    CdAll {
        /// StreamID.
        sid: u32,
    },
}

impl CfgiScope {
    /// Whether the command is guaranteed to remove `e`. `split` is the
    /// Stream table SPLIT (for L1STD indices) and `cd_split_of` gives the
    /// L1CD split used for a StreamID's CD table, when 2-level.
    pub fn covers(&self, e: &CfgEntry, strtab_split: Option<u8>, cd_split: Option<u32>) -> bool {
        let l1_of = |sid: u32| strtab_split.map(|s| sid >> s);
        match (*self, *e) {
            (CfgiScope::Ste { sid, .. }, CfgEntry::Ste { sid: s, .. })
            | (CfgiScope::Ste { sid, .. }, CfgEntry::Cd { sid: s, .. })
            | (CfgiScope::Ste { sid, .. }, CfgEntry::L1Cd { sid: s, .. }) => s == sid,
            (CfgiScope::Ste { sid, leaf: false }, CfgEntry::L1Std { index, .. }) => {
                l1_of(sid) == Some(index)
            }
            (CfgiScope::Ste { leaf: true, .. }, CfgEntry::L1Std { .. }) => false,
            (CfgiScope::SteRange { first, last }, CfgEntry::L1Std { index, .. }) => {
                match strtab_split {
                    Some(s) => (first >> s) <= index && index <= (last >> s),
                    None => false,
                }
            }
            (CfgiScope::SteRange { first, last }, e) => {
                e.sid().is_some_and(|s| first <= s && s <= last)
            }
            (
                CfgiScope::Cd { sid, ssid, .. },
                CfgEntry::Cd {
                    sid: s, ssid: ss, ..
                },
            ) => s == sid && ss == ssid,
            (
                CfgiScope::Cd {
                    sid,
                    ssid,
                    leaf: false,
                },
                CfgEntry::L1Cd { sid: s, index, .. },
            ) => s == sid && cd_split.is_some_and(|sp| ssid >> sp == index),
            (CfgiScope::CdAll { sid }, CfgEntry::Cd { sid: s, .. })
            | (CfgiScope::CdAll { sid }, CfgEntry::L1Cd { sid: s, .. }) => s == sid,
            _ => false,
        }
    }
}

/// The L1CD split of the CD table a held STE for `sid` uses (if 2-level).
pub fn cd_split_for(cache: &ConfigCache, sid: u32) -> Option<u32> {
    cache
        .stes(sid)
        .into_iter()
        .find_map(|(_, s)| ste_cd_split(&s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Granule;
    use crate::mem::Pfn;

    fn put(mem: &mut PhysMem, pa: u64, words: &[u64]) {
        for (i, w) in words.iter().enumerate() {
            mem.write(Pa(pa + 8 * i as u64), *w).unwrap();
        }
    }

    #[test]
    fn linear_lookup_and_bad_streamid() {
        let mut mem = PhysMem::new(Pfn(0x100), 16);
        let st = StrtabConfig {
            base: 0x10_0000,
            log2size: 4,
            fmt: StrtabFmt::Linear,
        };
        put(
            &mut mem,
            0x10_0000 + 64 * 3,
            &Ste::stage1(0x10_1000).encode(),
        );
        put(
            &mut mem,
            0x10_1000,
            &Cd::new(5, 0x10_2000, Granule::K4).encode(),
        );
        let f = SmmuFeatures::MODEL;
        let c = lookup(&mem, &st, &f, 3, None).unwrap();
        assert_eq!(c.cd.unwrap().asid, 5);
        assert_eq!(
            lookup(&mem, &st, &f, 16, None),
            Err(ConfigFault::BadStreamId)
        );
        assert_eq!(lookup(&mem, &st, &f, 2, None), Err(ConfigFault::BadSte));
        assert_eq!(
            lookup(&mem, &st, &f, 3, Some(1)),
            Err(ConfigFault::BadSubstreamId)
        );
    }

    #[test]
    fn two_level_stream_and_cd_tables() {
        let mut mem = PhysMem::new(Pfn(0x100), 16);
        let st = StrtabConfig {
            base: 0x10_0000,
            log2size: 16,
            fmt: StrtabFmt::TwoLevel { split: 8 },
        };
        // SID 0x105: L1 index 1, span 2 -> 2 STEs, low bits 5 out of range.
        let l1 = L1Std {
            span: 2,
            l2ptr: 0x10_1000,
        };
        mem.write(Pa(0x10_0008), l1.encode()).unwrap();
        let f = SmmuFeatures::MODEL;
        assert_eq!(
            lookup(&mem, &st, &f, 0x105, None),
            Err(ConfigFault::BadStreamId)
        );
        let mut ste = Ste::stage1(0x10_2000);
        ste.s1_fmt = S1Fmt::TwoLevel4K;
        ste.s1_cd_max = 8;
        put(&mut mem, 0x10_1000 + 64, &ste.encode());
        // SSID 0x45: L1CD index 1 (split 6), L2 index 5.
        let l1cd = L1Cd {
            valid: true,
            l2ptr: 0x10_3000,
        };
        mem.write(Pa(0x10_2008), l1cd.encode()).unwrap();
        assert_eq!(
            lookup(&mem, &st, &f, 0x101, Some(0x45)),
            Err(ConfigFault::BadCd)
        );
        put(
            &mut mem,
            0x10_3000 + 64 * 5,
            &Cd::new(9, 0x10_4000, Granule::K4).encode(),
        );
        assert_eq!(
            lookup(&mem, &st, &f, 0x101, Some(0x45))
                .unwrap()
                .cd
                .unwrap()
                .asid,
            9
        );
        assert_eq!(
            lookup(&mem, &st, &f, 0x101, Some(0x85)),
            Err(ConfigFault::BadSubstreamId),
            "L1CD[2] is invalid"
        );
        assert_eq!(
            lookup(&mem, &st, &f, 0x101, Some(0x100)),
            Err(ConfigFault::BadSubstreamId),
            "beyond S1CDMax"
        );
        assert_eq!(
            lookup(&mem, &st, &f, 0x101, None),
            Err(ConfigFault::StreamDisabled)
        );
    }
}
