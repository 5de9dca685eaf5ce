//! Setting a machine up: the allocator's pool and the frames placed in it,
//! the memory's first contents, the translation contexts, and the SMMU's
//! registers and in-memory structures. Every input is checked here, so a
//! model's front end resolves names and syntax and nothing else; what was
//! wrong comes back as a [`SetupError`] that names it.
//!
//! This lives in the checker rather than in `tlbcheck-hw` on purpose. The
//! hardware model takes memory as it finds it: an illegal STE is a
//! `C_BAD_STE` event, not a refusal, because software under test may well
//! write one. What is refused here is a set-up that cannot be what its
//! author meant (a frame outside the pool, a page descriptor in a level-1
//! table, a device whose StreamID has no STE): a property of the model
//! being built, so it sits beside the [`ModelBuilder`] that receives the
//! finished machine.
//!
//! ```
//! use tlbcheck_checker::builder::Features;
//! use tlbcheck_checker::setup::{Desc, MachineBuilder};
//! use tlbcheck_hw::addr::{Granule, Pa};
//! use tlbcheck_hw::mem::{FrameOwner, TableOwner};
//!
//! let mut b = MachineBuilder::new(Granule::K4, Pa(0x10_0000), 8, 1);
//! let owner = FrameOwner::Table { owner: TableOwner::Stage1 { space: 1 }, level: 3 };
//! let l3 = b.frame("L3", owner, None, None).unwrap().clone();
//! let data = b.frame("D", FrameOwner::Data { space: 1 }, None, None).unwrap().base;
//! let slot = l3.slot(Granule::K4, 0).unwrap();
//! let page = Desc::S1 { block: false, out: data, writable: true, user: true, global: false, extra: 0, af: true };
//! let value = slot.descriptor(Granule::K4, &page).unwrap();
//! b.write(slot.pa, value).unwrap();
//! let model = b.build("example", Features::default()).unwrap().build().unwrap();
//! assert_eq!(model.machine.mem.read(l3.base), value);
//! ```

use crate::builder::{Features, ModelBuilder};
use std::collections::HashMap;
use std::fmt;
use thiserror::Error;
use tlbcheck_hw::addr::{Granule, Pa};
use tlbcheck_hw::machine::{Machine, MAX_CPUS};
use tlbcheck_hw::mem::{FrameOwner, MemError, Pfn, PhysMem, TableOwner, FRAME_SIZE};
use tlbcheck_hw::smmu::cd::{BadCd, Cd, CdContext, L1Cd};
use tlbcheck_hw::smmu::config::{StrtabConfig, StrtabFmt, STRUCT_BYTES};
use tlbcheck_hw::smmu::model::{Device, Smmu, SmmuOptions};
use tlbcheck_hw::smmu::queue::{CmdQueue, EventQueue};
use tlbcheck_hw::smmu::ste::{tg0_granule, BadSte, L1Std, SmmuFeatures, Ste};
use tlbcheck_hw::vmsa::desc::{bits, s1_block, s1_page, s2_block, s2_page, table};
use tlbcheck_hw::vmsa::walk::start_level;
use tlbcheck_hw::vmsa::{Context, TableStage};

/// Default ring sizes: one 4 KiB frame each (256 commands, 128 events).
const CMDQ_LOG2: u8 = 8;
const EVTQ_LOG2: u8 = 7;

/// An SMMU structure placed in the pool, as errors name it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Structure {
    /// The Stream table (linear STEs or L1STDs).
    StreamTable,
    /// A level-2 array of a 2-level Stream table.
    L2StreamArray,
    /// The Command queue's ring.
    CommandQueue,
    /// The Event queue's ring.
    EventQueue,
    /// A CD table (CDs written with [`MachineBuilder::cd`]).
    CdTable,
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Structure::StreamTable => "Stream table",
            Structure::L2StreamArray => "level-2 Stream table array",
            Structure::CommandQueue => "Command queue",
            Structure::EventQueue => "Event queue",
            Structure::CdTable => "CD table",
        })
    }
}

fn stage_name(stage: &TableStage) -> &'static str {
    match stage {
        TableStage::S1 => "stage-1",
        TableStage::S2 => "stage-2",
    }
}

/// What was wrong with a machine's set-up.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SetupError {
    /// Two frames with one name.
    #[error("frame `{0}` is declared twice")]
    FrameTwice(String),
    /// A table frame placed off its granule.
    #[error("a {0} table must be aligned to {size:#x}", size = .0.size())]
    TableFrameUnaligned(Granule),
    /// A frame placed (partly) outside the pool.
    #[error("frame `{frame}` at {at} is outside the pool [{}, {})", .pool.0, .pool.1)]
    OutsidePool {
        /// The frame.
        frame: String,
        /// Where it was placed.
        at: Pa,
        /// The pool's first and end address.
        pool: (Pa, Pa),
    },
    /// Two frames sharing a 4 KiB frame.
    #[error("frame `{frame}` overlaps frame `{other}` at {at}")]
    Overlap {
        /// The frame being placed.
        frame: String,
        /// The frame already there.
        other: String,
        /// The first shared 4 KiB frame.
        at: Pa,
    },
    /// A frame placed on one the set-up already uses for something else.
    #[error("frame `{frame}` at {at} is already in use: {owner}")]
    InUse {
        /// The frame being placed.
        frame: String,
        /// The first frame in use.
        at: Pa,
        /// What it holds.
        owner: FrameOwner,
    },
    /// No free run of pool frames for a frame placed anywhere.
    #[error("no room for frame `{0}` in the pool")]
    NoRoom(String),
    /// A memory operation failed.
    #[error(transparent)]
    Mem(#[from] MemError),
    /// More CPUs than the hardware model has agent ids for.
    #[error("at most {MAX_CPUS} CPUs, not {0}")]
    TooManyCpus(u8),
    /// A word written at an address that is not 8-byte aligned.
    #[error("{0} is not 8-byte aligned: descriptors are 64-bit words")]
    WordUnaligned(Pa),
    /// A descriptor index beyond the frame or its table.
    #[error("index {index} is out of range: `{frame}` holds {limit} descriptors")]
    IndexOutOfRange {
        /// The index.
        index: u64,
        /// The frame indexed.
        frame: String,
        /// Descriptors it holds.
        limit: u64,
    },
    /// A table descriptor in a level-3 table (Arm ARM D8.3.1: level 3 has
    /// page descriptors only).
    #[error("a level-3 table holds pages, not table descriptors")]
    TableAtLevel3,
    /// A page descriptor above level 3.
    #[error("a page descriptor belongs in a level-3 table, not level {0}")]
    PageAboveLevel3(u8),
    /// A block descriptor at a level whose granule has none (Arm ARM D8.3.1).
    #[error("the {granule} granule has no block descriptors at level {level}")]
    NoBlock {
        /// The granule.
        granule: Granule,
        /// The table's level.
        level: u8,
    },
    /// A stage-1 descriptor written into a stage-2 table.
    #[error("a stage-1 descriptor in a stage-2 table")]
    S1InStage2Table,
    /// A stage-2 descriptor written into a stage-1 table.
    #[error("a stage-2 descriptor in a stage-1 table")]
    S2InStage1Table,
    /// An L1CD written into a translation table.
    #[error("an L1CD belongs in an `smmu` frame (an L1 CD table), not a translation table")]
    L1CdInTable,
    /// An address a descriptor field cannot hold (low bits not zero).
    #[error("{what} {addr} is not aligned to {align:#x}")]
    Misaligned {
        /// Which address.
        what: &'static str,
        /// The address.
        addr: Pa,
        /// Its required alignment.
        align: u64,
    },
    /// Two contexts with one name.
    #[error("context `{0}` is declared twice")]
    ContextTwice(String),
    /// A context's root table serves another level than the walk's first.
    #[error("`{frame}` is a level-{level} table, but a {granule} {} walk starts at level {start}", stage_name(.stage))]
    RootLevel {
        /// The stage whose root it is.
        stage: TableStage,
        /// The frame.
        frame: String,
        /// The level it serves.
        level: u8,
        /// The granule.
        granule: Granule,
        /// The level the walk starts at (Arm ARM D8.2.9).
        start: u8,
    },
    /// A context's root table off its granule.
    #[error("root {root:#x} is not aligned to the {granule} granule")]
    RootUnaligned {
        /// The stage whose root it is.
        stage: TableStage,
        /// The root (a PA, or an IPA for a nested stage 1).
        root: u64,
        /// The granule.
        granule: Granule,
    },
    /// A translation table base given to an STE or CD off its granule.
    #[error("table {table:#x} is not aligned to the {granule} granule")]
    TableBaseUnaligned {
        /// The table's address.
        table: u64,
        /// The granule.
        granule: Granule,
    },
    /// SMMU set-up on a machine without an SMMU.
    #[error("SMMU set-up, but the machine has no SMMU")]
    NoSmmu,
    /// A second SMMU.
    #[error("the machine has one SMMU")]
    SmmuTwice,
    /// A 2-level Stream table SPLIT other than 6, 8 or 10 (SMMUv3 6.3.24).
    #[error("SPLIT = {0} is Reserved: a 2-level Stream table splits at 6, 8 or 10")]
    SplitReserved(u8),
    /// A structure larger than the ID registers allow: SMMU_IDR1.SIDSIZE
    /// is at most 32, CMDQS and EVENTQS at most 19 (SMMUv3 6.3.2).
    #[error("the {what} cannot have log2size={log2size}: at most {max}")]
    Log2SizeTooLarge {
        /// The structure.
        what: Structure,
        /// The size asked for.
        log2size: u8,
        /// The largest the registers allow.
        max: u8,
    },
    /// A Stream table too small for the StreamIDs used.
    #[error("log2size={log2size} covers StreamIDs below {}, but StreamID {sid} is used", 1u64 << .log2size)]
    StreamIdsUncovered {
        /// The table's LOG2SIZE.
        log2size: u8,
        /// The StreamID it does not cover.
        sid: u32,
    },
    /// An SMMU structure placed in a frame that is not SMMU memory.
    #[error("the {what} must live in an `smmu` frame, but `{frame}` is owned by {owner}")]
    NotSmmuFrame {
        /// The structure.
        what: Structure,
        /// The frame.
        frame: String,
        /// Its owner.
        owner: FrameOwner,
    },
    /// An SMMU structure larger than its frame.
    #[error("the {what} needs {bytes:#x} bytes but `{frame}` holds {size:#x}")]
    FrameTooSmall {
        /// The structure.
        what: Structure,
        /// The frame.
        frame: String,
        /// Bytes the structure needs.
        bytes: u64,
        /// Bytes the frame holds.
        size: u64,
    },
    /// An SMMU structure placed off its alignment (its size: SMMUv3 6.3.23,
    /// 6.3.25, 6.3.28).
    #[error("the {what} must be aligned to {align:#x}; `{frame}` is at {base}")]
    FrameMisaligned {
        /// The structure.
        what: Structure,
        /// The frame.
        frame: String,
        /// The alignment needed.
        align: u64,
        /// The frame's base.
        base: Pa,
    },
    /// Two SMMU structures in one frame: each would overwrite the other.
    #[error("the {what} and the {other} are both placed in `{frame}`")]
    FrameShared {
        /// The structure being placed.
        what: Structure,
        /// The structure already there.
        other: Structure,
        /// The frame.
        frame: String,
    },
    /// No free run of pool frames for an SMMU structure placed anywhere.
    #[error("no room in the pool for the SMMU's {what} ({frames} frame(s))")]
    NoRoomFor {
        /// The structure.
        what: Structure,
        /// Frames it needs.
        frames: u32,
    },
    /// A frame name the set-up does not know.
    #[error("unknown frame `{0}`")]
    UnknownFrame(String),
    /// An ATS device on an SMMU without ATS (SMMU_IDR0.ATS, SMMUv3 3.9).
    #[error("an ATS device, but the SMMU lacks ATS")]
    AtsDeviceWithoutAts,
    /// PRI without ATS on the device, or without PRI and ATS on the SMMU
    /// (SMMUv3 3.9, 8).
    #[error("PRI needs ATS on the device, and PRI and ATS on the SMMU")]
    PriWithoutAts,
    /// A StreamID beyond the Stream table.
    #[error("StreamID {sid} is beyond a Stream table of log2size={log2size}")]
    SidBeyondTable {
        /// The StreamID.
        sid: u32,
        /// The table's LOG2SIZE.
        log2size: u8,
    },
    /// Two STEs for one StreamID.
    #[error("StreamID {0} has two STEs")]
    SteTwice(u32),
    /// An S1ContextPtr with bits \[5:0\] set (SMMUv3 5.2).
    #[error("the CD pointer {0} is not 64-byte aligned")]
    CdPtrUnaligned(Pa),
    /// EATS != 0 on an SMMU without ATS (SMMUv3 5.2 EATS).
    #[error("EATS is set but the SMMU lacks ATS")]
    EatsWithoutAts,
    /// S2S = 1 on an SMMU set up without the stall model.
    #[error("an STE that stalls stage-2 faults (S2S) needs the SMMU's stall model")]
    S2StallWithoutStall,
    /// An STE the SMMU would refuse with C_BAD_STE.
    #[error("this STE is ILLEGAL: {0}")]
    IllegalSte(BadSte),
    /// A CD table in a frame that is not SMMU memory.
    #[error("a CD table must be an `smmu` frame, but `{frame}` is owned by {owner}")]
    CdTableNotSmmu {
        /// The frame.
        frame: String,
        /// Its owner.
        owner: FrameOwner,
    },
    /// A CD slot beyond its frame.
    #[error("slot {slot} is out of range: `{frame}` holds {slots} CDs")]
    CdSlotOutOfRange {
        /// The slot.
        slot: u64,
        /// The frame.
        frame: String,
        /// CDs it holds.
        slots: u64,
    },
    /// CD.S = 1 on an SMMU set up without the stall model.
    #[error("a stalling CD needs the SMMU's stall model")]
    StallingCdWithoutStall,
    /// A CD the SMMU would refuse with C_BAD_CD.
    #[error("this CD is ILLEGAL: {0}")]
    IllegalCd(BadCd),
    /// A device whose StreamID no STE describes: it could only ever see
    /// C_BAD_STE or C_BAD_STREAMID, almost certainly a typo.
    #[error("device {device} uses StreamID {sid} but no STE describes it")]
    DeviceWithoutSte {
        /// The device's index.
        device: usize,
        /// Its StreamID.
        sid: u32,
    },
}

/// A named run of 4 KiB frames placed in the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Its name, for errors.
    pub name: String,
    /// Its first byte.
    pub base: Pa,
    /// How many 4 KiB frames.
    pub frames: u32,
    /// What every one of them holds.
    pub owner: FrameOwner,
}

impl Frame {
    /// The table it is, if it is one: whose, and the level it serves.
    pub fn table(&self) -> Option<(TableOwner, u8)> {
        match self.owner {
            FrameOwner::Table { owner, level } => Some((owner, level)),
            _ => None,
        }
    }

    /// Its size in bytes.
    pub fn bytes(&self) -> u64 {
        u64::from(self.frames) * FRAME_SIZE
    }

    /// Descriptor `index` of the frame. A table holds the entries its
    /// level has (a start level may be concatenated, Arm ARM D8.2.9), and
    /// never more than its frames.
    pub fn slot(&self, granule: Granule, index: u64) -> Result<Slot, SetupError> {
        let words = self.bytes() / 8;
        let table = self.table();
        let limit = match table {
            Some((owner, level)) => {
                let stage = match owner {
                    TableOwner::Stage1 { .. } => TableStage::S1,
                    TableOwner::Stage2 { .. } => TableStage::S2,
                };
                granule
                    .table_entries(start_level(stage, granule), level)
                    .min(words)
            }
            None => words,
        };
        if index >= limit {
            return Err(SetupError::IndexOutOfRange {
                index,
                frame: self.name.clone(),
                limit,
            });
        }
        Ok(Slot {
            pa: Pa(self.base.0 + 8 * index),
            table,
        })
    }
}

/// A 64-bit word to write, and the table it lies in when it was named as
/// a slot of a table frame (descriptors are then checked against it).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The word's address.
    pub pa: Pa,
    /// The table: whose, and its level.
    pub table: Option<(TableOwner, u8)>,
}

/// A descriptor to encode (Arm ARM D8.3), with what it is meant to be.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Desc {
    /// A table descriptor pointing at the next level.
    Table(Pa),
    /// A stage-1 page or block.
    S1 {
        /// A block (levels 1, 2) rather than a page (level 3).
        block: bool,
        /// The output address.
        out: Pa,
        /// AP\[2\] clear.
        writable: bool,
        /// AP\[1\] set: EL0 access.
        user: bool,
        /// nG clear.
        global: bool,
        /// Further bits ORed in.
        extra: u64,
        /// The Access flag.
        af: bool,
    },
    /// A stage-2 page or block.
    S2 {
        /// A block rather than a page.
        block: bool,
        /// The output address.
        out: Pa,
        /// S2AP\[0\].
        read: bool,
        /// S2AP\[1\].
        write: bool,
        /// Further bits ORed in.
        extra: u64,
        /// The Access flag.
        af: bool,
    },
    /// A valid level-1 CD table descriptor (SMMUv3 5.4.1).
    L1Cd(Pa),
}

impl Slot {
    /// A word named by its address alone.
    pub fn at(pa: Pa) -> Result<Slot, SetupError> {
        if pa.0 & 7 != 0 {
            return Err(SetupError::WordUnaligned(pa));
        }
        Ok(Slot { pa, table: None })
    }

    /// Encodes `desc` for this slot: a descriptor of the table's stage,
    /// of a kind its level holds, whose output is aligned to what it maps.
    pub fn descriptor(&self, granule: Granule, desc: &Desc) -> Result<u64, SetupError> {
        let level = self.table.map(|(_, l)| l);
        let stage2 = self
            .table
            .map(|(o, _)| matches!(o, TableOwner::Stage2 { .. }));
        let aligned = |addr: Pa, shift: u32, what: &'static str| {
            let align = 1u64 << shift;
            if addr.0 & (align - 1) != 0 {
                return Err(SetupError::Misaligned { what, addr, align });
            }
            Ok(addr.0)
        };
        let leaf_shift = |block: bool| match (block, level) {
            (false, Some(l)) if l != 3 => Err(SetupError::PageAboveLevel3(l)),
            (true, Some(l)) if !granule.block_allowed(l) => {
                Err(SetupError::NoBlock { granule, level: l })
            }
            (true, Some(l)) => Ok(granule.level_shift(l)),
            _ => Ok(granule.shift()),
        };
        let strip_af = |d: u64, af: bool| if af { d } else { d & !bits::AF };
        Ok(match *desc {
            Desc::Table(next) => {
                // At level 3 descriptor bits [1:0] = 0b11 encode a page, so
                // there is no table descriptor there (Arm ARM D8.3,
                // translation table descriptor formats).
                if level == Some(3) {
                    return Err(SetupError::TableAtLevel3);
                }
                table(aligned(next, granule.shift(), "table address")?)
            }
            Desc::S1 {
                block,
                out,
                writable,
                user,
                global,
                extra,
                af,
            } => {
                if stage2 == Some(true) {
                    return Err(SetupError::S1InStage2Table);
                }
                let out = aligned(out, leaf_shift(block)?, "output address")?;
                let d = if block {
                    s1_block(out, writable, user, global)
                } else {
                    s1_page(out, writable, user, global)
                };
                strip_af(d | extra, af)
            }
            Desc::S2 {
                block,
                out,
                read,
                write,
                extra,
                af,
            } => {
                if stage2 == Some(false) {
                    return Err(SetupError::S2InStage1Table);
                }
                let out = aligned(out, leaf_shift(block)?, "output address")?;
                let d = if block {
                    s2_block(out, read, write)
                } else {
                    s2_page(out, read, write)
                };
                strip_af(d | extra, af)
            }
            Desc::L1Cd(l2) => {
                if self.table.is_some() {
                    return Err(SetupError::L1CdInTable);
                }
                // L2Ptr is bits [55:12]: a level-2 CD table is 4 KiB aligned
                // (SMMUv3 5.3, Level 1 Context Descriptor).
                L1Cd {
                    valid: true,
                    l2ptr: aligned(l2, 12, "level-2 CD table")?,
                }
                .encode()
            }
        })
    }
}

/// Where an SMMU structure goes: a named `smmu` frame, or (`None`) the
/// first free run of the pool that fits, aligned to its size.
pub type Placement = Option<String>;

/// The SMMU's ID-register choices and its Stream table and queues.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmmuSpec {
    /// SMMU_IDR0.BTM: broadcast TLB maintenance (SMMUv3 3.17).
    pub btm: bool,
    /// SMMU_IDR0.ATS.
    pub ats: bool,
    /// The stall model (SMMU_IDR0.STALL_MODEL allows stalling).
    pub stall: bool,
    /// SMMU_IDR0.PRI.
    pub pri: bool,
    /// SMMU_CR2.E2H: StreamWorld EL2 is EL2-E2H, whose entries carry ASIDs
    /// (SMMUv3 3.17.5, 6.3.12).
    pub e2h: bool,
    /// 2-level Stream table SPLIT, or `None` for a linear table.
    pub split: Option<u8>,
    /// SMMU_STRTAB_BASE_CFG.LOG2SIZE, or `None` for the smallest that
    /// covers `max_sid` (and SPLIT).
    pub log2size: Option<u8>,
    /// The largest StreamID the STEs and devices use.
    pub max_sid: u32,
    /// Where the Stream table goes.
    pub strtab_at: Placement,
    /// The Command queue's log2 size (default 8: one 4 KiB frame) and place.
    pub cmdq: (Option<u8>, Placement),
    /// The Event queue's log2 size (default 7: one 4 KiB frame) and place.
    pub evtq: (Option<u8>, Placement),
}

/// The SMMU while its structures are written.
#[derive(Debug)]
struct SmmuParts {
    spec: SmmuSpec,
    opts: SmmuOptions,
    strtab: StrtabConfig,
    cmdq: CmdQueue,
    evtq: EventQueue,
    devices: Vec<Device>,
    /// Level-2 arrays of a 2-level table, by L1STD index.
    l2: HashMap<u64, u64>,
    /// StreamIDs with an STE.
    stes: Vec<u32>,
}

/// Builds a [`Machine`] (memory, CPUs, contexts, SMMU) and hands it to a
/// [`ModelBuilder`].
#[derive(Debug)]
pub struct MachineBuilder {
    granule: Granule,
    cpus: u8,
    mem: PhysMem,
    pool: (u64, u64),
    frames: Vec<Frame>,
    /// The SMMU structure each named frame holds.
    holds: Vec<(String, Structure)>,
    contexts: Vec<(String, Context, bool)>,
    smmu: Option<SmmuParts>,
}

impl MachineBuilder {
    /// A machine of `cpus` CPUs whose tables use `granule`, with a pool of
    /// `frames` 4 KiB frames from `pool_base`.
    pub fn new(granule: Granule, pool_base: Pa, frames: u32, cpus: u8) -> MachineBuilder {
        let first = pool_base.0 >> 12;
        MachineBuilder {
            granule,
            cpus,
            mem: PhysMem::new(Pfn(first), frames),
            pool: (first, first + u64::from(frames)),
            frames: Vec::new(),
            holds: Vec::new(),
            contexts: Vec::new(),
            smmu: None,
        }
    }

    /// The granule of the machine's tables.
    pub fn granule(&self) -> Granule {
        self.granule
    }

    /// Memory as set up so far.
    pub fn mem(&self) -> &PhysMem {
        &self.mem
    }

    /// Memory, for set-up that software performs through its own
    /// allocator (an OS's page tables built with its own functions): it
    /// allocates frames and writes words as that software would at run
    /// time, so there is nothing here to check beyond memory's own rules.
    pub fn mem_mut(&mut self) -> &mut PhysMem {
        &mut self.mem
    }

    /// The frames placed so far.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// The frame called `name`.
    pub fn frame_named(&self, name: &str) -> Option<&Frame> {
        self.frames.iter().find(|f| f.name == name)
    }

    /// Places `frames` 4 KiB frames (default: one translation granule)
    /// owned by `owner`, at `at` or at the first free run that fits.
    pub fn frame(
        &mut self,
        name: &str,
        owner: FrameOwner,
        frames: Option<u32>,
        at: Option<Pa>,
    ) -> Result<&Frame, SetupError> {
        if self.frame_named(name).is_some() {
            return Err(SetupError::FrameTwice(name.to_string()));
        }
        let n = frames.unwrap_or((self.granule.size() / FRAME_SIZE) as u32);
        let (first, end) = self.pool;
        let base = match at {
            Some(at) => {
                let pfn = at.0 >> 12;
                let is_table = matches!(owner, FrameOwner::Table { .. });
                if is_table && at.0 % self.granule.size() != 0 {
                    return Err(SetupError::TableFrameUnaligned(self.granule));
                }
                if pfn < first || pfn + u64::from(n) > end {
                    return Err(SetupError::OutsidePool {
                        frame: name.to_string(),
                        at,
                        pool: (Pa(first << 12), Pa(end << 12)),
                    });
                }
                for p in pfn..pfn + u64::from(n) {
                    let other = self.frames.iter().find(|f| {
                        let s = f.base.0 >> 12;
                        (s..s + u64::from(f.frames)).contains(&p)
                    });
                    if let Some(other) = other {
                        return Err(SetupError::Overlap {
                            frame: name.to_string(),
                            other: other.name.clone(),
                            at: Pa(p << 12),
                        });
                    }
                    // Frames set-up claimed without a name (an SMMU
                    // structure placed anywhere, a process's tables).
                    let owner = self.mem.owner(Pfn(p));
                    if owner != FrameOwner::Free {
                        return Err(SetupError::InUse {
                            frame: name.to_string(),
                            at: Pa(p << 12),
                            owner,
                        });
                    }
                }
                pfn
            }
            None => self
                .free_run(n)
                .ok_or_else(|| SetupError::NoRoom(name.to_string()))?,
        };
        for p in base..base + u64::from(n) {
            self.mem.claim(Pfn(p), owner)?;
        }
        self.frames.push(Frame {
            name: name.to_string(),
            base: Pa(base << 12),
            frames: n,
            owner,
        });
        Ok(self.frames.last().expect("just pushed"))
    }

    /// The first run of `n` free pool frames, aligned to `n` rounded up to
    /// a power of two (structures are aligned to their size): its first PFN.
    fn free_run(&self, n: u32) -> Option<u64> {
        let (first, end) = self.pool;
        let align = u64::from(n.next_power_of_two());
        let mut p = first.div_ceil(align) * align;
        while p + u64::from(n) <= end {
            if (p..p + u64::from(n)).all(|q| self.mem.owner(Pfn(q)) == FrameOwner::Free) {
                return Some(p);
            }
            p += align;
        }
        None
    }

    /// Records that frame `name` holds `what`, which no other structure
    /// may share (CDs may share a CD table).
    fn hold(&mut self, name: &str, what: Structure) -> Result<(), SetupError> {
        if let Some(&(_, other)) = self.holds.iter().find(|(n, _)| n == name) {
            if (other, what) == (Structure::CdTable, Structure::CdTable) {
                return Ok(());
            }
            return Err(SetupError::FrameShared {
                what,
                other,
                frame: name.to_string(),
            });
        }
        self.holds.push((name.to_string(), what));
        Ok(())
    }

    /// Places SMMU structure `what` of `bytes`, aligned to `align`.
    fn place(
        &mut self,
        what: Structure,
        bytes: u64,
        align: u64,
        at: &Placement,
    ) -> Result<u64, SetupError> {
        match at {
            Some(name) => {
                let f = self
                    .frame_named(name)
                    .ok_or_else(|| SetupError::UnknownFrame(name.clone()))?;
                if f.owner != FrameOwner::Smmu {
                    return Err(SetupError::NotSmmuFrame {
                        what,
                        frame: name.clone(),
                        owner: f.owner,
                    });
                }
                if f.bytes() < bytes {
                    return Err(SetupError::FrameTooSmall {
                        what,
                        frame: name.clone(),
                        bytes,
                        size: f.bytes(),
                    });
                }
                if f.base.0 % align != 0 {
                    return Err(SetupError::FrameMisaligned {
                        what,
                        frame: name.clone(),
                        align,
                        base: f.base,
                    });
                }
                let base = f.base.0;
                self.hold(name, what)?;
                Ok(base)
            }
            None => {
                let frames = bytes.div_ceil(FRAME_SIZE).max(1) as u32;
                let p = self
                    .free_run(frames)
                    .ok_or(SetupError::NoRoomFor { what, frames })?;
                for q in p..p + u64::from(frames) {
                    self.mem.claim(Pfn(q), FrameOwner::Smmu)?;
                }
                Ok(p << 12)
            }
        }
    }

    /// Writes a 64-bit word.
    pub fn write(&mut self, pa: Pa, value: u64) -> Result<(), SetupError> {
        Slot::at(pa)?;
        self.mem.write(pa, value)?;
        Ok(())
    }

    /// Checks a table base an STE or CD is given: aligned to the granule.
    pub fn check_table_base(&self, table: u64) -> Result<(), SetupError> {
        if table % self.granule.size() != 0 {
            return Err(SetupError::TableBaseUnaligned {
                table,
                granule: self.granule,
            });
        }
        Ok(())
    }

    fn check_root(&self, stage: TableStage, root: u64) -> Result<(), SetupError> {
        let g = self.granule;
        // A table frame must serve the level the walk starts at (level 1
        // for a 16K stage 2: Arm ARM D8.2.9).
        if let FrameOwner::Table { level, .. } = self.mem.owner(Pfn(root >> 12)) {
            let start = start_level(stage, g);
            if level != start {
                let frame = self
                    .frames
                    .iter()
                    .find(|f| (f.base.0..f.base.0 + f.bytes()).contains(&root))
                    .map_or_else(|| format!("{root:#x}"), |f| f.name.clone());
                return Err(SetupError::RootLevel {
                    stage,
                    frame,
                    level,
                    granule: g,
                    start,
                });
            }
        }
        if root % g.size() != 0 {
            return Err(SetupError::RootUnaligned {
                stage,
                root,
                granule: g,
            });
        }
        Ok(())
    }

    /// A translation context the CPUs may walk, by name; returns its index.
    pub fn context(&mut self, name: &str, ctx: Context) -> Result<usize, SetupError> {
        self.add_context(name, ctx, true)
    }

    /// A context walked by a device alone (a mirror's shadow table): the
    /// CPUs do not run it, but operations may name it.
    pub fn device_context(&mut self, name: &str, ctx: Context) -> Result<usize, SetupError> {
        self.add_context(name, ctx, false)
    }

    fn add_context(&mut self, name: &str, ctx: Context, cpus: bool) -> Result<usize, SetupError> {
        if self.contexts.iter().any(|(n, _, _)| n == name) {
            return Err(SetupError::ContextTwice(name.to_string()));
        }
        if let Some(s1) = ctx.s1 {
            self.check_root(TableStage::S1, s1.ttb)?;
        }
        if let Some(s2) = ctx.s2 {
            self.check_root(TableStage::S2, s2.ttb)?;
        }
        self.contexts.push((name.to_string(), ctx, cpus));
        Ok(self.contexts.len() - 1)
    }

    /// The contexts so far, by name.
    pub fn contexts(&self) -> impl Iterator<Item = (&str, &Context)> {
        self.contexts.iter().map(|(n, c, _)| (n.as_str(), c))
    }

    /// Attaches an SMMU: its options, then its Stream table and queues,
    /// placed (in that order) where `spec` says.
    pub fn smmu(&mut self, spec: SmmuSpec) -> Result<(), SetupError> {
        if self.smmu.is_some() {
            return Err(SetupError::SmmuTwice);
        }
        let opts = SmmuOptions {
            features: SmmuFeatures {
                ats: spec.ats,
                ..SmmuFeatures::MODEL
            },
            btm: spec.btm,
            // Without BTM the SMMU cannot take part in broadcast
            // maintenance; with it, Linux leaves PTM clear so it does.
            ptm: !spec.btm,
            e2h: spec.e2h,
        };
        if let Some(split) = spec.split.filter(|s| !matches!(s, 6 | 8 | 10)) {
            return Err(SetupError::SplitReserved(split));
        }
        let too_large = |what, log2size: Option<u8>, max| match log2size {
            Some(l) if l > max => Err(SetupError::Log2SizeTooLarge {
                what,
                log2size: l,
                max,
            }),
            _ => Ok(()),
        };
        too_large(Structure::StreamTable, spec.log2size, 32)?;
        too_large(Structure::CommandQueue, spec.cmdq.0, 19)?;
        too_large(Structure::EventQueue, spec.evtq.0, 19)?;
        let needed = (32 - spec.max_sid.leading_zeros()) as u8;
        let log2size = match spec.log2size {
            Some(l) if needed > l => {
                return Err(SetupError::StreamIdsUncovered {
                    log2size: l,
                    sid: spec.max_sid,
                })
            }
            Some(l) => l,
            None => needed.max(spec.split.unwrap_or(0)),
        };
        // A 2-level table's level 1 has one L1STD per 2^SPLIT StreamIDs.
        let (fmt, bytes) = match spec.split {
            None => (StrtabFmt::Linear, STRUCT_BYTES << log2size),
            Some(split) => (
                StrtabFmt::TwoLevel { split },
                8 << log2size.saturating_sub(split),
            ),
        };
        // SMMU_STRTAB_BASE is aligned to the table's size, at least 64
        // bytes (SMMUv3 6.3.23).
        let base = self.place(
            Structure::StreamTable,
            bytes,
            bytes.max(64),
            &spec.strtab_at,
        )?;
        // SMMU_CMDQ_BASE / EVENTQ_BASE: each ring is aligned to its size,
        // at least 32 bytes (SMMUv3 6.3.25, 6.3.28).
        let mut ring = |what, entry: u64, (log2, at): &(Option<u8>, Placement), default| {
            let log2 = log2.unwrap_or(default);
            let bytes = entry << log2;
            Ok::<_, SetupError>((self.place(what, bytes, bytes.max(32), at)?, log2))
        };
        let (cq, cq_log2) = ring(Structure::CommandQueue, 16, &spec.cmdq, CMDQ_LOG2)?;
        let (eq, eq_log2) = ring(Structure::EventQueue, 32, &spec.evtq, EVTQ_LOG2)?;
        self.smmu = Some(SmmuParts {
            spec,
            opts,
            strtab: StrtabConfig {
                base,
                log2size,
                fmt,
            },
            cmdq: CmdQueue::new(cq, cq_log2),
            evtq: EventQueue::new(eq, eq_log2),
            devices: Vec::new(),
            l2: HashMap::new(),
            stes: Vec::new(),
        });
        Ok(())
    }

    fn parts(&self) -> Result<&SmmuParts, SetupError> {
        self.smmu.as_ref().ok_or(SetupError::NoSmmu)
    }

    fn covered(&self, sid: u32) -> Result<(), SetupError> {
        let log2size = self.parts()?.strtab.log2size;
        if u64::from(sid) >> log2size != 0 {
            return Err(SetupError::SidBeyondTable { sid, log2size });
        }
        Ok(())
    }

    /// A device behind the SMMU; returns its index.
    pub fn device(&mut self, dev: Device) -> Result<usize, SetupError> {
        let spec = &self.parts()?.spec;
        if dev.ats && !spec.ats {
            return Err(SetupError::AtsDeviceWithoutAts);
        }
        if dev.pri && !(spec.pri && spec.ats && dev.ats) {
            return Err(SetupError::PriWithoutAts);
        }
        self.covered(dev.sid)?;
        let parts = self.smmu.as_mut().expect("checked above");
        parts.devices.push(dev);
        Ok(parts.devices.len() - 1)
    }

    /// The address of StreamID `sid`'s STE; for a 2-level table, its
    /// level-2 array is placed and its L1STD written the first time.
    fn ste_slot(&mut self, sid: u32) -> Result<u64, SetupError> {
        let st = self.parts()?.strtab;
        match st.fmt {
            StrtabFmt::Linear => Ok(st.base + STRUCT_BYTES * u64::from(sid)),
            StrtabFmt::TwoLevel { split } => {
                let idx = u64::from(sid >> split);
                let arr = match self.parts()?.l2.get(&idx) {
                    Some(a) => *a,
                    None => {
                        let bytes = STRUCT_BYTES << split;
                        let a = self.place(Structure::L2StreamArray, bytes, bytes, &None)?;
                        // Span = SPLIT + 1: the array holds 2^SPLIT STEs
                        // (SMMUv3 5.1).
                        let l1 = L1Std {
                            span: split + 1,
                            l2ptr: a,
                        };
                        self.mem.write(Pa(st.base + 8 * idx), l1.encode())?;
                        self.smmu.as_mut().expect("checked").l2.insert(idx, a);
                        a
                    }
                };
                Ok(arr + STRUCT_BYTES * u64::from(sid & ((1 << split) - 1)))
            }
        }
    }

    fn write8(&mut self, pa: u64, words: &[u64; 8]) -> Result<(), SetupError> {
        for (i, w) in words.iter().enumerate() {
            self.mem.write(Pa(pa + 8 * i as u64), *w)?;
        }
        Ok(())
    }

    /// Writes StreamID `sid`'s STE (`None`: an invalid one, V = 0). A
    /// valid STE must be one the SMMU accepts, so it never reports a
    /// `C_BAD_STE` the set-up did not ask for (raw writes can still make
    /// one).
    pub fn ste(&mut self, sid: u32, ste: Option<&Ste>) -> Result<(), SetupError> {
        self.covered(sid)?;
        let parts = self.parts()?;
        if parts.stes.contains(&sid) {
            return Err(SetupError::SteTwice(sid));
        }
        let (f, ats, stall) = (parts.opts.features, parts.spec.ats, parts.spec.stall);
        if let Some(ste) = ste {
            // S1ContextPtr is bits [55:6]: an L1CD table or CD is 64-byte
            // aligned (SMMUv3 5.2).
            if ste.config.stage1() && ste.s1_context_ptr % 64 != 0 {
                return Err(SetupError::CdPtrUnaligned(Pa(ste.s1_context_ptr)));
            }
            if ste.config.stage2() {
                let g = ste.s2_granule().unwrap_or(self.granule);
                if ste.s2_ttb % g.size() != 0 {
                    return Err(SetupError::TableBaseUnaligned {
                        table: ste.s2_ttb,
                        granule: g,
                    });
                }
            }
            if ste.eats != 0 && !ats {
                return Err(SetupError::EatsWithoutAts);
            }
            if ste.s2_s && !stall {
                return Err(SetupError::S2StallWithoutStall);
            }
            ste.validate(&f).map_err(SetupError::IllegalSte)?;
        }
        let slot = self.ste_slot(sid)?;
        let words = ste.map_or(Ste::INVALID, Ste::encode);
        self.write8(slot, &words)?;
        self.smmu.as_mut().expect("checked").stes.push(sid);
        Ok(())
    }

    /// Writes CD `slot` of the CD table in frame `frame` (`None`: an
    /// invalid one, V = 0). A valid CD must be one the SMMU accepts.
    pub fn cd(&mut self, frame: &str, slot: u64, cd: Option<&Cd>) -> Result<(), SetupError> {
        let parts = self.parts()?;
        let (f, stall) = (parts.opts.features, parts.spec.stall);
        let fr = self
            .frame_named(frame)
            .ok_or_else(|| SetupError::UnknownFrame(frame.to_string()))?;
        if fr.owner != FrameOwner::Smmu {
            return Err(SetupError::CdTableNotSmmu {
                frame: frame.to_string(),
                owner: fr.owner,
            });
        }
        let slots = fr.bytes() / STRUCT_BYTES;
        if slot >= slots {
            return Err(SetupError::CdSlotOutOfRange {
                slot,
                frame: frame.to_string(),
                slots,
            });
        }
        let pa = fr.base.0 + STRUCT_BYTES * slot;
        self.hold(frame, Structure::CdTable)?;
        let Some(cd) = cd else {
            return self.write8(pa, &Cd::INVALID);
        };
        let g = tg0_granule(cd.tg0).unwrap_or(self.granule);
        if cd.ttb0 % g.size() != 0 {
            return Err(SetupError::TableBaseUnaligned {
                table: cd.ttb0,
                granule: g,
            });
        }
        if cd.s && !stall {
            return Err(SetupError::StallingCdWithoutStall);
        }
        cd.validate(&f, &CdContext::default())
            .map_err(SetupError::IllegalCd)?;
        self.write8(pa, &cd.encode())
    }

    /// The machine, set up, in a [`ModelBuilder`] that knows its contexts
    /// by name.
    pub fn build(
        self,
        name: impl Into<String>,
        features: Features,
    ) -> Result<ModelBuilder, SetupError> {
        if self.cpus > MAX_CPUS {
            return Err(SetupError::TooManyCpus(self.cpus));
        }
        if let Some(p) = &self.smmu {
            if let Some((device, d)) = p
                .devices
                .iter()
                .enumerate()
                .find(|(_, d)| !p.stes.contains(&d.sid))
            {
                return Err(SetupError::DeviceWithoutSte { device, sid: d.sid });
            }
        }
        let cpu_contexts = self
            .contexts
            .iter()
            .filter(|(_, _, cpus)| *cpus)
            .map(|(_, c, _)| *c)
            .collect();
        let mut machine = Machine::new(self.mem, self.cpus, cpu_contexts);
        if let Some(p) = self.smmu {
            let smmu = Smmu::new(p.opts, p.strtab, p.cmdq, p.evtq, p.devices, &machine.mem);
            machine.attach_smmu(smmu);
        }
        let mut b = ModelBuilder::new(name, machine, features);
        for (n, c, _) in self.contexts {
            b.context(n, c);
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tlbcheck_hw::smmu::ste::StreamConfig;
    use tlbcheck_hw::vmsa::StageConfig;

    const POOL: Pa = Pa(0x10_0000);

    fn s1(level: u8) -> FrameOwner {
        FrameOwner::Table {
            owner: TableOwner::Stage1 { space: 1 },
            level,
        }
    }

    fn s2(level: u8) -> FrameOwner {
        FrameOwner::Table {
            owner: TableOwner::Stage2 { vmid: 1 },
            level,
        }
    }

    fn data() -> FrameOwner {
        FrameOwner::Data { space: 1 }
    }

    /// Two CPUs, sixteen 4 KiB frames from 0x100000.
    fn machine() -> MachineBuilder {
        MachineBuilder::new(Granule::K4, POOL, 16, 2)
    }

    /// A machine with an SMMU (ATS, no stall model, no PRI), its structures
    /// placed by default, and an `smmu` frame `CDT`.
    fn with_smmu(spec: SmmuSpec) -> MachineBuilder {
        let mut b = machine();
        b.frame("CDT", FrameOwner::Smmu, None, None).unwrap();
        b.smmu(spec).unwrap();
        b
    }

    fn ats() -> SmmuSpec {
        SmmuSpec {
            ats: true,
            max_sid: 3,
            ..SmmuSpec::default()
        }
    }

    fn s1_page(out: Pa) -> Desc {
        Desc::S1 {
            block: false,
            out,
            writable: true,
            user: true,
            global: false,
            extra: 0,
            af: true,
        }
    }

    fn s1_ctx(root: u64) -> Context {
        Context {
            regime: tlbcheck_hw::tlb::Regime::El10,
            asid: 1,
            vmid: 0,
            s1: Some(StageConfig::new(Granule::K4, root)),
            s2: None,
        }
    }

    #[test]
    fn frames_are_placed_where_asked_or_in_the_first_free_run() {
        let mut b = machine();
        let a = b.frame("A", data(), None, Some(Pa(0x10_3000))).unwrap();
        assert_eq!(a.base, Pa(0x10_3000));
        // Two frames are aligned to two: 0x100000 is free.
        let q = b.frame("Q", FrameOwner::Smmu, Some(2), None).unwrap();
        assert_eq!((q.base, q.frames), (Pa(0x10_0000), 2));
        // The next free run of four aligned to four skips A at 0x103000.
        let r = b.frame("R", FrameOwner::Smmu, Some(4), None).unwrap();
        assert_eq!(r.base, Pa(0x10_4000));
        assert_eq!(b.mem().owner(Pfn(0x103)), data());
        assert_eq!(b.mem().owner(Pfn(0x107)), FrameOwner::Smmu);
        assert_eq!(b.mem().owner(Pfn(0x102)), FrameOwner::Free);
    }

    #[test]
    fn frames_are_refused_twice_off_granule_outside_overlapping_or_without_room() {
        let mut b = machine();
        b.frame("A", data(), None, Some(Pa(0x10_1000))).unwrap();
        assert_eq!(
            b.frame("A", data(), None, None).unwrap_err(),
            SetupError::FrameTwice("A".into())
        );
        let mut k16 = MachineBuilder::new(Granule::K16, POOL, 16, 1);
        assert_eq!(
            k16.frame("T", s1(3), None, Some(Pa(0x10_1000)))
                .unwrap_err(),
            SetupError::TableFrameUnaligned(Granule::K16)
        );
        // A 16K data frame need not be aligned to 16K, but it is 4 frames.
        assert_eq!(
            k16.frame("D", data(), None, Some(Pa(0x10_d000)))
                .unwrap_err(),
            SetupError::OutsidePool {
                frame: "D".into(),
                at: Pa(0x10_d000),
                pool: (Pa(0x10_0000), Pa(0x11_0000)),
            }
        );
        assert!(matches!(
            b.frame("low", data(), None, Some(Pa(0xf_f000))),
            Err(SetupError::OutsidePool { .. })
        ));
        assert_eq!(
            b.frame("B", data(), Some(2), Some(Pa(0x10_0000)))
                .unwrap_err(),
            SetupError::Overlap {
                frame: "B".into(),
                other: "A".into(),
                at: Pa(0x10_1000),
            }
        );
        assert_eq!(
            b.frame("big", data(), Some(16), None).unwrap_err(),
            SetupError::NoRoom("big".into())
        );
        // The SMMU's Stream table, placed anywhere, takes the first free
        // frame (0x100000) without a name.
        b.smmu(SmmuSpec::default()).unwrap();
        assert_eq!(
            b.frame("C", data(), None, Some(Pa(0x10_0000))).unwrap_err(),
            SetupError::InUse {
                frame: "C".into(),
                at: Pa(0x10_0000),
                owner: FrameOwner::Smmu,
            }
        );
    }

    #[test]
    fn slots_stay_inside_their_frame_or_table() {
        let mut b = MachineBuilder::new(Granule::K16, POOL, 64, 1);
        // A 16K stage-2 root at level 1 is two concatenated tables: 4096
        // entries in 32 KiB (Arm ARM D8.2.9).
        let root = b.frame("S", s2(1), Some(8), None).unwrap().clone();
        assert_eq!(
            root.slot(Granule::K16, 4095).unwrap().pa,
            Pa(root.base.0 + 8 * 4095)
        );
        assert_eq!(
            root.slot(Granule::K16, 4096).unwrap_err(),
            SetupError::IndexOutOfRange {
                index: 4096,
                frame: "S".into(),
                limit: 4096,
            }
        );
        // A level-2 table of 16K holds 2048 entries even in a larger frame.
        let l2 = b.frame("L2", s2(2), Some(8), None).unwrap().clone();
        assert!(l2.slot(Granule::K16, 2048).is_err());
        let d = b.frame("D", data(), Some(1), None).unwrap().clone();
        assert!(d.slot(Granule::K16, 511).is_ok());
        assert!(d.slot(Granule::K16, 512).is_err());
        assert_eq!(
            Slot::at(Pa(0x10_0004)).unwrap_err(),
            SetupError::WordUnaligned(Pa(0x10_0004))
        );
        assert_eq!(
            b.write(Pa(0x10_0004), 1).unwrap_err(),
            SetupError::WordUnaligned(Pa(0x10_0004))
        );
    }

    #[test]
    fn descriptors_fit_their_table() {
        let g = Granule::K4;
        let slot = |table| Slot { pa: POOL, table };
        let l1 = slot(Some((TableOwner::Stage1 { space: 1 }, 1)));
        let l3 = slot(Some((TableOwner::Stage1 { space: 1 }, 3)));
        let s2l3 = slot(Some((TableOwner::Stage2 { vmid: 1 }, 3)));
        let page = s1_page(Pa(0x10_1000));
        // A 4K level-3 page: valid, page, AF, AP[1] (EL0), nG (Arm ARM D8.3).
        assert_eq!(
            l3.descriptor(g, &page).unwrap(),
            0x10_1000 | 0b11 | bits::AF | bits::AP_USER | bits::NG
        );
        assert_eq!(
            l3.descriptor(g, &Desc::Table(Pa(0x10_2000))).unwrap_err(),
            SetupError::TableAtLevel3
        );
        assert_eq!(
            l1.descriptor(g, &page).unwrap_err(),
            SetupError::PageAboveLevel3(1)
        );
        let mut k64 = l1;
        k64.table = Some((TableOwner::Stage1 { space: 1 }, 1));
        let block = Desc::S1 {
            block: true,
            out: Pa(0),
            writable: false,
            user: false,
            global: true,
            extra: 0,
            af: true,
        };
        // 64K has no level-1 blocks without FEAT_LPA (Arm ARM D8.3.1).
        assert_eq!(
            k64.descriptor(Granule::K64, &block).unwrap_err(),
            SetupError::NoBlock {
                granule: Granule::K64,
                level: 1,
            }
        );
        assert_eq!(
            s2l3.descriptor(g, &page).unwrap_err(),
            SetupError::S1InStage2Table
        );
        let s2page = Desc::S2 {
            block: false,
            out: Pa(0x10_1000),
            read: true,
            write: true,
            extra: 0,
            af: false,
        };
        assert_eq!(
            l3.descriptor(g, &s2page).unwrap_err(),
            SetupError::S2InStage1Table
        );
        // Without the Access flag: S2AP read+write and valid page only.
        assert_eq!(
            s2l3.descriptor(g, &s2page).unwrap(),
            0x10_1000 | 0b11 | (0b11 << 6)
        );
        assert_eq!(
            l3.descriptor(g, &Desc::L1Cd(Pa(0x10_1000))).unwrap_err(),
            SetupError::L1CdInTable
        );
        assert_eq!(
            slot(None)
                .descriptor(g, &Desc::L1Cd(Pa(0x10_1000)))
                .unwrap(),
            0x10_1000 | 1
        );
        // A 2 MiB block at level 2 maps a 2 MiB aligned output.
        let l2 = slot(Some((TableOwner::Stage1 { space: 1 }, 2)));
        let block = Desc::S1 {
            block: true,
            out: Pa(0x10_0000),
            writable: true,
            user: false,
            global: true,
            extra: 0,
            af: true,
        };
        assert_eq!(
            l2.descriptor(g, &block).unwrap_err(),
            SetupError::Misaligned {
                what: "output address",
                addr: Pa(0x10_0000),
                align: 0x20_0000,
            }
        );
        assert!(matches!(
            l1.descriptor(g, &Desc::Table(Pa(0x10_0800))),
            Err(SetupError::Misaligned {
                what: "table address",
                ..
            })
        ));
    }

    #[test]
    fn contexts_need_distinct_names_and_start_level_aligned_roots() {
        let mut b = machine();
        let l0 = b.frame("L0", s1(0), None, None).unwrap().base.0;
        let l1 = b.frame("L1", s1(1), None, None).unwrap().base.0;
        assert_eq!(b.context("p", s1_ctx(l0)).unwrap(), 0);
        assert_eq!(
            b.context("p", s1_ctx(l0)).unwrap_err(),
            SetupError::ContextTwice("p".into())
        );
        assert_eq!(
            b.context("q", s1_ctx(l1)).unwrap_err(),
            SetupError::RootLevel {
                stage: TableStage::S1,
                frame: "L1".into(),
                level: 1,
                granule: Granule::K4,
                start: 0,
            }
        );
        assert_eq!(
            b.context("r", s1_ctx(l0 + 0x800)).unwrap_err(),
            SetupError::RootUnaligned {
                stage: TableStage::S1,
                root: l0 + 0x800,
                granule: Granule::K4,
            }
        );
        // A 16K stage 2 starts at level 1 (Arm ARM D8.2.9).
        let mut k16 = MachineBuilder::new(Granule::K16, POOL, 64, 1);
        let s0 = k16.frame("S0", s2(0), Some(8), None).unwrap().base.0;
        let ctx = Context {
            s1: None,
            s2: Some(StageConfig::new(Granule::K16, s0)),
            ..s1_ctx(0)
        };
        assert!(matches!(
            k16.context("g", ctx),
            Err(SetupError::RootLevel {
                stage: TableStage::S2,
                start: 1,
                ..
            })
        ));
        assert_eq!(
            b.check_table_base(0x10_0800).unwrap_err(),
            SetupError::TableBaseUnaligned {
                table: 0x10_0800,
                granule: Granule::K4,
            }
        );
    }

    #[test]
    fn device_contexts_are_named_but_not_walked_by_cpus() {
        let mut b = machine();
        let l0 = b.frame("L0", s1(0), None, None).unwrap().base.0;
        let m0 = b.frame("M0", s1(0), None, None).unwrap().base.0;
        b.context("p", s1_ctx(l0)).unwrap();
        assert_eq!(b.device_context("m", s1_ctx(m0)).unwrap(), 1);
        let model = b.build("t", Features::default()).unwrap().build().unwrap();
        assert_eq!(model.context_names, ["p", "m"]);
        assert_eq!(model.machine.cpus[0].contexts.len(), 1);
        assert_eq!(model.machine.cpus[0].contexts[0].s1.unwrap().ttb, l0);
    }

    #[test]
    fn more_cpus_than_agent_ids_are_refused() {
        let b = MachineBuilder::new(Granule::K4, POOL, 4, MAX_CPUS + 1);
        assert_eq!(
            b.build("t", Features::default()).unwrap_err(),
            SetupError::TooManyCpus(MAX_CPUS + 1)
        );
    }

    #[test]
    fn smmu_set_up_needs_an_smmu_and_only_one() {
        let mut b = machine();
        assert_eq!(b.ste(0, None).unwrap_err(), SetupError::NoSmmu);
        assert_eq!(
            b.device(Device::new(0, None, false, false)).unwrap_err(),
            SetupError::NoSmmu
        );
        assert_eq!(b.cd("CDT", 0, None).unwrap_err(), SetupError::NoSmmu);
        b.smmu(SmmuSpec::default()).unwrap();
        assert_eq!(
            b.smmu(SmmuSpec::default()).unwrap_err(),
            SetupError::SmmuTwice
        );
    }

    #[test]
    fn stream_tables_split_where_smmuv3_allows_and_rings_fit_the_registers() {
        let split = |split| SmmuSpec {
            split: Some(split),
            ..SmmuSpec::default()
        };
        assert_eq!(
            machine().smmu(split(7)).unwrap_err(),
            SetupError::SplitReserved(7)
        );
        assert!(machine().smmu(split(6)).is_ok());
        let huge = SmmuSpec {
            evtq: (Some(20), None),
            ..SmmuSpec::default()
        };
        assert_eq!(
            machine().smmu(huge).unwrap_err(),
            SetupError::Log2SizeTooLarge {
                what: Structure::EventQueue,
                log2size: 20,
                max: 19,
            }
        );
        let wide = SmmuSpec {
            log2size: Some(33),
            ..SmmuSpec::default()
        };
        assert!(matches!(
            machine().smmu(wide),
            Err(SetupError::Log2SizeTooLarge {
                what: Structure::StreamTable,
                ..
            })
        ));
    }

    #[test]
    fn stream_tables_cover_the_stream_ids_used() {
        let spec = SmmuSpec {
            log2size: Some(2),
            max_sid: 4,
            ..SmmuSpec::default()
        };
        assert_eq!(
            machine().smmu(spec).unwrap_err(),
            SetupError::StreamIdsUncovered {
                log2size: 2,
                sid: 4,
            }
        );
        // Sized for StreamID 3 (log2size 2): StreamID 4 has no slot.
        let mut b = with_smmu(ats());
        assert_eq!(
            b.ste(4, None).unwrap_err(),
            SetupError::SidBeyondTable {
                sid: 4,
                log2size: 2,
            }
        );
        assert_eq!(
            b.device(Device::new(4, None, false, false)).unwrap_err(),
            SetupError::SidBeyondTable {
                sid: 4,
                log2size: 2,
            }
        );
    }

    #[test]
    fn smmu_structures_go_into_smmu_frames_that_fit_and_are_aligned() {
        let place = |at: &str, log2: u8| {
            let mut b = machine();
            b.frame("D", data(), None, None).unwrap();
            b.frame("Q", FrameOwner::Smmu, None, None).unwrap();
            b.frame("Q2", FrameOwner::Smmu, Some(2), Some(Pa(0x10_3000)))
                .unwrap();
            b.smmu(SmmuSpec {
                cmdq: (Some(log2), Some(at.to_string())),
                ..SmmuSpec::default()
            })
        };
        assert!(place("Q", 8).is_ok());
        assert_eq!(
            place("D", 8).unwrap_err(),
            SetupError::NotSmmuFrame {
                what: Structure::CommandQueue,
                frame: "D".into(),
                owner: data(),
            }
        );
        // 512 commands of 16 bytes need 8 KiB.
        assert_eq!(
            place("Q", 9).unwrap_err(),
            SetupError::FrameTooSmall {
                what: Structure::CommandQueue,
                frame: "Q".into(),
                bytes: 0x2000,
                size: 0x1000,
            }
        );
        // An 8 KiB ring is aligned to 8 KiB (SMMUv3 6.3.25).
        assert_eq!(
            place("Q2", 9).unwrap_err(),
            SetupError::FrameMisaligned {
                what: Structure::CommandQueue,
                frame: "Q2".into(),
                align: 0x2000,
                base: Pa(0x10_3000),
            }
        );
        assert_eq!(
            place("nowhere", 8).unwrap_err(),
            SetupError::UnknownFrame("nowhere".into())
        );
        // Both queues in Q would overwrite each other.
        let mut b = machine();
        b.frame("Q", FrameOwner::Smmu, None, None).unwrap();
        let shared = SmmuSpec {
            cmdq: (None, Some("Q".into())),
            evtq: (None, Some("Q".into())),
            ..SmmuSpec::default()
        };
        assert_eq!(
            b.smmu(shared).unwrap_err(),
            SetupError::FrameShared {
                what: Structure::EventQueue,
                other: Structure::CommandQueue,
                frame: "Q".into(),
            }
        );
        // A linear table for 2^16 StreamIDs needs 4 MiB.
        let huge = SmmuSpec {
            max_sid: 0xffff,
            ..SmmuSpec::default()
        };
        assert_eq!(
            machine().smmu(huge).unwrap_err(),
            SetupError::NoRoomFor {
                what: Structure::StreamTable,
                frames: 1024,
            }
        );
    }

    #[test]
    fn devices_need_the_features_they_use() {
        let mut plain = with_smmu(SmmuSpec {
            max_sid: 3,
            ..SmmuSpec::default()
        });
        assert_eq!(
            plain.device(Device::new(3, None, true, false)).unwrap_err(),
            SetupError::AtsDeviceWithoutAts
        );
        let mut b = with_smmu(ats());
        // PRI needs ATS on the device and PRI on the SMMU.
        assert_eq!(
            b.device(Device::new(3, None, false, true)).unwrap_err(),
            SetupError::PriWithoutAts
        );
        assert_eq!(
            b.device(Device::new(3, None, true, true)).unwrap_err(),
            SetupError::PriWithoutAts
        );
        assert_eq!(b.device(Device::new(3, None, true, false)).unwrap(), 0);
        // No STE describes StreamID 3.
        assert_eq!(
            b.build("t", Features::default()).unwrap_err(),
            SetupError::DeviceWithoutSte { device: 0, sid: 3 }
        );
    }

    #[test]
    fn stes_are_written_once_and_legal() {
        let mut b = with_smmu(ats());
        let cdt = b.frame_named("CDT").unwrap().base.0;
        let mut ste = Ste::stage1(cdt);
        ste.eats = 1;
        b.ste(3, Some(&ste)).unwrap();
        assert_eq!(b.ste(3, None).unwrap_err(), SetupError::SteTwice(3));
        let strtab = b.parts().unwrap().strtab.base;
        let mut w = [0u64; 8];
        for (i, x) in w.iter_mut().enumerate() {
            *x = b.mem().read(Pa(strtab + 64 * 3 + 8 * i as u64));
        }
        assert_eq!(Ste::decode(&w).unwrap(), ste);

        let mut bad = Ste::bypass();
        bad.config = StreamConfig::S1Translate;
        bad.s1_context_ptr = cdt + 8;
        assert_eq!(
            b.ste(0, Some(&bad)).unwrap_err(),
            SetupError::CdPtrUnaligned(Pa(cdt + 8))
        );
        let s2 = Ste::stage2(1, 0x10_0800, Granule::K4);
        assert_eq!(
            b.ste(0, Some(&s2)).unwrap_err(),
            SetupError::TableBaseUnaligned {
                table: 0x10_0800,
                granule: Granule::K4,
            }
        );
        let mut stalls = Ste::stage2(1, 0x10_0000, Granule::K4);
        stalls.s2_s = true;
        assert_eq!(
            b.ste(0, Some(&stalls)).unwrap_err(),
            SetupError::S2StallWithoutStall
        );
        // STRW = 0b01 is Reserved for a Non-secure stage-1 STE (SMMUv3 5.2).
        let mut strw = Ste::stage1(cdt);
        strw.strw = 1;
        assert_eq!(
            b.ste(0, Some(&strw)).unwrap_err(),
            SetupError::IllegalSte(BadSte::StrwReserved { strw: 1 })
        );
        let mut no_ats = with_smmu(SmmuSpec {
            max_sid: 3,
            ..SmmuSpec::default()
        });
        assert_eq!(
            no_ats.ste(3, Some(&ste)).unwrap_err(),
            SetupError::EatsWithoutAts
        );
    }

    #[test]
    fn two_level_stream_tables_get_an_array_per_split() {
        let mut b = with_smmu(SmmuSpec {
            split: Some(6),
            log2size: Some(8),
            ..SmmuSpec::default()
        });
        b.ste(65, Some(&Ste::bypass())).unwrap();
        let st = b.parts().unwrap().strtab;
        // StreamID 65 is in the second array: L1STD 1, Span = SPLIT + 1.
        assert_eq!(b.mem().read(Pa(st.base)), 0);
        let l1 = L1Std::decode(b.mem().read(Pa(st.base + 8))).unwrap();
        assert_eq!(l1.span, 7);
        assert_eq!(b.mem().owner(Pfn(l1.l2ptr >> 12)), FrameOwner::Smmu);
        assert_ne!(b.mem().read(Pa(l1.l2ptr + 64)), 0);
    }

    #[test]
    fn cds_go_into_smmu_frames_and_are_legal() {
        let mut b = with_smmu(ats());
        b.frame("D", data(), None, None).unwrap();
        let cd = Cd::new(1, 0x10_0000, Granule::K4);
        b.cd("CDT", 63, Some(&cd)).unwrap();
        let base = b.frame_named("CDT").unwrap().base;
        assert_eq!(b.mem().read(Pa(base.0 + 63 * 64)), cd.encode()[0]);
        assert_eq!(
            b.cd("D", 0, Some(&cd)).unwrap_err(),
            SetupError::CdTableNotSmmu {
                frame: "D".into(),
                owner: data(),
            }
        );
        assert_eq!(
            b.cd("CDT", 64, None).unwrap_err(),
            SetupError::CdSlotOutOfRange {
                slot: 64,
                frame: "CDT".into(),
                slots: 64,
            }
        );
        assert_eq!(
            b.cd("nowhere", 0, None).unwrap_err(),
            SetupError::UnknownFrame("nowhere".into())
        );
        // CDs share their table, but not a queue's frame.
        b.cd("CDT", 1, None).unwrap();
        let mut q = machine();
        q.frame("Q", FrameOwner::Smmu, None, None).unwrap();
        q.smmu(SmmuSpec {
            cmdq: (None, Some("Q".into())),
            ..SmmuSpec::default()
        })
        .unwrap();
        assert_eq!(
            q.cd("Q", 0, None).unwrap_err(),
            SetupError::FrameShared {
                what: Structure::CdTable,
                other: Structure::CommandQueue,
                frame: "Q".into(),
            }
        );
        let off = Cd::new(1, 0x10_0800, Granule::K4);
        assert!(matches!(
            b.cd("CDT", 0, Some(&off)),
            Err(SetupError::TableBaseUnaligned { .. })
        ));
        let mut stall = cd;
        stall.s = true;
        assert_eq!(
            b.cd("CDT", 0, Some(&stall)).unwrap_err(),
            SetupError::StallingCdWithoutStall
        );
        let mut aa32 = cd;
        aa32.aa64 = false;
        assert_eq!(
            b.cd("CDT", 0, Some(&aa32)).unwrap_err(),
            SetupError::IllegalCd(BadCd::Aa64Unsupported)
        );
    }

    #[test]
    fn a_finished_set_up_runs_its_smmu_on_its_memory() {
        let mut b = with_smmu(ats());
        let cdt = b.frame_named("CDT").unwrap().base.0;
        b.ste(3, Some(&Ste::stage1(cdt))).unwrap();
        b.device(Device::new(3, None, true, false)).unwrap();
        let model = b.build("t", Features::default()).unwrap().build().unwrap();
        let smmu = model.machine.smmu.as_ref().unwrap();
        assert!(smmu.opts.features.ats);
        assert_eq!(smmu.devices.len(), 1);
        assert_eq!(smmu.cmdq.ring.log2size, CMDQ_LOG2);
        assert_eq!(smmu.evtq.ring.log2size, EVTQ_LOG2);
        for pa in [smmu.strtab.base, smmu.cmdq.ring.base, smmu.evtq.ring.base] {
            assert_eq!(model.machine.mem.owner(Pfn(pa >> 12)), FrameOwner::Smmu);
        }
    }
}
