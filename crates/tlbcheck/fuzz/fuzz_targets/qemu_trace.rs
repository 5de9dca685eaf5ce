//! The QEMU trace importer must never panic: any bytes either parse (and
//! then summarise and audit) or yield an error naming a line of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlbcheck::import::{audit::audit, qemu};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match qemu::parse(&text) {
        Ok(trace) => {
            let _ = qemu::Summary::new(&trace).render_text();
            let _ = audit(&trace).render_text();
        }
        Err(e) => {
            assert!(e.line >= 1 && e.line <= text.lines().count());
            assert!(!e.message.is_empty());
        }
    }
});
