//! The uploading side of the BitTorrent peer wire (BEP 3): serves one torrent's pieces
//! from a [`PieceStore`] to the peers that connect to us.
//!
//! Threads: [`crate::server::Server`]'s accept loop and one thread per connection (at
//! most [`MAX_CONNECTIONS`]). A connection thread is the only reader and the only writer
//! of its socket: it reads the peer's messages, queues its requests (at most
//! [`MAX_QUEUED_REQUESTS`]) and answers them one block at a time with a positioned read
//! ([`PieceStore::read_at`]) and one `write` of header and block together. Connections
//! share only the [`Seeder`] (immutable but for two atomic counters: unchoke slots in
//! use and bytes uploaded).
//!
//! What the peer must respect, else it is dropped: the infohash of the torrent we serve,
//! the handshake's plaintext opening (an MSE opening is closed at once, so a client that
//! falls back to plaintext does so promptly), `request`s of pieces we have, within the
//! piece, of 1..=16 KiB ([`BLOCK_LEN`]; BEP 3 practice: every real client asks for
//! 16 KiB, and a larger limit only makes a hostile peer's requests cheaper for it).

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bitfield::Bitfield;
use crate::bt::metainfo::InfoHash;
use crate::bt::peer_wire::{
    self, BLOCK_LEN, BlockRequest, Handshake, Limits, Message, PeerId, ReadError, Reserved,
};
use crate::bt::rate::{Rate, TokenBucket};
use crate::server::{self, Connection, Handler, Server, TimedReader};
use crate::storage::PieceStore;

/// Most peers served at once. A seed's upload link is shared by whoever is unchoked, so
/// past a few dozen peers each gets a sliver and more connections only cost threads;
/// libtorrent's default connection limit per torrent is of the same order. 50 threads ×
/// 256 KiB of stack is 12.5 MiB of address space.
pub const MAX_CONNECTIONS: usize = 50;

/// Peers unchoked at once. BEP 3's choking algorithm unchokes 4 peers by rate plus one
/// optimistically; without rate measurement yet, the simple policy is: the first
/// `UNCHOKE_SLOTS` interested peers are unchoked, in the order they became interested,
/// and a slot passes to a waiting peer when its holder leaves or loses interest. 5 is
/// BEP 3's 4 + 1, so as many peers share the link as under the full algorithm.
pub const UNCHOKE_SLOTS: usize = 5;

/// Requests queued per peer before further ones are dropped (not answered), as
/// libtorrent does with `max_allowed_in_request_queue` (2,000). Clients size their
/// pipeline from the rate they see (libtorrent asks up to 500 blocks ahead at high rate),
/// so the queue must exceed that; 2,048 × 12 bytes is 24 KiB per peer at most.
pub const MAX_QUEUED_REQUESTS: usize = 2048;

/// Messages read between two blocks sent: a whole 8 KiB read buffer of requests (630 of
/// 13 bytes) fits, so requests and cancels that came together are seen together, and a
/// peer streaming messages without pause still gets its blocks.
pub const MAX_READ_PER_BLOCK: usize = 1024;

/// How often a connection thread wakes while waiting for the peer's next message: to
/// pass on a free unchoke slot to a peer waiting for one, and to send keep-alives.
pub const TICK: Duration = Duration::from_secs(1);

/// A keep-alive goes out after this long without our sending anything (BEP 3 practice:
/// peers drop a connection silent for about 2 minutes).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(90);

/// A peer that sends nothing at all (not even a keep-alive) for this long is gone: BEP 3
/// clients send a keep-alive every 2 minutes, so 3 minutes is one missed.
pub const PEER_SILENCE: Duration = Duration::from_secs(180);

/// Once a message's first byte has come, the whole message (13 bytes for a request, at
/// most a bitfield for us) must come within this: a peer trickling bytes holds a thread
/// for that long at most.
pub const MESSAGE_DEADLINE: Duration = Duration::from_secs(20);

/// The handshake must come within this of the connection: a client that dials and says
/// nothing (or a port scanner) frees its slot soon.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// One write may block this long on a peer that stops reading; then it is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a connection to a peer was ended.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The handshake names another torrent.
    #[error("handshake for infohash {0}, we serve another torrent")]
    WrongTorrent(InfoHash),
    /// The peer asked for a piece we do not have.
    #[error("request for piece {0}, which we do not have")]
    NotHave(u32),
    /// The peer asked for bytes past the end of the piece.
    #[error("request for {length} bytes at {begin} of piece {index}, which is {piece_len} long")]
    PastPiece {
        /// Piece index.
        index: u32,
        /// Offset asked.
        begin: u32,
        /// Length asked.
        length: u32,
        /// The piece's length.
        piece_len: u64,
    },
    /// The peer broke the wire protocol.
    #[error(transparent)]
    Wire(#[from] ReadError),
    /// The peer said nothing for [`PEER_SILENCE`].
    #[error("silent for {0:?}")]
    Silent(Duration),
}

impl From<SeedError> for io::Error {
    fn from(e: SeedError) -> io::Error {
        match e {
            SeedError::Wire(ReadError::Io(e)) => e,
            e => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

/// One torrent's upload service: the accepted connections' shared state.
pub struct Seeder {
    info_hash: InfoHash,
    peer_id: PeerId,
    store: Arc<dyn PieceStore>,
    /// Piece length, last piece length, count: what a request is checked against.
    piece_len: u64,
    last_piece_len: u64,
    num_pieces: u32,
    unchoked: AtomicUsize,
    uploaded: AtomicU64,
    /// Pieces verified since the start, in order (append-only, at most one entry per
    /// piece): each connection sends `have` for the entries past its own cursor.
    announced: Mutex<Vec<u32>>,
    /// The upload limit, shared by every connection (`None`: unlimited).
    limit: Option<TokenBucket>,
}

impl Seeder {
    /// A seeder of the torrent `info_hash` (pieces `piece_len` long, the last
    /// `last_piece_len`, `num_pieces` of them) over `store`, whose [`PieceStore::has`]
    /// says what we serve (recheck it first).
    pub fn new(
        info_hash: InfoHash,
        peer_id: PeerId,
        store: Arc<dyn PieceStore>,
        layout: &crate::layout::Layout,
    ) -> Arc<Seeder> {
        Arc::new(Seeder {
            info_hash,
            peer_id,
            store,
            piece_len: layout.piece_length(),
            last_piece_len: layout.last_piece_len(),
            num_pieces: layout.piece_count() as u32,
            unchoked: AtomicUsize::new(0),
            uploaded: AtomicU64::new(0),
            announced: Mutex::new(Vec::new()),
            limit: None,
        })
    }

    /// Bytes of blocks sent so far, to all peers.
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    /// The same seeder with its uploads limited to `rate` in total. Call before sharing it.
    pub fn with_limit(mut self: Arc<Self>, rate: Option<Rate>) -> Arc<Self> {
        if let Some(me) = Arc::get_mut(&mut self) {
            me.limit = rate.map(TokenBucket::new);
        }
        self
    }

    /// Announces a newly verified piece: every connection sends `have` for it at its next
    /// wake (at most [`TICK`] later). Pieces out of range are ignored.
    pub fn announce(&self, index: usize) {
        if let Ok(i) = u32::try_from(index)
            && i < self.num_pieces
        {
            self.announced
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(i);
        }
    }

    /// How many pieces were announced so far (a connection's starting cursor).
    fn announced_len(&self) -> usize {
        self.announced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// The pieces announced past `cursor`.
    fn announced_since(&self, cursor: usize) -> Vec<u32> {
        let a = self.announced.lock().unwrap_or_else(|e| e.into_inner());
        a.get(cursor..).map(<[u32]>::to_vec).unwrap_or_default()
    }

    /// What we have now, as a bitfield.
    pub fn have(&self) -> Bitfield {
        let mut b = Bitfield::new(self.num_pieces as usize);
        for i in 0..self.num_pieces as usize {
            if self.store.has(i) {
                b.set(i);
            }
        }
        b
    }

    fn piece_len(&self, index: u32) -> u64 {
        if index + 1 == self.num_pieces {
            self.last_piece_len
        } else {
            self.piece_len
        }
    }

    /// Takes an unchoke slot if one is free.
    fn take_slot(&self) -> bool {
        self.unchoked
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < UNCHOKE_SLOTS).then_some(n + 1)
            })
            .is_ok()
    }

    fn free_slot(&self) {
        self.unchoked.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The server limits of a seeder (see the constants).
pub fn server_limits() -> server::Limits {
    server::Limits {
        max_connections: MAX_CONNECTIONS,
        idle_timeout: TICK,
        request_timeout: MESSAGE_DEADLINE,
        write_timeout: WRITE_TIMEOUT,
    }
}

/// Binds the seeder's listener (`addr` may have port 0). Serve with [`serve`].
pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Server> {
    Server::bind(addr, server_limits(), "seed")
}

/// Serves `seeder` on `server` for ever (one thread per connection).
pub fn serve(server: Server, seeder: Arc<Seeder>) -> io::Result<()> {
    server.run(Arc::new(SeedHandler(seeder)))
}

/// Binds and serves on a thread of its own; returns the bound address. The thread runs
/// until the process ends (tests, and `swarmlet seed`, which exits on a signal).
pub fn spawn(addr: impl ToSocketAddrs, seeder: Arc<Seeder>) -> io::Result<SocketAddr> {
    let server = bind(addr)?;
    let local = server.local_addr()?;
    std::thread::Builder::new()
        .name("seed-accept".into())
        .spawn(move || {
            if let Err(e) = serve(server, seeder) {
                log::error!("seed: accept loop failed: {e}");
            }
        })?;
    Ok(local)
}

struct SeedHandler(Arc<Seeder>);

impl Handler for SeedHandler {
    fn handle(&self, conn: Connection) -> io::Result<()> {
        let mut peer = PeerState::new(&self.0, &conn)?;
        let r = peer.run(&conn);
        if peer.unchoked {
            self.0.free_slot();
        }
        log::info!(
            "seed: {}: sent {} blocks ({} bytes)",
            conn.peer,
            peer.blocks_sent,
            peer.bytes_sent
        );
        r.map_err(io::Error::from)
    }
}

/// One connection's state, owned by its thread.
struct PeerState<'a> {
    seeder: &'a Seeder,
    reader: BufReader<TimedReader>,
    limits: Limits,
    interested: bool,
    /// Whether we unchoked the peer (and so hold one of the slots).
    unchoked: bool,
    queue: VecDeque<BlockRequest>,
    /// The message being written: a piece header and its block, reused.
    out: Vec<u8>,
    last_sent: Instant,
    last_heard: Instant,
    blocks_sent: u64,
    bytes_sent: u64,
    dropped_requests: u64,
    /// How many of [`Seeder::announced`] this peer was told of.
    haves_sent: usize,
}

impl<'a> PeerState<'a> {
    fn new(seeder: &'a Seeder, conn: &Connection) -> io::Result<Self> {
        let now = Instant::now();
        Ok(PeerState {
            seeder,
            reader: BufReader::new(conn.reader()?),
            limits: Limits::new(seeder.num_pieces),
            interested: false,
            unchoked: false,
            queue: VecDeque::new(),
            out: Vec::with_capacity(13 + BLOCK_LEN as usize),
            last_sent: now,
            last_heard: now,
            blocks_sent: 0,
            bytes_sent: 0,
            dropped_requests: 0,
            haves_sent: 0,
        })
    }

    fn send(&mut self, mut w: &std::net::TcpStream, m: &Message) -> Result<(), SeedError> {
        peer_wire::write_message(&mut w, m).map_err(ReadError::Io)?;
        self.last_sent = Instant::now();
        Ok(())
    }

    fn run(&mut self, conn: &Connection) -> Result<(), SeedError> {
        let s = &conn.stream;
        // The handshake: check the infohash before answering, so a peer of another
        // torrent learns nothing (not even our peer id).
        self.reader.get_mut().set_deadline(HANDSHAKE_DEADLINE);
        let (_reserved, info_hash) = peer_wire::read_handshake_head(&mut self.reader)?;
        if info_hash != self.seeder.info_hash.0 {
            return Err(SeedError::WrongTorrent(InfoHash(info_hash)));
        }
        let ours = Handshake {
            // No extension bit: we implement none (BEP 10 and BEP 6 peers would wait for
            // messages we never send).
            reserved: Reserved::NONE,
            info_hash,
            peer_id: self.seeder.peer_id,
        };
        (&mut &*s)
            .write_all(&ours.encode())
            .map_err(ReadError::Io)?;
        let peer_id = peer_wire::read_peer_id(&mut self.reader)?;
        log::debug!("seed: {}: peer id {:?}", conn.peer, peer_id.0);
        // The cursor before the bitfield: a piece verified in between is in both, and a
        // repeated `have` is harmless, a missed one is not.
        self.haves_sent = self.seeder.announced_len();
        let have = self.seeder.have();
        // BEP 3: a peer with no piece may skip the bitfield (and some clients object to
        // an empty one).
        if have.count() > 0 {
            self.send(s, &Message::Bitfield(have.as_bytes().to_vec()))?;
        }
        loop {
            self.send_haves(s)?;
            if self.queue.is_empty() {
                self.wait_for_message(s)?;
            }
            // What is already buffered is read before the next block goes out, so a
            // `cancel` that came behind its `request` is honoured; at most
            // MAX_READ_PER_BLOCK messages, so a flood of them cannot starve the queue.
            let mut read = 0;
            while !self.reader.buffer().is_empty() && read < MAX_READ_PER_BLOCK {
                self.read_one(s)?;
                read += 1;
            }
            if let Some(req) = self.queue.pop_front() {
                self.serve_block(s, req)?;
            }
        }
    }

    /// Blocks until a message starts (then reads it), waking every [`TICK`] to pass on
    /// unchoke slots and send keep-alives.
    fn wait_for_message(&mut self, s: &std::net::TcpStream) -> Result<(), SeedError> {
        loop {
            self.reader.get_mut().set_deadline(TICK);
            match self.reader.fill_buf() {
                Ok([]) => return Err(ReadError::Closed.into()),
                Ok(_) => return self.read_one(s),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e).into()),
            }
            let silent = self.last_heard.elapsed();
            if silent >= PEER_SILENCE {
                return Err(SeedError::Silent(silent));
            }
            self.maybe_unchoke(s)?;
            self.send_haves(s)?;
            if self.last_sent.elapsed() >= KEEPALIVE_INTERVAL {
                self.send(s, &Message::KeepAlive)?;
            }
        }
    }

    /// Sends `have` for the pieces verified since this peer was last told.
    fn send_haves(&mut self, s: &std::net::TcpStream) -> Result<(), SeedError> {
        for i in self.seeder.announced_since(self.haves_sent) {
            self.haves_sent += 1;
            self.send(s, &Message::Have(i))?;
        }
        Ok(())
    }

    fn maybe_unchoke(&mut self, s: &std::net::TcpStream) -> Result<(), SeedError> {
        if self.interested && !self.unchoked && self.seeder.take_slot() {
            self.unchoked = true;
            self.send(s, &Message::Unchoke)?;
        }
        Ok(())
    }

    fn read_one(&mut self, s: &std::net::TcpStream) -> Result<(), SeedError> {
        self.reader.get_mut().set_deadline(MESSAGE_DEADLINE);
        let m = match peer_wire::read_message(&mut self.reader, &self.limits) {
            Ok(m) => m,
            // An unknown message id (an extension we never announced) is skipped.
            Err(ReadError::Message(peer_wire::MessageError::UnknownId { id, len })) => {
                log::debug!("seed: skipped unknown message id {id} ({len} bytes)");
                self.last_heard = Instant::now();
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        self.last_heard = Instant::now();
        match m {
            Message::Interested => {
                self.interested = true;
                self.maybe_unchoke(s)?;
            }
            Message::NotInterested => {
                self.interested = false;
                if self.unchoked {
                    self.unchoked = false;
                    self.seeder.free_slot();
                    self.queue.clear();
                    self.send(s, &Message::Choke)?;
                }
            }
            Message::Request(r) => self.queue_request(r)?,
            Message::Cancel(r) => self.queue.retain(|q| *q != r),
            // What the peer has, and its choking of us, do not matter to a seed; a
            // keep-alive only proves the peer is there.
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Have(_)
            | Message::Bitfield(_)
            | Message::Port(_) => {}
            // We ask for nothing: a block is unsolicited, and costs nothing to ignore
            // (its length was bounded before it was read).
            Message::Piece { index, begin, .. } => {
                log::debug!("seed: ignored an unsolicited block {index}:{begin}");
            }
        }
        Ok(())
    }

    fn queue_request(&mut self, r: BlockRequest) -> Result<(), SeedError> {
        // Checked even while choked: a request out of bounds is a broken peer either way.
        if !self.seeder.store.has(r.index as usize) {
            return Err(SeedError::NotHave(r.index));
        }
        let piece_len = self.seeder.piece_len(r.index);
        if u64::from(r.begin) + u64::from(r.length) > piece_len {
            return Err(SeedError::PastPiece {
                index: r.index,
                begin: r.begin,
                length: r.length,
                piece_len,
            });
        }
        // BEP 3: requests sent while choked are discarded (they may cross our choke).
        if !self.unchoked {
            return Ok(());
        }
        if self.queue.len() >= MAX_QUEUED_REQUESTS {
            self.dropped_requests += 1;
            if self.dropped_requests == 1 {
                log::warn!("seed: a peer queued over {MAX_QUEUED_REQUESTS} requests; dropping");
            }
            return Ok(());
        }
        self.queue.push_back(r);
        Ok(())
    }

    fn serve_block(&mut self, s: &std::net::TcpStream, r: BlockRequest) -> Result<(), SeedError> {
        if let Some(limit) = &self.seeder.limit {
            limit.take(u64::from(r.length));
        }
        let header = peer_wire::piece_header(r.index, r.begin, r.length)
            .expect("a block of at most 16 KiB fits");
        self.out.clear();
        self.out.extend_from_slice(&header);
        self.out.resize(header.len() + r.length as usize, 0);
        self.seeder
            .store
            .read_at(
                r.index as usize,
                u64::from(r.begin),
                &mut self.out[header.len()..],
            )
            .map_err(ReadError::Io)?;
        // Header and block in one write: one syscall, one segment train.
        (&mut &*s).write_all(&self.out).map_err(ReadError::Io)?;
        // Per block, at trace level only: tests count what a seed served (a piece served
        // twice to one downloader is a piece it re-fetched).
        log::trace!("seed: sent block {}:{}+{}", r.index, r.begin, r.length);
        self.last_sent = Instant::now();
        self.blocks_sent += 1;
        self.bytes_sent += u64::from(r.length);
        self.seeder
            .uploaded
            .fetch_add(u64::from(r.length), Ordering::Relaxed);
        Ok(())
    }
}
