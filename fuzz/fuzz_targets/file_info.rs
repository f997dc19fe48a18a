//! Structure-aware FILE_INFO: a correct header (type 3, or type 5 under the tolerance)
//! around arbitrary body bytes, so every input reaches the FILE_INFO body parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmlet::wire::{DecodeError, Message, MsgType, Tolerance};
use swarmlet_fuzz::{TOLERANT, check_round_trip, check_stream_agrees, frame};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let (msg_type, tol) = if mode & 1 == 1 {
        (MsgType::Chunk, TOLERANT)
    } else {
        (MsgType::FileInfo, Tolerance::default())
    };
    let wire = frame(msg_type as u8, body);
    match Message::decode(&wire, tol) {
        Ok(m) => {
            assert!(matches!(m, Message::FileInfo(_)), "{m:?}");
            check_round_trip(&m, wire.len());
        }
        Err(e) => assert!(
            matches!(
                e,
                DecodeError::Body {
                    msg: MsgType::FileInfo,
                    ..
                }
            ),
            "framing was right, yet: {e}"
        ),
    }
    check_stream_agrees(&wire, tol);
});
