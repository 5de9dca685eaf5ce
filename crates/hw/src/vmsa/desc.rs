//! VMSAv8-64 translation table descriptors (Arm ARM D8.3 and D8.3.1), stage 1
//! and stage 2, for the 4K, 16K and 64K granules with 48-bit addresses.
//! Arm ARM references are to DDI 0487, issue M.a.
//!
//! Model choices, all architecturally permitted configurations:
//! - no FEAT_LPA / FEAT_LPA2: output addresses come from bits\[47:granule\]
//!   (D8.3.1.2, Tables D8-52 and D8-53);
//! - hierarchical permissions disabled (TCR_ELx.HPD = 1, FEAT_HPDS): table
//!   descriptors' APTable/XNTable bits are ignored (D8.4.1.2: IPKGJC for
//!   APTable, INYWHQ for XNTable, UXNTable and PXNTable);
//! - no hardware Access-flag management: a leaf with AF = 0 faults and is
//!   never cached (D8.15.1.4, IBMSDD and IPNQBP; D8.16, RXCLRD).

use crate::addr::Granule;
use crate::tlb::Perms;
use serde::{Deserialize, Serialize};

/// Stage 1 or stage 2 descriptor format.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TableStage {
    /// Stage-1 format (AP, UXN/PXN, nG).
    S1,
    /// Stage-2 format (S2AP, XN, MemAttr; no nG: stage 2 has no ASIDs, and
    /// bit\[11\] is FnXS or RES0, Arm ARM Table D8-53).
    S2,
}

/// Descriptor bit positions (Arm ARM D8.3, Table D8-48 for bits\[1:0\];
/// D8.3.1.1 and D8.3.1.2, Tables D8-50 to D8-53 and Figures D8-12 to D8-17).
pub mod bits {
    /// Valid.
    pub const VALID: u64 = 1 << 0;
    /// Table (levels 0..2) or page (level 3) when set; block when clear.
    pub const TABLE_OR_PAGE: u64 = 1 << 1;
    /// Stage 1 AP\[1\]: EL0 access (Arm ARM D8.4.1.2.1, RRNGJG, Table D8-63).
    pub const AP_USER: u64 = 1 << 6;
    /// Stage 1 AP\[2\]: read-only.
    pub const AP_RO: u64 = 1 << 7;
    /// Stage 2 S2AP\[0\]: read permitted (Arm ARM D8.4.2.1.1, RHBFHL, Table D8-76).
    pub const S2AP_READ: u64 = 1 << 6;
    /// Stage 2 S2AP\[1\]: write permitted.
    pub const S2AP_WRITE: u64 = 1 << 7;
    /// Access flag.
    pub const AF: u64 = 1 << 10;
    /// Not global (stage 1 only): the entry is tagged with the ASID.
    pub const NG: u64 = 1 << 11;
    /// Dirty bit modifier.
    pub const DBM: u64 = 1 << 51;
    /// Contiguous hint.
    pub const CONTIGUOUS: u64 = 1 << 52;
    /// Stage 1 PXN.
    pub const PXN: u64 = 1 << 53;
    /// Stage 1 UXN (XN for regimes with one EL); stage 2 XN\[1\] (FEAT_XNX) or
    /// XN (Arm ARM Tables D8-52 and D8-53).
    pub const UXN: u64 = 1 << 54;
    /// Output/next-table address bits \[47:12\] before granule masking.
    pub const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;
}

/// The attributes of a page or block descriptor, as recorded by the model.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeafAttrs {
    /// Stage-1 AP\[2:1\] (0b00 EL1 RW, 0b01 RW both, 0b10 EL1 RO, 0b11 RO both)
    /// or stage-2 S2AP (bit 0 read, bit 1 write).
    pub ap: u8,
    /// Stage-1 UXN / stage-2 XN\[1\]. For stage 2 this is the raw bit, not an
    /// EL0 execute-never: Arm ARM D8.4.2.1.1, Table D8-78, decodes XN\[1:0\]
    /// as a pair (0b10 forbids EL1 and EL0, 0b11 only EL0).
    pub uxn: bool,
    /// Stage-1 PXN / stage-2 XN\[0\] (raw bit, see `uxn`).
    pub pxn: bool,
    /// Access flag.
    pub af: bool,
    /// Not global (stage 1).
    pub ng: bool,
    /// Dirty bit modifier.
    pub dbm: bool,
    /// Contiguous hint.
    pub contiguous: bool,
}

impl LeafAttrs {
    /// The permissions this leaf grants, for its stage.
    pub fn perms(self, stage: TableStage) -> Perms {
        match stage {
            // Arm ARM D8.4.1.2.1, Table D8-63: AP[2] read-only, AP[1] EL0 access.
            TableStage::S1 => Perms {
                read: true,
                write: self.ap & 0b10 == 0,
                user: self.ap & 0b01 != 0,
                uxn: self.uxn,
                pxn: self.pxn,
                dbm: self.dbm,
            },
            // Arm ARM D8.4.2.1.1, Table D8-76: S2AP[0] read, S2AP[1] write;
            // stage 2 does not distinguish EL0 from EL1 (IHXWLL).
            TableStage::S2 => Perms {
                read: self.ap & 0b01 != 0,
                write: self.ap & 0b10 != 0,
                user: true,
                uxn: self.uxn,
                pxn: self.pxn,
                dbm: self.dbm,
            },
        }
    }
}

/// A decoded descriptor.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Descriptor {
    /// Bit 0 clear, or an encoding that is invalid at this level (a level-3
    /// descriptor with bit 1 clear, or a block where the granule allows none):
    /// a Translation fault (Arm ARM D8.3, Table D8-48; D8.15.1.1, RDYNYQ and
    /// RKRMJZ).
    Invalid,
    /// Points at the next-level table.
    Table {
        /// Next-level table address (PA, or IPA for a nested stage 1).
        next: u64,
    },
    /// A page (level 3) or block translation.
    Leaf {
        /// Output address of the first byte of the page or block.
        output: u64,
        /// Recorded attributes.
        attrs: LeafAttrs,
    },
}

/// A descriptor whose address exceeds the configured output size: an
/// Address size fault (Arm ARM D8.15.1.2, RCVSBH; such an entry is not
/// cached, RGGQPR).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct AddressSizeFault;

/// Decodes `raw` found at `level` of a `stage` table with `granule`, whose
/// output addresses must be below `1 << oa_bits` (TCR_ELx.IPS / VTCR_EL2.PS;
/// Arm ARM D8.1.7, Table D8-6).
pub fn decode(
    raw: u64,
    stage: TableStage,
    granule: Granule,
    level: u8,
    oa_bits: u32,
) -> Result<Descriptor, AddressSizeFault> {
    if raw & bits::VALID == 0 {
        return Ok(Descriptor::Invalid);
    }
    let is_table_or_page = raw & bits::TABLE_OR_PAGE != 0;
    let out_shift = if level == 3 || is_table_or_page {
        granule.shift()
    } else {
        granule.level_shift(level)
    };
    if !is_table_or_page && (level == 3 || !granule.block_allowed(level)) {
        // Level-3 "block" encoding and blocks at unsupported levels are
        // reserved and treated as invalid (Arm ARM D8.3, Table D8-48, for
        // level 3; D8.15.1.1, RKRMJZ, for a level without Block descriptors).
        return Ok(Descriptor::Invalid);
    }
    let addr = raw & bits::ADDR_MASK & !((1u64 << out_shift) - 1);
    if oa_bits < 48 && addr >> oa_bits != 0 {
        return Err(AddressSizeFault);
    }
    if is_table_or_page && level < 3 {
        return Ok(Descriptor::Table { next: addr });
    }
    let (uxn, pxn) = match stage {
        TableStage::S1 => (raw & bits::UXN != 0, raw & bits::PXN != 0),
        // Stage-2 XN[1:0] (FEAT_XNX) at bits [54:53] (Arm ARM Table D8-53),
        // kept raw: see `LeafAttrs::uxn`.
        TableStage::S2 => (raw & bits::UXN != 0, raw & bits::PXN != 0),
    };
    Ok(Descriptor::Leaf {
        output: addr,
        attrs: LeafAttrs {
            ap: ((raw >> 6) & 0b11) as u8,
            uxn,
            pxn,
            af: raw & bits::AF != 0,
            ng: stage == TableStage::S1 && raw & bits::NG != 0,
            dbm: raw & bits::DBM != 0,
            contiguous: raw & bits::CONTIGUOUS != 0,
        },
    })
}

/// Builds a table descriptor pointing at `next`.
pub const fn table(next: u64) -> u64 {
    (next & bits::ADDR_MASK) | bits::TABLE_OR_PAGE | bits::VALID
}

/// Builds a stage-1 page (level 3) descriptor with AF set: `writable`
/// clears AP\[2\], `user` sets AP\[1\], `global` clears nG.
pub const fn s1_page(output: u64, writable: bool, user: bool, global: bool) -> u64 {
    s1_block(output, writable, user, global) | bits::TABLE_OR_PAGE
}

/// Builds a stage-1 block descriptor (levels 1 and 2) with AF set.
pub const fn s1_block(output: u64, writable: bool, user: bool, global: bool) -> u64 {
    let mut d = (output & bits::ADDR_MASK) | bits::AF | bits::VALID;
    if !writable {
        d |= bits::AP_RO;
    }
    if user {
        d |= bits::AP_USER;
    }
    if !global {
        d |= bits::NG;
    }
    d
}

/// Builds a stage-2 page descriptor with AF set and S2AP from `read`/`write`.
pub const fn s2_page(output: u64, read: bool, write: bool) -> u64 {
    s2_block(output, read, write) | bits::TABLE_OR_PAGE
}

/// Builds a stage-2 block descriptor with AF set.
pub const fn s2_block(output: u64, read: bool, write: bool) -> u64 {
    let mut d = (output & bits::ADDR_MASK) | bits::AF | bits::VALID;
    if read {
        d |= bits::S2AP_READ;
    }
    if write {
        d |= bits::S2AP_WRITE;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level3_page_and_block_encodings() {
        // 0x...07c3: page, AF, SH = 0b11, AP[2:1] = 0b11 (RO, EL0), valid.
        let raw = 0x0000_0000_4000_07c3u64;
        let d = decode(raw, TableStage::S1, Granule::K4, 3, 48).unwrap();
        let Descriptor::Leaf { output, attrs } = d else {
            panic!("{d:?}")
        };
        assert_eq!(output, 0x4000_0000);
        assert_eq!(attrs.ap, 0b11);
        assert!(attrs.af && !attrs.ng);
        // Same bits with bit 1 clear at level 3 are reserved -> invalid
        // (Arm ARM Table D8-48).
        assert_eq!(
            decode(raw & !2, TableStage::S1, Granule::K4, 3, 48),
            Ok(Descriptor::Invalid)
        );
    }

    #[test]
    fn blocks_only_where_the_granule_allows_them() {
        let block = s1_block(0x4000_0000, true, false, true);
        assert!(matches!(
            decode(block, TableStage::S1, Granule::K4, 1, 48),
            Ok(Descriptor::Leaf {
                output: 0x4000_0000,
                ..
            })
        ));
        // 4K level-0 and 16K level-1 blocks need TCR_ELx.DS = 1 (FEAT_LPA2),
        // 64K level-1 blocks FEAT_LPA (Arm ARM Tables D8-17, D8-27, D8-36).
        for (g, l) in [(Granule::K4, 0), (Granule::K16, 1), (Granule::K64, 1)] {
            assert_eq!(
                decode(block, TableStage::S1, g, l, 48),
                Ok(Descriptor::Invalid)
            );
        }
        // A 2 MiB block ignores output bits below bit 21.
        let d = decode(
            s1_block(0x4012_3000, true, false, true),
            TableStage::S1,
            Granule::K4,
            2,
            48,
        );
        assert!(matches!(
            d,
            Ok(Descriptor::Leaf {
                output: 0x4000_0000,
                ..
            })
        ));
    }

    #[test]
    fn output_beyond_the_configured_size_is_an_address_size_fault() {
        let d = s1_page(0x100_0000_0000, true, false, true); // bit 40
        assert_eq!(
            decode(d, TableStage::S1, Granule::K4, 3, 40),
            Err(AddressSizeFault)
        );
        assert!(decode(d, TableStage::S1, Granule::K4, 3, 48).is_ok());
        assert_eq!(
            decode(table(1 << 44), TableStage::S2, Granule::K4, 0, 44),
            Err(AddressSizeFault)
        );
    }

    #[test]
    fn stage2_permissions_come_from_s2ap() {
        let Ok(Descriptor::Leaf { attrs, .. }) = decode(
            s2_page(0x8000, true, false),
            TableStage::S2,
            Granule::K4,
            3,
            48,
        ) else {
            panic!()
        };
        let p = attrs.perms(TableStage::S2);
        assert!(p.read && !p.write && p.user);
        assert!(!attrs.ng, "stage 2 has no nG");
    }

    #[test]
    fn table_address_is_granule_aligned() {
        // Bits [15:12] of a 64K table descriptor are not address bits
        // (RES0 without FEAT_LPA, Arm ARM Table D8-50).
        assert_eq!(
            decode(table(0x12_3000), TableStage::S1, Granule::K64, 2, 48),
            Ok(Descriptor::Table { next: 0x12_0000 })
        );
    }
}
