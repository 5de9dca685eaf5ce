//! The may-hold set: every entry the architecture allows one agent to hold
//! right now (docs/design.md §2.1).
//!
//! An entry joins when a walk could have produced it (a non-faulting entry
//! may be cached at any time, by explicit or speculative walks: Arm ARM
//! DDI 0487M.a D8.16, RSQBCS); it leaves only when an invalidation that
//! covers it completes (TLBs need not stay coherent with the tables, D8.17
//! RFFWJK; D8.17.8, RLXHLD). Entries are kept in key order (see
//! [`TlbEntry`]) so that an invalidation visits only the key ranges its scope
//! can reach: the cost is proportional to what it removes, not to the size
//! of the set.

use super::entry::{AsidSel, EntryKind, InvalScope, Regime, Stage, TlbEntry};
use crate::addr::{InputAddr, InputRange};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Why an entry is holdable: the step that made it reachable and the
/// descriptor (or configuration word) it was read from.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Provenance {
    /// Scenario step that made the entry reachable.
    pub step: u32,
    /// Physical address of the descriptor the entry was made from.
    pub source: u64,
}

/// Answers of [`MayHold::covered`] kept per thread, by the address of the
/// set's storage (whose `Arc` the value holds) and the scope.
type CoveredMemo = std::collections::HashMap<
    (usize, InvalScope),
    (Arc<BTreeMap<TlbEntry, Provenance>>, Vec<TlbEntry>),
    rustc_hash::FxBuildHasher,
>;

/// Answers kept at most (then forgotten all at once: a set that is no
/// longer shared is never asked about again).
const COVERED_MAX: usize = 4096;

thread_local! {
    static COVERED: std::cell::RefCell<CoveredMemo> = std::cell::RefCell::default();
}

/// Every entry one agent may hold, with provenance.
///
/// Equality and hashing look at the entries only: two states that allow the
/// same entries behave the same, whatever history made them holdable.
///
/// The map is shared copy-on-write and its hash is maintained as entries
/// come and go, because the explorer clones and hashes whole machine states
/// at every transition while most transitions leave most sets unchanged.
#[derive(Clone, Debug, Default)]
pub struct MayHold {
    entries: Arc<BTreeMap<TlbEntry, Provenance>>,
    /// Wrapping sum of the entries' hashes: independent of insertion order,
    /// updated in O(1) per insert or removal.
    hash: u64,
    /// Bit `s` set if some entry with `span_shift == s` was ever inserted;
    /// lets a range invalidation probe only the spans that can exist.
    spans: u64,
}

impl PartialEq for MayHold {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.entries, &other.entries)
            || (self.entries.len() == other.entries.len()
                && self.entries.keys().eq(other.entries.keys()))
    }
}
impl Eq for MayHold {}

impl Hash for MayHold {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.entries.len());
        state.write_u64(self.hash);
    }
}

/// A well-mixed hash of one entry, for the order-independent set hash.
fn entry_hash(e: &TlbEntry) -> u64 {
    let mut fx = rustc_hash::FxHasher::default();
    e.hash(&mut fx);
    // SplitMix64 finaliser: spreads Fx's output so that sums do not cancel.
    let mut z = fx.finish();
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const STAGES: [Stage; 3] = [Stage::S1, Stage::Combined, Stage::S2];

impl MayHold {
    /// An empty set.
    pub fn new() -> MayHold {
        MayHold::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `other` shares this set's storage (so holds the same
    /// entries): a constant-time test for "the same set".
    pub fn shares(&self, other: &MayHold) -> bool {
        Arc::ptr_eq(&self.entries, &other.entries)
    }

    /// Adds `entry`; an entry already present keeps its earlier provenance.
    /// Returns whether it was new.
    pub fn insert(&mut self, entry: TlbEntry, prov: Provenance) -> bool {
        if self.entries.contains_key(&entry) {
            return false;
        }
        self.spans |= 1 << entry.span_shift;
        self.hash = self.hash.wrapping_add(entry_hash(&entry));
        Arc::make_mut(&mut self.entries).insert(entry, prov);
        true
    }

    /// Whether `entry` is in the set.
    pub fn contains(&self, entry: &TlbEntry) -> bool {
        self.entries.contains_key(entry)
    }

    /// Provenance of `entry`, if held.
    pub fn provenance(&self, entry: &TlbEntry) -> Option<Provenance> {
        self.entries.get(entry).copied()
    }

    /// All entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&TlbEntry, &Provenance)> {
        self.entries.iter()
    }

    /// Every entry tagged with `regime`, `vmid` and `stage`, whatever its
    /// ASID: one contiguous key range.
    pub fn block(
        &self,
        regime: Regime,
        vmid: u16,
        stage: Stage,
    ) -> impl Iterator<Item = (&TlbEntry, &Provenance)> {
        self.entries.range(
            TlbEntry::bound(regime, vmid, stage, None, 0, 0, false)
                ..=TlbEntry::bound(regime, vmid, stage, Some(u16::MAX), u8::MAX, u64::MAX, true),
        )
    }

    /// Leaf entries of `stage` that translate `input` for the given tags:
    /// the candidates an access may hit (stale ones included).
    ///
    /// Stage-1 and combined entries translate VAs, stage-2 entries IPAs: an
    /// address of the other space finds nothing (and is a caller's bug,
    /// asserted in debug builds). [`crate::vmsa::Context::access_input`]
    /// gives the address an access looks up.
    pub fn leaves_for(
        &self,
        regime: Regime,
        vmid: u16,
        stage: Stage,
        asid: Option<u16>,
        input: InputAddr,
    ) -> impl Iterator<Item = (&TlbEntry, &Provenance)> {
        let space_ok = matches!(
            (stage, input),
            (Stage::S2, InputAddr::Ipa(_)) | (Stage::S1 | Stage::Combined, InputAddr::Va(_))
        );
        debug_assert!(space_ok, "{stage:?} entries do not translate {input:?}");
        let input = input.get();
        let asids: [Option<u16>; 2] = match (stage, asid) {
            (Stage::S2, _) | (_, None) => [None, None],
            (_, Some(a)) => [None, Some(a)],
        };
        let spans = self.spans;
        let n_asids = match (space_ok, asids[0] == asids[1]) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => 2,
        };
        asids
            .into_iter()
            .take(n_asids)
            .flat_map(move |a| {
                (0..64u8)
                    .filter(move |s| spans & (1 << s) != 0)
                    .flat_map(move |s| {
                        let base = input & !((1u64 << s) - 1);
                        self.entries.range(
                            TlbEntry::bound(regime, vmid, stage, a, s, base, false)
                                ..=TlbEntry::bound(regime, vmid, stage, a, s, base, true),
                        )
                    })
            })
            .filter(|(e, _)| e.kind == EntryKind::Leaf)
    }

    /// Removes every entry `scope` covers and returns them with provenance.
    pub fn invalidate(&mut self, scope: &InvalScope) -> Vec<(TlbEntry, Provenance)> {
        let doomed = self.covered(scope);
        self.remove_entries(&doomed)
    }

    /// Removes those of `entries` still held; returns them with provenance.
    pub fn remove_entries(&mut self, entries: &[TlbEntry]) -> Vec<(TlbEntry, Provenance)> {
        if !entries.iter().any(|e| self.entries.contains_key(e)) {
            return Vec::new();
        }
        let map = Arc::make_mut(&mut self.entries);
        let removed: Vec<_> = entries
            .iter()
            .filter_map(|e| map.remove(e).map(|p| (*e, p)))
            .collect();
        for (e, _) in &removed {
            self.hash = self.hash.wrapping_sub(entry_hash(e));
        }
        removed
    }

    /// Every held entry `scope` covers, found by visiting only the key
    /// ranges the scope can reach.
    pub fn covered(&self, scope: &InvalScope) -> Vec<TlbEntry> {
        // The explorer asks this of the same few sets (shared from its
        // store) for the same few scopes in state after state: answers are
        // kept per (set storage, scope), the storage held so that its
        // address cannot be reused while the answer is kept.
        let key = (Arc::as_ptr(&self.entries) as usize, *scope);
        let hit = COVERED.with(|c| c.borrow().get(&key).map(|(_, v)| v.clone()));
        if let Some(v) = hit {
            return v;
        }
        let doomed = self.covered_uncached(scope);
        COVERED.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= COVERED_MAX {
                c.clear();
            }
            c.insert(key, (Arc::clone(&self.entries), doomed.clone()));
        });
        doomed
    }

    fn covered_uncached(&self, scope: &InvalScope) -> Vec<TlbEntry> {
        let mut doomed = Vec::new();
        let mut consider = |e: &TlbEntry, _: &Provenance| {
            if scope.covers(e) {
                doomed.push(*e);
            }
        };
        let regime = scope.regime;
        match scope.vmid {
            // All VMIDs: the whole regime block.
            None => {
                let lo = TlbEntry::bound(regime, 0, Stage::S1, None, 0, 0, false);
                let hi = TlbEntry::bound(
                    regime,
                    u16::MAX,
                    Stage::S2,
                    Some(u16::MAX),
                    u8::MAX,
                    u64::MAX,
                    true,
                );
                self.entries
                    .range(lo..=hi)
                    .for_each(|(e, p)| consider(e, p));
            }
            Some(vmid) => {
                let vmid = if regime == Regime::El10 { vmid } else { 0 };
                for stage in STAGES {
                    // Stages the scope does not reach, or of which nothing
                    // is held, need no search.
                    if !scope.stages.selects(stage)
                        || self.block(regime, vmid, stage).next().is_none()
                    {
                        continue;
                    }
                    // A range reaches only the entries of its space.
                    let range = match (scope.range, stage) {
                        (None, _) => None,
                        (Some(InputRange::Ipa(r)), Stage::S2)
                        | (Some(InputRange::Va(r)), Stage::S1 | Stage::Combined) => Some(r),
                        (Some(_), _) => continue,
                    };
                    let asids: &[Option<u16>] = match (stage, scope.asid) {
                        (Stage::S2, _) => &[None],
                        (
                            _,
                            AsidSel::Only {
                                asid,
                                with_global: true,
                            },
                        ) => &[None, Some(asid)],
                        (
                            _,
                            AsidSel::Only {
                                asid,
                                with_global: false,
                            },
                        ) => &[Some(asid)],
                        (_, AsidSel::Any) => &[],
                    };
                    if asids.is_empty() {
                        // Any ASID: the whole (regime, VMID, stage) block.
                        self.block(regime, vmid, stage)
                            .for_each(|(e, p)| consider(e, p));
                        continue;
                    }
                    for &asid in asids {
                        match range {
                            None => {
                                let lo = TlbEntry::bound(regime, vmid, stage, asid, 0, 0, false);
                                let hi = TlbEntry::bound(
                                    regime,
                                    vmid,
                                    stage,
                                    asid,
                                    u8::MAX,
                                    u64::MAX,
                                    true,
                                );
                                self.entries
                                    .range(lo..=hi)
                                    .for_each(|(e, p)| consider(e, p));
                            }
                            Some(r) => {
                                for s in (0..64u8).filter(|s| self.spans & (1 << s) != 0) {
                                    let first = r.first & !((1u64 << s) - 1);
                                    let lo =
                                        TlbEntry::bound(regime, vmid, stage, asid, s, first, false);
                                    let hi =
                                        TlbEntry::bound(regime, vmid, stage, asid, s, r.last, true);
                                    self.entries
                                        .range(lo..=hi)
                                        .for_each(|(e, p)| consider(e, p));
                                }
                            }
                        }
                    }
                }
            }
        }
        doomed
    }

    /// Removes every entry for which `pred` holds (configuration changes such
    /// as an ATC being disabled).
    pub fn remove_where(
        &mut self,
        mut pred: impl FnMut(&TlbEntry) -> bool,
    ) -> Vec<(TlbEntry, Provenance)> {
        let doomed: Vec<TlbEntry> = self.entries.keys().filter(|e| pred(e)).copied().collect();
        self.remove_entries(&doomed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{AddrRange, Granule, Ipa, Va};
    use crate::tlb::{Mapping, StageSel};

    fn leaf(
        asid: Option<u16>,
        vmid: u16,
        stage: Stage,
        input: u64,
        span: u8,
        level: u8,
    ) -> TlbEntry {
        let map = Mapping::of_stage(stage, input, 0x8000_0000 + input);
        TlbEntry::leaf(map, level, Granule::K4)
            .tagged(Regime::El10, vmid, asid)
            .with_span(span)
    }

    fn walk(asid: Option<u16>, input: u64, span: u8, level: u8) -> TlbEntry {
        let map = Mapping::S1 {
            input: Va(input),
            output: Ipa(0x10_0000),
        };
        TlbEntry::walk(map, level, Granule::K4)
            .tagged(Regime::El10, 0, asid)
            .with_span(span)
    }

    fn scope(asid: AsidSel, range: Option<InputRange>, leaf_only: bool) -> InvalScope {
        InvalScope {
            regime: Regime::El10,
            stages: StageSel::STAGE1,
            vmid: Some(0),
            asid,
            range,
            granule: None,
            leaf_only,
            ttl_level: None,
        }
    }

    const P: Provenance = Provenance { step: 0, source: 0 };

    #[test]
    fn a_kept_answer_is_never_given_for_a_changed_set() {
        let mut m = MayHold::new();
        let first = leaf(Some(1), 0, Stage::S1, 0x1000, 12, 3);
        m.insert(first, P);
        let all = scope(AsidSel::Any, None, false);
        assert_eq!(m.covered(&all), vec![first]);
        // Sharing storage with the kept answer, the set is copied on write.
        let second = leaf(Some(1), 0, Stage::S1, 0x2000, 12, 3);
        m.insert(second, P);
        assert_eq!(m.covered(&all), vec![first, second]);
        let copy = m.clone();
        m.remove_entries(&[first]);
        assert_eq!(m.covered(&all), vec![second]);
        assert_eq!(copy.covered(&all), vec![first, second]);
    }

    #[test]
    fn range_invalidation_reaches_blocks_that_start_before_the_range() {
        let mut m = MayHold::new();
        let block = leaf(Some(1), 0, Stage::S1, 0x20_0000, 21, 2);
        let page = leaf(Some(1), 0, Stage::S1, 0x40_0000, 12, 3);
        let other_asid = leaf(Some(2), 0, Stage::S1, 0x20_0000, 21, 2);
        for e in [block, page, other_asid] {
            m.insert(e, P);
        }
        let s = scope(
            AsidSel::Only {
                asid: 1,
                with_global: true,
            },
            Some(InputRange::Va(AddrRange::from_len(0x3f_f000, 0x1000))),
            false,
        );
        let gone: Vec<_> = m.invalidate(&s).into_iter().map(|(e, _)| e).collect();
        assert_eq!(gone, vec![block]);
        assert!(m.contains(&page) && m.contains(&other_asid));
    }

    #[test]
    fn leaf_only_keeps_walk_entries_and_global_rule_holds() {
        let mut m = MayHold::new();
        let w = walk(Some(1), 0, 21, 2);
        let global = leaf(None, 0, Stage::S1, 0x1000, 12, 3);
        m.insert(w, P);
        m.insert(global, P);
        let by_asid = scope(
            AsidSel::Only {
                asid: 1,
                with_global: false,
            },
            None,
            false,
        );
        assert_eq!(m.invalidate(&by_asid), vec![(w, P)]);
        assert!(m.contains(&global), "ASIDE1 leaves global entries");
        m.insert(w, P);
        let vale1 = scope(
            AsidSel::Only {
                asid: 1,
                with_global: true,
            },
            Some(InputRange::Va(AddrRange::from_len(0x1000, 0x1000))),
            true,
        );
        assert_eq!(m.invalidate(&vale1), vec![(global, P)]);
        assert!(m.contains(&w), "last-level forms keep walk-cache entries");
    }

    #[test]
    fn lookups_find_every_covering_leaf_of_the_right_tags() {
        let mut m = MayHold::new();
        let block = leaf(None, 3, Stage::S2, 0x20_0000, 21, 2);
        let page = leaf(None, 3, Stage::S2, 0x20_1000, 12, 3);
        m.insert(block, P);
        m.insert(page, P);
        m.insert(leaf(None, 4, Stage::S2, 0x20_1000, 12, 3), P);
        let hits: Vec<_> = m
            .leaves_for(Regime::El10, 3, Stage::S2, None, Ipa(0x20_1abc).into())
            .map(|(e, _)| *e)
            .collect();
        assert_eq!(hits.len(), 2);
        assert!(hits.contains(&block) && hits.contains(&page));
    }

    /// An IPA range reaches stage-2 entries only, a VA range stage-1 and
    /// combined entries only, even at equal numbers; a lookup by IPA finds
    /// stage-2 leaves.
    #[test]
    fn ranges_reach_only_entries_of_their_space() {
        let mut m = MayHold::new();
        let s1 = leaf(None, 3, Stage::S1, 0x20_0000, 12, 3);
        let combined = leaf(None, 3, Stage::Combined, 0x20_0000, 12, 3);
        let s2 = leaf(None, 3, Stage::S2, 0x20_0000, 12, 3);
        for e in [s1, combined, s2] {
            m.insert(e, P);
        }
        let page = AddrRange::from_len(0x20_0000, 0x1000);
        let every_stage = |range| InvalScope {
            stages: StageSel::ALL,
            vmid: Some(3),
            ..scope(AsidSel::Any, Some(range), false)
        };
        assert_eq!(m.covered(&every_stage(InputRange::Ipa(page))), vec![s2]);
        assert_eq!(
            m.covered(&every_stage(InputRange::Va(page))),
            vec![s1, combined]
        );
        let by_ipa: Vec<_> = m
            .leaves_for(Regime::El10, 3, Stage::S2, None, Ipa(0x20_0123).into())
            .map(|(e, _)| *e)
            .collect();
        assert_eq!(by_ipa, vec![s2]);
    }

    #[test]
    fn equality_ignores_provenance() {
        let e = leaf(Some(1), 0, Stage::S1, 0x1000, 12, 3);
        let (mut a, mut b) = (MayHold::new(), MayHold::new());
        a.insert(e, P);
        b.insert(e, Provenance { step: 9, source: 8 });
        assert_eq!(a, b);
    }

    #[test]
    fn remove_where_removes_and_clones_do_not_share_mutations() {
        let a = leaf(Some(1), 0, Stage::S1, 0x1000, 12, 3);
        let b = leaf(Some(2), 0, Stage::S1, 0x2000, 12, 3);
        let mut m = MayHold::new();
        m.insert(a, P);
        m.insert(b, P);
        let snapshot = m.clone();
        assert_eq!(m.remove_where(|e| e.asid == Some(1)), vec![(a, P)]);
        assert!(!m.contains(&a) && m.contains(&b));
        assert!(snapshot.contains(&a), "the clone keeps its own entries");
        assert_ne!(m, snapshot);
        let hash = |x: &MayHold| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            x.hash(&mut h);
            h.finish()
        };
        let mut again = m.clone();
        again.insert(a, P);
        assert_eq!(again, snapshot);
        assert_eq!(
            hash(&again),
            hash(&snapshot),
            "equal sets hash equally after mutation"
        );
    }
}
