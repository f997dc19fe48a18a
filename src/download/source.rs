//! The contract between the engine and a protocol: a [`Connector`] opens a
//! [`PieceSource`] to a peer, which fetches whole pieces by index, one at a time.
//!
//! Why whole pieces, stop-and-wait: the course protocol and bvTorrent can only ask for a
//! whole chunk and read its reply before the next request; BitTorrent pipelines 16 KiB
//! blocks, which its source does *inside* one fetch (every block of the piece is
//! requested at once). The engine then only schedules pieces, and every protocol fits.

use std::io;

use crate::bitfield::Bitfield;
use crate::digest::Digest;

use super::plan::PeerInfo;

/// What to fetch: a piece by its index in the plan, with what the engine knows of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceRequest {
    /// The piece's index (file order).
    pub index: usize,
    /// What its content must hash to (the course asks for chunks by this digest).
    pub digest: Digest,
    /// Its length, when the protocol's metadata gives it (BitTorrent, bvTorrent); `None`
    /// when it does not (the course's FILE_INFO carries no sizes).
    pub len: Option<u64>,
}

/// Opens a connection to a peer, in whatever protocol it speaks.
pub trait Connector: Send + Sync {
    /// Connects (with the protocol's own timeouts).
    fn connect(&self, peer: &PeerInfo) -> Result<Connected, FetchError>;
}

/// A new connection, and what it learnt of the peer's pieces while opening.
pub struct Connected {
    /// The connection.
    pub source: Box<dyn PieceSource>,
    /// The pieces the peer announced on connecting (BitTorrent's bitfield), if it did;
    /// `None` keeps what the engine already knew (the course's plan, bvTorrent's masks).
    pub has: Option<Bitfield>,
}

impl Connected {
    /// A connection that announced nothing.
    pub fn new(source: Box<dyn PieceSource>) -> Self {
        Connected { source, has: None }
    }
}

/// One open connection to a peer that fetches pieces, one at a time.
pub trait PieceSource: Send {
    /// Fetches piece `req` into `buf`, which holds exactly the content on success. `buf`
    /// comes from the engine's pool and is reused from piece to piece: overwrite it
    /// rather than clear it, so that its memory is not zeroed again. The content is *not*
    /// verified here: the engine hashes it off the socket thread.
    fn fetch(&mut self, req: &PieceRequest, buf: &mut Vec<u8>) -> Result<(), FetchError>;

    /// Called while the worker has nothing to fetch from this peer: reads what the peer
    /// sent meanwhile (BitTorrent's HAVE and keep-alives), without blocking for long.
    /// The default has nothing to read.
    fn idle(&mut self) -> Result<(), FetchError> {
        Ok(())
    }

    /// Pieces the peer announced since the last call (BitTorrent's HAVE), appended to
    /// `out`. The default announces nothing.
    fn news(&mut self, _out: &mut Vec<usize>) {}

    /// A handle that aborts this connection from another thread: a `fetch` blocked on it
    /// returns an error soon after [`AbortHandle::abort`], and any later one fails at
    /// once. The engine uses it to end a download without waiting for a losing endgame
    /// fetch from a stuck peer to time out. `None` (the default) means the connection
    /// cannot be aborted: the end of the download then waits for the fetch to return.
    fn abort_handle(&self) -> Option<Box<dyn AbortHandle>> {
        None
    }
}

/// Aborts one connection from another thread (see [`PieceSource::abort_handle`]).
pub trait AbortHandle: Send {
    /// Aborts the connection, if it is still open; harmless if it is already closed.
    fn abort(&self);
}

/// A protocol's own error, kept as a value (its source chain intact) rather than text.
pub type ProtocolCause = Box<dyn std::error::Error + Send + Sync>;

/// Why one fetch failed. The engine branches on the variant (see [`FetchError::cause`]);
/// the payloads are for people.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The peer says it does not have the piece; the connection is still good.
    #[error("chunk not found")]
    NotFound,
    /// The peer answered with an error instead of the piece; the connection is still good.
    #[error("peer answered {0}")]
    Refused(ProtocolCause),
    /// The peer sent another piece than the one asked for; the stream is out of step.
    #[error("protocol error: asked for chunk {asked}, got a CHUNK labelled {got}")]
    WrongPiece {
        /// What was asked for.
        asked: Digest,
        /// What came.
        got: Digest,
    },
    /// The piece ended before its known length.
    #[error("short read: expected {expected} bytes, got {got}")]
    ShortRead {
        /// The piece's length.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// The peer keeps us choked (BitTorrent): it will not serve us for now.
    #[error("choked by the peer")]
    Choked,
    /// The reply broke the protocol; the connection is out of step and must be replaced.
    #[error("protocol error: {0}")]
    Protocol(ProtocolCause),
    /// I/O failure, timeout or closed connection.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What kind of failure a [`FetchError`] is, for policy (retry, replace, drop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FetchCause {
    /// The peer lacks the piece.
    NotFound,
    /// The peer refused the request.
    Refused,
    /// Another piece came.
    WrongPiece,
    /// Fewer bytes than the piece's length.
    ShortRead,
    /// The peer chokes us.
    Choked,
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
            Self::Choked => FetchCause::Choked,
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

    /// Whether the connection is unusable after this failure and must be replaced.
    pub fn breaks_connection(&self) -> bool {
        !matches!(
            self.cause(),
            FetchCause::NotFound | FetchCause::Refused | FetchCause::Choked
        )
    }
}

impl FetchCause {
    /// How a person reads this cause after a peer's name: `alice refused the connection`.
    pub fn phrase(self) -> &'static str {
        match self {
            FetchCause::NotFound => "did not have it",
            FetchCause::Refused => "refused the request",
            FetchCause::WrongPiece => "sent another chunk",
            FetchCause::ShortRead => "sent a short chunk",
            FetchCause::Choked => "kept us choked",
            FetchCause::Protocol => "broke the protocol",
            FetchCause::TimedOut => "timed out",
            FetchCause::ConnectionRefused => "refused the connection",
            FetchCause::Reset => "closed the connection",
            FetchCause::Io => "failed",
        }
    }
}
