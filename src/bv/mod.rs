//! bvTorrent: a text-line swarm protocol (one tracker keeping a mask of chunks per
//! client, SHA-224 digests, one TCP connection per chunk between clients).
//!
//! `codec` knows bytes only; `tracker` serves the descriptor and the masks. The client
//! side: `session` (the tracker connection), `upload` (serving chunks), `fetch` (one
//! chunk from one holder) and `client` (the program joining them).

pub mod client;
pub mod codec;
pub mod fetch;
pub mod session;
pub mod tracker;
pub mod upload;
