//! Real BitTorrent (BEP 3): bencode, metainfo (.torrent files), the peer wire codec, the
//! tracker client and server, and the `swarmlet` subcommands built on them.

pub mod announce;
pub mod bencode;
pub mod choker;
pub mod cli;
pub mod conn;
pub mod create;
pub mod daemon;
pub mod fetch;
pub mod metainfo;
pub mod peer_wire;
pub mod peers;
pub mod rate;
pub mod seed;
pub mod session;
pub mod source;
pub mod tracker;
