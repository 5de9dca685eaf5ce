//! SMMU benchmarks (issue 3, item 9):
//! - `smmu/iotlb-hit-realistic`: an IOTLB lookup that hits in the realistic
//!   set-associative TLB (the cost-model path);
//! - `smmu/iotlb-lookup-mayhold`: every cached leaf a device access may
//!   use, from the may-hold IOTLB (the checker path);
//! - `smmu/cmd-decode`: decoding one CMD_TLBI_NH_VA from its 16 bytes;
//! - `smmu/cmd-decode-execute`: writing, consuming and completing one
//!   CMD_TLBI_NH_VA + CMD_SYNC against an IOTLB of 512 pages (the SYNC
//!   re-closes the caches, refilling the page from memory);
//! - `smmu/batch-512-plus-sync`: 512 CMD_TLBI_NH_VA (one per page) and one
//!   CMD_SYNC, as Linux's per-page invalidation without range support;
//! - `smmu/access-realistic-hit`: a device access through the realistic
//!   caches ([`SmmuCosts::device_access`]) that hits the config cache and
//!   the IOTLB (the cost model's access path, end to end);
//! - `smmu/access-realistic-atc-hit`: the same for an ATS device, answered
//!   by its ATC;
//! - `smmu/access-realistic-cold`: the same 128 pages from empty caches:
//!   the first access fetches four structures, every one misses the IOTLB
//!   and walks four levels (the miss path);
//! - `smmu/access-mayhold`: [`Smmu::device_access`] for the same access
//!   (every held configuration and cached leaf considered: the checker path).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use tlbcheck_hw::addr::{Granule, Pa, Va};
use tlbcheck_hw::mem::{Pfn, PhysMem};
use tlbcheck_hw::smmu::cd::Cd;
use tlbcheck_hw::smmu::cmd::{Command, TlbiAddr};
use tlbcheck_hw::smmu::config::{StrtabConfig, StrtabFmt};
use tlbcheck_hw::smmu::costs::{CostGeometry, SmmuCosts};
use tlbcheck_hw::smmu::model::{Device, Smmu, SmmuOptions};
use tlbcheck_hw::smmu::ste::Ste;
use tlbcheck_hw::testing::{self, chain4k, put_words, s1_ctx};
use tlbcheck_hw::tlb::{EntryKind, RealisticTlb, Regime, Stage};
use tlbcheck_hw::vmsa::desc::s1_page;

const STRTAB: u64 = 0x10_0000;
const CD: u64 = 0x10_1000;
const CMDQ: u64 = 0x10_2000;
const EVTQ: u64 = 0x10_3000;
const L0: u64 = 0x10_4000;
const DATA: u64 = 0x20_0000;

/// An SMMU whose StreamID 1 translates 512 pages of ASID 1 (one L3 table).
fn setup() -> (PhysMem, Smmu) {
    setup_with(vec![Device::new(1, None, false, false)])
}

/// [`setup`] with the given devices (all on StreamID 1).
fn setup_with(devices: Vec<Device>) -> (PhysMem, Smmu) {
    let mut mem = PhysMem::new(Pfn(0x100), 1024);
    let l3 = chain4k(&mut mem, L0);
    for i in 0..512u64 {
        mem.write(Pa(l3 + 8 * i), s1_page(DATA + (i << 12), true, true, false))
            .unwrap();
    }
    put_words(&mut mem, STRTAB + 64, &Ste::stage1(CD).encode());
    put_words(&mut mem, CD, &Cd::new(1, L0, Granule::K4).encode());
    let strtab = StrtabConfig {
        base: STRTAB,
        log2size: 4,
        fmt: StrtabFmt::Linear,
    };
    let smmu = testing::smmu(SmmuOptions::default(), strtab, CMDQ, EVTQ, devices, &mem);
    assert!(smmu.iotlb.len() >= 512);
    (mem, smmu)
}

fn nh_va(page: u64) -> [u64; 2] {
    Command::TlbiNhVa {
        vmid: 0,
        asid: 1,
        va: TlbiAddr::single(page << 12, true),
    }
    .encode()
}

fn sync() -> [u64; 2] {
    Command::SYNC_SEV.encode()
}

fn iotlb_hit(c: &mut Criterion) {
    let (_, smmu) = setup();
    let mut tlb = RealisticTlb::new(256, 4);
    for (e, _) in smmu.iotlb.iter() {
        if e.kind == EntryKind::Leaf {
            tlb.insert(*e);
        }
    }
    let vas: Vec<Va> = (0..128u64).map(|i| Va((i << 12) + 0x10)).collect();
    let mut g = c.benchmark_group("smmu");
    g.throughput(Throughput::Elements(vas.len() as u64));
    g.bench_function("iotlb-hit-realistic", |b| {
        b.iter(|| {
            for &va in &vas {
                black_box(tlb.lookup(Regime::El10, 0, Stage::S1, Some(1), black_box(va.into())));
            }
        })
    });
    let ctx = s1_ctx(Granule::K4, L0, 1, 0);
    g.bench_function("iotlb-lookup-mayhold", |b| {
        b.iter(|| {
            for &va in &vas {
                black_box(smmu.leaves_for_context(&ctx, black_box(va)));
            }
        })
    });
    g.finish();
}

fn commands(c: &mut Criterion) {
    let mut g = c.benchmark_group("smmu");
    let words = nh_va(7);
    g.bench_function("cmd-decode", |b| {
        b.iter(|| black_box(Command::decode(black_box(words))))
    });
    let (mut mem, mut smmu) = setup();
    g.bench_function("cmd-decode-execute", |b| {
        b.iter(|| {
            smmu.submit(&mut mem, black_box(words), 1).unwrap();
            black_box(smmu.submit(&mut mem, sync(), 1).unwrap());
        })
    });
    g.throughput(Throughput::Elements(513));
    g.bench_function("batch-512-plus-sync", |b| {
        b.iter_batched(
            setup,
            |(mut mem, mut smmu)| {
                for p in 0..512 {
                    smmu.submit(&mut mem, nh_va(p), 1).unwrap();
                }
                black_box(smmu.submit(&mut mem, sync(), 2).unwrap());
                (mem, smmu)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn realistic_access(c: &mut Criterion) {
    let (mut mem, mut smmu) = setup_with(vec![
        Device::new(1, None, false, false),
        Device::new(1, None, true, false),
    ]);
    let vas: Vec<Va> = (0..128u64).map(|i| Va((i << 12) + 0x10)).collect();
    let mut costs = SmmuCosts::new(&smmu, CostGeometry::default());
    for &va in &vas {
        costs.device_access(&smmu, &mem, 0, va, false);
        costs.device_access(&smmu, &mem, 1, va, false);
    }
    let mut g = c.benchmark_group("smmu");
    g.throughput(Throughput::Elements(vas.len() as u64));
    for (name, dev) in [("access-realistic-hit", 0), ("access-realistic-atc-hit", 1)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                for &va in &vas {
                    black_box(costs.device_access(&smmu, &mem, dev, black_box(va), false));
                }
            })
        });
    }
    g.bench_function("access-realistic-cold", |b| {
        b.iter_batched(
            || SmmuCosts::new(&smmu, CostGeometry::default()),
            |mut cold| {
                for &va in &vas {
                    black_box(cold.device_access(&smmu, &mem, 0, black_box(va), false));
                }
                cold
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("access-mayhold", |b| {
        b.iter(|| {
            for &va in &vas {
                black_box(smmu.device_access(&mut mem, 0, black_box(va), false));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, iotlb_hit, commands, realistic_access);
criterion_main!(benches);
