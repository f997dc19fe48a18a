//! The download engine: protocol-agnostic, synchronous, one thread per peer.
//!
//! Threads and channels (see `docs/ARCHITECTURE.md` for the picture):
//! - the **coordinator** (the caller's thread) owns the schedule: which chunk is pending,
//!   in flight, done or failed, and which peers are alive. It is the only writer of that
//!   state, so no locks are needed;
//! - one **worker** per peer owns that peer's single connection (the course asks for one
//!   connection per peer for the whole download). It asks the coordinator for work
//!   (`Event::Idle`), fetches the chunk into a pooled buffer and hands the buffer to the
//!   verifiers, then asks again at once: the socket thread never hashes or writes;
//! - **verifiers** hash each chunk and write it atomically to the store, then return the
//!   buffer to the pool and report to the coordinator.
//!
//! **Endgame**: when a worker is idle and no pending piece is left for it, it may fetch a
//! second copy of a piece in flight on another peer (see [`MAX_FETCHES_PER_PIECE`]); the
//! first copy that verifies wins (a per-piece flag claimed in the verifier), the other is
//! dropped. When every piece is done or failed the coordinator aborts the connections
//! still busy ([`ChunkSource::abort_handle`]), so a stuck peer cannot delay the end.
//!
//! A protocol plugs in through [`Connector`] and [`ChunkSource`]: the course protocol's
//! implementation is in `crate::course::client`.

pub mod assemble;
pub mod plan;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use indicatif::ProgressBar;

use crate::hash::{ChunkHash, ChunkHasher};
use crate::store::ChunkStore;
pub use plan::{PeerId, PeerInfo, Plan, PlanError};

/// Opens a connection to a peer, in whatever protocol it speaks.
pub trait Connector: Send + Sync {
    /// Connects (with the protocol's own timeouts).
    fn connect(&self, peer: &PeerInfo) -> Result<Box<dyn ChunkSource>, FetchError>;
}

/// One open connection to a peer that can fetch chunks by hash, one at a time.
pub trait ChunkSource: Send {
    /// Fetches the chunk named `hash` into `buf`, which holds exactly the content on
    /// success. `buf` comes from the engine's pool and is reused from chunk to chunk:
    /// overwrite it rather than clear it, so that its memory is not zeroed again. The
    /// content is *not* verified here: the engine hashes it off the socket thread.
    fn fetch(&mut self, hash: &ChunkHash, buf: &mut Vec<u8>) -> Result<(), FetchError>;

    /// A handle that aborts this connection from another thread: a `fetch` blocked on it
    /// returns an error soon after [`AbortHandle::abort`], and any later one fails at
    /// once. The engine uses it to end a download without waiting for a losing endgame
    /// fetch from a stuck peer to time out. `None` (the default) means the connection
    /// cannot be aborted: the end of the download then waits for the fetch to return.
    fn abort_handle(&self) -> Option<Box<dyn AbortHandle>> {
        None
    }
}

/// Aborts one connection from another thread (see [`ChunkSource::abort_handle`]).
pub trait AbortHandle: Send {
    /// Aborts the connection, if it is still open; harmless if it is already closed.
    fn abort(&self);
}

/// Most fetches of one piece running at once: the first fetch and one endgame duplicate.
///
/// Design decision. Endgame starts for a worker as soon as it is idle and no *pending*
/// piece is left that it can serve: from then on it would only sit idle, so a second copy
/// of a piece in flight elsewhere costs nothing but one chunk of bandwidth, and it takes
/// the download's tail off the slowest peer. Each worker waits for its reply before it
/// asks again (stop-and-wait), so a duplicate is never queued behind other requests and
/// one duplicate is enough to route around one slow or dead peer; a third copy would
/// only spend a third peer's bandwidth on the same chunk. Pieces in flight longest are
/// duplicated first. Since a peer only reaches endgame when none of its pending pieces is
/// left, the duplicates are bounded by the pieces in flight then (at most a few per
/// peer), not by the size of the file.
pub const MAX_FETCHES_PER_PIECE: usize = 2;

/// Told of every chunk as soon as it is verified and stored, on the verifier's thread,
/// while its bytes are still in memory: Charlie assembles the final file with them
/// ([`assemble::Assembler`]) instead of reading every chunk back after the download.
pub trait Verified: Sync {
    /// `data` hashes to `hash` and is on disk; `indexes` are the file positions with
    /// this content. Must not block for long: a verifier waits for it.
    fn verified(&self, hash: &ChunkHash, indexes: &[usize], data: &[u8]);
}

/// A protocol's own error, kept as a value (its source chain intact) rather than text.
pub type ProtocolCause = Box<dyn std::error::Error + Send + Sync>;

/// Why one fetch failed. The engine branches on the variant (see [`FetchError::cause`]);
/// the payloads are for people.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The peer says it does not have the chunk; the connection is still good.
    #[error("chunk not found")]
    NotFound,
    /// The peer answered with an error instead of the chunk; the connection is still good.
    #[error("peer answered {0}")]
    Refused(ProtocolCause),
    /// The peer sent another piece than the one asked for; the stream is out of step.
    #[error("protocol error: asked for chunk {asked}, got a CHUNK labelled {got}")]
    WrongPiece {
        /// What was asked for.
        asked: crate::digest::Digest,
        /// What came.
        got: crate::digest::Digest,
    },
    /// The piece ended before its known length.
    #[error("short read: expected {expected} bytes, got {got}")]
    ShortRead {
        /// The piece's length.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// The reply broke the protocol; the connection is out of step and must be replaced.
    #[error("protocol error: {0}")]
    Protocol(ProtocolCause),
    /// I/O failure, timeout or closed connection.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What kind of failure a [`FetchError`] is, for policy (retry, replace, drop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchCause {
    /// The peer lacks the piece.
    NotFound,
    /// The peer refused the request.
    Refused,
    /// Another piece came.
    WrongPiece,
    /// Fewer bytes than the piece's length.
    ShortRead,
    /// A malformed reply.
    Protocol,
    /// No reply, or not fast enough.
    TimedOut,
    /// The peer refused the connection.
    ConnectionRefused,
    /// The connection was reset, aborted or closed early.
    Reset,
    /// Any other I/O failure.
    Io,
}

impl FetchError {
    /// The kind of failure.
    pub fn cause(&self) -> FetchCause {
        use io::ErrorKind as K;
        match self {
            Self::NotFound => FetchCause::NotFound,
            Self::Refused(_) => FetchCause::Refused,
            Self::WrongPiece { .. } => FetchCause::WrongPiece,
            Self::ShortRead { .. } => FetchCause::ShortRead,
            Self::Protocol(_) => FetchCause::Protocol,
            Self::Io(e) => match e.kind() {
                K::TimedOut | K::WouldBlock => FetchCause::TimedOut,
                K::ConnectionRefused => FetchCause::ConnectionRefused,
                K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof | K::BrokenPipe => {
                    FetchCause::Reset
                }
                _ => FetchCause::Io,
            },
        }
    }

    fn breaks_connection(&self) -> bool {
        !matches!(self.cause(), FetchCause::NotFound | FetchCause::Refused)
    }
}

/// Tuning of the engine. Each default is a design decision; see its comment.
#[derive(Debug, Clone)]
pub struct Options {
    /// Chunk buffers per peer. Two let a worker fetch the next chunk while its last one is
    /// verified and written. The verifiers are the slower stage (see `verifiers`), so a
    /// third buffer per peer would only wait in their queue: on the benchmark 2, 3 and 4
    /// per peer were within the machine's noise of each other, so the least memory wins.
    /// Peak memory is about `peers × buffers_per_peer × chunk size`. An endgame duplicate
    /// takes a buffer from the same pool, so endgame adds no memory.
    pub buffers_per_peer: usize,
    /// Verifier threads (SHA-1, the chunk file, and the assembled file when Charlie
    /// merges). This is the heaviest stage per byte: on the benchmark's 2-core machine a
    /// verifier spends about 0.6 ms on a 512 KiB chunk (SHA-1 with SHA-NI at ~1.5 GB/s,
    /// then two tmpfs writes) while a worker fetches one in about 0.4 ms. So one verifier
    /// per peer, capped by the cores: more threads than cores only add switches.
    pub verifiers: usize,
    /// Wait before the one reconnection allowed after a broken connection: long enough
    /// for a restarting peer, short enough not to stall the download.
    pub reconnect_backoff: Duration,
    /// Consecutive bad chunks (wrong hash, error replies) after which a peer is dropped:
    /// one bad chunk may be a corrupt file on its disk, three in a row is a bad peer.
    pub max_bad_chunks: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            buffers_per_peer: 2,
            verifiers: thread::available_parallelism().map_or(1, |n| n.get()),
            reconnect_backoff: Duration::from_millis(200),
            max_bad_chunks: 3,
        }
    }
}

/// What one peer contributed.
#[derive(Debug, Clone, Default)]
pub struct PeerReport {
    /// Its label.
    pub label: String,
    /// Chunks it delivered that verified.
    pub chunks: usize,
    /// Bytes of those chunks.
    pub bytes: u64,
    /// Failures, in order ("chunk 3: wrong hash", "connection refused", ...).
    pub failures: Vec<String>,
    /// Why it was dropped, if it was.
    pub dropped: Option<String>,
}

/// The outcome of a completed download.
#[derive(Debug, Clone)]
pub struct Report {
    /// Bytes fetched and verified in this run (resumed chunks excluded).
    pub bytes: u64,
    /// Wall time of this run.
    pub elapsed: Duration,
    /// Per peer, in plan order.
    pub peers: Vec<PeerReport>,
    /// Chunks found already verified on disk and not fetched again.
    pub resumed: usize,
    /// Fetches that had to be repeated (on the same or another peer).
    pub retries: usize,
    /// Endgame duplicates: second fetches of a piece started while its first fetch was
    /// still running on another peer (see [`MAX_FETCHES_PER_PIECE`]). Whichever copy
    /// verifies first counts in `bytes` and in its peer's chunks; the other counts nowhere.
    pub endgame_duplicates: usize,
}

impl Report {
    /// Megabytes (10^6 bytes) per second over this run.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The one summary line Charlie prints.
    pub fn summary(&self, filename: &str) -> String {
        let per_peer: Vec<String> = self
            .peers
            .iter()
            .map(|p| format!("{} {}", p.label, p.chunks))
            .collect();
        let mut line = format!(
            "{filename}: {} bytes in {:.3} s ({:.1} MB/s); chunks from {}; resumed {}; retries {}",
            self.bytes,
            self.elapsed.as_secs_f64(),
            self.mb_per_s(),
            per_peer.join(", "),
            self.resumed,
            self.retries
        );
        // Only when endgame happened, so that the usual line keeps its format.
        if self.endgame_duplicates > 0 {
            line.push_str(&format!("; endgame duplicates {}", self.endgame_duplicates));
        }
        line
    }
}

/// Why a download did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Some chunks could not be had from any peer.
    #[error("{} could not be downloaded from any peer: {}", chunk_list(.missing), Reasons(.why))]
    Incomplete {
        /// Chunk indexes (file order) still missing.
        missing: Vec<usize>,
        /// What went wrong: why each dropped peer was dropped, then per chunk.
        why: Vec<String>,
        /// The partial report.
        report: Box<Report>,
    },
    /// The chunk store failed (disk full, permissions).
    #[error("cannot store chunk {hash}: {source}")]
    Store {
        /// The chunk being written.
        hash: ChunkHash,
        /// The I/O error.
        source: io::Error,
    },
    /// Reading the chunks already on disk failed.
    #[error("cannot check chunks already in {dir}: {source}")]
    Resume {
        /// The store's directory.
        dir: String,
        /// The I/O error.
        source: io::Error,
    },
}

/// The first few reasons of an [`DownloadError::Incomplete`]: with 65,535 chunks failing
/// alike, listing every one would make an error line of megabytes. Peers' drop reasons
/// come first, so they are always shown; each fetch failure is also logged as a warning
/// when it happens.
struct Reasons<'a>(&'a [String]);

/// How many reasons [`Reasons`] shows.
const REASONS_SHOWN: usize = 6;

impl fmt::Display for Reasons<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.0.len().min(REASONS_SHOWN);
        f.write_str(&self.0[..shown].join("; "))?;
        if self.0.len() > shown {
            write!(f, "; and {} more", self.0.len() - shown)?;
        }
        Ok(())
    }
}

/// `chunk 3 (<hash>)`, or `chunk 3/7 (<hash>)` for a content at several positions.
fn piece_label(indexes: &[usize], hash: &ChunkHash) -> String {
    let idx: Vec<String> = indexes.iter().map(|i| i.to_string()).collect();
    format!("chunk {} ({hash})", idx.join("/"))
}

fn chunk_list(idx: &[usize]) -> String {
    let noun = if idx.len() == 1 { "chunk" } else { "chunks" };
    format!("{noun} {}", crate::chunker::IndexList(idx))
}

/// One unique chunk content: several file positions may share a hash (zero-filled
/// regions), and the store keeps one file per hash, so each is fetched once.
#[derive(Debug)]
struct Piece {
    hash: ChunkHash,
    indexes: Vec<usize>,
    /// Live peers still worth asking for this piece.
    candidates: Vec<PeerId>,
    state: PieceState,
    /// Peers whose fetch of this piece has not ended yet (assigned, and no outcome event
    /// received): at most [`MAX_FETCHES_PER_PIECE`].
    fetchers: Vec<PeerId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PieceState {
    Pending,
    InFlight,
    Done,
    Failed,
}

type PieceId = usize;

/// Messages from workers and verifiers to the coordinator.
enum Event {
    /// The peer's worker is ready for a piece.
    Idle(PeerId),
    /// The peer's worker has a new connection, abortable with this handle if any.
    Connected(PeerId, Option<Box<dyn AbortHandle>>),
    /// A piece verified and is on disk.
    Verified(PieceId, PeerId, u64),
    /// A copy of a piece verified, but another copy had won: it was dropped, unwritten.
    Duplicate(PieceId, PeerId),
    /// The peer does not have the piece.
    NotFound(PieceId, PeerId),
    /// The peer sent bad data or an error reply for the piece.
    Bad(PieceId, PeerId, String),
    /// The connection broke while fetching the piece.
    Broken(PieceId, PeerId, String),
    /// The peer's worker gave up on the peer.
    PeerDead(PeerId, String),
    /// Writing a verified piece failed: fatal.
    StoreFailed(ChunkHash, io::Error),
}

/// Coordinator → worker.
enum Assignment {
    Fetch(PieceId, ChunkHash),
}

struct VerifyJob {
    piece: PieceId,
    peer: PeerId,
    hash: ChunkHash,
    buf: Vec<u8>,
}

struct PeerState {
    /// Pieces this peer has, rarest first (fewest sources, then file order).
    queue: Vec<PieceId>,
    cursor: usize,
    /// Pieces given back by other peers; served before `queue`.
    retry: VecDeque<PieceId>,
    idle: bool,
    /// The piece this peer's worker is fetching: set when it is assigned, cleared when
    /// the worker says it is idle again (its copy then is with the verifiers, or its
    /// failure was reported first, on the same channel).
    fetching: Option<PieceId>,
    dead: bool,
    /// Aborts the worker's current connection (see [`ChunkSource::abort_handle`]).
    abort: Option<Box<dyn AbortHandle>>,
    bad_in_a_row: u32,
    assign: Option<Sender<Assignment>>,
    report: PeerReport,
}

/// Downloads every chunk of `plan` into `store`, skipping chunks already there and
/// verified. Returns when every chunk is on disk, or when some cannot be had.
pub fn download(
    plan: &Plan,
    store: &ChunkStore,
    connector: &dyn Connector,
    opts: &Options,
    progress: &ProgressBar,
) -> Result<Report, DownloadError> {
    download_with(plan, store, connector, opts, progress, None)
}

/// [`download`], telling `on_verified` of each chunk fetched and verified in this run
/// (chunks resumed from disk are not reported: they are not in memory).
pub fn download_with(
    plan: &Plan,
    store: &ChunkStore,
    connector: &dyn Connector,
    opts: &Options,
    progress: &ProgressBar,
    on_verified: Option<&dyn Verified>,
) -> Result<Report, DownloadError> {
    let start = Instant::now();
    let mut pieces = group_pieces(plan);
    store
        .remove_stale_temp_files()
        .map_err(|source| resume_err(store, source))?;
    let mut resumed = 0;
    for p in &mut pieces {
        if store.contains(&p.hash) {
            if store.verify(&p.hash).map_err(|e| resume_err(store, e))? {
                p.state = PieceState::Done;
                resumed += p.indexes.len();
            } else {
                log::warn!("chunk {} on disk is corrupt: fetching it again", p.hash);
                store.remove(&p.hash).map_err(|e| resume_err(store, e))?;
            }
        }
    }
    if resumed > 0 {
        log::info!("resuming: {resumed} chunks already on disk and verified");
    }
    progress.set_length(plan.chunks.len() as u64);
    progress.set_position(resumed as u64);

    // The verifiers' read-only view of which file positions each piece fills: two flat
    // vectors rather than a clone of each piece's list, so that a 65,535-chunk plan
    // costs two allocations here, not 65,535.
    let indexes = PieceIndexes::new(&pieces);
    let claimed: Vec<AtomicBool> = pieces.iter().map(|_| AtomicBool::new(false)).collect();
    let finished = AtomicBool::new(false);
    let ctx = Ctx {
        plan,
        store,
        connector,
        opts,
        indexes: &indexes,
        on_verified,
        claimed: &claimed,
        finished: &finished,
    };
    let mut coord = Coordinator::new(plan, pieces, opts.max_bad_chunks);
    let report = thread::scope(|s| coord.run(s, &ctx, progress));
    report.map(|mut r| {
        r.resumed = resumed;
        r.elapsed = start.elapsed();
        r
    })
}

fn resume_err(store: &ChunkStore, source: io::Error) -> DownloadError {
    DownloadError::Resume {
        dir: crate::root::display_path(store.dir()),
        source,
    }
}

fn group_pieces(plan: &Plan) -> Vec<Piece> {
    let mut by_hash: std::collections::HashMap<ChunkHash, PieceId> = Default::default();
    let mut pieces: Vec<Piece> = Vec::new();
    for (i, h) in plan.chunks.iter().enumerate() {
        let id = *by_hash.entry(*h).or_insert_with(|| {
            pieces.push(Piece {
                hash: *h,
                indexes: Vec::new(),
                candidates: Vec::new(),
                state: PieceState::Pending,
                fetchers: Vec::new(),
            });
            pieces.len() - 1
        });
        let piece = &mut pieces[id];
        piece.indexes.push(i);
        for &p in &plan.sources[i] {
            if !piece.candidates.contains(&p) {
                piece.candidates.push(p);
            }
        }
    }
    pieces
}

/// The file positions of every piece, flattened: piece `p`'s are
/// `flat[start[p]..start[p + 1]]`.
struct PieceIndexes {
    start: Vec<usize>,
    flat: Vec<usize>,
}

impl PieceIndexes {
    fn new(pieces: &[Piece]) -> Self {
        let mut start = Vec::with_capacity(pieces.len() + 1);
        let mut flat = Vec::with_capacity(pieces.iter().map(|p| p.indexes.len()).sum());
        for p in pieces {
            start.push(flat.len());
            flat.extend_from_slice(&p.indexes);
        }
        start.push(flat.len());
        PieceIndexes { start, flat }
    }

    fn of(&self, piece: PieceId) -> &[usize] {
        &self.flat[self.start[piece]..self.start[piece + 1]]
    }
}

/// What the engine's threads share, read-only, for the length of a download.
struct Ctx<'e> {
    plan: &'e Plan,
    store: &'e ChunkStore,
    connector: &'e dyn Connector,
    opts: &'e Options,
    /// File positions of each piece, by piece id.
    indexes: &'e PieceIndexes,
    on_verified: Option<&'e dyn Verified>,
    /// Per piece: a copy of it has verified. Swapped by the verifiers, so exactly one copy
    /// of each piece is written, reported and counted even when endgame fetched two.
    claimed: &'e [AtomicBool],
    /// Set by the coordinator once the download is over, before it aborts the connections
    /// still busy: a worker whose fetch then fails exits without reporting a failure.
    finished: &'e AtomicBool,
}

struct Coordinator {
    pieces: Vec<Piece>,
    peers: Vec<PeerState>,
    /// Pieces in state Pending (see [`Coordinator::set_state`]).
    pending: usize,
    /// Pieces in state Pending or InFlight: the download ends when none is left.
    open: usize,
    /// Pieces in state InFlight, oldest first: endgame duplicates the oldest. At most a
    /// few per peer, so scanning it is cheap.
    in_flight: Vec<PieceId>,
    retries: usize,
    duplicates: usize,
    bytes: u64,
    why: Vec<String>,
    max_bad: u32,
}

impl Coordinator {
    fn new(plan: &Plan, mut pieces: Vec<Piece>, max_bad: u32) -> Self {
        let mut peers: Vec<PeerState> = plan
            .peers
            .iter()
            .map(|p| PeerState {
                queue: Vec::new(),
                cursor: 0,
                retry: VecDeque::new(),
                idle: false,
                fetching: None,
                dead: false,
                abort: None,
                bad_in_a_row: 0,
                assign: None,
                report: PeerReport {
                    label: p.label.clone(),
                    ..Default::default()
                },
            })
            .collect();
        // A piece with no source at all fails at once, and the error says so.
        let mut why = Vec::new();
        for p in &mut pieces {
            if p.candidates.is_empty() && p.state == PieceState::Pending {
                p.state = PieceState::Failed;
                why.push(format!(
                    "{}: no usable peer listed",
                    piece_label(&p.indexes, &p.hash)
                ));
            }
        }
        // Rarest first: pieces only one peer has go before shared ones, so that the
        // shared ones are left to whichever peer is free and both stay busy to the end.
        let mut order: Vec<PieceId> = (0..pieces.len()).collect();
        order.sort_by_key(|&id| (pieces[id].candidates.len(), pieces[id].indexes[0]));
        for id in order {
            if pieces[id].state == PieceState::Pending {
                for &p in &pieces[id].candidates {
                    peers[p].queue.push(id);
                }
            }
        }
        let pending = pieces
            .iter()
            .filter(|p| p.state == PieceState::Pending)
            .count();
        Coordinator {
            pieces,
            peers,
            pending,
            open: pending,
            in_flight: Vec::new(),
            retries: 0,
            duplicates: 0,
            bytes: 0,
            why,
            max_bad,
        }
    }

    /// Moves a piece to `state`, keeping the counts of pending and open pieces and the
    /// list of pieces in flight. The counts are kept rather than recounted after every
    /// event: recounting made a 65,535-chunk download quadratic (billions of steps).
    fn set_state(&mut self, id: PieceId, state: PieceState) {
        use PieceState::*;
        let piece = &mut self.pieces[id];
        let was = piece.state;
        piece.state = state;
        let open = |s| matches!(s, Pending | InFlight);
        match (was == Pending, state == Pending) {
            (true, false) => self.pending -= 1,
            (false, true) => self.pending += 1,
            _ => {}
        }
        match (open(was), open(state)) {
            (true, false) => self.open -= 1,
            (false, true) => self.open += 1,
            _ => {}
        }
        match (was == InFlight, state == InFlight) {
            (false, true) => self.in_flight.push(id),
            (true, false) => self.in_flight.retain(|&i| i != id),
            _ => {}
        }
    }

    fn run<'s, 'e: 's>(
        &mut self,
        s: &'s thread::Scope<'s, 'e>,
        ctx: &'e Ctx<'e>,
        progress: &ProgressBar,
    ) -> Result<Report, DownloadError> {
        let (plan, connector, opts) = (ctx.plan, ctx.connector, ctx.opts);
        let (events_tx, events) = unbounded::<Event>();
        let n_bufs = plan.peers.len() * opts.buffers_per_peer.max(1);
        let (pool_tx, pool_rx) = bounded::<Vec<u8>>(n_bufs);
        for _ in 0..n_bufs {
            pool_tx.send(Vec::new()).expect("pool has room");
        }
        let (verify_tx, verify_rx) = bounded::<VerifyJob>(n_bufs);
        if self.pending > 0 {
            let n_verifiers = opts.verifiers.clamp(1, plan.peers.len().max(1));
            for _ in 0..n_verifiers {
                let (rx, ev, pool) = (verify_rx.clone(), events_tx.clone(), pool_tx.clone());
                s.spawn(move || verifier(ctx, rx, ev, pool));
            }
            for (id, peer) in plan.peers.iter().enumerate() {
                if self.peers[id].queue.is_empty() {
                    continue; // nothing to ask this peer: don't even connect
                }
                let (tx, rx) = unbounded::<Assignment>();
                self.peers[id].assign = Some(tx);
                let (ev, vtx) = (events_tx.clone(), verify_tx.clone());
                let (pool, back) = (pool_rx.clone(), pool_tx.clone());
                let finished = ctx.finished;
                s.spawn(move || {
                    worker(id, peer, connector, opts, finished, rx, ev, pool, back, vtx)
                });
            }
        }
        drop((verify_tx, pool_tx, events_tx));

        // Until every piece is done or failed: a losing endgame fetch still running then
        // is not waited for (`finish` aborts it).
        while self.open > 0 {
            let ev = match events.recv() {
                Ok(ev) => ev,
                Err(_) => break, // every worker and verifier is gone
            };
            match ev {
                Event::Idle(p) => {
                    self.peers[p].idle = true;
                    self.peers[p].fetching = None;
                }
                Event::Connected(p, abort) => self.peers[p].abort = abort,
                Event::Verified(id, p, n) => {
                    self.fetch_ended(id, p);
                    self.set_state(id, PieceState::Done);
                    let peer = &mut self.peers[p];
                    peer.bad_in_a_row = 0;
                    peer.report.chunks += self.pieces[id].indexes.len();
                    peer.report.bytes += n;
                    self.bytes += n;
                    progress.inc(self.pieces[id].indexes.len() as u64);
                    log::debug!(
                        "chunk {} verified from {}",
                        self.pieces[id].hash,
                        peer.report.label
                    );
                }
                Event::Duplicate(id, p) => {
                    // A good copy, but not the first: it counts nowhere.
                    self.fetch_ended(id, p);
                    self.peers[p].bad_in_a_row = 0;
                    log::debug!(
                        "chunk {} from {}: another copy verified first, dropped",
                        self.pieces[id].hash,
                        self.peers[p].report.label
                    );
                }
                Event::NotFound(id, p) => {
                    self.fetch_ended(id, p);
                    self.note(p, format!("{}: CHUNK_NOT_FOUND", self.chunk_name(id)));
                    self.give_up_piece_on(id, p);
                }
                Event::Bad(id, p, why) => {
                    self.fetch_ended(id, p);
                    self.note(p, format!("{}: {why}", self.chunk_name(id)));
                    self.give_up_piece_on(id, p);
                    self.peers[p].bad_in_a_row += 1;
                    if self.peers[p].bad_in_a_row >= self.max_bad {
                        let why = format!(
                            "{} bad chunks in a row (the last: {why})",
                            self.peers[p].bad_in_a_row
                        );
                        self.drop_peer(p, why);
                    }
                }
                Event::Broken(id, p, why) => {
                    self.fetch_ended(id, p);
                    self.note(p, format!("{}: {why}", self.chunk_name(id)));
                    // Prefer another peer for this piece, but keep this one as a last
                    // resort: its worker reconnects once before giving up on it.
                    if self.pieces[id].candidates.len() > 1 {
                        self.give_up_piece_on(id, p);
                    } else {
                        self.requeue_after_failure(id);
                    }
                }
                Event::PeerDead(p, why) => self.drop_peer(p, why),
                Event::StoreFailed(hash, source) => {
                    self.finish(ctx.finished);
                    return Err(DownloadError::Store { hash, source });
                }
            }
            self.assign_idle();
        }
        self.finish(ctx.finished);
        let missing: Vec<usize> = {
            let mut m: Vec<usize> = self
                .pieces
                .iter()
                .filter(|p| p.state != PieceState::Done)
                .flat_map(|p| p.indexes.iter().copied())
                .collect();
            m.sort_unstable();
            m
        };
        let report = Report {
            bytes: self.bytes,
            elapsed: Duration::ZERO,
            peers: self.peers.iter().map(|p| p.report.clone()).collect(),
            resumed: 0,
            retries: self.retries,
            endgame_duplicates: self.duplicates,
        };
        if missing.is_empty() {
            Ok(report)
        } else {
            let mut why: Vec<String> = self
                .peers
                .iter()
                .filter_map(|p| {
                    let why = p.report.dropped.as_deref()?;
                    Some(format!("{}: dropped: {why}", p.report.label))
                })
                .collect();
            why.append(&mut self.why);
            Err(DownloadError::Incomplete {
                missing,
                why,
                report: Box::new(report),
            })
        }
    }

    fn chunk_name(&self, id: PieceId) -> String {
        let idx = &self.pieces[id].indexes;
        format!("chunk {}", idx.first().copied().unwrap_or_default())
    }

    fn note(&mut self, p: PeerId, failure: String) {
        log::warn!("{}: {failure}", self.peers[p].report.label);
        self.peers[p].report.failures.push(failure);
    }

    /// `p`'s fetch of piece `id` has ended (its outcome event arrived).
    fn fetch_ended(&mut self, id: PieceId, p: PeerId) {
        self.pieces[id].fetchers.retain(|&c| c != p);
    }

    /// Stops asking `p` for this piece; it goes to another candidate, or fails.
    fn give_up_piece_on(&mut self, id: PieceId, p: PeerId) {
        self.pieces[id].candidates.retain(|&c| c != p);
        self.requeue_after_failure(id);
    }

    /// After a failed fetch of piece `id`: requeues it, unless another copy already won
    /// (it is Done) or another fetch of it is still running (endgame), whose outcome
    /// decides instead.
    fn requeue_after_failure(&mut self, id: PieceId) {
        let piece = &self.pieces[id];
        if piece.state == PieceState::InFlight && piece.fetchers.is_empty() {
            self.requeue(id, true);
        }
    }

    /// Makes a piece pending again for its remaining candidates (it fails if none is
    /// left). `retry` says whether this counts as a repeated fetch in the report.
    fn requeue(&mut self, id: PieceId, retry: bool) {
        if self.pieces[id].candidates.is_empty() {
            self.set_state(id, PieceState::Failed);
            let piece = &self.pieces[id];
            let why = format!(
                "{}: no peer left that has it",
                piece_label(&piece.indexes, &piece.hash)
            );
            self.why.push(why);
            return;
        }
        self.set_state(id, PieceState::Pending);
        self.retries += usize::from(retry);
        for &c in &self.pieces[id].candidates {
            self.peers[c].retry.push_back(id);
        }
    }

    fn drop_peer(&mut self, p: PeerId, why: String) {
        if self.peers[p].dead {
            return;
        }
        log::warn!("dropping peer {}: {why}", self.peers[p].report.label);
        let peer = &mut self.peers[p];
        peer.dead = true;
        peer.idle = false;
        peer.assign = None; // the worker sees its channel close and exits
        peer.report.dropped = Some(why);
        for id in 0..self.pieces.len() {
            let piece = &mut self.pieces[id];
            let was_pending = piece.state == PieceState::Pending;
            let had = piece.candidates.contains(&p);
            piece.candidates.retain(|&c| c != p);
            if was_pending && had {
                // Not a retry: the piece was never fetched from p.
                self.requeue(id, false);
            }
        }
    }

    fn next_for(&mut self, p: PeerId) -> Option<PieceId> {
        let ok = |pieces: &Vec<Piece>, id: PieceId| {
            pieces[id].state == PieceState::Pending && pieces[id].candidates.contains(&p)
        };
        while let Some(id) = self.peers[p].retry.pop_front() {
            if ok(&self.pieces, id) {
                return Some(id);
            }
        }
        let peer = &mut self.peers[p];
        while peer.cursor < peer.queue.len() {
            let id = peer.queue[peer.cursor];
            peer.cursor += 1;
            if ok(&self.pieces, id) {
                return Some(id);
            }
        }
        None
    }

    /// Endgame: a piece in flight on another peer that `p` may fetch a second copy of
    /// (see [`MAX_FETCHES_PER_PIECE`]), the one in flight longest first. Only pieces whose
    /// fetch is still running: a copy already with the verifiers is not duplicated.
    fn duplicate_for(&self, p: PeerId) -> Option<PieceId> {
        self.in_flight.iter().copied().find(|&id| {
            let piece = &self.pieces[id];
            piece.fetchers.len() < MAX_FETCHES_PER_PIECE
                && !piece.fetchers.contains(&p)
                && piece.candidates.contains(&p)
                && piece
                    .fetchers
                    .iter()
                    .all(|&f| self.peers[f].fetching == Some(id))
        })
    }

    fn assign_idle(&mut self) {
        for p in 0..self.peers.len() {
            if !self.peers[p].idle || self.peers[p].dead {
                continue;
            }
            // A pending piece first; endgame only when none is left for this peer.
            let (id, duplicate) = match self.next_for(p) {
                Some(id) => (id, false),
                None => match self.duplicate_for(p) {
                    Some(id) => (id, true),
                    None => continue,
                },
            };
            let hash = self.pieces[id].hash;
            let sent = self.peers[p]
                .assign
                .as_ref()
                .is_some_and(|tx| tx.send(Assignment::Fetch(id, hash)).is_ok());
            if sent {
                if duplicate {
                    self.duplicates += 1;
                    log::debug!(
                        "endgame: {} also asked for chunk {hash}",
                        self.peers[p].report.label
                    );
                } else {
                    self.set_state(id, PieceState::InFlight);
                }
                self.pieces[id].fetchers.push(p);
                self.peers[p].idle = false;
                self.peers[p].fetching = Some(id);
            } else {
                // The worker is gone: the piece, still pending, goes to the others.
                self.drop_peer(p, "worker stopped".into());
            }
        }
    }

    /// Ends the download for the workers: idle ones see their channel close and exit;
    /// the connections of those still fetching (a losing endgame copy, a stuck peer) are
    /// aborted, after `finished` is set so that their failure is not reported.
    fn finish(&mut self, finished: &AtomicBool) {
        finished.store(true, Ordering::SeqCst);
        for p in &mut self.peers {
            p.assign = None;
            if let (Some(id), Some(abort)) = (p.fetching, &p.abort) {
                log::debug!(
                    "aborting {}'s fetch of chunk {}: download over",
                    p.report.label,
                    self.pieces[id].hash
                );
                abort.abort();
            }
        }
    }
}

/// One peer's thread: owns its connection, fetches what the coordinator assigns.
#[allow(clippy::too_many_arguments)]
fn worker(
    id: PeerId,
    peer: &PeerInfo,
    connector: &dyn Connector,
    opts: &Options,
    finished: &AtomicBool,
    assignments: Receiver<Assignment>,
    events: Sender<Event>,
    pool: Receiver<Vec<u8>>,
    pool_back: Sender<Vec<u8>>,
    verify: Sender<VerifyJob>,
) {
    // Reconnect policy: after a failure, one new connection after a short backoff. A
    // success resets the allowance; a second failure in a row drops the peer.
    let mut conn = match connect_with_retry(peer, connector, opts) {
        Ok(c) => c,
        Err(e) => {
            let _ = events.send(Event::PeerDead(id, format!("cannot connect: {e}")));
            return;
        }
    };
    log::info!("connected to {peer}");
    let _ = events.send(Event::Connected(id, conn.abort_handle()));
    let mut reconnected = false;
    loop {
        if events.send(Event::Idle(id)).is_err() {
            return;
        }
        let Ok(Assignment::Fetch(piece, hash)) = assignments.recv() else {
            return; // the coordinator is done with us
        };
        let Ok(mut buf) = pool.recv() else { return };
        match conn.fetch(&hash, &mut buf) {
            Ok(()) => {
                reconnected = false;
                let job = VerifyJob {
                    piece,
                    peer: id,
                    hash,
                    buf,
                };
                if verify.send(job).is_err() {
                    return;
                }
            }
            Err(e) => {
                if finished.load(Ordering::SeqCst) {
                    // Aborted because the download is over: not the peer's failure.
                    let _ = pool_back.send(buf);
                    return;
                }
                let broken = e.breaks_connection();
                let failure = e.to_string();
                let ev = match e {
                    FetchError::NotFound => Event::NotFound(piece, id),
                    FetchError::Refused(why) => Event::Bad(piece, id, format!("answered {why}")),
                    e => Event::Broken(piece, id, e.to_string()),
                };
                // Give the buffer back before anything else can block.
                let _ = pool_back.send(buf);
                let _ = events.send(ev);
                if broken {
                    if reconnected {
                        let _ = events.send(Event::PeerDead(
                            id,
                            format!("failed again after reconnecting: {failure}"),
                        ));
                        return;
                    }
                    thread::sleep(opts.reconnect_backoff);
                    if finished.load(Ordering::SeqCst) {
                        return;
                    }
                    match connector.connect(peer) {
                        Ok(c) => {
                            log::info!("reconnected to {peer}");
                            conn = c;
                            reconnected = true;
                            let _ = events.send(Event::Connected(id, conn.abort_handle()));
                        }
                        Err(e) => {
                            let _ =
                                events.send(Event::PeerDead(id, format!("cannot reconnect: {e}")));
                            return;
                        }
                    }
                }
            }
        }
    }
}

fn connect_with_retry(
    peer: &PeerInfo,
    connector: &dyn Connector,
    opts: &Options,
) -> Result<Box<dyn ChunkSource>, FetchError> {
    match connector.connect(peer) {
        Ok(c) => Ok(c),
        Err(e) => {
            log::warn!("cannot connect to {peer}: {e}; retrying once");
            thread::sleep(opts.reconnect_backoff);
            connector.connect(peer)
        }
    }
}

/// A verifier thread: hashes each fetched chunk and writes it atomically if it matches.
fn verifier(
    ctx: &Ctx<'_>,
    jobs: Receiver<VerifyJob>,
    events: Sender<Event>,
    pool: Sender<Vec<u8>>,
) {
    for job in jobs {
        let mut h = ChunkHasher::new();
        h.update(&job.buf);
        let ev = if h.finish() != job.hash {
            Event::Bad(
                job.piece,
                job.peer,
                "content does not match its SHA-1".into(),
            )
        } else if ctx.claimed[job.piece].swap(true, Ordering::AcqRel) {
            // Endgame: another copy of this piece verified first and was written and
            // reported; this one is dropped without touching the store or the hook.
            Event::Duplicate(job.piece, job.peer)
        } else {
            match ctx.store.write(&job.hash, &job.buf) {
                Ok(()) => {
                    if let Some(hook) = ctx.on_verified {
                        hook.verified(&job.hash, ctx.indexes.of(job.piece), &job.buf);
                    }
                    Event::Verified(job.piece, job.peer, job.buf.len() as u64)
                }
                Err(e) => Event::StoreFailed(job.hash, e),
            }
        };
        let _ = pool.send(job.buf);
        if events.send(ev).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The engine against fake peers (no sockets): endgame duplicates, the first verified
    //! copy winning, failures of one copy, and aborting the fetches still running at the
    //! end. Fakes wait on conditions rather than sleeps, so outcomes do not depend on
    //! timing (one test adds a pause, only to make the path it covers likely); a fake
    //! never waits longer than [`CAP`], so a fake alone cannot hang a test.
    use super::*;
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Condvar, Mutex};

    /// Longest any fake waits: far above every bound the tests assert.
    const CAP: Duration = Duration::from_secs(60);
    /// Bound on a download that must not wait for a slow or stuck peer. Not a speed
    /// measure: the fakes answer in microseconds, a hang would take [`CAP`].
    const PROMPT: Duration = Duration::from_secs(20);

    /// When a fake answers a GET.
    #[derive(Clone, Copy, Debug)]
    enum When {
        /// At once.
        Now,
        /// Never: blocks until the connection is aborted (a stuck peer).
        Never,
        /// Once this peer has started a fetch (so that it got a piece of its own).
        PeerStarted(PeerId),
        /// Once another peer's fetch of the same chunk has returned, and then this long
        /// (time for that peer's worker to report while the download still runs).
        OtherReturned(Duration),
        /// Once the chunk has been passed to the `Verified` hook.
        Verified,
        /// Once this peer's fetch has returned, and then this long (time for its worker
        /// to report, so that the report is handled while the download still runs).
        AfterReturnOf(PeerId, Duration),
    }

    /// What a fake answers.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum What {
        Chunk,
        NotFound,
        /// Bytes that do not match the hash.
        Garbage,
        /// A broken connection.
        Break,
    }

    /// How a fake answers one chunk.
    type Rule = (When, What);

    #[derive(Default)]
    struct State {
        /// Fetches started, per peer.
        started: HashMap<PeerId, usize>,
        /// Fetches returned, per (peer, chunk): how many, and when the first did.
        returned: HashMap<(PeerId, ChunkHash), (usize, Instant)>,
        /// Hook calls, per chunk.
        verified: HashMap<ChunkHash, usize>,
    }

    struct Shared {
        data: HashMap<ChunkHash, Vec<u8>>,
        /// Per peer label: default behaviour, and per-chunk overrides.
        rules: HashMap<String, (Rule, HashMap<ChunkHash, Rule>)>,
        state: Mutex<State>,
        changed: Condvar,
        connects: Vec<AtomicUsize>,
        aborts: Vec<AtomicUsize>,
    }

    impl Shared {
        fn rule(&self, peer: &str, hash: &ChunkHash) -> (When, What) {
            let (default, per) = &self.rules[peer];
            per.get(hash).copied().unwrap_or(*default)
        }

        fn ready(&self, st: &State, when: When, me: PeerId, hash: &ChunkHash) -> bool {
            match when {
                When::Now => true,
                When::Never => false,
                When::PeerStarted(p) => st.started.get(&p).copied().unwrap_or(0) > 0,
                When::OtherReturned(wait) => st
                    .returned
                    .iter()
                    .any(|((p, h), (_, t))| *p != me && h == hash && t.elapsed() >= wait),
                When::Verified => st.verified.contains_key(hash),
                When::AfterReturnOf(p, wait) => {
                    // From this peer's first return, whatever the chunk.
                    st.returned
                        .iter()
                        .filter(|((q, _), _)| *q == p)
                        .map(|(_, (_, t))| *t)
                        .min()
                        .is_some_and(|t| t.elapsed() >= wait)
                }
            }
        }
    }

    struct FakeConnector(Arc<Shared>);

    struct FakeSource {
        shared: Arc<Shared>,
        peer: PeerId,
        label: String,
        aborted: Arc<AtomicBool>,
    }

    struct FakeAbort {
        shared: Arc<Shared>,
        peer: PeerId,
        aborted: Arc<AtomicBool>,
    }

    impl AbortHandle for FakeAbort {
        fn abort(&self) {
            let _st = self.shared.state.lock().unwrap();
            self.aborted.store(true, Ordering::SeqCst);
            self.shared.aborts[self.peer].fetch_add(1, Ordering::SeqCst);
            self.shared.changed.notify_all();
        }
    }

    impl Connector for FakeConnector {
        fn connect(&self, peer: &PeerInfo) -> Result<Box<dyn ChunkSource>, FetchError> {
            let id = peer.addr.port() as PeerId;
            self.0.connects[id].fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(FakeSource {
                shared: self.0.clone(),
                peer: id,
                label: peer.label.clone(),
                aborted: Arc::new(AtomicBool::new(false)),
            }))
        }
    }

    impl ChunkSource for FakeSource {
        fn fetch(&mut self, hash: &ChunkHash, buf: &mut Vec<u8>) -> Result<(), FetchError> {
            let sh = self.shared.clone();
            let (when, what) = sh.rule(&self.label, hash);
            let end = Instant::now() + CAP;
            let mut st = sh.state.lock().unwrap();
            *st.started.entry(self.peer).or_default() += 1;
            sh.changed.notify_all();
            loop {
                if self.aborted.load(Ordering::SeqCst) {
                    return Err(FetchError::Io(io::ErrorKind::ConnectionAborted.into()));
                }
                if sh.ready(&st, when, self.peer, hash) {
                    break;
                }
                if Instant::now() > end {
                    return Err(FetchError::Io(io::ErrorKind::TimedOut.into()));
                }
                st = sh
                    .changed
                    .wait_timeout(st, Duration::from_millis(50))
                    .unwrap()
                    .0;
            }
            st.returned
                .entry((self.peer, *hash))
                .or_insert((0, Instant::now()))
                .0 += 1;
            sh.changed.notify_all();
            drop(st);
            match what {
                What::Chunk => {
                    buf.clear();
                    buf.extend_from_slice(&sh.data[hash]);
                    Ok(())
                }
                What::Garbage => {
                    buf.clear();
                    buf.extend_from_slice(b"not the chunk");
                    Ok(())
                }
                What::NotFound => Err(FetchError::NotFound),
                What::Break => Err(FetchError::Io(io::ErrorKind::ConnectionReset.into())),
            }
        }

        fn abort_handle(&self) -> Option<Box<dyn AbortHandle>> {
            Some(Box::new(FakeAbort {
                shared: self.shared.clone(),
                peer: self.peer,
                aborted: self.aborted.clone(),
            }))
        }
    }

    /// Counts hook calls per chunk.
    struct Hook(Arc<Shared>);

    impl Verified for Hook {
        fn verified(&self, hash: &ChunkHash, _: &[usize], data: &[u8]) {
            assert_eq!(ChunkHash::of(data), *hash);
            let mut st = self.0.state.lock().unwrap();
            *st.verified.entry(*hash).or_default() += 1;
            self.0.changed.notify_all();
        }
    }

    type Rules<'a> = &'a [(&'a str, (When, What), &'a [(usize, (When, What))])];

    struct Setup {
        plan: Plan,
        shared: Arc<Shared>,
        dir: tempfile::TempDir,
    }

    /// `n` distinct chunks; `has[i]` lists the peers (by index in `rules`) holding chunk i.
    fn setup(n: usize, has: &[&[PeerId]], rules: Rules<'_>) -> Setup {
        let chunks: Vec<Vec<u8>> = (0..n)
            .map(|i| format!("chunk number {i}").repeat(100).into_bytes())
            .collect();
        let hashes: Vec<ChunkHash> = chunks.iter().map(|c| ChunkHash::of(c)).collect();
        let peers = rules
            .iter()
            .enumerate()
            .map(|(i, (label, _, _))| PeerInfo {
                // The port carries the peer's id to the fake connector.
                addr: SocketAddr::from(([127, 0, 0, 1], i as u16)),
                label: label.to_string(),
            })
            .collect::<Vec<_>>();
        let rules = rules
            .iter()
            .map(|(label, default, per)| {
                let per = per.iter().map(|&(i, r)| (hashes[i], r)).collect();
                (label.to_string(), (*default, per))
            })
            .collect();
        let shared = Arc::new(Shared {
            data: hashes.iter().copied().zip(chunks).collect(),
            rules,
            state: Mutex::default(),
            changed: Condvar::new(),
            connects: peers.iter().map(|_| AtomicUsize::new(0)).collect(),
            aborts: peers.iter().map(|_| AtomicUsize::new(0)).collect(),
        });
        let plan = Plan {
            filename: "f.bin".into(),
            chunks: hashes,
            sources: has.iter().map(|h| h.to_vec()).collect(),
            peers,
        };
        Setup {
            plan,
            shared,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    impl Setup {
        fn run(&self) -> (Result<Report, DownloadError>, Duration) {
            let store = ChunkStore::create(self.dir.path().join("charlie")).unwrap();
            let opts = Options {
                reconnect_backoff: Duration::from_millis(10),
                verifiers: 2,
                ..Options::default()
            };
            let hook = Hook(self.shared.clone());
            let start = Instant::now();
            let r = download_with(
                &self.plan,
                &store,
                &FakeConnector(self.shared.clone()),
                &opts,
                &ProgressBar::hidden(),
                Some(&hook),
            );
            (r, start.elapsed())
        }

        /// Fetches of chunk `i` that returned, from every peer.
        fn returned(&self, i: usize) -> usize {
            let st = self.shared.state.lock().unwrap();
            let h = self.plan.chunks[i];
            st.returned
                .iter()
                .filter(|((_, x), _)| *x == h)
                .map(|(_, (n, _))| n)
                .sum()
        }

        fn assert_each_verified_once(&self) {
            let st = self.shared.state.lock().unwrap();
            for (i, h) in self.plan.chunks.iter().enumerate() {
                assert_eq!(st.verified.get(h), Some(&1), "chunk {i}");
            }
            let store = ChunkStore::new(self.dir.path().join("charlie"));
            for h in &self.plan.chunks {
                assert!(store.verify(h).unwrap());
            }
        }

        fn connects(&self, p: PeerId) -> usize {
            self.shared.connects[p].load(Ordering::SeqCst)
        }

        fn aborts(&self, p: PeerId) -> usize {
            self.shared.aborts[p].load(Ordering::SeqCst)
        }
    }

    const OK: (When, What) = (When::Now, What::Chunk);

    /// fast (0) and slow (1) both hold all `n` chunks; slow's first piece is answered
    /// `when`; fast starts only once slow has a piece of its own.
    fn tail_on_slow_peer(when: When) {
        let n = 6;
        let all: &[PeerId] = &[0, 1];
        let s = setup(
            n,
            &vec![all; n],
            &[
                ("fast", (When::PeerStarted(1), What::Chunk), &[]),
                ("slow", (when, What::Chunk), &[]),
            ],
        );
        let (r, took) = s.run();
        let report = r.unwrap();
        assert!(took < PROMPT, "waited for the slow peer: {took:?}");
        assert_eq!(report.endgame_duplicates, 1, "{report:?}");
        assert_eq!(report.peers[0].chunks, n, "{report:?}");
        assert_eq!(report.peers[1].chunks, 0, "{report:?}");
        assert_eq!(report.retries, 0);
        let bytes: u64 = s
            .plan
            .chunks
            .iter()
            .map(|h| s.shared.data[h].len() as u64)
            .sum();
        assert_eq!(report.bytes, bytes, "the winning copy counts once");
        assert_eq!(report.peers[0].bytes, bytes);
        assert_eq!(report.peers[1].bytes, 0);
        s.assert_each_verified_once();
        // A stuck fetch is still running at the end: aborted, and that is not one of its
        // failures. A slow one answers as soon as the duplicate has won, which may be just
        // before or just after the end, so it is aborted at most once.
        if matches!(when, When::Never) {
            assert_eq!(s.aborts(1), 1);
        } else {
            assert!(s.aborts(1) <= 1, "aborted {} times", s.aborts(1));
        }
        assert!(report.peers[1].failures.is_empty(), "{report:?}");
        assert!(report.peers[1].dropped.is_none(), "{report:?}");
        // One connection per peer for the whole download.
        assert_eq!((s.connects(0), s.connects(1)), (1, 1));
        assert!(
            report.summary("f.bin").ends_with("; endgame duplicates 1"),
            "{}",
            report.summary("f.bin")
        );
    }

    #[test]
    fn a_slow_peer_holding_the_last_piece_is_overtaken_by_a_duplicate() {
        // Slow: answers only once the duplicate has won (well after the end, in effect).
        tail_on_slow_peer(When::Verified);
    }

    #[test]
    fn a_stuck_peer_is_aborted_when_the_download_is_complete() {
        tail_on_slow_peer(When::Never);
    }

    #[test]
    fn no_duplicate_when_every_piece_is_served_in_time() {
        let s = setup(
            4,
            &[&[0], &[1], &[0], &[1]],
            &[("a", OK, &[]), ("b", OK, &[])],
        );
        let report = s.run().0.unwrap();
        assert_eq!(report.endgame_duplicates, 0);
        assert!(!report.summary("f.bin").contains("endgame"));
        s.assert_each_verified_once();
    }

    /// Chunk 0 held by fast (0) and slow (1); chunk 1 only by fast. Fast takes chunk 1
    /// first (rarest first), then duplicates chunk 0, held by slow until fast's copy has
    /// ended (`what` fails it) and 300 ms more, so that the failure is handled while the
    /// download still runs; then slow's copy verifies.
    #[test]
    fn a_failed_duplicate_does_not_requeue_or_fail_the_piece() {
        for what in [What::NotFound, What::Garbage, What::Break] {
            let s = setup(
                2,
                &[&[0, 1], &[0]],
                &[
                    (
                        "fast",
                        (When::PeerStarted(1), What::Chunk),
                        &[(0, (When::Now, what))],
                    ),
                    (
                        "slow",
                        (When::OtherReturned(Duration::from_millis(300)), What::Chunk),
                        &[],
                    ),
                ],
            );
            let report = s.run().0.unwrap_or_else(|e| panic!("{what:?}: {e}"));
            assert_eq!(report.endgame_duplicates, 1, "{what:?}: {report:?}");
            assert_eq!(report.peers[1].chunks, 1, "{what:?}: {report:?}");
            assert_eq!(report.peers[0].chunks, 1, "{what:?}: {report:?}");
            assert_eq!(report.peers[0].failures.len(), 1, "{what:?}: {report:?}");
            // Not requeued: nobody fetched chunk 0 a third time, no retry counted.
            assert_eq!(report.retries, 0, "{what:?}: {report:?}");
            assert_eq!(s.returned(0), 2, "{what:?}");
            s.assert_each_verified_once();
        }
    }

    /// The duplicate wins; the original fetch then fails (or delivers a losing copy)
    /// while the download is still running (chunk 2, on a third peer, waits for it): the
    /// piece stays done and is not fetched again.
    #[test]
    fn a_failure_of_the_losing_copy_after_the_win_changes_nothing() {
        for what in [What::NotFound, What::Garbage, What::Break, What::Chunk] {
            let s = setup(
                3,
                &[&[0, 1], &[0], &[2]],
                &[
                    ("fast", (When::PeerStarted(1), What::Chunk), &[]),
                    ("slow", (When::Verified, what), &[]),
                    (
                        "last",
                        (
                            When::AfterReturnOf(1, Duration::from_millis(300)),
                            What::Chunk,
                        ),
                        &[],
                    ),
                ],
            );
            let report = s.run().0.unwrap_or_else(|e| panic!("{what:?}: {e}"));
            assert_eq!(report.endgame_duplicates, 1, "{what:?}: {report:?}");
            assert_eq!(report.retries, 0, "{what:?}: {report:?}");
            assert_eq!(s.returned(0), 2, "{what:?}");
            assert_eq!(report.peers[0].chunks, 2, "{what:?}: {report:?}");
            assert_eq!(report.peers[1].chunks, 0, "{what:?}: {report:?}");
            // At most the one failure (none if its report came after the end).
            let failures = usize::from(what != What::Chunk);
            assert!(report.peers[1].failures.len() <= failures, "{report:?}");
            s.assert_each_verified_once();
        }
    }

    #[test]
    fn fetch_errors_name_their_cause() {
        use FetchCause as C;
        let io = |k: io::ErrorKind| FetchError::Io(k.into());
        assert_eq!(FetchError::NotFound.cause(), C::NotFound);
        assert_eq!(io(io::ErrorKind::TimedOut).cause(), C::TimedOut);
        assert_eq!(
            io(io::ErrorKind::ConnectionRefused).cause(),
            C::ConnectionRefused
        );
        assert_eq!(io(io::ErrorKind::ConnectionReset).cause(), C::Reset);
        assert_eq!(io(io::ErrorKind::UnexpectedEof).cause(), C::Reset);
        let short = FetchError::ShortRead {
            expected: 4,
            got: 1,
        };
        assert_eq!(short.cause(), C::ShortRead);
        assert!(short.breaks_connection());
        let refused = FetchError::Refused("ERROR INVALID_REQUEST".into());
        assert!(!refused.breaks_connection());
        assert_eq!(refused.to_string(), "peer answered ERROR INVALID_REQUEST");
        let h = crate::digest::Digest::from(ChunkHash::of(b"a"));
        let wrong = FetchError::WrongPiece { asked: h, got: h };
        assert!(wrong.breaks_connection());
        assert!(wrong.to_string().contains("got a CHUNK labelled"));
    }

    /// The verifier alone: of two good copies of one piece, the first is written and
    /// reported, the second is neither (the chunk file, removed in between, stays gone).
    #[test]
    fn only_the_first_verified_copy_is_written_and_reported() {
        let s = setup(1, &[&[0, 1]], &[("a", OK, &[]), ("b", OK, &[])]);
        let store = ChunkStore::create(s.dir.path().join("charlie")).unwrap();
        let pieces = group_pieces(&s.plan);
        let indexes = PieceIndexes::new(&pieces);
        let claimed = [AtomicBool::new(false)];
        let finished = AtomicBool::new(false);
        let hook = Hook(s.shared.clone());
        let opts = Options::default();
        let connector = FakeConnector(s.shared.clone());
        let ctx = Ctx {
            plan: &s.plan,
            store: &store,
            connector: &connector,
            opts: &opts,
            indexes: &indexes,
            on_verified: Some(&hook),
            claimed: &claimed,
            finished: &finished,
        };
        let hash = s.plan.chunks[0];
        let data = s.shared.data[&hash].clone();
        let (jobs_tx, jobs) = unbounded();
        let (ev_tx, events) = unbounded();
        let (pool_tx, pool) = unbounded();
        let job = |peer| VerifyJob {
            piece: 0,
            peer,
            hash,
            buf: data.clone(),
        };
        thread::scope(|sc| {
            sc.spawn(|| verifier(&ctx, jobs, ev_tx, pool_tx));
            jobs_tx.send(job(1)).unwrap();
            assert!(matches!(events.recv().unwrap(), Event::Verified(0, 1, _)));
            assert!(store.verify(&hash).unwrap());
            store.remove(&hash).unwrap();
            jobs_tx.send(job(0)).unwrap();
            assert!(matches!(events.recv().unwrap(), Event::Duplicate(0, 0)));
            drop(jobs_tx);
        });
        assert!(!store.contains(&hash), "the losing copy was written");
        assert_eq!(s.shared.state.lock().unwrap().verified[&hash], 1);
        assert_eq!(pool.iter().count(), 2, "both buffers went back to the pool");
    }
}
