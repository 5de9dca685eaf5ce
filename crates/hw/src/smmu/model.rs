//! The SMMU as the checker sees it: configuration read from memory, a
//! config cache and an IOTLB as may-hold sets, a Command queue whose
//! invalidations complete only at CMD_SYNC, broadcast TLB maintenance,
//! endpoint devices with ATCs, and the stall and PRI fault paths.
//!
//! Completion follows the rule [`crate::machine`] uses for TLBIs: an
//! invalidation may be performed as soon as it is consumed, so it removes
//! only the entries it covered then, and only when a later CMD_SYNC
//! completes (SMMUv3 4.7.3: "CMD_SYNC is consumed when all prior
//! invalidations have completed"; 4.3, 4.4: consumption does not guarantee
//! completion). Between consumption and the CMD_SYNC the SMMU may refill
//! from tables as its walkers saw them, so completion re-closes the may-hold
//! sets against that window of memory.
//!
//! Commands are consumed as soon as PROD moves past them: the earliest
//! moment is the worst for software, because every refill after it survives.

use super::cmd::{CmdError, Command, PriResp, SyncCs, TlbiAddr};
use super::config::{
    cd_split_for, close_config, held_configs, lookup, CfgEntry, CfgiScope, ConfigCache,
    ConfigFault, ResolvedConfig, StrtabConfig,
};
use super::event::{Access as EvAccess, EventBody, EventRecord, FaultClass, FaultInfo};
use super::queue::{CmdQueue, CmdqError, EventQueue, QueueFull};
use super::ste::{SmmuFeatures, StreamConfig};
use crate::addr::{AddrRange, InputRange, Pa, Va};
use crate::machine::{output_range, Dsb, SMMU_AGENT};
use crate::mem::{PendingStore, PhysMem};
use crate::tlb::closure::close;
use crate::tlb::{
    Access, AsidSel, EntryKind, Holder, InvalScope, MayHold, Provenance, Regime, Stage, StageSel,
    TlbEntry,
};
use crate::vmsa::desc::TableStage;
use crate::vmsa::{translate, Context, Fault, FaultKind, StageConfig};

/// ID and control register facts that change behaviour.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SmmuOptions {
    /// ID-register features used to validate STEs and CDs.
    pub features: SmmuFeatures,
    /// `SMMU_IDR0.BTM`: broadcast TLB maintenance supported (SMMUv3 3.17).
    pub btm: bool,
    /// `SMMU_CR2.PTM`: private TLB maintenance, broadcasts ignored (SMMUv3 3.17, 6.3.12).
    pub ptm: bool,
    /// `SMMU_CR2.E2H`: EL2 StreamWorld uses ASIDs (SMMUv3 3.17.5).
    pub e2h: bool,
}

impl Default for SmmuOptions {
    fn default() -> Self {
        SmmuOptions {
            features: SmmuFeatures::MODEL,
            btm: false,
            ptm: true,
            e2h: false,
        }
    }
}

/// What a device is doing.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DeviceState {
    /// Ready to issue a transaction.
    Idle,
    /// A faulting transaction is stalled until CMD_RESUME or CMD_STALL_TERM
    /// (SMMUv3 3.12.2).
    Stalled {
        /// STAG reported in the event record.
        stag: u16,
        /// Address of the stalled transaction.
        va: Va,
        /// A write.
        write: bool,
    },
    /// The device sent a PRI page request and waits for CMD_PRI_RESP
    /// (SMMUv3 3.9.2, PCIe PRI).
    AwaitingPri {
        /// Page Request Group index.
        grpid: u16,
        /// Address requested.
        va: Va,
        /// Write access requested.
        write: bool,
    },
    /// CMD_RESUME (retry) or a successful CMD_PRI_RESP was consumed: the
    /// device will retry this access, through its caches again.
    Retrying {
        /// Address.
        va: Va,
        /// A write.
        write: bool,
    },
}

/// An endpoint device behind one StreamID (and optional SubstreamID).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Device {
    /// StreamID.
    pub sid: u32,
    /// SubstreamID (PASID) of its transactions, if any.
    pub ssid: Option<u32>,
    /// Uses ATS: translations are cached in its ATC.
    pub ats: bool,
    /// Uses PRI: an ATS translation failure becomes a page request.
    pub pri: bool,
    /// Every translation its ATC may hold.
    pub atc: MayHold,
    /// Current state.
    pub state: DeviceState,
}

impl Device {
    /// A device with an empty ATC, idle.
    pub fn new(sid: u32, ssid: Option<u32>, ats: bool, pri: bool) -> Device {
        Device {
            sid,
            ssid,
            ats,
            pri,
            atc: MayHold::new(),
            state: DeviceState::Idle,
        }
    }
}

/// A consumed invalidation waiting for a CMD_SYNC.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Pending {
    /// TLBI: its scope and the IOTLB entries it covered when consumed.
    Tlb(InvalScope, Vec<TlbEntry>),
    /// CFGI: its scope and the config-cache entries it covered when consumed.
    Cfg(CfgiScope, Vec<CfgEntry>),
    /// ATC_INV for device `dev`: the ATC entries it covered when consumed,
    /// and the IOTLB leaves the ATC may refill from after it was performed
    /// (SMMUv3 4.5.1: a TLBI not completed before ATC_INV lets the device
    /// re-fetch the stale translation).
    Atc {
        dev: usize,
        doomed: Vec<TlbEntry>,
        window: Vec<TlbEntry>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PendingInv {
    what: Pending,
    /// CPU stores not yet visible to the SMMU when it was consumed.
    hazard: Vec<PendingStore>,
}

/// A broadcast TLBI the SMMU took part in, completing at the issuer's DSB.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BtmPending {
    issuer: u8,
    scope: InvalScope,
    doomed: Vec<TlbEntry>,
    hazard: Vec<PendingStore>,
}

/// The observable completion of a CMD_SYNC (SMMUv3 4.7.3).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SyncDone {
    /// Queue index of the CMD_SYNC.
    pub index: u32,
    /// ComplSignal.
    pub cs: SyncCs,
    /// MSI write performed, as (address, data).
    pub msi: Option<(u64, u32)>,
}

/// What one [`Smmu::consume`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Consumed {
    /// Commands consumed, in order.
    pub commands: Vec<Command>,
    /// CMD_SYNCs completed.
    pub syncs: Vec<SyncDone>,
    /// The command error that stopped the queue: the index and the reason.
    pub error: Option<(u32, CmdError)>,
}

/// Outcome of a device transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessOutcome {
    /// Every translation the device may use grants the access.
    Done {
        /// Output PA per the current tables.
        pa: Pa,
    },
    /// A translation the device may use denies it: the event recorded (if
    /// any) and whether the transaction is stalled.
    Fault {
        /// The record written to the Event queue (`None` if not recorded).
        record: Option<EventRecord>,
        /// Stalled awaiting CMD_RESUME.
        stalled: bool,
        /// The entry that denied, when a cached one did.
        entry: Option<TlbEntry>,
    },
    /// The ATC could not obtain a translation: a PRI page request was sent.
    PageRequest {
        /// Page Request Group index.
        grpid: u16,
    },
    /// Configuration error: terminated, with the event (if recorded).
    ConfigError {
        /// Why.
        fault: ConfigFault,
        /// The record written.
        record: Option<EventRecord>,
    },
    /// The device is not idle (stalled or waiting for a PRI response).
    Busy,
}

/// The SMMU and its devices.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Smmu {
    /// ID/control facts.
    pub opts: SmmuOptions,
    /// Stream table registers.
    pub strtab: StrtabConfig,
    /// Command queue.
    pub cmdq: CmdQueue,
    /// Event queue.
    pub evtq: EventQueue,
    /// Config cache (may-hold).
    pub config: ConfigCache,
    /// IOTLB, leaf and walk-cache entries (may-hold).
    pub iotlb: MayHold,
    /// Endpoint devices.
    pub devices: Vec<Device>,
    pending: Vec<PendingInv>,
    btm: Vec<BtmPending>,
}

/// Cached leaves for an access at `va` in `ctx`.
fn leaves(may: &MayHold, ctx: &Context, va: Va) -> Vec<(TlbEntry, Provenance)> {
    let stage = ctx.access_stage();
    let asid = (stage != Stage::S2).then_some(ctx.asid);
    let input = ctx.access_input(va);
    may.leaves_for(ctx.regime, ctx.tag_vmid(), stage, asid, input)
        .map(|(e, p)| (*e, *p))
        .collect()
}

/// The translation scope of an SMMU TLBI command (SMMUv3 4.4).
pub fn tlbi_scope(cmd: &Command, e2h: bool) -> Option<InvalScope> {
    let base = |regime, stages, vmid, asid| InvalScope {
        regime,
        stages,
        vmid,
        asid,
        range: None,
        granule: None,
        leaf_only: false,
        ttl_level: None,
    };
    // `space` names the addresses: VAs, or IPAs for TLBI_S2_IPA.
    let with_addr = |mut s: InvalScope, a: &TlbiAddr, space: fn(AddrRange) -> InputRange| {
        // TG = 0: the single address, any granule, any level; TG != 0:
        // (NUM+1) * 2^SCALE granules, entries of that granule only, and a
        // TTL hint that may leave entries of other levels (SMMUv3 4.4.1.1).
        s.range = Some(space(a.range_covered()));
        s.granule = a.granule();
        s.leaf_only = a.leaf;
        s.ttl_level = a.level_hint();
        s
    };
    let only = |asid, with_global| AsidSel::Only { asid, with_global };
    Some(match cmd {
        // 4.4.2.1: every stage-1 (and combined) entry of the VMID, all ASIDs.
        Command::TlbiNhAll { vmid } => {
            base(Regime::El10, StageSel::STAGE1, Some(*vmid), AsidSel::Any)
        }
        // 4.4.2.2: non-global entries of the ASID.
        Command::TlbiNhAsid { vmid, asid } => base(
            Regime::El10,
            StageSel::STAGE1,
            Some(*vmid),
            only(*asid, false),
        ),
        // 4.4.2.4: by VA for the ASID, global entries included.
        Command::TlbiNhVa { vmid, asid, va } => with_addr(
            base(
                Regime::El10,
                StageSel::STAGE1,
                Some(*vmid),
                only(*asid, true),
            ),
            va,
            InputRange::Va,
        ),
        // 4.4.2.3: by VA, all ASIDs.
        Command::TlbiNhVaa { vmid, va } => with_addr(
            base(Regime::El10, StageSel::STAGE1, Some(*vmid), AsidSel::Any),
            va,
            InputRange::Va,
        ),
        // 4.4.2.7: all EL2 entries.
        Command::TlbiEl2All => base(Regime::El2, StageSel::STAGE1, None, AsidSel::Any),
        // 4.4.2.10: by ASID (EL2-E2H); without E2H EL2 entries carry no ASID.
        Command::TlbiEl2Asid { asid } => base(
            Regime::El2,
            StageSel::STAGE1,
            None,
            if e2h {
                only(*asid, false)
            } else {
                AsidSel::Any
            },
        ),
        // 4.4.2.8: by VA; the ASID matters only with E2H.
        Command::TlbiEl2Va { asid, va } => with_addr(
            base(
                Regime::El2,
                StageSel::STAGE1,
                None,
                if e2h { only(*asid, true) } else { AsidSel::Any },
            ),
            va,
            InputRange::Va,
        ),
        // 4.4.2.9.
        Command::TlbiEl2Vaa { va } => with_addr(
            base(Regime::El2, StageSel::STAGE1, None, AsidSel::Any),
            va,
            InputRange::Va,
        ),
        // 4.4.3.2: every stage of the VMID.
        Command::TlbiS12Vmall { vmid } => {
            base(Regime::El10, StageSel::ALL, Some(*vmid), AsidSel::Any)
        }
        // 4.4.3.1: stage-2 entries by IPA; combined entries need not go.
        Command::TlbiS2Ipa { vmid, ipa } => with_addr(
            base(Regime::El10, StageSel::STAGE2, Some(*vmid), AsidSel::Any),
            ipa,
            InputRange::Ipa,
        ),
        // 4.4.4.1: every non-secure non-EL2 entry, all VMIDs, all stages.
        Command::TlbiNsnhAll => base(Regime::El10, StageSel::ALL, None, AsidSel::Any),
        _ => return None,
    })
}

/// The config-cache scope of a CFGI command (SMMUv3 4.3).
pub fn cfgi_scope(cmd: &Command) -> Option<CfgiScope> {
    Some(match *cmd {
        Command::CfgiSte { sid, leaf } => CfgiScope::Ste { sid, leaf },
        Command::CfgiSteRange { sid, range } => {
            // 2^(Range+1) StreamIDs, the low Range+1 bits ignored (4.3.2).
            let bits = u32::from(range) + 1;
            let (first, last) = if bits >= 32 {
                (0, u32::MAX)
            } else {
                let first = sid & !((1u32 << bits) - 1);
                (first, first + ((1u32 << bits) - 1))
            };
            CfgiScope::SteRange { first, last }
        }
        Command::CfgiCd { sid, ssid, leaf } => CfgiScope::Cd { sid, ssid, leaf },
        Command::CfgiCdAll { sid } => CfgiScope::CdAll { sid },
        _ => return None,
    })
}

impl Smmu {
    /// An SMMU with the given registers and devices; its caches are closed
    /// over the configuration memory holds now.
    pub fn new(
        opts: SmmuOptions,
        strtab: StrtabConfig,
        cmdq: CmdQueue,
        evtq: EventQueue,
        devices: Vec<Device>,
        mem: &PhysMem,
    ) -> Smmu {
        let mut s = Smmu {
            opts,
            strtab,
            cmdq,
            evtq,
            config: ConfigCache::default(),
            iotlb: MayHold::new(),
            devices,
            pending: Vec::new(),
            btm: Vec::new(),
        };
        s.refresh(mem, 0);
        s
    }

    /// The translation context a configuration gives, or `None` when no
    /// stage translates (bypass) or traffic aborts.
    pub fn context_of(&self, c: &ResolvedConfig) -> Option<Context> {
        let ste = c.ste;
        if ste.config.aborts() {
            return None;
        }
        // STRW = EL2 applies to stage-1-only streams (SMMUv3 5.2 STRW).
        let el2 = ste.config == StreamConfig::S1Translate && ste.strw == 0b10;
        let s2 = if ste.config.stage2() {
            ste.s2_granule().map(|g| StageConfig::new(g, ste.s2_ttb))
        } else {
            None
        };
        let s1 = match c.cd {
            // CD.EPD0 = 1 disables TTB0 walks: every stage-1 lookup is a
            // Translation fault (SMMUv3 5.4, CD.EPD0), so the stream has no
            // translation at all, not a stage-2-only one.
            Some(cd) if ste.config.stage1() && cd.epd0 => return None,
            Some(cd) if ste.config.stage1() => cd.granule0().map(|g| StageConfig::new(g, cd.ttb0)),
            _ => None,
        };
        if s1.is_none() && s2.is_none() {
            return None;
        }
        Some(Context {
            regime: if el2 { Regime::El2 } else { Regime::El10 },
            // EL2 without E2H has no ASIDs (SMMUv3 3.17.5).
            asid: match c.cd {
                Some(cd) if !el2 || self.opts.e2h => cd.asid,
                _ => 0,
            },
            // S2VMID also tags stage-1-only NS-EL1 entries (SMMUv3 5.2 S2VMID).
            vmid: if el2 { 0 } else { ste.s2_vmid },
            s1,
            s2,
        })
    }

    /// The contexts whose translations device `dev` may obtain through
    /// ATS: those of the held configurations whose STE.EATS is not 0b00
    /// (SMMUv3 5.2, EATS: with 0b00 ATS Translation Requests are aborted,
    /// so the ATC gets nothing from that configuration).
    fn ats_contexts(&self, dev: usize) -> Vec<Context> {
        let d = &self.devices[dev];
        let mut v: Vec<Context> = held_configs(&self.config, &self.opts.features, d.sid, d.ssid)
            .iter()
            .filter(|c| c.ste.eats != 0)
            .filter_map(|c| self.context_of(c))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every context device `dev` may translate with: one per configuration
    /// the config cache may hold for its stream.
    pub fn contexts(&self, dev: usize) -> Vec<Context> {
        let d = &self.devices[dev];
        let mut v: Vec<Context> = held_configs(&self.config, &self.opts.features, d.sid, d.ssid)
            .iter()
            .filter_map(|c| self.context_of(c))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn all_contexts(&self) -> Vec<Context> {
        let mut v: Vec<Context> = (0..self.devices.len())
            .flat_map(|d| self.contexts(d))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// A store replaced `replaced.old` at `replaced.pa`: the SMMU's walkers
    /// may have read that value after any invalidation still in flight was
    /// performed, so it joins each one's refill window (SMMUv3 4.4: a TLBI
    /// may be performed at any point before the CMD_SYNC completes).
    pub fn note_replaced(&mut self, replaced: PendingStore) {
        let pending = self.pending.iter_mut().map(|p| &mut p.hazard);
        for hazard in pending.chain(self.btm.iter_mut().map(|b| &mut b.hazard)) {
            crate::mem::insert_sorted(hazard, replaced);
        }
    }

    /// Re-closes every cache after memory changed at `step`: config cache
    /// from memory, IOTLB from the contexts of every held configuration
    /// (stale ones too: a stale CD keeps the SMMU walking old tables), ATCs
    /// from what the SMMU may return.
    pub fn refresh(&mut self, mem: &PhysMem, step: u32) {
        self.refresh_with(mem, step, &[]);
    }

    fn refresh_with(&mut self, mem: &PhysMem, step: u32, atc_windows: &[(usize, Vec<TlbEntry>)]) {
        for d in 0..self.devices.len() {
            let (sid, ssid) = (self.devices[d].sid, self.devices[d].ssid);
            close_config(
                &mut self.config,
                mem,
                &self.strtab,
                &self.opts.features,
                sid,
                ssid,
                step,
            );
        }
        let per_dev: Vec<Vec<Context>> =
            (0..self.devices.len()).map(|d| self.contexts(d)).collect();
        let mut ctxs: Vec<Context> = per_dev.iter().flatten().copied().collect();
        ctxs.sort();
        ctxs.dedup();
        close(&mut self.iotlb, mem, SMMU_AGENT, &ctxs, step);
        for d in 0..per_dev.len() {
            if !self.devices[d].ats {
                continue;
            }
            let mut fill = self.atc_source_held(&self.ats_contexts(d));
            for (dev, win) in atc_windows {
                if *dev == d {
                    fill.extend(win.iter().map(|e| (*e, Provenance { step, source: 0 })));
                }
            }
            for (e, p) in fill {
                self.devices[d].atc.insert(e, p);
            }
        }
    }

    /// Software writes `cmd` into the Command queue and moves PROD; the SMMU
    /// consumes at once (see the module notes).
    pub fn submit(
        &mut self,
        mem: &mut PhysMem,
        cmd: [u64; 2],
        step: u32,
    ) -> Result<Consumed, QueueFull> {
        self.cmdq.produce(mem, cmd)?;
        Ok(self.consume(mem, step))
    }

    /// Consumes commands from CONS up to PROD. An illegal command stops the
    /// queue with CERROR_ILL and CONS left at it (SMMUv3 7.1); every decode
    /// error counts, including those the specification only permits to be
    /// CERROR_ILL (RES0 bits set), because a checker should not rely on an
    /// implementation ignoring them.
    pub fn consume(&mut self, mem: &mut PhysMem, step: u32) -> Consumed {
        let mut out = Consumed::default();
        while let Some(words) = self.cmdq.peek(mem) {
            let index = self.cmdq.cons_index();
            let cmd = match Command::decode(words) {
                Ok(c) => c,
                Err(e) => {
                    self.cmdq.error = Some(CmdqError::Ill);
                    out.error = Some((index, e));
                    break;
                }
            };
            self.execute(mem, &cmd, index, step, &mut out);
            self.cmdq.advance();
            out.commands.push(cmd);
        }
        out
    }

    /// Performs `cmd` as the SMMU would on consuming it, outside the
    /// Command queue: what a correct SMMU does for a command whatever state
    /// the physical queue is in (a stopped or full queue consumes nothing).
    /// A CMD_SYNC completes what was performed before it.
    pub fn perform(&mut self, mem: &mut PhysMem, cmd: &Command, step: u32) -> Consumed {
        let mut out = Consumed::default();
        let index = self.cmdq.cons_index();
        self.execute(mem, cmd, index, step, &mut out);
        out.commands.push(*cmd);
        out
    }

    fn execute(
        &mut self,
        mem: &mut PhysMem,
        cmd: &Command,
        index: u32,
        step: u32,
        out: &mut Consumed,
    ) {
        let hazard = mem.pending_stores().to_vec();
        if let Some(scope) = tlbi_scope(cmd, self.opts.e2h) {
            let doomed = self.iotlb.covered(&scope);
            self.pending.push(PendingInv {
                what: Pending::Tlb(scope, doomed),
                hazard,
            });
            return;
        }
        if let Some(scope) = cfgi_scope(cmd) {
            let split = self.strtab.split();
            let cache = &self.config;
            let doomed = cache.matching(|e| {
                let cd_split = e.sid().and_then(|s| cd_split_for(cache, s));
                scope.covers(e, split, cd_split)
            });
            self.pending.push(PendingInv {
                what: Pending::Cfg(scope, doomed),
                hazard,
            });
            return;
        }
        match *cmd {
            Command::AtcInv { sid, ssv, ssid, .. } => {
                // SMMUv3 4.5.1: SSV = 0 reaches every PASID of the function
                // and its non-PASID translations.
                // Address is the device's untranslated address: the VA, which
                // for a stream that bypasses stage 1 is the IPA its stage-2
                // entries hold (`Va::flat_ipa`): both spaces match by value.
                let span = cmd.invalidated_range().unwrap_or(AddrRange::ALL);
                for d in 0..self.devices.len() {
                    let dev = &self.devices[d];
                    if dev.sid != sid || (ssv && dev.ssid != Some(ssid)) || !dev.ats {
                        continue;
                    }
                    let doomed: Vec<TlbEntry> = dev
                        .atc
                        .iter()
                        .filter(|(e, _)| e.input_range().addrs().overlaps(span))
                        .map(|(e, _)| *e)
                        .collect();
                    let window = self.atc_source(d);
                    self.pending.push(PendingInv {
                        what: Pending::Atc {
                            dev: d,
                            doomed,
                            window,
                        },
                        hazard: hazard.clone(),
                    });
                }
            }
            Command::Sync {
                cs,
                msidata,
                msiaddr,
                ..
            } => {
                self.complete_all(mem, step);
                let msi = (cs == SyncCs::Irq && msiaddr != 0).then(|| {
                    // A 32-bit MSI write of MSIData (SMMUv3 4.7.3).
                    let word = Pa(msiaddr & !7);
                    let shift = 8 * (msiaddr & 4);
                    let old = mem.read(word);
                    let new = (old & !(0xffff_ffffu64 << shift)) | (u64::from(msidata) << shift);
                    let _ = mem.write(word, new);
                    (msiaddr, msidata)
                });
                out.syncs.push(SyncDone { index, cs, msi });
            }
            Command::Resume {
                sid, stag, retry, ..
            } => {
                // SMMUv3 4.7.1: a RESUME naming no stalled transaction is ignored.
                for d in &mut self.devices {
                    if let DeviceState::Stalled { stag: s, va, write } = d.state {
                        if d.sid == sid && s == stag {
                            d.state = if retry {
                                DeviceState::Retrying { va, write }
                            } else {
                                DeviceState::Idle
                            };
                        }
                    }
                }
            }
            Command::StallTerm { sid } => {
                // SMMUv3 4.7.2: terminate every stalled transaction of the stream.
                for d in &mut self.devices {
                    if d.sid == sid && matches!(d.state, DeviceState::Stalled { .. }) {
                        d.state = DeviceState::Idle;
                    }
                }
            }
            Command::PriResp {
                sid,
                ssv,
                ssid,
                grpid,
                resp,
            } => {
                // SMMUv3 4.5.2: the response is sent when consumed; it is not
                // ordered after earlier invalidations without a CMD_SYNC.
                for d in &mut self.devices {
                    if let DeviceState::AwaitingPri {
                        grpid: g,
                        va,
                        write,
                    } = d.state
                    {
                        if d.sid == sid && g == grpid && (!ssv || d.ssid == Some(ssid)) {
                            d.state = if resp == PriResp::Success {
                                DeviceState::Retrying { va, write }
                            } else {
                                DeviceState::Idle
                            };
                        }
                    }
                }
            }
            // Prefetches may fill caches; the may-hold sets already allow it.
            _ => {}
        }
    }

    /// IOTLB leaves the SMMU may return to device `dev`'s ATS requests now.
    fn atc_source(&self, dev: usize) -> Vec<TlbEntry> {
        self.atc_source_held(&self.ats_contexts(dev))
            .into_iter()
            .map(|(e, _)| e)
            .collect()
    }

    /// [`Self::atc_source`] with each leaf's provenance, for a stream whose
    /// contexts are `ctxs`: the leaves of the IOTLB tagged for one of them
    /// (ATS translations are answered from them, SMMUv3 3.9).
    fn atc_source_held(&self, ctxs: &[Context]) -> Vec<(TlbEntry, Provenance)> {
        let mut v = Vec::new();
        for ctx in ctxs {
            let stage = ctx.access_stage();
            let asid = (stage != Stage::S2).then_some(ctx.asid);
            for (e, p) in self.iotlb.block(ctx.regime, ctx.tag_vmid(), stage) {
                if e.kind == EntryKind::Leaf
                    && (stage == Stage::S2 || e.asid.is_none() || e.asid == asid)
                {
                    v.push((*e, *p));
                }
            }
        }
        v
    }

    /// CMD_SYNC: every consumed invalidation removes what it covered and is
    /// still held; the caches re-close over current memory, and each
    /// invalidation's own window (stores its walkers may not have seen when
    /// it was consumed) may bring back entries in its scope: those are the
    /// refills that happened after it was performed (as [`crate::machine`]
    /// does for TLBIs).
    fn complete_all(&mut self, mem: &PhysMem, step: u32) {
        let done = std::mem::take(&mut self.pending);
        if done.is_empty() {
            return;
        }
        // In consumption order, each removes what it covered and then may
        // bring back what walks of its window produce. A later
        // invalidation's snapshot was taken while those entries were still
        // held, so it removes them again, and rightly so: if the stale
        // value was still readable when it was consumed, its own window
        // brings them back; if not, the refill happened before it was
        // performed.
        let mut atc_windows = Vec::new();
        for p in done {
            match p.what {
                Pending::Tlb(scope, doomed) => {
                    self.iotlb.remove_entries(&doomed);
                    if let Some(w) = mem.window(&p.hazard) {
                        self.refill_iotlb(&w, &scope, step);
                    }
                }
                Pending::Cfg(scope, doomed) => {
                    self.config.remove_entries(&doomed);
                    if let Some(w) = mem.window(&p.hazard) {
                        self.refill_config(&w, &scope, step);
                    }
                }
                Pending::Atc {
                    dev,
                    doomed,
                    window,
                } => {
                    self.devices[dev].atc.remove_entries(&doomed);
                    atc_windows.push((dev, window));
                }
            }
        }
        self.refresh_with(mem, step, &atc_windows);
    }

    /// Adds the config entries in `scope` that reads of `window` could make.
    fn refill_config(&mut self, window: &PhysMem, scope: &CfgiScope, step: u32) {
        let mut scratch = self.config.clone();
        for d in &self.devices {
            close_config(
                &mut scratch,
                window,
                &self.strtab,
                &self.opts.features,
                d.sid,
                d.ssid,
                step,
            );
        }
        let split = self.strtab.split();
        for (e, _) in scratch.iter() {
            let cd_split = e.sid().and_then(|s| cd_split_for(&scratch, s));
            if !self.config.contains(e) && scope.covers(e, split, cd_split) {
                self.config.insert(*e, step);
            }
        }
    }

    /// Adds the IOTLB entries in `scope` that walks of `window` could make.
    fn refill_iotlb(&mut self, window: &PhysMem, scope: &InvalScope, step: u32) {
        let mut scratch = self.iotlb.clone();
        close(&mut scratch, window, SMMU_AGENT, &self.all_contexts(), step);
        for (e, p) in scratch.iter() {
            if !self.iotlb.contains(e) && scope.covers(e) {
                self.iotlb.insert(*e, *p);
            }
        }
    }

    /// A CPU TLBI: with BTM on and PTM off, an IS (broadcast) form snapshots
    /// the IOTLB entries it covers, to be removed at the issuer's DSB ISH
    /// (SMMUv3 3.17). Entries of a CD with ASET = 1 need not be removed by
    /// ASID-matched broadcasts (SMMUv3 3.17), so they are kept. Never the
    /// config cache, never an ATC.
    pub fn cpu_tlbi(&mut self, mem: &PhysMem, issuer: u8, scope: &InvalScope, broadcast: bool) {
        if !broadcast || !self.opts.btm || self.opts.ptm {
            return;
        }
        let aset_tags: Vec<(Regime, u16, u16)> = if matches!(scope.asid, AsidSel::Only { .. }) {
            let mut v = Vec::new();
            for dv in &self.devices {
                for c in held_configs(&self.config, &self.opts.features, dv.sid, dv.ssid) {
                    if c.cd.is_some_and(|cd| cd.aset) {
                        if let Some(ctx) = self.context_of(&c) {
                            v.push((ctx.regime, ctx.tag_vmid(), ctx.asid));
                        }
                    }
                }
            }
            v
        } else {
            Vec::new()
        };
        let doomed: Vec<TlbEntry> = self
            .iotlb
            .covered(scope)
            .into_iter()
            .filter(|e| {
                e.stage() == Stage::S2
                    || !aset_tags
                        .iter()
                        .any(|&(r, v, a)| e.regime == r && e.vmid == v && e.asid == Some(a))
            })
            .collect();
        self.btm.push(BtmPending {
            issuer,
            scope: *scope,
            doomed,
            hazard: mem.pending_stores().to_vec(),
        });
    }

    /// A CPU DSB: DSB ISH by the issuer completes its broadcast TLBIs in the
    /// SMMU too (Arm ARM D8.13.8; SMMUv3 3.17).
    pub fn cpu_dsb(&mut self, mem: &PhysMem, cpu: u8, kind: Dsb, step: u32) {
        if kind != Dsb::Ish {
            return;
        }
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.btm)
            .into_iter()
            .partition(|b| b.issuer == cpu);
        self.btm = keep;
        if done.is_empty() {
            return;
        }
        let mut refills = Vec::new();
        for b in done {
            let gone = self.iotlb.remove_entries(&b.doomed);
            refills.push((b.scope, b.hazard));
            // An ATC_INV still waiting for its CMD_SYNC may have seen these.
            for p in &mut self.pending {
                if let Pending::Atc { window: w, .. } = &mut p.what {
                    w.extend(
                        gone.iter()
                            .filter(|(e, _)| e.kind == EntryKind::Leaf)
                            .map(|(e, _)| *e),
                    );
                }
            }
        }
        for (scope, hazard) in refills {
            if let Some(w) = mem.window(&hazard) {
                self.refill_iotlb(&w, &scope, step);
            }
        }
        self.refresh_with(mem, step, &[]);
    }

    /// Software acknowledges a command error, optionally overwriting the
    /// offending command, and the SMMU resumes consuming (SMMUv3 7.1).
    pub fn acknowledge_error(
        &mut self,
        mem: &mut PhysMem,
        replacement: Option<[u64; 2]>,
        step: u32,
    ) -> Consumed {
        self.cmdq.acknowledge_error(mem, replacement);
        self.consume(mem, step)
    }

    /// Every translation device `dev` may use for `va`: cached leaves (ATC
    /// when it has ATS, else IOTLB; the ATC already holds whatever the IOTLB
    /// may return), with the agent name.
    pub fn cached_leaves(&self, dev: usize, va: Va) -> Vec<(Holder, TlbEntry, Provenance)> {
        let d = &self.devices[dev];
        let mut out = Vec::new();
        for ctx in self.contexts(dev) {
            if d.ats {
                for (e, p) in leaves(&d.atc, &ctx, va) {
                    out.push((Holder::Atc(dev as u16), e, p));
                }
            }
            for (e, p) in leaves(&self.iotlb, &ctx, va) {
                out.push((Holder::SmmuIotlb, e, p));
            }
        }
        out
    }

    /// IOTLB and ATC leaves that translate `va` with `ctx`'s tags (for
    /// example a CPU address space shared with a device, SVA).
    pub fn leaves_for_context(&self, ctx: &Context, va: Va) -> Vec<(Holder, TlbEntry, Provenance)> {
        let mut out: Vec<(Holder, TlbEntry, Provenance)> = leaves(&self.iotlb, ctx, va)
            .into_iter()
            .map(|(e, p)| (Holder::SmmuIotlb, e, p))
            .collect();
        for (i, d) in self.devices.iter().enumerate() {
            for (e, p) in leaves(&d.atc, ctx, va) {
                out.push((Holder::Atc(i as u16), e, p));
            }
        }
        out
    }

    /// The current configuration of device `dev`, read from memory.
    pub fn current_config(&self, mem: &PhysMem, dev: usize) -> Result<ResolvedConfig, ConfigFault> {
        let d = &self.devices[dev];
        lookup(mem, &self.strtab, &self.opts.features, d.sid, d.ssid)
    }

    /// Whether the current tables (current configuration, latest memory)
    /// grant the access.
    pub fn current_grants(&self, mem: &PhysMem, dev: usize, va: Va, write: bool) -> bool {
        let access = Access { write, user: false };
        match self.current_config(mem, dev) {
            Err(_) => false,
            Ok(c) => match self.context_of(&c) {
                None => true,
                Some(ctx) => translate(mem, &ctx, va, access).is_ok(),
            },
        }
    }

    /// Stale cached entries that deny the access while the current tables
    /// grant it: what makes a retried access fault again.
    pub fn stale_denials(
        &self,
        mem: &PhysMem,
        dev: usize,
        va: Va,
        write: bool,
    ) -> Vec<(Holder, TlbEntry, Provenance)> {
        if !self.current_grants(mem, dev, va, write) {
            return Vec::new();
        }
        let access = Access { write, user: false };
        let d = &self.devices[dev];
        self.cached_leaves(dev, va)
            .into_iter()
            // With ATS the device translates through its ATC; the IOTLB is
            // reached only through it (and the ATC holds all it may return).
            .filter(|(a, _, _)| !d.ats || matches!(a, Holder::Atc(_)))
            .filter(|(_, e, _)| !e.perms.allows(access))
            .collect()
    }

    /// A transaction by device `dev` at `va`: resolved in the worst way for
    /// the software. It faults if any translation the device may use (ATC,
    /// IOTLB, or a walk under any held configuration) denies it.
    pub fn device_access(
        &mut self,
        mem: &mut PhysMem,
        dev: usize,
        va: Va,
        write: bool,
    ) -> AccessOutcome {
        match self.devices[dev].state {
            DeviceState::Idle | DeviceState::Retrying { .. } => {}
            _ => return AccessOutcome::Busy,
        }
        self.devices[dev].state = DeviceState::Idle;
        let access = Access { write, user: false };
        let configs = {
            let d = &self.devices[dev];
            held_configs(&self.config, &self.opts.features, d.sid, d.ssid)
        };
        let (sid, ssid) = (self.devices[dev].sid, self.devices[dev].ssid);
        let record_of = |body| EventRecord {
            sid,
            ssv: ssid.is_some(),
            ssid: ssid.unwrap_or(0),
            body,
        };
        if configs.is_empty() {
            let fault = match self.current_config(mem, dev) {
                Err(f) => f,
                // Bypass or abort-free configs are always cached; an empty
                // cache with a valid memory config cannot happen after refresh.
                Ok(_) => ConfigFault::BadSte,
            };
            // SMMUv3 7.3.3, 7.3.5, 7.3.7, 7.3.9, 7.3.11; an abort records nothing.
            let body = match fault {
                ConfigFault::BadStreamId => Some(EventBody::BadStreamId),
                ConfigFault::BadSte => Some(EventBody::BadSte),
                ConfigFault::BadSubstreamId => Some(EventBody::BadSubstreamId),
                ConfigFault::BadCd => Some(EventBody::BadCd),
                ConfigFault::StreamDisabled => Some(EventBody::StreamDisabled),
                ConfigFault::Abort => None,
            };
            let record = body.map(record_of);
            if let Some(r) = record {
                self.evtq.push(mem, r.encode());
            }
            return AccessOutcome::ConfigError { fault, record };
        }
        if configs.iter().any(|c| c.ste.config.aborts()) {
            return AccessOutcome::ConfigError {
                fault: ConfigFault::Abort,
                record: None,
            };
        }
        // The worst denial: a cached entry first, else a walk fault.
        let mut denial: Option<(ResolvedConfig, Option<TlbEntry>, Fault)> = None;
        let mut granted_pa = None;
        for c in &configs {
            // CD.EPD0 = 1 disables TTB0 walks: a miss is a stage-1
            // Translation fault (SMMUv3 5.4, CD.EPD0), neither a bypass nor
            // a stage-2-only translation. A TLB hit could still translate,
            // but a fault is the worst outcome for the software.
            if c.ste.config.stage1() && c.cd.is_some_and(|cd| cd.epd0) {
                let fault = Fault {
                    kind: FaultKind::Translation,
                    stage: TableStage::S1,
                    level: c
                        .cd
                        .and_then(|cd| cd.granule0())
                        .map_or(0, |g| g.start_level()),
                    s1ptw: false,
                };
                denial.get_or_insert((*c, None, fault));
                continue;
            }
            // Bypass: the address goes out as the PA.
            let Some(ctx) = self.context_of(c) else {
                granted_pa.get_or_insert(va.flat_ipa().flat_pa());
                continue;
            };
            let cached = {
                let d = &self.devices[dev];
                let mut v = leaves(&self.iotlb, &ctx, va);
                if d.ats {
                    v.extend(leaves(&d.atc, &ctx, va));
                }
                v
            };
            if let Some((e, _)) = cached.iter().find(|(e, _)| !e.perms.allows(access)) {
                denial = Some((*c, Some(*e), Fault::from_cached_leaf(e)));
                break;
            }
            match translate(mem, &ctx, va, access) {
                Ok(t) => {
                    granted_pa.get_or_insert(t.pa);
                }
                Err(f) => {
                    denial.get_or_insert((*c, None, f));
                }
            }
        }
        let Some((cfg, entry, fault)) = denial else {
            return AccessOutcome::Done {
                pa: granted_pa.unwrap_or(va.flat_ipa().flat_pa()),
            };
        };
        let d = &self.devices[dev];
        if d.ats && d.pri {
            // The ATS Translation Completion reports failure; the device asks
            // for the page with PRI (SMMUv3 3.9.1, 8). The PRI queue itself
            // is not modelled in memory.
            let grpid = dev as u16;
            self.devices[dev].state = DeviceState::AwaitingPri { grpid, va, write };
            return AccessOutcome::PageRequest { grpid };
        }
        // SMMUv3 3.12.2, 5.4 (CD.S, CD.R) and 5.2 (STE.S2S, S2R): whether the
        // fault stalls and whether it is recorded depend on the stage.
        let (stall, record_it) = match fault.stage {
            TableStage::S1 => cfg.cd.map_or((false, true), |cd| (cd.s, cd.r)),
            TableStage::S2 => (cfg.ste.s2_s, cfg.ste.s2_r),
        };
        let stall = stall && !d.ats;
        let stag = dev as u16;
        let info = FaultInfo {
            stag: if stall { stag } else { 0 },
            stall,
            access: EvAccess {
                read: !write,
                instruction: false,
                privileged: false,
            },
            s2: fault.stage == TableStage::S2,
            class: if fault.s1ptw {
                FaultClass::TableWalk
            } else {
                FaultClass::Input
            },
            tt_read: false,
            input_addr: va.0,
            ipa: 0,
        };
        let body = match fault.kind {
            FaultKind::Translation => EventBody::Translation(info),
            FaultKind::AccessFlag => EventBody::Access(info),
            FaultKind::Permission => EventBody::Permission(info),
            FaultKind::AddressSize => EventBody::AddrSize(info),
        };
        let record = (record_it || stall).then(|| record_of(body));
        if let Some(r) = record {
            self.evtq.push(mem, r.encode());
        }
        if stall {
            self.devices[dev].state = DeviceState::Stalled { stag, va, write };
        }
        AccessOutcome::Fault {
            record,
            stalled: stall,
            entry,
        }
    }

    /// Every IOTLB and ATC entry that maps into `range` (leaves by output,
    /// walk entries by the table they point at), with the agent. Stage-1
    /// entries of nested contexts are skipped: their outputs are IPAs.
    pub fn holders(&self, range: AddrRange) -> Vec<(Holder, TlbEntry, Provenance)> {
        let nested: Vec<(Regime, u16)> = self
            .all_contexts()
            .iter()
            .filter(|c| c.s1.is_some() && c.s2.is_some())
            .map(|c| (c.regime, c.tag_vmid()))
            .collect();
        let ipa_out = |e: &TlbEntry| e.stage() == Stage::S1 && nested.contains(&(e.regime, e.vmid));
        let mut out = Vec::new();
        for (e, p) in self.iotlb.iter() {
            if !ipa_out(e) && output_range(e).overlaps(range) {
                out.push((Holder::SmmuIotlb, *e, *p));
            }
        }
        for (i, d) in self.devices.iter().enumerate() {
            for (e, p) in d.atc.iter() {
                if !ipa_out(e) && output_range(e).overlaps(range) {
                    out.push((Holder::Atc(i as u16), *e, *p));
                }
            }
        }
        out
    }

    /// Config-cache entries that live in `range` or point into it, with the
    /// step they became holdable.
    pub fn config_holders(&self, range: AddrRange) -> Vec<(CfgEntry, u32)> {
        // A nested CD's TTB0 is an IPA: it points at no physical frame.
        let nested_sid = |sid: u32| {
            self.config
                .stes(sid)
                .iter()
                .any(|(_, s)| s.config == StreamConfig::Nested)
        };
        self.config
            .iter()
            .filter(|(e, _)| {
                let points = match e {
                    CfgEntry::Cd { sid, .. } if nested_sid(*sid) => Vec::new(),
                    _ => e.points_to(),
                };
                e.location().overlaps(range) || points.iter().any(|&a| range.contains(a))
            })
            .map(|(e, s)| (*e, *s))
            .collect()
    }

    /// Held config entries of device `dev`'s stream whose memory copy has
    /// changed since they were read.
    pub fn stale_configs(&self, mem: &PhysMem, dev: usize) -> Vec<(CfgEntry, u32)> {
        let sid = self.devices[dev].sid;
        let split = self.strtab.split();
        let differs = |pa: u64, words: &[u64]| {
            words
                .iter()
                .enumerate()
                .any(|(i, w)| mem.read(Pa(pa + 8 * i as u64)) != *w)
        };
        self.config
            .iter()
            .filter(|(e, _)| match **e {
                CfgEntry::L1Std { index, pa, desc } => {
                    split.is_some_and(|s| sid >> s == index) && differs(pa, &[desc])
                }
                CfgEntry::Ste { sid: s, pa, words } => s == sid && differs(pa, &words),
                CfgEntry::L1Cd {
                    sid: s, pa, desc, ..
                } => s == sid && differs(pa, &[desc]),
                CfgEntry::Cd {
                    sid: s, pa, words, ..
                } => s == sid && differs(pa, &words),
            })
            .map(|(e, s)| (*e, *s))
            .collect()
    }

    /// Number of invalidations consumed and waiting for a CMD_SYNC.
    pub fn pending_invalidations(&self) -> usize {
        self.pending.len()
    }

    /// Number of broadcast TLBIs the SMMU waits to complete.
    pub fn pending_broadcasts(&self) -> usize {
        self.btm.len()
    }
}
