//! Cost of one `translate` on populated tables: a full 4-level 4K stage-1
//! walk, and a nested walk with 4K tables at both stages (every stage-1
//! table address and the output IPA go through a 4-level stage-2 walk).

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use tlbcheck_hw::addr::{Granule, Pa, Va};
use tlbcheck_hw::mem::{Pfn, PhysMem};
use tlbcheck_hw::tlb::{Access, Regime};
use tlbcheck_hw::vmsa::desc::{s1_page, s2_page, table};
use tlbcheck_hw::vmsa::walk::{translate, Context, StageConfig};

const READ: Access = Access {
    write: false,
    user: false,
};

/// Stage-1 layout (PAs without stage 2, IPAs with it): L0 at 0x10_0000,
/// 2 L1, 8 L2 and 32 fully populated L3 tables (16384 pages).
const S1_L0: u64 = 0x10_0000;
const S1_L1: u64 = 0x11_0000;
const S1_L2: u64 = 0x12_0000;
const S1_L3: u64 = 0x13_0000;
/// Page `n` maps to `S1_OUT + n * 4K`.
const S1_OUT: u64 = 0x100_0000;
/// Stage 2 maps IPA `x` to PA `x + S2_SHIFT` for IPA < `S2_SPAN`.
const S2_SHIFT: u64 = 0x1_0000_0000;
const S2_SPAN: u64 = 0x500_0000;
const S2_L0: u64 = 0x2000_0000;
const S2_L1: u64 = 0x2000_1000;
const S2_L2: u64 = 0x2000_2000;
const S2_L3: u64 = 0x2001_0000;

fn put(m: &mut PhysMem, pa: u64, v: u64) {
    m.write(Pa(pa), v).expect("aligned");
}

/// Writes the stage-1 tables, each word at its address plus `at`.
fn populate_s1(m: &mut PhysMem, at: u64) {
    let mut page = 0u64;
    for i0 in 0..2u64 {
        let l1 = S1_L1 + i0 * 0x1000;
        put(m, at + S1_L0 + 8 * i0, table(l1));
        for i1 in 0..4u64 {
            let n2 = i0 * 4 + i1;
            let l2 = S1_L2 + n2 * 0x1000;
            put(m, at + l1 + 8 * i1, table(l2));
            for i2 in 0..4u64 {
                let l3 = S1_L3 + (n2 * 4 + i2) * 0x1000;
                put(m, at + l2 + 8 * i2, table(l3));
                for i3 in 0..512u64 {
                    let out = S1_OUT + page * 0x1000;
                    put(m, at + l3 + 8 * i3, s1_page(out, true, true, false));
                    page += 1;
                }
            }
        }
    }
}

fn populate_s2(m: &mut PhysMem) {
    put(m, S2_L0, table(S2_L1));
    put(m, S2_L1, table(S2_L2));
    for chunk in 0..S2_SPAN >> 21 {
        let l3 = S2_L3 + chunk * 0x1000;
        put(m, S2_L2 + 8 * chunk, table(l3));
        for i in 0..512u64 {
            let ipa = (chunk << 21) | (i << 12);
            put(m, l3 + 8 * i, s2_page(ipa + S2_SHIFT, true, true));
        }
    }
}

/// VA of the last page of the last L3 table: indices 1, 3, 3, 511.
const VA: Va = Va(1 << 39 | 3 << 30 | 3 << 21 | 511 << 12 | 0x5a8);
/// Its page number, 16383, gives the output.
const VA_OUT: u64 = S1_OUT + 16383 * 0x1000 + 0x5a8;

fn bench_walks(c: &mut Criterion) {
    let mut s1_mem = PhysMem::new(Pfn(0x10), 0);
    populate_s1(&mut s1_mem, 0);
    let s1_ctx = Context {
        regime: Regime::El10,
        asid: 1,
        vmid: 0,
        s1: Some(StageConfig::new(Granule::K4, S1_L0)),
        s2: None,
    };
    let t = translate(&s1_mem, &s1_ctx, VA, READ).expect("mapped");
    assert_eq!((t.pa, t.entries.len()), (Pa(VA_OUT), 4));
    c.bench_function("translate/s1_4k_4level", |b| {
        b.iter(|| translate(black_box(&s1_mem), &s1_ctx, black_box(VA), READ))
    });

    let mut nested_mem = PhysMem::new(Pfn(0x10), 0);
    populate_s1(&mut nested_mem, S2_SHIFT);
    populate_s2(&mut nested_mem);
    let nested_ctx = Context {
        s2: Some(StageConfig::new(Granule::K4, S2_L0)),
        vmid: 2,
        ..s1_ctx
    };
    let t = translate(&nested_mem, &nested_ctx, VA, READ).expect("mapped");
    assert_eq!(t.pa, Pa(VA_OUT + S2_SHIFT));
    c.bench_function("translate/nested_4k_s1_4k_s2", |b| {
        b.iter(|| translate(black_box(&nested_mem), &nested_ctx, black_box(VA), READ))
    });
}

criterion_group!(benches, bench_walks);
criterion_main!(benches);
