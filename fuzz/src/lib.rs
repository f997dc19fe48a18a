//! Helpers shared by the fuzz targets in `fuzz_targets/` (see `scripts/fuzz.sh`).

use std::io::Cursor;

use swarmlet::wire::{HEADER_LEN, Message, ReadError, Tolerance, VERSION, padding, read_message};

/// The tolerant decoding mode (a FILE_INFO body under msg_type 5).
pub const TOLERANT: Tolerance = Tolerance {
    file_info_as_chunk_type: true,
};

/// Checks what every successfully decoded message must satisfy: it re-encodes, to exactly
/// as many bytes as it had on the wire (`wire_len`), and the re-encoding decodes, strictly,
/// to the same value.
pub fn check_round_trip(msg: &Message, wire_len: usize) {
    let enc = msg
        .encode()
        .unwrap_or_else(|e| panic!("decoded {msg:?} does not re-encode: {e}"));
    assert_eq!(enc.len(), wire_len, "re-encoding of {msg:?} changed length");
    let again = Message::decode(&enc, Tolerance::default())
        .unwrap_or_else(|e| panic!("re-encoding of {msg:?} does not decode: {e}"));
    assert_eq!(&again, msg, "round trip changed the message");
}

/// A message of wire type `msg_type` around `body`: the body is zero-padded to a whole
/// word and the header's msg_length is exactly right, so decoding reaches the body parser.
pub fn frame(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let len = HEADER_LEN + body.len() + padding(body.len());
    let words = u32::try_from(len / 4).expect("fuzz inputs are small");
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&[VERSION, msg_type, 0, 0]);
    out.extend_from_slice(&words.to_be_bytes());
    out.extend_from_slice(body);
    out.resize(len, 0);
    out
}

/// Checks that the stream reader agrees with [`Message::decode`] on one whole, correctly
/// framed message, and that it consumed exactly that message.
pub fn check_stream_agrees(wire: &[u8], tol: Tolerance) {
    let whole = Message::decode(wire, tol);
    let mut r = Cursor::new(wire);
    match read_message(&mut r, wire.len(), tol) {
        Ok(m) => assert_eq!(whole, Ok(m)),
        Err(ReadError::Message(e)) => assert_eq!(whole, Err(e)),
        Err(e) => panic!("read_message failed on a correctly framed message: {e}"),
    }
    assert_eq!(r.position(), wire.len() as u64, "stream reader out of step");
}
