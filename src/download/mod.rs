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
mod msg;
pub mod options;
pub mod plan;
pub mod report;
mod run;
pub mod source;
pub mod swarm;
mod worker;

use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::Instant;

use indicatif::ProgressBar;

use crate::storage::PieceStore;
pub use coordinator::MAX_PEER_RECORDS;
use msg::{Ctx, PieceIndexes};
pub use options::{Extras, MAX_FETCHES_PER_PIECE, Options, Verified};
pub use plan::{PeerId, PeerInfo, PeerSpec, Plan, PlanError};
pub use report::{DownloadError, PeerFate, PeerReport, PieceFailure, Report, Why};
pub use source::{
    AbortHandle, Connected, Connector, FetchCause, FetchError, PieceRequest, PieceSource,
    ProtocolCause,
};
pub use swarm::{SwarmEvent, SwarmReceiver, SwarmSender};

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
    let report = thread::scope(|s| run::run(&mut coord, s, &ctx, swarm, progress));
    report.map(|mut r| {
        r.resumed = resumed;
        r.elapsed = start.elapsed();
        r
    })
}

/// [`download_with`], with `beside` running on a thread of its own for as long as the
/// download runs: a protocol's swarm feeder (a tracker session, re-offered peers) or a
/// signal watcher. The flag it is given is set once the download is over, and it must
/// then return.
pub fn download_while(
    plan: &Plan,
    store: &dyn PieceStore,
    connector: &dyn Connector,
    opts: &Options,
    progress: &ProgressBar,
    extras: Extras<'_>,
    beside: impl FnOnce(&AtomicBool) + Send,
) -> Result<Report, DownloadError> {
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| beside(&done));
        let r = download_with(plan, store, connector, opts, progress, extras);
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    })
}

#[cfg(test)]
mod tests;
