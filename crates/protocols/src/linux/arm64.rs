//! arm64 TLB flushing as Linux does it (`arch/arm64/include/asm/tlbflush.h`
//! and `arch/arm64/include/asm/tlb.h`), as functions that return the exact
//! instruction sequence for their arguments and the CPU's features.
//!
//! Each function returns [`ArchOp`]s: TLBI instructions with their 64-bit
//! operands, DSBs, and the point at which a version that has it calls
//! `mmu_notifier_arch_invalidate_secondary_tlbs` ([`ArchOp::Secondary`]);
//! the caller expands that point into the secondary TLB's own commands.
//!
//! Model choices: the page size is the kernel's build-time granule
//! (`CONFIG_ARM64_{4K,16K,64K}_PAGES`, `PAGE_SHIFT` 12, 14 or 16), carried
//! by [`FlushCode::granule`]: 4K in the version constants, another page
//! size through [`FlushCode::with_granule`]; no
//! KPTI, so the `__tlbi_user` duplicates for the user ASID are not issued;
//! no LPA2.
//!
//! Architecture: the by-VA operand is VA\[55:12\] in bits \[43:0\] whatever
//! the granule (`__TLBI_VADDR` shifts by 12), ASID in \[63:48\], TTL in
//! \[47:44\] with the granule's TG in TTL\[3:2\] (Arm ARM D8.17.5.1,
//! D8.17.5.3); a range operand names its granule in TG\[47:46\], its base in
//! units of that granule, and covers `(NUM+1) * 2^(5*SCALE+1)` pages of it
//! (D8.17.5.2, RQKRKL); a TLBI IS completes
//! at the issuer's DSB ISH, and a DSB ISHST orders the table stores before
//! it (D8.2.6.1, RSPVBD; D8.17.8).

use tlbcheck_hw::addr::{Granule, Va};
use tlbcheck_hw::cpu::tlbi::{Tlbi, TlbiOp, TlbiOperand, TlbiRange, TtlHint};
use tlbcheck_hw::machine::Dsb;

/// `PAGE_SHIFT` of a 4K-page kernel, the default granule.
pub const PAGE_SHIFT: u32 = 12;
/// `PAGE_SIZE` of a 4K-page kernel.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// `MAX_TLBI_OPS` of a 4K-page kernel; [`FlushCode::max_tlbi_ops`] gives
/// it for the other granules.
pub const MAX_TLBI_OPS: u64 = 512;
/// `MAX_TLBI_RANGE_PAGES` = `__TLBI_RANGE_PAGES(31, 3)`: 2,097,152 pages.
pub const MAX_TLBI_RANGE_PAGES: u64 = tlbi_range_pages(31, 3);

/// `__TLBI_RANGE_PAGES(num, scale)`: pages one range operation covers.
pub const fn tlbi_range_pages(num: u64, scale: u32) -> u64 {
    (num + 1) << (5 * scale + 1)
}

/// The CPU features the flush code tests.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CpuFeatures {
    /// FEAT_TLBIRANGE (`system_supports_tlb_range()`).
    pub tlbirange: bool,
    /// FEAT_TTL (`ARM64_HAS_ARMv8_4_TTL`): non-range operands carry the
    /// level hint.
    pub ttl: bool,
}

/// How `__flush_tlb_range` walks a range with range operations.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum RangeLoop {
    /// v5.7 to v6.8 (Zhenyu Ye's loop): an odd page first as a single
    /// operation, then SCALE from 0 upwards, with the old
    /// `__TLBI_RANGE_NUM` that masks before subtracting; ranges of
    /// `MAX_TLBI_RANGE_PAGES` pages or more fall back to `flush_tlb_mm`.
    ScaleUp,
    /// v6.9 and later (Ryan Roberts' "Modify range-based tlbi to decrement
    /// scale", Gavin Shan's e3ba51ab24fd and 73301e464a72): SCALE from 3
    /// downwards, a single operation only for the last odd page; only
    /// ranges of more than `MAX_TLBI_RANGE_PAGES` pages fall back.
    ScaleDown,
}

/// Where the secondary-TLB hook sits in the flush functions.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum SecondaryHook {
    /// No hook: the secondaries are told elsewhere (before v6.6).
    None,
    /// As 6bbd42e2df8f added it (v6.6 to v6.13): `flush_tlb_mm` after its
    /// DSB with (0, -1UL), `__flush_tlb_page_nosync` after the TLBI with the
    /// page, `__flush_tlb_range` after its final DSB with `start` as the
    /// loop left it, which is `end`.
    AsMerged,
    /// After f7edb07ad7c6 (v6.14): `__flush_tlb_range_nosync` passes the
    /// stride-rounded `(start, end)` before the caller's DSB.
    Fixed,
}

/// One version of the flush code, built for one page size.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlushCode {
    /// The range loop.
    pub range_loop: RangeLoop,
    /// The secondary-TLB hook.
    pub hook: SecondaryHook,
    /// The kernel's page size (`CONFIG_ARM64_{4K,16K,64K}_PAGES`): it sets
    /// `PAGE_SHIFT`, `MAX_TLBI_OPS` and the TG of `get_trans_granule`.
    pub granule: Granule,
}

impl FlushCode {
    /// v6.5: scale-up loop, no hook (4K pages).
    pub const V6_5: FlushCode = FlushCode {
        range_loop: RangeLoop::ScaleUp,
        hook: SecondaryHook::None,
        granule: Granule::K4,
    };
    /// v6.6: scale-up loop, the hook as 6bbd42e2df8f merged it (4K pages).
    pub const V6_6: FlushCode = FlushCode {
        range_loop: RangeLoop::ScaleUp,
        hook: SecondaryHook::AsMerged,
        granule: Granule::K4,
    };
    /// v6.14 (the reference's reading at f7edb07ad7c6; 4K pages).
    pub const V6_14: FlushCode = FlushCode {
        range_loop: RangeLoop::ScaleDown,
        hook: SecondaryHook::Fixed,
        granule: Granule::K4,
    };

    /// The same code built with `granule` pages.
    pub const fn with_granule(self, granule: Granule) -> FlushCode {
        FlushCode { granule, ..self }
    }

    /// `PAGE_SHIFT`: 12, 14 or 16.
    pub const fn page_shift(self) -> u32 {
        self.granule.shift()
    }

    /// `PAGE_SIZE`.
    pub const fn page_size(self) -> u64 {
        self.granule.size()
    }

    /// `MAX_TLBI_OPS` = `PTRS_PER_PTE` = `1 << (PAGE_SHIFT - 3)` (renamed
    /// `MAX_DVM_OPS` later): the most non-range TLBIs a range flush issues
    /// before it flushes the whole ASID; 512, 2048 or 8192.
    pub const fn max_tlbi_ops(self) -> u64 {
        1 << (self.page_shift() - 3)
    }
}

/// One step of a flush.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ArchOp {
    /// A TLBI with its operand.
    Tlbi {
        /// The instruction.
        tlbi: Tlbi,
        /// Its decoded operand.
        operand: TlbiOperand,
    },
    /// A DSB.
    Dsb(Dsb),
    /// `mmu_notifier_arch_invalidate_secondary_tlbs(mm, start, end)`.
    Secondary {
        /// First byte.
        start: u64,
        /// One past the last byte (`u64::MAX` for "everything").
        end: u64,
    },
}

impl ArchOp {
    /// The 64-bit operand of a TLBI.
    pub fn raw(&self) -> Option<u64> {
        match self {
            ArchOp::Tlbi { operand, .. } => Some(operand.encode()),
            _ => None,
        }
    }

    /// The instruction as a trace shows it: `VALE1IS 0x0001000000000000`.
    pub fn text(&self) -> String {
        match self {
            ArchOp::Tlbi { tlbi, operand } => format!("{tlbi} {:#018x}", operand.encode()),
            ArchOp::Dsb(k) => format!("DSB {}", format!("{k:?}").to_uppercase()),
            ArchOp::Secondary { start, end } => {
                format!("arch_invalidate_secondary_tlbs({start:#x}, {end:#x})")
            }
        }
    }
}

fn tlbi(op: TlbiOp, operand: TlbiOperand) -> ArchOp {
    ArchOp::Tlbi {
        tlbi: Tlbi::new(op, true),
        operand,
    }
}

/// `__TLBI_VADDR(addr, asid)` with `__tlbi_level`'s hint: the TTL field is
/// set only with FEAT_TTL and a known level 1..3 (level 0 meant "unknown"
/// before LPA2, and a 4K level-0 hint is reserved without it), and is
/// `get_trans_granule() << 2 | level`. The kernel never passes level 1 at
/// 16K, whose level-1 leaves need LPA2, so the model's refusal of that
/// reserved hint never drops one the kernel would write.
fn va_operand(
    granule: Granule,
    cpu: CpuFeatures,
    asid: u16,
    va: u64,
    level: Option<u8>,
) -> TlbiOperand {
    let ttl = match level {
        Some(l) if cpu.ttl => TtlHint::new(granule, l),
        _ => None,
    };
    TlbiOperand::va(asid, Va(va), ttl)
}

/// `flush_tlb_mm`: DSB ISHST, TLBI ASIDE1IS, DSB ISH (and, with the
/// hook, the secondaries for (0, -1UL) after the DSB).
pub fn flush_tlb_mm(code: FlushCode, asid: u16) -> Vec<ArchOp> {
    let mut out = vec![
        ArchOp::Dsb(Dsb::Ishst),
        tlbi(TlbiOp::ASIDE1, TlbiOperand::Asid { asid }),
        ArchOp::Dsb(Dsb::Ish),
    ];
    if code.hook != SecondaryHook::None {
        out.push(ArchOp::Secondary {
            start: 0,
            end: u64::MAX,
        });
    }
    out
}

/// `__flush_tlb_page_nosync`: DSB ISHST, TLBI VALE1IS of the page (no
/// level hint; `__TLBI_VADDR` shifts by 12 at every page size), and with the hook the secondaries for the page. The
/// caller owes the DSB ISH.
pub fn flush_tlb_page_nosync(code: FlushCode, asid: u16, uaddr: u64) -> Vec<ArchOp> {
    let mut out = vec![
        ArchOp::Dsb(Dsb::Ishst),
        tlbi(TlbiOp::VALE1, TlbiOperand::va(asid, Va(uaddr), None)),
    ];
    if code.hook != SecondaryHook::None {
        let size = code.page_size();
        let page = uaddr & !(size - 1);
        out.push(ArchOp::Secondary {
            start: page,
            end: page + size,
        });
    }
    out
}

/// `flush_tlb_page`: [`flush_tlb_page_nosync`] then DSB ISH. Leaf only
/// (VALE1IS), so walk caches stay (Arm ARM D8.17.5.4).
pub fn flush_tlb_page(code: FlushCode, asid: u16, uaddr: u64) -> Vec<ArchOp> {
    let mut out = flush_tlb_page_nosync(code, asid, uaddr);
    out.push(ArchOp::Dsb(Dsb::Ish));
    out
}

/// `arch_tlbbatch_add_pending` (43b3dfdd0455, merged for v6.6): the page's
/// `__flush_tlb_page_nosync`, no DSB.
pub fn tlbbatch_add_pending(code: FlushCode, asid: u16, uaddr: u64) -> Vec<ArchOp> {
    flush_tlb_page_nosync(code, asid, uaddr)
}

/// `arch_tlbbatch_flush`: one DSB ISH completes every pending TLBI.
pub fn tlbbatch_flush() -> Vec<ArchOp> {
    vec![ArchOp::Dsb(Dsb::Ish)]
}

/// `arch_flush_tlb_batched_pending` as 43b3dfdd0455 added it (v6.6): a
/// DSB ISH. It completes only the TLBIs of the CPU that executes it
/// (Arm ARM D8.17.8), not those reclaim issued on another CPU, which
/// 4b634918384c (2025) fixes by flushing the whole mm instead.
pub fn flush_tlb_batched_pending() -> Vec<ArchOp> {
    vec![ArchOp::Dsb(Dsb::Ish)]
}

/// `__TLBI_RANGE_NUM(pages, scale)` as the version computes it; negative
/// when this scale does not fit.
fn range_num(range_loop: RangeLoop, pages: u64, scale: u32) -> i64 {
    match range_loop {
        // Masked before the subtraction (before e3ba51ab24fd).
        RangeLoop::ScaleUp => ((pages >> (5 * scale + 1)) & 31) as i64 - 1,
        RangeLoop::ScaleDown => {
            (pages.min(tlbi_range_pages(31, scale)) >> (5 * scale + 1)) as i64 - 1
        }
    }
}

/// One instruction of `__flush_tlb_range_op`'s loop.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum RangeStep {
    /// A non-range operation on the page at this address.
    Single(u64),
    /// A range operation: `(num + 1) << (5 * scale + 1)` pages of the
    /// loop's granule from `addr`.
    Range {
        /// First address.
        addr: u64,
        /// SCALE.
        scale: u8,
        /// NUM.
        num: u8,
    },
}

impl RangeStep {
    /// One past the last address the step covers with `granule` pages (a
    /// single operation advances by the stride).
    pub fn end(self, granule: Granule, stride: u64) -> u64 {
        match self {
            RangeStep::Single(a) => a + stride,
            RangeStep::Range { addr, scale, num } => {
                addr + (tlbi_range_pages(u64::from(num), u32::from(scale)) << granule.shift())
            }
        }
    }
}

/// The loop of `__flush_tlb_range_op(op, start, pages, stride, ...)`
/// that the CPU flushes and KVM's `__flush_s2_tlb_range_op` share: which
/// operations it issues for `pages` pages of `granule` from `start`, with
/// or without FEAT_TLBIRANGE, in the loop of `range_loop`.
///
/// # Panics
///
/// With [`RangeLoop::ScaleUp`] and exactly [`MAX_TLBI_RANGE_PAGES`]
/// pages, which the old `__TLBI_RANGE_NUM` cannot encode at any SCALE
/// (the bug e3ba51ab24fd fixes); callers of that loop stay below it.
pub fn range_steps(
    range_loop: RangeLoop,
    tlbirange: bool,
    granule: Granule,
    start: u64,
    mut pages: u64,
    stride: u64,
) -> Vec<RangeStep> {
    let page_shift = granule.shift();
    let mut out = Vec::new();
    let mut addr = start;
    let range = |out: &mut Vec<RangeStep>, addr: &mut u64, pages: &mut u64, num: i64, scale| {
        let n = num as u64;
        out.push(RangeStep::Range {
            addr: *addr,
            scale: scale as u8,
            num: n as u8,
        });
        *addr += tlbi_range_pages(n, scale) << page_shift;
        *pages -= tlbi_range_pages(n, scale);
    };
    match range_loop {
        RangeLoop::ScaleUp => {
            let mut scale = 0u32;
            while pages > 0 {
                if !tlbirange || pages % 2 == 1 {
                    out.push(RangeStep::Single(addr));
                    addr += stride;
                    pages -= stride >> page_shift;
                    continue;
                }
                assert!(
                    scale <= 3,
                    "range loop ran past SCALE 3 with {pages} pages left"
                );
                let num = range_num(range_loop, pages, scale);
                if num >= 0 {
                    range(&mut out, &mut addr, &mut pages, num, scale);
                }
                scale += 1;
            }
        }
        RangeLoop::ScaleDown => {
            let mut scale = 3i32;
            while pages > 0 {
                if !tlbirange || pages == 1 {
                    out.push(RangeStep::Single(addr));
                    addr += stride;
                    pages -= stride >> page_shift;
                    continue;
                }
                assert!(
                    scale >= 0,
                    "range loop ran below SCALE 0 with {pages} pages left"
                );
                let num = range_num(range_loop, pages, scale as u32);
                if num >= 0 {
                    range(&mut out, &mut addr, &mut pages, num, scale as u32);
                }
                scale -= 1;
            }
        }
    }
    out
}

/// `__flush_tlb_range(vma, start, end, stride, last_level, tlb_level)`
/// for the user ASID `asid`: `level` is the TTL level, `None` for
/// `TLBI_TTL_UNKNOWN`.
///
/// Rounds to the stride; falls back to [`flush_tlb_mm`] past the limit
/// (without range operations: `end - start >= MAX_TLBI_OPS * stride`, with
/// the granule's [`FlushCode::max_tlbi_ops`];
/// with them: beyond `MAX_TLBI_RANGE_PAGES`); otherwise DSB ISHST, the
/// TLBI loop (VALE1IS/RVALE1IS when `last_level`, VAE1IS/RVAE1IS
/// otherwise), DSB ISH, with the hook where the version has it.
#[allow(clippy::too_many_arguments)]
pub fn flush_tlb_range(
    code: FlushCode,
    cpu: CpuFeatures,
    asid: u16,
    start: u64,
    end: u64,
    stride: u64,
    last_level: bool,
    level: Option<u8>,
) -> Vec<ArchOp> {
    let start0 = start & !(stride - 1);
    let end0 = end.div_ceil(stride) * stride;
    let pages = (end0 - start0) >> code.page_shift();
    let over = match code.range_loop {
        RangeLoop::ScaleUp => pages >= MAX_TLBI_RANGE_PAGES,
        RangeLoop::ScaleDown => pages > MAX_TLBI_RANGE_PAGES,
    };
    if (!cpu.tlbirange && end0 - start0 >= code.max_tlbi_ops() * stride) || over {
        return flush_tlb_mm(code, asid);
    }
    let (single, range) = if last_level {
        (TlbiOp::VALE1, TlbiOp::RVALE1)
    } else {
        (TlbiOp::VAE1, TlbiOp::RVAE1)
    };
    // The range TTL is the level when it is 1..3, else 0 (no hint); TG is
    // the kernel's granule (`get_trans_granule`).
    let range_ttl = level.filter(|l| (1..=3).contains(l));
    let mut out = vec![ArchOp::Dsb(Dsb::Ishst)];
    let mut addr = start0;
    let granule = code.granule;
    for step in range_steps(
        code.range_loop,
        cpu.tlbirange,
        granule,
        start0,
        pages,
        stride,
    ) {
        match step {
            RangeStep::Single(a) => {
                out.push(tlbi(single, va_operand(granule, cpu, asid, a, level)))
            }
            RangeStep::Range {
                addr: a,
                scale,
                num,
            } => out.push(tlbi(
                range,
                TlbiOperand::VaRange {
                    asid,
                    range: TlbiRange::new(granule, a, scale, num, range_ttl),
                },
            )),
        }
        addr = step.end(granule, stride);
    }
    match code.hook {
        SecondaryHook::None => out.push(ArchOp::Dsb(Dsb::Ish)),
        SecondaryHook::AsMerged => {
            out.push(ArchOp::Dsb(Dsb::Ish));
            // The loop advanced `start` in place: the hook sees it there.
            out.push(ArchOp::Secondary {
                start: addr,
                end: end0,
            });
        }
        SecondaryHook::Fixed => {
            out.push(ArchOp::Secondary {
                start: start0,
                end: end0,
            });
            out.push(ArchOp::Dsb(Dsb::Ish));
        }
    }
    out
}

/// The arm64 mmu_gather `tlb_flush` for a gather that is not tearing down
/// the whole mm: `__flush_tlb_range(start, end, stride, last_level =
/// !freed_tables, tlb_get_level)`; for a fullmm gather, [`flush_tlb_mm`]
/// only when tables were freed, else nothing (the ASID is not reused
/// before a full invalidation).
#[allow(clippy::too_many_arguments)]
pub fn tlb_flush(
    code: FlushCode,
    cpu: CpuFeatures,
    asid: u16,
    fullmm: bool,
    start: u64,
    end: u64,
    stride: u64,
    freed_tables: bool,
    level: Option<u8>,
) -> Vec<ArchOp> {
    if fullmm {
        return if freed_tables {
            flush_tlb_mm(code, asid)
        } else {
            Vec::new()
        };
    }
    flush_tlb_range(code, cpu, asid, start, end, stride, !freed_tables, level)
}
