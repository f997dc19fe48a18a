//! Property tests of the INI readers (`config/peers.ini`, `config/file.ini`): arbitrary
//! input never panics, and what `save` writes `load` reads back unchanged.

use std::net::{Ipv4Addr, SocketAddrV4};

use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use swarmlet::config::{FileManifest, ManifestChunk, PeersConfig};
use swarmlet::hash::ChunkHash;

/// One line of INI-looking text built from the files' own vocabulary, so that arbitrary
/// input also reaches the value checks and not only the syntax errors.
fn ini_line() -> impl Strategy<Value = String> {
    let section = prop_oneof![
        Just("tracker".to_string()),
        Just("alice".to_string()),
        Just("description".to_string()),
        Just("chunks".to_string()),
        Just("chunks_peers".to_string()),
        Just("default".to_string()),
        "[ -~]{0,12}",
    ];
    let key = prop_oneof![
        Just("ip_address".to_string()),
        Just("port_number".to_string()),
        Just("filename".to_string()),
        Just("chunks_count".to_string()),
        "[0-9]{1,3}",
        "[ -~]{0,8}",
    ];
    let value = prop_oneof![
        Just("127.0.0.1".to_string()),
        "[0-9]{1,6}",
        "[0-9a-fA-F]{38,42}",
        "[a-z, ]{0,20}",
        "\\PC{0,20}",
    ];
    prop_oneof![
        section.prop_map(|s| format!("[{s}]")),
        (key, "[=:]| = ", value).prop_map(|(k, d, v)| format!("{k}{d}{v}")),
        "[#;]\\PC{0,10}",
        Just(String::new()),
        "\\PC{0,30}",
    ]
}

fn ini_text() -> impl Strategy<Value = String> {
    (
        vec(ini_line(), 0..24),
        prop_oneof![Just("\n"), Just("\r\n")],
    )
        .prop_map(|(lines, eol)| lines.join(eol))
}

/// Peer names as they appear in peers.ini sections and file.ini's peer lists. Besides
/// ordinary names: the INI comment characters (legal in a name, and in Python's
/// configparser), and `default`, which the INI library once treated specially.
fn peer_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9_][A-Za-z0-9_.#;=:-]{0,15}",
        1 => Just("default".to_string()),
        1 => Just("tracker".to_string()),
        1 => Just("alice".to_string()),
    ]
}

fn addr() -> impl Strategy<Value = SocketAddrV4> {
    (any::<u32>(), any::<u16>()).prop_map(|(ip, port)| SocketAddrV4::new(Ipv4Addr::from(ip), port))
}

fn peers_config() -> impl Strategy<Value = PeersConfig> {
    // Section names are unique in an INI file; order is kept.
    vec((peer_name(), addr()), 0..8).prop_map(|mut entries| {
        let mut seen = std::collections::HashSet::new();
        entries.retain(|(n, _)| seen.insert(n.clone()));
        PeersConfig::from_entries(entries)
    })
}

/// File names as the course's scripts could write them: any printable text without
/// leading or trailing blanks (INI values are trimmed), `#` and `;` included.
fn file_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_.-]{1,20}",
        "[A-Za-z0-9_.#;=:\\[\\]-][ -~]{0,30}[A-Za-z0-9_.#;=:\\[\\]-]",
        "[^\\s\\pC][^\\pC]{0,20}[^\\s\\pC]",
    ]
}

fn manifest() -> impl Strategy<Value = FileManifest> {
    let chunk =
        (any::<[u8; 20]>(), btree_set(peer_name(), 1..4)).prop_map(|(h, peers)| ManifestChunk {
            hash: ChunkHash::from_bytes(h),
            peers: peers.into_iter().collect(),
        });
    (file_name(), vec(chunk, 0..24))
        .prop_map(|(filename, chunks)| FileManifest { filename, chunks })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn peers_parse_never_panics(text in prop_oneof![ini_text(), any::<String>()]) {
        if let Ok(c) = PeersConfig::parse(&text, "peers.ini") {
            // Whatever is accepted is stable through save and load.
            prop_assert_eq!(PeersConfig::parse(&c.to_text(), "peers.ini").unwrap(), c);
        }
    }

    #[test]
    fn manifest_parse_never_panics(text in prop_oneof![ini_text(), any::<String>()]) {
        if let Ok(m) = FileManifest::parse(&text, "file.ini") {
            prop_assert_eq!(FileManifest::parse(&m.to_text(), "file.ini").unwrap(), m);
        }
    }

    /// Arbitrary bytes on disk, UTF-8 or not: an error, never a panic.
    #[test]
    fn load_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..512)) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.ini");
        std::fs::write(&p, &bytes).unwrap();
        let _ = PeersConfig::load(&p);
        let _ = FileManifest::load(&p);
    }

    #[test]
    fn peers_save_load_is_identity(c in peers_config()) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("peers.ini");
        c.save(&p).unwrap();
        prop_assert_eq!(PeersConfig::load(&p).unwrap(), c);
    }

    #[test]
    fn manifest_save_load_is_identity(m in manifest()) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("file.ini");
        m.save(&p).unwrap();
        prop_assert_eq!(FileManifest::load(&p).unwrap(), m);
    }
}
