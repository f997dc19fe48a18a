//! The UDP tracker protocol (BEP 15), client side: connect, announce, scrape.
//!
//! One [`UdpTracker`] talks to one tracker from one socket. It keeps the connection id
//! for its one-minute life and connects again after; it retransmits with the BEP's
//! doubling timeout (`base · 2^n`), over at most [`UdpConfig::max_tries`] sends per call,
//! so every call ends within `base · (2^tries - 1)` plus the time to resolve the host.
//! A datagram from another address, too short to hold a transaction id, or with another
//! transaction id is ignored (it may be a late answer to an earlier send, or a spoof).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use super::{
    AnnounceRequest, AnnounceResponse, CompactError, parse_compact_v4, parse_compact_v6,
    random_u32, tracker_text,
};

/// The magic constant that opens a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
/// How long a connection id may be used, client side (BEP 15: one minute).
pub const CONNECTION_ID_LIFE: Duration = Duration::from_secs(60);
/// BEP 15's first timeout; it doubles with every retransmission.
pub const DEFAULT_BASE_TIMEOUT: Duration = Duration::from_secs(15);
/// Sends per call by default. BEP 15 allows 9 (n = 0..=8, an hour at the last step); we
/// stop after 4 (15 + 30 + 60 + 120 s) so a dead tracker does not hold the announce
/// thread for hours while other trackers of the tier could answer.
pub const DEFAULT_MAX_TRIES: u32 = 4;
/// The most info hashes in one scrape (BEP 15: about 74 fit a safe datagram).
pub const MAX_SCRAPE_HASHES: usize = 74;
/// Receive buffer: the largest UDP payload, so a long peer list is never cut short
/// (a cut list would not be a whole number of records).
const MAX_DATAGRAM: usize = 65_507;

const ACTION_CONNECT: u32 = 0;
const ACTION_ANNOUNCE: u32 = 1;
const ACTION_SCRAPE: u32 = 2;
const ACTION_ERROR: u32 = 3;

/// Retransmission settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpConfig {
    /// The first timeout (`15 s` per BEP 15; tests use milliseconds).
    pub base_timeout: Duration,
    /// Sends per call, connects included, before [`UdpError::Timeout`].
    pub max_tries: u32,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            base_timeout: DEFAULT_BASE_TIMEOUT,
            max_tries: DEFAULT_MAX_TRIES,
        }
    }
}

/// Why a UDP tracker call failed.
#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    /// The URL is not `udp://host:port[/...]`.
    #[error("not a udp://host:port tracker URL")]
    BadUrl,
    /// The host did not resolve.
    #[error("tracker host did not resolve: {0}")]
    Resolve(io::Error),
    /// The socket failed.
    #[error("udp socket: {0}")]
    Io(#[from] io::Error),
    /// No matching reply after every retransmission.
    #[error("no reply from the tracker after {}", crate::text::count(*tries, "try", "tries"))]
    Timeout {
        /// Sends made.
        tries: u32,
    },
    /// The tracker answered with an error (action 3) and this text.
    #[error("tracker error: {0}")]
    Tracker(String),
    /// A reply with our transaction id but another action.
    #[error("tracker replied with action {got}, expected {want}")]
    UnexpectedAction {
        /// The action we asked.
        want: u32,
        /// The action received.
        got: u32,
    },
    /// A reply too short for its action.
    #[error("reply to action {action} is {len} bytes, too short")]
    Short {
        /// The action.
        action: u32,
        /// Bytes received.
        len: usize,
    },
    /// The peer list is not a whole number of records.
    #[error(transparent)]
    Compact(#[from] CompactError),
    /// A scrape of no hashes or of more than [`MAX_SCRAPE_HASHES`].
    #[error("cannot scrape {0} info hashes in one request (1..={MAX_SCRAPE_HASHES})")]
    ScrapeCount(usize),
    /// A scrape reply that does not have one entry per hash asked.
    #[error("scrape reply has {got} entries for {want} hashes")]
    ScrapeEntries {
        /// Hashes asked.
        want: usize,
        /// Entries received.
        got: usize,
    },
}

/// One torrent's counts from a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrapeEntry {
    /// Peers with the whole torrent.
    pub seeders: u32,
    /// Downloads completed, ever.
    pub completed: u32,
    /// Peers without the whole torrent.
    pub leechers: u32,
}

/// The `host:port` of a `udp://host:port/...` URL.
pub fn host_port(url: &str) -> Result<&str, UdpError> {
    let rest = url
        .get(..6)
        .filter(|s| s.eq_ignore_ascii_case("udp://"))
        .map(|_| &url[6..])
        .ok_or(UdpError::BadUrl)?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let hp = &rest[..end];
    // A port is required: BEP 15 has no default one.
    match hp.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok(hp),
        _ => Err(UdpError::BadUrl),
    }
}

/// Resolves a `udp://` URL and announces once with a fresh client (what [`super::announce`]
/// does for a UDP tracker).
pub fn announce_url(
    url: &str,
    req: &AnnounceRequest,
    config: &UdpConfig,
) -> Result<AnnounceResponse, UdpError> {
    let addr = host_port(url)?
        .to_socket_addrs()
        .map_err(UdpError::Resolve)?
        .next()
        .ok_or_else(|| UdpError::Resolve(io::ErrorKind::NotFound.into()))?;
    UdpTracker::new(addr, *config)?.announce(req)
}

/// Parses an announce reply (action 1, transaction id already matched): interval,
/// leechers, seeders, then compact peers of the tracker's address family (`v6`).
/// Sans-IO, so that the fuzz and property tests reach it with arbitrary bytes.
pub fn parse_announce_reply(reply: &[u8], v6: bool) -> Result<AnnounceResponse, UdpError> {
    if reply.len() < 20 {
        return Err(UdpError::Short {
            action: ACTION_ANNOUNCE,
            len: reply.len(),
        });
    }
    let be = |i: usize| u32::from_be_bytes([reply[i], reply[i + 1], reply[i + 2], reply[i + 3]]);
    let peers = if v6 {
        parse_compact_v6(&reply[20..])?
    } else {
        parse_compact_v4(&reply[20..])?
    };
    Ok(AnnounceResponse {
        interval: Duration::from_secs(be(8).into()),
        min_interval: None,
        peers,
        leechers: Some(be(12)),
        seeders: Some(be(16)),
        warning: None,
        tracker_id: None,
    })
}

/// Parses a scrape reply (action 2, transaction id already matched) for `want` hashes:
/// exactly one 12-byte entry per hash. Sans-IO, like [`parse_announce_reply`]; a reply
/// shorter than its 8-byte head is [`UdpError::Short`].
pub fn parse_scrape_reply(reply: &[u8], want: usize) -> Result<Vec<ScrapeEntry>, UdpError> {
    let entries = reply.get(8..).ok_or(UdpError::Short {
        action: ACTION_SCRAPE,
        len: reply.len(),
    })?;
    if Some(entries.len()) != want.checked_mul(12) {
        return Err(UdpError::ScrapeEntries {
            want,
            got: entries.len() / 12,
        });
    }
    Ok(entries
        .chunks_exact(12)
        .map(|c| {
            let be = |i: usize| u32::from_be_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
            ScrapeEntry {
                seeders: be(0),
                completed: be(4),
                leechers: be(8),
            }
        })
        .collect())
}

/// A client of one UDP tracker.
pub struct UdpTracker {
    socket: UdpSocket,
    tracker: SocketAddr,
    config: UdpConfig,
    connection: Option<(u64, Instant)>,
    buf: Vec<u8>,
}

impl UdpTracker {
    /// A client bound to an ephemeral port of the tracker's address family.
    pub fn new(tracker: SocketAddr, config: UdpConfig) -> Result<UdpTracker, UdpError> {
        let local: SocketAddr = match tracker {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local)?;
        Ok(UdpTracker {
            socket,
            tracker,
            config,
            connection: None,
            buf: vec![0u8; MAX_DATAGRAM],
        })
    }

    /// The tracker's address.
    pub fn tracker(&self) -> SocketAddr {
        self.tracker
    }

    /// The connection id in use, if one is still fresh.
    pub fn connection_id(&self) -> Option<u64> {
        self.connection
            .filter(|(_, at)| at.elapsed() < CONNECTION_ID_LIFE)
            .map(|(id, _)| id)
    }

    /// Announces; connects first unless a connection id is still fresh.
    pub fn announce(&mut self, req: &AnnounceRequest) -> Result<AnnounceResponse, UdpError> {
        let mut body = Vec::with_capacity(82);
        body.extend_from_slice(&req.info_hash);
        body.extend_from_slice(&req.peer_id);
        body.extend_from_slice(&req.downloaded.to_be_bytes());
        body.extend_from_slice(&req.left.to_be_bytes());
        body.extend_from_slice(&req.uploaded.to_be_bytes());
        body.extend_from_slice(&req.event.udp_code().to_be_bytes());
        body.extend_from_slice(&0u32.to_be_bytes()); // ip: the sender's address
        body.extend_from_slice(&req.key.to_be_bytes());
        // num_want: -1 is "the tracker's default"; a count is capped to fit the i32.
        let numwant = req.numwant.map_or(-1, |n| n.min(i32::MAX as u32) as i32);
        body.extend_from_slice(&numwant.to_be_bytes());
        body.extend_from_slice(&req.port.to_be_bytes());
        let reply = self.call(ACTION_ANNOUNCE, &body)?;
        parse_announce_reply(&reply, self.tracker.is_ipv6())
    }

    /// Scrapes up to [`MAX_SCRAPE_HASHES`] torrents; one entry per hash, in order.
    pub fn scrape(&mut self, hashes: &[[u8; 20]]) -> Result<Vec<ScrapeEntry>, UdpError> {
        if hashes.is_empty() || hashes.len() > MAX_SCRAPE_HASHES {
            return Err(UdpError::ScrapeCount(hashes.len()));
        }
        let body = hashes.concat();
        let reply = self.call(ACTION_SCRAPE, &body)?;
        parse_scrape_reply(&reply, hashes.len())
    }

    /// Sends `action` with `body` after a connection id (connecting when needed) and
    /// returns the matching reply, whole. The try counter `n` runs across the connect
    /// and the request, as BEP 15 says.
    fn call(&mut self, action: u32, body: &[u8]) -> Result<Vec<u8>, UdpError> {
        let mut n = 0;
        loop {
            let conn = match self.connection_id() {
                Some(id) => id,
                None => {
                    let reply = self
                        .exchange(
                            &PROTOCOL_ID.to_be_bytes(),
                            ACTION_CONNECT,
                            &[],
                            &mut n,
                            false,
                        )?
                        .ok_or(UdpError::Timeout { tries: n })?;
                    if reply.len() < 16 {
                        return Err(UdpError::Short {
                            action: ACTION_CONNECT,
                            len: reply.len(),
                        });
                    }
                    let mut id = [0u8; 8];
                    id.copy_from_slice(&reply[8..16]);
                    let id = u64::from_be_bytes(id);
                    self.connection = Some((id, Instant::now()));
                    id
                }
            };
            match self.exchange(&conn.to_be_bytes(), action, body, &mut n, true)? {
                Some(reply) => return Ok(reply),
                // The connection id aged out while we retransmitted: connect again.
                None => self.connection = None,
            }
        }
    }

    /// Sends `head`, `action`, a fresh transaction id and `body` until the matching reply
    /// comes or the tries run out. With `needs_connection`, gives up with `None` as soon
    /// as the connection id is no longer fresh (it must not be sent stale).
    fn exchange(
        &mut self,
        head: &[u8],
        action: u32,
        body: &[u8],
        n: &mut u32,
        needs_connection: bool,
    ) -> Result<Option<Vec<u8>>, UdpError> {
        let mut req = Vec::with_capacity(head.len() + 8 + body.len());
        req.extend_from_slice(head);
        req.extend_from_slice(&action.to_be_bytes());
        let tid_at = req.len();
        req.extend_from_slice(&[0; 4]);
        req.extend_from_slice(body);
        loop {
            if needs_connection && self.connection_id().is_none() {
                return Ok(None);
            }
            if *n >= self.config.max_tries {
                return Err(UdpError::Timeout { tries: *n });
            }
            let tid = random_u32();
            req[tid_at..tid_at + 4].copy_from_slice(&tid.to_be_bytes());
            if let Some(reply) = self.send_and_wait(&req, action, tid, n)? {
                return Ok(Some(reply));
            }
        }
    }

    /// One send, then waits `base · 2^n` for the reply with transaction id `tid`;
    /// `None` on timeout (and `n` is one more).
    fn send_and_wait(
        &mut self,
        req: &[u8],
        action: u32,
        tid: u32,
        n: &mut u32,
    ) -> Result<Option<Vec<u8>>, UdpError> {
        self.socket.send_to(req, self.tracker)?;
        let wait = self
            .config
            .base_timeout
            .saturating_mul(1u32.checked_shl(*n).unwrap_or(u32::MAX));
        *n += 1;
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.socket.set_read_timeout(Some(left))?;
            let (len, from) = match self.socket.recv_from(&mut self.buf) {
                Ok(got) => got,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                // An ICMP "port unreachable" for an earlier send: keep waiting, the
                // retransmission schedule decides when to give up.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            let d = &self.buf[..len];
            if from != self.tracker || len < 8 {
                continue;
            }
            let got_action = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
            let got_tid = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
            if got_tid != tid {
                continue;
            }
            if got_action == ACTION_ERROR {
                return Err(UdpError::Tracker(tracker_text(&d[8..])));
            }
            if got_action != action {
                return Err(UdpError::UnexpectedAction {
                    want: action,
                    got: got_action,
                });
            }
            return Ok(Some(d.to_vec()));
        }
    }
}
