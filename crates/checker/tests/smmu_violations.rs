//! One buggy/fixed model pair per SMMU behaviour: the buggy model must
//! produce the named violation, its fixed twin must explore clean.

use tlbcheck_checker::explore::{explore, Coverage};
use tlbcheck_checker::model::{Bounds, Model, Thread};
use tlbcheck_checker::op::{GuestBatch, GuestEntry, Op, Rely};
use tlbcheck_checker::sync::SyncState;
use tlbcheck_checker::violation::ViolationKind;
use tlbcheck_hw::addr::{AddrRange, Granule, InputRange, Pa, Va};
use tlbcheck_hw::machine::{Dsb, Machine};
use tlbcheck_hw::mem::{FrameOwner, Pfn, PhysMem, TableOwner};
use tlbcheck_hw::smmu::cd::{Cd, L1Cd};
use tlbcheck_hw::smmu::cmd::{Command, PriResp, TlbiAddr};
use tlbcheck_hw::smmu::config::{StrtabConfig, StrtabFmt};
use tlbcheck_hw::smmu::model::{Device, DeviceState, SmmuOptions};
use tlbcheck_hw::smmu::ste::{S1Fmt, Ste};
use tlbcheck_hw::testing::{self, chain4k, claim_chain4k, put_words, s1_ctx};
use tlbcheck_hw::tlb::{AsidSel, InvalScope, Regime, StageSel};
use tlbcheck_hw::vmsa::desc::s1_page;

const STRTAB: u64 = 0x10_0000;
const CD: u64 = 0x10_1000;
const CMDQ: u64 = 0x10_2000;
const EVTQ: u64 = 0x10_3000;
const L0: u64 = 0x10_4000;
const L3: u64 = 0x10_7000;
const DATA: u64 = 0x10_8000;
/// Two level-2 CD tables for the L1CD scenario.
const CD_A: u64 = 0x10_9000;
const CD_B: u64 = 0x10_a000;
const SID: u32 = 3;

struct Setup {
    opts: SmmuOptions,
    /// Device: SubstreamID, ATS, PRI.
    ssid: Option<u32>,
    ats: bool,
    pri: bool,
    /// CD.S: stall on stage-1 faults.
    stall: bool,
    /// ASID of the device's CD (the CPU process uses ASID 1).
    asid: u16,
    /// 2-level CD table: L1CD[0] at CD -> CD_A.
    two_level_cd: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            opts: SmmuOptions::default(),
            ssid: None,
            ats: false,
            pri: false,
            stall: true,
            asid: 1,
            two_level_cd: false,
        }
    }
}

/// A process (ASID 1) whose VA 0 maps DATA read-only, run by two CPUs and
/// shared with device 0 (SVA: its CD points at the same tables).
fn model(name: &str, s: Setup, threads: Vec<Thread>) -> Model {
    let mut mem = PhysMem::new(Pfn(0x100), 32);
    for pa in [STRTAB, CD, CMDQ, EVTQ, CD_A, CD_B] {
        mem.claim(Pfn::of(Pa(pa)), FrameOwner::Smmu).unwrap();
    }
    claim_chain4k(&mut mem, L0, TableOwner::Stage1 { space: 1 });
    mem.claim(Pfn::of(Pa(DATA)), FrameOwner::Data { space: 1 })
        .unwrap();
    assert_eq!(chain4k(&mut mem, L0), L3);
    mem.write(Pa(L3), s1_page(DATA, false, true, false))
        .unwrap();
    let mut cd = Cd::new(s.asid, L0, Granule::K4);
    cd.s = s.stall;
    let mut ste = Ste::stage1(CD);
    ste.eats = u8::from(s.ats);
    if s.two_level_cd {
        ste.s1_fmt = S1Fmt::TwoLevel4K;
        ste.s1_cd_max = 4;
        let slot = 64 * u64::from(s.ssid.unwrap_or(0));
        put_words(&mut mem, CD_A + slot, &cd.encode());
        put_words(&mut mem, CD_B + slot, &cd.encode());
        mem.write(
            Pa(CD),
            L1Cd {
                valid: true,
                l2ptr: CD_A,
            }
            .encode(),
        )
        .unwrap();
    } else {
        put_words(&mut mem, CD, &cd.encode());
    }
    put_words(&mut mem, STRTAB + 64 * u64::from(SID), &ste.encode());
    let ctx = s1_ctx(Granule::K4, L0, 1, 0);
    let mut machine = Machine::new(mem, 2, vec![ctx]);
    let strtab = StrtabConfig {
        base: STRTAB,
        log2size: 4,
        fmt: StrtabFmt::Linear,
    };
    let devices = vec![Device::new(SID, s.ssid, s.ats, s.pri)];
    let smmu = testing::smmu(s.opts, strtab, CMDQ, EVTQ, devices, &machine.mem);
    machine.attach_smmu(smmu);
    Model {
        name: name.into(),
        machine,
        sync: SyncState::new(0, 0, threads.len()),
        threads,
        contexts: vec![ctx],
        context_names: vec!["process 1".into()],
    }
}

/// CMD_SYNC with SEV completion.
fn sync() -> Op {
    Op::SmmuSync {
        words: Command::SYNC_SEV.encode(),
    }
}

/// The handler's answer: CMD_RESUME with retry, or a successful PRI response.
fn linux_resume(d: &Device) -> Option<Command> {
    match d.state {
        DeviceState::Stalled { stag, .. } => Some(Command::Resume {
            sid: d.sid,
            stag,
            retry: true,
            abort: false,
        }),
        DeviceState::AwaitingPri { grpid, .. } => Some(Command::PriResp {
            sid: d.sid,
            ssv: d.ssid.is_some(),
            ssid: d.ssid.unwrap_or(0),
            grpid,
            resp: PriResp::Success,
        }),
        _ => None,
    }
}

fn script(ops: Vec<Op>) -> std::sync::Arc<tlbcheck_checker::program::Script> {
    std::sync::Arc::new(tlbcheck_checker::program::Script::new(ops))
}

fn cpu(ops: Vec<Op>) -> Thread {
    Thread {
        name: "kernel".into(),
        cpu: 0,
        program: script(ops),
        owns_vmids: None,
    }
}

fn device(ops: Vec<Op>) -> Thread {
    Thread {
        name: "device 0".into(),
        cpu: 1,
        program: script(ops),
        owns_vmids: None,
    }
}

fn smmu(c: Command) -> Op {
    Op::SmmuCmd {
        text: c.to_string(),
        words: c.encode(),
    }
}

fn store(pa: u64, value: u64) -> Op {
    Op::Store { pa: Pa(pa), value }
}

fn dsb(kind: Dsb) -> Op {
    Op::Dsb { kind }
}

/// TLBI VAE1IS for ASID 1, VA 0 (what the arch code issues for the CPU).
fn cpu_tlbi() -> Op {
    Op::Tlbi {
        text: "vae1is asid=1 va=0".into(),
        ins: tlbcheck_hw::cpu::tlbi::Tlbi::new(tlbcheck_hw::cpu::tlbi::TlbiOp::VAE1, true),
        raw: Some(1 << 48),
        scope: InvalScope {
            regime: Regime::El10,
            stages: StageSel::STAGE1,
            vmid: Some(0),
            asid: AsidSel::Only {
                asid: 1,
                with_global: true,
            },
            range: Some(InputRange::Va(AddrRange::from_len(0, 0x1000))),
            granule: None,
            leaf_only: false,
            ttl_level: None,
        },
        broadcast: true,
    }
}

fn nh_va() -> Op {
    smmu(Command::TlbiNhVa {
        vmid: 0,
        asid: 1,
        va: TlbiAddr::single(0, false),
    })
}

fn atc_inv() -> Op {
    smmu(Command::AtcInv {
        sid: SID,
        ssv: false,
        ssid: 0,
        global: false,
        addr: 0,
        size: 0,
    })
}

/// The permission-upgrade fault path of seeds 000/004: the device writes a
/// read-only page and faults; the handler makes the PTE writable, runs
/// `fix`, and resumes the device.
fn upgrade(fix: Vec<Op>) -> Vec<Thread> {
    let mut ops = vec![
        Op::AwaitFault { dev: 0 },
        store(L3, s1_page(DATA, true, true, false)),
        dsb(Dsb::Ishst),
        cpu_tlbi(),
        dsb(Dsb::Ish),
    ];
    ops.extend(fix);
    ops.push(Op::DeviceResume {
        dev: 0,
        respond: linux_resume,
    });
    vec![
        cpu(ops),
        device(vec![Op::DeviceAccess {
            dev: 0,
            va: Va(0),
            write: true,
        }]),
    ]
}

fn check(m: &Model) -> Option<ViolationKind> {
    let v = explore(m, Bounds::default());
    if v.violation.is_none() {
        assert_eq!(
            v.coverage,
            Coverage::Complete,
            "{}: clean runs must be complete",
            m.name
        );
    } else if let Some(t) = &v.trace {
        // The counterexample replays and names an SMMU agent or the config cache.
        let text = t.render_text();
        assert!(text.contains("violation"), "{text}");
    }
    v.violation.map(|v| v.kind)
}

#[test]
fn sva_without_btm_needs_an_smmu_tlbi_on_permission_upgrade() {
    let buggy = model(
        "sva no btm, cpu tlbi only",
        Setup::default(),
        upgrade(vec![]),
    );
    assert_eq!(check(&buggy), Some(ViolationKind::FaultLivelock));
    let fixed = model(
        "sva no btm, + TLBI_NH_VA + CMD_SYNC",
        Setup::default(),
        upgrade(vec![nh_va(), sync()]),
    );
    assert_eq!(check(&fixed), None);
}

fn btm() -> SmmuOptions {
    SmmuOptions {
        btm: true,
        ptm: false,
        ..SmmuOptions::default()
    }
}

#[test]
fn btm_with_a_shared_asid_needs_no_smmu_command() {
    let s = Setup {
        opts: btm(),
        ..Setup::default()
    };
    assert_eq!(check(&model("btm shared asid", s, upgrade(vec![]))), None);
    // The SMMU ignores broadcasts that do not match its ASID.
    let s = Setup {
        opts: btm(),
        asid: 2,
        ..Setup::default()
    };
    assert_eq!(
        check(&model("btm, smmu asid differs", s, upgrade(vec![]))),
        Some(ViolationKind::FaultLivelock)
    );
}

fn ats_pri() -> Setup {
    Setup {
        ats: true,
        pri: true,
        stall: false,
        ..Setup::default()
    }
}

#[test]
fn btm_never_reaches_the_atc() {
    let s = Setup {
        opts: btm(),
        ..ats_pri()
    };
    assert_eq!(
        check(&model("btm + ats, no ATC_INV", s, upgrade(vec![]))),
        Some(ViolationKind::FaultLivelock)
    );
    let s = Setup {
        opts: btm(),
        ..ats_pri()
    };
    assert_eq!(
        check(&model(
            "btm + ats, ATC_INV + CMD_SYNC",
            s,
            upgrade(vec![atc_inv(), sync()])
        )),
        None
    );
}

#[test]
fn atc_inv_before_the_tlbi_completed_lets_the_atc_refill() {
    let buggy = model(
        "ATC_INV, TLBI, one CMD_SYNC",
        ats_pri(),
        upgrade(vec![atc_inv(), nh_va(), sync()]),
    );
    assert_eq!(check(&buggy), Some(ViolationKind::FaultLivelock));
    let fixed = model(
        "TLBI, CMD_SYNC, ATC_INV, CMD_SYNC",
        ats_pri(),
        upgrade(vec![nh_va(), sync(), atc_inv(), sync()]),
    );
    assert_eq!(check(&fixed), None);
}

/// SMMUv3 5.3 / 4.3.3: moving SubstreamID 1's level-2 CD table from A to B
/// changes the L1CD; CFGI_CD with Leaf = 1 leaves the cached L1CD pointing
/// at A, so freeing A is a stale-config use after free.
fn l1cd_move(leaf: bool) -> Model {
    let s = Setup {
        ssid: Some(1),
        stall: false,
        two_level_cd: true,
        ..Setup::default()
    };
    let ops = vec![
        store(
            CD,
            L1Cd {
                valid: true,
                l2ptr: CD_B,
            }
            .encode(),
        ),
        dsb(Dsb::Ish),
        smmu(Command::CfgiCd {
            sid: SID,
            ssid: 1,
            leaf,
        }),
        sync(),
        Op::Free {
            frame: Pfn::of(Pa(CD_A)),
        },
    ];
    model(
        if leaf {
            "CFGI_CD Leaf=1"
        } else {
            "CFGI_CD Leaf=0"
        },
        s,
        vec![cpu(ops)],
    )
}

#[test]
fn cfgi_cd_leaf_keeps_a_stale_l1cd() {
    assert_eq!(check(&l1cd_move(true)), Some(ViolationKind::StaleConfig));
    assert_eq!(check(&l1cd_move(false)), None);
}

/// Changing the STE (here: a new ASID in the CD) and relying on it needs
/// CFGI_CD + CMD_SYNC.
#[test]
fn relying_on_a_changed_cd_needs_its_invalidation() {
    let new_cd = Cd::new(7, L0, Granule::K4).encode();
    let run = |fix: Vec<Op>| {
        let mut ops = vec![store(CD, new_cd[0]), dsb(Dsb::Ish)];
        ops.extend(fix);
        ops.push(Op::Rely(Rely::CurrentConfig { dev: 0 }));
        model("cd asid change", Setup::default(), vec![cpu(ops)])
    };
    assert_eq!(check(&run(vec![])), Some(ViolationKind::StaleConfig));
    assert_eq!(
        check(&run(vec![
            smmu(Command::CfgiCd {
                sid: SID,
                ssid: 0,
                leaf: true
            }),
            sync()
        ])),
        None
    );
}

/// DMA unmap: the CPU side is invalidated, the SMMU IOTLB is not, and the
/// data page is freed: the device may still write into it.
#[test]
fn freeing_a_page_the_iotlb_may_map_is_freed_frame_mapped() {
    let run = |fix: Vec<Op>| {
        let mut ops = vec![store(L3, 0), dsb(Dsb::Ishst), cpu_tlbi(), dsb(Dsb::Ish)];
        ops.extend(fix);
        ops.push(Op::Free {
            frame: Pfn::of(Pa(DATA)),
        });
        model("dma unmap", Setup::default(), vec![cpu(ops)])
    };
    let v = explore(&run(vec![]), Bounds::default());
    let v = v.violation.expect("violation");
    assert_eq!(v.kind, ViolationKind::FreedFrameMapped);
    assert_eq!(v.agent.to_string(), "SMMU IOTLB");
    assert_eq!(check(&run(vec![nh_va(), sync()])), None);
}

/// Marking the page read-only and relying on it (COW) while the IOTLB may
/// still hold a writable entry is a stale write by DMA.
#[test]
fn rely_read_only_covers_the_iotlb() {
    let run = |fix: Vec<Op>| {
        let mut ops = vec![
            store(L3, s1_page(DATA, true, true, false)),
            dsb(Dsb::Ish),
            store(L3, s1_page(DATA, false, true, false)),
            dsb(Dsb::Ishst),
            cpu_tlbi(),
            dsb(Dsb::Ish),
        ];
        ops.extend(fix);
        ops.push(Op::Rely(Rely::ReadOnly { ctx: 0, va: Va(0) }));
        model("cow", Setup::default(), vec![cpu(ops)])
    };
    assert_eq!(check(&run(vec![])), Some(ViolationKind::StaleWrite));
    assert_eq!(check(&run(vec![nh_va(), sync()])), None);
}

/// An illegal command stops the queue: the CMD_SYNC behind it never
/// completes, so the handler can never go on: `stuck`, not a pass.
#[test]
fn cerror_ill_blocks_the_sync_and_the_handler_is_stuck() {
    let bad = Op::SmmuCmd {
        text: "opcode 0xff".into(),
        words: [0xff, 0],
    };
    let m = model(
        "illegal command",
        Setup::default(),
        upgrade(vec![nh_va(), bad, sync()]),
    );
    let v = explore(&m, Bounds::default());
    let stuck = v.violation.expect("the handler never finishes");
    assert_eq!(stuck.kind, ViolationKind::Stuck);
    assert!(stuck.detail.contains("CMD_SYNC"), "{}", stuck.detail);
    assert!(stuck.detail.contains("stopped"), "{}", stuck.detail);
    // The trace replays to the same stuck state.
    let t = v.trace.expect("a trace");
    assert_eq!(t.violation.map(|v| v.kind), Some(ViolationKind::Stuck));
}

/// The trace names the SMMU command that should have removed the stale
/// IOTLB entry and why it did not: no CMD_SYNC completed it.
#[test]
fn counterexample_blames_the_unsynced_smmu_tlbi() {
    let m = model(
        "sva no btm, TLBI_NH_VA without CMD_SYNC",
        Setup::default(),
        upgrade(vec![nh_va()]),
    );
    let v = explore(&m, Bounds::default());
    assert_eq!(
        v.violation.as_ref().map(|v| v.kind),
        Some(ViolationKind::FaultLivelock)
    );
    let blame = v.trace.unwrap().should_have_removed.unwrap();
    assert!(
        blame.contains("smmu cmd") && blame.contains("no CMD_SYNC completed it"),
        "{blame}"
    );
}

/// An SMMU TLBI consumed before the PTE is cleared may be performed before
/// the store: the SMMU refills the old leaf, which survives the CMD_SYNC.
#[test]
fn smmu_tlbi_before_the_table_update_is_freed_frame_mapped() {
    let run = |ops: Vec<Op>| {
        let mut ops = ops;
        ops.push(Op::Free {
            frame: Pfn::of(Pa(DATA)),
        });
        model("dma unmap order", Setup::default(), vec![cpu(ops)])
    };
    // The CPU side is in the right order in both runs.
    let cpu_side = || vec![store(L3, 0), dsb(Dsb::Ishst), cpu_tlbi(), dsb(Dsb::Ish)];
    let mut early = vec![nh_va()];
    early.extend(cpu_side());
    early.push(sync());
    let v = explore(&run(early), Bounds::default())
        .violation
        .expect("violation");
    assert_eq!(
        (v.kind, v.agent.to_string()),
        (ViolationKind::FreedFrameMapped, "SMMU IOTLB".to_string())
    );
    let mut right = cpu_side();
    right.extend([nh_va(), sync()]);
    assert_eq!(check(&run(right)), None);
}

/// The explanation depends on which cache holds the stale entry: a CPU TLBI
/// cannot reach an SMMU without BTM, and only ATC_INV reaches an ATC (and
/// only after the TLBI it follows has completed).
#[test]
fn blame_names_the_reason_for_the_holding_cache() {
    let blame = |m: &Model| {
        let v = explore(m, Bounds::default());
        v.trace
            .and_then(|t| t.should_have_removed)
            .unwrap_or_default()
    };
    let no_btm = model("sva no btm", Setup::default(), upgrade(vec![]));
    assert!(
        blame(&no_btm).contains("only with broadcast TLB maintenance"),
        "{}",
        blame(&no_btm)
    );
    let early_atc_inv = model(
        "atc order",
        ats_pri(),
        upgrade(vec![atc_inv(), nh_va(), sync()]),
    );
    let b = blame(&early_atc_inv);
    assert!(
        b.contains("CMD_ATC_INV") && b.contains("before the ATC_INV"),
        "{b}"
    );
}

/// A guest (VMID 0 here, the STE's S2VMID) unmaps VA 0 and issues one
/// `CMD_TLBI_NH_VA` (ASID 1, VA 0); the host issues `host` for it, then a
/// CMD_SYNC, and the guest relies on the batch.
fn guest_batch(name: &str, host: Vec<Command>) -> Model {
    let mine = Command::TlbiNhVa {
        vmid: 0,
        asid: 1,
        va: TlbiAddr::single(0, false),
    };
    let mut ops = vec![store(L3, 0), dsb(Dsb::Ish)];
    ops.extend(host.iter().map(|c| smmu(*c)));
    ops.push(sync());
    ops.push(Op::Rely(Rely::GuestBatch(Box::new(GuestBatch {
        guest: "g".into(),
        vmid: 0,
        sids: vec![SID],
        batch: 0,
        host: "test".into(),
        entries: vec![GuestEntry {
            index: 0,
            words: mine.encode(),
            believed: true,
            expect: vec![mine.encode()],
            host: host.iter().map(Command::encode).collect(),
        }],
        refused: None,
    }))));
    model(name, Setup::default(), vec![cpu(ops)])
}

#[test]
fn a_guest_command_the_host_drops_is_missed() {
    let nh_va = |vmid| Command::TlbiNhVa {
        vmid,
        asid: 1,
        va: TlbiAddr::single(0, false),
    };
    let dropped = guest_batch("dropped", vec![]);
    assert_eq!(
        check(&dropped),
        Some(ViolationKind::MissedGuestInvalidation)
    );
    let done = guest_batch("done", vec![nh_va(0)]);
    assert_eq!(check(&done), None);
    // A command for another VMID crosses, whatever it removes.
    let crossed = guest_batch("crossed", vec![nh_va(0), Command::TlbiNhAll { vmid: 9 }]);
    assert_eq!(check(&crossed), Some(ViolationKind::Isolation));
    let every = guest_batch("every VMID", vec![Command::TlbiNsnhAll]);
    assert_eq!(check(&every), Some(ViolationKind::Isolation));
    // A StreamID the guest does not own.
    let other = guest_batch(
        "other device",
        vec![nh_va(0), Command::CfgiCdAll { sid: 77 }],
    );
    assert_eq!(check(&other), Some(ViolationKind::Isolation));
}

/// The guest's expectation is what a correct SMMU does for its commands,
/// whatever the physical queue's state: a host that stopped the queue with
/// an illegal command (and never issued the guest's TLBI) has still missed
/// it, although the stopped queue would consume nothing more.
#[test]
fn a_stopped_physical_queue_does_not_shrink_the_guests_expectation() {
    let mine = Command::TlbiNhVa {
        vmid: 0,
        asid: 1,
        va: TlbiAddr::single(0, false),
    };
    // CMD_TLBI_NH_ALL with RES0 bit 10 of dw0 set: CERROR_ILL.
    let illegal = [0x410, 0];
    let ops = vec![
        store(L3, 0),
        dsb(Dsb::Ish),
        Op::SmmuCmd {
            text: "illegal".into(),
            words: illegal,
        },
        Op::Rely(Rely::GuestBatch(Box::new(GuestBatch {
            guest: "g".into(),
            vmid: 0,
            sids: vec![SID],
            batch: 0,
            host: "test".into(),
            entries: vec![GuestEntry {
                index: 0,
                words: mine.encode(),
                believed: true,
                expect: vec![mine.encode()],
                host: vec![illegal],
            }],
            refused: None,
        }))),
    ];
    let m = model("stopped queue", Setup::default(), vec![cpu(ops)]);
    assert_eq!(check(&m), Some(ViolationKind::MissedGuestInvalidation));
}
