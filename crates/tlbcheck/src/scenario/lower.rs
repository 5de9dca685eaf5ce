//! Lowering: a parsed scenario becomes a checker [`Model`]. Frames are
//! claimed from the pool, set-up descriptors written, contexts built, and
//! every step handed to the checker's [`ModelBuilder`], which validates it;
//! its refusals come back here to be located in the source. What is
//! checked here is syntax and names (and that the pool is large enough
//! for the allocations the threads state).

use super::ast::*;
use crate::codec::tlbi_from_fields;
use crate::error::{Located, Span};
use std::collections::HashMap;
use std::sync::Arc;
use tlbcheck_checker::builder::{BuildError, Features, ModelBuilder, ThreadBuilder, MAX_THREADS};
use tlbcheck_checker::model::{Bounds, Model};
use tlbcheck_checker::op::Rely;
use tlbcheck_checker::sync::SyncOp;
use tlbcheck_hw::addr::{Granule, Pa, Va};
use tlbcheck_hw::cpu::tlbi::TlbiOperand;
use tlbcheck_hw::machine::Machine;
use tlbcheck_hw::mem::{FrameOwner, Pfn, PhysMem, TableOwner, FRAME_SIZE};
use tlbcheck_hw::smmu::cd::{Cd, CdContext, L1Cd};
use tlbcheck_hw::smmu::cmd::Command;
use tlbcheck_hw::smmu::config::{StrtabConfig, StrtabFmt, STRUCT_BYTES};
use tlbcheck_hw::smmu::model::{Device, Smmu, SmmuOptions};
use tlbcheck_hw::smmu::queue::{CmdQueue, EventQueue};
use tlbcheck_hw::smmu::ste::{L1Std, SmmuFeatures, Ste, StreamConfig};
use tlbcheck_hw::tlb::Regime;
use tlbcheck_hw::vmsa::desc::{bits, s1_block, s1_page, s2_block, s2_page, table};
use tlbcheck_hw::vmsa::walk::start_level;
use tlbcheck_hw::vmsa::{Context, StageConfig, TableStage};
use tlbcheck_protocols::linux::arm64::CpuFeatures;
use tlbcheck_protocols::linux::mm::{self, Item, KOp, Kernel, KernelThread, Process, Vma};
use tlbcheck_protocols::linux::sva::{self, SvaBond};

mod dma;

type R<T> = Result<T, Located>;

/// A resolved store location: word address, the table it lies in (owner
/// and level) when it names a table frame, and its span.
type Resolved = (u64, Option<(TableOwner, u8)>, Span);

/// A placed frame.
#[derive(Clone, Debug)]
struct Placed {
    base: u64,
    frames: u32,
    owner: FrameOwner,
}

impl Placed {
    fn table(&self) -> Option<(TableOwner, u8)> {
        match self.owner {
            FrameOwner::Table { owner, level } => Some((owner, level)),
            _ => None,
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
}

/// The SMMU's registers and devices, built before its memory is final; the
/// [`Smmu`] itself is made from them once every structure is written.
struct SmmuParts {
    opts: SmmuOptions,
    strtab: StrtabConfig,
    cmdq: CmdQueue,
    evtq: EventQueue,
    devices: Vec<Device>,
}

/// Default ring sizes: one 4 KiB frame each (256 commands, 128 events).
const CMDQ_LOG2: u8 = 8;
const EVTQ_LOG2: u8 = 7;

/// Builds the model and the bounds the scenario asks for.
pub fn lower(sc: &Scenario) -> R<(Model, Bounds)> {
    let mut l = Lower {
        sc,
        granule: sc.machine.granule,
        frames: HashMap::new(),
    };
    let mut mem = l.place_frames()?;
    l.no_smmu_setup_without_smmu()?;
    // SMMU structures the scenario does not place are claimed after every
    // declared frame, so they never move a frame the scenario placed.
    let mut smmu = match &sc.smmu {
        Some(decl) => Some(l.smmu_registers(decl, &mut mem)?),
        None => None,
    };
    let mut procs = l.processes(&mut mem)?;
    for w in &sc.writes {
        let (pa, value) = l.write(&w.at, &w.value)?;
        mem.write(Pa(pa), value)
            .map_err(|e| Located::new(w.span, e.to_string()))?;
    }
    l.dma_maps(&mut mem)?;
    let (mut contexts, mut context_names) = l.contexts()?;
    for (p, d) in procs.iter_mut().zip(&sc.processes) {
        if context_names.contains(&p.name) {
            return Err(Located::new(
                d.name.span,
                format!("`{}` names both a context and a process", p.name),
            ));
        }
        // A process is a stage-1 context every CPU may walk.
        p.ctx = contexts.len();
        contexts.push(Context {
            regime: Regime::El10,
            asid: p.asid,
            vmid: 0,
            s1: Some(StageConfig::new(Granule::K4, p.root)),
            s2: None,
        });
        context_names.push(p.name.clone());
    }
    if let Some(parts) = &mut smmu {
        l.smmu_structures(parts, &contexts, &context_names, &mut mem)?;
    }
    let device_names: Vec<String> = sc.devices.iter().map(|d| d.name.value.clone()).collect();
    let defaults = Bounds::default();
    let bounds = Bounds {
        max_depth: sc.bounds.depth.unwrap_or(defaults.max_depth),
        max_states: sc.bounds.states.unwrap_or(defaults.max_states),
        ..defaults
    };
    // A mirror's shadow table is walked by its device alone: the CPUs do
    // not run it.
    let cpu_contexts: Vec<Context> = contexts
        .iter()
        .zip(&context_names)
        .filter(|(_, n)| !procs.iter().any(|p| &p.name == *n && p.mirror.is_some()))
        // A DMA domain's io-pgtable is walked by the SMMU alone.
        .filter(|(_, n)| !l.is_dma_context(n))
        .map(|(c, _)| *c)
        .collect();
    let mut machine = Machine::new(mem, sc.machine.cpus, cpu_contexts);
    if let Some(p) = smmu {
        let smmu = Smmu::new(p.opts, p.strtab, p.cmdq, p.evtq, p.devices, &machine.mem);
        machine.attach_smmu(smmu);
    }
    let features = Features {
        tlbirange: sc.machine.tlbirange,
        ttl: sc.machine.ttl,
        smmu_ril: sc.smmu.as_ref().is_some_and(|d| d.ril),
    };
    let mut b = ModelBuilder::new(sc.name.value.clone(), machine, features);
    for (ctx, name) in contexts.into_iter().zip(context_names.iter()) {
        b.context(name.clone(), ctx);
    }
    let kernel = l.kernel(&mut procs, &device_names, &b.machine().mem)?;
    if let Some(k) = &kernel {
        b.locks(k.locks());
        b.counters(k.counters());
        b.seqcounts(k.seqcounts());
    }
    let dma_counters = kernel.as_ref().map_or(0, |k| k.counters());
    let domains = l.dma_domains(dma_counters)?;
    if !domains.is_empty() {
        b.counters(dma_counters + 2 * domains.len());
    }
    l.threads(
        &mut b,
        &context_names,
        &device_names,
        kernel.as_ref(),
        &domains,
    )?;
    let model = b
        .build()
        .map_err(|e| Located::new(sc.name.span, e.to_string()))?;
    Ok((model, bounds))
}

/// A builder refusal, located at the statement that caused it.
fn at(span: Span) -> impl Fn(BuildError) -> Located {
    move |e| Located::new(span, e.to_string())
}

impl Lower<'_> {
    fn place_frames(&mut self) -> R<PhysMem> {
        let pool = &self.sc.pool;
        let first = pool.base >> 12;
        let end = first + u64::from(pool.frames);
        let mut mem = PhysMem::new(Pfn(first), pool.frames);
        let mut taken: HashMap<u64, String> = HashMap::new();
        let per_page = (self.granule.size() / FRAME_SIZE) as u32;
        for f in &self.sc.frames {
            if self.frames.contains_key(&f.name.value) {
                return Err(Located::new(
                    f.name.span,
                    format!("frame `{}` is declared twice", f.name.value),
                ));
            }
            let n = f.frames.as_ref().map_or(per_page, |c| c.value);
            let owner = owner_of(&f.owner);
            let base_pfn = match &f.at {
                Some(at) => {
                    let pfn = at.value >> 12;
                    let is_table = matches!(owner, FrameOwner::Table { .. });
                    if is_table && at.value % self.granule.size() != 0 {
                        return Err(Located::new(
                            at.span,
                            format!(
                                "a {} table must be aligned to {:#x}",
                                self.granule,
                                self.granule.size()
                            ),
                        ));
                    }
                    if pfn < first || pfn + u64::from(n) > end {
                        return Err(Located::new(
                            at.span,
                            format!(
                                "frame `{}` at {:#x} is outside the pool [{:#x}, {:#x})",
                                f.name.value,
                                at.value,
                                first << 12,
                                end << 12
                            ),
                        )
                        .with_help("move it, or enlarge the pool with `pool base=PA frames=N`"));
                    }
                    for p in pfn..pfn + u64::from(n) {
                        if let Some(other) = taken.get(&p) {
                            return Err(Located::new(
                                at.span,
                                format!(
                                    "frame `{}` overlaps frame `{other}` at {:#x}",
                                    f.name.value,
                                    p << 12
                                ),
                            ));
                        }
                    }
                    pfn
                }
                None => self.free_run(&mem, n).ok_or_else(|| {
                    Located::new(
                        f.span,
                        format!("no room for frame `{}` in the pool", f.name.value),
                    )
                    .with_help("enlarge the pool with `pool base=PA frames=N`")
                })?,
            };
            for p in base_pfn..base_pfn + u64::from(n) {
                taken.insert(p, f.name.value.clone());
                mem.claim(Pfn(p), owner)
                    .map_err(|e| Located::new(f.span, e.to_string()))?;
            }
            self.frames.insert(
                f.name.value.clone(),
                Placed {
                    base: base_pfn << 12,
                    frames: n,
                    owner,
                },
            );
        }
        Ok(mem)
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

    /// Resolves a location to a word address, with the table it lies in (if
    /// it names a table frame) for descriptor checks.
    fn location(&self, at: &Location) -> R<Resolved> {
        match at {
            Location::Pa(pa) => {
                if pa.value & 7 != 0 {
                    return Err(Located::new(
                        pa.span,
                        format!(
                            "{:#x} is not 8-byte aligned: descriptors are 64-bit words",
                            pa.value
                        ),
                    ));
                }
                Ok((pa.value, None, pa.span))
            }
            Location::Index { frame, index } => {
                let f = self.frame(&frame.value, frame.span)?;
                let table = f.table();
                let limit = match table {
                    Some((owner, level)) => {
                        let stage = match owner {
                            TableOwner::Stage1 { .. } => TableStage::S1,
                            TableOwner::Stage2 { .. } => TableStage::S2,
                        };
                        let start = start_level(stage, self.granule);
                        self.granule
                            .table_entries(start, level)
                            .min(u64::from(f.frames) * FRAME_SIZE / 8)
                    }
                    None => u64::from(f.frames) * FRAME_SIZE / 8,
                };
                if index.value >= limit {
                    return Err(Located::new(
                        index.span,
                        format!(
                            "index {} is out of range: `{}` holds {limit} descriptors",
                            index.value, frame.value
                        ),
                    ));
                }
                Ok((f.base + 8 * index.value, table, frame.span.to(index.span)))
            }
        }
    }

    fn write(&self, at: &Location, value: &Spanned<DescExpr>) -> R<(u64, u64)> {
        let (pa, table_of, _) = self.location(at)?;
        let level = table_of.map(|(_, l)| l);
        let stage2 = table_of.map(|(o, _)| matches!(o, TableOwner::Stage2 { .. }));
        let g = self.granule;
        let mismatch = |what: &str| Located::new(value.span, what.to_string());
        let aligned = |r: &Spanned<AddrRef>, shift: u32, what: &str| -> R<u64> {
            let a = self.addr(r)?;
            if a & ((1u64 << shift) - 1) != 0 {
                return Err(Located::new(
                    r.span,
                    format!("{what} {a:#x} is not aligned to {:#x}", 1u64 << shift),
                ));
            }
            Ok(a)
        };
        let v = match &value.value {
            DescExpr::Raw(n) => *n,
            DescExpr::Table(t) => {
                if level == Some(3) {
                    return Err(mismatch(
                        "a level-3 table holds pages, not table descriptors",
                    ));
                }
                table(aligned(t, g.shift(), "table address")?)
            }
            DescExpr::S1 {
                block,
                target,
                writable,
                user,
                ng,
                extra,
                noaf,
            } => {
                if stage2 == Some(true) {
                    return Err(mismatch(
                        "a stage-1 descriptor in a stage-2 table: use s2page / s2block",
                    ));
                }
                let shift = self.leaf_shift(*block, level, value.span)?;
                let out = aligned(target, shift, "output address")?;
                let d = if *block {
                    s1_block(out, *writable, *user, !*ng)
                } else {
                    s1_page(out, *writable, *user, !*ng)
                };
                strip_af(d | extra, *noaf)
            }
            DescExpr::S2 {
                block,
                target,
                read,
                write,
                extra,
                noaf,
            } => {
                if stage2 == Some(false) {
                    return Err(mismatch(
                        "a stage-2 descriptor in a stage-1 table: use page / block",
                    ));
                }
                let shift = self.leaf_shift(*block, level, value.span)?;
                let out = aligned(target, shift, "output address")?;
                let d = if *block {
                    s2_block(out, *read, *write)
                } else {
                    s2_page(out, *read, *write)
                };
                strip_af(d | extra, *noaf)
            }
            DescExpr::L1Cd(t) => {
                if table_of.is_some() {
                    return Err(mismatch(
                        "an L1CD belongs in an `smmu` frame (an L1 CD table), not a translation table",
                    ));
                }
                // L2Ptr is bits [55:12]: a level-2 CD table is 4 KiB aligned.
                L1Cd {
                    valid: true,
                    l2ptr: aligned(t, 12, "level-2 CD table")?,
                }
                .encode()
            }
        };
        Ok((pa, v))
    }

    /// The alignment of a leaf's output, checking that the leaf kind is
    /// permitted at the table's level.
    fn leaf_shift(&self, block: bool, level: Option<u8>, span: Span) -> R<u32> {
        let g = self.granule;
        match (block, level) {
            (false, Some(l)) if l != 3 => Err(Located::new(
                span,
                format!("a page descriptor belongs in a level-3 table, not level {l}"),
            )
            .with_help("use `block` for a level-1/2 leaf, or `table` to point at the next level")),
            (true, Some(l)) if !g.block_allowed(l) => Err(Located::new(
                span,
                format!("the {g} granule has no block descriptors at level {l}"),
            )),
            (true, Some(l)) => Ok(g.level_shift(l)),
            _ => Ok(g.shift()),
        }
    }

    fn contexts(&self) -> R<(Vec<Context>, Vec<String>)> {
        let g = self.granule;
        let mut out = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for c in &self.sc.contexts {
            if names.contains(&c.name.value) {
                return Err(Located::new(
                    c.name.span,
                    format!("context `{}` is declared twice", c.name.value),
                ));
            }
            let root = |r: &Spanned<AddrRef>, stage: TableStage| -> R<StageConfig> {
                // A named table frame must serve the level the walk starts at
                // (level 1 for a 16K stage 2: Arm ARM D8.2.9).
                if let AddrRef::Frame { name, .. } = &r.value {
                    if let Some((_, level)) = self.frame(name, r.span)?.table() {
                        let start = start_level(stage, g);
                        if level != start {
                            return Err(Located::new(
                                r.span,
                                format!(
                                    "`{name}` is a level-{level} table, but a {g} {} walk starts at level {start}",
                                    if stage == TableStage::S1 { "stage-1" } else { "stage-2" }
                                ),
                            ));
                        }
                    }
                }
                let a = self.addr(r)?;
                if a % g.size() != 0 {
                    return Err(Located::new(
                        r.span,
                        format!("root {a:#x} is not aligned to the {g} granule"),
                    ));
                }
                Ok(StageConfig::new(g, a))
            };
            let ctx = match &c.kind {
                ContextKind::Stage1 {
                    asid,
                    vmid,
                    root: r,
                } => Context {
                    regime: Regime::El10,
                    asid: *asid,
                    vmid: *vmid,
                    s1: Some(root(r, TableStage::S1)?),
                    s2: None,
                },
                ContextKind::Stage2 { vmid, root: r } => Context {
                    regime: Regime::El10,
                    asid: 0,
                    vmid: *vmid,
                    s1: None,
                    s2: Some(root(r, TableStage::S2)?),
                },
                ContextKind::Nested {
                    asid,
                    vmid,
                    root: r,
                    s2root,
                } => Context {
                    regime: Regime::El10,
                    asid: *asid,
                    vmid: *vmid,
                    s1: Some(root(r, TableStage::S1)?),
                    s2: Some(root(s2root, TableStage::S2)?),
                },
            };
            out.push(ctx);
            names.push(c.name.value.clone());
        }
        Ok((out, names))
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

    fn threads(
        &self,
        b: &mut ModelBuilder,
        ctx_names: &[String],
        dev_names: &[String],
        kernel: Option<&Arc<Kernel>>,
        domains: &dma::Domains,
    ) -> R<()> {
        let sc = self.sc;
        if sc.threads.len() > MAX_THREADS {
            return Err(Located::new(
                sc.threads[MAX_THREADS].span,
                format!("at most {MAX_THREADS} threads"),
            ));
        }
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
            tb.vmid(t.vmid).owns(t.owns.clone());
            let mut kops: Vec<(usize, KOp)> = Vec::new();
            let mut dmas: Vec<(usize, DmaStep)> = Vec::new();
            for s in &t.steps {
                let here = at(s.span);
                match &s.value {
                    Step::Store { at: loc, value } => {
                        let (pa, value) = self.write(loc, value)?;
                        tb.store(Pa(pa), value).map_err(here)?;
                    }
                    Step::Tlbi { tlbi, operand } => self.tlbi(&mut tb, tlbi, operand)?,
                    Step::Dsb(kind) => tb.dsb(*kind),
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
                    Step::SmmuCmd(_)
                    | Step::CmdSync
                    | Step::DeviceAccess(_)
                    | Step::Resume(_)
                    | Step::AwaitFault(_)
                    | Step::RelyConfig(_) => {
                        self.smmu_step(&mut tb, &s.value, s.span, dev_names)?
                    }
                    Step::Kernel(ks) => kops.push((tb.len(), self.kop(ks, s.span, kernel)?)),
                    Step::Dma(d) => dmas.push((tb.len(), d.clone())),
                }
            }
            if !dmas.is_empty() {
                let program = self.dma_program(t, domains, tb.into_ops(), dmas)?;
                b.program(t.name.value.clone(), t.cpu.value, program, t.owns.clone())
                    .map_err(at(t.cpu.span))?;
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
        let (op, written) = match &operand.value {
            TlbiOperandExpr::None => (TlbiOperand::None, String::new()),
            TlbiOperandExpr::Raw(x) => {
                let op = ins
                    .decode(*x)
                    .map_err(|e| Located::new(operand.span, e.to_string()))?;
                (op, format!(" {x:#018x}"))
            }
            TlbiOperandExpr::Fields(fields) => {
                let kv = Field::pairs(fields);
                let built = tlbi_from_fields(ins, &kv, self.granule)
                    .map_err(|e| Field::locate(fields, e, operand.span))?;
                let text: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (
                    built.operand,
                    format!(" {} ({:#018x})", text.join(" "), built.raw),
                )
            }
        };
        tb.tlbi(ins, op, format!("{ins}{written}")).map_err(|e| {
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
        }
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
    ) -> R<Option<Arc<Kernel>>> {
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
        Ok(Some(Arc::new(Kernel {
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
        })))
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
            KernelStepKind::WriteFault => KOp::WriteFault { p, va: addr },
            KernelStepKind::Reclaim => KOp::Reclaim { p, va: addr },
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

fn proc_index(names: &[String], p: &Spanned<String>) -> R<usize> {
    index_of(names, p, "process", "process NAME asid=N")
}

fn strip_af(d: u64, noaf: bool) -> u64 {
    if noaf {
        d & !bits::AF
    } else {
        d
    }
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

/// Bytes of a 2-level Stream table's level-1 array: one L1STD per 2^split
/// StreamIDs (at least one).
fn l1_bytes(log2size: u8, split: u8) -> u64 {
    8 << log2size.saturating_sub(split)
}

/// 4 KiB frames needed for `bytes`.
fn frames_for(bytes: u64) -> u32 {
    bytes.div_ceil(FRAME_SIZE).max(1) as u32
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

    /// The first run of `n` free pool frames, aligned to `n` rounded up to
    /// a power of two (structures are aligned to their size): its first PFN.
    fn free_run(&self, mem: &PhysMem, n: u32) -> Option<u64> {
        let pool = &self.sc.pool;
        let first = pool.base >> 12;
        let end = first + u64::from(pool.frames);
        let align = u64::from(n.next_power_of_two());
        let mut p = first.div_ceil(align) * align;
        while p + u64::from(n) <= end {
            if (p..p + u64::from(n)).all(|q| mem.owner(Pfn(q)) == FrameOwner::Free) {
                return Some(p);
            }
            p += align;
        }
        None
    }

    /// Claims a [`free_run`](Self::free_run) for an SMMU structure the
    /// scenario did not place.
    fn auto_frames(&self, mem: &mut PhysMem, n: u32, what: &str, span: Span) -> R<u64> {
        let Some(p) = self.free_run(mem, n) else {
            return Err(Located::new(
                span,
                format!("no room in the pool for the SMMU's {what} ({n} frame(s))"),
            )
            .with_help(
                "enlarge the pool with `pool base=PA frames=N`, or place it with at=FRAME",
            ));
        };
        for q in p..p + u64::from(n) {
            mem.claim(Pfn(q), FrameOwner::Smmu)
                .map_err(|e| Located::new(span, e.to_string()))?;
        }
        Ok(p << 12)
    }

    /// A frame named by `at=`: it must be an `smmu` frame of at least
    /// `bytes`, aligned to `align`.
    fn smmu_frame(&self, name: &Spanned<String>, bytes: u64, align: u64, what: &str) -> R<u64> {
        let f = self.frame(&name.value, name.span)?;
        if f.owner != FrameOwner::Smmu {
            return Err(Located::new(
                name.span,
                format!(
                    "the {what} must live in an `smmu` frame, but `{}` is owned by {}",
                    name.value, f.owner
                ),
            )
            .with_help(format!("declare it with `frame {} smmu`", name.value)));
        }
        let size = u64::from(f.frames) * FRAME_SIZE;
        if size < bytes {
            return Err(Located::new(
                name.span,
                format!(
                    "the {what} needs {bytes:#x} bytes but `{}` holds {size:#x}",
                    name.value
                ),
            )
            .with_help("give the frame frames=N"));
        }
        if f.base % align != 0 {
            return Err(Located::new(
                name.span,
                format!(
                    "the {what} must be aligned to {align:#x}; `{}` is at {:#x}",
                    name.value, f.base
                ),
            ));
        }
        Ok(f.base)
    }

    /// Options, Stream table registers, queues and devices: everything
    /// whose placement must be known before the set-up writes.
    fn smmu_registers(&self, decl: &SmmuDecl, mem: &mut PhysMem) -> R<SmmuParts> {
        let sc = self.sc;
        let opts = SmmuOptions {
            features: SmmuFeatures {
                ats: decl.ats,
                ..SmmuFeatures::MODEL
            },
            btm: decl.btm,
            // Without BTM the SMMU cannot take part in broadcast
            // maintenance; with it, Linux leaves PTM clear so it does.
            ptm: !decl.btm,
            e2h: false,
        };
        let max_sid = sc
            .stes
            .iter()
            .map(|s| s.sid.value)
            .chain(sc.devices.iter().map(|d| d.sid.value))
            .max()
            .unwrap_or(0);
        let needed = (32 - max_sid.leading_zeros()) as u8;
        let (split, span, at) = match &sc.stream {
            Some(d) => (d.split, d.span, d.at.as_ref()),
            None => (None, decl.span, None),
        };
        let log2size = match sc.stream.as_ref().and_then(|d| d.log2size.as_ref()) {
            Some(l) => {
                if needed > l.value {
                    return Err(Located::new(
                        l.span,
                        format!(
                            "log2size={} covers StreamIDs below {}, but StreamID {max_sid} is used",
                            l.value,
                            1u64 << l.value
                        ),
                    ));
                }
                l.value
            }
            None => needed.max(split.unwrap_or(0)),
        };
        let (fmt, bytes) = match split {
            None => (StrtabFmt::Linear, STRUCT_BYTES << log2size),
            Some(split) => (StrtabFmt::TwoLevel { split }, l1_bytes(log2size, split)),
        };
        let base = match at {
            Some(name) => self.smmu_frame(name, bytes, bytes.max(64), "Stream table")?,
            None => self.auto_frames(mem, frames_for(bytes), "Stream table", span)?,
        };
        let mut ring = |kind: QueueKind| -> R<(u64, u8)> {
            let decls: Vec<&QueueDecl> = sc.queues.iter().filter(|q| q.kind == kind).collect();
            if let Some(second) = decls.get(1) {
                return Err(Located::new(second.span, "this queue is placed twice"));
            }
            let (entry, default_log2, what) = match kind {
                QueueKind::Cmd => (16u64, CMDQ_LOG2, "Command queue"),
                QueueKind::Event => (32u64, EVTQ_LOG2, "Event queue"),
            };
            let d = decls.first();
            let log2 = d
                .and_then(|d| d.log2size.as_ref())
                .map_or(default_log2, |l| l.value);
            let bytes = entry << log2;
            // SMMU_CMDQ_BASE / EVENTQ_BASE: the ring is aligned to its size
            // (at least 32 bytes).
            let base = match d.and_then(|d| d.at.as_ref()) {
                Some(name) => self.smmu_frame(name, bytes, bytes.max(32), what)?,
                None => self.auto_frames(
                    mem,
                    frames_for(bytes),
                    what,
                    d.map_or(decl.span, |d| d.span),
                )?,
            };
            Ok((base, log2))
        };
        let (cq, cq_log2) = ring(QueueKind::Cmd)?;
        let (eq, eq_log2) = ring(QueueKind::Event)?;
        let mut devices = Vec::new();
        for (i, d) in sc.devices.iter().enumerate() {
            if sc.devices[..i].iter().any(|o| o.name.value == d.name.value) {
                return Err(Located::new(
                    d.name.span,
                    format!("device `{}` is declared twice", d.name.value),
                ));
            }
            if d.ats && !decl.ats {
                return Err(
                    Located::new(d.span, "an ATS device, but the SMMU lacks ATS")
                        .with_help("add `ats` to the smmu statement"),
                );
            }
            if d.pri && !(decl.pri && d.ats) {
                return Err(Located::new(
                    d.span,
                    "PRI needs ATS on the device and `pri` and `ats` on the smmu statement",
                ));
            }
            devices.push(Device::new(
                d.sid.value,
                d.ssid.as_ref().map(|s| s.value),
                d.ats,
                d.pri,
            ));
        }
        Ok(SmmuParts {
            opts,
            strtab: StrtabConfig {
                base,
                log2size,
                fmt,
            },
            cmdq: CmdQueue::new(cq, cq_log2),
            evtq: EventQueue::new(eq, eq_log2),
            devices,
        })
    }

    /// Resolves `ttb0=` / `s2root=`: a context's root (stage 1 for `ttb0`,
    /// stage 2 for `s2root`), else a frame or an address.
    fn root_of(
        &self,
        r: &Spanned<AddrRef>,
        contexts: &[tlbcheck_hw::vmsa::Context],
        names: &[String],
        stage2: bool,
    ) -> R<u64> {
        if let AddrRef::Frame { name, offset: 0 } = &r.value {
            if let Some(i) = names.iter().position(|n| n == name) {
                let c = &contexts[i];
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
        if a % self.granule.size() != 0 {
            return Err(Located::new(
                r.span,
                format!(
                    "table {a:#x} is not aligned to the {} granule",
                    self.granule
                ),
            ));
        }
        Ok(a)
    }

    /// Writes every STE (and, for a 2-level table, the L1STDs and level-2
    /// arrays) and every CD; each readable structure is checked with the
    /// hardware model's own validity rules, so the SMMU never sees a
    /// `C_BAD_STE` / `C_BAD_CD` the scenario did not ask for (raw writes
    /// can still build one).
    fn smmu_structures(
        &self,
        parts: &mut SmmuParts,
        contexts: &[tlbcheck_hw::vmsa::Context],
        names: &[String],
        mem: &mut PhysMem,
    ) -> R<()> {
        let sc = self.sc;
        let decl = sc.smmu.as_ref().expect("called with an SMMU");
        let f = parts.opts.features;
        let st = parts.strtab;
        let mut l2: HashMap<u64, u64> = HashMap::new();
        let mut seen: HashMap<u32, Span> = HashMap::new();
        let write8 = |mem: &mut PhysMem, pa: u64, w: &[u64; 8], span: Span| -> R<()> {
            for (i, v) in w.iter().enumerate() {
                mem.write(Pa(pa + 8 * i as u64), *v)
                    .map_err(|e| Located::new(span, e.to_string()))?;
            }
            Ok(())
        };
        for d in &sc.stes {
            let sid = d.sid.value;
            if seen.insert(sid, d.span).is_some() {
                return Err(Located::new(
                    d.sid.span,
                    format!("StreamID {sid} has two `ste` statements"),
                ));
            }
            let slot = match st.fmt {
                StrtabFmt::Linear => st.base + STRUCT_BYTES * u64::from(sid),
                StrtabFmt::TwoLevel { split } => {
                    let idx = u64::from(sid >> split);
                    let arr = match l2.get(&idx) {
                        Some(a) => *a,
                        None => {
                            let bytes = STRUCT_BYTES << split;
                            let a = self.auto_frames(
                                mem,
                                frames_for(bytes),
                                "level-2 Stream table array",
                                d.span,
                            )?;
                            let l1 = L1Std {
                                span: split + 1,
                                l2ptr: a,
                            };
                            mem.write(Pa(st.base + 8 * idx), l1.encode())
                                .map_err(|e| Located::new(d.span, e.to_string()))?;
                            l2.insert(idx, a);
                            a
                        }
                    };
                    arr + STRUCT_BYTES * u64::from(sid & ((1 << split) - 1))
                }
            };
            let mut ste = match d.config {
                SteConfig::Invalid => {
                    write8(mem, slot, &Ste::INVALID, d.span)?;
                    continue;
                }
                SteConfig::Abort => {
                    let mut s = Ste::bypass();
                    s.config = StreamConfig::Abort;
                    s
                }
                SteConfig::Bypass => Ste::bypass(),
                SteConfig::S1 => Ste::bypass(),
                SteConfig::S2 | SteConfig::Nested => {
                    let r = d.s2root.as_ref().expect("the parser requires s2root");
                    let root = self.root_of(r, contexts, names, true)?;
                    Ste::stage2(d.vmid, root, self.granule)
                }
            };
            ste.s2_vmid = d.vmid;
            if let Some(cd) = &d.cd {
                let a = self.addr(cd)?;
                // S1ContextPtr is bits [55:6]; an L1CD table or CD is 64-byte aligned.
                if a % 64 != 0 {
                    return Err(Located::new(
                        cd.span,
                        format!("the CD pointer {a:#x} is not 64-byte aligned"),
                    ));
                }
                ste.config = if d.config == SteConfig::Nested {
                    StreamConfig::Nested
                } else {
                    StreamConfig::S1Translate
                };
                ste.s1_context_ptr = a;
            }
            ste.s1_fmt = d.s1fmt;
            ste.s1_cd_max = d.s1cdmax;
            ste.s1_dss = d.s1dss;
            ste.s1_stalld = d.s1stalld;
            ste.s2_s = d.s2stall;
            ste.eats = d.eats;
            if d.eats != 0 && !decl.ats {
                return Err(Located::new(d.span, "EATS is set but the SMMU lacks ATS")
                    .with_help("add `ats` to the smmu statement"));
            }
            if d.s2stall && !decl.stall {
                return Err(Located::new(d.span, "s2stall needs the SMMU's stall model")
                    .with_help("add `stall` to the smmu statement"));
            }
            ste.validate(&f)
                .map_err(|e| Located::new(d.span, format!("this STE is ILLEGAL: {e}")))?;
            write8(mem, slot, &ste.encode(), d.span)?;
        }
        for d in &sc.cds {
            let fr = self.frame(&d.frame.value, d.frame.span)?;
            if fr.owner != FrameOwner::Smmu {
                return Err(Located::new(
                    d.frame.span,
                    format!(
                        "a CD table must be an `smmu` frame, but `{}` is owned by {}",
                        d.frame.value, fr.owner
                    ),
                )
                .with_help(format!("declare it with `frame {} smmu`", d.frame.value)));
            }
            let slots = u64::from(fr.frames) * FRAME_SIZE / STRUCT_BYTES;
            if d.slot.value >= slots {
                return Err(Located::new(
                    d.slot.span,
                    format!(
                        "slot {} is out of range: `{}` holds {slots} CDs",
                        d.slot.value, d.frame.value
                    ),
                ));
            }
            let pa = fr.base + STRUCT_BYTES * d.slot.value;
            if d.invalid {
                write8(mem, pa, &Cd::INVALID, d.span)?;
                continue;
            }
            let ctx = match &d.ctx {
                Some(c) => Some(contexts[ctx_index(names, c)?]),
                None => None,
            };
            let asid = match (&d.asid, ctx) {
                (Some(a), _) => a.value,
                (None, Some(c)) => c.asid,
                (None, None) => unreachable!("the parser requires asid= or ctx="),
            };
            let ttb0 = match (&d.ttb0, ctx, &d.ctx) {
                (Some(r), _, _) => self.root_of(r, contexts, names, false)?,
                (None, Some(c), Some(name)) => c.s1.map(|s| s.ttb).ok_or_else(|| {
                    Located::new(
                        name.span,
                        format!("context `{}` has no stage 1", name.value),
                    )
                })?,
                _ => unreachable!("the parser requires ttb0= or ctx="),
            };
            let mut cd = Cd::new(asid, ttb0, d.granule.unwrap_or(self.granule));
            if d.stall && !decl.stall {
                return Err(
                    Located::new(d.span, "a stalling CD needs the SMMU's stall model")
                        .with_help("add `stall` to the smmu statement"),
                );
            }
            cd.s = d.stall;
            cd.aset = d.aset;
            cd.validate(&f, &CdContext::default())
                .map_err(|e| Located::new(d.span, format!("this CD is ILLEGAL: {e}")))?;
            write8(mem, pa, &cd.encode(), d.span)?;
        }
        // Devices whose StreamID has no STE would only ever see
        // C_BAD_STE/C_BAD_STREAMID: almost certainly a typo.
        for d in &sc.devices {
            if !seen.contains_key(&d.sid.value) {
                return Err(Located::new(
                    d.sid.span,
                    format!(
                        "device `{}` uses StreamID {} but no `ste {}` describes it",
                        d.name.value, d.sid.value, d.sid.value
                    ),
                )
                .with_help(format!("add e.g. `ste {} bypass`", d.sid.value)));
            }
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
                let help = if matches!(c, Command::AtcInv { .. }) {
                    "add `ats` to the smmu statement"
                } else {
                    "add `ril` to the smmu statement (SMMU_IDR3.RIL)"
                };
                here(e).with_help(help)
            }),
            Step::CmdSync => tb.smmu_sync(&sva::cmd_sync()).map_err(here),
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
