//! The arm-smmu-v3 SVA notifier's commands per version, written from the
//! driver's algorithm (`arm_smmu_mm_invalidate_range` at v6.5,
//! `arm_smmu_mm_arch_invalidate_secondary_tlbs` after 38b14e2e3de9) and
//! the command layouts of SMMUv3 4.4 and 4.5.

use tlbcheck_hw::addr::Granule;
use tlbcheck_hw::smmu::cmd::Command;
use tlbcheck_protocols::linux::sva::*;
use tlbcheck_protocols::linux::Version;

fn words(ops: &[SmmuOp]) -> Vec<Option<[u64; 2]>> {
    ops.iter()
        .map(|o| match o {
            SmmuOp::Cmd(c) => Some(c.encode()),
            SmmuOp::Sync => None,
            SmmuOp::Lockup => panic!("a lockup in {ops:?}"),
        })
        .collect()
}

const BOND: SvaBond = SvaBond {
    asid: 0x42,
    sid: 0x100,
    ssid: Some(5),
    ats: true,
    cd: None,
};
const PLAIN: SmmuFeatures = SmmuFeatures {
    btm: false,
    ril: false,
    ats: false,
};
const ATS: SmmuFeatures = SmmuFeatures {
    btm: false,
    ril: false,
    ats: true,
};

#[test]
fn one_page_is_a_non_leaf_nh_va_then_sync_then_atc_inv_then_sync() {
    let ops = invalidate(
        Version::Linux6_6,
        ATS,
        Granule::K4,
        &BOND,
        0x7f12_3456_7000,
        0x7f12_3456_8000,
    );
    assert_eq!(
        words(&ops),
        vec![
            // NH_VA (0x12), ASID 0x42, VMID 0; VA, Leaf = 0, TG = 0.
            Some([0x0042_0000_0000_0012, 0x0000_7f12_3456_7000]),
            None,
            // ATC_INV (0x40), SID 0x100, SSID 5, SSV; one page: Size 0.
            Some([0x0000_0100_0000_5840, 0x0000_7f12_3456_7000]),
            None,
        ]
    );
}

#[test]
fn everything_is_a_tlbi_by_asid_from_v6_6_and_nothing_at_v6_5() {
    let all = invalidate(Version::Linux6_6, PLAIN, Granule::K4, &BOND, 0, u64::MAX);
    assert_eq!(words(&all), vec![Some([0x0042_0000_0000_0011, 0]), None]);
    // The empty range the merged v6.6 range flush hands over also takes
    // the whole-ASID path (size 0).
    let empty = invalidate(Version::Linux6_6, PLAIN, Granule::K4, &BOND, 0x3000, 0x3000);
    assert_eq!(words(&empty), words(&all));
    // v6.5's nested tlb_finish_mmu hands (-1, -1): size 0, no TLBI at all;
    // only the ATC is invalidated, entirely (Size 52).
    assert!(invalidate(
        Version::Linux6_5,
        PLAIN,
        Granule::K4,
        &BOND,
        u64::MAX,
        u64::MAX
    )
    .is_empty());
    assert_eq!(
        words(&invalidate(
            Version::Linux6_5,
            ATS,
            Granule::K4,
            &BOND,
            u64::MAX,
            u64::MAX
        )),
        vec![Some([0x0000_0100_0000_5840, 52]), None]
    );
}

#[test]
fn with_btm_only_the_atc_is_invalidated() {
    let btm = SmmuFeatures {
        btm: true,
        ril: false,
        ats: true,
    };
    let ops = invalidate(Version::Linux6_6, btm, Granule::K4, &BOND, 0x7000, 0x8000);
    assert_eq!(ops.len(), 2);
    assert!(matches!(
        ops[0],
        SmmuOp::Cmd(tlbcheck_hw::smmu::cmd::Command::AtcInv { .. })
    ));
}

#[test]
fn a_non_leaf_range_of_33_pages_is_bumped_to_34() {
    let ril = SmmuFeatures {
        btm: false,
        ril: true,
        ats: false,
    };
    let ops = tlb_inv_range_asid(
        ril,
        Granule::K4,
        0x42,
        0x7f00_0000_0000,
        33 * 4096,
        false,
        true,
    );
    assert_eq!(
        words(&ops),
        vec![Some([0x0042_0000_0011_0012, 0x0000_7f00_0000_0400]), None]
    );
}

/// Before eb6c97647be2 (v6.5), a one-page non-leaf range invalidation is
/// built with NUM = SCALE = TTL = 0 and TG = 4K: the Reserved combination
/// the SMMU refuses with CERROR_ILL (SMMUv3 4.4.1.1).
#[test]
fn without_the_bump_one_non_leaf_page_is_an_illegal_range() {
    let ril = SmmuFeatures {
        btm: false,
        ril: true,
        ats: false,
    };
    let ops = tlb_inv_range_asid(ril, Granule::K4, 0x42, 0x7f00_0000_0000, 4096, false, false);
    let cmd = words(&ops)[0].expect("a command");
    // TG = 4K in dw1 [11:10], NUM [16:12] = 0, SCALE [24:20] = 0, TTL = 0.
    assert_eq!(cmd, [0x0042_0000_0000_0012, 0x0000_7f00_0000_0400]);
    // The decoder, like the SMMU, refuses it.
    assert!(Command::decode(cmd).is_err());
    // With the bump (v6.6) the same call covers two pages, legally.
    let ops = tlb_inv_range_asid(ril, Granule::K4, 0x42, 0x7f00_0000_0000, 4096, false, true);
    let [dw0, dw1] = words(&ops)[0].expect("a command");
    let Ok(Command::TlbiNhVa { va, .. }) = Command::decode([dw0, dw1]) else {
        panic!("not a TLBI_NH_VA");
    };
    assert!(!va.is_reserved_combination());
}

#[test]
fn an_atc_span_is_the_smallest_aligned_power_of_two() {
    // Pages 7..10: 7 ^ 10 = 13, fls = 4: 64 KiB at 0.
    let c = atc_inv_cmd(&BOND, 0x7000, 0x4000);
    assert_eq!(c.encode(), [0x0000_0100_0000_5840, 0x4]);
    // Pages 8..11: 16 KiB at 0x8000.
    assert_eq!(atc_inv_cmd(&BOND, 0x8000, 0x4000).encode()[1], 0x8002);
}

#[test]
fn release_quiets_the_cd_then_invalidates_the_asid_and_the_whole_atc() {
    // arm_smmu_mm_release: the CD word 0 with EPD0 (bit 14) added,
    // CFGI_CD (0x05) for SID 0x100 SSID 5 with Leaf, NH_ASID (0x11) for
    // ASID 0x42, ATC_INV (0x40) with SSV and Size 52 at address 0; each
    // batch ends with a CMD_SYNC.
    let bond = SvaBond {
        cd: Some((0x8000, 0x0123_0000_0000_0010)),
        ..BOND
    };
    let ops = release(&bond);
    assert_eq!(
        ops[0],
        ReleaseOp::CdStore {
            pa: 0x8000,
            value: 0x0123_0000_0000_4010
        }
    );
    let cmds: Vec<SmmuOp> = ops[1..]
        .iter()
        .map(|o| match o {
            ReleaseOp::Smmu(s) => *s,
            ReleaseOp::CdStore { .. } => panic!("one CD store, first"),
        })
        .collect();
    assert_eq!(
        words(&cmds),
        vec![
            Some([0x0000_0100_0000_5005, 0x0000_0000_0000_0001]),
            None,
            Some([0x0042_0000_0000_0011, 0]),
            None,
            Some([0x0000_0100_0000_5840, 0x0000_0000_0000_0034]),
            None,
        ]
    );
    // Without a CD to quiet (none declared) and without ATS: only the
    // TLBI by ASID.
    let bare = SvaBond { ats: false, ..BOND };
    assert_eq!(
        release(&bare),
        vec![
            ReleaseOp::Smmu(SmmuOp::Cmd(tlbcheck_hw::smmu::cmd::Command::TlbiNhAsid {
                vmid: 0,
                asid: 0x42
            })),
            ReleaseOp::Smmu(SmmuOp::Sync),
        ]
    );
}

/// v6.5's `arm_smmu_mm_invalidate_range` hands (0, ULONG_MAX) to the
/// range loop as size ULONG_MAX, end ULONG_MAX. Without RIL, `iova`
/// steps a page at a time up to 2^64 - 4096, wraps to 0 and goes on;
/// with RIL, 52 bits of page count are consumed in 5-bit chunks
/// (11 commands), after which the count is 0 while `iova` = 2^64 - 4096
/// is still below `end`: the loop spins. Either way the CPU never
/// returns, and no ATC_INV follows.
#[test]
fn the_full_range_is_a_lockup_at_v6_5_and_a_tlbi_by_asid_at_v6_6() {
    let ril = SmmuFeatures {
        btm: false,
        ril: true,
        ats: true,
    };
    for feat in [PLAIN, ATS, ril] {
        assert_eq!(
            range_commands(feat, Granule::K4, 0, u64::MAX, false, false),
            None
        );
        let ops = invalidate(Version::Linux6_5, feat, Granule::K4, &BOND, 0, u64::MAX);
        assert_eq!(ops, vec![SmmuOp::Lockup], "{feat:?}");
        // v6.6 (38b14e2e3de9): size 0, CMD_TLBI_NH_ASID.
        let ops = invalidate(Version::Linux6_6, feat, Granule::K4, &BOND, 0, u64::MAX);
        assert_eq!(
            ops[0],
            SmmuOp::Cmd(Command::TlbiNhAsid {
                vmid: 0,
                asid: 0x42
            })
        );
    }
    // With BTM the TLBI is skipped and the ATC is invalidated whole:
    // pages 0 to 2^52 - 1 differ in 52 bits, Size = 52.
    let btm = SmmuFeatures {
        btm: true,
        ril: false,
        ats: true,
    };
    assert_eq!(
        words(&invalidate(
            Version::Linux6_5,
            btm,
            Granule::K4,
            &BOND,
            0,
            u64::MAX
        )),
        vec![Some([0x0000_0100_0000_5840, 52]), None]
    );
    // Page-aligned ranges end: one command per page without RIL; with
    // RIL one per 5-bit chunk of the page count (33 = 0b100001: two).
    assert_eq!(
        range_commands(PLAIN, Granule::K4, 0x1000, 3 * 4096, false, false),
        Some(3)
    );
    assert_eq!(
        range_commands(ril, Granule::K4, 0x1000, 33 * 4096, true, false),
        Some(2)
    );
    // A range past the last page wraps without RIL.
    assert_eq!(
        range_commands(PLAIN, Granule::K4, u64::MAX - 0x1fff, 0x3000, false, false),
        Some(0)
    );
    assert_eq!(
        range_commands(
            PLAIN,
            Granule::K4,
            0xffff_ffff_ffff_e000,
            0x1fff,
            false,
            false
        ),
        None
    );
    // A huge but finite loop is not expanded either.
    assert!(
        range_commands(PLAIN, Granule::K4, 0, 1 << 40, false, false) > Some(MAX_RANGE_COMMANDS)
    );
    assert_eq!(
        invalidate(Version::Linux6_5, PLAIN, Granule::K4, &BOND, 0, 1 << 40),
        vec![SmmuOp::Lockup]
    );
}

// 16K and 64K kernels: the notifier's granule is PAGE_SIZE, so range
// commands carry TG = 0b10 or 0b11 in dw1[11:10] and count 16K or 64K
// pages; the per-page loop steps by the page; ATC_INV still counts 4 KiB
// units (SMMUv3 4.4.1.1, 4.5.1).

const RIL_ATS: SmmuFeatures = SmmuFeatures {
    btm: false,
    ril: true,
    ats: true,
};

#[test]
fn one_16k_page_with_ril_is_a_bumped_tg_16k_range_and_a_16k_atc_span() {
    let ops = invalidate(
        Version::Linux6_6,
        RIL_ATS,
        Granule::K16,
        &BOND,
        0x7f00_0000_0000,
        0x7f00_0000_4000,
    );
    assert_eq!(
        words(&ops),
        vec![
            // One 16K page, non-leaf, bumped to 2: SCALE 1 (dw0[24:20]),
            // NUM 0; TG = 0b10 in dw1[11:10], TTL 0, Leaf 0.
            Some([0x0042_0000_0010_0012, 0x0000_7f00_0000_0800]),
            None,
            // 4 KiB units 0x7f0000000..0x7f0000003: Size 2 (16 KiB).
            Some([0x0000_0100_0000_5840, 0x0000_7f00_0000_0002]),
            None,
        ]
    );
}

#[test]
fn without_ril_a_16k_range_is_one_nh_va_per_16k_page() {
    let ops = tlb_inv_range_asid(PLAIN, Granule::K16, 0x42, 0x10_0000, 0xc000, false, true);
    assert_eq!(
        words(&ops),
        vec![
            Some([0x0042_0000_0000_0012, 0x10_0000]),
            Some([0x0042_0000_0000_0012, 0x10_4000]),
            Some([0x0042_0000_0000_0012, 0x10_8000]),
            None,
        ]
    );
    // A 1 MiB span: 64 commands at 16K, 16 at 64K.
    assert_eq!(
        range_commands(PLAIN, Granule::K16, 0, 1 << 20, false, false),
        Some(64)
    );
    assert_eq!(
        range_commands(PLAIN, Granule::K64, 0, 1 << 20, false, false),
        Some(16)
    );
}

#[test]
fn one_64k_page_without_ril_is_one_nh_va_and_a_64k_atc_span() {
    let ops = invalidate(
        Version::Linux6_6,
        ATS,
        Granule::K64,
        &BOND,
        0x7f00_0001_0000,
        0x7f00_0002_0000,
    );
    assert_eq!(
        words(&ops),
        vec![
            Some([0x0042_0000_0000_0012, 0x0000_7f00_0001_0000]),
            None,
            // 4 KiB units 0x7f0000010..0x7f000001f: Size 4 (64 KiB).
            Some([0x0000_0100_0000_5840, 0x0000_7f00_0001_0004]),
            None,
        ]
    );
}

#[test]
fn a_64k_range_with_ril_takes_5_bit_windows_of_64k_pages() {
    let ril = SmmuFeatures {
        btm: false,
        ril: true,
        ats: false,
    };
    // 33 pages non-leaf, bumped to 34 = 17 << 1: NUM 16, SCALE 1, TG 0b11.
    let ops = tlb_inv_range_asid(
        ril,
        Granule::K64,
        0x42,
        0x7f00_0000_0000,
        33 << 16,
        false,
        true,
    );
    assert_eq!(
        words(&ops),
        vec![Some([0x0042_0000_0011_0012, 0x0000_7f00_0000_0c00]), None]
    );
    // 1000 = 0b11_1110_1000 leaf pages: 29 << 3 (NUM 28, SCALE 3), then
    // 3 << 8 (NUM 2, SCALE 8) from 0x7f0000000000 + 232 * 64K; leaf TTL 3
    // in dw1[9:8], Leaf in dw1[0].
    let ops = tlb_inv_range_asid(
        ril,
        Granule::K64,
        0x42,
        0x7f00_0000_0000,
        1000 << 16,
        true,
        true,
    );
    assert_eq!(
        words(&ops),
        vec![
            Some([0x0042_0000_0031_c012, 0x0000_7f00_0000_0f01]),
            Some([0x0042_0000_0080_2012, 0x0000_7f00_00e8_0f01]),
            None,
        ]
    );
}

/// Every command of a 16K or 64K invalidation decodes as SMMUv3 defines
/// it, and its range (TG's granule, `(NUM+1) << SCALE` pages) starts where
/// the previous one ended and the last ends at or past the range's end.
#[test]
fn granule_range_commands_decode_and_tile_the_range() {
    let ril = SmmuFeatures {
        btm: false,
        ril: true,
        ats: false,
    };
    for granule in [Granule::K16, Granule::K64] {
        for pages in [1, 2, 33, 1000] {
            let start = 0x7f00_0000_0000;
            let size = pages << granule.shift();
            let mut next = start;
            for w in words(&tlb_inv_range_asid(
                ril, granule, 0x42, start, size, false, true,
            ))
            .into_iter()
            .flatten()
            {
                let Ok(Command::TlbiNhVa { asid: 0x42, va, .. }) = Command::decode(w) else {
                    panic!("not a valid TLBI_NH_VA: {w:x?}");
                };
                assert_eq!(va.granule(), Some(granule));
                let r = va.range_covered();
                assert_eq!(r.first, next);
                next = r.last + 1;
            }
            assert!(next >= start + size, "{granule:?} {pages} pages");
        }
    }
}
