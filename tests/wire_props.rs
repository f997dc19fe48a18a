//! Property tests for the wire codec: round trips for all 7 messages (whole, through a
//! stream, through the chunk-reply reader), an independent spec-derived encoder to compare
//! against, and arbitrary input that must never panic nor allocate past the caller's limit.
//!
//! The allocation bound is measured, not assumed: this test binary installs a counting
//! global allocator that records the largest single allocation request made by the current
//! thread while a measurement is running.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Cursor, Read};
use std::net::{Ipv4Addr, SocketAddrV4};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as ProptestConfig;
use swarmlet::hash::ChunkHash;
use swarmlet::wire::{
    self, CHUNK_PREFIX_LEN, ChunkRecord, ChunkReply, DecodeError, EncodeError, ErrorCode, FileInfo,
    HEADER_LEN, Message, MsgType, ReadError, Tolerance, TrackerInfo,
};

// ---------------------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------------------

/// The system allocator, plus a per-thread record of the largest request while measuring.
struct Counting;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: never panic inside the allocator, even during thread teardown.
    let _ = MEASURING.try_with(|m| {
        if m.get() {
            let _ = PEAK.try_with(|p| p.set(p.get().max(size)));
        }
    });
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result with the largest single allocation it requested on this
/// thread. The result is built inside the measurement (it counts); dropping it is not.
fn peak_alloc<R>(f: impl FnOnce() -> R) -> (R, usize) {
    PEAK.with(|p| p.set(0));
    MEASURING.with(|m| m.set(true));
    let r = f();
    MEASURING.with(|m| m.set(false));
    (r, PEAK.with(Cell::get))
}

/// Room for error-detail strings and the like, on top of the input-sized buffers.
const SLACK: usize = 256;

/// Bytes of a FILE_INFO chunk record on the wire (hash, peers_count, padding).
const WIRE_CHUNK_RECORD: usize = 24;

/// The largest single allocation `read_message(max_len)` may make for a message whose type
/// byte is `type_byte`.
///
/// The body buffer is at most `max_len - 8` bytes, and every decoded field is a copy of
/// part of it. The one exception is a FILE_INFO's chunk table: a decoded [`ChunkRecord`] is
/// bigger in memory than its 24 bytes on the wire, so a message of `max_len` bytes
/// made only of peerless records needs `size_of::<ChunkRecord>()` bytes per 24 wire bytes.
/// That is still bounded by the bytes actually received, never by a count read from them.
fn alloc_bound(max_len: usize, type_byte: Option<u8>, tol: Tolerance) -> usize {
    let file_info = match type_byte {
        Some(3) => true,
        Some(5) => tol.file_info_as_chunk_type,
        _ => false,
    };
    let table = if file_info {
        // Body minus the 4-byte FILE_INFO head, in whole records.
        std::mem::size_of::<ChunkRecord>()
            * (max_len.saturating_sub(HEADER_LEN + 4) / WIRE_CHUNK_RECORD)
    } else {
        0
    };
    max_len.max(table) + SLACK
}

#[test]
fn the_counting_allocator_sees_allocations() {
    let (v, peak) = peak_alloc(|| vec![0u8; 10_000]);
    assert_eq!(v.len(), 10_000);
    assert!(peak >= 10_000, "{peak}");
    let (_, peak) = peak_alloc(|| 1 + 1);
    assert_eq!(peak, 0);
    // And the codec's body buffer is seen: a 4096-byte CHUNK needs a 4088-byte body.
    let msg = Message::Chunk {
        hash: ChunkHash::from_bytes([1; 20]),
        data: vec![7; 4096 - CHUNK_PREFIX_LEN],
    };
    let bytes = msg.encode().unwrap();
    assert_eq!(bytes.len(), 4096);
    let (got, peak) = peak_alloc(|| wire::read_message(&mut Cursor::new(&bytes), 4096, STRICT));
    assert_eq!(got.unwrap(), msg);
    assert!(peak >= 4096 - HEADER_LEN, "{peak}");
    assert!(peak <= alloc_bound(4096, Some(5), STRICT), "{peak}");
}

#[test]
fn hostile_msg_length_allocates_nothing_like_it() {
    // 0xFFFFFFFF words = 16 GiB announced; the limit is 4096.
    let mut bytes = vec![1, 3, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
    bytes.resize(64, 0xFF);
    for t in 0..=7u8 {
        bytes[1] = t;
        let mut r = Cursor::new(&bytes);
        let (res, peak) = peak_alloc(|| wire::read_message(&mut r, 4096, STRICT));
        assert!(
            matches!(
                res,
                Err(ReadError::Frame(DecodeError::TooLong {
                    words: u32::MAX,
                    max: 4096
                }))
            ),
            "{res:?}"
        );
        assert!(peak < 4096 + SLACK, "type {t}: {peak}");
        assert_eq!(r.position(), HEADER_LEN as u64, "body not read");
    }
    // The same through the chunk-reply reader, with a 512 KiB content limit.
    bytes[1] = 5;
    let mut r = Cursor::new(&bytes);
    let h = wire::read_header(&mut r).unwrap();
    let mut buf = Vec::new();
    let (res, peak) = peak_alloc(|| wire::read_chunk_reply(&mut r, &h, 512 * 1024, &mut buf));
    assert!(matches!(res, Err(ReadError::Frame(_))), "{res:?}");
    assert!(peak < SLACK, "{peak}");
}

#[test]
fn hostile_counts_allocate_by_bytes_present() {
    // chunks_count 0xFFFF and zeroed (valid, peerless) records filling a 4096-byte message:
    // the table is sized by the records present, not by the count.
    let mut bytes = vec![1, 3, 0, 0, 0, 0, 0x04, 0x00, 0xFF, 0xFF, 0, 0];
    bytes.resize(4096, 0);
    let (res, peak) = peak_alloc(|| wire::read_message(&mut Cursor::new(&bytes), 4096, STRICT));
    assert!(matches!(res, Err(ReadError::Message(_))), "{res:?}");
    assert!(peak <= alloc_bound(4096, Some(3), STRICT), "{peak}");
    // peers_count 0xFFFF on one record: the peer list is sized by the bytes left.
    let mut bytes = vec![1, 3, 0, 0, 0, 0, 0x04, 0x00, 0, 1, 0, 0];
    bytes.extend_from_slice(&[9; 20]);
    bytes.extend_from_slice(&[0xFF, 0xFF, 0, 0]);
    bytes.resize(4096, 0);
    let (res, peak) = peak_alloc(|| wire::read_message(&mut Cursor::new(&bytes), 4096, STRICT));
    assert!(matches!(res, Err(ReadError::Message(_))), "{res:?}");
    assert!(peak <= 4096 + SLACK, "{peak}");
    // content_length 0xFFFFFFFF in a small CHUNK.
    let mut bytes = vec![1, 5, 0, 0, 0, 0, 0, 8];
    bytes.extend_from_slice(&[0; 20]);
    bytes.extend_from_slice(&[0xFF; 4]);
    let (res, peak) = peak_alloc(|| wire::read_message(&mut Cursor::new(&bytes), 4096, STRICT));
    assert!(matches!(res, Err(ReadError::Message(_))), "{res:?}");
    assert!(peak <= SLACK, "{peak}");
}

// ---------------------------------------------------------------------------------------
// A reference encoder, written from the spec's tables independently of src/wire.rs
// ---------------------------------------------------------------------------------------

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

fn spec_encode(msg: &Message) -> Vec<u8> {
    let (t, mut body): (u8, Vec<u8>) = match msg {
        Message::DiscoverTracker => (0, vec![]),
        Message::TrackerInfo(ti) => {
            let mut b = ti.addr.ip().octets().to_vec();
            b.extend_from_slice(&ti.addr.port().to_be_bytes());
            b.extend_from_slice(&(ti.name.len() as u16).to_be_bytes());
            b.extend_from_slice(ti.name.as_bytes());
            (1, b)
        }
        Message::GetFileInfo => (2, vec![]),
        Message::FileInfo(fi) => {
            let mut b = (fi.chunks.len() as u16).to_be_bytes().to_vec();
            b.extend_from_slice(&(fi.filename.len() as u16).to_be_bytes());
            b.extend_from_slice(fi.filename.as_bytes());
            pad4(&mut b);
            for c in &fi.chunks {
                b.extend_from_slice(c.hash.as_bytes());
                b.extend_from_slice(&(c.peers.len() as u16).to_be_bytes());
                b.extend_from_slice(&[0, 0]);
                for p in &c.peers {
                    b.extend_from_slice(&p.ip().octets());
                    b.extend_from_slice(&p.port().to_be_bytes());
                    b.extend_from_slice(&[0, 0]);
                }
            }
            (3, b)
        }
        Message::GetChunk(h) => (4, h.as_bytes().to_vec()),
        Message::Chunk { hash, data } => {
            let mut b = hash.as_bytes().to_vec();
            b.extend_from_slice(&(data.len() as u32).to_be_bytes());
            b.extend_from_slice(data);
            (5, b)
        }
        Message::Error(code) => (6, vec![(code.code() >> 8) as u8, code.code() as u8, 0, 0]),
    };
    pad4(&mut body);
    let mut out = vec![1, t, 0, 0];
    out.extend_from_slice(&(((8 + body.len()) / 4) as u32).to_be_bytes());
    out.append(&mut body);
    out
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

const STRICT: Tolerance = Tolerance {
    file_info_as_chunk_type: false,
};

fn arb_hash() -> impl Strategy<Value = ChunkHash> {
    any::<[u8; 20]>().prop_map(ChunkHash::from_bytes)
}

fn arb_addr() -> impl Strategy<Value = SocketAddrV4> {
    (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddrV4::new(ip.into(), port))
}

/// Names of every length mod 4: ASCII of 0..=9 bytes, and any printable Unicode (1-4 bytes
/// per character).
fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._-]{0,9}",
        "\\PC{0,6}",
        (0usize..=9).prop_map(|n| "x".repeat(n)),
    ]
}

fn arb_file_info(max_chunks: usize, max_peers: usize) -> impl Strategy<Value = FileInfo> {
    let record = (arb_hash(), prop::collection::vec(arb_addr(), 0..=max_peers))
        .prop_map(|(hash, peers)| ChunkRecord { hash, peers });
    (arb_name(), prop::collection::vec(record, 0..=max_chunks))
        .prop_map(|(filename, chunks)| FileInfo { filename, chunks })
}

fn arb_error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        (0u16..=3).prop_map(ErrorCode::from_code),
        any::<u16>().prop_map(ErrorCode::from_code),
    ]
}

/// Content of odd and even lengths, empty included.
fn arb_content() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..=9),
        prop::collection::vec(any::<u8>(), 0..=300),
    ]
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::DiscoverTracker),
        (arb_addr(), arb_name())
            .prop_map(|(addr, name)| Message::TrackerInfo(TrackerInfo { addr, name })),
        Just(Message::GetFileInfo),
        arb_file_info(8, 4).prop_map(Message::FileInfo),
        arb_hash().prop_map(Message::GetChunk),
        (arb_hash(), arb_content()).prop_map(|(hash, data)| Message::Chunk { hash, data }),
        arb_error_code().prop_map(Message::Error),
    ]
}

/// How to damage an encoded message.
#[derive(Debug, Clone)]
enum Mutation {
    /// Overwrite one byte.
    Set(Index, u8),
    /// Overwrite a u16 or u32 field-sized run with 0xFF (hostile counts and lengths).
    Saturate(Index, usize),
    /// Cut the message short.
    Truncate(Index),
    /// Append bytes.
    Extend(Vec<u8>),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (
            any::<Index>(),
            prop_oneof![any::<u8>(), Just(0), Just(0xFF)]
        )
            .prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), prop_oneof![Just(2usize), Just(4)])
            .prop_map(|(i, n)| Mutation::Saturate(i, n)),
        any::<Index>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..8).prop_map(Mutation::Extend),
    ]
}

fn mutate(mut bytes: Vec<u8>, muts: &[Mutation], fix_length: bool) -> Vec<u8> {
    for m in muts {
        match m {
            Mutation::Set(i, b) if !bytes.is_empty() => {
                let i = i.index(bytes.len());
                bytes[i] = *b;
            }
            Mutation::Saturate(i, n) if bytes.len() >= *n => {
                let i = i.index(bytes.len() - n + 1);
                bytes[i..i + n].fill(0xFF);
            }
            Mutation::Truncate(i) if !bytes.is_empty() => {
                let i = i.index(bytes.len());
                bytes.truncate(i);
            }
            Mutation::Extend(extra) => bytes.extend_from_slice(extra),
            _ => {}
        }
    }
    // Optionally make the framing agree again, so that the damage reaches body parsing.
    if fix_length && bytes.len() >= HEADER_LEN {
        while !bytes.len().is_multiple_of(4) {
            bytes.push(0);
        }
        let words = (bytes.len() / 4) as u32;
        bytes[4..8].copy_from_slice(&words.to_be_bytes());
    }
    bytes
}

/// Arbitrary input: raw noise, hostile headers over noise, and damaged real messages.
fn arb_input() -> impl Strategy<Value = Vec<u8>> {
    let raw = prop::collection::vec(any::<u8>(), 0..200);
    let header_then_noise = (
        prop_oneof![Just(1u8), any::<u8>()],
        prop_oneof![0u8..=7, any::<u8>()],
        prop_oneof![0u32..=80, Just(u32::MAX), any::<u32>()],
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(v, t, words, body)| {
            let mut b = vec![v, t, 0, 0];
            b.extend_from_slice(&words.to_be_bytes());
            b.extend_from_slice(&body);
            b
        });
    let damaged = (
        arb_message(),
        prop::collection::vec(arb_mutation(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(m, muts, fix)| mutate(m.encode().unwrap(), &muts, fix));
    // A FILE_INFO head with any chunks_count, then up to 200 peerless records (the first
    // with any peers_count), sometimes labelled type 5: aims at the chunk-table allocation.
    let file_info_records = (
        any::<u16>(),
        arb_name(),
        0usize..200,
        any::<u16>(),
        any::<bool>(),
    )
        .prop_map(|(count, name, records, peers_count, type_5)| {
            let mut b = vec![1, if type_5 { 5 } else { 3 }, 0, 0, 0, 0, 0, 0];
            b.extend_from_slice(&count.to_be_bytes());
            b.extend_from_slice(&(name.len() as u16).to_be_bytes());
            b.extend_from_slice(name.as_bytes());
            pad4(&mut b);
            for i in 0..records {
                b.extend_from_slice(&[i as u8; 20]);
                let peers = if i == 0 { peers_count } else { 0 };
                b.extend_from_slice(&peers.to_be_bytes());
                b.extend_from_slice(&[0, 0]);
            }
            let words = (b.len() / 4) as u32;
            b[4..8].copy_from_slice(&words.to_be_bytes());
            b
        });
    prop_oneof![raw, header_then_noise, damaged, file_info_records]
}

fn arb_tolerance() -> impl Strategy<Value = Tolerance> {
    any::<bool>().prop_map(|b| Tolerance {
        file_info_as_chunk_type: b,
    })
}

/// A reader that hands out at most the given numbers of bytes per call, in turn.
struct Trickle<'a> {
    data: &'a [u8],
    pos: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let step = self.sizes[self.turn % self.sizes.len()];
        self.turn += 1;
        let n = step.min(buf.len()).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The spec's length for a message, in bytes.
fn spec_len(msg: &Message) -> usize {
    let ceil4 = |n: usize| n.div_ceil(4) * 4;
    match msg {
        Message::DiscoverTracker | Message::GetFileInfo => 8,
        Message::TrackerInfo(t) => 8 + 8 + ceil4(t.name.len()),
        Message::FileInfo(f) => {
            8 + 4
                + ceil4(f.filename.len())
                + f.chunks
                    .iter()
                    .map(|c| 24 + 8 * c.peers.len())
                    .sum::<usize>()
        }
        Message::GetChunk(_) => 28,
        Message::Chunk { data, .. } => 8 + 24 + ceil4(data.len()),
        Message::Error(_) => 12,
    }
}

// ---------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encode_matches_the_spec_and_decodes_back(msg in arb_message()) {
        let bytes = msg.encode().unwrap();
        prop_assert_eq!(&bytes, &spec_encode(&msg));
        prop_assert_eq!(bytes.len(), spec_len(&msg));
        prop_assert_eq!(bytes.len() % 4, 0);
        prop_assert_eq!(&bytes[..4], &[1, msg.msg_type() as u8, 0, 0][..]);
        let words = u32::from_be_bytes(bytes[4..8].try_into().unwrap());
        prop_assert_eq!(words as usize * 4, bytes.len());
        prop_assert_eq!(Message::decode(&bytes, STRICT), Ok(msg.clone()));
        if msg.msg_type() != MsgType::Chunk {
            // The tolerance only concerns type 5.
            let tol = Tolerance { file_info_as_chunk_type: true };
            prop_assert_eq!(Message::decode(&bytes, tol), Ok(msg.clone()));
        }
    }

    #[test]
    fn read_message_round_trip_at_the_exact_limit(msg in arb_message()) {
        let bytes = msg.encode().unwrap();
        let mut r = Cursor::new(&bytes);
        prop_assert_eq!(wire::read_message(&mut r, bytes.len(), STRICT).unwrap(), msg);
        prop_assert_eq!(r.position(), bytes.len() as u64);
        prop_assert!(matches!(
            wire::read_message(&mut r, bytes.len(), STRICT),
            Err(ReadError::Closed)
        ));
        // One word less is over the limit, and the body is left unread.
        let mut r = Cursor::new(&bytes);
        let res = wire::read_message(&mut r, bytes.len() - 4, STRICT);
        prop_assert!(
            matches!(&res, Err(ReadError::Frame(DecodeError::TooLong { .. }))),
            "{:?}", res
        );
        prop_assert_eq!(r.position(), HEADER_LEN as u64);
    }

    #[test]
    fn read_message_round_trip_of_a_stream_in_small_reads(
        msgs in prop::collection::vec(arb_message(), 0..6),
        sizes in prop::collection::vec(1usize..=9, 1..5),
    ) {
        let mut stream = Vec::new();
        for m in &msgs {
            stream.extend_from_slice(&m.encode().unwrap());
        }
        let mut r = Trickle { data: &stream, pos: 0, sizes, turn: 0 };
        for m in &msgs {
            prop_assert_eq!(&wire::read_message(&mut r, 1 << 20, STRICT).unwrap(), m);
        }
        prop_assert!(matches!(
            wire::read_message(&mut r, 1 << 20, STRICT),
            Err(ReadError::Closed)
        ));
    }

    #[test]
    fn chunk_round_trip_through_read_chunk_reply(
        hash in arb_hash(),
        data in arb_content(),
        extra_limit in 0usize..8,
        sizes in prop::collection::vec(1usize..=64, 1..4),
    ) {
        let msg = Message::Chunk { hash, data: data.clone() };
        let mut stream = msg.encode().unwrap();
        let next = Message::Error(ErrorCode::ChunkNotFound).encode().unwrap();
        stream.extend_from_slice(&next);
        let prefix = wire::chunk_prefix(&hash, data.len() as u64).unwrap();
        prop_assert_eq!(&stream[..CHUNK_PREFIX_LEN], &prefix[..]);

        let mut r = Trickle { data: &stream, pos: 0, sizes, turn: 0 };
        let mut buf = vec![0xAA; 5]; // stale content must be cleared
        let h = wire::read_header(&mut r).unwrap();
        let max_content = data.len() + extra_limit;
        let got = wire::read_chunk_reply(&mut r, &h, max_content, &mut buf).unwrap();
        prop_assert_eq!(got, ChunkReply::Chunk(hash));
        prop_assert_eq!(&buf, &data);
        // Padding consumed: the next reply starts right here.
        let h = wire::read_header(&mut r).unwrap();
        prop_assert_eq!(
            wire::read_chunk_reply(&mut r, &h, max_content, &mut buf).unwrap(),
            ChunkReply::Error(ErrorCode::ChunkNotFound)
        );

        // One byte under the content's length is refused.
        if !data.is_empty() {
            let mut r = Cursor::new(&stream);
            let h = wire::read_header(&mut r).unwrap();
            let res = wire::read_chunk_reply(&mut r, &h, data.len() - 1, &mut buf);
            prop_assert!(matches!(res, Err(ReadError::Frame(_))), "{:?}", res);
        }
    }

    #[test]
    fn error_round_trip_through_read_chunk_reply(code in arb_error_code()) {
        let bytes = Message::Error(code).encode().unwrap();
        let mut r = Cursor::new(&bytes);
        let h = wire::read_header(&mut r).unwrap();
        let mut buf = Vec::new();
        prop_assert_eq!(
            wire::read_chunk_reply(&mut r, &h, 0, &mut buf).unwrap(),
            ChunkReply::Error(code)
        );
        prop_assert_eq!(r.position(), 12);
    }
}

proptest! {
    // Big FILE_INFOs are slow to build in debug: a handful of cases.
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn file_info_round_trip_up_to_65535_chunks(
        count in 0usize..=65_535,
        name in arb_name(),
        seed in any::<u32>(),
    ) {
        let fi = many_chunks(count, &name, seed);
        let msg = Message::FileInfo(fi);
        let bytes = msg.encode().unwrap();
        prop_assert_eq!(bytes.len(), spec_len(&msg));
        prop_assert_eq!(&bytes[8..10], &(count as u16).to_be_bytes()[..]);
        prop_assert_eq!(Message::decode(&bytes, STRICT), Ok(msg.clone()));
        let mut r = Cursor::new(&bytes);
        prop_assert_eq!(wire::read_message(&mut r, bytes.len(), STRICT).unwrap(), msg);
    }
}

/// A FILE_INFO of `count` chunks, every third one with a peer and every seventh with two.
fn many_chunks(count: usize, name: &str, seed: u32) -> FileInfo {
    let peer = |i: usize| SocketAddrV4::new(Ipv4Addr::from(seed ^ i as u32), i as u16);
    FileInfo {
        filename: name.to_string(),
        chunks: (0..count)
            .map(|i| {
                let mut h = [0u8; 20];
                h[..4].copy_from_slice(&(i as u32).to_be_bytes());
                h[16..].copy_from_slice(&seed.to_be_bytes());
                let peers = match (i % 3, i % 7) {
                    (_, 0) => vec![peer(i), peer(i + 1)],
                    (0, _) => vec![peer(i)],
                    _ => vec![],
                };
                ChunkRecord {
                    hash: ChunkHash::from_bytes(h),
                    peers,
                }
            })
            .collect(),
    }
}

#[test]
fn file_info_with_exactly_65535_chunks() {
    let fi = many_chunks(65_535, "big.iso", 0x5EED);
    let msg = Message::FileInfo(fi);
    let bytes = msg.encode().unwrap();
    assert_eq!(bytes.len(), spec_len(&msg));
    assert_eq!(bytes[8..10], [0xFF, 0xFF]);
    assert_eq!(Message::decode(&bytes, STRICT), Ok(msg.clone()));
    let mut r = Cursor::new(&bytes);
    assert_eq!(
        wire::read_message(&mut r, bytes.len(), STRICT).unwrap(),
        msg
    );
    // One more does not fit the u16 count.
    let Message::FileInfo(mut fi) = msg else {
        unreachable!()
    };
    fi.chunks.push(fi.chunks[0].clone());
    assert_eq!(
        Message::FileInfo(fi).encode(),
        Err(EncodeError::TooManyChunks(65_536))
    );
}

#[test]
fn u16_limits_of_peers_and_names() {
    let peers: Vec<SocketAddrV4> = (0..65_535u32)
        .map(|i| SocketAddrV4::new(Ipv4Addr::from(i), i as u16))
        .collect();
    let mut fi = FileInfo {
        filename: "n".repeat(65_535),
        chunks: vec![ChunkRecord {
            hash: ChunkHash::from_bytes([3; 20]),
            peers,
        }],
    };
    let msg = Message::FileInfo(fi.clone());
    let bytes = msg.encode().unwrap();
    assert_eq!(bytes.len(), spec_len(&msg));
    assert_eq!(Message::decode(&bytes, STRICT), Ok(msg));

    fi.chunks[0]
        .peers
        .push(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1));
    assert_eq!(
        Message::FileInfo(fi.clone()).encode(),
        Err(EncodeError::TooManyPeers(65_536))
    );
    fi.chunks[0].peers.clear();
    fi.filename.push('n');
    assert_eq!(
        Message::FileInfo(fi).encode(),
        Err(EncodeError::NameTooLong(65_536))
    );

    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8000);
    let ok = Message::TrackerInfo(TrackerInfo {
        addr,
        name: "t".repeat(65_535),
    });
    assert_eq!(Message::decode(&ok.encode().unwrap(), STRICT), Ok(ok));
    let too_long = Message::TrackerInfo(TrackerInfo {
        addr,
        name: "t".repeat(65_536),
    });
    assert_eq!(too_long.encode(), Err(EncodeError::NameTooLong(65_536)));
}

// ---------------------------------------------------------------------------------------
// Arbitrary input
// ---------------------------------------------------------------------------------------

fn arb_max_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(HEADER_LEN),
        Just(12),
        Just(64),
        Just(4096),
        0usize..=1024,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decode_never_panics(bytes in arb_input(), tol in arb_tolerance()) {
        let res = Message::decode(&bytes, tol);
        // Whatever decodes must encode back to a message that decodes the same.
        if let Ok(m) = res {
            let again = m.encode().unwrap();
            prop_assert_eq!(again.len(), bytes.len());
            prop_assert_eq!(Message::decode(&again, tol), Ok(m));
        }
    }

    #[test]
    fn read_message_never_panics_nor_allocates_past_max_len(
        bytes in arb_input(),
        max_len in arb_max_len(),
        tol in arb_tolerance(),
    ) {
        let mut r = Cursor::new(&bytes);
        let (res, peak) = peak_alloc(|| wire::read_message(&mut r, max_len, tol));
        let bound = alloc_bound(max_len, bytes.get(1).copied(), tol);
        prop_assert!(peak <= bound, "peak {} over {} for {:?}", peak, bound, res);
        let consumed = r.position() as usize;
        match res {
            // A whole message was consumed: Message::decode on exactly those bytes agrees.
            Ok(m) => {
                prop_assert!(consumed <= max_len);
                prop_assert_eq!(Message::decode(&bytes[..consumed], tol), Ok(m));
            }
            Err(ReadError::Message(e)) => {
                prop_assert!(consumed <= max_len);
                prop_assert_eq!(Message::decode(&bytes[..consumed], tol), Err(e));
            }
            // Framing errors stop right after the header.
            Err(ReadError::Frame(_)) => prop_assert_eq!(consumed, HEADER_LEN),
            Err(ReadError::Closed) => prop_assert!(bytes.is_empty()),
            Err(ReadError::Io(e)) => {
                prop_assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
            }
        }
    }

    #[test]
    fn read_chunk_reply_never_panics_nor_allocates_past_its_limits(
        bytes in arb_input(),
        max_content in prop_oneof![Just(0usize), 0usize..=600, Just(512 * 1024)],
    ) {
        let mut r = Cursor::new(&bytes);
        let mut buf = Vec::new();
        let (res, peak) = peak_alloc(|| {
            let h = wire::read_header(&mut r)?;
            wire::read_chunk_reply(&mut r, &h, max_content, &mut buf)
        });
        // Content is reserved up to max_content; any other reply is read whole up to 64
        // bytes (an ERROR is 12).
        prop_assert!(peak <= max_content.max(64) + SLACK, "peak {} for {:?}", peak, res);
        if let Ok(ChunkReply::Chunk(hash)) = res {
            prop_assert!(buf.len() <= max_content);
            // It was a real CHUNK: the whole-message decoder agrees on it.
            let consumed = r.position() as usize;
            prop_assert_eq!(
                Message::decode(&bytes[..consumed], STRICT),
                Ok(Message::Chunk { hash, data: buf.clone() })
            );
        }
    }
}
