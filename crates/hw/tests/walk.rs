//! The VMSAv8-64 walker against the architecture.
//!
//! - `differential`: 4K stage-1, stage-2 and nested tables built by the
//!   independent `aarch64-paging` crate, copied word by word into a
//!   [`PhysMem`], walked by [`translate`] and compared with the mapping that
//!   was asked for and with `aarch64-paging`'s own reading of its tables.
//! - `granules`: hand-written 16K and 64K tables whose descriptor addresses
//!   are computed in comments from the Arm ARM input-address ranges, and
//!   every fault kind at every level where it can occur.
//! - `enumeration`: random small 4K tables; [`enumerate_stage`] and
//!   [`translate`] must agree on every entry and every address.

use tlbcheck_hw::addr::{Granule, Ipa, OutputAddr, Pa, Va};
use tlbcheck_hw::mem::{Pfn, PhysMem};
use tlbcheck_hw::testing;
use tlbcheck_hw::tlb::{Access, EntryKind, Stage, TlbEntry};
use tlbcheck_hw::vmsa::desc::TableStage;
use tlbcheck_hw::vmsa::walk::{
    enumerate_stage, translate, translate_ipa, Context, Fault, FaultKind, StageConfig,
};

const READ: Access = Access {
    write: false,
    user: false,
};
const WRITE: Access = Access {
    write: true,
    user: false,
};
const USER_READ: Access = Access {
    write: false,
    user: true,
};
const USER_WRITE: Access = Access {
    write: true,
    user: true,
};

const ASID: u16 = 9;
const VMID: u16 = 4;

fn new_mem() -> PhysMem {
    PhysMem::new(Pfn(0x10), 16)
}

fn put(mem: &mut PhysMem, pa: u64, value: u64) {
    mem.write(Pa(pa), value).expect("aligned descriptor store");
}

fn s1_ctx(granule: Granule, ttb: u64) -> Context {
    testing::s1_ctx(granule, ttb, ASID, VMID)
}

fn s2_ctx(granule: Granule, ttb: u64) -> Context {
    testing::s2_ctx(granule, ttb, VMID)
}

fn nested_ctx(s1: StageConfig, s2: StageConfig) -> Context {
    testing::nested_ctx(s1, s2, ASID, VMID)
}

fn fault(kind: FaultKind, stage: TableStage, level: u8) -> Fault {
    Fault {
        kind,
        stage,
        level,
        s1ptw: false,
    }
}

fn leaf_of(entries: &[TlbEntry], stage: Stage) -> TlbEntry {
    *entries
        .iter()
        .rev()
        .find(|e| e.kind == EntryKind::Leaf && e.stage() == stage)
        .unwrap_or_else(|| panic!("no {stage:?} leaf among {entries:?}"))
}

/// Differential tests against `aarch64-paging` (4K granule only: the only
/// granule it supports).
mod differential {
    use super::*;
    use aarch64_paging::descriptor::{
        Descriptor, El1Attributes, PhysicalAddress, Stage2Attributes,
    };
    use aarch64_paging::paging::{
        Constraints, El1And0, MemoryRegion, RootTable, Stage2, Translation, TranslationRegime,
        VaRange,
    };
    use aarch64_paging::target::TargetAllocator;
    use aarch64_paging::MapError;
    use proptest::prelude::*;

    /// Where the stage-1 tables aarch64-paging builds live (PA for a
    /// stage-1-only walk, IPA when nested).
    const S1_TABLES: u64 = 0x4000_0000;
    /// Where the stage-2 tables live.
    const S2_TABLES: u64 = 0x6000_0000;
    /// The nested case maps IPA `x` to PA `x + NESTED_OFFSET` (then holes).
    const NESTED_OFFSET: u64 = 0x1000_0000_0000;

    /// One `map_range` call, and what it should mean. Later regions
    /// override earlier ones where they overlap (as `map_range` does).
    #[derive(Clone, Copy, Debug)]
    struct Region {
        va: u64,
        len: u64,
        pa: u64,
        valid: bool,
        writable: bool,
        user: bool,
        global: bool,
        accessed: bool,
        xn: bool,
    }

    const fn rw(va: u64, len: u64, pa: u64) -> Region {
        Region {
            va,
            len,
            pa,
            valid: true,
            writable: true,
            user: false,
            global: true,
            accessed: true,
            xn: false,
        }
    }

    fn end(r: &Region) -> u64 {
        r.va + r.len
    }

    /// The stage-1 map: 4K pages, 2 MiB and 1 GiB blocks, a range with
    /// pages around a block, read-only / user / non-global / no-AF
    /// variations, a block split by an unmapped hole and by a remapped page,
    /// and the very top of the 48-bit space.
    fn s1_regions() -> Vec<Region> {
        vec![
            // Six kernel RW pages, not 2 MiB aligned.
            rw(0x1000_0000, 0x6000, 0x8000_0000),
            // After a two-page gap, three user RO non-global pages (same L3 table).
            Region {
                writable: false,
                user: true,
                global: false,
                ..rw(0x1000_8000, 0x3000, 0x9000_3000)
            },
            // Two 2 MiB blocks, user RW, non-global.
            Region {
                user: true,
                global: false,
                ..rw(0x4020_0000, 0x40_0000, 0x1_2000_0000)
            },
            // Pages, a 2 MiB block, pages: PA congruent to VA modulo 2 MiB.
            Region {
                writable: false,
                ..rw(0x601f_e000, 0x20_5000, 0x2_001f_e000)
            },
            // Two 1 GiB blocks, user RO, execute-never.
            Region {
                writable: false,
                user: true,
                xn: true,
                ..rw(0x80_0000_0000, 0x8000_0000, 0x40_0000_0000)
            },
            // A 1 GiB block, then a hole punched in it, then one page remapped.
            rw(0xc0_0000_0000, 0x4000_0000, 0x80_0000_0000),
            Region {
                valid: false,
                ..rw(0xc0_1234_5000, 0x1000, 0)
            },
            Region {
                writable: false,
                ..rw(0xc0_2000_0000, 0x1000, 0x7777_0000)
            },
            // Pages without the Access flag.
            Region {
                accessed: false,
                ..rw(0x7000_0000, 0x2000, 0xa000_0000)
            },
            // The top of the space: one page then a 2 MiB block at L0/L1/L2 index 511.
            rw(0xffff_ffdf_f000, 0x20_1000, 0x3_001f_f000),
        ]
    }

    fn s1_flags(r: &Region) -> El1Attributes {
        let mut f = El1Attributes::ATTRIBUTE_INDEX_1 | El1Attributes::INNER_SHAREABLE;
        if r.valid {
            f |= El1Attributes::VALID;
        }
        if r.accessed {
            f |= El1Attributes::ACCESSED;
        }
        if !r.writable {
            f |= El1Attributes::READ_ONLY;
        }
        if r.user {
            f |= El1Attributes::USER;
        }
        if !r.global {
            f |= El1Attributes::NON_GLOBAL;
        }
        if r.xn {
            f |= El1Attributes::UXN | El1Attributes::PXN;
        }
        f
    }

    /// Stage-2 permissions of a region: `writable` is S2AP[1], `user` stands
    /// for S2AP[0] (read).
    fn s2_flags(r: &Region) -> Stage2Attributes {
        let mut f = Stage2Attributes::MEMATTR_NORMAL_INNER_WB
            | Stage2Attributes::MEMATTR_NORMAL_OUTER_WB
            | Stage2Attributes::SH_INNER;
        if r.valid {
            f |= Stage2Attributes::VALID;
        }
        if r.accessed {
            f |= Stage2Attributes::ACCESS_FLAG;
        }
        if r.user {
            f |= Stage2Attributes::S2AP_ACCESS_RO;
        }
        if r.writable {
            f |= Stage2Attributes::S2AP_ACCESS_WO;
        }
        if r.xn {
            f |= Stage2Attributes::XN;
        }
        f
    }

    /// The region that decides `addr`, if it is mapped (valid).
    fn expected(regions: &[Region], addr: u64) -> Option<Region> {
        regions
            .iter()
            .rev()
            .find(|r| r.va <= addr && addr < end(r))
            .filter(|r| r.valid)
            .copied()
    }

    /// Copies aarch64-paging's table image into simulated memory at `base`,
    /// one 64-bit little-endian word at a time.
    fn load(mem: &mut PhysMem, base: u64, bytes: &[u8]) {
        for (i, word) in bytes.chunks_exact(8).enumerate() {
            let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            put(mem, base + 8 * i as u64, w);
        }
    }

    /// aarch64-paging's own reading of `addr`: the level of the descriptor
    /// its walk stops at, and for a valid leaf the output address of `addr`
    /// and the leaf's flags.
    fn paging_view<R: TranslationRegime, T: Translation<R::Attributes>>(
        root: &RootTable<R, T>,
        addr: u64,
    ) -> (u8, Option<(u64, R::Attributes)>) {
        let mut seen = None;
        root.walk_range(
            &MemoryRegion::new(addr as usize, addr as usize + 1),
            &mut |_: &MemoryRegion, d: &Descriptor<R::Attributes>, level: usize| {
                assert!(seen.is_none(), "one descriptor per page-sized range");
                let span = 0x1000u64 << (9 * (3 - level));
                let leaf = d
                    .is_valid()
                    .then(|| (d.output_address().0 as u64 + addr % span, d.flags()));
                seen = Some((level as u8, leaf));
                Ok(())
            },
        )
        .expect("address inside the table's range");
        seen.expect("walk_range visits the descriptor of the address")
    }

    struct S1Fixture {
        root: RootTable<El1And0, TargetAllocator<El1Attributes>>,
        regions: Vec<Region>,
        mem: PhysMem,
        table_bytes: u64,
    }

    fn s1_fixture() -> S1Fixture {
        let regions = s1_regions();
        let mut root =
            RootTable::with_va_range(TargetAllocator::new(S1_TABLES), 0, El1And0, VaRange::Lower);
        for r in &regions {
            root.map_range(
                &MemoryRegion::new(r.va as usize, end(r) as usize),
                PhysicalAddress(r.pa as usize),
                s1_flags(r),
                Constraints::empty(),
            )
            .expect("map_range");
        }
        assert_eq!(
            root.to_physical().0 as u64,
            S1_TABLES,
            "root allocated first"
        );
        let bytes = root.translation().as_bytes();
        let mut mem = new_mem();
        load(&mut mem, S1_TABLES, &bytes);
        S1Fixture {
            root,
            regions,
            mem,
            table_bytes: bytes.len() as u64,
        }
    }

    /// Everything `translate` must say about `va` in a stage-1-only walk.
    fn check_s1(fx: &S1Fixture, va: u64) {
        let ctx = s1_ctx(Granule::K4, S1_TABLES);
        let want = expected(&fx.regions, va);
        let (level, view) = paging_view(&fx.root, va);
        // aarch64-paging built what was asked for.
        match (want, view) {
            (Some(r), Some((out, flags))) => {
                assert_eq!(out, r.pa + (va - r.va), "aarch64-paging output of {va:#x}");
                assert_eq!(flags.contains(El1Attributes::READ_ONLY), !r.writable);
                assert_eq!(flags.contains(El1Attributes::ACCESSED), r.accessed);
            }
            (None, None) => {}
            (w, v) => panic!("{va:#x}: asked for {w:?}, aarch64-paging has {v:?}"),
        }
        let got = translate(&fx.mem, &ctx, Va(va), READ);
        let Some(r) = want else {
            assert_eq!(
                got,
                Err(fault(FaultKind::Translation, TableStage::S1, level)),
                "unmapped {va:#x}"
            );
            return;
        };
        if !r.accessed {
            assert_eq!(
                got,
                Err(fault(FaultKind::AccessFlag, TableStage::S1, level)),
                "AF = 0 at {va:#x}"
            );
            return;
        }
        let t = got.unwrap_or_else(|f| panic!("{va:#x} should translate: {f}"));
        let pa = r.pa + (va - r.va);
        assert_eq!(t.pa, Pa(pa), "output of {va:#x}");
        // One walk-cache entry per table descriptor, then the leaf.
        assert_eq!(t.entries.len(), usize::from(level) + 1, "{:?}", t.entries);
        for (l, e) in t.entries[..usize::from(level)].iter().enumerate() {
            let shift = Granule::K4.level_shift(l as u8);
            assert_eq!(
                (e.kind, e.level, e.stage(), u32::from(e.span_shift)),
                (EntryKind::Walk, l as u8, Stage::S1, shift)
            );
            assert_eq!(e.input_va(), Some(Va(va & !((1u64 << shift) - 1))));
            assert!(
                (S1_TABLES..S1_TABLES + fx.table_bytes).contains(&e.output().get()),
                "walk entry points into aarch64-paging's tables: {e}"
            );
        }
        let leaf = t.entries[usize::from(level)];
        let shift = Granule::K4.level_shift(level);
        assert_eq!(
            (leaf.kind, leaf.level, u32::from(leaf.span_shift)),
            (EntryKind::Leaf, level, shift)
        );
        assert_eq!(leaf.input_va(), Some(Va(va & !((1u64 << shift) - 1))));
        assert_eq!(
            leaf.translate(Va(va).into()),
            Some(OutputAddr::Ipa(Ipa(pa)))
        );
        assert_eq!(leaf.asid, (!r.global).then_some(ASID));
        assert_eq!(
            (
                leaf.perms.write,
                leaf.perms.user,
                leaf.perms.uxn,
                leaf.perms.pxn
            ),
            (r.writable, r.user, r.xn, r.xn)
        );
        // Stage-1 AP[2:1] (Arm ARM D8.4.1.2): EL1 may always read; writes
        // need AP[2] = 0; EL0 needs AP[1] = 1.
        let perm = Err(fault(FaultKind::Permission, TableStage::S1, level));
        for (access, allowed) in [
            (WRITE, r.writable),
            (USER_READ, r.user),
            (USER_WRITE, r.user && r.writable),
        ] {
            let got = translate(&fx.mem, &ctx, Va(va), access).map(|t| t.pa);
            let want = if allowed { Ok(Pa(pa)) } else { perm };
            assert_eq!(got, want, "{access:?} at {va:#x}");
        }
    }

    /// Region starts and ends, the addresses either side, block interiors.
    fn edges(regions: &[Region]) -> Vec<u64> {
        let mut v = Vec::new();
        for r in regions {
            for a in [r.va, end(r) - 1, end(r), r.va + r.len / 2, r.va + 0x123] {
                v.push(a);
            }
            if r.va > 0 {
                v.push(r.va - 1);
            }
        }
        v.retain(|&a| a < 1 << 48);
        v
    }

    #[test]
    fn stage1_edges_match_aarch64_paging() {
        let fx = s1_fixture();
        // Sanity: the fixture exercises every leaf level and fault kind.
        let levels: Vec<_> = [0x1000_0000u64, 0x4020_0000, 0x80_0000_0000]
            .iter()
            .map(|&va| paging_view(&fx.root, va).0)
            .collect();
        assert_eq!(levels, [3, 2, 1]);
        for va in edges(&fx.regions) {
            check_s1(&fx, va);
        }
        // Addresses of the split 1 GiB block resolve through new L2/L3 tables.
        assert_eq!(paging_view(&fx.root, 0xc0_1234_5000).0, 3);
        assert_eq!(paging_view(&fx.root, 0xc0_1200_0000).0, 2);
        assert_eq!(paging_view(&fx.root, 0xc0_4000_0000).0, 1);
    }

    /// Input addresses beyond 48 bits are outside both walkers' range: a
    /// Translation fault, reported at level 0 (Arm ARM D8.2.5; pseudocode
    /// AArch64.S1Translate, `AArch64.VAIsOutOfRange`).
    #[test]
    fn addresses_beyond_48_bits_fault() {
        let fx = s1_fixture();
        let ctx = s1_ctx(Granule::K4, S1_TABLES);
        for va in [1u64 << 48, 0x8000_0000_0000_0000, 0xffff_ffff_ffff_f000] {
            assert_eq!(
                translate(&fx.mem, &ctx, Va(va), READ),
                Err(fault(FaultKind::Translation, TableStage::S1, 0)),
                "{va:#x}"
            );
        }
        let r = fx.root.walk_range(
            &MemoryRegion::new(1 << 48, (1 << 48) + 1),
            &mut |_: &MemoryRegion, _: &Descriptor<El1Attributes>, _: usize| Ok(()),
        );
        assert!(matches!(r, Err(MapError::AddressRange(_))), "{r:?}");
    }

    /// Addresses near a region (within 16 KiB either side) or anywhere.
    fn near(regions: Vec<Region>) -> impl Strategy<Value = u64> {
        let n = regions.len();
        let near = (0..n, any::<u64>()).prop_map(move |(i, x)| {
            let r = regions[i];
            let lo = r.va.saturating_sub(0x4000);
            (lo + x % (r.len + 0x8000)).min((1 << 48) - 1)
        });
        prop_oneof![3 => near, 1 => 0u64..1 << 48]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 2000,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn stage1_random_addresses_match_aarch64_paging(va in near(s1_regions())) {
            thread_local!(static FX: S1Fixture = s1_fixture());
            FX.with(|fx| check_s1(fx, va));
        }

        #[test]
        fn stage2_random_addresses_match_aarch64_paging(ipa in near(s2_regions())) {
            thread_local!(static FX: S2Fixture = s2_fixture());
            FX.with(|fx| check_s2(fx, ipa));
        }

        #[test]
        fn nested_random_addresses_match_both_tables(va in near(s1_regions())) {
            thread_local!(static FX: NestedFixture = nested_fixture());
            FX.with(|fx| check_nested(fx, va));
        }
    }

    /// Stage-2 map; in these regions `user` means S2AP read, `writable`
    /// S2AP write.
    fn s2_regions() -> Vec<Region> {
        let rw2 = |ipa, len, pa| Region {
            user: true,
            ..rw(ipa, len, pa)
        };
        vec![
            rw2(0x8000_0000, 0x5000, 0x1_0000_0000),
            // Read-only pages.
            Region {
                writable: false,
                ..rw2(0x8000_5000, 0x2000, 0x1_1000_0000)
            },
            // No access at all (S2AP = 0b00).
            Region {
                writable: false,
                user: false,
                ..rw2(0x8000_7000, 0x1000, 0x1_2000_0000)
            },
            // 2 MiB blocks, read-only.
            Region {
                writable: false,
                ..rw2(0xc000_0000, 0x60_0000, 0x2_0000_0000)
            },
            // A 1 GiB block, execute-never.
            Region {
                xn: true,
                ..rw2(0x1_0000_0000, 0x4000_0000, 0x3_0000_0000)
            },
            // No Access flag.
            Region {
                accessed: false,
                ..rw2(0x1_8000_0000, 0x20_0000, 0x4_0000_0000)
            },
        ]
    }

    struct S2Fixture {
        root: RootTable<Stage2, TargetAllocator<Stage2Attributes>>,
        regions: Vec<Region>,
        mem: PhysMem,
    }

    fn s2_fixture() -> S2Fixture {
        let regions = s2_regions();
        let mut root = RootTable::new(TargetAllocator::new(S2_TABLES), 0, Stage2);
        for r in &regions {
            root.map_range(
                &MemoryRegion::new(r.va as usize, end(r) as usize),
                PhysicalAddress(r.pa as usize),
                s2_flags(r),
                Constraints::empty(),
            )
            .expect("map_range");
        }
        let mut mem = new_mem();
        load(&mut mem, S2_TABLES, &root.translation().as_bytes());
        S2Fixture { root, regions, mem }
    }

    fn check_s2(fx: &S2Fixture, ipa: u64) {
        let ctx = s2_ctx(Granule::K4, S2_TABLES);
        let want = expected(&fx.regions, ipa);
        let (level, view) = paging_view(&fx.root, ipa);
        match (want, view) {
            (Some(r), Some((out, flags))) => {
                assert_eq!(out, r.pa + (ipa - r.va));
                assert_eq!(
                    flags.contains(Stage2Attributes::S2AP_ACCESS_RO),
                    r.user,
                    "S2AP[0] of {ipa:#x}"
                );
            }
            (None, None) => {}
            (w, v) => panic!("{ipa:#x}: asked for {w:?}, aarch64-paging has {v:?}"),
        }
        let got = translate_ipa(&fx.mem, &ctx, Ipa(ipa), READ);
        let Some(r) = want else {
            assert_eq!(
                got,
                Err(fault(FaultKind::Translation, TableStage::S2, level))
            );
            return;
        };
        if !r.accessed {
            assert_eq!(
                got,
                Err(fault(FaultKind::AccessFlag, TableStage::S2, level))
            );
            return;
        }
        let pa = Pa(r.pa + (ipa - r.va));
        let perm = Err(fault(FaultKind::Permission, TableStage::S2, level));
        // Arm ARM D8.4.2: S2AP[0] grants reads, S2AP[1] writes, and stage 2
        // does not tell EL0 from EL1.
        assert_eq!(
            got.clone().map(|t| t.pa),
            if r.user { Ok(pa) } else { perm }
        );
        assert_eq!(
            translate_ipa(&fx.mem, &ctx, Ipa(ipa), USER_READ).map(|t| t.pa),
            if r.user { Ok(pa) } else { perm }
        );
        if r.user {
            let t = got.expect("readable");
            let leaf = leaf_of(&t.entries, Stage::S2);
            assert_eq!(
                (leaf.level, leaf.asid, leaf.vmid, leaf.perms.uxn),
                (level, None, VMID, r.xn)
            );
            assert_eq!(
                translate_ipa(&fx.mem, &ctx, Ipa(ipa), WRITE).map(|t| t.pa),
                if r.writable { Ok(pa) } else { perm }
            );
        }
    }

    #[test]
    fn stage2_edges_match_aarch64_paging() {
        let fx = s2_fixture();
        let levels: Vec<_> = [0x8000_0000u64, 0xc000_0000, 0x1_0000_0000]
            .iter()
            .map(|&a| paging_view(&fx.root, a).0)
            .collect();
        assert_eq!(levels, [3, 2, 1]);
        for ipa in edges(&fx.regions) {
            check_s2(&fx, ipa);
        }
    }

    /// Arm ARM D8.4.2: S2AP = 0b10 is write-only; a write is permitted.
    #[test]
    fn stage2_write_only_permits_writes() {
        let mut root = RootTable::new(TargetAllocator::new(S2_TABLES), 0, Stage2);
        let wo = Region {
            user: false,
            ..rw(0x8000_0000, 0x1000, 0x1_0000_0000)
        };
        root.map_range(
            &MemoryRegion::new(wo.va as usize, end(&wo) as usize),
            PhysicalAddress(wo.pa as usize),
            s2_flags(&wo),
            Constraints::empty(),
        )
        .expect("map_range");
        let mut mem = new_mem();
        load(&mut mem, S2_TABLES, &root.translation().as_bytes());
        let ctx = s2_ctx(Granule::K4, S2_TABLES);
        assert_eq!(
            translate_ipa(&mem, &ctx, Ipa(wo.va), WRITE).map(|t| t.pa),
            Ok(Pa(wo.pa))
        );
    }

    /// Stage-1 tables at IPAs (aarch64-paging's allocator placed them at
    /// IPA `S1_TABLES`), stage 2 mapping IPA `x` to PA `x + NESTED_OFFSET`
    /// with 1 GiB blocks over the first TiB, minus a hole and a read-only
    /// page among the stage-1 outputs.
    struct NestedFixture {
        s1: S1Fixture,
        s2_root: RootTable<Stage2, TargetAllocator<Stage2Attributes>>,
        s2_regions: Vec<Region>,
        mem: PhysMem,
    }

    fn nested_fixture() -> NestedFixture {
        let s1 = s1_fixture();
        let s2_regions = vec![
            Region {
                user: true,
                ..rw(0, 1 << 40, NESTED_OFFSET)
            },
            // A hole under the user RO pages' output.
            Region {
                valid: false,
                ..rw(0x9000_4000, 0x1000, 0)
            },
            // Read-only under one kernel RW page.
            Region {
                user: true,
                writable: false,
                ..rw(0x8000_3000, 0x1000, NESTED_OFFSET + 0x8000_3000)
            },
        ];
        let mut s2_root = RootTable::new(TargetAllocator::new(S2_TABLES), 0, Stage2);
        for r in &s2_regions {
            s2_root
                .map_range(
                    &MemoryRegion::new(r.va as usize, end(r) as usize),
                    PhysicalAddress(r.pa as usize),
                    s2_flags(r),
                    Constraints::empty(),
                )
                .expect("map_range");
        }
        let mut mem = new_mem();
        load(&mut mem, S2_TABLES, &s2_root.translation().as_bytes());
        // The stage-1 image goes where stage 2 puts its IPAs.
        load(
            &mut mem,
            S1_TABLES + NESTED_OFFSET,
            &s1.root.translation().as_bytes(),
        );
        NestedFixture {
            s1,
            s2_root,
            s2_regions,
            mem,
        }
    }

    fn check_nested(fx: &NestedFixture, va: u64) {
        let ctx = nested_ctx(
            StageConfig::new(Granule::K4, S1_TABLES),
            StageConfig::new(Granule::K4, S2_TABLES),
        );
        let got = translate(&fx.mem, &ctx, Va(va), READ);
        let (s1_level, _) = paging_view(&fx.s1.root, va);
        let Some(r) = expected(&fx.s1.regions, va) else {
            assert_eq!(
                got,
                Err(fault(FaultKind::Translation, TableStage::S1, s1_level))
            );
            return;
        };
        if !r.accessed {
            assert_eq!(
                got,
                Err(fault(FaultKind::AccessFlag, TableStage::S1, s1_level))
            );
            return;
        }
        let ipa = r.pa + (va - r.va);
        let (s2_level, _) = paging_view(&fx.s2_root, ipa);
        let Some(r2) = expected(&fx.s2_regions, ipa) else {
            assert_eq!(
                got,
                Err(fault(FaultKind::Translation, TableStage::S2, s2_level))
            );
            // Stage-1 permissions are checked before stage 2 sees the IPA.
            if !r.writable {
                assert_eq!(
                    translate(&fx.mem, &ctx, Va(va), WRITE),
                    Err(fault(FaultKind::Permission, TableStage::S1, s1_level))
                );
            }
            return;
        };
        let pa = Pa(r2.pa + (ipa - r2.va));
        let t = got.unwrap_or_else(|f| panic!("{va:#x} should translate: {f}"));
        assert_eq!(t.pa, pa);
        let combined = leaf_of(&t.entries, Stage::Combined);
        assert_eq!(combined.translate(Va(va).into()), Some(OutputAddr::Pa(pa)));
        assert_eq!(combined.level, s1_level);
        assert_eq!(leaf_of(&t.entries, Stage::S2).level, s2_level);
        let want_write = match (r.writable, r2.writable) {
            (true, true) => Ok(pa),
            (false, _) => Err(fault(FaultKind::Permission, TableStage::S1, s1_level)),
            (true, false) => Err(fault(FaultKind::Permission, TableStage::S2, s2_level)),
        };
        assert_eq!(
            translate(&fx.mem, &ctx, Va(va), WRITE).map(|t| t.pa),
            want_write
        );
    }

    #[test]
    fn nested_edges_match_both_tables() {
        let fx = nested_fixture();
        for va in edges(&fx.s1.regions) {
            check_nested(&fx, va);
        }
        // The cases the fixture exists for.
        let ctx = nested_ctx(
            StageConfig::new(Granule::K4, S1_TABLES),
            StageConfig::new(Granule::K4, S2_TABLES),
        );
        let hole = 0x1000_9000; // -> IPA 0x9000_4000, unmapped at stage 2 (L3)
        assert_eq!(
            translate(&fx.mem, &ctx, Va(hole), USER_READ),
            Err(fault(FaultKind::Translation, TableStage::S2, 3))
        );
        assert_eq!(
            translate(&fx.mem, &ctx, Va(hole), USER_WRITE),
            Err(fault(FaultKind::Permission, TableStage::S1, 3))
        );
        let ro = 0x1000_3000; // -> IPA 0x8000_3000, read-only at stage 2 (L3)
        assert_eq!(
            translate(&fx.mem, &ctx, Va(ro), WRITE),
            Err(fault(FaultKind::Permission, TableStage::S2, 3))
        );
        // A 1 GiB stage-1 block over 1 GiB stage-2 blocks: the combined
        // entry spans the whole 1 GiB.
        let t = translate(&fx.mem, &ctx, Va(0x80_4000_0123), USER_READ).expect("mapped");
        assert_eq!(t.pa, Pa(NESTED_OFFSET + 0x40_4000_0123));
        let c = leaf_of(&t.entries, Stage::Combined);
        assert_eq!((c.input_va(), c.span_shift), (Some(Va(0x80_4000_0000)), 30));
        // A 2 MiB stage-1 block inside a 1 GiB stage-2 block: 2 MiB.
        let t = translate(&fx.mem, &ctx, Va(0x4030_0000), READ).expect("mapped");
        let c = leaf_of(&t.entries, Stage::Combined);
        assert_eq!((c.input_va(), c.span_shift), (Some(Va(0x4020_0000)), 21));
    }
}

/// Hand-written 16K and 64K tables (stage 1, stage 2, nested) and faults.
///
/// Input-address ranges per level for a 48-bit input (TnSZ = 16), from the
/// Arm ARM D8.2 tables of input address ranges per granule and level:
///
/// | granule | L0      | L1      | L2      | L3      | offset  |
/// |---------|---------|---------|---------|---------|---------|
/// | 16K     | [47]    | [46:36] | [35:25] | [24:14] | [13:0]  |
/// | 64K     | -       | [47:42] | [41:29] | [28:16] | [15:0]  |
///
/// Blocks with 48-bit output addresses: 16K level 2 (32 MiB), 64K level 2
/// (512 MiB); level-1 blocks need FEAT_LPA2 (16K) or FEAT_LPA (64K).
mod granules {
    use super::*;
    use tlbcheck_hw::vmsa::desc::{bits, s1_block, s1_page, s2_block, s2_page, table};

    // ---- 16K ----
    const K16_L0: u64 = 0x10_0000;
    const K16_L1: u64 = 0x10_4000;
    const K16_L2: u64 = 0x10_8000;
    const K16_L3: u64 = 0x10_c000;
    /// VA = 1 << 47 | 0x5a3 << 36 | 0x2c1 << 25 | 0x7ff << 14 | 0x1234.
    const K16_VA: u64 = 0xda35_83ff_d234;
    // Descriptor addresses (table base + 8 * index):
    //   L0 index VA[47]    = 1     -> 0x10_0000 + 0x8        = 0x10_0008
    //   L1 index VA[46:36] = 0x5a3 -> 0x10_4000 + 8 * 0x5a3  = 0x10_6d18
    //   L2 index VA[35:25] = 0x2c1 -> 0x10_8000 + 8 * 0x2c1  = 0x10_9608
    //   L3 index VA[24:14] = 0x7ff -> 0x10_c000 + 8 * 0x7ff  = 0x10_fff8
    const K16_D0: u64 = 0x10_0008;
    const K16_D1: u64 = 0x10_6d18;
    const K16_D2: u64 = 0x10_9608;
    const K16_D3: u64 = 0x10_fff8;
    const K16_PAGE: u64 = 0x1_2345_8000;
    /// Same L0/L1 indices, L2 index 0x155, block offset VA[24:0] = 0x1ab_cdef:
    /// VA = 1 << 47 | 0x5a3 << 36 | 0x155 << 25 | 0x1ab_cdef.
    const K16_BLOCK_VA: u64 = 0xda32_abab_cdef;
    /// L2 index 0x155 -> 0x10_8000 + 8 * 0x155 = 0x10_8aa8.
    const K16_DB: u64 = 0x10_8aa8;
    /// 32 MiB aligned.
    const K16_BLOCK: u64 = 0x2_0400_0000;

    // ---- 64K ----
    const K64_L1: u64 = 0x20_0000;
    const K64_L2: u64 = 0x21_0000;
    const K64_L3: u64 = 0x22_0000;
    /// VA = 0x2b << 42 | 0x1c3d << 29 | 0xa5f << 16 | 0xbeef.
    const K64_VA: u64 = 0xaf87_aa5f_beef;
    //   L1 index VA[47:42] = 0x2b   -> 0x20_0000 + 8 * 0x2b   = 0x20_0158
    //   L2 index VA[41:29] = 0x1c3d -> 0x21_0000 + 8 * 0x1c3d = 0x21_e1e8
    //   L3 index VA[28:16] = 0xa5f  -> 0x22_0000 + 8 * 0xa5f  = 0x22_52f8
    const K64_D1: u64 = 0x20_0158;
    const K64_D2: u64 = 0x21_e1e8;
    const K64_D3: u64 = 0x22_52f8;
    const K64_PAGE: u64 = 0x3_4567_0000;
    /// L1 index 0x2b, L2 index 0x777, block offset VA[28:0] = 0x1234_5678:
    /// VA = 0x2b << 42 | 0x777 << 29 | 0x1234_5678.
    const K64_BLOCK_VA: u64 = 0xacee_f234_5678;
    /// L2 index 0x777 -> 0x21_0000 + 8 * 0x777 = 0x21_3bb8.
    const K64_DB: u64 = 0x21_3bb8;
    /// 512 MiB aligned.
    const K64_BLOCK: u64 = 0x1_6000_0000;

    /// The walker's index arithmetic agrees with the hand computation.
    #[test]
    fn index_arithmetic_matches_the_arm_arm_ranges() {
        let g = Granule::K16;
        let idx: Vec<_> = (0..4).map(|l| g.index(l, K16_VA)).collect();
        assert_eq!(idx, [1, 0x5a3, 0x2c1, 0x7ff]);
        assert_eq!(K16_VA & 0x3fff, 0x1234);
        assert_eq!(g.index(2, K16_BLOCK_VA), 0x155);
        assert_eq!(K16_BLOCK_VA & 0x1ff_ffff, 0x1ab_cdef);
        let g = Granule::K64;
        let idx: Vec<_> = (1..4).map(|l| g.index(l, K64_VA)).collect();
        assert_eq!(idx, [0x2b, 0x1c3d, 0xa5f]);
        assert_eq!(K64_VA & 0xffff, 0xbeef);
        assert_eq!(g.index(2, K64_BLOCK_VA), 0x777);
        assert_eq!(K64_BLOCK_VA & 0x1fff_ffff, 0x1234_5678);
        assert_eq!(
            (K16_D1, K16_D3, K64_D2, K64_DB),
            (
                K16_L1 + 8 * 0x5a3,
                K16_L3 + 8 * 0x7ff,
                K64_L2 + 8 * 0x1c3d,
                K64_L2 + 8 * 0x777
            )
        );
    }

    /// 16K tables with the page and the block; `page`/`block` are the raw
    /// leaf descriptors (stage 1 or stage 2 format).
    fn k16(page: u64, block: u64) -> PhysMem {
        let mut m = new_mem();
        put(&mut m, K16_D0, table(K16_L1));
        put(&mut m, K16_D1, table(K16_L2));
        put(&mut m, K16_D2, table(K16_L3));
        put(&mut m, K16_D3, page);
        put(&mut m, K16_DB, block);
        m
    }

    fn k64(page: u64, block: u64) -> PhysMem {
        let mut m = new_mem();
        put(&mut m, K64_D1, table(K64_L2));
        put(&mut m, K64_D2, table(K64_L3));
        put(&mut m, K64_D3, page);
        put(&mut m, K64_DB, block);
        m
    }

    fn k16_s1() -> PhysMem {
        k16(
            s1_page(K16_PAGE, true, false, false),
            s1_block(K16_BLOCK, false, true, true),
        )
    }

    fn k64_s1() -> PhysMem {
        k64(
            s1_page(K64_PAGE, true, false, false),
            s1_block(K64_BLOCK, false, true, true),
        )
    }

    /// Asserts the walk entries and leaf of a successful walk:
    /// `walks` lists (level, span shift, next table).
    fn assert_walk(entries: &[TlbEntry], va: u64, walks: &[(u8, u32, u64)], leaf: (u8, u32, u64)) {
        assert_eq!(entries.len(), walks.len() + 1, "{entries:?}");
        for (e, &(level, shift, next)) in entries.iter().zip(walks) {
            assert_eq!(
                (e.kind, e.level, u32::from(e.span_shift), e.output().get()),
                (EntryKind::Walk, level, shift, next)
            );
            assert_eq!(e.input().get(), va & !((1u64 << shift) - 1));
        }
        let e = entries[walks.len()];
        assert_eq!(
            (e.kind, e.level, u32::from(e.span_shift), e.output().get()),
            (EntryKind::Leaf, leaf.0, leaf.1, leaf.2)
        );
        assert_eq!(e.input().get(), va & !((1u64 << leaf.1) - 1));
    }

    #[test]
    fn k16_stage1_page_and_32m_block() {
        let m = k16_s1();
        let ctx = s1_ctx(Granule::K16, K16_L0);
        let t = translate(&m, &ctx, Va(K16_VA), READ).expect("page");
        assert_eq!(t.pa, Pa(K16_PAGE + 0x1234));
        // Walk entries span 2^47 (L0), 2^36 (L1), 2^25 (L2); the page 2^14.
        assert_walk(
            &t.entries,
            K16_VA,
            &[(0, 47, K16_L1), (1, 36, K16_L2), (2, 25, K16_L3)],
            (3, 14, K16_PAGE),
        );
        assert_eq!(t.entries[3].asid, Some(ASID));
        assert_eq!(t.entries[3].granule, Granule::K16);
        let t = translate(&m, &ctx, Va(K16_BLOCK_VA), USER_READ).expect("block");
        assert_eq!(t.pa, Pa(K16_BLOCK + 0x1ab_cdef));
        assert_walk(
            &t.entries,
            K16_BLOCK_VA,
            &[(0, 47, K16_L1), (1, 36, K16_L2)],
            (2, 25, K16_BLOCK),
        );
        assert_eq!(t.entries[2].asid, None, "global block");
        // Last byte of the block, and the first byte after it (L2 index 0x156: empty).
        let last = K16_BLOCK_VA | 0x1ff_ffff;
        assert_eq!(
            translate(&m, &ctx, Va(last), READ).map(|t| t.pa),
            Ok(Pa(K16_BLOCK + 0x1ff_ffff))
        );
        assert_eq!(
            translate(&m, &ctx, Va(last + 1), READ),
            Err(fault(FaultKind::Translation, TableStage::S1, 2))
        );
    }

    /// Flipping the index bits of one level leaves the walk at an empty
    /// slot of that level.
    #[test]
    fn k16_and_k64_neighbours_fault_at_the_level_that_differs() {
        let m = k16_s1();
        let ctx = s1_ctx(Granule::K16, K16_L0);
        for (level, bit) in [(0u8, 47u32), (1, 36), (2, 25), (3, 14)] {
            assert_eq!(
                translate(&m, &ctx, Va(K16_VA ^ (1 << bit)), READ),
                Err(fault(FaultKind::Translation, TableStage::S1, level)),
                "16K level {level}"
            );
        }
        let m = k64_s1();
        let ctx = s1_ctx(Granule::K64, K64_L1);
        for (level, bit) in [(1u8, 42u32), (2, 29), (3, 16)] {
            assert_eq!(
                translate(&m, &ctx, Va(K64_VA ^ (1 << bit)), READ),
                Err(fault(FaultKind::Translation, TableStage::S1, level)),
                "64K level {level}"
            );
        }
        // Page-offset bits do not change the walk.
        assert_eq!(
            translate(&m, &ctx, Va(K64_VA ^ 0x8000), READ).map(|t| t.pa),
            Ok(Pa(K64_PAGE + (0xbeef ^ 0x8000)))
        );
    }

    #[test]
    fn k64_stage1_page_and_512m_block() {
        let m = k64_s1();
        let ctx = s1_ctx(Granule::K64, K64_L1);
        let t = translate(&m, &ctx, Va(K64_VA), READ).expect("page");
        assert_eq!(t.pa, Pa(K64_PAGE + 0xbeef));
        // The walk starts at level 1: entries span 2^42 (L1), 2^29 (L2).
        assert_walk(
            &t.entries,
            K64_VA,
            &[(1, 42, K64_L2), (2, 29, K64_L3)],
            (3, 16, K64_PAGE),
        );
        let t = translate(&m, &ctx, Va(K64_BLOCK_VA), USER_READ).expect("block");
        assert_eq!(t.pa, Pa(K64_BLOCK + 0x1234_5678));
        assert_walk(
            &t.entries,
            K64_BLOCK_VA,
            &[(1, 42, K64_L2)],
            (2, 29, K64_BLOCK),
        );
    }

    /// An invalid descriptor (bit 0 clear) at each level: Translation fault
    /// at that level (Arm ARM D8.3.1).
    #[test]
    fn invalid_descriptor_at_each_level() {
        for (level, slot) in [(0u8, K16_D0), (1, K16_D1), (2, K16_D2), (3, K16_D3)] {
            let mut m = k16_s1();
            // Everything but bit 0: the rest of the descriptor is ignored.
            let raw = m.read(Pa(slot));
            put(&mut m, slot, raw & !bits::VALID);
            assert_eq!(
                translate(&m, &s1_ctx(Granule::K16, K16_L0), Va(K16_VA), READ),
                Err(fault(FaultKind::Translation, TableStage::S1, level)),
                "16K level {level}"
            );
        }
        for (level, slot) in [(1u8, K64_D1), (2, K64_D2), (3, K64_D3)] {
            let mut m = k64_s1();
            let raw = m.read(Pa(slot));
            put(&mut m, slot, raw & !bits::VALID);
            assert_eq!(
                translate(&m, &s1_ctx(Granule::K64, K64_L1), Va(K64_VA), READ),
                Err(fault(FaultKind::Translation, TableStage::S1, level)),
                "64K level {level}"
            );
        }
    }

    /// Blocks where the granule has none (16K L0/L1 and 64K L1 without
    /// FEAT_LPA/LPA2), and a level-3 descriptor with bit[1] = 0: reserved
    /// encodings, Translation faults at that level (Arm ARM D8.3.1).
    #[test]
    fn reserved_block_encodings_are_translation_faults() {
        let block = s1_block(0, true, false, true);
        for (level, slot) in [(0u8, K16_D0), (1, K16_D1)] {
            let mut m = k16_s1();
            put(&mut m, slot, block);
            assert_eq!(
                translate(&m, &s1_ctx(Granule::K16, K16_L0), Va(K16_VA), READ),
                Err(fault(FaultKind::Translation, TableStage::S1, level)),
                "16K level-{level} block"
            );
        }
        let mut m = k64_s1();
        put(&mut m, K64_D1, block);
        assert_eq!(
            translate(&m, &s1_ctx(Granule::K64, K64_L1), Va(K64_VA), READ),
            Err(fault(FaultKind::Translation, TableStage::S1, 1))
        );
        // Level 3 with bit[1] = 0 (a "block" at level 3).
        let mut m = k16_s1();
        put(&mut m, K16_D3, s1_block(K16_PAGE, true, false, true));
        assert_eq!(
            translate(&m, &s1_ctx(Granule::K16, K16_L0), Va(K16_VA), READ),
            Err(fault(FaultKind::Translation, TableStage::S1, 3))
        );
        let mut m = k64_s1();
        put(&mut m, K64_D3, s1_block(K64_PAGE, true, false, true));
        assert_eq!(
            translate(&m, &s1_ctx(Granule::K64, K64_L1), Va(K64_VA), READ),
            Err(fault(FaultKind::Translation, TableStage::S1, 3))
        );
    }

    #[test]
    fn access_flag_clear_is_an_access_flag_fault_at_the_leaf_level() {
        let m = k16(
            s1_page(K16_PAGE, true, false, false) & !bits::AF,
            s1_block(K16_BLOCK, true, false, true) & !bits::AF,
        );
        let ctx = s1_ctx(Granule::K16, K16_L0);
        for (va, level) in [(K16_VA, 3u8), (K16_BLOCK_VA, 2)] {
            assert_eq!(
                translate(&m, &ctx, Va(va), READ),
                Err(fault(FaultKind::AccessFlag, TableStage::S1, level))
            );
        }
        let m = k64(
            s2_page(K64_PAGE, true, true) & !bits::AF,
            s2_block(K64_BLOCK, true, true) & !bits::AF,
        );
        let ctx = s2_ctx(Granule::K64, K64_L1);
        for (ipa, level) in [(K64_VA, 3u8), (K64_BLOCK_VA, 2)] {
            assert_eq!(
                translate_ipa(&m, &ctx, Ipa(ipa), READ),
                Err(fault(FaultKind::AccessFlag, TableStage::S2, level))
            );
        }
    }

    /// With a 40-bit output size (TCR.IPS / VTCR.PS = 0b010), any address
    /// with bits [47:40] set is an Address size fault: at the level of the
    /// descriptor holding it, or level 0 for the table base (ESR FSC
    /// 0b000000 "level 0 of translation or translation table base register").
    #[test]
    fn address_size_faults_with_a_40_bit_output() {
        let oa40 = |g, ttb| StageConfig {
            oa_bits: 40,
            ..StageConfig::new(g, ttb)
        };
        let with_cfg = |cfg: StageConfig| Context {
            s1: Some(cfg),
            ..s1_ctx(cfg.granule, cfg.ttb)
        };
        // Output of the page above 2^40.
        let m = k16(
            s1_page(1 << 40, true, false, false),
            s1_block(1 << 47, true, false, true),
        );
        let ctx = with_cfg(oa40(Granule::K16, K16_L0));
        assert_eq!(
            translate(&m, &ctx, Va(K16_VA), READ),
            Err(fault(FaultKind::AddressSize, TableStage::S1, 3))
        );
        assert_eq!(
            translate(&m, &ctx, Va(K16_BLOCK_VA), READ),
            Err(fault(FaultKind::AddressSize, TableStage::S1, 2))
        );
        // Below 2^40 all is well.
        let ok = k16_s1();
        assert_eq!(
            translate(&ok, &ctx, Va(K16_VA), READ).map(|t| t.pa),
            Ok(Pa(K16_PAGE + 0x1234))
        );
        // A table descriptor pointing above 2^40 faults at its own level.
        let mut m = k16_s1();
        put(&mut m, K16_D1, table(1 << 41));
        assert_eq!(
            translate(&m, &ctx, Va(K16_VA), READ),
            Err(fault(FaultKind::AddressSize, TableStage::S1, 1))
        );
        // A table base above 2^40: level 0 even for 64K, whose walk starts at L1.
        let m = k64_s1();
        let ctx = with_cfg(oa40(Granule::K64, 1 << 44));
        assert_eq!(
            translate(&m, &ctx, Va(K64_VA), READ),
            Err(fault(FaultKind::AddressSize, TableStage::S1, 0))
        );
        let mut m = k64_s1();
        put(&mut m, K64_D2, table(1 << 45));
        let ctx = with_cfg(oa40(Granule::K64, K64_L1));
        assert_eq!(
            translate(&m, &ctx, Va(K64_VA), READ),
            Err(fault(FaultKind::AddressSize, TableStage::S1, 2))
        );
        // Stage 2 likewise (VTCR_EL2.PS).
        let m = k64(
            s2_page(1 << 42, true, true),
            s2_block(K64_BLOCK, true, true),
        );
        let ctx = Context {
            s2: Some(oa40(Granule::K64, K64_L1)),
            ..s2_ctx(Granule::K64, K64_L1)
        };
        assert_eq!(
            translate_ipa(&m, &ctx, Ipa(K64_VA), READ),
            Err(fault(FaultKind::AddressSize, TableStage::S2, 3))
        );
    }

    /// A 64K VA above 48 bits: Translation fault at level 0, not at the
    /// start level 1 (pseudocode AArch64.S1Translate, VAIsOutOfRange).
    #[test]
    fn k64_out_of_range_input_faults_at_level_0() {
        let m = k64_s1();
        for ctx in [s1_ctx(Granule::K64, K64_L1), s2_ctx(Granule::K64, K64_L1)] {
            let stage = if ctx.s1.is_some() {
                TableStage::S1
            } else {
                TableStage::S2
            };
            assert_eq!(
                translate(&m, &ctx, Va(K64_VA | 1 << 48), READ),
                Err(fault(FaultKind::Translation, stage, 0))
            );
        }
    }

    /// Stage-1 AP[2:1] (Arm ARM D8.4.1.2, table D8-46):
    /// 0b00 EL1 RW, 0b01 RW at EL1 and EL0, 0b10 EL1 RO, 0b11 RO at both.
    #[test]
    fn stage1_ap_permissions() {
        let cases = [
            // (writable, user): allowed (write, user read, user write)
            ((true, false), (true, false, false)),
            ((true, true), (true, true, true)),
            ((false, false), (false, false, false)),
            ((false, true), (false, true, false)),
        ];
        for ((writable, user), (w, ur, uw)) in cases {
            let m = k64(
                s1_page(K64_PAGE, writable, user, false),
                s1_block(K64_BLOCK, writable, user, true),
            );
            let ctx = s1_ctx(Granule::K64, K64_L1);
            for (va, level, pa) in [
                (K64_VA, 3u8, K64_PAGE + 0xbeef),
                (K64_BLOCK_VA, 2, K64_BLOCK + 0x1234_5678),
            ] {
                assert_eq!(translate(&m, &ctx, Va(va), READ).map(|t| t.pa), Ok(Pa(pa)));
                for (access, allowed) in [(WRITE, w), (USER_READ, ur), (USER_WRITE, uw)] {
                    let want = if allowed {
                        Ok(Pa(pa))
                    } else {
                        Err(fault(FaultKind::Permission, TableStage::S1, level))
                    };
                    assert_eq!(
                        translate(&m, &ctx, Va(va), access).map(|t| t.pa),
                        want,
                        "AP writable={writable} user={user} {access:?} at L{level}"
                    );
                }
            }
        }
    }

    /// Stage-2 S2AP (Arm ARM D8.4.2): bit 0 read, bit 1 write; EL0 and EL1
    /// alike. 16K and 64K tables.
    #[test]
    fn stage2_s2ap_permissions_16k_and_64k() {
        for (read, write) in [(true, true), (true, false), (false, false)] {
            let setups = [
                (
                    k16(
                        s2_page(K16_PAGE, read, write),
                        s2_block(K16_BLOCK, read, write),
                    ),
                    s2_ctx(Granule::K16, K16_L0),
                    [
                        (K16_VA, 3u8, K16_PAGE + 0x1234),
                        (K16_BLOCK_VA, 2, K16_BLOCK + 0x1ab_cdef),
                    ],
                ),
                (
                    k64(
                        s2_page(K64_PAGE, read, write),
                        s2_block(K64_BLOCK, read, write),
                    ),
                    s2_ctx(Granule::K64, K64_L1),
                    [
                        (K64_VA, 3, K64_PAGE + 0xbeef),
                        (K64_BLOCK_VA, 2, K64_BLOCK + 0x1234_5678),
                    ],
                ),
            ];
            for (m, ctx, cases) in setups {
                for (ipa, level, pa) in cases {
                    let perm = Err(fault(FaultKind::Permission, TableStage::S2, level));
                    for (access, allowed) in [
                        (READ, read),
                        (USER_READ, read),
                        (WRITE, read && write),
                        (USER_WRITE, read && write),
                    ] {
                        let want = if allowed { Ok(Pa(pa)) } else { perm };
                        assert_eq!(
                            translate_ipa(&m, &ctx, Ipa(ipa), access).map(|t| t.pa),
                            want,
                            "S2AP r={read} w={write} {access:?} {ipa:#x}"
                        );
                    }
                    if read {
                        let t = translate_ipa(&m, &ctx, Ipa(ipa), READ).expect("readable");
                        let leaf = leaf_of(&t.entries, Stage::S2);
                        assert_eq!((leaf.level, leaf.asid, leaf.vmid), (level, None, VMID));
                    }
                }
            }
        }
    }

    // ---- Nested: 16K stage 1 over 64K stage 2 ----

    /// Stage-2 64K tables, separate from the stage-1 ones.
    const N_S2_L1: u64 = 0x80_0000;
    const N_S2_L2: u64 = 0x81_0000;
    const N_S2_L3: u64 = 0x82_0000;
    /// The 64K page of IPA space holding the 16K stage-1 tables
    /// (IPA 0x10_0000..0x11_0000) lives at this PA.
    const N_TABLES_PA: u64 = 0x50_0000;

    /// Stage-2 slot of `ipa` in the single L1/L2/L3 chain (IPA < 2^29):
    /// L1 index IPA[47:42] = 0, L2 index IPA[41:29] = 0, L3 index IPA[28:16].
    fn n_s2_slot(ipa: u64) -> u64 {
        assert!(ipa < 1 << 29);
        N_S2_L3 + 8 * (ipa >> 16)
    }

    /// Stage 2 maps: IPA 0x10_0000 (the 64K page holding the stage-1
    /// tables) -> PA 0x50_0000; the stage-1 page's output IPA 0x1234_8000
    /// (in the 64K page 0x1234_0000) -> PA 0x7_0000_0000; the stage-1 32 MiB
    /// block's output IPA 0x400_0000.. by 512 64K pages -> PA 0x8_0000_0000..
    /// (all these IPAs are below 2^29, so they share L1 and L2 index 0).
    fn nested_mem() -> PhysMem {
        const S1_PAGE_IPA: u64 = 0x1234_8000;
        const S1_BLOCK_IPA: u64 = 0x400_0000;
        let mut m = new_mem();
        // Stage 1 (16K), written at the PAs its IPAs map to.
        let at = |ipa: u64| ipa - K16_L0 + N_TABLES_PA;
        put(&mut m, at(K16_D0), table(K16_L1));
        put(&mut m, at(K16_D1), table(K16_L2));
        put(&mut m, at(K16_D2), table(K16_L3));
        put(&mut m, at(K16_D3), s1_page(S1_PAGE_IPA, true, true, false));
        put(
            &mut m,
            at(K16_DB),
            s1_block(S1_BLOCK_IPA, false, false, true),
        );
        // Stage 2 (64K).
        put(&mut m, N_S2_L1, table(N_S2_L2));
        put(&mut m, N_S2_L2, table(N_S2_L3));
        put(&mut m, n_s2_slot(K16_L0), s2_page(N_TABLES_PA, true, true));
        put(
            &mut m,
            n_s2_slot(S1_PAGE_IPA),
            s2_page(0x7_0000_0000, true, true),
        );
        for i in 0..512u64 {
            let ipa = S1_BLOCK_IPA + (i << 16);
            put(
                &mut m,
                n_s2_slot(ipa),
                s2_page(0x8_0000_0000 + (i << 16), true, true),
            );
        }
        m
    }

    fn n_ctx() -> Context {
        nested_ctx(
            StageConfig::new(Granule::K16, K16_L0),
            StageConfig::new(Granule::K64, N_S2_L1),
        )
    }

    #[test]
    fn nested_16k_over_64k_translates() {
        let m = nested_mem();
        let ctx = n_ctx();
        // VA page offset 0x1234 -> IPA 0x1234_8000 + 0x1234 = 0x1234_9234,
        // in the 64K stage-2 page 0x1234_0000 at offset 0x9234.
        let t = translate(&m, &ctx, Va(K16_VA), USER_WRITE).expect("nested page");
        assert_eq!(t.pa, Pa(0x7_0000_9234));
        let s1 = leaf_of(&t.entries, Stage::S1);
        assert_eq!(
            (s1.output_ipa(), s1.span_shift, s1.granule),
            (Some(Ipa(0x1234_8000)), 14, Granule::K16)
        );
        // The combined entry is the smaller of the two spans: the 16K page.
        let c = leaf_of(&t.entries, Stage::Combined);
        assert_eq!(
            (c.input_va(), c.span_shift),
            (Some(Va(K16_VA & !0x3fff)), 14)
        );
        assert_eq!(c.output_pa(), Some(Pa(0x7_0000_8000)));
        // Four stage-1 table reads (L0..L3), each translated by stage 2,
        // and the output: five stage-2 leaves.
        let s2_leaves = t
            .entries
            .iter()
            .filter(|e| e.stage() == Stage::S2 && e.kind == EntryKind::Leaf)
            .count();
        assert_eq!(s2_leaves, 5);
        // The 32 MiB stage-1 block over 64K stage-2 pages: combined span 64K.
        let t = translate(&m, &ctx, Va(K16_BLOCK_VA), READ).expect("nested block");
        // IPA = 0x400_0000 + 0x1ab_cdef = 0x5ab_cdef -> 64K page index
        // (0x1ab_cdef >> 16) = 0x1ab -> PA 0x8_0000_0000 + 0x1ab_cdef.
        assert_eq!(t.pa, Pa(0x8_01ab_cdef));
        let c = leaf_of(&t.entries, Stage::Combined);
        assert_eq!(
            (c.input_va(), c.span_shift),
            (Some(Va(K16_BLOCK_VA & !0xffff)), 16)
        );
    }

    /// A stage-2 fault while reading a stage-1 table is reported as a
    /// stage-2 fault with S1PTW set (Arm ARM D8.5, ESR_EL2.ISS.S1PTW).
    #[test]
    fn stage2_fault_on_a_stage1_table_walk_sets_s1ptw() {
        let ctx = n_ctx();
        let ptw = |kind, level| Fault {
            kind,
            stage: TableStage::S2,
            level,
            s1ptw: true,
        };
        // The stage-2 page holding every stage-1 table is gone.
        let mut m = nested_mem();
        put(&mut m, n_s2_slot(K16_L0), 0);
        assert_eq!(
            translate(&m, &ctx, Va(K16_VA), READ),
            Err(ptw(FaultKind::Translation, 3))
        );
        // ... or has AF = 0.
        let mut m = nested_mem();
        put(
            &mut m,
            n_s2_slot(K16_L0),
            s2_page(N_TABLES_PA, true, true) & !bits::AF,
        );
        assert_eq!(
            translate(&m, &ctx, Va(K16_VA), READ),
            Err(ptw(FaultKind::AccessFlag, 3))
        );
        // ... or is not readable at stage 2: a table walk is a read
        // (pseudocode AArch64.S2CheckPermissions for AccessType_TTW).
        let mut m = nested_mem();
        put(
            &mut m,
            n_s2_slot(K16_L0),
            s2_page(N_TABLES_PA, false, false),
        );
        assert_eq!(
            translate(&m, &ctx, Va(K16_VA), READ),
            Err(ptw(FaultKind::Permission, 3))
        );
        // Read-only at stage 2 is enough for a walk (no hardware AF/dirty updates).
        let mut m = nested_mem();
        put(&mut m, n_s2_slot(K16_L0), s2_page(N_TABLES_PA, true, false));
        assert!(translate(&m, &ctx, Va(K16_VA), READ).is_ok());
        // A fault on the output IPA is not a table-walk fault.
        let mut m = nested_mem();
        put(&mut m, n_s2_slot(0x1234_8000), 0);
        assert_eq!(
            translate(&m, &ctx, Va(K16_VA), READ),
            Err(fault(FaultKind::Translation, TableStage::S2, 3))
        );
        // The stage-2 L2 table descriptor missing: fault at stage-2 level 2.
        let mut m = nested_mem();
        put(&mut m, N_S2_L2, 0);
        assert_eq!(
            translate(&m, &ctx, Va(K16_VA), READ),
            Err(ptw(FaultKind::Translation, 2))
        );
    }

    /// Stage-1 permissions are checked before stage 2 translates the output
    /// (pseudocode AArch64.FullTranslate: S1Translate, which ends with
    /// S1CheckPermissions, then S2Translate), and a stage-2 Permission fault
    /// reports the stage-2 leaf level.
    #[test]
    fn nested_fault_priority_and_levels() {
        let ctx = n_ctx();
        // The block is stage-1 read-only, kernel only; unmap its output at stage 2.
        let mut m = nested_mem();
        let ipa = 0x400_0000 + (0x1ab_cdef & !0xffff);
        put(&mut m, n_s2_slot(ipa), 0);
        assert_eq!(
            translate(&m, &ctx, Va(K16_BLOCK_VA), WRITE),
            Err(fault(FaultKind::Permission, TableStage::S1, 2))
        );
        assert_eq!(
            translate(&m, &ctx, Va(K16_BLOCK_VA), USER_READ),
            Err(fault(FaultKind::Permission, TableStage::S1, 2))
        );
        assert_eq!(
            translate(&m, &ctx, Va(K16_BLOCK_VA), READ),
            Err(fault(FaultKind::Translation, TableStage::S2, 3))
        );
        // Stage-2 read-only 512 MiB block under a stage-1 16K RW page: a
        // write faults at stage 2, level 2 (the stage-2 leaf), although the
        // stage-1 leaf is at level 3.
        let mut m = nested_mem();
        put(&mut m, N_S2_L2, s2_block(0x9_0000_0000, true, false));
        // The stage-1 tables (IPA 0x10_0000) now come from the block too.
        let at = |ipa: u64| 0x9_0000_0000 + ipa;
        put(&mut m, at(K16_D0), table(K16_L1));
        put(&mut m, at(K16_D1), table(K16_L2));
        put(&mut m, at(K16_D2), table(K16_L3));
        put(&mut m, at(K16_D3), s1_page(0x1234_8000, true, true, false));
        assert_eq!(
            translate(&m, &ctx, Va(K16_VA), READ).map(|t| t.pa),
            Ok(Pa(0x9_1234_9234))
        );
        assert_eq!(
            translate(&m, &ctx, Va(K16_VA), WRITE),
            Err(fault(FaultKind::Permission, TableStage::S2, 2))
        );
    }
}

/// `enumerate_stage` and `translate` agree on random 4K tables.
mod enumeration {
    use super::*;
    use proptest::prelude::*;
    use tlbcheck_hw::vmsa::desc::{bits, table};

    /// Four table frames; frame 0 is the root. Any descriptor may point at
    /// any frame, the root included (tables shared between levels and
    /// recursive tables are architecturally valid).
    const FRAMES: u64 = 4;
    const FRAME_BASE: u64 = 0x30_0000;
    /// Descriptors live at indices 0..4 of each table; VAs use those indices.
    const SLOTS: u64 = 4;

    fn frame(k: u64) -> u64 {
        FRAME_BASE + (k << 12)
    }

    #[derive(Clone, Debug)]
    enum Slot {
        Table(u64),
        Leaf {
            out: u64,
            page: bool,
            af: bool,
            ap: u64,
            ng: bool,
        },
        Raw(u64),
    }

    impl Slot {
        fn raw(&self) -> u64 {
            match *self {
                Slot::Table(k) => table(frame(k)),
                Slot::Leaf {
                    out,
                    page,
                    af,
                    ap,
                    ng,
                } => {
                    let mut d = (out & bits::ADDR_MASK) | bits::VALID | ap << 6;
                    if page {
                        d |= bits::TABLE_OR_PAGE;
                    }
                    if af {
                        d |= bits::AF;
                    }
                    if ng {
                        d |= bits::NG;
                    }
                    d
                }
                Slot::Raw(r) => r,
            }
        }
    }

    fn slot() -> impl Strategy<Value = Slot> {
        prop_oneof![
            5 => (0..FRAMES).prop_map(Slot::Table),
            4 => (0u64..1 << 28, any::<bool>(), prop::bool::weighted(0.85), 0u64..4, any::<bool>())
                .prop_map(|(o, page, af, ap, ng)| Slot::Leaf { out: o << 12, page, af, ap, ng }),
            1 => any::<u64>().prop_map(Slot::Raw),
        ]
    }

    fn tables() -> impl Strategy<Value = Vec<(u64, u64, Slot)>> {
        prop::collection::vec((0..FRAMES, 0..SLOTS, slot()), 4..40)
    }

    fn build(descs: &[(u64, u64, Slot)]) -> PhysMem {
        let mut m = new_mem();
        for (f, i, s) in descs {
            put(&mut m, frame(*f) + 8 * i, s.raw());
        }
        m
    }

    fn enumerate(m: &PhysMem, ctx: &Context) -> Vec<TlbEntry> {
        let cfg = ctx.s1.expect("stage 1");
        let mut found = Vec::new();
        enumerate_stage(
            m,
            0,
            ctx,
            TableStage::S1,
            cfg,
            0,
            cfg.ttb,
            0,
            &|t, f| f(t),
            &mut |e, _| found.push(e),
        );
        found
    }

    fn covers(e: &TlbEntry, va: u64) -> bool {
        e.kind == EntryKind::Leaf && e.input_range().contains(Va(va).into())
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn enumeration_and_translation_agree(descs in tables(), offset in 0u64..0x1000) {
            let m = build(&descs);
            let ctx = s1_ctx(Granule::K4, frame(0));
            let all = enumerate(&m, &ctx);
            // Every enumerated leaf: its input translates to its output,
            // through exactly that leaf, and so does its last byte.
            for e in all.iter().filter(|e| e.kind == EntryKind::Leaf) {
                let t = translate(&m, &ctx, e.input_va().unwrap(), READ)
                    .unwrap_or_else(|f| panic!("enumerated {e} but {f}"));
                prop_assert_eq!(t.pa, e.output_ipa().unwrap().flat_pa());
                prop_assert_eq!(t.entries.last(), Some(e));
                let last = e.input().get() + ((1u64 << e.span_shift) - 1);
                let t = translate(&m, &ctx, Va(last), READ).expect("same leaf");
                prop_assert_eq!(t.pa, e.translate(Va(last).into()).unwrap().flat_pa());
            }
            // Every enumerated walk entry is on the walk of its input, which
            // either completes through it or faults below it.
            for e in all.iter().filter(|e| e.kind == EntryKind::Walk) {
                match translate(&m, &ctx, e.input_va().unwrap(), READ) {
                    Ok(t) => prop_assert!(t.entries.contains(e), "{} not on the walk", e),
                    Err(f) => prop_assert!(f.level > e.level, "{} vs {}", e, f),
                }
            }
            // Every address whose indices (at every level) are among the
            // populated slots: translate succeeds iff exactly one enumerated
            // leaf covers it, and every entry of the walk is enumerated.
            for n in 0..SLOTS.pow(4) {
                let idx = [n & 3, (n >> 2) & 3, (n >> 4) & 3, (n >> 6) & 3];
                let va = idx[0] << 39 | idx[1] << 30 | idx[2] << 21 | idx[3] << 12 | offset;
                let leaves: Vec<_> = all.iter().filter(|e| covers(e, va)).collect();
                match translate(&m, &ctx, Va(va), READ) {
                    Ok(t) => {
                        prop_assert_eq!(leaves.len(), 1, "{:#x}: {:?}", va, leaves);
                        prop_assert_eq!(t.pa, leaves[0].translate(Va(va).into()).unwrap().flat_pa());
                        for e in &t.entries {
                            prop_assert!(all.contains(e), "{} made by translate, not enumerated", e);
                        }
                    }
                    Err(f) => {
                        prop_assert!(leaves.is_empty(), "{:#x} faults ({}) yet {:?}", va, f, leaves);
                        prop_assert!(
                            matches!(f.kind, FaultKind::Translation | FaultKind::AccessFlag),
                            "{}", f
                        );
                    }
                }
            }
        }
    }
}
