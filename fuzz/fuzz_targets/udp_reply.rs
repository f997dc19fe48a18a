//! `bt::announce::udp::{parse_announce_reply, parse_scrape_reply}`: the UDP tracker
//! client's reply parsing (BEP 15), on arbitrary bytes.
//!
//! Mode byte: bit 0 chooses the IPv6 peer format; the other 7 bits are the number of
//! hashes a scrape asked for. What is accepted re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmlet::bt::announce::encode_compact;
use swarmlet::bt::announce::udp::{UdpError, parse_announce_reply, parse_scrape_reply};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, d)) = data.split_first() else {
        return;
    };
    let v6 = mode & 1 == 1;
    let record = if v6 { 18 } else { 6 };
    match parse_announce_reply(d, v6) {
        Ok(r) => {
            assert_eq!(r.peers.len() * record, d.len() - 20);
            let (c4, c6) = encode_compact(&r.peers);
            assert_eq!(if v6 { c6 } else { c4 }, &d[20..], "peers round trip");
            assert_eq!(
                r.interval.as_secs(),
                u64::from(u32::from_be_bytes(d[8..12].try_into().unwrap()))
            );
            assert_eq!(
                r.leechers,
                Some(u32::from_be_bytes(d[12..16].try_into().unwrap()))
            );
            assert_eq!(
                r.seeders,
                Some(u32::from_be_bytes(d[16..20].try_into().unwrap()))
            );
            let _ = r.next_announce();
        }
        Err(UdpError::Short { len, .. }) => assert!(len < 20 && len == d.len()),
        Err(UdpError::Compact(e)) => assert_ne!(e.len % record, 0),
        Err(e) => panic!("unexpected announce reply error: {e}"),
    }
    let want = usize::from(mode >> 1);
    match parse_scrape_reply(d, want) {
        Ok(v) => {
            assert_eq!(v.len(), want);
            let mut enc = d[..8].to_vec();
            for e in &v {
                for n in [e.seeders, e.completed, e.leechers] {
                    enc.extend_from_slice(&n.to_be_bytes());
                }
            }
            assert_eq!(enc, d, "scrape round trip");
        }
        Err(UdpError::Short { len, .. }) => assert!(len < 8),
        Err(UdpError::ScrapeEntries { want: w, .. }) => {
            assert_eq!(w, want);
            assert_ne!(d.len(), 8 + 12 * want);
        }
        Err(e) => panic!("unexpected scrape reply error: {e}"),
    }
});
