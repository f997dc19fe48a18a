//! Metainfo (.torrent files, BEP 3): parsing with checks, the infohash, magnet links.
//!
//! Extensions read: announce-list (BEP 12), url-list (BEP 19), private (BEP 27), pad files
//! (BEP 47 `attr` holding `p`). A hybrid v1/v2 torrent (`meta version` 2 with v1 keys) is
//! used through its v1 part; a v2-only torrent is refused.

use std::fmt;
use std::io::Read;
use std::path::Path;

use sha1::{Digest, Sha1};

use super::bencode::{self, Node};

/// Largest .torrent file read: 64 MiB holds ~3.3 million piece hashes (a 200 TiB torrent
/// at 64 KiB pieces), far above real torrents, and bounds what a hostile file costs.
pub const MAX_TORRENT_SIZE: u64 = 64 * 1024 * 1024;

/// Most bencode values decoded from one .torrent: 1,500,000 holds 100,000 files (the most
/// a download creates, [`crate::storage::files::MAX_FILES`]) at up to 15 values each
/// (a files entry is 7: its dictionary, `length`, `path`, their values and one path
/// component per directory). The decoder's general limit (4,000,000) let a million-file
/// .torrent build a tree to 364 MiB before it was refused; this one stops it at 160 MiB
/// (the 35 MB file read included).
pub const MAX_VALUES: usize = 1_500_000;

/// Piece lengths must be a multiple of this (the BitTorrent block size).
pub const BLOCK: u64 = 16 * 1024;

/// Largest piece length accepted: 64 MiB, the most any common client makes (libtorrent
/// and mktorrent stop there), and what the peer-wire fetch accepts. A piece is held whole
/// in memory while it is verified (by the recheck, by every download worker), so a
/// .torrent claiming 2^40-byte pieces must be refused before any buffer is sized.
pub const MAX_PIECE_LENGTH: u64 = 64 * 1024 * 1024;

/// The SHA-1 of a torrent's bencoded `info` value: the swarm's name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

/// The SHA-1 of one piece's content.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PieceHash(pub [u8; 20]);

impl InfoHash {
    /// The hash of exactly these bytes (the raw `info` value).
    pub fn of(info: &[u8]) -> Self {
        InfoHash(Sha1::digest(info).into())
    }

    /// Parses 40 hex digits (either case), as in `--allow` files and magnet links.
    pub fn from_hex(s: &str) -> Option<InfoHash> {
        let d = crate::digest::Digest::from_hex(crate::digest::HashAlgo::Sha1, s).ok()?;
        Some(InfoHash(d.as_bytes().try_into().ok()?))
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}
impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({self})")
    }
}
impl fmt::Display for PieceHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}
impl fmt::Debug for PieceHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PieceHash({self})")
    }
}

/// Why a .torrent is refused.
#[derive(Debug, thiserror::Error)]
pub enum MetainfoError {
    /// Not bencode.
    #[error(transparent)]
    Bencode(#[from] bencode::DecodeError),
    /// Cannot read the file.
    #[error("cannot read torrent: {0}")]
    Io(#[from] std::io::Error),
    /// Larger than [`MAX_TORRENT_SIZE`].
    #[error("torrent file larger than {MAX_TORRENT_SIZE} bytes")]
    TooLarge,
    /// The top level is not a dictionary.
    #[error("torrent is not a dictionary")]
    NotDict,
    /// A required key is absent.
    #[error("missing key {0:?}")]
    Missing(&'static str),
    /// A key holds the wrong type.
    #[error("key {0:?} has the wrong type")]
    WrongType(&'static str),
    /// A negative or absurd length.
    #[error("bad length {0} in {1:?}")]
    BadLength(i64, &'static str),
    /// Total length overflows 64 bits.
    #[error("total length overflows 64 bits")]
    Overflow,
    /// `piece length` 0 or not a multiple of 16 KiB.
    #[error("piece length {0} is not a positive multiple of 16 KiB")]
    BadPieceLength(i64),
    /// `piece length` above [`MAX_PIECE_LENGTH`].
    #[error("piece length {0} is above the {MAX_PIECE_LENGTH}-byte limit")]
    PieceTooLong(u64),
    /// `pieces` is not a whole number of 20-byte hashes.
    #[error("pieces is {0} bytes, not a multiple of 20")]
    PiecesNotMultiple(usize),
    /// Piece count does not match the total length.
    #[error("{got} piece hashes but {want} pieces for {length} bytes")]
    PieceCount {
        /// Hashes present.
        got: usize,
        /// Pieces the length needs.
        want: u64,
        /// Total length.
        length: u64,
    },
    /// Both or neither of `length` and `files`.
    #[error("info must hold exactly one of length and files")]
    LengthOrFiles,
    /// A multi-file torrent with no files.
    #[error("files list is empty")]
    NoFiles,
    /// A path that could escape the download directory.
    #[error("unsafe path {0:?}")]
    UnsafePath(String),
    /// A v2-only torrent.
    #[error("BitTorrent v2-only torrents are not supported (only v1 and hybrid)")]
    V2Only,
}

/// One file of the torrent, in torrent order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components under the torrent's directory (single-file: just the name).
    pub path: Vec<Vec<u8>>,
    /// Length in bytes.
    pub length: u64,
    /// A BEP 47 pad file: occupies piece space, never written to disk.
    pub pad: bool,
}

impl FileEntry {
    /// The path joined with `/`, lossily (for display).
    pub fn display_path(&self) -> String {
        self.path
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// A parsed, checked .torrent.
#[derive(Debug, Clone)]
pub struct Metainfo {
    /// SHA-1 of the raw `info` bytes.
    pub info_hash: InfoHash,
    /// The `name` (a file name, or the top directory of a multi-file torrent).
    pub name: Vec<u8>,
    /// Bytes per piece (the last may be shorter).
    pub piece_length: u64,
    /// One hash per piece.
    pub pieces: Vec<PieceHash>,
    /// The files, in torrent order, pads included.
    pub files: Vec<FileEntry>,
    /// Whether the torrent has a `files` list (files live under `name/`).
    pub multi_file: bool,
    /// Tracker tiers: announce-list if present, otherwise `[[announce]]`.
    pub trackers: Vec<Vec<String>>,
    /// Web seeds (BEP 19).
    pub url_list: Vec<String>,
    /// BEP 27 private flag.
    pub private: bool,
    /// `comment`.
    pub comment: Option<String>,
    /// `created by`.
    pub created_by: Option<String>,
    /// `creation date` (Unix seconds).
    pub creation_date: Option<i64>,
    /// A hybrid v1/v2 torrent, used through its v1 part.
    pub hybrid: bool,
}

fn text(n: Option<&Node<'_>>) -> Option<String> {
    n.and_then(|n| n.as_bytes())
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

fn check_component(c: &[u8], whole: &[&[u8]]) -> Result<(), MetainfoError> {
    let bad = c.is_empty()
        || c == b"."
        || c == b".."
        || c.iter().any(|&b| b == b'/' || b == b'\\' || b == 0)
        || (c.len() >= 2 && c[1] == b':' && c[0].is_ascii_alphabetic());
    if bad {
        let shown = whole
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("/");
        return Err(MetainfoError::UnsafePath(shown));
    }
    Ok(())
}

fn length(n: &Node<'_>, key: &'static str) -> Result<u64, MetainfoError> {
    let v = n.as_int().ok_or(MetainfoError::WrongType(key))?;
    u64::try_from(v).map_err(|_| MetainfoError::BadLength(v, key))
}

impl Metainfo {
    /// Reads and parses a .torrent, refusing one above [`MAX_TORRENT_SIZE`] before
    /// reading it whole.
    pub fn read(path: &Path) -> Result<Self, MetainfoError> {
        let f = std::fs::File::open(path)?;
        let mut data = Vec::new();
        f.take(MAX_TORRENT_SIZE + 1).read_to_end(&mut data)?;
        if data.len() as u64 > MAX_TORRENT_SIZE {
            return Err(MetainfoError::TooLarge);
        }
        Self::parse(&data)
    }

    /// Parses and checks a .torrent's bytes.
    pub fn parse(data: &[u8]) -> Result<Self, MetainfoError> {
        if data.len() as u64 > MAX_TORRENT_SIZE {
            return Err(MetainfoError::TooLarge);
        }
        let limits = bencode::Limits {
            max_items: MAX_VALUES,
            ..bencode::Limits::default()
        };
        let root = bencode::decode_with(data, limits)?;
        if root.as_dict().is_none() {
            return Err(MetainfoError::NotDict);
        }
        let info = root.get(b"info").ok_or(MetainfoError::Missing("info"))?;
        if info.as_dict().is_none() {
            return Err(MetainfoError::WrongType("info"));
        }
        let info_hash = InfoHash::of(info.raw);
        let v2 = info.get(b"meta version").and_then(|n| n.as_int()) == Some(2);
        if v2 && info.get(b"pieces").is_none() {
            return Err(MetainfoError::V2Only);
        }
        let name = info
            .get(b"name")
            .ok_or(MetainfoError::Missing("name"))?
            .as_bytes()
            .ok_or(MetainfoError::WrongType("name"))?
            .to_vec();
        let pl = info
            .get(b"piece length")
            .ok_or(MetainfoError::Missing("piece length"))?
            .as_int()
            .ok_or(MetainfoError::WrongType("piece length"))?;
        if pl <= 0 || !(pl as u64).is_multiple_of(BLOCK) {
            return Err(MetainfoError::BadPieceLength(pl));
        }
        let piece_length = pl as u64;
        if piece_length > MAX_PIECE_LENGTH {
            return Err(MetainfoError::PieceTooLong(piece_length));
        }
        let raw_pieces = info
            .get(b"pieces")
            .ok_or(MetainfoError::Missing("pieces"))?
            .as_bytes()
            .ok_or(MetainfoError::WrongType("pieces"))?;
        if raw_pieces.len() % 20 != 0 {
            return Err(MetainfoError::PiecesNotMultiple(raw_pieces.len()));
        }
        let pieces: Vec<PieceHash> = raw_pieces
            .chunks_exact(20)
            .map(|c| PieceHash(c.try_into().expect("20 bytes")))
            .collect();

        let multi_file;
        let files = match (info.get(b"length"), info.get(b"files")) {
            (Some(l), None) => {
                multi_file = false;
                check_component(&name, &[&name])?;
                vec![FileEntry {
                    path: vec![name.clone()],
                    length: length(l, "length")?,
                    pad: false,
                }]
            }
            (None, Some(fs)) => {
                multi_file = true;
                check_component(&name, &[&name])?;
                let list = fs.as_list().ok_or(MetainfoError::WrongType("files"))?;
                if list.is_empty() {
                    return Err(MetainfoError::NoFiles);
                }
                let mut out = Vec::with_capacity(list.len());
                for f in list {
                    let l = length(
                        f.get(b"length").ok_or(MetainfoError::Missing("length"))?,
                        "length",
                    )?;
                    let comps = f
                        .get(b"path")
                        .ok_or(MetainfoError::Missing("path"))?
                        .as_list()
                        .ok_or(MetainfoError::WrongType("path"))?;
                    let mut path = Vec::with_capacity(comps.len());
                    for c in comps {
                        path.push(c.as_bytes().ok_or(MetainfoError::WrongType("path"))?);
                    }
                    if path.is_empty() {
                        return Err(MetainfoError::UnsafePath(String::new()));
                    }
                    for c in &path {
                        check_component(c, &path)?;
                    }
                    let pad = f
                        .get(b"attr")
                        .and_then(|a| a.as_bytes())
                        .is_some_and(|a| a.contains(&b'p'));
                    out.push(FileEntry {
                        path: path.iter().map(|c| c.to_vec()).collect(),
                        length: l,
                        pad,
                    });
                }
                out
            }
            _ => return Err(MetainfoError::LengthOrFiles),
        };
        let total = files
            .iter()
            .try_fold(0u64, |a, f| a.checked_add(f.length))
            .ok_or(MetainfoError::Overflow)?;
        let want = total.div_ceil(piece_length);
        if want != pieces.len() as u64 {
            return Err(MetainfoError::PieceCount {
                got: pieces.len(),
                want,
                length: total,
            });
        }

        let mut trackers: Vec<Vec<String>> = Vec::new();
        if let Some(tiers) = root.get(b"announce-list").and_then(|n| n.as_list()) {
            for tier in tiers {
                let urls: Vec<String> = tier
                    .as_list()
                    .unwrap_or(&[])
                    .iter()
                    .filter_map(|u| text(Some(u)))
                    .collect();
                if !urls.is_empty() {
                    trackers.push(urls);
                }
            }
        }
        if trackers.is_empty()
            && let Some(a) = text(root.get(b"announce"))
        {
            trackers.push(vec![a]);
        }
        let url_list = match root.get(b"url-list") {
            Some(n) if n.as_list().is_some() => n
                .as_list()
                .unwrap_or(&[])
                .iter()
                .filter_map(|u| text(Some(u)))
                .collect(),
            Some(n) => text(Some(n)).into_iter().collect(),
            None => Vec::new(),
        };
        Ok(Metainfo {
            info_hash,
            name,
            piece_length,
            pieces,
            files,
            multi_file,
            trackers,
            url_list,
            private: info.get(b"private").and_then(|n| n.as_int()) == Some(1),
            comment: text(root.get(b"comment")),
            created_by: text(root.get(b"created by")),
            creation_date: root.get(b"creation date").and_then(|n| n.as_int()),
            hybrid: v2,
        })
    }

    /// Where each piece lies across the files, for [`crate::storage`]: a multi-file
    /// torrent's files live under `name/`. Names that are not UTF-8 are stored under
    /// their lossy UTF-8 form (every component was checked safe when parsed).
    pub fn layout(&self) -> Result<crate::layout::Layout, crate::layout::LayoutError> {
        let lossy = |c: &[u8]| String::from_utf8_lossy(c).into_owned();
        let files = self
            .files
            .iter()
            .map(|f| {
                let mut path = Vec::with_capacity(f.path.len() + 1);
                if self.multi_file {
                    path.push(lossy(&self.name));
                }
                path.extend(f.path.iter().map(|c| lossy(c)));
                (path, f.length, f.pad)
            })
            .collect();
        crate::layout::Layout::files(files, self.piece_length)
    }

    /// The piece digests, in the engine's and storage's type.
    pub fn digests(&self) -> Vec<crate::digest::Digest> {
        self.pieces
            .iter()
            .map(|p| crate::digest::Digest::from(crate::hash::ChunkHash::from_bytes(p.0)))
            .collect()
    }

    /// Total bytes (pads included).
    pub fn total_length(&self) -> u64 {
        self.files.iter().map(|f| f.length).sum()
    }

    /// The name, lossily.
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// `magnet:?xt=urn:btih:<hex>&dn=<name>&tr=...`
    pub fn magnet(&self) -> String {
        let mut m = format!(
            "magnet:?xt=urn:btih:{}&dn={}",
            self.info_hash,
            percent(&self.name)
        );
        for url in self.trackers.iter().flatten() {
            m.push_str("&tr=");
            m.push_str(&percent(url.as_bytes()));
        }
        m
    }
}

/// Percent-encodes all but RFC 3986 unreserved bytes.
pub fn percent(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            s.push(c as char);
        } else {
            s.push_str(&format!("%{c:02X}"));
        }
    }
    s
}
