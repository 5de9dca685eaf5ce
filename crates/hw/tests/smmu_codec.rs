//! Bit-exact SMMUv3 codec tests: the worked encodings of
//! linux-reference.md section C.8, hand-computed vectors from the SMMUv3
//! field tables, property tests and decode-error tests.

use proptest::prelude::*;
use tlbcheck_hw::addr::{AddrRange, Granule};
use tlbcheck_hw::smmu::cd::{BadCd, Cd, L1Cd};
use tlbcheck_hw::smmu::cmd::{CmdError, Command, IllegalKind, Opcode, PriResp, SyncCs, TlbiAddr};
use tlbcheck_hw::smmu::event::{
    Access, EventBody, EventError, EventKind, EventRecord, FaultClass, FaultInfo, PagePerms,
};
use tlbcheck_hw::smmu::ste::{BadSte, L1Std, S1Dss, S1Fmt, Ste, StreamConfig};

/// Checks both directions: encode(cmd) == words and decode(words) == cmd.
fn both_ways(cmd: Command, words: [u64; 2]) {
    assert_eq!(
        cmd.encode(),
        words,
        "encode {cmd:?}: got {:#018x?}",
        cmd.encode()
    );
    assert_eq!(Command::decode(words), Ok(cmd), "decode {words:#018x?}");
}

fn nh_va(vmid: u16, asid: u16, va: TlbiAddr) -> Command {
    Command::TlbiNhVa { vmid, asid, va }
}

// ---------------------------------------------------------------------------
// linux-reference.md C.8, #1-#16
// ---------------------------------------------------------------------------

#[test]
fn c8_01_nh_va_leaf() {
    both_ways(
        nh_va(3, 0x42, TlbiAddr::single(0x7f12_3456_7000, true)),
        [0x0042_0003_0000_0012, 0x0000_7f12_3456_7001],
    );
}

#[test]
fn c8_02_03_ril_2mib() {
    let pages = nh_va(
        0,
        1,
        TlbiAddr::range(0x1000_0000, true, Granule::K4, 3, 0, 9),
    );
    both_ways(pages, [0x0001_0000_0090_0012, 0x0000_0000_1000_0701]);
    assert_eq!(
        pages.invalidated_range(),
        Some(AddrRange::from_len(0x1000_0000, 2 << 20))
    );
    let block = nh_va(
        0,
        1,
        TlbiAddr::range(0x1000_0000, true, Granule::K4, 2, 0, 9),
    );
    both_ways(block, [0x0001_0000_0090_0012, 0x0000_0000_1000_0601]);
}

#[test]
fn c8_04_ril_1000_pages() {
    let a = nh_va(
        0,
        0x42,
        TlbiAddr::range(0x2000_0000, true, Granule::K4, 3, 28, 3),
    );
    both_ways(a, [0x0042_0000_0031_c012, 0x0000_0000_2000_0701]);
    let b = nh_va(
        0,
        0x42,
        TlbiAddr::range(0x200e_8000, true, Granule::K4, 3, 2, 8),
    );
    both_ways(b, [0x0042_0000_0080_2012, 0x0000_0000_200e_8701]);
    // 232 + 768 = 1000 pages, back to back.
    let ra = a.invalidated_range().unwrap();
    let rb = b.invalidated_range().unwrap();
    assert_eq!(ra.last + 1, rb.first);
    assert_eq!(rb.last + 1 - ra.first, 1000 * 4096);
}

#[test]
fn c8_05_06_non_leaf_bumped() {
    both_ways(
        nh_va(
            0,
            0x42,
            TlbiAddr::range(0x7f00_0000_0000, false, Granule::K4, 0, 16, 1),
        ),
        [0x0042_0000_0011_0012, 0x0000_7f00_0000_0400],
    );
    both_ways(
        nh_va(
            0,
            0x42,
            TlbiAddr::range(0x7f00_0000_0000, false, Granule::K4, 0, 0, 1),
        ),
        [0x0042_0000_0010_0012, 0x0000_7f00_0000_0400],
    );
    both_ways(
        nh_va(
            0,
            0x42,
            TlbiAddr::range(0x7f00_0000_2000, false, Granule::K4, 0, 0, 8),
        ),
        [0x0042_0000_0080_0012, 0x0000_7f00_0000_2400],
    );
    // The pre-eb6c97647be2 tail chunk NUM = SCALE = TTL = 0: CERROR_ILL.
    let bad = [0x0042_0000_0000_0012, 0x0000_7f00_0002_0400];
    let e = Command::decode(bad).unwrap_err();
    assert!(
        matches!(e, CmdError::ReservedRange { tg: 1, ttl: 0, .. }),
        "{e}"
    );
    assert!(e.must_raise_cerror_ill());
}

#[test]
fn c8_07_08_s2_ipa() {
    both_ways(
        Command::TlbiS2Ipa {
            vmid: 7,
            ipa: TlbiAddr::range(0x8000_0000, true, Granule::K4, 3, 0, 0),
        },
        [0x0000_0007_0000_002a, 0x0000_0000_8000_0701],
    );
    let c = Command::TlbiS2Ipa {
        vmid: 7,
        ipa: TlbiAddr::range(0x4000_0000, true, Granule::K4, 2, 0, 18),
    };
    both_ways(c, [0x0000_0007_0120_002a, 0x0000_0000_4000_0601]);
    assert_eq!(
        c.invalidated_range(),
        Some(AddrRange::from_len(0x4000_0000, 1 << 30))
    );
}

#[test]
fn c8_09_asid_vmid_alls() {
    both_ways(
        Command::TlbiNhAsid {
            vmid: 0,
            asid: 0x42,
        },
        [0x0042_0000_0000_0011, 0],
    );
    both_ways(Command::TlbiNhAll { vmid: 9 }, [0x0000_0009_0000_0010, 0]);
    both_ways(
        Command::TlbiS12Vmall { vmid: 7 },
        [0x0000_0007_0000_0028, 0],
    );
}

#[test]
fn c8_10_11_12_atc_inv() {
    let c10 = Command::AtcInv {
        sid: 0x100,
        ssv: true,
        ssid: 5,
        global: false,
        addr: 0,
        size: 4,
    };
    both_ways(c10, [0x0000_0100_0000_5840, 0x0000_0000_0000_0004]);
    assert_eq!(
        c10.invalidated_range(),
        Some(AddrRange::from_len(0, 0x1_0000))
    );
    let c11 = Command::AtcInv {
        sid: 0x100,
        ssv: true,
        ssid: 5,
        global: false,
        addr: 0x8000,
        size: 2,
    };
    both_ways(c11, [0x0000_0100_0000_5840, 0x0000_0000_0000_8002]);
    assert_eq!(
        c11.invalidated_range(),
        Some(AddrRange::from_len(0x8000, 0x4000))
    );
    let c12 = Command::AtcInv {
        sid: 0x100,
        ssv: false,
        ssid: 0,
        global: false,
        addr: 0,
        size: 52,
    };
    both_ways(c12, [0x0000_0100_0000_0040, 0x0000_0000_0000_0034]);
    assert_eq!(c12.invalidated_range(), Some(AddrRange::ALL));
}

#[test]
fn c8_13_cfgi() {
    both_ways(
        Command::CfgiCd {
            sid: 0x100,
            ssid: 5,
            leaf: true,
        },
        [0x0000_0100_0000_5005, 1],
    );
    both_ways(
        Command::CfgiSte {
            sid: 0x100,
            leaf: true,
        },
        [0x0000_0100_0000_0003, 1],
    );
    both_ways(Command::cfgi_all(), [0x0000_0000_0000_0004, 0x1f]);
    assert_eq!(Command::cfgi_all().name(), "CMD_CFGI_ALL");
}

#[test]
fn c8_14_sync() {
    both_ways(
        Command::Sync {
            cs: SyncCs::Irq,
            msh: 3,
            msiattr: 0xf,
            msidata: 0,
            msiaddr: 0x8_8000_1230,
        },
        [0x0000_0000_0fc0_1046, 0x0000_0008_8000_1230],
    );
    both_ways(
        Command::Sync {
            cs: SyncCs::Sev,
            msh: 3,
            msiattr: 0xf,
            msidata: 0,
            msiaddr: 0,
        },
        [0x0000_0000_0fc0_2046, 0],
    );
}

#[test]
fn c8_15_16_pri_resp_resume() {
    both_ways(
        Command::PriResp {
            sid: 0x100,
            ssv: true,
            ssid: 5,
            grpid: 3,
            resp: PriResp::Success,
        },
        [0x0000_0100_0000_5841, 0x0000_0000_0000_2003],
    );
    both_ways(
        Command::Resume {
            sid: 0x100,
            stag: 0x2a,
            retry: true,
            abort: false,
        },
        [0x0000_0100_0000_1044, 0x0000_0000_0000_002a],
    );
}

// ---------------------------------------------------------------------------
// Hand-computed vectors (bit arithmetic from the SMMUv3 field tables)
// ---------------------------------------------------------------------------

/// EL2_VA (SMMUv3 4.4.2.8): ASID 7, VA 0xffff800012345000, Leaf, TG 4K,
/// TTL 3, NUM 1, SCALE 2.
/// dw0 = 0x22 | NUM 1<<12 (0x1000) | SCALE 2<<20 (0x20_0000) | ASID 7<<48
///     = 0x0007_0000_0020_1022.
/// dw1 = VA | TG 1<<10 (0x400) | TTL 3<<8 (0x300) | Leaf 1 = 0xffff_8000_1234_5701.
/// Range: (1+1) * 2^2 = 8 pages of 4K = 0x8000 bytes.
#[test]
fn hand_el2_va() {
    let c = Command::TlbiEl2Va {
        asid: 7,
        va: TlbiAddr::range(0xffff_8000_1234_5000, true, Granule::K4, 3, 1, 2),
    };
    both_ways(c, [0x0007_0000_0020_1022, 0xffff_8000_1234_5701]);
    assert_eq!(
        c.invalidated_range(),
        Some(AddrRange {
            first: 0xffff_8000_1234_5000,
            last: 0xffff_8000_1234_cfff
        })
    );
}

/// EL2_ALL = opcode only; EL2_ASID 0xbeef: dw0 = 0xbeef<<48 | 0x21.
#[test]
fn hand_el2_all_asid() {
    both_ways(Command::TlbiEl2All, [0x20, 0]);
    both_ways(
        Command::TlbiEl2Asid { asid: 0xbeef },
        [0xbeef_0000_0000_0021, 0],
    );
}

/// EL2_VAA, 64K, TTL 2 (L2 block), NUM = SCALE = 0 (legal: TTL != 0):
/// dw0 = 0x23; dw1 = 0x4000_0000 | TG 3<<10 (0xc00) | TTL 2<<8 (0x200) = 0x4000_0e00.
/// Range: one 64 KiB granule.
#[test]
fn hand_el2_vaa_64k() {
    let c = Command::TlbiEl2Vaa {
        va: TlbiAddr::range(0x4000_0000, false, Granule::K64, 2, 0, 0),
    };
    both_ways(c, [0x23, 0x4000_0e00]);
    assert_eq!(
        c.invalidated_range(),
        Some(AddrRange::from_len(0x4000_0000, 0x1_0000))
    );
}

/// S12_VMALL VMID 0xabcd: dw0 = 0xabcd<<32 | 0x28; NSNH_ALL = 0x30.
#[test]
fn hand_s12_vmall_nsnh_all() {
    both_ways(
        Command::TlbiS12Vmall { vmid: 0xabcd },
        [0x0000_abcd_0000_0028, 0],
    );
    both_ways(Command::TlbiNsnhAll, [0x30, 0]);
}

/// CFGI_STE_RANGE SID 0x1234, Range 7 (256 STEs): dw0 = 0x1234<<32 | 4; dw1 = 7.
/// STALL_TERM SID 0x42: dw0 = 0x42<<32 | 0x45.
#[test]
fn hand_cfgi_ste_range_stall_term() {
    let c = Command::CfgiSteRange {
        sid: 0x1234,
        range: 7,
    };
    both_ways(c, [0x0000_1234_0000_0004, 7]);
    assert_eq!(c.name(), "CMD_CFGI_STE_RANGE");
    both_ways(Command::StallTerm { sid: 0x42 }, [0x0000_0042_0000_0045, 0]);
}

/// PREFETCH_CONFIG SID 0x10, SSV, SSID 3:
/// dw0 = 0x10<<32 | 3<<12 (0x3000) | SSV 1<<11 (0x800) | 0x01 = 0x0000_0010_0000_3801.
/// PREFETCH_ADDR SID 0x10, Addr 0x7f00_0000_0000, Size 4:
/// dw0 = 0x10<<32 | 0x02; dw1 = Addr | 4.
#[test]
fn hand_prefetch() {
    both_ways(
        Command::PrefetchConfig {
            sid: 0x10,
            ssv: true,
            ssid: 3,
        },
        [0x0000_0010_0000_3801, 0],
    );
    both_ways(
        Command::PrefetchAddr {
            sid: 0x10,
            ssv: false,
            ssid: 0,
            addr: 0x7f00_0000_0000,
            size: 4,
        },
        [0x0000_0010_0000_0002, 0x0000_7f00_0000_0004],
    );
}

/// RESUME terminate-with-abort, SID 5, STAG 7: Ab = 1<<13 (0x2000), Ac = 0.
#[test]
fn hand_resume_abort() {
    let c = Command::Resume {
        sid: 5,
        stag: 7,
        retry: false,
        abort: true,
    };
    both_ways(c, [0x0000_0005_0000_2044, 7]);
    assert_eq!(
        c.resume_effect(),
        Some(tlbcheck_hw::smmu::cmd::ResumeEffect::TerminateAbort)
    );
    // Ac = Ab = 1 (Linux "RESP = 3") is a retry: Ab is IGNORED (SMMUv3 4.7.1).
    let both = Command::decode([0x0000_0005_0000_3044, 7]).unwrap();
    assert_eq!(
        both.resume_effect(),
        Some(tlbcheck_hw::smmu::cmd::ResumeEffect::Retry)
    );
}

/// 16K with TTL = 0b01 is treated as TTL = 0b00 (DS = 0), so with NUM = SCALE
/// = 0 it is the Reserved combination; with NUM = 1 it is a 2-granule range.
/// dw0 = VMID 1<<32 | 0x13; dw1 = 0x8000_0000 | TG 2<<10 (0x800) | TTL 1<<8 (0x100).
#[test]
fn hand_nh_vaa_16k_ttl1() {
    let e = Command::decode([0x0000_0001_0000_0013, 0x8000_0900]).unwrap_err();
    assert!(
        matches!(e, CmdError::ReservedRange { tg: 2, ttl: 1, .. }),
        "{e}"
    );
    let c = Command::decode([0x0000_0001_0000_1013, 0x8000_0900]).unwrap();
    let va = *c.tlbi_addr().unwrap();
    assert_eq!(va.effective_ttl(), 0);
    assert_eq!(va.level_hint(), None);
    assert_eq!(
        c.invalidated_range(),
        Some(AddrRange::from_len(0x8000_0000, 2 * 0x4000))
    );
}

/// F_TRANSLATION (SMMUv3 7.3.13), SID 0x100, SSV, SSID 5, STAG 0x12, Stall,
/// read, privileged, stage 2, CLASS IN:
/// dw0 = 0x10 | SSV 0x800 | 5<<12 | 0x100<<32 = 0x0000_0100_0000_5810.
/// dw1 = STAG 0x12 | Stall 1<<31 | PnU 1<<33 | RnW 1<<35 | S2 1<<39 | CLASS 2<<40
///     = 0x12 + 0x8000_0000 + 0x2_0000_0000 + 0x8_0000_0000 + 0x80_0000_0000
///       + 0x200_0000_0000 = 0x0000_028a_8000_0012.
#[test]
fn hand_event_f_translation() {
    let rec = EventRecord {
        sid: 0x100,
        ssv: true,
        ssid: 5,
        body: EventBody::Translation(FaultInfo {
            stag: 0x12,
            stall: true,
            access: Access {
                read: true,
                instruction: false,
                privileged: true,
            },
            s2: true,
            class: FaultClass::Input,
            tt_read: false,
            input_addr: 0x7f12_3456_7890,
            ipa: 0x8_1234_5000,
        }),
    };
    let words = [
        0x0000_0100_0000_5810,
        0x0000_028a_8000_0012,
        0x0000_7f12_3456_7890,
        0x0000_0008_1234_5000,
    ];
    assert_eq!(rec.encode(), words);
    assert_eq!(EventRecord::decode(words), Ok(rec));
}

/// E_PAGE_REQUEST (SMMUv3 7.3.19), SID 0x200, SSV, SSID 0x1f, Span 3,
/// pR + uR + uW, InputAddr 0x5555_5000:
/// dw0 = 0x24 | 0x800 | 0x1f<<12 (0x1f000) | 0x200<<32 = 0x0000_0200_0001_f824.
/// dw1 = uW 1<<34 | uR 1<<35 | pR 1<<39 | Span 3<<44 = 0x0000_308c_0000_0000.
#[test]
fn hand_event_page_request() {
    let rec = EventRecord {
        sid: 0x200,
        ssv: true,
        ssid: 0x1f,
        body: EventBody::PageRequest {
            span: 3,
            perms: PagePerms {
                priv_read: true,
                user_read: true,
                user_write: true,
                ..PagePerms::default()
            },
            input_addr: 0x5555_5000,
        },
    };
    let words = [0x0000_0200_0001_f824, 0x0000_308c_0000_0000, 0x5555_5000, 0];
    assert_eq!(rec.encode(), words);
    assert_eq!(EventRecord::decode(words), Ok(rec));
}

/// C_BAD_SUBSTREAMID (no SSV): dw0 = 0x08 | 0x99<<12 | 7<<32.
/// F_STE_FETCH, Reason 0xabc, FetchAddr 0x8000_0040 in dw3.
#[test]
fn hand_event_config_records() {
    let bad = EventRecord {
        sid: 7,
        ssv: true,
        ssid: 0x99,
        body: EventBody::BadSubstreamId,
    };
    assert_eq!(bad.encode(), [0x0000_0007_0009_9008, 0, 0, 0]);
    assert_eq!(EventRecord::decode(bad.encode()), Ok(bad));
    let fetch = EventRecord {
        sid: 3,
        ssv: false,
        ssid: 0,
        body: EventBody::SteFetch {
            reason: 0xabc,
            fetch_addr: 0x8000_0040,
        },
    };
    let words = [0x0000_0003_0000_0003, 0xabc, 0, 0x8000_0040];
    assert_eq!(fetch.encode(), words);
    assert_eq!(EventRecord::decode(words), Ok(fetch));
}

/// Stage-2 STE (SMMUv3 5.2): VMID 7, 4K, T0SZ 16, SL0 2 (level 0), S2PS 48,
/// S2AA64, S2R, S2TTB 0x8_0000_0000.
/// w0 = V 1 | Config 0b110<<1 = 0xd.
/// w2 = VMID 7 | T0SZ 16<<32 | SL0 2<<38 | TG 0<<46 | PS 5<<48 | AA64 1<<51 | S2R 1<<58
///    = 0x0400_0000_0000_0000 + 0x8_0000_0000_0000 + 0x5_0000_0000_0000
///      + 0x80_0000_0000 + 0x10_0000_0000 + 7 = 0x040d_0090_0000_0007.
/// w3 = S2TTB[51:4] in place = 0x8_0000_0000.
#[test]
fn hand_ste_stage2() {
    let ste = Ste::stage2(7, 0x8_0000_0000, Granule::K4);
    let words = [0xd, 0, 0x040d_0090_0000_0007, 0x8_0000_0000, 0, 0, 0, 0];
    assert_eq!(ste.encode(), words);
    assert_eq!(Ste::decode(&words), Ok(ste));
    for g in Granule::ALL {
        let s = Ste::stage2(1, 0x1000_0000, g);
        assert_eq!(Ste::decode(&s.encode()), Ok(s), "{g}");
    }
}

/// Stage-1 STE: S1ContextPtr 0x1234_5600, S1CDMax 3, S1DSS 0b10, S1STALLD,
/// EATS 0b01.
/// w0 = V | Config 0b101<<1 (0xa) | ptr | S1CDMax 3<<59 = 0x1800_0000_1234_560b.
/// w1 = S1DSS 2 | S1STALLD 1<<27 | EATS 1<<28 = 0x1800_0002.
#[test]
fn hand_ste_stage1() {
    let mut ste = Ste::stage1(0x1234_5600);
    ste.s1_cd_max = 3;
    ste.s1_dss = S1Dss::Ssid0;
    ste.s1_stalld = true;
    ste.eats = 1;
    let words = [0x1800_0000_1234_560b, 0x1800_0002, 0, 0, 0, 0, 0, 0];
    assert_eq!(ste.encode(), words);
    assert_eq!(Ste::decode(&words), Ok(ste));
    assert_eq!(ste.config, StreamConfig::S1Translate);
    assert_eq!(ste.s1_fmt, S1Fmt::Linear);
}

/// CD (SMMUv3 5.4): ASID 0x42, 4K TTB0 at 0x8000_1000, T0SZ 16, EPD1,
/// TG1 = 0b10 (4K), IPS 48, AA64, R, A.
/// w0 = T0SZ 0x10 | TG1 2<<22 (0x80_0000) | EPD1 1<<30 | V 1<<31 | IPS 5<<32
///      | AA64 1<<41 | R 1<<45 | A 1<<46 | ASID 0x42<<48
///    = 0x0042_6205_c080_0010.
/// w1 = TTB0 = 0x8000_1000.
#[test]
fn hand_cd() {
    let cd = Cd::new(0x42, 0x8000_1000, Granule::K4);
    let words = [0x0042_6205_c080_0010, 0x8000_1000, 0, 0, 0, 0, 0, 0];
    assert_eq!(cd.encode(), words);
    assert_eq!(Cd::decode(&words), Ok(cd));
    for g in Granule::ALL {
        let c = Cd::new(1, 0x4000_0000, g);
        assert_eq!(Cd::decode(&c.encode()), Ok(c), "{g}");
    }
}

/// L1STD Span 9 (256 STEs) at 0x9000_0000: 9 | ptr. L1CD V at 0x1_2345_6000.
#[test]
fn hand_l1_descriptors() {
    let d = L1Std {
        span: 9,
        l2ptr: 0x9000_0000,
    };
    assert_eq!(d.encode(), 0x9000_0009);
    assert_eq!(L1Std::decode(0x9000_0009), Ok(d));
    assert_eq!(d.l2_entries(), Some(256));
    assert!(L1Std::decode(0x20).is_err());
    let c = L1Cd {
        valid: true,
        l2ptr: 0x1_2345_6000,
    };
    assert_eq!(c.encode(), 0x1_2345_6001);
    assert_eq!(L1Cd::decode(0x1_2345_6001), Ok(c));
    assert!(L1Cd::decode(0x1_2345_6002).is_err());
}

// ---------------------------------------------------------------------------
// Decode errors name the field and the value
// ---------------------------------------------------------------------------

#[test]
fn errors_name_field_and_value() {
    let e = Command::decode([0x0000_0100_0000_0041, 0x3000]).unwrap_err();
    assert_eq!(e.field(), Some("Resp"));
    assert!(e.to_string().contains("Resp = 0x3"), "{e}");
    assert!(e.must_raise_cerror_ill());

    let e = Command::decode([0x3046, 0]).unwrap_err();
    assert_eq!(e.field(), Some("CS"));
    assert!(e.to_string().contains("CS = 0x3"), "{e}");

    let e = Command::decode([0x10, 1]).unwrap_err();
    assert_eq!(
        e,
        CmdError::Res0Bits {
            command: "CMD_TLBI_NH_ALL",
            word: 1,
            bits: 1
        }
    );
    assert_eq!(e.illegal_kind(), IllegalKind::Permitted);
    assert_eq!(
        Command::decode_permissive([0x10, 1]),
        Ok(Command::TlbiNhAll { vmid: 0 })
    );

    // SCALE bit 25 is RES0 with DS = 0.
    let e = Command::decode([(1 << 25) | 0x12, 0x401]).unwrap_err();
    assert!(
        matches!(e, CmdError::Res0Bits { word: 0, bits, .. } if bits == 1 << 25),
        "{e}"
    );

    // TTL with TG = 0 is RES0.
    let e = Command::decode([0x12, 0x301]).unwrap_err();
    assert_eq!(e.field(), Some("TTL"));

    let e = Command::decode([0x403, 0]).unwrap_err();
    assert_eq!(
        e,
        CmdError::SsecSet {
            command: "CMD_CFGI_STE"
        }
    );

    let e = Command::decode([0x18, 0]).unwrap_err();
    assert!(
        matches!(e, CmdError::NotAccepted { opcode: 0x18, .. }),
        "{e}"
    );

    let e = Command::decode([0x40, 53]).unwrap_err();
    assert_eq!(e, CmdError::AtcSizeTooLarge { size: 53 });
    assert!(!e.must_raise_cerror_ill());

    let e = EventRecord::decode([0x99, 0, 0, 0]).unwrap_err();
    assert_eq!(e, EventError::UnknownId { id: 0x99 });
    let e = EventRecord::decode([0x10, 3 << 40, 0, 0]).unwrap_err();
    assert_eq!(
        e,
        EventError::ReservedValue {
            event: "F_TRANSLATION",
            field: "CLASS",
            value: 3
        }
    );
    let e = EventRecord::decode([0x06 | (1 << 11), 0, 0, 0]).unwrap_err();
    assert!(matches!(e, EventError::Res0Bits { word: 0, .. }), "{e}");
}

#[test]
fn bad_ste_and_cd_name_the_field() {
    assert_eq!(Ste::decode(&Ste::INVALID), Err(BadSte::NotValid));
    // Reserved Config values behave as abort: valid, not C_BAD_STE.
    let s = Ste::decode(&[0b011, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    assert!(s.config.aborts());

    let mut ste = Ste::stage2(1, 0x1000, Granule::K4);
    ste.s2_tg = 3;
    assert_eq!(
        Ste::decode(&ste.encode()),
        Err(BadSte::S2TgIllegal { tg: 3 })
    );
    ste.s2_tg = 0;
    ste.s2_sl0 = 0; // level 2 cannot resolve a 48-bit IPA
    let e = Ste::decode(&ste.encode()).unwrap_err();
    assert!(
        matches!(
            e,
            BadSte::S2Sl0Inconsistent {
                sl0: 0,
                t0sz: 16,
                ..
            }
        ),
        "{e}"
    );
    ste.s2_sl0 = 2;
    ste.s2_aa64 = false;
    assert_eq!(Ste::decode(&ste.encode()), Err(BadSte::S2Aa64Unsupported));
    ste.s2_aa64 = true;
    ste.s2_t0sz = 40;
    assert!(matches!(
        Ste::decode(&ste.encode()),
        Err(BadSte::S2T0szOutOfRange { t0sz: 40, .. })
    ));

    let mut s1 = Ste::stage1(0x4000);
    s1.s1_cd_max = 21;
    assert!(matches!(
        Ste::decode(&s1.encode()),
        Err(BadSte::S1CdMaxTooLarge { cd_max: 21, .. })
    ));
    s1.s1_cd_max = 0;
    s1.strw = 1;
    assert_eq!(
        Ste::decode(&s1.encode()),
        Err(BadSte::StrwReserved { strw: 1 })
    );

    assert_eq!(Cd::decode(&Cd::INVALID), Err(BadCd::NotValid));
    let mut cd = Cd::new(1, 0x1000, Granule::K16);
    cd.tg0 = 3;
    assert_eq!(
        Cd::decode(&cd.encode()),
        Err(BadCd::TgIllegal {
            field: "TG0",
            value: 3
        })
    );
    cd.tg0 = 2;
    cd.aa64 = false;
    assert_eq!(Cd::decode(&cd.encode()), Err(BadCd::Aa64Unsupported));
    cd.aa64 = true;
    cd.ttb0 = 1 << 48;
    assert!(matches!(
        Cd::decode(&cd.encode()),
        Err(BadCd::TtbOutOfRange { field: "TTB0", .. })
    ));
}

#[test]
fn opcode_names_and_values() {
    for op in Opcode::ALL {
        assert_eq!(Opcode::from_value(op.value()), Some(op));
        assert_eq!(format!("cmd_{}", &op.name()[4..]).parse::<Opcode>(), Ok(op));
    }
    for k in EventKind::ALL {
        assert_eq!(EventKind::from_id(k.id()), Some(k));
    }
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

fn tlbi_addr(addr_hi: u32) -> impl Strategy<Value = TlbiAddr> {
    let addr_mask = if addr_hi == 63 {
        !0xfffu64
    } else {
        ((1u64 << (addr_hi + 1)) - 1) & !0xfff
    };
    (
        any::<u64>(),
        any::<bool>(),
        0u8..4,
        0u8..4,
        0u8..32,
        0u8..32,
    )
        .prop_map(move |(a, leaf, tg, ttl, num, scale)| {
            let addr = a & addr_mask;
            if tg == 0 {
                TlbiAddr::single(addr, leaf)
            } else {
                TlbiAddr {
                    addr,
                    leaf,
                    tg,
                    ttl,
                    num,
                    scale,
                }
            }
        })
        .prop_filter("Reserved range combination", |t| {
            !t.is_reserved_combination()
        })
}

fn command() -> impl Strategy<Value = Command> {
    let ssid = 0u32..(1 << 20);
    let addr = any::<u64>().prop_map(|a| a & !0xfff);
    prop_oneof![
        (any::<u32>(), any::<bool>(), ssid.clone())
            .prop_map(|(sid, ssv, ssid)| Command::PrefetchConfig { sid, ssv, ssid }),
        (
            any::<u32>(),
            any::<bool>(),
            ssid.clone(),
            addr.clone(),
            0u8..32
        )
            .prop_map(|(sid, ssv, ssid, addr, size)| Command::PrefetchAddr {
                sid,
                ssv,
                ssid,
                addr,
                size
            }),
        (any::<u32>(), any::<bool>()).prop_map(|(sid, leaf)| Command::CfgiSte { sid, leaf }),
        (any::<u32>(), 0u8..32).prop_map(|(sid, range)| Command::CfgiSteRange { sid, range }),
        (any::<u32>(), ssid.clone(), any::<bool>()).prop_map(|(sid, ssid, leaf)| Command::CfgiCd {
            sid,
            ssid,
            leaf
        }),
        any::<u32>().prop_map(|sid| Command::CfgiCdAll { sid }),
        any::<u16>().prop_map(|vmid| Command::TlbiNhAll { vmid }),
        (any::<u16>(), any::<u16>()).prop_map(|(vmid, asid)| Command::TlbiNhAsid { vmid, asid }),
        (any::<u16>(), any::<u16>(), tlbi_addr(63))
            .prop_map(|(vmid, asid, va)| Command::TlbiNhVa { vmid, asid, va }),
        (any::<u16>(), tlbi_addr(63)).prop_map(|(vmid, va)| Command::TlbiNhVaa { vmid, va }),
        Just(Command::TlbiEl2All),
        any::<u16>().prop_map(|asid| Command::TlbiEl2Asid { asid }),
        (any::<u16>(), tlbi_addr(63)).prop_map(|(asid, va)| Command::TlbiEl2Va { asid, va }),
        tlbi_addr(63).prop_map(|va| Command::TlbiEl2Vaa { va }),
        any::<u16>().prop_map(|vmid| Command::TlbiS12Vmall { vmid }),
        (any::<u16>(), tlbi_addr(55)).prop_map(|(vmid, ipa)| Command::TlbiS2Ipa { vmid, ipa }),
        Just(Command::TlbiNsnhAll),
        (
            any::<u32>(),
            any::<bool>(),
            ssid.clone(),
            any::<bool>(),
            addr,
            0u8..=52
        )
            .prop_map(|(sid, ssv, ssid, global, addr, size)| Command::AtcInv {
                sid,
                ssv,
                ssid,
                global,
                addr,
                size
            }),
        (any::<u32>(), any::<bool>(), ssid, 0u16..512, 0u8..3).prop_map(
            |(sid, ssv, ssid, grpid, r)| Command::PriResp {
                sid,
                ssv,
                ssid,
                grpid,
                resp: [PriResp::Failure, PriResp::InvalidRequest, PriResp::Success][r as usize],
            }
        ),
        (any::<u32>(), any::<u16>(), any::<bool>(), any::<bool>()).prop_map(
            |(sid, stag, retry, abort)| Command::Resume {
                sid,
                stag,
                retry,
                abort
            }
        ),
        any::<u32>().prop_map(|sid| Command::StallTerm { sid }),
        (0u8..3, 0u8..4, 0u8..16, any::<u32>(), any::<u64>()).prop_map(
            |(cs, msh, msiattr, msidata, a)| Command::Sync {
                cs: [SyncCs::None, SyncCs::Irq, SyncCs::Sev][cs as usize],
                msh,
                msiattr,
                msidata,
                msiaddr: a & 0x00ff_ffff_ffff_fffc,
            }
        ),
    ]
}

fn access() -> impl Strategy<Value = Access> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(read, instruction, privileged)| {
        Access {
            read,
            instruction,
            privileged,
        }
    })
}

fn class() -> impl Strategy<Value = FaultClass> {
    prop_oneof![
        Just(FaultClass::Cd),
        Just(FaultClass::TableWalk),
        Just(FaultClass::Input)
    ]
}

fn fault(perm: bool) -> impl Strategy<Value = FaultInfo> {
    (
        any::<u16>(),
        any::<bool>(),
        access(),
        any::<bool>(),
        class(),
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            move |(stag, stall, access, s2, class, tt, input_addr, ipa)| FaultInfo {
                stag,
                stall,
                access,
                s2,
                class,
                tt_read: perm && tt,
                input_addr,
                ipa: ipa & 0x00ff_ffff_ffff_f000,
            },
        )
}

fn event() -> impl Strategy<Value = EventRecord> {
    let fetch = any::<u64>().prop_map(|a| a & 0x00ff_ffff_ffff_fff8);
    let body = prop_oneof![
        (any::<u16>(), access(), any::<u64>()).prop_map(|(reason, access, input_addr)| {
            EventBody::Uut {
                reason,
                access,
                input_addr,
            }
        }),
        Just(EventBody::BadStreamId),
        (any::<u16>(), fetch.clone())
            .prop_map(|(reason, fetch_addr)| EventBody::SteFetch { reason, fetch_addr }),
        Just(EventBody::BadSte),
        (0u8..16, any::<[bool; 4]>(), any::<u64>()).prop_map(|(span, f, a)| {
            EventBody::BadAtsTreq {
                span,
                privileged: f[0],
                exec: f[1],
                write: f[2],
                read: f[3],
                input_addr: a & !0xfff,
            }
        }),
        Just(EventBody::StreamDisabled),
        (any::<bool>(), any::<u64>())
            .prop_map(|(read, input_addr)| EventBody::TranslForbidden { read, input_addr }),
        Just(EventBody::BadSubstreamId),
        (any::<u16>(), fetch.clone())
            .prop_map(|(reason, fetch_addr)| EventBody::CdFetch { reason, fetch_addr }),
        Just(EventBody::BadCd),
        (
            any::<u16>(),
            access(),
            any::<bool>(),
            class(),
            any::<u64>(),
            fetch
        )
            .prop_map(|(reason, access, s2, class, input_addr, fetch_addr)| {
                EventBody::WalkEabt {
                    reason,
                    access,
                    s2,
                    class,
                    input_addr,
                    fetch_addr,
                }
            }),
        fault(false).prop_map(EventBody::Translation),
        fault(false).prop_map(EventBody::AddrSize),
        fault(false).prop_map(EventBody::Access),
        fault(true).prop_map(EventBody::Permission),
        (
            any::<u32>(),
            access(),
            any::<bool>(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(
                |(reason, access, s2, input_addr, ipa)| EventBody::TlbConflict {
                    reason,
                    access,
                    s2,
                    input_addr,
                    ipa: ipa & 0x00ff_ffff_ffff_f000
                }
            ),
        any::<u32>().prop_map(|reason| EventBody::CfgConflict { reason }),
        (any::<u8>(), any::<[bool; 6]>(), any::<u64>()).prop_map(|(span, p, a)| {
            EventBody::PageRequest {
                span,
                perms: PagePerms {
                    priv_read: p[0],
                    priv_write: p[1],
                    priv_exec: p[2],
                    user_read: p[3],
                    user_write: p[4],
                    user_exec: p[5],
                },
                input_addr: a & !0xfff,
            }
        }),
    ];
    (any::<u32>(), any::<bool>(), 0u32..(1 << 20), body).prop_map(|(sid, ssv, ssid, body)| {
        // Normalise the header fields that a kind does not carry.
        let (ssv, ssid) = match body.kind() {
            EventKind::FStreamDisabled | EventKind::FTranslForbidden => (false, 0),
            EventKind::CBadSubstreamId => (true, ssid),
            _ => (ssv, ssid),
        };
        EventRecord {
            sid,
            ssv,
            ssid,
            body,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn command_round_trips(c in command()) {
        let words = c.encode();
        prop_assert_eq!(Command::decode(words), Ok(c));
        prop_assert_eq!(Command::decode_permissive(words), Ok(c));
        prop_assert_eq!(Command::check(words), None);
    }

    #[test]
    fn command_decode_never_panics(dw0 in any::<u64>(), dw1 in any::<u64>(), op in 0usize..24) {
        // Half the time force a known opcode so the field paths are exercised.
        let dw0 = if op < Opcode::ALL.len() {
            (dw0 & !0xff) | u64::from(Opcode::ALL[op].value())
        } else {
            dw0
        };
        if let Ok(c) = Command::decode([dw0, dw1]) {
            prop_assert_eq!(c.encode(), [dw0, dw1]);
        }
        if let Ok(c) = Command::decode_permissive([dw0, dw1]) {
            prop_assert_eq!(Command::decode_permissive(c.encode()), Ok(c));
            let _ = c.invalidated_range();
        }
    }

    #[test]
    fn event_round_trips(e in event()) {
        prop_assert_eq!(EventRecord::decode(e.encode()), Ok(e));
    }

    #[test]
    fn event_decode_never_panics(w in any::<[u64; 4]>(), id in 0usize..20) {
        let mut w = w;
        if id < EventKind::ALL.len() {
            w[0] = (w[0] & !0xff) | u64::from(EventKind::ALL[id].id());
        }
        if let Ok(e) = EventRecord::decode(w) {
            prop_assert_eq!(e.encode(), w);
        }
    }

    #[test]
    fn ste_cd_decode_round_trips(w in any::<[u64; 8]>()) {
        if let Ok(s) = Ste::decode(&w) {
            prop_assert_eq!(Ste::decode(&s.encode()), Ok(s));
        }
        let mut cw = w;
        cw[0] |= 1 << 31;
        if let Ok(c) = Cd::decode(&cw) {
            prop_assert_eq!(Cd::decode(&c.encode()), Ok(c));
        }
    }
}
