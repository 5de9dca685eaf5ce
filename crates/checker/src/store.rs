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

use crate::model::{Model, State};
use crate::program::ProgState;
use crate::sync::SyncState;
use hashbrown::HashTable;
use rustc_hash::FxHasher;
use std::hash::{Hash, Hasher};
use tlbcheck_hw::machine::{Cpu, Machine, PendingTlbi};
use tlbcheck_hw::mem::PhysMem;
use tlbcheck_hw::plist::PList;
use tlbcheck_hw::smmu::model::Smmu;
use tlbcheck_hw::tlb::MayHold;

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

    fn get(&self, id: u32) -> &T {
        &self.items[id as usize]
    }
}

/// A state taken apart into components, with their hashes computed (this
/// is the part of storing that can run in parallel).
pub struct Parts {
    mem: (PhysMem, u64),
    threads: (Vec<ProgState>, u64),
    sync: (SyncState, u64),
    smmu: (Option<Box<Smmu>>, u64),
    tlbs: Vec<(MayHold, u64)>,
    pending: Vec<(PList<PendingTlbi>, u64)>,
}

impl Parts {
    /// Takes `s` apart.
    pub fn of(s: State) -> Parts {
        let Machine {
            mem,
            cpus,
            pending,
            smmu,
        } = s.machine;
        Parts {
            mem: with_hash(mem),
            threads: with_hash(s.threads),
            sync: with_hash(s.sync),
            smmu: with_hash(smmu),
            tlbs: cpus.into_iter().map(|c| with_hash(c.tlb)).collect(),
            pending: pending.into_iter().map(with_hash).collect(),
        }
    }
}

fn with_hash<T: Hash>(x: T) -> (T, u64) {
    let h = fx(&x);
    (x, h)
}

/// Every stored state, as rows of component ids, deduplicated.
pub struct StateStore {
    mems: Interner<PhysMem>,
    threads: Interner<Vec<ProgState>>,
    syncs: Interner<SyncState>,
    smmus: Interner<Option<Box<Smmu>>>,
    tlbs: Interner<MayHold>,
    pendings: Interner<PList<PendingTlbi>>,
    /// Rows of `width` ids, one per stored state.
    rows: Vec<u32>,
    width: usize,
    /// Stored state ids by row hash.
    index: HashTable<u32>,
    /// The CPUs' fixed parts (their contexts), from the initial state.
    cpus: Vec<Cpu>,
}

impl StateStore {
    /// An empty store for states of `model`.
    pub fn new(model: &Model) -> StateStore {
        let n = model.machine.cpus.len();
        StateStore {
            mems: Interner::new(),
            threads: Interner::new(),
            syncs: Interner::new(),
            smmus: Interner::new(),
            tlbs: Interner::new(),
            pendings: Interner::new(),
            rows: Vec::new(),
            width: 4 + 2 * n,
            index: HashTable::new(),
            cpus: model.machine.cpus.clone(),
        }
    }

    /// Distinct values per component kind (memory, threads, sync, SMMU,
    /// may-hold sets, in-flight TLBI lists).
    pub fn distinct(&self) -> [usize; 6] {
        [
            self.mems.items.len(),
            self.threads.items.len(),
            self.syncs.items.len(),
            self.smmus.items.len(),
            self.tlbs.items.len(),
            self.pendings.items.len(),
        ]
    }

    /// Number of states stored.
    pub fn len(&self) -> usize {
        self.rows.len() / self.width
    }

    /// Whether no state is stored.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn row(&self, id: u32) -> &[u32] {
        let w = self.width;
        &self.rows[id as usize * w..(id as usize + 1) * w]
    }

    /// Stores `parts` unless an equal state is stored: `Ok(new id)` or
    /// `Err(existing id)`.
    pub fn insert(&mut self, p: Parts) -> Result<u32, u32> {
        let start = self.rows.len();
        let ids = [
            self.mems.intern(p.mem.0, p.mem.1),
            self.threads.intern(p.threads.0, p.threads.1),
            self.syncs.intern(p.sync.0, p.sync.1),
            self.smmus.intern(p.smmu.0, p.smmu.1),
        ];
        self.rows.extend_from_slice(&ids);
        for (t, h) in p.tlbs {
            let id = self.tlbs.intern(t, h);
            self.rows.push(id);
        }
        for (l, h) in p.pending {
            let id = self.pendings.intern(l, h);
            self.rows.push(id);
        }
        let h = fx(&self.rows[start..]);
        let (rows, w) = (&self.rows, self.width);
        let same = |&id: &u32| rows[id as usize * w..(id as usize + 1) * w] == rows[start..];
        if let Some(&old) = self.index.find(h, same) {
            self.rows.truncate(start);
            return Err(old);
        }
        let id = (start / w) as u32;
        let rows = &self.rows;
        self.index
            .insert_unique(h, id, |&i| fx(&rows[i as usize * w..(i as usize + 1) * w]));
        Ok(id)
    }

    /// The stored state `id`, rebuilt.
    pub fn get(&self, id: u32) -> State {
        let r = self.row(id);
        let n = self.cpus.len();
        let cpus = self
            .cpus
            .iter()
            .zip(&r[4..4 + n])
            .map(|(c, &t)| Cpu {
                contexts: c.contexts.clone(),
                tlb: self.tlbs.get(t).clone(),
            })
            .collect();
        State {
            machine: Machine {
                mem: self.mems.get(r[0]).clone(),
                cpus,
                pending: r[4 + n..]
                    .iter()
                    .map(|&l| self.pendings.get(l).clone())
                    .collect(),
                smmu: self.smmus.get(r[3]).clone(),
            },
            threads: self.threads.get(r[1]).clone(),
            sync: self.syncs.get(r[2]).clone(),
        }
    }
}
