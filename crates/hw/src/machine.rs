//! The CPU side of a machine: memory, CPUs with their may-hold TLBs, and the
//! TLB maintenance in flight.
//!
//! Completion rules (Arm ARM, DDI 0487 issue M.a, D8.17.8, "Ordering and
//! completion of TLB maintenance instructions", and B2.6.9, "Data
//! Synchronization Barrier"):
//! - a descriptor store reaches table walkers only when the storing CPU
//!   executes a DSB (ISHST/ISH for every walker, NSHST/NSH for its own;
//!   D8.2.6.1, RSPVBD);
//! - a TLBI takes effect only when the issuing CPU executes DSB ISH (for the
//!   IS forms) or DSB NSH or stronger (for the local forms). DSB ISHST does
//!   not complete a TLBI (D8.17.8, RPSMWS: the DSB must apply to both loads
//!   and stores; B2.6.9 lists TLBI operations only for reads and writes).
//!   The model takes completion at the DSB; for the issuing PE's own TLB
//!   D8.17.8 RBLDZX also asks for a Context synchronization event unless
//!   FEAT_ETS2 covers the case;
//! - between issue and completion the TLBI may be performed at any moment
//!   (D8.17.8, RYNJCP),
//!   so a walker that could still see a store's old value in that window may
//!   refill the entry the TLBI removes.

use crate::mem::{insert_sorted, AgentMask, MemError, PendingStore, PhysMem};
use crate::plist::PList;
use crate::tlb::closure::{close, close_within, Within};
use crate::tlb::{InvalScope, MayHold, Provenance, TlbEntry};
use crate::vmsa::Context;
use serde::{Deserialize, Serialize};

/// Walker agent ids: CPUs are `0..MAX_CPUS`, then the SMMU, then device ATCs.
pub const MAX_CPUS: u8 = 8;
/// The SMMU's walker agent id.
pub const SMMU_AGENT: u8 = MAX_CPUS;
/// Every walker: a CPU store is pending for all of them until a DSB.
pub const ALL_AGENTS: AgentMask = AgentMask::MAX;

/// DSB variants the model distinguishes (Arm ARM C6.2.152 DSB; B2.6.10,
/// Table B2-1).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dsb {
    /// Full barrier, Inner Shareable: completes stores and every TLBI.
    Ish,
    /// Stores only, Inner Shareable.
    Ishst,
    /// Full barrier, non-shareable: completes stores for the own walker and
    /// local TLBIs only (Arm ARM D8.17.8, RPSMWS: DSB NSH suffices for TLB
    /// maintenance that applies to a single PE).
    Nsh,
    /// Stores only, non-shareable.
    Nshst,
    /// Full barrier, Outer Shareable. The model's CPUs form one Inner
    /// Shareable domain, which the Outer Shareable domain contains, so it
    /// completes what DSB ISH completes.
    Osh,
    /// Stores only, Outer Shareable.
    Oshst,
    /// Full barrier, full system (`DSB SY`): contains every domain.
    Sy,
    /// Stores only, full system (`DSB ST`).
    St,
}

impl Dsb {
    /// Whether this DSB, executed by the issuing CPU, completes a TLBI of
    /// the IS form (`broadcast`) or the local form: DSB ISH completes both,
    /// DSB NSH only the local form, the store-only forms neither (Arm ARM
    /// D8.17.8, RPSMWS).
    ///
    /// A DSB of a domain that contains the TLBI's completes it too: DSB OSH
    /// and DSB SY complete both forms (D8.17.8: the DSB must apply to the
    /// Shareability domain of the maintenance); their store-only forms
    /// complete no TLBI.
    pub const fn completes_tlbi(self, broadcast: bool) -> bool {
        match self {
            Dsb::Ish | Dsb::Osh | Dsb::Sy => true,
            Dsb::Nsh => !broadcast,
            Dsb::Ishst | Dsb::Nshst | Dsb::Oshst | Dsb::St => false,
        }
    }
}

/// A TLBI issued and not yet completed.
///
/// It may be performed at any moment up to its completion (Arm ARM D8.17.8,
/// RYNJCP); the worst case
/// for the software is that it is performed at issue, so it removes only
/// the entries it covered then (`doomed`) and anything filled later stays.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingTlbi {
    /// Issuing CPU.
    pub issuer: u8,
    /// What it removes.
    pub scope: InvalScope,
    /// IS form: every CPU (and an SMMU with BTM); else the issuer only (Arm
    /// ARM D8.17.8, RQRNJC: each PE in the instruction's Shareability domain).
    pub broadcast: bool,
    /// Step at which it was issued (for reports; not part of the state).
    pub issued_at: u32,
    /// Values walkers may have read after the TLBI was performed: the old
    /// values of stores not yet visible when it was issued and of every
    /// store made before it completed. What they reach in its scope is
    /// refilled at completion.
    pub hazard: Vec<PendingStore>,
    /// `(cpu, entry)` for every entry it covered at issue.
    pub doomed: Vec<(u8, TlbEntry)>,
}

impl PartialEq for PendingTlbi {
    fn eq(&self, o: &Self) -> bool {
        (
            self.issuer,
            &self.scope,
            self.broadcast,
            &self.hazard,
            &self.doomed,
        ) == (o.issuer, &o.scope, o.broadcast, &o.hazard, &o.doomed)
    }
}
impl Eq for PendingTlbi {}
impl std::hash::Hash for PendingTlbi {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (
            self.issuer,
            &self.scope,
            self.broadcast,
            &self.hazard,
            &self.doomed,
        )
            .hash(h);
    }
}

/// One CPU: the contexts it may walk (every address space or VM it may run:
/// speculative walks can use any of them, Arm ARM D8.16, RSQBCS) and its
/// may-hold TLB.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cpu {
    /// Live translation contexts.
    /// Shared between CPUs and between explored states: it never changes.
    pub contexts: std::sync::Arc<[Context]>,
    /// Every entry this CPU may hold.
    pub tlb: MayHold,
}

/// An invalidation that completed, with what it removed where; broadcast
/// ones are what an SMMU with BTM must also apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completed {
    /// The TLBI.
    pub tlbi: PendingTlbi,
    /// `(cpu, entry, provenance)` for each entry removed.
    pub removed: Vec<(u8, TlbEntry, Provenance)>,
}

/// Memory plus CPUs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Machine {
    /// Simulated physical memory.
    pub mem: PhysMem,
    /// The CPUs.
    pub cpus: Vec<Cpu>,
    /// TLBIs in flight per issuing CPU, newest first. Keeping them per CPU
    /// (not in one global issue order) makes states reached by different
    /// interleavings of independent CPUs equal: only a CPU's own order is
    /// observable, by its DSB.
    pub pending: Vec<PList<PendingTlbi>>,
    /// The SMMU and its devices, if the machine has one: its caches are
    /// re-closed on every store, and with BTM it takes part in broadcast
    /// TLBIs, completing them at the issuer's DSB ISH (SMMUv3 3.17).
    pub smmu: Option<Box<crate::smmu::model::Smmu>>,
    /// Per CPU, when tracked: the entries that TLBIs completed by the CPU's
    /// own DSB removed from its own TLB since its last ISB, sorted. Without
    /// FEAT_ETS2 the completion of a TLBI affects the issuing PE's own later
    /// translations only after a context synchronization event (Arm ARM
    /// D8.17.8, "TLB maintenance completion": a DSB completes the
    /// maintenance, and an ISB after it makes the issuer's subsequent
    /// instructions see it), so until its ISB an explicit access of that
    /// CPU may still be translated by one of these entries. `None`: not
    /// tracked (no program makes such an access), which keeps the state
    /// space of every other model as it was.
    pub unsynced: Option<Vec<Vec<(TlbEntry, Provenance)>>>,
}

impl Machine {
    /// A machine with `cpus` CPUs that each may run every context in `contexts`.
    pub fn new(mem: PhysMem, cpus: u8, contexts: Vec<Context>) -> Machine {
        let shared: std::sync::Arc<[Context]> = contexts.into();
        assert!(cpus <= MAX_CPUS, "at most {MAX_CPUS} CPUs");
        let mut m = Machine {
            mem,
            cpus: (0..cpus)
                .map(|_| Cpu {
                    contexts: std::sync::Arc::clone(&shared),
                    tlb: MayHold::new(),
                })
                .collect(),
            pending: vec![PList::default(); cpus as usize],
            smmu: None,
            unsynced: None,
        };
        m.refresh(0);
        m
    }

    /// Attaches an SMMU (built over this machine's memory) and closes its
    /// caches.
    pub fn attach_smmu(&mut self, smmu: crate::smmu::model::Smmu) {
        let mut s = Box::new(smmu);
        s.refresh(&self.mem, 0);
        self.smmu = Some(s);
    }

    /// Re-closes every CPU's may-hold set after a memory change at `step`.
    pub fn refresh(&mut self, step: u32) {
        let before: Vec<MayHold> = self.cpus.iter().map(|c| c.tlb.clone()).collect();
        for i in 0..self.cpus.len() {
            if let Some(j) = self.twin(&before, i, &[], |a, b| a == b) {
                self.cpus[i].tlb = self.cpus[j].tlb.clone();
                continue;
            }
            let c = &mut self.cpus[i];
            close(&mut c.tlb, &self.mem, i as u8, &c.contexts, step);
        }
        if let Some(s) = &mut self.smmu {
            s.refresh(&self.mem, step);
        }
    }

    /// An earlier CPU than `i` whose set (as `before` held it, compared with
    /// `same`), contexts and view of memory (the pending stores and `extra`
    /// window values it may still read) are those of CPU `i`: any closure
    /// computes the same for both, so `i` can take `j`'s result.
    fn twin(
        &self,
        before: &[MayHold],
        i: usize,
        extra: &[PendingStore],
        same: impl Fn(&MayHold, &MayHold) -> bool,
    ) -> Option<usize> {
        let sees = |s: &PendingStore, a: usize| s.stale_for & (1 << a) != 0;
        (0..i).find(|&j| {
            std::sync::Arc::ptr_eq(&self.cpus[i].contexts, &self.cpus[j].contexts)
                && (before[i].shares(&before[j]) || same(&before[i], &before[j]))
                && self
                    .mem
                    .pending_stores()
                    .iter()
                    .chain(extra)
                    .all(|s| sees(s, i) == sees(s, j))
        })
    }

    /// A descriptor store by `cpu` (visible to walkers only after its DSB:
    /// Arm ARM D8.2.6.1, RSPVBD).
    pub fn store(
        &mut self,
        step: u32,
        cpu: u8,
        pa: crate::addr::Pa,
        value: u64,
    ) -> Result<(), MemError> {
        let old = self.mem.read(pa);
        self.mem.store(cpu, ALL_AGENTS, pa, value)?;
        if old != value {
            // A walker may have refilled, after an in-flight invalidation was
            // performed, from the value this store replaces: it joins the
            // window of every invalidation not yet completed.
            let replaced = PendingStore {
                pa,
                old,
                by: 1 << cpu,
                stale_for: ALL_AGENTS,
            };
            for list in &mut self.pending {
                if list
                    .iter()
                    .any(|p| p.hazard.binary_search(&replaced).is_err())
                {
                    let mut all: Vec<PendingTlbi> = list.iter().cloned().collect();
                    for p in &mut all {
                        insert_sorted(&mut p.hazard, replaced);
                    }
                    *list = PList::from_oldest_first(all.into_iter().rev());
                }
            }
            if let Some(s) = &mut self.smmu {
                s.note_replaced(replaced);
            }
        }
        if value & crate::vmsa::desc::bits::VALID != 0 {
            self.refresh(step);
        } else if let Some(s) = &mut self.smmu {
            // An invalid translation descriptor makes nothing new reachable
            // for a CPU (its old value stays visible as a pending store), but
            // the word may belong to an SMMU structure whose other fields
            // the SMMU reads.
            s.refresh(&self.mem, step);
        }
        Ok(())
    }

    /// Issues a TLBI from `cpu`; it takes effect at the matching DSB.
    pub fn tlbi(&mut self, step: u32, cpu: u8, scope: InvalScope, broadcast: bool) {
        let mut doomed = Vec::new();
        // CPUs sharing one set share what the scope covers in it.
        let mut covered: Vec<(usize, Vec<TlbEntry>)> = Vec::new();
        for (i, c) in self.cpus.iter().enumerate() {
            if broadcast || i as u8 == cpu {
                let found = covered
                    .iter()
                    .find(|(j, _)| self.cpus[*j].tlb.shares(&c.tlb))
                    .map(|(_, v)| v.clone());
                let mine = found.unwrap_or_else(|| c.tlb.covered(&scope));
                doomed.extend(mine.iter().map(|e| (i as u8, *e)));
                covered.push((i, mine));
            }
        }
        self.pending[cpu as usize].push(PendingTlbi {
            issuer: cpu,
            scope,
            broadcast,
            issued_at: step,
            hazard: self.mem.pending_stores().to_vec(),
            doomed,
        });
        if let Some(s) = &mut self.smmu {
            s.cpu_tlbi(&self.mem, cpu, &scope, broadcast);
        }
    }

    /// A DSB by `cpu`: completes the TLBIs it may complete, then the stores.
    /// Returns the completed TLBIs with what they removed.
    pub fn dsb(&mut self, step: u32, cpu: u8, kind: Dsb) -> Vec<Completed> {
        let list = &mut self.pending[cpu as usize];
        let (done, still): (Vec<PendingTlbi>, Vec<PendingTlbi>) = if list.is_empty() {
            Default::default()
        } else {
            // Oldest first: completed TLBIs are applied in issue order.
            let mut all: Vec<PendingTlbi> = list.iter().cloned().collect();
            all.reverse();
            all.into_iter()
                .partition(|t| kind.completes_tlbi(t.broadcast))
        };
        if !done.is_empty() {
            *list = PList::from_oldest_first(still);
        }
        let mut completed = Vec::new();
        for tlbi in done {
            let mut removed = Vec::new();
            // After the TLBI was performed the walkers may have read any value
            // in its window (`hazard`: stores not yet visible at issue, and
            // values replaced before completion); what they refilled then is
            // what this TLBI was meant to remove, so only entries in its
            // scope come back from that window.
            let window = self.mem.window(&tlbi.hazard);
            let before: Vec<MayHold> = self.cpus.iter().map(|c| c.tlb.clone()).collect();
            let mine_of = |i: usize| -> Vec<TlbEntry> {
                tlbi.doomed
                    .iter()
                    .filter(|(a, _)| *a == i as u8)
                    .map(|(_, e)| *e)
                    .collect()
            };
            for i in 0..self.cpus.len() {
                let mine = mine_of(i);
                // A CPU with the same set, view and doomed entries as an
                // earlier one ends as that one did.
                let twin = self
                    .twin(&before, i, &tlbi.hazard, |_, _| false)
                    .filter(|&j| mine_of(j) == mine);
                if let Some(j) = twin {
                    self.cpus[i].tlb = self.cpus[j].tlb.clone();
                    let again: Vec<(u8, TlbEntry, Provenance)> = removed
                        .iter()
                        .filter(|(a, _, _)| *a as usize == j)
                        .map(|&(_, e, p)| (i as u8, e, p))
                        .collect();
                    removed.extend(again);
                    continue;
                }
                let c = &mut self.cpus[i];
                let gone = c.tlb.remove_entries(&mine);
                if !gone.is_empty() {
                    let within = Within::of_entries(gone.iter().map(|(e, _)| e));
                    close_within(&mut c.tlb, &self.mem, i as u8, &c.contexts, step, &within);
                    if let Some(w) = &window {
                        refill_in_scope(&mut c.tlb, w, i as u8, &c.contexts, &tlbi.scope, step);
                    }
                }
                removed.extend(gone.into_iter().map(|(e, p)| (i as u8, e, p)));
            }
            completed.push(Completed { tlbi, removed });
        }
        if let Some(u) = &mut self.unsynced {
            let own = &mut u[cpu as usize];
            for c in &completed {
                for &(a, e, p) in &c.removed {
                    if a == cpu && !own.iter().any(|(x, _)| *x == e) {
                        own.push((e, p));
                    }
                }
            }
            own.sort_by_key(|(e, _)| *e);
        }
        let reach = match kind {
            Dsb::Ish | Dsb::Ishst | Dsb::Osh | Dsb::Oshst | Dsb::Sy | Dsb::St => ALL_AGENTS,
            Dsb::Nsh | Dsb::Nshst => 1 << cpu,
        };
        // Windows of TLBIs in flight settle when their values become
        // invisible; with none in flight there is nothing to compare.
        let in_flight = self.pending.iter().any(|l| !l.is_empty());
        let before = if in_flight {
            self.mem.pending_stores().to_vec()
        } else {
            Vec::new()
        };
        self.mem.complete_stores(cpu, reach);
        // Old values no walker can read any more.
        let now = self.mem.pending_stores();
        let unseen: Vec<(crate::addr::Pa, u64)> = before
            .iter()
            .filter(|b| !now.iter().any(|p| p.pa == b.pa && p.old == b.old))
            .map(|b| (b.pa, b.old))
            .collect();
        if !unseen.is_empty() {
            self.settle_windows(&unseen, step);
        }
        if let Some(s) = &mut self.smmu {
            s.cpu_dsb(&self.mem, cpu, kind, step);
        }
        completed
    }

    /// Starts tracking, per CPU, the entries removed since its last ISB
    /// (see [`Machine::unsynced`]).
    pub fn track_isb(&mut self) {
        self.unsynced = Some(vec![Vec::new(); self.cpus.len()]);
    }

    /// An ISB by `cpu`: a context synchronization event, after which the
    /// CPU's own instructions use no entry its completed TLBIs removed (Arm
    /// ARM D8.17.8). It completes no TLBI.
    pub fn isb(&mut self, cpu: u8) {
        if let Some(u) = &mut self.unsynced {
            u[cpu as usize].clear();
        }
    }

    /// The entries `cpu`'s own explicit accesses may still use although a
    /// completed TLBI removed them: it has issued no ISB since.
    pub fn unsynced(&self, cpu: u8) -> &[(TlbEntry, Provenance)] {
        self.unsynced
            .as_ref()
            .map_or(&[], |u| u[cpu as usize].as_slice())
    }

    /// Every CPU entry that maps into `[first, last]` (leaves by output,
    /// walk entries by the table they point at) with the CPU that may hold it.
    /// Stage-1 entries tagged like a nested context are skipped: their
    /// outputs are IPAs, not PAs (Arm ARM D8.2.1, RBTTHB).
    pub fn holders(&self, range: crate::addr::AddrRange) -> Vec<(u8, TlbEntry, Provenance)> {
        let mut out = Vec::new();
        for (i, c) in self.cpus.iter().enumerate() {
            let nested: Vec<(crate::tlb::Regime, u16)> = c
                .contexts
                .iter()
                .filter(|x| x.s1.is_some() && x.s2.is_some())
                .map(|x| (x.regime, x.tag_vmid()))
                .collect();
            for (e, p) in c.tlb.iter() {
                if e.stage() == crate::tlb::Stage::S1 && nested.contains(&(e.regime, e.vmid)) {
                    continue;
                }
                if output_range(e).overlaps(range) {
                    out.push((i as u8, *e, *p));
                }
            }
        }
        out
    }
}

impl Machine {
    /// Values in the windows of TLBIs in flight that no walker can read any
    /// more (`unseen`): every walk that read them happened before now. What
    /// such a walk may have filled in a TLBI's scope may be held from now
    /// on, and the TLBI, performed at its issue in the worst case, need not
    /// remove it (Arm ARM D8.17.8, RYNJCP); a TLBI issued from now on does.
    /// So the fills are made now, taken out of the TLBI's `doomed` list, and
    /// the values leave its window. (Waiting for the TLBI's completion
    /// instead would refill entries that a later TLBI, completed in between,
    /// has removed for good.)
    fn settle_windows(&mut self, unseen: &[(crate::addr::Pa, u64)], step: u32) {
        let hit = |t: &PendingTlbi| t.hazard.iter().any(|h| unseen.contains(&(h.pa, h.old)));
        for list_idx in 0..self.pending.len() {
            if !self.pending[list_idx].iter().any(hit) {
                continue;
            }
            let mut all: Vec<PendingTlbi> = self.pending[list_idx].iter().cloned().collect();
            for t in all.iter_mut().filter(|t| hit(t)) {
                let window = self.mem.window(&t.hazard);
                let before: Vec<MayHold> = self.cpus.iter().map(|c| c.tlb.clone()).collect();
                let mut fills: Vec<Option<Vec<(TlbEntry, Provenance)>>> =
                    vec![None; self.cpus.len()];
                for i in 0..self.cpus.len() {
                    if !(t.broadcast || i as u8 == t.issuer) {
                        continue;
                    }
                    let Some(w) = &window else { continue };
                    // A CPU like an earlier one (same set, contexts and view)
                    // fills what that one filled and ends as it did.
                    let twin = self
                        .twin(&before, i, &t.hazard, |a, b| a == b)
                        .filter(|&j| fills[j].is_some());
                    let filled = match twin {
                        Some(j) => {
                            self.cpus[i].tlb = self.cpus[j].tlb.clone();
                            fills[j].clone().unwrap_or_default()
                        }
                        None => {
                            let c = &mut self.cpus[i];
                            let filled =
                                window_fills(&c.tlb, w, i as u8, &c.contexts, &t.scope, step);
                            for (e, p) in &filled {
                                if !c.tlb.contains(e) {
                                    c.tlb.insert(*e, *p);
                                }
                            }
                            filled
                        }
                    };
                    t.doomed
                        .retain(|(a, e)| *a != i as u8 || !filled.iter().any(|(f, _)| f == e));
                    fills[i] = Some(filled);
                }
                t.hazard.retain(|h| !unseen.contains(&(h.pa, h.old)));
            }
            self.pending[list_idx] = PList::from_oldest_first(all.into_iter().rev());
        }
    }
}

/// The entries in `scope` that a walk of the `window` view of memory could
/// produce for `agent`, whether `tlb` holds them already or not (walks may
/// go through the walk-cache entries it holds outside the scope).
fn window_fills(
    tlb: &MayHold,
    window: &PhysMem,
    agent: u8,
    contexts: &[Context],
    scope: &InvalScope,
    step: u32,
) -> Vec<(TlbEntry, Provenance)> {
    let mut scratch = tlb.clone();
    scratch.remove_entries(&scratch.covered(scope));
    close_within(
        &mut scratch,
        window,
        agent,
        contexts,
        step,
        &Within::of_scope(scope),
    );
    scratch
        .iter()
        .filter(|(e, _)| scope.covers(e))
        .map(|(e, p)| (*e, *p))
        .collect()
}

/// Adds to `tlb` the entries in `scope` that a walk of the `window` view of
/// memory could produce.
fn refill_in_scope(
    tlb: &mut MayHold,
    window: &PhysMem,
    agent: u8,
    contexts: &[Context],
    scope: &InvalScope,
    step: u32,
) {
    let mut scratch = tlb.clone();
    close_within(
        &mut scratch,
        window,
        agent,
        contexts,
        step,
        &Within::of_scope(scope),
    );
    for (e, p) in scratch.iter() {
        if scope.covers(e) && !tlb.contains(e) {
            tlb.insert(*e, *p);
        }
    }
}

/// The physical range an entry points at: the page or block for a leaf, the
/// next-level table for a walk entry. A stage-1 output is taken as the PA
/// ([`crate::addr::OutputAddr::flat_pa`]): callers set aside the stage-1
/// entries of nested contexts, whose outputs are IPAs.
pub fn output_range(e: &TlbEntry) -> crate::addr::AddrRange {
    let base = e.output().flat_pa().0;
    match e.kind {
        crate::tlb::EntryKind::Leaf => crate::addr::AddrRange::span(base, u32::from(e.span_shift)),
        crate::tlb::EntryKind::Walk => {
            let g = e.granule;
            crate::addr::AddrRange::from_len(base, 8 * g.entries_at(e.level + 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{AddrRange, Granule, InputAddr, InputRange, Pa, Va};
    use crate::mem::Pfn;
    use crate::tlb::{AsidSel, EntryKind, Regime, StageSel};
    use crate::vmsa::desc::{s1_page, table};
    use crate::vmsa::StageConfig;

    const L0: u64 = 0x10_0000;
    const L3: u64 = 0x10_3000;
    const DATA: u64 = 0x50_0000;

    /// Two CPUs sharing ASID 1 whose VA 0 maps DATA through four tables.
    fn machine() -> Machine {
        let mut mem = PhysMem::new(Pfn(0x100), 16);
        for lvl in 0..3u64 {
            mem.write(Pa(L0 + lvl * 0x1000), table(L0 + (lvl + 1) * 0x1000))
                .unwrap();
        }
        mem.write(Pa(L3), s1_page(DATA, true, true, false)).unwrap();
        let ctx = Context {
            regime: Regime::El10,
            asid: 1,
            vmid: 0,
            s1: Some(StageConfig::new(Granule::K4, L0)),
            s2: None,
        };
        Machine::new(mem, 2, vec![ctx])
    }

    fn by_va(leaf_only: bool) -> InvalScope {
        InvalScope {
            regime: Regime::El10,
            stages: StageSel::STAGE1,
            vmid: Some(0),
            asid: AsidSel::Only {
                asid: 1,
                with_global: true,
            },
            range: Some(InputRange::Va(AddrRange::from_len(0, 0x1000))),
            granule: None,
            leaf_only,
            ttl_level: None,
        }
    }

    fn maps_data(m: &Machine, cpu: usize) -> bool {
        m.cpus[cpu]
            .tlb
            .iter()
            .any(|(e, _)| e.kind == EntryKind::Leaf && e.output().flat_pa() == Pa(DATA))
    }

    #[test]
    fn initial_closure_holds_walk_entries_and_the_leaf_on_every_cpu() {
        let m = machine();
        for cpu in 0..2 {
            assert_eq!(m.cpus[cpu].tlb.len(), 4);
            assert!(maps_data(&m, cpu));
        }
    }

    #[test]
    fn correct_unmap_sequence_removes_the_leaf_everywhere() {
        let mut m = machine();
        m.store(1, 0, Pa(L3), 0).unwrap();
        m.dsb(2, 0, Dsb::Ishst);
        m.tlbi(3, 0, by_va(true), true);
        assert!(maps_data(&m, 1), "not before the DSB");
        let done = m.dsb(4, 0, Dsb::Ish);
        assert_eq!(done[0].removed.len(), 2, "one leaf per CPU");
        assert!(!maps_data(&m, 0) && !maps_data(&m, 1));
        assert!(m.holders(AddrRange::span(DATA, 12)).is_empty());
    }

    #[test]
    fn tlbi_without_a_store_barrier_lets_the_old_entry_refill() {
        let mut m = machine();
        m.store(1, 0, Pa(L3), 0).unwrap();
        m.tlbi(2, 0, by_va(true), true);
        m.dsb(3, 0, Dsb::Ish);
        assert!(
            maps_data(&m, 1),
            "walker could see the old PTE after the TLBI"
        );
        let (_, _, prov) = m.holders(AddrRange::span(DATA, 12))[0];
        assert_eq!(
            prov,
            Provenance {
                step: 3,
                source: L3
            }
        );
    }

    #[test]
    fn dsb_ishst_after_the_tlbi_does_not_close_the_window() {
        let mut m = machine();
        m.store(1, 0, Pa(L3), 0).unwrap();
        m.tlbi(2, 0, by_va(true), true);
        m.dsb(3, 0, Dsb::Ishst);
        assert!(m.mem.pending_stores().is_empty());
        m.dsb(4, 0, Dsb::Ish);
        assert!(
            maps_data(&m, 0),
            "the store was not visible when the TLBI was issued"
        );
    }

    #[test]
    fn local_tlbi_reaches_only_the_issuing_cpu_and_needs_only_dsb_nsh() {
        let mut m = machine();
        m.store(1, 0, Pa(L3), 0).unwrap();
        m.dsb(2, 0, Dsb::Ishst);
        m.tlbi(3, 0, by_va(true), false);
        m.dsb(4, 0, Dsb::Nsh);
        assert!(!maps_data(&m, 0));
        assert!(maps_data(&m, 1), "CPU 1 was never told");
    }

    #[test]
    fn broadcast_tlbi_is_not_completed_by_dsb_nsh() {
        let mut m = machine();
        m.store(1, 0, Pa(L3), 0).unwrap();
        m.dsb(2, 0, Dsb::Ishst);
        m.tlbi(3, 0, by_va(true), true);
        assert!(m.dsb(4, 0, Dsb::Nsh).is_empty());
        assert!(maps_data(&m, 0));
        assert_eq!(m.dsb(5, 0, Dsb::Ish).len(), 1);
        assert!(!maps_data(&m, 0));
    }

    /// Without FEAT_ETS2 the issuer's own accesses may use what its
    /// completed TLBI removed until its ISB (D8.17.8); other CPUs' entries
    /// are not recorded, and nothing is without tracking.
    #[test]
    fn removed_entries_await_the_issuers_isb() {
        let mut m = machine();
        m.store(1, 0, Pa(L3), 0).unwrap();
        m.dsb(2, 0, Dsb::Ishst);
        m.tlbi(3, 0, by_va(true), true);
        m.dsb(4, 0, Dsb::Ish);
        assert!(m.unsynced(0).is_empty(), "not tracked");
        let mut m = machine();
        m.track_isb();
        m.store(1, 0, Pa(L3), 0).unwrap();
        m.dsb(2, 0, Dsb::Ishst);
        m.tlbi(3, 0, by_va(true), true);
        assert!(m.unsynced(0).is_empty(), "pending until the DSB");
        m.dsb(4, 0, Dsb::Ish);
        assert!(!maps_data(&m, 0) && !maps_data(&m, 1));
        let own = m.unsynced(0);
        assert!(own.iter().any(|(e, _)| e.kind == EntryKind::Leaf
            && e.translate(InputAddr::Va(Va(0))).map(|o| o.get()) == Some(DATA)));
        assert!(m.unsynced(1).is_empty(), "CPU 1's entries are not its own");
        m.isb(1);
        assert!(
            !m.unsynced(0).is_empty(),
            "another CPU's ISB does nothing here"
        );
        m.isb(0);
        assert!(m.unsynced(0).is_empty());
    }

    /// Clearing the L2 table entry and invalidating only the leaf keeps the
    /// walk-cache entry to the L3 table, through which the leaf comes back.
    #[test]
    fn leaf_only_tlbi_after_a_table_clear_keeps_the_walk_cache_path() {
        let mut m = machine();
        m.store(1, 0, Pa(L0 + 0x2000), 0).unwrap();
        m.dsb(2, 0, Dsb::Ishst);
        m.tlbi(3, 0, by_va(true), true);
        m.dsb(4, 0, Dsb::Ish);
        let walk_to_l3 = AddrRange::span(L3, 12);
        assert!(m
            .holders(walk_to_l3)
            .iter()
            .any(|(_, e, _)| e.kind == EntryKind::Walk));
        assert!(
            maps_data(&m, 1),
            "leaf refilled through the cached table pointer"
        );
        // The all-levels form removes the path.
        m.tlbi(5, 0, by_va(false), true);
        m.dsb(6, 0, Dsb::Ish);
        assert!(m.holders(walk_to_l3).is_empty());
        assert!(!maps_data(&m, 0) && !maps_data(&m, 1));
    }

    /// The TLBI may be performed as soon as it is issued: an entry that
    /// became holdable afterwards (and is unmapped again before the DSB)
    /// survives the completion.
    #[test]
    fn entries_filled_after_the_issue_survive_completion() {
        let mut m = machine();
        let mut all = by_va(false);
        all.range = None;
        m.tlbi(1, 0, all, true);
        m.store(2, 1, Pa(L3 + 8), s1_page(DATA + 0x1000, true, true, false))
            .unwrap();
        m.dsb(3, 1, Dsb::Ish);
        m.store(4, 1, Pa(L3 + 8), 0).unwrap();
        m.dsb(5, 1, Dsb::Ish);
        m.dsb(6, 0, Dsb::Ish);
        let late = m.holders(AddrRange::span(DATA + 0x1000, 12));
        assert_eq!(late.len(), 2, "filled after the TLBI on both CPUs");
        assert_eq!(late[0].2.step, 2);
    }

    /// A CPU that also runs a nested guest still reports the host's
    /// stage-1 entries: only the guest's stage-1 outputs are IPAs.
    #[test]
    fn holders_skip_only_the_stage1_entries_of_nested_contexts() {
        let m = machine();
        let host = m.cpus[0].contexts[0];
        let guest = Context {
            vmid: 1,
            s1: Some(StageConfig::new(Granule::K4, 0x10_8000)),
            s2: Some(StageConfig::new(Granule::K4, 0x10_9000)),
            ..host
        };
        let both = Machine::new(m.mem.clone(), 2, vec![host, guest]);
        let walks_to_l3 = |m: &Machine| {
            m.holders(AddrRange::span(L3, 12))
                .iter()
                .filter(|(_, e, _)| e.kind == EntryKind::Walk)
                .count()
        };
        assert_eq!(walks_to_l3(&m), 2, "one per CPU");
        assert_eq!(walks_to_l3(&both), 2, "the guest changes nothing");
    }

    /// A value in an older TLBI's window (a store not yet visible when it
    /// was issued) is settled once no walker can read it: a later TLBI,
    /// issued after that, removes what a walk of the value filled, and the
    /// older TLBI's completion does not bring it back.
    #[test]
    fn a_window_value_settles_when_no_walker_can_read_it() {
        // The older TLBI is all-levels: it still has walk-cache entries to
        // remove at its completion.
        let mut m = machine();
        m.store(1, 1, Pa(L3), 0).unwrap();
        m.tlbi(2, 0, by_va(false), true);
        m.dsb(3, 1, Dsb::Ishst);
        m.tlbi(4, 1, by_va(true), true);
        m.dsb(5, 1, Dsb::Ish);
        assert!(!maps_data(&m, 0) && !maps_data(&m, 1));
        m.dsb(6, 0, Dsb::Ish);
        assert!(!maps_data(&m, 0) && !maps_data(&m, 1));
        // Issued while the store was still invisible, the later TLBI does
        // not settle it: a walk may read the old value after it.
        let mut m = machine();
        m.store(1, 1, Pa(L3), 0).unwrap();
        m.tlbi(2, 0, by_va(false), true);
        m.tlbi(3, 1, by_va(true), true);
        m.dsb(4, 1, Dsb::Ish);
        m.dsb(5, 0, Dsb::Ish);
        assert!(maps_data(&m, 0));
        // Settled or not, what the window may have filled survives the
        // older TLBI itself.
        let mut m = machine();
        m.store(1, 1, Pa(L3), 0).unwrap();
        m.tlbi(2, 0, by_va(true), true);
        m.dsb(3, 1, Dsb::Ish);
        m.dsb(4, 0, Dsb::Ish);
        assert!(maps_data(&m, 0) && maps_data(&m, 1));
    }

    /// A TLBI issued before the descriptor store it is meant to follow may
    /// be performed before the store: the walker refills the old leaf, which
    /// survives the DSB (the window includes values replaced after issue).
    #[test]
    fn tlbi_before_the_table_update_leaves_the_old_entry() {
        let mut m = machine();
        m.tlbi(1, 0, by_va(true), true);
        m.store(2, 0, Pa(L3), 0).unwrap();
        m.dsb(3, 0, Dsb::Ish);
        assert!(maps_data(&m, 0) && maps_data(&m, 1));
        // In the right order the leaf goes.
        let mut m = machine();
        m.store(1, 0, Pa(L3), 0).unwrap();
        m.dsb(2, 0, Dsb::Ishst);
        m.tlbi(3, 0, by_va(true), true);
        m.dsb(4, 0, Dsb::Ish);
        assert!(!maps_data(&m, 0) && !maps_data(&m, 1));
    }
}
