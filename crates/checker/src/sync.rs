//! Synchronisation as enabling conditions: mutexes, reader-writer locks,
//! RCU read sections and grace periods, sequence counts.
//!
//! The checker core does not know what a lock protects: an operation here
//! is enabled or not in a [`SyncState`], and changes it when it runs. A
//! thread whose next operation is not enabled simply has no transition;
//! if it can never get one the explorer reports `stuck`.

use serde::{Deserialize, Serialize};
use std::fmt;
use tlbcheck_hw::addr::Pa;
use tlbcheck_hw::mem::Pfn;

/// Index of a lock or sequence count declared by the model.
pub type SyncId = u8;

/// A synchronisation operation.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "sync", content = "arg")]
pub enum SyncOp {
    /// Takes lock `id` exclusively (mutex, spinlock, or the write side of
    /// a reader-writer lock); waits while anyone holds it.
    Lock(SyncId),
    /// Releases lock `id` held exclusively.
    Unlock(SyncId),
    /// Takes lock `id` shared (read side); waits while a writer holds it.
    ReadLock(SyncId),
    /// Releases a shared hold of lock `id`.
    ReadUnlock(SyncId),
    /// Enters an RCU read-side critical section.
    RcuReadLock,
    /// Leaves it.
    RcuReadUnlock,
    /// Queues freeing `frame` after the next grace period (call_rcu).
    CallRcuFree(Pfn),
    /// Waits for a grace period (synchronize_rcu): every reader inside a
    /// critical section when it starts must leave it.
    SynchronizeRcu,
    /// Starts a write section of sequence count `id` (the count turns odd).
    SeqWriteBegin(SyncId),
    /// Ends it (the count turns even).
    SeqWriteEnd(SyncId),
    /// Reads sequence count `id`, waiting while a write section is open;
    /// the program receives the count.
    SeqReadBegin(SyncId),
    /// Reads sequence count `id` again; the program receives the count and
    /// retries its read section if it changed.
    SeqRead(SyncId),
    /// Adds `delta` to atomic counter `id` (an `atomic_inc`/`atomic_dec` on
    /// a shared count such as `mm->tlb_flush_pending`); never waits.
    AtomicAdd(SyncId, i8),
    /// Reads atomic counter `id`; the program receives its value.
    AtomicRead(SyncId),
}

impl fmt::Display for SyncOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncOp::Lock(i) => write!(f, "lock {i}"),
            SyncOp::Unlock(i) => write!(f, "unlock {i}"),
            SyncOp::ReadLock(i) => write!(f, "read-lock {i}"),
            SyncOp::ReadUnlock(i) => write!(f, "read-unlock {i}"),
            SyncOp::RcuReadLock => f.write_str("rcu_read_lock"),
            SyncOp::RcuReadUnlock => f.write_str("rcu_read_unlock"),
            SyncOp::CallRcuFree(p) => write!(f, "call_rcu(free frame {:#x})", p.base().0),
            SyncOp::SynchronizeRcu => f.write_str("synchronize_rcu"),
            SyncOp::SeqWriteBegin(i) => write!(f, "write_seqcount_begin {i}"),
            SyncOp::SeqWriteEnd(i) => write!(f, "write_seqcount_end {i}"),
            SyncOp::SeqReadBegin(i) => write!(f, "read_seqcount_begin {i}"),
            SyncOp::SeqRead(i) => write!(f, "read_seqcount_retry {i}"),
            SyncOp::AtomicAdd(i, d) => write!(f, "atomic add {d:+} to counter {i}"),
            SyncOp::AtomicRead(i) => write!(f, "atomic read of counter {i}"),
        }
    }
}

/// Who holds a lock.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum LockState {
    /// Nobody.
    #[default]
    Free,
    /// One thread, exclusively.
    Held(u8),
    /// Readers (thread bits).
    Shared(u32),
}

/// A queued call_rcu callback.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RcuCallback {
    /// The frame it frees.
    pub frame: Pfn,
    /// Readers (thread bits) inside a critical section when it was queued;
    /// it may run once they have all left.
    pub waits_for: u32,
}

/// The synchronisation state of a model, part of the explored state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct SyncState {
    locks: Vec<LockState>,
    /// Per lock: descriptor stores (address, old value) published by its
    /// releases and still pending, which the next holder observes.
    published: Vec<Vec<(Pa, u64)>>,
    seqs: Vec<u32>,
    counters: Vec<i64>,
    /// Threads inside an RCU read-side critical section (bits).
    readers: u32,
    /// Queued callbacks, sorted: their queueing order is not observable.
    callbacks: Vec<RcuCallback>,
    /// Per thread: the readers its synchronize_rcu in progress waits for.
    grace: Vec<Option<u32>>,
}

/// Why a synchronisation operation cannot run now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// Lock `id` is held by another thread (or, for a writer, by readers).
    Lock(SyncId, LockState),
    /// A grace period waits for these readers (thread bits).
    GracePeriod(u32),
    /// Sequence count `id` is in a write section.
    SeqWrite(SyncId),
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocked::Lock(i, LockState::Held(t)) => {
                write!(f, "lock {i} is held by thread {t}")
            }
            Blocked::Lock(i, _) => write!(f, "lock {i} is held by readers"),
            Blocked::GracePeriod(r) => write!(
                f,
                "the grace period waits for RCU readers {:?}",
                bits(*r).collect::<Vec<_>>()
            ),
            Blocked::SeqWrite(i) => write!(f, "sequence count {i} is in a write section"),
        }
    }
}

fn bits(mask: u32) -> impl Iterator<Item = u32> {
    (0..32).filter(move |b| mask & (1 << b) != 0)
}

/// What a synchronisation operation did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SyncDone {
    /// It completed; `value` is what the program receives (a sequence count).
    Done {
        /// The value read, where the operation reads one.
        value: u64,
    },
    /// It started waiting (a grace period with readers to wait for): the
    /// thread stays at this operation.
    Waiting,
}

impl SyncState {
    /// A state with `locks` locks and `seqs` sequence counts, all free, for
    /// `threads` threads.
    pub fn new(locks: usize, seqs: usize, threads: usize) -> SyncState {
        SyncState {
            locks: vec![LockState::Free; locks],
            published: vec![Vec::new(); locks],
            seqs: vec![0; seqs],
            counters: Vec::new(),
            readers: 0,
            callbacks: Vec::new(),
            grace: vec![None; threads],
        }
    }

    /// Declares `n` atomic counters (ids `0..n`), all zero.
    pub fn with_counters(mut self, n: usize) -> SyncState {
        self.counters = vec![0; n];
        self
    }

    /// Number of atomic counters declared.
    pub fn counters(&self) -> usize {
        self.counters.len()
    }

    /// Whether thread `t` may run `op` now.
    pub fn enabled(&self, t: usize, op: SyncOp) -> Result<(), Blocked> {
        match op {
            SyncOp::Lock(i) => match self.locks[i as usize] {
                LockState::Free => Ok(()),
                s => Err(Blocked::Lock(i, s)),
            },
            SyncOp::ReadLock(i) => match self.locks[i as usize] {
                s @ LockState::Held(_) => Err(Blocked::Lock(i, s)),
                _ => Ok(()),
            },
            SyncOp::SynchronizeRcu => match self.grace[t] {
                Some(w) if w != 0 => Err(Blocked::GracePeriod(w)),
                _ => Ok(()),
            },
            SyncOp::SeqReadBegin(i) if self.seqs[i as usize] & 1 == 1 => Err(Blocked::SeqWrite(i)),
            // Releases, RCU read sections, call_rcu and seqcount writes
            // never wait; releasing what the thread does not hold is a
            // program error caught when it runs.
            _ => Ok(()),
        }
    }

    /// Runs `op` for thread `t` (enabled). Returns what it did, or a
    /// description of a misuse (releasing a lock the thread does not hold).
    pub fn run(&mut self, t: usize, op: SyncOp) -> Result<SyncDone, String> {
        let bit = 1u32 << t;
        let done = SyncDone::Done { value: 0 };
        match op {
            SyncOp::Lock(i) => self.locks[i as usize] = LockState::Held(t as u8),
            SyncOp::Unlock(i) => {
                if self.locks[i as usize] != LockState::Held(t as u8) {
                    return Err(format!("unlock {i}: the thread does not hold it"));
                }
                self.locks[i as usize] = LockState::Free;
            }
            SyncOp::ReadLock(i) => {
                let LockState::Shared(r) = &mut self.locks[i as usize] else {
                    self.locks[i as usize] = LockState::Shared(bit);
                    return Ok(done);
                };
                *r |= bit;
            }
            SyncOp::ReadUnlock(i) => match &mut self.locks[i as usize] {
                LockState::Shared(r) if *r & bit != 0 => {
                    *r &= !bit;
                    if *r == 0 {
                        self.locks[i as usize] = LockState::Free;
                    }
                }
                _ => return Err(format!("read-unlock {i}: the thread does not hold it")),
            },
            SyncOp::RcuReadLock => self.readers |= bit,
            SyncOp::RcuReadUnlock => {
                self.readers &= !bit;
                for cb in &mut self.callbacks {
                    cb.waits_for &= !bit;
                }
                for w in self.grace.iter_mut().flatten() {
                    *w &= !bit;
                }
            }
            SyncOp::CallRcuFree(frame) => {
                tlbcheck_hw::mem::insert_sorted(
                    &mut self.callbacks,
                    RcuCallback {
                        frame,
                        waits_for: self.readers,
                    },
                );
            }
            SyncOp::SynchronizeRcu => {
                // A grace period waits for the readers present when it
                // starts; a reader calling it waits for itself (stuck).
                let others = self.readers;
                match self.grace[t] {
                    None if others != 0 => {
                        self.grace[t] = Some(others);
                        return Ok(SyncDone::Waiting);
                    }
                    _ => self.grace[t] = None,
                }
            }
            SyncOp::SeqWriteBegin(i) | SyncOp::SeqWriteEnd(i) => {
                let odd = self.seqs[i as usize] & 1 == 1;
                if odd != matches!(op, SyncOp::SeqWriteEnd(_)) {
                    return Err(format!("{op}: the count is not in the expected phase"));
                }
                self.seqs[i as usize] = self.seqs[i as usize].wrapping_add(1);
            }
            SyncOp::SeqReadBegin(i) | SyncOp::SeqRead(i) => {
                return Ok(SyncDone::Done {
                    value: u64::from(self.seqs[i as usize]),
                })
            }
            SyncOp::AtomicAdd(i, d) => self.counters[i as usize] += i64::from(d),
            SyncOp::AtomicRead(i) => {
                return Ok(SyncDone::Done {
                    value: self.counters[i as usize] as u64,
                })
            }
        }
        Ok(done)
    }

    /// The lock `op` releases, if it releases one.
    pub fn releases(op: SyncOp) -> Option<SyncId> {
        match op {
            SyncOp::Unlock(i) | SyncOp::ReadUnlock(i) => Some(i),
            _ => None,
        }
    }

    /// The lock `op` takes, if it takes one.
    pub fn acquires(op: SyncOp) -> Option<SyncId> {
        match op {
            SyncOp::Lock(i) | SyncOp::ReadLock(i) => Some(i),
            _ => None,
        }
    }

    /// A release of lock `id` publishes `stores` (the releaser's pending
    /// descriptor stores); `still_pending` says which earlier publications
    /// are still pending, so the list holds nothing stale.
    pub fn publish(
        &mut self,
        id: SyncId,
        stores: Vec<(Pa, u64)>,
        still_pending: impl Fn(&(Pa, u64)) -> bool,
    ) {
        let list = &mut self.published[id as usize];
        list.retain(|s| still_pending(s));
        for s in stores {
            tlbcheck_hw::mem::insert_sorted(list, s);
        }
    }

    /// What the holder of lock `id` has observed through it.
    pub fn published(&self, id: SyncId) -> &[(Pa, u64)] {
        &self.published[id as usize]
    }

    /// Callbacks whose grace period is over, by position.
    pub fn ready_callbacks(&self) -> impl Iterator<Item = usize> + '_ {
        self.callbacks
            .iter()
            .enumerate()
            .filter(|(_, cb)| cb.waits_for == 0)
            .map(|(i, _)| i)
    }

    /// The callback at position `i`.
    pub fn callback(&self, i: usize) -> RcuCallback {
        self.callbacks[i]
    }

    /// Removes and returns the callback at position `i` (it runs).
    pub fn take_callback(&mut self, i: usize) -> RcuCallback {
        self.callbacks.remove(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mutex_excludes_a_second_holder_until_released() {
        let mut s = SyncState::new(1, 0, 2);
        assert_eq!(s.enabled(0, SyncOp::Lock(0)), Ok(()));
        s.run(0, SyncOp::Lock(0)).unwrap();
        assert_eq!(
            s.enabled(1, SyncOp::Lock(0)),
            Err(Blocked::Lock(0, LockState::Held(0)))
        );
        assert!(s.run(1, SyncOp::Unlock(0)).is_err(), "not the holder");
        s.run(0, SyncOp::Unlock(0)).unwrap();
        assert_eq!(s.enabled(1, SyncOp::Lock(0)), Ok(()));
    }

    #[test]
    fn readers_share_a_rwlock_and_exclude_a_writer() {
        let mut s = SyncState::new(1, 0, 3);
        s.run(0, SyncOp::ReadLock(0)).unwrap();
        assert_eq!(s.enabled(1, SyncOp::ReadLock(0)), Ok(()));
        s.run(1, SyncOp::ReadLock(0)).unwrap();
        assert!(s.enabled(2, SyncOp::Lock(0)).is_err());
        s.run(0, SyncOp::ReadUnlock(0)).unwrap();
        assert!(s.enabled(2, SyncOp::Lock(0)).is_err(), "one reader left");
        s.run(1, SyncOp::ReadUnlock(0)).unwrap();
        s.run(2, SyncOp::Lock(0)).unwrap();
        assert!(
            s.enabled(0, SyncOp::ReadLock(0)).is_err(),
            "writer holds it"
        );
    }

    #[test]
    fn a_grace_period_waits_for_readers_present_at_its_start_only() {
        let mut s = SyncState::new(0, 0, 3);
        s.run(1, SyncOp::RcuReadLock).unwrap();
        assert_eq!(s.run(0, SyncOp::SynchronizeRcu), Ok(SyncDone::Waiting));
        assert_eq!(
            s.enabled(0, SyncOp::SynchronizeRcu),
            Err(Blocked::GracePeriod(0b10))
        );
        // A reader arriving later does not extend it.
        s.run(2, SyncOp::RcuReadLock).unwrap();
        s.run(1, SyncOp::RcuReadUnlock).unwrap();
        assert_eq!(s.enabled(0, SyncOp::SynchronizeRcu), Ok(()));
        assert_eq!(
            s.run(0, SyncOp::SynchronizeRcu),
            Ok(SyncDone::Done { value: 0 })
        );
    }

    #[test]
    fn a_reader_waiting_for_its_own_grace_period_never_proceeds() {
        let mut s = SyncState::new(0, 0, 1);
        s.run(0, SyncOp::RcuReadLock).unwrap();
        assert_eq!(s.run(0, SyncOp::SynchronizeRcu), Ok(SyncDone::Waiting));
        assert_eq!(
            s.enabled(0, SyncOp::SynchronizeRcu),
            Err(Blocked::GracePeriod(1))
        );
    }

    #[test]
    fn callbacks_run_after_their_readers_leave_whatever_the_queue_order() {
        let mut a = SyncState::new(0, 0, 2);
        a.run(0, SyncOp::RcuReadLock).unwrap();
        a.run(1, SyncOp::CallRcuFree(Pfn(7))).unwrap();
        assert_eq!(a.ready_callbacks().count(), 0);
        a.run(1, SyncOp::CallRcuFree(Pfn(5))).unwrap();
        a.run(0, SyncOp::RcuReadUnlock).unwrap();
        assert_eq!(a.ready_callbacks().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(a.take_callback(0).frame, Pfn(5), "sorted");
    }

    #[test]
    fn a_seqcount_reader_waits_out_a_write_section_and_sees_the_change() {
        let mut s = SyncState::new(0, 1, 2);
        let read = |s: &mut SyncState, op| match s.run(1, op) {
            Ok(SyncDone::Done { value }) => value,
            r => panic!("{r:?}"),
        };
        let begin = read(&mut s, SyncOp::SeqReadBegin(0));
        s.run(0, SyncOp::SeqWriteBegin(0)).unwrap();
        assert_eq!(
            s.enabled(1, SyncOp::SeqReadBegin(0)),
            Err(Blocked::SeqWrite(0))
        );
        s.run(0, SyncOp::SeqWriteEnd(0)).unwrap();
        assert_ne!(read(&mut s, SyncOp::SeqRead(0)), begin, "retry");
        assert!(s.run(0, SyncOp::SeqWriteEnd(0)).is_err(), "not open");
    }

    #[test]
    fn an_atomic_counter_counts_concurrent_holders() {
        let mut s = SyncState::new(0, 0, 2).with_counters(1);
        s.run(0, SyncOp::AtomicAdd(0, 1)).unwrap();
        s.run(1, SyncOp::AtomicAdd(0, 1)).unwrap();
        assert_eq!(
            s.run(1, SyncOp::AtomicRead(0)),
            Ok(SyncDone::Done { value: 2 })
        );
        s.run(0, SyncOp::AtomicAdd(0, -1)).unwrap();
        assert_eq!(
            s.run(1, SyncOp::AtomicRead(0)),
            Ok(SyncDone::Done { value: 1 })
        );
    }
}
