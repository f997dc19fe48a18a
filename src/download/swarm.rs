//! The live swarm: what a protocol's tracker session tells the engine while a download
//! runs (peers that join, change what they have, or leave).
//!
//! A download without a swarm channel has a fixed set of peers (the course's plan); with
//! one, a piece no peer has yet waits for one instead of failing, and the download ends
//! when every piece is verified or when the sender is dropped (the protocol gives up).

use std::net::SocketAddr;

use crate::bitfield::Bitfield;

use super::plan::PeerSpec;

/// One change to the swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwarmEvent {
    /// A peer to use (a tracker's or PEX's answer). An address already known is ignored,
    /// unless it was dropped long enough ago (see [`super::Options::rejoin_after`]).
    Join(PeerSpec),
    /// What a known peer has now, replacing what was known (bvTorrent's mask).
    Has {
        /// The peer.
        addr: SocketAddr,
        /// Its pieces.
        has: Bitfield,
    },
    /// A peer left (its tracker entry is gone): it is asked for nothing more.
    Leave(SocketAddr),
}

/// Where a protocol sends [`SwarmEvent`]s; dropping every clone ends the live swarm.
pub type SwarmSender = crossbeam_channel::Sender<SwarmEvent>;

/// What the engine reads [`SwarmEvent`]s from.
pub type SwarmReceiver = crossbeam_channel::Receiver<SwarmEvent>;

/// A new live swarm channel. Unbounded: a tracker session sends at most one event per
/// peer per refresh, and the engine reads them as they come.
pub fn channel() -> (SwarmSender, SwarmReceiver) {
    crossbeam_channel::unbounded()
}
