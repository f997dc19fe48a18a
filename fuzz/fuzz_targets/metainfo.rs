//! `bt::metainfo::Metainfo::parse` on arbitrary bytes: never a panic; a parsed torrent
//! yields a layout whose pieces match its hashes, and a magnet link.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmlet::bt::metainfo::Metainfo;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Metainfo::parse(data) else { return };
    let _ = m.magnet();
    if let Ok(layout) = m.layout() {
        assert_eq!(layout.piece_count(), m.pieces.len());
        assert_eq!(layout.total_len(), m.total_length());
    }
});
