//! Worked vectors. Every expected word is written from the SMMUv3 field
//! layouts (opcode dw0[7:0], NUM [16:12], SCALE [24:20], VMID [47:32],
//! ASID [63:48], SID [63:32], SSID [31:12], SSV [11]; Leaf dw1[0],
//! TTL [9:8], TG [11:10], Address [63:12], ATC Size [5:0]), not from
//! this code's output.

use super::*;
use crate::nested::VDevice;

/// CMD_SYNC, CS = SIG_SEV (0b10 << 12), MSH = 3 (<< 22), MSIAttr = 0xf (<< 24).
const SYNC: [u64; 2] = [0x0000_0000_0fc0_2046, 0];

fn host() -> HostSmmu {
    HostSmmu {
        ril: true,
        ats: true,
        granule: Granule::K4,
    }
}

/// VMID 5; vSID 1 -> pSID 0x100, vSID 2 -> pSID 0x200, both with ATS.
fn guest() -> Guest {
    Guest {
        vmid: 5,
        devices: vec![
            VDevice {
                vsid: 1,
                psid: 0x100,
                ats: true,
            },
            VDevice {
                vsid: 2,
                psid: 0x200,
                ats: true,
            },
        ],
    }
}

fn words(t: &Translation) -> Vec<[u64; 2]> {
    t.issued.iter().map(|c| c.words).collect()
}

fn run(v: Version, batch: &[[u64; 2]]) -> Translation {
    translate(v, &host(), &guest(), batch)
}

// NH_VA, ASID 0x42, a forged VMID 7, VA 0x7f1234567000, Leaf, TG = 0.
const NH_VA_VMID7: [u64; 2] = [0x0042_0007_0000_0012, 0x0000_7f12_3456_7001];
// NH_ALL with VMID 0.
const NH_ALL: [u64; 2] = [0x10, 0];
// NH_ASID, ASID 3.
const NH_ASID3: [u64; 2] = [0x0003_0000_0000_0011, 0];
// ATC_INV of everything (Size 52) for StreamIDs 0x100 and 0x200.
const ATC_ALL_100: [u64; 2] = [0x0000_0100_0000_0040, 0x34];
const ATC_ALL_200: [u64; 2] = [0x0000_0200_0000_0040, 0x34];
// CMD_PREFETCH_CONFIG, StreamID 1: outside the contract.
const PREFETCH: [u64; 2] = [0x0000_0001_0000_0001, 0];

#[test]
fn iommufd_overwrites_the_vmid() {
    let t = run(Version::IommufdVsmmu, &[NH_VA_VMID7]);
    assert_eq!(
        words(&t),
        vec![[0x0042_0005_0000_0012, 0x0000_7f12_3456_7001], SYNC]
    );
    assert_eq!((t.entry_num, t.error), (1, None));
}

#[test]
fn iommufd_turns_nsnh_all_into_nh_all_of_the_vmid() {
    let t = run(Version::IommufdVsmmu, &[[0x30, 0xdead_0000]]);
    assert_eq!(words(&t), vec![[0x0000_0005_0000_0010, 0], SYNC]);
}

#[test]
fn iommufd_maps_vsids_and_keeps_the_rest() {
    // CFGI_CD vSID 1, SSID 5, Leaf 0; ATC_INV vSID 1, SSV, SSID 5, Address
    // 0x8000, Size 2.
    let batch = [[0x0000_0001_0000_5005, 0], [0x0000_0001_0000_5840, 0x8002]];
    let t = run(Version::IommufdVsmmu, &batch);
    assert_eq!(
        words(&t),
        vec![
            [0x0000_0100_0000_5005, 0],
            [0x0000_0100_0000_5840, 0x8002],
            SYNC
        ]
    );
}

#[test]
fn iommufd_keeps_the_guest_range_fields() {
    // NH_VA ASID 1, TG 4K, NUM 0, SCALE 9, TTL 0, non-leaf at 0x40000000.
    let t = run(
        Version::IommufdVsmmu,
        &[[0x0001_0000_0090_0012, 0x0000_0000_4000_0400]],
    );
    assert_eq!(
        words(&t),
        vec![[0x0001_0005_0090_0012, 0x0000_0000_4000_0400], SYNC]
    );
}

#[test]
fn iommufd_unknown_vsid_drops_the_unissued_block() {
    // Entry 2: CFGI_CD_ALL of vSID 9, which has no vDEVICE.
    let batch = [NH_ALL, NH_ALL, [0x0000_0009_0000_0006, 0], NH_ALL];
    let t = run(Version::IommufdVsmmu, &batch);
    // arm_vsmmu_cache_invalidate returns before issuing entries 0 and 1,
    // yet entry_num says they were handled.
    assert!(t.issued.is_empty());
    assert_eq!(t.entry_num, 2);
    let e = t.error.unwrap();
    assert_eq!((e.index, e.errno, e.field), (2, -5, "StreamID"));
}

#[test]
fn iommufd_issues_63_and_a_sync() {
    let t = run(Version::IommufdVsmmu, &[NH_ASID3; 70]);
    let nh_asid = [0x0003_0005_0000_0011, 0];
    let mut want = vec![nh_asid; 63];
    want.push(SYNC);
    want.extend([nh_asid; 7]);
    want.push(SYNC);
    assert_eq!(words(&t), want);
    assert_eq!(t.entry_num, 70);
}

#[test]
fn iommufd_refused_opcode_after_a_full_block() {
    let mut batch = vec![NH_ALL; 65];
    batch[64] = PREFETCH;
    let t = run(Version::IommufdVsmmu, &batch);
    // Entries 0..63 issued with their CMD_SYNC; entry 63 converted, dropped.
    assert_eq!(t.issued.len(), 64);
    assert!(t.issued[63].is_sync());
    assert_eq!(t.entry_num, 64);
    assert_eq!(t.error.unwrap().field, "opcode");
    // strict issues exactly what it reports handled.
    let s = run(Version::Strict, &batch);
    assert_eq!(s.issued.len(), 66);
    assert_eq!(s.issued[64].entry, Some(63));
    assert_eq!(s.entry_num, 64);
}

#[test]
fn iommufd_passes_an_illegal_range_to_the_hardware() {
    // NH_VA TG 4K, NUM 0, SCALE 0, TTL 0: Reserved (SMMUv3 4.4.1.1).
    let bad = [0x0001_0000_0000_0012, 0x0000_0000_0000_0400];
    let t = run(Version::IommufdVsmmu, &[NH_ALL, bad]);
    assert_eq!(t.issued.len(), 3);
    assert!(t.issued[0].hw_error.is_none());
    assert!(matches!(
        t.issued[1].hw_error,
        Some(CmdError::ReservedRange { tg: 1, ttl: 0, .. })
    ));
    assert_eq!((t.entry_num, t.error), (2, None));
}

#[test]
fn strict_refuses_what_the_hardware_refuses() {
    let cases: [([u64; 2], &str); 5] = [
        // TG 4K, NUM = SCALE = TTL = 0.
        ([0x0001_0000_0000_0012, 0x400], "TG/NUM/SCALE/TTL"),
        // TG 0 with TTL 0b01 (dw1[9:8]).
        ([0x0001_0000_0000_0012, 0x100], "TTL"),
        // ATC_INV vSID 1, Size 53.
        ([0x0000_0001_0000_0040, 53], "Size"),
        // NH_VA with dw0[10] set.
        ([0x0001_0000_0000_0412, 0], "RES0 bits of dw0"),
        // TG 4K, TTL 2 (a 2 MiB block), NUM 1, Address 0x1000.
        ([0x0001_0000_0000_1012, 0x1000 | 0x400 | 0x200], "Address"),
    ];
    for (bad, field) in cases {
        let t = run(Version::Strict, &[NH_ALL, bad, NH_ALL]);
        let e = t.error.clone().expect(field);
        assert_eq!((e.index, e.field), (1, field), "{}", e.reason);
        assert_eq!(t.entry_num, 1);
        assert_eq!(words(&t), vec![[0x0000_0005_0000_0010, 0], SYNC]);
    }
}

#[test]
fn strict_refuses_a_range_without_ril() {
    let h = HostSmmu {
        ril: false,
        ..host()
    };
    // NH_VA TG 4K, NUM 1, TTL 3.
    let t = translate(
        Version::Strict,
        &h,
        &guest(),
        &[[0x0001_0000_0000_1012, 0x700]],
    );
    assert_eq!(t.error.unwrap().field, "TG");
    assert!(t.issued.is_empty());
}

#[test]
fn v1_drops_tg0() {
    let t = run(Version::Nested2023V1, &[NH_VA_VMID7]);
    assert!(t.issued.is_empty());
    assert_eq!((t.entry_num, t.error), (1, None));
}

#[test]
fn v1_rebuilds_a_16k_range_in_host_pages() {
    // NH_VA TG 16K (0b10 << 10), NUM 0, SCALE 1: 2 x 16 KiB at 0. On a 4K
    // host: num_pages = 32K >> 12 = 8, scale = ffs(8) = 3, num = 1: NUM 0,
    // SCALE 3, TG 4K; TTL = 4 - ((14 - 3) / (12 - 3)) = 3. Then the ATC
    // for 32 KiB at 0: pages 0..7, fls(0 ^ 7) = 3: Size 3 at 0.
    let t = run(Version::Nested2023V1, &[[0x0001_0000_0010_0012, 0x800]]);
    let atc = |sid: u64| [sid << 32 | 0x40, 3];
    assert_eq!(
        words(&t),
        vec![
            [0x0001_0005_0030_0012, 0x700],
            SYNC,
            atc(0x100),
            atc(0x200),
            SYNC
        ]
    );
}

#[test]
fn v1_assumes_ttl_from_the_granule() {
    // The guest's non-leaf 2 MiB range with no TTL hint ...
    let t = run(
        Version::Nested2023V1,
        &[[0x0001_0000_0090_0012, 0x0000_0000_4000_0400]],
    );
    // ... becomes TTL = 4 - ((12 - 3) / (12 - 3)) = 3: dw1 0x700; then
    // arm_smmu_atc_inv_domain(domain, 0, 0x40000000, 2 MiB): pages
    // 0x40000..0x401ff, xor 0x1ff, fls 9: Size 9 at 0x40000000, no SSV.
    assert_eq!(
        words(&t),
        vec![
            [0x0001_0005_0090_0012, 0x0000_0000_4000_0700],
            SYNC,
            [0x0000_0100_0000_0040, 0x4000_0009],
            [0x0000_0200_0000_0040, 0x4000_0009],
            SYNC
        ]
    );
}

#[test]
fn v1_splits_a_range_by_its_low_bits() {
    // NUM 2 (3 pages), SCALE 2: 12 pages = 0b1100 at 0x100000, leaf.
    // scale = ffs(12) = 2, num = 3: NUM 2, SCALE 2, all 12 in one command.
    let t = run(
        Version::Nested2023V1,
        &[[0x0001_0000_0020_2012, 0x0010_0401]],
    );
    // 48 KiB at 0x100000: pages 0x100..0x10b, xor 0xb, fls 4: Size 4.
    assert_eq!(
        words(&t),
        vec![
            [0x0001_0005_0020_2012, 0x0000_0000_0010_0701],
            SYNC,
            [0x0000_0100_0000_0040, 0x0010_0004],
            [0x0000_0200_0000_0040, 0x0010_0004],
            SYNC
        ]
    );
}

#[test]
fn v1_forces_leaf_on_every_device_of_the_domain() {
    // CFGI_CD vSID 1, SSID 5, Leaf 0.
    let t = run(Version::Nested2023V1, &[[0x0000_0001_0000_5005, 0]]);
    assert_eq!(
        words(&t),
        vec![[0x0000_0100_0000_5005, 1], [0x0000_0200_0000_5005, 1], SYNC]
    );
}

#[test]
fn v1_multiplies_atc_inv() {
    let t = run(Version::Nested2023V1, &[[0x0000_0001_0000_5840, 0x8002]]);
    assert_eq!(
        words(&t),
        vec![
            [0x0000_0100_0000_5840, 0x8002],
            [0x0000_0200_0000_5840, 0x8002],
            SYNC
        ]
    );
}

#[test]
fn v1_follows_a_whole_tlbi_with_a_whole_atc_inv() {
    // NH_ASID 3 with the domain's VMID 5, then ATC_INV of everything (Size
    // 52 = 0x34, no SSV) on each ATS device.
    let t = run(Version::Nested2023V1, &[NH_ASID3]);
    assert_eq!(
        words(&t),
        vec![
            [0x0003_0005_0000_0011, 0],
            SYNC,
            ATC_ALL_100,
            ATC_ALL_200,
            SYNC
        ]
    );
}

#[test]
fn v1_ignores_nsnh_all_and_unknown_opcodes() {
    // NSNH_ALL, CFGI_STE vSID 1, PREFETCH_CONFIG.
    let t = run(
        Version::Nested2023V1,
        &[[0x30, 0], [0x0000_0001_0000_0003, 0], PREFETCH],
    );
    assert!(t.issued.is_empty());
    assert_eq!(t.entry_num, 3);
}

#[test]
fn v1_atc_span_covers_the_range() {
    // 16 KiB at 0x8000: pages 8..11, 8 ^ 11 = 3, fls 2: (0x8000, 2).
    assert_eq!(atc_inv_to_cmd(0x8000, 0x4000), (0x8000, 2));
    // One page at 0x7000.
    assert_eq!(atc_inv_to_cmd(0x7000, 0x1000), (0x7000, 0));
    // 16 KiB at 0x7000: pages 7..10, 7 ^ 10 = 13, fls 4: 64 KiB at 0.
    assert_eq!(atc_inv_to_cmd(0x7000, 0x4000), (0, 4));
    assert_eq!(atc_inv_to_cmd(0x1234_5000, 0), (0, 52));
}

#[test]
fn expectation_is_the_command_in_physical_terms() {
    let (h, g) = (host(), guest());
    let enc = |c: Vec<Command>| c.iter().map(Command::encode).collect::<Vec<_>>();
    assert_eq!(
        enc(expected(&h, &g, [0x30, 0])),
        vec![[0x0000_0005_0000_0010, 0]]
    );
    assert_eq!(
        enc(expected(&h, &g, [0x0000_0002_0000_5005, 0])),
        vec![[0x0000_0200_0000_5005, 0]]
    );
    // CFGI_STE vSID 1, Leaf 1: the STE of pSID 0x100.
    assert_eq!(
        enc(expected(&h, &g, [0x0000_0001_0000_0003, 1])),
        vec![[0x0000_0100_0000_0003, 1]]
    );
    // No device behind vSID 9; S12_VMALL is not a stage-1 SMMU's; an
    // illegal range removes nothing.
    assert!(expected(&h, &g, [0x0000_0009_0000_0006, 0]).is_empty());
    assert!(expected(&h, &g, [0x28, 0]).is_empty());
    assert!(expected(&h, &g, [0x0001_0000_0000_0012, 0x400]).is_empty());
    // A VMID the guest wrote (RES0 on its stage-1-only SMMU) promises
    // nothing (SMMUv3 4.4.2); with VMID 0 the command is the guest's VMID's.
    assert!(expected(&h, &g, NH_VA_VMID7).is_empty());
    assert_eq!(
        enc(expected(
            &h,
            &g,
            [0x0042_0000_0000_0012, 0x0000_7f12_3456_7001]
        )),
        vec![[0x0042_0005_0000_0012, 0x0000_7f12_3456_7001]]
    );
}
