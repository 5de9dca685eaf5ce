//! KVM's stage-2 TLB maintenance: the hypervisor's flush helpers
//! (`arch/arm64/kvm/hyp/vhe/tlb.c`, and `hyp/nvhe/tlb.c`, whose helpers
//! differ only in their opening barrier, see [`FlushCode::nvhe`]) and the
//! kernel's `kvm_tlb_flush_vmid_range` (`arch/arm64/kvm/hyp/pgtable.c`,
//! 117940aa6e5f), as functions that return the exact instruction sequence
//! for their arguments and the CPU's features.
//!
//! Architecture: a by-IPA operand carries IPA\[47:12\] in bits \[35:0\] and
//! TTL in \[47:44\] (Arm ARM D8.17.5.1); IPAS2E1IS removes stage-2 entries
//! only, so KVM follows it, after a DSB, with VMALLE1IS for the combined
//! stage-1+2 entries built from the old stage-2 entry (D8.17.6.1); a range
//! operand covers `(NUM+1) * 2^(5*SCALE+1)` pages (D8.17.5.2, RQKRKL).
//!
//! Model choices: 4K pages; the VMID switch (`__tlb_switch_to_guest`) is
//! implicit in the scope (every TLBI here reaches the VM's VMID); the ISB
//! is kept in the stream but the checker models no context
//! synchronization (docs/design.md §2.3).

use crate::linux::arm64::{range_steps, RangeLoop, RangeStep, MAX_TLBI_RANGE_PAGES, PAGE_SHIFT};
use crate::linux::arm64::{CpuFeatures, PAGE_SIZE};
use tlbcheck_hw::addr::{Granule, Ipa};
use tlbcheck_hw::cpu::tlbi::{Tlbi, TlbiOp, TlbiOperand, TlbiRange, TtlHint};
use tlbcheck_hw::machine::Dsb;

/// The level a caller passes: `ctx->level`, or `TLBI_TTL_UNKNOWN`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// A lookup level.
    At(u8),
    /// `TLBI_TTL_UNKNOWN` (`INT_MAX` since c910f2b65518).
    Unknown,
}

/// How `__tlbi_level` reads its level argument.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum LevelAbi {
    /// Before c910f2b65518 ("arm64/mm: Update tlb invalidation routines for
    /// FEAT_LPA2", v6.9): a level of 0 means "no hint".
    ZeroIsUnknown,
    /// From c910f2b65518 on: levels 0..3 are hints, `TLBI_TTL_UNKNOWN`
    /// none. A 4K level-0 hint is reserved without FEAT_LPA2, and the
    /// hardware then treats the TLBI as carrying no hint (Arm ARM D8.17.5.3,
    /// Table D8-123): the operand keeps the kernel's bits, the scope has
    /// no hint.
    Lpa2,
}

/// One version of the helpers.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlushCode {
    /// How a level argument is encoded.
    pub abi: LevelAbi,
    /// `__flush_tlb_range_op`'s loop, shared with the CPU flushes.
    pub range_loop: RangeLoop,
    /// The level `__kvm_tlb_flush_vmid_range` passes to
    /// `__flush_s2_tlb_range_op`: 0 until 0f0ff097bf77, then
    /// `TLBI_TTL_UNKNOWN`.
    pub range_level: Level,
    /// The nVHE helpers (`hyp/nvhe/tlb.c`): each opens with the DSB of
    /// `__tlb_switch_to_guest(mmu, &cxt, nsh)`, DSB ISH (DSB NSH for the
    /// local one), where the VHE helpers issue DSB ISHST (NSHST).
    pub nvhe: bool,
}

/// The barrier a helper opens with: the page-table stores made visible
/// in the invalidation's domain before its TLBIs.
fn opening(code: FlushCode, local: bool) -> S2Op {
    S2Op::Dsb(match (code.nvhe, local) {
        (false, false) => Dsb::Ishst,
        (false, true) => Dsb::Nshst,
        (true, false) => Dsb::Ish,
        (true, true) => Dsb::Nsh,
    })
}

/// One step of a stage-2 flush.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum S2Op {
    /// A TLBI.
    Tlbi {
        /// The instruction.
        tlbi: Tlbi,
        /// The 64-bit operand the kernel writes (`None`: no operand).
        raw: Option<u64>,
        /// The operand as the hardware reads it (a reserved TTL read as
        /// no hint), from which the scope is computed.
        operand: TlbiOperand,
    },
    /// A DSB.
    Dsb(Dsb),
    /// An ISB.
    Isb,
}

impl S2Op {
    /// The instruction as a trace shows it: `IPAS2E1IS 0x0000000000000040`.
    pub fn text(&self) -> String {
        match self {
            S2Op::Tlbi { tlbi, raw, .. } => match raw {
                Some(x) => format!("{tlbi} {x:#018x}"),
                None => tlbi.to_string(),
            },
            S2Op::Dsb(k) => format!("DSB {}", format!("{k:?}").to_uppercase()),
            S2Op::Isb => "ISB".to_string(),
        }
    }
}

fn no_operand(op: TlbiOp, broadcast: bool) -> S2Op {
    S2Op::Tlbi {
        tlbi: Tlbi::new(op, broadcast),
        raw: None,
        operand: TlbiOperand::None,
    }
}

/// `__tlbi_level(op, ipa >> 12, level)` for IPAS2E1{IS}: TTL in \[47:44\]
/// when the CPU has FEAT_TTL and the level is a hint under `abi`.
fn ipa_level(abi: LevelAbi, cpu: CpuFeatures, broadcast: bool, ipa: u64, level: Level) -> S2Op {
    let hint = match (abi, level) {
        (_, Level::Unknown) => None,
        (LevelAbi::ZeroIsUnknown, Level::At(0)) => None,
        (_, Level::At(l)) if l <= 3 => Some(l),
        _ => None,
    }
    .filter(|_| cpu.ttl);
    // TTL[3:2] is TG (4K = 0b01), TTL[1:0] the level.
    let ttl_bits = hint.map_or(0, |l| (1u64 << 2) | u64::from(l));
    let raw = (ipa >> PAGE_SHIFT) | (ttl_bits << 44);
    let operand = TlbiOperand::ipa(Ipa(ipa), hint.and_then(|l| TtlHint::new(Granule::K4, l)));
    S2Op::Tlbi {
        tlbi: Tlbi::new(TlbiOp::IPAS2E1, broadcast),
        raw: Some(raw),
        operand,
    }
}

/// `__kvm_tlb_flush_vmid_ipa(mmu, ipa, level)`: DSB ISHST, IPAS2E1IS with
/// the level hint, DSB ISH, VMALLE1IS, DSB ISH, ISB.
pub fn flush_vmid_ipa(code: FlushCode, cpu: CpuFeatures, ipa: u64, level: Level) -> Vec<S2Op> {
    vec![
        opening(code, false),
        ipa_level(code.abi, cpu, true, ipa, level),
        S2Op::Dsb(Dsb::Ish),
        no_operand(TlbiOp::VMALLE1, true),
        S2Op::Dsb(Dsb::Ish),
        S2Op::Isb,
    ]
}

/// `__kvm_tlb_flush_vmid_ipa_nsh(mmu, ipa, level)` (Marc Zyngier, "KVM:
/// arm64: Use local TLBI on permission relaxation", v6.4): the same on
/// the local CPU only, DSB NSHST, IPAS2E1, DSB NSH, VMALLE1, DSB NSH, ISB.
pub fn flush_vmid_ipa_nsh(code: FlushCode, cpu: CpuFeatures, ipa: u64, level: Level) -> Vec<S2Op> {
    vec![
        opening(code, true),
        ipa_level(code.abi, cpu, false, ipa, level),
        S2Op::Dsb(Dsb::Nsh),
        no_operand(TlbiOp::VMALLE1, false),
        S2Op::Dsb(Dsb::Nsh),
        S2Op::Isb,
    ]
}

/// `__kvm_tlb_flush_vmid(mmu)`: DSB ISHST, VMALLS12E1IS, DSB ISH, ISB.
pub fn flush_vmid(code: FlushCode) -> Vec<S2Op> {
    vec![
        opening(code, false),
        no_operand(TlbiOp::VMALLS12E1, true),
        S2Op::Dsb(Dsb::Ish),
        S2Op::Isb,
    ]
}

/// The hypervisor's `__kvm_tlb_flush_vmid_range(mmu, start, pages)`:
/// start rounded down to a page, DSB ISHST, `__flush_s2_tlb_range_op`
/// (RIPAS2E1IS range operations, IPAS2E1IS for a single page, with the
/// version's level), DSB ISH, VMALLE1IS, DSB ISH, ISB.
pub fn flush_vmid_range_hyp(
    code: FlushCode,
    cpu: CpuFeatures,
    start: u64,
    pages: u64,
) -> Vec<S2Op> {
    let start = start & !(PAGE_SIZE - 1);
    let mut out = vec![opening(code, false)];
    // __TLBI_VADDR_RANGE keeps a TTL of 1..3 only: 0 and TLBI_TTL_UNKNOWN
    // give 0 (no hint).
    let range_ttl = match code.range_level {
        Level::At(l) if (1..=3).contains(&l) => Some(l),
        _ => None,
    };
    for step in range_steps(code.range_loop, true, Granule::K4, start, pages, PAGE_SIZE) {
        out.push(match step {
            RangeStep::Single(a) => ipa_level(code.abi, cpu, true, a, code.range_level),
            RangeStep::Range { addr, scale, num } => {
                let operand = TlbiOperand::IpaRange {
                    ns: false,
                    range: TlbiRange::new(Granule::K4, addr, scale, num, range_ttl),
                };
                S2Op::Tlbi {
                    tlbi: Tlbi::new(TlbiOp::RIPAS2E1, true),
                    raw: Some(operand.encode()),
                    operand,
                }
            }
        });
    }
    out.extend([
        S2Op::Dsb(Dsb::Ish),
        no_operand(TlbiOp::VMALLE1, true),
        S2Op::Dsb(Dsb::Ish),
        S2Op::Isb,
    ]);
    out
}

/// `kvm_tlb_flush_vmid_range(mmu, addr, size)` (117940aa6e5f, v6.6):
/// without FEAT_TLBIRANGE the whole VMID ([`flush_vmid`]); otherwise the
/// hypervisor's range helper over chunks of at most
/// `MAX_TLBI_RANGE_PAGES` pages.
///
/// # Panics
///
/// With the v6.6 loop ([`RangeLoop::ScaleUp`]) and a chunk of exactly
/// `MAX_TLBI_RANGE_PAGES` pages (8 GiB or more), which its
/// `__TLBI_RANGE_NUM` cannot encode (e3ba51ab24fd); scenarios keep an
/// unmap inside 1 GiB.
pub fn flush_vmid_range(code: FlushCode, cpu: CpuFeatures, addr: u64, size: u64) -> Vec<S2Op> {
    if !cpu.tlbirange {
        return flush_vmid(code);
    }
    let mut out = Vec::new();
    let mut addr = addr;
    let mut pages = size >> PAGE_SHIFT;
    while pages > 0 {
        let chunk = pages.min(MAX_TLBI_RANGE_PAGES);
        out.extend(flush_vmid_range_hyp(code, cpu, addr, chunk));
        addr += chunk << PAGE_SHIFT;
        pages -= chunk;
    }
    out
}
