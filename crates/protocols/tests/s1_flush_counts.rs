//! perf-anchors §7 S1: the TLBIs and DSBs of one `flush_tlb_range(vma,
//! start, start + N * 4 KiB)` (stride PAGE_SIZE, not last-level, no KPTI)
//! for each N of the scenario, on a CPU without and with FEAT_TLBIRANGE,
//! in the v5.7–v6.8 loop (SCALE upwards) and the v6.9+ loop (SCALE
//! downwards). The expected counts are worked out by hand from the
//! kernel's loop: a range operation covers (NUM + 1) << (5 * SCALE + 1)
//! pages (Arm ARM D8.17.5.2), `MAX_TLBI_OPS` = 512 caps the non-range
//! loop, `MAX_TLBI_RANGE_PAGES` = 32 << 16 the range loop.

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

/// `(VAE1IS, RVAE1IS, ASIDE1IS)` of one flush, after checking that it has
/// exactly one DSB ISHST before its first TLBI and one DSB ISH after its
/// last.
fn counts(code: FlushCode, cpu: CpuFeatures, pages: u64) -> (u64, u64, u64) {
    let start = 0x4000_0000u64;
    let ops = flush_tlb_range(
        code,
        cpu,
        1,
        start,
        start + pages * PAGE_SIZE,
        PAGE_SIZE,
        false,
        None,
    );
    let dsbs: Vec<Dsb> = ops
        .iter()
        .filter_map(|o| match o {
            ArchOp::Dsb(d) => Some(*d),
            _ => None,
        })
        .collect();
    assert_eq!(dsbs, [Dsb::Ishst, Dsb::Ish], "{pages} pages");
    assert!(matches!(ops.first(), Some(ArchOp::Dsb(Dsb::Ishst))));
    let mut c = (0, 0, 0);
    for o in &ops {
        if let ArchOp::Tlbi { tlbi, .. } = o {
            assert!(tlbi.broadcast);
            match tlbi.op {
                TlbiOp::VAE1 => c.0 += 1,
                TlbiOp::RVAE1 => c.1 += 1,
                TlbiOp::ASIDE1 => c.2 += 1,
                op => panic!("{op:?} in a flush of {pages} pages"),
            }
        }
    }
    c
}

/// The (SCALE, NUM) of each range operation, in issue order.
fn ranges(code: FlushCode, pages: u64) -> Vec<(u8, u8)> {
    let start = 0x4000_0000u64;
    flush_tlb_range(
        code,
        RANGE,
        1,
        start,
        start + pages * PAGE_SIZE,
        PAGE_SIZE,
        false,
        None,
    )
    .iter()
    .filter_map(|o| match o {
        ArchOp::Tlbi {
            operand: TlbiOperand::VaRange { range, .. },
            ..
        } => Some((range.scale, range.num)),
        _ => None,
    })
    .collect()
}

const SIZES: [u64; 20] = [
    1,
    2,
    3,
    4,
    5,
    8,
    16,
    17,
    32,
    33,
    64,
    128,
    256,
    511,
    512,
    513,
    0xe81a,
    262_144,
    1 << 21,
    (1 << 21) + 2,
];

#[test]
fn per_page_without_the_cap_is_one_tlbi_per_page() {
    // The loop with no MAX_TLBI_OPS cap is the non-range loop of
    // __flush_tlb_range itself.
    for n in SIZES {
        let steps = range_steps(RangeLoop::ScaleUp, false, Granule::K4, 0, n, PAGE_SIZE);
        assert_eq!(steps.len() as u64, n);
        assert!(steps.iter().all(|s| matches!(s, RangeStep::Single(_))));
    }
}

#[test]
fn without_range_tlbi_512_pages_and_more_flush_the_asid() {
    for code in [FlushCode::V6_5, FlushCode::V6_14] {
        for n in SIZES {
            let want = if n < MAX_TLBI_OPS {
                (n, 0, 0)
            } else {
                (0, 0, 1)
            };
            assert_eq!(counts(code, NO_RANGE, n), want, "{n} pages");
        }
    }
}

#[test]
fn with_range_tlbi_the_counts_of_section_7() {
    // (pages, (VAE1IS, RVAE1IS, ASIDE1IS)) for both loops: an odd count
    // costs one VA operation, an even count below 2^21 that is one NUM at
    // one SCALE one range operation.
    let common: [(u64, (u64, u64, u64)); 16] = [
        (1, (1, 0, 0)),
        (2, (0, 1, 0)),
        (3, (1, 1, 0)),
        (4, (0, 1, 0)),
        (5, (1, 1, 0)),
        (8, (0, 1, 0)),
        (16, (0, 1, 0)),
        (17, (1, 1, 0)),
        (32, (0, 1, 0)),
        (33, (1, 1, 0)),
        (64, (0, 1, 0)),
        (128, (0, 1, 0)),
        (256, (0, 1, 0)),
        (512, (0, 1, 0)),
        (513, (1, 1, 0)),
        (262_144, (0, 1, 0)),
    ];
    for code in [FlushCode::V6_5, FlushCode::V6_14] {
        for (n, want) in common {
            assert_eq!(counts(code, RANGE, n), want, "{n} pages, {code:?}");
        }
        // 511: upwards, one VA (odd), SCALE 0 NUM 30 (62 pages), SCALE 1
        // NUM 6 (7 << 6 = 448); downwards, SCALE 1 NUM 6, SCALE 0 NUM 30,
        // then the last page as a VA operation.
        assert_eq!(counts(code, RANGE, 511), (1, 2, 0), "{code:?}");
        assert_eq!(counts(code, RANGE, 0xe81a), (0, 2, 0));
        // Past MAX_TLBI_RANGE_PAGES both fall back.
        assert_eq!(counts(code, RANGE, (1 << 21) + 2), (0, 0, 1));
    }
    // 262,144 = 4 << 16: SCALE 3, NUM 3.
    assert_eq!(ranges(FlushCode::V6_5, 262_144), [(3, 3)]);
    assert_eq!(ranges(FlushCode::V6_14, 262_144), [(3, 3)]);
    // 0xe81a = 59,418 pages: SCALE 0 takes (59,418 >> 1) & 31 = 13 pairs,
    // NUM 12 (0xc), 26 pages; SCALE 2 takes 59,392 >> 11 = 29 units, NUM
    // 28 (0x1c). The upward loop issues SCALE 0 first.
    assert_eq!(ranges(FlushCode::V6_5, 0xe81a), [(0, 0xc), (2, 0x1c)]);
    assert_eq!(ranges(FlushCode::V6_14, 0xe81a), [(2, 0x1c), (0, 0xc)]);
    // 2^21 pages = MAX_TLBI_RANGE_PAGES: the v5.7 loop falls back
    // (`pages >= MAX_TLBI_RANGE_PAGES`); since 73301e464a72 (v6.9) the
    // test is `>`, and SCALE 3 NUM 31 covers it in one operation.
    assert_eq!(counts(FlushCode::V6_5, RANGE, 1 << 21), (0, 0, 1));
    assert_eq!(ranges(FlushCode::V6_14, 1 << 21), [(3, 31)]);
}
