//! Transmission (transmission-cli 3.00, Debian package transmission-cli) both ways:
//! `swarmlet download` fetches a multi-piece random file from a Transmission seeder, and
//! Transmission downloads it from `swarmlet seed`. Both run in a private network
//! namespace: Transmission treats 127.0.0.0/8 as a martian address and never dials it,
//! so the namespace's `lo` also carries 10.77.0.1 and 10.77.0.2, which it does dial.
//! DHT, LSD, PEX, uTP and port forwarding are off in its settings.json, its config
//! directory is a temporary one.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::bt::{Killed, finish, spawn_download, succeeded, summary, swarmlet_seed_on};
use common::random_bytes;

/// Our side's address in the namespace.
const OURS: &str = "10.77.0.1";
/// Transmission's address in the namespace.
const THEIRS: &str = "10.77.0.2";

/// The file both tests move: 12 pieces of 256 KiB, the last one short.
const SIZE: usize = 3_000_017;
/// Why 256 KiB pieces: Transmission 3.00 answers our requests once per bandwidth pulse
/// (500 ms), one piece's worth a pulse with our one-piece-at-a-time connection; larger
/// pieces keep the test short without changing what it checks.
const PIECE: &str = "262144";

/// Hang guard for Transmission finishing a download (seconds of work on loopback).
const TRANSMISSION_LIMIT: Duration = Duration::from_secs(120);

/// Adds our two 10.77.0.x addresses to `lo` (inside [`common::in_private_netns`] only).
fn add_addresses() {
    assert!(
        common::is_private_netns(),
        "only inside a private namespace"
    );
    for a in [OURS, THEIRS] {
        let o = Command::new(common::require_program("ip", "iproute2"))
            .args(["addr", "add", &format!("{a}/24"), "dev", "lo"])
            .output()
            .unwrap();
        assert!(o.status.success(), "ip addr add {a}: {o:?}");
    }
}

/// The random file `dir/f.bin` and `dir/f.torrent` made by `swarmlet create` with the
/// given tracker URLs.
fn file_and_torrent(dir: &Path, trackers: &[String]) -> (Vec<u8>, PathBuf) {
    let data = random_bytes(SIZE, 16);
    std::fs::write(dir.join("f.bin"), &data).unwrap();
    let mut c = Command::new(common::bin("swarmlet"));
    c.current_dir(dir).args([
        "create",
        "f.bin",
        "--piece-length",
        PIECE,
        "-o",
        "f.torrent",
    ]);
    for t in trackers {
        c.args(["-t", t]);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (data, dir.join("f.torrent"))
}

/// transmission-cli on `torrent`, data in `data_dir`, listening on THEIRS:`port`, its
/// config (settings.json) and log under `work`.
fn transmission(work: &Path, data_dir: &Path, port: u16, torrent: &Path) -> (Killed, PathBuf) {
    let program = common::require_program("transmission-cli", "transmission-cli");
    let cfg = work.join("transmission");
    std::fs::create_dir_all(&cfg).unwrap();
    let settings = serde_json::json!({
        "dht-enabled": false,
        "lpd-enabled": false,
        "pex-enabled": false,
        "utp-enabled": false,
        "port-forwarding-enabled": false,
        "blocklist-enabled": false,
        "rpc-enabled": false,
        "bind-address-ipv4": THEIRS,
        "bind-address-ipv6": "::1",
        "peer-port": port,
        "peer-port-random-on-start": false,
        // Debug: the end of its data check is logged at this level only.
        "message-level": 3,
    });
    std::fs::write(cfg.join("settings.json"), settings.to_string()).unwrap();
    let log = work.join("transmission.log");
    let child = Command::new(program)
        .arg("-g")
        .arg(&cfg)
        .arg("-w")
        .arg(data_dir)
        .args(["-p", &port.to_string(), "-M"])
        .arg(torrent)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (Killed(child), log)
}

/// Waits (hang guard: [`TRANSMISSION_LIMIT`]) until Transmission's log has `text`.
fn wait_for_line(log: &Path, text: &str) {
    let started = Instant::now();
    while !std::fs::read_to_string(log).is_ok_and(|l| l.contains(text)) {
        assert!(
            started.elapsed() < TRANSMISSION_LIMIT,
            "transmission never logged {text:?}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn swarmlet_downloads_from_a_transmission_seeder() {
    common::in_private_netns(|| {
        add_addresses();
        let d = tempfile::tempdir().unwrap();
        let (data, torrent) = file_and_torrent(d.path(), &[]);
        let port = common::free_port();
        let (_tx, log) = transmission(d.path(), d.path(), port, &torrent);
        // Transmission listens before it has checked its data. A peer that connects
        // meanwhile may be told it has nothing and hear no `have` afterwards (seen
        // once on a loaded machine: both sides then idled until the hang guard), so
        // dial only once it says the check is done.
        wait_for_line(&log, "Verification is done");
        let ours = d.path().join("ours");
        let o = finish(spawn_download(
            &torrent,
            &ours,
            &format!("{OURS}:0"),
            &[format!("{THEIRS}:{port}")],
        ));
        let out = succeeded(&o);
        eprintln!("transmission -> swarmlet: {}", summary(&out));
        let got = std::fs::read(ours.join("f.bin")).unwrap();
        assert!(
            got == data,
            "our copy differs; transmission said:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    });
}

#[test]
fn transmission_downloads_from_swarmlet_seed_through_our_tracker() {
    common::in_private_netns(|| {
        add_addresses();
        let d = tempfile::tempdir().unwrap();
        let tracker_port = common::free_port();
        let _tracker = Killed(
            Command::new(common::bin("swarmlet"))
                .args(["tracker", "--listen", &format!("{OURS}:{tracker_port}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        common::wait_listening(format!("{OURS}:{tracker_port}").parse().unwrap());
        let url = format!("http://{OURS}:{tracker_port}/announce");
        let (data, torrent) = file_and_torrent(d.path(), &[url]);
        // Transmission dials whatever address the tracker saw our announce come from
        // (one of the namespace's): the seed listens on all of them, all inside the
        // private namespace.
        let (_seed, _) = swarmlet_seed_on(&torrent, d.path(), "0.0.0.0:0", &[]);
        let theirs = d.path().join("transmission-data");
        std::fs::create_dir_all(&theirs).unwrap();
        let started = Instant::now();
        let (mut tx, log) = transmission(d.path(), &theirs, common::free_port(), &torrent);
        // Transmission keeps seeding once complete: done is its file, whole, under the
        // final name (it writes `f.bin.part` until then).
        let copy = theirs.join("f.bin");
        loop {
            if std::fs::read(&copy).is_ok_and(|got| got == data) {
                break;
            }
            assert!(
                started.elapsed() < TRANSMISSION_LIMIT,
                "transmission did not finish in {TRANSMISSION_LIMIT:?}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            if let Some(s) = tx.0.try_wait().unwrap() {
                panic!(
                    "transmission exited {s}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "swarmlet seed -> transmission: {SIZE} bytes in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    });
}
