//! Lowering of the DMA API statements: `dma-domain` makes a stage-1
//! context a DMA domain walked by the SMMU alone, `dma-map` writes its
//! io-pgtable at set-up, and a thread's `dma unmap` / `dma flush` steps
//! run as [`DmaThread`] (`tlbcheck_protocols::linux::dma`).

use super::{Located, Lower, Span, R};
use crate::scenario::ast::{ContextKind, DmaStep, Step, ThreadDecl};
use std::sync::Arc;
use tlbcheck_checker::op::Op;
use tlbcheck_checker::sync::SyncId;
use tlbcheck_hw::addr::Pa;
use tlbcheck_hw::mem::{FrameOwner, PhysMem};
use tlbcheck_hw::vmsa::desc::s1_page;
use tlbcheck_protocols::linux::dma::{DmaOp, DmaThread, Domain, Item, Mode, GRANULE};
use tlbcheck_protocols::linux::mm::{index, prepare_tables};
use tlbcheck_protocols::linux::sva::SmmuFeatures;

/// IOVAs the DMA program can hold (its registers keep page numbers in 32
/// bits).
const IOVA_LIMIT: u64 = 1 << 44;

/// A lowered domain: its context's name and the driver's view of it.
pub(super) type Domains = Vec<(String, Arc<Domain>)>;

fn aligned(v: u64, span: Span, what: &str) -> R<()> {
    if v % GRANULE != 0 {
        return Err(Located::new(
            span,
            format!("{what} {v:#x} is not a multiple of 4 KiB"),
        ));
    }
    Ok(())
}

impl Lower<'_> {
    /// Whether context `name` is a DMA domain's (the CPUs do not walk it).
    pub(super) fn is_dma_context(&self, name: &str) -> bool {
        self.sc.dma_domains.iter().any(|d| d.context.value == name)
    }

    /// The stage-1 ASID and root of the domain on context `name`.
    fn dma_context(&self, name: &str, span: Span) -> R<(u16, u64)> {
        if !self.is_dma_context(name) {
            return Err(Located::new(span, format!("`{name}` is not a DMA domain"))
                .with_help("declare it with `dma-domain CONTEXT strict|lazy`"));
        }
        let c = self
            .sc
            .contexts
            .iter()
            .find(|c| c.name.value == name)
            .ok_or_else(|| Located::new(span, format!("unknown context `{name}`")))?;
        match &c.kind {
            ContextKind::Stage1 { asid, root, .. } => Ok((*asid, self.addr(root)?)),
            _ => Err(Located::new(
                span,
                format!("DMA domain `{name}` must be a stage-1 context"),
            )),
        }
    }

    /// `dma-map`: each 4 KiB page of the range gets a PTE to the next frame
    /// of FRAME (wrapping round its frames), the tables it needs from the
    /// pool.
    pub(super) fn dma_maps(&self, mem: &mut PhysMem) -> R<()> {
        for m in &self.sc.dma_maps {
            let (asid, root) = self.dma_context(&m.context.value, m.context.span)?;
            aligned(m.iova.value, m.iova.span, "IOVA")?;
            aligned(m.len.value, m.len.span, "length")?;
            if m.iova.value.saturating_add(m.len.value) > IOVA_LIMIT {
                return Err(Located::new(m.len.span, "the range ends above 2^44"));
            }
            let f = self.frame(&m.frame.value, m.frame.span)?;
            if !matches!(f.owner, FrameOwner::Data { .. }) {
                return Err(Located::new(
                    m.frame.span,
                    format!("`{}` is not a data frame", m.frame.value),
                ));
            }
            let (base, frames) = (f.base, u64::from(f.frames));
            for i in 0..m.len.value / GRANULE {
                let va = m.iova.value + i * GRANULE;
                let l3 = prepare_tables(mem, root, asid, va).map_err(|e| {
                    Located::new(m.span, e.to_string())
                        .with_help("enlarge the pool with `pool base=PA frames=N`")
                })?;
                let pte = s1_page(base + (i % frames) * GRANULE, true, true, false);
                mem.write(Pa(l3 + 8 * index(va, 3)), pte)
                    .map_err(|e| Located::new(m.span, e.to_string()))?;
            }
        }
        Ok(())
    }

    /// The domains, their flush-queue counters numbered from `counters`.
    pub(super) fn dma_domains(&self, counters: usize) -> R<Domains> {
        let smmu = self.sc.smmu.as_ref();
        let feat = SmmuFeatures {
            btm: false,
            ril: smmu.is_some_and(|s| s.ril),
            ats: smmu.is_some_and(|s| s.ats),
        };
        let mut out: Domains = Vec::new();
        for (i, d) in self.sc.dma_domains.iter().enumerate() {
            if out.iter().any(|(n, _)| *n == d.context.value) {
                return Err(Located::new(
                    d.context.span,
                    format!("`{}` is declared a DMA domain twice", d.context.value),
                ));
            }
            if smmu.is_none() {
                return Err(Located::new(d.span, "a DMA domain needs an `smmu`"));
            }
            let (asid, root) = self.dma_context(&d.context.value, d.context.span)?;
            let base = counters + 2 * i;
            let id = |n: usize| {
                SyncId::try_from(n).map_err(|_| Located::new(d.span, "too many DMA domains"))
            };
            out.push((
                d.context.value.clone(),
                Arc::new(Domain {
                    kernel: d.kernel,
                    mode: if d.lazy { Mode::Lazy } else { Mode::Strict },
                    feat,
                    asid,
                    root,
                    // The scenario's ATS devices are the domain's masters.
                    ats_sids: self
                        .sc
                        .devices
                        .iter()
                        .filter(|x| x.ats)
                        .map(|x| x.sid.value)
                        .collect(),
                    counters: (id(base)?, id(base + 1)?),
                }),
            ));
        }
        Ok(out)
    }

    /// The program of thread `t` whose steps `dmas` (at op positions) are
    /// DMA API operations, its other steps lowered to `ops`.
    pub(super) fn dma_program(
        &self,
        t: &ThreadDecl,
        domains: &Domains,
        ops: Vec<Op>,
        dmas: Vec<(usize, DmaStep)>,
    ) -> R<Arc<DmaThread>> {
        let mut domain: Option<&Arc<Domain>> = None;
        let mut lowered = Vec::new();
        for (at, s) in dmas {
            let d = domains
                .iter()
                .find(|(n, _)| *n == s.context.value)
                .map(|(_, d)| d)
                .ok_or_else(|| {
                    Located::new(
                        s.context.span,
                        format!("`{}` is not a DMA domain", s.context.value),
                    )
                    .with_help("declare it with `dma-domain CONTEXT strict|lazy`")
                })?;
            if domain.is_some_and(|x| !Arc::ptr_eq(x, d)) {
                return Err(Located::new(
                    s.context.span,
                    "a thread runs the DMA API of one domain",
                ));
            }
            domain = Some(d);
            let op = match s.unmap {
                Some((iova, len)) => {
                    aligned(iova.value, iova.span, "IOVA")?;
                    aligned(len.value, len.span, "length")?;
                    if iova.value.saturating_add(len.value) > IOVA_LIMIT {
                        return Err(Located::new(len.span, "the range ends above 2^44"));
                    }
                    let each = match s.each {
                        Some(e) => {
                            aligned(e.value, e.span, "buffer size")?;
                            if e.value == 0 || len.value % e.value != 0 {
                                return Err(Located::new(e.span, "each= must divide the length"));
                            }
                            e.value
                        }
                        None => len.value,
                    };
                    for i in 0..len.value.checked_div(each).unwrap_or(0) {
                        lowered.push((
                            at,
                            DmaOp::Unmap {
                                iova: iova.value + i * each,
                                size: each,
                            },
                        ));
                    }
                    continue;
                }
                None => DmaOp::FlushTimeout,
            };
            lowered.push((at, op));
        }
        let domain = domain.ok_or_else(|| Located::new(t.span, "no DMA step"))?;
        let mut items = Vec::new();
        let mut k = lowered.into_iter().peekable();
        for (i, op) in ops.into_iter().enumerate() {
            while let Some((_, d)) = k.next_if(|(at, _)| *at == i) {
                items.push(Item::Dma(d));
            }
            items.push(Item::Op(op));
        }
        items.extend(k.map(|(_, d)| Item::Dma(d)));
        if t.steps.iter().any(|s| matches!(s.value, Step::Kernel(_))) {
            return Err(Located::new(
                t.name.span,
                "a thread runs either kernel operations or DMA operations",
            ));
        }
        Ok(Arc::new(DmaThread::new(Arc::clone(domain), items)))
    }
}
