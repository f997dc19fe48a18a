//! BitTorrent as a piece source of the shared download engine: [`BtConnector`] opens a
//! [`PeerConnection`] (handshake, bitfield, interested, unchoke) and [`BtSource`] fetches
//! one whole piece per call, its 16 KiB blocks pipelined inside the call; the pieces a
//! peer announces by `have` reach the engine through [`PieceSource::news`].

use std::net::SocketAddr;

use crate::bt::fetch::{PeerConnection, Timeouts};
use crate::bt::metainfo::InfoHash;
use crate::bt::peer_wire::PeerId;
use crate::download::{
    AbortHandle, Connected, Connector, FetchError, PeerInfo, PieceRequest, PieceSource,
};
use crate::layout::Layout;

/// Opens download connections to the peers of one torrent.
pub struct BtConnector {
    info_hash: InfoHash,
    our_id: PeerId,
    layout: Layout,
    timeouts: Timeouts,
    /// Our own listening address: a tracker lists us too, and dialling ourselves wastes a
    /// connection (the peer-id check would catch it, one handshake later).
    ourselves: Option<SocketAddr>,
}

impl BtConnector {
    /// A connector for the torrent `info_hash` with pieces as in `layout`, speaking as
    /// `our_id`.
    pub fn new(info_hash: InfoHash, our_id: PeerId, layout: Layout, timeouts: Timeouts) -> Self {
        BtConnector {
            info_hash,
            our_id,
            layout,
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

impl Connector for BtConnector {
    fn connect(&self, peer: &PeerInfo) -> Result<Connected, FetchError> {
        if Some(peer.addr) == self.ourselves {
            return Err(FetchError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "our own address",
            )));
        }
        let (conn, has) = PeerConnection::connect(
            peer.addr,
            self.info_hash,
            self.our_id,
            self.layout.piece_count(),
            &self.timeouts,
        )?;
        Ok(Connected {
            source: Box::new(BtSource {
                conn,
                piece_lens: self.layout.clone(),
                news: Vec::new(),
            }),
            has: Some(has),
        })
    }
}

/// One download connection as the engine's piece source.
pub struct BtSource {
    conn: PeerConnection,
    piece_lens: Layout,
    /// Pieces announced by `have` since the engine last asked.
    news: Vec<usize>,
}

impl PieceSource for BtSource {
    fn fetch(&mut self, req: &PieceRequest, buf: &mut Vec<u8>) -> Result<(), FetchError> {
        if req.index >= self.piece_lens.piece_count() {
            return Err(FetchError::NotFound);
        }
        // The .torrent's length wins over the engine's hint: they agree by construction.
        let len = self.piece_lens.piece_len(req.index);
        let news = &mut self.news;
        self.conn
            .fetch_piece(req.index, len, buf, &mut |i| news.push(i))
    }

    fn idle(&mut self) -> Result<(), FetchError> {
        let news = &mut self.news;
        self.conn.idle(&mut |i| news.push(i))
    }

    fn news(&mut self, out: &mut Vec<usize>) {
        out.append(&mut self.news);
    }

    fn abort_handle(&self) -> Option<Box<dyn AbortHandle>> {
        Some(Box::new(self.conn.abort_handle()))
    }
}
