//! `swarmlet download` as a full client, real processes on loopback: a multi-file
//! torrent made by mktorrent (zero-length files included) from a libtorrent seeder; a
//! swarm of one seed and two leechers of ours, where the leechers upload to each other
//! while downloading; a second run on complete data that fetches nothing; and through our
//! tracker (no --peer): our leecher from our seed, aria2 from our seed, ours from aria2.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::bt::{
    Killed, LT_PEER, TREE_PIECES, assert_same_tree, finish, line_starting, make_torrent, python,
    spawn_download, swarmlet_seed, uploaded, wait_for_a_seeder,
};

#[test]
fn download_of_a_mktorrent_multi_file_torrent_from_libtorrent_is_identical() {
    let d = tempfile::tempdir().unwrap();
    let torrent = make_torrent(d.path());
    let mut lt = Killed(
        Command::new(python())
            .args([LT_PEER, "seed", torrent.to_str().unwrap()])
            .arg(d.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let port = line_starting(&mut lt.0, "port ");
    let port = port.split_whitespace().nth(1).unwrap().to_string();
    let ours = d.path().join("ours");
    let o = finish(spawn_download(
        &torrent,
        &ours,
        "127.0.0.1:0",
        &[format!("127.0.0.1:{port}")],
    ));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!("libtorrent -> swarmlet: {}", out.trim());
    assert_same_tree(d.path(), &ours);
}

#[test]
fn two_leechers_of_ours_upload_to_each_other_while_downloading_from_our_seed() {
    let d = tempfile::tempdir().unwrap();
    let torrent = make_torrent(d.path());
    // The seed is slowed to 256 KiB/s, so the 3.8 MB take the leechers 15 s from it
    // alone: what one leecher verified first, the other gets faster from it.
    let (_seed, seed_addr) = swarmlet_seed(&torrent, d.path(), &["--max-upload-rate", "256K"]);
    let (pa, pb) = (common::free_port(), common::free_port());
    let (la, lb) = (format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}"));
    let (da, db) = (d.path().join("a"), d.path().join("b"));
    let a = spawn_download(&torrent, &da, &la, &[seed_addr.to_string(), lb.clone()]);
    let b = spawn_download(&torrent, &db, &lb, &[seed_addr.to_string(), la.clone()]);
    let (oa, ob) = (finish(a), finish(b));
    for o in [&oa, &ob] {
        assert!(
            o.status.success(),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let (sa, sb) = (
        String::from_utf8_lossy(&oa.stdout).to_string(),
        String::from_utf8_lossy(&ob.stdout).to_string(),
    );
    eprintln!("a: {}\nb: {}", sa.trim(), sb.trim());
    assert_same_tree(d.path(), &da);
    assert_same_tree(d.path(), &db);
    let (ua, ub) = (uploaded(&sa), uploaded(&sb));
    assert!(ua > 0 && ub > 0, "leechers uploaded {ua} and {ub} bytes");
}

#[test]
fn download_again_on_complete_data_checks_and_fetches_nothing() {
    let d = tempfile::tempdir().unwrap();
    let torrent = make_torrent(d.path());
    // The data is complete where it lies; the only peer named is not there, so anything
    // fetched would fail: the run must end from the check alone.
    let dead = format!("127.0.0.1:{}", common::free_port());
    let o = finish(spawn_download(&torrent, d.path(), "127.0.0.1:0", &[dead]));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains(": downloaded 0 bytes"), "{out}");
    assert!(
        out.contains(&format!("{TREE_PIECES} pieces resumed")),
        "{out}"
    );
    assert_same_tree(d.path(), d.path());
}

#[test]
fn download_finds_our_seed_through_our_udp_tracker() {
    let d = tempfile::tempdir().unwrap();
    let (tracker, port) = our_tracker();
    // The tree, then a torrent whose only tracker is ours over UDP.
    common::bt::write_tree(d.path());
    let url = format!("udp://127.0.0.1:{port}/announce");
    let torrent = common::bt::mktorrent(d.path(), "u.torrent", &[url]);
    let (seed, _) = swarmlet_seed(&torrent, d.path(), &[]);
    // No --peer: the only way to the seed is the tracker's peer list. The seed's first
    // announce may still be on its way, and the leecher re-announces only after the
    // tracker's interval: wait until the tracker counts the seed.
    wait_for_a_seeder(port, &torrent);
    let ours = d.path().join("ours");
    let o = finish(spawn_download(&torrent, &ours, "127.0.0.1:0", &[]));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_same_tree(d.path(), &ours);
    drop(seed);
    drop(tracker);
}

/// Starts `swarmlet tracker` on a fresh loopback port; returns it and the port.
fn our_tracker() -> (Killed, u16) {
    let port = common::free_port();
    let t = Killed(
        Command::new(common::bin("swarmlet"))
            .args(["tracker", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_listening(format!("127.0.0.1:{port}").parse().unwrap());
    (t, port)
}

/// `dir/a.torrent` for the tree under `dir/t`, with two tiers on our tracker: HTTP
/// first (aria2 speaks UDP trackers only through its DHT socket, which is off), UDP
/// second (ours: its HTTP announce client is not there yet). Both reach one swarm.
fn torrent_for_aria2(dir: &Path, port: u16) -> PathBuf {
    common::bt::write_tree(dir);
    let trackers = [
        format!("http://127.0.0.1:{port}/announce"),
        format!("udp://127.0.0.1:{port}/announce"),
    ];
    common::bt::mktorrent(dir, "a.torrent", &trackers)
}

/// aria2c on loopback only, DHT, LPD and PEX off (it has no UPnP/NAT-PMP), listening on
/// `port`, with `extra` arguments.
fn aria2(port: u16, extra: &[&str]) -> Command {
    let mut c = Command::new(common::require_program("aria2c", "aria2"));
    c.args([
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--interface=127.0.0.1",
        "--summary-interval=0",
        "--console-log-level=warn",
        "--bt-stop-timeout=60",
    ])
    .arg(format!("--listen-port={port}"))
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    c
}

#[test]
fn aria2_downloads_from_swarmlet_seed_through_our_tracker() {
    let d = tempfile::tempdir().unwrap();
    let (_tracker, port) = our_tracker();
    let torrent = torrent_for_aria2(d.path(), port);
    let (_seed, _) = swarmlet_seed(&torrent, d.path(), &[]);
    wait_for_a_seeder(port, &torrent);
    let theirs = d.path().join("aria2");
    let child = aria2(common::free_port(), &["--seed-time=0", "-d"])
        .arg(&theirs)
        .arg(&torrent)
        .spawn()
        .unwrap();
    let o = finish(child);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_tree(d.path(), &theirs);
}

#[test]
fn swarmlet_downloads_from_an_aria2_seeder_through_our_tracker() {
    let d = tempfile::tempdir().unwrap();
    let (_tracker, port) = our_tracker();
    let torrent = torrent_for_aria2(d.path(), port);
    // -V checks the data, then aria2 seeds (for at most 2 minutes; killed at the end).
    let _aria2 = Killed(
        aria2(common::free_port(), &["-V", "--seed-time=2", "-d"])
            .arg(d.path())
            .arg(&torrent)
            .spawn()
            .unwrap(),
    );
    // aria2 announces once it has checked the data; the leecher's own first announce
    // may come before that, and its next only after the tracker's interval: wait until
    // the tracker's scrape counts aria2 as a seeder.
    wait_for_a_seeder(port, &torrent);
    let ours = d.path().join("ours");
    let o = finish(spawn_download(&torrent, &ours, "127.0.0.1:0", &[]));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_same_tree(d.path(), &ours);
}

#[test]
fn download_with_seed_serves_libtorrent_once_complete_and_exits_0_on_sigterm() {
    let d = tempfile::tempdir().unwrap();
    let torrent = make_torrent(d.path());
    let (mut seed, seed_addr) = swarmlet_seed(&torrent, d.path(), &[]);
    let ours = d.path().join("ours");
    let mut leech = Command::new(common::bin("swarmlet"))
        .args(["download", torrent.to_str().unwrap(), "-o"])
        .arg(&ours)
        .args(["--listen", "127.0.0.1:0", "--seed", "--peer"])
        .arg(seed_addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Once it says it seeds, the first seed is gone: libtorrent can only get the data
    // from the leecher turned seeder.
    let line = line_starting(&mut leech, "seeding ");
    let addr = line.rsplit(' ').next().unwrap().to_string();
    let _ = seed.0.kill();
    let _ = seed.0.wait();
    assert_same_tree(d.path(), &ours);
    let theirs = d.path().join("lt");
    let o = Command::new(python())
        .args([LT_PEER, "leech", torrent.to_str().unwrap()])
        .arg(&theirs)
        .arg(&addr)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert_same_tree(d.path(), &theirs);
    // SAFETY: kill(2) on the pid of our own child, still unreaped.
    unsafe { libc::kill(leech.id() as i32, libc::SIGTERM) };
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = leech.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "the seeding leecher ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn a_download_interrupted_by_sigterm_exits_non_zero_and_the_next_run_resumes() {
    let d = tempfile::tempdir().unwrap();
    let torrent = make_torrent(d.path());
    // 128 KiB/s: the 3.8 MB take half a minute, so the first run is stopped midway.
    let (_seed, seed_addr) = swarmlet_seed(&torrent, d.path(), &["--max-upload-rate", "128K"]);
    let seed_addr = seed_addr.to_string();
    let ours = d.path().join("ours");
    let first = spawn_download(
        &torrent,
        &ours,
        "127.0.0.1:0",
        std::slice::from_ref(&seed_addr),
    );
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill(2) on the pid of our own child, still unreaped.
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    let o = finish(first);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(130), "{out}");
    assert!(out.contains("interrupted: "), "{out}");
    let second = finish(spawn_download(&torrent, &ours, "127.0.0.1:0", &[seed_addr]));
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{out}");
    let resumed: usize = out
        .split(" pieces resumed")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resumed count in {out}"));
    assert!(resumed > 0, "{out}");
    assert_same_tree(d.path(), &ours);
}
