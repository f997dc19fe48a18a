//! Swarms that meet only through opentracker (Debian package opentracker), over HTTP and
//! over UDP, on 127.0.0.1: one seeder (ours, or libtorrent) and three leechers started
//! together, two of ours and one libtorrent. Every leecher must end with the identical
//! tree, and one of our leechers must have verified pieces it got from the other.
//!
//! Debian builds opentracker with `WANT_ACCESSLIST_WHITE` (see its README.Debian): it
//! serves only the infohashes listed in the file named by `access.whitelist` in its
//! config file, so each test lists its torrent's infohash there before starting it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::bt::{
    Killed, LT_PEER, assert_same_tree, download_command, finish, infohash_hex, line_starting,
    mktorrent, python, succeeded, swarmlet_seed, wait_for_a_seeder, write_tree,
};
use common::{Proc, free_port, require_program, wait_listening};

/// The seed's upload limit, bytes per second: the three leechers' 11.4 MB would take 22 s
/// from the seed alone, so what one of ours verified first, the other gets from it.
const SEED_RATE: &str = "524288";

/// opentracker on 127.0.0.1:`port` (TCP and UDP) serving only `infohash_hex`; its config,
/// whitelist and log live in `dir`, also its working directory. The whitelist's path is
/// absolute: run as root, opentracker chroots to its working directory and a relative
/// path then fails to open ("Can't open accesslist file").
fn opentracker(dir: &Path, port: u16, infohash_hex: &str) -> Proc {
    let program = require_program("opentracker", "opentracker");
    let whitelist = dir.join("whitelist");
    std::fs::write(&whitelist, format!("{infohash_hex}\n")).unwrap();
    std::fs::write(
        dir.join("opentracker.conf"),
        format!(
            "listen.tcp 127.0.0.1:{port}\nlisten.udp 127.0.0.1:{port}\naccess.whitelist {}\n",
            whitelist.display()
        ),
    )
    .unwrap();
    let log = dir.join("opentracker.log");
    let child = Command::new(program)
        .current_dir(dir)
        .args(["-f", "opentracker.conf"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let p = Proc {
        name: "opentracker".into(),
        child,
        log,
    };
    wait_listening(format!("127.0.0.1:{port}").parse().unwrap());
    p
}

/// Who seeds the swarm.
#[derive(Clone, Copy, Debug)]
enum Seeder {
    Swarmlet,
    Libtorrent,
}

/// Chunks a download's debug log says it verified from the peer labelled `from`.
fn verified_from(log: &str, from: &str) -> usize {
    let needle = format!(" verified from {from}");
    log.lines().filter(|l| l.ends_with(&needle)).count()
}

/// One seeder and three leechers (two of ours, one libtorrent) meet through opentracker
/// at `scheme://127.0.0.1:PORT/announce`; see the file's doc.
fn swarm_through_opentracker(scheme: &str, seeder: Seeder) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let port = free_port();
    write_tree(dir);
    let url = format!("{scheme}://127.0.0.1:{port}/announce");
    let torrent: PathBuf = mktorrent(dir, "t.torrent", &[url]);
    let ot_dir = dir.join("opentracker");
    std::fs::create_dir_all(&ot_dir).unwrap();
    let _tracker = opentracker(&ot_dir, port, &infohash_hex(&torrent));

    let _seed = match seeder {
        Seeder::Swarmlet => swarmlet_seed(&torrent, dir, &["--max-upload-rate", SEED_RATE]).0,
        Seeder::Libtorrent => {
            let mut lt = Killed(
                Command::new(python())
                    .args([LT_PEER, "seed", torrent.to_str().unwrap()])
                    .arg(dir)
                    .arg(SEED_RATE)
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
            line_starting(&mut lt.0, "port ");
            lt
        }
    };
    // The seeder announces once its data is checked, some time after it says it seeds:
    // until opentracker counts it, a leecher's first announce would not list it, and
    // the next comes only after opentracker's interval (half an hour).
    wait_for_a_seeder(port, &torrent);

    // Started together, no --peer: the tracker is the only way to anyone.
    let (pa, pb) = (free_port(), free_port());
    let (la, lb) = (format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}"));
    let (da, db, dl) = (dir.join("a"), dir.join("b"), dir.join("lt"));
    let ours = |d: &Path, listen: &str| {
        download_command(&torrent, d, listen, &[])
            .env("RUST_LOG", "debug")
            .spawn()
            .unwrap()
    };
    let a = ours(&da, &la);
    let b = ours(&db, &lb);
    let lt = Command::new(python())
        .args([LT_PEER, "leech", torrent.to_str().unwrap()])
        .arg(&dl)
        .arg("-")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (oa, ob, ol) = (finish(a), finish(b), finish(lt));
    let (sa, sb) = (succeeded(&oa), succeeded(&ob));
    let sl = succeeded(&ol);
    eprintln!(
        "{scheme}, {seeder:?} seeding:\na: {}\nb: {}\nlibtorrent: {}",
        common::bt::summary(&sa),
        common::bt::summary(&sb),
        sl.trim()
    );
    for d in [&da, &db, &dl] {
        assert_same_tree(dir, d);
    }
    let (log_a, log_b) = (
        String::from_utf8_lossy(&oa.stderr),
        String::from_utf8_lossy(&ob.stderr),
    );
    // The peer each of ours dialed is labelled by the address the tracker listed: the
    // other's --listen address.
    let (a_from_b, b_from_a) = (verified_from(&log_a, &lb), verified_from(&log_b, &la));
    eprintln!("a verified {a_from_b} pieces from b, b {b_from_a} from a");
    assert!(
        a_from_b + b_from_a > 0,
        "our leechers got nothing from each other:\na: {sa}\nb: {sb}"
    );
    let uploaded = common::bt::uploaded(&sa) + common::bt::uploaded(&sb);
    assert!(
        uploaded > 0,
        "our leechers uploaded nothing:\na: {sa}\nb: {sb}"
    );
}

#[test]
fn a_swarm_with_our_seed_meets_through_opentracker_over_http() {
    swarm_through_opentracker("http", Seeder::Swarmlet);
}

#[test]
fn a_swarm_with_our_seed_meets_through_opentracker_over_udp() {
    swarm_through_opentracker("udp", Seeder::Swarmlet);
}

#[test]
fn a_swarm_with_a_libtorrent_seed_meets_through_opentracker_over_http() {
    swarm_through_opentracker("http", Seeder::Libtorrent);
}

#[test]
fn a_swarm_with_a_libtorrent_seed_meets_through_opentracker_over_udp() {
    swarm_through_opentracker("udp", Seeder::Libtorrent);
}
