//! Chunk hashes: the 20-byte SHA-1 that names a chunk on the wire and on disk.

use std::fmt;
use std::str::FromStr;

use sha1::{Digest as _, Sha1};

use crate::digest::{Digest, HashAlgo};

/// The raw 20-byte SHA-1 of a chunk's content.
///
/// On the wire it travels as raw bytes; in file names and INI files as 40 lowercase hex
/// digits. It is a type of its own so that a hash can never be confused with chunk data.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkHash([u8; 20]);

/// Why a string is not a chunk hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashParseError {
    /// Not exactly 40 characters.
    #[error("not a SHA-1 hash: expected 40 hex digits, got {0} characters")]
    Length(usize),
    /// A character outside `0-9a-fA-F`.
    #[error("not a SHA-1 hash: {0:?} is not a hex digit")]
    Digit(char),
}

impl ChunkHash {
    /// Length in bytes of a hash on the wire.
    pub const LEN: usize = 20;

    /// Wraps 20 raw bytes.
    pub const fn from_bytes(bytes: [u8; 20]) -> Self {
        ChunkHash(bytes)
    }

    /// The raw bytes, as sent on the wire.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// Hashes `data` in one go.
    pub fn of(data: &[u8]) -> Self {
        let mut h = ChunkHasher::new();
        h.update(data);
        h.finish()
    }

    /// Parses 40 hex digits (either case; we always write lowercase).
    pub fn from_hex(s: &str) -> Result<Self, HashParseError> {
        if s.len() != 40 {
            return Err(HashParseError::Length(s.chars().count()));
        }
        let mut out = [0u8; 20];
        let bytes = s.as_bytes();
        for (i, o) in out.iter_mut().enumerate() {
            let hi = hex_val(bytes[2 * i])?;
            let lo = hex_val(bytes[2 * i + 1])?;
            *o = hi << 4 | lo;
        }
        Ok(ChunkHash(out))
    }

    /// 40 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// The chunk's file name in a chunk directory: `<40 lowercase hex>.bin`.
    pub fn file_name(&self) -> String {
        format!("{self}.bin")
    }

    /// Parses a chunk file name; only the canonical `<40 lowercase hex>.bin` is accepted, so
    /// that one chunk can never live under two names.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let hex = name.strip_suffix(".bin")?;
        if hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        Self::from_hex(hex).ok()
    }
}

fn hex_val(b: u8) -> Result<u8, HashParseError> {
    crate::digest::hex_digit(b).ok_or(HashParseError::Digit(b as char))
}

impl fmt::Display for ChunkHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ChunkHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkHash({self})")
    }
}

impl FromStr for ChunkHash {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

/// Incremental SHA-1, for hashing a chunk while it streams.
#[derive(Clone, Default)]
pub struct ChunkHasher(Sha1);

impl ChunkHasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }
    /// Feeds more bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The hash of everything fed so far.
    pub fn finish(self) -> ChunkHash {
        ChunkHash(self.0.finalize().into())
    }
}

impl Digest {
    /// The course's name for this digest, if it is a SHA-1 one.
    pub fn to_chunk_hash(&self) -> Option<ChunkHash> {
        let bytes: [u8; 20] = self.as_bytes().try_into().ok()?;
        (self.algo() == HashAlgo::Sha1).then(|| ChunkHash::from_bytes(bytes))
    }
}

impl From<ChunkHash> for Digest {
    fn from(h: ChunkHash) -> Self {
        Digest::from_bytes(HashAlgo::Sha1, h.as_bytes()).expect("20 bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_conversion() {
        let h = ChunkHash::of(b"data");
        let d = Digest::from(h);
        assert_eq!(d, Digest::of(HashAlgo::Sha1, b"data"));
        assert_eq!(d.to_chunk_hash(), Some(h));
        assert_eq!(d.to_hex(), h.to_hex());
        assert_eq!(Digest::of(HashAlgo::Sha224, b"data").to_chunk_hash(), None);
    }

    #[test]
    fn known_sha1() {
        assert_eq!(
            ChunkHash::of(b"abc").to_hex(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = ChunkHash::of(b"swarmlet");
        assert_eq!(ChunkHash::from_hex(&h.to_hex()).unwrap(), h);
        assert_eq!(ChunkHash::from_hex(&h.to_hex().to_uppercase()).unwrap(), h);
        assert_eq!(ChunkHash::from_hex("abc"), Err(HashParseError::Length(3)));
        let bad = format!("{}g", &h.to_hex()[..39]);
        assert_eq!(ChunkHash::from_hex(&bad), Err(HashParseError::Digit('g')));
        // Multi-byte characters must not panic on slicing.
        assert!(ChunkHash::from_hex(&"é".repeat(20)).is_err());
    }

    #[test]
    fn file_names() {
        let h = ChunkHash::of(b"x");
        assert_eq!(ChunkHash::from_file_name(&h.file_name()), Some(h));
        assert_eq!(ChunkHash::from_file_name(&h.to_hex()), None);
        let upper = format!("{}.bin", h.to_hex().to_uppercase());
        assert_eq!(ChunkHash::from_file_name(&upper), None);
        assert_eq!(ChunkHash::from_file_name("x.bin"), None);
    }
}
