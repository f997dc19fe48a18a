//! The bvTorrent tracker: sends the descriptor, records each client's mask, answers
//! CLIENT_LIST. The tracker connection *is* the membership: a client is listed exactly as
//! long as its connection lasts.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// The tracker's state, shared by all connection threads.
pub struct TrackerService {
    descriptor: Vec<u8>,
    chunks: usize,
    members: Mutex<Vec<Member>>,
    next_owner: AtomicU64,
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
}

impl TrackerService {
    /// A tracker for `desc`.
    pub fn new(desc: &Descriptor) -> Self {
        TrackerService {
            descriptor: desc.encode(),
            chunks: desc.chunks.len(),
            members: Mutex::new(Vec::new()),
            next_owner: AtomicU64::new(0),
        }
    }

    fn members(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn session(&self, conn: &Connection, owner: u64) -> Result<(), SessionEnd> {
        let mut out = &conn.stream;
        out.write_all(&self.descriptor)?;
        let mut r = BlockReader::new(&conn.stream);
        let line = r.line(self.chunks + 8)?;
        let (port, mask) = codec::parse_registration(&line, self.chunks)?;
        let ip = conn.peer.ip().to_string();
        {
            let mut m = self.members();
            m.retain(|x| !(x.entry.ip == ip && x.entry.port == port));
            m.push(Member {
                entry: ClientEntry {
                    ip: ip.clone(),
                    port,
                    mask,
                },
                owner,
            });
        }
        log::info!("bv-tracker: registered {ip}:{port} from {}", conn.peer);
        loop {
            let block = r.exact(codec::COMMAND_LEN)?;
            match Command::parse(&block) {
                Some(Command::UpdateMask) => {
                    let mask = parse_mask_update(r.exact(self.chunks + 1)?, self.chunks)?;
                    if let Some(x) = self.members().iter_mut().find(|x| x.owner == owner) {
                        x.entry.mask = mask;
                    }
                }
                Some(Command::ClientList) => {
                    let reply = {
                        let m = self.members();
                        codec::encode_client_list(
                            m.iter().map(|x| &x.entry).collect::<Vec<_>>().into_iter(),
                        )
                    };
                    out.write_all(&reply)?;
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
        self.members().retain(|x| x.owner != owner);
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
