//! Lowering: a parsed scenario becomes a checker [`Model`]. What is
//! checked here is syntax and names (and that the pool is large enough
//! for the allocations the threads state): the machine is set up by the
//! checker's [`MachineBuilder`] and every step handed to its
//! [`ModelBuilder`], which validate them; their refusals come back here to
//! be located in the source.

use super::ast::*;
use crate::codec::{tlbi_error_field, tlbi_raw_from_fields};
use crate::error::{Located, Span};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use tlbcheck_checker::builder::{BuildError, Features, ModelBuilder, ThreadBuilder, MAX_THREADS};
use tlbcheck_checker::model::{Bounds, Model};
use tlbcheck_checker::op::Rely;
use tlbcheck_checker::setup::{Desc, Frame, MachineBuilder, SetupError, Slot, SmmuSpec, Structure};
use tlbcheck_checker::sync::SyncOp;
use tlbcheck_hw::addr::{Granule, Pa, Va};
use tlbcheck_hw::cpu::tlbi::TlbiOperand;
use tlbcheck_hw::mem::{FrameOwner, Pfn, PhysMem, TableOwner, FRAME_SIZE};
use tlbcheck_hw::smmu::cd::Cd;
use tlbcheck_hw::smmu::cmd::Command;
use tlbcheck_hw::smmu::config::STRUCT_BYTES;
use tlbcheck_hw::smmu::model::Device;
use tlbcheck_hw::smmu::ste::{Ste, StreamConfig};
use tlbcheck_hw::tlb::Regime;
use tlbcheck_hw::vmsa::desc::bits::ADDR_MASK;
use tlbcheck_hw::vmsa::walk::start_level;
use tlbcheck_hw::vmsa::{Context, StageConfig, TableStage};
use tlbcheck_protocols::linux::arm64::CpuFeatures;
use tlbcheck_protocols::linux::mm::{self, Item, KOp, Kernel, KernelThread, Process, Vma};
use tlbcheck_protocols::linux::sva::{self, SvaBond};

mod dma;
mod kvm;
mod nested;

type R<T> = Result<T, Located>;

/// A resolved store location: the word (with the table it lies in when
/// it names a table frame) and its span.
type Resolved = (Slot, Span);

/// A placed frame.
#[derive(Clone, Debug)]
struct Placed {
    base: u64,
    frames: u32,
    owner: FrameOwner,
}

impl Placed {
    /// The table it is, if it is one: whose, and the level it serves.
    fn table(&self) -> Option<(TableOwner, u8)> {
        match self.owner {
            FrameOwner::Table { owner, level } => Some((owner, level)),
            _ => None,
        }
    }

    /// The set-up's view of it, named `name`.
    fn frame(&self, name: &str) -> Frame {
        Frame {
            name: name.to_string(),
            base: Pa(self.base),
            frames: self.frames,
            owner: self.owner,
        }
    }
}

fn owner_of(o: &OwnerSpec) -> FrameOwner {
    match *o {
        OwnerSpec::S1Table { process, level } => FrameOwner::Table {
            owner: TableOwner::Stage1 { space: process },
            level,
        },
        OwnerSpec::S2Table { vm, level } => FrameOwner::Table {
            owner: TableOwner::Stage2 { vmid: vm },
            level,
        },
        OwnerSpec::Data { process } => FrameOwner::Data { space: process },
        OwnerSpec::Smmu => FrameOwner::Smmu,
    }
}

struct Lower<'a> {
    sc: &'a Scenario,
    granule: Granule,
    frames: HashMap<String, Placed>,
    /// What the scenario writes that the architecture accepts but that is
    /// almost certainly a mistake (a malformed TLBI operand, an illegal
    /// SMMU command), each with the effect the model gives it.
    warnings: RefCell<Vec<Located>>,
}

/// Builds the model and the bounds the scenario asks for.
pub fn lower(sc: &Scenario) -> R<(Model, Bounds)> {
    lower_with_warnings(sc).map(|(m, b, _)| (m, b))
}

/// [`lower`], with the warnings about what the scenario's threads write:
/// malformed TLBI operands and illegal SMMU commands, accepted with the
/// meaning the architecture gives them.
pub fn lower_with_warnings(sc: &Scenario) -> R<(Model, Bounds, Vec<Located>)> {
    let mut l = Lower {
        sc,
        granule: sc.machine.granule,
        frames: HashMap::new(),
        warnings: RefCell::new(Vec::new()),
    };
    let mut mb = MachineBuilder::new(l.granule, Pa(sc.pool.base), sc.pool.frames, sc.machine.cpus);
    l.place_frames(&mut mb)?;
    l.no_smmu_setup_without_smmu()?;
    // SMMU structures the scenario does not place are claimed after every
    // declared frame, so they never move a frame the scenario placed.
    if let Some(decl) = &sc.smmu {
        l.smmu_registers(decl, &mut mb)?;
    }
    let mut procs = l.processes(mb.mem_mut())?;
    let zero_page = l.zero_page(mb.mem_mut())?;
    for w in &sc.writes {
        let (pa, value) = l.write(&w.at, &w.value)?;
        mb.write(Pa(pa), value).map_err(setup_at(w.span))?;
    }
    l.dma_maps(mb.mem_mut())?;
    for m in &sc.maps {
        l.map(m, &mut mb)?;
    }
    l.contexts(&mut mb)?;
    for (p, d) in procs.iter_mut().zip(&sc.processes) {
        // A process is a stage-1 context every CPU may walk; a mirror's
        // shadow table is walked by its device alone.
        let ctx = Context {
            regime: Regime::El10,
            asid: p.asid,
            vmid: 0,
            s1: Some(StageConfig::new(Granule::K4, p.root)),
            s2: None,
        };
        let added = if p.mirror.is_some() {
            mb.device_context(&p.name, ctx)
        } else {
            mb.context(&p.name, ctx)
        };
        p.ctx = added.map_err(|e| match e {
            SetupError::ContextTwice(_) => Located::new(
                d.name.span,
                format!("`{}` names both a context and a process", p.name),
            ),
            e => Located::new(d.span, e.to_string()),
        })?;
    }
    // VMs are stage-2 contexts the CPUs walk, named after the processes.
    let vms = {
        let (mut contexts, mut names): (Vec<Context>, Vec<String>) =
            mb.contexts().map(|(n, c)| (*c, n.to_string())).unzip();
        let known = contexts.len();
        let vms = l.vms(mb.mem_mut(), &mut contexts, &mut names)?;
        for (ctx, name) in contexts.into_iter().zip(names).skip(known) {
            let span = sc
                .vms
                .iter()
                .find(|d| d.name.value == name)
                .map_or(sc.name.span, |d| d.span);
            mb.context(&name, ctx).map_err(setup_at(span))?;
        }
        vms
    };
    if sc.smmu.is_some() {
        l.smmu_structures(&mut mb)?;
    }
    let context_names: Vec<String> = mb.contexts().map(|(n, _)| n.to_string()).collect();
    let device_names: Vec<String> = sc.devices.iter().map(|d| d.name.value.clone()).collect();
    let defaults = Bounds::default();
    let bounds = Bounds {
        max_depth: sc.bounds.depth.unwrap_or(defaults.max_depth),
        max_states: sc.bounds.states.unwrap_or(defaults.max_states),
        ..defaults
    };
    let features = Features {
        tlbirange: sc.machine.tlbirange,
        ttl: sc.machine.ttl,
        smmu_ril: sc.smmu.as_ref().is_some_and(|d| d.ril),
    };
    let mut b = mb
        .build(sc.name.value.clone(), features)
        .map_err(|e| match e {
            SetupError::DeviceWithoutSte { device, sid } => {
                // Its transactions could only see C_BAD_STE: almost
                // certainly a typo.
                let d = &sc.devices[device];
                Located::new(
                    d.sid.span,
                    format!(
                        "device `{}` uses StreamID {sid} but no `ste {sid}` describes it",
                        d.name.value
                    ),
                )
                .with_help(format!("add e.g. `ste {sid} bypass`"))
            }
            e => Located::new(sc.name.span, e.to_string()),
        })?;
    let kernel = l.kernel(&mut procs, &device_names, &b.machine().mem, zero_page)?;
    if let Some(k) = &kernel {
        b.seqcounts(k.seqcounts());
    }
    let (locks, counters) = kernel
        .as_ref()
        .map_or((0, 0), |k| (k.locks(), k.counters()));
    let hyp = l.hyp(vms, locks, counters);
    let slots = l.slots(&procs, hyp.as_ref())?;
    let kernel = kernel.map(|k| Arc::new(Kernel { slots, ..k }));
    let (kvm_locks, kvm_counters) = hyp.as_ref().map_or((0, 0), |h| (h.locks(), h.counters()));
    b.locks(locks + kvm_locks);
    b.counters(counters + kvm_counters);
    let domains = l.dma_domains(counters + kvm_counters)?;
    if !domains.is_empty() {
        b.counters(counters + kvm_counters + 2 * domains.len());
    }
    l.threads(
        &mut b,
        &context_names,
        &device_names,
        kernel.as_ref(),
        hyp.as_ref(),
        &domains,
    )?;
    let model = b
        .build()
        .map_err(|e| Located::new(sc.name.span, e.to_string()))?;
    Ok((model, bounds, l.warnings.into_inner()))
}

/// A builder refusal, located at the statement that caused it.
fn at(span: Span) -> impl Fn(BuildError) -> Located {
    move |e| Located::new(span, e.to_string())
}

/// A set-up refusal, located at the statement that caused it.
fn setup_at(span: Span) -> impl Fn(SetupError) -> Located {
    move |e| Located::new(span, e.to_string())
}

/// A set-up refusal at `span`, with `help` when there is one.
fn located(span: Span, e: &SetupError, help: Option<String>) -> Located {
    let l = Located::new(span, e.to_string());
    match help {
        Some(h) => l.with_help(h),
        None => l,
    }
}

/// What to add to the pool statement when the pool is too small.
const ENLARGE: &str = "enlarge the pool with `pool base=PA frames=N`";

impl Lower<'_> {
    fn place_frames(&mut self, mb: &mut MachineBuilder) -> R<()> {
        for f in &self.sc.frames {
            let at_span = f.at.as_ref().map_or(f.span, |a| a.span);
            let placed = mb
                .frame(
                    &f.name.value,
                    owner_of(&f.owner),
                    f.frames.as_ref().map(|c| c.value),
                    f.at.as_ref().map(|a| Pa(a.value)),
                )
                .map_err(|e| match e {
                    SetupError::FrameTwice(_) => located(f.name.span, &e, None),
                    SetupError::OutsidePool { .. } => {
                        located(at_span, &e, Some(format!("move it, or {ENLARGE}")))
                    }
                    SetupError::TableFrameUnaligned(_)
                    | SetupError::Overlap { .. }
                    | SetupError::InUse { .. } => located(at_span, &e, None),
                    SetupError::NoRoom(_) => located(f.span, &e, Some(ENLARGE.to_string())),
                    _ => located(f.span, &e, None),
                })?;
            self.frames.insert(
                f.name.value.clone(),
                Placed {
                    base: placed.base.0,
                    frames: placed.frames,
                    owner: placed.owner,
                },
            );
        }
        Ok(())
    }

    fn frame(&self, name: &str, span: Span) -> R<&Placed> {
        self.frames.get(name).ok_or_else(|| {
            let mut known: Vec<&str> = self.frames.keys().map(String::as_str).collect();
            known.sort_unstable();
            Located::new(span, format!("unknown frame `{name}`")).with_help(if known.is_empty() {
                "declare it with `frame NAME ...` first".to_string()
            } else {
                format!("declared frames: {}", known.join(", "))
            })
        })
    }

    fn addr(&self, r: &Spanned<AddrRef>) -> R<u64> {
        match &r.value {
            AddrRef::Lit(n) => Ok(*n),
            AddrRef::Frame { name, offset } => {
                let f = self.frame(name, r.span)?;
                f.base
                    .checked_add(*offset)
                    .ok_or_else(|| Located::new(r.span, "address overflows"))
            }
        }
    }

    /// Resolves a location to a word, with the table it lies in (if it
    /// names a table frame) for descriptor checks.
    fn location(&self, at: &Location) -> R<Resolved> {
        match at {
            Location::Pa(pa) => Ok((Slot::at(Pa(pa.value)).map_err(setup_at(pa.span))?, pa.span)),
            Location::Index { frame, index } => {
                let f = self.frame(&frame.value, frame.span)?;
                let slot = f
                    .frame(&frame.value)
                    .slot(self.granule, index.value)
                    .map_err(setup_at(index.span))?;
                Ok((slot, frame.span.to(index.span)))
            }
        }
    }

    /// `map`: walks the context's tables from its root for `va`, taking a
    /// table of the next level from the pool wherever a slot above the
    /// leaf's level is invalid, and writes the leaf (a page at level 3, or
    /// a block) with the Access flag set. Descriptors are checked as
    /// written ones are.
    fn map(&mut self, m: &MapDecl, mb: &mut MachineBuilder) -> R<()> {
        let g = self.granule;
        let c = self
            .sc
            .contexts
            .iter()
            .find(|c| c.name.value == m.ctx.value)
            .ok_or_else(|| {
                Located::new(m.ctx.span, format!("unknown context `{}`", m.ctx.value))
            })?;
        let (root, stage) = match &c.kind {
            ContextKind::Stage1 { root, .. } => (root, TableStage::S1),
            ContextKind::Stage2 { root, .. } => (root, TableStage::S2),
            ContextKind::Nested { .. } => return Err(Located::new(
                m.ctx.span,
                "`map` builds stage-1 or stage-2 tables; a nested context's stage-1 \
                     tables lie at IPAs",
            )
            .with_help(
                "map through a `stage2` context of the same VM, and write the stage-1 descriptors",
            )),
        };
        if stage == TableStage::S2 && (m.user || m.ng) {
            return Err(Located::new(
                m.span,
                "`user` and `ng` are stage-1 attributes; a stage-2 context takes rw or ro",
            ));
        }
        let start = start_level(stage, g);
        let leaf = m.level.as_ref().map_or(3, |l| l.value);
        let level_span = m.level.as_ref().map_or(m.span, |l| l.span);
        if leaf < start || (leaf < 3 && !g.block_allowed(leaf)) {
            return Err(Located::new(
                level_span,
                format!("the {g} granule has no {stage:?} leaf at level {leaf}"),
            ));
        }
        let va = m.va.value;
        if va >> g.level_shift(start) >= g.table_entries(start, start) {
            return Err(Located::new(
                m.va.span,
                format!("{va:#x} is beyond the context's 48-bit input range"),
            ));
        }
        let out = self.addr(&m.target)?;
        let mut table = self.addr(root)?;
        for level in start..=leaf {
            let (name, placed) = self
                .frames
                .iter()
                .find(|(_, f)| table >= f.base && table < f.base + u64::from(f.frames) * FRAME_SIZE)
                .map(|(n, f)| {
                    let copy = Placed {
                        base: f.base,
                        frames: f.frames,
                        owner: f.owner,
                    };
                    (n.clone(), copy)
                })
                .ok_or_else(|| {
                    Located::new(
                        m.span,
                        format!("the level-{level} table at {table:#x} is not a declared frame"),
                    )
                })?;
            let entries = g.table_entries(start, level);
            let index = (va >> g.level_shift(level)) % entries;
            let slot = placed
                .frame(&name)
                .slot(g, index)
                .map_err(setup_at(m.span))?;
            let current = mb.mem().read(slot.pa);
            let desc = if level == leaf {
                if current & 1 != 0 {
                    return Err(Located::new(
                        m.va.span,
                        format!("{va:#x} is mapped already at level {level} ({current:#x})"),
                    ));
                }
                match stage {
                    TableStage::S1 => Desc::S1 {
                        block: leaf < 3,
                        out: Pa(out),
                        writable: m.writable,
                        user: m.user,
                        global: !m.ng,
                        extra: 0,
                        af: true,
                    },
                    TableStage::S2 => Desc::S2 {
                        block: leaf < 3,
                        out: Pa(out),
                        read: true,
                        write: m.writable,
                        extra: 0,
                        af: true,
                    },
                }
            } else if current & 0b11 == 0b11 {
                table = current & ADDR_MASK;
                continue;
            } else if current & 1 != 0 {
                return Err(Located::new(
                    m.va.span,
                    format!("{va:#x} lies in a block mapped at level {level}"),
                ));
            } else {
                let owner = match placed.table() {
                    Some((owner, _)) => owner,
                    None => unreachable!("slots are taken in table frames only"),
                };
                // Named CTX.Ln (then CTX.Ln.2, ...) so that steps can
                // store into it like a declared frame.
                let base = format!("{}.L{}", m.ctx.value, level + 1);
                let name = (1..)
                    .map(|k| {
                        if k == 1 {
                            base.clone()
                        } else {
                            format!("{base}.{k}")
                        }
                    })
                    .find(|n| !self.frames.contains_key(n))
                    .unwrap_or(base);
                let next = mb
                    .frame(
                        &name,
                        FrameOwner::Table {
                            owner,
                            level: level + 1,
                        },
                        None,
                        None,
                    )
                    .map_err(|e| located(m.span, &e, Some(ENLARGE.to_string())))?
                    .clone();
                self.frames.insert(
                    name,
                    Placed {
                        base: next.base.0,
                        frames: next.frames,
                        owner: next.owner,
                    },
                );
                table = next.base.0;
                Desc::Table(next.base)
            };
            let value = slot.descriptor(g, &desc).map_err(|e| {
                let span = match e {
                    SetupError::Misaligned { .. } => m.target.span,
                    _ => m.span,
                };
                located(span, &e, None)
            })?;
            mb.write(slot.pa, value).map_err(setup_at(m.span))?;
        }
        Ok(())
    }

    /// A table descriptor in a table of some stage and level must point at
    /// a table of the same stage serving the next level (Arm ARM D8.2.1:
    /// the walk reads the next level's table at that address). Checked
    /// where the target is a declared frame; in a scenario with nested
    /// contexts a stage-1 table address may be an IPA, so stage-1 slots are
    /// not checked there.
    fn next_level_table(&self, slot: Slot, next: Pa, span: Span) -> R<()> {
        let Some((owner, level)) = slot.table else {
            return Ok(());
        };
        let stage1 = matches!(owner, TableOwner::Stage1 { .. });
        let nested = self
            .sc
            .contexts
            .iter()
            .any(|c| matches!(c.kind, ContextKind::Nested { .. }));
        if stage1 && nested {
            return Ok(());
        }
        let Some((name, target)) = self
            .frames
            .iter()
            .find(|(_, f)| next.0 >= f.base && next.0 < f.base + u64::from(f.frames) * FRAME_SIZE)
        else {
            return Ok(());
        };
        let stage = if stage1 { "stage-1" } else { "stage-2" };
        let fits = match target.table() {
            Some((o, l)) => matches!(o, TableOwner::Stage1 { .. }) == stage1 && l == level + 1,
            None => false,
        };
        if fits {
            return Ok(());
        }
        Err(Located::new(
            span,
            format!(
                "a table descriptor in a {stage} level-{level} table must point at a {stage} \
                 level-{} table, but frame `{name}` is {}",
                level + 1,
                target.owner
            ),
        )
        .with_help("point it at a table frame of the next level, or declare the frame as one"))
    }

    fn write(&self, at: &Location, value: &Spanned<DescExpr>) -> R<(u64, u64)> {
        let (slot, _) = self.location(at)?;
        let target = |r: &Spanned<AddrRef>| -> R<(Pa, Span)> { Ok((Pa(self.addr(r)?), r.span)) };
        let (desc, target_span) = match &value.value {
            DescExpr::Raw(n) => return Ok((slot.pa.0, *n)),
            DescExpr::Table(t) => {
                let (next, span) = target(t)?;
                self.next_level_table(slot, next, span)?;
                (Desc::Table(next), span)
            }
            DescExpr::S1 {
                block,
                target: t,
                writable,
                user,
                ng,
                extra,
                noaf,
            } => {
                let (out, span) = target(t)?;
                let d = Desc::S1 {
                    block: *block,
                    out,
                    writable: *writable,
                    user: *user,
                    global: !*ng,
                    extra: *extra,
                    af: !*noaf,
                };
                (d, span)
            }
            DescExpr::S2 {
                block,
                target: t,
                read,
                write,
                extra,
                noaf,
            } => {
                let (out, span) = target(t)?;
                let d = Desc::S2 {
                    block: *block,
                    out,
                    read: *read,
                    write: *write,
                    extra: *extra,
                    af: !*noaf,
                };
                (d, span)
            }
            DescExpr::L1Cd(t) => {
                let (l2, span) = target(t)?;
                (Desc::L1Cd(l2), span)
            }
        };
        let v = slot.descriptor(self.granule, &desc).map_err(|e| {
            let help = match e {
                SetupError::PageAboveLevel3(_) => {
                    Some("use `block` for a level-1/2 leaf, or `table` to point at the next level")
                }
                SetupError::S1InStage2Table => Some("use s2page / s2block"),
                SetupError::S2InStage1Table => Some("use page / block"),
                _ => None,
            };
            let span = match e {
                SetupError::Misaligned { .. } => target_span,
                _ => value.span,
            };
            located(span, &e, help.map(str::to_string))
        })?;
        Ok((slot.pa.0, v))
    }

    /// Resolves each context's roots and hands it to the set-up.
    fn contexts(&self, mb: &mut MachineBuilder) -> R<()> {
        let g = self.granule;
        for c in &self.sc.contexts {
            let root =
                |r: &Spanned<AddrRef>| -> R<StageConfig> { Ok(StageConfig::new(g, self.addr(r)?)) };
            let (ctx, s1_span, s2_span) = match &c.kind {
                ContextKind::Stage1 {
                    asid,
                    vmid,
                    root: r,
                } => (
                    Context {
                        regime: Regime::El10,
                        asid: *asid,
                        vmid: *vmid,
                        s1: Some(root(r)?),
                        s2: None,
                    },
                    r.span,
                    r.span,
                ),
                ContextKind::Stage2 { vmid, root: r } => (
                    Context {
                        regime: Regime::El10,
                        asid: 0,
                        vmid: *vmid,
                        s1: None,
                        s2: Some(root(r)?),
                    },
                    r.span,
                    r.span,
                ),
                ContextKind::Nested {
                    asid,
                    vmid,
                    root: r,
                    s2root,
                } => (
                    Context {
                        regime: Regime::El10,
                        asid: *asid,
                        vmid: *vmid,
                        s1: Some(root(r)?),
                        s2: Some(root(s2root)?),
                    },
                    r.span,
                    s2root.span,
                ),
            };
            // A DMA domain's io-pgtable is walked by the SMMU alone.
            let added = if self.is_dma_context(&c.name.value) {
                mb.device_context(&c.name.value, ctx)
            } else {
                mb.context(&c.name.value, ctx)
            };
            added.map_err(|e| {
                let span = match e {
                    SetupError::ContextTwice(_) => c.name.span,
                    SetupError::RootLevel {
                        stage: TableStage::S2,
                        ..
                    }
                    | SetupError::RootUnaligned {
                        stage: TableStage::S2,
                        ..
                    } => s2_span,
                    _ => s1_span,
                };
                located(span, &e, None)
            })?;
        }
        Ok(())
    }

    /// The 4 KiB frames of a frame reference (every frame of a named
    /// multi-frame object; the one frame of a literal address).
    fn frames_of(&self, r: &Spanned<AddrRef>) -> R<Vec<Pfn>> {
        let pool = &self.sc.pool;
        let in_pool =
            |pa: u64| pa >= pool.base && pa < pool.base + u64::from(pool.frames) * FRAME_SIZE;
        match &r.value {
            AddrRef::Frame { name, offset: 0 } => {
                let f = self.frame(name, r.span)?;
                Ok((0..u64::from(f.frames))
                    .map(|i| Pfn((f.base >> 12) + i))
                    .collect())
            }
            _ => {
                let a = self.addr(r)?;
                // The allocator hands out and takes back whole frames.
                if a % FRAME_SIZE != 0 {
                    return Err(Located::new(
                        r.span,
                        format!("{a:#x} is not the start of a frame: frames are 4 KiB aligned"),
                    ));
                }
                if !in_pool(a) {
                    return Err(Located::new(
                        r.span,
                        format!("{a:#x} is not in the allocator's pool"),
                    ));
                }
                Ok(vec![Pfn::of(Pa(a))])
            }
        }
    }

    /// Frees that are wrong whatever the interleaving, refused at load
    /// time: when no step can allocate (no `alloc`, no kernel or
    /// hypervisor operation), a frame free at set-up is never allocated,
    /// and a frame freed twice (directly or through `call_rcu`) is a double
    /// free. Where allocation makes it depend on the interleaving, the
    /// checker reports `bad-free` with its trace instead.
    fn static_frees(&self, mem: &PhysMem) -> R<()> {
        let steps = || self.sc.threads.iter().flat_map(|t| &t.steps);
        let may_allocate =
            steps().any(|s| matches!(s.value, Step::Alloc(_) | Step::Kernel(_) | Step::S2(_)));
        if may_allocate {
            return Ok(());
        }
        let mut freed: Vec<Pfn> = Vec::new();
        for s in steps() {
            let (Step::Free(r) | Step::CallRcuFree(r)) = &s.value else {
                continue;
            };
            for frame in self.frames_of(r)? {
                if freed.contains(&frame) {
                    return Err(Located::new(
                        r.span,
                        format!(
                            "frame {:#x} is freed a second time here, and no step allocates \
                             it in between: a double free",
                            frame.base().0
                        ),
                    ));
                }
                if mem.owner(frame) == FrameOwner::Free {
                    return Err(Located::new(
                        r.span,
                        format!(
                            "frame {:#x} is never allocated: it is free at set-up and no step \
                             allocates",
                            frame.base().0
                        ),
                    )
                    .with_help("declare it with a `frame` statement, or free a declared frame"));
                }
                freed.push(frame);
            }
        }
        Ok(())
    }

    fn threads(
        &self,
        b: &mut ModelBuilder,
        ctx_names: &[String],
        dev_names: &[String],
        kernel: Option<&Arc<Kernel>>,
        hyp: Option<&Arc<tlbcheck_protocols::kvm::mmu::Hyp>>,
        domains: &dma::Domains,
    ) -> R<()> {
        let sc = self.sc;
        self.one_fault_thread_per_vm(hyp)?;
        if sc.threads.len() > MAX_THREADS {
            return Err(Located::new(
                sc.threads[MAX_THREADS].span,
                format!("at most {MAX_THREADS} threads"),
            ));
        }
        self.static_frees(&b.machine().mem)?;
        let free_now = b.machine().mem.free_frames();
        let mut allocs = 0usize;
        let mut frees = 0usize;
        let mut names: Vec<&str> = Vec::new();
        for t in &sc.threads {
            if names.contains(&t.name.value.as_str()) {
                return Err(Located::new(
                    t.name.span,
                    format!("thread `{}` is declared twice", t.name.value),
                ));
            }
            names.push(&t.name.value);
            let mut tb = b.thread(t.name.value.clone(), t.cpu.value).map_err(|e| {
                let located = Located::new(t.cpu.span, e.to_string());
                match e {
                    BuildError::NoSuchCpu { .. } => {
                        located.with_help("raise `cpus=` in the machine statement")
                    }
                    _ => located,
                }
            })?;
            tb.vmid(self.vcpu_vmid(t, hyp)?).owns(t.owns.clone());
            let mut kops: Vec<(usize, KOp)> = Vec::new();
            let mut batches = nested::Batches::default();
            let mut s2: Vec<(usize, tlbcheck_protocols::kvm::mmu::S2Call)> = Vec::new();
            let mut dmas: Vec<(usize, DmaStep)> = Vec::new();
            for s in &t.steps {
                let here = at(s.span);
                if t.guest.is_some() && batches.take(&s.value, tb.len(), s.span) {
                    continue;
                }
                match &s.value {
                    Step::Store { at: loc, value } => {
                        let (pa, value) = self.write(loc, value)?;
                        tb.store(Pa(pa), value).map_err(here)?;
                    }
                    Step::Tlbi { tlbi, operand } => self.tlbi(&mut tb, tlbi, operand)?,
                    Step::Dsb(kind) => tb.dsb(*kind),
                    Step::Barrier(text) => tb.barrier(text.clone()),
                    Step::Free(r) => {
                        for frame in self.frames_of(r)? {
                            frees += 1;
                            tb.free(frame).map_err(at(r.span))?;
                        }
                    }
                    Step::CallRcuFree(r) => {
                        for frame in self.frames_of(r)? {
                            frees += 1;
                            tb.sync(SyncOp::CallRcuFree(frame)).map_err(at(r.span))?;
                        }
                    }
                    Step::Alloc(o) => {
                        allocs += 1;
                        tb.alloc(owner_of(o));
                    }
                    Step::RcuLock => tb.sync(SyncOp::RcuReadLock).map_err(here)?,
                    Step::RcuUnlock => tb.sync(SyncOp::RcuReadUnlock).map_err(here)?,
                    Step::SynchronizeRcu => tb.sync(SyncOp::SynchronizeRcu).map_err(here)?,
                    Step::RelyReadOnly { ctx, va } => tb
                        .rely(Rely::ReadOnly {
                            ctx: ctx_index(ctx_names, ctx)?,
                            va: Va(*va),
                        })
                        .map_err(here)?,
                    Step::Retry { write, ctx, va } => tb
                        .rely(Rely::RetrySucceeds {
                            ctx: ctx_index(ctx_names, ctx)?,
                            va: Va(*va),
                            write: *write,
                        })
                        .map_err(here)?,
                    Step::Access { write, ctx, va } => tb
                        .rely(Rely::Access {
                            ctx: ctx_index(ctx_names, ctx)?,
                            va: Va(*va),
                            write: *write,
                        })
                        .map_err(here)?,
                    Step::SmmuCmd(_)
                    | Step::SmmuIllegal { .. }
                    | Step::CmdqSkipErr
                    | Step::CmdSync
                    | Step::DeviceAccess(_)
                    | Step::Resume(_)
                    | Step::AwaitFault(_)
                    | Step::RelyConfig(_) => {
                        self.smmu_step(&mut tb, &s.value, s.span, dev_names)?
                    }
                    Step::Kernel(ks) => kops.push((tb.len(), self.kop(ks, s.span, kernel)?)),
                    Step::S2(st) => s2.push((tb.len(), self.s2_call(st, s.span, hyp)?)),
                    Step::GuestCmd(_) => return Err(nested::outside_guest(s.span)),
                    Step::Dma(d) => dmas.push((tb.len(), d.clone())),
                }
            }
            if t.guest.is_some() {
                if !kops.is_empty() || !s2.is_empty() || !dmas.is_empty() {
                    return Err(Located::new(
                        t.span,
                        "a guest thread runs no kernel, stage-2 or DMA steps",
                    ));
                }
                let ops = tb.into_ops();
                self.guest_thread(b, t, ops, batches)?;
                continue;
            }
            if !dmas.is_empty() {
                if !kops.is_empty() || !s2.is_empty() {
                    return Err(Located::new(
                        t.span,
                        "a thread runs DMA steps alone, without kernel or stage-2 operations",
                    ));
                }
                let program = self.dma_program(t, domains, tb.into_ops(), dmas)?;
                b.program(t.name.value.clone(), t.cpu.value, program, t.owns.clone())
                    .map_err(at(t.cpu.span))?;
            } else if !s2.is_empty() {
                if !kops.is_empty() {
                    return Err(Located::new(
                        t.span,
                        "a thread runs kernel operations or stage-2 operations, not both",
                    ));
                }
                let ops = tb.into_ops();
                self.kvm_thread(b, t, hyp, ops, s2)?;
            } else if kops.is_empty() {
                tb.done();
            } else {
                let kernel = Arc::clone(kernel.expect("kop checked the kernel"));
                let ops = tb.into_ops();
                let mut items = Vec::new();
                let mut k = kops.into_iter().peekable();
                for (i, op) in ops.into_iter().enumerate() {
                    while let Some((_, kop)) = k.next_if(|(at, _)| *at == i) {
                        items.push(Item::Kernel(kop));
                    }
                    items.push(Item::Op(op));
                }
                items.extend(k.map(|(_, kop)| Item::Kernel(kop)));
                b.program(
                    t.name.value.clone(),
                    t.cpu.value,
                    Arc::new(KernelThread::new(kernel, items)),
                    t.owns.clone(),
                )
                .map_err(at(t.cpu.span))?;
            }
        }
        if allocs > free_now + frees {
            return Err(Located::new(
                if sc.pool.span.len > 0 { sc.pool.span } else { sc.name.span },
                format!(
                    "the threads allocate {allocs} frame(s) but the pool has only {free_now} free (plus {frees} freed by the threads)"
                ),
            )
            .with_help("enlarge the pool with `pool base=PA frames=N`"));
        }
        Ok(())
    }

    fn tlbi(
        &self,
        tb: &mut ThreadBuilder<'_>,
        tlbi: &Spanned<tlbcheck_hw::cpu::tlbi::Tlbi>,
        operand: &Spanned<TlbiOperandExpr>,
    ) -> R<()> {
        let ins = tlbi.value;
        tb.tlbi_exists(ins).map_err(|e| {
            Located::new(tlbi.span, e.to_string())
                .with_help("add `tlbirange` to the machine statement")
        })?;
        // The operand as software would hold it in Xt, and where a finding
        // of the decoder points.
        let (xt, written, blame) = match &operand.value {
            TlbiOperandExpr::None => (None, String::new(), operand.span),
            TlbiOperandExpr::Raw(x) => (Some(*x), format!(" {x:#018x}"), operand.span),
            TlbiOperandExpr::Fields(fields) => {
                let kv = Field::pairs(fields);
                let raw = tlbi_raw_from_fields(ins, &kv, self.granule)
                    .map_err(|e| Field::locate(fields, e, operand.span))?;
                let text: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let blame = |e| {
                    tlbi_error_field(&kv, e).map_or(operand.span, |i| {
                        fields[i].key.span.to(fields[i].value.span)
                    })
                };
                let blame = match ins.decode(raw) {
                    Err(e) => blame(&e),
                    Ok(_) => operand.span,
                };
                (
                    Some(raw),
                    format!(" {} ({raw:#018x})", text.join(" ")),
                    blame,
                )
            }
        };
        let built = match xt {
            None => tb
                .tlbi(ins, TlbiOperand::None, format!("{ins}{written}"))
                .map(|()| None),
            Some(x) => tb.tlbi_raw(ins, x, format!("{ins}{written}")),
        };
        // A malformed operand is executed as the architecture allows: the
        // scenario is accepted, with a warning naming the field and rule.
        if let Ok(Some(e)) = &built {
            self.warnings.borrow_mut().push(
                Located::new(blame, format!("{e}; {}", e.effect()))
                    .with_help("`tlbcheck decode tlbi` reports the same finding as an error"),
            );
        }
        built.map(|_| ()).map_err(|e| {
            let span = match e {
                BuildError::NoTlbiRange(_) => tlbi.span,
                BuildError::Operand(..) if operand.value == TlbiOperandExpr::None => tlbi.span,
                _ => operand.span,
            };
            let help = match e {
                BuildError::NoTlbiRange(_) => Some("add `tlbirange` to the machine statement"),
                BuildError::NoTtl(_) => {
                    Some("add `ttl` to the machine statement, or drop the hint")
                }
                BuildError::Operand(..) => Some("give fields (asid= va= ...) or a raw 0x... value"),
                _ => None,
            };
            let located = Located::new(span, e.to_string());
            match help {
                Some(h) => located.with_help(h),
                None => located,
            }
        })
    }
}

impl Lower<'_> {
    /// Processes: a level-0 table each, their VMAs and set-up pages,
    /// allocated from the pool after every declared frame.
    fn processes(&self, mem: &mut PhysMem) -> R<Vec<Process>> {
        let sc = self.sc;
        let mut out: Vec<Process> = Vec::new();
        if sc.processes.is_empty() {
            if let Some(v) = sc.vmas.first() {
                return Err(Located::new(v.span, "a `vma` needs a `process` statement"));
            }
            if let Some(p) = sc.pages.first() {
                return Err(Located::new(p.span, "a `page` needs a `process` statement"));
            }
            return Ok(out);
        }
        let first = &sc.processes[0];
        if self.granule != Granule::K4 {
            return Err(Located::new(
                first.span,
                "processes use the 4K granule (the memory manager is a 4K-page kernel)",
            )
            .with_help("use `machine granule=4k`"));
        }
        let pool_end = sc.pool.base + u64::from(sc.pool.frames) * FRAME_SIZE;
        if pool_end > mm::FRAME_LIMIT {
            return Err(Located::new(
                if sc.pool.span.len > 0 {
                    sc.pool.span
                } else {
                    first.span
                },
                format!(
                    "processes need the pool below {:#x} (frame numbers fit 16 bits)",
                    mm::FRAME_LIMIT
                ),
            ));
        }
        let oom = |span: Span| {
            move |e: tlbcheck_hw::mem::MemError| {
                Located::new(span, format!("cannot set up: {e}"))
                    .with_help("enlarge the pool with `pool base=PA frames=N`")
            }
        };
        for d in &sc.processes {
            if out.iter().any(|p| p.name == d.name.value) {
                return Err(Located::new(
                    d.name.span,
                    format!("process `{}` is declared twice", d.name.value),
                ));
            }
            let root = mm::new_root(mem, d.asid).map_err(oom(d.span))?;
            out.push(Process {
                name: d.name.value.clone(),
                asid: d.asid,
                space: d.asid,
                root,
                ctx: 0,
                vmas: Vec::new(),
                bonds: Vec::new(),
                mirror: None,
            });
        }
        let names: Vec<String> = out.iter().map(|p| p.name.clone()).collect();
        for v in &sc.vmas {
            let p = proc_index(&names, &v.process)?;
            let (start, len) = (v.start.value, v.len.value);
            if start % 4096 != 0 {
                return Err(Located::new(
                    v.start.span,
                    "a VMA starts on a page boundary",
                ));
            }
            if len == 0 || len % 4096 != 0 || start.checked_add(len).is_none_or(|e| e > 1 << 48) {
                return Err(Located::new(
                    v.len.span,
                    "a VMA's length is a non-zero multiple of 4 KiB inside the 48-bit user space",
                ));
            }
            if out[p]
                .vmas
                .iter()
                .any(|o| o.start < start + len && start < o.end)
            {
                return Err(Located::new(
                    v.span,
                    "this VMA overlaps another of the process",
                ));
            }
            out[p].vmas.push(Vma {
                start,
                end: start + len,
                writable: v.writable,
                by_mmap: false,
            });
        }
        for pg in &sc.pages {
            let p = proc_index(&names, &pg.process)?;
            let va = pg.va.value;
            if va % 4096 != 0 || out[p].vma(va).is_none() {
                return Err(Located::new(
                    pg.va.span,
                    format!("{va:#x} is not a page of a VMA of `{}`", out[p].name),
                )
                .with_help("declare the VMA first: `vma P START LEN rw`"));
            }
            let t = mm::tables(mem, out[p].root, va);
            if let Some(l3) = t[3] {
                if mem.read(Pa(l3 + 8 * mm::index(va, 3))) != 0 {
                    return Err(Located::new(pg.va.span, "this page is mapped twice"));
                }
            }
            mm::map_new_page(mem, out[p].root, out[p].space, va, pg.writable)
                .map_err(oom(pg.span))?;
            if pg.clean {
                self.make_clean(mem, &out[p], pg)?;
            }
        }
        self.late_vmas(&mut out)?;
        self.fork_children(mem, &mut out)?;
        self.mirrors(mem, &mut out)?;
        self.mremap_targets(mem, &out)?;
        Ok(out)
    }

    /// Each `fork P CHILD`: the child, declared empty, gets P's VMAs and
    /// the tables P's pages need (made at set-up: nobody walks them before
    /// the fork's PTE copies). P's VMAs must lie in one 2 MiB region and
    /// cover at most `mm::MAX_PAGES` pages; a child is forked once.
    fn fork_children(&self, mem: &mut PhysMem, out: &mut [Process]) -> R<()> {
        let names: Vec<String> = out.iter().map(|p| p.name.clone()).collect();
        let mut children = Vec::new();
        for t in &self.sc.threads {
            for s in &t.steps {
                let Step::Kernel(ks) = &s.value else { continue };
                let Some(child) = &ks.child else { continue };
                let p = proc_index(&names, &ks.process)?;
                let c = proc_index(&names, child)?;
                if c == p || children.contains(&c) {
                    return Err(Located::new(
                        child.span,
                        "a fork's child is another process, forked once",
                    ));
                }
                let declared = |name: &str| {
                    self.sc.vmas.iter().any(|v| v.process.value == name)
                        || self.sc.pages.iter().any(|g| g.process.value == name)
                };
                if declared(&child.value) {
                    return Err(Located::new(
                        child.span,
                        format!(
                            "`{}` has VMAs of its own: a fork's child starts empty",
                            child.value
                        ),
                    ));
                }
                let vmas = out[p].vmas.clone();
                let pages: u64 = vmas.iter().map(|v| (v.end - v.start) / 4096).sum();
                let one_region = vmas.iter().all(|v| {
                    v.start / mm::L3_SPAN == vmas[0].start / mm::L3_SPAN
                        && (v.end - 1) / mm::L3_SPAN == vmas[0].start / mm::L3_SPAN
                });
                if vmas.is_empty() || pages > mm::MAX_PAGES || !one_region {
                    return Err(Located::new(
                        ks.process.span,
                        format!(
                            "fork needs the parent's VMAs inside one 2 MiB region, 1 to {} pages in all",
                            mm::MAX_PAGES
                        ),
                    ));
                }
                let (root, space) = (out[c].root, out[c].space);
                mm::prepare_tables(mem, root, space, vmas[0].start).map_err(|e| {
                    Located::new(s.span, format!("cannot set up: {e}"))
                        .with_help("enlarge the pool with `pool base=PA frames=N`")
                })?;
                out[c].vmas = vmas;
                children.push(c);
            }
        }
        Ok(())
    }

    /// Each `mremap P OLD LEN NEW`: the tables down to level 3 at NEW,
    /// made at set-up (`move_page_tables` allocates them before it moves
    /// anything, and nobody walks an empty table to any effect).
    fn mremap_targets(&self, mem: &mut PhysMem, out: &[Process]) -> R<()> {
        let names: Vec<String> = out.iter().map(|p| p.name.clone()).collect();
        for t in &self.sc.threads {
            for s in &t.steps {
                let Step::Kernel(ks) = &s.value else { continue };
                let Some(to) = &ks.to else { continue };
                let p = proc_index(&names, &ks.process)?;
                if to.value % 4096 != 0 || to.value >= 1 << 48 {
                    return Err(Located::new(
                        to.span,
                        "the new address is a page of the 48-bit user space",
                    ));
                }
                mm::prepare_tables(mem, out[p].root, out[p].space, to.value).map_err(|e| {
                    Located::new(s.span, format!("cannot set up: {e}"))
                        .with_help("enlarge the pool with `pool base=PA frames=N`")
                })?;
            }
        }
        Ok(())
    }

    /// Each `mirror M P`: its shadow tables down to level 3, made at
    /// set-up for every 2 MiB region of P's VMAs, all entries invalid.
    fn mirrors(&self, mem: &mut PhysMem, out: &mut [Process]) -> R<()> {
        let names: Vec<String> = out.iter().map(|p| p.name.clone()).collect();
        for (m, d) in self.sc.processes.iter().enumerate() {
            let Some(of) = &d.mirror_of else { continue };
            let p = proc_index(&names, of)?;
            if out[p].mirror.is_some() || p == m {
                return Err(Located::new(of.span, "a mirror mirrors a process"));
            }
            if self.sc.smmu.is_none() {
                return Err(Located::new(d.span, "a mirror's TLB is the SMMU's")
                    .with_help("add an `smmu` statement"));
            }
            let owns = |name: &str| {
                self.sc.vmas.iter().any(|v| v.process.value == name)
                    || self.sc.pages.iter().any(|g| g.process.value == name)
            };
            if owns(&d.name.value) {
                return Err(Located::new(
                    d.name.span,
                    "a mirror has no VMAs or pages of its own",
                ));
            }
            let mut l3 = Vec::new();
            for v in out[p].vmas.clone() {
                let mut region = v.start & !(mm::L3_SPAN - 1);
                while region < v.end {
                    if !l3.iter().any(|&(r, _)| r == region) {
                        let t = mm::prepare_tables(mem, out[m].root, out[m].space, region)
                            .map_err(|e| {
                                Located::new(d.span, format!("cannot set up: {e}"))
                                    .with_help("enlarge the pool with `pool base=PA frames=N`")
                            })?;
                        l3.push((region, t));
                    }
                    region += mm::L3_SPAN;
                }
            }
            out[m].mirror = Some(mm::Mirror {
                of: p,
                retry: d.retry,
                l3,
            });
        }
        Ok(())
    }

    /// The kernel high-level steps run, with each process's SVA bonds.
    fn kernel(
        &self,
        procs: &mut [Process],
        dev_names: &[String],
        mem: &PhysMem,
        zero_page: u64,
    ) -> R<Option<Kernel>> {
        let sc = self.sc;
        let names: Vec<String> = procs.iter().map(|p| p.name.clone()).collect();
        for bd in &sc.binds {
            let p = proc_index(&names, &bd.process)?;
            let smmu = sc.smmu.as_ref().ok_or_else(|| {
                Located::new(bd.span, "bind-sva needs an SMMU").with_help("add an `smmu` statement")
            })?;
            let d = &sc.devices[dev_index(dev_names, &bd.device)?];
            if d.ats && !smmu.ats {
                return Err(Located::new(bd.span, "an ATS device needs `smmu ats`"));
            }
            // The CD that shares the process's table (`cd ... ctx=P`): the
            // one `release` disables.
            let mut cd = None;
            for c in &sc.cds {
                if c.ctx.as_ref().is_some_and(|n| n.value == bd.process.value) {
                    let pa = self.frame(&c.frame.value, c.frame.span)?.base
                        + STRUCT_BYTES * c.slot.value;
                    cd = Some((pa, mem.read(Pa(pa))));
                    break;
                }
            }
            procs[p].bonds.push(SvaBond {
                asid: procs[p].asid,
                sid: d.sid.value,
                ssid: d.ssid.as_ref().map(|s| s.value),
                ats: d.ats,
                cd,
            });
        }
        let Some(version) = &sc.kernel else {
            if let Some(p) = sc.processes.first() {
                return Err(
                    Located::new(p.span, "processes need a `kernel VERSION` statement")
                        .with_help("e.g. `kernel linux-6.6`"),
                );
            }
            return Ok(None);
        };
        let smmu = sc.smmu.as_ref();
        Ok(Some(Kernel {
            version: version.value,
            cpu: CpuFeatures {
                tlbirange: sc.machine.tlbirange,
                ttl: sc.machine.ttl,
            },
            smmu: sva::SmmuFeatures {
                btm: smmu.is_some_and(|d| d.btm),
                ril: smmu.is_some_and(|d| d.ril),
                ats: smmu.is_some_and(|d| d.ats),
            },
            processes: procs.to_vec(),
            zero_page,
            slots: Vec::new(),
        }))
    }

    /// A high-level step, checked against the kernel's restrictions.
    fn kop(&self, ks: &KernelStep, span: Span, kernel: Option<&Arc<Kernel>>) -> R<KOp> {
        let k = kernel.ok_or_else(|| {
            Located::new(
                span,
                "a kernel operation needs `kernel VERSION` and a `process`",
            )
            .with_help("e.g. `kernel linux-6.6` and `process p1 asid=1`")
        })?;
        let names: Vec<String> = k.processes.iter().map(|p| p.name.clone()).collect();
        let p = proc_index(&names, &ks.process)?;
        let addr = ks.addr.value;
        if addr % 4096 != 0 {
            return Err(Located::new(
                ks.addr.span,
                "the address is not page aligned",
            ));
        }
        Ok(match ks.kind {
            KernelStepKind::Mmap => self.mmap_kop(ks, p, k)?,
            KernelStepKind::Touch => self.touch_kop(ks, p, k)?,
            KernelStepKind::WriteFault => KOp::WriteFault { p, va: addr },
            KernelStepKind::Reclaim => KOp::Reclaim { p, va: addr },
            KernelStepKind::Migrate => self.migrate_kop(ks, p)?,
            KernelStepKind::Exit => {
                let proc_ = &k.processes[p];
                let pages: u64 = proc_.vmas.iter().map(|v| (v.end - v.start) / 4096).sum();
                let one_region = proc_.vmas.iter().all(|v| {
                    v.start / mm::L3_SPAN == proc_.vmas[0].start / mm::L3_SPAN
                        && (v.end - 1) / mm::L3_SPAN == proc_.vmas[0].start / mm::L3_SPAN
                });
                if pages > mm::MAX_PAGES || !one_region {
                    return Err(Located::new(
                        ks.process.span,
                        format!(
                            "exit needs the process's VMAs in one 2 MiB region, at most {} pages",
                            mm::MAX_PAGES
                        ),
                    ));
                }
                if k.processes
                    .iter()
                    .any(|m| m.mirror.as_ref().is_some_and(|mi| mi.of == p))
                {
                    return Err(Located::new(
                        ks.process.span,
                        "exit of a mirrored process is not modelled (the mirror's release)",
                    ));
                }
                KOp::Exit { p }
            }
            KernelStepKind::MirrorFault => {
                if k.processes[p].mirror.is_none() {
                    return Err(Located::new(
                        ks.process.span,
                        format!("`{}` is not a mirror", ks.process.value),
                    )
                    .with_help("declare it with `mirror NAME PROCESS asid=N`"));
                }
                KOp::MirrorFault { m: p, va: addr }
            }
            KernelStepKind::Fork => {
                if k.processes[p].vmas.iter().any(|v| v.by_mmap) {
                    return Err(Located::new(
                        ks.process.span,
                        "fork of a process with VMAs made by `mmap` steps is not modelled (the child's VMAs are fixed at set-up)",
                    ));
                }
                let child = ks.child.as_ref().expect("fork has a child");
                KOp::Fork {
                    p,
                    child: proc_index(&names, child)?,
                }
            }
            kind => {
                let len = ks.len.as_ref().expect("range steps have a length");
                let l = len.value;
                let max = mm::MAX_PAGES * 4096;
                if l == 0
                    || l % 4096 != 0
                    || l > max
                    || addr / mm::L3_SPAN != (addr + l - 1) / mm::L3_SPAN
                {
                    return Err(Located::new(
                        len.span,
                        format!(
                            "a range is 1 to {} pages inside one 2 MiB region",
                            mm::MAX_PAGES
                        ),
                    ));
                }
                if let Some(to) = &ks.to {
                    let new = to.value;
                    let inside = k.processes[p].vma(new).is_some_and(|v| new + l <= v.end);
                    if new / mm::L3_SPAN != (new + l - 1) / mm::L3_SPAN || !inside {
                        return Err(Located::new(
                            to.span,
                            "the new range lies inside one declared VMA and one 2 MiB region",
                        )
                        .with_help("declare the destination: `vma P NEW LEN rw`"));
                    }
                    if new < addr + l && addr < new + l {
                        return Err(Located::new(to.span, "the new range overlaps the old one"));
                    }
                    return Ok(KOp::Mremap {
                        p,
                        old: addr,
                        len: l,
                        new,
                    });
                }
                if let Some(writable) = ks.writable {
                    return Ok(KOp::Mprotect {
                        p,
                        start: addr,
                        len: l,
                        writable,
                    });
                }
                if kind == KernelStepKind::Munmap {
                    let end = addr + l;
                    if k.processes[p].vmas.iter().any(|v| {
                        v.by_mmap
                            && v.start < end
                            && addr < v.end
                            && !(addr <= v.start && v.end <= end)
                    }) {
                        return Err(Located::new(
                            len.span,
                            "munmap of part of a VMA an `mmap` step makes is not modelled (VMAs do not split)",
                        ));
                    }
                    KOp::Munmap {
                        p,
                        start: addr,
                        len: l,
                    }
                } else {
                    KOp::MadviseDontneed {
                        p,
                        start: addr,
                        len: l,
                    }
                }
            }
        })
    }
}

pub(super) fn proc_index(names: &[String], p: &Spanned<String>) -> R<usize> {
    index_of(names, p, "process", "process NAME asid=N")
}

/// The index of `name` among the declared `names` of a `what`; the help of
/// the error lists them, or says how to declare one (`declare`).
fn index_of(names: &[String], name: &Spanned<String>, what: &str, declare: &str) -> R<usize> {
    names.iter().position(|n| *n == name.value).ok_or_else(|| {
        Located::new(name.span, format!("unknown {what} `{}`", name.value)).with_help(
            if names.is_empty() {
                format!("declare it with `{declare}`")
            } else {
                format!("declared {what}s: {}", names.join(", "))
            },
        )
    })
}

fn ctx_index(names: &[String], ctx: &Spanned<String>) -> R<usize> {
    index_of(
        names,
        ctx,
        "context",
        "context NAME stage1 asid=A root=FRAME",
    )
}

fn dev_index(names: &[String], dev: &Spanned<String>) -> R<usize> {
    index_of(names, dev, "device", "device NAME sid=S")
}

impl Lower<'_> {
    /// SMMU set-up statements need an `smmu` statement to attach to.
    fn no_smmu_setup_without_smmu(&self) -> R<()> {
        let sc = self.sc;
        if sc.smmu.is_some() {
            return Ok(());
        }
        let first = sc
            .stream
            .as_ref()
            .map(|d| d.span)
            .into_iter()
            .chain(sc.queues.iter().map(|d| d.span))
            .chain(sc.stes.iter().map(|d| d.span))
            .chain(sc.cds.iter().map(|d| d.span))
            .chain(sc.devices.iter().map(|d| d.span))
            .min_by_key(|s| s.start);
        match first {
            Some(span) => Err(
                Located::new(span, "SMMU set-up, but the machine has no SMMU")
                    .with_help("add an `smmu` statement (e.g. `smmu btm ats`)"),
            ),
            None => Ok(()),
        }
    }

    /// The SMMU's options, Stream table, queues and devices: everything
    /// whose placement must be known before the set-up writes.
    fn smmu_registers(&self, decl: &SmmuDecl, mb: &mut MachineBuilder) -> R<()> {
        let sc = self.sc;
        let stream = sc.stream.as_ref();
        let queue = |kind: QueueKind| -> R<Option<&QueueDecl>> {
            let mut decls = sc.queues.iter().filter(|q| q.kind == kind);
            let first = decls.next();
            if let Some(second) = decls.next() {
                return Err(Located::new(second.span, "this queue is placed twice"));
            }
            Ok(first)
        };
        let (cq, eq) = (queue(QueueKind::Cmd)?, queue(QueueKind::Event)?);
        let place = |at: Option<&Spanned<String>>| -> R<Option<String>> {
            at.map(|n| self.frame(&n.value, n.span).map(|_| n.value.clone()))
                .transpose()
        };
        let log2 = |q: Option<&QueueDecl>| q.and_then(|q| q.log2size.as_ref()).map(|l| l.value);
        let spec = SmmuSpec {
            btm: decl.btm,
            ats: decl.ats,
            stall: decl.stall,
            pri: decl.pri,
            e2h: decl.e2h,
            split: stream.and_then(|d| d.split),
            log2size: stream.and_then(|d| d.log2size.as_ref()).map(|l| l.value),
            max_sid: sc
                .stes
                .iter()
                .map(|s| s.sid.value)
                .chain(sc.devices.iter().map(|d| d.sid.value))
                .max()
                .unwrap_or(0),
            strtab_at: place(stream.and_then(|d| d.at.as_ref()))?,
            cmdq: (log2(cq), place(cq.and_then(|q| q.at.as_ref()))?),
            evtq: (log2(eq), place(eq.and_then(|q| q.at.as_ref()))?),
        };
        // Where a structure's statement, and its at=, are.
        let spans = |what: Structure| {
            let (d, at) = match what {
                Structure::StreamTable => {
                    (stream.map(|d| d.span), stream.and_then(|d| d.at.as_ref()))
                }
                Structure::CommandQueue => (cq.map(|q| q.span), cq.and_then(|q| q.at.as_ref())),
                _ => (eq.map(|q| q.span), eq.and_then(|q| q.at.as_ref())),
            };
            let d = d.unwrap_or(decl.span);
            (d, at.map_or(d, |a| a.span))
        };
        mb.smmu(spec).map_err(|e| match &e {
            SetupError::StreamIdsUncovered { .. } => {
                let l = stream.and_then(|d| d.log2size.as_ref());
                located(l.map_or(decl.span, |l| l.span), &e, None)
            }
            SetupError::NotSmmuFrame { what, frame, .. } => located(
                spans(*what).1,
                &e,
                Some(format!("declare it with `frame {frame} smmu`")),
            ),
            SetupError::FrameTooSmall { what, .. } => located(
                spans(*what).1,
                &e,
                Some("give the frame frames=N".to_string()),
            ),
            SetupError::FrameMisaligned { what, .. } | SetupError::FrameShared { what, .. } => {
                located(spans(*what).1, &e, None)
            }
            SetupError::SplitReserved(_) => located(spans(Structure::StreamTable).0, &e, None),
            SetupError::Log2SizeTooLarge { what, .. } => located(spans(*what).0, &e, None),
            SetupError::NoRoomFor { what, .. } => located(
                spans(*what).0,
                &e,
                Some(format!("{ENLARGE}, or place it with at=FRAME")),
            ),
            _ => located(decl.span, &e, None),
        })?;
        for (i, d) in sc.devices.iter().enumerate() {
            if sc.devices[..i].iter().any(|o| o.name.value == d.name.value) {
                return Err(Located::new(
                    d.name.span,
                    format!("device `{}` is declared twice", d.name.value),
                ));
            }
            let dev = Device::new(d.sid.value, d.ssid.as_ref().map(|s| s.value), d.ats, d.pri);
            mb.device(dev).map_err(|e| match e {
                SetupError::AtsDeviceWithoutAts => located(
                    d.span,
                    &e,
                    Some("add `ats` to the smmu statement".to_string()),
                ),
                SetupError::PriWithoutAts => located(
                    d.span,
                    &e,
                    Some(
                        "add `ats` to the device, and `pri` and `ats` to the smmu statement"
                            .to_string(),
                    ),
                ),
                _ => located(d.sid.span, &e, None),
            })?;
        }
        Ok(())
    }

    /// Resolves `ttb0=` / `s2root=`: a context's root (stage 1 for `ttb0`,
    /// stage 2 for `s2root`), else a frame or an address.
    fn root_of(&self, r: &Spanned<AddrRef>, mb: &MachineBuilder, stage2: bool) -> R<u64> {
        if let AddrRef::Frame { name, offset: 0 } = &r.value {
            if let Some((_, c)) = mb.contexts().find(|(n, _)| n == name) {
                let st = if stage2 { c.s2 } else { c.s1 };
                return st.map(|s| s.ttb).ok_or_else(|| {
                    Located::new(
                        r.span,
                        format!(
                            "context `{name}` has no stage {}",
                            if stage2 { 2 } else { 1 }
                        ),
                    )
                });
            }
        }
        let a = self.addr(r)?;
        mb.check_table_base(a).map_err(setup_at(r.span))?;
        Ok(a)
    }

    /// Every STE and CD, handed to the set-up, which writes them (and, for
    /// a 2-level Stream table, the L1STDs and level-2 arrays).
    fn smmu_structures(&self, mb: &mut MachineBuilder) -> R<()> {
        let sc = self.sc;
        for d in &sc.stes {
            let mut ste = match d.config {
                SteConfig::Invalid => None,
                SteConfig::Abort => {
                    let mut s = Ste::bypass();
                    s.config = StreamConfig::Abort;
                    Some(s)
                }
                SteConfig::Bypass | SteConfig::S1 => Some(Ste::bypass()),
                SteConfig::S2 | SteConfig::Nested => {
                    let r = d.s2root.as_ref().expect("the parser requires s2root");
                    let root = self.root_of(r, mb, true)?;
                    Some(Ste::stage2(d.vmid, root, self.granule))
                }
            };
            if let Some(ste) = &mut ste {
                ste.s2_vmid = d.vmid;
                if let Some(cd) = &d.cd {
                    ste.config = if d.config == SteConfig::Nested {
                        StreamConfig::Nested
                    } else {
                        StreamConfig::S1Translate
                    };
                    ste.s1_context_ptr = self.addr(cd)?;
                }
                ste.s1_fmt = d.s1fmt;
                ste.s1_cd_max = d.s1cdmax;
                ste.s1_dss = d.s1dss;
                ste.s1_stalld = d.s1stalld;
                ste.s2_s = d.s2stall;
                ste.eats = d.eats;
            }
            mb.ste(d.sid.value, ste.as_ref()).map_err(|e| match e {
                SetupError::SteTwice(_) | SetupError::SidBeyondTable { .. } => {
                    located(d.sid.span, &e, None)
                }
                SetupError::CdPtrUnaligned(_) => {
                    located(d.cd.as_ref().map_or(d.span, |c| c.span), &e, None)
                }
                SetupError::TableBaseUnaligned { .. } => {
                    located(d.s2root.as_ref().map_or(d.span, |r| r.span), &e, None)
                }
                SetupError::EatsWithoutAts => located(
                    d.span,
                    &e,
                    Some("add `ats` to the smmu statement".to_string()),
                ),
                SetupError::S2StallWithoutStall => located(
                    d.span,
                    &e,
                    Some("add `stall` to the smmu statement".to_string()),
                ),
                SetupError::NoRoomFor { .. } => located(
                    d.span,
                    &e,
                    Some(format!("{ENLARGE}, or place it with at=FRAME")),
                ),
                _ => located(d.span, &e, None),
            })?;
        }
        for d in &sc.cds {
            self.frame(&d.frame.value, d.frame.span)?;
            let cd = if d.invalid {
                None
            } else {
                let ctx = match &d.ctx {
                    Some(c) => {
                        let names: Vec<String> =
                            mb.contexts().map(|(n, _)| n.to_string()).collect();
                        Some(*mb.contexts().nth(ctx_index(&names, c)?).expect("indexed").1)
                    }
                    None => None,
                };
                let asid = match (&d.asid, ctx) {
                    (Some(a), _) => a.value,
                    (None, Some(c)) => c.asid,
                    (None, None) => unreachable!("the parser requires asid= or ctx="),
                };
                let ttb0 = match (&d.ttb0, ctx, &d.ctx) {
                    (Some(r), _, _) => self.root_of(r, mb, false)?,
                    (None, Some(c), Some(name)) => c.s1.map(|s| s.ttb).ok_or_else(|| {
                        Located::new(
                            name.span,
                            format!("context `{}` has no stage 1", name.value),
                        )
                    })?,
                    _ => unreachable!("the parser requires ttb0= or ctx="),
                };
                let mut cd = Cd::new(asid, ttb0, d.granule.unwrap_or(self.granule));
                cd.s = d.stall;
                cd.aset = d.aset;
                Some(cd)
            };
            mb.cd(&d.frame.value, d.slot.value, cd.as_ref())
                .map_err(|e| match e {
                    SetupError::CdTableNotSmmu { .. } => located(
                        d.frame.span,
                        &e,
                        Some(format!("declare it with `frame {} smmu`", d.frame.value)),
                    ),
                    SetupError::CdSlotOutOfRange { .. } => located(d.slot.span, &e, None),
                    SetupError::FrameShared { .. } => located(d.frame.span, &e, None),
                    SetupError::TableBaseUnaligned { .. } => {
                        located(d.ttb0.as_ref().map_or(d.span, |r| r.span), &e, None)
                    }
                    SetupError::StallingCdWithoutStall => located(
                        d.span,
                        &e,
                        Some("add `stall` to the smmu statement".to_string()),
                    ),
                    _ => located(d.span, &e, None),
                })?;
        }
        Ok(())
    }

    /// One SMMU step, emitted through the builder.
    fn smmu_step(
        &self,
        tb: &mut ThreadBuilder<'_>,
        step: &Step,
        span: Span,
        dev_names: &[String],
    ) -> R<()> {
        if self.sc.smmu.is_none() {
            return Err(
                Located::new(span, "an SMMU step, but the machine has no SMMU")
                    .with_help("add an `smmu` statement (e.g. `smmu btm ats`)"),
            );
        }
        let here = at(span);
        match step {
            Step::SmmuCmd(c) => tb.smmu_cmd(c).map_err(|e| {
                let text = e.to_string();
                let help = if matches!(c, Command::AtcInv { .. }) && text.ends_with("needs ATS") {
                    Some("add `ats` to the smmu statement")
                } else if text.ends_with("lacks RIL") {
                    Some("add `ril` to the smmu statement (SMMU_IDR3.RIL)")
                } else {
                    None
                };
                match help {
                    Some(h) => here(e).with_help(h),
                    None => here(e),
                }
            }),
            Step::CmdSync => tb.smmu_sync(&sva::cmd_sync()).map_err(here),
            Step::SmmuIllegal { words, blame } => {
                if let Some(e) = tb.smmu_words(*words).map_err(here)? {
                    let kind = if e.must_raise_cerror_ill() {
                        "the SMMU must raise CERROR_ILL"
                    } else {
                        "the SMMU may raise CERROR_ILL, and the model takes it that it does"
                    };
                    self.warnings.borrow_mut().push(
                        Located::new(
                            *blame,
                            format!(
                                "illegal command {:#018x} {:#018x}: {e}; {kind}: the Command \
                                 queue stops at it, SMMU_GERROR.CMDQ_ERR is raised and no later \
                                 command is consumed until software recovers (SMMUv3 4.1.3, 7.1)",
                                words[0], words[1]
                            ),
                        )
                        .with_help("`smmu skip_err` in a handler thread recovers as Linux does"),
                    );
                }
                Ok(())
            }
            Step::CmdqSkipErr => tb.smmu_cmdq_recover(sva::cmdq_skip_err).map_err(here),
            Step::DeviceAccess(a) => {
                let dev = dev_index(dev_names, &a.device)?;
                let declared = self.sc.devices[dev].ssid.as_ref().map(|s| s.value);
                if a.ssid.is_some() && a.ssid != declared {
                    return Err(Located::new(
                        span,
                        format!(
                            "device `{}` issues transactions with {}, not ssid={}",
                            a.device.value,
                            declared.map_or("no SubstreamID".to_string(), |s| format!("ssid={s}")),
                            a.ssid.unwrap_or(0)
                        ),
                    )
                    .with_help("a device's SubstreamID is set by its `device` statement"));
                }
                tb.device_access(dev, Va(a.addr), a.write).map_err(here)
            }
            Step::Resume(d) => tb
                .device_resume(dev_index(dev_names, d)?, sva::page_response)
                .map_err(here),
            Step::AwaitFault(d) => tb.await_fault(dev_index(dev_names, d)?).map_err(here),
            Step::RelyConfig(d) => tb
                .rely(Rely::CurrentConfig {
                    dev: dev_index(dev_names, d)?,
                })
                .map_err(here),
            _ => unreachable!("only SMMU steps come here"),
        }
    }
}

impl Lower<'_> {
    /// `page P VA clean`: the PTE `map_new_page` wrote, read-only to the
    /// hardware, gets PTE_WRITE (DBM, bit 51): Linux's writable-but-clean
    /// PTE. Only a writable VMA has one.
    fn make_clean(&self, mem: &mut PhysMem, p: &Process, pg: &PageDecl) -> R<()> {
        let va = pg.va.value;
        if !p.vma(va).is_some_and(|v| v.writable) {
            return Err(Located::new(
                pg.span,
                "a clean page is writable: it needs a writable VMA",
            ));
        }
        let l3 = mm::tables(mem, p.root, va)[3].expect("map_new_page made the tables");
        let at = Pa(l3 + 8 * mm::index(va, 3));
        let pte = mem.read(at);
        mem.write(at, pte | tlbcheck_hw::vmsa::desc::bits::DBM)
            .map_err(|e| Located::new(pg.span, e.to_string()))
    }

    /// Every `mmap P ADDR LEN rw|ro` of the threads declares a VMA the
    /// process has only once the step runs (`Vma::by_mmap`). Repeating
    /// the same step names the same VMA; any other overlap with a VMA of
    /// the process is an error. At most 8 per process.
    fn late_vmas(&self, out: &mut [Process]) -> R<()> {
        let names: Vec<String> = out.iter().map(|p| p.name.clone()).collect();
        for t in &self.sc.threads {
            for s in &t.steps {
                let Step::Kernel(ks) = &s.value else { continue };
                if ks.kind != KernelStepKind::Mmap {
                    continue;
                }
                let p = proc_index(&names, &ks.process)?;
                let (start, len) = (ks.addr.value, ks.len.as_ref().map_or(0, |l| l.value));
                let writable = ks.writable == Some(true);
                if start % 4096 != 0
                    || len == 0
                    || len % 4096 != 0
                    || start.checked_add(len).is_none_or(|e| e > 1 << 48)
                {
                    return Err(Located::new(
                        s.span,
                        "mmap takes a page-aligned start and a non-zero multiple of 4 KiB inside the 48-bit user space",
                    ));
                }
                let end = start + len;
                let vmas = &mut out[p].vmas;
                if vmas.iter().any(|v| {
                    v.by_mmap && v.start == start && v.end == end && v.writable == writable
                }) {
                    continue;
                }
                if vmas.iter().any(|v| v.start < end && start < v.end) {
                    return Err(Located::new(
                        s.span,
                        "this mmap overlaps another VMA of the process",
                    )
                    .with_help(
                        "an mmap repeated with the same range and protection maps the same VMA",
                    ));
                }
                if vmas.iter().filter(|v| v.by_mmap).count() >= 8 {
                    return Err(Located::new(s.span, "at most 8 mmap'd VMAs per process"));
                }
                vmas.push(Vma {
                    start,
                    end,
                    writable,
                    by_mmap: true,
                });
            }
        }
        self.mmap_beside_munmap()
    }

    /// munmap's `mmap_write_downgrade` is an unlock and a read lock in the
    /// model, which lets a writer in between that Linux keeps out. An
    /// `mmap` there could make a VMA in the 2 MiB region whose tables the
    /// munmap has decided to free, a race Linux does not have: such
    /// scenarios are refused.
    fn mmap_beside_munmap(&self) -> R<()> {
        let region = |a: u64| a / mm::L3_SPAN;
        let steps = |kind| {
            self.sc.threads.iter().enumerate().flat_map(move |(t, th)| {
                th.steps.iter().filter_map(move |s| match &s.value {
                    Step::Kernel(ks) if ks.kind == kind => Some((t, ks, s.span)),
                    _ => None,
                })
            })
        };
        for (t, mmap, span) in steps(KernelStepKind::Mmap) {
            let len = mmap.len.as_ref().map_or(0, |l| l.value);
            for (u, unmap, _) in steps(KernelStepKind::Munmap) {
                let ulen = unmap.len.as_ref().map_or(0, |l| l.value);
                let overlap = region(mmap.addr.value) <= region(unmap.addr.value + ulen.max(1) - 1)
                    && region(unmap.addr.value) <= region(mmap.addr.value + len.max(1) - 1);
                if t != u && mmap.process.value == unmap.process.value && overlap {
                    return Err(Located::new(
                        span,
                        "an mmap concurrent with a munmap in the same 2 MiB region is not modelled (munmap's mmap_write_downgrade is not atomic here)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The zero page, claimed from the pool after the processes' frames
    /// when some thread reads by `touch` (a read fault on an empty PTE maps
    /// it); 0 otherwise.
    fn zero_page(&self, mem: &mut PhysMem) -> R<u64> {
        let read = self.sc.threads.iter().flat_map(|t| &t.steps).find(|s| {
            matches!(&s.value, Step::Kernel(ks) if ks.kind == KernelStepKind::Touch && ks.writable == Some(false))
        });
        let Some(s) = read else { return Ok(0) };
        let f = mem.alloc(FrameOwner::Data { space: 0 }).map_err(|e| {
            Located::new(s.span, format!("cannot set up the zero page: {e}"))
                .with_help("enlarge the pool with `pool base=PA frames=N`")
        })?;
        Ok(f.base().0)
    }

    /// `mmap P ADDR LEN rw|ro`: the VMA `late_vmas` declared for it.
    fn mmap_kop(&self, ks: &KernelStep, p: usize, k: &Kernel) -> R<KOp> {
        let (start, len) = (ks.addr.value, ks.len.as_ref().map_or(0, |l| l.value));
        let n = k.processes[p]
            .vmas
            .iter()
            .position(|v| v.by_mmap && v.start == start && v.end == start + len)
            .ok_or_else(|| Located::new(ks.addr.span, "no VMA for this mmap"))?;
        Ok(KOp::Mmap { p, n, start, len })
    }

    /// `touch P ADDR read|write`: inside a VMA (one declared, or one an
    /// `mmap` step makes); a write needs a writable VMA (a write to a
    /// read-only VMA is SIGSEGV, not a fault the kernel resolves).
    fn touch_kop(&self, ks: &KernelStep, p: usize, k: &Kernel) -> R<KOp> {
        let va = ks.addr.value;
        let write = ks.writable == Some(true);
        let proc_ = &k.processes[p];
        let Some(vma) = proc_.vma(va) else {
            return Err(Located::new(
                ks.addr.span,
                format!("{va:#x} is in no VMA of `{}`", proc_.name),
            )
            .with_help("declare one with `vma P START LEN rw` or map it with `mmap`"));
        };
        if write && !vma.writable {
            return Err(Located::new(
                ks.addr.span,
                "a write to a read-only VMA is SIGSEGV, not a fault the kernel handles",
            ));
        }
        // A declared VMA stays for the whole run, so a touch after a
        // munmap of it would fault pages into tables the munmap frees:
        // only an mmap'd VMA goes away with the munmap.
        let unmapped = self.sc.threads.iter().flat_map(|t| &t.steps).any(|s| {
            matches!(&s.value, Step::Kernel(u) if u.kind == KernelStepKind::Munmap
                && u.process.value == ks.process.value
                && u.addr.value <= va
                && va < u.addr.value + u.len.as_ref().map_or(0, |l| l.value))
        });
        if unmapped && !vma.by_mmap {
            return Err(Located::new(
                ks.addr.span,
                "a munmap removes this page's VMA, which is declared for the whole run",
            )
            .with_help("make the VMA with `mmap P ADDR LEN rw` so that the munmap removes it"));
        }
        Ok(KOp::Touch { p, va, write })
    }

    /// `migrate P ADDR sync|async`. The migration entry it leaves for a
    /// while is met by mprotect and faults as Linux meets it; other
    /// threads' operations that would zap, copy, move or reclaim it
    /// (munmap, madvise-dontneed, exit, fork, mremap, reclaim, migrate of
    /// the same process) are refused.
    fn migrate_kop(&self, ks: &KernelStep, p: usize) -> R<KOp> {
        let me = self.sc.threads.iter().position(|t| {
            t.steps
                .iter()
                .any(|s| matches!(&s.value, Step::Kernel(x) if std::ptr::eq(x, ks)))
        });
        for (t, th) in self.sc.threads.iter().enumerate() {
            if Some(t) == me {
                continue;
            }
            for s in &th.steps {
                let Step::Kernel(o) = &s.value else { continue };
                let meets = matches!(
                    o.kind,
                    KernelStepKind::Munmap
                        | KernelStepKind::MadviseDontneed
                        | KernelStepKind::Exit
                        | KernelStepKind::Fork
                        | KernelStepKind::Mremap
                        | KernelStepKind::Reclaim
                        | KernelStepKind::Migrate
                );
                if meets && o.process.value == ks.process.value {
                    return Err(Located::new(
                        s.span,
                        "this operation may meet the migration entry of another thread's migrate, which is not modelled for it",
                    )
                    .with_help("run it in the migrating thread, before or after the migrate"));
                }
            }
        }
        Ok(KOp::Migrate {
            p,
            va: ks.addr.value,
            batch: ks.writable == Some(true),
        })
    }
}
