//! The SMMU model against the rules of IHI 0070: invalidation scopes (what
//! goes, what stays), translation per STE.Config, BTM, ATC ordering,
//! command errors, configuration errors, and stall + RESUME.

use tlbcheck_hw::addr::{AddrRange, Granule, InputRange, Ipa, Pa, Va};
use tlbcheck_hw::machine::{Dsb, Machine};
use tlbcheck_hw::mem::{Pfn, PhysMem};
use tlbcheck_hw::smmu::cd::{Cd, L1Cd};
use tlbcheck_hw::smmu::cmd::{Command, SyncCs, TlbiAddr};
use tlbcheck_hw::smmu::config::{CfgEntry, StrtabConfig, StrtabFmt};
use tlbcheck_hw::smmu::event::{EventBody, EventKind, EventRecord};
use tlbcheck_hw::smmu::model::{
    tlbi_scope, AccessOutcome, Consumed, Device, DeviceState, Smmu, SmmuOptions,
};
use tlbcheck_hw::smmu::queue::CmdqError;
use tlbcheck_hw::smmu::ste::{S1Fmt, Ste, StreamConfig};
use tlbcheck_hw::testing::{self, chain4k, put_words, s1_ctx};
use tlbcheck_hw::tlb::{
    AsidSel, EntryKind, InvalScope, Mapping, Provenance, Regime, Stage, StageSel, TlbEntry,
};
use tlbcheck_hw::vmsa::desc::{s1_page, s2_page};

const STRTAB: u64 = 0x10_0000;
const CD: u64 = 0x10_1000;
const CMDQ: u64 = 0x10_2000;
const EVTQ: u64 = 0x10_3000;
const S1_L0: u64 = 0x10_4000;
const S1_L3: u64 = 0x10_7000;
const DATA: u64 = 0x10_8000;
const S2_L0: u64 = 0x10_9000;
const S2_L3: u64 = 0x10_c000;
/// The IPA a nested stage 1 maps VA 0 to.
const IPA_DATA: u64 = 0x1_0000;
const SID: u32 = 3;

fn sync() -> Command {
    Command::SYNC_SEV
}

/// Memory, one CPU running ASID 1 on the stage-1 tables, and an SMMU whose
/// StreamID 3 has `ste` (and `cd` at CD).
struct Fx {
    m: Machine,
    smmu: Smmu,
    step: u32,
}

impl Fx {
    fn new(opts: SmmuOptions, ste: Ste, cd: Option<Cd>, devices: Vec<Device>, leaf: u64) -> Fx {
        let mut mem = PhysMem::new(Pfn(0x100), 64);
        assert_eq!(chain4k(&mut mem, S1_L0), S1_L3);
        assert_eq!(chain4k(&mut mem, S2_L0), S2_L3);
        mem.write(Pa(S1_L3), leaf).unwrap();
        // Stage 2: identity for the stage-1 table frames, IPA_DATA -> DATA.
        for f in 0..4u64 {
            let ipa = S1_L0 + f * 0x1000;
            mem.write(Pa(S2_L3 + 8 * (ipa >> 12)), s2_page(ipa, true, true))
                .unwrap();
        }
        mem.write(Pa(S2_L3 + 8 * (IPA_DATA >> 12)), s2_page(DATA, true, true))
            .unwrap();
        put_words(&mut mem, STRTAB + 64 * u64::from(SID), &ste.encode());
        if let Some(cd) = cd {
            put_words(&mut mem, CD, &cd.encode());
        }
        let strtab = StrtabConfig {
            base: STRTAB,
            log2size: 4,
            fmt: StrtabFmt::Linear,
        };
        let smmu = testing::smmu(opts, strtab, CMDQ, EVTQ, devices, &mem);
        let m = Machine::new(mem, 1, vec![s1_ctx(Granule::K4, S1_L0, 1, 0)]);
        Fx { m, smmu, step: 0 }
    }

    fn tick(&mut self) -> u32 {
        self.step += 1;
        self.step
    }

    fn store(&mut self, pa: u64, v: u64) {
        let s = self.tick();
        self.m.store(s, 0, Pa(pa), v).unwrap();
        self.smmu.refresh(&self.m.mem, s);
    }

    fn dsb(&mut self, kind: Dsb) {
        let s = self.tick();
        self.m.dsb(s, 0, kind);
        self.smmu.cpu_dsb(&self.m.mem, 0, kind, s);
        self.smmu.refresh(&self.m.mem, s);
    }

    fn cpu_tlbi(&mut self, scope: InvalScope) {
        let s = self.tick();
        self.m.tlbi(s, 0, scope, true);
        self.smmu.cpu_tlbi(&self.m.mem, 0, &scope, true);
    }

    fn cmd(&mut self, c: Command) -> Consumed {
        let s = self.tick();
        self.smmu.submit(&mut self.m.mem, c.encode(), s).unwrap()
    }

    fn access(&mut self, dev: usize, va: u64, write: bool) -> AccessOutcome {
        self.smmu.device_access(&mut self.m.mem, dev, Va(va), write)
    }

    /// Clears the permission upgrade's old read-only entry from the CPU side:
    /// RO -> RW, DSB ISHST.
    fn upgrade_to_rw(&mut self) {
        self.store(S1_L3, s1_page(DATA, true, true, false));
        self.dsb(Dsb::Ishst);
    }
}

fn sva_ste() -> Ste {
    Ste::stage1(CD)
}

/// An SVA STE that answers ATS Translation Requests (EATS = 0b01).
fn ats_ste() -> Ste {
    let mut ste = sva_ste();
    ste.eats = 1;
    ste
}

fn cd(asid: u16) -> Cd {
    Cd::new(asid, S1_L0, Granule::K4)
}

fn va_scope(asid: u16) -> InvalScope {
    InvalScope {
        regime: Regime::El10,
        stages: StageSel::STAGE1,
        vmid: Some(0),
        asid: AsidSel::Only {
            asid,
            with_global: true,
        },
        range: Some(InputRange::Va(AddrRange::from_len(0, 0x1000))),
        granule: None,
        leaf_only: false,
        ttl_level: None,
    }
}

fn ro_leaf() -> u64 {
    s1_page(DATA, false, true, false)
}

// ---------------------------------------------------------------------
// Invalidation scopes, one table per family.

#[allow(clippy::too_many_arguments)]
fn e(
    regime: Regime,
    vmid: u16,
    stage: Stage,
    asid: Option<u16>,
    input: u64,
    level: u8,
    kind: EntryKind,
    granule: Granule,
) -> TlbEntry {
    const OUT: u64 = 0x4000_0000;
    let map = match stage {
        Stage::S1 => Mapping::S1 {
            input: Va(input),
            output: Ipa(OUT),
        },
        Stage::Combined => Mapping::Combined {
            input: Va(input),
            output: Pa(OUT),
        },
        Stage::S2 => Mapping::S2 {
            input: Ipa(input),
            output: Pa(OUT),
        },
    };
    TlbEntry::new(kind, map, level, granule).tagged(regime, vmid, asid)
}

/// Labelled IOTLB entries every TLBI row runs against.
fn universe() -> Vec<(&'static str, TlbEntry)> {
    use EntryKind::{Leaf, Walk};
    use Granule::{K16, K4};
    use Regime::{El10, El2};
    use Stage::{Combined, S1, S2};
    vec![
        ("s1 page asid1 va0", e(El10, 0, S1, Some(1), 0, 3, Leaf, K4)),
        (
            "s1 page asid1 va1000",
            e(El10, 0, S1, Some(1), 0x1000, 3, Leaf, K4),
        ),
        (
            "s1 page asid1 va4000",
            e(El10, 0, S1, Some(1), 0x4000, 3, Leaf, K4),
        ),
        ("s1 page asid2 va0", e(El10, 0, S1, Some(2), 0, 3, Leaf, K4)),
        ("s1 global va0", e(El10, 0, S1, None, 0, 3, Leaf, K4)),
        ("s1 walk L2 asid1", e(El10, 0, S1, Some(1), 0, 2, Walk, K4)),
        (
            "s1 block L2 asid1",
            e(El10, 0, S1, Some(1), 0x20_0000, 2, Leaf, K4),
        ),
        (
            "s1 16k page asid1",
            e(El10, 0, S1, Some(1), 0, 3, Leaf, K16),
        ),
        ("s1 page vmid5", e(El10, 5, S1, Some(1), 0, 3, Leaf, K4)),
        (
            "combined vmid5",
            e(El10, 5, Combined, Some(1), 0, 3, Leaf, K4),
        ),
        ("s2 page vmid5", e(El10, 5, S2, None, 0, 3, Leaf, K4)),
        ("s2 walk vmid5", e(El10, 5, S2, None, 0, 2, Walk, K4)),
        ("s2 page vmid6", e(El10, 6, S2, None, 0, 3, Leaf, K4)),
        ("el2 page", e(El2, 0, S1, Some(0), 0, 3, Leaf, K4)),
    ]
}

fn bare_smmu() -> (PhysMem, Smmu) {
    let mem = PhysMem::new(Pfn(0x100), 64);
    let strtab = StrtabConfig {
        base: STRTAB,
        log2size: 16,
        fmt: StrtabFmt::TwoLevel { split: 8 },
    };
    let smmu = testing::smmu(SmmuOptions::default(), strtab, CMDQ, EVTQ, vec![], &mem);
    (mem, smmu)
}

fn va(addr: u64, leaf: bool) -> TlbiAddr {
    TlbiAddr::single(addr, leaf)
}

/// TLBI_S2_IPA names IPAs, the by-VA commands VAs (SMMUv3 4.4.3.1, 4.4.2).
#[test]
fn tlbi_scopes_name_the_address_space_of_their_range() {
    // TG = 0: the single address (SMMUv3 4.4.1.1).
    let page = AddrRange::from_len(0x1000, 1);
    let s2 = Command::TlbiS2Ipa {
        vmid: 1,
        ipa: va(0x1000, false),
    };
    assert_eq!(
        tlbi_scope(&s2, false).unwrap().range,
        Some(InputRange::Ipa(page))
    );
    let by_va = [
        Command::TlbiNhVa {
            vmid: 1,
            asid: 1,
            va: va(0x1000, false),
        },
        Command::TlbiNhVaa {
            vmid: 1,
            va: va(0x1000, false),
        },
        Command::TlbiEl2Va {
            asid: 1,
            va: va(0x1000, false),
        },
        Command::TlbiEl2Vaa {
            va: va(0x1000, false),
        },
    ];
    for c in by_va {
        assert_eq!(
            tlbi_scope(&c, false).unwrap().range,
            Some(InputRange::Va(page)),
            "{c:?}"
        );
    }
}

/// SMMUv3 4.4: each TLBI command, what it removes at CMD_SYNC (the rest stays).
#[test]
fn tlbi_commands_remove_exactly_their_scope() {
    let all: Vec<&str> = universe().iter().map(|(n, _)| *n).collect();
    let rows: Vec<(&str, Command, Vec<&str>)> = vec![
        (
            "NH_VA leaf: leaves at the VA of the ASID and global; walks stay (4.4.2.4)",
            Command::TlbiNhVa {
                vmid: 0,
                asid: 1,
                va: va(0, true),
            },
            vec!["s1 page asid1 va0", "s1 global va0", "s1 16k page asid1"],
        ),
        (
            "NH_VA Leaf=0 also removes walk entries over the VA",
            Command::TlbiNhVa {
                vmid: 0,
                asid: 1,
                va: va(0, false),
            },
            vec![
                "s1 page asid1 va0",
                "s1 global va0",
                "s1 walk L2 asid1",
                "s1 16k page asid1",
            ],
        ),
        (
            "range TG=4K NUM=1 SCALE=1: (1+1)*2^1 = 4 pages, 4K granule only (4.4.1.1)",
            Command::TlbiNhVa {
                vmid: 0,
                asid: 1,
                va: TlbiAddr::range(0, true, Granule::K4, 0, 1, 1),
            },
            vec!["s1 page asid1 va0", "s1 page asid1 va1000", "s1 global va0"],
        ),
        (
            "range with TTL=3, Leaf=0: L3 pages and walks above L3; an L2 block stays",
            Command::TlbiNhVa {
                vmid: 0,
                asid: 1,
                va: TlbiAddr::range(0, false, Granule::K4, 3, 0, 10),
            },
            vec![
                "s1 walk L2 asid1",
                "s1 page asid1 va0",
                "s1 page asid1 va1000",
                "s1 page asid1 va4000",
                "s1 global va0",
            ],
        ),
        (
            "range with TTL=2, Leaf=0: L2 blocks and L0/L1 walks only",
            Command::TlbiNhVa {
                vmid: 0,
                asid: 1,
                va: TlbiAddr::range(0, false, Granule::K4, 2, 0, 10),
            },
            vec!["s1 block L2 asid1"],
        ),
        (
            "NH_VAA: every ASID at the VA (4.4.2.3)",
            Command::TlbiNhVaa {
                vmid: 0,
                va: va(0, true),
            },
            vec![
                "s1 page asid1 va0",
                "s1 page asid2 va0",
                "s1 global va0",
                "s1 16k page asid1",
            ],
        ),
        (
            "NH_ASID: non-global entries of the ASID, walks too (4.4.2.2)",
            Command::TlbiNhAsid { vmid: 0, asid: 1 },
            vec![
                "s1 page asid1 va0",
                "s1 page asid1 va1000",
                "s1 page asid1 va4000",
                "s1 walk L2 asid1",
                "s1 block L2 asid1",
                "s1 16k page asid1",
            ],
        ),
        (
            "NH_ALL: stage-1 and combined of the VMID; stage 2 stays (4.4.2.1)",
            Command::TlbiNhAll { vmid: 5 },
            vec!["s1 page vmid5", "combined vmid5"],
        ),
        (
            "S2_IPA: stage-2 entries; combined stay (4.4.3.1)",
            Command::TlbiS2Ipa {
                vmid: 5,
                ipa: va(0, false),
            },
            vec!["s2 page vmid5", "s2 walk vmid5"],
        ),
        (
            "S12_VMALL: every stage of the VMID (4.4.3.2)",
            Command::TlbiS12Vmall { vmid: 5 },
            vec![
                "s1 page vmid5",
                "combined vmid5",
                "s2 page vmid5",
                "s2 walk vmid5",
            ],
        ),
        (
            "NSNH_ALL: every non-EL2 entry of every VMID (4.4.4.1)",
            Command::TlbiNsnhAll,
            all.iter().copied().filter(|n| *n != "el2 page").collect(),
        ),
        (
            "EL2_ALL: EL2 entries only (4.4.2.7)",
            Command::TlbiEl2All,
            vec!["el2 page"],
        ),
    ];
    for (what, cmd, gone) in rows {
        let (mut mem, mut smmu) = bare_smmu();
        for (_, en) in universe() {
            smmu.iotlb.insert(en, Provenance { step: 0, source: 0 });
        }
        smmu.submit(&mut mem, cmd.encode(), 1).unwrap();
        assert_eq!(
            smmu.iotlb.len(),
            universe().len(),
            "{what}: nothing before CMD_SYNC"
        );
        let done = smmu.submit(&mut mem, sync().encode(), 2).unwrap();
        assert_eq!(done.syncs.len(), 1);
        for (name, en) in universe() {
            assert_eq!(
                !smmu.iotlb.contains(&en),
                gone.contains(&name),
                "{what}: {name} should {}",
                if gone.contains(&name) { "go" } else { "stay" }
            );
        }
    }
}

/// SMMUv3 4.4.1.1: TG != 0 with NUM = SCALE = TTL = 0 is CERROR_ILL.
#[test]
fn reserved_range_combination_is_cerror_ill() {
    let (mut mem, mut smmu) = bare_smmu();
    let bad = Command::TlbiNhVa {
        vmid: 0,
        asid: 1,
        va: TlbiAddr::range(0, true, Granule::K4, 0, 0, 0),
    };
    let c = smmu.submit(&mut mem, bad.encode(), 1).unwrap();
    assert!(c.error.is_some());
    assert_eq!(smmu.cmdq.error, Some(CmdqError::Ill));
}

fn ste_2level_cd() -> Ste {
    let mut s = Ste::stage1(0x10_2000);
    s.s1_fmt = S1Fmt::TwoLevel4K;
    s.s1_cd_max = 8;
    s
}

fn cfg_universe() -> Vec<(&'static str, CfgEntry)> {
    let ste = ste_2level_cd().encode();
    let cd = Cd::new(1, S1_L0, Granule::K4).encode();
    vec![
        (
            "L1STD 0",
            CfgEntry::L1Std {
                index: 0,
                pa: STRTAB,
                desc: 0x10_1002,
            },
        ),
        (
            "L1STD 1",
            CfgEntry::L1Std {
                index: 1,
                pa: STRTAB + 8,
                desc: 0x10_1002,
            },
        ),
        (
            "STE 1",
            CfgEntry::Ste {
                sid: 1,
                pa: 0x10_1040,
                words: ste,
            },
        ),
        (
            "STE 2",
            CfgEntry::Ste {
                sid: 2,
                pa: 0x10_1080,
                words: ste,
            },
        ),
        (
            "STE 0x100",
            CfgEntry::Ste {
                sid: 0x100,
                pa: 0x10_1000,
                words: ste,
            },
        ),
        (
            "L1CD 1/0",
            CfgEntry::L1Cd {
                sid: 1,
                index: 0,
                pa: 0x10_2000,
                desc: 0x10_3001,
            },
        ),
        (
            "CD 1/0",
            CfgEntry::Cd {
                sid: 1,
                ssid: 0,
                pa: 0x10_3000,
                words: cd,
            },
        ),
        (
            "CD 1/5",
            CfgEntry::Cd {
                sid: 1,
                ssid: 5,
                pa: 0x10_3140,
                words: cd,
            },
        ),
        (
            "CD 2/5",
            CfgEntry::Cd {
                sid: 2,
                ssid: 5,
                pa: 0x10_3140,
                words: cd,
            },
        ),
        (
            "L1CD 2/0",
            CfgEntry::L1Cd {
                sid: 2,
                index: 0,
                pa: 0x10_2000,
                desc: 0x10_3001,
            },
        ),
    ]
}

/// SMMUv3 4.3: each CFGI command, what it removes from the config cache.
#[test]
fn cfgi_commands_remove_exactly_their_scope() {
    let rows: Vec<(&str, Command, Vec<&str>)> = vec![
        (
            "CFGI_STE Leaf=1: the STE and every CD/L1CD cached with the SID (4.3.1)",
            Command::CfgiSte { sid: 1, leaf: true },
            vec!["STE 1", "L1CD 1/0", "CD 1/0", "CD 1/5"],
        ),
        (
            "CFGI_STE Leaf=0: also the L1STD that locates it",
            Command::CfgiSte {
                sid: 1,
                leaf: false,
            },
            vec!["L1STD 0", "STE 1", "L1CD 1/0", "CD 1/0", "CD 1/5"],
        ),
        (
            "CFGI_STE_RANGE Range=0: SIDs 0..=1, their L1STD and CDs (4.3.2)",
            Command::CfgiSteRange { sid: 1, range: 0 },
            vec!["L1STD 0", "STE 1", "L1CD 1/0", "CD 1/0", "CD 1/5"],
        ),
        (
            "CFGI_ALL: everything (4.3.6)",
            Command::cfgi_all(),
            cfg_universe().iter().map(|(n, _)| *n).collect(),
        ),
        (
            "CFGI_CD Leaf=1: only that CD (4.3.3)",
            Command::CfgiCd {
                sid: 1,
                ssid: 5,
                leaf: true,
            },
            vec!["CD 1/5"],
        ),
        (
            "CFGI_CD Leaf=0: that CD and the L1CD locating it",
            Command::CfgiCd {
                sid: 1,
                ssid: 5,
                leaf: false,
            },
            vec!["CD 1/5", "L1CD 1/0"],
        ),
        (
            "CFGI_CD_ALL: every CD and L1CD of the SID; the STE stays (4.3.4)",
            Command::CfgiCdAll { sid: 1 },
            vec!["L1CD 1/0", "CD 1/0", "CD 1/5"],
        ),
    ];
    for (what, cmd, gone) in rows {
        let (mut mem, mut smmu) = bare_smmu();
        for (_, en) in cfg_universe() {
            smmu.config.insert(en, 0);
        }
        smmu.submit(&mut mem, cmd.encode(), 1).unwrap();
        assert_eq!(
            smmu.config.len(),
            cfg_universe().len(),
            "{what}: nothing before CMD_SYNC"
        );
        smmu.submit(&mut mem, sync().encode(), 2).unwrap();
        for (name, en) in cfg_universe() {
            assert_eq!(
                !smmu.config.contains(&en),
                gone.contains(&name),
                "{what}: {name} should {}",
                if gone.contains(&name) { "go" } else { "stay" }
            );
        }
    }
}

// ---------------------------------------------------------------------
// Translation per STE.Config.

fn dev() -> Device {
    Device::new(SID, None, false, false)
}

#[test]
fn abort_ste_terminates_silently() {
    let mut ste = Ste::bypass();
    ste.config = StreamConfig::Abort;
    let mut fx = Fx::new(SmmuOptions::default(), ste, None, vec![dev()], ro_leaf());
    match fx.access(0, 0, false) {
        AccessOutcome::ConfigError { record: None, .. } => {}
        o => panic!("abort must terminate without an event, got {o:?}"),
    }
}

#[test]
fn bypass_ste_passes_addresses_through() {
    let mut fx = Fx::new(
        SmmuOptions::default(),
        Ste::bypass(),
        None,
        vec![dev()],
        ro_leaf(),
    );
    assert_eq!(
        fx.access(0, 0x1234_5000, true),
        AccessOutcome::Done {
            pa: Pa(0x1234_5000)
        }
    );
    assert!(fx.smmu.iotlb.is_empty(), "bypass caches no translation");
}

#[test]
fn stage1_ste_translates_and_enforces_permissions() {
    let mut fx = Fx::new(
        SmmuOptions::default(),
        sva_ste(),
        Some(cd(1)),
        vec![dev()],
        ro_leaf(),
    );
    assert_eq!(
        fx.access(0, 0x10, false),
        AccessOutcome::Done {
            pa: Pa(DATA + 0x10)
        }
    );
    match fx.access(0, 0x10, true) {
        AccessOutcome::Fault {
            record: Some(r),
            stalled: false,
            ..
        } => {
            assert_eq!(r.kind(), EventKind::FPermission);
        }
        o => panic!("a write to a read-only page must fault, got {o:?}"),
    }
}

#[test]
fn epd0_is_a_translation_fault_not_a_bypass() {
    // CD.EPD0 = 1: TTB0 walks are disabled, so an access through TTB0 is
    // F_TRANSLATION (SMMUv3 5.4), never PA = VA.
    let mut quiet = cd(1);
    quiet.epd0 = true;
    let mut fx = Fx::new(
        SmmuOptions::default(),
        sva_ste(),
        Some(quiet),
        vec![dev()],
        ro_leaf(),
    );
    match fx.access(0, 0x10, false) {
        AccessOutcome::Fault {
            record: Some(r),
            stalled: false,
            ..
        } => assert_eq!(r.kind(), EventKind::FTranslation),
        o => panic!("EPD0 must fault, got {o:?}"),
    }
}

#[test]
fn a_nested_stream_with_epd0_translates_nothing() {
    // Nested, CD.EPD0 = 1: the stage-1 walk is disabled, so the access
    // faults and no walk (of either stage) fills the IOTLB: the stream is
    // not a stage-2-only one (SMMUv3 5.4, CD.EPD0).
    let mut ste = Ste::stage2(5, S2_L0, Granule::K4);
    ste.config = StreamConfig::Nested;
    ste.s1_context_ptr = CD;
    let mut quiet = cd(1);
    quiet.epd0 = true;
    let leaf = s1_page(IPA_DATA, true, true, false);
    let mut fx = Fx::new(SmmuOptions::default(), ste, Some(quiet), vec![dev()], leaf);
    assert!(
        matches!(fx.access(0, 0x20, true), AccessOutcome::Fault { .. }),
        "EPD0 must fault"
    );
    assert!(
        fx.smmu.iotlb.iter().next().is_none(),
        "no walk may fill the IOTLB: {:?}",
        fx.smmu.iotlb.iter().collect::<Vec<_>>()
    );
}

#[test]
fn stage2_ste_translates_ipa() {
    let ste = Ste::stage2(5, S2_L0, Granule::K4);
    let mut fx = Fx::new(SmmuOptions::default(), ste, None, vec![dev()], ro_leaf());
    assert_eq!(
        fx.access(0, IPA_DATA + 8, true),
        AccessOutcome::Done { pa: Pa(DATA + 8) }
    );
    assert!(fx
        .smmu
        .iotlb
        .iter()
        .any(|(e, _)| e.stage() == Stage::S2 && e.vmid == 5 && e.kind == EntryKind::Leaf));
}

#[test]
fn nested_ste_translates_through_both_stages() {
    let mut ste = Ste::stage2(5, S2_L0, Granule::K4);
    ste.config = StreamConfig::Nested;
    ste.s1_context_ptr = CD;
    let leaf = s1_page(IPA_DATA, true, true, false);
    let mut fx = Fx::new(SmmuOptions::default(), ste, Some(cd(1)), vec![dev()], leaf);
    assert_eq!(
        fx.access(0, 0x20, true),
        AccessOutcome::Done {
            pa: Pa(DATA + 0x20)
        }
    );
    let combined = fx
        .smmu
        .iotlb
        .iter()
        .find(|(e, _)| e.stage() == Stage::Combined)
        .map(|(e, _)| *e)
        .expect("combined entry");
    assert_eq!(
        (combined.output_pa(), combined.vmid, combined.asid),
        (Some(Pa(DATA)), 5, Some(1))
    );
}

// ---------------------------------------------------------------------
// BTM (SMMUv3 3.17).

fn btm_case(btm: bool, ptm: bool, smmu_asid: u16, cpu_asid: u16) -> usize {
    let opts = SmmuOptions {
        btm,
        ptm,
        ..SmmuOptions::default()
    };
    let mut fx = Fx::new(opts, sva_ste(), Some(cd(smmu_asid)), vec![dev()], ro_leaf());
    fx.upgrade_to_rw();
    fx.cpu_tlbi(va_scope(cpu_asid));
    fx.dsb(Dsb::Ish);
    fx.smmu.stale_denials(&fx.m.mem, 0, Va(0), true).len()
}

#[test]
fn btm_invalidates_the_iotlb_only_when_enabled_and_matching() {
    assert_eq!(
        btm_case(true, false, 1, 1),
        0,
        "BTM, PTM clear, shared ASID"
    );
    assert!(btm_case(false, false, 1, 1) > 0, "no BTM");
    assert!(
        btm_case(true, true, 1, 1) > 0,
        "PTM set: broadcasts ignored"
    );
    assert!(
        btm_case(true, false, 2, 1) > 0,
        "SMMU ASID differs from the CPU's"
    );
}

#[test]
fn btm_completes_only_at_the_issuers_dsb_ish_and_never_touches_the_atc() {
    let opts = SmmuOptions {
        btm: true,
        ptm: false,
        ..SmmuOptions::default()
    };
    let ats = Device::new(SID, None, true, false);
    let mut fx = Fx::new(opts, ats_ste(), Some(cd(1)), vec![ats], ro_leaf());
    fx.upgrade_to_rw();
    fx.cpu_tlbi(va_scope(1));
    fx.dsb(Dsb::Ishst);
    assert_eq!(
        fx.smmu.pending_broadcasts(),
        1,
        "DSB ISHST completes no TLBI"
    );
    fx.dsb(Dsb::Ish);
    assert_eq!(fx.smmu.pending_broadcasts(), 0);
    let stale = fx.smmu.stale_denials(&fx.m.mem, 0, Va(0), true);
    assert!(!stale.is_empty());
    assert!(
        stale
            .iter()
            .all(|(a, _, _)| matches!(a, tlbcheck_hw::tlb::Holder::Atc(_))),
        "{stale:?}"
    );
}

// ---------------------------------------------------------------------
// ATC ordering (SMMUv3 4.5.1).

fn atc_case(order: &[&str]) -> usize {
    let ats = Device::new(SID, None, true, false);
    let mut fx = Fx::new(
        SmmuOptions::default(),
        ats_ste(),
        Some(cd(1)),
        vec![ats],
        ro_leaf(),
    );
    assert!(
        !fx.smmu.devices[0].atc.is_empty(),
        "the ATC may hold the RO entry"
    );
    fx.upgrade_to_rw();
    for step in order {
        match *step {
            "tlbi" => {
                fx.cmd(Command::TlbiNhVa {
                    vmid: 0,
                    asid: 1,
                    va: va(0, false),
                });
            }
            "atc" => {
                fx.cmd(Command::AtcInv {
                    sid: SID,
                    ssv: false,
                    ssid: 0,
                    global: false,
                    addr: 0,
                    size: 0,
                });
            }
            "sync" => {
                fx.cmd(sync());
            }
            _ => unreachable!(),
        }
    }
    fx.smmu.stale_denials(&fx.m.mem, 0, Va(0), true).len()
}

#[test]
fn atc_inv_must_follow_a_completed_tlbi() {
    assert_eq!(atc_case(&["tlbi", "sync", "atc", "sync"]), 0, "spec order");
    assert!(
        atc_case(&["atc", "sync", "tlbi", "sync"]) > 0,
        "ATC refilled from the stale IOTLB"
    );
    assert!(
        atc_case(&["tlbi", "atc", "sync"]) > 0,
        "one CMD_SYNC: no order between them"
    );
    assert!(atc_case(&["tlbi", "sync"]) > 0, "TLBI alone leaves the ATC");
}

#[test]
fn atc_inv_span_is_aligned_power_of_two() {
    let ats = Device::new(SID, None, true, false);
    let mut fx = Fx::new(
        SmmuOptions::default(),
        sva_ste(),
        Some(cd(1)),
        vec![ats],
        ro_leaf(),
    );
    fx.upgrade_to_rw();
    fx.cmd(Command::TlbiNhVa {
        vmid: 0,
        asid: 1,
        va: va(0, false),
    });
    fx.cmd(sync());
    // Size 1 at 0x1000: the aligned 8 KiB span [0, 0x2000) contains VA 0.
    fx.cmd(Command::AtcInv {
        sid: SID,
        ssv: false,
        ssid: 0,
        global: false,
        addr: 0x1000,
        size: 1,
    });
    fx.cmd(sync());
    assert!(fx.smmu.stale_denials(&fx.m.mem, 0, Va(0), true).is_empty());
}

// ---------------------------------------------------------------------
// Queue errors and configuration errors.

#[test]
fn cerror_ill_stops_the_queue_at_the_offending_index() {
    let mut fx = Fx::new(
        SmmuOptions::default(),
        sva_ste(),
        Some(cd(1)),
        vec![dev()],
        ro_leaf(),
    );
    fx.upgrade_to_rw();
    fx.cmd(Command::TlbiNhAsid { vmid: 0, asid: 1 });
    let s = fx.tick();
    let bad = fx.smmu.submit(&mut fx.m.mem, [0xff, 0], s).unwrap();
    assert_eq!(bad.error.as_ref().map(|e| e.0), Some(1));
    assert_eq!(fx.smmu.cmdq.error, Some(CmdqError::Ill));
    assert_eq!(
        fx.smmu.cmdq.cons_index(),
        1,
        "CONS names the illegal command"
    );
    let c = fx.cmd(sync());
    assert!(
        c.syncs.is_empty() && c.commands.is_empty(),
        "nothing consumed past it"
    );
    assert_eq!(fx.smmu.pending_invalidations(), 1);
    assert!(!fx.smmu.stale_denials(&fx.m.mem, 0, Va(0), true).is_empty());
    // Linux's recovery: overwrite it with a CMD_SYNC and acknowledge.
    let s = fx.tick();
    let c = fx
        .smmu
        .acknowledge_error(&mut fx.m.mem, Some(sync().encode()), s);
    assert_eq!(c.syncs.len(), 2);
    assert_eq!(fx.smmu.cmdq.cons_index(), 3);
    assert!(fx.smmu.stale_denials(&fx.m.mem, 0, Va(0), true).is_empty());
}

fn first_event(fx: &Fx) -> EventRecord {
    let words = fx.smmu.evtq.pending(&fx.m.mem);
    EventRecord::decode(words[0]).unwrap()
}

#[test]
fn invalid_ste_and_cd_raise_c_bad_events() {
    let mut bad_ste = Ste::stage2(5, S2_L0, Granule::K4);
    bad_ste.s2_tg = 3; // Reserved granule: ILLEGAL (SMMUv3 5.2 S2TG)
    let mut fx = Fx::new(
        SmmuOptions::default(),
        bad_ste,
        None,
        vec![dev()],
        ro_leaf(),
    );
    assert!(matches!(
        fx.access(0, 0, false),
        AccessOutcome::ConfigError { .. }
    ));
    let r = first_event(&fx);
    assert_eq!((r.kind(), r.sid), (EventKind::CBadSte, SID));

    let mut bad_cd = cd(1);
    bad_cd.aa64 = false; // VMSAv8-32 tables: not supported (SMMUv3 5.4.2)
    let mut fx = Fx::new(
        SmmuOptions::default(),
        sva_ste(),
        Some(bad_cd),
        vec![dev()],
        ro_leaf(),
    );
    fx.access(0, 0, false);
    assert_eq!(first_event(&fx).kind(), EventKind::CBadCd);

    let mut fx = Fx::new(
        SmmuOptions::default(),
        sva_ste(),
        Some(cd(1)),
        vec![Device::new(SID, Some(1), false, false)],
        ro_leaf(),
    );
    fx.access(0, 0, false);
    assert_eq!(
        first_event(&fx).kind(),
        EventKind::CBadSubstreamId,
        "substreams are off"
    );

    let mut fx = Fx::new(
        SmmuOptions::default(),
        sva_ste(),
        Some(cd(1)),
        vec![Device::new(16, None, false, false)],
        ro_leaf(),
    );
    fx.access(0, 0, false);
    assert_eq!(
        first_event(&fx).kind(),
        EventKind::CBadStreamId,
        "beyond LOG2SIZE"
    );
}

#[test]
fn two_level_cd_table_cfgi_cd_leaf_keeps_a_stale_l1cd() {
    // STE -> L1CD table at CD; L1CD[0] -> leaf table A; the driver moves
    // SSID 1's leaf table to B and invalidates with Leaf = 1 only.
    let (a, b) = (0x10_d000u64, 0x10_e000u64);
    let mut ste = sva_ste();
    ste.s1_fmt = S1Fmt::TwoLevel4K;
    ste.s1_cd_max = 4;
    let mut fx = Fx::new(
        SmmuOptions::default(),
        ste,
        None,
        vec![Device::new(SID, Some(1), false, false)],
        ro_leaf(),
    );
    let s = fx.tick();
    put_words(&mut fx.m.mem, a + 64, &cd(1).encode());
    put_words(&mut fx.m.mem, b + 64, &cd(1).encode());
    fx.m.mem
        .write(
            Pa(CD),
            L1Cd {
                valid: true,
                l2ptr: a,
            }
            .encode(),
        )
        .unwrap();
    fx.smmu.refresh(&fx.m.mem, s);
    assert!(!fx.smmu.config_holders(AddrRange::span(a, 12)).is_empty());
    fx.store(
        CD,
        L1Cd {
            valid: true,
            l2ptr: b,
        }
        .encode(),
    );
    fx.dsb(Dsb::Ish);
    fx.cmd(Command::CfgiCd {
        sid: SID,
        ssid: 1,
        leaf: true,
    });
    fx.cmd(sync());
    assert!(
        !fx.smmu.config_holders(AddrRange::span(a, 12)).is_empty(),
        "the cached L1CD still locates table A"
    );
    fx.cmd(Command::CfgiCd {
        sid: SID,
        ssid: 1,
        leaf: false,
    });
    fx.cmd(sync());
    assert!(fx.smmu.config_holders(AddrRange::span(a, 12)).is_empty());
}

// ---------------------------------------------------------------------
// Stall + RESUME (SMMUv3 3.12.2, 4.7.1).

fn stall_case(fix: bool) -> AccessOutcome {
    let mut c = cd(1);
    c.s = true;
    let mut fx = Fx::new(
        SmmuOptions::default(),
        sva_ste(),
        Some(c),
        vec![dev()],
        ro_leaf(),
    );
    let stag = match fx.access(0, 0, true) {
        AccessOutcome::Fault {
            record: Some(r),
            stalled: true,
            ..
        } => match r.body {
            EventBody::Permission(i) => {
                assert!(i.stall);
                i.stag
            }
            b => panic!("expected F_PERMISSION, got {b:?}"),
        },
        o => panic!("expected a stall, got {o:?}"),
    };
    assert!(matches!(
        fx.smmu.devices[0].state,
        DeviceState::Stalled { .. }
    ));
    fx.upgrade_to_rw();
    if fix {
        fx.cmd(Command::TlbiNhVa {
            vmid: 0,
            asid: 1,
            va: va(0, true),
        });
        fx.cmd(sync());
    }
    fx.cmd(Command::Resume {
        sid: SID,
        stag,
        retry: true,
        abort: false,
    });
    assert!(matches!(
        fx.smmu.devices[0].state,
        DeviceState::Retrying { .. }
    ));
    assert_eq!(
        fx.smmu.stale_denials(&fx.m.mem, 0, Va(0), true).is_empty(),
        fix
    );
    fx.access(0, 0, true)
}

#[test]
fn resumed_retry_faults_again_on_a_stale_read_only_entry() {
    assert!(matches!(
        stall_case(false),
        AccessOutcome::Fault {
            stalled: true,
            entry: Some(_),
            ..
        }
    ));
    assert_eq!(stall_case(true), AccessOutcome::Done { pa: Pa(DATA) });
}

#[test]
fn eats_zero_gives_the_atc_nothing() {
    // STE.EATS = 0b00: ATS Translation Requests are aborted (SMMUv3 5.2),
    // so the device's ATC can hold nothing from this stream; with 0b01 it
    // may hold the IOTLB's leaf.
    for (ste, filled) in [(sva_ste(), false), (ats_ste(), true)] {
        let ats = Device::new(SID, None, true, false);
        let fx = Fx::new(
            SmmuOptions::default(),
            ste,
            Some(cd(1)),
            vec![ats],
            ro_leaf(),
        );
        assert_eq!(
            !fx.smmu.devices[0].atc.is_empty(),
            filled,
            "EATS {}",
            ste.eats
        );
    }
}

#[test]
fn pri_page_request_then_response_retries() {
    let d = Device::new(SID, None, true, true);
    let mut fx = Fx::new(
        SmmuOptions::default(),
        ats_ste(),
        Some(cd(1)),
        vec![d],
        ro_leaf(),
    );
    let AccessOutcome::PageRequest { grpid } = fx.access(0, 0, true) else {
        panic!("an ATS+PRI device asks for the page");
    };
    fx.upgrade_to_rw();
    fx.cmd(Command::PriResp {
        sid: SID,
        ssv: false,
        ssid: 0,
        grpid,
        resp: tlbcheck_hw::smmu::cmd::PriResp::Success,
    });
    // No TLBI/ATC_INV: the ATC still holds the read-only entry.
    assert!(!fx.smmu.stale_denials(&fx.m.mem, 0, Va(0), true).is_empty());
    assert!(matches!(
        fx.access(0, 0, true),
        AccessOutcome::PageRequest { .. }
    ));
}

#[test]
fn cmd_sync_msi_write_is_observable() {
    let (mut mem, mut smmu) = bare_smmu();
    let done = smmu
        .submit(
            &mut mem,
            Command::Sync {
                cs: SyncCs::Irq,
                msh: 3,
                msiattr: 0xf,
                msidata: 0xabcd,
                msiaddr: 0x10_5004,
            }
            .encode(),
            1,
        )
        .unwrap();
    assert_eq!(done.syncs[0].msi, Some((0x10_5004, 0xabcd)));
    assert_eq!(mem.read(Pa(0x10_5000)), 0xabcd << 32);
}
