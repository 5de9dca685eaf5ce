//! Fixtures shared by the workspace's tests and benchmarks (feature
//! `testing`): contexts, the usual chain of 4K tables, multi-word writes and
//! an SMMU with default queues, each of which several test files used to
//! build by hand.
//!
//! ```
//! use tlbcheck_hw::addr::{Granule, Va};
//! use tlbcheck_hw::mem::{Pfn, PhysMem};
//! use tlbcheck_hw::testing::{chain4k, s1_ctx};
//! use tlbcheck_hw::tlb::Access;
//! use tlbcheck_hw::vmsa::desc::s1_page;
//! use tlbcheck_hw::vmsa::walk::translate;
//!
//! let mut mem = PhysMem::new(Pfn(0x100), 8);
//! let l3 = chain4k(&mut mem, 0x10_0000);
//! mem.write(tlbcheck_hw::addr::Pa(l3), s1_page(0x10_4000, true, false, false)).unwrap();
//! let ctx = s1_ctx(Granule::K4, 0x10_0000, 1, 0);
//! let t = translate(&mem, &ctx, Va(0x123), Access { write: false, user: false }).unwrap();
//! assert_eq!(t.pa.0, 0x10_4123);
//! ```

use crate::addr::{Granule, Pa};
use crate::mem::{FrameOwner, Pfn, PhysMem, TableOwner};
use crate::smmu::config::StrtabConfig;
use crate::smmu::model::{Device, Smmu, SmmuOptions};
use crate::smmu::queue::{CmdQueue, EventQueue};
use crate::tlb::Regime;
use crate::vmsa::desc::table;
use crate::vmsa::{Context, StageConfig};

/// An EL1&0 stage-1 context on `granule` tables at `ttb`, tagged `asid`
/// and `vmid`.
pub fn s1_ctx(granule: Granule, ttb: u64, asid: u16, vmid: u16) -> Context {
    Context {
        regime: Regime::El10,
        asid,
        vmid,
        s1: Some(StageConfig::new(granule, ttb)),
        s2: None,
    }
}

/// An EL1&0 stage-2-only context of VM `vmid` on `granule` tables at `ttb`.
pub fn s2_ctx(granule: Granule, ttb: u64, vmid: u16) -> Context {
    Context {
        regime: Regime::El10,
        asid: 0,
        vmid,
        s1: None,
        s2: Some(StageConfig::new(granule, ttb)),
    }
}

/// An EL1&0 nested context: stage 1 `s1` (its tables at IPAs) under stage
/// 2 `s2`, tagged `asid` and `vmid`.
pub fn nested_ctx(s1: StageConfig, s2: StageConfig, asid: u16, vmid: u16) -> Context {
    Context {
        regime: Regime::El10,
        asid,
        vmid,
        s1: Some(s1),
        s2: Some(s2),
    }
}

/// Writes `words` to consecutive 64-bit words from `pa` (an STE, a CD).
///
/// # Panics
///
/// If `pa` is not 8-byte aligned.
pub fn put_words(mem: &mut PhysMem, pa: u64, words: &[u64]) {
    for (i, w) in words.iter().enumerate() {
        mem.write(Pa(pa + 8 * i as u64), *w).expect("aligned word");
    }
}

/// Four 4K tables in the consecutive frames from `l0`, each one's entry 0
/// pointing at the next: the first 2 MiB of input addresses walk through
/// them (levels 0 to 3, either stage). Returns the level-3 table's address.
///
/// # Panics
///
/// If `l0` is not 8-byte aligned.
pub fn chain4k(mem: &mut PhysMem, l0: u64) -> u64 {
    for level in 0..3u64 {
        let here = l0 + level * 0x1000;
        mem.write(Pa(here), table(here + 0x1000))
            .expect("aligned table");
    }
    l0 + 0x3000
}

/// Claims the four frames of a [`chain4k`] from `l0` for `owner`, as its
/// tables of levels 0 to 3.
///
/// # Panics
///
/// If one of them is not a free pool frame.
pub fn claim_chain4k(mem: &mut PhysMem, l0: u64, owner: TableOwner) {
    for level in 0..4u8 {
        let pfn = Pfn::of(Pa(l0 + u64::from(level) * 0x1000));
        mem.claim(pfn, FrameOwner::Table { owner, level })
            .expect("a free pool frame");
    }
}

/// An SMMU with the Stream table `strtab` and one-frame queues (256
/// commands at `cmdq`, 128 events at `evtq`), reading `mem`.
pub fn smmu(
    opts: SmmuOptions,
    strtab: StrtabConfig,
    cmdq: u64,
    evtq: u64,
    devices: Vec<Device>,
    mem: &PhysMem,
) -> Smmu {
    Smmu::new(
        opts,
        strtab,
        CmdQueue::new(cmdq, 8),
        EventQueue::new(evtq, 7),
        devices,
        mem,
    )
}
