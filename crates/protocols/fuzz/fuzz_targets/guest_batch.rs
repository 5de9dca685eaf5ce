//! Fuzzes the host services with raw guest batches: every version must
//! translate any batch without panicking; iommufd-vsmmu and strict must
//! keep every physical command on the guest's VMID and on the StreamID its
//! entry named, report `entry_num` no larger than the batch, and strict
//! must issue only commands the SMMU accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlbcheck_hw::addr::Granule;
use tlbcheck_hw::smmu::cmd::Command;
use tlbcheck_protocols::nested::{translate, Guest, HostSmmu, VDevice, Version};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let batch: Vec<[u64; 2]> = rest
        .chunks_exact(16)
        .map(|c| {
            let w = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
            [w(&c[..8]), w(&c[8..])]
        })
        .collect();
    let host = HostSmmu {
        ril: flags & 1 != 0,
        ats: flags & 2 != 0,
        granule: Granule::ALL[usize::from(flags >> 2) % 3],
    };
    let guest = Guest {
        vmid: 7,
        devices: vec![
            VDevice { vsid: 1, psid: 0x300, ats: true },
            VDevice { vsid: 2, psid: 0x301, ats: false },
        ],
    };
    for v in Version::ALL {
        // nested-2023-v1 without RIL issues one command per granule of a
        // range: only with RIL is its output bounded.
        if v == Version::Nested2023V1 && !host.ril {
            continue;
        }
        let t = translate(v, &host, &guest, &batch);
        assert!(t.entry_num <= batch.len());
        if v == Version::Nested2023V1 {
            continue;
        }
        for c in &t.issued {
            let Some(i) = c.entry else { continue };
            let [w0, _] = c.words;
            let g0 = batch[i][0];
            match w0 & 0xff {
                0x10..=0x13 => assert_eq!((w0 >> 32) & 0xffff, 7),
                _ => {
                    let psid = guest.device((g0 >> 32) as u32).expect("a known vSID").psid;
                    assert_eq!(w0 >> 32, u64::from(psid));
                }
            }
            if v == Version::Strict {
                assert!(Command::decode(c.words).is_ok());
            }
        }
    }
});
