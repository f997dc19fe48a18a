//! Real BitTorrent (BEP 3 and friends).
pub mod announce;
pub mod peer_wire;
