//! The BEP 3 choking algorithm, as a pure function over what each connection measured
//! ([`choose`]), and the thread that applies it to every connection of a torrent every
//! [`ROUND`] ([`run`]).
//!
//! Why a pure function: which peers to unchoke is the whole policy, and it is tested
//! without sockets or clocks; the thread only measures rates and sends choke/unchoke.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bt::peers::Swarm;

/// How often the choker reconsiders who is unchoked. BEP 3: "every ten seconds", long
/// enough for TCP to ramp up to the full rate of a newly unchoked peer, so that the
/// rates compared are real ones (libtorrent's `unchoke_interval` is 15 s).
pub const ROUND: Duration = Duration::from_secs(10);

/// Regular unchoke slots, given to the interested peers that are fastest. BEP 3 (and
/// the mainline client) use 4: enough to trade with several peers at once, few enough
/// that each one gets a share of the upload link large enough to matter to it.
pub const REGULAR_SLOTS: usize = 4;

/// The optimistic unchoke moves to the next peer every this many [`ROUND`]s: BEP 3's
/// 30 s, three rounds, so a newcomer unchoked at random has time to show its rate.
pub const OPTIMISTIC_ROUNDS: u32 = 3;

/// Every unchoke slot, regular and optimistic: the most peers unchoked at once. A peer
/// that becomes interested while fewer than this are unchoked is unchoked at once rather
/// than at the next round, so a swarm starts without waiting 10 s.
pub const SLOTS: usize = REGULAR_SLOTS + 1;

/// A peer that has sent us no block for this long while we were interested in it is
/// snubbed (BEP 3 practice, libtorrent's and Transmission's 60 s): it earns no regular
/// slot by our download rate from it, though it can still get the optimistic one.
pub const SNUB_TIME: Duration = Duration::from_secs(60);

/// What the choker knows of one connection this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The connection's number (stable for its life).
    pub key: u64,
    /// Whether the peer wants something from us.
    pub interested: bool,
    /// The rate the slots go by (bytes per second): our download rate from the peer while
    /// we download, our upload rate to it once we seed.
    pub rate: u64,
    /// Whether the peer has snubbed us (see [`SNUB_TIME`]).
    pub snubbed: bool,
}

/// Who is unchoked for the coming round.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Choice {
    /// The regular slots, fastest first.
    pub regular: Vec<u64>,
    /// The optimistic slot.
    pub optimistic: Option<u64>,
}

impl Choice {
    /// Whether the connection `key` is unchoked.
    pub fn unchokes(&self, key: u64) -> bool {
        self.optimistic == Some(key) || self.regular.contains(&key)
    }
}

/// Chooses the unchoked peers: the [`REGULAR_SLOTS`] fastest interested peers that are
/// not snubbed (ties by key, for a stable order), and one optimistic unchoke among the
/// other interested peers. The optimistic slot stays with `optimistic` unless `rotate`
/// (or it no longer qualifies); it then moves to the next qualifying peer by key after
/// the previous one, round robin, so every waiting peer gets its turn in order.
pub fn choose(peers: &[Candidate], optimistic: Option<u64>, rotate: bool) -> Choice {
    let mut fast: Vec<&Candidate> = peers
        .iter()
        .filter(|c| c.interested && !c.snubbed)
        .collect();
    fast.sort_by(|a, b| b.rate.cmp(&a.rate).then(a.key.cmp(&b.key)));
    let regular: Vec<u64> = fast.iter().take(REGULAR_SLOTS).map(|c| c.key).collect();
    let mut waiting: Vec<u64> = peers
        .iter()
        .filter(|c| c.interested && !regular.contains(&c.key))
        .map(|c| c.key)
        .collect();
    waiting.sort_unstable();
    let keep = optimistic.filter(|o| !rotate && waiting.contains(o));
    let optimistic = keep.or_else(|| {
        let after = optimistic.unwrap_or(0);
        waiting
            .iter()
            .copied()
            .find(|&k| optimistic.is_none_or(|_| k > after))
            .or_else(|| waiting.first().copied())
    });
    Choice {
        regular,
        optimistic,
    }
}

/// Runs the choker of `swarm` until it is closed: every [`ROUND`], measures each
/// connection's rates over the round, chooses, and sends choke/unchoke where it changes.
pub fn run(swarm: Arc<Swarm>) {
    let mut last: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut optimistic = None;
    let mut round: u32 = 0;
    let mut at = Instant::now();
    while !swarm.closed() {
        std::thread::sleep(crate::bt::conn::TICK);
        if at.elapsed() < ROUND {
            continue;
        }
        let secs = at.elapsed().as_secs_f64().max(1e-3);
        at = Instant::now();
        let conns = swarm.connections();
        let seeding = swarm.seeding();
        let mut now_totals = HashMap::new();
        let candidates: Vec<Candidate> = conns
            .iter()
            .map(|c| {
                let s = c.stats();
                let (down0, up0) = last.get(&c.key()).copied().unwrap_or((0, 0));
                now_totals.insert(c.key(), (s.downloaded, s.uploaded));
                let per_sec = |now: u64, then: u64| (now.saturating_sub(then) as f64 / secs) as u64;
                Candidate {
                    key: c.key(),
                    interested: s.peer_interested,
                    rate: if seeding {
                        per_sec(s.uploaded, up0)
                    } else {
                        per_sec(s.downloaded, down0)
                    },
                    snubbed: !seeding && s.am_interested && s.since_block >= SNUB_TIME,
                }
            })
            .collect();
        last = now_totals;
        let rotate = round.is_multiple_of(OPTIMISTIC_ROUNDS);
        round = round.wrapping_add(1);
        let choice = choose(&candidates, optimistic, rotate);
        optimistic = choice.optimistic;
        log::debug!("choker: {choice:?} of {candidates:?}");
        for c in &conns {
            c.set_choked(!choice.unchokes(c.key()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(key: u64, rate: u64) -> Candidate {
        Candidate {
            key,
            interested: true,
            rate,
            snubbed: false,
        }
    }

    #[test]
    fn the_four_fastest_interested_peers_get_the_regular_slots() {
        let mut peers: Vec<Candidate> = (1..=7).map(|k| peer(k, k * 100)).collect();
        // The fastest of all is not interested: it needs no slot.
        peers.push(Candidate {
            interested: false,
            ..peer(8, 10_000)
        });
        let c = choose(&peers, None, true);
        assert_eq!(c.regular, vec![7, 6, 5, 4]);
        // The optimistic slot goes to one of the others, never to the uninterested.
        assert!(matches!(c.optimistic, Some(1..=3)), "{c:?}");
        assert!(!c.unchokes(8));
    }

    #[test]
    fn the_optimistic_slot_stays_between_rotations_and_then_moves_round_robin() {
        let peers: Vec<Candidate> = (1..=7).map(|k| peer(k, k * 100)).collect();
        let first = choose(&peers, None, true).optimistic;
        assert_eq!(first, Some(1));
        assert_eq!(choose(&peers, first, false).optimistic, Some(1));
        let second = choose(&peers, first, true).optimistic;
        assert_eq!(second, Some(2));
        let third = choose(&peers, second, true).optimistic;
        assert_eq!(third, Some(3));
        // After the last waiting peer, back to the first.
        assert_eq!(choose(&peers, third, true).optimistic, Some(1));
        // A holder that lost interest loses the slot even between rotations.
        let mut gone = peers.clone();
        gone[0].interested = false;
        assert_eq!(choose(&gone, Some(1), false).optimistic, Some(2));
    }

    #[test]
    fn snubbed_peers_get_no_regular_slot_however_fast() {
        let mut peers: Vec<Candidate> = (1..=5).map(|k| peer(k, k * 100)).collect();
        peers[4].snubbed = true; // key 5, the fastest
        let c = choose(&peers, None, true);
        assert_eq!(c.regular, vec![4, 3, 2, 1]);
        // The optimistic slot may still try it.
        assert_eq!(c.optimistic, Some(5));
    }

    #[test]
    fn few_peers_are_all_unchoked_and_nobody_is_optimistic_without_a_waiting_peer() {
        let peers = [peer(3, 0), peer(9, 50)];
        let c = choose(&peers, Some(3), true);
        assert_eq!(c.regular, vec![9, 3]);
        assert_eq!(c.optimistic, None);
        assert_eq!(choose(&[], None, true), Choice::default());
    }
}
