//! What to download: the pieces' digests in order, their lengths when known, and the
//! peers to start from. Built by a protocol front end, consumed by the engine, which
//! never learns where it came from.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

use crate::bitfield::Bitfield;
use crate::digest::{Digest, HashAlgo};
use crate::layout::Layout;
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

/// A peer the plan starts with, and what it has when the plan knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// Who it is.
    pub info: PeerInfo,
    /// Its pieces, when the protocol said so before connecting (the course's FILE_INFO,
    /// bvTorrent's masks); `None` when the connection will tell (BitTorrent's bitfield).
    pub has: Option<Bitfield>,
}

/// A whole download, as the engine sees it: what the pieces must hash to, how long they
/// are when that is known, and the peers to start from. A protocol front end builds it
/// (the course's INI files or FILE_INFO, a bvTorrent descriptor, a .torrent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// What logs and messages call the download (a file name, a torrent's name).
    pub name: String,
    /// The hash algorithm of every digest.
    pub algo: HashAlgo,
    /// Per piece, in file order, what its content hashes to.
    pub digests: Vec<Digest>,
    /// Piece lengths and file offsets, when the metadata gives them; `None` for the
    /// course, whose FILE_INFO carries no sizes (pieces are then bounded by the
    /// protocol's own chunk limit).
    pub layout: Option<Layout>,
    /// The peers known at the start; more may join through the live swarm.
    pub peers: Vec<PeerSpec>,
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
    /// The digests are not all of one algorithm.
    #[error("piece {index} has a {found} digest where the others are {expected}")]
    MixedAlgorithms {
        /// The first odd piece.
        index: usize,
        /// The first piece's algorithm.
        expected: HashAlgo,
        /// Its algorithm.
        found: HashAlgo,
    },
    /// The layout has another number of pieces than there are digests.
    #[error("the layout has {pieces} pieces for {digests} digests")]
    LayoutMismatch {
        /// Pieces in the layout.
        pieces: usize,
        /// Digests given.
        digests: usize,
    },
    /// A peer's piece list is not as long as the plan.
    #[error("peer {peer} lists {len} pieces of {pieces}")]
    HasMismatch {
        /// The peer's position.
        peer: usize,
        /// Length of its list.
        len: usize,
        /// Pieces in the plan.
        pieces: usize,
    },
}

impl Plan {
    /// A plan of `digests` (one algorithm, at least one piece), with `layout` if known
    /// and no peers yet.
    pub fn new(
        name: impl Into<String>,
        digests: Vec<Digest>,
        layout: Option<Layout>,
    ) -> Result<Plan, PlanError> {
        let first = digests.first().ok_or(PlanError::NoChunks)?.algo();
        if let Some((index, d)) = digests.iter().enumerate().find(|(_, d)| d.algo() != first) {
            return Err(PlanError::MixedAlgorithms {
                index,
                expected: first,
                found: d.algo(),
            });
        }
        if let Some(l) = &layout
            && l.piece_count() != digests.len()
        {
            return Err(PlanError::LayoutMismatch {
                pieces: l.piece_count(),
                digests: digests.len(),
            });
        }
        Ok(Plan {
            name: name.into(),
            algo: first,
            digests,
            layout,
            peers: Vec::new(),
        })
    }

    /// Adds the peers of a source table: `sources[i]` lists the peers (indexes into
    /// `peers`) that have piece `i`.
    pub fn with_sources(mut self, peers: Vec<PeerInfo>, sources: &[Vec<PeerId>]) -> Plan {
        let n = self.digests.len();
        let mut has: Vec<Bitfield> = peers.iter().map(|_| Bitfield::new(n)).collect();
        for (i, holders) in sources.iter().enumerate().take(n) {
            for &p in holders {
                if let Some(b) = has.get_mut(p) {
                    b.set(i);
                }
            }
        }
        self.peers = peers
            .into_iter()
            .zip(has)
            .map(|(info, has)| PeerSpec {
                info,
                has: Some(has),
            })
            .collect();
        self
    }

    /// Checks the peers' piece lists against the plan.
    pub fn check(&self) -> Result<(), PlanError> {
        for (peer, p) in self.peers.iter().enumerate() {
            if let Some(h) = &p.has
                && h.len() != self.digests.len()
            {
                return Err(PlanError::HasMismatch {
                    peer,
                    len: h.len(),
                    pieces: self.digests.len(),
                });
            }
        }
        Ok(())
    }

    /// Number of pieces.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether the plan has no pieces (never true of a plan made by [`Plan::new`]).
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Piece `i`'s length, when the layout is known.
    pub fn piece_len(&self, i: usize) -> Option<u64> {
        self.layout.as_ref().map(|l| l.piece_len(i))
    }
}

/// Most distinct peers one download talks to. The engine runs one thread, one connection
/// and [`Options::buffers_per_peer`](crate::download::Options) piece buffers per peer, and
/// the peer list comes from the network (FILE_INFO, a tracker, PEX), where 65,535 chunks
/// may each name a different address: without a cap a hostile tracker makes a download
/// start thousands of threads and connections. The course has two peers; 32 leaves room
/// for a classroom, and is about what BitTorrent clients keep connected per torrent
/// (libtorrent's default is 50 per torrent over all torrents' 200).
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
