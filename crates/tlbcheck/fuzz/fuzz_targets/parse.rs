//! The scenario front end must never panic: any text either loads (parse
//! and lowering) or yields a located error whose line and column lie inside
//! the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match tlbcheck::load("fuzz.tlb", src) {
        Ok(loaded) => {
            // A loaded scenario's model must be explorable within tiny bounds.
            let opts = tlbcheck::check::Options {
                max_depth: Some(4),
                max_states: Some(200),
                ..Default::default()
            };
            let _ = tlbcheck::check::check(&loaded, &opts);
        }
        Err(e) => {
            assert!(e.line >= 1 && e.line <= src.lines().count().max(1) + 1);
            assert!(e.column >= 1);
            let _ = e.to_string();
        }
    }
});
