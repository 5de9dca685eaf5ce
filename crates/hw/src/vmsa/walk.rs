//! Translation table walks: one address at a time (what a walker returns
//! now, or the fault), and exhaustively (every entry a walker could make from
//! the tables as it may see them: the raw material of the may-hold set).

use super::desc::{decode, Descriptor, TableStage};
use crate::addr::{AddrRange, Granule, InputAddr, InputRange, Ipa, Pa, Va, OUTPUT_ADDRESS_BITS};
use crate::mem::PhysMem;
use crate::tlb::{Access, EntryKind, Mapping, Perms, Regime, Stage, TlbEntry};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The configuration of one stage of a translation regime: granule, table
/// base (TTBR / VTTBR BADDR) and output size (TCR.IPS / VTCR.PS; Arm ARM
/// D8.1.7, Table D8-6).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StageConfig {
    /// Translation granule.
    pub granule: Granule,
    /// Base of the start-level table: a PA, or an IPA for a nested stage 1.
    pub ttb: u64,
    /// Output address size in bits (at most 48).
    pub oa_bits: u32,
}

impl StageConfig {
    /// A 48-bit-output stage with tables at `ttb`.
    pub const fn new(granule: Granule, ttb: u64) -> StageConfig {
        StageConfig {
            granule,
            ttb,
            oa_bits: OUTPUT_ADDRESS_BITS,
        }
    }
}

/// A translation context an agent can walk: stage 1 alone (tagged with
/// ASID, and VMID when running in a VM with stage 2 off), stage 2 alone, or
/// nested (stage-1 tables and output translated by stage 2, Arm ARM D8.2.1,
/// RBTTHB).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Context {
    /// Regime of the entries this context creates.
    pub regime: Regime,
    /// ASID of the stage-1 tables (ignored without stage 1).
    pub asid: u16,
    /// VMID of the VM (0 for the host).
    pub vmid: u16,
    /// Stage-1 configuration, if stage 1 is enabled.
    pub s1: Option<StageConfig>,
    /// Stage-2 configuration, if stage 2 is enabled.
    pub s2: Option<StageConfig>,
}

impl Context {
    /// The VMID its entries are tagged with: EL1&0 entries carry the VMID
    /// (Arm ARM D8.16.3, RQNPQX); EL2 entries have none, recorded as 0.
    pub const fn tag_vmid(&self) -> u16 {
        match self.regime {
            Regime::El10 => self.vmid,
            Regime::El2 => 0,
        }
    }

    /// The kind of leaf an access in this context ends on: a combined
    /// stage-1+2 entry when nested, else the one enabled stage's (stage 1
    /// for a context with no translation, whose accesses need no entry).
    pub const fn access_stage(&self) -> Stage {
        match (self.s1.is_some(), self.s2.is_some()) {
            (true, true) => Stage::Combined,
            (false, true) => Stage::S2,
            _ => Stage::S1,
        }
    }

    /// The input address the leaves of [`Context::access_stage`] are looked
    /// up by for an access at `va`: the IPA it is taken as
    /// ([`Va::flat_ipa`]) for a stage-2-only context, else the VA itself
    /// (a context with no translation looks up no leaves, as stage 1).
    pub const fn access_input(&self, va: Va) -> InputAddr {
        match (self.s1.is_some(), self.s2.is_some()) {
            (false, true) => InputAddr::Ipa(va.flat_ipa()),
            _ => InputAddr::Va(va),
        }
    }
}

/// Kind of a translation fault (Arm ARM D8.15.1, RYLSQG: MMU fault types).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Invalid descriptor (or no translation configured).
    Translation,
    /// Leaf with AF = 0 and no hardware AF management.
    AccessFlag,
    /// The final permissions forbid the access.
    Permission,
    /// An address above the configured output size.
    AddressSize,
}

/// A fault with where it happened.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fault {
    /// What went wrong.
    pub kind: FaultKind,
    /// Which stage faulted.
    pub stage: TableStage,
    /// Lookup level of the descriptor at fault (the leaf level for Permission).
    pub level: u8,
    /// A stage-2 fault on a stage-1 table walk (S1PTW; Arm ARM D8.15.4.1).
    pub s1ptw: bool,
}

impl Fault {
    /// The Permission fault an access raises when it hits a cached leaf
    /// whose permissions forbid it (such leaves may be cached: Arm ARM
    /// D8.15.1.5, RJVXRH), at that leaf's stage and level.
    pub fn from_cached_leaf(e: &TlbEntry) -> Fault {
        Fault {
            kind: FaultKind::Permission,
            stage: match e.stage() {
                Stage::S2 => TableStage::S2,
                Stage::S1 | Stage::Combined => TableStage::S1,
            },
            level: e.level,
            s1ptw: false,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            FaultKind::Translation => "translation",
            FaultKind::AccessFlag => "access flag",
            FaultKind::Permission => "permission",
            FaultKind::AddressSize => "address size",
        };
        let stage = match self.stage {
            TableStage::S1 => 1,
            TableStage::S2 => 2,
        };
        write!(f, "stage-{stage} {kind} fault at level {}", self.level)?;
        if self.s1ptw {
            f.write_str(" (on a stage-1 table walk)")?;
        }
        Ok(())
    }
}

/// A successful walk: the output address, the final permissions, and every
/// entry the walk let the walker cache (walk-cache entries and the leaf).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Output physical address.
    pub pa: Pa,
    /// The IPA stage 2 translated: the stage-1 output of a nested walk, the
    /// input of a stage-2 walk; `None` where no stage 2 applies.
    pub ipa: Option<Ipa>,
    /// Permissions of the leaf (combined across stages).
    pub perms: Perms,
    /// The entries this walk can leave behind in a TLB.
    pub entries: Vec<TlbEntry>,
}

/// The level a walk of `stage` starts at for a 48-bit input.
pub const fn start_level(stage: TableStage, g: Granule) -> u8 {
    match stage {
        TableStage::S1 => g.start_level(),
        TableStage::S2 => g.s2_start_level(),
    }
}

/// Maps a next-level table address to the PA a single walk reads it at,
/// recording the entries that translation made (a nested stage 1's stage-2
/// walks), or the stage-2 fault.
type WalkResolver<'a> = dyn FnMut(u64, &mut Vec<TlbEntry>) -> Result<u64, Fault> + 'a;

/// Calls its callback with every PA a walker may read a table address at.
pub type TableAliases<'a> = dyn Fn(u64, &mut dyn FnMut(u64)) + 'a;

/// One leaf reached by a single-stage walk.
#[derive(Copy, Clone, Debug)]
struct StageLeaf {
    output: u64,
    level: u8,
    span_shift: u32,
    perms: Perms,
    global: bool,
}

/// The ASID and VMID tags of an entry: stage-2 and global entries carry no
/// ASID (Arm ARM D8.16.3.1, RQGKGF), and walk entries are never global
/// (RCHVGJ: entries from levels other than the final one are non-global);
/// EL1&0 entries carry the VMID (RQNPQX).
fn tag(ctx: &Context, stage: Stage, global: bool) -> (Option<u16>, u16) {
    let asid = match stage {
        Stage::S2 => None,
        _ if global => None,
        _ => Some(ctx.asid),
    };
    (asid, ctx.tag_vmid())
}

/// Walks `addr` through a single stage reading the latest memory values.
/// `resolve` maps each table address to a PA (the identity except for a
/// nested stage 1); a failure there is a stage-2 fault on the table walk.
fn walk_stage(
    mem: &PhysMem,
    ctx: &Context,
    stage: TableStage,
    cfg: StageConfig,
    addr: u64,
    resolve: &mut WalkResolver<'_>,
    entries: &mut Vec<TlbEntry>,
) -> Result<StageLeaf, Fault> {
    let g = cfg.granule;
    let fault = |kind, level| Fault {
        kind,
        stage,
        level,
        s1ptw: false,
    };
    let entry_stage = entry_stage(stage);
    // Arm ARM D8.15.1.1 (RVZZSZ) and D8.15.1.2 (RCVSBH, RBFHQH): an input
    // address above the configured size is a Translation fault, and a table
    // base above the output size an Address size fault; both are reported
    // at level 0 whatever the start level
    // (pseudocode AArch64.S1Translate / AArch64.S2Translate set
    // fault.level = 0; ESR FSC 0b000000 is "Address size fault, level 0 of
    // translation or translation table base register"). This matters for
    // 64K, whose walks start at level 1.
    if addr >> crate::addr::INPUT_ADDRESS_BITS != 0 {
        return Err(fault(FaultKind::Translation, 0));
    }
    if cfg.oa_bits < 48 && cfg.ttb >> cfg.oa_bits != 0 {
        return Err(fault(FaultKind::AddressSize, 0));
    }
    let mut table = resolve(cfg.ttb, entries)?;
    let start = start_level(stage, g);
    let mut level = start;
    loop {
        let pa = Pa(table + 8 * g.index_from(start, level, addr));
        match decode(mem.read(pa), stage, g, level, cfg.oa_bits) {
            Err(_) => return Err(fault(FaultKind::AddressSize, level)),
            Ok(Descriptor::Invalid) => return Err(fault(FaultKind::Translation, level)),
            Ok(Descriptor::Table { next }) => {
                entries.push(walk_entry(ctx, entry_stage, g, level, addr, next));
                table = resolve(next, entries)?;
                level += 1;
            }
            Ok(Descriptor::Leaf { output, attrs }) => {
                if !attrs.af {
                    return Err(fault(FaultKind::AccessFlag, level));
                }
                return Ok(StageLeaf {
                    output,
                    level,
                    span_shift: g.level_shift(level),
                    perms: attrs.perms(stage),
                    global: !attrs.ng,
                });
            }
        }
    }
}

/// The walk-cache entry a table descriptor at `level` makes for `addr`:
/// never global (Arm ARM D8.16.3.1, RCHVGJ), spanning the descriptor's range.
fn walk_entry(
    ctx: &Context,
    stage: Stage,
    g: Granule,
    level: u8,
    addr: u64,
    next: u64,
) -> TlbEntry {
    let (asid, vmid) = tag(ctx, stage, false);
    let input = addr & !((1u64 << g.level_shift(level)) - 1);
    TlbEntry::walk(Mapping::of_stage(stage, input, next), level, g).tagged(ctx.regime, vmid, asid)
}

/// The entry kind a walk of `stage` tables makes.
const fn entry_stage(stage: TableStage) -> Stage {
    match stage {
        TableStage::S1 => Stage::S1,
        TableStage::S2 => Stage::S2,
    }
}

fn leaf_entry(ctx: &Context, stage: Stage, g: Granule, l: &StageLeaf, addr: u64) -> TlbEntry {
    let (asid, vmid) = tag(ctx, stage, l.global);
    let input = addr & !((1u64 << l.span_shift) - 1);
    TlbEntry::leaf(Mapping::of_stage(stage, input, l.output), l.level, g)
        .tagged(ctx.regime, vmid, asid)
        .with_span(l.span_shift as u8)
        .with_perms(l.perms)
}

fn walk_s2(
    mem: &PhysMem,
    ctx: &Context,
    s2: StageConfig,
    ipa: Ipa,
    entries: &mut Vec<TlbEntry>,
) -> Result<(Pa, Perms), Fault> {
    let leaf = walk_stage(
        mem,
        ctx,
        TableStage::S2,
        s2,
        ipa.0,
        &mut |t, _| Ok(t),
        entries,
    )?;
    entries.push(leaf_entry(ctx, Stage::S2, s2.granule, &leaf, ipa.0));
    let offset = ipa.0 & ((1u64 << leaf.span_shift) - 1);
    Ok((Pa(leaf.output + offset), leaf.perms))
}

/// The permissions of an access no stage translates.
const UNTRANSLATED: Perms = Perms {
    read: true,
    write: true,
    user: true,
    uxn: false,
    pxn: false,
    dbm: false,
};

/// Translates an access at `va` in `ctx` as a walker that reads the latest
/// memory values and caches nothing would, then checks `access` against the
/// final permissions (Arm ARM D8.4; both stages must permit, D8.4.3). A walk
/// that faults leaves no entry behind: a model choice for this one-walk view
/// (the architecture would let the table entries above the fault, D8.16
/// RSQBCS, and a leaf failing its permission check, D8.15.1.5 RJVXRH, be
/// cached; `enumerate_stage` lists those).
///
/// An access is made at a VA: stage 1 translates it, or, in a context
/// without stage 1, it is the IPA ([`Va::flat_ipa`]); use [`translate_ipa`]
/// to have stage 2 alone translate an IPA. An IPA is not a VA:
///
/// ```
/// use tlbcheck_hw::addr::{Granule, Pa, Va};
/// use tlbcheck_hw::mem::{PhysMem, Pfn};
/// use tlbcheck_hw::tlb::{Access, Regime};
/// use tlbcheck_hw::vmsa::{translate, Context, StageConfig};
///
/// let mem = PhysMem::new(Pfn(0x100), 4);
/// let ctx = Context {
///     regime: Regime::El10,
///     asid: 1,
///     vmid: 0,
///     s1: Some(StageConfig::new(Granule::K4, 0x10_0000)),
///     s2: None,
/// };
/// let read = Access { write: false, user: false };
/// assert!(translate(&mem, &ctx, Va(0x1000), read).is_err()); // unmapped
/// ```
///
/// ```compile_fail
/// # use tlbcheck_hw::addr::{Granule, Ipa, Pa};
/// # use tlbcheck_hw::mem::{PhysMem, Pfn};
/// # use tlbcheck_hw::tlb::{Access, Regime};
/// # use tlbcheck_hw::vmsa::{translate, Context, StageConfig};
/// # let mem = PhysMem::new(Pfn(0x100), 4);
/// # let ctx = Context {
/// #     regime: Regime::El10,
/// #     asid: 1,
/// #     vmid: 0,
/// #     s1: Some(StageConfig::new(Granule::K4, 0x10_0000)),
/// #     s2: None,
/// # };
/// # let read = Access { write: false, user: false };
/// // error[E0308]: mismatched types: expected `Va`, found `Ipa`
/// let _ = translate(&mem, &ctx, Ipa(0x1000), read);
/// ```
pub fn translate(
    mem: &PhysMem,
    ctx: &Context,
    va: Va,
    access: Access,
) -> Result<Translation, Fault> {
    let mut entries = Vec::new();
    let (pa, ipa, perms) = match (ctx.s1, ctx.s2) {
        (None, None) => (va.flat_ipa().flat_pa(), None, UNTRANSLATED),
        (None, Some(s2)) => {
            let ipa = va.flat_ipa();
            let (pa, perms) = walk_s2(mem, ctx, s2, ipa, &mut entries)?;
            (pa, Some(ipa), perms)
        }
        (Some(s1), s2) => {
            // In a nested walk every stage-1 table address is an IPA that
            // stage 2 must translate first (Arm ARM D8.2.1, RBTTHB; D8.15.4
            // step 4).
            let mut resolve = |t: u64, e: &mut Vec<TlbEntry>| match s2 {
                None => Ok(Ipa(t).flat_pa().0),
                Some(s2) => {
                    let (pa, perms) =
                        walk_s2(mem, ctx, s2, Ipa(t), e).map_err(|f| Fault { s1ptw: true, ..f })?;
                    // A stage-1 table walk is a read that stage 2 checks
                    // like any other (Arm ARM D8.4.2.1, RTVZYF: read
                    // permission implies MMURead; D8.15.4.1; pseudocode
                    // AArch64.S2Translate -> AArch64.S2CheckPermissions for
                    // AccessType_TTW): no S2AP read permission on the page
                    // holding a stage-1 table is a stage-2 Permission fault
                    // with S1PTW set.
                    if !perms.read {
                        let level = e.last().map_or(0, |l| l.level);
                        return Err(Fault {
                            kind: FaultKind::Permission,
                            stage: TableStage::S2,
                            level,
                            s1ptw: true,
                        });
                    }
                    Ok(pa.0)
                }
            };
            let leaf = walk_stage(
                mem,
                ctx,
                TableStage::S1,
                s1,
                va.0,
                &mut resolve,
                &mut entries,
            )?;
            let s1_out = Ipa(leaf.output + (va.0 & ((1u64 << leaf.span_shift) - 1)));
            match s2 {
                None => {
                    entries.push(leaf_entry(ctx, Stage::S1, s1.granule, &leaf, va.0));
                    (s1_out.flat_pa(), None, leaf.perms)
                }
                Some(s2) => {
                    // Stage-1 permissions are checked before stage 2
                    // translates the output IPA (pseudocode
                    // AArch64.FullTranslate: AArch64.S1Translate, which ends
                    // with AArch64.S1CheckPermissions, then
                    // AArch64.S2Translate): a stage-1 Permission fault takes
                    // priority over any stage-2 fault on the output
                    // (Arm ARM D8.15.5, RXCHFJ, items 36 and 37).
                    if !leaf.perms.allows(access) {
                        return Err(Fault {
                            kind: FaultKind::Permission,
                            stage: TableStage::S1,
                            level: leaf.level,
                            s1ptw: false,
                        });
                    }
                    let s1_entry = leaf_entry(ctx, Stage::S1, s1.granule, &leaf, va.0);
                    let mut s2_entries = Vec::new();
                    let (pa, s2_perms) = walk_s2(mem, ctx, s2, s1_out, &mut s2_entries)?;
                    let s2_leaf = *s2_entries.last().expect("walk_s2 pushes its leaf");
                    entries.extend(s2_entries);
                    entries.push(s1_entry);
                    entries
                        .push(combine(&s1_entry, &s2_leaf).expect("overlapping by construction"));
                    (pa, Some(s1_out), combine_perms(leaf.perms, s2_perms))
                }
            }
        }
    };
    check_access(ctx, pa, ipa, perms, entries, access)
}

/// Translates `ipa` by the stage 2 of `ctx` alone (as the second half of a
/// nested walk would, or a stage-2-only context does), then checks `access`
/// against the stage-2 permissions. Without stage 2 the IPA is the PA
/// ([`Ipa::flat_pa`]).
pub fn translate_ipa(
    mem: &PhysMem,
    ctx: &Context,
    ipa: Ipa,
    access: Access,
) -> Result<Translation, Fault> {
    let mut entries = Vec::new();
    let (pa, ipa, perms) = match ctx.s2 {
        None => (ipa.flat_pa(), None, UNTRANSLATED),
        Some(s2) => {
            let (pa, perms) = walk_s2(mem, ctx, s2, ipa, &mut entries)?;
            (pa, Some(ipa), perms)
        }
    };
    check_access(ctx, pa, ipa, perms, entries, access)
}

/// The end of a walk: the Permission fault if the final permissions forbid
/// `access`, else the translation.
fn check_access(
    ctx: &Context,
    pa: Pa,
    ipa: Option<Ipa>,
    perms: Perms,
    entries: Vec<TlbEntry>,
    access: Access,
) -> Result<Translation, Fault> {
    if !perms.allows(access) {
        let stage = if ctx.s1.is_some() && !stage1_allows(&entries, access) {
            TableStage::S1
        } else {
            TableStage::S2
        };
        // The level of a Permission fault is that of the leaf of the stage
        // that faulted (Arm ARM D8.15.1.5, RCSRQR; D8.15.4.2): in a nested
        // walk the last entry is
        // the combined one, at the stage-1 level, so look the stage up.
        let leaf_stage = match stage {
            TableStage::S1 => Stage::S1,
            TableStage::S2 => Stage::S2,
        };
        let level = entries
            .iter()
            .rev()
            .find(|e| e.stage() == leaf_stage && e.kind == EntryKind::Leaf)
            .map_or(0, |e| e.level);
        return Err(Fault {
            kind: FaultKind::Permission,
            stage,
            level,
            s1ptw: false,
        });
    }
    Ok(Translation {
        pa,
        ipa,
        perms,
        entries,
    })
}

fn stage1_allows(entries: &[TlbEntry], access: Access) -> bool {
    entries
        .iter()
        .rev()
        .find(|e| e.stage() == Stage::S1 && e.kind == EntryKind::Leaf)
        .is_none_or(|e| e.perms.allows(access))
}

/// Permissions of a combined entry: an access must pass both stages.
pub fn combine_perms(s1: Perms, s2: Perms) -> Perms {
    Perms {
        read: s1.read && s2.read,
        write: s1.write && s2.write,
        user: s1.user && s2.user,
        uxn: s1.uxn || s2.uxn,
        pxn: s1.pxn || s2.pxn,
        dbm: s1.dbm && s2.dbm,
    }
}

/// The combined stage-1+2 entry a TLB may form from a stage-1 leaf (VA ->
/// IPA) and a stage-2 leaf (IPA -> PA) covering part of its output: the
/// span is the smaller of the two (a model choice: Arm ARM DDI 0487M.a D8.17
/// allows "structures combining stage 1 and stage 2 information" but gives
/// no size rule for them). `None` if they do not
/// overlap.
pub fn combine(s1: &TlbEntry, s2: &TlbEntry) -> Option<TlbEntry> {
    let (
        Mapping::S1 {
            input: va,
            output: ipa,
        },
        Mapping::S2 {
            input: s2_ipa,
            output: s2_pa,
        },
    ) = (s1.mapping(), s2.mapping())
    else {
        return None;
    };
    // The stage-1 output IPAs, as stage-2 inputs.
    if !InputRange::Ipa(s1.output_span()).overlaps(s2.input_range()) {
        return None;
    }
    let (input, span_shift, output) = if s2.span_shift >= s1.span_shift {
        (va, s1.span_shift, s2.translate_ipa(ipa)?)
    } else {
        (Va(va.0 + (s2_ipa.0 - ipa.0)), s2.span_shift, s2_pa)
    };
    // A combined entry keeps the stage-1 tags; its level is the stage-1 leaf level.
    Some(
        s1.with_mapping(Mapping::Combined { input, output })
            .with_span(span_shift)
            .with_perms(combine_perms(s1.perms, s2.perms)),
    )
}

/// Every entry a walker of `agent` could create by walking one stage's
/// tables from `table` (already a PA) at `level`, covering input addresses
/// from `input_base`, reading every value it may observe (latest values and
/// stores not yet visible to it). `resolve` turns a next-table address into
/// the PAs the walker may read it at (stage-2 translations for a nested
/// stage 1). `emit` receives each entry with the PA of its descriptor.
#[allow(clippy::too_many_arguments)]
pub fn enumerate_stage(
    mem: &PhysMem,
    agent: u8,
    ctx: &Context,
    stage: TableStage,
    cfg: StageConfig,
    level: u8,
    table: u64,
    input_base: u64,
    resolve: &TableAliases<'_>,
    emit: &mut dyn FnMut(TlbEntry, Pa),
) {
    let everything = [AddrRange::ALL];
    let at = Start {
        level,
        table,
        input_base,
    };
    enumerate_stage_within(mem, agent, ctx, stage, cfg, at, &everything, resolve, emit);
}

/// Where an enumeration starts: a table (already a PA) at a level, covering
/// input addresses from `input_base`.
#[derive(Copy, Clone, Debug)]
pub struct Start {
    /// Lookup level of the table.
    pub level: u8,
    /// Physical address of the table.
    pub table: u64,
    /// First input address the table translates.
    pub input_base: u64,
}

/// [`enumerate_stage`] restricted to descriptors whose span overlaps one of
/// `within` (input addresses of this stage, sorted and disjoint): every walk
/// to an entry inside those ranges only reads such descriptors, so nothing
/// in range is missed.
#[allow(clippy::too_many_arguments)]
pub fn enumerate_stage_within(
    mem: &PhysMem,
    agent: u8,
    ctx: &Context,
    stage: TableStage,
    cfg: StageConfig,
    at: Start,
    within: &[AddrRange],
    resolve: &TableAliases<'_>,
    emit: &mut dyn FnMut(TlbEntry, Pa),
) {
    let Start {
        level,
        table,
        input_base,
    } = at;
    let g = cfg.granule;
    let shift = g.level_shift(level);
    let entry_stage = entry_stage(stage);
    let entries = g.table_entries(start_level(stage, g), level);
    let last_input = input_base.saturating_add((entries << shift) - 1);
    // Visit only the slots whose span overlaps a range: `within` is sorted
    // and disjoint, so no slot is visited twice.
    for r in within {
        if r.last < input_base || r.first > last_input {
            continue;
        }
        let first = r.first.saturating_sub(input_base) >> shift;
        let last = (r.last.min(last_input) - input_base) >> shift;
        let window = Pa(table + 8 * first);
        mem.for_each_walker_word(agent, window, 8 * (last - first + 1), |pa, raw| {
            let input = input_base + (((pa.0 - table) / 8) << shift);
            match decode(raw, stage, g, level, cfg.oa_bits) {
                Ok(Descriptor::Table { next }) if level < 3 => {
                    emit(walk_entry(ctx, entry_stage, g, level, input, next), pa);
                    resolve(next, &mut |next_pa| {
                        let at = Start {
                            level: level + 1,
                            table: next_pa,
                            input_base: input,
                        };
                        enumerate_stage_within(
                            mem, agent, ctx, stage, cfg, at, within, resolve, emit,
                        )
                    });
                }
                Ok(Descriptor::Leaf { output, attrs }) if attrs.af => {
                    let leaf = StageLeaf {
                        output,
                        level,
                        span_shift: shift,
                        perms: attrs.perms(stage),
                        global: !attrs.ng,
                    };
                    emit(leaf_entry(ctx, entry_stage, g, &leaf, input), pa);
                }
                // Faulting descriptors are never cached (Arm ARM D8.16,
                // RXCLRD: Translation, Address size and Access flag faults).
                _ => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::OutputAddr;
    use crate::mem::Pfn;
    use crate::vmsa::desc::{s1_block, s1_page, s2_page, table};

    const READ: Access = Access {
        write: false,
        user: false,
    };
    const WRITE: Access = Access {
        write: true,
        user: false,
    };

    fn mem() -> PhysMem {
        PhysMem::new(Pfn(0x100), 64)
    }

    fn ctx_s1(ttb: u64) -> Context {
        Context {
            regime: Regime::El10,
            asid: 7,
            vmid: 0,
            s1: Some(StageConfig::new(Granule::K4, ttb)),
            s2: None,
        }
    }

    /// 4K, VA 0x4020_3000: L0 index 0, L1 index VA[38:30] = 1,
    /// L2 index VA[29:21] = 1, L3 index VA[20:12] = 3.
    #[test]
    fn four_level_4k_walk_by_hand() {
        let mut m = mem();
        let (l0, l1, l2, l3) = (0x10_0000u64, 0x10_1000, 0x10_2000, 0x10_3000);
        let va = 0x4020_3000u64;
        assert_eq!(Granule::K4.index(1, va), 1);
        assert_eq!(Granule::K4.index(2, va), 1);
        m.write(Pa(l0), table(l1)).unwrap();
        m.write(Pa(l1 + 8), table(l2)).unwrap();
        m.write(Pa(l2 + 8), table(l3)).unwrap();
        m.write(Pa(l3 + 8 * 3), s1_page(0x8000_0000, false, false, false))
            .unwrap();
        let t = translate(&m, &ctx_s1(l0), Va(va + 0x10), READ).unwrap();
        assert_eq!(t.pa, Pa(0x8000_0010));
        assert_eq!(t.entries.len(), 4);
        assert_eq!(t.entries[3].kind, EntryKind::Leaf);
        assert_eq!(t.entries[3].asid, Some(7));
        assert_eq!(t.entries[2].output_ipa(), Some(Ipa(l3)));
        // Read-only: a write is a permission fault at level 3.
        let f = translate(&m, &ctx_s1(l0), Va(va), WRITE).unwrap_err();
        assert_eq!(
            (f.kind, f.level, f.stage),
            (FaultKind::Permission, 3, TableStage::S1)
        );
        // Unmapped neighbour: translation fault at level 3.
        let f = translate(&m, &ctx_s1(l0), Va(va + 0x1000), READ).unwrap_err();
        assert_eq!((f.kind, f.level), (FaultKind::Translation, 3));
    }

    #[test]
    fn access_flag_and_address_size_faults() {
        let mut m = mem();
        m.write(Pa(0x10_0000), table(0x10_1000)).unwrap();
        m.write(
            Pa(0x10_1000),
            s1_block(0x4000_0000, true, false, true) & !crate::vmsa::desc::bits::AF,
        )
        .unwrap();
        let f = translate(&m, &ctx_s1(0x10_0000), Va(0x1234), READ).unwrap_err();
        assert_eq!((f.kind, f.level), (FaultKind::AccessFlag, 1));
        let mut c = ctx_s1(0x10_0000);
        c.s1 = Some(StageConfig {
            oa_bits: 20,
            ..c.s1.unwrap()
        });
        let f = translate(&m, &c, Va(0x1234), READ).unwrap_err();
        assert_eq!(f.kind, FaultKind::AddressSize);
    }

    /// Stage-2 table pages of [`nested`], and the stage-2 L3 slot of an IPA.
    const NESTED_S2: [u64; 4] = [0x12_0000, 0x12_1000, 0x12_2000, 0x12_3000];

    fn nested_s2_slot(ipa: u64) -> Pa {
        Pa(NESTED_S2[3] + 8 * ((ipa >> 12) & 0x1ff))
    }

    /// Stage-1 tables at IPAs 0x10_0000.. which stage 2 maps to PAs
    /// 0x11_0000..; VA 0x5000 -> IPA 0x2_0000 -> PA 0x50_0000 (stage 2
    /// read-only).
    fn nested() -> (PhysMem, Context) {
        let mut m = mem();
        let s2 = NESTED_S2;
        m.write(Pa(s2[0]), table(s2[1])).unwrap();
        m.write(Pa(s2[1]), table(s2[2])).unwrap();
        m.write(Pa(s2[2]), table(s2[3])).unwrap();
        for ipa in [0x10_0000u64, 0x10_1000, 0x10_2000, 0x10_3000] {
            m.write(nested_s2_slot(ipa), s2_page(ipa + 0x1_0000, true, true))
                .unwrap();
        }
        m.write(nested_s2_slot(0x2_0000), s2_page(0x50_0000, true, false))
            .unwrap();
        m.write(Pa(0x11_0000), table(0x10_1000)).unwrap();
        m.write(Pa(0x11_1000), table(0x10_2000)).unwrap();
        m.write(Pa(0x11_2000), table(0x10_3000)).unwrap();
        m.write(Pa(0x11_3000 + 8 * 5), s1_page(0x2_0000, true, false, false))
            .unwrap();
        let ctx = Context {
            regime: Regime::El10,
            asid: 3,
            vmid: 9,
            s1: Some(StageConfig::new(Granule::K4, 0x10_0000)),
            s2: Some(StageConfig::new(Granule::K4, s2[0])),
        };
        (m, ctx)
    }

    /// Nested (see [`nested`]): a missing stage-2 mapping of a stage-1
    /// table is a stage-2 fault on the stage-1 walk.
    #[test]
    fn nested_walk_translates_table_addresses() {
        let (mut m, ctx) = nested();
        let s2_slot = nested_s2_slot;
        let t = translate(&m, &ctx, Va(0x5008), READ).unwrap();
        assert_eq!(t.pa, Pa(0x50_0008));
        let combined = t
            .entries
            .iter()
            .find(|e| e.stage() == Stage::Combined)
            .unwrap();
        assert_eq!(
            (combined.input_va(), combined.output_pa(), combined.vmid),
            (Some(Va(0x5000)), Some(Pa(0x50_0000)), 9)
        );
        assert!(!combined.perms.write, "stage 2 is read-only");
        let f = translate(&m, &ctx, Va(0x5008), WRITE).unwrap_err();
        assert_eq!((f.kind, f.stage), (FaultKind::Permission, TableStage::S2));
        m.write(s2_slot(0x10_2000), 0).unwrap();
        let f = translate(&m, &ctx, Va(0x5008), READ).unwrap_err();
        assert_eq!(
            (f.kind, f.stage, f.level, f.s1ptw),
            (FaultKind::Translation, TableStage::S2, 3, true)
        );
    }

    /// The spaces of a nested walk: VA in, the stage-1 output an IPA, the
    /// final output a PA; stage-1 entries map VAs to IPAs (their table
    /// pointers are IPAs too), stage-2 entries IPAs to PAs, the combined
    /// entry VAs to PAs.
    #[test]
    fn nested_walk_outputs_are_typed_by_stage() {
        let (m, ctx) = nested();
        let t = translate(&m, &ctx, Va(0x5008), READ).unwrap();
        assert_eq!(t.ipa, Some(Ipa(0x2_0008)), "the stage-1 output");
        assert_eq!(t.pa, Pa(0x50_0008), "the final output");
        let of = |stage, kind| {
            t.entries
                .iter()
                .filter(move |e| e.stage() == stage && e.kind == kind)
        };
        let s1_leaf = of(Stage::S1, EntryKind::Leaf).next().unwrap();
        assert_eq!(
            s1_leaf.mapping(),
            Mapping::S1 {
                input: Va(0x5000),
                output: Ipa(0x2_0000)
            }
        );
        assert_eq!(s1_leaf.output_pa(), None, "a stage-1 output is no PA");
        let s1_tables: Vec<_> = of(Stage::S1, EntryKind::Walk)
            .map(|e| e.output_ipa().unwrap())
            .collect();
        assert_eq!(
            s1_tables,
            [Ipa(0x10_1000), Ipa(0x10_2000), Ipa(0x10_3000)],
            "stage-1 table pointers are IPAs"
        );
        for e in of(Stage::S2, EntryKind::Leaf) {
            assert!(e.input_ipa().is_some() && e.input_va().is_none());
            assert!(e.output_pa().is_some());
        }
        let data = of(Stage::S2, EntryKind::Leaf)
            .find(|e| e.input_range().contains(Ipa(0x2_0008).into()))
            .unwrap();
        assert_eq!(data.translate_ipa(Ipa(0x2_0008)), Some(Pa(0x50_0008)));
        assert_eq!(
            data.translate(Va(0x2_0008).into()),
            None,
            "a stage-2 entry translates no VA"
        );
        let combined = of(Stage::Combined, EntryKind::Leaf).next().unwrap();
        assert_eq!(
            combined.translate(Va(0x5008).into()),
            Some(OutputAddr::Pa(Pa(0x50_0008)))
        );
        // Stage 2 alone translates the IPA.
        let t = translate_ipa(&m, &ctx, Ipa(0x2_0008), READ).unwrap();
        assert_eq!((t.ipa, t.pa), (Some(Ipa(0x2_0008)), Pa(0x50_0008)));
        assert!(t.entries.iter().all(|e| e.stage() == Stage::S2));
    }

    /// Without stage 1 an access's VA is the IPA, without stage 2 the IPA is
    /// the PA.
    #[test]
    fn disabled_stages_pass_addresses_through() {
        let (m, nested) = nested();
        let s2_only = Context { s1: None, ..nested };
        assert_eq!(s2_only.access_input(Va(0x2_0008)), Ipa(0x2_0008).into());
        assert_eq!(nested.access_input(Va(0x5008)), Va(0x5008).into());
        let by_va = translate(&m, &s2_only, Va(0x2_0008), READ).unwrap();
        let by_ipa = translate_ipa(&m, &s2_only, Ipa(0x2_0008), READ).unwrap();
        assert_eq!(by_va, by_ipa);
        assert_eq!(by_va.ipa, Some(Ipa(0x2_0008)));
        let off = Context {
            s1: None,
            s2: None,
            ..nested
        };
        let t = translate_ipa(&m, &off, Ipa(0x2_0008), WRITE).unwrap();
        assert_eq!((t.ipa, t.pa), (None, Pa(0x2_0008)));
        assert!(t.entries.is_empty());
    }

    /// The address an access looks its leaves up by is of the space of the
    /// access stage's entries, for every combination of stages.
    #[test]
    fn access_input_matches_the_access_stage() {
        let (_, nested) = nested();
        let s1 = nested.s1;
        let s2 = nested.s2;
        for (s1, s2) in [(s1, s2), (s1, None), (None, s2), (None, None)] {
            let ctx = Context { s1, s2, ..nested };
            let input = ctx.access_input(Va(0x5008));
            assert_eq!(input.get(), 0x5008);
            assert_eq!(
                matches!(input, InputAddr::Ipa(_)),
                ctx.access_stage() == Stage::S2,
                "{ctx:?}"
            );
        }
    }

    #[test]
    fn enumeration_finds_every_cacheable_entry_including_unbarriered_old_values() {
        let mut m = mem();
        let (l0, l1, l2, l3) = (0x10_0000u64, 0x10_1000, 0x10_2000, 0x10_3000);
        m.write(Pa(l0), table(l1)).unwrap();
        m.write(Pa(l1), table(l2)).unwrap();
        m.write(Pa(l2), table(l3)).unwrap();
        m.write(Pa(l2 + 8), s1_block(0x20_0000, true, false, true))
            .unwrap();
        m.write(Pa(l3), s1_page(0x40_0000, true, false, false))
            .unwrap();
        // CPU 0 clears the L3 page without a DSB: agent 1 may still see it.
        m.store(0, 0b10, Pa(l3), 0).unwrap();
        let ctx = ctx_s1(l0);
        let cfg = ctx.s1.unwrap();
        let collect = |agent: u8| {
            let mut found = Vec::new();
            enumerate_stage(
                &m,
                agent,
                &ctx,
                TableStage::S1,
                cfg,
                0,
                l0,
                0,
                &|t, f| f(t),
                &mut |e, _| found.push(e),
            );
            found.sort();
            found
        };
        let seen_by_0 = collect(0);
        let seen_by_1 = collect(1);
        // Walk entries L0, L1, L2 + the 2 MiB block (+ the page for agent 1).
        assert_eq!(seen_by_0.len(), 4);
        assert_eq!(seen_by_1.len(), 5);
        let page = seen_by_1.iter().find(|e| e.level == 3).unwrap();
        assert_eq!(
            (page.input_va(), page.output_ipa(), page.asid),
            (Some(Va(0)), Some(Ipa(0x40_0000)), Some(7))
        );
        let block = seen_by_0
            .iter()
            .find(|e| e.kind == EntryKind::Leaf)
            .unwrap();
        assert_eq!(
            (block.input_va(), block.span_shift, block.asid),
            (Some(Va(0x20_0000)), 21, None)
        );
    }

    /// A 16K stage 2 starts at level 1 with two concatenated 16 KiB tables
    /// indexed by IPA[47:36]: IPAs that differ only in bit 47 use slots 16
    /// KiB apart in the same start table (Arm ARM D8.2.9, Table D8-31).
    #[test]
    fn sixteen_k_stage2_walks_two_concatenated_level1_tables() {
        let mut m = PhysMem::new(Pfn(0x100), 64);
        let root = 0x10_0000u64; // 32 KiB: two concatenated level-1 tables
        let (l2, l3) = (0x10_8000u64, 0x10_c000u64);
        let low = 0x0000_0000_0000_4000u64; // IPA[47:36] = 0
        let high = 0x0000_8000_0000_4000u64; // IPA[47:36] = 0x800
        m.write(Pa(root), table(l2)).unwrap();
        m.write(Pa(root + 8 * 0x800), table(l2)).unwrap();
        m.write(Pa(l2), table(l3)).unwrap();
        m.write(Pa(l3 + 8), s2_page(0x50_0000, true, true)).unwrap();
        let ctx = Context {
            regime: Regime::El10,
            asid: 0,
            vmid: 2,
            s1: None,
            s2: Some(StageConfig::new(Granule::K16, root)),
        };
        for ipa in [low, high] {
            let t = translate_ipa(&m, &ctx, Ipa(ipa + 0x10), READ).unwrap();
            assert_eq!(t.pa, Pa(0x50_0010));
            assert_eq!(t.entries[0].level, 1, "the walk starts at level 1");
        }
        m.write(Pa(root + 8 * 0x800), 0).unwrap();
        let f = translate_ipa(&m, &ctx, Ipa(high), READ).unwrap_err();
        assert_eq!(
            (f.kind, f.level, f.stage),
            (FaultKind::Translation, 1, TableStage::S2)
        );
    }
}
