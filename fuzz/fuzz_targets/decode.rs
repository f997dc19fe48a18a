//! `Message::decode` on arbitrary bytes, strict and tolerant; every success must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmlet::wire::{Message, Tolerance};
use swarmlet_fuzz::{TOLERANT, check_round_trip};

fuzz_target!(|data: &[u8]| {
    let strict = Message::decode(data, Tolerance::default());
    let tolerant = Message::decode(data, TOLERANT);
    for m in [&strict, &tolerant].into_iter().flatten() {
        check_round_trip(m, data.len());
    }
    if let Err(e) = &strict {
        let _ = e.error_code();
        let _ = e.to_string();
    }
    if data.get(1) == Some(&5) {
        // Under the tolerance a type-5 message can only be a FILE_INFO.
        if let Ok(m) = &tolerant {
            assert!(matches!(m, Message::FileInfo(_)), "{m:?}");
        }
    } else {
        // The tolerance changes nothing for any other type.
        assert_eq!(strict, tolerant);
    }
});
