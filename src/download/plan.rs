//! What to download: the file's chunks in order and which peers have each. Built by a
//! protocol front end (the course's INI files or FILE_INFO; later a .torrent), consumed by
//! the engine, which never learns where it came from.

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

/// Collects peers by address, giving each a stable [`PeerId`].
#[derive(Debug, Default)]
pub struct PeerTable {
    peers: Vec<PeerInfo>,
}

impl PeerTable {
    /// The id of the peer at `addr`, adding it with `label` if new.
    pub fn id(&mut self, addr: SocketAddr, label: impl FnOnce() -> String) -> PeerId {
        if let Some(i) = self.peers.iter().position(|p| p.addr == addr) {
            return i;
        }
        self.peers.push(PeerInfo {
            addr,
            label: label(),
        });
        self.peers.len() - 1
    }
    /// The peers collected.
    pub fn into_peers(self) -> Vec<PeerInfo> {
        self.peers
    }
}
