//! Hostile clients against the real `alice` and `tracker` processes over loopback TCP.
//!
//! Every case sends crafted bytes, then expects the spec's reply byte for byte, or a clean
//! close where no reply fits, and then proves three things: the connection is still in
//! step when the spec says it should be (a normal request on it gets its normal reply),
//! a fresh normal client is served, and the server's connection thread has ended once the
//! client is gone (its thread count is back to 1).
//!
//! The servers run with short timeouts (CLI flags) so that the cases which end in a
//! timeout take a fraction of a second.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddrV4, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use swarmlet::config::PeersConfig;
use swarmlet::course::tracker::file_info;
use swarmlet::hash::ChunkHash;
use swarmlet::wire::{ChunkRecord, FileInfo, Message, TrackerInfo};

const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);
const IDLE_TIMEOUT: Duration = Duration::from_millis(2000);
const WRITE_TIMEOUT: Duration = Duration::from_millis(600);
/// An immediate close must come well before the shortest read timeout above, so that it
/// cannot be a timeout in disguise.
const PROMPT: Duration = Duration::from_millis(700);

/// The spec's test vectors for the three ERROR replies, written out rather than encoded
/// so that the codec is not checking itself.
const ERR0: [u8; 12] = [1, 6, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0];
const ERR1: [u8; 12] = [1, 6, 0, 0, 0, 0, 0, 3, 0, 1, 0, 0];
const ERR2: [u8; 12] = [1, 6, 0, 0, 0, 0, 0, 3, 0, 2, 0, 0];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum To {
    Alice,
    Tracker,
}

/// What the client does once its bytes are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Half-closes its side (the server sees EOF after the bytes).
    Shutdown,
    /// Keeps the connection open and waits.
    Wait,
}

/// What must happen after the expected reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    /// The stream is still in step: a normal request on the same connection is answered.
    Usable,
    /// The server closes the connection at once, sending nothing more.
    Closes,
    /// The server closes the connection once this timeout has passed, sending nothing.
    ClosesAfter(Duration),
}

struct Case {
    name: &'static str,
    to: To,
    bytes: Vec<u8>,
    end: End,
    reply: Vec<u8>,
    then: Then,
}

/// A running alice and tracker over a small file (24 chunks of 4 KiB), with the exact
/// bytes of their normal replies.
struct Fixture {
    sys: System,
    /// A chunk alice has, and the exact CHUNK message carrying it.
    h0: ChunkHash,
    chunk_reply: Vec<u8>,
    /// A chunk only bob has.
    bob_only: ChunkHash,
    /// The exact FILE_INFO the tracker must send.
    file_info_reply: Vec<u8>,
}

const CHUNK: usize = 4096;

impl Fixture {
    fn start() -> Fixture {
        let mut sys = System::new(24 * CHUNK, CHUNK);
        let flags = [
            "--request-timeout-ms".to_string(),
            REQUEST_TIMEOUT.as_millis().to_string(),
            "--idle-timeout-ms".to_string(),
            IDLE_TIMEOUT.as_millis().to_string(),
            "--write-timeout-ms".to_string(),
            WRITE_TIMEOUT.as_millis().to_string(),
        ];
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        sys.start("alice", "alice", &flags);
        sys.start("tracker", "tracker", &flags);
        let m = sys.manifest();
        let h0 = m.chunks[0].hash;
        let data = std::fs::read(sys.chunk_dir("alice").join(h0.file_name())).unwrap();
        assert_eq!(data.len(), CHUNK);
        let chunk_reply = Message::Chunk { hash: h0, data }.encode().unwrap();
        let bob_only = m.chunks.last().unwrap().hash;
        assert!(!sys.chunk_dir("alice").join(bob_only.file_name()).exists());
        let peers = PeersConfig::load(&sys.root().join("config/peers.ini")).unwrap();
        let file_info_reply = Message::FileInfo(file_info(&m, &peers).unwrap())
            .encode()
            .unwrap();
        Fixture {
            sys,
            h0,
            chunk_reply,
            bob_only,
            file_info_reply,
        }
    }

    fn addr(&self, to: To) -> SocketAddrV4 {
        match to {
            To::Alice => self.sys.addr("alice"),
            To::Tracker => self.sys.addr("tracker"),
        }
    }

    fn pid(&mut self, to: To) -> u32 {
        match to {
            To::Alice => self.sys.proc("alice").pid(),
            To::Tracker => self.sys.proc("tracker").pid(),
        }
    }

    /// A normal request for `to` and its exact reply.
    fn normal(&self, to: To) -> (Vec<u8>, Vec<u8>) {
        match to {
            To::Alice => (
                Message::GetChunk(self.h0).encode().unwrap(),
                self.chunk_reply.clone(),
            ),
            To::Tracker => (
                Message::GetFileInfo.encode().unwrap(),
                self.file_info_reply.clone(),
            ),
        }
    }

    /// Asserts that the server is alive and a fresh client gets the normal reply.
    fn assert_serves(&mut self, to: To, context: &str) {
        let pid = self.pid(to);
        let alive = match to {
            To::Alice => self.sys.proc("alice").child.try_wait().unwrap(),
            To::Tracker => self.sys.proc("tracker").child.try_wait().unwrap(),
        };
        assert!(alive.is_none(), "{context}: {to:?} exited: {alive:?}");
        let (req, reply) = self.normal(to);
        let mut s = connect(self.addr(to));
        s.write_all(&req).unwrap();
        let got = read_n(&mut s, reply.len())
            .unwrap_or_else(|e| panic!("{context}: normal client of {to:?}: {e}"));
        assert!(
            got == reply,
            "{context}: {to:?} answered a normal client wrongly"
        );
        drop(s);
        let n = wait_threads(pid, 1, Duration::from_secs(3));
        assert_eq!(n, 1, "{context}: {to:?} kept {} connection threads", n - 1);
    }
}

fn connect(addr: SocketAddrV4) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn read_n(s: &mut TcpStream, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// Waits for the server to close: the next read must find EOF (or a reset, which is how
/// TCP closes a connection whose unread input the server discarded), never more bytes.
/// Returns how long the close took.
fn expect_close(s: &mut TcpStream, name: &str) -> Duration {
    let t = Instant::now();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => {}
        Ok(n) => panic!(
            "{name}: {n} unexpected bytes after the reply: {:02x?}",
            &b[..n]
        ),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{name}: server did not close the connection: {e}"),
    }
    t.elapsed()
}

/// A header with any field values.
fn hdr(version: u8, msg_type: u8, words: u32) -> Vec<u8> {
    let mut h = vec![version, msg_type, 0, 0];
    h.extend_from_slice(&words.to_be_bytes());
    h
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn enc(m: Message) -> Vec<u8> {
    m.encode().unwrap()
}

#[rustfmt::skip]
fn cases(fx: &Fixture) -> Vec<Case> {
    use End::*;
    use Then::*;
    use To::*;
    let h0 = fx.h0;
    let hb = *h0.as_bytes();
    let get_chunk = |v: u8, words: u32, body: &[u8]| cat(&[&hdr(v, 4, words), body]);
    let small_chunk = enc(Message::Chunk {
        hash: ChunkHash::of(&[7u8; 100]),
        data: vec![7u8; 100],
    });
    let whole_chunk = fx.chunk_reply.clone(); // 4,128 bytes: over the 4,096-byte limit
    let tracker_info = enc(Message::TrackerInfo(TrackerInfo {
        addr: "127.0.0.1:8000".parse().unwrap(),
        name: "tracker".into(),
    }));
    let small_file_info = enc(Message::FileInfo(FileInfo {
        filename: "x.bin".into(),
        chunks: vec![ChunkRecord {
            hash: h0,
            peers: vec!["127.0.0.1:8001".parse().unwrap()],
        }],
    }));
    let unknown_types: Vec<u8> = (7..=255u8).flat_map(|t| hdr(1, t, 2)).collect();
    let unknown_replies: Vec<u8> = (7..=255u8).flat_map(|_| ERR0).collect();
    let mut reserved = enc(Message::GetChunk(h0));
    reserved[2] = 0xab;
    reserved[3] = 0xcd;
    let mut nineteen_padded = hb[..19].to_vec();
    nineteen_padded.push(0);
    let mut twenty_one_padded = hb.to_vec();
    twenty_one_padded.extend_from_slice(&[0x55, 0, 0, 0]);
    let c = |name, to, bytes, end, reply: &[u8], then| Case {
        name,
        to,
        bytes,
        end,
        reply: reply.to_vec(),
        then,
    };
    let rt = ClosesAfter(REQUEST_TIMEOUT);
    let it = ClosesAfter(IDLE_TIMEOUT);
    vec![
        // Truncated and stalled framing.
        c("header of 3 bytes, then EOF", Alice, vec![1, 4, 0], Shutdown, &[], Closes),
        c("header of 7 bytes, then EOF", Tracker, hdr(1, 2, 2)[..7].to_vec(), Shutdown, &[], Closes),
        c("header of 5 bytes, then silence", Alice, hdr(1, 4, 7)[..5].to_vec(), Wait, &[], rt),
        c("header of 5 bytes, then silence", Tracker, hdr(1, 2, 2)[..5].to_vec(), Wait, &[], rt),
        c("GET_CHUNK stopping mid-body, then EOF", Alice, get_chunk(1, 7, &hb[..10]), Shutdown, &[], Closes),
        c("GET_CHUNK stopping mid-body, then silence", Alice, get_chunk(1, 7, &hb[..10]), Wait, &[], rt),
        c("GET_FILE_INFO announcing a body never sent", Tracker, hdr(1, 2, 3), Wait, &[], rt),
        // Versions.
        c("version 0 GET_CHUNK", Alice, get_chunk(0, 7, &hb), Wait, &ERR0, Usable),
        c("version 2 GET_CHUNK", Alice, get_chunk(2, 7, &hb), Wait, &ERR0, Usable),
        c("version 255, empty body", Alice, hdr(255, 4, 2), Wait, &ERR0, Usable),
        c("version 0 GET_FILE_INFO", Tracker, hdr(0, 2, 2), Wait, &ERR0, Usable),
        c("version 2 GET_FILE_INFO", Tracker, hdr(2, 2, 2), Wait, &ERR0, Usable),
        // Every unknown type, pipelined on one connection: one ERROR 0 each, in order.
        c("all 249 unknown types 7..=255", Alice, unknown_types.clone(), Wait, &unknown_replies, Usable),
        c("all 249 unknown types 7..=255", Tracker, unknown_types, Wait, &unknown_replies, Usable),
        // msg_length: too small, over the limit, and lying.
        c("msg_length 0", Alice, hdr(1, 4, 0), Wait, &ERR0, Closes),
        c("msg_length 0", Tracker, hdr(1, 2, 0), Wait, &ERR0, Closes),
        c("msg_length 1", Alice, hdr(1, 4, 1), Wait, &ERR0, Closes),
        c("msg_length 1", Tracker, hdr(1, 2, 1), Wait, &ERR0, Closes),
        c("GET_CHUNK with msg_length 2 (no hash)", Alice, hdr(1, 4, 2), Wait, &ERR0, Usable),
        c("ERROR with msg_length 2 (no code)", Tracker, hdr(1, 6, 2), Wait, &ERR0, Usable),
        c("msg_length 0xFFFFFFFF", Alice, hdr(1, 4, u32::MAX), Wait, &ERR0, Closes),
        c("msg_length 0xFFFFFFFF", Tracker, hdr(1, 2, u32::MAX), Wait, &ERR0, Closes),
        c("msg_length 1025 words (one over 4 KiB)", Alice, hdr(1, 4, 1025), Wait, &ERR0, Closes),
        c("msg_length 4 GiB with body bytes following", Tracker, cat(&[&hdr(1, 2, 1 << 30), &[9u8; 100]]), Wait, &ERR0, Closes),
        c("msg_length 1024 words (exactly 4 KiB) GET_CHUNK", Alice, get_chunk(1, 1024, &[0u8; 4088]), Wait, &ERR0, Usable),
        c("GET_CHUNK lying short: msg_length 6, 16-byte hash", Alice, get_chunk(1, 6, &hb[..16]), Wait, &ERR0, Usable),
        c("GET_CHUNK lying long: msg_length 9, 20-byte hash", Alice, get_chunk(1, 9, &hb), Wait, &[], rt),
        c("GET_FILE_INFO with a 4-byte body", Alice, cat(&[&hdr(1, 2, 3), &[0u8; 4]]), Wait, &ERR0, Usable),
        c("CHUNK whose content_length says 1000 of 100", Alice, {
            let mut m = small_chunk.clone();
            m[28..32].copy_from_slice(&1000u32.to_be_bytes());
            m
        }, Wait, &ERR0, Usable),
        c("TRACKER_INFO whose name_length says 100 of 8", Tracker, {
            let mut m = tracker_info.clone();
            m[14..16].copy_from_slice(&100u16.to_be_bytes());
            m
        }, Wait, &ERR0, Usable),
        c("TRACKER_INFO with a name that is not UTF-8", Tracker, {
            let mut m = tracker_info.clone();
            m[16] = 0xff;
            m
        }, Wait, &ERR0, Usable),
        c("FILE_INFO announcing 65,535 chunks, none present", Tracker, {
            let mut m = small_file_info.clone();
            m[8..10].copy_from_slice(&u16::MAX.to_be_bytes());
            m
        }, Wait, &ERR0, Usable),
        // GET_CHUNK of 19 and 21 bytes.
        c("GET_CHUNK of 19 bytes (27 in all), then EOF", Alice, get_chunk(1, 7, &hb[..19]), Shutdown, &[], Closes),
        c("GET_CHUNK of 19 bytes, then silence", Alice, get_chunk(1, 7, &hb[..19]), Wait, &[], rt),
        c("GET_CHUNK of 19 bytes zero-padded to 20", Alice, get_chunk(1, 7, &nineteen_padded), Wait, &ERR2, Usable),
        c("GET_CHUNK of 21 bytes (29 in all), then EOF", Alice, get_chunk(1, 7, &cat(&[&hb, &[0x55]])), Shutdown, &fx.chunk_reply, Closes),
        c("GET_CHUNK of 21 bytes padded to 24 (msg_length 8)", Alice, get_chunk(1, 8, &twenty_one_padded), Wait, &ERR0, Usable),
        // Requests of the other role.
        c("GET_FILE_INFO to a peer", Alice, enc(Message::GetFileInfo), Wait, &ERR1, Usable),
        c("DISCOVER_TRACKER to a peer", Alice, enc(Message::DiscoverTracker), Wait, &ERR1, Usable),
        c("GET_CHUNK to the tracker", Tracker, enc(Message::GetChunk(h0)), Wait, &ERR1, Usable),
        c("DISCOVER_TRACKER to the tracker over TCP", Tracker, enc(Message::DiscoverTracker), Wait, &ERR1, Usable),
        // Replies sent to a server.
        c("a small CHUNK", Alice, small_chunk.clone(), Wait, &ERR1, Usable),
        c("a small CHUNK", Tracker, small_chunk, Wait, &ERR1, Usable),
        c("a whole 4 KiB CHUNK (over the request limit)", Alice, whole_chunk, Wait, &ERR0, Closes),
        c("ERROR CHUNK_NOT_FOUND", Alice, ERR2.to_vec(), Wait, &ERR1, Usable),
        c("ERROR INVALID_MESSAGE_FORMAT", Tracker, ERR0.to_vec(), Wait, &ERR1, Usable),
        c("TRACKER_INFO", Alice, tracker_info.clone(), Wait, &ERR1, Usable),
        c("TRACKER_INFO", Tracker, tracker_info, Wait, &ERR1, Usable),
        c("FILE_INFO", Tracker, small_file_info, Wait, &ERR1, Usable),
        // Odd but legal, and the peer's own knowledge.
        c("GET_CHUNK with non-zero reserved bytes", Alice, reserved, Wait, &fx.chunk_reply, Usable),
        c("GET_CHUNK for a chunk only bob has", Alice, enc(Message::GetChunk(fx.bob_only)), Wait, &ERR2, Usable),
        c("three bad requests in one write", Alice, cat(&[&hdr(1, 9, 2), &enc(Message::GetFileInfo), &enc(Message::GetChunk(fx.bob_only))]), Wait, &cat(&[&ERR0, &ERR1, &ERR2]), Usable),
        // Nothing at all.
        c("connect, then EOF at once", Alice, vec![], Shutdown, &[], Closes),
        c("connect, then silence", Alice, vec![], Wait, &[], it),
        c("connect, then silence", Tracker, vec![], Wait, &[], it),
    ]
}

#[test]
fn hostile_inputs_get_the_spec_reply_and_the_servers_keep_serving() {
    let mut fx = Fixture::start();
    let cases = cases(&fx);
    assert!(cases.len() >= 30);
    for case in &cases {
        let name = format!("{:?}: {}", case.to, case.name);
        let mut s = connect(fx.addr(case.to));
        if let Err(e) = s.write_all(&case.bytes) {
            // Only a message over the limit may be cut short by the server's close.
            assert_eq!(case.then, Then::Closes, "{name}: write failed: {e}");
        }
        let sent = Instant::now();
        if case.end == End::Shutdown {
            let _ = s.shutdown(Shutdown::Write);
        }
        let reply = read_n(&mut s, case.reply.len())
            .unwrap_or_else(|e| panic!("{name}: no full reply: {e}"));
        assert!(
            reply == case.reply,
            "{name}: reply {:02x?}… expected {:02x?}…",
            &reply[..reply.len().min(16)],
            &case.reply[..case.reply.len().min(16)]
        );
        match case.then {
            Then::Usable => {
                let (req, want) = fx.normal(case.to);
                s.write_all(&req).unwrap();
                let got = read_n(&mut s, want.len())
                    .unwrap_or_else(|e| panic!("{name}: connection not usable after: {e}"));
                assert!(
                    got == want,
                    "{name}: wrong normal reply on the same connection"
                );
            }
            Then::Closes => {
                let took = expect_close(&mut s, &name);
                assert!(took < PROMPT, "{name}: close took {took:?}");
            }
            Then::ClosesAfter(timeout) => {
                expect_close(&mut s, &name);
                let took = sent.elapsed();
                assert!(
                    took + Duration::from_millis(50) >= timeout
                        && took < timeout + Duration::from_secs(2),
                    "{name}: closed after {took:?}, timeout is {timeout:?}"
                );
            }
        }
        drop(s);
        fx.assert_serves(To::Alice, &name);
        fx.assert_serves(To::Tracker, &name);
    }
    eprintln!("{} hostile cases passed", cases.len());
}

/// Writes `requests` on `s` from another thread while this one reads the replies, so
/// neither side's buffers can deadlock the exchange.
fn pipeline(s: &TcpStream, requests: Vec<u8>, reply_len: usize) -> Vec<u8> {
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || w.write_all(&requests));
    let mut r = s.try_clone().unwrap();
    let got = read_n(&mut r, reply_len).unwrap();
    writer.join().unwrap().unwrap();
    got
}

#[test]
fn ten_thousand_requests_pipelined_on_one_connection() {
    let mut fx = Fixture::start();
    // alice: every tenth request is for a chunk she has, the rest for one she lacks.
    let (mut req, mut want) = (Vec::new(), Vec::new());
    for i in 0..10_000 {
        if i % 10 == 0 {
            req.extend_from_slice(&enc(Message::GetChunk(fx.h0)));
            want.extend_from_slice(&fx.chunk_reply);
        } else {
            req.extend_from_slice(&enc(Message::GetChunk(fx.bob_only)));
            want.extend_from_slice(&ERR2);
        }
    }
    let s = connect(fx.addr(To::Alice));
    let got = pipeline(&s, req, want.len());
    assert!(got == want, "alice's 10,000 replies differ");
    drop(s);
    fx.assert_serves(To::Alice, "after 10,000 pipelined GET_CHUNK");

    // tracker: 10,000 GET_FILE_INFO, 10,000 identical FILE_INFO.
    let req = enc(Message::GetFileInfo).repeat(10_000);
    let want = fx.file_info_reply.repeat(10_000);
    let s = connect(fx.addr(To::Tracker));
    let got = pipeline(&s, req, want.len());
    assert!(got == want, "the tracker's 10,000 replies differ");
    drop(s);
    fx.assert_serves(To::Tracker, "after 10,000 pipelined GET_FILE_INFO");
}

/// A client that sends requests without ever reading a reply: the server blocks writing,
/// and its write timeout must end the connection and free the thread.
fn never_reads(fx: &mut Fixture, to: To) {
    let pid = fx.pid(to);
    let addr = fx.addr(to);
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    // A small receive window makes the server's writes block sooner.
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&std::net::SocketAddr::from(addr).into())
        .unwrap();
    let mut s: TcpStream = sock.into();
    s.set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let (req, reply) = fx.normal(to);
    let t = Instant::now();
    // Keep sending until our own writes block (the server stopped reading because it is
    // stuck writing replies nobody reads). Bounded: 64 MiB of requests at most.
    let mut sent = 0usize;
    let batch = req.repeat(256);
    while sent < 64 << 20 {
        match s.write_all(&batch) {
            Ok(()) => sent += batch.len(),
            Err(_) => break,
        }
    }
    assert!(sent < 64 << 20, "{to:?} never stopped reading requests");
    // The server is blocked on a reply; its write timeout must end the connection.
    let n = wait_threads(pid, 1, WRITE_TIMEOUT + Duration::from_secs(3));
    assert_eq!(
        n, 1,
        "{to:?}: thread still blocked writing to a client that never reads"
    );
    let took = t.elapsed();
    eprintln!(
        "{to:?}: a client that never read ({} requests, {} reply bytes asked) was cut off after {took:?}",
        sent / req.len(),
        sent / req.len() * reply.len()
    );
    drop(s);
    fx.assert_serves(to, "after a client that never reads");
}

#[test]
fn clients_that_never_read_their_replies_are_cut_off() {
    let mut fx = Fixture::start();
    never_reads(&mut fx, To::Alice);
    never_reads(&mut fx, To::Tracker);
}
