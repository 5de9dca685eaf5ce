//! SMMU queues in simulated memory: the Command queue (software produces,
//! SMMU consumes) and the Event queue (SMMU produces).
//!
//! A queue of `2^log2size` entries has PROD and CONS indices with one extra
//! wrap bit above the index, so that full (same index, different wrap) and
//! empty (equal) differ (SMMUv3 3.5.1, 6.3.26-6.3.29).

use crate::addr::Pa;
use crate::mem::{MemError, PhysMem};
use serde::{Deserialize, Serialize};

/// Command-queue error codes in `SMMU_CMDQ_CONS.ERR` (SMMUv3 6.3.28, 7.1).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CmdqError {
    /// 0x01 CERROR_ILL: an illegal or unknown command.
    Ill = 1,
    /// 0x02 CERROR_ABT: an abort reading the command.
    Abt = 2,
    /// 0x03 CERROR_ATC_INV_SYNC: an ATC invalidation timed out.
    AtcInvSync = 3,
}

/// A circular queue's registers: base, size, PROD and CONS.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ring {
    /// Physical address of entry 0.
    pub base: u64,
    /// log2 of the number of entries.
    pub log2size: u8,
    /// Bytes per entry (16 for commands, 32 for events).
    pub entry_bytes: u8,
    /// PROD: index and wrap bit.
    pub prod: u32,
    /// CONS: index and wrap bit.
    pub cons: u32,
}

impl Ring {
    /// An empty ring.
    pub const fn new(base: u64, log2size: u8, entry_bytes: u8) -> Ring {
        Ring {
            base,
            log2size,
            entry_bytes,
            prod: 0,
            cons: 0,
        }
    }

    fn mask(&self) -> u32 {
        (1u32 << self.log2size) - 1
    }

    fn wrap(&self) -> u32 {
        1u32 << self.log2size
    }

    /// Whether PROD == CONS (index and wrap).
    pub fn is_empty(&self) -> bool {
        self.prod == self.cons
    }

    /// Same index, different wrap bit (SMMUv3 3.5.1).
    pub fn is_full(&self) -> bool {
        self.prod & self.mask() == self.cons & self.mask()
            && self.prod & self.wrap() != self.cons & self.wrap()
    }

    /// Index (without wrap) of a pointer.
    pub fn index(&self, ptr: u32) -> u32 {
        ptr & self.mask()
    }

    /// The pointer after `ptr`, flipping the wrap bit at the end.
    pub fn next(&self, ptr: u32) -> u32 {
        (ptr + 1) & (self.mask() | self.wrap())
    }

    /// Address of the entry `ptr` names.
    pub fn slot(&self, ptr: u32) -> Pa {
        Pa(self.base + u64::from(self.index(ptr)) * u64::from(self.entry_bytes))
    }
}

/// The Command queue with its error state (SMMUv3 3.5.1, 7.1).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CmdQueue {
    /// Registers.
    pub ring: Ring,
    /// `SMMU_CMDQ_CONS.ERR` once a command error stopped consumption; CONS
    /// then names the offending command (SMMUv3 7.1).
    pub error: Option<CmdqError>,
}

impl CmdQueue {
    /// An empty queue of `2^log2size` 16-byte commands at `base`.
    pub const fn new(base: u64, log2size: u8) -> CmdQueue {
        CmdQueue {
            ring: Ring::new(base, log2size, 16),
            error: None,
        }
    }

    /// Software writes `cmd` at PROD and advances PROD (the writes are made
    /// visible before PROD moves, as Linux does with `dma_wmb`). Errors if
    /// the queue is full.
    pub fn produce(&mut self, mem: &mut PhysMem, cmd: [u64; 2]) -> Result<(), QueueFull> {
        if self.ring.is_full() {
            return Err(QueueFull);
        }
        let at = self.ring.slot(self.ring.prod);
        write_words(mem, at, &cmd).map_err(|_| QueueFull)?;
        self.ring.prod = self.ring.next(self.ring.prod);
        Ok(())
    }

    /// The command at CONS, if the SMMU may consume one.
    pub fn peek(&self, mem: &PhysMem) -> Option<[u64; 2]> {
        if self.error.is_some() || self.ring.is_empty() {
            return None;
        }
        let at = self.ring.slot(self.ring.cons);
        Some([mem.read(at), mem.read(Pa(at.0 + 8))])
    }

    /// The SMMU has consumed the command at CONS.
    pub fn advance(&mut self) {
        self.ring.cons = self.ring.next(self.ring.cons);
    }

    /// Index of CONS (the offending command while `error` is set).
    pub fn cons_index(&self) -> u32 {
        self.ring.index(self.ring.cons)
    }

    /// Software acknowledges a command error (SMMU_GERRORN, SMMUv3 7.1),
    /// after optionally overwriting the offending command (Linux writes a
    /// CMD_SYNC there, `arm_smmu_cmdq_skip_err`); consumption resumes at CONS.
    pub fn acknowledge_error(&mut self, mem: &mut PhysMem, replacement: Option<[u64; 2]>) {
        if let Some(cmd) = replacement {
            let at = self.ring.slot(self.ring.cons);
            // The slot is inside the queue, which set-up placed in memory.
            let _ = write_words(mem, at, &cmd);
        }
        self.error = None;
    }
}

/// The queue has no free slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the queue is full")]
pub struct QueueFull;

/// The Event queue: the SMMU writes 32-byte records at PROD (SMMUv3 7.2).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EventQueue {
    /// Registers.
    pub ring: Ring,
    /// Set when a record was lost because the queue was full
    /// (`SMMU_EVENTQ_PROD.OVFLG`, SMMUv3 7.2.2).
    pub overflow: bool,
}

impl EventQueue {
    /// An empty queue of `2^log2size` records at `base`.
    pub const fn new(base: u64, log2size: u8) -> EventQueue {
        EventQueue {
            ring: Ring::new(base, log2size, 32),
            overflow: false,
        }
    }

    /// The SMMU records `words`; a full queue drops it and sets the
    /// overflow flag (SMMUv3 7.2.2).
    pub fn push(&mut self, mem: &mut PhysMem, words: [u64; 4]) {
        if self.ring.is_full() {
            self.overflow = true;
            return;
        }
        let at = self.ring.slot(self.ring.prod);
        if write_words(mem, at, &words).is_ok() {
            self.ring.prod = self.ring.next(self.ring.prod);
        }
    }

    /// Software reads every unconsumed record and advances CONS.
    pub fn drain(&mut self, mem: &PhysMem) -> Vec<[u64; 4]> {
        let mut out = Vec::new();
        while !self.ring.is_empty() {
            let at = self.ring.slot(self.ring.cons).0;
            out.push([0, 1, 2, 3].map(|i| mem.read(Pa(at + 8 * i))));
            self.ring.cons = self.ring.next(self.ring.cons);
        }
        out
    }

    /// Records written and not yet drained, oldest first (without consuming).
    pub fn pending(&self, mem: &PhysMem) -> Vec<[u64; 4]> {
        let mut copy = *self;
        copy.drain(mem)
    }
}

fn write_words(mem: &mut PhysMem, at: Pa, words: &[u64]) -> Result<(), MemError> {
    for (i, w) in words.iter().enumerate() {
        mem.write(Pa(at.0 + 8 * i as u64), *w)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::Pfn;

    #[test]
    fn wrap_bit_distinguishes_full_from_empty() {
        let mut mem = PhysMem::new(Pfn(0x100), 4);
        let mut q = CmdQueue::new(0x10_0000, 1);
        q.produce(&mut mem, [1, 2]).unwrap();
        q.produce(&mut mem, [3, 4]).unwrap();
        assert!(q.ring.is_full());
        assert_eq!(q.produce(&mut mem, [5, 6]), Err(QueueFull));
        assert_eq!(q.peek(&mem), Some([1, 2]));
        q.advance();
        q.produce(&mut mem, [5, 6]).unwrap();
        assert_eq!(q.ring.prod, 0b11, "index 1 with the wrap bit set");
        assert_eq!(mem.read(Pa(0x10_0000)), 5, "slot 0 reused");
    }
}
