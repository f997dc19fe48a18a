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
//! A protocol plugs in through [`Connector`] and [`ChunkSource`]: the course protocol's
//! implementation is in `crate::course::client`.

pub mod assemble;
pub mod plan;

use std::collections::VecDeque;
use std::fmt;
use std::io;
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
}

/// Told of every chunk as soon as it is verified and stored, on the verifier's thread,
/// while its bytes are still in memory: Charlie assembles the final file with them
/// ([`assemble::Assembler`]) instead of reading every chunk back after the download.
pub trait Verified: Sync {
    /// `data` hashes to `hash` and is on disk; `indexes` are the file positions with
    /// this content. Must not block for long: a verifier waits for it.
    fn verified(&self, hash: &ChunkHash, indexes: &[usize], data: &[u8]);
}

/// Why one fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The peer says it does not have the chunk; the connection is still good.
    #[error("chunk not found")]
    NotFound,
    /// The peer answered with an error instead of the chunk; the connection is still good.
    #[error("peer answered {0}")]
    Refused(String),
    /// The reply broke the protocol; the connection is out of step and must be replaced.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// I/O failure, timeout or closed connection.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl FetchError {
    fn breaks_connection(&self) -> bool {
        matches!(self, Self::Protocol(_) | Self::Io(_))
    }
}

/// Tuning of the engine. Each default is a design decision; see its comment.
#[derive(Debug, Clone)]
pub struct Options {
    /// Chunk buffers per peer. Two let a worker fetch the next chunk while its last one is
    /// verified and written. The verifiers are the slower stage (see `verifiers`), so a
    /// third buffer per peer would only wait in their queue: on the benchmark 2, 3 and 4
    /// per peer were within the machine's noise of each other, so the least memory wins.
    /// Peak memory is about `peers × buffers_per_peer × chunk size`.
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
        format!(
            "{filename}: {} bytes in {:.3} s ({:.1} MB/s); chunks from {}; resumed {}; retries {}",
            self.bytes,
            self.elapsed.as_secs_f64(),
            self.mb_per_s(),
            per_peer.join(", "),
            self.resumed,
            self.retries
        )
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
    /// A piece verified and is on disk.
    Verified(PieceId, PeerId, u64),
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
    dead: bool,
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
    let ctx = Ctx {
        plan,
        store,
        connector,
        opts,
        indexes: &indexes,
        on_verified,
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
}

struct Coordinator {
    pieces: Vec<Piece>,
    peers: Vec<PeerState>,
    /// Pieces in state Pending (see [`Coordinator::set_state`]).
    pending: usize,
    in_flight: usize,
    retries: usize,
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
                dead: false,
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
            in_flight: 0,
            retries: 0,
            bytes: 0,
            why,
            max_bad,
        }
    }

    /// Moves a piece to `state`, keeping the count of pending pieces. The count is kept
    /// rather than recounted after every event: recounting made a 65,535-chunk download
    /// quadratic (billions of steps).
    fn set_state(&mut self, id: PieceId, state: PieceState) {
        let piece = &mut self.pieces[id];
        let was = piece.state == PieceState::Pending;
        piece.state = state;
        match (was, state == PieceState::Pending) {
            (true, false) => self.pending -= 1,
            (false, true) => self.pending += 1,
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
                s.spawn(move || worker(id, peer, connector, opts, rx, ev, pool, back, vtx));
            }
        }
        drop((verify_tx, pool_tx, events_tx));

        while self.pending > 0 || self.in_flight > 0 {
            let ev = match events.recv() {
                Ok(ev) => ev,
                Err(_) => break, // every worker and verifier is gone
            };
            match ev {
                Event::Idle(p) => self.peers[p].idle = true,
                Event::Verified(id, p, n) => {
                    self.in_flight -= 1;
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
                Event::NotFound(id, p) => {
                    self.in_flight -= 1;
                    self.note(p, format!("{}: CHUNK_NOT_FOUND", self.chunk_name(id)));
                    self.give_up_piece_on(id, p);
                }
                Event::Bad(id, p, why) => {
                    self.in_flight -= 1;
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
                    self.in_flight -= 1;
                    self.note(p, format!("{}: {why}", self.chunk_name(id)));
                    // Prefer another peer for this piece, but keep this one as a last
                    // resort: its worker reconnects once before giving up on it.
                    if self.pieces[id].candidates.len() > 1 {
                        self.give_up_piece_on(id, p);
                    } else {
                        self.requeue(id, true);
                    }
                }
                Event::PeerDead(p, why) => self.drop_peer(p, why),
                Event::StoreFailed(hash, source) => {
                    self.stop_workers();
                    return Err(DownloadError::Store { hash, source });
                }
            }
            self.assign_idle();
        }
        self.stop_workers();
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

    /// Stops asking `p` for this piece; it goes to another candidate, or fails.
    fn give_up_piece_on(&mut self, id: PieceId, p: PeerId) {
        self.pieces[id].candidates.retain(|&c| c != p);
        self.requeue(id, true);
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

    fn assign_idle(&mut self) {
        for p in 0..self.peers.len() {
            if !self.peers[p].idle || self.peers[p].dead {
                continue;
            }
            let Some(id) = self.next_for(p) else { continue };
            let hash = self.pieces[id].hash;
            let sent = self.peers[p]
                .assign
                .as_ref()
                .is_some_and(|tx| tx.send(Assignment::Fetch(id, hash)).is_ok());
            if sent {
                self.set_state(id, PieceState::InFlight);
                self.peers[p].idle = false;
                self.in_flight += 1;
            } else {
                // The worker is gone: the piece, still pending, goes to the others.
                self.drop_peer(p, "worker stopped".into());
            }
        }
    }

    fn stop_workers(&mut self) {
        for p in &mut self.peers {
            p.assign = None;
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
                    match connector.connect(peer) {
                        Ok(c) => {
                            log::info!("reconnected to {peer}");
                            conn = c;
                            reconnected = true;
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
