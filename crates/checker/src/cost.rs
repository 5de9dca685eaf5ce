//! What one run of a model costs: every executed step counted by kind, and
//! an estimated time from a table of per-item costs.
//!
//! # Why here
//!
//! Counting replays a run of a [`Model`] (the same [`Choice`]s a trace
//! replays) and classifies each executed [`Op`]; both are the checker's,
//! and nothing in it needs the scenario language. Keeping it in this crate
//! lets the protocols' tests and the benchmarks count a model they built
//! directly, while the front end only chooses the run, loads a table from
//! a file and prints. The table lives beside the counts because an
//! estimate is a function of the counts alone.
//!
//! # What is counted
//!
//! A count is a property of the algorithm, so it is exact: TLBIs by
//! mnemonic, DSBs by kind, SMMU commands by opcode (range forms of
//! `CMD_TLBI_*` apart, since they cost the same per command but cover
//! more), CMD_SYNCs, command-queue submissions, `CMD_ATC_INV`s, cache
//! entries removed by completed invalidations, descriptor stores into
//! translation-table frames (PTEs written), frames freed by owner.
//!
//! A time is not: [`CostTable`] charges each counted item a fixed number
//! of nanoseconds, with defaults taken from published measurements (each
//! default names its source), and [`Estimate`] says which table made it.

use crate::model::{Choice, Model};
use crate::op::Op;
use crate::trace::ReplayError;
use crate::violation::Violation;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tlbcheck_hw::machine::Machine;
use tlbcheck_hw::mem::{FrameOwner, Pfn};
use tlbcheck_hw::smmu::cmd::Command;

/// `CMDQ_BATCH_ENTRIES` (`BITS_PER_LONG` on arm64): the most commands
/// arm-smmu-v3 gathers before it submits them (`arm_smmu_cmdq_batch_add`
/// submits a full batch when a 65th command arrives).
pub const CMDQ_BATCH_ENTRIES: u32 = 64;

/// Every counted item of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Steps executed (every op, synchronisation and expectations included).
    pub steps: u64,
    /// TLBI instructions by mnemonic (`VALE1IS`, `RVAE1IS`, `ASIDE1IS`).
    pub tlbi: BTreeMap<String, u64>,
    /// DSBs by kind (`ISH`, `ISHST`, `NSH`, `NSHST`).
    pub dsb: BTreeMap<String, u64>,
    /// SMMU commands other than CMD_SYNC, by opcode; a range form of a
    /// TLBI command (TG != 0) is counted as `CMD_TLBI_NH_VA (range)`.
    pub smmu_commands: BTreeMap<String, u64>,
    /// CMD_SYNCs issued and waited for.
    pub cmd_syncs: u64,
    /// Command-queue submissions: a CMD_SYNC submits the commands written
    /// before it with it; a run of more than [`CMDQ_BATCH_ENTRIES`]
    /// commands is submitted a full batch at a time, and commands left
    /// unsynced when the thread does something else count as one more.
    pub submissions: u64,
    /// `CMD_ATC_INV` commands (also in `smmu_commands`).
    pub atc_invs: u64,
    /// Entries of CPU TLBs, the SMMU TLB and ATCs that completed
    /// invalidations removed from the may-hold sets (every entry the
    /// architecture let an agent hold, so an upper bound on a real one).
    pub entries_removed: u64,
    /// Descriptor stores into translation-table frames.
    pub ptes_written: u64,
    /// Other stores (SMMU structures, data).
    pub other_stores: u64,
    /// Translation-table frames freed (directly or by an RCU callback).
    pub table_frames_freed: u64,
    /// Other frames freed (data pages).
    pub data_frames_freed: u64,
    /// Frames allocated.
    pub frames_allocated: u64,
}

impl Counts {
    /// All TLBIs.
    pub fn tlbis(&self) -> u64 {
        self.tlbi.values().sum()
    }

    /// All DSBs.
    pub fn dsbs(&self) -> u64 {
        self.dsb.values().sum()
    }

    /// All SMMU commands other than CMD_SYNC.
    pub fn commands(&self) -> u64 {
        self.smmu_commands.values().sum()
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Counts) {
        for (mine, theirs) in [
            (&mut self.tlbi, &other.tlbi),
            (&mut self.dsb, &other.dsb),
            (&mut self.smmu_commands, &other.smmu_commands),
        ] {
            for (k, v) in theirs {
                *mine.entry(k.clone()).or_default() += v;
            }
        }
        self.steps += other.steps;
        self.cmd_syncs += other.cmd_syncs;
        self.submissions += other.submissions;
        self.atc_invs += other.atc_invs;
        self.entries_removed += other.entries_removed;
        self.ptes_written += other.ptes_written;
        self.other_stores += other.other_stores;
        self.table_frames_freed += other.table_frames_freed;
        self.data_frames_freed += other.data_frames_freed;
        self.frames_allocated += other.frames_allocated;
    }

    /// Every counted item as (name, count), in a fixed order: the rows of
    /// a side-by-side table. Items with a zero count are included only
    /// when `zeros`.
    pub fn rows(&self, zeros: bool) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (k, v) in &self.tlbi {
            out.push((format!("TLBI {k}"), *v));
        }
        for (k, v) in &self.dsb {
            out.push((format!("DSB {k}"), *v));
        }
        for (k, v) in &self.smmu_commands {
            out.push((k.clone(), *v));
        }
        let fixed = [
            ("CMD_SYNC", self.cmd_syncs),
            ("queue submissions", self.submissions),
            ("entries removed", self.entries_removed),
            ("PTEs written", self.ptes_written),
            ("other stores", self.other_stores),
            ("table frames freed", self.table_frames_freed),
            ("data frames freed", self.data_frames_freed),
            ("frames allocated", self.frames_allocated),
            ("steps", self.steps),
        ];
        out.extend(
            fixed
                .into_iter()
                .filter(|(_, v)| zeros || *v > 0)
                .map(|(k, v)| (k.to_string(), v)),
        );
        out
    }
}

/// A counted run: what it did and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// The counts.
    pub counts: Counts,
    /// The violation the run ends in, if any.
    pub violation: Option<Violation>,
    /// CPUs in the machine (the broadcast domain the DSB costs depend on).
    pub cpus: u8,
}

fn cached_entries(m: &Machine) -> u64 {
    let cpus: usize = m.cpus.iter().map(|c| c.tlb.len()).sum();
    let smmu = m.smmu.as_deref().map_or(0, |s| {
        s.iotlb.len() + s.devices.iter().map(|d| d.atc.len()).sum::<usize>()
    });
    (cpus + smmu) as u64
}

/// The name an SMMU command is counted under.
fn command_key(words: [u64; 2]) -> String {
    match Command::decode(words) {
        Ok(c) => {
            let range = match c {
                Command::TlbiNhVa { va, .. }
                | Command::TlbiNhVaa { va, .. }
                | Command::TlbiEl2Va { va, .. }
                | Command::TlbiEl2Vaa { va, .. }
                | Command::TlbiS2Ipa { ipa: va, .. } => va.tg != 0,
                _ => false,
            };
            if range {
                format!("{} (range)", c.name())
            } else {
                c.name().to_string()
            }
        }
        Err(_) => "CMD_? (illegal)".to_string(),
    }
}

/// Replays `choices` from the initial state, counting every executed step,
/// and stops at the first violation (as [`crate::trace::run`] does).
pub fn count(model: &Model, choices: &[Choice]) -> Result<Run, ReplayError> {
    let mut s = model.initial();
    let mut enabled = Vec::new();
    let mut c = Counts::default();
    // Commands each thread wrote since its last submission.
    let mut open = vec![0u32; model.threads.len()];
    let mut violation = None;
    for (i, &choice) in choices.iter().enumerate() {
        let n = i as u32 + 1;
        model.choices(&s, &mut enabled);
        if !enabled.contains(&choice) {
            return Err(ReplayError { step: n, choice });
        }
        c.steps += 1;
        let mut removes = false;
        match choice {
            Choice::Thread(t) => {
                let t = t as usize;
                if let Some(e) = model.next_op(&s, t) {
                    let is_smmu = matches!(&*e.op, Op::SmmuCmd { .. } | Op::SmmuSync { .. });
                    if !is_smmu && open[t] > 0 {
                        c.submissions += 1;
                        open[t] = 0;
                    }
                    match &*e.op {
                        Op::Tlbi { ins, .. } => *c.tlbi.entry(ins.to_string()).or_default() += 1,
                        Op::Dsb { kind } => {
                            removes = true;
                            *c.dsb.entry(format!("{kind:?}").to_uppercase()).or_default() += 1;
                        }
                        Op::SmmuCmd { words, .. } => {
                            if open[t] == CMDQ_BATCH_ENTRIES {
                                c.submissions += 1;
                                open[t] = 0;
                            }
                            open[t] += 1;
                            let key = command_key(*words);
                            if key == "CMD_ATC_INV" {
                                c.atc_invs += 1;
                            }
                            *c.smmu_commands.entry(key).or_default() += 1;
                        }
                        Op::SmmuSync { .. } => {
                            removes = true;
                            c.cmd_syncs += 1;
                            c.submissions += 1;
                            open[t] = 0;
                        }
                        Op::Store { pa, .. } => match s.machine.mem.owner(Pfn::of(*pa)) {
                            FrameOwner::Table { .. } => c.ptes_written += 1,
                            _ => c.other_stores += 1,
                        },
                        Op::Free { frame } => match s.machine.mem.owner(*frame) {
                            FrameOwner::Table { .. } => c.table_frames_freed += 1,
                            _ => c.data_frames_freed += 1,
                        },
                        Op::Alloc { .. } => c.frames_allocated += 1,
                        _ => {}
                    }
                }
            }
            Choice::RcuCallback(i) => {
                let frame = s.sync.callback(i as usize).frame;
                match s.machine.mem.owner(frame) {
                    FrameOwner::Table { .. } => c.table_frames_freed += 1,
                    _ => c.data_frames_freed += 1,
                }
            }
        }
        let before = removes.then(|| cached_entries(&s.machine));
        let v = model.step(&mut s, choice, n);
        if let Some(b) = before {
            c.entries_removed += b.saturating_sub(cached_entries(&s.machine));
        }
        if v.is_some() {
            violation = v;
            break;
        }
    }
    c.submissions += open.iter().filter(|&&o| o > 0).count() as u64;
    if violation.is_none() {
        model.choices(&s, &mut enabled);
        if enabled.is_empty() {
            violation = model.stuck(&s, choices.len() as u32);
        }
    }
    Ok(Run {
        counts: c,
        violation,
        cpus: model.machine.cpus.len() as u8,
    })
}

/// A cost that depends on the number of CPUs in the broadcast domain: the
/// cost at each listed CPU count, linear between them and flat beyond the
/// first and last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerCpus {
    /// (CPUs, nanoseconds), in increasing CPU order.
    pub points: Vec<(u32, f64)>,
}

impl PerCpus {
    /// The same cost for every CPU count.
    pub fn flat(ns: f64) -> PerCpus {
        PerCpus {
            points: vec![(1, ns)],
        }
    }

    /// The cost with `cpus` CPUs.
    pub fn at(&self, cpus: u32) -> f64 {
        let p = &self.points;
        match p.iter().position(|&(c, _)| c >= cpus) {
            None => p.last().map_or(0.0, |x| x.1),
            Some(0) => p[0].1,
            Some(i) => {
                let (c0, y0) = p[i - 1];
                let (c1, y1) = p[i];
                y0 + (y1 - y0) * f64::from(cpus - c0) / f64::from(c1 - c0)
            }
        }
    }
}

/// Nanoseconds charged per counted item. Every field has a default from a
/// published measurement (see [`CostTable::sources`]); a table file
/// overrides any subset of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostTable {
    /// Where the table came from (a file, or the defaults).
    pub name: String,
    /// One TLBI by VA or IPA, issued back to back.
    pub tlbi_va: f64,
    /// One range TLBI (`R*` forms).
    pub tlbi_range: f64,
    /// One TLBI of a whole context (ASID, VMID, everything).
    pub tlbi_context: f64,
    /// One DSB ISH (a full DSB, which waits for broadcast TLBIs), by CPUs.
    pub dsb_ish: PerCpus,
    /// One DSB NSH (waits for local maintenance only).
    pub dsb_nsh: f64,
    /// One DSB ISHST or NSHST (orders stores only).
    pub dsb_st: f64,
    /// Writing one SMMU command (other than CMD_SYNC) into the queue and
    /// having the SMMU consume it.
    pub smmu_command: f64,
    /// One CMD_SYNC round trip, waited for.
    pub cmd_sync: f64,
    /// One command-queue submission (locking, PROD update), by CPUs
    /// contending for the queue.
    pub submission: PerCpus,
    /// One descriptor store into a translation table.
    pub pte_write: f64,
    /// Freeing one frame.
    pub frame_free: f64,
}

impl Default for CostTable {
    fn default() -> Self {
        CostTable {
            name: "defaults".to_string(),
            tlbi_va: 470.0,
            tlbi_range: 470.0,
            tlbi_context: 470.0,
            dsb_ish: PerCpus {
                points: vec![(8, 300.0), (128, 900.0)],
            },
            dsb_nsh: 0.0,
            dsb_st: 0.0,
            smmu_command: 125.0,
            cmd_sync: 1400.0,
            submission: PerCpus::flat(0.0),
            pte_write: 0.0,
            frame_free: 0.0,
        }
    }
}

impl CostTable {
    /// Each default and the measurement it comes from.
    pub fn sources() -> &'static [(&'static str, &'static str)] {
        &[
            ("tlbi_va", "470 ns: slope of Zhenyu Ye's __flush_tlb_range timings, 468 ns per page without FEAT_TLBIRANGE, 530 ns on an FPGA (2020-06-09 reply to the arm64 TLBI range series)"),
            ("tlbi_range", "470 ns: the same series finds one range op costs what one classic op costs"),
            ("tlbi_context", "470 ns: 512 pages falling back to one ASIDE1IS cost 1508 ns against 1457 ns for one page (same table)"),
            ("dsb_ish", "300 ns at 8 CPUs, 900 ns at 128: Barry Song's batched reclaim (43b3dfdd0455), DSB 95% of ptep_clear_flush, 307 ns on a Snapdragon 888 and 893 ns on a Kunpeng 920 per call"),
            ("dsb_nsh", "0 ns: no published figure; a local DSB waits for no other PE"),
            ("dsb_st", "0 ns: no published figure; the fits above fold it into the fixed part of a flush"),
            ("smmu_command", "125 ns: Sai Prakash Ranjan's SMMUv2 unmap timings, 121 to 126 ns per extra TLBIVA (SM8150, 2021)"),
            ("cmd_sync", "1400 ns: Barry Song's cmdq_issue_cmdlist histogram, one command plus CMD_SYNC mostly 1 to 2 us (Kunpeng 920), less one command"),
            ("submission", "0 ns: John Garry's contention figures are whole map+unmap costs (3.5 us at 8 CPUs, 91 us at 64), not a per-submission term"),
            ("pte_write", "0 ns: no published figure for io-pgtable; KVM's 0.5 us per page of walker work (Raghavendra Rao Ananta's v9 cover) is a whole walk, set it per scenario"),
            ("frame_free", "0 ns: no published figure"),
        ]
    }

    /// A table from JSON text: the defaults with the fields it names
    /// replaced; `name` defaults to `origin`.
    pub fn from_json(text: &str, origin: &str) -> Result<CostTable, serde_json::Error> {
        let mut t: CostTable = serde_json::from_str(text)?;
        if t.name == CostTable::default().name {
            t.name = origin.to_string();
        }
        Ok(t)
    }

    /// The cost of one TLBI with this mnemonic.
    fn tlbi(&self, mnemonic: &str) -> f64 {
        let op = mnemonic.strip_suffix("IS").unwrap_or(mnemonic);
        if op.starts_with('R') {
            self.tlbi_range
        } else if op.contains("VA") || op.contains("IPA") {
            self.tlbi_va
        } else {
            self.tlbi_context
        }
    }

    /// Estimates what `run` costs.
    pub fn estimate(&self, run: &Run) -> Estimate {
        let c = &run.counts;
        let cpus = u32::from(run.cpus);
        let mut items = Vec::new();
        let mut add = |item: String, count: u64, unit: f64| {
            if count > 0 {
                items.push(EstimateItem {
                    item,
                    count,
                    unit_ns: unit,
                    ns: unit * count as f64,
                });
            }
        };
        for (k, &v) in &c.tlbi {
            add(format!("TLBI {k}"), v, self.tlbi(k));
        }
        for (k, &v) in &c.dsb {
            let unit = match k.as_str() {
                "ISH" => self.dsb_ish.at(cpus),
                "NSH" => self.dsb_nsh,
                _ => self.dsb_st,
            };
            add(format!("DSB {k}"), v, unit);
        }
        add("SMMU commands".into(), c.commands(), self.smmu_command);
        add("CMD_SYNC".into(), c.cmd_syncs, self.cmd_sync);
        add(
            "queue submissions".into(),
            c.submissions,
            self.submission.at(cpus),
        );
        add("PTEs written".into(), c.ptes_written, self.pte_write);
        add(
            "frames freed".into(),
            c.table_frames_freed + c.data_frames_freed,
            self.frame_free,
        );
        Estimate {
            table: self.name.clone(),
            total_ns: items.iter().map(|i| i.ns).sum(),
            items,
        }
    }
}

/// One line of an estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EstimateItem {
    /// What was charged.
    pub item: String,
    /// How many.
    pub count: u64,
    /// Nanoseconds each.
    pub unit_ns: f64,
    /// Nanoseconds in all.
    pub ns: f64,
}

/// An estimated time: not a measurement, and only as good as the table
/// that produced it, which it names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The table's name.
    pub table: String,
    /// Estimated nanoseconds.
    pub total_ns: f64,
    /// What each item contributed.
    pub items: Vec<EstimateItem>,
}
