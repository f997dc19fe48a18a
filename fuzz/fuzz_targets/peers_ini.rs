//! `PeersConfig::parse` on arbitrary text; whatever it accepts must survive
//! `to_text` (what `save` writes) and parse back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmlet::config::PeersConfig;

fuzz_target!(|data: &[u8]| {
    // `load` reads the file with `read_to_string`, so the parser only ever sees UTF-8.
    let text = String::from_utf8_lossy(data);
    match PeersConfig::parse(&text, "config/peers.ini") {
        Ok(c) => {
            let saved = c.to_text();
            let again = PeersConfig::parse(&saved, "config/peers.ini")
                .unwrap_or_else(|e| panic!("saved text does not parse: {e}\n{saved}"));
            assert_eq!(
                again, c,
                "save/load changed the config; saved text:\n{saved}"
            );
        }
        Err(e) => assert!(e.to_string().starts_with("config/peers.ini: "), "{e}"),
    }
});
