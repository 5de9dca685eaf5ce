//! Golden instruction streams of the arm64 flush functions, written from
//! the kernel's algorithm (`arch/arm64/include/asm/tlbflush.h` at v6.5,
//! v6.6 and v6.14) and the operand formats of the Arm ARM (D8.17.5.1,
//! D8.17.5.2), not from this crate's output. Several vectors are the
//! worked encodings of docs/design.md's reference notes on Linux.

use tlbcheck_hw::cpu::tlbi::TlbiOp;
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
