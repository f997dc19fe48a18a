//! Chunk hashes read from text: hex in INI files and chunk file names in a directory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmlet::hash::ChunkHash;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    match ChunkHash::from_hex(&s) {
        Ok(h) => assert_eq!(h.to_hex(), s.to_ascii_lowercase()),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Some(h) = ChunkHash::from_file_name(&s) {
        // Only the canonical name is accepted, so it is what we would write.
        assert_eq!(h.file_name(), s);
    }
});
