//! `bt::bencode::decode` on arbitrary bytes: never a panic; a decoded value spans the whole
//! input, and its canonical re-encoding decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmlet::bt::bencode::decode;

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok(node) => {
            assert_eq!(node.raw, data, "the root's raw span is the whole input");
            let owned = node.to_owned_value();
            let enc = owned.encode();
            let again = decode(&enc).expect("a canonical encoding decodes");
            assert_eq!(
                again.to_owned_value(),
                owned,
                "round trip changed the value"
            );
        }
        Err(e) => {
            assert!(e.offset <= data.len(), "error offset past the input: {e}");
            let _ = e.to_string();
        }
    }
});
