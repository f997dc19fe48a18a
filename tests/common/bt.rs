//! The BitTorrent tests' shared pieces: the multi-file tree they move and its torrents,
//! the tree comparison, children killed on drop, reading a child's announced address,
//! libtorrent through Debian's python, `swarmlet seed` / `swarmlet download` as
//! children, and the summary line's counters.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{bin, random_bytes, require_program};

/// The libtorrent peer script (seed or leech one torrent on 127.0.0.1).
pub const LT_PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/lt_peer.py");

/// Hang guard for one download: far beyond what a few MiB take on a loaded loopback.
pub const DOWNLOAD_LIMIT: Duration = Duration::from_secs(180);

/// How long a child may take to print the line a test waits for (its address, once its
/// data is checked): a hang guard on a loaded machine.
pub const LINE_LIMIT: Duration = Duration::from_secs(60);

/// The tree most tests move: several 64 KiB pieces spanning files; zero-length files
/// first, in the middle and last; a file under one block; a short last piece.
pub const TREE: [(&str, usize); 6] = [
    ("0 empty", 0),
    ("a.bin", 1_500_003),
    ("sub/tiny", 7),
    ("sub/zero", 0),
    ("sub/deep/b.bin", 2_300_001),
    ("zz", 0),
];

/// Total bytes of [`TREE`].
pub const TREE_BYTES: usize = 1_500_003 + 7 + 2_300_001;

/// Pieces of [`TREE`] in 64 KiB pieces.
pub const TREE_PIECES: usize = TREE_BYTES.div_ceil(65536);

/// Writes [`TREE`] under `dir/t`.
pub fn write_tree(dir: &Path) {
    for (i, (p, n)) in TREE.iter().enumerate() {
        let path = dir.join("t").join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, random_bytes(*n, i as u64 + 7)).unwrap();
    }
}

/// Writes the tree under `dir/t` and makes `dir/t.torrent` with mktorrent (64 KiB
/// pieces, no tracker): a torrent made by another program.
pub fn make_torrent(dir: &Path) -> PathBuf {
    write_tree(dir);
    mktorrent(dir, "t.torrent", &[])
}

/// `dir/<name>` made by mktorrent over `dir/t` (64 KiB pieces), one `-a` per tracker
/// URL (each its own tier).
pub fn mktorrent(dir: &Path, name: &str, trackers: &[String]) -> PathBuf {
    let mut c = Command::new(require_program("mktorrent", "mktorrent"));
    c.current_dir(dir).args(["-l", "16", "-o", name]);
    for t in trackers {
        c.args(["-a", t]);
    }
    let o = c.arg("t").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    dir.join(name)
}

/// Writes the tree under `dir/t` and makes `dir/t.torrent` with `swarmlet create`.
pub fn make_torrent_ours(dir: &Path) -> PathBuf {
    write_tree(dir);
    let o = Command::new(bin("swarmlet"))
        .current_dir(dir)
        .args(["create", "t", "--piece-length", "65536", "-o", "t.torrent"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    dir.join("t.torrent")
}

/// Panics unless `b/t` holds the same [`TREE`] as `a/t`, byte for byte.
pub fn assert_same_tree(a: &Path, b: &Path) {
    for (p, _) in TREE {
        let (x, y) = (a.join("t").join(p), b.join("t").join(p));
        let x = std::fs::read(&x).unwrap();
        let y = std::fs::read(&y).unwrap_or_else(|e| panic!("{}: {e}", y.display()));
        assert!(x == y, "{p} differs ({} vs {} bytes)", x.len(), y.len());
    }
}

/// A child killed (SIGKILL, by its pid) on drop, so a failing test leaves nothing behind.
pub struct Killed(pub Child);

impl Killed {
    /// Sends `signal` to the child, by its pid.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of our own child, still unreaped (we hold it).
        unsafe { libc::kill(self.0.id() as i32, signal) };
    }

    /// Waits up to `limit` for the child to exit.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the child's stdout until a line starts with `prefix` (within [`LINE_LIMIT`]),
/// then keeps draining it: a process writing to a closed pipe would fail.
pub fn line_starting(child: &mut Child, prefix: &str) -> String {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = prefix.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if line.starts_with(&wanted) {
                let _ = tx.send(line);
            }
        }
    });
    rx.recv_timeout(LINE_LIMIT)
        .unwrap_or_else(|_| panic!("the process never printed {prefix:?}"))
}

/// Debian's python, the one with libtorrent (the `python3` on PATH may be another).
pub fn python() -> PathBuf {
    let p = PathBuf::from("/usr/bin/python3");
    assert!(
        p.exists(),
        "needs /usr/bin/python3 with libtorrent (Debian package python3-libtorrent): run scripts/test.sh"
    );
    p
}

/// A libtorrent seeder of `torrent` over `dir`; returns it and its port once seeding.
pub fn lt_seed(torrent: &Path, dir: &Path) -> (Killed, u16) {
    let mut lt = Killed(
        Command::new(python())
            .args([LT_PEER, "seed", torrent.to_str().unwrap()])
            .arg(dir)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let line = line_starting(&mut lt.0, "port ");
    let port = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    (lt, port)
}

/// `swarmlet seed TORRENT -d DIR --listen LISTEN` plus `extra`, stdout piped.
pub fn seed_command(torrent: &Path, dir: &Path, listen: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(bin("swarmlet"));
    c.args(["seed", torrent.to_str().unwrap(), "-d"])
        .arg(dir)
        .args(["--listen", listen])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    c
}

/// Starts `swarmlet seed` on 127.0.0.1 (a port of its choice) with `extra` arguments;
/// returns it and its address once it seeds.
pub fn swarmlet_seed(torrent: &Path, dir: &Path, extra: &[&str]) -> (Killed, SocketAddr) {
    swarmlet_seed_on(torrent, dir, "127.0.0.1:0", extra)
}

/// Like [`swarmlet_seed`] on `listen`.
pub fn swarmlet_seed_on(
    torrent: &Path,
    dir: &Path,
    listen: &str,
    extra: &[&str],
) -> (Killed, SocketAddr) {
    let mut seed = Killed(seed_command(torrent, dir, listen, extra).spawn().unwrap());
    let line = line_starting(&mut seed.0, "seeding ");
    let addr = line.rsplit(' ').next().unwrap().parse().unwrap();
    (seed, addr)
}

/// `swarmlet download TORRENT -o DIR --listen LISTEN --peer P...` with stdout and
/// stderr piped.
pub fn download_command(torrent: &Path, dir: &Path, listen: &str, peers: &[String]) -> Command {
    let mut c = Command::new(bin("swarmlet"));
    c.args(["download", torrent.to_str().unwrap(), "-o"])
        .arg(dir)
        .args(["--listen", listen]);
    for p in peers {
        c.args(["--peer", p]);
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// `swarmlet download` as a child (see [`download_command`]).
pub fn spawn_download(torrent: &Path, dir: &Path, listen: &str, peers: &[String]) -> Child {
    download_command(torrent, dir, listen, peers)
        .spawn()
        .unwrap()
}

/// Waits for the child (at most [`DOWNLOAD_LIMIT`]) and returns its output.
pub fn finish(child: Child) -> Output {
    let pid = child.id();
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DOWNLOAD_LIMIT) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on the pid of our own child, still unreaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            // What it said until then is the best clue to why it hung.
            let said = match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Ok(o)) => format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
                _ => String::new(),
            };
            panic!(
                "the child did not finish in {:?}; it said:\n{said}",
                start.elapsed()
            );
        }
    }
}

/// Panics with the child's stdout and stderr unless it exited 0; returns its stdout.
pub fn succeeded(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "exit {}: {out}{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The summary line (`NAME: downloaded N bytes in ...`) of a download's stdout.
pub fn summary(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|l| l.contains(": downloaded "))
        .unwrap_or_else(|| panic!("no summary line in {stdout:?}"))
}

/// The number in the summary line right before `what` (`" re-fetched"`, `" pieces
/// resumed"`) or right after it (`"uploaded "`, `"downloaded "`).
pub fn summary_count(stdout: &str, what: &str) -> u64 {
    let line = summary(stdout);
    let number = if what.ends_with(' ') {
        line.split(what).nth(1).and_then(|s| s.split(' ').next())
    } else {
        line.split(what).next().and_then(|s| s.rsplit(' ').next())
    };
    number
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count for {what:?} in {line:?}"))
}

/// The summary line's `uploaded N bytes`.
pub fn uploaded(stdout: &str) -> u64 {
    summary_count(stdout, "uploaded ")
}

/// The hex infohash of a torrent, as `swarmlet show --json` prints it.
pub fn infohash_hex(torrent: &Path) -> String {
    let show = Command::new(bin("swarmlet"))
        .args(["show", "--json", torrent.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(show.status.success(), "{show:?}");
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    v["infohash"].as_str().unwrap().to_string()
}

/// Polls the HTTP scrape of the tracker on 127.0.0.1:`port` (bounded, 30 s) until it
/// counts a seeder of `torrent`: a leecher's first announce then lists it (trackers
/// re-announce only after their interval, which may be half an hour).
pub fn wait_for_a_seeder(port: u16, torrent: &Path) {
    use std::io::{Read, Write};
    let hex = infohash_hex(torrent);
    let pct = super::pct(&super::hex(&hex));
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET /scrape?info_hash={pct} HTTP/1.0\r\n\r\n").unwrap();
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        if reply.windows(13).any(|w| w == b"8:completei1e") {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no seeder announced itself to the tracker");
}
