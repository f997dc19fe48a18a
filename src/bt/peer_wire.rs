//! The BitTorrent peer wire codec (BEP 3), sans-IO: the handshake and the eleven
//! length-prefixed messages, as bytes.
//!
//! This module knows bytes, [`std::io::Read`] and [`std::io::Write`], never sockets: the
//! coming client's connection threads put it on a `TcpStream`.
//!
//! Input is hostile. Every length prefix is checked against the limit of the message it
//! announces (see [`Limits`]) **before** anything is allocated, so a 2^32-1 prefix costs
//! nothing. Errors split like the course codec's (`crate::wire`):
//! - [`ReadError::Frame`]: the length prefix cannot be trusted (over the message's limit,
//!   or a handshake that is not BitTorrent's): the stream is out of step, close it.
//! - [`ReadError::Message`]: the whole message was read, its content is wrong (a `have`
//!   past the last piece, spare bits set in a bitfield...): the stream is still in step,
//!   and the caller decides (BEP 3 says drop the peer for a bad bitfield).

use crate::bounded::read_growing;
use std::io::{self, Read, Write};

/// The protocol string of the handshake, after its length byte.
pub const PSTR: &[u8; 19] = b"BitTorrent protocol";
/// Bytes of a whole handshake: length byte, pstr, reserved, infohash, peer id.
pub const HANDSHAKE_LEN: usize = 1 + 19 + 8 + 20 + 20;
/// Bytes of the handshake up to and including the infohash: what a listener reads before
/// it decides whether it serves that torrent and answers with its own handshake.
pub const HANDSHAKE_HEAD_LEN: usize = 1 + 19 + 8 + 20;
/// The block size every real client requests; some drop a peer that asks for more.
pub const BLOCK_LEN: u32 = 16 * 1024;
/// Bytes of a `piece` message's length-counted part before its block: id, index, begin.
pub const PIECE_HEADER_LEN: u32 = 9;
/// Bytes of the 4-byte length prefix.
pub const PREFIX_LEN: usize = 4;

/// Message ids, as on the wire.
pub mod id {
    /// `choke`.
    pub const CHOKE: u8 = 0;
    /// `unchoke`.
    pub const UNCHOKE: u8 = 1;
    /// `interested`.
    pub const INTERESTED: u8 = 2;
    /// `not interested`.
    pub const NOT_INTERESTED: u8 = 3;
    /// `have`.
    pub const HAVE: u8 = 4;
    /// `bitfield`.
    pub const BITFIELD: u8 = 5;
    /// `request`.
    pub const REQUEST: u8 = 6;
    /// `piece`.
    pub const PIECE: u8 = 7;
    /// `cancel`.
    pub const CANCEL: u8 = 8;
    /// `port` (BEP 5, the DHT port: we run no DHT and ignore it).
    pub const PORT: u8 = 9;
}

/// A peer's 20-byte id, as sent in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId(pub [u8; 20]);

/// The 8 reserved handshake bytes. We implement no extension, so we send all zero: a
/// client that sees the BEP 10 or BEP 6 bit waits for messages we would never send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Reserved(pub [u8; 8]);

impl Reserved {
    /// No extension bit set: what we send.
    pub const NONE: Reserved = Reserved([0; 8]);

    /// The peer supports the extension protocol (BEP 10): byte 5, bit 0x10.
    pub fn extension_protocol(&self) -> bool {
        self.0[5] & 0x10 != 0
    }
    /// The peer supports the fast extension (BEP 6): byte 7, bit 0x04.
    pub fn fast(&self) -> bool {
        self.0[7] & 0x04 != 0
    }
    /// The peer supports the DHT (BEP 5): byte 7, bit 0x01.
    pub fn dht(&self) -> bool {
        self.0[7] & 0x01 != 0
    }
}

/// A handshake: what each side sends first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handshake {
    /// Extension bits.
    pub reserved: Reserved,
    /// The torrent's infohash (SHA-1 of the bencoded info dictionary).
    pub info_hash: [u8; 20],
    /// The sender's peer id.
    pub peer_id: PeerId,
}

impl Handshake {
    /// The 68 bytes on the wire.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut b = [0u8; HANDSHAKE_LEN];
        b[..HANDSHAKE_HEAD_LEN].copy_from_slice(&handshake_head(&self.reserved, &self.info_hash));
        b[HANDSHAKE_HEAD_LEN..].copy_from_slice(&self.peer_id.0);
        b
    }

    /// Parses 68 bytes.
    pub fn parse(b: &[u8; HANDSHAKE_LEN]) -> Result<Handshake, FrameError> {
        let mut head = [0u8; HANDSHAKE_HEAD_LEN];
        head.copy_from_slice(&b[..HANDSHAKE_HEAD_LEN]);
        let (reserved, info_hash) = parse_handshake_head(&head)?;
        let mut peer_id = [0u8; 20];
        peer_id.copy_from_slice(&b[HANDSHAKE_HEAD_LEN..]);
        Ok(Handshake {
            reserved,
            info_hash,
            peer_id: PeerId(peer_id),
        })
    }
}

/// The first 48 bytes of a handshake: pstr, reserved bytes, infohash.
pub fn handshake_head(reserved: &Reserved, info_hash: &[u8; 20]) -> [u8; HANDSHAKE_HEAD_LEN] {
    let mut b = [0u8; HANDSHAKE_HEAD_LEN];
    b[0] = PSTR.len() as u8;
    b[1..20].copy_from_slice(PSTR);
    b[20..28].copy_from_slice(&reserved.0);
    b[28..48].copy_from_slice(info_hash);
    b
}

/// Parses the first 48 bytes of a handshake.
pub fn parse_handshake_head(
    b: &[u8; HANDSHAKE_HEAD_LEN],
) -> Result<(Reserved, [u8; 20]), FrameError> {
    if b[0] as usize != PSTR.len() {
        return Err(FrameError::NotBitTorrent { first: b[0] });
    }
    if &b[1..20] != PSTR {
        return Err(FrameError::BadProtocolString);
    }
    let mut reserved = [0u8; 8];
    reserved.copy_from_slice(&b[20..28]);
    let mut info_hash = [0u8; 20];
    info_hash.copy_from_slice(&b[28..48]);
    Ok((Reserved(reserved), info_hash))
}

/// Reads the first 48 bytes of a handshake (a listener checks the infohash before it
/// answers). The very first byte is checked before anything else is read: an MSE
/// (encrypted) opening or any other protocol fails at once, so the caller closes and a
/// client that retries in plaintext after a close does so promptly.
pub fn read_handshake_head<R: Read + ?Sized>(r: &mut R) -> Result<(Reserved, [u8; 20]), ReadError> {
    let mut b = [0u8; HANDSHAKE_HEAD_LEN];
    read_first(r, &mut b[..1])?;
    if b[0] as usize != PSTR.len() {
        return Err(ReadError::Frame(FrameError::NotBitTorrent { first: b[0] }));
    }
    read_exact(r, &mut b[1..20])?;
    if &b[1..20] != PSTR {
        return Err(ReadError::Frame(FrameError::BadProtocolString));
    }
    read_exact(r, &mut b[20..])?;
    parse_handshake_head(&b).map_err(ReadError::Frame)
}

/// Reads the 20-byte peer id that ends a handshake.
pub fn read_peer_id<R: Read + ?Sized>(r: &mut R) -> Result<PeerId, ReadError> {
    let mut id = [0u8; 20];
    read_exact(r, &mut id)?;
    Ok(PeerId(id))
}

/// Reads a whole handshake (see [`read_handshake_head`]).
pub fn read_handshake<R: Read + ?Sized>(r: &mut R) -> Result<Handshake, ReadError> {
    let (reserved, info_hash) = read_handshake_head(r)?;
    let peer_id = read_peer_id(r)?;
    Ok(Handshake {
        reserved,
        info_hash,
        peer_id,
    })
}

/// A block: `length` bytes at `begin` in piece `index` (what `request` and `cancel` name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockRequest {
    /// Piece index.
    pub index: u32,
    /// Byte offset in the piece.
    pub begin: u32,
    /// Bytes wanted.
    pub length: u32,
}

/// One peer wire message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A zero length prefix: keeps an idle connection open (send one every 2 minutes).
    KeepAlive,
    /// The sender will not answer requests.
    Choke,
    /// The sender will answer requests.
    Unchoke,
    /// The sender wants pieces the receiver has.
    Interested,
    /// The sender wants nothing the receiver has.
    NotInterested,
    /// The sender has verified this piece.
    Have(u32),
    /// The pieces the sender has, high bit of byte 0 = piece 0; spare bits zero.
    Bitfield(Vec<u8>),
    /// Asks for a block.
    Request(BlockRequest),
    /// A block of data.
    Piece {
        /// Piece index.
        index: u32,
        /// Byte offset in the piece.
        begin: u32,
        /// The block.
        data: Vec<u8>,
    },
    /// Withdraws a request.
    Cancel(BlockRequest),
    /// The sender's DHT port (we ignore it).
    Port(u16),
}

/// What the receiver accepts: the torrent's piece count and the largest block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Pieces in the torrent: bounds piece indexes and fixes the bitfield's size.
    pub num_pieces: u32,
    /// The largest block accepted in a `piece` or asked for in a `request`.
    pub max_block: u32,
}

impl Limits {
    /// Limits for a torrent of `num_pieces` pieces and 16 KiB blocks.
    pub fn new(num_pieces: u32) -> Limits {
        Limits {
            num_pieces,
            max_block: BLOCK_LEN,
        }
    }

    /// Bytes of a bitfield for this torrent.
    pub fn bitfield_len(&self) -> usize {
        (self.num_pieces as usize).div_ceil(8)
    }

    /// The largest length prefix accepted for a message with this id, or `None` for an
    /// id we do not know (BEP 6 and BEP 10 ids too: we never announce those extensions).
    pub fn max_len(&self, id: u8) -> Option<u32> {
        Some(match id {
            id::CHOKE | id::UNCHOKE | id::INTERESTED | id::NOT_INTERESTED => 1,
            id::HAVE => 5,
            // Saturating: a bitfield of more than 2^32-2 bytes cannot be framed anyway.
            id::BITFIELD => u32::try_from(self.bitfield_len())
                .unwrap_or(u32::MAX)
                .saturating_add(1),
            id::REQUEST | id::CANCEL => 13,
            id::PIECE => self.max_block.saturating_add(PIECE_HEADER_LEN),
            id::PORT => 3,
            _ => return None,
        })
    }
}

/// The stream can no longer be trusted: close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first byte is not 19: an MSE (encrypted) opening or another protocol.
    #[error("not a BitTorrent handshake (first byte {first:#04x}, want 19)")]
    NotBitTorrent {
        /// The byte received.
        first: u8,
    },
    /// The length byte is 19 but the string is not `BitTorrent protocol`.
    #[error("handshake protocol string is not \"BitTorrent protocol\"")]
    BadProtocolString,
    /// A length prefix over the limit of the message it announces.
    #[error("length prefix {len} is over the limit {max} of message id {id}")]
    TooLong {
        /// The message id.
        id: u8,
        /// The length prefix.
        len: u32,
        /// The limit for that id.
        max: u32,
    },
    /// A message id we do not speak, with a length over what we are willing to skip.
    #[error("unknown message id {id} with length prefix {len} (over {max}, not skipped)")]
    UnknownTooLong {
        /// The message id.
        id: u8,
        /// The length prefix.
        len: u32,
        /// The most we skip.
        max: u32,
    },
}

/// A whole message was read but its content is wrong; the stream is still in step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// A length prefix under what the message needs (or not its exact length).
    #[error("message id {id} has length {len}, it must be {want}")]
    BadLength {
        /// The message id.
        id: u8,
        /// The length prefix.
        len: u32,
        /// What the message needs (the minimum for `piece`).
        want: u32,
    },
    /// A bitfield whose bits past the last piece are not all zero (BEP 3: drop the peer).
    #[error("bitfield has spare bits set after piece {num_pieces}")]
    SpareBits {
        /// Pieces in the torrent.
        num_pieces: u32,
    },
    /// A piece index at or past the torrent's piece count.
    #[error("piece index {index} out of range (the torrent has {num_pieces})")]
    PieceIndex {
        /// The index received.
        index: u32,
        /// Pieces in the torrent.
        num_pieces: u32,
    },
    /// A `request` or `cancel` of zero bytes or over the block limit.
    #[error("block length {length} is not within 1..={max}")]
    BlockLength {
        /// The length asked for.
        length: u32,
        /// The limit.
        max: u32,
    },
    /// A message id we do not speak (skipped: its length was within bounds).
    #[error("unknown message id {id} ({len} bytes, skipped)")]
    UnknownId {
        /// The message id.
        id: u8,
        /// Its length prefix.
        len: u32,
    },
}

/// Why [`read_message`] or a handshake reader failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the connection cleanly between two messages.
    #[error("connection closed")]
    Closed,
    /// The socket failed, timed out, or ended inside a message.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// Framing is broken: close.
    #[error("framing: {0}")]
    Frame(FrameError),
    /// The message was bad but the stream is still in step.
    #[error("bad message: {0}")]
    Message(MessageError),
}

impl ReadError {
    /// Whether the connection must be closed (every case but a bad message).
    pub fn is_fatal(&self) -> bool {
        !matches!(self, ReadError::Message(_))
    }
}

/// Why a message cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A body that does not fit the 32-bit length prefix.
    #[error("{0} bytes do not fit a u32 length prefix")]
    TooLong(usize),
}

/// The most bytes of an unknown message we read and throw away before calling the stream
/// broken: as much as the largest message we know, so a harmless extension message from a
/// peer that ignored our zero reserved bits does not break the stream.
fn skip_limit(limits: &Limits) -> u32 {
    limits.max_len(id::PIECE).unwrap_or(u32::MAX)
}

/// Reads into `b`; [`ReadError::Closed`] if the stream ends before its first byte.
fn read_first<R: Read + ?Sized>(r: &mut R, b: &mut [u8]) -> Result<(), ReadError> {
    match crate::bounded::fill_or_closed(r, b)? {
        true => Ok(()),
        false => Err(ReadError::Closed),
    }
}

fn read_exact<R: Read + ?Sized>(r: &mut R, b: &mut [u8]) -> Result<(), ReadError> {
    r.read_exact(b).map_err(ReadError::Io)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads and drops `n` bytes without allocating them.
fn skip<R: Read + ?Sized>(r: &mut R, n: u64) -> Result<(), ReadError> {
    let copied = io::copy(&mut r.take(n), &mut io::sink())?;
    if copied < n {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(())
}

/// Reads one message. A clean close before its first byte is [`ReadError::Closed`].
///
/// The length prefix is checked against `limits` for the message's id before its body is
/// read; only a body within its limit is ever allocated.
pub fn read_message<R: Read + ?Sized>(r: &mut R, limits: &Limits) -> Result<Message, ReadError> {
    let mut prefix = [0u8; PREFIX_LEN];
    read_first(r, &mut prefix)?;
    let len = be32(&prefix);
    if len == 0 {
        return Ok(Message::KeepAlive);
    }
    let mut idb = [0u8; 1];
    read_exact(r, &mut idb)?;
    let msg_id = idb[0];
    let body_len = len - 1;
    let Some(max) = limits.max_len(msg_id) else {
        let max = skip_limit(limits);
        if len > max {
            return Err(ReadError::Frame(FrameError::UnknownTooLong {
                id: msg_id,
                len,
                max,
            }));
        }
        skip(r, u64::from(body_len))?;
        return Err(ReadError::Message(MessageError::UnknownId {
            id: msg_id,
            len,
        }));
    };
    if len > max {
        return Err(ReadError::Frame(FrameError::TooLong {
            id: msg_id,
            len,
            max,
        }));
    }
    // Within the limit from here on: reading (and allocating) the body is bounded.
    let exact = |want: u32| -> Result<(), ReadError> {
        if len != want {
            return Err(ReadError::Message(MessageError::BadLength {
                id: msg_id,
                len,
                want,
            }));
        }
        Ok(())
    };
    match msg_id {
        id::CHOKE | id::UNCHOKE | id::INTERESTED | id::NOT_INTERESTED => {
            // len <= max == 1 and len != 0: exactly 1, no body.
            Ok(match msg_id {
                id::CHOKE => Message::Choke,
                id::UNCHOKE => Message::Unchoke,
                id::INTERESTED => Message::Interested,
                _ => Message::NotInterested,
            })
        }
        id::HAVE => {
            let mut b = [0u8; 4];
            if let Err(e) = exact(5) {
                skip(r, u64::from(body_len))?;
                return Err(e);
            }
            read_exact(r, &mut b)?;
            let index = be32(&b);
            check_index(index, limits)?;
            Ok(Message::Have(index))
        }
        id::BITFIELD => {
            let bits = read_growing(r, body_len as usize)?;
            let want = max;
            exact(want)?;
            if let Some(&last) = bits.last() {
                let spare = (8 - limits.num_pieces % 8) % 8;
                if spare > 0 && last & ((1u8 << spare) - 1) != 0 {
                    return Err(ReadError::Message(MessageError::SpareBits {
                        num_pieces: limits.num_pieces,
                    }));
                }
            }
            Ok(Message::Bitfield(bits))
        }
        id::REQUEST | id::CANCEL => {
            let mut b = [0u8; 12];
            if let Err(e) = exact(13) {
                skip(r, u64::from(body_len))?;
                return Err(e);
            }
            read_exact(r, &mut b)?;
            let req = BlockRequest {
                index: be32(&b[0..4]),
                begin: be32(&b[4..8]),
                length: be32(&b[8..12]),
            };
            check_index(req.index, limits)?;
            if req.length == 0 || req.length > limits.max_block {
                return Err(ReadError::Message(MessageError::BlockLength {
                    length: req.length,
                    max: limits.max_block,
                }));
            }
            Ok(if msg_id == id::REQUEST {
                Message::Request(req)
            } else {
                Message::Cancel(req)
            })
        }
        id::PIECE => {
            if len < PIECE_HEADER_LEN {
                skip(r, u64::from(body_len))?;
                return Err(ReadError::Message(MessageError::BadLength {
                    id: msg_id,
                    len,
                    want: PIECE_HEADER_LEN,
                }));
            }
            let mut b = [0u8; 8];
            read_exact(r, &mut b)?;
            let mut data = vec![0u8; (len - PIECE_HEADER_LEN) as usize];
            read_exact(r, &mut data)?;
            let index = be32(&b[0..4]);
            check_index(index, limits)?;
            Ok(Message::Piece {
                index,
                begin: be32(&b[4..8]),
                data,
            })
        }
        _ => {
            // id::PORT, the only id left with a limit.
            let mut b = [0u8; 2];
            if let Err(e) = exact(3) {
                skip(r, u64::from(body_len))?;
                return Err(e);
            }
            read_exact(r, &mut b)?;
            Ok(Message::Port(u16::from_be_bytes(b)))
        }
    }
}

fn check_index(index: u32, limits: &Limits) -> Result<(), ReadError> {
    if index >= limits.num_pieces {
        return Err(ReadError::Message(MessageError::PieceIndex {
            index,
            num_pieces: limits.num_pieces,
        }));
    }
    Ok(())
}

/// The 13 bytes that start a `piece` message carrying `block_len` bytes: an uploader
/// writes them and then the block straight from storage, without building the message.
pub fn piece_header(index: u32, begin: u32, block_len: u32) -> Result<[u8; 13], EncodeError> {
    let len = block_len
        .checked_add(PIECE_HEADER_LEN)
        .ok_or(EncodeError::TooLong(block_len as usize))?;
    let mut b = [0u8; 13];
    b[0..4].copy_from_slice(&len.to_be_bytes());
    b[4] = id::PIECE;
    b[5..9].copy_from_slice(&index.to_be_bytes());
    b[9..13].copy_from_slice(&begin.to_be_bytes());
    Ok(b)
}

impl Message {
    /// Appends the message, length prefix included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let simple = |out: &mut Vec<u8>, msg_id: u8| {
            out.extend_from_slice(&1u32.to_be_bytes());
            out.push(msg_id);
        };
        let block = |out: &mut Vec<u8>, msg_id: u8, b: &BlockRequest| {
            out.extend_from_slice(&13u32.to_be_bytes());
            out.push(msg_id);
            out.extend_from_slice(&b.index.to_be_bytes());
            out.extend_from_slice(&b.begin.to_be_bytes());
            out.extend_from_slice(&b.length.to_be_bytes());
        };
        match self {
            Message::KeepAlive => out.extend_from_slice(&0u32.to_be_bytes()),
            Message::Choke => simple(out, id::CHOKE),
            Message::Unchoke => simple(out, id::UNCHOKE),
            Message::Interested => simple(out, id::INTERESTED),
            Message::NotInterested => simple(out, id::NOT_INTERESTED),
            Message::Have(i) => {
                out.extend_from_slice(&5u32.to_be_bytes());
                out.push(id::HAVE);
                out.extend_from_slice(&i.to_be_bytes());
            }
            Message::Bitfield(bits) => {
                let len = u32::try_from(bits.len())
                    .ok()
                    .and_then(|l| l.checked_add(1))
                    .ok_or(EncodeError::TooLong(bits.len()))?;
                out.extend_from_slice(&len.to_be_bytes());
                out.push(id::BITFIELD);
                out.extend_from_slice(bits);
            }
            Message::Request(b) => block(out, id::REQUEST, b),
            Message::Cancel(b) => block(out, id::CANCEL, b),
            Message::Piece { index, begin, data } => {
                let block_len =
                    u32::try_from(data.len()).map_err(|_| EncodeError::TooLong(data.len()))?;
                out.extend_from_slice(&piece_header(*index, *begin, block_len)?);
                out.extend_from_slice(data);
            }
            Message::Port(p) => {
                out.extend_from_slice(&3u32.to_be_bytes());
                out.push(id::PORT);
                out.extend_from_slice(&p.to_be_bytes());
            }
        }
        Ok(())
    }

    /// The message's bytes, length prefix included.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }
}

/// Writes one message (one `write_all`, so a message is never interleaved with another
/// writer's when the caller holds the socket's writer alone).
pub fn write_message<W: Write + ?Sized>(w: &mut W, m: &Message) -> io::Result<()> {
    let bytes = m
        .to_bytes()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    w.write_all(&bytes)
}

/// A bitfield of `num_pieces` pieces from a predicate "we have piece i" (spare bits zero).
pub fn bitfield_from(num_pieces: u32, mut have: impl FnMut(u32) -> bool) -> Vec<u8> {
    let mut bits = vec![0u8; (num_pieces as usize).div_ceil(8)];
    for i in 0..num_pieces {
        if have(i) {
            bits[(i / 8) as usize] |= 0x80 >> (i % 8);
        }
    }
    bits
}

/// Whether a bitfield (as received) has piece `index`; `false` past its end.
pub fn bitfield_has(bits: &[u8], index: u32) -> bool {
    bits.get((index / 8) as usize)
        .is_some_and(|b| b & (0x80 >> (index % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read(bytes: &[u8], limits: &Limits) -> Result<Message, ReadError> {
        read_message(&mut Cursor::new(bytes), limits)
    }

    #[test]
    fn handshake_vector() {
        let h = Handshake {
            reserved: Reserved::NONE,
            info_hash: [0xAA; 20],
            peer_id: PeerId(*b"-SW0100-abcdefghijkl"),
        };
        let b = h.encode();
        assert_eq!(b[0], 19);
        assert_eq!(&b[1..20], b"BitTorrent protocol");
        assert_eq!(&b[20..28], &[0; 8]);
        assert_eq!(&b[28..48], &[0xAA; 20]);
        assert_eq!(&b[48..], b"-SW0100-abcdefghijkl");
        assert_eq!(Handshake::parse(&b).unwrap(), h);
        assert_eq!(read_handshake(&mut Cursor::new(&b[..])).unwrap(), h);
    }

    #[test]
    fn reserved_bits() {
        let mut r = Reserved::NONE;
        assert!(!r.extension_protocol() && !r.fast() && !r.dht());
        r.0[5] = 0x10;
        r.0[7] = 0x05;
        assert!(r.extension_protocol() && r.fast() && r.dht());
    }

    #[test]
    fn mse_opening_fails_on_the_first_byte() {
        // A reader that yields one byte and then would block forever (error here): the
        // handshake reader must decide on that byte alone.
        struct OneByte(bool);
        impl Read for OneByte {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                if self.0 {
                    return Err(io::Error::other("read past the first byte"));
                }
                self.0 = true;
                b[0] = 0x8F;
                Ok(1)
            }
        }
        let e = read_handshake(&mut OneByte(false)).unwrap_err();
        assert!(matches!(
            e,
            ReadError::Frame(FrameError::NotBitTorrent { first: 0x8F })
        ));
    }

    #[test]
    fn message_vectors() {
        let l = Limits::new(10);
        let cases: Vec<(Message, Vec<u8>)> = vec![
            (Message::KeepAlive, vec![0, 0, 0, 0]),
            (Message::Choke, vec![0, 0, 0, 1, 0]),
            (Message::Unchoke, vec![0, 0, 0, 1, 1]),
            (Message::Interested, vec![0, 0, 0, 1, 2]),
            (Message::NotInterested, vec![0, 0, 0, 1, 3]),
            (Message::Have(7), vec![0, 0, 0, 5, 4, 0, 0, 0, 7]),
            (
                Message::Bitfield(vec![0b1010_0000, 0b0100_0000]),
                vec![0, 0, 0, 3, 5, 0b1010_0000, 0b0100_0000],
            ),
            (
                Message::Request(BlockRequest {
                    index: 1,
                    begin: 0x4000,
                    length: 0x4000,
                }),
                vec![0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
            ),
            (
                Message::Piece {
                    index: 2,
                    begin: 3,
                    data: vec![9, 8, 7],
                },
                vec![0, 0, 0, 12, 7, 0, 0, 0, 2, 0, 0, 0, 3, 9, 8, 7],
            ),
            (
                Message::Cancel(BlockRequest {
                    index: 9,
                    begin: 0,
                    length: 1,
                }),
                vec![0, 0, 0, 13, 8, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1],
            ),
            (Message::Port(6881), vec![0, 0, 0, 3, 9, 0x1A, 0xE1]),
        ];
        for (m, bytes) in cases {
            assert_eq!(m.to_bytes().unwrap(), bytes, "{m:?}");
            assert_eq!(read(&bytes, &l).unwrap(), m, "{bytes:?}");
        }
    }

    #[test]
    fn clean_close_between_messages() {
        assert!(matches!(read(&[], &Limits::new(1)), Err(ReadError::Closed)));
        assert!(matches!(
            read(&[0, 0], &Limits::new(1)),
            Err(ReadError::Io(_))
        ));
    }

    #[test]
    fn bitfield_helpers() {
        let bits = bitfield_from(10, |i| i % 3 == 0);
        assert_eq!(bits, vec![0b1001_0010, 0b0100_0000]);
        assert!(bitfield_has(&bits, 9) && !bitfield_has(&bits, 8) && !bitfield_has(&bits, 99));
    }

    #[test]
    fn message_error_leaves_the_stream_in_step() {
        let l = Limits::new(4);
        // have 9 (out of range), then unchoke; a 2-byte have (bad length), then choke;
        // an unknown id 20 (BEP 10) of 3 bytes, then interested.
        let bytes = [
            0, 0, 0, 5, 4, 0, 0, 0, 9, 0, 0, 0, 1, 1, 0, 0, 0, 2, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 3,
            20, 1, 2, 0, 0, 0, 1, 2,
        ];
        let mut c = Cursor::new(&bytes[..]);
        assert!(matches!(
            read_message(&mut c, &l),
            Err(ReadError::Message(MessageError::PieceIndex {
                index: 9,
                ..
            }))
        ));
        assert_eq!(read_message(&mut c, &l).unwrap(), Message::Unchoke);
        assert!(matches!(
            read_message(&mut c, &l),
            Err(ReadError::Message(MessageError::BadLength { id: 4, .. }))
        ));
        assert_eq!(read_message(&mut c, &l).unwrap(), Message::Choke);
        assert!(matches!(
            read_message(&mut c, &l),
            Err(ReadError::Message(MessageError::UnknownId {
                id: 20,
                len: 3
            }))
        ));
        assert_eq!(read_message(&mut c, &l).unwrap(), Message::Interested);
        assert!(matches!(read_message(&mut c, &l), Err(ReadError::Closed)));
    }
}
