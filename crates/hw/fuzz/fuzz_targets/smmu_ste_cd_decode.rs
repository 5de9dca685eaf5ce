//! Fuzzes the STE, CD and level-1 descriptor decoders: decoding must never
//! panic, and anything accepted must round-trip through encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlbcheck_hw::smmu::cd::{Cd, L1Cd};
use tlbcheck_hw::smmu::ste::{L1Std, Ste};

fuzz_target!(|data: &[u8]| {
    let mut bytes = [0u8; 64];
    let n = data.len().min(64);
    bytes[..n].copy_from_slice(&data[..n]);
    let mut words = [0u64; 8];
    for (i, w) in words.iter_mut().enumerate() {
        *w = u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
    }
    if let Ok(ste) = Ste::decode(&words) {
        assert_eq!(Ste::decode(&ste.encode()), Ok(ste));
    }
    if let Ok(cd) = Cd::decode(&words) {
        assert_eq!(Cd::decode(&cd.encode()), Ok(cd));
    }
    if let Ok(d) = L1Std::decode(words[0]) {
        assert_eq!(d.encode(), words[0]);
        let _ = (d.l2_entries(), d.l2_base());
    }
    if let Ok(d) = L1Cd::decode(words[1]) {
        assert_eq!(d.encode(), words[1]);
    }
});
