//! Making a root for a first run: the `files/` and `chunks/<peer>/` folders and a
//! `config/peers.ini` with the course's default addresses, each only when missing, so
//! that the README's tour works from an empty directory.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use crate::config::{ConfigError, PeersConfig, TRACKER_SECTION};
use crate::root::{Root, display_path};

/// The course's tracker port (its peers.ini: tracker 8000, alice 8001, bob 8002).
pub const COURSE_TRACKER_PORT: u16 = 8000;
/// The course's first peer port; each further peer takes the next one.
pub const COURSE_FIRST_PEER_PORT: u16 = 8001;
/// The peers of the course's peers.ini, always written (other names follow them).
pub const COURSE_PEERS: [&str; 2] = ["alice", "bob"];
/// The downloader's chunk directory, made with the peers'.
const DOWNLOADER_DIR: &str = "charlie";

/// What [`init_root`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Made {
    /// A directory that was missing.
    Dir(PathBuf),
    /// `config/peers.ini`, with these entries.
    PeersIni(PeersConfig),
}

/// Why a root could not be made.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A directory could not be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// More peers than ports above the course's first peer port.
    #[error("too many peers ({0}) for one port each above {COURSE_FIRST_PEER_PORT}")]
    TooManyPeers(usize),
    /// peers.ini could not be written.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The course's peers.ini on 127.0.0.1: the tracker on 8000, alice on 8001, bob on 8002,
/// then every other name in `peers` on the following ports, in order.
pub fn course_defaults(peers: &[String]) -> Result<PeersConfig, InitError> {
    let mut names: Vec<&str> = COURSE_PEERS.to_vec();
    for p in peers {
        if !names.contains(&p.as_str()) {
            names.push(p);
        }
    }
    let mut entries = vec![(
        TRACKER_SECTION.to_string(),
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, COURSE_TRACKER_PORT),
    )];
    for (i, name) in names.iter().enumerate() {
        let port = u16::try_from(i)
            .ok()
            .and_then(|i| COURSE_FIRST_PEER_PORT.checked_add(i))
            .ok_or(InitError::TooManyPeers(names.len()))?;
        entries.push((
            name.to_string(),
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
        ));
    }
    Ok(PeersConfig::from_entries(entries))
}

/// Makes what is missing of a root: `files/`, `config/`, `chunks/alice`, `chunks/bob`,
/// `chunks/charlie` and `chunks/<peer>` for every name in `peers`, and, when there is
/// no `config/peers.ini`, one with [`course_defaults`]. Never changes what exists.
/// Returns what it made, in that order, for the caller to say so.
pub fn init_root(root: &Root, peers: &[String]) -> Result<Vec<Made>, InitError> {
    let mut made = Vec::new();
    let mut dirs = vec![root.files_dir(), root.config_dir()];
    for name in COURSE_PEERS.iter().copied().chain([DOWNLOADER_DIR]) {
        dirs.push(root.chunks_dir(name));
    }
    dirs.extend(peers.iter().map(|p| root.chunks_dir(p)));
    for dir in dirs {
        if dir.is_dir() {
            continue;
        }
        std::fs::create_dir_all(&dir).map_err(|source| InitError::Dir {
            path: display_path(&dir),
            source,
        })?;
        if !made.contains(&Made::Dir(dir.clone())) {
            made.push(Made::Dir(dir));
        }
    }
    let ini = root.peers_ini();
    if !ini.exists() {
        let config = course_defaults(peers)?;
        config.save(&ini)?;
        made.push(Made::PeersIni(config));
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_root_gets_the_course_defaults_and_folders_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let made = init_root(&root, &["alice".into(), "bob".into(), "carol".into()]).unwrap();
        let config = PeersConfig::load(&root.peers_ini()).unwrap();
        let addr = |n: &str| config.get(n).unwrap().port();
        assert_eq!(
            [addr("tracker"), addr("alice"), addr("bob"), addr("carol")],
            [8000, 8001, 8002, 8003]
        );
        assert!(made.contains(&Made::PeersIni(config)));
        for d in [
            "files",
            "chunks/alice",
            "chunks/bob",
            "chunks/charlie",
            "chunks/carol",
        ] {
            assert!(dir.path().join(d).is_dir(), "{d}");
        }
        // A second run finds everything there and changes nothing.
        std::fs::write(
            root.peers_ini(),
            "[tracker]\nip_address = 127.0.0.1\nport_number = 9\n",
        )
        .unwrap();
        assert_eq!(init_root(&root, &["alice".into()]).unwrap(), vec![]);
        assert!(
            std::fs::read_to_string(root.peers_ini())
                .unwrap()
                .contains("= 9")
        );
    }
}
