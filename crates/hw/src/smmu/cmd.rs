//! SMMUv3 Command queue entries: a bit-exact codec (SMMUv3 chapter 4).
//!
//! A command is 16 bytes, little-endian; we hold it as two `u64` words,
//! `dw0` = bytes 0..8 (bits \[63:0\]) and `dw1` = bytes 8..16 (bits \[127:64\]).
//! The opcode is `dw0[7:0]` (SMMUv3 4.1.1).
//!
//! The model is the **Non-secure** Command queue of an SMMU with stage 1 and
//! stage 2, `SMMU_IDR0.Hyp == 1`, ATS, PRI, the Stall model, range
//! invalidation (`SMMU_IDR3.RIL == 1`), `SMMU_IDR5.DS == 0`, no MPAM, no DPT
//! and no Secure or Realm state. Consequences that shape the codec:
//!
//! - `SSec` (bit 10) is not a field of [`Command`]: on the Non-secure queue
//!   `SSec == 1` is ILLEGAL (SMMUv3 4.1.6), so decoding rejects it.
//! - SCALE is five bits, `dw0[24:20]`: with `SMMU_IDR5.DS == 0` bit 25 is RES0
//!   (SMMUv3 4.4.1.1). Linux's `CMDQ_TLBI_0_SCALE` is also `[24:20]`.
//! - `TTL128` (`dw1[7]`) is RES0: the model has no 128-bit descriptors.
//! - Secure-only, EL3, MPAM and DPT opcodes are recognised but rejected with
//!   [`CmdError::NotAccepted`], because this configuration raises
//!   CERROR_ILL for them (SMMUv3 4.3.5, 4.4.2.5, 4.4.2.11, 4.6).
//!
//! Decoding is strict by default: RES0 bits that are set are reported. The
//! specification lets an implementation either ignore RES0 fields or treat
//! them as malformed (SMMUv3 4.1.5), so [`CmdError::must_raise_cerror_ill`]
//! tells the queue model which errors are mandatory CERROR_ILL and which are
//! merely permitted, and [`Command::decode_permissive`] gives the
//! "ignore RES0" reading.

use super::bits::{bit, flag, get, mask, put};
use crate::addr::{AddrRange, Granule};
use std::fmt;
use std::str::FromStr;

/// SubstreamID width in commands: `dw0[31:12]` (SMMUv3 4.1.6).
const SSID_HI: u32 = 31;
const SSID_LO: u32 = 12;
/// SSV, "Substream valid" (SMMUv3 4.1.6).
const SSV_BIT: u32 = 11;
/// SSec (SMMUv3 4.1.6); only meaningful on the Secure queue.
const SSEC_BIT: u32 = 10;

/// The opcodes the Non-secure model accepts (SMMUv3 4.1.1).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// CMD_PREFETCH_CONFIG (SMMUv3 4.2.1).
    PrefetchConfig = 0x01,
    /// CMD_PREFETCH_ADDR (SMMUv3 4.2.2).
    PrefetchAddr = 0x02,
    /// CMD_CFGI_STE (SMMUv3 4.3.1).
    CfgiSte = 0x03,
    /// CMD_CFGI_STE_RANGE, and CMD_CFGI_ALL when Range = 31 (SMMUv3 4.3.2, 4.3.6).
    CfgiSteRange = 0x04,
    /// CMD_CFGI_CD (SMMUv3 4.3.3).
    CfgiCd = 0x05,
    /// CMD_CFGI_CD_ALL (SMMUv3 4.3.4).
    CfgiCdAll = 0x06,
    /// CMD_TLBI_NH_ALL (SMMUv3 4.4.2.1).
    TlbiNhAll = 0x10,
    /// CMD_TLBI_NH_ASID (SMMUv3 4.4.2.2).
    TlbiNhAsid = 0x11,
    /// CMD_TLBI_NH_VA (SMMUv3 4.4.2.4).
    TlbiNhVa = 0x12,
    /// CMD_TLBI_NH_VAA (SMMUv3 4.4.2.3).
    TlbiNhVaa = 0x13,
    /// CMD_TLBI_EL2_ALL (SMMUv3 4.4.2.7).
    TlbiEl2All = 0x20,
    /// CMD_TLBI_EL2_ASID (SMMUv3 4.4.2.10).
    TlbiEl2Asid = 0x21,
    /// CMD_TLBI_EL2_VA (SMMUv3 4.4.2.8).
    TlbiEl2Va = 0x22,
    /// CMD_TLBI_EL2_VAA (SMMUv3 4.4.2.9).
    TlbiEl2Vaa = 0x23,
    /// CMD_TLBI_S12_VMALL (SMMUv3 4.4.3.2).
    TlbiS12Vmall = 0x28,
    /// CMD_TLBI_S2_IPA (SMMUv3 4.4.3.1).
    TlbiS2Ipa = 0x2A,
    /// CMD_TLBI_NSNH_ALL (SMMUv3 4.4.4.1).
    TlbiNsnhAll = 0x30,
    /// CMD_ATC_INV (SMMUv3 4.5.1).
    AtcInv = 0x40,
    /// CMD_PRI_RESP (SMMUv3 4.5.2).
    PriResp = 0x41,
    /// CMD_RESUME (SMMUv3 4.7.1).
    Resume = 0x44,
    /// CMD_STALL_TERM (SMMUv3 4.7.2).
    StallTerm = 0x45,
    /// CMD_SYNC (SMMUv3 4.7.3).
    Sync = 0x46,
}

impl Opcode {
    /// Every accepted opcode, in numeric order.
    pub const ALL: [Opcode; 22] = [
        Opcode::PrefetchConfig,
        Opcode::PrefetchAddr,
        Opcode::CfgiSte,
        Opcode::CfgiSteRange,
        Opcode::CfgiCd,
        Opcode::CfgiCdAll,
        Opcode::TlbiNhAll,
        Opcode::TlbiNhAsid,
        Opcode::TlbiNhVa,
        Opcode::TlbiNhVaa,
        Opcode::TlbiEl2All,
        Opcode::TlbiEl2Asid,
        Opcode::TlbiEl2Va,
        Opcode::TlbiEl2Vaa,
        Opcode::TlbiS12Vmall,
        Opcode::TlbiS2Ipa,
        Opcode::TlbiNsnhAll,
        Opcode::AtcInv,
        Opcode::PriResp,
        Opcode::Resume,
        Opcode::StallTerm,
        Opcode::Sync,
    ];

    /// The 8-bit opcode value.
    #[inline]
    pub const fn value(self) -> u8 {
        self as u8
    }

    /// The accepted opcode with this value, if any.
    pub fn from_value(op: u8) -> Option<Opcode> {
        Opcode::ALL.into_iter().find(|o| o.value() == op)
    }

    /// The specification's name, e.g. `"CMD_TLBI_NH_VA"`.
    pub const fn name(self) -> &'static str {
        match self {
            Opcode::PrefetchConfig => "CMD_PREFETCH_CONFIG",
            Opcode::PrefetchAddr => "CMD_PREFETCH_ADDR",
            Opcode::CfgiSte => "CMD_CFGI_STE",
            Opcode::CfgiSteRange => "CMD_CFGI_STE_RANGE",
            Opcode::CfgiCd => "CMD_CFGI_CD",
            Opcode::CfgiCdAll => "CMD_CFGI_CD_ALL",
            Opcode::TlbiNhAll => "CMD_TLBI_NH_ALL",
            Opcode::TlbiNhAsid => "CMD_TLBI_NH_ASID",
            Opcode::TlbiNhVa => "CMD_TLBI_NH_VA",
            Opcode::TlbiNhVaa => "CMD_TLBI_NH_VAA",
            Opcode::TlbiEl2All => "CMD_TLBI_EL2_ALL",
            Opcode::TlbiEl2Asid => "CMD_TLBI_EL2_ASID",
            Opcode::TlbiEl2Va => "CMD_TLBI_EL2_VA",
            Opcode::TlbiEl2Vaa => "CMD_TLBI_EL2_VAA",
            Opcode::TlbiS12Vmall => "CMD_TLBI_S12_VMALL",
            Opcode::TlbiS2Ipa => "CMD_TLBI_S2_IPA",
            Opcode::TlbiNsnhAll => "CMD_TLBI_NSNH_ALL",
            Opcode::AtcInv => "CMD_ATC_INV",
            Opcode::PriResp => "CMD_PRI_RESP",
            Opcode::Resume => "CMD_RESUME",
            Opcode::StallTerm => "CMD_STALL_TERM",
            Opcode::Sync => "CMD_SYNC",
        }
    }

    /// Whether the command carries an SSec bit at `dw0[10]` (SMMUv3 4.2, 4.3, 4.7).
    const fn has_ssec(self) -> bool {
        matches!(
            self,
            Opcode::PrefetchConfig
                | Opcode::PrefetchAddr
                | Opcode::CfgiSte
                | Opcode::CfgiSteRange
                | Opcode::CfgiCd
                | Opcode::CfgiCdAll
                | Opcode::Resume
                | Opcode::StallTerm
        )
    }

    /// The bits of (dw0, dw1) this command defines, apart from SSec. Every
    /// other bit is RES0 (SMMUv3 4.1.5).
    const fn defined_bits(self) -> (u64, u64) {
        const OP: u64 = mask(7, 0);
        const SSV: u64 = 1 << SSV_BIT;
        const SSID: u64 = mask(SSID_HI, SSID_LO);
        const SID: u64 = mask(63, 32);
        const VMID: u64 = mask(47, 32);
        const ASID: u64 = mask(63, 48);
        // NUM [16:12], SCALE [24:20] (SMMUv3 4.4.1.1, DS == 0).
        const RANGE: u64 = mask(16, 12) | mask(24, 20);
        // Leaf [0], TTL [9:8], TG [11:10], Address [63:12] (SMMUv3 4.4.1.1, 4.1.6).
        const VA1: u64 = 1 | mask(9, 8) | mask(11, 10) | mask(63, 12);
        // IPA is Address[55:12] (SMMUv3 4.1.6).
        const IPA1: u64 = 1 | mask(9, 8) | mask(11, 10) | mask(55, 12);
        match self {
            Opcode::PrefetchConfig => (OP | SSV | SSID | SID, 0),
            // Size [4:0], Addr [63:12]; Stride and NS are not modelled (RES0:
            // SMMUv3.0 Stride semantics, and NS is RES0 on the NS queue, 4.2.2).
            Opcode::PrefetchAddr => (OP | SSV | SSID | SID, mask(4, 0) | mask(63, 12)),
            Opcode::CfgiSte => (OP | SID, 1),
            Opcode::CfgiSteRange => (OP | SID, mask(4, 0)),
            Opcode::CfgiCd => (OP | SSID | SID, 1),
            Opcode::CfgiCdAll => (OP | SID, 0),
            Opcode::TlbiNhAll | Opcode::TlbiS12Vmall => (OP | VMID, 0),
            Opcode::TlbiNhAsid => (OP | VMID | ASID, 0),
            Opcode::TlbiNhVa => (OP | RANGE | VMID | ASID, VA1),
            Opcode::TlbiNhVaa => (OP | RANGE | VMID, VA1),
            Opcode::TlbiEl2All | Opcode::TlbiNsnhAll => (OP, 0),
            Opcode::TlbiEl2Asid => (OP | ASID, 0),
            Opcode::TlbiEl2Va => (OP | RANGE | ASID, VA1),
            Opcode::TlbiEl2Vaa => (OP | RANGE, VA1),
            Opcode::TlbiS2Ipa => (OP | RANGE | VMID, IPA1),
            // Global [9], SSV, SSID, SID; Size [5:0], Address [63:12] (SMMUv3 4.5.1).
            Opcode::AtcInv => (OP | (1 << 9) | SSV | SSID | SID, mask(5, 0) | mask(63, 12)),
            // PRGIndex [8:0], Resp [13:12] (SMMUv3 4.5.2).
            Opcode::PriResp => (OP | SSV | SSID | SID, mask(8, 0) | mask(13, 12)),
            // Ac [12], Ab [13], StreamID; STAG [15:0] (SMMUv3 4.7.1).
            Opcode::Resume => (OP | mask(13, 12) | SID, mask(15, 0)),
            Opcode::StallTerm => (OP | SID, 0),
            // CS [13:12], MSH [23:22], MSIAttr [27:24], MSIData [63:32];
            // MSIAddress [55:2] (SMMUv3 4.7.3).
            Opcode::Sync => (
                OP | mask(13, 12) | mask(23, 22) | mask(27, 24) | mask(63, 32),
                mask(55, 2),
            ),
        }
    }
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A command name that [`Opcode::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an SMMUv3 command name accepted by the Non-secure model")]
pub struct UnknownCommandName(pub String);

impl FromStr for Opcode {
    type Err = UnknownCommandName;

    /// Parses a specification name with or without the `CMD_` prefix, in any
    /// case; `CFGI_ALL` names the CFGI_STE_RANGE opcode (SMMUv3 4.3.6).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("CMD_").unwrap_or(&upper);
        if bare == "CFGI_ALL" {
            return Ok(Opcode::CfgiSteRange);
        }
        Opcode::ALL
            .into_iter()
            .find(|o| &o.name()[4..] == bare)
            .ok_or_else(|| UnknownCommandName(s.to_string()))
    }
}

/// The address operand shared by the address-based TLBI commands
/// (SMMUv3 4.4.1.1): NH_VA, NH_VAA, EL2_VA, EL2_VAA and S2_IPA.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlbiAddr {
    /// The address with bits \[11:0\] zero: a VA (`Address[63:12]`) or, for
    /// S2_IPA, an IPA (`Address[55:12]`) (SMMUv3 4.1.6).
    pub addr: u64,
    /// Leaf: only last-level entries need be invalidated (`dw1[0]`).
    pub leaf: bool,
    /// TG (`dw1[11:10]`): 0 = not a range operation; otherwise the granule in
    /// the TLBI encoding ([`Granule::tg`]).
    pub tg: u8,
    /// TTL level hint (`dw1[9:8]`); RES0 when TG = 0.
    pub ttl: u8,
    /// NUM (`dw0[16:12]`); RES0 when TG = 0.
    pub num: u8,
    /// SCALE (`dw0[24:20]`, five bits because DS = 0); RES0 when TG = 0.
    pub scale: u8,
}

impl TlbiAddr {
    /// A classic non-range operand for `addr` (TG = 0).
    pub const fn single(addr: u64, leaf: bool) -> TlbiAddr {
        TlbiAddr {
            addr: addr & !0xfff,
            leaf,
            tg: 0,
            ttl: 0,
            num: 0,
            scale: 0,
        }
    }

    /// A range operand covering `(num + 1) << scale` granules from `addr`.
    pub const fn range(
        addr: u64,
        leaf: bool,
        granule: Granule,
        ttl: u8,
        num: u8,
        scale: u8,
    ) -> TlbiAddr {
        TlbiAddr {
            addr: addr & !0xfff,
            leaf,
            tg: granule.tg(),
            ttl,
            num,
            scale,
        }
    }

    /// The granule TG names, or `None` for a non-range operation.
    pub const fn granule(&self) -> Option<Granule> {
        Granule::from_tg(self.tg)
    }

    /// TTL as the SMMU uses it: with `SMMU_IDR5.DS == 0`, TG = 16K and
    /// TTL = 0b01 is Reserved and treated as 0b00 (SMMUv3 4.4.1.1).
    pub const fn effective_ttl(&self) -> u8 {
        if self.tg == 2 && self.ttl == 1 {
            0
        } else {
            self.ttl
        }
    }

    /// The level hint, if any: the level of the leaf entries to invalidate.
    pub const fn level_hint(&self) -> Option<u8> {
        match (self.tg, self.effective_ttl()) {
            (0, _) | (_, 0) => None,
            (_, ttl) => Some(ttl),
        }
    }

    /// Whether this is the Reserved combination TG != 0, NUM = 0, SCALE = 0
    /// and (effective) TTL = 0, which raises CERROR_ILL (SMMUv3 4.4.1.1). The
    /// 16K/TTL=01 case counts as TTL = 0, as the spec's note spells out.
    pub const fn is_reserved_combination(&self) -> bool {
        self.tg != 0 && self.num == 0 && self.scale == 0 && self.effective_ttl() == 0
    }

    /// The addresses the operand names. TG != 0: `(NUM+1) * 2^SCALE` granules
    /// from the address, not wrapping at the top (SMMUv3 4.4.1.1; unlike the
    /// PE's `2^(5*SCALE+1)`). TG = 0: the single address, which hits every
    /// entry that contains it (SMMUv3 4.4).
    pub fn range_covered(&self) -> AddrRange {
        match self.granule() {
            None => AddrRange {
                first: self.addr,
                last: self.addr,
            },
            Some(g) => {
                let pages = (u128::from(self.num) + 1) << u32::from(self.scale).min(64);
                let len = pages << g.shift();
                AddrRange::from_len(self.addr, u64::try_from(len).unwrap_or(u64::MAX))
            }
        }
    }

    fn encode_dw0(&self) -> u64 {
        if self.tg == 0 {
            // NUM and SCALE are RES0 when TG = 0; never encode them.
            return 0;
        }
        put(u64::from(self.num), 16, 12) | put(u64::from(self.scale), 24, 20)
    }

    fn encode_dw1(&self, addr_hi: u32) -> u64 {
        let ttl = if self.tg == 0 { 0 } else { self.ttl };
        flag(self.leaf, 0)
            | put(u64::from(ttl), 9, 8)
            | put(u64::from(self.tg), 11, 10)
            | (self.addr & mask(addr_hi, 12))
    }

    fn decode(dw0: u64, dw1: u64, addr_hi: u32) -> TlbiAddr {
        TlbiAddr {
            addr: dw1 & mask(addr_hi, 12),
            leaf: bit(dw1, 0),
            tg: get(dw1, 11, 10) as u8,
            ttl: get(dw1, 9, 8) as u8,
            num: get(dw0, 16, 12) as u8,
            scale: get(dw0, 24, 20) as u8,
        }
    }
}

/// CMD_PRI_RESP Resp (SMMUv3 4.5.2); 0b11 is Reserved and ILLEGAL.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PriResp {
    /// 0b00 ResponseFailure: permanent non-paging error (Linux `PRI_RESP_DENY`).
    Failure = 0,
    /// 0b01 InvalidRequest: page-in failed for one or more pages (Linux `PRI_RESP_FAIL`).
    InvalidRequest = 1,
    /// 0b10 Success (Linux `PRI_RESP_SUCC`).
    Success = 2,
}

/// CMD_SYNC ComplSignal (SMMUv3 4.7.3); 0b11 is Reserved and ILLEGAL.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum SyncCs {
    /// 0b00 SIG_NONE: no completion signal.
    None = 0,
    /// 0b01 SIG_IRQ: interrupt, as an MSI write of MSIData to MSIAddress when non-zero.
    Irq = 1,
    /// 0b10 SIG_SEV: a WFE wake-up event.
    Sev = 2,
}

/// What a CMD_RESUME does with the stalled transaction (SMMUv3 4.7.1).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ResumeEffect {
    /// Ac = 1: retry as though newly arrived (Ab is IGNORED).
    Retry,
    /// Ac = 0, Ab = 0: terminate, completing with RAZ/WI.
    TerminateRazWi,
    /// Ac = 0, Ab = 1: terminate with an abort to the client.
    TerminateAbort,
}

/// One command of the Non-secure Command queue, with its fields as the
/// specification names them. Field widths: StreamID 32 bits, SubstreamID 20,
/// VMID and ASID 16. [`Command::encode`] truncates wider values.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// CMD_PREFETCH_CONFIG(StreamID, SubstreamID, SSV) (SMMUv3 4.2.1).
    PrefetchConfig {
        /// StreamID (`dw0[63:32]`).
        sid: u32,
        /// SSV (`dw0[11]`).
        ssv: bool,
        /// SubstreamID (`dw0[31:12]`).
        ssid: u32,
    },
    /// CMD_PREFETCH_ADDR(StreamID, SubstreamID, SSV, Addr, Size) (SMMUv3 4.2.2).
    PrefetchAddr {
        /// StreamID (`dw0[63:32]`).
        sid: u32,
        /// SSV (`dw0[11]`).
        ssv: bool,
        /// SubstreamID (`dw0[31:12]`).
        ssid: u32,
        /// Address\[63:12\] (`dw1[63:12]`).
        addr: u64,
        /// Size (`dw1[4:0]`): 2^Size translations at the 4 KiB stride.
        size: u8,
    },
    /// CMD_CFGI_STE(StreamID, Leaf) (SMMUv3 4.3.1).
    CfgiSte {
        /// StreamID (`dw0[63:32]`).
        sid: u32,
        /// Leaf (`dw1[0]`): 1 = the STE only; 0 = also cached L1STDs.
        leaf: bool,
    },
    /// CMD_CFGI_STE_RANGE(StreamID, Range) (SMMUv3 4.3.2); Range = 31 is
    /// CMD_CFGI_ALL (4.3.6).
    CfgiSteRange {
        /// StreamID (`dw0[63:32]`); its low Range+1 bits are IGNORED.
        sid: u32,
        /// Range (`dw1[4:0]`): 2^(Range+1) StreamIDs, aligned.
        range: u8,
    },
    /// CMD_CFGI_CD(StreamID, SubstreamID, Leaf) (SMMUv3 4.3.3). No SSV: the
    /// SubstreamID is a CD-table index.
    CfgiCd {
        /// StreamID (`dw0[63:32]`).
        sid: u32,
        /// SubstreamID (`dw0[31:12]`).
        ssid: u32,
        /// Leaf (`dw1[0]`): 0 also invalidates the L1CD.
        leaf: bool,
    },
    /// CMD_CFGI_CD_ALL(StreamID) (SMMUv3 4.3.4).
    CfgiCdAll {
        /// StreamID (`dw0[63:32]`).
        sid: u32,
    },
    /// CMD_TLBI_NH_ALL(VMID) (SMMUv3 4.4.2.1).
    TlbiNhAll {
        /// VMID (`dw0[47:32]`).
        vmid: u16,
    },
    /// CMD_TLBI_NH_ASID(VMID, ASID) (SMMUv3 4.4.2.2).
    TlbiNhAsid {
        /// VMID (`dw0[47:32]`).
        vmid: u16,
        /// ASID (`dw0[63:48]`).
        asid: u16,
    },
    /// CMD_TLBI_NH_VA(VMID, ASID, Addr, Leaf) (SMMUv3 4.4.2.4).
    TlbiNhVa {
        /// VMID (`dw0[47:32]`).
        vmid: u16,
        /// ASID (`dw0[63:48]`).
        asid: u16,
        /// VA, Leaf and range fields.
        va: TlbiAddr,
    },
    /// CMD_TLBI_NH_VAA(VMID, Addr, Leaf) (SMMUv3 4.4.2.3).
    TlbiNhVaa {
        /// VMID (`dw0[47:32]`).
        vmid: u16,
        /// VA, Leaf and range fields.
        va: TlbiAddr,
    },
    /// CMD_TLBI_EL2_ALL (SMMUv3 4.4.2.7).
    TlbiEl2All,
    /// CMD_TLBI_EL2_ASID(ASID) (SMMUv3 4.4.2.10).
    TlbiEl2Asid {
        /// ASID (`dw0[63:48]`).
        asid: u16,
    },
    /// CMD_TLBI_EL2_VA(ASID, Addr, Leaf) (SMMUv3 4.4.2.8); the ASID only
    /// matters when `SMMU_CR2.E2H == 1`.
    TlbiEl2Va {
        /// ASID (`dw0[63:48]`).
        asid: u16,
        /// VA, Leaf and range fields.
        va: TlbiAddr,
    },
    /// CMD_TLBI_EL2_VAA(Addr, Leaf) (SMMUv3 4.4.2.9).
    TlbiEl2Vaa {
        /// VA, Leaf and range fields.
        va: TlbiAddr,
    },
    /// CMD_TLBI_S12_VMALL(VMID) (SMMUv3 4.4.3.2).
    TlbiS12Vmall {
        /// VMID (`dw0[47:32]`).
        vmid: u16,
    },
    /// CMD_TLBI_S2_IPA(VMID, Addr, Leaf) (SMMUv3 4.4.3.1). Need not remove
    /// combined stage 1+2 entries.
    TlbiS2Ipa {
        /// VMID (`dw0[47:32]`).
        vmid: u16,
        /// IPA (`dw1[55:12]`), Leaf and range fields.
        ipa: TlbiAddr,
    },
    /// CMD_TLBI_NSNH_ALL (SMMUv3 4.4.4.1): all NS non-EL2 entries, all stages.
    TlbiNsnhAll,
    /// CMD_ATC_INV(StreamID, SubstreamID, SSV, Global, Address, Size) (SMMUv3 4.5.1).
    AtcInv {
        /// StreamID (`dw0[63:32]`).
        sid: u32,
        /// SSV (`dw0[11]`): 0 = all PASIDs and non-PASID translations.
        ssv: bool,
        /// SubstreamID (`dw0[31:12]`), the PASID when SSV = 1.
        ssid: u32,
        /// Global (`dw0[9]`), IGNORED when SSV = 0.
        global: bool,
        /// Address\[63:12\] (`dw1[63:12]`).
        addr: u64,
        /// Size (`dw1[5:0]`): a naturally aligned 4 KiB * 2^Size span; 52 = all.
        size: u8,
    },
    /// CMD_PRI_RESP(StreamID, SubstreamID, SSV, PRGIndex, Resp) (SMMUv3 4.5.2).
    PriResp {
        /// StreamID (`dw0[63:32]`).
        sid: u32,
        /// SSV (`dw0[11]`).
        ssv: bool,
        /// SubstreamID (`dw0[31:12]`).
        ssid: u32,
        /// PRGIndex (`dw1[8:0]`).
        grpid: u16,
        /// Resp (`dw1[13:12]`).
        resp: PriResp,
    },
    /// CMD_RESUME(StreamID, STAG, Action, Abort) (SMMUv3 4.7.1). Linux packs
    /// Ac and Ab as a two-bit RESP: 0 TERM, 1 RETRY, 2 ABORT; 3 is Retry too.
    Resume {
        /// StreamID (`dw0[63:32]`).
        sid: u32,
        /// STAG from the stall event record (`dw1[15:0]`).
        stag: u16,
        /// Ac (`dw0[12]`): 1 = retry, 0 = terminate.
        retry: bool,
        /// Ab (`dw0[13]`): terminate with abort (IGNORED when retrying).
        abort: bool,
    },
    /// CMD_STALL_TERM(StreamID) (SMMUv3 4.7.2).
    StallTerm {
        /// StreamID (`dw0[63:32]`).
        sid: u32,
    },
    /// CMD_SYNC(ComplSignal, MSIAddress, MSIData, MSIWriteAttributes) (SMMUv3 4.7.3).
    Sync {
        /// ComplSignal (`dw0[13:12]`).
        cs: SyncCs,
        /// MSH, MSI Shareability (`dw0[23:22]`); 0b01 behaves as 0b00.
        msh: u8,
        /// MSIAttr (`dw0[27:24]`), encoded like STE.MemAttr.
        msiattr: u8,
        /// MSIData (`dw0[63:32]`).
        msidata: u32,
        /// MSIAddress\[55:2\] (`dw1[55:2]`), bits \[1:0\] zero; 0 = no MSI.
        msiaddr: u64,
    },
}

/// Whether a decode error obliges the SMMU to raise CERROR_ILL, or only
/// permits it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum IllegalKind {
    /// The specification requires CERROR_ILL.
    Required,
    /// The implementation may raise CERROR_ILL or behave otherwise (ignore
    /// RES0 bits, or use an UNKNOWN span).
    Permitted,
}

/// Why 16 bytes are not a valid command on the Non-secure Command queue.
/// Every variant names the field and the value (SMMUv3 4.1.3, 4.1.5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdError {
    /// A Reserved or IMPLEMENTATION DEFINED opcode (SMMUv3 4.1.1): CERROR_ILL.
    #[error("opcode {opcode:#04x} is not a command")]
    UnknownOpcode {
        /// The opcode, `dw0[7:0]`.
        opcode: u8,
    },
    /// An architected opcode that this Non-secure, no-MPAM, no-DPT model
    /// must reject with CERROR_ILL.
    #[error("{name} (opcode {opcode:#04x}) raises CERROR_ILL here: {why}")]
    NotAccepted {
        /// The opcode, `dw0[7:0]`.
        opcode: u8,
        /// Its specification name.
        name: &'static str,
        /// The rule that rejects it.
        why: &'static str,
    },
    /// SSec = 1 on the Non-secure queue is ILLEGAL (SMMUv3 4.1.6).
    #[error("{command}: SSec (dw0[10]) = 1 is ILLEGAL on the Non-secure Command queue")]
    SsecSet {
        /// The command name.
        command: &'static str,
    },
    /// RES0 bits outside any field of the command are set (SMMUv3 4.1.5).
    #[error("{command}: RES0 bits {bits:#x} of dw{word} are set")]
    Res0Bits {
        /// The command name.
        command: &'static str,
        /// 0 for dw0, 1 for dw1.
        word: u8,
        /// The offending bits, in place.
        bits: u64,
    },
    /// A field that is RES0 in this context holds a non-zero value.
    #[error("{command}: {field} = {value:#x} but it is RES0 when {when}")]
    Res0Field {
        /// The command name.
        command: &'static str,
        /// The field name.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The condition that makes it RES0.
        when: &'static str,
    },
    /// A field holds a Reserved value that the specification makes ILLEGAL.
    #[error("{command}: {field} = {value:#x} is Reserved ({why})")]
    ReservedValue {
        /// The command name.
        command: &'static str,
        /// The field name.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The rule.
        why: &'static str,
    },
    /// TG != 0 with NUM = 0, SCALE = 0 and effective TTL = 0 (SMMUv3 4.4.1.1).
    #[error(
        "{command}: TG = {tg:#b} with NUM = 0, SCALE = 0 and TTL = {ttl:#b} \
         (effective 0b00) is a Reserved combination"
    )]
    ReservedRange {
        /// The command name.
        command: &'static str,
        /// TG.
        tg: u8,
        /// TTL as written (0b01 with TG = 16K is treated as 0b00).
        ttl: u8,
    },
    /// CMD_ATC_INV Size > 52 (SMMUv3 4.5.1): CERROR_ILL permitted, or an
    /// UNKNOWN span.
    #[error("CMD_ATC_INV: Size = {size} is greater than 52")]
    AtcSizeTooLarge {
        /// Size, `dw1[5:0]`.
        size: u8,
    },
}

impl CmdError {
    /// Whether the SMMU must raise CERROR_ILL ([`IllegalKind::Required`]) or
    /// merely may ([`IllegalKind::Permitted`]) for this command.
    pub const fn illegal_kind(&self) -> IllegalKind {
        match self {
            CmdError::Res0Bits { .. } | CmdError::Res0Field { .. } => IllegalKind::Permitted,
            CmdError::AtcSizeTooLarge { .. } => IllegalKind::Permitted,
            CmdError::UnknownOpcode { .. }
            | CmdError::NotAccepted { .. }
            | CmdError::SsecSet { .. }
            | CmdError::ReservedValue { .. }
            | CmdError::ReservedRange { .. } => IllegalKind::Required,
        }
    }

    /// Shorthand for `illegal_kind() == IllegalKind::Required`.
    pub const fn must_raise_cerror_ill(&self) -> bool {
        matches!(self.illegal_kind(), IllegalKind::Required)
    }

    /// The field the error is about, when it is a single named field.
    pub const fn field(&self) -> Option<&'static str> {
        match self {
            CmdError::UnknownOpcode { .. } | CmdError::NotAccepted { .. } => Some("opcode"),
            CmdError::SsecSet { .. } => Some("SSec"),
            CmdError::Res0Bits { .. } => None,
            CmdError::Res0Field { field, .. } | CmdError::ReservedValue { field, .. } => {
                Some(field)
            }
            CmdError::ReservedRange { .. } => Some("TG/NUM/SCALE/TTL"),
            CmdError::AtcSizeTooLarge { .. } => Some("Size"),
        }
    }
}

/// Architected opcodes the Non-secure model rejects, with the reason
/// (SMMUv3 4.1.1 and the sections cited).
fn not_accepted(op: u8) -> Option<(&'static str, &'static str)> {
    const SECURE_ONLY: &str = "valid only on the Secure Command queue (SMMUv3 4.4.2, 4.4.3, 4.4.4)";
    Some(match op {
        0x07 => (
            "CMD_CFGI_VMS_PIDM",
            "SMMU_IDR3.MPAM == 0 in this model (SMMUv3 4.3.5)",
        ),
        0x18 => ("CMD_TLBI_EL3_ALL", SECURE_ONLY),
        0x1A => ("CMD_TLBI_EL3_VA", SECURE_ONLY),
        0x50 => ("CMD_TLBI_S_EL2_ALL", SECURE_ONLY),
        0x51 => ("CMD_TLBI_S_EL2_ASID", SECURE_ONLY),
        0x52 => ("CMD_TLBI_S_EL2_VA", SECURE_ONLY),
        0x53 => ("CMD_TLBI_S_EL2_VAA", SECURE_ONLY),
        0x58 => ("CMD_TLBI_S_S12_VMALL", SECURE_ONLY),
        0x5A => ("CMD_TLBI_S_S2_IPA", SECURE_ONLY),
        0x60 => ("CMD_TLBI_SNH_ALL", SECURE_ONLY),
        0x70 => (
            "CMD_DPTI_ALL",
            "SMMU_IDR3.DPT == 0 in this model (SMMUv3 4.6.1)",
        ),
        0x73 => (
            "CMD_DPTI_PA",
            "SMMU_IDR3.DPT == 0 in this model (SMMUv3 4.6.2)",
        ),
        _ => return None,
    })
}

impl Command {
    /// CMD_SYNC that signals completion by SEV (CS = 0b10), with MSH Inner
    /// Shareable and MSIAttr Inner+Outer Write-Back (SMMUv3 4.7.3): the
    /// form software issues when it polls CONS instead of waiting for an
    /// MSI write.
    pub const SYNC_SEV: Command = Command::Sync {
        cs: SyncCs::Sev,
        msh: 3,
        msiattr: 0xf,
        msidata: 0,
        msiaddr: 0,
    };

    /// The command's opcode.
    pub const fn opcode(&self) -> Opcode {
        match self {
            Command::PrefetchConfig { .. } => Opcode::PrefetchConfig,
            Command::PrefetchAddr { .. } => Opcode::PrefetchAddr,
            Command::CfgiSte { .. } => Opcode::CfgiSte,
            Command::CfgiSteRange { .. } => Opcode::CfgiSteRange,
            Command::CfgiCd { .. } => Opcode::CfgiCd,
            Command::CfgiCdAll { .. } => Opcode::CfgiCdAll,
            Command::TlbiNhAll { .. } => Opcode::TlbiNhAll,
            Command::TlbiNhAsid { .. } => Opcode::TlbiNhAsid,
            Command::TlbiNhVa { .. } => Opcode::TlbiNhVa,
            Command::TlbiNhVaa { .. } => Opcode::TlbiNhVaa,
            Command::TlbiEl2All => Opcode::TlbiEl2All,
            Command::TlbiEl2Asid { .. } => Opcode::TlbiEl2Asid,
            Command::TlbiEl2Va { .. } => Opcode::TlbiEl2Va,
            Command::TlbiEl2Vaa { .. } => Opcode::TlbiEl2Vaa,
            Command::TlbiS12Vmall { .. } => Opcode::TlbiS12Vmall,
            Command::TlbiS2Ipa { .. } => Opcode::TlbiS2Ipa,
            Command::TlbiNsnhAll => Opcode::TlbiNsnhAll,
            Command::AtcInv { .. } => Opcode::AtcInv,
            Command::PriResp { .. } => Opcode::PriResp,
            Command::Resume { .. } => Opcode::Resume,
            Command::StallTerm { .. } => Opcode::StallTerm,
            Command::Sync { .. } => Opcode::Sync,
        }
    }

    /// The specification's name; CFGI_STE_RANGE with Range = 31 is
    /// `"CMD_CFGI_ALL"` (SMMUv3 4.3.6).
    pub const fn name(&self) -> &'static str {
        match self {
            Command::CfgiSteRange { range: 31, .. } => "CMD_CFGI_ALL",
            c => c.opcode().name(),
        }
    }

    /// CMD_CFGI_ALL: CFGI_STE_RANGE with Range = 31 (SMMUv3 4.3.6).
    pub const fn cfgi_all() -> Command {
        Command::CfgiSteRange { sid: 0, range: 31 }
    }

    /// The TLBI address operand, for the address-based TLBI commands.
    pub const fn tlbi_addr(&self) -> Option<&TlbiAddr> {
        match self {
            Command::TlbiNhVa { va, .. }
            | Command::TlbiNhVaa { va, .. }
            | Command::TlbiEl2Va { va, .. }
            | Command::TlbiEl2Vaa { va } => Some(va),
            Command::TlbiS2Ipa { ipa, .. } => Some(ipa),
            _ => None,
        }
    }

    /// The input addresses the command invalidates: the TLBI range formula for
    /// address-based TLBIs (SMMUv3 4.4.1.1), and for CMD_ATC_INV the naturally
    /// aligned `4 KiB * 2^Size` span containing Address, everything when
    /// Size >= 52 (SMMUv3 4.5.1; Sizes above 52 give an UNKNOWN span, so the
    /// whole space is the safe over-approximation). `None` for commands that
    /// are not address-based.
    pub fn invalidated_range(&self) -> Option<AddrRange> {
        match self {
            Command::AtcInv { addr, size, .. } => {
                Some(AddrRange::span(*addr, 12 + u32::from((*size).min(52))))
            }
            c => c.tlbi_addr().map(TlbiAddr::range_covered),
        }
    }

    /// The 16-byte little-endian encoding as (dw0, dw1).
    pub fn encode(&self) -> [u64; 2] {
        let op = u64::from(self.opcode().value());
        let sid = |s: u32| u64::from(s) << 32;
        let ssid = |s: u32| put(u64::from(s), SSID_HI, SSID_LO);
        let vmid = |v: u16| u64::from(v) << 32;
        let asid = |a: u16| u64::from(a) << 48;
        let (dw0, dw1) = match *self {
            Command::PrefetchConfig {
                sid: s,
                ssv,
                ssid: ss,
            } => (sid(s) | ssid(ss) | flag(ssv, SSV_BIT), 0),
            Command::PrefetchAddr {
                sid: s,
                ssv,
                ssid: ss,
                addr,
                size,
            } => (
                sid(s) | ssid(ss) | flag(ssv, SSV_BIT),
                (addr & mask(63, 12)) | put(u64::from(size), 4, 0),
            ),
            Command::CfgiSte { sid: s, leaf } => (sid(s), flag(leaf, 0)),
            Command::CfgiSteRange { sid: s, range } => (sid(s), put(u64::from(range), 4, 0)),
            Command::CfgiCd {
                sid: s,
                ssid: ss,
                leaf,
            } => (sid(s) | ssid(ss), flag(leaf, 0)),
            Command::CfgiCdAll { sid: s } => (sid(s), 0),
            Command::TlbiNhAll { vmid: v } | Command::TlbiS12Vmall { vmid: v } => (vmid(v), 0),
            Command::TlbiNhAsid { vmid: v, asid: a } => (vmid(v) | asid(a), 0),
            Command::TlbiNhVa {
                vmid: v,
                asid: a,
                va,
            } => (vmid(v) | asid(a) | va.encode_dw0(), va.encode_dw1(63)),
            Command::TlbiNhVaa { vmid: v, va } => (vmid(v) | va.encode_dw0(), va.encode_dw1(63)),
            Command::TlbiEl2All | Command::TlbiNsnhAll => (0, 0),
            Command::TlbiEl2Asid { asid: a } => (asid(a), 0),
            Command::TlbiEl2Va { asid: a, va } => (asid(a) | va.encode_dw0(), va.encode_dw1(63)),
            Command::TlbiEl2Vaa { va } => (va.encode_dw0(), va.encode_dw1(63)),
            Command::TlbiS2Ipa { vmid: v, ipa } => (vmid(v) | ipa.encode_dw0(), ipa.encode_dw1(55)),
            Command::AtcInv {
                sid: s,
                ssv,
                ssid: ss,
                global,
                addr,
                size,
            } => (
                sid(s) | ssid(ss) | flag(ssv, SSV_BIT) | flag(global, 9),
                (addr & mask(63, 12)) | put(u64::from(size), 5, 0),
            ),
            Command::PriResp {
                sid: s,
                ssv,
                ssid: ss,
                grpid,
                resp,
            } => (
                sid(s) | ssid(ss) | flag(ssv, SSV_BIT),
                put(u64::from(grpid), 8, 0) | put(resp as u64, 13, 12),
            ),
            Command::Resume {
                sid: s,
                stag,
                retry,
                abort,
            } => (sid(s) | flag(retry, 12) | flag(abort, 13), u64::from(stag)),
            Command::StallTerm { sid: s } => (sid(s), 0),
            Command::Sync {
                cs,
                msh,
                msiattr,
                msidata,
                msiaddr,
            } => (
                put(cs as u64, 13, 12)
                    | put(u64::from(msh), 23, 22)
                    | put(u64::from(msiattr), 27, 24)
                    | (u64::from(msidata) << 32),
                msiaddr & mask(55, 2),
            ),
        };
        [dw0 | op, dw1]
    }

    /// Decodes a command strictly: RES0 bits and RES0-in-context fields are
    /// errors, as are Reserved values and combinations (SMMUv3 4.1.3-4.1.5).
    pub fn decode(words: [u64; 2]) -> Result<Command, CmdError> {
        Command::decode_inner(words, true)
    }

    /// Decodes as an implementation that ignores RES0 fields would
    /// (SMMUv3 4.1.5): only errors that must raise CERROR_ILL are reported,
    /// and a CMD_ATC_INV Size above 52 is kept (its span is then UNKNOWN).
    pub fn decode_permissive(words: [u64; 2]) -> Result<Command, CmdError> {
        Command::decode_inner(words, false)
    }

    fn decode_inner(words: [u64; 2], strict: bool) -> Result<Command, CmdError> {
        let [dw0, dw1] = words;
        let raw_op = get(dw0, 7, 0) as u8;
        let op = match Opcode::from_value(raw_op) {
            Some(op) => op,
            None => {
                return Err(match not_accepted(raw_op) {
                    Some((name, why)) => CmdError::NotAccepted {
                        opcode: raw_op,
                        name,
                        why,
                    },
                    None => CmdError::UnknownOpcode { opcode: raw_op },
                })
            }
        };
        let name = op.name();
        if op.has_ssec() && bit(dw0, SSEC_BIT) {
            return Err(CmdError::SsecSet { command: name });
        }
        if strict {
            let (m0, m1) = op.defined_bits();
            let ssec = if op.has_ssec() { 1 << SSEC_BIT } else { 0 };
            let extra0 = dw0 & !(m0 | ssec);
            if extra0 != 0 {
                return Err(CmdError::Res0Bits {
                    command: name,
                    word: 0,
                    bits: extra0,
                });
            }
            let extra1 = dw1 & !m1;
            if extra1 != 0 {
                return Err(CmdError::Res0Bits {
                    command: name,
                    word: 1,
                    bits: extra1,
                });
            }
        }
        // Fields are extracted from the defined positions only, so the
        // permissive reading drops RES0 bits.
        let sid = get(dw0, 63, 32) as u32;
        let ssid = get(dw0, SSID_HI, SSID_LO) as u32;
        let ssv = bit(dw0, SSV_BIT);
        let vmid = get(dw0, 47, 32) as u16;
        let asid = get(dw0, 63, 48) as u16;
        let tlbi = |addr_hi: u32| -> Result<TlbiAddr, CmdError> {
            let mut t = TlbiAddr::decode(dw0, dw1, addr_hi);
            if t.tg == 0 {
                // TTL, NUM and SCALE are RES0 when TG = 0 (SMMUv3 4.4.1.1).
                for (field, value) in [("TTL", t.ttl), ("NUM", t.num), ("SCALE", t.scale)] {
                    if strict && value != 0 {
                        return Err(CmdError::Res0Field {
                            command: name,
                            field,
                            value: value.into(),
                            when: "TG = 0",
                        });
                    }
                }
                t.ttl = 0;
                t.num = 0;
                t.scale = 0;
            } else if t.is_reserved_combination() {
                return Err(CmdError::ReservedRange {
                    command: name,
                    tg: t.tg,
                    ttl: t.ttl,
                });
            }
            Ok(t)
        };
        Ok(match op {
            Opcode::PrefetchConfig => Command::PrefetchConfig { sid, ssv, ssid },
            Opcode::PrefetchAddr => Command::PrefetchAddr {
                sid,
                ssv,
                ssid,
                addr: dw1 & mask(63, 12),
                size: get(dw1, 4, 0) as u8,
            },
            Opcode::CfgiSte => Command::CfgiSte {
                sid,
                leaf: bit(dw1, 0),
            },
            Opcode::CfgiSteRange => Command::CfgiSteRange {
                sid,
                range: get(dw1, 4, 0) as u8,
            },
            Opcode::CfgiCd => Command::CfgiCd {
                sid,
                ssid,
                leaf: bit(dw1, 0),
            },
            Opcode::CfgiCdAll => Command::CfgiCdAll { sid },
            Opcode::TlbiNhAll => Command::TlbiNhAll { vmid },
            Opcode::TlbiNhAsid => Command::TlbiNhAsid { vmid, asid },
            Opcode::TlbiNhVa => Command::TlbiNhVa {
                vmid,
                asid,
                va: tlbi(63)?,
            },
            Opcode::TlbiNhVaa => Command::TlbiNhVaa {
                vmid,
                va: tlbi(63)?,
            },
            Opcode::TlbiEl2All => Command::TlbiEl2All,
            Opcode::TlbiEl2Asid => Command::TlbiEl2Asid { asid },
            Opcode::TlbiEl2Va => Command::TlbiEl2Va {
                asid,
                va: tlbi(63)?,
            },
            Opcode::TlbiEl2Vaa => Command::TlbiEl2Vaa { va: tlbi(63)? },
            Opcode::TlbiS12Vmall => Command::TlbiS12Vmall { vmid },
            Opcode::TlbiS2Ipa => Command::TlbiS2Ipa {
                vmid,
                ipa: tlbi(55)?,
            },
            Opcode::TlbiNsnhAll => Command::TlbiNsnhAll,
            Opcode::AtcInv => {
                let size = get(dw1, 5, 0) as u8;
                if strict && size > 52 {
                    return Err(CmdError::AtcSizeTooLarge { size });
                }
                Command::AtcInv {
                    sid,
                    ssv,
                    ssid,
                    global: bit(dw0, 9),
                    addr: dw1 & mask(63, 12),
                    size,
                }
            }
            Opcode::PriResp => Command::PriResp {
                sid,
                ssv,
                ssid,
                grpid: get(dw1, 8, 0) as u16,
                resp: match get(dw1, 13, 12) {
                    0 => PriResp::Failure,
                    1 => PriResp::InvalidRequest,
                    2 => PriResp::Success,
                    v => {
                        return Err(CmdError::ReservedValue {
                            command: name,
                            field: "Resp",
                            value: v,
                            why: "0b11 is Reserved and ILLEGAL, SMMUv3 4.5.2",
                        })
                    }
                },
            },
            Opcode::Resume => Command::Resume {
                sid,
                stag: get(dw1, 15, 0) as u16,
                retry: bit(dw0, 12),
                abort: bit(dw0, 13),
            },
            Opcode::StallTerm => Command::StallTerm { sid },
            Opcode::Sync => Command::Sync {
                cs: match get(dw0, 13, 12) {
                    0 => SyncCs::None,
                    1 => SyncCs::Irq,
                    2 => SyncCs::Sev,
                    v => {
                        return Err(CmdError::ReservedValue {
                            command: name,
                            field: "CS",
                            value: v,
                            why: "0b11 is Reserved and causes CERROR_ILL, SMMUv3 4.7.3",
                        })
                    }
                },
                msh: get(dw0, 23, 22) as u8,
                msiattr: get(dw0, 27, 24) as u8,
                msidata: get(dw0, 63, 32) as u32,
                msiaddr: dw1 & mask(55, 2),
            },
        })
    }

    /// Classifies raw command words for the queue model: `None` when the
    /// command is acceptable, otherwise the strict decode error (use
    /// [`CmdError::illegal_kind`] to choose between CERROR_ILL and ignoring).
    pub fn check(words: [u64; 2]) -> Option<CmdError> {
        Command::decode(words).err()
    }

    /// What a CMD_RESUME does (SMMUv3 4.7.1); `None` for other commands.
    pub const fn resume_effect(&self) -> Option<ResumeEffect> {
        match *self {
            Command::Resume { retry: true, .. } => Some(ResumeEffect::Retry),
            Command::Resume { abort: false, .. } => Some(ResumeEffect::TerminateRazWi),
            Command::Resume { abort: true, .. } => Some(ResumeEffect::TerminateAbort),
            _ => None,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [dw0, dw1] = self.encode();
        write!(f, "{} [{dw0:#018x}, {dw1:#018x}]", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_opcode_message() {
        let e = Command::decode([0x99, 0]).unwrap_err();
        assert_eq!(e.to_string(), "opcode 0x99 is not a command");
        assert!(e.must_raise_cerror_ill());
    }

    #[test]
    fn names_parse_both_ways() {
        for op in Opcode::ALL {
            assert_eq!(op.name().parse::<Opcode>(), Ok(op));
            assert_eq!(op.name()[4..].to_lowercase().parse::<Opcode>(), Ok(op));
        }
        assert_eq!("cfgi_all".parse::<Opcode>(), Ok(Opcode::CfgiSteRange));
        assert!("CMD_TLBI_NH_BOGUS".parse::<Opcode>().is_err());
    }
}
