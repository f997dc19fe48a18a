//! Real BitTorrent (BEP 3): bencode, metainfo (.torrent files) and the `swarmlet`
//! subcommands built on them.

pub mod bencode;
pub mod cli;
pub mod create;
pub mod metainfo;
