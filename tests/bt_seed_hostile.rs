//! Hostile peers against the real `swarmlet seed` process, over loopback: each case is a
//! scripted peer (the library's peer-wire codec or raw bytes on a real socket) that breaks
//! the protocol one way. Each is dropped (the connection closes within a bound, with no
//! block sent) or ignored (no block sent for it, and the stream stays in step: a valid
//! request on the same connection is answered with the right bytes); after every case an
//! honest leecher written here fetches the whole file from the same seed, identical, and
//! at the end of each suite a real `swarmlet download` does too.
//!
//! The seed is a black box: the suites only assume BEP 3 on the wire and the limits
//! documented in docs/SECURITY.md (connection cap, handshake and message deadlines, write
//! timeout), so they stay valid whatever the connection internals become. The floods
//! report the seed's peak threads and resident memory and assert bounds derived from
//! those limits.

mod common;

use std::io::{BufReader, Cursor, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::bt::line_starting;
use common::random_bytes;
use swarmlet::bt::metainfo::Metainfo;
use swarmlet::bt::peer_wire::{
    BLOCK_LEN, BlockRequest, Handshake, Limits, Message, PeerId, Reserved, read_handshake,
    read_message,
};

/// The file every suite seeds: 5 pieces of 64 KiB, the last one short (37,857 bytes), so
/// "past the end of the last piece" differs from "past the end of a piece".
const FILE_LEN: usize = 300_001;
const PIECE_LEN: u64 = 65_536;

/// A bound for "dropped at once": the seed closes on the offending message; on a
/// loaded 2-core machine that is milliseconds, so 10 s is a hang guard only.
const PROMPT: Duration = Duration::from_secs(10);

/// A bound for the cases that wait for one of the seed's deadlines: the handshake (10 s)
/// or a whole message (20 s) per docs/SECURITY.md, with room for a loaded machine.
const DEADLINE_BOUND: Duration = Duration::from_secs(60);

/// A bound for a peer that never reads: the documented 30 s write timeout, with room.
const WRITE_TIMEOUT_BOUND: Duration = Duration::from_secs(90);

/// The seed's documented connection cap: 50 (docs/SECURITY.md). Written out rather
/// than taken from the library, so that the suite states the promise it checks and
/// keeps compiling whatever the connection code's constants are called.
const MAX_CONNECTIONS: u64 = 50;

/// Connections the accept loop takes beyond the cap while they are in their handshake
/// (docs/SECURITY.md: 8).
const HANDSHAKE_SLACK: u64 = 8;

/// Threads the seed may run for connections under any flood: two per connection (its
/// reader and its uploader, docs/SECURITY.md), for the cap and the handshake slack (a
/// connection refused past the cap may still have both while it closes).
const MAX_CONNECTION_THREADS: u64 = 2 * (MAX_CONNECTIONS + HANDSHAKE_SLACK);

/// A child killed by its pid on drop.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One running `swarmlet seed` and what a peer needs to talk to it.
struct Seed {
    proc: Killed,
    addr: SocketAddr,
    info_hash: [u8; 20],
    n: u32,
    data: Vec<u8>,
    dir: tempfile::TempDir,
    torrent: PathBuf,
}

impl Seed {
    /// Writes the file, makes its .torrent with `swarmlet create`, starts `swarmlet seed`
    /// on 127.0.0.1 and waits for its "seeding … on ADDR" line.
    fn start(seed: u64) -> Seed {
        let dir = tempfile::tempdir().unwrap();
        let data = random_bytes(FILE_LEN, seed);
        std::fs::write(dir.path().join("f.bin"), &data).unwrap();
        let o = Command::new(common::bin("swarmlet"))
            .current_dir(dir.path())
            .args([
                "create",
                "f.bin",
                "--piece-length",
                "65536",
                "-o",
                "f.torrent",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let torrent = dir.path().join("f.torrent");
        let m = Metainfo::read(&torrent).unwrap();
        let mut child = Command::new(common::bin("swarmlet"))
            .args(["seed", torrent.to_str().unwrap(), "--dir"])
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("seed.log")).unwrap())
            .spawn()
            .unwrap();
        let line = line_starting(&mut child, "seeding ");
        let addr = line.rsplit(' ').next().unwrap().parse().unwrap();
        Seed {
            proc: Killed(child),
            addr,
            info_hash: m.info_hash.0,
            n: m.pieces.len() as u32,
            data,
            dir,
            torrent,
        }
    }

    fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    fn limits(&self) -> Limits {
        Limits::new(self.n)
    }

    fn piece_len(&self, index: u32) -> u64 {
        let start = u64::from(index) * PIECE_LEN;
        (FILE_LEN as u64 - start).min(PIECE_LEN)
    }

    /// The bytes a request names.
    fn block(&self, r: &BlockRequest) -> &[u8] {
        let at = (u64::from(r.index) * PIECE_LEN + u64::from(r.begin)) as usize;
        &self.data[at..at + r.length as usize]
    }

    /// Every 16 KiB block of the file, in order.
    fn all_blocks(&self) -> Vec<BlockRequest> {
        let mut out = Vec::new();
        for index in 0..self.n {
            let len = self.piece_len(index);
            let mut begin = 0u64;
            while begin < len {
                let length = (len - begin).min(u64::from(BLOCK_LEN)) as u32;
                out.push(BlockRequest {
                    index,
                    begin: begin as u32,
                    length,
                });
                begin += u64::from(BLOCK_LEN);
            }
        }
        out
    }

    /// Our handshake, with a peer id never used before: every connection here is a peer
    /// of its own (a seed may refuse a second connection from one peer id).
    fn handshake(&self) -> [u8; 68] {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let mut peer_id = *b"-XX0001-hostile-0000";
        peer_id[16..].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        Handshake {
            reserved: Reserved::NONE,
            info_hash: self.info_hash,
            peer_id: PeerId(peer_id),
        }
        .encode()
    }

    /// A fresh connection that has said nothing yet.
    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(PROMPT)).unwrap();
        s.set_write_timeout(Some(PROMPT)).unwrap();
        s
    }

    /// A connection past the handshake and the seed's bitfield (which must be full).
    fn handshaken(&self) -> TcpStream {
        let mut s = self.connect();
        s.write_all(&self.handshake()).unwrap();
        let h = read_handshake(&mut s).unwrap();
        assert_eq!(h.info_hash, self.info_hash);
        match read_message(&mut s, &self.limits()).unwrap() {
            Message::Bitfield(b) => {
                assert!((0..self.n).all(|i| swarmlet::bt::peer_wire::bitfield_has(&b, i)))
            }
            m => panic!("expected the seed's bitfield, got {m:?}"),
        }
        s
    }

    /// A connection that said `interested` and was unchoked.
    fn unchoked(&self) -> TcpStream {
        let mut s = self.handshaken();
        s.write_all(&msg(&Message::Interested)).unwrap();
        wait_for(&mut s, &self.limits(), |m| *m == Message::Unchoke);
        s
    }

    /// The honest leecher: a whole download over one connection, every block pipelined;
    /// panics unless the bytes are the file's.
    fn honest_download(&self) {
        let mut s = self.unchoked();
        let blocks = self.all_blocks();
        let mut out = Vec::new();
        for r in &blocks {
            Message::Request(*r).encode(&mut out).unwrap();
        }
        s.write_all(&out).unwrap();
        let mut file = vec![0u8; FILE_LEN];
        let mut got = 0;
        let limits = self.limits();
        let mut r = BufReader::new(&s);
        while got < blocks.len() {
            match read_message(&mut r, &limits).unwrap() {
                Message::Piece { index, begin, data } => {
                    let at = (u64::from(index) * PIECE_LEN + u64::from(begin)) as usize;
                    file[at..at + data.len()].copy_from_slice(&data);
                    got += 1;
                }
                Message::Have(_) | Message::KeepAlive => {}
                m => panic!("honest leecher got {m:?} mid-download"),
            }
        }
        assert!(file == self.data, "the honest leecher's copy differs");
        let _ = s.shutdown(Shutdown::Both);
    }

    /// A real `swarmlet download` of the whole file from this seed, compared.
    fn swarmlet_download(&self) {
        let out = self
            .dir
            .path()
            .join(format!("dl-{}", Instant::now().elapsed().as_nanos()));
        let mut child = Command::new(common::bin("swarmlet"))
            .args(["download", self.torrent.to_str().unwrap(), "--dir"])
            .arg(&out)
            .args(["--peer", &self.addr.to_string(), "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!("swarmlet download from the seed did not finish within 2 minutes");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(status.success(), "swarmlet download: {err}");
        assert!(
            std::fs::read(out.join("f.bin")).unwrap() == self.data,
            "swarmlet download's copy differs"
        );
    }

    /// The seed's threads once the count has held still for a second (start-up helpers
    /// such as the recheck may still be ending when the address is printed).
    fn settled_threads(&self) -> u64 {
        let end = Instant::now() + Duration::from_secs(20);
        let (mut last, mut same) = (common::threads(self.pid()), 0);
        while same < 10 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(100));
            let n = common::threads(self.pid());
            same = if n == last { same + 1 } else { 0 };
            last = n;
        }
        last
    }

    /// The seed's threads with no connection open: waits until it settles.
    fn idle_threads(&self, want: u64) -> u64 {
        common::wait_threads(self.pid(), want, Duration::from_secs(30))
    }
}

fn msg(m: &Message) -> Vec<u8> {
    m.to_bytes().unwrap()
}

fn req(index: u32, begin: u32, length: u32) -> Message {
    Message::Request(BlockRequest {
        index,
        begin,
        length,
    })
}

/// A raw message: length prefix, id, body, as given (so it may lie).
fn raw(len: u32, id: u8, body: &[u8]) -> Vec<u8> {
    let mut v = len.to_be_bytes().to_vec();
    v.push(id);
    v.extend_from_slice(body);
    v
}

/// Reads messages until one satisfies `pred` (keep-alives and haves may come between).
fn wait_for(s: &mut TcpStream, limits: &Limits, pred: impl Fn(&Message) -> bool) -> Message {
    loop {
        let m = read_message(s, limits).unwrap();
        if pred(&m) {
            return m;
        }
        assert!(
            matches!(m, Message::KeepAlive | Message::Have(_)),
            "unexpected {m:?}"
        );
    }
}

/// Reads until the seed closes the connection (EOF or reset), at most `bound`; returns
/// what came before the close. Panics if the connection is still open after `bound`.
fn until_closed(s: &mut TcpStream, bound: Duration) -> Vec<u8> {
    let end = Instant::now() + bound;
    let mut got = Vec::new();
    let mut b = [0u8; 64 * 1024];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "still open after {bound:?} ({} bytes received)",
            got.len()
        );
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut b) {
            Ok(0) => return got,
            Ok(k) => got.extend_from_slice(&b[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Whether the seed has closed the connection, without blocking. Nothing may have come
/// (the callers are cases the seed never answers).
fn is_closed(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let r = s.read(&mut b);
    s.set_nonblocking(false).unwrap();
    match r {
        Ok(0) => true,
        Ok(_) => panic!("the seed answered a peer it must not answer"),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// Whether a connection is still open: drains what has come without blocking; end of
/// file or an error is closed.
fn still_open(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 4096];
    let open = loop {
        match s.read(&mut b) {
            Ok(0) => break false,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
            Err(_) => break false,
        }
    };
    s.set_nonblocking(false).unwrap();
    open
}

/// The messages in `bytes` (what the seed sent after its bitfield): none may be a block.
fn assert_no_block(bytes: &[u8], limits: &Limits, case: &str) {
    let mut c = Cursor::new(bytes);
    while (c.position() as usize) < bytes.len() {
        let m = read_message(&mut c, limits)
            .unwrap_or_else(|e| panic!("{case}: the seed sent a broken message: {e}"));
        assert!(
            !matches!(m, Message::Piece { .. }),
            "{case}: the seed sent a block"
        );
    }
}

/// What a case must end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The seed closes the connection promptly without a single byte: the peer learns
    /// nothing, not even our handshake.
    ClosedSilently,
    /// The seed closes the connection promptly; whatever it sent is not a block.
    Dropped,
    /// The seed ignores what was sent (no block for it) and the stream stays in step: a
    /// valid request on the same connection is answered with the right bytes first.
    Ignored,
    /// Either of the above, as BEP 3 leaves it to the seed (requests while choked,
    /// unsolicited blocks, a second bitfield): no block for what was sent, and either the
    /// connection closes or it stays in step.
    NoBlock,
}

/// Where a case starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// A connection that has said nothing.
    Fresh,
    /// Past the handshake and the seed's bitfield, not interested.
    Handshaken,
    /// Interested and unchoked.
    Unchoked,
}

struct Case {
    name: &'static str,
    start: Start,
    /// The bytes the hostile peer sends (given the seed, for its infohash and sizes).
    send: fn(&Seed) -> Vec<u8>,
    expect: Expect,
}

fn case(name: &'static str, start: Start, send: fn(&Seed) -> Vec<u8>, expect: Expect) -> Case {
    Case {
        name,
        start,
        send,
        expect,
    }
}

/// Runs one case on its own connection and checks its outcome.
fn run_case(seed: &Seed, c: &Case) {
    let limits = seed.limits();
    let mut s = match c.start {
        Start::Fresh => seed.connect(),
        Start::Handshaken => seed.handshaken(),
        Start::Unchoked => seed.unchoked(),
    };
    let bytes = (c.send)(seed);
    // The seed may close before reading everything: a failed write is fine then.
    let _ = s.write_all(&bytes);
    if c.name.ends_with("then EOF") {
        let _ = s.shutdown(Shutdown::Write);
    }
    match c.expect {
        Expect::ClosedSilently => {
            let got = until_closed(&mut s, PROMPT);
            assert!(got.is_empty(), "{}: the seed answered {got:?}", c.name);
        }
        Expect::Dropped => {
            let got = until_closed(&mut s, PROMPT);
            assert_no_block(&got, &limits, c.name);
        }
        Expect::Ignored | Expect::NoBlock => {
            if !matches!(c.start, Start::Unchoked) {
                s.write_all(&msg(&Message::Interested)).unwrap();
            }
            let good = BlockRequest {
                index: seed.n - 1,
                begin: 16_384,
                length: 16_384,
            };
            if let Err(e) = s.write_all(&msg(&Message::Request(good))) {
                assert!(
                    c.expect == Expect::NoBlock,
                    "{}: the seed dropped the peer before its request: {e}",
                    c.name
                );
                return;
            }
            loop {
                let m = match read_message(&mut s, &limits) {
                    Ok(m) => m,
                    // Dropped without a block: allowed here.
                    Err(_) if c.expect == Expect::NoBlock => break,
                    Err(e) => panic!("{}: the seed dropped the peer: {e}", c.name),
                };
                match m {
                    Message::Piece { index, begin, data } => {
                        assert_eq!(
                            (index, begin),
                            (good.index, good.begin),
                            "{}: a block we did not ask for (or asked for while choked)",
                            c.name
                        );
                        assert!(data == seed.block(&good), "{}: wrong bytes", c.name);
                        break;
                    }
                    Message::Unchoke | Message::Choke | Message::KeepAlive | Message::Have(_) => {}
                    m => panic!("{}: unexpected {m:?}", c.name),
                }
            }
        }
    }
}

/// Every request in one buffer.
fn requests(rs: impl IntoIterator<Item = Message>) -> Vec<u8> {
    rs.into_iter().flat_map(|m| msg(&m)).collect()
}

/// The prompt cases: each breaks one rule (or bends one that must be tolerated) in one
/// write; the seed's answer is immediate.
fn prompt_cases() -> Vec<Case> {
    use Expect::*;
    use Start::*;
    vec![
        // --- The handshake ---------------------------------------------------------
        case(
            "garbage handshake (68 random bytes)",
            Fresh,
            |_| random_bytes(68, 1),
            ClosedSilently,
        ),
        case(
            "garbage behind a right pstrlen",
            Fresh,
            |_| {
                let mut v = vec![19u8];
                v.extend(random_bytes(67, 2));
                v
            },
            ClosedSilently,
        ),
        case(
            "protocol string one letter off",
            Fresh,
            |s| {
                let mut h = s.handshake();
                h[19] = b'L';
                h.to_vec()
            },
            ClosedSilently,
        ),
        case("pstrlen 0", Fresh, |_| vec![0u8; 68], ClosedSilently),
        case(
            "pstrlen 255",
            Fresh,
            |_| {
                let mut v = vec![255u8];
                v.extend(std::iter::repeat_n(b'B', 300));
                v
            },
            ClosedSilently,
        ),
        case(
            "an HTTP request instead of a handshake",
            Fresh,
            |_| b"GET /announce HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            ClosedSilently,
        ),
        case(
            "wrong infohash (last bit flipped)",
            Fresh,
            |s| {
                let mut h = s.handshake();
                h[47] ^= 1;
                h.to_vec()
            },
            ClosedSilently,
        ),
        case(
            "all-zero infohash",
            Fresh,
            |s| {
                let mut h = s.handshake();
                h[28..48].fill(0);
                h.to_vec()
            },
            ClosedSilently,
        ),
        case(
            "handshake cut after 30 bytes, then EOF",
            Fresh,
            |s| s.handshake()[..30].to_vec(),
            ClosedSilently,
        ),
        case(
            "messages instead of a handshake",
            Fresh,
            |_| requests([Message::Interested, req(0, 0, 16_384)]),
            ClosedSilently,
        ),
        case(
            "a UDP tracker connect packet over TCP",
            Fresh,
            |_| {
                let mut v = 0x0417_2710_1980u64.to_be_bytes().to_vec();
                v.extend([0, 0, 0, 0, 1, 2, 3, 4]);
                v
            },
            ClosedSilently,
        ),
        case(
            "a second handshake after the first",
            Handshaken,
            |s| s.handshake().to_vec(),
            Dropped,
        ),
        // --- Framing ---------------------------------------------------------------
        case(
            "length prefix 2^32-1",
            Handshaken,
            |_| vec![0xFF, 0xFF, 0xFF, 0xFF, 7],
            Dropped,
        ),
        case(
            "length prefix 2^32-1, unknown id",
            Handshaken,
            |_| vec![0xFF, 0xFF, 0xFF, 0xFF, 200],
            Dropped,
        ),
        case(
            "length prefix 2^31 with nothing behind",
            Handshaken,
            |_| vec![0x80, 0, 0, 0, 5],
            Dropped,
        ),
        case(
            "a piece of 16 KiB + 1 (over the block limit)",
            Unchoked,
            |_| {
                let mut body = vec![0u8; 8];
                body.extend(vec![0u8; 16_385]);
                raw(1 + 8 + 16_385, 7, &body)
            },
            Dropped,
        ),
        case(
            "an unknown id of 1 MiB (over the skip limit)",
            Handshaken,
            |_| raw(1 << 20, 99, &[]),
            Dropped,
        ),
        case(
            "choke with a body",
            Handshaken,
            |_| raw(2, 0, &[0]),
            Dropped,
        ),
        case(
            "interested with a 4-byte body",
            Handshaken,
            |_| raw(5, 2, &[0; 4]),
            Dropped,
        ),
        case(
            "have of 3 bytes",
            Handshaken,
            |_| raw(4, 4, &[0; 3]),
            Dropped,
        ),
        case(
            "request of 12 bytes",
            Unchoked,
            |_| raw(12, 6, &[0; 11]),
            Dropped,
        ),
        case(
            "request of 14 bytes",
            Unchoked,
            |_| raw(14, 6, &[0; 13]),
            Dropped,
        ),
        case(
            "port of 4 bytes",
            Handshaken,
            |_| raw(5, 9, &[0; 4]),
            Dropped,
        ),
        case(
            "piece shorter than its header",
            Unchoked,
            |_| raw(5, 7, &[0; 4]),
            Dropped,
        ),
        // --- have and bitfield -----------------------------------------------------
        case(
            "have for the index one past the last",
            Handshaken,
            |s| msg(&Message::Have(s.n)),
            Dropped,
        ),
        case(
            "have for index 2^32-1",
            Handshaken,
            |_| msg(&Message::Have(u32::MAX)),
            Dropped,
        ),
        case(
            "bitfield one byte short",
            Handshaken,
            |_| raw(1, 5, &[]),
            Dropped,
        ),
        case(
            "bitfield one byte long",
            Handshaken,
            |_| raw(3, 5, &[0xF8, 0]),
            Dropped,
        ),
        case(
            "bitfield of 1 MiB",
            Handshaken,
            |_| raw((1 << 20) + 1, 5, &[]),
            Dropped,
        ),
        case(
            "bitfield with spare bits set",
            Handshaken,
            |_| raw(2, 5, &[0xFF]),
            Dropped,
        ),
        // --- Requests --------------------------------------------------------------
        case(
            "request for the piece one past the last",
            Unchoked,
            |s| msg(&req(s.n, 0, 16_384)),
            Dropped,
        ),
        case(
            "request for piece 2^32-1",
            Unchoked,
            |_| msg(&req(u32::MAX, 0, 16_384)),
            Dropped,
        ),
        case(
            "request past the end of the short last piece",
            Unchoked,
            |s| msg(&req(s.n - 1, 32_768, 16_384)),
            Dropped,
        ),
        case(
            "request beginning at the piece's end",
            Unchoked,
            |_| msg(&req(0, 65_536, 1)),
            Dropped,
        ),
        case(
            "request whose begin + length overflows u32",
            Unchoked,
            |_| msg(&req(0, u32::MAX - 100, 16_384)),
            Dropped,
        ),
        case(
            "request of 0 bytes",
            Unchoked,
            |_| msg(&req(0, 0, 0)),
            Dropped,
        ),
        case(
            "request of 16 KiB + 1",
            Unchoked,
            |_| msg(&req(0, 0, 16_385)),
            Dropped,
        ),
        case(
            "request of a 1 MiB block",
            Unchoked,
            |_| msg(&req(0, 0, 1 << 20)),
            Dropped,
        ),
        case(
            "request of 2^32-1 bytes",
            Unchoked,
            |_| msg(&req(0, 0, u32::MAX)),
            Dropped,
        ),
        case(
            "a good request, then one out of range",
            Unchoked,
            |s| {
                // The good one may be answered before the bad one is read; nothing after.
                requests([req(0, 0, 16_384), req(s.n + 5, 0, 16_384)])
            },
            Ignored, /* checked specially below */
        ),
        case(
            "unknown id 20 (an extension we never announced), 100 bytes",
            Handshaken,
            |_| raw(101, 20, &[7; 100]),
            Ignored,
        ),
        case(
            "requests while choked",
            Handshaken,
            |_| requests((0..20).map(|i| req(i % 5, 0, 16_384))),
            NoBlock,
        ),
        case(
            "interested then not interested, then requests",
            Handshaken,
            |_| {
                requests([
                    Message::Interested,
                    Message::NotInterested,
                    req(0, 0, 16_384),
                ])
            },
            NoBlock,
        ),
        case(
            "an unsolicited block of the right size",
            Unchoked,
            |_| {
                let mut body = vec![0, 0, 0, 1, 0, 0, 0, 0];
                body.extend(vec![0xAB; 16_384]);
                raw(9 + 16_384, 7, &body)
            },
            NoBlock,
        ),
        case(
            "a cancel for a block never asked",
            Unchoked,
            |_| {
                msg(&Message::Cancel(BlockRequest {
                    index: 0,
                    begin: 0,
                    length: 16_384,
                }))
            },
            Ignored,
        ),
        case(
            "10,000 keep-alives",
            Unchoked,
            |_| vec![0u8; 40_000],
            Ignored,
        ),
        case(
            // Every piece but the last, over and over: a peer that announced them all
            // would be a seed, which a seed rightly drops (nothing to trade).
            "1,000 haves of valid pieces",
            Handshaken,
            |s| requests((0..1000).map(|i| Message::Have(i % (s.n - 1)))),
            Ignored,
        ),
        case(
            "a valid bitfield, twice",
            Handshaken,
            |_| requests([Message::Bitfield(vec![0xF8]), Message::Bitfield(vec![0x80])]),
            NoBlock,
        ),
        case(
            "choke, unchoke and port from a leecher",
            Handshaken,
            |_| requests([Message::Choke, Message::Unchoke, Message::Port(6881)]),
            Ignored,
        ),
        case(
            "interested / not interested 1,000 times",
            Handshaken,
            |_| requests((0..1000).flat_map(|_| [Message::Interested, Message::NotInterested])),
            Ignored,
        ),
        case(
            "a request of 100 bytes at an odd offset (legal)",
            Unchoked,
            |_| msg(&req(1, 12_345, 100)),
            Ignored, /* answered: checked specially below */
        ),
        case(
            "handshake, interested and a request in one write, before any answer",
            Fresh,
            |s| {
                let mut v = s.handshake().to_vec();
                v.extend(requests([Message::Interested, req(2, 0, 16_384)]));
                v
            },
            Ignored, /* answered in order: checked specially below */
        ),
    ]
}

/// The prompt cases in turn against one seed, each followed by an honest download; then
/// `swarmlet download` fetches the file and the seed is back to its idle thread count.
#[test]
fn every_hostile_peer_is_dropped_or_ignored_and_honest_leechers_get_the_file() {
    let seed = Seed::start(41);
    let idle = seed.settled_threads();
    let cases = prompt_cases();
    let limits = seed.limits();
    for c in &cases {
        match c.name {
            // Served up to the bad request, then dropped: the good block may come, with
            // the right bytes; nothing after it.
            "a good request, then one out of range" => {
                let mut s = seed.unchoked();
                let _ = s.write_all(&(c.send)(&seed));
                let got = until_closed(&mut s, PROMPT);
                let mut r = Cursor::new(&got[..]);
                let mut blocks = 0;
                while (r.position() as usize) < got.len() {
                    if let Message::Piece { index, begin, data } =
                        read_message(&mut r, &limits).unwrap()
                    {
                        let want = BlockRequest {
                            index,
                            begin,
                            length: data.len() as u32,
                        };
                        assert_eq!((index, begin, data.len()), (0, 0, 16_384));
                        assert!(data == seed.block(&want));
                        blocks += 1;
                    }
                }
                assert!(blocks <= 1, "{}: {blocks} blocks", c.name);
            }
            // Legal: any offset within the piece is answered with exactly those bytes.
            "a request of 100 bytes at an odd offset (legal)" => {
                let mut s = seed.unchoked();
                s.write_all(&(c.send)(&seed)).unwrap();
                let m = wait_for(&mut s, &limits, |m| matches!(m, Message::Piece { .. }));
                let want = BlockRequest {
                    index: 1,
                    begin: 12_345,
                    length: 100,
                };
                assert_eq!(
                    m,
                    Message::Piece {
                        index: 1,
                        begin: 12_345,
                        data: seed.block(&want).to_vec()
                    }
                );
            }
            // Messages that come before the seed's handshake is even sent are read in
            // order once it is: the handshake, the bitfield, the unchoke, then the block.
            "handshake, interested and a request in one write, before any answer" => {
                let mut s = seed.connect();
                s.write_all(&(c.send)(&seed)).unwrap();
                let h = read_handshake(&mut s).unwrap();
                assert_eq!(h.info_hash, seed.info_hash);
                assert!(matches!(
                    read_message(&mut s, &limits).unwrap(),
                    Message::Bitfield(_)
                ));
                assert_eq!(read_message(&mut s, &limits).unwrap(), Message::Unchoke);
                let want = BlockRequest {
                    index: 2,
                    begin: 0,
                    length: 16_384,
                };
                let m = wait_for(&mut s, &limits, |m| matches!(m, Message::Piece { .. }));
                assert_eq!(
                    m,
                    Message::Piece {
                        index: 2,
                        begin: 0,
                        data: seed.block(&want).to_vec()
                    }
                );
            }
            _ => run_case(&seed, c),
        }
        seed.honest_download();
    }
    eprintln!("{} prompt cases against swarmlet seed", cases.len());
    assert!(cases.len() >= 40);
    seed.swarmlet_download();
    let after = seed.idle_threads(idle);
    assert_eq!(after, idle, "connection threads left behind");
}

/// The cases that wait for one of the seed's deadlines, all at once against one seed:
/// a handshake a byte a second, a connection that says nothing, a message cut in the
/// middle, a message trickled a byte a second, a peer that never reads its blocks, and
/// one that resets mid-transfer. Each is cut off within its bound; an honest download
/// succeeds while they are held, and after.
#[test]
fn slow_silent_and_deaf_peers_are_cut_off_at_the_documented_deadlines() {
    let seed = Arc::new(Seed::start(42));
    let idle = seed.settled_threads();
    let mut handles = Vec::new();
    let spawn = |name: &'static str, f: fn(&Seed)| {
        let seed = seed.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || f(&seed))
            .unwrap()
    };
    // A handshake a byte a second: 68 bytes would take 68 s; the handshake deadline
    // (10 s) closes it before the 48-byte head is even complete.
    handles.push(spawn("slow handshake", |seed| {
        let mut s = seed.connect();
        let h = seed.handshake();
        let started = Instant::now();
        let mut sent = 0;
        while sent < h.len() {
            if s.write_all(&h[sent..sent + 1]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_secs(1));
            if is_closed(&mut s) {
                break;
            }
            assert!(
                started.elapsed() < DEADLINE_BOUND,
                "slow handshake still open"
            );
        }
        assert!(
            sent < 48,
            "the seed waited for {sent} bytes of a byte-a-second handshake"
        );
        let got = until_closed(&mut s, DEADLINE_BOUND);
        assert!(got.is_empty(), "slow handshake: answered {got:?}");
    }));
    // Connects and says nothing.
    handles.push(spawn("silent", |seed| {
        let mut s = seed.connect();
        let got = until_closed(&mut s, DEADLINE_BOUND);
        assert!(got.is_empty());
    }));
    // A request cut after 5 of its 17 bytes, then silence.
    handles.push(spawn("cut message", |seed| {
        let mut s = seed.unchoked();
        s.write_all(&msg(&req(0, 0, 16_384))[..5]).unwrap();
        let got = until_closed(&mut s, DEADLINE_BOUND);
        assert_no_block(&got, &seed.limits(), "cut message");
    }));
    // A 100-byte message of an unknown id (one the seed skips), a byte a second: 104 s
    // of trickle; the per-message deadline ends it long before.
    handles.push(spawn("trickled message", |seed| {
        let mut s = seed.unchoked();
        let m = raw(101, 20, &[0; 100]);
        let started = Instant::now();
        let mut sent = 0;
        for b in &m {
            if s.write_all(std::slice::from_ref(b)).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_secs(1));
            if started.elapsed() > DEADLINE_BOUND {
                break;
            }
            if is_closed(&mut s) {
                break;
            }
        }
        assert!(
            sent < m.len(),
            "the seed waited for a whole trickled message"
        );
        let got = until_closed(&mut s, DEADLINE_BOUND);
        assert_no_block(&got, &seed.limits(), "trickled message");
    }));
    // Never reads: keeps asking for blocks (100 every 50 ms, far more than the socket
    // buffers hold: loopback may buffer 36 MB) and reads none. The seed's writes block
    // once the buffers are full; its write timeout must then drop the peer, which our
    // next write sees as a reset.
    handles.push(spawn("never reads", |seed| {
        let mut s = seed.unchoked();
        let blocks = seed.all_blocks();
        let batch = requests((0..100).map(|i| Message::Request(blocks[i % blocks.len()])));
        let started = Instant::now();
        s.set_write_timeout(Some(WRITE_TIMEOUT_BOUND)).unwrap();
        let mut rounds = 0u32;
        let closed = loop {
            if s.write_all(&batch).is_err() {
                break true;
            }
            rounds += 1;
            if started.elapsed() > WRITE_TIMEOUT_BOUND {
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        eprintln!(
            "never reads: dropped after {:.0?} ({} requests sent)",
            started.elapsed(),
            rounds * 100
        );
        assert!(
            closed,
            "never reads: still open after {WRITE_TIMEOUT_BOUND:?}"
        );
    }));
    // Asks for everything, reads one block, then resets the connection (SO_LINGER 0).
    handles.push(spawn("reset mid-transfer", |seed| {
        let mut s = seed.unchoked();
        let all = requests(seed.all_blocks().into_iter().map(Message::Request));
        s.write_all(&all).unwrap();
        wait_for(&mut s, &seed.limits(), |m| {
            matches!(m, Message::Piece { .. })
        });
        let l = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        use std::os::fd::AsRawFd;
        // SAFETY: setsockopt on our own socket with a correctly sized linger struct.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &l as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        drop(s);
    }));
    // Meanwhile an honest leecher is served in full, several times.
    for _ in 0..3 {
        seed.honest_download();
        std::thread::sleep(Duration::from_secs(2));
    }
    for h in handles {
        h.join().unwrap();
    }
    seed.honest_download();
    seed.swarmlet_download();
    assert_eq!(
        seed.idle_threads(idle),
        idle,
        "connection threads left behind"
    );
}

/// Samples a process's threads and resident memory every few milliseconds until stopped;
/// the peaks are what the floods report.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak_threads: Arc<AtomicU64>,
    peak_rss_kib: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_threads = Arc::new(AtomicU64::new(0));
        let peak_rss_kib = Arc::new(AtomicU64::new(0));
        let (st, pt, pr) = (stop.clone(), peak_threads.clone(), peak_rss_kib.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                if let Some(t) = common::proc_status(pid, "Threads") {
                    pt.fetch_max(t, Ordering::SeqCst);
                }
                if let Some(r) = common::proc_status(pid, "VmRSS") {
                    pr.fetch_max(r, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Sampler {
            stop,
            peak_threads,
            peak_rss_kib,
            thread: Some(thread),
        }
    }

    /// Stops sampling; returns (peak threads, peak resident KiB).
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (
            self.peak_threads.load(Ordering::SeqCst),
            self.peak_rss_kib.load(Ordering::SeqCst),
        )
    }
}

/// Resident memory a seed may reach under any flood, from the documented limits: per
/// connection a thread whose 256 KiB stack (`server::STACK_SIZE`) may be resident whole,
/// its 8 KiB read buffer, one block buffer (16 KiB + header) and at most
/// `seed::MAX_QUEUED_REQUESTS` (2,048) queued requests of 12 bytes (24 KiB): about
/// 320 KiB × 50 connections = 16 MiB; plus the process's own base (measured at idle) and
/// 16 MiB of slack for the allocator's per-thread arenas. A flood that made memory grow
/// with the attacker's effort (100,000 requests, 1,000 connections) would pass it.
fn rss_bound_kib(base_kib: u64) -> u64 {
    let per_connection = 256 + 8 + 17 + 24 + 16;
    base_kib + MAX_CONNECTIONS * per_connection + 16 * 1024
}

/// Floods against one seed: 1,000 connections at once, then 100,000 requests pipelined
/// on one connection. Threads stay within the connection cap, memory within
/// [`rss_bound_kib`]; the seed then serves an honest leecher and `swarmlet download`.
#[test]
fn floods_keep_the_seed_within_its_connection_cap_and_memory() {
    common::raise_fd_limit(4096);
    let seed = Seed::start(43);
    let pid = seed.pid();
    let idle = seed.settled_threads();
    let base_rss = common::proc_status(pid, "VmRSS").unwrap();

    // 1,000 connections at once, each sending a whole handshake.
    let sampler = Sampler::start(pid);
    let mut conns = Vec::new();
    for _ in 0..1000 {
        let mut s = TcpStream::connect(seed.addr).unwrap();
        s.set_read_timeout(Some(PROMPT)).unwrap();
        // 1,000 distinct peers (a peer id each), not one peer reconnecting.
        let _ = s.write_all(&seed.handshake());
        conns.push(s);
    }
    let (mut answered, mut refused) = (0u64, 0u64);
    let mut served = Vec::new();
    for (i, s) in conns.iter_mut().enumerate() {
        let mut h = [0u8; 68];
        match s.read_exact(&mut h) {
            Ok(()) => {
                assert_eq!(&h[28..48], &seed.info_hash);
                answered += 1;
                served.push(i);
            }
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                    ),
                    "a connection over the cap was neither served nor closed: {e}"
                );
                refused += 1;
            }
        }
    }
    // Served at once: the connections answered and still open once the burst is over
    // (a seed may answer a handshake and refuse the peer just after).
    std::thread::sleep(Duration::from_secs(2));
    let held = served
        .iter()
        .filter(|&&i| still_open(&mut conns[i]))
        .count() as u64;
    let during = common::threads(pid);
    drop(conns);
    let (peak_threads, peak_rss) = sampler.finish();
    eprintln!(
        "1,000 connections: {answered} answered ({held} held open), {refused} closed at \
         once; peak {peak_threads} threads (idle {idle}), peak RSS {peak_rss} KiB (idle \
         {base_rss} KiB)"
    );
    assert_eq!(answered + refused, 1000);
    assert!((1..=MAX_CONNECTIONS).contains(&held), "{held} held open");
    assert!(
        peak_threads <= idle + MAX_CONNECTION_THREADS,
        "{peak_threads} threads"
    );
    assert!(during <= idle + MAX_CONNECTION_THREADS);
    assert!(
        peak_rss <= rss_bound_kib(base_rss),
        "{peak_rss} KiB resident"
    );
    assert_eq!(
        seed.idle_threads(idle),
        idle,
        "threads left after the burst"
    );
    seed.honest_download();

    // 100,000 requests pipelined on one connection, read by a thread of ours; then
    // `not interested`: the seed chokes and forgets the queue. Every block that came is
    // right, and far fewer came than were asked (the queue is bounded).
    let sampler = Sampler::start(pid);
    let mut s = seed.unchoked();
    let blocks = seed.all_blocks();
    let flood = requests((0..100_000).map(|i| Message::Request(blocks[i % blocks.len()])));
    let r = s.try_clone().unwrap();
    r.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let data = seed.data.clone();
    let n = seed.n;
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 20, r);
        let limits = Limits::new(n);
        let mut got = 0u64;
        loop {
            match read_message(&mut r, &limits).unwrap() {
                Message::Piece {
                    index,
                    begin,
                    data: d,
                } => {
                    let at = (u64::from(index) * PIECE_LEN + u64::from(begin)) as usize;
                    assert!(d == data[at..at + d.len()], "a wrong block under the flood");
                    got += 1;
                }
                Message::Choke => return got,
                _ => {}
            }
        }
    });
    s.set_write_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(&flood).unwrap();
    s.write_all(&msg(&Message::NotInterested)).unwrap();
    let got = reader.join().unwrap();
    let (peak_threads, peak_rss) = sampler.finish();
    eprintln!(
        "100,000 pipelined requests: {got} blocks served before the choke; peak {peak_threads} \
         threads, peak RSS {peak_rss} KiB"
    );
    assert!((1..100_000).contains(&got), "{got} blocks");
    assert!(
        peak_rss <= rss_bound_kib(base_rss),
        "{peak_rss} KiB resident"
    );
    drop(s);
    assert_eq!(seed.idle_threads(idle), idle);
    seed.honest_download();
    seed.swarmlet_download();
    let hwm = common::proc_status(pid, "VmHWM").unwrap();
    eprintln!("seed VmHWM over the floods: {hwm} KiB");
    assert!(hwm <= rss_bound_kib(base_rss));
    let _: &Path = seed.dir.path();
}
