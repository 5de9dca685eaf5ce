//! TLB entries (leaf, walk-cache, combined) and invalidation scopes.
//!
//! One entry type serves the CPU TLB, the SMMU IOTLB and device ATCs, so
//! that one scope predicate ([`InvalScope::covers`]) encodes the Arm rules
//! for every TLBI, SMMU TLBI command and ATC_INV.

use crate::addr::{AddrRange, Granule, InputAddr, InputRange, Ipa, OutputAddr, Pa, Va};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What an entry translates.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Stage 1 only: VA -> PA (no stage 2) or VA -> IPA (nested, kept separately).
    S1,
    /// Combined stage 1 + stage 2: VA -> PA of a nested walk ("structures
    /// combining stage 1 and stage 2 information", Arm ARM D8.17; D8.16.3.4,
    /// RZVRZW).
    Combined,
    /// Stage 2 only: IPA -> PA.
    S2,
}

/// Leaf translation or cached table pointer (walk-cache / intermediate entry).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// A page or block translation.
    Leaf,
    /// A table descriptor: lets a walk resume at the next level without
    /// reading the levels above ("intermediate TLB caching structures", Arm
    /// ARM D8.16, RSQBCS; D8.17, RRVJDB and RZYZYK: indexed by the IA).
    Walk,
}

/// The translation regime an entry belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Regime {
    /// EL1&0 (guest or host user/kernel), tagged by VMID (Arm ARM D8.16.3.1,
    /// RQNPQX).
    El10,
    /// EL2 (or EL2&0 with E2H), not tagged by VMID; SMMU TLBI_EL2_*. (TLBs
    /// need not tell EL2 and EL2&0 entries apart: Arm ARM D8.17, RNWYRD.)
    El2,
}

/// Permissions of a leaf entry, already combined across stages and table
/// attributes, as the TLB holds them. Arm lets a TLB cache an entry whose
/// permission check failed (Arm ARM D8.15.1.5, RJVXRH), so these may forbid
/// the access.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Perms {
    /// Privileged (EL1) reads allowed.
    pub read: bool,
    /// Privileged writes allowed.
    pub write: bool,
    /// Unprivileged (EL0) reads allowed (stage 1 AP\[1\]).
    pub user: bool,
    /// Unprivileged execute never.
    pub uxn: bool,
    /// Privileged execute never.
    pub pxn: bool,
    /// Writable once the hardware sets the dirty state (DBM, recorded only).
    pub dbm: bool,
}

/// A memory access to be checked against a translation.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Access {
    /// A write (else a read).
    pub write: bool,
    /// Made at EL0 / as an unprivileged transaction.
    pub user: bool,
}

impl Perms {
    /// Whether `access` is permitted (Arm ARM D8.4.1.2.1, Table D8-63, stage-1
    /// AP\[2:1\]; D8.4.2.1.1, Table D8-76, stage-2 S2AP, where a write-only page
    /// permits writes; D8.4.3 for both stages).
    #[inline]
    pub fn allows(self, access: Access) -> bool {
        (!access.user || self.user) && if access.write { self.write } else { self.read }
    }
}

/// The addresses one entry maps, typed by its stage: the stage of a
/// [`TlbEntry`] is read off its mapping, so an entry cannot hold an IPA where
/// a VA is meant.
///
/// `output` is the leaf's output base, or for a walk entry the address of
/// the next-level table. A stage-1 output is an IPA: in a nested context
/// stage 2 translates it (Arm ARM D8.2.1, RBTTHB; D8.3: an EL1&0 stage-1
/// Table descriptor holds the IPA of the next-level table); where no stage
/// 2 applies it is the PA ([`Ipa::flat_pa`]). The entry does not record
/// which: that is a property of the context that uses it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mapping {
    /// Stage 1: VA -> IPA.
    S1 {
        /// Base VA, aligned to the entry's span.
        input: Va,
        /// Output IPA, or the IPA of the next-level table.
        output: Ipa,
    },
    /// Combined stage 1+2: VA -> PA (leaves only).
    Combined {
        /// Base VA, aligned to the entry's span.
        input: Va,
        /// Output PA.
        output: Pa,
    },
    /// Stage 2: IPA -> PA.
    S2 {
        /// Base IPA, aligned to the entry's span.
        input: Ipa,
        /// Output PA, or the PA of the next-level table.
        output: Pa,
    },
}

impl Mapping {
    /// The stage of an entry with this mapping.
    #[inline]
    pub const fn stage(self) -> Stage {
        match self {
            Mapping::S1 { .. } => Stage::S1,
            Mapping::Combined { .. } => Stage::Combined,
            Mapping::S2 { .. } => Stage::S2,
        }
    }

    /// For code generic over the stage (the walker reads one descriptor
    /// format for both stages): `input` and `output` taken in the address
    /// spaces `stage` gives them.
    #[inline]
    pub(crate) const fn of_stage(stage: Stage, input: u64, output: u64) -> Mapping {
        match stage {
            Stage::S1 => Mapping::S1 {
                input: Va(input),
                output: Ipa(output),
            },
            Stage::Combined => Mapping::Combined {
                input: Va(input),
                output: Pa(output),
            },
            Stage::S2 => Mapping::S2 {
                input: Ipa(input),
                output: Pa(output),
            },
        }
    }

    #[inline]
    const fn raw(self) -> (u64, u64) {
        match self {
            Mapping::S1 { input, output } => (input.0, output.0),
            Mapping::Combined { input, output } => (input.0, output.0),
            Mapping::S2 { input, output } => (input.0, output.0),
        }
    }
}

/// One TLB, walk-cache or ATC entry.
///
/// `input` and `span_shift` give the naturally aligned input range the entry
/// covers: for a leaf the block or page, for a walk entry the span of the
/// table descriptor (so a level-2 walk entry with 4K covers 2 MiB).
///
/// The field order is the sort order of may-hold sets: regime, VMID, stage,
/// ASID, span, input. Every invalidation scope is then a few contiguous key
/// ranges, so removing entries costs time in proportion to what is removed.
///
/// The addresses are typed by the stage ([`Mapping`]): a VA in and an IPA
/// out at stage 1, a VA in and a PA out for a combined entry, an IPA in and
/// a PA out at stage 2. They are stored as raw `u64`s beside the stage,
/// private, and built and read through [`TlbEntry::new`] and
/// [`TlbEntry::mapping`] (or the `input_*` / `output_*` accessors). This
/// keeps the entry as small as it was (40 bytes; typed enum fields would
/// add a tag each and duplicate what the stage already says) and the
/// derived order exactly the key order above, which the may-hold set's
/// range queries rely on; and since `stage`, `input` and `output` can only
/// change together, no code can put an IPA where a VA is meant.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TlbEntry {
    /// Translation regime.
    pub regime: Regime,
    /// VMID tag (0 where the regime has none).
    pub vmid: u16,
    /// What it translates; determines the spaces of `input` and `output`.
    stage: Stage,
    /// ASID tag; `None` for a global (nG = 0) stage-1 leaf and for stage 2
    /// (Arm ARM D8.16.3.1, RQGKGF; walk entries are non-global, RCHVGJ).
    pub asid: Option<u16>,
    /// log2 of the input span covered.
    pub span_shift: u8,
    /// Base input address (VA, or IPA for stage 2), aligned to the span.
    input: u64,
    /// Lookup level of the descriptor the entry was made from.
    pub level: u8,
    /// Leaf or table pointer.
    pub kind: EntryKind,
    /// Granule of the tables it came from.
    pub granule: Granule,
    /// Leaf: output base (IPA for stage 1, else PA). Walk: address of the
    /// next-level table (an IPA for stage 1).
    output: u64,
    /// Leaf permissions (all false for walk entries).
    pub perms: Perms,
}

// The typed addresses cost nothing: an entry stays 40 bytes.
const _: () = assert!(std::mem::size_of::<TlbEntry>() == 40);

impl TlbEntry {
    /// An entry of `kind` made from a descriptor at `level` of `granule`
    /// tables, mapping `map`; its span is the descriptor's
    /// ([`Granule::level_shift`]). Untagged: EL1&0, VMID 0, no ASID (see
    /// [`TlbEntry::tagged`]); no permissions (see [`TlbEntry::with_perms`]).
    #[inline]
    pub const fn new(kind: EntryKind, map: Mapping, level: u8, granule: Granule) -> TlbEntry {
        let (input, output) = map.raw();
        TlbEntry {
            regime: Regime::El10,
            vmid: 0,
            stage: map.stage(),
            asid: None,
            span_shift: granule.level_shift(level) as u8,
            input,
            level,
            kind,
            granule,
            output,
            perms: Perms {
                read: false,
                write: false,
                user: false,
                uxn: false,
                pxn: false,
                dbm: false,
            },
        }
    }

    /// A leaf entry: [`TlbEntry::new`] of [`EntryKind::Leaf`].
    #[inline]
    pub const fn leaf(map: Mapping, level: u8, granule: Granule) -> TlbEntry {
        TlbEntry::new(EntryKind::Leaf, map, level, granule)
    }

    /// A walk-cache entry: [`TlbEntry::new`] of [`EntryKind::Walk`].
    #[inline]
    pub const fn walk(map: Mapping, level: u8, granule: Granule) -> TlbEntry {
        TlbEntry::new(EntryKind::Walk, map, level, granule)
    }

    /// This entry with the given tags.
    #[inline]
    pub const fn tagged(self, regime: Regime, vmid: u16, asid: Option<u16>) -> TlbEntry {
        TlbEntry {
            regime,
            vmid,
            asid,
            ..self
        }
    }

    /// This entry with the given permissions.
    #[inline]
    pub const fn with_perms(self, perms: Perms) -> TlbEntry {
        TlbEntry { perms, ..self }
    }

    /// This entry covering `1 << span_shift` input bytes.
    #[inline]
    pub const fn with_span(self, span_shift: u8) -> TlbEntry {
        TlbEntry { span_shift, ..self }
    }

    /// This entry with another mapping (and so possibly another stage), its
    /// other fields kept.
    #[inline]
    pub const fn with_mapping(self, map: Mapping) -> TlbEntry {
        let (input, output) = map.raw();
        TlbEntry {
            stage: map.stage(),
            input,
            output,
            ..self
        }
    }

    /// The smallest (`hi` false) or largest (`hi` true) possible entry with
    /// the given key prefix, for range queries over sets kept in key order.
    /// Not a translation: its addresses are search bounds.
    pub(crate) const fn bound(
        regime: Regime,
        vmid: u16,
        stage: Stage,
        asid: Option<u16>,
        span: u8,
        input: u64,
        hi: bool,
    ) -> TlbEntry {
        TlbEntry {
            regime,
            vmid,
            stage,
            asid,
            span_shift: span,
            input,
            level: if hi { u8::MAX } else { 0 },
            kind: if hi { EntryKind::Walk } else { EntryKind::Leaf },
            granule: if hi { Granule::K64 } else { Granule::K4 },
            output: if hi { u64::MAX } else { 0 },
            perms: Perms {
                read: hi,
                write: hi,
                user: hi,
                uxn: hi,
                pxn: hi,
                dbm: hi,
            },
        }
    }

    /// What it translates.
    #[inline]
    pub const fn stage(&self) -> Stage {
        self.stage
    }

    /// The addresses it maps, typed by its stage.
    #[inline]
    pub const fn mapping(&self) -> Mapping {
        Mapping::of_stage(self.stage, self.input, self.output)
    }

    /// Base input address: a VA for stage 1 and combined entries, an IPA for
    /// stage 2.
    #[inline]
    pub const fn input(&self) -> InputAddr {
        match self.stage {
            Stage::S1 | Stage::Combined => InputAddr::Va(Va(self.input)),
            Stage::S2 => InputAddr::Ipa(Ipa(self.input)),
        }
    }

    /// Base input VA of a stage-1 or combined entry.
    #[inline]
    pub const fn input_va(&self) -> Option<Va> {
        match self.input() {
            InputAddr::Va(a) => Some(a),
            InputAddr::Ipa(_) => None,
        }
    }

    /// Base input IPA of a stage-2 entry.
    #[inline]
    pub const fn input_ipa(&self) -> Option<Ipa> {
        match self.input() {
            InputAddr::Ipa(a) => Some(a),
            InputAddr::Va(_) => None,
        }
    }

    /// Output base, or the next-level table for a walk entry: an IPA for
    /// stage 1, else a PA.
    #[inline]
    pub const fn output(&self) -> OutputAddr {
        match self.stage {
            Stage::S1 => OutputAddr::Ipa(Ipa(self.output)),
            Stage::Combined | Stage::S2 => OutputAddr::Pa(Pa(self.output)),
        }
    }

    /// Output PA (or next-level table PA) of a stage-2 or combined entry.
    #[inline]
    pub const fn output_pa(&self) -> Option<Pa> {
        match self.output() {
            OutputAddr::Pa(a) => Some(a),
            OutputAddr::Ipa(_) => None,
        }
    }

    /// Output IPA (or next-level table IPA) of a stage-1 entry.
    #[inline]
    pub const fn output_ipa(&self) -> Option<Ipa> {
        match self.output() {
            OutputAddr::Ipa(a) => Some(a),
            OutputAddr::Pa(_) => None,
        }
    }

    /// The input range this entry translates, in its input space.
    #[inline]
    pub const fn input_range(&self) -> InputRange {
        InputRange::span(self.input(), self.span_shift as u32)
    }

    /// The output addresses a leaf maps, in its output space, without the
    /// space (`[output, output + span)`).
    #[inline]
    pub const fn output_span(&self) -> AddrRange {
        AddrRange::span(self.output, self.span_shift as u32)
    }

    /// For a leaf, the output address of `addr`, which it must cover (else
    /// `None`, as for an address of the other input space).
    #[inline]
    pub fn translate(&self, addr: InputAddr) -> Option<OutputAddr> {
        if !self.input_range().contains(addr) {
            return None;
        }
        let out = self.output + (addr.get() - self.input);
        Some(match self.output() {
            OutputAddr::Ipa(_) => OutputAddr::Ipa(Ipa(out)),
            OutputAddr::Pa(_) => OutputAddr::Pa(Pa(out)),
        })
    }

    /// For a stage-2 leaf, the PA of `ipa`, which it must cover.
    #[inline]
    pub fn translate_ipa(&self, ipa: Ipa) -> Option<Pa> {
        match self.translate(InputAddr::Ipa(ipa)) {
            Some(OutputAddr::Pa(pa)) => Some(pa),
            _ => None,
        }
    }
}

impl fmt::Display for TlbEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            EntryKind::Leaf => "leaf",
            EntryKind::Walk => "walk-cache",
        };
        let stage = match self.stage {
            Stage::S1 => "stage-1",
            Stage::S2 => "stage-2",
            Stage::Combined => "stage-1+2",
        };
        let input = if self.stage == Stage::S2 { "IPA" } else { "VA" };
        write!(
            f,
            "{stage} {kind} L{} {input} {:#x}/{}",
            self.level,
            self.input,
            self.granule.name()
        )?;
        if self.regime == Regime::El2 {
            f.write_str(" EL2")?;
        }
        match self.asid {
            Some(a) => write!(f, " ASID {a}")?,
            None if self.stage != Stage::S2 && self.kind == EntryKind::Leaf => {
                f.write_str(" global")?
            }
            None => {}
        }
        if self.regime == Regime::El10 {
            write!(f, " VMID {}", self.vmid)?;
        }
        match self.kind {
            EntryKind::Leaf => {
                let p = self.perms;
                let rw = match (p.read, p.write) {
                    (true, true) => "rw",
                    (true, false) => "ro",
                    (false, true) => "wo",
                    (false, false) => "none",
                };
                write!(
                    f,
                    " -> {:#x} {rw}{}",
                    self.output,
                    if p.user { " user" } else { "" }
                )
            }
            EntryKind::Walk => write!(f, " -> table {:#x}", self.output),
        }
    }
}

/// Which stages an invalidation reaches.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StageSel {
    /// Stage-1-only entries.
    pub s1: bool,
    /// Stage-2-only entries.
    pub s2: bool,
    /// Combined stage-1+2 entries.
    pub combined: bool,
}

impl StageSel {
    /// Stage 1 and combined: what a by-VA / by-ASID / VMALL stage-1 operation reaches.
    pub const STAGE1: StageSel = StageSel {
        s1: true,
        s2: false,
        combined: true,
    };
    /// Stage 2 only: IPAS2* and TLBI_S2_IPA leave combined entries
    /// (Arm ARM D8.17.5.4, IPAS2: "not required to invalidate TLB entries
    /// that combine stage 1 and stage 2"; D8.17.6.1; SMMUv3 4.4.4).
    pub const STAGE2: StageSel = StageSel {
        s1: false,
        s2: true,
        combined: false,
    };
    /// Nothing: the scope of an invalidation taken to remove no entry (a
    /// malformed TLBI operand, see `Tlbi::malformed_scope`).
    pub const NONE: StageSel = StageSel {
        s1: false,
        s2: false,
        combined: false,
    };
    /// Everything.
    pub const ALL: StageSel = StageSel {
        s1: true,
        s2: true,
        combined: true,
    };

    /// Whether entries of `stage` are reached.
    #[inline]
    pub fn selects(self, stage: Stage) -> bool {
        match stage {
            Stage::S1 => self.s1,
            Stage::S2 => self.s2,
            Stage::Combined => self.combined,
        }
    }
}

/// Which ASIDs an invalidation reaches.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AsidSel {
    /// Every ASID, global entries included (VAA*, VMALL*, ALL).
    Any,
    /// Entries tagged with this ASID; global leaves too only if `with_global`
    /// (by-VA forms hit global entries, ASIDE1 does not: Arm ARM D8.17.5.4,
    /// types VA, VAL and ASID; C5.5.10).
    Only {
        /// The ASID.
        asid: u16,
        /// Whether global (nG = 0) leaves are also reached.
        with_global: bool,
    },
}

/// Exactly what one invalidation reaches, decoded from an instruction or a
/// command. An entry is removed iff [`InvalScope::covers`] holds for it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InvalScope {
    /// Regime reached.
    pub regime: Regime,
    /// Stages reached.
    pub stages: StageSel,
    /// VMID reached; `None` for every VMID (ALLE1, TLBI_NSNH_ALL; Arm ARM
    /// D8.17.5.4, type ALL: "with any VMID").
    pub vmid: Option<u16>,
    /// ASIDs reached.
    pub asid: AsidSel,
    /// Input addresses reached; `None` for all. The range names its space:
    /// VAs for by-VA operations (stage-1 and combined entries), IPAs for
    /// IPAS2 and TLBI_S2_IPA (stage-2 entries). An entry is reached when its
    /// span overlaps the range in the same space (Arm ARM D8.17.5.2: entries
    /// that translate one or more addresses within the range).
    pub range: Option<InputRange>,
    /// Granule the operation names (range TG, or the TTL hint's TG): entries
    /// from tables of another granule need not be removed (Arm ARM
    /// D8.17.5.2, RXKMMX; D8.17.5.3, RSQXYZ). `None`: any.
    pub granule: Option<Granule>,
    /// Last-level forms (VALE1, Leaf = 1): walk-cache entries stay (Arm ARM
    /// D8.17.5.4, types VAL and VAAL: "from the final lookup level").
    pub leaf_only: bool,
    /// TTL level hint. The invalidation promises to remove leaves at this
    /// level and walk entries above it only; others may stay (Arm ARM
    /// D8.17.5.3, RSQXYZ: with an incorrect TTL no entry need be removed).
    pub ttl_level: Option<u8>,
}

/// Why an invalidation does not remove an entry: the one scope rule,
/// answered in words a report can use.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Miss {
    /// Another translation regime.
    Regime,
    /// A stage the operation does not reach (IPAS2 leaves stage-1 and
    /// combined entries; stage-1 forms leave stage-2-only entries).
    Stage,
    /// Another VMID.
    Vmid,
    /// Another ASID, or a global entry that an ASID form does not reach.
    Asid,
    /// Outside the operation's address range.
    Range,
    /// The operation names another granule (range TG or TTL's TG).
    Granule,
    /// A last-level form keeps walk-cache entries.
    LeafOnly,
    /// The TTL hint names level `hint`, which does not reach the entry.
    Ttl {
        /// The level the hint names.
        hint: u8,
    },
}

impl Miss {
    /// Whether the operation was meant for the entry's tags and addresses:
    /// it missed only through its form (leaf-only, a level or granule hint),
    /// the misses a report should blame.
    pub const fn near(self) -> bool {
        matches!(self, Miss::Granule | Miss::LeafOnly | Miss::Ttl { .. })
    }
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Miss::Regime => f.write_str("it reaches another translation regime"),
            Miss::Stage => f.write_str("it does not reach entries of that stage"),
            Miss::Vmid => f.write_str("it names another VMID"),
            Miss::Asid => f.write_str("it names another ASID (or the entry is global)"),
            Miss::Range => f.write_str("the entry is outside its address range"),
            Miss::Granule => f.write_str("it names another granule than the entry's tables"),
            Miss::LeafOnly => f.write_str("a last-level (leaf-only) form keeps walk-cache entries"),
            Miss::Ttl { hint } => write!(
                f,
                "its TTL hint names level {hint}, which does not reach the entry"
            ),
        }
    }
}

impl InvalScope {
    /// Whether this invalidation is guaranteed to remove `e`.
    #[inline]
    pub fn covers(&self, e: &TlbEntry) -> bool {
        self.reach(e).is_ok()
    }

    /// Removes `e`, or the first reason it need not (Arm ARM D8.17.5 for the
    /// CPU forms, SMMUv3 4.4 for the commands; each field's rule is cited
    /// where the field is declared).
    #[inline]
    pub fn reach(&self, e: &TlbEntry) -> Result<(), Miss> {
        if e.regime != self.regime {
            return Err(Miss::Regime);
        }
        if !self.stages.selects(e.stage) {
            return Err(Miss::Stage);
        }
        if let Some(v) = self.vmid {
            if e.regime == Regime::El10 && e.vmid != v {
                return Err(Miss::Vmid);
            }
        }
        if let AsidSel::Only { asid, with_global } = self.asid {
            if e.stage != Stage::S2 {
                match e.asid {
                    Some(a) if a == asid => {}
                    None if with_global => {}
                    _ => return Err(Miss::Asid),
                }
            }
        }
        if let Some(r) = self.range {
            if !r.overlaps(e.input_range()) {
                return Err(Miss::Range);
            }
        }
        if self.granule.is_some_and(|g| g != e.granule) {
            return Err(Miss::Granule);
        }
        match (e.kind, self.ttl_level) {
            (EntryKind::Walk, _) if self.leaf_only => Err(Miss::LeafOnly),
            (EntryKind::Walk, Some(t)) if e.level >= t => Err(Miss::Ttl { hint: t }),
            (EntryKind::Leaf, Some(t)) if e.level != t => Err(Miss::Ttl { hint: t }),
            _ => Ok(()),
        }
    }
}
