//! A download-only BitTorrent connection on one thread (BEP 3): one connection to one
//! peer that fetches whole pieces, block by block (stop-and-wait per piece, pipelined
//! within it). `swarmlet` itself downloads over `crate::bt::conn` (one connection per
//! peer, both ways); this one stays as a small, single-threaded probe of a seed (the
//! tests drive our seed and scripted peers with it), and holds what both share: the
//! [`Timeouts`], the [`PeerError`]s and the block check ([`check_block`]).
//!
//! One thread owns a [`PeerConnection`] and is its only reader and writer; another
//! thread may only abort it ([`PeerConnection::abort_handle`]: `shutdown` through a weak
//! reference, which wakes a blocked read). A fetch keeps up to [`PIPELINE_DEPTH`] block
//! requests outstanding, fills the caller's buffer at each block's offset, and survives
//! a choke mid-piece (BEP 3: the peer then drops our requests, so the missing blocks are
//! asked again after the unchoke).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::bitfield::Bitfield;
use crate::bt::metainfo::InfoHash;
use crate::bt::peer_wire::{
    self, BLOCK_LEN, BlockRequest, Handshake, Limits, Message, MessageError, PeerId, ReadError,
    Reserved,
};
use crate::download::{AbortHandle, FetchError};

/// Block requests outstanding at once on one connection. A fixed window: the rate is
/// `window / round trip`, so 64 blocks (1 MiB) fill a 1 Gbit/s link at 8 ms of round trip
/// and loopback many times over, while staying under what every client accepts queued
/// without the BEP 10 `reqq` hint (libtorrent assumes 250 from a peer that sends none,
/// Transmission and aria2 accept more). `crate::bt::conn` sizes its pipeline from the
/// measured rate instead, as libtorrent does.
pub const PIPELINE_DEPTH: usize = 64;

/// A keep-alive goes out after this long without our sending anything: BEP 3 peers drop
/// a connection silent for about 2 minutes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(90);

/// How long [`PeerConnection::idle`] waits for a message to start: short, as the engine
/// calls it every half second between pieces.
pub const IDLE_POLL: Duration = Duration::from_millis(100);

/// Messages [`PeerConnection::idle`] reads at most per call: more than a burst of haves
/// from a peer that just verified a batch, and the engine calls it again soon.
pub const IDLE_MAX_MESSAGES: usize = 256;

/// The timeouts of a download connection. Each default is a design decision.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Connecting: loopback and a LAN answer in milliseconds, the internet in well under
    /// a second; 5 s means the peer is not there.
    pub connect: Duration,
    /// The peer's handshake, once connected: 10 s.
    pub handshake: Duration,
    /// Waiting to be unchoked (after `interested`, or after a choke mid-piece). Some seeds
    /// unchoke only after 7 to 9 s (their choker runs every 10 s): 30 s is three rounds.
    pub unchoke: Duration,
    /// A fetch with requests outstanding that receives no block for this long is stalled
    /// (BEP 3 practice calls such a peer snubbed after 60 s).
    pub stall: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            handshake: Duration::from_secs(10),
            unchoke: Duration::from_secs(30),
            stall: Duration::from_secs(60),
        }
    }
}

/// How a peer broke the protocol (the cause inside [`FetchError::Protocol`]).
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The handshake is for another torrent.
    #[error("handshake for infohash {0}, not ours")]
    WrongTorrent(InfoHash),
    /// The connection is to ourselves (our own peer id came back).
    #[error("connected to ourselves")]
    Ourselves,
    /// A bitfield of the wrong length or with spare bits set.
    #[error("bad bitfield: {0}")]
    BadBitfield(MessageError),
    /// A block we did not ask for (another piece, or never requested).
    #[error("unsolicited block {index}:{begin} ({len} bytes)")]
    Unsolicited {
        /// Piece index.
        index: u32,
        /// Offset in the piece.
        begin: u32,
        /// Bytes.
        len: usize,
    },
    /// A block of our piece that is not one of its 16 KiB blocks.
    #[error("block {index}:{begin} of {len} bytes is not a block of the {piece_len}-byte piece")]
    BadBlock {
        /// Piece index.
        index: u32,
        /// Offset in the piece.
        begin: u32,
        /// Bytes.
        len: usize,
        /// The piece's length.
        piece_len: u64,
    },
    /// A piece length over what a buffer may hold here.
    #[error("piece {index} is {len} bytes, too long")]
    PieceTooLong {
        /// Piece index.
        index: usize,
        /// Its length.
        len: u64,
    },
    /// A message that breaks the wire format.
    #[error(transparent)]
    Wire(ReadError),
}

pub(crate) fn protocol(e: PeerError) -> FetchError {
    FetchError::Protocol(Box::new(e))
}

pub(crate) fn wire(e: ReadError) -> FetchError {
    match e {
        ReadError::Io(e) => FetchError::Io(e),
        ReadError::Closed => FetchError::Io(io::ErrorKind::UnexpectedEof.into()),
        e => protocol(PeerError::Wire(e)),
    }
}

pub(crate) fn timed_out(what: &str) -> FetchError {
    FetchError::Io(io::Error::new(io::ErrorKind::TimedOut, what.to_string()))
}

/// Reads from the shared socket with a deadline for the whole wait, not per `read`
/// (a peer sending a byte just inside each read timeout would otherwise never time out).
pub(crate) struct DeadlineReader {
    pub(crate) stream: Arc<TcpStream>,
    pub(crate) deadline: Instant,
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        (&*self.stream).read(buf)
    }
}

/// One block's state in the piece being fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// Not asked for (or dropped by a choke).
    Missing,
    /// Asked for, not received.
    Requested,
    /// Received.
    Got,
}

/// One open connection to a peer, interested and (after [`PeerConnection::connect`])
/// unchoked.
pub struct PeerConnection {
    stream: Arc<TcpStream>,
    reader: BufReader<DeadlineReader>,
    limits: Limits,
    peer: SocketAddr,
    peer_id: PeerId,
    has: Bitfield,
    choked: bool,
    last_sent: Instant,
    timeouts: Timeouts,
    /// Scratch for outgoing requests (several per write).
    out: Vec<u8>,
}

/// Aborts a [`PeerConnection`] from another thread: `shutdown(Both)` wakes a read
/// blocked on the socket (it sees end of file) and fails later writes. Weak: the handle
/// never keeps the socket open.
pub struct PeerAbort(Weak<TcpStream>);

impl AbortHandle for PeerAbort {
    fn abort(&self) {
        if let Some(s) = self.0.upgrade() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl PeerConnection {
    /// Connects to `addr`, exchanges handshakes for `info_hash`, reads what the peer has
    /// (bitfield, haves), says `interested` and waits to be unchoked. Returns the
    /// connection and the pieces the peer has so far.
    pub fn connect(
        addr: SocketAddr,
        info_hash: InfoHash,
        our_id: PeerId,
        n_pieces: usize,
        timeouts: &Timeouts,
    ) -> Result<(PeerConnection, Bitfield), FetchError> {
        let stream = TcpStream::connect_timeout(&addr, timeouts.connect)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(timeouts.stall))?;
        let stream = Arc::new(stream);
        let ours = Handshake {
            // We implement no extension: no reserved bit set.
            reserved: Reserved::NONE,
            info_hash: info_hash.0,
            peer_id: our_id,
        };
        (&*stream).write_all(&ours.encode())?;
        let mut reader = BufReader::with_capacity(
            64 * 1024,
            DeadlineReader {
                stream: stream.clone(),
                deadline: Instant::now() + timeouts.handshake,
            },
        );
        let theirs = peer_wire::read_handshake(&mut reader).map_err(wire)?;
        if theirs.info_hash != info_hash.0 {
            return Err(protocol(PeerError::WrongTorrent(InfoHash(
                theirs.info_hash,
            ))));
        }
        if theirs.peer_id == our_id {
            return Err(protocol(PeerError::Ourselves));
        }
        let n = u32::try_from(n_pieces).map_err(|_| {
            FetchError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many pieces",
            ))
        })?;
        let mut conn = PeerConnection {
            stream,
            reader,
            limits: Limits::new(n),
            peer: addr,
            peer_id: theirs.peer_id,
            has: Bitfield::new(n_pieces),
            choked: true,
            last_sent: Instant::now(),
            timeouts: *timeouts,
            out: Vec::with_capacity(PIPELINE_DEPTH * 17),
        };
        conn.send(&Message::Interested)?;
        conn.wait_unchoke(&mut |_| {})?;
        let has = conn.has.clone();
        Ok((conn, has))
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The peer's id, from its handshake.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// What the peer has, as far as it told us.
    pub fn has(&self) -> &Bitfield {
        &self.has
    }

    /// A handle that aborts this connection from another thread.
    pub fn abort_handle(&self) -> PeerAbort {
        PeerAbort(Arc::downgrade(&self.stream))
    }

    fn send(&mut self, m: &Message) -> Result<(), FetchError> {
        peer_wire::write_message(&mut &*self.stream, m)?;
        self.last_sent = Instant::now();
        Ok(())
    }

    fn keepalive_if_due(&mut self) -> Result<(), FetchError> {
        if self.last_sent.elapsed() >= KEEPALIVE_INTERVAL {
            self.send(&Message::KeepAlive)?;
        }
        Ok(())
    }

    /// Reads one message, giving it until `deadline` to start and arrive; handles what
    /// concerns the connection itself (choke, have, bitfield) and returns the message.
    fn next(
        &mut self,
        deadline: Instant,
        on_have: &mut dyn FnMut(usize),
    ) -> Result<Message, FetchError> {
        self.reader.get_mut().deadline = deadline;
        let m = match peer_wire::read_message(&mut self.reader, &self.limits) {
            Ok(m) => m,
            Err(ReadError::Message(MessageError::UnknownId { id, len })) => {
                // An extension message we never announced: skipped, harmless.
                log::debug!(
                    "{}: skipped unknown message id {id} ({len} bytes)",
                    self.peer
                );
                return Ok(Message::KeepAlive);
            }
            Err(ReadError::Message(e @ MessageError::SpareBits { .. })) => {
                return Err(protocol(PeerError::BadBitfield(e)));
            }
            Err(e) => return Err(wire(e)),
        };
        match &m {
            Message::Choke => self.choked = true,
            Message::Unchoke => self.choked = false,
            Message::Have(i) if self.has.set(*i as usize) => on_have(*i as usize),
            Message::Bitfield(bits) => {
                // read_message checked its length and spare bits.
                if let Some(b) = Bitfield::from_bytes(bits, self.has.len()) {
                    for i in b.ones() {
                        if self.has.set(i) {
                            on_have(i);
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(m)
    }

    /// Reads until unchoked, for at most [`Timeouts::unchoke`]; blocks that arrive
    /// meanwhile are the caller's business, so this is only used with none outstanding.
    fn wait_unchoke(&mut self, on_have: &mut dyn FnMut(usize)) -> Result<(), FetchError> {
        let deadline = Instant::now() + self.timeouts.unchoke;
        while self.choked {
            if Instant::now() >= deadline {
                return Err(FetchError::Choked);
            }
            match self.next(deadline, on_have) {
                Ok(Message::Piece { index, begin, data }) => {
                    return Err(protocol(PeerError::Unsolicited {
                        index,
                        begin,
                        len: data.len(),
                    }));
                }
                Ok(_) => {}
                Err(FetchError::Io(e)) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(FetchError::Choked);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what the peer sent meanwhile (haves, keep-alives, choke/unchoke) without
    /// blocking for more than [`IDLE_POLL`] when nothing comes; sends a keep-alive when
    /// one is due. For the time between two fetches.
    pub fn idle(&mut self, on_have: &mut dyn FnMut(usize)) -> Result<(), FetchError> {
        self.keepalive_if_due()?;
        // Bounded: a peer streaming keep-alives or haves without pause must not keep the
        // worker here for ever.
        for _ in 0..IDLE_MAX_MESSAGES {
            if self.reader.buffer().is_empty() {
                self.reader.get_mut().deadline = Instant::now() + IDLE_POLL;
                match self.reader.fill_buf() {
                    Ok([]) => return Err(FetchError::Io(io::ErrorKind::UnexpectedEof.into())),
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                        ) =>
                    {
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            // A message has started: give it the stall timeout to arrive whole.
            let deadline = Instant::now() + self.timeouts.stall;
            if let Message::Piece { index, begin, data } = self.next(deadline, on_have)? {
                return Err(protocol(PeerError::Unsolicited {
                    index,
                    begin,
                    len: data.len(),
                }));
            }
        }
        Ok(())
    }

    /// Fetches piece `index` (`piece_len` bytes) into `buf`, which holds exactly the
    /// piece on success (not verified here). Keeps up to [`PIPELINE_DEPTH`] requests
    /// outstanding; a choke mid-piece waits for the unchoke and asks again what it
    /// dropped. Pieces the peer announces meanwhile go to `on_have`. A piece the peer
    /// does not have fails with [`FetchError::NotFound`] at once.
    pub fn fetch_piece(
        &mut self,
        index: usize,
        piece_len: u64,
        buf: &mut Vec<u8>,
        on_have: &mut dyn FnMut(usize),
    ) -> Result<(), FetchError> {
        if index >= self.has.len() {
            return Err(FetchError::NotFound);
        }
        // A piece is at most what the .torrent says; 64 MiB is the largest piece length
        // clients make, and bounds the buffer whatever the caller passes.
        if piece_len == 0 || piece_len > super::metainfo::MAX_PIECE_LENGTH {
            return Err(protocol(PeerError::PieceTooLong {
                index,
                len: piece_len,
            }));
        }
        if !self.has.has(index) {
            return Err(FetchError::NotFound);
        }
        self.keepalive_if_due()?;
        // Overwritten block by block: no need to clear the pooled buffer.
        buf.resize(piece_len as usize, 0);
        let n_blocks = piece_len.div_ceil(u64::from(BLOCK_LEN)) as usize;
        let mut state = vec![Block::Missing; n_blocks];
        let mut asked = vec![false; n_blocks];
        let (mut got, mut outstanding, mut next_missing) = (0usize, 0usize, 0usize);
        let block_len = |b: usize| -> u32 {
            let start = b as u64 * u64::from(BLOCK_LEN);
            (piece_len - start).min(u64::from(BLOCK_LEN)) as u32
        };
        let mut deadline = Instant::now() + self.timeouts.stall;
        while got < n_blocks {
            if self.choked {
                // BEP 3: a choke drops our outstanding requests; ask them again later.
                for s in state.iter_mut().filter(|s| **s == Block::Requested) {
                    *s = Block::Missing;
                }
                outstanding = 0;
                next_missing = 0;
                self.wait_unchoke_in_piece(index, &mut state, &asked, &mut got, buf, on_have)?;
                deadline = Instant::now() + self.timeouts.stall;
                continue;
            }
            // Top the window up, several requests in one write.
            self.out.clear();
            while outstanding < PIPELINE_DEPTH && next_missing < n_blocks {
                if state[next_missing] == Block::Missing {
                    let r = BlockRequest {
                        index: index as u32,
                        begin: next_missing as u32 * BLOCK_LEN,
                        length: block_len(next_missing),
                    };
                    Message::Request(r)
                        .encode(&mut self.out)
                        .expect("a request encodes");
                    state[next_missing] = Block::Requested;
                    asked[next_missing] = true;
                    outstanding += 1;
                }
                next_missing += 1;
            }
            if !self.out.is_empty() {
                (&*self.stream).write_all(&self.out)?;
                self.last_sent = Instant::now();
            }
            if Instant::now() >= deadline {
                return Err(timed_out("no block received within the stall timeout"));
            }
            match self.next(deadline, on_have) {
                Ok(Message::Piece {
                    index: pi,
                    begin,
                    data,
                }) => {
                    let b = check_block(index, piece_len, pi, begin, &data, Some(&asked))?;
                    match state[b] {
                        Block::Got => {} // a duplicate (crossed a choke): ignored
                        s => {
                            if s == Block::Requested {
                                outstanding -= 1;
                            }
                            let at = begin as usize;
                            buf[at..at + data.len()].copy_from_slice(&data);
                            state[b] = Block::Got;
                            got += 1;
                            deadline = Instant::now() + self.timeouts.stall;
                        }
                    }
                }
                Ok(_) => {}
                Err(FetchError::Io(e)) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(timed_out("no block received within the stall timeout"));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Waits for an unchoke in the middle of a piece: blocks that were already on their
    /// way when the choke came are still taken.
    fn wait_unchoke_in_piece(
        &mut self,
        index: usize,
        state: &mut [Block],
        asked: &[bool],
        got: &mut usize,
        buf: &mut [u8],
        on_have: &mut dyn FnMut(usize),
    ) -> Result<(), FetchError> {
        let deadline = Instant::now() + self.timeouts.unchoke;
        let piece_len = buf.len() as u64;
        while self.choked {
            match self.next(deadline, on_have) {
                Ok(Message::Piece {
                    index: pi,
                    begin,
                    data,
                }) => {
                    // A block of this piece that we asked for once, already on its way
                    // when the choke came: still good.
                    let b = check_block(index, piece_len, pi, begin, &data, Some(asked))?;
                    if state[b] != Block::Got {
                        let at = begin as usize;
                        buf[at..at + data.len()].copy_from_slice(&data);
                        state[b] = Block::Got;
                        *got += 1;
                    }
                }
                Ok(_) => {}
                Err(FetchError::Io(e)) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(FetchError::Choked);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Checks a received block against the piece being fetched (`index`, `piece_len` bytes,
/// `asked[b]`: block `b` was requested once; `None`: not checked); returns its block number. Shared by both
/// download connections ([`PeerConnection`] and `crate::bt::conn`).
pub(crate) fn check_block(
    index: usize,
    piece_len: u64,
    pi: u32,
    begin: u32,
    data: &[u8],
    asked: Option<&[bool]>,
) -> Result<usize, FetchError> {
    let unsolicited = || {
        protocol(PeerError::Unsolicited {
            index: pi,
            begin,
            len: data.len(),
        })
    };
    if pi as usize != index {
        return Err(unsolicited());
    }
    let b = (begin / BLOCK_LEN) as usize;
    let want = (piece_len.saturating_sub(u64::from(begin))).min(u64::from(BLOCK_LEN));
    if !begin.is_multiple_of(BLOCK_LEN)
        || u64::from(begin) >= piece_len
        || data.len() as u64 != want
    {
        return Err(protocol(PeerError::BadBlock {
            index: pi,
            begin,
            len: data.len(),
            piece_len,
        }));
    }
    if asked.is_some_and(|a| !a[b]) {
        return Err(unsolicited());
    }
    Ok(b)
}
