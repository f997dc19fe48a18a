//! The listener of a torrent: accepts the connections peers open to us (at most
//! [`Swarm::max_peers`] at once, in and out together) on [`crate::server::Server`]'s
//! accept loop, and runs the choker. Each accepted connection's thread becomes that
//! connection's reader ([`crate::bt::conn::accept`]); the connection uploads what we
//! have and, while a download runs, is offered to the engine as a download source.
//!
//! What the peer must respect, else it is dropped: the infohash of the torrent we serve,
//! the handshake's plaintext opening (an MSE opening is closed at once, so a client that
//! falls back to plaintext does so promptly), `request`s of pieces we have, within the
//! piece, of 1..=16 KiB, and only while unchoked (see `crate::bt::conn`).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

pub use crate::bt::peers::Swarm as Seeder;
use crate::server::{self, Connection, Handler, Server};

/// Connections the accept loop serves at once beyond `--max-peers`: a handshake in
/// progress is not a peer yet, and the swarm refuses the excess once it is one.
pub const HANDSHAKE_SLACK: usize = 8;

/// The server limits of a listener for `swarm`. The timeouts are the connection's own
/// (see `crate::bt::conn`); these are only the socket's defaults until it sets them.
pub fn server_limits(max_peers: usize) -> server::Limits {
    server::Limits {
        max_connections: max_peers + HANDSHAKE_SLACK,
        idle_timeout: crate::bt::conn::TICK,
        request_timeout: crate::bt::conn::MESSAGE_DEADLINE,
        write_timeout: crate::bt::conn::WRITE_TIMEOUT,
    }
}

/// Binds the listener (`addr` may have port 0) for a swarm of at most `max_peers`
/// connections. Serve with [`serve`].
pub fn bind(addr: impl ToSocketAddrs, max_peers: usize) -> io::Result<Server> {
    Server::bind(addr, server_limits(max_peers), "bt")
}

/// Serves `swarm` on `server` for ever (one thread per connection).
pub fn serve(server: Server, swarm: Arc<Seeder>) -> io::Result<()> {
    server.run(Arc::new(Accept(swarm)))
}

/// Binds, serves on a thread of its own and starts the choker; returns the bound
/// address. The threads run until the process ends (tests, and `swarmlet`, which exits
/// on a signal) or the swarm is closed (the choker).
pub fn spawn(addr: impl ToSocketAddrs, swarm: Arc<Seeder>) -> io::Result<SocketAddr> {
    let server = bind(addr, swarm.max_peers())?;
    let local = server.local_addr()?;
    let s = swarm.clone();
    std::thread::Builder::new()
        .name("bt-accept".into())
        .spawn(move || {
            if let Err(e) = serve(server, s) {
                log::error!("bt: accept loop failed: {e}");
            }
        })?;
    std::thread::Builder::new()
        .name("bt-choker".into())
        .spawn(move || crate::bt::choker::run(swarm))?;
    Ok(local)
}

struct Accept(Arc<Seeder>);

impl Handler for Accept {
    fn handle(&self, conn: Connection) -> io::Result<()> {
        crate::bt::conn::accept(&self.0, conn.stream, conn.peer).map_err(|e| match e {
            crate::bt::conn::ConnError::Wire(crate::bt::peer_wire::ReadError::Io(e)) => e,
            e => io::Error::new(io::ErrorKind::InvalidData, e),
        })
    }
}
