//! Stream Table Entries and Level-1 Stream Table Descriptors (SMMUv3 5.1, 5.2).
//!
//! An STE is 64 bytes, little-endian: eight `u64` words, word `i` holding
//! bits `[64i+63:64i]` of the specification's 512-bit layout. Only the fields
//! the model uses are decoded; other fields (memory attributes, overrides,
//! MPAM, DPT, ...) are ignored on decode and written as zero on encode.
//!
//! [`Ste::decode`] applies the subset of the STE validity rules of
//! SMMUv3 5.2.2 that this model's feature set ([`SmmuFeatures`]) makes
//! relevant; a failure is what makes the SMMU record C_BAD_STE.

use super::bits::{bit, flag, get, mask, put};
use crate::addr::{Granule, OUTPUT_ADDRESS_BITS};

/// The SMMU ID-register facts that STE and CD validity depend on
/// (SMMUv3 6.3: `SMMU_IDR0`, `SMMU_IDR1`, `SMMU_IDR5`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SmmuFeatures {
    /// `SMMU_IDR0.S1P`: stage 1 implemented.
    pub s1p: bool,
    /// `SMMU_IDR0.S2P`: stage 2 implemented.
    pub s2p: bool,
    /// `SMMU_IDR0.Hyp`: EL2 StreamWorlds supported.
    pub hyp: bool,
    /// `SMMU_IDR0.ATS`.
    pub ats: bool,
    /// `SMMU_IDR0.CD2L`: two-level CD tables.
    pub cd2l: bool,
    /// `SMMU_IDR0.ASID16`.
    pub asid16: bool,
    /// `SMMU_IDR0.VMID16`.
    pub vmid16: bool,
    /// `SMMU_IDR0.HTTU`: 0 none, 1 Access flag, 2 Access and Dirty.
    pub httu: u8,
    /// `SMMU_IDR0.STALL_MODEL == 0b00` (stall and terminate both supported).
    pub stall_and_terminate: bool,
    /// `SMMU_IDR0.TERM_MODEL`: 1 = terminate always aborts (CD.A must be 1).
    pub term_model_abort_only: bool,
    /// `SMMU_IDR1.SSIDSIZE`: SubstreamID bits.
    pub ssid_bits: u8,
    /// `SMMU_IDR5.GRAN4K/16K/64K`, indexed like [`Granule::ALL`].
    pub granules: [bool; 3],
    /// Output address size in bits (`SMMU_IDR5.OAS`); IAS equals it because
    /// the model has no AArch32 tables (SMMUv3 3.4).
    pub oas_bits: u32,
}

impl SmmuFeatures {
    /// The model's SMMU: both stages, Hyp, ATS, 2-level CD tables, 16-bit
    /// ASIDs and VMIDs, no HTTU, stall supported, 20-bit SubstreamIDs, all
    /// three granules, 48-bit OAS, AArch64 tables only, little-endian only.
    pub const MODEL: SmmuFeatures = SmmuFeatures {
        s1p: true,
        s2p: true,
        hyp: true,
        ats: true,
        cd2l: true,
        asid16: true,
        vmid16: true,
        httu: 0,
        stall_and_terminate: true,
        term_model_abort_only: false,
        ssid_bits: 20,
        granules: [true; 3],
        oas_bits: OUTPUT_ADDRESS_BITS,
    };

    /// Whether `g` is a supported granule.
    pub fn supports(&self, g: Granule) -> bool {
        self.granules[Granule::ALL.iter().position(|&x| x == g).unwrap_or(0)]
    }
}

impl Default for SmmuFeatures {
    fn default() -> Self {
        SmmuFeatures::MODEL
    }
}

/// Bits of the physical-address size encoding used by STE.S2PS and CD.IPS
/// (SMMUv3 5.2 S2PS, 5.4 IPS): 0b000 = 32 ... 0b101 = 48, 0b110 = 52,
/// 0b111 = 56.
pub const fn pa_size_bits(ps: u8) -> u32 {
    match ps & 7 {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 => 48,
        6 => 52,
        _ => 56,
    }
}

/// The granule of a TG0-style field (STE.S2TG, CD.TG0): 0b00 4K, 0b01 64K,
/// 0b10 16K, 0b11 Reserved (SMMUv3 5.2 S2TG, 5.4 TG0). Not the TLBI TG code.
pub const fn tg0_granule(tg: u8) -> Option<Granule> {
    match tg {
        0 => Some(Granule::K4),
        1 => Some(Granule::K64),
        2 => Some(Granule::K16),
        _ => None,
    }
}

/// The TG0-style code for a granule (inverse of [`tg0_granule`]).
pub const fn tg0_code(g: Granule) -> u8 {
    match g {
        Granule::K4 => 0,
        Granule::K64 => 1,
        Granule::K16 => 2,
    }
}

/// STE.Config (SMMUv3 5.2, bits \[3:1\]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum StreamConfig {
    /// 0b000: abort, no event recorded.
    Abort,
    /// 0b001-0b011: Reserved, behaves as 0b000 (kept for bit-exactness).
    ReservedAbort(u8),
    /// 0b100: both stages bypass.
    Bypass,
    /// 0b101: stage 1 translates, stage 2 bypasses.
    S1Translate,
    /// 0b110: stage 1 bypasses, stage 2 translates.
    S2Translate,
    /// 0b111: nested, both stages translate.
    Nested,
}

impl StreamConfig {
    /// Decodes the three Config bits.
    pub const fn from_bits(v: u8) -> StreamConfig {
        match v & 7 {
            0 => StreamConfig::Abort,
            4 => StreamConfig::Bypass,
            5 => StreamConfig::S1Translate,
            6 => StreamConfig::S2Translate,
            7 => StreamConfig::Nested,
            r => StreamConfig::ReservedAbort(r),
        }
    }

    /// The three Config bits.
    pub const fn bits(self) -> u8 {
        match self {
            StreamConfig::Abort => 0,
            StreamConfig::ReservedAbort(r) => r & 3,
            StreamConfig::Bypass => 4,
            StreamConfig::S1Translate => 5,
            StreamConfig::S2Translate => 6,
            StreamConfig::Nested => 7,
        }
    }

    /// Whether traffic is aborted (Config 0b0xx).
    pub const fn aborts(self) -> bool {
        self.bits() & 4 == 0
    }

    /// Whether stage 1 translates (Config 0b1x1).
    pub const fn stage1(self) -> bool {
        self.bits() & 5 == 5
    }

    /// Whether stage 2 translates (Config 0b11x).
    pub const fn stage2(self) -> bool {
        self.bits() & 6 == 6
    }
}

/// STE.S1Fmt (SMMUv3 5.2, bits \[5:4\]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum S1Fmt {
    /// 0b00: linear CD table.
    Linear,
    /// 0b01: 2-level, 4 KiB leaf tables of 64 CDs.
    TwoLevel4K,
    /// 0b10: 2-level, 64 KiB leaf tables of 1024 CDs.
    TwoLevel64K,
    /// 0b11: Reserved, behaves as 0b00.
    Reserved,
}

impl S1Fmt {
    const fn from_bits(v: u8) -> S1Fmt {
        match v & 3 {
            0 => S1Fmt::Linear,
            1 => S1Fmt::TwoLevel4K,
            2 => S1Fmt::TwoLevel64K,
            _ => S1Fmt::Reserved,
        }
    }
}

/// STE.S1DSS (SMMUv3 5.2, bits \[65:64\]): non-substream traffic when
/// substreams are enabled.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum S1Dss {
    /// 0b00: terminate and record F_STREAM_DISABLED.
    Terminate,
    /// 0b01: bypass stage 1.
    Bypass,
    /// 0b10: use CD 0; SubstreamID 0 traffic is then terminated.
    Ssid0,
    /// 0b11: Reserved, behaves as 0b00.
    Reserved,
}

impl S1Dss {
    const fn from_bits(v: u8) -> S1Dss {
        match v & 3 {
            0 => S1Dss::Terminate,
            1 => S1Dss::Bypass,
            2 => S1Dss::Ssid0,
            _ => S1Dss::Reserved,
        }
    }
}

/// A decoded Stream Table Entry with V = 1 (SMMUv3 5.2). Field widths are
/// the specification's; [`Ste::encode`] truncates wider values.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ste {
    /// Config, bits \[3:1\].
    pub config: StreamConfig,
    /// S1Fmt, bits \[5:4\].
    pub s1_fmt: S1Fmt,
    /// S1ContextPtr, bits \[55:6\]: the CD (table) address with \[5:0\] zero.
    pub s1_context_ptr: u64,
    /// S1CDMax, bits \[63:59\]: log2 of the number of CDs.
    pub s1_cd_max: u8,
    /// S1DSS, bits \[65:64\].
    pub s1_dss: S1Dss,
    /// S1STALLD, bit \[91\]: stalls disallowed for stage 1 faults.
    pub s1_stalld: bool,
    /// EATS, bits \[93:92\]: 0 abort, 1 full ATS, 2 split-stage, 3 full with DPT.
    pub eats: u8,
    /// STRW, bits \[95:94\]: 0b00 NS-EL1, 0b10 EL2 or EL2-E2H.
    pub strw: u8,
    /// S2VMID, bits \[143:128\].
    pub s2_vmid: u16,
    /// S2T0SZ, bits \[165:160\].
    pub s2_t0sz: u8,
    /// S2SL0, bits \[167:166\] (VTCR_EL2.SL0 encoding).
    pub s2_sl0: u8,
    /// S2TG, bits \[175:174\] (0b00 4K, 0b01 64K, 0b10 16K; see [`tg0_granule`]).
    pub s2_tg: u8,
    /// S2PS, bits \[178:176\] (see [`pa_size_bits`]).
    pub s2_ps: u8,
    /// S2AA64, bit \[179\]: 1 = VMSAv8-64 stage 2 tables.
    pub s2_aa64: bool,
    /// S2ENDI, bit \[180\]: big-endian stage 2 walks.
    pub s2_endi: bool,
    /// S2HD, bit \[183\]: hardware dirty-state update at stage 2.
    pub s2_hd: bool,
    /// S2HA, bit \[184\]: hardware Access flag update at stage 2.
    pub s2_ha: bool,
    /// S2S, bit \[185\]: stall on stage 2 faults.
    pub s2_s: bool,
    /// S2R, bit \[186\]: record stage 2 faults.
    pub s2_r: bool,
    /// S2TTB, bits \[243:196\]: the stage 2 table address, bits \[51:4\].
    pub s2_ttb: u64,
}

/// Why an STE makes the SMMU record C_BAD_STE (SMMUv3 5.2, 5.2.2). Each
/// variant names the field and value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSte {
    /// V = 0 (SMMUv3 5.2 V).
    #[error("STE.V = 0")]
    NotValid,
    /// A translation stage that the SMMU does not implement is enabled.
    #[error("STE.Config = {config:#05b} enables stage {stage}, which is not implemented")]
    StageNotImplemented {
        /// Config.
        config: u8,
        /// 1 or 2.
        stage: u8,
    },
    /// STRW = 0bx1 is Reserved and ILLEGAL for a Non-secure STE (SMMUv3 5.2 STRW).
    #[error("STE.STRW = {strw:#04b} is Reserved (ILLEGAL) for a Non-secure STE")]
    StrwReserved {
        /// STRW.
        strw: u8,
    },
    /// S1STALLD = 1 when the Stall model is not "stall and terminate" (5.2.2).
    #[error("STE.S1STALLD = 1 but SMMU_IDR0.STALL_MODEL != 0b00")]
    S1StalldUnsupported,
    /// S1CDMax beyond SMMU_IDR1.SSIDSIZE (SMMUv3 5.2 S1CDMax).
    #[error("STE.S1CDMax = {cd_max} exceeds SMMU_IDR1.SSIDSIZE = {ssid_bits}")]
    S1CdMaxTooLarge {
        /// S1CDMax.
        cd_max: u8,
        /// SSIDSIZE.
        ssid_bits: u8,
    },
    /// 2-level CD table without SMMU_IDR0.CD2L (SMMUv3 5.2 S1Fmt).
    #[error("STE.S1Fmt = {fmt:#04b} selects a 2-level CD table but SMMU_IDR0.CD2L == 0")]
    S1FmtUnsupported {
        /// S1Fmt.
        fmt: u8,
    },
    /// EATS inconsistent with Config or S2S (SMMUv3 5.2 EATS).
    #[error("STE.EATS = {eats:#04b} is ILLEGAL with Config = {config:#05b} and S2S = {s2s}")]
    EatsIllegal {
        /// EATS.
        eats: u8,
        /// Config.
        config: u8,
        /// S2S.
        s2s: bool,
    },
    /// S2VMID\[15:8\] non-zero with 8-bit VMIDs (SMMUv3 5.2 S2VMID).
    #[error("STE.S2VMID = {vmid:#x} has bits [15:8] set but SMMU_IDR0.VMID16 == 0")]
    S2VmidTooWide {
        /// S2VMID.
        vmid: u16,
    },
    /// S2AA64 = 0 selects VMSAv8-32 LPAE, which the model does not support.
    #[error("STE.S2AA64 = 0 selects VMSAv8-32 LPAE tables, which are not supported")]
    S2Aa64Unsupported,
    /// S2TG Reserved or an unsupported granule (SMMUv3 5.2 S2TG).
    #[error("STE.S2TG = {tg:#04b} is Reserved or selects an unsupported granule")]
    S2TgIllegal {
        /// S2TG.
        tg: u8,
    },
    /// S2T0SZ outside its valid range (SMMUv3 5.2 S2T0SZ, v3.1+ rules).
    #[error("STE.S2T0SZ = {t0sz} is outside [{min}, {max}]")]
    S2T0szOutOfRange {
        /// S2T0SZ.
        t0sz: u8,
        /// Minimum valid value.
        min: u8,
        /// Maximum valid value.
        max: u8,
    },
    /// S2SL0 Reserved or inconsistent with S2T0SZ and S2TG (SMMUv3 5.2 S2SL0).
    #[error("STE.S2SL0 = {sl0} is inconsistent with S2T0SZ = {t0sz} and the {granule} granule")]
    S2Sl0Inconsistent {
        /// S2SL0.
        sl0: u8,
        /// S2T0SZ.
        t0sz: u8,
        /// The S2TG granule.
        granule: Granule,
    },
    /// S2TTB beyond the effective S2PS (SMMUv3 5.2 S2TTB).
    #[error("STE.S2TTB = {ttb:#x} is outside the {bits}-bit effective S2PS range")]
    S2TtbOutOfRange {
        /// S2TTB.
        ttb: u64,
        /// Effective output size.
        bits: u32,
    },
    /// S2HA/S2HD without matching HTTU support (SMMUv3 5.2.2).
    #[error("STE.S2HA = {ha}, S2HD = {hd} but SMMU_IDR0.HTTU = {httu}")]
    S2HttuUnsupported {
        /// S2HA.
        ha: bool,
        /// S2HD.
        hd: bool,
        /// HTTU.
        httu: u8,
    },
    /// S2ENDI = 1 on a little-endian-only SMMU (SMMUv3 5.2.2).
    #[error("STE.S2ENDI = 1 but the model supports little-endian walks only")]
    S2EndianUnsupported,
}

/// The first level at which a stage 2 walk starts, from S2SL0 and the
/// granule (VTCR_EL2.SL0 with DS = 0, Arm ARM D8.2); `None` if Reserved.
pub const fn s2_start_level(sl0: u8, g: Granule) -> Option<u8> {
    match (g, sl0) {
        (Granule::K4, 0) => Some(2),
        (Granule::K4, 1) => Some(1),
        (Granule::K4, 2) => Some(0),
        (Granule::K16 | Granule::K64, 0) => Some(3),
        (Granule::K16 | Granule::K64, 1) => Some(2),
        (Granule::K16 | Granule::K64, 2) => Some(1),
        _ => None,
    }
}

/// Whether `ia_bits` of input can be resolved from `level`: the starting
/// level must resolve at least one bit, and at most its own bits plus four
/// more by concatenating up to 16 tables (Arm ARM D8.2.5 for stage 2).
pub const fn s2_level_consistent(ia_bits: u32, level: u8, g: Granule) -> bool {
    let below = g.level_shift(level);
    ia_bits > below && ia_bits - below <= g.bits_per_level() + 4
}

impl Ste {
    /// An STE with V = 0 (every word zero).
    pub const INVALID: [u64; 8] = [0; 8];

    /// A bypass STE (Config = 0b100).
    pub const fn bypass() -> Ste {
        Ste {
            config: StreamConfig::Bypass,
            s1_fmt: S1Fmt::Linear,
            s1_context_ptr: 0,
            s1_cd_max: 0,
            s1_dss: S1Dss::Terminate,
            s1_stalld: false,
            eats: 0,
            strw: 0,
            s2_vmid: 0,
            s2_t0sz: 0,
            s2_sl0: 0,
            s2_tg: 0,
            s2_ps: 0,
            s2_aa64: false,
            s2_endi: false,
            s2_hd: false,
            s2_ha: false,
            s2_s: false,
            s2_r: false,
            s2_ttb: 0,
        }
    }

    /// A stage-1-only STE pointing at one CD (S1CDMax = 0).
    pub const fn stage1(cd_addr: u64) -> Ste {
        let mut s = Ste::bypass();
        s.config = StreamConfig::S1Translate;
        s.s1_context_ptr = cd_addr & mask(55, 6);
        s
    }

    /// A stage-2-only STE for a 48-bit IPA space: VMSAv8-64, the given
    /// granule, 48-bit S2PS, S2R = 1.
    pub const fn stage2(vmid: u16, vttb: u64, g: Granule) -> Ste {
        let mut s = Ste::bypass();
        s.config = StreamConfig::S2Translate;
        s.s2_vmid = vmid;
        s.s2_t0sz = 16;
        // SL0 = 0b10: level 0 for 4K, level 1 for 64K, and level 1 with two
        // concatenated tables for 16K (its level-0 start, SL0 = 0b11, is
        // Reserved without DS).
        s.s2_sl0 = 2;
        s.s2_tg = tg0_code(g);
        s.s2_ps = 5;
        s.s2_aa64 = true;
        s.s2_r = true;
        s.s2_ttb = vttb & mask(51, 4);
        s
    }

    /// The stage 2 granule, if S2TG is not Reserved.
    pub const fn s2_granule(&self) -> Option<Granule> {
        tg0_granule(self.s2_tg)
    }

    /// The 64-byte encoding, V = 1.
    pub fn encode(&self) -> [u64; 8] {
        let mut w = [0u64; 8];
        w[0] = 1
            | put(u64::from(self.config.bits()), 3, 1)
            | put(self.s1_fmt as u64, 5, 4)
            | (self.s1_context_ptr & mask(55, 6))
            | put(u64::from(self.s1_cd_max), 63, 59);
        w[1] = put(self.s1_dss as u64, 1, 0)
            | flag(self.s1_stalld, 27)
            | put(u64::from(self.eats), 29, 28)
            | put(u64::from(self.strw), 31, 30);
        w[2] = u64::from(self.s2_vmid)
            | put(u64::from(self.s2_t0sz), 37, 32)
            | put(u64::from(self.s2_sl0), 39, 38)
            | put(u64::from(self.s2_tg), 47, 46)
            | put(u64::from(self.s2_ps), 50, 48)
            | flag(self.s2_aa64, 51)
            | flag(self.s2_endi, 52)
            | flag(self.s2_hd, 55)
            | flag(self.s2_ha, 56)
            | flag(self.s2_s, 57)
            | flag(self.s2_r, 58);
        // S2TTB is STE bits [243:196] = word 3 bits [51:4] = address [51:4].
        w[3] = self.s2_ttb & mask(51, 4);
        w
    }

    /// Decodes and validates against [`SmmuFeatures::MODEL`].
    pub fn decode(words: &[u64; 8]) -> Result<Ste, BadSte> {
        Ste::decode_with(words, &SmmuFeatures::MODEL)
    }

    /// Decodes the modelled fields, then applies the validity rules of
    /// SMMUv3 5.2.2 for a Non-secure STE on an SMMU with `features`.
    pub fn decode_with(words: &[u64; 8], features: &SmmuFeatures) -> Result<Ste, BadSte> {
        let [w0, w1, w2, w3, ..] = *words;
        if !bit(w0, 0) {
            return Err(BadSte::NotValid);
        }
        let ste = Ste {
            config: StreamConfig::from_bits(get(w0, 3, 1) as u8),
            s1_fmt: S1Fmt::from_bits(get(w0, 5, 4) as u8),
            s1_context_ptr: w0 & mask(55, 6),
            s1_cd_max: get(w0, 63, 59) as u8,
            s1_dss: S1Dss::from_bits(get(w1, 1, 0) as u8),
            s1_stalld: bit(w1, 27),
            eats: get(w1, 29, 28) as u8,
            strw: get(w1, 31, 30) as u8,
            s2_vmid: get(w2, 15, 0) as u16,
            s2_t0sz: get(w2, 37, 32) as u8,
            s2_sl0: get(w2, 39, 38) as u8,
            s2_tg: get(w2, 47, 46) as u8,
            s2_ps: get(w2, 50, 48) as u8,
            s2_aa64: bit(w2, 51),
            s2_endi: bit(w2, 52),
            s2_hd: bit(w2, 55),
            s2_ha: bit(w2, 56),
            s2_s: bit(w2, 57),
            s2_r: bit(w2, 58),
            s2_ttb: w3 & mask(51, 4),
        };
        ste.validate(features)?;
        Ok(ste)
    }

    /// The STE validity rules the model applies (SMMUv3 5.2.2, Non-secure).
    pub fn validate(&self, f: &SmmuFeatures) -> Result<(), BadSte> {
        let c = self.config;
        // Config 0b0xx aborts silently; nothing else is looked at.
        if c.aborts() {
            return Ok(());
        }
        if c.stage1() && !f.s1p {
            return Err(BadSte::StageNotImplemented {
                config: c.bits(),
                stage: 1,
            });
        }
        if c.stage2() && !f.s2p {
            return Err(BadSte::StageNotImplemented {
                config: c.bits(),
                stage: 2,
            });
        }
        // STRW is used only for stage-1-only streams when Hyp is implemented.
        let strw_used = f.s1p && f.hyp && c == StreamConfig::S1Translate;
        if strw_used && self.strw & 1 == 1 {
            return Err(BadSte::StrwReserved { strw: self.strw });
        }
        if c.stage1() {
            if self.s1_stalld && !f.stall_and_terminate {
                return Err(BadSte::S1StalldUnsupported);
            }
            if f.ssid_bits > 0 && self.s1_cd_max > f.ssid_bits {
                return Err(BadSte::S1CdMaxTooLarge {
                    cd_max: self.s1_cd_max,
                    ssid_bits: f.ssid_bits,
                });
            }
            let substreams = f.ssid_bits > 0 && self.s1_cd_max > 0;
            if substreams
                && !f.cd2l
                && matches!(self.s1_fmt, S1Fmt::TwoLevel4K | S1Fmt::TwoLevel64K)
            {
                return Err(BadSte::S1FmtUnsupported {
                    fmt: self.s1_fmt as u8,
                });
            }
        }
        // EATS is IGNORED without ATS or when Config[1:0] == 0b00.
        if f.ats && c.bits() & 3 != 0 {
            let bad = match self.eats {
                1 | 3 => c.stage2() && self.s2_s,
                2 => c != StreamConfig::Nested || self.s2_s,
                _ => false,
            };
            if bad {
                return Err(BadSte::EatsIllegal {
                    eats: self.eats,
                    config: c.bits(),
                    s2s: self.s2_s,
                });
            }
        }
        // S2VMID tags NS-EL1 translations at either stage (SMMUv3 5.2 S2VMID).
        let vmid_used = f.s2p && (c.stage2() || self.strw == 0);
        if vmid_used && !f.vmid16 && self.s2_vmid > 0xff {
            return Err(BadSte::S2VmidTooWide { vmid: self.s2_vmid });
        }
        if c.stage2() {
            self.validate_stage2(f)?;
        }
        Ok(())
    }

    fn validate_stage2(&self, f: &SmmuFeatures) -> Result<(), BadSte> {
        if !self.s2_aa64 {
            return Err(BadSte::S2Aa64Unsupported);
        }
        let g = match self.s2_granule() {
            Some(g) if f.supports(g) => g,
            _ => return Err(BadSte::S2TgIllegal { tg: self.s2_tg }),
        };
        // SMMUv3.1+: MAX(16, 64 - IAS) ..= 39 without STT (SMMUv3 5.2 S2T0SZ).
        let min = 16u8.max((64 - f.oas_bits) as u8);
        let max = 39u8;
        if self.s2_t0sz < min || self.s2_t0sz > max {
            return Err(BadSte::S2T0szOutOfRange {
                t0sz: self.s2_t0sz,
                min,
                max,
            });
        }
        let ia_bits = 64 - u32::from(self.s2_t0sz);
        match s2_start_level(self.s2_sl0, g) {
            Some(level) if s2_level_consistent(ia_bits, level, g) => {}
            _ => {
                return Err(BadSte::S2Sl0Inconsistent {
                    sl0: self.s2_sl0,
                    t0sz: self.s2_t0sz,
                    granule: g,
                })
            }
        }
        // Effective S2PS is capped to the OAS; the TTB must lie within it,
        // and within 48 bits for 4K/16K without DS (SMMUv3 5.2 S2TTB).
        let bits = pa_size_bits(self.s2_ps).min(f.oas_bits).min(48);
        if self.s2_ttb >> bits != 0 {
            return Err(BadSte::S2TtbOutOfRange {
                ttb: self.s2_ttb,
                bits,
            });
        }
        let ok_httu = match (self.s2_ha, self.s2_hd) {
            (false, false) => true,
            (_, true) => f.httu >= 2,
            (true, false) => f.httu >= 1,
        };
        if !ok_httu {
            return Err(BadSte::S2HttuUnsupported {
                ha: self.s2_ha,
                hd: self.s2_hd,
                httu: f.httu,
            });
        }
        if self.s2_endi {
            return Err(BadSte::S2EndianUnsupported);
        }
        Ok(())
    }
}

/// Bits of an 8-byte level-1 descriptor that are RES0 but set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{descriptor}: RES0 bits {bits:#x} are set")]
pub struct DescRes0 {
    /// "L1STD" or "L1CD".
    pub descriptor: &'static str,
    /// The offending bits, in place.
    pub bits: u64,
}

/// A Level 1 Stream Table Descriptor (SMMUv3 5.1): 8 bytes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct L1Std {
    /// Span, bits \[4:0\]: 0 invalid, 1..=11 a level-2 array of 2^(Span-1)
    /// STEs, 12..=31 Reserved (behaves as 0).
    pub span: u8,
    /// L2Ptr, bits \[55:6\]: the level-2 array's address with \[5:0\] zero.
    pub l2ptr: u64,
}

impl L1Std {
    /// The encoding.
    pub const fn encode(&self) -> u64 {
        put(self.span as u64, 4, 0) | (self.l2ptr & mask(55, 6))
    }

    /// Decodes; only bit \[5\] and bits \[63:56\] can be wrong (RES0).
    pub const fn decode(w: u64) -> Result<L1Std, DescRes0> {
        let res0 = w & (mask(5, 5) | mask(63, 56));
        if res0 != 0 {
            return Err(DescRes0 {
                descriptor: "L1STD",
                bits: res0,
            });
        }
        Ok(L1Std {
            span: get(w, 4, 0) as u8,
            l2ptr: w & mask(55, 6),
        })
    }

    /// Number of STEs in the level-2 array, or `None` when Span is 0 or
    /// Reserved (the StreamIDs are then invalid: C_BAD_STREAMID).
    pub const fn l2_entries(&self) -> Option<u32> {
        match self.span {
            1..=11 => Some(1 << (self.span - 1)),
            _ => None,
        }
    }

    /// The effective level-2 base: L2Ptr[5 + Span - 1 : 0] are treated as
    /// zero, aligning the array to its size (SMMUv3 5.1 L2Ptr).
    pub const fn l2_base(&self) -> u64 {
        let n = match self.span {
            1..=11 => 6 + (self.span as u32 - 1),
            _ => 6,
        };
        self.l2ptr & !((1u64 << n) - 1)
    }
}
