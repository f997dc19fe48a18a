//! Where pieces lie in files: piece lengths (uniform but the last), the files with their
//! offsets in the byte stream, and for any piece the spans of files it covers.
//!
//! Shaped like librqbit's `Lengths`: all sizes are `u64`, every product is checked, and
//! a layout that cannot exist (a zero piece length, more pieces than a `u32` counts,
//! lengths that overflow) is refused by the constructor with a [`LayoutError`], so the
//! accessors never fail afterwards. Pad files (BEP 47) take space in the stream but are
//! never read or written: their bytes are zeros by definition.

use std::ops::Range;

/// Length of a block: what BitTorrent requests and a stop-and-wait source may fill in
/// steps. 16 KiB is what every BitTorrent client asks for and accepts (BEP 3).
pub const BLOCK_LEN: u64 = 16 * 1024;

/// Most pieces a layout may have: BitTorrent counts pieces in a `u32` on the wire.
pub const MAX_PIECES: u64 = u32::MAX as u64;

/// One file of a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components under the download root (checked by the storage, not here).
    pub path: Vec<String>,
    /// Length in bytes.
    pub len: u64,
    /// Offset of its first byte in the whole stream.
    pub offset: u64,
    /// A pad file: occupies its bytes in the stream, never stored.
    pub pad: bool,
}

/// A part of a piece that lies in one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Index in [`Layout::files`].
    pub file: usize,
    /// Offset in that file.
    pub file_offset: u64,
    /// Offset in the piece.
    pub piece_offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Why a layout cannot exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// A piece length of zero.
    #[error("piece length is zero")]
    ZeroPieceLength,
    /// No bytes at all: nothing to piece.
    #[error("the content is empty")]
    Empty,
    /// The total length overflows 64 bits.
    #[error("the total length overflows")]
    Overflow,
    /// More pieces than [`MAX_PIECES`].
    #[error("{0} pieces: more than {MAX_PIECES}")]
    TooManyPieces(u64),
    /// No files given.
    #[error("no files")]
    NoFiles,
    /// Explicit piece lengths that do not add up to the files' total.
    #[error("piece lengths add up to {pieces} bytes, the files to {files}")]
    LengthMismatch {
        /// Sum of the piece lengths.
        pieces: u64,
        /// Sum of the file lengths.
        files: u64,
    },
}

/// Pieces over files; see the module comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    total: u64,
    piece_len: u64,
    last_piece_len: u64,
    pieces: u64,
    files: Vec<FileEntry>,
}

impl Layout {
    /// One file `name` of `total` bytes, cut into pieces of `piece_len`.
    pub fn single(name: &str, total: u64, piece_len: u64) -> Result<Self, LayoutError> {
        Self::files(vec![(vec![name.to_string()], total, false)], piece_len)
    }

    /// Several files, in stream order: (path components, length, pad flag).
    pub fn files(
        files: Vec<(Vec<String>, u64, bool)>,
        piece_len: u64,
    ) -> Result<Self, LayoutError> {
        if piece_len == 0 {
            return Err(LayoutError::ZeroPieceLength);
        }
        if files.is_empty() {
            return Err(LayoutError::NoFiles);
        }
        let mut offset = 0u64;
        let mut entries = Vec::with_capacity(files.len());
        for (path, len, pad) in files {
            entries.push(FileEntry {
                path,
                len,
                offset,
                pad,
            });
            offset = offset.checked_add(len).ok_or(LayoutError::Overflow)?;
        }
        let total = offset;
        if total == 0 {
            return Err(LayoutError::Empty);
        }
        let pieces = total.div_ceil(piece_len);
        if pieces > MAX_PIECES {
            return Err(LayoutError::TooManyPieces(pieces));
        }
        let last_piece_len = total - (pieces - 1) * piece_len;
        Ok(Layout {
            total,
            piece_len,
            last_piece_len,
            pieces,
            files: entries,
        })
    }

    /// Total length of the stream, pad files included.
    pub fn total_len(&self) -> u64 {
        self.total
    }

    /// The length of every piece but the last.
    pub fn piece_length(&self) -> u64 {
        self.piece_len
    }

    /// The last piece's length (1 to `piece_length()`).
    pub fn last_piece_len(&self) -> u64 {
        self.last_piece_len
    }

    /// How many pieces.
    pub fn piece_count(&self) -> usize {
        self.pieces as usize
    }

    /// The files, in stream order.
    pub fn file_entries(&self) -> &[FileEntry] {
        &self.files
    }

    /// Length of piece `i`; 0 past the end.
    pub fn piece_len(&self, i: usize) -> u64 {
        let i = i as u64;
        if i + 1 < self.pieces {
            self.piece_len
        } else if i + 1 == self.pieces {
            self.last_piece_len
        } else {
            0
        }
    }

    /// Offset of piece `i`'s first byte in the stream.
    pub fn piece_offset(&self, i: usize) -> u64 {
        (i as u64).min(self.pieces) * self.piece_len
    }

    /// The byte range of piece `i` in the stream (empty past the end).
    pub fn piece_range(&self, i: usize) -> Range<u64> {
        let start = self.piece_offset(i);
        start..start + self.piece_len(i)
    }

    /// The parts of piece `i` in each file, in order, crossing file boundaries and
    /// skipping pad files and empty files. Nothing past the end.
    pub fn spans(&self, i: usize) -> impl Iterator<Item = Span> + '_ {
        // `range_spans` measures offsets from the range's start: the piece's.
        self.range_spans(self.piece_range(i))
    }

    /// The parts of stream bytes `range` in each non-pad file (`piece_offset` is then the
    /// offset from `range.start`).
    pub fn range_spans(&self, range: Range<u64>) -> impl Iterator<Item = Span> + '_ {
        let end = range.end.min(self.total);
        let start = range.start.min(end);
        // The first file ending after `start` (files are sorted by offset).
        let first = self.files.partition_point(|f| f.offset + f.len <= start);
        self.files[first..]
            .iter()
            .enumerate()
            .take_while(move |(_, f)| f.offset < end)
            .filter(|(_, f)| !f.pad && f.len > 0)
            .map(move |(k, f)| {
                let s = start.max(f.offset);
                let e = end.min(f.offset + f.len);
                Span {
                    file: first + k,
                    file_offset: s - f.offset,
                    piece_offset: s - start,
                    len: e - s,
                }
            })
    }

    /// The blocks of piece `i`: ([`BLOCK_LEN`]-long offset ranges in the piece, the last
    /// shorter).
    pub fn blocks(&self, i: usize) -> impl Iterator<Item = Range<u64>> {
        let len = self.piece_len(i);
        (0..len.div_ceil(BLOCK_LEN)).map(move |b| b * BLOCK_LEN..((b + 1) * BLOCK_LEN).min(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn f(name: &str, len: u64) -> (Vec<String>, u64, bool) {
        (vec![name.into()], len, false)
    }

    #[test]
    fn single_file_lengths() {
        let l = Layout::single("a", 10, 4).unwrap();
        assert_eq!(l.piece_count(), 3);
        assert_eq!((l.piece_len(0), l.piece_len(2), l.piece_len(3)), (4, 2, 0));
        assert_eq!(l.last_piece_len(), 2);
        let exact = Layout::single("a", 8, 4).unwrap();
        assert_eq!((exact.piece_count(), exact.last_piece_len()), (2, 4));
        assert_eq!(Layout::single("a", 0, 4), Err(LayoutError::Empty));
        assert_eq!(Layout::single("a", 4, 0), Err(LayoutError::ZeroPieceLength));
        assert_eq!(
            Layout::files(vec![f("a", u64::MAX), f("b", 1)], 1 << 20),
            Err(LayoutError::Overflow)
        );
        assert!(matches!(
            Layout::single("a", u64::MAX, 1),
            Err(LayoutError::TooManyPieces(_))
        ));
    }

    #[test]
    fn a_piece_spanning_three_files() {
        let l = Layout::files(vec![f("a", 3), f("b", 2), f("c", 5)], 8).unwrap();
        let s: Vec<Span> = l.spans(0).collect();
        assert_eq!(
            s,
            vec![
                Span {
                    file: 0,
                    file_offset: 0,
                    piece_offset: 0,
                    len: 3
                },
                Span {
                    file: 1,
                    file_offset: 0,
                    piece_offset: 3,
                    len: 2
                },
                Span {
                    file: 2,
                    file_offset: 0,
                    piece_offset: 5,
                    len: 3
                },
            ]
        );
        let s: Vec<Span> = l.spans(1).collect();
        assert_eq!(
            s,
            vec![Span {
                file: 2,
                file_offset: 3,
                piece_offset: 0,
                len: 2
            }]
        );
        assert_eq!(l.spans(2).count(), 0);
    }

    #[test]
    fn empty_and_pad_files_are_skipped() {
        let files = vec![
            f("empty-first", 0),
            f("a", 5),
            f("empty-mid", 0),
            (vec!["pad".into()], 3, true),
            f("b", 4),
            f("empty-last", 0),
        ];
        let l = Layout::files(files, 4).unwrap();
        assert_eq!(l.total_len(), 12);
        let files: Vec<Vec<usize>> = (0..l.piece_count())
            .map(|i| l.spans(i).map(|s| s.file).collect())
            .collect();
        // a: bytes 0..5, pad: 5..8 (piece 1 ends in it), b: 8..12.
        assert_eq!(files, vec![vec![1], vec![1], vec![4]]);
    }

    #[test]
    fn blocks_of_small_and_large_pieces() {
        let l = Layout::single("a", 3 * BLOCK_LEN + 5, 2 * BLOCK_LEN).unwrap();
        let b0: Vec<_> = l.blocks(0).collect();
        assert_eq!(b0, vec![0..BLOCK_LEN, BLOCK_LEN..2 * BLOCK_LEN]);
        let b1: Vec<_> = l.blocks(1).collect();
        assert_eq!(b1, vec![0..BLOCK_LEN, BLOCK_LEN..BLOCK_LEN + 5]);
        // Files smaller than a block: blocks follow the piece, spans the files.
        let l = Layout::files(vec![f("a", 100), f("b", 200)], BLOCK_LEN).unwrap();
        assert_eq!(l.blocks(0).collect::<Vec<_>>(), vec![0..300]);
        assert_eq!(l.spans(0).count(), 2);
    }

    proptest! {
        /// Every non-pad byte is covered exactly once by the spans of all pieces, each
        /// span lies inside its file and its piece, and spans of a piece are contiguous
        /// in piece offsets except where pad files are skipped.
        #[test]
        fn spans_cover_every_stored_byte_once(
            files in prop::collection::vec((0u64..300, any::<bool>()), 1..8),
            piece_len in 1u64..200,
        ) {
            let entries: Vec<_> = files
                .iter()
                .enumerate()
                .map(|(i, &(len, pad))| (vec![format!("f{i}")], len, pad))
                .collect();
            let Ok(l) = Layout::files(entries, piece_len) else {
                prop_assume!(false);
                unreachable!()
            };
            let mut seen: Vec<Vec<u32>> =
                files.iter().map(|&(len, _)| vec![0; len as usize]).collect();
            let mut sum = 0;
            for i in 0..l.piece_count() {
                sum += l.piece_len(i);
                for s in l.spans(i) {
                    let fe = &l.file_entries()[s.file];
                    prop_assert!(!fe.pad);
                    prop_assert!(s.len > 0);
                    prop_assert!(s.file_offset + s.len <= fe.len);
                    prop_assert!(s.piece_offset + s.len <= l.piece_len(i));
                    // The span's stream position agrees with the file's.
                    prop_assert_eq!(
                        l.piece_offset(i) + s.piece_offset,
                        fe.offset + s.file_offset
                    );
                    for b in s.file_offset..s.file_offset + s.len {
                        seen[s.file][b as usize] += 1;
                    }
                }
            }
            prop_assert_eq!(sum, l.total_len());
            for (k, &(_, pad)) in files.iter().enumerate() {
                let want = u32::from(!pad);
                prop_assert!(seen[k].iter().all(|&n| n == want), "file {}", k);
            }
        }
    }
}
