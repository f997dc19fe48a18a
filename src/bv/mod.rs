//! bvTorrent: a text-line swarm protocol (one tracker keeping a mask of chunks per
//! client, SHA-224 digests, one TCP connection per chunk between clients).
//!
//! `codec` knows bytes only; `tracker` serves the descriptor and the masks.

pub mod codec;
pub mod tracker;
