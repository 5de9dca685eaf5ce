//! A guest thread as a program: its own steps (stores to its tables,
//! barriers, device accesses) and its batches of SMMU commands, each
//! replayed by the host service at the point the guest issues it.
//!
//! The host service's inputs are the batch and the guest's vdevice table,
//! both fixed when the scenario is read, and it reads nothing else of the
//! machine (the driver does not look at the caches or the tables), so the
//! physical commands are computed once, by [`translate`], when the
//! program is built. The one run-time outcome, CERROR_ILL on a command the
//! SMMU refuses, is decided by the same decoder the SMMU model uses, and
//! the host's recovery (`arm_smmu_cmdq_skip_err` overwrites the command
//! with a CMD_SYNC and restarts the queue) is issued in its place.

use super::{expected, translate, Guest, HostSmmu, Translation, Version};
use std::borrow::Cow;
use tlbcheck_checker::op::{GuestBatch, GuestEntry};
use tlbcheck_checker::{Op, ProgState, Program, Rely};
use tlbcheck_hw::machine::{Dsb, Machine};
use tlbcheck_hw::smmu::cmd::Command;

/// One step of a guest thread.
#[derive(Clone, Debug)]
pub enum GuestStep {
    /// An operation of the guest itself.
    Op(Op),
    /// A batch of raw commands the guest issues to its virtual SMMU.
    Batch(Vec<[u64; 2]>),
}

/// A guest thread with a virtual SMMU, its batches replayed by a host
/// service version.
#[derive(Clone, Debug)]
pub struct GuestThread {
    ops: Vec<(Op, Option<String>)>,
    allocs_until: u32,
}

/// The host function whose commands a trace shows.
const fn func(v: Version) -> &'static str {
    match v {
        Version::Nested2023V1 => "arm_smmu_cache_invalidate_user",
        Version::IommufdVsmmu => "arm_vsmmu_cache_invalidate",
        Version::Strict => "strict host service",
    }
}

fn hex(w: [u64; 2]) -> String {
    format!("{:#018x} {:#018x}", w[0], w[1])
}

/// The guest command as a trace line shows it: name, then words.
pub fn describe(w: [u64; 2]) -> String {
    let name = Command::decode_permissive(w).map_or_else(
        |_| format!("opcode {:#04x}", w[0] & 0xff),
        |c| c.name().to_string(),
    );
    format!("{name} {}", hex(w))
}

impl GuestThread {
    /// The thread of guest `name` running `steps`, its batches replayed by
    /// `v` on `host`.
    pub fn new(
        name: &str,
        v: Version,
        host: &HostSmmu,
        guest: &Guest,
        steps: Vec<GuestStep>,
    ) -> GuestThread {
        let mut ops = Vec::new();
        let mut batch = 0;
        for s in steps {
            match s {
                GuestStep::Op(op) => ops.push((op, None)),
                GuestStep::Batch(words) => {
                    let t = translate(v, host, guest, &words);
                    batch_ops(name, v, host, guest, batch, &words, &t, &mut ops);
                    batch += 1;
                }
            }
        }
        let allocs_until = ops
            .iter()
            .rposition(|(o, _)| matches!(o, Op::Alloc { .. }))
            .map_or(0, |i| i as u32 + 1);
        GuestThread { ops, allocs_until }
    }

    /// The operations with the line traces print above each.
    pub fn ops(&self) -> &[(Op, Option<String>)] {
        &self.ops
    }
}

/// The ops of one replayed batch: the host's commands, each under the
/// guest command it came from, then the guest's expectation.
#[allow(clippy::too_many_arguments)]
fn batch_ops(
    name: &str,
    v: Version,
    host: &HostSmmu,
    guest: &Guest,
    batch: u32,
    words: &[[u64; 2]],
    t: &Translation,
    ops: &mut Vec<(Op, Option<String>)>,
) {
    let f = func(v);
    let sync = Command::SYNC_SEV.encode();
    let mut block_open = false;
    for c in &t.issued {
        if !block_open {
            // arm_smmu_cmdq_issue_cmdlist: dma_wmb() before the slots are
            // marked valid.
            let origin = format!("{name} batch {batch}: {f}: arm_smmu_cmdq_issue_cmdlist");
            ops.push((Op::Dsb { kind: Dsb::Ishst }, Some(origin)));
            block_open = true;
        }
        let Some(i) = c.entry else {
            let origin = format!("{name} batch {batch}: {f}: CMD_SYNC closing the block");
            ops.push((Op::SmmuSync { words: sync }, Some(origin)));
            block_open = false;
            continue;
        };
        let head = format!("{name} batch {batch} entry {i} {}: {f}", describe(words[i]));
        let (op, origin) = match (&c.hw_error, Command::decode(c.words)) {
            (None, Ok(cmd)) => (
                Op::SmmuCmd {
                    text: cmd.to_string(),
                    words: c.words,
                },
                head,
            ),
            (err, _) => {
                let why = err.as_ref().map_or(String::new(), |e| e.to_string());
                let skip = format!(
                    "{} refused with CERROR_ILL ({why}); arm_smmu_cmdq_skip_err overwrites it with CMD_SYNC",
                    hex(c.words)
                );
                (
                    Op::SmmuCmd {
                        text: skip.clone(),
                        words: sync,
                    },
                    format!("{head}: {skip}"),
                )
            }
        };
        ops.push((op, Some(origin)));
    }
    let entries = words
        .iter()
        .enumerate()
        .map(|(i, w)| GuestEntry {
            index: i as u32,
            words: *w,
            believed: i < t.entry_num,
            expect: expected(host, guest, *w)
                .iter()
                .map(Command::encode)
                .collect(),
            host: t.commands_of(i).map(|c| c.words).collect(),
        })
        .collect();
    let mut outcome = match &t.error {
        Some(e) => format!("returns {}, entry_num = {}: {e}", e.errno, t.entry_num),
        None => format!("returns 0, entry_num = {}", t.entry_num),
    };
    // Entries that became no physical command do not show above any
    // instruction: name them here.
    for (i, w) in words.iter().enumerate() {
        if t.commands_of(i).next().is_none() {
            outcome.push_str(&format!("; entry {i} {} issued nothing", describe(*w)));
        }
    }
    let rely = GuestBatch {
        guest: name.to_string(),
        vmid: guest.vmid,
        sids: guest.devices.iter().map(|d| d.psid).collect(),
        batch,
        host: v.name().to_string(),
        entries,
        refused: t.error.as_ref().map(ToString::to_string),
    };
    ops.push((
        Op::Rely(Rely::GuestBatch(Box::new(rely))),
        Some(format!("{name} batch {batch}: {f} {outcome}")),
    ));
}

impl Program for GuestThread {
    fn next<'a>(
        &'a self,
        st: &ProgState,
        _: &Machine,
    ) -> Option<tlbcheck_checker::program::Emit<'a>> {
        self.ops
            .get(st.pc as usize)
            .map(|(op, origin)| tlbcheck_checker::program::Emit {
                op: Cow::Borrowed(op),
                origin: origin.as_deref().map(Cow::Borrowed),
            })
    }

    fn advance(&self, st: &mut ProgState, _: &Machine, _: tlbcheck_checker::program::OpResult) {
        st.pc += 1;
    }

    fn may_allocate(&self, st: &ProgState) -> bool {
        st.pc < self.allocs_until
    }

    fn ignores_machine(&self) -> bool {
        true
    }
}
