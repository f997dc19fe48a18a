//! The measuring tools behind `scripts/bench.sh` (through the `bench` binary): the
//! ceiling Charlie is compared to, load generators for the tracker and a peer, a
//! step-3 discovery probe, and the small pieces the script needs to time processes and
//! read their resource use.
//!
//! Every function here reports; none judges. Nothing in `cargo test` depends on a speed.
//! Every loop that sends is bounded both in count and in time, and every address used is
//! the caller's (the script passes loopback addresses only).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::{FileManifest, ManifestChunk};
use crate::course::discovery::no_datagram_yet;
use crate::hash::{ChunkHash, ChunkHasher};
use crate::store::for_each_block;
use crate::wire::{self, ChunkReply, Message, MsgType, Tolerance};

/// Block size of the ceiling's reads and writes, and of the file generator and the SHA-1
/// measurement: large enough that per-call costs vanish (4 MiB is 8 course chunks), small
/// enough to stay in L2/L3-friendly territory and cost nothing in RSS worth noting.
pub const BIG_BUF: usize = 4 << 20;

/// Socket buffer asked for on the ceiling's connection (SO_SNDBUF/SO_RCVBUF). Linux
/// doubles it and caps it at `net.core.[rw]mem_max`; on loopback this keeps both ends
/// streaming without waiting for each other.
pub const SINK_SOCKET_BUF: usize = 4 << 20;

/// Fills `path` with `size` pseudo-random bytes (xorshift64*, seeded), 4 MiB at a time.
/// Random so that no chunk repeats (a repeated chunk is fetched once, which would flatter
/// Charlie), pseudo-random so that making a 4 GiB file costs seconds, not minutes.
pub fn make_file(path: &Path, size: u64, seed: u64) -> io::Result<()> {
    let mut out = File::create(path)?;
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = vec![0u8; BIG_BUF];
    let mut left = size;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            word.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(BIG_BUF as u64) as usize;
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Throughput of one measurement.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Bytes moved (or hashed).
    pub bytes: u64,
    /// Wall time it took.
    pub secs: f64,
}

impl Rate {
    /// Megabytes (10^6 bytes) per second.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs.max(1e-9)
    }
}

fn set_socket_buffers(s: &TcpStream, bytes: usize) -> io::Result<()> {
    let sock = socket2::SockRef::from(s);
    sock.set_send_buffer_size(bytes)?;
    sock.set_recv_buffer_size(bytes)
}

/// The ceiling: pushes `src` over one loopback TCP connection into `dest` (same
/// filesystem as Charlie's chunks), as fast as this machine can. The sender streams the
/// file with `sendfile(2)` (what the peers do); the receiver reads into one reused
/// 4 MiB buffer and writes each read straight to the file. No protocol, no hashing, no
/// second copy: anything Charlie does beyond this is overhead of the real job.
///
/// The clock runs from the connection's first byte to the last byte written.
pub fn sink(src: &Path, dest: &Path) -> io::Result<Rate> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = listener.local_addr()?;
    let size = std::fs::metadata(src)?.len();
    let src = src.to_path_buf();
    let sender = thread::spawn(move || -> io::Result<u64> {
        let mut file = File::open(&src)?;
        let mut s = TcpStream::connect(addr)?;
        set_socket_buffers(&s, SINK_SOCKET_BUF)?;
        // File -> TcpStream: std uses sendfile(2) here.
        let n = io::copy(&mut file, &mut s)?;
        s.shutdown(std::net::Shutdown::Write)?;
        Ok(n)
    });
    let (mut conn, _) = listener.accept()?;
    let start = Instant::now();
    set_socket_buffers(&conn, SINK_SOCKET_BUF)?;
    let mut out = File::create(dest)?;
    let mut buf = vec![0u8; BIG_BUF];
    // Bounded: the sender sends exactly `size` bytes then shuts its side down.
    let got = for_each_block(&mut conn, &mut buf, |block| out.write_all(block))?;
    let secs = start.elapsed().as_secs_f64();
    let sent = sender
        .join()
        .map_err(|_| io::Error::other("sender panicked"))??;
    if sent != size || got != size {
        return Err(io::Error::other(format!(
            "sink moved {got} of {size} bytes (sent {sent})"
        )));
    }
    Ok(Rate { bytes: got, secs })
}

/// SHA-1 rate of one core over `src`: the file is read in 4 MiB blocks and only the
/// hashing is timed, so the figure is the hash's cost per byte, not the page cache's.
pub fn sha1_rate(src: &Path) -> io::Result<(Rate, ChunkHash)> {
    let mut h = ChunkHasher::new();
    let mut hashing = Duration::ZERO;
    let bytes = for_each_block(File::open(src)?, &mut vec![0u8; BIG_BUF], |block| {
        let t = Instant::now();
        h.update(block);
        hashing += t.elapsed();
        Ok(())
    })?;
    let rate = Rate {
        bytes,
        secs: hashing.as_secs_f64(),
    };
    Ok((rate, h.finish()))
}

/// The tmpfs half of the physical ceiling: one plain copy of `src` into `dest` (the same
/// tmpfs as Charlie's chunks), through user space as `cat` does: `read` into one reused
/// 4 MiB buffer, `write` of each block, no `copy_file_range` (which would skip the copy
/// into user space that any receiver of a socket must make). `dest` is removed first, so
/// tmpfs allocates its pages afresh as it does for Charlie's files.
///
/// The clock runs from opening `dest` to its last byte written.
pub fn copy_rate(src: &Path, dest: &Path) -> io::Result<Rate> {
    match std::fs::remove_file(dest) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let input = File::open(src)?;
    let start = Instant::now();
    let mut out = File::create(dest)?;
    let bytes = for_each_block(input, &mut vec![0u8; BIG_BUF], |block| out.write_all(block))?;
    drop(out);
    let secs = start.elapsed().as_secs_f64();
    Ok(Rate { bytes, secs })
}

/// Longest an `iperf3` measurement may take beyond its own duration (start-up, the
/// control exchange, the final report) before it is killed as hung.
pub const IPERF3_GRACE: Duration = Duration::from_secs(10);

/// How long the `iperf3` server may take to listen.
const IPERF3_LISTEN_WAIT: Duration = Duration::from_secs(5);

/// What went wrong measuring loopback TCP with `iperf3`.
#[derive(Debug, thiserror::Error)]
pub enum Iperf3Error {
    /// The program could not be started (not installed: Debian package iperf3).
    #[error("cannot run {program} (Debian package iperf3): {source}")]
    Spawn {
        /// The program run.
        program: String,
        /// Why it could not start.
        source: io::Error,
    },
    /// The server did not listen on its loopback port in time.
    #[error("iperf3 server did not listen on 127.0.0.1:{port} within {IPERF3_LISTEN_WAIT:?}")]
    NotListening {
        /// The port it was told to use.
        port: u16,
    },
    /// The client ran past its duration plus [`IPERF3_GRACE`] and was killed.
    #[error("iperf3 client still running after {secs} s + {IPERF3_GRACE:?}: killed")]
    Hung {
        /// The duration asked for.
        secs: u32,
    },
    /// The client exited with an error.
    #[error("iperf3 client failed (exit code {code:?})")]
    Failed {
        /// Its exit code, if it exited.
        code: Option<i32>,
    },
    /// The client's JSON report could not be read.
    #[error("iperf3 printed no valid JSON report: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON report lacks `end.sum_received` (bytes, seconds).
    #[error("iperf3's report has no end.sum_received bytes and seconds")]
    NoResult,
    /// Waiting for or killing a child failed.
    #[error("managing the iperf3 processes: {0}")]
    Io(#[from] io::Error),
}

/// Bytes and seconds the receiving side counted, from `iperf3 -J`'s report.
pub fn parse_iperf3_json(json: &str) -> Result<Rate, Iperf3Error> {
    let v: serde_json::Value = serde_json::from_str(json)?;
    let sum = &v["end"]["sum_received"];
    match (sum["bytes"].as_u64(), sum["seconds"].as_f64()) {
        (Some(bytes), Some(secs)) if secs > 0.0 => Ok(Rate { bytes, secs }),
        _ => Err(Iperf3Error::NoResult),
    }
}

/// Whether something listens on TCP 127.0.0.1:`port`, read from `/proc/net/tcp` rather
/// than probed: a probe connection would count as a (failed) test to a one-off server.
fn loopback_listening(port: u16) -> io::Result<bool> {
    let want = format!("0100007F:{port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    Ok(table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // local_address, then rem_address, then st; 0A is LISTEN.
        f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&"0A")
    }))
}

/// The loopback half of the physical ceiling, as `iperf3` measures it: a one-off server
/// bound to 127.0.0.1 on a free port, a client bound to 127.0.0.1 sending for `secs`
/// seconds (iperf3's defaults otherwise: one stream, 128 KiB writes), the rate the
/// receiver counted. Both processes are started here and killed by their pid whatever
/// happens; the client is killed as hung after `secs` + [`IPERF3_GRACE`].
pub fn iperf3_rate(program: &str, secs: u32) -> Result<Rate, Iperf3Error> {
    let spawn_err = |source| Iperf3Error::Spawn {
        program: program.to_string(),
        source,
    };
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port();
    let port_s = port.to_string();
    let mut server = Command::new(program)
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", &port_s])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(spawn_err)?;
    let result = (|| {
        let start = Instant::now();
        while !loopback_listening(port)? {
            if start.elapsed() > IPERF3_LISTEN_WAIT || server.try_wait()?.is_some() {
                return Err(Iperf3Error::NotListening { port });
            }
            thread::sleep(Duration::from_millis(10));
        }
        let mut client = Command::new(program)
            .args(["-c", "127.0.0.1", "-B", "127.0.0.1", "-p", &port_s, "-J"])
            .args(["-t", &secs.to_string(), "--connect-timeout", "3000"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(spawn_err)?;
        let mut stdout = client.stdout.take().ok_or(Iperf3Error::NoResult)?;
        let reader = thread::spawn(move || {
            let mut s = String::new();
            stdout.read_to_string(&mut s).map(|_| s)
        });
        let deadline = Instant::now() + Duration::from_secs(secs.into()) + IPERF3_GRACE;
        let status = loop {
            if let Some(status) = client.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = client.kill();
                let _ = client.wait();
                return Err(Iperf3Error::Hung { secs });
            }
            thread::sleep(Duration::from_millis(20));
        };
        let json = reader
            .join()
            .map_err(|_| io::Error::other("iperf3 output reader panicked"))??;
        if !status.success() {
            return Err(Iperf3Error::Failed {
                code: status.code(),
            });
        }
        parse_iperf3_json(&json)
    })();
    let _ = server.kill();
    let _ = server.wait();
    result
}

/// Writes a `file.ini` describing `chunks` made-up chunks (hashes derived from their
/// index) held by the course's two peers with the thirds rule: the tracker only reads the
/// INI files, so its load test needs no chunk on disk.
pub fn synthetic_manifest(path: &Path, chunks: usize) -> Result<(), crate::config::ConfigError> {
    let peers: Vec<String> = crate::chunker::DEFAULT_PEERS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let holders = crate::chunker::assign_peers(chunks, &peers);
    let manifest = FileManifest {
        filename: "synthetic.bin".into(),
        chunks: holders
            .into_iter()
            .enumerate()
            .map(|(i, peers)| ManifestChunk {
                hash: ChunkHash::of(&(i as u64).to_le_bytes()),
                peers,
            })
            .collect(),
    };
    manifest.save(path)
}

/// What a load test saw.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Replies received whole (FILE_INFO or CHUNK).
    pub replies: u64,
    /// Bytes received in those replies.
    pub bytes: u64,
    /// Wall time from the first connection to the last reply.
    pub secs: f64,
    /// Clients that failed (their first error), if any.
    pub errors: Vec<String>,
    /// Peak of the watched process, if one was watched.
    pub watched: Option<Peak>,
}

impl LoadReport {
    /// Replies per second.
    pub fn per_s(&self) -> f64 {
        self.replies as f64 / self.secs.max(1e-9)
    }
    /// Megabytes (10^6 bytes) per second, all clients together.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs.max(1e-9)
    }
}

/// Peak resource use of a process, sampled from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peak {
    /// Most threads seen at once.
    pub threads: u64,
    /// Peak resident set (the kernel's VmHWM), KiB.
    pub hwm_kib: u64,
}

/// Samples a process's thread count every few milliseconds until stopped, and its peak
/// RSS (which the kernel tracks itself) at the end.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<u64>,
    pid: u32,
}

/// How often the watcher samples: threads live for the length of a connection (tens of
/// milliseconds at least under load), so 2 ms sampling sees the peak.
const WATCH_PERIOD: Duration = Duration::from_millis(2);

impl Watcher {
    /// Starts watching `pid`.
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut max = 0;
            while !flag.load(Ordering::Relaxed) {
                if let Ok(s) = proc_status(pid) {
                    max = max.max(s.threads);
                }
                thread::sleep(WATCH_PERIOD);
            }
            max
        });
        Watcher { stop, handle, pid }
    }

    /// Stops sampling and returns the peaks.
    pub fn finish(self) -> Peak {
        self.stop.store(true, Ordering::Relaxed);
        let threads = self.handle.join().unwrap_or(0);
        let hwm_kib = proc_status(self.pid).map(|s| s.hwm_kib).unwrap_or(0);
        Peak { threads, hwm_kib }
    }
}

/// Runs `clients` threads against one server, each on its own connection calling
/// `exchange` until it returns `Ok(None)` (done), an error, or `deadline` passes.
/// `exchange(client, n)` performs the client's `n`-th request and returns the bytes of
/// the reply.
fn run_clients<F>(
    addr: SocketAddr,
    clients: usize,
    deadline: Duration,
    watch: Option<u32>,
    exchange: F,
) -> LoadReport
where
    F: Fn(&mut TcpStream, usize, u64) -> io::Result<Option<u64>> + Sync,
{
    let watcher = watch.map(Watcher::start);
    let start = Instant::now();
    let end = start + deadline;
    let results: Vec<(u64, u64, Option<String>)> = thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let exchange = &exchange;
                s.spawn(move || {
                    let (mut replies, mut bytes) = (0u64, 0u64);
                    let mut conn = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                        Ok(c) => c,
                        Err(e) => return (0, 0, Some(format!("client {c}: connect: {e}"))),
                    };
                    let _ = conn.set_nodelay(true);
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                    while Instant::now() < end {
                        match exchange(&mut conn, c, replies) {
                            Ok(Some(n)) => {
                                replies += 1;
                                bytes += n;
                            }
                            Ok(None) => break,
                            Err(e) => {
                                return (replies, bytes, Some(format!("client {c}: {e}")));
                            }
                        }
                    }
                    (replies, bytes, None)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((0, 0, Some("client panicked".into()))))
            .collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let mut report = LoadReport {
        secs,
        watched: watcher.map(Watcher::finish),
        ..Default::default()
    };
    for (r, b, e) in results {
        report.replies += r;
        report.bytes += b;
        report.errors.extend(e);
    }
    report
}

/// `clients` concurrent clients, each on one connection, each asking GET_FILE_INFO up to
/// `requests` times (stop-and-wait) and reading every reply whole; the first reply of
/// client 0 is decoded to check it really is a FILE_INFO of `expect_chunks` chunks.
pub fn tracker_load(
    addr: SocketAddr,
    clients: usize,
    requests: u64,
    deadline: Duration,
    expect_chunks: Option<usize>,
    watch: Option<u32>,
) -> LoadReport {
    let req = Message::GetFileInfo
        .encode()
        .expect("GET_FILE_INFO encodes");
    run_clients(addr, clients, deadline, watch, |conn, client, n| {
        if n >= requests {
            return Ok(None);
        }
        conn.write_all(&req)?;
        if client == 0 && n == 0 {
            let msg = wire::read_message(conn, 64 << 20, Tolerance::default())
                .map_err(|e| io::Error::other(e.to_string()))?;
            let Message::FileInfo(fi) = msg else {
                return Err(io::Error::other(format!("got {}", msg.msg_type())));
            };
            if let Some(want) = expect_chunks
                && fi.chunks.len() != want
            {
                return Err(io::Error::other(format!(
                    "FILE_INFO has {} chunks, expected {want}",
                    fi.chunks.len()
                )));
            }
            let len = wire::Message::FileInfo(fi).encode().map_or(0, |b| b.len());
            return Ok(Some(len as u64));
        }
        let header = wire::read_header(conn).map_err(|e| io::Error::other(e.to_string()))?;
        if header.msg_type().ok() != Some(MsgType::FileInfo) {
            return Err(io::Error::other("reply is not a FILE_INFO"));
        }
        let body = header
            .body_len(64 << 20)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let got = io::copy(&mut (&mut *conn).take(body as u64), &mut io::sink())?;
        if got != body as u64 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(Some((wire::HEADER_LEN + body) as u64))
    })
}

/// `clients` concurrent downloaders against one peer, each on one connection, each
/// fetching `per_client` chunks stop-and-wait (client `c` starts `c` chunks into the list
/// so that they do not all ask for the same file at once), reading into one reused
/// buffer per client. The content is not hashed: this measures the peer.
pub fn peer_load(
    addr: SocketAddr,
    hashes: &[ChunkHash],
    clients: usize,
    per_client: u64,
    deadline: Duration,
    watch: Option<u32>,
) -> LoadReport {
    if hashes.is_empty() {
        return LoadReport {
            errors: vec!["no chunks to ask for".into()],
            ..Default::default()
        };
    }
    let bufs: Vec<std::sync::Mutex<Vec<u8>>> = (0..clients)
        .map(|_| std::sync::Mutex::new(Vec::new()))
        .collect();
    run_clients(addr, clients, deadline, watch, |conn, client, n| {
        if n >= per_client {
            return Ok(None);
        }
        let hash = hashes[(client + n as usize) % hashes.len()];
        let req = Message::GetChunk(hash).encode().expect("GET_CHUNK encodes");
        conn.write_all(&req)?;
        let header = wire::read_header(conn).map_err(|e| io::Error::other(e.to_string()))?;
        let mut buf = bufs[client].lock().unwrap_or_else(|e| e.into_inner());
        match wire::read_chunk_reply(conn, &header, 64 << 20, &mut buf) {
            Ok(ChunkReply::Chunk(h)) if h == hash => Ok(Some(buf.len() as u64)),
            Ok(other) => Err(io::Error::other(format!("asked {hash}, got {other:?}"))),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    })
}

/// The UDP port of tracker discovery, fixed by the course statement.
pub const DISCOVERY_PORT: u16 = 9000;

/// What the step-3 discovery probe found.
#[derive(Debug, Clone)]
pub enum Discovery {
    /// A tracker answered with TRACKER_INFO after this long.
    Answered {
        /// From DISCOVER_TRACKER sent to TRACKER_INFO received.
        latency: Duration,
        /// What the tracker said about itself.
        info: wire::TrackerInfo,
    },
    /// Nothing answered: the measurement is not available, and says why.
    NotAvailable(String),
}

/// Step-3 discovery latency, measured on the wire: sends DISCOVER_TRACKER to `target`
/// (the script uses 127.0.0.1:9000, loopback only) and times the TRACKER_INFO reply.
/// It measures whatever tracker implements the course's UDP side, with no dependence on
/// how it is written. A reply naming another TCP port than `expect_tcp` is someone else's
/// tracker and is not counted.
pub fn discover(
    target: SocketAddrV4,
    expect_tcp: Option<SocketAddrV4>,
    wait: Duration,
) -> io::Result<Discovery> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let req = Message::DiscoverTracker
        .encode()
        .expect("DISCOVER_TRACKER encodes");
    let start = Instant::now();
    sock.send_to(&req, target)?;
    let mut buf = [0u8; 1024];
    // Bounded by `wait`: one request, replies read until it passes.
    loop {
        let left = wait.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Ok(Discovery::NotAvailable(format!(
                "no TRACKER_INFO from {target} within {} ms: the tracker under test does \
                 not answer DISCOVER_TRACKER (step 3 is not in this build)",
                wait.as_millis()
            )));
        }
        sock.set_read_timeout(Some(left))?;
        let n = match sock.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(e) if no_datagram_yet(&e) || e.kind() == io::ErrorKind::ConnectionRefused => {
                // Interrupted (a signal, EINTR): wait again, as charlie's discovery does.
                // ConnectionRefused: ICMP port unreachable, nobody listens on the port.
                if e.kind() == io::ErrorKind::ConnectionRefused {
                    return Ok(Discovery::NotAvailable(format!(
                        "nothing listens on UDP {target}: the tracker under test does not \
                         answer DISCOVER_TRACKER (step 3 is not in this build)"
                    )));
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let latency = start.elapsed();
        let mut r = &buf[..n];
        if let Ok(Message::TrackerInfo(info)) =
            wire::read_message(&mut r, buf.len(), Tolerance::default())
            && expect_tcp.is_none_or(|a| a == info.addr)
        {
            return Ok(Discovery::Answered { latency, info });
        }
    }
}

/// A child process's resource use, from `wait4(2)`.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Wall time from spawn to exit.
    pub wall: f64,
    /// User CPU seconds.
    pub user: f64,
    /// System CPU seconds.
    pub sys: f64,
    /// Peak resident set size, KiB (`ru_maxrss`).
    pub maxrss_kib: u64,
    /// Exit code (128 + signal if killed).
    pub code: i32,
}

/// Runs `argv` to completion (its output passes through) and returns its resource use,
/// read with `wait4(2)` so that only this child is counted.
pub fn exec(argv: &[String]) -> io::Result<Usage> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::other("no command"))?;
    let start = Instant::now();
    let child = Command::new(prog).args(args).spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of a plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        // SAFETY: `pid` is our own child, not yet reaped (`child` is never waited on);
        // `status` and `ru` are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let wall = start.elapsed().as_secs_f64();
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok(Usage {
        wall,
        user: tv(ru.ru_utime),
        sys: tv(ru.ru_stime),
        maxrss_kib: ru.ru_maxrss as u64,
        code,
    })
}

/// A running process's counters, from `/proc/<pid>/stat` and `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStatus {
    /// User + system CPU seconds so far (all threads).
    pub cpu: f64,
    /// Peak resident set so far (VmHWM), KiB.
    pub hwm_kib: u64,
    /// Resident set now (VmRSS), KiB.
    pub rss_kib: u64,
    /// Threads now.
    pub threads: u64,
}

/// Reads a process's CPU time, peak and current RSS, and thread count.
pub fn proc_status(pid: u32) -> io::Result<ProcStatus> {
    let mut st = ProcStatus::default();
    let status = File::open(format!("/proc/{pid}/status"))?;
    for line in BufReader::new(status).lines() {
        let line = line?;
        let mut it = line.split_whitespace();
        let (Some(key), Some(val)) = (it.next(), it.next()) else {
            continue;
        };
        let val: u64 = val.parse().unwrap_or(0);
        match key {
            "VmHWM:" => st.hwm_kib = val,
            "VmRSS:" => st.rss_kib = val,
            "Threads:" => st.threads = val,
            _ => {}
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after ')'.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    st.cpu = (ticks(11) + ticks(12)) / hz;
    Ok(st)
}

/// Resets a process's peak RSS (VmHWM) to its current RSS, so that the next peak read is
/// the peak of what happens from now on (`/proc/<pid>/clear_refs`, value 5).
pub fn reset_peak(pid: u32) -> io::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

/// One result line of the script: its kind (first word) and its `key=value` fields.
#[derive(Debug, Clone)]
pub struct Record {
    /// The first word: `charlie`, `big`, `tracker-load`, ...
    pub kind: String,
    /// The fields, in order.
    pub fields: Vec<(String, String)>,
}

impl Record {
    /// Parses `kind key=value key="quoted value" ...`; `None` for a blank line.
    pub fn parse(line: &str) -> Option<Record> {
        let line = line.trim();
        let (kind, mut rest) = line.split_once(' ').unwrap_or((line, ""));
        if kind.is_empty() || kind.starts_with('#') {
            return None;
        }
        let mut fields = Vec::new();
        while let Some((key, after)) = rest.trim_start().split_once('=') {
            let (val, next) = if let Some(q) = after.strip_prefix('"') {
                let end = q.find('"').unwrap_or(q.len());
                (&q[..end], q.get(end + 1..).unwrap_or(""))
            } else {
                after.split_once(' ').unwrap_or((after, ""))
            };
            fields.push((key.to_string(), val.to_string()));
            rest = next;
        }
        Some(Record {
            kind: kind.to_string(),
            fields,
        })
    }

    /// A field as text.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A field as a number.
    pub fn num(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(|v| v.parse().ok())
    }
}

/// Median, min and max of a set of measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The median (mean of the middle two for an even count).
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// How many.
    pub n: usize,
}

impl Spread {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }

    /// `median (min–max)` with `prec` decimals; just the value when all are equal.
    pub fn show(&self, prec: usize) -> String {
        if self.n == 1 || self.min == self.max {
            format!("{:.prec$}", self.median)
        } else {
            format!(
                "{:.prec$} ({:.prec$}–{:.prec$})",
                self.median, self.min, self.max
            )
        }
    }
}

fn cell(records: &[&Record], prec: usize, f: impl Fn(&Record) -> Option<f64>) -> String {
    let v: Vec<f64> = records.iter().filter_map(|r| f(r)).collect();
    Spread::of(&v).map_or("–".into(), |s| s.show(prec))
}

fn mib(kib: Option<f64>) -> Option<f64> {
    kib.map(|k| k / 1024.0)
}

fn human_size(bytes: f64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if bytes >= GIB && bytes % GIB == 0.0 {
        format!("{} GiB", bytes / GIB)
    } else if bytes >= MIB && bytes % MIB == 0.0 {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= MIB {
        format!("{:.2} MiB", bytes / MIB)
    } else if bytes >= 1024.0 && bytes % 1024.0 == 0.0 {
        format!("{} KiB", bytes / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// A pair's spread of ratios is wide when (max − min) / median exceeds this: the script
/// then adds pairs (up to its bound). 0.15 is about what two quiet runs differ by on this
/// kind of shared machine; beyond it, another build or test was running meanwhile.
pub const WIDE_SPREAD: f64 = 0.15;

impl Spread {
    /// (max − min) / median: 0 for one value.
    pub fn relative_range(&self) -> f64 {
        (self.max - self.min) / self.median.abs().max(1e-12)
    }

    /// Whether the spread is wider than [`WIDE_SPREAD`].
    pub fn is_wide(&self) -> bool {
        self.relative_range() > WIDE_SPREAD
    }
}

/// A pair's (or a round's) physical ceiling, MB/s: the lower of loopback TCP as `iperf3`
/// measured it and the plain copy into the same tmpfs, both measured right before.
pub fn ceiling(r: &Record) -> Option<f64> {
    Some(r.num("iperf_mbps")?.min(r.num("copy_mbps")?))
}

fn mbps_of(r: &Record, wall_key: &str) -> Option<f64> {
    Some(r.num("bytes")? / 1e6 / r.num(wall_key)?)
}

/// Charlie's ratio to the ceiling in each pair of chunk size `chunk` (bytes), in order.
pub fn pair_ratios(text: &str, chunk: u64) -> Vec<f64> {
    text.lines()
        .filter_map(Record::parse)
        .filter(|r| r.kind == "charlie" && r.num("chunk") == Some(chunk as f64))
        .filter_map(|r| Some(mbps_of(&r, "wall")? / ceiling(&r)?))
        .collect()
}

/// The implementations compared in the anchor table, in the table's order: (charlie,
/// alice + bob + tracker).
const ANCHORS: [(&str, &str); 4] = [
    ("swarmlet", "swarmlet"),
    ("course.py", "swarmlet"),
    ("swarmlet", "course.py"),
    ("course.py", "course.py"),
];

/// Turns the script's result lines into the markdown of `docs/BENCHMARKS.md`'s measured
/// section: Charlie against the physical ceiling, CPU and memory, the course
/// implementations side by side, memory against file size, and the load tests.
///
/// Ratios are computed per pair (a ceiling measurement and the Charlie run right after
/// it, or one round of the anchor runs) and then summed up as the median of those pair
/// ratios (min–max): the machine is shared, and its noise then hits both sides of each
/// ratio alike. A pair whose program beat its ceiling is flagged: that ceiling was not one.
pub fn report(text: &str) -> String {
    use std::fmt::Write as _;
    let records: Vec<Record> = text.lines().filter_map(Record::parse).collect();
    let of = |kind: &str| -> Vec<&Record> { records.iter().filter(|r| r.kind == kind).collect() };
    let mut out = String::new();
    if let Some(m) = of("machine").first() {
        let g = |k| m.get(k).unwrap_or("?");
        let _ = writeln!(
            out,
            "Run of {} on {}: {} cores ({}), Linux {}, {} GiB RAM, shared with other \
             sessions' builds and tests; load average at start {}. File of {} bytes, \
             {} to {} pairs per chunk size, root on {}; {}; {}, {}.\n",
            g("date"),
            g("host"),
            g("cores"),
            g("cpu"),
            g("kernel"),
            g("mem_gib"),
            g("load"),
            g("size"),
            g("repeat"),
            g("max_repeat"),
            g("fs"),
            g("build"),
            g("iperf3"),
            g("python"),
        );
    }
    let runs = of("charlie");
    let mut chunks: Vec<f64> = runs.iter().filter_map(|r| r.num("chunk")).collect();
    chunks.sort_by(f64::total_cmp);
    chunks.dedup();
    let by_chunk = |c: f64| -> Vec<&Record> {
        runs.iter()
            .copied()
            .filter(|r| r.num("chunk") == Some(c))
            .collect()
    };
    let mbps = |r: &Record| mbps_of(r, "wall");
    let nm_mbps = |r: &Record| mbps_of(r, "nm_wall");
    let ratio = |r: &Record| Some(mbps(r)? / ceiling(r)?);
    let nm_ratio = |r: &Record| Some(nm_mbps(r)? / ceiling(r)?);
    out.push_str(
        "### Charlie against the physical ceiling, pair by pair\n\n\
         | chunk | pairs | charlie MB/s | iperf3 loopback MB/s | copy into tmpfs MB/s | \
         ceiling MB/s (the lower) | **charlie / ceiling** | charlie --no-merge MB/s | \
         --no-merge / ceiling | after the download, s | SHA-1 one core MB/s |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut notes = Vec::new();
    for &c in &chunks {
        let rs = by_chunk(c);
        let beaten = rs
            .iter()
            .filter(|r| ratio(r).is_some_and(|x| x > 1.0) || nm_ratio(r).is_some_and(|x| x > 1.0))
            .count();
        let by_copy = rs
            .iter()
            .filter(|r| r.num("copy_mbps") <= r.num("iperf_mbps"))
            .count();
        let flag = if beaten > 0 {
            notes.push(format!(
                "⚠ {}: charlie or charlie --no-merge beat the measured ceiling in {beaten} of \
                 {} pairs; in those pairs that ceiling was not a ceiling, and their ratios \
                 (above 1) say so rather than hide it.",
                human_size(c),
                rs.len()
            ));
            " ⚠"
        } else {
            ""
        };
        let lower = match (by_copy, rs.len() - by_copy) {
            (_, 0) => "copy".to_string(),
            (0, _) => "iperf3".to_string(),
            (k, i) => format!("copy {k}, iperf3 {i}"),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} ({lower}){flag} | **{}** | {} | {} | {} | {} |",
            human_size(c),
            rs.len(),
            cell(&rs, 0, mbps),
            cell(&rs, 0, |r| r.num("iperf_mbps")),
            cell(&rs, 0, |r| r.num("copy_mbps")),
            cell(&rs, 0, ceiling),
            cell(&rs, 2, ratio),
            cell(&rs, 0, nm_mbps),
            cell(&rs, 2, nm_ratio),
            cell(&rs, 2, |r| Some(r.num("wall")? - r.num("dl")?)),
            cell(&rs, 0, |r| r.num("sha1_mbps")),
        );
    }
    for n in notes {
        let _ = writeln!(out, "\n{n}");
    }
    out.push_str(
        "\n### CPU and memory during those runs\n\n\
         | chunk | charlie CPU s (user+sys) | alice CPU s | bob CPU s | charlie peak RSS MiB | \
         alice peak RSS MiB | bob peak RSS MiB |\n|---|---|---|---|---|---|---|\n",
    );
    for &c in &chunks {
        let rs = by_chunk(c);
        let peers: Vec<&Record> = of("peers")
            .into_iter()
            .filter(|r| r.num("chunk") == Some(c))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            human_size(c),
            cell(&rs, 2, |r| Some(r.num("user")? + r.num("sys")?)),
            cell(&rs, 2, |r| r.num("alice_cpu")),
            cell(&rs, 2, |r| r.num("bob_cpu")),
            cell(&rs, 1, |r| mib(r.num("maxrss_kib"))),
            cell(&peers, 1, |r| mib(r.num("alice_hwm_kib"))),
            cell(&peers, 1, |r| mib(r.num("bob_hwm_kib"))),
        );
    }
    let anchors = of("anchor");
    if !anchors.is_empty() {
        let rounds: Vec<f64> = {
            let mut v: Vec<f64> = anchors.iter().filter_map(|r| r.num("rep")).collect();
            v.sort_by(f64::total_cmp);
            v.dedup();
            v
        };
        let _ = writeln!(
            out,
            "\n### The course implementations, same file, same run\n\n\
             {}; each round measures the ceiling, then runs the four combinations \
             below one after the other on the same {} file in {} chunks. **swarmlet / this** \
             is the all-swarmlet run's speed over this row's, per round.\n\n\
             | charlie | alice, bob, tracker | MB/s | / ceiling | **swarmlet / this** | \
             charlie peak RSS MiB | charlie CPU s |\n|---|---|---|---|---|---|---|",
            match rounds.len() {
                1 => "One round".to_string(),
                n => format!("{n} rounds"),
            },
            human_size(anchors[0].num("bytes").unwrap_or(0.0)),
            human_size(anchors[0].num("chunk").unwrap_or(0.0)),
        );
        let find = |rep: f64, client: &str, servers: &str| {
            anchors.iter().copied().find(|r| {
                r.num("rep") == Some(rep)
                    && r.get("client") == Some(client)
                    && r.get("servers") == Some(servers)
            })
        };
        for (client, servers) in ANCHORS {
            let rs: Vec<&Record> = rounds
                .iter()
                .filter_map(|&rep| find(rep, client, servers))
                .collect();
            if rs.is_empty() {
                continue;
            }
            let vs_ours = |r: &Record| {
                let ours = find(r.num("rep")?, "swarmlet", "swarmlet")?;
                Some(mbps(ours)? / mbps(r)?)
            };
            let _ = writeln!(
                out,
                "| {client} | {servers} | {} | {} | **{}** | {} | {} |",
                cell(&rs, 0, mbps),
                cell(&rs, 2, ratio),
                cell(&rs, 2, vs_ours),
                cell(&rs, 1, |r| mib(r.num("maxrss_kib"))),
                cell(&rs, 2, |r| Some(r.num("user")? + r.num("sys")?)),
            );
        }
    }
    let big = of("big");
    if !big.is_empty() {
        out.push_str(
            "\n### Charlie's peak RSS against file size and chunk count (one run each)\n\n\
             | file | chunk | chunks | charlie wall s | charlie MB/s | charlie peak RSS MiB |\n\
             |---|---|---|---|---|---|\n",
        );
        for r in big {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} | {:.0} | {:.1} |",
                human_size(r.num("bytes").unwrap_or(0.0)),
                human_size(r.num("chunk").unwrap_or(0.0)),
                r.get("chunks").unwrap_or("?"),
                r.num("wall").unwrap_or(f64::NAN),
                mbps(r).unwrap_or(f64::NAN),
                mib(r.num("maxrss_kib")).unwrap_or(f64::NAN),
            );
        }
    }
    out.push_str("\n### Servers under load, and discovery\n\n| test | result |\n|---|---|\n");
    for r in of("tracker-load") {
        let _ = writeln!(
            out,
            "| tracker: {} clients × GET_FILE_INFO, {}-chunk file ({:.2} MB per reply) | \
             **{:.0} replies/s** ({:.0} MB/s); peak {} threads, peak RSS {:.1} MiB |",
            r.get("clients").unwrap_or("?"),
            r.get("chunks").unwrap_or("?"),
            r.num("bytes").unwrap_or(0.0) / r.num("replies").unwrap_or(1.0).max(1.0) / 1e6,
            r.num("per_s").unwrap_or(f64::NAN),
            r.num("mbps").unwrap_or(f64::NAN),
            r.get("peak_threads").unwrap_or("?"),
            mib(r.num("hwm_kib")).unwrap_or(f64::NAN),
        );
    }
    for r in of("peer-load") {
        let idle = r.num("idle_hwm_kib").unwrap_or(0.0);
        let hwm = r.num("hwm_kib").unwrap_or(0.0);
        let clients = r.num("clients").unwrap_or(1.0).max(1.0);
        let _ = writeln!(
            out,
            "| peer: {} concurrent downloaders, {} chunks, stop-and-wait | \
             **{:.0} MB/s** aggregate; peak {} threads; peak RSS {:.1} MiB \
             (idle {:.1} MiB, {:.0} KiB per connection) |",
            r.get("clients").unwrap_or("?"),
            human_size(r.num("chunk").unwrap_or(0.0)),
            r.num("mbps").unwrap_or(f64::NAN),
            r.get("peak_threads").unwrap_or("?"),
            hwm / 1024.0,
            idle / 1024.0,
            (hwm - idle).max(0.0) / clients,
        );
    }
    let probes = of("discover");
    if !probes.is_empty() {
        let answered: Vec<&Record> = probes
            .iter()
            .copied()
            .filter(|r| r.get("available") == Some("1"))
            .collect();
        let line = if answered.is_empty() {
            format!("not available: {}", probes[0].get("why").unwrap_or("?"))
        } else {
            format!(
                "**{} ms** from DISCOVER_TRACKER sent to TRACKER_INFO received \
                 ({} of {} probes answered)",
                cell(&answered, 3, |r| r.num("ms")),
                answered.len(),
                probes.len()
            )
        };
        let _ = writeln!(out, "| step-3 discovery, UDP on loopback | {line} |");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_files_are_sized_and_seeded() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
        make_file(&a, 10_000_001, 1).unwrap();
        make_file(&b, 10_000_001, 1).unwrap();
        make_file(&c, 10_000_001, 2).unwrap();
        let (a, b, c) = (
            std::fs::read(a).unwrap(),
            std::fs::read(b).unwrap(),
            std::fs::read(c).unwrap(),
        );
        assert_eq!(a.len(), 10_000_001);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // No 512 KiB chunk repeats.
        let hashes: std::collections::HashSet<ChunkHash> =
            a.chunks(512 * 1024).map(ChunkHash::of).collect();
        assert_eq!(hashes.len(), a.len().div_ceil(512 * 1024));
    }

    #[test]
    fn sink_and_sha1_move_every_byte() {
        let d = tempfile::tempdir().unwrap();
        let (src, dest) = (d.path().join("src"), d.path().join("dest"));
        make_file(&src, 3_000_003, 7).unwrap();
        let r = sink(&src, &dest).unwrap();
        assert_eq!(r.bytes, 3_000_003);
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dest).unwrap());
        let (rate, h) = sha1_rate(&src).unwrap();
        assert_eq!(rate.bytes, 3_000_003);
        assert_eq!(h, ChunkHash::of(&std::fs::read(&src).unwrap()));
    }

    #[test]
    fn exec_and_proc_status_report_this_machine() {
        let u = exec(&["true".to_string()]).unwrap();
        assert_eq!(u.code, 0);
        let u = exec(&["sh".into(), "-c".into(), "exit 3".into()]).unwrap();
        assert_eq!(u.code, 3);
        let me = proc_status(std::process::id()).unwrap();
        assert!(me.threads >= 1 && me.hwm_kib > 0 && me.rss_kib > 0);
    }

    #[test]
    fn records_and_spreads() {
        let r = Record::parse(r#"discover available=0 why="no tracker here" ms=1.5"#).unwrap();
        assert_eq!(r.kind, "discover");
        assert_eq!(r.get("why"), Some("no tracker here"));
        assert_eq!(r.num("ms"), Some(1.5));
        assert!(Record::parse("  ").is_none());
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[1.0, 4.0]).unwrap().median, 2.5);
        assert!(Spread::of(&[]).is_none());
        // Pair 1: 1000 MB/s against min(2000, 3000); pair 2: 500 MB/s against min(5000, 1000).
        let text = "charlie chunk=524288 rep=1 bytes=1000000000 wall=1 dl=0.5 iperf_mbps=2000 copy_mbps=3000 nm_wall=0.8\n\
                    charlie chunk=524288 rep=2 bytes=1000000000 wall=2 dl=0.5 iperf_mbps=5000 copy_mbps=1000 nm_wall=0.9\n";
        assert_eq!(pair_ratios(text, 524288), vec![0.5, 0.5]);
        assert!(pair_ratios(text, 1024).is_empty());
        let md = report(text);
        assert!(
            md.contains(
                "| 512 KiB | 2 | 750 (500–1000) | 3500 (2000–5000) | 2000 (1000–3000) | \
                 1500 (1000–2000) (copy 1, iperf3 1) ⚠ | **0.50** |"
            ),
            "{md}"
        );
        // --no-merge at 1111 MB/s beat pair 2's ceiling of 1000 MB/s: flagged.
        assert!(
            md.contains("beat the measured ceiling in 1 of 2 pairs"),
            "{md}"
        );
        let s = Spread::of(&[0.5, 0.6]).unwrap();
        assert!(s.is_wide() && !Spread::of(&[0.5, 0.52]).unwrap().is_wide());
    }

    #[test]
    fn anchors_compare_per_round() {
        let text = "anchor rep=1 chunk=524288 bytes=1000000000 client=swarmlet servers=swarmlet wall=1 iperf_mbps=4000 copy_mbps=2000\n\
                    anchor rep=1 chunk=524288 bytes=1000000000 client=course.py servers=course.py wall=5 iperf_mbps=4000 copy_mbps=2000\n\
                    anchor rep=2 chunk=524288 bytes=1000000000 client=swarmlet servers=swarmlet wall=2 iperf_mbps=4000 copy_mbps=2000\n\
                    anchor rep=2 chunk=524288 bytes=1000000000 client=course.py servers=course.py wall=5 iperf_mbps=4000 copy_mbps=2000\n";
        let md = report(text);
        assert!(
            md.contains("| course.py | course.py | 200 | 0.10 | **3.75 (2.50–5.00)** |"),
            "{md}"
        );
        assert!(
            md.contains("| swarmlet | swarmlet | 750 (500–1000) | 0.38 (0.25–0.50) | **1.00** |"),
            "{md}"
        );
    }

    #[test]
    fn plain_copy_moves_every_byte() {
        let d = tempfile::tempdir().unwrap();
        let (src, dest) = (d.path().join("src"), d.path().join("dest"));
        make_file(&src, 5_000_005, 3).unwrap();
        std::fs::write(&dest, b"stale").unwrap();
        let r = copy_rate(&src, &dest).unwrap();
        assert_eq!(r.bytes, 5_000_005);
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dest).unwrap());
    }

    #[test]
    fn iperf3_reports_are_read_from_the_receiver() {
        let json = r#"{"start": {}, "end": {"sum_sent": {"bytes": 9, "seconds": 1.0},
            "sum_received": {"bytes": 6000000000, "seconds": 3.0}}}"#;
        let r = parse_iperf3_json(json).unwrap();
        assert_eq!((r.bytes, r.secs), (6_000_000_000, 3.0));
        assert_eq!(r.mb_per_s(), 2000.0);
        assert!(matches!(
            parse_iperf3_json(r#"{"error": "x"}"#),
            Err(Iperf3Error::NoResult)
        ));
        assert!(matches!(
            parse_iperf3_json("not json"),
            Err(Iperf3Error::Json(_))
        ));
    }

    #[test]
    fn discovery_without_a_tracker_is_not_available() {
        // A port we just had and released: nothing listens there.
        let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let got = discover(target, None, Duration::from_millis(300)).unwrap();
        assert!(matches!(got, Discovery::NotAvailable(_)), "{got:?}");
    }
}
