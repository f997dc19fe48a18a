//! `swarmlet tracker` as a real process on 127.0.0.1: HTTP announces and scrapes, BEP 15
//! over UDP, hostile requests answered with a failure reason, and a libtorrent seeder and
//! leecher completing a swarm through it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Proc, free_port, require_program};

use common::{pct, start_swarmlet_tracker as start_tracker};

/// One HTTP/1.1 GET to the tracker on 127.0.0.1:`port`; returns the body.
fn get(port: u16, target: &str) -> Vec<u8> {
    common::http_get(
        std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port),
        target,
    )
}

fn announce(port: u16, ih: &[u8; 20], id: u8, peer_port: u16, left: u64, event: &str) -> Vec<u8> {
    get(
        port,
        &format!(
            "/announce?info_hash={}&peer_id={}&port={peer_port}&uploaded=0&downloaded=0&left={left}&compact=1{}",
            pct(ih),
            pct(&[id; 20]),
            if event.is_empty() {
                String::new()
            } else {
                format!("&event={event}")
            }
        ),
    )
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn http_announces_see_each_other_never_themselves_and_scrape_counts_follow_events() {
    let port = free_port();
    let _t = start_tracker(port);
    let ih = [0xabu8; 20];
    let a = announce(port, &ih, 1, 7001, 100, "started");
    assert!(
        contains(&a, b"5:peers0:"),
        "first peer gets nobody: {}",
        String::from_utf8_lossy(&a)
    );
    let b = announce(port, &ih, 2, 7002, 0, "started");
    // Compact: 127.0.0.1:7001 = 7f 00 00 01 1b 59, and never 7002 itself.
    assert!(
        contains(&b, b"5:peers6:\x7f\x00\x00\x01\x1b\x59"),
        "{}",
        String::from_utf8_lossy(&b)
    );
    let scrape = |port| get(port, &format!("/scrape?info_hash={}", pct(&ih)));
    let s = scrape(port);
    assert!(
        contains(&s, b"8:completei1e10:downloadedi0e10:incompletei1e"),
        "{}",
        String::from_utf8_lossy(&s)
    );
    announce(port, &ih, 1, 7001, 0, "completed");
    let s = scrape(port);
    assert!(
        contains(&s, b"8:completei2e10:downloadedi1e10:incompletei0e"),
        "{}",
        String::from_utf8_lossy(&s)
    );
    announce(port, &ih, 2, 7002, 0, "stopped");
    let s = scrape(port);
    assert!(
        contains(&s, b"8:completei1e10:downloadedi1e10:incompletei0e"),
        "{}",
        String::from_utf8_lossy(&s)
    );
}

#[test]
fn bad_requests_get_a_failure_reason_and_the_tracker_keeps_serving() {
    let port = free_port();
    let _t = start_tracker(port);
    let ih = [7u8; 20];
    let cases = [
        "/announce".to_string(),
        format!(
            "/announce?info_hash={}&peer_id={}&port=1&left=0",
            pct(&ih[..19]),
            pct(&[1; 20])
        ),
        format!(
            "/announce?info_hash={}&peer_id={}&port=0&left=0",
            pct(&ih),
            pct(&[1; 20])
        ),
        format!(
            "/announce?info_hash={}&peer_id={}&port=99999&left=0",
            pct(&ih),
            pct(&[1; 20])
        ),
        format!(
            "/announce?info_hash=%zz{}&peer_id={}&port=1&left=0",
            pct(&ih[1..]),
            pct(&[1; 20])
        ),
        format!("/announce?info_hash={}&port=1&left=0", pct(&ih)),
        "/scrape?info_hash=%41".to_string(),
    ];
    for c in &cases {
        let body = get(port, c);
        assert!(
            body.starts_with(b"d14:failure reason"),
            "{c}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // A 20 KB query and a non-GET method: refused, never a crash.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = write!(s, "GET /announce?{} HTTP/1.1\r\n\r\n", "a".repeat(20_000));
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "POST /announce HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(
        contains(&reply, b"failure reason"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    // Still serving an honest announce.
    let ok = announce(port, &ih, 3, 7003, 0, "started");
    assert!(
        contains(&ok, b"8:intervali"),
        "{}",
        String::from_utf8_lossy(&ok)
    );
}

const PROTOCOL_ID: u64 = 0x41727101980;

fn udp_announce(cid: u64, tx: u32, ih: &[u8; 20], port: u16) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&cid.to_be_bytes());
    d.extend_from_slice(&1u32.to_be_bytes());
    d.extend_from_slice(&tx.to_be_bytes());
    d.extend_from_slice(ih);
    d.extend_from_slice(&[port as u8; 20]);
    // downloaded 0, left 100 (a leecher: seeders are not sent to seeders), uploaded 0.
    d.extend_from_slice(&0u64.to_be_bytes());
    d.extend_from_slice(&100u64.to_be_bytes());
    d.extend_from_slice(&0u64.to_be_bytes());
    d.extend_from_slice(&2u32.to_be_bytes()); // started
    d.extend_from_slice(&[0; 8]); // ip, key
    d.extend_from_slice(&(-1i32).to_be_bytes());
    d.extend_from_slice(&port.to_be_bytes());
    d
}

#[test]
fn udp_connect_announce_and_no_reply_without_a_valid_connection_id() {
    let port = free_port();
    let _t = start_tracker(port);
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    // Truncated packets, garbage and an announce with a forged id: silence.
    for d in [
        &b"\x00\x01"[..],
        &[0xff; 16][..],
        &udp_announce(0x1234_5678, 5, &[9; 20], 7005)[..],
    ] {
        s.send_to(d, to).unwrap();
        assert!(s.recv_from(&mut buf).is_err(), "replied to {d:02x?}");
    }
    let mut connect = PROTOCOL_ID.to_be_bytes().to_vec();
    connect.extend_from_slice(&0u32.to_be_bytes());
    connect.extend_from_slice(&77u32.to_be_bytes());
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.send_to(&connect, to).unwrap();
    let (n, _) = s.recv_from(&mut buf).unwrap();
    assert_eq!((n, &buf[..8]), (16, &[0, 0, 0, 0, 0, 0, 0, 77][..]));
    let cid = u64::from_be_bytes(buf[8..16].try_into().unwrap());
    let ih = [9u8; 20];
    s.send_to(&udp_announce(cid, 1, &ih, 7001), to).unwrap();
    let (n, _) = s.recv_from(&mut buf).unwrap();
    assert_eq!(n, 20, "the first peer gets nobody back");
    s.send_to(&udp_announce(cid, 2, &ih, 7002), to).unwrap();
    let (n, _) = s.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..8], &[0, 0, 0, 1, 0, 0, 0, 2]);
    assert_eq!(
        &buf[20..n],
        &[127, 0, 0, 1, 0x1b, 0x59],
        "the other peer, not itself"
    );
}

/// A libtorrent seeder and leecher (two sessions in one process) meet through the
/// tracker at `scheme://127.0.0.1:PORT/announce` and the leecher ends with the file.
fn libtorrent_swarm_through(scheme: &str) {
    require_program("python3", "python3");
    let lt = Command::new("/usr/bin/python3")
        .args(["-c", "import libtorrent"])
        .status();
    assert!(
        matches!(lt, Ok(s) if s.success()),
        "needs /usr/bin/python3 with libtorrent (Debian package python3-libtorrent): run scripts/test.sh, which installs it"
    );
    let port = free_port();
    let t = start_tracker(port);
    let work = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/lt_swarm.py");
    let out = Command::new("/usr/bin/python3")
        .args([script, &format!("{scheme}://127.0.0.1:{port}/announce")])
        .arg(work.path())
        .output()
        .expect("run /usr/bin/python3 (Debian package python3-libtorrent)");
    assert!(
        out.status.success(),
        "{}{}\ntracker log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        t.0.log_text()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("identical"));
}

#[test]
fn a_libtorrent_seeder_and_leecher_complete_a_swarm_through_it_over_http() {
    libtorrent_swarm_through("http");
}

/// libtorrent shares one UDP connection id per tracker among all sessions of a process,
/// so the leecher announces with an id the tracker handed to the seeder's socket: the
/// id must bind the IP, not the port.
#[test]
fn a_libtorrent_seeder_and_leecher_complete_a_swarm_through_it_over_udp() {
    libtorrent_swarm_through("udp");
}

/// DHT, local peer discovery, PEX and IPv6 off: the tracker is the only way aria2 can
/// find a peer.
const ARIA2_ALONE: &[&str] = &[
    "--no-conf=true",
    "--enable-dht=false",
    "--enable-dht6=false",
    "--bt-enable-lpd=false",
    "--enable-peer-exchange=false",
    "--disable-ipv6=true",
    "--summary-interval=0",
    "--console-log-level=warn",
    "--file-allocation=none",
];

/// A random file in `dir/seed/payload.bin` and a torrent of it (mktorrent) announcing to
/// our tracker on `port` over HTTP.
fn payload_and_torrent(dir: &std::path::Path, port: u16) -> (Vec<u8>, std::path::PathBuf) {
    require_program("mktorrent", "mktorrent");
    let seed = dir.join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    let data = common::random_bytes(3 * 1024 * 1024 + 777, 11);
    std::fs::write(seed.join("payload.bin"), &data).unwrap();
    let torrent = dir.join("p.torrent");
    let st = Command::new("mktorrent")
        .args([
            "-a",
            &format!("http://127.0.0.1:{port}/announce"),
            "-l",
            "16",
            "-o",
        ])
        .arg(&torrent)
        .arg(seed.join("payload.bin"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "mktorrent failed");
    (data, torrent)
}

/// aria2 seeding `dir/seed` (verifies the file first, then seeds for up to 2 minutes),
/// once the tracker on `tracker_port` counts it as a seeder.
fn aria2_seeder(dir: &std::path::Path, torrent: &std::path::Path, tracker_port: u16) -> Proc {
    require_program("aria2c", "aria2");
    let log = dir.join("aria2-seed.log");
    let child = Command::new("aria2c")
        .args(ARIA2_ALONE)
        .arg("-d")
        .arg(dir.join("seed"))
        .args([
            &format!("--listen-port={}", free_port()),
            "--seed-ratio=0.0",
            "--seed-time=2",
            "--check-integrity=true",
        ])
        .arg(torrent)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc {
        name: "aria2 seeder".into(),
        child,
        log,
    };
    // A seeding aria2 never connects out, so a leecher must learn of it from the tracker:
    // wait (hang guard only) until its announce is in before a leecher starts.
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while !contains(&get(tracker_port, "/stats.json"), b"\"complete\":1") {
        assert!(
            std::time::Instant::now() < end,
            "aria2 never announced as a seeder"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    p
}

#[test]
fn an_aria2_seeder_and_an_aria2_leecher_find_each_other_only_through_it() {
    let port = free_port();
    let t = start_tracker(port);
    let work = tempfile::tempdir().unwrap();
    let (data, torrent) = payload_and_torrent(work.path(), port);
    let _seed = aria2_seeder(work.path(), &torrent, port);
    let leech = work.path().join("leech");
    let out = Command::new("aria2c")
        .args(ARIA2_ALONE)
        .arg("-d")
        .arg(&leech)
        .args([
            &format!("--listen-port={}", free_port()),
            "--seed-time=0",
            "--bt-stop-timeout=90",
        ])
        .arg(&torrent)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aria2 leecher: {}{}\ntracker log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        t.0.log_text()
    );
    assert!(std::fs::read(leech.join("payload.bin")).unwrap() == data);
    // Both announced: the scrape saw them.
    let stats = get(port, "/stats.json");
    assert!(
        !contains(&stats, b"\"announces\":0"),
        "{}",
        String::from_utf8_lossy(&stats)
    );
}
