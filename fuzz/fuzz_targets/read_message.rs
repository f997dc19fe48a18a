//! `wire::read_message` over a stream of arbitrary bytes, message after message.
//!
//! The first 4 input bytes choose the limit (at most 1 MiB) and the tolerance. Reading goes
//! on after a bad-but-framed message (as a server does) and stops at the first framing or
//! I/O error. Every message consumed must agree with `Message::decode` on the same bytes.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use swarmlet::wire::{Message, ReadError, Tolerance, read_message};
use swarmlet_fuzz::check_round_trip;

const MAX_LIMIT: u32 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((head, stream)) = data.split_first_chunk::<4>() else {
        return;
    };
    let word = u32::from_be_bytes(*head);
    let tol = Tolerance {
        file_info_as_chunk_type: word & 1 == 1,
    };
    let max_len = ((word >> 1) % (MAX_LIMIT + 1)) as usize;
    let mut r = Cursor::new(stream);
    loop {
        let start = r.position() as usize;
        let res = read_message(&mut r, max_len, tol);
        let end = r.position() as usize;
        let whole = &stream[start..end];
        match res {
            Ok(m) => {
                assert!(
                    whole.len() <= max_len,
                    "{} bytes read over a {max_len} limit",
                    whole.len()
                );
                check_round_trip(&m, whole.len());
                assert_eq!(Message::decode(whole, tol), Ok(m));
            }
            Err(ReadError::Message(e)) => {
                // Still in step: exactly one whole message was consumed.
                assert!(whole.len() <= max_len);
                assert_eq!(Message::decode(whole, tol), Err(e));
            }
            Err(ReadError::Closed) => {
                assert_eq!(start, stream.len(), "Closed in the middle of the stream");
                break;
            }
            Err(e @ (ReadError::Frame(_) | ReadError::Io(_))) => {
                let _ = e.error_code();
                break;
            }
        }
    }
});
