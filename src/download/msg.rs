//! What the engine's threads send one another, and the context they share: the
//! vocabulary of the channels between the coordinator, the workers and the verifiers.

use std::io;
use std::sync::atomic::AtomicBool;

use crate::bitfield::Bitfield;
use crate::digest::Digest;
use crate::storage::PieceStore;

use super::options::{Options, Verified};
use super::plan::PeerId;
use super::report::PeerFate;
use super::source::{AbortHandle, Connector, FetchCause, PieceRequest};

/// One distinct piece content: several positions may share a digest (zero-filled
/// regions), and each content is fetched once and written at every position.
pub(super) type PieceId = usize;

/// Why one fetch failed, as the worker tells it.
pub(super) enum Failure {
    /// The peer does not have the piece.
    NotFound,
    /// The peer answered an error; as the protocol names it.
    Answered(String),
    /// The copy did not hash to the digest.
    BadDigest,
    /// The connection broke; the cause, what more the error says, and its whole text.
    Broken(FetchCause, Option<String>, String),
}

/// Messages from workers and verifiers to the coordinator.
pub(super) enum Event {
    /// The peer's worker is ready for a piece.
    Idle(PeerId),
    /// The peer's worker has a new connection, abortable with this handle if any, and
    /// the pieces the peer announced on it, if it did.
    Connected(PeerId, Option<Box<dyn AbortHandle>>, Option<Bitfield>),
    /// The peer announced more pieces (positions).
    Has(PeerId, Vec<usize>),
    /// A piece verified and is stored; its bytes.
    Verified(PieceId, PeerId, u64),
    /// A copy of a piece verified, but another copy had won: it was dropped, unwritten.
    Duplicate(PieceId, PeerId),
    /// A fetch of the piece from the peer failed.
    Failed(PieceId, PeerId, Failure),
    /// The peer's worker gave up on the peer.
    PeerDead(PeerId, PeerFate),
    /// The peer's worker thread has ended (sent last, whatever the reason).
    Exited(PeerId),
    /// Writing a verified piece (this position) failed: fatal.
    StoreFailed(usize, io::Error),
}

/// Coordinator → worker.
pub(super) enum Assignment {
    Fetch(PieceId, PieceRequest),
}

/// A fetched piece on its way to a verifier.
pub(super) struct VerifyJob {
    pub(super) piece: PieceId,
    pub(super) peer: PeerId,
    pub(super) digest: Digest,
    pub(super) buf: Vec<u8>,
}

/// What the engine's threads share, read-only, for the length of a download.
pub(super) struct Ctx<'e> {
    pub(super) store: &'e dyn PieceStore,
    pub(super) connector: &'e dyn Connector,
    pub(super) opts: &'e Options,
    /// Positions of each piece, by piece id.
    pub(super) indexes: &'e PieceIndexes,
    pub(super) on_verified: Option<&'e dyn Verified>,
    /// Per piece: a copy of it has verified. Swapped by the verifiers, so exactly one copy
    /// of each piece is written, reported and counted even when endgame fetched two.
    pub(super) claimed: &'e [AtomicBool],
    /// Set by the coordinator once the download is over, before it aborts the connections
    /// still busy: a worker whose fetch then fails exits without reporting a failure.
    pub(super) finished: &'e AtomicBool,
}

/// The positions of every piece, flattened: piece `p`'s are `flat[start[p]..start[p + 1]]`.
pub(super) struct PieceIndexes {
    start: Vec<usize>,
    flat: Vec<usize>,
}

impl PieceIndexes {
    pub(super) fn new<'a>(pieces: impl Iterator<Item = &'a [usize]>) -> Self {
        let mut start = Vec::new();
        let mut flat = Vec::new();
        for p in pieces {
            start.push(flat.len());
            flat.extend_from_slice(p);
        }
        start.push(flat.len());
        PieceIndexes { start, flat }
    }

    pub(super) fn len(&self) -> usize {
        self.start.len() - 1
    }

    pub(super) fn of(&self, piece: usize) -> &[usize] {
        &self.flat[self.start[piece]..self.start[piece + 1]]
    }
}
