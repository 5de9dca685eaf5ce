//! The operations a thread's program emits: one explored step each.
//!
//! Ops are hardware operations (a descriptor store, a TLBI, a barrier, an
//! SMMU command, a device transaction), frame allocation, synchronisation
//! ([`SyncOp`]), and expectations the software states ([`Rely`]). They are
//! built, and validated, by [`crate::builder`]; policy (which command a
//! driver issues to resume a device or to sync) belongs to whoever builds
//! them, not to the checker.

use crate::sync::SyncOp;
use serde::{Deserialize, Serialize};
use std::fmt;
use tlbcheck_hw::addr::{Pa, Va};
use tlbcheck_hw::cpu::tlbi::Tlbi;
use tlbcheck_hw::machine::Dsb;
use tlbcheck_hw::mem::{FrameOwner, Pfn};
use tlbcheck_hw::smmu::cmd::Command;
use tlbcheck_hw::smmu::model::Device;
use tlbcheck_hw::smmu::queue::CmdqError;
use tlbcheck_hw::tlb::InvalScope;

/// What the software relies on at a point of its program: the checker's
/// rule for it ([`crate::rules`]) reports a violation when some agent may
/// still behave otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "rely")]
pub enum Rely {
    /// `va` in context `ctx` is read-only for every agent (COW, dirty
    /// logging, mprotect): `stale-write` otherwise.
    ReadOnly {
        /// Context index.
        ctx: usize,
        /// The address the context's agents issue (for a stage-2-only
        /// context it is used as the IPA, as the hardware does).
        va: Va,
    },
    /// A CPU's retry of an access whose fault was handled cannot fault again
    /// on a stale entry: `fault-livelock` otherwise.
    RetrySucceeds {
        /// Context index.
        ctx: usize,
        /// Address.
        va: Va,
        /// A write (else a read).
        write: bool,
    },
    /// The thread's CPU makes an explicit access to `va` in context `ctx`
    /// (D15347-load-DSB in herd7's VMSA catalogue): it may be translated by
    /// an entry that a TLBI completed by the CPU's own DSB removed, unless
    /// an ISB came between (Arm ARM D8.17.8; without FEAT_ETS2). Such an
    /// entry reaching a freed frame is `freed-frame-mapped`.
    Access {
        /// Context index.
        ctx: usize,
        /// Address.
        va: Va,
        /// A write (else a read).
        write: bool,
    },
    /// Device `dev`'s stream uses the configuration now in memory:
    /// `stale-config` otherwise.
    CurrentConfig {
        /// Device index.
        dev: usize,
    },
    /// A guest's batch of SMMU commands, replayed by a host service, has
    /// completed: every entry the guest believes removed is gone
    /// (`missed-guest-invalidation` otherwise), and no physical command
    /// reached another VMID or StreamID (`isolation`).
    GuestBatch(Box<GuestBatch>),
}

/// One guest batch as the host service handled it (seed 002): the guest's
/// commands, what each one means in physical terms, and what the host
/// issued for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GuestBatch {
    /// The guest's name, for reports.
    pub guest: String,
    /// The guest's VMID: the only one its commands may reach.
    pub vmid: u16,
    /// The physical StreamIDs of the guest's devices.
    pub sids: Vec<u32>,
    /// The batch's number in the guest thread (0-based).
    pub batch: u32,
    /// The host service, for reports.
    pub host: String,
    /// The entries, in batch order.
    pub entries: Vec<GuestEntry>,
    /// The host's refusal, if any, for reports.
    pub refused: Option<String>,
}

/// One entry of a [`GuestBatch`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GuestEntry {
    /// Index in the batch.
    pub index: u32,
    /// The guest's command words.
    pub words: [u64; 2],
    /// The guest was told it was handled (before `entry_num`).
    pub believed: bool,
    /// What a correct SMMU does for it, as physical commands: its VMID
    /// and StreamIDs those of the guest's devices it names.
    pub expect: Vec<[u64; 2]>,
    /// The physical commands the host issued for it.
    pub host: Vec<[u64; 2]>,
}

/// One explicit operation of a thread.
#[derive(Clone, Debug)]
pub enum Op {
    /// A 64-bit descriptor store by the thread's CPU.
    Store {
        /// Word address (8-byte aligned).
        pa: Pa,
        /// New value.
        value: u64,
    },
    /// A TLBI instruction, decoded to its scope.
    Tlbi {
        /// Mnemonic and operand as written, for traces.
        text: String,
        /// The instruction.
        ins: Tlbi,
        /// Its 64-bit operand `Xt` (`None` for the forms without one).
        raw: Option<u64>,
        /// What it removes.
        scope: InvalScope,
        /// IS form.
        broadcast: bool,
    },
    /// A DSB.
    Dsb {
        /// Which one.
        kind: Dsb,
    },
    /// A DMB or an ISB. A DMB changes nothing in the model: it orders the
    /// issuer's explicit accesses but neither makes a store visible to the
    /// table walkers nor completes a TLBI (Arm ARM D8.2.6.1, RSPVBD, and
    /// D8.17.8, RPSMWS, ask for a DSB). An ISB is a context synchronization
    /// event, which completes no TLBI either (D8.17.8); what it does is make
    /// the TLBIs the CPU's DSBs completed apply to the CPU's own later
    /// explicit accesses ([`Rely::Access`]).
    Barrier {
        /// `dmb ish`, `isb`, ... as written.
        text: String,
        /// An ISB (else a DMB).
        isb: bool,
    },
    /// Returns a frame to the allocator (its contents stay until reuse).
    Free {
        /// The frame.
        frame: Pfn,
    },
    /// Takes the next frame from the allocator (the most recently freed);
    /// the program receives its number.
    Alloc {
        /// What the frame will hold.
        owner: FrameOwner,
    },
    /// A synchronisation operation: locks, RCU, sequence counts.
    Sync(SyncOp),
    /// An expectation checked at this point.
    Rely(Rely),
    /// The thread writes one command into the SMMU Command queue and moves
    /// PROD; the SMMU consumes it at once (its effect waits for a CMD_SYNC).
    /// An illegal command stops the queue (CERROR_ILL).
    SmmuCmd {
        /// The command as written, for traces.
        text: String,
        /// Its 16 bytes (dw0, dw1).
        words: [u64; 2],
    },
    /// The thread issues this CMD_SYNC and waits for its completion; it
    /// cannot proceed while the queue is stopped by a command error.
    SmmuSync {
        /// The CMD_SYNC's words (completion signal, MSI fields).
        words: [u64; 2],
    },
    /// The driver's handler of the SMMU's global error interrupt: it waits
    /// until a command error has stopped the Command queue
    /// (SMMU_GERROR.CMDQ_ERR active, SMMUv3 7.1), lets `recover` choose what
    /// to write over the command at CONS, then acknowledges the error
    /// through SMMU_GERRORN; the SMMU resumes consuming at CONS.
    SmmuCmdqRecover {
        /// The driver's policy: what replaces the offending command.
        recover: CmdqRecovery,
    },
    /// Device `dev` issues a transaction. It waits while the device is
    /// stalled or waits for a PRI response.
    DeviceAccess {
        /// Device index.
        dev: usize,
        /// Input address (used as the IPA for a stage-2-only stream).
        va: Va,
        /// A write (else a read).
        write: bool,
    },
    /// Waits until device `dev` has a fault to answer (stalled, or waiting
    /// for a page response): where a fault handler starts. No effect.
    AwaitFault {
        /// Device index.
        dev: usize,
    },
    /// The fault handler answers device `dev`'s fault (waiting until the
    /// device has one) with the command `respond` builds from the device's
    /// fault (a CMD_RESUME with its STAG, a CMD_PRI_RESP with its group);
    /// the device then retries through its caches, and the retry must not
    /// fault again on a stale entry (`fault-livelock`). Which answer a
    /// driver gives is its policy, so the op's builder supplies it.
    DeviceResume {
        /// Device index.
        dev: usize,
        /// Builds the answer from the waiting device.
        respond: Responder,
    },
}

/// A driver's answer to a device fault, built from the device's state.
pub type Responder = fn(&Device) -> Option<Command>;

/// A driver's recovery from a command error: given the error and the
/// offending command's words, the words to write over it (or `None` to
/// leave it, so that the SMMU fetches it again).
pub type CmdqRecovery = fn(CmdqError, [u64; 2]) -> Option<[u64; 2]>;

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rw = |w: bool| if w { "write" } else { "read" };
        match self {
            Op::Store { pa, value } => write!(f, "store {pa} = {value:#x}"),
            Op::Tlbi { text, .. } => write!(f, "tlbi {text}"),
            Op::Dsb { kind } => write!(f, "dsb {}", format!("{kind:?}").to_lowercase()),
            Op::Barrier { text, .. } => f.write_str(text),
            Op::Free { frame } => write!(f, "free frame {:#x}", frame.base().0),
            Op::Alloc { owner } => write!(f, "alloc frame as {owner}"),
            Op::Sync(s) => s.fmt(f),
            Op::Rely(Rely::ReadOnly { ctx, va }) => {
                write!(f, "rely read-only ctx {ctx} VA {:#x}", va.0)
            }
            Op::Rely(Rely::RetrySucceeds { ctx, va, write }) => {
                write!(f, "retry {} ctx {ctx} VA {:#x}", rw(*write), va.0)
            }
            Op::Rely(Rely::Access { ctx, va, write }) => {
                write!(f, "{} ctx {ctx} VA {:#x}", rw(*write), va.0)
            }
            Op::Rely(Rely::CurrentConfig { dev }) => {
                write!(f, "rely on current SMMU config of device {dev}")
            }
            Op::Rely(Rely::GuestBatch(b)) => write!(
                f,
                "rely on guest {} batch {} ({} entries, {} handled) as {}",
                b.guest,
                b.batch,
                b.entries.len(),
                b.entries.iter().filter(|e| e.believed).count(),
                b.host
            ),
            Op::SmmuCmd { text, .. } => write!(f, "smmu cmd {text}"),
            Op::SmmuSync { .. } => f.write_str("smmu CMD_SYNC (wait)"),
            Op::DeviceAccess { dev, va, write } => {
                write!(f, "device {dev} {} VA {:#x}", rw(*write), va.0)
            }
            Op::AwaitFault { dev } => write!(f, "await a fault of device {dev}"),
            Op::SmmuCmdqRecover { .. } => {
                f.write_str("recover the stopped command queue (GERRORN acknowledge)")
            }
            Op::DeviceResume { dev, .. } => write!(f, "resume device {dev} (retry)"),
        }
    }
}

impl Op {
    /// The op as the instruction stream shows it, operands bit-exact in
    /// hex: `TLBI VALE1IS 0x0001000000000000`, `DSB ISH`,
    /// `CMD_TLBI_NH_ASID 0x0001000000000011 0x0000000000000000`,
    /// `STR [0x107000] = 0x0`, `FREE 0x108000`. Operations that are not
    /// instructions (locks, expectations, device transactions) read as
    /// their [`Display`](fmt::Display).
    pub fn instruction(&self) -> String {
        let hex = |w: u64| format!("{w:#018x}");
        match self {
            Op::Tlbi { ins, raw, .. } => match raw {
                Some(x) => format!("TLBI {ins} {}", hex(*x)),
                None => format!("TLBI {ins}"),
            },
            Op::Dsb { kind } => format!("DSB {}", format!("{kind:?}").to_uppercase()),
            Op::SmmuCmd { words, .. } => {
                let name = Command::decode(*words).map_or("CMD_?", |c| c.name());
                format!("{name} {} {}", hex(words[0]), hex(words[1]))
            }
            Op::SmmuSync { words } => format!("CMD_SYNC {} {}", hex(words[0]), hex(words[1])),
            Op::Store { pa, value } => format!("STR [{:#x}] = {value:#x}", pa.0),
            Op::Free { frame } => format!("FREE {:#x}", frame.base().0),
            other => other.to_string(),
        }
    }
}
