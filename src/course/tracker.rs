//! The course tracker's TCP service: answers GET_FILE_INFO with the FILE_INFO built once,
//! at start, from file.ini and peers.ini. The tracker program also runs the UDP
//! discovery responder of [`crate::course::tracker_udp`] on its own thread.

use std::io::{self, Write};
use std::net::SocketAddrV4;

use crate::config::{FileManifest, PeersConfig};
use crate::course::tracker_udp::{DEFAULT_TRACKER_NAME, DISCOVERY_PORT, UdpResponder};
use crate::course::{send_error, serve_requests};
use crate::server::{Connection, Handler};
use crate::wire::{ChunkRecord, EncodeError, ErrorCode, FileInfo, Message};

/// Why a tracker cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// file.ini names a peer that peers.ini does not list.
    #[error("file.ini: [chunks_peers] {index}: peer {name:?} is not in peers.ini")]
    UnknownPeer {
        /// The chunk index.
        index: usize,
        /// The unknown name.
        name: String,
    },
    /// The file cannot be described in one FILE_INFO (too many chunks, name too long).
    #[error("file.ini cannot be sent as FILE_INFO: {0}")]
    Encode(#[from] EncodeError),
}

/// Builds the FILE_INFO for a manifest, resolving peer names through peers.ini.
pub fn file_info(manifest: &FileManifest, peers: &PeersConfig) -> Result<FileInfo, TrackerError> {
    let mut chunks = Vec::with_capacity(manifest.chunks.len());
    for (index, c) in manifest.chunks.iter().enumerate() {
        let addrs = c
            .peers
            .iter()
            .map(|name| {
                peers.get(name).ok_or_else(|| TrackerError::UnknownPeer {
                    index,
                    name: name.clone(),
                })
            })
            .collect::<Result<Vec<SocketAddrV4>, _>>()?;
        chunks.push(ChunkRecord {
            hash: c.hash,
            peers: addrs,
        });
    }
    Ok(FileInfo {
        filename: manifest.filename.clone(),
        chunks,
    })
}

/// Answers GET_FILE_INFO with bytes encoded once at start (the tracker's data never
/// changes while it runs, so no request pays for encoding).
pub struct TrackerService {
    reply: Vec<u8>,
}

impl TrackerService {
    /// A tracker serving `info`.
    pub fn new(info: &FileInfo) -> Result<Self, TrackerError> {
        Ok(TrackerService {
            reply: Message::FileInfo(info.clone()).encode()?,
        })
    }
}

impl Handler for TrackerService {
    fn handle(&self, conn: Connection) -> io::Result<()> {
        serve_requests(&conn, "tracker", |msg, out| match msg {
            Message::GetFileInfo => {
                log::debug!("tracker: {}: sending FILE_INFO", conn.peer);
                out.write_all(&self.reply)
            }
            other => {
                log::info!(
                    "tracker: {}: {} is not a tracker request: sending INVALID_REQUEST",
                    conn.peer,
                    other.msg_type()
                );
                send_error(out, ErrorCode::InvalidRequest)
            }
        })
    }
}

/// Arguments of the tracker program.
#[derive(Debug, Clone, clap::Args)]
pub struct TrackerArgs {
    /// The root directory.
    #[command(flatten)]
    pub root: crate::cli::RootArg,
    /// Where to listen (TCP) and the limits.
    #[command(flatten)]
    pub server: crate::cli::ServerArgs,
    /// The name announced in TRACKER_INFO (another group's Charlie only accepts
    /// "tracker")
    #[arg(long, default_value = DEFAULT_TRACKER_NAME)]
    pub name: String,
    /// UDP port on which DISCOVER_TRACKER is answered (on every address of the host)
    #[arg(long, value_name = "PORT", default_value_t = DISCOVERY_PORT)]
    pub udp_port: u16,
    /// Do not answer DISCOVER_TRACKER at all (TCP only: steps 1 and 2)
    #[arg(long)]
    pub no_udp: bool,
}

/// Runs the tracker: reads both INI files, then serves FILE_INFO until killed.
pub fn run(args: &TrackerArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let root = args.root.root();
    let peers = PeersConfig::load(&root.peers_ini())?;
    // peers.ini is checked whole before file.ini is read: an empty peers.ini is the
    // first thing to fix, and file.ini's peer names mean nothing without it.
    let addr = args.server.addr(peers.tracker(&root.peers_ini())?);
    let manifest = FileManifest::load(&root.file_ini())?;
    let info = file_info(&manifest, &peers)?;
    let service = TrackerService::new(&info)?;
    // The UDP socket is bound before the TCP listener: once the tracker accepts
    // connections, it also hears DISCOVER_TRACKER. Always on 0.0.0.0: a socket bound to
    // one address never sees broadcasts.
    let udp = if args.no_udp {
        log::info!("tracker: not answering DISCOVER_TRACKER (--no-udp)");
        None
    } else {
        let at = SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, args.udp_port);
        Some(UdpResponder::bind_socket(at)?)
    };
    let server = crate::server::Server::bind(addr, args.server.limits(), "tracker")
        .with_context(|| format!("tracker: cannot listen on {addr}"))?;
    // Logged only once both sockets are bound, so a failed bind never follows a "serving".
    log::info!(
        "tracker: serving {} ({}, {})",
        info.filename,
        crate::text::count(info.chunks.len(), "chunk", "chunks"),
        crate::text::count(peers.peers().count(), "peer", "peers")
    );
    if let Some(socket) = udp {
        // Announce the port really bound (it differs from `addr` after --port 0); the IP
        // stays as configured, and 0.0.0.0 is resolved per asker by the responder.
        let port = match server.local_addr()? {
            std::net::SocketAddr::V4(a) => a.port(),
            std::net::SocketAddr::V6(a) => a.port(),
        };
        let tcp = SocketAddrV4::new(*addr.ip(), port);
        let responder = UdpResponder::new(socket, tcp, &args.name)?;
        std::thread::Builder::new()
            .name("tracker-udp".into())
            .spawn(move || responder.run())
            .context("tracker: cannot start the UDP thread")?;
    }
    server.run(std::sync::Arc::new(service))?;
    Ok(())
}
