//! Charlie's side of the course protocol: asking the tracker for FILE_INFO, turning it (or
//! the INI files, in step 1) into a download [`Plan`], and fetching chunks from peers for
//! the download engine.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::{FileManifest, PeersConfig};
use crate::digest::Digest;
use crate::download::plan::PeerTable;
use crate::download::{
    AbortHandle, Connected, Connector, FetchError, PeerInfo, PieceRequest, PieceSource, Plan,
    PlanError,
};
use crate::hash::ChunkHash;
use crate::root::check_file_name;
use crate::wire::{self, ChunkReply, ErrorCode, FileInfo, Message, ReadError, Tolerance};

/// Timeouts and limits of Charlie's connections. Each default is a design decision.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// Connecting to a peer or tracker: loopback and a LAN answer in milliseconds, so 3 s
    /// means the host is down, not slow.
    pub connect_timeout: Duration,
    /// One blocked read or write. A peer that sends nothing for 10 s in the middle of a
    /// chunk is stalled; its chunk goes to another peer.
    pub io_timeout: Duration,
    /// Slowest reply accepted, in bytes per second: a whole reply must arrive within
    /// `io_timeout + its length / min_reply_rate`. The per-read timeout alone never fires
    /// on a server that sends one byte just inside it (a 512 KiB chunk at a byte every
    /// 9 s takes 55 days). 64 KiB/s is far below any LAN, and still a fair share of a
    /// classroom Wi-Fi, so only a stalling server is cut off.
    pub min_reply_rate: u64,
    /// Largest chunk content accepted. Course chunks are 512 KiB to 2 MiB; 64 MiB leaves
    /// room for unusual choices while bounding what a lying content_length can cost.
    pub max_chunk_len: usize,
    /// Largest FILE_INFO accepted: 65,535 chunks with a handful of peers each fit well
    /// within 16 MiB, and the buffer grows only as bytes arrive.
    pub max_file_info_len: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            connect_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(10),
            min_reply_rate: 64 * 1024,
            max_chunk_len: 64 << 20,
            max_file_info_len: 16 << 20,
        }
    }
}

/// Why talking to the tracker failed.
#[derive(Debug, thiserror::Error)]
pub enum TrackerClientError {
    /// No connection could be made after the allowed attempts.
    #[error("tracker {addr} unreachable after {}: {source}", crate::text::count(*attempts, "attempt", "attempts"))]
    Unreachable {
        /// The tracker's address.
        addr: SocketAddrV4,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        source: std::io::Error,
    },
    /// The exchange failed after connecting.
    #[error("tracker {addr}: {why}")]
    Exchange {
        /// The tracker's address.
        addr: SocketAddrV4,
        /// What went wrong.
        why: String,
    },
}

/// Connection attempts to the tracker, and the pause between them: a tracker restarting
/// at the same moment as Charlie is given a second and a half, a dead one fails fast.
pub const TRACKER_ATTEMPTS: u32 = 3;
/// Pause between tracker connection attempts.
pub const TRACKER_BACKOFF: Duration = Duration::from_millis(500);

fn connect(addr: SocketAddr, limits: &ClientLimits) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, limits.connect_timeout)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(limits.io_timeout))?;
    s.set_write_timeout(Some(limits.io_timeout))?;
    Ok(s)
}

/// Reads one reply under two limits: `io_timeout` for any single wait (a stalled server)
/// and a deadline for the whole reply (a trickling one); see
/// [`ClientLimits::min_reply_rate`]. Both fail with `TimedOut` and a message saying which.
struct ReplyReader<'a> {
    stream: &'a TcpStream,
    io_timeout: Duration,
    min_rate: u64,
    start: Instant,
    deadline: Instant,
    /// Bytes of the reply received so far.
    received: u64,
}

impl<'a> ReplyReader<'a> {
    /// Starts the clock: until [`ReplyReader::allow`], the header must come within
    /// `io_timeout`.
    fn new(stream: &'a TcpStream, limits: &ClientLimits) -> Self {
        let start = Instant::now();
        ReplyReader {
            stream,
            io_timeout: limits.io_timeout,
            min_rate: limits.min_reply_rate.max(1),
            start,
            deadline: start + limits.io_timeout,
            received: 0,
        }
    }

    /// Gives the reply, now known to be `len` bytes long, time to arrive at the minimum
    /// rate. Lengths over the caller's limit are refused before any body is read, so
    /// a huge announced length never buys a long wait.
    fn allow(&mut self, len: u64) {
        let transfer = Duration::from_secs_f64(len as f64 / self.min_rate as f64);
        self.deadline = self.start + self.io_timeout + transfer;
    }

    fn too_slow(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "timed out: reply still incomplete after {:.1} s (slower than {} bytes/s)",
                (self.deadline - self.start).as_secs_f64(),
                self.min_rate
            ),
        )
    }
}

impl Read for ReplyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.too_slow());
        }
        self.stream
            .set_read_timeout(Some(left.min(self.io_timeout)))?;
        let mut stream = self.stream;
        match stream.read(buf) {
            Ok(n) => {
                self.received += n as u64;
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                let ms = self.io_timeout.as_millis();
                // Say which limit ran out: no reply at all, a reply that stopped for a
                // whole io_timeout, or one still arriving when its deadline came.
                let why = if self.received == 0 {
                    format!("timed out: no reply within {ms} ms")
                } else if left < self.io_timeout {
                    return Err(self.too_slow());
                } else {
                    format!("timed out: reply stopped, nothing received for {ms} ms")
                };
                Err(io::Error::new(io::ErrorKind::TimedOut, why))
            }
            Err(e) => Err(e),
        }
    }
}

/// Asks the tracker at `addr` for FILE_INFO (step 2). A FILE_INFO labelled with type 5
/// is tolerated with a warning, as the spec allows for one known tracker.
///
/// Retry policy: up to [`TRACKER_ATTEMPTS`] whole exchanges (connect, request, reply),
/// [`TRACKER_BACKOFF`] apart, when the failure may pass: no connection, a timeout, a
/// connection closed or reset before the reply was whole. GET_FILE_INFO changes nothing
/// at the tracker, so asking again is safe. On a lossy LAN a lost SYN or request costs
/// TCP a 1 s retransmission, and two such losses overran a 2 s reply deadline (seen in
/// `tests/lab.rs` with 5% loss, once in a few runs). A reply that is there but wrong (an
/// ERROR, another type, a malformed message) is the tracker's answer and is not asked
/// again.
pub fn get_file_info(
    addr: SocketAddrV4,
    limits: &ClientLimits,
) -> Result<FileInfo, TrackerClientError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match ask_file_info(addr, limits, attempt) {
            Ok(info) => return Ok(info),
            Err((e, Transient::Yes)) if attempt < TRACKER_ATTEMPTS => {
                log::warn!("{e}; asking again");
                thread::sleep(TRACKER_BACKOFF);
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Whether a failed tracker exchange may succeed if tried again.
#[derive(Debug, PartialEq, Eq)]
enum Transient {
    Yes,
    No,
}

/// One GET_FILE_INFO exchange on a new connection.
fn ask_file_info(
    addr: SocketAddrV4,
    limits: &ClientLimits,
    attempt: u32,
) -> Result<FileInfo, (TrackerClientError, Transient)> {
    let stream = connect(addr.into(), limits).map_err(|source| {
        let e = TrackerClientError::Unreachable {
            addr,
            attempts: attempt,
            source,
        };
        (e, Transient::Yes)
    })?;
    let fail = |why: String, transient: Transient| {
        let why = if attempt > 1 {
            format!("{why} (attempt {attempt})")
        } else {
            why
        };
        (TrackerClientError::Exchange { addr, why }, transient)
    };
    // Why a read failed, and whether it is worth asking again: only the stream's own
    // failures (I/O, timeouts, an early close) are; the content of a reply is not.
    let read_fail = |e: ReadError| match e {
        ReadError::Closed => fail(
            "closed the connection without answering".into(),
            Transient::Yes,
        ),
        ReadError::Io(_) => fail(e.to_string(), Transient::Yes),
        ReadError::Frame(_) | ReadError::Message(_) => fail(e.to_string(), Transient::No),
    };
    let req = Message::GetFileInfo
        .encode()
        .expect("GET_FILE_INFO encodes");
    (&stream)
        .write_all(&req)
        .map_err(|e| fail(e.to_string(), Transient::Yes))?;
    let tol = Tolerance {
        file_info_as_chunk_type: true,
    };
    let mut reader = ReplyReader::new(&stream, limits);
    let header = wire::read_header(&mut reader).map_err(read_fail)?;
    reader.allow(header.message_len());
    // read_message reads the header itself: hand it back the 8 bytes already read
    // (reserved bytes are ignored anyway).
    let mut head = [header.version, header.msg_type, 0, 0, 0, 0, 0, 0];
    head[4..].copy_from_slice(&header.length_words.to_be_bytes());
    let mut whole = (&head[..]).chain(&mut reader);
    match wire::read_message(&mut whole, limits.max_file_info_len, tol) {
        Ok(Message::FileInfo(fi)) => Ok(fi),
        Ok(Message::Error(code)) => Err(fail(format!("answered ERROR {code}"), Transient::No)),
        Ok(other) => Err(fail(
            format!("answered {} instead of FILE_INFO", other.msg_type()),
            Transient::No,
        )),
        Err(e) => Err(read_fail(e)),
    }
}

/// A plan from a FILE_INFO (steps 2 and 3): peers are known only by address.
pub fn plan_from_file_info(info: FileInfo) -> Result<Plan, PlanError> {
    check_file_name(&info.filename).map_err(PlanError::from)?;
    if info.chunks.is_empty() {
        return Err(PlanError::NoChunks);
    }
    let mut table = PeerTable::default();
    let mut chunks = Vec::with_capacity(info.chunks.len());
    let mut sources = Vec::with_capacity(info.chunks.len());
    // Counted and reported once: a FILE_INFO can hold millions of peer entries, and a
    // warning each would flood the log.
    let mut unusable: Option<(SocketAddrV4, usize)> = None;
    for c in info.chunks {
        chunks.push(c.hash);
        let mut ids = Vec::new();
        for a in c.peers {
            // 0.0.0.0 or port 0 can never be connected to: skip rather than fail later.
            if a.ip().is_unspecified() || a.port() == 0 {
                unusable.get_or_insert((a, 0)).1 += 1;
                continue;
            }
            let Some(id) = table.id(a.into(), || a.to_string()) else {
                continue; // over MAX_PEERS: into_peers() warns
            };
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        sources.push(ids);
    }
    if let Some((first, n)) = unusable {
        log::warn!("ignoring {n} unusable peer addresses (0.0.0.0 or port 0), such as {first}");
    }
    course_plan(info.filename, &chunks, table, &sources)
}

/// The engine's plan of a course file: SHA-1 digests and no layout (the course's
/// metadata gives no chunk sizes).
fn course_plan(
    filename: String,
    chunks: &[ChunkHash],
    table: PeerTable,
    sources: &[Vec<usize>],
) -> Result<Plan, PlanError> {
    let digests = chunks.iter().map(|&h| Digest::from(h)).collect();
    Ok(Plan::new(filename, digests, None)?.with_sources(table.into_peers(), sources))
}

/// The chunk hashes of a course plan, in file order (its digests are SHA-1).
pub fn chunk_hashes(plan: &Plan) -> Vec<ChunkHash> {
    plan.digests
        .iter()
        .filter_map(|d| d.to_chunk_hash())
        .collect()
}

/// Why step 1's INI files do not make a plan.
#[derive(Debug, thiserror::Error)]
pub enum ManifestPlanError {
    /// file.ini names a peer that peers.ini does not list.
    #[error("file.ini: [chunks_peers] {index}: peer {name:?} is not in peers.ini")]
    UnknownPeer {
        /// The chunk index.
        index: usize,
        /// The name.
        name: String,
    },
    /// The plan itself is unusable.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// A plan from the INI files (step 1): peers keep their names from peers.ini.
pub fn plan_from_manifest(
    manifest: &FileManifest,
    peers: &PeersConfig,
) -> Result<Plan, ManifestPlanError> {
    check_file_name(&manifest.filename).map_err(PlanError::from)?;
    if manifest.chunks.is_empty() {
        return Err(PlanError::NoChunks.into());
    }
    let mut table = PeerTable::default();
    let mut sources = Vec::with_capacity(manifest.chunks.len());
    for (index, c) in manifest.chunks.iter().enumerate() {
        let mut ids = Vec::new();
        for name in &c.peers {
            let addr = peers
                .get(name)
                .ok_or_else(|| ManifestPlanError::UnknownPeer {
                    index,
                    name: name.clone(),
                })?;
            let Some(id) = table.id(addr.into(), || name.clone()) else {
                continue; // over MAX_PEERS: into_peers() warns
            };
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        sources.push(ids);
    }
    let chunks: Vec<ChunkHash> = manifest.chunks.iter().map(|c| c.hash).collect();
    Ok(course_plan(
        manifest.filename.clone(),
        &chunks,
        table,
        &sources,
    )?)
}

/// Connects to course peers over TCP.
#[derive(Debug, Clone, Default)]
pub struct CourseConnector {
    /// Timeouts and limits.
    pub limits: ClientLimits,
}

impl Connector for CourseConnector {
    fn connect(&self, peer: &PeerInfo) -> Result<Connected, FetchError> {
        let stream = connect(peer.addr, &self.limits)?;
        Ok(Connected::new(Box::new(CourseSource {
            stream: Arc::new(stream),
            limits: self.limits,
        })))
    }
}

/// One connection to a course peer. The stream is shared only with its abort handle,
/// which holds a weak reference: the socket closes when the source is dropped, never
/// kept open by a handle (as a `try_clone`d descriptor would keep it).
struct CourseSource {
    stream: Arc<TcpStream>,
    limits: ClientLimits,
}

/// Aborts a [`CourseSource`] from another thread: `shutdown(Both)` wakes a read blocked
/// on the socket at once (it sees end of file) and fails any later write.
struct CourseAbort(Weak<TcpStream>);

impl AbortHandle for CourseAbort {
    fn abort(&self) {
        if let Some(stream) = self.0.upgrade() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl PieceSource for CourseSource {
    fn fetch(&mut self, req: &PieceRequest, buf: &mut Vec<u8>) -> Result<(), FetchError> {
        // A course plan names chunks by SHA-1 (see `course_plan`).
        let Some(hash) = &req.digest.to_chunk_hash() else {
            return Err(FetchError::NotFound);
        };
        // Stop-and-wait: some peers cannot read a second request before answering the
        // first, so the next GET_CHUNK goes out only after this reply is fully read.
        let req = Message::GetChunk(*hash)
            .encode()
            .expect("GET_CHUNK encodes");
        (&*self.stream).write_all(&req)?;
        let mut reader = ReplyReader::new(&self.stream, &self.limits);
        let header = match wire::read_header(&mut reader) {
            Ok(h) => h,
            Err(ReadError::Closed) => {
                return Err(FetchError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Err(e) => return Err(read_failure(e)),
        };
        reader.allow(header.message_len());
        match wire::read_chunk_reply(&mut reader, &header, self.limits.max_chunk_len, buf) {
            Ok(ChunkReply::Chunk(got)) if got == *hash => Ok(()),
            Ok(ChunkReply::Chunk(got)) => Err(FetchError::WrongPiece {
                asked: (*hash).into(),
                got: got.into(),
            }),
            Ok(ChunkReply::Error(ErrorCode::ChunkNotFound)) => Err(FetchError::NotFound),
            Ok(ChunkReply::Error(code)) => Err(FetchError::Refused(Box::new(ErrorReply(code)))),
            Err(e) => Err(read_failure(e)),
        }
    }

    fn abort_handle(&self) -> Option<Box<dyn AbortHandle>> {
        Some(Box::new(CourseAbort(Arc::downgrade(&self.stream))))
    }
}

fn read_failure(e: ReadError) -> FetchError {
    match e {
        ReadError::Io(e) => FetchError::Io(e),
        ReadError::Closed => FetchError::Io(std::io::ErrorKind::UnexpectedEof.into()),
        ReadError::Frame(e) | ReadError::Message(e) => FetchError::Protocol(Box::new(e)),
    }
}

/// A course ERROR reply, as the cause of a refused fetch: `ERROR CHUNK_NOT_FOUND`.
#[derive(Debug, thiserror::Error)]
#[error("ERROR {0}")]
struct ErrorReply(ErrorCode);
