//! The DMA API on an arm-smmu-v3 stage-1 domain, as a program: unmapping
//! an IOVA range clears the io-pgtable-arm table the SMMU walks and
//! invalidates the SMMU's TLB (and ATCs) now (strict) or later, from the
//! flush queue (lazy).
//!
//! What one `dma_unmap` does (`iommu_dma_unmap_page` → `__iommu_dma_unmap`
//! → `iommu_unmap_fast` → `arm_lpae_unmap_pages`, then
//! `iommu_iotlb_sync` or `queue_iova`), read from `drivers/iommu/dma-iommu.c`,
//! `drivers/iommu/io-pgtable-arm.c` and
//! `drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c`:
//!
//! - Each 2 MiB-aligned 2 MiB piece of the range whose level-2 entry is a
//!   table is unmapped whole (`iommu_pgsize` picks the 2 MiB size): the
//!   level-2 entry is cleared, `io_pgtable_tlb_flush_walk` invalidates the
//!   piece non-leaf at granule 4 KiB and waits (`arm_smmu_tlb_inv_walk` →
//!   `arm_smmu_tlb_inv_range_domain`, synchronous in both modes, 0e8d86ed2402),
//!   and only then is the level-3 table freed. The 512 PTEs below it are
//!   not written.
//! - Other pages are cleared one PTE at a time; in strict mode each is
//!   added to the gather (`io_pgtable_tlb_add_page`), in lazy mode not
//!   (`iommu_iotlb_gather_queued`). An entry that is not mapped stops the
//!   unmap (`WARN_ON(!pte)`).
//! - Strict: `arm_smmu_iotlb_sync` invalidates the gathered range, leaf,
//!   granule 4 KiB, then frees the IOVA.
//! - Lazy: `queue_iova` puts the IOVA on this CPU's flush queue. The ring
//!   has `IOVA_FQ_SIZE` = 256 slots and keeps one empty (`fq_full` is
//!   `(tail + 1) % size == head`), so when 255 entries wait, the next unmap
//!   first flushes: `fq_flush_iotlb` increments `fq_flush_start_cnt`,
//!   calls `arm_smmu_flush_iotlb_all` (`CMD_TLBI_NH_ASID` + `CMD_SYNC`,
//!   then `CMD_ATC_INV` of everything per ATS StreamID + `CMD_SYNC`) and
//!   increments `fq_flush_finish_cnt`. The timer (`IOVA_FQ_TIMEOUT`,
//!   10 ms) flushes the same way ([`DmaOp::FlushTimeout`]).
//!
//! `arm_smmu_tlb_inv_range_domain`: `CMD_TLBI_NH_VA` by the domain's ASID,
//! one per 4 KiB page without RIL, or range commands taking a 5-bit window
//! of the page count from its lowest set bit with RIL (TTL 3 for leaf
//! invalidations, 6833b8f2e199), then `CMD_SYNC`; then, with ATS masters,
//! one `CMD_ATC_INV` per StreamID and a `CMD_SYNC`
//! (`arm_smmu_atc_inv_domain`). The driver gathers the commands in
//! batches of `CMDQ_BATCH_ENTRIES` = 64; the batches are not ops here,
//! the cost counter submits them the same way.
//!
//! Model choices: 4 KiB pages only (no 2 MiB block mappings), IOVAs below
//! 2^44, one flush queue per thread (a flush retires only its own
//! thread's entries: the shared completion counters' cross-CPU retirement
//! is not modelled, which can only add flushes).

use super::sva::{tlb_inv_range_asid, SmmuFeatures, SmmuOp};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use tlbcheck_checker::op::Op;
use tlbcheck_checker::program::{Emit, OpResult, ProgState, Program};
use tlbcheck_checker::sync::{SyncId, SyncOp};
use tlbcheck_hw::addr::{Granule, Pa};
use tlbcheck_hw::machine::{Dsb, Machine};
use tlbcheck_hw::mem::Pfn;
use tlbcheck_hw::smmu::cmd::{Command, TlbiAddr};
use tlbcheck_hw::vmsa::desc::bits;

use super::mm::{index, tables};

/// `IOVA_FQ_SIZE`: slots of one CPU's flush queue (one stays empty).
pub const IOVA_FQ_SIZE: u64 = 256;
/// The io-pgtable granule (4 KiB pages).
pub const GRANULE: u64 = 4096;
/// A level-2 block: the span of one level-3 table.
pub const BLOCK: u64 = 2 << 20;

/// A kernel version of the DMA path.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DmaKernel {
    /// Linux v6.1: the flush queue in dma-iommu.c with fixed
    /// `IOVA_FQ_SIZE` (256) and `IOVA_FQ_TIMEOUT` (10 ms);
    /// a non-leaf range invalidation whose page count is 32k+1 is sent as
    /// is (before eb6c97647be2).
    Linux6_1,
    /// Linux v6.12: the queue size and timeout are per-cookie options
    /// (`IOVA_DEFAULT_FQ_SIZE` 256 and `IOVA_DEFAULT_FQ_TIMEOUT` 10 ms for
    /// a per-CPU queue, which arm-smmu-v3 keeps; the single 32768-entry
    /// queue is for IOMMUs that shadow on flush), and eb6c97647be2 (v6.6) rounds a 32k+1-page non-leaf range
    /// up by one page so that no NUM = SCALE = TTL = 0 command is built.
    /// For every unmap this module can state the two versions issue the
    /// same commands: a table-freeing walk flush covers 512 pages.
    Linux6_12,
}

impl DmaKernel {
    /// Every version, oldest first.
    pub const ALL: [DmaKernel; 2] = [DmaKernel::Linux6_1, DmaKernel::Linux6_12];

    /// The name scenarios use.
    pub const fn name(self) -> &'static str {
        match self {
            DmaKernel::Linux6_1 => "linux-6.1",
            DmaKernel::Linux6_12 => "linux-6.12",
        }
    }

    /// Whether non-leaf range counts of 32k+1 pages are rounded up
    /// (eb6c97647be2).
    pub const fn rounds_nonleaf(self) -> bool {
        matches!(self, DmaKernel::Linux6_12)
    }
}

impl fmt::Display for DmaKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl crate::version::Named for DmaKernel {
    const WHAT: &'static str = "DMA kernel";
    const ALL: &'static [DmaKernel] = &DmaKernel::ALL;
    fn name(self) -> &'static str {
        DmaKernel::name(self)
    }
}

impl FromStr for DmaKernel {
    type Err = crate::version::UnknownName;
    fn from_str(s: &str) -> Result<DmaKernel, Self::Err> {
        crate::version::parse(s)
    }
}

/// When unmapped IOVAs are invalidated (`iommu.strict=`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Before `dma_unmap` returns (`IOMMU_DOMAIN_DMA`).
    Strict,
    /// From the flush queue (`IOMMU_DOMAIN_DMA_FQ`).
    Lazy,
}

/// A DMA domain: an io-pgtable-arm stage-1 table the SMMU walks for the
/// domain's devices through their CD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    /// The kernel version.
    pub kernel: DmaKernel,
    /// Strict or lazy.
    pub mode: Mode,
    /// SMMU features the driver tests (RIL, ATS).
    pub feat: SmmuFeatures,
    /// The domain's ASID (its CD's).
    pub asid: u16,
    /// Physical address of the level-0 table (4 KiB granule, 48-bit IOVA).
    pub root: u64,
    /// StreamIDs of the ATS-enabled masters attached (one `CMD_ATC_INV` each).
    pub ats_sids: Vec<u32>,
    /// Atomic counters `fq_flush_start_cnt` and `fq_flush_finish_cnt`.
    pub counters: (SyncId, SyncId),
}

/// One DMA API operation.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DmaOp {
    /// `dma_unmap_page` / `iommu_unmap` of `[iova, iova + size)`.
    Unmap {
        /// First byte (4 KiB aligned).
        iova: u64,
        /// Bytes (a multiple of 4 KiB).
        size: u64,
    },
    /// The flush-queue timer fires (`fq_flush_timeout`): the queue is
    /// flushed if anything waits in it.
    FlushTimeout,
}

impl fmt::Display for DmaOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaOp::Unmap { iova, size } => write!(f, "dma unmap {iova:#x} {size:#x}"),
            DmaOp::FlushTimeout => f.write_str("dma flush timeout"),
        }
    }
}

/// One item of a DMA thread: a plain op, or a DMA API operation.
#[derive(Clone, Debug)]
pub enum Item {
    /// An explicit op (a store, a free, a device access).
    Op(Op),
    /// A DMA API operation, run as the kernel does.
    Dma(DmaOp),
}

/// `CMD_ATC_INV` for `[iova, iova + size)` (size 0: everything), as
/// `arm_smmu_atc_inv_to_cmd` builds it: the smallest naturally aligned
/// power-of-two span of pages covering the range, no SubstreamID.
pub fn atc_inv(sid: u32, iova: u64, size: u64) -> Command {
    let (addr, log2) = if size == 0 {
        (0, 52)
    } else {
        let first = iova >> 12;
        let last = (iova + size - 1) >> 12;
        let span = 64 - (first ^ last).leading_zeros();
        ((first & !((1u64 << span) - 1)) << 12, span as u8)
    };
    Command::AtcInv {
        sid,
        ssv: false,
        ssid: 0,
        global: false,
        addr,
        size: log2,
    }
}

/// `arm_smmu_tlb_inv_range_domain(iova, size, granule = 4 KiB, leaf)` for
/// the domain: the TLBI commands and their `CMD_SYNC`, then the ATC
/// invalidation of every ATS StreamID and its `CMD_SYNC`.
pub fn inv_range_domain(d: &Domain, iova: u64, size: u64, leaf: bool) -> Vec<SmmuOp> {
    let bump = !leaf && d.kernel.rounds_nonleaf();
    let mut out = tlb_inv_range_asid(d.feat, Granule::K4, d.asid, iova, size, leaf, bump);
    out.extend(inv_range_domain_atc(d, iova, size));
    out
}

/// One step of a command submission as the CPU runs it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The `dma_wmb()` in `arm_smmu_cmdq_issue_cmdlist` that orders the
    /// table stores before the commands of one submission; the model has no
    /// DMB and stands a DSB ISHST in for it (as the SVA notifier path does).
    Wmb,
    /// A command or a `CMD_SYNC`.
    Smmu(SmmuOp),
}

/// Step `k` of one gathered list of `n` commands (`cmd(i)` the `i`-th)
/// submitted with a `CMD_SYNC`: batches of `CMDQ_BATCH_ENTRIES` = 64,
/// each submitted after a `dma_wmb`, the `CMD_SYNC` with the last.
fn batched(n: usize, cmd: impl Fn(usize) -> Command, k: usize) -> Option<Step> {
    let batches = n.div_ceil(64);
    match k {
        k if k < n + batches => Some(if k % 65 == 0 {
            Step::Wmb
        } else {
            Step::Smmu(SmmuOp::Cmd(cmd(64 * (k / 65) + k % 65 - 1)))
        }),
        k if k == n + batches => Some(Step::Smmu(SmmuOp::Sync)),
        _ => None,
    }
}

fn group_len(n: usize) -> usize {
    n + n.div_ceil(64) + 1
}

/// Step `k` of a list of commands as the driver submits it: each run of
/// commands up to a `CMD_SYNC` is one gathered batch list ([`batched`]).
fn stepped(list: &[SmmuOp], mut k: usize) -> Option<Step> {
    let mut cmds = Vec::new();
    for o in list {
        match o {
            SmmuOp::Cmd(c) => cmds.push(*c),
            SmmuOp::Sync => {
                let len = group_len(cmds.len());
                if k < len {
                    return batched(cmds.len(), |i| cmds[i], k);
                }
                k -= len;
                cmds.clear();
            }
            // The lists here are the DMA path's own, built a command per
            // page or range: none runs away like v6.5's SVA full range.
            SmmuOp::Lockup => unreachable!("a DMA invalidation list never locks up"),
        }
    }
    None
}

/// Step `k` of [`inv_range_domain`] as submitted. Without RIL each page is
/// one command and the list is not built, so a long per-page
/// invalidation costs the same per step as a short one.
pub fn inv_range_domain_nth(
    d: &Domain,
    iova: u64,
    size: u64,
    leaf: bool,
    k: usize,
) -> Option<Step> {
    if d.feat.ril {
        return stepped(&inv_range_domain(d, iova, size, leaf), k);
    }
    let pages = (size / GRANULE) as usize;
    let cmd = |i: usize| Command::TlbiNhVa {
        vmid: 0,
        asid: d.asid,
        va: TlbiAddr::single(iova + i as u64 * GRANULE, leaf),
    };
    batched(pages, cmd, k).or_else(|| {
        let atc: Vec<SmmuOp> = inv_range_domain_atc(d, iova, size);
        stepped(&atc, k - group_len(pages))
    })
}

/// The ATC part of [`inv_range_domain`]: one `CMD_ATC_INV` per ATS
/// StreamID and a `CMD_SYNC`, or nothing.
fn inv_range_domain_atc(d: &Domain, iova: u64, size: u64) -> Vec<SmmuOp> {
    let mut out = Vec::new();
    if d.feat.ats && !d.ats_sids.is_empty() {
        out.extend(
            d.ats_sids
                .iter()
                .map(|&sid| SmmuOp::Cmd(atc_inv(sid, iova, size))),
        );
        out.push(SmmuOp::Sync);
    }
    out
}

/// `arm_smmu_flush_iotlb_all` on a stage-1 domain
/// (`arm_smmu_tlb_inv_context`): `CMD_TLBI_NH_ASID` + `CMD_SYNC`, then an
/// ATC invalidation of everything per ATS StreamID + `CMD_SYNC`.
pub fn flush_iotlb_all(d: &Domain) -> Vec<SmmuOp> {
    let mut out = vec![
        SmmuOp::Cmd(Command::TlbiNhAsid {
            vmid: 0,
            asid: d.asid,
        }),
        SmmuOp::Sync,
    ];
    if d.feat.ats && !d.ats_sids.is_empty() {
        out.extend(
            d.ats_sids
                .iter()
                .map(|&sid| SmmuOp::Cmd(atc_inv(sid, 0, 0))),
        );
        out.push(SmmuOp::Sync);
    }
    out
}

fn step_op(s: Step) -> Op {
    match s {
        Step::Wmb => Op::Dsb { kind: Dsb::Ishst },
        Step::Smmu(SmmuOp::Cmd(c)) => Op::SmmuCmd {
            text: c.to_string(),
            words: c.encode(),
        },
        Step::Smmu(SmmuOp::Sync) => Op::SmmuSync {
            words: super::sva::cmd_sync().encode(),
        },
        Step::Smmu(SmmuOp::Lockup) => unreachable!("a DMA invalidation list never locks up"),
    }
}

// Register use: 0 = bytes of the range done; 1 = step inside the current
// piece (bits 0..24), the piece's kind (bits 24..26) and a freed table's
// frame (bits 32..); 2 = entries waiting in this thread's flush queue
// (kept across items); 3 = the strict gather, first page + 1 (bits 0..32)
// and last page + 1 (bits 32..).
const KIND_SHIFT: u32 = 24;
const STEP_MASK: u64 = (1 << KIND_SHIFT) - 1;
const PFN_SHIFT: u32 = 32;

/// What the unmap does at its cursor.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Piece {
    /// Not yet looked at: the first step reads the cookie.
    Entry = 0,
    /// One 4 KiB PTE.
    Leaf = 1,
    /// A whole level-3 table (its frame in register 1).
    Table = 2,
    /// The range is cleared: sync or queue.
    Finish = 3,
}

fn piece(regs: &[u64; 4]) -> Piece {
    match (regs[1] >> KIND_SHIFT) & 3 {
        0 => Piece::Entry,
        1 => Piece::Leaf,
        2 => Piece::Table,
        _ => Piece::Finish,
    }
}

/// A thread running DMA API operations (and plain ops) in order.
#[derive(Debug)]
pub struct DmaThread {
    domain: Arc<Domain>,
    items: Vec<Item>,
    /// Index of the last `Alloc` item + 1 (0: none), so `may_allocate`
    /// is O(1) however long the thread.
    allocs_until: usize,
}

impl DmaThread {
    /// A thread running `items` on `domain`.
    pub fn new(domain: Arc<Domain>, items: Vec<Item>) -> DmaThread {
        let allocs_until = items
            .iter()
            .rposition(|i| matches!(i, Item::Op(Op::Alloc { .. })))
            .map_or(0, |i| i + 1);
        DmaThread {
            domain,
            items,
            allocs_until,
        }
    }

    /// The item the thread is really at: a timer flush with an empty queue
    /// does nothing and is passed over.
    fn current(&self, pc: u32, regs: &[u64; 4]) -> usize {
        let mut i = pc as usize;
        while let Some(Item::Dma(DmaOp::FlushTimeout)) = self.items.get(i) {
            if regs[1] != 0 || regs[2] != 0 {
                break;
            }
            i += 1;
        }
        i
    }

    /// The flush ops `fq_flush_iotlb` issues, by step: the start count,
    /// [`flush_iotlb_all`] as submitted, the finish count.
    fn flush_step(&self, k: usize) -> Option<Op> {
        let d = &self.domain;
        let smmu = flush_iotlb_all(d);
        let len = (0..).find(|&j| stepped(&smmu, j).is_none()).unwrap_or(0);
        match k {
            0 => Some(Op::Sync(SyncOp::AtomicAdd(d.counters.0, 1))),
            k if k <= len => stepped(&smmu, k - 1).map(step_op),
            k if k == len + 1 => Some(Op::Sync(SyncOp::AtomicAdd(d.counters.1, 1))),
            _ => None,
        }
    }

    /// The op of an unmap at `regs`, with the kernel function it is in.
    fn unmap_step(&self, iova: u64, regs: &[u64; 4], m: &Machine) -> Option<(Op, &'static str)> {
        let d = &self.domain;
        let c = iova + regs[0];
        let k = (regs[1] & STEP_MASK) as usize;
        match piece(regs) {
            Piece::Entry => Some((
                Op::Sync(SyncOp::AtomicRead(d.counters.1)),
                "__iommu_dma_unmap",
            )),
            Piece::Leaf => {
                let l3 = tables(&m.mem, d.root, c)[3]?;
                Some((
                    Op::Store {
                        pa: Pa(l3 + 8 * index(c, 3)),
                        value: 0,
                    },
                    "__arm_lpae_unmap",
                ))
            }
            Piece::Table => {
                let pfn = regs[1] >> PFN_SHIFT;
                if k == 0 {
                    let l2 = tables(&m.mem, d.root, c)[2]?;
                    return Some((
                        Op::Store {
                            pa: Pa(l2 + 8 * index(c, 2)),
                            value: 0,
                        },
                        "__arm_lpae_unmap",
                    ));
                }
                match inv_range_domain_nth(d, c, BLOCK, false, k - 1) {
                    Some(o) => Some((step_op(o), "io_pgtable_tlb_flush_walk")),
                    None => Some((Op::Free { frame: Pfn(pfn) }, "__arm_lpae_free_pgtable")),
                }
            }
            Piece::Finish => match d.mode {
                Mode::Strict => {
                    let g = regs[3];
                    let (first, last) = ((g & 0xffff_ffff) - 1, (g >> 32) - 1);
                    let (start, len) = (first * GRANULE, (last + 1 - first) * GRANULE);
                    inv_range_domain_nth(d, start, len, true, k)
                        .map(|o| (step_op(o), "arm_smmu_iotlb_sync"))
                }
                Mode::Lazy => self
                    .flush_step(k)
                    .map(|o| (o, "queue_iova: fq_flush_iotlb")),
            },
        }
    }

    /// Moves an unmap at `regs` on to its next piece at `iova + done`,
    /// reading memory as it is now (nothing of the piece has been
    /// written yet). Returns false when the unmap has nothing left.
    fn next_piece(&self, iova: u64, size: u64, regs: &mut [u64; 4], m: &Machine) -> bool {
        let d = &self.domain;
        let c = iova + regs[0];
        let end = iova + size;
        let t = if c < end {
            tables(&m.mem, d.root, c)
        } else {
            [None; 4]
        };
        let kind = if c >= end {
            None
        } else if c % BLOCK == 0 && c + BLOCK <= end && t[3].is_some() {
            Some((Piece::Table, t[3].unwrap_or(0) >> 12))
        } else {
            match t[3] {
                Some(l3) if m.mem.read(Pa(l3 + 8 * index(c, 3))) & bits::VALID != 0 => {
                    Some((Piece::Leaf, 0))
                }
                // `WARN_ON(!pte)`: the unmap stops here.
                _ => None,
            }
        };
        if let Some((p, pfn)) = kind {
            regs[1] = ((p as u64) << KIND_SHIFT) | (pfn << PFN_SHIFT);
            return true;
        }
        regs[1] = (Piece::Finish as u64) << KIND_SHIFT;
        match d.mode {
            // An empty gather: `arm_smmu_iotlb_sync` returns at once.
            Mode::Strict => regs[3] != 0,
            Mode::Lazy => {
                if regs[2] + 1 < IOVA_FQ_SIZE {
                    regs[2] += 1;
                    false
                } else {
                    true
                }
            }
        }
    }

    /// Starts item `i` with fresh registers (the flush queue stays).
    fn enter(&self, st: &mut ProgState, i: usize) {
        st.pc = i as u32;
        st.regs = [0, 0, st.regs[2], 0];
        let i = self.current(st.pc, &st.regs);
        st.pc = i as u32;
    }
}

impl Program for DmaThread {
    fn next<'a>(&'a self, st: &ProgState, m: &Machine) -> Option<Emit<'a>> {
        let i = self.current(st.pc, &st.regs);
        match self.items.get(i)? {
            Item::Op(op) => Some(Emit {
                op: Cow::Borrowed(op),
                origin: None,
            }),
            Item::Dma(k @ DmaOp::Unmap { iova, .. }) => {
                let (op, func) = self.unmap_step(*iova, &st.regs, m)?;
                Some(Emit {
                    op: Cow::Owned(op),
                    origin: Some(Cow::Owned(format!("{k} ({}): {func}", self.domain.kernel))),
                })
            }
            Item::Dma(k @ DmaOp::FlushTimeout) => {
                let op = self.flush_step((st.regs[1] & STEP_MASK) as usize)?;
                Some(Emit {
                    op: Cow::Owned(op),
                    origin: Some(Cow::Owned(format!("{k}: fq_flush_timeout"))),
                })
            }
        }
    }

    fn advance(&self, st: &mut ProgState, m: &Machine, _: OpResult) {
        let i = self.current(st.pc, &st.regs);
        st.pc = i as u32;
        let more = match &self.items[i] {
            Item::Op(_) => false,
            Item::Dma(DmaOp::FlushTimeout) => {
                let k = (st.regs[1] & STEP_MASK) as usize + 1;
                if self.flush_step(k).is_some() {
                    st.regs[1] = k as u64;
                    true
                } else {
                    st.regs[2] = 0;
                    false
                }
            }
            Item::Dma(DmaOp::Unmap { iova, size }) => {
                let (iova, size) = (*iova, *size);
                let k = (st.regs[1] & STEP_MASK) + 1;
                match piece(&st.regs) {
                    Piece::Entry => self.next_piece(iova, size, &mut st.regs, m),
                    Piece::Leaf => {
                        let page = (iova + st.regs[0]) / GRANULE + 1;
                        if self.domain.mode == Mode::Strict {
                            let first = match st.regs[3] & 0xffff_ffff {
                                0 => page,
                                f => f,
                            };
                            st.regs[3] = first | (page << 32);
                        }
                        st.regs[0] += GRANULE;
                        self.next_piece(iova, size, &mut st.regs, m)
                    }
                    Piece::Table => {
                        // Steps: the store, the walk flush, the free.
                        let c = iova + st.regs[0];
                        let freed = k >= 2
                            && inv_range_domain_nth(&self.domain, c, BLOCK, false, k as usize - 2)
                                .is_none();
                        if freed {
                            st.regs[0] += BLOCK;
                            self.next_piece(iova, size, &mut st.regs, m)
                        } else {
                            st.regs[1] += 1;
                            true
                        }
                    }
                    Piece::Finish => {
                        let regs = [st.regs[0], st.regs[1] + 1, st.regs[2], st.regs[3]];
                        if self.unmap_step(iova, &regs, m).is_some() {
                            st.regs[1] += 1;
                            true
                        } else {
                            if self.domain.mode == Mode::Lazy {
                                // The flush retired every entry; this
                                // unmap's IOVA is queued after it.
                                st.regs[2] = 1;
                            }
                            false
                        }
                    }
                }
            }
        };
        if !more {
            self.enter(st, i + 1);
        }
    }

    fn may_allocate(&self, st: &ProgState) -> bool {
        (st.pc as usize) < self.allocs_until
    }
}
