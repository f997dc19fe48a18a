//! The client side of BitTorrent trackers: one announce to one tracker, over HTTP(S)
//! (BEP 3, BEP 23 compact peers, BEP 7 `peers6`) or UDP (BEP 15), and the `announce-list`
//! tiers (BEP 12) that pick which tracker to ask.
//!
//! Synchronous and bounded: every request has named timeouts, every reply a size limit,
//! every retry loop a count. The coming client's announce thread calls [`Tiers::announce`]
//! with [`announce`] as the per-tracker function, and schedules the next round from
//! [`AnnounceResponse::next_announce`].

pub mod http;
pub mod tiers;
pub mod udp;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

pub use tiers::Tiers;

/// The event an announce reports (BEP 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Event {
    /// A regular re-announce.
    #[default]
    None,
    /// The first announce of a download.
    Started,
    /// The download just completed (not sent when starting complete).
    Completed,
    /// The client is leaving the swarm.
    Stopped,
}

impl Event {
    /// The HTTP `event` value; `None` for a regular announce (the key is left out).
    pub fn http_name(self) -> Option<&'static str> {
        match self {
            Event::None => None,
            Event::Started => Some("started"),
            Event::Completed => Some("completed"),
            Event::Stopped => Some("stopped"),
        }
    }

    /// The BEP 15 event code.
    pub fn udp_code(self) -> u32 {
        match self {
            Event::None => 0,
            Event::Completed => 1,
            Event::Started => 2,
            Event::Stopped => 3,
        }
    }
}

/// What one announce tells a tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// The torrent's infohash.
    pub info_hash: [u8; 20],
    /// Our peer id.
    pub peer_id: [u8; 20],
    /// The port we accept peers on.
    pub port: u16,
    /// Bytes uploaded since `started`.
    pub uploaded: u64,
    /// Bytes downloaded since `started`.
    pub downloaded: u64,
    /// Bytes still missing.
    pub left: u64,
    /// The event, if any.
    pub event: Event,
    /// How many peers we want; `None` lets the tracker choose.
    pub numwant: Option<u32>,
    /// A random number fixed for the session, so a tracker recognises us across IP changes.
    pub key: u32,
    /// The `tracker id` the tracker gave in an earlier reply (BEP 3, HTTP only).
    pub tracker_id: Option<Vec<u8>>,
}

/// What a tracker answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// The tracker's re-announce interval.
    pub interval: Duration,
    /// The shortest interval the tracker accepts, if it said.
    pub min_interval: Option<Duration>,
    /// Peers, as the tracker listed them: ours may be among them, and several per IP
    /// with different ports (the caller skips itself and never dedupes by IP alone).
    pub peers: Vec<SocketAddr>,
    /// Seeders in the swarm, if the tracker said.
    pub seeders: Option<u32>,
    /// Leechers in the swarm, if the tracker said.
    pub leechers: Option<u32>,
    /// The tracker's `warning message`, shown to the user; the reply is still valid.
    pub warning: Option<String>,
    /// A `tracker id` to send back on the next announce.
    pub tracker_id: Option<Vec<u8>>,
}

/// The shortest wait between two announces, whatever a tracker says: an `interval` of 0
/// from a broken tracker must not make the announce thread spin.
pub const MIN_REANNOUNCE: Duration = Duration::from_secs(30);
/// The longest wait: a tracker asking for days would leave us without fresh peers.
pub const MAX_REANNOUNCE: Duration = Duration::from_secs(2 * 60 * 60);
/// The longest text kept of a tracker's `failure reason` or `warning message`: it goes to
/// a log line, not to a file.
pub const MAX_TRACKER_TEXT: usize = 512;

impl AnnounceResponse {
    /// When to announce again: the tracker's interval (at least its `min interval`),
    /// kept within [`MIN_REANNOUNCE`]..=[`MAX_REANNOUNCE`].
    pub fn next_announce(&self) -> Duration {
        let wanted = self.interval.max(self.min_interval.unwrap_or_default());
        wanted.clamp(MIN_REANNOUNCE, MAX_REANNOUNCE)
    }
}

/// Bytes of one compact IPv4 peer: address, port.
pub const COMPACT_V4_LEN: usize = 6;
/// Bytes of one compact IPv6 peer: address, port.
pub const COMPACT_V6_LEN: usize = 18;

/// A compact peer list whose length is not a multiple of its record size.
///
/// We refuse the whole list rather than drop the tail: a list cut mid-record means the
/// reply was damaged or misread, and its other records are then not to be trusted either.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("compact peer list of {len} bytes is not a multiple of {record}")]
pub struct CompactError {
    /// Bytes in the list.
    pub len: usize,
    /// The record size (6 or 18).
    pub record: usize,
}

/// Parses a compact IPv4 peer list (BEP 23): 4 address bytes and 2 port bytes per peer.
pub fn parse_compact_v4(b: &[u8]) -> Result<Vec<SocketAddr>, CompactError> {
    if !b.len().is_multiple_of(COMPACT_V4_LEN) {
        return Err(CompactError {
            len: b.len(),
            record: COMPACT_V4_LEN,
        });
    }
    Ok(b.chunks_exact(COMPACT_V4_LEN)
        .map(|c| {
            let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
            SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be_bytes([c[4], c[5]])))
        })
        .collect())
}

/// Parses a compact IPv6 peer list (BEP 7 `peers6`): 16 address bytes and 2 port bytes.
pub fn parse_compact_v6(b: &[u8]) -> Result<Vec<SocketAddr>, CompactError> {
    if !b.len().is_multiple_of(COMPACT_V6_LEN) {
        return Err(CompactError {
            len: b.len(),
            record: COMPACT_V6_LEN,
        });
    }
    Ok(b.chunks_exact(COMPACT_V6_LEN)
        .map(|c| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&c[..16]);
            let port = u16::from_be_bytes([c[16], c[17]]);
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(a), port, 0, 0))
        })
        .collect())
}

/// Encodes peers in the compact form (the inverse of the parsers; for tests and servers).
pub fn encode_compact(peers: &[SocketAddr]) -> (Vec<u8>, Vec<u8>) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for p in peers {
        match p {
            SocketAddr::V4(a) => {
                v4.extend_from_slice(&a.ip().octets());
                v4.extend_from_slice(&a.port().to_be_bytes());
            }
            SocketAddr::V6(a) => {
                v6.extend_from_slice(&a.ip().octets());
                v6.extend_from_slice(&a.port().to_be_bytes());
            }
        }
    }
    (v4, v6)
}

/// Why an announce to one tracker failed.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    /// The URL's scheme is none of `http`, `https` and `udp`.
    #[error("unsupported tracker URL scheme in {url:?}")]
    UnsupportedScheme {
        /// The URL.
        url: String,
    },
    /// The UDP announce failed.
    #[error(transparent)]
    Udp(#[from] udp::UdpError),
    /// The HTTP announce failed.
    #[error(transparent)]
    Http(#[from] http::HttpError),
}

/// Announces to one tracker by its URL, `udp://` (BEP 15) or `http://` / `https://`
/// (BEP 3; TLS by rustls), with the default timeouts: the one function
/// [`Tiers::announce`] needs for every scheme ([`Tiers::announce_request`] calls it).
pub fn announce(url: &str, req: &AnnounceRequest) -> Result<AnnounceResponse, AnnounceError> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("udp://") {
        Ok(udp::announce_url(url, req, &udp::UdpConfig::default())?)
    } else if lower.starts_with("http://") || lower.starts_with("https://") {
        Ok(http::announce_url(url, req)?)
    } else {
        Err(AnnounceError::UnsupportedScheme {
            url: url.chars().take(MAX_TRACKER_TEXT).collect(),
        })
    }
}

/// Keeps at most [`MAX_TRACKER_TEXT`] bytes of a tracker's text (a character cut at the
/// end, or any invalid UTF-8, shows as U+FFFD). Control characters show as U+FFFD too:
/// the text goes into a log line, where a newline would let the tracker forge log lines
/// of its own and an escape sequence would reach the user's terminal.
pub(crate) fn tracker_text(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(MAX_TRACKER_TEXT)])
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// A random number for transaction ids and keys, from the standard library's randomly
/// keyed SipHash (no extra crate; an outsider cannot predict it, which is all a
/// transaction id needs to resist spoofed replies).
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// See [`random_u64`].
pub(crate) fn random_u32() -> u32 {
    random_u64() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_round_trip_and_odd_lengths() {
        let peers: Vec<SocketAddr> = vec![
            "127.0.0.1:6881".parse().unwrap(),
            "10.1.2.3:1".parse().unwrap(),
            "[::1]:51413".parse().unwrap(),
        ];
        let (v4, v6) = encode_compact(&peers);
        assert_eq!(v4, [127, 0, 0, 1, 0x1A, 0xE1, 10, 1, 2, 3, 0, 1]);
        assert_eq!(v6.len(), 18);
        assert_eq!(parse_compact_v4(&v4).unwrap(), peers[..2]);
        assert_eq!(parse_compact_v6(&v6).unwrap(), peers[2..]);
        assert_eq!(
            parse_compact_v4(&v4[..7]),
            Err(CompactError { len: 7, record: 6 })
        );
        assert_eq!(
            parse_compact_v6(&v6[..17]),
            Err(CompactError {
                len: 17,
                record: 18
            })
        );
        assert_eq!(parse_compact_v4(&[]).unwrap(), vec![]);
    }

    #[test]
    fn next_announce_is_clamped() {
        let mut r = AnnounceResponse {
            interval: Duration::ZERO,
            min_interval: None,
            peers: vec![],
            seeders: None,
            leechers: None,
            warning: None,
            tracker_id: None,
        };
        assert_eq!(r.next_announce(), MIN_REANNOUNCE);
        r.interval = Duration::from_secs(1800);
        assert_eq!(r.next_announce(), Duration::from_secs(1800));
        r.min_interval = Some(Duration::from_secs(2400));
        assert_eq!(r.next_announce(), Duration::from_secs(2400));
        r.interval = Duration::from_secs(u32::MAX.into());
        assert_eq!(r.next_announce(), MAX_REANNOUNCE);
    }

    #[test]
    fn event_codes() {
        assert_eq!(Event::None.http_name(), None);
        assert_eq!(Event::Started.http_name(), Some("started"));
        assert_eq!(
            [
                Event::None,
                Event::Completed,
                Event::Started,
                Event::Stopped
            ]
            .map(Event::udp_code),
            [0, 1, 2, 3]
        );
    }

    #[test]
    fn unknown_scheme() {
        let req = AnnounceRequest {
            info_hash: [0; 20],
            peer_id: [0; 20],
            port: 1,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: Event::None,
            numwant: None,
            key: 0,
            tracker_id: None,
        };
        assert!(matches!(
            announce("wss://127.0.0.1/announce", &req),
            Err(AnnounceError::UnsupportedScheme { .. })
        ));
    }
}
