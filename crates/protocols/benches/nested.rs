//! Host service benchmarks: translating one guest batch of 1 000 commands
//! (`nested/translate-1000/VERSION`). The batch cycles through the eight
//! accepted opcodes with known vSIDs and non-range TLBIs, so no version
//! refuses it and v1 issues one command per entry (plus its syncs).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use tlbcheck_hw::addr::Granule;
use tlbcheck_protocols::nested::{translate, Guest, HostSmmu, VDevice, Version};

fn batch() -> Vec<[u64; 2]> {
    let cmds: [[u64; 2]; 8] = [
        [0x0001_0000_0000_0012, 0x7f00_0001], // NH_VA ASID 1, leaf
        [0x13, 0x7f00_0000],                  // NH_VAA
        [0x0001_0000_0000_0011, 0],           // NH_ASID
        [0x10, 0],                            // NH_ALL
        [0x30, 0],                            // NSNH_ALL
        [0x0000_0001_0000_5005, 1],           // CFGI_CD vSID 1 SSID 5
        [0x0000_0002_0000_0006, 0],           // CFGI_CD_ALL vSID 2
        [0x0000_0001_0000_0040, 0x34],        // ATC_INV vSID 1, everything
    ];
    (0..1000).map(|i| cmds[i % cmds.len()]).collect()
}

fn bench(c: &mut Criterion) {
    let host = HostSmmu {
        ril: true,
        ats: true,
        granule: Granule::K4,
    };
    let guest = Guest {
        vmid: 3,
        devices: vec![
            VDevice {
                vsid: 1,
                psid: 0x100,
                ats: true,
            },
            VDevice {
                vsid: 2,
                psid: 0x200,
                ats: true,
            },
        ],
    };
    let b = batch();
    let mut g = c.benchmark_group("nested/translate-1000");
    g.throughput(Throughput::Elements(b.len() as u64));
    for v in Version::ALL {
        assert!(translate(v, &host, &guest, &b).error.is_none(), "{v}");
        g.bench_with_input(BenchmarkId::from_parameter(v.name()), &b, |bn, b| {
            bn.iter(|| translate(v, &host, &guest, black_box(b)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
