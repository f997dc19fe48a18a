//! Step 3 through real processes, each test inside its own private network namespace
//! (see `common::in_private_netns`): discovery by broadcast to 255.255.255.255:9000,
//! several trackers, a tracker that splits its reply, the tracker's UDP error replies
//! under hostile datagrams, and the failure when nobody answers. Nothing here sends a
//! datagram from the host's namespace: every test asserts it is in a private one.

mod common;

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use swarmlet::course::discovery::{self, DiscoveryConfig};
use swarmlet::course::tracker_udp::bind_reuse;
use swarmlet::wire::{ErrorCode, Message, Tolerance, TrackerInfo};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// Where trackers answer inside the namespace.
fn discovery_lo() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9000)
}

/// Runs charlie in `root` with debug logs (discovery logs ignored datagrams at debug).
fn charlie_debug(root: &Path, args: &[&str]) -> std::process::Output {
    assert!(
        is_private_netns(),
        "step 3 must never broadcast from the host"
    );
    charlie_with_env(root, args, &[("RUST_LOG", "debug")])
}

/// Runs step 3 in a root of its own that holds nothing at all (step 3 reads no file),
/// and checks the downloaded file against the original.
fn step3_in_empty_root(sys: &System, args: &[&str]) -> String {
    let empty = tempfile::tempdir().unwrap();
    let mut all = vec!["--step", "3"];
    all.extend_from_slice(args);
    let out = charlie_debug(empty.path(), &all);
    let err = stderr(&out);
    assert!(out.status.success(), "charlie {all:?} failed:\n{err}");
    let want = fs::read(sys.root().join("files/test.bin")).unwrap();
    let got = fs::read(empty.path().join("chunks/charlie/test.bin")).unwrap();
    assert!(want == got, "step 3 file differs");
    err
}

/// The milliseconds in the first log line containing `marker`, after `after`.
fn millis_after(log: &str, marker: &str, after: &str) -> Option<f64> {
    let line = log.lines().find(|l| l.contains(marker))?;
    let rest = line.split(after).nth(1)?;
    rest.split(" ms").next()?.trim().parse().ok()
}

#[test]
fn step3_downloads_with_the_default_broadcast_address() {
    in_private_netns(|| {
        let mut sys = System::new(6 * MIB + 789, 512 * KIB);
        sys.start_all();
        let log = step3_in_empty_root(&sys, &[]);
        assert!(log.contains("heard tracker \"tracker\""), "{log}");
        assert!(
            log.contains(&format!(
                "using tracker \"tracker\" at {}",
                sys.addr("tracker")
            )),
            "{log}"
        );
        // Figures for the report: first answer and the whole discovery.
        let first = millis_after(&log, "heard tracker", " after ").unwrap();
        let picked = millis_after(&log, "using tracker", "picked after ").unwrap();
        eprintln!("discovery: first TRACKER_INFO after {first} ms, picked after {picked} ms");
        // Within the three tries even on a loaded machine (typically well under 1 ms).
        assert!(first < 900.0, "{first} ms for a reply on lo");
        // Step 3 also works after steps 1 and 2 in the same root.
        let _ = fs::remove_dir_all(sys.chunk_dir("charlie"));
        let out = sys.charlie(&["--step", "3"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(sys.check_file());
        assert!(!sys.served("alice").is_empty() && !sys.served("bob").is_empty());
    });
}

#[test]
fn two_trackers_charlie_picks_one_or_the_named_one_and_logs_both() {
    in_private_netns(|| {
        let mut sys = System::new(3 * MIB, 512 * KIB);
        sys.start_all();
        let backup = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
        let port = backup.port().to_string();
        sys.start_at(
            "backup",
            "tracker",
            &["--name", "backup", "--port", &port],
            backup,
        );
        let main = sys.addr("tracker");

        let log = step3_in_empty_root(&sys, &[]);
        assert!(
            log.contains(&format!("heard tracker \"tracker\" at {main}")),
            "{log}"
        );
        assert!(
            log.contains(&format!("heard tracker \"backup\" at {backup}")),
            "{log}"
        );
        assert!(log.contains("using tracker \""), "{log}");

        let log = step3_in_empty_root(&sys, &["--tracker-name", "backup"]);
        assert!(
            log.contains(&format!("heard tracker \"tracker\" at {main}")),
            "{log}"
        );
        assert!(
            log.contains(&format!("using tracker \"backup\" at {backup}")),
            "{log}"
        );
        assert!(sys.proc("backup").log_text().contains("sending FILE_INFO"));

        let log = step3_in_empty_root(&sys, &["--tracker-name", "tracker"]);
        assert!(
            log.contains(&format!("using tracker \"tracker\" at {main}")),
            "{log}"
        );

        // A name nobody announces: a clear failure naming what was heard.
        let empty = tempfile::tempdir().unwrap();
        let out = charlie_debug(
            empty.path(),
            &[
                "--step",
                "3",
                "--tracker-name",
                "nobody",
                "--discover-ms",
                "100",
            ],
        );
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("no tracker named \"nobody\" answered DISCOVER_TRACKER on 255.255.255.255:9000 within 3 tries of 100 ms"),
            "{err}"
        );
        assert!(err.contains("\"backup\""), "{err}");
    });
}

/// A fake tracker on UDP 9000 in the calling thread's namespace that answers each
/// DISCOVER_TRACKER with junk first (garbage, an ERROR, a lone header never completed
/// from another socket) and then its TRACKER_INFO in two datagrams, header then body.
/// It stops after `max` requests or `limit` time, whichever comes first.
fn split_tracker(info: TrackerInfo, max: usize, limit: Duration) -> std::thread::JoinHandle<usize> {
    let sock = bind_reuse(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9000)).unwrap();
    let junk_sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let reply = Message::TrackerInfo(info).encode().unwrap();
    std::thread::spawn(move || {
        let end = Instant::now() + limit;
        let mut answered = 0;
        let mut buf = [0u8; 2048];
        while answered < max && Instant::now() < end {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            if Message::decode(&buf[..n], Tolerance::default()) != Ok(Message::DiscoverTracker) {
                continue;
            }
            let error = Message::Error(ErrorCode::InvalidRequest).encode().unwrap();
            sock.send_to(b"not a message", from).unwrap();
            sock.send_to(&error, from).unwrap();
            junk_sock.send_to(&reply[..8], from).unwrap();
            sock.send_to(&reply[..8], from).unwrap();
            std::thread::sleep(Duration::from_millis(30));
            sock.send_to(&reply[8..], from).unwrap();
            answered += 1;
        }
        answered
    })
}

#[test]
fn a_tracker_replying_in_two_datagrams_is_understood() {
    in_private_netns(|| {
        let mut sys = System::new(2 * MIB, 512 * KIB);
        sys.start_peers();
        sys.start("tracker", "tracker", &["--no-udp"]);
        let fake = split_tracker(
            TrackerInfo {
                addr: sys.addr("tracker"),
                name: "split".into(),
            },
            1,
            Duration::from_secs(30),
        );
        let log = step3_in_empty_root(&sys, &[]);
        assert_eq!(fake.join().unwrap(), 1);
        assert!(log.contains("reply in two datagrams reassembled"), "{log}");
        assert!(log.contains("heard tracker \"split\""), "{log}");
        assert!(log.contains("ignoring a 13-byte datagram"), "{log}");
        assert!(log.contains("ignoring ERROR"), "{log}");
        assert!(log.contains("never followed by its body"), "{log}");
        assert_eq!(log.matches("heard tracker").count(), 1, "{log}");
    });
}

fn ask(sock: &UdpSocket, to: SocketAddrV4, datagram: &[u8]) -> Option<Vec<u8>> {
    sock.send_to(datagram, to).unwrap();
    let mut buf = [0u8; 2048];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

fn error(code: ErrorCode) -> Vec<u8> {
    Message::Error(code).encode().unwrap()
}

#[test]
fn tracker_udp_errors_floods_and_still_answers() {
    in_private_netns(|| {
        let mut sys = System::new(KIB, 512 * KIB);
        // Bound to 0.0.0.0: it must announce an address the asker can reach.
        sys.start_peers();
        let tracker = sys.addr("tracker");
        sys.start_logged(
            "tracker",
            "tracker",
            &["--bind", "0.0.0.0", "--name", "t0"],
            tracker,
            "info",
        );
        let tcp_port = sys.addr("tracker").port();
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let to = discovery_lo();

        let discover = Message::DiscoverTracker.encode().unwrap();
        let expect_info = |reply: Option<Vec<u8>>, when: &str| {
            let reply = reply.unwrap_or_else(|| panic!("no TRACKER_INFO {when}"));
            match Message::decode(&reply, Tolerance::default()).unwrap() {
                Message::TrackerInfo(i) => {
                    assert_eq!(i.name, "t0");
                    assert_eq!(i.addr, SocketAddrV4::new(Ipv4Addr::LOCALHOST, tcp_port));
                }
                other => panic!("expected TRACKER_INFO, got {other:?}"),
            }
        };
        expect_info(ask(&sock, to, &discover), "at first");

        // Garbage of every kind: ERROR 0, and the tracker still answers.
        let e0 = Some(error(ErrorCode::InvalidMessageFormat));
        assert_eq!(ask(&sock, to, b""), e0);
        assert_eq!(ask(&sock, to, &[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 2]), e0);
        assert_eq!(ask(&sock, to, &discover[..7]), e0);
        assert_eq!(ask(&sock, to, &[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]), e0);
        assert_eq!(ask(&sock, to, &random_bytes(65_507, 7)), e0);
        // Well formed but not DISCOVER_TRACKER: ERROR 1.
        let e1 = Some(error(ErrorCode::InvalidRequest));
        assert_eq!(ask(&sock, to, &Message::GetFileInfo.encode().unwrap()), e1);
        let chunk = Message::Chunk {
            hash: swarmlet::hash::ChunkHash::of(b"x"),
            data: vec![7; 60_000],
        };
        assert_eq!(ask(&sock, to, &chunk.encode().unwrap()), e1);
        // An ERROR gets no answer (two programs answering everything would ping-pong).
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert_eq!(ask(&sock, to, &error(ErrorCode::InvalidRequest)), None);
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        expect_info(ask(&sock, to, &discover), "after the errors");

        // A flood of random datagrams of random sizes for 3 s (bounded in count and
        // time; one sender, as fast as it can): discovery by broadcast, as charlie does
        // it, must succeed while the flood is still going on.
        let flood_for = Duration::from_secs(3);
        let flooders: Vec<_> = (0..1u64)
            .map(|k| {
                let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
                std::thread::spawn(move || {
                    let end = Instant::now() + flood_for;
                    let data = random_bytes(65_507, 99 + k);
                    let mut sent = 0u64;
                    let mut x = 12345u64 + k;
                    while sent < 20_000_000 && Instant::now() < end {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Mostly small datagrams (the most per second), some up to 64 KiB.
                        let len = if x.is_multiple_of(8) {
                            (x as usize >> 8) % 65_508
                        } else {
                            (x as usize >> 8) % 64
                        };
                        let _ = s.send_to(&data[..len], to);
                        sent += 1;
                    }
                    (sent, Instant::now())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        // At most 20 x 100 ms: done before the flood ends, even if tries are lost.
        let cfg = DiscoveryConfig {
            window: Duration::from_millis(100),
            tries: 20,
            ..DiscoveryConfig::default()
        };
        let found = discovery::discover(&cfg).expect("discovery during the flood");
        let found_at = Instant::now();
        assert_eq!(found.chosen.name, "t0");
        assert_eq!(
            found.chosen.addr,
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, tcp_port)
        );
        let results: Vec<(u64, Instant)> =
            flooders.into_iter().map(|f| f.join().unwrap()).collect();
        let sent: u64 = results.iter().map(|r| r.0).sum();
        let first_answer = found.heard[0].after;
        eprintln!(
            "flood: {sent} datagrams in {flood_for:?}; first TRACKER_INFO {:.1} ms after the \
             first DISCOVER, in try {} of 20",
            first_answer.as_secs_f64() * 1000.0,
            found.tries
        );
        assert!(
            sent > 10_000,
            "the flood was too small to mean anything: {sent}"
        );
        for (_, ended) in &results {
            assert!(found_at < *ended, "discovery ended after the flood");
        }
        assert!(
            sys.proc("tracker").child.try_wait().unwrap().is_none(),
            "tracker died"
        );
        // And afterwards a plain exchange still works, as does a whole step 3.
        // Right after the flood the tracker's receive queue may still be full, and a
        // datagram arriving then is dropped by the kernel (UDP): ask like a client
        // would, a few times.
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let reply = (0..10).find_map(|_| ask(&sock, to, &discover));
        expect_info(reply, "after the flood");
        let log = step3_in_empty_root(&sys, &[]);
        assert!(
            log.contains(&format!("using tracker \"t0\" at 127.0.0.1:{tcp_port}")),
            "{log}"
        );
    });
}

#[test]
fn no_tracker_answering_is_a_clear_error() {
    in_private_netns(|| {
        let empty = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let out = charlie_debug(empty.path(), &["--step", "3"]);
        let took = t0.elapsed();
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("no tracker answered DISCOVER_TRACKER on 255.255.255.255:9000 within 3 tries of 300 ms"),
            "{err}"
        );
        assert!(took < Duration::from_secs(10), "gave up after {took:?}");
        assert!(
            took >= Duration::from_millis(900),
            "3 tries of 300 ms took {took:?}"
        );
        // Another port and window are honoured and named.
        let out = charlie_debug(
            empty.path(),
            &[
                "--step",
                "3",
                "--discover-port",
                "9123",
                "--discover-ms",
                "50",
                "--discover-tries",
                "2",
            ],
        );
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("on 255.255.255.255:9123 within 2 tries of 50 ms"),
            "{}",
            stderr(&out)
        );
    });
}
