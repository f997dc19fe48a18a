//! Faults on the BitTorrent and bvTorrent sides, with the real programs: `swarmlet
//! download` and `bvtorrent-client` killed with SIGKILL 20 times each at seeded random
//! moments (against a rate-limited seed, so that kills land mid-download), then a final
//! run: the file is identical and no piece or chunk that was verified on disk at a kill
//! was fetched again. And a disk that fills up mid-download (a small tmpfs in a private
//! mount namespace): one clear error, nothing taken for verified that is not, and the
//! next run with space finishes.
//!
//! What was fetched is counted at the seeder: `swarmlet seed` logs every block it sends
//! at trace level; the bvTorrent holder is scripted here and counts every request.
mod common;

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Proc, Rng, bin, free_port, random_bytes, require_program, threads, wait_listening};
use swarmlet::bitfield::Bitfield;
use swarmlet::bv::session::TrackerSession;

const KILLS: usize = 20;
/// Hang guard of a whole run (not a speed assertion).
const LIMIT: Duration = Duration::from_secs(180);

/// The pieces of `path` (pieces of `piece` bytes) equal to `want`'s.
fn verified_on_disk(path: &Path, want: &[u8], piece: usize) -> HashSet<usize> {
    let got = fs::read(path).unwrap_or_default();
    want.chunks(piece)
        .enumerate()
        .filter(|(i, w)| got.get(i * piece..i * piece + w.len()) == Some(*w))
        .map(|(i, _)| i)
        .collect()
}

/// Waits until `pid` has at most `want` threads (a seeder's connection threads ended).
fn settle_threads(pid: u32, want: u64) {
    let end = Instant::now() + Duration::from_secs(60);
    while threads(pid) > want {
        assert!(Instant::now() < end, "threads of {pid} never settled");
        thread::sleep(Duration::from_millis(5));
    }
}

/// The pieces in the seed's "sent block" lines, in order.
fn blocks_sent(log: &str) -> Vec<usize> {
    log.lines()
        .filter_map(|l| l.split(": sent block ").nth(1))
        .filter_map(|rest| rest.split(':').next()?.parse().ok())
        .collect()
}

/// For each kill, the pieces verified on disk right after it and how many fetches had
/// been counted by then: any later fetch of one of those pieces is a refetch.
fn refetched(after_kill: &[(HashSet<usize>, usize)], fetched: &[usize]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (k, (v, seen)) in after_kill.iter().enumerate() {
        for &p in &fetched[*seen..] {
            if v.contains(&p) {
                out.push((k, p));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A 16 MiB single-file torrent of 16 KiB pieces, seeded at 1 MiB/s.
struct BtSwarm {
    dir: tempfile::TempDir,
    data: Vec<u8>,
    torrent: PathBuf,
}

const BT_PIECE: usize = 16 * 1024;

impl BtSwarm {
    fn new(len: usize, seed: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = random_bytes(len, seed);
        for d in ["seed", "dl", "logs"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        fs::write(dir.path().join("seed/data.bin"), &data).unwrap();
        let torrent = dir.path().join("data.torrent");
        let out = Command::new(bin("swarmlet"))
            .arg("create")
            .arg(dir.path().join("seed/data.bin"))
            .arg("-o")
            .arg(&torrent)
            .args(["--piece-length", &BT_PIECE.to_string(), "--no-date"])
            .output()
            .unwrap();
        assert!(out.status.success(), "create: {out:?}");
        BtSwarm { dir, data, torrent }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn seed(&self, rate: Option<&str>) -> (Proc, SocketAddr) {
        let port = free_port();
        let mut c = Command::new(bin("swarmlet"));
        c.arg("seed")
            .arg(&self.torrent)
            .arg("--dir")
            .arg(self.path("seed"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info,swarmlet::bt::conn=trace");
        if let Some(r) = rate {
            c.args(["--max-upload-rate", r]);
        }
        let p = Proc::spawn("seed", c, self.path("logs/seed.log"));
        wait_listening(format!("127.0.0.1:{port}").parse().unwrap());
        (p, SocketAddr::from(([127, 0, 0, 1], port)))
    }
    fn download(&self, seed: SocketAddr, run: usize) -> Proc {
        let mut c = Command::new(bin("swarmlet"));
        c.arg("download")
            .arg(&self.torrent)
            .arg("--dir")
            .arg(self.path("dl"))
            .args(["--listen", "127.0.0.1:0", "--peer", &seed.to_string()]);
        Proc::spawn(
            "download",
            c,
            self.path(&format!("logs/download-{run}.log")),
        )
    }
}

#[test]
fn swarmlet_download_killed_20_times_ends_correct_without_refetching() {
    let s = BtSwarm::new(16 << 20, 31);
    let pieces = s.data.len().div_ceil(BT_PIECE);
    let (seed, addr) = s.seed(Some("1M"));
    let base = threads(seed.pid());
    let mut rng = Rng(0x005e_edb7_2026);
    let mut after_kill: Vec<(HashSet<usize>, usize)> = Vec::new();
    let file = s.path("dl/data.bin");
    for k in 0..KILLS {
        let mut d = s.download(addr, k);
        // Anywhere from startup (the recheck, the handshake) to well into the transfer.
        thread::sleep(Duration::from_millis(rng.below(500)));
        assert!(
            d.child.try_wait().unwrap().is_none(),
            "kill {k}: the download had already ended:\n{}",
            d.log_text()
        );
        d.kill(); // SIGKILL, by pid
        // The seeder has seen the connection go before the count is taken: a block it
        // sends after this is one a later run asked for.
        settle_threads(seed.pid(), base);
        let v = verified_on_disk(&file, &s.data, BT_PIECE);
        let sent = blocks_sent(&seed.log_text()).len();
        eprintln!("kill {k:2}: {} of {pieces} pieces on disk", v.len());
        after_kill.push((v, sent));
    }
    let mut last = s.download(addr, KILLS);
    let st = last.wait_timeout(LIMIT);
    assert!(
        st.is_some_and(|x| x.success()),
        "{st:?}\n{}",
        last.log_text()
    );
    assert!(fs::read(&file).unwrap() == s.data, "the file differs");
    let out = fs::read_to_string(s.path(&format!("logs/download-{KILLS}.out"))).unwrap();
    let resumed = after_kill.last().unwrap().0.len();
    assert!(out.contains(&format!("{resumed} pieces resumed")), "{out}");
    let sent = blocks_sent(&seed.log_text());
    let twice = refetched(&after_kill, &sent);
    assert!(twice.is_empty(), "(kill, piece) fetched again: {twice:?}");
    let blocks = s.data.len().div_ceil(16 * 1024);
    eprintln!(
        "{KILLS} kills survived: {resumed} of {pieces} pieces on disk before the last run, \
         {} blocks served in all for {blocks} (the surplus: blocks of pieces a kill cut \
         short); last run: {}",
        sent.len(),
        out.trim()
    );
}

/// A scripted bvTorrent holder: serves every chunk of `data`, `delay` per chunk, and
/// records every request it is sent.
struct CountingHolder {
    port: u16,
    asked: Arc<Mutex<Vec<usize>>>,
    active: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl CountingHolder {
    fn start(data: Arc<Vec<u8>>, chunk: usize, delay: Duration) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let h = CountingHolder {
            port: l.local_addr().unwrap().port(),
            asked: Arc::default(),
            active: Arc::default(),
            stop: Arc::default(),
        };
        let (asked, active, stop) = (h.asked.clone(), h.active.clone(), h.stop.clone());
        thread::spawn(move || {
            let end = Instant::now() + LIMIT * 4; // bounded whatever happens
            while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                let Ok((mut s, _)) = l.accept() else {
                    thread::sleep(Duration::from_millis(2));
                    continue;
                };
                active.fetch_add(1, Ordering::SeqCst);
                let (asked, active, data) = (asked.clone(), active.clone(), data.clone());
                thread::spawn(move || {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
                    let mut line = Vec::new();
                    let _ = BufReader::new(&s).read_until(b'\n', &mut line);
                    if let Some(i) = std::str::from_utf8(&line)
                        .ok()
                        .and_then(|t| t.trim().parse::<usize>().ok())
                        .filter(|&i| i * chunk < data.len())
                    {
                        asked.lock().unwrap().push(i);
                        thread::sleep(delay);
                        let _ = s.write_all(&data[i * chunk..((i + 1) * chunk).min(data.len())]);
                    }
                    drop(s);
                    active.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        h
    }
    fn settle(&self) {
        let end = Instant::now() + Duration::from_secs(60);
        while self.active.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < end, "holder connections never ended");
            thread::sleep(Duration::from_millis(5));
        }
    }
    fn asked(&self) -> Vec<usize> {
        self.asked.lock().unwrap().clone()
    }
}

impl Drop for CountingHolder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn bvtorrent_client_killed_20_times_ends_correct_without_refetching() {
    const CHUNK: usize = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    for d in ["tracker", "dl", "logs"] {
        fs::create_dir(dir.path().join(d)).unwrap();
    }
    let data = Arc::new(random_bytes(256 * CHUNK - 99, 32));
    let file = dir.path().join("tracker/data.bin");
    fs::write(&file, &*data).unwrap();
    let port = free_port();
    let mut c = Command::new(bin("bvtorrent-tracker"));
    c.args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--chunk-size",
        &CHUNK.to_string(),
    ])
    .arg(&file);
    let _tracker = Proc::spawn("tracker", c, dir.path().join("logs/tracker.log"));
    let tracker = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(format!("127.0.0.1:{port}").parse().unwrap());
    // The only holder, 25 ms a chunk: 256 chunks take several seconds.
    let holder = CountingHolder::start(data.clone(), CHUNK, Duration::from_millis(25));
    let (member, d) = TrackerSession::connect(tracker).unwrap();
    member
        .register(holder.port, &Bitfield::full(d.chunks.len()))
        .unwrap();
    let chunks = d.chunks.len();
    let run = |k: usize, done: bool| {
        let mut c = Command::new(bin("bvtorrent-client"));
        c.arg("--dir")
            .arg(dir.path().join("dl"))
            .args(["--listen", "127.0.0.1:0"])
            .arg(tracker.to_string());
        if done {
            c.arg("--exit-when-done");
        }
        Proc::spawn("client", c, dir.path().join(format!("logs/client-{k}.log")))
    };
    let target = dir.path().join("dl/data.bin");
    let mut rng = Rng(0x005e_edb0_2026);
    let mut after_kill: Vec<(HashSet<usize>, usize)> = Vec::new();
    for k in 0..KILLS {
        let mut p = run(k, false);
        thread::sleep(Duration::from_millis(rng.below(400)));
        assert!(
            p.child.try_wait().unwrap().is_none(),
            "kill {k}: the client had already ended:\n{}",
            p.log_text()
        );
        p.kill();
        holder.settle();
        let v = verified_on_disk(&target, &data, CHUNK);
        eprintln!("kill {k:2}: {} of {chunks} chunks on disk", v.len());
        after_kill.push((v, holder.asked().len()));
    }
    let mut last = run(KILLS, true);
    let st = last.wait_timeout(LIMIT);
    assert!(
        st.is_some_and(|x| x.success()),
        "{st:?}\n{}",
        last.log_text()
    );
    assert!(fs::read(&target).unwrap() == *data, "the file differs");
    let resumed = after_kill.last().unwrap().0.len();
    let out = fs::read_to_string(dir.path().join(format!("logs/client-{KILLS}.out"))).unwrap();
    assert!(out.contains(&format!("{resumed} already on disk")), "{out}");
    let asked = holder.asked();
    let twice = refetched(&after_kill, &asked);
    assert!(twice.is_empty(), "(kill, chunk) fetched again: {twice:?}");
    eprintln!(
        "{KILLS} kills survived: {resumed} of {chunks} chunks on disk before the last run, \
         {} requests in all for {chunks} chunks; last run: {}",
        asked.len(),
        out.trim()
    );
}

/// Runs `program args` twice in a private mount namespace where `dir` is a tmpfs of
/// `size` with `ballast` bytes taken, the ballast deleted between the runs; each run's
/// exit code, stdout and stderr, and a copy of `file` in `dir` as it left it.
fn disk_full_runs(
    dir: &Path,
    size: &str,
    ballast: usize,
    file: &str,
    cmd: &[OsString],
    out: &Path,
) -> Vec<(i32, String, String, Vec<u8>)> {
    let script = r#"
        set -u
        mount -t tmpfs -o size="$SIZE" swarmlet-test "$DIR" || exit 90
        head -c "$BALLAST" /dev/zero > "$DIR/ballast" || exit 91
        for run in 1 2; do
            "$@" > "$OUT/$run.out" 2> "$OUT/$run.err"
            echo $? > "$OUT/$run.rc"
            cp "$DIR/$FILE" "$OUT/$run.data" 2>/dev/null || : > "$OUT/$run.data"
            rm -f "$DIR/ballast"
        done
    "#;
    require_program("mount", "mount");
    let status = Command::new(require_program("unshare", "util-linux"))
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .args(cmd)
        .env("DIR", dir)
        .env("SIZE", size)
        .env("BALLAST", ballast.to_string())
        .env("FILE", file)
        .env("OUT", out)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cannot set up the small tmpfs (needs root: unshare --mount, mount -t tmpfs): {status}"
    );
    (1..=2)
        .map(|run| {
            let read = |ext: &str| fs::read_to_string(out.join(format!("{run}.{ext}"))).unwrap();
            (
                read("rc").trim().parse().unwrap(),
                read("out"),
                read("err"),
                fs::read(out.join(format!("{run}.data"))).unwrap(),
            )
        })
        .collect()
}

#[test]
fn swarmlet_download_on_a_full_disk_is_a_clear_error_and_the_next_run_finishes() {
    common::require_root();
    // 2 MiB of 16 KiB pieces into a 3 MiB tmpfs with 2 MiB taken: full half-way.
    let s = BtSwarm::new(2 << 20, 33);
    let (_seed, addr) = s.seed(None);
    let out = tempfile::tempdir().unwrap();
    let peer = addr.to_string();
    let cmd: Vec<OsString> = vec![
        bin("swarmlet").into(),
        "download".into(),
        s.torrent.clone().into(),
        "--dir".into(),
        s.path("dl").into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--peer".into(),
        peer.into(),
    ];
    let runs = disk_full_runs(&s.path("dl"), "3m", 2 << 20, "data.bin", &cmd, out.path());
    let (rc, _, err, data) = &runs[0];
    assert_eq!(*rc, 1, "the first run must fail:\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert_eq!(
        lines[0].matches("No space left on device").count(),
        1,
        "{}",
        lines[0]
    );
    let pieces = s.data.len().div_ceil(BT_PIECE);
    let good = verified_on_disk(&out.path().join("1.data"), &s.data, BT_PIECE).len();
    assert!(good > 0 && good < pieces, "{good} of {pieces}");
    // Pieces neither right nor untouched (zeros): cut by the full disk mid-write.
    let torn = data
        .chunks(BT_PIECE)
        .zip(s.data.chunks(BT_PIECE))
        .filter(|(g, w)| g != w && g.iter().any(|&b| b != 0))
        .count();
    let (rc, stdout, err, data) = &runs[1];
    assert_eq!(*rc, 0, "the second run failed:\n{err}");
    assert!(*data == s.data, "the file differs after the second run");
    // Exactly the right pieces were taken as done: a torn one was fetched again.
    assert!(
        stdout.contains(&format!("{good} pieces resumed")),
        "{stdout}"
    );
    eprintln!(
        "disk full after {good} of {pieces} pieces ({torn} torn): {}; the next run: {}",
        lines[0],
        stdout.lines().last().unwrap_or("")
    );
}

#[test]
fn bvtorrent_client_on_a_full_disk_is_a_clear_error_and_the_next_run_finishes() {
    common::require_root();
    const CHUNK: usize = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    for d in ["tracker", "seed", "dl"] {
        fs::create_dir(dir.path().join(d)).unwrap();
    }
    let data = random_bytes(32 * CHUNK - 5, 34);
    fs::write(dir.path().join("tracker/data.bin"), &data).unwrap();
    fs::write(dir.path().join("seed/data.bin"), &data).unwrap();
    let port = free_port();
    let mut c = Command::new(bin("bvtorrent-tracker"));
    c.args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--chunk-size",
        &CHUNK.to_string(),
    ])
    .arg(dir.path().join("tracker/data.bin"));
    let _tracker = Proc::spawn("tracker", c, dir.path().join("tracker.log"));
    wait_listening(format!("127.0.0.1:{port}").parse().unwrap());
    let tracker = format!("127.0.0.1:{port}");
    let mut c = Command::new(bin("bvtorrent-client"));
    c.arg("--dir")
        .arg(dir.path().join("seed"))
        .args(["--listen", "127.0.0.1:0", &tracker]);
    let _seed = Proc::spawn("seed", c, dir.path().join("seed.log"));
    let out = tempfile::tempdir().unwrap();
    let cmd: Vec<OsString> = vec![
        bin("bvtorrent-client").into(),
        "--dir".into(),
        dir.path().join("dl").into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--exit-when-done".into(),
        tracker.clone().into(),
    ];
    // Let the seed register before the leecher's first list.
    let (obs, _) = TrackerSession::connect(tracker.parse().unwrap()).unwrap();
    obs.register(0, &Bitfield::new(32)).unwrap();
    let end = Instant::now() + LIMIT;
    while !obs.client_list().unwrap().iter().any(|h| h.has.is_full()) {
        assert!(Instant::now() < end, "the seed never registered");
        thread::sleep(Duration::from_millis(20));
    }
    // 2 MiB into a 3 MiB tmpfs with 2 MiB taken.
    let runs = disk_full_runs(
        &dir.path().join("dl"),
        "3m",
        2 << 20,
        "data.bin",
        &cmd,
        out.path(),
    );
    let (rc, _, err, _) = &runs[0];
    assert_eq!(*rc, 1, "the first run must fail:\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert_eq!(
        lines[0].matches("No space left on device").count(),
        1,
        "{}",
        lines[0]
    );
    let good = verified_on_disk(&out.path().join("1.data"), &data, CHUNK).len();
    assert!(good > 0 && good < 32, "{good} of 32");
    let (rc, stdout, err, got) = &runs[1];
    assert_eq!(*rc, 0, "the second run failed:\n{err}");
    assert!(*got == data, "the file differs after the second run");
    assert!(
        stdout.contains(&format!("{good} already on disk")),
        "{stdout}"
    );
    eprintln!(
        "disk full after {good} of 32 chunks: {}; the next run: {}",
        lines[0],
        stdout.trim()
    );
}
