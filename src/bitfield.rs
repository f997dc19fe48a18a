//! A set of piece indexes as bits: what we have, what a peer has, what resumed.
//!
//! Bit order is BitTorrent's (BEP 3): piece 0 is the high bit of byte 0, so
//! [`Bitfield::as_bytes`] is the wire form of a `bitfield` message. Spare bits in the last
//! byte are always zero.

/// A fixed-length set of pieces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bitfield {
    bits: Vec<u8>,
    len: usize,
    ones: usize,
}

impl Bitfield {
    /// `len` pieces, none set.
    pub fn new(len: usize) -> Self {
        Bitfield {
            bits: vec![0; len.div_ceil(8)],
            len,
            ones: 0,
        }
    }

    /// `len` pieces, all set (a seed).
    pub fn full(len: usize) -> Self {
        let mut b = Self::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// From the wire form; `None` if `bytes` is not `len.div_ceil(8)` long or a spare
    /// bit is set (BEP 3 says to drop such a peer).
    pub fn from_bytes(bytes: &[u8], len: usize) -> Option<Self> {
        if bytes.len() != len.div_ceil(8) {
            return None;
        }
        let spare = bytes.len() * 8 - len;
        if spare > 0 && bytes[bytes.len() - 1] & ((1u8 << spare) - 1) != 0 {
            return None;
        }
        let ones = bytes.iter().map(|b| b.count_ones() as usize).sum();
        Some(Bitfield {
            bits: bytes.to_vec(),
            len,
            ones,
        })
    }

    /// From one flag per piece (bvTorrent masks are strings of `0`/`1`).
    pub fn from_bools(flags: impl IntoIterator<Item = bool>) -> Self {
        let flags: Vec<bool> = flags.into_iter().collect();
        let mut b = Self::new(flags.len());
        for (i, f) in flags.into_iter().enumerate() {
            if f {
                b.set(i);
            }
        }
        b
    }

    /// Number of pieces.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it counts no pieces at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pieces set.
    pub fn count(&self) -> usize {
        self.ones
    }

    /// Whether every piece is set.
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// Whether piece `i` is set (false past the end).
    pub fn has(&self, i: usize) -> bool {
        i < self.len && self.bits[i / 8] & (0x80 >> (i % 8)) != 0
    }

    /// Sets piece `i`; returns whether it was newly set. Past the end: ignored, false.
    pub fn set(&mut self, i: usize) -> bool {
        if i >= self.len || self.has(i) {
            return false;
        }
        self.bits[i / 8] |= 0x80 >> (i % 8);
        self.ones += 1;
        true
    }

    /// Clears piece `i`; returns whether it was set.
    pub fn clear(&mut self, i: usize) -> bool {
        if !self.has(i) {
            return false;
        }
        self.bits[i / 8] &= !(0x80 >> (i % 8));
        self.ones -= 1;
        true
    }

    /// The set pieces, in order.
    pub fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).filter(|&i| self.has(i))
    }

    /// The wire form (BEP 3 bit order).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// `0`/`1` per piece, as bvTorrent's masks.
    pub fn to_mask_string(&self) -> String {
        (0..self.len)
            .map(|i| if self.has(i) { '1' } else { '0' })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_clear_count_and_wire_form() {
        let mut b = Bitfield::new(10);
        assert!(b.set(0) && b.set(9) && !b.set(9) && !b.set(10));
        assert_eq!(b.count(), 2);
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.to_mask_string(), "1000000001");
        assert_eq!(Bitfield::from_bytes(b.as_bytes(), 10), Some(b.clone()));
        assert!(b.clear(0) && !b.clear(0));
        assert_eq!(b.ones().collect::<Vec<_>>(), vec![9]);
        // A spare bit set, or the wrong length: refused.
        assert_eq!(Bitfield::from_bytes(&[0x80, 0x41], 10), None);
        assert_eq!(Bitfield::from_bytes(&[0x80], 10), None);
        assert!(Bitfield::full(10).is_full());
        assert_eq!(Bitfield::from_bools([true, false, true]).count(), 2);
    }
}
