//! Structure-aware TRACKER_INFO: a correct type-1 header around arbitrary body bytes, so
//! every input reaches the TRACKER_INFO body parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmlet::wire::{DecodeError, Message, MsgType, Tolerance};
use swarmlet_fuzz::{TOLERANT, check_round_trip, check_stream_agrees, frame};

fuzz_target!(|data: &[u8]| {
    let wire = frame(MsgType::TrackerInfo as u8, data);
    let res = Message::decode(&wire, Tolerance::default());
    match &res {
        Ok(m) => {
            assert!(matches!(m, Message::TrackerInfo(_)), "{m:?}");
            check_round_trip(m, wire.len());
        }
        Err(e) => assert!(
            matches!(
                e,
                DecodeError::Body {
                    msg: MsgType::TrackerInfo,
                    ..
                }
            ),
            "framing was right, yet: {e}"
        ),
    }
    assert_eq!(Message::decode(&wire, TOLERANT), res);
    check_stream_agrees(&wire, Tolerance::default());
});
