//! What the HTTP API may see of and ask from a running peer: a snapshot of every
//! torrent (and of one torrent's peers and pieces), adding and removing torrents. The
//! session implements [`Control`]; the API knows nothing else of it, so the two can be
//! read (and tested) apart.

use std::net::SocketAddr;

use crate::bitfield::Bitfield;
use crate::bt::metainfo::InfoHash;

/// Where a torrent is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorrentState {
    /// Fetching the metainfo from the swarm (a magnet link): size and pieces unknown.
    Metadata,
    /// Rechecking data on disk that no resume record vouches for.
    Checking,
    /// Downloading (and uploading what it has).
    Downloading,
    /// Complete: uploading only.
    Seeding,
    /// Stopped by an error that needs a person (disk full, files unreadable).
    Error,
}

impl TorrentState {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            TorrentState::Metadata => "metadata",
            TorrentState::Checking => "checking",
            TorrentState::Downloading => "downloading",
            TorrentState::Seeding => "seeding",
            TorrentState::Error => "error",
        }
    }
}

/// One torrent, as `GET /api/torrents` lists it.
#[derive(Debug, Clone)]
pub struct TorrentStatus {
    /// The swarm's name.
    pub info_hash: InfoHash,
    /// The torrent's `name` (the magnet's `dn`, or the infohash, before the metadata).
    pub name: String,
    /// Total bytes (0 while the metadata is unknown).
    pub size: u64,
    /// Verified bytes.
    pub have_bytes: u64,
    /// Verified pieces and the piece count (0 while the metadata is unknown).
    pub pieces_have: usize,
    /// Piece count.
    pub pieces_total: usize,
    /// Where it is in its life.
    pub state: TorrentState,
    /// Why it stopped, when `state` is [`TorrentState::Error`].
    pub error: Option<String>,
    /// Bytes per second received, averaged over the last few seconds.
    pub download_rate: u64,
    /// Bytes per second sent, averaged over the last few seconds.
    pub upload_rate: u64,
    /// Connected peers.
    pub peers: usize,
    /// Bytes sent since the torrent was added (across restarts when recorded).
    pub uploaded: u64,
    /// Bytes fetched and verified since the torrent was added.
    pub downloaded: u64,
}

/// One connected peer of a torrent.
#[derive(Debug, Clone)]
pub struct PeerStatus {
    /// Its address.
    pub addr: SocketAddr,
    /// Client name: BEP 10's `v`, else decoded from the handshake's peer id.
    pub client: String,
    /// Who dialled.
    pub incoming: bool,
    /// Bytes per second from it.
    pub download_rate: u64,
    /// Bytes per second to it.
    pub upload_rate: u64,
    /// Whether it chokes us / we choke it.
    pub peer_choking: bool,
    /// Whether we choke it.
    pub am_choking: bool,
    /// The pieces it has said it has.
    pub has: Bitfield,
}

/// One torrent in detail, as `GET /api/torrents/<infohash>` shows it.
#[derive(Debug, Clone)]
pub struct TorrentDetail {
    /// The summary.
    pub status: TorrentStatus,
    /// Connected peers.
    pub peers: Vec<PeerStatus>,
    /// Verified pieces.
    pub have: Bitfield,
    /// Pieces being fetched now.
    pub in_flight: Bitfield,
    /// Peers known (connected or not) through trackers and PEX.
    pub known_peers: usize,
}

/// What the caller of [`Control::add`] gives.
#[derive(Debug, Clone)]
pub enum AddSource {
    /// A .torrent file's bytes.
    Torrent(Vec<u8>),
    /// A `magnet:?xt=urn:btih:...` link.
    Magnet(String),
}

/// Why [`Control::add`] or [`Control::remove`] refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The body is not a valid .torrent or magnet link.
    #[error("not a valid torrent: {0}")]
    Invalid(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The session already has this torrent.
    #[error("torrent {0} is already added")]
    Duplicate(InfoHash),
    /// No torrent with this infohash.
    #[error("no torrent {0}")]
    NotFound(InfoHash),
    /// The session is at its torrent cap.
    #[error("too many torrents (at most {0})")]
    TooMany(usize),
    /// Writing the torrent into `DIR/torrents/` failed.
    #[error("cannot store the torrent: {0}")]
    Io(#[from] std::io::Error),
}

/// The session as the API sees it. Every call is short (a snapshot under a lock), so
/// an API thread never waits on the network.
pub trait Control: Send + Sync {
    /// Every torrent, in a stable order (by name, then infohash).
    fn torrents(&self) -> Vec<TorrentStatus>;
    /// One torrent in detail.
    fn torrent(&self, info_hash: &InfoHash) -> Option<TorrentDetail>;
    /// Adds a torrent (stored under `DIR/torrents/`, so it survives a restart).
    fn add(&self, source: AddSource) -> Result<InfoHash, ControlError>;
    /// Leaves a torrent's swarm; its data stays on disk.
    fn remove(&self, info_hash: &InfoHash) -> Result<(), ControlError>;
}
