//! The bvTorrent tracker: sends the descriptor, records each client's mask, answers
//! CLIENT_LIST. The tracker connection *is* the membership: a client is listed exactly as
//! long as its connection lasts.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::codec::{self, ClientEntry, Command, Descriptor};
use crate::server::{Connection, Handler, Limits};

/// Once a line or command has begun, the rest must arrive within this: a 12-byte command
/// or a mask needs microseconds; 10 s defeats a client trickling bytes while tolerating a
/// very slow link. Waiting for the *first* byte has no limit: an idle member is legitimate.
pub const BEGUN_TIMEOUT: Duration = Duration::from_secs(10);

/// Most clients at once. Each costs one thread and one connection for as long as it is a
/// member; 1,000 covers any classroom swarm while bounding threads (1,000 × 256 KiB stacks
/// of address space) and the client list's size.
pub const MAX_CLIENTS: usize = 1000;

/// Most bytes of encoded client lists alive at once, all members together. A list is
/// members × (chunks + ~25) bytes (1 MB for 1,000 members of a 1 GiB file in 1 MiB
/// chunks), and a member that asks and never reads holds its reply for the write timeout:
/// 990 such members once took the tracker to 1 GB. Lists are encoded once per change of
/// the swarm and shared by every member that asks meanwhile; a new one is encoded only
/// while the lists alive stay under this, otherwise the asker waits (up to
/// [`BEGUN_TIMEOUT`], then its session ends). 64 MiB is 64 versions of that 1 MB list.
pub const MAX_LIST_BYTES_ALIVE: usize = 64 * 1024 * 1024;

/// How often a member waiting for list memory looks again: a blocked reply frees its
/// bytes when its write ends, and 10 ms is nothing next to the 10 s it may wait.
const LIST_WAIT_POLL: Duration = Duration::from_millis(10);

/// The server limits of the tracker: no idle timeout (see [`BEGUN_TIMEOUT`]).
pub fn limits() -> Limits {
    Limits {
        max_connections: MAX_CLIENTS,
        idle_timeout: Duration::from_secs(365 * 24 * 3600),
        request_timeout: BEGUN_TIMEOUT,
        write_timeout: Duration::from_secs(30),
    }
}

struct Member {
    entry: ClientEntry,
    /// Which connection owns the entry: a re-registration of the same ip:port replaces
    /// it, and the old connection closing must not remove the new one.
    owner: u64,
}

/// An encoded client list, shared by the members that asked while it was current; its
/// bytes count against [`MAX_LIST_BYTES_ALIVE`] until the last of them is done with it.
struct ListReply {
    bytes: Vec<u8>,
    alive: Arc<AtomicUsize>,
}

impl Drop for ListReply {
    fn drop(&mut self) {
        self.alive.fetch_sub(self.bytes.len(), Ordering::SeqCst);
    }
}

/// The members and the list encoded from them (dropped at every change).
#[derive(Default)]
struct Swarm {
    members: Vec<Member>,
    list: Option<Arc<ListReply>>,
}

/// The tracker's state, shared by all connection threads.
pub struct TrackerService {
    descriptor: Vec<u8>,
    chunks: usize,
    swarm: Mutex<Swarm>,
    next_owner: AtomicU64,
    /// Bytes of [`ListReply`]s alive.
    list_bytes: Arc<AtomicUsize>,
}

/// Why a session ended (logged, never sent).
#[derive(Debug, thiserror::Error)]
pub enum SessionEnd {
    /// Closed, timed out or broken.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// Bad registration, mask or command.
    #[error("{0}")]
    Codec(#[from] codec::CodecError),
    /// A 12-byte block that is no command (e.g. `DISCONNECT\n` and more).
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// Client lists alive filled [`MAX_LIST_BYTES_ALIVE`] for [`BEGUN_TIMEOUT`].
    #[error("no memory for a client list within {BEGUN_TIMEOUT:?}")]
    ListsBusy,
}

impl TrackerService {
    /// A tracker for `desc`.
    pub fn new(desc: &Descriptor) -> Self {
        TrackerService {
            descriptor: desc.encode(),
            chunks: desc.chunks.len(),
            swarm: Mutex::new(Swarm::default()),
            next_owner: AtomicU64::new(0),
            list_bytes: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn swarm(&self) -> std::sync::MutexGuard<'_, Swarm> {
        self.swarm.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the members (and so drops the encoded list).
    fn change<T>(&self, f: impl FnOnce(&mut Vec<Member>) -> T) -> T {
        let mut s = self.swarm();
        s.list = None;
        f(&mut s.members)
    }

    /// The current client list, encoded once per change of the swarm; see
    /// [`MAX_LIST_BYTES_ALIVE`].
    fn client_list(&self) -> Result<Arc<ListReply>, SessionEnd> {
        let end = Instant::now() + BEGUN_TIMEOUT;
        loop {
            {
                let mut s = self.swarm();
                if let Some(l) = &s.list {
                    return Ok(l.clone());
                }
                let len: usize = s.members.iter().map(|m| m.entry.mask.len() + 64).sum();
                let alive = self.list_bytes.load(Ordering::SeqCst);
                // Always room for one list, however large.
                if alive == 0 || alive + len <= MAX_LIST_BYTES_ALIVE {
                    let bytes = codec::encode_client_list(
                        s.members
                            .iter()
                            .map(|x| &x.entry)
                            .collect::<Vec<_>>()
                            .into_iter(),
                    );
                    self.list_bytes.fetch_add(bytes.len(), Ordering::SeqCst);
                    let l = Arc::new(ListReply {
                        bytes,
                        alive: self.list_bytes.clone(),
                    });
                    s.list = Some(l.clone());
                    return Ok(l);
                }
            }
            if Instant::now() >= end {
                return Err(SessionEnd::ListsBusy);
            }
            std::thread::sleep(LIST_WAIT_POLL);
        }
    }

    fn session(&self, conn: &Connection, owner: u64) -> Result<(), SessionEnd> {
        let mut out = &conn.stream;
        out.write_all(&self.descriptor)?;
        let mut r = BlockReader::new(&conn.stream);
        let line = r.line(self.chunks + 8)?;
        let (port, mask) = codec::parse_registration(&line, self.chunks)?;
        let ip = conn.peer.ip().to_string();
        self.change(|m| {
            m.retain(|x| !(x.entry.ip == ip && x.entry.port == port));
            m.push(Member {
                entry: ClientEntry {
                    ip: ip.clone(),
                    port,
                    mask,
                },
                owner,
            });
        });
        log::info!("bv-tracker: registered {ip}:{port} from {}", conn.peer);
        loop {
            let block = r.exact(codec::COMMAND_LEN)?;
            match Command::parse(&block) {
                Some(Command::UpdateMask) => {
                    let mask = parse_mask_update(r.exact(self.chunks + 1)?, self.chunks)?;
                    self.change(|m| {
                        if let Some(x) = m.iter_mut().find(|x| x.owner == owner) {
                            x.entry.mask = mask;
                        }
                    });
                }
                Some(Command::ClientList) => {
                    let reply = self.client_list()?;
                    out.write_all(&reply.bytes)?;
                }
                Some(Command::Disconnect) => return Ok(()),
                None => {
                    return Err(SessionEnd::UnknownCommand(
                        String::from_utf8_lossy(&block).into_owned(),
                    ));
                }
            }
        }
    }
}

/// The mask line after `UPDATE_MASK\n`: exactly `chunks` characters `0`/`1` and `\n`
/// (the tracker reads `chunks + 1` bytes). Sans-IO, so the fuzz and property tests reach
/// it with arbitrary bytes.
pub fn parse_mask_update(mut line: Vec<u8>, chunks: usize) -> Result<Vec<u8>, codec::CodecError> {
    if line.pop() != Some(b'\n') {
        return Err(codec::CodecError::BadMask);
    }
    codec::check_mask(&line, chunks)?;
    Ok(line)
}

impl Handler for TrackerService {
    fn handle(&self, conn: Connection) -> io::Result<()> {
        let owner = self.next_owner.fetch_add(1, Ordering::Relaxed);
        let res = self.session(&conn, owner);
        self.change(|m| m.retain(|x| x.owner != owner));
        match res {
            Ok(()) => Ok(()),
            Err(SessionEnd::Io(e)) => Err(e),
            Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
    }
}

/// Reads blocks and lines: no timeout before the first byte, [`BEGUN_TIMEOUT`] for the rest.
struct BlockReader<'a> {
    s: &'a TcpStream,
    buf: Vec<u8>,
}

impl<'a> BlockReader<'a> {
    fn new(s: &'a TcpStream) -> Self {
        BlockReader { s, buf: Vec::new() }
    }
    fn fill(&mut self) -> io::Result<()> {
        let t = if self.buf.is_empty() {
            None
        } else {
            Some(BEGUN_TIMEOUT)
        };
        self.s.set_read_timeout(t)?;
        let mut tmp = [0u8; 4096];
        let n = (&*self.s).read(&mut tmp)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(())
    }
    fn exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill()?;
        }
        let rest = self.buf.split_off(n);
        Ok(std::mem::replace(&mut self.buf, rest))
    }
    fn line(&mut self, max: usize) -> Result<Vec<u8>, SessionEnd> {
        loop {
            if let Some(p) = self.buf.iter().position(|&b| b == b'\n') {
                let rest = self.buf.split_off(p + 1);
                let mut l = std::mem::replace(&mut self.buf, rest);
                l.pop();
                return Ok(l);
            }
            if self.buf.len() > max {
                return Err(codec::CodecError::LineTooLong(max).into());
            }
            self.fill()?;
        }
    }
}
