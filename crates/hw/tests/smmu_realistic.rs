//! The SMMU's realistic caches (`smmu::costs`) against its may-hold sets:
//! on random sequences of descriptor and configuration stores, CPU DSBs and
//! broadcast TLBIs, SMMU commands and device accesses, the realistic IOTLB,
//! config cache and ATCs never hold an entry outside the matching may-hold
//! set. Also a few fixed sequences showing hits, misses and counters.

use proptest::prelude::*;
use tlbcheck_hw::addr::{Granule, InputRange, Pa, Va};
use tlbcheck_hw::machine::{Dsb, Machine};
use tlbcheck_hw::mem::{Pfn, PhysMem};
use tlbcheck_hw::smmu::cd::{Cd, L1Cd};
use tlbcheck_hw::smmu::cmd::{Command, TlbiAddr};
use tlbcheck_hw::smmu::config::{StrtabConfig, StrtabFmt};
use tlbcheck_hw::smmu::costs::{CostGeometry, Geometry, SmmuCosts};
use tlbcheck_hw::smmu::model::{Consumed, Device, SmmuOptions};
use tlbcheck_hw::smmu::ste::{L1Std, S1Fmt, Ste, StreamConfig};
use tlbcheck_hw::testing::{self, chain4k, put_words, s1_ctx};
use tlbcheck_hw::tlb::{AsidSel, InvalScope, Regime, StageSel};
use tlbcheck_hw::vmsa::desc::{s1_block, s1_page, s2_page, table};
use tlbcheck_hw::vmsa::Context;

// Configuration: a 2-level Stream table (SPLIT 8) whose L1STD[0] points at
// level-2 array A or B; StreamID 1 uses one CD at CDA, StreamID 2 a 2-level
// CD table whose L1CD[0] points at leaf table A or B.
const STRTAB: u64 = 0x10_0000;
const L2A: u64 = 0x10_1000;
const L2B: u64 = 0x10_2000;
const CDA: u64 = 0x10_3000;
const L1CDT: u64 = 0x10_4000;
const CDTA: u64 = 0x10_5000;
const CDTB: u64 = 0x10_6000;
// Stage-1 tables (L0B is an alternative root) and stage-2 tables (identity
// for the stage-1 table frames, so a nested CD can use L0 as an IPA).
const L0: u64 = 0x10_7000;
const L1: u64 = 0x10_8000;
const L2: u64 = 0x10_9000;
const L3: u64 = 0x10_a000;
const L3B: u64 = 0x10_b000;
const L0B: u64 = 0x10_c000;
const CMDQ: u64 = 0x10_d000;
const EVTQ: u64 = 0x10_e000;
const S2_L0: u64 = 0x10_f000;
const S2_L3: u64 = 0x11_2000;

const SID1: u32 = 1;
const SID2: u32 = 2;
const S2_VMID: u16 = 5;

fn sync() -> Command {
    Command::SYNC_SEV
}

fn cd(asid: u16, root: u64) -> [u64; 8] {
    Cd::new(asid, root, Granule::K4).encode()
}

fn l1std(l2: u64) -> u64 {
    L1Std { span: 3, l2ptr: l2 }.encode()
}

fn l1cd(l2: u64) -> u64 {
    L1Cd {
        valid: true,
        l2ptr: l2,
    }
    .encode()
}

/// The streams of ATS devices answer ATS requests (EATS = 0b01).
fn ste_single_cd() -> [u64; 8] {
    let mut s = Ste::stage1(CDA);
    s.eats = 1;
    s.encode()
}

fn ste_two_level_cd() -> [u64; 8] {
    let mut s = Ste::stage1(L1CDT);
    s.eats = 1;
    s.s1_fmt = S1Fmt::TwoLevel4K;
    s.s1_cd_max = 4;
    s.encode()
}

fn ste_linear_cd_table() -> [u64; 8] {
    let mut s = Ste::stage1(CDTA);
    s.s1_cd_max = 4;
    s.encode()
}

fn ste_s2() -> [u64; 8] {
    Ste::stage2(S2_VMID, S2_L0, Granule::K4).encode()
}

fn ste_nested() -> [u64; 8] {
    let mut s = Ste::stage2(S2_VMID, S2_L0, Granule::K4);
    s.config = StreamConfig::Nested;
    s.s1_context_ptr = CDA;
    s.encode()
}

/// Devices: StreamID 1 without and with ATS, StreamID 2 SubstreamIDs 1
/// (ATS) and 2 (no ATS).
fn devices() -> Vec<Device> {
    vec![
        Device::new(SID1, None, false, false),
        Device::new(SID1, None, true, false),
        Device::new(SID2, Some(1), true, false),
        Device::new(SID2, Some(2), false, false),
    ]
}

fn cpu_ctx() -> Context {
    s1_ctx(Granule::K4, L0, 1, 0)
}

/// The machine (one CPU on ASID 1) with the SMMU attached.
fn initial(opts: SmmuOptions) -> Machine {
    let mut mem = PhysMem::new(Pfn(0x100), 32);
    assert_eq!(chain4k(&mut mem, L0), L3);
    mem.write(Pa(L0B), table(L1)).unwrap();
    mem.write(Pa(L3), s1_page(0x50_0000, true, false, false))
        .unwrap();
    mem.write(Pa(L3 + 8), s1_page(0x51_0000, false, false, false))
        .unwrap();
    mem.write(Pa(L3 + 16), s1_page(0x52_0000, true, false, true))
        .unwrap();
    mem.write(Pa(L2 + 8), table(L3B)).unwrap();
    mem.write(Pa(L3B), s1_page(0x53_0000, true, false, false))
        .unwrap();
    assert_eq!(chain4k(&mut mem, S2_L0), S2_L3);
    for ipa in [L0, L1, L2, L3, L3B, L0B] {
        mem.write(
            Pa(S2_L3 + 8 * ((ipa >> 12) & 0x1ff)),
            s2_page(ipa, true, true),
        )
        .unwrap();
    }
    // IPA 0 (a stage-2-only device's VA 0) and the IPA stage 1 maps VA 0 to.
    mem.write(Pa(S2_L3), s2_page(0x60_0000, true, true))
        .unwrap();
    mem.write(Pa(S2_L3 + 8 * 0x100), s2_page(0x61_0000, true, false))
        .unwrap();
    mem.write(Pa(STRTAB), l1std(L2A)).unwrap();
    for l2 in [L2A, L2B] {
        put_words(&mut mem, l2 + 64 * u64::from(SID1), &ste_single_cd());
        put_words(&mut mem, l2 + 64 * u64::from(SID2), &ste_two_level_cd());
    }
    put_words(&mut mem, CDA, &cd(1, L0));
    mem.write(Pa(L1CDT), l1cd(CDTA)).unwrap();
    put_words(&mut mem, CDTA + 64, &cd(2, L0));
    put_words(&mut mem, CDTA + 128, &cd(3, L0));
    put_words(&mut mem, CDTB + 64, &cd(2, L0B));
    put_words(&mut mem, CDTB + 128, &cd(3, L0));
    let strtab = StrtabConfig {
        base: STRTAB,
        log2size: 9,
        fmt: StrtabFmt::TwoLevel { split: 8 },
    };
    let smmu = testing::smmu(opts, strtab, CMDQ, EVTQ, devices(), &mem);
    let mut m = Machine::new(mem, 1, vec![cpu_ctx()]);
    m.attach_smmu(smmu);
    m
}

#[derive(Clone, Debug)]
enum Step {
    /// A CPU store of one word (a page-table descriptor or an L1 pointer).
    Store {
        pa: u64,
        value: u64,
    },
    /// A CPU store of a whole STE or CD, word by word.
    Struct {
        pa: u64,
        words: [u64; 8],
    },
    Dsb(Dsb),
    /// A broadcast TLBI by the CPU (reaches the IOTLB with BTM).
    CpuTlbi {
        va: u64,
        asid: Option<u16>,
    },
    Cmd(Command),
    Access {
        dev: usize,
        va: u64,
        write: bool,
    },
}

/// Addresses for invalidations: mapped at first, or mappable, or never.
const VAS: [u64; 6] = [0, 0x1000, 0x2000, 0x20_0000, 0x20_1000, 0x4000_0000];
/// Addresses devices access: those the initial tables map, mostly.
const ACCESS_VAS: [u64; 5] = [0, 0x1010, 0x2000, 0x20_0000, 0x20_1000];

fn word_stores() -> impl Strategy<Value = Step> {
    let slots = vec![
        L0,
        L1,
        L2,
        L2 + 8,
        L3,
        L3 + 8,
        L3 + 16,
        L3B,
        L3B + 8,
        S2_L3,
        S2_L3 + 8 * ((L3 >> 12) & 0x1ff),
    ];
    let values = vec![
        0,
        table(L1),
        table(L2),
        table(L3),
        table(L3B),
        s1_page(0x50_0000, true, false, false),
        s1_page(0x51_0000, false, false, false),
        s1_page(0x52_0000, true, false, true),
        s1_block(0x60_0000, true, false, false),
        s2_page(0x60_0000, true, false),
        s2_page(L3, true, true),
    ];
    let desc = (prop::sample::select(slots), prop::sample::select(values))
        .prop_map(|(pa, value)| Step::Store { pa, value });
    let l1 = prop_oneof![
        prop::sample::select(vec![l1std(L2A), l1std(L2B), 0])
            .prop_map(|value| Step::Store { pa: STRTAB, value }),
        prop::sample::select(vec![l1cd(CDTA), l1cd(CDTB), 0])
            .prop_map(|value| Step::Store { pa: L1CDT, value }),
    ];
    prop_oneof![3 => desc, 1 => l1]
}

fn struct_stores() -> impl Strategy<Value = Step> {
    let ste_slots = vec![
        L2A + 64 * u64::from(SID1),
        L2B + 64 * u64::from(SID1),
        L2A + 64 * u64::from(SID2),
        L2B + 64 * u64::from(SID2),
    ];
    let stes = vec![
        ste_single_cd(),
        ste_two_level_cd(),
        ste_linear_cd_table(),
        ste_s2(),
        ste_nested(),
        Ste::bypass().encode(),
        [0; 8],
    ];
    let cd_slots = vec![CDA, CDTA + 64, CDTA + 128, CDTB + 64, CDTB + 128];
    let cds = vec![cd(1, L0), cd(2, L0), cd(2, L0B), cd(3, L0), [0; 8]];
    prop_oneof![
        (prop::sample::select(ste_slots), prop::sample::select(stes))
            .prop_map(|(pa, words)| Step::Struct { pa, words }),
        (prop::sample::select(cd_slots), prop::sample::select(cds))
            .prop_map(|(pa, words)| Step::Struct { pa, words }),
    ]
}

fn tlbi_addr() -> impl Strategy<Value = TlbiAddr> {
    let va = prop::sample::select(VAS.to_vec());
    prop_oneof![
        (va.clone(), any::<bool>()).prop_map(|(va, leaf)| TlbiAddr::single(va, leaf)),
        (va, any::<bool>(), 0u8..4, 0u8..4, 0u8..2).prop_map(|(va, leaf, ttl, num, scale)| {
            TlbiAddr::range(va, leaf, Granule::K4, ttl, num, scale)
        }),
    ]
}

fn commands() -> impl Strategy<Value = Command> {
    let asid = prop::sample::select(vec![1u16, 2, 3]);
    let sid = prop::sample::select(vec![SID1, SID2]);
    let ssid = prop::sample::select(vec![0u32, 1, 2]);
    prop_oneof![
        (asid.clone(), tlbi_addr()).prop_map(|(asid, va)| Command::TlbiNhVa { vmid: 0, asid, va }),
        (asid.clone(), tlbi_addr()).prop_map(|(asid, va)| Command::TlbiNhVa {
            vmid: S2_VMID,
            asid,
            va
        }),
        asid.prop_map(|asid| Command::TlbiNhAsid { vmid: 0, asid }),
        prop::sample::select(vec![0u16, S2_VMID]).prop_map(|vmid| Command::TlbiNhAll { vmid }),
        Just(Command::TlbiS12Vmall { vmid: S2_VMID }),
        tlbi_addr().prop_map(|ipa| Command::TlbiS2Ipa { vmid: S2_VMID, ipa }),
        (sid.clone(), any::<bool>()).prop_map(|(sid, leaf)| Command::CfgiSte { sid, leaf }),
        (sid.clone(), ssid.clone(), any::<bool>()).prop_map(|(sid, ssid, leaf)| Command::CfgiCd {
            sid,
            ssid,
            leaf
        }),
        sid.clone().prop_map(|sid| Command::CfgiCdAll { sid }),
        Just(Command::CfgiSteRange { sid: 0, range: 31 }),
        (
            sid,
            any::<bool>(),
            ssid,
            prop::sample::select(VAS.to_vec()),
            prop::sample::select(vec![0u8, 1, 9, 52]),
        )
            .prop_map(|(sid, ssv, ssid, addr, size)| Command::AtcInv {
                sid,
                ssv,
                ssid,
                global: false,
                addr,
                size,
            }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => word_stores(),
        2 => struct_stores(),
        2 => prop::sample::select(vec![Dsb::Ish, Dsb::Ishst]).prop_map(Step::Dsb),
        1 => (
            prop::sample::select(VAS.to_vec()),
            prop::sample::select(vec![None, Some(1u16), Some(2)])
        )
            .prop_map(|(va, asid)| Step::CpuTlbi { va, asid }),
        5 => commands().prop_map(Step::Cmd),
        2 => Just(Step::Cmd(sync())),
        8 => (0usize..4, prop::sample::select(ACCESS_VAS.to_vec()), any::<bool>())
            .prop_map(|(dev, va, write)| Step::Access { dev, va, write }),
    ]
}

fn geometry() -> impl Strategy<Value = CostGeometry> {
    let g = |sets: Vec<usize>, ways: Vec<usize>| {
        (prop::sample::select(sets), prop::sample::select(ways))
            .prop_map(|(sets, ways)| Geometry { sets, ways })
    };
    (
        g(vec![1, 2, 64], vec![1, 2, 4]),
        g(vec![1, 2, 16], vec![1, 2, 4]),
        g(vec![1, 2], vec![1, 2]),
    )
        .prop_map(|(iotlb, config, atc)| CostGeometry { iotlb, config, atc })
}

/// Submits `cmd`; a command error is acknowledged with a CMD_SYNC written
/// over the offending command, as Linux does. The realistic caches see
/// everything consumed.
fn submit(m: &mut Machine, costs: &mut SmmuCosts, cmd: Command, step: u32) {
    let smmu = m.smmu.as_mut().unwrap();
    let mut c: Consumed = smmu.submit(&mut m.mem, cmd.encode(), step).unwrap();
    costs.commands_consumed(smmu, &c);
    while c.error.is_some() {
        c = smmu.acknowledge_error(&mut m.mem, Some(sync().encode()), step);
        costs.commands_consumed(smmu, &c);
    }
}

fn run(m: &mut Machine, costs: &mut SmmuCosts, s: &Step, step: u32) {
    match s {
        Step::Store { pa, value } => m.store(step, 0, Pa(*pa), *value).unwrap(),
        Step::Struct { pa, words } => {
            for (i, w) in words.iter().enumerate() {
                m.store(step, 0, Pa(pa + 8 * i as u64), *w).unwrap();
            }
        }
        Step::Dsb(kind) => {
            m.dsb(step, 0, *kind);
            costs.cpu_dsb(0, *kind);
        }
        Step::CpuTlbi { va, asid } => {
            let scope = InvalScope {
                regime: Regime::El10,
                stages: StageSel::STAGE1,
                vmid: Some(0),
                asid: match asid {
                    Some(a) => AsidSel::Only {
                        asid: *a,
                        with_global: true,
                    },
                    None => AsidSel::Any,
                },
                range: Some(InputRange::Va(tlbcheck_hw::addr::AddrRange::from_len(
                    *va, 0x1000,
                ))),
                granule: None,
                leaf_only: false,
                ttl_level: None,
            };
            m.tlbi(step, 0, scope, true);
            costs.cpu_tlbi(m.smmu.as_ref().unwrap(), 0, &scope, true);
        }
        Step::Cmd(c) => submit(m, costs, *c, step),
        Step::Access { dev, va, write } => {
            // The may-hold sets do not change on an access (they already
            // allow every fill), so only the realistic side is driven.
            let smmu = m.smmu.as_ref().unwrap();
            costs.device_access(smmu, &m.mem, *dev, Va(*va), *write);
        }
    }
}

/// Every realistic entry is in the matching may-hold set.
fn check_within(m: &Machine, costs: &SmmuCosts) -> Result<(), String> {
    let smmu = m.smmu.as_ref().unwrap();
    for e in costs.iotlb.entries() {
        if !smmu.iotlb.contains(e) {
            return Err(format!(
                "realistic IOTLB holds {e} outside the may-hold IOTLB"
            ));
        }
    }
    for (d, atc) in costs.atc.iter().enumerate() {
        for e in atc.iter().flat_map(|a| a.entries()) {
            if !smmu.devices[d].atc.contains(e) {
                return Err(format!(
                    "realistic ATC of device {d} holds {e} outside its may-hold ATC"
                ));
            }
        }
    }
    for e in costs.config.entries() {
        if !smmu.config.contains(e) {
            return Err(format!(
                "realistic config cache holds {e} outside the may-hold config cache"
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn realistic_smmu_caches_stay_within_the_may_hold_sets(
        btm in any::<bool>(),
        ptm in any::<bool>(),
        geometry in geometry(),
        steps in prop::collection::vec(step(), 1..60),
    ) {
        let opts = SmmuOptions { btm, ptm, ..SmmuOptions::default() };
        let mut m = initial(opts);
        let mut costs = SmmuCosts::new(m.smmu.as_ref().unwrap(), geometry);
        for (n, s) in steps.iter().enumerate() {
            let step = n as u32 + 1;
            run(&mut m, &mut costs, s, step);
            if let Err(why) = check_within(&m, &costs) {
                prop_assert!(false, "step {} ({:?}): {}", step, s, why);
            }
        }
    }
}

// ---------------------------------------------------------------------
// Fixed sequences: what the counters show.

fn fixture() -> (Machine, SmmuCosts) {
    let m = initial(SmmuOptions::default());
    let costs = SmmuCosts::new(m.smmu.as_ref().unwrap(), CostGeometry::default());
    (m, costs)
}

fn access(m: &Machine, costs: &mut SmmuCosts, dev: usize, va: u64) {
    costs.device_access(m.smmu.as_ref().unwrap(), &m.mem, dev, Va(va), false);
}

/// SMMUv3 5.1-5.4, 16.2: the first access fetches L1STD, STE, L1CD and CD
/// and walks; the second hits the config cache and the IOTLB.
#[test]
fn second_access_hits_config_cache_and_iotlb() {
    let (m, mut costs) = fixture();
    let smmu = m.smmu.as_ref().unwrap();
    let first = costs.device_access(smmu, &m.mem, 3, Va(0x10), false);
    assert_eq!(first.result, Ok(Pa(0x50_0010)));
    assert_eq!((first.config_hit, first.iotlb_hit), (false, Some(false)));
    let st = costs.stats();
    assert_eq!(st.config.config_fetches, 4, "L1STD, STE, L1CD, CD");
    assert_eq!(st.iotlb.walk_reads, 4, "four levels of 4 KiB tables");
    let second = costs.device_access(smmu, &m.mem, 3, Va(0x20), false);
    assert_eq!((second.config_hit, second.iotlb_hit), (true, Some(true)));
    let st = costs.stats();
    assert_eq!((st.iotlb.hits, st.iotlb.misses), (1, 1));
    assert_eq!((st.config.hits, st.config.config_fetches), (2, 4));
}

/// SMMUv3 3.9, 4.5.1, 4.7.3: an ATS device's second access hits its ATC;
/// ATC_INV takes effect only at CMD_SYNC, after which the ATC misses and
/// the ATS request is answered by the IOTLB.
#[test]
fn atc_invalidation_completes_at_cmd_sync() {
    let (mut m, mut costs) = fixture();
    access(&m, &mut costs, 1, 0x10);
    access(&m, &mut costs, 1, 0x10);
    let atc = costs.stats().atc[1].unwrap();
    assert_eq!((atc.hits, atc.misses), (1, 1));
    let inv = Command::AtcInv {
        sid: SID1,
        ssv: false,
        ssid: 0,
        global: false,
        addr: 0,
        size: 0,
    };
    submit(&mut m, &mut costs, inv, 1);
    assert_eq!(costs.pending_invalidations(), 1);
    assert_eq!(costs.atc[1].as_ref().unwrap().entries().count(), 1);
    submit(&mut m, &mut costs, sync(), 2);
    assert_eq!(costs.atc[1].as_ref().unwrap().entries().count(), 0);
    let smmu = m.smmu.as_ref().unwrap();
    let a = costs.device_access(smmu, &m.mem, 1, Va(0x10), false);
    assert_eq!((a.atc_hit, a.iotlb_hit), (Some(false), Some(true)));
    assert!(check_within(&m, &costs).is_ok());
}

/// SMMUv3 4.3.1, 4.4.2.2: CMD_CFGI_STE drops the STE and the CDs cached
/// under the StreamID; CMD_TLBI_NH_ASID drops the ASID's IOTLB entries.
#[test]
fn cfgi_and_tlbi_drop_their_scope_at_sync() {
    let (mut m, mut costs) = fixture();
    access(&m, &mut costs, 0, 0x10);
    access(&m, &mut costs, 3, 0x10);
    let held = costs.config.entries().count();
    assert_eq!(held, 6, "L1STD, STE x2, L1CD, CD x2");
    submit(
        &mut m,
        &mut costs,
        Command::CfgiSte {
            sid: SID2,
            leaf: true,
        },
        1,
    );
    submit(
        &mut m,
        &mut costs,
        Command::TlbiNhAsid { vmid: 0, asid: 1 },
        2,
    );
    submit(&mut m, &mut costs, sync(), 3);
    let st = costs.stats();
    assert_eq!(st.config.invalidated, 3, "STE, L1CD and CD of StreamID 2");
    assert_eq!(st.iotlb.invalidated, 4, "ASID 1's walk and leaf entries");
    assert!(check_within(&m, &costs).is_ok());
}
