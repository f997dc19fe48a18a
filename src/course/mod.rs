//! The course protocol on sockets: the peer and tracker services, and the client calls
//! Charlie makes. The bytes themselves are [`crate::wire`]'s; the accept loop is
//! [`crate::server`]'s; this module joins them.

pub mod charlie;
pub mod client;
pub mod discovery;
pub mod in_place;
pub mod peer;
pub mod tracker;
pub mod tracker_udp;

use std::io::{self, BufRead, BufReader, Write};

use crate::server::Connection;
use crate::wire::{self, ErrorCode, Message, ReadError, Tolerance};

/// Largest request a course server reads. A GET_CHUNK is 28 bytes; 4 KiB lets a small
/// message of the wrong kind (an ERROR, a tiny CHUNK) be read whole and answered
/// INVALID_REQUEST as the spec asks, while anything larger is refused before its body is
/// read (ERROR 0, then close: the stream cannot be trusted past a length we won't read).
pub const MAX_REQUEST_LEN: usize = 4096;

/// Sends an ERROR message.
pub fn send_error(w: &mut impl Write, code: ErrorCode) -> io::Result<()> {
    let bytes = Message::Error(code).encode().expect("ERROR always encodes");
    w.write_all(&bytes)
}

/// Serves requests on one connection in order until the client closes it, a timeout
/// passes or the stream is out of step. `answer` replies to each well-formed request;
/// malformed ones get ERROR 0 here.
pub fn serve_requests(
    conn: &Connection,
    role: &str,
    mut answer: impl FnMut(Message, &mut &std::net::TcpStream) -> io::Result<()>,
) -> io::Result<()> {
    let mut reader = BufReader::new(conn.reader()?);
    let mut out = &conn.stream;
    loop {
        // Wait for the first byte of the next request under the idle timeout, then give
        // the whole request `request_timeout` to arrive.
        reader.get_mut().set_deadline(conn.limits.idle_timeout);
        if reader.fill_buf()?.is_empty() {
            return Ok(());
        }
        reader.get_mut().set_deadline(conn.limits.request_timeout);
        match wire::read_message(&mut reader, MAX_REQUEST_LEN, Tolerance::default()) {
            Ok(msg) => answer(msg, &mut out)?,
            Err(ReadError::Closed) => return Ok(()),
            Err(ReadError::Io(e)) => return Err(e),
            Err(ReadError::Message(e)) => {
                log::info!("{role}: {}: {e}: sending {}", conn.peer, e.error_code());
                send_error(&mut out, e.error_code())?;
            }
            Err(ReadError::Frame(e)) => {
                log::info!(
                    "{role}: {}: {e}: sending {} and closing",
                    conn.peer,
                    e.error_code()
                );
                send_error(&mut out, e.error_code())?;
                return Ok(());
            }
        }
    }
}
