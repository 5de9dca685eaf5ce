//! Lowering of the stage-2 manager's statements: `kvm VERSION`, `vm`,
//! `s2-map`, `vcpu` threads and `s2` steps (docs/scenario-format.md,
//! "KVM: the stage-2 manager runs the operations").

use super::{at, index_of, proc_index, Lower, R};
use crate::error::{Located, Span};
use crate::scenario::ast::*;
use std::sync::Arc;
use tlbcheck_checker::builder::ModelBuilder;
use tlbcheck_checker::op::Op;
use tlbcheck_hw::addr::Granule;
use tlbcheck_hw::mem::{FrameOwner, PhysMem, TableOwner};
use tlbcheck_hw::tlb::Regime;
use tlbcheck_hw::vmsa::{Context, StageConfig};
use tlbcheck_protocols::kvm::mmu::{Hyp, Item, KvmThread, S2Call, S2Kind, Vm};
use tlbcheck_protocols::kvm::pgtable::{self, IPA_BITS};
use tlbcheck_protocols::linux::arm64::CpuFeatures;
use tlbcheck_protocols::linux::mm::{Process, VmSlot};

/// Frames must lie below this address: `KvmThread` keeps an allocated
/// table's frame number in 24 bits of a register.
pub const FRAME_LIMIT: u64 = 1 << 36;
/// Most pages an `s2 wrprotect` covers (one read-only expectation each).
pub const MAX_WP_PAGES: u64 = 8;
/// An `s2 unmap` lies in one 1 GiB region: `stage2_apply_range` hands
/// `kvm_pgtable_stage2_unmap` one level-1 span at a time.
pub const UNMAP_SPAN: u64 = 1 << 30;

fn vm_index(names: &[String], vm: &Spanned<String>) -> R<usize> {
    index_of(names, vm, "VM", "vm NAME vmid=N")
}

impl Lower<'_> {
    /// The VMs: a level-0 stage-2 table each (a declared frame, or one
    /// allocated from the pool after every declared frame and process),
    /// the set-up mappings, and a stage-2 context each, appended to
    /// `contexts`.
    pub(super) fn vms(
        &self,
        mem: &mut PhysMem,
        contexts: &mut Vec<Context>,
        names: &mut Vec<String>,
    ) -> R<Vec<Vm>> {
        let sc = self.sc;
        let mut out: Vec<Vm> = Vec::new();
        if let Some(m) = sc.s2_maps.first() {
            if sc.vms.is_empty() {
                return Err(Located::new(m.span, "an `s2-map` needs a `vm` statement"));
            }
        }
        let Some(first) = sc.vms.first() else {
            return Ok(out);
        };
        if sc.kvm.is_none() {
            return Err(
                Located::new(first.span, "a `vm` needs a `kvm VERSION` statement")
                    .with_help("e.g. `kvm kvm-6.9`"),
            );
        }
        if self.granule != Granule::K4 {
            return Err(Located::new(
                first.span,
                "VMs use the 4K granule (the stage-2 manager is a 4K-page KVM)",
            )
            .with_help("use `machine granule=4k`"));
        }
        let pool_end = sc.pool.base + u64::from(sc.pool.frames) * 4096;
        if pool_end > FRAME_LIMIT {
            return Err(Located::new(
                if sc.pool.span.len > 0 { sc.pool.span } else { first.span },
                format!("VMs need the pool below {FRAME_LIMIT:#x} (the walker keeps frame numbers in 24 bits)"),
            ));
        }
        for d in &sc.vms {
            let name = &d.name.value;
            if names.contains(name) || out.iter().any(|v| &v.name == name) {
                return Err(Located::new(
                    d.name.span,
                    format!("`{name}` is declared twice (VMs and contexts share names)"),
                ));
            }
            let vmid = d.vmid.value;
            if out.iter().any(|v| v.vmid == vmid) {
                return Err(Located::new(
                    d.vmid.span,
                    format!("VMID {vmid} is used twice"),
                ));
            }
            let root = match &d.root {
                Some(r) => {
                    let f = self.frame(&r.value, r.span)?;
                    if f.table() != Some((TableOwner::Stage2 { vmid }, 0)) {
                        return Err(Located::new(
                            r.span,
                            format!("a VM's root is a level-0 stage-2 table of its VMID, but `{}` is {}", r.value, f.owner),
                        )
                        .with_help(format!("declare it with `frame {} s2-table vm={vmid} level=0`", r.value)));
                    }
                    f.base
                }
                None => {
                    mem.alloc(FrameOwner::Table {
                        owner: TableOwner::Stage2 { vmid },
                        level: 0,
                    })
                    .map_err(|e| {
                        Located::new(d.span, format!("cannot set up: {e}"))
                            .with_help("enlarge the pool with `pool base=PA frames=N`")
                    })?
                    .base()
                    .0
                }
            };
            out.push(Vm {
                name: name.clone(),
                vmid,
                root,
                ctx: contexts.len(),
            });
            contexts.push(Context {
                regime: Regime::El10,
                asid: 0,
                vmid,
                s1: None,
                s2: Some(StageConfig::new(Granule::K4, root)),
            });
            names.push(name.clone());
        }
        let vm_names: Vec<String> = out.iter().map(|v| v.name.clone()).collect();
        for m in &sc.s2_maps {
            let vm = &out[vm_index(&vm_names, &m.vm)?];
            let (ipa, len, pa) = (m.ipa.value, m.len.value, m.pa.value);
            page_aligned(&m.ipa, "the IPA")?;
            page_aligned(&m.pa, "the output address")?;
            if len == 0 || len % 4096 != 0 || ipa.checked_add(len).is_none_or(|e| e > 1 << IPA_BITS)
            {
                return Err(Located::new(
                    m.len.span,
                    "the length is a non-zero multiple of 4 KiB inside the 48-bit IPA space",
                ));
            }
            pgtable::setup_map(mem, vm.root, vm.vmid, ipa, len, pa, m.write).map_err(|e| {
                Located::new(m.span, format!("cannot set up: {e}"))
                    .with_help("enlarge the pool with `pool base=PA frames=N`")
            })?;
        }
        Ok(out)
    }

    /// The stage-2 manager the `s2` steps run, its locks and counters
    /// after the kernel's.
    pub(super) fn hyp(
        &self,
        vms: Vec<Vm>,
        lock_base: usize,
        counter_base: usize,
    ) -> Option<Arc<Hyp>> {
        let sc = self.sc;
        let version = sc.kvm.as_ref()?.value;
        Some(Arc::new(Hyp {
            version,
            cpu: CpuFeatures {
                tlbirange: sc.machine.tlbirange,
                ttl: sc.machine.ttl,
            },
            fwb: sc.machine.fwb,
            vms,
            lock_base,
            counter_base,
        }))
    }

    /// The memslots `vm ... backs=PROCESS` declares: KVM subscribed to
    /// the process's mmu notifier.
    pub(super) fn slots(&self, procs: &[Process], hyp: Option<&Arc<Hyp>>) -> R<Vec<VmSlot>> {
        let mut out = Vec::new();
        let names: Vec<String> = procs.iter().map(|p| p.name.clone()).collect();
        for (vm, d) in self.sc.vms.iter().enumerate() {
            let (Some(s), Some(hyp)) = (&d.slot, hyp) else {
                continue;
            };
            if self.sc.kernel.is_none() {
                return Err(Located::new(
                    s.process.span,
                    "a memslot backed by a process needs a `kernel VERSION` statement",
                ));
            }
            let of = proc_index(&names, &s.process)?;
            if procs[of].mirror.is_some() {
                return Err(Located::new(
                    s.process.span,
                    "a memslot is backed by a process, not a mirror",
                ));
            }
            page_aligned(&s.ipa, "the IPA")?;
            page_aligned(&s.hva, "the HVA")?;
            let (ipa, hva, len) = (s.ipa.value, s.hva.value, s.len.value);
            let ipa_end = ipa.checked_add(len).filter(|&e| e <= 1 << IPA_BITS);
            if len == 0
                || len % 4096 != 0
                || hva.checked_add(len).is_none()
                || ipa_end.is_none_or(|e| ipa / UNMAP_SPAN != (e - 1) / UNMAP_SPAN)
            {
                return Err(Located::new(
                    s.len.span,
                    "the length is a non-zero multiple of 4 KiB, its IPAs inside one 1 GiB region",
                )
                .with_help("the notifier's unmap runs as one `kvm_pgtable_stage2_unmap`"));
            }
            out.push(VmSlot {
                of,
                hyp: hyp.clone(),
                vm,
                ipa,
                hva,
                len,
            });
        }
        Ok(out)
    }

    /// A `vcpu` thread's VMID: its VM's.
    pub(super) fn vcpu_vmid(&self, t: &ThreadDecl, hyp: Option<&Arc<Hyp>>) -> R<u16> {
        let Some(vm) = &t.vm else { return Ok(t.vmid) };
        let hyp = hyp.ok_or_else(|| {
            Located::new(
                vm.span,
                "a vcpu runs a VM: declare it with `vm NAME vmid=N` (and `kvm VERSION`)",
            )
        })?;
        let names: Vec<String> = hyp.vms.iter().map(|v| v.name.clone()).collect();
        Ok(hyp.vms[vm_index(&names, vm)?].vmid)
    }

    /// One `s2` step, checked against the model's restrictions.
    pub(super) fn s2_call(&self, s: &S2Step, span: Span, hyp: Option<&Arc<Hyp>>) -> R<S2Call> {
        let hyp = hyp.ok_or_else(|| {
            Located::new(span, "a stage-2 operation needs `kvm VERSION` and a `vm`")
                .with_help("e.g. `kvm kvm-6.9` and `vm g vmid=1`")
        })?;
        let names: Vec<String> = hyp.vms.iter().map(|v| v.name.clone()).collect();
        let vm = vm_index(&names, &s.vm)?;
        page_aligned(&s.ipa, "the IPA")?;
        let ipa = s.ipa.value;
        let len = s.len.as_ref().map_or(4096, |l| l.value);
        let len_span = s.len.as_ref().map_or(s.ipa.span, |l| l.span);
        if len == 0 || len % 4096 != 0 || ipa.checked_add(len).is_none_or(|e| e > 1 << IPA_BITS) {
            return Err(Located::new(
                len_span,
                "the length is a non-zero multiple of 4 KiB inside the 48-bit IPA space",
            ));
        }
        let kind = match s.kind {
            S2StepKind::Map => {
                let pa =
                    s.pa.as_ref()
                        .expect("the parser requires the output address");
                page_aligned(pa, "the output address")?;
                if !(len == 4096 || len == pgtable::granule(2))
                    || ipa % len != 0
                    || pa.value % len != 0
                {
                    return Err(Located::new(
                        len_span,
                        "a stage-2 fault maps one page or one 2 MiB block, IPA and output aligned to it",
                    ));
                }
                S2Kind::Map {
                    ipa,
                    len,
                    pa: pa.value,
                    write: s.write,
                }
            }
            S2StepKind::Unmap => {
                if ipa / UNMAP_SPAN != (ipa + len - 1) / UNMAP_SPAN {
                    return Err(Located::new(
                        len_span,
                        "an unmap lies inside one 1 GiB region (stage2_apply_range's chunk)",
                    ));
                }
                S2Kind::Unmap { ipa, len }
            }
            S2StepKind::Wrprotect => {
                if len / 4096 > MAX_WP_PAGES {
                    return Err(Located::new(
                        len_span,
                        format!("a write-protect covers at most {MAX_WP_PAGES} pages"),
                    ));
                }
                S2Kind::Wrprotect { ipa, len }
            }
            S2StepKind::Relax => S2Kind::Relax { ipa },
            S2StepKind::Age => S2Kind::Age { ipa },
        };
        Ok(S2Call { vm, kind })
    }

    /// Adds a thread whose steps include stage-2 operations: `ops` are its
    /// validated explicit operations, `calls` the operations with the
    /// number of explicit operations before each.
    pub(super) fn kvm_thread(
        &self,
        b: &mut ModelBuilder,
        t: &ThreadDecl,
        hyp: Option<&Arc<Hyp>>,
        ops: Vec<Op>,
        calls: Vec<(usize, S2Call)>,
    ) -> R<()> {
        let hyp = Arc::clone(hyp.expect("s2_call checked the hypervisor"));
        let mut items = Vec::new();
        let mut c = calls.into_iter().peekable();
        for (i, op) in ops.into_iter().enumerate() {
            while let Some((_, call)) = c.next_if(|(at, _)| *at == i) {
                items.push(Item::S2(call));
            }
            items.push(Item::Op(op));
        }
        items.extend(c.map(|(_, call)| Item::S2(call)));
        b.program(
            t.name.value.clone(),
            t.cpu.value,
            Arc::new(KvmThread::new(hyp, items)),
            t.owns.clone(),
        )
        .map_err(at(t.cpu.span))
    }

    /// The fault paths' walks are shared and their `cmpxchg` is modelled
    /// as a store: at most one thread per VM takes them.
    pub(super) fn one_fault_thread_per_vm(&self, hyp: Option<&Arc<Hyp>>) -> R<()> {
        let Some(hyp) = hyp else { return Ok(()) };
        let names: Vec<String> = hyp.vms.iter().map(|v| v.name.clone()).collect();
        let mut seen: Vec<(usize, &str)> = Vec::new();
        for t in &self.sc.threads {
            for s in &t.steps {
                let Step::S2(st) = &s.value else { continue };
                if !matches!(st.kind, S2StepKind::Map | S2StepKind::Relax) {
                    continue;
                }
                let vm = vm_index(&names, &st.vm)?;
                match seen.iter().find(|(v, _)| *v == vm) {
                    Some((_, other)) if *other != t.name.value => {
                        return Err(Located::new(
                            s.span,
                            format!(
                                "thread `{other}` already takes stage-2 faults of `{}`: the model runs one shared walker per VM",
                                st.vm.value
                            ),
                        ))
                    }
                    Some(_) => {}
                    None => seen.push((vm, &t.name.value)),
                }
            }
        }
        Ok(())
    }
}

fn page_aligned(v: &Spanned<u64>, what: &str) -> R<()> {
    if v.value % 4096 != 0 {
        return Err(Located::new(
            v.span,
            format!("{what} {:#x} is not page aligned", v.value),
        ));
    }
    Ok(())
}
