//! `bt::peer_wire`: the handshake and a stream of length-prefixed messages.
//!
//! The first 2 input bytes choose the torrent's piece count (so bitfield sizes and piece
//! indexes vary); the rest is the stream. A 68-byte prefix is also tried as a handshake.
//! Every message read must re-encode to exactly the bytes it was read from, every read
//! must consume at most its id's limit, and a bad-but-framed message must leave the
//! stream in step (exactly its length prefix consumed).
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use swarmlet::bt::peer_wire::{
    HANDSHAKE_LEN, Handshake, Limits, PREFIX_LEN, ReadError, id, read_handshake, read_message,
};

fuzz_target!(|data: &[u8]| {
    let Some((head, stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let limits = Limits::new(u32::from(u16::from_be_bytes(*head)));

    if let Some(hs) = stream.first_chunk::<HANDSHAKE_LEN>() {
        let parsed = Handshake::parse(hs);
        let read = read_handshake(&mut Cursor::new(&hs[..]));
        match parsed {
            Ok(h) => {
                assert_eq!(&h.encode(), hs, "handshake round trip");
                assert_eq!(read.expect("parse accepted it"), h);
            }
            Err(e) => assert!(matches!(read, Err(ReadError::Frame(f)) if f == e)),
        }
    }

    // Unknown ids are skipped up to the largest known message (a piece).
    let skip = limits.max_len(id::PIECE).expect("piece has a limit");
    let mut r = Cursor::new(stream);
    loop {
        let start = r.position() as usize;
        let res = read_message(&mut r, &limits);
        let whole = &stream[start..r.position() as usize];
        if let Some(&msg_id) = whole.get(PREFIX_LEN) {
            let max = limits.max_len(msg_id).unwrap_or(skip) as usize;
            assert!(
                whole.len() <= PREFIX_LEN + max,
                "read {} bytes for id {msg_id}, limit {max}",
                whole.len()
            );
        }
        match res {
            Ok(m) => {
                let enc = m.to_bytes().expect("a read message encodes");
                assert_eq!(enc, whole, "re-encoding of {m:?} differs from the wire");
            }
            Err(ReadError::Message(e)) => {
                let _ = e.to_string();
                let len = u32::from_be_bytes(whole[..4].try_into().unwrap()) as usize;
                assert_eq!(whole.len(), PREFIX_LEN + len, "out of step after {e}");
            }
            Err(ReadError::Closed) => {
                assert_eq!(start, stream.len(), "Closed in the middle of the stream");
                break;
            }
            Err(e) => {
                assert!(e.is_fatal());
                break;
            }
        }
    }
});
