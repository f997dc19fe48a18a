//! Fetching one chunk from a holder, the spec's way: a new TCP connection per chunk, the
//! index as a decimal line, then exactly the chunk's bytes.
//!
//! The reply has no header and no length: the length comes from the descriptor, and the
//! fetch reads **exactly** that many bytes and stops, never waiting for EOF (some holders
//! send the chunk and never close). Fewer bytes then a close is a short read; a holder
//! that lacks the chunk just closes (a short read of 0 bytes). The bytes are not
//! verified here: whoever called hashes them (the engine does it off the socket thread).
//!
//! Errors are the engine's [`FetchError`], so this plugs into a piece source as it is.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::codec::{self, MAX_CHUNK_SIZE};
use crate::download::FetchError;

/// How long a holder may take to accept. Loopback and LAN connects take microseconds; a
/// holder that has not accepted in 5 s is dead or its backlog is full, and another holder
/// is a better bet than waiting for the kernel's SYN retries.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long any one read may wait for the next bytes. The floor is 5 s: slow
/// holders queue connections and only start on ours once an earlier upload is done, so
/// the first byte can be late while everything is fine. 10 s is twice that floor and still
/// frees us from a dead holder quickly enough to try another.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Slowest transfer rate tolerated over a whole chunk, in bytes per second. A per-read
/// timeout alone never fires on a holder sending one byte every few seconds, so a chunk
/// must also come whole within [`READ_TIMEOUT`] plus its length at this rate: 1 MiB in at
/// most 74 s. 16 KiB/s is far below any honest holder, even a deliberately slowed seed.
pub const MIN_RATE: u64 = 16 * 1024;

/// The deadlines of one fetch; the defaults are the constants above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchTimeouts {
    /// See [`CONNECT_TIMEOUT`].
    pub connect: Duration,
    /// See [`READ_TIMEOUT`].
    pub read: Duration,
    /// See [`MIN_RATE`] (bytes per second, at least 1).
    pub min_rate: u64,
}

impl Default for FetchTimeouts {
    fn default() -> Self {
        FetchTimeouts {
            connect: CONNECT_TIMEOUT,
            read: READ_TIMEOUT,
            min_rate: MIN_RATE,
        }
    }
}

impl FetchTimeouts {
    /// The whole-chunk deadline for `len` bytes: `read` plus `len` at `min_rate`.
    pub fn whole(&self, len: u64) -> Duration {
        self.read + Duration::from_secs_f64(len as f64 / self.min_rate.max(1) as f64)
    }
}

/// A request the fetch refuses to make (a caller's mistake, not the holder's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    /// A chunk length of 0 or above [`MAX_CHUNK_SIZE`].
    #[error("chunk length {0} out of range")]
    Length(u64),
}

/// Fetches chunks one connection each; holds only its timeouts, so one value serves any
/// number of threads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fetcher {
    /// The deadlines of every fetch.
    pub timeouts: FetchTimeouts,
}

impl Fetcher {
    /// A fetcher with these deadlines.
    pub fn new(timeouts: FetchTimeouts) -> Self {
        Fetcher { timeouts }
    }

    /// See [`fetch_chunk`].
    pub fn fetch_chunk(
        &self,
        addr: SocketAddr,
        index: usize,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), FetchError> {
        fetch_chunk(addr, index, len, buf, &self.timeouts)
    }
}

/// Fetches chunk `index` (`len` bytes, from the descriptor) from the holder at `addr` over
/// a new connection into `buf`, which holds exactly the chunk's bytes on success (resized
/// to `len`, overwritten, not cleared first: the engine reuses its buffers). The outgoing
/// socket is not bound to any address (the kernel picks the route's source address), so
/// a client listening on one address still reaches holders reachable from another.
pub fn fetch_chunk(
    addr: SocketAddr,
    index: usize,
    len: u64,
    buf: &mut Vec<u8>,
    t: &FetchTimeouts,
) -> Result<(), FetchError> {
    if len == 0 || len > MAX_CHUNK_SIZE {
        return Err(FetchError::Protocol(Box::new(BadRequest::Length(len))));
    }
    let mut s = TcpStream::connect_timeout(&addr, t.connect)?;
    let deadline = Instant::now() + t.whole(len);
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(t.read))?;
    s.write_all(&codec::encode_chunk_request(index))?;
    let len = len as usize;
    buf.resize(len, 0);
    let mut got = 0;
    while got < len {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "chunk deadline passed").into());
        }
        s.set_read_timeout(Some(left.min(t.read)))?;
        match s.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(FetchError::ShortRead {
                    expected: len as u64,
                    got: got as u64,
                });
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Dropping `s` closes it: whatever a holder sends past the chunk is not ours to read.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::FetchCause;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::thread;

    /// A one-shot holder: reads the request line, checks it, then does `act`.
    fn holder(act: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut line = Vec::new();
            io::BufReader::new(&s).read_until(b'\n', &mut line).unwrap();
            assert_eq!(line, b"3\n");
            act(s);
        });
        addr
    }

    fn quick() -> FetchTimeouts {
        FetchTimeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_millis(300),
            min_rate: 1 << 20,
        }
    }

    #[test]
    fn reads_exactly_the_length_from_a_holder_that_never_closes() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let addr = holder(move |mut s| {
            s.write_all(b"hello world").unwrap();
            let _ = rx.recv(); // keeps the connection open until the test ends
        });
        let mut buf = vec![7u8; 100];
        fetch_chunk(addr, 3, 5, &mut buf, &FetchTimeouts::default()).unwrap();
        assert_eq!(buf, b"hello");
        drop(tx);
    }

    #[test]
    fn short_reads_timeouts_refusals_and_bad_lengths() {
        let addr = holder(|mut s| s.write_all(b"hel").unwrap());
        let mut buf = Vec::new();
        let e = fetch_chunk(addr, 3, 5, &mut buf, &quick()).unwrap_err();
        assert!(
            matches!(
                e,
                FetchError::ShortRead {
                    expected: 5,
                    got: 3
                }
            ),
            "{e}"
        );
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let addr = holder(move |_s| {
            let _ = rx.recv();
        });
        let e = fetch_chunk(addr, 3, 5, &mut buf, &quick()).unwrap_err();
        assert_eq!(e.cause(), FetchCause::TimedOut, "{e}");
        drop(tx);
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = fetch_chunk(dead, 3, 5, &mut buf, &quick()).unwrap_err();
        assert_eq!(e.cause(), FetchCause::ConnectionRefused, "{e}");
        let e = fetch_chunk(dead, 3, MAX_CHUNK_SIZE + 1, &mut buf, &quick()).unwrap_err();
        assert_eq!(e.cause(), FetchCause::Protocol);
    }

    #[test]
    fn a_trickling_holder_meets_the_whole_chunk_deadline() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let addr = holder(move |mut s| {
            // One byte every 100 ms: each read is quick, the whole chunk is not.
            for _ in 0..100 {
                if s.write_all(b"x").is_err() || rx.try_recv().is_ok() {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        let t = FetchTimeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_millis(500),
            min_rate: 1 << 20,
        };
        let start = Instant::now();
        let e = fetch_chunk(addr, 3, 50, &mut Vec::new(), &t).unwrap_err();
        assert_eq!(e.cause(), FetchCause::TimedOut, "{e}");
        assert!(start.elapsed() < Duration::from_secs(5), "hang guard");
        let _ = tx.send(());
    }
}
