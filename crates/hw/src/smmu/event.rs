//! SMMUv3 event records: a bit-exact codec (SMMUv3 7.3).
//!
//! A record is 32 bytes, little-endian, held as four `u64` words `dw0..dw3`
//! (bits \[63:0\], \[127:64\], \[191:128\], \[255:192\]). Common header (SMMUv3 7.3):
//! event number `dw0[7:0]`, SSV `dw0[11]`, SubstreamID `dw0[31:12]`,
//! StreamID `dw0[63:32]`.
//!
//! Layouts were checked against the SMMUv3 7.3 record tables where the
//! markdown conversion kept them (F_UUT, C_BAD_*, F_STE_FETCH,
//! F_TRANSL_FORBIDDEN, F_CFG_CONFLICT, E_PAGE_REQUEST) and otherwise against
//! the 7.3 field descriptions plus Linux `EVTQ_*` and an independent
//! (Microsoft) SMMUv3 header, which agree. F_BAD_ATS_TREQ's dw1 layout rests on
//! that header alone.
//!
//! Fields the model does not produce are RES0 here and decoding reports
//! them: GPCF (RME only), NSIPA (Secure queue only), the SMMUv3.4
//! Overlay/AssuredOnly/DirtyBit permission-fault bits, and IMPLEMENTATION
//! DEFINED parts other than the Reason fields.

use super::bits::{bit, flag, get, mask, put};
use std::fmt;

/// Event numbers of the records the model produces (SMMUv3 7.3).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum EventKind {
    /// F_UUT, unsupported upstream transaction (7.3.2).
    FUut = 0x01,
    /// C_BAD_STREAMID, StreamID out of range (7.3.3).
    CBadStreamId = 0x02,
    /// F_STE_FETCH, external abort fetching an STE (7.3.4).
    FSteFetch = 0x03,
    /// C_BAD_STE, invalid or ILLEGAL STE (7.3.5).
    CBadSte = 0x04,
    /// F_BAD_ATS_TREQ, ATS Translation Request disallowed (7.3.6).
    FBadAtsTreq = 0x05,
    /// F_STREAM_DISABLED, non-substream traffic disabled (7.3.7).
    FStreamDisabled = 0x06,
    /// F_TRANSL_FORBIDDEN, Translated transaction not allowed (7.3.8).
    FTranslForbidden = 0x07,
    /// C_BAD_SUBSTREAMID, bad or unexpected SubstreamID (7.3.9).
    CBadSubstreamId = 0x08,
    /// F_CD_FETCH, external abort fetching a CD (7.3.10).
    FCdFetch = 0x09,
    /// C_BAD_CD, invalid or ILLEGAL CD (7.3.11).
    CBadCd = 0x0A,
    /// F_WALK_EABT, external abort on a table walk (7.3.12).
    FWalkEabt = 0x0B,
    /// F_TRANSLATION (7.3.13).
    FTranslation = 0x10,
    /// F_ADDR_SIZE (7.3.14).
    FAddrSize = 0x11,
    /// F_ACCESS, Access flag fault (7.3.15).
    FAccess = 0x12,
    /// F_PERMISSION (7.3.16).
    FPermission = 0x13,
    /// F_TLB_CONFLICT (7.3.17).
    FTlbConflict = 0x20,
    /// F_CFG_CONFLICT (7.3.18).
    FCfgConflict = 0x21,
    /// E_PAGE_REQUEST, speculative page request hint (7.3.19).
    EPageRequest = 0x24,
}

impl EventKind {
    /// Every kind, in numeric order.
    pub const ALL: [EventKind; 18] = [
        EventKind::FUut,
        EventKind::CBadStreamId,
        EventKind::FSteFetch,
        EventKind::CBadSte,
        EventKind::FBadAtsTreq,
        EventKind::FStreamDisabled,
        EventKind::FTranslForbidden,
        EventKind::CBadSubstreamId,
        EventKind::FCdFetch,
        EventKind::CBadCd,
        EventKind::FWalkEabt,
        EventKind::FTranslation,
        EventKind::FAddrSize,
        EventKind::FAccess,
        EventKind::FPermission,
        EventKind::FTlbConflict,
        EventKind::FCfgConflict,
        EventKind::EPageRequest,
    ];

    /// The event number, `dw0[7:0]`.
    pub const fn id(self) -> u8 {
        self as u8
    }

    /// The kind with this event number.
    pub fn from_id(id: u8) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.id() == id)
    }

    /// The specification's name, e.g. `"F_TRANSLATION"`.
    pub const fn name(self) -> &'static str {
        match self {
            EventKind::FUut => "F_UUT",
            EventKind::CBadStreamId => "C_BAD_STREAMID",
            EventKind::FSteFetch => "F_STE_FETCH",
            EventKind::CBadSte => "C_BAD_STE",
            EventKind::FBadAtsTreq => "F_BAD_ATS_TREQ",
            EventKind::FStreamDisabled => "F_STREAM_DISABLED",
            EventKind::FTranslForbidden => "F_TRANSL_FORBIDDEN",
            EventKind::CBadSubstreamId => "C_BAD_SUBSTREAMID",
            EventKind::FCdFetch => "F_CD_FETCH",
            EventKind::CBadCd => "C_BAD_CD",
            EventKind::FWalkEabt => "F_WALK_EABT",
            EventKind::FTranslation => "F_TRANSLATION",
            EventKind::FAddrSize => "F_ADDR_SIZE",
            EventKind::FAccess => "F_ACCESS",
            EventKind::FPermission => "F_PERMISSION",
            EventKind::FTlbConflict => "F_TLB_CONFLICT",
            EventKind::FCfgConflict => "F_CFG_CONFLICT",
            EventKind::EPageRequest => "E_PAGE_REQUEST",
        }
    }

    /// Which header fields the record has: (SSV, SubstreamID). F_STREAM_DISABLED
    /// and F_TRANSL_FORBIDDEN have neither; C_BAD_SUBSTREAMID has a SubstreamID
    /// that is always valid and no SSV (7.3.7-7.3.9).
    const fn header(self) -> (bool, bool) {
        match self {
            EventKind::FStreamDisabled | EventKind::FTranslForbidden => (false, false),
            EventKind::CBadSubstreamId => (false, true),
            _ => (true, true),
        }
    }

    /// The bits of dw1..dw3 this record defines; all others are RES0 here.
    const fn defined_bits(self) -> [u64; 3] {
        const REASON16: u64 = mask(15, 0);
        // PnU [33], InD [34], RnW [35] (7.3).
        const ACCESS: u64 = mask(35, 33);
        // S2 [39], CLASS [41:40] (7.3).
        const STAGE: u64 = (1 << 39) | mask(41, 40);
        const FETCH: u64 = mask(55, 3);
        const IPA: u64 = mask(55, 12);
        match self {
            EventKind::FUut => [REASON16 | ACCESS, u64::MAX, 0],
            EventKind::CBadStreamId
            | EventKind::CBadSte
            | EventKind::FStreamDisabled
            | EventKind::CBadSubstreamId
            | EventKind::CBadCd => [0, 0, 0],
            EventKind::FSteFetch | EventKind::FCdFetch => [REASON16, 0, FETCH],
            // Span [3:0], Priv [28], Exec [29], Write [30], Read [31].
            EventKind::FBadAtsTreq => [mask(3, 0) | mask(31, 28), mask(63, 12), 0],
            EventKind::FTranslForbidden => [1 << 35, u64::MAX, 0],
            EventKind::FWalkEabt => [REASON16 | ACCESS | STAGE, u64::MAX, FETCH],
            // STAG [15:0], Stall [31] (7.3.13-7.3.15).
            EventKind::FTranslation | EventKind::FAddrSize | EventKind::FAccess => {
                [mask(15, 0) | (1 << 31) | ACCESS | STAGE, u64::MAX, IPA]
            }
            // Plus TTRnW [44] (7.3.16; Linux EVTQ_1_TT_READ).
            EventKind::FPermission => [
                mask(15, 0) | (1 << 31) | ACCESS | STAGE | (1 << 44),
                u64::MAX,
                IPA,
            ],
            // Reason [31:0], access, S2 [39] (7.3.17).
            EventKind::FTlbConflict => [mask(31, 0) | ACCESS | (1 << 39), u64::MAX, IPA],
            EventKind::FCfgConflict => [mask(31, 0), 0, 0],
            // uX [33] uW [34] uR [35] pX [37] pW [38] pR [39] Span [51:44];
            // InputAddr[63:12] in dw2 (7.3.19).
            EventKind::EPageRequest => {
                [mask(35, 33) | mask(39, 37) | mask(51, 44), mask(63, 12), 0]
            }
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The attributes of the input transaction (SMMUv3 7.3): RnW, InD, PnU.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Access {
    /// RnW: 1 = read, 0 = write (`dw1[35]`).
    pub read: bool,
    /// InD: 1 = instruction, 0 = data (`dw1[34]`).
    pub instruction: bool,
    /// PnU: 1 = privileged (`dw1[33]`).
    pub privileged: bool,
}

impl Access {
    fn encode(self) -> u64 {
        flag(self.privileged, 33) | flag(self.instruction, 34) | flag(self.read, 35)
    }

    fn decode(dw1: u64) -> Access {
        Access {
            read: bit(dw1, 35),
            instruction: bit(dw1, 34),
            privileged: bit(dw1, 33),
        }
    }
}

/// CLASS, the operation that faulted (SMMUv3 7.3); 0b11 is Reserved.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum FaultClass {
    /// 0b00 CD: a CD fetch.
    Cd = 0,
    /// 0b01 TTD: a stage 1 translation table fetch.
    TableWalk = 1,
    /// 0b10 IN: the input address.
    #[default]
    Input = 2,
}

/// The fields of F_TRANSLATION, F_ADDR_SIZE, F_ACCESS and F_PERMISSION
/// (SMMUv3 7.3.13-7.3.16).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FaultInfo {
    /// STAG (`dw1[15:0]`), the token for CMD_RESUME when `stall`.
    pub stag: u16,
    /// Stall (`dw1[31]`): the transaction is stalled awaiting CMD_RESUME.
    pub stall: bool,
    /// RnW/InD/PnU of the input transaction.
    pub access: Access,
    /// S2 (`dw1[39]`): the fault is at stage 2.
    pub s2: bool,
    /// CLASS (`dw1[41:40]`).
    pub class: FaultClass,
    /// TTRnW (`dw1[44]`), F_PERMISSION only: 1 = a descriptor read faulted,
    /// 0 = a write (valid when CLASS = TT). Encoded only for F_PERMISSION.
    pub tt_read: bool,
    /// InputAddr (`dw2`), all 64 bits.
    pub input_addr: u64,
    /// IPA\[55:12\] (`dw3[55:12]`), bits \[11:0\] zero; valid for stage 2 faults.
    pub ipa: u64,
}

/// Requested permissions of an E_PAGE_REQUEST (SMMUv3 7.3.19).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PagePerms {
    /// pR (`dw1[39]`).
    pub priv_read: bool,
    /// pW (`dw1[38]`).
    pub priv_write: bool,
    /// pX (`dw1[37]`).
    pub priv_exec: bool,
    /// uR (`dw1[35]`).
    pub user_read: bool,
    /// uW (`dw1[34]`).
    pub user_write: bool,
    /// uX (`dw1[33]`).
    pub user_exec: bool,
}

/// The kind-specific part of an event record.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum EventBody {
    /// F_UUT (7.3.2): IMPLEMENTATION DEFINED Reason, incoming attributes.
    Uut {
        /// Reason (`dw1[15:0]`).
        reason: u16,
        /// Incoming (not overridden) RnW/InD/PnU.
        access: Access,
        /// InputAddr (`dw2`).
        input_addr: u64,
    },
    /// C_BAD_STREAMID (7.3.3).
    BadStreamId,
    /// F_STE_FETCH (7.3.4).
    SteFetch {
        /// Reason (`dw1[15:0]`).
        reason: u16,
        /// FetchAddr\[55:3\] (`dw3[55:3]`), the STE's PA.
        fetch_addr: u64,
    },
    /// C_BAD_STE (7.3.5).
    BadSte,
    /// F_BAD_ATS_TREQ (7.3.6). Layout from secondary sources (see module docs).
    BadAtsTreq {
        /// Span (`dw1[3:0]`), the number of STUs requested.
        span: u8,
        /// Priv (`dw1[28]`).
        privileged: bool,
        /// Exec (`dw1[29]`).
        exec: bool,
        /// Write (`dw1[30]`), that is !NW.
        write: bool,
        /// Read (`dw1[31]`), always 1 for PCIe.
        read: bool,
        /// InputAddr\[63:12\] (`dw2[63:12]`).
        input_addr: u64,
    },
    /// F_STREAM_DISABLED (7.3.7).
    StreamDisabled,
    /// F_TRANSL_FORBIDDEN (7.3.8).
    TranslForbidden {
        /// RnW (`dw1[35]`).
        read: bool,
        /// InputAddr (`dw2`).
        input_addr: u64,
    },
    /// C_BAD_SUBSTREAMID (7.3.9).
    BadSubstreamId,
    /// F_CD_FETCH (7.3.10).
    CdFetch {
        /// Reason (`dw1[15:0]`).
        reason: u16,
        /// FetchAddr\[55:3\] (`dw3[55:3]`), the CD's PA.
        fetch_addr: u64,
    },
    /// C_BAD_CD (7.3.11).
    BadCd,
    /// F_WALK_EABT (7.3.12).
    WalkEabt {
        /// Reason (`dw1[15:0]`).
        reason: u16,
        /// RnW/InD/PnU of the input transaction.
        access: Access,
        /// S2 (`dw1[39]`).
        s2: bool,
        /// CLASS (`dw1[41:40]`).
        class: FaultClass,
        /// InputAddr (`dw2`).
        input_addr: u64,
        /// FetchAddr\[55:3\] (`dw3[55:3]`), the descriptor's PA.
        fetch_addr: u64,
    },
    /// F_TRANSLATION (7.3.13).
    Translation(FaultInfo),
    /// F_ADDR_SIZE (7.3.14).
    AddrSize(FaultInfo),
    /// F_ACCESS (7.3.15).
    Access(FaultInfo),
    /// F_PERMISSION (7.3.16).
    Permission(FaultInfo),
    /// F_TLB_CONFLICT (7.3.17).
    TlbConflict {
        /// Reason (`dw1[31:0]`).
        reason: u32,
        /// RnW/InD/PnU of the input transaction.
        access: Access,
        /// S2 (`dw1[39]`).
        s2: bool,
        /// InputAddr (`dw2`).
        input_addr: u64,
        /// IPA\[55:12\] (`dw3[55:12]`), valid when `s2`.
        ipa: u64,
    },
    /// F_CFG_CONFLICT (7.3.18).
    CfgConflict {
        /// Reason (`dw1[31:0]`).
        reason: u32,
    },
    /// E_PAGE_REQUEST (7.3.19).
    PageRequest {
        /// Span (`dw1[51:44]`): the access spans `span * 4096` bytes.
        span: u8,
        /// Anticipated permissions.
        perms: PagePerms,
        /// InputAddr\[63:12\] (`dw2[63:12]`).
        input_addr: u64,
    },
}

impl EventBody {
    /// The record kind this body belongs to.
    pub const fn kind(&self) -> EventKind {
        match self {
            EventBody::Uut { .. } => EventKind::FUut,
            EventBody::BadStreamId => EventKind::CBadStreamId,
            EventBody::SteFetch { .. } => EventKind::FSteFetch,
            EventBody::BadSte => EventKind::CBadSte,
            EventBody::BadAtsTreq { .. } => EventKind::FBadAtsTreq,
            EventBody::StreamDisabled => EventKind::FStreamDisabled,
            EventBody::TranslForbidden { .. } => EventKind::FTranslForbidden,
            EventBody::BadSubstreamId => EventKind::CBadSubstreamId,
            EventBody::CdFetch { .. } => EventKind::FCdFetch,
            EventBody::BadCd => EventKind::CBadCd,
            EventBody::WalkEabt { .. } => EventKind::FWalkEabt,
            EventBody::Translation(_) => EventKind::FTranslation,
            EventBody::AddrSize(_) => EventKind::FAddrSize,
            EventBody::Access(_) => EventKind::FAccess,
            EventBody::Permission(_) => EventKind::FPermission,
            EventBody::TlbConflict { .. } => EventKind::FTlbConflict,
            EventBody::CfgConflict { .. } => EventKind::FCfgConflict,
            EventBody::PageRequest { .. } => EventKind::EPageRequest,
        }
    }
}

/// One 32-byte event record.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventRecord {
    /// StreamID (`dw0[63:32]`).
    pub sid: u32,
    /// SSV (`dw0[11]`); not encoded for kinds without it (see [`EventKind`]),
    /// and always true after decoding C_BAD_SUBSTREAMID.
    pub ssv: bool,
    /// SubstreamID (`dw0[31:12]`), UNKNOWN when `!ssv`; not encoded for
    /// F_STREAM_DISABLED and F_TRANSL_FORBIDDEN.
    pub ssid: u32,
    /// The kind-specific fields.
    pub body: EventBody,
}

/// Why 32 bytes are not an event record the model understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// An event number that is not one of [`EventKind`] (SMMUv3 7.3).
    #[error("event number {id:#04x} is not a known event record")]
    UnknownId {
        /// `dw0[7:0]`.
        id: u8,
    },
    /// Bits that are RES0 for this record (or not produced by the model) are set.
    #[error("{event}: RES0 bits {bits:#x} of dw{word} are set")]
    Res0Bits {
        /// The record name.
        event: &'static str,
        /// Which word.
        word: u8,
        /// The offending bits, in place.
        bits: u64,
    },
    /// A field holds a Reserved value.
    #[error("{event}: {field} = {value:#x} is Reserved")]
    ReservedValue {
        /// The record name.
        event: &'static str,
        /// The field name.
        field: &'static str,
        /// Its value.
        value: u64,
    },
}

impl EventRecord {
    /// The record kind.
    pub const fn kind(&self) -> EventKind {
        self.body.kind()
    }

    /// The 32-byte encoding as four little-endian words. Addresses are
    /// masked to their fields (InputAddr\[63:12\], FetchAddr\[55:3\], IPA\[55:12\]).
    pub fn encode(&self) -> [u64; 4] {
        let kind = self.kind();
        let (has_ssv, has_ssid) = kind.header();
        let mut dw0 = u64::from(kind.id()) | (u64::from(self.sid) << 32);
        if has_ssv {
            dw0 |= flag(self.ssv, 11);
        }
        if has_ssid {
            dw0 |= put(u64::from(self.ssid), 31, 12);
        }
        let class = |c: FaultClass| put(c as u64, 41, 40);
        let fault = |f: &FaultInfo, perm: bool| {
            [
                u64::from(f.stag)
                    | flag(f.stall, 31)
                    | f.access.encode()
                    | flag(f.s2, 39)
                    | class(f.class)
                    | flag(perm && f.tt_read, 44),
                f.input_addr,
                f.ipa & mask(55, 12),
            ]
        };
        let [dw1, dw2, dw3] = match &self.body {
            EventBody::Uut {
                reason,
                access,
                input_addr,
            } => [u64::from(*reason) | access.encode(), *input_addr, 0],
            EventBody::BadStreamId
            | EventBody::BadSte
            | EventBody::StreamDisabled
            | EventBody::BadSubstreamId
            | EventBody::BadCd => [0, 0, 0],
            EventBody::SteFetch { reason, fetch_addr }
            | EventBody::CdFetch { reason, fetch_addr } => {
                [u64::from(*reason), 0, fetch_addr & mask(55, 3)]
            }
            EventBody::BadAtsTreq {
                span,
                privileged,
                exec,
                write,
                read,
                input_addr,
            } => [
                put(u64::from(*span), 3, 0)
                    | flag(*privileged, 28)
                    | flag(*exec, 29)
                    | flag(*write, 30)
                    | flag(*read, 31),
                input_addr & mask(63, 12),
                0,
            ],
            EventBody::TranslForbidden { read, input_addr } => [flag(*read, 35), *input_addr, 0],
            EventBody::WalkEabt {
                reason,
                access,
                s2,
                class: c,
                input_addr,
                fetch_addr,
            } => [
                u64::from(*reason) | access.encode() | flag(*s2, 39) | class(*c),
                *input_addr,
                fetch_addr & mask(55, 3),
            ],
            EventBody::Translation(f) | EventBody::AddrSize(f) | EventBody::Access(f) => {
                fault(f, false)
            }
            EventBody::Permission(f) => fault(f, true),
            EventBody::TlbConflict {
                reason,
                access,
                s2,
                input_addr,
                ipa,
            } => [
                u64::from(*reason) | access.encode() | flag(*s2, 39),
                *input_addr,
                ipa & mask(55, 12),
            ],
            EventBody::CfgConflict { reason } => [u64::from(*reason), 0, 0],
            EventBody::PageRequest {
                span,
                perms,
                input_addr,
            } => [
                flag(perms.user_exec, 33)
                    | flag(perms.user_write, 34)
                    | flag(perms.user_read, 35)
                    | flag(perms.priv_exec, 37)
                    | flag(perms.priv_write, 38)
                    | flag(perms.priv_read, 39)
                    | put(u64::from(*span), 51, 44),
                input_addr & mask(63, 12),
                0,
            ],
        };
        [dw0, dw1, dw2, dw3]
    }

    /// Decodes a record strictly: unknown event numbers, set RES0 bits and
    /// Reserved CLASS values are errors that name the field and value.
    pub fn decode(words: [u64; 4]) -> Result<EventRecord, EventError> {
        let [dw0, dw1, dw2, dw3] = words;
        let id = get(dw0, 7, 0) as u8;
        let kind = EventKind::from_id(id).ok_or(EventError::UnknownId { id })?;
        let event = kind.name();
        let (has_ssv, has_ssid) = kind.header();
        let m0 = mask(7, 0)
            | mask(63, 32)
            | if has_ssv { 1 << 11 } else { 0 }
            | if has_ssid { mask(31, 12) } else { 0 };
        let [m1, m2, m3] = kind.defined_bits();
        for (word, (w, m)) in [(dw0, m0), (dw1, m1), (dw2, m2), (dw3, m3)]
            .into_iter()
            .enumerate()
        {
            if w & !m != 0 {
                return Err(EventError::Res0Bits {
                    event,
                    word: word as u8,
                    bits: w & !m,
                });
            }
        }
        let class = || match get(dw1, 41, 40) {
            0 => Ok(FaultClass::Cd),
            1 => Ok(FaultClass::TableWalk),
            2 => Ok(FaultClass::Input),
            v => Err(EventError::ReservedValue {
                event,
                field: "CLASS",
                value: v,
            }),
        };
        let access = Access::decode(dw1);
        let reason16 = get(dw1, 15, 0) as u16;
        let fault = || -> Result<FaultInfo, EventError> {
            Ok(FaultInfo {
                stag: get(dw1, 15, 0) as u16,
                stall: bit(dw1, 31),
                access,
                s2: bit(dw1, 39),
                class: class()?,
                tt_read: bit(dw1, 44),
                input_addr: dw2,
                ipa: dw3 & mask(55, 12),
            })
        };
        let body = match kind {
            EventKind::FUut => EventBody::Uut {
                reason: reason16,
                access,
                input_addr: dw2,
            },
            EventKind::CBadStreamId => EventBody::BadStreamId,
            EventKind::FSteFetch => EventBody::SteFetch {
                reason: reason16,
                fetch_addr: dw3,
            },
            EventKind::CBadSte => EventBody::BadSte,
            EventKind::FBadAtsTreq => EventBody::BadAtsTreq {
                span: get(dw1, 3, 0) as u8,
                privileged: bit(dw1, 28),
                exec: bit(dw1, 29),
                write: bit(dw1, 30),
                read: bit(dw1, 31),
                input_addr: dw2,
            },
            EventKind::FStreamDisabled => EventBody::StreamDisabled,
            EventKind::FTranslForbidden => EventBody::TranslForbidden {
                read: bit(dw1, 35),
                input_addr: dw2,
            },
            EventKind::CBadSubstreamId => EventBody::BadSubstreamId,
            EventKind::FCdFetch => EventBody::CdFetch {
                reason: reason16,
                fetch_addr: dw3,
            },
            EventKind::CBadCd => EventBody::BadCd,
            EventKind::FWalkEabt => EventBody::WalkEabt {
                reason: reason16,
                access,
                s2: bit(dw1, 39),
                class: class()?,
                input_addr: dw2,
                fetch_addr: dw3,
            },
            EventKind::FTranslation => EventBody::Translation(fault()?),
            EventKind::FAddrSize => EventBody::AddrSize(fault()?),
            EventKind::FAccess => EventBody::Access(fault()?),
            EventKind::FPermission => EventBody::Permission(fault()?),
            EventKind::FTlbConflict => EventBody::TlbConflict {
                reason: get(dw1, 31, 0) as u32,
                access,
                s2: bit(dw1, 39),
                input_addr: dw2,
                ipa: dw3,
            },
            EventKind::FCfgConflict => EventBody::CfgConflict {
                reason: get(dw1, 31, 0) as u32,
            },
            EventKind::EPageRequest => EventBody::PageRequest {
                span: get(dw1, 51, 44) as u8,
                perms: PagePerms {
                    priv_read: bit(dw1, 39),
                    priv_write: bit(dw1, 38),
                    priv_exec: bit(dw1, 37),
                    user_read: bit(dw1, 35),
                    user_write: bit(dw1, 34),
                    user_exec: bit(dw1, 33),
                },
                input_addr: dw2,
            },
        };
        Ok(EventRecord {
            sid: get(dw0, 63, 32) as u32,
            // C_BAD_SUBSTREAMID's SubstreamID is always valid (7.3.9).
            ssv: if has_ssv { bit(dw0, 11) } else { has_ssid },
            ssid: if has_ssid { get(dw0, 31, 12) as u32 } else { 0 },
            body,
        })
    }
}

impl fmt::Display for EventRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} sid={:#x}", self.kind(), self.sid)?;
        if self.ssv {
            write!(f, " ssid={:#x}", self.ssid)?;
        }
        Ok(())
    }
}
