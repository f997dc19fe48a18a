//! The coordinator: the one owner of the schedule. It runs on the caller's thread, reads
//! every event (workers, verifiers, the live swarm) from channels, and is the only writer
//! of which piece is pending, in flight, done or failed and which peers are alive, so no
//! locks are needed. It owns no thread and no socket: the run loop ([`super::run`])
//! feeds it events and starts the workers it asks for ([`Coordinator::take_starts`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use indicatif::ProgressBar;

use crate::bitfield::Bitfield;
use crate::digest::Digest;

use super::msg::{Assignment, Event, Failure, PieceId};
use super::options::{MAX_FETCHES_PER_PIECE, Options};
use super::plan::{PeerId, PeerInfo, Plan};
use super::report::{DownloadError, PeerFate, PeerReport, Report, Why, fold};
use super::source::{AbortHandle, FetchCause, PieceRequest};
use super::swarm::SwarmEvent;

/// Most peers a download ever keeps a record of (live or dropped): a churning swarm may
/// name endless addresses, and each record costs a have-bitfield. Joins beyond it are
/// ignored; [`Options::max_live_peers`](super::Options::max_live_peers) bounds the live ones.
pub const MAX_PEER_RECORDS: usize = 1024;

/// Most peers kept waiting for a live slot (offered while the most live peers were): a
/// tracker answers 50 peers or more at once, and when the first 32 are unreachable the
/// rest must still be tried, not forgotten until the next announce half an hour later.
/// As many as there may be records; an address and a label each, some 100 KB at most.
pub const MAX_WAITING: usize = MAX_PEER_RECORDS;

#[derive(Debug)]
pub(super) struct Piece {
    pub(super) digest: Digest,
    len: Option<u64>,
    pub(super) indexes: Vec<usize>,
    /// Live peers still worth asking for this piece.
    candidates: Vec<PeerId>,
    /// Why a peer did not deliver it, the latest per peer.
    why: Vec<(PeerId, Why)>,
    state: PieceState,
    /// Peers whose fetch of this piece has not ended yet (assigned, and no outcome event
    /// received): at most [`MAX_FETCHES_PER_PIECE`].
    fetchers: Vec<PeerId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PieceState {
    Pending,
    InFlight,
    Done,
    Failed,
}

struct PeerState {
    info: PeerInfo,
    /// What it has (positions), as far as we know.
    has: Bitfield,
    /// Whether `has` came from the peer or the plan (else the connection will tell).
    has_known: bool,
    /// Pieces this peer has, rarest first when it was built.
    queue: Vec<PieceId>,
    cursor: usize,
    /// Pieces given back by other peers or announced later; served before `queue`.
    retry: VecDeque<PieceId>,
    idle: bool,
    /// The piece this peer's worker is fetching: set when it is assigned, cleared when
    /// the worker says it is idle again.
    fetching: Option<PieceId>,
    /// Whether its worker thread was started (and not ended since).
    started: bool,
    dead_at: Option<Instant>,
    abort: Option<Box<dyn AbortHandle>>,
    bad_in_a_row: u32,
    assign: Option<Sender<Assignment>>,
    report: PeerReport,
}

impl PeerState {
    fn dead(&self) -> bool {
        self.dead_at.is_some()
    }
}

pub(super) struct Coordinator {
    pieces: Vec<Piece>,
    /// Position → piece.
    piece_of: Vec<PieceId>,
    peers: Vec<PeerState>,
    by_addr: HashMap<SocketAddr, PeerId>,
    /// Pieces in state Pending (see [`Coordinator::set_state`]).
    pending: usize,
    /// Pieces in state Pending or InFlight: the download ends when none is left.
    open: usize,
    /// Pieces in state InFlight, oldest first: endgame duplicates the oldest. At most a
    /// few per peer, so scanning it is cheap.
    in_flight: Vec<PieceId>,
    /// Peers whose worker must be started (the run loop owns the threads).
    to_start: Vec<PeerId>,
    /// Peers offered while the most live peers were, oldest first (at most
    /// [`MAX_WAITING`]): each joins when a live peer is dropped.
    waiting: VecDeque<(PeerInfo, Option<Bitfield>)>,
    /// Whether the live swarm is still open: a piece nobody has then waits.
    live: bool,
    retries: usize,
    rejected: usize,
    duplicates: usize,
    bytes: u64,
    max_bad: u32,
    tie_seed: u64,
    rejoin_after: Duration,
    ban_liars: bool,
    /// Most live peers at once ([`Options::max_live_peers`]).
    max_live: usize,
    last_progress: Instant,
}

/// Groups positions by digest (and length): equal digests are equal contents.
fn group_pieces(plan: &Plan) -> (Vec<Piece>, Vec<PieceId>) {
    let mut by_digest: HashMap<(Digest, Option<u64>), PieceId> = HashMap::new();
    let mut pieces: Vec<Piece> = Vec::new();
    let mut piece_of = Vec::with_capacity(plan.len());
    for (i, d) in plan.digests.iter().enumerate() {
        let len = plan.piece_len(i);
        let id = *by_digest.entry((*d, len)).or_insert_with(|| {
            pieces.push(Piece {
                digest: *d,
                len,
                indexes: Vec::new(),
                candidates: Vec::new(),
                why: Vec::new(),
                state: PieceState::Pending,
                fetchers: Vec::new(),
            });
            pieces.len() - 1
        });
        pieces[id].indexes.push(i);
        piece_of.push(id);
    }
    (pieces, piece_of)
}

impl Coordinator {
    /// The schedule of `plan` with `have` (positions) already verified on disk.
    pub(super) fn new(plan: &Plan, have: &Bitfield, live: bool, opts: &Options) -> Self {
        let (pieces, piece_of) = group_pieces(plan);
        let mut c = Coordinator {
            pieces,
            piece_of,
            peers: Vec::new(),
            by_addr: HashMap::new(),
            pending: 0,
            open: 0,
            in_flight: Vec::new(),
            to_start: Vec::new(),
            waiting: VecDeque::new(),
            live,
            retries: 0,
            rejected: 0,
            duplicates: 0,
            bytes: 0,
            max_bad: opts.max_bad_chunks,
            tie_seed: opts.tie_seed,
            rejoin_after: opts.rejoin_after,
            ban_liars: opts.ban_liars,
            max_live: opts.max_live_peers.clamp(1, MAX_PEER_RECORDS),
            last_progress: Instant::now(),
        };
        // A content counts as had when any of its positions verified on disk (a hash
        // directory keeps one file per content).
        for id in 0..c.pieces.len() {
            if c.pieces[id].indexes.iter().any(|&i| have.has(i)) {
                c.pieces[id].state = PieceState::Done;
            } else {
                c.pending += 1;
            }
        }
        c.open = c.pending;
        for spec in &plan.peers {
            c.join(spec.info.clone(), spec.has.clone());
        }
        // Rarity is only known once every starting peer is in: order again.
        for p in 0..c.peers.len() {
            let mut q = std::mem::take(&mut c.peers[p].queue);
            c.sort_rarest_first(&mut q);
            c.peers[p].queue = q;
        }
        if !c.live {
            c.fail_unreachable();
        }
        c
    }

    /// Peers known (live or dropped).
    pub(super) fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Peers whose worker is running.
    pub(super) fn running(&self) -> usize {
        self.peers.iter().filter(|p| p.started).count()
    }

    /// Each piece's positions, by piece id.
    pub(super) fn positions(&self) -> impl Iterator<Item = &[usize]> {
        self.pieces.iter().map(|p| p.indexes.as_slice())
    }

    /// Pieces already done, counted in positions.
    pub(super) fn done_positions(&self) -> usize {
        self.pieces
            .iter()
            .filter(|p| p.state == PieceState::Done)
            .map(|p| p.indexes.len())
            .sum()
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

    /// Without a live swarm, a pending piece nobody has fails at once.
    fn fail_unreachable(&mut self) {
        for id in 0..self.pieces.len() {
            if self.pieces[id].state == PieceState::Pending && self.pieces[id].candidates.is_empty()
            {
                self.set_state(id, PieceState::Failed);
            }
        }
    }

    /// The live swarm has closed: from now on, a piece nobody has fails.
    pub(super) fn swarm_closed(&mut self) {
        if self.live {
            self.live = false;
            self.fail_unreachable();
        }
    }

    fn live_peers(&self) -> usize {
        self.peers.iter().filter(|p| !p.dead()).count()
    }

    /// A peer joins, knowing what it has or not. Returns its id if it is (or is again)
    /// a member.
    pub(super) fn join(&mut self, info: PeerInfo, has: Option<Bitfield>) -> Option<PeerId> {
        if let Some(&p) = self.by_addr.get(&info.addr) {
            let peer = &self.peers[p];
            let banned =
                self.ban_liars && matches!(peer.report.dropped, Some(PeerFate::BadInARow(..)));
            let rejoin = !banned
                && peer
                    .dead_at
                    .is_some_and(|t| t.elapsed() >= self.rejoin_after);
            if !rejoin || peer.started || self.live_peers() >= self.max_live {
                return None;
            }
            log::info!("{} rejoins", peer.report.label);
            let peer = &mut self.peers[p];
            peer.dead_at = None;
            peer.bad_in_a_row = 0;
            peer.report.dropped = None;
            peer.queue.clear();
            peer.cursor = 0;
            peer.retry.clear();
            let known = has.or_else(|| peer.has_known.then(|| peer.has.clone()));
            peer.has = Bitfield::new(self.piece_of.len());
            peer.has_known = false;
            self.learn(p, known);
            return Some(p);
        }
        if self.peers.len() >= MAX_PEER_RECORDS {
            log::debug!("ignoring peer {info}: enough peers");
            return None;
        }
        if self.live_peers() >= self.max_live {
            if self.waiting.len() < MAX_WAITING {
                log::debug!("peer {info} waits for a live slot");
                self.waiting.push_back((info, has));
            } else {
                log::debug!("ignoring peer {info}: enough peers waiting");
            }
            return None;
        }
        let p = self.peers.len();
        self.by_addr.insert(info.addr, p);
        self.peers.push(PeerState {
            report: PeerReport {
                label: info.label.clone(),
                ..Default::default()
            },
            info,
            has: Bitfield::new(self.piece_of.len()),
            has_known: false,
            queue: Vec::new(),
            cursor: 0,
            retry: VecDeque::new(),
            idle: false,
            fetching: None,
            started: false,
            dead_at: None,
            abort: None,
            bad_in_a_row: 0,
            assign: None,
        });
        self.learn(p, has);
        Some(p)
    }

    /// Takes in what peer `p` has (or, with `None`, that it will tell on connecting),
    /// and starts its worker if it has something we need.
    fn learn(&mut self, p: PeerId, has: Option<Bitfield>) {
        match has {
            Some(h) => self.set_has(p, h),
            None => {
                if !self.peers[p].started {
                    // Only the connection can tell: connect to learn.
                    self.peers[p].started = true;
                    self.to_start.push(p);
                }
            }
        }
    }

    /// Peer `p` has exactly `has` (positions) now.
    pub(super) fn set_has(&mut self, p: PeerId, has: Bitfield) {
        if has.len() != self.piece_of.len() || self.peers[p].dead() {
            return;
        }
        let old = std::mem::replace(&mut self.peers[p].has, Bitfield::new(0));
        let first = !self.peers[p].has_known;
        let mut wanted = Vec::new();
        for i in has.ones() {
            if (first || !old.has(i))
                && let Some(id) = self.add_holder(p, i)
            {
                wanted.push(id);
            }
        }
        if !first {
            for i in old.ones().filter(|&i| !has.has(i)) {
                let id = self.piece_of[i];
                let still = self.pieces[id].indexes.iter().any(|&j| has.has(j));
                if !still {
                    self.remove_holder(id, p);
                }
            }
        }
        let peer = &mut self.peers[p];
        peer.has = has;
        peer.has_known = true;
        self.enqueue(p, wanted, first);
    }

    /// Peer `p` announced positions `idx` too.
    fn add_haves(&mut self, p: PeerId, idx: &[usize]) {
        if self.peers[p].dead() {
            return;
        }
        let mut wanted = Vec::new();
        for &i in idx {
            if i < self.piece_of.len()
                && self.peers[p].has.set(i)
                && let Some(id) = self.add_holder(p, i)
            {
                wanted.push(id);
            }
        }
        self.peers[p].has_known = true;
        self.enqueue(p, wanted, false);
    }

    /// `p` has position `i`: the piece's id if we still need it.
    fn add_holder(&mut self, p: PeerId, i: usize) -> Option<PieceId> {
        let id = self.piece_of[i];
        let piece = &mut self.pieces[id];
        if !matches!(piece.state, PieceState::Pending | PieceState::InFlight) {
            return None;
        }
        if piece.candidates.contains(&p) {
            return None;
        }
        piece.candidates.push(p);
        Some(id)
    }

    fn remove_holder(&mut self, id: PieceId, p: PeerId) {
        self.pieces[id].candidates.retain(|&c| c != p);
        if self.pieces[id].state == PieceState::Pending && self.pieces[id].candidates.is_empty() {
            self.requeue(id, false);
        }
    }

    /// Rarest first: pieces few peers have go before shared ones, so that the shared ones
    /// are left to whichever peer is free and every peer stays busy to the end. Ties in
    /// file order, or shuffled by [`Options::tie_seed`] so that peers of a swarm
    /// do not all want the same piece.
    fn enqueue(&mut self, p: PeerId, mut wanted: Vec<PieceId>, first: bool) {
        self.sort_rarest_first(&mut wanted);
        let peer = &mut self.peers[p];
        if first {
            peer.queue.extend(wanted);
        } else {
            peer.retry.extend(wanted);
        }
        let has_work = peer.cursor < peer.queue.len() || !peer.retry.is_empty();
        if has_work && !peer.started && !peer.dead() {
            peer.started = true;
            self.to_start.push(p);
        }
    }

    fn sort_rarest_first(&self, ids: &mut [PieceId]) {
        let seed = self.tie_seed;
        let tie = |id: PieceId| {
            if seed == 0 {
                id as u64
            } else {
                (id as u64 ^ seed)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .rotate_left(29)
            }
        };
        ids.sort_by_key(|&id| (self.pieces[id].candidates.len(), tie(id)));
    }

    /// Workers the run loop must start now: (id, peer).
    pub(super) fn take_starts(&mut self) -> Vec<(PeerId, PeerInfo)> {
        std::mem::take(&mut self.to_start)
            .into_iter()
            .map(|p| (p, self.peers[p].info.clone()))
            .collect()
    }

    /// The worker of `p` was started with this channel.
    pub(super) fn started(&mut self, p: PeerId, assign: Sender<Assignment>) {
        self.peers[p].assign = Some(assign);
    }

    fn note(&mut self, p: PeerId, failure: String) {
        log::warn!("{}: {failure}", self.peers[p].report.label);
        self.peers[p].report.failures.push(failure);
    }

    fn set_why(&mut self, id: PieceId, p: PeerId, why: Why) {
        let w = &mut self.pieces[id].why;
        w.retain(|(q, _)| *q != p);
        w.push((p, why));
    }

    fn chunk_name(&self, id: PieceId) -> String {
        format!("chunk {}", self.pieces[id].indexes[0])
    }

    /// Handles one event; `Err` ends the download.
    pub(super) fn handle(
        &mut self,
        ev: Event,
        progress: &ProgressBar,
    ) -> Result<(), DownloadError> {
        match ev {
            Event::Idle(p) => {
                self.peers[p].idle = true;
                self.peers[p].fetching = None;
            }
            Event::Connected(p, abort, has) => {
                self.peers[p].abort = abort;
                if let Some(h) = has {
                    self.set_has(p, h);
                }
            }
            Event::Has(p, idx) => self.add_haves(p, &idx),
            Event::Verified(id, p, n) => {
                self.fetch_ended(id, p);
                self.set_state(id, PieceState::Done);
                self.last_progress = Instant::now();
                let positions = self.pieces[id].indexes.len();
                let peer = &mut self.peers[p];
                peer.bad_in_a_row = 0;
                peer.report.chunks += positions;
                peer.report.bytes += n;
                self.bytes += n;
                progress.inc(positions as u64);
                log::debug!(
                    "chunk {} verified from {}",
                    self.pieces[id].indexes[0],
                    self.peers[p].report.label
                );
            }
            Event::Duplicate(id, p) => {
                // A good copy, but not the first: it counts nowhere.
                self.fetch_ended(id, p);
                self.peers[p].bad_in_a_row = 0;
                log::debug!(
                    "chunk {} from {}: another copy verified first, dropped",
                    self.pieces[id].indexes[0],
                    self.peers[p].report.label
                );
            }
            Event::Failed(id, p, failure) => self.failed(id, p, failure),
            Event::PeerDead(p, fate) => self.drop_peer(p, fate),
            Event::Exited(p) => {
                let peer = &mut self.peers[p];
                peer.started = false;
                peer.idle = false;
                peer.fetching = None;
                peer.abort = None;
                if !peer.dead() {
                    // It ended without a verdict (the download is ending): not the peer's
                    // fault, but nothing will be fetched from it any more.
                    self.drop_peer(p, PeerFate::WorkerStopped);
                }
            }
            Event::StoreFailed(index, source) => {
                return Err(DownloadError::Store {
                    index,
                    location: String::new(),
                    source,
                });
            }
        }
        self.assign_idle();
        Ok(())
    }

    fn failed(&mut self, id: PieceId, p: PeerId, failure: Failure) {
        self.fetch_ended(id, p);
        let name = self.chunk_name(id);
        match failure {
            Failure::NotFound => {
                self.note(p, format!("{name}: CHUNK_NOT_FOUND"));
                self.set_why(id, p, Why::Fetch(FetchCause::NotFound, None));
                self.give_up_piece_on(id, p);
            }
            Failure::Answered(_) | Failure::BadDigest => {
                let why = match failure {
                    Failure::Answered(a) => Why::Answered(a),
                    _ => {
                        self.rejected += 1;
                        Why::BadDigest(self.pieces[id].digest.algo())
                    }
                };
                self.note(p, format!("{name}: {why}"));
                self.set_why(id, p, why.clone());
                self.give_up_piece_on(id, p);
                self.peers[p].bad_in_a_row += 1;
                let n = self.peers[p].bad_in_a_row;
                if n >= self.max_bad {
                    self.drop_peer(p, PeerFate::BadInARow(n, Box::new(why)));
                }
            }
            Failure::Broken(cause, detail, text) => {
                self.note(p, format!("{name}: {text}"));
                self.set_why(id, p, Why::Fetch(cause, detail));
                // Prefer another peer for this piece, but keep this one as a last
                // resort: its worker reconnects once before giving up on it.
                if self.pieces[id].candidates.len() > 1 {
                    self.give_up_piece_on(id, p);
                } else {
                    self.requeue_after_failure(id);
                }
            }
        }
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

    /// Makes a piece pending again for its remaining candidates. With none left it fails,
    /// unless the live swarm is open: then it waits for a peer that has it. `retry` says
    /// whether this counts as a repeated fetch in the report.
    fn requeue(&mut self, id: PieceId, retry: bool) {
        if self.pieces[id].candidates.is_empty() && !self.live {
            self.set_state(id, PieceState::Failed);
            return;
        }
        self.set_state(id, PieceState::Pending);
        self.retries += usize::from(retry);
        for &c in &self.pieces[id].candidates {
            self.peers[c].retry.push_back(id);
        }
    }

    fn drop_peer(&mut self, p: PeerId, fate: PeerFate) {
        if self.peers[p].dead() {
            return;
        }
        log::warn!("dropping peer {}: {fate}", self.peers[p].report.label);
        let peer = &mut self.peers[p];
        peer.dead_at = Some(Instant::now());
        peer.idle = false;
        peer.assign = None; // the worker sees its channel close and exits
        peer.report.dropped = Some(fate);
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
        self.admit_waiting();
    }

    /// Joins waiting peers while live slots are free (not once the download is over:
    /// they would only be started to be stopped).
    fn admit_waiting(&mut self) {
        while !self.over() && self.live_peers() < self.max_live {
            let Some((info, has)) = self.waiting.pop_front() else {
                return;
            };
            self.join(info, has);
        }
    }

    fn peer_leaves(&mut self, addr: SocketAddr) {
        if let Some(&p) = self.by_addr.get(&addr) {
            self.drop_peer(p, PeerFate::Left);
        }
    }

    /// Applies a change from the live swarm.
    pub(super) fn swarm_event(&mut self, ev: SwarmEvent) {
        match ev {
            SwarmEvent::Join(spec) => {
                self.join(spec.info, spec.has);
            }
            SwarmEvent::Has { addr, has } => {
                if let Some(&p) = self.by_addr.get(&addr) {
                    self.set_has(p, has);
                }
            }
            SwarmEvent::Leave(addr) => self.peer_leaves(addr),
        }
        self.assign_idle();
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
            if !self.peers[p].idle || self.peers[p].dead() {
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
            let piece = &self.pieces[id];
            let req = PieceRequest {
                index: piece.indexes[0],
                digest: piece.digest,
                len: piece.len,
            };
            let sent = self.peers[p]
                .assign
                .as_ref()
                .is_some_and(|tx| tx.send(Assignment::Fetch(id, req)).is_ok());
            if sent {
                if duplicate {
                    self.duplicates += 1;
                    log::debug!(
                        "endgame: {} also asked for chunk {}",
                        self.peers[p].report.label,
                        req.index
                    );
                } else {
                    self.set_state(id, PieceState::InFlight);
                }
                self.pieces[id].fetchers.push(p);
                self.peers[p].idle = false;
                self.peers[p].fetching = Some(id);
            } else {
                // The worker is gone: the piece, still pending, goes to the others.
                self.drop_peer(p, PeerFate::WorkerStopped);
            }
        }
    }

    /// Ends the download for the workers: idle ones see their channel close and exit;
    /// the connections of those still fetching (a losing endgame copy, a stuck peer) are
    /// aborted, after `finished` is set so that their failure is not reported.
    pub(super) fn finish(&mut self, finished: &AtomicBool) {
        finished.store(true, Ordering::SeqCst);
        for p in &mut self.peers {
            p.assign = None;
            if let (Some(id), Some(abort)) = (p.fetching, &p.abort) {
                log::debug!(
                    "aborting {}'s fetch of chunk {}: download over",
                    p.report.label,
                    self.pieces[id].indexes[0]
                );
                abort.abort();
            }
        }
    }

    /// Whether the download is over (every piece done or failed).
    pub(super) fn over(&self) -> bool {
        self.open == 0
    }

    /// Whether nothing has happened for `stall`: nothing verified, nothing in flight.
    pub(super) fn stalled(&self, stall: Option<Duration>) -> bool {
        stall.is_some_and(|s| self.in_flight.is_empty() && self.last_progress.elapsed() >= s)
    }

    /// Fails every open piece (the caller gives up).
    pub(super) fn give_up(&mut self) {
        self.live = false;
        for id in 0..self.pieces.len() {
            if matches!(
                self.pieces[id].state,
                PieceState::Pending | PieceState::InFlight
            ) {
                self.set_state(id, PieceState::Failed);
            }
        }
    }

    /// The report, or the error naming what is missing and why.
    pub(super) fn outcome(&self) -> Result<Report, DownloadError> {
        let report = Report {
            bytes: self.bytes,
            elapsed: Duration::ZERO,
            peers: self.peers.iter().map(|p| p.report.clone()).collect(),
            resumed: 0,
            retries: self.retries,
            rejected: self.rejected,
            endgame_duplicates: self.duplicates,
        };
        let failed: Vec<&Piece> = self
            .pieces
            .iter()
            .filter(|p| p.state != PieceState::Done)
            .collect();
        if failed.is_empty() {
            return Ok(report);
        }
        let mut missing: Vec<usize> = failed
            .iter()
            .flat_map(|p| p.indexes.iter().copied())
            .collect();
        missing.sort_unstable();
        let per_piece = failed.iter().map(|piece| {
            let mut holders: Vec<(String, Why)> = Vec::new();
            // Every peer that had it (what a peer has is kept after it is dropped): not
            // kept per piece, which would cost a list per piece for the error alone.
            let had = |q: usize| piece.indexes.iter().any(|&i| self.peers[q].has.has(i));
            for q in (0..self.peers.len()).filter(|&q| had(q)) {
                let why = piece
                    .why
                    .iter()
                    .find(|(r, _)| *r == q)
                    .map(|(_, w)| w.clone())
                    .or_else(|| self.peers[q].report.dropped.clone().map(Why::Dropped));
                if let Some(why) = why {
                    holders.push((self.peers[q].report.label.clone(), why));
                }
            }
            (piece.indexes[0], holders)
        });
        let failures = fold(per_piece.collect::<Vec<_>>());
        Err(DownloadError::Incomplete {
            missing,
            failures,
            report: Box::new(report),
        })
    }
}
