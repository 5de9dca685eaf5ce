//! Bad guest input as a test subject: random batches (legal and illegal
//! words, unknown vSIDs, every opcode) through iommufd-vsmmu and strict.
//! Oracles are written from the contract, not from the code: the eight
//! opcodes and the vdevice table of d68beb276ba2, the 63 + CMD_SYNC
//! blocks, the SMMU's own decoder for what the hardware refuses.

use proptest::prelude::*;
use tlbcheck_hw::addr::Granule;
use tlbcheck_hw::smmu::cmd::{Command, Opcode};
use tlbcheck_hw::smmu::model::tlbi_scope;
use tlbcheck_protocols::nested::{translate, Guest, HostSmmu, VDevice, Version};

const VMID: u16 = 7;

fn guest() -> Guest {
    Guest {
        vmid: VMID,
        devices: vec![
            VDevice {
                vsid: 1,
                psid: 0x300,
                ats: true,
            },
            VDevice {
                vsid: 2,
                psid: 0x301,
                ats: false,
            },
        ],
    }
}

/// The opcodes the vIOMMU accepts (include/uapi/linux/iommufd.h,
/// `iommu_viommu_arm_smmuv3_invalidate`).
const TLBI: [u64; 5] = [0x10, 0x11, 0x12, 0x13, 0x30];
const BY_SID: [u64; 3] = [0x05, 0x06, 0x40];

fn in_contract(g: &Guest, [dw0, _]: [u64; 2]) -> bool {
    let op = dw0 & 0xff;
    TLBI.contains(&op) || (BY_SID.contains(&op) && g.device((dw0 >> 32) as u32).is_some())
}

/// The entry as the vIOMMU rewrites it: NSNH_ALL becomes NH_ALL of the
/// VMID, TLBI_NH_* get the VMID, the others the physical StreamID.
fn converted(g: &Guest, [dw0, dw1]: [u64; 2]) -> [u64; 2] {
    let vmid = u64::from(VMID) << 32;
    match dw0 & 0xff {
        0x30 => [0x10 | vmid, 0],
        0x10..=0x13 => [dw0 & !(0xffff << 32) | vmid, dw1],
        _ => {
            let psid = g.device((dw0 >> 32) as u32).expect("known").psid;
            [dw0 & 0xffff_ffff | u64::from(psid) << 32, dw1]
        }
    }
}

/// A command word: mostly well-formed commands of every opcode (and of
/// random opcodes), with vSIDs known and unknown, VMIDs forged, TLBI
/// range fields random, and now and then random bits anywhere.
fn word() -> impl Strategy<Value = [u64; 2]> {
    let opcode = prop_oneof![
        4 => proptest::sample::select(Opcode::ALL.map(|o| u64::from(o.value())).to_vec()),
        2 => proptest::sample::select(vec![0x10u64, 0x11, 0x12, 0x13, 0x30, 0x05, 0x06, 0x40]),
        1 => any::<u8>().prop_map(u64::from),
    ];
    (
        opcode,
        0u64..4,                                         // vSID 0..3 (0 and 3 unknown)
        any::<u16>(),                                    // forged VMID
        0u64..4,                                         // ASID
        0u64..32,                                        // NUM
        0u64..32,                                        // SCALE
        0u64..4,                                         // TG
        0u64..4,                                         // TTL
        0u64..0x400,                                     // address, in pages
        any::<bool>(),                                   // leaf
        prop_oneof![8 => Just(0u64), 1 => any::<u64>()], // noise dw0
        prop_oneof![8 => Just(0u64), 1 => any::<u64>()], // noise dw1
    )
        .prop_map(
            |(op, vsid, vmid, asid, num, scale, tg, ttl, page, leaf, n0, n1)| {
                let by_sid = BY_SID.contains(&op);
                let tlbi = (0x10..=0x13).contains(&op);
                let mut dw0 = op;
                let mut dw1 = 0;
                if by_sid {
                    dw0 |= vsid << 32;
                    if op == 0x40 {
                        dw1 = (page << 12) | (num & 0x3f);
                    }
                } else if tlbi {
                    dw0 |= u64::from(vmid) << 32 | asid << 48;
                    if op >= 0x12 {
                        dw0 |= num << 12 | scale << 20;
                        dw1 = (page << 12) | tg << 10 | ttl << 8 | u64::from(leaf);
                    }
                } else {
                    dw0 |= vsid << 32;
                }
                [dw0 ^ (n0 & !0xff), dw1 ^ n1]
            },
        )
}

fn host(ril: bool) -> HostSmmu {
    HostSmmu {
        ril,
        ats: true,
        granule: Granule::K4,
    }
}

/// No physical command reaches another VMID or a StreamID other than the
/// one the guest's entry named, whatever the words.
fn no_isolation(g: &Guest, batch: &[[u64; 2]], t: &tlbcheck_protocols::nested::Translation) {
    for c in &t.issued {
        let Some(i) = c.entry else {
            assert_eq!(c.words, Command::SYNC_SEV.encode());
            continue;
        };
        let [g0, _] = batch[i];
        let [w0, _] = c.words;
        let op = w0 & 0xff;
        if TLBI.contains(&(g0 & 0xff)) {
            assert!((0x10..=0x13).contains(&op), "{:#x}", op);
            assert_eq!((w0 >> 32) & 0xffff, u64::from(VMID));
            if let Ok(cmd) = Command::decode_permissive(c.words) {
                let scope = tlbi_scope(&cmd, false).expect("a TLBI");
                assert_eq!(scope.vmid, Some(VMID));
            }
        } else {
            assert!(BY_SID.contains(&op));
            let named = g.device((g0 >> 32) as u32).expect("a known vSID").psid;
            assert_eq!(w0 >> 32, u64::from(named));
        }
    }
}

/// The entries the issued commands came from, in order, and the number of
/// commands between CMD_SYNCs.
fn shape(t: &tlbcheck_protocols::nested::Translation) -> (Vec<usize>, Vec<usize>) {
    let entries = t.issued.iter().filter_map(|c| c.entry).collect();
    let mut blocks = Vec::new();
    let mut n = 0;
    for c in &t.issued {
        if c.entry.is_some() {
            n += 1;
        } else {
            blocks.push(n);
            n = 0;
        }
    }
    assert_eq!(n, 0, "every block ends with a CMD_SYNC");
    (entries, blocks)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn iommufd_vsmmu_keeps_its_contract(
        batch in proptest::collection::vec(word(), 0..140),
        ril in any::<bool>(),
    ) {
        let g = guest();
        let t = translate(Version::IommufdVsmmu, &host(ril), &g, &batch);
        no_isolation(&g, &batch, &t);
        let first_bad = batch.iter().position(|w| !in_contract(&g, *w));
        let (entries, blocks) = shape(&t);
        match first_bad {
            Some(i) => {
                let e = t.error.clone().expect("refused");
                prop_assert_eq!(e.index, i);
                prop_assert_eq!(e.errno, -5);
                prop_assert_eq!(t.entry_num, i);
                // The documented prefix: only full blocks of 63 before i.
                let issued = i / 63 * 63;
                prop_assert_eq!(entries, (0..issued).collect::<Vec<_>>());
                prop_assert!(blocks.iter().all(|&n| n == 63));
            }
            None => {
                prop_assert!(t.error.is_none());
                prop_assert_eq!(t.entry_num, batch.len());
                prop_assert_eq!(entries, (0..batch.len()).collect::<Vec<_>>());
                let want: Vec<usize> = batch.chunks(63).map(<[_]>::len).collect();
                prop_assert_eq!(blocks, want);
            }
        }
    }

    #[test]
    fn strict_refuses_before_issuing(
        batch in proptest::collection::vec(word(), 0..140),
        ril in any::<bool>(),
    ) {
        let g = guest();
        let h = host(ril);
        let t = translate(Version::Strict, &h, &g, &batch);
        no_isolation(&g, &batch, &t);
        let lax = translate(Version::IommufdVsmmu, &h, &g, &batch);
        let (entries, blocks) = shape(&t);
        // Exactly the entries before the refusal, none after it.
        prop_assert_eq!(&entries, &(0..t.entry_num).collect::<Vec<_>>());
        let want: Vec<usize> = entries.chunks(63).map(<[_]>::len).collect();
        prop_assert_eq!(blocks, want);
        // Everything issued is something the SMMU accepts.
        for c in &t.issued {
            prop_assert!(c.hw_error.is_none(), "{:?}", c);
            prop_assert!(Command::decode(c.words).is_ok());
        }
        match &t.error {
            Some(e) => {
                prop_assert_eq!(t.entry_num, e.index);
                // Refused no later than the contract refuses ...
                let contract = batch.iter().position(|w| !in_contract(&g, *w));
                prop_assert!(contract.is_none_or(|c| e.index <= c));
                if contract != Some(e.index) {
                    // ... and earlier only for what the hardware refuses:
                    // what iommufd-vsmmu would issue for it fails the
                    // SMMU's decoder, or is a range TLBI (RIL, alignment).
                    let w = converted(&g, batch[e.index]);
                    let range = Command::decode(w)
                        .ok()
                        .and_then(|c| c.tlbi_addr().map(|a| a.tg != 0))
                        .unwrap_or(false);
                    prop_assert!(Command::decode(w).is_err() || range, "{}", e);
                }
            }
            None => {
                prop_assert_eq!(t.entry_num, batch.len());
                prop_assert!(lax.error.is_none());
                prop_assert!(lax.issued.iter().all(|c| c.hw_error.is_none()));
            }
        }
    }
}
