//! The real `charlie` binary against malicious test doubles: a fake tracker and fake peers,
//! in-test TCP servers on loopback that speak the wire format (through `swarmlet::wire`)
//! but lie, stall or send the wrong thing.
//!
//! Whatever they do, charlie must end (within [`BOUND`]) with one clear `error:` line or a
//! correct file, never write outside `chunks/charlie/`, and never keep a chunk whose bytes
//! do not hash to its name.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use swarmlet::config::PeersConfig;
use swarmlet::hash::ChunkHash;
use swarmlet::store::TEMP_PREFIX;
use swarmlet::wire::{self, ChunkRecord, ErrorCode, FileInfo, Message, Tolerance, TrackerInfo};

/// charlie's `--timeout-ms` in these tests.
const TIMEOUT_MS: u64 = 500;
/// Every charlie run must end within this, whatever the servers do. Generous, because
/// the 65,535-chunk download takes 5-10 s on a busy 2-core machine; the tests of stalls
/// and trickles assert much tighter bounds of their own.
const BOUND: Duration = Duration::from_secs(40);

/// Chunks with their hashes, in file order.
type Chunks = [(ChunkHash, Vec<u8>)];

type Serve = dyn Fn(TcpStream, &AtomicBool) -> io::Result<()> + Send + Sync;

/// A fake server on a free loopback port: each connection runs `serve` on its own thread.
/// Dropping it stops accepting and tells stalled handlers to give up.
struct Fake {
    addr: SocketAddrV4,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    accept: Option<thread::JoinHandle<()>>,
}

impl Fake {
    fn start(
        serve: impl Fn(TcpStream, &AtomicBool) -> io::Result<()> + Send + Sync + 'static,
    ) -> Fake {
        let serve: Arc<Serve> = Arc::new(serve);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let SocketAddr::V4(addr) = listener.local_addr().unwrap() else {
            unreachable!("bound to IPv4")
        };
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let accept = thread::spawn({
            let (stop, connections) = (stop.clone(), connections.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(false).unwrap();
                            connections.fetch_add(1, Ordering::SeqCst);
                            let (serve, stop) = (serve.clone(), stop.clone());
                            thread::spawn(move || {
                                let _ = serve(s, &stop);
                            });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(2));
                        }
                        Err(e) => panic!("fake server accept: {e}"),
                    }
                }
            }
        });
        Fake {
            addr,
            stop,
            connections,
            accept: Some(accept),
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Holds a connection open without sending, until the test ends (at most a minute).
fn stall(stop: &AtomicBool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `bytes` one at a time, 100 ms apart: each byte comes well within charlie's
/// 500 ms I/O timeout, so only a deadline on the whole reply can stop it.
fn trickle(s: &mut TcpStream, bytes: &[u8], stop: &AtomicBool) -> io::Result<()> {
    for b in bytes {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        s.write_all(&[*b])?;
        thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// What a fake peer does for one GET_CHUNK of a chunk it knows (`data` is the true
/// content).
type Respond =
    dyn Fn(&ChunkHash, &[u8], &mut TcpStream, &AtomicBool) -> io::Result<()> + Send + Sync;

/// A fake peer knowing `chunks`: CHUNK_NOT_FOUND for others, `respond` for these.
fn peer(
    chunks: &[(ChunkHash, Vec<u8>)],
    respond: impl Fn(&ChunkHash, &[u8], &mut TcpStream, &AtomicBool) -> io::Result<()>
    + Send
    + Sync
    + 'static,
) -> Fake {
    let chunks: Arc<HashMap<ChunkHash, Vec<u8>>> = Arc::new(chunks.iter().cloned().collect());
    let respond: Arc<Respond> = Arc::new(respond);
    Fake::start(move |mut s, stop| {
        loop {
            let Ok(msg) = wire::read_message(&mut s, 4096, Tolerance::default()) else {
                return Ok(());
            };
            let Message::GetChunk(h) = msg else {
                panic!("charlie sent {msg:?} to a peer");
            };
            match chunks.get(&h) {
                Some(data) => respond(&h, data, &mut s, stop)?,
                None => s.write_all(&Message::Error(ErrorCode::ChunkNotFound).encode().unwrap())?,
            }
        }
    })
}

fn chunk_msg(hash: &ChunkHash, data: &[u8]) -> Vec<u8> {
    Message::Chunk {
        hash: *hash,
        data: data.to_vec(),
    }
    .encode()
    .unwrap()
}

fn honest(h: &ChunkHash, data: &[u8], s: &mut TcpStream, _: &AtomicBool) -> io::Result<()> {
    s.write_all(&chunk_msg(h, data))
}

/// A fake tracker: reads one request, sends `reply`, then holds the connection until the
/// client closes it.
fn tracker(reply: Vec<u8>) -> Fake {
    Fake::start(move |mut s, _| {
        wire::read_message(&mut s, 4096, Tolerance::default()).ok();
        s.write_all(&reply)?;
        let _ = io::copy(&mut s, &mut io::sink());
        Ok(())
    })
}

/// `n` chunks of `size` random bytes, in file order.
fn make_chunks(n: usize, size: usize, seed: u64) -> Vec<(ChunkHash, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let data = random_bytes(size, seed * 1000 + i as u64);
            (ChunkHash::of(&data), data)
        })
        .collect()
}

/// A FILE_INFO message for `chunks`, every chunk listing `peers`.
fn file_info(name: &str, chunks: &[(ChunkHash, Vec<u8>)], peers: &[SocketAddrV4]) -> Vec<u8> {
    Message::FileInfo(FileInfo {
        filename: name.into(),
        chunks: chunks
            .iter()
            .map(|(h, _)| ChunkRecord {
                hash: *h,
                peers: peers.to_vec(),
            })
            .collect(),
    })
    .encode()
    .unwrap()
}

/// A root whose peers.ini names only the tracker (step 2 needs nothing else).
fn root_for(tracker: SocketAddrV4) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("config")).unwrap();
    PeersConfig::from_entries(vec![("tracker".into(), tracker)])
        .save(&dir.path().join("config/peers.ini"))
        .unwrap();
    dir
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
    /// charlie's peak resident memory (VmHWM), KiB, as last seen before it exited.
    peak_kib: u64,
    /// The most threads charlie was seen running at once.
    peak_threads: u64,
}

impl Run {
    /// The `error: ...` line charlie ends with.
    fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no error line in:\n{}", self.stderr))
    }

    /// charlie failed, within the bound, and its error line says `what`.
    fn assert_fails_with(&self, what: &str) {
        assert!(
            !self.status.success(),
            "charlie succeeded:\n{}",
            self.stderr
        );
        let line = self.error_line();
        assert!(line.contains(what), "error line lacks {what:?}: {line}");
    }
}

/// Runs `charlie --step 2` on `root` with a 500 ms I/O timeout; panics if it is still
/// running after [`BOUND`].
fn charlie(root: &Path, extra: &[&str]) -> Run {
    let logs = tempfile::tempdir().unwrap();
    let (out, err) = (logs.path().join("out"), logs.path().join("err"));
    let mut child = Command::new(bin("charlie"))
        .arg("--root")
        .arg(root)
        .args(["--step", "2", "--timeout-ms", &TIMEOUT_MS.to_string()])
        .args(extra)
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let (mut peak_kib, mut peak_threads) = (0, 0);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if let Some(k) = proc_status(child.id(), "VmHWM") {
            peak_kib = peak_kib.max(k);
        }
        if let Some(n) = proc_status(child.id(), "Threads") {
            peak_threads = peak_threads.max(n);
        }
        if start.elapsed() > BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "charlie still running after {BOUND:?}:\n{}",
                fs::read_to_string(&err).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(2));
    };
    Run {
        status,
        stdout: fs::read_to_string(out).unwrap(),
        stderr: fs::read_to_string(err).unwrap(),
        took: start.elapsed(),
        peak_kib,
        peak_threads,
    }
}

/// Every path under `dir`, relative to it.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(base).unwrap().to_path_buf());
            if p.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// What charlie left in `root`, checked against the tree before it ran: nothing new
/// outside `chunks/charlie/`, and in it only chunks whose content hashes to their name,
/// the merged file `merged` (if any), and its partial file `<merged>.part-<S>`, in which
/// every chunk's range holds exactly that chunk (of `chunks`) or nothing yet (zeros).
fn assert_clean(root: &Path, before: &BTreeSet<PathBuf>, merged: Option<(&str, &Chunks)>) {
    let charlie_dir = Path::new("chunks/charlie");
    for p in tree(root).difference(before) {
        assert!(
            p == Path::new("chunks") || p == charlie_dir || p.parent() == Some(charlie_dir),
            "charlie wrote {} outside chunks/charlie/",
            p.display()
        );
    }
    let Ok(entries) = fs::read_dir(root.join(charlie_dir)) else {
        return;
    };
    for e in entries {
        let name = e.unwrap().file_name().into_string().unwrap();
        let path = root.join(charlie_dir).join(&name);
        if let Some((file, chunks)) = merged {
            if name == file {
                continue;
            }
            let size = name
                .strip_prefix(file)
                .and_then(|r| r.strip_prefix(".part-"))
                .and_then(|s| s.parse::<usize>().ok());
            if let Some(size) = size {
                let data = fs::read(&path).unwrap();
                for (i, range) in data.chunks(size).enumerate() {
                    let zeros = range.iter().all(|&b| b == 0);
                    let right = chunks.get(i).is_some_and(|(_, c)| c[..] == *range);
                    assert!(
                        zeros || right,
                        "{name}: chunk {i}'s range holds other bytes"
                    );
                }
                continue;
            }
        }
        assert!(!name.starts_with(TEMP_PREFIX), "temporary file {name} left");
        let hash = ChunkHash::from_file_name(&name)
            .unwrap_or_else(|| panic!("unexpected file chunks/charlie/{name}"));
        let data = fs::read(&path).unwrap();
        assert_eq!(
            ChunkHash::of(&data),
            hash,
            "{name} kept with bytes of another hash"
        );
    }
}

/// A download of `chunks` from `peers` through a fake tracker: returns the run and checks
/// the root is clean. On success the merged file must be exactly the chunks' bytes.
fn download(chunks: &[(ChunkHash, Vec<u8>)], peers: &[SocketAddrV4], extra: &[&str]) -> Run {
    let t = tracker(file_info("data.bin", chunks, peers));
    let root = root_for(t.addr);
    let before = tree(root.path());
    let run = charlie(root.path(), extra);
    assert_clean(root.path(), &before, Some(("data.bin", chunks)));
    if run.status.success() {
        let got = fs::read(root.path().join("chunks/charlie/data.bin")).unwrap();
        assert!(got == chunks.concat_data(), "merged file differs");
    } else {
        assert!(!root.path().join("chunks/charlie/data.bin").exists());
    }
    run
}

trait ConcatData {
    fn concat_data(&self) -> Vec<u8>;
}

impl ConcatData for [(ChunkHash, Vec<u8>)] {
    fn concat_data(&self) -> Vec<u8> {
        self.iter().flat_map(|(_, d)| d.iter().copied()).collect()
    }
}

#[test]
fn honest_doubles_give_a_correct_download() {
    // The doubles themselves speak the protocol right: an honest run succeeds.
    let chunks = make_chunks(6, 3000, 1);
    let p = peer(&chunks, honest);
    let run = download(&chunks, &[p.addr], &[]);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stdout.contains("data.bin: 18000 bytes"),
        "{}",
        run.stdout
    );
    assert_eq!(p.connections(), 1, "one connection per peer");
}

#[test]
fn a_chunk_labelled_with_another_hash_is_refused() {
    let chunks = make_chunks(4, 3000, 2);
    let liar = || {
        peer(&chunks, |_, data, s, _| {
            s.write_all(&chunk_msg(&ChunkHash::of(b"something else"), data))
        })
    };
    // Alone, the liar makes the download fail naming what it did.
    let bad = liar();
    let run = download(&chunks, &[bad.addr], &[]);
    run.assert_fails_with("could not be downloaded");
    assert!(
        run.stderr.contains("got a CHUNK labelled"),
        "{}",
        run.stderr
    );
    // With an honest peer beside it, the download completes.
    let bad = liar();
    let good = peer(&chunks, honest);
    let run = download(&chunks, &[bad.addr, good.addr], &[]);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(bad.connections() >= 1);
}

#[test]
fn a_chunk_with_the_right_hash_and_wrong_bytes_is_never_kept() {
    let chunks = make_chunks(6, 3000, 3);
    let liar = || {
        peer(&chunks, |h, data, s, _| {
            let mut bad = data.to_vec();
            bad[17] ^= 0x40;
            s.write_all(&chunk_msg(h, &bad))
        })
    };
    let bad = liar();
    let run = download(&chunks, &[bad.addr], &[]);
    run.assert_fails_with("does not match its SHA-1");
    // Three bad chunks in a row and the peer is dropped.
    assert!(
        run.stderr.contains("3 bad chunks in a row"),
        "{}",
        run.stderr
    );
    let bad = liar();
    let good = peer(&chunks, honest);
    let run = download(&chunks, &[bad.addr, good.addr], &[]);
    assert!(run.status.success(), "{}", run.stderr);
}

/// A CHUNK prefix announcing `content_len` bytes (msg_length consistent with it unless
/// `words` overrides it), followed by 1 KiB of content, then a stall.
fn huge_chunk_peer(chunks: &[(ChunkHash, Vec<u8>)], content_len: u32, words: Option<u32>) -> Fake {
    peer(chunks, move |h, _, s, stop| {
        let total = 8 + 24 + u64::from(content_len).div_ceil(4) * 4;
        let words = words.unwrap_or((total / 4) as u32);
        let mut m = vec![1, 5, 0, 0];
        m.extend_from_slice(&words.to_be_bytes());
        m.extend_from_slice(h.as_bytes());
        m.extend_from_slice(&content_len.to_be_bytes());
        m.extend_from_slice(&[0xaa; 1024]);
        s.write_all(&m)?;
        stall(stop);
        Ok(())
    })
}

#[test]
fn a_content_length_bigger_than_any_chunk_costs_nothing() {
    let chunks = make_chunks(2, 3000, 4);
    for (len, words, extra, what) in [
        (u32::MAX - 3, None, &[][..], "is over the limit"),
        (100 << 20, None, &[], "is over the limit"),
        (
            5000,
            None,
            &["--max-chunk-bytes", "4096"][..],
            "is over the limit",
        ),
        (3000, Some(9), &[], "does not match msg_length"),
        // Under the limit but a lie all the same: the buffer is reserved, not touched.
        (
            48 << 20,
            None,
            &[],
            "timed out: reply stopped, nothing received",
        ),
    ] {
        let bad = huge_chunk_peer(&chunks, len, words);
        let run = download(&chunks, &[bad.addr], extra);
        run.assert_fails_with("could not be downloaded");
        assert!(run.stderr.contains(what), "{what}: {}", run.stderr);
        // Refused before any allocation: charlie stays small.
        assert!(
            run.peak_kib < 32 * 1024,
            "{what}: peak RSS {} KiB",
            run.peak_kib
        );
        assert!(
            run.took < Duration::from_secs(5),
            "{what}: took {:?}",
            run.took
        );
    }
}

#[test]
fn a_file_info_with_65535_chunks_downloads_with_bounded_memory() {
    // 65,535 distinct 16-byte chunks, all from one fake peer.
    let chunks: Vec<(ChunkHash, Vec<u8>)> = (0..u16::MAX as u32)
        .map(|i| {
            let data = format!("chunk {i:09}\n").into_bytes();
            (ChunkHash::of(&data), data)
        })
        .collect();
    let p = peer(&chunks, honest);
    let run = download(&chunks, &[p.addr], &[]);
    assert!(run.status.success(), "{}", run.stderr);
    eprintln!(
        "65,535 chunks: {:?}, charlie peak RSS {} KiB",
        run.took, run.peak_kib
    );
    assert!(run.peak_kib < 64 * 1024, "peak RSS {} KiB", run.peak_kib);
}

#[test]
fn unsafe_file_names_are_refused_before_anything_is_written() {
    let chunks = make_chunks(1, 100, 5);
    let p = peer(&chunks, honest);
    for name in [
        "../evil.bin",
        "../../evil.bin",
        "/tmp/evil.bin",
        "a/../../evil.bin",
        "sub/evil.bin",
        "..\\evil.bin",
        "..",
        ".",
        "",
        "evil\0.bin",
        "evil\n.bin",
    ] {
        let t = tracker(file_info(name, &chunks, &[p.addr]));
        let root = root_for(t.addr);
        let before = tree(root.path());
        let run = charlie(root.path(), &[]);
        run.assert_fails_with("refusing the file name");
        assert_eq!(
            tree(root.path()),
            before,
            "{name:?}: charlie wrote something"
        );
        assert!(!root.path().parent().unwrap().join("evil.bin").exists());
    }
    assert_eq!(
        p.connections(),
        0,
        "no peer is contacted for an unsafe name"
    );
}

#[test]
fn a_file_info_with_zero_chunks_is_an_error() {
    let t = tracker(file_info("empty.bin", &[], &[]));
    let root = root_for(t.addr);
    let before = tree(root.path());
    let run = charlie(root.path(), &[]);
    run.assert_fails_with("the file has no chunks");
    assert_eq!(tree(root.path()), before);
}

#[test]
fn unusable_peer_addresses_are_skipped() {
    let chunks = make_chunks(3, 1000, 6);
    let p = peer(&chunks, honest);
    let zero = "0.0.0.0:0".parse().unwrap();
    let port0 = "127.0.0.1:0".parse().unwrap();
    let any_ip = SocketAddrV4::new("0.0.0.0".parse().unwrap(), p.addr.port());
    // Only unusable addresses: a clear failure naming the chunks.
    let run = download(&chunks, &[zero, port0, any_ip], &[]);
    run.assert_fails_with("chunks 0-2 could not be downloaded");
    assert!(
        run.error_line().contains("no usable peer"),
        "{}",
        run.error_line()
    );
    // Beside a real peer, they are ignored with one warning.
    let run = download(&chunks, &[zero, port0, any_ip, p.addr], &[]);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("ignoring 9 unusable peer addresses (0.0.0.0 or port 0), such as 0.0.0.0:0"),
        "{}",
        run.stderr
    );
    // 65,535 chunks, each at 0.0.0.0:0 only: still one warning and a readable error line,
    // not a line per chunk.
    let many: Vec<(ChunkHash, Vec<u8>)> = (0..u16::MAX as u32)
        .map(|i| (ChunkHash::of(&i.to_be_bytes()), Vec::new()))
        .collect();
    let run = download(&many, &[zero], &[]);
    run.assert_fails_with("chunks 0-65534 could not be downloaded");
    // Chunks that fail alike are one group.
    assert!(
        run.error_line()
            .contains(": chunks 0-65534: no usable peer listed"),
        "{}",
        run.error_line()
    );
    assert!(run.error_line().len() < 1000, "{}", run.error_line());
    assert!(
        run.stderr.len() < 4000,
        "{} bytes of stderr",
        run.stderr.len()
    );
}

#[test]
fn a_tracker_reply_of_the_wrong_type_is_an_error() {
    let ti = Message::TrackerInfo(TrackerInfo {
        addr: "127.0.0.1:1".parse().unwrap(),
        name: "tracker".into(),
    });
    for (reply, what) in [
        (
            Message::Error(ErrorCode::InvalidRequest),
            "answered ERROR INVALID_REQUEST",
        ),
        (ti, "answered TRACKER_INFO instead of FILE_INFO"),
        (
            Message::GetChunk(ChunkHash::of(b"x")),
            "answered GET_CHUNK instead of FILE_INFO",
        ),
        (
            Message::GetFileInfo,
            "answered GET_FILE_INFO instead of FILE_INFO",
        ),
        // Type 5 is tolerated as FILE_INFO, so a real CHUNK body is a bad FILE_INFO.
        (
            Message::Chunk {
                hash: ChunkHash::of(b"x"),
                data: vec![1; 100],
            },
            "bad FILE_INFO body",
        ),
    ] {
        let t = tracker(reply.encode().unwrap());
        let root = root_for(t.addr);
        let before = tree(root.path());
        let run = charlie(root.path(), &[]);
        run.assert_fails_with(what);
        assert_eq!(tree(root.path()), before);
    }
    // A tracker that closes without a word.
    let t = tracker(Vec::new());
    drop(t);
    let t = Fake::start(|mut s, _| {
        wire::read_message(&mut s, 4096, Tolerance::default()).ok();
        Ok(())
    });
    let root = root_for(t.addr);
    let run = charlie(root.path(), &[]);
    run.assert_fails_with("closed the connection without answering (attempt 3)");
    // An early close may be a passing fault, so it is asked three times; a wrong reply
    // (above) is the tracker's answer and is asked once.
    assert_eq!(t.connections(), 3);
}

/// A tracker exchange that fails in a way that may pass (the connection closed before
/// any reply, or no reply within the timeout, as a lossy LAN causes) is tried again on a
/// new connection, and the download goes on.
#[test]
fn a_tracker_that_fails_once_is_asked_again() {
    let chunks = make_chunks(3, 5000, 21);
    let p = peer(&chunks, honest);
    let fi = file_info("data.bin", &chunks, &[p.addr]);
    for fault in ["close", "stall"] {
        let fi = fi.clone();
        let first = Arc::new(AtomicBool::new(true));
        let t = Fake::start(move |mut s, stop| {
            wire::read_message(&mut s, 4096, Tolerance::default()).ok();
            if first.swap(false, Ordering::SeqCst) {
                if fault == "stall" {
                    stall(stop);
                }
                return Ok(()); // closes without a word
            }
            s.write_all(&fi)?;
            let _ = io::copy(&mut s, &mut io::sink());
            Ok(())
        });
        let root = root_for(t.addr);
        let run = charlie(root.path(), &[]);
        assert!(run.status.success(), "{fault}: {}", run.stderr);
        assert!(
            run.stderr.contains("asking again"),
            "{fault}: {}",
            run.stderr
        );
        assert_eq!(t.connections(), 2, "{fault}");
        let got = fs::read(root.path().join("chunks/charlie/data.bin")).unwrap();
        assert!(got == chunks.concat_data(), "{fault}: merged file differs");
    }
}

#[test]
fn a_peer_reply_of_the_wrong_type_is_an_error() {
    let chunks = make_chunks(2, 1000, 7);
    let replies = [
        (Message::GetFileInfo, "unexpected GET_FILE_INFO"),
        (Message::GetChunk(chunks[0].0), "unexpected GET_CHUNK"),
        (
            Message::Error(ErrorCode::InvalidRequest),
            "answered ERROR INVALID_REQUEST",
        ),
        (
            Message::Error(ErrorCode::Other(77)),
            "unknown error code 77",
        ),
        (
            Message::FileInfo(FileInfo {
                filename: "x".into(),
                chunks: vec![],
            }),
            "unexpected FILE_INFO",
        ),
    ];
    for (reply, what) in replies {
        let bytes = reply.encode().unwrap();
        let bad = peer(&chunks, move |_, _, s, _| s.write_all(&bytes));
        let run = download(&chunks, &[bad.addr], &[]);
        run.assert_fails_with("could not be downloaded");
        assert!(run.stderr.contains(what), "{what}: {}", run.stderr);
    }
}

#[test]
fn servers_that_stall_forever_are_given_up() {
    let chunks = make_chunks(3, 20_000, 8);
    // A peer that stops in the middle of a chunk, and one that never answers at all.
    let mid = peer(&chunks, |h, data, s, stop| {
        let m = chunk_msg(h, data);
        s.write_all(&m[..m.len() / 2])?;
        stall(stop);
        Ok(())
    });
    let silent = peer(&chunks, |_, _, _, stop| {
        stall(stop);
        Ok(())
    });
    for (p, name, what) in [
        (
            &mid,
            "mid-chunk",
            "timed out: reply stopped, nothing received for 500 ms",
        ),
        (&silent, "silent", "timed out: no reply within 500 ms"),
    ] {
        let run = download(&chunks, &[p.addr], &[]);
        run.assert_fails_with("could not be downloaded");
        assert!(
            run.error_line().contains(what),
            "{name}: {}",
            run.error_line()
        );
        // Two timeouts (the first connection and the one reconnection) and a backoff.
        assert!(
            run.took < Duration::from_secs(5),
            "{name}: took {:?}",
            run.took
        );
    }
    // A tracker that stops in the middle of FILE_INFO, and one that never answers.
    let fi = file_info("data.bin", &chunks, &[mid.addr]);
    for cut in [fi.len() / 2, 0] {
        let fi = fi.clone();
        let t = Fake::start(move |mut s, stop| {
            wire::read_message(&mut s, 4096, Tolerance::default()).ok();
            s.write_all(&fi[..cut])?;
            stall(stop);
            Ok(())
        });
        let root = root_for(t.addr);
        let run = charlie(root.path(), &[]);
        run.assert_fails_with("timed out");
        // Three exchanges of at most one 500 ms timeout each, 500 ms apart.
        assert_eq!(t.connections(), 3);
        assert!(run.took < Duration::from_secs(5), "took {:?}", run.took);
    }
}

#[test]
fn servers_that_trickle_are_given_up() {
    let chunks = make_chunks(2, 20_000, 9);
    // Each byte arrives within the I/O timeout, so only a deadline for the whole reply
    // ends this: 20,000 bytes at 10 a second would take over half an hour.
    let slow = peer(&chunks, |h, data, s, stop| {
        trickle(s, &chunk_msg(h, data), stop)
    });
    let run = download(&chunks, &[slow.addr], &[]);
    run.assert_fails_with("could not be downloaded");
    assert!(
        run.error_line().contains("reply still incomplete"),
        "{}",
        run.error_line()
    );
    let fi = file_info("data.bin", &chunks, &[slow.addr]);
    let t = Fake::start(move |mut s, stop| {
        wire::read_message(&mut s, 4096, Tolerance::default()).ok();
        trickle(&mut s, &fi, stop)
    });
    let root = root_for(t.addr);
    let run = charlie(root.path(), &[]);
    run.assert_fails_with("reply still incomplete");
}

#[test]
fn a_file_info_naming_thousands_of_peers_does_not_spawn_thousands_of_threads() {
    // Every chunk lists a different peer (nothing listens there) and then the one real
    // peer: charlie must bound the peers it talks to, not start 4,000 threads.
    let chunks = make_chunks(4000, 16, 10);
    let p = peer(&chunks, honest);
    let dead: Vec<SocketAddrV4> = (0..chunks.len())
        .map(|i| SocketAddrV4::new([127, 1, (i / 250) as u8, (i % 250) as u8 + 1].into(), 1))
        .collect();
    let fi = Message::FileInfo(FileInfo {
        filename: "data.bin".into(),
        chunks: chunks
            .iter()
            .zip(&dead)
            .map(|((h, _), d)| ChunkRecord {
                hash: *h,
                peers: vec![p.addr, *d],
            })
            .collect(),
    })
    .encode()
    .unwrap();
    let t = tracker(fi);
    let root = root_for(t.addr);
    let before = tree(root.path());
    let run = charlie(root.path(), &[]);
    assert!(run.status.success(), "{}", run.stderr);
    assert_clean(root.path(), &before, Some(("data.bin", &chunks)));
    assert!(
        run.stderr
            .contains("ignoring 3969 mentions of peers beyond the first 32"),
        "{}",
        run.stderr
    );
    eprintln!(
        "4,001 peers named: charlie peaked at {} threads",
        run.peak_threads
    );
    assert!(
        run.peak_threads < 100,
        "charlie ran {} threads",
        run.peak_threads
    );
}

#[test]
fn the_largest_file_info_charlie_accepts_costs_bounded_memory_and_time() {
    // 65,535 chunks naming 29 peers each: 16,776,980 bytes, just under charlie's 16 MiB
    // FILE_INFO limit, with 1.9 million peer entries, all different addresses where
    // nothing listens.
    let dead = |i: usize| {
        SocketAddrV4::new(
            [127, 2 + (i >> 16) as u8, (i >> 8) as u8, i as u8].into(),
            1,
        )
    };
    let fi = Message::FileInfo(FileInfo {
        filename: "data.bin".into(),
        chunks: (0..u16::MAX as usize)
            .map(|c| ChunkRecord {
                hash: ChunkHash::of(&c.to_be_bytes()),
                peers: (0..29).map(|p| dead(c * 29 + p)).collect(),
            })
            .collect(),
    })
    .encode()
    .unwrap();
    assert!(fi.len() <= 16 << 20 && fi.len() > (16 << 20) - 256);
    let t = tracker(fi);
    let root = root_for(t.addr);
    let before = tree(root.path());
    let run = charlie(root.path(), &[]);
    run.assert_fails_with("chunks 0-65534 could not be downloaded");
    assert!(run.error_line().len() < 2000, "{}", run.error_line());
    assert_clean(root.path(), &before, None);
    eprintln!(
        "16 MiB FILE_INFO: failed in {:?}, peak RSS {} KiB, peak {} threads",
        run.took, run.peak_kib, run.peak_threads
    );
    assert!(run.peak_kib < 128 * 1024, "peak RSS {} KiB", run.peak_kib);
    assert!(run.peak_threads < 40, "{} threads", run.peak_threads);
    assert!(run.took < Duration::from_secs(10), "{:?}", run.took);
}
