//! Hostile bvTorrent members and holders against the real `bvtorrent-tracker` and
//! `bvtorrent-client`: registrations with masks of the wrong length, unknown commands,
//! UPDATE_MASK floods, 1,000 tracker connections (idle and registered), holders that send
//! the wrong chunk or too many bytes, and requesters that flood a client's upload port.
//! After each attack an honest client downloads the file (compared byte for byte), and
//! the tracker's and the seed's threads and resident memory are measured.
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Proc, bin, free_port, proc_status, random_bytes, threads};
use swarmlet::bitfield::Bitfield;
use swarmlet::bv::session::{Holder, TrackerSession};

const CHUNK: u64 = 65_536;
/// Hang guard for a whole download or a wait (not a speed assertion).
const LIMIT: Duration = Duration::from_secs(120);

struct Swarm {
    dir: tempfile::TempDir,
    data: Vec<u8>,
    chunks: usize,
}

const NAME: &str = "file.bin";

impl Swarm {
    fn new(chunks: usize, seed: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = random_bytes(chunks * CHUNK as usize - 123, seed);
        let s = Swarm { dir, data, chunks };
        std::fs::write(s.sub("tracker").join(NAME), &s.data).unwrap();
        s
    }
    fn sub(&self, d: &str) -> PathBuf {
        let p = self.dir.path().join(d);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
    fn seed_dir(&self, d: &str) -> PathBuf {
        let p = self.sub(d);
        std::fs::write(p.join(NAME), &self.data).unwrap();
        p
    }
    fn logs(&self) -> PathBuf {
        self.sub("logs")
    }
    fn tracker(&self) -> (Proc, SocketAddr) {
        let port = free_port();
        let mut c = Command::new(bin("bvtorrent-tracker"));
        c.args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--chunk-size",
            &CHUNK.to_string(),
        ])
        .arg(self.sub("tracker").join(NAME))
        .env("RUST_LOG", "warn");
        let p = Proc::spawn("tracker", c, self.logs().join("tracker.log"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let end = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < end, "tracker never listened");
            thread::sleep(Duration::from_millis(20));
        }
        (p, addr)
    }
    fn client(&self, label: &str, tracker: SocketAddr, dir: &Path, exit_when_done: bool) -> Proc {
        let mut c = Command::new(bin("bvtorrent-client"));
        c.arg("--dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .arg(tracker.to_string())
            .env("RUST_LOG", "debug");
        if exit_when_done {
            c.arg("--exit-when-done");
        }
        Proc::spawn(label, c, self.logs().join(format!("{label}.log")))
    }
    /// An honest leecher downloads the whole file: it exits 0 and the bytes are equal.
    fn honest_download(&self, label: &str, tracker: SocketAddr) -> String {
        let mut p = self.client(label, tracker, &self.sub(label), true);
        let st = p.wait_timeout(LIMIT);
        assert!(
            st.is_some_and(|s| s.success()),
            "{label} exited {st:?}:\n{}",
            p.log_text()
        );
        let got = std::fs::read(self.sub(label).join(NAME)).unwrap();
        assert!(got == self.data, "{label}: the file differs");
        std::fs::read_to_string(self.logs().join(format!("{label}.out"))).unwrap()
    }
}

/// A watching member (port 0, empty mask).
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
    fn wait(&self, what: &str, pred: impl Fn(&[Holder]) -> bool) -> Vec<Holder> {
        let end = Instant::now() + LIMIT;
        loop {
            let l = self.list();
            if pred(&l) {
                return l;
            }
            assert!(Instant::now() < end, "never: {what}: {l:?}");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A raw member connection: the descriptor read and thrown away.
fn raw(tracker: SocketAddr) -> BufReader<TcpStream> {
    let s = TcpStream::connect(tracker).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s);
    swarmlet::bv::codec::Descriptor::read(&mut r).unwrap();
    r
}

/// Whether the tracker closes `r` (EOF or reset) within the hang guard, discarding
/// anything it sends first (a client list).
fn closed(r: &mut BufReader<TcpStream>) -> bool {
    let end = Instant::now() + Duration::from_secs(30);
    let mut sink = [0u8; 4096];
    while Instant::now() < end {
        match r.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
    false
}

/// Waits until `pid` has at most `want` threads; returns the last count.
fn settle_threads(pid: u32, want: u64) -> u64 {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let n = threads(pid);
        if n <= want || Instant::now() > end {
            return n;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn rss_mib(pid: u32) -> u64 {
    proc_status(pid, "VmHWM").unwrap_or(0) / 1024
}

#[test]
fn the_tracker_drops_members_that_break_the_protocol_and_keeps_serving() {
    let s = Swarm::new(40, 21);
    let (tracker, addr) = s.tracker();
    let obs = Observer::join(addr);
    let _seed = s.client("seed", addr, &s.seed_dir("seed"), false);
    obs.wait("the seed", |l| l.iter().any(|h| h.has.is_full()));
    let base = threads(tracker.pid());
    let n = s.chunks;
    let mask = |len: usize| "1".repeat(len);
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        (
            "mask one short".into(),
            format!("5001,{}\n", mask(n - 1)).into(),
        ),
        (
            "mask one long".into(),
            format!("5002,{}\n", mask(n + 1)).into(),
        ),
        ("empty mask".into(), b"5003,\n".to_vec()),
        (
            "mask of 2s".into(),
            format!("5004,{}\n", "2".repeat(n)).into(),
        ),
        ("no comma".into(), format!("5005{}\n", mask(n)).into()),
        ("port 70000".into(), format!("70000,{}\n", mask(n)).into()),
        ("port negative".into(), format!("-1,{}\n", mask(n)).into()),
        ("a 100 KB line".into(), vec![b'1'; 100_000]),
        ("binary".into(), (0..=255u8).collect()),
    ];
    let registered = |rest: &[u8]| [format!("6000,{}\n", mask(n)).as_bytes(), rest].concat();
    for (label, cmd) in [
        ("unknown command", &b"HELLO_WORLD\n"[..]),
        ("lower case", b"client_list\n"),
        ("DISCONNECT and more", b"DISCONNECT\n\n"),
        ("12 NULs", &[0u8; 12]),
        ("mask update one short", b"UPDATE_MASK\n"),
    ] {
        let mut msg = registered(cmd);
        if label == "mask update one short" {
            msg.extend_from_slice(format!("{}\n\n", mask(n - 1)).as_bytes());
        }
        cases.push((label.into(), msg));
    }
    cases.push((
        "mask update of 2s".into(),
        registered(format!("UPDATE_MASK\n{}\n", "2".repeat(n)).as_bytes()),
    ));
    cases.push((
        "mask update without newline".into(),
        registered(format!("UPDATE_MASK\n{}x", mask(n)).as_bytes()),
    ));
    let count = cases.len();
    for (label, bytes) in cases {
        let mut r = raw(addr);
        // A hostile member may be cut off mid-write: a failed write is not an error.
        let _ = r.get_mut().write_all(&bytes);
        assert!(closed(&mut r), "{label}: the tracker kept the connection");
        // Not listed (the tracker removes a member on its own thread).
        obs.wait(&format!("{label} gone"), |l| {
            l.iter()
                .all(|h| h.addr.port() < 5000 || h.addr.port() > 6000)
        });
    }
    assert_eq!(settle_threads(tracker.pid(), base), base, "threads back");
    let out = s.honest_download("leech", addr);
    eprintln!(
        "{count} hostile members dropped; tracker {base} threads, peak {} MiB; leech: {out}",
        rss_mib(tracker.pid())
    );
}

#[test]
fn an_update_mask_flood_is_absorbed() {
    let s = Swarm::new(40, 22);
    let (tracker, addr) = s.tracker();
    let obs = Observer::join(addr);
    let _seed = s.client("seed", addr, &s.seed_dir("seed"), false);
    obs.wait("the seed", |l| l.iter().any(|h| h.has.is_full()));
    let n = s.chunks;
    // 50,000 UPDATE_MASKs pipelined (2.6 MB), the last one naming chunk 0 only.
    const FLOOD: usize = 50_000;
    let mut r = raw(addr);
    r.get_mut()
        .write_all(format!("7000,{}\n", "0".repeat(n)).as_bytes())
        .unwrap();
    let flooder = {
        let mut w = r.get_ref().try_clone().unwrap();
        thread::spawn(move || {
            let mut batch = Vec::new();
            for k in 0..FLOOD {
                batch.extend_from_slice(b"UPDATE_MASK\n");
                let bit = if k == FLOOD - 1 {
                    "1"
                } else {
                    ["0", "1"][k % 2]
                };
                batch.extend_from_slice(bit.as_bytes());
                batch.extend_from_slice("0".repeat(n - 1).as_bytes());
                batch.push(b'\n');
                if batch.len() > 64 * 1024 {
                    w.write_all(&batch).unwrap();
                    batch.clear();
                }
            }
            w.write_all(&batch).unwrap();
        })
    };
    // Honest members are answered during the flood.
    let mut lists = 0;
    while !flooder.is_finished() {
        assert!(obs.list().iter().any(|h| h.has.is_full()));
        lists += 1;
    }
    flooder.join().unwrap();
    let l = obs.wait("the flood's last mask", |l| {
        l.iter()
            .any(|h| h.addr.port() == 7000 && h.has.count() == 1 && h.has.has(0))
    });
    assert!(l.iter().any(|h| h.has.is_full()), "the seed still listed");
    let out = s.honest_download("leech", addr);
    eprintln!(
        "{FLOOD} UPDATE_MASKs absorbed, {lists} lists answered meanwhile; tracker peak {} \
         MiB, {} threads; leech: {out}",
        rss_mib(tracker.pid()),
        threads(tracker.pid())
    );
}

#[test]
fn a_thousand_tracker_connections_idle_then_registered() {
    common::raise_fd_limit(8192);
    let s = Swarm::new(24, 23);
    let (tracker, addr) = s.tracker();
    let obs = Observer::join(addr);
    let _seed = s.client("seed", addr, &s.seed_dir("seed"), false);
    obs.wait("the seed", |l| l.iter().any(|h| h.has.is_full()));
    let base = threads(tracker.pid());
    for register in [false, true] {
        // 1,000 connections held open: idle ones (they read the descriptor and say
        // nothing), then members registered with a port nobody listens on and a full
        // mask (liars the honest leecher has to skip).
        let mut held = Vec::new();
        let mut refused = 0;
        for k in 0..1000u16 {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut r = BufReader::new(s);
            match swarmlet::bv::codec::Descriptor::read(&mut r) {
                Ok(d) => {
                    if register {
                        let line = format!("{},{}\n", 20_000 + k, "1".repeat(d.chunks.len()));
                        let _ = r.get_mut().write_all(line.as_bytes());
                    }
                    held.push(r);
                }
                Err(_) => refused += 1, // over the cap: closed at once
            }
        }
        let peak_threads = threads(tracker.pid());
        // The tracker answers its members meanwhile.
        let l = obs.list();
        assert!(l.iter().any(|h| h.has.is_full()), "the seed listed");
        let what = if register { "registered" } else { "idle" };
        if register {
            // Room for the leecher's own membership: 10 liars leave.
            held.truncate(held.len() - 10);
            // Whatever the list holds, the honest leecher finds the seed among 1,000
            // liars nobody listens for.
            let out = s.honest_download(&format!("leech-{what}"), addr);
            eprintln!("with {} liars listed: {out}", l.len() - 1);
        }
        eprintln!(
            "1,000 {what} connections: {} held, {refused} closed at once (the cap is \
             {}); tracker peak {peak_threads} threads, {} MiB",
            held.len(),
            swarmlet::bv::tracker::MAX_CLIENTS,
            rss_mib(tracker.pid())
        );
        assert!(peak_threads <= base + 1000, "{peak_threads} threads");
        for r in &held {
            let _ = r.get_ref().shutdown(Shutdown::Both);
        }
        drop(held);
        assert_eq!(settle_threads(tracker.pid(), base), base, "threads back");
        let out = s.honest_download(&format!("after-{what}"), addr);
        eprintln!("afterwards: {out}");
    }
}

/// A fake holder listening on a port, registered with a full mask: it answers every
/// request with `reply(index)`, then keeps the connection open until the request side
/// closes. Returns how many requests it got.
fn hostile_holder(
    tracker: SocketAddr,
    reply: impl Fn(usize, &mut TcpStream) + Send + Sync + 'static,
) -> (TrackerSession, Arc<AtomicUsize>, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let asked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reply = Arc::new(reply);
    {
        let (asked, stop) = (asked.clone(), stop.clone());
        l.set_nonblocking(true).unwrap();
        thread::spawn(move || {
            // Bounded: ends with the test (stop) or after the hang guard.
            let end = Instant::now() + LIMIT * 2;
            while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                let Ok((mut s, _)) = l.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let reply = reply.clone();
                let asked = asked.clone();
                thread::spawn(move || {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                    let mut line = Vec::new();
                    let _ = BufReader::new(&s).read_until(b'\n', &mut line);
                    let Some(i) = std::str::from_utf8(&line)
                        .ok()
                        .and_then(|t| t.trim().parse().ok())
                    else {
                        return;
                    };
                    asked.fetch_add(1, Ordering::SeqCst);
                    reply(i, &mut s);
                });
            }
        });
    }
    let (session, d) = TrackerSession::connect(tracker).unwrap();
    session
        .register(port, &Bitfield::full(d.chunks.len()))
        .unwrap();
    (session, asked, stop)
}

/// Each hostile holder is alone in the swarm at first (so the leecher must ask it), then
/// an honest seed joins: the leecher ends with the right file.
#[test]
fn holders_that_send_the_wrong_chunk_or_too_many_bytes() {
    type Reply = Box<dyn Fn(&Swarm) -> Box<dyn Fn(usize, &mut TcpStream) + Send + Sync>>;
    let cases: Vec<(&str, Reply)> = vec![
        (
            "the next chunk instead",
            Box::new(|s: &Swarm| {
                let data = s.data.clone();
                let n = s.chunks;
                Box::new(move |i, w| {
                    let j = (i + 1) % n;
                    let c = CHUNK as usize;
                    let got = &data[j * c..((j + 1) * c).min(data.len())];
                    let _ = w.write_all(&got[..got.len().min(c)]);
                })
            }),
        ),
        (
            "right but for one byte",
            Box::new(|s: &Swarm| {
                let data = s.data.clone();
                Box::new(move |i, w| {
                    let c = CHUNK as usize;
                    let mut b = data[i * c..((i + 1) * c).min(data.len())].to_vec();
                    let mid = b.len() / 2;
                    b[mid] ^= 1;
                    let _ = w.write_all(&b);
                })
            }),
        ),
        (
            "junk, 10 MiB of it",
            Box::new(|_: &Swarm| {
                Box::new(|_, w| {
                    let junk = vec![0x5a; 1 << 20];
                    for _ in 0..10 {
                        if w.write_all(&junk).is_err() {
                            return;
                        }
                    }
                })
            }),
        ),
        (
            "the right chunk, then 4 MiB more",
            Box::new(|s: &Swarm| {
                let data = s.data.clone();
                Box::new(move |i, w| {
                    let c = CHUNK as usize;
                    let _ = w.write_all(&data[i * c..((i + 1) * c).min(data.len())]);
                    let _ = w.write_all(&vec![0xee; 4 << 20]);
                })
            }),
        ),
    ];
    for (label, make) in cases {
        let s = Swarm::new(8, 24);
        let (_tracker, addr) = s.tracker();
        let obs = Observer::join(addr);
        let (_bad, asked, stop) = hostile_holder(addr, make(&s));
        obs.wait("the hostile holder", |l| !l.is_empty());
        let mut leech = s.client("leech", addr, &s.sub("leech"), true);
        // The leecher asks the hostile holder first: it is the only one.
        let end = Instant::now() + LIMIT;
        while asked.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < end,
                "{label}: the hostile holder was never asked"
            );
            thread::sleep(Duration::from_millis(10));
        }
        let _seed = s.client("seed", addr, &s.seed_dir("seed"), false);
        let st = leech.wait_timeout(LIMIT);
        assert!(
            st.is_some_and(|x| x.success()),
            "{label}: {st:?}\n{}",
            leech.log_text()
        );
        let got = std::fs::read(s.sub("leech").join(NAME)).unwrap();
        assert!(got == s.data, "{label}: the file differs");
        let out = std::fs::read_to_string(s.logs().join("leech.out")).unwrap();
        eprintln!(
            "{label}: asked {} times; {}",
            asked.load(Ordering::SeqCst),
            out.trim()
        );
        stop.store(true, Ordering::SeqCst);
    }
}

/// Requesters against a seed's upload port: 1,000 connections at once, garbage request
/// lines, requests for chunks out of range, a requester that never reads. The seed stays
/// within its upload cap and an honest leecher downloads afterwards.
#[test]
fn requesters_flooding_a_clients_upload_port() {
    common::raise_fd_limit(8192);
    let s = Swarm::new(16, 25);
    let (_tracker, addr) = s.tracker();
    let obs = Observer::join(addr);
    let seed = s.client("seed", addr, &s.seed_dir("seed"), false);
    let l = obs.wait("the seed", |l| l.iter().any(|h| h.has.is_full()));
    let up = l.iter().find(|h| h.has.is_full()).unwrap().addr;
    let base = threads(seed.pid());
    // Garbage and out-of-range requests: closed without a byte.
    for bad in [
        &b"16\n"[..],
        b"99999999999999999999\n",
        b"-1\n",
        b"x\n",
        b"\n",
        &[b'7'; 1000],
        &[0u8; 64],
    ] {
        let mut c = TcpStream::connect(up).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = c.write_all(bad);
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{bad:?}: got {} bytes", rest.len());
    }
    // A requester that asks for a chunk and never reads: held until the write timeout at
    // most, and it costs one upload slot.
    let mut stuck = TcpStream::connect(up).unwrap();
    stuck.write_all(b"0\n").unwrap();
    // 1,000 connections at once, each asking for a chunk and not reading yet.
    let mut held = Vec::new();
    for k in 0..1000 {
        let Ok(mut c) = TcpStream::connect(up) else {
            continue;
        };
        let _ = c.write_all(format!("{}\n", k % s.chunks).as_bytes());
        held.push(c);
    }
    let peak = threads(seed.pid());
    eprintln!(
        "1,000 requesters: seed peak {peak} threads (base {base}, cap {}), {} MiB",
        swarmlet::bv::upload::MAX_UPLOADS,
        rss_mib(seed.pid())
    );
    assert!(
        peak <= base + swarmlet::bv::upload::MAX_UPLOADS as u64,
        "{peak} threads"
    );
    drop(held);
    drop(stuck);
    assert!(
        settle_threads(seed.pid(), base) <= base,
        "the seed's threads are back"
    );
    let out = s.honest_download("leech", addr);
    eprintln!("afterwards: {out}");
}

/// A hostile tracker's client list of 2,000 entries, each with a 100,000-chunk mask
/// (200 MB): the client keeps at most `codec::MAX_LIST_MASK_BYTES` of masks (64 MiB),
/// reads the rest to stay in step, and asks for the next list as usual.
#[test]
fn a_client_list_of_200_mb_costs_the_client_at_most_its_mask_budget() {
    const N: usize = 100_000;
    const ENTRIES: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let tracker = l.local_addr().unwrap();
    let mut c = Command::new(bin("bvtorrent-client"));
    c.arg("--dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .arg(tracker.to_string());
    let client = Proc::spawn("client", c, dir.path().join("client.log"));
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let mut w = &s;
    // A descriptor of N one-byte chunks, all zero but the last: the file the client
    // creates is all zeros, so it has every chunk but one and asks for the list.
    let digest = |b: u8| swarmlet::digest::Digest::of(swarmlet::bv::codec::ALGO, &[b]).to_hex();
    let (zero, one) = (digest(0), digest(1));
    let mut d = format!("big\n1\n{N}\n").into_bytes();
    for i in 0..N {
        let h = if i + 1 == N { &one } else { &zero };
        d.extend_from_slice(format!("1,{h}\n").as_bytes());
    }
    w.write_all(&d).unwrap();
    let mut r = BufReader::new(&s);
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).unwrap(); // the registration
    let base = rss_mib(client.pid());
    let mut cmd = [0u8; 12];
    r.read_exact(&mut cmd).unwrap();
    assert_eq!(&cmd, b"CLIENT_LIST\n");
    let entry = format!("127.0.0.1:1,{}\n", "1".repeat(N)).into_bytes();
    w.write_all(format!("{ENTRIES}\n").as_bytes()).unwrap();
    for _ in 0..ENTRIES {
        w.write_all(&entry).unwrap();
    }
    // The next request proves the whole list was read.
    r.read_exact(&mut cmd).unwrap();
    let peak = rss_mib(client.pid());
    eprintln!(
        "a {} MB client list: client peak {peak} MiB (before it: {base} MiB)",
        ENTRIES * entry.len() / 1_000_000
    );
    assert!(peak < 160, "client peak {peak} MiB");
}

/// Sets a socket's receive buffer small, so that a member that never reads makes the
/// tracker's writes block at once (the kernel would otherwise absorb megabytes).
fn small_receive_buffer(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 4096;
    // SAFETY: setsockopt on an open socket with a pointer to a local c_int.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

/// 990 members of a 1,024-chunk swarm ask for client lists (1 MB each) five times and
/// never read them. The list is encoded once and shared while the swarm is unchanged
/// (and new ones stop at `bv::tracker::MAX_LIST_BYTES_ALIVE`): the tracker's memory
/// stays bounded (it reached 1 GB before), and once the liars are gone an honest member
/// downloads.
#[test]
fn members_that_ask_for_lists_and_never_read_them() {
    common::raise_fd_limit(8192);
    const MEMBERS: usize = 990;
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(1024 * 1024, 26);
    for d in ["tracker", "seed", "leech"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    std::fs::write(dir.path().join("tracker/f"), &data).unwrap();
    std::fs::write(dir.path().join("seed/f"), &data).unwrap();
    let port = free_port();
    let mut c = Command::new(bin("bvtorrent-tracker"));
    c.args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--chunk-size",
        "1024",
    ])
    .arg(dir.path().join("tracker/f"))
    .env("RUST_LOG", "error");
    let tracker = Proc::spawn("tracker", c, dir.path().join("tracker.log"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    common::wait_listening(format!("127.0.0.1:{port}").parse().unwrap());
    let base = threads(tracker.pid());
    let mask = |k: usize| {
        let mut m = vec![b'0'; 1024];
        m[k % 1024] = b'1';
        m
    };
    let mut members = Vec::new();
    for k in 0..MEMBERS {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut r = BufReader::new(s);
        swarmlet::bv::codec::Descriptor::read(&mut r).unwrap();
        // After the descriptor: a 4 KiB window for it costs a delayed ACK per segment.
        small_receive_buffer(r.get_ref());
        let mut line = format!("{},", 30_000 + k).into_bytes();
        line.extend_from_slice(&mask(k));
        line.push(b'\n');
        r.get_mut().write_all(&line).unwrap();
        members.push(r);
    }
    let rss = |what: &str| {
        let mib = rss_mib(tracker.pid());
        eprintln!(
            "{MEMBERS} members asking, {what}: tracker peak {mib} MiB, {} threads",
            threads(tracker.pid())
        );
        mib
    };
    // 1. The swarm does not change: every member shares one 1 MB list.
    for r in &mut members {
        let _ = r.get_mut().write_all(&b"CLIENT_LIST\n".repeat(5));
    }
    thread::sleep(Duration::from_secs(2));
    let shared = rss("the swarm unchanged");
    assert!(shared < 64, "{shared} MiB");
    for r in &members {
        let _ = r.get_ref().shutdown(Shutdown::Both);
    }
    drop(members);
    let left = settle_threads(tracker.pid(), base);
    assert_eq!(left, base, "threads back");
    // An honest seed and leecher afterwards.
    let client = |d: &str, done: bool| {
        let mut c = Command::new(bin("bvtorrent-client"));
        c.arg("--dir")
            .arg(dir.path().join(d))
            .args(["--listen", "127.0.0.1:0"])
            .arg(addr.to_string());
        if done {
            c.arg("--exit-when-done");
        }
        Proc::spawn(d, c, dir.path().join(format!("{d}.log")))
    };
    let _seed = client("seed", false);
    let mut leech = client("leech", true);
    let st = leech.wait_timeout(LIMIT);
    assert!(
        st.is_some_and(|s| s.success()),
        "{st:?}\n{}",
        leech.log_text()
    );
    assert!(std::fs::read(dir.path().join("leech/f")).unwrap() == data);
}
