//! The bvTorrent lines, sans-IO: the descriptor the tracker sends first, the
//! registration line, the 12-byte commands, the client list and the chunk request.
//! Every line read is bounded before it is buffered.

use std::io::{self, BufRead, Read};
use std::path::Path;

use crate::digest::{Digest, HashAlgo};

/// The classic tracker's chunk size (1 MiB).
pub const DEFAULT_CHUNK_SIZE: u64 = 1_048_576;
/// Length of every command: 11 characters and `\n`.
pub const COMMAND_LEN: usize = 12;
/// Longest file-name or number line accepted from a tracker: a name is a base name
/// (255 bytes on every common filesystem), so 4 KiB is far beyond any honest one.
pub const MAX_SHORT_LINE: usize = 4096;
/// Most chunks a descriptor may announce: 1,000,000 chunks of 1 MiB is a 1 TB file,
/// while the per-chunk state (size, digest, mask byte) stays below 50 MB.
pub const MAX_CHUNKS: usize = 1_000_000;
/// Most entries accepted in one client list: far above a classroom swarm, and it bounds
/// the memory a hostile tracker can make a client spend (entries × mask length).
pub const MAX_CLIENTS_LISTED: usize = 10_000;
/// Largest chunk size a client accepts from a tracker. A downloader holds a whole chunk
/// in memory while it verifies it, so a hostile tracker announcing 2^60-byte chunks must
/// be refused before any buffer is sized; 64 MiB is 64 times the classic 1 MiB.
pub const MAX_CHUNK_SIZE: u64 = 64 * 1024 * 1024;
/// Longest chunk request line accepted by an uploader: an index below [`MAX_CHUNKS`]
/// has at most 7 digits; 32 leaves room for stray spaces or a `\r`.
pub const MAX_REQUEST_LINE: usize = 32;

/// bvTorrent names chunks by SHA-224 (56 lowercase hex digits on the wire).
pub const ALGO: HashAlgo = HashAlgo::Sha224;

/// One chunk as the descriptor lists it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChunkInfo {
    /// Its length in bytes.
    pub size: u64,
    /// SHA-224 of its bytes.
    pub digest: Digest,
}

/// What the tracker sends right after accepting.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Descriptor {
    /// The file's base name, raw bytes.
    pub name: Vec<u8>,
    /// The chunk size (every chunk but the last has it).
    pub max_chunk_size: u64,
    /// Chunks in file order.
    pub chunks: Vec<ChunkInfo>,
}

/// Why bytes are not valid bvTorrent.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The connection closed or failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A line longer than its limit.
    #[error("line longer than {0} bytes")]
    LineTooLong(usize),
    /// A number that is not decimal or out of range.
    #[error("not a valid number")]
    BadNumber,
    /// More chunks than [`MAX_CHUNKS`] or clients than [`MAX_CLIENTS_LISTED`].
    #[error("count {0} over the limit")]
    TooMany(u64),
    /// A chunk line that is not `<size>,<56 hex>`.
    #[error("bad chunk line")]
    BadChunkLine,
    /// A mask of the wrong length or with characters other than 0/1.
    #[error("bad mask")]
    BadMask,
    /// A registration line that is not `<port>,<mask>`.
    #[error("bad registration line")]
    BadRegistration,
    /// A client-list line that is not `<ip>:<port>,<mask>`.
    #[error("bad client-list line")]
    BadClientLine,
    /// An unsafe or empty file name.
    #[error("unsafe file name")]
    UnsafeName,
    /// A file name that is not UTF-8 (our storage names files by `str`).
    #[error("the file name is not UTF-8")]
    NameNotUtf8,
    /// A chunk size of 0 or above [`MAX_CHUNK_SIZE`].
    #[error("chunk size {0} out of range")]
    ChunkSize(u64),
    /// Chunk sizes that are not all `maxChunkSize` but a shorter last one.
    #[error("chunk {0} has a size other than the chunk size")]
    NotUniform(usize),
    /// The descriptor describes no valid file layout (e.g. no chunks at all).
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    /// A chunk request that is not a decimal index below the chunk count.
    #[error("bad chunk request")]
    BadRequest,
}

impl Descriptor {
    /// Hashes `path` chunk by chunk (streaming: one chunk in memory).
    pub fn from_file(path: &Path, chunk_size: u64) -> io::Result<Self> {
        use std::os::unix::ffi::OsStrExt;
        if chunk_size == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "chunk size 0"));
        }
        let abs = std::path::absolute(path)?;
        let name = abs
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?
            .as_bytes()
            .to_vec();
        let mut f = std::fs::File::open(path)?;
        let mut buf = vec![0u8; chunk_size as usize];
        let mut chunks = Vec::new();
        loop {
            let mut n = 0;
            while n < buf.len() {
                let k = f.read(&mut buf[n..])?;
                if k == 0 {
                    break;
                }
                n += k;
            }
            if n == 0 {
                break;
            }
            chunks.push(ChunkInfo {
                size: n as u64,
                digest: Digest::of(ALGO, &buf[..n]),
            });
            if n < buf.len() {
                break;
            }
        }
        Ok(Descriptor {
            name,
            max_chunk_size: chunk_size,
            chunks,
        })
    }

    /// The exact bytes the classic tracker sends.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.name.clone();
        out.extend_from_slice(
            format!("\n{}\n{}\n", self.max_chunk_size, self.chunks.len()).as_bytes(),
        );
        for c in &self.chunks {
            out.extend_from_slice(format!("{},{}\n", c.size, c.digest.to_hex()).as_bytes());
        }
        out
    }

    /// Reads a descriptor from a tracker, bounding every line and the chunk count.
    pub fn read(r: &mut impl BufRead) -> Result<Self, CodecError> {
        let name = read_line(r, MAX_SHORT_LINE)?;
        if name.is_empty()
            || name == b"."
            || name == b".."
            || name.iter().any(|&b| b == b'/' || b == 0)
        {
            return Err(CodecError::UnsafeName);
        }
        let max_chunk_size = parse_u64(&read_line(r, MAX_SHORT_LINE)?)?;
        if max_chunk_size == 0 || max_chunk_size > MAX_CHUNK_SIZE {
            return Err(CodecError::ChunkSize(max_chunk_size));
        }
        let n = parse_u64(&read_line(r, MAX_SHORT_LINE)?)?;
        if n > MAX_CHUNKS as u64 {
            return Err(CodecError::TooMany(n));
        }
        // The count is only a claim: grow with the lines that arrive, so 20 bytes saying
        // "1000000" do not reserve 1,000,000 entries (tens of MB) up front.
        let mut chunks = Vec::new();
        for _ in 0..n {
            let line = read_line(r, 128)?;
            let comma = line
                .iter()
                .position(|&b| b == b',')
                .ok_or(CodecError::BadChunkLine)?;
            let size = parse_u64(&line[..comma])?;
            let digest = std::str::from_utf8(&line[comma + 1..])
                .ok()
                .and_then(|hex| Digest::from_hex(ALGO, hex).ok())
                .ok_or(CodecError::BadChunkLine)?;
            if size == 0 || size > max_chunk_size {
                return Err(CodecError::BadChunkLine);
            }
            chunks.push(ChunkInfo { size, digest });
        }
        // The classic tracker cuts uniform chunks; anything else cannot be laid out in
        // the file by offset = index × chunk size (and our Layout assumes it).
        if let Some(i) = chunks
            .iter()
            .rev()
            .skip(1)
            .position(|c| c.size != max_chunk_size)
        {
            return Err(CodecError::NotUniform(chunks.len() - 2 - i));
        }
        Ok(Descriptor {
            name,
            max_chunk_size,
            chunks,
        })
    }

    /// The byte offset of chunk `i` in the file (chunks are uniform: see [`Self::read`]).
    pub fn offset(&self, i: usize) -> u64 {
        i as u64 * self.max_chunk_size
    }

    /// The file as a single-file [`Layout`](crate::layout::Layout) named by the
    /// descriptor (what [`FilesStore`](crate::storage::files::FilesStore) writes).
    pub fn layout(&self) -> Result<crate::layout::Layout, CodecError> {
        let name = std::str::from_utf8(&self.name).map_err(|_| CodecError::NameNotUtf8)?;
        let layout = crate::layout::Layout::single(name, self.total_len(), self.max_chunk_size)?;
        // A descriptor built by hand (not read) may still disagree with the cut.
        if let Some(i) =
            (0..self.chunks.len()).find(|&i| self.chunks[i].size != layout.piece_len(i))
        {
            return Err(CodecError::NotUniform(i));
        }
        if layout.piece_count() != self.chunks.len() {
            return Err(CodecError::NotUniform(self.chunks.len()));
        }
        Ok(layout)
    }

    /// Every chunk's digest, in order (what a recheck verifies against).
    pub fn digests(&self) -> Vec<Digest> {
        self.chunks.iter().map(|c| c.digest).collect()
    }

    /// The file's total length.
    pub fn total_len(&self) -> u64 {
        self.chunks.iter().map(|c| c.size).sum()
    }
}

/// Reads one `\n`-ended line (without the `\n`) of at most `max` bytes.
pub fn read_line(r: &mut impl BufRead, max: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    r.take(max as u64 + 1).read_until(b'\n', &mut out)?;
    if out.last() != Some(&b'\n') {
        if out.len() > max {
            return Err(CodecError::LineTooLong(max));
        }
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    out.pop();
    Ok(out)
}

/// A decimal number of at most 19 digits.
pub fn parse_u64(s: &[u8]) -> Result<u64, CodecError> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return Err(CodecError::BadNumber);
    }
    std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(CodecError::BadNumber)
}

/// Checks a mask: exactly `n` characters, each `0` or `1`.
pub fn check_mask(mask: &[u8], n: usize) -> Result<(), CodecError> {
    if mask.len() != n || !mask.iter().all(|&b| b == b'0' || b == b'1') {
        return Err(CodecError::BadMask);
    }
    Ok(())
}

/// Parses `<listenPort>,<mask>` (the line without its `\n`).
pub fn parse_registration(line: &[u8], n: usize) -> Result<(u16, Vec<u8>), CodecError> {
    let comma = line
        .iter()
        .position(|&b| b == b',')
        .ok_or(CodecError::BadRegistration)?;
    let port = parse_u64(&line[..comma])?;
    let port = u16::try_from(port).map_err(|_| CodecError::BadRegistration)?;
    let mask = &line[comma + 1..];
    check_mask(mask, n)?;
    Ok((port, mask.to_vec()))
}

/// The request a downloader sends a holder: the 0-based index, decimal, and `\n`.
pub fn encode_chunk_request(index: usize) -> Vec<u8> {
    format!("{index}\n").into_bytes()
}

/// Parses a chunk request line (without its `\n`) for a file of `n` chunks. Spaces and
/// a `\r` around the number are tolerated (a hand-typed or Windows-made request).
pub fn parse_chunk_request(line: &[u8], n: usize) -> Result<usize, CodecError> {
    let i = parse_u64(line.trim_ascii()).map_err(|_| CodecError::BadRequest)?;
    usize::try_from(i)
        .ok()
        .filter(|&i| i < n)
        .ok_or(CodecError::BadRequest)
}

/// A tracker command.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Command {
    /// `UPDATE_MASK\n`: a full mask line follows.
    UpdateMask,
    /// `CLIENT_LIST\n`.
    ClientList,
    /// `DISCONNECT!\n`.
    Disconnect,
}

impl Command {
    /// Its 12 bytes.
    pub fn bytes(self) -> &'static [u8; COMMAND_LEN] {
        match self {
            Command::UpdateMask => b"UPDATE_MASK\n",
            Command::ClientList => b"CLIENT_LIST\n",
            Command::Disconnect => b"DISCONNECT!\n",
        }
    }
    /// Parses a 12-byte block; `None` for anything else.
    pub fn parse(b: &[u8]) -> Option<Self> {
        [
            Command::UpdateMask,
            Command::ClientList,
            Command::Disconnect,
        ]
        .into_iter()
        .find(|c| c.bytes() == b)
    }
}

/// One client-list entry.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ClientEntry {
    /// The address as the tracker wrote it (`ip`).
    pub ip: String,
    /// Its listening port (0 for a client that registered before it listened).
    pub port: u16,
    /// Its mask.
    pub mask: Vec<u8>,
}

/// Encodes a client list.
pub fn encode_client_list<'a>(entries: impl ExactSizeIterator<Item = &'a ClientEntry>) -> Vec<u8> {
    let mut out = format!("{}\n", entries.len()).into_bytes();
    for e in entries {
        out.extend_from_slice(format!("{}:{},", e.ip, e.port).as_bytes());
        out.extend_from_slice(&e.mask);
        out.push(b'\n');
    }
    out
}

/// Most mask bytes kept from one client list. The entry count and the mask length are
/// each bounded, but not their product: 10,000 entries of a 1,000,000-chunk file are
/// 10 GB of masks a hostile tracker could make a client hold. 64 MiB keeps 64 holders of
/// the largest file, or all 10,000 of a 6,700-chunk (6.5 GiB at 1 MiB) one; the entries
/// past it are read (the stream stays in step) and dropped, and the next list may
/// bring others.
pub const MAX_LIST_MASK_BYTES: usize = 64 * 1024 * 1024;

/// Reads a client list for a file of `n` chunks. Entries with a bad mask are dropped
/// (skipped, not fatal): one broken entry must not hide the other holders. So are entries
/// past [`MAX_LIST_MASK_BYTES`] of masks.
pub fn read_client_list(r: &mut impl BufRead, n: usize) -> Result<Vec<ClientEntry>, CodecError> {
    read_client_list_within(r, n, MAX_LIST_MASK_BYTES)
}

/// [`read_client_list`] keeping at most `budget` bytes of masks.
pub fn read_client_list_within(
    r: &mut impl BufRead,
    n: usize,
    budget: usize,
) -> Result<Vec<ClientEntry>, CodecError> {
    let count = parse_u64(&read_line(r, MAX_SHORT_LINE)?)?;
    if count > MAX_CLIENTS_LISTED as u64 {
        return Err(CodecError::TooMany(count));
    }
    let mut out = Vec::new();
    let mut kept = 0usize;
    for _ in 0..count {
        let line = read_line(r, n + 80)?;
        if kept + n > budget {
            continue;
        }
        if let Some(e) = parse_client_line(&line, n) {
            kept += e.mask.len();
            out.push(e);
        }
    }
    Ok(out)
}

fn parse_client_line(line: &[u8], n: usize) -> Option<ClientEntry> {
    let comma = line.iter().rposition(|&b| b == b',')?;
    let (addr, mask) = (&line[..comma], &line[comma + 1..]);
    check_mask(mask, n).ok()?;
    let colon = addr.iter().rposition(|&b| b == b':')?;
    let port = u16::try_from(parse_u64(&addr[colon + 1..]).ok()?).ok()?;
    let ip = std::str::from_utf8(&addr[..colon]).ok()?;
    Some(ClientEntry {
        ip: ip.trim_matches(['[', ']']).to_string(),
        port,
        mask: mask.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_round_trips() {
        let d = Descriptor {
            name: "a b.bin".into(),
            max_chunk_size: 4,
            chunks: vec![
                ChunkInfo {
                    size: 4,
                    digest: Digest::of(ALGO, b"abcd"),
                },
                ChunkInfo {
                    size: 1,
                    digest: Digest::of(ALGO, b"e"),
                },
            ],
        };
        let bytes = d.encode();
        assert!(bytes.starts_with(b"a b.bin\n4\n2\n4,"));
        assert_eq!(Descriptor::read(&mut &bytes[..]).unwrap(), d);
    }

    #[test]
    fn descriptors_are_uniform_and_bounded() {
        let one = |size: u64| format!("{size},{}\n", "0".repeat(56));
        let desc = |max: u64, sizes: &[u64]| {
            let mut s = format!("f\n{max}\n{}\n", sizes.len());
            for &z in sizes {
                s.push_str(&one(z));
            }
            Descriptor::read(&mut s.as_bytes())
        };
        let d = desc(4, &[4, 4, 1]).unwrap();
        assert_eq!((d.offset(2), d.total_len()), (8, 9));
        let l = d.layout().unwrap();
        assert_eq!((l.piece_count(), l.last_piece_len()), (3, 1));
        assert_eq!(d.digests().len(), 3);
        assert!(matches!(
            desc(4, &[4, 3, 1]),
            Err(CodecError::NotUniform(1))
        ));
        assert!(matches!(desc(4, &[2, 4]), Err(CodecError::NotUniform(0))));
        assert!(matches!(
            desc(MAX_CHUNK_SIZE + 1, &[1]),
            Err(CodecError::ChunkSize(_))
        ));
        assert!(matches!(desc(0, &[]), Err(CodecError::ChunkSize(0))));
        assert!(matches!(
            desc(4, &[]).unwrap().layout(),
            Err(CodecError::Layout(_))
        ));
        let mut bad_name = desc(4, &[1]).unwrap();
        bad_name.name = vec![0xff];
        assert!(matches!(bad_name.layout(), Err(CodecError::NameNotUtf8)));
    }

    #[test]
    fn chunk_requests() {
        assert_eq!(encode_chunk_request(17), b"17\n");
        assert_eq!(parse_chunk_request(b"17", 18).unwrap(), 17);
        assert_eq!(parse_chunk_request(b" 3\r", 18).unwrap(), 3);
        for bad in [
            &b"18"[..],
            b"",
            b"-1",
            b"1 2",
            b"x",
            b"99999999999999999999",
        ] {
            assert!(parse_chunk_request(bad, 18).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn masks_and_registrations() {
        assert_eq!(
            parse_registration(b"80,101", 3).unwrap(),
            (80, b"101".to_vec())
        );
        assert!(parse_registration(b"80,10", 3).is_err());
        assert!(parse_registration(b"80,1x1", 3).is_err());
        assert!(parse_registration(b"70000,101", 3).is_err());
        assert_eq!(Command::parse(b"CLIENT_LIST\n"), Some(Command::ClientList));
        assert_eq!(Command::parse(b"DISCONNECT\n\n"), None);
    }

    #[test]
    fn client_list_masks_are_kept_within_the_budget_and_the_stream_stays_in_step() {
        let bytes = b"3\n127.0.0.1:5,01\n127.0.0.1:6,11\n127.0.0.1:7,10\nNEXT";
        let mut r = &bytes[..];
        let l = read_client_list_within(&mut r, 2, 4).unwrap();
        assert_eq!(l.iter().map(|e| e.port).collect::<Vec<_>>(), vec![5, 6]);
        assert_eq!(r, b"NEXT");
    }

    #[test]
    fn client_list_skips_bad_entries_and_bounds_lines() {
        let bytes = b"3\n127.0.0.1:5,01\n1.2.3.4:x,01\n127.0.0.1:0,11\n";
        let l = read_client_list(&mut &bytes[..], 2).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].port, 0);
        let long = [b"1\n".to_vec(), vec![b'1'; 1000]].concat();
        assert!(matches!(
            read_client_list(&mut &long[..], 2),
            Err(CodecError::LineTooLong(_))
        ));
    }
}
