//! One torrent's side of every connection: what each [`Conn`] needs (the infohash, our
//! peer id, the store, the rate limits, the log of verified pieces to announce) and the
//! registry of the open connections, which enforces one connection per peer and
//! `--max-peers`, and hands the connections peers opened to us to the download engine.
//!
//! How an incoming connection becomes a download source while the engine stays
//! protocol-free: the listener registers it here; while a download runs, it is kept
//! under its remote address and offered to the engine as a [`SwarmEvent::Join`] of that
//! address; the engine's worker then "connects" through [`crate::bt::source::BtConnector`],
//! which takes the held connection instead of dialling.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::bitfield::Bitfield;
use crate::bt::conn::{Conn, ConnError, Direction};
use crate::bt::metainfo::InfoHash;
use crate::bt::peer_wire::PeerId;
use crate::bt::rate::{Rate, TokenBucket};
use crate::download::{PeerInfo, PeerSpec, SwarmEvent, SwarmSender};
use crate::layout::Layout;
use crate::storage::PieceStore;

/// Connections open at once by default, in and out together (`--max-peers`). A swarm's
/// upload link is shared by whoever is unchoked, so past a few dozen peers each gets a
/// sliver and more connections only cost threads (three per peer we download from, two
/// per peer we only upload to); libtorrent's default per torrent is of the same order.
pub const DEFAULT_MAX_PEERS: usize = 50;

/// The connections of one torrent.
#[derive(Default)]
struct Registry {
    conns: HashMap<u64, Arc<Conn>>,
    /// Addresses we dialled, and whom we found there: a later dial of the same address
    /// while that peer is connected is skipped.
    dialled: HashMap<SocketAddr, PeerId>,
    /// While a download runs: where incoming connections are offered.
    sink: Option<SwarmSender>,
    /// Incoming connections offered to the engine and not yet taken, by address.
    pending: HashMap<SocketAddr, Arc<Conn>>,
}

/// Connection counts, for the summary and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnCounts {
    /// Connections peers opened to us (handshaken and kept).
    pub incoming: u64,
    /// Connections we opened (handshaken and kept).
    pub outgoing: u64,
    /// Second connections to a peer already connected, closed.
    pub duplicates: u64,
}

/// One torrent's connections and what they share.
pub struct Swarm {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id.
    pub our_id: PeerId,
    /// Where pieces are read from (uploads) and what we have.
    pub store: Arc<dyn PieceStore>,
    /// Piece lengths.
    pub layout: Layout,
    pub(crate) up_limit: Option<TokenBucket>,
    pub(crate) down_limit: Option<TokenBucket>,
    max_peers: usize,
    uploaded: AtomicU64,
    downloaded: AtomicU64,
    /// Pieces verified since the start, in order (append-only, at most one entry per
    /// piece): each connection's uploader sends `have` for the entries past its cursor.
    announced: Mutex<Vec<u32>>,
    reg: Mutex<Registry>,
    seeding: AtomicBool,
    closed: AtomicBool,
    next_key: AtomicU64,
    incoming: AtomicU64,
    outgoing: AtomicU64,
    duplicates: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Swarm {
    /// The connections of torrent `info_hash` (pieces as in `layout`) over `store`, whose
    /// [`PieceStore::has`] says what we serve (recheck it first), speaking as `peer_id`.
    pub fn new(
        info_hash: InfoHash,
        peer_id: PeerId,
        store: Arc<dyn PieceStore>,
        layout: &Layout,
    ) -> Arc<Swarm> {
        let seeding = (0..layout.piece_count()).all(|i| store.has(i));
        Arc::new(Swarm {
            info_hash,
            our_id: peer_id,
            store,
            layout: layout.clone(),
            up_limit: None,
            down_limit: None,
            max_peers: DEFAULT_MAX_PEERS,
            uploaded: AtomicU64::new(0),
            downloaded: AtomicU64::new(0),
            announced: Mutex::new(Vec::new()),
            reg: Mutex::new(Registry::default()),
            seeding: AtomicBool::new(seeding),
            closed: AtomicBool::new(false),
            next_key: AtomicU64::new(1),
            incoming: AtomicU64::new(0),
            outgoing: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
        })
    }

    /// The same swarm with uploads limited to `rate` in total. Call before sharing it.
    pub fn with_limit(mut self: Arc<Self>, rate: Option<Rate>) -> Arc<Self> {
        if let Some(me) = Arc::get_mut(&mut self) {
            me.up_limit = rate.map(TokenBucket::new);
        }
        self
    }

    /// The same swarm with received blocks limited to `rate` in total. Call before
    /// sharing it.
    pub fn with_download_limit(mut self: Arc<Self>, rate: Option<Rate>) -> Arc<Self> {
        if let Some(me) = Arc::get_mut(&mut self) {
            me.down_limit = rate.map(TokenBucket::new);
        }
        self
    }

    /// The same swarm with at most `n` connections (at least 1). Call before sharing it.
    pub fn with_max_peers(mut self: Arc<Self>, n: usize) -> Arc<Self> {
        if let Some(me) = Arc::get_mut(&mut self) {
            me.max_peers = n.max(1);
        }
        self
    }

    /// Most connections open at once.
    pub fn max_peers(&self) -> usize {
        self.max_peers
    }

    /// Bytes of blocks sent so far, to all peers.
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    /// Bytes of blocks received so far, from all peers.
    pub fn downloaded(&self) -> u64 {
        self.downloaded.load(Ordering::Relaxed)
    }

    pub(crate) fn count_uploaded(&self, n: u64) {
        self.uploaded.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn count_downloaded(&self, n: u64) {
        self.downloaded.fetch_add(n, Ordering::Relaxed);
    }

    /// Connections kept and refused so far.
    pub fn counts(&self) -> ConnCounts {
        ConnCounts {
            incoming: self.incoming.load(Ordering::Relaxed),
            outgoing: self.outgoing.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
        }
    }

    /// Whether we have every piece (the choker then ranks peers by our upload to them,
    /// and we are interested in nobody).
    pub fn seeding(&self) -> bool {
        self.seeding.load(Ordering::SeqCst)
    }

    /// Whether the swarm was closed ([`Swarm::close`]).
    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Closes every connection and refuses new ones; the choker ends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for c in self.connections() {
            c.close();
        }
    }

    pub(crate) fn next_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Announces a newly verified piece: every connection's uploader sends `have` for it
    /// at once. Pieces out of range are ignored.
    pub fn announce(&self, index: usize) {
        if let Ok(i) = u32::try_from(index)
            && index < self.layout.piece_count()
        {
            lock(&self.announced).push(i);
        }
        for c in self.connections() {
            c.notify();
        }
    }

    pub(crate) fn announced_len(&self) -> usize {
        lock(&self.announced).len()
    }

    /// The pieces announced past `cursor`.
    pub(crate) fn announced_since(&self, cursor: usize) -> Vec<u32> {
        let a = lock(&self.announced);
        a.get(cursor..).map(<[u32]>::to_vec).unwrap_or_default()
    }

    /// What we have now, as a bitfield.
    pub fn have(&self) -> Bitfield {
        Bitfield::from_bools((0..self.layout.piece_count()).map(|i| self.store.has(i)))
    }

    /// The open connections.
    pub fn connections(&self) -> Vec<Arc<Conn>> {
        lock(&self.reg).conns.values().cloned().collect()
    }

    /// Peers we unchoked now (every slot counts).
    pub(crate) fn unchoked_count(&self) -> usize {
        self.connections()
            .iter()
            .filter(|c| !c.is_choking())
            .count()
    }

    /// Admits a handshaken connection, or refuses it: a second connection to a peer
    /// already connected (by peer id), or one past [`Swarm::max_peers`].
    ///
    /// Which of two connections to one peer survives: the newer one is dropped, except
    /// when the two were opened from both ends (each side dialled the other at about the
    /// same time, as two leechers that learn of each other do). Each end would then drop
    /// the one that reached it second, maybe not the same one, and none would be left; so
    /// both ends keep the connection dialled by the peer with the greater peer id, which
    /// they agree on without a word.
    pub(crate) fn admit(&self, conn: &Arc<Conn>) -> Result<(), ConnError> {
        let evicted = {
            let mut reg = lock(&self.reg);
            if self.closed() {
                return Err(ConnError::Closing);
            }
            let existing = reg
                .conns
                .values()
                .find(|c| c.peer_id() == conn.peer_id())
                .cloned();
            let evicted = match existing {
                Some(e) if e.direction() != conn.direction() && self.keeps(conn) => Some(e),
                Some(_) => {
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
                    if conn.direction() == Direction::Outgoing {
                        reg.dialled.insert(conn.addr(), conn.peer_id());
                    }
                    return Err(ConnError::Duplicate);
                }
                None => None,
            };
            if let Some(e) = &evicted {
                reg.conns.remove(&e.key());
                reg.pending.remove(&e.addr());
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            if reg.conns.len() >= self.max_peers {
                return Err(ConnError::Full(reg.conns.len()));
            }
            reg.conns.insert(conn.key(), conn.clone());
            match conn.direction() {
                Direction::Outgoing => {
                    reg.dialled.insert(conn.addr(), conn.peer_id());
                    self.outgoing.fetch_add(1, Ordering::Relaxed);
                }
                Direction::Incoming => {
                    self.incoming.fetch_add(1, Ordering::Relaxed);
                }
            }
            evicted
        };
        if let Some(e) = evicted {
            log::info!(
                "{}: a second connection to this peer; closing the first",
                e.addr()
            );
            e.close();
        }
        Ok(())
    }

    /// Whether `new`, one of two connections to its peer opened from both ends, is the
    /// one kept: the one dialled by the greater peer id.
    fn keeps(&self, new: &Conn) -> bool {
        let ours = self.our_id.0 > new.peer_id().0;
        match new.direction() {
            Direction::Outgoing => ours,
            Direction::Incoming => !ours,
        }
    }

    /// Forgets a closed connection.
    pub(crate) fn remove(&self, conn: &Conn) {
        let mut reg = lock(&self.reg);
        if reg
            .conns
            .get(&conn.key())
            .is_some_and(|c| std::ptr::eq(&**c, conn))
        {
            reg.conns.remove(&conn.key());
        }
        if reg
            .pending
            .get(&conn.addr())
            .is_some_and(|c| c.key() == conn.key())
        {
            reg.pending.remove(&conn.addr());
        }
    }

    /// The open connection that dialling `addr` would reach: one we dialled there before
    /// (or to the peer we found there), or one the peer at `addr` opened to us.
    pub(crate) fn connection_to(&self, addr: SocketAddr) -> Option<Arc<Conn>> {
        let reg = lock(&self.reg);
        let id = reg.dialled.get(&addr);
        reg.conns
            .values()
            .find(|c| c.addr() == addr || id.is_some_and(|id| c.peer_id() == *id))
            .cloned()
    }

    /// Takes the incoming connection from `addr` offered to the engine, if any.
    pub(crate) fn take_pending(&self, addr: SocketAddr) -> Option<Arc<Conn>> {
        lock(&self.reg).pending.remove(&addr)
    }

    /// While a download runs, offers an incoming connection to its engine.
    pub(crate) fn offer_incoming(&self, conn: &Arc<Conn>) {
        let mut reg = lock(&self.reg);
        let Some(sink) = reg.sink.clone() else { return };
        reg.pending.insert(conn.addr(), conn.clone());
        let info = PeerInfo {
            addr: conn.addr(),
            label: conn.addr().to_string(),
        };
        if sink
            .send(SwarmEvent::Join(PeerSpec { info, has: None }))
            .is_err()
        {
            reg.sink = None;
            reg.pending.clear();
        }
    }

    /// The download starts: incoming connections are offered on `sink` from now on.
    pub fn download_started(&self, sink: SwarmSender) {
        lock(&self.reg).sink = Some(sink);
    }

    /// The download is over (complete or not): incoming connections are upload-only
    /// again; once complete, we are interested in nobody.
    pub fn download_over(&self) {
        {
            let mut reg = lock(&self.reg);
            reg.sink = None;
            reg.pending.clear();
        }
        if (0..self.layout.piece_count()).all(|i| self.store.has(i)) {
            self.seeding.store(true, Ordering::SeqCst);
            for c in self.connections() {
                if c.peer_is_seed() {
                    // Two seeds have nothing to trade: the slot is better used.
                    c.close();
                } else {
                    c.release_download();
                }
            }
        }
    }
}
