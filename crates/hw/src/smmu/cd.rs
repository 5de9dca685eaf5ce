//! Context Descriptors and Level-1 CD descriptors (SMMUv3 5.3, 5.4).
//!
//! A CD is 64 bytes, little-endian: eight `u64` words, word `i` holding bits
//! `[64i+63:64i]`. The modelled fields are those of the stage 1 translation
//! regime (TCR-like fields, ASID, TTB0/TTB1, MAIR) and the fault-behaviour
//! bits S, R, A. Unmodelled fields are ignored on decode and zero on encode.
//!
//! [`Cd::decode`] applies the subset of SMMUv3 5.4.2 (`CdIllegal`) relevant
//! to the model; a failure is what makes the SMMU record C_BAD_CD.

use super::bits::{bit, flag, get, mask, put};
use super::ste::{pa_size_bits, tg0_code, tg0_granule, SmmuFeatures, Ste};
use crate::addr::Granule;

pub use super::ste::DescRes0;

/// The granule of a TG1 field: 0b01 16K, 0b10 4K, 0b11 64K, 0b00 Reserved
/// (SMMUv3 5.4 TG1; the TCR_ELx.TG1 encoding).
pub const fn tg1_granule(tg: u8) -> Option<Granule> {
    match tg {
        1 => Some(Granule::K16),
        2 => Some(Granule::K4),
        3 => Some(Granule::K64),
        _ => None,
    }
}

/// The TG1 code for a granule (inverse of [`tg1_granule`]).
pub const fn tg1_code(g: Granule) -> u8 {
    match g {
        Granule::K16 => 1,
        Granule::K4 => 2,
        Granule::K64 => 3,
    }
}

/// A decoded Context Descriptor with V = 1 (SMMUv3 5.4).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cd {
    /// T0SZ, bits \[5:0\].
    pub t0sz: u8,
    /// TG0, bits \[7:6\] (0b00 4K, 0b01 64K, 0b10 16K).
    pub tg0: u8,
    /// EPD0, bit \[14\]: TTB0 walks disabled.
    pub epd0: bool,
    /// ENDI, bit \[15\]: big-endian walks.
    pub endi: bool,
    /// T1SZ, bits \[21:16\].
    pub t1sz: u8,
    /// TG1, bits \[23:22\] (0b01 16K, 0b10 4K, 0b11 64K).
    pub tg1: u8,
    /// EPD1, bit \[30\]: TTB1 walks disabled.
    pub epd1: bool,
    /// IPS, bits \[34:32\] (see [`pa_size_bits`]).
    pub ips: u8,
    /// AFFD, bit \[35\]: Access flag faults disabled.
    pub affd: bool,
    /// TBI0, bit \[38\].
    pub tbi0: bool,
    /// TBI1, bit \[39\].
    pub tbi1: bool,
    /// AA64, bit \[41\]: 1 = VMSAv8-64 tables.
    pub aa64: bool,
    /// HD, bit \[42\]: hardware dirty-state update.
    pub hd: bool,
    /// HA, bit \[43\]: hardware Access flag update.
    pub ha: bool,
    /// S, bit \[44\]: stall on stage 1 faults.
    pub s: bool,
    /// R, bit \[45\]: record stage 1 faults.
    pub r: bool,
    /// A, bit \[46\]: terminated transactions abort (else RAZ/WI).
    pub a: bool,
    /// ASET, bit \[47\]: ASID set excluded from broadcast invalidation.
    pub aset: bool,
    /// ASID, bits \[63:48\].
    pub asid: u16,
    /// TTB0, bits \[115:68\]: table address bits \[51:4\].
    pub ttb0: u64,
    /// TTB1, bits \[179:132\]: table address bits \[51:4\].
    pub ttb1: u64,
    /// MAIR0 (bits \[223:192\]) and MAIR1 (bits \[255:224\]) as one MAIR value.
    pub mair: u64,
}

/// Why a CD makes the SMMU record C_BAD_CD (SMMUv3 5.4.2). Each variant
/// names the field and value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadCd {
    /// V = 0 (SMMUv3 5.4 V).
    #[error("CD.V = 0")]
    NotValid,
    /// CD.S = 1 while STE.S1STALLD = 1 (5.4.2).
    #[error("CD.S = 1 but STE.S1STALLD = 1")]
    StallDisallowed,
    /// CD.A = 0 with SMMU_IDR0.TERM_MODEL = 1 (5.4.2).
    #[error("CD.A = 0 but SMMU_IDR0.TERM_MODEL = 1 (RAZ/WI termination unsupported)")]
    RazWiUnsupported,
    /// AA64 = 0 selects VMSAv8-32 LPAE, which the model does not support.
    #[error("CD.AA64 = 0 selects VMSAv8-32 LPAE tables, which are not supported")]
    Aa64Unsupported,
    /// HA/HD without matching HTTU support (5.4.2).
    #[error("CD.HA = {ha}, CD.HD = {hd} but SMMU_IDR0.HTTU = {httu}")]
    HttuUnsupported {
        /// HA.
        ha: bool,
        /// HD.
        hd: bool,
        /// HTTU.
        httu: u8,
    },
    /// ASID\[15:8\] non-zero with 8-bit ASIDs (SMMUv3 5.4 ASID).
    #[error("CD.ASID = {asid:#x} has bits [15:8] set but SMMU_IDR0.ASID16 == 0")]
    AsidTooWide {
        /// ASID.
        asid: u16,
    },
    /// TG0/TG1 Reserved or unsupported (SMMUv3 5.4 TG0, TG1).
    #[error("CD.{field} = {value:#04b} is Reserved or selects an unsupported granule")]
    TgIllegal {
        /// "TG0" or "TG1".
        field: &'static str,
        /// The value.
        value: u8,
    },
    /// T0SZ/T1SZ out of range (SMMUv3 5.4 T0SZ, v3.1+ rules).
    #[error("CD.{field} = {value} is outside [{min}, {max}]")]
    TxszOutOfRange {
        /// "T0SZ" or "T1SZ".
        field: &'static str,
        /// The value.
        value: u8,
        /// Minimum valid value.
        min: u8,
        /// Maximum valid value.
        max: u8,
    },
    /// TTB0/TTB1 outside the effective IPS (SMMUv3 5.4 TTB0, TTB1).
    #[error("CD.{field} = {value:#x} is outside the {bits}-bit effective IPS range")]
    TtbOutOfRange {
        /// "TTB0" or "TTB1".
        field: &'static str,
        /// The address.
        value: u64,
        /// Effective size.
        bits: u32,
    },
    /// ENDI = 1 on a little-endian-only SMMU (5.4.2).
    #[error("CD.ENDI = 1 but the model supports little-endian walks only")]
    EndianUnsupported,
}

/// The STE-dependent inputs to CD validity (SMMUv3 5.4.2).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CdContext {
    /// STE.S1STALLD of the STE that located the CD.
    pub s1_stalld: bool,
    /// StreamWorld is NS-EL2 (STE.STRW = 0b10 with `SMMU_CR2.E2H == 0`): a
    /// single VA range, so TTB1's fields are RES0 and EPD1 is effectively 1.
    pub el2_single_range: bool,
}

impl CdContext {
    /// The context for a CD reached through `ste`, given `SMMU_CR2.E2H`.
    pub const fn from_ste(ste: &Ste, cr2_e2h: bool) -> CdContext {
        CdContext {
            s1_stalld: ste.s1_stalld,
            el2_single_range: ste.strw == 0b10 && !cr2_e2h,
        }
    }
}

impl Cd {
    /// A CD with V = 0 (every word zero).
    pub const INVALID: [u64; 8] = [0; 8];

    /// A VMSAv8-64 CD for a 48-bit TTB0 region with the given granule, ASID
    /// and table; TTB1 disabled; faults recorded and aborted; 48-bit IPS.
    pub const fn new(asid: u16, ttb0: u64, g: Granule) -> Cd {
        Cd {
            t0sz: 16,
            tg0: tg0_code(g),
            epd0: false,
            endi: false,
            t1sz: 0,
            tg1: tg1_code(g),
            epd1: true,
            ips: 5,
            affd: false,
            tbi0: false,
            tbi1: false,
            aa64: true,
            hd: false,
            ha: false,
            s: false,
            r: true,
            a: true,
            aset: false,
            asid,
            ttb0: ttb0 & mask(51, 4),
            ttb1: 0,
            mair: 0,
        }
    }

    /// The TTB0 granule, if TG0 is not Reserved.
    pub const fn granule0(&self) -> Option<Granule> {
        tg0_granule(self.tg0)
    }

    /// The TTB1 granule, if TG1 is not Reserved.
    pub const fn granule1(&self) -> Option<Granule> {
        tg1_granule(self.tg1)
    }

    /// The 64-byte encoding, V = 1.
    pub fn encode(&self) -> [u64; 8] {
        let mut w = [0u64; 8];
        w[0] = put(u64::from(self.t0sz), 5, 0)
            | put(u64::from(self.tg0), 7, 6)
            | flag(self.epd0, 14)
            | flag(self.endi, 15)
            | put(u64::from(self.t1sz), 21, 16)
            | put(u64::from(self.tg1), 23, 22)
            | flag(self.epd1, 30)
            | flag(true, 31)
            | put(u64::from(self.ips), 34, 32)
            | flag(self.affd, 35)
            | flag(self.tbi0, 38)
            | flag(self.tbi1, 39)
            | flag(self.aa64, 41)
            | flag(self.hd, 42)
            | flag(self.ha, 43)
            | flag(self.s, 44)
            | flag(self.r, 45)
            | flag(self.a, 46)
            | flag(self.aset, 47)
            | (u64::from(self.asid) << 48);
        // TTB0: CD bits [115:68] = word 1 bits [51:4] = address [51:4].
        w[1] = self.ttb0 & mask(51, 4);
        // TTB1: CD bits [179:132] = word 2 bits [51:4].
        w[2] = self.ttb1 & mask(51, 4);
        w[3] = self.mair;
        w
    }

    /// Decodes and validates for [`SmmuFeatures::MODEL`], an NS-EL1 stream
    /// with STE.S1STALLD = 0.
    pub fn decode(words: &[u64; 8]) -> Result<Cd, BadCd> {
        Cd::decode_with(words, &SmmuFeatures::MODEL, &CdContext::default())
    }

    /// Decodes the modelled fields, then applies SMMUv3 5.4.2.
    pub fn decode_with(
        words: &[u64; 8],
        features: &SmmuFeatures,
        ctx: &CdContext,
    ) -> Result<Cd, BadCd> {
        let [w0, w1, w2, w3, ..] = *words;
        if !bit(w0, 31) {
            return Err(BadCd::NotValid);
        }
        let cd = Cd {
            t0sz: get(w0, 5, 0) as u8,
            tg0: get(w0, 7, 6) as u8,
            epd0: bit(w0, 14),
            endi: bit(w0, 15),
            t1sz: get(w0, 21, 16) as u8,
            tg1: get(w0, 23, 22) as u8,
            epd1: bit(w0, 30),
            ips: get(w0, 34, 32) as u8,
            affd: bit(w0, 35),
            tbi0: bit(w0, 38),
            tbi1: bit(w0, 39),
            aa64: bit(w0, 41),
            hd: bit(w0, 42),
            ha: bit(w0, 43),
            s: bit(w0, 44),
            r: bit(w0, 45),
            a: bit(w0, 46),
            aset: bit(w0, 47),
            asid: get(w0, 63, 48) as u16,
            ttb0: w1 & mask(51, 4),
            ttb1: w2 & mask(51, 4),
            mair: w3,
        };
        cd.validate(features, ctx)?;
        Ok(cd)
    }

    /// The CD validity rules the model applies (SMMUv3 5.4.2, `CdIllegal`).
    pub fn validate(&self, f: &SmmuFeatures, ctx: &CdContext) -> Result<(), BadCd> {
        if ctx.s1_stalld && self.s {
            return Err(BadCd::StallDisallowed);
        }
        if f.term_model_abort_only && !self.a {
            return Err(BadCd::RazWiUnsupported);
        }
        if !self.aa64 {
            return Err(BadCd::Aa64Unsupported);
        }
        let ok_httu = match (self.ha, self.hd) {
            (false, false) => true,
            (_, true) => f.httu >= 2,
            (true, false) => f.httu >= 1,
        };
        if !ok_httu {
            return Err(BadCd::HttuUnsupported {
                ha: self.ha,
                hd: self.hd,
                httu: f.httu,
            });
        }
        // The ASID is IGNORED for the NS-EL2 StreamWorld.
        if !ctx.el2_single_range && !f.asid16 && self.asid > 0xff {
            return Err(BadCd::AsidTooWide { asid: self.asid });
        }
        if !self.epd0 {
            self.check_half(
                f,
                "TG0",
                self.tg0,
                self.granule0(),
                "T0SZ",
                self.t0sz,
                "TTB0",
                self.ttb0,
            )?;
        }
        if !self.epd1 && !ctx.el2_single_range {
            self.check_half(
                f,
                "TG1",
                self.tg1,
                self.granule1(),
                "T1SZ",
                self.t1sz,
                "TTB1",
                self.ttb1,
            )?;
        }
        if self.endi {
            return Err(BadCd::EndianUnsupported);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn check_half(
        &self,
        f: &SmmuFeatures,
        tg_name: &'static str,
        tg: u8,
        granule: Option<Granule>,
        sz_name: &'static str,
        txsz: u8,
        ttb_name: &'static str,
        ttb: u64,
    ) -> Result<(), BadCd> {
        match granule {
            Some(g) if f.supports(g) => {}
            _ => {
                return Err(BadCd::TgIllegal {
                    field: tg_name,
                    value: tg,
                })
            }
        }
        // No 52-bit VAs and no STT: TxSZ in [16, 39] (SMMUv3 5.4 T0SZ).
        let (min, max) = (16, 39);
        if txsz < min || txsz > max {
            return Err(BadCd::TxszOutOfRange {
                field: sz_name,
                value: txsz,
                min,
                max,
            });
        }
        // eff_IPS = MIN(IPS, OAS); and 48 bits without DS (SMMUv3 5.4 TTB0).
        let bits = pa_size_bits(self.ips).min(f.oas_bits).min(48);
        if ttb >> bits != 0 {
            return Err(BadCd::TtbOutOfRange {
                field: ttb_name,
                value: ttb,
                bits,
            });
        }
        Ok(())
    }
}

/// A Level 1 Context Descriptor (SMMUv3 5.3): 8 bytes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct L1Cd {
    /// V, bit \[0\]: L2Ptr is valid.
    pub valid: bool,
    /// L2Ptr, bits \[55:12\]: the level-2 CD table address with \[11:0\] zero.
    pub l2ptr: u64,
}

impl L1Cd {
    /// The encoding.
    pub const fn encode(&self) -> u64 {
        (self.valid as u64) | (self.l2ptr & mask(55, 12))
    }

    /// Decodes; bits \[11:1\] and \[63:56\] are RES0.
    pub const fn decode(w: u64) -> Result<L1Cd, DescRes0> {
        let res0 = w & (mask(11, 1) | mask(63, 56));
        if res0 != 0 {
            return Err(DescRes0 {
                descriptor: "L1CD",
                bits: res0,
            });
        }
        Ok(L1Cd {
            valid: bit(w, 0),
            l2ptr: w & mask(55, 12),
        })
    }
}
