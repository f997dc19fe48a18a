//! The tracker session from the client's side: connect, read the descriptor, register
//! (listen port and mask), then `UPDATE_MASK`, `CLIENT_LIST` and `DISCONNECT!` on the
//! same connection.
//!
//! The tracker connection *is* the membership: the client is listed exactly as long as
//! it is open, so one session lives for the client's whole run. It is shared by `&self`
//! (the download loop sends masks and asks for lists; the main thread sends
//! `DISCONNECT!` on a signal): every request takes one `Mutex` for itself and its reply,
//! so two requests never interleave on the wire and a reply always belongs to the request
//! that holds the lock (the tracker sends nothing unsolicited). Any I/O or framing error
//! breaks the session for good: the stream may be out of step, and the tracker has
//! dropped us anyway.

use std::io::{BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use super::codec::{self, CodecError, Command, Descriptor};
use crate::bitfield::Bitfield;

/// How long the tracker may take to accept. It is one program answering a classroom; 10 s
/// covers a loaded machine while failing a dead address promptly.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long any read of a tracker's reply (the descriptor, a client list) or any blocked
/// write may wait. The tracker answers from memory within milliseconds; 30 s tolerates a
/// tracker busy with a thousand clients and still frees us from a dead one. Between
/// requests nothing is read, so an idle member waits on nothing.
pub const TRACKER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a session request failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The connection failed, closed or timed out.
    #[error("tracker connection: {0}")]
    Io(#[from] std::io::Error),
    /// The tracker sent bytes that are not bvTorrent.
    #[error("tracker sent {0}")]
    Codec(#[from] CodecError),
    /// A mask whose length is not the descriptor's chunk count (our bug, not the
    /// tracker's).
    #[error("a mask of {got} chunks for a file of {want}")]
    MaskLength {
        /// The file's chunks.
        want: usize,
        /// The mask's length.
        got: usize,
    },
    /// The session ended (disconnected, or broken by an earlier error).
    #[error("the tracker session has ended")]
    Ended,
}

/// Another client as a client list names it: where it listens and what it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its listening address.
    pub addr: SocketAddr,
    /// Its chunks.
    pub has: Bitfield,
}

struct Wire {
    r: BufReader<TcpStream>,
    ended: bool,
}

/// One client's membership of a swarm; see the module comment.
pub struct TrackerSession {
    wire: Mutex<Wire>,
    local: SocketAddr,
    chunks: usize,
    /// The port we registered with (0 before registering): our own list entry.
    port: AtomicU16,
}

impl TrackerSession {
    /// Connects to `tracker` and reads its descriptor (bounded, see [`codec`]).
    pub fn connect(tracker: SocketAddr) -> Result<(Self, Descriptor), SessionError> {
        let s = TcpStream::connect_timeout(&tracker, CONNECT_TIMEOUT)?;
        s.set_read_timeout(Some(TRACKER_TIMEOUT))?;
        s.set_write_timeout(Some(TRACKER_TIMEOUT))?;
        s.set_nodelay(true)?;
        let local = s.local_addr()?;
        let mut r = BufReader::new(s);
        let desc = Descriptor::read(&mut r)?;
        let session = TrackerSession {
            wire: Mutex::new(Wire { r, ended: false }),
            local,
            chunks: desc.chunks.len(),
            port: AtomicU16::new(0),
        };
        Ok((session, desc))
    }

    /// Our address on the tracker connection: the ip the tracker lists us under.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Runs one request under the lock; an error ends the session.
    fn request<T>(
        &self,
        f: impl FnOnce(&mut BufReader<TcpStream>) -> Result<T, SessionError>,
    ) -> Result<T, SessionError> {
        let mut w = self.wire.lock().unwrap_or_else(|e| e.into_inner());
        if w.ended {
            return Err(SessionError::Ended);
        }
        let res = f(&mut w.r);
        if res.is_err() {
            w.ended = true;
            let _ = w.r.get_ref().shutdown(std::net::Shutdown::Both);
        }
        res
    }

    fn mask_line(&self, have: &Bitfield) -> Result<Vec<u8>, SessionError> {
        if have.len() != self.chunks {
            return Err(SessionError::MaskLength {
                want: self.chunks,
                got: have.len(),
            });
        }
        let mut line = have.to_mask_string().into_bytes();
        line.push(b'\n');
        Ok(line)
    }

    /// Registers: `<port>,<mask>\n`. `port` is where we accept other clients; the tracker
    /// pairs it with the ip it sees.
    pub fn register(&self, port: u16, have: &Bitfield) -> Result<(), SessionError> {
        let mut line = format!("{port},").into_bytes();
        line.extend_from_slice(&self.mask_line(have)?);
        self.port.store(port, Ordering::Relaxed);
        self.request(|r| Ok(r.get_mut().write_all(&line)?))
    }

    /// `UPDATE_MASK\n` and the whole new mask, in one write.
    pub fn update_mask(&self, have: &Bitfield) -> Result<(), SessionError> {
        let mut msg = Command::UpdateMask.bytes().to_vec();
        msg.extend_from_slice(&self.mask_line(have)?);
        self.request(|r| Ok(r.get_mut().write_all(&msg)?))
    }

    /// `CLIENT_LIST\n`, then the list, without the entries no one can download from: port
    /// 0 (a client that registered before it listened), our own entry, and addresses that
    /// are not an ip (entries with a bad mask are already dropped by the codec).
    pub fn client_list(&self) -> Result<Vec<Holder>, SessionError> {
        let entries = self.request(|r| {
            r.get_mut().write_all(Command::ClientList.bytes())?;
            Ok(codec::read_client_list(r, self.chunks)?)
        })?;
        let me = self.port.load(Ordering::Relaxed);
        Ok(entries
            .into_iter()
            .filter(|e| e.port != 0)
            .filter_map(|e| {
                let ip: IpAddr = e.ip.parse().ok()?;
                let addr = SocketAddr::new(ip, e.port);
                if ip == self.local.ip() && e.port == me {
                    return None;
                }
                let has = Bitfield::from_bools(e.mask.iter().map(|&b| b == b'1'));
                Some(Holder { addr, has })
            })
            .collect())
    }

    /// `DISCONNECT!\n`, then closes: the tracker forgets us. Later requests fail with
    /// [`SessionError::Ended`]; a second disconnect is a no-op.
    pub fn disconnect(&self) -> Result<(), SessionError> {
        let mut w = self.wire.lock().unwrap_or_else(|e| e.into_inner());
        if w.ended {
            return Ok(());
        }
        w.ended = true;
        let sent = w.r.get_mut().write_all(Command::Disconnect.bytes());
        let _ = w.r.get_ref().shutdown(std::net::Shutdown::Both);
        Ok(sent?)
    }
}
