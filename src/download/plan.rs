//! What to download: the file's chunks in order and which peers have each. Built by a
//! protocol front end (the course's INI files or FILE_INFO; later a .torrent), consumed by
//! the engine, which never learns where it came from.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

use crate::hash::ChunkHash;
use crate::root::FileNameError;

/// Index of a peer in [`Plan::peers`].
pub type PeerId = usize;

/// A peer the plan may download from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Where it listens.
    pub addr: SocketAddr,
    /// How logs and the summary name it (`alice`, or its address when unnamed).
    pub label: String,
}

impl fmt::Display for PeerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.label == self.addr.to_string() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{} ({})", self.label, self.addr)
        }
    }
}

/// A whole download: file name, chunks in file order, and their sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The file name, already checked safe (see [`crate::root::check_file_name`]).
    pub filename: String,
    /// Chunk hashes in file order.
    pub chunks: Vec<ChunkHash>,
    /// For each chunk, the peers that have it.
    pub sources: Vec<Vec<PeerId>>,
    /// Every peer named by some chunk.
    pub peers: Vec<PeerInfo>,
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The file name could escape the download directory, or is empty.
    #[error("refusing the file name: {0}")]
    UnsafeFilename(#[from] FileNameError),
    /// No chunks at all.
    #[error("the file has no chunks")]
    NoChunks,
}

/// Most distinct peers one download talks to. The engine runs one thread, one connection
/// and [`Options::buffers_per_peer`](crate::download::Options) chunk buffers per peer, and
/// the peer list comes from the network (FILE_INFO), where 65,535 chunks may each name a
/// different address: without a cap a hostile tracker makes Charlie start thousands of
/// threads and connections. The course has two peers; 32 leaves room for a classroom.
pub const MAX_PEERS: usize = 32;

/// Collects peers by address, giving each a stable [`PeerId`], up to [`MAX_PEERS`].
#[derive(Debug, Default)]
pub struct PeerTable {
    peers: Vec<PeerInfo>,
    /// Address → id, so that a FILE_INFO naming millions of (chunk, peer) pairs costs
    /// one hash lookup each rather than a scan of the table.
    index: HashMap<SocketAddr, PeerId>,
    /// Mentions of new addresses turned away because the table was full.
    refused: usize,
}

impl PeerTable {
    /// The id of the peer at `addr`, adding it with `label` if new; `None` if it is new
    /// and the table already holds [`MAX_PEERS`] peers.
    pub fn id(&mut self, addr: SocketAddr, label: impl FnOnce() -> String) -> Option<PeerId> {
        if let Some(&i) = self.index.get(&addr) {
            return Some(i);
        }
        if self.peers.len() >= MAX_PEERS {
            self.refused += 1;
            return None;
        }
        self.peers.push(PeerInfo {
            addr,
            label: label(),
        });
        self.index.insert(addr, self.peers.len() - 1);
        Some(self.peers.len() - 1)
    }
    /// The peers collected. Logs a warning if some were turned away.
    pub fn into_peers(self) -> Vec<PeerInfo> {
        if self.refused > 0 {
            log::warn!(
                "more than {MAX_PEERS} peers named: ignoring {} mentions of peers beyond the first {MAX_PEERS}",
                self.refused
            );
        }
        self.peers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_table_is_capped() {
        let mut t = PeerTable::default();
        let addr = |i: usize| SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16));
        for i in 0..MAX_PEERS {
            assert_eq!(t.id(addr(i), || i.to_string()), Some(i));
        }
        assert_eq!(t.id(addr(MAX_PEERS), String::new), None);
        // Known peers keep their ids once the table is full.
        assert_eq!(t.id(addr(3), String::new), Some(3));
        assert_eq!(t.into_peers().len(), MAX_PEERS);
    }
}
