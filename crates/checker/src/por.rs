//! Partial-order reduction: which steps are independent.
//!
//! Two steps of different threads are independent in a state when neither
//! writes what the other reads or writes: run in either order they reach
//! the same state, neither enables or disables the other, and each one's
//! violation check sees the same thing. The explorer uses this for sleep
//! sets (Godefroid, "Partial-Order Methods for the Verification of
//! Concurrent Systems", 1996, ch. 5): after exploring step `t` from a
//! state, a sibling step `u` independent of `t` need not explore `t` again,
//! since `t; u` and `u; t` meet. Sleep sets prune transitions, never states:
//! every reachable state is still visited, so every violation and every
//! `stuck` state is still found, at the same depth.
//!
//! Footprints are coarse on purpose (whole TLBs, whole memory): a smaller
//! one would have to be proved against every rule of the hardware model.

use crate::model::{Choice, Model, State};
use crate::op::{Op, Rely};
use crate::sync::SyncOp;

/// What a step may read and write, as resource bits.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    read: u64,
    write: u64,
}

/// Descriptor words and frame contents.
const MEM: u64 = 1 << 0;
/// Stores not yet visible to walkers (and who may complete them).
const PENDING_STORES: u64 = 1 << 1;
/// Every CPU's may-hold set.
const TLBS: u64 = 1 << 2;
/// The SMMU: its caches, queues and devices.
const SMMU: u64 = 1 << 3;
/// The allocator: owners and the free list.
const ALLOC: u64 = 1 << 4;
/// RCU readers, grace periods and callbacks.
const RCU: u64 = 1 << 5;

/// Lock or sequence count `id`.
const fn sync_obj(id: u8, seq: bool) -> u64 {
    1 << (8 + (id as u64 % 12) + if seq { 12 } else { 0 })
}

/// The TLBIs in flight of CPU `cpu`.
const fn in_flight(cpu: u8) -> u64 {
    1 << (32 + cpu as u64 % 8)
}

/// Every CPU's TLBIs in flight.
const ALL_IN_FLIGHT: u64 = 0xff << 32;

impl Footprint {
    const fn new(read: u64, write: u64) -> Footprint {
        Footprint {
            // What is written is read too (a write that depends on nothing
            // still conflicts with another write).
            read: read | write,
            write,
        }
    }

    /// Whether two steps with these footprints commute.
    pub fn independent(self, o: Footprint) -> bool {
        self.write & o.read == 0 && o.write & self.read == 0
    }

    /// The footprint of `choice` in `s`.
    pub fn of(model: &Model, s: &State, choice: Choice) -> Footprint {
        let has_smmu = s.machine.smmu.is_some();
        let smmu = if has_smmu { SMMU } else { 0 };
        match choice {
            // A callback frees a frame: the free rule reads every cache.
            Choice::RcuCallback(_) => Footprint::new(TLBS | smmu | RCU, ALLOC | RCU),
            Choice::Thread(t) => {
                let t = t as usize;
                let th = &model.threads[t];
                let cpu = th.cpu;
                let Some(e) = model.next_op(s, t) else {
                    return Footprint::new(u64::MAX, u64::MAX);
                };
                // A program that chooses its ops by reading the machine
                // depends on every write.
                let chooses = if th.program.ignores_machine() {
                    0
                } else {
                    u64::MAX
                };
                let mut f = match &*e.op {
                    // A store re-closes every cache and joins the refill
                    // window of every TLBI in flight.
                    Op::Store { .. } => {
                        Footprint::new(u64::MAX, MEM | PENDING_STORES | TLBS | smmu | ALL_IN_FLIGHT)
                    }
                    Op::Dsb { .. } => Footprint::new(
                        MEM | PENDING_STORES | TLBS | in_flight(cpu),
                        PENDING_STORES | TLBS | smmu | in_flight(cpu),
                    ),
                    // A TLBI reads what it covers now and the stores its
                    // window starts with; with BTM it reaches the SMMU.
                    Op::Tlbi { .. } => {
                        Footprint::new(TLBS | PENDING_STORES | MEM, in_flight(cpu) | smmu)
                    }
                    Op::Free { .. } => Footprint::new(TLBS | smmu | MEM, ALLOC),
                    Op::Alloc { .. } => Footprint::new(0, ALLOC | MEM),
                    Op::Sync(o) => match *o {
                        // A lock handoff publishes and observes pending
                        // stores.
                        SyncOp::Lock(i)
                        | SyncOp::Unlock(i)
                        | SyncOp::ReadLock(i)
                        | SyncOp::ReadUnlock(i) => {
                            Footprint::new(0, sync_obj(i, false) | PENDING_STORES)
                        }
                        SyncOp::SeqWriteBegin(i)
                        | SyncOp::SeqWriteEnd(i)
                        | SyncOp::SeqReadBegin(i)
                        | SyncOp::SeqRead(i) => Footprint::new(0, sync_obj(i, true)),
                        // Counters share the sequence counts' bits: a
                        // shared bit only makes steps dependent.
                        SyncOp::AtomicAdd(i, _) | SyncOp::AtomicRead(i) => {
                            Footprint::new(0, sync_obj(i, true))
                        }
                        SyncOp::RcuReadLock
                        | SyncOp::RcuReadUnlock
                        | SyncOp::CallRcuFree(_)
                        | SyncOp::SynchronizeRcu => Footprint::new(0, RCU),
                    },
                    // The CPU's own access also reads what its completed
                    // TLBIs removed before an ISB, kept with its TLBIs in
                    // flight.
                    Op::Rely(Rely::Access { .. }) => {
                        Footprint::new(TLBS | MEM | PENDING_STORES | smmu | in_flight(cpu), 0)
                    }
                    Op::Rely(_) => Footprint::new(TLBS | MEM | PENDING_STORES | smmu, 0),
                    Op::AwaitFault { .. } => Footprint::new(SMMU, 0),
                    // An ISB clears its CPU's record of removed entries
                    // (kept with its TLBIs in flight); a DMB has no effect.
                    Op::Barrier { isb: true, .. } => Footprint::new(0, in_flight(cpu)),
                    Op::Barrier { isb: false, .. } => Footprint::new(0, 0),
                    Op::SmmuCmd { .. }
                    | Op::SmmuSync { .. }
                    | Op::SmmuCmdqRecover { .. }
                    | Op::DeviceAccess { .. }
                    | Op::DeviceResume { .. } => {
                        Footprint::new(MEM | PENDING_STORES | TLBS, SMMU | MEM)
                    }
                };
                f.read |= chooses;
                f
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlbis_of_two_cpus_commute_but_not_with_a_store() {
        let tlbi = |cpu| Footprint::new(TLBS | PENDING_STORES | MEM, in_flight(cpu));
        let store = Footprint::new(u64::MAX, MEM | PENDING_STORES | TLBS | ALL_IN_FLIGHT);
        assert!(tlbi(0).independent(tlbi(1)));
        assert!(!tlbi(0).independent(tlbi(0)));
        assert!(!tlbi(0).independent(store));
        assert!(!store.independent(store));
        let free = Footprint::new(TLBS | MEM, ALLOC);
        assert!(free.independent(tlbi(1)));
        assert!(!free.independent(free));
    }

    #[test]
    fn sync_objects_are_told_apart() {
        assert_ne!(sync_obj(0, false), sync_obj(1, false));
        assert_ne!(sync_obj(0, false), sync_obj(0, true));
        let lock = |i| Footprint::new(0, sync_obj(i, false) | PENDING_STORES);
        let seq = |i| Footprint::new(0, sync_obj(i, true));
        assert!(seq(0).independent(seq(1)));
        assert!(!seq(0).independent(seq(0)));
        // Lock handoffs all touch the pending stores.
        assert!(!lock(0).independent(lock(1)));
    }
}
