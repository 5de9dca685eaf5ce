//! Building models: every operation is validated here, against the machine
//! it will run on, so nothing in the checker relies on a caller's checks.
//!
//! ```
//! use tlbcheck_checker::builder::{Features, ModelBuilder};
//! use tlbcheck_hw::machine::{Dsb, Machine};
//! use tlbcheck_hw::mem::PhysMem;
//! use tlbcheck_hw::mem::Pfn;
//!
//! let machine = Machine::new(PhysMem::new(Pfn(0x100), 4), 1, vec![]);
//! let mut b = ModelBuilder::new("example", machine, Features::default());
//! let mut t = b.thread("t0", 0).unwrap();
//! t.dsb(Dsb::Ish);
//! t.done();
//! let model = b.build().unwrap();
//! assert_eq!(model.threads.len(), 1);
//! ```

use crate::model::{Model, Thread};
use crate::op::{CmdqRecovery, Op, Rely, Responder};
use crate::program::{Program, Script};
use crate::sync::{SyncOp, SyncState};
use std::sync::Arc;
use thiserror::Error;
use tlbcheck_hw::addr::{Pa, Va};
use tlbcheck_hw::cpu::tlbi::{FieldValue, Tlbi, TlbiDecodeError, TlbiOperand};
use tlbcheck_hw::machine::{Dsb, Machine};
use tlbcheck_hw::mem::{FrameOwner, Pfn};
use tlbcheck_hw::smmu::cmd::{CmdError, Command};
use tlbcheck_hw::vmsa::Context;

/// Most threads a model may have (thread sets are 32-bit masks).
pub const MAX_THREADS: usize = 32;

/// Features that decide whether an invalidation can be written at all.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// FEAT_TLBIRANGE: the range forms exist (Arm ARM D8.17.5.2; the TLBI
    /// R* encodings are undefined without it, C5.5).
    pub tlbirange: bool,
    /// FEAT_TTL: the TTL hint of non-range forms is a field, not RES0
    /// (Arm ARM D8.17.5.3).
    pub ttl: bool,
    /// SMMU_IDR3.RIL: SMMU TLBI commands may name a range (TG != 0;
    /// SMMUv3 4.4.1.1).
    pub smmu_ril: bool,
}

/// What was wrong with a model under construction.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    /// A thread on a CPU the machine lacks.
    #[error("CPU {cpu} does not exist: the machine has {cpus} CPU(s)")]
    NoSuchCpu {
        /// The CPU named.
        cpu: u8,
        /// How many there are.
        cpus: usize,
    },
    /// More threads than thread masks hold.
    #[error("at most {MAX_THREADS} threads")]
    TooManyThreads,
    /// A descriptor store that is not 8-byte aligned.
    #[error("descriptor store at {0} is not 8-byte aligned")]
    Unaligned(Pa),
    /// A range TLBI without FEAT_TLBIRANGE.
    #[error("TLBI {0} is a range operation, but the machine lacks FEAT_TLBIRANGE")]
    NoTlbiRange(Tlbi),
    /// A TTL hint without FEAT_TTL.
    #[error("TLBI {0} carries a TTL hint, but the machine lacks FEAT_TTL (the field is RES0 without it)")]
    NoTtl(Tlbi),
    /// A TLBI that needs an operand given none, or the other way round.
    #[error("TLBI {0} {1}")]
    Operand(Tlbi, &'static str),
    /// A frame outside the allocator's pool.
    #[error("{0:?} is outside the allocator's pool")]
    NotInPool(Pfn),
    /// A lock or sequence count that was not declared.
    #[error("{what} {id} is not declared (the model has {declared})")]
    NoSuchSync {
        /// "lock", "sequence count" or "counter".
        what: &'static str,
        /// The id used.
        id: u8,
        /// How many were declared.
        declared: usize,
    },
    /// A context index that does not exist.
    #[error("context {0} does not exist")]
    NoSuchContext(usize),
    /// An SMMU operation on a machine without an SMMU.
    #[error("an SMMU operation, but the machine has no SMMU")]
    NoSmmu,
    /// A device index that does not exist.
    #[error("device {0} does not exist")]
    NoSuchDevice(usize),
    /// An SMMU command the SMMU's features do not allow.
    #[error("{0}")]
    Command(String),
}

/// Builds a [`Model`]: contexts, synchronisation objects, threads.
#[derive(Debug)]
pub struct ModelBuilder {
    name: String,
    machine: Machine,
    features: Features,
    contexts: Vec<Context>,
    context_names: Vec<String>,
    locks: usize,
    seqs: usize,
    counters: usize,
    threads: Vec<Thread>,
}

impl ModelBuilder {
    /// A model named `name` running on `machine` (set up, caches closed).
    pub fn new(name: impl Into<String>, machine: Machine, features: Features) -> ModelBuilder {
        ModelBuilder {
            name: name.into(),
            machine,
            features,
            contexts: Vec::new(),
            context_names: Vec::new(),
            locks: 0,
            seqs: 0,
            counters: 0,
            threads: Vec::new(),
        }
    }

    /// Names a translation context that ops may refer to by the returned
    /// index.
    pub fn context(&mut self, name: impl Into<String>, ctx: Context) -> usize {
        self.contexts.push(ctx);
        self.context_names.push(name.into());
        self.contexts.len() - 1
    }

    /// Declares `n` locks (ids `0..n`).
    pub fn locks(&mut self, n: usize) {
        self.locks = n;
    }

    /// Declares `n` sequence counts (ids `0..n`).
    pub fn seqcounts(&mut self, n: usize) {
        self.seqs = n;
    }

    /// Declares `n` atomic counters (ids `0..n`), all zero.
    pub fn counters(&mut self, n: usize) {
        self.counters = n;
    }

    /// The machine the model runs on.
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// Starts a thread of explicit operations on `cpu`.
    pub fn thread(
        &mut self,
        name: impl Into<String>,
        cpu: u8,
    ) -> Result<ThreadBuilder<'_>, BuildError> {
        self.check_thread(cpu)?;
        Ok(ThreadBuilder {
            b: self,
            name: name.into(),
            cpu,
            vmid: 0,
            owns: None,
            ops: Vec::new(),
        })
    }

    /// Adds a thread running `program` on `cpu`.
    pub fn program(
        &mut self,
        name: impl Into<String>,
        cpu: u8,
        program: Arc<dyn Program>,
        owns_vmids: Option<Vec<u16>>,
    ) -> Result<(), BuildError> {
        self.check_thread(cpu)?;
        self.threads.push(Thread {
            name: name.into(),
            cpu,
            program,
            owns_vmids,
        });
        Ok(())
    }

    fn check_thread(&self, cpu: u8) -> Result<(), BuildError> {
        let cpus = self.machine.cpus.len();
        if usize::from(cpu) >= cpus {
            return Err(BuildError::NoSuchCpu { cpu, cpus });
        }
        if self.threads.len() >= MAX_THREADS {
            return Err(BuildError::TooManyThreads);
        }
        Ok(())
    }

    /// The model.
    pub fn build(self) -> Result<Model, BuildError> {
        let n = self.threads.len();
        Ok(Model {
            name: self.name,
            machine: self.machine,
            threads: self.threads,
            contexts: self.contexts,
            context_names: self.context_names,
            sync: SyncState::new(self.locks, self.seqs, n).with_counters(self.counters),
        })
    }
}

/// Emits a thread's operations one by one, each validated.
#[derive(Debug)]
pub struct ThreadBuilder<'a> {
    b: &'a mut ModelBuilder,
    name: String,
    cpu: u8,
    vmid: u16,
    owns: Option<Vec<u16>>,
    ops: Vec<Op>,
}

impl ThreadBuilder<'_> {
    /// HCR_EL2.E2H of the thread's CPU, which decides whether its EL2 TLBIs
    /// reach the EL2 or the EL2&0 regime ([`Tlbi::scope_e2h`]). The model
    /// takes it equal to the SMMU's SMMU_CR2.E2H, the setting in which
    /// broadcast EL2 maintenance means the same to the PEs and the SMMU
    /// (SMMUv3 3.17.5); without an SMMU, 0.
    fn e2h(&self) -> bool {
        self.b.machine.smmu.as_ref().is_some_and(|s| s.opts.e2h)
    }

    /// The VMID the thread's CPU runs with (what its TLBIs reach).
    pub fn vmid(&mut self, vmid: u16) -> &mut Self {
        self.vmid = vmid;
        self
    }

    /// Restricts the VMIDs the thread may invalidate (`isolation`).
    pub fn owns(&mut self, vmids: Option<Vec<u16>>) -> &mut Self {
        self.owns = vmids;
        self
    }

    /// Ops emitted so far.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no op was emitted yet.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// A descriptor store.
    pub fn store(&mut self, pa: Pa, value: u64) -> Result<(), BuildError> {
        if pa.0 & 7 != 0 {
            return Err(BuildError::Unaligned(pa));
        }
        self.ops.push(Op::Store { pa, value });
        Ok(())
    }

    /// Whether the machine has TLBI `ins` at all (a range form needs
    /// FEAT_TLBIRANGE); checked before its operand is looked at.
    pub fn tlbi_exists(&self, ins: Tlbi) -> Result<(), BuildError> {
        if ins.is_range() && !self.b.features.tlbirange {
            return Err(BuildError::NoTlbiRange(ins));
        }
        Ok(())
    }

    /// A TLBI with its decoded operand; `text` says how it was written.
    /// Its scope is computed for the thread's VMID.
    pub fn tlbi(
        &mut self,
        ins: Tlbi,
        operand: TlbiOperand,
        text: String,
    ) -> Result<(), BuildError> {
        self.tlbi_exists(ins)?;
        match (&operand, ins.takes_operand()) {
            (TlbiOperand::None, true) => {
                return Err(BuildError::Operand(ins, "needs an operand"));
            }
            (o, false) if *o != TlbiOperand::None => {
                return Err(BuildError::Operand(ins, "takes no operand"));
            }
            _ => {}
        }
        let hint = matches!(
            operand,
            TlbiOperand::Va { ttl: Some(_), .. } | TlbiOperand::Ipa { ttl: Some(_), .. }
        );
        if hint && !self.b.features.ttl {
            return Err(BuildError::NoTtl(ins));
        }
        self.ops.push(Op::Tlbi {
            text,
            ins,
            raw: ins.takes_operand().then(|| operand.encode()),
            scope: ins.scope_e2h(&operand, self.vmid, self.e2h()),
            broadcast: ins.broadcast,
        });
        Ok(())
    }

    /// A TLBI with the operand `xt` exactly as software wrote it. An
    /// operand the decoder refuses (RES0 bits set, a reserved TG, a base
    /// the TTL makes UNPREDICTABLE) is still executed, with the worst
    /// effect the architecture allows for it: it removes nothing
    /// ([`Tlbi::malformed_scope`]). The refusal is returned so that the
    /// caller can warn about it.
    pub fn tlbi_raw(
        &mut self,
        ins: Tlbi,
        xt: u64,
        text: String,
    ) -> Result<Option<TlbiDecodeError>, BuildError> {
        // Without FEAT_TTL bits [47:44] of a by-VA or by-IPA operand are
        // RES0 (Arm ARM C5.5, the TLBI operand descriptions): a value there,
        // even one that would read as "no hint", is a RES0 field written
        // non-zero, taken like the decoder's own RES0 refusals.
        let ttl_field = matches!(
            ins.decode(xt),
            Ok(TlbiOperand::Va { .. } | TlbiOperand::Ipa { .. })
        ) && (xt >> 44) & 0xf != 0;
        let decoded = if ttl_field && !self.b.features.ttl {
            Err(TlbiDecodeError {
                tlbi: ins,
                operand: xt,
                field: "TTL",
                value: FieldValue {
                    value: (xt >> 44) & 0xf,
                    width: 4,
                },
                reason: "is RES0 on a machine without FEAT_TTL (Arm ARM C5.5)".into(),
            })
        } else {
            ins.decode(xt)
        };
        match decoded {
            Ok(operand) => {
                self.tlbi(ins, operand, text)?;
                // Keep the operand as written: a TTL that means "no hint"
                // is not re-encoded as 0b0000.
                if let Some(Op::Tlbi { raw, .. }) = self.ops.last_mut() {
                    *raw = ins.takes_operand().then_some(xt);
                }
                Ok(None)
            }
            Err(e) => {
                self.tlbi_exists(ins)?;
                self.ops.push(Op::Tlbi {
                    text: format!("{text} (malformed: removes nothing)"),
                    ins,
                    raw: Some(xt),
                    scope: ins.malformed_scope(self.vmid),
                    broadcast: ins.broadcast,
                });
                Ok(Some(e))
            }
        }
    }

    /// A DMB or ISB (see [`Op::Barrier`]); `text` starting with `isb`
    /// makes it an ISB.
    pub fn barrier(&mut self, text: String) {
        let isb = text
            .trim_start()
            .get(..3)
            .is_some_and(|w| w.eq_ignore_ascii_case("isb"));
        self.ops.push(Op::Barrier { text, isb });
    }

    /// A DSB.
    pub fn dsb(&mut self, kind: Dsb) {
        self.ops.push(Op::Dsb { kind });
    }

    fn in_pool(&self, frame: Pfn) -> Result<(), BuildError> {
        match self.b.machine.mem.owner(frame) {
            FrameOwner::Reserved => Err(BuildError::NotInPool(frame)),
            _ => Ok(()),
        }
    }

    /// Frees a frame of the pool.
    pub fn free(&mut self, frame: Pfn) -> Result<(), BuildError> {
        self.in_pool(frame)?;
        self.ops.push(Op::Free { frame });
        Ok(())
    }

    /// Allocates a frame for `owner`.
    pub fn alloc(&mut self, owner: FrameOwner) {
        self.ops.push(Op::Alloc { owner });
    }

    /// A synchronisation operation.
    pub fn sync(&mut self, op: SyncOp) -> Result<(), BuildError> {
        let (locks, seqs, counters) = (self.b.locks, self.b.seqs, self.b.counters);
        let check = |what, id: u8, declared: usize| {
            if usize::from(id) < declared {
                Ok(())
            } else {
                Err(BuildError::NoSuchSync { what, id, declared })
            }
        };
        match op {
            SyncOp::Lock(i) | SyncOp::Unlock(i) | SyncOp::ReadLock(i) | SyncOp::ReadUnlock(i) => {
                check("lock", i, locks)?
            }
            SyncOp::SeqWriteBegin(i)
            | SyncOp::SeqWriteEnd(i)
            | SyncOp::SeqReadBegin(i)
            | SyncOp::SeqRead(i) => check("sequence count", i, seqs)?,
            SyncOp::AtomicAdd(i, _) | SyncOp::AtomicRead(i) => check("counter", i, counters)?,
            SyncOp::CallRcuFree(f) => self.in_pool(f)?,
            SyncOp::RcuReadLock | SyncOp::RcuReadUnlock | SyncOp::SynchronizeRcu => {}
        }
        self.ops.push(Op::Sync(op));
        Ok(())
    }

    /// An expectation checked at this point.
    pub fn rely(&mut self, r: Rely) -> Result<(), BuildError> {
        match r {
            Rely::ReadOnly { ctx, .. } | Rely::RetrySucceeds { ctx, .. } => {
                if ctx >= self.b.contexts.len() {
                    return Err(BuildError::NoSuchContext(ctx));
                }
            }
            Rely::Access { ctx, .. } => {
                if ctx >= self.b.contexts.len() {
                    return Err(BuildError::NoSuchContext(ctx));
                }
                // Only a model with such an access tracks what awaits an ISB.
                if self.b.machine.unsynced.is_none() {
                    self.b.machine.track_isb();
                }
            }
            Rely::CurrentConfig { dev } => self.device(dev)?,
            Rely::GuestBatch(_) => {
                self.b.machine.smmu.as_ref().ok_or(BuildError::NoSmmu)?;
            }
        }
        self.ops.push(Op::Rely(r));
        Ok(())
    }

    fn device(&self, dev: usize) -> Result<(), BuildError> {
        let smmu = self.b.machine.smmu.as_ref().ok_or(BuildError::NoSmmu)?;
        if dev >= smmu.devices.len() {
            return Err(BuildError::NoSuchDevice(dev));
        }
        Ok(())
    }

    /// An SMMU command written into the Command queue. Commands the SMMU
    /// would refuse as illegal are accepted: the queue stops on them, as
    /// the hardware's does (CERROR_ILL).
    pub fn smmu_cmd(&mut self, cmd: &Command) -> Result<(), BuildError> {
        let smmu = self.b.machine.smmu.as_ref().ok_or(BuildError::NoSmmu)?;
        let range = match cmd {
            Command::TlbiNhVa { va, .. }
            | Command::TlbiNhVaa { va, .. }
            | Command::TlbiEl2Va { va, .. }
            | Command::TlbiEl2Vaa { va } => va.tg != 0,
            Command::TlbiS2Ipa { ipa, .. } => ipa.tg != 0,
            _ => false,
        };
        if range && !self.b.features.smmu_ril {
            return Err(BuildError::Command(format!(
                "{cmd} is a range invalidation (TG != 0), but the SMMU lacks RIL"
            )));
        }
        // CMD_ATC_INV exists only with SMMU_IDR0.ATS (SMMUv3 3.9, 4.5).
        if matches!(cmd, Command::AtcInv { .. }) && !smmu.opts.features.ats {
            return Err(BuildError::Command(format!("{cmd} needs ATS")));
        }
        // Global = 1 also reaches the Global entries of every other PASID
        // of the function (SMMUv3 4.5.1); the model gives each device one
        // SubstreamID and no Global ATC entries, so it refuses the bit
        // rather than ignore it.
        if matches!(cmd, Command::AtcInv { global: true, .. }) {
            return Err(BuildError::Command(format!(
                "{cmd}: Global = 1 is not modelled (one SubstreamID per device, no Global ATC entries)"
            )));
        }
        self.ops.push(Op::SmmuCmd {
            text: cmd.to_string(),
            words: cmd.encode(),
        });
        Ok(())
    }

    /// A command given as its 16 bytes, exactly as software wrote them.
    /// Words the strict decoder accepts are [`ThreadBuilder::smmu_cmd`];
    /// any others still reach the queue, where the SMMU stops on them with
    /// CERROR_ILL (SMMUv3 4.1.3, 7.1), and the decoder's finding is
    /// returned so that the caller can warn about it.
    pub fn smmu_words(&mut self, words: [u64; 2]) -> Result<Option<CmdError>, BuildError> {
        self.b.machine.smmu.as_ref().ok_or(BuildError::NoSmmu)?;
        match Command::decode(words) {
            Ok(cmd) => self.smmu_cmd(&cmd).map(|()| None),
            Err(e) => {
                self.ops.push(Op::SmmuCmd {
                    text: format!("{:#018x} {:#018x} (illegal: {e})", words[0], words[1]),
                    words,
                });
                Ok(Some(e))
            }
        }
    }

    /// The driver's command-error handler: waits for a command error, then
    /// writes what `recover` returns over the offending command and
    /// acknowledges the error (SMMUv3 7.1).
    pub fn smmu_cmdq_recover(&mut self, recover: CmdqRecovery) -> Result<(), BuildError> {
        self.b.machine.smmu.as_ref().ok_or(BuildError::NoSmmu)?;
        self.ops.push(Op::SmmuCmdqRecover { recover });
        Ok(())
    }

    /// A CMD_SYNC, waited for.
    pub fn smmu_sync(&mut self, sync: &Command) -> Result<(), BuildError> {
        self.b.machine.smmu.as_ref().ok_or(BuildError::NoSmmu)?;
        self.ops.push(Op::SmmuSync {
            words: sync.encode(),
        });
        Ok(())
    }

    /// A device transaction.
    pub fn device_access(&mut self, dev: usize, va: Va, write: bool) -> Result<(), BuildError> {
        self.device(dev)?;
        self.ops.push(Op::DeviceAccess { dev, va, write });
        Ok(())
    }

    /// Waits until device `dev` has faulted (a fault handler's start).
    pub fn await_fault(&mut self, dev: usize) -> Result<(), BuildError> {
        self.device(dev)?;
        self.ops.push(Op::AwaitFault { dev });
        Ok(())
    }

    /// The fault handler's answer to a device fault, then the retry.
    pub fn device_resume(&mut self, dev: usize, respond: Responder) -> Result<(), BuildError> {
        self.device(dev)?;
        self.ops.push(Op::DeviceResume { dev, respond });
        Ok(())
    }

    /// Finishes the thread without adding it: its validated ops, for a
    /// program that interleaves them with operations of its own (a kernel
    /// thread whose fault handler awaits a device fault, handles it, then
    /// resumes the device).
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }

    /// Finishes the thread: it runs its ops in order.
    pub fn done(self) {
        self.b.threads.push(Thread {
            name: self.name,
            cpu: self.cpu,
            program: Arc::new(Script::new(self.ops)),
            owns_vmids: self.owns,
        });
    }
}
