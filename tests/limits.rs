//! Resource limits of the real servers under load: a flood of 1,000 connections (far over
//! the 128-connection cap), clients trickling one byte a second, and clients that vanish
//! while a chunk is being sent. Threads and memory are read from `/proc/<pid>/status`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use swarmlet::config::PeersConfig;
use swarmlet::course::tracker::file_info;
use swarmlet::wire::Message;

/// The servers' default connection cap (`--max-connections`), which the flood exceeds.
const MAX_CONNECTIONS: usize = 128;
const FLOOD: usize = 1000;

/// The flood tests open thousands of sockets and load both cores: one at a time.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Samples a process's thread count and resident memory every millisecond until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<(u64, u64)>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = thread::spawn({
            let stop = stop.clone();
            move || {
                let (mut threads, mut rss) = (0, 0);
                while !stop.load(Ordering::Relaxed) {
                    threads = threads.max(proc_status(pid, "Threads").unwrap_or(0));
                    rss = rss.max(proc_status(pid, "VmRSS").unwrap_or(0));
                    thread::sleep(Duration::from_millis(1));
                }
                (threads, rss)
            }
        });
        Sampler { stop, handle }
    }

    /// Peak threads and peak resident KiB seen.
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// Whether a connection is served: a normal request gets its normal reply. A refused
/// connection was closed by the server, so the read finds EOF or a reset.
fn served(s: &mut TcpStream, req: &[u8], reply: &[u8]) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if s.write_all(req).is_err() {
        return false;
    }
    let mut buf = vec![0u8; reply.len()];
    match s.read_exact(&mut buf) {
        Ok(()) => {
            assert!(buf == reply, "a served connection got a wrong reply");
            true
        }
        Err(e) => {
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
                ),
                "a refused connection must be closed, not {e}"
            );
            false
        }
    }
}

/// Opens `FLOOD` connections at once from 4 threads and returns them all, still open.
fn open_flood(addr: SocketAddrV4) -> Vec<TcpStream> {
    let per = FLOOD / 4;
    let handles: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                (0..per)
                    .map(|_| {
                        TcpStream::connect_timeout(&addr.into(), Duration::from_secs(30))
                            .expect("connect during the flood")
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

/// Floods the server `label` of `sys` with 1,000 simultaneous connections.
fn flood(sys: &mut System, label: &str, req: &[u8], reply: &[u8]) {
    raise_fd_limit(4 * FLOOD as u64);
    let pid = sys.proc(label).pid();
    let addr = sys.addr(label);
    // The start-up probe's connection thread may still be ending.
    assert_eq!(wait_threads(pid, 1, Duration::from_secs(5)), 1);
    let rss_before = proc_status(pid, "VmRSS").unwrap();
    let sampler = Sampler::start(pid);
    let t = Instant::now();
    let mut conns = open_flood(addr);
    let opened = t.elapsed();
    // The listen backlog holds the whole burst: no SYN is dropped, so no client waits
    // for its kernel's retry (1 s at the earliest) to be served or refused.
    assert!(
        opened < Duration::from_millis(900),
        "{label}: {FLOOD} connects took {opened:?}"
    );
    // Every connection asks once: the first 128 accepted are served and the rest were
    // closed at once.
    let ok = conns
        .iter_mut()
        .map(|s| served(s, req, reply))
        .filter(|&ok| ok)
        .count();
    // While the 128 served connections stay open, the server is full: one more client is
    // turned away, cleanly.
    let mut extra = TcpStream::connect(addr).unwrap();
    assert!(
        !served(&mut extra, req, reply),
        "{label}: over the cap but served"
    );
    let (peak_threads, peak_rss) = sampler.finish();
    let hwm = proc_status(pid, "VmHWM").unwrap();
    drop(conns);
    drop(extra);
    // Every connection thread ends once its client is gone.
    let left = wait_threads(pid, 1, Duration::from_secs(5));
    eprintln!(
        "{label}: {FLOOD} connections opened in {opened:?}: {ok} served, {} refused; \
         peak threads {peak_threads}; RSS {rss_before} KiB before, peak {peak_rss} KiB \
         (VmHWM {hwm} KiB); {left} thread(s) after",
        FLOOD - ok
    );
    assert_eq!(ok, MAX_CONNECTIONS, "{label}: served {ok} of {FLOOD}");
    assert!(
        peak_threads <= MAX_CONNECTIONS as u64 + 1,
        "{label}: {peak_threads} threads"
    );
    assert!(hwm < 64 * 1024, "{label}: peak RSS {hwm} KiB");
    assert_eq!(left, 1, "{label}: connection threads left after the flood");
    // And a normal client is served afterwards.
    let mut s = TcpStream::connect(addr).unwrap();
    assert!(
        served(&mut s, req, reply),
        "{label}: not serving after the flood"
    );
}

#[test]
fn a_flood_of_1000_connections_is_capped_and_the_servers_recover() {
    let _g = heavy();
    let mut sys = System::new(64 * 1024, 16 * 1024);
    // A long idle timeout keeps the 128 served connections open for the whole flood.
    sys.start("alice", "alice", &["--idle-timeout-ms", "60000"]);
    sys.start("tracker", "tracker", &["--idle-timeout-ms", "60000"]);
    let m = sys.manifest();
    let h0 = m.chunks[0].hash;
    let data = std::fs::read(sys.chunk_dir("alice").join(h0.file_name())).unwrap();
    let chunk = Message::Chunk { hash: h0, data }.encode().unwrap();
    flood(
        &mut sys,
        "alice",
        &Message::GetChunk(h0).encode().unwrap(),
        &chunk,
    );
    let peers = PeersConfig::load(&sys.root().join("config/peers.ini")).unwrap();
    let fi = Message::FileInfo(file_info(&m, &peers).unwrap())
        .encode()
        .unwrap();
    flood(
        &mut sys,
        "tracker",
        &Message::GetFileInfo.encode().unwrap(),
        &fi,
    );
}

#[test]
fn slow_clients_are_cut_off_by_the_request_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(1500);
    let mut sys = System::new(64 * 1024, 16 * 1024);
    sys.start("alice", "alice", &["--request-timeout-ms", "1500"]);
    sys.start("tracker", "tracker", &["--request-timeout-ms", "1500"]);
    for label in ["alice", "tracker"] {
        let addr = sys.addr(label);
        let pid = sys.proc(label).pid();
        let req = match label {
            "alice" => Message::GetChunk(sys.manifest().chunks[0].hash),
            _ => Message::GetFileInfo,
        }
        .encode()
        .unwrap();
        // Ten clients at once, each sending its request one byte per second.
        let clients: Vec<_> = (0..10)
            .map(|_| {
                let req = req.clone();
                thread::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    // The one-second pause between bytes is a read that would see the close.
                    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                    let start = Instant::now();
                    for (i, b) in req.iter().enumerate() {
                        if s.write_all(&[*b]).is_err() {
                            return (i, start.elapsed());
                        }
                        let mut buf = [0u8; 16];
                        match s.read(&mut buf) {
                            Ok(0) => return (i + 1, start.elapsed()),
                            Ok(n) => panic!("a slow client got {n} bytes of reply"),
                            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                                return (i + 1, start.elapsed());
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                            Err(e) if e.kind() == ErrorKind::TimedOut => {}
                            Err(e) => panic!("slow client: {e}"),
                        }
                    }
                    panic!("the whole request went through at one byte a second");
                })
            })
            .collect();
        for c in clients {
            let (sent, took) = c.join().unwrap();
            eprintln!("{label}: slow client cut off after {sent} bytes, {took:?}");
            assert!(sent < req.len());
            assert!(
                took >= TIMEOUT && took < TIMEOUT + Duration::from_secs(2),
                "{label}: cut off after {took:?}"
            );
        }
        assert_eq!(wait_threads(pid, 1, Duration::from_secs(3)), 1);
    }
}

/// Connects with a small receive buffer, asks for `chunk`, and reads its first bytes, so
/// that the server is stuck in the middle of sending the rest.
fn start_big_download(addr: SocketAddrV4, req: &[u8]) -> socket2::Socket {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&SocketAddr::from(addr).into()).unwrap();
    let mut s: TcpStream = sock.try_clone().unwrap().into();
    s.write_all(req).unwrap();
    let mut head = [0u8; 1024];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[1], 5, "the reply is a CHUNK");
    sock
}

#[test]
fn a_client_vanishing_mid_send_frees_the_thread() {
    const WRITE_TIMEOUT: Duration = Duration::from_millis(1000);
    // One 8 MiB chunk: far more than the socket buffers hold.
    let mut sys = System::new(8 << 20, 8 << 20);
    sys.start("alice", "alice", &["--write-timeout-ms", "1000"]);
    let addr = sys.addr("alice");
    let pid = sys.proc("alice").pid();
    let req = Message::GetChunk(sys.manifest().chunks[0].hash)
        .encode()
        .unwrap();

    // The client's host is gone without a word: nothing reads, nothing closes. The write
    // timeout frees the thread.
    // The start-up probe's connection thread may still be ending.
    assert_eq!(wait_threads(pid, 1, Duration::from_secs(5)), 1);
    let sock = start_big_download(addr, &req);
    let t = Instant::now();
    assert_eq!(
        wait_threads(pid, 2, Duration::from_secs(5)),
        2,
        "alice is sending"
    );
    assert_eq!(wait_threads(pid, 1, Duration::from_secs(5)), 1);
    let took = t.elapsed();
    eprintln!("silent vanished client: thread freed after {took:?}");
    assert!(
        took + Duration::from_millis(50) >= WRITE_TIMEOUT,
        "{took:?}"
    );
    drop(sock);

    // The client's process died: its kernel resets the connection (unread data), and the
    // server's blocked send fails at once, well before the write timeout.
    let sock = start_big_download(addr, &req);
    assert_eq!(
        wait_threads(pid, 2, Duration::from_secs(5)),
        2,
        "alice is sending"
    );
    sock.set_linger(Some(Duration::ZERO)).unwrap();
    let t = Instant::now();
    drop(sock);
    assert_eq!(wait_threads(pid, 1, Duration::from_secs(5)), 1);
    let took = t.elapsed();
    eprintln!("reset client: thread freed after {took:?}");
    assert!(took < WRITE_TIMEOUT / 2, "{took:?}");

    // alice still serves the whole chunk to a normal client.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&req).unwrap();
    let reply = swarmlet::wire::read_message(&mut s, 9 << 20, Default::default()).unwrap();
    assert!(matches!(reply, Message::Chunk { data, .. } if data.len() == 8 << 20));
}
