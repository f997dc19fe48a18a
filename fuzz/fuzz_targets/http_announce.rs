//! The HTTP tracker's request side: `parse_head`, `percent_decode`, `parse_query`,
//! `parse_announce`, `parse_scrape`, and `respond` on what they accept.
//!
//! An accepted announce or scrape, written back as a query (every byte percent-encoded),
//! parses to the same value; parameter and hash counts stay within their limits; the
//! tracker's reply to any target is bencode whenever it says text/plain.
#![no_main]

use std::fmt::Write;
use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use swarmlet::bt::bencode::decode;
use swarmlet::bt::tracker::announce::{
    Announce, Event, MAX_PARAMS, MAX_SCRAPE_HASHES, parse_announce, parse_query, parse_scrape,
    percent_decode,
};
use swarmlet::bt::tracker::http::{MAX_HEAD, parse_head, respond};
use swarmlet::bt::tracker::{Settings, Tracker};

fn pct(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "%{b:02X}");
        s
    })
}

fn query_of(a: &Announce) -> String {
    let mut q = format!(
        "info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&numwant={}&compact={}&no_peer_id={}",
        pct(&a.info_hash.0),
        pct(&a.peer_id.0),
        a.port,
        a.uploaded,
        a.downloaded,
        a.left,
        a.numwant,
        u8::from(a.compact),
        u8::from(a.no_peer_id)
    );
    match a.event {
        Event::None => {}
        Event::Started => q += "&event=started",
        Event::Completed => q += "&event=completed",
        Event::Stopped => q += "&event=stopped",
    }
    q
}

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = percent_decode(data) {
        assert!(v.len() <= data.len());
    }
    if let Ok(p) = parse_query(data) {
        assert!(p.len() <= MAX_PARAMS);
    }
    if let Ok(a) = parse_announce(data) {
        assert_ne!(a.port, 0);
        let q = query_of(&a);
        assert_eq!(
            parse_announce(q.as_bytes()),
            Ok(a),
            "announce round trip via {q}"
        );
    }
    if let Ok(hashes) = parse_scrape(data) {
        assert!((1..=MAX_SCRAPE_HASHES).contains(&hashes.len()));
        let q: Vec<String> = hashes
            .iter()
            .map(|h| format!("info_hash={}", pct(&h.0)))
            .collect();
        assert_eq!(parse_scrape(q.join("&").as_bytes()), Ok(hashes));
    }
    if data.len() > MAX_HEAD + 4 {
        return; // the connection reader refuses longer heads before parsing
    }
    let Ok(head) = parse_head(data) else { return };
    assert!(head.target.starts_with(b"/") && !head.method.is_empty());
    let tracker = Tracker::new(Settings::default(), None);
    let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let reply = respond(&tracker, &head.target, client);
    if reply.content_type == "text/plain" {
        decode(&reply.body)
            .unwrap_or_else(|e| panic!("reply is not bencode ({e}): {:?}", reply.body));
    }
    let _ = reply.to_bytes(head.keep_alive);
});
