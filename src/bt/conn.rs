//! One BitTorrent connection to one peer, used both ways at once (BEP 3): we download
//! from the peer and upload to it over the same socket, as libtorrent and Transmission do.
//!
//! Threads per connection:
//! - the **reader** (the accept thread of an incoming connection, a thread of its own for
//!   one we dialled) is the only reader of the socket. It decodes every message and routes
//!   it: blocks of the piece being fetched go to the download side over a channel,
//!   requests and cancels to the upload queue, have/bitfield to the peer's piece set and
//!   the engine's news, choke/interest to the shared state;
//! - the **uploader** serves the upload queue (a positioned read from the store, one
//!   write of header and block), sends `have` for every piece verified meanwhile and
//!   keep-alives;
//! - the engine's **worker** of that peer, when we download from it, runs
//!   [`Conn::fetch`]: it writes its requests and takes the blocks from the reader's channel.
//!
//! Writers: the uploader (blocks, haves, keep-alives, and the choke/interest messages
//! the reader, the choker and the worker queue for it) and the worker (its requests and
//! cancels) write through one mutex-guarded buffered write half, a whole message (or a
//! whole batch of requests, or a header and its block) per lock, so messages never
//! interleave. The reader never writes: it always drains the socket, so two peers whose
//! send buffers are both full cannot wait on each other. Shared state is one mutex per connection, held only for bookkeeping, never
//! across I/O.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::bitfield::Bitfield;
use crate::bt::fetch::{
    DeadlineReader, PeerError, Timeouts, check_block, protocol, timed_out, wire,
};
use crate::bt::metainfo::InfoHash;
use crate::bt::peer_wire::{
    self, BLOCK_LEN, BlockRequest, Handshake, Limits, Message, MessageError, PeerId, ReadError,
    Reserved,
};
use crate::bt::peers::Swarm;
use crate::download::{AbortHandle, FetchError};

/// How often the uploader wakes with nothing to do: to send keep-alives, and to notice a
/// closed connection. The choker ticks at the same pace.
pub const TICK: Duration = Duration::from_secs(1);

/// A keep-alive goes out after this long without our sending anything: BEP 3 peers drop
/// a connection silent for about 2 minutes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(90);

/// A peer that sends nothing at all (not even a keep-alive) for this long is gone: BEP 3
/// clients send a keep-alive every 2 minutes, so 3 minutes is one missed.
pub const PEER_SILENCE: Duration = Duration::from_secs(180);

/// Once a message's first byte has come, the whole message (at most a 16 KiB block and
/// its header) must come within this: a peer trickling bytes holds a thread that long.
pub const MESSAGE_DEADLINE: Duration = Duration::from_secs(20);

/// The handshake must come within this of the connection: a client that dials and says
/// nothing (or a port scanner) frees its slot soon.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// One write may block this long on a peer that stops reading; then it is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests queued per peer before further ones are dropped (not answered), as
/// libtorrent does with `max_allowed_in_request_queue` (2,000). Clients size their
/// pipeline from the rate they see (libtorrent asks up to 500 blocks ahead at high rate),
/// so the queue must exceed that; 2,048 × 12 bytes is 24 KiB per peer at most.
pub const MAX_QUEUED_REQUESTS: usize = 2048;

/// A request that arrives this long after we choked the peer cannot have crossed our
/// choke on the wire: the peer ignores it, and is dropped. Within it, the request is
/// only discarded (BEP 3: requests in flight when the choke went out are void). 10 s is
/// many round trips on any real link.
pub const CHOKE_GRACE: Duration = Duration::from_secs(10);

/// Blocks we did not ask for (or no longer wait for) tolerated on one connection, net of
/// the useful ones (each useful block earns one back): late blocks after a cancel or an
/// endgame race are normal, a stream of them is a peer wasting our download link. 256
/// blocks is 4 MiB, more than one full pipeline in flight.
pub const MAX_UNSOLICITED: u32 = 256;

/// How long a block request may wait in the peer's queue, in seconds of its measured rate:
/// libtorrent's `request_queue_time` (3 s). Enough requests are kept outstanding that the
/// link never idles while the next ones travel, however long the round trip.
pub const QUEUE_TIME_SECS: u64 = 3;

/// Fewest block requests outstanding: before any rate is measured (a new connection) 16
/// blocks (256 KiB) fill a LAN link with a few milliseconds of round trip, and a slow peer
/// still has enough queued not to idle.
pub const MIN_PIPELINE: usize = 16;

/// Most block requests outstanding: libtorrent assumes a peer that sends no BEP 10
/// `reqq` accepts 250 queued, and our own upload queue takes [`MAX_QUEUED_REQUESTS`].
pub const MAX_PIPELINE: usize = 250;

/// How often the download rate that sizes the pipeline is measured: one second smooths a
/// burst of blocks, and adapts within a piece or two.
pub const RATE_WINDOW: Duration = Duration::from_secs(1);

/// The largest piece a fetch accepts: 64 MiB is the largest piece length clients make,
/// and bounds the buffer whatever the .torrent says.
pub const MAX_PIECE_LEN: u64 = 64 << 20;

/// Block requests outstanding for a peer measured at `rate` bytes per second: enough
/// for [`QUEUE_TIME_SECS`] of it, within [`MIN_PIPELINE`]..=[`MAX_PIPELINE`].
pub fn pipeline_depth(rate: u64) -> usize {
    let blocks = rate.saturating_mul(QUEUE_TIME_SECS) / u64::from(BLOCK_LEN);
    (blocks.min(MAX_PIPELINE as u64) as usize).clamp(MIN_PIPELINE, MAX_PIPELINE)
}

/// Why a connection was refused or ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The handshake names another torrent.
    #[error("handshake for infohash {0}, we serve another torrent")]
    WrongTorrent(InfoHash),
    /// The connection is to ourselves (our own peer id came back).
    #[error("connected to ourselves")]
    Ourselves,
    /// We already have a connection to this peer (by its peer id).
    #[error("already connected to this peer")]
    Duplicate,
    /// `--max-peers` connections are open already.
    #[error("{0} connections open already")]
    Full(usize),
    /// The torrent's connections are shutting down.
    #[error("shutting down")]
    Closing,
    /// The peer asked for a piece we do not have.
    #[error("request for piece {0}, which we do not have")]
    NotHave(u32),
    /// The peer asked for bytes past the end of the piece, or more than a block.
    #[error("request for {length} bytes at {begin} of piece {index}, which is {piece_len} long")]
    BadRequest {
        /// Piece index.
        index: u32,
        /// Offset asked.
        begin: u32,
        /// Length asked.
        length: u32,
        /// The piece's length.
        piece_len: u64,
    },
    /// The peer kept asking while choked, long after the choke (see [`CHOKE_GRACE`]).
    #[error("request for piece {0} while choked")]
    RequestWhileChoked(u32),
    /// Too many blocks we did not ask for (see [`MAX_UNSOLICITED`]).
    #[error("{0} unsolicited blocks")]
    Unsolicited(u32),
    /// The peer broke the wire protocol.
    #[error(transparent)]
    Wire(#[from] ReadError),
    /// We and the peer both have every piece: nothing to trade (libtorrent closes such
    /// connections too).
    #[error("we are both seeds")]
    BothSeeds,
    /// The peer said nothing for [`PEER_SILENCE`].
    #[error("silent for {0:?}")]
    Silent(Duration),
}

impl ConnError {
    /// As a download failure: an I/O error stays one, the rest is the peer's fault.
    fn into_fetch(self) -> FetchError {
        match self {
            ConnError::Wire(e) => wire(e),
            ConnError::Duplicate | ConnError::Full(_) | ConnError::Closing => {
                FetchError::Io(io::Error::new(io::ErrorKind::AlreadyExists, self))
            }
            e => FetchError::Protocol(Box::new(e)),
        }
    }
}

/// What the reader hands the download side.
pub enum Down {
    /// A block of the piece being fetched.
    Block {
        /// Piece index.
        index: u32,
        /// Offset in the piece.
        begin: u32,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Something changed (choke, unchoke, closed, abort): look at the state again.
    Wake,
}

/// Which side dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We dialled the peer.
    Outgoing,
    /// The peer dialled us.
    Incoming,
}

/// The bookkeeping of one connection, behind its mutex.
struct State {
    peer_choking: bool,
    peer_interested: bool,
    am_choking: bool,
    am_interested: bool,
    /// When we last choked the peer; `None` while it was never unchoked.
    choked_at: Option<Instant>,
    has: Bitfield,
    /// Pieces the peer announced since the engine last asked.
    news: Vec<usize>,
    queue: VecDeque<BlockRequest>,
    /// Choke, unchoke, interested, not interested: queued for the uploader, which sends
    /// them in order before its next block, so that the reader (which decides most of
    /// them) never waits for the write half (see [`Conn::set_choked`]).
    control: Vec<Message>,
    /// The piece whose blocks go to the download side.
    fetching: Option<u32>,
    downloaded: u64,
    uploaded: u64,
    last_block: Instant,
    /// Bytes of blocks since `window_start`, and the rate of the last window.
    window_start: Instant,
    window_bytes: u64,
    rate: u64,
    unsolicited: u32,
    /// How many of the swarm's announced pieces this peer was told of.
    haves_sent: usize,
    closed: bool,
    /// The download side (the engine's source) took the block channel.
    download_taken: bool,
}

/// What the choker and the summary read of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// The peer is interested in us.
    pub peer_interested: bool,
    /// We are interested in the peer.
    pub am_interested: bool,
    /// Block bytes received from the peer.
    pub downloaded: u64,
    /// Block bytes sent to the peer.
    pub uploaded: u64,
    /// Time since the peer's last block (since the connection opened, if none).
    pub since_block: Duration,
}

/// The write half: whole messages only, under its mutex.
struct Writer {
    w: BufWriter<TcpStream>,
    last_sent: Instant,
}

/// One open connection (see the module doc for its threads).
pub struct Conn {
    key: u64,
    addr: SocketAddr,
    peer_id: PeerId,
    direction: Direction,
    swarm: Arc<Swarm>,
    stream: Arc<TcpStream>,
    writer: Mutex<Writer>,
    state: Mutex<State>,
    /// Wakes the uploader: a request queued, a piece to announce, the connection closed.
    wake: Condvar,
    down_tx: Sender<Down>,
    down_rx: Receiver<Down>,
    aborted: AtomicBool,
}

/// Aborts the download side of a [`Conn`] from another thread (the engine ending a
/// download): the fetch returns at once, the connection stays up for uploading.
pub struct ConnAbort(Weak<Conn>);

impl AbortHandle for ConnAbort {
    fn abort(&self) {
        if let Some(c) = self.0.upgrade() {
            c.aborted.store(true, Ordering::SeqCst);
            let _ = c.down_tx.try_send(Down::Wake);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn reader_for(stream: &Arc<TcpStream>, timeout: Duration) -> BufReader<DeadlineReader> {
    BufReader::with_capacity(
        64 * 1024,
        DeadlineReader {
            stream: stream.clone(),
            deadline: Instant::now() + timeout,
        },
    )
}

/// Dials `addr`, exchanges handshakes and starts the connection's threads.
pub fn dial(
    swarm: &Arc<Swarm>,
    addr: SocketAddr,
    timeouts: &Timeouts,
) -> Result<Arc<Conn>, FetchError> {
    let stream = TcpStream::connect_timeout(&addr, timeouts.connect)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let stream = Arc::new(stream);
    (&*stream).write_all(&our_handshake(swarm).encode())?;
    let mut reader = reader_for(&stream, timeouts.handshake);
    let theirs = peer_wire::read_handshake(&mut reader).map_err(wire)?;
    if theirs.info_hash != swarm.info_hash.0 {
        return Err(protocol(PeerError::WrongTorrent(InfoHash(
            theirs.info_hash,
        ))));
    }
    if theirs.peer_id == swarm.our_id {
        return Err(protocol(PeerError::Ourselves));
    }
    let conn = Conn::start(swarm, stream, addr, theirs.peer_id, Direction::Outgoing)
        .map_err(ConnError::into_fetch)?;
    let c = conn.clone();
    std::thread::Builder::new()
        .name("bt-read".into())
        .stack_size(crate::server::STACK_SIZE)
        .spawn(move || c.read_until_closed(reader))?;
    Ok(conn)
}

/// Serves a connection a peer opened to us, on the calling (accept) thread, which becomes
/// its reader: checks the handshake before answering (a peer of another torrent learns
/// nothing, an MSE opening fails on its first byte), starts the uploader, offers the
/// connection to the download engine if one runs, and reads until the connection ends.
pub fn accept(swarm: &Arc<Swarm>, stream: TcpStream, addr: SocketAddr) -> Result<(), ConnError> {
    stream
        .set_write_timeout(Some(WRITE_TIMEOUT))
        .map_err(ReadError::Io)?;
    let stream = Arc::new(stream);
    let mut reader = reader_for(&stream, HANDSHAKE_DEADLINE);
    let (_reserved, info_hash) = peer_wire::read_handshake_head(&mut reader)?;
    if info_hash != swarm.info_hash.0 {
        return Err(ConnError::WrongTorrent(InfoHash(info_hash)));
    }
    (&*stream)
        .write_all(&our_handshake(swarm).encode())
        .map_err(ReadError::Io)?;
    let peer_id = peer_wire::read_peer_id(&mut reader)?;
    if peer_id == swarm.our_id {
        return Err(ConnError::Ourselves);
    }
    let conn = Conn::start(swarm, stream, addr, peer_id, Direction::Incoming)?;
    swarm.offer_incoming(&conn);
    conn.read_until_closed(reader);
    Ok(())
}

fn our_handshake(swarm: &Swarm) -> Handshake {
    Handshake {
        // No extension bit: we implement none (BEP 10 and BEP 6 peers would wait for
        // messages we never send).
        reserved: Reserved::NONE,
        info_hash: swarm.info_hash.0,
        peer_id: swarm.our_id,
    }
}

impl Conn {
    /// Registers a handshaken connection with the swarm (which may refuse it: a
    /// duplicate, too many), sends our bitfield and starts the uploader.
    fn start(
        swarm: &Arc<Swarm>,
        stream: Arc<TcpStream>,
        addr: SocketAddr,
        peer_id: PeerId,
        direction: Direction,
    ) -> Result<Arc<Conn>, ConnError> {
        let w = stream.try_clone().map_err(ReadError::Io)?;
        let n = swarm.layout.piece_count();
        let now = Instant::now();
        // Every block we may have asked for fits; a full channel means blocks we did not.
        let (down_tx, down_rx) = crossbeam_channel::bounded(MAX_PIPELINE + 16);
        let conn = Arc::new(Conn {
            key: swarm.next_key(),
            addr,
            peer_id,
            direction,
            swarm: swarm.clone(),
            stream,
            writer: Mutex::new(Writer {
                w: BufWriter::with_capacity(32 * 1024, w),
                last_sent: now,
            }),
            state: Mutex::new(State {
                peer_choking: true,
                peer_interested: false,
                am_choking: true,
                am_interested: false,
                choked_at: None,
                has: Bitfield::new(n),
                news: Vec::new(),
                queue: VecDeque::new(),
                control: Vec::new(),
                fetching: None,
                downloaded: 0,
                uploaded: 0,
                last_block: now,
                window_start: now,
                window_bytes: 0,
                rate: 0,
                unsolicited: 0,
                // The cursor before the bitfield: a piece verified in between is in both,
                // and a repeated `have` is harmless, a missed one is not.
                haves_sent: swarm.announced_len(),
                closed: false,
                download_taken: false,
            }),
            wake: Condvar::new(),
            down_tx,
            down_rx,
            aborted: AtomicBool::new(false),
        });
        swarm.admit(&conn)?;
        let have = swarm.have();
        // BEP 3: the bitfield is the first message; a peer with no piece may skip it (and
        // some clients object to an empty one).
        if have.count() > 0
            && let Err(e) = conn.send(&Message::Bitfield(have.as_bytes().to_vec()))
        {
            conn.close();
            return Err(ReadError::Io(e).into());
        }
        let c = conn.clone();
        let spawned = std::thread::Builder::new()
            .name("bt-upload".into())
            .stack_size(crate::server::STACK_SIZE)
            .spawn(move || c.upload_until_closed());
        if let Err(e) = spawned {
            conn.close();
            return Err(ReadError::Io(e).into());
        }
        log::info!("{addr}: connected ({direction:?})");
        Ok(conn)
    }

    /// The connection's number, unique in the process.
    pub fn key(&self) -> u64 {
        self.key
    }

    /// The peer's address (for an incoming connection, the port it dialled from).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The peer's id, from its handshake.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Who dialled.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Whether we choke the peer.
    pub fn is_choking(&self) -> bool {
        lock(&self.state).am_choking
    }

    /// Whether the peer has every piece.
    pub fn peer_is_seed(&self) -> bool {
        lock(&self.state).has.is_full()
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    /// What the choker and the summary need.
    pub fn stats(&self) -> Stats {
        let s = lock(&self.state);
        Stats {
            peer_interested: s.peer_interested,
            am_interested: s.am_interested,
            downloaded: s.downloaded,
            uploaded: s.uploaded,
            since_block: s.last_block.elapsed(),
        }
    }

    /// Ends the connection: leaves the swarm, wakes every thread on it, closes the socket.
    pub fn close(&self) {
        {
            let mut s = lock(&self.state);
            if s.closed {
                return;
            }
            s.closed = true;
            s.queue.clear();
        }
        self.swarm.remove(self);
        self.wake.notify_all();
        let _ = self.down_tx.try_send(Down::Wake);
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Writes one message whole; a failed write ends the connection.
    fn send(&self, m: &Message) -> io::Result<()> {
        let mut buf = Vec::with_capacity(17);
        m.encode(&mut buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.send_bytes(&buf)
    }

    /// Writes whole messages already encoded; a failed write ends the connection.
    fn send_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        let r = {
            let mut w = lock(&self.writer);
            w.last_sent = Instant::now();
            w.w.write_all(bytes).and_then(|()| w.w.flush())
        };
        if r.is_err() {
            self.close();
        }
        r
    }

    /// Wakes the uploader: a piece was verified (it sends `have`).
    pub fn notify(&self) {
        self.wake.notify_all();
    }

    /// Chokes or unchokes the peer (the choker's decision); a choke drops its queue.
    pub fn set_choked(&self, choke: bool) {
        let mut s = lock(&self.state);
        if s.closed || s.am_choking == choke {
            return;
        }
        s.am_choking = choke;
        if choke {
            s.queue.clear();
            s.choked_at = Some(Instant::now());
        }
        s.control.push(if choke {
            Message::Choke
        } else {
            Message::Unchoke
        });
        drop(s);
        self.wake.notify_all();
    }

    /// Says `interested` or `not interested` when that changes.
    fn set_interested(&self, want: bool) {
        let mut s = lock(&self.state);
        if s.closed || s.am_interested == want {
            return;
        }
        s.am_interested = want;
        s.control.push(if want {
            Message::Interested
        } else {
            Message::NotInterested
        });
        drop(s);
        self.wake.notify_all();
    }

    /// Whether the peer has a piece we lack (so we are interested in it).
    fn wants_something(&self) -> bool {
        if self.swarm.seeding() {
            return false;
        }
        let s = lock(&self.state);
        s.has.ones().any(|i| !self.swarm.store.has(i))
    }

    /// The reader: every message, routed, until the connection ends.
    fn read_until_closed(self: &Arc<Self>, mut reader: BufReader<DeadlineReader>) {
        let limits = Limits::new(self.swarm.layout.piece_count() as u32);
        let r = self.read_loop(&mut reader, &limits);
        match &r {
            Err(ConnError::Wire(ReadError::Closed)) => log::info!("{}: closed", self.addr),
            Err(e) => log::info!("{}: dropped: {e}", self.addr),
            Ok(()) => {}
        }
        self.close();
    }

    fn read_loop(
        &self,
        reader: &mut BufReader<DeadlineReader>,
        limits: &Limits,
    ) -> Result<(), ConnError> {
        loop {
            if self.is_closed() {
                return Ok(());
            }
            if reader.buffer().is_empty() {
                reader.get_mut().deadline = Instant::now() + PEER_SILENCE;
                match reader.fill_buf() {
                    Ok([]) => return Err(ReadError::Closed.into()),
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                        ) =>
                    {
                        return Err(ConnError::Silent(PEER_SILENCE));
                    }
                    Err(e) => return Err(ReadError::Io(e).into()),
                }
            }
            reader.get_mut().deadline = Instant::now() + MESSAGE_DEADLINE;
            let m = match peer_wire::read_message(reader, limits) {
                Ok(m) => m,
                Err(ReadError::Message(MessageError::UnknownId { id, len })) => {
                    // An extension message we never announced: skipped, harmless.
                    log::debug!(
                        "{}: skipped unknown message id {id} ({len} bytes)",
                        self.addr
                    );
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            self.route(m)?;
        }
    }

    /// Handles one message from the peer.
    fn route(&self, m: Message) -> Result<(), ConnError> {
        match m {
            Message::KeepAlive | Message::Port(_) => {}
            Message::Choke | Message::Unchoke => {
                lock(&self.state).peer_choking = m == Message::Choke;
                let _ = self.down_tx.try_send(Down::Wake);
            }
            Message::Interested => {
                lock(&self.state).peer_interested = true;
                // A free slot is taken at once rather than at the next choker round.
                if self.swarm.unchoked_count() < crate::bt::choker::SLOTS {
                    self.set_choked(false);
                }
            }
            Message::NotInterested => {
                lock(&self.state).peer_interested = false;
                // The slot goes to someone who wants it.
                self.set_choked(true);
            }
            Message::Have(i) => {
                let new = {
                    let mut s = lock(&self.state);
                    let new = s.has.set(i as usize);
                    if new {
                        s.news.push(i as usize);
                    }
                    new && !s.am_interested
                };
                if new && !self.swarm.seeding() && !self.swarm.store.has(i as usize) {
                    self.set_interested(true);
                }
                if self.swarm.seeding() && self.peer_is_seed() {
                    // Two seeds have nothing to trade: the slot is better used.
                    return Err(ConnError::BothSeeds);
                }
            }
            Message::Bitfield(bits) => {
                {
                    let mut s = lock(&self.state);
                    // read_message checked its length and spare bits.
                    if let Some(b) = Bitfield::from_bytes(&bits, s.has.len()) {
                        for i in b.ones() {
                            if s.has.set(i) {
                                s.news.push(i);
                            }
                        }
                    }
                }
                if self.swarm.seeding() && self.peer_is_seed() {
                    return Err(ConnError::BothSeeds);
                }
                if self.wants_something() {
                    self.set_interested(true);
                }
            }
            Message::Request(r) => self.queue_request(r)?,
            Message::Cancel(r) => lock(&self.state).queue.retain(|q| *q != r),
            Message::Piece { index, begin, data } => self.take_block(index, begin, data)?,
        }
        Ok(())
    }

    /// Checks a request and queues it for the uploader.
    fn queue_request(&self, r: BlockRequest) -> Result<(), ConnError> {
        if r.index as usize >= self.swarm.layout.piece_count()
            || !self.swarm.store.has(r.index as usize)
        {
            return Err(ConnError::NotHave(r.index));
        }
        let piece_len = self.swarm.layout.piece_len(r.index as usize);
        if r.length == 0
            || r.length > BLOCK_LEN
            || u64::from(r.begin) + u64::from(r.length) > piece_len
        {
            return Err(ConnError::BadRequest {
                index: r.index,
                begin: r.begin,
                length: r.length,
                piece_len,
            });
        }
        let mut s = lock(&self.state);
        if s.am_choking {
            // BEP 3: requests in flight when our choke went out are void; a peer that
            // asks long after it, or before we ever unchoked it, ignores the protocol.
            return match s.choked_at {
                Some(t) if t.elapsed() < CHOKE_GRACE => Ok(()),
                _ => Err(ConnError::RequestWhileChoked(r.index)),
            };
        }
        if s.queue.len() >= MAX_QUEUED_REQUESTS {
            log::debug!(
                "{}: over {MAX_QUEUED_REQUESTS} requests queued; dropped one",
                self.addr
            );
            return Ok(());
        }
        s.queue.push_back(r);
        drop(s);
        self.wake.notify_all();
        Ok(())
    }

    /// A block from the peer: counted, limited, and passed to the fetch waiting for it.
    fn take_block(&self, index: u32, begin: u32, data: Vec<u8>) -> Result<(), ConnError> {
        let len = data.len() as u64;
        if let Some(limit) = &self.swarm.down_limit {
            // Sleeping here stops reading the socket: TCP slows the peer down for us.
            limit.take(len);
        }
        self.swarm.count_downloaded(len);
        let mut s = lock(&self.state);
        s.downloaded += len;
        s.last_block = Instant::now();
        s.window_bytes += len;
        let w = s.window_start.elapsed();
        if w >= RATE_WINDOW {
            s.rate = (s.window_bytes as f64 / w.as_secs_f64()) as u64;
            s.window_bytes = 0;
            s.window_start = Instant::now();
        }
        let wanted = s.fetching == Some(index);
        drop(s);
        let sent = wanted
            && match self.down_tx.try_send(Down::Block { index, begin, data }) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            };
        if sent {
            // Useful blocks earn back the tolerance: a long download over a peer that
            // chokes now and then (each choke leaves blocks on the wire) stays fine.
            let mut s = lock(&self.state);
            s.unsolicited = s.unsolicited.saturating_sub(1);
        } else {
            let mut s = lock(&self.state);
            s.unsolicited += 1;
            if s.unsolicited > MAX_UNSOLICITED {
                return Err(ConnError::Unsolicited(s.unsolicited));
            }
            log::debug!(
                "{}: ignored a block {index}:{begin} nobody waits for",
                self.addr
            );
        }
        Ok(())
    }

    /// The uploader: serves the queue, announces verified pieces, keeps the link alive.
    fn upload_until_closed(&self) {
        let mut out = Vec::with_capacity(13 + BLOCK_LEN as usize);
        loop {
            enum Job {
                Control(Vec<Message>),
                Haves(Vec<u32>),
                Block(BlockRequest),
                KeepAlive,
            }
            let job = {
                let mut s = lock(&self.state);
                loop {
                    if s.closed {
                        return;
                    }
                    if !s.control.is_empty() {
                        break Job::Control(std::mem::take(&mut s.control));
                    }
                    let haves = self.swarm.announced_since(s.haves_sent);
                    if !haves.is_empty() {
                        s.haves_sent += haves.len();
                        break Job::Haves(haves);
                    }
                    if let Some(r) = s.queue.pop_front() {
                        break Job::Block(r);
                    }
                    if lock(&self.writer).last_sent.elapsed() >= KEEPALIVE_INTERVAL {
                        break Job::KeepAlive;
                    }
                    s = self
                        .wake
                        .wait_timeout(s, TICK)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            };
            let r = match job {
                Job::Control(ms) => {
                    out.clear();
                    for m in ms {
                        m.encode(&mut out).expect("a control message encodes");
                    }
                    self.send_bytes(&out)
                }
                Job::Haves(haves) => {
                    out.clear();
                    for i in haves {
                        Message::Have(i).encode(&mut out).expect("a have encodes");
                    }
                    self.send_bytes(&out)
                }
                Job::KeepAlive => self.send(&Message::KeepAlive),
                Job::Block(r) => self.serve_block(r, &mut out),
            };
            if let Err(e) = r {
                log::info!("{}: upload failed: {e}", self.addr);
                self.close();
                return;
            }
        }
    }

    fn serve_block(&self, r: BlockRequest, out: &mut Vec<u8>) -> io::Result<()> {
        if let Some(limit) = &self.swarm.up_limit {
            limit.take(u64::from(r.length));
        }
        // Cancelled or choked while we waited for the limit: not sent.
        if lock(&self.state).am_choking {
            return Ok(());
        }
        let header = peer_wire::piece_header(r.index, r.begin, r.length)
            .expect("a checked block of at most 16 KiB fits");
        out.clear();
        out.extend_from_slice(&header);
        out.resize(header.len() + r.length as usize, 0);
        self.swarm.store.read_at(
            r.index as usize,
            u64::from(r.begin),
            &mut out[header.len()..],
        )?;
        // Header and block in one write under the lock: one message, never interleaved.
        self.send_bytes(out)?;
        // Per block, at trace level only: tests count what a seed served (a piece served
        // twice to one downloader is a piece it re-fetched).
        log::trace!(
            "{}: sent block {}:{}+{}",
            self.addr,
            r.index,
            r.begin,
            r.length
        );
        lock(&self.state).uploaded += u64::from(r.length);
        self.swarm.count_uploaded(u64::from(r.length));
        Ok(())
    }

    /// Hands the download side to one engine source; `false` if one has it already.
    pub fn take_download(&self) -> bool {
        let mut s = lock(&self.state);
        !std::mem::replace(&mut s.download_taken, true)
    }

    /// Gives the download side back (the engine's source is gone): not interested.
    pub fn release_download(&self) {
        lock(&self.state).fetching = None;
        self.set_interested(false);
        lock(&self.state).download_taken = false;
    }

    /// What the peer has now; the pieces announced until now are no longer news.
    pub fn has_now(&self) -> Bitfield {
        let mut s = lock(&self.state);
        s.news.clear();
        s.has.clone()
    }

    /// Says `interested` if the peer has something we lack.
    pub fn update_interest(&self) {
        if self.wants_something() {
            self.set_interested(true);
        }
    }

    /// Pieces the peer announced since the last call, appended to `out`.
    pub fn take_news(&self, out: &mut Vec<usize>) {
        out.append(&mut lock(&self.state).news);
    }

    /// A handle that aborts this connection's fetch from another thread.
    pub fn abort_handle(self: &Arc<Self>) -> ConnAbort {
        ConnAbort(Arc::downgrade(self))
    }

    fn closed_error(&self) -> FetchError {
        FetchError::Io(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "the connection closed",
        ))
    }

    /// Fetches piece `index` (`piece_len` bytes) into `buf`, which holds exactly the
    /// piece on success (not verified here). Keeps [`pipeline_depth`] block requests
    /// outstanding (sized from the peer's measured rate); a choke mid-piece waits for the
    /// unchoke (at most [`Timeouts::unchoke`]) and asks again what it dropped. A piece the
    /// peer does not have fails with [`FetchError::NotFound`] at once.
    pub fn fetch(
        &self,
        index: usize,
        piece_len: u64,
        buf: &mut Vec<u8>,
        timeouts: &Timeouts,
    ) -> Result<(), FetchError> {
        if self.aborted.load(Ordering::SeqCst) {
            return Err(FetchError::Io(io::ErrorKind::ConnectionAborted.into()));
        }
        if piece_len == 0 || piece_len > MAX_PIECE_LEN {
            return Err(protocol(PeerError::PieceTooLong {
                index,
                len: piece_len,
            }));
        }
        {
            let mut s = lock(&self.state);
            if s.closed {
                return Err(self.closed_error());
            }
            if index >= s.has.len() || !s.has.has(index) {
                return Err(FetchError::NotFound);
            }
            s.fetching = Some(index as u32);
        }
        // Blocks of an earlier fetch that were still on their way.
        while self.down_rx.try_recv().is_ok() {}
        self.set_interested(true);
        // Overwritten block by block: no need to clear the pooled buffer.
        buf.resize(piece_len as usize, 0);
        let n_blocks = piece_len.div_ceil(u64::from(BLOCK_LEN)) as usize;
        let mut state = vec![false; n_blocks]; // received
        let mut requested = vec![false; n_blocks]; // outstanding now
        let mut asked = vec![false; n_blocks]; // asked at least once
        let r = self.fetch_blocks(
            index,
            piece_len,
            buf,
            timeouts,
            &mut state,
            &mut requested,
            &mut asked,
        );
        lock(&self.state).fetching = None;
        if r.is_err() && !self.is_closed() {
            // Courtesy: what we no longer wait for need not be sent.
            let mut out = Vec::new();
            for b in (0..n_blocks).filter(|&b| requested[b] && !state[b]) {
                let _ = Message::Cancel(block_request(index, piece_len, b)).encode(&mut out);
            }
            if !out.is_empty() {
                let _ = self.send_bytes(&out);
            }
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn fetch_blocks(
        &self,
        index: usize,
        piece_len: u64,
        buf: &mut [u8],
        timeouts: &Timeouts,
        got_block: &mut [bool],
        requested: &mut [bool],
        asked: &mut [bool],
    ) -> Result<(), FetchError> {
        let n_blocks = got_block.len();
        let (mut got, mut outstanding, mut next_missing) = (0usize, 0usize, 0usize);
        let mut stall_at = Instant::now() + timeouts.stall;
        let mut unchoke_by: Option<Instant> = None;
        let mut out = Vec::new();
        while got < n_blocks {
            if self.aborted.load(Ordering::SeqCst) {
                return Err(FetchError::Io(io::ErrorKind::ConnectionAborted.into()));
            }
            let (choked, closed, rate) = {
                let s = lock(&self.state);
                (s.peer_choking, s.closed, s.rate)
            };
            if closed {
                return Err(self.closed_error());
            }
            let now = Instant::now();
            let wait_until = if choked {
                // BEP 3: a choke drops our outstanding requests; ask them again later.
                let by = *unchoke_by.get_or_insert_with(|| {
                    requested.iter_mut().for_each(|r| *r = false);
                    outstanding = 0;
                    next_missing = 0;
                    now + timeouts.unchoke
                });
                if now >= by {
                    return Err(FetchError::Choked);
                }
                by
            } else {
                if unchoke_by.take().is_some() {
                    stall_at = now + timeouts.stall;
                }
                // Top the window up, several requests in one write.
                out.clear();
                let depth = pipeline_depth(rate);
                while outstanding < depth && next_missing < n_blocks {
                    let b = next_missing;
                    if !got_block[b] && !requested[b] {
                        Message::Request(block_request(index, piece_len, b))
                            .encode(&mut out)
                            .expect("a request encodes");
                        requested[b] = true;
                        asked[b] = true;
                        outstanding += 1;
                    }
                    next_missing += 1;
                }
                if !out.is_empty() {
                    self.send_bytes(&out)?;
                }
                if now >= stall_at {
                    return Err(timed_out("no block received within the stall timeout"));
                }
                stall_at
            };
            let wait = wait_until.saturating_duration_since(now).min(TICK);
            let first = match self.down_rx.recv_timeout(wait) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Err(self.closed_error()),
            };
            // Everything the reader has passed on meanwhile, before looking at the state
            // again: one wake-up and one look at the shared state per burst, not per block.
            for m in std::iter::once(first).chain(self.down_rx.try_iter()) {
                let Down::Block {
                    index: pi,
                    begin,
                    data,
                } = m
                else {
                    continue;
                };
                let b = check_block(index, piece_len, pi, begin, &data, None)?;
                if !asked[b] {
                    // Of our piece but not asked by this fetch: a late answer to an
                    // earlier fetch of the same piece (a choke, a retry). Harmless.
                    log::debug!("{}: ignored a block {pi}:{begin} not asked", self.addr);
                } else if !got_block[b] {
                    if requested[b] {
                        outstanding -= 1;
                        requested[b] = false;
                    }
                    let at = begin as usize;
                    buf[at..at + data.len()].copy_from_slice(&data);
                    got_block[b] = true;
                    got += 1;
                    stall_at = Instant::now() + timeouts.stall;
                }
                if got == n_blocks {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// The request for block `b` of piece `index` (`piece_len` bytes).
fn block_request(index: usize, piece_len: u64, b: usize) -> BlockRequest {
    let begin = b as u64 * u64::from(BLOCK_LEN);
    BlockRequest {
        index: index as u32,
        begin: begin as u32,
        length: (piece_len - begin).min(u64::from(BLOCK_LEN)) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipeline_grows_with_the_rate_within_its_bounds() {
        assert_eq!(pipeline_depth(0), MIN_PIPELINE);
        // 1 MiB/s for 3 s is 192 blocks of 16 KiB.
        assert_eq!(pipeline_depth(1 << 20), 192);
        assert_eq!(pipeline_depth(u64::MAX), MAX_PIPELINE);
    }
}
