//! Fuzzes the SMMUv3 command decoder: decoding must never panic, and any
//! command it accepts must re-encode to the same words and decode again to
//! the same command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlbcheck_hw::smmu::cmd::Command;

fuzz_target!(|data: &[u8]| {
    let mut bytes = [0u8; 16];
    let n = data.len().min(16);
    bytes[..n].copy_from_slice(&data[..n]);
    let dw0 = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let dw1 = u64::from_le_bytes(bytes[8..].try_into().unwrap());
    if let Ok(cmd) = Command::decode([dw0, dw1]) {
        let words = cmd.encode();
        assert_eq!(words, [dw0, dw1], "strict decode dropped bits of {cmd:?}");
        assert_eq!(Command::decode(words), Ok(cmd));
        let _ = cmd.invalidated_range();
    }
    if let Ok(cmd) = Command::decode_permissive([dw0, dw1]) {
        assert_eq!(Command::decode_permissive(cmd.encode()), Ok(cmd));
    }
});
