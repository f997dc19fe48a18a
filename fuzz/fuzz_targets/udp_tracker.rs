//! `bt::tracker::udp::handle_datagram`: the UDP tracker's request parsing (BEP 15).
//!
//! Mode byte: bit 0 replaces the first 8 bytes by the connection id the tracker handed
//! this client (so announces and scrapes get past the anti-spoofing check), bit 1 makes
//! the client IPv6. Every reply echoes the transaction id, has the action asked or 3
//! (error), is bounded in size, and what the tracker answers the client parsers accept.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use swarmlet::bt::announce::udp::{parse_announce_reply, parse_scrape_reply};
use swarmlet::bt::tracker::udp::{
    MAX_NUMWANT_V6, MAX_UDP_SCRAPE, PROTOCOL_ID, Secret, connection_id, handle_datagram,
};
use swarmlet::bt::tracker::{MAX_NUMWANT, Settings, Tracker};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, d)) = data.split_first() else {
        return;
    };
    let client: SocketAddr = if mode & 2 == 0 {
        "127.0.0.1:6881".parse().unwrap()
    } else {
        "[::1]:6881".parse().unwrap()
    };
    let v6 = client.is_ipv6();
    // A fresh tracker per input, so a crash reproduces from its input alone.
    let tracker = Tracker::new(Settings::default(), None);
    let secret = Secret::random();
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut d = d.to_vec();
    if mode & 1 == 1 && d.len() >= 8 {
        d[..8].copy_from_slice(&connection_id(&secret, client, now).to_be_bytes());
    }
    // The tracker learns of this client first, so announces may list a peer.
    let Some(reply) = handle_datagram(&tracker, &secret, &d, client, now) else {
        return;
    };
    assert!(d.len() >= 16, "a reply to a {}-byte datagram", d.len());
    assert!(reply.len() >= 8);
    let action = u32::from_be_bytes(d[8..12].try_into().unwrap());
    let got = u32::from_be_bytes(reply[..4].try_into().unwrap());
    assert_eq!(&reply[4..8], &d[12..16], "transaction id not echoed");
    assert!(
        got == action || got == 3,
        "action {got} for request {action}"
    );
    let peer = if v6 { 18 } else { 6 };
    let cap = if v6 { MAX_NUMWANT_V6 } else { MAX_NUMWANT };
    assert!(reply.len() <= 20 + peer * cap.max(MAX_UDP_SCRAPE) || got == 3);
    match got {
        0 => {
            assert_eq!(u64::from_be_bytes(d[..8].try_into().unwrap()), PROTOCOL_ID);
            assert_eq!(reply.len(), 16);
        }
        1 => {
            let r = parse_announce_reply(&reply, v6).expect("client parses our announce reply");
            assert!(r.peers.len() <= cap);
        }
        2 => {
            let n = ((d.len() - 16) / 20).min(MAX_UDP_SCRAPE);
            let e = parse_scrape_reply(&reply, n).expect("client parses our scrape reply");
            assert_eq!(e.len(), n);
        }
        _ => {
            // An error: text only, bounded.
            assert!(
                reply.len() <= 8 + 512,
                "error reply of {} bytes",
                reply.len()
            );
        }
    }
});
