//! Compact storage of explored states.
//!
//! A state is split into components (memory, each CPU's may-hold set, each
//! CPU's TLBIs in flight, the SMMU, the threads' program states, the
//! synchronisation state). Each distinct component value is stored once,
//! in an interner, and a stored state is the row of its components'
//! 32-bit ids. Most steps change one or two components, so a new state
//! costs a row plus whatever is really new. Deduplication compares rows:
//! two rows are equal exactly when the states are (components are compared
//! in full when they are interned, never by hash alone).

use crate::model::{Choice, Model, State};
use crate::program::ProgState;
use crate::sync::SyncState;
use hashbrown::HashTable;
use rustc_hash::FxHasher;
use std::hash::{Hash, Hasher};
use tlbcheck_hw::machine::{Cpu, Machine, PendingTlbi};
use tlbcheck_hw::mem::PhysMem;
use tlbcheck_hw::plist::PList;
use tlbcheck_hw::smmu::model::Smmu;
use tlbcheck_hw::tlb::{MayHold, Provenance, TlbEntry};

/// The hash the store uses for everything.
pub fn fx<T: Hash + ?Sized>(x: &T) -> u64 {
    let mut h = FxHasher::default();
    x.hash(&mut h);
    h.finish()
}

/// Distinct values of one component type, each stored once under an id.
struct Interner<T> {
    items: Vec<T>,
    hashes: Vec<u64>,
    table: HashTable<u32>,
}

impl<T: Eq> Interner<T> {
    fn new() -> Self {
        Interner {
            items: Vec::new(),
            hashes: Vec::new(),
            table: HashTable::new(),
        }
    }

    /// The id of `x` (whose hash is `h`), storing it if new.
    fn intern(&mut self, x: T, h: u64) -> u32 {
        let items = &self.items;
        if let Some(&id) = self.table.find(h, |&id| items[id as usize] == x) {
            return id;
        }
        let id = self.items.len() as u32;
        self.items.push(x);
        self.hashes.push(h);
        let hashes = &self.hashes;
        self.table.insert_unique(h, id, |&i| hashes[i as usize]);
        id
    }

    /// The id of `x` (whose hash is `h`) if it is stored.
    fn find(&self, x: &T, h: u64) -> Option<u32> {
        let items = &self.items;
        self.table.find(h, |&id| items[id as usize] == *x).copied()
    }

    fn get(&self, id: u32) -> &T {
        &self.items[id as usize]
    }
}

/// A state taken apart into components, with their hashes computed (this
/// is the part of storing that can run in parallel).
pub struct Parts {
    mem: (PhysMem, u64),
    threads: Vec<(ProgState, u64)>,
    sync: (SyncState, u64),
    smmu: (Option<Box<Smmu>>, u64),
    tlbs: (Vec<MayHold>, u64),
    pending: (InFlight, u64),
    /// Ids of the components found stored by [`StateStore::resolve`], in
    /// row order (empty until then).
    found: Vec<Option<u32>>,
}

/// The CPUs' TLBIs in flight and the entries their completed TLBIs removed
/// that their own accesses may still use until an ISB
/// ([`Machine::unsynced`]): one component, as both change at a DSB.
type InFlight = (
    Vec<PList<PendingTlbi>>,
    Option<Vec<Vec<(TlbEntry, Provenance)>>>,
);

impl Parts {
    /// Takes `s` apart.
    pub fn of(s: State) -> Parts {
        let Machine {
            mem,
            cpus,
            pending,
            smmu,
            unsynced,
        } = s.machine;
        Parts {
            mem: with_hash(mem),
            threads: s.threads.into_iter().map(with_hash).collect(),
            sync: with_hash(s.sync),
            smmu: with_hash(smmu),
            tlbs: with_hash(cpus.into_iter().map(|c| c.tlb).collect()),
            pending: with_hash((pending, unsynced)),
            found: Vec::new(),
        }
    }
}

fn with_hash<T: Hash>(x: T) -> (T, u64) {
    let h = fx(&x);
    (x, h)
}

/// Rows in fixed-size chunks: growing never copies what is stored, so
/// memory stays at what the rows take (no doubling of one large vector).
/// Each row is `width` component ids followed by [`META`] words the
/// explorer keeps per state (parent, choice, sleep set).
#[derive(Default)]
struct Rows {
    chunks: Vec<Vec<u32>>,
    len: usize,
}

/// The widest row: the five machine components and one id per thread.
const ROW_MAX: usize = 5 + crate::builder::MAX_THREADS;

/// Rows per chunk.
const CHUNK_ROWS: usize = 1 << 14;

/// Words per row after the ids: parent id, the choice that led here, the
/// sleep set.
const META: usize = 3;

impl Rows {
    fn full(&self, id: u32, width: usize) -> &[u32] {
        let (c, i) = (id as usize / CHUNK_ROWS, id as usize % CHUNK_ROWS);
        let stride = width + META;
        &self.chunks[c][i * stride..(i + 1) * stride]
    }

    fn full_mut(&mut self, id: u32, width: usize) -> &mut [u32] {
        let (c, i) = (id as usize / CHUNK_ROWS, id as usize % CHUNK_ROWS);
        let stride = width + META;
        &mut self.chunks[c][i * stride..(i + 1) * stride]
    }

    fn get(&self, id: u32, width: usize) -> &[u32] {
        &self.full(id, width)[..width]
    }

    fn push(&mut self, row: &[u32], width: usize) -> u32 {
        if self.len % CHUNK_ROWS == 0 {
            self.chunks
                .push(Vec::with_capacity(CHUNK_ROWS * (width + META)));
        }
        let chunk = self.chunks.last_mut().expect("a chunk with room");
        chunk.extend_from_slice(row);
        chunk.extend([0; META]);
        self.len += 1;
        (self.len - 1) as u32
    }
}

/// A choice as one word.
fn encode(c: Choice) -> u32 {
    match c {
        Choice::Thread(t) => u32::from(t),
        Choice::RcuCallback(i) => 0x100 | u32::from(i),
    }
}

fn decode(w: u32) -> Choice {
    if w & 0x100 == 0 {
        Choice::Thread(w as u8)
    } else {
        Choice::RcuCallback(w as u8)
    }
}

/// Every stored state, as rows of component ids, deduplicated. A row is
/// memory, sync, SMMU, the CPUs' may-hold sets, the CPUs' TLBIs in flight,
/// then each thread's program state, interned one by one: a row costs four
/// bytes per thread however many positions the threads take.
pub struct StateStore {
    mems: Interner<PhysMem>,
    progs: Interner<ProgState>,
    syncs: Interner<SyncState>,
    smmus: Interner<Option<Box<Smmu>>>,
    tlbs: Interner<Vec<MayHold>>,
    pendings: Interner<InFlight>,
    /// Rows of `width` ids, one per stored state.
    rows: Rows,
    width: usize,
    /// Stored state ids by row hash.
    index: HashTable<u32>,
    /// The CPUs' fixed parts (their contexts), from the initial state.
    cpus: Vec<Cpu>,
    /// A row being built (kept to reuse its allocation).
    scratch: Vec<u32>,
}

impl StateStore {
    /// An empty store for states of `model`.
    pub fn new(model: &Model) -> StateStore {
        StateStore {
            mems: Interner::new(),
            progs: Interner::new(),
            syncs: Interner::new(),
            smmus: Interner::new(),
            tlbs: Interner::new(),
            pendings: Interner::new(),
            rows: Rows::default(),
            width: 5 + model.threads.len(),
            index: HashTable::new(),
            cpus: model.machine.cpus.clone(),
            scratch: Vec::new(),
        }
    }

    /// Distinct values per component kind (memory, program states, sync, SMMU,
    /// may-hold sets, in-flight TLBI lists).
    pub fn distinct(&self) -> [usize; 6] {
        [
            self.mems.items.len(),
            self.progs.items.len(),
            self.syncs.items.len(),
            self.smmus.items.len(),
            self.tlbs.items.len(),
            self.pendings.items.len(),
        ]
    }

    /// Bytes held by the rows and the index (capacity, not use).
    pub fn table_bytes(&self) -> usize {
        self.rows
            .chunks
            .iter()
            .map(|c| c.capacity() * 4)
            .sum::<usize>()
            + self.index.capacity() * 5
    }

    /// Number of states stored.
    pub fn len(&self) -> usize {
        self.rows.len
    }

    /// Whether no state is stored.
    pub fn is_empty(&self) -> bool {
        self.rows.len == 0
    }

    fn row(&self, id: u32) -> &[u32] {
        self.rows.get(id, self.width)
    }

    /// Looks up the components of `p` without storing anything (the part
    /// of deduplication the expanding threads can share): the id of the
    /// equal stored state if there is one; otherwise `p` keeps the ids found,
    /// so that [`StateStore::insert`] interns only what is new.
    pub fn resolve(&self, p: &mut Parts) -> Option<u32> {
        let mut found = Vec::with_capacity(5 + p.threads.len());
        found.extend([
            self.mems.find(&p.mem.0, p.mem.1),
            self.syncs.find(&p.sync.0, p.sync.1),
            self.smmus.find(&p.smmu.0, p.smmu.1),
            self.tlbs.find(&p.tlbs.0, p.tlbs.1),
            self.pendings.find(&p.pending.0, p.pending.1),
        ]);
        found.extend(p.threads.iter().map(|(t, h)| self.progs.find(t, *h)));
        // What is stored already is freed here, by the expanding thread,
        // rather than by the one that stores.
        if found[1].is_some() {
            drop(std::mem::take(&mut p.sync.0));
        }
        if found[2].is_some() {
            drop(p.smmu.0.take());
        }
        if found[3].is_some() {
            drop(std::mem::take(&mut p.tlbs.0));
        }
        if found[4].is_some() {
            drop(std::mem::take(&mut p.pending.0));
        }
        // The row on the stack: this runs once per successor.
        let mut buf = [0u32; ROW_MAX];
        let complete = found.len() <= ROW_MAX
            && found
                .iter()
                .zip(buf.iter_mut())
                .all(|(f, b)| f.map(|id| *b = id).is_some());
        let n = found.len();
        p.found = found;
        if !complete {
            return None;
        }
        let row = &buf[..n];
        let (rows, w) = (&self.rows, self.width);
        self.index
            .find(fx(row), |&id| rows.get(id, w) == row)
            .copied()
    }

    /// Stores `parts` unless an equal state is stored: `Ok(new id)` or
    /// `Err(existing id)`. Components [`StateStore::resolve`] found are not
    /// looked up again (ids never change once given).
    pub fn insert(&mut self, p: Parts) -> Result<u32, u32> {
        let known = |i: usize| p.found.get(i).copied().flatten();
        let mut row = std::mem::take(&mut self.scratch);
        row.clear();
        row.extend([
            known(0).unwrap_or_else(|| self.mems.intern(p.mem.0, p.mem.1)),
            known(1).unwrap_or_else(|| self.syncs.intern(p.sync.0, p.sync.1)),
            known(2).unwrap_or_else(|| self.smmus.intern(p.smmu.0, p.smmu.1)),
            known(3).unwrap_or_else(|| self.tlbs.intern(p.tlbs.0, p.tlbs.1)),
            known(4).unwrap_or_else(|| self.pendings.intern(p.pending.0, p.pending.1)),
        ]);
        for (i, (t, h)) in p.threads.into_iter().enumerate() {
            row.push(known(5 + i).unwrap_or_else(|| self.progs.intern(t, h)));
        }
        let r = self.index_row(&row);
        self.scratch = row;
        r
    }

    /// Stores `row` unless it repeats a stored one.
    fn index_row(&mut self, row: &[u32]) -> Result<u32, u32> {
        let h = fx(row);
        let (rows, w) = (&self.rows, self.width);
        if let Some(&old) = self.index.find(h, |&id| rows.get(id, w) == row) {
            return Err(old);
        }
        let id = self.rows.push(row, w);
        let rows = &self.rows;
        self.index.insert_unique(h, id, |&i| fx(rows.get(i, w)));
        Ok(id)
    }

    /// Records how state `id` was first reached and its sleep set.
    pub fn set_origin(&mut self, id: u32, parent: u32, c: Choice, sleep: u32) {
        let w = self.width;
        self.rows.full_mut(id, w)[w..].copy_from_slice(&[parent, encode(c), sleep]);
    }

    /// The state `id` was first reached from, and by which choice.
    pub fn parent(&self, id: u32) -> (u32, Choice) {
        let m = &self.rows.full(id, self.width)[self.width..];
        (m[0], decode(m[1]))
    }

    /// The sleep set of state `id` (threads whose step need not be
    /// explored from it).
    pub fn sleep(&self, id: u32) -> u32 {
        self.rows.full(id, self.width)[self.width + 2]
    }

    /// Narrows the sleep set of state `id`.
    pub fn set_sleep(&mut self, id: u32, sleep: u32) {
        let w = self.width;
        self.rows.full_mut(id, w)[w + 2] = sleep;
    }

    /// The stored state `id`, rebuilt.
    pub fn get(&self, id: u32) -> State {
        let r = self.row(id);
        let cpus = self
            .cpus
            .iter()
            .zip(self.tlbs.get(r[3]))
            .map(|(c, t)| Cpu {
                contexts: c.contexts.clone(),
                tlb: t.clone(),
            })
            .collect();
        State {
            machine: Machine {
                mem: self.mems.get(r[0]).clone(),
                cpus,
                pending: self.pendings.get(r[4]).0.clone(),
                smmu: self.smmus.get(r[2]).clone(),
                unsynced: self.pendings.get(r[4]).1.clone(),
            },
            threads: r[5..].iter().map(|&t| *self.progs.get(t)).collect(),
            sync: self.syncs.get(r[1]).clone(),
        }
    }
}
