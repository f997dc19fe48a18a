//! The download engine: protocol-agnostic, synchronous, one thread per peer.
//!
//! Threads and channels (see `docs/ARCHITECTURE.md` for the picture):
//! - the **coordinator** (the caller's thread, [`coordinator`]) owns the schedule: which
//!   piece is pending, in flight, done or failed, and which peers are alive and what they
//!   have. It is the only writer of that state, so no locks are needed. It reads events
//!   from the workers and verifiers, and from the **live swarm** ([`swarm`]) when the
//!   protocol has one (peers joining, changing what they have, leaving);
//! - one **worker** per peer ([`worker`]) owns that peer's single connection. It asks the
//!   coordinator for work (`Idle`), fetches the piece into a pooled buffer and hands the
//!   buffer to the verifiers, then asks again at once: the socket thread never hashes or
//!   writes;
//! - **verifiers** hash each piece with the plan's algorithm and write it through the
//!   [`PieceStore`] at every position with that content, then return the buffer to the
//!   pool and report to the coordinator.
//!
//! **Endgame**: when a worker is idle and no pending piece is left for it, it may fetch a
//! second copy of a piece in flight on another peer (see [`MAX_FETCHES_PER_PIECE`]); the
//! first copy that verifies wins (a per-piece flag claimed in the verifier), the other is
//! dropped. When every piece is done or failed the coordinator aborts the connections
//! still busy ([`PieceSource::abort_handle`]), so a stuck peer cannot delay the end.
//!
//! A protocol plugs in through [`Connector`] and [`PieceSource`] ([`source`]): the course
//! protocol's implementation is in `crate::course::client`, bvTorrent's in `crate::bv`,
//! BitTorrent's in `crate::bt`.

mod coordinator;
pub mod plan;
pub mod report;
pub mod source;
pub mod swarm;
mod worker;

use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use crate::storage::PieceStore;
pub use coordinator::MAX_PEER_RECORDS;
pub use plan::{PeerId, PeerInfo, PeerSpec, Plan, PlanError};
pub use report::{DownloadError, PeerFate, PeerReport, PieceFailure, Report, Why};
pub use source::{
    AbortHandle, Connected, Connector, FetchCause, FetchError, PieceRequest, PieceSource,
    ProtocolCause,
};
pub use swarm::{SwarmEvent, SwarmReceiver, SwarmSender};

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
/// while its bytes are still in memory: Charlie assembles the final file with them, a
/// bvTorrent client updates its mask, a BitTorrent peer announces HAVE.
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

/// What the engine's threads share, read-only, for the length of a download.
struct Ctx<'e> {
    store: &'e dyn PieceStore,
    connector: &'e dyn Connector,
    opts: &'e Options,
    /// Positions of each piece, by piece id.
    indexes: &'e PieceIndexes,
    on_verified: Option<&'e dyn Verified>,
    /// Per piece: a copy of it has verified. Swapped by the verifiers, so exactly one copy
    /// of each piece is written, reported and counted even when endgame fetched two.
    claimed: &'e [AtomicBool],
    /// Set by the coordinator once the download is over, before it aborts the connections
    /// still busy: a worker whose fetch then fails exits without reporting a failure.
    finished: &'e AtomicBool,
}

/// Downloads every piece of `plan` into `store`, skipping pieces already there and
/// verified. Returns when every piece is stored, or when some cannot be had.
pub fn download(
    plan: &Plan,
    store: &dyn PieceStore,
    connector: &dyn Connector,
    opts: &Options,
    progress: &ProgressBar,
) -> Result<Report, DownloadError> {
    download_with(plan, store, connector, opts, progress, Extras::default())
}

/// [`download`], with a verified hook and a live swarm.
pub fn download_with(
    plan: &Plan,
    store: &dyn PieceStore,
    connector: &dyn Connector,
    opts: &Options,
    progress: &ProgressBar,
    extras: Extras<'_>,
) -> Result<Report, DownloadError> {
    let start = Instant::now();
    plan.check()?;
    let have = store
        .recheck(&plan.digests)
        .map_err(|source| DownloadError::Resume {
            dir: store.location(),
            source,
        })?;
    let mut coord = coordinator::Coordinator::new(plan, &have, extras.swarm.is_some(), opts);
    let resumed = coord.done_positions();
    if resumed > 0 {
        log::info!("resuming: {resumed} chunks already on disk and verified");
    }
    progress.set_length(plan.len() as u64);
    progress.set_position(resumed as u64);

    // The verifiers' read-only view of which positions each piece fills: two flat
    // vectors rather than a clone of each piece's list, so that a 65,535-chunk plan
    // costs two allocations here, not 65,535.
    let indexes = PieceIndexes::new(coord.positions());
    let claimed: Vec<AtomicBool> = (0..indexes.len()).map(|_| AtomicBool::new(false)).collect();
    let finished = AtomicBool::new(false);
    let ctx = Ctx {
        store,
        connector,
        opts,
        indexes: &indexes,
        on_verified: extras.on_verified,
        claimed: &claimed,
        finished: &finished,
    };
    let swarm = extras.swarm;
    let report = thread::scope(|s| coordinator::run(&mut coord, s, &ctx, swarm, progress));
    report.map(|mut r| {
        r.resumed = resumed;
        r.elapsed = start.elapsed();
        r
    })
}

/// The positions of every piece, flattened: piece `p`'s are `flat[start[p]..start[p + 1]]`.
struct PieceIndexes {
    start: Vec<usize>,
    flat: Vec<usize>,
}

impl PieceIndexes {
    fn new<'a>(pieces: impl Iterator<Item = &'a [usize]>) -> Self {
        let mut start = Vec::new();
        let mut flat = Vec::new();
        for p in pieces {
            start.push(flat.len());
            flat.extend_from_slice(p);
        }
        start.push(flat.len());
        PieceIndexes { start, flat }
    }

    fn len(&self) -> usize {
        self.start.len() - 1
    }

    fn of(&self, piece: usize) -> &[usize] {
        &self.flat[self.start[piece]..self.start[piece + 1]]
    }
}

#[cfg(test)]
mod tests;
