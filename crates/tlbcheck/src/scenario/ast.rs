//! The parsed scenario, before lowering: names are still names, and every
//! item keeps its span so that lowering errors point at the source.

use crate::codec::FieldError;
use crate::error::{Located, Span};
use tlbcheck_checker::violation::ViolationKind;
use tlbcheck_hw::addr::Granule;
use tlbcheck_hw::cpu::tlbi::Tlbi;
use tlbcheck_hw::machine::Dsb;
use tlbcheck_hw::smmu::cmd::Command;
use tlbcheck_hw::smmu::ste::{S1Dss, S1Fmt};

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Its source.
    pub span: Span,
}

/// A whole scenario file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// `scenario NAME`.
    pub name: Spanned<String>,
    /// `machine ...`.
    pub machine: MachineDecl,
    /// `smmu ...`, if the machine has an SMMU.
    pub smmu: Option<SmmuDecl>,
    /// `stream ...`: the Stream table's format and placement.
    pub stream: Option<StreamDecl>,
    /// `queue cmdq|eventq ...`, in order.
    pub queues: Vec<QueueDecl>,
    /// `ste SID ...`, in order.
    pub stes: Vec<SteDecl>,
    /// `cd FRAME[SLOT] ...`, in order.
    pub cds: Vec<CdDecl>,
    /// `device NAME sid=...`, in order (the index is the checker's device index).
    pub devices: Vec<DeviceDecl>,
    /// `pool ...` (defaults to [`PoolDecl::DEFAULT`]).
    pub pool: PoolDecl,
    /// `frame ...`, in order.
    pub frames: Vec<FrameDecl>,
    /// `context ...`, in order (the index is the checker's context index).
    pub contexts: Vec<ContextDecl>,
    /// Initial descriptor writes (`L3[5] = page DATA rw`), in order.
    pub writes: Vec<WriteDecl>,
    /// `thread ... { ... }`, in order.
    pub threads: Vec<ThreadDecl>,
    /// `kernel VERSION`: the protocol version high-level steps run.
    pub kernel: Option<Spanned<tlbcheck_protocols::linux::Version>>,
    /// `process NAME asid=N`, in order.
    pub processes: Vec<ProcessDecl>,
    /// `vma PROCESS START LEN rw|ro`, in order.
    pub vmas: Vec<VmaDecl>,
    /// `page PROCESS VA rw|ro`: pages mapped at set-up, in order.
    pub pages: Vec<PageDecl>,
    /// `bind-sva DEVICE PROCESS`, in order.
    pub binds: Vec<BindDecl>,
    /// `host VERSION`: the host service that replays guest batches.
    pub host: Option<Spanned<tlbcheck_protocols::nested::Version>>,
    /// `guest NAME vmid=N` and its `vdevice` lines, in order.
    pub guests: Vec<GuestDecl>,
    /// `kvm VERSION`: the stage-2 manager `s2` steps run.
    pub kvm: Option<Spanned<tlbcheck_protocols::kvm::Version>>,
    /// `vm NAME vmid=N [root=FRAME]`, in order.
    pub vms: Vec<VmDecl>,
    /// `s2-map VM IPA LEN PA rw|ro`: stage-2 mappings made at set-up, in
    /// order.
    pub s2_maps: Vec<S2MapDecl>,
    /// `dma-domain CONTEXT ...`, in order.
    pub dma_domains: Vec<DmaDomainDecl>,
    /// `dma-map CONTEXT IOVA LEN FRAME`, in order.
    pub dma_maps: Vec<DmaMapDecl>,
    /// `map CTX VA TARGET rw|ro ...`: leaves made at set-up with their
    /// intermediate tables, in order.
    pub maps: Vec<MapDecl>,
    /// `bounds ...`.
    pub bounds: BoundsDecl,
    /// `expect ...`.
    pub expect: Spanned<Expect>,
}

/// The CPU side of the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineDecl {
    /// Translation granule of every context.
    pub granule: Granule,
    /// Number of CPUs (1..=8).
    pub cpus: u8,
    /// FEAT_TTL: TLBI operands may carry a level hint.
    pub ttl: bool,
    /// FEAT_TLBIRANGE: range TLBIs exist.
    pub tlbirange: bool,
    /// FEAT_S2FWB (recorded; the model does no cache maintenance).
    pub fwb: bool,
    /// The statement.
    pub span: Span,
}

impl MachineDecl {
    /// One CPU, 4K granule, no optional features: when a scenario names no
    /// machine.
    pub const DEFAULT: MachineDecl = MachineDecl {
        granule: Granule::K4,
        cpus: 1,
        ttl: false,
        tlbirange: false,
        fwb: false,
        span: Span { start: 0, len: 0 },
    };
}

/// SMMU features (SMMU_IDR0/IDR3 bits the scenario relies on).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmmuDecl {
    /// Broadcast TLB maintenance: CPU TLBI IS also reach the SMMU TLB.
    pub btm: bool,
    /// ATS: endpoints with ATCs.
    pub ats: bool,
    /// Range invalidation (SMMU_IDR3.RIL).
    pub ril: bool,
    /// Stall model.
    pub stall: bool,
    /// PRI (page requests).
    pub pri: bool,
    /// SMMU_CR2.E2H: the EL2 StreamWorld is EL2-E2H, with ASIDs; the
    /// model's CPUs then run with HCR_EL2.E2H = 1 too.
    pub e2h: bool,
    /// The statement.
    pub span: Span,
}

/// `stream linear|2-level ...`: `SMMU_STRTAB_BASE(_CFG)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamDecl {
    /// `Some(split)` for a 2-level table (SPLIT 6, 8 or 10), `None` linear.
    pub split: Option<u8>,
    /// log2 of the number of StreamIDs; `None`: the smallest that covers
    /// every `ste`.
    pub log2size: Option<Spanned<u8>>,
    /// The frame holding the table (linear STEs or L1STDs); `None`: an
    /// `smmu`-owned frame is claimed automatically.
    pub at: Option<Spanned<String>>,
    /// The statement.
    pub span: Span,
}

/// Which SMMU queue a `queue` statement places.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum QueueKind {
    /// The Command queue (16-byte entries).
    Cmd,
    /// The Event queue (32-byte records).
    Event,
}

/// `queue cmdq|eventq [at=FRAME] [log2size=N]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueDecl {
    /// Which queue.
    pub kind: QueueKind,
    /// Frame holding the ring; `None`: claimed automatically.
    pub at: Option<Spanned<String>>,
    /// log2 of the number of entries; `None`: one 4 KiB frame's worth.
    pub log2size: Option<Spanned<u8>>,
    /// The statement.
    pub span: Span,
}

/// STE.Config as written.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SteConfig {
    /// `invalid`: V = 0.
    Invalid,
    /// `abort`: Config 0b000.
    Abort,
    /// `bypass`: Config 0b100.
    Bypass,
    /// `s1`: Config 0b101.
    S1,
    /// `s2`: Config 0b110.
    S2,
    /// `nested`: Config 0b111.
    Nested,
}

/// `ste SID CONFIG fields...`: one Stream Table Entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SteDecl {
    /// StreamID.
    pub sid: Spanned<u32>,
    /// Config.
    pub config: SteConfig,
    /// `cd=`: S1ContextPtr (a CD, a linear CD table or an L1CD table).
    pub cd: Option<Spanned<AddrRef>>,
    /// `s1fmt=`: linear, or 2-level with 4K or 64K leaves.
    pub s1fmt: S1Fmt,
    /// `s1cdmax=`: log2 of the number of CDs.
    pub s1cdmax: u8,
    /// `s1dss=`: terminate, bypass or SSID 0.
    pub s1dss: S1Dss,
    /// `s1stalld`: stage-1 stalls disallowed.
    pub s1stalld: bool,
    /// `vmid=`: S2VMID.
    pub vmid: u16,
    /// `s2root=`: the stage-2 table (a frame, an address or a stage-2
    /// context's name).
    pub s2root: Option<Spanned<AddrRef>>,
    /// `eats=`: 0 ATS aborted, 1 full ATS, 2 split-stage, 3 full with DPT.
    pub eats: u8,
    /// `s2stall`: S2S, stall on stage-2 faults.
    pub s2stall: bool,
    /// The statement.
    pub span: Span,
}

/// `cd FRAME[SLOT] fields...`: one Context Descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdDecl {
    /// The CD table frame.
    pub frame: Spanned<String>,
    /// The 64-byte slot in it (the SubstreamID in a linear table).
    pub slot: Spanned<u64>,
    /// `ctx=`: take ASID and TTB0 from this stage-1 context.
    pub ctx: Option<Spanned<String>>,
    /// `asid=`.
    pub asid: Option<Spanned<u16>>,
    /// `ttb0=`: a frame, an address or a context's name.
    pub ttb0: Option<Spanned<AddrRef>>,
    /// `granule=`; `None`: the machine's.
    pub granule: Option<Granule>,
    /// `stall`: CD.S.
    pub stall: bool,
    /// `aset`: CD.ASET (the ASID is not shared with the PEs, so broadcast
    /// TLBIs do not reach it).
    pub aset: bool,
    /// `invalid`: V = 0 (all eight words zero).
    pub invalid: bool,
    /// The statement.
    pub span: Span,
}

/// `device NAME sid=S [ssid=N] [ats] [pri]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceDecl {
    /// Name used by steps.
    pub name: Spanned<String>,
    /// StreamID.
    pub sid: Spanned<u32>,
    /// SubstreamID of its transactions.
    pub ssid: Option<Spanned<u32>>,
    /// Has an ATC (ATS).
    pub ats: bool,
    /// Sends page requests (PRI).
    pub pri: bool,
    /// The statement.
    pub span: Span,
}

/// The allocator's pool of frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolDecl {
    /// First byte (4 KiB aligned).
    pub base: u64,
    /// Number of 4 KiB frames.
    pub frames: u32,
    /// The statement (empty when defaulted).
    pub span: Span,
}

impl PoolDecl {
    /// 64 frames at 1 MiB, when a scenario names no pool.
    pub const DEFAULT: PoolDecl = PoolDecl {
        base: 0x10_0000,
        frames: 64,
        span: Span { start: 0, len: 0 },
    };
}

/// Who owns a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerSpec {
    /// `s1-table process=N level=L`.
    S1Table {
        /// Process.
        process: u16,
        /// Level.
        level: u8,
    },
    /// `s2-table vm=N level=L`.
    S2Table {
        /// VMID.
        vm: u16,
        /// Level.
        level: u8,
    },
    /// `data process=N`.
    Data {
        /// Process.
        process: u16,
    },
    /// `smmu`: SMMU structures (stream table, CD tables, queues).
    Smmu,
}

/// `frame NAME OWNER ... [at=PA] [frames=N]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameDecl {
    /// The name used in descriptors and steps.
    pub name: Spanned<String>,
    /// Owner tag.
    pub owner: OwnerSpec,
    /// Fixed placement; else the first free aligned frames of the pool.
    pub at: Option<Spanned<u64>>,
    /// Number of 4 KiB frames (default: a table of the granule for
    /// tables, one frame for data).
    pub frames: Option<Spanned<u32>>,
    /// The statement.
    pub span: Span,
}

/// A frame or a literal address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddrRef {
    /// A number.
    Lit(u64),
    /// A frame's base, plus an offset.
    Frame {
        /// The frame name.
        name: String,
        /// Byte offset.
        offset: u64,
    },
}

/// `context NAME KIND ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextDecl {
    /// Name used by `rely-read-only` and `retry`.
    pub name: Spanned<String>,
    /// Which stages.
    pub kind: ContextKind,
    /// The statement.
    pub span: Span,
}

/// Stages of a context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContextKind {
    /// `stage1 asid=A root=R [vmid=V]`.
    Stage1 {
        /// ASID.
        asid: u16,
        /// VMID (0: host).
        vmid: u16,
        /// Start-level table (PA).
        root: Spanned<AddrRef>,
    },
    /// `stage2 vmid=V root=R`.
    Stage2 {
        /// VMID.
        vmid: u16,
        /// Start-level stage-2 table (PA).
        root: Spanned<AddrRef>,
    },
    /// `nested asid=A vmid=V root=IPA s2root=R`.
    Nested {
        /// ASID.
        asid: u16,
        /// VMID.
        vmid: u16,
        /// Stage-1 start-level table (an IPA).
        root: Spanned<AddrRef>,
        /// Stage-2 start-level table (PA).
        s2root: Spanned<AddrRef>,
    },
}

/// Where a descriptor store goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// `FRAME[index]`: the index-th 64-bit word of a named frame.
    Index {
        /// Frame name.
        frame: Spanned<String>,
        /// Descriptor index.
        index: Spanned<u64>,
    },
    /// `[0xPA]`: a word address.
    Pa(Spanned<u64>),
}

/// A descriptor value, readable or raw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DescExpr {
    /// A raw 64-bit value (`0x...`; `0` and `invalid` are zero).
    Raw(u64),
    /// `table REF`.
    Table(Spanned<AddrRef>),
    /// `page REF flags` / `block REF flags` (stage 1).
    S1 {
        /// Block (else page).
        block: bool,
        /// Output address.
        target: Spanned<AddrRef>,
        /// AP\[2\] clear.
        writable: bool,
        /// AP\[1\].
        user: bool,
        /// nG.
        ng: bool,
        /// Extra bits (UXN, PXN, DBM, contiguous) to OR in.
        extra: u64,
        /// Clear AF.
        noaf: bool,
    },
    /// `s2page REF flags` / `s2block REF flags`.
    S2 {
        /// Block (else page).
        block: bool,
        /// Output address.
        target: Spanned<AddrRef>,
        /// S2AP\[0\].
        read: bool,
        /// S2AP\[1\].
        write: bool,
        /// Extra bits (XN, DBM, contiguous).
        extra: u64,
        /// Clear AF.
        noaf: bool,
    },
    /// `l1cd REF`: a valid level-1 CD descriptor pointing at a level-2 CD
    /// table.
    L1Cd(Spanned<AddrRef>),
}

/// `LOCATION = DESCRIPTOR` in the set-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteDecl {
    /// Where.
    pub at: Location,
    /// What.
    pub value: Spanned<DescExpr>,
    /// The statement.
    pub span: Span,
}

/// `thread NAME cpu=N [vmid=V] [owns=V,...] { steps }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadDecl {
    /// Name in traces.
    pub name: Spanned<String>,
    /// CPU it runs on.
    pub cpu: Spanned<u8>,
    /// Current VMID for TLBIs (VTTBR_EL2.VMID); 0 by default.
    pub vmid: u16,
    /// VMIDs the thread may invalidate (`isolation`); `None`: any.
    pub owns: Option<Vec<u16>>,
    /// `guest=NAME`: the thread is that guest's, its SMMU commands go to
    /// its virtual SMMU in batches the host replays.
    pub guest: Option<Spanned<String>>,
    /// For a `vcpu` thread: its VM (whose VMID the thread runs with).
    pub vm: Option<Spanned<String>>,
    /// The steps, in program order.
    pub steps: Vec<Spanned<Step>>,
    /// The header.
    pub span: Span,
}

/// A TLBI operand as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlbiOperandExpr {
    /// `0x...`.
    Raw(u64),
    /// `asid= va= ipa= ttl= tg= scale= num= base=`.
    Fields(Vec<Field>),
    /// Nothing (operations that take no operand).
    None,
}

/// `key=value` with spans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// Key, lower case.
    pub key: Spanned<String>,
    /// The value as written (a number, or a word such as `4k`).
    pub value: Spanned<String>,
}

impl Field {
    /// The `(key, value)` pairs the codec builds operands from.
    pub fn pairs(fields: &[Field]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|f| (f.key.value.clone(), f.value.value.clone()))
            .collect()
    }

    /// A codec error located at the field it blames, else at `whole`.
    pub fn locate(fields: &[Field], e: FieldError, whole: Span) -> Located {
        let span = e
            .field
            .map_or(whole, |i| fields[i].key.span.to(fields[i].value.span));
        Located::new(span, e.message)
    }
}

/// A device access (SMMU side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceAccess {
    /// Device name.
    pub device: Spanned<String>,
    /// A write (else a read).
    pub write: bool,
    /// Input address (VA or IOVA).
    pub addr: u64,
    /// PASID, if the access carries one.
    pub ssid: Option<u32>,
}

/// One thread step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `dma unmap CONTEXT IOVA LEN` or `dma flush CONTEXT`.
    Dma(DmaStep),
    /// `[store] LOCATION = DESCRIPTOR`.
    Store {
        /// Where.
        at: Location,
        /// What.
        value: Spanned<DescExpr>,
    },
    /// `tlbi MNEMONIC operand`.
    Tlbi {
        /// The instruction.
        tlbi: Spanned<Tlbi>,
        /// Its operand.
        operand: Spanned<TlbiOperandExpr>,
    },
    /// `dsb KIND`.
    Dsb(Dsb),
    /// `free FRAME`.
    Free(Spanned<AddrRef>),
    /// `alloc OWNER`.
    Alloc(OwnerSpec),
    /// `rcu_read_lock`.
    RcuLock,
    /// `rcu_read_unlock`.
    RcuUnlock,
    /// `call_rcu free FRAME`.
    CallRcuFree(Spanned<AddrRef>),
    /// `synchronize_rcu`.
    SynchronizeRcu,
    /// `rely-read-only CTX ADDR`.
    RelyReadOnly {
        /// Context name.
        ctx: Spanned<String>,
        /// Address.
        va: u64,
    },
    /// `retry read|write CTX ADDR`.
    Retry {
        /// A write.
        write: bool,
        /// Context name.
        ctx: Spanned<String>,
        /// Address.
        va: u64,
    },
    /// `access read|write CTX ADDR`: the thread's CPU makes an explicit
    /// access, which may still use entries its completed TLBIs removed
    /// unless an `isb` came after the completing DSB (Arm ARM D8.17.8).
    Access {
        /// A write.
        write: bool,
        /// Context name.
        ctx: Spanned<String>,
        /// Address.
        va: u64,
    },
    /// `smmu cmd ...`: a command queued on the SMMU's command queue.
    SmmuCmd(Command),
    /// `smmu cmd 0xDW0 0xDW1` in a guest thread: raw words, not decoded
    /// (a guest may write anything; the host service decides).
    GuestCmd([u64; 2]),
    /// `cmd_sync` / `smmu cmd_sync`: a CMD_SYNC and a wait for it.
    CmdSync,
    /// `dmb KIND` or `isb`: barriers that complete nothing, as written.
    Barrier(String),
    /// `smmu cmd ...` whose encoding the strict decoder refuses: the words
    /// are written as they are, and the SMMU stops its queue on them
    /// (CERROR_ILL). `blame` is the text responsible (the field, or the
    /// raw words), where the warning points.
    SmmuIllegal {
        /// dw0, dw1.
        words: [u64; 2],
        /// Where the warning points.
        blame: Span,
    },
    /// `smmu skip_err`: the driver's command-error handler
    /// (`arm_smmu_cmdq_skip_err`), run once a command error stopped the
    /// queue.
    CmdqSkipErr,
    /// `device D access read|write ADDR [ssid=N]`.
    DeviceAccess(DeviceAccess),
    /// `resume D`: resume a stalled transaction of device D.
    Resume(Spanned<String>),
    /// `await-fault D`: the fault handler runs once device D has faulted
    /// (it is stalled or waits for a page response).
    AwaitFault(Spanned<String>),
    /// `rely-config D`: the software relies on device D's stream using the
    /// configuration now in memory.
    RelyConfig(Spanned<String>),
    /// A kernel operation (`munmap`, `madvise-dontneed`, `write-fault`).
    Kernel(KernelStep),
    /// A stage-2 operation of the KVM version (`s2 unmap VM IPA LEN`).
    S2(S2Step),
}

/// `guest NAME vmid=N`: a VM whose devices appear under virtual
/// StreamIDs, given by `vdevice GUEST DEVICE vsid=N` lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestDecl {
    /// Name.
    pub name: Spanned<String>,
    /// The VMID of its stage 2.
    pub vmid: u16,
    /// Its devices: (vSID, device name), in order.
    pub vdevices: Vec<(u32, Spanned<String>)>,
    /// The statement.
    pub span: Span,
}

/// `process NAME asid=N`: an address space of the memory manager; or
/// `mirror NAME PROCESS asid=N [no-retry]`: a shadow page table mirroring
/// one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessDecl {
    /// Name used by steps, `vma`, `page`, `bind-sva` and `cd ctx=`.
    pub name: Spanned<String>,
    /// Its ASID.
    pub asid: u16,
    /// For a mirror: the process it mirrors.
    pub mirror_of: Option<Spanned<String>>,
    /// For a mirror: its fault path re-checks the sequence count.
    pub retry: bool,
    /// The statement.
    pub span: Span,
}

/// `vma PROCESS START LEN rw|ro`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmaDecl {
    /// The process.
    pub process: Spanned<String>,
    /// First byte.
    pub start: Spanned<u64>,
    /// Length in bytes.
    pub len: Spanned<u64>,
    /// VM_WRITE.
    pub writable: bool,
    /// The statement.
    pub span: Span,
}

/// `page PROCESS VA rw|ro|clean`: a data page mapped at set-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageDecl {
    /// The process.
    pub process: Spanned<String>,
    /// Its address.
    pub va: Spanned<u64>,
    /// The PTE is writable (else read-only).
    pub writable: bool,
    /// `clean`: writable for Linux but not yet written (arm64's
    /// `pte_mkclean`: PTE_WRITE, the DBM bit, with PTE_RDONLY), so the
    /// hardware grants reads only.
    pub clean: bool,
    /// The statement.
    pub span: Span,
}

/// `bind-sva DEVICE PROCESS`: the device's notifier subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindDecl {
    /// The device.
    pub device: Spanned<String>,
    /// The process.
    pub process: Spanned<String>,
    /// The statement.
    pub span: Span,
}

/// Which kernel operation a high-level step runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum KernelStepKind {
    /// `munmap P ADDR LEN`.
    Munmap,
    /// `madvise-dontneed P ADDR LEN`.
    MadviseDontneed,
    /// `write-fault P ADDR`.
    WriteFault,
    /// `fork P CHILD`.
    Fork,
    /// `mirror-fault M ADDR`.
    MirrorFault,
    /// `mremap P OLD LEN NEW`.
    Mremap,
    /// `reclaim P ADDR`.
    Reclaim,
    /// `mprotect P ADDR LEN ro|rw`.
    Mprotect,
    /// `exit P`.
    Exit,
    /// `mmap P ADDR LEN rw|ro`.
    Mmap,
    /// `touch P ADDR read|write`.
    Touch,
    /// `migrate P ADDR sync|async`.
    Migrate,
}

/// A high-level step: a kernel operation on a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelStep {
    /// Which.
    pub kind: KernelStepKind,
    /// The process.
    pub process: Spanned<String>,
    /// The address.
    pub addr: Spanned<u64>,
    /// The length, for range operations.
    pub len: Option<Spanned<u64>>,
    /// The child process, for `fork`.
    pub child: Option<Spanned<String>>,
    /// The new address, for `mremap`.
    pub to: Option<Spanned<u64>>,
    /// The new protection, for `mprotect` and `mmap`: writable or
    /// read-only; for `touch`, whether the access is a write; for
    /// `migrate`, whether the mode is MIGRATE_ASYNC.
    pub writable: Option<bool>,
}

impl KernelStep {
    /// A step of `kind` on `process` at `addr`, with none of the optional
    /// operands.
    pub fn new(kind: KernelStepKind, process: Spanned<String>, addr: Spanned<u64>) -> KernelStep {
        KernelStep {
            kind,
            process,
            addr,
            len: None,
            child: None,
            to: None,
            writable: None,
        }
    }
}

/// Exploration bounds; `None` keeps the checker's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BoundsDecl {
    /// Longest path.
    pub depth: Option<u32>,
    /// Most states stored.
    pub states: Option<u64>,
}

/// What the scenario expects.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No violation within bounds.
    Ok,
    /// The first violation found has this kind.
    Violation(ViolationKind),
}

impl Expect {
    /// `ok` or the violation name.
    pub fn name(self) -> &'static str {
        match self {
            Expect::Ok => "ok",
            Expect::Violation(k) => k.name(),
        }
    }
}

/// `vm NAME vmid=N [root=FRAME]`: a VM of the stage-2 manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmDecl {
    /// Name used by `s2` steps, `vcpu vm=`, `rely-read-only` and `retry`
    /// (the VM's stage-2 context).
    pub name: Spanned<String>,
    /// VMID.
    pub vmid: Spanned<u16>,
    /// A declared level-0 stage-2 table frame as its root; `None`: one
    /// is allocated from the pool.
    pub root: Option<Spanned<String>>,
    /// `backs=PROCESS ipa=IPA hva=HVA len=LEN`: a memslot backed by the
    /// process, whose mmu notifier unmaps the VM's stage 2.
    pub slot: Option<SlotDecl>,
    /// The statement.
    pub span: Span,
}

/// A VM's memslot backed by a process (`vm ... backs=P ipa= hva= len=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotDecl {
    /// The process.
    pub process: Spanned<String>,
    /// First IPA.
    pub ipa: Spanned<u64>,
    /// First HVA.
    pub hva: Spanned<u64>,
    /// Length.
    pub len: Spanned<u64>,
}

/// `dma-domain CONTEXT strict|lazy [linux-6.1|linux-6.12]`: the stage-1
/// context is a DMA domain's io-pgtable, walked by the SMMU only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmaDomainDecl {
    /// The context.
    pub context: Spanned<String>,
    /// Lazy (flush queue) rather than strict.
    pub lazy: bool,
    /// The kernel version (default linux-6.12).
    pub kernel: tlbcheck_protocols::linux::dma::DmaKernel,
    /// The statement.
    pub span: Span,
}

/// `map CTX VA TARGET rw|ro [user] [ng] [level=N]`: a page (or a block at
/// level N) of context CTX mapping VA to TARGET, with every missing
/// intermediate table taken from the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapDecl {
    /// The context (stage 1 or stage 2).
    pub ctx: Spanned<String>,
    /// The input address (VA, or IPA for a stage-2 context).
    pub va: Spanned<u64>,
    /// The output: a frame or an address.
    pub target: Spanned<AddrRef>,
    /// Writable.
    pub writable: bool,
    /// Stage 1: EL0 access (AP\[1\]).
    pub user: bool,
    /// Stage 1: not global.
    pub ng: bool,
    /// The leaf's level: 3 (a page) unless given.
    pub level: Option<Spanned<u8>>,
    /// The statement.
    pub span: Span,
}

/// `s2-map VM IPA LEN PA rw|ro`: a stage-2 mapping made at set-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S2MapDecl {
    /// The VM.
    pub vm: Spanned<String>,
    /// First IPA.
    pub ipa: Spanned<u64>,
    /// Length in bytes.
    pub len: Spanned<u64>,
    /// Output address.
    pub pa: Spanned<u64>,
    /// Writable.
    pub write: bool,
    /// The statement.
    pub span: Span,
}

/// `dma-map CONTEXT IOVA LEN FRAME`: set-up maps `LEN` bytes of 4 KiB
/// pages at `IOVA` to the frames of `FRAME`, allocating tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmaMapDecl {
    /// The domain's context.
    pub context: Spanned<String>,
    /// First IOVA.
    pub iova: Spanned<u64>,
    /// Bytes.
    pub len: Spanned<u64>,
    /// The data frame(s) mapped.
    pub frame: Spanned<String>,
    /// The statement.
    pub span: Span,
}

/// Which stage-2 operation an `s2` step runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum S2StepKind {
    /// `s2 map VM IPA LEN PA rw|ro`: a vCPU's stage-2 fault.
    Map,
    /// `s2 unmap VM IPA LEN`.
    Unmap,
    /// `s2 wrprotect VM IPA LEN`: dirty logging.
    Wrprotect,
    /// `s2 relax VM IPA`: a permission fault relaxed to read-write.
    Relax,
    /// `s2 age VM IPA`: clear the access flag.
    Age,
}

/// `s2 OP VM IPA ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S2Step {
    /// Which.
    pub kind: S2StepKind,
    /// The VM.
    pub vm: Spanned<String>,
    /// The IPA.
    pub ipa: Spanned<u64>,
    /// The length, for range operations.
    pub len: Option<Spanned<u64>>,
    /// The output address, for `map`.
    pub pa: Option<Spanned<u64>>,
    /// Writable, for `map`.
    pub write: bool,
}

/// A DMA API step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmaStep {
    /// The domain's context.
    pub context: Spanned<String>,
    /// `unmap IOVA LEN`, or `None` for `flush` (the flush-queue timer).
    pub unmap: Option<(Spanned<u64>, Spanned<u64>)>,
    /// `each=N`: the range is unmapped as consecutive buffers of N bytes,
    /// one `dma_unmap` each.
    pub each: Option<Spanned<u64>>,
}
