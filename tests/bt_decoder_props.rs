//! Property tests over arbitrary bytes for the BitTorrent and bvTorrent decoders that the
//! fuzz targets cover (`fuzz/fuzz_targets/{peer_wire,udp_tracker,udp_reply,http_announce,
//! bv_lines}.rs`): they never panic, what they accept re-encodes to what they read, and
//! the largest single allocation is bounded by the limits, not by a count read from input.
//!
//! The allocation bound is measured with a counting global allocator, as in
//! tests/wire_props.rs: the largest single request made by the current thread while a
//! measurement runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;
use std::io::Cursor;
use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use swarmlet::bt::announce::encode_compact;
use swarmlet::bt::announce::udp::{parse_announce_reply, parse_scrape_reply};
use swarmlet::bt::peer_wire::{
    BlockRequest, HANDSHAKE_LEN, Handshake, Limits, Message, PREFIX_LEN, ReadError, id,
    read_message,
};
use swarmlet::bt::tracker::announce::{
    Announce, Event, MAX_PARAMS, parse_announce, parse_query, parse_scrape,
};
use swarmlet::bt::tracker::http::parse_head;
use swarmlet::bt::tracker::udp::{Secret, connection_id, handle_datagram};
use swarmlet::bt::tracker::{InfoHash, PeerId, Settings, Tracker};
use swarmlet::bv::codec::{
    ChunkInfo, ClientEntry, Descriptor, encode_client_list, parse_registration, read_client_list,
};
use swarmlet::bv::tracker::parse_mask_update;
use swarmlet::digest::Digest;

// ---------------------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------------------

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

/// Runs `f` and returns its result with the largest single allocation it requested.
fn peak_alloc<R>(f: impl FnOnce() -> R) -> (R, usize) {
    PEAK.with(|p| p.set(0));
    MEASURING.with(|m| m.set(true));
    let r = f();
    MEASURING.with(|m| m.set(false));
    (r, PEAK.with(Cell::get))
}

/// Room for error strings and small vectors, on top of the input-sized buffers.
const SLACK: usize = 4096;

// ---------------------------------------------------------------------------------------
// Peer wire
// ---------------------------------------------------------------------------------------

fn arb_peer_message(num_pieces: u32) -> impl Strategy<Value = Message> {
    let idx = 0..num_pieces.max(1);
    let req = (idx.clone(), any::<u32>(), 1u32..=16 * 1024).prop_map(|(index, begin, length)| {
        BlockRequest {
            index,
            begin,
            length,
        }
    });
    let bits = num_pieces as usize;
    prop_oneof![
        Just(Message::KeepAlive),
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        idx.clone().prop_map(Message::Have),
        proptest::collection::vec(any::<bool>(), bits).prop_map(move |b| Message::Bitfield(
            swarmlet::bt::peer_wire::bitfield_from(b.len() as u32, |i| b[i as usize])
        )),
        req.clone().prop_map(Message::Request),
        req.prop_map(Message::Cancel),
        (
            idx,
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(index, begin, data)| Message::Piece { index, begin, data }),
        any::<u16>().prop_map(Message::Port),
    ]
}

fn peer_messages() -> impl Strategy<Value = (u32, Vec<Message>)> {
    (1u32..200).prop_flat_map(|n| {
        (
            Just(n),
            proptest::collection::vec(arb_peer_message(n), 0..20),
        )
    })
}

/// What `peer_wire_stream_of_arbitrary_bytes` checks, for one stream.
fn check_peer_stream(limits: &Limits, stream: &[u8]) -> Result<(), TestCaseError> {
    let skip = limits.max_len(id::PIECE).unwrap() as usize;
    let mut r = Cursor::new(stream);
    loop {
        let start = r.position() as usize;
        let (res, peak) = peak_alloc(|| read_message(&mut r, limits));
        let whole = &stream[start..r.position() as usize];
        if let Some(&msg_id) = whole.get(PREFIX_LEN) {
            let max = limits.max_len(msg_id).map_or(skip, |m| m as usize);
            prop_assert!(whole.len() <= PREFIX_LEN + max);
            prop_assert!(peak <= max + SLACK, "{peak} bytes allocated, limit {max}");
        }
        match res {
            Ok(m) => prop_assert_eq!(m.to_bytes().unwrap(), whole),
            Err(ReadError::Message(_)) => {
                let len = u32::from_be_bytes(whole[..4].try_into().unwrap()) as usize;
                prop_assert_eq!(whole.len(), PREFIX_LEN + len);
            }
            Err(ReadError::Closed) => {
                prop_assert_eq!(start, stream.len());
                return Ok(());
            }
            Err(_) => return Ok(()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn peer_wire_stream_of_arbitrary_bytes(
        num_pieces in 0u32..100_000,
        stream in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        check_peer_stream(&Limits::new(num_pieces), &stream)?;
    }

    #[test]
    fn peer_wire_huge_prefixes_allocate_nothing_big(
        num_pieces in 0u32..100_000,
        id in any::<u8>(),
        len in any::<u32>(),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut stream = len.to_be_bytes().to_vec();
        stream.push(id);
        stream.extend_from_slice(&tail);
        check_peer_stream(&Limits::new(num_pieces), &stream)?;
    }

    #[test]
    fn peer_wire_messages_round_trip((n, msgs) in peer_messages()) {
        let limits = Limits::new(n);
        let mut bytes = Vec::new();
        for m in &msgs {
            m.encode(&mut bytes).unwrap();
        }
        let mut r = Cursor::new(&bytes[..]);
        for m in &msgs {
            prop_assert_eq!(&read_message(&mut r, &limits).unwrap(), m);
        }
        prop_assert!(matches!(read_message(&mut r, &limits), Err(ReadError::Closed)));
    }

    #[test]
    fn handshake_of_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), HANDSHAKE_LEN)) {
        let b: [u8; HANDSHAKE_LEN] = b.try_into().unwrap();
        if let Ok(h) = Handshake::parse(&b) {
            prop_assert_eq!(h.encode(), b);
        }
    }
}

// ---------------------------------------------------------------------------------------
// UDP tracker: both sides
// ---------------------------------------------------------------------------------------

fn arb_peers(v6: bool) -> impl Strategy<Value = Vec<SocketAddr>> {
    let one = if v6 {
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(a, p)| SocketAddr::from((std::net::Ipv6Addr::from(a), p)))
            .boxed()
    } else {
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(a, p)| SocketAddr::from((std::net::Ipv4Addr::from(a), p)))
            .boxed()
    };
    proptest::collection::vec(one, 0..80)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn udp_replies_of_arbitrary_bytes(
        v6 in any::<bool>(),
        want in 0usize..100,
        d in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let (r, peak) = peak_alloc(|| parse_announce_reply(&d, v6));
        prop_assert!(peak <= 2 * d.len() * 32 + SLACK);
        if let Ok(r) = r {
            let (c4, c6) = encode_compact(&r.peers);
            prop_assert_eq!(if v6 { c6 } else { c4 }, &d[20..]);
        }
        if let Ok(e) = parse_scrape_reply(&d, want) {
            prop_assert_eq!(e.len(), want);
            prop_assert_eq!(d.len(), 8 + 12 * want);
        }
    }

    #[test]
    fn udp_announce_reply_round_trip(
        v6 in any::<bool>(),
        head in any::<[u32; 5]>(),
        peers in arb_peers(false),
        peers6 in arb_peers(true),
    ) {
        let peers = if v6 { peers6 } else { peers };
        let mut d = Vec::new();
        for w in head {
            d.extend_from_slice(&w.to_be_bytes());
        }
        let (c4, c6) = encode_compact(&peers);
        d.extend_from_slice(if v6 { &c6 } else { &c4 });
        let r = parse_announce_reply(&d, v6).unwrap();
        prop_assert_eq!(r.peers, peers);
        prop_assert_eq!(r.interval, Duration::from_secs(head[2].into()));
        prop_assert_eq!((r.leechers, r.seeders), (Some(head[3]), Some(head[4])));
    }

    #[test]
    fn udp_tracker_requests_of_arbitrary_bytes(
        with_id in any::<bool>(),
        v6 in any::<bool>(),
        action in 0u32..5,
        mut d in proptest::collection::vec(any::<u8>(), 0..1600),
    ) {
        let tracker = Tracker::new(Settings::default(), None);
        let secret = Secret::random();
        let client: SocketAddr = if v6 { "[::1]:6881" } else { "127.0.0.1:6881" }.parse().unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        if d.len() >= 16 {
            if with_id {
                d[..8].copy_from_slice(&connection_id(&secret, client, now).to_be_bytes());
            }
            d[8..12].copy_from_slice(&action.to_be_bytes());
        }
        if let Some(reply) = handle_datagram(&tracker, &secret, &d, client, now) {
            prop_assert!(reply.len() >= 8 && reply.len() <= 1500);
            prop_assert_eq!(&reply[4..8], &d[12..16]);
            let got = u32::from_be_bytes(reply[..4].try_into().unwrap());
            prop_assert!(got == action || got == 3);
            if got == 1 {
                prop_assert!(parse_announce_reply(&reply, v6).is_ok());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP announce queries (tracker side)
// ---------------------------------------------------------------------------------------

fn pct(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "%{b:02x}");
        s
    })
}

fn arb_announce() -> impl Strategy<Value = Announce> {
    (
        any::<[u8; 20]>(),
        any::<[u8; 20]>(),
        1u16..,
        any::<[u64; 3]>(),
        prop_oneof![
            Just(Event::None),
            Just(Event::Started),
            Just(Event::Completed),
            Just(Event::Stopped)
        ],
        0usize..10_000,
        any::<(bool, bool)>(),
    )
        .prop_map(
            |(ih, id, port, [u, d, l], event, numwant, (compact, no_peer_id))| Announce {
                info_hash: InfoHash(ih),
                peer_id: PeerId(id),
                port,
                uploaded: u,
                downloaded: d,
                left: l,
                event,
                numwant,
                compact,
                no_peer_id,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn http_queries_of_arbitrary_bytes(q in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(p) = parse_query(&q) {
            prop_assert!(p.len() <= MAX_PARAMS);
        }
        let _ = parse_announce(&q);
        let _ = parse_scrape(&q);
        if let Ok(h) = parse_head(&q) {
            prop_assert!(h.target.starts_with(b"/"));
        }
    }

    #[test]
    fn http_query_like_text(parts in proptest::collection::vec(
        ("(info_hash|peer_id|port|left|uploaded|downloaded|event|numwant|compact|x)",
         "[%0-9a-fA-F&=+.a-z]{0,24}"), 0..12)) {
        let q: Vec<String> = parts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let q = q.join("&");
        let _ = parse_announce(q.as_bytes());
        let _ = parse_scrape(q.as_bytes());
    }

    #[test]
    fn http_announce_round_trip(a in arb_announce()) {
        let mut q = format!(
            "info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&numwant={}&compact={}&no_peer_id={}",
            pct(&a.info_hash.0), pct(&a.peer_id.0), a.port, a.uploaded, a.downloaded, a.left,
            a.numwant, u8::from(a.compact), u8::from(a.no_peer_id)
        );
        q += match a.event {
            Event::None => "",
            Event::Started => "&event=started",
            Event::Completed => "&event=completed",
            Event::Stopped => "&event=stopped",
        };
        prop_assert_eq!(parse_announce(q.as_bytes()), Ok(a));
    }
}

// ---------------------------------------------------------------------------------------
// bvTorrent lines
// ---------------------------------------------------------------------------------------

fn arb_descriptor() -> impl Strategy<Value = Descriptor> {
    (
        "[a-zA-Z0-9 ._-]{1,40}".prop_filter("not . or ..", |n| n != "." && n != ".."),
        1u64..1_000_000,
        proptest::collection::vec((any::<u64>(), any::<[u8; 8]>()), 0..30),
    )
        .prop_map(|(name, max, chunks)| {
            // Descriptors are uniform (every chunk the full size but a shorter last
            // one): `Descriptor::read` refuses any other.
            let n = chunks.len();
            Descriptor {
                name: name.into_bytes(),
                max_chunk_size: max,
                chunks: chunks
                    .into_iter()
                    .enumerate()
                    .map(|(i, (s, seed))| ChunkInfo {
                        size: if i + 1 == n { s % max + 1 } else { max },
                        digest: Digest::of(swarmlet::bv::codec::ALGO, &seed),
                    })
                    .collect(),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn bv_descriptor_of_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..400)) {
        let (r, peak) = peak_alloc(|| Descriptor::read(&mut &b[..]));
        prop_assert!(peak <= 64 * b.len() + SLACK, "{peak} bytes allocated for {} input bytes", b.len());
        if let Ok(d) = r {
            prop_assert_eq!(Descriptor::read(&mut &d.encode()[..]).unwrap(), d);
        }
    }

    #[test]
    fn bv_descriptor_round_trip(d in arb_descriptor()) {
        prop_assert_eq!(Descriptor::read(&mut &d.encode()[..]).unwrap(), d);
    }

    #[test]
    fn bv_client_lines_of_arbitrary_bytes(
        n in 0usize..40,
        b in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let (r, peak) = peak_alloc(|| read_client_list(&mut &b[..], n));
        prop_assert!(peak <= 64 * b.len() + SLACK, "{peak} bytes allocated for {} input bytes", b.len());
        if let Ok(l) = r {
            prop_assert!(l.iter().all(|e| e.mask.len() == n));
            let enc = encode_client_list(l.iter());
            prop_assert_eq!(read_client_list(&mut &enc[..], n).unwrap(), l);
        }
        if let Ok((port, mask)) = parse_registration(&b, n) {
            let mut enc = format!("{port},").into_bytes();
            enc.extend_from_slice(&mask);
            prop_assert_eq!(parse_registration(&enc, n).unwrap(), (port, mask));
        }
        if let Ok(m) = parse_mask_update(b.clone(), n) {
            prop_assert_eq!(m.len(), n);
            prop_assert_eq!(&b[..n], &m[..]);
        }
    }

    #[test]
    fn bv_client_list_round_trip(
        n in 0usize..20,
        entries in proptest::collection::vec(("[0-9.:a-f]{0,30}", any::<u16>(), any::<u64>()), 0..20),
    ) {
        let entries: Vec<ClientEntry> = entries
            .into_iter()
            .map(|(ip, port, bits)| ClientEntry {
                ip,
                port,
                mask: (0..n).map(|i| if bits >> (i % 64) & 1 == 1 { b'1' } else { b'0' }).collect(),
            })
            .collect();
        let enc = encode_client_list(entries.iter());
        prop_assert_eq!(read_client_list(&mut &enc[..], n).unwrap(), entries);
    }
}

/// A descriptor head announcing a million chunks costs the bytes that arrive, not a
/// buffer sized by the announced count (the count is a claim; the lines are not there).
#[test]
fn bv_descriptor_count_does_not_size_a_buffer() {
    let b = b"f\n1048576\n1000000\n";
    let (r, peak) = peak_alloc(|| Descriptor::read(&mut &b[..]));
    assert!(r.is_err());
    assert!(
        peak < 1 << 20,
        "{peak} bytes allocated for a {}-byte input",
        b.len()
    );
}
