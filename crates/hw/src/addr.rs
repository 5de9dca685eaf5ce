//! Address types and translation granules.
//!
//! VA, IPA and PA are distinct types so that a stage-1 output can never be
//! used as a physical address by accident: in a nested walk the stage-1
//! descriptors hold IPAs that stage 2 must translate (Arm ARM D8.2.1,
//! RBTTHB; D8.3: with EL2 enabled, an EL1&0 stage-1 Table descriptor holds
//! the IPA of the next-level table).
//!
//! The types follow the stages as the Arm pseudocode names them:
//! `AArch64.FullTranslate` takes a VA, `AArch64.S1Translate` turns it into
//! an `ipa`, and `AArch64.S2Translate` turns that into the PA. Where a stage
//! does not apply its output equals its input, and the crossings are
//! spelled out: [`Va::flat_ipa`] (stage 1 disabled or bypassed) and
//! [`Ipa::flat_pa`] (no stage 2). An agent (CPU or device) always issues a
//! [`Va`]; IPAs appear as stage-2 inputs and stage-1 outputs only.
//!
//! Arm ARM references are to DDI 0487, issue M.a.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Copy, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw 64-bit value.
            #[inline]
            pub const fn get(self) -> u64 {
                self.0
            }
            /// This address rounded down to a multiple of `1 << shift`.
            #[inline]
            pub const fn align_down(self, shift: u32) -> Self {
                Self(self.0 & !((1u64 << shift) - 1))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{:#x}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address_type!(
    /// A virtual address: the input to a stage-1 translation.
    Va, "VA:"
);
address_type!(
    /// An intermediate physical address: stage-1 output, stage-2 input.
    Ipa, "IPA:"
);
address_type!(
    /// A physical address in simulated memory.
    Pa, "PA:"
);

// Each address is a bare `u64`.
const _: () = assert!(
    std::mem::size_of::<Va>() == 8
        && std::mem::size_of::<Ipa>() == 8
        && std::mem::size_of::<Pa>() == 8
);

impl Va {
    /// The IPA this VA is taken as when stage 1 is disabled or bypassed:
    /// the same value (Arm ARM pseudocode `AArch64.S1DisabledOutput`;
    /// SMMUv3 STE.Config stage-1 bypass, 5.2).
    #[inline]
    pub const fn flat_ipa(self) -> Ipa {
        Ipa(self.0)
    }
}

impl Ipa {
    /// The PA this IPA is taken as where no stage 2 translates it: the same
    /// value (Arm ARM pseudocode `AArch64.FullTranslate` returns the stage-1
    /// output as the PA outside EL1&0 with EL2 enabled; `AArch64.S2Translate`
    /// returns it unchanged with stage 2 disabled; SMMUv3 stage-2 bypass).
    #[inline]
    pub const fn flat_pa(self) -> Pa {
        Pa(self.0)
    }
}

/// The input address of a translation or of a TLB entry: a VA (stage 1 and
/// combined stage 1+2) or an IPA (stage 2 alone).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputAddr {
    /// A stage-1 input.
    Va(Va),
    /// A stage-2 input.
    Ipa(Ipa),
}

impl InputAddr {
    /// The raw 64-bit value, whatever the space.
    #[inline]
    pub const fn get(self) -> u64 {
        match self {
            InputAddr::Va(a) => a.0,
            InputAddr::Ipa(a) => a.0,
        }
    }
}

impl From<Va> for InputAddr {
    fn from(a: Va) -> InputAddr {
        InputAddr::Va(a)
    }
}

impl From<Ipa> for InputAddr {
    fn from(a: Ipa) -> InputAddr {
        InputAddr::Ipa(a)
    }
}

impl fmt::Debug for InputAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputAddr::Va(a) => a.fmt(f),
            InputAddr::Ipa(a) => a.fmt(f),
        }
    }
}

/// The output address of a TLB entry or a stage: an IPA (stage 1) or a PA
/// (stage 2, and combined stage 1+2).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputAddr {
    /// A stage-1 output.
    Ipa(Ipa),
    /// A final output.
    Pa(Pa),
}

impl OutputAddr {
    /// The raw 64-bit value, whatever the space.
    #[inline]
    pub const fn get(self) -> u64 {
        match self {
            OutputAddr::Ipa(a) => a.0,
            OutputAddr::Pa(a) => a.0,
        }
    }

    /// The PA this output names when no further stage applies: a PA as is,
    /// a stage-1 output IPA taken flat ([`Ipa::flat_pa`]). Callers that may
    /// see nested stage-1 outputs must set those aside first.
    #[inline]
    pub const fn flat_pa(self) -> Pa {
        match self {
            OutputAddr::Ipa(a) => a.flat_pa(),
            OutputAddr::Pa(a) => a,
        }
    }
}

impl fmt::Debug for OutputAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputAddr::Ipa(a) => a.fmt(f),
            OutputAddr::Pa(a) => a.fmt(f),
        }
    }
}

/// A translation granule (Arm ARM D8.1.1, RZVQXW): the page size and, with
/// it, the table geometry: each level resolves `shift - 3` address bits (a
/// full table is one granule of 8-byte descriptors, D8.2.5.1).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Granule {
    /// 4 KiB pages; levels 0..=3; blocks at levels 1 (1 GiB) and 2 (2 MiB)
    /// (Arm ARM D8.2.8, Tables D8-16 and D8-17).
    #[serde(rename = "4k")]
    K4,
    /// 16 KiB pages; levels 0..=3 (level 0 resolves one bit); blocks at level 2 (32 MiB)
    /// (Arm ARM D8.2.9, Tables D8-26 and D8-27).
    #[serde(rename = "16k")]
    K16,
    /// 64 KiB pages; levels 1..=3; blocks at level 2 (512 MiB)
    /// (Arm ARM D8.2.10, Tables D8-35 and D8-36).
    #[serde(rename = "64k")]
    K64,
}

/// Input-address size the model implements: 48 bits (TnSZ = 16; the IA size
/// is 64 - TnSZ, Arm ARM D8.1.9, IGRZSP).
pub const INPUT_ADDRESS_BITS: u32 = 48;
/// Output-address size the model implements (ID_AA64MMFR0_EL1.PARange = 48 bits,
/// Arm ARM D8.1.6, Table D8-5; the VMSAv8-64 maximum without FEAT_LPA/LPA2,
/// D8.1.7, RQQQSJ).
pub const OUTPUT_ADDRESS_BITS: u32 = 48;

impl Granule {
    /// All three granules, smallest first.
    pub const ALL: [Granule; 3] = [Granule::K4, Granule::K16, Granule::K64];

    /// log2 of the page size.
    #[inline]
    pub const fn shift(self) -> u32 {
        match self {
            Granule::K4 => 12,
            Granule::K16 => 14,
            Granule::K64 => 16,
        }
    }

    /// Page size in bytes.
    #[inline]
    pub const fn size(self) -> u64 {
        1 << self.shift()
    }

    /// Address bits resolved per full level (a table holds `2^bits` descriptors).
    #[inline]
    pub const fn bits_per_level(self) -> u32 {
        self.shift() - 3
    }

    /// The first lookup level for a 48-bit input address at stage 1 (TnSZ =
    /// 16: Arm ARM D8.2.8.1 Table D8-18, D8.2.9.1 Table D8-28, D8.2.10.1
    /// Table D8-37): level 0 for 4K and 16K, level 1 for 64K.
    ///
    /// Stage 2 starts here too for 4K and 64K (D8.2.8.2 Table D8-21,
    /// D8.2.10.2 Table D8-39) but not for 16K: see [`Granule::s2_start_level`].
    #[inline]
    pub const fn start_level(self) -> u8 {
        match self {
            Granule::K4 | Granule::K16 => 0,
            Granule::K64 => 1,
        }
    }

    /// log2 of the address span one descriptor at `level` covers.
    #[inline]
    pub const fn level_shift(self, level: u8) -> u32 {
        self.shift() + (3 - level as u32) * self.bits_per_level()
    }

    /// The first lookup level of a stage-2 walk of a 48-bit IPA. Level 0 is
    /// a stage-1-only level for 16K unless VTCR_EL2.DS = 1 (FEAT_LPA2), so
    /// a 16K stage 2 starts at level 1 with two concatenated tables (Arm ARM
    /// DDI 0487M.a D8.2.9, Tables D8-26, D8-30 and D8-31); 4K and 64K start
    /// where stage 1 does.
    #[inline]
    pub const fn s2_start_level(self) -> u8 {
        match self {
            Granule::K4 => 0,
            Granule::K16 | Granule::K64 => 1,
        }
    }

    /// Number of descriptors in a table at `level` of a walk that starts at
    /// `start` for a 48-bit input: a full table below the start; at the
    /// start, 2^n entries for the n bits left, which is a partial table, or
    /// several concatenated tables for a 16K stage 2 (Arm ARM D8.2.5.1).
    #[inline]
    pub const fn table_entries(self, start: u8, level: u8) -> u64 {
        let lo = self.level_shift(level);
        let hi = if level == start {
            INPUT_ADDRESS_BITS
        } else {
            self.level_shift(level - 1)
        };
        1 << (hi - lo)
    }

    /// Number of descriptors in a stage-1 table at `level` (48-bit input).
    #[inline]
    pub const fn entries_at(self, level: u8) -> u64 {
        self.table_entries(self.start_level(), level)
    }

    /// Index of the descriptor for `addr` in the table at `level` of a walk
    /// that starts at `start`.
    #[inline]
    pub const fn index_from(self, start: u8, level: u8, addr: u64) -> u64 {
        (addr >> self.level_shift(level)) & (self.table_entries(start, level) - 1)
    }

    /// Index of the descriptor for `addr` in the stage-1 table at `level`.
    #[inline]
    pub const fn index(self, level: u8, addr: u64) -> u64 {
        self.index_from(self.start_level(), level, addr)
    }

    /// Whether a block descriptor is permitted at `level` with 48-bit
    /// output addresses (Arm ARM Tables D8-17, D8-27 and D8-36 in D8.2.8 to
    /// D8.2.10: 4K blocks at L1/L2, 16K and 64K at L2 only; a 4K L0 or 16K L1
    /// block needs TCR_ELx.DS = 1 (FEAT_LPA2), a 64K L1 block FEAT_LPA).
    #[inline]
    pub const fn block_allowed(self, level: u8) -> bool {
        matches!((self, level), (Granule::K4, 1) | (_, 2))
    }

    /// The TG encoding shared by TLBI range operands, TTL hints and SMMU
    /// commands: 4K = 0b01, 16K = 0b10, 64K = 0b11 (Arm ARM D8.17.5.2, Table
    /// D8-122, for range operands; D8.17.5.3, Table D8-123, TTL\[3:2\]).
    #[inline]
    pub const fn tg(self) -> u8 {
        match self {
            Granule::K4 => 1,
            Granule::K16 => 2,
            Granule::K64 => 3,
        }
    }

    /// The granule a TG encoding names; `None` for the reserved 0b00.
    #[inline]
    pub const fn from_tg(tg: u8) -> Option<Granule> {
        match tg {
            1 => Some(Granule::K4),
            2 => Some(Granule::K16),
            3 => Some(Granule::K64),
            _ => None,
        }
    }

    /// Short name used in reports and scenario files.
    pub const fn name(self) -> &'static str {
        match self {
            Granule::K4 => "4k",
            Granule::K16 => "16k",
            Granule::K64 => "64k",
        }
    }
}

impl fmt::Display for Granule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An inclusive address range `[first, last]`; inclusive so that a range
/// reaching the top of the 64-bit space needs no 65-bit end.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AddrRange {
    /// First address covered.
    pub first: u64,
    /// Last address covered.
    pub last: u64,
}

impl AddrRange {
    /// The whole 64-bit space.
    pub const ALL: AddrRange = AddrRange {
        first: 0,
        last: u64::MAX,
    };

    /// The naturally aligned span of `1 << shift` bytes containing `addr`.
    #[inline]
    pub const fn span(addr: u64, shift: u32) -> AddrRange {
        if shift >= 64 {
            return AddrRange::ALL;
        }
        let first = addr & !((1u64 << shift) - 1);
        AddrRange {
            first,
            last: first + ((1u64 << shift) - 1),
        }
    }

    /// `len` bytes starting at `first` (saturating at the top of the space).
    #[inline]
    pub const fn from_len(first: u64, len: u64) -> AddrRange {
        AddrRange {
            first,
            last: first.saturating_add(len.saturating_sub(1)),
        }
    }

    /// Whether the two ranges share at least one address.
    #[inline]
    pub const fn overlaps(self, other: AddrRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    /// Whether `addr` lies in the range.
    #[inline]
    pub const fn contains(self, addr: u64) -> bool {
        self.first <= addr && addr <= self.last
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x}]", self.first, self.last)
    }
}

/// A range of input addresses that names its address space: VAs (stage-1
/// and combined entries; by-VA invalidations) or IPAs (stage-2 entries;
/// IPAS2 invalidations). Ranges of different spaces never overlap.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputRange {
    /// Virtual addresses.
    Va(AddrRange),
    /// Intermediate physical addresses.
    Ipa(AddrRange),
}

impl InputRange {
    /// The naturally aligned span of `1 << shift` bytes containing `addr`,
    /// in `addr`'s space.
    #[inline]
    pub const fn span(addr: InputAddr, shift: u32) -> InputRange {
        match addr {
            InputAddr::Va(a) => InputRange::Va(AddrRange::span(a.0, shift)),
            InputAddr::Ipa(a) => InputRange::Ipa(AddrRange::span(a.0, shift)),
        }
    }

    /// The addresses, without their space.
    #[inline]
    pub const fn addrs(self) -> AddrRange {
        match self {
            InputRange::Va(r) | InputRange::Ipa(r) => r,
        }
    }

    /// `r` in this range's address space.
    #[inline]
    pub const fn same_space(self, r: AddrRange) -> InputRange {
        match self {
            InputRange::Va(_) => InputRange::Va(r),
            InputRange::Ipa(_) => InputRange::Ipa(r),
        }
    }

    /// Whether the two ranges are of one space and share an address.
    #[inline]
    pub const fn overlaps(self, other: InputRange) -> bool {
        match (self, other) {
            (InputRange::Va(a), InputRange::Va(b)) | (InputRange::Ipa(a), InputRange::Ipa(b)) => {
                a.overlaps(b)
            }
            _ => false,
        }
    }

    /// Whether `addr` is of this range's space and lies in it.
    #[inline]
    pub const fn contains(self, addr: InputAddr) -> bool {
        match (self, addr) {
            (InputRange::Va(r), InputAddr::Va(a)) => r.contains(a.0),
            (InputRange::Ipa(r), InputAddr::Ipa(a)) => r.contains(a.0),
            _ => false,
        }
    }
}

impl fmt::Display for InputRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputRange::Va(r) => write!(f, "VA {r}"),
            InputRange::Ipa(r) => write!(f, "IPA {r}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arm ARM D8.2.8, Table D8-16: 48-bit input, 4K granule: L0 resolves VA[47:39],
    /// L1 VA[38:30], L2 VA[29:21], L3 VA[20:12].
    #[test]
    fn four_k_geometry() {
        let g = Granule::K4;
        assert_eq!([0, 1, 2, 3].map(|l| g.level_shift(l)), [39, 30, 21, 12]);
        assert_eq!([0, 1, 2, 3].map(|l| g.entries_at(l)), [512; 4]);
    }

    /// 16K: L0 resolves VA[47] only (2 entries), then 11 bits per level
    /// (Arm ARM D8.2.9, Table D8-26).
    #[test]
    fn sixteen_k_geometry() {
        let g = Granule::K16;
        assert_eq!([0, 1, 2, 3].map(|l| g.level_shift(l)), [47, 36, 25, 14]);
        assert_eq!([0, 1, 2, 3].map(|l| g.entries_at(l)), [2, 2048, 2048, 2048]);
    }

    /// 64K: starts at L1 resolving VA[47:42] (64 entries), then 13 bits
    /// (Arm ARM D8.2.10, Table D8-35).
    #[test]
    fn sixty_four_k_geometry() {
        let g = Granule::K64;
        assert_eq!(g.start_level(), 1);
        assert_eq!([1, 2, 3].map(|l| g.level_shift(l)), [42, 29, 16]);
        assert_eq!([1, 2, 3].map(|l| g.entries_at(l)), [64, 8192, 8192]);
    }

    /// A 16K stage 2 starts at level 1 with two concatenated tables: its
    /// start table has 4096 entries indexed by IPA[47:36].
    #[test]
    fn sixteen_k_stage2_concatenates_two_level1_tables() {
        let g = Granule::K16;
        assert_eq!(g.s2_start_level(), 1);
        assert_eq!(g.table_entries(1, 1), 4096);
        assert_eq!(g.table_entries(1, 2), 2048);
        let ipa = 0x0000_da35_83ff_d234u64;
        assert_eq!(g.index_from(1, 1, ipa), ipa >> 36);
        assert_eq!(
            Granule::K4.table_entries(Granule::K4.s2_start_level(), 0),
            512
        );
        assert_eq!(
            Granule::K64.table_entries(Granule::K64.s2_start_level(), 1),
            64
        );
    }

    #[test]
    fn index_extracts_the_level_bits() {
        let va = 0x0000_7f12_3456_7000u64;
        assert_eq!(Granule::K4.index(0, va), (va >> 39) & 0x1ff);
        assert_eq!(Granule::K4.index(3, va), (va >> 12) & 0x1ff);
        assert_eq!(Granule::K16.index(0, va), (va >> 47) & 1);
        assert_eq!(Granule::K64.index(1, va), (va >> 42) & 0x3f);
    }

    #[test]
    fn input_ranges_of_different_spaces_never_meet() {
        let va = InputRange::span(Va(0x40_1234).into(), 12);
        let ipa = InputRange::span(Ipa(0x40_1234).into(), 12);
        assert_eq!(va.addrs(), ipa.addrs());
        assert!(va.overlaps(va) && ipa.overlaps(ipa));
        assert!(!va.overlaps(ipa) && !ipa.overlaps(va));
        assert!(va.contains(Va(0x40_1fff).into()) && !va.contains(Ipa(0x40_1fff).into()));
        assert_eq!(va.same_space(ipa.addrs()), va);
        assert_eq!(Va(5).flat_ipa().flat_pa(), Pa(5));
        assert_eq!(OutputAddr::Ipa(Ipa(7)).flat_pa(), Pa(7));
        assert_eq!(
            format!("{:?} {}", InputAddr::Ipa(Ipa(0x10)), va),
            "IPA:0x10 VA [0x401000, 0x401fff]"
        );
    }

    #[test]
    fn ranges_overlap_and_span() {
        let a = AddrRange::span(0x40_1234, 21);
        assert_eq!(
            a,
            AddrRange {
                first: 0x40_0000,
                last: 0x5f_ffff
            }
        );
        assert!(a.overlaps(AddrRange::from_len(0x5f_f000, 0x2000)));
        assert!(!a.overlaps(AddrRange::from_len(0x60_0000, 0x1000)));
        assert_eq!(AddrRange::span(5, 64), AddrRange::ALL);
    }
}
