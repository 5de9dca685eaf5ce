//! TLBI operations of the EL1&0 regime and the EL2 (or EL2&0) regime, and
//! their bit-exact 64-bit operands.
//!
//! Three layers:
//!
//! 1. [`TlbiOp`] / [`Tlbi`]: the operation and its shareability (the `IS`
//!    or, with FEAT_TLBIOS, `OS` suffix), parsed from and printed as the
//!    architectural mnemonic.
//! 2. [`TlbiOperand`]: the decoded `Xt` register. [`TlbiOperand::encode`]
//!    and [`TlbiOperand::decode`] are exact inverses on valid operands, and
//!    every reserved, RES0-violating or UNPREDICTABLE encoding is a
//!    [`TlbiDecodeError`] that names the field.
//! 3. [`Tlbi::scope`]: what the architecture *requires* the operation to
//!    remove, as an [`InvalScope`]. The model holds software to that minimum:
//!    anything the scope does not cover may stay cached.
//!
//! References are to the Arm ARM (DDI 0487, issue M.a): the instruction
//! descriptions in C5.5, the operand formats and scope rules in D8.17.5
//! ("TLB maintenance instructions"; numbered D8.13.5 in older issues), and
//! the pseudocode in J1.1.3 (`TLBIRange`, `ResTLBITTL`, `ResTLBIRTTL`,
//! `TLBIMatch`).
//!
//! Model assumptions: FEAT_TTL, FEAT_TLBIRANGE and FEAT_TLBIOS are implemented;
//! FEAT_LPA, FEAT_LPA2 and FEAT_D128 are not (48-bit VAs and PAs, see
//! [`crate::addr`]); the hypervisor runs in Non-secure state.

use crate::addr::{AddrRange, Granule, InputAddr, InputRange, Ipa, Va};
use crate::tlb::entry::{AsidSel, InvalScope, Regime, StageSel};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Mask of the low `n` bits.
const fn mask(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Bits `[lo + len - 1 : lo]` of `x`.
const fn bits(x: u64, lo: u32, len: u32) -> u64 {
    (x >> lo) & mask(len)
}

/// Sign-extends the low `n` bits of `x`.
const fn sign_extend(x: u64, n: u32) -> u64 {
    let s = 64 - n;
    (((x << s) as i64) >> s) as u64
}

/// Width of the non-range VA field, VA\[55:12\] in bits \[43:0\].
const VA_FIELD_BITS: u32 = 44;
/// Width of the non-range IPA field the model accepts: IPA\[47:12\] in bits
/// \[35:0\] (bits \[39:36\] hold IPA\[51:48\] only with FEAT_LPA).
const IPA_FIELD_BITS: u32 = 36;
/// Width of the range BaseADDR field, bits \[36:0\].
const BASE_FIELD_BITS: u32 = 37;

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

/// A TLB maintenance operation of the EL1&0 or EL2 regime, without its
/// shareability suffix (Arm ARM D8.17.5, "The `<operation>` in TLBI").
#[allow(clippy::upper_case_acronyms)] // the architectural mnemonics
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlbiOp {
    /// By VA and ASID, any level (C5.5.59).
    VAE1,
    /// By VA and ASID, last level only (C5.5.68).
    VALE1,
    /// By VA, all ASIDs, any level (C5.5.53).
    VAAE1,
    /// By VA, all ASIDs, last level only (C5.5.56).
    VAALE1,
    /// By ASID: non-global entries of that ASID (C5.5.10).
    ASIDE1,
    /// All stage-1 entries of the current VMID (C5.5.77).
    VMALLE1,
    /// Stage 2 by IPA, any level (C5.5.13).
    IPAS2E1,
    /// Stage 2 by IPA, last level only (C5.5.16).
    IPAS2LE1,
    /// EL2 regime by VA, any level (C5.5, TLBI VAE2): the EL2 regime, or
    /// with HCR_EL2.E2H = 1 the EL2&0 regime, where the ASID applies.
    VAE2,
    /// As VAE2, last level only (C5.5, TLBI VALE2).
    VALE2,
    /// Every entry of the EL2 (or EL2&0) regime (C5.5, TLBI ALLE2).
    ALLE2,
    /// All stage-1 and stage-2 entries of the current VMID (C5.5.80).
    VMALLS12E1,
    /// All EL1&0 entries of every VMID (C5.5.1).
    ALLE1,
    /// Range by VA and ASID, any level (C5.5.35).
    RVAE1,
    /// Range by VA and ASID, last level only (C5.5.44).
    RVALE1,
    /// Range by VA, all ASIDs, any level (C5.5.29).
    RVAAE1,
    /// Range by VA, all ASIDs, last level only (C5.5.32).
    RVAALE1,
    /// Stage 2 range by IPA, any level (C5.5.21).
    RIPAS2E1,
    /// Stage 2 range by IPA, last level only (C5.5.24).
    RIPAS2LE1,
}

/// The shape of the `Xt` operand an operation takes (Arm ARM D8.17.5.1,
/// D8.17.5.2).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum OperandKind {
    /// No operand: `Xt` is ignored (VMALLE1, VMALLS12E1, ALLE1).
    None,
    /// ASID in bits \[63:48\], the rest RES0 (ASIDE1).
    Asid,
    /// ASID (or RES0), TTL, VA\[55:12\] (VA*, VAA*).
    Va,
    /// NS, TTL, IPA\[47:12\] (IPAS2*).
    Ipa,
    /// ASID (or RES0), TG, SCALE, NUM, TTL, BaseADDR (RVA*, RVAA*).
    VaRange,
    /// NS, TG, SCALE, NUM, TTL, BaseADDR (RIPAS2*).
    IpaRange,
}

impl TlbiOp {
    /// Every operation the model implements.
    pub const ALL: [TlbiOp; 19] = [
        TlbiOp::VAE1,
        TlbiOp::VALE1,
        TlbiOp::VAAE1,
        TlbiOp::VAALE1,
        TlbiOp::ASIDE1,
        TlbiOp::VMALLE1,
        TlbiOp::IPAS2E1,
        TlbiOp::IPAS2LE1,
        TlbiOp::VMALLS12E1,
        TlbiOp::ALLE1,
        TlbiOp::RVAE1,
        TlbiOp::RVALE1,
        TlbiOp::RVAAE1,
        TlbiOp::RVAALE1,
        TlbiOp::RIPAS2E1,
        TlbiOp::RIPAS2LE1,
        TlbiOp::VAE2,
        TlbiOp::VALE2,
        TlbiOp::ALLE2,
    ];

    /// The architectural mnemonic, upper case, without shareability suffix.
    pub const fn mnemonic(self) -> &'static str {
        match self {
            TlbiOp::VAE1 => "VAE1",
            TlbiOp::VALE1 => "VALE1",
            TlbiOp::VAAE1 => "VAAE1",
            TlbiOp::VAALE1 => "VAALE1",
            TlbiOp::ASIDE1 => "ASIDE1",
            TlbiOp::VMALLE1 => "VMALLE1",
            TlbiOp::IPAS2E1 => "IPAS2E1",
            TlbiOp::IPAS2LE1 => "IPAS2LE1",
            TlbiOp::VMALLS12E1 => "VMALLS12E1",
            TlbiOp::ALLE1 => "ALLE1",
            TlbiOp::RVAE1 => "RVAE1",
            TlbiOp::RVALE1 => "RVALE1",
            TlbiOp::RVAAE1 => "RVAAE1",
            TlbiOp::RVAALE1 => "RVAALE1",
            TlbiOp::RIPAS2E1 => "RIPAS2E1",
            TlbiOp::RIPAS2LE1 => "RIPAS2LE1",
            TlbiOp::VAE2 => "VAE2",
            TlbiOp::VALE2 => "VALE2",
            TlbiOp::ALLE2 => "ALLE2",
        }
    }

    /// The operand shape.
    pub const fn operand_kind(self) -> OperandKind {
        match self {
            TlbiOp::VMALLE1 | TlbiOp::VMALLS12E1 | TlbiOp::ALLE1 | TlbiOp::ALLE2 => {
                OperandKind::None
            }
            TlbiOp::ASIDE1 => OperandKind::Asid,
            TlbiOp::VAE1
            | TlbiOp::VALE1
            | TlbiOp::VAAE1
            | TlbiOp::VAALE1
            | TlbiOp::VAE2
            | TlbiOp::VALE2 => OperandKind::Va,
            TlbiOp::IPAS2E1 | TlbiOp::IPAS2LE1 => OperandKind::Ipa,
            TlbiOp::RVAE1 | TlbiOp::RVALE1 | TlbiOp::RVAAE1 | TlbiOp::RVAALE1 => {
                OperandKind::VaRange
            }
            TlbiOp::RIPAS2E1 | TlbiOp::RIPAS2LE1 => OperandKind::IpaRange,
        }
    }

    /// A range form (FEAT_TLBIRANGE, the `R` prefix).
    pub const fn is_range(self) -> bool {
        matches!(
            self.operand_kind(),
            OperandKind::VaRange | OperandKind::IpaRange
        )
    }

    /// A last-level form (the `L`): walk-cache entries may survive it
    /// (Arm ARM D8.17.5, "L is an optional parameter specifying that the
    /// invalidation applies only to ... the final lookup level").
    pub const fn is_leaf_only(self) -> bool {
        matches!(
            self,
            TlbiOp::VALE1
                | TlbiOp::VAALE1
                | TlbiOp::VALE2
                | TlbiOp::IPAS2LE1
                | TlbiOp::RVALE1
                | TlbiOp::RVAALE1
                | TlbiOp::RIPAS2LE1
        )
    }

    /// Whether `Xt` carries anything (false: the register is ignored).
    pub const fn takes_operand(self) -> bool {
        !matches!(self.operand_kind(), OperandKind::None)
    }

    /// Whether bits \[63:48\] of `Xt` are an ASID (for the VAA forms and the
    /// IPA forms they are RES0 / NS). For VAE2 and VALE2 the ASID matters
    /// only in the EL2&0 regime (HCR_EL2.E2H = 1); see [`Tlbi::scope_e2h`].
    pub const fn uses_asid(self) -> bool {
        matches!(
            self,
            TlbiOp::VAE1
                | TlbiOp::VALE1
                | TlbiOp::ASIDE1
                | TlbiOp::RVAE1
                | TlbiOp::RVALE1
                | TlbiOp::VAE2
                | TlbiOp::VALE2
        )
    }

    /// The translation regime whose entries the operation reaches: EL1&0
    /// for the `...E1` forms, EL2 (EL2&0 with E2H) for the `...E2` forms
    /// (Arm ARM D8.17.5: the `E1`/`E2` in the mnemonic names the regime).
    pub const fn regime(self) -> Regime {
        match self {
            TlbiOp::VAE2 | TlbiOp::VALE2 | TlbiOp::ALLE2 => Regime::El2,
            _ => Regime::El10,
        }
    }

    /// A stage-2 by-IPA operation (IPAS2*, RIPAS2*): it takes an IPA and
    /// reaches stage-2-only entries. VMALLS12E1 and ALLE1 also reach stage 2
    /// but take no address; see [`TlbiOp::stages`].
    pub const fn is_stage2(self) -> bool {
        matches!(
            self.operand_kind(),
            OperandKind::Ipa | OperandKind::IpaRange
        )
    }

    /// Whether the operand carries an address (VA or IPA, single or range).
    pub const fn takes_address(self) -> bool {
        !matches!(self.operand_kind(), OperandKind::None | OperandKind::Asid)
    }

    /// The kinds of entry the operation reaches (Arm ARM D8.17.5.4).
    pub const fn stages(self) -> StageSel {
        match self {
            // IPAS2 "is not required to invalidate TLB entries that combine
            // stage 1 and stage 2" (D8.17.5.4, RVZZVZ; C5.5.13).
            TlbiOp::IPAS2E1 | TlbiOp::IPAS2LE1 | TlbiOp::RIPAS2E1 | TlbiOp::RIPAS2LE1 => {
                StageSel::STAGE2
            }
            // VMALLS12 and ALL: "stage 1 and stage 2 translation table
            // entries" (D8.17.5.4).
            TlbiOp::VMALLS12E1 | TlbiOp::ALLE1 => StageSel::ALL,
            // Everything else is a stage-1 operation; the pseudocode's
            // TLBI_VA/VMALL note "stage 1 and stage 2 combined entries are in
            // the scope of this operation" (J1.1.3.438, J1.1.3.440).
            _ => StageSel::STAGE1,
        }
    }

    /// Looks up an upper-case mnemonic without suffix.
    fn from_mnemonic(s: &str) -> Option<TlbiOp> {
        TlbiOp::ALL.into_iter().find(|op| op.mnemonic() == s)
    }
}

impl fmt::Display for TlbiOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mnemonic())
    }
}

/// A mnemonic that names no operation the model implements.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown TLBI operation `{0}` (expected one of VAE1, VALE1, VAAE1, VAALE1, ASIDE1, VMALLE1, IPAS2E1, IPAS2LE1, VMALLS12E1, ALLE1, RVAE1, RVALE1, RVAAE1, RVAALE1, RIPAS2E1, RIPAS2LE1, VAE2, VALE2, ALLE2, optionally with an IS or OS suffix)")]
pub struct ParseTlbiError(pub String);

impl FromStr for TlbiOp {
    type Err = ParseTlbiError;

    /// Parses a suffix-less mnemonic, case-insensitively (`"vae1"`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TlbiOp::from_mnemonic(&s.trim().to_ascii_uppercase())
            .ok_or_else(|| ParseTlbiError(s.to_string()))
    }
}

/// A TLBI instruction: an operation and whether it is broadcast.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Tlbi {
    /// The operation.
    pub op: TlbiOp,
    /// A broadcast form (`IS` or `OS` suffix): applies to every PE in the
    /// instruction's Shareability domain, not only the issuing one (D8.17.5).
    pub broadcast: bool,
    /// The Outer Shareable form (`OS` suffix, FEAT_TLBIOS), which implies
    /// `broadcast`. Its effect is "as the IS form, but for the Outer
    /// Shareable domain" (D8.17.5, C5.5 "...OS" descriptions). The model's
    /// CPUs and SMMUs form a single Shareability domain, which is both the
    /// Inner and the Outer Shareable domain, so an OS form removes exactly
    /// what its IS form removes, and the same DSBs complete it
    /// ([`crate::machine::Dsb::completes_tlbi`]: DSB ISH suffices because
    /// the Inner domain is the whole Outer one). The flag only keeps the
    /// mnemonic the software wrote.
    pub outer: bool,
}

impl Tlbi {
    /// An instruction: the IS form when `broadcast`, else the local form.
    pub const fn new(op: TlbiOp, broadcast: bool) -> Tlbi {
        Tlbi {
            op,
            broadcast,
            outer: false,
        }
    }

    /// The Outer Shareable form of `op` (`...OS`, FEAT_TLBIOS).
    pub const fn outer_shareable(op: TlbiOp) -> Tlbi {
        Tlbi {
            op,
            broadcast: true,
            outer: true,
        }
    }

    /// See [`TlbiOp::is_range`].
    pub const fn is_range(&self) -> bool {
        self.op.is_range()
    }

    /// See [`TlbiOp::is_leaf_only`].
    pub const fn is_leaf_only(&self) -> bool {
        self.op.is_leaf_only()
    }

    /// See [`TlbiOp::takes_operand`].
    pub const fn takes_operand(&self) -> bool {
        self.op.takes_operand()
    }

    /// See [`TlbiOp::uses_asid`].
    pub const fn uses_asid(&self) -> bool {
        self.op.uses_asid()
    }

    /// See [`TlbiOp::is_stage2`].
    pub const fn is_stage2(&self) -> bool {
        self.op.is_stage2()
    }

    /// Decodes `xt` as this instruction's operand; see [`TlbiOperand::decode`].
    pub fn decode(&self, xt: u64) -> Result<TlbiOperand, TlbiDecodeError> {
        TlbiOperand::decode(*self, xt)
    }

    /// What this instruction removes when [`TlbiOperand::decode`] refused
    /// its operand `xt`: nothing. Software can execute such an instruction,
    /// and the model takes the worst effect the architecture allows for it
    /// (see [`TlbiDecodeError::effect`] for each case), which is that no
    /// entry need be removed. The scope keeps the instruction's regime and
    /// VMID and reaches no stage.
    pub fn malformed_scope(&self, vmid: u16) -> InvalScope {
        InvalScope {
            regime: self.op.regime(),
            stages: StageSel::NONE,
            vmid: Some(vmid),
            asid: AsidSel::Any,
            range: None,
            granule: None,
            leaf_only: self.op.is_leaf_only(),
            ttl_level: None,
        }
    }

    /// What this instruction, issued by a CPU whose current VMID is `vmid`,
    /// is required to remove (EL1&0 regime; Arm ARM D8.17.5.4 and the
    /// per-instruction "Purpose" texts in C5.5).
    ///
    /// Anything outside the returned scope may stay cached: the model takes
    /// the architecture's minimum. In particular:
    /// - a TTL hint or range TG naming another granule or level than the
    ///   entry's leaves the entry (D8.17.5.3 RSQXYZ: "if an incorrect TTL
    ///   value is specified ... the architecture does not require any entries
    ///   to be invalidated"; D8.17.5.2 RXKMMX for TG);
    /// - IPAS2* leave combined stage-1+2 entries (D8.17.6.1).
    ///
    /// # Panics
    ///
    /// If `operand` has the wrong shape for the operation (for example an
    /// [`TlbiOperand::Asid`] for VAE1); operands from
    /// [`TlbiOperand::decode`] always have the right shape.
    pub fn scope(&self, operand: &TlbiOperand, vmid: u16) -> InvalScope {
        self.scope_e2h(operand, vmid, false)
    }

    /// As [`Tlbi::scope`], for a CPU whose HCR_EL2.E2H is `e2h`. Only the
    /// EL2 operations depend on it: with E2H = 0 they reach the EL2 regime,
    /// whose entries carry no ASID, so VAE2/VALE2 ignore the ASID field;
    /// with E2H = 1 they reach the EL2&0 regime, where VAE2/VALE2 remove
    /// the ASID's non-global entries and the global ones, as VAE1 does in
    /// EL1&0 (Arm ARM C5.5, TLBI VAE2 / VALE2 / ALLE2). EL2 entries have no
    /// VMID, so none is matched.
    ///
    /// # Panics
    ///
    /// As [`Tlbi::scope`].
    pub fn scope_e2h(&self, operand: &TlbiOperand, vmid: u16, e2h: bool) -> InvalScope {
        let op = self.op;
        let leaf_only = op.is_leaf_only();
        let stages = op.stages();
        let el2 = op.regime() == Regime::El2;
        // "Would be used with the current VMID" for everything but ALLE1,
        // which reaches "cached copies ... with any VMID" (D8.17.5.4).
        let vmid = if op == TlbiOp::ALLE1 || el2 {
            None
        } else {
            Some(vmid)
        };
        let asid_matters = op.uses_asid() && (!el2 || e2h);
        let whole = InvalScope {
            regime: op.regime(),
            stages,
            vmid,
            asid: AsidSel::Any,
            range: None,
            granule: None,
            leaf_only,
            ttl_level: None,
        };
        match (op.operand_kind(), operand) {
            // VMALLE1, VMALLS12E1, ALLE1: global entries and every ASID, any
            // level (D8.17.5.4 "ALL", "VMALL", "VMALLS12").
            (OperandKind::None, TlbiOperand::None) => whole,
            // ASIDE1 (C5.5.10): entries "used for the specified ASID" that are
            // either above the final level or non-global at the final level:
            // global leaves survive.
            (OperandKind::Asid, &TlbiOperand::Asid { asid }) => InvalScope {
                asid: AsidSel::Only {
                    asid,
                    with_global: false,
                },
                ..whole
            },
            // VA{L}E1 (C5.5.59, C5.5.68): non-global entries of the ASID, and
            // global final-level entries "regardless of the value of the ASID
            // field". VAA{L}E1 (C5.5.53, C5.5.56): any ASID.
            (OperandKind::Va, &TlbiOperand::Va { asid, ttl, page }) => InvalScope {
                asid: if asid_matters {
                    AsidSel::Only {
                        asid,
                        with_global: true,
                    }
                } else {
                    AsidSel::Any
                },
                range: Some(InputRange::Va(AddrRange::span(va_from_field(page), 12))),
                granule: ttl.map(|t| t.granule),
                ttl_level: ttl.map(|t| t.level),
                ..whole
            },
            // IPAS2{L}E1 (C5.5.13, C5.5.16): stage-2-only entries of the
            // current VMID; ASIDs do not apply to stage 2. NS selects the IPA
            // space only in Secure state (J1.1.3.432: in Non-secure state the
            // IPA space is Non-secure whatever bit 63 holds), so the model,
            // which has one IPA space, ignores it.
            (OperandKind::Ipa, &TlbiOperand::Ipa { ttl, page, .. }) => InvalScope {
                range: Some(InputRange::Ipa(AddrRange::span(ipa_from_field(page), 12))),
                granule: ttl.map(|t| t.granule),
                ttl_level: ttl.map(|t| t.level),
                ..whole
            },
            // R{VA,VAA}{L}E1 (C5.5.35, C5.5.44, C5.5.29, C5.5.32): as the
            // non-range forms, over [BaseADDR, BaseADDR + size), for entries
            // of the TG granule only (D8.17.5.2 RXKMMX).
            (OperandKind::VaRange, TlbiOperand::VaRange { asid, range }) => InvalScope {
                asid: if op.uses_asid() {
                    AsidSel::Only {
                        asid: *asid,
                        with_global: true,
                    }
                } else {
                    AsidSel::Any
                },
                range: Some(InputRange::Va(range.range())),
                granule: Some(range.granule),
                ttl_level: range.ttl,
                ..whole
            },
            // RIPAS2{L}E1 (C5.5.21, C5.5.24).
            (OperandKind::IpaRange, TlbiOperand::IpaRange { range, .. }) => InvalScope {
                range: Some(InputRange::Ipa(range.range())),
                granule: Some(range.granule),
                ttl_level: range.ttl,
                ..whole
            },
            _ => panic!("TLBI {self}: operand {operand:?} has the wrong shape for this operation"),
        }
    }
}

impl From<TlbiOp> for Tlbi {
    /// The local (non-broadcast) form.
    fn from(op: TlbiOp) -> Tlbi {
        Tlbi::new(op, false)
    }
}

impl fmt::Display for Tlbi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.op.mnemonic())?;
        if self.outer {
            f.write_str("OS")?;
        } else if self.broadcast {
            f.write_str("IS")?;
        }
        Ok(())
    }
}

impl FromStr for Tlbi {
    type Err = ParseTlbiError;

    /// Parses a mnemonic with an optional `IS` or `OS` suffix,
    /// case-insensitively (`"vae1is"`, `"RVALE1"`, `"ipas2le1os"`). No base
    /// mnemonic ends in `IS` or `OS`, so stripping the suffix is unambiguous.
    /// Every EL1&0 operation the model knows has an OS form (FEAT_TLBIOS,
    /// C5.5: VAE1OS ... RIPAS2LE1OS).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        if let Some(op) = TlbiOp::from_mnemonic(&upper) {
            return Ok(Tlbi::new(op, false));
        }
        if let Some(op) = upper.strip_suffix("IS").and_then(TlbiOp::from_mnemonic) {
            return Ok(Tlbi::new(op, true));
        }
        upper
            .strip_suffix("OS")
            .and_then(TlbiOp::from_mnemonic)
            .map(Tlbi::outer_shareable)
            .ok_or_else(|| ParseTlbiError(s.to_string()))
    }
}

impl From<Tlbi> for String {
    fn from(t: Tlbi) -> String {
        t.to_string()
    }
}

impl TryFrom<String> for Tlbi {
    type Error = ParseTlbiError;
    fn try_from(s: String) -> Result<Tlbi, ParseTlbiError> {
        s.parse()
    }
}

// ---------------------------------------------------------------------------
// Operand fields
// ---------------------------------------------------------------------------

/// A valid TTL level hint of a non-range operation: TTL\[3:2\] names the
/// granule (TG encoding), TTL\[1:0\] the level of the leaf entry (Arm ARM
/// D8.17.5.3, Table D8-123). "No hint" (TTL\[3:2\] = 0b00) is `None` where a
/// `TtlHint` is optional.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TtlHint {
    /// Granule of the tables the leaf comes from.
    pub granule: Granule,
    /// Lookup level of the leaf.
    pub level: u8,
}

impl TtlHint {
    /// The hint, if it is a valid encoding without FEAT_LPA2: 4K levels
    /// 1..=3, 16K levels 2..=3, 64K levels 1..=3 (Table D8-123;
    /// `ResTLBITTL`, J1.1.3.447).
    pub const fn new(granule: Granule, level: u8) -> Option<TtlHint> {
        let ok = match granule {
            Granule::K4 | Granule::K64 => matches!(level, 1..=3),
            Granule::K16 => matches!(level, 2..=3),
        };
        if ok {
            Some(TtlHint { granule, level })
        } else {
            None
        }
    }

    /// The 4-bit TTL encoding.
    pub const fn bits(self) -> u8 {
        (self.granule.tg() << 2) | (self.level & 3)
    }

    /// Decodes a 4-bit TTL field: the hint, or `None` for no hint. Every
    /// encoding has a meaning (Arm ARM C5.5, the TTL field of each TLBI by
    /// VA or IPA; Table D8-123): TTL\[3:2\] = 0b00 is "no information" whatever
    /// TTL\[1:0\] holds, and the level-0 encodings of 4K and 16K without
    /// FEAT_LPA2, 16K level 1 without FEAT_LPA2 and 64K level 0 are to be
    /// treated "as if TTL<3:2> is 0b00", so they are no hint too.
    fn decode(ttl: u8) -> Option<TtlHint> {
        let granule = Granule::from_tg(ttl >> 2)?;
        TtlHint::new(granule, ttl & 3)
    }

    fn encode_opt(t: Option<TtlHint>) -> u64 {
        t.map_or(0, |t| u64::from(t.bits()))
    }
}

/// The range fields shared by RVA*, RVAA* and RIPAS2* (Arm ARM D8.17.5.2):
/// TG\[47:46\], SCALE\[45:44\], NUM\[43:39\], TTL\[38:37\], BaseADDR\[36:0\].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TlbiRange {
    /// TG: the granule of the entries to invalidate; entries of another
    /// granule need not be removed (D8.17.5.2 RXKMMX).
    pub granule: Granule,
    /// SCALE, 0..=3: exponent of the range size.
    pub scale: u8,
    /// NUM, 0..=31: multiplier of the range size.
    pub num: u8,
    /// TTL: `None` for 0b00 (leaves at any level), else the level (1..=3)
    /// of every leaf in the range (Table D8-124).
    pub ttl: Option<u8>,
    /// BaseADDR, the start address in units of the granule: VA\[48:12\] for
    /// 4K, VA\[50:14\] for 16K, VA\[52:16\] for 64K (D8.17.5.2, ITYBWT, without
    /// TCR_EL1.DS; the model has no FEAT_LPA2).
    pub base: u64,
}

impl TlbiRange {
    /// The range of `(num + 1) << (5 * scale + 1)` pages of `granule`
    /// starting at `start` (which it truncates to a page).
    pub const fn new(granule: Granule, start: u64, scale: u8, num: u8, ttl: Option<u8>) -> Self {
        TlbiRange {
            granule,
            scale,
            num,
            ttl,
            base: (start >> granule.shift()) & mask(BASE_FIELD_BITS),
        }
    }

    /// Pages covered: (NUM + 1) * 2^(5 * SCALE + 1), counted in TG-sized
    /// pages (D8.17.5.2, RQKRKL). Not the SMMUv3 formula.
    pub const fn pages(&self) -> u64 {
        ((self.num as u64 & 31) + 1) << (5 * (self.scale as u32 & 3) + 1)
    }

    /// The first address: BaseADDR shifted by the granule, with the top
    /// BaseADDR bit replicated upwards so that a TTBR1-half base names the
    /// upper VA range (`TLBIRange`, J1.1.3.451).
    pub const fn start(&self) -> u64 {
        sign_extend(self.base & mask(BASE_FIELD_BITS), BASE_FIELD_BITS) << self.granule.shift()
    }

    /// The inclusive address range invalidated:
    /// `[BaseADDR, BaseADDR + pages * granule)` (D8.17.5.2 RQKRKL). A range
    /// running past the top of its VA half saturates there instead of
    /// wrapping (`TLBIRange`: "overflow, saturate it"; D8.17.5.2).
    pub const fn range(&self) -> AddrRange {
        let start = self.start();
        let len = self.pages() << self.granule.shift();
        let end = start.wrapping_add(len);
        let last = if (end ^ start) & (1 << 52) != 0 {
            // Saturate at the top of the half `start` lies in.
            if start & (1 << 52) != 0 {
                u64::MAX
            } else {
                mask(52)
            }
        } else {
            end - 1
        };
        AddrRange { first: start, last }
    }

    fn encode(&self) -> u64 {
        (u64::from(self.granule.tg()) << 46)
            | (u64::from(self.scale & 3) << 44)
            | (u64::from(self.num & 31) << 39)
            | (u64::from(self.ttl.unwrap_or(0) & 3) << 37)
            | (self.base & mask(BASE_FIELD_BITS))
    }
}

/// A decoded `Xt` operand. Which variant applies is fixed by the operation
/// ([`TlbiOp::operand_kind`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TlbiOperand {
    /// VMALLE1, VMALLS12E1, ALLE1: `Xt` is ignored.
    None,
    /// ASIDE1: ASID\[63:48\]; bits \[47:0\] RES0 (C5.5.10).
    Asid {
        /// ASID to match.
        asid: u16,
    },
    /// VA*, VAA*: ASID\[63:48\] (RES0 for VAA), TTL\[47:44\], VA\[55:12\] in
    /// bits \[43:0\] (D8.17.5.1, IZVNJG).
    Va {
        /// ASID to match; 0 for the VAA forms, where the bits are RES0.
        asid: u16,
        /// Level hint; `None` for TTL = 0b0000.
        ttl: Option<TtlHint>,
        /// VA\[55:12\], the raw 44-bit field.
        page: u64,
    },
    /// IPAS2*: NS\[63\], RES0\[62:48\], TTL\[47:44\], RES0\[43:40\],
    /// IPA\[51:48\] in \[39:36\] (RES0 without FEAT_LPA), IPA\[47:12\] in \[35:0\]
    /// (D8.17.5.1, ICPNYZ; C5.5.13).
    Ipa {
        /// NS: selects the Non-secure IPA space when issued from Secure
        /// state; RES0 in Non-secure state. Kept for bit-exactness.
        ns: bool,
        /// Level hint; `None` for TTL = 0b0000.
        ttl: Option<TtlHint>,
        /// IPA\[47:12\], the raw 36-bit field.
        page: u64,
    },
    /// RVA*, RVAA*: ASID\[63:48\] (RES0 for RVAA) and the range fields.
    VaRange {
        /// ASID to match; 0 for the RVAA forms.
        asid: u16,
        /// The range.
        range: TlbiRange,
    },
    /// RIPAS2*: NS\[63\], RES0\[62:48\] and the range fields.
    IpaRange {
        /// As for [`TlbiOperand::Ipa`].
        ns: bool,
        /// The range.
        range: TlbiRange,
    },
}

/// VA\[55:12\] field to address: the field shifted up, VA\[63:56\] taken to
/// equal VA\[55\] ("hardware interprets VA\[63:56\] as each having the same value
/// as VA\[55\]", D8.17.5.1 RJGGKN), so upper-half VAs come out canonical.
const fn va_from_field(page: u64) -> u64 {
    sign_extend((page & mask(VA_FIELD_BITS)) << 12, 56)
}

/// IPA\[47:12\] field to address (zero-extended, `AArch64.TLBI_IPAS2`).
const fn ipa_from_field(page: u64) -> u64 {
    (page & mask(IPA_FIELD_BITS)) << 12
}

impl TlbiOperand {
    /// A by-VA operand for `va` (any address in the page; pass `asid` 0 for
    /// the VAA forms).
    pub const fn va(asid: u16, va: Va, ttl: Option<TtlHint>) -> TlbiOperand {
        TlbiOperand::Va {
            asid,
            ttl,
            page: (va.0 >> 12) & mask(VA_FIELD_BITS),
        }
    }

    /// A by-IPA operand for `ipa` (Non-secure, NS = 0).
    pub const fn ipa(ipa: Ipa, ttl: Option<TtlHint>) -> TlbiOperand {
        TlbiOperand::Ipa {
            ns: false,
            ttl,
            page: (ipa.0 >> 12) & mask(IPA_FIELD_BITS),
        }
    }

    /// The address of a non-range by-VA or by-IPA operand: VA\[55:12\] << 12
    /// sign-extended from bit 55, or IPA\[47:12\] << 12. The operation reaches
    /// entries whose span overlaps the 4 KiB page at this address.
    pub const fn address(&self) -> Option<InputAddr> {
        match *self {
            TlbiOperand::Va { page, .. } => Some(InputAddr::Va(Va(va_from_field(page)))),
            TlbiOperand::Ipa { page, .. } => Some(InputAddr::Ipa(Ipa(ipa_from_field(page)))),
            _ => None,
        }
    }

    /// The input addresses the operand names, VAs or IPAs: the 4 KiB page
    /// for the non-range forms, [`TlbiRange::range`] for the range forms,
    /// `None` (all addresses) otherwise.
    pub const fn input_range(&self) -> Option<InputRange> {
        match self {
            TlbiOperand::Va { .. } | TlbiOperand::Ipa { .. } => match self.address() {
                Some(a) => Some(InputRange::span(a, 12)),
                None => None,
            },
            TlbiOperand::VaRange { range, .. } => Some(InputRange::Va(range.range())),
            TlbiOperand::IpaRange { range, .. } => Some(InputRange::Ipa(range.range())),
            TlbiOperand::None | TlbiOperand::Asid { .. } => None,
        }
    }

    /// The 64-bit `Xt` value. Fields wider than their slot are truncated;
    /// [`TlbiOperand::decode`] inverts this exactly for valid operands.
    pub fn encode(&self) -> u64 {
        match *self {
            TlbiOperand::None => 0,
            TlbiOperand::Asid { asid } => u64::from(asid) << 48,
            TlbiOperand::Va { asid, ttl, page } => {
                (u64::from(asid) << 48)
                    | (TtlHint::encode_opt(ttl) << 44)
                    | (page & mask(VA_FIELD_BITS))
            }
            TlbiOperand::Ipa { ns, ttl, page } => {
                (u64::from(ns) << 63)
                    | (TtlHint::encode_opt(ttl) << 44)
                    // Bits [39:0]: an out-of-model IPA[51:48] shows up here
                    // and is rejected by decode.
                    | (page & mask(40))
            }
            TlbiOperand::VaRange { asid, range } => (u64::from(asid) << 48) | range.encode(),
            TlbiOperand::IpaRange { ns, range } => (u64::from(ns) << 63) | range.encode(),
        }
    }

    /// Decodes `xt` as the operand of `tlbi` (a [`Tlbi`], or a bare
    /// [`TlbiOp`] for the local form), rejecting every encoding the
    /// architecture reserves, makes RES0 and set, or makes UNPREDICTABLE.
    pub fn decode(tlbi: impl Into<Tlbi>, xt: u64) -> Result<TlbiOperand, TlbiDecodeError> {
        let tlbi = tlbi.into();
        let d = Decoder { tlbi, xt };
        let op = tlbi.op;
        match op.operand_kind() {
            // "Xt" is ignored: the pseudocode of VMALL/VMALLS12/ALL never
            // reads it (J1.1.3.430, 440, 441).
            OperandKind::None => Ok(TlbiOperand::None),
            OperandKind::Asid => {
                d.res0(47, 0)?;
                Ok(TlbiOperand::Asid {
                    asid: bits(xt, 48, 16) as u16,
                })
            }
            OperandKind::Va => {
                let asid = d.asid_or_res0(op)?;
                let ttl = d.ttl4();
                Ok(TlbiOperand::Va {
                    asid,
                    ttl,
                    page: bits(xt, 0, VA_FIELD_BITS),
                })
            }
            OperandKind::Ipa => {
                let ns = d.ns();
                d.res0(62, 48)?;
                let ttl = d.ttl4();
                // IPA[55:52] needs FEAT_D128 (C5.5.13).
                d.res0(43, 40)?;
                // IPA[51:48] needs FEAT_LPA (52-bit IPAs); the model has 48.
                let hi = bits(xt, 36, 4);
                if hi != 0 {
                    return Err(d.err(
                        "IPA[51:48] (bits [39:36])",
                        hi,
                        4,
                        "is RES0: 52-bit IPAs need FEAT_LPA and the model has 48-bit PAs".into(),
                    ));
                }
                Ok(TlbiOperand::Ipa {
                    ns,
                    ttl,
                    page: bits(xt, 0, IPA_FIELD_BITS),
                })
            }
            OperandKind::VaRange => {
                let asid = d.asid_or_res0(op)?;
                let range = d.range()?;
                Ok(TlbiOperand::VaRange { asid, range })
            }
            OperandKind::IpaRange => {
                let ns = d.ns();
                d.res0(62, 48)?;
                let range = d.range()?;
                Ok(TlbiOperand::IpaRange { ns, range })
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Decoding and its errors
// ---------------------------------------------------------------------------

/// The value of an operand field, printed in binary for narrow fields (as
/// the Arm ARM writes encodings) and in hex for wide ones.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldValue {
    /// The field value, shifted down to bit 0.
    pub value: u64,
    /// The field width in bits.
    pub width: u8,
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.width <= 5 {
            write!(f, "0b{:0w$b}", self.value, w = usize::from(self.width))
        } else {
            write!(f, "{:#x}", self.value)
        }
    }
}

/// An operand the model refuses: a reserved encoding, a RES0 field that is
/// not zero, or a combination whose effect the Arm ARM leaves UNPREDICTABLE.
/// Names the instruction, the whole operand, the field and its value, e.g.
/// `TLBI RVAE1IS operand 0x0001000000000001: field TG = 0b00 is reserved`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("TLBI {tlbi} operand {operand:#018x}: field {field} = {value} {reason}")]
pub struct TlbiDecodeError {
    /// The instruction.
    pub tlbi: Tlbi,
    /// The whole operand.
    pub operand: u64,
    /// The field, as the Arm ARM names it ("TG", "TTL", "BaseADDR", "RES0
    /// bits \[62:48\]", ...).
    pub field: &'static str,
    /// The offending value of the field.
    pub value: FieldValue,
    /// Why it is refused, with the rule.
    pub reason: String,
}

impl TlbiDecodeError {
    /// What the architecture allows the instruction to do with this
    /// operand, with the rule: the effect the model takes (nothing
    /// removed, [`Tlbi::malformed_scope`]) and why that is allowed.
    pub fn effect(&self) -> &'static str {
        match self.field {
            // TLBIRange returns "not valid" for TG = 0b00 and the
            // instruction invalidates nothing (J1.1.3.451; Table D8-122).
            "TG" => {
                "a range with a reserved TG is not valid and invalidates nothing \
                 (Arm ARM D8.17.5.2, Table D8-122; TLBIRange pseudocode)"
            }
            // With a level-1 or level-2 TTL the base must be aligned to that
            // level's block, else the range is UNPREDICTABLE (D8.17.5.2).
            "BaseADDR" => {
                "an UNPREDICTABLE range may miss every entry: taken as invalidating \
                 nothing"
            }
            // Software must write RES0 fields as zero (Arm ARM Glossary,
            // RES0); a non-zero value has no architected meaning here and a
            // later feature gives the bits one (IPA[51:48] is FEAT_LPA's).
            _ => {
                "a RES0 field written non-zero has no architected meaning (Arm ARM \
                 Glossary, RES0) and may name other entries under a later feature: \
                 taken as invalidating nothing"
            }
        }
    }
}

struct Decoder {
    tlbi: Tlbi,
    xt: u64,
}

impl Decoder {
    fn err(&self, field: &'static str, value: u64, width: u8, reason: String) -> TlbiDecodeError {
        TlbiDecodeError {
            tlbi: self.tlbi,
            operand: self.xt,
            field,
            value: FieldValue { value, width },
            reason,
        }
    }

    /// Bits [hi:lo] must be zero.
    fn res0(&self, hi: u32, lo: u32) -> Result<(), TlbiDecodeError> {
        let width = hi - lo + 1;
        let v = bits(self.xt, lo, width);
        if v == 0 {
            return Ok(());
        }
        let field = match (hi, lo) {
            (47, 0) => "RES0 bits [47:0]",
            (63, 48) => "RES0 bits [63:48]",
            (62, 48) => "RES0 bits [62:48]",
            (43, 40) => "RES0 bits [43:40]",
            _ => "RES0 bits",
        };
        Err(self.err(field, v, width as u8, "is not zero".into()))
    }

    /// Bits \[63:48\]: the ASID, or RES0 for the all-ASID forms (D8.17.5.1:
    /// "If the instruction does not require an ASID argument, RES0").
    fn asid_or_res0(&self, op: TlbiOp) -> Result<u16, TlbiDecodeError> {
        if op.uses_asid() {
            Ok(bits(self.xt, 48, 16) as u16)
        } else {
            self.res0(63, 48).map(|()| 0)
        }
    }

    fn ns(&self) -> bool {
        self.xt >> 63 != 0
    }

    /// The 4-bit TTL of a non-range operation, bits \[47:44\]: never an
    /// error (see [`TtlHint::decode`]).
    fn ttl4(&self) -> Option<TtlHint> {
        TtlHint::decode(bits(self.xt, 44, 4) as u8)
    }

    /// The range fields, bits \[47:0\].
    fn range(&self) -> Result<TlbiRange, TlbiDecodeError> {
        let xt = self.xt;
        let tg = bits(xt, 46, 2);
        let granule = Granule::from_tg(tg as u8).ok_or_else(|| {
            // TLBIRange returns "not valid" and the instruction does nothing
            // (J1.1.3.451; Table D8-122).
            self.err(
                "TG",
                tg,
                2,
                "is reserved (Arm ARM D8.17.5.2, Table D8-122)".into(),
            )
        })?;
        let ttl_raw = bits(xt, 37, 2) as u8;
        // 16K with TTL = 0b01 names level 1 only with FEAT_LPA2; without it
        // the range is treated as if TTL were 0b00, leaves at any level (Arm
        // ARM C5.5, the TTL field of RVAE1 and the other range forms).
        let ttl_raw = if granule == Granule::K16 && ttl_raw == 1 {
            0
        } else {
            ttl_raw
        };
        let ttl = (ttl_raw != 0).then_some(ttl_raw);
        let base = bits(xt, 0, BASE_FIELD_BITS);
        // With a level-1 or level-2 hint, BaseADDR must be aligned to that
        // level's block, else "the invalidated address range is
        // UNPREDICTABLE" (D8.17.5.2; C5.5.35).
        if let Some(level @ 1..=2) = ttl {
            let align = granule.level_shift(level) - granule.shift();
            if base & mask(align) != 0 {
                return Err(self.err(
                    "BaseADDR",
                    base,
                    BASE_FIELD_BITS as u8,
                    format!(
                        "is not aligned to the {} {} level-{level} block the TTL names: the \
                         invalidated range is UNPREDICTABLE (Arm ARM D8.17.5.2)",
                        human_size(1u64 << granule.level_shift(level)),
                        granule.name()
                    ),
                ));
            }
        }
        Ok(TlbiRange {
            granule,
            scale: bits(xt, 44, 2) as u8,
            num: bits(xt, 39, 5) as u8,
            ttl,
            base,
        })
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        if bytes >= 1 << shift && bytes & mask(shift) == 0 {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Pa;
    use crate::tlb::entry::{EntryKind, Mapping, Stage, TlbEntry};
    use proptest::prelude::*;

    fn t(s: &str) -> Tlbi {
        s.parse().unwrap()
    }

    fn ttl(g: Granule, level: u8) -> Option<TtlHint> {
        Some(TtlHint::new(g, level).unwrap())
    }

    fn va_range(
        asid: u16,
        g: Granule,
        start: u64,
        scale: u8,
        num: u8,
        ttl: Option<u8>,
    ) -> TlbiOperand {
        TlbiOperand::VaRange {
            asid,
            range: TlbiRange::new(g, start, scale, num, ttl),
        }
    }

    /// Checks the operand encodes to `xt`, and that `xt` decodes back to it.
    fn check(tlbi: &str, operand: TlbiOperand, xt: u64) {
        assert_eq!(
            operand.encode(),
            xt,
            "{tlbi} {operand:?}: got {:#018x}",
            operand.encode()
        );
        assert_eq!(
            TlbiOperand::decode(t(tlbi), xt),
            Ok(operand),
            "{tlbi} {xt:#018x}"
        );
    }

    fn range_of(tlbi: &str, xt: u64) -> AddrRange {
        TlbiOperand::decode(t(tlbi), xt)
            .unwrap()
            .input_range()
            .unwrap()
            .addrs()
    }

    fn span(first: u64, last: u64) -> AddrRange {
        AddrRange { first, last }
    }

    // ---- linux-reference.md §B.6, worked vectors #1-#9 (4K, TG = 1) ----

    #[test]
    fn b6_1_flush_tlb_page_without_ttl() {
        // ASID 0x42 << 48 | VA 0xffff8a3b5000 >> 12 = 0xffff8a3b5.
        check(
            "VALE1IS",
            TlbiOperand::va(0x42, Va(0xffff_8a3b_5000), None),
            0x0042_000f_fff8_a3b5,
        );
        assert_eq!(
            range_of("VALE1IS", 0x0042_000f_fff8_a3b5),
            span(0xffff_8a3b_5000, 0xffff_8a3b_5fff)
        );
    }

    #[test]
    fn b6_2_flush_tlb_page_level_3() {
        // TTL = 0b0111 (4K, level 3) << 44 = 0x7000_0000_0000.
        check(
            "VALE1IS",
            TlbiOperand::va(0x42, Va(0xffff_8a3b_5000), ttl(Granule::K4, 3)),
            0x0042_700f_fff8_a3b5,
        );
    }

    #[test]
    fn b6_3_block_level_2() {
        // TTL = 0b0110 << 44 = 0x6000_0000_0000; 0x40200000 >> 12 = 0x40200.
        let op = TlbiOperand::va(0x42, Va(0x4020_0000), ttl(Granule::K4, 2));
        check("VALE1IS", op, 0x0042_6000_0004_0200);
        check("VAE1IS", op, 0x0042_6000_0004_0200);
    }

    #[test]
    fn b6_4_range_512_pages() {
        // ASID 5<<48, TG 1<<46, SCALE 1<<44, NUM 7<<39, BaseADDR 0x40000.
        let op = va_range(5, Granule::K4, 0x4000_0000, 1, 7, None);
        check("RVAE1IS", op, 0x0005_5380_0004_0000);
        let TlbiOperand::VaRange { range, .. } = op else {
            unreachable!()
        };
        assert_eq!(range.pages(), 512);
        assert_eq!(range.range(), span(0x4000_0000, 0x401f_ffff));
    }

    #[test]
    fn b6_5_three_pages() {
        // SCALE 0 NUM 0 = 2 pages at BaseADDR 1, then a single op at page 3.
        check(
            "RVAE1IS",
            va_range(1, Granule::K4, 0x1000, 0, 0, None),
            0x0001_4000_0000_0001,
        );
        check(
            "VAE1IS",
            TlbiOperand::va(1, Va(0x3000), None),
            0x0001_0000_0000_0003,
        );
        assert_eq!(
            range_of("RVAE1IS", 0x0001_4000_0000_0001),
            span(0x1000, 0x2fff)
        );
        assert_eq!(
            range_of("VAE1IS", 0x0001_0000_0000_0003),
            span(0x3000, 0x3fff)
        );
    }

    #[test]
    fn b6_6_thousand_pages() {
        // 14<<39 = 0x0700_0000_0000; 19<<39 = 0x0980_0000_0000.
        check(
            "RVAE1IS",
            va_range(7, Granule::K4, 0x1000_0000, 1, 14, None),
            0x0007_5700_0001_0000,
        );
        check(
            "RVAE1IS",
            va_range(7, Granule::K4, 0x103c_0000, 0, 19, None),
            0x0007_4980_0001_03c0,
        );
        let a = range_of("RVAE1IS", 0x0007_5700_0001_0000);
        let b = range_of("RVAE1IS", 0x0007_4980_0001_03c0);
        assert_eq!(a, span(0x1000_0000, 0x1000_0000 + 960 * 0x1000 - 1));
        assert_eq!(b.first, a.last + 1);
        assert_eq!(b.last, 0x1000_0000 + 1000 * 0x1000 - 1);
    }

    #[test]
    fn b6_7_lpa2_operands() {
        // 13 single ops at 0x3000..=0xf000.
        for page in 0x3..=0xfu64 {
            check(
                "VAE1IS",
                TlbiOperand::va(9, Va(page << 12), None),
                0x0009_0000_0000_0000 | page,
            );
        }
        // The range op: NUM 24 << 39 = 0x0c00_0000_0000, TG 1, BaseADDR 1.
        let op = TlbiOperand::VaRange {
            asid: 9,
            range: TlbiRange {
                granule: Granule::K4,
                scale: 0,
                num: 24,
                ttl: None,
                base: 1,
            },
        };
        check("RVAE1IS", op, 0x0009_4c00_0000_0001);
        let TlbiOperand::VaRange { range, .. } = op else {
            unreachable!()
        };
        assert_eq!(range.pages(), 50);
        // With LPA2 (TCR_EL1.DS = 1) BaseADDR is VA[52:16]: 1 << 16 = 0x10000,
        // and 0x10000 + 50 pages = 0x42000, where the last single op goes.
        assert_eq!((1u64 << 16) + 50 * 0x1000, 0x42000);
        // The model has no LPA2: it reads the same field as VA[48:12], a
        // different range. LPA2-encoded operands must not be fed to it.
        assert_eq!(range.range(), span(0x1000, 0x1000 + 50 * 0x1000 - 1));
        check(
            "VAE1IS",
            TlbiOperand::va(9, Va(0x42000), None),
            0x0009_0000_0000_0042,
        );
    }

    #[test]
    fn b6_8_max_range_pages() {
        // SCALE 3 << 44 = 0x3000_0000_0000, NUM 31 << 39 = 0x0f80_0000_0000.
        let op = va_range(0, Granule::K4, 0x4000_0000, 3, 31, None);
        check("RVAE1IS", op, 0x0000_7f80_0004_0000);
        let TlbiOperand::VaRange { range, .. } = op else {
            unreachable!()
        };
        assert_eq!(range.pages(), 2_097_152);
        assert_eq!(
            range.range(),
            span(0x4000_0000, 0x4000_0000 + (8 << 30) - 1)
        );
    }

    #[test]
    fn b6_9_kvm_stage2_range() {
        let op = TlbiOperand::IpaRange {
            ns: false,
            range: TlbiRange::new(Granule::K4, 0x4000_0000, 1, 7, None),
        };
        check("RIPAS2E1IS", op, 0x0000_5380_0004_0000);
        assert_eq!(
            range_of("RIPAS2E1IS", 0x0000_5380_0004_0000),
            span(0x4000_0000, 0x401f_ffff)
        );
        // Followed by VMALLE1IS, which ignores Xt.
        assert_eq!(
            TlbiOperand::decode(t("VMALLE1IS"), 0),
            Ok(TlbiOperand::None)
        );
    }

    // ---- Further vectors, computed by hand from the D8.17.5 layouts ----

    #[test]
    fn hand_16k_range_with_ttl() {
        // RVAE1IS, 16K, ASID 0x1234, SCALE 0, NUM 3 (8 pages = 128 KiB), TTL 3,
        // VA 0x8000_0000: BaseADDR = 0x8000_0000 >> 14 = 0x2_0000.
        // ASID 0x1234<<48 = 0x1234_0000_0000_0000; TG 2<<46 = 0x8000_0000_0000;
        // NUM 3<<39 = 0x0180_0000_0000; TTL 3<<37 = 0x0060_0000_0000.
        // Sum: 0x1234_81e0_0002_0000.
        let op = va_range(0x1234, Granule::K16, 0x8000_0000, 0, 3, Some(3));
        check("RVAE1IS", op, 0x1234_81e0_0002_0000);
        assert_eq!(
            range_of("RVAE1IS", 0x1234_81e0_0002_0000),
            span(0x8000_0000, 0x8001_ffff)
        );
    }

    #[test]
    fn hand_64k_range_all_asids() {
        // RVAALE1, 64K, SCALE 1, NUM 1: 2 * 64 = 128 pages * 64K = 8 MiB at
        // VA 0x4000_0000: BaseADDR = 0x4000_0000 >> 16 = 0x4000. ASID RES0.
        // TG 3<<46 = 0xc000_0000_0000; SCALE 1<<44 = 0x1000_0000_0000;
        // NUM 1<<39 = 0x0080_0000_0000. Sum: 0x0000_d080_0000_4000.
        check(
            "RVAALE1",
            va_range(0, Granule::K64, 0x4000_0000, 1, 1, None),
            0x0000_d080_0000_4000,
        );
        assert_eq!(
            range_of("RVAALE1", 0x0000_d080_0000_4000),
            span(0x4000_0000, 0x407f_ffff)
        );
    }

    #[test]
    fn hand_vaae1_64k_level2_ttl() {
        // VAAE1IS, TTL 64K level 2 = 0b1110 << 44 = 0xe000_0000_0000;
        // VA 0x2000_0000 >> 12 = 0x2_0000; ASID RES0.
        check(
            "VAAE1IS",
            TlbiOperand::va(0, Va(0x2000_0000), ttl(Granule::K64, 2)),
            0x0000_e000_0002_0000,
        );
    }

    #[test]
    fn hand_ipas2e1_with_ttl() {
        // IPAS2E1IS, IPA 0x8_4000_0000 >> 12 = 0x84_0000; TTL 4K L3 = 0b0111
        // << 44 = 0x7000_0000_0000. Sum: 0x0000_7000_0084_0000.
        check(
            "IPAS2E1IS",
            TlbiOperand::ipa(Ipa(0x8_4000_0000), ttl(Granule::K4, 3)),
            0x0000_7000_0084_0000,
        );
        assert_eq!(
            range_of("IPAS2E1IS", 0x0000_7000_0084_0000),
            span(0x8_4000_0000, 0x8_4000_0fff)
        );
        // NS (bit 63) round-trips: 1<<63 = 0x8000_0000_0000_0000.
        check(
            "IPAS2LE1",
            TlbiOperand::Ipa {
                ns: true,
                ttl: None,
                page: 0x84_0000,
            },
            0x8000_0000_0084_0000,
        );
    }

    #[test]
    fn hand_ripas2le1_16k_level2() {
        // RIPAS2LE1IS, 16K, SCALE 2, NUM 0: 2^11 = 2048 pages * 16K = 32 MiB
        // at IPA 0x1_0000_0000: BaseADDR = 0x1_0000_0000 >> 14 = 0x4_0000,
        // 32 MiB aligned as TTL level 2 requires (16K L2 block = 2^25).
        // TG 2<<46 = 0x8000_0000_0000; SCALE 2<<44 = 0x2000_0000_0000;
        // TTL 2<<37 = 0x0040_0000_0000. Sum: 0x0000_a040_0004_0000.
        let op = TlbiOperand::IpaRange {
            ns: false,
            range: TlbiRange::new(Granule::K16, 0x1_0000_0000, 2, 0, Some(2)),
        };
        check("RIPAS2LE1IS", op, 0x0000_a040_0004_0000);
        assert_eq!(
            range_of("RIPAS2LE1IS", 0x0000_a040_0004_0000),
            span(0x1_0000_0000, 0x1_01ff_ffff)
        );
    }

    #[test]
    fn hand_aside1() {
        // ASID 0xbeef << 48.
        check(
            "ASIDE1IS",
            TlbiOperand::Asid { asid: 0xbeef },
            0xbeef_0000_0000_0000,
        );
    }

    #[test]
    fn hand_vale1_16k_level3() {
        // VALE1, 16K L3 = 0b1011 << 44 = 0xb000_0000_0000; ASID 0x10 << 48;
        // VA 0x7fff_ffff_c000 >> 12 = 0x7_ffff_fffc. Sum: 0x0010_b007_ffff_fffc.
        check(
            "VALE1",
            TlbiOperand::va(0x10, Va(0x7fff_ffff_c000), ttl(Granule::K16, 3)),
            0x0010_b007_ffff_fffc,
        );
    }

    #[test]
    fn hand_upper_half_va() {
        // VAE1IS of the kernel VA 0xffff_8000_1234_5000: >> 12 =
        // 0xf_fff8_0001_2345, masked to 44 bits = 0xff8_0001_2345.
        // Decoding replicates VA[55] into VA[63:56] (D8.17.5.1 RJGGKN).
        check(
            "VAE1IS",
            TlbiOperand::va(0, Va(0xffff_8000_1234_5000), None),
            0x0000_0ff8_0001_2345,
        );
        assert_eq!(
            TlbiOperand::decode(t("VAE1IS"), 0x0000_0ff8_0001_2345)
                .unwrap()
                .address(),
            Some(Va(0xffff_8000_1234_5000).into())
        );
    }

    #[test]
    fn hand_upper_half_range() {
        // RVAE1, 4K, 2 pages at 0xffff_0000_0000_0000: BaseADDR = VA[48:12]
        // = 0x10_0000_0000 (bit 36 = VA[48] = 1). TG 1<<46 = 0x4000_0000_0000.
        // TLBIRange replicates BaseADDR[36] upwards (J1.1.3.451).
        check(
            "RVAE1",
            va_range(3, Granule::K4, 0xffff_0000_0000_0000, 0, 0, None),
            0x0003_4010_0000_0000,
        );
        assert_eq!(
            range_of("RVAE1", 0x0003_4010_0000_0000),
            span(0xffff_0000_0000_0000, 0xffff_0000_0000_1fff)
        );
        // A range running off the top saturates instead of wrapping: 64K,
        // BaseADDR all ones = 0xffff_ffff_ffff_0000, 2 pages.
        let r = TlbiRange {
            granule: Granule::K64,
            scale: 0,
            num: 0,
            ttl: None,
            base: mask(37),
        };
        assert_eq!(r.range(), span(0xffff_ffff_ffff_0000, u64::MAX));
    }

    #[test]
    fn no_operand_ops_ignore_xt() {
        for op in ["VMALLE1", "VMALLS12E1IS", "ALLE1"] {
            assert_eq!(TlbiOperand::decode(t(op), u64::MAX), Ok(TlbiOperand::None));
            assert_eq!(TlbiOperand::None.encode(), 0);
        }
    }

    // ---- Decode errors ----

    fn decode_err(tlbi: &str, xt: u64) -> TlbiDecodeError {
        TlbiOperand::decode(t(tlbi), xt).expect_err("must be rejected")
    }

    #[test]
    fn range_tg_zero_is_reserved() {
        let e = decode_err("RVAE1IS", 0x0001_0000_0000_0001);
        assert_eq!(e.field, "TG");
        assert_eq!(e.value, FieldValue { value: 0, width: 2 });
        assert!(
            e.to_string().starts_with(
                "TLBI RVAE1IS operand 0x0001000000000001: field TG = 0b00 is reserved"
            ),
            "{e}"
        );
        assert_eq!(decode_err("RIPAS2E1", 0).field, "TG");
    }

    #[test]
    fn ttl_without_a_level_is_no_hint() {
        // TTL[3:2] = 0b00 is "no information" whatever TTL[1:0] holds; 4K L0
        // and 16K L1 without FEAT_LPA2, 16K L0 and 64K L0 are treated as if
        // TTL[3:2] were 0b00 (Arm ARM C5.5). Page 0x1234 stays the address.
        for ttl in [0b0001u64, 0b0011, 0b0100, 0b1000, 0b1001, 0b1100] {
            for op in ["VAE1IS", "VALE1", "VAAE1", "VAALE1IS"] {
                let d = TlbiOperand::decode(t(op), ttl << 44 | 0x1234).unwrap();
                assert_eq!(
                    d,
                    TlbiOperand::Va {
                        asid: 0,
                        ttl: None,
                        page: 0x1234
                    },
                    "{op} {ttl:#06b}"
                );
                let scope = t(op).scope(&d, 0);
                assert_eq!((scope.ttl_level, scope.granule), (None, None));
            }
            for op in ["IPAS2E1", "IPAS2LE1IS"] {
                let d = TlbiOperand::decode(t(op), ttl << 44 | 0x1234).unwrap();
                assert_eq!(
                    d,
                    TlbiOperand::Ipa {
                        ns: false,
                        ttl: None,
                        page: 0x1234
                    }
                );
            }
        }
        // The levels that exist keep their hint: 4K L1 = 0b0101.
        let d = TlbiOperand::decode(t("VAE1"), 0b0101 << 44).unwrap();
        assert_eq!(
            d,
            TlbiOperand::Va {
                asid: 0,
                ttl: ttl(Granule::K4, 1),
                page: 0
            }
        );
    }

    #[test]
    fn range_ttl_16k_level_1_is_no_hint() {
        // TG 16K (2<<46) with TTL 0b01 (1<<37): level 1 needs LPA2, so the
        // range is treated as TTL 0b00.
        let d = TlbiOperand::decode(t("RVALE1IS"), 2 << 46 | 1 << 37).unwrap();
        let TlbiOperand::VaRange { range, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!((range.granule, range.ttl), (Granule::K16, None));
        // The same TTL is level 1 for 4K and 64K (aligned base 0).
        for tg in [1u64, 3] {
            let d = TlbiOperand::decode(t("RVALE1IS"), tg << 46 | 1 << 37).unwrap();
            let TlbiOperand::VaRange { range, .. } = d else {
                panic!("{d:?}")
            };
            assert_eq!(range.ttl, Some(1));
        }
    }

    #[test]
    fn malformed_operand_removes_nothing() {
        // RES0 bits [47:0] of ASIDE1 set: refused by decode, and the scope
        // the model takes for it reaches no entry.
        let e = decode_err("ASIDE1IS", 1 << 48 | 1);
        assert_eq!(e.field, "RES0 bits [47:0]");
        assert!(e.effect().contains("RES0"), "{}", e.effect());
        let scope = t("ASIDE1IS").malformed_scope(0);
        let map = Mapping::of_stage(Stage::S1, 0, 0x8000_0000);
        let leaf =
            TlbEntry::new(EntryKind::Leaf, map, 3, Granule::K4).tagged(Regime::El10, 0, Some(1));
        assert_eq!(scope.reach(&leaf), Err(crate::tlb::entry::Miss::Stage));
        // A reserved range TG: "not valid", nothing invalidated.
        let e = decode_err("RVAE1IS", 1 << 48);
        assert_eq!(e.field, "TG");
        assert!(e.effect().contains("invalidates nothing"));
    }

    #[test]
    fn misaligned_range_base_with_ttl_is_unpredictable() {
        // (TG, TTL, first misaligned BaseADDR, first aligned BaseADDR):
        // 4K L1 needs BaseADDR[29:12] = 0, i.e. a multiple of 1 << 18;
        // 4K L2: BaseADDR[20:12], 1 << 9; 16K L2: [24:14], 1 << 11;
        // 64K L1: [41:16], 1 << 26; 64K L2: [28:16], 1 << 13.
        for (tg, ttl, bad, good) in [
            (1u64, 1u64, 1u64 << 17, 1u64 << 18),
            (1, 2, 1 << 8, 1 << 9),
            (2, 2, 1 << 10, 1 << 11),
            (3, 1, 1 << 25, 1 << 26),
            (3, 2, 1 << 12, 1 << 13),
        ] {
            let xt = tg << 46 | ttl << 37;
            let e = decode_err("RVAE1", xt | bad);
            assert_eq!((e.field, e.value.value), ("BaseADDR", bad));
            assert!(e.reason.contains("UNPREDICTABLE"), "{e}");
            assert!(TlbiOperand::decode(t("RVAE1"), xt | good).is_ok());
            // Level 3 needs no alignment beyond the page.
            assert!(TlbiOperand::decode(t("RVAE1"), tg << 46 | 3 << 37 | bad).is_ok());
        }
    }

    #[test]
    fn res0_fields() {
        // ASIDE1: bits [47:0].
        let e = decode_err("ASIDE1", 0x0005_0000_0000_0010);
        assert_eq!((e.field, e.value.value), ("RES0 bits [47:0]", 0x10));
        // VAA forms: no ASID, bits [63:48] RES0.
        for op in ["VAAE1", "VAALE1IS", "RVAAE1", "RVAALE1IS"] {
            let e = decode_err(op, 0x0007_4000_0000_0000);
            assert_eq!((e.field, e.value.value), ("RES0 bits [63:48]", 7), "{op}");
        }
        // IPA forms: bits [62:48], [43:40], and IPA[51:48] in [39:36].
        for op in ["IPAS2E1", "RIPAS2LE1IS"] {
            let e = decode_err(op, 1 << 50 | 1 << 46);
            assert_eq!((e.field, e.value.value), ("RES0 bits [62:48]", 4), "{op}");
        }
        let e = decode_err("IPAS2E1", 0x0000_0200_0000_0000);
        assert_eq!((e.field, e.value.value), ("RES0 bits [43:40]", 2));
        let e = decode_err("IPAS2LE1", 0x0000_0010_0000_0000);
        assert_eq!((e.field, e.value.value), ("IPA[51:48] (bits [39:36])", 1));
        assert!(
            e.to_string()
                .contains("field IPA[51:48] (bits [39:36]) = 0b0001 is RES0"),
            "{e}"
        );
    }

    // ---- Mnemonics ----

    #[test]
    fn parse_and_print_mnemonics() {
        assert_eq!(t("vae1is"), Tlbi::new(TlbiOp::VAE1, true));
        assert_eq!(t("RVALE1"), Tlbi::new(TlbiOp::RVALE1, false));
        assert_eq!(t("ipas2le1is"), Tlbi::new(TlbiOp::IPAS2LE1, true));
        assert_eq!(t(" VMALLS12E1IS "), Tlbi::new(TlbiOp::VMALLS12E1, true));
        for op in TlbiOp::ALL {
            for tl in [
                Tlbi::new(op, false),
                Tlbi::new(op, true),
                Tlbi::outer_shareable(op),
            ] {
                assert_eq!(tl.to_string().parse::<Tlbi>(), Ok(tl));
                assert_eq!(tl.to_string().to_lowercase().parse::<Tlbi>(), Ok(tl));
            }
            assert_eq!(op.mnemonic().parse::<TlbiOp>(), Ok(op));
        }
        for bad in [
            "vae3is",
            "vaae2",
            "vae1osis",
            "vae1isos",
            "vae1isnxs",
            "",
            "is",
            "os",
            "tlbi vae1",
        ] {
            let e = bad.parse::<Tlbi>().unwrap_err();
            assert_eq!(e, ParseTlbiError(bad.to_string()));
            assert!(e.to_string().contains(&format!("`{bad}`")));
        }
        assert!("VAE1IS".parse::<TlbiOp>().is_err());
        // Serde goes through these two (`#[serde(into, try_from)]`).
        assert_eq!(String::from(t("rvae1is")), "RVAE1IS");
        assert_eq!(Tlbi::try_from("aside1".to_string()), Ok(t("ASIDE1")));
    }

    #[test]
    fn outer_shareable_forms_decode_and_remove_as_their_is_forms() {
        let os = t("vale1os");
        assert_eq!(os, Tlbi::outer_shareable(TlbiOp::VALE1));
        assert!(os.broadcast && os.outer);
        assert_eq!(os.to_string(), "VALE1OS");
        assert_ne!(os, t("VALE1IS"));
        // VALE1OS, ASID 0x42 in [63:48], TTL 4K level 3 = 0b0111 in
        // [47:44], VA 0x4000_0000 >> 12 = 0x4_0000 in [43:0].
        let xt = 0x0042_7000_0004_0000;
        let d = os.decode(xt).unwrap();
        assert_eq!(
            d,
            TlbiOperand::Va {
                asid: 0x42,
                ttl: TtlHint::new(Granule::K4, 3),
                page: 0x4_0000,
            }
        );
        assert_eq!(os.scope(&d, 5), t("VALE1IS").scope(&d, 5));
        // RIPAS2E1OS, 4K (TG 0b01 in [47:46]), SCALE 0, NUM 1 in [43:39]:
        // (NUM + 1) * 2^(5 * SCALE + 1) = 4 pages = 16 KiB from
        // BaseADDR = IPA 0x8000_0000 >> 12 = 0x8_0000.
        let os = t("RIPAS2E1OS");
        let xt = 0x0000_4080_0008_0000;
        let d = os.decode(xt).unwrap();
        let s = os.scope(&d, 3);
        assert_eq!(s, t("RIPAS2E1IS").scope(&d, 3));
        assert_eq!(
            s.range.map(|r| r.addrs()),
            Some(span(0x8000_0000, 0x8000_3fff))
        );
        assert!(matches!(s.range, Some(InputRange::Ipa(_))));
        // The operand-less ones too.
        assert_eq!(t("VMALLS12E1OS"), Tlbi::outer_shareable(TlbiOp::VMALLS12E1));
        assert_eq!(t("alle1os").to_string(), "ALLE1OS");
    }

    #[test]
    fn el2_operations_reach_their_regime_with_or_without_e2h() {
        // VAE2IS, ASID 7 in [63:48], no TTL, VA 0xffff_0000_0020_0000:
        // VA[55:48] = 0xff and VA[47:12] = 0x0_0000_0200, so VA[55:12] =
        // 0xff << 36 | 0x200 = 0xff0_0000_0200 in [43:0].
        let ins = t("vae2is");
        assert_eq!(ins, Tlbi::new(TlbiOp::VAE2, true));
        let xt = 0x0007_0ff0_0000_0200;
        let d = ins.decode(xt).unwrap();
        assert_eq!(
            d,
            TlbiOperand::Va {
                asid: 7,
                ttl: None,
                page: 0xff0_0000_0200,
            }
        );
        // EL2 without E2H: no ASID, no VMID.
        let s = ins.scope_e2h(&d, 3, false);
        assert_eq!(s.regime, Regime::El2);
        assert_eq!(s.vmid, None);
        assert_eq!(s.asid, AsidSel::Any);
        assert_eq!(ins.scope(&d, 3), s);
        // EL2&0: the ASID's entries and the global ones.
        let s = ins.scope_e2h(&d, 3, true);
        assert_eq!(
            s.asid,
            AsidSel::Only {
                asid: 7,
                with_global: true,
            }
        );
        assert_eq!(
            s.range.map(|r| r.addrs()),
            Some(span(0xffff_0000_0020_0000, 0xffff_0000_0020_0fff))
        );
        // VALE2: last level only; ALLE2: the whole regime, any ASID.
        assert!(t("VALE2OS").scope_e2h(&d, 0, true).leaf_only);
        let all = t("ALLE2IS").scope_e2h(&TlbiOperand::None, 3, true);
        assert_eq!(
            (all.regime, all.vmid, all.asid),
            (Regime::El2, None, AsidSel::Any)
        );
        // The EL1 forms keep their regime whatever E2H is.
        assert_eq!(t("VAE1IS").scope_e2h(&d, 3, true).regime, Regime::El10);
    }

    #[test]
    fn op_predicates() {
        use TlbiOp::*;
        let leaf = [VALE1, VAALE1, IPAS2LE1, RVALE1, RVAALE1, RIPAS2LE1, VALE2];
        let range = [RVAE1, RVALE1, RVAAE1, RVAALE1, RIPAS2E1, RIPAS2LE1];
        let asid = [VAE1, VALE1, ASIDE1, RVAE1, RVALE1, VAE2, VALE2];
        let s2 = [IPAS2E1, IPAS2LE1, RIPAS2E1, RIPAS2LE1];
        let none = [VMALLE1, VMALLS12E1, ALLE1, ALLE2];
        let el2 = [VAE2, VALE2, ALLE2];
        for op in TlbiOp::ALL {
            assert_eq!(op.is_leaf_only(), leaf.contains(&op), "{op}");
            assert_eq!(op.is_range(), range.contains(&op), "{op}");
            assert_eq!(op.uses_asid(), asid.contains(&op), "{op}");
            assert_eq!(op.is_stage2(), s2.contains(&op), "{op}");
            assert_eq!(op.takes_operand(), !none.contains(&op), "{op}");
            let want = if el2.contains(&op) {
                Regime::El2
            } else {
                Regime::El10
            };
            assert_eq!(op.regime(), want, "{op}");
        }
    }

    // ---- Property tests ----

    /// Every valid non-range TTL (3 for 4K, 2 for 16K, 3 for 64K), and "no
    /// hint": 9 in all.
    fn all_ttls() -> Vec<Option<TtlHint>> {
        let mut v = vec![None];
        for g in Granule::ALL {
            v.extend((0..4).filter_map(|l| TtlHint::new(g, l)).map(Some));
        }
        v
    }

    #[test]
    fn nine_ttl_choices() {
        assert_eq!(all_ttls().len(), 9);
    }

    prop_compose! {
        fn arb_range()(g in 0usize..3, scale in 0u8..4, num in 0u8..32, ttl in 0u8..4,
                       base in 0u64..(1 << 37)) -> TlbiRange {
            let granule = Granule::ALL[g];
            let ttl = match (granule, ttl) {
                (_, 0) | (Granule::K16, 1) => None,
                (_, l) => Some(l),
            };
            // Clear the bits a level-1/2 hint requires to be zero.
            let base = match ttl {
                Some(l @ 1..=2) => base & !mask(granule.level_shift(l) - granule.shift()),
                _ => base,
            };
            TlbiRange { granule, scale, num, ttl, base }
        }
    }

    prop_compose! {
        /// A valid (instruction, operand) pair for any of the operations.
        fn arb_valid()(op in 0usize..TlbiOp::ALL.len(), broadcast: bool, asid: u16, ns: bool,
                       ttl in 0usize..9, page: u64, range in arb_range())
                       -> (Tlbi, TlbiOperand) {
            let op = TlbiOp::ALL[op];
            let ttl = all_ttls()[ttl];
            let asid = if op.uses_asid() { asid } else { 0 };
            let operand = match op.operand_kind() {
                OperandKind::None => TlbiOperand::None,
                OperandKind::Asid => TlbiOperand::Asid { asid },
                OperandKind::Va => TlbiOperand::Va { asid, ttl, page: page & mask(44) },
                OperandKind::Ipa => TlbiOperand::Ipa { ns, ttl, page: page & mask(36) },
                OperandKind::VaRange => TlbiOperand::VaRange { asid, range },
                OperandKind::IpaRange => TlbiOperand::IpaRange { ns, range },
            };
            (Tlbi::new(op, broadcast), operand)
        }
    }

    proptest! {
        #[test]
        fn decode_inverts_encode((tlbi, operand) in arb_valid()) {
            prop_assert_eq!(TlbiOperand::decode(tlbi, operand.encode()), Ok(operand));
            // Every scope is computable for a decoded operand.
            let _ = tlbi.scope(&operand, 1);
        }

        #[test]
        fn decode_never_panics_and_accepted_values_round_trip(op in 0usize..16, xt: u64) {
            let tlbi = Tlbi::new(TlbiOp::ALL[op], true);
            match TlbiOperand::decode(tlbi, xt) {
                Ok(operand) => {
                    if tlbi.takes_operand() {
                        // A TTL that means "no hint" encodes back as 0b00;
                        // every other bit round-trips.
                        let ttl = if tlbi.is_range() { 3 << 37 } else { 0xf << 44 };
                        prop_assert_eq!(operand.encode() & !ttl, xt & !ttl);
                        prop_assert_eq!(TlbiOperand::decode(tlbi, operand.encode()), Ok(operand));
                    }
                    let _ = tlbi.scope(&operand, 7);
                }
                Err(e) => prop_assert!(e.to_string().contains("field ")),
            }
        }

        #[test]
        fn range_covers_exactly_its_pages(range in arb_range()) {
            let r = range.range();
            let size = range.granule.size();
            let len = range.pages() * size;
            prop_assert_eq!(r.first, range.start());
            if range.start() < 1 << 52 {
                // Lower half: never saturates for a 37-bit BaseADDR.
                prop_assert_eq!(r.last - r.first + 1, len);
            }
        }
    }

    // ---- Scopes against entries ----

    /// 4K stage-1 entries of VMID 1 around VA 4 MiB, plus other stages,
    /// granules and VMIDs, by name.
    fn fixture() -> Vec<(&'static str, TlbEntry)> {
        let e = |kind, stage, level: u8, granule: Granule, asid, vmid, input: u64| {
            let input = input & !mask(granule.level_shift(level));
            let map = Mapping::of_stage(stage, input, 0x8000_0000);
            TlbEntry::new(kind, map, level, granule).tagged(Regime::El10, vmid, asid)
        };
        use EntryKind::{Leaf, Walk};
        use Granule::{K16, K4};
        use Stage::{Combined, S1, S2};
        const VA: u64 = 0x40_0000;
        vec![
            ("s1 L3 asid5", e(Leaf, S1, 3, K4, Some(5), 1, VA)),
            ("s1 L3 asid6", e(Leaf, S1, 3, K4, Some(6), 1, VA)),
            ("s1 L3 global", e(Leaf, S1, 3, K4, None, 1, VA)),
            (
                "s1 L3 asid5 next page",
                e(Leaf, S1, 3, K4, Some(5), 1, VA + 0x1000),
            ),
            (
                "s1 L3 asid5 page after",
                e(Leaf, S1, 3, K4, Some(5), 1, VA + 0x2000),
            ),
            (
                "s1 L2 block asid5 elsewhere",
                e(Leaf, S1, 2, K4, Some(5), 1, 0x60_0000),
            ),
            ("s1 walk L2 asid5", e(Walk, S1, 2, K4, Some(5), 1, VA)),
            ("s1 walk L0 asid5", e(Walk, S1, 0, K4, Some(5), 1, VA)),
            ("s1 L3 16K asid5", e(Leaf, S1, 3, K16, Some(5), 1, VA)),
            (
                "combined L3 asid5",
                e(Leaf, Combined, 3, K4, Some(5), 1, VA),
            ),
            ("s2 L3", e(Leaf, S2, 3, K4, None, 1, VA)),
            ("s2 walk L1", e(Walk, S2, 1, K4, None, 1, VA)),
            ("s1 L3 asid5 vmid2", e(Leaf, S1, 3, K4, Some(5), 2, VA)),
            ("s2 L3 vmid2", e(Leaf, S2, 3, K4, None, 2, VA)),
        ]
    }

    /// Asserts that `tlbi` with `operand`, issued in VMID 1, removes exactly
    /// the fixture entries named in `removed`.
    fn assert_scope(tlbi: &str, operand: TlbiOperand, removed: &[&str]) {
        let scope = t(tlbi).scope(&operand, 1);
        let fixture = fixture();
        for name in removed {
            assert!(
                fixture.iter().any(|(n, _)| n == name),
                "no fixture entry {name}"
            );
        }
        for (name, entry) in fixture {
            let expect = removed.contains(&name);
            assert_eq!(
                scope.covers(&entry),
                expect,
                "TLBI {tlbi} {operand:?}: `{name}` should {}",
                if expect { "be removed" } else { "stay" }
            );
        }
    }

    const ALL_VMID1: [&str; 12] = [
        "s1 L3 asid5",
        "s1 L3 asid6",
        "s1 L3 global",
        "s1 L3 asid5 next page",
        "s1 L3 asid5 page after",
        "s1 L2 block asid5 elsewhere",
        "s1 walk L2 asid5",
        "s1 walk L0 asid5",
        "s1 L3 16K asid5",
        "combined L3 asid5",
        "s2 L3",
        "s2 walk L1",
    ];

    #[test]
    fn scope_vae1_reaches_every_level_and_global_leaves() {
        // C5.5.59: non-global entries of the ASID at any level, global leaves.
        assert_scope(
            "VAE1IS",
            TlbiOperand::va(5, Va(0x40_0000), None),
            &[
                "s1 L3 asid5",
                "s1 L3 global",
                "s1 walk L2 asid5",
                "s1 walk L0 asid5",
                "s1 L3 16K asid5",
                "combined L3 asid5",
            ],
        );
    }

    #[test]
    fn scope_vale1_keeps_walk_entries() {
        // C5.5.68: final level only.
        assert_scope(
            "VALE1",
            TlbiOperand::va(5, Va(0x40_0000), None),
            &[
                "s1 L3 asid5",
                "s1 L3 global",
                "s1 L3 16K asid5",
                "combined L3 asid5",
            ],
        );
    }

    #[test]
    fn scope_ttl_limits_levels_and_granule() {
        // TTL 4K L2: leaves at L2 and walk entries above L2 only; the L3
        // leaves (wrong level), the L2 walk entry and the 16K leaf stay.
        assert_scope(
            "VAE1IS",
            TlbiOperand::va(5, Va(0x40_0000), ttl(Granule::K4, 2)),
            &["s1 walk L0 asid5"],
        );
        // TTL 4K L3: the 4K L3 leaves and every walk entry above.
        assert_scope(
            "VAE1IS",
            TlbiOperand::va(5, Va(0x40_0000), ttl(Granule::K4, 3)),
            &[
                "s1 L3 asid5",
                "s1 L3 global",
                "s1 walk L2 asid5",
                "s1 walk L0 asid5",
                "combined L3 asid5",
            ],
        );
        // TTL 16K L3: only the 16K leaf.
        assert_scope(
            "VALE1IS",
            TlbiOperand::va(5, Va(0x40_0000), ttl(Granule::K16, 3)),
            &["s1 L3 16K asid5"],
        );
    }

    #[test]
    fn scope_vaae1_and_vaale1_any_asid() {
        assert_scope(
            "VAAE1IS",
            TlbiOperand::va(0, Va(0x40_0000), None),
            &[
                "s1 L3 asid5",
                "s1 L3 asid6",
                "s1 L3 global",
                "s1 walk L2 asid5",
                "s1 walk L0 asid5",
                "s1 L3 16K asid5",
                "combined L3 asid5",
            ],
        );
        assert_scope(
            "VAALE1",
            TlbiOperand::va(0, Va(0x40_0000), None),
            &[
                "s1 L3 asid5",
                "s1 L3 asid6",
                "s1 L3 global",
                "s1 L3 16K asid5",
                "combined L3 asid5",
            ],
        );
    }

    #[test]
    fn scope_aside1_spares_global_entries() {
        // C5.5.10: entries of the ASID above the final level, and non-global
        // final-level entries: the global leaf survives (VAE1 removes it).
        assert_scope(
            "ASIDE1IS",
            TlbiOperand::Asid { asid: 5 },
            &[
                "s1 L3 asid5",
                "s1 L3 asid5 next page",
                "s1 L3 asid5 page after",
                "s1 L2 block asid5 elsewhere",
                "s1 walk L2 asid5",
                "s1 walk L0 asid5",
                "s1 L3 16K asid5",
                "combined L3 asid5",
            ],
        );
    }

    #[test]
    fn scope_vmalle1_is_stage1_of_the_vmid() {
        let stage1: Vec<&str> = ALL_VMID1
            .iter()
            .copied()
            .filter(|n| !n.starts_with("s2"))
            .collect();
        assert_scope("VMALLE1IS", TlbiOperand::None, &stage1);
    }

    #[test]
    fn scope_ipas2e1_leaves_combined_entries() {
        // C5.5.13 / D8.17.6.1: stage-2-only entries; combined ones need a
        // following VMALLE1.
        assert_scope(
            "IPAS2E1IS",
            TlbiOperand::ipa(Ipa(0x40_0000), None),
            &["s2 L3", "s2 walk L1"],
        );
        assert_scope(
            "IPAS2LE1IS",
            TlbiOperand::ipa(Ipa(0x40_0000), None),
            &["s2 L3"],
        );
        // A TTL naming level 2 leaves the level-3 stage-2 leaf.
        assert_scope(
            "IPAS2E1",
            TlbiOperand::ipa(Ipa(0x40_0000), ttl(Granule::K4, 2)),
            &["s2 walk L1"],
        );
    }

    #[test]
    fn scope_vmalls12e1_is_the_whole_vmid() {
        assert_scope("VMALLS12E1IS", TlbiOperand::None, &ALL_VMID1);
    }

    #[test]
    fn scope_alle1_is_everything() {
        let mut all = ALL_VMID1.to_vec();
        all.extend(["s1 L3 asid5 vmid2", "s2 L3 vmid2"]);
        assert_scope("ALLE1IS", TlbiOperand::None, &all);
    }

    #[test]
    fn scope_ranges() {
        // Two 4K pages from 4 MiB: the page after stays; walk entries over the
        // range go; the 16K leaf stays (TG names 4K).
        assert_scope(
            "RVAE1IS",
            va_range(5, Granule::K4, 0x40_0000, 0, 0, None),
            &[
                "s1 L3 asid5",
                "s1 L3 global",
                "s1 L3 asid5 next page",
                "s1 walk L2 asid5",
                "s1 walk L0 asid5",
                "combined L3 asid5",
            ],
        );
        assert_scope(
            "RVALE1IS",
            va_range(5, Granule::K4, 0x40_0000, 0, 0, Some(3)),
            &[
                "s1 L3 asid5",
                "s1 L3 global",
                "s1 L3 asid5 next page",
                "combined L3 asid5",
            ],
        );
        assert_scope(
            "RVAAE1",
            va_range(0, Granule::K16, 0x40_0000, 0, 0, None),
            // The 4K walk entries over the range stay: TG names 16K.
            &["s1 L3 16K asid5"],
        );
        assert_scope(
            "RIPAS2E1IS",
            TlbiOperand::IpaRange {
                ns: false,
                range: TlbiRange::new(Granule::K4, 0, 3, 31, None),
            },
            &["s2 L3", "s2 walk L1"],
        );
        assert_scope(
            "RIPAS2LE1IS",
            TlbiOperand::IpaRange {
                ns: false,
                range: TlbiRange::new(Granule::K4, 0x40_0000, 0, 0, None),
            },
            &["s2 L3"],
        );
    }

    /// For many (SCALE, NUM): the first and last page of the range are
    /// removed; the page before and the page after stay.
    #[test]
    fn range_covers_exactly_num_plus_one_times_two_to_the_5s_plus_1_pages() {
        for g in Granule::ALL {
            for scale in 0..4u8 {
                for num in [0u8, 1, 7, 30, 31] {
                    let start = 0x80_0000_0000u64; // 512 GiB: aligned for every granule
                    let op = va_range(9, g, start, scale, num, None);
                    let scope = t("RVALE1IS").scope(&op, 1);
                    let pages = (u64::from(num) + 1) << (5 * u32::from(scale) + 1);
                    let leaf = |input: u64| {
                        let map = Mapping::S1 {
                            input: Va(input),
                            output: Ipa(0),
                        };
                        TlbEntry::leaf(map, 3, g).tagged(Regime::El10, 1, Some(9))
                    };
                    let last = start + (pages - 1) * g.size();
                    assert!(
                        scope.covers(&leaf(start)),
                        "{g} S{scale} N{num}: first page"
                    );
                    assert!(scope.covers(&leaf(last)), "{g} S{scale} N{num}: last page");
                    assert!(
                        !scope.covers(&leaf(last + g.size())),
                        "{g} S{scale} N{num}: page after"
                    );
                    assert!(
                        !scope.covers(&leaf(start - g.size())),
                        "{g} S{scale} N{num}: page before"
                    );
                }
            }
        }
    }

    #[test]
    fn scope_fields() {
        let s = t("RVALE1IS").scope(&va_range(5, Granule::K64, 0x4000_0000, 0, 0, Some(2)), 3);
        assert_eq!(s.granule, Some(Granule::K64));
        assert_eq!(s.ttl_level, Some(2));
        assert_eq!(s.vmid, Some(3));
        assert!(s.leaf_only);
        let s = t("VAE1").scope(&TlbiOperand::va(5, Va(0x4000_0000), None), 3);
        assert_eq!((s.granule, s.ttl_level), (None, None));
        assert_eq!(
            s.range,
            Some(InputRange::Va(span(0x4000_0000, 0x4000_0fff)))
        );
        assert_eq!(t("ALLE1").scope(&TlbiOperand::None, 3).vmid, None);
    }

    /// By-VA operations name VA ranges, IPAS2 operations IPA ranges; a
    /// range reaches only entries of its own space, whatever stages the
    /// scope selects.
    #[test]
    fn scopes_name_the_address_space_of_their_range() {
        let page = 0x40_0000u64;
        let ipas2 = t("IPAS2E1IS").scope(&TlbiOperand::ipa(Ipa(page), None), 1);
        assert_eq!(ipas2.range, Some(InputRange::Ipa(span(page, page + 0xfff))));
        let ripas2 = TlbiOperand::IpaRange {
            ns: false,
            range: TlbiRange::new(Granule::K4, page, 0, 1, None),
        };
        assert!(matches!(
            t("RIPAS2E1IS").scope(&ripas2, 1).range,
            Some(InputRange::Ipa(_))
        ));
        let vae1 = t("VAE1IS").scope(&TlbiOperand::va(5, Va(page), None), 1);
        assert_eq!(vae1.range, Some(InputRange::Va(span(page, page + 0xfff))));
        assert!(matches!(
            t("RVAE1IS")
                .scope(&va_range(5, Granule::K4, page, 0, 1, None), 1)
                .range,
            Some(InputRange::Va(_))
        ));
        // The same number as a VA and as an IPA.
        let leaf = |map| TlbEntry::leaf(map, 3, Granule::K4).tagged(Regime::El10, 1, None);
        let s2 = leaf(Mapping::S2 {
            input: Ipa(page),
            output: Pa(0x8000_0000),
        });
        let s1 = leaf(Mapping::S1 {
            input: Va(page),
            output: Ipa(0x8000_0000),
        });
        let combined = leaf(Mapping::Combined {
            input: Va(page),
            output: Pa(0x8000_0000),
        });
        let every_stage = |s: InvalScope| InvalScope {
            stages: StageSel::ALL,
            asid: AsidSel::Any,
            ..s
        };
        let (ipas2, vae1) = (every_stage(ipas2), every_stage(vae1));
        assert!(ipas2.covers(&s2) && !ipas2.covers(&s1) && !ipas2.covers(&combined));
        assert!(!vae1.covers(&s2) && vae1.covers(&s1) && vae1.covers(&combined));
    }

    #[test]
    #[should_panic(expected = "wrong shape")]
    fn scope_rejects_a_mismatched_operand() {
        let _ = t("VAE1").scope(&TlbiOperand::Asid { asid: 1 }, 0);
    }
}
