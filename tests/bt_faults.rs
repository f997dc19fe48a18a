//! Faults around `swarmlet download`, real processes on 127.0.0.1: a peer that corrupts
//! one block of every piece it serves while our seed is the only honest source (the
//! pieces are fetched again, the liar is banned); a seeder killed mid-download (the
//! leecher finishes from the other); the leecher killed with SIGKILL mid-download and
//! started again (it finishes and asks for no piece it had verified).
//!
//! The liar and the counting seeder are scripted peers in this file: BEP 3 spoken with
//! the library's `peer_wire` codec, on real sockets, bounded in connections and time.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::bt::{
    Killed, finish, spawn_download, succeeded, summary, summary_count, swarmlet_seed,
};
use common::random_bytes;
use swarmlet::bt::metainfo::Metainfo;
use swarmlet::bt::peer_wire::{
    BlockRequest, Handshake, Limits, Message, PeerId, Reserved, bitfield_from, piece_header,
    read_handshake, read_message,
};
use swarmlet::digest::Digest;

/// The file every test moves: 31 pieces of 64 KiB, the last one short.
const SIZE: usize = 2_000_003;
const PIECE: usize = 65536;

/// Connections a scripted peer accepts at most (the downloader reconnects a few times).
const MAX_CONNECTIONS: usize = 8;
/// How long a scripted peer's connection waits for the next message before it ends.
const PEER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// `dir/f.bin` (random) and `dir/f.torrent` (`swarmlet create`, 64 KiB pieces).
fn file_and_torrent(dir: &Path) -> (Arc<Vec<u8>>, PathBuf) {
    let data = random_bytes(SIZE, 42);
    std::fs::write(dir.join("f.bin"), &data).unwrap();
    let o = std::process::Command::new(common::bin("swarmlet"))
        .current_dir(dir)
        .args(["create", "f.bin", "--piece-length", &PIECE.to_string()])
        .args(["-o", "f.torrent"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (Arc::new(data), dir.join("f.torrent"))
}

/// How a scripted peer answers requests.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Flips a byte in the first block of every piece it sends.
    CorruptFirstBlock,
    /// Sends the right data, `pace` after each block (a slow honest seed).
    Honest { pace: Duration },
}

/// A scripted seeder on 127.0.0.1: handshake, full bitfield, unchoke, then blocks of
/// `data` for every request, behaving as told. It records every request it gets.
struct ScriptedPeer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<BlockRequest>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl ScriptedPeer {
    fn start(torrent: &Path, data: Arc<Vec<u8>>, behaviour: Behaviour) -> ScriptedPeer {
        let m = Metainfo::read(torrent).unwrap();
        let n = m.pieces.len() as u32;
        let piece_len = m.piece_length as usize;
        let info_hash = m.info_hash.0;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, conns, stopped) = (requests.clone(), connections.clone(), stop.clone());
        std::thread::spawn(move || {
            // Bounded: MAX_CONNECTIONS accepted, and the accept loop ends when told or
            // after the download's hang guard.
            let end = Instant::now() + common::bt::DOWNLOAD_LIMIT * 2;
            while !stopped.load(Ordering::SeqCst)
                && Instant::now() < end
                && conns.load(Ordering::SeqCst) < MAX_CONNECTIONS
            {
                match listener.accept() {
                    Ok((s, _)) => {
                        conns.fetch_add(1, Ordering::SeqCst);
                        let (data, reqs, stopped) = (data.clone(), reqs.clone(), stopped.clone());
                        std::thread::spawn(move || {
                            let _ = serve(
                                s, info_hash, n, piece_len, &data, behaviour, &reqs, &stopped,
                            );
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        ScriptedPeer {
            addr,
            requests,
            connections,
            stop,
        }
    }

    fn requests(&self) -> Vec<BlockRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// The pieces it was asked for (any block of).
    fn pieces_asked(&self) -> BTreeSet<u32> {
        self.requests().iter().map(|r| r.index).collect()
    }
}

impl Drop for ScriptedPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One connection of a [`ScriptedPeer`]; ends on any error, on a stop, or after
/// [`PEER_READ_TIMEOUT`] without a message.
#[allow(clippy::too_many_arguments)]
fn serve(
    mut s: TcpStream,
    info_hash: [u8; 20],
    n: u32,
    piece_len: usize,
    data: &[u8],
    behaviour: Behaviour,
    requests: &Mutex<Vec<BlockRequest>>,
    stop: &AtomicBool,
) -> Result<(), Box<dyn std::error::Error>> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(PEER_READ_TIMEOUT))?;
    let theirs = read_handshake(&mut s)?;
    if theirs.info_hash != info_hash {
        return Ok(());
    }
    let ours = Handshake {
        reserved: Reserved::NONE,
        info_hash,
        peer_id: PeerId(*b"-XX0001-scriptedpeer"),
    };
    s.write_all(&ours.encode())?;
    let mut out = Message::Bitfield(bitfield_from(n, |_| true)).to_bytes()?;
    out.extend(Message::Unchoke.to_bytes()?);
    s.write_all(&out)?;
    let limits = Limits::new(n);
    while !stop.load(Ordering::SeqCst) {
        let Message::Request(r) = read_message(&mut s, &limits)? else {
            continue;
        };
        requests.lock().unwrap().push(r);
        let start = r.index as usize * piece_len + r.begin as usize;
        let end = start + r.length as usize;
        if end > data.len() || r.begin as usize + r.length as usize > piece_len {
            return Ok(()); // a request out of range: a broken downloader, hang up
        }
        let mut block = data[start..end].to_vec();
        match behaviour {
            Behaviour::CorruptFirstBlock if r.begin == 0 => block[0] ^= 0xFF,
            Behaviour::CorruptFirstBlock => {}
            Behaviour::Honest { pace } => std::thread::sleep(pace),
        }
        let mut m = piece_header(r.index, r.begin, r.length)?.to_vec();
        m.extend_from_slice(&block);
        s.write_all(&m)?;
    }
    Ok(())
}

/// Pieces of `path` (maybe partial or missing) that hash to the torrent's digests.
fn verified_on_disk(torrent: &Path, path: &Path) -> BTreeSet<u32> {
    let m = Metainfo::read(torrent).unwrap();
    let data = std::fs::read(path).unwrap_or_default();
    let len = m.piece_length as usize;
    m.digests()
        .iter()
        .enumerate()
        .filter(|(i, want)| {
            let start = i * len;
            let end = (start + len).min(SIZE);
            end <= data.len() && Digest::of(want.algo(), &data[start..end]) == **want
        })
        .map(|(i, _)| i as u32)
        .collect()
}

#[test]
fn a_peer_that_corrupts_blocks_is_banned_and_its_pieces_are_fetched_again() {
    let d = tempfile::tempdir().unwrap();
    let (data, torrent) = file_and_torrent(d.path());
    let liar = ScriptedPeer::start(&torrent, data.clone(), Behaviour::CorruptFirstBlock);
    // The only honest source, slowed so the liar is asked for pieces too: 2 MB take
    // 8 s from it alone.
    let (_seed, seed_addr) = swarmlet_seed(&torrent, d.path(), &["--max-upload-rate", "256K"]);
    let ours = d.path().join("ours");
    let o = finish(spawn_download(
        &torrent,
        &ours,
        "127.0.0.1:0",
        &[liar.addr.to_string(), seed_addr.to_string()],
    ));
    let out = succeeded(&o);
    let log = String::from_utf8_lossy(&o.stderr);
    eprintln!("{}", summary(&out));
    assert!(
        std::fs::read(ours.join("f.bin")).unwrap() == *data,
        "our copy differs"
    );
    let asked = liar.pieces_asked();
    eprintln!(
        "the liar was asked for {} pieces ({:?}) over {} connections",
        asked.len(),
        asked,
        liar.connections.load(Ordering::SeqCst)
    );
    // Banned: the engine drops a peer after 3 bad pieces in a row and says so.
    let banned = format!("dropping peer {}: 3 bad chunks in a row", liar.addr);
    assert!(log.contains(&banned), "no {banned:?} in:\n{log}");
    // Every bad piece was fetched again (from the seed): at least the three.
    let refetched = summary_count(&out, " re-fetched");
    assert!(refetched >= 3, "{}", summary(&out));
    // After the ban it is asked for nothing more: at most the pieces it was already
    // fetching when the third verdict came (a worker keeps 2 pieces in hand).
    assert!(
        (3..=3 + 2).contains(&asked.len()),
        "the liar was asked for {asked:?}"
    );
}

#[test]
fn a_seeder_killed_mid_download_leaves_the_leecher_to_finish_from_the_other() {
    let d = tempfile::tempdir().unwrap();
    let (data, torrent) = file_and_torrent(d.path());
    // Two seeds at 128 KiB/s each: 2 MB take 8 s from both.
    let rate = ["--max-upload-rate", "128K"];
    let (first, first_addr) = swarmlet_seed(&torrent, d.path(), &rate);
    let (_second, second_addr) = swarmlet_seed(&torrent, d.path(), &rate);
    let ours = d.path().join("ours");
    let mut leech = spawn_download(
        &torrent,
        &ours,
        "127.0.0.1:0",
        &[first_addr.to_string(), second_addr.to_string()],
    );
    // Mid-download: a fifth of the pieces verified (from both seeds: each serves half).
    let end = Instant::now() + common::bt::DOWNLOAD_LIMIT;
    let total = SIZE.div_ceil(PIECE);
    while verified_on_disk(&torrent, &ours.join("f.bin")).len() < total / 5 {
        if Instant::now() > end || leech.try_wait().unwrap().is_some() {
            let _ = leech.kill();
            panic!("the download did not get going: {:?}", leech.wait());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    first.signal(libc::SIGKILL);
    // Only a child that has already exited is left behind by this panic.
    assert!(
        leech.try_wait().unwrap().is_none(),
        "the download ended before the seeder was killed"
    );
    let had = verified_on_disk(&torrent, &ours.join("f.bin")).len();
    let o = finish(leech);
    let out = succeeded(&o);
    eprintln!(
        "{had} pieces verified when the seeder died; {}",
        summary(&out)
    );
    assert!(
        std::fs::read(ours.join("f.bin")).unwrap() == *data,
        "our copy differs"
    );
    assert!(
        summary(&out).contains("from 2 peers"),
        "both seeds delivered: {}",
        summary(&out)
    );
}

#[test]
fn a_leecher_killed_with_sigkill_resumes_and_asks_for_no_verified_piece_again() {
    let d = tempfile::tempdir().unwrap();
    let (data, torrent) = file_and_torrent(d.path());
    // A slow counting seeder: 20 ms a block, 123 blocks, about 2.5 s in all.
    let seeder = ScriptedPeer::start(
        &torrent,
        data.clone(),
        Behaviour::Honest {
            pace: Duration::from_millis(20),
        },
    );
    let ours = d.path().join("ours");
    let peers = [seeder.addr.to_string()];
    let mut first = Killed(spawn_download(&torrent, &ours, "127.0.0.1:0", &peers));
    // Mid-download: a third of the blocks asked for.
    let blocks = SIZE.div_ceil(16384);
    let end = Instant::now() + common::bt::DOWNLOAD_LIMIT;
    while seeder.requests().len() < blocks / 3 {
        assert!(Instant::now() < end, "the download asked for too little");
        assert!(first.0.try_wait().unwrap().is_none(), "the download ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    first.signal(libc::SIGKILL);
    let status = first.wait_timeout(Duration::from_secs(10)).expect("killed");
    assert!(!status.success(), "{status}");
    let verified = verified_on_disk(&torrent, &ours.join("f.bin"));
    let total = SIZE.div_ceil(PIECE);
    assert!(
        !verified.is_empty() && verified.len() < total,
        "{} of {total} pieces verified at the kill",
        verified.len()
    );
    let asked_before = seeder.requests().len();

    let o = finish(spawn_download(&torrent, &ours, "127.0.0.1:0", &peers));
    let out = succeeded(&o);
    eprintln!(
        "{} of {total} pieces verified at the kill; {}",
        verified.len(),
        summary(&out)
    );
    assert!(
        std::fs::read(ours.join("f.bin")).unwrap() == *data,
        "our copy differs"
    );
    assert_eq!(
        summary_count(&out, " pieces resumed"),
        verified.len() as u64,
        "{}",
        summary(&out)
    );
    let again: BTreeSet<u32> = seeder.requests()[asked_before..]
        .iter()
        .map(|r| r.index)
        .collect();
    let twice: Vec<&u32> = again.intersection(&verified).collect();
    assert!(
        twice.is_empty(),
        "pieces verified before the kill were asked for again: {twice:?}"
    );
    // And everything else was asked for in the second run.
    assert_eq!(again.len() + verified.len(), total, "{again:?}");
}
