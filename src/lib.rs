//! swarmlet: a small, synchronous BitTorrent-style file mover.
//!
//! See `docs/ARCHITECTURE.md` for the map of modules, threads and channels.
#![warn(missing_docs)]

pub mod bench;
pub mod bounded;
pub mod bt;
pub mod bv;
pub mod chunker;
pub mod cli;
pub mod config;
pub mod course;
pub mod download;
pub mod hash;
pub mod init;
pub mod root;
pub mod server;
pub mod store;
pub mod text;
pub mod wire;

// The generalised engine's building blocks (one engine for every protocol).
pub mod bitfield;
pub mod digest;
pub mod layout;
pub mod storage;
