//! Parsing an HTTP announce or scrape query (`a=b&c=d`, percent-encoded bytes) into the
//! request both front ends hand to the [`Tracker`](super::Tracker).

use super::{DEFAULT_NUMWANT, InfoHash, PeerId};

/// Most `info_hash` values in one HTTP scrape: keeps one request's work bounded (each is a
/// lock and a lookup) and its reply under 10 KB.
pub const MAX_SCRAPE_HASHES: usize = 100;

/// Most `key=value` pairs looked at in one query: real clients send about 15; a query of
/// thousands of tiny pairs is cut off instead of parsed.
pub const MAX_PARAMS: usize = 64;

/// What an announce event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A regular re-announce (no `event`, or `event=empty`).
    None,
    /// The client starts.
    Started,
    /// The client finished downloading.
    Completed,
    /// The client leaves the swarm.
    Stopped,
}

/// One announce, from HTTP or UDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The client.
    pub peer_id: PeerId,
    /// The port it listens on.
    pub port: u16,
    /// Bytes uploaded so far (reported, not used).
    pub uploaded: u64,
    /// Bytes downloaded so far (reported, not used).
    pub downloaded: u64,
    /// Bytes still missing: 0 means a seeder.
    pub left: u64,
    /// The event.
    pub event: Event,
    /// Peers wanted (capped by the tracker).
    pub numwant: usize,
    /// BEP 23 compact reply (the default).
    pub compact: bool,
    /// Leave peer ids out of a dictionary reply.
    pub no_peer_id: bool,
}

/// Why a query is refused; the message is the `failure reason` clients show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A `%` not followed by two hex digits.
    #[error("bad percent-encoding")]
    BadPercent,
    /// A required field is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// info_hash or peer_id is not 20 bytes.
    #[error("{0} must be 20 bytes")]
    WrongLength(&'static str),
    /// A number field is not a number (or is out of range).
    #[error("bad {0}")]
    BadNumber(&'static str),
    /// Port 0.
    #[error("bad port")]
    BadPort,
    /// An unknown event.
    #[error("bad event")]
    BadEvent,
    /// More than [`MAX_SCRAPE_HASHES`] info_hash values.
    #[error("too many info_hash values")]
    TooManyHashes,
    /// More than [`MAX_PARAMS`] pairs.
    #[error("too many parameters")]
    TooManyParams,
}

/// A query's decoded `key=value` pairs, in order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Decodes `%XX` escapes and `+` (a space, as forms send it).
pub fn percent_decode(s: &[u8]) -> Result<Vec<u8>, QueryError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                let (Some(&h), Some(&l)) = (s.get(i + 1), s.get(i + 2)) else {
                    return Err(QueryError::BadPercent);
                };
                let (Some(h), Some(l)) = (hex(h), hex(l)) else {
                    return Err(QueryError::BadPercent);
                };
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Splits a query into decoded pairs.
pub fn parse_query(q: &[u8]) -> Result<Pairs, QueryError> {
    let mut out = Vec::new();
    for pair in q.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        if out.len() >= MAX_PARAMS {
            return Err(QueryError::TooManyParams);
        }
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        out.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(out)
}

fn get<'a>(pairs: &'a [(Vec<u8>, Vec<u8>)], key: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(k, _)| k == key.as_bytes())
        .map(|(_, v)| v.as_slice())
}

fn twenty(v: &[u8], name: &'static str) -> Result<[u8; 20], QueryError> {
    v.try_into().map_err(|_| QueryError::WrongLength(name))
}

fn number(pairs: &[(Vec<u8>, Vec<u8>)], key: &'static str) -> Result<Option<u64>, QueryError> {
    match get(pairs, key) {
        None => Ok(None),
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map(Some)
            .ok_or(QueryError::BadNumber(key)),
    }
}

fn flag(pairs: &[(Vec<u8>, Vec<u8>)], key: &'static str) -> Option<bool> {
    get(pairs, key).map(|v| v != b"0")
}

/// Parses an announce query (the part after `?`).
pub fn parse_announce(query: &[u8]) -> Result<Announce, QueryError> {
    let pairs = parse_query(query)?;
    let info_hash = twenty(
        get(&pairs, "info_hash").ok_or(QueryError::Missing("info_hash"))?,
        "info_hash",
    )?;
    let peer_id = twenty(
        get(&pairs, "peer_id").ok_or(QueryError::Missing("peer_id"))?,
        "peer_id",
    )?;
    let port = number(&pairs, "port")?.ok_or(QueryError::Missing("port"))?;
    let port = u16::try_from(port)
        .ok()
        .filter(|&p| p != 0)
        .ok_or(QueryError::BadPort)?;
    let event = match get(&pairs, "event") {
        None | Some(b"") | Some(b"empty") => Event::None,
        Some(b"started") => Event::Started,
        Some(b"completed") => Event::Completed,
        Some(b"stopped") => Event::Stopped,
        Some(_) => return Err(QueryError::BadEvent),
    };
    Ok(Announce {
        info_hash: InfoHash(info_hash),
        peer_id: PeerId(peer_id),
        port,
        uploaded: number(&pairs, "uploaded")?.unwrap_or(0),
        downloaded: number(&pairs, "downloaded")?.unwrap_or(0),
        left: number(&pairs, "left")?.ok_or(QueryError::Missing("left"))?,
        event,
        numwant: number(&pairs, "numwant")?
            .map(|n| n.min(usize::MAX as u64) as usize)
            .unwrap_or(DEFAULT_NUMWANT),
        compact: flag(&pairs, "compact").unwrap_or(true),
        no_peer_id: flag(&pairs, "no_peer_id").unwrap_or(false),
    })
}

/// Parses a scrape query: one or several `info_hash`.
pub fn parse_scrape(query: &[u8]) -> Result<Vec<InfoHash>, QueryError> {
    let pairs = parse_query(query)?;
    let mut out = Vec::new();
    for (k, v) in &pairs {
        if k == b"info_hash" {
            if out.len() >= MAX_SCRAPE_HASHES {
                return Err(QueryError::TooManyHashes);
            }
            out.push(InfoHash(twenty(v, "info_hash")?));
        }
    }
    if out.is_empty() {
        return Err(QueryError::Missing("info_hash"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IH: &str = "%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A";

    #[test]
    fn parses_a_real_announce() {
        let q = format!(
            "info_hash={IH}&peer_id=-TR3000-abcdefghijkl&port=51413&uploaded=0&downloaded=0&left=100&event=started&compact=1&numwant=80"
        );
        let a = parse_announce(q.as_bytes()).unwrap();
        assert_eq!(
            a.info_hash.to_hex(),
            "123456789abcdef123456789abcdef123456789a"
        );
        assert_eq!(a.port, 51413);
        assert_eq!(a.event, Event::Started);
        assert_eq!(a.numwant, 80);
        assert!(a.compact);
    }

    #[test]
    fn refuses_bad_queries() {
        assert_eq!(
            parse_announce(b"info_hash=%zz"),
            Err(QueryError::BadPercent)
        );
        assert_eq!(parse_announce(b"info_hash=%1"), Err(QueryError::BadPercent));
        assert_eq!(
            parse_announce(b"port=1"),
            Err(QueryError::Missing("info_hash"))
        );
        assert_eq!(
            parse_announce(b"info_hash=abc&peer_id=x"),
            Err(QueryError::WrongLength("info_hash"))
        );
        let q = format!("info_hash={IH}&peer_id=-TR3000-abcdefghijkl&port=0&left=0");
        assert_eq!(parse_announce(q.as_bytes()), Err(QueryError::BadPort));
        let q = format!("info_hash={IH}&peer_id=-TR3000-abcdefghijkl&port=70000&left=0");
        assert_eq!(parse_announce(q.as_bytes()), Err(QueryError::BadPort));
        let q = format!("info_hash={IH}&peer_id=-TR3000-abcdefghijkl&port=7&left=-1");
        assert_eq!(
            parse_announce(q.as_bytes()),
            Err(QueryError::BadNumber("left"))
        );
        assert_eq!(parse_scrape(b""), Err(QueryError::Missing("info_hash")));
        let many = "a=b&".repeat(100);
        assert_eq!(
            parse_scrape(many.as_bytes()),
            Err(QueryError::TooManyParams)
        );
    }
}
