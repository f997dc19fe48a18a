//! Charlie's side of the course protocol: asking the tracker for FILE_INFO, turning it (or
//! the INI files, in step 1) into a download [`Plan`], and fetching chunks from peers for
//! the download engine.

use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::thread;
use std::time::Duration;

use crate::config::{FileManifest, PeersConfig};
use crate::download::plan::PeerTable;
use crate::download::{ChunkSource, Connector, FetchError, PeerInfo, Plan, PlanError};
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
            max_chunk_len: 64 << 20,
            max_file_info_len: 16 << 20,
        }
    }
}

/// Why talking to the tracker failed.
#[derive(Debug, thiserror::Error)]
pub enum TrackerClientError {
    /// No connection could be made after the allowed attempts.
    #[error("tracker {addr} unreachable after {attempts} attempts: {source}")]
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

/// Asks the tracker at `addr` for FILE_INFO (step 2). A FILE_INFO labelled with type 5
/// is tolerated with a warning, as the spec allows for one known tracker.
pub fn get_file_info(
    addr: SocketAddrV4,
    limits: &ClientLimits,
) -> Result<FileInfo, TrackerClientError> {
    let mut attempt = 0;
    let mut stream = loop {
        attempt += 1;
        match connect(addr.into(), limits) {
            Ok(s) => break s,
            Err(source) if attempt >= TRACKER_ATTEMPTS => {
                return Err(TrackerClientError::Unreachable {
                    addr,
                    attempts: attempt,
                    source,
                });
            }
            Err(e) => {
                log::warn!("tracker {addr}: {e}; retrying");
                thread::sleep(TRACKER_BACKOFF);
            }
        }
    };
    let exchange = |why: String| TrackerClientError::Exchange { addr, why };
    let req = Message::GetFileInfo
        .encode()
        .expect("GET_FILE_INFO encodes");
    stream
        .write_all(&req)
        .map_err(|e| exchange(e.to_string()))?;
    let tol = Tolerance {
        file_info_as_chunk_type: true,
    };
    match wire::read_message(&mut stream, limits.max_file_info_len, tol) {
        Ok(Message::FileInfo(fi)) => Ok(fi),
        Ok(Message::Error(code)) => Err(exchange(format!("answered ERROR {code}"))),
        Ok(other) => Err(exchange(format!(
            "answered {} instead of FILE_INFO",
            other.msg_type()
        ))),
        Err(ReadError::Closed) => Err(exchange("closed the connection without answering".into())),
        Err(e) => Err(exchange(e.to_string())),
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
    for c in info.chunks {
        chunks.push(c.hash);
        let mut ids = Vec::new();
        for a in c.peers {
            // 0.0.0.0 or port 0 can never be connected to: skip rather than fail later.
            if a.ip().is_unspecified() || a.port() == 0 {
                log::warn!("ignoring unusable peer address {a} for chunk {}", c.hash);
                continue;
            }
            let id = table.id(a.into(), || a.to_string());
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        sources.push(ids);
    }
    Ok(Plan {
        filename: info.filename,
        chunks,
        sources,
        peers: table.into_peers(),
    })
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
            let id = table.id(addr.into(), || name.clone());
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        sources.push(ids);
    }
    Ok(Plan {
        filename: manifest.filename.clone(),
        chunks: manifest.chunks.iter().map(|c| c.hash).collect(),
        sources,
        peers: table.into_peers(),
    })
}

/// Connects to course peers over TCP.
#[derive(Debug, Clone, Default)]
pub struct CourseConnector {
    /// Timeouts and limits.
    pub limits: ClientLimits,
}

impl Connector for CourseConnector {
    fn connect(&self, peer: &PeerInfo) -> Result<Box<dyn ChunkSource>, FetchError> {
        let stream = connect(peer.addr, &self.limits)?;
        Ok(Box::new(CourseSource {
            stream,
            max_chunk_len: self.limits.max_chunk_len,
        }))
    }
}

/// One connection to a course peer.
struct CourseSource {
    stream: TcpStream,
    max_chunk_len: usize,
}

impl ChunkSource for CourseSource {
    fn fetch(&mut self, hash: &ChunkHash, buf: &mut Vec<u8>) -> Result<(), FetchError> {
        // Stop-and-wait: some peers cannot read a second request before answering the
        // first, so the next GET_CHUNK goes out only after this reply is fully read.
        let req = Message::GetChunk(*hash)
            .encode()
            .expect("GET_CHUNK encodes");
        self.stream.write_all(&req)?;
        let header = match wire::read_header(&mut self.stream) {
            Ok(h) => h,
            Err(ReadError::Closed) => {
                return Err(FetchError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Err(e) => return Err(read_failure(e)),
        };
        match wire::read_chunk_reply(&mut self.stream, &header, self.max_chunk_len, buf) {
            Ok(ChunkReply::Chunk(got)) if got == *hash => Ok(()),
            Ok(ChunkReply::Chunk(got)) => Err(FetchError::Protocol(format!(
                "asked for chunk {hash}, got a CHUNK labelled {got}"
            ))),
            Ok(ChunkReply::Error(ErrorCode::ChunkNotFound)) => Err(FetchError::NotFound),
            Ok(ChunkReply::Error(code)) => Err(FetchError::Refused(format!("ERROR {code}"))),
            Err(e) => Err(read_failure(e)),
        }
    }
}

fn read_failure(e: ReadError) -> FetchError {
    match e {
        ReadError::Io(e) => FetchError::Io(e),
        ReadError::Closed => FetchError::Io(std::io::ErrorKind::UnexpectedEof.into()),
        ReadError::Frame(e) | ReadError::Message(e) => FetchError::Protocol(e.to_string()),
    }
}
