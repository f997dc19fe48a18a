//! Every test vector of `docs/PROTOCOL.md` (section "Test vectors"), byte for byte, both ways.
//!
//! The expected bytes are written out by hand from the protocol description (never produced by the codec),
//! so a change to the encoder's layout shows up here as an exact byte difference.

mod common;

use std::io::Cursor;
use std::net::{Ipv4Addr, SocketAddrV4};

use common::hex;
use swarmlet::hash::ChunkHash;
use swarmlet::wire::{
    self, CHUNK_PREFIX_LEN, ChunkRecord, EncodeError, ErrorCode, FileInfo, HEADER_LEN, Header,
    Message, MsgType, Tolerance, TrackerInfo,
};

/// Checks `msg` encodes to exactly `bytes`, and that `bytes` decode to exactly `msg`, both
/// whole (`Message::decode`) and from a stream (`read_message`, limit = exact size).
fn both_ways(msg: &Message, bytes: &[u8]) {
    let encoded = msg.encode().expect("encodes");
    assert_eq!(encoded, bytes, "encode of {msg:?}");
    assert_eq!(encoded.len() % 4, 0);
    assert_eq!(
        Message::decode(bytes, Tolerance::default()).as_ref(),
        Ok(msg),
        "decode"
    );
    let mut r = Cursor::new(bytes);
    let got = wire::read_message(&mut r, bytes.len(), Tolerance::default()).expect("reads");
    assert_eq!(&got, msg, "read_message");
    assert_eq!(
        r.position(),
        bytes.len() as u64,
        "read_message consumed it all"
    );
}

fn hash_0_to_19() -> ChunkHash {
    let mut b = [0u8; 20];
    for (i, x) in b.iter_mut().enumerate() {
        *x = i as u8;
    }
    ChunkHash::from_bytes(b)
}

fn msg_length_field(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes[4..8].try_into().unwrap())
}

#[test]
fn discover_tracker() {
    both_ways(&Message::DiscoverTracker, &hex("01 00 0000 00000002"));
}

#[test]
fn get_file_info() {
    both_ways(&Message::GetFileInfo, &hex("01 02 0000 00000002"));
}

#[test]
fn get_chunk() {
    both_ways(
        &Message::GetChunk(hash_0_to_19()),
        &hex("01 04 0000 00000007 000102030405060708090a0b0c0d0e0f10111213"),
    );
    // A real SHA-1 travels raw, not as hex text.
    let abc = ChunkHash::from_hex("a9993e364706816aba3e25717850c26c9cd0d89d").unwrap();
    both_ways(
        &Message::GetChunk(abc),
        &hex("01 04 0000 00000007 a9993e364706816aba3e25717850c26c9cd0d89d"),
    );
}

#[test]
fn error_chunk_not_found() {
    both_ways(
        &Message::Error(ErrorCode::ChunkNotFound),
        &hex("01 06 0000 00000003 0002 0000"),
    );
}

#[test]
fn error_invalid_request() {
    both_ways(
        &Message::Error(ErrorCode::InvalidRequest),
        &hex("01 06 0000 00000003 0001 0000"),
    );
}

#[test]
fn error_invalid_message_format_and_unknown_codes() {
    both_ways(
        &Message::Error(ErrorCode::InvalidMessageFormat),
        &hex("01 06 0000 00000003 0000 0000"),
    );
    // Codes outside the spec's three are kept, so they can be reported.
    both_ways(
        &Message::Error(ErrorCode::Other(0xBEEF)),
        &hex("01 06 0000 00000003 beef 0000"),
    );
}

#[test]
fn tracker_info_localhost_tracker() {
    let msg = Message::TrackerInfo(TrackerInfo {
        addr: SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8000),
        name: "tracker".to_string(),
    });
    both_ways(
        &msg,
        &hex("01 01 0000 00000006 7f000001 1f40 0007 747261636b6572 00"),
    );
}

/// Content bytes that are not all alike, so an offset error cannot go unnoticed.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn check_big_chunk(len: usize, msg_length: u32, expected_prefix: &str) {
    let hash = hash_0_to_19();
    let data = pattern(len);
    let msg = Message::Chunk {
        hash,
        data: data.clone(),
    };
    let bytes = msg.encode().unwrap();
    assert_eq!(msg_length_field(&bytes), msg_length);
    assert_eq!(bytes.len(), msg_length as usize * 4);
    assert_eq!(bytes[..CHUNK_PREFIX_LEN], hex(expected_prefix)[..]);
    assert_eq!(bytes[CHUNK_PREFIX_LEN..CHUNK_PREFIX_LEN + len], data[..]);
    // Both lengths are multiples of 4: no padding at all.
    assert_eq!(bytes.len(), CHUNK_PREFIX_LEN + len);
    assert_eq!(
        wire::chunk_prefix(&hash, len as u64).unwrap()[..],
        bytes[..CHUNK_PREFIX_LEN]
    );
    both_ways(&msg, &bytes);
}

#[test]
fn chunk_of_524288_bytes() {
    check_big_chunk(
        524_288,
        131_080,
        "01 05 0000 00020008 000102030405060708090a0b0c0d0e0f10111213 00080000",
    );
}

#[test]
fn chunk_of_354272_bytes() {
    check_big_chunk(
        354_272,
        88_576,
        "01 05 0000 00015a00 000102030405060708090a0b0c0d0e0f10111213 000567e0",
    );
}

#[test]
fn small_chunks_with_padding() {
    let h = hash_0_to_19();
    let hash_hex = "000102030405060708090a0b0c0d0e0f10111213";
    let cases: [(&[u8], &str); 6] = [
        (b"", "00000008 HASH 00000000"),
        (b"a", "00000009 HASH 00000001 61 000000"),
        (b"ab", "00000009 HASH 00000002 6162 0000"),
        (b"abc", "00000009 HASH 00000003 616263 00"),
        (b"abcd", "00000009 HASH 00000004 61626364"),
        (b"abcde", "0000000a HASH 00000005 6162636465 000000"),
    ];
    for (data, tail) in cases {
        let expected = hex(&format!("01 05 0000 {}", tail.replace("HASH", hash_hex)));
        let msg = Message::Chunk {
            hash: h,
            data: data.to_vec(),
        };
        both_ways(&msg, &expected);
        assert_eq!(
            wire::chunk_prefix(&h, data.len() as u64).unwrap()[..],
            expected[..CHUNK_PREFIX_LEN],
            "chunk_prefix for {} bytes",
            data.len()
        );
    }
}

#[test]
fn chunk_prefix_agrees_with_encode_for_every_small_length() {
    let h = ChunkHash::of(b"prefix");
    for len in 0..=64usize {
        let bytes = Message::Chunk {
            hash: h,
            data: pattern(len),
        }
        .encode()
        .unwrap();
        let prefix = wire::chunk_prefix(&h, len as u64).unwrap();
        assert_eq!(prefix[..], bytes[..CHUNK_PREFIX_LEN], "len {len}");
        // What a streaming sender adds after the prefix: content then padding.
        assert_eq!(
            bytes.len(),
            CHUNK_PREFIX_LEN + len + wire::padding(len),
            "len {len}"
        );
        assert!(
            bytes[CHUNK_PREFIX_LEN + len..].iter().all(|&b| b == 0),
            "padding is zeros"
        );
    }
}

#[test]
fn chunk_prefix_at_the_u32_limit() {
    let h = hash_0_to_19();
    // The largest content a CHUNK can carry: 8 + ceil((2^32-1)/4) words = 0x40000008.
    let p = wire::chunk_prefix(&h, u64::from(u32::MAX)).unwrap();
    assert_eq!(
        p[..],
        hex("01 05 0000 40000008 000102030405060708090a0b0c0d0e0f10111213 ffffffff")[..]
    );
    assert_eq!(
        wire::chunk_prefix(&h, 1 << 32),
        Err(EncodeError::TooLong(1 << 32))
    );
}

/// The spec's FILE_INFO example, laid out as `create_chunks` would for 7 chunks:
/// chunks 1-3 on alice, 4-5 on alice and bob, 6-7 on bob: 3 + 4 + 2 = 9 (chunk, peer) pairs.
const FILE_INFO_TEST_BIN: &str = concat!(
    "01 03 0000 00000041",         // header: 65 words = 260 bytes
    "0007 0008 74657374 2e62696e", // 7 chunks, "test.bin", no pad
    "1111111111111111111111111111111111111111 0001 0000", // chunk 0
    "7f000001 1f41 0000",          // alice
    "2222222222222222222222222222222222222222 0001 0000", // chunk 1
    "7f000001 1f41 0000",          // alice
    "3333333333333333333333333333333333333333 0001 0000", // chunk 2
    "7f000001 1f41 0000",          // alice
    "4444444444444444444444444444444444444444 0002 0000", // chunk 3
    "7f000001 1f41 0000",          // alice
    "7f000001 1f42 0000",          // bob
    "5555555555555555555555555555555555555555 0002 0000", // chunk 4
    "7f000001 1f41 0000",          // alice
    "7f000001 1f42 0000",          // bob
    "6666666666666666666666666666666666666666 0001 0000", // chunk 5
    "7f000001 1f42 0000",          // bob
    "7777777777777777777777777777777777777777 0001 0000", // chunk 6
    "7f000001 1f42 0000",          // bob
);

fn file_info_test_bin() -> FileInfo {
    let alice = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8001);
    let bob = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8002);
    let peers: [&[SocketAddrV4]; 7] = [
        &[alice],
        &[alice],
        &[alice],
        &[alice, bob],
        &[alice, bob],
        &[bob],
        &[bob],
    ];
    FileInfo {
        filename: "test.bin".to_string(),
        chunks: peers
            .iter()
            .enumerate()
            .map(|(i, p)| ChunkRecord {
                hash: ChunkHash::from_bytes([0x11 * (i as u8 + 1); 20]),
                peers: p.to_vec(),
            })
            .collect(),
    }
}

#[test]
fn file_info_test_bin_7_chunks_9_pairs() {
    let bytes = hex(FILE_INFO_TEST_BIN);
    assert_eq!(bytes.len(), 260, "8+4+8+7*24+9*8");
    assert_eq!(msg_length_field(&bytes), 65);
    let fi = file_info_test_bin();
    assert_eq!(fi.chunks.iter().map(|c| c.peers.len()).sum::<usize>(), 9);
    both_ways(&Message::FileInfo(fi), &bytes);
}

#[test]
fn file_info_names_are_padded_and_empty_file_info() {
    // Empty name, no chunks: head is 4 bytes, no padding.
    both_ways(
        &Message::FileInfo(FileInfo {
            filename: String::new(),
            chunks: vec![],
        }),
        &hex("01 03 0000 00000003 0000 0000"),
    );
    // 1-byte name: 3 padding bytes.
    both_ways(
        &Message::FileInfo(FileInfo {
            filename: "x".to_string(),
            chunks: vec![],
        }),
        &hex("01 03 0000 00000004 0000 0001 78 000000"),
    );
    // A chunk nobody has: record with peers_count 0.
    both_ways(
        &Message::FileInfo(FileInfo {
            filename: "ab".to_string(),
            chunks: vec![ChunkRecord {
                hash: hash_0_to_19(),
                peers: vec![],
            }],
        }),
        &hex("01 03 0000 0000000a 0001 0002 6162 0000 \
             000102030405060708090a0b0c0d0e0f10111213 0000 0000"),
    );
}

#[test]
fn tracker_info_padding_for_every_name_length_mod_4() {
    let addr = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 254), 9000);
    let cases = [
        ("", "00000004 0a0000fe 2328 0000"),
        ("a", "00000005 0a0000fe 2328 0001 61 000000"),
        ("ab", "00000005 0a0000fe 2328 0002 6162 0000"),
        ("abc", "00000005 0a0000fe 2328 0003 616263 00"),
        ("abcd", "00000005 0a0000fe 2328 0004 61626364"),
        // Lengths are in bytes, not characters: "é" is 2 bytes.
        ("é", "00000005 0a0000fe 2328 0002 c3a9 0000"),
    ];
    for (name, tail) in cases {
        let msg = Message::TrackerInfo(TrackerInfo {
            addr,
            name: name.to_string(),
        });
        both_ways(&msg, &hex(&format!("01 01 0000 {tail}")));
    }
}

#[test]
fn reserved_and_padding_bytes_are_ignored_on_receipt() {
    // Spec: "Padding and reserved bytes are sent as zeros and ignored when received."
    let t = Tolerance::default();
    assert_eq!(
        Message::decode(&hex("01 00 abcd 00000002"), t),
        Ok(Message::DiscoverTracker)
    );
    assert_eq!(
        Message::decode(&hex("01 06 ffff 00000003 0002 ffff"), t),
        Ok(Message::Error(ErrorCode::ChunkNotFound))
    );
    assert_eq!(
        Message::decode(
            &hex("01 01 0000 00000006 7f000001 1f40 0007 747261636b6572 ee"),
            t
        ),
        Ok(Message::TrackerInfo(TrackerInfo {
            addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8000),
            name: "tracker".to_string(),
        }))
    );
    assert_eq!(
        Message::decode(
            &hex("01 05 0000 00000009 000102030405060708090a0b0c0d0e0f10111213 00000001 61 ffffff"),
            t
        ),
        Ok(Message::Chunk {
            hash: hash_0_to_19(),
            data: b"a".to_vec()
        })
    );
    // FILE_INFO: name padding, chunk-record padding and peer padding all non-zero.
    let bytes = hex("01 03 0000 0000000c 0001 0001 78 aabbcc \
         000102030405060708090a0b0c0d0e0f10111213 0001 dddd \
         7f000001 1f41 eeee");
    assert_eq!(
        Message::decode(&bytes, t),
        Ok(Message::FileInfo(FileInfo {
            filename: "x".to_string(),
            chunks: vec![ChunkRecord {
                hash: hash_0_to_19(),
                peers: vec![SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8001)],
            }],
        }))
    );
}

#[test]
fn header_parse_and_lengths() {
    let h = Header::parse(&[1, 5, 0xAA, 0xBB, 0x00, 0x02, 0x00, 0x08]);
    assert_eq!(
        h,
        Header {
            version: 1,
            msg_type: 5,
            length_words: 131_080
        }
    );
    assert_eq!(h.message_len(), 524_320);
    assert_eq!(h.msg_type(), Ok(MsgType::Chunk));
    assert_eq!(h.body_len(524_320), Ok(524_320 - HEADER_LEN));
    // 0xFFFFFFFF words is more than a u32 of bytes.
    let big = Header::parse(&[1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
    assert_eq!(big.message_len(), 0x3_FFFF_FFFC);
}

#[test]
fn msg_type_numbers_and_names() {
    let all = [
        (0, MsgType::DiscoverTracker, "DISCOVER_TRACKER"),
        (1, MsgType::TrackerInfo, "TRACKER_INFO"),
        (2, MsgType::GetFileInfo, "GET_FILE_INFO"),
        (3, MsgType::FileInfo, "FILE_INFO"),
        (4, MsgType::GetChunk, "GET_CHUNK"),
        (5, MsgType::Chunk, "CHUNK"),
        (6, MsgType::Error, "ERROR"),
    ];
    for (n, t, name) in all {
        assert_eq!(MsgType::from_u8(n), Some(t));
        assert_eq!(t as u8, n);
        assert_eq!(t.to_string(), name);
    }
    for n in 7..=255u8 {
        assert_eq!(MsgType::from_u8(n), None);
    }
    assert_eq!(ErrorCode::InvalidMessageFormat.code(), 0);
    assert_eq!(ErrorCode::InvalidRequest.code(), 1);
    assert_eq!(ErrorCode::ChunkNotFound.code(), 2);
    assert_eq!(ErrorCode::from_code(2), ErrorCode::ChunkNotFound);
    assert_eq!(ErrorCode::from_code(3), ErrorCode::Other(3));
}
