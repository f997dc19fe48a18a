//! The course wire codec: the 7 messages of `docs/PROTOCOL.md` (course protocol), as bytes.
//!
//! This module knows bytes and [`std::io::Read`], never sockets. Servers and the downloader
//! put it on a connection. Everything here is strict by default: a tolerance for another
//! implementation's quirk is switched on by the caller through [`Tolerance`].
//!
//! Decoding never panics, and no length or count read from the input drives an allocation:
//! each is checked against the bytes actually present (or against the caller's `max_len`
//! before reading a body). So a buffer is never bigger than the caller's limit, with one
//! exception: a decoded FILE_INFO's chunk table takes `size_of::<ChunkRecord>()` bytes
//! (48 on 64-bit) per 24-byte record on the wire, i.e. up to about twice the message.

use crate::bounded::read_growing;
use std::fmt;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};

use byteorder::{BigEndian, ByteOrder};

use crate::hash::ChunkHash;

/// The only protocol version we speak.
pub const VERSION: u8 = 1;
/// Every message starts with this many header bytes.
pub const HEADER_LEN: usize = 8;
/// Bytes of a CHUNK message before its content: header, hash, content_length.
pub const CHUNK_PREFIX_LEN: usize = HEADER_LEN + ChunkHash::LEN + 4;
/// Bytes of a FILE_INFO record per chunk, before its peers.
const CHUNK_RECORD_LEN: usize = ChunkHash::LEN + 4;
/// Bytes of a FILE_INFO record per peer.
const PEER_RECORD_LEN: usize = 8;

/// The message types, numbered as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgType {
    /// 0: "who is the tracker?" (UDP broadcast).
    DiscoverTracker = 0,
    /// 1: the tracker's TCP address and name.
    TrackerInfo = 1,
    /// 2: "which chunks make the file, and who has them?"
    GetFileInfo = 2,
    /// 3: the answer to GET_FILE_INFO.
    FileInfo = 3,
    /// 4: "send me this chunk".
    GetChunk = 4,
    /// 5: a chunk's content.
    Chunk = 5,
    /// 6: an error code.
    Error = 6,
}

impl MsgType {
    /// The type for a wire byte, if it is one of the 7.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::DiscoverTracker,
            1 => Self::TrackerInfo,
            2 => Self::GetFileInfo,
            3 => Self::FileInfo,
            4 => Self::GetChunk,
            5 => Self::Chunk,
            6 => Self::Error,
            _ => return None,
        })
    }

    /// The spec's upper-case name, for messages and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::DiscoverTracker => "DISCOVER_TRACKER",
            Self::TrackerInfo => "TRACKER_INFO",
            Self::GetFileInfo => "GET_FILE_INFO",
            Self::FileInfo => "FILE_INFO",
            Self::GetChunk => "GET_CHUNK",
            Self::Chunk => "CHUNK",
            Self::Error => "ERROR",
        }
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error codes of an ERROR message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0: the request could not be parsed.
    InvalidMessageFormat,
    /// 1: well formed, but not something this server answers.
    InvalidRequest,
    /// 2: the peer does not have that chunk (now).
    ChunkNotFound,
    /// Any other code another implementation may send; kept so it can be reported.
    Other(u16),
}

impl ErrorCode {
    /// The code as sent on the wire.
    pub fn code(self) -> u16 {
        match self {
            Self::InvalidMessageFormat => 0,
            Self::InvalidRequest => 1,
            Self::ChunkNotFound => 2,
            Self::Other(c) => c,
        }
    }
    /// The code read from the wire.
    pub fn from_code(c: u16) -> Self {
        match c {
            0 => Self::InvalidMessageFormat,
            1 => Self::InvalidRequest,
            2 => Self::ChunkNotFound,
            c => Self::Other(c),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidMessageFormat => f.write_str("INVALID_MESSAGE_FORMAT"),
            Self::InvalidRequest => f.write_str("INVALID_REQUEST"),
            Self::ChunkNotFound => f.write_str("CHUNK_NOT_FOUND"),
            Self::Other(c) => write!(f, "unknown error code {c}"),
        }
    }
}

/// TRACKER_INFO: where the tracker listens (TCP) and what it calls itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerInfo {
    /// The tracker's TCP address.
    pub addr: SocketAddrV4,
    /// Its name (`tracker` unless configured otherwise).
    pub name: String,
}

/// One chunk of a FILE_INFO: its hash and the peers that have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRecord {
    /// The chunk's SHA-1.
    pub hash: ChunkHash,
    /// Peers that have it, by ip:port.
    pub peers: Vec<SocketAddrV4>,
}

/// FILE_INFO: the file's name and its chunks in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// The file name, as the tracker sent it (unchecked: callers must sanitise it).
    pub filename: String,
    /// Chunks in file order.
    pub chunks: Vec<ChunkRecord>,
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// DISCOVER_TRACKER.
    DiscoverTracker,
    /// TRACKER_INFO.
    TrackerInfo(TrackerInfo),
    /// GET_FILE_INFO.
    GetFileInfo,
    /// FILE_INFO.
    FileInfo(FileInfo),
    /// GET_CHUNK for a hash.
    GetChunk(ChunkHash),
    /// CHUNK with its content (servers stream content instead: see [`chunk_prefix`]).
    Chunk {
        /// The hash the sender claims for the content.
        hash: ChunkHash,
        /// The content.
        data: Vec<u8>,
    },
    /// ERROR with a code.
    Error(ErrorCode),
}

impl Message {
    /// The message's type.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Self::DiscoverTracker => MsgType::DiscoverTracker,
            Self::TrackerInfo(_) => MsgType::TrackerInfo,
            Self::GetFileInfo => MsgType::GetFileInfo,
            Self::FileInfo(_) => MsgType::FileInfo,
            Self::GetChunk(_) => MsgType::GetChunk,
            Self::Chunk { .. } => MsgType::Chunk,
            Self::Error(_) => MsgType::Error,
        }
    }
}

/// Quirks of other implementations that a caller may choose to accept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tolerance {
    /// Read a type-5 (CHUNK) message as a FILE_INFO body: one tracker labels FILE_INFO
    /// with type 5. Only a client that asked GET_FILE_INFO should switch this on.
    pub file_info_as_chunk_type: bool,
}

/// What is wrong with a message. [`DecodeError::error_code`] maps it onto the spec's codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the structure needs.
    #[error("truncated message: {have} bytes, at least {need} needed")]
    Truncated {
        /// Bytes required.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// Version byte other than 1.
    #[error("unsupported protocol version {0} (only 1 is spoken)")]
    Version(u8),
    /// msg_type outside 0..=6.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// msg_length below the 2-word header.
    #[error("msg_length {0} is shorter than the 2-word header")]
    LengthTooSmall(u32),
    /// msg_length over what the caller accepts.
    #[error("msg_length {words} words ({} bytes) is over the limit of {max} bytes", *words as u64 * 4)]
    TooLong {
        /// The msg_length field.
        words: u32,
        /// The caller's limit in bytes.
        max: usize,
    },
    /// msg_length disagrees with the bytes given.
    #[error("msg_length says {declared} bytes but the message has {actual}")]
    LengthMismatch {
        /// Bytes announced by msg_length.
        declared: u64,
        /// Bytes present.
        actual: usize,
    },
    /// The body does not have the layout its type requires.
    #[error("bad {msg} body: {detail}")]
    Body {
        /// The message type whose body is bad.
        msg: MsgType,
        /// What is wrong.
        detail: String,
    },
    /// A well-formed message that the receiver does not answer or did not ask for.
    #[error("unexpected {got} (expected {expected})")]
    Unexpected {
        /// What arrived.
        got: MsgType,
        /// What was acceptable, for the message.
        expected: &'static str,
    },
}

impl DecodeError {
    /// The spec's error code for this problem: malformed input is
    /// INVALID_MESSAGE_FORMAT, a well-formed but unexpected message INVALID_REQUEST.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::Unexpected { .. } => ErrorCode::InvalidRequest,
            _ => ErrorCode::InvalidMessageFormat,
        }
    }

    fn body(msg: MsgType, detail: impl Into<String>) -> Self {
        Self::Body {
            msg,
            detail: detail.into(),
        }
    }
}

/// Why a message cannot be encoded (a count or length does not fit its field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A name longer than 65,535 bytes.
    #[error("name of {0} bytes does not fit a u16 length")]
    NameTooLong(usize),
    /// More than 65,535 chunks in a FILE_INFO.
    #[error("{0} chunks do not fit a u16 count")]
    TooManyChunks(usize),
    /// More than 65,535 peers for one chunk.
    #[error("{0} peers do not fit a u16 count")]
    TooManyPeers(usize),
    /// Content longer than a u32 length, or a message over 2^32 words.
    #[error("content of {0} bytes does not fit the message length fields")]
    TooLong(u64),
}

/// The 8-byte header, as read (not yet validated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Version byte (must be 1).
    pub version: u8,
    /// Type byte (must be 0..=6).
    pub msg_type: u8,
    /// Whole message length in 4-byte words, header included.
    pub length_words: u32,
}

impl Header {
    /// Reads the fields of a header; reserved bytes are ignored.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Self {
        Header {
            version: b[0],
            msg_type: b[1],
            length_words: BigEndian::read_u32(&b[4..8]),
        }
    }

    /// The header of a message of `body_len` bytes. The body must be word-aligned.
    fn for_body(t: MsgType, body_len: usize) -> Result<[u8; HEADER_LEN], EncodeError> {
        debug_assert_eq!(body_len % 4, 0);
        let words = u32::try_from((HEADER_LEN + body_len) / 4)
            .map_err(|_| EncodeError::TooLong(body_len as u64))?;
        let mut h = [0u8; HEADER_LEN];
        h[0] = VERSION;
        h[1] = t as u8;
        BigEndian::write_u32(&mut h[4..8], words);
        Ok(h)
    }

    /// Whole message length in bytes (u64: 0xFFFFFFFF words does not fit a u32).
    pub fn message_len(&self) -> u64 {
        u64::from(self.length_words) * 4
    }

    /// Checks the framing against `max_len` (whole-message bytes) and returns the body
    /// length. A framing error means the stream cannot be trusted past this header.
    pub fn body_len(&self, max_len: usize) -> Result<usize, DecodeError> {
        if self.length_words < 2 {
            return Err(DecodeError::LengthTooSmall(self.length_words));
        }
        if self.message_len() > max_len as u64 {
            return Err(DecodeError::TooLong {
                words: self.length_words,
                max: max_len,
            });
        }
        Ok(self.message_len() as usize - HEADER_LEN)
    }

    /// Checks version and type.
    pub fn msg_type(&self) -> Result<MsgType, DecodeError> {
        if self.version != VERSION {
            return Err(DecodeError::Version(self.version));
        }
        MsgType::from_u8(self.msg_type).ok_or(DecodeError::UnknownType(self.msg_type))
    }
}

/// Zero bytes needed after `len` bytes to reach a multiple of 4.
pub fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_name(out: &mut Vec<u8>, name: &str) -> Result<(), EncodeError> {
    let len = u16::try_from(name.len()).map_err(|_| EncodeError::NameTooLong(name.len()))?;
    put_u16(out, len);
    out.extend_from_slice(name.as_bytes());
    out.resize(out.len() + padding(name.len()), 0);
    Ok(())
}

fn put_addr(out: &mut Vec<u8>, a: &SocketAddrV4) {
    out.extend_from_slice(&a.ip().octets());
    put_u16(out, a.port());
}

/// The first [`CHUNK_PREFIX_LEN`] bytes of a CHUNK message carrying `content_len` bytes;
/// the sender then streams the content and [`padding`]`(content_len)` zero bytes.
pub fn chunk_prefix(
    hash: &ChunkHash,
    content_len: u64,
) -> Result<[u8; CHUNK_PREFIX_LEN], EncodeError> {
    let len32 = u32::try_from(content_len).map_err(|_| EncodeError::TooLong(content_len))?;
    let body = ChunkHash::LEN as u64 + 4 + content_len + padding(content_len as usize) as u64;
    let body = usize::try_from(body).map_err(|_| EncodeError::TooLong(content_len))?;
    let mut out = [0u8; CHUNK_PREFIX_LEN];
    out[..HEADER_LEN].copy_from_slice(&Header::for_body(MsgType::Chunk, body)?);
    out[HEADER_LEN..HEADER_LEN + 20].copy_from_slice(hash.as_bytes());
    BigEndian::write_u32(&mut out[HEADER_LEN + 20..], len32);
    Ok(out)
}

impl Message {
    /// Encodes the whole message.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut body = Vec::new();
        match self {
            Self::DiscoverTracker | Self::GetFileInfo => {}
            Self::TrackerInfo(t) => {
                put_addr(&mut body, &t.addr);
                put_name(&mut body, &t.name)?;
            }
            Self::FileInfo(fi) => {
                let n = u16::try_from(fi.chunks.len())
                    .map_err(|_| EncodeError::TooManyChunks(fi.chunks.len()))?;
                put_u16(&mut body, n);
                put_name(&mut body, &fi.filename)?;
                for c in &fi.chunks {
                    let p = u16::try_from(c.peers.len())
                        .map_err(|_| EncodeError::TooManyPeers(c.peers.len()))?;
                    body.extend_from_slice(c.hash.as_bytes());
                    put_u16(&mut body, p);
                    put_u16(&mut body, 0);
                    for a in &c.peers {
                        put_addr(&mut body, a);
                        put_u16(&mut body, 0);
                    }
                }
            }
            Self::GetChunk(h) => body.extend_from_slice(h.as_bytes()),
            Self::Chunk { hash, data } => {
                let prefix = chunk_prefix(hash, data.len() as u64)?;
                let mut out = Vec::with_capacity(prefix.len() + data.len() + 3);
                out.extend_from_slice(&prefix);
                out.extend_from_slice(data);
                out.resize(out.len() + padding(data.len()), 0);
                return Ok(out);
            }
            Self::Error(code) => {
                put_u16(&mut body, code.code());
                put_u16(&mut body, 0);
            }
        }
        let mut out = Header::for_body(self.msg_type(), body.len())?.to_vec();
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decodes exactly one whole message from `bytes` (no trailing bytes allowed).
    pub fn decode(bytes: &[u8], tol: Tolerance) -> Result<Message, DecodeError> {
        let head: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(DecodeError::Truncated {
                need: HEADER_LEN,
                have: bytes.len(),
            })?;
        let header = Header::parse(head);
        if header.length_words < 2 {
            return Err(DecodeError::LengthTooSmall(header.length_words));
        }
        if header.message_len() != bytes.len() as u64 {
            return Err(DecodeError::LengthMismatch {
                declared: header.message_len(),
                actual: bytes.len(),
            });
        }
        decode_body(&header, &bytes[HEADER_LEN..], tol)
    }
}

/// A bounds-checked reader over a body; every read names the message type on failure.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    msg: MsgType,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(DecodeError::body(
                self.msg,
                format!(
                    "{what} needs {n} bytes at offset {}, body has {}",
                    self.pos,
                    self.buf.len()
                ),
            )),
        }
    }
    fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        Ok(BigEndian::read_u16(self.take(2, what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(BigEndian::read_u32(self.take(4, what)?))
    }
    fn hash(&mut self) -> Result<ChunkHash, DecodeError> {
        let b: [u8; 20] = self.take(20, "hash")?.try_into().expect("20 bytes");
        Ok(ChunkHash::from_bytes(b))
    }
    fn addr(&mut self) -> Result<SocketAddrV4, DecodeError> {
        let ip: [u8; 4] = self.take(4, "ip")?.try_into().expect("4 bytes");
        let port = self.u16("port")?;
        Ok(SocketAddrV4::new(Ipv4Addr::from(ip), port))
    }
    /// A u16-length name followed by its padding.
    fn name(&mut self) -> Result<String, DecodeError> {
        let len = self.u16("name_length")? as usize;
        let raw = self.take(len, "name")?;
        self.take(padding(len), "name padding")?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| DecodeError::body(self.msg, "name is not UTF-8"))
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn end(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::body(
                self.msg,
                format!("{n} bytes left over after the last field"),
            )),
        }
    }
}

/// Decodes a body whose header has already been read and whose length matches it.
pub fn decode_body(header: &Header, body: &[u8], tol: Tolerance) -> Result<Message, DecodeError> {
    let mut t = header.msg_type()?;
    if t == MsgType::Chunk && tol.file_info_as_chunk_type {
        log::warn!("tolerating a FILE_INFO sent with msg_type 5 (CHUNK)");
        t = MsgType::FileInfo;
    }
    let mut c = Cursor {
        buf: body,
        pos: 0,
        msg: t,
    };
    let msg = match t {
        MsgType::DiscoverTracker => Message::DiscoverTracker,
        MsgType::GetFileInfo => Message::GetFileInfo,
        MsgType::TrackerInfo => {
            let addr = c.addr()?;
            let name = c.name()?;
            Message::TrackerInfo(TrackerInfo { addr, name })
        }
        MsgType::FileInfo => {
            let count = c.u16("chunks_count")? as usize;
            let filename = c.name()?;
            // Never trust the count for allocation: each record takes at least 24 bytes.
            let mut chunks = Vec::with_capacity(count.min(c.remaining() / CHUNK_RECORD_LEN));
            for _ in 0..count {
                let hash = c.hash()?;
                let peers_count = c.u16("peers_count")? as usize;
                c.take(2, "chunk padding")?;
                let mut peers =
                    Vec::with_capacity(peers_count.min(c.remaining() / PEER_RECORD_LEN));
                for _ in 0..peers_count {
                    peers.push(c.addr()?);
                    c.take(2, "peer padding")?;
                }
                chunks.push(ChunkRecord { hash, peers });
            }
            Message::FileInfo(FileInfo { filename, chunks })
        }
        MsgType::GetChunk => Message::GetChunk(c.hash()?),
        MsgType::Chunk => {
            let hash = c.hash()?;
            let len = c.u32("content_length")? as usize;
            let data = c.take(len, "content")?.to_vec();
            c.take(padding(len), "content padding")?;
            Message::Chunk { hash, data }
        }
        MsgType::Error => {
            let code = ErrorCode::from_code(c.u16("error_code")?);
            c.take(2, "error padding")?;
            Message::Error(code)
        }
    };
    c.end()?;
    Ok(msg)
}

/// Why reading a message from a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The stream ended cleanly before the first byte of a message.
    #[error("connection closed")]
    Closed,
    /// An I/O error, a timeout, or the stream ending inside a message.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The header's length cannot be trusted (too small or over the limit): the stream is
    /// out of step and must be closed after replying.
    #[error("{0}")]
    Frame(DecodeError),
    /// The whole message was consumed but is bad: the stream is still in step.
    #[error("{0}")]
    Message(DecodeError),
}

impl ReadError {
    /// The spec's error code to answer with, if any reply fits.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Frame(e) | Self::Message(e) => Some(e.error_code()),
            Self::Closed | Self::Io(_) => None,
        }
    }
}

/// Reads a header; [`ReadError::Closed`] if the stream ends before its first byte.
pub fn read_header<R: Read + ?Sized>(r: &mut R) -> Result<Header, ReadError> {
    let mut b = [0u8; HEADER_LEN];
    if !crate::bounded::fill_or_closed(r, &mut b)? {
        return Err(ReadError::Closed);
    }
    Ok(Header::parse(&b))
}

/// Reads one whole message of at most `max_len` bytes (header included).
///
/// The length is checked **before** the body is allocated, so a hostile msg_length costs
/// nothing. A message over the limit is [`ReadError::Frame`]: its body is not read.
pub fn read_message<R: Read + ?Sized>(
    r: &mut R,
    max_len: usize,
    tol: Tolerance,
) -> Result<Message, ReadError> {
    let header = read_header(r)?;
    let body_len = header.body_len(max_len).map_err(ReadError::Frame)?;
    // Grow the buffer as bytes arrive: a peer announcing a large (allowed) length and
    // then sending nothing costs no more than what it actually sent.
    let body = read_growing(r, body_len)?;
    decode_body(&header, &body, tol).map_err(ReadError::Message)
}

/// Reads the body of a CHUNK reply whose `header` was just read, streaming the content
/// into `buf` without reading the whole message into a second buffer. On success `buf`
/// holds exactly the content; on error its content is unspecified.
///
/// `max_content` bounds the allocation. `buf` is meant to be reused from one chunk to
/// the next: its bytes are overwritten, never zeroed again, see [`read_content`]. Returns the hash the sender claims; the caller
/// must verify it against the content. Other reply types are decoded whole (with a small
/// limit) so that an ERROR can be reported.
pub fn read_chunk_reply<R: Read + ?Sized>(
    r: &mut R,
    header: &Header,
    max_content: usize,
    buf: &mut Vec<u8>,
) -> Result<ChunkReply, ReadError> {
    let t = header.msg_type().map_err(ReadError::Frame)?;
    if t != MsgType::Chunk {
        // ERROR (or anything else small): bounded decode.
        let body_len = header.body_len(SMALL_REPLY_MAX).map_err(ReadError::Frame)?;
        let mut body = vec![0u8; body_len];
        r.read_exact(&mut body)?;
        return match decode_body(header, &body, Tolerance::default()) {
            Ok(Message::Error(code)) => Ok(ChunkReply::Error(code)),
            Ok(m) => Err(ReadError::Message(DecodeError::Unexpected {
                got: m.msg_type(),
                expected: "CHUNK or ERROR",
            })),
            Err(e) => Err(ReadError::Message(e)),
        };
    }
    // Saturating: `usize::MAX` means "no limit" and must not overflow.
    let max_len = CHUNK_PREFIX_LEN
        .saturating_add(max_content)
        .saturating_add(3);
    let body_len = header.body_len(max_len).map_err(ReadError::Frame)?;
    if body_len < ChunkHash::LEN + 4 {
        return Err(ReadError::Frame(DecodeError::Truncated {
            need: ChunkHash::LEN + 4,
            have: body_len,
        }));
    }
    let mut pre = [0u8; ChunkHash::LEN + 4];
    r.read_exact(&mut pre)?;
    let hash = ChunkHash::from_bytes(pre[..20].try_into().expect("20 bytes"));
    let len = BigEndian::read_u32(&pre[20..]) as usize;
    // msg_length is in words, so it alone lets up to 3 bytes past `max_content` through.
    if len > max_content {
        return Err(ReadError::Frame(DecodeError::body(
            MsgType::Chunk,
            format!("content_length {len} is over the limit of {max_content} bytes"),
        )));
    }
    if ChunkHash::LEN + 4 + len + padding(len) != body_len {
        return Err(ReadError::Frame(DecodeError::body(
            MsgType::Chunk,
            format!("content_length {len} does not match msg_length ({body_len}-byte body)"),
        )));
    }
    read_content(r, len, buf)?;
    let mut pad = [0u8; 3];
    r.read_exact(&mut pad[..padding(len)])?;
    Ok(ChunkReply::Chunk(hash))
}

/// Most bytes [`read_content`] asks the stream for in one call, and so the most it zeroes
/// ahead of the bytes that really arrived. 1 MiB is two course chunks: a 512 KiB chunk
/// usually comes in a few reads (as much as the socket holds), while a peer announcing
/// a 64 MiB chunk and sending nothing costs 1 MiB of touched memory, not 64.
const READ_STEP: usize = 1 << 20;

/// Reads exactly `len` bytes into `buf[..len]`, straight from the stream, with `read`
/// calls as large as the stream gives (up to [`READ_STEP`]).
///
/// Why not `take(len).read_to_end(buf)`: on a `clear`ed buffer it starts with 8 KiB reads
/// and grows them only while each read fills its request, so a 512 KiB chunk took dozens
/// of system calls. Here the buffer keeps its length between chunks, so its bytes are
/// initialised once, the first time it grows, and then only overwritten: no zeroing per
/// chunk and no reallocation (capacity is reserved exactly, so `len` bounds it).
fn read_content<R: Read + ?Sized>(r: &mut R, len: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.reserve_exact(len.saturating_sub(buf.len()));
    let mut got = 0;
    while got < len {
        let end = len.min(got + READ_STEP);
        if buf.len() < end {
            buf.resize(end, 0); // within capacity: zeroes only bytes never used before
        }
        match r.read(&mut buf[got..end]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(())
}

/// Largest non-CHUNK reply [`read_chunk_reply`] reads whole: an ERROR is 12 bytes.
const SMALL_REPLY_MAX: usize = 64;

/// What came back for a GET_CHUNK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkReply {
    /// A CHUNK claiming this hash; the content is in the caller's buffer.
    Chunk(ChunkHash),
    /// An ERROR with this code.
    Error(ErrorCode),
}

/// Accepts `msg` only if its type is in `allowed`; otherwise the INVALID_REQUEST error.
pub fn expect(
    msg: Message,
    allowed: &[MsgType],
    expected: &'static str,
) -> Result<Message, DecodeError> {
    if allowed.contains(&msg.msg_type()) {
        Ok(msg)
    } else {
        Err(DecodeError::Unexpected {
            got: msg.msg_type(),
            expected,
        })
    }
}
