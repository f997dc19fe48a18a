//! The client's upload side: other clients connect, send one chunk index as a decimal
//! line, and get exactly that chunk's bytes, then the close.
//!
//! It runs on the shared accept loop ([`crate::server`]: one thread per connection, a
//! cap, deadlines) and reads chunks from the same [`PieceStore`] the download writes to,
//! so a chunk is served as soon as it is verified and stored. The spec has no error
//! message: a bad request line, or a request for a chunk the store does not have, is
//! answered by closing the connection (the requester sees a short read and tries
//! elsewhere).

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::codec::{self, CodecError};
use super::fetch::FetchTimeouts;
use crate::layout::Layout;
use crate::server::{Connection, Handler, Limits, Server};
use crate::storage::PieceStore;

/// Most connections from other clients served at once (design decision).
///
/// Every downloader opens a new connection per chunk and closes it after the chunk, so a
/// connection lives for one chunk's transfer; a downloader running several fetches at
/// once holds a few. 64 covers a classroom swarm of dozens of clients each fetching a
/// couple of chunks from us at the same moment, while bounding what uploads cost: 64
/// threads, 64 × [`BLOCK`] of buffers (4 MiB) and 64 descriptors. Beyond it a connection
/// is accepted and closed at once, which the requester sees as a short read and answers
/// by asking another holder: under load the swarm spreads, rather than queueing on us.
pub const MAX_UPLOADS: usize = 64;

/// How long a requester may take to send its request line once connected. It is one
/// short line sent right after connecting; 10 s tolerates a very slow link and frees the
/// thread from a client that connects and says nothing.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one blocked write may wait for the requester to read: a requester that
/// stops reading is cut off after this.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes read from the store and written to the socket at a time: bounds an upload's
/// memory whatever the chunk size (the classic 1 MiB, up to 64 MiB).
pub const BLOCK: usize = 64 * 1024;

/// After the last byte we half-close and wait this long for the requester to close its
/// side, reading (and discarding) at most [`DRAIN_MAX`] bytes. Closing a socket with
/// unread bytes in its receive queue makes the kernel send a RST, and a RST can destroy
/// the chunk's tail still unread at the requester; waiting for its FIN avoids that. A
/// requester reads its chunk and closes within milliseconds; 2 s bounds one that does not.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Most bytes read while draining (see [`DRAIN_TIMEOUT`]).
pub const DRAIN_MAX: usize = 64 * 1024;

/// The server limits of the upload listener (see the constants above).
pub fn limits() -> Limits {
    Limits {
        max_connections: MAX_UPLOADS,
        idle_timeout: REQUEST_TIMEOUT,
        request_timeout: REQUEST_TIMEOUT,
        write_timeout: WRITE_TIMEOUT,
    }
}

/// Why one upload ended early (logged, never sent: the protocol has no error message).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The connection failed, closed or timed out.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The request line is not a chunk index of this file.
    #[error("bad request: {0}")]
    Request(#[from] CodecError),
    /// A chunk we do not have (yet).
    #[error("chunk {0} not held")]
    NotHeld(usize),
    /// The requester read too slowly for the whole-chunk deadline.
    #[error("chunk {0}: the requester read too slowly")]
    TooSlow(usize),
}

/// Serves chunks of one file from a store; shared by every upload thread.
pub struct UploadService {
    store: Arc<dyn PieceStore>,
    layout: Layout,
    chunks: AtomicU64,
    bytes: AtomicU64,
}

impl UploadService {
    /// Serves the chunks of `layout` that `store` has.
    pub fn new(store: Arc<dyn PieceStore>, layout: Layout) -> Self {
        UploadService {
            store,
            layout,
            chunks: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Chunks sent whole so far.
    pub fn chunks_uploaded(&self) -> u64 {
        self.chunks.load(Ordering::Relaxed)
    }

    /// Bytes sent so far (whole chunks and partial ones).
    pub fn bytes_uploaded(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn serve(&self, conn: &Connection) -> Result<usize, UploadError> {
        let mut r = conn.reader()?;
        r.set_deadline(REQUEST_TIMEOUT);
        let mut r = BufReader::with_capacity(codec::MAX_REQUEST_LINE + 1, r);
        let line = codec::read_line(&mut r, codec::MAX_REQUEST_LINE)?;
        let i = codec::parse_chunk_request(&line, self.layout.piece_count())?;
        if !self.store.has(i) {
            return Err(UploadError::NotHeld(i));
        }
        let len = self.layout.piece_len(i);
        // The same floor a downloader holds us to: a requester slower than it would
        // have given up on us anyway.
        let deadline = Instant::now() + FetchTimeouts::default().whole(len);
        let mut block = vec![0u8; BLOCK.min(len as usize)];
        let mut out = &conn.stream;
        let mut off = 0u64;
        while off < len {
            if Instant::now() > deadline {
                return Err(UploadError::TooSlow(i));
            }
            let k = (len - off).min(BLOCK as u64) as usize;
            self.store.read_at(i, off, &mut block[..k])?;
            out.write_all(&block[..k])?;
            self.bytes.fetch_add(k as u64, Ordering::Relaxed);
            off += k as u64;
        }
        self.chunks.fetch_add(1, Ordering::Relaxed);
        close_after_last_byte(&conn.stream);
        Ok(i)
    }
}

/// Half-closes, then waits (bounded) for the requester's close; see [`DRAIN_TIMEOUT`].
fn close_after_last_byte(s: &TcpStream) {
    if s.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let end = Instant::now() + DRAIN_TIMEOUT;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < DRAIN_MAX {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*s).read(&mut sink) {
            Ok(0) => return,
            Ok(n) => drained += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

impl Handler for UploadService {
    fn handle(&self, conn: Connection) -> io::Result<()> {
        match self.serve(&conn) {
            Ok(i) => {
                log::debug!("bv-upload: chunk {i} to {}", conn.peer);
                Ok(())
            }
            Err(UploadError::Io(e)) => Err(e),
            Err(e) => {
                log::info!("bv-upload: {}: {e}: closing", conn.peer);
                Ok(())
            }
        }
    }
}

/// A running upload listener.
pub struct Uploader {
    addr: SocketAddr,
    active: Arc<AtomicUsize>,
    service: Arc<UploadService>,
}

impl Uploader {
    /// Binds `listen` (port 0: an ephemeral port) and serves uploads on a thread of its
    /// own for the rest of the process.
    pub fn start(listen: SocketAddr, service: Arc<UploadService>) -> io::Result<Self> {
        let server = Server::bind(listen, limits(), "bv-upload")?;
        let addr = server.local_addr()?;
        let active = server.active();
        let s = service.clone();
        thread::Builder::new()
            .name("bv-upload".into())
            .spawn(move || {
                if let Err(e) = server.run(s) {
                    log::error!("bv-upload: accept loop ended: {e}");
                }
            })?;
        Ok(Uploader {
            addr,
            active,
            service,
        })
    }

    /// The bound address (its port is what the client registers with).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service (for its counters).
    pub fn service(&self) -> &UploadService {
        &self.service
    }

    /// Uploads in progress now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Waits until no upload is in progress, or `limit` passes; whether it got idle.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while self.active() > 0 {
            if Instant::now() >= end {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bv::fetch::fetch_chunk;
    use crate::digest::{Digest, HashAlgo};
    use crate::download::FetchError;
    use crate::storage::files::FilesStore;

    #[test]
    fn serves_held_chunks_exactly_and_closes_on_anything_else() {
        let d = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..250_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let layout = Layout::single("f", data.len() as u64, 100_000).unwrap();
        let store = Arc::new(FilesStore::create(d.path(), layout.clone()).unwrap());
        // Chunks 0 and 2 stored, chunk 1 not.
        store.write_piece(0, &data[..100_000]).unwrap();
        store.write_piece(2, &data[200_000..]).unwrap();
        let up = Uploader::start(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(UploadService::new(store, layout)),
        )
        .unwrap();
        let addr = up.local_addr();
        let t = FetchTimeouts::default();
        let mut buf = Vec::new();
        fetch_chunk(addr, 2, 50_000, &mut buf, &t).unwrap();
        assert_eq!(
            Digest::of(HashAlgo::Sha224, &buf),
            Digest::of(HashAlgo::Sha224, &data[200_000..])
        );
        // Not held: closed without a byte.
        let e = fetch_chunk(addr, 1, 100_000, &mut buf, &t).unwrap_err();
        assert!(matches!(e, FetchError::ShortRead { got: 0, .. }), "{e}");
        // Past the end, or not a number: closed too.
        for bad in [&b"3\n"[..], b"x\n", b"1 1\n", &[b'1'; 100]] {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s.write_all(bad).unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            assert!(rest.is_empty(), "{bad:?}");
        }
        // The whole chunk, then the close (read to EOF, not by length).
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"0\n").unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        assert!(all == data[..100_000], "chunk 0 then EOF");
        drop(s); // ends the uploader's wait for our close
        assert!(up.wait_idle(Duration::from_secs(30)));
        assert_eq!(up.service().chunks_uploaded(), 2);
    }
}
