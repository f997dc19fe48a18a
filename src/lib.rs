//! swarmlet: a small, synchronous BitTorrent-style file mover.
//!
//! See `docs/ARCHITECTURE.md` for the map of modules, threads and channels.
#![warn(missing_docs)]

pub mod bench;
pub mod bv;
pub mod chunker;
pub mod cli;
pub mod config;
pub mod course;
pub mod download;
pub mod hash;
pub mod root;
pub mod server;
pub mod store;
pub mod wire;
