//! The stage-2 manager's operations as [`Program`]s (`arch/arm64/kvm/mmu.c`
//! and the generic callers of `virt/kvm/kvm_main.c`): each takes
//! `kvm->mmu_lock` as KVM does (for write to unmap, write-protect and age;
//! for read in the vCPU fault paths, which walk the table concurrently),
//! walks under RCU (`kvm_pgtable_walk_begin`), and flushes where the
//! version does.
//!
//! The walk is not planned ahead: the program's registers hold the
//! walker's position ([`Cursor`]), the entry it visits and the value it
//! read there (`ctx->old`), and it reads the next entry from memory when
//! it gets there, as `__kvm_pgtable_visit` does. A visit's steps are a
//! function of those registers alone.
//!
//! Restrictions (checked when a scenario is loaded): a shared walk's
//! `cmpxchg` is a plain store, so at most one thread per VM takes the
//! fault paths (`s2 map`, `s2 relax`); the memory cache is filled with
//! exactly the tables a fault allocates, at the point it takes them;
//! frames lie below 64 GiB (an allocated frame's number is kept in 24
//! bits of a register).

use super::pgtable::{self, Cursor, Step as WalkStepOf, WalkStep, Walker};
use super::tlb::{self, S2Op};
use super::Version;
use crate::linux::arm64::{CpuFeatures, PAGE_SIZE};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use tlbcheck_checker::op::{Op, Rely};
use tlbcheck_checker::program::{Emit, OpResult, ProgState, Program};
use tlbcheck_checker::sync::{SyncId, SyncOp};
use tlbcheck_hw::addr::{Pa, Va};
use tlbcheck_hw::machine::{Dsb, Machine};
use tlbcheck_hw::mem::{FrameOwner, TableOwner};
use tlbcheck_hw::vmsa::desc::{bits, table};

/// A VM: its VMID and stage-2 table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vm {
    /// Name in scenarios and traces.
    pub name: String,
    /// VMID (VTTBR_EL2.VMID).
    pub vmid: u16,
    /// Physical address of the level-0 stage-2 table (VTTBR_EL2.BADDR).
    pub root: u64,
    /// Index of its stage-2 context in the model (what a read-only
    /// expectation names).
    pub ctx: usize,
}

/// The hypervisor every KVM thread of a scenario runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hyp {
    /// Which KVM.
    pub version: Version,
    /// CPU features the flush code tests.
    pub cpu: CpuFeatures,
    /// FEAT_S2FWB (`stage2_has_fwb`).
    pub fwb: bool,
    /// The VMs, by index.
    pub vms: Vec<Vm>,
    /// The first of the model's locks that are the VMs' `mmu_lock`s.
    pub lock_base: usize,
    /// The first of the model's counters that count each VM's cache
    /// maintenance (the CMOs done without FWB).
    pub counter_base: usize,
}

impl Hyp {
    /// Locks it needs: `kvm->mmu_lock` of each VM.
    pub fn locks(&self) -> usize {
        self.vms.len()
    }

    /// Counters it needs: the CMO count of each VM.
    pub fn counters(&self) -> usize {
        self.vms.len()
    }

    fn mmu_lock(&self, vm: usize) -> SyncId {
        (self.lock_base + vm) as SyncId
    }

    fn cmo_count(&self, vm: usize) -> SyncId {
        (self.counter_base + vm) as SyncId
    }
}

/// A stage-2 operation.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum S2Kind {
    /// A vCPU's stage-2 fault (`user_mem_abort`): `kvm_pgtable_stage2_map`
    /// of `[ipa, ipa + len)` to `pa` under `mmu_lock` held for read, a
    /// shared walk: blocks where they fit (replacing a table, which goes
    /// through `free_unlinked_table`), tables allocated where they do not.
    Map {
        /// First IPA.
        ipa: u64,
        /// Length (a page or a 2 MiB block).
        len: u64,
        /// Output address.
        pa: u64,
        /// Writable.
        write: bool,
    },
    /// `kvm_unmap_gfn_range` (the mmu notifier's `invalidate_range_start`)
    /// -> `kvm_pgtable_stage2_unmap` under `mmu_lock` held for write.
    Unmap {
        /// First IPA.
        ipa: u64,
        /// Length.
        len: u64,
    },
    /// Dirty logging's `kvm_mmu_wp_memory_region`: clear S2AP\[1\] on every
    /// leaf of the range under the write lock, flush after dropping it
    /// (`kvm_flush_remote_tlbs_memslot`), then rely on the pages being
    /// read-only (a write must fault to be logged).
    Wrprotect {
        /// First IPA.
        ipa: u64,
        /// Length.
        len: u64,
    },
    /// A permission fault on a present page (`user_mem_abort` ->
    /// `kvm_pgtable_stage2_relax_perms`): set S2AP\[1\] under the read lock
    /// and invalidate with the local `__kvm_tlb_flush_vmid_ipa_nsh`; from
    /// v6.7 also when the walk finds the entry invalid (`-EAGAIN`).
    Relax {
        /// The faulting IPA.
        ipa: u64,
    },
    /// `kvm_mmu_notifier_clear_flush_young` -> `kvm_age_gfn`:
    /// `kvm_pgtable_stage2_mkold` clears AF under the write lock, then,
    /// if the page was young, `kvm_flush_remote_tlbs` (the TLBI "over in
    /// the core code").
    Age {
        /// The IPA.
        ipa: u64,
    },
}

impl S2Kind {
    fn range(&self) -> (u64, u64) {
        match *self {
            S2Kind::Map { ipa, len, .. }
            | S2Kind::Unmap { ipa, len }
            | S2Kind::Wrprotect { ipa, len } => (ipa, ipa + len),
            S2Kind::Relax { ipa } | S2Kind::Age { ipa } => {
                let page = ipa & !(PAGE_SIZE - 1);
                (page, page + PAGE_SIZE)
            }
        }
    }

    /// Whether the operation holds `mmu_lock` for write (else for read).
    fn exclusive(&self) -> bool {
        !matches!(self, S2Kind::Map { .. } | S2Kind::Relax { .. })
    }
}

impl fmt::Display for S2Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, e) = self.range();
        match *self {
            S2Kind::Map { pa, write, .. } => write!(
                f,
                "s2 map {s:#x}-{e:#x} -> {pa:#x} {}",
                if write { "rw" } else { "ro" }
            ),
            S2Kind::Unmap { .. } => write!(f, "s2 unmap {s:#x}-{e:#x}"),
            S2Kind::Wrprotect { .. } => write!(f, "s2 wrprotect {s:#x}-{e:#x}"),
            S2Kind::Relax { ipa } => write!(f, "s2 relax {ipa:#x}"),
            S2Kind::Age { ipa } => write!(f, "s2 age {ipa:#x}"),
        }
    }
}

/// A stage-2 operation on VM `vm`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct S2Call {
    /// VM index.
    pub vm: usize,
    /// What.
    pub kind: S2Kind,
}

/// One item of a KVM thread.
#[derive(Clone, Debug)]
pub enum Item {
    /// An explicit operation, run as written.
    Op(Op),
    /// A stage-2 operation.
    S2(S2Call),
}

/// Where an operation is: the register-0 bits above the cursor.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    Prologue,
    Walk,
    Epilogue,
}

const PHASE_SHIFT: u32 = 60;
/// Register 2: the visited entry's address below this bit, the page an
/// allocation returned above it.
const ALLOC_SHIFT: u32 = 40;
/// Register 3: the current TABLE_POST visit zaps its entry.
const ZAP: u64 = 1;
/// Register 3: the aged page was young.
const YOUNG: u64 = 2;
/// Register 3: the relaxed leaf's level plus one, at this shift.
const RELAX_SHIFT: u32 = 8;
/// Register 3, at [`RELAX_SHIFT`]: the relax walk met an invalid entry
/// (`-EAGAIN`) and the version flushes anyway, with no level known.
const RELAX_EAGAIN: u64 = 5;

/// What `advance` does after an op.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum After {
    Go,
    /// The walk starts (`kvm_pgtable_walk_begin` has run).
    StartWalk,
    /// Keep the allocated page in register 2.
    Alloc,
}

struct Step {
    op: Op,
    func: &'static str,
    after: After,
}

/// A thread of the hypervisor: explicit operations and stage-2 operations.
#[derive(Debug)]
pub struct KvmThread {
    hyp: Arc<Hyp>,
    items: Vec<Item>,
}

/// `pc`: the item index above [`MICRO_BITS`], the step inside the current
/// phase below.
const MICRO_BITS: u32 = 12;

fn phase(regs: &[u64; 4]) -> Phase {
    match regs[0] >> PHASE_SHIFT {
        0 => Phase::Prologue,
        1 => Phase::Walk,
        _ => Phase::Epilogue,
    }
}

fn set_phase(regs: &mut [u64; 4], p: Phase) {
    regs[0] &= (1 << PHASE_SHIFT) - 1;
    regs[0] |= (p as u64) << PHASE_SHIFT;
}

impl KvmThread {
    /// A thread running `items` in order on `hyp`.
    pub fn new(hyp: Arc<Hyp>, items: Vec<Item>) -> KvmThread {
        KvmThread { hyp, items }
    }

    fn walker(&self, call: &S2Call) -> Walker {
        let (start, end) = call.kind.range();
        Walker {
            version: self.hyp.version,
            cpu: self.hyp.cpu,
            fwb: self.hyp.fwb,
            start,
            end,
        }
    }

    /// The steps of the current phase of `call`.
    fn steps(&self, call: &S2Call, regs: &[u64; 4]) -> Vec<Step> {
        let mut out = Vec::new();
        match phase(regs) {
            Phase::Prologue => self.prologue(call, &mut out),
            Phase::Walk => {
                let visit = self.visit(call, regs).0;
                let vmid = self.hyp.vms[call.vm].vmid;
                let alloc = regs[2] >> ALLOC_SHIFT;
                for (w, func) in visit {
                    self.push_walk(&mut out, call.vm, vmid, w, func, alloc);
                }
            }
            Phase::Epilogue => self.epilogue(call, regs, &mut out),
        }
        out
    }

    fn prologue(&self, call: &S2Call, out: &mut Vec<Step>) {
        let lock = self.hyp.mmu_lock(call.vm);
        let (op, func) = match call.kind {
            S2Kind::Map { .. } | S2Kind::Relax { .. } => (
                SyncOp::ReadLock(lock),
                "user_mem_abort: read_lock(&kvm->mmu_lock)",
            ),
            S2Kind::Unmap { .. } => (
                SyncOp::Lock(lock),
                "kvm_mmu_notifier_invalidate_range_start: KVM_MMU_LOCK",
            ),
            S2Kind::Wrprotect { .. } => (
                SyncOp::Lock(lock),
                "kvm_mmu_wp_memory_region: write_lock(&kvm->mmu_lock)",
            ),
            S2Kind::Age { .. } => (
                SyncOp::Lock(lock),
                "kvm_mmu_notifier_clear_flush_young: KVM_MMU_LOCK",
            ),
        };
        if self.hyp.version.rcu() {
            out.push(Step {
                op: Op::Sync(op),
                func,
                after: After::Go,
            });
            out.push(Step {
                op: Op::Sync(SyncOp::RcuReadLock),
                func: "kvm_pgtable_walk_begin: rcu_read_lock",
                after: After::StartWalk,
            });
        } else {
            out.push(Step {
                op: Op::Sync(op),
                func,
                after: After::StartWalk,
            });
        }
    }

    fn epilogue(&self, call: &S2Call, regs: &[u64; 4], out: &mut Vec<Step>) {
        let hyp = &self.hyp;
        let v = hyp.version;
        let vm = &hyp.vms[call.vm];
        let lock = hyp.mmu_lock(call.vm);
        let code = v.flush_code();
        let sync = |out: &mut Vec<Step>, op, func| {
            out.push(Step {
                op: Op::Sync(op),
                func,
                after: After::Go,
            })
        };
        if v.rcu() {
            sync(
                out,
                SyncOp::RcuReadUnlock,
                "kvm_pgtable_walk_end: rcu_read_unlock",
            );
        }
        let unlock = if call.kind.exclusive() {
            SyncOp::Unlock(lock)
        } else {
            SyncOp::ReadUnlock(lock)
        };
        match call.kind {
            S2Kind::Map { .. } => {
                out.push(Step {
                    op: Op::Dsb { kind: Dsb::Ishst },
                    func: "kvm_pgtable_stage2_map: dsb(ishst)",
                    after: After::Go,
                });
                sync(out, unlock, "user_mem_abort: read_unlock(&kvm->mmu_lock)");
            }
            S2Kind::Unmap { ipa, len } => {
                if v.defers_unmap(hyp.cpu, hyp.fwb) {
                    let ops = tlb::flush_vmid_range(code, hyp.cpu, ipa, len);
                    self.push_flush(
                        out,
                        vm.vmid,
                        ops,
                        "kvm_pgtable_stage2_unmap: kvm_tlb_flush_vmid_range",
                    );
                }
                sync(
                    out,
                    unlock,
                    "kvm_mmu_notifier_invalidate_range_start: KVM_MMU_UNLOCK",
                );
            }
            S2Kind::Wrprotect { ipa, len } => {
                sync(
                    out,
                    unlock,
                    "kvm_mmu_wp_memory_region: write_unlock(&kvm->mmu_lock)",
                );
                let ops = if v.has_range_flush() {
                    tlb::flush_vmid_range(code, hyp.cpu, ipa, len)
                } else {
                    tlb::flush_vmid(code)
                };
                self.push_flush(
                    out,
                    vm.vmid,
                    ops,
                    "kvm_mmu_wp_memory_region: kvm_flush_remote_tlbs_memslot",
                );
                let mut page = ipa;
                while page < ipa + len {
                    out.push(Step {
                        op: Op::Rely(Rely::ReadOnly {
                            ctx: vm.ctx,
                            va: Va(page),
                        }),
                        func: "dirty log: a write must fault to be logged",
                        after: After::Go,
                    });
                    page += PAGE_SIZE;
                }
            }
            S2Kind::Relax { ipa } => {
                let found = (regs[3] >> RELAX_SHIFT) & 7;
                if found != 0 {
                    let level = if found == RELAX_EAGAIN {
                        tlb::Level::Unknown
                    } else {
                        tlb::Level::At(found as u8 - 1)
                    };
                    let ops = tlb::flush_vmid_ipa_nsh(code, hyp.cpu, ipa, level);
                    self.push_flush(
                        out,
                        vm.vmid,
                        ops,
                        "kvm_pgtable_stage2_relax_perms: __kvm_tlb_flush_vmid_ipa_nsh",
                    );
                }
                sync(out, unlock, "user_mem_abort: read_unlock(&kvm->mmu_lock)");
            }
            S2Kind::Age { .. } => {
                if regs[3] & YOUNG != 0 {
                    self.push_flush(
                        out,
                        vm.vmid,
                        tlb::flush_vmid(code),
                        "kvm_mmu_notifier_clear_flush_young: kvm_flush_remote_tlbs",
                    );
                }
                sync(
                    out,
                    unlock,
                    "kvm_mmu_notifier_clear_flush_young: KVM_MMU_UNLOCK",
                );
            }
        }
    }

    /// A flush helper's steps (its ISB has no effect in the model).
    fn push_flush(&self, out: &mut Vec<Step>, vmid: u16, ops: Vec<S2Op>, func: &'static str) {
        for o in ops {
            if let Some(op) = hw_op(o, vmid) {
                out.push(Step {
                    op,
                    func,
                    after: After::Go,
                });
            }
        }
    }

    fn push_walk(
        &self,
        out: &mut Vec<Step>,
        vm: usize,
        vmid: u16,
        w: WalkStep,
        func: &'static str,
        alloc: u64,
    ) {
        let (op, after) = match w {
            WalkStep::Store { pa, value } => (Op::Store { pa: Pa(pa), value }, After::Go),
            WalkStep::StoreNewTable { pa } => (
                Op::Store {
                    pa: Pa(pa),
                    value: table(alloc << 12),
                },
                After::Go,
            ),
            WalkStep::Flush(o) => match hw_op(o, vmid) {
                Some(op) => (op, After::Go),
                None => return,
            },
            WalkStep::Free(f) => (Op::Free { frame: f }, After::Go),
            WalkStep::RcuFree(f) => (Op::Sync(SyncOp::CallRcuFree(f)), After::Go),
            WalkStep::AllocTable { level } => (
                Op::Alloc {
                    owner: FrameOwner::Table {
                        owner: TableOwner::Stage2 { vmid },
                        level,
                    },
                },
                After::Alloc,
            ),
            WalkStep::Cmo => (
                Op::Sync(SyncOp::AtomicAdd(self.hyp.cmo_count(vm), 1)),
                After::Go,
            ),
        };
        out.push(Step { op, func, after });
    }

    /// The current visit's steps, and whether the walk stops after it
    /// (`-EAGAIN` in a fault's walk).
    fn visit(&self, call: &S2Call, regs: &[u64; 4]) -> (Vec<WalkStepOf>, bool) {
        let c = Cursor::unpack(regs[0]);
        let old = regs[1];
        let pa = regs[2] & ((1 << ALLOC_SHIFT) - 1);
        let w = self.walker(call);
        let leaf_visit = !c.post && !pgtable::is_table(old, c.level);
        match call.kind {
            S2Kind::Unmap { .. } if c.post => {
                if regs[3] & ZAP != 0 {
                    (w.unmap_table(c, pa, old), false)
                } else {
                    (Vec::new(), false)
                }
            }
            S2Kind::Unmap { .. } if leaf_visit => (w.unmap_leaf(c, pa, old), false),
            S2Kind::Map {
                pa: phys, write, ..
            } if !c.post => w.map(c, pa, old, phys, write),
            S2Kind::Wrprotect { .. } if leaf_visit => (
                pgtable::attr(
                    pa,
                    old,
                    0,
                    bits::S2AP_WRITE,
                    "stage2_attr_walker: stage2_try_set_pte",
                )
                .unwrap_or_default(),
                false,
            ),
            S2Kind::Relax { .. } if leaf_visit => {
                match pgtable::attr(
                    pa,
                    old,
                    bits::S2AP_READ | bits::S2AP_WRITE,
                    0,
                    "stage2_attr_walker: stage2_try_set_pte",
                ) {
                    Some(s) => (s, false),
                    None => (Vec::new(), true),
                }
            }
            S2Kind::Age { .. } if leaf_visit => (
                pgtable::attr(
                    pa,
                    old,
                    0,
                    bits::AF,
                    "kvm_pgtable_stage2_mkold: stage2_try_set_pte",
                )
                .unwrap_or_default(),
                false,
            ),
            _ => (Vec::new(), false),
        }
    }

    /// The walker reaches `next`: it reads the entry (`ctx->old`) and
    /// what the visit decides on, skipping visits that do nothing, until
    /// one has steps or the walk is over.
    fn arrive(&self, call: &S2Call, m: &Machine, regs: &mut [u64; 4], mut next: Option<Cursor>) {
        let vm = &self.hyp.vms[call.vm];
        let (_, end) = call.kind.range();
        loop {
            let at = next
                .and_then(|c| Some((c, pgtable::entry_addr(&m.mem, vm.root, c.addr, c.level)?)));
            let Some((c, pa)) = at else {
                set_phase(regs, Phase::Epilogue);
                return;
            };
            let old = m.mem.read(Pa(pa));
            regs[0] = c.pack();
            set_phase(regs, Phase::Walk);
            regs[1] = old;
            regs[2] = pa;
            regs[3] &= !ZAP;
            let leaf = !c.post && pgtable::valid(old) && !pgtable::is_table(old, c.level);
            match call.kind {
                S2Kind::Unmap { .. }
                    if c.post
                        && pgtable::is_table(old, c.level)
                        && pgtable::table_unused(&m.mem, pgtable::follow(old)) =>
                {
                    regs[3] |= ZAP;
                }
                S2Kind::Relax { .. } if leaf => regs[3] |= u64::from(c.level + 1) << RELAX_SHIFT,
                // stage2_attr_walker's -EAGAIN on an invalid entry.
                S2Kind::Relax { .. }
                    if !c.post
                        && !pgtable::is_table(old, c.level)
                        && self.hyp.version.relax_flushes_on_eagain() =>
                {
                    regs[3] |= RELAX_EAGAIN << RELAX_SHIFT
                }
                S2Kind::Age { .. } if leaf && old & bits::AF != 0 => regs[3] |= YOUNG,
                _ => {}
            }
            let (steps, stop) = self.visit(call, regs);
            if !steps.is_empty() {
                return;
            }
            if stop {
                set_phase(regs, Phase::Epilogue);
                return;
            }
            next = if c.post {
                c.after_post(end)
            } else {
                c.next(old, end)
            };
        }
    }

    fn split(st: &ProgState) -> (usize, usize) {
        (
            (st.pc >> MICRO_BITS) as usize,
            (st.pc & ((1 << MICRO_BITS) - 1)) as usize,
        )
    }
}

/// A flush helper's instruction as the checker's op, its scope computed
/// for the VM's VMID (`__tlb_switch_to_guest`); `None` for an ISB.
fn hw_op(o: S2Op, vmid: u16) -> Option<Op> {
    match o {
        S2Op::Tlbi { tlbi, raw, operand } => Some(Op::Tlbi {
            text: o.text(),
            ins: tlbi,
            raw,
            scope: tlbi.scope(&operand, vmid),
            broadcast: tlbi.broadcast,
        }),
        S2Op::Dsb(kind) => Some(Op::Dsb { kind }),
        S2Op::Isb => None,
    }
}

impl Program for KvmThread {
    fn next<'a>(&'a self, st: &ProgState, _: &Machine) -> Option<Emit<'a>> {
        let (item, micro) = Self::split(st);
        match self.items.get(item)? {
            Item::Op(op) => Some(Emit {
                op: Cow::Borrowed(op),
                origin: None,
            }),
            Item::S2(call) => {
                let step = self.steps(call, &st.regs).into_iter().nth(micro)?;
                Some(Emit {
                    op: Cow::Owned(step.op),
                    origin: Some(Cow::Owned(format!(
                        "{} {}: {}",
                        self.hyp.vms[call.vm].name, call.kind, step.func
                    ))),
                })
            }
        }
    }

    fn advance(&self, st: &mut ProgState, m: &Machine, result: OpResult) {
        let (item, micro) = Self::split(st);
        let next_item = |st: &mut ProgState| {
            st.pc = ((item as u32) + 1) << MICRO_BITS;
            st.regs = [0; 4];
        };
        let call = match &self.items[item] {
            Item::Op(_) => return next_item(st),
            Item::S2(call) => *call,
        };
        let steps = self.steps(&call, &st.regs);
        let ph = phase(&st.regs);
        match steps[micro].after {
            After::Go => {}
            After::Alloc => st.regs[2] |= result.value << ALLOC_SHIFT,
            After::StartWalk => {
                let (start, _) = call.kind.range();
                self.arrive(&call, m, &mut st.regs, Some(Cursor::start(start)));
                st.pc = (item as u32) << MICRO_BITS;
                return;
            }
        }
        if micro + 1 < steps.len() {
            st.pc += 1;
            return;
        }
        match ph {
            Phase::Walk => {
                // The visit is done: reload the entry and move on.
                let c = Cursor::unpack(st.regs[0]);
                let (_, end) = call.kind.range();
                let pte = m.mem.read(Pa(st.regs[2] & ((1 << ALLOC_SHIFT) - 1)));
                st.regs[2] &= (1 << ALLOC_SHIFT) - 1;
                let next = if c.post {
                    c.after_post(end)
                } else {
                    c.next(pte, end)
                };
                self.arrive(&call, m, &mut st.regs, next);
                st.pc = (item as u32) << MICRO_BITS;
            }
            _ => next_item(st),
        }
    }

    fn may_allocate(&self, st: &ProgState) -> bool {
        let (item, _) = Self::split(st);
        self.items[item.min(self.items.len())..].iter().any(|i| {
            matches!(
                i,
                Item::Op(Op::Alloc { .. })
                    | Item::S2(S2Call {
                        kind: S2Kind::Map { .. },
                        ..
                    })
            )
        })
    }
}
