//! Lowering of guests with a virtual SMMU (seed 002): a guest thread's SMMU
//! commands form batches, each ended by its `cmd_sync`, that the scenario's
//! `host` service replays on the physical SMMU
//! (`tlbcheck_protocols::nested`).

use super::{at, Lower, R};
use crate::error::{Located, Span};
use crate::scenario::ast::{Step, ThreadDecl};
use std::sync::Arc;
use tlbcheck_checker::builder::ModelBuilder;
use tlbcheck_checker::Op;
use tlbcheck_protocols::nested::{Guest, GuestStep, GuestThread, HostSmmu, VDevice, Version};

/// A guest thread's batches as its steps are read: the commands since the
/// last `cmd_sync`, and each issued batch with the op index it follows.
#[derive(Default)]
pub(super) struct Batches {
    pending: Vec<[u64; 2]>,
    last: Option<Span>,
    done: Vec<(usize, Vec<[u64; 2]>)>,
    /// The first command with TG != 0 (a range TLBI), if any.
    range: Option<Span>,
}

impl Batches {
    /// Takes `step` if it is one of the guest's SMMU commands or the
    /// `cmd_sync` that issues them (at op index `here`); the guest's other
    /// steps are left to the ordinary lowering.
    pub(super) fn take(&mut self, step: &Step, here: usize, span: Span) -> bool {
        let words = match step {
            Step::SmmuCmd(c) => Some(c.encode()),
            Step::GuestCmd(w) => Some(*w),
            _ => None,
        };
        // TG, dw1[11:10], of the address-based TLBIs (SMMUv3 4.4.1.1).
        if let Some([dw0, dw1]) = words {
            if matches!(dw0 & 0xff, 0x12 | 0x13) && (dw1 >> 10) & 3 != 0 {
                self.range.get_or_insert(span);
            }
        }
        match step {
            Step::SmmuCmd(_) | Step::GuestCmd(_) => self.pending.extend(words),
            Step::CmdSync => {
                if !self.pending.is_empty() {
                    self.done.push((here, std::mem::take(&mut self.pending)));
                }
            }
            _ => return false,
        }
        self.last = Some(span);
        true
    }
}

/// A raw command outside a guest thread.
pub(super) fn outside_guest(span: Span) -> Located {
    Located::new(span, "raw guest command words outside a guest thread")
}

impl Lower<'_> {
    /// Adds guest thread `t`: its own `ops`, with the host service's
    /// commands for each batch at the point the guest issued it.
    pub(super) fn guest_thread(
        &self,
        b: &mut ModelBuilder,
        t: &ThreadDecl,
        ops: Vec<Op>,
        batches: Batches,
    ) -> R<()> {
        let sc = self.sc;
        let g = t.guest.as_ref().expect("a guest thread");
        if !batches.pending.is_empty() {
            return Err(Located::new(
                batches.last.unwrap_or(t.span),
                "these guest commands are never issued",
            )
            .with_help("end the batch with `cmd_sync`: the VMM hands it to the host then"));
        }
        let host = sc.host.as_ref().ok_or_else(|| {
            Located::new(g.span, "a guest thread needs a host service")
                .with_help("add `host iommufd-vsmmu` (or nested-2023-v1, strict)")
        })?;
        let smmu = sc.smmu.as_ref().ok_or_else(|| {
            Located::new(g.span, "a guest's virtual SMMU needs the `smmu` statement")
        })?;
        // Without RIL, v1's __arm_smmu_tlb_inv_range issues one command
        // per granule of a range (up to 2^36 of them): the guest's vSMMU
        // advertises the host's IDR3.RIL, so ask for it.
        if let (Version::Nested2023V1, false, Some(span)) = (host.value, smmu.ril, batches.range) {
            return Err(Located::new(
                span,
                "nested-2023-v1 splits a range TLBI into one command per granule without RIL",
            )
            .with_help("add `ril` to the smmu statement (SMMU_IDR3.RIL)"));
        }
        let decl = sc
            .guests
            .iter()
            .find(|d| d.name.value == g.value)
            .ok_or_else(|| Located::new(g.span, format!("no guest `{}`", g.value)))?;
        let devices = decl
            .vdevices
            .iter()
            .map(|(vsid, name)| {
                let d = sc
                    .devices
                    .iter()
                    .find(|d| d.name.value == name.value)
                    .ok_or_else(|| {
                        Located::new(name.span, format!("no device `{}`", name.value))
                    })?;
                Ok(VDevice {
                    vsid: *vsid,
                    psid: d.sid.value,
                    ats: d.ats,
                })
            })
            .collect::<R<Vec<_>>>()?;
        let guest = Guest {
            vmid: decl.vmid,
            devices,
        };
        let hw = HostSmmu {
            ril: smmu.ril,
            ats: smmu.ats,
            granule: self.granule,
        };
        let mut steps = Vec::new();
        let mut issued = batches.done.into_iter().peekable();
        for (i, op) in ops.into_iter().enumerate() {
            while let Some((_, w)) = issued.next_if(|(here, _)| *here == i) {
                steps.push(GuestStep::Batch(w));
            }
            steps.push(GuestStep::Op(op));
        }
        steps.extend(issued.map(|(_, w)| GuestStep::Batch(w)));
        let program = GuestThread::new(&g.value, host.value, &hw, &guest, steps);
        b.program(
            t.name.value.clone(),
            t.cpu.value,
            Arc::new(program),
            t.owns.clone(),
        )
        .map_err(at(t.cpu.span))
    }
}
