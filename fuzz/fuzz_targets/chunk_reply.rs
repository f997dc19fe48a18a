//! `read_header` + `read_chunk_reply` over a stream of replies, with a small `max_content`
//! taken from the first 2 input bytes. Each reply read must agree with `Message::decode`.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use swarmlet::wire::{
    ChunkReply, DecodeError, Message, MsgType, ReadError, Tolerance, read_chunk_reply, read_header,
};

fuzz_target!(|data: &[u8]| {
    let Some((head, stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max_content = usize::from(u16::from_be_bytes(*head));
    let mut r = Cursor::new(stream);
    let mut buf = Vec::new();
    loop {
        let start = r.position() as usize;
        let header = match read_header(&mut r) {
            Ok(h) => h,
            Err(ReadError::Closed) => {
                assert_eq!(start, stream.len(), "Closed in the middle of the stream");
                break;
            }
            Err(_) => break,
        };
        let res = read_chunk_reply(&mut r, &header, max_content, &mut buf);
        let whole = &stream[start..r.position() as usize];
        match res {
            Ok(reply) => {
                assert!(
                    buf.len() <= max_content,
                    "{} content bytes accepted over max_content {max_content}",
                    buf.len()
                );
                assert_eq!(whole.len() as u64, header.message_len());
                let expected = match reply {
                    ChunkReply::Chunk(hash) => Message::Chunk {
                        hash,
                        data: buf.clone(),
                    },
                    ChunkReply::Error(code) => Message::Error(code),
                };
                assert_eq!(Message::decode(whole, Tolerance::default()), Ok(expected));
            }
            Err(ReadError::Message(DecodeError::Unexpected { got, .. })) => {
                let m = Message::decode(whole, Tolerance::default())
                    .expect("an unexpected reply is well formed");
                assert_eq!(m.msg_type(), got);
                assert!(!matches!(got, MsgType::Chunk | MsgType::Error));
            }
            Err(ReadError::Message(e)) => {
                // Still in step: exactly one whole message was consumed.
                assert_eq!(Message::decode(whole, Tolerance::default()), Err(e));
            }
            Err(_) => break,
        }
    }
});
