//! The course peer (Alice, Bob, or any peer named in peers.ini): answers GET_CHUNK from
//! its chunk directory, streaming each chunk from the file to the socket.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use crate::course::{send_error, serve_requests};
use crate::hash::ChunkHash;
use crate::server::{Connection, Handler};
use crate::store::ChunkStore;
use crate::wire::{self, ErrorCode, Message};

/// Serves the chunks in one directory.
pub struct PeerService {
    name: String,
    store: ChunkStore,
}

impl PeerService {
    /// A peer called `name` serving what `store`'s directory holds at each request.
    pub fn new(name: &str, store: ChunkStore) -> Self {
        PeerService {
            name: name.to_string(),
            store,
        }
    }

    fn send_chunk(&self, out: &mut &TcpStream, hash: &ChunkHash) -> io::Result<()> {
        // The directory is the truth, now: a chunk deleted since start is not found.
        let Some((file, len)) = self.store.open(hash)? else {
            log::info!(
                "{}: chunk {hash} not found: sending CHUNK_NOT_FOUND",
                self.name
            );
            return send_error(out, ErrorCode::ChunkNotFound);
        };
        let Ok(prefix) = wire::chunk_prefix(hash, len) else {
            log::warn!(
                "{}: chunk {hash} is {len} bytes, too big for a CHUNK",
                self.name
            );
            return send_error(out, ErrorCode::ChunkNotFound);
        };
        out.write_all(&prefix)?;
        // `io::copy` from a File into a TcpStream uses sendfile(2) on Linux: the content
        // never passes through user space, and no chunk is ever held in memory.
        let sent = io::copy(&mut file.take(len), out)?;
        if sent != len {
            // The file shrank under us: the stream is now out of step, so close it.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("chunk {hash} shrank while being sent ({sent} of {len} bytes)"),
            ));
        }
        out.write_all(&[0u8; 3][..wire::padding(len as usize)])?;
        log::debug!("{}: sent chunk {hash} ({len} bytes)", self.name);
        Ok(())
    }
}

impl Handler for PeerService {
    fn handle(&self, conn: Connection) -> io::Result<()> {
        serve_requests(&conn, &self.name, |msg, out| match msg {
            Message::GetChunk(hash) => self.send_chunk(out, &hash),
            other => {
                log::info!(
                    "{}: {}: {} is not a peer request: sending INVALID_REQUEST",
                    self.name,
                    conn.peer,
                    other.msg_type()
                );
                send_error(out, ErrorCode::InvalidRequest)
            }
        })
    }
}

/// Arguments of a peer program (`alice`, `bob`, or `peer --name NAME`).
#[derive(Debug, Clone, clap::Args)]
pub struct PeerArgs {
    /// The root directory.
    #[command(flatten)]
    pub root: crate::cli::RootArg,
    /// Where to listen and the limits.
    #[command(flatten)]
    pub server: crate::cli::ServerArgs,
}

/// Runs peer `name`: listens where peers.ini (or `--bind`/`--port`) says and serves
/// `chunks/<name>/` until killed.
pub fn run(name: &str, args: &PeerArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let root = args.root.root();
    let peers = crate::config::PeersConfig::load(&root.peers_ini())?;
    let configured = peers.require(name, &root.peers_ini())?;
    let addr = args.server.addr(configured);
    let store = ChunkStore::new(root.chunks_dir(name));
    let server = crate::server::Server::bind(addr, args.server.limits(), name)
        .with_context(|| format!("{name}: cannot listen on {addr}"))?;
    // Logged only once the port is ours, so a failed bind never follows a "serving".
    let chunks = store.list().map(|l| l.len()).unwrap_or(0);
    log::info!(
        "{name}: serving {} ({} now)",
        crate::root::display_path(store.dir()),
        crate::text::count(chunks, "chunk", "chunks")
    );
    server.run(std::sync::Arc::new(PeerService::new(name, store)))?;
    Ok(())
}
