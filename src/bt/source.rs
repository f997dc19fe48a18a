//! BitTorrent as a piece source of the shared download engine: [`BtConnector`] gives the
//! engine a [`Conn`] (one it dials, or one a peer opened to us and the listener holds),
//! and [`BtSource`] fetches one whole piece per call over it, its 16 KiB blocks
//! pipelined inside the call; the pieces a peer announces reach the engine through
//! [`PieceSource::news`]. The connection keeps uploading whatever the source does.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::bt::conn::{self, Conn};
use crate::bt::fetch::Timeouts;
use crate::bt::peers::Swarm;
use crate::download::{
    AbortHandle, Connected, Connector, FetchError, PeerInfo, PieceRequest, PieceSource,
};

/// Gives the engine connections to the peers of one torrent.
pub struct BtConnector {
    swarm: Arc<Swarm>,
    timeouts: Timeouts,
    /// Our own listening address: a tracker lists us too, and dialling ourselves wastes a
    /// connection (the peer-id check would catch it, one handshake later).
    ourselves: Option<SocketAddr>,
}

impl BtConnector {
    /// A connector for the connections of `swarm`.
    pub fn new(swarm: Arc<Swarm>, timeouts: Timeouts) -> Self {
        BtConnector {
            swarm,
            timeouts,
            ourselves: None,
        }
    }

    /// Skips `addr` (our own listener) when a peer list names it.
    pub fn skip(mut self, addr: SocketAddr) -> Self {
        self.ourselves = Some(addr);
        self
    }
}

fn refused(why: &'static str) -> FetchError {
    FetchError::Io(io::Error::new(io::ErrorKind::AlreadyExists, why))
}

impl Connector for BtConnector {
    fn connect(&self, peer: &PeerInfo) -> Result<Connected, FetchError> {
        if Some(peer.addr) == self.ourselves {
            return Err(FetchError::Io(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "our own address",
            )));
        }
        // A connection the peer opened to us, or one already open to it (the engine
        // asking again after dropping the peer for a while), rather than a second one.
        let conn = match self
            .swarm
            .take_pending(peer.addr)
            .or_else(|| self.swarm.connection_to(peer.addr))
        {
            Some(c) => c,
            None => conn::dial(&self.swarm, peer.addr, &self.timeouts)?,
        };
        if !conn.take_download() {
            return Err(refused("another download source uses this connection"));
        }
        let has = conn.has_now();
        conn.update_interest();
        Ok(Connected {
            source: Box::new(BtSource {
                conn,
                swarm: self.swarm.clone(),
                timeouts: self.timeouts,
            }),
            has: Some(has),
        })
    }
}

/// The download side of one connection, as the engine's piece source.
pub struct BtSource {
    conn: Arc<Conn>,
    swarm: Arc<Swarm>,
    timeouts: Timeouts,
}

impl PieceSource for BtSource {
    fn fetch(&mut self, req: &PieceRequest, buf: &mut Vec<u8>) -> Result<(), FetchError> {
        if req.index >= self.swarm.layout.piece_count() {
            return Err(FetchError::NotFound);
        }
        // The .torrent's length wins over the engine's hint: they agree by construction.
        let len = self.swarm.layout.piece_len(req.index);
        let r = self.conn.fetch(req.index, len, buf, &self.timeouts);
        if let Err(e) = &r
            && e.breaks_connection()
        {
            // The engine replaces a broken connection: this one must not stay behind as
            // a duplicate of the next.
            self.conn.close();
        }
        r
    }

    fn idle(&mut self) -> Result<(), FetchError> {
        if self.conn.is_closed() {
            return Err(FetchError::Io(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the connection closed",
            )));
        }
        Ok(())
    }

    fn news(&mut self, out: &mut Vec<usize>) {
        self.conn.take_news(out);
    }

    fn abort_handle(&self) -> Option<Box<dyn AbortHandle>> {
        Some(Box::new(self.conn.abort_handle()))
    }
}

impl Drop for BtSource {
    fn drop(&mut self) {
        self.conn.release_download();
    }
}
