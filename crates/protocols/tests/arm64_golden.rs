//! Golden instruction streams of the arm64 flush functions, written from
//! the kernel's algorithm (`arch/arm64/include/asm/tlbflush.h` at v6.5,
//! v6.6 and v6.14) and the operand formats of the Arm ARM (D8.17.5.1,
//! D8.17.5.2), not from this crate's output. Several vectors are the
//! worked encodings of docs/design.md's reference notes on Linux.

use tlbcheck_hw::addr::Granule;
use tlbcheck_hw::cpu::tlbi::{TlbiOp, TlbiOperand};
use tlbcheck_hw::machine::Dsb;
use tlbcheck_protocols::linux::arm64::*;

const NO_RANGE: CpuFeatures = CpuFeatures {
    tlbirange: false,
    ttl: false,
};
const RANGE: CpuFeatures = CpuFeatures {
    tlbirange: true,
    ttl: false,
};

/// The TLBIs of a flush, as (operation, operand).
fn tlbis(ops: &[ArchOp]) -> Vec<(TlbiOp, u64)> {
    ops.iter()
        .filter_map(|o| match o {
            ArchOp::Tlbi { tlbi, operand } => Some((tlbi.op, operand.encode())),
            _ => None,
        })
        .collect()
}

fn range(code: FlushCode, cpu: CpuFeatures, asid: u16, start: u64, pages: u64) -> Vec<ArchOp> {
    flush_tlb_range(
        code,
        cpu,
        asid,
        start,
        start + pages * PAGE_SIZE,
        PAGE_SIZE,
        false,
        None,
    )
}

#[test]
fn constants_are_the_kernels() {
    assert_eq!(MAX_TLBI_OPS, 512, "PTRS_PER_PTE at 4K");
    assert_eq!(MAX_TLBI_RANGE_PAGES, 2_097_152, "__TLBI_RANGE_PAGES(31, 3)");
}

#[test]
fn flush_tlb_page_is_a_leaf_tlbi_between_two_barriers() {
    // VA 0xffff8a3b5000, ASID 0x42, no TTL: VA[55:12] = 0xffff8a3b5.
    let ops = flush_tlb_page(FlushCode::V6_5, 0x42, 0xffff_8a3b_5000);
    assert_eq!(ops.len(), 3);
    assert_eq!(ops[0], ArchOp::Dsb(Dsb::Ishst));
    assert_eq!(tlbis(&ops), vec![(TlbiOp::VALE1, 0x0042_000f_fff8_a3b5)]);
    assert_eq!(ops[2], ArchOp::Dsb(Dsb::Ish));
}

#[test]
fn v6_6_tells_the_secondaries_about_the_page_before_the_dsb() {
    let ops = flush_tlb_page(FlushCode::V6_6, 1, 0x5123);
    assert_eq!(
        ops[2],
        ArchOp::Secondary {
            start: 0x5000,
            end: 0x6000
        }
    );
    assert_eq!(ops[3], ArchOp::Dsb(Dsb::Ish));
}

#[test]
fn flush_tlb_mm_is_aside1is_and_v6_6_passes_everything_after_the_dsb() {
    let ops = flush_tlb_mm(FlushCode::V6_6, 5);
    assert_eq!(tlbis(&ops), vec![(TlbiOp::ASIDE1, 0x0005_0000_0000_0000)]);
    assert_eq!(ops[2], ArchOp::Dsb(Dsb::Ish));
    assert_eq!(
        ops[3],
        ArchOp::Secondary {
            start: 0,
            end: u64::MAX
        }
    );
    assert_eq!(flush_tlb_mm(FlushCode::V6_5, 5).len(), 3);
}

/// (pages, TLBIs without FEAT_TLBIRANGE, with it at v6.5, with it at v6.14)
/// for a 4K-stride non-leaf flush; `mm` is the whole-ASID fallback.
#[test]
fn range_flush_op_counts() {
    const MM: usize = usize::MAX;
    let cases: [(u64, usize, usize, usize); 7] = [
        (1, 1, 1, 1),
        (2, 2, 1, 1),
        (511, 511, 3, 3),
        (512, MM, 1, 1),
        (513, MM, 2, 2),
        (1 << 9, MM, 1, 1),  // 2 MiB
        (1 << 18, MM, 1, 1), // 1 GiB
    ];
    for (pages, none, up, down) in cases {
        for (code, cpu, want) in [
            (FlushCode::V6_5, NO_RANGE, none),
            (FlushCode::V6_14, NO_RANGE, none),
            (FlushCode::V6_5, RANGE, up),
            (FlushCode::V6_14, RANGE, down),
        ] {
            let ops = tlbis(&range(code, cpu, 1, 0x4000_0000, pages));
            if want == MM {
                assert_eq!(
                    ops,
                    vec![(TlbiOp::ASIDE1, 1 << 48)],
                    "{pages} pages {code:?} {cpu:?}"
                );
            } else {
                assert_eq!(ops.len(), want, "{pages} pages {code:?} {cpu:?}: {ops:x?}");
                assert!(ops.iter().all(|(o, _)| *o != TlbiOp::ASIDE1));
            }
        }
    }
}

#[test]
fn five_hundred_twelve_pages_are_one_scale_1_num_7_operation() {
    // ASID 5, 0x40000000: TG 1 << 46, SCALE 1 << 44, NUM 7 << 39, BaseADDR 0x40000.
    let want = vec![(TlbiOp::RVAE1, 0x0005_5380_0004_0000)];
    assert_eq!(
        tlbis(&range(FlushCode::V6_5, RANGE, 5, 0x4000_0000, 512)),
        want
    );
    assert_eq!(
        tlbis(&range(FlushCode::V6_14, RANGE, 5, 0x4000_0000, 512)),
        want
    );
}

#[test]
fn an_odd_page_goes_first_at_v6_5_and_last_at_v6_14() {
    // 3 pages at 0x1000, ASID 1.
    assert_eq!(
        tlbis(&range(FlushCode::V6_5, RANGE, 1, 0x1000, 3)),
        vec![
            (TlbiOp::VAE1, 0x0001_0000_0000_0001),
            (TlbiOp::RVAE1, 0x0001_4000_0000_0002)
        ]
    );
    assert_eq!(
        tlbis(&range(FlushCode::V6_14, RANGE, 1, 0x1000, 3)),
        vec![
            (TlbiOp::RVAE1, 0x0001_4000_0000_0001),
            (TlbiOp::VAE1, 0x0001_0000_0000_0003)
        ]
    );
}

#[test]
fn a_thousand_pages_at_v6_14_are_960_then_40() {
    assert_eq!(
        tlbis(&range(FlushCode::V6_14, RANGE, 7, 0x1000_0000, 1000)),
        vec![
            (TlbiOp::RVAE1, 0x0007_5700_0001_0000),
            (TlbiOp::RVAE1, 0x0007_4980_0001_03c0)
        ]
    );
}

#[test]
fn max_range_pages_is_one_operation_only_after_the_2024_fixes() {
    let at = 0x4000_0000;
    assert_eq!(
        tlbis(&range(FlushCode::V6_14, RANGE, 0, at, MAX_TLBI_RANGE_PAGES)),
        vec![(TlbiOp::RVAE1, 0x0000_7f80_0004_0000)]
    );
    assert_eq!(
        tlbis(&range(FlushCode::V6_5, RANGE, 0, at, MAX_TLBI_RANGE_PAGES)),
        vec![(TlbiOp::ASIDE1, 0)]
    );
}

#[test]
fn a_one_gib_span_is_scale_3_num_3() {
    // 2^18 pages = 4 * 2^16: SCALE 3, NUM 3.
    assert_eq!(
        tlbis(&range(FlushCode::V6_5, RANGE, 0, 0x4000_0000, 1 << 18)),
        vec![(TlbiOp::RVAE1, (1 << 46) | (3 << 44) | (3 << 39) | 0x40000)]
    );
}

#[test]
fn a_last_level_flush_with_feat_ttl_names_level_3() {
    let cpu = CpuFeatures {
        tlbirange: false,
        ttl: true,
    };
    let ops = flush_tlb_range(
        FlushCode::V6_5,
        cpu,
        0x42,
        0x1000,
        0x2000,
        PAGE_SIZE,
        true,
        Some(3),
    );
    // TTL = TG 4K (0b01) : level 3 (0b11) = 0b0111 in bits [47:44].
    assert_eq!(tlbis(&ops), vec![(TlbiOp::VALE1, 0x0042_7000_0000_0001)]);
}

#[test]
fn the_merged_v6_6_hook_receives_an_empty_range() {
    let ops = range(FlushCode::V6_6, NO_RANGE, 1, 0x1000, 2);
    assert_eq!(
        ops.last(),
        Some(&ArchOp::Secondary {
            start: 0x3000,
            end: 0x3000
        })
    );
    let ops = range(FlushCode::V6_14, NO_RANGE, 1, 0x1000, 2);
    let n = ops.len();
    assert_eq!(
        ops[n - 2],
        ArchOp::Secondary {
            start: 0x1000,
            end: 0x3000
        }
    );
    assert_eq!(ops[n - 1], ArchOp::Dsb(Dsb::Ish));
}

#[test]
fn batched_reclaim_defers_the_dsb_to_the_flush() {
    let mut ops = tlbbatch_add_pending(FlushCode::V6_5, 1, 0x1000);
    ops.extend(tlbbatch_add_pending(FlushCode::V6_5, 1, 0x2000));
    assert!(!ops.contains(&ArchOp::Dsb(Dsb::Ish)));
    assert_eq!(tlbbatch_flush(), vec![ArchOp::Dsb(Dsb::Ish)]);
    assert_eq!(tlbis(&ops).len(), 2);
}

#[test]
fn v6_6_batched_pending_tells_the_secondaries_with_no_dsb_ish() {
    // 6bbd42e2df8f: __flush_tlb_page_nosync calls the hook after its TLBI;
    // arch_tlbbatch_add_pending is that function, so the secondaries hear
    // of the page before the batch's DSB ISH. ASID 1, VA 0x5000: VA[55:12]
    // = 5.
    let ops = tlbbatch_add_pending(FlushCode::V6_6, 1, 0x5123);
    assert_eq!(
        ops,
        vec![
            ArchOp::Dsb(Dsb::Ishst),
            ArchOp::Tlbi {
                tlbi: tlbcheck_hw::cpu::tlbi::Tlbi::new(TlbiOp::VALE1, true),
                operand: tlbcheck_hw::cpu::tlbi::TlbiOperand::va(
                    1,
                    tlbcheck_hw::addr::Va(0x5123),
                    None
                ),
            },
            ArchOp::Secondary {
                start: 0x5000,
                end: 0x6000
            },
        ]
    );
    assert_eq!(ops[1].raw(), Some(0x0001_0000_0000_0005));
    // v6.5's function has no hook.
    assert_eq!(tlbbatch_add_pending(FlushCode::V6_5, 1, 0x5123).len(), 2);
}

// 16K and 64K kernels (`CONFIG_ARM64_16K_PAGES`, `CONFIG_ARM64_64K_PAGES`):
// PAGE_SHIFT 14 and 16, MAX_TLBI_OPS = PTRS_PER_PTE = 2048 and 8192,
// get_trans_granule() = 0b10 and 0b11. The by-VA operand still holds
// VA[55:12]; the range operand's BaseADDR is VA[50:14] or VA[52:16] and
// its TG names the granule (Arm ARM D8.17.5.1, D8.17.5.2).

const TTL: CpuFeatures = CpuFeatures {
    tlbirange: false,
    ttl: true,
};
const RANGE_TTL: CpuFeatures = CpuFeatures {
    tlbirange: true,
    ttl: true,
};

/// A non-leaf `__flush_tlb_range` of `pages` pages of the code's granule.
fn granule_range(
    code: FlushCode,
    cpu: CpuFeatures,
    asid: u16,
    start: u64,
    pages: u64,
) -> Vec<ArchOp> {
    let page = code.page_size();
    flush_tlb_range(
        code,
        cpu,
        asid,
        start,
        start + pages * page,
        page,
        false,
        None,
    )
}

#[test]
fn the_granule_sets_page_size_and_max_tlbi_ops() {
    let k16 = FlushCode::V6_5.with_granule(Granule::K16);
    let k64 = FlushCode::V6_5.with_granule(Granule::K64);
    assert_eq!((k16.page_shift(), k16.page_size()), (14, 0x4000));
    assert_eq!((k64.page_shift(), k64.page_size()), (16, 0x1_0000));
    // PTRS_PER_PTE: a page of 8-byte entries.
    assert_eq!(FlushCode::V6_5.max_tlbi_ops(), MAX_TLBI_OPS);
    assert_eq!(k16.max_tlbi_ops(), 0x4000 / 8);
    assert_eq!(k64.max_tlbi_ops(), 0x1_0000 / 8);
}

#[test]
fn a_16k_page_flush_shifts_by_12_and_hooks_the_16k_page() {
    let code = FlushCode::V6_6.with_granule(Granule::K16);
    // __TLBI_VADDR(0x45123, 1): VA[55:12] = 0x45, ASID 1 in [63:48].
    let ops = flush_tlb_page(code, 1, 0x4_5123);
    assert_eq!(tlbis(&ops), vec![(TlbiOp::VALE1, 0x0001_0000_0000_0045)]);
    // The secondaries get the 16K page around it: 0x44000..0x48000.
    assert_eq!(
        ops[2],
        ArchOp::Secondary {
            start: 0x4_4000,
            end: 0x4_8000
        }
    );
    assert_eq!(ops[3], ArchOp::Dsb(Dsb::Ish));
}

#[test]
fn a_64k_page_flush_shifts_by_12_and_hooks_the_64k_page() {
    let code = FlushCode::V6_6.with_granule(Granule::K64);
    let ops = flush_tlb_page(code, 2, 0x7_1234);
    assert_eq!(tlbis(&ops), vec![(TlbiOp::VALE1, 0x0002_0000_0000_0071)]);
    assert_eq!(
        ops[2],
        ArchOp::Secondary {
            start: 0x7_0000,
            end: 0x8_0000
        }
    );
}

#[test]
fn a_16k_range_without_tlbirange_steps_by_16k_up_to_2048_pages() {
    let code = FlushCode::V6_5.with_granule(Granule::K16);
    // Three pages from 1 MiB: VAE1IS at 0x100000, 0x104000, 0x108000.
    let ops = granule_range(code, NO_RANGE, 1, 0x10_0000, 3);
    assert_eq!(ops[0], ArchOp::Dsb(Dsb::Ishst));
    assert_eq!(
        tlbis(&ops),
        vec![
            (TlbiOp::VAE1, (1 << 48) | 0x100),
            (TlbiOp::VAE1, (1 << 48) | 0x104),
            (TlbiOp::VAE1, (1 << 48) | 0x108),
        ]
    );
    assert_eq!(ops.last(), Some(&ArchOp::Dsb(Dsb::Ish)));
    // 2047 pages stay per page (a 4K kernel would give up at 512)...
    let t = tlbis(&granule_range(code, NO_RANGE, 1, 0x10_0000, 2047));
    assert_eq!(t.len(), 2047);
    // ...the last one at 0x100000 + 2046 * 16K, VA[55:12] = 0x100 + 2046 * 4.
    assert_eq!(t[2046], (TlbiOp::VAE1, (1 << 48) | (0x100 + 2046 * 4)));
    // 2048 pages reach MAX_TLBI_OPS * stride: the whole ASID.
    assert_eq!(
        tlbis(&granule_range(code, NO_RANGE, 1, 0x10_0000, 2048)),
        vec![(TlbiOp::ASIDE1, 1 << 48)]
    );
}

#[test]
fn a_64k_range_without_tlbirange_falls_back_at_8192_pages() {
    let code = FlushCode::V6_5.with_granule(Granule::K64);
    let t = tlbis(&granule_range(code, NO_RANGE, 2, 0x4000_0000, 8191));
    assert_eq!(t.len(), 8191);
    assert_eq!(t[0], (TlbiOp::VAE1, (2 << 48) | 0x4_0000));
    // 0x40000000 + 8190 * 64K: VA[55:12] = 0x40000 + 8190 * 16.
    assert_eq!(t[8190], (TlbiOp::VAE1, (2 << 48) | (0x4_0000 + 8190 * 16)));
    assert_eq!(
        tlbis(&granule_range(code, NO_RANGE, 2, 0x4000_0000, 8192)),
        vec![(TlbiOp::ASIDE1, 2 << 48)]
    );
}

#[test]
fn a_16k_range_with_tlbirange_uses_tg_16k_and_16k_base() {
    let code = FlushCode::V6_5.with_granule(Granule::K16);
    // Three pages, scale-up loop: the odd page first (by VA), then two
    // pages as SCALE 0, NUM 0 from 0x104000: BaseADDR = VA[50:14] = 0x41,
    // TG = 0b10 in [47:46].
    assert_eq!(
        tlbis(&granule_range(code, RANGE, 1, 0x10_0000, 3)),
        vec![
            (TlbiOp::VAE1, (1 << 48) | 0x100),
            (TlbiOp::RVAE1, (1 << 48) | (0b10 << 46) | 0x41),
        ]
    );
    // MAX_TLBI_OPS pages = 2048 = 1 << 11: SCALE 2, NUM 0 (the masked
    // NUM is -1 at SCALE 0 and 1), BaseADDR 0x100000 >> 14 = 0x40.
    assert_eq!(
        tlbis(&granule_range(code, RANGE, 1, 0x10_0000, 2048)),
        vec![(TlbiOp::RVAE1, (1 << 48) | (0b10 << 46) | (2 << 44) | 0x40)]
    );
    // 2049 pages at v6.14 (scale down): SCALE 2 NUM 0, then the last page
    // singly at 0x100000 + 2048 * 16K = 0x2100000.
    let v6_14 = FlushCode::V6_14.with_granule(Granule::K16);
    assert_eq!(
        tlbis(&granule_range(v6_14, RANGE, 1, 0x10_0000, 2049)),
        vec![
            (TlbiOp::RVAE1, (1 << 48) | (0b10 << 46) | (2 << 44) | 0x40),
            (TlbiOp::VAE1, (1 << 48) | 0x2100),
        ]
    );
}

#[test]
fn a_64k_range_with_tlbirange_uses_tg_64k_and_64k_base() {
    let code = FlushCode::V6_5.with_granule(Granule::K64);
    // 8192 = 4 << 11 pages: SCALE 2, NUM 3; BaseADDR = VA[52:16] = 0x4000.
    assert_eq!(
        tlbis(&granule_range(code, RANGE, 2, 0x4000_0000, 8192)),
        vec![(
            TlbiOp::RVAE1,
            (2 << 48) | (0b11 << 46) | (2 << 44) | (3 << 39) | 0x4000
        )]
    );
    // 8193 pages at v6.5: the odd page first, then 8192 pages from
    // 0x40010000 (BaseADDR 0x4001) as SCALE 2, NUM 3.
    assert_eq!(
        tlbis(&granule_range(code, RANGE, 2, 0x4000_0000, 8193)),
        vec![
            (TlbiOp::VAE1, (2 << 48) | 0x4_0000),
            (
                TlbiOp::RVAE1,
                (2 << 48) | (0b11 << 46) | (2 << 44) | (3 << 39) | 0x4001
            ),
        ]
    );
}

#[test]
fn feat_ttl_names_the_kernels_granule_in_ttl_3_2() {
    // 16K, level 3, no range: TTL = 0b10:0b11 = 0xb in [47:44].
    let k16 = FlushCode::V6_5.with_granule(Granule::K16);
    let ops = flush_tlb_range(k16, TTL, 1, 0x10_0000, 0x10_4000, 0x4000, true, Some(3));
    assert_eq!(tlbis(&ops), vec![(TlbiOp::VALE1, 0x0001_b000_0000_0100)]);
    // 64K, level 3, three pages at v6.14 with ranges: SCALE 0 NUM 0 with
    // range TTL 0b11 in [38:37] and TG 0b11, then the last page with TTL
    // 0b11:0b11 = 0xf.
    let k64 = FlushCode::V6_14.with_granule(Granule::K64);
    let ops = flush_tlb_range(
        k64,
        RANGE_TTL,
        2,
        0x4000_0000,
        0x4003_0000,
        0x1_0000,
        true,
        Some(3),
    );
    assert_eq!(
        tlbis(&ops),
        vec![
            (TlbiOp::RVALE1, 0x0002_c060_0000_4000),
            (TlbiOp::VALE1, 0x0002_f000_0004_0020),
        ]
    );
    // 64K level 2 (a 512 MiB block), no range: TTL 0b11:0b10 = 0xe.
    let ops = flush_tlb_range(
        k64,
        TTL,
        2,
        0x2000_0000,
        0x4000_0000,
        0x2000_0000,
        true,
        Some(2),
    );
    assert_eq!(tlbis(&ops), vec![(TlbiOp::VALE1, 0x0002_e000_0002_0000)]);
}

/// Every operand of a 16K or 64K range flush decodes as the Arm ARM
/// defines it (no reserved TG, TTL or RES0 bit), and the operations tile
/// the flushed range in order: each range operand, read back through the
/// decoder's TG and BaseADDR, starts where the previous one ended.
#[test]
fn granule_range_operands_decode_and_tile_the_range() {
    for granule in [Granule::K16, Granule::K64] {
        for code in [FlushCode::V6_5, FlushCode::V6_14] {
            let code = code.with_granule(granule);
            let page = code.page_size();
            for pages in [1, 2, 3, 33, 1000, 2049] {
                let start = 0x4000_0000;
                let mut next = start;
                for op in granule_range(code, RANGE_TTL, 7, start, pages) {
                    let ArchOp::Tlbi { tlbi, operand } = op else {
                        continue;
                    };
                    let back = tlbi.decode(operand.encode()).expect("a valid operand");
                    assert_eq!(back, operand);
                    match back {
                        TlbiOperand::VaRange { asid, range } => {
                            assert_eq!((asid, range.granule), (7, granule));
                            assert_eq!(range.start(), next);
                            next = range.range().last + 1;
                        }
                        TlbiOperand::Va { .. } => {
                            let a = back.address().expect("an address").get();
                            assert_eq!(a, next);
                            next += page;
                        }
                        other => panic!("unexpected operand {other:?}"),
                    }
                }
                assert_eq!(next, start + pages * page, "{granule:?} {pages} pages");
            }
        }
    }
}
