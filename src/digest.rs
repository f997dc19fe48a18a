//! Piece digests for every protocol: the algorithm travels with the bytes, so a SHA-1
//! digest can never be compared with a SHA-224 one by mistake.
//!
//! The course and BitTorrent name pieces by SHA-1 (20 bytes), bvTorrent by SHA-224 (28
//! bytes). [`Digest`] keeps its bytes inline (no allocation per piece: a plan may hold
//! 65,535 of them). The course's `ChunkHash` converts to and from it (in `hash.rs`).

use std::fmt;

use sha1::Digest as _;

/// A hash function that names pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlgo {
    /// SHA-1, 20 bytes: the course protocol and BitTorrent v1.
    Sha1,
    /// SHA-224, 28 bytes: bvTorrent.
    Sha224,
}

impl HashAlgo {
    /// Length in bytes of a digest of this algorithm.
    pub const fn digest_len(self) -> usize {
        match self {
            HashAlgo::Sha1 => 20,
            HashAlgo::Sha224 => 28,
        }
    }

    /// A fresh incremental hasher.
    pub fn hasher(self) -> Hasher {
        match self {
            HashAlgo::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            HashAlgo::Sha224 => Hasher::Sha224(sha2::Sha224::new()),
        }
    }
}

impl fmt::Display for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashAlgo::Sha1 => "SHA-1",
            HashAlgo::Sha224 => "SHA-224",
        })
    }
}

/// Longest digest any [`HashAlgo`] makes.
const MAX_LEN: usize = 28;

/// A digest tagged with its algorithm; compares equal only to a digest of the same
/// algorithm and bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algo: HashAlgo,
    /// The digest in the first `algo.digest_len()` bytes; the rest is always zero, so the
    /// derived comparisons are right.
    bytes: [u8; MAX_LEN],
}

/// Why bytes or a string are not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Wrong number of bytes (or of hex digits / 2) for the algorithm.
    #[error("not a {algo} digest: expected {expected} bytes, got {got}")]
    Length {
        /// The algorithm asked for.
        algo: HashAlgo,
        /// Bytes it needs.
        expected: usize,
        /// Bytes (or half the characters) given.
        got: usize,
    },
    /// A character outside `0-9a-fA-F`.
    #[error("not a hex digest: {0:?} is not a hex digit")]
    Digit(char),
}

impl Digest {
    /// Wraps raw bytes, which must be exactly `algo.digest_len()` long.
    pub fn from_bytes(algo: HashAlgo, bytes: &[u8]) -> Result<Self, DigestError> {
        if bytes.len() != algo.digest_len() {
            return Err(DigestError::Length {
                algo,
                expected: algo.digest_len(),
                got: bytes.len(),
            });
        }
        let mut out = [0u8; MAX_LEN];
        out[..bytes.len()].copy_from_slice(bytes);
        Ok(Digest { algo, bytes: out })
    }

    /// Hashes `data` in one go.
    pub fn of(algo: HashAlgo, data: &[u8]) -> Self {
        let mut h = algo.hasher();
        h.update(data);
        h.finish()
    }

    /// Parses `2 × algo.digest_len()` hex digits, either case.
    pub fn from_hex(algo: HashAlgo, s: &str) -> Result<Self, DigestError> {
        let b = s.as_bytes();
        if b.len() != 2 * algo.digest_len() {
            return Err(DigestError::Length {
                algo,
                expected: algo.digest_len(),
                got: s.chars().count() / 2,
            });
        }
        let mut out = [0u8; MAX_LEN];
        for (i, o) in out[..algo.digest_len()].iter_mut().enumerate() {
            *o = hex_val(b[2 * i])? << 4 | hex_val(b[2 * i + 1])?;
        }
        Ok(Digest { algo, bytes: out })
    }

    /// The algorithm.
    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    /// The raw bytes (`algo().digest_len()` of them).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.algo.digest_len()]
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

fn hex_val(b: u8) -> Result<u8, DigestError> {
    hex_digit(b).ok_or(DigestError::Digit(b as char))
}

/// The value of one hex digit (either case): shared with the course's `ChunkHash`.
pub(crate) fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({self})", self.algo)
    }
}

/// Incremental hashing in the algorithm it was made for ([`HashAlgo::hasher`]).
#[derive(Clone)]
pub enum Hasher {
    /// SHA-1.
    Sha1(sha1::Sha1),
    /// SHA-224.
    Sha224(sha2::Sha224),
}

impl Hasher {
    /// Feeds more bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha224(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha1(h) => Digest::from_bytes(HashAlgo::Sha1, &h.finalize()),
            Hasher::Sha224(h) => Digest::from_bytes(HashAlgo::Sha224, &h.finalize()),
        }
        .expect("the algorithm's length")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            Digest::of(HashAlgo::Sha1, b"abc").to_hex(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        // FIPS 180-4 example for SHA-224.
        assert_eq!(
            Digest::of(HashAlgo::Sha224, b"abc").to_hex(),
            "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"
        );
    }

    #[test]
    fn hex_round_trip_algorithms_and_errors() {
        for algo in [HashAlgo::Sha1, HashAlgo::Sha224] {
            let d = Digest::of(algo, b"swarmlet");
            assert_eq!(d.as_bytes().len(), algo.digest_len());
            assert_eq!(Digest::from_hex(algo, &d.to_hex()).unwrap(), d);
            assert_eq!(
                Digest::from_hex(algo, &d.to_hex().to_uppercase()).unwrap(),
                d
            );
            assert!(Digest::from_hex(algo, "abc").is_err());
            assert!(Digest::from_hex(algo, &"é".repeat(algo.digest_len())).is_err());
        }
        let bad = format!("{}g", &Digest::of(HashAlgo::Sha1, b"").to_hex()[..39]);
        assert_eq!(
            Digest::from_hex(HashAlgo::Sha1, &bad),
            Err(DigestError::Digit('g'))
        );
        // Same leading bytes, other algorithm: not equal.
        let one = Digest::of(HashAlgo::Sha224, b"x");
        let other = Digest::from_bytes(HashAlgo::Sha1, &one.as_bytes()[..20]).unwrap();
        assert_ne!(one, other);
        assert!(Digest::from_bytes(HashAlgo::Sha1, &[0; 28]).is_err());
    }

    #[test]
    fn incremental_equals_one_shot() {
        let mut inc = HashAlgo::Sha224.hasher();
        inc.update(b"da");
        inc.update(b"ta");
        assert_eq!(inc.finish(), Digest::of(HashAlgo::Sha224, b"data"));
    }
}
