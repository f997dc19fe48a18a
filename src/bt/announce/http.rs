//! The HTTP announce (BEP 3, BEP 23 compact peers, BEP 7 `peers6`): builds the query,
//! fetches it with ureq (blocking, bounded) and parses the bencoded reply.
//!
//! [`build_url`] and [`parse_reply`] know no sockets; [`announce_url`] is the fetch.

use std::time::Duration;

use super::{
    AnnounceRequest, AnnounceResponse, CompactError, MAX_TRACKER_TEXT, parse_compact_v4,
    parse_compact_v6, tracker_text,
};
use crate::bt::bencode::{self, Limits};

/// Whole-request deadline: a tracker that has not answered in 15 s is down or
/// overloaded; the tiers (BEP 12) then try the next one.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Connect deadline, shorter: an unreachable tracker is found out fast.
pub const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Redirects followed: trackers that move say so once or twice; more is a loop.
pub const MAX_REDIRECTS: u32 = 3;

/// Largest reply body read: 200 compact peers are 1.2 KB and a dictionary list of them
/// under 20 KB; 256 KiB leaves room for odd trackers and stops a hostile one.
pub const MAX_REPLY: u64 = 256 * 1024;

/// Why an HTTP announce failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request could not be made or the reply not read (connect, timeout, status,
    /// too many redirects, body over [`MAX_REPLY`]).
    #[error("http tracker request failed")]
    Transport(#[source] Box<ureq::Error>),
    /// The reply is not bencode within our limits.
    #[error("tracker reply is not bencode")]
    NotBencode(#[source] bencode::DecodeError),
    /// The reply is bencode but not a dictionary, or a field has the wrong type.
    #[error("tracker reply is malformed: {0}")]
    Malformed(&'static str),
    /// The tracker refused: its `failure reason`.
    #[error("tracker refused: {0}")]
    Failure(String),
    /// A compact peer list cut mid-record.
    #[error(transparent)]
    Compact(#[from] CompactError),
}

fn pct(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The announce URL: `base` (the tracker's announce URL, which may already carry a
/// query) with the BEP 3 parameters appended, raw bytes percent-encoded.
pub fn build_url(base: &str, req: &AnnounceRequest) -> String {
    let mut u = String::with_capacity(base.len() + 256);
    u.push_str(base);
    u.push(if base.contains('?') { '&' } else { '?' });
    u.push_str("info_hash=");
    pct(&mut u, &req.info_hash);
    u.push_str("&peer_id=");
    pct(&mut u, &req.peer_id);
    u.push_str(&format!(
        "&port={}&uploaded={}&downloaded={}&left={}&compact=1&key={:08x}",
        req.port, req.uploaded, req.downloaded, req.left, req.key
    ));
    if let Some(e) = req.event.http_name() {
        u.push_str("&event=");
        u.push_str(e);
    }
    if let Some(n) = req.numwant {
        u.push_str(&format!("&numwant={n}"));
    }
    if let Some(id) = &req.tracker_id {
        u.push_str("&trackerid=");
        pct(&mut u, id);
    }
    u
}

fn secs(n: &bencode::Node<'_>) -> Result<Duration, HttpError> {
    n.as_int()
        .and_then(|i| u64::try_from(i).ok())
        .map(Duration::from_secs)
        .ok_or(HttpError::Malformed(
            "interval is not a non-negative integer",
        ))
}

fn count(d: &bencode::Node<'_>, key: &[u8]) -> Option<u32> {
    d.get(key)
        .and_then(|n| n.as_int())
        .and_then(|i| u32::try_from(i).ok())
}

/// Parses a bencoded announce reply: `failure reason`, or interval and peers (compact
/// string or list of dictionaries; `peers6`).
pub fn parse_reply(body: &[u8]) -> Result<AnnounceResponse, HttpError> {
    let root = bencode::decode_with(body, Limits::default()).map_err(HttpError::NotBencode)?;
    if root.as_dict().is_none() {
        return Err(HttpError::Malformed("reply is not a dictionary"));
    }
    if let Some(f) = root.get(b"failure reason") {
        let text = f.as_bytes().unwrap_or(b"(not a string)");
        return Err(HttpError::Failure(tracker_text(text)));
    }
    let interval = secs(
        root.get(b"interval")
            .ok_or(HttpError::Malformed("no interval"))?,
    )?;
    let min_interval = match root.get(b"min interval") {
        Some(n) => Some(secs(n)?),
        None => None,
    };
    let mut peers = Vec::new();
    match root.get(b"peers") {
        None => {}
        Some(p) => {
            if let Some(b) = p.as_bytes() {
                peers = parse_compact_v4(b)?;
            } else if let Some(list) = p.as_list() {
                for entry in list {
                    let ip = entry
                        .get(b"ip")
                        .and_then(|n| n.as_bytes())
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .and_then(|s| s.parse::<std::net::IpAddr>().ok());
                    let port = entry
                        .get(b"port")
                        .and_then(|n| n.as_int())
                        .and_then(|i| u16::try_from(i).ok());
                    // A hostname or a bad port in one entry: skip it, keep the others
                    // (BEP 3 allows DNS names, which we do not resolve per peer).
                    if let (Some(ip), Some(port)) = (ip, port) {
                        peers.push(std::net::SocketAddr::new(ip, port));
                    }
                }
            } else {
                return Err(HttpError::Malformed("peers is neither a string nor a list"));
            }
        }
    }
    if let Some(p6) = root.get(b"peers6").and_then(|n| n.as_bytes()) {
        peers.extend(parse_compact_v6(p6)?);
    }
    Ok(AnnounceResponse {
        interval,
        min_interval,
        peers,
        seeders: count(&root, b"complete"),
        leechers: count(&root, b"incomplete"),
        warning: root
            .get(b"warning message")
            .and_then(|n| n.as_bytes())
            .map(tracker_text),
        tracker_id: root
            .get(b"tracker id")
            .and_then(|n| n.as_bytes())
            .map(|b| b[..b.len().min(MAX_TRACKER_TEXT)].to_vec()),
    })
}

/// Announces to the HTTP tracker at `url` and parses its reply.
pub fn announce_url(url: &str, req: &AnnounceRequest) -> Result<AnnounceResponse, HttpError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(HTTP_TIMEOUT))
        .timeout_connect(Some(HTTP_CONNECT_TIMEOUT))
        .max_redirects(MAX_REDIRECTS)
        .http_status_as_error(true)
        .user_agent(concat!("swarmlet/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let transport = |e| HttpError::Transport(Box::new(e));
    let mut reply = agent.get(&build_url(url, req)).call().map_err(transport)?;
    let body = reply
        .body_mut()
        .with_config()
        .limit(MAX_REPLY)
        .read_to_vec()
        .map_err(transport)?;
    parse_reply(&body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bt::announce::Event;

    fn req() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: [0xab; 20],
            peer_id: *b"-SW0001-abcdefghijkl",
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: Event::Started,
            numwant: Some(50),
            key: 0xdead_beef,
            tracker_id: None,
        }
    }

    #[test]
    fn url_has_every_field_encoded() {
        let u = build_url("http://t/announce", &req());
        assert!(u.starts_with("http://t/announce?info_hash=%AB%AB"), "{u}");
        assert!(u.contains("&peer_id=-SW0001-abcdefghijkl&port=6881&uploaded=1&downloaded=2&left=3&compact=1&key=deadbeef&event=started&numwant=50"), "{u}");
        assert!(build_url("http://t/a?x=1", &req()).starts_with("http://t/a?x=1&info_hash="));
    }

    #[test]
    fn replies_parse_and_bad_ones_are_refused() {
        let r = parse_reply(
            b"d8:completei1e10:incompletei2e8:intervali900e5:peers6:\x7f\x00\x00\x01\x1a\xe1e",
        )
        .unwrap();
        assert_eq!(r.interval, Duration::from_secs(900));
        assert_eq!(r.peers, vec!["127.0.0.1:6881".parse().unwrap()]);
        assert_eq!((r.seeders, r.leechers), (Some(1), Some(2)));
        let r = parse_reply(
            b"d8:intervali60e5:peersld2:ip8:10.0.0.14:porti80eed2:ip4:host4:porti1eeee",
        )
        .unwrap();
        assert_eq!(r.peers, vec!["10.0.0.1:80".parse().unwrap()]);
        assert!(matches!(
            parse_reply(b"d14:failure reason4:nopee"),
            Err(HttpError::Failure(s)) if s == "nope"
        ));
        assert!(matches!(
            parse_reply(b"d8:intervali60e5:peers7:1234567e"),
            Err(HttpError::Compact(_))
        ));
        assert!(matches!(parse_reply(b"i3e"), Err(HttpError::Malformed(_))));
        assert!(matches!(
            parse_reply(b"d5:peers0:e"),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            parse_reply(b"<html>"),
            Err(HttpError::NotBencode(_))
        ));
    }
}
