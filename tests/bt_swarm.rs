//! One connection per peer, used both ways: real processes on loopback. A libtorrent
//! peer that dials our leecher downloads from it and uploads to it over that one
//! connection (each side starts with the half the other lacks, so neither can finish
//! without the other, and our leecher has no other peer); two of our leechers and our
//! seed meet through our tracker, and the two leechers hold one connection between them
//! that both upload over.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::{bt, random_bytes};

const LT_TRADE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/lt_trade.py");

/// Hang guard for one step of a test: far beyond what a few MiB take on loopback.
const STEP_LIMIT: Duration = Duration::from_secs(120);

/// Piece length: 64 KiB (`mktorrent -l 16`).
const PIECE: usize = 64 << 10;

/// A child killed by its pid on drop, whose stdout lines are collected by a thread.
struct Peer {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Peer {
    fn spawn(name: &'static str, cmd: &mut Command) -> Peer {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                eprintln!("{name}: {line}");
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Peer {
            name,
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// The first line (since the start) that starts with `prefix`, waiting at most
    /// [`STEP_LIMIT`].
    fn line(&mut self, prefix: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.starts_with(prefix)) {
            return l.clone();
        }
        let deadline = Instant::now() + STEP_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.starts_with(prefix) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "{} never printed {prefix:?}; it printed {:?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// Sends SIGTERM (our programs then say what they uploaded and exit).
    fn terminate(&self) {
        // SAFETY: kill(2) on the pid of our own child, still unreaped (it is waited for
        // only on drop).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number after `word ` in `line`.
fn number_after(line: &str, word: &str) -> u64 {
    let tail = line
        .split(&format!("{word} "))
        .nth(1)
        .unwrap_or_else(|| panic!("no {word:?} in {line:?}"));
    tail.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no number after {word:?} in {line:?}"))
}

/// `connections: I in, O out, D duplicates closed` as (I, O).
fn connections(line: &str) -> (u64, u64) {
    let rest = line.strip_prefix("connections: ").unwrap();
    let mut it = rest.split(", ");
    let n = |s: Option<&str>| -> u64 { s.unwrap().split(' ').next().unwrap().parse().unwrap() };
    (n(it.next()), n(it.next()))
}

/// Writes `dir/t` (`len` random bytes) and makes `dir/t.torrent` over it with mktorrent
/// (64 KiB pieces), announcing to `announce` if given.
fn make_torrent(dir: &Path, len: usize, announce: Option<&str>) -> (PathBuf, Vec<u8>) {
    let data = random_bytes(len, 16);
    std::fs::write(dir.join("t"), &data).unwrap();
    let trackers: Vec<String> = announce.into_iter().map(str::to_string).collect();
    (bt::mktorrent(dir, "t.torrent", &trackers), data)
}

/// `swarmlet download --seed` with `extra` arguments, its stderr left to the test's.
fn swarmlet_download(dir: &Path, torrent: &Path, listen: &str, extra: &[&str]) -> Command {
    let mut c = bt::download_command(torrent, dir, listen, &[]);
    c.arg("--seed").args(extra).stderr(Stdio::inherit());
    c
}

/// `swarmlet seed` of `torrent` over `dir` on `listen`, with `extra` arguments.
fn swarmlet_seed(torrent: &Path, dir: &Path, listen: &str, extra: &[&str]) -> Command {
    let mut c = bt::seed_command(torrent, dir, listen, extra);
    c.stderr(Stdio::inherit());
    c
}

#[test]
fn a_libtorrent_peer_that_dials_our_leecher_trades_both_ways_over_that_one_connection() {
    let d = tempfile::tempdir().unwrap();
    let len = 40 * PIECE + 12_345;
    let (torrent, data) = make_torrent(d.path(), len, None);
    let half = 20 * PIECE;
    // Ours holds the first half, libtorrent the rest; the missing parts are zeros, which
    // the data checks find bad.
    let (ours, theirs) = (d.path().join("ours"), d.path().join("theirs"));
    let mut a = data.clone();
    a[half..].fill(0);
    let mut b = data.clone();
    b[..half].fill(0);
    for (dir, bytes) in [(&ours, &a), (&theirs, &b)] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("t"), bytes).unwrap();
    }
    let listen = format!("127.0.0.1:{}", common::free_port());
    // No --peer and no tracker: the only peer ours can get the second half from is the
    // one that dials it.
    let mut leecher = Peer::spawn(
        "ours",
        &mut swarmlet_download(&ours, &torrent, &listen, &[]),
    );
    leecher.line("listening on ");
    let mut lt = Peer::spawn(
        "libtorrent",
        Command::new(bt::python())
            .arg(LT_TRADE)
            .arg(&torrent)
            .arg(&theirs)
            .arg(&listen),
    );
    let summary = leecher.line("t: downloaded ");
    let conns = leecher.line("connections: ");
    lt.line("done");
    assert!(
        std::fs::read(ours.join("t")).unwrap() == data,
        "ours differs"
    );
    assert!(
        std::fs::read(theirs.join("t")).unwrap() == data,
        "libtorrent's differs"
    );
    // What ours downloaded is libtorrent's half, from one peer, over the one connection
    // libtorrent opened.
    assert_eq!(
        number_after(&summary, "downloaded"),
        (len - half) as u64,
        "{summary}"
    );
    assert_eq!(number_after(&summary, "from"), 1, "{summary}");
    assert_eq!(connections(&conns), (1, 0), "{conns}");
    drop(lt.stdin.take()); // libtorrent says what it moved, and exits
    let fin = lt.line("final ");
    assert!(
        number_after(&fin, "uploaded") >= (len - half) as u64,
        "libtorrent uploaded less than our half: {fin}"
    );
    assert!(
        number_after(&fin, "downloaded") >= half as u64,
        "libtorrent downloaded less than its half: {fin}"
    );
    assert_eq!(number_after(&fin, "peers"), 1, "{fin}");
    leecher.terminate();
    let stopped = leecher.line("seed: stopped; uploaded ");
    assert!(
        number_after(&stopped, "uploaded") >= half as u64,
        "ours uploaded less than libtorrent's missing half: {stopped}"
    );
}

#[test]
fn two_of_our_leechers_and_our_seed_through_our_tracker_share_one_connection_both_ways() {
    let d = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let (_tracker, _tracker_dir) = common::start_swarmlet_tracker(port);
    let announce = format!("http://127.0.0.1:{port}/announce");
    let len = 64 * PIECE + 777;
    let (torrent, data) = make_torrent(d.path(), len, Some(&announce));
    // A slow seed (1 MiB/s for 4 MiB, of which each leecher needs half).
    let seed_listen = format!("127.0.0.1:{}", common::free_port());
    let mut seed = Peer::spawn(
        "seed",
        &mut swarmlet_seed(
            &torrent,
            d.path(),
            &seed_listen,
            &["--max-upload-rate", "1M"],
        ),
    );
    seed.line("seeding ");
    let (da, db) = (d.path().join("a"), d.path().join("b"));
    // Each leecher starts with one half (the other zeroed, which the check finds bad), so
    // each has pieces the other lacks from the start and the slow seed is their only
    // other source: trading over their connection is the fast way, for both.
    let half = 32 * PIECE;
    for (dir, zeroed) in [(&da, half..len), (&db, 0..half)] {
        let mut part = data.clone();
        part[zeroed].fill(0);
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("t"), part).unwrap();
    }
    let (la, lb) = (
        format!("127.0.0.1:{}", common::free_port()),
        format!("127.0.0.1:{}", common::free_port()),
    );
    let mut a = Peer::spawn("a", &mut swarmlet_download(&da, &torrent, &la, &[]));
    a.line("listening on ");
    let mut b = Peer::spawn("b", &mut swarmlet_download(&db, &torrent, &lb, &[]));
    for p in [&mut a, &mut b] {
        p.line("t: downloaded ");
    }
    let (ca, cb) = (
        connections(&a.line("connections: ")),
        connections(&b.line("connections: ")),
    );
    for dir in [&da, &db] {
        assert!(
            std::fs::read(dir.join("t")).unwrap() == data,
            "{} differs",
            dir.display()
        );
    }
    // The seed only accepts: each leecher dialled it. Between the two leechers there is
    // one connection, opened by one of them and accepted by the other.
    assert_eq!(ca.0 + cb.0, 1, "incoming: a {ca:?}, b {cb:?}");
    assert_eq!(ca.1 + cb.1, 3, "outgoing: a {ca:?}, b {cb:?}");
    let mut up = Vec::new();
    for p in [&mut a, &mut b] {
        p.terminate();
        up.push(number_after(
            &p.line("seed: stopped; uploaded "),
            "uploaded",
        ));
    }
    assert!(
        up[0] > 0 && up[1] > 0,
        "the leechers uploaded {up:?} bytes to each other"
    );
}

/// Opens a plaintext BitTorrent connection to `addr` (a seed of `n` pieces) as
/// `peer_id`, exchanges handshakes and reads the seed's bitfield, which it sends once it
/// admitted the connection; `None` if the other end closed instead.
fn handshake(
    addr: &str,
    info_hash: [u8; 20],
    n: u32,
    peer_id: [u8; 20],
) -> Option<std::net::TcpStream> {
    use std::io::Write;
    use swarmlet::bt::peer_wire::{Handshake, PeerId, Reserved, read_handshake};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let h = Handshake {
        reserved: Reserved::NONE,
        info_hash,
        peer_id: PeerId(peer_id),
    };
    s.write_all(&h.encode()).ok()?;
    read_handshake(&mut s).ok()?;
    let limits = swarmlet::bt::peer_wire::Limits::new(n);
    match swarmlet::bt::peer_wire::read_message(&mut s, &limits).ok()? {
        swarmlet::bt::peer_wire::Message::Bitfield(_) => Some(s),
        m => panic!("{m:?} before the bitfield"),
    }
}

/// Whether the other end closed the connection (within the read timeout), reading
/// past whatever it sent meanwhile.
fn closed(s: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
}

/// Whether the connection stays open: nothing closes it within `wait`.
fn stays_open(s: &mut std::net::TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    use std::io::Read;
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) => {
                return matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

#[test]
fn our_seed_keeps_one_connection_per_peer_id_honours_max_peers_and_drops_requests_while_choked() {
    use std::io::Write;
    use swarmlet::bt::peer_wire::{BlockRequest, Message};
    let d = tempfile::tempdir().unwrap();
    let (torrent, _) = make_torrent(d.path(), 4 * PIECE, None);
    let m = swarmlet::bt::metainfo::Metainfo::read(&torrent).unwrap();
    let ih = m.info_hash.0;
    let listen = format!("127.0.0.1:{}", common::free_port());
    let mut seed = Peer::spawn(
        "seed",
        &mut swarmlet_seed(&torrent, d.path(), &listen, &["--max-peers", "2"]),
    );
    seed.line("seeding ");
    let n = m.pieces.len() as u32;
    let mut first = handshake(&listen, ih, n, [1; 20]).expect("first peer refused");
    // The same peer id again: the second connection is closed, the first stays.
    assert!(
        handshake(&listen, ih, n, [1; 20]).is_none(),
        "a second connection of one peer id was admitted"
    );
    assert!(stays_open(&mut first, Duration::from_millis(500)));
    // A second peer fits (--max-peers 2), a third does not.
    let mut second = handshake(&listen, ih, n, [2; 20]).expect("second peer refused");
    assert!(
        handshake(&listen, ih, n, [3; 20]).is_none(),
        "a third peer was admitted past --max-peers 2"
    );
    assert!(stays_open(&mut second, Duration::from_millis(500)));
    // A request from a peer we never unchoked (it never said interested) breaks BEP 3.
    let r = BlockRequest {
        index: 0,
        begin: 0,
        length: 16384,
    };
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    second
        .write_all(&Message::Request(r).to_bytes().unwrap())
        .unwrap();
    assert!(closed(&mut second), "a request while choked was tolerated");
    // Its slot is free again: a new peer gets in.
    std::thread::sleep(Duration::from_millis(200));
    let mut fourth = handshake(&listen, ih, n, [4; 20]).expect("a freed slot was not reused");
    assert!(stays_open(&mut fourth, Duration::from_millis(500)));
}
