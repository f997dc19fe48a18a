//! Our announce client (`bt::announce::announce`, HTTP and UDP through one function)
//! against real trackers on 127.0.0.1: `swarmlet tracker` and opentracker.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::{Proc, free_port, require_program, wait_listening};
use swarmlet::bt::announce::{AnnounceError, AnnounceRequest, Event, announce};

fn request(info_hash: [u8; 20], id: u8, port: u16, left: u64) -> AnnounceRequest {
    AnnounceRequest {
        info_hash,
        peer_id: [id; 20],
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event: Event::Started,
        numwant: Some(50),
        key: id as u32,
        tracker_id: None,
    }
}

/// Two peers announce through `url`: the second learns the first (127.0.0.1:port), and
/// the counts say one seeder and one leecher.
fn two_peers_meet(url: &str, info_hash: [u8; 20]) {
    let first = announce(url, &request(info_hash, 1, 7101, 0)).unwrap_or_else(|e| {
        panic!("{url}: {e} ({:?})", std::error::Error::source(&e));
    });
    assert!(first.interval.as_secs() > 0, "{url}: {first:?}");
    let second = announce(url, &request(info_hash, 2, 7102, 100)).unwrap();
    let seeder: SocketAddr = "127.0.0.1:7101".parse().unwrap();
    assert!(second.peers.contains(&seeder), "{url}: {second:?}");
    assert_eq!(second.seeders, Some(1), "{url}: {second:?}");
    assert_eq!(second.leechers, Some(1), "{url}: {second:?}");
}

#[test]
fn our_client_announces_to_swarmlet_tracker_over_http_and_udp() {
    let port = free_port();
    let (_t, _dir) = common::start_swarmlet_tracker(port);
    two_peers_meet(&format!("http://127.0.0.1:{port}/announce"), [0x11; 20]);
    two_peers_meet(&format!("udp://127.0.0.1:{port}/announce"), [0x22; 20]);
    // A refusal comes back as the tracker's failure reason.
    let mut bad = request([0x33; 20], 3, 7103, 0);
    bad.port = 0;
    match announce(&format!("http://127.0.0.1:{port}/announce"), &bad) {
        Err(AnnounceError::Http(e)) => assert!(e.to_string().contains("bad port"), "{e}"),
        other => panic!("port 0 accepted: {other:?}"),
    }
}

#[test]
fn our_client_announces_to_opentracker_over_http_and_udp() {
    let ot = require_program("opentracker", "opentracker");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    // Debian's opentracker is built as a whitelist tracker: list our two infohashes.
    let wl = dir.path().join("whitelist");
    std::fs::write(&wl, format!("{}\n{}\n", "44".repeat(20), "55".repeat(20))).unwrap();
    let conf = dir.path().join("opentracker.conf");
    std::fs::write(
        &conf,
        format!(
            "listen.tcp 127.0.0.1:{port}\nlisten.udp 127.0.0.1:{port}\naccess.whitelist {}\n",
            wl.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("opentracker.log");
    let child = Command::new(ot)
        .arg("-f")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _t = Proc {
        name: "opentracker".into(),
        child,
        log,
    };
    wait_listening(format!("127.0.0.1:{port}").parse().unwrap());
    two_peers_meet(&format!("http://127.0.0.1:{port}/announce"), [0x44; 20]);
    two_peers_meet(&format!("udp://127.0.0.1:{port}/announce"), [0x55; 20]);
    // Not on its whitelist: opentracker's failure reason reaches us.
    match announce(
        &format!("http://127.0.0.1:{port}/announce"),
        &request([0x66; 20], 6, 7106, 0),
    ) {
        Err(AnnounceError::Http(e)) => assert!(e.to_string().contains("refused"), "{e}"),
        other => panic!("unlisted infohash accepted: {other:?}"),
    }
}
