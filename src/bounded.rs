//! Reading a length that the sender claims, without trusting it: shared by every codec
//! that frames messages by a length prefix (the course wire, the BitTorrent peer wire).

use std::io::{self, Read};

/// Up-front buffer for a message body; larger bodies grow as their bytes arrive, so a
/// peer that announces a big (allowed) length and sends nothing costs nothing.
const INITIAL_BODY_CAPACITY: usize = 64 * 1024;

/// Reads exactly `n` bytes, doubling the buffer as they arrive but never past `n`, so
/// the allocation is bounded by both `n` and twice what the sender really sent.
pub fn read_growing<R: Read + ?Sized>(r: &mut R, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n.min(INITIAL_BODY_CAPACITY));
    while buf.len() < n {
        let step = (n - buf.len()).min(buf.len().max(INITIAL_BODY_CAPACITY));
        buf.reserve_exact(step);
        if r.take(step as u64).read_to_end(&mut buf)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(buf)
}

/// Fills `b` from `r`, retrying on `Interrupted`. `Ok(false)` when the stream ended
/// cleanly before its first byte (a peer that hung up between messages), an
/// `UnexpectedEof` error when it ended part-way.
pub fn fill_or_closed<R: Read + ?Sized>(r: &mut R, b: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < b.len() {
        match r.read(&mut b[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
