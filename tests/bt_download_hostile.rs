//! The real `swarmlet download` process against malicious seeders and trackers scripted
//! here on 127.0.0.1: seeders that send wrong data (everywhere, or in one block only),
//! lie in their bitfield, never unchoke, choke mid-piece, trickle a byte a second, send
//! huge or broken messages; HTTP and UDP trackers that list 100,000 peers, our own
//! address, odd-length compact peers, redirect for ever, answer 100 MB, or reply with
//! another transaction id. In every case an honest `swarmlet seed` is present (given by
//! `--peer` or listed by the tracker): the download must finish with the file identical,
//! within a bounded resident memory, reported per case.
//!
//! Black box: only BEP 3 / BEP 15 on the wire and the documented limits are assumed, so
//! the suites stay valid whatever the connection internals become.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::bt::line_starting;
use common::random_bytes;
use swarmlet::bt::metainfo::Metainfo;
use swarmlet::bt::peer_wire::{
    BlockRequest, Handshake, Limits, Message, PeerId, Reserved, bitfield_from, piece_header,
    read_message,
};

/// The file: 16 pieces of 64 KiB, the last one short.
const FILE_LEN: usize = 1_000_003;
const PIECE_LEN: u64 = 65_536;

/// Hang guard for one download. The slowest honest path is a hostile peer that holds a
/// piece until the download's 60 s stall timeout, then its worker is left behind.
const DOWNLOAD_BOUND: Duration = Duration::from_secs(240);

/// Resident memory a download may reach whatever its peers and trackers send, from the
/// documented limits: 32 live peers (`download::plan::MAX_PEERS`) × 2 piece buffers ×
/// 64 KiB pieces = 4 MiB, 32 connection read buffers of 64 KiB = 2 MiB, a tracker reply of
/// at most 256 KiB (`announce::http::MAX_REPLY`) or one 64 KiB datagram, 1,024 peer
/// records, the upload side's 50 connections (as in the seed suite, 16 MiB), and the
/// process's own base of a few MiB; 64 MiB leaves room for the allocator's per-thread
/// arenas. A download whose memory grew with a 100 MB tracker reply, 100,000 peers or a
/// 4 GiB length prefix would pass it.
const RSS_BOUND_KIB: u64 = 64 * 1024;

/// A child killed by its pid on drop.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The torrent, its data, and an honest `swarmlet seed` of it.
struct Fixture {
    dir: tempfile::TempDir,
    data: Arc<Vec<u8>>,
    info_hash: [u8; 20],
    n: u32,
    /// The .torrent without trackers (peers come from `--peer`).
    torrent: PathBuf,
    _seed: Killed,
    honest: SocketAddr,
}

impl Fixture {
    fn new(seed: u64) -> Fixture {
        Self::with_rate(seed, None)
    }

    /// With the honest seed's upload limited to `rate` (`--max-upload-rate`), so that a
    /// hostile peer beside it is asked for its share of the pieces.
    fn with_rate(seed: u64, rate: Option<&str>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let data = random_bytes(FILE_LEN, seed);
        std::fs::write(dir.path().join("f.bin"), &data).unwrap();
        let torrent = make_torrent(dir.path(), "f.torrent", None);
        let m = Metainfo::read(&torrent).unwrap();
        let mut child = Command::new(common::bin("swarmlet"))
            .args(["seed", torrent.to_str().unwrap(), "--dir"])
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(rate.map(|r| ["--max-upload-rate", r]).into_iter().flatten())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let line = line_starting(&mut child, "seeding ");
        let honest = line.rsplit(' ').next().unwrap().parse().unwrap();
        Fixture {
            dir,
            data: Arc::new(data),
            info_hash: m.info_hash.0,
            n: m.pieces.len() as u32,
            torrent,
            _seed: Killed(child),
            honest,
        }
    }

    /// The same torrent (same infohash: the announce list is outside the info
    /// dictionary) announcing to `tracker`.
    fn torrent_with_tracker(&self, name: &str, tracker: &str) -> PathBuf {
        let t = make_torrent(self.dir.path(), name, Some(tracker));
        assert_eq!(Metainfo::read(&t).unwrap().info_hash.0, self.info_hash);
        t
    }

    fn peer_ctx(&self) -> PeerCtx {
        PeerCtx {
            info_hash: self.info_hash,
            n: self.n,
            data: self.data.clone(),
            requests: Arc::new(AtomicU64::new(0)),
            poisoned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Runs `swarmlet download` of `torrent` into a fresh directory with `peers`; checks
    /// it succeeded with the file identical; returns what it reported.
    fn download_ok(&self, case: &str, torrent: &std::path::Path, peers: &[SocketAddr]) -> Run {
        let run = self.download(case, torrent, peers);
        assert!(
            run.success,
            "{case}: swarmlet download failed: {}",
            run.stderr
        );
        let got = std::fs::read(run.dir.join("f.bin")).unwrap_or_default();
        assert!(got == *self.data, "{case}: the downloaded file differs");
        assert!(
            run.hwm_kib <= RSS_BOUND_KIB,
            "{case}: peak RSS {} KiB",
            run.hwm_kib
        );
        eprintln!(
            "{case}: done in {:.1} s, peak RSS {} KiB: {}",
            run.secs,
            run.hwm_kib,
            run.stdout.lines().last().unwrap_or("")
        );
        run
    }

    fn download(&self, case: &str, torrent: &std::path::Path, peers: &[SocketAddr]) -> Run {
        let out = self
            .dir
            .path()
            .join(case.replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
        let mut cmd = Command::new(common::bin("swarmlet"));
        cmd.args(["download", torrent.to_str().unwrap(), "--dir"])
            .arg(&out)
            .args(["--listen", "127.0.0.1:0"]);
        for p in peers {
            cmd.args(["--peer", &p.to_string()]);
        }
        let log = out.with_extension("log");
        let mut child = Killed(
            cmd.env("RUST_LOG", "info")
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let pid = child.0.id();
        let mut stdout = child.0.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let started = Instant::now();
        let mut hwm = 0;
        let status = loop {
            if let Some(v) = common::proc_status(pid, "VmHWM") {
                hwm = hwm.max(v);
            }
            if let Some(s) = child.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                started.elapsed() < DOWNLOAD_BOUND,
                "{case}: swarmlet download still running after {DOWNLOAD_BOUND:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        Run {
            success: status.success(),
            stdout: reader.join().unwrap(),
            stderr: std::fs::read_to_string(&log).unwrap_or_default(),
            hwm_kib: hwm,
            secs: started.elapsed().as_secs_f64(),
            dir: out,
        }
    }
}

/// What one `swarmlet download` did.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
    hwm_kib: u64,
    secs: f64,
    dir: PathBuf,
}

/// `swarmlet create f.bin` in `dir`, with one tracker or none.
fn make_torrent(dir: &std::path::Path, name: &str, tracker: Option<&str>) -> PathBuf {
    let mut cmd = Command::new(common::bin("swarmlet"));
    cmd.current_dir(dir)
        .args(["create", "f.bin", "--piece-length", "65536", "-o", name]);
    if let Some(t) = tracker {
        cmd.args(["-t", t]);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    dir.join(name)
}

// ---- Hostile seeders ----------------------------------------------------------------

/// What a scripted seeder knows: the torrent and the real data (to lie convincingly).
#[derive(Clone)]
struct PeerCtx {
    info_hash: [u8; 20],
    n: u32,
    data: Arc<Vec<u8>>,
    /// Requests the downloader sent to this peer, over all its connections.
    requests: Arc<AtomicU64>,
    /// Whether the one wrong block of "right for every block but one" went out.
    poisoned: Arc<AtomicBool>,
}

impl PeerCtx {
    fn limits(&self) -> Limits {
        Limits::new(self.n)
    }

    fn block(&self, r: &BlockRequest) -> Vec<u8> {
        let at = (u64::from(r.index) * PIECE_LEN + u64::from(r.begin)) as usize;
        let end = (at + r.length as usize).min(self.data.len());
        self.data[at.min(end)..end].to_vec()
    }

    fn full_bitfield(&self) -> Vec<u8> {
        bitfield_from(self.n, |_| true)
    }
}

/// How long a scripted seeder keeps any one connection: every script ends by then.
const SCRIPT_LIFE: Duration = Duration::from_secs(200);

/// A scripted seeder on 127.0.0.1: accepts at most `conns` connections, each served by
/// `script` on its own thread with 10 s socket timeouts. Returns its address and a count
/// of the connections it took.
fn hostile_peer(
    ctx: PeerCtx,
    conns: usize,
    script: impl Fn(&mut TcpStream, &PeerCtx) + Send + Sync + 'static,
) -> (SocketAddr, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    let script = Arc::new(script);
    std::thread::spawn(move || {
        for s in l.incoming().take(conns) {
            let Ok(mut s) = s else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let (ctx, script) = (ctx.clone(), script.clone());
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                script(&mut s, &ctx);
            });
        }
    });
    (addr, accepted)
}

/// Reads the downloader's handshake and answers it for `info_hash`, then sends
/// `bitfield` and, if asked, an unchoke. Returns the downloader's peer id.
fn greet(
    s: &mut TcpStream,
    info_hash: [u8; 20],
    bitfield: Option<Vec<u8>>,
    unchoke: bool,
) -> Option<[u8; 20]> {
    let mut h = [0u8; 68];
    s.read_exact(&mut h).ok()?;
    let mut peer_id = [0u8; 20];
    peer_id.copy_from_slice(&h[48..68]);
    let ours = Handshake {
        reserved: Reserved::NONE,
        info_hash,
        peer_id: PeerId(*b"-XX0001-maliciousxxx"),
    };
    s.write_all(&ours.encode()).ok()?;
    if let Some(b) = bitfield {
        s.write_all(&Message::Bitfield(b).to_bytes().unwrap())
            .ok()?;
    }
    if unchoke {
        s.write_all(&Message::Unchoke.to_bytes().unwrap()).ok()?;
    }
    Some(peer_id)
}

/// Reads the downloader's messages and hands each request to `answer` until it returns
/// false, the connection fails, or [`SCRIPT_LIFE`] passes.
fn on_requests(
    s: &mut TcpStream,
    ctx: &PeerCtx,
    mut answer: impl FnMut(&mut TcpStream, BlockRequest) -> bool,
) {
    let end = Instant::now() + SCRIPT_LIFE;
    let mut r = BufReader::new(s.try_clone().unwrap());
    while Instant::now() < end {
        match read_message(&mut r, &ctx.limits()) {
            Ok(Message::Request(q)) => {
                ctx.requests.fetch_add(1, Ordering::SeqCst);
                if !answer(s, q) {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) if e.is_fatal() => {
                if let swarmlet::bt::peer_wire::ReadError::Io(io) = &e
                    && matches!(
                        io.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    )
                {
                    continue;
                }
                return;
            }
            Err(_) => {}
        }
    }
}

fn send_block(s: &mut TcpStream, r: &BlockRequest, data: &[u8]) -> bool {
    let mut m = piece_header(r.index, r.begin, data.len() as u32)
        .unwrap()
        .to_vec();
    m.extend_from_slice(data);
    s.write_all(&m).is_ok()
}

/// Keeps a connection open, sending nothing but keep-alives, until the other side
/// closes or [`SCRIPT_LIFE`] passes.
fn linger(s: &mut TcpStream) {
    let end = Instant::now() + SCRIPT_LIFE;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 4096];
    while Instant::now() < end {
        match s.read(&mut b) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if s.write_all(&[0, 0, 0, 0]).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// One malicious seeder case: its script, run beside the honest seed.
struct SeederCase {
    name: &'static str,
    /// The most connections the downloader may open to it: the engine connects, retries
    /// a failed connect once and reconnects once after a broken connection (3); 1 for a
    /// peer whose first connection outlasts the whole download (no second try once the
    /// file is complete).
    max_conns: u64,
    script: fn(&mut TcpStream, &PeerCtx),
    /// Whether the peer unchokes and so must have been asked for blocks.
    asked: bool,
}

fn seeder_cases() -> Vec<SeederCase> {
    vec![
        SeederCase {
            name: "wrong data in every block",
            max_conns: 3,
            asked: true,
            script: |s, ctx| {
                greet(s, ctx.info_hash, Some(ctx.full_bitfield()), true);
                on_requests(s, ctx, |s, r| {
                    send_block(s, &r, &random_bytes(r.length as usize, u64::from(r.begin)))
                });
            },
        },
        SeederCase {
            name: "right for every block but one",
            max_conns: 3,
            asked: true,
            script: |s, ctx| {
                greet(s, ctx.info_hash, Some(ctx.full_bitfield()), true);
                on_requests(s, ctx, |s, r| {
                    let mut b = ctx.block(&r);
                    // One byte of one block of the whole torrent is wrong.
                    if r.index == 5 && r.begin == 16_384 {
                        b[100] ^= 0x40;
                        ctx.poisoned.store(true, Ordering::SeqCst);
                    }
                    send_block(s, &r, &b)
                });
            },
        },
        SeederCase {
            name: "a bitfield that lies (has nothing; closes when asked)",
            max_conns: 3,
            asked: true,
            script: |s, ctx| {
                greet(s, ctx.info_hash, Some(ctx.full_bitfield()), true);
                on_requests(s, ctx, |_, _| false);
            },
        },
        SeederCase {
            name: "a bitfield that lies (has nothing; answers nothing)",
            max_conns: 3,
            asked: true,
            script: |s, ctx| {
                greet(s, ctx.info_hash, Some(ctx.full_bitfield()), true);
                on_requests(s, ctx, |_, _| true);
            },
        },
        SeederCase {
            name: "never unchokes",
            max_conns: 1,
            asked: false,
            script: |s, ctx| {
                greet(s, ctx.info_hash, Some(ctx.full_bitfield()), false);
                linger(s);
            },
        },
        SeederCase {
            name: "chokes mid-piece and never unchokes again",
            max_conns: 3,
            asked: true,
            script: |s, ctx| {
                greet(s, ctx.info_hash, Some(ctx.full_bitfield()), true);
                let mut sent = 0;
                on_requests(s, ctx, |s, r| {
                    sent += 1;
                    if sent <= 2 {
                        return send_block(s, &r, &ctx.block(&r));
                    }
                    let _ = s.write_all(&Message::Choke.to_bytes().unwrap());
                    false
                });
                linger(s);
            },
        },
        SeederCase {
            name: "trickles one byte a second",
            max_conns: 3,
            asked: true,
            script: |s, ctx| {
                greet(s, ctx.info_hash, Some(ctx.full_bitfield()), true);
                on_requests(s, ctx, |s, r| {
                    let mut m = piece_header(r.index, r.begin, r.length).unwrap().to_vec();
                    m.extend(ctx.block(&r));
                    let end = Instant::now() + SCRIPT_LIFE;
                    for b in m {
                        if s.write_all(&[b]).is_err() || Instant::now() > end {
                            return false;
                        }
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    true
                });
            },
        },
        SeederCase {
            name: "a length prefix of 2^32-1",
            max_conns: 3,
            asked: true,
            script: |s, ctx| {
                greet(s, ctx.info_hash, Some(ctx.full_bitfield()), true);
                on_requests(s, ctx, |s, _| {
                    let _ = s.write_all(&[0xFF, 0xFF, 0xFF, 0xFF, 7, 0, 0, 0, 0]);
                    false
                });
            },
        },
        SeederCase {
            name: "a 1 MiB block",
            max_conns: 3,
            asked: true,
            script: |s, ctx| {
                greet(s, ctx.info_hash, Some(ctx.full_bitfield()), true);
                on_requests(s, ctx, |s, r| {
                    let mut m = piece_header(r.index, r.begin, 1 << 20).unwrap().to_vec();
                    m.extend(vec![0u8; 1 << 20]);
                    let _ = s.write_all(&m);
                    false
                });
            },
        },
        SeederCase {
            name: "a bitfield of 4 GiB - 1",
            max_conns: 3,
            asked: false,
            script: |s, ctx| {
                greet(s, ctx.info_hash, None, false);
                let _ = s.write_all(&[0xFF, 0xFF, 0xFF, 0xFF, 5]);
                linger(s);
            },
        },
        SeederCase {
            name: "a bitfield of the wrong length",
            max_conns: 3,
            asked: false,
            script: |s, ctx| {
                greet(s, ctx.info_hash, Some(vec![0xFF; 3]), true);
                linger(s);
            },
        },
        SeederCase {
            name: "a bitfield with spare bits set",
            max_conns: 3,
            asked: false,
            script: |s, ctx| {
                // 16 pieces fill 2 bytes exactly: a 17th bit needs a third byte, so spare
                // bits come from claiming a bitfield one byte long with all bits.
                let mut b = ctx.full_bitfield();
                if ctx.n % 8 == 0 {
                    b.push(0xFF);
                } else {
                    *b.last_mut().unwrap() = 0xFF;
                }
                greet(s, ctx.info_hash, Some(b), true);
                linger(s);
            },
        },
        SeederCase {
            name: "another torrent's handshake",
            max_conns: 3,
            asked: false,
            script: |s, ctx| {
                let mut other = ctx.info_hash;
                other[0] ^= 0xFF;
                greet(s, other, Some(ctx.full_bitfield()), true);
                linger(s);
            },
        },
        SeederCase {
            name: "our own peer id echoed back",
            max_conns: 3,
            asked: false,
            script: |s, ctx| {
                let mut h = [0u8; 68];
                if s.read_exact(&mut h).is_err() {
                    return;
                }
                // The downloader's own handshake, sent back as ours.
                let _ = s.write_all(&h);
                let _ = s.write_all(&Message::Bitfield(ctx.full_bitfield()).to_bytes().unwrap());
                let _ = s.write_all(&Message::Unchoke.to_bytes().unwrap());
                linger(s);
            },
        },
        SeederCase {
            name: "blocks of another piece than asked",
            max_conns: 3,
            asked: true,
            script: |s, ctx| {
                greet(s, ctx.info_hash, Some(ctx.full_bitfield()), true);
                on_requests(s, ctx, |s, r| {
                    let other = BlockRequest {
                        index: (r.index + 1) % ctx.n,
                        ..r
                    };
                    send_block(
                        s,
                        &other,
                        &ctx.block(&BlockRequest {
                            length: 16_384.min(r.length),
                            ..other
                        }),
                    )
                });
            },
        },
        SeederCase {
            name: "a have for an invalid index",
            max_conns: 3,
            asked: false,
            script: |s, ctx| {
                greet(s, ctx.info_hash, Some(ctx.full_bitfield()), true);
                let _ = s.write_all(&Message::Have(ctx.n + 7).to_bytes().unwrap());
                on_requests(s, ctx, |s, r| send_block(s, &r, &ctx.block(&r)));
            },
        },
        SeederCase {
            name: "100,000 keep-alives and haves in a burst",
            max_conns: 3,
            asked: true,
            script: |s, ctx| {
                greet(s, ctx.info_hash, Some(ctx.full_bitfield()), false);
                let mut burst = Vec::new();
                for i in 0..50_000u32 {
                    burst.extend([0, 0, 0, 0]);
                    burst.extend(Message::Have(i % ctx.n).to_bytes().unwrap());
                }
                let _ = s.write_all(&burst);
                let _ = s.write_all(&Message::Unchoke.to_bytes().unwrap());
                on_requests(s, ctx, |s, r| send_block(s, &r, &ctx.block(&r)));
            },
        },
        SeederCase {
            name: "a handshake and then silence",
            max_conns: 1,
            asked: false,
            script: |s, ctx| {
                greet(s, ctx.info_hash, None, false);
                linger(s);
            },
        },
        SeederCase {
            name: "garbage instead of a handshake",
            max_conns: 3,
            asked: false,
            script: |s, _| {
                let mut h = [0u8; 68];
                let _ = s.read_exact(&mut h);
                let _ = s.write_all(&random_bytes(68, 9));
                linger(s);
            },
        },
    ]
}

/// Every malicious seeder in turn (a few at once), each beside an honest `swarmlet
/// seed`: the download finishes with the file identical and bounded memory.
#[test]
fn downloads_finish_from_the_honest_seed_whatever_a_malicious_one_sends() {
    let cases = seeder_cases();
    let total = cases.len();
    // Four at a time: each case has its own honest seed and hostile peer, so they do
    // not interfere; the slow ones (stall timeouts) overlap.
    let cases = Arc::new(std::sync::Mutex::new(cases.into_iter().enumerate()));
    let peak = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let cases = cases.clone();
            let peak = peak.clone();
            std::thread::spawn(move || {
                loop {
                    let next = cases.lock().unwrap().next();
                    let Some((i, c)) = next else { return };
                    // 256 KB/s: the honest seed needs about 4 s for the file, so the
                    // hostile peer is asked for its share meanwhile.
                    let f = Fixture::with_rate(100 + i as u64, Some("256K"));
                    let ctx = f.peer_ctx();
                    let (bad, accepted) = hostile_peer(ctx.clone(), 10, c.script);
                    // The hostile peer first: it is offered to the engine before the
                    // honest one.
                    let run = f.download_ok(c.name, &f.torrent, &[bad, f.honest]);
                    assert!(
                        accepted.load(Ordering::SeqCst) >= 1,
                        "{}: the download never dialled the hostile peer",
                        c.name
                    );
                    let conns = accepted.load(Ordering::SeqCst);
                    assert!(
                        conns <= c.max_conns,
                        "{}: {conns} connections to the hostile peer",
                        c.name
                    );
                    let asked = ctx.requests.load(Ordering::SeqCst);
                    eprintln!("{}: the hostile peer was asked for {asked} blocks", c.name);
                    if c.asked {
                        assert!(asked >= 1, "{}: the hostile peer was never asked", c.name);
                    }
                    if ctx.poisoned.load(Ordering::SeqCst) {
                        let refetched = run
                            .stdout
                            .split(" re-fetched")
                            .next()
                            .and_then(|s| s.rsplit(' ').next())
                            .and_then(|n| n.parse::<u64>().ok());
                        assert!(
                            refetched.is_some_and(|n| n >= 1),
                            "{}: the poisoned piece was not fetched again: {}",
                            c.name,
                            run.stdout
                        );
                    }
                    peak.fetch_max(run.hwm_kib, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let mut failed = 0;
    for w in workers {
        if w.join().is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 0, "some cases failed (see above)");
    eprintln!(
        "{total} malicious seeder cases; peak RSS of a download {} KiB",
        peak.load(Ordering::SeqCst)
    );
}

// ---- Hostile trackers ---------------------------------------------------------------

/// A scripted HTTP tracker on 127.0.0.1: answers at most `conns` connections, one at a
/// time, with `reply(request_head, stream)`. Returns its port and a count of requests.
fn http_tracker(
    conns: usize,
    reply: impl Fn(&str, &mut TcpStream) + Send + 'static,
) -> (u16, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for s in l.incoming().take(conns) {
            let Ok(mut s) = s else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            reply(&String::from_utf8_lossy(&head), &mut s);
        }
    });
    (port, count)
}

/// An HTTP 200 with `body`.
fn http_ok(s: &mut TcpStream, body: &[u8]) {
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(body);
}

/// A bencoded announce reply with compact peers `peers` (raw bytes, so they may be cut).
fn announce_body(peers: &[u8]) -> Vec<u8> {
    let mut b = format!("d8:intervali1800e5:peers{}:", peers.len()).into_bytes();
    b.extend_from_slice(peers);
    b.push(b'e');
    b
}

fn compact(a: SocketAddr) -> [u8; 6] {
    let SocketAddr::V4(v4) = a else {
        panic!("IPv4 only")
    };
    let mut c = [0u8; 6];
    c[..4].copy_from_slice(&v4.ip().octets());
    c[4..].copy_from_slice(&v4.port().to_be_bytes());
    c
}

/// `count` addresses where nothing listens: 127.1.x.y port 1 (loopback, refused at once,
/// never another program's port).
fn dead_peers(count: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(count * 6);
    for i in 0..count {
        v.extend([127, 1, (i >> 8) as u8, i as u8, 0, 1]);
    }
    v
}

/// The port the announce's query names (the downloader's listening port).
fn query_port(head: &str) -> Option<u16> {
    let q = head.split_whitespace().nth(1)?;
    q.split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("port="))?
        .parse()
        .ok()
}

/// HTTP trackers that lie or attack, each in a torrent of its own, with the honest seed
/// given by `--peer` (or, where the tracker is the only source, listed by it).
#[test]
fn hostile_http_trackers_do_not_stop_the_download() {
    let f = Fixture::new(7);
    let honest = f.honest;
    let mut peak = 0;

    // 100,000 peers: 600,000 bytes of compact peers, over the 256 KiB reply limit: the
    // announce fails, the download goes on from --peer.
    let (port, hits) = http_tracker(10, |_, s| {
        let mut peers = compact(SocketAddr::from(([127, 0, 0, 1], 1))).to_vec();
        peers.extend(dead_peers(99_999));
        http_ok(s, &announce_body(&peers));
    });
    let t = f.torrent_with_tracker(
        "p100k.torrent",
        &format!("http://127.0.0.1:{port}/announce"),
    );
    let run = f.download_ok("HTTP tracker with 100,000 peers", &t, &[honest]);
    assert!(hits.load(Ordering::SeqCst) >= 1);
    peak = peak.max(run.hwm_kib);

    // 40,000 peers (240,000 bytes, within the limit), the honest seed first and the only
    // source: the engine takes it and ignores the flood beyond its peer limits.
    let (port, _) = http_tracker(10, move |_, s| {
        let mut peers = compact(honest).to_vec();
        peers.extend(dead_peers(39_999));
        http_ok(s, &announce_body(&peers));
    });
    let t = f.torrent_with_tracker("p40k.torrent", &format!("http://127.0.0.1:{port}/announce"));
    let run = f.download_ok("HTTP tracker with 40,000 peers, no --peer", &t, &[]);
    peak = peak.max(run.hwm_kib);

    // 100 dead peers first, the honest seed last, no --peer: more than the 32 live
    // peers a download keeps. The first 32 are refused at once; the rest, the honest
    // seed among them, must still be tried (they used to be forgotten until the next
    // announce, half an hour later, so the download never started).
    let (port, _) = http_tracker(10, move |_, s| {
        let mut peers = dead_peers(100);
        peers.extend(compact(honest));
        http_ok(s, &announce_body(&peers));
    });
    let t = f.torrent_with_tracker("last.torrent", &format!("http://127.0.0.1:{port}/announce"));
    let run = f.download_ok(
        "HTTP tracker listing the honest seed after 100 dead peers, no --peer",
        &t,
        &[],
    );
    peak = peak.max(run.hwm_kib);

    // Our own address first (the port our announce gave), then the honest seed: the
    // download never dials itself and finishes from the tracker's list alone.
    let (port, _) = http_tracker(10, move |head, s| {
        let mut peers = Vec::new();
        if let Some(p) = query_port(head) {
            peers.extend(compact(SocketAddr::from(([127, 0, 0, 1], p))));
        }
        peers.extend(compact(honest));
        http_ok(s, &announce_body(&peers));
    });
    let t = f.torrent_with_tracker("self.torrent", &format!("http://127.0.0.1:{port}/announce"));
    let run = f.download_ok("HTTP tracker listing our own address", &t, &[]);
    assert!(
        !run.stderr.contains("connected to ourselves"),
        "{}",
        run.stderr
    );
    peak = peak.max(run.hwm_kib);

    // Odd-length compact peers: the honest seed and one stray byte. Refused whole; the
    // download goes on from --peer.
    let (port, hits) = http_tracker(10, move |_, s| {
        let mut peers = compact(honest).to_vec();
        peers.push(7);
        http_ok(s, &announce_body(&peers));
    });
    let t = f.torrent_with_tracker("odd.torrent", &format!("http://127.0.0.1:{port}/announce"));
    let run = f.download_ok("HTTP tracker with odd-length compact peers", &t, &[honest]);
    assert!(hits.load(Ordering::SeqCst) >= 1);
    peak = peak.max(run.hwm_kib);

    // A redirect loop: each announce follows a bounded number of redirects, and the
    // session waits before the next round, so the tracker sees a handful of requests.
    let (port, hits) = http_tracker(1000, |head, s| {
        let _ = head;
        let port = s.local_addr().unwrap().port();
        let _ = write!(
            s,
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/announce?again\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    });
    let t = f.torrent_with_tracker("loop.torrent", &format!("http://127.0.0.1:{port}/announce"));
    let run = f.download_ok("HTTP tracker redirecting to itself", &t, &[honest]);
    let n = hits.load(Ordering::SeqCst);
    eprintln!("redirect loop: the tracker saw {n} requests");
    assert!((1..=20).contains(&n), "{n} requests to a redirect loop");
    peak = peak.max(run.hwm_kib);

    // A 100 MB response: headers, then bencode that never ends; the client stops
    // reading at its limit, so the tracker's writes fail long before 100 MB.
    let written = Arc::new(AtomicU64::new(0));
    let w = written.clone();
    let (port, _) = http_tracker(10, move |_, s| {
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\nConnection: close\r\n\r\nd5:peers99999990:"
        );
        let chunk = vec![b'7'; 1 << 20];
        for _ in 0..100 {
            if s.write_all(&chunk).is_err() {
                return;
            }
            w.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
    });
    let t = f.torrent_with_tracker("huge.torrent", &format!("http://127.0.0.1:{port}/announce"));
    let run = f.download_ok("HTTP tracker answering 100 MB", &t, &[honest]);
    eprintln!(
        "100 MB reply: the tracker got {} MB out before the client hung up",
        written.load(Ordering::SeqCst) >> 20
    );
    peak = peak.max(run.hwm_kib);

    // The dictionary model (BEP 3's original peer list): entries with a hostname, a path,
    // an address out of range, port 0, port 70,000, a negative port, no port, and the
    // honest seed last. The bad entries are skipped, the honest one used (no --peer).
    let (port, _) = http_tracker(10, move |_, s| {
        let mut b = b"d8:intervali1800e5:peersl".to_vec();
        for (ip, port) in [
            ("tracker.example", "i6881e"),
            ("../../etc/passwd", "i6881e"),
            ("999.1.1.1", "i6881e"),
            ("127.0.0.1", "i0e"),
            ("127.0.0.1", "i70000e"),
            ("127.0.0.1", "i-1e"),
            ("127.0.0.1", "3:abc"),
        ] {
            b.extend(format!("d2:ip{}:{ip}4:port{port}e", ip.len()).into_bytes());
        }
        b.extend(b"d2:ip9:127.0.0.1e");
        let h = honest.ip().to_string();
        b.extend(format!("d2:ip{}:{h}4:porti{}ee", h.len(), honest.port()).into_bytes());
        b.extend(b"ee");
        http_ok(s, &b);
    });
    let t = f.torrent_with_tracker("dict.torrent", &format!("http://127.0.0.1:{port}/announce"));
    let run = f.download_ok(
        "HTTP tracker with broken dictionary-model peers, no --peer",
        &t,
        &[],
    );
    peak = peak.max(run.hwm_kib);

    // A 200 KB failure reason of terminal escapes and newlines, each followed by a
    // forged log line: the log gets one warning line, cut, with no line of the
    // tracker's making and no escape sequence.
    let (port, _) = http_tracker(10, |_, s| {
        let reason = b"\x1b[2J\r\n[forged INFO swarmlet] download complete ".repeat(4000);
        let mut b = format!("d14:failure reason{}:", reason.len()).into_bytes();
        b.extend(reason);
        b.push(b'e');
        http_ok(s, &b);
    });
    let t = f.torrent_with_tracker(
        "reason.torrent",
        &format!("http://127.0.0.1:{port}/announce"),
    );
    let run = f.download_ok("HTTP tracker with a 200 KB failure reason", &t, &[honest]);
    let longest = run.stderr.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096, "a log line of {longest} bytes");
    assert!(
        !run.stderr.lines().any(|l| l.starts_with("[forged")),
        "a log line forged by the tracker:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains('\x1b'),
        "a terminal escape from the tracker in the log"
    );
    peak = peak.max(run.hwm_kib);

    // A tracker that accepts and never answers: the announce times out in the background;
    // the download neither waits for it nor hangs on exit.
    let (port, _) = http_tracker(10, |_, s| {
        let mut b = [0u8; 1];
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let _ = s.read(&mut b);
    });
    let t = f.torrent_with_tracker("mute.torrent", &format!("http://127.0.0.1:{port}/announce"));
    let run = f.download_ok("HTTP tracker that never answers", &t, &[honest]);
    peak = peak.max(run.hwm_kib);

    eprintln!("hostile HTTP trackers: peak RSS of a download {peak} KiB");
}

/// A scripted UDP tracker on 127.0.0.1: `reply(request) -> datagram to send back` for
/// every datagram, until `stop`; counts the datagrams.
fn udp_tracker(
    reply: impl Fn(&[u8]) -> Option<Vec<u8>> + Send + 'static,
) -> (u16, Arc<AtomicU64>, Arc<AtomicBool>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (c, st) = (count.clone(), stop.clone());
    std::thread::spawn(move || {
        let mut b = [0u8; 2048];
        let end = Instant::now() + Duration::from_secs(600);
        while !st.load(Ordering::SeqCst) && Instant::now() < end {
            let Ok((n, from)) = sock.recv_from(&mut b) else {
                continue;
            };
            c.fetch_add(1, Ordering::SeqCst);
            if let Some(r) = reply(&b[..n]) {
                let _ = sock.send_to(&r, from);
            }
        }
    });
    (port, count, stop)
}

/// The BEP 15 answer to a connect or announce request, with `peers` in the announce
/// reply; `tid_delta` is added to the transaction id (0: the right one).
fn bep15_reply(req: &[u8], peers: &[u8], tid_delta: u32) -> Option<Vec<u8>> {
    if req.len() == 16 && req[..8] == 0x0417_2710_1980u64.to_be_bytes() {
        let tid = u32::from_be_bytes(req[12..16].try_into().unwrap()).wrapping_add(tid_delta);
        let mut r = 0u32.to_be_bytes().to_vec();
        r.extend(tid.to_be_bytes());
        r.extend(0x1122_3344_5566_7788u64.to_be_bytes());
        return Some(r);
    }
    if req.len() >= 98 && req[8..12] == 1u32.to_be_bytes() {
        let tid = u32::from_be_bytes(req[12..16].try_into().unwrap()).wrapping_add(tid_delta);
        let mut r = 1u32.to_be_bytes().to_vec();
        r.extend(tid.to_be_bytes());
        r.extend(1800u32.to_be_bytes());
        r.extend(0u32.to_be_bytes());
        r.extend(1u32.to_be_bytes());
        r.extend_from_slice(peers);
        return Some(r);
    }
    None
}

/// UDP trackers: one that always answers with another transaction id (ignored; the
/// download goes on from --peer), one that lists 10,000 peers in one datagram with the
/// honest seed first and our own address second (the only source: the download
/// finishes from it), and one whose peer list is cut mid-record.
#[test]
fn hostile_udp_trackers_do_not_stop_the_download() {
    let f = Fixture::new(8);
    let honest = f.honest;
    let mut peak = 0;

    let (port, hits, stop) = udp_tracker(|req| bep15_reply(req, &[], 1));
    let t = f.torrent_with_tracker("tid.torrent", &format!("udp://127.0.0.1:{port}/announce"));
    let run = f.download_ok(
        "UDP tracker replying with another transaction id",
        &t,
        &[honest],
    );
    assert!(
        hits.load(Ordering::SeqCst) >= 1,
        "the tracker was never asked"
    );
    stop.store(true, Ordering::SeqCst);
    peak = peak.max(run.hwm_kib);

    let (port, _, stop) = udp_tracker(move |req| {
        let mut peers = compact(honest).to_vec();
        if req.len() >= 98 {
            let ours = u16::from_be_bytes([req[96], req[97]]);
            peers.extend(compact(SocketAddr::from(([127, 0, 0, 1], ours))));
        }
        peers.extend(dead_peers(9_998));
        bep15_reply(req, &peers, 0)
    });
    let t = f.torrent_with_tracker(
        "udp10k.torrent",
        &format!("udp://127.0.0.1:{port}/announce"),
    );
    let run = f.download_ok(
        "UDP tracker with 10,000 peers and our own address, no --peer",
        &t,
        &[],
    );
    stop.store(true, Ordering::SeqCst);
    peak = peak.max(run.hwm_kib);

    let (port, hits, stop) = udp_tracker(move |req| {
        let mut peers = compact(honest).to_vec();
        peers.extend([127, 0, 0]);
        bep15_reply(req, &peers, 0)
    });
    let t = f.torrent_with_tracker(
        "udpodd.torrent",
        &format!("udp://127.0.0.1:{port}/announce"),
    );
    let run = f.download_ok("UDP tracker with a cut peer list", &t, &[honest]);
    assert!(hits.load(Ordering::SeqCst) >= 2);
    stop.store(true, Ordering::SeqCst);
    peak = peak.max(run.hwm_kib);

    eprintln!("hostile UDP trackers: peak RSS of a download {peak} KiB");
}
