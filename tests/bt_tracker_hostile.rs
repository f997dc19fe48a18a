//! Hostile input against a running `swarmlet tracker` process over real sockets on
//! 127.0.0.1: every case is answered with a failure reason (HTTP), an error action or
//! silence (UDP), never a crash or a hang, and an honest client is served afterwards with
//! the tracker's threads and memory bounded.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{free_port, proc_status, threads};

use common::{pct, start_swarmlet_tracker as start_tracker};

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Sends raw bytes, reads until the tracker closes (10 s hang guard); returns the reply.
fn raw(port: u16, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    reply
}

fn get(port: u16, target: &str) -> Vec<u8> {
    raw(
        port,
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

fn good_query(ih: &[u8; 20], id: u8) -> String {
    format!(
        "info_hash={}&peer_id={}&port=7001&uploaded=0&downloaded=0&left=10&compact=1",
        pct(ih),
        pct(&[id; 20])
    )
}

const IH: [u8; 20] = [0x42; 20];

fn honest_http_announce_works(port: u16) {
    let r = get(port, &format!("/announce?{}", good_query(&IH, 99)));
    assert!(
        contains(&r, b"8:intervali"),
        "honest announce: {}",
        String::from_utf8_lossy(&r)
    );
}

#[test]
fn hostile_http_requests_get_a_failure_reason_or_a_close_and_the_tracker_keeps_serving() {
    let port = free_port();
    let (mut t, _dir) = start_tracker(port);
    let q = good_query(&IH, 1);
    let failures: Vec<(&str, String)> = vec![
        (
            "bad percent-encoding",
            q.replace("info_hash=%42", "info_hash=%zz"),
        ),
        ("truncated escape", format!("{q}&x=%4")),
        (
            "19-byte info_hash",
            format!(
                "info_hash={}&peer_id={}&port=1&left=0",
                pct(&[1; 19]),
                pct(&[1; 20])
            ),
        ),
        (
            "21-byte info_hash",
            format!(
                "info_hash={}&peer_id={}&port=1&left=0",
                pct(&[1; 21]),
                pct(&[1; 20])
            ),
        ),
        (
            "empty info_hash",
            format!("info_hash=&peer_id={}&port=1&left=0", pct(&[1; 20])),
        ),
        (
            "missing peer_id",
            format!("info_hash={}&port=1&left=0", pct(&IH)),
        ),
        (
            "short peer_id",
            format!("info_hash={}&peer_id=abc&port=1&left=0", pct(&IH)),
        ),
        (
            "missing port",
            format!("info_hash={}&peer_id={}&left=0", pct(&IH), pct(&[1; 20])),
        ),
        ("port 0", q.replace("port=7001", "port=0")),
        ("port 99999", q.replace("port=7001", "port=99999")),
        ("port not a number", q.replace("port=7001", "port=http")),
        ("missing left", q.replace("&left=10", "")),
        ("negative left", q.replace("left=10", "left=-5")),
        (
            "numwant beyond u64",
            format!("{q}&numwant=99999999999999999999999"),
        ),
        ("negative numwant", format!("{q}&numwant=-1")),
        ("unknown event", format!("{q}&event=exploded")),
        ("65 parameters", format!("{q}{}", "&a=b".repeat(65))),
        ("no query", String::new()),
    ];
    for (what, query) in &failures {
        let r = get(port, &format!("/announce?{query}"));
        assert!(
            r.starts_with(b"HTTP/1.1 200") && contains(&r, b"d14:failure reason"),
            "{what}: {}",
            String::from_utf8_lossy(&r)
        );
    }
    // numwant extremes that are valid: 0 peers, and a huge numwant capped.
    for n in ["0", "100000"] {
        let r = get(port, &format!("/announce?{q}&numwant={n}"));
        assert!(
            contains(&r, b"8:intervali"),
            "numwant={n}: {}",
            String::from_utf8_lossy(&r)
        );
    }
    // Scrapes: wrong length, too many hashes.
    let r = get(port, "/scrape?info_hash=%41%41");
    assert!(
        contains(&r, b"failure reason"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    let many = format!("info_hash={}&", pct(&IH)).repeat(101);
    // 101 hashes are 6 KB of query: under the head limit, over the scrape limit.
    let r = get(port, &format!("/scrape?{many}"));
    assert!(
        contains(&r, b"failure reason"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    // Unknown path.
    let r = get(port, "/../../etc/passwd");
    assert!(
        r.starts_with(b"HTTP/1.1 404"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    // Broken heads, methods, sizes: a failure reason then close, or just a close.
    let heads: Vec<(&str, Vec<u8>)> = vec![
        (
            "POST",
            b"POST /announce HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        ),
        ("DELETE", b"DELETE / HTTP/1.1\r\n\r\n".to_vec()),
        ("no version", b"GET /announce\r\n\r\n".to_vec()),
        ("HTTP/9.9", b"GET / HTTP/9.9\r\n\r\n".to_vec()),
        (
            "header without colon",
            b"GET / HTTP/1.1\r\nnonsense\r\n\r\n".to_vec(),
        ),
        (
            "target not a path",
            b"GET announce HTTP/1.1\r\n\r\n".to_vec(),
        ),
        (
            "binary garbage",
            (0..=255u8).cycle().take(3000).chain(*b"\r\n\r\n").collect(),
        ),
        (
            "20 KB query",
            format!("GET /announce?{} HTTP/1.1\r\n\r\n", "a".repeat(20_000)).into_bytes(),
        ),
        (
            "1 MB of headers",
            format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(130_000)).into_bytes(),
        ),
    ];
    for (what, req) in &heads {
        let r = raw(port, req);
        assert!(
            r.is_empty() || contains(&r, b"failure reason"),
            "{what}: {}",
            String::from_utf8_lossy(&r)
        );
        assert!(!contains(&r, b"8:intervali"), "{what} was served");
    }
    // Pipelined: an honest request, then garbage on the same connection: the first is
    // answered, the garbage is refused.
    let mut req = format!("GET /announce?{q} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
    req.extend_from_slice(b"\x00\x01\x02garbage\r\n\r\n");
    let r = raw(port, &req);
    assert!(
        contains(&r, b"8:intervali"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    assert!(
        contains(&r, b"failure reason"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    // Slowloris: one byte a second. The request deadline (5 s) closes the connection
    // well before the 30 bytes are sent (the loop is bounded by count and time).
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let start = Instant::now();
    let mut closed = false;
    for b in b"GET /announce?info_hash=AAAAAAAAAAAAAAAAAAAAAAAAAA"
        .iter()
        .take(30)
    {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    if !closed {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        // Ok: closed (0) or a failure reason then closed; Err: still open.
        closed = s.read(&mut buf).is_ok();
    }
    assert!(
        closed,
        "slow client still connected after {:?}",
        start.elapsed()
    );
    honest_http_announce_works(port);
    assert!(
        t.wait_timeout(Duration::ZERO).is_none(),
        "the tracker exited"
    );
}

const PROTOCOL_ID: u64 = 0x41727101980;

fn connect_id(s: &UdpSocket, to: SocketAddr) -> u64 {
    let mut c = PROTOCOL_ID.to_be_bytes().to_vec();
    c.extend_from_slice(&0u32.to_be_bytes());
    c.extend_from_slice(&0x77u32.to_be_bytes());
    s.send_to(&c, to).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = s.recv_from(&mut buf).expect("connect reply");
    assert_eq!(n, 16);
    u64::from_be_bytes(buf[8..16].try_into().unwrap())
}

fn announce_packet(cid: u64, tx: u32, event: u32) -> Vec<u8> {
    let mut d = cid.to_be_bytes().to_vec();
    d.extend_from_slice(&1u32.to_be_bytes());
    d.extend_from_slice(&tx.to_be_bytes());
    d.extend_from_slice(&IH);
    d.extend_from_slice(&[5; 20]);
    d.extend_from_slice(&[0; 24]);
    d.extend_from_slice(&event.to_be_bytes());
    d.extend_from_slice(&[0; 8]);
    d.extend_from_slice(&(-1i32).to_be_bytes());
    d.extend_from_slice(&7005u16.to_be_bytes());
    d
}

/// Expects either silence (`None`) or an error action for transaction `tx`.
fn reply_to(s: &UdpSocket, to: SocketAddr, d: &[u8]) -> Option<Vec<u8>> {
    s.send_to(d, to).unwrap();
    let mut buf = [0u8; 2048];
    s.recv_from(&mut buf).ok().map(|(n, _)| buf[..n].to_vec())
}

#[test]
fn hostile_udp_datagrams_and_a_flood_leave_the_tracker_serving_with_bounded_threads_and_memory() {
    let port = free_port();
    let (t, _dir) = start_tracker(port);
    let pid = t.pid();
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    // Silence: too short, wrong protocol id, forged or stale connection ids.
    let mut bad_magic = 0x1234u64.to_be_bytes().to_vec();
    bad_magic.extend_from_slice(&[0; 8]);
    let silent: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("2 bytes", vec![0, 1]),
        ("15 bytes", vec![0; 15]),
        ("connect with a wrong protocol id", bad_magic),
        (
            "announce with a forged id",
            announce_packet(0xdead_beef, 1, 2),
        ),
        ("announce with id 0", announce_packet(0, 2, 2)),
        ("scrape with a forged id", {
            let mut d = 0xfeedu64.to_be_bytes().to_vec();
            d.extend_from_slice(&2u32.to_be_bytes());
            d.extend_from_slice(&[0; 4]);
            d.extend_from_slice(&IH);
            d
        }),
    ];
    for (what, d) in &silent {
        assert_eq!(reply_to(&s, to, d), None, "{what} got a reply");
    }
    // With a valid id: errors (action 3) naming the problem, for the same transaction.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let cid = connect_id(&s, to);
    let mut truncated = announce_packet(cid, 10, 2);
    truncated.truncate(60);
    let mut unknown = announce_packet(cid, 11, 2);
    unknown[8..12].copy_from_slice(&9u32.to_be_bytes());
    let mut empty_scrape = cid.to_be_bytes().to_vec();
    empty_scrape.extend_from_slice(&2u32.to_be_bytes());
    empty_scrape.extend_from_slice(&12u32.to_be_bytes());
    let mut port0 = announce_packet(cid, 13, 2);
    port0[96..98].copy_from_slice(&[0, 0]);
    let errors: Vec<(&str, Vec<u8>, u32)> = vec![
        ("truncated announce", truncated, 10),
        ("unknown action", unknown, 11),
        ("scrape without infohashes", empty_scrape, 12),
        ("port 0", port0, 13),
        ("bad event", announce_packet(cid, 14, 77), 14),
    ];
    for (what, d, tx) in &errors {
        let r = reply_to(&s, to, d).unwrap_or_else(|| panic!("{what}: no error reply"));
        assert_eq!(&r[..4], &3u32.to_be_bytes(), "{what}: {r:02x?}");
        assert_eq!(&r[4..8], &tx.to_be_bytes(), "{what}");
        assert!(r.len() > 8, "{what}: an error without a message");
    }
    // An oversized datagram (64 KB) with a valid id and a BEP 41 option tail: parsed as
    // the announce it starts with.
    let mut big = announce_packet(cid, 15, 2);
    big.extend_from_slice(&[2, 9]);
    big.extend_from_slice(b"/announce");
    big.resize(60_000, 0xff);
    let r = reply_to(&s, to, &big).expect("reply to an announce with a tail");
    assert_eq!(&r[..8], &[0, 0, 0, 1, 0, 0, 0, 15]);

    let threads_before = threads(pid);
    // The flood: 100,000 datagrams to 127.0.0.1 only, bounded in count and in time
    // (60 s), a mix of garbage, connects and announces with forged ids, from one socket
    // that never reads its replies.
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    flood
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let kinds = [
        vec![0xffu8; 16],
        {
            let mut c = PROTOCOL_ID.to_be_bytes().to_vec();
            c.extend_from_slice(&[0; 8]);
            c
        },
        announce_packet(0x0bad_0bad, 1, 2),
        vec![0; 3],
    ];
    let end = Instant::now() + Duration::from_secs(60);
    let mut sent = 0u32;
    while sent < 100_000 && Instant::now() < end {
        let _ = flood.send_to(&kinds[sent as usize % kinds.len()], to);
        sent += 1;
    }
    assert!(sent >= 10_000, "only {sent} datagrams sent in 60 s");
    // Afterwards an honest client is served (a few tries: its datagram may queue behind
    // the flood in the socket buffer).
    let honest = UdpSocket::bind("127.0.0.1:0").unwrap();
    honest
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut served = false;
    for tx in 0..10 {
        let mut c = PROTOCOL_ID.to_be_bytes().to_vec();
        c.extend_from_slice(&0u32.to_be_bytes());
        c.extend_from_slice(&(1000 + tx as u32).to_be_bytes());
        honest.send_to(&c, to).unwrap();
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = honest.recv_from(&mut buf) {
            if n == 16 && buf[..4] == [0; 4] {
                let cid = u64::from_be_bytes(buf[8..16].try_into().unwrap());
                honest.send_to(&announce_packet(cid, 5000, 2), to).unwrap();
                if let Ok((n, _)) = honest.recv_from(&mut buf) {
                    served = n >= 20 && buf[..8] == [0, 0, 0, 1, 0, 0, 19, 136];
                }
                break;
            }
        }
        if served {
            break;
        }
    }
    assert!(
        served,
        "no honest announce served after {sent} flood datagrams"
    );
    honest_http_announce_works(port);
    // Threads: the flood spawned none (UDP has a fixed pool). Memory: the tracker holds
    // one swarm of a few peers; 64 MB is far above that and far below a leak of 100,000
    // datagrams' worth of state.
    let threads_after = threads(pid);
    assert!(
        threads_after <= threads_before + 2,
        "threads {threads_before} -> {threads_after}"
    );
    let rss_kib = proc_status(pid, "VmHWM").expect("tracker running");
    assert!(rss_kib < 64 * 1024, "peak RSS {rss_kib} KiB");
    eprintln!(
        "flood: {sent} datagrams; threads {threads_before} -> {threads_after}; peak RSS {rss_kib} KiB"
    );
}
