//! Lowering: a parsed scenario becomes a checker [`Model`]. Frames are
//! claimed from the pool, set-up descriptors written, contexts built, and
//! every step turned into an [`Op`]; TLBI operands go through the hardware
//! model's decoder to an [`InvalScope`](tlbcheck_hw::tlb::InvalScope).
//!
//! Everything is validated here, before the model exists, so the checker's
//! own "validated at load time" assumptions hold: aligned stores, frames in
//! the pool, CPUs that exist, a pool large enough for every allocation.

use super::ast::*;
use crate::codec::tlbi_from_fields;
use crate::error::{Located, Span};
use std::collections::HashMap;
use tlbcheck_checker::model::{Bounds, Model, Op, Thread};
use tlbcheck_hw::addr::{Granule, Pa};
use tlbcheck_hw::cpu::tlbi::TlbiOperand;
use tlbcheck_hw::machine::Machine;
use tlbcheck_hw::mem::{FrameOwner, Pfn, PhysMem, TableOwner, FRAME_SIZE};
use tlbcheck_hw::tlb::Regime;
use tlbcheck_hw::vmsa::desc::{bits, s1_block, s1_page, s2_block, s2_page, table};
use tlbcheck_hw::vmsa::{Context, StageConfig};

type R<T> = Result<T, Located>;

/// A resolved store location: word address, the table it lies in (owner
/// and level) when it names a table frame, and its span.
type Resolved = (u64, Option<(TableOwner, u8)>, Span);

/// Most threads a model can have: RCU readers are a 32-bit mask.
pub const MAX_THREADS: usize = 32;

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

/// Builds the model and the bounds the scenario asks for.
pub fn lower(sc: &Scenario) -> R<(Model, Bounds)> {
    let mut l = Lower {
        sc,
        granule: sc.machine.granule,
        frames: HashMap::new(),
    };
    let mut mem = l.place_frames()?;
    for w in &sc.writes {
        let (pa, value) = l.write(&w.at, &w.value)?;
        mem.write(Pa(pa), value)
            .map_err(|e| Located::new(w.span, e.to_string()))?;
    }
    let (contexts, context_names) = l.contexts()?;
    let threads = l.threads(&context_names, &mem)?;
    let defaults = Bounds::default();
    let bounds = Bounds {
        max_depth: sc.bounds.depth.unwrap_or(defaults.max_depth),
        max_states: sc.bounds.states.unwrap_or(defaults.max_states),
    };
    let machine = Machine::new(mem, sc.machine.cpus, contexts.clone());
    Ok((
        Model {
            name: sc.name.value.clone(),
            machine,
            threads,
            contexts,
            context_names,
        },
        bounds,
    ))
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
                None => {
                    // The first run of `n` free frames, aligned to `n`.
                    let align = u64::from(n.next_power_of_two());
                    let mut p = first.div_ceil(align) * align;
                    loop {
                        if p + u64::from(n) > end {
                            return Err(Located::new(
                                f.span,
                                format!("no room for frame `{}` in the pool", f.name.value),
                            )
                            .with_help("enlarge the pool with `pool base=PA frames=N`"));
                        }
                        if (p..p + u64::from(n)).all(|q| !taken.contains_key(&q)) {
                            break p;
                        }
                        p += align;
                    }
                }
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
                    Some((_, level)) => self
                        .granule
                        .entries_at(level)
                        .min(u64::from(f.frames) * FRAME_SIZE / 8),
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
            let root = |r: &Spanned<AddrRef>| -> R<StageConfig> {
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
                    s1: Some(root(r)?),
                    s2: None,
                },
                ContextKind::Stage2 { vmid, root: r } => Context {
                    regime: Regime::El10,
                    asid: 0,
                    vmid: *vmid,
                    s1: None,
                    s2: Some(root(r)?),
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
                    s1: Some(root(r)?),
                    s2: Some(root(s2root)?),
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

    fn threads(&self, ctx_names: &[String], mem: &PhysMem) -> R<Vec<Thread>> {
        let sc = self.sc;
        if sc.threads.len() > MAX_THREADS {
            return Err(Located::new(
                sc.threads[MAX_THREADS].span,
                format!("at most {MAX_THREADS} threads"),
            ));
        }
        let mut out = Vec::new();
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
            if t.cpu.value >= sc.machine.cpus {
                return Err(Located::new(
                    t.cpu.span,
                    format!(
                        "CPU {} does not exist: the machine has {} CPU(s)",
                        t.cpu.value, sc.machine.cpus
                    ),
                )
                .with_help("raise `cpus=` in the machine statement"));
            }
            let mut ops = Vec::new();
            for s in &t.steps {
                match &s.value {
                    Step::Store { at, value } => {
                        let (pa, value) = self.write(at, value)?;
                        ops.push(Op::Store { pa: Pa(pa), value });
                    }
                    Step::Tlbi { tlbi, operand } => ops.push(self.tlbi(t, tlbi, operand)?),
                    Step::Dsb(kind) => ops.push(Op::Dsb { kind: *kind }),
                    Step::Free(r) => {
                        for frame in self.frames_of(r)? {
                            frees += 1;
                            ops.push(Op::Free { frame });
                        }
                    }
                    Step::CallRcuFree(r) => {
                        for frame in self.frames_of(r)? {
                            frees += 1;
                            ops.push(Op::CallRcuFree { frame });
                        }
                    }
                    Step::Alloc(o) => {
                        allocs += 1;
                        ops.push(Op::Alloc { owner: owner_of(o) });
                    }
                    Step::RcuLock => ops.push(Op::RcuLock),
                    Step::RcuUnlock => ops.push(Op::RcuUnlock),
                    Step::SynchronizeRcu => ops.push(Op::SynchronizeRcu),
                    Step::RelyReadOnly { ctx, va } => ops.push(Op::RelyReadOnly {
                        ctx: ctx_index(ctx_names, ctx)?,
                        va: *va,
                    }),
                    Step::Retry { write, ctx, va } => ops.push(Op::Retry {
                        ctx: ctx_index(ctx_names, ctx)?,
                        va: *va,
                        write: *write,
                    }),
                    Step::SmmuCmd(_) | Step::CmdSync | Step::DeviceAccess(_) | Step::Resume(_) => {
                        if sc.smmu.is_none() {
                            return Err(Located::new(
                                s.span,
                                "an SMMU step, but the machine has no SMMU",
                            )
                            .with_help("add an `smmu` statement (e.g. `smmu btm ats`)"));
                        }
                        return Err(Located::new(
                            s.span,
                            "SMMU steps are not yet supported by tlbcheck scenarios: they parse, but the scenario language cannot yet describe the SMMU set-up (stream table, STE/CD, queues, devices) the checker needs to run them",
                        ));
                    }
                }
            }
            out.push(Thread {
                name: t.name.value.clone(),
                cpu: t.cpu.value,
                ops,
                owns_vmids: t.owns.clone(),
            });
        }
        let free_now = (0..sc.pool.frames)
            .filter(|i| mem.owner(Pfn((sc.pool.base >> 12) + u64::from(*i))) == FrameOwner::Free)
            .count();
        if allocs > free_now + frees {
            return Err(Located::new(
                if sc.pool.span.len > 0 { sc.pool.span } else { sc.name.span },
                format!(
                    "the threads allocate {allocs} frame(s) but the pool has only {free_now} free (plus {frees} freed by the threads)"
                ),
            )
            .with_help("enlarge the pool with `pool base=PA frames=N`"));
        }
        Ok(out)
    }

    fn tlbi(
        &self,
        t: &ThreadDecl,
        tlbi: &Spanned<tlbcheck_hw::cpu::tlbi::Tlbi>,
        operand: &Spanned<TlbiOperandExpr>,
    ) -> R<Op> {
        let m = &self.sc.machine;
        let ins = tlbi.value;
        if ins.is_range() && !m.tlbirange {
            return Err(Located::new(
                tlbi.span,
                format!("TLBI {ins} is a range operation, but the machine lacks FEAT_TLBIRANGE"),
            )
            .with_help("add `tlbirange` to the machine statement"));
        }
        let (_raw, op, written) = match &operand.value {
            TlbiOperandExpr::None => {
                if ins.takes_operand() {
                    return Err(Located::new(
                        tlbi.span,
                        format!("TLBI {ins} needs an operand: fields (asid= va= ...) or a raw 0x... value"),
                    ));
                }
                (0, TlbiOperand::None, String::new())
            }
            TlbiOperandExpr::Raw(x) => {
                let op = ins
                    .decode(*x)
                    .map_err(|e| Located::new(operand.span, e.to_string()))?;
                (*x, op, format!(" {x:#018x}"))
            }
            TlbiOperandExpr::Fields(fields) => {
                let kv: Vec<(String, String)> = fields
                    .iter()
                    .map(|f| (f.key.value.clone(), f.value.value.clone()))
                    .collect();
                let built = tlbi_from_fields(ins, &kv, self.granule).map_err(|e| {
                    let span = e.field.map_or(operand.span, |i| {
                        fields[i].key.span.to(fields[i].value.span)
                    });
                    Located::new(span, e.message)
                })?;
                let text: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (
                    built.raw,
                    built.operand,
                    format!(" {} ({:#018x})", text.join(" "), built.raw),
                )
            }
        };
        let non_range_hint = matches!(
            op,
            TlbiOperand::Va { ttl: Some(_), .. } | TlbiOperand::Ipa { ttl: Some(_), .. }
        );
        if non_range_hint && !m.ttl {
            return Err(Located::new(
                operand.span,
                format!("TLBI {ins} carries a TTL hint, but the machine lacks FEAT_TTL (the field is RES0 without it)"),
            )
            .with_help("add `ttl` to the machine statement, or drop the hint"));
        }
        Ok(Op::Tlbi {
            text: format!("{ins}{written}"),
            scope: ins.scope(&op, t.vmid),
            broadcast: ins.broadcast,
        })
    }
}

fn strip_af(d: u64, noaf: bool) -> u64 {
    if noaf {
        d & !bits::AF
    } else {
        d
    }
}

fn ctx_index(names: &[String], ctx: &Spanned<String>) -> R<usize> {
    names.iter().position(|n| *n == ctx.value).ok_or_else(|| {
        Located::new(ctx.span, format!("unknown context `{}`", ctx.value)).with_help(
            if names.is_empty() {
                "declare it with `context NAME stage1 asid=A root=FRAME`".to_string()
            } else {
                format!("declared contexts: {}", names.join(", "))
            },
        )
    })
}
