//! Our bvtorrent-client as a real process, against our tracker and the independent
//! reference (tests/reference/bvtorrent.py): seeding to the reference client, downloading
//! from a reference seed, the reference holder's faults, port-0 entries, and leaving on
//! SIGINT. Files are compared byte for byte.
mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, bin, free_port, random_bytes, require_program};
use swarmlet::bitfield::Bitfield;
use swarmlet::bv::session::{Holder, TrackerSession};

/// Chunks of 64 KiB keep files small while giving every test many chunks.
const CHUNK: u64 = 65_536;
/// Hang guard for a whole download (not a speed assertion).
const LIMIT: Duration = Duration::from_secs(120);

fn reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/bvtorrent.py")
}

fn python() -> PathBuf {
    require_program("python3", "python3")
}

#[derive(Clone, Copy, PartialEq)]
enum Tracker {
    Ours,
    Reference,
}

fn start_tracker(kind: Tracker, file: &Path, logs: &Path) -> (Proc, SocketAddr) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let cmd = match kind {
        Tracker::Ours => {
            let mut c = Command::new(bin("bvtorrent-tracker"));
            c.args(["--listen", &listen, "--chunk-size", &CHUNK.to_string()])
                .arg(file);
            c
        }
        Tracker::Reference => {
            let mut c = Command::new(python());
            c.arg(reference()).arg("tracker").arg(file).args([
                "--listen",
                &listen,
                "--chunk-size",
                &CHUNK.to_string(),
            ]);
            c
        }
    };
    let p = Proc::spawn("tracker", cmd, logs.join("tracker.log"));
    let end = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "tracker never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    (p, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn ours(label: &str, tracker: SocketAddr, dir: &Path, logs: &Path, done: bool) -> Proc {
    let mut c = Command::new(bin("bvtorrent-client"));
    c.arg("--dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .arg(tracker.to_string())
        .env("RUST_LOG", "debug");
    if done {
        c.arg("--exit-when-done");
    }
    Proc::spawn(label, c, logs.join(format!("{label}.log")))
}

fn theirs(label: &str, tracker: SocketAddr, dir: &Path, logs: &Path, extra: &[&str]) -> Proc {
    let mut c = Command::new(python());
    c.arg(reference())
        .arg("client")
        .arg(tracker.to_string())
        .arg("--dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra);
    Proc::spawn(label, c, logs.join(format!("{label}.log")))
}

/// A member that only watches: registered with port 0 and an empty mask (so every list
/// also carries a port-0 entry that clients must skip).
struct Observer(TrackerSession);

impl Observer {
    fn join(tracker: SocketAddr) -> Self {
        let (s, d) = TrackerSession::connect(tracker).unwrap();
        s.register(0, &Bitfield::new(d.chunks.len())).unwrap();
        Observer(s)
    }
    fn list(&self) -> Vec<Holder> {
        self.0.client_list().unwrap()
    }
    /// Waits until `pred` holds of the list (hang guard only).
    fn wait(&self, what: &str, pred: impl Fn(&[Holder]) -> bool) {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let l = self.list();
            if pred(&l) {
                return;
            }
            assert!(Instant::now() < end, "never: {what}: {l:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fn wait_seeds(&self, n: usize) {
        self.wait(&format!("{n} seeds"), |l| {
            l.iter().filter(|h| h.has.is_full()).count() >= n
        });
    }
}

fn wait_exit(p: &mut Proc) {
    let st = p.wait_timeout(LIMIT);
    assert!(
        st.is_some_and(|s| s.success()),
        "{} exited {st:?}; log:\n{}",
        p.name,
        p.log_text()
    );
}

struct Swarm {
    dir: tempfile::TempDir,
    data: Vec<u8>,
    name: &'static str,
}

impl Swarm {
    fn new(len: usize, seed: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let name = "swarm file é.bin";
        let data = random_bytes(len, seed);
        let s = Swarm { dir, data, name };
        std::fs::create_dir_all(s.sub("tracker")).unwrap();
        std::fs::write(s.sub("tracker").join(name), &s.data).unwrap();
        s
    }
    fn sub(&self, d: &str) -> PathBuf {
        let p = self.dir.path().join(d);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
    fn seed_dir(&self, d: &str) -> PathBuf {
        let p = self.sub(d);
        std::fs::write(p.join(self.name), &self.data).unwrap();
        p
    }
    fn file(&self) -> PathBuf {
        self.sub("tracker").join(self.name)
    }
    fn logs(&self) -> PathBuf {
        self.sub("logs")
    }
    fn assert_has(&self, d: &str) {
        let got = std::fs::read(self.sub(d).join(self.name)).unwrap();
        assert!(got == self.data, "{d}: file differs");
    }
}

fn our_seed_to_reference_client(kind: Tracker) {
    let s = Swarm::new(20 * CHUNK as usize + 999, 11);
    let (_t, addr) = start_tracker(kind, &s.file(), &s.logs());
    let obs = Observer::join(addr);
    let _seed = ours("seed", addr, &s.seed_dir("seed"), &s.logs(), false);
    obs.wait_seeds(1);
    let mut leech = theirs(
        "leech",
        addr,
        &s.sub("leech"),
        &s.logs(),
        &["--exit-when-done"],
    );
    wait_exit(&mut leech);
    s.assert_has("leech");
}

#[test]
fn our_seed_to_the_reference_client_with_our_tracker() {
    our_seed_to_reference_client(Tracker::Ours);
}

#[test]
fn our_seed_to_the_reference_client_with_the_reference_tracker() {
    our_seed_to_reference_client(Tracker::Reference);
}

fn our_client_from_reference_seed(kind: Tracker) {
    let s = Swarm::new(17 * CHUNK as usize + 5, 12);
    let (_t, addr) = start_tracker(kind, &s.file(), &s.logs());
    let obs = Observer::join(addr);
    let _seed = theirs("seed", addr, &s.seed_dir("seed"), &s.logs(), &[]);
    obs.wait_seeds(1);
    let mut leech = ours("leech", addr, &s.sub("leech"), &s.logs(), true);
    wait_exit(&mut leech);
    s.assert_has("leech");
    // It left: only the seed and the observer remain.
    obs.wait("the leecher gone", |l| l.len() == 1);
}

#[test]
fn our_client_downloads_from_a_reference_seed_with_our_tracker() {
    our_client_from_reference_seed(Tracker::Ours);
}

#[test]
fn our_client_downloads_from_a_reference_seed_with_the_reference_tracker() {
    our_client_from_reference_seed(Tracker::Reference);
}

/// A reference holder with `fault`, and an honest one slowed down so that the faulty one
/// is asked too: our client still finishes with the right bytes. Returns the faulty
/// holder's address and our client's log.
fn fault(fault: &str) -> (SocketAddr, String) {
    let s = Swarm::new(12 * CHUNK as usize + 77, 13);
    let (_t, addr) = start_tracker(Tracker::Ours, &s.file(), &s.logs());
    let obs = Observer::join(addr);
    let _bad = theirs(
        "bad",
        addr,
        &s.seed_dir("bad"),
        &s.logs(),
        &["--fault", fault],
    );
    obs.wait_seeds(1);
    let bad = obs.list()[0].addr;
    let _good = theirs(
        "good",
        addr,
        &s.seed_dir("good"),
        &s.logs(),
        &["--slow-upload", "2000000"],
    );
    obs.wait_seeds(2);
    let mut leech = ours("leech", addr, &s.sub("leech"), &s.logs(), true);
    wait_exit(&mut leech);
    s.assert_has("leech");
    (bad, leech.log_text())
}

#[test]
fn a_holder_sending_wrong_chunks_is_avoided() {
    let (bad, log) = fault("wrong");
    // The engine logs each failure as `<holder>: chunk N: <why>`.
    let lie = format!("{bad}: chunk ");
    assert!(
        log.lines()
            .any(|l| l.contains(&lie) && l.contains("does not match its SHA-224")),
        "the liar was never asked:\n{log}"
    );
    assert!(
        !log.contains(&format!("verified from {bad}")),
        "a chunk from the liar was kept:\n{log}"
    );
}

#[test]
fn a_holder_sending_short_chunks_is_survived() {
    let (bad, log) = fault("short");
    let short = format!("{bad}: chunk ");
    assert!(
        log.lines()
            .any(|l| l.contains(&short) && l.contains("short read")),
        "the short holder was never asked:\n{log}"
    );
}

#[test]
fn a_holder_that_never_closes_is_read_by_length() {
    let (bad, log) = fault("noclose");
    // Chunks from the holder that keeps its connections open were kept all the same.
    assert!(
        log.contains(&format!("verified from {bad}")),
        "no chunk from the holder that never closes:\n{log}"
    );
}

#[test]
fn port_zero_entries_are_skipped() {
    let s = Swarm::new(5 * CHUNK as usize, 14);
    let (_t, addr) = start_tracker(Tracker::Ours, &s.file(), &s.logs());
    // Two port-0 members claiming every chunk, before and after the seed.
    let zero = |full: bool| {
        let (z, d) = TrackerSession::connect(addr).unwrap();
        let n = d.chunks.len();
        let mask = if full {
            Bitfield::full(n)
        } else {
            Bitfield::new(n)
        };
        z.register(0, &mask).unwrap();
        z
    };
    let _z1 = zero(true);
    let obs = Observer::join(addr);
    let _seed = ours("seed", addr, &s.seed_dir("seed"), &s.logs(), false);
    obs.wait_seeds(1);
    let _z2 = zero(true);
    let mut leech = ours("leech", addr, &s.sub("leech"), &s.logs(), true);
    wait_exit(&mut leech);
    s.assert_has("leech");
    assert!(!leech.log_text().contains(":0:"), "{}", leech.log_text());
}

#[test]
fn sigint_sends_disconnect_and_exits_zero() {
    let s = Swarm::new(3 * CHUNK as usize, 15);
    for kind in [Tracker::Ours, Tracker::Reference] {
        let (_t, addr) = start_tracker(kind, &s.file(), &s.logs());
        let obs = Observer::join(addr);
        let mut seed = ours("seed", addr, &s.seed_dir("seed"), &s.logs(), false);
        obs.wait_seeds(1);
        // SAFETY: a signal to the child we started, by its pid.
        assert_eq!(unsafe { libc::kill(seed.pid() as i32, libc::SIGINT) }, 0);
        wait_exit(&mut seed);
        obs.wait("the seed gone", |l| l.is_empty());
        let out = std::fs::read_to_string(seed.log.with_extension("out")).unwrap();
        assert!(out.starts_with("done "), "summary line: {out}");
        if kind == Tracker::Reference {
            let t = std::fs::read_to_string(s.logs().join("tracker.log")).unwrap();
            assert!(
                t.contains("disconnect 127.0.0.1:"),
                "no DISCONNECT! seen:\n{t}"
            );
        }
    }
}

#[test]
fn the_session_skips_its_own_entry_and_port_zero() {
    let s = Swarm::new(3 * CHUNK as usize, 16);
    for kind in [Tracker::Ours, Tracker::Reference] {
        let (_t, addr) = start_tracker(kind, &s.file(), &s.logs());
        let _zero = Observer::join(addr);
        let (a, d) = TrackerSession::connect(addr).unwrap();
        let (b, _) = TrackerSession::connect(addr).unwrap();
        let n = d.chunks.len();
        a.register(7001, &Bitfield::full(n)).unwrap();
        b.register(7002, &Bitfield::new(n)).unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        let ports = |s: &TrackerSession| -> Vec<u16> {
            s.client_list()
                .unwrap()
                .iter()
                .map(|h| h.addr.port())
                .collect()
        };
        while ports(&a) != [7002] || ports(&b) != [7001] {
            assert!(Instant::now() < end, "{:?} {:?}", ports(&a), ports(&b));
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut one = Bitfield::new(n);
        one.set(1);
        b.update_mask(&one).unwrap();
        while a.client_list().unwrap()[0].has != one {
            assert!(Instant::now() < end, "mask never updated");
            std::thread::sleep(Duration::from_millis(50));
        }
        b.disconnect().unwrap();
        assert!(b.client_list().is_err(), "ended");
        while !ports(&a).is_empty() {
            assert!(Instant::now() < end, "b never left");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Killed with SIGKILL mid-download, started again: it re-checks the partial file and
/// fetches only what is missing (summary: already on disk + downloaded = all chunks).
#[test]
fn a_killed_download_resumes_without_refetching_verified_chunks() {
    let s = Swarm::new(40 * CHUNK as usize, 17);
    let (_t, addr) = start_tracker(Tracker::Ours, &s.file(), &s.logs());
    let obs = Observer::join(addr);
    // A slow seed: 40 chunks of 64 KiB at 1 MB/s take over 2 s, time to kill mid-way.
    let _seed = theirs(
        "seed",
        addr,
        &s.seed_dir("seed"),
        &s.logs(),
        &["--slow-upload", "1000000"],
    );
    obs.wait_seeds(1);
    let mut first = ours("first", addr, &s.sub("leech"), &s.logs(), true);
    obs.wait("some chunks downloaded", |l| {
        l.iter().any(|h| !h.has.is_full() && h.has.count() >= 5)
    });
    first.kill();
    let mut second = ours("second", addr, &s.sub("leech"), &s.logs(), true);
    wait_exit(&mut second);
    s.assert_has("leech");
    let out = std::fs::read_to_string(second.log.with_extension("out")).unwrap();
    // "done NAME: B bytes, 40 chunks (R already on disk, D downloaded, ...".
    let nums = |key: &str| -> usize {
        let before = out.split(key).next().unwrap();
        before
            .rsplit(['(', ' '])
            .find(|w| !w.is_empty())
            .unwrap()
            .parse()
            .unwrap()
    };
    let (resumed, downloaded) = (nums(" already on disk"), nums(" downloaded"));
    assert!(resumed >= 5, "{out}");
    assert_eq!(resumed + downloaded, 40, "{out}");
}

/// `..., N uploaded`: the upload count of our client's summary line.
fn uploaded(p: &Proc) -> u64 {
    let out = std::fs::read_to_string(p.log.with_extension("out")).unwrap_or_default();
    let line = out.lines().last().unwrap_or_default().to_string();
    line.rsplit(", ")
        .next()
        .and_then(|s| s.strip_suffix(" uploaded"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no upload count in {line:?}"))
}

#[test]
fn three_of_ours_and_a_reference_client_trade_chunks_from_a_slow_seed() {
    let s = Swarm::new(48 * CHUNK as usize, 15);
    let (_t, addr) = start_tracker(Tracker::Ours, &s.file(), &s.logs());
    let obs = Observer::join(addr);
    // The seed uploads at 1 MB/s: 3 MiB to each of 4 leechers would take 12 s from it
    // alone, so the leechers must fetch from one another.
    let _seed = theirs(
        "seed",
        addr,
        &s.seed_dir("seed"),
        &s.logs(),
        &["--slow-upload", "1000000"],
    );
    obs.wait_seeds(1);
    let mut leechers: Vec<Proc> = (0..3)
        .map(|i| {
            ours(
                &format!("o{i}"),
                addr,
                &s.sub(&format!("o{i}")),
                &s.logs(),
                true,
            )
        })
        .collect();
    let mut reference = theirs("ref", addr, &s.sub("ref"), &s.logs(), &["--exit-when-done"]);
    let mut traded = 0;
    for (i, p) in leechers.iter_mut().enumerate() {
        wait_exit(p);
        traded += uploaded(p);
        s.assert_has(&format!("o{i}"));
    }
    wait_exit(&mut reference);
    s.assert_has("ref");
    assert!(traded > 0, "our leechers uploaded nothing to the others");
    eprintln!("our three leechers uploaded {traded} chunks to the swarm");
}

#[test]
fn a_listed_holder_nobody_listens_for_is_skipped() {
    let s = Swarm::new(6 * CHUNK as usize, 16);
    let (_t, addr) = start_tracker(Tracker::Ours, &s.file(), &s.logs());
    let (dead, d) = TrackerSession::connect(addr).unwrap();
    dead.register(free_port(), &Bitfield::full(d.chunks.len()))
        .unwrap();
    let obs = Observer::join(addr);
    let _seed = theirs("seed", addr, &s.seed_dir("seed"), &s.logs(), &[]);
    obs.wait_seeds(2);
    let mut leech = ours("leech", addr, &s.sub("leech"), &s.logs(), true);
    wait_exit(&mut leech);
    s.assert_has("leech");
    assert!(
        leech.log_text().contains("refused the connection")
            || leech.log_text().contains("Connection refused")
    );
}

/// What a fake holder was asked: chunk indexes and where each request came from.
type Asked = std::sync::Arc<std::sync::Mutex<Vec<(usize, std::net::IpAddr)>>>;

/// A fake holder on its own thread: serves each requested chunk from `data` after
/// `delay`, and records every request for a chunk its `mask` does not list (some
/// clients' listeners die on those). Returns its port and the requests it got.
fn fake_holder(data: Vec<u8>, mask: Vec<bool>, delay: Duration) -> (u16, Asked) {
    use std::io::{BufRead, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    std::thread::spawn(move || {
        for s in l.incoming().take(1000) {
            let Ok(s) = s else { continue };
            let (data, mask, seen) = (data.clone(), mask.clone(), seen.clone());
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let mut r = std::io::BufReader::new(&s);
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    return;
                }
                let Ok(i) = line.trim().parse::<usize>() else {
                    return;
                };
                let from = s.peer_addr().map(|a| a.ip()).unwrap_or([0, 0, 0, 0].into());
                seen.lock().unwrap().push((i, from));
                if !mask.get(i).copied().unwrap_or(false) {
                    return; // close: what a holder without the chunk does
                }
                std::thread::sleep(delay);
                let start = i * CHUNK as usize;
                let end = (start + CHUNK as usize).min(data.len());
                let _ = (&s).write_all(&data[start..end]);
            });
        }
    });
    (port, asked)
}

#[test]
fn holders_are_asked_only_for_chunks_their_masks_list_and_slow_holders_are_waited_for() {
    // A holder listing only chunk 0, beside a seed: it is never asked for another chunk.
    let s = Swarm::new(8 * CHUNK as usize, 17);
    let (_t, addr) = start_tracker(Tracker::Ours, &s.file(), &s.logs());
    let mut mask = vec![false; 8];
    mask[0] = true;
    let (port, asked) = fake_holder(s.data.clone(), mask.clone(), Duration::ZERO);
    let (member, _) = TrackerSession::connect(addr).unwrap();
    member.register(port, &Bitfield::from_bools(mask)).unwrap();
    let obs = Observer::join(addr);
    let _seed = theirs("seed", addr, &s.seed_dir("seed"), &s.logs(), &[]);
    obs.wait_seeds(1);
    let mut leech = ours("leech", addr, &s.sub("leech"), &s.logs(), true);
    wait_exit(&mut leech);
    s.assert_has("leech");
    let asked = asked.lock().unwrap().clone();
    assert!(asked.iter().all(|&(i, _)| i == 0), "asked for {asked:?}");

    // The only holder answers each chunk after 3 s (it queues connections): waited for.
    let s = Swarm::new(2 * CHUNK as usize, 18);
    let (_t, addr) = start_tracker(Tracker::Ours, &s.file(), &s.logs());
    let (port, asked) = fake_holder(s.data.clone(), vec![true; 2], Duration::from_secs(3));
    let (member, _) = TrackerSession::connect(addr).unwrap();
    member.register(port, &Bitfield::full(2)).unwrap();
    let mut leech = ours("slow", addr, &s.sub("slow"), &s.logs(), true);
    wait_exit(&mut leech);
    s.assert_has("slow");
    assert_eq!(asked.lock().unwrap().len(), 2, "each chunk asked once");
}

#[test]
fn outgoing_connections_are_not_bound_to_the_listen_address() {
    // Our client listens on 127.0.0.2 but its fetches leave from the address the kernel
    // routes from (127.0.0.1 towards a holder on 127.0.0.1), as other clients expect of a
    // peer that connects from one address and listens on another.
    let s = Swarm::new(3 * CHUNK as usize, 19);
    let (_t, addr) = start_tracker(Tracker::Ours, &s.file(), &s.logs());
    let (port, asked) = fake_holder(s.data.clone(), vec![true; 3], Duration::ZERO);
    let (member, _) = TrackerSession::connect(addr).unwrap();
    member.register(port, &Bitfield::full(3)).unwrap();
    let mut c = Command::new(bin("bvtorrent-client"));
    c.arg("--dir")
        .arg(s.sub("other"))
        .args(["--listen", "127.0.0.2:0", "--exit-when-done"])
        .arg(addr.to_string());
    let mut leech = Proc::spawn("other", c, s.logs().join("other.log"));
    wait_exit(&mut leech);
    s.assert_has("other");
    let asked = asked.lock().unwrap().clone();
    assert!(!asked.is_empty());
    assert!(
        asked
            .iter()
            .all(|&(_, ip)| ip == std::net::IpAddr::from([127, 0, 0, 1])),
        "{asked:?}"
    );
}
