//! How a download is tuned and what it may be given besides its plan.

use std::thread;
use std::time::Duration;

use super::swarm::SwarmReceiver;

/// Most fetches of one piece running at once: the first fetch and one endgame duplicate.
///
/// Design decision. Endgame starts for a worker as soon as it is idle and no *pending*
/// piece is left that it can serve: from then on it would only sit idle, so a second copy
/// of a piece in flight elsewhere costs nothing but one piece of bandwidth, and it takes
/// the download's tail off the slowest peer. Each worker waits for its reply before it
/// asks again (stop-and-wait), so a duplicate is never queued behind other requests and
/// one duplicate is enough to route around one slow or dead peer; a third copy would
/// only spend a third peer's bandwidth on the same piece. Pieces in flight longest are
/// duplicated first. Since a peer only reaches endgame when none of its pending pieces is
/// left, the duplicates are bounded by the pieces in flight then (at most a few per
/// peer), not by the size of the file.
pub const MAX_FETCHES_PER_PIECE: usize = 2;

/// Told of every piece as soon as it is verified and stored, on the verifier's thread,
/// while its bytes are still in memory: a bvTorrent client updates its mask, a
/// BitTorrent peer announces HAVE.
pub trait Verified: Sync {
    /// `data` hashes to the digest of positions `indexes` and is stored at each. Must not
    /// block for long: a verifier waits for it.
    fn verified(&self, indexes: &[usize], data: &[u8]);
}

/// Tuning of the engine. Each default is a design decision; see its comment.
#[derive(Debug, Clone)]
pub struct Options {
    /// Piece buffers per peer. Two let a worker fetch the next piece while its last one is
    /// verified and written. The verifiers are the slower stage (see `verifiers`), so a
    /// third buffer per peer would only wait in their queue: on the benchmark 2, 3 and 4
    /// per peer were within the machine's noise of each other, so the least memory wins.
    /// Peak memory is about `peers × buffers_per_peer × piece size`. An endgame duplicate
    /// takes a buffer from the same pool, so endgame adds no memory.
    pub buffers_per_peer: usize,
    /// Verifier threads (hashing, the store's write, and the hook). This is the heaviest
    /// stage per byte, so one verifier per peer, capped by the cores: more threads than
    /// cores only add switches.
    pub verifiers: usize,
    /// Wait before the one reconnection allowed after a broken connection: long enough
    /// for a restarting peer, short enough not to stall the download.
    pub reconnect_backoff: Duration,
    /// Consecutive bad pieces (wrong hash, error replies) after which a peer is dropped:
    /// one bad piece may be a corrupt file on its disk, three in a row is a bad peer.
    pub max_bad_chunks: u32,
    /// Shuffles the rarest-first order among pieces equally rare (0: file order). Peers
    /// of one swarm that all fetch in file order would all want the same piece at once
    /// and have nothing to trade; the course's two peers keep file order, which its
    /// tests and logs read best.
    pub tie_seed: u64,
    /// With a live swarm, how long a dropped peer is left alone before the swarm may
    /// bring it back: a peer that refused us may have been restarting, but one that
    /// cheated should not be asked again at once.
    pub rejoin_after: Duration,
    /// Whether a peer dropped for bad pieces ([`Options::max_bad_chunks`] in a row) stays
    /// out for the rest of the download instead of rejoining after
    /// [`Options::rejoin_after`]. BitTorrent bans: its pieces are checked against the
    /// .torrent, so bad ones are lies, not a file that changed on a course peer's disk.
    pub ban_liars: bool,
    /// Most peers fetched from at once, each with its worker thread: the plan's
    /// [`MAX_PEERS`](super::plan::MAX_PEERS) by default (what the course's FILE_INFO may
    /// name); a live swarm may allow more (BitTorrent's `--max-peers`). Further peers
    /// wait for a slot.
    pub max_live_peers: usize,
    /// With a live swarm, give up when nothing has been verified and nothing is in
    /// flight for this long (`None`: wait for the protocol to close the swarm).
    pub stall_timeout: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            buffers_per_peer: 2,
            verifiers: thread::available_parallelism().map_or(1, |n| n.get()),
            reconnect_backoff: Duration::from_millis(200),
            max_bad_chunks: 3,
            tie_seed: 0,
            rejoin_after: Duration::from_secs(30),
            ban_liars: false,
            max_live_peers: super::plan::MAX_PEERS,
            stall_timeout: None,
        }
    }
}

impl Options {
    /// A seed for [`Options::tie_seed`] that differs from run to run.
    pub fn random_seed() -> u64 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (t.as_nanos() as u64 ^ u64::from(std::process::id())) | 1
    }
}

/// What a download may be given besides its plan: the verified hook and a live swarm.
#[derive(Default)]
pub struct Extras<'a> {
    /// Told of each piece fetched and verified in this run (not of pieces found on disk).
    pub on_verified: Option<&'a dyn Verified>,
    /// Where peers joining, changing and leaving come from while the download runs.
    pub swarm: Option<SwarmReceiver>,
}
