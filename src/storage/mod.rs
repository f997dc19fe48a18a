//! Where verified pieces go and where uploads read from. Storage knows files, never peers.
//!
//! One trait, [`PieceStore`], and two backends: [`hash_dir::HashDirStore`] (the course's
//! directory of hash-named chunk files) and [`files::FilesStore`] (the files of a
//! [`Layout`](crate::layout::Layout), written in place with positioned I/O: bvTorrent's
//! one file, BitTorrent's many). [`recheck`] finds which pieces of existing data verify;
//! [`resume`] records spare it for files unchanged since they were written.

pub mod files;
pub mod hash_dir;
pub mod recheck;
pub mod resume;

use std::io;

use crate::bitfield::Bitfield;
use crate::digest::Digest;

/// Storage of one download's pieces, shared by the verifier threads (writes) and upload
/// threads (reads): every method takes `&self`.
pub trait PieceStore: Send + Sync {
    /// Writes verified piece `index` whole. Called once per index, from any thread.
    fn write_piece(&self, index: usize, data: &[u8]) -> io::Result<()>;

    /// Reads `buf.len()` bytes of piece `index` from `offset` in the piece (an upload of
    /// a block, or a recheck). Fails if they are not all there.
    fn read_at(&self, index: usize, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Whether piece `index` is stored (written by this run or found by [`Self::recheck`]);
    /// what an upload may serve.
    fn has(&self, index: usize) -> bool;

    /// Checks what is already stored against `digests` (one per piece, in order) and
    /// returns the pieces that verify; from then on [`Self::has`] answers from it.
    /// Removes whatever the backend's crashes may leave behind (temporary files).
    fn recheck(&self, digests: &[Digest]) -> io::Result<Bitfield>;

    /// Where the pieces are, for messages.
    fn location(&self) -> String;
}
