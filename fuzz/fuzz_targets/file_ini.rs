//! `FileManifest::parse` on arbitrary text; whatever it accepts must survive
//! `to_text` (what `save` writes) and parse back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmlet::config::FileManifest;

fuzz_target!(|data: &[u8]| {
    // `load` reads the file with `read_to_string`, so the parser only ever sees UTF-8.
    let text = String::from_utf8_lossy(data);
    match FileManifest::parse(&text, "config/file.ini") {
        Ok(m) => {
            assert!(!m.filename.is_empty());
            assert!(m.chunks.iter().all(|c| !c.peers.is_empty()));
            let saved = m.to_text();
            let again = FileManifest::parse(&saved, "config/file.ini")
                .unwrap_or_else(|e| panic!("saved text does not parse: {e}\n{saved}"));
            assert_eq!(
                again, m,
                "save/load changed the manifest; saved text:\n{saved}"
            );
        }
        Err(e) => assert!(e.to_string().starts_with("config/file.ini: "), "{e}"),
    }
});
