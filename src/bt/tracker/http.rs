//! The HTTP front end: a small HTTP/1.1 reader on [`crate::server`] (connection cap,
//! idle and whole-request deadlines) and [`respond`], the request-to-reply function that
//! knows no sockets, so that a peer daemon can answer announces on its own port too.
//!
//! Why not tiny_http: it has no read deadline (a client trickling a byte a second holds
//! a thread for ever), no bound on header size, and grows its thread pool without a cap;
//! `crate::server` already has all three, and a tracker needs only `GET` with a query.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::announce::{parse_announce, parse_scrape};
use crate::bt::bencode::{failure, write_bytes as bytes};

/// A count or an interval as a bencoded integer (these never reach `i64::MAX`).
fn int(out: &mut Vec<u8>, n: u64) {
    crate::bt::bencode::write_int(out, i64::try_from(n).unwrap_or(i64::MAX));
}
use super::{Refusal, Tracker, canonical_ip, usable_addr};
use crate::server::{Connection, Handler};

/// Longest request head (request line and headers). Real announces are under 1 KB; 8 KiB
/// is what most servers allow, and a 20 KB query is refused at once instead of buffered.
pub const MAX_HEAD: usize = 8 * 1024;

/// Most requests served on one keep-alive connection, so a client cannot pin a thread
/// for ever by asking fast; clients reconnect at no cost.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 1000;

/// Swarms listed on the status page and in stats.json: the page stays small however many
/// swarms there are.
pub const STATUS_SWARMS: usize = 100;

/// An HTTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code (200 for every tracker answer, failures included).
    pub status: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    fn ok(content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status: 200,
            content_type,
            body,
        }
    }

    /// A bencoded `failure reason`, HTTP 200 as clients expect.
    pub fn failure(reason: &str) -> Reply {
        Reply::ok("text/plain", failure(reason))
    }

    /// The whole response: status line, headers, body.
    pub fn to_bytes(&self, keep_alive: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            404 => "Not Found",
            _ => "Error",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// Answers one `GET` request target (`/announce?...`, `/scrape?...`, `/`,
/// `/stats.json`) from `client`. Knows no sockets: any front end can call it.
pub fn respond(tracker: &Tracker, target: &[u8], client: SocketAddr) -> Reply {
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(i) => (&target[..i], &target[i + 1..]),
        None => (target, &[][..]),
    };
    let reply = match path {
        b"/announce" => announce(tracker, query, client),
        b"/scrape" => scrape(tracker, query),
        b"/" => return Reply::ok("text/html; charset=utf-8", status_page(tracker)),
        b"/stats.json" => return Reply::ok("application/json", stats_json(tracker)),
        _ => {
            return Reply {
                status: 404,
                content_type: "text/plain",
                body: failure("not found"),
            };
        }
    };
    match reply {
        Ok(body) => Reply::ok("text/plain", body),
        Err(e) => {
            tracker.totals.failures.fetch_add(1, Ordering::Relaxed);
            Reply::failure(&e.to_string())
        }
    }
}

fn announce(tracker: &Tracker, query: &[u8], client: SocketAddr) -> Result<Vec<u8>, Refusal> {
    let a = parse_announce(query)?;
    // The source address, never a client-supplied `ip`: otherwise anyone could point a
    // swarm at a victim.
    let from = SocketAddr::new(canonical_ip(client.ip()), a.port);
    let r = tracker.announce(&a, from)?;
    let mut out = b"d".to_vec();
    bytes(&mut out, b"complete");
    int(&mut out, r.counts.complete);
    bytes(&mut out, b"incomplete");
    int(&mut out, r.counts.incomplete);
    bytes(&mut out, b"interval");
    int(&mut out, r.interval.as_secs());
    bytes(&mut out, b"min interval");
    int(&mut out, (r.interval.as_secs() / 2).max(1));
    let peers = r.peers.iter().filter(|p| usable_addr(&p.addr));
    if a.compact {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for p in peers {
            match p.addr {
                SocketAddr::V4(s) => {
                    v4.extend_from_slice(&s.ip().octets());
                    v4.extend_from_slice(&s.port().to_be_bytes());
                }
                SocketAddr::V6(s) => {
                    v6.extend_from_slice(&s.ip().octets());
                    v6.extend_from_slice(&s.port().to_be_bytes());
                }
            }
        }
        bytes(&mut out, b"peers");
        bytes(&mut out, &v4);
        if !v6.is_empty() {
            bytes(&mut out, b"peers6");
            bytes(&mut out, &v6);
        }
    } else {
        bytes(&mut out, b"peers");
        out.push(b'l');
        for p in peers {
            out.push(b'd');
            bytes(&mut out, b"ip");
            bytes(&mut out, p.addr.ip().to_string().as_bytes());
            if !a.no_peer_id {
                bytes(&mut out, b"peer id");
                bytes(&mut out, &p.id.0);
            }
            bytes(&mut out, b"port");
            int(&mut out, p.addr.port() as u64);
            out.push(b'e');
        }
        out.push(b'e');
    }
    out.push(b'e');
    Ok(out)
}

fn scrape(tracker: &Tracker, query: &[u8]) -> Result<Vec<u8>, Refusal> {
    let hashes = parse_scrape(query)?;
    let counts = tracker.scrape(&hashes)?;
    let mut sorted = counts;
    sorted.sort_by_key(|(ih, _)| *ih);
    sorted.dedup_by_key(|(ih, _)| *ih);
    let mut out = b"d".to_vec();
    bytes(&mut out, b"files");
    out.push(b'd');
    for (ih, c) in sorted {
        bytes(&mut out, &ih.0);
        out.push(b'd');
        bytes(&mut out, b"complete");
        int(&mut out, c.complete);
        bytes(&mut out, b"downloaded");
        int(&mut out, c.downloaded);
        bytes(&mut out, b"incomplete");
        int(&mut out, c.incomplete);
        out.push(b'e');
    }
    out.extend_from_slice(b"ee");
    Ok(out)
}

fn status_page(t: &Tracker) -> Vec<u8> {
    let mut s = String::from(
        "<!doctype html><html><head><title>swarmlet tracker</title></head><body>\n<h1>swarmlet tracker</h1>\n",
    );
    s += &format!(
        "<p>{} swarms, {} peers, {} announces, {} scrapes, {} refused, up {} s</p>\n",
        t.swarm_count(),
        t.peer_count(),
        t.totals.announces.load(Ordering::Relaxed),
        t.totals.scrapes.load(Ordering::Relaxed),
        t.totals.failures.load(Ordering::Relaxed),
        t.uptime().as_secs()
    );
    s += "<table border=1><tr><th>infohash</th><th>seeders</th><th>leechers</th><th>downloads</th></tr>\n";
    for sw in t.swarm_stats(STATUS_SWARMS) {
        s += &format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            sw.info_hash.to_hex(),
            sw.counts.complete,
            sw.counts.incomplete,
            sw.counts.downloaded
        );
    }
    s += "</table></body></html>\n";
    s.into_bytes()
}

/// The status page's figures as JSON, built by serde_json so that escaping and number
/// formatting are never ours to get wrong.
fn stats_json(t: &Tracker) -> Vec<u8> {
    let swarms: Vec<serde_json::Value> = t
        .swarm_stats(STATUS_SWARMS)
        .iter()
        .map(|sw| {
            serde_json::json!({
                "info_hash": sw.info_hash.to_hex(),
                "complete": sw.counts.complete,
                "incomplete": sw.counts.incomplete,
                "downloaded": sw.counts.downloaded,
            })
        })
        .collect();
    let v = serde_json::json!({
        "swarms": t.swarm_count(),
        "peers": t.peer_count(),
        "announces": t.totals.announces.load(Ordering::Relaxed),
        "scrapes": t.totals.scrapes.load(Ordering::Relaxed),
        "failures": t.totals.failures.load(Ordering::Relaxed),
        "uptime_secs": t.uptime().as_secs(),
        "top_swarms": swarms,
    });
    let mut out = v.to_string().into_bytes();
    out.push(b'\n');
    out
}

/// One parsed request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    /// `GET`, `POST`...
    pub method: Vec<u8>,
    /// The request target.
    pub target: Vec<u8>,
    /// HTTP/1.1 without `Connection: close` (or 1.0 with `keep-alive`).
    pub keep_alive: bool,
    /// A `Content-Length` or `Transfer-Encoding` header was present (a body follows,
    /// which a tracker never reads: the connection is closed after the reply).
    pub has_body: bool,
}

/// Why a request head is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Longer than [`MAX_HEAD`].
    #[error("request too long")]
    TooLong,
    /// Not `METHOD TARGET HTTP/x.y`, or a header line without a colon.
    #[error("malformed request")]
    Malformed,
}

/// Parses a complete head (up to and including the blank line).
pub fn parse_head(head: &[u8]) -> Result<Head, HeadError> {
    let text = head.strip_suffix(b"\r\n\r\n").ok_or(HeadError::Malformed)?;
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next().ok_or(HeadError::Malformed)?;
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed);
    };
    if method.is_empty() || !target.starts_with(b"/") {
        return Err(HeadError::Malformed);
    }
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        _ => return Err(HeadError::Malformed),
    };
    let mut keep_alive = http11;
    let mut has_body = false;
    for l in lines {
        let colon = l
            .iter()
            .position(|&b| b == b':')
            .ok_or(HeadError::Malformed)?;
        let name = l[..colon].to_ascii_lowercase();
        let value = l[colon + 1..].trim_ascii().to_ascii_lowercase();
        match name.as_slice() {
            b"connection" if value == b"close" => keep_alive = false,
            b"connection" if value == b"keep-alive" => keep_alive = true,
            b"content-length" if value != b"0" => has_body = true,
            b"transfer-encoding" => has_body = true,
            _ => {}
        }
    }
    Ok(Head {
        method: method.to_vec(),
        target: target.to_vec(),
        keep_alive,
        has_body,
    })
}

/// Serves HTTP tracker requests on connections from [`crate::server::Server`].
pub struct HttpFrontEnd {
    /// The shared swarms.
    pub tracker: Arc<Tracker>,
}

enum Next {
    Head(Vec<u8>),
    Closed,
    Refused(HeadError),
}

/// Reads up to the end of one head from `buf` + the stream; leaves what follows in `buf`.
fn read_head(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Next> {
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            let head = std::mem::replace(buf, rest);
            return Ok(Next::Head(head));
        }
        if buf.len() > MAX_HEAD {
            return Ok(Next::Refused(HeadError::TooLong));
        }
        let n = r.read(&mut chunk)?;
        if n == 0 {
            return Ok(if buf.is_empty() {
                Next::Closed
            } else {
                Next::Refused(HeadError::Malformed)
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

impl Handler for HttpFrontEnd {
    fn handle(&self, conn: Connection) -> io::Result<()> {
        let mut reader = conn.reader()?;
        let mut stream = conn.stream.try_clone()?;
        let mut buf = Vec::new();
        for _ in 0..MAX_REQUESTS_PER_CONNECTION {
            // Waiting for a next request may take the idle timeout (set on the socket);
            // once its first byte is here, the whole head must arrive within the
            // request timeout.
            if buf.is_empty() {
                let mut first = [0u8; 2048];
                let n = reader.read(&mut first)?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&first[..n]);
            }
            reader.set_deadline(conn.limits.request_timeout);
            let head = match read_head(&mut reader, &mut buf)? {
                Next::Closed => return Ok(()),
                Next::Refused(e) => {
                    stream.write_all(&Reply::failure(&e.to_string()).to_bytes(false))?;
                    return Ok(());
                }
                Next::Head(h) => h,
            };
            let head = match parse_head(&head) {
                Ok(h) => h,
                Err(e) => {
                    stream.write_all(&Reply::failure(&e.to_string()).to_bytes(false))?;
                    return Ok(());
                }
            };
            if head.method != b"GET" {
                stream.write_all(&Reply::failure("only GET is served").to_bytes(false))?;
                return Ok(());
            }
            let keep_alive = head.keep_alive && !head.has_body;
            let reply = respond(&self.tracker, &head.target, conn.peer);
            stream.write_all(&reply.to_bytes(keep_alive))?;
            if !keep_alive {
                return Ok(());
            }
            // Back to waiting for the next request under the idle timeout.
            reader = conn.reader()?;
            conn.stream
                .set_read_timeout(Some(conn.limits.idle_timeout))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bt::tracker::Settings;
    use crate::bt::tracker::announce::{Announce, Event};

    #[test]
    fn stats_json_parses_and_counts() {
        let t = Tracker::new(Settings::default(), None);
        let a = Announce {
            info_hash: crate::bt::tracker::InfoHash([3; 20]),
            peer_id: crate::bt::tracker::PeerId([1; 20]),
            port: 6000,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: Event::Started,
            numwant: 50,
            compact: true,
            no_peer_id: false,
        };
        t.announce(&a, "127.0.0.1:6000".parse().unwrap()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&stats_json(&t)).unwrap();
        assert_eq!(v["swarms"], 1);
        assert_eq!(v["peers"], 1);
        assert_eq!(v["top_swarms"][0]["info_hash"], "03".repeat(20));
        assert_eq!(v["top_swarms"][0]["complete"], 1);
    }

    #[test]
    fn heads() {
        let h = parse_head(b"GET /announce?a=b HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(h.target, b"/announce?a=b");
        assert!(h.keep_alive);
        let h = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        assert_eq!(parse_head(b"GET /\r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nnocolon\r\n\r\n"),
            Err(HeadError::Malformed)
        );
    }
}
