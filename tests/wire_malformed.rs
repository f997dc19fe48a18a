//! Malformed input: each case names the exact [`DecodeError`] (or [`ReadError`]) expected and
//! the error code a server must answer with.
//!
//! Spec rule: malformed → ERROR 0 (INVALID_MESSAGE_FORMAT); a well-formed message that the
//! receiver does not answer → ERROR 1 (INVALID_REQUEST), which only [`wire::expect`] produces.

mod common;

use std::io::{self, Cursor, Read};
use std::net::{Ipv4Addr, SocketAddrV4};

use common::hex;
use swarmlet::hash::ChunkHash;
use swarmlet::wire::{
    self, ChunkRecord, ChunkReply, DecodeError, ErrorCode, FileInfo, HEADER_LEN, Header, Message,
    MsgType, ReadError, Tolerance, TrackerInfo,
};

const HASH: &str = "000102030405060708090a0b0c0d0e0f10111213";
const STRICT: Tolerance = Tolerance {
    file_info_as_chunk_type: false,
};
const TOLERANT: Tolerance = Tolerance {
    file_info_as_chunk_type: true,
};

/// What a malformed case must fail with.
#[derive(Debug)]
enum Expect {
    /// Exactly this error.
    Exact(DecodeError),
    /// A [`DecodeError::Body`] for this type, whose detail mentions this text.
    Body(MsgType, &'static str),
}

impl Expect {
    fn check(&self, label: &str, got: &DecodeError) {
        match (self, got) {
            (Expect::Exact(e), g) => assert_eq!(g, e, "{label}"),
            (Expect::Body(t, text), DecodeError::Body { msg, detail }) => {
                assert_eq!(msg, t, "{label}: {detail}");
                assert!(detail.contains(text), "{label}: {detail:?} lacks {text:?}");
            }
            (e, g) => panic!("{label}: expected {e:?}, got {g:?}"),
        }
        // Everything malformed is INVALID_MESSAGE_FORMAT; never INVALID_REQUEST.
        assert_eq!(
            got.error_code(),
            ErrorCode::InvalidMessageFormat,
            "{label}: {got}"
        );
    }
}

fn body(t: MsgType, text: &'static str) -> Expect {
    Expect::Body(t, text)
}

/// Whole messages that [`Message::decode`] must reject.
fn malformed_messages() -> Vec<(String, Vec<u8>, Expect)> {
    use DecodeError as D;
    use MsgType as T;
    let mut cases: Vec<(String, Vec<u8>, Expect)> = Vec::new();

    // --- Header ---
    let discover = hex("01 00 0000 00000002");
    for n in 0..HEADER_LEN {
        cases.push((
            format!("header truncated to {n} bytes"),
            discover[..n].to_vec(),
            Expect::Exact(D::Truncated { need: 8, have: n }),
        ));
    }
    let mut add = |label: &str, h: &str, e: Expect| cases.push((label.to_string(), hex(h), e));
    add(
        "version 0",
        "00 00 0000 00000002",
        Expect::Exact(D::Version(0)),
    );
    add(
        "version 2",
        "02 00 0000 00000002",
        Expect::Exact(D::Version(2)),
    );
    add(
        "version 2 on an ERROR",
        "02 06 0000 00000003 0002 0000",
        Expect::Exact(D::Version(2)),
    );
    add(
        "type 7",
        "01 07 0000 00000002",
        Expect::Exact(D::UnknownType(7)),
    );
    add(
        "type 255",
        "01 ff 0000 00000002",
        Expect::Exact(D::UnknownType(255)),
    );
    add(
        "msg_length 0",
        "01 00 0000 00000000",
        Expect::Exact(D::LengthTooSmall(0)),
    );
    add(
        "msg_length 1",
        "01 00 0000 00000001",
        Expect::Exact(D::LengthTooSmall(1)),
    );
    add(
        "msg_length 0xFFFFFFFF",
        "01 00 0000 ffffffff",
        Expect::Exact(D::LengthMismatch {
            declared: 0x3_FFFF_FFFC,
            actual: 8,
        }),
    );
    add(
        "msg_length says more than the bytes given",
        "01 06 0000 00000004 0002 0000",
        Expect::Exact(D::LengthMismatch {
            declared: 16,
            actual: 12,
        }),
    );
    add(
        "msg_length says less than the bytes given",
        "01 00 0000 00000002 00000000",
        Expect::Exact(D::LengthMismatch {
            declared: 8,
            actual: 12,
        }),
    );
    add(
        "message not a multiple of 4 bytes",
        "01 00 0000 00000002 00",
        Expect::Exact(D::LengthMismatch {
            declared: 8,
            actual: 9,
        }),
    );

    // --- Empty-bodied messages with a body ---
    add(
        "DISCOVER_TRACKER with a body",
        "01 00 0000 00000003 00000000",
        body(T::DiscoverTracker, "4 bytes left over"),
    );
    add(
        "GET_FILE_INFO with a body",
        "01 02 0000 00000003 00000000",
        body(T::GetFileInfo, "4 bytes left over"),
    );

    // --- TRACKER_INFO ---
    add(
        "TRACKER_INFO name_length past the body",
        "01 01 0000 00000005 7f000001 1f40 0007 7472 6163",
        body(
            T::TrackerInfo,
            "name needs 7 bytes at offset 8, body has 12",
        ),
    );
    add(
        "TRACKER_INFO name_length 0xFFFF",
        "01 01 0000 00000006 7f000001 1f40 ffff 747261636b6572 00",
        body(T::TrackerInfo, "name needs 65535 bytes"),
    );
    add(
        "TRACKER_INFO without port",
        "01 01 0000 00000003 7f000001",
        body(T::TrackerInfo, "port needs 2 bytes at offset 4"),
    );
    add(
        "TRACKER_INFO empty body",
        "01 01 0000 00000002",
        body(T::TrackerInfo, "ip needs 4 bytes at offset 0"),
    );
    add(
        "TRACKER_INFO with bytes after the name",
        "01 01 0000 00000005 7f000001 1f40 0000 00000000",
        body(T::TrackerInfo, "4 bytes left over"),
    );
    add(
        "TRACKER_INFO non-UTF-8 name",
        "01 01 0000 00000005 7f000001 1f40 0002 fffe 0000",
        body(T::TrackerInfo, "not UTF-8"),
    );
    add(
        "TRACKER_INFO overlong UTF-8 name",
        "01 01 0000 00000005 7f000001 1f40 0002 c0af 0000",
        body(T::TrackerInfo, "not UTF-8"),
    );
    add(
        "TRACKER_INFO surrogate in name",
        "01 01 0000 00000005 7f000001 1f40 0003 eda080 00",
        body(T::TrackerInfo, "not UTF-8"),
    );
    add(
        "TRACKER_INFO name cut inside a UTF-8 character",
        "01 01 0000 00000005 7f000001 1f40 0001 c3 000000",
        body(T::TrackerInfo, "not UTF-8"),
    );

    // --- FILE_INFO ---
    add(
        "FILE_INFO empty body",
        "01 03 0000 00000002",
        body(T::FileInfo, "chunks_count needs 2 bytes"),
    );
    add(
        "FILE_INFO filename_length past the body",
        "01 03 0000 00000004 0000 0009 74657374",
        body(T::FileInfo, "name needs 9 bytes at offset 4, body has 8"),
    );
    add(
        "FILE_INFO non-UTF-8 filename",
        "01 03 0000 00000004 0000 0001 80 000000",
        body(T::FileInfo, "not UTF-8"),
    );
    add(
        "FILE_INFO chunks_count past the body",
        &format!("01 03 0000 00000009 0002 0000 {HASH} 0000 0000"),
        body(T::FileInfo, "hash needs 20 bytes at offset 28, body has 28"),
    );
    add(
        "FILE_INFO chunks_count 0xFFFF with no records",
        "01 03 0000 00000003 ffff 0000",
        body(T::FileInfo, "hash needs 20 bytes at offset 4, body has 4"),
    );
    add(
        "FILE_INFO peers_count past the body",
        &format!("01 03 0000 0000000b 0001 0000 {HASH} 0002 0000 7f000001 1f41 0000"),
        body(T::FileInfo, "ip needs 4 bytes at offset 36, body has 36"),
    );
    add(
        "FILE_INFO peers_count 0xFFFF",
        &format!("01 03 0000 00000009 0001 0000 {HASH} ffff 0000"),
        body(T::FileInfo, "ip needs 4 bytes at offset 28, body has 28"),
    );
    add(
        "FILE_INFO record cut after its hash",
        &format!("01 03 0000 00000008 0001 0000 {HASH}"),
        body(T::FileInfo, "peers_count needs 2 bytes at offset 24"),
    );
    add(
        "FILE_INFO bytes after the last record",
        &format!("01 03 0000 0000000a 0001 0000 {HASH} 0000 0000 00000000"),
        body(T::FileInfo, "4 bytes left over"),
    );

    // --- GET_CHUNK (fixed 20-byte body) ---
    add(
        "GET_CHUNK of 16 bytes",
        "01 04 0000 00000006 000102030405060708090a0b0c0d0e0f",
        body(T::GetChunk, "hash needs 20 bytes at offset 0, body has 16"),
    );
    add(
        "GET_CHUNK of 24 bytes",
        &format!("01 04 0000 00000008 {HASH} 00000000"),
        body(T::GetChunk, "4 bytes left over"),
    );
    add(
        "GET_CHUNK with no body",
        "01 04 0000 00000002",
        body(T::GetChunk, "hash needs 20 bytes at offset 0, body has 0"),
    );

    // --- CHUNK ---
    add(
        "CHUNK content_length past the body",
        &format!("01 05 0000 00000009 {HASH} 00000005 61626364"),
        body(T::Chunk, "content needs 5 bytes at offset 24, body has 28"),
    );
    add(
        "CHUNK content_length 0xFFFFFFFF",
        &format!("01 05 0000 00000008 {HASH} ffffffff"),
        body(T::Chunk, "content needs 4294967295 bytes"),
    );
    add(
        "CHUNK content_length shorter than the body",
        &format!("01 05 0000 0000000a {HASH} 00000001 61000000 00000000"),
        body(T::Chunk, "4 bytes left over"),
    );
    add(
        "CHUNK without content_length",
        &format!("01 05 0000 00000007 {HASH}"),
        body(T::Chunk, "content_length needs 4 bytes at offset 20"),
    );
    add(
        "CHUNK shorter than a hash",
        "01 05 0000 00000003 00000000",
        body(T::Chunk, "hash needs 20 bytes"),
    );

    // --- ERROR (fixed 4-byte body) ---
    add(
        "ERROR of 0 bytes",
        "01 06 0000 00000002",
        body(T::Error, "error_code needs 2 bytes at offset 0, body has 0"),
    );
    add(
        "ERROR of 8 bytes",
        "01 06 0000 00000004 0002 0000 00000000",
        body(T::Error, "4 bytes left over"),
    );
    cases
}

#[test]
fn malformed_messages_give_the_expected_error_and_code() {
    let cases = malformed_messages();
    assert!(cases.len() >= 48, "the table is all there");
    for (label, bytes, expect) in &cases {
        for tol in [STRICT, TOLERANT] {
            // The FILE_INFO-as-CHUNK tolerance changes how type 5 reads: skip those.
            if tol == TOLERANT && bytes.get(1) == Some(&5) {
                continue;
            }
            match Message::decode(bytes, tol) {
                Ok(m) => panic!("{label}: decoded as {m:?}"),
                Err(e) => expect.check(label, &e),
            }
        }
    }
}

/// The same table through a stream: a case whose framing is sane (length ≥ 2 words, all
/// bytes present) is [`ReadError::Message`] with the same error, and the stream stays in
/// step: the next message reads fine.
#[test]
fn malformed_messages_through_read_message_keep_the_stream_in_step() {
    let next = hex("01 06 0000 00000003 0002 0000");
    let mut in_step = 0;
    for (label, bytes, expect) in &malformed_messages() {
        let Some(head) = bytes.get(..HEADER_LEN) else {
            continue;
        };
        let h = Header::parse(head.try_into().unwrap());
        if h.length_words < 2 || h.message_len() != bytes.len() as u64 {
            continue; // framing errors: see the read_message_* tests below
        }
        let mut stream = bytes.clone();
        stream.extend_from_slice(&next);
        let mut r = Cursor::new(&stream);
        match wire::read_message(&mut r, 1 << 16, STRICT) {
            Err(ReadError::Message(e)) => expect.check(label, &e),
            other => panic!("{label}: {other:?}"),
        }
        assert_eq!(
            r.position(),
            bytes.len() as u64,
            "{label}: whole message read"
        );
        assert_eq!(
            wire::read_message(&mut r, 1 << 16, STRICT).unwrap(),
            Message::Error(ErrorCode::ChunkNotFound),
            "{label}: next message"
        );
        in_step += 1;
    }
    assert!(in_step >= 35, "most cases are framing-sane ({in_step})");
}

/// Bodies whose length is not a whole number of words cannot be framed by msg_length, so
/// these go through [`wire::decode_body`] with a header whose length is not checked.
#[test]
fn wrong_sized_bodies_through_decode_body() {
    let cases: [(u8, &str, Expect); 8] = [
        (
            4,
            "000102030405060708090a0b0c0d0e0f101112",
            body(
                MsgType::GetChunk,
                "hash needs 20 bytes at offset 0, body has 19",
            ),
        ),
        (
            4,
            "000102030405060708090a0b0c0d0e0f10111213 00",
            body(MsgType::GetChunk, "1 bytes left over"),
        ),
        (
            6,
            "",
            body(MsgType::Error, "error_code needs 2 bytes at offset 0"),
        ),
        (
            6,
            "0002",
            body(MsgType::Error, "error padding needs 2 bytes at offset 2"),
        ),
        (
            6,
            "0002 0000 00000000",
            body(MsgType::Error, "4 bytes left over"),
        ),
        // The name fits but its padding does not.
        (
            1,
            "7f000001 1f40 0007 747261636b6572",
            body(
                MsgType::TrackerInfo,
                "name padding needs 1 bytes at offset 15, body has 15",
            ),
        ),
        (
            5,
            "000102030405060708090a0b0c0d0e0f10111213 00000001 61 00",
            body(MsgType::Chunk, "content padding needs 3 bytes at offset 25"),
        ),
        (
            3,
            "0000 0003 616263",
            body(MsgType::FileInfo, "name padding needs 1 bytes at offset 7"),
        ),
    ];
    for (t, b, expect) in cases {
        let header = Header {
            version: 1,
            msg_type: t,
            length_words: 2,
        };
        let label = format!("type {t} body {b:?}");
        match wire::decode_body(&header, &hex(b), STRICT) {
            Ok(m) => panic!("{label}: decoded as {m:?}"),
            Err(e) => expect.check(&label, &e),
        }
    }
    // decode_body checks version and type itself.
    let bad = Header {
        version: 2,
        msg_type: 0,
        length_words: 2,
    };
    assert_eq!(
        wire::decode_body(&bad, &[], STRICT),
        Err(DecodeError::Version(2))
    );
}

#[test]
fn unexpected_messages_are_invalid_request_only_through_expect() {
    let h = ChunkHash::from_bytes([7; 20]);
    // Allowed: the message comes back untouched.
    assert_eq!(
        wire::expect(Message::GetChunk(h), &[MsgType::GetChunk], "GET_CHUNK"),
        Ok(Message::GetChunk(h))
    );
    assert_eq!(
        wire::expect(
            Message::GetFileInfo,
            &[MsgType::DiscoverTracker, MsgType::GetFileInfo],
            "a request"
        ),
        Ok(Message::GetFileInfo)
    );
    // What each server answers a well-formed but wrong request with.
    let cases = [
        (Message::GetFileInfo, MsgType::GetChunk, "GET_CHUNK"),
        (Message::GetChunk(h), MsgType::GetFileInfo, "GET_FILE_INFO"),
        (
            Message::DiscoverTracker,
            MsgType::GetFileInfo,
            "GET_FILE_INFO",
        ),
        (
            Message::Error(ErrorCode::ChunkNotFound),
            MsgType::DiscoverTracker,
            "DISCOVER_TRACKER",
        ),
    ];
    for (msg, allowed, expected) in cases {
        let got = msg.msg_type();
        let e = wire::expect(msg, &[allowed], expected).unwrap_err();
        assert_eq!(e, DecodeError::Unexpected { got, expected });
        assert_eq!(e.error_code(), ErrorCode::InvalidRequest);
        assert_eq!(
            ReadError::Message(e).error_code(),
            Some(ErrorCode::InvalidRequest)
        );
    }
    assert_eq!(
        wire::expect(Message::GetFileInfo, &[], "nothing"),
        Err(DecodeError::Unexpected {
            got: MsgType::GetFileInfo,
            expected: "nothing"
        })
    );
}

#[test]
fn every_other_decode_error_is_invalid_message_format() {
    let all = [
        DecodeError::Truncated { need: 8, have: 0 },
        DecodeError::Version(0),
        DecodeError::UnknownType(7),
        DecodeError::LengthTooSmall(1),
        DecodeError::TooLong {
            words: u32::MAX,
            max: 4096,
        },
        DecodeError::LengthMismatch {
            declared: 8,
            actual: 12,
        },
        DecodeError::Body {
            msg: MsgType::Chunk,
            detail: "x".into(),
        },
    ];
    for e in all {
        assert_eq!(e.error_code(), ErrorCode::InvalidMessageFormat, "{e}");
        let e2 = e.clone();
        assert_eq!(
            ReadError::Frame(e).error_code(),
            Some(ErrorCode::InvalidMessageFormat)
        );
        assert_eq!(
            ReadError::Message(e2).error_code(),
            Some(ErrorCode::InvalidMessageFormat)
        );
    }
    assert_eq!(ReadError::Closed.error_code(), None);
    assert_eq!(
        ReadError::Io(io::ErrorKind::UnexpectedEof.into()).error_code(),
        None
    );
    // 0xFFFFFFFF words is 2^34 - 4 bytes: the message must not overflow a u32.
    assert_eq!(
        DecodeError::TooLong {
            words: u32::MAX,
            max: 4096
        }
        .to_string(),
        "msg_length 4294967295 words (17179869180 bytes) is over the limit of 4096 bytes"
    );
}

// ---------------------------------------------------------------------------------------
// read_message framing
// ---------------------------------------------------------------------------------------

#[test]
fn read_message_over_max_len_is_a_frame_error_without_reading_the_body() {
    // A hostile length: 16 GiB announced, a few bytes behind it.
    let mut stream = hex("01 05 0000 ffffffff");
    stream.extend_from_slice(&[0xAB; 100]);
    let mut r = Cursor::new(&stream);
    match wire::read_message(&mut r, 4096, STRICT) {
        Err(ReadError::Frame(e)) => {
            assert_eq!(
                e,
                DecodeError::TooLong {
                    words: u32::MAX,
                    max: 4096
                }
            );
            assert_eq!(e.error_code(), ErrorCode::InvalidMessageFormat);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.position(), HEADER_LEN as u64, "only the header was read");

    // One word over the limit, on an otherwise valid message.
    let msg = hex("01 06 0000 00000003 0002 0000");
    let mut r = Cursor::new(&msg);
    match wire::read_message(&mut r, 11, STRICT) {
        Err(ReadError::Frame(e)) => assert_eq!(e, DecodeError::TooLong { words: 3, max: 11 }),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.position(), HEADER_LEN as u64);
    // Exactly at the limit is fine.
    let mut r = Cursor::new(&msg);
    assert_eq!(
        wire::read_message(&mut r, 12, STRICT).unwrap(),
        Message::Error(ErrorCode::ChunkNotFound)
    );
}

/// A reader that fails the test if anything past `limit` bytes is asked for.
struct NoReadPast<'a> {
    data: &'a [u8],
    pos: usize,
    limit: usize,
}

impl Read for NoReadPast<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        assert!(
            self.pos < self.limit,
            "read past byte {} requested",
            self.limit
        );
        let n = buf
            .len()
            .min(self.limit - self.pos)
            .min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn read_message_never_asks_for_the_body_of_an_oversized_message() {
    let mut stream = hex("01 03 0000 00100000"); // 4 MiB FILE_INFO
    stream.resize(64, 0);
    let mut r = NoReadPast {
        data: &stream,
        pos: 0,
        limit: HEADER_LEN,
    };
    assert!(matches!(
        wire::read_message(&mut r, 1 << 20, STRICT),
        Err(ReadError::Frame(DecodeError::TooLong {
            words: 0x0010_0000,
            max: 0x0010_0000
        }))
    ));
}

#[test]
fn read_message_length_below_the_header_is_a_frame_error() {
    for (words, h) in [(0, "01 00 0000 00000000"), (1, "01 06 0000 00000001")] {
        let mut stream = hex(h);
        stream.extend_from_slice(&hex("0002 0000"));
        let mut r = Cursor::new(&stream);
        match wire::read_message(&mut r, 4096, STRICT) {
            Err(ReadError::Frame(e)) => assert_eq!(e, DecodeError::LengthTooSmall(words)),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.position(), HEADER_LEN as u64);
    }
}

fn assert_eof(res: Result<Message, ReadError>) {
    match res {
        Err(ReadError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
        other => panic!("expected an UnexpectedEof, got {other:?}"),
    }
}

#[test]
fn read_message_stream_ending_mid_message_is_unexpected_eof() {
    let full = hex("01 01 0000 00000006 7f000001 1f40 0007 747261636b6572 00");
    for cut in 1..full.len() {
        let res = wire::read_message(&mut Cursor::new(&full[..cut]), 4096, STRICT);
        // Mid-header and mid-body alike: the stream broke inside a message.
        assert_eof(res);
    }
    assert!(wire::read_message(&mut Cursor::new(&full), 4096, STRICT).is_ok());
}

#[test]
fn read_message_clean_eof_is_closed() {
    assert!(matches!(
        wire::read_message(&mut Cursor::new(&[] as &[u8]), 4096, STRICT),
        Err(ReadError::Closed)
    ));
    // After the last whole message, too.
    let msg = hex("01 02 0000 00000002");
    let mut r = Cursor::new(&msg);
    assert_eq!(
        wire::read_message(&mut r, 4096, STRICT).unwrap(),
        Message::GetFileInfo
    );
    assert!(matches!(
        wire::read_message(&mut r, 4096, STRICT),
        Err(ReadError::Closed)
    ));
    assert!(matches!(
        wire::read_header(&mut Cursor::new(&[] as &[u8])),
        Err(ReadError::Closed)
    ));
}

#[test]
fn read_message_bad_version_with_sane_length_keeps_the_stream_in_step() {
    let stream = hex("02 06 0000 00000003 0002 0000 \
         01 06 0000 00000003 0001 0000");
    let mut r = Cursor::new(&stream);
    match wire::read_message(&mut r, 4096, STRICT) {
        Err(e @ ReadError::Message(DecodeError::Version(2))) => {
            assert_eq!(e.error_code(), Some(ErrorCode::InvalidMessageFormat))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.position(), 12, "the bad message was consumed whole");
    assert_eq!(
        wire::read_message(&mut r, 4096, STRICT).unwrap(),
        Message::Error(ErrorCode::InvalidRequest)
    );
    assert!(matches!(
        wire::read_message(&mut r, 4096, STRICT),
        Err(ReadError::Closed)
    ));

    // Unknown type with a body, then a request.
    let stream = hex("01 07 0000 00000004 deadbeef cafebabe \
         01 00 0000 00000002");
    let mut r = Cursor::new(&stream);
    assert!(matches!(
        wire::read_message(&mut r, 4096, STRICT),
        Err(ReadError::Message(DecodeError::UnknownType(7)))
    ));
    assert_eq!(
        wire::read_message(&mut r, 4096, STRICT).unwrap(),
        Message::DiscoverTracker
    );
}

/// A reader that returns given errors before handing out its data one byte at a time.
struct Flaky {
    errors: Vec<io::ErrorKind>,
    data: Vec<u8>,
    pos: usize,
}

impl Read for Flaky {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(kind) = self.errors.pop() {
            return Err(kind.into());
        }
        if self.pos == self.data.len() || buf.is_empty() {
            return Ok(0);
        }
        buf[0] = self.data[self.pos];
        self.pos += 1;
        Ok(1)
    }
}

#[test]
fn read_message_io_errors() {
    let msg = hex("01 06 0000 00000003 0002 0000");
    // Interrupted is retried; one-byte reads are reassembled.
    let mut r = Flaky {
        errors: vec![io::ErrorKind::Interrupted; 3],
        data: msg.clone(),
        pos: 0,
    };
    assert_eq!(
        wire::read_message(&mut r, 4096, STRICT).unwrap(),
        Message::Error(ErrorCode::ChunkNotFound)
    );
    // A timeout is reported as I/O, with its kind, not as Closed.
    let mut r = Flaky {
        errors: vec![io::ErrorKind::TimedOut],
        data: msg,
        pos: 0,
    };
    match wire::read_message(&mut r, 4096, STRICT) {
        Err(e @ ReadError::Io(_)) => {
            assert!(matches!(&e, ReadError::Io(io) if io.kind() == io::ErrorKind::TimedOut));
            assert_eq!(e.error_code(), None);
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// read_chunk_reply
// ---------------------------------------------------------------------------------------

/// Reads a header then a chunk reply, the way a downloader does.
fn chunk_reply(bytes: &[u8], max_content: usize) -> (Result<ChunkReply, ReadError>, Vec<u8>, u64) {
    let mut r = Cursor::new(bytes);
    let mut buf = b"stale".to_vec();
    let res = wire::read_header(&mut r)
        .and_then(|h| wire::read_chunk_reply(&mut r, &h, max_content, &mut buf));
    (res, buf, r.position())
}

#[test]
fn read_chunk_reply_framing_errors() {
    let frame = |label: &str, bytes: &str, max_content: usize, expect: Expect| {
        let bytes = hex(bytes);
        match chunk_reply(&bytes, max_content).0 {
            Err(ReadError::Frame(e)) => expect.check(label, &e),
            other => panic!("{label}: {other:?}"),
        }
    };
    frame(
        "bad version",
        &format!("02 05 0000 00000008 {HASH} 00000000"),
        1024,
        Expect::Exact(DecodeError::Version(2)),
    );
    frame(
        "unknown type",
        "01 09 0000 00000002",
        1024,
        Expect::Exact(DecodeError::UnknownType(9)),
    );
    frame(
        "CHUNK with msg_length below the header",
        "01 05 0000 00000001",
        1024,
        Expect::Exact(DecodeError::LengthTooSmall(1)),
    );
    frame(
        "CHUNK shorter than hash + content_length",
        &format!("01 05 0000 00000007 {HASH}"),
        1024,
        Expect::Exact(DecodeError::Truncated { need: 24, have: 20 }),
    );
    frame(
        "CHUNK content_length longer than msg_length says",
        &format!("01 05 0000 00000009 {HASH} 00000005 61626364"),
        1024,
        body(MsgType::Chunk, "content_length 5 does not match"),
    );
    frame(
        "CHUNK content_length shorter than msg_length says",
        &format!("01 05 0000 0000000a {HASH} 00000001 61000000 00000000"),
        1024,
        body(MsgType::Chunk, "content_length 1 does not match"),
    );
    frame(
        "CHUNK msg_length over max_content",
        &format!("01 05 0000 0000000c {HASH} 00000010 {}", "00".repeat(16)),
        8,
        Expect::Exact(DecodeError::TooLong { words: 12, max: 43 }),
    );
    frame(
        "TRACKER_INFO reply over the small-reply limit",
        &format!("01 01 0000 00000020 {}", "00".repeat(120)),
        1 << 20,
        Expect::Exact(DecodeError::TooLong { words: 32, max: 64 }),
    );
}

#[test]
fn read_chunk_reply_content_longer_than_max_content_is_refused() {
    // 6 content bytes + 2 padding fit the word-rounded limit of a 5-byte max_content, but
    // the content itself is over it: the caller's bound must hold byte for byte.
    let bytes = hex(&format!(
        "01 05 0000 0000000a {HASH} 00000006 616263646566 0000"
    ));
    match chunk_reply(&bytes, 5).0 {
        Err(ReadError::Frame(e)) => body(
            MsgType::Chunk,
            "content_length 6 is over the limit of 5 bytes",
        )
        .check("6 bytes, limit 5", &e),
        other => panic!("{other:?}"),
    }
    // Exactly max_content is fine.
    let (res, buf, _) = chunk_reply(&bytes, 6);
    assert!(matches!(res, Ok(ChunkReply::Chunk(_))), "{res:?}");
    assert_eq!(buf, b"abcdef");
}

#[test]
fn read_chunk_reply_without_a_limit() {
    let bytes = hex(&format!("01 05 0000 00000009 {HASH} 00000003 616263 00"));
    let (res, buf, pos) = chunk_reply(&bytes, usize::MAX);
    assert_eq!(
        res.unwrap(),
        ChunkReply::Chunk(ChunkHash::from_hex(HASH).unwrap())
    );
    assert_eq!(buf, b"abc");
    assert_eq!(pos, bytes.len() as u64);
}

#[test]
fn read_chunk_reply_message_errors_keep_the_stream_in_step() {
    // A well-formed reply of the wrong type: INVALID_REQUEST, consumed whole.
    let bytes = hex("01 02 0000 00000002 01 06 0000 00000003 0002 0000");
    let mut r = Cursor::new(&bytes);
    let mut buf = Vec::new();
    let h = wire::read_header(&mut r).unwrap();
    match wire::read_chunk_reply(&mut r, &h, 1024, &mut buf) {
        Err(ReadError::Message(e)) => {
            assert_eq!(
                e,
                DecodeError::Unexpected {
                    got: MsgType::GetFileInfo,
                    expected: "CHUNK or ERROR"
                }
            );
            assert_eq!(e.error_code(), ErrorCode::InvalidRequest);
        }
        other => panic!("{other:?}"),
    }
    let h = wire::read_header(&mut r).unwrap();
    assert_eq!(
        wire::read_chunk_reply(&mut r, &h, 1024, &mut buf).unwrap(),
        ChunkReply::Error(ErrorCode::ChunkNotFound)
    );

    // A malformed ERROR: INVALID_MESSAGE_FORMAT, consumed whole.
    let bytes = hex("01 06 0000 00000004 0002 0000 00000000");
    let (res, _, pos) = chunk_reply(&bytes, 1024);
    match res {
        Err(ReadError::Message(e)) => body(MsgType::Error, "left over").check("ERROR 8", &e),
        other => panic!("{other:?}"),
    }
    assert_eq!(pos, bytes.len() as u64);
}

#[test]
fn read_chunk_reply_stream_ending_early_is_unexpected_eof() {
    let full = hex(&format!(
        "01 05 0000 0000000a {HASH} 00000005 6162636465 000000"
    ));
    // Cut in the prefix, in the content, and in the padding.
    for cut in HEADER_LEN..full.len() {
        let mut r = Cursor::new(&full[..cut]);
        let h = wire::read_header(&mut r).unwrap();
        let mut buf = Vec::new();
        match wire::read_chunk_reply(&mut r, &h, 1024, &mut buf) {
            Err(ReadError::Io(e)) => {
                assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}")
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    let (res, buf, _) = chunk_reply(&full, 1024);
    assert!(res.is_ok());
    assert_eq!(buf, b"abcde");
}

// ---------------------------------------------------------------------------------------
// Tolerance: FILE_INFO labelled as CHUNK
// ---------------------------------------------------------------------------------------

fn small_file_info() -> (Message, Vec<u8>) {
    let msg = Message::FileInfo(FileInfo {
        filename: "test.bin".into(),
        chunks: vec![ChunkRecord {
            hash: ChunkHash::from_hex(HASH).unwrap(),
            peers: vec![SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8001)],
        }],
    });
    let bytes = hex(&format!(
        "01 03 0000 0000000d 0001 0008 74657374 2e62696e {HASH} 0001 0000 7f000001 1f41 0000"
    ));
    assert_eq!(msg.encode().unwrap(), bytes);
    (msg, bytes)
}

#[test]
fn file_info_under_type_5_needs_the_tolerance() {
    let (msg, mut bytes) = small_file_info();
    bytes[1] = 5;
    // Strict: it is read as a CHUNK, whose "content_length" (bytes 20..24 of the body)
    // points far past the body.
    match Message::decode(&bytes, STRICT) {
        Err(e) => body(MsgType::Chunk, "content needs").check("strict", &e),
        Ok(m) => panic!("{m:?}"),
    }
    assert!(matches!(
        wire::read_message(&mut Cursor::new(&bytes), 4096, STRICT),
        Err(ReadError::Message(DecodeError::Body {
            msg: MsgType::Chunk,
            ..
        }))
    ));
    // Tolerant: the FILE_INFO it really is.
    assert_eq!(Message::decode(&bytes, TOLERANT).as_ref(), Ok(&msg));
    assert_eq!(
        wire::read_message(&mut Cursor::new(&bytes), 4096, TOLERANT).unwrap(),
        msg
    );
}

#[test]
fn the_tolerance_changes_nothing_else() {
    let (msg, bytes) = small_file_info();
    assert_eq!(Message::decode(&bytes, TOLERANT).as_ref(), Ok(&msg));
    let others = [
        Message::DiscoverTracker,
        Message::GetFileInfo,
        Message::GetChunk(ChunkHash::from_hex(HASH).unwrap()),
        Message::Error(ErrorCode::InvalidRequest),
        Message::TrackerInfo(TrackerInfo {
            addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8000),
            name: "tracker".into(),
        }),
    ];
    for m in others {
        assert_eq!(Message::decode(&m.encode().unwrap(), TOLERANT), Ok(m));
    }
    // A genuine CHUNK is no longer readable with it on: only a client that asked
    // GET_FILE_INFO may switch it on.
    let chunk = Message::Chunk {
        hash: ChunkHash::from_hex(HASH).unwrap(),
        data: b"abc".to_vec(),
    }
    .encode()
    .unwrap();
    match Message::decode(&chunk, TOLERANT) {
        Err(e) => body(MsgType::FileInfo, "name needs").check("chunk as file info", &e),
        Ok(m) => panic!("{m:?}"),
    }
}
